"""The aisle audit as one pure function: boxes in, rows / gaps / region counts / density out.

:func:`run_audit` takes global product boxes (``xyxy`` pixels of the upright image) and the
image size, finds the shelf rows and gaps, counts products per region when regions are given,
and grids the density. Without regions the rows and gaps are found over the whole image; with
regions (bays) they are found in each region on its own, since neighbouring bays of an aisle
often set their shelves at different heights. :func:`audit_to_dict` turns the result into the JSON document
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

__all__ = ["AuditSettings", "RegionStats", "AuditPart", "AuditResult", "run_audit", "audit_to_dict", "AUDIT_SCHEMA"]

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
    per megapixel, its gaps (count and summed width in products) and shelf rows."""

    name: str
    products: int
    area_px: float
    density_per_mpx: float
    gaps: int
    gap_width_products: float
    bounds: tuple[float, float, float, float]
    rows: int = 0


@dataclass(frozen=True, eq=False)
class AuditPart:
    """Rows and gaps of one part of the image: a region (``name``) or, without regions, the
    whole image (``name`` None). ``index`` (M,) are the part's boxes in the image's box array;
    ``layout.assignment`` and the gaps' row numbers refer to the part's own rows."""

    name: str | None
    index: np.ndarray
    layout: RowLayout
    gaps: tuple[Gap, ...]


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything the audit found for one image (see :func:`run_audit`)."""

    width: int
    height: int
    xyxy: np.ndarray
    parts: tuple[AuditPart, ...]
    grid: DensityGrid
    regions: tuple[RegionStats, ...] = ()
    region_shapes: tuple[Region, ...] = ()
    settings: AuditSettings = field(default_factory=AuditSettings)

    @property
    def gaps(self) -> tuple[Gap, ...]:
        """All gaps, part after part."""
        return tuple(g for p in self.parts for g in p.gaps)


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
    def analyse(name: str | None, idx: np.ndarray) -> AuditPart:
        lay = find_rows(a[idx], max_tilt=s.max_tilt, min_products=s.min_row_products)
        gaps = tuple(find_gaps(a[idx], lay, k=s.gap_k, end_gaps=s.end_gaps, end_k=s.end_k))
        return AuditPart(name, idx, lay, gaps)

    grid = density_grid(a, int(width), int(height), cell=s.cell)
    stats: list[RegionStats] = []
    regs = tuple(regions or ())
    if not regs:
        parts = (analyse(None, np.arange(len(a))),)
    else:
        inside = count_in_regions(a, list(regs))
        parts = tuple(analyse(r.name, np.flatnonzero(inside[i])) for i, r in enumerate(regs))
        for r, part in zip(regs, parts):
            n = len(part.index)
            stats.append(
                RegionStats(
                    name=r.name,
                    products=n,
                    area_px=r.area,
                    density_per_mpx=n / r.area * 1e6 if r.area > 0 else 0.0,
                    gaps=len(part.gaps),
                    gap_width_products=float(sum(g.width_products for g in part.gaps)),
                    bounds=r.bounds,
                    rows=len(part.layout.rows),
                )
            )
    return AuditResult(int(width), int(height), a, parts, grid, tuple(stats), regs, s)


def _r(v: float, nd: int = 1) -> float:
    return float(round(float(v), nd))


def audit_to_dict(result: AuditResult, *, image: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document of an audit (schema ``densedet-tile/audit@1``)."""
    a = result.xyxy
    widths = a[:, 2] - a[:, 0]
    rows = []
    gaps = []
    for part in result.parts:
        lay = part.layout
        for row in lay.rows:
            mine = [g for g in part.gaps if g.row == row.index]
            xm = (row.x_start + row.x_end) / 2
            span = max(row.x_end - row.x_start, 1e-9)
            rows.append({
                **({"region": part.name} if part.name is not None else {}),
                "row": row.index + 1,
                "products": row.count,
                "y_top": _r(lay.y_at(row.top, xm)),
                "y_bottom": _r(lay.y_at(row.bottom, xm)),
                "x_start": _r(row.x_start),
                "x_end": _r(row.x_end),
                "median_product_width": _r(row.median_width),
                "median_product_height": _r(row.median_height),
                "tilt_deg": _r(lay.tilt_deg, 2),
                "gaps": len(mine),
                "gap_width_px": _r(sum(g.width_px for g in mine)),
                "gap_width_products": _r(sum(g.width_products for g in mine), 2),
                "empty_share": _r(sum(g.width_px for g in mine if g.kind == "interior") / span, 4),
            })
        for g in part.gaps:
            gaps.append({
                "id": len(gaps) + 1,
                **({"region": part.name} if part.name is not None else {}),
                "row": g.row + 1,
                "kind": g.kind,
                "x1": _r(g.x1),
                "x2": _r(g.x2),
                "width_px": _r(g.width_px),
                "width_products": _r(g.width_products, 2),
                "xyxy": [_r(v) for v in g.xyxy],
                "polygon": [[_r(x), _r(y)] for x, y in g.polygon],
            })
    n_rows = sum(len(p.layout.rows) for p in result.parts)
    in_rows = sum(int((p.layout.assignment >= 0).sum()) for p in result.parts)
    tilts = [p.layout.tilt_deg for p in result.parts if p.layout.rows]
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
            "rows": n_rows,
            "products_in_rows": in_rows,
            "gaps": len(gaps),
            "gap_width_products": _r(sum(g.width_products for g in result.gaps), 2),
            "tilt_deg": _r(float(np.median(tilts)), 2) if tilts else 0.0,
            "median_product_width": _r(float(np.median(widths))) if len(a) else None,
            "density_per_mpx": _r(len(a) / (result.width * result.height) * 1e6, 2),
        },
        "rows": rows,
        "gaps": gaps,
        "regions": [
            {
                "name": r.name, "products": r.products, "area_px": _r(r.area_px, 0),
                "density_per_mpx": _r(r.density_per_mpx, 2), "rows": r.rows, "gaps": r.gaps,
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
