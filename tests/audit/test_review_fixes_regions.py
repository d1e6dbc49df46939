"""Regions next to found bays, empty bays, shared edges, odd coordinates and the heatmap's
bounds: the fixes of an outside review, each on inputs with a known answer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.audit import audit_to_dict, find_bays, find_gaps, find_rows, parse_regions, run_audit
from densedet_tile.audit.heatmap import MAX_CELLS, auto_cell, density_grid, smallest_cell
from densedet_tile.audit.regions import count_in_regions, overlapping_regions, region_members
from densedet_tile.cli.audit import audit_main
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.audit_aisles import synthetic_bays


def _fc(*features: tuple[str, list]) -> dict:
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": name}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
        for name, ring in features]}


def _box_ring(x0: float, y0: float, x1: float, y1: float) -> list:
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _bays(seed: int = 0, n: int = 12):
    return synthetic_bays(np.random.default_rng(seed), n_bays=n, roll_deg=0, perspective_deg=0, base_width=20)


def _bay_ring(s, b: int) -> list:
    o = s.bay_outlines[b]
    return _box_ring(o[:, 0].min() - 2, o[:, 1].min() - 2, o[:, 0].max() + 2, o[:, 1].max() + 2)


def _write_detections(path: Path, boxes: np.ndarray, width: int, height: int) -> Path:
    path.write_text(json.dumps({
        "schema": "densedet-tile/detections@1",
        "image": {"name": path.name.split(".")[0] + ".jpg", "width": width, "height": height},
        "boxes": np.round(boxes, 2).tolist(), "scores": [0.9] * len(boxes), "labels": [0] * len(boxes),
    }))
    return path


def _gaps_outside_their_bay(doc: dict) -> list:
    bays = {b["bay"]: b for b in doc["bays"]}
    return [g for g in doc["gaps"] if g["x1"] < bays[g["bay"]]["x_start"] - 1 or g["x2"] > bays[g["bay"]]["x_end"] + 1]


# ------------------------------------------------------------ 1. a region's products in found bays
def test_a_region_over_one_bay_leaves_the_other_bays_gaps_as_without_it():
    s = _bays()
    plain = audit_to_dict(run_audit(s.xyxy, s.width, s.height))
    regs = parse_regions(_fc(("promo", _bay_ring(s, 5))))
    doc = audit_to_dict(run_audit(s.xyxy, s.width, s.height, regions=regs))
    assert _gaps_outside_their_bay(doc) == []  # none runs from a bay across the uprights to the region
    found = [b for b in doc["bays"] if b["kind"] == "bay"]
    o = s.bay_outlines[5]
    away = [b for b in plain["bays"] if b["x_end"] < o[:, 0].min() or b["x_start"] > o[:, 0].max()]
    # the bays away from the region: the same columns, and the same gaps, as without it
    assert [(b["x_start"], b["x_end"], b["gaps"]) for b in found] == [(b["x_start"], b["x_end"], b["gaps"]) for b in away]
    region_gaps = sum(b["gaps"] for b in plain["bays"]) - sum(b["gaps"] for b in away)
    assert doc["summary"]["gaps"] == sum(b["gaps"] for b in away) + doc["bays"][0]["gaps"]
    assert abs(doc["bays"][0]["gaps"] - region_gaps) <= 1


def test_find_gaps_ignores_occupied_boxes_beyond_the_fixture():
    # one shelf of 10 products, 100 px apart; another fixture's product far to the right on the same shelf
    boxes = np.array([[i * 100.0, 0, i * 100.0 + 90, 100] for i in range(10)])
    lay = find_rows(boxes)
    far = np.array([[5000.0, 0, 5090, 100]])
    assert find_gaps(boxes, lay, end_gaps=False) == []
    assert find_gaps(boxes, lay, end_gaps=False, occupied=far) == []
    # ... while one within its columns still fills a hole
    holed = np.delete(boxes, [4, 5], axis=0)
    lay = find_rows(holed)
    assert len(find_gaps(holed, lay, end_gaps=False)) == 1
    assert find_gaps(holed, lay, end_gaps=False, occupied=boxes[[4, 5]]) == []


def test_a_region_at_the_end_of_a_tilted_bay_opens_no_end_gap():
    # three shelves of 20 products turned by 3 degrees; a region holds the top shelf's first 6:
    # they stand in the found bay's columns, so its shelf has no empty stretch where they are
    t = np.radians(3.0)
    boxes = []
    for y in (2000, 2200, 2400):
        for i in range(20):
            x0, y0 = 400 + i * 62 + 30, y + 80
            cx, cy = x0 * np.cos(t) - y0 * np.sin(t), x0 * np.sin(t) + y0 * np.cos(t)
            boxes.append([cx - 30, cy - 80, cx + 30, cy + 80])
    boxes = np.array(boxes)
    c = (boxes[:6, :2] + boxes[:6, 2:]) / 2
    x0, y0, x1, y1 = c[:, 0].min() - 20, c[:, 1].min() - 20, c[:, 0].max() + 20, c[:, 1].max() + 20
    regs = parse_regions({"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]})
    res = run_audit(boxes, 1800, 2800, regions=regs)
    assert [len(p.index) for p in res.parts] == [6, 54]
    assert res.gaps == ()


# ------------------------------------------------------------ 2. a wide empty stretch is a cut
@pytest.mark.parametrize("seed", [0, 3, 7])
def test_an_emptied_bay_keeps_its_neighbours_apart(seed: int):
    s = _bays(seed, 7)
    for hole in (2, 3, 4):
        keep = s.bay_of != hole
        cut = find_bays(s.xyxy[keep])
        truth = s.bay_of[keep]
        left, right = set(cut.bay_of[truth == hole - 1].tolist()), set(cut.bay_of[truth == hole + 1].tolist())
        assert not left & right, (seed, hole)


def test_regions_over_every_other_bay_leave_one_found_bay_per_remaining_bay():
    s = _bays(1)
    regs = parse_regions(_fc(*[(f"b{b}", _bay_ring(s, b)) for b in range(0, s.n_bays, 2)]))
    res = run_audit(s.xyxy, s.width, s.height, regions=regs)
    found = [p for p in res.parts if p.kind == "bay"]
    for p in found:  # no found bay holds products of two true bays
        assert len(set(s.bay_of[p.index].tolist())) == 1, sorted(set(s.bay_of[p.index].tolist()))
    assert {int(s.bay_of[p.index[0]]) for p in found} == set(range(1, s.n_bays, 2))
    assert _gaps_outside_their_bay(audit_to_dict(res)) == []


# ------------------------------------------------------------ 3. a centre on a shared edge
def test_a_centre_on_the_edge_two_regions_share_is_counted_once_in_the_first():
    regs = parse_regions(_fc(("left", _box_ring(0, 0, 1000, 500)), ("right", _box_ring(1000, 0, 2000, 500))))
    # centres at x = 1000 (the shared edge), at the shared corner-free edge y = 0, inside each, and outside
    boxes = np.array([[990, 200, 1010, 260], [400, 200, 440, 260], [1500, 200, 1540, 260],
                      [1480, -20, 1520, 20], [2100, 200, 2140, 260]], float)
    inside = count_in_regions(boxes, regs)
    assert inside.astype(int).tolist() == [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0]]
    # the same through the audit: every product in exactly one region, none left for a found bay
    xs = np.arange(0, 2000, 100.0)
    grid = np.array([[x, y, x + 100, y + 100] for y in (0, 150, 300) for x in xs]) - [50, 0, 50, 0]
    grid = grid[(grid[:, 0] >= 0)]
    res = run_audit(grid, 2000, 500, regions=regs)
    assert [p.kind for p in res.parts] == ["region", "region"]
    assert sum(len(p.index) for p in res.parts) == len(grid)
    assert not any("overlap" in w for w in res.warnings)


def test_sparse_members_match_a_point_by_point_reference():
    from shapely.geometry import Point

    rng = np.random.default_rng(5)
    xy = np.round(rng.uniform(0, 1000, (2000, 2)) / 50) * 50  # many centres on the tiles' edges
    boxes = np.column_stack([xy - 5, xy + 5])
    tiles = [(f"t{i}{j}", _box_ring(i * 250, j * 250, i * 250 + 250, j * 250 + 250)) for i in range(4) for j in range(4)]
    regs = parse_regions(_fc(*tiles, ("big", _box_ring(100, 100, 600, 600))))
    m = region_members(boxes, regs)
    assert m.counts().sum() == len(m.box) and np.array_equal(m.dense(), count_in_regions(boxes, regs))
    ref = np.array([[r.geometry.intersects(Point(x, y)) for x, y in xy] for r in regs])
    strict = np.array([[r.geometry.contains(Point(x, y)) for x, y in xy] for r in regs])
    dense = m.dense()
    on_edge_only = ref.any(0) & ~strict.any(0)
    assert np.array_equal(dense[:, ~on_edge_only], ref[:, ~on_edge_only])
    first = ref[:, on_edge_only].argmax(0)
    assert np.array_equal(dense[:, on_edge_only], np.eye(len(regs), dtype=bool)[first].T)
    for i in range(len(regs)):
        assert np.array_equal(m.of(i), np.flatnonzero(dense[i]))


# ------------------------------------------------------------ 4. a height per point
def test_three_numbers_per_point_are_read_as_x_and_y():
    ring = [[0, 0, 5], [200, 0, 5], [200, 100, 5], [0, 100, 5], [0, 0, 5]]
    (r,) = parse_regions({"type": "Polygon", "coordinates": [ring]})
    assert not r.geometry.has_z and r.bounds == (0.0, 0.0, 200.0, 100.0)
    boxes = np.array([[10.0 + 30 * i, 10, 35 + 30 * i, 60] for i in range(6)])
    doc = audit_to_dict(run_audit(boxes, 300, 200, regions=[r]))
    assert doc["regions"][0]["products"] == 6
    assert all(len(p) == 2 for p in doc["bays"][0]["polygon"])


@pytest.mark.parametrize("bad", ["12", True, None, [1, 2]])
def test_a_coordinate_that_is_not_a_number_is_refused(bad: object):
    ring = [[0, 0], [bad, 0], [10, 10], [0, 10], [0, 0]]
    doc = _fc(("ok", _box_ring(0, 0, 5, 5)), ("odd", ring))
    with pytest.raises(InvalidInputError, match=r"^r\.geojson: feature 2 has .*coordinate"):
        parse_regions(doc, source="r.geojson")


# ------------------------------------------------------------ 5. the heatmap's bounds
def test_the_automatic_cell_makes_at_most_40000_cells_and_keeps_a_strips_height():
    # at most 200 x 200 cells in all (not 200 along the longer side, which made a 307538 x 1632
    # panorama 200 x 2 cells of 38 products each: no picture of its shelves)
    boxes = np.array([[0.0, 0, 40, 100]] * 4)
    for w, h in ((110825, 659), (7001, 8000), (40000, 40), (307538, 1632), (10**6, 10**6)):
        cell = auto_cell(boxes, w, h)
        assert -(-w // cell) * -(-h // cell) <= 40_000, (w, h, cell)
    assert auto_cell(boxes, 110825, 659) == 165  # a quarter of the strip's height: 4 cells tall
    assert auto_cell(boxes, 307538, 1632) == 200  # two products: 1538 x 9 cells
    assert auto_cell(boxes, 10**6, 10**6) == 5000  # the bound wins


def test_a_cell_making_too_many_cells_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    w, h = 39536, 3511
    with pytest.raises(InvalidInputError, match="more than the 250,000"):
        density_grid(np.zeros((0, 4)), w, h, cell=4)
    c = smallest_cell(w, h)
    assert density_grid(np.zeros((0, 4)), w, h, cell=c).counts.size <= MAX_CELLS
    assert -(-w // (c - 1)) * -(-h // (c - 1)) > MAX_CELLS
    boxes = np.array([[x, 100.0, x + 80, 300] for x in range(0, 4000, 100)])
    det = _write_detections(tmp_path / "big.detections.json", boxes, w, h)
    out = tmp_path / "out"
    for cell in ("4", "1"):
        assert audit_main([str(det), "--cell", cell, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "big.detections.json" in err and f"give {c} px" in err
        assert not out.exists()
    assert audit_main([str(det), "--cell", str(c), "--out", str(out)]) == 0


# ------------------------------------------------------------ 7. overlapping outlines
def test_regions_overlapping_without_shared_products_are_warned_about():
    regs = parse_regions(_fc(("a", _box_ring(0, 0, 600, 400)), ("b", _box_ring(500, 0, 1000, 400)),
                             ("c", _box_ring(1000, 0, 1400, 400)), ("d", _box_ring(100, 100, 200, 200))))
    assert overlapping_regions(regs).tolist() == [[0, 1], [0, 3]]  # c only touches b
    boxes = np.array([[20.0 + 60 * i, 250, 70 + 60 * i, 350] for i in range(6)])  # all in a only
    res = run_audit(boxes, 1400, 400, regions=regs)
    (w,) = [w for w in res.warnings if "overlap" in w]
    assert "'a' and 'b'" in w and "'a' and 'd'" in w and "'c'" not in w and "no product" in w
    shared = run_audit(np.r_[boxes, [[520.0, 250, 580, 350]]], 1400, 400, regions=regs)
    (w,) = [w for w in shared.warnings if "overlap" in w]
    assert "1 product lies in more than one region and is counted in each" in w


# ------------------------------------------------------------ minor
def test_a_region_wholly_outside_has_no_density_in_bays_nor_regions():
    regs = parse_regions(_fc(("in", _box_ring(0, 0, 500, 300)), ("away", _box_ring(5000, 0, 5500, 300))))
    boxes = np.array([[20.0 + 60 * i, 100, 70 + 60 * i, 200] for i in range(6)])
    doc = audit_to_dict(run_audit(boxes, 600, 300, regions=regs))
    away_bay = [b for b in doc["bays"] if b["name"] == "away"][0]
    away_reg = [r for r in doc["regions"] if r["name"] == "away"][0]
    assert away_bay["density_per_mpx"] is None and away_reg["density_per_mpx"] is None
    assert doc["bays"][0]["density_per_mpx"] == doc["regions"][0]["density_per_mpx"] > 0
    # listed with its warning, but the image has one bay, not two
    assert len(doc["bays"]) == 2 and doc["summary"]["bays"] == 1
    json.dumps(doc, allow_nan=False)


def test_a_region_name_with_a_newline_stays_on_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    boxes = np.array([[20.0 + 60 * i, 100, 70 + 60 * i, 200] for i in range(6)])
    det = _write_detections(tmp_path / "n.detections.json", boxes, 600, 300)
    reg = tmp_path / "r.geojson"
    reg.write_text(json.dumps(_fc(("top\nshelf", _box_ring(0, 0, 600, 300)))))
    assert audit_main([str(det), "--regions", str(reg), "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("  region top\\nshelf: 6 products") for line in lines), lines
    assert json.loads((tmp_path / "o" / "n.audit.json").read_text())["bays"][0]["name"] == "top\nshelf"


def test_an_out_that_is_a_file_is_refused_before_the_audit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch):
    import densedet_tile.cli.audit as cli

    boxes = np.array([[20.0 + 60 * i, 100, 70 + 60 * i, 200] for i in range(6)])
    det = _write_detections(tmp_path / "n.detections.json", boxes, 600, 300)
    (tmp_path / "taken").write_text("a user's file")
    calls = []
    monkeypatch.setattr(cli, "run_audit", lambda *a, **k: calls.append(1))
    assert audit_main([str(det), "--out", str(tmp_path / "taken")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "taken" in err and "not a folder" in err
    assert calls == [] and (tmp_path / "taken").read_text() == "a user's file"


def test_a_too_fine_cell_is_refused_before_the_detector_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            monkeypatch: pytest.MonkeyPatch):
    from PIL import Image

    import densedet_tile.cli.audit as cli

    img = tmp_path / "wide.png"
    Image.new("RGB", (2000, 1500)).save(img)
    calls = []
    monkeypatch.setattr(cli, "_detect", lambda *a, **k: calls.append(1))
    assert audit_main([str(img), "--cell", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "wide.png" in err and "750,000 cells" in err
    assert calls == [] and not (tmp_path / "o").exists()


def _four_shelves(skip: dict[int, set[int]], n: int = 38) -> np.ndarray:
    """4 shelves of 48 x 100 products on a 52 px step from x=1; ``skip`` {shelf: product numbers}."""
    return np.array([[1 + 52 * k, 10 + r * 125, 49 + 52 * k, 110 + r * 125]
                     for r in range(4) for k in range(n) if k not in skip.get(r, set())], float)


def test_an_empty_stretch_across_a_regions_edge_is_a_gap_once():
    # two products missing either side of the region's edge at x=1000: an end of the region's row
    # (67 px) and an end of the bay's beside it (52 px), each too short for an end gap, so nobody
    # reported the 108 px hole (an outside review); the bay reports it, the region does not, from
    # the bay's first column (x 989, its products' left end on the other shelves) on: a gap never
    # runs past its bay's end (a later outside review)
    boxes = _four_shelves({1: {18, 19}})
    whole = run_audit(boxes, 2000, 520)
    assert [(g.kind, g.x1, g.x2) for p in whole.parts for g in p.gaps] == [("interior", 933.0, 1041.0)]
    res = run_audit(boxes, 2000, 520, regions=parse_regions(_fc(("left", _box_ring(0, 0, 1000, 520)))))
    found = [(p.name, g.kind, g.x1, g.x2) for p in res.parts for g in p.gaps]
    assert found == [("bay 2", "interior", 989.0, 1041.0)]
    # products up to the edge on both sides: nothing to report, on either side
    res = run_audit(_four_shelves({}), 2000, 520, regions=parse_regions(_fc(("left", _box_ring(0, 0, 1000, 520)))))
    assert [g for p in res.parts for g in p.gaps] == []


def test_a_regions_end_gap_stops_at_its_outline():
    # an L-shaped region: shelves 1-2 to x=1000, shelves 3-4 to x=800; shelf 4 empty from x=517.
    # Its end gap ran to the widest row's end (to 999) while its polygon was cut at 800 (an
    # outside review): now 517..800, about 6 products, and the region's summed gap width says
    # the same
    boxes = _four_shelves({3: set(range(10, 38)), 2: set(range(15, 38))}, n=20)
    boxes = boxes[boxes[:, 2] <= 1000]
    ring = [[0, 0], [1000, 0], [1000, 260], [800, 260], [800, 520], [0, 520], [0, 0]]
    res = run_audit(boxes, 2000, 520, regions=parse_regions(_fc(("L", ring))))
    (region,) = [p for p in res.parts if p.name == "L"]
    ends = [g for g in region.gaps if g.row == 3]
    assert len(ends) == 1
    g = ends[0]
    assert g.kind == "right_end" and g.x1 == pytest.approx(517, abs=1) and g.x2 == pytest.approx(800, abs=1)
    assert max(x for x, _ in g.polygon) <= 800 + 1e-6 and g.xyxy[2] <= 800 + 1e-6
    assert g.width_px == pytest.approx(g.x2 - g.x1) and g.width_products == pytest.approx(g.width_px / 48, rel=0.05)
    (stats,) = res.regions
    assert stats.gap_width_products == pytest.approx(sum(q.width_products for q in region.gaps))


@pytest.mark.parametrize("edge", [
    [[1000, 300], [930, 300], [930, 390], [900, 400], [900, 500]],  # a notch inside the empty row end
    [[1000, 300], [960, 300], [930, 400], [900, 500]],  # a slanted edge across it
])
def test_a_region_edge_cutting_an_end_gap_into_another_shape_is_audited(edge: list) -> None:
    # three shelves of touching products; the top one has an interior gap (4 corners) and the
    # bottom one is empty from x 600 to the region's right edge, which cuts that end gap into
    # 5 or 6 corners: gaps of different corner counts made run_audit fail with a numpy shape error
    boxes = [[k * 50.0, b - 100, k * 50 + 48, b] for r, b in enumerate((200.0, 320.0, 440.0)) for k in range(20)
             if not (r == 0 and k in (4, 5, 6)) and not (r == 2 and k >= 12)]
    ring = [[0, 0], [1000, 0], *edge, [0, 500], [0, 0]]
    res = run_audit(np.array(boxes), 1000, 500, regions=parse_regions(_fc(("R", ring))))
    (part,) = [p for p in res.parts if p.kind == "region"]
    corners = sorted(len(g.polygon) for g in part.gaps)
    assert corners[0] == 4 and corners[-1] > 4
    end = max(part.gaps, key=lambda g: g.x2)
    assert end.x1 == pytest.approx(598, abs=3) and 925 <= end.x2 <= 950
    assert json.loads(json.dumps(audit_to_dict(res)))["regions"][0]["name"] == "R"


@pytest.mark.parametrize("value, said", [(float("nan"), "is empty or has non-finite coordinates"),
                                         (float("inf"), "is empty or has non-finite coordinates"),
                                         (1e30, "has a coordinate beyond"), (10 ** 400, "has a coordinate beyond")])
def test_odd_coordinates_are_refused_without_touching_the_warning_filters(value, said, monkeypatch):
    # a filter set around shapely's call (to keep its RuntimeWarning about NaN quiet) was not safe
    # in threads: four threads parsing regions at once left RuntimeWarning ignored for the whole
    # process (an outside review). The numbers are now refused before shapely sees them.
    import warnings

    from densedet_tile.audit.regions import parse_regions

    ring = [[0, 0], [100, 0], [100, value], [0, 100], [0, 0]]
    fc = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "b"}, "geometry": {"type": "Polygon", "coordinates": [ring]}}]}
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")

        def shared_state(*a, **k):  # (catch_warnings swaps the process's filters: not in threads)
            raise AssertionError("parse_regions set a warnings filter")

        with monkeypatch.context() as m:
            m.setattr(warnings, "catch_warnings", shared_state)
            with pytest.raises(InvalidInputError, match=said):
                parse_regions(fc)
            parse_regions({**fc, "features": [{**fc["features"][0], "geometry": {
                "type": "Polygon", "coordinates": [[[0, 0], [100, 0], [100, 100], [0, 100], [0, 0]]]}}]})
    assert not [w for w in seen if issubclass(w.category, RuntimeWarning)]
    assert warnings.filters == before
