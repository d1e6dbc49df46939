"""Speed of the vectorised COCO evaluator on dense shelves, next to pycocotools.

    python scripts/bench_eval.py [--images 500] [--boxes 700] [--max-det 400] [--ref-images 4]

Builds ``--images`` synthetic shelves of ``--boxes`` ground-truth boxes each, with jittered
detections (a few missed, a few false), times :func:`densedet_tile.eval.evaluate_boxes` on all
of them, then times pycocotools (if installed) on the first ``--ref-images`` and checks the two
agree there. Numbers for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np

from densedet_tile.eval import EvalImage, evaluate_boxes


def shelves(n: int, boxes: int, seed: int = 0) -> list[EvalImage]:
    rng = np.random.default_rng(seed)
    out = []
    cols = int(np.ceil(np.sqrt(boxes * 2)))
    for i in range(n):
        k = np.arange(boxes)
        x = (k % cols) * 42.0 + rng.uniform(0, 3, boxes)
        y = (k // cols) * 95.0 + rng.uniform(0, 3, boxes)
        gt = np.column_stack([x, y, x + rng.uniform(30, 40, boxes), y + rng.uniform(70, 90, boxes)])
        keep = rng.random(boxes) > 0.05
        dt = gt[keep] + rng.normal(0, 3, (int(keep.sum()), 4))
        fp = gt[rng.integers(0, boxes, boxes // 20)] + rng.normal(0, 25, (boxes // 20, 4))
        dt = np.concatenate([dt, fp])
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 1)
        out.append(EvalImage(f"s{i}.jpg", gt, np.zeros(boxes, int), dt, rng.random(len(dt)), np.zeros(len(dt), int)))
    return out


def pycoco(ims: list[EvalImage], max_dets: tuple[int, ...]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = {"images": [{"id": i + 1} for i in range(len(ims))], "categories": [{"id": 1}], "annotations": []}
    res = []
    for i, im in enumerate(ims):
        for b in im.gt_xyxy:
            w, h = b[2] - b[0], b[3] - b[1]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "image_id": i + 1, "category_id": 1,
                                      "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0})
        for b, s in zip(im.dt_xyxy, im.dt_scores):
            res.append({"image_id": i + 1, "category_id": 1, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "score": float(s)})
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(res), "bbox")
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    return ev


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=500)
    p.add_argument("--boxes", type=int, default=700)
    p.add_argument("--max-det", type=int, default=400)
    p.add_argument("--ref-images", type=int, default=4)
    args = p.parse_args()
    md = (1, 10, args.max_det)
    ims = shelves(args.images, args.boxes)
    t = time.perf_counter()
    m = evaluate_boxes(ims, max_dets=md)
    ours = time.perf_counter() - t
    print(f"evaluate_boxes: {args.images} images x {args.boxes} boxes, maxDets {md}: {ours:.2f} s "
          f"({1e3 * ours / args.images:.1f} ms/image); AP {m.stats['AP']:.4f} AR@{args.max_det} {m.stats[f'AR@{args.max_det}']:.4f}")
    if args.ref_images:
        import importlib.util

        if importlib.util.find_spec("pycocotools") is None:
            print("pycocotools not installed: no reference timing")
            return
        sub = ims[: args.ref_images]
        t = time.perf_counter()
        ev = pycoco(sub, md)
        ref = time.perf_counter() - t
        t = time.perf_counter()
        m2 = evaluate_boxes(sub, max_dets=md)
        ours2 = time.perf_counter() - t
        diff = max(np.abs(m2.precision - ev.eval["precision"]).max(), np.abs(m2.recall - ev.eval["recall"]).max())
        print(f"pycocotools on {len(sub)} images: {ref:.2f} s ({ref / len(sub):.2f} s/image); ours on the same: "
              f"{ours2:.3f} s; max |difference| of precision/recall arrays {diff:.2e}")


if __name__ == "__main__":
    main()
