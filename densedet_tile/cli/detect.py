"""``densedet-tile INPUT... [options]``: detect products in image files and write the results.

Builds the detector once, processes each input in turn (one bad input never stops the others),
writes the outputs atomically and prints one summary line per image. Exit status: 0 when every
input succeeded, 1 when at least one input failed, 2 for bad options, an output that would
overwrite an input, or a detector that cannot be built, 130 for Ctrl-C and 143 for SIGTERM
(both stop cleanly: the image being written is rolled back).
"""

from __future__ import annotations

import argparse
import logging
import os
import stat
import sys
import traceback
from pathlib import Path
from dataclasses import replace
from typing import Any, Sequence

from .. import __version__
from ..errors import DensedetError, InvalidInputError, one_line, shown_name
from ..io import ensure_out_dir, new_folders, remove_empty, stat_or_none, sweep_temporaries
from ..runner import (Job, build_detector, output_stem, process_image, refuse_outputs_over_inputs, request_key, row_names,
                      unique_stems, without_earlier_outputs)
from .options import (
    EXIT_FAILED,
    StopSignals,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_detector_options,
    add_output_options,
    add_tiling_options,
    counted,
    detector_spec_from_args,
    warn_ap_threshold,
    error,
    parse,
    products_text,
    specs_from_args,
    shell_quote,
)

__all__ = ["build_parser", "detect_main"]

PROG = "densedet-tile"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Tiled object detection for giant images (shelf photos, aisle panoramas). Other verbs: "
        "'densedet-tile batch', 'eval', 'audit', 'adapt' and 'convert-checkpoint' (each takes --help). This one, "
        "detect, is the default and may also be named: 'densedet-tile detect photo.jpg'.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files (JPEG, PNG, WebP, AVIF, BMP, GIF, TIFF, BigTIFF; HEIC with pillow-heif)")
    add_tiling_options(p)
    add_detector_options(p)
    add_output_options(p)
    p.add_argument("--version", action="version", version=f"densedet-tile {__version__}")
    return p


class _Progress:
    """A tqdm bar on stderr, created when the first batch of a multi-tile image is done; none
    when stderr is a log file or a pipe (its \r redraws are noise there), and then tqdm is not
    even imported (30 ms of a half-second photo)."""

    def __init__(self, label: str, enabled: bool) -> None:
        self.label, self.bar = label, None
        try:
            self.enabled = enabled and sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):  # a closed or replaced stream
            self.enabled = False

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled or total <= 1:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=self.label, unit="tile", file=sys.stderr, leave=False, dynamic_ncols=True,
                            disable=None)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def detect_main(argv: Sequence[str]) -> int:
    """Entry point of the default verb; returns the exit status."""
    args = parse(build_parser(), argv, intermixed=True)
    if isinstance(args, int):
        return args
    if args.debug:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    args.out = os.path.expanduser(args.out)  # once, so the folder checked is the folder written
    with StopSignals() as stop:
        try:
            return stop.outcome(_detect(args))
        except KeyboardInterrupt:
            error(PROG, stop.reason)
            return stop.exit_status


def _distinct(inputs: Sequence[str]) -> list[str]:
    """The inputs in order, a file named twice (a.jpg ./a.jpg) kept once; a file also named
    through a link (latest.jpg -> IMG_0042.jpg) is kept under its first name, with a note."""
    seen: dict[str, str] = {}
    out = []
    for i in inputs:
        key = os.path.realpath(i)
        if key not in seen:
            seen[key] = i
            out.append(i)
        elif os.path.abspath(i) != os.path.abspath(seen[key]):
            logging.getLogger("densedet_tile").warning("%s: left out: the same file as %s (a link), detected once under "
                                                       "that name", i, seen[key])
    return out


def _warn_renamed_labels(inputs: Sequence[str], stems: Sequence[str], reserved: Any = ()) -> None:
    """Say where an input's YOLO labels take a numbered name (``x.png`` beside ``x.jpg`` gets
    ``x-2.txt``): labelling tools pair a label file with the image of its name, so ``x.txt``
    would be read as ``x.png``'s labels and ``x-2.txt`` as nobody's (an outside review)."""
    taken = {r.casefold() for r in reserved}
    for path, stem in zip(inputs, stems):
        own = output_stem(path)
        if stem != own:
            whose = "the class list" if own.casefold() in taken else "another input's"
            logging.getLogger("densedet_tile").warning(
                "%s: its YOLO labels are written as %s.txt (%s.txt is %s): a labelling tool pairs labels with "
                "the image of their name, so rename the image or give it an --out of its own",
                shown_name(path), stem, own, whose)


def _detect(args: argparse.Namespace) -> int:
    try:
        tiling, merge, run = specs_from_args(args)
        job = Job(tiling=tiling, merge=merge, run=run, formats=args.format, preview=args.preview,
                  yolo_scores=args.yolo_scores)
        spec = detector_spec_from_args(args)
        inputs = _distinct(args.inputs)
        # a preview (or another output) that an earlier run wrote and a glob picked up again is
        # not a photo to detect: left out with a note rather than refused or detected
        inputs = without_earlier_outputs(inputs)
        if not inputs:
            hint = (" (to audit a detections JSON: densedet-tile audit FILE)"
                    if any(str(i).lower().endswith(".detections.json") for i in args.inputs) else "")
            raise InvalidInputError(f"every input is an output of an earlier run (see the warnings above); nothing to do{hint}")
        stems = unique_stems(inputs, job.reserved_stems, out=args.out)
        if "yolo" in job.formats:
            _warn_renamed_labels(inputs, stems, job.reserved_stems)
        # every input's outputs are planned before anything is written: none may be an input
        refuse_outputs_over_inputs(inputs, stems, args.out, job)
    except DensedetError as exc:
        error(PROG, one_line(exc))
        return EXIT_USAGE
    job = replace(job, request=request_key(job, spec))  # recorded with each result, as batch does
    try:
        detector, job = build_detector(spec, job)
    except Exception as exc:  # building a detector runs third-party code: report, don't dump
        if args.debug:
            traceback.print_exc()
        msg = one_line(exc)
        error(PROG, msg if msg.startswith((f"detector {args.detector!r}", "classes:")) else f"detector {args.detector!r}: {msg}")
        return EXIT_USAGE
    warn_ap_threshold(args)  # (once the detector is built: a spec that fails says only that)
    made = new_folders(args.out)
    code = EXIT_INTERRUPTED
    try:
        try:
            ensure_out_dir(args.out)  # before any image is worked on
        except DensedetError as exc:
            error(PROG, one_line(exc))
            code = EXIT_USAGE
            return code
        from ..batch import Manifest

        busy = Manifest.held(args.out)
        if busy:
            error(PROG, busy)
            code = EXIT_USAGE
            return code
        sweep_temporaries(args.out)  # what a killed run was writing
        code = _detect_all(args, detector, job, inputs, stems, row_names(inputs, stems))
        return code
    finally:
        if code != EXIT_OK:
            remove_empty(made)  # every image failed (or none got far): no empty folder left behind


def _is_folder(path: str) -> bool:
    """Whether ``path`` is a folder; False where that cannot be told (a file in a folder the user
    may not enter, a name too long): that input's own error says why. ``Path.is_dir`` raised
    for those on Python 3.11 and 3.12, which ended the run after that input's error line, the
    inputs after it never run."""
    st = stat_or_none(path)
    return st is not None and stat.S_ISDIR(st.st_mode)


def _detect_all(args: argparse.Namespace, detector: Any, job: Job, inputs: list[str], stems: list[str],
                names: list[str | None]) -> int:
    failed = 0
    for k, (inp, stem, name) in enumerate(zip(inputs, stems, names)):
        progress = _Progress(Path(inp).name, enabled=not args.quiet)
        try:
            outcome = process_image(inp, detector, job, args.out, stem=stem, name=name, progress=progress)
        finally:
            progress.close()
        if outcome.status != "ok":
            if _is_folder(inp):  # a folder of photos: the batch verb runs over one
                error(PROG, f"{inp}: is a folder, not an image; 'densedet-tile batch {shell_quote(str(inp))} "
                            f"--out {shell_quote(str(args.out))}' runs over its images")
            else:
                error(PROG, outcome.error or f"{inp}: failed")
            failed += 1
            left = len(inputs) - k - 1
            if outcome.out_failed and left:  # the folder takes no files: every input after it would fail so
                error(PROG, f"--out {args.out}: cannot write there: the run stops; {left} more not begun; run it again "
                            "once the folder takes files (the images done are kept)")
                return EXIT_FAILED
            continue
        if args.quiet:
            continue
        print(
            f"{shown_name(Path(inp).name)}: {products_text(outcome.products, outcome.count_range, outcome.uncertain)}, "
            f"{counted(outcome.tiles, 'tile')}, "
            f"{outcome.width}x{outcome.height} px, {outcome.seconds:.2f} s -> {shown_name(str(outcome.outputs[-1]))}",
            file=sys.stderr, flush=True,
        )
    return EXIT_FAILED if failed else EXIT_OK
