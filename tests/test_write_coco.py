"""The COCO results writer builds its text from a template: it must be the JSON that json.dumps
writes for the same records, byte for byte, and read back to the same boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile import io as dio
from densedet_tile.pipeline import ImageResult
from densedet_tile.types import Detections


def _result(name: str, xyxy: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> ImageResult:
    d = Detections(xyxy.astype(np.float32), scores.astype(np.float32), labels.astype(np.int64))
    return ImageResult(d, name, None, 5000, 4000, 1, {}, {"class_names": ["a", "b", "c"]})


def _expected(r: ImageResult) -> bytes:
    """The records as the writer's documentation describes them, through json.dumps."""
    d = r.detections
    rows = []
    for (x1, y1, x2, y2), lab, s in zip(d.xyxy.astype(np.float64).tolist(), d.labels.tolist(), d.scores):
        # the score: the shortest decimal that reads back as the same float32
        rows.append({"image_id": r.name, "category_id": int(lab) + 1,
                     "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                     "score": float(np.format_float_positional(np.float32(s), unique=True))})
    return json.dumps(rows, separators=(",", ":")).encode()


@pytest.mark.parametrize("name", ["shelf.jpg", 'odd "name", \\ é \u2028 \U0001f600.jpg', "bad-\udcff.jpg"])
def test_coco_text_is_json_dumps_byte_for_byte(tmp_path: Path, name: str) -> None:
    rng = np.random.default_rng(7)
    xy = rng.uniform(-50, 4000, (500, 2))
    wh = rng.uniform(0, 300, (500, 2))
    xyxy = np.concatenate([xy, xy + wh], axis=1)
    xyxy[:5] = [[0, 0, 0, 0], [-0.0, 1e-9, 0.005, 2.675], [1e6, 3, 1e6 + 0.125, 4.5], [10, 10, 11, 11], [0.1, 0.2, 0.3, 0.4]]
    scores = rng.uniform(0, 1, 500)
    scores[:3] = [0.0, 1.0, 0.00005]
    r = _result(name, xyxy, scores, rng.integers(0, 3, 500))
    out = dio.write_coco(r, tmp_path / "a.coco.json")
    assert out.read_bytes() == _expected(r)
    back = json.loads(out.read_text())
    assert len(back) == 500 and back[1]["image_id"] == name


def test_no_boxes_write_an_empty_list(tmp_path: Path) -> None:
    empty = _result("e.jpg", np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    assert dio.write_coco(empty, tmp_path / "e.coco.json").read_bytes() == b"[]"
