"""Seam repair's tolerance where two views of one product differ in size (an outside review of
2026-12-07, second stop of the day: a detector's error on each side grows with its own box, so a
fragment and a fuller view disagree by about the fuller view's error, not the fragment's).
The first test fails on the code before it; the other two hold the rule to its limits."""

from __future__ import annotations

import numpy as np

from densedet_tile.merge import repair_seams

#: a 100x600 product at x 1000..1100, y 200..800: a view of it whole, its bottom 30 px short
#: (5 % of its height), and a fragment from a tile whose top edge (y=560) cuts it
WHOLE = [1000.0, 200.0, 1100.0, 770.0]
FRAGMENT = [1000.0, 560.0, 1100.0, 800.0]
CUT = np.array([[False, False, False, False], [False, True, False, False]])  # the fragment's top


def _repair(labels: list[int], fragment: list[float] = FRAGMENT):
    return repair_seams(np.array([WHOLE, fragment]), np.array([0.9, 0.6]), np.array(labels, np.int64),
                        np.array([0, 1]), CUT, tol_px=16, tol_frac=0.1)


def test_a_fragment_of_a_tall_product_is_a_view_of_its_fuller_view():
    # the bottoms 30 px apart: within 10 % of the views' root mean square height (437 px), not
    # of the fragment's 240 px (24 px): the fragment was kept, a second box for the product
    rep = _repair([0, 0])
    assert rep.dropped.tolist() == [False, True]
    assert rep.keep.tolist() == [True, False]


def test_views_of_two_labels_still_agree_at_the_smaller_scale():
    # a product at the end of a pack boxed as a class of its own agrees with the pack's box on
    # three sides within a few pixels, and is no view of it: two labels keep the smaller extent
    rep = _repair([0, 1])
    assert not rep.dropped.any() and rep.keep.all()


def test_a_fragment_past_the_fuller_views_tolerance_is_kept():
    # 60 px apart: over 10 % of the root mean square height too
    rep = _repair([0, 0], [1000.0, 560.0, 1100.0, 830.0])
    assert not rep.dropped.any() and rep.keep.all()


def test_a_fragment_beside_a_much_larger_neighbour_is_no_view_of_it():
    # tile 1024 at overlap 0.1 (tiles 0..1024 and 922..1946); one row of one label: products 900,
    # 160 and 880 px wide, the middle one cut by both tiles. At a noisy run's tolerance
    # (agree_frac 0.25 or 0.3) the root mean square extent of the 900 px product and the 138 px
    # fragment (644 px) let the fragment, 160 px past the product's side, be dropped as a view of
    # it, and the middle product came out as the other 124 px fragment; at most three times the
    # smaller extent, the two fragments are joined as before
    a, b0, c, b1 = [0, 0, 900, 300], [900, 0, 1024, 300], [1060, 0, 1940, 300], [922, 0, 1060, 300]
    cut = np.array([[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0]], bool)
    tiles = np.array([[0, 0, 1024, 300], [922, 0, 1946, 300]], np.float64)
    for frac in (0.1, 0.25, 0.3):
        rep = repair_seams(np.array([a, b0, c, b1], np.float64), np.full(4, 0.9), np.zeros(4, np.int64),
                           np.array([0, 0, 1, 1]), cut, tol_px=16, tol_frac=frac, tile_xyxy=tiles, contain=0.5)
        assert not rep.dropped.any(), frac
        assert rep.keep.tolist() == [True, False, True, False]
        assert rep.joined_xyxy.tolist() == [[900.0, 0.0, 1060.0, 300.0]]
