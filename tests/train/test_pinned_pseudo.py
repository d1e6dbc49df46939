"""Behaviour of densedet_tile.train.pseudo that the suite did not pin (found by mutation testing)."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile import Detections
from densedet_tile.errors import InvalidInputError
from densedet_tile.train.pseudo import LabelSettings, agreement, fuse_views

from fakes import CloseUpUnsure


def _d(boxes, scores):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.zeros(len(scores), np.int64))


def test_min_views_of_one_is_a_valid_fraction_and_asks_every_view():
    s = LabelSettings(min_views=1.0)  # documented range (0, 1]
    assert s.votes_of(4) == 4 and s.votes_needed == len(s.views)


def test_score_lo_equal_to_score_hi_is_accepted():
    s = LabelSettings(score_lo=0.5, score_hi=0.5)  # documented: 0 <= score_lo <= score_hi < 1
    assert s.score_lo == s.score_hi == 0.5


def test_votes_of_is_not_raised_by_float_rounding_of_the_fraction():
    # 0.28 * 25 is 7.000000000000001 in floating point: 7 of 25 views are 28 %, not 8
    s = LabelSettings(scales=tuple(1.0 + 0.1 * i for i in range(25)), flip=False, min_views=0.28)
    assert len(s.views) == 25
    assert s.votes_of(25) == 7 and s.votes_needed == 7


def test_a_box_scored_exactly_score_lo_is_kept_as_an_ignore_region():
    s = LabelSettings(scales=(1.0,), flip=True, score_lo=0.25, score_hi=0.75)
    pl = fuse_views([_d([[0, 0, 10, 10]], [0.25]), _d([], [])], s)
    assert len(pl) == 0
    np.testing.assert_array_equal(pl.ignore, [[0, 0, 10, 10]])


def test_a_box_whose_fused_score_is_exactly_score_hi_becomes_a_label():
    s = LabelSettings(scales=(1.0,), flip=True, score_lo=0.25, score_hi=0.5, min_views=0.5)
    pl = fuse_views([_d([[0, 0, 10, 10]], [0.5]), _d([[0, 0, 10, 10]], [0.5])], s)
    assert len(pl) == 1 and pl.votes.tolist() == [2] and pl.ignore.shape == (0, 4)


def test_fuse_views_refuses_no_views():
    with pytest.raises(InvalidInputError, match="0 views given"):
        fuse_views([], LabelSettings())


def test_agreement_gives_each_prediction_its_best_overlap_first():
    ref = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], float)  # A, B
    # pred 0 is A exactly (and overlaps B at 0.67); pred 1 overlaps B at 0.67 and A at 0.43 only
    pred = np.array([[0, 0, 10, 10], [4, 0, 14, 10]], float)
    assert agreement(pred, ref) == {"matched": 2, "pred": 2, "ref": 2, "ignored": 0}


def test_agreement_matches_at_exactly_the_iou_threshold():
    ref = np.array([[0, 0, 10, 10]], float)
    pred = np.array([[0, 0, 20, 10]], float)  # IoU exactly 0.5
    assert agreement(pred, ref)["matched"] == 1
    ign = np.array([[0, 0, 20, 10]], float)
    far = np.array([[0, 0, 10, 10]], float)  # IoU 0.5 with the ignore box, none with ref
    assert agreement(far, np.array([[50, 50, 60, 60]], float), ign)["ignored"] == 1


def test_views_of_a_detector_with_a_photo_rule_are_at_the_rules_scale_times_theirs():
    # an outside review: the built-in model's photo rule replaced both views' tiles, so the views
    # at scales 1 and 1.5 were one view twice (every box two votes)
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.pipeline import plan
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers.array import ArraySource
    from densedet_tile.train.pseudo import view_detections

    class Ruled:
        input_size = 64

        def __init__(self):
            self.tiles = 0

        def photo_scale(self, width, height):
            return 0.1

        def predict(self, tiles):
            self.tiles += len(tiles)
            return [Detections.empty() for _ in tiles]

    image = np.zeros((1000, 1200, 3), np.uint8)
    settings = LabelSettings(scales=(1.0, 1.5), flip=False, tile=256)
    det = Ruled()
    assert len(view_detections(image, det, settings)) == 2
    src = ArraySource(image)

    def tiles_at(s):
        return len(plan(src, choose_scale(src, det, TileSpec(overlap=settings.overlap), RunSpec(scale=s)).tiling))

    assert tiles_at(0.1) != tiles_at(0.15) and det.tiles == tiles_at(0.1) + tiles_at(0.15)


class BuiltinRuled:
    """A detector with the built-in model's photo rule and input size that finds nothing and
    records the tile shapes it was shown."""

    input_size = 640

    def __init__(self):
        self.seen = []

    def photo_scale(self, width, height):
        return (1632 * 1224 / (width * height)) ** 0.5

    def predict(self, tiles):
        self.seen += [t.shape[:2] for t in tiles]
        return [Detections.empty() for _ in tiles]


def test_views_of_a_small_photo_under_a_photo_rule_are_all_run_and_cut_as_served(caplog):
    # an outside review: once the built-in model's rule reached photos under a megapixel, the
    # views of a photo shorter than the view tile were still dropped as duplicates by tile size
    # (2 views of 4), though at the rule's scale times theirs they differ; and their tiles were
    # cut without the seam overlap the served photo's keep
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers.array import ArraySource
    from densedet_tile.train.pseudo import view_detections

    settings = LabelSettings(scales=(1.0, 1.5), flip=True)
    image = np.zeros((300, 400, 3), np.uint8)  # shown at 4.08 in 157 px tiles, and at 6.12 in 105 px ones
    det = BuiltinRuled()
    with caplog.at_level("WARNING", logger="densedet_tile"):
        assert len(view_detections(image, det, settings)) == 4
    served = choose_scale(ArraySource(image), det, TileSpec(), RunSpec())
    assert served.tiling.tile == 157 and served.tiling.overlap * 157 >= 49
    assert len(set(det.seen)) == 1 and len(det.seen) > 4  # every tile at the model's 640 px
    # a thumbnail whose views would both be cut under 98 px: both shown in 98 px tiles, one view
    # (and its mirror), not the same boxes voted for twice
    det = BuiltinRuled()
    assert len(view_detections(np.zeros((150, 200, 3), np.uint8), det, settings)) == 2
    assert "overlap by" not in caplog.text and "shown to the model" not in caplog.text


def test_views_under_a_photo_rule_are_cut_from_the_tile_and_overlap_adapt_was_given():
    # an outside review: the views were cut from the default 1280 px tile whatever --tile said,
    # so their overlap differed from the served photo's (784 px tiles at 0.0625 against 0.05)
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.pipeline import plan
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers.array import ArraySource
    from densedet_tile.train.pseudo import view_detections

    for size, tile, overlap in (((2000, 1500), 640, 0.05), ((400, 300), 640, 0.05), ((2000, 1500), 1280, 0.2)):
        image = np.zeros((size[1], size[0], 3), np.uint8)
        det = BuiltinRuled()
        view_detections(image, det, LabelSettings(scales=(1.0,), flip=False, tile=tile, overlap=overlap))
        src = ArraySource(image)
        served = choose_scale(src, det, TileSpec(tile=tile, overlap=overlap), RunSpec())
        assert len(det.seen) == len(plan(src, served.tiling)), (size, tile, overlap)


def test_views_start_from_the_scale_the_photo_is_served_at_when_adapt_says_its_threshold():
    # an outside review: the photo rule's close-up check measured the views' photo at the labels'
    # low threshold (0.3), where boxes the served weights drop (0.35 < 0.45) made it a close-up,
    # while adapt's training crops were cut at the served scale: the views saw another photo
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.pipeline import plan
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers.array import ArraySource
    from densedet_tile.train.pseudo import view_detections

    image = np.zeros((2448, 3264, 3), np.uint8)
    settings = LabelSettings(scales=(1.0,), flip=False, score_lo=0.3)
    src = ArraySource(image)
    served = choose_scale(src, CloseUpUnsure(), TileSpec(tile=settings.tile, overlap=settings.overlap),
                          RunSpec(score_thr=0.45))
    assert "note" not in served.info and served.info["value"] == pytest.approx(0.5)  # not a close-up as served
    det = CloseUpUnsure()
    view_detections(image, det, settings, scale_thr=0.45)
    assert len(det.seen) == 1 + len(plan(src, served.tiling))  # the check, then the served photo's tiles
    det = CloseUpUnsure()
    view_detections(image, det, settings)  # measured at the labels' threshold: shrunk as a close-up
    assert len(det.seen) < 1 + len(plan(src, served.tiling))


def test_counts_at_many_thresholds_measure_the_scale_at_the_threshold_asked():
    # the same review: counts at many thresholds from one pass measured the photo rule's close-up
    # check at the lowest of them, so a photo the served weights see whole was counted as a close-up
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.pipeline import counts_at_thresholds, plan
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers.array import ArraySource

    image = np.zeros((2448, 3264, 3), np.uint8)
    src = ArraySource(image)
    served = choose_scale(src, CloseUpUnsure(), TileSpec(), RunSpec(score_thr=0.45))
    det = CloseUpUnsure()
    counts_at_thresholds(image, det, [0.35, 0.45], tiling=TileSpec(), scale_thr=0.45)
    assert len(det.seen) == 1 + len(plan(src, served.tiling))  # the check, then the served photo's tiles
    det = CloseUpUnsure()
    counts_at_thresholds(image, det, [0.35, 0.45], tiling=TileSpec())  # measured at 0.35: a close-up
    assert len(det.seen) < 1 + len(plan(src, served.tiling))
    with pytest.raises(InvalidInputError, match="scale_thr"):
        counts_at_thresholds(image, CloseUpUnsure(), [0.35], scale_thr=1.5)
