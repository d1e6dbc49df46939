"""The evaluator works through its data in chunks bounded by ``chunk_elems``: blocks of
(image, class) are matched a chunk at a time and each class's precision/recall curve is
accumulated a chunk of detections at a time. The size of the chunks must never change a
figure: a budget so small that every block and every detection is its own chunk gives the
same arrays, bit for bit, as the default, and both equal pycocotools."""

from __future__ import annotations


import numpy as np
import pytest

from densedet_tile.eval import EvalImage, evaluate_boxes
from densedet_tile.eval.coco import COCO_REC_THRS, _tp_needed

pytest.importorskip("pycocotools")
from test_evaluate import pycoco_eval  # noqa: E402

NCAT = 5


def _scene(seed: int) -> list[EvalImage]:
    """Images of several classes with crowd regions, scores tied (one decimal), detections that
    are exact copies of a ground truth and of each other, ground truths annotated twice (equal
    IoU with both), detections of a class no ground truth has, an empty image, one with ground
    truth only, one with detections only, and one much larger image (a bucket of its own)."""
    rng = np.random.default_rng(seed)
    ims = []
    for i in range(14):
        g = int(rng.integers(0, 45)) if i != 3 else 0
        d = int(rng.integers(0, 80)) if i != 5 else 0
        if i == 9:  # the large one
            g, d = 400, 520
        xy = rng.uniform(0, 600, (g, 2))
        gt = np.column_stack([xy, xy + rng.uniform(4, 140, (g, 2))])
        gl = rng.integers(0, NCAT, g)
        if g > 4:  # two boxes annotated twice
            gt[1], gl[1] = gt[0], gl[0]
            gt[3] = gt[2]
        src = rng.integers(0, max(g, 1), d)
        near = gt[src] + rng.normal(0, 5, (d, 4)) if g else np.zeros((d, 4))
        rxy = rng.uniform(0, 600, (d, 2))
        far = np.column_stack([rxy, rxy + rng.uniform(4, 140, (d, 2))])
        use = (rng.random(d) < 0.8) if g else np.zeros(d, bool)
        dt = np.where(use[:, None], near, far)
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 1.0)
        dl = np.where(use, gl[src] if g else 0, rng.integers(0, NCAT + 1, d))  # NCAT: no ground truth
        if g and d > 3:
            dt[0] = gt[src[0]]
            dt[1] = dt[0]
            dl[1] = dl[0]
        scores = np.round(rng.random(d), 1)
        crowd = rng.random(g) < 0.08
        ims.append(EvalImage(f"im{i:02d}.jpg", gt, gl, dt, scores, dl, gt_crowd=crowd))
    return ims


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (3, 7, 25), (2, 2, 600)])
def test_tiny_chunks_give_the_figures_of_one_chunk_and_of_pycocotools(seed: int, max_dets: tuple[int, ...]) -> None:
    ims = _scene(seed)
    whole = evaluate_boxes(ims, max_dets=max_dets)
    ref = pycoco_eval(ims, NCAT, max_dets)
    kept = list(whole.categories)  # the class without ground truth is no category
    np.testing.assert_allclose(whole.precision, ref.eval["precision"][:, :, kept], atol=1e-12, rtol=0)
    np.testing.assert_allclose(whole.recall, ref.eval["recall"][:, kept], atol=1e-12, rtol=0)
    # 1: every block matched alone, every detection accumulated alone; 700: a few blocks per
    # chunk and chunks of several detections, so recall points fall inside chunks
    for chunk in (1, 700):
        for agnostic in (False, True):
            ref_run = whole if not agnostic else evaluate_boxes(ims, max_dets=max_dets, class_agnostic=True)
            got = evaluate_boxes(ims, max_dets=max_dets, chunk_elems=chunk, class_agnostic=agnostic)
            assert np.array_equal(got.precision, ref_run.precision), (chunk, agnostic)
            assert np.array_equal(got.recall, ref_run.recall), (chunk, agnostic)
            assert got.stats == ref_run.stats


def test_one_class_of_many_detections_accumulated_across_chunks_equals_pycocotools() -> None:
    # one class, detections of many images pooled: the precision envelope and the recall points
    # are carried from chunk to chunk
    ims = [im for s in (3, 4) for im in _scene(s)]
    ims = [EvalImage(im.name + str(i), im.gt_xyxy, np.zeros(len(im.gt_labels), int), im.dt_xyxy, im.dt_scores,
                     np.zeros(len(im.dt_labels), int), gt_crowd=im.gt_crowd) for i, im in enumerate(ims)]
    md = (1, 10, 300)
    ref = pycoco_eval(ims, NCAT, md)
    for chunk in (4_000_000, 3000, 41, 1):
        got = evaluate_boxes(ims, max_dets=md, chunk_elems=chunk)
        np.testing.assert_allclose(got.precision, ref.eval["precision"][:, :, :1], atol=1e-12, rtol=0)
        np.testing.assert_allclose(got.recall, ref.eval["recall"][:, :1], atol=1e-12, rtol=0)


def test_true_positives_needed_for_each_recall_point_are_where_searchsorted_finds_them() -> None:
    # the accumulation reads each recall point at the first detection whose true-positive count
    # reaches _tp_needed; that must be pycocotools' searchsorted of the recall (tp / npig)
    npig = np.arange(1, 3001)
    need = _tp_needed(npig)
    for n, row in zip(npig.tolist(), need):
        recall = np.arange(n + 1, dtype=np.float64) / n
        assert np.array_equal(row, np.searchsorted(recall, COCO_REC_THRS, side="left")), n
