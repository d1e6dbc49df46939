"""Killing tests for surviving mutants of densedet_tile/audit/analysis.py (generated data only)."""
from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit import audit_to_dict, run_audit
from densedet_tile.audit.analysis import AuditSettings
from densedet_tile.audit.regions import parse_regions
from densedet_tile.errors import InvalidInputError


def _square(x: float, y: float, s: float, name: str) -> dict:
    return {"type": "Feature", "properties": {"name": name},
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]}}


def _grid_boxes(x0: float, y0: float, n_cols: int, n_rows: int, w: float = 40, h: float = 80, step: float = 42,
                pitch: float = 100) -> np.ndarray:
    return np.array([[x0 + c * step, y0 + r * pitch, x0 + c * step + w, y0 + r * pitch + h]
                     for r in range(n_rows) for c in range(n_cols)], np.float64)


def test_a_region_drawn_in_the_unit_square_is_warned_about_as_normalised() -> None:
    # analysis.py:468 a region from another tool's 0-1 output is often exactly the unit square:
    # its bounds reach 1.0, which must still read as "spans at most 1 px"
    regs = parse_regions({"type": "FeatureCollection", "features": [_square(0, 0, 1, "unit")]})
    res = run_audit(_grid_boxes(100, 100, 6, 3), 1000, 800, regions=regs)
    assert any("'unit' spans at most 1 px" in w for w in res.warnings), res.warnings


def test_a_box_with_no_area_inside_the_image_is_not_usable() -> None:
    # analysis.py:283 a point or a line (zero width or height), or a box whose only overlap
    # with the image is an edge, has no area there
    from densedet_tile.audit.analysis import usable_boxes
    boxes = np.array([[10, 10, 30, 40], [10, 10, 10, 40], [10, 10, 30, 10], [-20, 10, 0, 40], [50, 800, 60, 900]],
                     np.float64)
    _, keep = usable_boxes(boxes, 1000, 800)
    assert keep.tolist() == [True, False, False, False, False]
    with pytest.raises(InvalidInputError, match="4 boxes have no area inside the 1000x800 image"):
        run_audit(boxes, 1000, 800)


def test_many_overlapping_pairs_are_named_three_at_a_time() -> None:
    # analysis.py:432 the warning names the first 3 overlapping pairs and counts the rest
    feats = [_square(0, 0, 500, "big")] + [_square(50 + 80 * k, 50, 60, f"r{k}") for k in range(5)]
    regs = parse_regions({"type": "FeatureCollection", "features": feats})
    res = run_audit(_grid_boxes(600, 100, 6, 3), 1000, 800, regions=regs)
    said = [w for w in res.warnings if w.startswith("regions overlap")]
    assert len(said) == 1
    assert "('big' and 'r0'; 'big' and 'r1'; 'big' and 'r2'; 2 more pairs)" in said[0]


def _two_bays(gutter: float, bottoms=(300, 600, 900, 1200)) -> np.ndarray:
    boxes = []
    for b in bottoms:
        for i in range(10):
            boxes.append([50 + i * 102.0, b - 250, 150 + i * 102.0, b])
        x0 = 50 + 9 * 102.0 + 100 + gutter
        for i in range(10):
            boxes.append([x0 + i * 102.0, b - 250, x0 + 100 + i * 102.0, b])
    return np.array(boxes, np.float64)


def test_an_upright_no_wider_than_an_end_gap_is_no_empty_section() -> None:
    # analysis.py:554 a section is empty only when wider than an end gap of the bays beside it:
    # gap_k (0.7) median widths plus their widest common product (1 width); 1.5 widths is not
    # one, 2 widths and more are
    for gutter, want in ((150.0, 0), (250.0, 1)):
        res = run_audit(_two_bays(gutter), 2600, 1300)
        assert len(res.parts) == 2
        assert len(res.empty_sections) == want, gutter


def test_an_image_size_given_as_whole_floats_is_accepted() -> None:
    # analysis.py:306 2448.0 (a size read from JSON or EXIF as a float) is a whole number of pixels
    boxes = _grid_boxes(100, 100, 6, 3)
    res = run_audit(boxes, 1000.0, np.float32(800.0))
    assert (res.width, res.height) == (1000, 800) and type(res.width) is int
    with pytest.raises(InvalidInputError, match="positive integers"):
        run_audit(boxes, 1000.5, 800)


def test_the_empty_share_of_a_row_counts_its_interior_gaps_only() -> None:
    # analysis.py:772 a row's empty_share is the share of its span in interior gaps; an empty end
    # of the row is listed among its gaps but is not part of the span's emptiness
    boxes = np.array([[50 + i * 42, 300, 90 + i * 42, 380] for i in range(20) if i < 14], np.float64)
    boxes = np.r_[boxes, _grid_boxes(50, 100, 20, 1)]  # a full shelf above sets the bay's extent
    doc = audit_to_dict(run_audit(boxes, 1000, 800))
    low = [r for r in doc["rows"] if r["y_bottom"] > 350]
    assert len(low) == 1 and low[0]["gaps"] == 1
    gap = [g for g in doc["gaps"] if g["row"] == low[0]["row"]][0]
    assert gap["kind"] != "interior"
    assert low[0]["empty_share"] == 0.0 and low[0]["gap_width_px"] > 0


def test_a_region_wholly_outside_the_image_is_no_bay_of_it() -> None:
    # analysis.py:865 the summary's bay count leaves out a region with no area in the image
    regs = parse_regions({"type": "FeatureCollection", "features": [_square(0, 0, 600, "in"),
                                                                    _square(5000, 0, 100, "away")]})
    doc = audit_to_dict(run_audit(_grid_boxes(100, 100, 6, 3), 1000, 800, regions=regs))
    assert len(doc["bays"]) == 2 and doc["summary"]["bays"] == 1


def test_products_within_half_a_width_of_the_image_border_reach_the_image_edge() -> None:
    # analysis.py:366/367 a bay whose products come within half a median width of the border
    # may go on beyond the photo ("image edge"); further in, its end is its own ("end")
    for x0, want in ((15.0, "image edge"), (30.0, "end")):
        boxes = _grid_boxes(x0, 100, 8, 3)  # 40 px wide products
        bay = audit_to_dict(run_audit(boxes, int(boxes[:, 2].max() + x0), 800))["bays"]  # same margin right
        assert len(bay) == 1 and (bay[0]["left_edge"], bay[0]["right_edge"]) == (want, want), x0


def test_a_bay_two_and_a_half_times_the_median_width_is_warned_about() -> None:
    # analysis.py:536 with bay_width_m, a found bay more than twice as wide as the median found bay
    # (faced square) is named: perhaps bays the audit did not cut apart
    boxes, x = [], 20.0
    for n in (8, 8, 20):
        boxes.append(_grid_boxes(x, 100, n, 3))
        x += n * 42 + 60  # an upright's gutter between bays
    res = run_audit(np.concatenate(boxes), int(x), 500, settings=AuditSettings(bay_width_m=1.25))
    assert [len(p.index) for p in res.parts] == [24, 24, 60]
    said = [w for w in res.warnings if "times as wide as the median bay" in w]
    assert len(said) == 1 and said[0].startswith("bay 3 is 2.5 times")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_gap_cut_at_a_bay_strip_to_under_gap_k_widths_is_dropped(seed: int) -> None:
    # analysis.py:600 a flat box across the bays stretches the rows' end gaps into the next bay;
    # cut at the bay's strip, what is left under gap_k widths is no gap (no slivers reported)
    from densedet_tile.synth.audit_aisles import synthetic_bays
    a = synthetic_bays(np.random.default_rng(seed), n_bays=3, perspective_deg=0)
    rail = np.vstack([a.xyxy, [[0, a.height * 0.5, a.width, a.height * 0.5 + 37]]])
    res = run_audit(rail, a.width, a.height)
    assert len(res.parts) >= 2
    assert all(g.width_products >= AuditSettings().gap_k - 1e-9 for g in res.gaps), \
        sorted(round(g.width_products, 3) for g in res.gaps)[:3]


@pytest.mark.parametrize("bad", [0.01, 0.049, 0.0])
def test_a_bay_width_under_five_centimetres_is_refused(bad: float) -> None:
    # analysis.py:82 bay_width_m is 0.05 to 1000 metres (a width in cm or mm given as m otherwise
    # makes facings per metre 100 or 1000 times too high without a word)
    with pytest.raises(InvalidInputError, match="bay width must be 0.05 to 1000 metres"):
        AuditSettings(bay_width_m=bad)
    assert AuditSettings(bay_width_m=0.05).bay_width_m == 0.05


def test_an_empty_shelf_in_a_hole_of_a_region_is_not_the_regions() -> None:
    # analysis.py:405 a region's empty shelves keep to the region: two shelves above and two
    # below a hole in it make rows with two shelves' room between them, which lies in the hole
    # (not the region's shelf: its products were left out, not missing)
    boxes = np.array([[20 + i * 42, b - 150, 60 + i * 42, b] for b in (200, 400, 1000, 1200) for i in range(10)], float)
    ring = [[0, 0], [480, 0], [480, 1220], [0, 1220], [0, 0]]
    hole = [[5, 430], [475, 430], [475, 820], [5, 820], [5, 430]]
    whole = parse_regions({"type": "Feature", "properties": {"name": "whole"},
                           "geometry": {"type": "Polygon", "coordinates": [ring]}})
    holed = parse_regions({"type": "Feature", "properties": {"name": "holed"},
                           "geometry": {"type": "Polygon", "coordinates": [ring, hole]}})
    assert len(run_audit(boxes, 600, 1300, regions=whole).empty_shelves) == 1
    assert run_audit(boxes, 600, 1300, regions=holed).empty_shelves == ()


def test_a_gap_a_region_reports_is_not_reported_again_by_the_bay_around_it() -> None:
    # analysis.py:620 a found bay's gap mostly inside a region is dropped when a region's gap
    # covers a twentieth of it or more: here the region holds short products (100 px) on the
    # shelf of tall ones (300 px), so its gap covers a third of the bay's taller gap outline
    shelf = 500.0
    tall = [[x, shelf - 300, x + 40, shelf] for x in [*np.arange(0, 761, 42.0), *np.arange(1600, 1961, 42.0)]]
    short = [[x, shelf - 100, x + 40, shelf] for x in [*np.arange(802, 961, 42.0), *np.arange(1300, 1561, 42.0)]]
    reg = parse_regions({"type": "Feature", "properties": {"name": "promo"}, "geometry": {"type": "Polygon", "coordinates": [
        [[800, shelf - 320], [1600, shelf - 320], [1600, shelf + 10], [800, shelf + 10], [800, shelf - 320]]]}})
    res = run_audit(np.array(tall + short), 2100, 700, regions=reg)
    assert [(p.kind, len(p.gaps)) for p in res.parts] == [("region", 1), ("bay", 0)]
