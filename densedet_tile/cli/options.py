"""The options every verb shares, turned into specs once, and the one way a verb reports errors.

Value parsers raise :class:`argparse.ArgumentTypeError` saying what they expected, which
argparse turns into a one-line usage error and exit status 2. :func:`add_tiling_options` and
:func:`add_detector_options` add the same flags to every verb; :func:`specs_from_args` and
:func:`detector_spec_from_args` are the only places where those flags become
:class:`~densedet_tile.types.TileSpec`, :class:`~densedet_tile.types.MergeSpec`,
:class:`~densedet_tile.types.RunSpec` and :class:`~densedet_tile.detector.registry.DetectorSpec`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import threading
from typing import Any, Callable, NoReturn, Sequence

from ..errors import InvalidInputError
from ..detector.registry import BUILTIN_KINDS, DetectorSpec
from ..io import FORMATS
from ..types import (CONFIRM_BAND, COUNT_BAND, DEFAULT_MAX_PIXELS, MERGE_MODES, PRECISIONS, MergeSpec, RunSpec, TileSpec,
                     ordered_range)

__all__ = [
    "StopSignals",
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_INTERRUPTED",
    "PATH_ERRORS",
    "exit_status_of",
    "positive_int",
    "nonneg_int",
    "positive_float",
    "vram_gib",
    "nonneg_float",
    "fraction",
    "tile_side",
    "input_side",
    "formats",
    "add_tiling_options",
    "add_detector_options",
    "add_output_options",
    "specs_from_args",
    "detector_spec_from_args",
    "warn_ap_threshold",
    "parse",
    "error",
]

#: Exit statuses of every verb: all good, some inputs failed, bad usage or input, Ctrl-C.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
#: System errors that say the input or a path given is wrong (exit 2); any other (a full disk,
#: an I/O error) is a failed run (exit 1).
PATH_ERRORS = (PermissionError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def exit_status_of(exc: BaseException) -> int:
    """The exit status of a run that ends with ``exc``: 1 (failed) for a system error that is not
    about a path given (a full disk, an I/O error), else 2 (bad input or usage)."""
    from errno import ENAMETOOLONG  # (a name too long is a path given wrong too)

    from ..errors import DensedetError

    if isinstance(exc, OSError) and not isinstance(exc, (DensedetError, *PATH_ERRORS)) and exc.errno != ENAMETOOLONG:
        return EXIT_FAILED
    return EXIT_USAGE


# -- value parsers -------------------------------------------------------------------------------
def _int(text: str, lo: int, what: str, hi: int | None = None) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if v < lo or (hi is not None and v > hi):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def _float(text: str, ok: Callable[[float], bool], what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (math.isfinite(v) and ok(v)):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int(text, 1, "a positive integer")


def thread_count(text: str) -> int:
    """A number of CPU threads: an integer from 1 to the most a runtime takes."""
    from ..detector.base import MAX_THREADS

    return _int(text, 1, f"a positive integer of at most {MAX_THREADS}", MAX_THREADS)


def nonneg_int(text: str) -> int:
    """An integer >= 0."""
    return _int(text, 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _float(text, lambda v: v > 0, "a positive number")


def vram_gib(text: str) -> float:
    """A ``--max-vram`` budget: a finite number of GiB, at least ``MIN_VRAM_GB`` (a tiny one
    such as 1e-9 passed as positive and capped the GPU at one byte)."""
    from ..types import MIN_VRAM_GB

    return _float(text, lambda v: v >= MIN_VRAM_GB, f"a number of GiB >= {MIN_VRAM_GB:g}")


def nonneg_float(text: str) -> float:
    """A finite number >= 0."""
    return _float(text, lambda v: v >= 0, "a number >= 0")


class _AllFormats(argparse.Action):
    """``--format`` given more than once keeps every list, in order (only the last was kept, and a
    rerun then removed the earlier run's outputs of the others; an outside review)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        before = getattr(namespace, self.dest, None)
        given = tuple(values)
        setattr(namespace, self.dest, given if before is None or before is self.default
                else tuple(dict.fromkeys((*before, *given))))


def fraction(lo: float, hi: float, *, hi_open: bool = False, lo_open: bool = False) -> Callable[[str], float]:
    """A parser for numbers in [lo, hi] (``hi_open``: hi excluded; ``lo_open``: lo excluded)."""
    what = f"a value in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def inside(v: float) -> bool:
        return (lo < v if lo_open else lo <= v) and (v < hi if hi_open else v <= hi)

    def parse_value(text: str) -> float:
        return _float(text, inside, what)

    return parse_value


def device_name(text: str) -> str:
    """A device as ``--device`` takes it (``auto``, ``cpu``, ``cuda`` or ``cuda:N``), normalised;
    refused by argparse, naming the option, otherwise."""
    from ..errors import InvalidInputError
    from ..types import check_device

    try:
        return check_device(text)
    except InvalidInputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def input_side(text: str) -> int:
    """A model input side in pixels (MIN_INPUT_SIZE to MAX_INPUT_SIZE)."""
    from ..types import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    return _int(text, MIN_INPUT_SIZE, f"an input side of {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} pixels", MAX_INPUT_SIZE)


def tile_side(text: str) -> int | str:
    """A tile side in pixels (>= 32), or ``auto``."""
    if text.strip().lower() == "auto":
        return "auto"
    return _int(text, 32, "a tile side >= 32 pixels or 'auto'")


def tile_px(text: str) -> int:
    """A tile side in pixels (>= 32), where ``auto`` is no choice (adapt labels at one tile)."""
    return _int(text, 32, "a tile side >= 32 pixels")


def formats(text: str) -> tuple[str, ...]:
    """A comma-separated list of output formats."""
    items = tuple(dict.fromkeys(p.strip().lower() for p in text.split(",") if p.strip()))
    bad = [p for p in items if p not in FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(f"unknown format(s) {', '.join(bad) or text!r}; choose from {', '.join(FORMATS)}")
    return items


def class_list(text: str) -> tuple[str, ...]:
    """``--classes``: comma-separated class names or ids (an id is looked up as a name first, then
    read as a number, when the run meets its detector)."""
    items = tuple(dict.fromkeys(p.strip() for p in text.split(",") if p.strip()))
    if not items:
        raise argparse.ArgumentTypeError(f"no class in {text!r}: give names or ids, comma-separated (e.g. bottle,can)")
    return items


#: Spellings of true, false and none a shell user may type for a detector option (besides
#: JSON's own): ``agnostic=False`` must not arrive as the string "False", which is truthy.
_WORDS: dict[str, object] = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False,
                             "none": None, "null": None}


def _key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` of ``--detector-option``: the value read as JSON (numbers, lists, objects,
    quoted strings), as a truth word in any case (``True``, ``no``, ``off``...) or ``None``,
    else kept as the plain string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with KEY a Python identifier, got {text!r}")
    if raw.strip().lower() in _WORDS:
        return key.strip(), _WORDS[raw.strip().lower()]
    try:
        value: object = json.loads(raw)
    except ValueError:
        value = raw
    # JSON has no NaN or Infinity (Python's reader takes them, and 1e999 overflows to inf), and
    # the run's JSON records the options
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{key.strip()}={raw}: {raw} is not a finite number")
    if _not_finite(value):
        raise argparse.ArgumentTypeError(f"{key.strip()}={raw}: a number in it is not finite")
    return key.strip(), value


def _not_finite(value: object) -> bool:
    """Whether a value read from JSON holds a NaN or an infinity, at any depth."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_not_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_not_finite(v) for v in value)
    return False


def _max_pixels(text: str) -> int | None:
    """A pixel count (``2e9`` or ``2000000000``), or ``none`` / ``unlimited`` / ``0`` for no limit."""
    if text.strip().lower() in ("none", "unlimited", "0"):
        return None
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a pixel count or 'none', got {text!r}") from None
    if not math.isfinite(v) or v < 1 or v != int(v):
        raise argparse.ArgumentTypeError(f"expected a whole positive pixel count or 'none', got {text!r}")
    return int(v)



def _merge_px(text: str) -> float:
    """A merge tolerance in pixels: a number in [0, 10000), what MergeSpec takes."""
    return _float(text, lambda v: 0 <= v < 10000, "a number of pixels in [0, 10000)")


# -- option groups ---------------------------------------------------------------------------------
def add_detector_options(p: argparse.ArgumentParser) -> None:
    """The options that choose and configure a detector and how it runs."""
    g = p.add_argument_group("detector")
    g.add_argument("--detector", default="default", metavar="KIND",
                   help=f"{', '.join(BUILTIN_KINDS)} or MODULE:FACTORY (default: %(default)s, the built-in model)")
    g.add_argument("--config", default=None,
                   help="model config: a shipped config name (e.g. densedet-x101), an mmdet config file, "
                   "or a torchvision builder name")
    g.add_argument("--checkpoint", default=None,
                   help="model weights (mmdet .pth, torchvision state_dict, .onnx, YOLO .onnx/.tflite)")
    g.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    g.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="numeric precision on CUDA where the model supports it (default: %(default)s)")
    g.add_argument("--detector-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                   help="extra keyword for the detector's build (repeatable; VALUE parsed as JSON when it can be), "
                   "e.g. threads=4 (built-in, onnx, yolo), num_classes=2 or "
                   "cfg_options='{\"model.test_cfg.rcnn.max_per_img\": 600}' (mmdet)")
    g.add_argument("--max-vram", type=vram_gib, default=None, metavar="GIB",
                   help="cap GPU memory at GIB (GiB, 2**30 bytes: a '4 GB' card is 4) and pick the batch (and, for "
                   "models without an input size, the tile) to fit")
    g.add_argument("--input-size", type=input_side, default=None, metavar="PX",
                   help="resize each tile so its longer side is PX before inference (default: what the model declares)")
    g.add_argument("--score-thr", type=fraction(0.0, 1.0), default=None, metavar="X",
                   help="drop boxes scoring below X (default: the model's own threshold)")
    g.add_argument("--classes", type=class_list, default=None, metavar="LIST",
                   help="keep only the boxes of these classes: names the detector declares or class ids, "
                        "comma-separated (e.g. bottle,can or 39,41; default: every class)")
    g.add_argument("--count-band", type=fraction(0.0, COUNT_BAND), default=COUNT_BAND, metavar="X",
                   help="also count the boxes at the score threshold +-X and flag counts that swing by 30%% "
                   f"or more as uncertain (default and most: {COUNT_BAND}; the built-in model and the adapters "
                   f"return boxes down to {COUNT_BAND + CONFIRM_BAND:g} under their threshold, for the band's lower "
                   "end and the boxes below it that confirm cut views; 0: off)")


def add_tiling_options(p: argparse.ArgumentParser) -> None:
    """Tile, overlap, merge, batching and image-size options."""
    g = p.add_argument_group("tiling and merging")
    tiling, merge = TileSpec(), MergeSpec()
    g.add_argument("--tile", type=tile_side, default=tiling.tile, metavar="PX",
                   help="tile side in pixels, or 'auto': measure the products and choose the tile (and overlap) "
                   "that shows them to the model at its trained size (default: %(default)s; on a photo-like image "
                   "a model's photo rule, the built-in model's among them, replaces the tile with its own: "
                   "give --scale or --input-size to set it yourself)")
    g.add_argument("--scale", type=fraction(0.01, 100.0), default=None, metavar="S",
                   help="show the image to the model at this scale (image px -> model px), choosing the tile "
                   "to match, for a model of one input size (a --tile given too is replaced: with a warning "
                   "unless it is the default 1280); "
                   "default: from the tile, or the model's own rule for whole photos")
    g.add_argument("--overlap", type=fraction(0.0, 1.0, hi_open=True), default=tiling.overlap, metavar="F",
                   help="overlap between tiles as a fraction of the tile, in [0, 1) (default: %(default)s)")
    g.add_argument("--merge", choices=MERGE_MODES, default=merge.mode,
                   help="cross-tile merge: wbf (seam repair + box fusion + NMS), nms (seam repair + NMS), none "
                   "(default: %(default)s)")
    g.add_argument("--fuse-iou", type=fraction(0.0, 1.0, lo_open=True), default=merge.fuse_iou, metavar="X",
                   help="IoU at which boxes of different tiles count as one product and are fused (default: %(default)s)")
    g.add_argument("--nms-iou", type=fraction(0.0, 1.0, lo_open=True), default=merge.nms_iou, metavar="X",
                   help="IoU of the final cross-tile NMS (default: %(default)s)")
    g.add_argument("--match-iou", type=fraction(0.0, 1.0, lo_open=True), default=merge.match_iou, metavar="X",
                   help="boxes of two tiles that are each other's best match from this IoU up are one product and "
                   "fused (wbf; noisy views of small products stay under --fuse-iou; 1 turns it off) "
                   "(default: %(default)s)")
    g.add_argument("--edge-tol", type=_merge_px, default=merge.edge_tol, metavar="PX",
                   help="a box side this close (image px) to an interior tile edge counts as cut; raised to 8 "
                   "model px where it is less (at the default, where tiles reach the model shrunk more than by "
                   "half; JSON settings.merge says what ran) (default: %(default)s)")
    g.add_argument("--seam-tol", type=_merge_px, default=merge.seam_tol, metavar="PX",
                   help="how far box sides may disagree across a seam and still be one product; "
                   "about twice the detector's box noise; raised as --edge-tol is (default: %(default)s)")
    g.add_argument("--merge-class-agnostic", action="store_true",
                   help="match and suppress boxes across tiles whatever their labels")
    g.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                   help="tiles per inference call (default: 4 on a GPU, 1 on the CPU)")
    g.add_argument("--max-pixels", type=_max_pixels, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help="refuse images with more than N pixels; 'none' (or 0) for no limit (default: 2**31)")


def add_output_options(p: argparse.ArgumentParser, *, out_required: bool = False) -> argparse._ArgumentGroup:
    """``--out``, ``--format``, ``--preview``, ``--quiet`` and ``--debug``; returns the group."""
    o = p.add_argument_group("output")
    if out_required:
        o.add_argument("--out", required=True, metavar="DIR", help="output folder")
    else:
        o.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    o.add_argument("--format", type=formats, default=("json",), metavar="LIST", action=_AllFormats,
                   help="comma-separated outputs beside the JSON: json, csv (SKU-110K rows), coco (COCO results), "
                   "yolo (<stem>.txt label files and classes.txt); given twice, both lists")
    o.add_argument("--yolo-scores", action="store_true", help="end each YOLO label line with the box's score")
    o.add_argument("--preview", action="store_true", help="also write <stem>.preview.jpg with the boxes drawn")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or per-image lines")
    o.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    return o


# -- arguments -> specs -------------------------------------------------------------------------------
def options_changed(args: argparse.Namespace, defaults: dict[str, Any]) -> list[str]:
    """The options of ``defaults`` (dest -> default value) that ``args`` sets otherwise, as
    ``--option-name``: for a refusal naming options that a mode of a verb would ignore."""
    return ["--" + k.replace("_", "-") for k, v in defaults.items() if getattr(args, k, v) != v]


def specs_from_args(args: argparse.Namespace) -> tuple[TileSpec, MergeSpec, RunSpec]:
    """The tiling, merge and run specs of the options added by the two groups above."""
    if args.tile == "auto" and (args.scale is not None or args.input_size is not None):
        raise InvalidInputError("--tile auto measures the scale itself: give it, --scale or --input-size, not two")
    tiling = TileSpec(tile=args.tile, overlap=args.overlap)
    merge = MergeSpec(
        mode=args.merge, fuse_iou=args.fuse_iou, nms_iou=args.nms_iou, match_iou=args.match_iou, edge_tol=args.edge_tol,
        seam_tol=args.seam_tol, class_agnostic=args.merge_class_agnostic,
    )
    run = RunSpec(
        batch_size=args.batch_size, device=args.device, precision=args.precision, score_thr=args.score_thr,
        input_size=args.input_size, max_pixels=args.max_pixels, max_vram=args.max_vram, scale=args.scale,
        count_band=args.count_band, classes=args.classes,
    )
    return tiling, merge, run


#: An adapter whose own threshold is under this serves boxes for AP evaluation, not for counting
COUNTING_THR_FLOOR = 0.1


def warn_ap_threshold(args: argparse.Namespace) -> None:
    """Say once that a run counts at an adapter's own AP-evaluation threshold (0.05 for the mmdet,
    ONNX and torchvision adapters) because no threshold was given (``--score-thr``, or the
    ``score_thr`` detector option, which the adapters take too): its count then holds every
    doubtful box, and it gets no count range. The built-in model and the YOLO adapter serve at
    thresholds meant for counting."""
    if getattr(args, "score_thr", None) is not None or args.detector not in ("mmdet", "onnx", "torchvision"):
        return
    if "score_thr" in dict(getattr(args, "detector_option", None) or ()):
        return
    import importlib
    import inspect
    import logging

    adapter = importlib.import_module(f"densedet_tile.detector.{args.detector}_adapter")
    thr = inspect.signature(adapter.build).parameters["score_thr"].default
    if isinstance(thr, (int, float)) and thr < COUNTING_THR_FLOOR:
        logging.getLogger("densedet_tile").warning(
            "--detector %s without --score-thr keeps every box scoring %g or more (its default, meant for AP "
            "evaluation), so the counts include doubtful boxes and get no count range; give the threshold "
            "to count at with --score-thr", args.detector, thr)


def detector_spec_from_args(args: argparse.Namespace) -> DetectorSpec:
    """The detector recipe of the detector options."""
    return DetectorSpec(
        kind=args.detector, config=args.config, checkpoint=args.checkpoint, device=args.device,
        precision=args.precision, input_size=args.input_size, score_thr=args.score_thr,
        options=dict(args.detector_option),
    )


# -- parsing and errors ----------------------------------------------------------------------------------
def one_line_usage_errors(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Make ``parser`` report bad usage (a bad option value, a missing argument) on one line of
    stderr, ``prog: error: ...``, and exit 2, instead of argparse's usage block first."""
    def fail(message: str) -> NoReturn:
        error(parser.prog, f"{message} (--help lists the options)")
        raise SystemExit(EXIT_USAGE)

    parser.error = fail  # type: ignore[method-assign]
    return parser


def _file_taken_for_an_option(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The first argument before ``--`` that starts with '-', is no option of ``parser`` (nor an
    abbreviation of one, ``--opt=value``, short options run together such as ``-qh``, or an
    option's value) and names an existing file or folder: argparse took ``-x.jpg`` for an
    unknown option and said only that INPUT was missing. Names such as ``-1`` are left alone:
    argparse reads them as positionals where no option looks like a negative number."""
    options = [o for a in parser._actions for o in a.option_strings]
    valued = [o for a in parser._actions if a.nargs != 0 for o in a.option_strings]
    negative = parser._negative_number_matcher.match  # (argparse's own test)
    for i, arg in enumerate(argv):
        if arg == "--":
            return None
        if len(arg) < 2 or not arg.startswith("-") or (negative(arg) and not parser._has_negative_number_optionals):
            continue
        name = arg.split("=", 1)[0]
        if name in options or (arg.startswith("--") and any(o.startswith(name) for o in options)):
            continue  # an option, or an abbreviation of one
        if not arg.startswith("--") and arg[:2] in options:
            continue  # short options run together, or one with its value attached (-o-x.json)
        prev = argv[i - 1] if i else ""
        if prev in valued or (prev.startswith("--") and "=" not in prev
                              and any(o.startswith(prev) for o in valued if o.startswith("--"))):
            continue  # the value of the option before it (which may start with '-')
        if os.path.exists(arg):
            return arg
    return None


def _parse_intermixed(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """``parser.parse_intermixed_args(argv)``, with names after ``--`` that start with '-' kept as
    positionals: Python 3.11's intermixed parsing takes them for options again ("unrecognized
    arguments: -x.jpg", after the error's own advice to put the name after ``--``). They stand in
    as placeholders while parsing and are put back in the positionals after."""
    if "--" not in argv:
        return parser.parse_intermixed_args(argv)
    i = argv.index("--")
    tail = argv[i + 1:]
    marks = [f"\x00{k}" for k in range(len(tail))]
    ns = parser.parse_intermixed_args(argv[:i] + ["--"] + marks)
    back = dict(zip(marks, tail))
    for action in parser._actions:
        if action.option_strings or not hasattr(ns, action.dest):
            continue
        value = getattr(ns, action.dest)
        if isinstance(value, list):
            setattr(ns, action.dest, [back.get(v, v) if isinstance(v, str) else v for v in value])
        elif isinstance(value, str):
            setattr(ns, action.dest, back.get(value, value))
    return ns


def parse(parser: argparse.ArgumentParser, argv: Sequence[str], *, intermixed: bool = False) -> argparse.Namespace | int:
    """Parse ``argv``; an int is the exit status when argparse stopped (``--help``: 0, bad usage: 2,
    said on one line). ``intermixed``: positionals may stand among the options (``audit
    boxes.csv --gap-k 1 photo.jpg``, ``densedet-tile a.jpg -q b.jpg``). A file named like
    ``-x.jpg`` is named in the error, with the two ways to give it."""
    one_line_usage_errors(parser)
    argv = list(argv)
    dashed = _file_taken_for_an_option(parser, argv)
    if dashed is not None:
        error(parser.prog, f"{dashed}: a name that starts with '-' reads as an option; write it as "
                           f"./{dashed}, or put it after -- (--help lists the options)")
        return EXIT_USAGE
    try:
        return _parse_intermixed(parser, argv) if intermixed else parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its message
        return EXIT_OK if exc.code == 0 else EXIT_USAGE


def counted(n: Any, noun: str) -> str:
    """``"1 tile"``, ``"9 tiles"``: a count with its noun in the right number."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def products_text(n: Any, count_range: Any = None, uncertain: bool | None = None) -> str:
    """``"129 products"``, with the count range when known: ``"129 products (112-151)"``, and
    ``"(101-160, uncertain count)"`` when it swings enough to be checked by hand."""
    text = counted(n, "product")
    if count_range is None or count_range[0] is None or count_range[1] is None:
        return text
    lo, hi = ordered_range((count_range[0], n, count_range[1]))
    return f"{text} ({lo}-{hi}{', uncertain count' if uncertain else ''})"


def shell_quote(arg: Any) -> str:
    """``arg`` quoted for the user's shell, in a command line a message suggests: POSIX quoting,
    or cmd.exe's on Windows (``'C:\\My photos'`` is no path there)."""
    text = str(arg)
    if sys.platform == "win32":  # cmd.exe: double quotes around spaces and its own & | < > ^ ( )
        if text and not any(c in text for c in ' \t&|<>^()%!,;='):
            return text
        body = text.rstrip("\\")  # trailing backslashes doubled: one would escape the closing quote
        return '"' + body + "\\" * (2 * (len(text) - len(body))) + '"'
    import shlex

    return shlex.quote(text)


def error(prog: str, msg: Any) -> None:
    """Print ``prog: error: msg`` on one line of stderr."""
    from ..errors import printable

    print(f"{prog}: error: {printable(' '.join(str(msg).split()))}", file=sys.stderr, flush=True)


class Stopped(KeyboardInterrupt):
    """The KeyboardInterrupt :class:`StopSignals` raises for SIGTERM or SIGHUP; ``signum`` says
    which (a batch's manifest records it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class StopSignals:
    """While the run lasts, SIGTERM and SIGHUP (a closed terminal or a dropped ssh session) raise
    KeyboardInterrupt (:class:`Stopped`) in the main thread, as Ctrl-C already does, so a stopped
    run cleans up as an interrupted one does: the image being written is rolled back, no
    temporary stays, and a folder the run made and left empty is removed.

    Only the first signal raises; the ones after it are ignored while that clean-up runs (a second
    KeyboardInterrupt in the middle of a roll-back would leave a mix of two runs' files). A
    signal the caller ignores (SIG_IGN, e.g. a job started in the background) stays ignored.
    Off the main thread nothing is changed (Python takes signal handlers only there)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        stops = [(signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, signal.SIG_DFL)]
        if hasattr(signal, "SIGHUP"):  # not on Windows
            stops.append((signal.SIGHUP, signal.SIG_DFL))
        for sig, default in stops:
            current = signal.getsignal(sig)
            if current is default:
                self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        from ..errors import STOP_RECEIVED

        STOP_RECEIVED[0] = signum
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Stopped(signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if self.signum is not None:
            from ..errors import STOP_RECEIVED

            STOP_RECEIVED[0] = None

    def outcome(self, code: int) -> int:
        """``code``, the status a run returned, unless a stop signal came during it: then the
        stop's (a C extension importing when it came turns the KeyboardInterrupt into an
        ImportError, which the run reported as a failure)."""
        return code if self.signum is None else self.exit_status

    @property
    def exit_status(self) -> int:
        """130 for Ctrl-C, 128 + the signal's number for another stop signal (143 for SIGTERM, 129
        for SIGHUP)."""
        return EXIT_INTERRUPTED if self.signum in (None, signal.SIGINT) else 128 + int(self.signum)

    @property
    def reason(self) -> str:
        """What stopped the run, for its last line: "interrupted" (Ctrl-C) or "stopped by SIGTERM"."""
        from ..errors import stop_reason

        return stop_reason(self.signum)
