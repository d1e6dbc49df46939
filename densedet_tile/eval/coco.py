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
  matching walks detection ranks once for all images, thresholds and area ranges together.

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


def _validate_max_dets(max_dets: Sequence[int]) -> tuple[int, ...]:
    md = tuple(max_dets)
    if not md or any(isinstance(m, bool) or not isinstance(m, (int, np.integer)) or m < 1 for m in md):
        raise InvalidInputError(f"max_dets must be positive integers, got {max_dets!r}")
    if list(md) != sorted(md):
        raise InvalidInputError(f"max_dets must be increasing, got {max_dets!r}")
    return tuple(int(m) for m in md)


def _match_bucket(blocks: list[tuple[int, int, np.ndarray, np.ndarray]], images: Sequence[EvalImage],
                  thrs: np.ndarray, arng: np.ndarray, chunk_elems: int
                  ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """pycocotools' greedy matching for ``blocks`` (image idx, category, gt idx, dt idx; the
    detections highest score first), padded to the largest of them. Returns per block its
    detections' (A, T, d) matched and ignored flags, and (A, nb) the number of ground truths
    that count in each area range."""
    A, T = len(arng), len(thrs)
    nb = len(blocks)
    gmax = max((len(b[2]) for b in blocks), default=0)
    dcount = np.array([len(b[3]) for b in blocks], dtype=np.int64)
    dpad = int(dcount.max()) if nb else 0

    # Padded per-block arrays.
    gt_xywh = np.zeros((nb, max(gmax, 1), 4))
    gt_area = np.zeros((nb, max(gmax, 1)))
    gt_crowd = np.zeros((nb, max(gmax, 1)), bool)
    gt_valid = np.zeros((nb, max(gmax, 1)), bool)
    dt_xywh = np.zeros((nb, max(dpad, 1), 4))
    dt_score = np.full((nb, max(dpad, 1)), -np.inf)
    for b, (i, _k, gi, di) in enumerate(blocks):
        im = images[i]
        g, d = len(gi), len(di)
        if g:
            gt_xywh[b, :g] = np.column_stack([im.gt_xyxy[gi, :2], im.gt_wh[gi]])
            gt_area[b, :g] = im.gt_area[gi]
            gt_crowd[b, :g] = im.gt_crowd[gi]
            gt_valid[b, :g] = True
        if d:
            dt_xywh[b, :d] = np.column_stack([im.dt_xyxy[di, :2], im.dt_wh[di]])
            dt_score[b, :d] = im.dt_scores[di]
    dt_valid = np.arange(max(dpad, 1))[None, :] < dcount[:, None]
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
    gcount = gt_valid.sum(1)

    def exact(b: np.ndarray, d: np.ndarray, g: np.ndarray) -> None:
        """Keep the pairs whose exact (float64) IoU reaches the lowest threshold."""
        iou = box_iou_coco(dt_xywh[b, d][:, None, :], gt_xywh[b, g][:, None, :], gt_crowd[b, g][:, None])[:, 0, 0]
        keep = iou >= t_low
        pb.append(b[keep])
        pd.append(d[keep])
        pg.append(g[keep])
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
    pb_a = np.concatenate(pb) if pb else np.zeros(0, np.int64)
    pd_a = np.concatenate(pd) if pd else np.zeros(0, np.int64)
    pg_a = np.concatenate(pg) if pg else np.zeros(0, np.int64)
    piou_a = np.concatenate(piou) if piou else np.zeros(0)
    # ordered by block, detection, ground truth (as the dense screen gives them)
    order = np.lexsort((pg_a, pd_a, pb_a))
    pb_a, pd_a, pg_a, piou_a = pb_a[order], pd_a[order], pg_a[order], piou_a[order]
    # rank of each pair within its (block, detection) row -> dense (nb, D, K) candidate table
    row = pb_a * max(dpad, 1) + pd_a
    if row.size:
        starts = np.r_[0, np.flatnonzero(np.diff(row)) + 1]
        counts = np.diff(np.r_[starts, row.size])
        rank = np.arange(row.size) - np.repeat(starts, counts)
        kmax = int(counts.max())
    else:
        rank = np.zeros(0, np.int64)
        kmax = 0
    K = max(kmax, 1)
    cand_g = np.full((nb, max(dpad, 1), K), -1, np.int64)
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

    n_valid_gt = (~gt_ig & gt_valid[None]).sum(-1)  # (A, nb)
    dcounts = dcount.tolist()
    return ([dt_match[:, :, j, :n] for j, n in enumerate(dcounts)],
            [dt_ig[:, :, j, :n] for j, n in enumerate(dcounts)], n_valid_gt)


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

    ``chunk_elems`` bounds the size of the per-chunk IoU array (D x G elements).
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
    cat_index = {int(c): k for k, c in enumerate(cats)}
    blocks: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # (image idx, k, gt idx, dt idx)
    for i, im in enumerate(images):
        if class_agnostic:
            # one block of the image's boxes taken class by class, in label order (stable), as
            # pycocotools' useCats=0 takes them category by category: the order decides which
            # ground truth wins an equal IoU and which detection goes first on a tied score
            if len(cats) and (len(im.gt_labels) or len(im.dt_labels)):
                gi = np.argsort(im.gt_labels, kind="stable")
                di = np.argsort(im.dt_labels, kind="stable")
                di = di[np.argsort(-im.dt_scores[di], kind="mergesort")][:dmax]
                blocks.append((i, 0, gi, di))
            continue
        gl, dl = im.gt_labels, im.dt_labels
        for c in np.unique(np.concatenate([gl, dl])):
            k = cat_index.get(int(c))
            if k is None:
                continue
            gi = np.flatnonzero(gl == c)
            di = np.flatnonzero(dl == c)
            # highest score first, stable, truncated to the largest max_dets
            di = di[np.argsort(-im.dt_scores[di], kind="mergesort")][:dmax]
            blocks.append((i, k, gi, di))
    nb = len(blocks)

    # ---- matching, bucket by bucket of blocks of similar size --------------------------------
    # Blocks are padded to the largest of their bucket only: one panorama of 20 000 boxes among
    # SKU-110K photos of 150 does not pad every photo to 20 000 x 20 000.
    size = np.array([max(len(b[2]), len(b[3]), 1) for b in blocks], dtype=np.int64)
    by_size = np.argsort(size, kind="stable")
    match: list[np.ndarray] = [np.zeros((A, T, 0), bool)] * nb  # per block: (A, T, d)
    ignored: list[np.ndarray] = [np.zeros((A, T, 0), bool)] * nb
    n_valid_gt = np.zeros((A, nb), np.int64)
    first = 0
    while first < nb:
        last = first + 1
        while last < nb and size[by_size[last]] <= 2 * size[by_size[first]]:
            last += 1
        members = by_size[first:last]
        bm, bi, nv = _match_bucket([blocks[j] for j in members.tolist()], images, thrs, arng, chunk_elems)
        for j, m_j, i_j in zip(members.tolist(), bm, bi):
            match[j], ignored[j] = m_j, i_j
        n_valid_gt[:, members] = nv
        first = last

    # ---- accumulate ---------------------------------------------------------------------------
    # every block's detections in block (image) order, then rank: pycocotools' concatenation
    d_len = np.array([len(b[3]) for b in blocks], dtype=np.int64)
    flat_block = np.repeat(np.arange(nb), d_len)
    flat_rank = np.concatenate([np.arange(n) for n in d_len.tolist()] + [np.zeros(0, np.int64)])
    flat_score = np.concatenate([images[i].dt_scores[di] for i, _k, _gi, di in blocks] + [np.zeros(0)])
    flat_match = np.concatenate(match + [np.zeros((A, T, 0), bool)], axis=-1)  # (A, T, N)
    flat_ig = np.concatenate(ignored + [np.zeros((A, T, 0), bool)], axis=-1)
    Kc = len(cats)
    precision = -np.ones((T, R, Kc, A, M))
    recall = -np.ones((T, Kc, A, M))
    block_cat = np.array([b[1] for b in blocks], dtype=np.int64)
    flat_cat = block_cat[flat_block] if nb else np.zeros(0, np.int64)
    eps = np.spacing(1)
    for k in range(Kc):
        bsel = np.flatnonzero(block_cat == k)
        for m, mdet in enumerate(md):
            sel = np.flatnonzero((flat_cat == k) & (flat_rank < mdet))
            order = sel[np.argsort(-flat_score[sel], kind="mergesort")]
            for a in range(A):
                npig = int(n_valid_gt[a, bsel].sum())
                if npig == 0:
                    continue
                dm = flat_match[a][:, order]  # (T, n)
                di = flat_ig[a][:, order]
                tp = np.cumsum(dm & ~di, axis=1).astype(float)
                fp = np.cumsum(~dm & ~di, axis=1).astype(float)
                nd = tp.shape[1]
                if nd == 0:
                    recall[:, k, a, m] = 0
                    precision[:, :, k, a, m] = 0
                    continue
                rc = tp / npig
                pr = tp / (fp + tp + eps)
                recall[:, k, a, m] = rc[:, -1]
                pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    inds = np.searchsorted(rc[t], COCO_REC_THRS, side="left")
                    q = np.zeros(R)
                    ok = inds < nd
                    # pycocotools stops filling at the first recall point beyond reach
                    first_bad = int(np.argmin(ok)) if not ok.all() else R
                    q[:first_bad] = pr[t, inds[:first_bad]]
                    precision[t, :, k, a, m] = q

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
