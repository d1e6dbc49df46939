"""Pseudo-labels from test-time-augmented views of a photo, fused by weighted box fusion.

A photo is run through the tiled engine several times: at each scale in ``scales`` (a scale
``s`` cuts tiles of ``tile / s`` px, which the engine resizes to the model's input, so ``s > 1``
zooms in and small far-away products reach the model at a size it knows), each also mirrored
left-right when ``flip`` is on. Every view's boxes are mapped back to the photo, and the views
are fused with the engine's own :func:`~densedet_tile.merge.wbf.weighted_box_fusion` (a cluster
holds at most one box per view). A fused box becomes

* a **pseudo-label** when at least ``min_views`` of the views found it (two at least, where there
  are two or more) and their mean score is at least ``score_hi``;
* an **ignore region** otherwise (some view found it at ``score_lo`` or more, so teaching the
  model either way would be a guess): no heatmap loss there.

Everything else in the photo is background. High thresholds keep the model from teaching itself
its own mistakes (confirmation bias); the uncertain middle is left alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..merge.boxes import candidate_pairs, pair_iou
from ..merge.wbf import weighted_box_fusion
from ..types import Detections, MergeSpec, RunSpec, TileSpec

__all__ = ["LabelSettings", "PseudoLabels", "view_detections", "fuse_views", "pseudo_label", "agreement"]


@dataclass(frozen=True)
class LabelSettings:
    """How pseudo-labels are made (see the module docstring).

    ``tile``/``overlap``: the engine's tiling at scale 1 (the tiling the model will serve with).
    """

    scales: tuple[float, ...] = (1.0, 1.5)
    flip: bool = True
    fuse_iou: float = 0.55
    min_views: float = 0.5
    score_hi: float = 0.6
    score_lo: float = 0.3
    tile: int = 1280
    overlap: float = 0.2

    def __post_init__(self) -> None:
        scales = tuple(float(s) for s in self.scales)
        if not scales or any(not (math.isfinite(s) and 0.25 <= s <= 4.0) for s in scales):
            raise InvalidInputError(f"scales must be numbers in [0.25, 4], got {self.scales!r}")
        if len(set(scales)) < len(scales):  # a view twice would count as two views agreeing with each other
            raise InvalidInputError(f"scales must differ from one another (each is one view), got {self.scales!r}")
        object.__setattr__(self, "scales", scales)
        if not 0.0 < self.fuse_iou <= 1.0:
            raise InvalidInputError(f"fuse_iou must be in (0, 1], got {self.fuse_iou!r}")
        if not 0.0 < self.min_views <= 1.0:
            raise InvalidInputError(f"min_views must be a fraction in (0, 1], got {self.min_views!r}")
        if not 0.0 <= self.score_lo <= self.score_hi < 1.0:
            raise InvalidInputError(
                f"need 0 <= score_lo <= score_hi < 1, got score_lo={self.score_lo!r} score_hi={self.score_hi!r}")
        if self.tile < 32 or not 0.0 <= self.overlap < 1.0:
            raise InvalidInputError(f"tile must be a side of 32 px or more and overlap in [0, 1), got tile={self.tile!r} "
                                    f"overlap={self.overlap!r}")

    @property
    def views(self) -> list[tuple[float, bool]]:
        """``(scale, mirrored)`` of every view, in order."""
        return [(s, f) for s in self.scales for f in ((False, True) if self.flip else (False,))]

    @property
    def votes_needed(self) -> int:
        """How many views must agree on a box for it to become a pseudo-label."""
        return self.votes_of(len(self.views))

    def votes_of(self, n_views: int) -> int:
        """How many of ``n_views`` distinct views must agree on a pseudo-label: ``min_views`` of
        them, and two at least where there are two or more (one view's box alone is the
        model's guess, whatever share of the views that is)."""
        return max(min(2, n_views), math.ceil(self.min_views * n_views - 1e-9))

    def view_tile(self, scale: float) -> int:
        """The tile side a view at ``scale`` cuts (``tile / scale``)."""
        return max(32, int(round(self.tile / scale)))

    def views_of(self, width: int, height: int) -> list[tuple[float, bool]]:
        """The views of a ``width`` x ``height`` photo that differ: where two scales' tiles are
        both at least the photo's longer side, each view is the whole photo resized to the
        model's input alike, so only the first counts (else a box one view found would be voted
        for twice, and the views' agreement would not guard the labels)."""
        side = max(int(width), int(height))
        seen: set[tuple[int, bool]] = set()
        out = []
        for scale, flip in self.views:
            key = (min(self.view_tile(scale), side), flip)
            if key not in seen:
                seen.add(key)
                out.append((scale, flip))
        return out


@dataclass(frozen=True)
class PseudoLabels:
    """The labels of one photo: ``boxes`` float32 (N, 4) xyxy photo pixels with their fused
    ``scores`` (N,) and ``votes`` (N,) (views that found them), and ``ignore`` float32 (M, 4)."""

    boxes: np.ndarray
    scores: np.ndarray
    votes: np.ndarray
    ignore: np.ndarray
    views: int

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _mirror(d: Detections, width: int) -> Detections:
    if not len(d):
        return d
    b = d.xyxy.copy()
    b[:, 0], b[:, 2] = width - d.xyxy[:, 2], width - d.xyxy[:, 0]
    return Detections(b, d.scores, d.labels)


def view_detections(image: np.ndarray, detector: Any, settings: LabelSettings,
                    run: RunSpec | None = None, *, name: str = "<array>",
                    scale_thr: float | None = None) -> list[Detections]:
    """The global boxes of every distinct view of ``image`` (uint8 HxWx3 upright RGB), in photo
    pixels (:meth:`LabelSettings.views_of`: a photo no longer than a view's tile has fewer).

    Each view runs the whole tiled engine (:func:`densedet_tile.pipeline.detect_image`) with the
    default merge. Under a detector's photo rule a view is the photo at the rule's scale times
    the view's, cut as the engine cuts a photo at that scale
    (:func:`densedet_tile.scale.photo_rule_specs`: a small photo's tiles keep the seam overlap
    and are 98 px at least, so two views of a thumbnail can come out alike; each distinct one
    runs once). Boxes below ``settings.score_lo`` are dropped. ``name`` (the photo's) and the
    view name the image in what the engine says (a warning of small products named "<array>"
    told an adapt user nothing). ``scale_thr``: the threshold the photo rule's checks measure the
    products at, as given (default: the run's, ``settings.score_lo`` unless given, raised to the
    detector's ``scale_thr`` where it declares one, as a run there raises it); ``adapt`` passes the one
    the weights serve at, so that the views start from the scale the engine serves the photo at.
    """
    from ..pipeline import _warn_narrow_overlap, detect_image, finish, plan, predict_tiles
    from ..scale import photo_rule_scale, photo_rule_specs
    from ..tiler.readers.array import ArraySource

    run = RunSpec() if run is None else run
    run = replace(run, score_thr=settings.score_lo) if run.score_thr is None else run
    if run.max_vram is not None:  # (as detect_image applies it: the views below run the stages)
        from ..vram import fit_to_vram

        run = fit_to_vram(detector, TileSpec(tile=settings.tile, overlap=settings.overlap), run)[1]
    h, w = image.shape[:2]
    # a detector with a photo rule (the built-in model) shows the photo at the rule's scale
    # whatever the tile: the views are that scale times theirs, or they would all be one view
    base = photo_rule_scale(ArraySource(image, name=name), detector,
                            TileSpec(tile=settings.tile, overlap=settings.overlap), run, measure_thr=scale_thr)
    mirrored = None
    out = []
    # (at the rule's scale times theirs the views differ, unless a small photo's tiles reach
    # their floor: photo_rule_specs)
    seen: set[tuple[Any, ...]] = set()
    for scale, flip in settings.views_of(w, h) if base is None else settings.views:
        if base is None:
            tile = settings.view_tile(scale)
            tiling, view_run, said = TileSpec(tile=tile, overlap=settings.overlap), run, f"tile {tile}"
        else:
            # cut as the engine cuts a photo at the rule's scale
            tiling, view_run, shown = photo_rule_specs(TileSpec(tile=settings.tile, overlap=settings.overlap), run,
                                                       detector, base * scale, w, h, MergeSpec())
            said = f"scale {shown:.3g}"
            key = (tiling.tile, tiling.overlap, view_run.input_size, flip)
            if key in seen:
                continue
            seen.add(key)
        if flip and mirrored is None:
            mirrored = np.ascontiguousarray(image[:, ::-1])
        src = ArraySource(mirrored if flip else image, name=f"{name} (view at {said}{', mirrored' if flip else ''})")
        if base is None:
            d = detect_image(src, detector, tiling=tiling, merge=MergeSpec(), run=view_run).detections
        else:  # the tiling is the engine's already: its stages, without choosing the scale again
            tiles = plan(src, tiling)
            if len(tiles) > 1:
                _warn_narrow_overlap(src.name, tiles, MergeSpec())
            d = finish(src, tiles, predict_tiles(src, tiles, detector, view_run), tiling=tiling, merge=MergeSpec(),
                       model=detector).detections
        out.append(_mirror(d, w) if flip else d)
    return out


def fuse_views(views: Sequence[Detections], settings: LabelSettings) -> PseudoLabels:
    """Fuse per-view boxes (photo pixels) into pseudo-labels and ignore regions.

    ``views`` are the distinct views :func:`view_detections` ran (all of ``settings``' views, or
    fewer on a small photo); a pseudo-label needs ``min_views`` of them. Boxes below
    ``score_lo`` are dropped first. Labels (classes) are not used: the built-in model has one class.
    """
    n_views = len(views)
    if not 1 <= n_views <= len(settings.views):
        raise InvalidInputError(f"fuse_views: {n_views} views given, settings describe {len(settings.views)}")
    kept = [v[v.scores >= settings.score_lo] if len(v) else v for v in views]
    xyxy = np.concatenate([v.xyxy for v in kept]).reshape(-1, 4) if kept else np.zeros((0, 4), np.float32)
    scores = np.concatenate([v.scores for v in kept]) if kept else np.zeros(0, np.float32)
    groups = np.concatenate([np.full(len(v), i, np.int64) for i, v in enumerate(kept)]) if kept else np.zeros(0)
    fused = weighted_box_fusion(xyxy, scores, groups=groups, iou_thr=settings.fuse_iou)
    votes = fused.size
    good = (votes >= settings.votes_of(n_views)) & (fused.scores >= settings.score_hi)
    return PseudoLabels(
        boxes=fused.xyxy[good].astype(np.float32),
        scores=fused.scores[good].astype(np.float32),
        votes=votes[good].astype(np.int64),
        ignore=fused.xyxy[~good].astype(np.float32),
        views=n_views,
    )


def pseudo_label(image: np.ndarray, detector: Any, settings: LabelSettings, run: RunSpec | None = None, *,
                 name: str = "<array>", scale_thr: float | None = None) -> PseudoLabels:
    """:func:`view_detections` then :func:`fuse_views`."""
    return fuse_views(view_detections(image, detector, settings, run, name=name, scale_thr=scale_thr), settings)


def agreement(pred: np.ndarray, ref: np.ndarray, ignore: np.ndarray | None = None, iou: float = 0.5) -> dict[str, float]:
    """How well boxes ``pred`` (N, 4) agree with reference boxes ``ref`` (M, 4), one photo.

    Greedy one-to-one matching at IoU >= ``iou`` in ``pred`` order (pass them sorted by score);
    an unmatched prediction that overlaps an ``ignore`` box at IoU >= ``iou`` counts neither way.
    Returns ``{"matched", "pred", "ref", "ignored"}`` counts (``pred`` excludes the ignored ones).
    """
    p = np.asarray(pred, np.float64).reshape(-1, 4)
    r = np.asarray(ref, np.float64).reshape(-1, 4)
    g = np.zeros((0, 4)) if ignore is None else np.asarray(ignore, np.float64).reshape(-1, 4)
    n, m = len(p), len(r)
    matched = np.zeros(n, bool)
    if n and m:
        allb = np.concatenate([p, r])
        i, j = candidate_pairs(allb)
        a, b = np.minimum(i, j), np.maximum(i, j)
        cross = (a < n) & (b >= n)
        a, b = a[cross], b[cross] - n
        v = pair_iou(allb, a, b + n)
        ok = v >= iou
        a, b, v = a[ok], b[ok], v[ok]
        order = np.lexsort((-v, a))  # by prediction, best IoU first
        taken = np.zeros(m, bool)
        for k in order:
            if not matched[a[k]] and not taken[b[k]]:
                matched[a[k]] = taken[b[k]] = True
    ignored = np.zeros(n, bool)
    if len(g) and (~matched).any():
        rest = np.flatnonzero(~matched)
        allb = np.concatenate([p[rest], g])
        i, j = candidate_pairs(allb)
        a, b = np.minimum(i, j), np.maximum(i, j)
        k = len(rest)
        cross = (a < k) & (b >= k)
        a, b = a[cross], b[cross]
        v = pair_iou(allb, a, b)
        ignored[rest[np.unique(a[v >= iou])]] = True
    return {"matched": int(matched.sum()), "pred": int(n - ignored.sum()), "ref": int(m), "ignored": int(ignored.sum())}
