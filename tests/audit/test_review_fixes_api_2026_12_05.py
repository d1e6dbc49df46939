"""The audit's lower-level functions on boxes a user may hand them by mistake (an outside review
of the Python API, 2026-12-05): xywh boxes, and boxes of no height or width."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit import density_grid, find_bays, find_gaps, find_rows, run_audit
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.audit_aisles import synthetic_bays


def _xywh() -> np.ndarray:
    x = synthetic_bays(np.random.default_rng(1), n_bays=3, perspective_deg=10).xyxy
    return np.c_[x[:, :2], x[:, 2:] - x[:, :2]]


@pytest.mark.parametrize("call", [
    find_rows, find_bays, lambda a: find_gaps(a, find_rows(np.zeros((0, 4)))),
    lambda a: density_grid(a, 4000, 3000), lambda a: run_audit(a, 4000, 3000),
])
def test_xywh_boxes_are_refused_naming_the_first(call) -> None:
    # before: find_bays failed inside numpy, find_rows found no row without a word
    with pytest.raises(InvalidInputError, match=r"have x2 < x1 or y2 < y1 \(the first: box 0, .*not x, y, width, height"):
        call(_xywh())


@pytest.mark.parametrize("boxes", [
    [[5.0, 5.0, 5.0, 5.0]] * 2,  # points
    [[i * 10.0, 0.0, i * 10.0, 10.0] for i in range(10)],  # lines of no width
    [[0.0, i * 10.0, 10.0, i * 10.0] for i in range(10)],  # lines of no height
])
def test_boxes_of_no_area_make_no_row_and_no_bay(boxes) -> None:
    # before: an IndexError from the row split
    assert find_rows(boxes).rows == ()
    assert find_bays(boxes).n_bays == 1


def test_density_grid_refuses_a_nan_box() -> None:
    with pytest.raises(InvalidInputError, match="not a finite number"):  # (a numpy ValueError before)
        density_grid([[float("nan"), 0, 1, 1]], 100, 100)


def test_check_gaps_refuses_an_empty_image() -> None:
    from densedet_tile.audit import check_gaps

    aisle = synthetic_bays(np.random.default_rng(3), n_bays=1, perspective_deg=0)
    res = run_audit(aisle.xyxy[::2], aisle.width, aisle.height)  # every other product: gaps
    assert res.gaps
    with pytest.raises(InvalidInputError, match="the image is empty"):  # every gap unjudged before
        check_gaps(res, np.zeros((0, 0, 3), np.uint8))
