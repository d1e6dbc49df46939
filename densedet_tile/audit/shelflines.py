"""Shelf lines in the photo's pixels: do they go on across a column?

Products give the bays' geometry only where they were boxed; the shelves themselves are in the
photo. A shelf's front edge and the price rail on it are long horizontal edges, at one height
all along a bay, and they end, or jump to another height, at the bay's upright. So the
*horizontal-edge profile* of a narrow vertical strip of the photo (the strength of the
vertical brightness change at each height, averaged along a short horizontal stretch so that
long edges outweigh product print) is the same, shelf for shelf, in two strips of one bay, and
differs across an upright: the rails end on a plain post, and the next bay's shelves stand at
other heights more often than not.

:func:`line_match` compares the strips on either side of each column: both are sampled along
the image's shelf lines (the frame of :mod:`.rows`, fitted to the product boxes: in a view down
an aisle the lines converge, so strip B is read at the heights where strip A's lines arrive),
with a little slack for the frame's error, and the match is the normalised correlation of the
two profiles. Near 1: the shelf lines go on; near 0 or below: they do not. The columns follow
the uprights' lean (the frame of :func:`~densedet_tile.audit.bays.upright_frame`).

Everything is vectorised over columns and heights; the photo is looked at with its products
about 50 pixels tall (a 2448 x 3264 photo of products 150 pixels tall: about 800 pixels wide).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

__all__ = ["edge_map", "filled", "line_match", "line_breaks", "HALF", "SLACK", "RUN", "DEPTH", "HOLD", "REACH", "WIDE"]

#: the horizontal edges are averaged over this many median product widths along the row
RUN = 1.0
#: the strips compared lie this many median widths either side of the column
HALF = 0.6
#: the right strip's profile is searched this many median heights up and down
SLACK = 0.1
#: a column breaks the shelf lines where their match across it is ``DEPTH`` below the usual
#: match on each side (the median over ``REACH`` median widths), the usual match is at least
#: ``HOLD`` on both sides (the lines do line up there: not a stretch of print, pegboard or
#: glass that matches nowhere), and it is the lowest within about half a width either side
#: (``HALF`` widths in whole columns)
DEPTH = 0.3
HOLD = 0.4
REACH = 3.0
#: and the strips this many median widths either side do not line up either (their match is
#: under ``HOLD``): what stands on a shelf changes within a product or two (a gap, a run of
#: other products); an upright, or shelves at other heights, go on
WIDE = 1.5

#: heights times columns gathered at once
_CELLS = 1 << 20


def filled(gray: np.ndarray) -> np.ndarray:
    """(H, W) float32 ``gray`` with its pixels that are not finite set to the median of the
    others (0 when none is): one NaN would blind the running sums of its row."""
    g = np.asarray(gray, np.float32)
    ok = np.isfinite(g)
    if ok.all():
        return g
    return np.where(ok, g, float(np.median(g[ok])) if ok.any() else 0.0).astype(np.float32)


def edge_map(gray: np.ndarray, run: float) -> np.ndarray:
    """(H, W) float32: the horizontal edges of a greyscale image (absolute brightness change
    from one row to the next, the last row repeated), averaged over ``run`` pixels along the
    row (long horizontal edges, shelf fronts and rails, stand out of product print)."""
    g = np.asarray(gray, np.float32)
    gy = np.abs(np.diff(g, axis=0, append=g[-1:]))
    h, w = gy.shape
    k = max(1, int(round(run)))
    before = after = k // 2
    # the windows are clipped to the image; each column's sum is a difference of two running
    # sums, taken as slices (a gather over the whole picture cost twice the time)
    c = np.zeros((h, w + 1), np.float32)
    np.cumsum(gy, axis=1, dtype=np.float32, out=c[:, 1:])
    x = np.arange(w)
    hi = np.minimum(x + after + 1, w)
    lo = np.maximum(x - before, 0)
    out = np.empty((h, w), np.float32)
    a, b = before, w - after  # the columns whose window lies inside the image: a .. b-1
    if a < b:
        np.subtract(c[:, a + after + 1: b + after + 1], c[:, 0: b - before], out=out[:, a:b])
    ends = np.r_[np.arange(min(a, w)), np.arange(max(b, min(a, w)), w)]
    if len(ends):
        out[:, ends] = c[:, hi[ends]] - c[:, lo[ends]]
    out /= (hi - lo).astype(np.float32)
    return out


def line_match(edges: np.ndarray, scale: float, us: np.ndarray, d: float, frame: Any, to_image: Any,
               y_lo: float, y_hi: float, slack: float) -> np.ndarray:
    """(K,) the match of the shelf lines across each frame column ``us`` (K,) (image pixels
    of the boxes, at the uprights' reference height): the normalised correlation of the
    horizontal-edge profiles ``edges`` (an :func:`edge_map` of the photo at ``scale`` times the
    boxes' pixels) of the columns ``d`` left and right of it, between frame heights ``y_lo``
    and ``y_hi``. ``frame`` (a :class:`~densedet_tile.audit.rows.RowLayout`) maps a frame
    height at a column to image y (its shelf lines); ``to_image(x, y)`` a frame column at image
    height(s) y to image x (the uprights' lean). The right profile is searched ``slack`` pixels
    up and down for its best match. NaN where fewer than 8 heights of both columns lie in the
    image."""
    us = np.asarray(us, np.float64)
    H, W = edges.shape
    step = 1.0 / scale
    yp = np.arange(y_lo, y_hi, step)
    if len(us) == 0 or len(yp) < 8:
        return np.full(len(us), np.nan)
    n_slack = int(np.ceil(slack * scale))

    def sample(x_frame: np.ndarray, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        y = frame.y_at(yp[:, None], x_frame[None, :]) + shift
        x = to_image(x_frame[None, :], y)
        r = np.rint(y * scale).astype(np.int64)
        c = np.rint(x * scale).astype(np.int64)
        ok = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        return np.where(ok, edges[np.clip(r, 0, H - 1), np.clip(c, 0, W - 1)], 0.0), ok

    out = np.full(len(us), np.nan)
    # (in chunks of columns: a panorama's thousands of columns times its rows, a gather each)
    chunk = max(16, _CELLS // len(yp))
    for c0 in range(0, len(us), chunk):
        u = us[c0:c0 + chunk]
        a, ok_a = sample(u - d)
        best = np.full(len(u), -np.inf)
        for k in range(-n_slack, n_slack + 1):
            b, ok_b = sample(u + d, k * step)
            ok = ok_a & ok_b
            n = ok.sum(axis=0)
            nn = np.maximum(n, 1)
            da = np.where(ok, a - (a * ok).sum(axis=0) / nn, 0.0)
            db = np.where(ok, b - (b * ok).sum(axis=0) / nn, 0.0)
            den = np.sqrt((da * da).sum(axis=0) * (db * db).sum(axis=0))
            r = np.where((n >= 8) & (den > 0), (da * db).sum(axis=0) / np.where(den > 0, den, 1.0), -np.inf)
            best = np.maximum(best, r)
        out[c0:c0 + chunk] = np.where(np.isfinite(best), best, np.nan)
    return out


def line_breaks(r: np.ndarray, reach: int, near: int) -> np.ndarray:
    """(K,) bool: the columns where the shelf lines break, from their matches ``r`` (K,)
    across evenly spaced columns (:func:`line_match`, NaN where unknown): ``DEPTH`` under the
    median match of the ``reach`` columns on either side, which is at least ``HOLD`` on both
    sides, and the lowest within ``near`` columns either side."""
    r = np.asarray(r, np.float64)
    k = len(r)
    if k == 0:
        return np.zeros(0, bool)
    reach, near = max(1, int(reach)), max(1, int(near))
    pad = np.full(reach, np.nan)
    win = np.lib.stride_tricks.sliding_window_view(np.r_[pad, r, pad], reach)
    # (a window of nothing but NaN, past an edge of the photo, has no median: no hold there)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(win, axis=1)
    left = med[:k]                    # the ``reach`` columns before each one
    right = med[reach + 1: reach + 1 + k]  # the ``reach`` columns after it
    rr = np.where(np.isnan(r), np.inf, r)
    low = np.lib.stride_tricks.sliding_window_view(np.r_[np.full(near, np.inf), rr, np.full(near, np.inf)],
                                                   2 * near + 1).min(axis=1)
    with np.errstate(invalid="ignore"):
        return (np.isfinite(rr) & (rr <= low) & (left >= HOLD) & (right >= HOLD)
                & (rr < np.minimum(left, right) - DEPTH))
