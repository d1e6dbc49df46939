"""Shelf rows of one fixture (a bay) found from product boxes alone.

Products stand on shelves, so within a shelf their bottoms line up and their vertical extents
overlap; between two shelves there is the shelf lip, where no product is. The rows are found
in a *rectified frame* in which every shelf line is horizontal, then each row gets its own
straight line fitted to its products' bottoms.

**The frame.** A photo taken facing the shelves shows parallel shelf lines, all at one slope
(the camera's roll). A photo taken at an angle down an aisle shows shelf lines that converge
towards a vanishing point, each at its own slope; since they meet in one point, a line's
slope changes linearly with its height: ``m(y0) = s0 + s1 * (y0 - y_ref)`` where ``y0`` is the
line's image y at the reference column ``x_ref``. The frame maps an image point to the ``y0``
of the shelf line through it, ``y0 = (y - (s0 - s1 * y_ref) * dx) / (1 + s1 * dx)`` with
``dx = x - x_ref``; with ``s1 = 0`` this is the plain de-tilt ``y - tan(tilt) * dx``. Rows are
horizontal bands of the frame whatever the perspective.

1. **Slope field.** Each box's nearest right-hand neighbour (:mod:`.neighbours`) whose bottom
   agrees with its own gives one sample of the local slope of the shelf line. A robust line
   through the samples' slopes against their frame height gives ``s0`` and ``s1``. When the
   change of slope over the fixture is below a degree, or not clearly above the samples'
   noise, the shelves are taken as parallel (``s1 = 0``) and the tilt ``s0`` comes from the
   sharpness search of :func:`estimate_tilt`: for every candidate angle in
   ``[-max_tilt, max_tilt]`` box bottoms and tops are sheared by ``-tan(angle) * x`` and
   histogrammed, and the angle whose histograms are sharpest (largest sum of squared counts)
   wins.
2. **Profile.** In the frame, the *filled width* at each height ``y0``: the summed width of
   the boxes whose vertical extent covers ``y0`` (each width divided by the frame's local
   scale), divided by the width the products span. It is near 1 in the middle of a full shelf
   and near 0 over a shelf lip, whatever the size or number of products. It is smoothed over
   an eighth of the median product height only, so that thin shelves still make a valley. A
   box 1.6 times as tall as the products centred within its height nearby (a detector's box
   over two shelves) adds nothing to it, so it does not fill the valley between them.
3. **Split.** The profile is cut at its deepest valleys: a valley splits two rows when it is
   below ``split_frac`` of the smaller of the highest points on either side. Each box goes to
   the row holding its centre; rows with fewer than ``min_products`` boxes are discarded (their
   boxes get row -1), except a shelf between two kept rows, which needs only two (at least
   half the median height, as a rule: not two price tags): an inner shelf holding two products
   is a shelf, mostly empty, not an empty shelf.
4. **Refine.** Within each row a least-squares line through the bottoms of the boxes standing
   on the shelf (those near the row's most common bottom height; stacked products are left
   out; outliers trimmed at 3 median absolute residuals). Parallel shelves: the pooled slope
   of all rows becomes the new tilt (or the tops' when they line up clearly better, as with
   hanging products). Converging shelves: a weighted line through the rows' slopes against
   their heights gives new ``s0``, ``s1``. Steps 2 to 4 repeat until the frame settles.
5. **Row lines.** Each row keeps its own fitted bottom line (the frame's line at the row's
   height when the row is too short or too sparse to fit one). A row's outline is the
   quadrilateral between the frame's line through the top of its products (10th percentile)
   and its own bottom line lowered to the 90th percentile of its bottoms, across the whole
   fixture (a shelf runs from upright to upright, whatever stands on it).

All coordinates are pixels of the upright image (``xyxy``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import InvalidInputError
from .boxes import as_boxes, require_finite
from .neighbours import NeighbourPairs, neighbour_pairs

__all__ = ["ShelfRow", "RowLayout", "estimate_tilt", "find_rows"]

#: A box this many times as tall as the products centred within its height nearby spans shelves
#: (:func:`_spanning`), and adds nothing to the profile while such boxes are at most
#: ``_SPAN_SHARE`` of the boxes
_SPAN_RATIO = 1.6
_SPAN_SHARE = 0.3
#: Below this change of slope across a fixture (tan of 1 degree), its shelves count as parallel.
_MIN_SPREAD = float(np.tan(np.radians(1.0)))
#: Steepest shelf line accepted in a converging view (degrees).
_MAX_SLOPE_DEG = 40.0


@dataclass(frozen=True)
class ShelfRow:
    """One shelf row.

    ``top``/``bottom`` bound the row in the layout's frame (robust percentiles of its boxes'
    tops and bottoms, as frame heights ``y0``); ``x_start``/``x_end`` the horizontal extent of
    its boxes; ``count`` its boxes; ``median_width``/``median_height`` their median size,
    pixels. The outline's lower edge follows the row's own line fitted to its products'
    bottoms, whose slope (dy/dx, y down) is ``slope``; its upper edge (``top_y``, from ``top``)
    stops at the row above's lower edge.
    """

    index: int
    top: float
    bottom: float
    x_start: float
    x_end: float
    count: int
    median_width: float
    median_height: float
    bottom_y: tuple[float, float] = (0.0, 0.0)
    top_y: tuple[float, float] = (0.0, 0.0)
    slope: float = 0.0
    shelf_x: tuple[float, float] = (0.0, 0.0)

    @property
    def polygon(self) -> tuple[tuple[float, float], ...]:
        """The row's outline in image pixels: top-left, top-right, bottom-right, bottom-left."""
        x0, x1 = self.shelf_x
        return ((x0, self.top_y[0]), (x1, self.top_y[1]), (x1, self.bottom_y[1]), (x0, self.bottom_y[0]))

    @property
    def tilt_deg(self) -> float:
        """The angle of the row's bottom line, degrees (positive: descends to the right)."""
        return float(np.degrees(np.arctan(self.slope)))

    def bottom_at(self, x: float | np.ndarray) -> np.ndarray:
        """Image y of the row's fitted bottom line (its outline's lower edge) at column ``x``."""
        return self.bottom_y[0] + (np.asarray(x, dtype=np.float64) - self.shelf_x[0]) * self.slope

    def top_at(self, x: float | np.ndarray) -> np.ndarray:
        """Image y of the row outline's upper edge at column ``x``."""
        span = self.shelf_x[1] - self.shelf_x[0]
        k = (self.top_y[1] - self.top_y[0]) / span if span > 0 else 0.0
        return self.top_y[0] + (np.asarray(x, dtype=np.float64) - self.shelf_x[0]) * k


@dataclass(frozen=True, eq=False)
class RowLayout:
    """The rows of one fixture: ``rows`` top to bottom, ``assignment`` (N,) int64 row index of
    each input box (-1 for none), and the frame (see the module doc): ``tilt_deg`` the angle of
    the shelf line through ``(x_ref, y_ref)`` (positive = rows descend to the right, in image
    coordinates with y down), ``spread`` the change of slope per pixel of frame height
    (``s1``, 0 for parallel shelves)."""

    rows: tuple[ShelfRow, ...]
    assignment: np.ndarray
    tilt_deg: float
    x_ref: float
    spread: float = 0.0
    y_ref: float = 0.0

    @property
    def _c(self) -> float:
        return float(np.tan(np.radians(self.tilt_deg))) - self.spread * self.y_ref

    def scale(self, x: float | np.ndarray) -> np.ndarray:
        """The frame's local scale at column ``x``: image height per unit of frame height (1
        for parallel shelves; smaller towards the vanishing point)."""
        return 1.0 + self.spread * (np.asarray(x, dtype=np.float64) - self.x_ref)

    def y_at(self, y_prime: float | np.ndarray, x: float | np.ndarray) -> np.ndarray:
        """Map a frame height ``y'`` at column ``x`` back to image y."""
        dx = np.asarray(x, dtype=np.float64) - self.x_ref
        return np.asarray(y_prime) * (1.0 + self.spread * dx) + self._c * dx

    def deskew(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Image y at column x -> frame height y'."""
        dx = np.asarray(x, dtype=np.float64) - self.x_ref
        return (np.asarray(y) - self._c * dx) / (1.0 + self.spread * dx)

    def slope_at(self, y_prime: float | np.ndarray) -> np.ndarray:
        """Slope (dy/dx) of the frame's shelf line at frame height ``y'``."""
        return float(np.tan(np.radians(self.tilt_deg))) + self.spread * (np.asarray(y_prime) - self.y_ref)


def _check_xyxy(xyxy: np.ndarray) -> np.ndarray:
    a = as_boxes(xyxy)
    require_finite(a)
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
    n_steps = int(np.floor(max_tilt / step + 1e-9))
    angles = np.arange(-n_steps, n_steps + 1) * step
    scores = tilt_sharpness(a, angles)
    best = np.flatnonzero(scores >= scores.max() * (1 - 1e-9))
    # several equally sharp angles (few boxes): take the one nearest zero
    return float(angles[best[np.argmin(np.abs(angles[best]))]])


def tilt_sharpness(xyxy: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """How sharply the box bottoms and tops line up at each of ``angles`` (degrees, sorted
    ascending): the sum of squared counts of their histograms, sheared by the angle (bottoms
    weigh twice as much as tops), comparable across the angles of one call."""
    a = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    angles = np.asarray(angles, dtype=np.float64)
    cx = (a[:, 0] + a[:, 2]) / 2
    x_ref = (cx.min() + cx.max()) / 2
    h = np.median(a[:, 3] - a[:, 1])
    bin_px = max(1.0, h / 10)
    tans = np.tan(np.radians(angles))
    dx = cx - x_ref
    scores = np.zeros(len(angles))
    # bottoms (products stand on shelves) weigh twice as much as tops (hanging products)
    for edge, weight in ((a[:, 3], 1.0), (a[:, 1], 0.5)):
        # a box's sheared height is linear in tan(angle): its extremes lie at the extreme angles
        ends = edge[None, :] - tans[[0, -1], None] * dx[None, :]
        y_min = float(ends.min())
        nb = int(np.floor((float(ends.max()) - y_min) / bin_px)) + 1
        # angles at a time: (chunk, N) and (chunk, bins) arrays, not (all angles, N): steep
        # angles over a wide bay shear its boxes over many bins
        chunk = max(1, 2_000_000 // max(len(a), nb))
        for k0 in range(0, len(angles), chunk):
            y = edge[None, :] - tans[k0:k0 + chunk, None] * dx[None, :]
            idx = np.floor((y - y_min) / bin_px).astype(np.int64)
            m = len(y)
            counts = np.bincount((np.arange(m)[:, None] * nb + idx).ravel(), minlength=m * nb).reshape(m, nb)
            counts = counts.astype(np.float64)
            # light smoothing makes the score robust to a bin edge falling on a row
            sm = counts[:, :-1] + counts[:, 1:] if nb > 1 else counts
            scores[k0:k0 + m] += weight * (sm**2).sum(1)
    return scores


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
        # would give a tiny residual and a meaningless slope); bottoms win unless they do not
        # line up themselves (hanging products) and the tops line up clearly better: groups of
        # equal products have equal tops, which can line up by chance along a short shelf
        if not np.isfinite(mad) or support < 0.5 * len(x):
            continue
        if best is None or (mad < 0.5 * best[1] and best[1] > 0.2 * band):
            best = (slope, mad)
    return None if best is None else float(np.degrees(np.arctan(best[0])))


def _frame(tilt: float, x_ref: float, spread: float = 0.0, y_ref: float = 0.0) -> RowLayout:
    """An empty layout that only carries a frame."""
    return RowLayout((), np.zeros(0, np.int64), float(tilt), float(x_ref), float(spread), float(y_ref))


#: The fewest boxes of a shelf between two rows (:func:`_segment`).
_INNER_MIN = 2


def _segment(a: np.ndarray, cx: np.ndarray, frame: RowLayout, split_frac: float, min_products: int) -> tuple[np.ndarray, int]:
    """Row index of every box (-1 for none) and the number of rows, in a given frame."""
    top, bot = frame.deskew(a[:, 1], cx), frame.deskew(a[:, 3], cx)
    w = (a[:, 2] - a[:, 0]) / frame.scale(cx)
    h = bot - top
    med_h = max(float(np.median(h)), 1.0)
    # bins of 1/24 and a 3-bin smoothing (1/8 of a product's height): the shelf between two rows
    # of a fridge or of tightly packed stacks can be as thin as a sixth of a product's height,
    # and a wider smoothing fills that valley in
    bin_px = max(1.0, med_h / 24)
    y0 = float(top.min())
    nb = int(np.ceil((bot.max() - y0) / bin_px)) + 2
    i0 = np.clip(np.floor((top - y0) / bin_px).astype(np.int64), 0, nb - 1)
    i1 = np.clip(np.ceil((bot - y0) / bin_px).astype(np.int64), 0, nb - 1)
    diff = np.zeros(nb + 1)
    # a box much taller than the products around it (one spanning two shelves: a detector's box
    # over a fridge's door or a stack of shelves) fills the valley of the shelf it spans: it
    # adds no width to the profile (it still goes to the row holding its centre), unless such
    # boxes are a large share (then they are the products)
    prof_w = w
    sp = _spanning(top, bot, cx, w, med_h)
    if sp.any() and sp.sum() <= _SPAN_SHARE * len(a):
        prof_w = np.where(sp, 0.0, w)
    np.add.at(diff, i0, prof_w)
    np.add.at(diff, i1, -prof_w)
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
    keep = counts >= min_products
    if keep.any():
        # a shelf between two rows is one even with two products on it (the others missing, or
        # boxed as a few): dropped, it was reported as an empty shelf under its products, and
        # the human row there was missed (made boxes of the real photos' rows: 3 of 9 empty
        # shelves lay on a labelled row). Above the top row or below the bottom one, two boxes
        # on a line are as often a sign or things on the floor, and ``min_products`` holds.
        # Two boxes under half the usual height between shelves are price tags, not a shelf
        inner = np.zeros(len(segments), bool)
        kept = np.flatnonzero(keep)
        inner[kept[0]:kept[-1] + 1] = True
        few = inner & ~keep & (counts >= min(min_products, _INNER_MIN))
        if few.any():
            on = seg_of >= 0
            tall = _group_median(h[on], seg_of[on], len(segments)) >= 0.5 * med_h
            keep |= few & tall
    keep = np.flatnonzero(keep)
    if not len(keep):  # (no segment at all: boxes of no height, say)
        return np.full(len(a), -1, np.int64), 0
    remap = np.full(len(segments), -1, np.int64)
    remap[keep] = np.arange(len(keep))
    return np.where(seg_of >= 0, remap[np.clip(seg_of, 0, None)], -1).astype(np.int64), int(len(keep))


def _spanning(top: np.ndarray, bot: np.ndarray, cx: np.ndarray, w: np.ndarray, med_h: float) -> np.ndarray:
    """(N,) bool: the boxes (frame ``top``/``bot``, image centre ``cx``, width ``w``) over
    :data:`_SPAN_RATIO` times as tall as the median of the boxes whose centres lie within their
    height (its middle 80 %) and two median widths of their centre, two of them at least, and
    over 1.2 times the median height ``med_h``: boxes reaching over the products of two shelves."""
    import shapely

    # decided once per distinct box: a pile of copies of one box (a detector without NMS) asked
    # the index about every copy, each finding all the others
    key = np.stack([top, bot, cx, w], axis=1)
    uniq, inverse = np.unique(key, axis=0, return_inverse=True)
    if len(uniq) < len(key):
        return _spanning(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3], med_h)[inverse.reshape(-1)]
    h = bot - top
    n = len(h)
    out = np.zeros(n, bool)
    # only the boxes over 1.2 times the median height ask the index (none, mostly): a pile of
    # jittered copies of one product (a detector without NMS) asked for every copy, each
    # finding the thousand others (a second look: twice the audit's time, 1.2 GB more)
    cand = np.flatnonzero(h > 1.2 * med_h)
    if n < 3 or not len(cand):
        return out
    med_w = max(float(np.median(w)), 1.0)
    cy = (top + bot) / 2
    tree = shapely.STRtree(shapely.points(cx, cy))
    r = 2.0 * med_w
    hc = h[cand]
    q = shapely.box(cx[cand] - r, top[cand] + 0.1 * hc, cx[cand] + r, bot[cand] - 0.1 * hc)
    k, j = tree.query(q)
    i = cand[k]
    ok = i != j
    k, j = k[ok], j[ok]
    if len(k) == 0:
        return out
    m = _group_median(h[j], k, len(cand))
    cnt = np.bincount(k, minlength=len(cand))
    with np.errstate(invalid="ignore"):
        out[cand] = (cnt >= 2) & (hc > _SPAN_RATIO * m)
    return out


def _group_median(values: np.ndarray, groups: np.ndarray, n: int) -> np.ndarray:
    """Median of ``values`` per group ``0..n-1`` (NaN for an empty group), vectorised."""
    out = np.full(n, np.nan)
    if len(values) == 0:
        return out
    order = np.lexsort((values, groups))
    g, v = groups[order], values[order]
    counts = np.bincount(g, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    has = counts > 0
    lo = starts + (counts - 1) // 2
    hi = starts + counts // 2
    out[has] = (v[lo[has]] + v[hi[has]]) / 2
    return out


@dataclass(frozen=True, eq=False)
class _RowFit:
    """Per-row bottom lines ``y = ym + slope * (x - xm)``: ``support`` boxes on the line,
    ``x_std`` their spread in x, ``y0`` the frame height of the row's most common bottom."""

    slope: np.ndarray
    xm: np.ndarray
    ym: np.ndarray
    support: np.ndarray
    x_std: np.ndarray
    y0: np.ndarray


def _fit_row_lines(cx: np.ndarray, edge: np.ndarray, assignment: np.ndarray, n_rows: int, frame: RowLayout,
                   band: float) -> _RowFit:
    """Each row's own line through the boxes standing on its shelf (see the module doc, step 4).
    Rows with fewer than 3 such boxes get the frame's slope."""
    sel = assignment >= 0
    r = assignment[sel]
    x = cx[sel]
    e = edge[sel]
    yd = frame.deskew(e, x)
    b = np.floor((yd - yd.min()) / band).astype(np.int64) if len(yd) else np.zeros(0, np.int64)
    nbins = int(b.max()) + 2 if len(b) else 1
    hist = np.bincount(r * nbins + b, minlength=n_rows * nbins).reshape(n_rows, nbins)
    hist = hist + np.roll(hist, -1, axis=1)  # pairs of bins: a mode on a bin edge still wins
    mode = hist.argmax(1)
    keep = (b >= mode[r]) & (b <= mode[r] + 1)
    y0 = (mode + 1.0) * band + (yd.min() if len(yd) else 0.0)
    slope = np.zeros(n_rows)
    xm = np.zeros(n_rows)
    ym = np.zeros(n_rows)
    c = np.zeros(n_rows)
    for it in range(3):
        c = np.bincount(r[keep], minlength=n_rows).astype(np.float64)
        cc = np.maximum(c, 1)
        xm = np.bincount(r[keep], x[keep], minlength=n_rows) / cc
        ym = np.bincount(r[keep], e[keep], minlength=n_rows) / cc
        dx, dy = x - xm[r], e - ym[r]
        sxx = np.bincount(r[keep], dx[keep] ** 2, minlength=n_rows)
        sxy = np.bincount(r[keep], dx[keep] * dy[keep], minlength=n_rows)
        fallback = frame.slope_at(frame.deskew(ym, xm))
        ok = (c >= 3) & (sxx > 1e-9)
        slope = np.where(ok, sxy / np.where(ok, sxx, 1.0), fallback)
        res = np.abs(dy - slope[r] * dx)
        mad = _group_median(res[keep], r[keep], n_rows)
        mad = np.where(np.isfinite(mad), mad, 0.0) + 1e-9
        keep = keep & (res <= 3 * mad[r]) if it == 0 else res <= 3 * mad[r]
    x_std = np.sqrt(np.bincount(r[keep], (x[keep] - xm[r[keep]]) ** 2, minlength=n_rows) / np.maximum(c, 1))
    return _RowFit(slope, xm, ym, c, x_std, y0)


def slope_field(a: np.ndarray, cx: np.ndarray, x_ref: float, y_ref: float,
                pairs: NeighbourPairs | None = None) -> tuple[float, float, float] | None:
    """``(s0, s1, standard error of s1)`` from the slopes between aligned neighbours (module
    doc, step 1), or None with too few pairs. Iteratively reweighted: samples beyond 3 robust
    standard deviations are dropped, and each sample's height is taken in the current frame.
    ``pairs`` are the boxes' :func:`~.neighbours.neighbour_pairs` when already at hand."""
    if pairs is None:
        pairs = neighbour_pairs(a)
    m = pairs.aligned & (np.abs(pairs.slope) < np.tan(np.radians(_MAX_SLOPE_DEG)))
    i, j, sl = pairs.left[m], pairs.right[m], pairs.slope[m]
    if len(i) < 8:
        return None
    xs = (cx[i] + cx[j]) / 2
    ys = (a[i, 3] + a[j, 3]) / 2
    s0, s1, se = float(np.median(sl)), 0.0, np.inf
    keep = np.ones(len(sl), bool)
    for _ in range(6):
        fr = _frame(np.degrees(np.arctan(s0)), x_ref, s1, y_ref)
        t = fr.deskew(ys, xs) - y_ref
        if keep.sum() < 8:
            return None
        tk, mk = t[keep], sl[keep]
        tm = tk.mean()
        stt = float(((tk - tm) ** 2).sum())
        if stt <= 1e-9:
            return s0, 0.0, np.inf
        s1 = float(((tk - tm) * (mk - mk.mean())).sum() / stt)
        s0 = float(mk.mean() - s1 * tm)
        res = sl - (s0 + s1 * t)
        sigma = 1.4826 * float(np.median(np.abs(res[keep]))) + 1e-9
        se = sigma / np.sqrt(stt)
        keep = np.abs(res) <= 3 * sigma
    return s0, s1, se


def _clip_spread(s1: float, cx: np.ndarray, x_ref: float) -> float:
    """Keep the vanishing point outside the boxes' columns (the frame's scale above 0.3)."""
    reach = max(float(cx.max() - x_ref), float(x_ref - cx.min()), 1.0)
    lim = 0.7 / reach
    return float(np.clip(s1, -lim, lim))


def find_rows(
    xyxy: np.ndarray,
    *,
    tilt_deg: float | None = None,
    max_tilt: float = 4.0,
    perspective: bool = True,
    split_frac: float = 0.5,
    min_products: int = 3,
    extent: tuple[float, float] | None = None,
) -> RowLayout:
    """Group the product boxes of one fixture (a bay) into shelf rows (see the module doc).

    ``xyxy`` (N, 4) float pixels of the upright image. ``tilt_deg`` fixes a tilt of parallel
    shelves instead of estimating it; otherwise parallel shelves are searched within
    ``max_tilt`` degrees, and with ``perspective`` converging shelves are recognised too.
    Returns a :class:`RowLayout` with rows sorted top to bottom and each box's row index.
    """
    a = _check_xyxy(xyxy)
    if not (0.0 < split_frac < 1.0):
        raise InvalidInputError(f"split_frac must be in (0, 1), got {split_frac}")
    if isinstance(min_products, bool) or not isinstance(min_products, (int, np.integer)) or min_products < 1:
        raise InvalidInputError(f"min_products must be a positive integer, got {min_products!r}")
    n = len(a)
    if n == 0:
        return RowLayout((), np.zeros(0, np.int64), 0.0, 0.0)
    # the boxes in one order whatever order they come in (as find_bays takes them): sums of floats
    # round by the order of addition, and a photo's rows changed with the order of its boxes
    order = np.lexsort((a[:, 3], a[:, 2], a[:, 1], a[:, 0]))
    layout = _find_rows(a[order], tilt_deg, max_tilt, perspective, split_frac, min_products, extent)
    assignment = np.empty(n, np.int64)
    assignment[order] = layout.assignment  # (each box's row, in the order the boxes came)
    return replace(layout, assignment=assignment)


def _find_rows(a: np.ndarray, tilt_deg: float | None, max_tilt: float, perspective: bool, split_frac: float,
               min_products: int, extent: tuple[float, float] | None) -> RowLayout:
    n = len(a)
    cx = (a[:, 0] + a[:, 2]) / 2
    x_ref = float((cx.min() + cx.max()) / 2)
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    # mode band for the line fits: box jitter grows with box size, and the coarse angle
    # may be off by a few tenths of a degree across the whole width
    band = max(1.0, float(np.percentile(h, 75)) / 10, 0.5 * float(np.ptp(cx)) * np.tan(np.radians(0.3)))
    field = None
    if tilt_deg is None and perspective and n >= 8:
        y_ref = float(np.median(a[:, 3]))
        field = slope_field(a, cx, x_ref, y_ref)
    frame = None
    if field is not None:
        s0, s1, se = field
        # convergence shows only between shelves: the bottoms, de-tilted, must span two or more
        height = float(np.ptp(a[:, 3] - s0 * (cx - x_ref)))
        if height >= 1.5 * float(np.median(h)) and abs(s1) * height >= _MIN_SPREAD and abs(s1) >= 4 * se:
            frame = _converging_frame(a, cx, x_ref, y_ref, s0, s1, band, split_frac, min_products)
    if frame is None:
        frame = _parallel_frame(a, cx, x_ref, tilt_deg, max_tilt, band, split_frac, min_products)
    assignment, n_rows = _segment(a, cx, frame, split_frac, min_products)
    assignment, n_rows = _rows_on_a_line(a, cx, frame, assignment, n_rows, min_products)
    ext = (float(a[:, 0].min()), float(a[:, 2].max())) if extent is None else (float(extent[0]), float(extent[1]))
    return _build_rows(a, cx, w, h, frame, assignment, n_rows, band, ext)


#: How far (in the row's median box heights) the bottoms, or the tops, of a row's products may
#: lie from one another and still be on one shelf line (:func:`_rows_on_a_line`).
_LINE_TOL = 0.15


def _rows_on_a_line(a: np.ndarray, cx: np.ndarray, frame: RowLayout, assignment: np.ndarray, n_rows: int,
                    min_products: int) -> tuple[np.ndarray, int]:
    """Keep only the rows where ``min_products`` boxes stand on one line: their bottoms (or, for
    hanging products, their tops), in the frame, within ``2 * _LINE_TOL`` median box heights.
    A few stray boxes at about one height above or below the shelving (a sign, a ceiling light,
    items on the floor) made a row of their own, nearly all gaps, and could bring a false empty
    shelf: on generated aisles with 5 stray boxes each, rows were right on 49 of 80 (an outside
    review). Only rows above the first or below the last row that passes are dropped; their
    boxes belong to no row, and the others are renumbered top to bottom."""
    if n_rows == 0:
        return assignment, n_rows
    bottom, top = frame.deskew(a[:, 3], cx), frame.deskew(a[:, 1], cx)
    h = a[:, 3] - a[:, 1]
    keep = np.zeros(n_rows, bool)
    for r in range(n_rows):
        sel = np.flatnonzero(assignment == r)
        width = 2 * _LINE_TOL * float(np.median(h[sel]))
        for edge in (bottom[sel], top[sel]):
            v = np.sort(edge)
            most = int((np.searchsorted(v, v + width, side="right") - np.arange(v.size)).max())
            if most >= min_products:
                keep[r] = True
                break
    if keep.all():
        return assignment, n_rows
    # only the top and bottom rows of the fixture can be strays: a row between two kept ones is a
    # shelf (piles of flat packs have few boxes on the line; dropping it reported an empty shelf)
    kept = np.flatnonzero(keep)
    if kept.size:
        keep[kept[0]:kept[-1] + 1] = True
    renumber = np.full(n_rows + 1, -1, np.int64)  # the last slot takes -1 (no row) to -1
    renumber[np.flatnonzero(keep)] = np.arange(int(keep.sum()))
    return renumber[assignment], int(keep.sum())


def _parallel_frame(a: np.ndarray, cx: np.ndarray, x_ref: float, tilt_deg: float | None, max_tilt: float, band: float,
                    split_frac: float, min_products: int) -> RowLayout:
    """The frame of parallel shelves: the given tilt, or the sharpest angle refined by line
    fits within the rows until it settles."""
    if tilt_deg is not None:
        return _frame(float(tilt_deg), x_ref)
    # grid-searched angle, then a fixed-point refinement: rows at this angle -> line fit
    # within those rows -> rows at the fitted angle, until the angle settles
    tilt = estimate_tilt(a, max_tilt=max_tilt)
    assignment, n_rows = _segment(a, cx, _frame(tilt, x_ref), split_frac, min_products)
    for _ in range(4):
        fine = _refine_tilt(cx, a[:, 3], a[:, 1], assignment, tilt, band) if n_rows else None
        if fine is None or abs(fine) > max_tilt or abs(fine - tilt) < 0.01:
            if fine is not None and abs(fine) <= max_tilt:
                tilt = fine
            break
        tilt = fine
        assignment, n_rows = _segment(a, cx, _frame(tilt, x_ref), split_frac, min_products)
    return _frame(tilt, x_ref)


def _converging_frame(a: np.ndarray, cx: np.ndarray, x_ref: float, y_ref: float, s0: float, s1: float, band: float,
                      split_frac: float, min_products: int) -> RowLayout | None:
    """The frame of converging shelves: from the slope field, refined by a weighted line through
    the rows' own slopes against their heights until it settles. None when fewer than two rows
    can be fitted in the first place (the convergence cannot be measured: parallel shelves)."""
    med_w = float(np.median(a[:, 2] - a[:, 0]))
    s1 = _clip_spread(s1, cx, x_ref)
    frame = _frame(np.degrees(np.arctan(s0)), x_ref, s1, y_ref)
    for it in range(4):
        first = it == 0
        assignment, n_rows = _segment(a, cx, frame, split_frac, min_products)
        if n_rows == 0:
            return None if first else frame
        fit = _fit_row_lines(cx, a[:, 3], assignment, n_rows, frame, band)
        use = (fit.support >= 4) & (fit.x_std >= 1.5 * med_w)
        if use.sum() >= 2 and np.ptp(fit.y0[use]) > 0:
            wt = fit.support[use]
            t = fit.y0[use] - y_ref
            tm = float((wt * t).sum() / wt.sum())
            mm = float((wt * fit.slope[use]).sum() / wt.sum())
            s1n = float((wt * (t - tm) * (fit.slope[use] - mm)).sum() / (wt * (t - tm) ** 2).sum())
            s0n = mm - s1n * tm
        elif first:
            return None
        else:
            break
        s1n = _clip_spread(s1n, cx, x_ref)
        new = _frame(np.degrees(np.arctan(s0n)), x_ref, s1n, y_ref)
        span = float(np.ptp(a[:, 3])) + 1.0
        settled = abs(s0n - np.tan(np.radians(frame.tilt_deg))) < 2e-4 and abs(s1n - frame.spread) * span < 2e-4
        frame = new
        if settled:
            break
    return frame


def _build_rows(a: np.ndarray, cx: np.ndarray, w: np.ndarray, h: np.ndarray, frame: RowLayout, assignment: np.ndarray,
                n_rows: int, band: float, extent: tuple[float, float]) -> RowLayout:
    """The rows of a segmentation: frame extents, own bottom lines and outlines."""
    top, bot = frame.deskew(a[:, 1], cx), frame.deskew(a[:, 3], cx)
    med_w = float(np.median(w))
    rows: list[ShelfRow] = []
    if n_rows == 0:
        return RowLayout((), assignment, frame.tilt_deg, frame.x_ref, frame.spread, frame.y_ref)
    fit = _fit_row_lines(cx, a[:, 3], assignment, n_rows, frame, band)
    for r in range(n_rows):
        sel = assignment == r
        x_start, x_end = float(a[sel, 0].min()), float(a[sel, 2].max())
        top_p, bot_p = float(np.percentile(top[sel], 10)), float(np.percentile(bot[sel], 90))
        ends = np.array(extent)
        top_y = frame.y_at(top_p, ends)
        own = bool(fit.support[r] >= 3 and fit.x_std[r] >= 0.5 * med_w)
        for use_own in ((True, False) if own else (False,)):
            if use_own:
                slope, xm, ym = float(fit.slope[r]), float(fit.xm[r]), float(fit.ym[r])
            else:
                # too few products on one line: the frame's line through the row's bottoms
                y0 = float(np.median(bot[sel]))
                xm = float(np.median(cx[sel]))
                ym = float(frame.y_at(y0, xm))
                slope = float(frame.slope_at(y0))
            below = a[sel, 3] - (ym + slope * (cx[sel] - xm))
            lower = max(0.0, float(np.percentile(below, 90)))
            bottom_y = ym + slope * (ends - xm) + lower
            # ... and where the row's own line, drawn over the whole fixture from a few products
            # at one end, comes within a quarter of a product of its upper edge (or crosses it:
            # the outline was a self-intersecting "bow tie", -9 degrees from 5 products over a
            # fifth of a 2448 px bay; an outside review), the frame's line as well
            if not use_own or np.all(bottom_y - top_y >= 0.25 * float(np.median(h[sel]))):
                break
        if rows:
            # a few tall boxes (a bag at the image's edge, a product reaching up in front) pull
            # the upper edge over the shelf above, where its gaps were then drawn over standing
            # products (an outside review): the outline stops at the row above's bottom line,
            # unless the two lines cross (rows of a narrow part of the fixture extrapolated)
            up = np.maximum(top_y, np.asarray(rows[-1].bottom_y))
            if np.all(bottom_y - up >= 0.5 * float(np.median(h[sel]))):
                top_y = up
        rows.append(
            ShelfRow(
                index=r,
                top=top_p,
                bottom=bot_p,
                x_start=x_start,
                x_end=x_end,
                count=int(sel.sum()),
                median_width=float(np.median(w[sel])),
                median_height=float(np.median(h[sel])),
                bottom_y=(float(bottom_y[0]), float(bottom_y[1])),
                top_y=(float(top_y[0]), float(top_y[1])),
                slope=slope,
                shelf_x=extent,
            )
        )
    return RowLayout(tuple(rows), assignment, frame.tilt_deg, frame.x_ref, frame.spread, frame.y_ref)
