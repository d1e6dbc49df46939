"""Right-hand neighbours and stacked boxes from the spatial index equal a brute-force reading of
their definitions, on boxes that touch, nest and have no width or height, and boxes nested
around one centre make no pairs at all (the index once returned all n^2 of them to be
filtered)."""

from __future__ import annotations

import numpy as np

from densedet_tile.audit import neighbours as nb


def _brute_pairs(a: np.ndarray, reach: float, min_overlap: float) -> set[tuple[int, int]]:
    w = np.maximum(a[:, 2] - a[:, 0], 1e-6)
    h = np.maximum(a[:, 3] - a[:, 1], 1e-6)
    cx = (a[:, 0] + a[:, 2]) / 2
    out = set()
    for i in range(len(a)):
        for j in range(len(a)):
            overlap = min(a[i, 3], a[j, 3]) - max(a[i, 1], a[j, 1])
            if (i != j and cx[j] > cx[i] and a[j, 0] <= a[i, 2] + reach * w[i]
                    and overlap >= min_overlap * min(h[i], h[j])):
                out.add((i, j))
    return out


def _brute_stacked(a: np.ndarray, tol: float = 0.15) -> np.ndarray:
    w = a[:, 2] - a[:, 0]
    h = np.maximum(a[:, 3] - a[:, 1], 1e-6)
    out = np.zeros(len(a), bool)
    for i in range(len(a)):
        lo, hi = a[i, 0] + 0.25 * w[i], a[i, 2] - 0.25 * w[i]
        for j in range(len(a)):
            if (i != j and a[j, 0] <= hi and a[j, 2] >= lo and abs(a[j, 1] - a[i, 3]) <= tol * h[i]
                    and a[j, 3] > a[i, 3] + 0.3 * h[i]):
                out[i] = True
    return out


def test_candidates_and_stacked_boxes_equal_their_definitions_on_grid_boxes():
    rng = np.random.default_rng(7)
    for _ in range(40):
        n = int(rng.integers(2, 60))
        x, y = rng.integers(0, 20, n) * 10.0, rng.integers(0, 12, n) * 10.0
        w, h = rng.integers(0, 6, n) * 10.0, rng.integers(0, 6, n) * 10.0  # widths and heights of 0 too
        a = np.unique(np.stack([x, y, x + w, y + h], 1), axis=0)
        if len(a) < 2:
            continue
        for reach, min_overlap in ((1.0, 0.5), (2.0, 0.3)):
            i, j = nb._distinct_candidates(a, reach, min_overlap)
            assert set(zip(i.tolist(), j.tolist())) == _brute_pairs(a, reach, min_overlap)
        np.testing.assert_array_equal(nb.stands_on_another(a), _brute_stacked(a))


def test_boxes_nested_around_one_centre_have_no_right_hand_neighbour():
    r = np.linspace(10, 3000, 3000)
    a = np.stack([5000 - r, 5000 - 0.8 * r, 5000 + r, 5000 + 0.8 * r], 1)
    i, j = nb._distinct_candidates(a, 1.0, 0.5)
    assert len(i) == len(j) == 0
    assert (nb.right_neighbours(a) == -1).all()
    assert not nb.stands_on_another(a).any()
