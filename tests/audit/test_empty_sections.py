"""Empty sections: every shelf empty across a stretch between two bays (a bay emptied, or the
end of one), reported on its own instead of silently cut as an upright."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from shapely.geometry import Polygon, box

from densedet_tile.audit.analysis import audit_to_dict, run_audit
from densedet_tile.synth.audit_aisles import synthetic_bays
from fakes import write_aisle_detections


def _emptied(seed: int, bay: int = 1, n_bays: int = 3):
    rng = np.random.default_rng([seed, 97])
    aisle = synthetic_bays(rng, n_bays=n_bays, perspective_deg=float(rng.uniform(-25, 25)))
    keep = aisle.bay_of != bay
    return aisle, keep


def test_an_emptied_bay_is_one_empty_section_where_it_stood() -> None:
    for seed in range(30):
        aisle, keep = _emptied(seed)
        a = aisle.xyxy[keep]
        res = run_audit(a, aisle.width, aisle.height)
        assert len(res.empty_sections) == 1, seed
        e = res.empty_sections[0]
        w = float(np.median(a[:, 2] - a[:, 0]))
        # from the last products of the bay on its left to the first of the bay on its right
        lo, hi = aisle.xyxy[aisle.bay_of == 0, 2].max(), aisle.xyxy[aisle.bay_of == 2, 0].min()
        assert abs(e.x1 - lo) <= w and abs(e.x2 - hi) <= w, (seed, e.x1, lo, e.x2, hi)
        assert e.width_products > 10 and e.between == (res.parts[0].name, res.parts[1].name)


def test_intact_aisles_have_no_empty_section() -> None:
    for seed in range(60):
        rng = np.random.default_rng([seed, 101])
        aisle = synthetic_bays(rng, n_bays=int(rng.integers(1, 5)), perspective_deg=float(rng.uniform(-25, 25)))
        assert run_audit(aisle.xyxy, aisle.width, aisle.height).empty_sections == (), seed


def test_the_end_of_a_bay_emptied_on_every_shelf_is_an_empty_section() -> None:
    rng = np.random.default_rng([4, 97])
    aisle = synthetic_bays(rng, n_bays=3, perspective_deg=0.0, roll_deg=0.0)
    a = aisle.xyxy
    bay1 = aisle.bay_of == 1
    x0, x1 = a[bay1, 0].min(), a[bay1, 2].max()
    cut = x0 + 0.6 * (x1 - x0)
    keep = ~(bay1 & ((a[:, 0] + a[:, 2]) / 2 > cut))  # the right 40 % of bay 2, every shelf
    res = run_audit(a[keep], aisle.width, aisle.height)
    (e,) = res.empty_sections
    w = float(np.median(a[:, 2] - a[:, 0]))
    assert e.x1 >= cut - w and e.x2 >= x1 - w


def test_empty_sections_in_the_json_and_the_report(tmp_path: Path) -> None:
    from densedet_tile.cli.audit import audit_main

    aisle, keep = _emptied(3)
    a = aisle.xyxy[keep]
    doc = audit_to_dict(run_audit(a, aisle.width, aisle.height))
    assert doc["summary"]["empty_sections"] == 1
    (e,) = doc["empty_sections"]
    assert e["between_bays"] == [1, 2] and e["x1"] < e["x2"]
    assert box(0, 0, aisle.width, aisle.height).buffer(0.1).covers(Polygon(e["polygon"]))
    dets = tmp_path / "aisle.detections.json"
    write_aisle_detections(dets, a, aisle.width, aisle.height)
    assert audit_main(["--detections", str(dets), "--out", str(tmp_path / "out")]) == 0
    page = (tmp_path / "out" / "aisle.audit.html").read_text()
    assert "<h2>Empty sections</h2>" in page and "empty sections <b>1</b>" in page


def test_a_region_over_the_emptied_bay_reports_it_not_an_empty_section() -> None:
    from densedet_tile.audit import parse_regions

    aisle, keep = _emptied(3)
    a = aisle.xyxy[keep]
    lo, hi = aisle.xyxy[aisle.bay_of == 0, 2].max(), aisle.xyxy[aisle.bay_of == 2, 0].min()
    H = aisle.height
    feats = [{"type": "Feature", "properties": {"name": "promo"},
              "geometry": {"type": "Polygon", "coordinates": [[[lo, 0], [hi, 0], [hi, H], [lo, H], [lo, 0]]]}}]
    res = run_audit(a, aisle.width, H, regions=parse_regions({"type": "FeatureCollection", "features": feats}))
    assert res.empty_sections == () and res.regions[0].products == 0
