"""The command line, the top floor: ``densedet-tile [VERB] ...``.

One module per verb (:mod:`.detect` is the default, then :mod:`.batch`, :mod:`.eval`,
:mod:`.audit`, :mod:`.convert`, :mod:`.adapt`) and :mod:`.options`, which turns the shared flags into specs.
The library never imports this package.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..errors import MissingDependencyError

__all__ = ["main", "VERBS"]

#: Verb -> (module, entry point). Anything else on the command line is an input of the default verb,
#: detect (which may also be named first: `densedet-tile detect shelf.jpg`).
VERBS: dict[str, tuple[str, str]] = {
    "batch": ("batch", "batch_main"),
    "eval": ("eval", "eval_main"),
    "audit": ("audit", "audit_main"),
    "convert-checkpoint": ("convert", "convert_main"),
    "adapt": ("adapt", "adapt_main"),
}


def _verb_hint(word: str) -> str | None:
    """One line for a first word that is no file and looks like a misspelled verb (``btach``),
    which would otherwise be taken for a missing image while the rest runs; None otherwise."""
    import difflib

    if word.startswith("-") or os.path.lexists(word) or "." in word or "/" in word or os.sep in word:
        return None
    names = list(VERBS) + ["detect"]
    # the start of a verb ("convert" for convert-checkpoint) or a misspelling of one
    close = [v for v in names if len(word) >= 3 and v.startswith(word.lower())] or \
        difflib.get_close_matches(word.lower(), names, n=1, cutoff=0.7)
    if not close:
        return None
    return (f"{word!r}: no such file, and not a verb; did you mean '{close[0]}'? "
            f"(verbs: {', '.join(VERBS)}; without one, the arguments are images to detect in)")


#: One in-process ``main()`` at a time: a call changes process-wide state for its run (the log
#: handler, ``sys.stdout``/``sys.stderr``, ``warnings.showwarning``, the environment) and puts it
#: back after, which two overlapping calls in threads would undo for each other.
_MAIN_LOCK = threading.RLock()


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``densedet-tile`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    Callable from a program: what it changes for its run (a log handler on the root logger when
    the program has none, the package logger's level, ``sys.stdout``/``sys.stderr``, the warnings
    display, environment variables for Ray) is put back when it returns; calls from several
    threads run one after the other."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _std_fds_open()
    with _MAIN_LOCK, _restored_environ(), _command_logging():
        return _main(argv)


def _std_fds_open() -> None:
    """Point a standard stream's descriptor (0, 1, 2) that was closed when the process started
    (``2>&-``, a daemon) at /dev/null: the next file opened would otherwise take its number, and
    what a library writes to "standard error" (ONNX Runtime's C++ log) would land in an output."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR)
            except OSError:
                return
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def _main(argv: list[str]) -> int:
    if argv and argv[0] == "detect" and not os.path.lexists("detect"):
        argv = argv[1:]  # the default verb, named (a file called "detect" is an image as before)
    elif argv and argv[0] not in VERBS:
        hint = _verb_hint(argv[0])
        if hint:
            print(f"densedet-tile: error: {hint}", file=sys.stderr)
            return 2
    module, entry = VERBS.get(argv[0], ("detect", "detect_main")) if argv else ("detect", "detect_main")
    if module != "detect":
        argv = argv[1:]
    verb = {"detect": "", "convert": "convert-checkpoint"}.get(module, module)
    from ..detector import base as detector_base

    quiet_was = detector_base.QUIET_ONNXRUNTIME_PROCESS
    detector_base.QUIET_ONNXRUNTIME_PROCESS = True  # the command owns its process (no onnxruntime import here)
    package_log = logging.getLogger("densedet_tile")
    level_was = package_log.level  # --debug lowers it for the run only (main may be called again)
    try:
        with _one_line_warnings(), _pipe_safe_streams() as streams:
            try:
                try:
                    run = getattr(importlib.import_module(f".{module}", __name__), entry)
                except KeyboardInterrupt:  # Ctrl-C while the verb loads (before its own handling)
                    print(f"densedet-tile{' ' + verb if verb else ''}: error: interrupted", file=sys.stderr)
                    return 130
                code = run(argv)
            except OSError as exc:
                return _system_error(verb, exc, package_log.isEnabledFor(logging.DEBUG))
            except ImportError as exc:
                # a verb that needs an extra which is not installed (adapt or convert-checkpoint on
                # the light install; adapt --help still reads), or one that is there but fails to
                # import (torch built for another CUDA: "libcudart.so.12: cannot open shared object
                # file"): one line naming the extra, not a traceback
                if isinstance(exc, MissingDependencyError) and isinstance(exc.__cause__, ImportError):
                    exc = exc.__cause__  # (a module's own wrapper, densedet_tile.train's: said in the verb's words)
                missing = isinstance(exc, ModuleNotFoundError)
                top = (exc.name or "").split(".")[0] if missing else _failing_package(exc)
                extra = None if top is None else _VERB_EXTRA.get(verb, {}).get(top) or _MODULE_EXTRA.get(top)
                if extra is None or (not missing and package_log.isEnabledFor(logging.DEBUG)):
                    raise
                # said as the verb says its own errors ("densedet-tile adapt: error: adapt needs ...",
                # as convert-checkpoint's own check does), not under the bare program's name
                print(f"{f'densedet-tile {verb}'.strip()}: error: "
                      f"{MissingDependencyError(verb or 'densedet-tile', top, extra, exc)}", file=sys.stderr)
                return 2
            finally:
                package_log.setLevel(level_was)
                detector_base.QUIET_ONNXRUNTIME_PROCESS = quiet_was
                if not quiet_was:  # (an outer run of the command still owns the process)
                    detector_base.restore_onnxruntime_logging()
        if code == 0 and streams.lost is not None:
            # a write of standard output failed and its writer swallowed the error (argparse's
            # --help and --version): not a success
            return _system_error(verb, streams.lost, False)
        return code
    except OSError as exc:  # the last flush of standard output failed (a full disk under `> file`)
        return _system_error(verb, exc, False)


def _system_error(verb: str, exc: OSError, debug: bool) -> int:
    """One line for a system error no verb caught itself (a file in a folder the user may not
    enter, standard output on a full disk), instead of a traceback; with ``--debug`` the
    traceback too. Returns the exit status."""
    from ..errors import one_line

    if debug:
        logging.getLogger("densedet_tile").debug("traceback of the error below", exc_info=exc)
    with contextlib.suppress(OSError, ValueError):  # standard error itself may be what failed
        print(f"{f'densedet-tile {verb}'.strip()}: error: {one_line(exc)}", file=sys.stderr, flush=True)
    from .options import exit_status_of

    return exit_status_of(exc)


class _LineFormatter(logging.Formatter):
    """Each log line as one line of the terminal: a file name holding a line break or a
    terminal's escape sequence is written escaped (``\\n``, ``\\x1b``); a traceback asked for
    with ``--debug`` keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        from ..errors import printable

        return printable(super().formatMessage(record))


@contextlib.contextmanager
def _command_logging() -> Iterator[None]:
    """The command's log lines (``densedet-tile: WARNING: ...`` on standard error, filtered by
    :class:`_OwnLines`) through a handler of its own on the root logger, removed afterwards. A
    program that calls :func:`main` with logging of its own set up (root handlers) keeps it as it
    is: its handlers show the records, unfiltered and unchanged."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    handler = logging.StreamHandler()  # sys.stderr as it is now
    handler.setFormatter(_LineFormatter("densedet-tile: %(levelname)s: %(message)s"))
    handler.addFilter(_OwnLines())
    handler.addFilter(_ReadersOnce())
    level_was = root.level
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level_was)


#: Environment variables a verb may set for its run (``batch``: Ray's display settings).
_VERB_ENVIRON = ("RAY_COLOR_PREFIX", "RAY_DEDUP_LOGS_SKIP_REGEX")


@contextlib.contextmanager
def _restored_environ() -> Iterator[None]:
    """The variables of :data:`_VERB_ENVIRON` as they were before the run, and only those (the
    program's other threads may change their own meanwhile)."""
    saved = {key: os.environ.get(key) for key in _VERB_ENVIRON}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: Optional packages a verb may import, and the extra that brings each.
_MODULE_EXTRA = {"torch": "torch", "torchvision": "torchvision", "mmdet": "mmdet", "mmengine": "mmdet",
                 "mmcv": "mmdet", "ray": "ray", "pycocotools": "train", "onnx": "onnx", "onnxscript": "onnx"}
#: Where a verb's extra is not the package's own: adapt trains the built-in model on torch and
#: torchvision only, which [torch] installs ([train] adds what scripts/ need: onnx, pycocotools).
_VERB_EXTRA = {"adapt": {"torch": "torch", "torchvision": "torch"}}


def _failing_package(exc: ImportError) -> str | None:
    """The optional package (a key of :data:`_MODULE_EXTRA`) in whose own code ``exc`` was
    raised, the outermost of them on its way up, or None."""
    import traceback

    for frame, _ in traceback.walk_tb(exc.__traceback__):
        top = str(frame.f_globals.get("__name__") or "").split(".")[0]
        if top in _MODULE_EXTRA:
            return top
    return None


@contextlib.contextmanager
def _pipe_safe_streams() -> Iterator[Any]:
    """Keep a verb working when its standard output or error is closed early (``densedet-tile
    audit ... | head -2``, ``densedet-tile adapt ... 2>&1 | head``): the first write that meets a
    closed pipe points that stream at /dev/null instead of raising BrokenPipeError, so the run
    goes on, its outputs are still written and no traceback is shown."""

    class _Safe:
        def __init__(self, f: Any, name: str, *, own: bool = False) -> None:
            self._f = f
            self._name = name
            self._own: Any = f if own else None  # the /dev/null it opened for itself, closed when the run ends
            self.error: OSError | None = None  # the failed write of standard output, if any

        def _failed(self, exc: OSError) -> OSError:
            # a write that failed for another reason than a closed pipe (a full disk under
            # `> metrics.txt`): the error names the stream, for the one line of _system_error,
            # and the stream goes to /dev/null (what it still buffers would fail again at exit,
            # in Python's own message of several lines)
            self._closed_pipe()
            # kept: a writer that swallows it (argparse's --help and --version do) does not make
            # the run a success (main checks ``lost``)
            self.error = OSError(exc.errno, exc.strerror or str(exc), self._name)
            return self.error

        def _closed_pipe(self) -> None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._f.fileno())
                os.close(devnull)
            if self._own is None:
                self._own = open(os.devnull, "w")  # noqa: SIM115 - closed when the streams are put back
            self._f = self._own

        def write(self, text: str) -> int:
            try:
                return self._f.write(text)
            except UnicodeEncodeError:  # a name that is no valid text here: written escaped, not lost
                enc = getattr(self._f, "encoding", None) or "utf-8"
                return self._f.write(text.encode(enc, "backslashreplace").decode(enc))
            except (BrokenPipeError, ValueError):  # the reader went away, or the stream was closed
                self._closed_pipe()
                return len(text)
            except OSError as exc:
                if self._name == "standard error":  # (closed: `2>&-`, or a full disk): only messages
                    self._closed_pipe()               # are lost, the run goes on
                    return len(text)
                raise self._failed(exc) from None

        def flush(self) -> None:
            try:
                self._f.flush()
            except (BrokenPipeError, ValueError):
                self._closed_pipe()
            except OSError as exc:
                if self._name == "standard error":
                    self._closed_pipe()
                    return
                raise self._failed(exc) from None

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

    saved = {name: getattr(sys, name) for name in ("stdout", "stderr")}
    for name, stream in saved.items():
        if stream is not None:  # None: started with it closed (a daemon, `>&-`): print() writes nothing
            setattr(sys, name, _Safe(stream, "standard output" if name == "stdout" else "standard error"))
        elif name == "stderr":  # ... but print(..., file=None) writes to standard output: messages go nowhere
            sys.stderr = _Safe(open(os.devnull, "w"), "standard error", own=True)  # noqa: SIM115 - closed when put back
    # the log lines go through the same guard (a handler keeps the stream it was given)
    kept = {h: h.stream for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and h.stream is not None
            and h.stream in (saved["stdout"], saved["stderr"])}
    for h, stream in kept.items():
        h.setStream(sys.stderr if stream is saved["stderr"] else sys.stdout)
    # what it yields: ``lost``, set once the streams are put back, is the failed write of standard
    # output that its writer did not raise on (None if none)
    state = types.SimpleNamespace(lost=None)
    try:
        yield state
    finally:
        failed = None
        for name, stream in saved.items():
            try:
                getattr(sys, name).flush()
            except (BrokenPipeError, ValueError, AttributeError):
                pass
            except OSError as exc:  # (the streams are put back first, then it is reported)
                failed = failed or exc
            current = getattr(sys, name)
            if isinstance(current, _Safe) and current.error is not None:
                state.lost = state.lost or current.error
            if isinstance(current, _Safe) and current._own is not None:
                current._own.close()
            setattr(sys, name, stream)
        for h, stream in kept.items():
            h.setStream(stream)
        if failed is not None:
            raise failed


_PACKAGE = Path(__file__).resolve().parent.parent

#: Libraries the image readers call: what they log about a damaged file (tifffile's ERROR lines
#: for each bad tag, libpng's warnings relayed by imagecodecs) comes back as the reader's own one
#: line naming the file, or does not matter, so their log records are not shown.
_READER_LOGGERS = ("tifffile", "imagecodecs", "PIL")


class _ReadersOnce(logging.Filter):
    """The image readers' warnings about a file (a bad orientation tag, an animation read at
    its first frame) once per command: ``audit`` reads a photo twice (to detect, then to look
    at its gaps' pixels), and said each of them twice."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("densedet_tile.tiler.readers"):
            return True
        key = (record.name, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class _OwnLines(logging.Filter):
    """The command's log lines: the package's records as they are; other libraries' records
    with their logger's name in front (``densedet-tile: WARNING: [ray] ...``), so a line is not
    taken for the tool's own; the image readers' libraries' records dropped (see
    :data:`_READER_LOGGERS`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        top = record.name.split(".")[0]
        if top in ("densedet_tile", "root") or getattr(record, "_densedet_named", False):
            return True
        if top in _READER_LOGGERS:
            return False
        record.msg, record.args = f"[{record.name}] {record.getMessage()}", None
        record._densedet_named = True  # a record seen by two handlers is named once
        return True


@contextlib.contextmanager
def _one_line_warnings() -> Iterator[None]:
    """While a verb runs, show the package's own warnings as the log lines are shown
    (``densedet-tile: WARNING: ...``) instead of Python's two lines with a file name and a line of
    our source; warnings from other libraries keep Python's format, whose file name helps to find
    them. The previous ``warnings.showwarning`` comes back afterwards."""
    shown = warnings.showwarning

    def show(message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        try:
            ours = Path(filename).resolve().is_relative_to(_PACKAGE)
        except (OSError, ValueError):
            ours = False
        if ours:
            logging.getLogger("densedet_tile").warning("%s", message)
        elif str(message).startswith(("Corrupt EXIF data", "Tag data larger than file")) \
                and f"{os.sep}PIL{os.sep}" in str(filename):
            # Pillow's, on opening a photo whose EXIF the reader then reports in its own line
            # (naming the file; Pillow's names a line of its own source), or a tag of no use here
            return
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
