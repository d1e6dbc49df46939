"""The COCO evaluator against pycocotools, the file readers and the ``eval`` command."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from densedet_tile import RunSpec, TileSpec
from densedet_tile.cli.eval import eval_main
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval import EvalImage, evaluate_boxes
from densedet_tile.eval.compare import compare_tiled_untiled, pair_images
from densedet_tile.eval.formats import read_ground_truth, read_predictions

pycocotools = pytest.importorskip("pycocotools")  # declared in the test extra; CI installs it
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


# ----------------------------------------------------------------------------- data
def random_images(rng: np.random.Generator, n_img: int, ncat: int, gmax: int, dmax: int, *, crowd: float = 0.05) -> list[EvalImage]:
    """Random scenes: detections are jittered copies of ground truth (often just over or under a
    threshold), plus random boxes; scores rounded to 2 decimals so ties occur."""
    ims = []
    for i in range(n_img):
        g = int(rng.integers(0, gmax + 1))
        xy = rng.uniform(0, 400, (g, 2))
        wh = rng.uniform(2, 130, (g, 2))
        gt = np.column_stack([xy, xy + wh])
        gl = rng.integers(0, ncat, g)
        d = int(rng.integers(0, dmax + 1))
        src = rng.integers(0, max(g, 1), d)
        base = gt[src] + rng.normal(0, 6, (d, 4)) if g else np.zeros((d, 4))
        rxy = rng.uniform(0, 400, (d, 2))
        rand = np.column_stack([rxy, rxy + rng.uniform(2, 130, (d, 2))])
        use = rng.random(d) < 0.75 if g else np.zeros(d, bool)
        dt = np.where(use[:, None], base, rand)
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 0.5)
        dl = np.where(use, gl[src] if g else 0, rng.integers(0, ncat, d))
        # a few exact duplicates of ground truth and of each other
        if g and d > 2:
            dt[0] = gt[src[0]]
            dt[1] = dt[0]
        sc = np.round(rng.random(d), 2)
        ims.append(EvalImage(f"im{i:03d}.jpg", gt, gl, dt, sc, dl, gt_crowd=rng.random(g) < crowd))
    return ims


def pycoco_eval(ims: list[EvalImage], ncat: int, max_dets: tuple[int, ...]) -> COCOeval:
    gt = {"images": [{"id": i + 1, "file_name": im.name, "width": 1000, "height": 1000} for i, im in enumerate(ims)],
          "categories": [{"id": c + 1, "name": f"c{c}"} for c in range(ncat)], "annotations": []}
    res = []
    for i, im in enumerate(ims):
        for b, lab, cr, ar in zip(im.gt_xyxy, im.gt_labels, im.gt_crowd, im.gt_area):
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": int(lab) + 1,
                                      "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float(ar), "iscrowd": int(cr)})
        for b, lab, s in zip(im.dt_xyxy, im.dt_labels, im.dt_scores):
            res.append({"image_id": i + 1, "category_id": int(lab) + 1,
                        "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        cd = cg.loadRes(res)
        ev = COCOeval(cg, cd, "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


# ----------------------------------------------------------------------------- evaluator
@pytest.mark.parametrize("seed", range(8))
def test_matches_pycocotools_on_random_scenes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ncat = 1 + seed % 3
    ims = random_images(rng, 12, ncat, 40, 70)
    for md in ((1, 10, 100), (1, 5, 30)):
        ours = evaluate_boxes(ims, max_dets=md)
        ref = pycoco_eval(ims, ncat, md)
        # the arrays behind every figure agree exactly; cut to the categories pycocotools knows
        kept = [c for c in range(ncat) if c in ours.categories]
        ref_p = ref.eval["precision"][:, :, kept]
        ref_r = ref.eval["recall"][:, kept]
        np.testing.assert_allclose(ours.precision, ref_p, atol=1e-6, rtol=0)
        np.testing.assert_allclose(ours.recall, ref_r, atol=1e-6, rtol=0)
        if md[2] == 100:  # pycocotools' summary hard-codes maxDets=100 for AP
            np.testing.assert_allclose(ours.coco_stats(), ref.stats, atol=1e-6, rtol=0)


def test_one_large_image_among_small_ones_matches_pycocotools_in_any_chunk() -> None:
    # blocks are padded per bucket of similar size and a block over the chunk is screened in
    # bands of its detections: neither may change a figure
    rng = np.random.default_rng(7)
    ims = random_images(rng, 10, 2, 30, 40)
    big = random_images(np.random.default_rng(8), 1, 2, 900, 1100)[0]
    ims.insert(4, EvalImage("panorama.jpg", big.gt_xyxy * 8, big.gt_labels, big.dt_xyxy * 8, big.dt_scores,
                            big.dt_labels, gt_crowd=big.gt_crowd))
    md = (1, 100, 2000)
    ref = pycoco_eval(ims, 2, md)
    for chunk in (4_000_000, 20_000, 500):
        ours = evaluate_boxes(ims, max_dets=md, chunk_elems=chunk)
        np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-6, rtol=0)
        np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-6, rtol=0)


@pytest.mark.parametrize("sparse_from", [0, 2_000])
def test_blocks_matched_from_the_spatial_index_match_pycocotools(monkeypatch, sparse_from: int) -> None:
    # a panorama's block takes its pairs from the spatial index instead of the screen of every
    # pair (0: every block does; 2 000: the large ones, beside the small ones' screen)
    from densedet_tile.eval import coco

    rng = np.random.default_rng(11)
    ims = random_images(rng, 10, 2, 30, 40, crowd=0.1)
    big = random_images(np.random.default_rng(12), 1, 2, 900, 1100, crowd=0.05)[0]
    ims.insert(3, EvalImage("panorama.jpg", big.gt_xyxy * 8, big.gt_labels, big.dt_xyxy * 8, big.dt_scores,
                            big.dt_labels, gt_crowd=big.gt_crowd))
    md = (1, 100, 2000)
    ref = pycoco_eval(ims, 2, md)
    monkeypatch.setattr(coco, "SPARSE_PAIRS", sparse_from)
    ours = evaluate_boxes(ims, max_dets=md)
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-6, rtol=0)


def test_dense_images_beyond_100_detections_match_pycocotools() -> None:
    # shelves hold hundreds of products: AR@300 must see them all, AR@100 cannot
    rng = np.random.default_rng(42)
    ims = []
    for i in range(2):
        cols, rows = 25, 12
        x, y = np.meshgrid(np.arange(cols) * 40.0, np.arange(rows) * 90.0)
        gt = np.column_stack([x.ravel(), y.ravel(), x.ravel() + 36, y.ravel() + 85])
        dt = gt + rng.normal(0, 3, gt.shape)
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 1)
        ims.append(EvalImage(f"s{i}.jpg", gt, np.zeros(len(gt), int), dt, rng.random(len(gt)), np.zeros(len(gt), int)))
    ours = evaluate_boxes(ims, max_dets=(1, 100, 300))
    ref = pycoco_eval(ims, 1, (1, 100, 300))
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(ours.recall, ref.eval["recall"], atol=1e-6, rtol=0)
    assert ours.stats["AR@100"] < 0.4 < ours.stats["AR@300"]


@pytest.mark.parametrize("offset", [0.0, 20000.0])
@pytest.mark.parametrize("size", [2.0, 100.0])
def test_boxes_just_over_and_under_each_threshold_match_pycocotools(offset: float, size: float) -> None:
    # a detection shifted right by dx has IoU (s - dx) / (s + dx) with its ground truth
    gts, dts = [], []
    for i, t in enumerate(np.linspace(0.5, 0.95, 10)):
        for j, eps in enumerate((-1e-9, 0.0, 1e-9, 1e-6)):
            x = offset + (4 * i + j) * 3 * size
            dx = size * (1 - t) / (1 + t) * (1 + eps)
            gts.append([x, offset, x + size, offset + size])
            dts.append([x + dx, offset, x + dx + size, offset + size])
    gt, dt = np.array(gts), np.array(dts)
    ims = [EvalImage("t.jpg", gt, np.zeros(len(gt), int), dt, np.linspace(1, 0.1, len(dt)), np.zeros(len(dt), int))]
    ours = evaluate_boxes(ims, max_dets=(1, 10, 100))
    ref = pycoco_eval(ims, 1, (1, 10, 100))
    np.testing.assert_array_equal(ours.recall, ref.eval["recall"])
    np.testing.assert_allclose(ours.precision, ref.eval["precision"], atol=1e-12, rtol=0)
    # the boxes really straddle the thresholds: some but not all pass at each of them
    r = ours.recall[:, 0, 0, -1]
    assert np.all((r > 0) & (r < 1))


def test_perfect_detections_score_one_and_shifted_ones_fail_strict_thresholds() -> None:
    gt = np.array([[0, 0, 100, 100], [200, 0, 300, 100]], float)
    perfect = EvalImage("a.jpg", gt, [0, 0], gt, [0.9, 0.8], [0, 0])
    m = evaluate_boxes([perfect])
    assert m.stats["AP"] == pytest.approx(1.0) and m.stats["AR@300"] == pytest.approx(1.0)
    # shift by 20 px: IoU = 80*100 / (2*100*100 - 8000) = 0.667 -> matched at 0.50..0.65 only
    shifted = EvalImage("a.jpg", gt, [0, 0], gt + [20, 0, 20, 0], [0.9, 0.8], [0, 0])
    m = evaluate_boxes([shifted])
    assert m.stats["AP50"] == pytest.approx(1.0)
    assert m.stats["AP75"] == pytest.approx(0.0)
    assert m.stats["AP"] == pytest.approx(4 / 10)


def test_bad_max_dets_and_boxes_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="increasing"):
        evaluate_boxes([], max_dets=(300, 10))
    with pytest.raises(InvalidInputError, match="x2 < x1"):
        EvalImage("a.jpg", [[10, 0, 5, 5]], [0], np.zeros((0, 4)), [], [])


# ----------------------------------------------------------------------------- readers
def write_sku_csv(path: Path, rows: list[tuple], *, header: bool, score: bool = False) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        if header:
            w.writerow(["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"] + (["score"] if score else []))
        for r in rows:
            w.writerow(r)


def our_json(path: Path, name: str, boxes: list, scores: list, *, width: int = 640, height: int = 480) -> None:
    path.write_text(json.dumps({
        "schema": "densedet-tile/detections@1",
        "image": {"path": f"/data/{name}", "name": name, "width": width, "height": height},
        "settings": {}, "model": {}, "timings": {}, "num_tiles": 1,
        "boxes": boxes, "scores": scores, "labels": [0] * len(boxes), "categories": {"0": "product"},
    }))


GT_ROWS = [
    ("a.jpg", 10, 10, 60, 90, "object", 640, 480),
    ("a.jpg", 70, 10, 120, 90, "object", 640, 480),
    ("b.jpg", 5, 5, 50, 50, "object", 640, 480),
]


@pytest.mark.parametrize("header", [True, False])
def test_sku_csv_with_and_without_header(tmp_path: Path, header: bool) -> None:
    p = tmp_path / "gt.csv"
    write_sku_csv(p, GT_ROWS, header=header)
    gt = read_ground_truth(p)
    assert list(gt.images) == ["a.jpg", "b.jpg"]
    assert gt.images["a.jpg"].xyxy.tolist() == [[10, 10, 60, 90], [70, 10, 120, 90]]
    assert (gt.images["b.jpg"].width, gt.images["b.jpg"].height) == (640, 480)
    assert gt.categories == ["object"]


def test_our_json_dir_csv_and_coco_results_give_the_same_metrics(tmp_path: Path) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=False)
    preds = {"a.jpg": ([[10, 10, 60, 90], [72, 12, 118, 88], [300, 300, 350, 350]], [0.9, 0.8, 0.95]),
             "b.jpg": ([[5, 5, 50, 50]], [0.7])}
    d = tmp_path / "dets"
    d.mkdir()
    for name, (b, s) in preds.items():
        our_json(d / f"{name[:-4]}.detections.json", name, b, s)
    # what else a batch output folder holds is not read as detections
    (d / "manifest.json").write_text(json.dumps({"schema": "densedet-tile/batch-manifest@1"}))
    (d / "a.coco.json").write_text("[]")
    rows = [(n, *bb, "product", 640, 480, sc) for n, (b, s) in preds.items() for bb, sc in zip(b, s)]
    csvp = tmp_path / "pred.csv"
    write_sku_csv(csvp, rows, header=True, score=True)
    cocop = tmp_path / "pred.coco.json"
    cocop.write_text(json.dumps([{"image_id": n, "category_id": 1, "bbox": [bb[0], bb[1], bb[2] - bb[0], bb[3] - bb[1]], "score": sc}
                                 for n, (b, s) in preds.items() for bb, sc in zip(b, s)]))
    gt = read_ground_truth(gtp)
    results = []
    for src in (d, csvp, cocop):
        pairs, notes = pair_images(gt, read_predictions(src, gt=gt))
        assert any("one class" in n for n in notes)
        results.append(evaluate_boxes(pairs).stats)
    assert results[0] == results[1] == results[2]
    # one false positive scored highest: precision at the first rank is 0 -> AP50 < 1
    assert 0.5 < results[0]["AP50"] < 1.0
    assert results[0]["AR@300"] > 0.5


def test_a_name_with_spaces_around_it_is_one_image_in_every_format(tmp_path: Path) -> None:
    # the CSV reader strips its fields; the JSON and COCO readers must see the same name
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, [(" lead.jpg", 10, 10, 60, 90, "object", 640, 480)], header=False)
    d = tmp_path / "dets"
    d.mkdir()
    our_json(d / " lead.detections.json", " lead.jpg", [[10, 10, 60, 90]], [0.9])
    cocop = tmp_path / "pred.coco.json"
    cocop.write_text(json.dumps([{"image_id": " lead.jpg", "category_id": 1, "bbox": [10, 10, 50, 80], "score": 0.9}]))
    gt = read_ground_truth(gtp)
    for src in (d, cocop):
        pairs, _ = pair_images(gt, read_predictions(src, gt=gt))
        assert evaluate_boxes(pairs).stats["AP50"] == pytest.approx(1.0)


def test_coco_gt_with_numeric_results(tmp_path: Path) -> None:
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps({
        "images": [{"id": 7, "file_name": "x/a.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 3, "name": "product"}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 50, 80], "area": 4000, "iscrowd": 0}],
    }))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 7, "category_id": 3, "bbox": [10, 10, 50, 80], "score": 0.5}]))
    gt = read_ground_truth(gtp)
    pairs, _ = pair_images(gt, read_predictions(res, gt=gt))
    assert evaluate_boxes(pairs).stats["AP"] == pytest.approx(1.0)
    res.write_text(json.dumps([{"image_id": 8, "category_id": 3, "bbox": [10, 10, 50, 80], "score": 0.5}]))
    with pytest.raises(InvalidInputError, match="image_id 8"):
        read_predictions(res, gt=gt)


def test_coco_results_of_a_category_the_single_class_ground_truth_lacks_are_left_out_as_pycocotools_does(
        tmp_path: Path) -> None:
    gtp = tmp_path / "gt.json"
    gt_doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 200}],
        "categories": [{"id": 1, "name": "product"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "area": 2500,
                         "iscrowd": 0},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [100, 100, 50, 50], "area": 2500,
                         "iscrowd": 0}],
    }
    gtp.write_text(json.dumps(gt_doc))
    results = [{"image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50], "score": 0.9},  # another category
               {"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": 0.8}]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    coco = COCO(str(gtp))
    ev = COCOeval(coco, coco.loadRes(str(res)), "bbox")
    ev.evaluate(), ev.accumulate()
    ev.summarize()
    gt = read_ground_truth(gtp)
    pairs, notes = pair_images(gt, read_predictions(res, gt=gt))
    m = evaluate_boxes(pairs)
    assert m.stats["AP50"] == pytest.approx(ev.stats[1]) and m.stats["AP50"] == pytest.approx(0.5, abs=0.01)
    assert any("not scored" in n for n in notes)
    # ids matching none of the ground truth's (our own --format coco, category_id 1, against a GT
    # whose one category has id 3): every result counts as that class, as before
    res.write_text(json.dumps([{**r, "category_id": 9} for r in results]))
    pairs, notes = pair_images(gt, read_predictions(res, gt=gt))
    assert evaluate_boxes(pairs).stats["AP50"] == pytest.approx(1.0) and any("counts as it" in n for n in notes)


# ----------------------------------------------------------------------------- CLI
def test_cli_prints_table_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=True)
    d = tmp_path / "dets"
    d.mkdir()
    our_json(d / "a.detections.json", "a.jpg", [[10, 10, 60, 90], [70, 10, 120, 90]], [0.9, 0.8])
    out = tmp_path / "m.json"
    assert eval_main([str(d), str(gtp), "-o", str(out), "--max-dets", "1,10,400"]) == 0
    captured = capsys.readouterr()
    assert "AR@400" in captured.out and "3 ground-truth boxes" in captured.out
    assert "1 ground-truth image has no predictions" in captured.err and "b.jpg" in captured.err
    doc = json.loads(out.read_text())
    assert doc["schema"] == "densedet-tile/eval@1"
    # b.jpg has no predictions: 2 of 3 objects found, all predictions right
    assert doc["metrics"]["AR@400"] == pytest.approx(2 / 3)
    assert doc["metrics"]["AP50"] == pytest.approx(2 / 3, abs=0.01)


@pytest.mark.parametrize("case", ["unknown_image", "size_mismatch", "bad_row", "missing"])
def test_cli_bad_input_exits_2_with_one_line_and_no_output(tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=False)
    pred = tmp_path / "p.json"
    if case == "unknown_image":
        our_json(pred, "zzz.jpg", [[1, 1, 5, 5]], [0.5])
        want = "zzz.jpg"
    elif case == "size_mismatch":
        our_json(pred, "a.jpg", [[1, 1, 5, 5]], [0.5], width=480, height=640)
        want = "480x640"
    elif case == "bad_row":
        pred = tmp_path / "p.csv"
        pred.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\na.jpg,1,1,oops,5,product,640,480,0.5\n")
        want = "line 2"
    else:
        pred = tmp_path / "nope.json"
        want = "nope.json"
    out = tmp_path / "m.json"
    assert eval_main([str(pred), str(gtp), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and want in err
    assert not out.exists()
    assert list(tmp_path.glob(".m.json.*")) == []


def test_cli_refuses_to_write_its_figures_over_an_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=False)
    pred = tmp_path / "p.json"
    our_json(pred, "a.jpg", [[10, 10, 60, 90]], [0.9])
    before = gtp.read_bytes(), pred.read_bytes()
    for target, name in ((gtp, "ground-truth"), (pred, "predictions")):
        assert eval_main([str(pred), str(gtp), "-o", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and name in err and "overwrite" in err
    assert (gtp.read_bytes(), pred.read_bytes()) == before


def test_cli_usage_error_exits_2() -> None:
    assert eval_main(["--max-dets", "10,1", "a", "b"]) == 2


@pytest.mark.parametrize("extra", [["--limit", "1"], ["--tile", "500"], ["--detector", "torchvision"],
                                   ["--detector-option", "threads=1"]])
def test_compare_only_options_without_compare_are_refused_not_ignored(tmp_path: Path, extra: list,
                                                                      capsys: pytest.CaptureFixture[str],
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=False)
    assert eval_main([str(gtp), str(gtp), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{extra[0]}: only with --compare" in err
    assert eval_main([str(gtp), str(gtp)]) == 0
    (tmp_path / "-preds.csv").write_text(gtp.read_text())  # a path starting with "-", after "--"
    monkeypatch.chdir(tmp_path)
    assert eval_main(["--", "-preds.csv", "gt.csv"]) == 0


# ----------------------------------------------------------------------------- compare
class RecordingDetector:
    """Returns one box per tile covering its middle; records the tile shapes it saw."""

    input_size = None

    def __init__(self) -> None:
        self.shapes: list[tuple[int, int]] = []

    def predict(self, tiles):
        from densedet_tile.types import Detections

        out = []
        for t in tiles:
            h, w = t.shape[:2]
            self.shapes.append((h, w))
            out.append(Detections(np.array([[w * 0.25, h * 0.25, w * 0.75, h * 0.75]]), np.array([0.9])))
        return out


def test_compare_runs_tiled_and_untiled(tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "imgs"
    img.mkdir()
    Image.fromarray(np.zeros((300, 500, 3), np.uint8)).save(img / "a.jpg")
    gtp = tmp_path / "gt.csv"
    # the untiled detector's box for a 500x300 image: [125, 75, 375, 225]
    write_sku_csv(gtp, [("a.jpg", 125, 75, 375, 225, "object", 500, 300)], header=False)
    det = RecordingDetector()
    runs = compare_tiled_untiled([img / "a.jpg"], read_ground_truth(gtp), det, tiling=TileSpec(tile=128, overlap=0.25),
                                 run=RunSpec(device="cpu", batch_size=1))
    assert [r.name for r in runs] == ["tiled", "untiled"]
    assert det.shapes[-1] == (300, 500)  # the whole image in one tile
    assert set(det.shapes[:-1]) == {(128, 128)} and len(det.shapes) > 2
    assert runs[1].metrics.stats["AP"] == pytest.approx(1.0)
    assert runs[0].metrics.stats["AP"] < 0.5
    assert all(r.seconds >= 0 for r in runs)


def test_compare_cli_with_a_real_detector_through_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from densedet_tile.synth.painted_aisles import make_painted_aisle

    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    rows = []
    for i in range(2):
        image, gt = make_painted_aisle(1200, 900, n_products=20, seed=i, small_size=(40, 120), large_size=(150, 260))
        Image.fromarray(image).save(img_dir / f"p{i}.png")
        rows += [(f"p{i}.png", *b, "object", 1200, 900) for b in gt.xyxy.tolist()]
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, rows, header=False)
    out = tmp_path / "cmp.json"
    code = eval_main([str(img_dir), str(gtp), "--compare", "--tile", "384", "--overlap", "0.3", "--device", "cpu",
                      "--detector", "densedet_tile.synth.painted_aisles:PaintedDetector", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "tiled" in text and "untiled" in text
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["runs"]] == ["tiled", "untiled"] and doc["num_images"] == 2
    # the painted detector sees every product whole in the untiled run
    assert doc["runs"][1]["metrics"]["AP50"] > 0.95
    assert doc["runs"][0]["metrics"]["AP50"] > 0.5


def test_csv_image_with_two_sizes_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "gt.csv"
    write_sku_csv(p, [GT_ROWS[0], ("a.jpg", 1, 1, 5, 5, "object", 480, 640)], header=False)
    with pytest.raises(InvalidInputError, match="a.jpg is given as both"):
        read_ground_truth(p)


def test_main_cli_dispatches_eval(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from densedet_tile.cli import main

    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, GT_ROWS, header=False)
    pred = tmp_path / "p.json"
    our_json(pred, "a.jpg", [[10, 10, 60, 90]], [0.9])
    assert main(["eval", str(pred), str(gtp)]) == 0
    assert "AR@300" in capsys.readouterr().out


def test_coco_boxes_are_scored_from_their_own_width_and_height_as_pycocotools_does(tmp_path: Path) -> None:
    # x + w - x is not w in floating point here: from the corners the IoU would be 0.4999999999999997
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 2000, "height": 2000}],
          "categories": [{"id": 1, "name": "product"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [472.42, 1441.06, 30, 20],
                           "area": 600, "iscrowd": 0}]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [482.42, 1441.06, 30, 20], "score": 0.9}]
    gtp, resp = tmp_path / "gt.json", tmp_path / "res.json"
    gtp.write_text(json.dumps(gt))
    resp.write_text(json.dumps(res))
    g = read_ground_truth(gtp)
    pairs, _ = pair_images(g, read_predictions(resp, gt=g))
    assert evaluate_boxes(pairs).stats["AP50"] == pytest.approx(1.0)  # IoU exactly 0.5, as pycocotools sees it


def test_coco_results_by_category_id_against_a_csv_of_several_classes_are_refused(tmp_path: Path) -> None:
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, [("a.jpg", 10, 10, 60, 90, "can", 640, 480), ("a.jpg", 70, 10, 120, 90, "box", 640, 480)],
                  header=True)
    resp = tmp_path / "res.coco.json"
    resp.write_text(json.dumps([{"image_id": "a.jpg", "category_id": 1, "bbox": [10, 10, 50, 80], "score": 0.9}]))
    g = read_ground_truth(gtp)
    with pytest.raises(InvalidInputError, match="category_id only"):
        pair_images(g, read_predictions(resp, gt=g))
    pairs, _ = pair_images(g, read_predictions(resp, gt=g), class_agnostic=True)  # by box alone: fine
    assert evaluate_boxes(pairs).stats["AR@300"] == pytest.approx(0.5)


def test_csv_line_numbers_count_blank_lines_and_two_folders_images_of_one_name_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "p.csv"
    p.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n\na.jpg,1,1,5,5,product,640,480,0.5\n"
                 "\na.jpg,1,1,1O,5,product,640,480,0.5\n")
    with pytest.raises(InvalidInputError, match="line 5: coordinates must be numbers, got '1O'"):
        read_predictions(p)
    g = tmp_path / "gt.csv"
    g.write_text("x/a.jpg,1,1,5,5,product,640,480\ny/a.jpg,2,2,6,6,product,640,480\n")
    with pytest.raises(InvalidInputError, match="'x/a.jpg' and 'y/a.jpg' are both image 'a.jpg'"):
        read_ground_truth(g)


def test_coco_categories_sharing_a_name_are_refused(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
          "categories": [{"id": 1, "name": "bottle"}, {"id": 2, "name": "bottle"}], "annotations": []}
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps(gt))
    with pytest.raises(InvalidInputError, match="two categories are named 'bottle'"):
        read_ground_truth(gtp)
    # one name but for spaces: classes match by their words, so these would merge too
    gt["categories"][1]["name"] = " bottle "
    gtp.write_text(json.dumps(gt))
    with pytest.raises(InvalidInputError, match="named 'bottle' and ' bottle ', one name but for spaces"):
        read_ground_truth(gtp)


# ----------------------------------------------------------------------------- review: CSV line breaks, COCO ids and areas
def _one_result(name: str, boxes: list, scores: list):
    from densedet_tile import Detections
    from densedet_tile.pipeline import ImageResult

    d = Detections(np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32),
                   np.zeros(len(boxes), np.int64))
    return ImageResult(detections=d, name=name, path=None, width=640, height=480, num_tiles=1,
                       settings={}, model={"name": "m", "class_names": ["product"]})


# str.splitlines breaks at each of these, the csv module only at \n and \r outside quotes
@pytest.mark.parametrize("name", ["new\nline.jpg", "line\u2028sep.jpg", "form\x0cfeed.jpg", "rec\x1esep.jpg", "nel\x85.jpg",
                                  "car\rriage.jpg"])
def test_csv_image_name_with_a_line_break_reads_back_and_scores_as_the_json(tmp_path: Path, name: str) -> None:
    from densedet_tile.io import write_csv, write_json

    boxes, scores = [[10, 10, 60, 90], [70, 10, 120, 90], [300, 300, 340, 350]], [0.9, 0.6, 0.8]
    res = _one_result(name, boxes, scores)
    jp, cp = write_json(res, tmp_path / "p.detections.json"), write_csv(res, tmp_path / "p.detections.csv")
    gtp = tmp_path / "gt.csv"
    write_sku_csv(gtp, [(name, 10, 10, 60, 90, "object", 640, 480), (name, 70, 12, 120, 90, "object", 640, 480)],
                  header=False)
    gt = read_ground_truth(gtp)
    assert list(gt.images) == [name]
    from_csv = read_predictions(cp, gt=gt)
    assert list(from_csv.images) == [name]
    np.testing.assert_array_equal(from_csv.images[name].xyxy, np.array(boxes, np.float64))
    stats = [evaluate_boxes(pair_images(gt, read_predictions(p, gt=gt))[0]).stats for p in (jp, cp)]
    assert stats[0] == stats[1]
    assert 0 < stats[0]["AP50"] < 1  # the false positive outscores one true box
    # the CSV the tool writes also serves as ground truth
    assert list(read_ground_truth(cp).images) == [name]


def test_csv_keeps_a_quoted_carriage_return_and_counts_lines_from_where_a_record_starts(tmp_path: Path) -> None:
    p = tmp_path / "gt.csv"
    with p.open("w", newline="") as fh:  # the csv module's own dialect ends lines with \r\n, quoting a \r
        csv.writer(fh).writerows([("car\rriage.jpg", 1, 1, 5, 5, "object", 640, 480),
                                  ("a.jpg", 2, 2, 6, 6, "object", 640, 480)])
    assert list(read_ground_truth(p).images) == ["car\rriage.jpg", "a.jpg"]
    p.write_text('image_name,x1,y1,x2,y2,class,image_width,image_height,score\n'
                 '"two\nlines.jpg",1,1,1O,5,product,640,480,0.5\n', newline="")
    with pytest.raises(InvalidInputError, match="line 2: coordinates must be numbers, got '1O'"):
        read_predictions(p)


def _coco_gt_file(path: Path, area: object = 4000, **ann: object) -> Path:
    a = {"id": 1, "image_id": 7, "category_id": 3, "bbox": [10, 10, 50, 80], "iscrowd": 0, **ann}
    if area is not ...:
        a["area"] = area
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "a.jpg", "width": 640, "height": 480}],
                                "categories": [{"id": 3, "name": "product"}], "annotations": [a]}))
    return path


@pytest.mark.parametrize("area", ["x", None, -1, True, float("nan"), 10 ** 400, [4000]],
                         ids=["str", "null", "negative", "bool", "nan", "huge", "list"])
def test_coco_gt_with_a_bad_area_is_refused_by_the_reader(tmp_path: Path, area: object) -> None:
    gtp = _coco_gt_file(tmp_path / "gt.json", area)
    with pytest.raises(InvalidInputError, match=r"gt\.json: annotation 0 has area .*finite number >= 0") as exc:
        read_ground_truth(gtp)
    assert "\n" not in str(exc.value)


def test_coco_gt_area_taken_as_given_or_from_the_box(tmp_path: Path) -> None:
    assert read_ground_truth(_coco_gt_file(tmp_path / "a.json", 0)).images["a.jpg"].area.tolist() == [0.0]
    assert read_ground_truth(_coco_gt_file(tmp_path / "b.json", 12.5)).images["a.jpg"].area.tolist() == [12.5]
    assert read_ground_truth(_coco_gt_file(tmp_path / "c.json", ...)).images["a.jpg"].area.tolist() == [4000.0]


@pytest.mark.parametrize("area", ["x", None])
@pytest.mark.parametrize("entry", ["eval_main", "main"])
def test_cli_coco_gt_with_a_bad_area_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            area: object, entry: str) -> None:
    from densedet_tile.cli import main

    gtp = _coco_gt_file(tmp_path / "gt.json", area)
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 7, "category_id": 3, "bbox": [10, 10, 50, 80], "score": 0.5}]))
    out = tmp_path / "m.json"
    argv = [str(res), str(gtp), "-o", str(out)]
    code = eval_main(argv) if entry == "eval_main" else main(["eval", *argv])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "gt.json: annotation 0 has area" in err and repr(area) in err
    assert not out.exists() and list(tmp_path.glob(".m.json.*")) == []


def _coco_scene(str_images: bool, str_cats: bool) -> tuple[dict, list]:
    """A small COCO dataset and results: 4 images (one without predictions), 2 classes, no
    tied scores (so image order cannot matter). Ids are ints or their string forms."""
    rng = np.random.default_rng(3)
    img_ids = [107, 114, 121, 128]
    iid = (lambda i: f"im{i}") if str_images else (lambda i: i)
    cid = (lambda c: f"c{c}") if str_cats else (lambda c: c)
    gt = {"images": [{"id": iid(i), "file_name": f"d/img_{i}.jpg", "width": 800, "height": 600} for i in img_ids],
          "categories": [{"id": cid(c), "name": f"cat{c}"} for c in (3, 5)], "annotations": []}
    res = []
    for k, i in enumerate(img_ids):
        for _ in range(12):
            w, h = rng.uniform(5, 150, 2)
            x, y = rng.uniform(0, 600), rng.uniform(0, 400)
            c = int(rng.choice([3, 5]))
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": iid(i), "category_id": cid(c),
                                      "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
            if k < 3 and rng.random() < 0.8:
                j = rng.normal(0, 0.1, 4) * [w, h, w, h]
                res.append({"image_id": iid(i), "category_id": cid(c if rng.random() < 0.85 else 8 - c),
                            "bbox": [x + j[0], y + j[1], w + abs(j[2]), h + abs(j[3])], "score": 0.0})
    for r, s in zip(res, rng.permutation(len(res))):
        r["score"] = float(s + 1) / (len(res) + 1)
    return gt, res


def _ours_and_pycoco(tmp_path: Path, tag: str, gt: dict, res: list) -> tuple[list[float], list[float]]:
    gtp, resp = tmp_path / f"gt_{tag}.json", tmp_path / f"res_{tag}.json"
    gtp.write_text(json.dumps(gt))
    resp.write_text(json.dumps(res))
    g = read_ground_truth(gtp)
    ours = evaluate_boxes(pair_images(g, read_predictions(resp, gt=g))[0], max_dets=(1, 10, 100)).coco_stats()
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO(str(gtp))
        ev = COCOeval(cg, cg.loadRes(str(resp)), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ours, list(ev.stats)


def test_coco_string_ids_score_as_integer_ids_and_as_pycocotools(tmp_path: Path) -> None:
    base, ref = _ours_and_pycoco(tmp_path, "int", *_coco_scene(False, False))
    np.testing.assert_allclose(base, ref, atol=1e-6, rtol=0)
    assert 0.1 < base[0] < base[1] < 0.95  # AP, AP50: neither trivial
    for str_cats in (False, True):
        ours, ref = _ours_and_pycoco(tmp_path, f"str{str_cats}", *_coco_scene(True, str_cats))
        np.testing.assert_allclose(ours, ref, atol=1e-6, rtol=0)
        np.testing.assert_allclose(ours, base, atol=1e-6, rtol=0)
    # a string id is looked up first as an id, then as a file name
    gt, res = _coco_scene(True, False)
    by_name = [dict(r, image_id=f"img_{r['image_id'][2:]}.jpg") for r in res]
    np.testing.assert_allclose(_ours_and_pycoco(tmp_path, "name", gt, res)[0], base, atol=1e-6, rtol=0)
    gtp, resp = tmp_path / "gt_name.json", tmp_path / "res_byname.json"
    resp.write_text(json.dumps(by_name))
    g = read_ground_truth(gtp)
    stats = evaluate_boxes(pair_images(g, read_predictions(resp, gt=g))[0], max_dets=(1, 10, 100)).coco_stats()
    np.testing.assert_allclose(stats, base, atol=1e-6, rtol=0)


def test_coco_string_id_that_looks_numeric_stays_a_string(tmp_path: Path) -> None:
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps({
        "images": [{"id": "12", "file_name": "a.jpg", "width": 640, "height": 480},
                   {"id": 12, "file_name": "b.jpg", "width": 640, "height": 480}],
        "categories": [{"id": 3, "name": "product"}],
        "annotations": [{"id": 1, "image_id": "12", "category_id": 3, "bbox": [10, 10, 50, 80], "area": 4000, "iscrowd": 0},
                        {"id": 2, "image_id": 12, "category_id": 3, "bbox": [100, 10, 50, 80], "area": 4000, "iscrowd": 0}],
    }))
    g = read_ground_truth(gtp)
    assert g.coco_images == {12: "b.jpg", "12": "a.jpg"}
    assert list(g.images) == ["b.jpg", "a.jpg"]  # integer ids first, as a sort of int and str ids cannot say
    assert g.images["a.jpg"].xyxy.tolist() == [[10, 10, 60, 90]]
    assert g.images["b.jpg"].xyxy.tolist() == [[100, 10, 150, 90]]
    resp = tmp_path / "res.json"
    resp.write_text(json.dumps([{"image_id": "12", "category_id": 3, "bbox": [10, 10, 50, 80], "score": 0.9}]))
    pred = read_predictions(resp, gt=g)
    assert list(pred.images) == ["a.jpg"]
    pairs, _ = pair_images(g, pred)
    assert evaluate_boxes(pairs).stats["AR@300"] == pytest.approx(0.5)  # a.jpg found, b.jpg missed
    # an id the ground truth only has as a string is not taken for the integer
    gtp.write_text(json.dumps({"images": [{"id": "12", "file_name": "a.jpg"}], "categories": [{"id": 3, "name": "p"}],
                               "annotations": []}))
    g = read_ground_truth(gtp)
    resp.write_text(json.dumps([{"image_id": 12, "category_id": 3, "bbox": [10, 10, 50, 80], "score": 0.9}]))
    with pytest.raises(InvalidInputError, match="refers to image_id 12, which the ground truth does not have .*'12'"):
        read_predictions(resp, gt=g)


@pytest.mark.parametrize("images, want", [
    ([{"id": True, "file_name": "a.jpg"}], "image 0 of 'images' has id True"),
    ([{"id": 1.5, "file_name": "a.jpg"}], "image 0 of 'images' has id 1.5"),
    ([{"id": None, "file_name": "a.jpg"}], "image 0 of 'images' has id None"),
    ([{"file_name": "a.jpg"}], "image 0 of 'images' is not an object with an 'id'"),
    ({"1": {"file_name": "a.jpg"}}, "COCO 'images' must be a list"),
])
def test_coco_gt_with_bad_image_ids_is_refused(tmp_path: Path, images: object, want: str) -> None:
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps({"images": images, "categories": [{"id": 1, "name": "p"}], "annotations": []}))
    with pytest.raises(InvalidInputError, match=re.escape(f"gt.json: {want}")):
        read_ground_truth(gtp)


def test_cli_records_the_class_agnostic_setting_it_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = tmp_path / "one.csv"
    write_sku_csv(one, GT_ROWS, header=False)  # a single class: scored class-agnostically unasked
    two = tmp_path / "two.csv"
    # (the predictions' class among them: of none of its classes, nothing could be scored)
    write_sku_csv(two, [GT_ROWS[0], ("b.jpg", 5, 5, 50, 50, "product", 640, 480)], header=False)
    pred = tmp_path / "p.json"
    our_json(pred, "a.jpg", [[10, 10, 60, 90]], [0.9])
    for gtp, extra, want in ((one, [], True), (two, [], False), (two, ["--class-agnostic"], True)):
        out = tmp_path / f"m_{gtp.stem}_{len(extra)}.json"
        assert eval_main([str(pred), str(gtp), "-o", str(out), *extra]) == 0
        assert json.loads(out.read_text())["settings"]["class_agnostic"] is want
    capsys.readouterr()
