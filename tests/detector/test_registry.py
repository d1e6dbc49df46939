"""Building detectors by name, including a user's MODULE:FACTORY."""

import pytest

from densedet_tile import DetectorError, InvalidInputError, load_detector


def test_factory_from_file_gets_only_the_options_it_names(tmp_path, caplog):
    mod = tmp_path / "userdet.py"
    mod.write_text(
        "class D:\n"
        "    def __init__(self, checkpoint, device):\n"
        "        self.checkpoint, self.device = checkpoint, device\n"
        "    def predict(self, tiles):\n"
        "        return []\n"
        "def make(checkpoint=None, device='cpu'):\n"
        "    return D(checkpoint, device)\n"
    )
    with caplog.at_level("WARNING", logger="densedet_tile.detector.registry"):
        det = load_detector(f"{mod}:make", checkpoint="w.pth", config="ignored.py", device="cpu")
    assert det.checkpoint == "w.pth" and det.device == "cpu"
    assert "takes no config; it is ignored" in caplog.text  # said, not dropped silently
    caplog.clear()
    # the engine resizes tiles to input_size and filters by score_thr itself: nothing is ignored
    with caplog.at_level("WARNING", logger="densedet_tile.detector.registry"):
        load_detector(f"{mod}:make", checkpoint="w.pth", device="cpu", input_size=320, score_thr=0.9)
    assert "ignored" not in caplog.text


def test_a_factory_without_score_thr_or_input_size_still_gets_them_applied(tmp_path):
    # the library's load_detector, as the command line: a detector whose factory takes neither
    # serves at the threshold and input size asked for (they were dropped before)
    import numpy as np

    import densedet_tile as dt

    mod = tmp_path / "plain.py"
    mod.write_text(
        "import numpy as np\n"
        "from densedet_tile import Detections\n"
        "class D:\n"
        "    sides = []\n"
        "    def predict(self, tiles):\n"
        "        self.sides += [t.shape[:2] for t in tiles]\n"
        "        b = np.array([[10, 10, 60, 60], [100, 10, 150, 60]], np.float32)\n"
        "        return [Detections(b, np.array([0.9, 0.3], np.float32), np.zeros(2, np.int64)) for _ in tiles]\n"
        "def make():\n"
        "    return D()\n"
    )
    det = load_detector(f"{mod}:make", score_thr=0.7, input_size=512)
    assert (det.score_thr, det.input_size) == (0.7, 512)
    res = dt.detect_image(np.zeros((300, 300, 3), np.uint8), det)
    assert res.detections.scores.tolist() == [pytest.approx(0.9)]
    assert det.sides == [(512, 512)]
    assert (res.settings["score_thr"], res.settings["input_size"]) == (0.7, 512)


def test_a_detectors_own_score_thr_is_never_overwritten(tmp_path, caplog):
    # a model that filters at its own 0.5 and declares it: the engine must keep knowing that
    # boxes under 0.5 do not exist (it warns about a run asking for less)
    mod = tmp_path / "own.py"
    mod.write_text("class D:\n    score_thr = 0.5\n    def predict(self, tiles):\n        return []\n"
                   "def make():\n    return D()\n")
    with caplog.at_level("WARNING", logger="densedet_tile.detector.registry"):
        det = load_detector(f"{mod}:make", score_thr=0.3, input_size=512)
    assert (det.score_thr, det.input_size) == (0.5, 512)
    assert "declares its own score_thr 0.5, which it keeps" in caplog.text


def test_a_factory_file_that_fails_to_import_is_a_detector_error_and_leaves_no_module(tmp_path):
    import sys

    mod = tmp_path / "broken.py"
    mod.write_text("x = undefined_name\ndef make():\n    return None\n")
    before = set(sys.modules)
    with pytest.raises(DetectorError, match=r"broken\.py raised NameError: name 'undefined_name' is not defined"):
        load_detector(f"{mod}:make")
    assert set(sys.modules) == before
    mod.write_text("def make(:\n")
    with pytest.raises(DetectorError, match="raised SyntaxError"):
        load_detector(f"{mod}:make")


def test_factory_taking_kwargs_gets_everything_given(tmp_path):
    mod = tmp_path / "kw.py"
    mod.write_text(
        "class D:\n"
        "    def __init__(self, **kw):\n"
        "        self.kw = kw\n"
        "    def predict(self, tiles):\n"
        "        return []\n"
        "def make(**kw):\n"
        "    return D(**kw)\n"
    )
    det = load_detector(f"{mod}:make", config="c.py", input_size=640)
    assert det.kw == {"config": "c.py", "device": "auto", "input_size": 640}


@pytest.mark.parametrize(
    "name, err, match",
    [
        ("", InvalidInputError, "non-empty"),
        ("resnet", InvalidInputError, "unknown detector 'resnet'"),
        ("no_such_module_xyz:make", DetectorError, "no_such_module_xyz"),
        ("fakes:no_such_factory", DetectorError, "no callable no_such_factory"),
        ("/nonexistent/file.py:make", InvalidInputError, "no such file"),
    ],
)
def test_bad_names(name, err, match):
    with pytest.raises(err, match=match):
        load_detector(name)


def test_factory_that_returns_no_detector(tmp_path):
    mod = tmp_path / "bad.py"
    mod.write_text("def make():\n    return 42\n")
    with pytest.raises(DetectorError, match="no callable predict"):
        load_detector(f"{mod}:make")


def test_factory_exception_is_wrapped(tmp_path):
    mod = tmp_path / "boom.py"
    mod.write_text("def make():\n    raise RuntimeError('weights missing')\n")
    with pytest.raises(DetectorError, match="weights missing"):
        load_detector(f"{mod}:make")


def test_default_rejects_config():
    with pytest.raises(InvalidInputError, match=r"no config \(--config\)"):
        load_detector("default", config="x.py")


def test_options_and_precision_reach_a_factory(tmp_path):
    mod = tmp_path / "opt.py"
    mod.write_text(
        "class D:\n"
        "    def __init__(self, **kw):\n"
        "        self.kw = kw\n"
        "    def predict(self, tiles):\n"
        "        return []\n"
        "def make(precision='fp32', threads=1):\n"
        "    return D(precision=precision, threads=threads)\n"
    )
    det = load_detector(f"{mod}:make", precision="fp16", options={"threads": 4})
    assert det.kw == {"precision": "fp16", "threads": 4}


def test_an_adapter_without_a_precision_choice_refuses_half_precision():
    with pytest.raises(InvalidInputError, match=r"precision it was exported in; precision fp16 \(--precision\) is not an option"):
        load_detector("onnx", checkpoint="model.onnx", precision="fp16")


def test_unknown_precision_and_clashing_option():
    with pytest.raises(InvalidInputError, match="precision"):
        load_detector("default", precision="int8")
    with pytest.raises(InvalidInputError, match="own command-line flags"):
        load_detector("onnx", checkpoint="model.onnx", options={"device": "cpu"})


def _device_echo(tmp_path):
    """A factory whose detector declares no device; it logs each device it is called with."""
    mod = tmp_path / "echo.py"
    mod.write_text(
        "from pathlib import Path\n"
        "class D:\n"
        "    def predict(self, tiles):\n"
        "        return []\n"
        "def make(device='cpu'):\n"
        "    with open(Path(__file__).with_name('calls.txt'), 'a') as f:\n"
        "        f.write(device + '\\n')\n"
        "    return D()\n"
    )
    return f"{mod}:make", tmp_path / "calls.txt"


def test_a_factory_on_cuda_is_refused_where_there_is_no_cuda(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from densedet_tile.detector import base

    spec, calls = _device_echo(tmp_path)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(InvalidInputError,
                           match=rf"device '{device}' was requested but CUDA is not available on this machine"):
            load_detector(spec, device=device)
    load_detector(spec, device="cpu")
    load_detector(spec, device="auto")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(base, "cuda_plausible", lambda: True)
    load_detector(spec, device="cuda")
    assert calls.read_text().split() == ["cpu", "auto", "cuda"]  # the refused ones never reached it


def test_a_factory_on_cuda_without_torch_is_refused_only_where_no_gpu_can_be(tmp_path, monkeypatch):
    import sys

    from densedet_tile.detector import base

    spec, calls = _device_echo(tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    monkeypatch.setattr(base, "cuda_plausible", lambda: False)
    with pytest.raises(InvalidInputError, match="device 'cuda' was requested but CUDA is not available"):
        load_detector(spec, device="cuda")
    monkeypatch.setattr(base, "cuda_plausible", lambda: True)  # a driver is there: the factory decides
    load_detector(spec, device="cuda")
    assert calls.read_text().split() == ["cuda"]


def test_resolved_spec_keeps_a_torchvision_builder_name_when_a_folder_has_it(tmp_path, monkeypatch):
    # batch resolves the spec for its workers: a folder (or file) named like the builder in the
    # working folder made the config an absolute path, "unknown builder '/.../fasterrcnn_...'"
    pytest.importorskip("torchvision")
    from densedet_tile.detector.registry import DetectorSpec

    name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    (tmp_path / name).mkdir()
    (tmp_path / "sd.pth").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    spec = DetectorSpec(kind="torchvision", config=name, checkpoint="sd.pth", device="cpu").resolved()
    assert spec.config == name and spec.checkpoint == str(tmp_path / "sd.pth")  # the checkpoint is a file
    det = DetectorSpec(kind="torchvision", config=name, device="cpu", input_size=64).resolved().build()
    assert det.name == f"torchvision:{name}"


def test_resolved_spec_resolves_an_mmdet_config_only_where_it_is_a_file(tmp_path, monkeypatch):
    # the mmdet adapter reads a config as a file when one is there, else as a shipped name: a
    # folder of a shipped name's name must leave the name alone
    from densedet_tile.detector.registry import DetectorSpec

    (tmp_path / "densedet-r18-light").mkdir()
    (tmp_path / "mine.py").write_text("model = dict()\n")
    monkeypatch.chdir(tmp_path)
    assert DetectorSpec(kind="mmdet", config="densedet-r18-light").resolved().config == "densedet-r18-light"
    assert DetectorSpec(kind="mmdet", config="mine.py").resolved().config == str(tmp_path / "mine.py")
    assert DetectorSpec(kind="mmdet", config="other.py").resolved().config == "other.py"  # not here: as given
    (tmp_path / "densedet-x101").write_text("model = dict()\n")  # a file wins over the shipped name
    assert DetectorSpec(kind="mmdet", config="densedet-x101").resolved().config == str(tmp_path / "densedet-x101")
