"""A shelf between two rows holding only two products is a row (mostly empty), not an empty
shelf; two boxes on a line above the top row or below the bottom one are still no row."""

from __future__ import annotations

import numpy as np

from densedet_tile.audit import find_rows, run_audit
from densedet_tile.synth.audit_aisles import synthetic_bays


def _tall_bay(seed: int, min_rows: int = 4):
    rng = np.random.default_rng([seed, 47])
    aisle = synthetic_bays(rng, n_bays=int(rng.integers(1, 4)), perspective_deg=float(rng.uniform(-20, 20)))
    for b in range(int(aisle.bay_of.max()) + 1):
        if aisle.row_of[aisle.bay_of == b].max() + 1 >= min_rows:
            return aisle, b
    return aisle, None


def test_an_inner_shelf_with_two_products_is_a_row_with_its_gaps() -> None:
    tried = rows = empty = 0
    for seed in range(40):
        aisle, bay = _tall_bay(seed)
        if bay is None:
            continue
        n_rows = int(aisle.row_of[aisle.bay_of == bay].max()) + 1
        row = 1 + seed % (n_rows - 2)  # never the top or bottom shelf
        on = np.flatnonzero((aisle.bay_of == bay) & (aisle.row_of == row))
        if len(on) < 6:
            continue
        left = on[np.argsort(aisle.xyxy[on, 0])]
        two = left[[0, len(left) // 2]]  # two products far apart, the rest of the shelf emptied
        keep = np.ones(len(aisle.xyxy), bool)
        keep[np.setdiff1d(on, two)] = False
        res = run_audit(aisle.xyxy[keep], aisle.width, aisle.height)
        kept = np.flatnonzero(keep)
        at = np.searchsorted(kept, two)
        cx = float(np.mean((aisle.xyxy[two, 0] + aisle.xyxy[two, 2]) / 2))
        cy = float(np.mean((aisle.xyxy[two, 1] + aisle.xyxy[two, 3]) / 2))
        tried += 1
        # both products sit in one row of their bay, which reports the empty stretches as gaps
        part = next((p for p in res.parts if np.isin(at, p.index).all()), None)
        if part is not None:
            r = part.layout.assignment[[int(np.flatnonzero(part.index == i)[0]) for i in at]]
            if r[0] >= 0 and r[0] == r[1] and part.layout.rows[r[0]].count == 2 \
                    and any(g.row == r[0] for g in part.gaps):
                rows += 1
        # ... and no empty shelf is reported under them
        empty += any(e.xyxy[0] <= cx <= e.xyxy[2] and e.xyxy[1] <= cy <= e.xyxy[3] for e in res.empty_shelves)
    assert tried >= 20
    assert rows >= 0.9 * tried, (rows, tried)
    assert empty <= 0.05 * tried, (empty, tried)


def test_two_boxes_above_the_top_row_are_no_row() -> None:
    # four shelves of ten touching products, and two product-sized boxes on one line well above
    # the top shelf (a sign): rows need three boxes there, as before
    xs = np.arange(10) * 60.0
    shelves = [np.c_[xs, np.full(10, b - 90.0), xs + 58, np.full(10, b)] for b in (400.0, 520.0, 640.0, 760.0)]
    sign = np.array([[100.0, 150.0, 158.0, 240.0], [300.0, 150.0, 358.0, 240.0]])
    lay = find_rows(np.vstack(shelves + [sign]))
    assert len(lay.rows) == 4
    assert (lay.assignment[-2:] == -1).all()
    # the same two boxes on a shelf of their own between two full ones (the room of two shelves
    # left around them) make a row
    inner = np.vstack([shelves[0], shelves[1] + [0, 240, 0, 240], shelves[2] + [0, 240, 0, 240],
                       [[100.0, 550.0, 158.0, 640.0], [300.0, 550.0, 358.0, 640.0]]])
    lay = find_rows(inner)
    assert len(lay.rows) == 4 and lay.rows[1].count == 2
    # two boxes a third of a product's height there are price tags, not a shelf
    tags = inner.copy()
    tags[-2:, 1] = 610.0
    lay = find_rows(tags)
    assert len(lay.rows) == 3 and (lay.assignment[-2:] == -1).all()
