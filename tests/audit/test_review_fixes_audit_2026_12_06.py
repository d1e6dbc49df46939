"""Fixes after an outside review of ``densedet-tile audit`` (2026-12-06): each test fails on the
code before it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_cli_report import write_detections

from densedet_tile.audit import run_audit
from densedet_tile.audit.gaps import MIN_GAP_PX, find_gaps
from densedet_tile.audit.rows import find_rows
from densedet_tile.cli.audit import audit_main
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.formats import parse_yolo_labels
from densedet_tile.synth.audit_aisles import synthetic_aisle


@pytest.fixture()
def det(tmp_path: Path) -> Path:
    a = synthetic_aisle(np.random.default_rng(3), width=2400, n_rows=3)
    path = tmp_path / "aisle.detections.json"
    write_detections(path, a.xyxy, a.width, a.height, str(tmp_path / "absent.jpg"))
    return path


def test_near_misses_with_flipped_boxes_are_left_out_with_a_warning_naming_the_file(
        det: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # they stopped the audit with "near misses: 1 have x2 < x1..." and no file named, while
    # near misses that are not numbers were skipped without a word
    doc = json.loads(det.read_text())
    for k, boxes in enumerate(([[5000, 5000, 5100, 5100], [10, 10, 5, 5]], [[1, 2, 3]], [["a", 1, 2, 3]])):
        doc["count_range"] = {"score_thr": 0.45, "band": 0.05, "near_misses": {"boxes": boxes, "scores": [0.4]}}
        det.write_text(json.dumps(doc))
        capsys.readouterr()
        assert audit_main(["--detections", str(det), "--out", str(tmp_path / f"o{k}")]) == 0
        err = capsys.readouterr().err
        assert f"{det}: its count_range's near misses " in err and "(the bays get no count range)" in err
        out = json.loads((tmp_path / f"o{k}" / "aisle.audit.json").read_text())
        assert all("count_range" not in b for b in out["bays"])
        assert any(f"{det}: its count_range's near misses" in w for w in out["warnings"])
    # good ones still give each bay its range
    doc["count_range"] = {"score_thr": 0.45, "band": 0.05, "near_misses": {"boxes": [[1, 1, 9, 9]], "scores": [0.4]}}
    det.write_text(json.dumps(doc))
    assert audit_main(["--detections", str(det), "--out", str(tmp_path / "ok")]) == 0
    assert "near misses" not in capsys.readouterr().err
    out = json.loads((tmp_path / "ok" / "aisle.audit.json").read_text())
    assert all("count_range" in b for b in out["bays"])


def test_a_found_bay_is_printed_by_its_own_name(det: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # a region called "bay 2" and the found bay "bay 2 (found)" were both printed "bay 2"
    doc = json.loads(det.read_text())
    w, h = doc["image"]["width"], doc["image"]["height"]
    regions = tmp_path / "r.geojson"
    regions.write_text(json.dumps({"type": "Feature", "properties": {"name": "bay 2"}, "geometry": {
        "type": "Polygon", "coordinates": [[[0, 0], [w / 2, 0], [w / 2, h], [0, h], [0, 0]]]}}))
    assert audit_main(["--detections", str(det), "--regions", str(regions), "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    out = json.loads((tmp_path / "o" / "aisle.audit.json").read_text())
    found = [b["name"] for b in out["bays"] if b["kind"] == "bay"]
    assert found == ["bay 2 (found)"]
    assert any(line.startswith("  region bay 2: ") for line in lines)
    assert any(line.startswith("  bay 2 (found): ") for line in lines)
    assert not any(line.startswith("  bay 2: ") for line in lines)
    # without a clash a found bay reads as before
    assert audit_main(["--detections", str(det), "--out", str(tmp_path / "o2")]) == 0
    assert "  bay 1: " in capsys.readouterr().out


def test_max_tilt_out_of_range_names_the_option(det: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert audit_main(["--detections", str(det), "--max-tilt", "45", "--out", str(tmp_path / "o")]) == 2
    assert "--max-tilt" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_folder_in_the_way_of_one_output_is_named(det: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocked = tmp_path / "o" / "aisle.heatmap.png"
    blocked.mkdir(parents=True)
    assert audit_main(["--detections", str(det), "--out", str(tmp_path / "o")]) != 0
    assert f"{blocked}: cannot write the report" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["aisle.heatmap.png"]


def test_yolo_label_errors_name_the_line_and_the_field() -> None:
    with pytest.raises(InvalidInputError, match=r"^f\.txt: line 1: the score must be a finite number$"):
        parse_yolo_labels("0 0.5 0.5 0.1 0.1 nan\n", "f.txt")
    with pytest.raises(InvalidInputError, match=r"^f\.txt: line 3: coordinates and scores must be numbers, got 'abc'$"):
        parse_yolo_labels("0 0.5 0.5 0.1 0.1\n\n0 abc 0.5 0.1 0.1\n", "f.txt")
    with pytest.raises(InvalidInputError, match=r"^f\.txt: line 2: coordinates must be finite"):
        parse_yolo_labels("0 0.5 0.5 0.1 0.1 0.3\n0 0.5 0.5 -0.1 0.1 0.3\n", "f.txt")
    names, vals, scored = parse_yolo_labels("0 0.5 0.5 0.1 0.1 0.3\n", "f.txt")
    assert names == ["0"] and scored and vals.tolist() == [[0.5, 0.5, 0.1, 0.1, 0.3]]


def test_a_detections_file_and_its_photo_as_two_positionals(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from densedet_tile.synth.audit_aisles import render_aisle

    a = synthetic_aisle(np.random.default_rng(4), width=2400, n_rows=3)
    img = tmp_path / "aisle.jpg"
    Image.fromarray(render_aisle(a)).save(img, quality=80)
    csv = tmp_path / "boxes.csv"
    csv.write_text("".join(f"aisle.jpg,{x0:.1f},{y0:.1f},{x1:.1f},{y1:.1f},product,{a.width},{a.height}\n"
                           for x0, y0, x1, y1 in a.xyxy))
    # either order reads as --detections FILE IMAGE (it was "unrecognized arguments")
    for k, argv in enumerate(([str(csv), str(img)], [str(img), str(csv)])):
        assert audit_main([*argv, "--out", str(tmp_path / f"o{k}")]) == 0
        out = json.loads((tmp_path / f"o{k}" / "aisle.audit.json").read_text())
        assert out["summary"]["products"] == len(a.xyxy)
        assert out["preview"]["from_image"]
    capsys.readouterr()
    # two photos, or a file beside --detections, are told apart from that
    for argv in ([str(img), str(img)], [str(img), str(csv), "--detections", str(csv)]):
        assert audit_main([*argv, "--out", str(tmp_path / "bad")]) == 2
        assert "give one IMAGE, and its boxes with --detections FILE" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_no_gap_narrower_than_a_pixel_whatever_the_thresholds() -> None:
    # --end-k 0.0001 reported end gaps 0.03 px wide, written as zero-width outlines
    lefts = np.arange(10) * 40.0
    row_a = np.column_stack([lefts, np.full(10, 10.0), lefts + 40, np.full(10, 90.0)])
    row_a[1, 0] += 0.4  # a space of 0.4 px
    row_a[3, 0] += 3.0  # and one of 3 px
    row_b = np.column_stack([lefts, np.full(10, 110.0), lefts + 40, np.full(10, 190.0)])
    row_b[0, 0] = 0.03  # an end 0.03 px short of the fixture's
    row_b[-1, 2] = 399.5  # and one 0.5 px short
    boxes = np.r_[row_a, row_b]
    lay = find_rows(boxes)
    assert len(lay.rows) == 2
    gaps = find_gaps(boxes, lay, k=1e-4, end_k=1e-4)
    assert [(g.kind, round(g.width_px, 2)) for g in gaps] == [("interior", 3.0)]
    assert MIN_GAP_PX == 1.0


def test_a_multipolygon_region_wholly_outside_keeps_every_piece(tmp_path: Path) -> None:
    a = synthetic_aisle(np.random.default_rng(3), width=2400, n_rows=3)
    from densedet_tile.audit.regions import load_regions

    path = tmp_path / "r.geojson"
    w, h = a.width, a.height
    path.write_text(json.dumps({"type": "Feature", "properties": {"name": "mp"}, "geometry": {
        "type": "MultiPolygon", "coordinates": [
            [[[w + 1000, 0], [w + 2000, 0], [w + 2000, 100], [w + 1000, 100], [w + 1000, 0]]],
            [[[w + 3000, 0], [w + 4000, 0], [w + 4000, h], [w + 3000, h], [w + 3000, 0]]]]}}))
    res = run_audit(a.xyxy, w, h, regions=load_regions(path))
    part = next(p for p in res.parts if p.kind == "region")
    assert len(part.rings) == 2  # it kept only the largest ring
    from densedet_tile.audit.analysis import audit_to_dict

    bay = next(b for b in audit_to_dict(res)["bays"] if b["kind"] == "region")
    assert (bay["x_start"], bay["x_end"]) == (w + 1000, w + 4000)
    assert len(bay["pieces"]) == 2


def test_the_two_positionals_may_stand_among_the_options(det: Path, tmp_path: Path) -> None:
    # (a second review: "audit boxes.json --gap-k 1 photo.jpg" was "unrecognized arguments")
    from PIL import Image

    doc = json.loads(det.read_text())
    img = tmp_path / "aisle.jpg"
    Image.new("RGB", (doc["image"]["width"], doc["image"]["height"]), (200, 200, 200)).save(img)
    assert audit_main([str(det), "--gap-k", "1", str(img), "--out", str(tmp_path / "o")]) == 0
    out = json.loads((tmp_path / "o" / "aisle.audit.json").read_text())
    assert out["preview"]["from_image"]
