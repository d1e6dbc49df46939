"""Each product box's nearest neighbour on its right, from a spatial index.

Shelf geometry is local: two products side by side on one shelf overlap vertically and, unless
the shelf ends between them, stand on the same line. :func:`right_neighbours` finds, for every
box, the nearest box to its right that overlaps it vertically; :func:`neighbour_pairs` says
which of those pairs stand on one line (their bottoms agree) and which do not (a jump in shelf
height, or a product stacked on another). Candidate pairs come from one ``shapely.STRtree``
query of a probe per box (the stretch right of the box's centre, ``reach`` box widths beyond
its right edge), never from an N x N matrix. Boxes with the very same coordinates (a detector
repeating one box) are queried once: a pile of k of them would otherwise give k^2 pairs.
Coordinates are pixels of the upright image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from .boxes import as_boxes

__all__ = ["NeighbourPairs", "right_neighbours", "neighbour_pairs", "stands_on_another"]


def right_neighbours(xyxy: np.ndarray, *, reach: float = 1.0, min_overlap: float = 0.5) -> np.ndarray:
    """Index (N,) int64 of each box's nearest right-hand neighbour, -1 for none.

    The neighbour of box i is the box j (j != i) with the leftmost left edge among those whose
    centre lies right of i's centre, whose left edge lies at most ``reach`` widths of i past i's
    right edge, and whose vertical overlap with i is at least ``min_overlap`` of the shorter
    box's height. ``xyxy`` (N, 4) pixels.
    """
    a = as_boxes(xyxy)
    n = len(a)
    out = np.full(n, -1, np.int64)
    if n < 2:
        return out
    i, j = _candidates(a, reach, min_overlap)
    if len(i) == 0:
        return out
    order = np.lexsort((j, a[j, 0], i))  # per i: leftmost left edge first (ties: lower index)
    i, j = i[order], j[order]
    first = np.r_[True, i[1:] != i[:-1]]
    out[i[first]] = j[first]
    return out


@dataclass(frozen=True, eq=False)
class NeighbourPairs:
    """Right-hand neighbour pairs: ``left``/``right`` (M,) box indices, ``aligned`` (M,)
    whether their bottoms agree within ``tol`` of the taller box's height (one shelf line), and
    ``slope`` (M,) the slope of the line through their bottoms (dy/dx, y down). A box's
    neighbour is the nearest aligned one when there is one within reach, else the nearest
    overlapping one (see :func:`neighbour_pairs`)."""

    left: np.ndarray
    right: np.ndarray
    aligned: np.ndarray
    slope: np.ndarray


def _distinct(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(u, first, inverse)``: the distinct boxes of ``a``, the lowest index of each in ``a``,
    and each box's distinct one (``a == u[inverse]``)."""
    u, first, inverse = np.unique(a, axis=0, return_index=True, return_inverse=True)
    return u, first.astype(np.int64), inverse.reshape(-1).astype(np.int64)


def _candidates(a: np.ndarray, reach: float, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    """(i, j) pairs with j right of i, within reach and overlapping vertically (module doc).
    Of boxes sharing their coordinates, only the lowest index appears as ``j`` (the one every
    caller would pick among them), and every one of them as ``i``."""
    u, first, inverse = _distinct(a)
    if len(u) == len(a):
        return _distinct_candidates(a, reach, min_overlap)
    ui, uj = _distinct_candidates(u, reach, min_overlap)
    members = np.argsort(inverse, kind="stable")  # the boxes of each distinct one, in a row
    starts = np.r_[0, np.cumsum(np.bincount(inverse, minlength=len(u)))]
    n_each = starts[ui + 1] - starts[ui]
    rep = np.repeat(np.arange(len(ui)), n_each)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(n_each) - n_each, n_each)
    return members[starts[ui][rep] + offset], first[uj][rep]


def _distinct_candidates(a: np.ndarray, reach: float, min_overlap: float) -> tuple[np.ndarray, np.ndarray]:
    w = np.maximum(a[:, 2] - a[:, 0], 1e-6)
    h = np.maximum(a[:, 3] - a[:, 1], 1e-6)
    cx = (a[:, 0] + a[:, 2]) / 2
    # the tree holds each box's left half and the probe starts at the box's centre, so the
    # query itself asks for "centre to the right, left edge within reach": boxes nested in one
    # another (a detector's boxes around a box around a box...) all intersect each other whole,
    # and made n^2 pairs for the filter below to throw away (4000 nested boxes: 20 s)
    tree = shapely.STRtree(shapely.box(a[:, 0], a[:, 1], cx, a[:, 3]))
    # (from just past the centre: a left half that only touches the probe has its centre on it)
    probes = shapely.box(np.nextafter(cx, np.inf), a[:, 1], a[:, 2] + reach * w, a[:, 3])
    i, j = tree.query(probes, predicate="intersects")
    overlap = np.minimum(a[i, 3], a[j, 3]) - np.maximum(a[i, 1], a[j, 1])
    ok = (i != j) & (cx[j] > cx[i]) & (a[j, 0] <= a[i, 2] + reach * w[i]) & (overlap >= min_overlap * np.minimum(h[i], h[j]))
    return i[ok].astype(np.int64), j[ok].astype(np.int64)


def neighbour_pairs(xyxy: np.ndarray, *, reach: float = 1.0, tol: float = 0.3, min_overlap: float = 0.5) -> NeighbourPairs:
    """Each box's right-hand neighbour among the candidates of :func:`right_neighbours`: the
    one with the leftmost left edge among those whose bottom agrees with the box's own within
    ``tol`` of the taller box's height, or, when none does, the one with the leftmost left
    edge. ``xyxy`` (N, 4) pixels."""
    a = as_boxes(xyxy)
    empty = np.zeros(0, np.int64)
    if len(a) < 2:
        return NeighbourPairs(empty, empty, np.zeros(0, bool), np.zeros(0))
    i, j = _candidates(a, reach, min_overlap)
    h = a[:, 3] - a[:, 1]
    cx = (a[:, 0] + a[:, 2]) / 2
    dy = a[j, 3] - a[i, 3]
    aligned = np.abs(dy) <= tol * np.maximum(h[i], h[j])
    order = np.lexsort((j, a[j, 0], ~aligned, i))
    i, j, aligned, dy = i[order], j[order], aligned[order], dy[order]
    first = np.r_[True, i[1:] != i[:-1]] if len(i) else np.zeros(0, bool)
    i, j, aligned, dy = i[first], j[first], aligned[first], dy[first]
    slope = dy / np.maximum(cx[j] - cx[i], 1e-6)
    return NeighbourPairs(i, j, aligned, slope)


def stands_on_another(xyxy: np.ndarray, *, tol: float = 0.15) -> np.ndarray:
    """Bool (N,): the box's bottom rests on another box's top (a product stacked on another):
    some box overlaps the middle half of its width and has its top within ``tol`` of the box's
    height of the box's bottom, below the box's middle. ``xyxy`` (N, 4) pixels."""
    a = as_boxes(xyxy)
    out = np.zeros(len(a), bool)
    if len(a) < 2:
        return out
    u, _, inverse = _distinct(a)
    if len(u) < len(a):  # a box's copies never stand on each other: decided once per distinct box
        return stands_on_another(u, tol=tol)[inverse]
    w = a[:, 2] - a[:, 0]
    h = np.maximum(a[:, 3] - a[:, 1], 1e-6)
    # the tree holds each box's top edge: only a top near the box's bottom is asked for (whole
    # boxes nested in one another all meet every probe)
    tree = shapely.STRtree(shapely.linestrings(np.stack([np.stack([a[:, 0], a[:, 1]], 1),
                                                         np.stack([a[:, 2], a[:, 1]], 1)], 1)))
    probes = shapely.box(a[:, 0] + 0.25 * w, a[:, 3] - tol * h, a[:, 2] - 0.25 * w, a[:, 3] + tol * h)
    i, j = tree.query(probes, predicate="intersects")
    ok = (i != j) & (np.abs(a[j, 1] - a[i, 3]) <= tol * h[i]) & (a[j, 3] > a[i, 3] + 0.3 * h[i])
    out[i[ok]] = True
    return out
