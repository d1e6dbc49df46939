"""Pseudo-labels: a known detector on a known scene, through the real tiled engine and fusion."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pytest

from densedet_tile import Detections
from densedet_tile.errors import InvalidInputError
from densedet_tile.train.pseudo import LabelSettings, agreement, fuse_views, pseudo_label, view_detections

BLUE = 77  # every object's blue channel: tells object pixels from background and blended edges
STRONG, WEAK = 250, 120  # green channel -> the score the detector gives the object


class PaintedObjects:
    """Finds objects painted with a unique red value, blue 77 and a green "confidence" code.

    Boxes are the bounding boxes of the object's clean pixels in the (resized) tile, each side
    jittered by up to 0.5 px and each score by up to 0.02, from a generator that advances on
    every call, so every view sees slightly different boxes. Objects smaller than ``min_px`` at
    the model input are not reported (as a real model misses tiny products).
    """

    name = "painted"
    input_size = 640

    def __init__(self, min_px: int = 12) -> None:
        self.min_px = min_px
        self.calls = 0

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for t in tiles:
            rng = np.random.default_rng(self.calls)
            self.calls += 1
            t = t.astype(np.int16)
            clean = np.abs(t[..., 2] - BLUE) <= 2
            boxes, scores = [], []
            for red in np.unique(t[..., 0][clean]):
                m = clean & (t[..., 0] == red)
                rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
                if rows.size < self.min_px or cols.size < self.min_px:
                    continue
                g = np.median(t[..., 1][m])
                base = 0.9 if abs(g - STRONG) < 10 else 0.4 if abs(g - WEAK) < 10 else None
                if base is None:
                    continue
                box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], float) + rng.uniform(-0.5, 0.5, 4)
                boxes.append(box)
                scores.append(base + rng.uniform(-0.02, 0.02))
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                                  np.zeros(len(boxes), np.int64)))
        return out


def scene():
    """640x480 black image with painted objects; returns (image, strong boxes, weak boxes, small box)."""
    img = np.zeros((480, 640, 3), np.uint8)
    strong = [(40, 40, 100, 120), (280, 60, 340, 140), (500, 300, 560, 380), (150, 330, 210, 410)]
    weak = [(400, 60, 460, 140)]
    small = (90, 250, 98, 258)  # 8 px: only found when the view zooms in
    for k, (x0, y0, x1, y1) in enumerate(strong + [small]):
        img[y0:y1, x0:x1] = (20 + 10 * k, STRONG, BLUE)
    for k, (x0, y0, x1, y1) in enumerate(weak):
        img[y0:y1, x0:x1] = (200 + 10 * k, WEAK, BLUE)
    return img, np.array(strong, float), np.array(weak, float), np.array([small], float)


def _match(found: np.ndarray, truth: np.ndarray, tol: float) -> bool:
    if len(found) != len(truth):
        return False
    used = set()
    for t in truth:
        d = np.abs(found - t).max(axis=1)
        k = int(np.argmin(d))
        if d[k] > tol or k in used:
            return False
        used.add(k)
    return True


SETTINGS = LabelSettings(scales=(1.0, 2.0), flip=True, tile=640, overlap=0.2, score_hi=0.6, score_lo=0.3,
                         min_views=0.5)


def test_views_see_the_scene_mirrored_and_zoomed_back_in_photo_pixels():
    img, strong, weak, small = scene()
    det = PaintedObjects()
    views = view_detections(img, det, SETTINGS)
    assert [v for v in SETTINGS.views] == [(1.0, False), (1.0, True), (2.0, False), (2.0, True)]
    # scale 1: the small object is missed; scale 2 (tiles of 320 px resized to 640) finds it
    assert _match(views[0].xyxy, np.concatenate([strong, weak]), tol=1.0)
    assert _match(views[1].xyxy, np.concatenate([strong, weak]), tol=1.0)  # mirrored back
    assert _match(views[2].xyxy, np.concatenate([strong, weak, small]), tol=1.0)
    assert _match(views[3].xyxy, np.concatenate([strong, weak, small]), tol=1.0)
    # the views differ (noise per call), so fusion has something to average
    assert not np.allclose(np.sort(views[0].xyxy, 0), np.sort(views[1].xyxy, 0))


def test_confident_boxes_become_labels_uncertain_ones_ignore_regions():
    img, strong, weak, small = scene()
    pl = pseudo_label(img, PaintedObjects(), SETTINGS)
    assert pl.views == 4
    # strong objects (all four views, score ~0.9) and the small one (both zoomed views: half the views)
    assert _match(pl.boxes, np.concatenate([strong, small]), tol=0.75)
    assert np.all(pl.scores > 0.85)
    assert sorted(pl.votes.tolist()) == [2, 4, 4, 4, 4]
    # the weak object (score ~0.4 < 0.6) is neither taught as a product nor as background
    assert _match(pl.ignore, weak, tol=0.75)


def test_stricter_agreement_turns_the_zoom_only_box_into_an_ignore_region():
    img, strong, weak, small = scene()
    strict = LabelSettings(**{**SETTINGS.__dict__, "min_views": 0.75})
    pl = pseudo_label(img, PaintedObjects(), strict)
    assert strict.votes_needed == 3
    assert _match(pl.boxes, strong, tol=0.75)
    assert _match(pl.ignore, np.concatenate([weak, small]), tol=0.75)


def _d(boxes, scores):
    return Detections(np.array(boxes, np.float32).reshape(-1, 4), np.array(scores, np.float32),
                      np.zeros(len(scores), np.int64))


def test_fuse_views_rules_by_hand():
    s = LabelSettings(scales=(1.0, 1.5), flip=True, score_hi=0.6, score_lo=0.3, min_views=0.5)
    a, b, c, d = [0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]
    views = [
        _d([a, b, c, d], [0.9, 0.95, 0.4, 0.2]),
        _d([a, c, d], [0.8, 0.45, 0.25]),
        _d([[0.5, 0, 10.5, 10], c], [0.9, 0.35]),
        _d([a, c], [0.7, 0.5]),
    ]
    pl = fuse_views(views, s)
    # a: 4 votes, mean 0.825 -> label (fused box: score-weighted mean); b: 1 vote -> ignore;
    # c: 4 votes but mean 0.425 -> ignore; d: below score_lo everywhere -> nothing at all
    assert len(pl) == 1 and pl.votes.tolist() == [4]
    np.testing.assert_allclose(pl.scores, [0.825], atol=1e-6)
    np.testing.assert_allclose(pl.boxes[0], [0.9 * 0.5 / 3.3, 0, 10 + 0.9 * 0.5 / 3.3, 10], atol=1e-5)
    assert sorted(map(tuple, pl.ignore.tolist())) == [tuple(map(float, b)), tuple(map(float, c))]
    with pytest.raises(InvalidInputError, match="5 views given, settings describe 4"):
        fuse_views(views + views[:1], s)
    # a small photo's two distinct views: two must agree, half of them is not enough
    two = fuse_views([views[0], views[1]], s)
    assert two.views == 2 and two.votes.tolist() == [2] and sorted(map(tuple, two.ignore.tolist())) == [
        tuple(map(float, b)), tuple(map(float, c))]


def test_a_photo_no_longer_than_the_tiles_is_labelled_from_its_distinct_views_only():
    # 1280 px tiles at scale 1 and 853 px at 1.5 both hold all of a 800x600 photo, which the
    # engine resizes to the model's input alike: the same view twice would vote twice
    s = LabelSettings(scales=(1.0, 1.5), flip=True, tile=1280)
    assert s.views_of(800, 600) == [(1.0, False), (1.0, True)]
    assert s.views_of(600, 853) == [(1.0, False), (1.0, True)]
    assert s.views_of(1000, 600) == s.views  # 853 px tiles cut it in two: another view
    img, strong, weak, small = scene()  # 640 px wide
    small_settings = LabelSettings(**{**SETTINGS.__dict__, "tile": 2048})  # 2048 and 1024 px: whole photo both
    calls = []

    class Counting(PaintedObjects):
        def predict(self, tiles):
            calls.append(len(tiles))
            return super().predict(tiles)

    pl = pseudo_label(img, Counting(), small_settings)
    assert pl.views == 2 and len(calls) == 2 and set(pl.votes.tolist()) <= {2}


@pytest.mark.parametrize("kw", [dict(scales=()), dict(scales=(0.1,)), dict(min_views=0.0),
                                dict(score_lo=0.7, score_hi=0.6), dict(fuse_iou=0.0)])
def test_label_settings_refuse_nonsense(kw):
    with pytest.raises(InvalidInputError):
        LabelSettings(**kw)


def test_agreement_counts_matches_and_leaves_ignored_boxes_out():
    ref = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    ign = np.array([[60, 0, 70, 10]], float)
    pred = np.array([[0, 0, 10, 10], [0.5, 0, 10.5, 10], [21, 0, 31, 10], [60, 0, 70, 10], [90, 0, 99, 9]], float)
    a = agreement(pred, ref, ign)
    # one match each for the first and third reference; the duplicate and the stray box are
    # unmatched predictions; the box on the ignore region counts neither way
    assert a == {"matched": 2, "pred": 4, "ref": 3, "ignored": 1}
    assert agreement(np.zeros((0, 4)), ref) == {"matched": 0, "pred": 0, "ref": 3, "ignored": 0}
