"""Non-maximum suppression over sparse candidate pairs (no N x N matrix, no O(N^2) loop)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from .boxes import TooManyPairs, as_boxes, as_scores, candidate_pairs, check_iou_thr, cross_pairs, pair_iou

__all__ = ["nms", "score_order"]

#: After this many parallel sweeps the still undecided boxes (a long chain of overlaps) are
#: finished one by one in rank order (still linear in the remaining pairs).
_MAX_SWEEPS = 64

#: Candidate pairs one pass may hold: at least this many, or this many per box. Beyond (a pile
#: of thousands of boxes over one spot, as a detector without its own NMS gives on a large
#: product) the boxes are taken in blocks by score instead (:func:`_nms_blocks`).
_PAIR_BUDGET = 4_000_000
_PAIRS_PER_BOX = 32

#: The smallest block of the fallback: its pairs always fit the budget (1024 * 1023 / 2).
_MIN_BLOCK = 1024


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices sorting boxes by descending score, ties broken by ascending index."""
    s = np.asarray(scores, dtype=np.float64)
    return np.argsort(-s, kind="stable")


def _check(xyxy: object, scores: object, labels: object, iou_thr: float) -> tuple:
    b = as_boxes(xyxy)
    s = as_scores(scores, b.shape[0], "nms")
    lab = None
    if labels is not None:
        lab = np.asarray(labels).reshape(-1)
        if lab.shape[0] != b.shape[0]:
            raise InvalidInputError(f"nms: {b.shape[0]} boxes but {lab.shape[0]} labels")
    check_iou_thr(iou_thr, "nms", zero_ok=True)
    return b, s, lab


def nms(
    xyxy: np.ndarray,
    scores: np.ndarray,
    iou_thr: float,
    *,
    labels: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression, exact, vectorised over candidate pairs.

    ``xyxy`` (N, 4) pixels, ``scores`` (N,). Visiting boxes by descending score (ties: lower
    index first), a box is suppressed when a box kept before it overlaps it with IoU strictly
    above ``iou_thr`` -- the rule of ``torchvision.ops.nms``. With ``labels`` (N,) only boxes
    of the same label suppress each other (like ``batched_nms``). With ``groups`` (N,) only
    boxes of *different* groups suppress each other: the merge passes the tile a box came
    from, so boxes one tile's detector chose to keep side by side stay (its own NMS decided).

    Returns int64 indices of the kept boxes, by descending score.

    Instead of comparing every box with every later one, overlapping pairs come from a grid
    index and the greedy order is resolved in parallel sweeps: a box whose higher-scored
    neighbours are all decided is decided in the next sweep.
    """
    b, s, lab = _check(xyxy, scores, labels, iou_thr)
    grp = None
    if groups is not None:
        grp = np.asarray(groups).reshape(-1)
        if grp.shape[0] != b.shape[0]:
            raise InvalidInputError(f"nms: {b.shape[0]} boxes but {grp.shape[0]} groups")
    if b.shape[0] == 0:
        return np.zeros(0, np.int64)
    return _nms(b, s, lab, grp, float(iou_thr))


def _nms(b: np.ndarray, s: np.ndarray, lab: np.ndarray | None, grp: np.ndarray | None, iou_thr: float) -> np.ndarray:
    """:func:`nms` on checked arrays: over all candidate pairs at once, or by blocks when they
    are too many to hold."""
    n = b.shape[0]
    try:  # a block as small as the fallback's smallest is always done in one pass
        i, j = candidate_pairs(b, limit=None if n <= _MIN_BLOCK else max(_PAIR_BUDGET, _PAIRS_PER_BOX * n))
    except TooManyPairs:
        return _nms_blocks(b, s, lab, grp, iou_thr)
    order = score_order(s)
    prio = np.empty(n, np.int64)
    prio[order] = np.arange(n)
    if lab is not None and i.size:
        same = lab[i] == lab[j]
        i, j = i[same], j[same]
    if grp is not None and i.size:
        other = grp[i] != grp[j]
        i, j = i[other], j[other]
    if i.size:
        over = pair_iou(b, i, j) > iou_thr
        i, j = i[over], j[over]
    first = prio[i] < prio[j]
    hi = np.where(first, i, j)  # the higher-ranked box of each overlapping pair
    lo = np.where(first, j, i)
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, 2 suppressed
    sweeps = 0
    while lo.size and sweeps < _MAX_SWEEPS:
        sweeps += 1
        st = state[hi]
        pending = np.zeros(n, bool)
        pending[lo[st == 0]] = True
        killed = np.zeros(n, bool)
        killed[lo[st == 1]] = True
        und = state == 0
        state[und & killed] = 2
        state[und & ~killed & ~pending] = 1
        alive = state[lo] == 0
        hi, lo = hi[alive], lo[alive]
    if lo.size:
        # Rare long chains: settle what the last sweep implies, then finish sequentially.
        killed = np.zeros(n, bool)
        killed[lo[state[hi] == 1]] = True
        state[(state == 0) & killed] = 2
        _finish_sequential(state, prio, hi, lo)
    state[state == 0] = 1
    return order[state[order] == 1].astype(np.int64)


def _nms_blocks(b: np.ndarray, s: np.ndarray, lab: np.ndarray | None, grp: np.ndarray | None,
                iou_thr: float) -> np.ndarray:
    """Greedy NMS, exactly as :func:`nms`, for boxes with too many overlapping pairs to hold.

    The boxes are taken by descending score in blocks (an eighth of them, at least
    :data:`_MIN_BLOCK`). A block's own NMS decides its boxes: every box ranked above them was
    decided earlier, and those it kept already removed the block's boxes they suppress. The
    boxes the block keeps then remove every later box they suppress, found from the pairs
    between the two sets only (:func:`~densedet_tile.merge.boxes.cross_pairs`), so the pairs
    inside a pile of later boxes are never formed. In a pile the first block keeps a few boxes
    that remove most of the rest, so the pairs formed follow the boxes kept rather than the pile
    squared; where little is suppressed (``iou_thr`` near 1, boxes of one group or of distinct
    labels) the kept boxes' pairs with the later ones are still many, though never more than
    one pass would hold.
    """
    n = b.shape[0]
    rest = score_order(s)  # ties: lower index first, as in the one-pass rule
    block = max(_MIN_BLOCK, -(-n // 8))
    kept: list[np.ndarray] = []
    while rest.size:
        q, rest = rest[:block], rest[block:]
        keep = q[_nms(b[q], s[q], None if lab is None else lab[q], None if grp is None else grp[q], iou_thr)]
        kept.append(keep)
        if not rest.size or not keep.size:
            continue
        dead = np.zeros(rest.size, bool)
        for some, near in _near_chunks(b, keep, rest):
            i, j = cross_pairs(b[some], b[rest[near]])
            k, r = some[i], rest[near[j]]
            hit = np.ones(i.size, bool)
            if lab is not None:
                hit &= lab[k] == lab[r]
            if grp is not None:
                hit &= grp[k] != grp[r]
            hit[hit] = pair_iou(b, k[hit], r[hit]) > iou_thr
            dead[near[j[hit]]] = True
        rest = rest[~dead]
    return np.concatenate(kept).astype(np.int64)


def _near_chunks(b: np.ndarray, keep: np.ndarray, rest: np.ndarray):
    """Yield ``(some, near)``: the kept boxes ``keep`` in runs along one axis, each with the
    positions in ``rest`` of the later boxes that may overlap it (their spans on that axis meet
    the run's), runs as long as ``len(some) * len(near)`` stays within :data:`_PAIR_BUDGET` (one
    box at least). A pile at an IoU near 1 keeps nearly every box, and all its kept boxes paired
    with all the later ones at once held 44 million pairs for 20 000 boxes (6 GB); boxes spread
    over a panorama still go in few runs, each near few later boxes.

    The axis is the one along which the boxes spread furthest for their size. The few later
    boxes much longer than the others along it (at most 1 in 1000, a box as wide as the image)
    go with every run: one of them would otherwise widen every run's window to all the boxes."""
    lo_all, hi_all = b[rest, :2], b[rest, 2:]
    size = np.maximum(np.median(hi_all - lo_all, axis=0), 1e-9)
    ax = int(np.argmax((np.r_[b[:, 2].max(), b[:, 3].max()] - np.r_[b[:, 0].min(), b[:, 1].min()]) / size))
    length = b[rest, ax + 2] - b[rest, ax]
    cap = 2.0 * float(np.quantile(length, 0.999))
    long_ = np.flatnonzero(length > cap)
    short = np.flatnonzero(length <= cap)
    ks = keep[np.argsort(b[keep, ax], kind="stable")]
    by_start = short[np.argsort(b[rest[short], ax], kind="stable")]
    starts = b[rest[by_start], ax]
    reach = float(length[short].max()) if short.size else 0.0  # a later box starts at most this far before its end
    n, at, run = ks.size, 0, 4096
    while at < n:
        end = min(n, at + run)
        lo = float(b[ks[at], ax]) - reach
        hi = float(b[ks[at:end], ax + 2].max())
        p, q = np.searchsorted(starts, lo, side="left"), np.searchsorted(starts, hi, side="left")
        many = q - p + long_.size
        if (end - at) * many > _PAIR_BUDGET and end - at > 1:
            run = max(1, (end - at) // 2)
            continue
        yield ks[at:end], np.concatenate([by_start[p:q], long_])
        at = end
        if 4 * run * max(many, 1) <= _PAIR_BUDGET:
            run *= 2


def _finish_sequential(state: np.ndarray, prio: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> None:
    """Settle the undecided boxes of long overlap chains one by one, in rank order.

    ``hi``/``lo`` are the remaining suppressing pairs (higher-ranked box first). Linear in the
    number of undecided boxes and their pairs; only reached after the parallel sweeps.
    """
    sort = np.argsort(prio[hi], kind="stable")
    hi, lo = hi[sort], lo[sort]
    starts = np.searchsorted(prio[hi], prio, side="left")
    ends = np.searchsorted(prio[hi], prio, side="right")
    for k in np.flatnonzero(state == 0)[np.argsort(prio[state == 0], kind="stable")]:
        if state[k] != 0:
            continue
        state[k] = 1
        victims = lo[starts[k] : ends[k]]
        victims = victims[state[victims] == 0]
        state[victims] = 2
