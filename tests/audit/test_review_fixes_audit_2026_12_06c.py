"""Fixes after an outside review of ``densedet-tile audit`` against docs/audit.md (2026-12-06,
third): regions of several pieces and with holes, gaps within their bay, a row's empty share,
non-finite boxes in the API, automatic region names and unjudged gaps. Each test fails on the
code before its fix."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit.analysis import run_audit
from densedet_tile.audit.gapcheck import check_gaps
from densedet_tile.audit.gaps import find_gaps
from densedet_tile.audit.regions import count_in_regions, parse_regions, region_members
from densedet_tile.audit.rows import find_rows
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.audit_aisles import synthetic_aisle


def _square(x: float, y: float = 0.0, side: float = 10.0) -> dict:
    return {"type": "Polygon", "coordinates": [[[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]]}


def _feature(geometry: dict, name: object = None) -> dict:
    return {"type": "Feature", "geometry": geometry, "properties": {} if name is None else {"name": name}}


# --- non-finite boxes in the Python API (docs: every audit function refuses them)

def test_region_members_and_count_in_regions_refuse_non_finite_boxes() -> None:
    regions = parse_regions(_square(0, 0, 100))
    for bad in ([np.nan, 1.0, 2.0, 3.0], [0.0, 1.0, np.inf, 3.0], [-np.inf, 1.0, 2.0, 3.0]):
        boxes = np.array([[10.0, 10.0, 20.0, 20.0], bad])
        with pytest.raises(InvalidInputError, match="not a finite number"):
            count_in_regions(boxes, regions)
        with pytest.raises(InvalidInputError, match="not a finite number"):
            region_members(boxes, regions)


def test_find_gaps_refuses_non_finite_boxes() -> None:
    a = synthetic_aisle(np.random.default_rng(5), width=1600, n_rows=2)
    lay = find_rows(a.xyxy)
    bad = a.xyxy.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InvalidInputError, match="not a finite number"):
        find_gaps(bad, lay)
    occ = np.array([[0.0, 0.0, np.inf, 10.0]])
    with pytest.raises(InvalidInputError, match="not a finite number"):
        find_gaps(a.xyxy, lay, occupied=occ)


# --- automatic region names never take a given one

def test_an_automatic_region_name_skips_the_names_given() -> None:
    names = [r.name for r in parse_regions({"type": "FeatureCollection", "features": [
        _feature(_square(0), "region 2"), _feature(_square(20)), _feature(_square(40))]})]
    assert names == ["region 2", "region 3", "region 4"]
    names = [r.name for r in parse_regions({"type": "FeatureCollection", "features": [
        _feature(_square(0)), _feature(_square(20)), _feature(_square(40), "region 1")]})]
    assert len(set(names)) == 3 and names[2] == "region 1"
    # without a collision the names stay as they were
    names = [r.name for r in parse_regions({"type": "FeatureCollection", "features": [
        _feature(_square(0)), _feature(_square(20), "top"), _feature(_square(40))]})]
    assert names == ["region 1", "top", "region 3"]
    with pytest.raises(InvalidInputError, match="two regions are named 'top'"):
        parse_regions({"type": "FeatureCollection", "features": [
            _feature(_square(0), "top"), _feature(_square(20), "top")]})


# --- gaps the pixel check cannot judge are said in one warning

def test_gaps_left_unjudged_by_a_textureless_photo_are_warned_about_once() -> None:
    a = synthetic_aisle(np.random.default_rng(3), width=2000, n_rows=3)
    result = run_audit(a.xyxy, a.width, a.height)
    assert result.gaps
    flat = np.full((a.height, a.width), 128, np.uint8)  # nothing to compare the gaps with
    checked = check_gaps(result, flat)
    assert all(g.looks is None for g in checked.gaps)
    said = [w for w in checked.warnings if "not checked in the photo" in w]
    assert len(said) == 1, checked.warnings
    assert said[0].startswith(f"{len(result.gaps)} gaps")
    # a photo with texture everywhere: every gap judged, no such warning
    noisy = np.random.default_rng(0).integers(0, 255, (a.height, a.width), dtype=np.uint8)
    judged = check_gaps(result, noisy)
    assert all(g.looks is not None for g in judged.gaps)
    assert not any("not checked in the photo" in w for w in judged.warnings)


# --- a row's empty share counts only its own span

def _aisle() -> tuple[np.ndarray, int, int]:
    from densedet_tile.synth.audit_aisles import synthetic_bays

    a = synthetic_bays(np.random.default_rng(3), n_bays=3, base_width=60)
    return np.round(a.xyxy, 2), a.width, a.height


def _rect(x0: float, y0: float, x1: float, y1: float) -> list:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def test_empty_share_counts_only_interior_gaps_within_the_rows_own_span() -> None:
    from densedet_tile.audit.analysis import audit_to_dict

    xyxy, w, h = _aisle()
    # a region of two pieces over a found bay's shelves: the bay's rows go on through the
    # region's products, and a gap between the pieces lies beyond a row's own last product
    regions = parse_regions({"type": "Feature", "properties": {"name": "M"}, "geometry": {
        "type": "MultiPolygon", "coordinates": [[_rect(611, 0, 1218, 1267)], [_rect(1338, 0, 1945, 1267)]]}})
    result = run_audit(xyxy, w, h, regions=regions)
    doc = audit_to_dict(result)
    rows = {(r["bay"], r["row"]): r for r in doc["rows"]}
    beyond = 0
    for b, part in enumerate(result.parts, start=1):
        for row in part.layout.rows:
            r = rows[(b, row.index + 1)]
            assert 0.0 <= r["empty_share"] <= 1.0
            inside = sum(max(0.0, min(g.x2, row.x_end) - max(g.x1, row.x_start))
                         for g in part.gaps if g.row == row.index and g.kind == "interior")
            beyond += any(g.row == row.index and g.kind == "interior" and (g.x1 >= row.x_end or g.x2 <= row.x_start)
                          for g in part.gaps)
            assert r["empty_share"] == pytest.approx(inside / (row.x_end - row.x_start), abs=1e-4)
    assert beyond  # the case the review found is there


# --- a region of several pieces: its rows describe every piece

def _two_pieces() -> list:
    return parse_regions({"type": "Feature", "properties": {"name": "two"}, "geometry": {
        "type": "MultiPolygon", "coordinates": [[_rect(3040, 100, 4000, 1100)], [_rect(4100, 100, 4900, 1100)]]}})


def _blue(jpeg: bytes, x0: float, x1: float, scale: float) -> int:
    import io

    from PIL import Image

    px = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    band = px[:, int(x0 * scale):int(x1 * scale)]
    r, g, b = band[..., 0], band[..., 1], band[..., 2]
    return int(np.count_nonzero((b > 170) & (r < 90) & (g < 130)))


def test_rows_of_a_region_of_several_pieces_cover_every_piece() -> None:
    import shapely

    from densedet_tile.audit.analysis import audit_to_dict
    from densedet_tile.audit.report import render_preview

    xyxy, w, h = _aisle()
    result = run_audit(xyxy, w, h, regions=_two_pieces())
    doc = audit_to_dict(result)
    part = result.parts[0]
    assert part.kind == "region" and len(part.layout.rows) >= 3
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    across = 0
    for row in part.layout.rows:
        r = next(q for q in doc["rows"] if q["bay"] == 1 and q["row"] == row.index + 1)
        pieces = r.get("pieces", [r["polygon"]])
        assert r["polygon"] == pieces[0]  # (the largest: as before)
        shape = shapely.union_all([shapely.Polygon(p) for p in pieces]).buffer(0.5)
        mine = part.index[part.layout.assignment == row.index]
        # every product of the row stands in its outline, in whichever piece
        assert shapely.covers(shape, shapely.points(cx[mine], cy[mine])).all()
        assert r["x_start"] == pytest.approx(row.x_start, abs=0.06) and r["x_end"] == pytest.approx(row.x_end, abs=0.06)
        for g in (q for q in doc["gaps"] if q["bay"] == 1 and q["row"] == row.index + 1):
            assert shape.buffer(0.1).covers(shapely.Polygon(g["polygon"]))
        if row.x_start < 4000 and row.x_end > 4100:
            across += 1
            assert len(pieces) == 2 and len(r["lines"]) == 2
            assert r["lines"][0][1][0] == pytest.approx(4000, abs=0.1) and r["lines"][1][0][0] == pytest.approx(4100, abs=0.1)
            assert r["line"][0] == r["lines"][0][0] and r["line"][1] == r["lines"][1][1]
    assert across >= 2
    # the preview draws the rows in both pieces
    jpeg, _, _, scale = render_preview(result, None, max_width=2500)
    assert _blue(jpeg, 4150, 4850, scale) > 0.1 * _blue(jpeg, 3100, 3950, scale) > 0
    assert _blue(jpeg, 4010, 4090, scale) == 0  # (nor between them)


# --- a region's hole cuts its rows

def test_a_regions_hole_cuts_its_rows() -> None:
    import shapely

    from densedet_tile.audit.analysis import audit_to_dict, part_clip

    xyxy, w, h = _aisle()
    hole = _rect(600, 580, 900, 1130)
    regions = parse_regions({"type": "Feature", "properties": {"name": "holed"}, "geometry": {
        "type": "Polygon", "coordinates": [_rect(80, 540, 1600, 1170), hole]}})
    result = run_audit(xyxy, w, h, regions=regions)
    doc = audit_to_dict(result)
    part = result.parts[0]
    assert part.kind == "region" and part.layout.rows
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    in_hole = shapely.contains_xy(shapely.Polygon(hole), cx, cy)
    assert in_hole.sum() >= 5  # products stand in the hole (another part's)
    through = 0
    for row in part.layout.rows:
        r = next(q for q in doc["rows"] if q["bay"] == 1 and q["row"] == row.index + 1)
        shape = shapely.union_all([shapely.Polygon(p) for p in r.get("pieces", [r["polygon"]])])
        assert shape.intersection(shapely.Polygon(hole)).area < 1.0
        inside = shapely.covers(shape.buffer(0.5), shapely.points(cx, cy))
        mine = part.index[part.layout.assignment == row.index]
        assert inside[mine].all()
        assert not (inside & in_hole).any()  # the hole's products are not drawn in the region's row
        through += row.x_start < 600 and row.x_end > 900
    assert through >= 1
    # the preview cuts the rows with the same outline
    assert part_clip(part).intersection(shapely.Polygon(hole)).area == pytest.approx(0, abs=1e-6)


# --- a found bay's gap stays within the bay and its row

def test_a_found_bays_gap_beside_a_region_stops_at_the_bays_end() -> None:
    import shapely

    from densedet_tile.audit.analysis import audit_to_dict

    xyxy, w, h = _aisle()
    # found bays in a region's hole and between a region's two pieces: the regions' products
    # beside them fill their rows' ends
    regions = parse_regions({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "holed"}, "geometry": {
            "type": "Polygon", "coordinates": [_rect(80, 540, 1600, 1170), _rect(600, 580, 900, 1130)]}},
        {"type": "Feature", "properties": {"name": "multi"}, "geometry": {
            "type": "MultiPolygon", "coordinates": [[_rect(1605, 500, 2200, 1130)], [_rect(2500, 500, 3035, 1130)]]}}]})
    result = run_audit(xyxy, w, h, regions=regions)
    doc = audit_to_dict(result)
    found = [b for b in doc["bays"] if b["kind"] == "bay"]
    assert found and any(g["bay"] == b["bay"] for b in found for g in doc["gaps"])
    for b in found:
        bay = shapely.Polygon(b["polygon"]).buffer(0.1)
        for g in (q for q in doc["gaps"] if q["bay"] == b["bay"]):
            row = next(r for r in doc["rows"] if r["bay"] == b["bay"] and r["row"] == g["row"])
            gap = shapely.Polygon(g["polygon"])
            assert b["x_start"] - 0.05 <= g["x1"] < g["x2"] <= b["x_end"] + 0.05, (b, g)
            assert bay.covers(gap), g
            assert shapely.Polygon(row["polygon"]).buffer(0.1).covers(gap), g
            assert g["width_px"] == pytest.approx(g["x2"] - g["x1"], abs=0.15)
