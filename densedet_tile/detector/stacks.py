"""Stacked packs: split a box that holds a pile of identical layers into one box per layer.

The built-in model was trained on generated shelves where every product stands on its shelf;
on real shelves it puts one box around a pile of cartons or of packs lying flat (soda 12-packs
three high, toothpaste boxes, wipes), so a pile of four counts as one product. Such a box has a
property a single product rarely has: its content repeats vertically with a period of exactly a
whole fraction of its height (each layer is the same printed pack). This module measures that
repetition on the pixels the model saw and cuts the box into equal layers where it is clear.

The test, per box and for ``k`` layers (2 to :data:`MAX_LAYERS`): the box is resampled to a
fixed grid (area averages, so large boxes are not aliased), its slow shading removed, and the
normalised correlation of the grid with itself shifted down by ``L`` rows computed for every
``L``. A pile of ``k`` layers has a peak near ``L = rows / k`` (within 15 % for boxes that are a
little loose, and nearer to it than to the periods of ``k - 1`` and ``k + 1`` layers) that is
both high (at least :data:`MIN_PEAK`) and well above the valley before it
(by :data:`MIN_PROMINENCE`; smooth or plain boxes correlate at every shift and have no valley).
A pile of two repeats only once, which two lines of print or two bands of a label also do, so
it needs a higher peak (:data:`MIN_PEAK_TWO`). Piles are made of flat packs: a layer must be at
least :data:`MIN_LAYER_ASPECT` times as wide as high (tall products stacked are rare, striped
bottles and cans are common), and no thinner than :data:`MIN_LAYER_PX` model-input pixels. A
box with little contrast (:data:`MIN_CONTRAST`) is left whole: floor tiles and ceiling panels
repeat like layers, and the model's false boxes on them would be multiplied. A pile of 6 also
repeats every 2 and 3 layers: of the ``k`` that pass, the largest whose peak is within 0.05 of
the best wins. Everything is vectorised over the boxes of a tile (no
loop over boxes), and a first pass on a coarse grid drops the boxes that show no repetition:
about 10-25 ms of CPU per 640 px tile of a shelf photo.

The thresholds are strict on purpose: every cut of a single product is a false box. For
``k >= 3`` the pack two layers down must match too (a product printed with evenly spaced bands
repeats once or twice; a pile repeats all the way down). On the 85 real photos they cut the
clearest piles and lower the count error by 0.9 points; on the generated held-out shelves,
which have no piles, AP50 moves from 0.9798 to 0.9792 (benchmarks/real_photos.md, "Stacked
packs"). It is a rule for the built-in model only: a
detector trained on real labels already boxes each layer, so the adapters do not use it.
``split_stacks=False`` (``--detector-option split_stacks=false``) turns it off.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError

__all__ = ["GRID_ROWS", "GRID_COLS", "LAYERS_LIMIT", "MAX_LAYERS", "MIN_CONTRAST", "MIN_LAYER_ASPECT", "MIN_LAYER_PX",
           "MIN_PEAK", "MIN_PEAK_TWO", "MIN_PROMINENCE", "layer_counts", "split_layers"]

GRID_ROWS = 96  #: rows of the grid a box is resampled to (periods of 2 to 6 layers: 48, 32, 24, 19.2, 16)
GRID_COLS = 24  #: columns of that grid (fewer blur text lines into look-alike layers)
MAX_LAYERS = 6  #: the most layers a box is cut into
MIN_LAYER_PX = 5.0  #: thinnest layer considered, in pixels of the image the boxes are in
MIN_PEAK = 0.6  #: least self-correlation at the layer period
MIN_PROMINENCE = 0.5  #: least rise of that peak above the lowest correlation before it
MIN_LAYER_ASPECT = 0.8  #: least width / height of a layer (piles are of packs lying flat or about square)
MIN_PEAK_TWO = 0.9  #: least self-correlation for a pile of two (one repeat only: easier to fake)
MIN_CONTRAST = 20.0  #: least standard deviation of a box's grey levels (0-255): printed packs
LAYERS_LIMIT = MAX_LAYERS  #: the most layers the grids tell apart (beyond, lags fall between periods)
_TOL = 0.15  #: the period may differ from rows / k by this fraction (loose boxes)
_NEAR = 0.05  #: peaks this close to the best count as equal (then the most layers wins)
_MIN_OVERLAP = 8  #: rows two shifted copies of the grid must share
_SCREEN_MARGIN = 0.3  #: the coarse pass keeps a box whose peak is within this of MIN_PEAK
_VALLEY_FROM = 0.35  #: the valley is looked for from this fraction of the period on


def _gray_integral(image: np.ndarray) -> np.ndarray:
    """Summed-area table (H + 1, W + 1) of the image's luma (integer BT.601 weights, 0..255).

    int32 while the total fits (a 2900 px square tile), int64 beyond: int32 sums are several
    times faster and exact either way."""
    img = np.asarray(image)
    if img.ndim == 3:
        g = img[..., 0].astype(np.uint16)
        g *= 77
        for c, weight in ((1, 150), (2, 29)):  # in place: a quarter of the time of a matrix product
            part = img[..., c].astype(np.uint16)
            part *= weight
            g += part
        g >>= 8
    else:
        g = np.clip(img, 0, 255).astype(np.uint16)
    dtype = np.int32 if g.size * 255 < 2**31 else np.int64
    s = np.zeros((g.shape[0] + 1, g.shape[1] + 1), dtype)
    inner = s[1:, 1:]
    inner[...] = g  # summed in place: no intermediate table (a third of this function's time)
    np.cumsum(inner, axis=0, out=inner)
    np.cumsum(inner, axis=1, out=inner)
    return s


def _axis_weights(t: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Floor index and fraction of positions ``t`` in [0, size] (for linear interpolation)."""
    t = np.clip(t, 0.0, size)
    i0 = np.minimum(np.floor(t).astype(np.int64), max(size - 1, 0))
    return i0, t - i0


def _grids(sat: np.ndarray, boxes: np.ndarray, rows: int = GRID_ROWS, cols: int = GRID_COLS) -> np.ndarray:
    """(n, rows, cols) cell means of each box (area averages from the integral).

    The summed-area table is read at the cell corners by bilinear interpolation; since the
    corners of one box form a grid, rows and columns are interpolated separately."""
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    b = boxes.astype(np.float64)
    ys = np.clip(b[:, 1:2] + (b[:, 3:4] - b[:, 1:2]) * np.linspace(0.0, 1.0, rows + 1)[None], 0.0, h)
    xs = np.clip(b[:, 0:1] + (b[:, 2:3] - b[:, 0:1]) * np.linspace(0.0, 1.0, cols + 1)[None], 0.0, w)
    y0, fy = _axis_weights(ys, h)  # (n, R + 1)
    x0, fx = _axis_weights(xs, w)  # (n, C + 1)
    flat = sat.ravel()
    stride = sat.shape[1]
    idx = (y0 * stride)[:, :, None] + x0[:, None, :]  # (n, R + 1, C + 1) top-left corners
    fy3, fx3 = fy[:, :, None], fx[:, None, :]
    top = flat.take(idx) * (1 - fx3) + flat.take(idx + 1) * fx3
    bot = flat.take(idx + stride) * (1 - fx3) + flat.take(idx + stride + 1) * fx3
    s = top * (1 - fy3) + bot * fy3  # (n, R + 1, C + 1)
    cells = s[:, 1:, 1:] - s[:, :-1, 1:] - s[:, 1:, :-1] + s[:, :-1, :-1]
    area = np.diff(ys, axis=1)[:, :, None] * np.diff(xs, axis=1)[:, None, :]
    return (cells / np.maximum(area, 1e-9)).astype(np.float32)


def _blur_matrix(n: int, sigma: float) -> np.ndarray:
    """(n, n) row-normalised Gaussian smoothing matrix (edges renormalised, no padding)."""
    i = np.arange(n, dtype=np.float32)
    m = np.exp(-0.5 * ((i[:, None] - i[None]) / sigma) ** 2)
    return (m / m.sum(axis=1, keepdims=True)).astype(np.float32)


_BLUR_R = _blur_matrix(GRID_ROWS, GRID_ROWS / 6)
_BLUR_C = _blur_matrix(GRID_COLS, GRID_COLS / 6)
#: the coarse grid of the first pass: 60 rows make every period of 2 to 6 layers a whole number of
#: rows (on 48, five layers fall between two lags and thin print stops lining up)
_SCREEN_ROWS, _SCREEN_COLS = 60, GRID_COLS // 3
_SCREEN_R = _blur_matrix(_SCREEN_ROWS, _SCREEN_ROWS / 6)
_SCREEN_C = _blur_matrix(_SCREEN_COLS, _SCREEN_COLS / 6)


def _flat(g: np.ndarray, blur_r: np.ndarray, blur_c: np.ndarray) -> np.ndarray:
    """The grids less their shading slower than about a sixth of the box."""
    return g - blur_r @ g @ blur_c.T


def _shift_correlation(g: np.ndarray, lags: np.ndarray) -> np.ndarray:
    """(n, len(lags)) normalised correlation of each grid with itself moved down by each lag.

    The cross sums of every lag at once from the power spectrum along the rows (zero-padded to
    twice the rows, so the correlation is not circular), summed over the columns; the sums and
    squares of the two overlapping parts come from cumulative row sums."""
    n, rows, cols = g.shape
    g = g.astype(np.float64)
    lags = np.asarray(lags, np.int64)
    spectrum = np.fft.rfft(g, n=2 * rows, axis=1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).sum(axis=2)  # (n, rows + 1)
    cross = np.fft.irfft(power, n=2 * rows, axis=1)[:, lags]  # (n, len(lags))
    zero = np.zeros((n, 1))
    rs = np.concatenate([zero, np.cumsum(g.sum(axis=2), axis=1)], axis=1)  # (n, R + 1)
    rq = np.concatenate([zero, np.cumsum((g * g).sum(axis=2), axis=1)], axis=1)
    m = ((rows - lags) * cols).astype(np.float64)[None]
    sa, sb = rs[:, rows - lags], rs[:, [rows]] - rs[:, lags]
    qa, qb = rq[:, rows - lags], rq[:, [rows]] - rq[:, lags]
    num = cross - sa * sb / m
    den = np.sqrt(np.maximum(qa - sa * sa / m, 0.0) * np.maximum(qb - sb * sb / m, 0.0))
    return np.where(den > 1e-6, num / np.maximum(den, 1e-12), 0.0).astype(np.float32)


def _windows(ks: np.ndarray, rows: int = GRID_ROWS) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                               np.ndarray]:
    """Per layer count: the lag window of its period (disjoint from its neighbours'), of twice
    its period, and where its valley starts (grid rows)."""
    periods = rows / ks
    lo = np.maximum(np.floor(periods * (1 - _TOL)).astype(int), 2)
    hi = np.minimum(np.ceil(periods * (1 + _TOL)).astype(int), rows // 2)
    for i in range(len(ks) - 1):  # periods of k and k + 1 split at their midpoint
        mid = int(np.floor((periods[i] + periods[i + 1]) / 2))
        lo[i] = max(lo[i], mid + 1)
        hi[i + 1] = min(hi[i + 1], mid)
    hi = np.maximum(hi, lo)  # periods of a few rows (many layers on a coarse grid) keep a lag
    lo2 = np.floor(2 * periods * (1 - _TOL)).astype(int)
    hi2 = np.minimum(np.ceil(2 * periods * (1 + _TOL)).astype(int), rows - _MIN_OVERLAP * rows // GRID_ROWS)
    hi2 = np.maximum(hi2, lo2)
    v0 = np.minimum(np.maximum((periods * _VALLEY_FROM).astype(int), 1), lo)
    return lo, hi, lo2, hi2, v0


def _over_windows(r: np.ndarray, first: int, lo: np.ndarray, hi: np.ndarray, reduce: np.ufunc) -> np.ndarray:
    """(n, K): ``reduce`` (np.maximum or np.minimum) of each row of ``r`` (correlations at lags
    ``first, first + 1, ...``) over each window of lags ``lo[i]..hi[i]``."""
    return np.stack([reduce.reduce(r[:, a - first: b - first + 1], axis=1) for a, b in zip(lo, hi)], 1)


def layer_counts(image: np.ndarray, boxes: np.ndarray, *, max_layers: int = MAX_LAYERS,
                 min_layer_px: float = MIN_LAYER_PX, min_peak: float = MIN_PEAK,
                 min_prominence: float = MIN_PROMINENCE, min_layer_aspect: float = MIN_LAYER_ASPECT,
                 min_peak_two: float = MIN_PEAK_TWO, min_contrast: float = MIN_CONTRAST) -> np.ndarray:
    """How many equal layers each box holds (1 where no clear vertical repetition).

    Args:
        image: the (H, W, 3) RGB or (H, W) grey pixels the boxes are in.
        boxes: (n, 4) xyxy pixels of ``image``; clipped to the image first, and a box with a
            coordinate that is not finite is left whole.
        The keywords override the module's thresholds of the same names (upper case);
        ``max_layers`` is capped at :data:`LAYERS_LIMIT`.
    Returns:
        (n,) int64, each from 1 to ``max_layers``.
    """
    img = np.asarray(image)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = boxes.shape[0]
    ones = np.ones(n, np.int64)
    top = min(int(max_layers), LAYERS_LIMIT)
    if n == 0 or top < 2 or img.ndim not in (2, 3) or img.shape[0] == 0 or img.shape[1] == 0 \
            or (img.ndim == 3 and img.shape[2] == 0):
        return ones
    if img.ndim == 3 and img.shape[2] < 3:  # grey with a channel axis
        img = img[..., 0]
    finite = np.isfinite(boxes).all(axis=1)
    h, w = img.shape[:2]
    boxes = np.where(finite[:, None], boxes, 0.0)
    boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], np.float32))
    heights = boxes[:, 3] - boxes[:, 1]
    widths = boxes[:, 2] - boxes[:, 0]
    ks = np.arange(2, top + 1)
    layer_h = heights[:, None] / ks[None]  # (n, K)
    fits = (layer_h >= min_layer_px) & (widths[:, None] >= min_layer_aspect * layer_h)
    live = np.flatnonzero(fits.any(axis=1) & (widths >= 2) & finite)
    if live.size == 0:
        return ones
    sat = _gray_integral(img)
    # first pass on a coarse grid (60 x 8, a fifth of the cells): most boxes show no repetition at all
    # there and stop; the thresholds are lowered by a margin so the pass only screens
    # (no contrast test here: 8 columns average fine print away)
    c = _flat(_grids(sat, boxes[live], _SCREEN_ROWS, _SCREEN_COLS), _SCREEN_R, _SCREEN_C)
    clo, chi, _, _, _ = _windows(ks, _SCREEN_ROWS)
    cl = np.arange(int(clo.min()), int(chi.max()) + 1)
    cr = _shift_correlation(c, cl)
    cpeak = _over_windows(cr, int(cl[0]), clo, chi, np.maximum)
    live = live[((cpeak >= min_peak - _SCREEN_MARGIN) & fits[live]).any(axis=1)]
    if live.size == 0:
        return ones
    g = _grids(sat, boxes[live])
    contrast = g.std(axis=(1, 2))  # floor tiles and plain panels repeat too, but carry no print
    busy = contrast >= min_contrast
    live, g = live[busy], g[busy]  # the rest stay whole: no correlation needed
    if live.size == 0:
        return ones
    g = _flat(g, _BLUR_R, _BLUR_C)
    lo, hi, lo2, hi2, v0 = _windows(ks)
    lags = np.arange(int(v0.min()), int(max(hi.max(), hi2.max())) + 1)
    r = _shift_correlation(g, lags)  # (m, len(lags))
    first = int(lags[0])
    peak = _over_windows(r, first, lo, hi, np.maximum)
    again = _over_windows(r, first, lo2, hi2, np.maximum)  # the pack two layers down must match too (k >= 3)
    valley = _over_windows(r, first, v0, lo, np.minimum)
    need = np.where(ks == 2, max(min_peak, min_peak_two), min_peak)[None]
    ok = (peak >= need) & (peak - valley >= min_prominence) & fits[live]
    ok[:, ks >= 3] &= again[:, ks >= 3] >= min_peak
    # a pile of 6 also repeats at 2 and 3 layers: of the counts that pass, the largest whose
    # peak is about as high as the best one
    score = np.where(ok, peak, -np.inf)
    near = ok & (score >= score.max(axis=1, keepdims=True) - _NEAR)
    choice = np.where(near, ks[None], 1).max(axis=1)
    out = ones.copy()
    out[live] = choice
    return out


def split_layers(boxes: np.ndarray, scores: np.ndarray, layers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut box ``i`` into ``layers[i]`` equal horizontal bands, each keeping the box's score.

    The bands of one box follow each other top to bottom and take its place in the order (the
    order of the input is kept otherwise).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    layers = np.asarray(layers, np.int64).reshape(-1)
    if not (layers.shape == scores.shape == boxes.shape[:1]) or (layers < 1).any():
        raise InvalidInputError("split_layers: one layer count >= 1 per box and score expected")
    if boxes.shape[0] == 0 or (layers == 1).all():
        return boxes, scores
    src = np.repeat(np.arange(boxes.shape[0]), layers)
    first = np.repeat(np.cumsum(layers) - layers, layers)
    j = (np.arange(src.size) - first).astype(np.float32)
    k = layers[src].astype(np.float32)
    b = boxes[src]
    h = b[:, 3] - b[:, 1]
    out = b.copy()
    out[:, 1] = b[:, 1] + h * j / k
    out[:, 3] = b[:, 1] + h * (j + 1) / k
    out[:, 3] = np.where(j + 1 == k, b[:, 3], out[:, 3])  # the last band ends exactly at the box
    return out, scores[src]
