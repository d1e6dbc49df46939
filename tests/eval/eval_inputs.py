"""Small eval inputs shared by the tests of the readers' refusals: a one-box COCO ground
truth, a COCO result and our detections JSON matching it, and the check that ``eval`` refuses
a pair of files as it should."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from densedet_tile.cli.eval import eval_main

GT: dict[str, Any] = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
    "categories": [{"id": 1, "name": "product"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500, "iscrowd": 0}],
}
RESULT: dict[str, Any] = {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.9}
OURS: dict[str, Any] = {
    "schema": "densedet-tile/detections@1", "image": {"name": "a.jpg", "width": 640, "height": 480},
    "boxes": [[10, 10, 60, 60]], "scores": [0.9], "labels": [0], "categories": {"0": "product"},
}
CSV_HEAD = "image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"


def gt_copy() -> dict[str, Any]:
    return json.loads(json.dumps(GT))


def json_files(tmp_path: Path, pred: Any, gt: Any = GT) -> tuple[str, str]:
    """PRED and GT written as ``pred.json`` and ``gt.json`` (a str is written as it is)."""
    p, g = tmp_path / "pred.json", tmp_path / "gt.json"
    p.write_text(pred if isinstance(pred, str) else json.dumps(pred))
    g.write_text(gt if isinstance(gt, str) else json.dumps(gt))
    return str(p), str(g)


def assert_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], pred: str, gt: str, named: str,
                   what: str) -> None:
    """``eval PRED GT -o m.json`` exits 2 with one stderr line naming ``named`` and saying
    ``what``, and writes nothing."""
    out = tmp_path / "m.json"
    assert eval_main([pred, gt, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert named in err[0] and what in err[0], err[0]
    assert not out.exists()
