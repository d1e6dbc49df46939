from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.detector.base import Detector
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.painted_aisles import PaintedDetector, decode_ids, encode_ids, make_painted_aisle, seam_report
from densedet_tile.types import Detections


def test_encode_decode_round_trip() -> None:
    ids = np.array([0, 1, 254, 255, 256, 65535, 70000, (1 << 24) - 2])
    img = encode_ids(ids).reshape(1, -1, 3)
    assert decode_ids(img)[0].tolist() == (ids + 1).tolist()
    with pytest.raises(InvalidInputError):
        encode_ids(np.array([-1]))
    with pytest.raises(InvalidInputError, match="HxWx3 uint8"):
        decode_ids(np.zeros((4, 4), np.uint8))


@pytest.mark.parametrize("seed", range(4))
def test_aisle_boxes_are_exact_disjoint_and_inside(seed: int) -> None:
    img, gt = make_painted_aisle(4000, 1500, n_products=80, seed=seed, large_fraction=0.15)
    assert img.shape == (1500, 4000, 3) and img.dtype == np.uint8
    assert len(gt) == 80
    b = gt.xyxy.astype(np.int64)
    assert np.all(b[:, :2] >= 0) and np.all(b[:, 2] <= 4000) and np.all(b[:, 3] <= 1500)
    ids = decode_ids(img)
    counts = np.bincount(ids.ravel(), minlength=81)
    # Every product's colour fills exactly its box: boxes are exact and do not overlap.
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    assert counts[1:].tolist() == area.tolist()
    for k in range(0, 80, 7):
        x1, y1, x2, y2 = b[k]
        assert np.all(ids[y1:y2, x1:x2] == k + 1)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    assert np.any(side >= 300) and np.any(side < 250)


def test_aisle_has_touching_neighbours_both_ways() -> None:
    _, gt = make_painted_aisle(6000, 1500, n_products=120, seed=3)
    b = gt.xyxy
    shared_x = np.isin(b[:, 0], b[:, 2])
    shared_y = np.isin(b[:, 3], b[:, 1])
    assert shared_x.sum() > 20, "no products touching side by side"
    assert shared_y.sum() > 5, "no products stacked touching"


def test_aisle_is_deterministic_and_seed_dependent() -> None:
    a = make_painted_aisle(1500, 800, n_products=15, seed=7)
    b = make_painted_aisle(1500, 800, n_products=15, seed=7)
    c = make_painted_aisle(1500, 800, n_products=15, seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1].xyxy, b[1].xyxy)
    assert not np.array_equal(a[1].xyxy, c[1].xyxy)


def test_aisle_rejects_impossible_requests() -> None:
    with pytest.raises(InvalidInputError, match="do not fit"):
        make_painted_aisle(1000, 600, n_products=500, seed=0)
    with pytest.raises(InvalidInputError, match="too small"):
        make_painted_aisle(1000, 30, n_products=5, seed=0)
    with pytest.raises(InvalidInputError, match="n_products"):
        make_painted_aisle(1000, 600, n_products=0, seed=0)


def test_painted_detector_is_a_detector_and_reads_whole_products() -> None:
    img, gt = make_painted_aisle(2000, 900, n_products=25, seed=1)
    det = PaintedDetector(jitter=0.0)
    assert isinstance(det, Detector) and det.input_size is None
    (out,) = det.predict([img])
    order = np.argsort(out.xyxy[:, 0] * 1e4 + out.xyxy[:, 1])
    want = np.argsort(gt.xyxy[:, 0] * 1e4 + gt.xyxy[:, 1])
    np.testing.assert_array_equal(out.xyxy[order], gt.xyxy[want])
    assert np.all((out.scores >= 0.5) & (out.scores <= 1.0)) and np.all(out.labels == 0)


def test_painted_detector_clips_at_the_tile_edge_and_scores_cut_boxes_lower() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:60, 50:150] = encode_ids(np.array(4))
    img[70:90, 10:30] = encode_ids(np.array(9))
    (out,) = PaintedDetector(jitter=0.0).predict([img[:, :100]])
    assert len(out) == 2
    k = int(np.argmax(out.xyxy[:, 2]))
    np.testing.assert_array_equal(out.xyxy[k], [50, 20, 100, 60])
    (whole,) = PaintedDetector(jitter=0.0).predict([img])
    assert out.scores[k] < whole.scores[np.argmax(whole.xyxy[:, 2])]


def test_painted_detector_jitter_is_bounded_deterministic_and_inside() -> None:
    img, gt = make_painted_aisle(1200, 800, n_products=12, seed=2)
    tile = img[100:600, 200:900]
    a = PaintedDetector(jitter=2.0, seed=5).predict([tile])[0]
    b = PaintedDetector(jitter=2.0, seed=5).predict([tile])[0]
    c = PaintedDetector(jitter=2.0, seed=6).predict([tile])[0]
    exact = PaintedDetector(jitter=0.0).predict([tile])[0]
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    assert not np.array_equal(a.xyxy, c.xyxy)
    assert len(a) == len(exact)
    assert np.abs(a.xyxy - exact.xyxy).max() <= 2.0 + 1e-4
    assert np.abs(a.xyxy - exact.xyxy).max() > 0.5
    assert np.all(a.xyxy[:, [0, 2]] >= 0) and np.all(a.xyxy[:, [0, 2]] <= 700)
    assert np.all(a.xyxy[:, [1, 3]] >= 0) and np.all(a.xyxy[:, [1, 3]] <= 500)


def test_painted_detector_min_visible_and_empty_tiles() -> None:
    img = np.zeros((50, 50, 3), np.uint8)
    img[0:3, 0:2] = encode_ids(np.array(0))  # 6 px
    img[10:30, 10:30] = encode_ids(np.array(1))
    assert len(PaintedDetector(jitter=0, min_visible_px=6).predict([img])[0]) == 2
    assert len(PaintedDetector(jitter=0, min_visible_px=7).predict([img])[0]) == 1
    out = PaintedDetector().predict([np.zeros((40, 60, 3), np.uint8), img])
    assert len(out) == 2 and len(out[0]) == 0
    with pytest.raises(InvalidInputError):
        PaintedDetector(jitter=-1)
    with pytest.raises(InvalidInputError):
        PaintedDetector(min_visible_px=0)


def test_seam_report_counts_each_kind() -> None:
    gt = Detections(np.array([[0, 0, 10, 10], [10, 0, 20, 10], [100, 0, 400, 300]], np.float32), np.ones(3, np.float32))
    pred = Detections(
        np.array(
            [
                [0, 0, 10, 10],  # match
                [0.5, 0, 10, 10],  # duplicate of product 0
                [10, 0, 14, 10],  # fragment of product 1 (product 1 itself missed)
                [100, 0, 400, 290],  # large product, IoU 0.967
                [1000, 0, 1010, 10],  # false positive
                [0, 0, 20, 10],  # two products fused into one
            ],
            np.float32,
        ),
        np.ones(6, np.float32),
    )
    r = seam_report(pred, gt, large_side=256)
    assert (r["n_small"], r["n_large"]) == (2, 1)
    assert r["recall_small"] == 0.5 and r["recall_large"] == 1.0
    assert r["duplicates"] == 1 and r["fragments"] == 1 and r["false_positives"] == 1 and r["merged"] == 1
    assert r["dup_frag_rate"] == pytest.approx(2 / 3)
