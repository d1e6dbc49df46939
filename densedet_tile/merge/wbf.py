"""Weighted box fusion of cross-tile duplicates, vectorised over candidate pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .boxes import TooManyPairs, as_boxes, as_scores, candidate_pairs, check_iou_thr, pair_iou
from .nms import score_order

__all__ = ["Fusion", "best_match_pairs", "fuse_clusters", "weighted_box_fusion"]


@dataclass(frozen=True)
class Fusion:
    """Result of :func:`weighted_box_fusion`.

    ``xyxy`` float64 (M, 4), ``scores`` float64 (M,), ``labels`` int64 (M,) of the fused
    boxes; ``cluster`` int64 (N,) gives for every input box the index of the fused box it
    went into; ``size`` int64 (M,) the number of input boxes in each fused box.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    cluster: np.ndarray
    size: np.ndarray
    anchor_ids: np.ndarray


def fuse_clusters(
    xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray, anchor: np.ndarray
) -> Fusion:
    """Fuse boxes that share an ``anchor`` (N,) id: score-weighted mean box, mean score.

    The label of a fused box is the label of its anchor box (``anchor[k] == k``). A box alone
    in its cluster keeps its coordinates and score unchanged.
    """
    b = np.asarray(xyxy, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    uniq, cluster = np.unique(anchor, return_inverse=True)
    m = uniq.shape[0]
    size = np.bincount(cluster, minlength=m)
    ssum = np.bincount(cluster, weights=s, minlength=m)
    w = s.copy()
    zero = ssum[cluster] <= 0
    w[zero] = 1.0  # all-zero scores: plain mean
    wsum = np.bincount(cluster, weights=w, minlength=m)
    out = np.empty((m, 4), np.float64)
    for c in range(4):
        out[:, c] = np.bincount(cluster, weights=w * b[:, c], minlength=m) / wsum
    # Exact copies for singletons (avoids any rounding of w*b/w).
    solo = np.flatnonzero(size[cluster] == 1)
    out[cluster[solo]] = b[solo]
    return Fusion(
        xyxy=out,
        scores=ssum / size,
        labels=np.asarray(labels, dtype=np.int64)[uniq],
        cluster=cluster.astype(np.int64),
        size=size.astype(np.int64),
        anchor_ids=uniq.astype(np.int64),
    )


def _integers(values: object, name: str) -> np.ndarray:
    """``values`` as int64 ids; floats only when whole (labels 2.0 are class 2, 1.7 is no class)."""
    arr = np.asarray(values).reshape(-1)
    if arr.dtype.kind in "iub":
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    raise InvalidInputError(f"weighted_box_fusion: {name} must be integer ids, got dtype {arr.dtype}")


def weighted_box_fusion(
    xyxy: np.ndarray,
    scores: np.ndarray,
    *,
    groups: np.ndarray,
    iou_thr: float,
    labels: np.ndarray | None = None,
    also: tuple[np.ndarray, np.ndarray] | None = None,
) -> Fusion:
    """Fuse boxes of *different* groups (tiles) that overlap with IoU >= ``iou_thr``.

    ``xyxy`` (N, 4) pixels, ``scores`` (N,), ``groups`` (N,) int ids: boxes of one group are
    never fused together (one tile's detector already ran NMS), so a cluster holds at most
    one box per group. With ``labels`` only boxes of the same label are fused.

    Clustering rule (greedy, like weighted box fusion): visiting boxes by descending score
    (ties: lower index first), a box joins the cluster whose *first* (anchor) box it
    overlaps most -- among anchors of its label with IoU >= ``iou_thr`` whose cluster holds
    no box of its group yet (IoU ties: the higher-ranked anchor) -- or else starts a new
    cluster. The fused box is the score-weighted mean of its members; its score is the mean
    member score (never divided by the number of tiles, so a box seen by one tile keeps
    its score).

    ``also``: index pairs ``(i, j)`` of boxes that count as overlapping enough whatever their
    IoU (still only across groups, within a label); the merge passes the best matches of
    :func:`best_match_pairs` (see :class:`~densedet_tile.types.MergeSpec`'s ``match_iou``).

    The greedy order is resolved in parallel sweeps over candidate pairs from a grid index:
    a box is decided once every higher-ranked box that could change its choice is decided.
    """
    b = as_boxes(xyxy)
    n = b.shape[0]
    s = as_scores(scores, n, "weighted_box_fusion")
    g = _integers(groups, "groups")
    lab = np.zeros(n, np.int64) if labels is None else _integers(labels, "labels")
    if g.shape[0] != n or lab.shape[0] != n:
        raise InvalidInputError(
            f"weighted_box_fusion: {n} boxes but {s.shape[0]} scores, {g.shape[0]} groups, "
            f"{lab.shape[0]} labels"
        )
    if np.any(s < 0):
        # the scores weigh the fused box's corners: a negative weight (a detector's raw logit)
        # flipped it ([0, 0, 10, 10] and [0, 0, 12, 12] at 0.5 and -0.45 fused to [0, 0, -8, -8])
        raise InvalidInputError("weighted_box_fusion: scores must be >= 0 (they weigh the fused boxes; "
                                "raw logits? pass probabilities)")
    check_iou_thr(iou_thr, "weighted_box_fusion", zero_ok=False)
    if n == 0:
        z = np.zeros(0, np.int64)
        return Fusion(np.zeros((0, 4)), np.zeros(0), z, z, z, z)
    extra = None
    if also is not None:
        ai = np.asarray(also[0], np.int64).reshape(-1)
        aj = np.asarray(also[1], np.int64).reshape(-1)
        if ai.shape != aj.shape or (ai.size and (min(ai.min(), aj.min()) < 0 or max(ai.max(), aj.max()) >= n)):
            raise InvalidInputError(f"weighted_box_fusion: also must be two equal-length arrays of indices into the {n} boxes")
        extra = (ai, aj)
    anchor = cluster_anchors(b, s, g, lab, iou_thr, extra)
    return fuse_clusters(b, s, lab, anchor)


#: After this many parallel sweeps the still open boxes (a long chain of overlaps, each box
#: waiting for the one above it) are decided one by one in rank order: each sweep costs a pass
#: over all the pairs, so a chain of n boxes would cost O(n^2).
_MAX_SWEEPS = 64
#: Candidate pairs the fusion holds at most: this many, or :data:`_MAX_PAIRS_PER_BOX` per box
#: where that is more (a merge's boxes have a few dozen each; the engine thins piles before).
_MAX_PAIRS = 16_000_000
_MAX_PAIRS_PER_BOX = 64
#: ... or sooner, from this many sweeps on, once a sweep settles less than 1/_SLOW_SHARE of the
#: open boxes (a pile of 1000 boxes: 64 sweeps took 3.6 s, the sequential rest 0.1 s).
_SLOW_AFTER = 4
_SLOW_SHARE = 32


def cluster_anchors(
    b: np.ndarray, s: np.ndarray, g: np.ndarray, lab: np.ndarray, iou_thr: float,
    also: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """The anchor box index of every box under the rule of :func:`weighted_box_fusion`."""
    n = b.shape[0]
    order = score_order(s)
    prio = np.empty(n, np.int64)
    prio[order] = np.arange(n)
    limit = max(_MAX_PAIRS, _MAX_PAIRS_PER_BOX * n)
    try:
        i, j = candidate_pairs(b, limit=limit)
    except TooManyPairs:
        # a pile (every box over one spot, each of its own group): its pairs grow as its size
        # squared, and 20 000 such boxes filled 23 GB before this
        raise InvalidInputError(
            f"weighted_box_fusion: the {n} boxes overlap one another in more than {limit} pairs (piles of "
            "boxes over one spot); thin the piles first (nms at a high IoU) or fuse fewer boxes at a time"
        ) from None
    keep = (g[i] != g[j]) & (lab[i] == lab[j])
    i, j = i[keep], j[keep]
    iou = pair_iou(b, i, j)
    keep = iou >= iou_thr
    if also is not None and also[0].size:
        lo_a, hi_a = np.minimum(*also), np.maximum(*also)
        keep |= np.isin(np.minimum(i, j) * n + np.maximum(i, j), lo_a * n + hi_a)
    i, j, iou = i[keep], j[keep], iou[keep]
    first = prio[i] < prio[j]
    hi = np.where(first, i, j)
    lo = np.where(first, j, i)
    anchor = np.full(n, -1, np.int64)  # -1 undecided; == own index: anchor; else member of
    linked = np.zeros(n, bool)
    linked[hi] = True
    linked[lo] = True
    alone = np.flatnonzero(~linked)
    anchor[alone] = alone  # nothing to fuse with
    # groups numbered 0..G-1 by rank: any int64 ids (hashes, -2**62 and 2**62) make no overflow
    _, gz = np.unique(g, return_inverse=True)
    gz = gz.reshape(-1).astype(np.int64)
    ngroups = int(gz.max()) + 1
    # A cluster slot (anchor, group) is filled once a box of that group sits in the anchor's
    # cluster; each edge carries its slot code and whether that slot is filled.
    slot = hi * ngroups + gz[lo]
    filled = np.zeros(slot.size, bool)
    sweeps = 0
    open_before = n + 1
    while True:
        und = anchor < 0
        open_now = int(und.sum())
        if not open_now:
            break
        # A long chain of overlaps, or a pile (every box overlapping every other) where a sweep
        # over all the pairs settles a box or two: the rest one by one, in rank order.
        if sweeps == _MAX_SWEEPS or (sweeps >= _SLOW_AFTER and (open_before - open_now) * _SLOW_SHARE < open_now):
            _finish_sequential(anchor, prio, hi, lo, iou, gz, ngroups)
            break
        open_before = open_now
        sweeps += 1
        # Edges whose lower box is still open and whose upper box can still be an anchor.
        live = und[lo] & ((anchor[hi] < 0) | (anchor[hi] == hi))
        hi, lo, iou, slot, filled = hi[live], lo[live], iou[live], slot[live], filled[live]
        free = ~filled
        pending = np.zeros(n, bool)
        pending[lo[anchor[hi] < 0]] = True
        # Of the open boxes of one group that want the same anchor, only the best-ranked may go.
        blocked = np.zeros(n, bool)
        f = np.flatnonzero(free)
        if f.size:
            srt = f[np.lexsort((prio[lo[f]], slot[f]))]
            dup = np.zeros(srt.size, bool)
            dup[1:] = slot[srt[1:]] == slot[srt[:-1]]
            blocked[lo[srt[dup]]] = True
        ready = und & ~pending & ~blocked
        # Ready boxes pick the free anchor they overlap most.
        cand = np.flatnonzero(ready[lo] & free & (anchor[hi] == hi))
        new_slots = []
        if cand.size:
            srt = cand[np.lexsort((prio[hi[cand]], -iou[cand], lo[cand]))]
            firsts = np.ones(srt.size, bool)
            firsts[1:] = lo[srt[1:]] != lo[srt[:-1]]
            pick = srt[firsts]
            anchor[lo[pick]] = hi[pick]
            new_slots.append(slot[pick])
        solo = np.flatnonzero(ready & (anchor < 0))
        anchor[solo] = solo
        new_slots.append(solo * ngroups + gz[solo])
        new = np.sort(np.concatenate(new_slots))
        if new.size and slot.size:
            pos = np.minimum(np.searchsorted(new, slot), new.size - 1)
            filled |= new[pos] == slot
    return anchor


def best_match_pairs(
    xyxy: np.ndarray,
    groups: np.ndarray,
    min_iou: float,
    *,
    labels: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The pairs ``(i, j)`` of boxes of different ``groups`` (tiles; of one label where
    ``labels`` is given) that are each other's best match -- no box of the other's group
    overlaps either of them more -- with IoU at or above ``min_iou``, from the grid index's
    overlapping pairs. The merge asks this of every view the tiles reported, those under the
    score threshold included, before the seam repair drops or joins any
    (``merge.core._best_matches``).
    """
    b = as_boxes(xyxy)
    g = _integers(groups, "groups")
    check_iou_thr(min_iou, "best_match_pairs", zero_ok=False)
    i, j = candidate_pairs(b)
    ok = g[i] != g[j]
    if labels is not None:
        lab = _integers(labels, "labels")
        ok &= lab[i] == lab[j]
    i, j = i[ok], j[ok]
    iou = pair_iou(b, i, j)
    m = (iou >= min_iou) & _mutual_best(i, j, iou, g)
    return i[m], j[m]


def _mutual_best(i: np.ndarray, j: np.ndarray, iou: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Whether each candidate pair ``(i[k], j[k])`` (of different groups, one label) is the best
    match of both boxes: no pair of ``i[k]`` with another box of ``j[k]``'s group overlaps more,
    nor one of ``j[k]`` with another box of ``i[k]``'s group (ties count as best for both).
    Each pair stands for both its boxes: one sort over the pairs taken from either end, keyed by
    (box, the other box's group). (The pairs come with ``i < j``; a box whose partners of one
    group lie on both sides of it in index order has its pairs on both ends, and its best match
    is the best over all of them.)"""
    n = i.size
    if n == 0:
        return np.zeros(0, bool)
    _, gz = np.unique(g, return_inverse=True)
    gz = gz.reshape(-1).astype(np.int64)
    ng = int(gz.max()) + 1
    _, inv = np.unique(np.r_[i * ng + gz[j], j * ng + gz[i]], return_inverse=True)
    inv = inv.reshape(-1)
    top = np.full(int(inv.max()) + 1, -1.0)
    np.maximum.at(top, inv, np.r_[iou, iou])
    return (iou >= top[inv[:n]]) & (iou >= top[inv[n:]])


def _finish_sequential(anchor: np.ndarray, prio: np.ndarray, hi: np.ndarray, lo: np.ndarray, iou: np.ndarray,
                       gz: np.ndarray, ngroups: int) -> None:
    """Decide the still open boxes (``anchor < 0``) one by one in rank order, by the same rule.

    ``hi``/``lo``: the remaining fusable pairs (higher-ranked box first) with their ``iou``. Each
    open box joins the anchor it overlaps most (ties: the better-ranked anchor) whose cluster
    holds no box of its group yet, or becomes an anchor. Every box ranked above it is decided
    when its turn comes. Linear in the open boxes and their pairs.
    """
    done = np.flatnonzero(anchor >= 0)
    filled = set((anchor[done] * ngroups + gz[done]).tolist())
    todo = np.flatnonzero(anchor < 0)
    todo = todo[np.argsort(prio[todo], kind="stable")]
    by_lo = np.argsort(lo, kind="stable")
    lo_sorted = lo[by_lo]
    starts = np.searchsorted(lo_sorted, todo, side="left")
    ends = np.searchsorted(lo_sorted, todo, side="right")
    for u, a, z in zip(todo.tolist(), starts.tolist(), ends.tolist()):
        best = -1
        e = by_lo[a:z]
        h = hi[e]
        live = anchor[h] == h  # edges to boxes that are anchors (most of a pile joined others)
        if live.any():
            e, h = e[live], h[live]
            gu = int(gz[u])
            # the free anchor it overlaps most, ties to the better-ranked one
            best = next((k for k in h[np.lexsort((prio[h], -iou[e]))].tolist() if k * ngroups + gu not in filled), -1)
        anchor[u] = u if best < 0 else best
        filled.add(int(anchor[u]) * ngroups + int(gz[u]))
