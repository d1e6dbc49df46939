"""``merge_tiles``: per-tile detections in, one global set of boxes out."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..types import Detections, MergeSpec, Tile
from .boxes import TooManyPairs, candidate_pairs, count_containing, pair_iou
from .nms import nms
from .seams import (
    AGREE_MULT,
    EDGE_FRAC_MAX,
    SeamTolerances,
    measure_view_noise,
    repair_seams,
    seam_tolerances,
)
from .wbf import best_match_pairs, weighted_box_fusion

__all__ = ["merge_tiles", "merge_tolerances", "suppress_piles", "to_global", "warn_piles"]

log = logging.getLogger(__name__)

#: A tile's boxes are a pile when more pairs of them (of one label) than boxes are near-copies,
#: overlapping at IoU above this (no NMS of 0.8 or below leaves such a pair: a detector with its
#: own NMS never has one), or when the spatial index holds more than :data:`_PILE_PAIRS_MAX`
#: candidates (too many to look at: no NMS leaves that). :func:`copies_kept` thins at it.
NEAR_COPY_IOU = 0.8
_PILE_PAIRS_MAX = 8_000_000
#: The unconfirmed rule (``MergeSpec.confirm``) takes a side flagged by the fixed ``edge_tol``
#: band for cut only when it also lies within this fraction of the box's extent of the edge.
CONFIRM_BAND_FRAC = 0.15
# (the relative band of cut sides, at most EDGE_FRAC_MAX of a box's extent, lies inside it: only
# sides flagged by the fixed pixel band are judged again)
assert EDGE_FRAC_MAX <= CONFIRM_BAND_FRAC


def _tile_geo(tiles: Sequence[Tile]) -> np.ndarray:
    """float64 (T, 8): each tile as (x, y, w, h, interior left, top, right, bottom)."""
    bad = next((k for k, t in enumerate(tiles) if not isinstance(t, Tile)), None)
    if bad is not None:
        raise InvalidInputError(f"merge: tiles[{bad}] is a {type(tiles[bad]).__name__}, not a Tile")
    return np.array([(t.x, t.y, t.w, t.h, *t.interior) for t in tiles], dtype=np.float64).reshape(-1, 8)


def _gather(
    tiles: Sequence[Tile], dets: Sequence[Detections], tgeo: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tile-local boxes clipped to their tiles (boxes with no area left dropped).

    Returns ``local`` float64 (N, 4), ``scores``, ``labels``, ``groups`` (tile positions) and
    ``geo`` float64 (N, 8): the box's tile as (x, y, w, h, interior left, top, right, bottom).
    """
    if len(tiles) != len(dets):
        raise InvalidInputError(f"merge: {len(tiles)} tiles but {len(dets)} detection sets")
    bad = next((k for k, d in enumerate(dets) if not isinstance(d, Detections)), None)
    if bad is not None:
        raise InvalidInputError(f"merge: detections[{bad}] is a {type(dets[bad]).__name__}, not a Detections")
    counts = np.array([len(d) for d in dets], dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        z = np.zeros(0, np.int64)
        return np.zeros((0, 4)), np.zeros(0), z, z, np.zeros((0, 8))
    local = np.concatenate([d.xyxy for d in dets]).astype(np.float64)
    scores = np.concatenate([d.scores for d in dets]).astype(np.float64)
    labels = np.concatenate([d.labels for d in dets]).astype(np.int64)
    groups = np.repeat(np.arange(len(tiles), dtype=np.int64), counts)
    geo = (_tile_geo(tiles) if tgeo is None else tgeo)[groups]
    w, h = geo[:, 2], geo[:, 3]
    np.clip(local[:, 0], 0.0, w, out=local[:, 0])
    np.clip(local[:, 2], 0.0, w, out=local[:, 2])
    np.clip(local[:, 1], 0.0, h, out=local[:, 1])
    np.clip(local[:, 3], 0.0, h, out=local[:, 3])
    inside = (local[:, 2] > local[:, 0]) & (local[:, 3] > local[:, 1])
    if not inside.all():
        local, scores, labels, groups, geo = local[inside], scores[inside], labels[inside], groups[inside], geo[inside]
    return local, scores, labels, groups, geo


def _edge_gap(local: np.ndarray, geo: np.ndarray) -> np.ndarray:
    """Distance (px) of each box side to its tile's edge on that side; inf where that edge is
    not interior (the image border cuts nothing). (N, 4) in (left, top, right, bottom) order."""
    gap = np.stack(
        [local[:, 0], local[:, 1], geo[:, 2] - local[:, 2], geo[:, 3] - local[:, 3]], axis=1
    )
    return np.where(geo[:, 4:8] > 0, gap, np.inf)


def _rel_gap(local: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """``gap`` relative to the box's extent (width for x sides, height for y sides)."""
    w = local[:, 2] - local[:, 0]
    h = local[:, 3] - local[:, 1]
    return gap / np.stack([w, h, w, h], axis=1)  # boxes kept by _gather have w, h > 0


def _side_overlaps(tgeo: np.ndarray) -> np.ndarray:
    """float64 (T, 4): how far each tile's (left, top, right, bottom) side reaches into the
    tile next to it: the overlap there (0 where no tile starts or ends inside it). Taken from
    the starts and ends of all tiles, which a grid shares by column and row."""
    out = np.zeros((tgeo.shape[0], 4))
    for ax in (0, 1):
        lo, hi = tgeo[:, ax], tgeo[:, ax] + tgeo[:, 2 + ax]
        starts, ends = np.unique(lo), np.unique(hi)
        k = np.searchsorted(starts, lo, side="right")  # the first start after this tile's
        nxt = np.where(k < starts.size, starts[np.minimum(k, starts.size - 1)], np.inf)
        out[:, 2 + ax] = np.where(nxt < hi, hi - nxt, 0.0)
        k = np.searchsorted(ends, hi, side="left") - 1  # the last end before this tile's
        prv = np.where(k >= 0, ends[np.maximum(k, 0)], -np.inf)
        out[:, ax] = np.where(prv > lo, prv - lo, 0.0)
    return out


def _cut_flags(gap: np.ndarray, rel: np.ndarray | None, edge_tol: float, edge_frac: float) -> np.ndarray:
    """Sides within ``max(edge_tol, edge_frac * extent)`` px of an interior tile edge."""
    if edge_frac <= 0 or rel is None:
        return gap <= edge_tol
    return (gap <= edge_tol) | (rel <= edge_frac)


def to_global(
    tiles: Sequence[Tile], dets: Sequence[Detections], *, edge_tol: float = 0.0, edge_frac: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shift tile-local boxes to the global frame and flag the sides cut by interior edges.

    Boxes are first clipped to their tile (a detector sees nothing beyond it); a box with no
    area left inside its tile is dropped. Returns
    ``xyxy`` float64 (N, 4) global pixels, ``scores`` float64 (N,), ``labels`` int64 (N,),
    ``groups`` int64 (N,) (position of the box's tile in ``tiles``) and ``cut`` bool (N, 4):
    the box's (left, top, right, bottom) side lies within ``max(edge_tol, edge_frac * extent)``
    pixels of an interior edge of its tile (extent: the box's width for x sides, height for
    y sides).
    """
    tiles, dets = list(tiles), list(dets)
    local, scores, labels, groups, geo = _gather(tiles, dets)
    if local.shape[0] == 0:
        return local, scores, labels, groups, np.zeros((0, 4), bool)
    gap = _edge_gap(local, geo)
    cut = _cut_flags(gap, _rel_gap(local, gap) if edge_frac > 0 else None, edge_tol, edge_frac)
    xyxy = local + geo[:, [0, 1, 0, 1]]
    return xyxy, scores, labels, groups, cut


def merge_tiles(tiles: Sequence[Tile], dets: Sequence[Detections], spec: MergeSpec = MergeSpec(),
                confirmers: Sequence[Detections] | None = None, *, thinned: bool = False) -> Detections:
    """Merge per-tile detections into one set of boxes in the global (image) frame.

    ``tiles[k]`` is the window that produced ``dets[k]`` (tile-local pixel boxes, as a
    detector returns them). Steps, by ``spec.mode``:

    * ``"none"``: clip to the tile (dropping boxes with nothing left), shift to global, concatenate.
    * ``"nms"``: seam repair (:func:`~densedet_tile.merge.seams.repair_seams`), then global NMS
      at ``spec.nms_iou`` between boxes of different tiles (the detector's own NMS already
      settled boxes within one tile).
    * ``"wbf"``: seam repair, weighted fusion of cross-tile duplicates at ``spec.fuse_iou``
      (boxes of one tile are never fused together; a box seen by one tile keeps its score),
      then global NMS.

    Seam repair's tolerances follow the boxes' size and, with ``spec.adaptive_tol``, the
    detector's own view-to-view disagreement measured in this run (see
    :func:`merge_tolerances`). NMS and fusion are per label unless ``spec.class_agnostic``.
    ``confirmers`` (one per tile, tile-local, optional): boxes that are not to be served (a
    tile's boxes just below the score threshold) but show that a tile saw an object, so a cut
    view there is not "unconfirmed" (``spec.confirm``): without them, a product seen cut at
    0.8 by one tile and whole at 0.45 by the other vanished at a threshold of 0.5.

    Piles of near-copies in a tile are thinned first (:func:`suppress_piles`), unless
    ``thinned`` says the caller did so on all the boxes the detector returned (of which
    ``dets`` and ``confirmers`` are then subsets: a subset of a thinned tile holds no pile).

    Returns global-pixel :class:`Detections` (float32), boxes by descending score except in
    mode ``"none"`` (tile order).
    """
    if not isinstance(spec, MergeSpec):
        raise InvalidInputError(f"merge: spec must be a MergeSpec, got {type(spec).__name__}")
    tiles, dets = list(tiles), list(dets)  # any iterable, generators included
    if spec.mode != "none" and not thinned:
        dets, piled = suppress_piles(dets, spec)
        warn_piles(piled, len(tiles), spec)
    tgeo = _tile_geo(tiles)
    local, scores, labels, groups, geo = _gather(tiles, dets, tgeo)
    xyxy = local + geo[:, [0, 1, 0, 1]]
    if spec.mode == "none" or xyxy.shape[0] == 0:
        return Detections(xyxy.astype(np.float32), scores.astype(np.float32), labels)
    cut, i, j, tol, gap = _seam_setup(tgeo, local, xyxy, labels, groups, geo, spec)
    matching = spec.mode == "wbf" and spec.match_iou is not None and spec.match_iou < spec.fuse_iou
    below = None  # the boxes under the threshold: (xyxy, labels, groups)
    if confirmers is not None and (spec.confirm or matching):
        # (a pile among them is thinned as quietly: they only confirm)
        conf = list(confirmers) if thinned else suppress_piles(list(confirmers), spec)[0]
        c_local, _, c_labels, c_groups, c_geo = _gather(tiles, conf, tgeo)
        below = (c_local + c_geo[:, [0, 1, 0, 1]], c_labels, c_groups)
    extra = (below[0], below[2]) if below is not None and spec.confirm else None
    best = _best_matches(xyxy, labels, groups, below, spec) if matching else None
    rep = repair_seams(
        xyxy,
        scores,
        labels,
        groups,
        cut,
        tol_px=spec.seam_tol,
        tol_frac=tol.agree_frac,
        class_agnostic=spec.class_agnostic,
        contain=spec.contain,
        tile_xyxy=_tile_rects(tgeo),
        confirm=spec.confirm,
        confirm_cut=_firm_cuts(cut, local, gap),
        pairs=(i, j),
        confirmers=extra,
        safe_overlap=spec.seam_overlap_px,
    )
    nj = rep.joined_xyxy.shape[0]
    xyxy = np.concatenate([xyxy[rep.keep], rep.joined_xyxy])
    scores = np.concatenate([scores[rep.keep], rep.joined_scores])
    labels = np.concatenate([labels[rep.keep], rep.joined_labels])
    # Each joined box is its own group: it may fuse with any other view of its product.
    groups = np.concatenate([groups[rep.keep], len(tiles) + np.arange(nj, dtype=np.int64)])
    nms_labels = None if spec.class_agnostic else labels
    if spec.mode == "wbf":
        match = np.zeros_like(labels) if spec.class_agnostic else labels
        also = None
        if best is not None:
            # ... between views that the repair kept as they were (a joined box is new: its
            # fragments' matches are not its own)
            at = np.cumsum(rep.keep) - 1
            both = rep.keep[best[0]] & rep.keep[best[1]]
            also = (at[best[0][both]], at[best[1][both]])
        fused = weighted_box_fusion(xyxy, scores, groups=groups, iou_thr=spec.fuse_iou, labels=match, also=also)
        if spec.class_agnostic:  # the fused box takes its anchor's (best member's) label
            labels = labels[fused.anchor_ids]
        else:
            labels = fused.labels
        xyxy, scores = fused.xyxy, fused.scores
        groups = groups[fused.anchor_ids]  # a fused box stands for its best member's tile
        nms_labels = None if spec.class_agnostic else labels
    # Ties in score are broken by position, not by the order the tiles came in (NMS keeps the
    # first of two tied boxes: a shuffled tile list gave other boxes with quantised scores;
    # an outside review)
    canon = _position_order(xyxy, scores, labels)
    xyxy, scores, labels, groups = xyxy[canon], scores[canon], labels[canon], groups[canon]
    nms_labels = None if nms_labels is None else nms_labels[canon]
    # Boxes from one tile never suppress each other here: that tile's detector already ran its
    # own NMS, with its own threshold, and kept them side by side on purpose.
    keep = nms(xyxy, scores, spec.nms_iou, labels=nms_labels, groups=groups)
    return Detections(xyxy[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep])


def suppress_piles(dets: Sequence[Detections], spec: MergeSpec = MergeSpec()) -> tuple[list[Detections], int]:
    """Each tile's detections (tile-local, as ``dets`` holds them), with a pile of near-copies
    thinned by the NMS its detector lacked; and how many tiles had one.

    The merge takes a tile's boxes as its detector's own NMS left them. A detector without one
    returns tens of boxes per product, and the seam repair and the fusion, which pair every box
    with those near it, grow with the square of such a pile (8 000 boxes over one product: 35 s
    and 3.8 GB). A tile is a pile when more of its pairs of one label (whatever
    ``spec.class_agnostic``) than boxes overlap at IoU above :data:`NEAR_COPY_IOU` (10 copies of
    each product are one, and so are 4 copies of a single one), or when its spatial index holds
    more than :data:`_PILE_PAIRS_MAX` candidate pairs; its boxes then go through NMS at
    ``spec.nms_iou`` (by label unless class-agnostic; by blocks through a pile). A box kept
    keeps its place in the tile's order. Run on all
    the boxes a detector returned, the result at any score threshold is the one it would give
    on the boxes above that threshold (a box is only ever suppressed by a higher-scored one).
    """
    out = list(dets)
    # (other values and non-finite boxes are refused where the boxes are gathered, in one line;
    # 3 boxes have 3 pairs: never more than boxes)
    ks = [k for k, d in enumerate(out) if isinstance(d, Detections) and len(d) >= 4 and np.isfinite(d.xyxy).all()]
    piled = 0
    for k in _pile_tiles([out[k] for k in ks], ks):
        d = out[k]
        piled += 1
        keep = nms(d.xyxy, d.scores, spec.nms_iou, labels=None if spec.class_agnostic else d.labels)
        out[k] = d[np.sort(keep)]
    return out, piled


def pile_kept(xyxy: np.ndarray, scores: np.ndarray | None, spec: MergeSpec = MergeSpec(),
              labels: Sequence[object] | np.ndarray | None = None) -> np.ndarray | None:
    """One set of boxes (``xyxy`` (N, 4) finite pixels, ``scores`` (N,) or None for equal ones,
    ``labels`` (N,) any class keys or None for one class) checked as :func:`suppress_piles`
    checks a tile's: the indices, in order, of the boxes NMS at ``spec.nms_iou`` keeps (class by
    class) where they are a pile of near-copies of one class, None where they are not (or are
    fewer than 4). For boxes that come from elsewhere than a tile (another tool's file): what
    pairs boxes with their neighbours grows with the square of a pile."""
    a = np.asarray(xyxy, np.float64).reshape(-1, 4)
    n = len(a)
    if n < 4 or not np.isfinite(a).all():
        return None
    lab = _class_numbers(labels, n)
    d = Detections(a.astype(np.float32), np.zeros(n, np.float32), lab)
    if not _pile_tiles([d], [0]):
        return None
    s = np.ones(n) if scores is None else np.nan_to_num(np.asarray(scores, np.float64).reshape(-1), nan=0.0)
    return _nms_by_position(a, s, spec.nms_iou, lab)


def _nms_by_position(a: np.ndarray, s: np.ndarray, iou: float, lab: np.ndarray) -> np.ndarray:
    """The indices, in order, of the boxes NMS keeps, boxes tied in score taken by position (a
    box's coordinates, then its class), not by their order in the file: two files of the same
    boxes in other orders kept other copies of tied ones (an outside review: gap ends moved)."""
    canon = _position_order(a, s, lab)
    return np.sort(canon[nms(a[canon], s[canon], iou, labels=lab[canon])])


def _position_order(xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Indices ordering boxes by descending score, ties by position (x1, y1, x2, y2), then class."""
    return np.lexsort((labels, xyxy[:, 3], xyxy[:, 2], xyxy[:, 1], xyxy[:, 0], -scores))


def _class_numbers(labels: Sequence[object] | np.ndarray | None, n: int) -> np.ndarray:
    """int64 (n,) one number per distinct class key of ``labels`` (any hashable keys, mixed
    types, None included), in order of first appearance; zeros for None."""
    if labels is None:
        return np.zeros(n, np.int64)
    keys = np.asarray(labels, dtype=object).reshape(-1).tolist()
    if len(keys) != n:
        raise InvalidInputError(f"{n} boxes but {len(keys)} labels")
    ids: dict[object, int] = {}
    nan = object()  # (NaN equals nothing, itself included: every NaN is one class)
    return np.array([ids.setdefault(nan if isinstance(k, float) and k != k else k, len(ids)) for k in keys], np.int64)


def copies_kept(xyxy: np.ndarray, scores: np.ndarray | None, labels: np.ndarray | None = None) -> np.ndarray | None:
    """One set of boxes (``xyxy`` (N, 4) finite pixels, ``scores`` (N,) or None for equal ones,
    ``labels`` (N,) any class keys, or None for one class) that is no pile (:func:`pile_kept`)
    but holds near-copies: pairs of one class overlapping at IoU above :data:`NEAR_COPY_IOU`, which
    no NMS of 0.8 or below leaves (two runs' boxes joined in one file, or a detector without NMS
    over few boxes; one object given several classes is a detector's NMS class by class, and
    stays). The indices, in order, of the boxes NMS at that IoU keeps within each class, or None
    where there are no such pairs: each copy would count as a product."""
    a = np.asarray(xyxy, np.float64).reshape(-1, 4)
    if len(a) < 2 or not np.isfinite(a).all():
        return None
    lab = _class_numbers(labels, len(a))
    i, j = candidate_pairs(a)
    same = lab[i] == lab[j]
    if not (pair_iou(a, i[same], j[same]) > NEAR_COPY_IOU).any():
        return None
    s = np.ones(len(a)) if scores is None else np.nan_to_num(np.asarray(scores, np.float64).reshape(-1), nan=0.0)
    return _nms_by_position(a, s, NEAR_COPY_IOU, lab)


def _pile_tiles(dets: Sequence[Detections], keys: Sequence[int]) -> list[int]:
    """The keys of the tiles (``dets[t]`` is tile ``keys[t]``) whose boxes are a pile: more pairs
    of one label (a detector with NMS per class returns one object as several classes at one
    box, which is no pile) overlapping at IoU above :data:`NEAR_COPY_IOU` than boxes, or more index
    candidates than :data:`_PILE_PAIRS_MAX`. All tiles are searched at once, each tile's boxes
    moved apart from the others' (a panorama of thousands of small tiles: one pass, not one
    per tile); tile by tile when that search holds too many candidates."""
    if not dets:
        return []
    sizes = np.array([len(d) for d in dets])
    xyxy = np.concatenate([d.xyxy for d in dets]).astype(np.float64)
    labels = np.concatenate([d.labels for d in dets])
    tile = np.repeat(np.arange(len(dets)), sizes)
    span = float(xyxy[:, [0, 2]].max() - xyxy[:, [0, 2]].min()) + 1.0
    apart = xyxy.copy()
    apart[:, [0, 2]] += (2.0 * span * tile)[:, None]  # a gap of one span between two tiles' boxes
    try:
        i, j = candidate_pairs(apart, limit=_PILE_PAIRS_MAX)
    except TooManyPairs:
        return [k for d, k in zip(dets, keys) if _pile_tiles([d], [k])] if len(dets) > 1 else list(keys)
    same = labels[i] == labels[j]
    i, j = i[same], j[same]
    near = np.bincount(tile[i[pair_iou(xyxy, i, j) > NEAR_COPY_IOU]], minlength=len(dets))
    return [keys[t] for t in np.flatnonzero(near > sizes)]


def warn_piles(piled: int, n_tiles: int, spec: MergeSpec) -> None:
    """The warning for ``piled`` tiles thinned by :func:`suppress_piles` (none: nothing)."""
    if piled:
        log.warning("%d of %d tiles returned piles of near-copies of boxes (a detector without NMS of its own?): "
                    "each such tile's boxes were suppressed at IoU %g before the merge", piled, n_tiles, spec.nms_iou)


def merge_tolerances(tiles: Sequence[Tile], dets: Sequence[Detections], spec: MergeSpec = MergeSpec()) -> SeamTolerances:
    """The seam tolerances :func:`merge_tiles` uses for these detections (for reports and tests).

    With ``spec.adaptive_tol`` the detector's view-to-view disagreement is measured on the
    pairs of whole views of one product seen by two overlapping tiles
    (:func:`~densedet_tile.merge.seams.measure_view_noise`) and shrunk towards the prior
    ``spec.seam_tol_frac / AGREE_MULT`` with the weight of ``spec.noise_prior_pairs`` pairs;
    without, the prior is used as is and the edge tolerance is ``spec.edge_tol`` pixels only.
    """
    tiles, dets = list(tiles), suppress_piles(list(dets), spec)[0]
    tgeo = _tile_geo(tiles)
    local, scores, labels, groups, geo = _gather(tiles, dets, tgeo)
    xyxy = local + geo[:, [0, 1, 0, 1]]
    return _seam_setup(tgeo, local, xyxy, labels, groups, geo, spec)[3]


def _best_matches(xyxy: np.ndarray, labels: np.ndarray, groups: np.ndarray,
                  below: tuple[np.ndarray, np.ndarray, np.ndarray] | None, spec: MergeSpec
                  ) -> tuple[np.ndarray, np.ndarray]:
    """The pairs of boxes (indices into ``xyxy``) of two tiles that are each other's best match
    from ``spec.match_iou`` up (:func:`~densedet_tile.merge.wbf.best_match_pairs`), judged among
    every view the tiles reported, before the seam repair drops or joins any, the ones under the
    threshold (``below``: boxes, labels, tiles) included: a cut view scored low or dropped in
    favour of a fuller one still says that the fuller one is its product's, not a neighbour's.
    Two products overlapping on a seam, each seen whole by one tile and cut by the other, were
    fused when those views were left out (second and third looks at the rule)."""
    n = xyxy.shape[0]
    b, lab, g = xyxy, labels, groups
    if below is not None and below[0].shape[0]:
        b = np.concatenate([xyxy, below[0]])
        lab = np.concatenate([labels, below[1]])
        g = np.concatenate([groups, below[2]])
    bi, bj = best_match_pairs(b, g, spec.match_iou, labels=None if spec.class_agnostic else lab)
    own = (bi < n) & (bj < n)
    return bi[own], bj[own]


def _seam_setup(
    tgeo: np.ndarray,
    local: np.ndarray,
    xyxy: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    geo: np.ndarray,
    spec: MergeSpec,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, SeamTolerances, np.ndarray]:
    """Cut flags, the candidate pairs of seam repair, the run's tolerances and each side's
    distance to its tile's interior edge (px, inf at the image border).

    One pair search serves both the noise measurement and the repair: it covers every box
    near an interior tile edge line and every box lying in two tiles (where two whole views
    of one product, and the boxes that may confirm a cut view, are).
    """
    prior = spec.seam_tol_frac / AGREE_MULT
    gap = _edge_gap(local, geo)
    rel = _rel_gap(local, gap) if spec.adaptive_tol else None
    if rel is not None and local.shape[0]:
        # the band that grows with a box's size stays under half the overlap on that side (less
        # the tolerance of agreeing sides): two products meeting inside the overlap must not
        # both look cut (big neighbours were joined into one box at overlaps the warning and
        # tile="auto" take as safe, seam_overlap_px); the fixed edge_tol band is never narrowed
        cap = np.maximum(spec.edge_tol, (_side_overlaps(tgeo)[groups] - spec.seam_tol - 1) / 2)
        rel = np.where(gap <= cap, rel, np.inf)
    n = xyxy.shape[0]
    fixed = seam_tolerances(float("nan"), 0, prior=prior, prior_pairs=1.0)
    if not spec.adaptive_tol:
        fixed = replace(fixed, edge_frac=0.0, agree_frac=spec.seam_tol_frac)
    # Who can pair with a cut box f of tile A? A box g of another tile B within seam_tol of f
    # either lies in A and B both, or crosses (or nearly reaches) an edge of A that lies
    # inside B -- an interior edge line. So: the cut boxes (by the widest edge tolerance the
    # run may use), those near an interior edge line, and the boxes in two tiles (where whole
    # views of one product are, and the boxes that may confirm a cut view; not needed for the
    # drop and join rules, whose partners reach the cut box's edge line).
    widest = EDGE_FRAC_MAX if spec.adaptive_tol else 0.0
    sub = _cut_flags(gap, rel, spec.edge_tol, widest).any(axis=1)
    sub |= _near_lines(tgeo, xyxy, spec.seam_tol + spec.edge_tol)
    if spec.adaptive_tol or spec.confirm:
        rest = np.flatnonzero(~sub)
        sub[rest] = count_containing(_tile_rects(tgeo), xyxy[rest]) >= 2
    idx = np.flatnonzero(sub)
    if idx.size < 2:
        i = j = np.zeros(0, np.int64)
    else:
        i, j = candidate_pairs(xyxy[idx], pad=float(spec.seam_tol), touching=True)
        i, j = idx[i], idx[j]
        ok = groups[i] != groups[j]  # labels are left to the repair (any label confirms)
        i, j = i[ok], j[ok]
    if not spec.adaptive_tol or n < 2:
        tol = fixed
    else:
        # Whole views by the prior edge tolerance (a truncated view is no sample of the noise).
        cut0 = _cut_flags(gap, rel, spec.edge_tol, fixed.edge_frac)
        q, npairs = measure_view_noise(xyxy, groups, cut0, i, j, labels=None if spec.class_agnostic else labels)
        tol = seam_tolerances(q, npairs, prior=prior, prior_pairs=spec.noise_prior_pairs)
    cut = _cut_flags(gap, rel, spec.edge_tol, tol.edge_frac)
    return cut, i, j, tol, gap


def _firm_cuts(cut: np.ndarray, local: np.ndarray, gap: np.ndarray) -> np.ndarray:
    """The cut flags the unconfirmed rule judges by: a side flagged only by the fixed pixel
    band must also lie within :data:`CONFIRM_BAND_FRAC` of the box's own extent of the edge (a
    product 12 px wide standing 10 px from the edge was seen whole; a view the other tile did
    not report is then an ordinary miss of that tile, not a border artefact)."""
    w = local[:, 2] - local[:, 0]
    h = local[:, 3] - local[:, 1]
    return cut & (gap <= CONFIRM_BAND_FRAC * np.stack([w, h, w, h], axis=1))


def _tile_rects(tgeo: np.ndarray) -> np.ndarray:
    """xyxy (T, 4) of the tiles of :func:`_tile_geo`."""
    return np.concatenate([tgeo[:, :2], tgeo[:, :2] + tgeo[:, 2:4]], axis=1)


def _near_lines(tgeo: np.ndarray, xyxy: np.ndarray, margin: float) -> np.ndarray:
    """Boxes whose x or y range comes within ``margin`` px of any interior tile edge line of
    the tile array of :func:`_tile_geo`.

    Lines are taken over the whole image (a superset of each tile's own edges), so every box
    that seam repair could touch is included: a truncated view lies on its tile's interior
    edge, and a view that replaces or joins it reaches that edge too.
    """
    x, y, x2, y2 = tgeo[:, 0], tgeo[:, 1], tgeo[:, 0] + tgeo[:, 2], tgeo[:, 1] + tgeo[:, 3]
    inner = tgeo[:, 4:8] > 0
    vx = np.unique(np.concatenate([x[inner[:, 0]], x2[inner[:, 2]]]))
    vy = np.unique(np.concatenate([y[inner[:, 1]], y2[inner[:, 3]]]))
    tol = margin + 1.0  # the box side itself may also be cut within the tolerance
    near = np.zeros(xyxy.shape[0], bool)
    for lines, c1, c2 in ((vx, 0, 2), (vy, 1, 3)):
        if lines.size:
            lo = np.searchsorted(lines, xyxy[:, c1] - tol, side="left")
            hi = np.searchsorted(lines, xyxy[:, c2] + tol, side="right")
            near |= hi > lo
    return near
