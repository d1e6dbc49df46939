from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import nms, pair_iou

from merge_ref import random_boxes, ref_iou, ref_nms


@pytest.mark.parametrize("seed", range(20))
def test_nms_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 250))
    b = random_boxes(rng, n, extent=float(rng.choice([100, 400])), size=(1, 90))
    # Coarse scores make many ties; the rule breaks them by index.
    scores = np.round(rng.random(n), int(rng.choice([1, 6])))
    thr = float(rng.choice([0.1, 0.3, 0.5, 0.7]))
    labels = rng.integers(0, 3, n) if seed % 3 == 0 else None
    got = nms(b, scores, thr, labels=labels)
    assert got.tolist() == ref_nms(b, scores, thr, labels)


@pytest.mark.parametrize("seed", range(5))
def test_nms_matches_torchvision_with_distinct_scores(seed: int) -> None:
    rng = np.random.default_rng(50 + seed)
    b = random_boxes(rng, 400, extent=600, size=(5, 120))
    s = rng.permutation(400).astype(np.float64) / 400
    labels = rng.integers(0, 4, 400)
    want = torchvision.ops.batched_nms(torch.from_numpy(b), torch.from_numpy(s), torch.from_numpy(labels), 0.45)
    assert nms(b, s, 0.45, labels=labels).tolist() == want.tolist()


def test_nms_threshold_is_strict() -> None:
    # Box 1 overlaps box 0 with IoU exactly 0.5 (kept at thr 0.5), box 2 just above it.
    b = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 19.9]], float)
    s = np.array([0.9, 0.8, 0.7])
    assert ref_iou(b[0], b[1]) == 0.5 and ref_iou(b[0], b[2]) > 0.5
    assert nms(b[:2], s[:2], 0.5).tolist() == [0, 1]
    assert nms(b[[0, 2]], s[[0, 2]], 0.5).tolist() == [0]
    assert nms(b[[0, 2]], s[[0, 2]], np.nextafter(ref_iou(b[0], b[2]), 1)).tolist() == [0, 1]


def test_nms_long_chain_uses_fallback_and_stays_exact() -> None:
    # 300 boxes, each overlapping the next above the threshold, scores falling along the chain:
    # the greedy answer alternates keep/drop and needs 300 sequential decisions.
    k = np.arange(300, dtype=float)
    b = np.stack([k * 2, np.zeros(300), k * 2 + 10, np.full(300, 10.0)], axis=1)
    s = 1.0 - k / 1000
    got = nms(b, s, 0.5)
    assert got.tolist() == ref_nms(b, s, 0.5)
    assert got.tolist() == list(range(0, 300, 2))


def test_nms_long_chain_without_torchvision(monkeypatch) -> None:
    # the light install has no torch: the fallback finishes in numpy, with the same answer
    import sys

    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torch", None)
    k = np.arange(300, dtype=float)
    b = np.stack([k * 2, np.zeros(300), k * 2 + 10, np.full(300, 10.0)], axis=1)
    s = 1.0 - k / 1000
    assert nms(b, s, 0.5).tolist() == list(range(0, 300, 2))
    labels = (k % 3 == 0).astype(np.int64)
    monkeypatch.undo()
    want = nms(b, s, 0.5, labels=labels).tolist()  # torchvision finishes it here
    monkeypatch.setitem(sys.modules, "torchvision", None)
    assert nms(b, s, 0.5, labels=labels).tolist() == want


def test_nms_empty_and_bad_input() -> None:
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(InvalidInputError, match="scores"):
        nms(np.zeros((2, 4)), np.zeros(3), 0.5)
    with pytest.raises(InvalidInputError, match="iou_thr"):
        nms(np.zeros((1, 4)), np.zeros(1), 1.5)
    with pytest.raises(InvalidInputError, match="NaN"):
        nms(np.zeros((1, 4)), np.array([np.nan]), 0.5)


def test_nms_all_touching_edges_keeps_everything() -> None:
    # A packed grid of boxes that share edges but no area: nothing may be suppressed.
    gx, gy = np.meshgrid(np.arange(20) * 30.0, np.arange(10) * 50.0)
    b = np.stack([gx.ravel(), gy.ravel(), gx.ravel() + 30, gy.ravel() + 50], axis=1)
    s = np.random.default_rng(0).random(len(b))
    assert sorted(nms(b, s, 0.01).tolist()) == list(range(len(b)))


box_sets = st.integers(0, 60).flatmap(
    lambda n: st.tuples(
        st.lists(st.tuples(st.floats(0, 200), st.floats(0, 200), st.floats(0.5, 60), st.floats(0.5, 60)), min_size=n, max_size=n),
        st.lists(st.floats(0, 1), min_size=n, max_size=n),
        st.sampled_from([0.2, 0.5, 0.8]),
    )
)


def _arrays(data):  # noqa: ANN001, ANN202
    raw, scores, thr = data
    b = np.array([[x, y, x + w, y + h] for x, y, w, h in raw], float).reshape(-1, 4)
    return b, np.array(scores, float), thr


@settings(max_examples=60, deadline=None)
@given(box_sets)
def test_nms_properties(data) -> None:  # noqa: ANN001
    b, s, thr = _arrays(data)
    keep = nms(b, s, thr)
    # No two kept boxes overlap above the threshold.
    if keep.size > 1:
        ii, jj = np.triu_indices(keep.size, 1)
        assert np.all(pair_iou(b, keep[ii], keep[jj]) <= thr)
    # Kept boxes come by descending score.
    assert np.all(np.diff(s[keep]) <= 0)
    # Idempotent: NMS of the kept boxes keeps them all.
    assert nms(b[keep], s[keep], thr).tolist() == list(range(keep.size))
    # Every dropped box is suppressed by a kept box.
    dropped = np.setdiff1d(np.arange(len(b)), keep)
    for d in dropped:
        assert np.any(pair_iou(b, np.full(keep.size, d), keep) > thr)


@settings(max_examples=40, deadline=None)
@given(box_sets, st.randoms(use_true_random=False))
def test_nms_permutation_invariant(data, rnd) -> None:  # noqa: ANN001
    b, s, thr = _arrays(data)
    # Distinct scores make the result a set independent of input order.
    s = s + np.arange(len(s)) * 1e-9
    perm = np.arange(len(b))
    rnd.shuffle(perm)
    a = {tuple(x) for x in b[nms(b, s, thr)]}
    c = {tuple(x) for x in b[perm][nms(b[perm], s[perm], thr)]}
    assert a == c


@pytest.mark.parametrize("seed", range(15))
def test_nms_with_groups_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(900 + seed)
    n = int(rng.integers(1, 250))
    b = random_boxes(rng, n, extent=float(rng.choice([100, 400])), size=(1, 90))
    scores = np.round(rng.random(n), int(rng.choice([1, 6])))
    thr = float(rng.choice([0.1, 0.3, 0.5]))
    groups = rng.integers(0, int(rng.integers(1, 6)), n)
    labels = rng.integers(0, 2, n) if seed % 2 else None
    got = nms(b, scores, thr, labels=labels, groups=groups)
    assert got.tolist() == ref_nms(b, scores, thr, labels, groups)


def test_nms_with_groups_long_chain_stays_exact() -> None:
    # 300 boxes, each overlapping the next heavily, alternating between two groups: the greedy
    # order has to be resolved far past the parallel sweeps' budget.
    x = np.arange(300, dtype=np.float64) * 2.0
    b = np.stack([x, np.zeros_like(x), x + 20.0, np.full_like(x, 20.0)], axis=1)
    s = np.linspace(1.0, 0.1, 300)
    g = np.arange(300) % 2
    assert nms(b, s, 0.5, groups=g).tolist() == ref_nms(b, s, 0.5, groups=g)


def test_nms_groups_length_checked() -> None:
    with pytest.raises(InvalidInputError, match="groups"):
        nms(np.zeros((2, 4)), np.ones(2), 0.5, groups=np.zeros(3))


@pytest.mark.parametrize("seed", range(12))
def test_nms_by_blocks_gives_the_one_pass_answer(seed: int, monkeypatch) -> None:
    # Piles (many boxes over a few spots) beside scattered boxes, with ties, labels and groups;
    # a tiny pair budget sends even these few hundred boxes through the block fallback, which
    # must give exactly the greedy answer, order included.
    import sys

    from densedet_tile.merge import boxes as boxes_mod

    nms_mod = sys.modules["densedet_tile.merge.nms"]  # the package's name nms is the function

    rng = np.random.default_rng(300 + seed)
    piles = [np.array([x, y, x + w, y + h]) + rng.normal(0, 4, (int(rng.integers(20, 120)), 4))
             for x, y, w, h in rng.uniform([0, 0, 20, 20], [500, 500, 90, 90], (int(rng.integers(1, 4)), 4))]
    b = np.concatenate(piles + [random_boxes(rng, int(rng.integers(0, 150)), extent=600, size=(3, 60))])
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2])
    b = np.round(b / 0.1) * 0.1  # quantised coordinates: shared edges
    b = np.concatenate([b, b[rng.integers(0, len(b), 30)]])  # and exact copies
    n = b.shape[0]
    s = np.round(rng.random(n), int(rng.choice([1, 6])))
    thr = float(rng.choice([0.2, 0.5, 0.7]))
    labels = rng.integers(0, 2, n) if seed % 3 == 1 else None
    groups = rng.integers(0, 3, n) if seed % 3 == 2 else None
    want = ref_nms(b, s, thr, labels, groups)
    assert nms(b, s, thr, labels=labels, groups=groups).tolist() == want
    calls = []
    real = nms_mod._nms_blocks
    monkeypatch.setattr(nms_mod, "_PAIR_BUDGET", 40)
    monkeypatch.setattr(nms_mod, "_PAIRS_PER_BOX", 0)
    monkeypatch.setattr(nms_mod, "_MIN_BLOCK", 16)
    monkeypatch.setattr(nms_mod, "_nms_blocks", lambda *a: calls.append(a[0].shape[0]) or real(*a))
    assert nms(b, s, thr, labels=labels, groups=groups).tolist() == want
    assert calls and calls[0] == n  # the fallback ran, from the top
    assert isinstance(boxes_mod.candidate_pairs(b), tuple)  # no limit: the pairs, however many


def test_nms_on_a_pile_never_forms_the_piles_pairs(monkeypatch) -> None:
    # 6000 noisy views of one large product (a detector without NMS of its own): the one-pass
    # path would hold about 18 million pairs (6 GiB at 10 000 boxes, an outside review)
    import sys

    nms_mod = sys.modules["densedet_tile.merge.nms"]
    rng = np.random.default_rng(7)
    b = np.array([300.0, 200, 1300, 1400]) + rng.normal(0, 30, (6000, 4))
    s = rng.uniform(0.05, 0.9, 6000)
    largest = []
    real_cp, real_xp = nms_mod.candidate_pairs, nms_mod.cross_pairs

    def counting_cp(*a, **k):
        out = real_cp(*a, **k)
        largest.append(out[0].size)
        return out

    def counting_xp(*a, **k):
        out = real_xp(*a, **k)
        largest.append(out[0].size)
        return out

    monkeypatch.setattr(nms_mod, "candidate_pairs", counting_cp)
    monkeypatch.setattr(nms_mod, "cross_pairs", counting_xp)
    got = nms(b, s, 0.7)
    want = torchvision.ops.nms(torch.from_numpy(b), torch.from_numpy(s), 0.7)
    assert got.tolist() == want.tolist()
    assert max(largest) <= 1024 * 1023 // 2  # a block's own pairs at most, never the pile's



def test_nms_by_blocks_pairs_the_kept_boxes_with_the_later_ones_near_them_within_the_budget(monkeypatch) -> None:
    # a pile at an IoU near 1 keeps nearly every box, and pairing all the kept boxes with all the
    # later ones at once held 44 million pairs for 20 000 boxes (6 GB, an outside review); runs of
    # kept boxes by left edge, each with the later boxes near it, keep within the budget, and
    # boxes spread over a panorama still go in few runs (a first version that did not look
    # where the boxes lie called the pairing thousands of times: 300x slower, a diff review)
    import sys

    nms_mod = sys.modules["densedet_tile.merge.nms"]
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(0, 8000, 40.0), np.arange(0, 1600, 40.0)), -1).reshape(-1, 2)
    spread = np.c_[grid, grid + rng.uniform(20, 70, (len(grid), 2))]
    pile = np.array([1000.0, 500, 1100, 600]) + rng.normal(0, 2, (3000, 4))
    b = np.concatenate([spread, pile])
    s = rng.random(len(b))
    monkeypatch.setattr(nms_mod, "_PAIR_BUDGET", 200_000)
    monkeypatch.setattr(nms_mod, "_MIN_BLOCK", 256)
    sizes = []
    real_xp = nms_mod.cross_pairs

    def counting_xp(a, c):
        sizes.append((len(a), len(c)))
        return real_xp(a, c)

    monkeypatch.setattr(nms_mod, "cross_pairs", counting_xp)
    # the scene as it is, with one box as wide as the image (it widened every run's window to
    # all the boxes: 130 s on 200 000 boxes), and turned on its side (runs along y)
    wide = np.concatenate([b, [[0.0, 100, 8000, 140]]])
    for boxes, scores in ((b, s), (wide, np.r_[s, 1e-9]), (b[:, [1, 0, 3, 2]], s)):
        for thr in (0.99, 0.5):
            sizes.clear()
            got = nms(boxes, scores, thr)
            want = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr)
            assert got.tolist() == want.tolist()
            assert sizes and max(x * y for x, y in sizes) <= 200_000
            # 11 000 boxes, 8 blocks: runs of many boxes each near few (about 85 runs and 8
            # million pairs looked at; the wide box made it 211 and 27 million)
            assert len(sizes) < 150 and sum(x * y for x, y in sizes) < 12_000_000
