"""The evaluator, from an outside review against pycocotools: tiny boxes across a
million-pixel panorama, -o inside the predictions folder, and COCO results whose category the
ground truth does not have."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.eval import EvalImage, evaluate_boxes
from densedet_tile.eval.formats import read_ground_truth, read_predictions

pytest.importorskip("pycocotools")
from test_evaluate import pycoco_eval  # noqa: E402


def test_small_boxes_far_apart_on_a_huge_panorama_match_pycocotools() -> None:
    # IoU 0.5000005 between two 2 px boxes 742 644 px from the image's other box: float32 there
    # is 0.06 px apart, which threw the true match away before the exact IoU
    x, s = 742644.6502227017, 2.0
    shift = s / 3 * (1 - 1e-6)
    gt = np.array([[0, 0, s, s], [x, 0, x + s, s]])
    dt = np.array([[x + shift, 0, x + shift + s, s]])
    ims = [EvalImage("a.jpg", gt, [0, 0], dt, [0.9], [0])]
    ours = evaluate_boxes(ims, max_dets=(1, 10, 100))
    ref = pycoco_eval(ims, 1, (1, 10, 100))
    assert ours.stats["AP50"] == pytest.approx(ref.stats[1], abs=1e-9) and ref.stats[1] > 0.5
    np.testing.assert_allclose(ours.coco_stats(), ref.stats, atol=1e-9, rtol=0)
    # random tiny boxes spread over 4 million px, jittered around the threshold
    rng = np.random.default_rng(7)
    xy = rng.uniform(0, 4e6, (300, 2))
    wh = rng.uniform(1, 6, (300, 2))
    g = np.column_stack([xy, xy + wh])
    d = g + rng.normal(0, 0.4, g.shape)
    d[:, 2:] = np.maximum(d[:, 2:], d[:, :2] + 0.2)
    ims = [EvalImage("b.jpg", g, np.zeros(300, int), d, np.round(rng.random(300), 3), np.zeros(300, int))]
    np.testing.assert_allclose(evaluate_boxes(ims, max_dets=(1, 10, 100)).coco_stats(),
                               pycoco_eval(ims, 1, (1, 10, 100)).stats, atol=1e-9, rtol=0)


def test_metrics_are_not_written_into_the_predictions_folder(tmp_path: Path, capsys) -> None:
    from densedet_tile.cli import main

    (tmp_path / "pred").mkdir()
    doc = {"schema": "densedet-tile/detections@1", "image": {"name": "a.jpg", "width": 100, "height": 100},
           "boxes": [[0, 0, 10, 10]], "scores": [0.9], "labels": [0]}
    pred = tmp_path / "pred" / "a.detections.json"
    pred.write_text(json.dumps(doc))
    (tmp_path / "gt.csv").write_text("a.jpg,0,0,10,10,object,100,100\n")
    for out in (pred, tmp_path / "pred" / "metrics.json"):
        assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt.csv"), "-o", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "-o" in err[0], err
    assert json.loads(pred.read_text()) == doc and not (tmp_path / "pred" / "metrics.json").exists()
    assert main(["eval", str(tmp_path / "pred"), str(tmp_path / "gt.csv"), "-o", str(tmp_path / "m.json")]) == 0


def test_coco_results_of_a_category_the_ground_truth_lacks_are_not_scored_as_one_named_like_its_id(
        tmp_path: Path) -> None:
    from densedet_tile.eval.compare import pair_images

    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
          "categories": [{"id": 0, "name": "1"}, {"id": 1, "name": "2"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "area": 100, "iscrowd": 0}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    # category 2 is unknown; a category *named* "2" exists (id 1): the result is not scored as it
    res = [{"image_id": 1, "category_id": 0, "bbox": [0, 0, 10, 10], "score": 0.9},
           {"image_id": 1, "category_id": 2, "bbox": [50, 50, 10, 10], "score": 0.8}]
    (tmp_path / "res.json").write_text(json.dumps(res))
    truth = read_ground_truth(tmp_path / "gt.json")
    pairs, notes = pair_images(truth, read_predictions(tmp_path / "res.json", gt=truth))
    ours = evaluate_boxes(pairs)
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco = COCO(str(tmp_path / "gt.json"))
    ev = COCOeval(coco, coco.loadRes(str(tmp_path / "res.json")), "bbox")
    ev.evaluate(), ev.accumulate(), ev.summarize()
    assert ours.stats["AP"] == pytest.approx(ev.stats[0]) and ev.stats[0] == pytest.approx(0.5, abs=0.01)
    assert any("not scored" in n for n in notes)
