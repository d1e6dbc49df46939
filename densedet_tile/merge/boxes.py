"""Box geometry over sparse candidate pairs: a grid spatial index, pairwise IoU, components.

Every function here is array in, array out and never builds an N x N matrix: pairs of boxes
that may overlap come from :func:`candidate_pairs`, a strip-bucket sort-and-sweep index whose
cost grows with the number of boxes and their local density, not with the square of the total.
Coordinates are pixels, ``xyxy`` = (x1, y1, x2, y2), any common frame.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

__all__ = ["as_boxes", "box_area", "candidate_pairs", "cross_pairs", "pair_iou", "connected_components",
           "count_containing"]

_EMPTY_PAIRS = (np.zeros(0, np.int64), np.zeros(0, np.int64))

#: Upper bound on the candidate pairs materialised at once (memory stays bounded for 1M boxes).
_CHUNK_PAIRS = 2_000_000


def as_boxes(xyxy: object, name: str = "xyxy") -> np.ndarray:
    """``xyxy`` as a float64 (N, 4) array, validated (finite, x2 >= x1, y2 >= y1)."""
    try:
        arr = np.asarray(xyxy, dtype=np.float64)
    except (TypeError, ValueError):  # ragged rows, text: said here, not by numpy deep inside
        raise InvalidInputError(f"{name}: expected boxes of shape (N, 4) of numbers, got {type(xyxy).__name__} "
                                "that is not one") from None
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InvalidInputError(f"{name}: expected boxes of shape (N, 4), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{name}: boxes contain NaN or infinite coordinates")
    if np.any(arr[:, 2] < arr[:, 0]) or np.any(arr[:, 3] < arr[:, 1]):
        raise InvalidInputError(f"{name}: some boxes have x2 < x1 or y2 < y1")
    return arr


def as_scores(scores: object, n: int, who: str) -> np.ndarray:
    """``scores`` as a float64 (n,) array of finite numbers, else one line naming ``who``."""
    try:
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{who}: scores must be numbers, got {type(scores).__name__} that is not") from None
    if s.shape[0] != n:
        raise InvalidInputError(f"{who}: {n} boxes but {s.shape[0]} scores")
    if not np.all(np.isfinite(s)):
        raise InvalidInputError(f"{who}: scores contain NaN or infinite values")
    return s


def check_iou_thr(value: object, who: str, *, zero_ok: bool) -> float:
    """An IoU threshold as a float: a number in [0, 1] (``zero_ok``) or (0, 1], else one line
    naming ``who``."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    v = float(value) if number else float("nan")  # type: ignore[arg-type]
    if not (0.0 <= v <= 1.0) or (v == 0.0 and not zero_ok):
        span = "[0, 1]" if zero_ok else "(0, 1]"
        raise InvalidInputError(f"{who}: iou_thr must be a number in {span}, got {value!r}")
    return v


def box_area(xyxy: np.ndarray) -> np.ndarray:
    """Areas of (N, 4) xyxy boxes, shape (N,), in the dtype of the input."""
    return (xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])


def pair_iou(xyxy: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """IoU of the box pairs ``(xyxy[i[k]], xyxy[j[k]])``, float64 (K,).

    Two boxes without a common area (including degenerate zero-area boxes) have IoU 0.
    """
    b = np.asarray(xyxy, dtype=np.float64)
    a, c = b[i], b[j]
    iw = np.minimum(a[:, 2], c[:, 2]) - np.maximum(a[:, 0], c[:, 0])
    ih = np.minimum(a[:, 3], c[:, 3]) - np.maximum(a[:, 1], c[:, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    union = box_area(a) + box_area(c) - inter
    out = np.zeros(inter.shape, np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


class TooManyPairs(Exception):
    """:func:`candidate_pairs` would hold more candidate pairs than its ``limit`` (``args[0]``)."""


def _strip_height(lo: np.ndarray, hi: np.ndarray, cell: float | None) -> float:
    """The strip height of the spatial index: ``cell``, or the median side of the boxes that have
    one (zero-size boxes overlap nothing). Floored relative to the boxes rather than at a pixel,
    so that boxes in normalised (0-1) coordinates get strips as fine as pixel boxes do (one
    strip held them all: 14x slower at 500 000 boxes): at an eighth of the mean box height, so
    that the index holds at most about 9 entries per box however the sizes are spread (a
    median under a pixel put each ordinary box in thousands of strips), and at a millionth of
    the extent; never zero."""
    heights = hi[:, 1] - lo[:, 1]
    if cell is None:
        side = np.maximum(hi[:, 0] - lo[:, 0], heights)
        side = side[side > 0]
        cell = float(np.median(side)) if side.size else 1.0
    extent = float(max(hi[:, 0].max() - lo[:, 0].min(), hi[:, 1].max() - lo[:, 1].min()))
    return max(float(cell), float(heights.mean()) / 8.0, extent * 1e-6, 1e-9)


def _strip_entries(lo: np.ndarray, hi: np.ndarray, oy: float, ox: float, cell: float,
                   span: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The strip index of boxes ``lo``/``hi`` (their (x1, y1) and (x2, y2) corners): one entry
    per (box, strip it covers), sorted by (strip, left edge) through ``key = strip * span +
    (x1 - ox)`` (``span`` wider than every box, so strips never interleave). Returns ``key``,
    ``box`` and ``strip`` of each entry, and each box's first strip ``s0``."""
    s0 = np.floor((lo[:, 1] - oy) / cell).astype(np.int64)
    counts = np.floor((hi[:, 1] - oy) / cell).astype(np.int64) - s0 + 1
    box = np.repeat(np.arange(lo.shape[0], dtype=np.int64), counts)
    strip = s0[box] + (np.arange(box.size, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts))
    key = strip * span + (lo[box, 0] - ox)
    order = np.argsort(key, kind="stable")
    return key[order], box[order], strip[order], s0


def _runs_in_chunks(m: np.ndarray):
    """Expand runs of ``m[p]`` consecutive items, one run per entry ``p``, in chunks of about
    :data:`_CHUNK_PAIRS` items: yields ``(entry, offset)`` arrays (each item's entry and its
    place in the entry's run), so that memory stays bounded however many items there are."""
    cum = np.cumsum(m)
    if m.size == 0 or cum[-1] == 0:
        return
    p0 = 0
    while p0 < m.size:
        base = cum[p0 - 1] if p0 else 0
        p1 = max(int(np.searchsorted(cum, base + _CHUNK_PAIRS, side="right")), p0 + 1)
        mm = m[p0:p1]
        k = int(mm.sum())
        if k:
            yield (np.repeat(np.arange(p0, p1, dtype=np.int64), mm),
                   np.arange(k, dtype=np.int64) - np.repeat(np.cumsum(mm) - mm, mm))
        p0 = p1


def candidate_pairs(
    xyxy: np.ndarray,
    *,
    pad: float = 0.0,
    touching: bool = False,
    cell: float | None = None,
    limit: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of boxes whose rectangles, each grown by ``pad`` pixels, overlap.

    Returns ``(i, j)``, int64 arrays of equal length with ``i < j``, each unordered pair once
    (order of pairs unspecified). With ``touching=False`` the grown rectangles must share a
    positive area; with ``touching=True`` sharing an edge or a corner is enough.

    Spatial index: boxes are bucketed into horizontal strips ``cell`` pixels high (default:
    the median box side) and sorted by left edge inside each strip, so the boxes a box may
    overlap in a strip are a contiguous run found by binary search (sort and sweep). A pair
    is reported only in the strip holding the top of its intersection, so never twice.
    Work and memory grow with the number of boxes and of near neighbours, never with N^2;
    the runs are expanded in bounded chunks. With ``limit``, :class:`TooManyPairs` is raised
    instead when the index holds more than ``limit`` candidates (known before any is expanded):
    a pile of thousands of boxes over one spot has millions of pairs, and a caller can take
    another way there (:func:`densedet_tile.merge.nms`).
    """
    b = as_boxes(xyxy)
    n = b.shape[0]
    if n < 2:
        return _EMPTY_PAIRS
    lo = b[:, :2] - pad
    hi = b[:, 2:] + pad
    cell = _strip_height(lo, hi, cell)
    oy = lo[:, 1].min()
    ox = lo[:, 0].min()
    span = float(hi[:, 0].max() - ox) + 1.0  # keys of different strips never interleave
    key, box, strip, s0 = _strip_entries(lo, hi, oy, ox, cell, span)
    # Entries after p in its strip whose left edge is before (or at) the right edge of p.
    ends = np.searchsorted(key, strip * span + (hi[box, 0] - ox), side="right" if touching else "left")
    m = np.maximum(ends - np.arange(key.size) - 1, 0)
    if limit is not None and int(m.sum()) > limit:
        raise TooManyPairs(int(m.sum()))
    out_i: list[np.ndarray] = [_EMPTY_PAIRS[0]]
    out_j: list[np.ndarray] = [_EMPTY_PAIRS[1]]
    for first, offset in _runs_in_chunks(m):
        a = box[first]
        c = box[first + offset + 1]
        here = strip[first]
        ix1 = np.maximum(lo[a, 0], lo[c, 0])
        ix2 = np.minimum(hi[a, 0], hi[c, 0])
        iy1 = np.maximum(lo[a, 1], lo[c, 1])
        iy2 = np.minimum(hi[a, 1], hi[c, 1])
        if touching:
            ok = (ix1 <= ix2) & (iy1 <= iy2)
        else:
            ok = (ix1 < ix2) & (iy1 < iy2)
        # Report the pair only in the strip holding its intersection's top edge.
        ok &= np.maximum(s0[a], s0[c]) == here
        a = a[ok]
        c = c[ok]
        out_i.append(np.minimum(a, c))
        out_j.append(np.maximum(a, c))
    return np.concatenate(out_i), np.concatenate(out_j)


def cross_pairs(a: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(i, j)`` of a box ``a[i]`` and a box ``c[j]`` whose rectangles share a
    positive area (int64 arrays, each pair once, order unspecified); pairs within ``a`` or
    within ``c`` are never looked at, however many there are.

    The strip index of :func:`candidate_pairs`, swept in both directions: each box of ``a``
    takes the boxes of ``c`` whose left edge falls in its span (from its own left edge on), each
    box of ``c`` the boxes of ``a`` whose left edge falls strictly inside its span.
    """
    a = as_boxes(a, "a")
    c = as_boxes(c, "c")
    if a.shape[0] == 0 or c.shape[0] == 0:
        return _EMPTY_PAIRS
    both = np.concatenate([a, c])
    cell = _strip_height(both[:, :2], both[:, 2:], None)
    oy, ox = both[:, 1].min(), both[:, 0].min()
    span = float(both[:, 2].max() - ox) + 1.0
    ka, ba, sa, s0a = _strip_entries(a[:, :2], a[:, 2:], oy, ox, cell, span)
    kc, bc, sc, s0c = _strip_entries(c[:, :2], c[:, 2:], oy, ox, cell, span)
    out_i: list[np.ndarray] = [_EMPTY_PAIRS[0]]
    out_j: list[np.ndarray] = [_EMPTY_PAIRS[1]]
    # from a to the boxes of c starting in [left, right) of it; from c to those of a in (left, right)
    for box, strip, other_key, other_box, src, dst, s0src, s0dst, side, forward in (
            (ba, sa, kc, bc, a, c, s0a, s0c, "left", True),
            (bc, sc, ka, ba, c, a, s0c, s0a, "right", False)):
        base = strip * span  # the queries are built exactly as the keys are (rounding alike)
        first = np.searchsorted(other_key, base + (src[box, 0] - ox), side=side)
        m = np.maximum(np.searchsorted(other_key, base + (src[box, 2] - ox), side="left") - first, 0)
        for at, offset in _runs_in_chunks(m):
            u, v = box[at], other_box[first[at] + offset]
            ok = ((np.maximum(src[u, 0], dst[v, 0]) < np.minimum(src[u, 2], dst[v, 2]))
                  & (np.maximum(src[u, 1], dst[v, 1]) < np.minimum(src[u, 3], dst[v, 3]))
                  & (np.maximum(s0src[u], s0dst[v]) == strip[at]))  # once: in its top strip
            u, v = u[ok], v[ok]
            out_i.append(u if forward else v)
            out_j.append(v if forward else u)
    return np.concatenate(out_i), np.concatenate(out_j)


def connected_components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Component label of each of ``n`` nodes joined by the edges ``(i[k], j[k])``.

    Returns int64 (n,) where each label is the smallest node index of its component.
    Vectorised hook-and-compress; the number of sweeps grows with log of component size.
    """
    lab = np.arange(n, dtype=np.int64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    while i.size:
        li, lj = lab[i], lab[j]
        diff = li != lj
        if not diff.any():
            break
        i, j = i[diff], j[diff]
        lo = np.minimum(li[diff], lj[diff])
        hi = np.maximum(li[diff], lj[diff])
        np.minimum.at(lab, hi, lo)
        while True:
            nxt = lab[lab]
            if np.array_equal(nxt, lab):
                break
            lab = nxt
    return lab


def count_containing(rects: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """How many of the rectangles ``rects`` (T, 4) contain each of ``boxes`` (N, 4) wholly.

    Returns int64 (N,). When the rectangles are cells of a grid (each one of a set of x spans
    times one of a set of y spans, the spans of an axis all of one length, as tiles are; the
    grid may have holes) a box's containing spans on each axis are a run found by two binary
    searches, and a summed-area table over the grid counts the rectangles of that block in
    O(1). Otherwise rectangle-box pairs come from :func:`candidate_pairs`.
    """
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if r.shape[0] == 0 or b.shape[0] == 0:
        return np.zeros(b.shape[0], np.int64)
    xs, xi = _unique_spans(r[:, 0], r[:, 2])
    ys, yi = _unique_spans(r[:, 1], r[:, 3])
    if np.ptp(xs[:, 1] - xs[:, 0]) == 0 and np.ptp(ys[:, 1] - ys[:, 0]) == 0:
        cells = np.zeros((xs.shape[0] + 1, ys.shape[0] + 1), np.int64)
        np.add.at(cells, (xi + 1, yi + 1), 1)
        sat = cells.cumsum(axis=0).cumsum(axis=1)
        # Spans of one length sorted by start are sorted by end too: those holding [lo, hi]
        # run from the first ending at or after hi to the last starting at or before lo.
        x0 = np.searchsorted(xs[:, 1], b[:, 2], side="left")
        x1 = np.maximum(np.searchsorted(xs[:, 0], b[:, 0], side="right"), x0)
        y0 = np.searchsorted(ys[:, 1], b[:, 3], side="left")
        y1 = np.maximum(np.searchsorted(ys[:, 0], b[:, 1], side="right"), y0)
        return sat[x1, y1] - sat[x0, y1] - sat[x1, y0] + sat[x0, y0]
    t = r.shape[0]
    i, j = candidate_pairs(np.concatenate([r, b]), touching=True)
    sel = (i < t) & (j >= t)
    i, j = i[sel], j[sel] - t
    inside = (r[i, 0] <= b[j, 0]) & (r[i, 1] <= b[j, 1]) & (r[i, 2] >= b[j, 2]) & (r[i, 3] >= b[j, 3])
    return np.bincount(j[inside], minlength=b.shape[0]).astype(np.int64)


def _unique_spans(start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (start, end) spans sorted by start then end, and each input's span index."""
    order = np.lexsort((end, start))
    a, b = start[order], end[order]
    new = np.ones(a.size, bool)
    new[1:] = (a[1:] != a[:-1]) | (b[1:] != b[:-1])
    inv = np.empty(a.size, np.int64)
    inv[order] = np.cumsum(new) - 1
    return np.stack([a[new], b[new]], axis=1), inv
