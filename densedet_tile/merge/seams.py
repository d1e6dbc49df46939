"""Seam repair: drop truncated views of a product seen whole elsewhere, join mutual fragments.

A product crossing an interior tile edge is truncated in that tile. Each box carries four
*cut* flags (left, top, right, bottom): the side lies on an interior edge of the tile that
saw it, so the product may continue beyond it. Over pairs of boxes from different tiles:

* **drop** (a truncated view): box ``f`` is dropped when another tile's box ``g`` agrees
  with ``f`` on every side where ``f`` is not cut, reaches about as far as ``f`` (within the
  tolerance) on every side, and reaches further than ``f`` on a cut side -- ``g`` saw what
  ``f``'s tile cut off. When two views each qualify, only the smaller is dropped.
* **join** (fragments of a product larger than the overlap, truncated in every tile): ``f``
  cut on its right and ``g`` cut on its left (or the same with bottom/top) are joined into
  their union when each reaches past the other's cut line and they agree on the two sides
  along the seam. Both then span the whole overlap strip of the two tiles at the same
  height, which two distinct, non-overlapping products cannot do -- so neighbours touching
  across a seam are never joined. Joins are transitive (a product cut at a 4-tile corner is
  joined from four fragments).

"Agree" means within ``max(tol_px, tol_frac * extent)`` pixels, the extent being the smaller
of the two boxes' widths (for x sides) or heights (for y sides). A pair that meets is joined
rather than dropped; a box dropped through any other pair takes no part in joins (its
product is covered by the fuller view that dropped it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .boxes import candidate_pairs, connected_components

__all__ = ["SeamRepair", "repair_seams"]


@dataclass(frozen=True)
class SeamRepair:
    """Outcome of :func:`repair_seams` over N input boxes.

    ``keep`` bool (N,): input boxes that survive unchanged. ``joined_xyxy`` float64 (J, 4),
    ``joined_scores`` float64 (J,), ``joined_labels`` int64 (J,): one union box per group of
    joined fragments (score: the best fragment's). ``join_group`` int64 (N,): index into the
    joined arrays for joined inputs, -1 otherwise. ``dropped`` bool (N,): truncated views
    removed in favour of a fuller view.
    """

    keep: np.ndarray
    dropped: np.ndarray
    join_group: np.ndarray
    joined_xyxy: np.ndarray
    joined_scores: np.ndarray
    joined_labels: np.ndarray


def repair_seams(
    xyxy: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    cut: np.ndarray,
    *,
    tol_px: float,
    tol_frac: float,
    class_agnostic: bool = False,
    near_seam: np.ndarray | None = None,
) -> SeamRepair:
    """Drop truncated views and join mutual fragments (see the module docstring).

    ``xyxy`` (N, 4) global pixels, ``scores`` (N,), ``labels`` (N,), ``groups`` (N,) tile ids,
    ``cut`` bool (N, 4) in (left, top, right, bottom) order. Only pairs from different groups,
    of one label unless ``class_agnostic``, with at least one cut box are examined.
    ``near_seam`` (N,) bool, optional: a superset of the boxes that can take part (every cut
    box and every box reaching within the tolerance of an interior tile edge); the others
    are left out of the pair search, which only saves time.
    """
    b = np.asarray(xyxy, dtype=np.float64)
    n = b.shape[0]
    cut = np.asarray(cut, dtype=bool).reshape(n, 4)
    lab = np.asarray(labels, dtype=np.int64)
    g = np.asarray(groups, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    dropped = np.zeros(n, bool)
    join_group = np.full(n, -1, np.int64)
    anycut = cut.any(axis=1)
    empty = SeamRepair(
        keep=np.ones(n, bool),
        dropped=dropped,
        join_group=join_group,
        joined_xyxy=np.zeros((0, 4)),
        joined_scores=np.zeros(0),
        joined_labels=np.zeros(0, np.int64),
    )
    if n < 2 or not anycut.any():
        return empty
    if near_seam is not None:
        sub = np.flatnonzero(np.asarray(near_seam, dtype=bool) | anycut)
        i, j = candidate_pairs(b[sub], pad=float(tol_px), touching=True)
        i, j = sub[i], sub[j]
    else:
        i, j = candidate_pairs(b, pad=float(tol_px), touching=True)
    ok = (g[i] != g[j]) & (anycut[i] | anycut[j])
    if not class_agnostic:
        ok &= lab[i] == lab[j]
    i, j = i[ok], j[ok]
    if i.size == 0:
        return empty
    bi, bj = b[i], b[j]
    wmin = np.minimum(bi[:, 2] - bi[:, 0], bj[:, 2] - bj[:, 0])
    hmin = np.minimum(bi[:, 3] - bi[:, 1], bj[:, 3] - bj[:, 1])
    tx = np.maximum(tol_px, tol_frac * wmin)
    ty = np.maximum(tol_px, tol_frac * hmin)
    tol = np.stack([tx, ty, tx, ty], axis=1)
    # d > 0: box j reaches further out than box i on that side (left, top, right, bottom).
    d = (bj - bi) * np.array([-1.0, -1.0, 1.0, 1.0])
    ci, cj = cut[i], cut[j]
    within = np.abs(d) <= tol  # the two sides agree
    # i is a truncated view of j: j reaches i everywhere (d >= -tol), agrees where i is not
    # cut, and goes further on a side where i is cut. Symmetrically for j.
    j_reaches = (d >= -tol).all(axis=1)
    i_reaches = (d <= tol).all(axis=1)
    drop_i = j_reaches & (ci | within).all(axis=1) & (ci & (d > 0)).any(axis=1)
    drop_j = i_reaches & (cj | within).all(axis=1) & (cj & (d < 0)).any(axis=1)
    # Two views that each see past the other's cut (both nearly whole): drop only the smaller.
    both = drop_i & drop_j
    if both.any():
        ai = (bi[:, 2] - bi[:, 0]) * (bi[:, 3] - bi[:, 1])
        aj = (bj[:, 2] - bj[:, 0]) * (bj[:, 3] - bj[:, 1])
        i_smaller = (ai < aj) | ((ai == aj) & (i > j))
        drop_i &= ~both | i_smaller
        drop_j &= ~both | ~i_smaller

    def meets(f: np.ndarray, gg: np.ndarray, cf: np.ndarray, cg: np.ndarray, ax: int) -> np.ndarray:
        """f cut on its far side of axis ``ax`` (0: x, 1: y), gg cut on its near side."""
        o = 1 - ax
        t_o = ty if ax == 0 else tx
        return (
            cf[:, 2 + ax]
            & cg[:, ax]
            & (f[:, ax] < gg[:, ax])
            & (gg[:, 2 + ax] > f[:, 2 + ax])
            & (f[:, 2 + ax] > gg[:, ax])
            & (np.abs(f[:, o] - gg[:, o]) <= t_o)
            & (np.abs(f[:, 2 + o] - gg[:, 2 + o]) <= t_o)
        )

    join = (
        meets(bi, bj, ci, cj, 0)
        | meets(bj, bi, cj, ci, 0)
        | meets(bi, bj, ci, cj, 1)
        | meets(bj, bi, cj, ci, 1)
    )
    # A pair that meets is joined, not dropped; a box dropped through another pair (a third
    # tile saw it whole, or saw more of it) takes no part in joins.
    dropped[i[drop_i & ~join]] = True
    dropped[j[drop_j & ~join]] = True
    join &= ~dropped[i] & ~dropped[j]
    joined = np.zeros(n, bool)
    joined[i[join]] = True
    joined[j[join]] = True
    if not joined.any():
        return SeamRepair(
            keep=~dropped,
            dropped=dropped,
            join_group=join_group,
            joined_xyxy=np.zeros((0, 4)),
            joined_scores=np.zeros(0),
            joined_labels=np.zeros(0, np.int64),
        )
    comp = connected_components(n, i[join], j[join])
    members = np.flatnonzero(joined)
    roots, inv = np.unique(comp[members], return_inverse=True)
    m = roots.shape[0]
    jb = np.tile(np.array([np.inf, np.inf, -np.inf, -np.inf]), (m, 1))
    np.minimum.at(jb[:, 0], inv, b[members, 0])
    np.minimum.at(jb[:, 1], inv, b[members, 1])
    np.maximum.at(jb[:, 2], inv, b[members, 2])
    np.maximum.at(jb[:, 3], inv, b[members, 3])
    # Score and label of the best-scored fragment of each group.
    best = np.lexsort((-s[members], inv))
    firsts = np.ones(best.size, bool)
    firsts[1:] = inv[best[1:]] != inv[best[:-1]]
    top = members[best[firsts]]
    join_group[members] = inv
    return SeamRepair(
        keep=~dropped & ~joined,
        dropped=dropped,
        join_group=join_group,
        joined_xyxy=jb,
        joined_scores=s[top],
        joined_labels=lab[top],
    )
