"""A vectorised COCO-style box evaluator (AP@[.5:.95], AP50, AP75, AR@maxDets).

It reproduces ``pycocotools.cocoeval.COCOeval`` for ``iouType="bbox"`` (same greedy matching,
same ignore rules for crowd boxes and area ranges, same 101-point interpolated precision),
with two differences that matter for dense shelves:

* ``max_dets`` defaults to ``(1, 10, 300)``: the SKU-110K paper reports AP and AR at 300
  detections per image, and pycocotools' default of 100 caps recall on shelves that hold
  150-700 products. The last entry is the one AP is computed at (as in pycocotools, whose
  summary uses ``maxDets[2]``); pass ``(1, 10, 400)`` for DenseDet's ``max_per_img``.
* It is array code: IoUs are computed per (image, class) block in chunks, only detection /
  ground-truth pairs with IoU at or above the lowest threshold are kept, and the greedy
  matching walks detection ranks once for a whole chunk of blocks, all thresholds and area
  ranges together. Each detection's outcome is kept in one int8 per (area range, threshold),
  and each class's precision/recall curve is accumulated a chunk of detections at a time, so
  the working arrays stay within ``chunk_elems`` whatever the size of the dataset.

Boxes are pixel ``xyxy`` (x1, y1, x2, y2) of each image, float64. The evaluator converts them
to COCO's (x, y, w, h) internally so the IoU arithmetic is the same as pycocotools'.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..merge.boxes import cross_pairs

__all__ = [
    "EvalImage",
    "CocoMetrics",
    "DEFAULT_MAX_DETS",
    "COCO_IOU_THRS",
    "COCO_REC_THRS",
    "COCO_AREA_RANGES",
    "evaluate_boxes",
    "over_max_dets",
    "box_iou_coco",
]

#: Detections per image considered (AP is computed at the last entry).
DEFAULT_MAX_DETS: tuple[int, ...] = (1, 10, 300)
#: IoU thresholds 0.50:0.05:0.95, computed the way pycocotools does (bit-identical).
COCO_IOU_THRS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
#: Recall points 0:0.01:1.
COCO_REC_THRS: np.ndarray = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1, endpoint=True)
#: Area ranges (pixels squared): all, small, medium, large.
COCO_AREA_RANGES: dict[str, tuple[float, float]] = {
    "all": (0.0, 1e5**2),
    "small": (0.0, 32.0**2),
    "medium": (32.0**2, 96.0**2),
    "large": (96.0**2, 1e5**2),
}


def _f64(value: object, shape_tail: tuple[int, ...], what: str, *, flat: bool = False) -> np.ndarray:
    """``value`` as float64 of shape (N, *shape_tail), finite (``flat``: any shape, flattened to (N,))."""
    if value is None:
        raise InvalidInputError(f"{what}: expected numbers, got None")
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{what}: expected numbers, got {type(value).__name__}") from None
    if flat:
        arr = arr.reshape(-1)
    if arr.size == 0:
        arr = arr.reshape((0,) + shape_tail)
    if arr.shape[1:] != shape_tail or arr.ndim != 1 + len(shape_tail):
        raise InvalidInputError(f"{what}: expected shape (N{''.join(', ' + str(s) for s in shape_tail)}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InvalidInputError(f"{what}: holds NaN or infinite values")
    return arr


#: Largest class id (in size) an :class:`EvalImage` takes, as :class:`densedet_tile.Detections` does.
_LABEL_LIMIT = 2.0**31


def _int_labels(value: object, what: str) -> np.ndarray:
    """``value`` as a flat int64 array of class ids; whole-valued floats (2.0) count as ids,
    anything else (1.7, NaN, text, None) is refused rather than cut to an integer."""
    raw = np.asarray(value).reshape(-1)
    if raw.size == 0:
        return np.zeros(0, np.int64)
    if raw.dtype == np.bool_ or np.issubdtype(raw.dtype, np.integer):
        big = np.abs(raw.astype(np.float64)) > _LABEL_LIMIT  # float: uint64 does not wrap, int64's minimum has no abs
        if big.any():
            raise InvalidInputError(f"{what}: class id {raw[big][0].item()!r} is out of range (at most {_LABEL_LIMIT:g} in size)")
        return raw.astype(np.int64)
    if raw.dtype == object:
        # Python objects: numbers pass through float (exact below the limit), the rest is refused
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                   for v in raw):
            bad = next(v for v in raw if not isinstance(v, (int, float, np.integer, np.floating))
                       or isinstance(v, (bool, np.bool_)))
            raise InvalidInputError(f"{what}: expected integer class ids, got {bad!r}")
        raw = np.array([float(v) for v in raw], dtype=np.float64)
    if not np.issubdtype(raw.dtype, np.floating):
        raise InvalidInputError(f"{what}: expected integer class ids, got {raw[0].item()!r}")
    wrong = ~np.isfinite(raw) | (raw != np.round(raw))
    if wrong.any():
        raise InvalidInputError(f"{what}: expected integer class ids, got {raw[wrong][0].item()!r}")
    big = np.abs(raw) > _LABEL_LIMIT
    if big.any():
        raise InvalidInputError(f"{what}: class id {raw[big][0].item()!r} is out of range (at most {_LABEL_LIMIT:g} in size)")
    return raw.astype(np.int64)


@dataclass(frozen=True, eq=False)
class EvalImage:
    """Ground truth and detections of one image, as the evaluator consumes them.

    ``gt_xyxy`` float64 (G, 4) and ``dt_xyxy`` float64 (D, 4) in the image's pixel frame;
    ``gt_labels`` / ``dt_labels`` int64 category ids; ``dt_scores`` float64 (D,).
    ``gt_area`` (G,) is the area used for the small/medium/large ranges (defaults to the box
    area; COCO files carry their own); ``gt_crowd`` (G,) marks crowd regions (ignored, may
    absorb any number of detections). ``name`` only labels error messages and per-image output.
    """

    name: str
    gt_xyxy: np.ndarray
    gt_labels: np.ndarray
    dt_xyxy: np.ndarray
    dt_scores: np.ndarray
    dt_labels: np.ndarray
    gt_area: np.ndarray | None = None
    gt_crowd: np.ndarray | None = None
    #: (G, 2) / (D, 2): widths and heights as a COCO file gave them, used instead of x2 - x1,
    #: y2 - y1 (which floating point may not give back exactly); None: from the corners.
    gt_wh: np.ndarray | None = None
    dt_wh: np.ndarray | None = None

    def __post_init__(self) -> None:
        gx = _f64(self.gt_xyxy, (4,), f"{self.name}: ground-truth boxes")
        dx = _f64(self.dt_xyxy, (4,), f"{self.name}: detection boxes")
        g, d = len(gx), len(dx)
        gl = _int_labels(self.gt_labels, f"{self.name}: ground-truth labels")
        dl = _int_labels(self.dt_labels, f"{self.name}: detection labels")
        ds = _f64(self.dt_scores, (), f"{self.name}: scores", flat=True)
        if gl.shape != (g,) or dl.shape != (d,) or ds.shape != (d,):
            raise InvalidInputError(
                f"{self.name}: {g} ground-truth boxes with {gl.size} labels, {d} detections with "
                f"{dl.size} labels and {ds.size} scores"
            )
        for what, b in (("ground-truth", gx), ("detection", dx)):
            if len(b) and (np.any(b[:, 2] < b[:, 0]) or np.any(b[:, 3] < b[:, 1])):
                raise InvalidInputError(f"{self.name}: a {what} box has x2 < x1 or y2 < y1")
        with np.errstate(over="ignore", invalid="ignore"):  # a box from x = -1e308 to 1e308: refused below
            gwh = gx[:, 2:] - gx[:, :2] if self.gt_wh is None else _f64(self.gt_wh, (2,), f"{self.name}: gt_wh")
            dwh = dx[:, 2:] - dx[:, :2] if self.dt_wh is None else _f64(self.dt_wh, (2,), f"{self.name}: dt_wh")
            if len(gwh) != g or len(dwh) != d:
                raise InvalidInputError(f"{self.name}: gt_wh / dt_wh must have one row per box")
            for what, wh in (("ground-truth", gwh), ("detection", dwh)):
                if not (np.all(np.isfinite(wh)) and np.all(np.isfinite(wh[:, 0] * wh[:, 1]))):
                    raise InvalidInputError(f"{self.name}: a {what} box is too large: its width, height or area is "
                                            "beyond floating point")
        area = (gx[:, 2] - gx[:, 0]) * (gx[:, 3] - gx[:, 1]) if self.gt_area is None else self.gt_area
        area = _f64(area, (), f"{self.name}: areas", flat=True)
        crowd = np.zeros(g, bool) if self.gt_crowd is None else np.asarray(self.gt_crowd).astype(bool).reshape(-1)
        if area.shape != (g,) or crowd.shape != (g,):
            raise InvalidInputError(f"{self.name}: gt_area / gt_crowd must have one entry per ground-truth box")
        for name, arr in (
            ("gt_xyxy", gx), ("gt_labels", gl), ("dt_xyxy", dx), ("dt_scores", ds),
            ("dt_labels", dl), ("gt_area", area), ("gt_crowd", crowd), ("gt_wh", gwh), ("dt_wh", dwh),
        ):
            arr = np.array(arr, copy=True)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)


@dataclass(frozen=True, eq=False)
class CocoMetrics:
    """Result of :func:`evaluate_boxes`.

    ``precision`` (T, R, K, A, M) and ``recall`` (T, K, A, M) have pycocotools' layout and
    -1 where undefined (T IoU thresholds, R recall points, K categories, A area ranges,
    M max-detection settings). ``stats`` holds the summary figures by name: ``AP``,
    ``AP50``, ``AP75``, ``AP_small``, ``AP_medium``, ``AP_large`` (at ``max_dets[-1]``),
    ``AR@<m>`` for every ``m`` in ``max_dets`` and ``AR_small``/``AR_medium``/``AR_large``
    (at ``max_dets[-1]``); -1 where no ground truth makes the figure defined.
    """

    precision: np.ndarray
    recall: np.ndarray
    max_dets: tuple[int, ...]
    iou_thrs: np.ndarray
    categories: tuple[int, ...]
    area_names: tuple[str, ...]
    num_images: int
    num_gt: int
    num_dt: int
    stats: dict[str, float] = field(default_factory=dict)

    def coco_stats(self) -> list[float]:
        """The 12 numbers of ``COCOeval.stats`` in their usual order (needs 3 ``max_dets``)."""
        if len(self.max_dets) != 3:
            raise InvalidInputError(f"coco_stats needs exactly 3 max_dets, got {self.max_dets}")
        m0, m1, m2 = self.max_dets
        s = self.stats
        missing = [f"{k}_{a}" for a in ("small", "medium", "large") for k in ("AP",) if f"{k}_{a}" not in s]
        if missing:
            raise InvalidInputError("coco_stats needs the area ranges small, medium and large "
                                    f"(these metrics were evaluated without {', '.join(missing)})")
        return [
            s["AP"], s["AP50"], s["AP75"], s["AP_small"], s["AP_medium"], s["AP_large"],
            s[f"AR@{m0}"], s[f"AR@{m1}"], s[f"AR@{m2}"], s["AR_small"], s["AR_medium"], s["AR_large"],
        ]


def box_iou_coco(dt_xywh: np.ndarray, gt_xywh: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """IoU of every detection with every ground-truth box, pycocotools' arithmetic.

    ``dt_xywh`` (..., D, 4), ``gt_xywh`` (..., G, 4) as (x, y, w, h) float64; ``crowd`` (..., G)
    bool. Returns (..., D, G). For a crowd box the union is the detection's own area.
    """
    dx, dy, dw, dh = (dt_xywh[..., :, None, i] for i in range(4))
    gx, gy, gw, gh = (gt_xywh[..., None, :, i] for i in range(4))
    # boxes near float64's limit may overflow here (two boxes 2e308 apart, two areas of 1e308
    # added): an infinite gap or union is an IoU of 0, as pycocotools' C arithmetic gives it
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        iw = np.minimum(dx + dw, gx + gw) - np.maximum(dx, gx)
        ih = np.minimum(dy + dh, gy + gh) - np.maximum(dy, gy)
        inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
        da = dw * dh
        union = np.where(crowd[..., None, :], da, da + gw * gh - inter)
        iou = np.where(inter > 0, inter / union, 0.0)
    return iou


#: A block (image and class) with more detection x ground-truth pairs than this takes its
#: candidates from a spatial index (:func:`~densedet_tile.merge.boxes.cross_pairs`) instead of the
#: screen of every pair: a panorama of 20 000 products took 7.3 s, 50 000 took 43 s (BENCHMARKS.md).
SPARSE_PAIRS = 4_000_000


#: The largest reach of a block screened in float32: the screen multiplies sides, and adds two
#: areas, which must stay in float32's range (3.4e38).
_F32_REACH = float(np.sqrt(np.finfo(np.float32).max)) / 4


def _iou_screen(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray, thr: float) -> np.ndarray:
    """bool (B, D, G): IoU (float32, crowd-aware) >= ``thr``; a cheap superset screen."""
    dx, dy, dw, dh = (dt[:, :, None, i] for i in range(4))
    gx, gy, gw, gh = (gt[:, None, :, i] for i in range(4))
    with np.errstate(over="ignore", invalid="ignore"):  # (as in box_iou_coco: far apart, no pair)
        iw = np.minimum(dx + dw, gx + gw)
        iw -= np.maximum(dx, gx)
        ih = np.minimum(dy + dh, gy + gh)
        ih -= np.maximum(dy, gy)
        np.maximum(iw, 0, out=iw)
        np.maximum(ih, 0, out=ih)
        inter = iw
        inter *= ih
        da = dw * dh
        union = np.where(crowd[:, None, :], da, da + gw * gh - inter)
        # inter >= thr * union, without a division; zero intersection never passes
        return (inter >= thr * union) & (inter > 0)


#: The largest max_dets taken: more detections than any image holds (beyond 2**63 the counts overflowed).
MAX_DETS_LIMIT = 10**9


def _validate_max_dets(max_dets: Sequence[int]) -> tuple[int, ...]:
    md = tuple(max_dets)
    if not md or any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 1 <= m <= MAX_DETS_LIMIT
                     for m in md):
        raise InvalidInputError(f"max_dets must be integers from 1 to {MAX_DETS_LIMIT}, got {max_dets!r}")
    if list(md) != sorted(md):
        raise InvalidInputError(f"max_dets must be increasing, got {max_dets!r}")
    return tuple(int(m) for m in md)


def _index_dtype(n: int) -> type:
    """int32 for indices below ``n`` where they fit (half the memory of int64), else int64."""
    return np.int32 if n < 2**31 else np.int64


@dataclass(frozen=True, eq=False)
class _Flat:
    """Every box the evaluation scores, in block order (image, then category), as flat arrays.

    Block ``b`` holds ground truths ``gt_*[g_start[b]:g_start[b] + g_count[b]]`` and detections
    ``dt_*[d_start[b]:d_start[b] + d_count[b]]``, the detections highest score first and cut to
    the largest max_dets; ``dt_rank`` is each detection's place in its block, ``dt_cat`` /
    ``gt_cat`` the category index."""

    gt_xywh: np.ndarray
    gt_area: np.ndarray
    gt_crowd: np.ndarray
    gt_cat: np.ndarray
    dt_xywh: np.ndarray
    dt_score: np.ndarray
    dt_rank: np.ndarray
    dt_cat: np.ndarray
    g_start: np.ndarray
    g_count: np.ndarray
    d_start: np.ndarray
    d_count: np.ndarray


def _flatten(images: Sequence[EvalImage], cats: np.ndarray, class_agnostic: bool, dmax: int) -> _Flat:
    """Blocks of (image, category) in pycocotools' order, built with sorts instead of a loop per block.

    A block exists for every (image, category of the dataset) holding a ground truth or a
    detection. Within a block the ground truths keep their order in the image and the
    detections are sorted by score, high first, ties in image order (a stable sort, as
    pycocotools' mergesort). Class-agnostic: one block per image, its boxes taken label by label
    (stable), as ``useCats=0`` takes them category by category."""
    n_img, kc = len(images), len(cats)
    g_n = np.array([len(im.gt_labels) for im in images], dtype=np.int64)
    d_n = np.array([len(im.dt_labels) for im in images], dtype=np.int64)
    img_t = _index_dtype(n_img)
    g_img = np.repeat(np.arange(n_img, dtype=img_t), g_n)
    d_img = np.repeat(np.arange(n_img, dtype=img_t), d_n)
    g_lab = np.concatenate([im.gt_labels for im in images] + [np.zeros(0, np.int64)])
    d_lab = np.concatenate([im.dt_labels for im in images] + [np.zeros(0, np.int64)])
    d_score = np.concatenate([im.dt_scores for im in images] + [np.zeros(0)])
    if kc == 0:  # no ground truth anywhere: no category, nothing is scored
        g_key, g_order = np.zeros(0, np.int64), np.zeros(0, np.int64)
        d_key, d_order = np.zeros(0, np.int64), np.zeros(0, np.int64)
        g_cat = d_cat = np.zeros(0, np.int64)
    elif class_agnostic:
        g_order = np.lexsort((g_lab, g_img))  # image, then label, then place (lexsort is stable)
        d_order = np.lexsort((d_lab, -d_score, d_img))  # image, score high first, label, place
        g_key, d_key = g_img[g_order], d_img[d_order]
        g_cat, d_cat = np.zeros(len(g_order), np.int64), np.zeros(len(d_order), np.int64)
    else:
        g_k = np.searchsorted(cats, g_lab)  # every ground-truth label is a category
        d_k = np.searchsorted(cats, d_lab)
        known = d_k < kc
        known[known] = cats[d_k[known]] == d_lab[known]
        d_keep = np.flatnonzero(known)  # a detection of a class no ground truth has is not scored
        d_k, d_img_k, d_score_k = d_k[d_keep], d_img[d_keep], d_score[d_keep]
        g_order = np.lexsort((g_k, g_img))
        d_order = np.lexsort((-d_score_k, d_k, d_img_k))
        g_cat, d_cat = g_k[g_order], d_k[d_order]
        g_key = g_img[g_order].astype(np.int64) * kc + g_cat
        d_key = d_img_k[d_order].astype(np.int64) * kc + d_cat
        d_order = d_keep[d_order]
        del d_k, d_img_k, d_score_k, known, d_keep
    del g_img, d_img, g_lab, d_lab

    def distinct(sorted_keys: np.ndarray) -> np.ndarray:
        return sorted_keys[np.flatnonzero(np.diff(sorted_keys, prepend=sorted_keys[:1] - 1))]

    keys = np.union1d(distinct(g_key), distinct(d_key))  # sorted: image, then category
    nb = len(keys)
    g_start = np.searchsorted(g_key, keys, "left")
    g_count = np.searchsorted(g_key, keys, "right") - g_start
    d_first = np.searchsorted(d_key, keys, "left")
    d_all = np.searchsorted(d_key, keys, "right") - d_first
    # each detection's rank in its block; those past the largest max_dets are dropped
    rank = np.arange(len(d_order), dtype=np.int64) - np.repeat(d_first, d_all)
    within = rank < dmax
    d_order, rank, d_cat = d_order[within], rank[within], d_cat[within]
    d_count = np.minimum(d_all, dmax)
    d_start = np.concatenate([[0], np.cumsum(d_count)[:-1]]).astype(np.int64) if nb else np.zeros(0, np.int64)

    def rows(arrays: list[np.ndarray], order: np.ndarray, width: int) -> np.ndarray:
        """The images' arrays concatenated, rows taken in ``order``."""
        return np.concatenate(arrays + [np.zeros((0, width))])[order] if len(order) else np.zeros((0, width))

    gt_xywh = np.concatenate([rows([im.gt_xyxy[:, :2] for im in images], g_order, 2),
                              rows([im.gt_wh for im in images], g_order, 2)], axis=1)
    dt_xywh = np.concatenate([rows([im.dt_xyxy[:, :2] for im in images], d_order, 2),
                              rows([im.dt_wh for im in images], d_order, 2)], axis=1)
    gt_area = np.concatenate([im.gt_area for im in images] + [np.zeros(0)])[g_order]
    gt_crowd = np.concatenate([im.gt_crowd for im in images] + [np.zeros(0, bool)])[g_order]
    cat_t = _index_dtype(kc)
    return _Flat(
        gt_xywh=gt_xywh, gt_area=gt_area, gt_crowd=gt_crowd, gt_cat=g_cat.astype(cat_t),
        dt_xywh=dt_xywh, dt_score=d_score[d_order], dt_rank=rank.astype(_index_dtype(dmax)),
        dt_cat=d_cat.astype(cat_t), g_start=g_start, g_count=g_count, d_start=d_start, d_count=d_count,
    )


def _padded(src: np.ndarray, start: np.ndarray, count: np.ndarray, width: int, fill: object) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``src[start[b]:start[b] + count[b]]`` of each block ``b`` padded to ``width`` with
    ``fill``: (nb, width, ...) and the (nb, width) mask of real rows."""
    valid = np.arange(width)[None, :] < count[:, None]
    out = np.full((len(start), width) + src.shape[1:], fill, dtype=src.dtype)
    if valid.any():
        out[valid] = src[(start[:, None] + np.arange(width)[None, :])[valid]]
    return out, valid


#: Detection outcomes kept per (detection, area range, IoU threshold) in one int8: a true
#: positive, a false positive, or ignored (matched to an ignored ground truth, or unmatched and
#: outside the area range), which is all the accumulation reads of pycocotools' flags.
_FP, _TP, _IGNORED = 0, 1, 2


def _match_bucket(fl: _Flat, members: np.ndarray, thrs: np.ndarray, arng: np.ndarray, chunk_elems: int,
                  outcome: np.ndarray) -> None:
    """pycocotools' greedy matching for the blocks ``members`` (indices into ``fl``'s blocks),
    padded to the largest of them; writes each of their detections' (A, T) outcomes (``_TP``,
    ``_FP``, ``_IGNORED``) into its row of ``outcome`` (N, A, T)."""
    A, T = len(arng), len(thrs)
    nb = len(members)
    gcount, dcount = fl.g_count[members], fl.d_count[members]
    gmax = int(gcount.max()) if nb else 0
    dpad = int(dcount.max()) if nb else 0

    # Padded per-block arrays, gathered from the flat ones in one go.
    gt_xywh, gt_valid = _padded(fl.gt_xywh, fl.g_start[members], gcount, max(gmax, 1), 0.0)
    gt_area, _ = _padded(fl.gt_area, fl.g_start[members], gcount, max(gmax, 1), 0.0)
    gt_crowd, _ = _padded(fl.gt_crowd, fl.g_start[members], gcount, max(gmax, 1), False)
    dt_xywh, dt_valid = _padded(fl.dt_xywh, fl.d_start[members], dcount, max(dpad, 1), 0.0)
    dt_area = dt_xywh[..., 2] * dt_xywh[..., 3]

    # gt ignore per area range: (A, nb, G)
    a_lo, a_hi = arng[:, 0][:, None, None], arng[:, 1][:, None, None]
    gt_ig = gt_crowd[None] | (gt_area[None] < a_lo) | (gt_area[None] > a_hi)

    # ---- candidate pairs: IoU >= the lowest effective threshold, in chunks of blocks ---------
    thr_eff = np.minimum(thrs, 1 - 1e-10)
    t_low = float(thr_eff.min())
    per_block = max(dpad, 1) * max(gmax, 1)
    step = max(1, chunk_elems // per_block)
    pb, pd, pg, piou = [], [], [], []
    # float32 is exact enough for a screen once each block is moved near the origin, unless a
    # block spans so many pixels that float32's spacing there is not small against its smallest
    # box (tiny boxes across a million-pixel panorama): then the screen runs in float64
    origin = np.zeros((nb, 1, 4))
    screen_dtype: type = np.float32
    if nb:
        lo = np.minimum(np.where(gt_valid[..., None], gt_xywh, np.inf).min(1), np.where(dt_valid[..., None], dt_xywh, np.inf).min(1))
        origin[:, 0, :2] = np.where(np.isfinite(lo[:, :2]), lo[:, :2], 0.0)
        with np.errstate(over="ignore"):  # (boxes from x = -1e308 to 1e308 overflow: see below)
            shifted = [np.abs(a - origin)[v] for a, v in ((gt_xywh, gt_valid), (dt_xywh, dt_valid))]
            reach = max((float((s[:, :2] + s[:, 2:]).max()) for s in shifted if len(s)), default=0.0)
        sides = np.concatenate([s[:, 2:].ravel() for s in shifted])
        sides = sides[sides > 0]
        smallest = float(sides.min()) if len(sides) else 1.0
        # the screen multiplies sides: a block reaching past the square root of float32's range
        # (1.8e19) is screened in float64 too, and one whose reach overflows even float64 is
        # screened where it lies (boxes far out are measured exactly, only moving them overflows)
        if not np.isfinite(reach):
            origin[:] = 0.0
        if reach > _F32_REACH or 4 * float(np.spacing(np.float32(min(reach, _F32_REACH)))) > 1e-3 * smallest:
            screen_dtype = np.float64
    dt32, gt32 = (dt_xywh - origin).astype(screen_dtype), (gt_xywh - origin).astype(screen_dtype)
    # pair indices are kept as int32 (block in chunk, detection, ground truth all fit)
    ix_t = _index_dtype(max(nb, dpad, gmax))

    def exact(b: np.ndarray, d: np.ndarray, g: np.ndarray) -> None:
        """Keep the pairs whose exact (float64) IoU reaches the lowest threshold."""
        iou = box_iou_coco(dt_xywh[b, d][:, None, :], gt_xywh[b, g][:, None, :], gt_crowd[b, g][:, None])[:, 0, 0]
        keep = iou >= t_low
        pb.append(b[keep].astype(ix_t))
        pd.append(d[keep].astype(ix_t))
        pg.append(g[keep].astype(ix_t))
        piou.append(iou[keep])

    # a block of many detections and ground truths (a panorama's) gets its overlapping pairs from
    # a spatial index: the screen below compares every detection with every ground truth
    sparse = dcount * gcount > SPARSE_PAIRS
    for b0 in np.flatnonzero(sparse):
        nd, ng = int(dcount[b0]), int(gcount[b0])
        dxy = np.concatenate([dt_xywh[b0, :nd, :2], dt_xywh[b0, :nd, :2] + dt_xywh[b0, :nd, 2:]], 1)
        gxy = np.concatenate([gt_xywh[b0, :ng, :2], gt_xywh[b0, :ng, :2] + gt_xywh[b0, :ng, 2:]], 1)
        d, g = cross_pairs(dxy, gxy)  # every pair sharing a positive area: nothing else has an IoU
        exact(np.full(d.size, b0, np.int64), d, g)
    # the others: a float32 screen (loose by 1e-2), then the exact IoU of the survivors only; a
    # block larger than the chunk on its own is screened a band of its detections at a time
    dense = np.flatnonzero(~sparse)
    d_step = max(dpad, 1) if step > 1 else max(1, chunk_elems // max(gmax, 1))
    for s, d0 in ((s, d0) for s in range(0, dense.size, step) for d0 in range(0, max(dpad, 1), d_step)):
        rows, d1 = dense[s:s + step], d0 + d_step
        ok = _iou_screen(dt32[rows, d0:d1], gt32[rows], gt_crowd[rows], t_low - 1e-2)
        ok &= dt_valid[rows, d0:d1, None] & gt_valid[rows, None, :]
        b, d, g = np.nonzero(ok)
        exact(rows[b], d + d0, g)
    pb_a = np.concatenate(pb) if pb else np.zeros(0, ix_t)
    pd_a = np.concatenate(pd) if pd else np.zeros(0, ix_t)
    pg_a = np.concatenate(pg) if pg else np.zeros(0, ix_t)
    piou_a = np.concatenate(piou) if piou else np.zeros(0)
    # ordered by block, detection, ground truth (as the dense screen gives them)
    order = np.lexsort((pg_a, pd_a, pb_a))
    pb_a, pd_a, pg_a, piou_a = pb_a[order], pd_a[order], pg_a[order], piou_a[order]
    # rank of each pair within its (block, detection) row -> dense (nb, D, K) candidate table
    row = pb_a.astype(np.int64) * max(dpad, 1) + pd_a
    if row.size:
        starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
        counts = np.diff(np.r_[starts, row.size])
        rank = np.arange(row.size) - np.repeat(starts, counts)
        kmax = int(counts.max())
    else:
        rank = np.zeros(0, np.int64)
        kmax = 0
    K = max(kmax, 1)
    cand_g = np.full((nb, max(dpad, 1), K), -1, ix_t)
    cand_iou = np.full((nb, max(dpad, 1), K), -1.0)
    cand_g[pb_a, pd_a, rank] = pg_a
    cand_iou[pb_a, pd_a, rank] = piou_a

    # ---- greedy matching, one detection rank at a time, for all (A, T, blocks) at once -------
    gt_matched = np.zeros((A, T, nb, max(gmax, 1)), bool)
    dt_match = np.zeros((A, T, nb, max(dpad, 1)), bool)
    dt_ig = np.zeros((A, T, nb, max(dpad, 1)), bool)
    bidx = np.arange(nb)[:, None]
    a_ix = np.arange(A)[:, None, None, None]
    t_ix = np.arange(T)[None, :, None, None]
    b_ix = np.arange(nb)[None, None, :, None]
    for r in range(dpad if kmax else 0):
        cg = cand_g[:, r, :]  # (nb, K)
        valid = cg >= 0
        if not valid.any():
            continue
        cgc = np.where(valid, cg, 0)
        ci = cand_iou[:, r, :]
        ig = gt_ig[:, bidx, cgc]  # (A, nb, K)
        crowd = gt_crowd[bidx, cgc]  # (nb, K)
        taken = gt_matched[a_ix, t_ix, b_ix, cgc[None, None]]  # (A, T, nb, K)
        elig = valid & (ci[None, None] >= thr_eff[None, :, None, None]) & (~taken | crowd)
        elig_reg = elig & ~ig[:, None]
        has_reg = elig_reg.any(-1, keepdims=True)
        cand = np.where(has_reg, elig_reg, elig & ig[:, None])
        key = np.where(cand, ci[None, None], -1.0)
        # best IoU, ties to the later ground truth (pycocotools keeps replacing on >=)
        pick = K - 1 - np.argmax(key[..., ::-1], axis=-1)  # (A, T, nb)
        hit = cand.any(-1)
        g_pick = np.take_along_axis(cgc[None, None], pick[..., None], -1)[..., 0]
        ig_pick = np.take_along_axis(ig[:, None], pick[..., None], -1)[..., 0]
        dt_match[..., r] = hit
        dt_ig[..., r] = hit & ig_pick
        aa, tt, bb = np.nonzero(hit)
        gt_matched[aa, tt, bb, g_pick[aa, tt, bb]] = True
    # unmatched detections outside the area range are ignored
    d_out = (dt_area[None] < arng[:, 0][:, None, None]) | (dt_area[None] > arng[:, 1][:, None, None])
    dt_ig |= ~dt_match & d_out[:, None]

    # one int8 per (detection, area, threshold): what the accumulation needs of the two flags
    code = np.where(dt_ig, np.int8(_IGNORED), dt_match.astype(np.int8))  # (A, T, nb, D)
    where = (fl.d_start[members][:, None] + np.arange(max(dpad, 1))[None, :])[dt_valid]
    outcome[where] = code.transpose(2, 3, 0, 1)[dt_valid]


def _tp_needed(npig: np.ndarray) -> np.ndarray:
    """(len(npig), R) int64: for each recall point, the fewest true positives ``c`` whose recall
    ``c / npig`` (float64, as the accumulation divides) reaches it.

    Recall after the i-th detection is ``tp[i] / npig``, nondecreasing in ``tp``, so pycocotools'
    ``searchsorted(recall, point, side="left")`` is the index of the first detection where ``tp``
    reaches this count (0 when the count is 0)."""
    p = npig.astype(np.float64)[:, None]
    need = np.ceil(COCO_REC_THRS[None, :] * p).astype(np.int64)
    # the product may round either way, by one count at most: step the estimate until it is
    # the least count that does
    for _ in range(8):
        low = need / p < COCO_REC_THRS
        high = (need > 0) & ((need - 1) / p >= COCO_REC_THRS)
        if not (low.any() or high.any()):
            return need
        need += low
        need -= high
    raise AssertionError("recall counts did not settle")  # pragma: no cover


def _pr_curves(outcome: np.ndarray, sel: np.ndarray, areas: np.ndarray, npig: np.ndarray,
               budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall (nA, T) and interpolated precision (nA, T, R) of one category at one max_dets.

    ``sel``: the category's detections (rows of ``outcome``) highest score first; ``areas``: the
    area ranges that have ground truth, ``npig`` their counts. The same arithmetic as
    pycocotools' accumulate (integer cumulative sums turned to float64, the same divisions, the
    precision envelope as a running maximum), taken a chunk of detections at a time so that a
    category of a million detections needs no (T, N) float arrays: a forward pass counts each
    chunk's true positives, a backward pass computes the precision, carries the envelope's
    maximum from the chunks after, and reads it where each recall point is first reached."""
    nA, T = len(areas), outcome.shape[2]
    R = len(COCO_REC_THRS)
    n = len(sel)
    if n == 0:
        return np.zeros((nA, T)), np.zeros((nA, T, R))
    cols = nA * T  # one column per (area range, threshold), area-major
    npig_col = np.repeat(npig.astype(np.float64), T)
    need = np.repeat(_tp_needed(npig), T, axis=0)  # (cols, R)
    # a quarter of the element budget per chunk: its float64 arrays and the positions of its
    # true positives (int64) stay within the bytes of one of the screen's float32 arrays
    step = max(1, budget // (4 * cols))
    starts = list(range(0, n, step))
    whole = outcome.shape[1] == nA

    def chunk(s: int) -> np.ndarray:
        f = outcome[sel[s:s + step]]
        return (f if whole else f[:, areas]).reshape(-1, cols)

    # forward: true and false positives per chunk
    kept = chunk(0) if len(starts) == 1 else None
    n_tp = np.zeros((len(starts), cols), np.int64)
    n_fp = np.zeros((len(starts), cols), np.int64)
    for c, s in enumerate(starts):
        f = kept if kept is not None else chunk(s)
        n_tp[c] = (f == _TP).sum(0)
        n_fp[c] = (f == _FP).sum(0)
    tp_after = np.cumsum(n_tp, axis=0)
    tp_before, fp_before = tp_after - n_tp, np.cumsum(n_fp, axis=0) - n_fp
    tp_total = tp_after[-1]
    recall = tp_total.astype(np.float64) / npig_col
    # each recall point is read at the first detection with tp >= need: in the chunk where the
    # running count reaches it; a point beyond the last detection's recall stays 0 (pycocotools
    # stops at the first such point; need grows with the point, so they are the last ones)
    reached = need <= tp_total[:, None]
    in_chunk = (tp_after[:, :, None] < need[None]).sum(0)  # (cols, R)
    q = np.zeros((cols, R))
    eps = np.spacing(1)
    after = np.full(cols, -np.inf)  # the envelope's maximum over the chunks after this one
    for c in range(len(starts) - 1, -1, -1):
        f = kept if kept is not None else chunk(starts[c])
        is_tp = f == _TP
        # counts summed in float64 are exact integers (below 2**53): the int64 sums, converted
        tp = np.cumsum(is_tp, axis=0, dtype=np.float64)
        tp += tp_before[c]
        pr = np.cumsum(f == _FP, axis=0, dtype=np.float64)
        pr += fp_before[c]
        pr += tp
        pr += eps
        np.divide(tp, pr, out=pr)  # tp / (fp + tp + eps), in place
        env = tp  # (tp is not needed again: its array takes the envelope)
        np.maximum.accumulate(pr[::-1], axis=0, out=env[::-1])
        np.maximum(env, after, out=env)
        after = env[0].copy()
        cc, jj = np.nonzero(reached & (in_chunk == c))
        if cc.size:
            # the need-th true positive of the run is this chunk's r-th of its column; need 0 is
            # the first detection
            r = need[cc, jj] - tp_before[c, cc]
            col_tp = np.nonzero(is_tp.T)[1]  # positions of true positives, column by column
            col_start = np.concatenate([[0], np.cumsum(n_tp[c])[:-1]])
            pos = np.zeros(cc.size, np.int64)
            hit = r > 0
            pos[hit] = col_tp[col_start[cc[hit]] + r[hit] - 1]
            q[cc, jj] = env[pos, cc]
    return recall.reshape(nA, T), q.reshape(nA, T, R)


def over_max_dets(images: Sequence[EvalImage], max_det: int) -> tuple[int, int]:
    """How many ``images`` hold more ground-truth boxes (crowd ones left out) and more
    detections of one class than ``max_det``, the number of detections AP and the last AR count
    per image and class, and the largest such ground-truth count (0, 0 when none). There AP and
    AR stay low however good the boxes: a panorama of 1933 products scored AP 0.118 at 300 and
    0.711 at 3000 (an outside review). Detections within the cap lose nothing to it."""
    over, most = 0, 0
    for im in images:
        gl = np.asarray(im.gt_labels)
        if im.gt_crowd is not None:
            gl = gl[~np.asarray(im.gt_crowd, bool)]
        dl = np.asarray(im.dt_labels)
        if len(gl) <= max_det or len(dl) <= max_det:
            continue
        g_cls, g_n = np.unique(gl, return_counts=True)
        d_cls, d_n = np.unique(dl, return_counts=True)
        both = [int(n) for c, n in zip(g_cls, g_n) if n > max_det and d_n[d_cls == c].sum() > max_det]
        if both:
            over += 1
            most = max(most, max(both))
    return over, most


def evaluate_boxes(
    images: Sequence[EvalImage],
    *,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    iou_thrs: Sequence[float] | None = None,
    area_ranges: dict[str, tuple[float, float]] | None = None,
    class_agnostic: bool = False,
    chunk_elems: int = 4_000_000,
) -> CocoMetrics:
    """COCO box evaluation of detections against ground truth, image by image.

    ``images`` holds one :class:`EvalImage` per evaluated image (images without detections
    count with zero detections). Categories are the union of the ground-truth labels (a
    detection class with no ground truth anywhere is not a category of the dataset and its
    detections are not scored, as in pycocotools). With ``class_agnostic`` every label is
    taken as one class, an image's boxes in label order (stable), as pycocotools' ``useCats=0``
    takes them category by category. Ties in score keep the order of ``images`` then of the
    detections, like pycocotools with images sorted by id.

    ``chunk_elems`` bounds the working arrays: the IoU screen's (D x G elements), the
    matching's (area range x threshold x detection flags of a chunk of blocks) and the
    accumulation's (a quarter of it in detections x area ranges x thresholds). The figures do
    not depend on it; what still grows with the dataset is one flat copy of the boxes and an
    int8 outcome per detection, area range and threshold (about 130 bytes a detection).
    """
    md = _validate_max_dets(max_dets)
    try:
        thrs = COCO_IOU_THRS if iou_thrs is None else np.asarray(iou_thrs, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InvalidInputError(f"iou_thrs must be numbers in (0, 1], got {iou_thrs!r}") from None
    # asked as "inside the range" so that NaN (which fails every comparison) is refused too
    if thrs.size == 0 or not np.all((thrs > 0) & (thrs <= 1)):
        raise InvalidInputError(f"iou_thrs must be numbers in (0, 1], got {iou_thrs!r}")
    ranges = COCO_AREA_RANGES if area_ranges is None else dict(area_ranges)
    area_names = tuple(ranges)
    try:
        arng = np.array([ranges[a] for a in area_names], dtype=np.float64).reshape(-1, 2)
        ok = arng.shape == (len(area_names), 2) and bool(np.all(arng[:, 0] <= arng[:, 1]))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidInputError(f"area_ranges must map names to (low, high) areas, got {area_ranges!r}")
    if "all" not in ranges:
        # AP, AP50, AP75 and the ARs are the "all" range's (pycocotools' too): without it they
        # were silently the first range's, or an empty set divided by zero
        raise InvalidInputError(f"area_ranges must include 'all' (AP and AR are measured over it), got {area_ranges!r}")
    if isinstance(chunk_elems, bool) or not isinstance(chunk_elems, (int, np.integer)) or chunk_elems < 1:
        raise InvalidInputError(f"chunk_elems must be a positive integer, got {chunk_elems!r}")
    images = list(images)
    for im in images:
        if not isinstance(im, EvalImage):
            raise InvalidInputError(f"evaluate_boxes takes EvalImage items, got {type(im).__name__}")
    T, A, M, R = len(thrs), len(area_names), len(md), len(COCO_REC_THRS)
    dmax = md[-1]

    # ---- blocks: one per (image, category) holding any ground truth or detection -------------
    cats = np.unique(np.concatenate([im.gt_labels for im in images] + [np.zeros(0, np.int64)]))
    if class_agnostic and len(cats):
        cats = np.zeros(1, np.int64)
    Kc = len(cats)
    fl = _flatten(images, cats, class_agnostic, dmax)
    nb, n_dt = len(fl.g_start), len(fl.dt_score)
    budget = max(int(chunk_elems), 1)

    # ---- matching, bucket by bucket of blocks of similar size --------------------------------
    # Blocks are padded to the largest of their bucket only: one panorama of 20 000 boxes among
    # SKU-110K photos of 150 does not pad every photo to 20 000 x 20 000. A bucket is matched a
    # chunk of blocks at a time, the chunk's (area, threshold, block, detection) flags within
    # the element budget, so the working arrays do not grow with the dataset; each detection's
    # outcome lands in its row of one int8 array (N, A, T).
    outcome = np.zeros((n_dt, A, T), np.int8)
    size = np.maximum(np.maximum(fl.g_count, fl.d_count), 1)
    by_size = np.argsort(size, kind="stable")
    sorted_size = size[by_size]
    first = 0
    while first < nb:
        last = int(np.searchsorted(sorted_size, 2 * sorted_size[first], side="right"))
        step = max(1, budget // (A * T * int(sorted_size[last - 1])))
        for s in range(first, last, step):
            _match_bucket(fl, by_size[s:min(s + step, last)], thrs, arng, chunk_elems, outcome)
        first = last

    # ---- accumulate ---------------------------------------------------------------------------
    # ground truths that count, per area range and category (not crowd, area inside the range)
    npig = np.zeros((A, Kc), np.int64)
    for a in range(A):
        counts = ~fl.gt_crowd & (fl.gt_area >= arng[a, 0]) & (fl.gt_area <= arng[a, 1])
        npig[a] = np.bincount(fl.gt_cat[counts], minlength=Kc)[:Kc]
    scores, ranks, dcat = fl.dt_score, fl.dt_rank, fl.dt_cat
    del fl  # the boxes are matched: only outcomes, scores, ranks and categories are read below
    precision = -np.ones((T, R, Kc, A, M))
    recall = -np.ones((T, Kc, A, M))
    # one stable sort: by category, then score high first, ties in block (image) order -- within
    # a category the order of pycocotools' mergesort of the images' detections concatenated
    order = np.lexsort((-scores, dcat)).astype(_index_dtype(n_dt))
    bounds = np.concatenate([[0], np.cumsum(np.bincount(dcat, minlength=Kc)[:Kc])]).astype(np.int64)
    for k in range(Kc):
        areas = np.flatnonzero(npig[:, k] > 0)  # a range without ground truth stays undefined (-1)
        if areas.size == 0:
            continue
        mine = order[bounds[k]:bounds[k + 1]]
        mine_rank = ranks[mine]
        done = -1
        for m, mdet in enumerate(md):
            sel = mine[mine_rank < mdet] if mdet < dmax else mine
            if len(sel) == done:  # the same detections as the smaller max_dets: same figures
                recall[:, k, areas, m] = recall[:, k, areas, m - 1]
                precision[:, :, k, areas, m] = precision[:, :, k, areas, m - 1]
                continue
            rc, pr = _pr_curves(outcome, sel, areas, npig[areas, k], budget)
            recall[:, k, areas, m] = rc.T
            precision[:, :, k, areas, m] = pr.transpose(1, 2, 0)
            done = len(sel)

    metrics = CocoMetrics(
        precision=precision,
        recall=recall,
        max_dets=md,
        iou_thrs=thrs,
        categories=tuple(int(c) for c in cats),
        area_names=area_names,
        num_images=len(images),
        num_gt=int(sum(len(im.gt_labels) for im in images)),
        num_dt=int(sum(len(im.dt_labels) for im in images)),
    )
    metrics.stats.update(_summarize(metrics))
    return metrics


def _mean_defined(values: np.ndarray) -> float:
    v = values[values > -1]
    return float(np.mean(v)) if v.size else -1.0


def _summarize(m: CocoMetrics) -> dict[str, float]:
    """Named summary figures, computed like ``COCOeval.summarize``."""
    out: dict[str, float] = {}
    last = len(m.max_dets) - 1
    areas = {name: i for i, name in enumerate(m.area_names)}
    a_all = areas.get("all", 0)

    def ap(area: int, thr: float | None = None) -> float:
        p = m.precision
        if thr is not None:
            t = np.flatnonzero(np.abs(m.iou_thrs - thr) < 1e-12)
            if t.size == 0:
                return -1.0
            p = p[t]
        return _mean_defined(p[:, :, :, area, last])

    def ar(area: int, mi: int) -> float:
        return _mean_defined(m.recall[:, :, area, mi])

    out["AP"] = ap(a_all)
    out["AP50"] = ap(a_all, 0.5)
    out["AP75"] = ap(a_all, 0.75)
    for name in ("small", "medium", "large"):
        if name in areas:
            out[f"AP_{name}"] = ap(areas[name])
    for mi, md in enumerate(m.max_dets):
        out[f"AR@{md}"] = ar(a_all, mi)
    for name in ("small", "medium", "large"):
        if name in areas:
            out[f"AR_{name}"] = ar(areas[name], last)
    return out
