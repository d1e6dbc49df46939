"""Command line: ``densedet-tile INPUT... [options]`` and the ``eval``/``audit``/``batch`` verbs.

A thin layer over :mod:`densedet_tile.pipeline`: it parses options, loads the detector once,
processes each input in turn (one bad input never stops the others), writes the outputs
atomically and prints one summary line per image. Exit status: 0 when every input succeeded,
1 when at least one input failed, 2 for bad options or a detector that cannot be built.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from .runner import RunOptions

from . import __version__
from .argtypes import fraction, nonneg_float, positive_float, positive_int
from .errors import DensedetError, one_line
from .types import MERGE_MODES, MergeSpec

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
_VERBS = ("eval", "audit", "batch")


def _key_value(text: str) -> tuple[str, object]:
    import json

    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python identifier, got {text!r}")
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = raw
    return key.strip(), value


def _formats(text: str) -> tuple[str, ...]:
    from .writers import FORMATS

    items = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [p for p in items if p not in FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(bad) or text!r}; choose from {', '.join(FORMATS)}")
    return items


def _max_pixels(text: str) -> int | None:
    if text.lower() in ("none", "unlimited", "0"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel count or 'none', got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive pixel count, got {text!r}")
    return int(v)


def add_detector_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and configure a detector (shared with eval/audit/batch)."""
    g = p.add_argument_group("detector")
    g.add_argument("--detector", default="default", metavar="KIND",
                   help="default (built-in model), mmdet, torchvision, onnx, or MODULE:FACTORY (default: %(default)s)")
    g.add_argument("--config", default=None, help="model config: an mmdet config file or a torchvision builder name")
    g.add_argument("--checkpoint", default=None, help="model weights (mmdet .pth, torchvision state_dict, .onnx)")
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    g.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                   help="numeric precision on CUDA where the model supports it (default: %(default)s)")
    g.add_argument("--detector-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="extra keyword for the detector's build (repeatable; VALUE parsed as JSON when it can be), "
                   "e.g. num_classes=2, threads=4, cfg_options='{\"model.test_cfg.rcnn.max_per_img\": 600}'")
    g.add_argument("--max-vram", type=positive_float, default=None, metavar="GB",
                   help="cap GPU memory at GB and pick the batch (and, for models without an input size, the tile) to fit")
    g.add_argument("--input-size", type=positive_int, default=None, metavar="PX",
                   help="resize each tile so its longer side is PX before inference (default: what the model declares)")
    g.add_argument("--score-thr", type=fraction(0.0, 1.0), default=None, metavar="X",
                   help="drop boxes scoring below X (default: the model's own threshold)")


def add_tiling_options(p: argparse.ArgumentParser) -> None:
    """Tile, overlap, merge and batching options (shared with eval/audit/batch)."""
    g = p.add_argument_group("tiling and merging")
    g.add_argument("--tile", type=positive_int, default=1280, metavar="PX", help="tile side in pixels (default: %(default)s)")
    g.add_argument("--overlap", type=fraction(0.0, 1.0, hi_open=True), default=0.2, metavar="F",
                   help="overlap between tiles as a fraction of the tile, in [0, 1) (default: %(default)s)")
    g.add_argument("--merge", choices=MERGE_MODES, default=MergeSpec().mode,
                   help="cross-tile merge: wbf (seam repair + box fusion + NMS), nms (seam repair + NMS), none (default: %(default)s)")
    defaults = MergeSpec()
    g.add_argument("--fuse-iou", type=fraction(0.0, 1.0), default=defaults.fuse_iou, metavar="X",
                   help="IoU at which boxes of different tiles count as one product and are fused (default: %(default)s)")
    g.add_argument("--nms-iou", type=fraction(0.0, 1.0), default=defaults.nms_iou, metavar="X",
                   help="IoU of the final cross-tile NMS (default: %(default)s)")
    g.add_argument("--edge-tol", type=nonneg_float, default=defaults.edge_tol, metavar="PX",
                   help="a box side this close to an interior tile edge counts as cut (default: %(default)s)")
    g.add_argument("--seam-tol", type=nonneg_float, default=defaults.seam_tol, metavar="PX",
                   help="how far box sides may disagree across a seam and still be one product; "
                   "about twice the detector's box noise (default: %(default)s)")
    g.add_argument("--merge-class-agnostic", action="store_true",
                   help="match and suppress boxes across tiles whatever their labels")
    g.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="tiles per inference call (default: 4 on a GPU, 1 on the CPU)")
    g.add_argument("--max-pixels", type=_max_pixels, default=None, metavar="N",
                   help="refuse images with more than N pixels; 'none' for no limit (default: 2**31)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="densedet-tile",
        description="Tiled object detection for giant images (shelf photos, aisle panoramas). "
        "Other verbs: 'densedet-tile eval', 'densedet-tile audit', 'densedet-tile batch' (each takes --help).",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (JPEG, PNG, WebP, BMP, TIFF, BigTIFF)")
    add_tiling_options(p)
    add_detector_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    o.add_argument("--format", type=_formats, default=("json",), metavar="LIST",
                   help="comma-separated outputs beside the JSON: json, csv (SKU-110K rows), coco (COCO results)")
    o.add_argument("--preview", action="store_true", help="also write <stem>.preview.jpg with the boxes drawn")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    o.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    p.add_argument("--version", action="version", version=f"densedet-tile {__version__}")
    return p


def merge_spec_from_args(args: argparse.Namespace) -> MergeSpec:
    """The MergeSpec of the tiling options added by :func:`add_tiling_options`."""
    return MergeSpec(
        mode=args.merge, fuse_iou=args.fuse_iou, nms_iou=args.nms_iou, edge_tol=args.edge_tol,
        seam_tol=args.seam_tol, class_agnostic=args.merge_class_agnostic,
    )


def _err(msg: str) -> None:
    print(f"densedet-tile: error: {msg}", file=sys.stderr, flush=True)


class _Progress:
    """A tqdm bar on stderr, created when the first batch of a multi-tile image is done."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.enabled, self.bar = label, enabled, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="tile", file=sys.stderr, leave=False, dynamic_ncols=True)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def options_from_args(args: argparse.Namespace) -> "RunOptions":
    """The per-image options of a parsed command line."""
    from .runner import RunOptions

    return RunOptions(
        tile=args.tile, overlap=args.overlap, merge=merge_spec_from_args(args), batch_size=args.batch_size,
        device=args.device, score_thr=args.score_thr, input_size=args.input_size,
        max_pixels=args.max_pixels, formats=tuple(getattr(args, "format", ("json",))),
        preview=bool(getattr(args, "preview", False)),
    )


def detector_from_args(args: argparse.Namespace):
    """Validate the options and build the detector once; raises on any problem."""
    from .detector.base import resolve_device
    from .detector.registry import load_detector

    resolve_device(args.device)
    return load_detector(
        args.detector, config=args.config, checkpoint=args.checkpoint, device=args.device,
        input_size=args.input_size, score_thr=args.score_thr, precision=args.precision,
        options=dict(args.detector_option),
    )


def fit_to_vram(args: argparse.Namespace, detector: object, opts: "RunOptions") -> "RunOptions":
    """Apply ``--max-vram``: cap the allocator and choose batch/tile unless given explicitly."""
    if getattr(args, "max_vram", None) is None:
        return opts
    import dataclasses

    from .detector.base import input_size_of, resolve_device
    from .vram import plan_batch

    plan = plan_batch(detector, tile=opts.tile, input_size=opts.input_size or input_size_of(detector),
                      max_vram_gb=args.max_vram, device=resolve_device(opts.device))
    if plan is None:
        return opts
    changes: dict = {}
    if opts.batch_size is None:
        changes["batch_size"] = plan.batch_size
    if plan.tile != opts.tile:
        print(f"densedet-tile: --max-vram {args.max_vram:g}: tile reduced to {plan.tile} px to fit", file=sys.stderr)
        changes["tile"] = plan.tile
    return dataclasses.replace(opts, **changes)


def run_detect(args: argparse.Namespace) -> int:
    from .runner import output_stem, process_image

    try:
        opts = options_from_args(args)
    except DensedetError as exc:
        _err(one_line(exc))
        return EXIT_USAGE
    try:
        detector = detector_from_args(args)
        opts = fit_to_vram(args, detector, opts)
    except Exception as exc:  # building a detector runs third-party code: report, don't dump
        if args.debug:
            raise
        _err(f"detector {args.detector!r}: {one_line(exc)}")
        return EXIT_USAGE
    failed = 0
    used_stems: set[str] = set()
    for inp in args.inputs:
        stem = base = output_stem(inp)
        k = 2
        while stem in used_stems:
            stem, k = f"{base}-{k}", k + 1
        used_stems.add(stem)
        progress = _Progress(Path(inp).name, enabled=not args.quiet)
        try:
            outcome = process_image(inp, detector, opts, args.out, stem=stem, progress=progress)
        finally:
            progress.close()
        if outcome.status != "ok":
            _err(outcome.error or f"{inp}: failed")
            failed += 1
            continue
        print(
            f"{Path(inp).name}: {outcome.products} products, {outcome.tiles} tiles, "
            f"{outcome.width}x{outcome.height} px, {outcome.seconds:.2f} s -> {outcome.outputs[-1]}",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_SOME_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="densedet-tile: %(levelname)s: %(message)s")
    if argv and argv[0] in _VERBS:
        verb, rest = argv[0], argv[1:]
        if verb == "eval":
            from .evaluate import eval_main

            return eval_main(rest)
        if verb == "audit":
            from .audit import audit_main

            return audit_main(rest)
        from .batch import batch_main

        return batch_main(rest)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed a one-line usage error
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.debug:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    try:
        return run_detect(args)
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
