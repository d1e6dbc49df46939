"""Rows, gaps and empty shelves in small pinned layouts that no other test constrained (a
mutation review: each case fails with one rule changed: the running right edge, the row
threshold, the empty-shelf pitch, the shared-span guard, the tilt's tie)."""

from __future__ import annotations

import numpy as np

from densedet_tile.audit.gaps import find_empty_shelves, find_gaps
from densedet_tile.audit.rows import estimate_tilt, find_rows


def shelf(y: float, n: int = 10, w: float = 50, h: float = 200, x0: float = 0) -> list[list[float]]:
    """``n`` products ``w`` wide standing side by side on a shelf at height ``y``."""
    return [[x0 + i * w, y - h, x0 + (i + 1) * w, y] for i in range(n)]


def test_a_narrow_box_inside_a_wide_one_leaves_no_gap_after_it() -> None:
    b = shelf(300) + shelf(600) + shelf(900)
    b[13] = [b[13][0], 400, b[13][0] + 200, 600]  # a wide pack over 150..350
    b[14] = [b[14][0] + 10, 420, b[14][0] + 30, 600]  # a narrow one in front of it
    b[15], b[16] = [360, 400, 400, 600], [400, 400, 450, 600]
    a = np.array(b, float)
    assert find_gaps(a, find_rows(a)) == []


def test_a_row_of_exactly_the_minimum_products_is_a_row() -> None:
    a = np.array(shelf(300, n=3) + shelf(600) + shelf(900), float)
    assert len(find_rows(a).rows) == 3


def test_short_products_on_close_shelves_are_no_empty_shelf() -> None:
    # 30 px tall products on shelves 100 and 150 px apart: no shelf-sized space is empty
    a = np.array(shelf(100, h=30) + shelf(200, h=30) + shelf(350, h=30) + shelf(450, h=30), float)
    assert find_empty_shelves(find_rows(a)) == []


def test_rows_that_share_no_span_leave_no_empty_shelf_between_them() -> None:
    # the third row covers x 0-600, the fourth x 400-1000 below a space: they overlap only
    # over 400-600, too little to say a shelf between them stands empty
    a = np.array(shelf(100, n=20, h=80) + shelf(200, n=20, h=80) + shelf(300, n=12, h=80)
                 + shelf(500, n=12, h=80, x0=400), float)
    assert find_empty_shelves(find_rows(a)) == []


def test_a_level_row_has_no_tilt() -> None:
    # every angle fits 8 equal boxes side by side alike: the tie goes to level
    assert estimate_tilt(np.array([[i * 10, 0, i * 10 + 10, 100] for i in range(8)], float)) == 0.0
