"""The count range: how far an image's count moves within +-count_band of the score threshold."""

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile import CountRange, InvalidInputError, RunSpec
from densedet_tile.pipeline import detect_image, resolve_run
from densedet_tile.types import UNCERTAIN_AT

from fakes import BlobDetector, CellDetector, cell_image

# 10 sure boxes, 5 just above the threshold 0.45, 3 just below it, 4 well below
LEVELS = [0.6] * 10 + [0.47] * 5 + [0.42] * 3 + [0.37] * 4


def test_counts_at_both_ends_of_the_band():
    det = CellDetector(score_thr=0.45, score_floor=0.35)
    res = detect_image(cell_image(LEVELS), det, tile=2048, device="cpu")
    assert len(res.detections) == 15  # served at the detector's own threshold
    cr = res.count_range
    assert (cr.score_thr, cr.band) == (0.45, 0.05)
    assert (cr.low, cr.count, cr.high) == (10, 15, 18)
    assert cr.sensitivity == pytest.approx(8 / 15)
    assert cr.uncertain is True


def test_a_sure_count_is_not_flagged():
    det = CellDetector(score_thr=0.45, score_floor=0.35)
    cr = detect_image(cell_image([0.6] * 12 + [0.3] * 6), det, tile=2048, device="cpu").count_range
    assert (cr.low, cr.count, cr.high) == (12, 12, 12)
    assert cr.sensitivity == 0 and cr.uncertain is False


def test_each_end_equals_a_run_at_that_threshold():
    # many tiles: the seam merge sees different boxes at each threshold, so each end must be
    # merged on its own, exactly as a run at that threshold
    rng = np.random.default_rng(3)
    levels = rng.choice([0.62, 0.52, 0.48, 0.43, 0.41, 0.2], size=120).tolist()
    img = cell_image(levels, cols=15)
    det = CellDetector(score_thr=0.45, score_floor=0.3)
    res = detect_image(img, det, tile=300, overlap=0.25, device="cpu")
    assert res.num_tiles > 4
    cr = res.count_range
    for thr, want in ((0.5, cr.low), (0.45, cr.count), (0.4, cr.high)):
        alone = detect_image(img, det, tile=300, overlap=0.25, device="cpu", score_thr=thr, count_band=0)
        assert len(alone.detections) == want, thr
        assert alone.count_range is None
    assert cr.low < cr.count < cr.high


def test_band_is_a_run_setting():
    det = CellDetector(score_thr=0.45, score_floor=0.2)
    cr = detect_image(cell_image(LEVELS), det, tile=2048, device="cpu", count_band=0.1).count_range
    assert (cr.low, cr.count, cr.high) == (10, 15, 22)  # 0.55 / 0.45 / 0.35
    assert detect_image(cell_image(LEVELS), det, tile=2048, device="cpu", count_band=0).count_range is None


def test_explicit_threshold_wins_and_the_band_follows_it():
    det = CellDetector(score_thr=0.45, score_floor=0.3)
    res = detect_image(cell_image(LEVELS), det, tile=2048, device="cpu", score_thr=0.4)
    assert len(res.detections) == 18
    assert (res.count_range.low, res.count_range.high) == (15, 22)  # 0.45 / 0.35
    assert res.settings["score_thr"] == 0.4 and res.settings["count_band"] == 0.05


def test_detector_that_stops_at_its_threshold_gives_no_upper_end():
    det = CellDetector(score_thr=0.45)  # returns nothing below 0.45 (no score_floor)
    cr = detect_image(cell_image(LEVELS), det, tile=2048, device="cpu").count_range
    assert (cr.low, cr.count, cr.high) == (10, 15, None)
    assert cr.sensitivity is None and cr.uncertain is None


def test_detector_without_a_threshold_keeps_everything_and_has_no_range():
    res = detect_image(cell_image(LEVELS), CellDetector(), tile=2048, device="cpu")
    assert len(res.detections) == len(LEVELS)
    assert res.count_range is None and res.settings["score_thr"] is None


def test_resolve_run_takes_the_detectors_threshold():
    assert resolve_run(CellDetector(score_thr=0.3), RunSpec(device="cpu")).score_thr == 0.3
    assert resolve_run(CellDetector(score_thr=0.3), RunSpec(device="cpu", score_thr=0.6)).score_thr == 0.6
    assert resolve_run(BlobDetector(), RunSpec(device="cpu")).score_thr is None


@pytest.mark.parametrize("bad", [-0.1, 0.6, "0.05", True, float("nan")])
def test_bad_band_rejected(bad):
    with pytest.raises(InvalidInputError, match="count_band"):
        RunSpec(count_band=bad)


def test_bad_declared_threshold_is_a_clear_error():
    with pytest.raises(dt.DetectorError, match="score_floor"):
        detect_image(cell_image(LEVELS), CellDetector(score_thr=0.45, score_floor=1.5), tile=2048, device="cpu")


def test_count_range_figures():
    cr = CountRange(score_thr=0.45, band=0.05, low=80, count=100, high=110)
    assert cr.sensitivity == pytest.approx(0.3) and cr.uncertain is True
    assert CountRange(0.45, 0.05, 81, 100, 110).uncertain is False
    assert CountRange(0.45, 0.05, 0, 0, 0).sensitivity == 0.0
    assert CountRange(0.45, 0.05, 0, 0, 2).uncertain is True  # nothing kept, boxes just below
    d = cr.as_dict()
    assert d == {"score_thr": 0.45, "band": 0.05, "at_scores": [0.5, 0.45, 0.4], "counts": [80, 100, 110],
                 "sensitivity": 0.3, "uncertain": True}
    assert UNCERTAIN_AT == 0.3


def test_threshold_near_one_counts_its_lower_end_at_one():
    # 0.95 and 0.951 must not differ in kind: the lower end is the count at 1 (a box scored 1
    # counts there), and a count that falls from 10 to nothing within the band is flagged
    det = CellDetector(score_thr=0.97, score_floor=0.9)
    cr = detect_image(cell_image([0.99] * 10 + [0.93] * 5), det, tile=2048, device="cpu").count_range
    assert (cr.low, cr.count, cr.high) == (0, 10, 15)
    assert cr.sensitivity == pytest.approx(1.5) and cr.uncertain is True
    assert cr.as_dict()["at_scores"] == [1.0, 0.97, 0.92]
    cr = detect_image(cell_image([1.0] * 10 + [0.99] * 2), det, tile=2048, device="cpu").count_range
    assert (cr.low, cr.count, cr.high) == (10, 12, 12) and cr.uncertain is False


def test_threshold_near_zero_counts_its_upper_end_at_zero():
    # a detector returning every box (floor 0) at threshold 0.03: the count at 0 is known
    det = CellDetector(score_thr=0.03, score_floor=0.0)
    cr = detect_image(cell_image([0.5] * 4 + [0.13] * 3), det, tile=2048, device="cpu").count_range
    assert (cr.low, cr.count, cr.high) == (7, 7, 7) and cr.uncertain is False
    assert cr.as_dict()["at_scores"] == [0.08, 0.03, 0.0]
    # one that returns nothing below 0.03 cannot tell the count at 0
    det = CellDetector(score_thr=0.03, score_floor=0.03)
    cr = detect_image(cell_image([0.5] * 4 + [0.13] * 3), det, tile=2048, device="cpu").count_range
    assert cr.high is None and cr.uncertain is None


def test_a_swing_of_one_box_is_not_a_flag():
    det = CellDetector(score_thr=0.45, score_floor=0.35)
    for levels, want in (([0.42], (0, 0, 1)), ([0.6, 0.6, 0.42], (2, 2, 3)), ([0.6, 0.6, 0.42, 0.42], (2, 2, 4))):
        cr = detect_image(cell_image(levels), det, tile=2048, device="cpu").count_range
        assert (cr.low, cr.count, cr.high) == want
        assert cr.uncertain is (want[2] - want[0] >= 2)


def test_joined_parts_reach_only_as_low_as_their_highest_floor():
    from densedet_tile.pipeline import Predictions

    run = RunSpec(device="cpu", score_thr=0.45)
    part = lambda floor: Predictions([dt.Detections.empty()], run, 1, score_floor=floor)  # noqa: E731
    assert Predictions.join([part(0.4), part(0.3)]).score_floor == 0.4
    assert Predictions.join([part(0.4), part(None)]).score_floor is None


def test_near_misses_are_the_upper_ends_boxes_below_the_threshold_and_the_preview_draws_them(tmp_path):
    from PIL import Image

    from densedet_tile.io import KEPT_COLOUR, NEAR_MISS_COLOUR, write_preview

    img = cell_image(LEVELS)
    det = CellDetector(score_thr=0.45, score_floor=0.35)
    res = detect_image(img, det, tile=2048, device="cpu")
    near = res.near_misses
    assert len(near) == res.count_range.high - res.count_range.count == 3
    assert np.all(near.scores < 0.45) and np.all(near.scores >= 0.4)
    from dataclasses import replace

    pix = {}
    for name, r in (("with", res), ("without", replace(res, near_misses=None))):
        with dt.open_image(img) as src:
            write_preview(r, tmp_path / f"{name}.jpg", src)
        pix[name] = np.asarray(Image.open(tmp_path / f"{name}.jpg").convert("RGB")).astype(int)

    def edge(p, box):  # the pixels of a box's top edge, away from the corners
        x1, y1, x2, _ = (int(v) for v in box)
        return p[y1, x1 + 4:x2 - 4]

    # the near misses' outlines are drawn in orange: more red than without them, and more red than green ...
    for box in near.xyxy:
        d = edge(pix["with"], box) - edge(pix["without"], box)
        assert d[:, 0].mean() > 40 and d[:, 0].mean() > d[:, 1].mean() + 20
    # ... and the kept boxes stay green
    for box in res.detections.xyxy:
        e = edge(pix["with"], box)
        assert e[:, 1].mean() > e[:, 0].mean() + 60 and e[:, 1].mean() > e[:, 2].mean() + 60
    assert NEAR_MISS_COLOUR != KEPT_COLOUR
    # no upper end, no near misses
    assert detect_image(img, CellDetector(score_thr=0.45), tile=2048, device="cpu").near_misses is None


def test_a_threshold_below_what_a_shared_detector_returns_is_warned_about():
    # a service builds the detector once; a request asking for a lower threshold cannot get
    # the boxes the detector no longer returns, and must be told so
    det = CellDetector(score_thr=0.45, score_floor=0.35)
    with pytest.warns(RuntimeWarning, match=r"score_thr 0.2 is below the lowest score this detector returns \(0.35"):
        res = detect_image(cell_image(LEVELS), det, tile=2048, device="cpu", score_thr=0.2)
    assert res.detections.scores.min() >= 0.35
    detect_image(cell_image(LEVELS), det, tile=2048, device="cpu", score_thr=0.35)  # at the floor: no warning


def test_the_served_boxes_do_not_depend_on_the_count_band():
    # boxes just below the threshold confirm cut views at the seams; they come from a fixed
    # window below it, so asking for a count range (or none) never changes the boxes served
    rng = np.random.default_rng(3)
    img = cell_image(rng.choice([0.62, 0.52, 0.48, 0.43, 0.41, 0.2], size=120).tolist(), cols=15)
    det = CellDetector(score_thr=0.45, score_floor=0.3)
    runs = [detect_image(img, det, tile=300, overlap=0.25, device="cpu", count_band=b).detections
            for b in (0.0, 0.05, 0.1)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.xyxy, runs[0].xyxy)
        np.testing.assert_array_equal(other.scores, runs[0].scores)


@pytest.mark.parametrize("seed", [4, 6])
def test_the_upper_end_is_the_count_of_a_run_at_that_threshold(seed):
    # a run at 0.40 confirms products cut by a tile's edge with boxes down to 0.35; the range of
    # a run at 0.45 had none below 0.40 (the model returned none), and came one box short on
    # these generated shelves
    from densedet_tile.synth.shelves import render_shelf

    img = np.asarray(render_shelf(np.random.default_rng(seed), width=1400, height=1000, product_height=90)[0])
    kw = dict(tiling=dt.TileSpec(tile=640, overlap=0.2), run=RunSpec(scale=1.0))
    served = detect_image(img, dt.load_detector("default"), **kw)
    lower = detect_image(img, dt.load_detector("default", score_thr=served.count_range.score_thr - 0.05), **kw)
    assert served.count_range.high == len(lower.detections)
    # and a detector built lower (a service's) gives the same range, and the same boxes
    shared = detect_image(img, dt.load_detector("default", score_thr=0.3), tiling=kw["tiling"],
                          run=RunSpec(scale=1.0, score_thr=0.45))
    assert (shared.count_range.low, shared.count_range.count, shared.count_range.high) == \
        (served.count_range.low, served.count_range.count, served.count_range.high)
    assert np.array_equal(shared.detections.xyxy, served.detections.xyxy)


def test_a_served_product_is_no_near_miss_where_a_weaker_view_of_another_tile_fused_with_it():
    # (an outside review) tile 0 scores a product 0.47, tile 1 (which sees it whole too) 0.41:
    # served at 0.45, at the upper end's 0.40 the two views fuse to 0.44, which was listed as a
    # near miss though the product is counted
    from densedet_tile.detector.base import Detector
    from densedet_tile.types import Detections as D

    class LeftSure(Detector):
        score_thr = 0.45
        score_floor = 0.35

        def predict(self, tiles):
            out = []
            for t in tiles:
                g = t.mean(axis=2) if t.ndim == 3 else t
                ys, xs = np.nonzero(g > 128)
                if not len(xs):
                    out.append(D(np.zeros((0, 4)), np.zeros(0)))
                    continue
                box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                score = 0.47 if (box[0] + box[2]) / 2 < t.shape[1] / 2 else 0.41
                out.append(D(np.array([box], np.float32), np.array([score], np.float32)))
            return out

    img = np.zeros((200, 300, 3), np.uint8)
    img[80:120, 110:150] = 255
    res = detect_image(img, LeftSure(), tile=200, overlap=0.5, device="cpu")
    assert res.num_tiles == 2 and len(res.detections) == 1
    assert res.near_misses is not None and len(res.near_misses) == 0
    assert res.count_range.high == 1


@pytest.mark.parametrize("thr", [0.6, 0.7])
def test_above_the_models_own_threshold_the_ends_are_runs_built_as_the_command_builds_them(thr):
    # (outside reviews) a run at 0.6 measured the products with its own boxes and chose another
    # scale than one at 0.65 or 0.55: the range said 290 where a run at 0.65 served 297. The
    # built-in model now measures at its scale_thr at any threshold, and returns boxes down to it
    # however it was built (the command builds it at the served threshold)
    from densedet_tile.synth.shelves import render_shelf

    img = np.asarray(render_shelf(np.random.default_rng(3), width=1200, height=900, product_height=60)[0])

    def run(t, built=None):
        return detect_image(img, dt.load_detector("default", score_thr=t if built is None else built),
                            tiling=dt.TileSpec(tile="auto"), run=RunSpec(score_thr=t))

    served = run(thr)
    cr = served.count_range
    scale = served.settings["scale"]["value"]
    for t, want in ((round(thr + 0.05, 2), cr.low), (round(thr - 0.05, 2), cr.high)):
        alone = run(t)
        assert alone.settings["scale"]["value"] == scale
        assert len(alone.detections) == want, t
    # the same run with the model built at its own threshold: the same scale and boxes
    other = run(thr, built=0.45)
    assert other.settings["scale"]["value"] == scale
    assert np.array_equal(other.detections.xyxy, served.detections.xyxy)


def test_a_model_built_above_its_own_threshold_still_returns_boxes_down_to_it():
    det = dt.load_detector("default", score_thr=0.8)
    assert det.scale_thr == 0.45 and det.score_floor == 0.45
    assert dt.load_detector("default", score_thr=0.5).score_floor == pytest.approx(0.4)


def test_a_range_whose_counts_do_not_fall_with_the_threshold_is_shown_in_order():
    # merged counts need not fall as the threshold rises (fewer boxes, fewer fused): 30 at 0.5,
    # 28 at 0.45 and 29 at 0.4 was shown "28 products (30-29)", upside down and without the
    # count (an outside review); the range shown is the least and the most of the three
    from densedet_tile.audit.report import _range_cell
    from densedet_tile.cli.options import products_text
    from densedet_tile.types import CountRange

    cr = CountRange(score_thr=0.45, band=0.05, low=30, count=28, high=29)
    assert cr.bounds == (28, 30)
    assert cr.sensitivity == pytest.approx(2 / 28)
    assert cr.as_dict()["counts"] == [30, 28, 29]  # what was measured at each threshold, as it was
    assert products_text(28, (30, 29)) == "28 products (28-30)"
    assert _range_cell(cr.as_dict()) == "28-30"
    # a range that falls as it should is shown as before
    assert CountRange(score_thr=0.45, band=0.05, low=25, count=28, high=33).bounds == (25, 33)
    assert products_text(28, (25, 33), True) == "28 products (25-33, uncertain count)"


def test_a_resumed_batch_lists_an_earlier_results_range_in_order(tmp_path):
    import json

    from densedet_tile.batch import _existing_products

    doc = {"num_detections": 28, "count_range": {"counts": [30, 28, 29], "uncertain": False}}
    (tmp_path / "img.detections.json").write_text(json.dumps(doc))
    assert _existing_products(tmp_path, "img")["count_range"] == [28, 30]
