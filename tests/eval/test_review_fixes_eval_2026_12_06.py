"""Fixes after an outside review of ``densedet-tile eval`` (2026-12-06): each test fails on the
code before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densedet_tile.cli.eval import eval_main
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.coco import MAX_DETS_LIMIT, evaluate_boxes
from densedet_tile.eval.formats import read_detections_json, read_ground_truth, read_predictions

BASE = {"schema": "densedet-tile/detections@1", "image": {"name": "a.jpg", "width": 640, "height": 480},
        "labels": [0], "categories": {"0": "product"}}


@pytest.mark.parametrize("doc, what", [
    (dict(BASE, boxes=[[10, 10], [60, 60]], scores=[0.9]), r"boxes must be \[\[x1, y1, x2, y2\], \.\.\.\], got \[10, 10\]"),
    (dict(BASE, boxes=[10, 10, 60, 60], scores=[0.9]), r"boxes must be \[\[x1, y1, x2, y2\], \.\.\.\], got 10"),
    (dict(BASE, boxes=[[10, 10, 60, 60, 20, 20, 70, 70]], scores=[0.9, 0.8], labels=[0, 0]), "boxes must be"),
])
def test_boxes_scores_and_labels_keep_their_shape(tmp_path: Path, doc: dict, what: str) -> None:
    # pairs, a flat list or rows of eight were reshaped into boxes of four without a word (AP 1.0)
    p = tmp_path / "a.detections.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(InvalidInputError, match=rf"^{p}: {what}"):
        read_detections_json(p)


def test_a_good_detections_json_still_reads(tmp_path: Path) -> None:
    p = tmp_path / "a.detections.json"
    p.write_text(json.dumps(dict(BASE, boxes=[[10, 10, 60, 60]], scores=[0.9])))
    got = read_detections_json(p)
    assert got.xyxy.tolist() == [[10, 10, 60, 60]] and got.scores.tolist() == [0.9]
    p.write_text(json.dumps(dict(BASE, boxes=[], scores=[], labels=[])))
    assert len(read_detections_json(p).xyxy) == 0


def test_a_csv_record_longer_than_the_first_is_refused(tmp_path: Path) -> None:
    # a headerless CSV whose first row had no score: the scores of the later rows were dropped,
    # every prediction scored 1.0 (AR@1 0 where it is 1)
    p = tmp_path / "p.csv"
    p.write_text("a.jpg,300,300,350,350,product,640,480\n"
                 "a.jpg,200,200,250,250,product,640,480,0.1\n")
    with pytest.raises(InvalidInputError, match=rf"^{p}: line 2 has 9 fields, expected at most 8 \(as the first line\)$"):
        read_predictions(p)
    # with a header of 8 columns the same
    p.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                 "a.jpg,300,300,350,350,product,640,480\n"
                 "a.jpg,200,200,250,250,product,640,480,0.1\n")
    with pytest.raises(InvalidInputError, match=rf"^{p}: line 3 has 9 fields, expected at most 8 \(as the header\)$"):
        read_predictions(p)
    # and the ground truth reads its own message (no score there)
    p.write_text("a.jpg,1,nan,2,2,cola,10,10\n")
    with pytest.raises(InvalidInputError, match=r"line 1: coordinates must be finite$"):
        read_ground_truth(p)


def test_max_dets_beyond_any_image_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1,99999999999999999999999 crashed with an OverflowError traceback, exit 1
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
                              "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 40, 40], "category_id": 1,
                                               "area": 1600, "iscrowd": 0}],
                              "categories": [{"id": 1, "name": "product"}]}))
    pred = tmp_path / "a.detections.json"
    pred.write_text(json.dumps(dict(BASE, boxes=[[10, 10, 50, 50]], scores=[0.9])))
    assert eval_main([str(pred), str(gt), "--max-dets", "1,99999999999999999999999"]) == 2
    assert "--max-dets" in capsys.readouterr().err
    assert eval_main([str(pred), str(gt), "--max-dets", f"1,{MAX_DETS_LIMIT}"]) == 0
    with pytest.raises(InvalidInputError, match="max_dets must be integers from 1 to"):
        evaluate_boxes([], max_dets=(1, 2**70))


def test_trailing_empty_fields_are_nothing(tmp_path: Path) -> None:
    # (a second review: a spreadsheet's export ends each row with a comma; the rule above must
    # not refuse it)
    p = tmp_path / "gt.csv"
    p.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\na.jpg,1,1,10,10,obj,100,100,\n")
    assert read_ground_truth(p).images  # read, one image
    p.write_text("a.jpg,1,1,10,10,obj,100,100\na.jpg,2,2,12,12,obj,100,100,\n")
    assert read_ground_truth(p).images
