"""``merge_tiles``: per-tile detections in, one global set of boxes out."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..types import Detections, MergeSpec, Tile
from .nms import nms
from .seams import repair_seams
from .wbf import weighted_box_fusion

__all__ = ["merge_tiles", "to_global"]


def to_global(
    tiles: Sequence[Tile], dets: Sequence[Detections], *, edge_tol: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Shift tile-local boxes to the global frame and flag the sides cut by interior edges.

    Boxes are first clipped to their tile (a detector sees nothing beyond it); a box with no
    area left inside its tile is dropped. Returns
    ``xyxy`` float64 (N, 4) global pixels, ``scores`` float64 (N,), ``labels`` int64 (N,),
    ``groups`` int64 (N,) (position of the box's tile in ``tiles``) and ``cut`` bool (N, 4):
    the box's (left, top, right, bottom) side lies within ``edge_tol`` pixels of an interior
    edge of its tile.
    """
    if len(tiles) != len(dets):
        raise InvalidInputError(f"merge: {len(tiles)} tiles but {len(dets)} detection sets")
    counts = np.array([len(d) for d in dets], dtype=np.int64)
    n = int(counts.sum())
    if n == 0:
        z = np.zeros(0, np.int64)
        return np.zeros((0, 4)), np.zeros(0), z, z, np.zeros((0, 4), bool)
    for k, d in enumerate(dets):
        if not isinstance(d, Detections):
            raise InvalidInputError(f"merge: detections of tile {k} are a {type(d).__name__}, not Detections")
    local = np.concatenate([d.xyxy for d in dets]).astype(np.float64)
    scores = np.concatenate([d.scores for d in dets]).astype(np.float64)
    labels = np.concatenate([d.labels for d in dets]).astype(np.int64)
    groups = np.repeat(np.arange(len(tiles), dtype=np.int64), counts)
    geo = np.array(
        [(t.x, t.y, t.w, t.h, *t.interior) for t in tiles], dtype=np.float64
    ).reshape(-1, 8)[groups]
    w, h = geo[:, 2], geo[:, 3]
    np.clip(local[:, 0], 0.0, w, out=local[:, 0])
    np.clip(local[:, 2], 0.0, w, out=local[:, 2])
    np.clip(local[:, 1], 0.0, h, out=local[:, 1])
    np.clip(local[:, 3], 0.0, h, out=local[:, 3])
    inside = (local[:, 2] > local[:, 0]) & (local[:, 3] > local[:, 1])
    if not inside.all():
        local, scores, labels, groups, geo = local[inside], scores[inside], labels[inside], groups[inside], geo[inside]
        w, h, n = geo[:, 2], geo[:, 3], int(inside.sum())
    cut = np.empty((n, 4), bool)
    cut[:, 0] = (geo[:, 4] > 0) & (local[:, 0] <= edge_tol)
    cut[:, 1] = (geo[:, 5] > 0) & (local[:, 1] <= edge_tol)
    cut[:, 2] = (geo[:, 6] > 0) & (local[:, 2] >= w - edge_tol)
    cut[:, 3] = (geo[:, 7] > 0) & (local[:, 3] >= h - edge_tol)
    xyxy = local + geo[:, [0, 1, 0, 1]]
    return xyxy, scores, labels, groups, cut


def merge_tiles(tiles: Sequence[Tile], dets: Sequence[Detections], spec: MergeSpec = MergeSpec()) -> Detections:
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

    NMS and fusion are per label unless ``spec.class_agnostic``. Returns global-pixel
    :class:`Detections` (float32), boxes by descending score except in mode ``"none"``
    (tile order).
    """
    if not isinstance(spec, MergeSpec):
        raise InvalidInputError(f"merge: spec must be a MergeSpec, got {type(spec).__name__}")
    xyxy, scores, labels, groups, cut = to_global(tiles, dets, edge_tol=spec.edge_tol)
    if spec.mode == "none" or xyxy.shape[0] == 0:
        return Detections(xyxy.astype(np.float32), scores.astype(np.float32), labels)
    rep = repair_seams(
        xyxy,
        scores,
        labels,
        groups,
        cut,
        tol_px=spec.seam_tol,
        tol_frac=spec.seam_tol_frac,
        class_agnostic=spec.class_agnostic,
        near_seam=_near_seam(tiles, xyxy, spec.seam_tol + spec.edge_tol),
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
        fused = weighted_box_fusion(xyxy, scores, groups=groups, iou_thr=spec.fuse_iou, labels=match)
        if spec.class_agnostic:  # the fused box takes its anchor's (best member's) label
            labels = labels[fused.anchor_ids]
        else:
            labels = fused.labels
        xyxy, scores = fused.xyxy, fused.scores
        groups = groups[fused.anchor_ids]  # a fused box stands for its best member's tile
        nms_labels = None if spec.class_agnostic else labels
    # Boxes from one tile never suppress each other here: that tile's detector already ran its
    # own NMS, with its own threshold, and kept them side by side on purpose.
    keep = nms(xyxy, scores, spec.nms_iou, labels=nms_labels, groups=groups)
    return Detections(xyxy[keep].astype(np.float32), scores[keep].astype(np.float32), labels[keep])


def _near_seam(tiles: Sequence[Tile], xyxy: np.ndarray, margin: float) -> np.ndarray:
    """Boxes whose x or y range comes within ``margin`` px of any interior tile edge line.

    Lines are taken over the whole image (a superset of each tile's own edges), so every box
    that seam repair could touch is included: a truncated view lies on its tile's interior
    edge, and a view that replaces or joins it reaches that edge too.
    """
    vx = np.unique([e for t in tiles for e, inner in ((t.x, t.interior_left), (t.x2, t.interior_right)) if inner])
    vy = np.unique([e for t in tiles for e, inner in ((t.y, t.interior_top), (t.y2, t.interior_bottom)) if inner])
    tol = margin + 1.0  # the box side itself may also be cut within the tolerance
    near = np.zeros(xyxy.shape[0], bool)
    for lines, c1, c2 in ((vx, 0, 2), (vy, 1, 3)):
        if lines.size:
            lo = np.searchsorted(lines, xyxy[:, c1] - tol, side="left")
            hi = np.searchsorted(lines, xyxy[:, c2] + tol, side="right")
            near |= hi > lo
    return near
