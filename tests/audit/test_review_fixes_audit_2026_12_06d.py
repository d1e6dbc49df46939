"""Fixes after an outside review of ``densedet-tile audit`` (2026-12-06, stop 62): a photo
rolled past ``--max-tilt`` is said, near-copies of boxes are counted once, ``--gap-k`` says its
range, and a found bay's name never repeats a region's. Each test fails on the code before."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.audit.analysis import AuditSettings, run_audit
from densedet_tile.audit.regions import parse_regions
from densedet_tile.cli.audit import audit_main
from densedet_tile.synth.audit_aisles import synthetic_aisle, synthetic_bays
from fakes import write_aisle_detections


def _rolled(tilt: float, seed: int = 3):
    return synthetic_aisle(np.random.default_rng(seed), width=5000, n_rows=5, tilt_deg=tilt)


@pytest.mark.parametrize("seed", [3, 8])
def test_a_photo_rolled_past_max_tilt_is_said_with_the_tilt_to_give(seed: int) -> None:
    # rolled 10 degrees, the rows were searched within 4: one row of 254 products and no gap,
    # without a word
    a = _rolled(10.0, seed)
    res = run_audit(a.xyxy, a.width, a.height)
    told = [w for w in res.warnings if "slope more than --max-tilt 4 degrees" in w]
    assert len(told) == 1 and "give --max-tilt 12" in told[0], res.warnings
    # given that, the rows are right and nothing is said
    res = run_audit(a.xyxy, a.width, a.height, settings=AuditSettings(max_tilt=12))
    assert len(res.parts[0].layout.rows) == 5
    assert not any("slope more than" in w for w in res.warnings)


@pytest.mark.parametrize("tilt", [0.0, 2.5, -3.5])
def test_a_roll_within_max_tilt_is_not_warned_about(tilt: float) -> None:
    a = _rolled(tilt)
    assert not any("slope more than" in w for w in run_audit(a.xyxy, a.width, a.height).warnings)
    b = synthetic_bays(np.random.default_rng(4), n_bays=3, perspective_deg=20.0)  # converging: another path
    assert not any("slope more than" in w for w in run_audit(b.xyxy, b.width, b.height).warnings)


@pytest.mark.parametrize("copies", [2, 3])
def test_near_copies_of_every_box_count_once_and_are_said(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          copies: int) -> None:
    # two runs' boxes joined in one file: each product counted twice (three times), no warning
    a = synthetic_bays(np.random.default_rng(1), n_bays=3, perspective_deg=0.0)
    rng = np.random.default_rng(0)
    boxes = np.concatenate([a.xyxy + rng.uniform(-1, 1, a.xyxy.shape) * (k > 0) for k in range(copies)])
    det = tmp_path / "two_runs.json"
    write_aisle_detections(det, boxes, a.width, a.height)
    assert audit_main([str(det), "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    n = len(a.xyxy)
    assert f"{(copies - 1) * n} of {copies * n} boxes were near-copies of others" in err
    doc = json.loads((tmp_path / "o" / "two_runs.audit.json").read_text())
    assert doc["summary"]["products"] == n
    # boxes of one run alone: nothing left out, nothing said
    write_aisle_detections(det, a.xyxy, a.width, a.height)
    assert audit_main([str(det), "--out", str(tmp_path / "o2")]) == 0
    assert "near-copies" not in capsys.readouterr().err


def test_gap_k_says_its_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = synthetic_bays(np.random.default_rng(1), n_bays=1, perspective_deg=0.0)
    det = tmp_path / "a.json"
    write_aisle_detections(det, a.xyxy, a.width, a.height)
    assert audit_main([str(det), "--gap-k", "1000", "--out", str(tmp_path / "o")]) == 2
    assert "argument --gap-k: expected a value in (0.0, 1000.0)" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert audit_main([str(det), "--gap-k", "999", "--out", str(tmp_path / "o")]) == 0


def test_a_found_bays_name_never_repeats_a_regions() -> None:
    # regions named "bay 3" and "bay 3 (found)": the found bay 3 was renamed "bay 3 (found)",
    # two bays of one name in the JSON, the report and the command's lines
    a = synthetic_bays(np.random.default_rng(0), n_bays=4, perspective_deg=0.0)
    square = lambda x0, x1: {"type": "Polygon", "coordinates": [[[x0, 0], [x1, 0], [x1, a.height], [x0, a.height],  # noqa: E731
                                                                   [x0, 0]]]}
    regions = parse_regions({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"name": "bay 3"}, "geometry": square(0, 4680)},
        {"type": "Feature", "properties": {"name": "bay 3 (found)"}, "geometry": square(4680, 4700)}]})
    names = [p.name for p in run_audit(a.xyxy, a.width, a.height, regions=regions).parts]
    assert len(names) == len(set(names)) and "bay 3 (found 2)" in names, names


# --- a second look at these fixes

def test_one_object_given_two_classes_is_not_taken_for_near_copies(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    # a detector with NMS class by class (the engine's default merge too) reports one object as
    # two classes at one box: the thinning took half of them out of the JSON's audit, while the
    # audit of the photo through that detector counted them all
    a = synthetic_bays(np.random.default_rng(1), n_bays=2, perspective_deg=0.0)
    n = len(a.xyxy)
    det = tmp_path / "two_classes.json"
    write_aisle_detections(det, np.concatenate([a.xyxy, a.xyxy]), a.width, a.height)
    doc = json.loads(det.read_text())
    doc["labels"] = [0] * n + [1] * n
    doc["categories"] = {"0": "product", "1": "drink"}
    det.write_text(json.dumps(doc))
    assert audit_main([str(det), "--out", str(tmp_path / "o")]) == 0
    assert "near-copies" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "two_classes.audit.json").read_text())["summary"]["products"] == 2 * n


def test_the_audit_reads_a_yolo_file_of_lines_with_and_without_scores(tmp_path: Path) -> None:
    # eval refuses such a file (AP would rank the unscored boxes first); the audit counts boxes
    from PIL import Image

    Image.new("RGB", (400, 300), "white").save(tmp_path / "a.jpg")
    (tmp_path / "a.txt").write_text("0 0.2 0.5 0.1 0.2 0.9\n0 0.4 0.5 0.1 0.2\n")
    assert audit_main([str(tmp_path / "a.jpg"), "--detections", str(tmp_path / "a.txt"),
                       "--out", str(tmp_path / "o")]) == 0
    assert json.loads((tmp_path / "o" / "a.audit.json").read_text())["summary"]["products"] == 2


def test_a_roll_of_29_degrees_is_told_to_give_30_and_scattered_boxes_are_not_warned() -> None:
    a = _rolled(29.0)
    told = [w for w in run_audit(a.xyxy, a.width, a.height).warnings if "slope more than" in w]
    assert len(told) == 1 and "give --max-tilt 30" in told[0]
    assert not any("slope more than" in w
                   for w in run_audit(a.xyxy, a.width, a.height, settings=AuditSettings(max_tilt=30)).warnings)
    for seed in range(30):  # a few boxes line up at some steep angle by chance: not a roll
        rng = np.random.default_rng(seed)
        for n in (8, 14, 40):
            cx, cy = rng.uniform(200, 3800, n), rng.uniform(200, 2800, n)
            w, h = rng.uniform(80, 140, n), rng.uniform(150, 260, n)
            res = run_audit(np.c_[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 4000, 3000)
            assert not any("slope more than" in x for x in res.warnings), (seed, n)
