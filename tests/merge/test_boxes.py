from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import candidate_pairs, connected_components, pair_iou

from merge_ref import random_boxes, ref_iou


def brute_pairs(b: np.ndarray, pad: float, touching: bool) -> set[tuple[int, int]]:
    out = set()
    for i in range(len(b)):
        for j in range(i + 1, len(b)):
            w = min(b[i, 2], b[j, 2]) - max(b[i, 0], b[j, 0]) + 2 * pad
            h = min(b[i, 3], b[j, 3]) - max(b[i, 1], b[j, 1]) + 2 * pad
            if (w >= 0 and h >= 0) if touching else (w > 0 and h > 0):
                out.add((i, j))
    return out


@pytest.mark.parametrize("seed", range(12))
def test_candidate_pairs_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 160))
    b = random_boxes(rng, n, extent=float(rng.choice([50, 300, 2000])), size=(0.0, float(rng.choice([5, 60, 400]))))
    # Snap to a coarse lattice so that many boxes share edges exactly (touching cases).
    if seed % 2:
        b = np.round(b / 10) * 10
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
    pad = float(rng.choice([0.0, 0.0, 3.0]))
    for touching in (False, True):
        i, j = candidate_pairs(b, pad=pad, touching=touching)
        got = list(zip(i.tolist(), j.tolist()))
        assert len(got) == len(set(got)), "a pair was reported twice"
        assert all(a < c for a, c in got)
        assert set(got) == brute_pairs(b, pad, touching)


def test_candidate_pairs_odd_cells_and_one_huge_box() -> None:
    rng = np.random.default_rng(5)
    b = random_boxes(rng, 120, extent=1000, size=(1, 30))
    b = np.vstack([b, [[-10, -10, 1100, 1100]]])  # covers everything
    want = brute_pairs(b, 0.0, False)
    for cell in (1.0, 7.5, 64.0, 5000.0):
        i, j = candidate_pairs(b, cell=cell)
        assert set(zip(i.tolist(), j.tolist())) == want


def test_candidate_pairs_empty_and_single() -> None:
    for b in (np.zeros((0, 4)), np.array([[0, 0, 5, 5.0]])):
        i, j = candidate_pairs(b)
        assert i.shape == j.shape == (0,)


def test_candidate_pairs_rejects_bad_boxes() -> None:
    with pytest.raises(InvalidInputError, match="x2 < x1"):
        candidate_pairs(np.array([[5, 0, 1, 1.0], [0, 0, 1, 1]]))
    with pytest.raises(InvalidInputError, match="NaN"):
        candidate_pairs(np.array([[np.nan, 0, 1, 1.0], [0, 0, 1, 1]]))
    with pytest.raises(InvalidInputError, match="shape"):
        candidate_pairs(np.zeros((3, 5)))


@pytest.mark.parametrize("seed", range(5))
def test_pair_iou_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    b = random_boxes(rng, 60, extent=100, size=(0.0, 50))
    i = rng.integers(0, 60, 300)
    j = rng.integers(0, 60, 300)
    got = pair_iou(b, i, j)
    want = np.array([ref_iou(b[a], b[c]) for a, c in zip(i, j)])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    assert np.all(got[i == j][(b[i[i == j], 2] > b[i[i == j], 0]) & (b[i[i == j], 3] > b[i[i == j], 1])] == 1.0)


def ref_components(n: int, edges: list[tuple[int, int]]) -> list[int]:
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            a = parent[a]
        return a

    for a, c in edges:
        ra, rc = find(a), find(c)
        if ra != rc:
            parent[max(ra, rc)] = min(ra, rc)
    return [min(k for k in range(n) if find(k) == find(q)) for q in range(n)]


@pytest.mark.parametrize("seed", range(8))
def test_connected_components_match_union_find(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    m = int(rng.integers(0, 2 * n))
    i = rng.integers(0, n, m)
    j = rng.integers(0, n, m)
    got = connected_components(n, i, j)
    assert got.tolist() == ref_components(n, list(zip(i.tolist(), j.tolist())))


def test_connected_components_long_chain() -> None:
    n = 1000
    perm = np.random.default_rng(0).permutation(n)
    got = connected_components(n, perm[:-1], perm[1:])
    assert np.all(got == 0)


@pytest.mark.parametrize("seed", range(4))
def test_count_containing_matches_brute_force(seed: int) -> None:
    from densedet_tile.merge.boxes import count_containing
    from densedet_tile.tiler.grid import make_grid
    from densedet_tile.types import TileSpec

    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(400, 3000)), int(rng.integers(300, 2000))
    t = int(rng.integers(100, 400))
    tiles = make_grid(w, h, TileSpec(t, float(rng.uniform(0.1, 0.6))))
    grid = np.array([(x.x, x.y, x.x2, x.y2) for x in tiles], float)
    holes = grid[rng.random(len(grid)) > 0.3]  # a grid with cells missing, shuffled
    irregular = np.concatenate([grid, [[5, 7, 150, 90], [0, 0, w, h]]])  # not a grid
    xy = rng.uniform(0, 1, (500, 2)) * [w, h]
    boxes = np.concatenate([xy, np.minimum(xy + rng.uniform(1, t, (500, 2)), [w, h])], axis=1)
    for rects in (grid, holes[rng.permutation(len(holes))], irregular):
        want = ((rects[None, :, :2] <= boxes[:, None, :2]) & (rects[None, :, 2:] >= boxes[:, None, 2:])).all(-1).sum(1)
        np.testing.assert_array_equal(count_containing(rects, boxes), want)
    assert count_containing(np.zeros((0, 4)), boxes).tolist() == [0] * 500


def _brute_cross(a: np.ndarray, c: np.ndarray) -> set[tuple[int, int]]:
    return {(i, j) for i in range(len(a)) for j in range(len(c))
            if max(a[i, 0], c[j, 0]) < min(a[i, 2], c[j, 2]) and max(a[i, 1], c[j, 1]) < min(a[i, 3], c[j, 3])}


@pytest.mark.parametrize("seed", range(40))
def test_cross_pairs_match_brute_force(seed: int) -> None:
    # fractional coordinates on a coarse grid (quantised model outputs), exact copies across the
    # two sets, shared left edges, offsets far from 0, boxes over many strips, zero-height boxes:
    # every pair between the sets once, none within a set (a first version lost or doubled pairs
    # whose keys and queries rounded differently)
    from densedet_tile.merge.boxes import cross_pairs

    rng = np.random.default_rng(900 + seed)
    step = float(rng.choice([0.1, 0.25, 1.0, 7.3]))
    offset = float(rng.choice([0.0, -5000.3, 123456.7, 3e9]))

    def boxes(n: int) -> np.ndarray:
        xy = np.round(rng.uniform(0, 60, (n, 2)) / step) * step
        wh = np.round(rng.uniform(0, 30, (n, 2)) / step) * step
        wh[rng.random(n) < 0.1, 1] = 0.0
        wh[rng.random(n) < 0.05, 1] = 200.0  # across many strips
        return np.concatenate([xy, xy + wh], axis=1) + offset

    a, c = boxes(int(rng.integers(0, 60))), boxes(int(rng.integers(0, 80)))
    if len(a) and len(c):
        k = min(len(a), len(c), 5)
        c[:k] = a[:k]  # exact copies
        c[5:10, 0] = a[0, 0]  # the same left edge
        c[5:10, 2] = np.maximum(c[5:10, 2], c[5:10, 0])
    i, j = cross_pairs(a, c)
    got = list(zip(i.tolist(), j.tolist()))
    assert len(got) == len(set(got))
    assert set(got) == _brute_cross(a, c)


@pytest.mark.parametrize("case", ["zero-size majority", "normalised", "pixels", "one huge among tiny"])
def test_the_strip_index_holds_a_few_entries_per_box_whatever_the_sizes(case: str) -> None:
    # the strip height comes from the boxes; a median under a pixel (most boxes of zero size)
    # once put each ordinary box in thousands of strips: 15 s and 2.3 GiB for 2100 boxes
    from densedet_tile.merge.boxes import _strip_height

    rng = np.random.default_rng(5)
    if case == "zero-size majority":
        big = random_boxes(rng, 1000, extent=4000, size=(100, 101))
        dots = np.repeat(rng.uniform(0, 4000, (1100, 2)), 2, axis=1)[:, [0, 2, 1, 3]]
        b = np.concatenate([big, dots])
    elif case == "normalised":
        b = random_boxes(rng, 2000, extent=4000, size=(20, 80)) / 4000
    elif case == "pixels":
        b = random_boxes(rng, 2000, extent=4000, size=(20, 80))
    else:
        b = np.concatenate([random_boxes(rng, 2000, extent=4000, size=(0.001, 0.002)), [[0, 0, 4000, 4000]]])
    cell = _strip_height(b[:, :2], b[:, 2:], None)
    oy = b[:, 1].min()
    strips = np.floor((b[:, 3] - oy) / cell) - np.floor((b[:, 1] - oy) / cell) + 1
    assert strips.sum() <= 10 * len(b)
    if case in ("normalised", "pixels"):  # boxes of one scale: strips about a box high
        assert 20 / (4000 if case == "normalised" else 1) <= cell <= 80 / (4000 if case == "normalised" else 1)
    i, j = candidate_pairs(b)
    assert len(set(zip(i.tolist(), j.tolist()))) == len(i)
