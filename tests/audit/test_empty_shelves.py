"""Empty shelves: a shelf emptied from end to end inside a bay leaves no row to hold a gap; it is
found from the spacing of the rows that remain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Polygon, box

from densedet_tile.audit import audit_to_dict, find_empty_shelves, find_rows, parse_regions, run_audit
from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.audit_aisles import synthetic_bays
from fakes import write_aisle_detections


def _aisle(seed: int, min_rows: int):
    """A generated aisle in perspective and one of its bays with at least ``min_rows`` shelves
    (None when it has none)."""
    rng = np.random.default_rng([seed, 61])
    aisle = synthetic_bays(rng, n_bays=int(rng.integers(1, 5)), perspective_deg=float(rng.uniform(-25, 25)))
    tall = [b for b in range(int(aisle.bay_of.max()) + 1) if aisle.row_of[aisle.bay_of == b].max() + 1 >= min_rows]
    return aisle, (tall[seed % len(tall)] if tall else None)


def _tall_bays(min_rows: int, seeds: int = 40):
    """``(seed, aisle, bay)`` of the first ``seeds`` generated aisles that have a bay of at least
    ``min_rows`` shelves."""
    for seed in range(seeds):
        aisle, bay = _aisle(seed, min_rows)
        if bay is not None:
            yield seed, aisle, bay


def _emptied(aisle, bay: int, rows: list[int]) -> np.ndarray:
    return ~((aisle.bay_of == bay) & np.isin(aisle.row_of, rows))


def _centre_of(aisle, bay: int, row: int) -> tuple[float, float]:
    b = aisle.xyxy[(aisle.bay_of == bay) & (aisle.row_of == row)]
    return float(np.median((b[:, 0] + b[:, 2]) / 2)), float(np.median((b[:, 1] + b[:, 3]) / 2))


def test_a_shelf_emptied_inside_a_bay_is_found_where_it_stood() -> None:
    tried = 0
    for seed, aisle, bay in _tall_bays(4):
        n_rows = int(aisle.row_of[aisle.bay_of == bay].max()) + 1
        row = 1 + seed % (n_rows - 2)  # never the top or bottom shelf: nothing beyond it to compare
        res = run_audit(aisle.xyxy[_emptied(aisle, bay, [row])], aisle.width, aisle.height)
        x, y = _centre_of(aisle, bay, row)
        # a bay the audit cut in two reports its shelf in both halves
        assert 1 <= len(res.empty_shelves) <= 2, seed
        for e in res.empty_shelves:
            assert e.shelves == 1 and e.below == e.above + 1 and e.pitch_ratio > 1.7, (seed, e)
        assert any(e.xyxy[1] <= y <= e.xyxy[3] and e.x1 <= x <= e.x2 for e in res.empty_shelves), seed
        tried += 1
    assert tried >= 25


def test_two_shelves_emptied_together_are_counted_as_two() -> None:
    tried = 0
    for seed, aisle, bay in _tall_bays(6):
        res = run_audit(aisle.xyxy[_emptied(aisle, bay, [2, 3])], aisle.width, aisle.height)
        assert res.empty_shelves and all(e.shelves == 2 for e in res.empty_shelves), seed
        tried += 1
    assert tried >= 8


def test_intact_aisles_have_no_empty_shelf() -> None:
    for seed in range(60):
        aisle, _ = _aisle(seed, 0)
        assert run_audit(aisle.xyxy, aisle.width, aisle.height).empty_shelves == (), seed


def test_a_few_stray_boxes_beyond_the_shelving_make_no_empty_shelf() -> None:
    # 3 to 5 boxes on the floor or the ceiling, spread over a bay's width, made a "row" whose
    # distance to the shelving read as an empty shelf of up to 7 shelves (an outside review's
    # 40-bay panorama: 9 false ones); a real emptied shelf is still found
    tried = 0
    for seed, aisle, bay in _tall_bays(4, seeds=80):
        rng = np.random.default_rng([seed, 7])
        b = aisle.xyxy[aisle.bay_of == bay]
        x0, x1, top, bottom = b[:, 0].min(), b[:, 2].max(), b[:, 1].min(), b[:, 3].max()
        w, h = float(np.median(b[:, 2] - b[:, 0])), float(np.median(b[:, 3] - b[:, 1]))
        where = bottom + 3 * h if seed % 2 else top - 3 * h  # the floor or the ceiling
        if not (h < where < aisle.height - h):
            continue
        xs = rng.uniform(x0, x1 - w, int(rng.integers(3, 6)))
        strays = np.array([[x, where - h, x + w, where] for x in xs])
        res = run_audit(np.vstack([aisle.xyxy, strays]), aisle.width, aisle.height)
        assert res.empty_shelves == (), (seed, [(e.shelves, e.xyxy) for e in res.empty_shelves])
        n_rows = int(aisle.row_of[aisle.bay_of == bay].max()) + 1
        row = 1 + seed % (n_rows - 2)
        res = run_audit(np.vstack([aisle.xyxy[_emptied(aisle, bay, [row])], strays]), aisle.width, aisle.height)
        assert any(e.shelves == 1 for e in res.empty_shelves), seed
        tried += 1
    assert tried >= 8  # (most generated aisles fill the photo: no room beyond their shelving)


def _fixture(bottoms: list[float], heights: list[float], width: float = 1000.0, product: float = 50.0) -> np.ndarray:
    """Flat rows of touching products standing on ``bottoms``, ``heights`` tall."""
    xs = np.arange(0.0, width - product + 1, product)
    return np.array([[x, b - h, x + product - 2, b] for b, h in zip(bottoms, heights) for x in xs])


def test_a_tall_shelf_is_empty_only_when_its_products_leave_room_for_another() -> None:
    bottoms = [100.0, 200.0, 300.0, 500.0, 600.0]  # the 4th shelf stands two pitches below the 3rd
    tall = _fixture(bottoms, [80, 80, 80, 180, 80])  # tall products fill it
    assert find_empty_shelves(find_rows(tall)) == []
    short = _fixture(bottoms, [80, 80, 80, 80, 80])  # a shelf's worth of room above them
    (e,) = find_empty_shelves(find_rows(short))
    assert (e.above, e.below, e.shelves) == (2, 3, 1) and e.pitch_ratio == pytest.approx(2.0, abs=0.1)
    assert e.polygon[0][1] == pytest.approx(300, abs=5) and e.polygon[3][1] == pytest.approx(420, abs=5)
    # two rows have no usual pitch to compare with
    assert find_empty_shelves(find_rows(_fixture([100.0, 400.0], [80, 80]))) == []


def test_rows_that_barely_share_columns_are_no_empty_shelf() -> None:
    # the lower rows stand beside the upper ones (a fixture of another height), not below them
    upper = _fixture([100.0, 200.0, 300.0], [80, 80, 80], width=600)
    lower = _fixture([500.0, 600.0], [80, 80], width=600) + [560, 0, 560, 0]
    assert find_empty_shelves(find_rows(np.r_[upper, lower])) == []


def test_bad_settings_are_refused() -> None:
    lay = find_rows(_fixture([100.0, 200.0, 300.0], [80, 80, 80]))
    for kw in ({"pitch": 1.0}, {"pitch": float("nan")}, {"room": 0}):
        with pytest.raises(InvalidInputError):
            find_empty_shelves(lay, **kw)


def _emptied_doc_aisle():
    for _, aisle, bay in _tall_bays(4):
        keep = _emptied(aisle, bay, [1])
        if len(run_audit(aisle.xyxy[keep], aisle.width, aisle.height).empty_shelves) == 1:
            return aisle, bay, keep
    raise AssertionError("no generated aisle with one empty shelf")


def test_empty_shelves_in_the_json_the_report_and_the_command(tmp_path: Path, capsys) -> None:
    from densedet_tile.cli.audit import audit_main

    aisle, bay, keep = _emptied_doc_aisle()
    a = aisle.xyxy[keep]
    res = run_audit(a, aisle.width, aisle.height)
    doc = audit_to_dict(res)
    assert doc["summary"]["empty_shelves"] == 1
    (e,) = doc["empty_shelves"]
    assert e["between_rows"] == [res.empty_shelves[0].above + 1, res.empty_shelves[0].below + 1]
    assert e["shelves"] == 1 and e["x1"] < e["x2"] and e["height_px"] > 0
    assert box(0, 0, aisle.width, aisle.height).buffer(0.1).covers(Polygon(e["polygon"]))
    assert sum(b["empty_shelves"] for b in doc["bays"]) == 1
    assert doc["bays"][e["bay"] - 1]["empty_shelves"] == 1
    dets = tmp_path / "aisle.detections.json"
    write_aisle_detections(dets, a, aisle.width, aisle.height)
    capsys.readouterr()
    assert audit_main(["--detections", str(dets), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"empty shelf in bay {e['bay']} between rows {e['between_rows'][0]} and {e['between_rows'][1]}" in out
    page = (tmp_path / "out" / "aisle.audit.html").read_text()
    assert "<h2>Empty shelves</h2>" in page and "empty shelves <b>1</b>" in page
    saved = json.loads((tmp_path / "out" / "aisle.audit.json").read_text())
    assert saved["empty_shelves"] == doc["empty_shelves"]


def test_a_region_reports_its_own_empty_shelf_and_a_found_bay_leaves_it_to_the_region() -> None:
    aisle, bay, keep = _emptied_doc_aisle()
    a = aisle.xyxy[keep]
    (found,) = run_audit(a, aisle.width, aisle.height).empty_shelves
    mine = aisle.xyxy[aisle.bay_of == bay]
    x0, y0, x1, y1 = float(mine[:, 0].min()), 0.0, float(mine[:, 2].max()), float(aisle.height)
    feats = [{"type": "Feature", "properties": {"name": "the bay"},
              "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}]
    res = run_audit(a, aisle.width, aisle.height, regions=parse_regions({"type": "FeatureCollection", "features": feats}))
    region = res.parts[0]
    assert region.kind == "region" and len(region.empty_shelves) == 1
    assert region.empty_shelves[0].xyxy[1] == pytest.approx(found.xyxy[1], abs=0.25 * found.height_px)
    assert all(not p.empty_shelves for p in res.parts[1:])  # the bays found around it report none
    (e,) = audit_to_dict(res)["empty_shelves"]
    assert e["region"] == "the bay" and e["bay"] == 1
