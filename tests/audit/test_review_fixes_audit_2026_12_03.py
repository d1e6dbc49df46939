"""What an outside review of the audit found on 2026-12-03: products in tidy columns cut into
bays of two, a stray box stretching a gap's ends into the next bay, numbers too large for a float
in the inputs, a tilt printed as -0.0."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.audit import run_audit
from densedet_tile.audit.analysis import _r, audit_to_dict
from densedet_tile.cli import main
from densedet_tile.synth.audit_aisles import synthetic_bays
from fakes import write_aisle_detections


def grid(rows: int, cols: int, space: float, *, x0: float = 20.0, w: float = 80.0) -> np.ndarray:
    return np.array([[x0 + i * (w + space), 20 + r * 210, x0 + i * (w + space) + w, 200 + r * 210]
                     for r in range(rows) for i in range(cols)], np.float64)


@pytest.mark.parametrize("rows, cols, space", [(3, 8, 20), (4, 30, 20), (5, 12, 25)])
def test_products_in_tidy_columns_are_one_bay_with_every_row(rows: int, cols: int, space: float) -> None:
    # (a fridge: every product a quarter of its width from the next, on every shelf: each space
    # was cut as an upright, 4 bays of 2 products and no row)
    b = grid(rows, cols, space)
    res = run_audit(b, int(b[:, 2].max()) + 20, int(b[:, 3].max()) + 20)
    assert len(res.parts) == 1
    assert len(res.parts[0].layout.rows) == rows and (res.parts[0].layout.assignment >= 0).all()


def test_tidy_columns_beside_an_upright_are_still_two_bays() -> None:
    # the same spacing in each bay, and an upright three spaces wide between them
    left = grid(4, 8, 20)
    right = grid(4, 8, 20, x0=float(left[:, 2].max()) + 60)
    b = np.vstack([left, right])
    res = run_audit(b, int(b[:, 2].max()) + 20, int(b[:, 3].max()) + 20)
    assert len(res.parts) == 2 and [len(p.index) for p in res.parts] == [32, 32]


def test_a_box_across_the_bays_does_not_stretch_gaps_into_the_next_bay() -> None:
    a = synthetic_bays(np.random.default_rng(0), n_bays=3, perspective_deg=0)
    plain = audit_to_dict(run_audit(a.xyxy, a.width, a.height))
    rail = np.vstack([a.xyxy, [[0, a.height * 0.5, a.width, a.height * 0.5 + 37]]])
    doc = audit_to_dict(run_audit(rail, a.width, a.height))
    for g in doc["gaps"]:  # the ends and widths agree with the outline written
        assert g["xyxy"][0] - 1 <= g["x1"] and g["x2"] <= g["xyxy"][2] + 1
    # one flat box made the summed gap widths 8 times those of the aisle without it
    assert doc["summary"]["gap_width_products"] <= 1.2 * plain["summary"]["gap_width_products"]
    steep = synthetic_bays(np.random.default_rng(1), n_bays=4, perspective_deg=40)
    for g in audit_to_dict(run_audit(steep.xyxy, steep.width, steep.height))["gaps"]:
        assert g["xyxy"][0] - 1 <= g["x1"] and g["x2"] <= g["xyxy"][2] + 1


def test_numbers_too_large_for_a_float_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    det = tmp_path / "a.detections.json"
    write_aisle_detections(det, grid(3, 8, 20), 900, 700)
    doc = json.loads(det.read_text())
    cases = {}
    big = dict(doc, boxes=[[0, 0, 10**400, 5]] + doc["boxes"][1:])
    cases["big.json"] = (json.dumps(big), None)
    wide = dict(doc, image=dict(doc["image"], width=2**63))
    cases["wide.json"] = (json.dumps(wide), None)
    cases["region.json"] = (json.dumps(doc), '{"type":"Polygon","coordinates":[[[0,0],[1' + "0" * 400 + ',0],[5,5],[0,0]]]}')
    for name, (text, region) in cases.items():
        (tmp_path / name).write_text(text)
        argv = ["audit", "--detections", str(tmp_path / name), "--out", str(tmp_path / "out")]
        if region is not None:
            (tmp_path / "r.geojson").write_text(region)
            argv += ["--regions", str(tmp_path / "r.geojson")]
        rc = main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "error:" in err[0], (name, err)
        assert not (tmp_path / "out").exists()


def test_a_tilt_rounded_to_nothing_is_zero_not_minus_zero() -> None:
    assert str(_r(-0.001, 2)) == "0.0" and str(_r(-0.2, 1)) == "-0.2"


def test_a_box_over_many_products_is_warned_about() -> None:
    a = synthetic_bays(np.random.default_rng(0), n_bays=3, perspective_deg=0)
    assert not [w for w in run_audit(a.xyxy, a.width, a.height).warnings if "the centres of 8 or more" in w]
    whole = np.vstack([a.xyxy, [[0, 0, a.width, a.height]]])
    said = [w for w in run_audit(whole, a.width, a.height).warnings if "the centres of 8 or more" in w]
    assert len(said) == 1 and f"box {len(a.xyxy)}," in said[0] and f"holds {len(a.xyxy)}" in said[0]


def test_a_preview_too_thin_to_show_shelves_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a panorama of hundreds of bays shrunk to 8000 px wide came out 8000x42 px without a word,
    # and a --preview-max-width over what a JPEG holds was cut down silently
    w, h = 120_000, 600
    xs = np.arange(0, w - 60, 80.0)
    boxes = np.array([[x, y, x + 60, y + 100] for x in xs for y in (100.0, 300.0)])
    dets = tmp_path / "long.detections.json"
    write_aisle_detections(dets, boxes, w, h)
    assert main(["audit", "--detections", str(dets), "--out", str(tmp_path / "o"), "-q"]) == 0
    doc = json.loads((tmp_path / "o" / "long.audit.json").read_text())
    assert doc["preview"]["height"] == 40
    assert any("the preview is 8000x40 px, too thin to show shelves" in x for x in doc["warnings"])
    assert main(["audit", "--detections", str(dets), "--out", str(tmp_path / "p"), "-q",
                 "--preview-max-width", "70000"]) == 0
    doc = json.loads((tmp_path / "p" / "long.audit.json").read_text())
    assert any("--preview-max-width 70000: a JPEG holds at most 65500 px a side, so the preview is 65500x327 px" in x
               for x in doc["warnings"]), doc["warnings"]
    assert "too thin" in capsys.readouterr().err
