"""A detector's box over two shelves (a fridge door, a stack of shelves boxed as one) does not
join the two shelves' rows by filling the thin lip between them (an outside review: a fridge's
three shelves came out as one row 3 product heights tall)."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit import find_rows


def _shelves(rng: np.random.Generator, n_tall: int) -> tuple[np.ndarray, np.ndarray]:
    """Three shelves of 12 products 40 x 80 px standing on lines 100 px apart (a lip of 20 px
    between the rows), jittered by a pixel, and ``n_tall`` boxes 165 px tall from the top
    shelf's products down to the middle shelf's bottom, spread along the bay. Returns the boxes
    and each one's shelf (-1 for the tall ones)."""
    boxes, shelf = [], []
    for s in range(3):
        for k in range(12):
            boxes.append([40 * k, 20 + 100 * s, 40 * k + 40, 100 + 100 * s])
            shelf.append(s)
    for x in np.linspace(0, 440, n_tall):
        boxes.append([x, 30, x + 40, 195])
        shelf.append(-1)
    a = np.asarray(boxes, np.float64) + rng.uniform(-1, 1, (len(boxes), 4))
    return a, np.asarray(shelf)


@pytest.mark.parametrize("seed", range(5))
def test_boxes_spanning_two_shelves_leave_their_rows_apart(seed: int) -> None:
    # 14 boxes over the top two shelves (a quarter of the boxes): together wider than the bay,
    # they filled the lip between those shelves to over half the shelves' own fill
    rng = np.random.default_rng(seed)
    a, shelf = _shelves(rng, 14)
    lay = find_rows(a)
    assert len(lay.rows) == 3
    real = shelf >= 0
    # every product in the row of its own shelf, the rows top to bottom
    np.testing.assert_array_equal(lay.assignment[real], shelf[real])
    # the tall boxes are counted in a row (the upper one, which holds their centres' line or the
    # nearest): none is lost
    assert (lay.assignment[~real] >= 0).all()


def test_without_the_spanning_boxes_the_shelves_were_already_apart_and_with_many_they_are_the_products() -> None:
    rng = np.random.default_rng(9)
    a, shelf = _shelves(rng, 0)
    assert len(find_rows(a).rows) == 3
    # 24 boxes over two shelves among 60: too many to be a detector's mistakes; they are
    # products of their own, and fill the profile as any product does (two rows: the shelves
    # they span and the bottom one)
    a, shelf = _shelves(rng, 24)
    assert len(find_rows(a).rows) == 2
