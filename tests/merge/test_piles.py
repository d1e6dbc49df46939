"""A tile whose detector ran no NMS of its own: its pile of boxes is suppressed within the tile
before the merge, instead of pairing every box of the pile with every other (an outside review
measured 35 s and 3.8 GB for 8 000 boxes over one product)."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.merge import core, merge_tiles, nms
from densedet_tile.merge import boxes as merge_boxes
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import Detections, MergeSpec, TileSpec


def shelf_dets(tiles, rng, *, copies: int = 1, jitter: float = 0.0) -> list[Detections]:
    """Products 60 x 100 px every 64 x 110 px over the image, each returned ``copies`` times
    (with ``jitter`` px of noise) by every tile holding it whole."""
    xs, ys = np.meshgrid(np.arange(10, 2200, 64.0), np.arange(10, 1200, 110.0))
    prod = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 60, ys.ravel() + 100], 1)
    out = []
    for t in tiles:
        inside = (prod[:, 0] >= t.x) & (prod[:, 2] <= t.x + t.w) & (prod[:, 1] >= t.y) & (prod[:, 3] <= t.y + t.h)
        b = np.repeat(prod[inside], copies, axis=0) - [t.x, t.y, t.x, t.y]
        b = b + rng.normal(0, jitter, b.shape)
        out.append(Detections(b.astype(np.float32), rng.uniform(0.5, 1.0, len(b)).astype(np.float32)))
    return out


def test_a_pile_is_suppressed_in_its_tile_and_said(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    tiles = make_grid(2304, 1280, TileSpec(1280, 0.2))
    piled = shelf_dets(tiles, np.random.default_rng(0), copies=40, jitter=2.0)
    # what the detector's own NMS would have left, tile by tile
    own = [d[np.sort(nms(d.xyxy, d.scores, MergeSpec().nms_iou))] for d in piled]
    with caplog.at_level("WARNING", logger="densedet_tile.merge.core"):
        got = merge_tiles(tiles, piled, MergeSpec())
    assert "2 of 2 tiles returned piles of near-copies of boxes" in caplog.text
    want = merge_tiles(tiles, own, MergeSpec())
    order_g, order_w = np.lexsort(got.xyxy.T), np.lexsort(want.xyxy.T)
    np.testing.assert_allclose(got.xyxy[order_g], want.xyxy[order_w], atol=1e-3)
    np.testing.assert_allclose(got.scores[order_g], want.scores[order_w], atol=1e-6)
    # no pair search over the whole pile without a limit (the count that finds the pile has one)
    seen = []
    real = core.candidate_pairs

    def spy(xyxy, **kw):
        seen.append((len(xyxy), kw.get("limit")))
        return real(xyxy, **kw)

    monkeypatch.setattr(core, "candidate_pairs", spy)
    merge_tiles(tiles, piled, MergeSpec())
    n = sum(len(d) for d in piled)
    assert all(limit is not None for size, limit in seen if size > n // 2), seen


def test_boxes_of_a_detector_with_its_own_nms_are_not_touched(caplog: pytest.LogCaptureFixture, monkeypatch) -> None:
    tiles = make_grid(2304, 1280, TileSpec(1280, 0.2))
    dets = shelf_dets(tiles, np.random.default_rng(1), jitter=1.0)
    with caplog.at_level("WARNING", logger="densedet_tile.merge.core"):
        got = merge_tiles(tiles, dets, MergeSpec())
    assert "piles" not in caplog.text
    monkeypatch.setattr(core, "suppress_piles", lambda dets, spec=None: (list(dets), 0))
    want = merge_tiles(tiles, dets, MergeSpec())
    np.testing.assert_array_equal(got.xyxy, want.xyxy)


def test_only_the_tile_with_a_pile_is_changed() -> None:
    tiles = make_grid(3200, 1280, TileSpec(1280, 0.2))
    assert len(tiles) == 3
    rng = np.random.default_rng(2)
    plain = shelf_dets(tiles, rng, jitter=1.0)
    piled = shelf_dets(tiles, rng, copies=40, jitter=2.0)
    out, n = core.suppress_piles([plain[0], piled[1], plain[2]], MergeSpec())
    assert n == 1 and out[0] is plain[0] and out[2] is plain[2]  # the other tiles' boxes as they were
    assert len(out[1]) == len(plain[1])  # one box per product of the piled tile
    assert (np.diff(np.flatnonzero(np.isin(piled[1].scores, out[1].scores))) > 0).all()  # in the tile's order


def test_many_boxes_side_by_side_are_no_pile(monkeypatch) -> None:
    # a wide panorama of products that touch and overlap their neighbours a little: the pairs of
    # all tiles are counted once, in one search with a limit, and none is changed
    tiles = make_grid(20000, 1280, TileSpec(1280, 0.2))
    xs, ys = np.meshgrid(np.arange(0, 19960, 25.0), np.arange(10, 1220, 52.0))
    prod = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 30, ys.ravel() + 54], 1)  # overlapping
    dets = []
    for t in tiles:
        inside = (prod[:, 0] >= t.x) & (prod[:, 2] <= t.x + t.w)
        b = prod[inside] - [t.x, t.y, t.x, t.y]
        dets.append(Detections(b.astype(np.float32), np.full(len(b), 0.9, np.float32)))
    assert min(len(d) for d in dets) > 1000
    calls = []
    real = merge_boxes.candidate_pairs
    monkeypatch.setattr(core, "candidate_pairs", lambda xyxy, **kw: calls.append(kw.get("limit")) or real(xyxy, **kw))
    out, n = core.suppress_piles(dets, MergeSpec())
    assert n == 0 and all(a is b for a, b in zip(out, dets))
    assert len(calls) == 1 and calls[0] is not None


def test_long_thin_boxes_side_by_side_are_no_pile() -> None:
    # an outside review: 120 x 6 px boxes (price tags, flat packs seen edge-on) make many more
    # index candidates than overlapping pairs, and were taken for a pile; no two are near-copies
    xs, ys = np.meshgrid(np.arange(0, 1150, 12.0), np.arange(0, 1270, 5.5))
    b = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 120, ys.ravel() + 6], 1)
    b = b[(b[:, 2] <= 1280) & (b[:, 3] <= 1280)]
    d = Detections(b.astype(np.float32), np.full(len(b), 0.9, np.float32))
    assert len(d) > 4000
    out, n = core.suppress_piles([d], MergeSpec())
    assert n == 0 and out[0] is d


class BandPile:
    """One tile of products each returned 4 times at 0.7 and 40 times at 0.45, as a detector
    without NMS of its own: above 0.5 its boxes hold too few pairs to be a pile on their own."""

    input_size = 1280
    score_floor = 0.3

    def predict(self, tiles):
        out = []
        for t in tiles:
            rng = np.random.default_rng(0)
            xs, ys = np.meshgrid(np.arange(10, t.shape[1] - 60, 64.0), np.arange(10, t.shape[0] - 100, 110.0))
            prod = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 60, ys.ravel() + 100], 1)
            b = np.repeat(prod, 44, axis=0) + rng.normal(0, 0.7, (len(prod) * 44, 4))
            s = np.tile(np.r_[np.full(4, 0.7), np.full(40, 0.45)], len(prod)) + rng.uniform(0, 0.01, len(b))
            out.append(Detections(b.astype(np.float32), s.astype(np.float32)))
        return out


def test_a_pile_below_the_threshold_is_thinned_once_for_every_end_of_the_count_range(caplog) -> None:
    # an outside review: each merge of the count range decided on its own boxes; at 0.5 no pile,
    # at 0.45 one: the range came out as 836 boxes, between 836 and 209, and nothing was said
    img = np.zeros((1280, 1280, 3), np.uint8)
    with caplog.at_level("WARNING"):
        res = dt.detect_image(img, BandPile(), tile=1280, score_thr=0.5, count_band=0.05)
    products = len(np.arange(10, 1280 - 60, 64.0)) * len(np.arange(10, 1280 - 100, 110.0))
    assert len(res.detections) == products
    cr = res.count_range
    assert cr.low <= cr.count <= cr.high
    assert caplog.text.count("piles of near-copies") == 1
    caplog.clear()
    with caplog.at_level("WARNING"):
        counts = dt.pipeline.counts_at_thresholds(img, BandPile(), [0.4, 0.5, 0.6], tiling=TileSpec(1280, 0.2))
    assert counts == [products, products, products]  # (one box per product at every threshold)
    assert caplog.text.count("piles of near-copies") == 1


class PileDetector:
    """Every bright blob of a tile, 30 times over (no NMS of its own)."""

    input_size = 256

    def predict(self, tiles):
        out = []
        for t in tiles:
            ys, xs = np.nonzero(t[..., 0] > 127)
            if len(xs) == 0:
                out.append(Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32)))
                continue
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            rng = np.random.default_rng(len(xs))
            b = box + rng.normal(0, 0.5, (3000, 4)).astype(np.float32)
            out.append(Detections(b, rng.uniform(0.5, 0.99, 3000).astype(np.float32)))
        return out


def test_through_the_engine_the_pile_is_said_once_and_one_box_served(caplog: pytest.LogCaptureFixture) -> None:
    img = np.full((400, 600, 3), 20, np.uint8)
    img[150:250, 250:330] = 230  # one product, in the overlap of two tiles
    with caplog.at_level("WARNING"):
        res = dt.detect_image(img, PileDetector(), tile=400, overlap=0.5, score_thr=0.5)
    assert caplog.text.count("piles of near-copies") == 1
    assert len(res.detections) == 1
    np.testing.assert_allclose(res.detections.xyxy[0], [250, 150, 330, 250], atol=3)


@pytest.mark.parametrize("copies", [4, 10, 20])
def test_a_few_copies_of_each_product_in_a_small_tile_are_a_pile_too(copies, caplog) -> None:
    # an outside review: 50 products x 20 copies (1000 boxes, 9 500 near-copy pairs) were counted
    # 1998 times without a word, since only tiles with more than 362 boxes were looked at
    tiles = make_grid(1200, 1000, TileSpec(1280, 0.2))
    assert len(tiles) == 1
    xs, ys = np.meshgrid(np.arange(20, 1100, 110.0), np.arange(20, 900, 180.0))
    prod = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 90, ys.ravel() + 160], 1)
    assert len(prod) == 50
    rng = np.random.default_rng(copies)
    b = np.repeat(prod, copies, axis=0) + rng.uniform(-2, 2, (len(prod) * copies, 4))
    d = Detections(b.astype(np.float32), rng.uniform(0.5, 1.0, len(b)).astype(np.float32))
    with caplog.at_level("WARNING", logger="densedet_tile.merge.core"):
        got = merge_tiles(tiles, [d], MergeSpec())
    assert len(got) == 50 and "1 of 1 tiles returned piles of near-copies" in caplog.text


def test_two_or_three_close_boxes_are_left_to_the_detector() -> None:
    # three copies of one product are 3 pairs for 3 boxes: not more pairs than boxes
    b = np.array([[10, 10, 110, 210], [11, 10, 111, 211], [10, 12, 109, 210], [300, 10, 400, 210]], np.float32)
    d = Detections(b[:3], np.array([0.9, 0.8, 0.7], np.float32))
    out, n = core.suppress_piles([d], MergeSpec())
    assert n == 0 and out[0] is d
    d4 = Detections(b, np.array([0.9, 0.8, 0.7, 0.9], np.float32))
    out, n = core.suppress_piles([d4], MergeSpec())
    assert n == 0 and out[0] is d4


def test_one_object_as_several_classes_is_no_pile_when_merging_class_agnostic() -> None:
    # a detector with NMS per class returns one product as four classes at one box; beside
    # them two real bottles overlapping at IoU 0.6: no pile, so none of them is suppressed here
    # (an outside review: counted as one, the tile went through NMS at 0.5 and lost a bottle)
    prods = np.array([[10, 10, 110, 210], [200, 10, 300, 210], [400, 10, 500, 210]], np.float32)
    stacked = np.repeat(prods, 4, axis=0) + np.tile([[0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [1, 1, 1, 1]], (3, 1))
    labels = np.tile(np.arange(4), 3)
    bottles = np.array([[600, 10, 700, 210], [625, 10, 725, 210]], np.float32)  # IoU 0.6
    d = Detections(np.concatenate([stacked, bottles]), np.linspace(0.9, 0.5, 14, dtype=np.float32),
                   np.concatenate([labels, [0, 0]]))
    for agnostic in (False, True):
        out, n = core.suppress_piles([d], MergeSpec(class_agnostic=agnostic))
        assert n == 0 and out[0] is d
    # copies of one class are still a pile when merging class-agnostic
    same = Detections(d.xyxy, d.scores, np.zeros(14, np.int64))
    out, n = core.suppress_piles([same], MergeSpec(class_agnostic=True))
    assert n == 1 and len(out[0]) == 4  # one box per product; the bottles overlap at 0.6 > nms_iou 0.5


def test_a_run_looks_for_piles_once_per_image_not_once_per_threshold(monkeypatch) -> None:
    calls = []
    real = core.suppress_piles
    monkeypatch.setattr(core, "suppress_piles", lambda dets, spec=MergeSpec(): calls.append(len(dets)) or real(dets, spec))
    import densedet_tile.pipeline as pipeline

    monkeypatch.setattr(pipeline, "suppress_piles", core.suppress_piles)
    img = np.zeros((900, 2000, 3), np.uint8)
    img[300:520, 700:860] = 255
    from fakes import make_cells

    r = dt.detect_image(np.asarray(img), make_cells(), tile=640, overlap=0.2)
    assert r.count_range is not None  # three thresholds merged
    assert len(calls) == 1


def test_tiles_searched_together_are_judged_each_on_its_own() -> None:
    # one tile's copies and its neighbour's lone boxes at the same tile-local places: the one
    # search over all tiles must neither pair boxes of two tiles nor lend one tile's pairs to another
    prods = np.array([[10, 10, 110, 210], [200, 10, 300, 210], [400, 10, 500, 210]], np.float32)
    rng = np.random.default_rng(5)
    piled = Detections((np.repeat(prods, 5, axis=0) + rng.uniform(-1, 1, (15, 4))).astype(np.float32),
                       rng.uniform(0.5, 1, 15).astype(np.float32))
    lone = Detections(prods, np.full(3, 0.9, np.float32))
    four = Detections(np.concatenate([prods, [[600, 10, 700, 210]]]).astype(np.float32), np.full(4, 0.9, np.float32))
    out, n = core.suppress_piles([four, piled, lone, four, piled], MergeSpec())
    assert n == 2 and [len(d) for d in out] == [4, 3, 3, 4, 3]
    assert out[0] is four and out[2] is lone and out[3] is four


def test_a_tile_too_crowded_to_search_beside_plain_ones_is_still_found(monkeypatch) -> None:
    monkeypatch.setattr(core, "_PILE_PAIRS_MAX", 500)
    prods = np.array([[10, 10, 110, 210], [200, 10, 300, 210], [400, 10, 500, 210], [600, 10, 700, 210]], np.float32)
    plain = Detections(prods, np.full(4, 0.9, np.float32))
    rng = np.random.default_rng(6)
    crowd = Detections((np.repeat(prods[:1], 60, axis=0) + rng.uniform(-2, 2, (60, 4))).astype(np.float32),
                       rng.uniform(0.5, 1, 60).astype(np.float32))  # 1770 pairs: over the limit alone
    out, n = core.suppress_piles([plain, crowd, plain], MergeSpec())
    assert n == 1 and len(out[1]) == 1 and out[0] is plain and out[2] is plain
