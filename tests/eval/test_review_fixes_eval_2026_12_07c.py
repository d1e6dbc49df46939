"""Fixes after an outside review of the output formats read back (2026-12-07, stop 70): each
test fails on the code before it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from densedet_tile.cli.eval import eval_main


def _gt_csv(path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"])
        w.writerow(["a.jpg", 10, 10, 40, 60, "object", 200, 100])
        w.writerow(["a.jpg", 50, 10, 80, 60, "object", 200, 100])


def _detections(path: Path, name: str, boxes: list) -> None:
    path.write_text(json.dumps({
        "schema": "densedet-tile/detections@1",
        "image": {"name": name, "width": 200, "height": 100},
        "boxes": boxes, "scores": [0.9] * len(boxes), "labels": [0] * len(boxes),
        "categories": {"0": "product"}}))


def test_a_run_s_folder_with_an_empty_shelf_photo_is_scored_against_a_csv(tmp_path: Path, capsys) -> None:
    # a SKU-110K CSV lists boxes only, so a photo with none cannot be in it: the run's folder of
    # JSONs (and of YOLO labels, whose file for that photo is empty) was refused outright
    gt = tmp_path / "gt.csv"
    _gt_csv(gt)
    out = tmp_path / "out"
    out.mkdir()
    _detections(out / "a.detections.json", "a.jpg", [[10, 10, 40, 60], [50, 10, 80, 60]])
    _detections(out / "blank.detections.json", "blank.png", [])
    assert eval_main([str(out), str(gt)]) == 0
    got = capsys.readouterr()
    assert "1 image(s) without predictions and not in the ground truth left out (blank.png)" in got.err
    assert "AP50=1.0000" in got.out
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "a.txt").write_text("0 0.125 0.35 0.15 0.5 0.9\n0 0.325 0.35 0.15 0.5 0.8\n")
    (yolo / "blank.txt").write_text("")
    (yolo / "classes.txt").write_text("product\n")
    assert eval_main([str(yolo), str(gt)]) == 0
    assert "AP50=1.0000" in capsys.readouterr().out
    # predictions of an image the ground truth lacks are still refused
    (yolo / "other.txt").write_text("0 0.5 0.5 0.1 0.1 0.9\n")
    assert eval_main([str(yolo), str(gt)]) == 2
    assert "labels of image other, which is not in the ground truth" in capsys.readouterr().err
