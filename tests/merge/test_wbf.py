from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import pair_iou, weighted_box_fusion

from merge_ref import random_boxes, ref_iou, ref_order


def ref_anchors(b, s, groups, labels, thr):  # noqa: ANN001, ANN201
    """Sequential statement of the clustering rule in weighted_box_fusion's docstring."""
    order = ref_order(s)
    rank = {k: r for r, k in enumerate(order)}
    anchor = {}
    members: dict[int, set] = {}
    for k in order:
        best = None
        for a in members:
            if labels[a] != labels[k] or groups[a] == groups[k] or groups[k] in members[a]:
                continue
            v = ref_iou(b[a], b[k])
            if v >= thr and (best is None or (v, -rank[a]) > (best[0], -rank[best[1]])):
                best = (v, a)
        if best is None:
            anchor[k] = k
            members[k] = {groups[k]}
        else:
            anchor[k] = best[1]
            members[best[1]].add(groups[k])
    return np.array([anchor[k] for k in range(len(b))])


def ref_fuse(b, s, labels, anchor):  # noqa: ANN001, ANN201
    out = []
    for a in sorted(set(anchor.tolist())):
        m = np.flatnonzero(anchor == a)
        w = s[m] if s[m].sum() > 0 else np.ones(m.size)
        out.append((a, (b[m] * w[:, None]).sum(0) / w.sum(), s[m].mean(), labels[a], m.size))
    return out


@pytest.mark.parametrize("seed", range(25))
def test_wbf_matches_sequential_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 200))
    # Jittered copies of a few "true" boxes seen by several groups (tiles): the real use case,
    # plus random clutter; a small number of groups forces same-group conflicts.
    base = random_boxes(rng, max(1, n // 4), extent=300, size=(10, 80))
    pick = rng.integers(0, len(base), n)
    b = base[pick] + rng.normal(0, float(rng.choice([1, 4, 10])), (n, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    s = np.round(rng.random(n), int(rng.choice([1, 5])))
    groups = rng.integers(0, int(rng.choice([2, 3, 8])), n)
    labels = rng.integers(0, 2, n) if seed % 4 == 0 else np.zeros(n, np.int64)
    thr = float(rng.choice([0.3, 0.55, 0.7]))
    f = weighted_box_fusion(b, s, groups=groups, iou_thr=thr, labels=labels)
    anchor = ref_anchors(b, s, groups, labels, thr)
    assert np.array_equal(f.anchor_ids[f.cluster], anchor)
    want = ref_fuse(b, s, labels, anchor)
    assert f.anchor_ids.tolist() == [w[0] for w in want]
    np.testing.assert_allclose(f.xyxy, np.array([w[1] for w in want]).reshape(-1, 4), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(f.scores, [w[2] for w in want], rtol=1e-12)
    assert f.labels.tolist() == [w[3] for w in want]
    assert f.size.tolist() == [w[4] for w in want]


def test_wbf_one_group_never_fuses() -> None:
    rng = np.random.default_rng(0)
    b = random_boxes(rng, 50, extent=20, size=(30, 40))  # all overlapping heavily
    f = weighted_box_fusion(b, rng.random(50), groups=np.zeros(50, int), iou_thr=0.1)
    assert len(f.scores) == 50
    np.testing.assert_array_equal(f.xyxy[f.cluster], b)


def test_wbf_single_view_keeps_score_and_box() -> None:
    b = np.array([[0, 0, 10, 10], [100, 0, 110, 10], [100.5, 0, 110.5, 10], [300, 0, 310, 10]], float)
    s = np.array([0.42, 0.9, 0.7, 0.33])
    f = weighted_box_fusion(b, s, groups=np.array([0, 0, 1, 1]), iou_thr=0.5)
    assert f.size.tolist() == [1, 2, 1]
    np.testing.assert_allclose(f.scores, [0.42, 0.8, 0.33])  # mean, never / number of tiles
    np.testing.assert_array_equal(f.xyxy[[0, 2]], b[[0, 3]])
    np.testing.assert_allclose(f.xyxy[1], (0.9 * b[1] + 0.7 * b[2]) / 1.6)


def test_wbf_adjacent_products_from_two_tiles_stay_two() -> None:
    # Two touching products, each seen by two tiles with a little noise: two boxes out.
    p = np.array([[0, 0, 50, 80], [50, 0, 90, 80]], float)
    b = np.vstack([p + 0.5, p - 0.5])
    f = weighted_box_fusion(b, np.ones(4), groups=np.array([0, 0, 1, 1]), iou_thr=0.55)
    assert len(f.scores) == 2
    np.testing.assert_allclose(np.sort(f.xyxy, axis=0), np.sort(p, axis=0))


def test_wbf_empty_and_bad_input() -> None:
    f = weighted_box_fusion(np.zeros((0, 4)), np.zeros(0), groups=np.zeros(0, int), iou_thr=0.5)
    assert f.xyxy.shape == (0, 4) and f.cluster.shape == (0,)
    with pytest.raises(InvalidInputError, match="groups"):
        weighted_box_fusion(np.zeros((2, 4)), np.zeros(2), groups=np.zeros(3, int), iou_thr=0.5)
    with pytest.raises(InvalidInputError, match="iou_thr"):
        weighted_box_fusion(np.zeros((2, 4)), np.zeros(2), groups=np.zeros(2, int), iou_thr=0.0)


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(1, 40), st.floats(1, 40), st.floats(0, 1), st.integers(0, 3)), max_size=50),
    st.sampled_from([0.3, 0.55, 0.8]),
)
def test_wbf_properties(rows, thr) -> None:  # noqa: ANN001
    b = np.array([[x, y, x + w, y + h] for x, y, w, h, _, _ in rows], float).reshape(-1, 4)
    s = np.array([r[4] for r in rows], float)
    g = np.array([r[5] for r in rows], np.int64)
    f = weighted_box_fusion(b, s, groups=g, iou_thr=thr)
    n = len(b)
    assert f.cluster.shape == (n,) and f.size.sum() == n
    for c in range(len(f.scores)):
        m = np.flatnonzero(f.cluster == c)
        a = f.anchor_ids[c]
        assert a in m
        assert len(set(g[m].tolist())) == m.size  # at most one box per tile
        assert np.all(pair_iou(b, np.full(m.size, a), m)[m != a] >= thr)
        # The fused box lies within the members' hull; the score is their mean.
        assert np.all(f.xyxy[c, :2] >= b[m, :2].min(0) - 1e-9) and np.all(f.xyxy[c, 2:] <= b[m, 2:].max(0) + 1e-9)
        assert abs(f.scores[c] - s[m].mean()) < 1e-12


@pytest.mark.parametrize("seed", range(12))
def test_wbf_finishing_one_by_one_after_the_sweep_cap_gives_the_same_clusters(seed: int, monkeypatch) -> None:
    # Long overlap chains are finished sequentially after _MAX_SWEEPS parallel sweeps; with the
    # cap at 0-2 sweeps every input goes through that path, which must follow the same rule.
    import densedet_tile.merge.wbf as wbf

    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(2, 150))
    base = random_boxes(rng, max(1, n // 4), extent=300, size=(10, 80))
    b = base[rng.integers(0, len(base), n)] + rng.normal(0, float(rng.choice([1, 4, 10])), (n, 4))
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    s = np.round(rng.random(n), int(rng.choice([1, 5])))
    groups = rng.integers(0, int(rng.choice([2, 3, 8])), n)
    labels = rng.integers(0, 2, n) if seed % 3 == 0 else np.zeros(n, np.int64)
    thr = float(rng.choice([0.3, 0.55, 0.7]))
    want = ref_anchors(b, s, groups, labels, thr)
    for cap in (0, 1, 2):
        monkeypatch.setattr(wbf, "_MAX_SWEEPS", cap)
        f = weighted_box_fusion(b, s, groups=groups, iou_thr=thr, labels=labels)
        assert np.array_equal(f.anchor_ids[f.cluster], want), cap


def test_wbf_long_chain_is_settled() -> None:
    # Boxes 3 px apart from alternating tiles with falling scores: each waits for the one above
    # it, a chain the parallel sweeps alone settle one link at a time (past the sweep cap here).
    n = 400
    x = 3.0 * np.arange(n)
    b = np.stack([x, np.zeros(n), x + 40, np.full(n, 40.0)], 1)
    s = 1.0 - np.arange(n) / n
    groups = np.arange(n) % 2
    f = weighted_box_fusion(b, s, groups=groups, iou_thr=0.55)
    assert np.array_equal(f.anchor_ids[f.cluster], ref_anchors(b, s, groups, np.zeros(n, np.int64), 0.55))
    assert f.size.tolist() == [2] * (n // 2)  # each anchor takes the next box, of the other tile


@pytest.mark.parametrize("seed", range(6))
def test_wbf_on_piles_settles_them_one_by_one_with_the_same_clusters(seed: int, monkeypatch) -> None:
    # A pile (hundreds of views over one spot, 10 tiles) settles a box or two per parallel
    # sweep: after a few such sweeps the rest go one by one (1000 boxes: 4.1 -> 0.5 s), which
    # must follow the same rule; the clutter beside it and ties included.
    import densedet_tile.merge.wbf as wbf

    rng = np.random.default_rng(700 + seed)
    k = int(rng.integers(150, 300))
    pile = np.array([100.0, 100, 200, 200]) + rng.normal(0, float(rng.choice([2, 6])), (k, 4))
    b = np.concatenate([pile, random_boxes(rng, 60, extent=500, size=(10, 80))])
    b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 0.5)
    n = b.shape[0]
    s = np.round(rng.random(n), int(rng.choice([1, 5])))
    groups = rng.integers(0, 10, n)
    labels = np.zeros(n, np.int64)
    want = ref_anchors(b, s, groups, labels, 0.55)
    sequential = []
    real = wbf._finish_sequential
    monkeypatch.setattr(wbf, "_finish_sequential", lambda *a: sequential.append(1) or real(*a))
    f = weighted_box_fusion(b, s, groups=groups, iou_thr=0.55, labels=labels)
    assert np.array_equal(f.anchor_ids[f.cluster], want)
    assert sequential  # the pile went one by one well before the 64-sweep cap


def test_wbf_takes_any_int64_group_ids() -> None:
    # tile ids like hash() values or far apart: numbering them by (group - min) overflowed or wrapped
    # (two tiles' boxes were taken as one tile's and left apart)
    b = np.array([[0, 0, 10, 10], [0.5, 0, 10.5, 10], [1, 0, 11, 10], [50, 0, 60, 10], [50.5, 0, 60.5, 10]], float)
    s = np.array([0.9, 0.8, 0.7, 0.9, 0.8])
    for ids in ([0, 1, 2, 0, 1], [-2**62, 0, 2**62, -2**62, 0], [2**62, 4, 100, 2**62, 0],
                [5612674197421210293, -5248558601952936569, 7, 5612674197421210293, 7]):
        f = weighted_box_fusion(b, s, groups=np.array(ids, np.int64), iou_thr=0.55)
        assert sorted(f.size.tolist()) == [2, 3], ids
