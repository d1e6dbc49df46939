"""The public API refuses what it cannot use with the package's own errors (outside review)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import nms, weighted_box_fusion
from densedet_tile.pipeline import plan, predict_tiles
from densedet_tile.tiler import make_grid
from fakes import BlobDetector, blob_image


def test_detections_refuse_a_wrong_empty_shape_and_values_beyond_float32():
    assert len(dt.Detections(np.zeros((0, 4)), [])) == 0
    assert len(dt.Detections([], [])) == 0
    with pytest.raises(InvalidInputError, match=r"expected shape \(N, 4\), got \(0, 5\)"):
        dt.Detections(np.zeros((0, 5)), [])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning on the way
        with pytest.raises(InvalidInputError, match="beyond the float32 range"):
            dt.Detections(np.array([[0.0, 0.0, 1e39, 1e39]]), [0.5])


def test_specs_take_numpy_scalars_and_refuse_an_infinite_vram_budget():
    assert dt.TileSpec(640, np.int64(0)).overlap == 0.0
    assert dt.MergeSpec(class_agnostic=np.True_).class_agnostic is True
    with pytest.raises(InvalidInputError, match="overlap"):
        dt.TileSpec(640, True)
    with pytest.raises(InvalidInputError, match="max_vram"):
        dt.RunSpec(max_vram=float("inf"))


def test_tile_of_small_numpy_integers_keeps_its_far_edges():
    # stored as given, uint8 100 + 200 wrapped to 44 (an outside review)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = dt.Tile(np.uint8(100), np.int16(30000), np.uint8(200), np.int16(30000))
    assert (t.x2, t.y2) == (300, 60000)
    assert all(type(v) is int for v in (t.x, t.y, t.w, t.h))


def test_stages_say_what_they_need():
    img = blob_image(100, 200, (10, 10, 50, 50))
    with pytest.raises(InvalidInputError, match="open_image"):
        plan(img, dt.TileSpec(64))
    with dt.open_image(img) as src:
        tiles = plan(src, dt.TileSpec(64))
        with pytest.raises(InvalidInputError, match="open_image"):
            predict_tiles(img, tiles, BlobDetector())
        with pytest.raises(InvalidInputError, match="Tile objects"):
            predict_tiles(src, [(0, 0, 64, 64)], BlobDetector())
        with pytest.raises(InvalidInputError, match="RunSpec"):
            predict_tiles(src, tiles, BlobDetector(), {"score_thr": 0.5})
    with pytest.raises(InvalidInputError, match="TileSpec"):
        make_grid(200, 100, None)
    with pytest.raises(InvalidInputError, match="auto"):
        make_grid(200, 100, dt.TileSpec("auto"))


def test_merge_functions_check_their_inputs():
    b = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], float)
    with pytest.raises(InvalidInputError, match="iou_thr"):
        nms(b, [0.9, 0.8], "0.5")
    with pytest.raises(InvalidInputError, match="labels must be integer ids"):
        weighted_box_fusion(b, [0.9, 0.8], groups=[0, 1], iou_thr=0.5, labels=["a", "b"])
    with pytest.raises(InvalidInputError, match="labels must be integer ids"):
        weighted_box_fusion(b, [0.9, 0.8], groups=[0, 1], iou_thr=0.5, labels=[1.7, 1.0])
    with pytest.raises(InvalidInputError, match="NaN"):
        weighted_box_fusion(b, [np.nan, 0.8], groups=[0, 1], iou_thr=0.5)
    fused = weighted_box_fusion(b, [0.9, 0.8], groups=[0, 1], iou_thr=0.5, labels=[2.0, 2.0])
    assert len(fused.scores) == 1 and fused.labels.tolist() == [2]


class _SharedDetector(BlobDetector):
    """A detector built once at a threshold: it returns nothing below 0.5."""

    score_floor = 0.5


def test_a_threshold_warning_names_the_callers_line():
    img = blob_image(100, 200, (10, 10, 50, 50))
    with pytest.warns(RuntimeWarning, match="below the lowest score") as caught:
        dt.detect(img, _SharedDetector(), tile=64, score_thr=0.2)
    assert caught[0].filename == __file__


def test_finish_takes_the_detector_or_its_description_and_refuses_anything_else():
    from densedet_tile.pipeline import describe_detector, finish

    img = blob_image(100, 200, (10, 10, 50, 50))
    det = BlobDetector()
    with dt.open_image(img) as src:
        tiling, merge = dt.TileSpec(64), dt.MergeSpec()
        tiles = plan(src, tiling)
        preds = predict_tiles(src, tiles, det)
        by_det = finish(src, tiles, preds, tiling=tiling, merge=merge, model=det)
        by_desc = finish(src, tiles, preds, tiling=tiling, merge=merge, model=describe_detector(det))
        assert by_det.model == by_desc.model and isinstance(by_det.model, dict)
        assert np.array_equal(by_det.detections.xyxy, by_desc.detections.xyxy)
        with pytest.raises(InvalidInputError, match="model must be the detector's description"):
            finish(src, tiles, preds, tiling=tiling, merge=merge, model="blob")


@pytest.mark.parametrize("name,kwargs,keyword", [
    ("onnx", {}, "checkpoint="),
    ("yolo", {}, "checkpoint="),
    ("onnx", {"config": "x.py", "checkpoint": "m.onnx"}, "config (--config)"),
    ("default", {"config": "x.py"}, "config (--config)"),
    ("default", {"precision": "bf16"}, "precision fp32/fp16 (--precision)"),
])
def test_load_detector_messages_name_the_python_keyword_too(name, kwargs, keyword):
    # a Python caller was told only of command-line flags ("--checkpoint model.onnx is
    # required"), which a load_detector call has no way to give
    with pytest.raises(InvalidInputError) as e:
        dt.load_detector(name, device="cpu", **kwargs)
    assert keyword in str(e.value)
