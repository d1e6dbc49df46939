"""``densedet-tile adapt PHOTOS_DIR --out MODEL.pt``: fit the built-in model to your own photos.

Self-training on unlabelled photos (see :mod:`densedet_tile.train.adapt`): the model labels the
photos with test-time augmentation, keeps the confident boxes, ignores the uncertain ones, and
is fine-tuned on crops of the photos mixed with generated shelves, for a few rounds. Use the
result with ``densedet-tile IMAGE --detector default --checkpoint MODEL.pt``.

Exit status: 0 when the weights were written; 1 when the run failed (no training step within the
budget, diverged training, an unexpected error); 2 for bad options, a folder without readable or
decodable images, malformed ``--from`` weights, or an output in the way (found before any work);
130 when stopped with Ctrl-C, 143 when stopped with SIGTERM (the first signal stops after the
current step or photo and saves the state, so that ``--resume`` continues; a second one aborts at
once, keeping the last saved state if there is one).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time
from typing import Any, Sequence

from ..errors import DensedetError, one_line, printable
from .options import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    StopSignals,
    device_name,
    error,
    fraction,
    nonneg_int,
    parse,
    positive_float,
    positive_int,
    shell_quote,
    thread_count,
    tile_px,
)
from .options import _max_pixels  # the same --max-pixels parsing as the other verbs

__all__ = ["build_parser", "adapt_main"]

PROG = "densedet-tile adapt"


def _scales(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 1,1.5; got {text!r}") from None
    if not vals or any(not 0.25 <= v <= 4.0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected scales in [0.25, 4] such as 1,1.5; got {text!r}")
    if len(set(vals)) < len(vals):  # a view twice would count as two views agreeing with each other
        raise argparse.ArgumentTypeError(f"expected different scales (each is one view), such as 1,1.5; got {text!r}")
    return vals


def _crop_side(text: str) -> int:
    """A training crop side: a multiple of 32, at least 64 (the network's stride)."""
    v = positive_int(text)
    if v < 64 or v % 32:
        raise argparse.ArgumentTypeError(f"expected a multiple of 32 of at least 64, got {text!r}")
    return v


def _serve_thr(text: str) -> float | None:
    """A served score threshold in (0, 1), or ``auto`` (None: picked from counts at the end)."""
    if text.strip().lower() == "auto":
        return None
    try:
        return fraction(0.0, 1.0, lo_open=True, hi_open=True)(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected auto or a value in (0, 1), got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from ..train.pseudo import LabelSettings  # (both without torch: --help works on the light install)
    from ..train.settings import AdaptSettings

    d, lab = AdaptSettings(), LabelSettings()
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fit the built-in model to your own shelf photos without labelling them (self-training: "
        "the model labels the photos with test-time augmentation, keeps confident boxes, ignores uncertain ones, "
        "and is fine-tuned on crops of them mixed with generated shelves, in rounds). Then: densedet-tile "
        "IMAGE --detector default --checkpoint OUT.",
        epilog="Needs torch: pip install 'densedet-tile[torch]' (the light install shows this help, but cannot train).",
    )
    p.add_argument("photos", metavar="PHOTOS_DIR", help="folder of photos (searched recursively)")
    p.add_argument("--out", required=True, metavar="FILE.pt",
                   help="adapted weights to write (torch weights: a .pt name, not .onnx); FILE.report.json/.txt "
                   "and, until the run completes, FILE.state.pt go beside it")
    b = p.add_argument_group("budget and run")
    b.add_argument("--minutes", type=positive_float, default=None,
                   help="wall-time budget, labelling included (default: 60 unless --steps is given)")
    b.add_argument("--steps", type=positive_int, default=None, help="optimiser-step budget (reproducible runs)")
    b.add_argument("--device", type=device_name, default="auto", help="auto, cpu, cuda or cuda:N (default: %(default)s)")
    b.add_argument("--threads", type=thread_count, default=None,
                   help="CPU threads for torch (default: torch's choice; 1 is faster on a busy machine)")
    b.add_argument("--from", dest="base", default=None, metavar="BASE.pt",
                   help="start from these weights (a previous adapt) instead of the built-in ones")
    b.add_argument("--resume", action="store_true", help="continue the stopped run whose state lies beside --out")
    b.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    b.add_argument("--holdout", type=nonneg_int, default=d.holdout, metavar="N",
                   help="keep N photos out of training and report the model's agreement on them before and after")
    b.add_argument("--rounds", type=positive_int, default=d.rounds, help="labelling rounds (default: %(default)s)")
    b.add_argument("--seed", type=nonneg_int, default=d.seed, help="seed of every random choice (default: %(default)s)")
    b.add_argument("--max-pixels", type=_max_pixels, default=d.max_pixels, metavar="N",
                   help="skip photos with more than N pixels; 'none' (or 0) for no limit (default: 2**31)")
    t = p.add_argument_group("training")
    t.add_argument("--size", type=_crop_side, default=d.size, metavar="PX",
                   help="training crop side, a multiple of 32 (default: %(default)s)")
    t.add_argument("--batch", type=positive_int, default=d.batch, help="crops per step (default: %(default)s)")
    t.add_argument("--synth", type=fraction(0.0, 1.0, hi_open=True), default=d.synth, metavar="F",
                   help="share of generated shelves in each batch, against drift (default: %(default)s)")
    t.add_argument("--lr", type=positive_float, default=d.lr, help="peak learning rate (default: %(default)s)")
    t.add_argument("--serve-thr", type=_serve_thr, default=d.serve_thr, metavar="X",
                   help="score threshold written into the adapted weights, used when they serve without "
                        "--score-thr; 'auto' (the default) picks the one at which they count as many boxes "
                        "on --calib-photos photos as the larger of their own pseudo-labels and the starting "
                        "weights' boxes (self-training lifts scores)")
    t.add_argument("--calib-photos", type=positive_int, default=d.calib_photos, metavar="N",
                   help="training photos that pick the served threshold, never held-out ones (default: %(default)s)")
    l_ = p.add_argument_group("pseudo-labels")
    l_.add_argument("--tile", type=tile_px, default=lab.tile, metavar="PX",
                    help="tile side the model will serve with (default: %(default)s)")
    l_.add_argument("--overlap", type=fraction(0.0, 1.0, hi_open=True), default=lab.overlap, metavar="F",
                    help="tile overlap (default: %(default)s)")
    l_.add_argument("--scales", type=_scales, default=lab.scales, metavar="S1,S2",
                    help="test-time scales; 1.5 cuts tiles of tile/1.5 px (zoom in) (default: 1,1.5)")
    l_.add_argument("--no-flip", action="store_true", help="no mirrored views")
    l_.add_argument("--score-hi", type=fraction(0.0, 1.0, hi_open=True), default=lab.score_hi, metavar="X",
                    help="mean view score a pseudo-label needs (default: %(default)s)")
    l_.add_argument("--score-lo", type=fraction(0.0, 1.0, hi_open=True), default=lab.score_lo, metavar="X",
                    help="boxes from X up that are not pseudo-labels become ignore regions (default: %(default)s)")
    l_.add_argument("--min-views", type=fraction(0.0, 1.0, lo_open=True), default=lab.min_views, metavar="F",
                    help="share of the views that must find a box (default: %(default)s)")
    o = p.add_argument_group("output")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    o.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    return p


#: Options whose values belong to a run: with --resume the saved ones are used.
_RUN_OPTIONS = ("base", "overwrite", "holdout", "rounds", "seed", "max_pixels", "size", "batch", "synth", "lr",
                "serve_thr", "calib_photos", "tile", "overlap", "scales", "no_flip", "score_hi", "score_lo", "min_views")

#: Signals that stop a run cleanly (the first one) and the exit status they end it with.
#: (SIGHUP too: a closed terminal or a dropped ssh session killed a run without a word or a saved
#: state, where the set-up before it ended in one line: an outside review)
_STOP_SIGNALS = {"SIGINT": EXIT_INTERRUPTED, "SIGTERM": 128 + 15, "SIGHUP": 128 + 1}


def _given(argv: Sequence[str], dests: Sequence[str]) -> list[str]:
    """Which of ``dests`` appear on the command line, whatever their values (an option given with
    its default value counts): ``argv`` parsed again with those options defaulting to nothing."""
    probe = build_parser()
    for action in probe._actions:  # set_defaults would put the marker itself into the namespace
        if action.dest in dests:
            action.default = argparse.SUPPRESS
    ns = probe.parse_args(list(argv))
    return [k for k in dests if hasattr(ns, k)]


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


#: What each phase of a run is called in the progress display.
_PHASES = {"before": "held-out check (before)", "label": "labelling", "read": "reading photos",
           "train": "training", "count": "counting the starting weights' boxes", "calibrate": "picking the served threshold",
           "after": "held-out check (after)"}


def _describe(e: dict[str, Any]) -> str:
    """The phase of a progress event, with its round when it has one."""
    what = _PHASES.get(e["phase"], e["phase"])
    return what if e["phase"] in ("before", "read", "count", "calibrate", "after") else f"round {e['round']}/{e['rounds']} {what}"


class _Bar:
    """One tqdm line on stderr: phase, round, step, loss and time left."""

    def __init__(self, enabled: bool) -> None:
        self.enabled, self.bar, self.phase = enabled, None, None

    def __call__(self, e: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        key = (e["phase"], e["round"])
        if key != self.phase:
            self.close()
            self.phase = key
            # the run's own time left (in the postfix), not tqdm's estimate and rate, which jump
            # when a resumed or time-budgeted round sets the count directly
            self.bar = tqdm(total=e["total"] or None, desc=_describe(e), file=sys.stderr, dynamic_ncols=True, leave=False,
                            unit="step" if e["phase"] == "train" else "photo",
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        bar = self.bar
        if e["phase"] == "train":
            total = e.get("steps_total")
            if total and total != bar.total:
                bar.total = total
            bar.n = e["step"]
        else:
            bar.total = e["total"] or None
            bar.n = e["done"]
        post = {}
        if e["phase"] == "train":
            post["step"] = e["step"]
            if e.get("loss") is not None:
                post["loss"] = f"{e['loss']:.3f}"
        post["left"] = _clock(e.get("seconds_left"))
        bar.set_postfix(post, refresh=False)
        bar.refresh()

    def write(self, msg: str) -> None:
        if self.bar is not None:
            from tqdm import tqdm

            tqdm.write(printable(msg), file=sys.stderr)
        else:
            print(printable(msg), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Lines:
    """Progress as plain lines for a log file (stderr is not a terminal): one when the phase
    changes, then at most one every ``every`` seconds."""

    def __init__(self, enabled: bool, every: float = 30.0) -> None:
        self.enabled, self.every, self.phase, self.last = enabled, every, None, -1e9

    def __call__(self, e: dict[str, Any]) -> None:
        if not self.enabled:
            return
        key = (e["phase"], e["round"])
        now = time.monotonic()
        if key == self.phase and now - self.last < self.every:
            return
        self.phase, self.last = key, now
        if e["phase"] == "train":
            total = e.get("steps_total")
            where = f"step {e['step']}" + (f"/{total}" if total else "")
            if e.get("loss") is not None:
                where += f", loss {e['loss']:.3f}"
        else:
            where = f"photo {e['done']}/{e['total']}"
        print(f"{PROG}: {_describe(e)}: {where}, {_clock(e.get('seconds_left'))} left", file=sys.stderr, flush=True)

    def write(self, msg: str) -> None:
        print(printable(msg), file=sys.stderr, flush=True)

    def close(self) -> None:
        pass


def adapt_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile adapt``; returns the exit status."""
    parser = build_parser()
    args = parse(parser, argv)
    if isinstance(args, int):
        return args
    if args.debug:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    # (torch loads here: a few seconds in which Ctrl-C must not print a traceback either, nor
    # SIGTERM end it without a word: an outside review)
    with StopSignals() as loading:
        try:
            from ..train.adapt import AdaptFailed, AdaptRun, AdaptSettings, report_text
            from ..train.pseudo import LabelSettings
        except KeyboardInterrupt:
            error(PROG, f"{loading.reason} before the run started; nothing was written")
            return loading.exit_status
    if loading.signum is not None:  # (a stop an import turned into its own error)
        error(PROG, f"{loading.reason} before the run started; nothing was written")
        return loading.exit_status

    if args.resume:
        given = [f"--{k.replace('_', '-')}" if k != "base" else "--from" for k in _given(argv, _RUN_OPTIONS)]
        if given:
            error(PROG, f"--resume continues the saved run with its own settings; leave out {', '.join(given)} "
                        "(only the budget, --minutes or --steps, may change)")
            return EXIT_USAGE
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 60.0
    if args.score_lo > args.score_hi:  # (LabelSettings says it with its field names)
        error(PROG, f"--score-lo {args.score_lo:g} is above --score-hi {args.score_hi:g}: boxes from --score-lo up "
                    "that are not pseudo-labels become ignore regions, so it must not be above --score-hi")
        return EXIT_USAGE
    try:
        labels = LabelSettings(scales=args.scales, flip=not args.no_flip, min_views=args.min_views,
                               score_hi=args.score_hi, score_lo=args.score_lo, tile=args.tile, overlap=args.overlap)
        settings = AdaptSettings(minutes=minutes, steps=args.steps, rounds=args.rounds, holdout=args.holdout,
                                 seed=args.seed, size=args.size, batch=args.batch, synth=args.synth, lr=args.lr,
                                 serve_thr=args.serve_thr, calib_photos=args.calib_photos, max_pixels=args.max_pixels, labels=labels)
    except DensedetError as exc:
        error(PROG, one_line(exc))
        return EXIT_USAGE
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    bar: Any = (_Bar if sys.stderr.isatty() else _Lines)(enabled=not args.quiet)
    stop: dict[str, Any] = {"asked": None}  # the name of the first stop signal

    def on_signal(signum, frame):  # the first stop signal: stop cleanly after this step; a second: at once
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = signal.Signals(signum).name
        again = "Ctrl-C" if signum == signal.SIGINT else "the signal"
        bar.write(f"{PROG}: {stop['asked']}: stopping after this step or photo and saving the state "
                  f"({again} again to abort at once)")

    budget = None
    if args.resume:  # the saved run's budget, less what this call gives again
        budget = {k: getattr(args, k) for k in ("minutes", "steps") if getattr(args, k) is not None}
        settings = None
    # a stop while setting up (torch's import, reading the photos) ends it with one line; SIGTERM
    # there killed it without a word (an outside review)
    with StopSignals() as setup:
        try:
            job = AdaptRun(args.photos, args.out, settings, base=args.base, device=args.device, resume=args.resume,
                           overwrite=args.overwrite, budget=budget, progress=bar,
                           should_stop=lambda: bool(stop["asked"]), log=lambda m: bar.write(f"{PROG}: {m}"))
        except DensedetError as exc:  # inputs and options: nothing was done yet
            if args.debug:
                raise
            error(PROG, one_line(exc))
            return setup.outcome(EXIT_USAGE)
        except KeyboardInterrupt:  # a stop while setting up: nothing was written
            error(PROG, f"{setup.reason} before the run started; nothing was written")
            return setup.exit_status
    previous = {}
    if _main_thread():
        for name in _STOP_SIGNALS:
            if hasattr(signal, name):
                previous[name] = signal.signal(getattr(signal, name), on_signal)
    state = job.paths["state"]

    def kept() -> str:  # what a failed or aborted run leaves to resume from
        return (f"the last saved state, {state}, is kept for --resume" if state.exists()
                else "no state was saved yet, so there is nothing to resume")

    try:
        result = job.run()
    except KeyboardInterrupt:
        bar.close()
        error(PROG, f"aborted; {kept()}")
        return _STOP_SIGNALS.get(stop["asked"] or "SIGINT", EXIT_INTERRUPTED)
    except AdaptFailed as exc:  # its message says what was kept
        bar.close()
        if args.debug:
            raise
        error(PROG, f"failed: {one_line(exc)}")
        return EXIT_FAILED
    except Exception as exc:  # report, don't dump
        bar.close()
        if args.debug:
            raise
        what = one_line(exc) if isinstance(exc, DensedetError) else f"{type(exc).__name__}: {one_line(exc)}"
        error(PROG, f"failed: {what} ({kept()}; --debug for details)")
        return EXIT_FAILED
    finally:
        for name, handler in previous.items():  # None: a handler not set from Python, put the default back
            signal.signal(getattr(signal, name), signal.SIG_DFL if handler is None else handler)
    bar.close()
    print(report_text(result.report), flush=True)
    if result.status != "done":
        error(PROG, f"stopped; continue with: {PROG} {shell_quote(str(args.photos))} "
                    f"--out {shell_quote(str(args.out))} --resume")
        return _STOP_SIGNALS.get(stop["asked"] or "SIGINT", EXIT_INTERRUPTED)
    print(f"wrote {result.paths['weights']}, {result.paths['report_json'].name}, {result.paths['report_txt'].name}",
          file=sys.stderr, flush=True)
    return EXIT_OK


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
