"""Fixes after an outside review of ``densedet-tile eval`` (2026-12-07, stop 68): each test fails
on the code before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densedet_tile.cli.eval import eval_main
from densedet_tile.eval.compare import pair_images
from densedet_tile.eval.formats import read_ground_truth, read_predictions

GT = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
      "categories": [{"id": 1, "name": "product"}],
      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}


@pytest.mark.parametrize("cls", ["\u00b2", "\u0663"])
def test_a_yolo_class_of_digits_other_than_0_to_9_is_a_name_not_a_traceback(tmp_path: Path, capsys, cls: str) -> None:
    # "²" passed str.isdigit and failed int(): a traceback (exit 1); it is a class name of its own
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "a.txt").write_text(f"0 0.05 0.05 0.1 0.1 0.9\n{cls} 0.5 0.5 0.1 0.1 0.8\n", encoding="utf-8")
    (labels / "classes.txt").write_text("product\n")
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    g = read_ground_truth(gt)
    preds = read_predictions(labels, gt=g)
    assert sorted(preds.images["a.jpg"].classes.tolist()) == sorted(["product", cls])
    assert eval_main([str(labels), str(gt), "--class-agnostic"]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_an_image_with_nothing_to_find_and_no_predictions_is_not_said_to_miss_boxes(tmp_path: Path) -> None:
    gt_doc = {**GT, "images": GT["images"] + [{"id": 2, "file_name": "b.jpg", "width": 100, "height": 100},
                                              {"id": 3, "file_name": "c.jpg", "width": 100, "height": 100}],
              "annotations": GT["annotations"] + [
                  {"id": 2, "image_id": 3, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0}]}
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(gt_doc))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    g = read_ground_truth(gt)
    _, notes = pair_images(g, read_predictions(preds, gt=g))
    said = [n for n in notes if "no predictions" in n]
    # b.jpg has no box to miss; c.jpg has one
    assert said and said[0].startswith("1 ground-truth image has no predictions") and "(c.jpg)" in said[0]


def test_the_summary_line_counts_one_of_each_in_the_singular(tmp_path: Path, capsys) -> None:
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(GT))
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]))
    assert eval_main([str(preds), str(gt)]) == 0
    assert "1 image, 1 ground-truth box, 1 prediction" in capsys.readouterr().out
