"""Class-agnostic scoring is pycocotools' ``useCats=0``: an image's boxes are taken category by
category (in id order, file order within one), which decides which ground truth wins an equal
IoU and which detection goes first on a tied score."""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.cli.eval import eval_main
from densedet_tile.eval import EvalImage, evaluate_boxes
from densedet_tile.eval.compare import pair_images
from densedet_tile.eval.formats import read_ground_truth, read_predictions

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

MAX_DETS = (1, 10, 100)


def _use_cats_0(gt: dict, results: list) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = copy.deepcopy(gt)
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(copy.deepcopy(results)), "bbox")
        ev.params.useCats = 0
        ev.params.maxDets = list(MAX_DETS)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# one box annotated twice, first as category 2 then as category 1 (as duplicate annotations
# are); the first detection has the same IoU (0.818) with both, the second only with the first
DUPLICATE_GT = {
    "images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
    "categories": [{"id": 1, "name": "x"}, {"id": 2, "name": "y"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 2, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [20, 0, 100, 100], "area": 10000, "iscrowd": 0},
    ],
}
DUPLICATE_RES = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 0, 100, 100], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [-10, 0, 100, 100], "score": 0.8},
]


def test_class_agnostic_cli_takes_ground_truth_by_category_as_use_cats_0(tmp_path: Path) -> None:
    gtp, resp, out = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "m.json"
    gtp.write_text(json.dumps(DUPLICATE_GT))
    resp.write_text(json.dumps(DUPLICATE_RES))
    ref = _use_cats_0(DUPLICATE_GT, DUPLICATE_RES).stats
    assert eval_main([str(resp), str(gtp), "--class-agnostic", "--max-dets", "1,10,100", "-o", str(out)]) == 0
    got = json.loads(out.read_text())["metrics"]
    # file order gave AP 0.700 and AP75 1.0: the first detection took the category-1 box
    assert (got["AP"], got["AP50"], got["AP75"]) == pytest.approx((ref[0], ref[1], ref[2]), abs=1e-6)
    assert got["AP"] == pytest.approx(0.403, abs=1e-3)


def _scene(rng: np.random.Generator, n_img: int, ncat: int) -> tuple[dict, list]:
    """COCO ground truth and results with boxes annotated more than once in different
    categories (equal IoUs), detections near them in other categories, and scores rounded to
    one decimal (ties across categories)."""
    gt = {"images": [], "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(ncat)], "annotations": []}
    res = []
    for i in range(1, n_img + 1):
        gt["images"].append({"id": i, "file_name": f"im{i}.jpg", "width": 800, "height": 800})
        for _ in range(int(rng.integers(1, 8))):
            x, y = (float(v) for v in rng.integers(0, 600, 2))
            w, h = (float(v) for v in rng.integers(20, 120, 2))
            for _copy in range(int(rng.integers(1, 4))):  # the same box, or one shifted, in any category
                dx = float(rng.choice([0, w / 5, -w / 5]))
                gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i,
                                          "category_id": int(rng.integers(1, ncat + 1)),
                                          "bbox": [x + dx, y, w, h], "area": w * h, "iscrowd": 0})
            for _det in range(int(rng.integers(0, 4))):
                dx = float(rng.choice([0, w / 10, -w / 10, w / 5]))
                res.append({"image_id": i, "category_id": int(rng.integers(1, ncat + 1)),
                            "bbox": [x + dx, y, w, h], "score": round(float(rng.random()), 1)})
    return gt, res


@pytest.mark.parametrize("foreign", [False, True])
@pytest.mark.parametrize("seed", range(6))
def test_pair_images_class_agnostic_matches_use_cats_0_on_random_scenes(tmp_path: Path, seed: int,
                                                                          foreign: bool) -> None:
    # through the readers and pair_images, as `eval --class-agnostic` and `--compare` score;
    # with results of a category the ground truth lacks too: useCats=0 still takes the ground
    # truth's categories only (a result of category 99 was scored as a false positive, AP 0.667
    # where pycocotools says 1.0 on a reviewer's case)
    gt, res = _scene(np.random.default_rng(seed), 8, 3)
    extra = []
    if foreign:
        rng = np.random.default_rng(100 + seed)
        extra = [dict(r, category_id=99, score=round(float(rng.random()), 1)) for r in res[::2]]
    ref = _use_cats_0(gt, res + extra)
    gtp, resp = tmp_path / "gt.json", tmp_path / "res.json"
    gtp.write_text(json.dumps(gt))
    resp.write_text(json.dumps(res + extra))
    g = read_ground_truth(gtp)
    pairs, notes = pair_images(g, read_predictions(resp, gt=g), class_agnostic=True)
    if extra:
        assert any(n.startswith(f"{len(extra)} prediction") and "a class the ground truth does not know" in n
                   for n in notes)
    m = evaluate_boxes(pairs, max_dets=MAX_DETS)
    np.testing.assert_allclose(m.precision[:, :, 0], ref.eval["precision"][:, :, 0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(m.recall[:, 0], ref.eval["recall"][:, 0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(m.coco_stats(), ref.stats, atol=1e-12, rtol=0)


@pytest.mark.parametrize("seed", range(6))
def test_evaluate_boxes_class_agnostic_matches_use_cats_0_on_random_scenes(seed: int) -> None:
    # the API's own class_agnostic, on the labels (category ids) as they are
    gt, res = _scene(np.random.default_rng(seed), 8, 3)
    ref = _use_cats_0(gt, res)
    ims = []
    for im_rec in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == im_rec["id"]]
        dets = [r for r in res if r["image_id"] == im_rec["id"]]
        xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        dxyxy = [[r["bbox"][0], r["bbox"][1], r["bbox"][0] + r["bbox"][2], r["bbox"][1] + r["bbox"][3]] for r in dets]
        ims.append(EvalImage(im_rec["file_name"], np.array(xyxy).reshape(-1, 4), [a["category_id"] for a in anns],
                             np.array(dxyxy).reshape(-1, 4), [r["score"] for r in dets],
                             [r["category_id"] for r in dets],
                             gt_wh=[a["bbox"][2:] for a in anns] or np.zeros((0, 2)),
                             dt_wh=[r["bbox"][2:] for r in dets] or np.zeros((0, 2))))
    m = evaluate_boxes(ims, max_dets=MAX_DETS, class_agnostic=True)
    np.testing.assert_allclose(m.precision[:, :, 0], ref.eval["precision"][:, :, 0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(m.recall[:, 0], ref.eval["recall"][:, 0], atol=1e-12, rtol=0)
    np.testing.assert_allclose(m.coco_stats(), ref.stats, atol=1e-12, rtol=0)


def test_one_class_ground_truth_keeps_predictions_of_any_class_in_file_order(tmp_path: Path) -> None:
    # against one class every prediction counts as it: a tie keeps the file's order, whatever
    # the predictions' own classes (a "shelf" listed first is ranked first)
    gtp, predp = tmp_path / "gt.csv", tmp_path / "pred.csv"
    gtp.write_text("a.jpg,0,0,100,100,object,640,480\n")
    predp.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
                     "a.jpg,300,300,400,400,shelf,640,480,0.5\n"
                     "a.jpg,0,0,100,100,object,640,480,0.5\n")
    g = read_ground_truth(gtp)
    pairs, _ = pair_images(g, read_predictions(predp, gt=g), class_agnostic=True)
    assert pairs[0].dt_xyxy[:, 0].tolist() == [300, 0]
    assert evaluate_boxes(pairs).stats["AP"] == pytest.approx(0.5, abs=0.01)
