"""``densedet-tile eval``: COCO AP/AR of predictions against ground truth, and ``--compare``.

Usage::

    densedet-tile eval PRED GT [--max-dets 1,10,300] [--class-agnostic] [-o metrics.json]
    densedet-tile eval --compare IMAGE_DIR GT [--tile 1280 --overlap 0.2] [detector options]

Exit status 0 on success, 2 for bad usage or input (one line on stderr naming the file and
the problem; nothing written), 1 when the detector fails during ``--compare``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DensedetError, InvalidInputError
from .coco import DEFAULT_MAX_DETS, CocoMetrics, EvalImage, evaluate_boxes
from .formats import BoxSet, ImageBoxes, image_key, read_ground_truth, read_predictions
from .output import write_atomic

__all__ = ["eval_main", "pair_images", "compare_tiled_untiled", "CompareRun", "format_table", "IMAGE_SUFFIXES"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp")
_TABLE_KEYS = ("AP", "AP50", "AP75", "AR")


def pair_images(
    gt: BoxSet,
    pred: BoxSet,
    *,
    class_agnostic: bool | None = None,
    check_sizes: bool = True,
) -> tuple[list[EvalImage], list[str]]:
    """Match predictions to ground-truth images by file name and map class names to ids.

    Returns the :class:`EvalImage` list (ground-truth order; an image without predictions has
    none) and notes worth telling the user. ``class_agnostic=None`` means: agnostic when the
    ground truth has a single class (SKU-110K's ``object`` versus our ``product``), else classes
    are matched by name. Raises :class:`InvalidInputError` for predictions of an image the
    ground truth lacks, or (``check_sizes``) an image whose width/height differ between the two.
    """
    notes: list[str] = []
    extra = [k for k in pred.images if k not in gt.images]
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        raise InvalidInputError(
            f"{pred.source}: predictions for image {extra[0]}{more}, which is not in the ground truth {gt.source}"
        )
    if check_sizes:
        for k, p in pred.images.items():
            g = gt.images[k]
            if None not in (p.width, p.height, g.width, g.height) and (p.width, p.height) != (g.width, g.height):
                raise InvalidInputError(
                    f"{pred.source}: image {k} is {p.width}x{p.height} in the predictions but {g.width}x{g.height} "
                    f"in the ground truth {gt.source} (EXIF rotation or resizing?); pass --ignore-size to evaluate anyway"
                )
    gt_classes = list(dict.fromkeys(list(gt.categories) + [str(c) for im in gt.images.values() for c in im.classes]))
    agnostic = (len(gt_classes) <= 1) if class_agnostic is None else class_agnostic
    if agnostic and class_agnostic is None and gt_classes:
        notes.append(f"ground truth has one class ({gt_classes[0]!r}): every prediction counts as it")
    ids = {c: i for i, c in enumerate(gt_classes)}
    dropped = 0
    out: list[EvalImage] = []
    for k, g in gt.images.items():
        p = pred.images.get(k)
        gl = np.array([ids[str(c)] for c in g.classes], dtype=np.int64)
        if p is None:
            dx, ds, dl = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        elif agnostic:
            dx, ds, dl = p.xyxy, p.scores, np.zeros(len(p.xyxy), np.int64)
        else:
            lab = np.array([ids.get(str(c), -1) for c in p.classes], dtype=np.int64)
            known = lab >= 0
            dropped += int((~known).sum())
            dx, ds, dl = p.xyxy[known], p.scores[known], lab[known]
        if agnostic:
            gl = np.zeros_like(gl)
        out.append(EvalImage(k, g.xyxy, gl, dx, ds, dl, gt_area=g.area, gt_crowd=g.crowd))
    if dropped:
        notes.append(f"{dropped} predictions have a class the ground truth does not know and were not scored")
    if not pred.scored:
        notes.append(f"{pred.source} has no score column: every prediction scored 1.0, so AP follows file order")
    return out, notes


def _metrics_json(m: CocoMetrics) -> dict[str, Any]:
    return {k: round(float(v), 6) for k, v in m.stats.items()}


def format_table(rows: Sequence[tuple[str, dict[str, float], float | None]], max_det: int) -> str:
    """Plain-text table: one row per (name, stats, seconds)."""
    head = ["run", "AP", "AP50", "AP75", f"AR@{max_det}", "seconds"]
    lines = [head]
    for name, stats, secs in rows:
        lines.append([
            name,
            *(f"{stats[k]:.4f}" if stats.get(k, -1) >= 0 else "n/a" for k in ("AP", "AP50", "AP75", f"AR@{max_det}")),
            "" if secs is None else f"{secs:.2f}",
        ])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines)


# ------------------------------------------------------------------------------ compare
@dataclass(frozen=True)
class CompareRun:
    """One way of running the detector over the folder and what it scored."""

    name: str
    tile: int | None
    overlap: float | None
    seconds: float
    metrics: CocoMetrics


def compare_tiled_untiled(
    images: Sequence[str | Path],
    gt: BoxSet,
    detector: Any,
    *,
    tile: int = 1280,
    overlap: float = 0.2,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    class_agnostic: bool | None = None,
    detect_kwargs: dict[str, Any] | None = None,
) -> list[CompareRun]:
    """Run ``detector`` over ``images`` tiled (``tile``/``overlap``) and untiled (one tile as large
    as the image, which the engine resizes to the detector's ``input_size``), evaluate both
    against ``gt`` and return the two runs. Seconds are detection wall time summed over images.
    """
    from ..pipeline import detect
    from ..tiler.readers import open_image

    kw = dict(detect_kwargs or {})
    runs: dict[str, dict[str, ImageBoxes]] = {"tiled": {}, "untiled": {}}
    secs = {"tiled": 0.0, "untiled": 0.0}
    for path in images:
        key = image_key(Path(path).name)
        with open_image(path) as src:
            w, h = src.width, src.height
            for name, t, ov in (("tiled", tile, overlap), ("untiled", max(w, h, 32), 0.0)):
                t0 = time.perf_counter()
                det = detect(src, detector, tile=t, overlap=ov, **kw)
                secs[name] += time.perf_counter() - t0
                cls = np.array([str(int(v)) for v in det.labels], dtype=object)
                runs[name][key] = ImageBoxes(key, w, h, det.xyxy.astype(np.float64), det.scores.astype(np.float64), cls)
    out = []
    for name in ("tiled", "untiled"):
        pred = BoxSet(images=runs[name], source=f"{name} run", kind="run")
        agn = class_agnostic
        if agn is None and len(gt.categories) > 1:
            # detector labels are 0-based indices into the ground truth's categories
            for im in pred.images.values():
                im.classes = np.array([gt.categories[int(c)] if int(c) < len(gt.categories) else c for c in im.classes], dtype=object)
        sub = BoxSet(images={k: gt.images[k] for k in runs[name]}, categories=gt.categories, source=gt.source, kind=gt.kind)
        pairs, _ = pair_images(sub, pred, class_agnostic=agn)
        m = evaluate_boxes(pairs, max_dets=max_dets)
        out.append(CompareRun(name, tile if name == "tiled" else None, overlap if name == "tiled" else None, secs[name], m))
    return out


# ------------------------------------------------------------------------------ CLI
def _max_dets(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    if not vals or any(v < 1 for v in vals) or list(vals) != sorted(set(vals)):
        raise argparse.ArgumentTypeError(f"expected increasing positive integers such as 1,10,300, got {text!r}")
    return vals


def build_parser() -> argparse.ArgumentParser:
    from ..cli import add_detector_options, add_tiling_options

    p = argparse.ArgumentParser(
        prog="densedet-tile eval",
        description="COCO AP@[.5:.95], AP50, AP75 and AR of predictions against ground truth. "
        "PRED: our detections JSON, a folder of them, our CSV (optional 'score' column) or COCO results. "
        "GT: SKU-110K CSV (image_name,x1,y1,x2,y2,class,image_width,image_height; header optional) or COCO JSON. "
        "With --compare, PRED is a folder of images run through the detector tiled and untiled.",
    )
    p.add_argument("pred", metavar="PRED", help="predictions file or folder (with --compare: a folder of images)")
    p.add_argument("gt", metavar="GT", help="ground truth: SKU-110K CSV or COCO JSON")
    p.add_argument("--max-dets", type=_max_dets, default=DEFAULT_MAX_DETS, metavar="LIST",
                   help="detections per image for AR; AP uses the last (default: 1,10,300, the SKU-110K convention)")
    p.add_argument("--class-agnostic", action="store_true",
                   help="score every prediction against every ground-truth class (default: only when the ground truth has one class)")
    p.add_argument("--ignore-size", action="store_true",
                   help="do not refuse images whose width/height differ between predictions and ground truth")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--compare", action="store_true", help="run the detector over PRED (a folder of images) tiled and untiled")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="with --compare: only the first N images")
    add_tiling_options(p)
    add_detector_options(p)
    return p


def _err(msg: str) -> None:
    print(f"densedet-tile eval: error: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)


def eval_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile eval``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    try:
        gt = read_ground_truth(args.gt)
        if args.compare:
            return _run_compare(args, gt)
        pred = read_predictions(args.pred, gt=gt)
        pairs, notes = pair_images(gt, pred, class_agnostic=True if args.class_agnostic else None,
                                   check_sizes=not args.ignore_size)
        m = evaluate_boxes(pairs, max_dets=args.max_dets)
    except (DensedetError, OSError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    md = m.max_dets[-1]
    print(f"{m.num_images} images, {m.num_gt} ground-truth boxes, {m.num_dt} predictions")
    print(format_table([(Path(args.pred).name, m.stats, None)], md))
    print("  ".join(f"{k}={v:.4f}" for k, v in m.stats.items()))
    if args.output:
        doc = {
            "schema": "densedet-tile/eval@1",
            "predictions": str(args.pred),
            "ground_truth": str(args.gt),
            "settings": {"max_dets": list(m.max_dets), "class_agnostic": bool(args.class_agnostic)},
            "num_images": m.num_images,
            "num_gt": m.num_gt,
            "num_predictions": m.num_dt,
            "metrics": _metrics_json(m),
            "notes": notes,
        }
        try:
            write_atomic(args.output, json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            _err(f"{args.output}: cannot write ({exc.strerror or exc})")
            return EXIT_USAGE
    return EXIT_OK


def _run_compare(args: argparse.Namespace, gt: BoxSet) -> int:
    from ..cli import detector_from_args, merge_spec_from_args

    folder = Path(args.pred)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: --compare needs a folder of images")
    images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and image_key(f.name) in gt.images)
    if args.limit is not None:
        images = images[: max(0, args.limit)]
    if not images:
        raise InvalidInputError(f"{folder}: no images whose names appear in the ground truth {args.gt}")
    detector = detector_from_args(args)
    kw = dict(merge=merge_spec_from_args(args), batch_size=args.batch_size, device=args.device,
              score_thr=args.score_thr, input_size=args.input_size)
    if args.max_pixels is not None:
        kw["max_pixels"] = args.max_pixels
    try:
        runs = compare_tiled_untiled(images, gt, detector, tile=args.tile, overlap=args.overlap,
                                     max_dets=args.max_dets, class_agnostic=True if args.class_agnostic else None,
                                     detect_kwargs=kw)
    except InvalidInputError:
        raise
    except Exception as exc:  # the detector is third-party code
        _err(f"detector {args.detector!r} failed: {exc}")
        return EXIT_FAILED
    md = args.max_dets[-1]
    print(f"{len(images)} images from {folder}, tile {args.tile}, overlap {args.overlap}")
    print(format_table([(r.name, r.metrics.stats, r.seconds) for r in runs], md))
    if args.output:
        doc = {
            "schema": "densedet-tile/eval-compare@1",
            "images": str(folder),
            "ground_truth": str(args.gt),
            "num_images": len(images),
            "settings": {"max_dets": list(args.max_dets), "detector": args.detector, "tile": args.tile,
                         "overlap": args.overlap, "merge": args.merge},
            "runs": [
                {"name": r.name, "tile": r.tile, "overlap": r.overlap, "seconds": round(r.seconds, 3),
                 "metrics": _metrics_json(r.metrics)}
                for r in runs
            ],
        }
        write_atomic(args.output, json.dumps(doc, indent=2) + "\n")
    return EXIT_OK
