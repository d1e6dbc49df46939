"""Faults found by an outside review of the audit's regions (2026-12-07, stop 68)."""
from __future__ import annotations

import numpy as np
import pytest
import shapely

from densedet_tile.audit import AuditSettings, audit_to_dict, parse_regions, run_audit
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.audit_aisles import synthetic_bays


def _rect(name: str, x0: float, y0: float, x1: float, y1: float, holes: tuple = ()) -> dict:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Feature", "properties": {"name": name},
            "geometry": {"type": "Polygon", "coordinates": [ring, *[list(map(list, h)) for h in holes]]}}


def _regions(*feats: dict) -> list:
    return parse_regions({"type": "FeatureCollection", "features": list(feats)})


def _aisle():
    s = synthetic_bays(np.random.default_rng(0), n_bays=3)
    return np.asarray(s.xyxy, float), int(s.width), int(s.height), np.asarray(s.bay_of)


def test_found_bays_beside_regions_have_region_sides_and_no_false_wide_warning() -> None:
    # regions over the two outer bays' far parts left narrow found pieces beside them: the
    # middle bay, cut right, was called "several bays not cut apart" against their median, and
    # the pieces' sides read "end" though the shelves go on into the regions
    a, w, h, bay_of = _aisle()
    xs = [(a[bay_of == b, 0].min(), a[bay_of == b, 2].max()) for b in range(3)]
    left_cut = xs[0][0] + 0.6 * (xs[0][1] - xs[0][0])
    right_cut = xs[2][0] + 0.15 * (xs[2][1] - xs[2][0])
    regs = _regions(_rect("left", -2000, 0, left_cut, h), _rect("right", right_cut, -100, w + 1000, h + 100))
    res = run_audit(a, w, h, regions=regs, settings=AuditSettings(bay_width_m=1.2))
    found = [p for p in res.parts if p.kind == "bay"]
    assert len(found) == 3
    assert found[0].edges[0] == "region" and found[-1].edges[1] == "region"
    assert not [m for m in res.warnings if "times as wide as the median bay" in m]
    # without the regions the same boxes' bays end at the image's edges, as before
    plain = run_audit(a, w, h, settings=AuditSettings(bay_width_m=1.2))
    assert all("region" not in p.edges for p in plain.parts)


def test_a_regions_hole_over_part_of_a_row_is_no_gap_where_products_stand_in_it() -> None:
    # the products under a region's hole are left out of the region, not missing: the row's
    # stretch across the hole was one gap of 14 product widths, products under it
    a, w, h, _ = _aisle()
    # a hole over part of two shelves of the first bay (each row's band only partly under it)
    hole = [(1000, 900), (2000, 900), (2000, 1300), (1000, 1300), (1000, 900)]
    regs = _regions(_rect("holed", 0, 0, 3000, h, holes=(hole,)))
    res = run_audit(a, w, h, regions=regs)
    region = res.parts[0]
    assert region.kind == "region"
    under = shapely.Polygon(hole)
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    in_hole = shapely.contains_xy(under, cx, cy)
    assert in_hole.sum() >= 5
    # no gap of the region runs over a product standing in the hole
    for g in region.gaps:
        gx0, gy0, gx1, gy1 = g.xyxy
        over = in_hole & (cx > gx0) & (cx < gx1) & (cy > gy0) & (cy < gy1)
        assert not over.any(), (g.xyxy, a[over])


@pytest.mark.parametrize("width", [1e-6, 0.05])
def test_a_region_thinner_than_the_json_s_precision_is_refused(width: float) -> None:
    with pytest.raises(InvalidInputError, match=r"feature 1 is thinner than 0.1 px"):
        _regions(_rect("sliver", 1000, 0, 1000 + width, 1911), _rect("whole", 0, 0, 6937, 1911))


def test_a_region_reaching_into_the_image_by_a_hair_keeps_its_own_outline() -> None:
    # cut to the image, a region 0.01 px inside it was written as a polygon of two points
    a, w, h, _ = _aisle()
    regs = _regions(_rect("outside", -3000, 0, 0.01, h))
    doc = audit_to_dict(run_audit(a, w, h, regions=regs))
    poly = next(b["polygon"] for b in doc["bays"] if b["name"] == "outside")
    assert shapely.Polygon(poly).is_valid and shapely.Polygon(poly).area > 1


def test_a_region_over_the_shelf_above_does_not_make_a_bays_side_a_region_edge() -> None:
    # a diff review: a region drawn over the top shelf, wider than the products, its bottom edge
    # on the next shelf's top, touched every found bay's height range and made their outer sides
    # "region" (partial bays, left out of the wide-bay median)
    a, w, h, _ = _aisle()
    cy = (a[:, 1] + a[:, 3]) / 2
    top = a[cy <= np.percentile(cy, 10)]
    rest_top = float(a[cy > top[:, 3].max() + 3, 1].min())
    for bottom in (rest_top, rest_top + 10):  # touching the next shelf, or reaching into it a little
        regs = _regions(_rect("top shelf", a[:, 0].min() - 50, 0, a[:, 2].max() + 50, bottom))
        res = run_audit(a, w, h, regions=regs)
        found = [p for p in res.parts if p.kind == "bay"]
        assert found and all("region" not in p.edges for p in found), [(p.name, p.edges) for p in found]


def test_a_region_built_in_python_thinner_than_the_json_s_precision_does_not_crash_the_audit() -> None:
    # a diff review: Region objects skip parse_regions' check, and every piece of a sliver was
    # left out of its outline: an IndexError
    from densedet_tile.audit import Region

    a, w, h, _ = _aisle()
    res = run_audit(a, w, h, regions=[Region("thin", shapely.box(500, 100, 500.05, 300))])
    assert res.parts[0].name == "thin" and len(res.parts[0].polygon) >= 3


def test_a_thin_cell_at_the_images_edge_does_not_set_the_heatmaps_top_colour() -> None:
    # a 75 px bottom row of 305 px cells held a whole shelf's centres: its density set the red and
    # the legend, so the edge read as the densest part of the shelf (an outside review)
    from densedet_tile.audit.heatmap import colour_top, density_grid
    from densedet_tile.audit.report import render_html

    xs = np.arange(0, 2400, 100.0)
    shelf = [[x, y, x + 90, y + 60] for y in (100.0, 400.0, 700.0, 1000.0) for x in xs[::3]]
    edge = [[x, 1540, x + 90, 1598] for x in xs]  # a shelf whose centres fall in the thin bottom row
    a = np.array(shelf + edge)
    grid = density_grid(a, 2400, 1600, cell=305)
    assert grid.density.shape == (6, 8)
    assert grid.density[-1].max() > grid.density[:-1].max()  # the sliver is the densest by the formula
    top = colour_top(grid)
    assert top == grid.density[:-1].max()
    res = run_audit(a, 2400, 1600, settings=AuditSettings(cell=305))
    doc = audit_to_dict(res)
    assert doc["heatmap"]["colour_max_per_mpx"] == round(top, 1)
    page = render_html(doc, b"\xff\xd8\xff\xd9", b"\x89PNG")
    assert f"0 to {round(top, 1):g} products / Mpx" in page and "thin cells at the image's edge up to" in page


def test_products_only_in_a_thin_edge_row_are_drawn_red_not_blue() -> None:
    # a diff review: every cell with half a cell inside the image empty made the top 0, and the
    # thin row's products were drawn at the bottom of the ramp
    from densedet_tile.audit.heatmap import colorize, colour_top, density_grid

    a = np.array([[x, 1540, x + 90, 1598] for x in np.arange(0, 2400, 100.0)])
    grid = density_grid(a, 2400, 1600, cell=305)
    top = colour_top(grid)
    assert top == grid.density.max() > 0
    rgba = colorize(grid.density, top)
    densest = np.unravel_index(np.argmax(grid.density), grid.density.shape)
    assert rgba[densest][:3].tolist() == [215, 40, 30]  # red, not the ramp's dark blue


def test_a_found_rows_gap_wholly_inside_a_region_is_the_regions_to_report() -> None:
    # on a real photo a found bay's row ran through a region and reported a gap on a shelf the
    # region's own row filled (an outside review): a gap kept because the region reports none
    # there must cross the region's edge (a stretch its rows end in), not lie wholly inside it
    boxes = []
    for x in list(range(0, 400, 50)) + list(range(800, 1200, 50)):
        boxes.append([x + 2, 210, x + 48, 290])  # the found bay's shelf, left and right of the region
    for y0 in (100, 300):
        for x in range(400, 800, 50):
            boxes.append([x + 2, y0 + 5, x + 48, y0 + 85])  # the region's own shelves above and below
    a = np.array(boxes, float)
    regs = _regions(_rect("middle", 395, 0, 805, 500))
    res = run_audit(a, 1200, 500, regions=regs)
    inside = shapely.box(395, 0, 805, 500)
    for p in res.parts:
        if p.kind == "bay":
            for g in p.gaps:
                box = shapely.box(*g.xyxy)
                assert shapely.area(shapely.intersection(box, inside)) < 0.95 * box.area, (p.name, g.xyxy)
