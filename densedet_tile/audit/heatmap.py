"""Product density on a coarse grid, and its rendering as a colour PNG.

The image is cut into square cells of ``cell`` pixels (the last row/column may be smaller);
each cell counts the box centres inside it, and its density is that count per megapixel of
the cell's area inside the image. The automatic cell makes at most :data:`AUTO_MAX_CELLS` cells
in all; any grid has at most :data:`MAX_CELLS` cells (a finer one is refused: it would
only make the JSON and the report huge).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .boxes import as_boxes, require_finite

__all__ = ["DensityGrid", "density_grid", "auto_cell", "check_cell", "smallest_cell", "colorize", "colour_top", "heatmap_png",
           "MAX_CELLS", "AUTO_MAX_CELLS"]

#: Most cells a density grid may have (the JSON lists every cell twice).
MAX_CELLS = 250_000
#: The automatic cell makes at most :data:`AUTO_MAX_CELLS` cells (40,000: a square image 200 x
#: 200; a long panorama more along its length and still a few along its height; a bound of 200
#: along the longer side made a 307538 x 1632 panorama 200 x 2 cells of 38 products each).
AUTO_MAX_CELLS = 40_000

# A dark-blue -> teal -> yellow -> red ramp (own anchor colours).
_RAMP = np.array([[20, 30, 90], [20, 140, 150], [240, 220, 60], [215, 40, 30]], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class DensityGrid:
    """``counts`` int64 (rows, cols) products per cell, ``density`` float64 (rows, cols)
    products per megapixel; ``cell`` the cell side in pixels; ``width``/``height`` the image."""

    counts: np.ndarray
    density: np.ndarray
    cell: int
    width: int
    height: int


def auto_cell(xyxy: np.ndarray, width: int, height: int) -> int:
    """A cell about two median product heights wide (at least 32 px and at most 1/4 of the
    shorter image side), but never so small that the grid has more than :data:`AUTO_MAX_CELLS`
    cells: on a giant image that bound wins, and a cell may then be taller than a thin strip."""
    a = as_boxes(xyxy)
    med = float(np.median(a[:, 3] - a[:, 1])) if len(a) else min(width, height) / 8
    cell = max(32.0, 2 * med)
    cell = min(cell, max(32.0, min(width, height) / 4))
    return max(int(round(cell)), smallest_cell(width, height, limit=AUTO_MAX_CELLS))


def _n_cells(cell: int, width: int, height: int) -> int:
    return -(-int(width) // int(cell)) * -(-int(height) // int(cell))


def smallest_cell(width: int, height: int, *, limit: int = MAX_CELLS) -> int:
    """The smallest cell side (pixels) whose grid of the ``width`` x ``height`` image has at
    most ``limit`` cells (:data:`MAX_CELLS`; a bisection: the count falls as the cell grows)."""
    lo, hi = 1, max(int(width), int(height), 1)
    while lo < hi:
        mid = (lo + hi) // 2
        if _n_cells(mid, width, height) <= limit:
            hi = mid
        else:
            lo = mid + 1
    return lo


def check_cell(cell: int, width: int, height: int, *, option: str = "heatmap cell", source: str | None = None) -> None:
    """Raise :class:`~densedet_tile.errors.InvalidInputError` (one line, naming ``source``, the
    image's file, when given, and ``option``) when a ``cell`` px grid of the ``width`` x
    ``height`` image has more than :data:`MAX_CELLS` cells."""
    n = _n_cells(cell, width, height)
    if n > MAX_CELLS:
        where = f"{source}: " if source else ""
        raise InvalidInputError(
            f"{where}{option} {cell} px makes {n:,} cells on the {width}x{height} image, more than the {MAX_CELLS:,} "
            f"allowed; give {smallest_cell(width, height)} px or more")


def density_grid(xyxy: np.ndarray, width: int, height: int, *, cell: int | None = None) -> DensityGrid:
    """Count box centres per ``cell`` x ``cell`` pixel cell of a ``width`` x ``height`` image.

    ``xyxy`` (N, 4) pixels; centres outside the image are clipped onto its border. A cell
    that makes more than :data:`MAX_CELLS` cells is refused (see :func:`check_cell`).
    """
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"image size must be positive, got {width}x{height}")
    a = as_boxes(xyxy)
    require_finite(a)  # (a NaN centre made a negative cell index inside numpy)
    cell = auto_cell(a, width, height) if cell is None else cell
    if isinstance(cell, bool) or not isinstance(cell, (int, np.integer)) or cell < 1:
        raise InvalidInputError(f"heatmap cell must be a positive number of pixels, got {cell!r}")
    check_cell(int(cell), width, height)
    cols, rows = int(np.ceil(width / cell)), int(np.ceil(height / cell))
    cx = np.clip((a[:, 0] + a[:, 2]) / 2, 0, width - 1e-6)
    cy = np.clip((a[:, 1] + a[:, 3]) / 2, 0, height - 1e-6)
    ix, iy = (cx // cell).astype(np.int64), (cy // cell).astype(np.int64)
    counts = np.bincount(iy * cols + ix, minlength=rows * cols).reshape(rows, cols)
    area = _inside_areas(int(cell), width, height, rows, cols) / 1e6
    return DensityGrid(counts.astype(np.int64), counts / area, int(cell), int(width), int(height))


def _inside_areas(cell: int, width: int, height: int, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) each cell's area inside the ``width`` x ``height`` image, in pixels (the last
    row and column may be cut short)."""
    cw = np.minimum(cell, width - np.arange(cols) * cell)
    ch = np.minimum(cell, height - np.arange(rows) * cell)
    return (ch[:, None] * cw[None, :]).astype(np.float64)


def colour_top(grid: DensityGrid) -> float:
    """The density drawn fully red: the largest of the cells with at least half a whole cell's
    area inside the image (all cells' where those are empty: products only in a thin edge row
    were drawn blue at a top of 0, a diff review). A thin cell at the image's right or
    bottom edge holds the centres of a whole shelf's products on a sliver of area: its density
    set the top of the scale and the legend, and the strip read as the densest part of the shelf
    while the real differences were squeezed into the blues (an outside review). It is drawn at
    the top colour, its figure in the JSON as it is."""
    if not grid.density.size:
        return 0.0
    full = float(min(grid.cell, grid.width)) * float(min(grid.cell, grid.height))
    wide = _inside_areas(grid.cell, grid.width, grid.height, *grid.density.shape) >= 0.5 * full
    top = float(grid.density[wide].max()) if wide.any() else 0.0
    return top if top > 0 else float(grid.density.max())


def colorize(values: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Map non-negative ``values`` (H, W) to RGBA uint8 (H, W, 4) on the ramp; zeros are
    transparent. ``vmax`` is the value drawn fully red (default: the maximum)."""
    v = np.asarray(values, dtype=np.float64)
    top = float(v.max()) if vmax is None else float(vmax)
    t = np.clip(v / top, 0, 1) if top > 0 else np.zeros_like(v)
    pos = t * (len(_RAMP) - 1)
    i = np.minimum(pos.astype(np.int64), len(_RAMP) - 2)
    f = (pos - i)[..., None]
    rgb = _RAMP[i] * (1 - f) + _RAMP[i + 1] * f
    alpha = np.where(v > 0, 255, 0)[..., None]
    return np.concatenate([rgb, alpha], axis=-1).round().astype(np.uint8)


def heatmap_png(grid: DensityGrid, *, max_side: int = 1600) -> bytes:
    """The density grid as a PNG, each cell an equal block of pixels, the longer side at most
    ``max_side`` (and at least one pixel per cell)."""
    from PIL import Image

    rgba = colorize(grid.density, colour_top(grid))
    rows, cols = rgba.shape[:2]
    k = max(1, int(max_side // max(rows, cols)))
    big = np.repeat(np.repeat(rgba, k, axis=0), k, axis=1)
    buf = io.BytesIO()
    Image.fromarray(big, "RGBA").save(buf, format="PNG", optimize=True)
    return buf.getvalue()
