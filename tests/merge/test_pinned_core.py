"""Behaviour of densedet_tile.merge.core the suite did not pin (found by mutation testing)."""

from __future__ import annotations

import numpy as np

from densedet_tile.merge import core
from densedet_tile.types import Detections, MergeSpec


def test_four_copies_of_a_single_product_are_a_pile():
    # documented: "10 copies of each product are one, and so are 4 copies of a single one"
    # (4 boxes, 6 near-copy pairs: more pairs than boxes)
    b = np.array([[10, 10, 110, 210], [11, 10, 111, 211], [10, 12, 109, 210], [11, 11, 110, 211]], np.float32)
    d = Detections(b, np.array([0.9, 0.8, 0.7, 0.6], np.float32))
    out, n = core.suppress_piles([d], MergeSpec())
    assert n == 1 and len(out[0]) == 1
    np.testing.assert_array_equal(out[0].xyxy, b[:1])


def test_as_many_near_copy_pairs_as_boxes_is_no_pile():
    # three copies of each of two products: 6 boxes, 3 + 3 = 6 pairs, not more pairs than boxes
    one = np.array([[10, 10, 110, 210], [11, 10, 111, 211], [10, 12, 109, 210]], np.float32)
    b = np.concatenate([one, one + [300, 0, 300, 0]])
    d = Detections(b, np.linspace(0.9, 0.6, 6, dtype=np.float32))
    out, n = core.suppress_piles([d], MergeSpec())
    assert n == 0 and out[0] is d
