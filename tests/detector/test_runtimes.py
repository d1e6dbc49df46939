"""The built-in model's two runtimes: same boxes, one decode, the runtime rule, no torch when light."""

from __future__ import annotations

import hashlib
import importlib.resources
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.detector import base
from densedet_tile.detector import builtin as B
from densedet_tile.detector.builtin import DecodeSettings, choose_runtime, load_default, usable_cpus
from densedet_tile.detector.registry import load_detector
from densedet_tile.errors import InvalidInputError, MissingDependencyError
from densedet_tile.pipeline import describe_detector
from densedet_tile.synth.shelves import training_sample

REPO = Path(__file__).resolve().parents[2]

#: fp32 export vs torch: boxes agree to float rounding (measured 6e-5 px); the bound is 0.5 px
FP32_TOL_PX = 0.5
#: The shipped int8 file vs torch, per generated 640 px tile (measured on 16 tiles: count
#: differences -2..+1, median box difference 0.5 px, 95th percentile 1.2 px; -0.0016 AP on the
#: 50-photo held-out set, BENCHMARKS.md "The light install")
INT8_NEAR_PX, INT8_NEAR_SHARE, INT8_MEDIAN_PX = 2.0, 0.95, 1.0


def _weights_path(name: str) -> Path:
    return Path(str(importlib.resources.files("densedet_tile.detector").joinpath("weights", name)))


@pytest.fixture(scope="module")
def pair() -> tuple[B.DefaultDetector, B.DefaultDetector]:
    """The shipped ONNX file on ONNX Runtime, the shipped .pt on torch."""
    return load_default(device="cpu", runtime="onnxruntime"), load_default(device="cpu", runtime="torch")


@pytest.fixture(scope="module")
def fp32_pair(tmp_path_factory) -> tuple[B.DefaultDetector, B.DefaultDetector]:
    """An fp32 export made now by scripts/export_default_onnx.py, and torch."""
    pytest.importorskip("onnx")
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location("export_default_onnx", REPO / "scripts" / "export_default_onnx.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path_factory.mktemp("onnx") / "fp32.onnx"
    meta = mod.export_fp32(_weights_path(B.WEIGHTS_FILE), out)
    assert meta["format"] == "fp32"
    return (load_default(device="cpu", weights=str(out)), load_default(device="cpu", runtime="torch"))


def _nearest(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """For each box of ``b`` the largest coordinate difference to its nearest box of ``a``."""
    if len(a) == 0:
        return np.full(len(b), np.inf)
    return np.abs(b[:, None, :] - a[None, :, :]).max(axis=2).min(axis=1)


def _shelf(seed: int, size: int, tile: int) -> np.ndarray:
    img, _ = training_sample(np.random.default_rng(seed), size=size, tile=tile, scale_range=(0.7, 1.4))
    return img[:, : size - 40]  # not square, not a multiple of 32: exercises the padding


SHELVES = [(777101, 640, 1280), (777102, 640, 960), (777103, 480, 1280)]


@pytest.mark.parametrize("seed, size, tile", SHELVES)
def test_fp32_export_gives_the_torch_boxes(fp32_pair, seed: int, size: int, tile: int) -> None:
    onnx_det, torch_det = fp32_pair
    img = _shelf(seed, size, tile)
    a, b = onnx_det.predict([img])[0], torch_det.predict([img])[0]
    assert len(a) == len(b) >= 10
    assert _nearest(np.array(a.xyxy), np.array(b.xyxy)).max() <= FP32_TOL_PX
    assert _nearest(np.array(b.xyxy), np.array(a.xyxy)).max() <= FP32_TOL_PX
    assert np.abs(np.sort(a.scores) - np.sort(b.scores)).max() <= 1e-3


def test_fp32_export_agrees_on_a_mixed_batch(fp32_pair) -> None:
    onnx_det, torch_det = fp32_pair
    x, _ = training_sample(np.random.default_rng(777104), size=320, tile=640)
    y, _ = training_sample(np.random.default_rng(777105), size=640, tile=1280)
    for da, db in zip(onnx_det.predict([x, y[:600]]), torch_det.predict([x, y[:600]])):
        assert len(da) == len(db) > 0
        assert _nearest(np.array(da.xyxy), np.array(db.xyxy)).max() <= FP32_TOL_PX


def test_shipped_int8_stays_close_to_torch(pair) -> None:
    ort_det, torch_det = pair
    assert ort_det.info["precision"] == "int8"
    near, off, total = [], 0, 0
    for k, (seed, size, tile) in enumerate(SHELVES * 2):
        img = _shelf(seed + 1000 * k, size, tile)
        a, b = ort_det.predict([img])[0], torch_det.predict([img])[0]
        assert len(b) >= 5
        # ONNX Runtime picks its int8 kernels by the CPU (AVX2, VNNI, AMX, ARM): a box scoring at
        # the threshold may flip on one and not another; a broken quantisation loses many
        assert abs(len(a) - len(b)) <= max(3, round(0.05 * len(b)))
        off, total = off + abs(len(a) - len(b)), total + len(b)
        near.append(_nearest(np.array(a.xyxy), np.array(b.xyxy)))
    assert off <= max(6, round(0.03 * total))
    d = np.concatenate(near)
    assert (d <= INT8_NEAR_PX).mean() >= INT8_NEAR_SHARE
    assert np.median(d) <= INT8_MEDIAN_PX


def _torch_reference_decode(heat_logits, dist, *, stride, score_thr, nms_iou, max_det):
    """The decode the torch runtime ran before there was a numpy one (torchvision NMS)."""
    torch = pytest.importorskip("torch")
    from torchvision.ops import nms

    heat = torch.sigmoid(heat_logits.float())
    peaks = heat == torch.nn.functional.max_pool2d(heat, 3, stride=1, padding=1)
    heat = torch.where(peaks, heat, torch.zeros_like(heat))
    b, _, h, w = heat.shape
    scores, idx = heat.view(b, -1).topk(min(max_det * 2, h * w), dim=1)
    ys = torch.div(idx, w, rounding_mode="floor").float().mul_(stride).add_(stride / 2)
    xs = (idx % w).float().mul_(stride).add_(stride / 2)
    d = dist.float().view(b, 4, -1)
    out = []
    for i in range(b):
        keep = scores[i] >= score_thr
        s, sel, x, y = scores[i][keep], idx[i][keep], xs[i][keep], ys[i][keep]
        di = d[i][:, sel]
        boxes = torch.stack([x - di[0], y - di[1], x + di[2], y + di[3]], dim=1)
        k = nms(boxes, s, nms_iou)[:max_det]
        out.append((boxes[k].numpy(), s[k].numpy()))
    return out


@pytest.mark.parametrize("score_thr", [0.05, 0.5])
def test_numpy_decode_matches_the_former_torch_decode(pair, score_thr: float) -> None:
    torch = pytest.importorskip("torch")
    _, torch_det = pair
    tiles = [_shelf(777200 + i, 640, 1280 if i % 2 else 960) for i in range(3)]
    for t in tiles:
        heat, dist = torch_det.runner(np.stack([np.ascontiguousarray(t[:, :576])]))
        (ref_b, ref_s), = _torch_reference_decode(torch.from_numpy(heat), torch.from_numpy(dist), stride=8,
                                                  score_thr=score_thr, nms_iou=0.5, max_det=1000)
        (b, s), = B.decode(heat, dist, stride=8, score_thr=score_thr, nms_iou=0.5, max_det=1000)
        assert len(b) > 0
        # the same boxes, each best first; peaks of equal score may come in either order (the
        # order of ties in torch.topk and in a numpy sort is not specified), so compare as sets
        assert np.all(np.diff(s) <= 1e-6) and np.all(np.diff(ref_s) <= 1e-6)
        mine, ref = np.lexsort(b.T[::-1]), np.lexsort(ref_b.T[::-1])
        assert np.array_equal(b[mine], ref_b[ref])
        assert np.abs(s[mine] - ref_s[ref]).max() <= 1e-6  # sigmoid rounding only


def test_one_source_of_decode_settings(pair) -> None:
    ort_det, torch_det = pair
    assert ort_det.settings == torch_det.settings == DecodeSettings.from_config(B.model_config(None))
    assert ort_det.settings.stride == 8 and ort_det.settings.input_size == 640
    assert ort_det.runtime == "onnxruntime" and torch_det.runtime == "torch"


def test_torch_decode_goes_through_the_numpy_decode(pair, monkeypatch) -> None:
    """The torch runtime hands raw outputs to the same decode function as ONNX Runtime."""
    _, torch_det = pair
    calls = []
    real = B.decode_one

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(B, "decode_one", spy)
    img, _ = training_sample(np.random.default_rng(777106), size=320, tile=640)
    torch_det.predict([img])
    assert len(calls) == 1 and calls[0]["score_thr"] == torch_det.score_floor


def test_output_json_says_which_runtime_ran(pair) -> None:
    for det in pair:
        info = describe_detector(det)
        assert info["name"] == "densedet-default"
        assert info["info"]["runtime"] == det.runtime
        assert info["info"]["device"] == "cpu"
        assert info["info"]["precision"] == ("int8" if det.runtime == "onnxruntime" else "fp32")
        assert info["info"]["weights_file"] in ("default.onnx", "default.pt")
        assert info["info"]["steps"] > 0  # the training record travels with both weights files
        # ... and its device is named apart from the one that ran (the shipped weights were
        # trained on a GPU; the runtime's "cpu" used to overwrite it)
        assert info["info"]["trained_on"] == "cuda"


def test_shipped_onnx_was_exported_from_the_shipped_weights() -> None:
    runner = B.OnnxRunner(_weights_path(B.ONNX_FILE), threads=1)
    raw = _weights_path(B.WEIGHTS_FILE).read_bytes()
    assert runner.metadata["source_sha256"] == hashlib.sha256(raw).hexdigest(), (
        "weights/default.onnx is stale: re-run scripts/export_default_onnx.py after changing default.pt")
    assert runner.format == "int8"
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(_weights_path(B.ONNX_FILE)), load_external_data=False)
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17


def test_threads_option() -> None:
    det = load_default(device="cpu", threads=1)
    assert det.runtime == "onnxruntime" and det.info["threads"] == 1
    assert load_default(device="cpu").info["threads"] == usable_cpus() >= 1
    det = load_detector("default", device="cpu", options={"threads": 1, "runtime": "onnxruntime"})
    assert det.info["threads"] == 1
    with pytest.raises(InvalidInputError, match="threads"):
        load_default(device="cpu", threads=0)


def _spins(session) -> tuple[str, str]:
    opts = session.get_session_options()
    return (opts.get_session_config_entry("session.intra_op.allow_spinning"),
            opts.get_session_config_entry("session.inter_op.allow_spinning"))


def test_onnx_runtime_threads_sleep_between_runs() -> None:
    # spinning workers kept a core busy while the main thread decoded, split and merged (a
    # 60-tile panorama: 4.6 CPU-s instead of 3.0, the same boxes)
    det = load_default(device="cpu", threads=2)
    assert _spins(det.runner.session) == ("0", "0")
    assert det.runner.session.get_session_options().intra_op_num_threads == 2


def test_only_the_command_quiets_onnx_runtimes_process_wide_logger(monkeypatch) -> None:
    import onnxruntime as ort

    from densedet_tile.detector import base

    calls = []
    monkeypatch.setattr(ort, "set_default_logger_severity", calls.append)
    monkeypatch.setattr(base, "QUIET_ONNXRUNTIME_PROCESS", False)
    load_default(device="cpu", threads=1)  # a library caller's own ONNX Runtime logging is theirs
    assert calls == []
    monkeypatch.setattr(base, "QUIET_ONNXRUNTIME_PROCESS", True)  # what densedet-tile's main sets
    load_default(device="cpu", threads=1)
    assert calls == [3]


# ---------------------------------------------------------------------------------------------
# the runtime rule
# ---------------------------------------------------------------------------------------------
def test_runtime_rule_on_a_cpu_machine(monkeypatch) -> None:
    # as on a machine without a GPU, whatever machine runs the test
    monkeypatch.setattr(base, "cuda_plausible", lambda: False)
    if sys.modules.get("torch") is not None:
        monkeypatch.setattr(sys.modules["torch"].cuda, "is_available", lambda: False)
    assert choose_runtime(device="cpu") == ("onnxruntime", "cpu")
    with pytest.warns(RuntimeWarning, match="fp16 applies on CUDA only"):  # torch would run it in fp32 here
        assert choose_runtime(device="cpu", fp16=True) == ("onnxruntime", "cpu")
    with pytest.warns(RuntimeWarning, match="fp16 applies on CUDA only"):
        assert choose_runtime(device="auto", fp16=True, weights="other.onnx") == ("onnxruntime", "cpu")
    assert choose_runtime(device="cpu", fp16=True, runtime="torch") == ("torch", "cpu")  # asked for by name
    assert choose_runtime(device="cpu", weights="ckpt.pt") == ("torch", "cpu")
    assert choose_runtime(device="auto", weights={"config": {}, "state_dict": {}}) == ("torch", "cpu")
    assert choose_runtime(device="cpu", weights="other.onnx") == ("onnxruntime", "cpu")
    assert choose_runtime(device="cpu", runtime="torch") == ("torch", "cpu")
    assert choose_runtime(device="cpu", runtime="ort") == ("onnxruntime", "cpu")


def test_runtime_rule_with_cuda(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(base, "cuda_plausible", lambda: True)
    assert choose_runtime(device="cuda") == ("torch", "cuda")
    assert choose_runtime(device="cuda:1") == ("torch", "cuda:1")
    assert choose_runtime(device="auto") == ("torch", "cuda")
    assert choose_runtime(device="auto", runtime="onnxruntime") == ("onnxruntime", "cpu")
    with pytest.raises(InvalidInputError, match="runtime=torch"):
        choose_runtime(device="cuda", runtime="onnxruntime")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert choose_runtime(device="auto") == ("onnxruntime", "cpu")


def test_runtime_rule_refusals() -> None:
    with pytest.raises(InvalidInputError, match="runtime=torch"):
        choose_runtime(device="cpu", fp16=True, runtime="onnxruntime")
    with pytest.raises(InvalidInputError, match="runtime=torch"):
        choose_runtime(device="cpu", weights="x.pt", runtime="onnxruntime")
    with pytest.raises(InvalidInputError, match="ONNX Runtime"):
        choose_runtime(device="cpu", weights="x.onnx", runtime="torch")
    with pytest.raises(InvalidInputError, match="runtime must be"):
        choose_runtime(runtime="tensorrt")
    with pytest.raises(InvalidInputError, match="device"):
        choose_runtime(device="tpu")
    with pytest.raises(InvalidInputError, match="no such file"):
        load_default(device="cpu", weights="/nonexistent/model.onnx")
    with pytest.raises(InvalidInputError, match="detector options runtime, threads"):
        load_detector("default", options={"num_classes": 2})


def test_checkpoint_and_options_reach_the_default_detector() -> None:
    det = load_detector("default", device="cpu", checkpoint=str(_weights_path(B.WEIGHTS_FILE)))
    assert det.runtime == "torch" and det.info["weights_file"].endswith("default.pt")
    det = load_detector("default", device="cpu", checkpoint=str(_weights_path(B.ONNX_FILE)))
    assert det.runtime == "onnxruntime"
    with pytest.warns(RuntimeWarning, match="fp16 applies on CUDA only"):
        det = load_detector("default", device="cpu", precision="fp16", options={"runtime": "torch"})
    assert det.runtime == "torch" and det.fp16 and det.runner.fp16  # autocast applies on CUDA only
    det.fp16 = False  # scripts/bench_gpu_default.py toggles it
    assert not det.runner.fp16
    with pytest.raises(InvalidInputError, match="torch runtime"):
        load_default(device="cpu").fp16 = True
    assert load_detector("default", device="cpu", options={"runtime": "torch"}).runtime == "torch"


def test_usable_cpus_is_the_affinity_mask(monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    if hasattr(os, "sched_getaffinity"):
        assert usable_cpus() <= len(os.sched_getaffinity(0))
    assert usable_cpus() >= 1
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # what Ray sets for a 1-CPU actor
    assert usable_cpus() == 1
    assert load_default(device="cpu").info["threads"] == 1


def test_cuda_plausible_respects_hidden_devices(monkeypatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert base.cuda_plausible() is False
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert base.cuda_plausible() is False


# ---------------------------------------------------------------------------------------------
# missing extras: one line naming them
# ---------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg
    return msg


def test_missing_onnxruntime_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError) as info:
        load_default(device="cpu")
    msg = _one_line(info.value)
    # a base dependency: the advice is the package itself, not the [onnx] extra (which brings torch)
    assert "not installed" in msg and msg.endswith("pip install onnxruntime")


def test_broken_onnxruntime_is_not_called_missing(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("numpy.core.multiarray failed to import")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "onnxruntime", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(MissingDependencyError) as info:
        load_default(device="cpu")
    msg = _one_line(info.value)
    assert "installed but cannot be imported" in msg and "numpy.core.multiarray failed" in msg
    assert msg.endswith("pip install --force-reinstall onnxruntime")


def test_a_missing_submodule_of_an_installed_package_is_not_called_missing() -> None:
    # torch is there but its compiled part is not: reinstall torch, not "install the extra"
    exc = ModuleNotFoundError("No module named 'torch._C'", name="torch._C")
    msg = str(MissingDependencyError("the built-in model on torch", "torch", "torch", exc))
    assert "installed but cannot be imported" in msg and msg.endswith("pip install --force-reinstall torch")
    gone = ModuleNotFoundError("No module named 'mmcv'", name="mmcv")
    assert "not installed" in str(MissingDependencyError("the mmdet detector", "mmcv-lite", "mmdet", gone))


def test_missing_torch_names_the_extra(monkeypatch, tmp_path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    # (a missing file is said as missing first, and one that is no torch file as such: a zip's start)
    (tmp_path / "some.pt").write_bytes(b"PK\x03\x04" + bytes(60))
    for call in (lambda: load_default(device="cpu", fp16=True, runtime="torch"),
                 lambda: load_default(device="cpu", weights=str(tmp_path / "some.pt")),
                 lambda: load_default(device="cuda"),
                 lambda: load_detector("default", device="cpu", options={"runtime": "torch"}),
                 lambda: B.ShelfNet):
        with pytest.raises(MissingDependencyError) as info:
            call()
        msg = _one_line(info.value)
        assert "'torch'" in msg and "pip install 'densedet-tile[torch]'" in msg
    # the CPU path does not need torch at all
    assert base.resolve_device("auto") == "cpu"
    assert load_default(device="auto").runtime == "onnxruntime"


def test_missing_torch_for_the_torchvision_detector_names_its_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingDependencyError) as info:
        load_detector("torchvision", config="fasterrcnn_resnet50_fpn", device="cpu")
    msg = _one_line(info.value)
    assert "'torch'" in msg and "pip install 'densedet-tile[torchvision]'" in msg


def test_cli_reports_a_missing_extra_on_one_line(tmp_path) -> None:
    img = tmp_path / "tiny.png"
    from PIL import Image

    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(img)
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from densedet_tile.cli import main\n"
        f"sys.exit(main([{str(img)!r}, '--out', {str(tmp_path / 'out')!r}, '--detector-option', 'runtime=torch', '-q']))\n"
    )
    r = _python(code)
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "densedet-tile[torch]" in lines[0], r.stderr


def test_fp16_on_the_cpu_warns_on_one_line_and_runs_onnx_without_torch(tmp_path) -> None:
    # fp16 speeds up CUDA only; on a laptop it must neither need torch nor run slower fp32 torch
    img = tmp_path / "tiny.png"
    from PIL import Image

    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(img)
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from densedet_tile.cli import main\n"
        f"sys.exit(main([{str(img)!r}, '--out', {str(out)!r}, '--precision', 'fp16', '--max-vram', '2', '-q']))\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    # the package's warnings as one line each, no file name or source line of ours
    assert len(lines) == 2, r.stderr
    assert all(ln.startswith("densedet-tile: WARNING: ") for ln in lines), r.stderr
    assert any("fp16 applies on CUDA only" in ln for ln in lines) and any("--max-vram" in ln for ln in lines)
    doc = json.loads((out / "tiny.detections.json").read_text())
    assert doc["model"]["info"]["runtime"] == "onnxruntime"


# ---------------------------------------------------------------------------------------------
# the light path imports no torch
# ---------------------------------------------------------------------------------------------
def _python(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300,
                          cwd=str(REPO))


_NO_TORCH = """
import sys
import numpy as np
import densedet_tile as dt
from densedet_tile.synth.shelves import training_sample
img, _ = training_sample(np.random.default_rng(5), size=640, tile=1280)
det = dt.load_detector('default')
n = len(det.predict([img])[0])
res = dt.detect(np.concatenate([img, img], axis=1), det, tile=640)
assert 'torch' not in sys.modules, 'torch was imported'
print(det.runtime, n, len(res))
"""


def test_onnx_path_imports_no_torch() -> None:
    r = _python(_NO_TORCH)
    assert r.returncode == 0, r.stderr[-3000:]
    runtime, n, n_big = r.stdout.split()
    assert runtime == "onnxruntime" and int(n) >= 10 and int(n_big) >= 2 * int(n) * 0.8


def test_light_path_works_when_torch_is_not_installed(tmp_path) -> None:
    """``sys.modules['torch'] = None`` makes ``import torch`` fail as in a light install."""
    out = tmp_path / "out"
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
        "from densedet_tile.cli import main\n"
        f"rc = main([{str(REPO / 'examples' / 'shelf.jpg')!r}, '--out', {str(out)!r}, '-q'])\n"
        "sys.exit(rc)\n"
    )
    r = _python(code)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((out / "shelf.detections.json").read_text())
    assert doc["model"]["info"]["runtime"] == "onnxruntime"
    assert doc["num_detections"] > 50


def test_bench_light_speed_runs(tmp_path) -> None:
    """scripts/bench_light.py (the BENCHMARKS figures) does not rot: one short round."""
    out = tmp_path / "speed.json"
    r = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_light.py"), "--json", str(out), "speed",
                        "--runtimes", "onnxruntime", "--threads", "1", "--rounds", "1", "--per-round", "1"],
                       capture_output=True, text=True, timeout=300, cwd=str(REPO))
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert doc["results"]["onnxruntime"]["tiles_per_s_best"] > 0
    assert doc["results"]["onnxruntime"]["info"] == {"runtime": "onnxruntime", "precision": "int8", "threads": 1}


def test_fp16_on_the_cpu_without_torch_says_what_runtime_torch_needs(monkeypatch) -> None:
    # the light install: the warning's hint (runtime=torch) led straight to the missing-torch error
    import importlib.util

    monkeypatch.setattr(base, "cuda_plausible", lambda: False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.warns(RuntimeWarning, match=r"runtime=torch forces torch, which needs pip install 'densedet-tile\[torch\]'"):
        assert choose_runtime(device="cpu", fp16=True) == ("onnxruntime", "cpu")
