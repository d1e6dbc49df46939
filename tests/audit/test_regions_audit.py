"""Regions given by the caller: their gaps, overlaps, the products left outside them, and the
outlines in the JSON (all on generated aisles with known truth)."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit import audit_to_dict, parse_regions, run_audit
from densedet_tile.synth.audit_aisles import synthetic_aisle


def _rect(x0: float, x1: float, h: float) -> list:
    return [[x0, 0], [x1, 0], [x1, h], [x0, h], [x0, 0]]


def _regions(*features) -> list:
    return parse_regions({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": geom} for name, geom in features]})


def _aisle(seed: int = 3):
    a = synthetic_aisle(np.random.default_rng(seed), width=7000, n_rows=4, gaps_per_row=0, end_gap_rows=0)
    return a


def test_a_region_of_two_pieces_reports_no_gap_between_them():
    a = _aisle()
    h = a.height
    regs = _regions(("ends", {"type": "MultiPolygon", "coordinates": [[_rect(0, 2000, h)], [_rect(5000, a.width, h)]]}),
                    ("middle", {"type": "Polygon", "coordinates": [_rect(2000, 5000, h)]}))
    doc = audit_to_dict(run_audit(a.xyxy, a.width, a.height, regions=regs))
    ends = [g for g in doc["gaps"] if g.get("region") == "ends"]
    assert not any(g["x1"] < 4900 and g["x2"] > 2100 for g in ends), ends  # full shelves, only left out
    # a hole: the products in it are another region's, not missing ones
    hole = [[3000, 1], [3000, h - 1], [4000, h - 1], [4000, 1], [3000, 1]]
    holed = _regions(("outer", {"type": "Polygon", "coordinates": [_rect(0, a.width, h), hole]}))
    doc = audit_to_dict(run_audit(a.xyxy, a.width, a.height, regions=holed))
    assert not any(g["x1"] < 3900 and g["x2"] > 3100 for g in doc["gaps"] if g.get("region") == "outer")


def test_overlapping_regions_are_warned_about():
    a = _aisle()
    regs = _regions(("left", {"type": "Polygon", "coordinates": [_rect(0, 4000, a.height)]}),
                    ("right", {"type": "Polygon", "coordinates": [_rect(3000, a.width, a.height)]}))
    res = run_audit(a.xyxy, a.width, a.height, regions=regs)
    assert any("'left' and 'right'" in w and "more than one region" in w for w in res.warnings)
    apart = _regions(("left", {"type": "Polygon", "coordinates": [_rect(0, 3500, a.height)]}),
                     ("right", {"type": "Polygon", "coordinates": [_rect(3500, a.width, a.height)]}))
    assert not any("overlap" in w for w in run_audit(a.xyxy, a.width, a.height, regions=apart).warnings)


def test_every_product_lands_in_a_part_and_found_bays_are_numbered_after_the_regions():
    a = _aisle()
    cx = (a.xyxy[:, 0] + a.xyxy[:, 2]) / 2
    # a region covering all but two products, and a region named like a found bay
    order = np.argsort(cx)
    cut = float((cx[order[-2]] + cx[order[-3]]) / 2)
    regs = _regions(("bay 2", {"type": "Polygon", "coordinates": [_rect(0, cut, a.height)]}))
    doc = audit_to_dict(run_audit(a.xyxy, a.width, a.height, regions=regs))
    assert sum(b["products"] for b in doc["bays"]) == doc["summary"]["products"] == len(a.xyxy)
    assert [b["name"] for b in doc["bays"]] == ["bay 2", "bay 2 (found)"]
    assert [b["bay"] for b in doc["bays"]] == [1, 2]


def test_outlines_are_clipped_to_the_image_and_end_gaps_stay_in_their_bay():
    for seed in range(6):
        a = synthetic_aisle(np.random.default_rng(40 + seed), width=6000, n_rows=5, tilt_deg=3.0 if seed % 2 else -3.0)
        doc = audit_to_dict(run_audit(a.xyxy, a.width, a.height))
        for kind in ("bays", "rows", "gaps"):
            for item in doc[kind]:
                pts = np.array(item["polygon"])
                assert (pts[:, 0] >= 0).all() and (pts[:, 0] <= a.width).all()
                assert (pts[:, 1] >= 0).all() and (pts[:, 1] <= a.height).all()
        bays = {b["bay"]: b for b in doc["bays"]}
        for g in doc["gaps"]:
            b = bays[g["bay"]]
            assert b["x_start"] - 0.05 <= g["x1"] and g["x2"] <= b["x_end"] + 0.05, (g, b["x_start"], b["x_end"])


def test_a_regions_density_counts_only_its_area_inside_the_image_and_bay_and_region_agree():
    a = _aisle()
    h = a.height
    whole = _regions(("all", {"type": "Polygon", "coordinates": [_rect(0, a.width, h)]}))
    bigger = _regions(("all", {"type": "Polygon", "coordinates": [_rect(-a.width, 2 * a.width, h)]}))
    two = _regions(("ends", {"type": "MultiPolygon", "coordinates": [[_rect(0, 2000, h)], [_rect(5000, a.width, h)]]}))
    d_whole, d_bigger, d_two = (audit_to_dict(run_audit(a.xyxy, a.width, a.height, regions=r)) for r in (whole, bigger, two))
    assert d_bigger["regions"][0]["density_per_mpx"] == d_whole["regions"][0]["density_per_mpx"]
    for d in (d_whole, d_bigger, d_two):
        assert d["bays"][0]["density_per_mpx"] == d["regions"][0]["density_per_mpx"]


def test_a_region_over_part_of_the_shelves_makes_no_gap_in_the_found_bay_around_it():
    # a full 14 x 5 grid; a region covers the top two shelves of the middle third
    xs, ys = np.meshgrid(np.arange(14) * 200.0 + 20, np.arange(5) * 240.0)
    boxes = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 180, ys.ravel() + 200], axis=1)
    regs = _regions(("promo", {"type": "Polygon", "coordinates": [[[1000, 0], [2000, 0], [2000, 480], [1000, 480],
                                                                    [1000, 0]]]}))
    doc = audit_to_dict(run_audit(boxes, 2900, 1200, regions=regs))
    promo = [b for b in doc["bays"] if b["name"] == "promo"][0]
    assert promo["products"] == 10
    assert doc["summary"]["gaps"] == 0, doc["gaps"]  # the products there were counted, not missing
    # a real hole in the found bay's shelves outside the region is still a gap
    hole = ~((boxes[:, 1] > 700) & (boxes[:, 0] > 400) & (boxes[:, 0] < 1100))
    doc = audit_to_dict(run_audit(boxes[hole], 2900, 1200, regions=regs))
    assert [g["region"] if "region" in g else g["bay"] for g in doc["gaps"]] == [2, 2], doc["gaps"]
    # ... and so is one right beside the region, on a shelf the region covers: it ends where the
    # region's products begin (before, it joined the covered stretch and was dropped with it)
    beside = ~((boxes[:, 1] == 0) & (boxes[:, 0] > 600) & (boxes[:, 0] < 1000))  # the 2 products left of it
    doc = audit_to_dict(run_audit(boxes[beside], 2900, 1200, regions=regs))
    (gap,) = doc["gaps"]
    assert gap["bay"] == 2 and gap["row"] == 1 and "region" not in gap
    assert gap["x1"] == pytest.approx(600, abs=1) and gap["x2"] == pytest.approx(1020, abs=1)


def test_region_outlines_are_cut_to_the_image_and_every_piece_is_kept():
    a = _aisle()
    w, h = a.width, a.height
    diamond = [[w / 2, -h / 2], [w / 2 + h, h / 2], [w / 2, 1.5 * h], [w / 2 - h, h / 2], [w / 2, -h / 2]]
    regs = _regions(("diamond", {"type": "Polygon", "coordinates": [diamond]}),
                    ("two", {"type": "MultiPolygon", "coordinates": [[_rect(0, 700, h)], [_rect(w - 1000, w, h)]]}),
                    ("away", {"type": "Polygon", "coordinates": [_rect(w + 1000, w + 2000, h)]}))
    doc = audit_to_dict(run_audit(a.xyxy, w, h, regions=regs))
    bays = {b["name"]: b for b in doc["bays"]}
    import shapely

    cut = shapely.Polygon(diamond).intersection(shapely.box(0, 0, w, h))
    got = shapely.Polygon(bays["diamond"]["polygon"])
    assert len(bays["diamond"]["polygon"]) == 6  # the cut diamond is a hexagon, not a smaller diamond
    assert got.symmetric_difference(cut).area < 1e-3 * cut.area
    two = bays["two"]
    assert len(two["pieces"]) == 2 and two["polygon"] == two["pieces"][0]
    assert two["x_start"] == 0 and two["x_end"] == w  # both pieces
    assert shapely.Polygon(two["pieces"][0]).area > shapely.Polygon(two["pieces"][1]).area
    away = bays["away"]
    assert min(x for x, _ in away["polygon"]) == w + 1000  # its own outline (warned about), not a squashed one
    assert "pieces" not in bays["diamond"] and any("'away' lies outside" in m for m in doc["warnings"])
