"""Faults found by an outside review of the audit's outputs (2026-12-07, stop 70): each test
fails on the code before it."""
from __future__ import annotations

import numpy as np
import shapely

from densedet_tile.audit import audit_to_dict, parse_regions, run_audit
from densedet_tile.audit.rows import find_rows


def test_a_region_s_gap_stays_in_its_row_s_outline_beside_a_notch_with_another_bay_s_products():
    # an L-shaped region (its notch at the top right, x 1120 on) with three full shelves ending
    # at x 1000, and another bay's products in the notch from x 1130: the stretch from the
    # region's last product to the notch's first was a region "interior" gap at x 1000-1120,
    # wholly outside its row's outline (x 10-1000), and judged by the interior threshold where
    # the region's other rows, with the same empty stretch to its edge, reported nothing
    boxes = [[10 + 100 * k, y, 100 + 100 * k, y + 250] for y in (100, 400, 700) for k in range(10)]
    boxes += [[1130 + 100 * k, 100, 1220 + 100 * k, 350] for k in range(6)]
    a = np.array(boxes, float)
    regions = parse_regions({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "L"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1120, 0], [1120, 380], [1500, 380], [1500, 1000],
                                                         [0, 1000], [0, 0]]]}}]})
    res = run_audit(a, 2000, 1000, regions=regions)
    doc = audit_to_dict(res)
    region = [p for p in res.parts if p.kind == "region"][0]
    assert region.layout.rows and len(region.index) == 30
    rows = {(r["bay"], r["row"]): shapely.Polygon(r["polygon"]) for r in doc["rows"]}
    for g in doc["gaps"]:
        assert rows[(g["bay"], g["row"])].buffer(0.1).covers(shapely.Polygon(g["polygon"])), g
    assert [g for g in doc["gaps"] if g.get("region") == "L"] == []
    # a gap inside the region's columns is still reported (row 2 with three products missing)
    gone = [k for k, b in enumerate(boxes) if b[1] == 400 and b[0] in (410, 510, 610)]
    res = run_audit(np.delete(a, gone, axis=0), 2000, 1000, regions=regions)
    (g,) = [g for p in res.parts if p.kind == "region" for g in p.gaps]
    assert g.kind == "interior" and 395 <= g.x1 <= 405 and 705 <= g.x2 <= 715


def test_a_row_s_outline_over_a_wide_fixture_is_never_a_bow_tie():
    # five products at the left end of a 2448 px fixture, their bottoms rising 8 px a product
    # (boxes' jitter, a stack): the row's own line (-6.9 degrees) drawn over the whole fixture
    # crossed its upper edge, and the outline was a self-intersecting polygon
    out = [[20 + 66 * k, 20 + r * 160, 80 + 66 * k, 120 + r * 160] for r in (0, 1, 3) for k in range(36)]
    out += [[20 + 66 * k, 340 - 8 * k, 80 + 66 * k, 440 - 8 * k] for k in range(5)]
    lay = find_rows(np.array(out, float), extent=(0.0, 2448.0))
    assert [r.count for r in lay.rows] == [36, 36, 5, 36]
    for r in lay.rows:
        poly = shapely.Polygon(r.polygon)
        assert poly.is_valid and poly.area > 0
        assert min(r.bottom_y[0] - r.top_y[0], r.bottom_y[1] - r.top_y[1]) >= 0.25 * r.median_height
    # the five products' centres stand in their row's outline still
    poly = shapely.Polygon(lay.rows[2].polygon)
    assert all(poly.covers(shapely.Point((b[0] + b[2]) / 2, (b[1] + b[3]) / 2)) for b in out[-5:])
