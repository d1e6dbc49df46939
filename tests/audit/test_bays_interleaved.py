"""Two bays side by side whose shelves interleave (half a pitch apart), separated by a thin
upright: no product on one side has a neighbour beside it on the other, which is itself the
sign that the shelf lines do not go on (generated boxes only)."""
from __future__ import annotations

import numpy as np

from densedet_tile.audit import run_audit
from densedet_tile.audit.bays import find_bays

W, H = 100.0, 150.0


def _rows(rng, x0: float, x1: float, bottoms) -> list[list[float]]:
    out = []
    for b in bottoms:
        x = x0
        while x + W <= x1:
            out.append([x, b - H, x + W, b])
            x += W + rng.uniform(0, 0.2) * W  # spaces up to a fifth of a width: no spacing rule
    return out


def _interleaved(upright: float, seed: int = 7) -> tuple[np.ndarray, float]:
    rng = np.random.default_rng(seed)
    left = _rows(rng, 0.0, 1500.0, (300, 600, 900, 1200))
    edge = max(b[2] for b in left)
    # products as tall as half the pitch, the right bay's shelves half a pitch lower: every box
    # of one side lies between two shelves of the other
    right = _rows(rng, edge + upright, edge + upright + 1500.0, (450, 750, 1050, 1350))
    return np.array(left + right), edge


def test_interleaved_shelves_across_a_thin_upright_are_two_bays() -> None:
    boxes, edge = _interleaved(20.0)
    cut = find_bays(boxes)
    assert cut.n_bays == 2, cut.kinds
    assert edge - 5 < cut.cuts[0] < edge + 25
    res = run_audit(boxes, int(boxes[:, 2].max()) + 20, 1400)
    # each bay's four shelves are its rows, and no gap reaches into the other bay
    assert sorted(len(p.layout.rows) for p in res.parts) == [4, 4]
    for g in res.gaps:
        assert g.x2 <= edge + 5 or g.x1 >= edge + 15, (g.x1, g.x2)


def test_interleaved_shelves_hold_for_other_draws_and_upright_widths() -> None:
    for seed in (1, 2, 3):
        for upright in (20.0, 25.0, 30.0):
            boxes, edge = _interleaved(upright, seed)
            cut = find_bays(boxes)
            assert cut.n_bays == 2, (seed, upright, cut.kinds)
            assert edge - 5 < cut.cuts[0] < edge + upright + 5


def test_shelves_stocked_in_a_staircase_stay_one_bay() -> None:
    # the top two shelves stocked only left of a column, the bottom two only right of it: no box
    # has a neighbour beside it across the column, but the two sides share no height either, so
    # nothing says that the shelf lines break there
    rng = np.random.default_rng(5)
    top = _rows(rng, 0.0, 1500.0, (300, 600))
    edge = max(b[2] for b in top)
    bottom = _rows(rng, edge + 20.0, edge + 1520.0, (900, 1200))
    cut = find_bays(np.array(top + bottom))
    assert cut.n_bays == 1, (cut.kinds, cut.cuts)


def test_a_bay_filled_to_the_top_with_shelves_emptied_near_a_column_stays_one() -> None:
    # products 150 tall on a 160 px pitch: each product's bottom lies on the top of the one
    # below, so all but the bottom shelf count as stacked. Near a column, shelf 3 is empty on
    # the left and shelves 2 and 4 on the right; the standing boxes left and right of it lie at
    # other heights, but shelf 1 goes on across it, which every box near it shows
    bottoms = {1: 300.0, 2: 460.0, 3: 620.0, 4: 780.0}
    width, space = 100.0, 15.0
    left_x = [k * (width + space) for k in range(12)]
    g1 = left_x[-1] + width + 20.0
    right_x = [g1 + k * (width + space) for k in range(12)]
    boxes = [[x, bottoms[s] - H, x + width, bottoms[s]] for k, x in enumerate(left_x) for s in bottoms
             if not (k >= 8 and s == 3)]
    boxes += [[x, bottoms[s] - H, x + width, bottoms[s]] for k, x in enumerate(right_x) for s in bottoms
              if not (k < 4 and s in (2, 4))]
    cut = find_bays(np.array(boxes))
    assert cut.n_bays == 1, (cut.kinds, cut.cuts)
