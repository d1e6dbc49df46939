"""Behaviour of densedet_tile.merge.boxes the suite did not pin (found by mutation testing)."""

from __future__ import annotations

import warnings

import numpy as np

from densedet_tile.merge.boxes import count_containing, pair_iou


def test_two_identical_zero_area_boxes_have_iou_zero_not_nan():
    # documented: "two boxes without a common area (including degenerate zero-area boxes) have IoU 0"
    b = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 10, 0]], float)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0/0
        v = pair_iou(b, np.array([0, 0]), np.array([1, 2]))
    np.testing.assert_array_equal(v, [0.0, 0.0])


def test_count_containing_rectangles_of_one_start_and_different_lengths():
    # two rectangles starting at x = 0, 10 and 20 px wide: not a grid of spans of one length
    rects = np.array([[0, 0, 10, 10], [0, 0, 20, 10]], float)
    boxes = np.array([[12, 2, 18, 8], [2, 2, 8, 8], [15, 2, 25, 8]], float)
    np.testing.assert_array_equal(count_containing(rects, boxes), [1, 2, 0])
