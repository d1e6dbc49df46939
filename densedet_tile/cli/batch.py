"""``densedet-tile batch``: many images (or one giant image) on a pool of workers.

A thin layer over :func:`densedet_tile.batch.run_batch`: the same specs as the single-image
command (tiling, merge, run, detector recipe, outputs) go to every worker whole. Exit 0 when
every image is done, 1 when some failed (or the output folder failed under the run), 2 for bad
usage, a detector that cannot be built, workers no node of the cluster can hold, or a Ray
cluster that cannot be reached or goes away mid-run, 130 for Ctrl-C and 143 for SIGTERM (the
run log is closed either way: run the same command again to go on).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Sequence

from ..batch import Manifest, run_batch
from ..errors import DensedetError, one_line, shown_name
from ..io import new_folders, remove_empty
from ..runner import Job
from .options import (
    EXIT_FAILED,
    StopSignals,
    EXIT_OK,
    EXIT_USAGE,
    add_detector_options,
    add_output_options,
    add_tiling_options,
    counted,
    detector_spec_from_args,
    warn_ap_threshold,
    error,
    exit_status_of,
    nonneg_float,
    nonneg_int,
    parse,
    products_text,
    positive_float,
    positive_int,
    specs_from_args,
)

__all__ = ["batch_main", "build_parser"]

PROG = "densedet-tile batch"


def build_parser() -> argparse.ArgumentParser:
    """The ``densedet-tile batch`` argument parser."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Detect products in many images (or one giant image) on a pool of workers: "
        "a local or remote Ray cluster, or this process when Ray is not installed. Restartable: "
        "images whose outputs are complete are skipped; every image's result is logged in "
        "OUT/manifest.jsonl and summarised in OUT/manifest.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, or folders of them (not recursive)")
    add_tiling_options(p)
    add_detector_options(p)
    out = add_output_options(p, out_required=True)
    out.add_argument("--redo", action="store_true",
                     help="redo every image, also those whose outputs are complete, to write them all anew "
                          "(those an older engine's rules made are redone without it)")
    r = p.add_argument_group("workers")
    r.add_argument("--ray", default="default", metavar="ADDRESS",
                   help="'local' (start Ray on this machine), 'auto' (join $RAY_ADDRESS or the cluster running "
                   "here), ray://HEAD:10001 or HEAD:6379 (join that cluster), 'none' (this process only), or "
                   "'default' (the default): auto when $RAY_ADDRESS is set, else local when Ray is installed, "
                   "else none")
    r.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="number of workers (default: as many as the cluster holds with --cpus-per-worker and "
                        "--gpus-per-worker each, at most one per image without --split)")
    r.add_argument("--cpus-per-worker", type=nonneg_float, default=1.0, metavar="X",
                   help="CPUs reserved by each worker (default: %(default)s)")
    r.add_argument("--gpus-per-worker", type=nonneg_float, default=0.0, metavar="X",
                   help="GPUs reserved by each worker, e.g. 1 or 0.5 (default: %(default)s)")
    r.add_argument("--split", action="store_true",
                   help="split each image's tiles across all workers (for a few giant panoramas)")
    r.add_argument("--retries", type=nonneg_int, default=2, metavar="N",
                   help="times an image is retried when its worker dies (default: %(default)s)")
    r.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="seconds one image (with --split: one run of tiles) may take on a worker before the "
                   "worker is stopped and the image retried (default: no limit)")
    return p


#: Ray's messages about the cluster that this command already tells in its own words: the
#: dump of the raylet's last log lines when a node goes away (the run ends with one error line).
_RAY_SKIP = r"Raylet is terminated"


def _quiet_ray() -> None:
    """Settings for Ray's own messages to this terminal, unless the caller chose otherwise:
    no colour codes when the output is not a terminal (a log file), and no raylet dump for a
    lost node. Ray reads them when it is first imported: in a process that already imported
    it (a program calling this function) nothing is changed."""
    if "ray" in sys.modules:
        return
    terminal = all(f is not None and f.isatty() for f in (sys.stdout, sys.stderr))  # None: started closed
    if not terminal:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS_SKIP_REGEX", _RAY_SKIP)


def batch_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile batch``; returns the exit status."""
    args = parse(build_parser(), argv, intermixed=True)
    if isinstance(args, int):
        return args
    if args.debug:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    args.out = os.path.expanduser(args.out)  # once: the folder named in messages is the one written
    _quiet_ray()
    with StopSignals() as stop:
        try:
            return stop.outcome(_batch(args, argv, stop))
        except KeyboardInterrupt:
            # (said of a --redo run too, which started over from the first image when run again;
            # an outside review)
            again = ("re-run with --redo to start over from the first image, or without --redo to keep what is "
                     "written: the images it had not reached keep their earlier outputs and are not redone"
                     if args.redo else "re-run the same command to continue where it stopped")
            error(PROG, f"{stop.reason} ({again})")
            return stop.exit_status


def image_line(rec: dict[str, Any]) -> str:
    """The line said for an image a batch run finished: products, tiles, time, worker, and which
    attempt it was when its worker was lost before (the "worker ... died; retrying its item"
    warning names no image: this line says which)."""
    text = products_text(rec.get("products"), rec.get("count_range"), rec.get("uncertain"))
    tries = rec.get("attempts")
    again = f", attempt {tries} (a worker was lost before)" if isinstance(tries, int) and tries > 1 else ""
    return (f"{shown_name(Path(rec['input']).name)}: {text}, {counted(rec.get('tiles'), 'tile')}, "
            f"{rec.get('seconds', 0):.2f} s [{rec.get('worker')}]{again}")


def _system_error_text(out: str, exc: OSError) -> str:
    """The line for a system error that stopped the run: ``--out OUT:`` leads it where the error
    is about the output folder, or names no file; an error about another file (one given on the
    command line, a detector's file) names that file alone."""
    text = one_line(exc)
    name = exc.filename
    if isinstance(name, (str, bytes, os.PathLike)):
        try:
            there = os.path.commonpath([os.path.abspath(os.fsdecode(name)), os.path.abspath(out)]) \
                == os.path.abspath(out)
        except ValueError:  # (another drive on Windows)
            there = False
        if not there:
            return text
    return f"--out {out}: {text}"


def _batch(args: argparse.Namespace, argv: Sequence[str], stop: StopSignals) -> int:
    counted = []  # whether the AP-threshold warning was said: with the first image detected

    def show(rec: dict[str, Any]) -> None:
        if rec["status"] == "ok" and not counted:
            # (as detect says it, once the detector is built and counts: not before a usage
            # error, a detector that cannot be built, or a run whose images were all done)
            counted.append(True)
            warn_ap_threshold(args)
        if args.quiet and rec["status"] != "error":
            return
        name = shown_name(Path(rec["input"]).name)
        if rec["status"] == "error":
            error(PROG, rec.get("error") or f"{rec['input']}: failed")
        elif rec["status"] == "skipped":
            print(f"{name}: skipped (outputs complete)", file=sys.stderr, flush=True)
        else:
            print(image_line(rec), file=sys.stderr, flush=True)

    made: list[Path] = []
    try:  # (what finding the folders to make raises is an --out error too)
        made = new_folders(args.out)
        tiling, merge, run = specs_from_args(args)
        job = Job(tiling=tiling, merge=merge, run=run, formats=args.format, preview=args.preview,
                  yolo_scores=args.yolo_scores)
        summary = run_batch(
            args.inputs, args.out, detector=detector_spec_from_args(args), job=job, ray=args.ray,
            workers=args.workers, cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker,
            split=args.split, retries=args.retries, timeout=args.timeout, on_record=show,
            run_info={"argv": list(argv)}, stop_signal=lambda: stop.signum, redo=args.redo,
        )
    except DensedetError as exc:
        if args.debug:
            traceback.print_exc()
        error(PROG, one_line(exc))
        remove_empty(made)  # a run that never started (a cluster out of reach...) leaves no folder
        return EXIT_USAGE
    except OSError as exc:  # a system error the run stopped on (the output folder full or taken away...)
        if args.debug:
            traceback.print_exc()
        error(PROG, _system_error_text(args.out, exc))
        remove_empty(made)  # (a run stopped before its first image leaves no folder of its own)
        return exit_status_of(exc)  # a path given wrong (a folder the user may not write to): 2, else 1
    if not args.quiet:
        unsure = sum(1 for r in summary.records if r.get("status") in ("ok", "skipped") and r.get("uncertain"))
        print(f"batch {summary.run} ({summary.backend}, {summary.workers} worker(s)): {summary.ok} done, "
              f"{summary.skipped} skipped, {summary.failed} failed in {summary.seconds:.1f} s; "
              + (f"{unsure} with an uncertain count; " if unsure else "") +
              f"manifest: {Manifest(args.out).json_path}", file=sys.stderr, flush=True)
    return EXIT_FAILED if summary.failed else EXIT_OK
