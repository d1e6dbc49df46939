"""Small frozen value types shared by every stage of the engine.

Coordinates are pixels, ``xyxy`` = (x1, y1, x2, y2) with x1 <= x2 and y1 <= y2, in the frame of
whatever image the boxes belong to: tile-local inside a detector, global (the upright,
EXIF-applied source image) once the engine has shifted them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Sequence

import numpy as np

from .errors import InvalidInputError

__all__ = ["Detections", "Tile", "TileSpec", "MergeSpec", "MergeMode", "RunSpec", "CountRange", "ordered_range", "COUNT_BAND", "CONFIRM_BAND", "UNCERTAIN_AT",
           "UNCERTAIN_MIN_BOXES",
           "PRECISIONS", "DEFAULT_MAX_PIXELS", "default_batch_size"]

#: Numeric precisions a run may ask for (reduced ones apply on CUDA, where the model supports them).
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16")
#: Largest image (in pixels) the readers open unless told otherwise: a guard against
#: decompression bombs that still admits a 46000 px square panorama.
DEFAULT_MAX_PIXELS: int = 2**31

#: How far below the score threshold the engine counts by default (``RunSpec.count_band``).
COUNT_BAND: float = 0.05

#: How far below a threshold a box still confirms another tile's cut view of its object
#: (:func:`densedet_tile.merge.merge_tiles`, ``confirmers``): a run at a threshold merges with the
#: boxes this far below it, and so does each end of the count range. The built-in model and the
#: adapters return boxes down to their serving threshold less ``COUNT_BAND`` and this
#: (:func:`densedet_tile.detector.base.score_floor_for`).
CONFIRM_BAND: float = 0.05


#: Largest class id a Detections takes (far beyond any class list; larger is a corrupted value).
_MAX_LABEL = 2.0**31


def _plain_numbers(spec: Any) -> None:
    """Turn numpy scalars in the fields of the frozen dataclass ``spec`` into Python numbers
    (``np.float32(0.5)`` is a fine threshold, and settings go into JSON)."""
    for f in fields(spec):
        v = getattr(spec, f.name)
        if isinstance(v, (np.integer, np.floating)) and not isinstance(v, np.bool_):
            object.__setattr__(spec, f.name, v.item())


def _as_array(value: object, dtype: type, name: str) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy raises many kinds here
        raise InvalidInputError(f"Detections.{name}: cannot convert to an array ({exc})") from exc
    if arr.dtype == dtype:
        return arr
    if np.iscomplexobj(arr):
        raise InvalidInputError(f"Detections.{name}: expected real numbers, got dtype {arr.dtype}")
    if arr.size and not np.can_cast(arr.dtype, dtype, casting="same_kind"):
        if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
            raise InvalidInputError(f"Detections.{name}: expected numbers, got dtype {arr.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(dtype, copy=False)
    if dtype == np.float32 and arr.size and np.issubdtype(arr.dtype, np.number) and not np.issubdtype(arr.dtype, np.float32):
        # finite values beyond float32's range (1e39) would read as infinite below
        big = np.isinf(out) & np.isfinite(arr)
        if big.any():
            raise InvalidInputError(f"Detections.{name}: {int(big.sum())} value(s) beyond the float32 range, "
                                    f"e.g. {arr[big].flat[0]!r}")
    return out


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """Boxes, scores and labels as parallel numpy arrays.

    ``xyxy`` float32 (N, 4) in pixels, ``scores`` float32 (N,), ``labels`` int64 (N,).
    Inputs are converted to those dtypes (never modified in place) and validated once:
    wrong shapes, non-finite values, or boxes with x2 < x1 / y2 < y1 raise
    :class:`~densedet_tile.errors.InvalidInputError` saying what was received.
    """

    xyxy: np.ndarray
    scores: np.ndarray
    labels: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        xyxy = _as_array(self.xyxy, np.float32, "xyxy")
        if xyxy.size == 0 and (xyxy.ndim == 1 or (xyxy.ndim == 2 and xyxy.shape[1] in (0, 4))):
            xyxy = xyxy.reshape(0, 4)  # [] or an empty (0, 4) / (0, 0) array: no boxes
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            raise InvalidInputError(f"Detections.xyxy: expected shape (N, 4), got {xyxy.shape}")
        n = xyxy.shape[0]
        scores = _as_array(self.scores, np.float32, "scores").reshape(-1) if np.ndim(self.scores) <= 1 else None
        if scores is None or scores.shape != (n,):
            got = np.shape(self.scores)
            raise InvalidInputError(f"Detections.scores: expected shape ({n},), got {got}")
        if self.labels is None:
            labels = np.zeros(n, dtype=np.int64)
        else:
            if np.ndim(self.labels) > 1 or np.size(self.labels) != n:
                raise InvalidInputError(
                    f"Detections.labels: expected shape ({n},), got {np.shape(self.labels)}"
                )
            raw = np.asarray(self.labels)
            if raw.size and np.issubdtype(raw.dtype, np.floating):
                if not np.all(np.isfinite(raw)) or np.any(raw != np.round(raw)):
                    raise InvalidInputError("Detections.labels: expected integer class ids")
            # in range by type (uint32 is not: 4e9 was let through where the same id as int64 was refused)
            small_ints = np.issubdtype(raw.dtype, np.integer) and np.iinfo(raw.dtype).max <= _MAX_LABEL
            if raw.size and not small_ints and np.issubdtype(raw.dtype, np.number) and not np.iscomplexobj(raw):
                lo, hi = raw.min(), raw.max()
                if max(abs(float(lo)), abs(float(hi))) > _MAX_LABEL:
                    bad = hi if abs(float(hi)) > _MAX_LABEL else lo
                    raise InvalidInputError(f"Detections.labels: class id {bad.item()!r} is out of range "
                                            f"(at most {_MAX_LABEL:g} in size)")
            labels = _as_array(raw, np.int64, "labels").reshape(-1)
        if not np.all(np.isfinite(xyxy)):
            bad = int(np.count_nonzero(~np.isfinite(xyxy).all(axis=1)))
            raise InvalidInputError(f"Detections.xyxy: {bad} box(es) have NaN or infinite coordinates")
        if not np.all(np.isfinite(scores)):
            bad = int(np.count_nonzero(~np.isfinite(scores)))
            raise InvalidInputError(f"Detections.scores: {bad} score(s) are NaN or infinite")
        if n and (np.any(xyxy[:, 2] < xyxy[:, 0]) or np.any(xyxy[:, 3] < xyxy[:, 1])):
            bad = int(np.count_nonzero((xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])))
            raise InvalidInputError(f"Detections.xyxy: {bad} box(es) have x2 < x1 or y2 < y1")
        # Own the arrays: the object is immutable, so nobody may write through them.
        for name, arr in (("xyxy", xyxy), ("scores", scores), ("labels", labels)):
            if arr is getattr(self, name) or arr.base is not None or arr.flags.writeable:
                arr = np.array(arr, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)

    # -- constructors -------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Detections":
        """A Detections with no boxes."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def concat(cls, parts: Sequence["Detections"]) -> "Detections":
        """Join several Detections end to end (order kept)."""
        if isinstance(parts, Detections):  # (iterated box by box, it came back as it went in)
            raise InvalidInputError("Detections.concat takes a list of Detections, got one Detections")
        parts = list(parts)
        if not parts:
            return cls.empty()
        bad = next((k for k, p in enumerate(parts) if not isinstance(p, Detections)), None)
        if bad is not None:
            raise InvalidInputError(f"Detections.concat: part {bad} is a {type(parts[bad]).__name__}, not Detections")
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.labels for p in parts]),
        )

    # -- container protocol ---------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.xyxy.shape[0])

    def __getitem__(self, index: object) -> "Detections":
        """Select boxes with a boolean mask, an index array, an int or a slice."""
        if isinstance(index, (bool, np.bool_)):  # an int to Python: d[True] was box 1
            raise InvalidInputError(f"Detections: a single {index!r} is no selection; use a mask of one "
                                    "bool per box, an index array, an int or a slice")
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        xyxy, scores, labels = self.xyxy[index], self.scores[index], self.labels[index]
        if xyxy.ndim != 2 or scores.ndim != 1 or labels.ndim != 1:  # (an index of another shape)
            return Detections(xyxy, scores, labels)
        # a selection of boxes already checked needs no second check: the merge takes hundreds
        # of selections an image, and each one ran the whole validation again
        return Detections._checked(xyxy, scores, labels)

    @classmethod
    def _checked(cls, xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> "Detections":
        """A Detections of arrays already known valid (of the right dtypes and shapes) that only
        the caller holds (a selection's fresh arrays): owned (copied where one is a view of
        another array) and made read-only."""
        out = object.__new__(cls)
        for name, arr in (("xyxy", xyxy), ("scores", scores), ("labels", labels)):
            if arr.base is not None:
                arr = np.array(arr, copy=True)
            arr.flags.writeable = False
            object.__setattr__(out, name, arr)
        return out

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"

    # -- small helpers ----------------------------------------------------------------------
    @property
    def area(self) -> np.ndarray:
        """Box areas, float32 (N,)."""
        return (self.xyxy[:, 2] - self.xyxy[:, 0]) * (self.xyxy[:, 3] - self.xyxy[:, 1])

    def shifted(self, dx: float, dy: float) -> "Detections":
        """The same boxes translated by (dx, dy) pixels."""
        off = np.array([dx, dy, dx, dy], dtype=np.float32)
        return Detections(self.xyxy + off, self.scores, self.labels)

    def scaled(self, sx: float, sy: float) -> "Detections":
        """The same boxes with x multiplied by ``sx`` and y by ``sy``."""
        mul = np.array([sx, sy, sx, sy], dtype=np.float32)
        return Detections(self.xyxy * mul, self.scores, self.labels)


@dataclass(frozen=True, slots=True)
class Tile:
    """One crop of the source image: pixel window (x, y, w, h) in the global frame.

    The ``interior_*`` flags say which edges are shared with a neighbouring tile (and so may
    cut products in two); the other edges lie on the image border.
    """

    x: int
    y: int
    w: int
    h: int
    interior_left: bool = False
    interior_top: bool = False
    interior_right: bool = False
    interior_bottom: bool = False
    index: int = 0

    def __post_init__(self) -> None:
        for name in ("x", "y", "w", "h"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidInputError(f"Tile.{name} must be an integer, got {v!r}")
            # a numpy integer kept as given wraps in x2 / y2 (uint8 100 + 200 is 44): stored as int
            object.__setattr__(self, name, int(v))
        if self.x < 0 or self.y < 0 or self.w <= 0 or self.h <= 0:
            raise InvalidInputError(f"Tile: x and y must be >= 0 and w, h > 0, got x={self.x} y={self.y} w={self.w} h={self.h}")
        for name in ("interior_left", "interior_top", "interior_right", "interior_bottom"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):  # ("yes" reached the merge, a bare ValueError there)
                raise InvalidInputError(f"Tile.{name} must be True or False, got {v!r}")
            object.__setattr__(self, name, bool(v))
        if isinstance(self.index, bool) or not isinstance(self.index, (int, np.integer)):
            raise InvalidInputError(f"Tile.index must be an integer, got {self.index!r}")
        object.__setattr__(self, "index", int(self.index))

    @property
    def x2(self) -> int:
        return self.x + self.w

    @property
    def y2(self) -> int:
        return self.y + self.h

    @property
    def interior(self) -> tuple[bool, bool, bool, bool]:
        """Interior flags in (left, top, right, bottom) order."""
        return (self.interior_left, self.interior_top, self.interior_right, self.interior_bottom)


@dataclass(frozen=True, slots=True)
class TileSpec:
    """How to cut an image: square ``tile`` side in pixels and ``overlap`` as a fraction of it.

    ``tile="auto"`` asks the engine to measure the products in the image and choose the tile
    (and raise the overlap) so that they reach the model at its trained size; see
    :mod:`densedet_tile.scale`. An ``auto`` spec is resolved before the grid is made.
    """

    tile: int | Literal["auto"] = 1280
    overlap: float = 0.2

    def __post_init__(self) -> None:
        if self.tile != "auto" and (
            isinstance(self.tile, bool) or not isinstance(self.tile, (int, np.integer)) or self.tile < 32
        ):
            raise InvalidInputError(f"tile must be an integer >= 32 pixels or 'auto', got {self.tile!r}")
        if (isinstance(self.overlap, (bool, np.bool_)) or not isinstance(self.overlap, (int, float, np.integer, np.floating))
                or not (0.0 <= float(self.overlap) < 1.0)):
            raise InvalidInputError(f"overlap must be a fraction in [0, 1), got {self.overlap!r}")
        if self.tile != "auto":
            object.__setattr__(self, "tile", int(self.tile))
        object.__setattr__(self, "overlap", float(self.overlap))
        if isinstance(self.tile, int) and round(self.tile * self.overlap) >= self.tile:
            raise InvalidInputError(f"overlap {self.overlap!r} of a {self.tile} px tile is the whole tile: the tiles "
                                    "would not advance")

    def _side(self) -> int:
        if not isinstance(self.tile, int):
            raise InvalidInputError("tile='auto' must be resolved (densedet_tile.scale.choose_scale) before tiling")
        return self.tile

    @property
    def overlap_px(self) -> int:
        """Overlap between neighbouring tiles in pixels (rounded)."""
        return int(round(self._side() * self.overlap))

    @property
    def stride(self) -> int:
        """Distance between the origins of neighbouring tiles."""
        return max(1, self._side() - self.overlap_px)


MergeMode = Literal["wbf", "nms", "none"]
MERGE_MODES: tuple[str, ...] = ("wbf", "nms", "none")


@dataclass(frozen=True, slots=True)
class MergeSpec:
    """How per-tile detections become one set of global boxes.

    ``mode``: ``"wbf"`` (seam repair, weighted fusion of cross-tile duplicates, then global NMS),
    ``"nms"`` (seam repair then global NMS only) or ``"none"`` (boxes shifted to the global frame
    and concatenated, nothing removed). See :func:`densedet_tile.merge.merge_tiles`.

    Defaults were measured on painted shelf panoramas (``scripts/bench_seams.py``, results in
    ``benchmarks/seams.md``); the reasons are given with each field.
    """

    mode: MergeMode = "wbf"
    #: IoU at or above which boxes from *different* tiles are taken as one product and fused.
    #: On the painted aisles (700 products, 3 seeds, 1-8 px box noise) 0.3-0.7 all left no
    #: duplicate or fragment and 0.85 left 0.05% at 8 px (noisy views of small products no
    #: longer fuse). 0.55 sits in the middle: well above what neighbouring products a real
    #: detector draws slightly overlapping reach, well below two views of one product.
    fuse_iou: float = 0.55
    #: IoU above which the final global NMS drops the lower-scored box (per class unless
    #: ``class_agnostic``). It only mops up what seam repair and fusion left: 0.3-0.5 left
    #: nothing on the painted aisles, and 0.7 too on the page of 2026-12-02 (0.05% duplicates
    #: at 8 px noise with the merge of 2026-11-26).
    nms_iou: float = 0.5
    #: A box side within this many pixels of an interior tile edge counts as cut by it. Must
    #: exceed the detector's box noise at the tile border: at 4 px noise 2 px left 6.3% of
    #: products with a duplicate or fragment and 4 px none; at 8 px noise 4 px left 6.7% and
    #: 8 px none (benchmarks/seams.md of 2026-12-02; 8.5% and 8.7% with the merge of 2026-11-26). Erring large is mostly safe: a side flagged as cut lets a fuller view from
    #: another tile replace or join the box, and (with ``confirm``) makes a box that the other
    #: tile holding it does not report at all a border artefact to drop, even when it was whole
    #: (a detector that misses 10 % of views independently loses about 1.5 % of products at tile
    #: 640 that way). Judging that rule only on sides within 4 or 8 px of the edge lowered
    #: F1@0.5 on the real panoramas below at every tile size (1280: 0.8865 -> 0.8853 / 0.8858:
    #: the built-in model's border artefacts also end a few px short of the edge), so it uses
    #: this band too, but for small boxes only up to 0.15 of the box's extent
    #: (``merge.core.CONFIRM_BAND_FRAC``, 2026-12-05): products of 20-40 px with a 10 % miss rate
    #: at tile 256 lost 9.8 % of those lying in two tiles, 3.2 % since, while the real
    #: panoramas (products of 100 px and more) moved by 0.0001 F1. A real detector's cut side stops 1-3% of the box
    #: short of the edge, more than 8 px on big products: on the 21 real panoramas of
    #: ``scripts/bench_real_seams.py`` 16 px gave F1@0.5 +0.001 to +0.002 at tiles 1024, 1280
    #: and 1632 (30-55 fewer false boxes each) over 8 px, and the same count error on the 85
    #: real photos.
    #: Image pixels; a run raises it (and ``seam_tol``) to 8 model pixels where it is less (at
    #: the default, where tiles reach the model shrunk more than by half; a smaller value given
    #: is raised on enlarged tiles too: :func:`densedet_tile.pipeline.merge_at_model_scale`), and
    #: its ``settings.merge`` says what ran.
    edge_tol: float = 16.0
    #: Seam repair: two box sides "agree" when within ``max(seam_tol, seam_tol_frac * extent)``
    #: pixels (extent: the two boxes' root mean square width for x sides, height for y sides,
    #: at most three times the smaller one's; the smaller for boxes of two labels). Needs about
    #: twice the per-side box noise: 1 px left 0.05% fragments at 1 px noise, 4 px 0.19% at
    #: 4 px noise, 8 px 0.76% at 8 px noise; 16 px and 32 px none up to 8 px noise
    #: (benchmarks/seams.md of 2026-12-02; the merge of 2026-11-26 left 1.6 / 5.0 / 10.2%). The
    #: tolerance of a pair never exceeds half the larger box's extent, so products smaller than
    #: ``seam_tol`` standing side by side are not taken for views of one another; for products
    #: under 2 x ``seam_tol`` that cap is the tolerance, and box noise of a fifth of such a
    #: product leaves duplicates (a reviewer's 10-18 px products at 2-4 px noise: 24 -> 32 and
    #: 416 -> 512) where neighbours were joined or lost before. For larger products erring
    #: large is cheap.
    seam_tol: float = 16.0
    #: The relative part absorbs a real detector's view-to-view disagreement on big boxes: on
    #: a real shelf photo with the built-in model (tile 640) 0.1 left 34 nested box pairs where
    #: 0.03 left 37 (the detector nests 23 pairs inside single tiles by itself); the painted
    #: aisles were unaffected from 0 to 0.2.
    seam_tol_frac: float = 0.1
    #: Treat all labels as one class when matching boxes across tiles and in NMS.
    class_agnostic: bool = False
    #: Measure the detector's view-to-view disagreement in each run and scale the seam
    #: tolerances with it (:func:`densedet_tile.merge.merge_tolerances`): the 80th percentile
    #: ``s`` of the per-side differences, relative to box size, between two whole views of one
    #: product from two overlapping tiles, shrunk towards ``seam_tol_frac / 3`` (the prior).
    #: Then a side within ``max(edge_tol, 2 s * extent)`` of an interior tile edge is cut and
    #: sides agree within ``max(seam_tol, 3 s * extent)``. False: ``edge_tol`` and
    #: ``seam_tol_frac`` exactly as given. Measured (``scripts/bench_real_seams.py``, 21
    #: panoramas of real photos, built-in model): s = 0.010-0.052 (median 0.022-0.035 by
    #: tile size), and truncated boxes stop 1-3% of their size short of the tile edge; there
    #: s lands near the prior, so F1 moves by <= 0.0012 against fixed tolerances. Generated
    #: shelves whose detector misplaces sides by up to 10% (``tests/merge/test_real_noise.py``)
    #: measure s ~ 0.13 and get their fragments joined where the fixed 10% leaves them;
    #: painted aisles with 1 px noise measure s ~ 0.01 and keep the pixel floors.
    adaptive_tol: bool = True
    #: Weight of the prior, in pairs, when the measured disagreement is averaged with it: a run
    #: with a few pairs (one photo, a small image) stays near the prior, hundreds decide (a
    #: real 4-photo panorama gave 30-290 pairs).
    noise_prior_pairs: float = 25.0
    #: Containment: a cut view whose own area lies at least this much inside a view from
    #: another tile that reaches past its cut (while it reaches past none of that view's cuts)
    #: is the same product whatever its uncut sides say, and is dropped (None: off). On the
    #: real panoramas the uncut sides of a truncated and a full view differed by over 10% of
    #: the box in 5-6% of sides. 0.4-0.8 all helped there without losing a reference box
    #: (panoramas 0-2, tile 1280: F1@0.5 0.8989 / 0.8972 / 0.8964 / 0.8948 at 0.4 / 0.5 /
    #: 0.6 / 0.7); 0.5 = most of the cut view is the fuller view's product. Over all 21
    #: panoramas it adds 0.016-0.021 F1@0.5; on painted aisles with an occluder in front of
    #: 37-48 cut views it leaves 0 fragments where 32-46 stay without.
    contain: float | None = 0.5
    #: Drop a cut view that lies wholly inside another tile which reported nothing there
    #: (no box of any label covering 30% of it): that tile saw the same pixels and what lies
    #: beyond the cut. The built-in model reports half-seen texture at a tile border as a
    #: product: over the 21 real panoramas this adds 0.015-0.019 F1@0.5; 235 of the 1576
    #: views it dropped there (15%) matched a box of the whole-photo reference.
    confirm: bool = True
    #: Two boxes from different tiles (of one label unless ``class_agnostic``) that are each
    #: other's best match among the other tile's boxes, at this IoU or more, are one product and
    #: fused as if they reached ``fuse_iou`` (wbf only; None: off). Noisy views of small products
    #: overlap less than ``fuse_iou``: 12-40 px products with 2 px of box noise give views at IoU
    #: 0.35-0.5, and were counted twice (+2.0 % at tile 640 / overlap 0.2, +5.2 % at 0.5, +9.6 %
    #: at 3 px; a single pass of the same detector exact), +0.0-0.2 % and +1.0 % since (an
    #: outside review, BENCHMARKS.md "Small products across seams"). Neighbouring products do
    #: not overlap that much, and a product seen by both tiles is each view's best match, so a
    #: neighbour's view is not taken for a missed one's. Best matches are judged among every view
    #: the tiles reported (those under the score threshold too), before the seam repair drops or
    #: joins any, and only views the repair kept as they were fuse this way
    #: (:func:`~densedet_tile.merge.wbf.best_match_pairs`). A product the other tile missed
    #: altogether can still be fused with a neighbour's view there. On the 21 real panoramas F1@0.5
    #: rises 0.0027-0.0043 (duplicates and fragments fused), F1@0.75 falls 0.0011-0.0018 (a fused
    #: fragment pulls its product's box). On the 85 real photos 51 counts move, 92 boxes fewer in
    #: all (0.8 %): mean count error against the human counts 22.0 -> 22.1 % (paired 95 % interval
    #: -0.16 to +0.40 points), median 16.2 -> 15.2 %; the model under-counts there, so duplicates
    #: removed move some counts further down.
    match_iou: float | None = 0.25

    def __post_init__(self) -> None:
        _plain_numbers(self)
        if self.mode not in MERGE_MODES:
            raise InvalidInputError(f"merge mode must be one of {', '.join(MERGE_MODES)}; got {self.mode!r}")
        for name in ("fuse_iou", "nms_iou"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 < float(v) <= 1.0):
                raise InvalidInputError(f"MergeSpec.{name} must be in (0, 1], got {v!r}")
        for name in ("edge_tol", "seam_tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) < 1e4):
                raise InvalidInputError(f"MergeSpec.{name} must be in [0, 10000) pixels, got {v!r}")
        v = self.seam_tol_frac
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) < 1.0):
            raise InvalidInputError(f"MergeSpec.seam_tol_frac must be in [0, 1), got {v!r}")
        for name in ("contain", "match_iou"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 < float(v) <= 1.0)):
                raise InvalidInputError(f"MergeSpec.{name} must be in (0, 1] or None, got {v!r}")
        for name in ("class_agnostic", "adaptive_tol", "confirm"):
            if isinstance(getattr(self, name), np.bool_):  # numpy's booleans are booleans too
                object.__setattr__(self, name, bool(getattr(self, name)))
            if not isinstance(getattr(self, name), bool):
                raise InvalidInputError(f"MergeSpec.{name} must be True or False, got {getattr(self, name)!r}")
        v = self.noise_prior_pairs
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= float(v) < 1e9):
            raise InvalidInputError(f"MergeSpec.noise_prior_pairs must be >= 0, got {v!r}")

    @property
    def seam_overlap_px(self) -> float:
        """The least overlap (px) at which the seam repair tells a product cut by a seam from
        products meeting there: a neighbour's box ending within the band of cut sides
        (``edge_tol``) looks cut (two products meeting across an overlap under twice the band
        were joined), and a product no wider than the tolerance of agreeing sides (``seam_tol``)
        beside a larger one agrees with it, so where it can be flagged cut in both tiles
        (overlap <= twice the band + its width) it can be lost: one px more than twice the band
        plus the tolerance, 49 px by default. The engine warns under it; ``tile="auto"`` keeps
        its overlap at it or above."""
        return 2 * self.edge_tol + self.seam_tol + 1


def check_device(device: object) -> str:
    """``device`` normalised (``auto``, ``cpu``, ``cuda`` or ``cuda:N``); says what was wrong otherwise.

    Only the spelling is checked here: whether CUDA is there is the business of whatever runs a
    model (:func:`densedet_tile.detector.base.resolve_device`), so no framework is imported.
    """
    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    dev = device.strip().lower()
    if dev in ("auto", "cpu", "cuda"):
        return dev
    if dev.startswith("cuda:") and dev[5:].isascii() and dev[5:].isdigit():
        return f"cuda:{int(dev[5:])}"  # cuda:01 as torch spells it
    why = " (Apple's mps is not supported: use cpu)" if dev.startswith("mps") else ""
    raise InvalidInputError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}{why}")


def _positive_int_or_none(name: str, value: object, lo: int = 1, hi: int | None = None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo
                              or (hi is not None and value > hi)):
        within = f">= {lo}" if hi is None else f"from {lo} to {hi}"
        raise InvalidInputError(f"{name} must be an integer {within} or None, got {value!r}")


#: The largest model input side (pixels) a tile is resized to: one 16384 px tile is already
#: 0.8 GB of 8-bit pixels (3 GB as float32); a typo (an extra digit, a scale of 100) beyond it
#: used to exhaust the machine's memory instead of being refused.
MAX_INPUT_SIZE = 16384
#: The smallest model input side.
MIN_INPUT_SIZE = 16
#: The smallest ``max_vram`` (GiB) accepted: the smallest detector's weights and one small tile
#: need more than this, so a budget under it (1e-9 became a 1-byte cap) only sends every tile to
#: the CPU after an out-of-memory each; the README's 4 GB cards are 4.
MIN_VRAM_GB = 0.25


def check_score_thr(value: object, name: str = "score_thr") -> float | None:
    """``value`` as a score threshold (a number in [0, 1]) or None; the one rule for every way of
    giving it (RunSpec, ``load_detector``, DetectorSpec), so a typo is refused where it is given."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not 0.0 <= float(value) <= 1.0:
        raise InvalidInputError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


def check_input_size(value: object, name: str = "input_size") -> int | None:
    """``value`` as a model input side (an int from MIN_INPUT_SIZE to MAX_INPUT_SIZE) or None;
    the one rule for every way of giving it (RunSpec, ``load_detector``, the adapters), so a typo
    is refused where it is given, not by the first tile."""
    _positive_int_or_none(name, value, MIN_INPUT_SIZE, MAX_INPUT_SIZE)
    return None if value is None else int(value)  # type: ignore[call-overload]


@dataclass(frozen=True, slots=True)
class RunSpec:
    """How one run executes, besides tiling and merging.

    ``batch_size``: tiles per ``predict`` call (None: 4 on a GPU, 1 on the CPU).
    ``device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``; ``precision``: ``fp32``, ``fp16`` or
    ``bf16`` (both used when the engine builds the built-in model itself).
    ``score_thr``: boxes scoring below it are dropped before the merge (None: the model's own).
    ``input_size``: the longer side tiles are resized to before ``predict`` (None: what the
    detector declares). ``max_pixels``: refuse image files with more pixels (None: no limit; an array
    given in memory is already decoded and is not checked).
    ``max_vram``: GPU memory budget in GiB, at least :data:`MIN_VRAM_GB` (see
    :mod:`densedet_tile.vram`; None: no cap).
    ``scale``: image pixels to model pixels, e.g. 0.5 shows products at half size (None: from
    the tile and the detector, see :mod:`densedet_tile.scale`).
    ``count_band``: besides the boxes at ``score_thr``, count the boxes at ``score_thr +
    count_band`` and ``score_thr - count_band`` (each tile set merged on its own), the
    :class:`CountRange` of the result; 0 turns it off. Its upper end (``high``, the count at
    ``score_thr - count_band``) needs a detector whose boxes reach that low, and is None where
    they do not (the built-in model's reach 0.1 under its threshold, see its ``score_floor``;
    the command line takes a band of at most 0.05).
    ``classes``: keep only the boxes of these classes, as class ids or as names the detector
    declares in its ``class_names`` (None: all). The other boxes are dropped per tile, before
    the merge and the count; names become ids when the run is resolved for a detector.
    """

    batch_size: int | None = None
    device: str = "auto"
    precision: str = "fp32"
    score_thr: float | None = None
    input_size: int | None = None
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    max_vram: float | None = None
    scale: float | None = None
    count_band: float = COUNT_BAND
    classes: tuple[int | str, ...] | None = None

    def __post_init__(self) -> None:
        _plain_numbers(self)
        object.__setattr__(self, "classes", _class_list(self.classes))
        _positive_int_or_none("batch_size", self.batch_size)
        check_input_size(self.input_size)
        _positive_int_or_none("max_pixels", self.max_pixels)
        object.__setattr__(self, "device", check_device(self.device))
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_score_thr(self.score_thr)
        vram = self.max_vram
        if vram is not None and (isinstance(vram, bool) or not isinstance(vram, (int, float))
                                 or not 0 < vram < float("inf")):
            raise InvalidInputError(f"max_vram must be a positive number of GB, got {vram!r}")
        if vram is not None and vram < MIN_VRAM_GB:
            raise InvalidInputError(f"max_vram must be at least {MIN_VRAM_GB:g} GiB (less fits no detector, and every "
                                    f"tile would go to the CPU), got {vram!r}")
        sc = self.scale
        if sc is not None and (isinstance(sc, bool) or not isinstance(sc, (int, float)) or not 0.01 <= sc <= 100):
            raise InvalidInputError(f"scale must be a number in [0.01, 100], got {sc!r}")
        if sc is not None and self.input_size is not None:
            raise InvalidInputError("give a scale or an input_size, not both")
        band = self.count_band
        if isinstance(band, bool) or not isinstance(band, (int, float)) or not 0.0 <= band <= 0.5:
            raise InvalidInputError(f"count_band must be a number in [0, 0.5], got {band!r}")


def _class_list(value: object) -> tuple[int | str, ...] | None:
    """``RunSpec.classes`` as a tuple of distinct class ids (ints >= 0) and names (non-empty
    strings), in the order given; a single id or name stands for a list of one."""
    if value is None:
        return None
    items = [value] if isinstance(value, (str, int, np.integer)) else value
    try:
        items = list(items)  # type: ignore[call-overload]
    except TypeError:
        raise InvalidInputError(f"classes must be a list of class ids or names, got {type(value).__name__}") from None
    out: list[int | str] = []
    for c in items:
        if isinstance(c, (bool, np.bool_)) or not isinstance(c, (str, int, np.integer)):
            raise InvalidInputError(f"classes must hold class ids (ints) or names (strings), got {c!r}")
        if isinstance(c, str):
            c = c.strip()
            if not c:
                raise InvalidInputError("classes: a class name is empty")
        elif c < 0:
            raise InvalidInputError(f"classes: class ids are >= 0, got {int(c)}")
        else:
            c = int(c)
        if c not in out:
            out.append(c)
    if not out:
        raise InvalidInputError("classes is empty: give at least one class id or name (None keeps every class)")
    return tuple(out)


#: A count is flagged uncertain when the boxes within +-count_band of the score threshold
#: change it by this share or more (chosen on real shelf photos: MODEL_CARD.md, "Count range"),
#: and by at least UNCERTAIN_MIN_BOXES boxes (one stray box does not make a small count unsure).
UNCERTAIN_AT: float = 0.3
UNCERTAIN_MIN_BOXES: int = 2


def ordered_range(counts: Any) -> list[Any]:
    """``[least, most]`` of a count range's three counts (at the threshold + band, at it, at it -
    band), or its two ends as given where one is missing or not a number: merged counts need
    not fall as the threshold rises (:attr:`CountRange.bounds`)."""
    lo, n, hi = counts
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, n, hi)):
        return [min(lo, n, hi), max(lo, n, hi)]
    return [lo, hi]


@dataclass(frozen=True, slots=True)
class CountRange:
    """How far an image's count moves when the score threshold moves a little.

    ``count`` boxes were kept at ``score_thr``; ``low`` at ``score_thr + band`` (at most 1) and
    ``high`` at ``score_thr - band`` (at least 0; None when the detector returns no boxes that
    low). A model that is sure of what it sees keeps nearly the same boxes either way; a
    count that swings is a count to check by hand.
    """

    score_thr: float
    band: float
    low: int | None
    count: int
    high: int | None

    @property
    def bounds(self) -> tuple[int, int] | None:
        """The range to show, ``(least, most)`` of ``low``, ``count`` and ``high`` (None without
        both ends). Merged counts need not fall as the threshold rises (fewer boxes, fewer of
        them fused): 30 at 0.5, 28 at 0.45 and 29 at 0.4 was shown as "28 products (30-29)", a
        range upside down that missed the count (an outside review)."""
        if self.high is None or self.low is None:
            return None
        return min(self.low, self.count, self.high), max(self.low, self.count, self.high)

    @property
    def sensitivity(self) -> float | None:
        """The spread of :attr:`bounds` over ``count`` (``(high - low) / count`` when the counts
        fall with the threshold): the share of the count that lies within the band (None
        without both ends; for an empty image, the number of boxes just below the threshold)."""
        b = self.bounds
        if b is None:
            return None
        return (b[1] - b[0]) / self.count if self.count else float(b[1] - b[0])

    @property
    def uncertain(self) -> bool | None:
        """Whether :attr:`sensitivity` reaches :data:`UNCERTAIN_AT` with a swing of at least
        :data:`UNCERTAIN_MIN_BOXES` boxes (None when unknown)."""
        s, b = self.sensitivity, self.bounds
        if s is None or b is None:
            return None
        return bool(s >= UNCERTAIN_AT - 1e-12 and b[1] - b[0] >= UNCERTAIN_MIN_BOXES)

    def as_dict(self) -> dict[str, object]:
        s = self.sensitivity
        return {
            "score_thr": round(self.score_thr, 4), "band": round(self.band, 4),
            "at_scores": [round(min(self.score_thr + self.band, 1.0), 4), round(self.score_thr, 4),
                          round(max(self.score_thr - self.band, 0.0), 4)],
            "counts": [self.low, self.count, self.high],
            "sensitivity": None if s is None else round(s, 4),
            "uncertain": self.uncertain,
        }


def default_batch_size(device: str) -> int:
    """Tiles per ``predict`` call when the caller does not say: 4 on a GPU, 1 on the CPU.

    On the CPU a bigger batch gains nothing (the frameworks already use every core on one
    tile) and costs memory; on a GPU a few tiles per call keep it busy.
    """
    return 4 if device.startswith("cuda") else 1


def finite_or_name(value: Any) -> Any:
    """``value``, or a non-finite float's name (``"nan"``, ``"inf"``): strict JSON readers
    (JavaScript, ``parse_constant``) refuse a bare ``NaN`` or ``Infinity``."""
    return repr(value) if isinstance(value, float) and not math.isfinite(value) else value
