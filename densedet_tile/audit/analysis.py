"""The aisle audit as one pure function: boxes in, rows / gaps / region counts / density out.

:func:`run_audit` takes global product boxes (``xyxy`` pixels of the upright image) and the
image size, finds the shelf rows and gaps, counts products per region when regions are given,
and grids the density. :func:`audit_to_dict` turns the result into the JSON document
(schema ``densedet-tile/audit@1``) that the report and the ``audit`` command write.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from .gaps import DEFAULT_GAP_K, Gap, find_gaps
from .heatmap import DensityGrid, density_grid
from .regions import Region, count_in_regions
from .rows import RowLayout, find_rows

__all__ = ["AuditSettings", "RegionStats", "AuditResult", "run_audit", "audit_to_dict", "AUDIT_SCHEMA"]

AUDIT_SCHEMA = "densedet-tile/audit@1"


@dataclass(frozen=True)
class AuditSettings:
    """Options of the audit. ``gap_k``: interior gap threshold in median product widths;
    ``end_gaps``/``end_k``: whether empty row ends count, and above how many median widths
    (default: ``gap_k`` widths plus the fixture's widest common product, see
    :func:`~densedet_tile.audit.gaps.find_gaps`); ``max_tilt``: largest shelf tilt searched, degrees; ``min_row_products``:
    fewest boxes a row needs; ``cell``: heatmap cell in pixels (None: automatic)."""

    gap_k: float = DEFAULT_GAP_K
    end_gaps: bool = True
    end_k: float | None = None
    max_tilt: float = 4.0
    min_row_products: int = 3
    cell: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.gap_k, (int, float)) and 0 < self.gap_k < 1e3):
            raise InvalidInputError(f"gap k must be a positive number of product widths, got {self.gap_k!r}")
        if not (isinstance(self.max_tilt, (int, float)) and 0 <= self.max_tilt <= 30):
            raise InvalidInputError(f"max tilt must be in [0, 30] degrees, got {self.max_tilt!r}")


@dataclass(frozen=True)
class RegionStats:
    """Figures of one region: products whose centre it contains, its area (px^2), products
    per megapixel, and the gaps whose centre lies in it (count and summed width in products)."""

    name: str
    products: int
    area_px: float
    density_per_mpx: float
    gaps: int
    gap_width_products: float
    bounds: tuple[float, float, float, float]


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything the audit found for one image (see :func:`run_audit`)."""

    width: int
    height: int
    xyxy: np.ndarray
    layout: RowLayout
    gaps: tuple[Gap, ...]
    grid: DensityGrid
    regions: tuple[RegionStats, ...] = ()
    region_shapes: tuple[Region, ...] = ()
    settings: AuditSettings = field(default_factory=AuditSettings)


def run_audit(
    xyxy: np.ndarray,
    width: int,
    height: int,
    *,
    regions: Sequence[Region] | None = None,
    settings: AuditSettings | None = None,
) -> AuditResult:
    """Audit one image's products. ``xyxy`` (N, 4) float pixels of the upright
    ``width`` x ``height`` image; ``regions`` optional named polygons (same frame)."""
    s = AuditSettings() if settings is None else settings
    a = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    if isinstance(width, bool) or isinstance(height, bool) or int(width) <= 0 or int(height) <= 0:
        raise InvalidInputError(f"image size must be positive, got {width}x{height}")
    layout = find_rows(a, max_tilt=s.max_tilt, min_products=s.min_row_products)
    gaps = tuple(find_gaps(a, layout, k=s.gap_k, end_gaps=s.end_gaps, end_k=s.end_k))
    grid = density_grid(a, int(width), int(height), cell=s.cell)
    stats: list[RegionStats] = []
    regs = tuple(regions or ())
    if regs:
        inside = count_in_regions(a, list(regs))
        gcent = np.array([[(g.xyxy[0] + g.xyxy[2]) / 2, (g.xyxy[1] + g.xyxy[3]) / 2, 0, 0] for g in gaps]).reshape(-1, 4)
        gcent[:, 2:] = gcent[:, :2]
        gin = count_in_regions(gcent, list(regs))
        gw = np.array([g.width_products for g in gaps])
        for i, r in enumerate(regs):
            n = int(inside[i].sum())
            stats.append(
                RegionStats(
                    name=r.name,
                    products=n,
                    area_px=r.area,
                    density_per_mpx=n / r.area * 1e6 if r.area > 0 else 0.0,
                    gaps=int(gin[i].sum()),
                    gap_width_products=float(gw[gin[i]].sum()) if len(gaps) else 0.0,
                    bounds=r.bounds,
                )
            )
    return AuditResult(int(width), int(height), a, layout, gaps, grid, tuple(stats), regs, s)


def _r(v: float, nd: int = 1) -> float:
    return float(round(float(v), nd))


def audit_to_dict(result: AuditResult, *, image: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of an audit (schema ``densedet-tile/audit@1``)."""
    lay = result.layout
    a = result.xyxy
    widths = a[:, 2] - a[:, 0]
    rows = []
    for row in lay.rows:
        mine = [g for g in result.gaps if g.row == row.index]
        xm = (row.x_start + row.x_end) / 2
        span = max(row.x_end - row.x_start, 1e-9)
        rows.append({
            "row": row.index + 1,
            "products": row.count,
            "y_top": _r(lay.y_at(row.top, xm)),
            "y_bottom": _r(lay.y_at(row.bottom, xm)),
            "x_start": _r(row.x_start),
            "x_end": _r(row.x_end),
            "median_product_width": _r(row.median_width),
            "median_product_height": _r(row.median_height),
            "gaps": len(mine),
            "gap_width_px": _r(sum(g.width_px for g in mine)),
            "gap_width_products": _r(sum(g.width_products for g in mine), 2),
            "empty_share": _r(sum(g.width_px for g in mine if g.kind == "interior") / span, 4),
        })
    gaps = [
        {
            "id": i + 1,
            "row": g.row + 1,
            "kind": g.kind,
            "x1": _r(g.x1),
            "x2": _r(g.x2),
            "width_px": _r(g.width_px),
            "width_products": _r(g.width_products, 2),
            "xyxy": [_r(v) for v in g.xyxy],
            "polygon": [[_r(x), _r(y)] for x, y in g.polygon],
        }
        for i, g in enumerate(result.gaps)
    ]
    grid = result.grid
    s = result.settings
    return {
        "schema": AUDIT_SCHEMA,
        "image": image or {"width": result.width, "height": result.height},
        "settings": {
            "gap_k": s.gap_k, "end_gaps": s.end_gaps, "end_k": s.end_k,
            "max_tilt_deg": s.max_tilt, "min_row_products": s.min_row_products, "heatmap_cell_px": grid.cell,
        },
        "summary": {
            "products": int(len(a)),
            "rows": len(lay.rows),
            "products_in_rows": int((lay.assignment >= 0).sum()),
            "gaps": len(result.gaps),
            "gap_width_products": _r(sum(g.width_products for g in result.gaps), 2),
            "tilt_deg": _r(lay.tilt_deg, 2),
            "median_product_width": _r(float(np.median(widths))) if len(a) else None,
            "density_per_mpx": _r(len(a) / (result.width * result.height) * 1e6, 2),
        },
        "rows": rows,
        "gaps": gaps,
        "regions": [
            {
                "name": r.name, "products": r.products, "area_px": _r(r.area_px, 0),
                "density_per_mpx": _r(r.density_per_mpx, 2), "gaps": r.gaps,
                "gap_width_products": _r(r.gap_width_products, 2), "bounds": [_r(v) for v in r.bounds],
            }
            for r in result.regions
        ],
        "heatmap": {
            "cell_px": grid.cell,
            "cols": int(grid.counts.shape[1]),
            "rows": int(grid.counts.shape[0]),
            "counts": grid.counts.tolist(),
            "density_per_mpx": np.round(grid.density, 1).tolist(),
        },
    }
