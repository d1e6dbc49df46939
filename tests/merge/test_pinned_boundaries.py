"""Boundaries and tie-breaks of the merge that no other test pinned (a mutation review: each
case below passes here and fails with the rule changed by one comparison, a swapped axis or a
tie sent the other way)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from densedet_tile.merge.nms import nms
from densedet_tile.merge.seams import measure_view_noise, repair_seams
from densedet_tile.merge.wbf import weighted_box_fusion

# the modules themselves (the package's names nms and wbf are its functions)
nms_mod, wbf_mod = sys.modules["densedet_tile.merge.nms"], sys.modules["densedet_tile.merge.wbf"]


def test_wbf_joins_at_exactly_the_iou_threshold() -> None:
    f = weighted_box_fusion(np.array([[0, 0, 10, 10], [0, 0, 10, 20.0]]), np.array([0.9, 0.8]),
                            groups=np.array([0, 1]), iou_thr=0.5)  # IoU exactly 0.5
    assert f.cluster.tolist() == [0, 0]


@pytest.mark.parametrize("sweeps", [None, 0])  # the vectorised sweeps, and the sequential path alone
def test_wbf_ties_in_iou_go_to_the_better_scored_cluster(monkeypatch, sweeps) -> None:
    if sweeps is not None:
        monkeypatch.setattr(wbf_mod, "_MAX_SWEEPS", sweeps)
    b = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [5, 0, 15, 10.0]])  # C overlaps A and B alike
    f = weighted_box_fusion(b, np.array([0.9, 0.8, 0.7]), groups=np.array([0, 1, 2]), iou_thr=0.3)
    assert f.cluster.tolist() == [0, 1, 0]


@pytest.mark.parametrize("cap", [1, 2, 3, 63, 64])
def test_nms_keeps_a_chain_right_whatever_the_sweep_cap(monkeypatch, cap) -> None:
    # each box overlaps the next by 0.67: keeping every other one needs the sequential finish
    # to start from a settled state, whichever sweep the cap stops at
    monkeypatch.setattr(nms_mod, "_MAX_SWEEPS", cap)
    k = np.arange(300.0)
    boxes = np.stack([k * 2, 0 * k, k * 2 + 10, 0 * k + 10], 1)
    assert nms(boxes, 1 - k / 1000, 0.5).tolist() == list(range(0, 300, 2))


def _repair(boxes, cut, **kw):
    b = np.array(boxes, float)
    n = len(b)
    return repair_seams(b, np.linspace(0.9, 0.8, n), np.zeros(n, int), np.arange(n), np.array(cut, bool), **kw)


def test_a_cut_view_is_dropped_against_the_whole_one_by_its_own_axis_tolerance() -> None:
    # tall and narrow: the tops differ by 6 px, within 0.05 of the height (10 px), not of the width
    r = _repair([[0, 0, 30, 200], [0, 6, 60, 200]], [[0, 0, 1, 0], [0, 0, 0, 0]], tol_px=2, tol_frac=0.05)
    assert r.keep.tolist() == [False, True] and r.dropped.tolist() == [True, False]


def test_a_cut_view_whose_edge_differs_by_exactly_the_tolerance_is_dropped() -> None:
    r = _repair([[0, 0, 50, 100], [0, 4, 80, 100]], [[0, 0, 1, 0], [0, 0, 0, 0]], tol_px=4, tol_frac=0.0)
    assert r.keep.tolist() == [False, True]


def test_fragments_that_only_touch_are_not_joined() -> None:
    r = _repair([[0, 0, 50, 40], [50, 0, 100, 40]], [[0, 0, 1, 0], [1, 0, 0, 0]], tol_px=2, tol_frac=0.02)
    assert r.keep.tolist() == [True, True] and r.joined_xyxy.tolist() == []


def test_fragments_whose_far_sides_disagree_are_not_joined() -> None:
    # bottoms 30 px apart, three times the 10 px tolerance
    r = _repair([[0, 0, 60, 100], [40, 0, 100, 130]], [[0, 0, 1, 0], [1, 0, 0, 0]], tol_px=4, tol_frac=0.1)
    assert r.keep.tolist() == [True, True] and r.joined_xyxy.tolist() == []


def test_a_cut_box_is_confirmed_only_by_a_box_as_large_as_the_smaller_of_the_two() -> None:
    tiles = np.array([[0, 0, 100, 100], [50, 0, 150, 100.0]])
    r = _repair([[60, 10, 100, 90], [70, 20, 90, 40]], [[0, 0, 1, 0], [0, 0, 0, 0]], tol_px=2, tol_frac=0.02,
                confirm=True, tile_xyxy=tiles)
    assert r.keep.tolist() == [True, True] and r.unconfirmed.tolist() == [False, False]


def test_view_noise_pairs_each_box_with_its_best_match_only() -> None:
    boxes = np.array([[0, 0, 100, 100], [0, 0, 100, 101], [0, 0, 100, 160.0]])
    noise, pairs = measure_view_noise(boxes, np.array([0, 1, 1]), np.zeros((3, 4), bool), np.array([0, 0]),
                                      np.array([1, 2]))
    assert pairs == 1 and noise == pytest.approx(0.00398, abs=1e-4)
