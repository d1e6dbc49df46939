"""The ONNX Runtime adapter, run on small ONNX models with the DenseDet export signature.

The test model finds the bounding box of strongly red pixels in its (normalised) input and
also reports a fixed box in the bottom-right corner of its canvas, which lies in the padding
for any tile that is not the canvas's shape. So the tests can check channel order,
normalisation, letterboxing and the mapping back to tile pixels.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
torch = pytest.importorskip("torch")

from densedet_tile.detector import onnx_adapter  # noqa: E402
from densedet_tile.detector.registry import load_detector  # noqa: E402
from densedet_tile.errors import DetectorError, InvalidInputError  # noqa: E402


class RedBox(torch.nn.Module):
    """img (1, 3, H, W) -> det_bboxes (2, 5), det_labels (2,)."""

    def forward(self, img):
        red = (img[0, 0] > 1.0) & (img[0, 2] < 0.0)  # R high, B low (ImageNet-normalised)
        m = red.float()
        cols, rows = m.amax(0), m.amax(1)
        w = torch.tensor(img.shape[3], dtype=torch.float32)
        h = torch.tensor(img.shape[2], dtype=torch.float32)
        x1 = torch.argmax(cols).float()
        x2 = w - torch.argmax(torch.flip(cols, [0])).float()
        y1 = torch.argmax(rows).float()
        y2 = h - torch.argmax(torch.flip(rows, [0])).float()
        found = torch.stack([x1, y1, x2, y2, cols.amax() * 0.9]).reshape(1, 5)
        corner = torch.stack([w - 4, h - 4, w, h, torch.tensor(0.8)]).reshape(1, 5)
        return torch.cat([found, corner]), torch.tensor([0, 1], dtype=torch.int64)


def export(path, h, w, dynamic=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and trace notes
        torch.onnx.export(
            RedBox(), (torch.zeros(1, 3, h, w),), str(path), input_names=["img"],
            output_names=["det_bboxes", "det_labels"], dynamo=False,
            dynamic_axes={"img": {2: "h", 3: "w"}} if dynamic else None,
        )
    return str(path)


@pytest.fixture(scope="module")
def model_64x96(tmp_path_factory):
    return export(tmp_path_factory.mktemp("onnx") / "red_64x96.onnx", 64, 96)


def red_tile(h, w, box, colour=(230, 20, 20)):
    t = np.full((h, w, 3), 90, np.uint8)
    x1, y1, x2, y2 = box
    t[y1:y2, x1:x2] = colour
    return t


def test_reads_the_input_size_from_the_model(model_64x96):
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu")
    assert det.model_hw == (64, 96)
    assert det.input_size == 64  # the side at which the engine's square tiles fit the canvas whole
    assert det.name == "onnx:red_64x96"
    assert det.info["model_input"] == [1, 3, 64, 96]


@pytest.mark.parametrize("shape,box", [((100, 160), (40, 20, 80, 50)), ((200, 90), (10, 100, 60, 190)),
                                        ((64, 96), (0, 0, 30, 64))])
def test_boxes_come_back_in_tile_pixels(model_64x96, shape, box):
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5)
    (d,) = det.predict([red_tile(*shape, box)])
    h, w = shape
    scale = min(64 / h, 96 / w)
    tol = 1.5 / scale + 0.5  # one model pixel of resampling blur, in tile pixels
    assert d.labels[0] == 0 and d.scores[0] == pytest.approx(0.9)
    np.testing.assert_allclose(d.xyxy[0], box, atol=tol)
    # the corner box of the canvas is in the padding unless the tile fills the canvas exactly
    fills = abs(h * scale - 64) < 1 and abs(w * scale - 96) < 1
    assert len(d) == (2 if fills else 1)
    if fills:
        np.testing.assert_allclose(d.xyxy[1], [w - 4 / scale, h - 4 / scale, w, h], atol=tol)


def test_through_the_engine_tiles_reach_the_model_at_the_runs_scale(model_64x96, monkeypatch):
    # the engine resizes each tile to the run's input size; the adapter must neither shrink it
    # again (a longer-side input size on a non-square canvas) nor enlarge it back to the canvas
    # (a run asking a smaller input size than the detector was built with)
    import densedet_tile as dt

    scales: list[float] = []
    real = onnx_adapter.letterbox

    def spy(tile, **kw):
        x, scale = real(tile, **kw)
        scales.append(scale)
        return x, scale

    monkeypatch.setattr(onnx_adapter, "letterbox", spy)
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5)
    image = red_tile(256, 256, (100, 90, 140, 150))
    res = dt.detect_image(image, det, tile=128, overlap=0.25, device="cpu")
    assert scales and set(scales) == {1.0}
    np.testing.assert_allclose(res.detections.xyxy[0], [100, 90, 140, 150], atol=4)
    scales.clear()
    dt.detect_image(image, det, tiling=dt.TileSpec(tile=128, overlap=0.25), run=dt.RunSpec(input_size=48, device="cpu"))
    assert scales and set(scales) == {1.0}  # 48 px tiles padded, not enlarged to 64
    # a whole image of the canvas's shape at the canvas's longer side (--input-size 96) fills it
    scales.clear()
    wide = onnx_adapter.build(checkpoint=model_64x96, device="cpu", input_size=96, score_thr=0.5)
    dt.detect_image(red_tile(128, 192, (20, 20, 60, 60)), wide, tile=192, device="cpu")
    assert scales == [1.0]
    with pytest.raises(InvalidInputError, match="larger than its fixed 64x96 input"):
        onnx_adapter.build(checkpoint=model_64x96, device="cpu", input_size=97)


def test_channel_order_is_rgb(model_64x96):
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5)
    blue = red_tile(64, 96, (10, 10, 40, 40), colour=(20, 20, 230))
    (d,) = det.predict([blue])
    assert 0 not in d.labels.tolist()  # a blue patch is not seen as red


def test_batch_of_mixed_tiles_is_run_one_by_one(model_64x96):
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5)
    tiles = [red_tile(64, 96, (5, 5, 20, 20)), red_tile(120, 120, (60, 30, 100, 90))]
    a, b = det.predict(tiles)
    assert a.xyxy[0].tolist() == det.predict(tiles[:1])[0].xyxy[0].tolist()
    np.testing.assert_allclose(b.xyxy[0], [60, 30, 100, 90], atol=3)
    assert det.predict([]) == []


def test_score_threshold(model_64x96):
    import densedet_tile as dt

    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.85)
    assert det.score_thr == 0.85 and det.score_floor == pytest.approx(0.75)
    tile = red_tile(64, 96, (5, 5, 20, 20))
    # predict reaches a little below the threshold (for the engine's count range) ...
    (d,) = det.predict([tile])
    assert sorted(d.scores.tolist()) == [pytest.approx(0.8), pytest.approx(0.9)]
    # ... and the engine serves the threshold, counting the box below it
    # (the image as one tile at 96 px fills the 64x96 canvas, so the corner box is seen)
    res = dt.detect_image(tile, det, tile=96, input_size=96, device="cpu")
    assert res.detections.scores.tolist() == [pytest.approx(0.9)]
    assert (res.count_range.low, res.count_range.count, res.count_range.high) == (1, 1, 2)


def test_explicit_input_size_pads_without_upscaling(model_64x96):
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", input_size=48, score_thr=0.5)
    assert det.input_size == 48
    x, scale = onnx_adapter.letterbox(red_tile(48, 40, (0, 0, 5, 5)), height=64, width=96, upscale=False)
    assert scale == 1.0 and x.shape == (1, 3, 64, 96)
    assert np.all(x[0, :, 48:, :] == 0) and np.all(x[0, :, :, 40:] == 0)  # padded bottom-right
    (d,) = det.predict([red_tile(48, 40, (8, 12, 30, 40))])
    np.testing.assert_allclose(d.xyxy[0], [8, 12, 30, 40], atol=1e-4)


class _Feeds:
    """An ONNX Runtime session that keeps what it was fed."""

    def __init__(self, session):
        self.session, self.fed = session, []

    def run(self, names, feed):
        self.fed.append(next(iter(feed.values())).copy())
        return self.session.run(names, feed)


def test_a_tile_the_adapter_shrinks_reaches_the_model_as_the_engines_resize_of_it(model_64x96):
    # a tile larger than the canvas that the engine did not resize first was shrunk with Pillow's
    # BOX filter, while the adapter declares bilinear and the engine resizes with its OpenCV-style
    # sampler: the model saw other pixels than the engine's resize of that tile to that size
    from densedet_tile.detector.base import resize_filter_of
    from densedet_tile.tiler.resize import resize_to

    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5)
    feeds = det._session = _Feeds(det._session)
    tile = np.random.default_rng(3).integers(0, 256, (160, 120, 3), np.uint8)  # fine texture: filters differ
    by_engine, _ = resize_to(tile, 64, filter=resize_filter_of(det))
    assert by_engine.shape == (64, 48, 3)  # the size the letterbox fits the tile to in the 64x96 canvas
    det.predict([tile])
    det.predict([by_engine])
    assert len(feeds.fed) == 2
    np.testing.assert_array_equal(feeds.fed[0], feeds.fed[1])
    # and the public letterbox enlarges with the engine's sampler too
    small = tile[:32, :48]
    enlarged, _ = resize_to(small, 96, filter="bilinear")
    x, scale = onnx_adapter.letterbox(small, height=64, width=96)
    assert scale == 2.0
    np.testing.assert_array_equal(x, onnx_adapter.letterbox(enlarged, height=64, width=96)[0])


def test_letterbox_normalises_imagenet_style():
    tile = np.zeros((2, 2, 3), np.uint8)
    tile[..., 0] = 255
    x, scale = onnx_adapter.letterbox(tile, height=4, width=4, upscale=False)
    assert scale == 1.0
    np.testing.assert_allclose(x[0, :, 0, 0], [(255 - 123.675) / 58.395, -116.28 / 57.12, -103.53 / 57.375], rtol=1e-6)


def test_dynamic_model_needs_an_input_size(tmp_path):
    path = export(tmp_path / "dyn.onnx", 32, 32, dynamic=True)
    with pytest.raises(DetectorError, match="no fixed size.*input_size"):
        onnx_adapter.build(checkpoint=path, device="cpu")
    det = onnx_adapter.build(checkpoint=path, device="cpu", input_size=64, score_thr=0.5)
    assert det.model_hw == (64, 64)
    (d,) = det.predict([red_tile(64, 50, (10, 10, 30, 30))])
    np.testing.assert_allclose(d.xyxy[0], [10, 10, 30, 30], atol=1e-4)


def test_bad_arguments(tmp_path, model_64x96):
    with pytest.raises(InvalidInputError, match="required"):
        onnx_adapter.build(checkpoint=None)
    with pytest.raises(InvalidInputError, match="no such file"):
        onnx_adapter.build(checkpoint=str(tmp_path / "none.onnx"))
    with pytest.raises(InvalidInputError, match=r"takes no config \(--config\)"):
        onnx_adapter.build(config="x.py", checkpoint=model_64x96)
    with pytest.raises(InvalidInputError, match="unknown option"):
        onnx_adapter.build(checkpoint=model_64x96, colour="red")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="bad.onnx: cannot be loaded"):
        onnx_adapter.build(checkpoint=str(bad), device="cpu")
    for bad in (0, [1, 2], "abc", [1, 2, float("nan")]):  # (mean=0 was a TypeError from deep inside)
        with pytest.raises(InvalidInputError, match="mean and std need 3 numbers each"):
            onnx_adapter.build(checkpoint=model_64x96, device="cpu", mean=bad)
    det = onnx_adapter.build(checkpoint=model_64x96, device="cpu")
    with pytest.raises(InvalidInputError, match="tile 0"):
        det.predict([np.zeros((4, 4, 3), np.float32)])


def test_a_model_with_two_outputs_of_another_kind_is_refused_when_built():
    from importlib import resources

    heat = resources.files("densedet_tile.detector") / "weights" / "default.onnx"  # heatmap and distances
    with pytest.raises(DetectorError, match=r"heat_logits \(\?, 1, \?, \?\) and dist .* are not det_bboxes"):
        load_detector("onnx", checkpoint=str(heat), device="cpu", input_size=640)


def test_the_device_is_where_onnx_runtime_runs_it(model_64x96, monkeypatch):
    import densedet_tile as dt

    det = load_detector("onnx", checkpoint=model_64x96, device="cpu")
    assert det.device == "cpu" and det.info["device"] == "cpu"
    assert det.info["execution_provider"] == "CPUExecutionProvider"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # torch would say a GPU is there
    res = dt.detect_image(red_tile(64, 96, (10, 10, 30, 30)), det)
    assert res.settings["device"] == "cpu" and res.model["info"]["execution_provider"] == "CPUExecutionProvider"


def test_registry_builds_the_onnx_adapter(model_64x96):
    det = load_detector("onnx", checkpoint=model_64x96, device="cpu", score_thr=0.3)
    assert isinstance(det, onnx_adapter.OnnxDetector) and det.score_thr == 0.3
    # ONNX Runtime's workers sleep between runs (they spun through the merge, burning a core)
    opts = det._session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    det = load_detector("onnx", checkpoint=model_64x96, device="cpu", options={"threads": 1})
    assert det._session.get_session_options().intra_op_num_threads == 1


def test_cli_runs_an_onnx_model_on_an_image(tmp_path, model_64x96):
    import json
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(red_tile(200, 300, (100, 30, 140, 70))).save(img)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "densedet_tile", str(img), "--detector", "onnx", "--checkpoint", model_64x96,
         "--device", "cpu", "--tile", "128", "--overlap", "0.5", "--score-thr", "0.5", "--out", str(out), "-q"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "shelf.detections.json").read_text())
    assert doc["model"]["name"] == "onnx:red_64x96" and doc["num_tiles"] > 1
    boxes = np.array(doc["boxes"]).reshape(-1, 4)
    assert len(boxes) >= 1 and set(doc["labels"]) == {0}
    assert np.abs(boxes - [100, 30, 140, 70]).max(axis=1).min() <= 4  # the red patch, found whole
    assert (boxes[:, :2] >= [100 - 4, 30 - 4]).all() and (boxes[:, 2:] <= [140 + 4, 70 + 4]).all()


def test_outputs_of_unknown_rank_are_not_refused(tmp_path):
    # an export whose det_bboxes comes out of an If node declares no shape: it must still build
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def branch(name, shape):
        bb = helper.make_tensor(name + "b", TensorProto.FLOAT, shape, [1, 1, 10, 10, 0.9, 5, 5, 20, 20, 0.8])
        node = helper.make_node("Constant", [], [name + "o"], value=bb)
        return helper.make_graph([node], name, [], [helper.make_tensor_value_info(name + "o", TensorProto.FLOAT, None)])

    nodes = [helper.make_node("ReduceMax", ["img"], ["mx"], keepdims=0), helper.make_node("Greater", ["mx", "z"], ["c"]),
             helper.make_node("If", ["c"], ["det_bboxes"], then_branch=branch("t", [2, 5]),
                              else_branch=branch("e", [1, 2, 5])),
             helper.make_node("Identity", ["lbc"], ["det_labels"])]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 64, 96])],
        [helper.make_tensor_value_info("det_bboxes", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("det_labels", TensorProto.INT64, None)],
        initializer=[helper.make_tensor("z", TensorProto.FLOAT, [], [-1.0]),
                     helper.make_tensor("lbc", TensorProto.INT64, [2], [0, 0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "noshape.onnx"
    onnx.save(model, str(path))
    det = load_detector("onnx", checkpoint=str(path), device="cpu")
    (out,) = det.predict([np.zeros((64, 96, 3), np.uint8)])
    assert len(out) == 2


def test_the_device_names_the_cuda_device_the_session_runs_on():
    class Session:
        def __init__(self, providers, device_id=None):
            self.providers, self.device_id = providers, device_id

        def get_providers(self):
            return self.providers

        def get_provider_options(self):
            return {"CUDAExecutionProvider": {"device_id": self.device_id}} if self.device_id is not None else {}

    assert onnx_adapter._device_of(Session(["CUDAExecutionProvider", "CPUExecutionProvider"], "1")) == "cuda:1"
    assert onnx_adapter._device_of(Session(["CUDAExecutionProvider"])) == "cuda:0"
    assert onnx_adapter._device_of(Session(["CPUExecutionProvider"])) == "cpu"


def test_a_cuda_provider_listed_but_not_started_is_said_at_build(tmp_path, monkeypatch):
    # onnxruntime-gpu lists its CUDA provider even when CUDA or cuDNN cannot be loaded and falls
    # back to the CPU with a warning of its own; every image then failed with advice to build
    # the detector on the device the user had asked for
    ort = pytest.importorskip("onnxruntime")
    from densedet_tile import DetectorError
    from densedet_tile.detector import onnx_adapter

    model = export(str(tmp_path / "red.onnx"), 64, 96)
    real = ort.get_available_providers
    if "CUDAExecutionProvider" in real():
        pytest.skip("a working CUDA provider may start here")
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"] + real())
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Specified provider", category=UserWarning)  # ORT's own
        with pytest.raises(DetectorError, match="lists its CUDA provider but could not start it.*--device cpu"):
            onnx_adapter.build(checkpoint=model, device="cuda")
        with pytest.warns(RuntimeWarning, match="could not start it.*running on the CPU"):
            det = onnx_adapter.build(checkpoint=model, device="auto")
    assert det.device == "cpu"


class RedBoxThree(torch.nn.Module):
    """img (1, 3, H, W) -> boxes (1, 2, 4), scores (1, 2), labels (1, 2): RedBox's boxes as a
    torchvision-style export gives them (three outputs, a batch axis)."""

    def forward(self, img):
        b, lab = RedBox()(img)
        return b[:, :4].unsqueeze(0), b[:, 4].unsqueeze(0), lab.unsqueeze(0)


def export_three(path, h, w, names):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RedBoxThree(), (torch.zeros(1, 3, h, w),), str(path), input_names=["images"],
                          output_names=list(names), dynamo=False)
    return str(path)


@pytest.mark.parametrize("names", [("boxes", "scores", "labels"), ("labels", "pred_boxes", "conf"),
                                   ("out0", "out1", "out2")])
def test_a_three_output_export_gives_the_boxes_of_the_two_output_one(tmp_path, model_64x96, names):
    # named outputs are matched by name, in any order; unnamed ones by shape (boxes end in 4)
    # and type (labels are integers)
    order = {"labels": (2, 0, 1), "boxes": (0, 1, 2), "out0": (0, 1, 2)}[names[0]]
    three = export_three(tmp_path / "three.onnx", 64, 96, names)
    if order != (0, 1, 2):  # re-export with the outputs in the named order
        class Reordered(RedBoxThree):
            def forward(self, img):
                outs = super().forward(img)
                return tuple(outs[k] for k in order)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(Reordered(), (torch.zeros(1, 3, 64, 96),), three, input_names=["images"],
                              output_names=list(names), dynamo=False)
    tile = red_tile(100, 160, (40, 20, 80, 50))
    (want,) = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5).predict([tile])
    (got,) = onnx_adapter.build(checkpoint=three, device="cpu", score_thr=0.5).predict([tile])
    np.testing.assert_allclose(got.xyxy, want.xyxy)
    np.testing.assert_allclose(got.scores, want.scores)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_three_outputs_that_cannot_be_told_apart_are_refused(tmp_path):
    class AllFloat(torch.nn.Module):
        def forward(self, img):
            v = img.mean().reshape(1)
            return v.repeat(3, 4), v.repeat(3), v.repeat(3)

    path = tmp_path / "float3.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(AllFloat(), (torch.zeros(1, 3, 32, 32),), str(path), input_names=["img"],
                          output_names=["a", "b", "c"], dynamo=False)
    with pytest.raises(DetectorError, match="cannot be told"):
        onnx_adapter.build(checkpoint=str(path), device="cpu")


def test_label_offset_takes_a_torchvision_style_background_class_off(tmp_path, model_64x96):
    # torchvision counts the background as class 0: its exports label the first real class 1
    tile = red_tile(100, 160, (40, 20, 80, 50))
    (plain,) = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5).predict([tile])
    (off,) = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5, label_offset=1).predict([tile])
    assert plain.labels.tolist() == [0] and len(off) == 0  # the red box's label 0 is the background now
    det = load_detector("onnx", checkpoint=model_64x96, device="cpu", options={"label_offset": 1})
    assert det.info["label_offset"] == 1
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(InvalidInputError, match="label_offset must be an integer >= 0"):
            onnx_adapter.build(checkpoint=model_64x96, device="cpu", label_offset=bad)


def test_a_model_wanting_a_second_input_is_refused_when_built(tmp_path):
    class TwoInputs(torch.nn.Module):
        def forward(self, img, scale_factor):
            b, lab = RedBox()(img)
            return b * scale_factor[0], lab

    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(TwoInputs(), (torch.zeros(1, 3, 64, 96), torch.ones(1)), str(path),
                          input_names=["img", "scale_factor"], output_names=["det_bboxes", "det_labels"], dynamo=False)
    with pytest.raises(DetectorError, match=r"takes 2 inputs \('img' and 'scale_factor'\)"):
        onnx_adapter.build(checkpoint=str(path), device="cpu")


def test_a_float16_export_is_fed_float16_and_gives_the_float32_boxes(tmp_path, model_64x96):
    import onnx
    from onnx import TensorProto, helper

    # the float32 model behind a Cast: its input is float16, as an fp16 export's is
    m = onnx.load(model_64x96)
    old = m.graph.input[0]
    m.graph.input.remove(old)
    m.graph.input.insert(0, helper.make_tensor_value_info("img16", TensorProto.FLOAT16, [1, 3, 64, 96]))
    m.graph.node.insert(0, helper.make_node("Cast", ["img16"], [old.name], to=TensorProto.FLOAT))
    path = tmp_path / "fp16_in.onnx"
    onnx.save(m, str(path))
    tile = red_tile(64, 96, (40, 20, 80, 50))
    (want,) = onnx_adapter.build(checkpoint=model_64x96, device="cpu", score_thr=0.5).predict([tile])
    (got,) = onnx_adapter.build(checkpoint=str(path), device="cpu", score_thr=0.5).predict([tile])
    np.testing.assert_allclose(got.xyxy, want.xyxy, atol=0.5)
    np.testing.assert_array_equal(got.labels, want.labels)


def test_a_model_with_one_output_points_to_the_yolo_adapter(tmp_path):
    # a YOLO export (output0) given to --detector onnx was refused without the pointer the
    # two-output path gives (an outside review)
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["images"], ["output0"], keepdims=1)], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "yolo_like.onnx"
    onnx.save(model, str(path))
    with pytest.raises(DetectorError, match=r"got \['output0'\] \(for a YOLO export: --detector yolo\)"):
        load_detector("onnx", checkpoint=str(path), device="cpu")


def test_cuda_asked_of_an_onnx_runtime_without_it_says_what_to_do(model_64x96, monkeypatch):
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(InvalidInputError, match="no CUDA provider here.*onnxruntime-gpu.*device 'cpu'.*--device"):
        load_detector("onnx", checkpoint=model_64x96, device="cuda")


def test_class_ids_given_as_floats_are_rounded_not_cut(tmp_path):
    # an export that computes its labels in floats: 0.9999999 is class 1 (astype cut it to 0)
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["bb"], ["det_bboxes"]), helper.make_node("Identity", ["lb"], ["det_labels"])],
        "g", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 64, 96])],
        [helper.make_tensor_value_info("det_bboxes", TensorProto.FLOAT, [2, 5]),
         helper.make_tensor_value_info("det_labels", TensorProto.FLOAT, [2])],
        initializer=[helper.make_tensor("bb", TensorProto.FLOAT, [2, 5], [1, 1, 10, 10, 0.9, 5, 5, 20, 20, 0.8]),
                     helper.make_tensor("lb", TensorProto.FLOAT, [2], [0.9999999, 2.0000002])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "float_labels.onnx"
    onnx.save(model, str(path))
    (out,) = load_detector("onnx", checkpoint=str(path), device="cpu").predict([np.zeros((64, 96, 3), np.uint8)])
    assert out.labels.tolist() == [1, 2]


@pytest.mark.parametrize("verb", ["detect", "batch"])
def test_a_run_counting_at_the_adapters_ap_threshold_is_told_so(tmp_path, model_64x96, verb):
    # without --score-thr the mmdet, ONNX and torchvision adapters keep boxes down to 0.05 (an AP
    # evaluation setting): the count then holds every doubtful box, and the user is told once
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(red_tile(200, 300, (100, 30, 140, 70))).save(img)

    def run(*extra):
        out = tmp_path / f"out{len(extra)}"
        argv = [sys.executable, "-m", "densedet_tile"] + (["batch"] if verb == "batch" else []) + [
            str(img), "--detector", "onnx", "--checkpoint", model_64x96, "--device", "cpu", "--tile", "128",
            "--out", str(out)] + (["--ray", "none"] if verb == "batch" else []) + list(extra)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        return [line for line in r.stderr.splitlines() if "meant for AP evaluation" in line]

    said = run()
    assert len(said) == 1 and "--score-thr" in said[0] and "0.05" in said[0]
    assert run("--score-thr", "0.05") == []  # asked for: the user chose it


def test_the_ap_threshold_warning_knows_the_threshold_given_as_a_detector_option(tmp_path, model_64x96):
    # the adapters take score_thr as a detector option too: a run at 0.5 was told it counted at 0.05
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(red_tile(200, 300, (100, 30, 140, 70))).save(img)
    r = subprocess.run([sys.executable, "-m", "densedet_tile", str(img), "--detector", "onnx", "--checkpoint",
                        model_64x96, "--device", "cpu", "--tile", "128", "--detector-option", "score_thr=0.5",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "meant for AP evaluation" not in r.stderr


def test_batch_says_the_ap_threshold_warning_only_once_it_counts(tmp_path, model_64x96):
    # not before a usage error or a detector that cannot be built, as detect
    import subprocess
    import sys

    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(red_tile(200, 300, (100, 30, 140, 70))).save(img)
    r = subprocess.run([sys.executable, "-m", "densedet_tile", "batch", str(img), "--detector", "onnx",
                        "--checkpoint", str(tmp_path / "missing.onnx"), "--device", "cpu", "--ray", "none",
                        "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "meant for AP evaluation" not in r.stderr, r.stderr[-2000:]


def test_an_export_of_a_fixed_batch_over_one_is_refused_when_loaded(tmp_path):
    # it loaded, and every tile then failed in onnxruntime's own words (an outside review)
    path = tmp_path / "batch2.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RedBox(), (torch.zeros(2, 3, 64, 64),), str(path), input_names=["img"],
                          output_names=["det_bboxes", "det_labels"], dynamo=False)
    with pytest.raises(DetectorError, match=r"batch2\.onnx: input 'img' takes a batch of exactly 2 images .*export "
                                            r"with a batch of 1 or a dynamic batch"):
        onnx_adapter.build(checkpoint=str(path), device="cpu")


@pytest.mark.parametrize("order", ["dets-first", "labels-first"])
@pytest.mark.parametrize("names", [("dets", "labels"), ("out_a", "out_b")], ids=["named", "unnamed"])
def test_two_outputs_are_read_in_either_order(tmp_path, order, names):
    # an export listing labels (1, n) before dets (1, n, 5) was refused as "not det_bboxes and
    # det_labels", pointing to the YOLO adapter (an outside review): the boxes are the output with
    # one axis more, whatever the order or the names
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    dets = helper.make_tensor("bb", TensorProto.FLOAT, [1, 2, 5], [1, 2, 30, 40, 0.9, 50, 6, 80, 60, 0.8])
    labels = helper.make_tensor("lb", TensorProto.INT64, [1, 2], [3, 1])
    outs = [helper.make_tensor_value_info(names[0], TensorProto.FLOAT, [1, 2, 5]),
            helper.make_tensor_value_info(names[1], TensorProto.INT64, [1, 2])]
    nodes = [helper.make_node("Identity", ["bb"], [names[0]]), helper.make_node("Identity", ["lb"], [names[1]])]
    if order == "labels-first":
        outs, nodes = outs[::-1], nodes[::-1]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 3, 64, 96])],
                              outs, initializer=[dets, labels])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"two_{order}.onnx"
    onnx.save(model, str(path))
    (out,) = load_detector("onnx", checkpoint=str(path), device="cpu", score_thr=0.5).predict(
        [np.zeros((64, 96, 3), np.uint8)])
    np.testing.assert_allclose(out.xyxy, [[1, 2, 30, 40], [50, 6, 80, 60]], atol=1e-4)
    np.testing.assert_allclose(out.scores, [0.9, 0.8], atol=1e-6)
    assert out.labels.tolist() == [3, 1]


def test_one_dynamic_side_keeps_the_fixed_one(tmp_path):
    # an export of dynamic height and fixed width 96: --input-size gave both sides, the model
    # loaded and every image failed in onnxruntime ("Got: 64 Expected: 96"; an outside review)
    path = tmp_path / "dyn_h.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(RedBox(), (torch.zeros(1, 3, 64, 96),), str(path), input_names=["img"],
                          output_names=["det_bboxes", "det_labels"], dynamo=False, dynamic_axes={"img": {2: "h"}})
    det = onnx_adapter.build(checkpoint=str(path), device="cpu", score_thr=0.5, input_size=64)
    assert det.model_hw == (64, 96)
    (d,) = det.predict([red_tile(100, 160, (40, 20, 80, 50))])
    np.testing.assert_allclose(d.xyxy[0], (40, 20, 80, 50), atol=1.5 / 0.6 + 0.5)
    with pytest.raises(InvalidInputError, match=r"input size 128 is larger than the 96 px its input 'img' fixes"):
        onnx_adapter.build(checkpoint=str(path), device="cpu", input_size=128)
