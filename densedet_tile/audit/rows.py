"""Shelf rows found from product boxes alone.

Products stand on shelves, so within a shelf their bottoms line up and their vertical extents
overlap; between two shelves there is the shelf lip, where no product is. The rows are found
in three vectorised steps:

1. **Tilt.** A photo or stitched panorama may be slightly rotated. For every candidate angle
   in ``[-max_tilt, max_tilt]`` the box bottoms and tops are sheared by ``-tan(angle) * x`` and
   histogrammed; the angle whose histograms are sharpest (largest sum of squared counts) wins.
   Once the rows are found (step 3) the angle is refined by a least-squares line through the
   bottoms (or tops, whichever line up better) within each row, outliers trimmed.
2. **Profile.** In the de-tilted frame, the *filled width* at each height ``y'``: the summed
   width of the boxes whose vertical extent covers ``y'``, divided by the width the products
   span. It is near 1 in the middle of a full shelf and near 0 over a shelf lip, whatever the
   size or number of products.
3. **Split.** The profile is cut at its deepest valleys: a valley splits two rows when it is
   below ``split_frac`` of the smaller of the highest points on either side. Each box goes to
   the row holding its centre; rows with fewer than ``min_products`` boxes are discarded (their
   boxes get row -1).

All coordinates are pixels of the upright image (``xyxy``); the de-tilted frame is
``y' = y - (x - x_ref) * tan(tilt)`` with ``x_ref`` the horizontal middle of the boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

__all__ = ["ShelfRow", "RowLayout", "estimate_tilt", "find_rows"]


@dataclass(frozen=True)
class ShelfRow:
    """One shelf row.

    ``top``/``bottom`` bound the row in the de-tilted frame (robust percentiles of its boxes'
    tops and bottoms); ``x_start``/``x_end`` the horizontal extent of its boxes; ``count`` its
    boxes; ``median_width``/``median_height`` their median size, pixels.
    """

    index: int
    top: float
    bottom: float
    x_start: float
    x_end: float
    count: int
    median_width: float
    median_height: float


@dataclass(frozen=True, eq=False)
class RowLayout:
    """The rows of one image: ``rows`` top to bottom, ``assignment`` (N,) int64 row index of
    each input box (-1 for none), ``tilt_deg`` the estimated tilt (positive = rows descend to
    the right, in image coordinates with y down), ``x_ref`` the shear origin."""

    rows: tuple[ShelfRow, ...]
    assignment: np.ndarray
    tilt_deg: float
    x_ref: float

    def y_at(self, y_prime: float | np.ndarray, x: float | np.ndarray) -> np.ndarray:
        """Map a de-tilted height ``y'`` at column ``x`` back to image y."""
        return np.asarray(y_prime) + (np.asarray(x) - self.x_ref) * np.tan(np.radians(self.tilt_deg))

    def deskew(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Image y at column x -> de-tilted height y'."""
        return np.asarray(y) - (np.asarray(x) - self.x_ref) * np.tan(np.radians(self.tilt_deg))


def _check_xyxy(xyxy: np.ndarray) -> np.ndarray:
    a = np.asarray(xyxy, dtype=np.float64)
    if a.size == 0:
        return a.reshape(0, 4)
    if a.ndim != 2 or a.shape[1] != 4:
        raise InvalidInputError(f"boxes must have shape (N, 4), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise InvalidInputError("boxes must have finite coordinates")
    return a


def estimate_tilt(xyxy: np.ndarray, *, max_tilt: float = 4.0, step: float = 0.05) -> float:
    """The shelf tilt in degrees that best lines up box bottoms and tops (see module doc).

    ``xyxy`` (N, 4) pixels. Returns 0.0 with fewer than 8 boxes. The candidate angles are
    ``-max_tilt..max_tilt`` every ``step`` degrees.
    """
    a = _check_xyxy(xyxy)
    if len(a) < 8 or max_tilt <= 0:
        return 0.0
    if step <= 0:
        raise InvalidInputError(f"tilt step must be > 0 degrees, got {step}")
    cx = (a[:, 0] + a[:, 2]) / 2
    x_ref = (cx.min() + cx.max()) / 2
    h = np.median(a[:, 3] - a[:, 1])
    bin_px = max(1.0, h / 10)
    n_steps = int(np.floor(max_tilt / step + 1e-9))
    angles = np.arange(-n_steps, n_steps + 1) * step
    shear = np.tan(np.radians(angles))[:, None] * (cx - x_ref)[None, :]  # (A, N)
    scores = np.zeros(len(angles))
    # bottoms (products stand on shelves) weigh twice as much as tops (hanging products)
    for edge, weight in ((a[:, 3], 1.0), (a[:, 1], 0.5)):
        y = edge[None, :] - shear
        idx = np.floor((y - y.min()) / bin_px).astype(np.int64)
        nb = int(idx.max()) + 1
        flat = (np.arange(len(angles))[:, None] * nb + idx).ravel()
        counts = np.bincount(flat, minlength=len(angles) * nb).reshape(len(angles), nb).astype(np.float64)
        # light smoothing makes the score robust to a bin edge falling on a row
        sm = counts[:, :-1] + counts[:, 1:] if nb > 1 else counts
        scores += weight * (sm**2).sum(1)
    best = np.flatnonzero(scores >= scores.max() * (1 - 1e-9))
    # several equally sharp angles (few boxes): take the one nearest zero
    return float(angles[best[np.argmin(np.abs(angles[best]))]])


def _split(p: np.ndarray, lo: int, hi: int, split_frac: float, min_len: int, out: list[tuple[int, int]]) -> None:
    """Recursively cut ``p[lo:hi]`` at valleys deeper than ``split_frac`` of the lower side."""
    seg = p[lo:hi]
    if hi - lo < 2 * min_len + 1:
        out.append((lo, hi))
        return
    left = np.maximum.accumulate(seg)
    right = np.maximum.accumulate(seg[::-1])[::-1]
    ref = np.minimum(left, right)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(ref > 0, seg / ref, 1.0)
    inner = np.arange(min_len, hi - lo - min_len)
    i = int(inner[np.argmin(ratio[inner])])
    if ratio[i] >= split_frac:
        out.append((lo, hi))
        return
    _split(p, lo, lo + i, split_frac, min_len, out)
    _split(p, lo + i, hi, split_frac, min_len, out)


def _refine_tilt(
    cx: np.ndarray, bottoms: np.ndarray, tops: np.ndarray, assignment: np.ndarray, tilt: float, band: float
) -> float | None:
    """Tilt (degrees) from a pooled within-row least-squares slope of box bottoms, or of tops
    when those line up clearly better (hanging products). Each row's fit starts from the boxes whose
    edge lies within ``band`` px of the row's most common edge height at the current ``tilt``
    (stacked products, whose bottoms sit on other products, are left out) and is trimmed at
    3 median absolute residuals. None when undetermined."""
    sel = assignment >= 0
    if sel.sum() < 4:
        return None
    r = assignment[sel]
    x = cx[sel]
    nr = int(r.max()) + 1
    best: tuple[float, float] | None = None
    x_ref = (x.min() + x.max()) / 2
    for edge in (bottoms[sel], tops[sel]):
        # the mode of each row's de-tilted edge height, from a histogram of band-wide bins
        yd = edge - (x - x_ref) * np.tan(np.radians(tilt))
        b = np.floor((yd - yd.min()) / band).astype(np.int64)
        nbins = int(b.max()) + 2
        hist = np.bincount(r * nbins + b, minlength=nr * nbins).reshape(nr, nbins)
        hist = hist + np.roll(hist, -1, axis=1)  # pairs of bins: a mode on a bin edge still wins
        mode = hist.argmax(1)
        keep = (b >= mode[r]) & (b <= mode[r] + 1)
        support = int(keep.sum())
        slope, mad = 0.0, np.inf
        for _ in range(3):
            if keep.sum() < 3:
                break
            c = np.maximum(np.bincount(r[keep], minlength=nr).astype(np.float64), 1)
            xm = np.bincount(r[keep], x[keep], minlength=nr) / c
            ym = np.bincount(r[keep], edge[keep], minlength=nr) / c
            dx, dy = x - xm[r], edge - ym[r]
            den = float((dx[keep] ** 2).sum())
            if den <= 0:
                break
            slope = float((dx[keep] * dy[keep]).sum() / den)
            res = np.abs(dy - slope * dx)
            mad = float(np.median(res[keep])) + 1e-9
            keep = keep & (res <= 3 * mad) if _ == 0 else res <= 3 * mad
        # an edge counts only when most boxes line up along it (a few equal-height tops
        # would give a tiny residual and a meaningless slope); bottoms win unless the tops
        # line up clearly better
        if not np.isfinite(mad) or support < 0.5 * len(x):
            continue
        if best is None or mad < 0.5 * best[1]:
            best = (slope, mad)
    return None if best is None else float(np.degrees(np.arctan(best[0])))


def _segment(
    a: np.ndarray, cx: np.ndarray, x_ref: float, tilt: float, split_frac: float, min_products: int
) -> tuple[np.ndarray, int]:
    """Row index of every box (-1 for none) and the number of rows, at a given tilt."""
    shift = (cx - x_ref) * np.tan(np.radians(tilt))
    top, bot = a[:, 1] - shift, a[:, 3] - shift
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    med_h = max(float(np.median(h)), 1.0)
    bin_px = max(1.0, med_h / 12)
    y0 = float(top.min())
    nb = int(np.ceil((bot.max() - y0) / bin_px)) + 2
    i0 = np.clip(np.floor((top - y0) / bin_px).astype(np.int64), 0, nb - 1)
    i1 = np.clip(np.ceil((bot - y0) / bin_px).astype(np.int64), 0, nb - 1)
    diff = np.zeros(nb + 1)
    np.add.at(diff, i0, w)
    np.add.at(diff, i1, -w)
    span = max(float(a[:, 2].max() - a[:, 0].min()), 1.0)
    prof = np.cumsum(diff)[:nb] / span
    prof = np.convolve(prof, np.ones(3) / 3, mode="same")
    # zero-separated runs first, then valley splits inside each run
    on = prof > 1e-6
    edges = np.flatnonzero(np.diff(np.r_[0, on.astype(np.int8), 0]))
    segments: list[tuple[int, int]] = []
    min_len = max(1, int(round(0.25 * med_h / bin_px)))
    for s, e in zip(edges[::2], edges[1::2]):
        _split(prof, int(s), int(e), split_frac, min_len, segments)
    segments.sort()
    cbin = np.floor(((top + bot) / 2 - y0) / bin_px).astype(np.int64)
    starts = np.array([s for s, _ in segments], dtype=np.int64)
    seg_of = np.searchsorted(starts, cbin, side="right") - 1
    counts = np.bincount(seg_of[seg_of >= 0], minlength=len(segments))
    keep = np.flatnonzero(counts >= min_products)
    remap = np.full(len(segments), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return np.where(seg_of >= 0, remap[np.clip(seg_of, 0, None)], -1).astype(np.int64), int(len(keep))


def find_rows(
    xyxy: np.ndarray,
    *,
    tilt_deg: float | None = None,
    max_tilt: float = 4.0,
    split_frac: float = 0.5,
    min_products: int = 3,
) -> RowLayout:
    """Group product boxes into shelf rows (see the module doc for the method).

    ``xyxy`` (N, 4) float pixels of the upright image. ``tilt_deg`` fixes the tilt instead of
    estimating it within ``max_tilt`` degrees. Returns a :class:`RowLayout` with rows sorted
    top to bottom and each box's row index.
    """
    a = _check_xyxy(xyxy)
    if not (0.0 < split_frac < 1.0):
        raise InvalidInputError(f"split_frac must be in (0, 1), got {split_frac}")
    if isinstance(min_products, bool) or not isinstance(min_products, (int, np.integer)) or min_products < 1:
        raise InvalidInputError(f"min_products must be a positive integer, got {min_products!r}")
    n = len(a)
    if n == 0:
        return RowLayout((), np.zeros(0, np.int64), 0.0, 0.0)
    cx = (a[:, 0] + a[:, 2]) / 2
    x_ref = float((cx.min() + cx.max()) / 2)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    if tilt_deg is not None:
        tilt = float(tilt_deg)
        assignment, n_rows = _segment(a, cx, x_ref, tilt, split_frac, min_products)
    else:
        # grid-searched angle, then a fixed-point refinement: rows at this angle -> line fit
        # within those rows -> rows at the fitted angle, until the angle settles
        tilt = estimate_tilt(a, max_tilt=max_tilt)
        # mode band for the refinement: box jitter grows with box size, and the coarse angle
        # may be off by a few tenths of a degree across the whole width
        band = max(1.0, float(np.percentile(h, 75)) / 10, 0.5 * float(np.ptp(cx)) * np.tan(np.radians(0.3)))
        assignment, n_rows = _segment(a, cx, x_ref, tilt, split_frac, min_products)
        for _ in range(4):
            fine = _refine_tilt(cx, a[:, 3], a[:, 1], assignment, tilt, band) if n_rows else None
            if fine is None or abs(fine) > max_tilt or abs(fine - tilt) < 0.01:
                if fine is not None and abs(fine) <= max_tilt:
                    tilt = fine
                break
            tilt = fine
            assignment, n_rows = _segment(a, cx, x_ref, tilt, split_frac, min_products)
    shift = (cx - x_ref) * np.tan(np.radians(tilt))
    top, bot = a[:, 1] - shift, a[:, 3] - shift
    keep = range(n_rows)
    rows = []
    for r in range(len(keep)):
        sel = assignment == r
        rows.append(
            ShelfRow(
                index=r,
                top=float(np.percentile(top[sel], 10)),
                bottom=float(np.percentile(bot[sel], 90)),
                x_start=float(a[sel, 0].min()),
                x_end=float(a[sel, 2].max()),
                count=int(sel.sum()),
                median_width=float(np.median(w[sel])),
                median_height=float(np.median(h[sel])),
            )
        )
    return RowLayout(tuple(rows), assignment, float(tilt), x_ref)
