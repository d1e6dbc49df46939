"""The YOLO adapter, on small models with the Ultralytics output layouts.

The models here are "bright cells": a canvas cut into 8x8 cells (the stride-8 anchor points of a
YOLO head), each cell scoring its mean colour (class 0 "white": sigmoid(20 (G - 0.7)), class 1
"red": sigmoid(20 (R - G - 0.5))) with the cell itself as its box; the anchor points of strides
16 and 32 are there with score 0, so the output has the real anchor count. A white or red block
aligned to the canvas's cells is therefore detected exactly where it is, and the letterbox grey
is not, which lets the tests check letterboxing, padding, quantisation and tiling box by box.

The torch versions (v8 head, v5 head with objectness, end-to-end with NMS) are exported to ONNX
here; the TFLite versions (float32, float16, int8) are fixtures written by
``scripts/make_yolo_tflite_fixture.py`` from the same function.
"""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.detector import yolo_adapter as ya
from densedet_tile.detector.registry import load_detector
from densedet_tile.errors import DetectorError, InvalidInputError, MissingDependencyError

FIXTURES = Path(__file__).parent / "fixtures"
WHITE, RED, DARK = (255, 255, 255), (230, 20, 20), 30
CLASS_W = np.array([[0.0, 20.0, 0.0], [20.0, -20.0, 0.0]], np.float32)
CLASS_B = np.array([-14.0, -10.0], np.float32)


def anchors(h, w):
    """(N, 4) cx, cy, w, h canvas pixels of the anchor points of strides 8, 16, 32."""
    rows = []
    for s in (8, 16, 32):
        yy, xx = np.mgrid[0:-(-h // s), 0:-(-w // s)]
        rows.append(np.stack([(xx + 0.5) * s, (yy + 0.5) * s, np.full(xx.shape, s), np.full(xx.shape, s)], -1).reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def tile_with(h, w, blocks, background=DARK):
    """An h x w tile of ``background`` with coloured blocks {(x1, y1, x2, y2): colour}."""
    t = np.full((h, w, 3), background, np.uint8)
    for (x1, y1, x2, y2), colour in blocks.items():
        t[y1:y2, x1:x2] = colour
    return t


def expected(blocks):
    """Boxes and labels the bright-cells model should report for ``blocks``, sorted."""
    return sorted((list(map(float, b)), 0 if c == WHITE else 1) for b, c in blocks.items())


def got(d):
    return sorted((np.round(b, 3).tolist(), int(lab)) for b, lab in zip(d.xyxy, d.labels))


def assert_boxes(d, blocks, atol=1e-3):
    want, have = expected(blocks), got(d)
    assert [lab for _, lab in have] == [lab for _, lab in want], (have, want)
    if want:
        np.testing.assert_allclose([b for b, _ in have], [b for b, _ in want], atol=atol)


# -- torch models exported to ONNX ------------------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    return pytest.importorskip("torch")


def bright_cells_module(torch, h, w, layout="v8", nc=2):
    nn, F = torch.nn, torch.nn.functional
    cells = (h // 8) * (w // 8)
    boxes = anchors(h, w)

    class BrightCells(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("boxes", torch.from_numpy(boxes))
            self.register_buffer("weight", torch.from_numpy(CLASS_W[:nc].reshape(nc, 3, 1, 1).copy()))
            self.register_buffer("bias", torch.from_numpy(CLASS_B[:nc].copy()))

        def forward(self, x):
            b = x.shape[0]
            s = torch.sigmoid(F.conv2d(F.avg_pool2d(x, 8), self.weight, self.bias)).flatten(2)  # (B, nc, cells)
            s = torch.cat([s, torch.zeros(b, nc, self.boxes.shape[0] - cells)], 2)
            xywh = self.boxes.t().unsqueeze(0).expand(b, 4, -1)
            if layout == "v8":
                return torch.cat([xywh, s], 1)  # (B, 4 + nc, N), pixels
            # v5: three anchors per point; the 2nd and 3rd are larger duplicates with lower
            # objectness, which NMS must remove; scores = objectness x class probability
            rows = []
            for k, (grow, obj) in enumerate([(1.0, 1.0), (1.1, 0.9), (1.05, 0.8)]):
                box = xywh * torch.tensor([1.0, 1.0, grow, grow]).reshape(1, 4, 1)
                rows.append(torch.cat([box, torch.full((b, 1, box.shape[2]), obj), s], 1))
            return torch.cat(rows, 2).transpose(1, 2)  # (B, 3N, 5 + nc)

    return BrightCells()


class EndToEnd:
    """(B, 10, 6) x1, y1, x2, y2, score, class: two fixed boxes (one low in the canvas), then zeros."""

    ROWS = np.zeros((10, 6), np.float32)
    ROWS[0] = [8, 16, 24, 40, 0.9, 1]
    ROWS[1] = [4, 58, 12, 64, 0.8, 0]

    @classmethod
    def module(cls, torch):
        class M(torch.nn.Module):
            def forward(self, x):
                rows = torch.from_numpy(cls.ROWS).unsqueeze(0)
                return rows.expand(x.shape[0], -1, -1) + 0 * x.mean()

        return M()


def export(torch, module, path, h, w, *, dynamic_batch=False, names=None):
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and trace notes
        torch.onnx.export(
            module, (torch.zeros(1, 3, h, w),), str(path), input_names=["images"], output_names=["output0"],
            opset_version=13, dynamo=False,
            dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}} if dynamic_batch else None,
        )
    if names is not None:  # what the Ultralytics exporter writes
        m = onnx.load(str(path))
        for k, v in {"names": names, "stride": "32", "task": "detect", "imgsz": f"[{h}, {w}]"}.items():
            m.metadata_props.add(key=k, value=v)
        onnx.save(m, str(path))
    return str(path)


@pytest.fixture(scope="module")
def models(torch, tmp_path_factory):
    d = tmp_path_factory.mktemp("yolo")
    return {
        "v8": export(torch, bright_cells_module(torch, 64, 64), d / "v8.onnx", 64, 64,
                     names="{0: 'white', 1: 'red'}"),
        "v8_64x96": export(torch, bright_cells_module(torch, 64, 96), d / "v8_64x96.onnx", 64, 96),
        "v8_batch": export(torch, bright_cells_module(torch, 64, 64), d / "v8_batch.onnx", 64, 64, dynamic_batch=True),
        "v5": export(torch, bright_cells_module(torch, 64, 64, "v5"), d / "v5.onnx", 64, 64),
        "v5_1class": export(torch, bright_cells_module(torch, 64, 64, "v5", nc=1), d / "v5_1class.onnx", 64, 64),
        "e2e": export(torch, EndToEnd.module(torch), d / "e2e.onnx", 64, 64),
    }


def tflite(kind):
    pytest.importorskip("ai_edge_litert")
    return str(FIXTURES / f"bright_cells_{kind}.tflite")


# -- pure parts -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,canvas,layout", [
    ((1, 84, 8400), (640, 640), "v8"),          # COCO v8n/v11n
    ((1, 5, 8400), (640, 640), "v8"),           # one class (SKU-110K)
    ((1, 25200, 85), (640, 640), "v5"),         # COCO v5
    ((1, 25200, 6), (640, 640), "v5"),          # one-class v5: not end-to-end, though 6 wide
    ((1, 300, 6), (640, 640), "end2end"),       # NMS inside the export
    ((1, 1000, 6), (640, 640), "end2end"),      # max_det=1000 export: still NMS output
    ((1, 3 * 34000, 6), (640, 640), "v5"),      # one-class v5 with a P2 head (strides 4-32)
    ((4, 6, 84), (64, 64), "v8"),
    ((1, 6, 10500), (640, 640), "v8"),          # other strides: channels first
])
def test_output_layout_from_the_shape(shape, canvas, layout):
    assert ya.output_layout(shape, canvas) == layout


@pytest.mark.parametrize("shape", [(1, 7, 3), (1, 84), (1, 3, 4)])
def test_unknown_output_layout_names_the_shape(shape):
    with pytest.raises(DetectorError, match=r"output of shape \(" + ", ".join(map(str, shape))):
        ya.output_layout(shape, (64, 64))


def v8_output(boxes_xywh, scores):
    """(4 + nc, N) raw v8 output from (N, 4) boxes and (N, nc) scores."""
    return np.concatenate([np.asarray(boxes_xywh, np.float32), np.asarray(scores, np.float32)], axis=1).T


def test_decode_reads_pixel_and_normalised_coordinates_alike():
    xywh = [[20, 30, 10, 20], [50, 50, 8, 8], [5, 5, 4, 4]]
    scores = [[0.9, 0.1], [0.2, 0.6], [0.1, 0.2]]
    px = ya.decode(v8_output(xywh, scores), "v8", (64, 64))
    norm = ya.decode(v8_output(np.array(xywh) / 64, scores), "v8", (64, 64))
    assert px[0].tolist() == [[15, 20, 25, 40], [46, 46, 54, 54]]
    assert px[1].tolist() == pytest.approx([0.9, 0.6]) and px[2].tolist() == [0, 1]
    np.testing.assert_allclose(norm[0], px[0], atol=1e-4)
    assert norm[2].tolist() == px[2].tolist()
    forced = ya.decode(v8_output(xywh, scores), "v8", (64, 64), normalized=True)
    np.testing.assert_allclose(forced[0], px[0] * 64)


def test_decode_v5_multiplies_objectness_and_nms_is_per_class():
    rows = np.array([
        [20, 20, 10, 10, 0.9, 0.9, 0.1],   # 0.81, class 0
        [21, 20, 10, 10, 0.8, 0.9, 0.1],   # 0.72, class 0, IoU 0.82 with the first: suppressed
        [21, 20, 10, 10, 0.8, 0.1, 0.9],   # 0.72, class 1: another class, kept
        [40, 40, 10, 10, 0.2, 1.0, 0.0],   # 0.2 < conf
    ], np.float32)
    boxes, scores, labels = ya.decode(rows, "v5", (64, 64))
    assert scores.tolist() == pytest.approx([0.81, 0.72]) and labels.tolist() == [0, 1]
    _, scores, _ = ya.decode(rows, "v5", (64, 64), agnostic=True)
    assert scores.tolist() == pytest.approx([0.81])
    _, scores, _ = ya.decode(rows, "v5", (64, 64), iou=0.9)
    assert scores.tolist() == pytest.approx([0.81, 0.72, 0.72])
    _, scores, _ = ya.decode(rows, "v5", (64, 64), iou=0.9, max_det=2)
    assert len(scores) == 2


def test_decode_ignores_channels_past_the_named_classes():
    # a segmentation head: 4 box + 1 class + 3 mask coefficients (which may exceed the score)
    out = v8_output([[20, 20, 10, 10]], [[0.5, 0.99, 0.99, 0.99]])
    _, scores, labels = ya.decode(out, "v8", (64, 64), nc=1)
    assert scores.tolist() == [0.5] and labels.tolist() == [0]


def test_decode_end_to_end_keeps_its_boxes_without_nms():
    rows = np.array([[10, 10, 30, 30, 0.9, 2], [11, 11, 31, 31, 0.8, 2], [0, 0, 0, 0, 0, 0]], np.float32)
    boxes, scores, labels = ya.decode(rows, "end2end", (64, 64))
    assert boxes.tolist() == [[10, 10, 30, 30], [11, 11, 31, 31]] and labels.tolist() == [2, 2]


def test_decode_refuses_an_output_too_narrow_for_its_layout():
    with pytest.raises(DetectorError, match="cannot be read as v5"):
        ya.decode(np.zeros((10, 5), np.float32), "v5", (64, 64))


@pytest.mark.parametrize("h,w,scale,left,top", [
    (48, 64, 1.0, 0, 8),     # pads top and bottom
    (20, 30, 1.0, 17, 22),   # smaller than the canvas: padded, not stretched
    (128, 96, 0.5, 8, 0),    # larger: shrunk to fit
    (64, 61, 1.0, 1, 0),     # odd padding: 1 before, 2 after, as Ultralytics splits it
])
def test_letterbox_geometry(h, w, scale, left, top):
    tile = np.full((h, w, 3), 7, np.uint8)
    canvas, lb = ya.letterbox(tile, 64, 64)
    assert canvas.shape == (64, 64, 3) and canvas.dtype == np.uint8
    assert (lb.scale_x, lb.scale_y, lb.left, lb.top) == (scale, scale, left, top)
    inside = np.zeros((64, 64), bool)
    inside[top:top + lb.height, left:left + lb.width] = True
    assert np.all(canvas[inside] == 7) and np.all(canvas[~inside] == ya.PAD_VALUE)
    back = lb.to_tile(np.array([[left, top, left + lb.width, top + lb.height]], np.float32), w, h)
    np.testing.assert_allclose(back, [[0, 0, w, h]], atol=1e-4)


@pytest.mark.parametrize("value,names", [
    ("{0: 'object'}", ("object",)),
    ("{0: 'white', 1: 'red'}", ("white", "red")),
    ({"1": "b", "0": "a"}, ("a", "b")),          # metadata.json: string keys, any order
    (["a", "b"], ("a", "b")),
    ("__import__('os').system('true')", None),   # never evaluated
    ("{0: 'a', 2: 'c'}", None),                  # a gap: not a class list
    ("not a dict", None),
    (None, None),
])
def test_parse_names(value, names):
    assert ya.parse_names(value) == names


# -- ONNX exports ----------------------------------------------------------------------------------------
BLOCKS = {(16, 0, 24, 8): WHITE, (0, 32, 8, 40): RED}  # in a 48x64 tile: canvas rows shifted by 8


def test_reads_the_facts_of_the_export(models):
    det = load_detector("yolo", checkpoint=models["v8"], device="cpu")
    assert det.name == "yolo:v8" and det.canvas_hw == (64, 64) and det.input_size == 64
    assert det.class_names == ("white", "red") and det.layout == "v8" and det.batch == 1
    assert det.info["input_layout"] == "nchw" and det.info["framework"] == "onnxruntime"
    assert det.info["device"] == "cpu"  # where it ran, in the JSON's model.info as the other adapters say
    assert (det.conf, det.iou, det.max_det) == (0.25, 0.7, 1000)
    opts = det._rt.session.get_session_options()  # workers sleep between runs instead of spinning
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    # no names in the file: classes by their numbers, all alike (class 0 is not "product" beside "1")
    assert load_detector("yolo", checkpoint=models["v5"], device="cpu").class_names == ("0", "1")


def test_truth_options_are_booleans_from_the_command_line_too(models):
    from densedet_tile.cli.options import _key_value

    # a shell user types agnostic=False: it must not arrive as the (truthy) string "False"
    for text, want in [("agnostic=False", False), ("agnostic=no", False), ("agnostic=false", False),
                       ("agnostic=True", True), ("agnostic=ON", True)]:
        key, value = _key_value(text)
        assert load_detector("yolo", checkpoint=models["v8"], device="cpu", options={key: value})._agnostic is want
    with pytest.raises(InvalidInputError, match="agnostic must be true or false, got 'False'"):
        load_detector("yolo", checkpoint=models["v8"], device="cpu", options={"agnostic": "False"})


@pytest.mark.parametrize("model", ["v8", "v5", "v5_1class"])
def test_boxes_come_back_through_the_letterbox(models, model):
    det = load_detector("yolo", checkpoint=models[model], device="cpu")
    blocks = BLOCKS if model != "v5_1class" else {k: v for k, v in BLOCKS.items() if v == WHITE}
    (d,) = det.predict([tile_with(48, 64, blocks)])
    assert_boxes(d, blocks)
    assert d.scores.min() > 0.99


def test_a_larger_tile_is_shrunk_and_a_smaller_one_padded(models):
    det = load_detector("yolo", checkpoint=models["v8"], device="cpu")
    big = {(32, 0, 48, 16): WHITE, (0, 64, 16, 80): RED}               # 96x128 -> 48x64, rows + 8
    small = {(8, 8, 16, 16): WHITE}                                      # 24x32 -> centred at (16, 20)
    small_canvas_aligned = {(0, 4, 8, 12): WHITE, (24, 12, 32, 20): RED}  # x + 16, y + 20: cells
    d_big, d_small, d_aligned = det.predict(
        [tile_with(96, 128, big), tile_with(24, 32, small), tile_with(24, 32, small_canvas_aligned)])
    assert_boxes(d_big, big)
    assert len(d_small) == 0  # half in two cells of the padded canvas (stretched, it would fill cells)
    assert_boxes(d_aligned, small_canvas_aligned)


def test_non_square_canvas(models):
    det = load_detector("yolo", checkpoint=models["v8_64x96"], device="cpu")
    assert det.canvas_hw == (64, 96) and det.input_size == 64  # a square tile fits the canvas whole at 64
    # a square 64x64 tile sits in the middle of the 64x96 canvas (left padding 16)
    blocks = {(0, 0, 8, 8): WHITE, (56, 56, 64, 64): RED}
    (d,) = det.predict([tile_with(64, 64, blocks)])
    assert_boxes(d, blocks)


def test_on_a_non_square_canvas_the_engine_shows_products_at_the_runs_scale(models, monkeypatch):
    # an export with imgsz=(64, 96): the engine's square tiles must reach the model at the run's
    # input size, not be shrunk again by the letterbox to fit the shorter side
    import densedet_tile as dt
    from densedet_tile.detector import yolo_adapter

    seen: list[float] = []
    real = yolo_adapter.letterbox

    def spy(tile, height, width):
        canvas, lb = real(tile, height, width)
        seen.append(lb.scale_x)
        return canvas, lb

    monkeypatch.setattr(yolo_adapter, "letterbox", spy)
    det = load_detector("yolo", checkpoint=models["v8_64x96"], device="cpu")
    dt.detect_image(tile_with(256, 256, {(96, 96, 128, 128): WHITE}), det, tile=128, overlap=0.25, device="cpu")
    assert seen and set(seen) == {1.0}
    # a whole image of the canvas's shape at its longer side (--input-size 96) fills the canvas
    seen.clear()
    wide = load_detector("yolo", checkpoint=models["v8_64x96"], device="cpu", input_size=96)
    dt.detect_image(tile_with(128, 192, {(32, 32, 64, 64): WHITE}), wide, tile=192, device="cpu")
    assert seen == [1.0]
    with pytest.raises(InvalidInputError, match="larger than the model's fixed 64x96 input"):
        load_detector("yolo", checkpoint=models["v8_64x96"], device="cpu", input_size=97)


def test_end_to_end_boxes_are_mapped_back_and_padding_boxes_vanish(models):
    det = load_detector("yolo", checkpoint=models["e2e"], device="cpu")
    assert det.layout == "end2end"
    (d,) = det.predict([tile_with(48, 64, {})])  # canvas rows 0-8 and 56-64 are padding
    assert d.xyxy.tolist() == [[8, 8, 24, 32]] and d.labels.tolist() == [1]
    assert d.scores.tolist() == [pytest.approx(0.9)]


def _end_to_end_export(torch, path, dynamic_axes):
    """The end-to-end test model exported at 64 x 64 with ``dynamic_axes``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(EndToEnd.module(torch), (torch.zeros(1, 3, 64, 64),), str(path), input_names=["images"],
                          output_names=["output0"], opset_version=13, dynamo=False, dynamic_axes=dynamic_axes)


def test_dynamic_height_and_width_take_the_canvas_from_input_size_or_metadata(torch, tmp_path):
    import onnx

    path = tmp_path / "dyn.onnx"
    _end_to_end_export(torch, path, {"images": {0: "b", 2: "h", 3: "w"}, "output0": {0: "b"}})
    with pytest.raises(DetectorError, match=r"has no fixed size and no imgsz metadata; give its size \(input_size=, --input-size\)"):
        load_detector("yolo", checkpoint=str(path), device="cpu")
    det = load_detector("yolo", checkpoint=str(path), device="cpu", input_size=60)
    assert det.canvas_hw == (64, 64) and det.input_size == 60 and det.info["batch"] == "dynamic"
    (d,) = det.predict([tile_with(48, 64, {})])
    assert d.xyxy.tolist() == [[8, 8, 24, 32]]
    m = onnx.load(str(path))
    m.metadata_props.add(key="imgsz", value="[96, 96]")
    onnx.save(m, str(path))
    det = load_detector("yolo", checkpoint=str(path), device="cpu")
    assert det.canvas_hw == (96, 96) and det.input_size == 96


def test_dynamic_batch_runs_in_one_call_and_fixed_batch_loops(models, monkeypatch):
    tiles = [tile_with(48, 64, BLOCKS), tile_with(64, 64, {(8, 8, 16, 16): RED}), tile_with(48, 64, {})]
    for key, calls_wanted in (("v8_batch", 1), ("v8", 3)):
        det = load_detector("yolo", checkpoint=models[key], device="cpu")
        calls = []
        run = det._rt.run
        monkeypatch.setattr(det._rt, "run", lambda x, run=run: calls.append(x.shape[0]) or run(x))
        res = det.predict(tiles)
        assert len(calls) == calls_wanted and sum(calls) == 3
        assert_boxes(res[0], BLOCKS)
        assert_boxes(res[1], {(8, 8, 16, 16): RED})
        assert len(res[2]) == 0
    assert load_detector("yolo", checkpoint=models["v8_batch"], device="cpu").info["batch"] == "dynamic"
    assert load_detector("yolo", checkpoint=models["v8"], device="cpu").predict([]) == []


def test_thresholds_are_options_and_score_thr_is_conf(models):
    det = load_detector("yolo", checkpoint=models["v8"], device="cpu", score_thr=0.998)
    assert det.conf == det.score_thr == 0.998 and det.score_floor == pytest.approx(0.898)
    # red scores 0.9985, white 0.9975: predict decodes down to the floor, the engine serves conf
    (d,) = det.predict([tile_with(48, 64, BLOCKS)])
    assert sorted(d.labels.tolist()) == [0, 1]
    served = dt.detect(tile_with(48, 64, BLOCKS), det, tile=64, device="cpu")
    assert served.labels.tolist() == [1]
    det = load_detector("yolo", checkpoint=models["v8"], device="cpu", options={"conf": 0.5, "max_det": 1})
    assert len(det.predict([tile_with(48, 64, BLOCKS)])[0]) == 1


# -- TFLite fixtures ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,atol", [("float32", 1e-3), ("float16", 0.05), ("int8", 0.5)])
def test_tflite_exports_float_and_int8(kind, atol):
    det = load_detector("yolo", checkpoint=tflite(kind), device="cpu")
    assert det.info["input_layout"] == "nhwc" and det.info["framework"] == "litert" and det.info["device"] == "cpu"
    assert det.class_names == ("white", "red")  # from the metadata.json appended to the file
    assert det.canvas_hw == (64, 64) and det.layout == "v8"
    assert det.info["input_dtype"] == ("int8" if kind == "int8" else "float32")
    if kind == "int8":
        scale, zero = det.info["input_quant"]
        assert scale == pytest.approx(1 / 255) and zero == -128
    d_big, d = det.predict([tile_with(96, 128, {(32, 0, 48, 16): WHITE}), tile_with(48, 64, BLOCKS)])
    assert_boxes(d, BLOCKS, atol=atol)
    assert_boxes(d_big, {(32, 0, 48, 16): WHITE}, atol=2 * atol)
    assert d.scores.min() > 0.98


def _hand_decode(raw, canvas=64, normalised=False):
    """The raw (4 + nc, N) output decoded by hand: every anchor scoring >= 0.25, no NMS."""
    a = raw.T
    keep = a[:, 4:].max(1) >= 0.25
    xywh = a[keep, :4] * (canvas if normalised else 1)
    xyxy = np.clip(np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1), 0, canvas)
    return sorted((b.tolist(), int(lab)) for b, lab in zip(xyxy, a[keep, 4:].argmax(1)))


def test_onnx_and_int8_tflite_match_a_hand_decoding_of_the_raw_output(models):
    pytest.importorskip("ai_edge_litert")
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    blocks = {(8, 16, 16, 24): WHITE, (40, 40, 48, 48): RED, (56, 0, 64, 8): WHITE}
    canvas = tile_with(64, 64, blocks)  # fills the canvas: no letterbox, the same scale for all
    x = canvas.astype(np.float32)[None] / 255
    sess = ort.InferenceSession(models["v8"], providers=["CPUExecutionProvider"])
    by_hand_onnx = _hand_decode(sess.run(None, {"images": x.transpose(0, 3, 1, 2)})[0][0])
    it = Interpreter(model_path=tflite("int8"))
    it.allocate_tensors()
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    s, z = inp["quantization"]
    it.set_tensor(inp["index"], np.clip(np.rint(x / s + z), -128, 127).astype(np.int8))
    it.invoke()
    s, z = out["quantization"]
    by_hand_int8 = _hand_decode((it.get_tensor(out["index"]).astype(np.float32)[0] - z) * s, normalised=True)
    assert [lab for _, lab in by_hand_onnx] == [lab for _, lab in by_hand_int8] == [lab for _, lab in expected(blocks)]

    for path, by_hand in ((models["v8"], by_hand_onnx), (tflite("int8"), by_hand_int8)):
        (d,) = load_detector("yolo", checkpoint=path, device="cpu").predict([canvas])
        assert [lab for _, lab in got(d)] == [lab for _, lab in by_hand]
        np.testing.assert_allclose([b for b, _ in got(d)], [b for b, _ in by_hand], atol=1e-3)
    # and ONNX vs int8 TFLite: within the int8 output step (1/255 of the canvas, twice)
    np.testing.assert_allclose([b for b, _ in by_hand_int8], [b for b, _ in by_hand_onnx], atol=2 * 64 / 255)


# -- through the engine ---------------------------------------------------------------------------------------
def aisle(blocks, h=224, w=224):
    img = np.full((h, w, 3), DARK, np.uint8)
    for (x1, y1, x2, y2), colour in blocks.items():
        img[y1:y2, x1:x2] = colour
    return img


# 16 px blocks on a 16 px grid: 8x8 model cells in every 128 px tile (resized to 64) of a
# 224 px image cut with overlap 0.25 (tiles at 0 and 96); some sit in both tiles' overlap
ENGINE_BLOCKS = {(16, 16, 32, 32): WHITE, (112, 48, 128, 64): RED, (96, 96, 112, 112): WHITE,
                 (192, 160, 208, 176): RED, (0, 208, 16, 224): WHITE}


@pytest.mark.parametrize("source", ["onnx", "int8"])
def test_boxes_through_tiling(models, source):
    path = models["v8"] if source == "onnx" else tflite("int8")
    det = load_detector("yolo", checkpoint=path, device="cpu")
    res = dt.detect_image(aisle(ENGINE_BLOCKS), det, tile=128, overlap=0.25)
    assert res.num_tiles == 4
    assert_boxes(res.detections, ENGINE_BLOCKS, atol=1e-3 if source == "onnx" else 1.0)
    assert res.model["class_names"] == ["white", "red"]


def test_input_size_override_pads_the_resized_tile_on_the_canvas(models):
    # --input-size 32: a 128 px tile reaches the 64 px canvas at 32 px (products a quarter of their
    # size), centred at offset 16; 32 px blocks on a 32 px grid are one cell there
    det = load_detector("yolo", checkpoint=models["v8"], device="cpu", input_size=32)
    assert det.input_size == 32 and det.canvas_hw == (64, 64)
    blocks = {(32, 32, 64, 64): WHITE, (128, 160, 160, 192): RED}
    res = dt.detect_image(aisle(blocks), det, tile=128, overlap=0.25)
    assert_boxes(res.detections, blocks)


def test_cli_writes_yolo_labels(models, tmp_path, capsys):
    from PIL import Image

    from densedet_tile.cli import main

    img = tmp_path / "aisle.png"
    Image.fromarray(aisle(ENGINE_BLOCKS)).save(img)
    out = tmp_path / "out"
    for ckpt, extra in ((models["v8"], []), (tflite("int8"), ["--yolo-scores"])):
        rc = main([str(img), "--detector", "yolo", "--checkpoint", ckpt, "--tile", "128", "--overlap", "0.25",
                   "--format", "yolo", "--out", str(out), "-q", *extra])
        assert rc == 0, capsys.readouterr().err
        rows = [line.split() for line in (out / "aisle.txt").read_text().splitlines()]
        assert len(rows) == len(ENGINE_BLOCKS) and {len(r) for r in rows} == {6 if extra else 5}
        assert sorted(int(r[0]) for r in rows) == [0, 0, 0, 1, 1]
        assert (out / "classes.txt").read_text() == "white\nred\n"


# -- errors ------------------------------------------------------------------------------------------------
def test_not_a_model(tmp_path, torch):
    (tmp_path / "junk.onnx").write_text("hello")
    with pytest.raises(DetectorError, match="not a readable ONNX model"):
        load_detector("yolo", checkpoint=str(tmp_path / "junk.onnx"), device="cpu")
    (tmp_path / "best.pt").write_bytes(b"PK\x03\x04")
    with pytest.raises(InvalidInputError, match="a PyTorch checkpoint, not an export; export it"):
        load_detector("yolo", checkpoint=str(tmp_path / "best.pt"), device="cpu")
    with pytest.raises(InvalidInputError, match="no such file"):
        load_detector("yolo", checkpoint=str(tmp_path / "missing.onnx"), device="cpu")


def test_not_a_tflite_model(tmp_path):
    pytest.importorskip("ai_edge_litert")
    (tmp_path / "junk.tflite").write_bytes(b"\0" * 64)
    with pytest.raises(DetectorError, match="not a readable TFLite model"):
        load_detector("yolo", checkpoint=str(tmp_path / "junk.tflite"), device="cpu")


def test_unknown_output_layout_is_one_clear_line(torch, tmp_path):
    class Odd(torch.nn.Module):
        def forward(self, x):
            return x.mean() + torch.zeros(1, 7, 3)

    path = export(torch, Odd(), tmp_path / "odd.onnx", 64, 64)
    with pytest.raises(DetectorError, match=r"odd.onnx: output of shape \(1, 7, 3\) is not a YOLO layout") as e:
        load_detector("yolo", checkpoint=path, device="cpu")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("module,package,advice,suffix", [
    # onnxruntime is a base dependency: the advice is the package, not an extra that brings torch
    ("onnxruntime", "onnxruntime", "pip install onnxruntime", ".onnx"),
    ("ai_edge_litert", "ai-edge-litert", "pip install 'densedet-tile[tflite]'", ".tflite"),
])
def test_missing_runtime_names_the_extra(tmp_path, monkeypatch, module, package, advice, suffix):
    path = tmp_path / f"best{suffix}"
    path.write_bytes(b"\0" * 16)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, f"{module}.interpreter", None)
    with pytest.raises(MissingDependencyError, match=rf"'{package}'.*not installed.*{re.escape(advice)}$"):
        load_detector("yolo", checkpoint=str(path), device="cpu")


@pytest.mark.parametrize("kwargs,match", [
    ({"input_size": 128}, "larger than the model's fixed 64x64 input"),
    ({"score_thr": 0.3, "options": {"conf": 0.4}}, "give the confidence threshold once"),
    ({"options": {"iou": 1.5}}, r"iou must be a number in \[0.0, 1.0\]"),
    ({"options": {"layout": "v9"}}, "layout must be one of v8, v5, end2end"),
    ({"options": {"max_det": 0}}, "max_det must be a positive int"),
    ({"options": {"nms": True}}, "unknown option"),
    ({"config": "x.py"}, r"takes no config \(--config\)"),
    ({"options": {"class_names": ["a", "b", "c"]}}, "3 class_names for an output with 2 class channels"),
    ({"precision": "fp16"}, "precision it was exported in"),
])
def test_bad_options(models, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        load_detector("yolo", checkpoint=models["v8"], device="cpu", **kwargs)


def _batch_only_dynamic(src: str, dst: Path) -> str:
    """``src`` (a dynamic-batch v8 export whose other output dims the tracer left unnamed) with
    its output declared (batch, 6, 84), as an Ultralytics export with a dynamic batch has it."""
    import onnx

    m = onnx.load(src)
    dims = m.graph.output[0].type.tensor_type.shape.dim
    for d, v in zip(dims[1:], (6, 84)):
        d.ClearField("dim_param")
        d.dim_value = v
    onnx.save(m, str(dst))
    return str(dst)


@pytest.mark.parametrize("names,match", [
    (["a"], "1 class_names for an output with 2 class channels; name every class"),
    (["a", "b", "c"], "3 class_names for an output with 2 class channels"),
])
def test_class_names_are_checked_against_an_output_of_dynamic_shape_too(models, tmp_path, names, match):
    # a dynamic batch skipped the check, and a short list dropped the unnamed classes' boxes
    # without a word (an outside review): refused when loaded where the class channels are
    # declared, on the first output where they are not
    declared = _batch_only_dynamic(models["v8_batch"], tmp_path / "declared.onnx")
    with pytest.raises(InvalidInputError, match=match):
        load_detector("yolo", checkpoint=declared, device="cpu", options={"class_names": names})
    det = load_detector("yolo", checkpoint=models["v8_batch"], device="cpu", options={"class_names": names})
    with pytest.raises(DetectorError, match=match):
        det.predict([tile_with(48, 64, BLOCKS)])
    for path in (declared, models["v8_batch"]):
        det = load_detector("yolo", checkpoint=path, device="cpu", options={"class_names": ["w", "r"]})
        assert det.class_names == ("w", "r")
        assert sorted(det.predict([tile_with(48, 64, BLOCKS)])[0].labels.tolist()) == [0, 1]


def test_a_tflite_detector_serves_several_threads_at_once():
    import threading

    det = load_detector("yolo", checkpoint=tflite("float32"), device="cpu")
    tiles = [tile_with(48, 64, BLOCKS), tile_with(96, 128, {(32, 0, 48, 16): WHITE})]
    want = [det.predict([t])[0] for t in tiles]
    failed: list[str] = []

    def work(k: int) -> None:
        for _ in range(150):
            try:
                got = det.predict([tiles[k]])[0]
            except Exception as exc:  # noqa: BLE001 (each failure is the finding)
                failed.append(repr(exc)[:120])
                continue
            if got.xyxy.shape != want[k].xyxy.shape or not np.allclose(got.xyxy, want[k].xyxy):
                failed.append(f"thread {k}: other boxes")

    threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1, 0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failed, f"{len(failed)} of 600 calls failed, e.g. {failed[0]}"


def test_tflite_runs_on_the_cpu_only():
    with pytest.raises(InvalidInputError, match="TFLite models run on the CPU"):
        load_detector("yolo", checkpoint=tflite("float32"), device="cuda")


def test_fixtures_are_what_the_script_writes(tmp_path):
    pytest.importorskip("ai_edge_litert")
    import importlib.util

    script = Path(__file__).resolve().parents[2] / "scripts" / "make_yolo_tflite_fixture.py"
    spec = importlib.util.spec_from_file_location("_make_yolo_tflite_fixture", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--out", str(tmp_path)]) == 0
    for kind in ("float32", "float16", "int8"):
        name = f"bright_cells_{kind}.tflite"
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name


def test_a_channels_last_v8_head_with_two_classes_is_refused_not_read_as_nms_output():
    anchors = 80 * 80 + 40 * 40 + 20 * 20  # 8400 on a 640 canvas
    with pytest.raises(DetectorError, match="channels last"):
        ya.output_layout((1, anchors, 6), (640, 640))
    assert ya.output_layout((1, 300, 6), (640, 640)) == "end2end"


@pytest.mark.parametrize("rows,match", [
    (80 * 80 + 40 * 40 + 20 * 20 + 160 * 160, "channels last"),  # v8-P2 head (strides 4-32), 2 classes
    (80 * 80, r"too many rows \(6400\).*--detector-option layout=end2end"),  # unknown strides
    (1001, r"too many rows \(1001\).*--detector-option layout=end2end"),
])
def test_a_long_six_wide_output_is_refused_not_read_as_nms_output(rows, match):
    with pytest.raises(DetectorError, match=r"output of shape \(1, %d, 6\).*" % rows + match) as e:
        ya.output_layout((1, rows, 6), (640, 640))
    assert "\n" not in str(e.value)


def test_a_long_nms_output_is_read_only_when_layout_end2end_is_forced(torch, tmp_path):
    class Long(torch.nn.Module):  # EndToEnd's two boxes, then 1198 empty rows
        def forward(self, x):
            rows = torch.zeros(1, 1200, 6)
            rows[0, :2] = torch.from_numpy(EndToEnd.ROWS[:2])
            return rows + 0 * x.mean()

    path = export(torch, Long(), tmp_path / "long.onnx", 64, 64)
    with pytest.raises(DetectorError, match=r"long\.onnx: output of shape \(1, 1200, 6\) has too many rows"):
        load_detector("yolo", checkpoint=path, device="cpu")
    det = load_detector("yolo", checkpoint=path, device="cpu", options={"layout": "end2end"})
    (d,) = det.predict([tile_with(48, 64, {})])
    assert d.xyxy.tolist() == [[8, 8, 24, 32]] and d.labels.tolist() == [1]


def test_the_command_says_nothing_of_litert_under_quiet(tmp_path):
    # LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to the process's
    # standard error itself, whatever -q says
    pytest.importorskip("ai_edge_litert")
    from PIL import Image

    from fakes import run_cli

    img = tmp_path / "aisle.png"
    Image.fromarray(aisle(ENGINE_BLOCKS)).save(img)
    r = run_cli(img, "--detector", "yolo", "--checkpoint", tflite("int8"), "--tile", "128", "--overlap", "0.4",
                "--out", tmp_path / "out", "-q", cwd=tmp_path)
    assert r.returncode == 0 and "XNNPACK" not in r.stderr and "TensorFlow Lite" not in r.stderr, r.stderr
    assert (tmp_path / "out" / "aisle.detections.json").is_file()


def test_one_wide_candidate_does_not_turn_normalised_boxes_into_pixels():
    # a 0..1 v5 head: widths reach past 1 (up to 2.3 canvases); one such candidate above the
    # threshold had every box of the tile read as pixels, shrunk under a pixel (an outside review)
    rows = np.zeros((4, 6), np.float32)
    rows[0] = [32 / 64, 32 / 64, 20 / 64, 10 / 64, 0.9, 1.0]
    rows[1] = [32 / 64, 32 / 64, 1.6, 40 / 64, 0.3, 1.0]
    boxes, scores, _ = ya.decode(rows, "v5", (64, 64), iou=0.9)
    np.testing.assert_allclose(boxes[np.argmax(scores)], [22, 27, 42, 37], atol=1e-4)
    # pixel coordinates stay pixels, whatever the widths
    px = rows.copy()
    px[:, :4] *= 64
    boxes, scores, _ = ya.decode(px, "v5", (64, 64), iou=0.9)
    np.testing.assert_allclose(boxes[np.argmax(scores)], [22, 27, 42, 37], atol=1e-4)


def test_a_tflite_model_litert_cannot_prepare_is_named(monkeypatch):
    # "Select TensorFlow op(s) ... not supported" came as a bare RuntimeError naming no file
    interpreter = pytest.importorskip("ai_edge_litert.interpreter")

    def refuse(self):
        raise RuntimeError("Select TensorFlow op(s), included in the given model, is(are) not supported")

    monkeypatch.setattr(interpreter.Interpreter, "allocate_tensors", refuse)
    with pytest.raises(DetectorError, match=r"bright_cells_float32\.tflite: LiteRT cannot prepare it \(Select "):
        load_detector("yolo", checkpoint=tflite("float32"), device="cpu")


def test_one_dynamic_side_keeps_the_fixed_one(torch, tmp_path):
    # dynamic height, width fixed at 64: the canvas was input_size square (96 x 96 here), and
    # every image failed in onnxruntime (an outside review)
    path = tmp_path / "dyn_h.onnx"
    _end_to_end_export(torch, path, {"images": {2: "h"}})
    det = load_detector("yolo", checkpoint=str(path), device="cpu", input_size=60)
    assert det.canvas_hw == (64, 64)
    (d,) = det.predict([tile_with(48, 64, {})])
    assert d.xyxy.tolist() == [[8, 8, 24, 32]]
    with pytest.raises(InvalidInputError, match="larger than the 64 px the model's input"):
        load_detector("yolo", checkpoint=str(path), device="cpu", input_size=96)


def test_pixel_boxes_at_the_canvas_corner_stay_pixels():
    # a pixel export whose only candidate above the threshold sits at the canvas's top-left
    # corner (a product cut by a tile's corner, a weak hit in the padding) was read as 0..1 and
    # blown up to the whole canvas: the anchors, whatever their scores, tell pixels from 0..1
    grid = np.stack(np.meshgrid(np.arange(4, 64, 8), np.arange(4, 64, 8)), -1).reshape(-1, 2).astype(np.float32)
    xywh = np.c_[grid, np.full((len(grid), 2), 8, np.float32)]
    xywh[0] = [0.5, 0.5, 1, 1]
    scores = np.zeros((len(grid), 1), np.float32)
    scores[0] = 0.9
    boxes, got, _ = ya.decode(v8_output(xywh, scores), "v8", (64, 64))
    np.testing.assert_allclose(boxes, [[0, 0, 1, 1]], atol=1e-6)
    assert got.tolist() == pytest.approx([0.9])
    # the same head in 0..1 still reads as 0..1
    norm = xywh / 64
    boxes, _, _ = ya.decode(v8_output(norm, scores), "v8", (64, 64))
    np.testing.assert_allclose(boxes, [[0, 0, 1, 1]], atol=1e-5)
    # and a v5 head alike
    rows = np.c_[xywh, scores, np.ones((len(grid), 1), np.float32)]
    boxes, _, _ = ya.decode(rows, "v5", (64, 64))
    np.testing.assert_allclose(boxes, [[0, 0, 1, 1]], atol=1e-6)


def test_an_export_seen_in_pixels_stays_in_pixels_on_later_tiles(models, monkeypatch):
    # an end-to-end export whose one detection on a tile lies within 1.5 of the canvas's corner
    # reads as 0..1 by itself; once a tile showed the export's pixels, it is read as pixels
    det = load_detector("yolo", checkpoint=models["e2e"], device="cpu")
    corner = np.zeros((1, 10, 6), np.float32)
    corner[0, 0] = [0, 0, 1, 1, 0.9, 0]
    run = det._rt.run
    monkeypatch.setattr(det._rt, "run", lambda x: corner)
    (alone,) = det.predict([tile_with(64, 64, {})])
    assert alone.xyxy.tolist() == [[0, 0, 64, 64]]  # (by itself: no way to tell)
    monkeypatch.setattr(det._rt, "run", run)
    (d,) = det.predict([tile_with(64, 64, {})])
    assert d.xyxy.tolist() == [[8, 16, 24, 40], [4, 58, 12, 64]]
    monkeypatch.setattr(det._rt, "run", lambda x: corner)
    (later,) = det.predict([tile_with(64, 64, {})])
    assert later.xyxy.tolist() == [[0, 0, 1, 1]]


def test_one_stray_anchor_does_not_turn_a_normalised_head_into_pixels():
    # a background anchor's centre past 1.5 in a 0..1 export (a diff review): the anchors are
    # told by their median, and no tile's reading carries over to the next
    grid = np.stack(np.meshgrid(np.arange(4, 64, 8), np.arange(4, 64, 8)), -1).reshape(-1, 2).astype(np.float32)
    xywh = np.c_[grid, np.full((len(grid), 2), 8, np.float32)] / 64
    scores = np.zeros((len(grid), 1), np.float32)
    scores[5] = 0.9
    xywh[7, 1] = 1.6  # (score 0)
    boxes, _, _ = ya.decode(v8_output(xywh, scores), "v8", (64, 64))
    np.testing.assert_allclose(boxes, [[40, 0, 48, 8]], atol=1e-4)
