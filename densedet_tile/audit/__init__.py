"""Aisle audit: bays, shelf rows and gaps from detections, counts per region, density heatmap, report.

Pure functions on global product boxes (``xyxy`` pixels of the upright image):
:func:`find_bays`, :func:`find_rows`, :func:`find_gaps`, :func:`count_in_regions`,
:func:`regions_outside`, :func:`density_grid`, :func:`run_audit` (all of them; boxes with no
area inside the image are left out first with :func:`usable_boxes`),
:func:`part_count_ranges` (how sure the detector was of each bay's count),
:func:`check_gaps` (whether each gap looks empty in the photo's pixels) and
:func:`audit_to_dict`; :func:`render_preview` and
:func:`render_html` make the report (the ``densedet-tile audit`` command lives in
:mod:`densedet_tile.cli.audit`).
"""

from .analysis import AUDIT_SCHEMA, AuditPart, AuditResult, AuditSettings, RegionStats, audit_to_dict, run_audit, usable_boxes
from .bays import BayCuts, find_bays
from .confidence import part_count_ranges
from .gapcheck import check_gaps
from .gaps import DEFAULT_GAP_K, EmptyShelf, Gap, find_empty_shelves, find_gaps
from .heatmap import DensityGrid, density_grid, heatmap_png
from .regions import Region, count_in_regions, load_regions, parse_regions, regions_outside
from .report import load_preview_image, render_html, render_preview
from .rows import RowLayout, ShelfRow, estimate_tilt, find_rows

__all__ = [
    "AUDIT_SCHEMA",
    "AuditPart",
    "AuditResult",
    "AuditSettings",
    "BayCuts",
    "DEFAULT_GAP_K",
    "DensityGrid",
    "EmptyShelf",
    "Gap",
    "Region",
    "RegionStats",
    "RowLayout",
    "ShelfRow",
    "audit_to_dict",
    "check_gaps",
    "count_in_regions",
    "density_grid",
    "estimate_tilt",
    "find_bays",
    "find_empty_shelves",
    "find_gaps",
    "find_rows",
    "heatmap_png",
    "load_preview_image",
    "load_regions",
    "parse_regions",
    "part_count_ranges",
    "regions_outside",
    "render_html",
    "render_preview",
    "run_audit",
    "usable_boxes",
]
