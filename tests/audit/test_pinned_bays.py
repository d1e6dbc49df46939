"""Killing tests for surviving mutants of densedet_tile/audit/bays.py (generated data only)."""
from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit.bays import find_bays

W, H = 100.0, 250.0


def _bay(rng, x0: float, x1: float, bottoms, space: float) -> list[list[float]]:
    out = []
    for b in bottoms:
        x = x0
        while x + W <= x1:
            out.append([x, b - H, x + W, b])
            x += W + rng.uniform(0, space) * W
    return out


def test_a_narrow_gutter_where_the_shelf_lines_break_is_an_upright() -> None:
    # bays.py:796 a gutter of 0.1 to 0.25 widths (jump_gutter..min_gutter) is an upright where
    # the shelf lines do not go on across it, though the spaces between products (up to a fifth
    # of a width) are too wide for the spacing rules: the cut is "upright", not a height jump
    rng = np.random.default_rng(3)
    left = _bay(rng, 0, 1500, (300, 600, 900), 0.2)
    edge = max(b[2] for b in left)
    right = _bay(rng, edge + 17, edge + 17 + 1500, (450, 750, 1050), 0.2)
    cut = find_bays(np.array(left + right))
    assert cut.kinds == ("upright",)
    assert edge - 5 < cut.cuts[0] < edge + 22


def test_a_raised_product_on_two_of_five_shelves_is_no_height_jump() -> None:
    # bays.py:822 columns where the aligned pairs outnumber half the misaligned ones are no jump
    # in shelf height: one product on a riser on two of five shelves, at one column, with three
    # shelves going on aligned there, leaves one bay
    boxes = []
    for r, bottom in enumerate((300, 600, 900, 1200, 1500)):
        for i in range(20):
            lift = 75.0 if (r < 2 and i == 10) else 0.0
            boxes.append([i * 105.0, bottom - H - lift, i * 105.0 + W, bottom - lift])
    cut = find_bays(np.array(boxes))
    assert cut.n_bays == 1, cut.kinds


def _sliver_between_uprights(left: int, sliver_x: float, right_x: float, right: int) -> np.ndarray:
    """Five shelves: ``left`` products a shelf from x 0, a sliver of two overlapping products
    (1.5 widths) from ``sliver_x``, then ``right`` products from ``right_x``."""
    boxes = []
    for bottom in (300, 600, 900, 1200, 1500):
        for i in range(left):
            boxes.append([i * 102.0, bottom - H, i * 102.0 + W, bottom])
        boxes.append([sliver_x, bottom - H, sliver_x + W, bottom])
        boxes.append([sliver_x + 0.5 * W, bottom - H, sliver_x + 1.5 * W, bottom])
        for i in range(right):
            boxes.append([right_x + i * 102.0, bottom - H, right_x + i * 102.0 + W, bottom])
    return np.array(boxes)


def test_a_bay_narrower_than_two_product_widths_is_merged_into_a_neighbour() -> None:
    # bays.py:865 a sliver bay (here a single column of products between two uprights, 1.5
    # product widths wide) joins a neighbour: three strips make two bays
    cut = find_bays(_sliver_between_uprights(10, 1070.0, 1290.0, 10))
    assert cut.n_bays == 2, (cut.cuts, cut.kinds)


def _upright_sliver_jump(sliver_w: float) -> np.ndarray:
    # a bay of 10 products a shelf, an upright's gutter, a strip ``sliver_w`` wide on the same
    # shelves, then (touching it) a bay whose shelves stand half a pitch lower
    boxes = []
    for bottom in (300, 600, 900, 1200):
        for i in range(10):
            boxes.append([i * 102.0, bottom - H, i * 102.0 + W, bottom])
        s0 = 1080.0
        boxes.append([s0, bottom - H, s0 + W, bottom])
        boxes.append([s0 + sliver_w - W, bottom - H, s0 + sliver_w, bottom])
        c0 = s0 + sliver_w + 2
        for i in range(10):
            boxes.append([c0 + i * 102.0, bottom + 150 - H, c0 + i * 102.0 + W, bottom + 150])
    return np.array(boxes)


def test_a_sliver_between_an_upright_and_a_height_jump_joins_the_jump_side() -> None:
    # bays.py:878 a sliver bay between an upright and a height jump is merged across the jump:
    # the upright's cut stays
    wide = find_bays(_upright_sliver_jump(300.0))
    assert wide.kinds == ("upright", "height jump")  # 3 widths: no sliver, both cuts
    cut = find_bays(_upright_sliver_jump(150.0))
    assert cut.kinds == ("upright",)
    assert abs(cut.cuts[0] - wide.cuts[0]) < 1.0


def test_a_sliver_between_two_uprights_joins_its_narrower_neighbour() -> None:
    # bays.py:880 between cuts of one kind a sliver goes to the narrower of the bays beside it:
    # 5 products a shelf left of it, 10 right of it; the cut left is the one right of the sliver
    cut = find_bays(_sliver_between_uprights(5, 570.0, 790.0, 10))
    assert cut.kinds == ("upright",)
    assert 720 < cut.cuts[0] < 790


def test_an_upright_span_reaches_to_the_products_on_either_side() -> None:
    # bays.py:844 the span of an upright cut is the x extent of its empty columns, whole bins
    # included: two bays of touching products, 500 px apart
    boxes = []
    for bottom in (300, 600, 900, 1200):
        for i in range(10):
            boxes.append([i * 100.0, bottom - H, i * 100.0 + 100, bottom])
            boxes.append([1500 + i * 100.0, bottom - H, 1600 + i * 100.0, bottom])
    cut = find_bays(np.array(boxes))
    assert cut.kinds == ("upright",) and cut.spans.tolist() == [[1000.0, 1500.0]]
    from densedet_tile.audit import run_audit
    (sec,) = run_audit(np.array(boxes), 2600, 1300).empty_sections
    assert (sec.x1, sec.x2, sec.width_products) == (1000.0, 1500.0, 5.0)


def test_a_window_of_zero_is_refused() -> None:
    # bays.py:673 window (median widths either side) must be positive
    from densedet_tile.errors import InvalidInputError
    boxes = np.array([[i * 102.0, 50, i * 102.0 + W, 300] for i in range(8)])
    for bad in (0.0, -1.0):
        with pytest.raises(InvalidInputError, match="window > 0"):
            find_bays(boxes, window=bad)
