"""Faults found by an outside review of the audit command (2026-12-07, stop 67)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.cli.audit import audit_main

from test_cli_report import write_detections


def _photo_and_boxes(folder: Path) -> tuple[Path, Path]:
    img = folder / "img.jpg"
    Image.fromarray(np.full((800, 1000, 3), 128, np.uint8)).save(img)
    lines = [f"0 {(90 + c * 110) / 1000:.4f} {(180 + r * 220) / 800:.4f} 0.09 0.2" for r in range(3) for c in range(8)]
    boxes = folder / "boxes.txt"
    boxes.write_text("\n".join(lines) + "\n")
    return img, boxes


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".audit.json", ".audit.html", ".heatmap.png"])
def test_a_regions_file_named_like_an_output_is_refused_not_replaced(tmp_path, capsys, suffix) -> None:
    img, boxes = _photo_and_boxes(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    regions = out / f"img{suffix}"
    regions.write_text(json.dumps({"type": "FeatureCollection", "features": [{
        "type": "Feature", "properties": {"name": "A"},
        "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1000, 0], [1000, 800], [0, 800], [0, 0]]]}}]}))
    before = _digest(regions)
    code = audit_main(["--detections", str(boxes), str(img), "--regions", str(regions), "--out", str(out), "-q",
                       "--no-pixel-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(regions) in err[0] and "regions file" in err[0]
    assert _digest(regions) == before
    assert sorted(p.name for p in out.iterdir()) == [regions.name]  # nothing else written either


def test_boxes_named_like_the_audits_json_are_refused_not_replaced(tmp_path, capsys) -> None:
    img, _ = _photo_and_boxes(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    target = out / "img.audit.json"  # the detect verb's JSON of img.jpg, saved under the audit's name
    boxes = [[90.0 + 110 * c, 100.0 + 220 * r, 180.0 + 110 * c, 260.0 + 220 * r] for r in range(3) for c in range(8)]
    write_detections(target, np.array(boxes), 1000, 800, str(img))
    before = _digest(target)
    code = audit_main(["--detections", str(target), str(img), "--out", str(out), "-q", "--no-pixel-check"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and str(target) in err[0] and "detections file" in err[0]
    assert _digest(target) == before
    assert sorted(p.name for p in out.iterdir()) == [target.name]


def test_an_audit_beside_its_inputs_under_other_names_still_writes(tmp_path) -> None:
    img, boxes = _photo_and_boxes(tmp_path)
    code = audit_main(["--detections", str(boxes), str(img), "--out", str(tmp_path), "-q", "--no-pixel-check"])
    assert code == 0
    assert json.loads((tmp_path / "img.audit.json").read_text())["summary"]["products"] == 24
