"""Seam repair: drop truncated views of a product seen whole elsewhere, join mutual fragments.

A product crossing an interior tile edge is truncated in that tile. Each box carries four
*cut* flags (left, top, right, bottom): the side lies on an interior edge of the tile that
saw it, so the product may continue beyond it. Over pairs of boxes from different tiles:

* **drop** (a truncated view): box ``f`` is dropped when another tile's box ``g`` agrees
  with ``f`` on every side where ``f`` is not cut, reaches about as far as ``f`` (within the
  tolerance) on every side, and reaches further than ``f`` on a cut side -- ``g`` saw what
  ``f``'s tile cut off. Drops never go round in a cycle: among views on one, a view is
  dropped only for a larger one (by area), so when two views each qualify only the smaller
  is dropped.
* **contain** (a truncated view that does not agree): a cut ``f`` lying largely inside ``g``
  (intersection over ``f``'s own area at least ``contain``) is dropped too when ``g`` reaches
  past one of ``f``'s cut sides by more than the tolerance and ``f`` past none of ``g``'s
  (``g`` is the fuller view), whatever ``f``'s uncut sides say: a real detector draws the
  uncut sides of a truncated view differently (less context, or something small standing in
  front of the product in that tile only). The same guard against cycles applies.
* Neither drops ``f`` for ``g`` of another class (classes matched one by one) when ``g``'s own
  tile also reported ``f``'s object apart from ``g``: a view there of ``f``'s label agreeing
  with ``f`` on every side at IoU 0.5 or more, or a fragment joining ``f`` (below). Then ``f``
  is an object nested in ``g``'s (a product in the box of its pack crossing the seam), not
  ``g``'s product cut short. Nor does a side that two views of one class (any two, merged
  class-agnostic) have cut by one tile edge count as reaching further in either (a pixel of
  noise past it kept the lower-scored view): neither is dropped, and the fusion after the
  repair takes them as one.
* **unconfirmed** (a truncated view nobody else sees, with ``confirm``): a cut ``f`` lying
  wholly inside another tile that also sees ``tol_px`` beyond ``f``'s own tile's edge on every
  cut side, when no tile holding ``f`` reported anything overlapping it (no box of those tiles,
  of any label, covers 30% of ``f`` or of itself), is dropped (a tile that ends at the same
  edge, the next of one column or row, sees the product cut there too: its silence is a
  miss, since 2026-12-07); here a side counts as cut only
  within ``CONFIRM_BAND_FRAC`` (0.15) of ``f``'s own extent of the edge (``confirm_cut``): a
  small product standing a little way from the edge was seen whole, and the other tile's
  silence is its miss. That tile saw the same pixels
  and what lies beyond ``f``'s cut, so it is the better judge; a real detector reports
  half-seen texture at a tile border that it does not report with the context around it.
* **join** (fragments of a product larger than the overlap, truncated in every tile): ``f``
  cut on its right and ``g`` cut on its left (or the same with bottom/top) are joined into
  their union when each reaches past the other's cut line and they agree on the two sides
  along the seam. Both then span the whole overlap strip of the two tiles at the same
  height, which two distinct, non-overlapping products cannot do -- so neighbours touching
  across a seam are never joined. On a grid of tiles (the tiler's), only fragments of
  neighbouring tiles (the next tile start along that axis) are joined: where tiles i and i+2
  overlap by a few pixels, tile i+1 sees whole whatever meets there. Joins are transitive (a
  product cut at a 4-tile corner is joined from four fragments, one over three tiles from
  three).

"Agree" means within ``max(tol_px, tol_frac * extent)`` pixels, the extent being the root mean
square of the two boxes' widths (for x sides) or heights (for y sides), at most three times the
smaller one (each view errs by a share of its own size; the smaller of them for views of two
labels), and never more than half the
larger one's (so small neighbours are never taken for views of each other). A pair that meets is joined
rather than dropped; a box dropped through any other pair takes no part in joins (its
product is covered by the fuller view that dropped it).

The relative tolerances can follow the detector's own disagreement, measured in the run:
:func:`measure_view_noise` takes the pairs of *whole* views of one product from two tiles
(both uncut, mutual best match at IoU >= 0.5: a product inside the overlap of two tiles) and
returns a high quantile of their per-side differences relative to the box size;
:func:`seam_tolerances` turns it (shrunk towards a prior when few pairs were seen) into the
edge and agreement tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .boxes import box_area, candidate_pairs, connected_components, count_containing

__all__ = [
    "SeamRepair",
    "SeamTolerances",
    "measure_view_noise",
    "repair_seams",
    "seam_tolerances",
]

#: Quantile of the relative per-side differences between two whole views of one product that
#: :func:`measure_view_noise` reports. On the real panoramas of ``scripts/bench_real_seams.py``
#: (built-in model) the median was 0.7-1.4% of the box side, the 80th percentile 2.3-3.6% and
#: the 95th 7-10% (a heavy tail): the 80th percentile is stable from run to run and still
#: says how large the disagreement typically gets.
NOISE_QUANTILE = 0.8
#: Multipliers turning the measured noise ``s`` into tolerances (see :func:`seam_tolerances`).
#: A cut side stops short of the tile edge by up to about twice ``s`` (``s`` is a quantile of
#: the difference of two noisy sides): at once ``s`` (until 2026-12-05) 8-10 of 89 products
#: 560-700 px tall, cut by tiles of 384-512 px, came out as two half-boxes under 1-3 % box
#: noise, at twice ``s`` 0-3; the real panoramas of ``scripts/bench_real_seams.py`` moved by
#: 0.0002 F1@0.5 or less and the painted aisles not at all.
EDGE_MULT = 2.0
AGREE_MULT = 3.0
#: Bounds of the derived relative tolerances, whatever was measured.
EDGE_FRAC_MAX = 0.1
AGREE_FRAC_RANGE = (0.02, 0.3)
#: :func:`measure_view_noise` looks at no more than this many candidate pairs of whole views
#: (the first ones of the pair search, which come strip by strip: a region of the image, not
#: a scatter); a quantile over thousands of pairs is settled, and the cost stays bounded.
NOISE_MAX_PAIRS = 20_000
#: Overlap (intersection over the smaller box) above which a box of another tile counts as
#: having seen something where a cut view is (``confirm``).
CONFIRM_OVERLAP = 0.3


@dataclass(frozen=True)
class SeamTolerances:
    """Tolerances of one merge run (see :func:`seam_tolerances`).

    ``noise``: the relative view-to-view disagreement used (measured, shrunk towards the
    prior); ``measured``: the raw measurement (NaN without pairs); ``pairs``: how many pairs
    of whole views were measured. ``edge_frac``: a side within ``max(edge_tol, edge_frac *
    extent)`` px of an interior tile edge is cut. ``agree_frac``: two sides agree within
    ``max(seam_tol, agree_frac * extent)`` px.
    """

    noise: float
    measured: float
    pairs: int
    edge_frac: float
    agree_frac: float


def measure_view_noise(
    xyxy: np.ndarray,
    groups: np.ndarray,
    cut: np.ndarray,
    i: np.ndarray,
    j: np.ndarray,
    *,
    labels: np.ndarray | None = None,
    quantile: float = NOISE_QUANTILE,
) -> tuple[float, int]:
    """The detector's view-to-view disagreement, from pairs of whole views of one product.

    ``(i, j)`` are candidate pairs (e.g. from :func:`~densedet_tile.merge.boxes.candidate_pairs`).
    Kept are pairs from different ``groups`` (tiles), of one label when ``labels`` is given,
    with no cut side on either box (at most :data:`NOISE_MAX_PAIRS` of them, the first),
    IoU >= 0.5, each box the other's best such match. For
    each kept pair and side, ``|difference| / extent`` (extent: the mean width of the two
    boxes for x sides, the mean height for y sides). Returns ``(q, n)``: the ``quantile`` of
    those values and the number of pairs (``q`` is NaN when ``n == 0``).
    """
    b = np.asarray(xyxy, dtype=np.float64)
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    whole = ~np.asarray(cut, dtype=bool).any(axis=1)
    ok = (groups[i] != groups[j]) & whole[i] & whole[j]
    if labels is not None:
        ok &= labels[i] == labels[j]
    i, j = i[ok][:NOISE_MAX_PAIRS], j[ok][:NOISE_MAX_PAIRS]
    if i.size == 0:
        return float("nan"), 0
    bi, bj = b[i], b[j]
    iw = np.minimum(bi[:, 2], bj[:, 2]) - np.maximum(bi[:, 0], bj[:, 0])
    ih = np.minimum(bi[:, 3], bj[:, 3]) - np.maximum(bi[:, 1], bj[:, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    ai = (bi[:, 2] - bi[:, 0]) * (bi[:, 3] - bi[:, 1])
    aj = (bj[:, 2] - bj[:, 0]) * (bj[:, 3] - bj[:, 1])
    union = ai + aj - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    best = np.zeros(b.shape[0])
    np.maximum.at(best, i, iou)
    np.maximum.at(best, j, iou)
    m = (iou >= 0.5) & (iou >= best[i]) & (iou >= best[j])
    if not m.any():
        return float("nan"), 0
    bi, bj = bi[m], bj[m]
    w = 0.5 * ((bi[:, 2] - bi[:, 0]) + (bj[:, 2] - bj[:, 0]))
    h = 0.5 * ((bi[:, 3] - bi[:, 1]) + (bj[:, 3] - bj[:, 1]))
    ext = np.maximum(np.stack([w, h, w, h], axis=1), 1e-9)
    rel = np.abs(bj - bi) / ext
    return float(np.quantile(rel, quantile)), int(bi.shape[0])


def seam_tolerances(measured: float, pairs: int, *, prior: float, prior_pairs: float) -> SeamTolerances:
    """Tolerances from the measured view-to-view noise ``measured`` over ``pairs`` pairs.

    The noise used is ``s = (pairs * measured + prior_pairs * prior) / (pairs + prior_pairs)``
    (a few pairs move it little, hundreds decide it; ``prior`` alone without pairs). Then
    ``edge_frac = EDGE_MULT * s`` (a truncated box stops short of the tile edge by up to about
    twice the noise) and ``agree_frac = AGREE_MULT * s`` (two noisy sides, and the tail beyond the
    quantile), clipped to ``[0, EDGE_FRAC_MAX]`` and ``AGREE_FRAC_RANGE``.
    """
    n = max(int(pairs), 0)
    m = float(measured) if n > 0 and np.isfinite(measured) else 0.0
    s = (n * m + prior_pairs * prior) / (n + prior_pairs) if (n + prior_pairs) > 0 else prior
    return SeamTolerances(
        noise=s,
        measured=float(measured) if n > 0 else float("nan"),
        pairs=n,
        edge_frac=float(np.clip(EDGE_MULT * s, 0.0, EDGE_FRAC_MAX)),
        agree_frac=float(np.clip(AGREE_MULT * s, *AGREE_FRAC_RANGE)),
    )


@dataclass(frozen=True)
class SeamRepair:
    """Outcome of :func:`repair_seams` over N input boxes.

    ``keep`` bool (N,): input boxes that survive unchanged. ``joined_xyxy`` float64 (J, 4),
    ``joined_scores`` float64 (J,), ``joined_labels`` int64 (J,): one union box per group of
    joined fragments (score: the best fragment's). ``join_group`` int64 (N,): index into the
    joined arrays for joined inputs, -1 otherwise. ``dropped`` bool (N,): truncated views
    removed in favour of a fuller view (by agreement or containment); ``unconfirmed`` bool
    (N,): cut views removed because another tile saw their place whole and reported nothing
    there.
    """

    keep: np.ndarray
    dropped: np.ndarray
    join_group: np.ndarray
    joined_xyxy: np.ndarray
    joined_scores: np.ndarray
    joined_labels: np.ndarray
    unconfirmed: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


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
    contain: float | None = None,
    tile_xyxy: np.ndarray | None = None,
    confirm: bool = False,
    confirm_cut: np.ndarray | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    confirmers: tuple[np.ndarray, np.ndarray] | None = None,
    safe_overlap: float = 0.0,
) -> SeamRepair:
    """Drop truncated views and join mutual fragments (see the module docstring).

    ``xyxy`` (N, 4) global pixels, ``scores`` (N,), ``labels`` (N,), ``groups`` (N,) tile ids,
    ``cut`` bool (N, 4) in (left, top, right, bottom) order. Only pairs from different groups
    with at least one cut box are examined; a truncated view is dropped for a fuller view of
    any label (but not for one of another label, classes merged one by one, when the fuller
    view's tile reported the truncated view's object too: a product nested in its pack's box),
    fragments are joined only when of one label unless ``class_agnostic``.
    ``near_seam`` (N,) bool, optional: a superset of the boxes that can take part (every cut
    box and every box reaching within the tolerance of an interior tile edge); the others
    are left out of the pair search, which only saves time. ``pairs``: candidate pairs
    ``(i, j)`` already found (pad ``tol_px``, touching), instead of searching here.

    ``contain``: the containment rule's threshold (None: no containment rule).
    ``tile_xyxy`` (T, 4), the rectangle of every group id: two views cut by one tile edge (of one
    label, any two class-agnostic) are then not dropped for a pixel of noise past it, and on a
    grid fragments join across neighbouring tiles only. ``confirm`` with ``tile_xyxy``: the unconfirmed
    rule, judging ``confirm_cut`` (N, 4) bool when given (a stricter subset of ``cut``: sides
    near the edge for the box's own size), else ``cut``; ``confirmers`` ``(xyxy (M, 4), groups (M,))``: more boxes that may confirm a cut view
    but take no other part (a tile's boxes just below the served score threshold: that tile did
    see an object there). ``pairs`` must then hold every overlapping pair involving a cut box (the search
    over ``near_seam`` boxes does only when ``near_seam`` also covers every box lying in two
    tiles).
    """
    b = np.asarray(xyxy, dtype=np.float64)
    n = b.shape[0]
    cut = np.asarray(cut, dtype=bool).reshape(n, 4)
    lab = np.asarray(labels, dtype=np.int64)
    g = np.asarray(groups, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    dropped = np.zeros(n, bool)
    unconfirmed = np.zeros(n, bool)
    join_group = np.full(n, -1, np.int64)
    anycut = cut.any(axis=1)

    def result(keep: np.ndarray, jb: np.ndarray | None = None, js: np.ndarray | None = None,
               jl: np.ndarray | None = None) -> SeamRepair:
        return SeamRepair(
            keep=keep,
            dropped=dropped,
            join_group=join_group,
            joined_xyxy=np.zeros((0, 4)) if jb is None else jb,
            joined_scores=np.zeros(0) if js is None else js,
            joined_labels=np.zeros(0, np.int64) if jl is None else jl,
            unconfirmed=unconfirmed,
        )

    if n == 0 or not anycut.any():  # (one box alone still meets the unconfirmed rule)
        return result(np.ones(n, bool))
    if pairs is not None:
        i, j = (np.asarray(a, dtype=np.int64) for a in pairs)
    elif near_seam is not None:
        sub = np.flatnonzero(np.asarray(near_seam, dtype=bool) | anycut)
        i, j = candidate_pairs(b[sub], pad=float(tol_px), touching=True)
        i, j = sub[i], sub[j]
    else:
        i, j = candidate_pairs(b, pad=float(tol_px), touching=True)
    ok = (g[i] != g[j]) & (anycut[i] | anycut[j])
    i, j = i[ok], j[ok]
    bi, bj = b[i], b[j]
    iw = np.minimum(bi[:, 2], bj[:, 2]) - np.maximum(bi[:, 0], bj[:, 0])
    ih = np.minimum(bi[:, 3], bj[:, 3]) - np.maximum(bi[:, 1], bj[:, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    wi, hi_ = bi[:, 2] - bi[:, 0], bi[:, 3] - bi[:, 1]
    wj, hj = bj[:, 2] - bj[:, 0], bj[:, 3] - bj[:, 1]
    ai, aj = wi * hi_, wj * hj
    rects = None if tile_xyxy is None else np.asarray(tile_xyxy, dtype=np.float64).reshape(-1, 4)
    if confirm and rects is not None:
        # A box of any label confirms: the other tile saw an object there.
        sides = cut if confirm_cut is None else np.asarray(confirm_cut, dtype=bool).reshape(n, 4) & anycut[:, None]
        unconfirmed = _unconfirmed(b, g, sides, i, j, rects, past=float(tol_px))
        if confirmers is not None and unconfirmed.any():
            unconfirmed &= ~_confirmed_by(b, g, unconfirmed, confirmers, rects)
    # Labels matter to joins only: a fragment nested in a fuller view of another tile is a view
    # of that product whatever label each tile gave it (a cut product is where a classifier of
    # many classes errs), and the fuller view keeps its own label. Two fragments are joined
    # only when their labels agree (or the merge is class-agnostic).
    same = np.ones(i.size, bool) if class_agnostic else lab[i] == lab[j]
    if i.size == 0:
        return result(~unconfirmed)
    # The scale of two views' disagreement: the root mean square of their extents. Each side
    # errs by about its own box's extent times the detector's noise, so two views of one size
    # (whose disagreement ``agree_frac`` is measured on) disagree by that size times it, and a
    # fragment beside a whole view by about the whole view's share (an outside review: with the
    # smaller extent, a 240 px fragment of a 600 px product had 24 px to agree in, the whole
    # view's own error being 5 % of 600 px, and both were kept: two boxes for one product).
    # Views of two labels keep the smaller extent: a product at the end of a pack boxed as a
    # class of its own agrees with the pack's box within a few pixels on three sides, and is no
    # view of it.
    # At most three times the smaller extent: a fragment no tile saw whole beside a neighbour six
    # times its size was otherwise taken for a truncated view of it at a noisy run's tolerance (a
    # diff review: a 138 px fragment 160 px past a 900 px product's side, at agree_frac 0.25).
    wmin, hmin = np.minimum(wi, wj), np.minimum(hi_, hj)
    wref = np.where(same, np.minimum(np.sqrt(0.5 * (wi * wi + wj * wj)), 3.0 * wmin), wmin)
    href = np.where(same, np.minimum(np.sqrt(0.5 * (hi_ * hi_ + hj * hj)), 3.0 * hmin), hmin)
    # Never more than half the larger box: products smaller than tol_px standing side by side
    # are not views of each other (neighbours 13 px apart agreed within 16 px, were dropped as
    # truncated views of each other or joined across a seam into one long box).
    tx = np.minimum(np.maximum(tol_px, tol_frac * wref), 0.5 * np.maximum(wi, wj))
    ty = np.minimum(np.maximum(tol_px, tol_frac * href), 0.5 * np.maximum(hi_, hj))
    tol = np.stack([tx, ty, tx, ty], axis=1)
    # d > 0: box j reaches further out than box i on that side (left, top, right, bottom).
    d = (bj - bi) * np.array([-1.0, -1.0, 1.0, 1.0])
    ci, cj = cut[i], cut[j]
    within = np.abs(d) <= tol  # the two sides agree
    # i is a truncated view of j: j reaches i everywhere (d >= -tol), agrees where i is not
    # cut, and goes further on a side where i is cut. Symmetrically for j.
    j_reaches = (d >= -tol).all(axis=1)
    i_reaches = (d <= tol).all(axis=1)
    # (a side both views have cut by the same tile edge, where they agree, is no further in
    # either: two tiles sharing that edge (one column of tiles) both cut the product there, and
    # a pixel of noise past it made the lower-scored view the "fuller" one, kept for the better;
    # an outside review. Neither is dropped; the fusion after the repair takes the pair as one
    # product. Cut by two different edges a few pixels apart, the view from the further one saw
    # more, and still drops the other)
    # (of one label, or class-agnostic: views of two labels are neither fused nor suppressed by
    # each other later, and keeping both kept a mislabelled view as a second product)
    if rects is not None and 0 <= int(g.min()) and int(g.max()) < len(rects):  # (group ids are tile indices)
        same_cut = ci & cj & within & (rects[g[i]] == rects[g[j]]) & same[:, None]
    else:
        same_cut = np.zeros_like(ci)
    drop_i = j_reaches & (ci | within).all(axis=1) & (ci & (d > 0) & ~same_cut).any(axis=1)
    drop_j = i_reaches & (cj | within).all(axis=1) & (cj & (d < 0) & ~same_cut).any(axis=1)
    if contain is not None:
        # i inside j (by i's own area), j past one of i's cut sides by more than the
        # tolerance and i past none of j's (j is the fuller view: i saw nothing j missed).
        i_past_j_cut = (cj & (d < -tol)).any(axis=1)
        j_past_i_cut = (ci & (d > tol)).any(axis=1)
        drop_i |= (inter >= contain * ai) & j_past_i_cut & ~i_past_j_cut
        drop_j |= (inter >= contain * aj) & i_past_j_cut & ~j_past_i_cut

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
            # and they share at least half of the narrower one's span along the seam
            & (np.minimum(f[:, 2 + o], gg[:, 2 + o]) - np.maximum(f[:, o], gg[:, o])
               >= 0.5 * np.minimum(f[:, 2 + o] - f[:, o], gg[:, 2 + o] - gg[:, o]))
        )

    rank = _grid_ranks(tile_xyxy, g, safe_overlap, float(tol_px))
    if rank is not None:
        # Fragments are joined across the seam of two neighbouring tiles only (the next tile
        # start along that axis). Tiles i and i+2 of a row can overlap by a few pixels (the last
        # column shifted inward, or an overlap just over a half): two products meeting in that
        # strip look cut by both and, boxes touching, were joined into one; tile i+1 sees both
        # whole there. A product over three tiles still joins, tile by tile.
        def next_to(first: np.ndarray, then: np.ndarray, ax: int) -> np.ndarray:
            return rank[g[then], ax] == rank[g[first], ax] + 1
    else:
        def next_to(first: np.ndarray, then: np.ndarray, ax: int) -> np.ndarray:
            return np.ones(first.size, bool)

    join = same & (
        (meets(bi, bj, ci, cj, 0) & next_to(i, j, 0))
        | (meets(bj, bi, cj, ci, 0) & next_to(j, i, 0))
        | (meets(bi, bj, ci, cj, 1) & next_to(i, j, 1))
        | (meets(bj, bi, cj, ci, 1) & next_to(j, i, 1))
    )
    # A pair that meets is joined, not dropped.
    drop_i &= ~join
    drop_j &= ~join
    # ... unless j is of another class and j's own tile also saw i's object, apart from j: a view
    # there of i's label agreeing with i on every side (within the tolerance) at IoU 0.5 or more,
    # or a fragment joining i across the seam. Then i is an object nested in j's (a product in
    # the box of its pack crossing the seam, the pack a class of its own, whose sides lie within
    # the tolerance of the product's), not j's product cut short: both its views were dropped for
    # the other tile's view of the pack, the product lost (an outside review: 7 of 423 products
    # at tile 512 with 140 pack boxes around them). Only for two classes matched class by class:
    # of one class (a detector boxing shelf sections and products alike), a slice of a section
    # cut by a tile edge looks like the product at its end as much as a product looks like
    # itself, and was kept as a box of its own (a second look: 106 slices more, 88 products
    # fewer lost, over 96 tilings); class-agnostic, the pack and the product suppress each other
    # after the repair anyway.
    other = (lab[i] != lab[j]) & ~np.asarray(class_agnostic, bool)
    if ((drop_i | drop_j) & other).any():
        iou = inter / np.maximum(ai + aj - inter, 1e-12)
        partner = join | ((lab[i] == lab[j]) & within.all(axis=1) & (iou >= 0.5))
        n_groups = int(g.max()) + 1
        keys, counts = np.unique(np.concatenate([i[partner] * n_groups + g[j[partner]],
                                                 j[partner] * n_groups + g[i[partner]]]), return_counts=True)

        def partners(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            """How many views in ``b``'s tile are partners of ``a``."""
            if keys.size == 0:
                return np.zeros(a.size, np.int64)
            key = a * n_groups + g[b]
            at = np.minimum(np.searchsorted(keys, key), keys.size - 1)
            return np.where(keys[at] == key, counts[at], 0)

        # (a pair of two classes is no partner of its own: join needs one class on this path)
        drop_i &= ~other | (partners(i, j) < 1)
        drop_j &= ~other | (partners(j, i) < 1)
    # Drops must not go round in a cycle, which would remove every view of a product (the four
    # views of one product in the corner of four tiles, each cut and within a pixel of the
    # others, dropped one another round the ring; two views that each see past the other's
    # cut are the short cycle). Among the views on cycles a view is dropped only for a larger
    # one (by area, then the lower index); every other drop stands.
    i_smaller = (ai < aj) | ((ai == aj) & (i > j))
    ring = _on_cycles(n, np.concatenate([j[drop_i], i[drop_j]]), np.concatenate([i[drop_i], j[drop_j]]))
    on_ring = ring[i] & ring[j]
    drop_i &= i_smaller | ~on_ring
    drop_j &= ~i_smaller | ~on_ring
    # A box dropped through another pair (a third tile saw it whole, or saw more of it) or
    # unconfirmed takes no part in joins.
    dropped[i[drop_i]] = True
    dropped[j[drop_j]] = True
    dropped &= ~unconfirmed
    gone = dropped | unconfirmed
    join &= ~gone[i] & ~gone[j]
    joined = np.zeros(n, bool)
    joined[i[join]] = True
    joined[j[join]] = True
    if not joined.any():
        return result(~gone)
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
    return result(~gone & ~joined, jb, s[top], lab[top])


def _grid_ranks(tile_xyxy: np.ndarray | None, g: np.ndarray, safe_overlap: float = 0.0,
                moved: float = 0.0) -> np.ndarray | None:
    """(T, 2) each tile's column and row (the rank of its x and y start among the tiles'), when
    the tiles are a grid: every column start with every row start, once, as the engine's tiler
    makes them. None otherwise (a caller's own tile list: staggered rows, two scales), or when a
    group id is no tile index: the neighbour rule of :func:`repair_seams` then does not apply."""
    if tile_xyxy is None or g.size == 0:
        return None
    rects = np.asarray(tile_xyxy, dtype=np.float64).reshape(-1, 4)
    if int(g.min()) < 0 or int(g.max()) >= len(rects):
        return None
    xs, col = np.unique(rects[:, 0], return_inverse=True)
    ys, row = np.unique(rects[:, 1], return_inverse=True)
    cells = row.reshape(-1) * len(xs) + col.reshape(-1)
    if len(rects) != len(xs) * len(ys) or len(np.unique(cells)) != len(rects):
        return None
    cols = _ranks_of_starts(xs, float(np.median(rects[:, 2] - rects[:, 0])), safe_overlap, moved)
    rows = _ranks_of_starts(ys, float(np.median(rects[:, 3] - rects[:, 1])), safe_overlap, moved)
    return np.stack([cols[col.reshape(-1)], rows[row.reshape(-1)]], axis=1)


def _ranks_of_starts(starts: np.ndarray, side: float, safe_overlap: float = 0.0, moved: float = 0.0) -> np.ndarray:
    """The rank along one axis of each of a grid's tile starts (sorted, distinct), tiles ``side``
    long: one more than the start before, except for a start so near the one before (the last
    tile moved inward to end at the image's edge) that the tile two back still overlaps it by
    at least half of what it overlaps the one before, and by ``safe_overlap`` (the overlap at
    which the seam repair tells a cut product from two meeting there,
    :attr:`~densedet_tile.types.MergeSpec.seam_overlap_px`): it shares that one's rank, so
    fragments of the tile two back join its views. (Rows at 0, 307 and 310 of a 694 px image at
    tile 384: a product cut by row 0 whose row-307 view was missed kept its two fragments apart,
    joined to no neighbour: counted twice under NMS (an outside review); without the second
    condition, columns 410 and 635 of tile 256 overlapping by 31 px joined two products meeting
    there (a diff review).) A start at most ``moved`` px past the one before (the seam
    tolerance) shares its rank even where the tile two back overlaps it by a little under
    ``safe_overlap``: the two tiles see the same, to within the tolerance of agreeing sides.
    (Rows at 284, 426 and 429 of tile 192: a product's view from row 429 reached a pixel higher
    than row 426's, which was dropped for it, and the fragment of row 284 found no neighbour to
    join: the product counted twice under NMS (an outside review).)"""
    rank = np.zeros(len(starts), np.int64)
    for k in range(1, len(starts)):  # (a loop over the grid's columns or rows, not its boxes)
        rank[k] = rank[k - 1] + 1
        if k >= 2 and rank[k - 1] == rank[k - 2] + 1:
            before = side - (starts[k - 1] - starts[k - 2])  # overlap of the two before
            two_back = side - (starts[k] - starts[k - 2])  # overlap of the tile two back and this one
            near = starts[k] - starts[k - 1] <= moved
            if before > 0 and two_back >= 0.5 * before and (two_back >= safe_overlap or near):
                rank[k] = rank[k - 1]
    return rank


def _on_cycles(n: int, dropper: np.ndarray, victim: np.ndarray) -> np.ndarray:
    """(n,) bool: the views that may lie on a cycle of drops (edges ``dropper -> victim``), what
    is left after peeling off, again and again, every view that drops none or that none drops
    (no cycle passes through it). Vectorised; a pass per link of the longest chain of drops."""
    alive = np.ones(dropper.size, bool)
    while True:
        core = (np.bincount(victim[alive], minlength=n) > 0) & (np.bincount(dropper[alive], minlength=n) > 0)
        keep = alive & core[dropper] & core[victim]
        if keep.sum() == alive.sum():
            return core
        alive = keep


def _confirmed_by(b: np.ndarray, g: np.ndarray, which: np.ndarray, confirmers: tuple[np.ndarray, np.ndarray],
                  tiles: np.ndarray) -> np.ndarray:
    """The boxes among ``which`` that a confirmer box confirms (the rule of :func:`_unconfirmed`:
    from another tile that holds the box, overlapping it by :data:`CONFIRM_OVERLAP` of the smaller)."""
    cb = np.asarray(confirmers[0], dtype=np.float64).reshape(-1, 4)
    cg = np.asarray(confirmers[1], dtype=np.int64).reshape(-1)
    out = np.zeros(b.shape[0], bool)
    f = np.flatnonzero(which)
    if f.size == 0 or cb.shape[0] == 0:
        return out
    both = np.concatenate([b[f], cb])
    i, j = candidate_pairs(both, touching=False)
    cross = (i < f.size) != (j < f.size)
    i, j = i[cross], j[cross]
    fi = np.where(i < f.size, i, j)  # the cut box's position in f
    ci = np.where(i < f.size, j, i) - f.size
    F = f[fi]
    ok = (cg[ci] != g[F]) & _confirms(b[F], cb[ci], tiles[cg[ci]])
    out[F[ok]] = True
    return out


def _confirms(bf: np.ndarray, bc: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Pair by pair, whether box ``bc`` of the tile with rectangle ``t`` confirms box ``bf``:
    the tile holds ``bf`` whole and the two overlap by :data:`CONFIRM_OVERLAP` of the smaller."""
    iw = np.minimum(bf[:, 2], bc[:, 2]) - np.maximum(bf[:, 0], bc[:, 0])
    ih = np.minimum(bf[:, 3], bc[:, 3]) - np.maximum(bf[:, 1], bc[:, 1])
    inter = np.clip(iw, 0.0, None) * np.clip(ih, 0.0, None)
    holds = (t[:, 0] <= bf[:, 0]) & (t[:, 1] <= bf[:, 1]) & (t[:, 2] >= bf[:, 2]) & (t[:, 3] >= bf[:, 3])
    return holds & (inter >= CONFIRM_OVERLAP * np.minimum(box_area(bf), box_area(bc)))


def _unconfirmed(b: np.ndarray, g: np.ndarray, sides: np.ndarray, i: np.ndarray, j: np.ndarray,
                 tiles: np.ndarray, *, past: float) -> np.ndarray:
    """Cut boxes lying wholly inside another tile that also sees ``past`` px beyond their own
    tile's edge on every cut side, when no box of the tiles holding them overlaps them.

    ``sides`` (N, 4) bool: the cut sides judged (left, top, right, bottom). ``(i, j)``:
    overlapping pairs of boxes of different tiles (every such pair involving a cut box). A box
    confirms a cut box as :func:`_confirms` says. A tile that ends at the same edge (the next
    tile of one column or row, or a last row placed flush with the image's border a few pixels
    from the one before) sees the product cut where the box's own tile does: its silence is a
    miss like any other, not a sign that nothing stands beyond the cut (an outside review: a
    product 1000 px wide was served as its right half when the tile above its left part missed it).
    """
    n = b.shape[0]
    cf = np.flatnonzero(sides.any(axis=1))
    seen = np.zeros(n, bool)
    if cf.size == 0 or tiles.shape[0] < 2:
        return seen
    # Each cut box pushed out past its own tile's edge on its cut sides: a tile holding that
    # holds the box and saw beyond where the box's tile cut it (its own tile never counts: at
    # past 0, a seam tolerance of 0, it holds the pushed box itself).
    own = tiles[g[cf]]
    sd = sides[cf]
    e = b[cf].copy()
    e[:, :2] = np.where(sd[:, :2], np.minimum(e[:, :2], own[:, :2]) - past, e[:, :2])
    e[:, 2:] = np.where(sd[:, 2:], np.maximum(e[:, 2:], own[:, 2:]) + past, e[:, 2:])
    own_holds = (own[:, 0] <= e[:, 0]) & (own[:, 1] <= e[:, 1]) & (own[:, 2] >= e[:, 2]) & (own[:, 3] >= e[:, 3])
    seen[cf] = count_containing(tiles, e) - own_holds >= 1
    if not seen.any():
        return seen
    # Confirmations: an overlapping box from a tile that contains the cut box (any such tile,
    # one that shares the cut edge included: it saw an object there).
    si, sj = seen[i], seen[j]
    F = np.concatenate([i[si], j[sj]])
    G = np.concatenate([j[si], i[sj]])
    seen[F[_confirms(b[F], b[G], tiles[g[G]])]] = False
    return seen
