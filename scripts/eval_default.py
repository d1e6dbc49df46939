#!/usr/bin/env python
"""Evaluate the default detector: COCO AP on a generated held-out set, CPU speed, real-photo previews.

Held-out accuracy (through the tiled engine ``dt.detect`` at tile 1280 / overlap 0.2):

    python scripts/make_shelves.py --out data/shelves_val --n 50 --seed 1000
    python scripts/eval_default.py --data data/shelves_val --out eval.json

prints COCO AP@[.5:.95], AP50, AP75 (pycocotools, maxDets 400, boxes at score >= 0.05) and
precision / recall at IoU 0.5 at the shipped score threshold, plus megapixels per second of the
whole default path (reading excluded, detector at its default threshold).

Real photos (no labels: draws previews for counting by eye; box colours: green score >= 0.5,
yellow 0.4-0.5, red below 0.4):

    python scripts/eval_default.py --real /work/shared/real-shelves/*.jpg --previews previews/

``--weights`` evaluates another weights file instead of the packaged ones: a ``.pt`` checkpoint
(torch) or an ``.onnx`` export (ONNX Runtime); ``--runtime`` forces one (default: the detector's
own rule, ONNX Runtime on the CPU for the packaged weights). ``--threads`` sets the CPU threads.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.detector.builtin import load_default  # noqa: E402
from densedet_tile.types import Detections  # noqa: E402

_RUNTIME = {"runtime": "auto", "threads": None}


def _load_detector(weights: str | None, score_thr: float | None):
    return load_default(device="cpu", score_thr=score_thr, weights=weights, runtime=_RUNTIME["runtime"],
                        threads=_RUNTIME["threads"])


def run_detect(img: np.ndarray, det, tile: int, overlap: float) -> Detections:
    import densedet_tile as dt

    return dt.detect(img, det, tile=tile, overlap=overlap)


def detect_at(img: np.ndarray, det, tile: int, overlap: float, thresholds: list[float]) -> dict[float, Detections]:
    """The image's boxes at each score threshold, as ``dt.detect`` with the detector at that
    threshold gives them: the network runs once (``det`` keeps boxes down to the lowest
    threshold) and each threshold is merged on its own (``eval_real.detect_at_thresholds``),
    since the seam merge looks at the other tiles' boxes."""
    import densedet_tile as dt

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_real import detect_at_thresholds

    with dt.open_image(img) as src:
        return detect_at_thresholds(src, det, thresholds, tile=tile, overlap=overlap)[0]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix between (N,4) and (M,4) boxes of one image."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    aa = np.prod(a[:, 2:] - a[:, :2], axis=1)
    ab = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(aa[:, None] + ab[None, :] - inter, 1e-9)


def match_counts(pred: np.ndarray, scores: np.ndarray, gt: np.ndarray, iou_thr: float = 0.5) -> tuple[int, int, int]:
    """Greedy score-ordered matching; returns (true positives, false positives, missed)."""
    if len(pred) == 0:
        return 0, 0, len(gt)
    if len(gt) == 0:
        return 0, len(pred), 0
    order = np.argsort(-scores)
    iou = _iou(pred[order], gt)
    used = np.zeros(len(gt), bool)
    tp = 0
    for i in range(len(order)):
        cand = np.where(~used & (iou[i] >= iou_thr), iou[i], -1.0)
        j = int(cand.argmax())
        if cand[j] >= iou_thr:
            used[j] = True
            tp += 1
    return tp, len(pred) - tp, int((~used).sum())


def coco_ap(gts: dict[str, np.ndarray], dets: dict[str, tuple[np.ndarray, np.ndarray]], sizes: dict[str, tuple[int, int]]):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, res = [], [], []
    aid = 1
    for k, name in enumerate(sorted(gts)):
        w, h = sizes[name]
        images.append({"id": k + 1, "file_name": name, "width": w, "height": h})
        for b in gts[name]:
            anns.append({"id": aid, "image_id": k + 1, "category_id": 1, "iscrowd": 0,
                         "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                         "area": float((b[2] - b[0]) * (b[3] - b[1]))})
            aid += 1
        boxes, scores = dets[name]
        for b, s in zip(boxes, scores):
            res.append({"image_id": k + 1, "category_id": 1, "score": float(s),
                        "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "product"}]}
    gt.createIndex()
    dt_ = gt.loadRes(res) if res else COCO()
    ev = COCOeval(gt, dt_, "bbox")
    ev.params.maxDets = [1, 100, 400]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    # pycocotools' summary line for AP@[.5:.95] is hard-wired to maxDets=100, which truncates
    # dense shelves: read every figure at maxDets=400 from the precision/recall arrays instead.
    prec = ev.eval["precision"][:, :, 0, 0, 2]  # (iou, recall, class, area=all, maxDets=400)
    rec = ev.eval["recall"][:, 0, 0, 2]

    def _mean(a: np.ndarray) -> float:
        v = a[a > -1]
        return float(v.mean()) if v.size else -1.0

    return {"AP": _mean(prec), "AP50": _mean(prec[0]), "AP75": _mean(prec[5]), "AR400": _mean(rec)}


def evaluate(args) -> dict:
    data = Path(args.data)
    gts: dict[str, list] = defaultdict(list)
    sizes: dict[str, tuple[int, int]] = {}
    with (data / "annotations.csv").open() as fh:
        for row in csv.DictReader(fh):
            gts[row["image_name"]].append([float(row[k]) for k in ("x1", "y1", "x2", "y2")])
            sizes[row["image_name"]] = (int(row["image_width"]), int(row["image_height"]))
    names = sorted(gts)[: args.limit] if args.limit is not None else sorted(gts)
    gt_arr = {n: np.asarray(gts[n], np.float32) for n in names}
    det_low = _load_detector(args.weights, 0.05)
    det_def = _load_detector(args.weights, None)
    thresholds = sorted({0.2, 0.3, 0.4, 0.45, 0.5, det_def.score_thr})
    dets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    counts = {t: np.zeros(3, int) for t in thresholds}
    for i, name in enumerate(names):
        img = np.asarray(Image.open(data / "images" / name).convert("RGB"))
        by_thr = detect_at(img, det_low, args.tile, args.overlap, [0.05, *thresholds])
        d = by_thr[0.05]
        dets[name] = (np.array(d.xyxy), np.array(d.scores))
        for t in thresholds:
            counts[t] += match_counts(np.array(by_thr[t].xyxy), np.array(by_thr[t].scores), gt_arr[name])
        c = counts[det_def.score_thr]
        print(f"{i + 1}/{len(names)} {name}: gt {len(gt_arr[name])} det@0.05 {len(d)} "
              f"(tp/fp/miss at {det_def.score_thr} so far {c.tolist()})", flush=True)
    ap = coco_ap(gt_arr, dets, {n: sizes[n] for n in names})
    # speed of the default path (default threshold) on the first few images, reading excluded
    mp, secs = 0.0, 0.0
    for name in names[: args.speed_images]:
        img = np.asarray(Image.open(data / "images" / name).convert("RGB"))
        t0 = time.perf_counter()
        run_detect(img, det_def, args.tile, args.overlap)
        secs += time.perf_counter() - t0
        mp += img.shape[0] * img.shape[1] / 1e6
    pr = {}
    for t, (tp, fp, miss) in counts.items():
        pr[f"{t:.2f}"] = {"precision@0.5": round(tp / max(tp + fp, 1), 4), "recall@0.5": round(tp / max(tp + miss, 1), 4),
                          "tp": int(tp), "fp": int(fp), "missed": int(miss)}
    out = {**ap, "images": len(names), "gt_boxes": int(sum(len(v) for v in gt_arr.values())),
           "score_thr_default": det_def.score_thr, "pr_by_threshold": pr,
           "cpu_megapixels_per_s": mp / max(secs, 1e-9), "seconds_per_image": secs / max(1, min(len(names), args.speed_images)),
           "runtime": det_def.runtime, "threads": det_def.info.get("threads"), "tile": args.tile, "overlap": args.overlap,
           "weights": args.weights or "package", "weights_info": det_def.info}
    return out


def previews(args) -> dict:
    det = _load_detector(args.weights, args.score_thr)
    outdir = Path(args.previews)
    outdir.mkdir(parents=True, exist_ok=True)
    report = {}
    for path in args.real:
        img = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
        t = time.perf_counter()
        d = run_detect(img, det, args.tile, args.overlap)
        dt_s = time.perf_counter() - t
        im = Image.fromarray(img)
        draw = ImageDraw.Draw(im)
        lw = max(2, img.shape[1] // 800)
        for b, s in zip(np.array(d.xyxy), np.array(d.scores)):
            colour = (0, 255, 0) if s >= 0.5 else (255, 200, 0) if s >= 0.4 else (255, 0, 0)
            draw.rectangle([float(v) for v in b], outline=colour, width=lw)
        im.thumbnail((args.preview_side, args.preview_side))
        stem = Path(path).stem
        im.save(outdir / f"{stem}.png")
        sc = np.array(d.scores)
        report[stem] = {"boxes": len(d), "boxes>=0.4": int((sc >= 0.4).sum()), "boxes>=0.5": int((sc >= 0.5).sum()),
                        "seconds": round(dt_s, 2), "size": [img.shape[1], img.shape[0]]}
        print(stem, report[stem], flush=True)
    return report


def check_args(args) -> None:
    """Refuse, in one line and before the evaluation, options that cannot work."""
    import os
    import tempfile

    from densedet_tile.errors import InvalidInputError

    if args.limit is not None and args.limit < 1:
        raise InvalidInputError(f"--limit {args.limit}: must be at least 1 (leave it out to evaluate every image)")
    if args.speed_images < 0:
        raise InvalidInputError(f"--speed-images {args.speed_images}: must be 0 or more")
    if args.out:
        out = Path(args.out)
        folder = out.parent
        if out.is_dir():
            raise InvalidInputError(f"--out {out}: is a folder; give the path of the JSON file to write")
        if not folder.is_dir():
            raise InvalidInputError(f"--out {out}: the folder {folder} does not exist")
        try:  # the JSON is written atomically (a temporary beside it, renamed): probe the same way
            fd, probe = tempfile.mkstemp(prefix=".eval-write-test.", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InvalidInputError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="dataset folder written by scripts/make_shelves.py")
    ap.add_argument("--real", nargs="*", help="real photos to draw previews for")
    ap.add_argument("--previews", default="previews")
    ap.add_argument("--preview-side", type=int, default=1400)
    ap.add_argument("--weights", default=None, help="a .pt checkpoint or an .onnx export (default: packaged)")
    ap.add_argument("--runtime", default="auto", choices=["auto", "onnxruntime", "torch"])
    ap.add_argument("--threads", type=int, default=None, help="CPU threads of the runtime")
    ap.add_argument("--score-thr", type=float, default=None, help="threshold for previews (default: shipped)")
    ap.add_argument("--tile", type=int, default=1280)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--speed-images", type=int, default=5, help="images timed at the default threshold")
    ap.add_argument("--out", default=None, help="write the metrics as JSON here")
    args = ap.parse_args(argv)
    check_args(args)
    if args.data:
        import importlib.util

        from densedet_tile.errors import InvalidInputError

        if importlib.util.find_spec("pycocotools") is None:  # (asked before the detection pass, not after it)
            raise InvalidInputError("--data is scored with pycocotools, which is not installed: "
                                    "pip install 'densedet-tile[train]'")
    _RUNTIME.update(runtime=args.runtime, threads=args.threads)
    result: dict = {}
    if args.data:
        result["heldout"] = evaluate(args)
    if args.real:
        result["real"] = previews(args)
    if not result:
        ap.error("give --data and/or --real")
    print(json.dumps(result, indent=1, default=str))
    if args.out:
        from densedet_tile.io import atomic_write

        atomic_write(args.out, json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "eval_default"))
