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
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence


from ..tiler.readers import IMAGE_SUFFIXES
from ..errors import DensedetError, ImageReadError, InvalidInputError, one_line, printable
from ..eval.coco import DEFAULT_MAX_DETS, CocoMetrics, evaluate_boxes, over_max_dets
from ..eval.compare import WARNING, CompareRun, compare_tiled_untiled, pair_images, uses_class_agnostic
from ..eval.formats import BoxSet, image_key, read_ground_truth, read_predictions
from ..io import atomic_write, ensure_out_file, refuse_overwriting_input, same_path
from ..runner import Job, build_detector, detector_identity
from .options import (
    StopSignals,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_detector_options,
    add_tiling_options,
    counted,
    detector_spec_from_args,
    error,
    exit_status_of,
    options_changed,
    parse,
    positive_int,
    specs_from_args,
)

__all__ = ["eval_main", "build_parser", "format_table"]

PROG = "densedet-tile eval"


def _metrics_json(m: CocoMetrics) -> dict[str, Any]:
    return {k: round(float(v), 6) for k, v in m.stats.items()}


def format_table(rows: Sequence[tuple[str, dict[str, float], float | None]], max_det: int) -> str:
    """Plain-text table: one row per (name, stats, seconds); the seconds column only when a row
    has seconds (runs of ``--compare``, not a file of predictions)."""
    timed = any(secs is not None for _, _, secs in rows)
    head = ["run", "AP", "AP50", "AP75", f"AR@{max_det}"] + (["seconds"] if timed else [])
    lines = [head]
    for name, stats, secs in rows:
        lines.append([
            name,
            *(f"{stats[k]:.4f}" if stats.get(k, -1) >= 0 else "n/a" for k in ("AP", "AP50", "AP75", f"AR@{max_det}")),
            *([("" if secs is None else f"{secs:.2f}")] if timed else []),
        ])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in lines)


# ------------------------------------------------------------------------------ CLI
def _max_dets(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}") from None
    from ..eval.coco import MAX_DETS_LIMIT

    if not vals or any(v < 1 for v in vals) or list(vals) != sorted(set(vals)):
        raise argparse.ArgumentTypeError(f"expected increasing positive integers such as 1,10,300, got {text!r}")
    if vals[-1] > MAX_DETS_LIMIT:
        raise argparse.ArgumentTypeError(f"expected at most {MAX_DETS_LIMIT} detections per image, got {text!r}")
    return vals


def _warn_over_cap(over: tuple[int, int], md: int, run: str = "") -> None:
    """Say that ``over`` (:func:`~densedet_tile.eval.coco.over_max_dets`: images, most boxes)
    images hold more ground-truth boxes and predictions of one class than ``md`` lets AP count;
    ``run`` names the compare run they are of."""
    n, most = over
    if n:
        of = f" in the {run} run" if run else ""
        print(f"{PROG}: warning: {counted(n, 'image')}{of} {'holds' if n == 1 else 'hold'} more ground-truth "
              f"boxes and predictions than --max-dets {md} lets AP count (per image and class; the most: {most} "
              f"boxes): AP and AR@{md} stay low however good the boxes; give --max-dets 1,10,{_round_up(most)}",
              file=sys.stderr)


def _round_up(n: int) -> int:
    """``n`` rounded up to a round number (1933 -> 2000, 312 -> 400)."""
    step = 10 ** max(len(str(n)) - 1, 0)
    return -(-n // step) * step


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="COCO AP@[.5:.95], AP50, AP75 and AR of predictions against ground truth. "
        "PRED: our detections JSON, a folder of them, our CSV (optional 'score' column), a folder of YOLO label "
        "files (<stem>.txt, normalised; the ground truth gives the image sizes) or COCO results. "
        "GT: SKU-110K CSV (image_name,x1,y1,x2,y2,class,image_width,image_height; header optional) or COCO JSON. "
        "With --compare, PRED is a folder of images run through the detector tiled and untiled.",
    )
    p.add_argument("pred", metavar="PRED", help="predictions file or folder (with --compare: a folder of images)")
    p.add_argument("gt", metavar="GT", help="ground truth: SKU-110K CSV or COCO JSON")
    p.add_argument("--max-dets", type=_max_dets, default=DEFAULT_MAX_DETS, metavar="LIST",
                   help="detections per image for AR, increasing, each at most 1000000000; AP uses the last "
                   "(default: 1,10,300, the SKU-110K convention)")
    p.add_argument("--class-agnostic", action="store_true",
                   help="score every prediction against every ground-truth class (default: only when the ground truth has one class)")
    p.add_argument("--ignore-size", action="store_true",
                   help="do not refuse images whose width/height differ between predictions and ground truth")
    p.add_argument("-o", "--output", default=None, metavar="FILE", help="also write the figures to this JSON file")
    p.add_argument("--compare", action="store_true", help="run the detector over PRED (a folder of images) tiled and untiled")
    p.add_argument("--limit", type=positive_int, default=None, metavar="N", help="with --compare: only the first N images")
    p.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    add_tiling_options(p)
    add_detector_options(p)
    return p


def eval_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile eval``; returns the exit status."""
    args = parse(build_parser(), argv)
    if isinstance(args, int):
        return args
    if args.debug:  # (main puts the level back)
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    with StopSignals() as stop:  # Ctrl-C or SIGTERM: one line, and -o is written whole or not at all
        try:
            return stop.outcome(_eval(args))
        except KeyboardInterrupt:
            error(PROG, stop.reason)
            return stop.exit_status


def _eval(args: argparse.Namespace) -> int:
    if not args.compare:  # the detector, tiling and --limit options are those of a --compare run
        defaults = vars(build_parser().parse_args(["--", args.pred, args.gt]))
        own = {"pred", "gt", "max_dets", "class_agnostic", "ignore_size", "output", "compare", "debug"}
        given = options_changed(args, {k: v for k, v in defaults.items() if k not in own})
        if given:
            error(PROG, f"{', '.join(given)}: only with --compare (which runs a detector over a folder of images)")
            return EXIT_USAGE
    if args.output is not None and not args.output.strip():
        # (-o "$UNSET" printed the figures and wrote nothing, with exit status 0: an outside review)
        error(PROG, "-o is empty: give the JSON file to write the figures to")
        return EXIT_USAGE
    try:
        if args.output:
            refuse_overwriting_input(args.output, {"ground-truth": args.gt, "predictions": args.pred}, option="-o")
            folder = Path(os.path.realpath(args.pred))  # (not resolve(): RuntimeError on a loop of links)
            if not args.compare and folder.is_dir() and Path(os.path.realpath(args.output)).is_relative_to(folder):
                # it could replace one of them now, and would be read as one the next time
                raise InvalidInputError(f"-o {args.output}: inside the predictions folder {args.pred}, whose files are "
                                        "read as predictions; write the metrics elsewhere")
            if args.compare and folder.is_dir():  # the photos the comparison reads (an outside review: -o a.jpg
                # replaced the photo with the report)
                for photo in folder.iterdir():
                    if photo.suffix.lower() in IMAGE_SUFFIXES and same_path(photo, args.output):
                        raise InvalidInputError(f"-o {args.output}: that is one of the photos compared; writing there "
                                                "would overwrite it")
            ensure_out_file(args.output, option="-o")
        gt = read_ground_truth(args.gt)
        if args.compare:
            return _run_compare(args, gt)
        pred = read_predictions(args.pred, gt=gt)
        asked = True if args.class_agnostic else None
        pairs, notes = pair_images(gt, pred, class_agnostic=asked, check_sizes=not args.ignore_size)
        agnostic = uses_class_agnostic(gt, asked, pred)  # what was used, also when the ground truth decided
        m = evaluate_boxes(pairs, max_dets=args.max_dets)
    except (DensedetError, OSError) as exc:
        # (a system error as the other verbs say it, "FILE: Permission denied", not "[Errno 13] ...: 'FILE'")
        error(PROG, str(exc) if isinstance(exc, DensedetError) else one_line(exc))
        return exit_status_of(exc)
    for n in notes:
        if n.startswith(WARNING):
            print(f"{PROG}: warning: {printable(n[len(WARNING):])}", file=sys.stderr)
        else:
            print(f"note: {printable(n)}", file=sys.stderr)
    md = m.max_dets[-1]
    _warn_over_cap(over_max_dets(pairs, md), md)
    print(f"{counted(m.num_images, 'image')}, {m.num_gt} ground-truth box{'' if m.num_gt == 1 else 'es'}, "
          f"{counted(m.num_dt, 'prediction')}")
    print(format_table([(Path(args.pred).name or Path(os.path.realpath(args.pred)).name or str(args.pred), m.stats, None)], md))  # ("." named too)
    print("  ".join(f"{k}={v:.4f}" for k, v in m.stats.items()))
    if args.output:
        doc = {
            "schema": "densedet-tile/eval@1",
            "predictions": str(args.pred),
            "ground_truth": str(args.gt),
            "settings": {"max_dets": list(m.max_dets), "class_agnostic": agnostic, "ignore_size": args.ignore_size},
            "num_images": m.num_images,
            "num_gt": m.num_gt,
            "num_predictions": m.num_dt,
            "metrics": _metrics_json(m),
            "notes": notes,
        }
        try:
            atomic_write(args.output, json.dumps(doc, indent=2) + "\n")
        except OSError as exc:
            error(PROG, f"{args.output}: cannot write ({exc.strerror or exc})")
            return exit_status_of(exc)
    return EXIT_OK


def _ran(r: CompareRun) -> str:
    """How a compare run actually tiled the images, in words."""
    if r.name == "untiled":
        size = f"{r.tile} px" if r.tile is not None else f"{r.tiles[0]}-{r.tiles[-1]} px"
        return f"one tile per image ({size}, resized to the detector's input), {counted(r.num_tiles, 'tile')}"
    size = f"{r.tile} px" if r.tile is not None else f"{r.tiles[0]}-{r.tiles[-1]} px (by image)"
    overlap = "by image" if r.overlap is None else f"{r.overlap:g}"
    how = " / ".join({"tile": "the tile as asked"}.get(v, v) for v in r.scale)
    return f"tile {size}, overlap {overlap}, {counted(r.num_tiles, 'tile')}, scale set by {how}"


def _run_compare(args: argparse.Namespace, gt: BoxSet) -> int:
    folder = Path(args.pred)
    if not folder.is_dir():
        raise InvalidInputError(f"{folder}: --compare needs a folder of images")
    images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES and image_key(f.name) in gt.images)
    if args.limit is not None:
        images = images[: args.limit]
    if not images:
        raise InvalidInputError(f"{folder}: no images whose names appear in the ground truth {args.gt}")
    absent = len(gt.images) - len({image_key(f.name) for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES}
                                  & set(gt.images))
    if absent:  # both runs need the photo: its ground truth cannot count as missed by either
        print(f"note: {counted(absent, 'ground-truth image')} not in {folder}, left out of both runs",
              file=sys.stderr)
    unnamed = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES
                     and image_key(f.name) not in gt.images)
    if unnamed:  # (left out without a word: an outside review)
        more = f" and {len(unnamed) - 1} more" if len(unnamed) > 1 else ""
        print(f"note: {counted(len(unnamed), 'image')} in {folder} not in the ground truth ({unnamed[0]}{more}), "
              "not run", file=sys.stderr)
    tiling, merge, run = specs_from_args(args)
    spec = detector_spec_from_args(args)
    detector, fitted = build_detector(spec, Job(tiling=tiling, merge=merge, run=run))
    try:
        runs = compare_tiled_untiled(images, gt, detector, tiling=fitted.tiling, merge=merge, run=fitted.run,
                                     max_dets=args.max_dets, class_agnostic=True if args.class_agnostic else None,
                                     check_sizes=not args.ignore_size)
    except (InvalidInputError, ImageReadError):  # bad input (an unreadable image): exit 2
        raise
    except Exception as exc:  # the detector's own failure says so; anything else is named by its type
        logging.getLogger("densedet_tile").debug("the comparison failed", exc_info=True)
        if isinstance(exc, DensedetError):
            error(PROG, one_line(exc))
        else:
            error(PROG, f"--compare failed: {type(exc).__name__}: {one_line(exc)}"
                        + ("" if args.debug else " (--debug for the traceback)"))
        return EXIT_FAILED
    md = args.max_dets[-1]
    print(f"{counted(len(images), 'image')} from {folder}, asked tile {args.tile}, overlap {args.overlap}")
    if args.classes is not None:  # the ground truth is cut to the same classes (one-class ground truth: all of it)
        print(f"classes {','.join(map(str, args.classes))} only: {counted(runs[0].metrics.num_gt, 'ground-truth box')} of them")
    for r in runs:
        print(f"{r.name}: {_ran(r)}")
    for r in runs:
        _warn_over_cap(r.over_max_dets, md, r.name)
    print(format_table([(r.name, r.metrics.stats, r.seconds) for r in runs], md))
    if args.output:
        doc = {
            "schema": "densedet-tile/eval-compare@1",
            "images": str(folder),
            "ground_truth": str(args.gt),
            "num_images": len(images),
            # what decides the numbers: the specs as run (after the detector's rules) and the
            # model as a batch rerun compares it (kind, checkpoint and options, its files' stamps)
            "settings": {"max_dets": list(args.max_dets), "detector": args.detector, "tile": args.tile,
                         "overlap": args.overlap, "merge": args.merge, "classes": args.classes,
                         # what was used (as eval of one file writes it): asked, or a one-class ground truth's
                         "class_agnostic": any(r.class_agnostic for r in runs), "ignore_size": args.ignore_size,
                         "tiling": asdict(fitted.tiling), "merge_spec": asdict(merge),
                         "run": {k: v for k, v in asdict(fitted.run).items() if k != "classes"},
                         "model": detector_identity(spec)},
            "runs": [
                {"name": r.name, "tile": r.tile, "overlap": r.overlap, "tiles": list(r.tiles),
                 "num_tiles": r.num_tiles, "scale": list(r.scale), "seconds": round(r.seconds, 3),
                 "metrics": _metrics_json(r.metrics)}
                for r in runs
            ],
        }
        atomic_write(args.output, json.dumps(doc, indent=2) + "\n")
    return EXIT_OK
