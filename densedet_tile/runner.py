"""Process one image file end to end: detect, then write every requested output atomically.

Shared by the single-image command, ``densedet-tile batch`` in this process and its Ray
workers, so all of them write exactly the same files.
"""

from __future__ import annotations

import builtins
import contextlib
import contextvars
import csv
import errno
import hashlib
import io
import json
import logging
import os
import re
import stat
import threading
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Iterable, Iterator, Sequence, TypeVar

from .errors import DensedetError, DetectorError, InvalidInputError, caller_level, one_line, shown_name
from .io import (AUDIT_SUFFIXES, FORMATS, OUTPUT_SUFFIXES, SCHEMA, YOLO_CLASSES_FILE, another_existing_file, case_blind,
                 is_our_preview, output_paths, same_path, write_coco, write_csv, write_files, write_json, write_preview,
                 write_yolo)
from .types import MergeSpec, RunSpec, TileSpec, finite_or_name

if TYPE_CHECKING:
    from .pipeline import ImageResult
    from .tiler.readers import ImageSource

log = logging.getLogger(__name__)

_P = TypeVar("_P", str, Path)

__all__ = ["RULES_VERSION", "Job", "Outcome", "as_json", "build_detector", "check_name_lengths", "detector_identity",
           "error_line", "input_state", "output_stem", "outputs_complete", "process_image", "ready_detector", "redo_reason",
           "refuse_outputs_over_inputs", "request_key", "say_again", "unique_stems", "without_earlier_outputs"]


@dataclass(frozen=True)
class Job:
    """Everything but the detector that decides what happens to one image file.

    The three engine specs plus the outputs: ``formats`` beside the JSON (any of ``csv``,
    ``coco``, ``yolo``; ``json`` is always written), whether to draw a ``preview``, and whether
    YOLO label lines end with the score (``yolo_scores``).
    """

    tiling: TileSpec = field(default_factory=TileSpec)
    merge: MergeSpec = field(default_factory=MergeSpec)
    run: RunSpec = field(default_factory=RunSpec)
    formats: tuple[str, ...] = ("json",)
    preview: bool = False
    yolo_scores: bool = False
    #: What was asked (:func:`request_key`: the specs before they were fitted to a detector or
    #: a VRAM budget, and the detector), recorded with each result; a restarted batch skips an
    #: image only when its result was asked for the same way. None: taken from the specs alone.
    request: Any = field(default=None, hash=False)

    def __post_init__(self) -> None:
        for value, cls in ((self.tiling, TileSpec), (self.merge, MergeSpec), (self.run, RunSpec)):
            if not isinstance(value, cls):
                raise InvalidInputError(f"Job needs a {cls.__name__}, got {type(value).__name__}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad:
            raise InvalidInputError(f"unknown output format(s) {', '.join(bad)}; choose from {', '.join(FORMATS)}")
        object.__setattr__(self, "formats", tuple(dict.fromkeys(self.formats)))
        if self.yolo_scores and "yolo" not in self.formats:  # asked for, it would be silently moot
            raise InvalidInputError("yolo_scores (--yolo-scores) needs the yolo format (--format yolo)")

    @property
    def reserved_stems(self) -> frozenset[str]:
        """Stems no image may take: ``classes`` when YOLO labels are written (``classes.txt``
        beside them lists the classes; an image ``classes.jpg`` becomes ``classes-2``)."""
        return frozenset({Path(YOLO_CLASSES_FILE).stem}) if "yolo" in self.formats else frozenset()

    def paths(self, out_dir: str | Path, stem: str) -> dict[str, Path]:
        """Where each output of the image named ``stem`` goes; the JSON is always among them."""
        return output_paths(out_dir, stem, tuple(f for f in self.formats if f != "json"), self.preview)


@dataclass(frozen=True)
class Outcome:
    """What happened to one input: ``status`` is ``"ok"`` or ``"error"``."""

    input: str
    status: str
    products: int | None = None
    tiles: int | None = None
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0
    error: str | None = None
    outputs: tuple[str, ...] = ()
    #: The SHA-256 of each output but the JSON as written, by file name (as the JSON's
    #: ``outputs_sha256``): the batch manifest keeps it, to tell later which files are still ours.
    outputs_sha256: dict[str, str] = field(default_factory=dict)
    count_range: tuple[int, int | None] | None = None
    uncertain: bool | None = None
    #: The warnings the engine gave for this image (``process_image(capture_warnings=True)``):
    #: ``(format, text)`` pairs, the log message's format string (what kind of warning) and its text.
    warnings: tuple[tuple[str, str], ...] = ()
    #: The error was the output folder's, not the image's (:func:`out_folder_failed`): the next
    #: image would fail the same way.
    out_failed: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input, "status": self.status, "products": self.products, "tiles": self.tiles,
            "width": self.width, "height": self.height, "seconds": round(self.seconds, 3),
            "error": self.error, "outputs": list(self.outputs), "outputs_sha256": dict(self.outputs_sha256),
            "count_range": None if self.count_range is None else list(self.count_range), "uncertain": self.uncertain,
            "warnings": [list(w) for w in self.warnings],
            **({"out_failed": True} if self.out_failed else {}),
        }


#: The list the warnings of the image this thread (or a thread started in its context) works on
#: go to, while :func:`caught_warnings` holds them back; None elsewhere.
_CAUGHT: "contextvars.ContextVar[list[tuple[str, str]] | None]" = contextvars.ContextVar("densedet_caught",
                                                                                      default=None)


class _Caught(logging.Handler):
    """On the package logger while some thread holds its warnings back (the logger then passes
    nothing up itself): keeps that thread's warnings, and hands every other record (its records
    below WARNING, ``--debug``'s, and all of other threads') to the handlers above, as
    propagation would have."""

    def __init__(self, parent: logging.Logger | None) -> None:
        super().__init__(logging.NOTSET)
        self.parent = parent

    def emit(self, record: logging.LogRecord) -> None:
        caught = _CAUGHT.get()
        if caught is None or record.levelno < logging.WARNING:
            if self.parent is not None and _HOOKS.get("propagate", True):  # (as the logger was set)
                self.parent.callHandlers(record)
            return
        try:
            text = record.getMessage()
        except Exception:  # pragma: no cover - a message that cannot be formatted
            text = str(record.msg)
        caught.append((_kind_of(str(record.msg), text), text))


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    """``warnings.showwarning`` while some thread holds its warnings back: that thread's go to
    its list, every other thread's to the function it replaced."""
    caught = _CAUGHT.get()
    if caught is None:
        # (the function it replaced: kept after the last capture too, should someone put this back)
        _HOOKS.get("showwarning", warnings._showwarning_orig)(message, category, filename, lineno, file, line)
        return
    text = f"{category.__name__}: {message}"
    caught.append((text, text))


_HOOKS_LOCK = threading.Lock()
_HOOKS: dict[str, Any] = {"users": 0}


def _hold(on: bool) -> None:
    """Put the hooks in place for the first thread that holds its warnings back, and take them
    away after the last one."""
    logger = logging.getLogger("densedet_tile")
    with _HOOKS_LOCK:
        if on:
            if _HOOKS["users"] == 0:
                _HOOKS.update(handler=_Caught(logger.parent), propagate=logger.propagate)
                if warnings.showwarning is not _show_warning:  # (put back by someone's catch_warnings)
                    _HOOKS["showwarning"] = warnings.showwarning
                logger.addHandler(_HOOKS["handler"])
                logger.propagate = False
                warnings.showwarning = _show_warning
            _HOOKS["users"] += 1
            return
        _HOOKS["users"] -= 1
        if _HOOKS["users"] == 0:
            logger.removeHandler(_HOOKS.pop("handler"))
            logger.propagate = _HOOKS.pop("propagate")
            if warnings.showwarning is _show_warning:  # (unless someone put their own in since)
                warnings.showwarning = _HOOKS["showwarning"]


#: A ``%``-style placeholder of a log message's format string (``%%`` is a percent sign).
LOG_PLACEHOLDER = re.compile(r"%%|%[-#0 +]*\d*(?:\.\d+)?[a-zA-Z]")


def _kind_of(fmt: str, text: str) -> str:
    """What kind of warning a message is, for counting its repeats: its format string, or its
    text when the format holds nothing but placeholders (a Python warning logged as "%s")."""
    return fmt if re.sub(r"\W", "", LOG_PLACEHOLDER.sub("", fmt)) else text


@contextlib.contextmanager
def caught_warnings() -> "Iterator[list[tuple[str, str]]]":
    """Hold back the package's log warnings (logger ``densedet_tile`` and below) and the Python
    warnings raised during the block by this thread (and threads started in its context, as the
    tile reader is), and yield the list they are kept in, as ``(kind, text)`` pairs: a batch
    carries each image's warnings in its record (a Ray worker's log lines and Python warnings
    never reach the command) and says them from there. Other threads' warnings and records go
    where they always go: ``run_batch`` in two threads of a service, or beside a ``detect`` of
    a third, took the others' warnings into its records and left the service's logging cut off
    (an outside review). Each block shows a Python warning again that an earlier image showed,
    as a record of its own."""
    caught: list[tuple[str, str]] = []
    token = _CAUGHT.set(caught)
    _hold(True)
    forget = getattr(warnings, "_filters_mutated", None)  # (the registry of warnings shown once)
    if callable(forget):
        forget()
    try:
        yield caught
    finally:
        _hold(False)
        _CAUGHT.reset(token)


def say_again(caught: Iterable[tuple[str, str]]) -> None:
    """Say in this process the warnings :func:`caught_warnings` kept in another (a Ray worker's,
    whose own lines stay in Ray's log files), in the order given, as that process would have
    said them: a Python warning as one of its category (its text is ``Category: message``), a
    log warning as a line of the package's logger."""
    for kind, text in caught:
        category, sep, message = text.partition(": ")
        cls = getattr(builtins, category, None) if sep and kind == text else None
        if isinstance(cls, type) and issubclass(cls, Warning):
            warnings.warn(message, cls, stacklevel=caller_level())
        else:
            log.warning("%s", text)


def detector_identity(detector: Any, *, device: str | None = None) -> dict[str, Any]:
    """A JSON-able description of what makes ``detector``'s boxes: a
    :class:`~densedet_tile.detector.registry.DetectorSpec`'s kind, config, checkpoint, options
    and what it fixes of the run, with the size and modification time of its files (a
    retrained checkpoint at the same path, or an edited source file of a ``file.py:FACTORY`` or
    ``MODULE:FACTORY``, is another model); for a detector object, its class. Thread counts are
    left out, and so is the device, but for one thing it decides: the built-in model's shipped
    weights run as the int8 ONNX file on a CPU and in torch (fp32) on a GPU, whose boxes differ
    by up to about 2 px, so the latter adds ``"runtime": "torch"`` (a batch started on a CPU
    and resumed on a GPU redoes its images rather than mixing the two); its shipped weights,
    which have no path of the user's to stamp, add the SHA-256 of their files (``"weights"``: an
    upgrade that ships retrained weights is another model). The rules that turn a request into
    boxes, the built-in model's photo rule among them, are :data:`RULES_VERSION`, recorded by
    :func:`request_key` for every detector. ``device``: where the
    model will run, when the spec's ``auto`` is decided elsewhere (Ray workers with or without
    a GPU); None resolves ``auto`` on this machine."""
    from .detector.registry import DetectorSpec

    if isinstance(detector, DetectorSpec):
        spec = detector.resolved()
        files = {}
        factory_file, _, _ = spec.kind.rpartition(":")  # path/to/file.py or MODULE:FACTORY, edited since?
        if factory_file and not factory_file.endswith(".py"):
            factory_file = _module_file(factory_file)
        for name, f in (("config", spec.config), ("checkpoint", spec.checkpoint), ("factory", factory_file)):
            if f and Path(f).is_file():
                st = Path(f).stat()
                files[name] = [st.st_size, st.st_mtime_ns]
        options = {k: v for k, v in sorted(spec.options.items()) if k != "threads"}
        out = {"kind": spec.kind, "config": spec.config, "checkpoint": spec.checkpoint, "files": files,
               "precision": spec.precision, "input_size": spec.input_size, "score_thr": spec.score_thr,
               "options": options}
        if spec.kind == "default" and spec.checkpoint is None and str(options.get("runtime", "auto")) == "auto":
            from .detector.base import resolve_device

            want = spec.device if device is None or spec.device != "auto" else device
            if want == "auto":
                try:
                    want = resolve_device("auto")
                except DensedetError:  # (the build says what is wrong)
                    want = "cpu"
            if want.startswith("cuda"):  # (the ONNX file's results, made before this key, still stand)
                out["runtime"] = "torch"
        if spec.kind == "default" and spec.checkpoint is None:
            out["weights"] = _shipped_weights()
    else:
        cls = type(detector)
        out = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    return as_json(out)


def _shipped_weights() -> str | None:
    """The SHA-256 (first 16 hex digits) of the built-in model's shipped weights, both files (the
    ONNX file runs on a CPU, the torch one on a GPU; a requantized ONNX file changes boxes alone),
    or None where they cannot be read (building the model then says what is wrong). About 11 MB,
    read once per run."""
    import importlib.resources

    from .detector.builtin import ONNX_FILE, WEIGHTS_FILE

    digest = hashlib.sha256()
    try:
        for name in (WEIGHTS_FILE, ONNX_FILE):
            digest.update(importlib.resources.files("densedet_tile.detector").joinpath("weights", name).read_bytes())
    except OSError:
        return None
    return digest.hexdigest()[:16]


def as_json(value: Any) -> Any:
    """``value`` as a JSON document holds it (tuples as lists, unknown objects by their repr),
    with a non-finite float (a ``NaN`` option of a factory) written as its name, since strict
    JSON readers (JavaScript, ``parse_constant``) refuse a bare ``NaN``."""
    def finite(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return finite_or_name(v)

    return finite(json.loads(json.dumps(value, default=repr)))


def _module_file(name: str) -> str | None:
    """The source file of the importable module ``name`` (``pkg.sub``), found the way ``import``
    would find it but without running any of it (a parent package's ``__init__`` included);
    None for a module not on the path, a built-in one or one without a file."""
    import sys

    mod = sys.modules.get(name)
    if mod is not None:
        return getattr(mod, "__file__", None)
    parts = name.split(".")
    where = None  # sys.path for the top-level package, then each package's own folders
    spec = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        parent = sys.modules.get(full) if i < len(parts) - 1 else None
        if parent is not None:  # imported already: its own folders
            where = getattr(parent, "__path__", None)
            if where is None:
                return None
            continue
        spec = _find_spec(full, where)
        if spec is None:
            return None
        where = spec.submodule_search_locations
        if where is None and i < len(parts) - 1:
            return None  # a plain module has no submodules
    return spec.origin if spec is not None and spec.has_location else None


def _find_spec(name: str, where: Any) -> Any:
    """The spec of ``name`` from the import system's finders (``sys.meta_path``, which holds
    the path finder and those of editable installs), given its parent's folders ``where``
    (None: top level); nothing is imported."""
    import sys

    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        if find is None:
            continue
        try:
            spec = find(name, where)
        except Exception:  # a finder that cannot answer for this name
            continue
        if spec is not None:
            return spec
    return None


#: The version of the engine's rules that decide the boxes a request gets: how ``--tile auto``,
#: a detector's photo rule and the other scale choices read an image, how tiles are cut, merged
#: and counted. Every result records it (:func:`request_key`), and a resumed batch redoes the
#: results of another version, saying how many (a result recorded without one is older than 1).
#: BUMP IT in any change after which some request (settings, detector, photo) gets other boxes
#: than before, and say so in the commit; not for a change that only moves timings, messages or
#: the files' layout. The package version is no help here: it does not move with such changes.
#: A detector's own files are stamped apart (:func:`detector_identity`: a user's checkpoint or
#: factory file by size and time, the shipped weights by their hash), so no bump for those.
#: 1: 2026-12-06 (the products measured at the detector's scale threshold, ``--tile auto``
#: setting aside a whole view the squares contradict, the photo rule's close-up check, the seam
#: merge's tolerances of at least 8 model pixels, the ONNX adapter's bilinear shrink, ``--tile
#: auto`` for detectors without a product size, its windows of panoramas longer than 4:1 and its
#: least tile; results of every earlier rule carry no version). 2: 2026-12-06, later (the merge
#: fuses boxes of two tiles that are each other's best match from ``MergeSpec.match_iou`` up).
#: 3: 2026-12-06, stop 61 (``--tile auto`` sets a panorama's strip view aside where two of its
#: squares under twice apart in size measure the same products). 4: 2026-12-07, stop 69 (the
#: seam merge's best match judged over both sides of a box in index order, stop 67; a last tile
#: moved onto the one before takes its rank when the tile two back overlaps it by half as much,
#: stop 68, or when it moved by at most the seam tolerance: neither had bumped the version).
#: 5: 2026-12-07, stop 70 (boxes tied in score kept by position in the merge's last NMS, not by
#: the tiles' order; a probe's few boxes at the size over under a tenth of its window measure
#: nothing; 10- or 12-bit data in 16-bit TIFF samples read over its own range). 6: 2026-12-07,
#: stop 72 (the seam repair's sides agree within a share of two views' root mean square extent,
#: at most three times the smaller one's, not of the smaller one's).
RULES_VERSION = 6


def request_key(job: Job, detector: Any = None, *, device: str | None = None) -> dict[str, Any]:
    """What a result must have been asked for to stand for ``job`` (:func:`outputs_complete`):
    the specs as given (call it before a VRAM budget or a detector's rule adjusts them), the
    precision, whether YOLO lines carry scores, and the ``detector`` (:func:`detector_identity`,
    ``device`` passed on; None: not compared), and the engine's :data:`RULES_VERSION` (the same
    settings give other boxes under other rules, for any detector). Batch size, device, VRAM
    budget, pixel limit, worker threads and the output formats are not part of it: they decide
    how or whether an image runs, not its boxes (a rerun with ``--max-pixels none`` only adds
    the images the limit refused)."""
    run = job.run
    want = {"rules": RULES_VERSION, "tiling": asdict(job.tiling), "merge": asdict(job.merge),
            "run": {"score_thr": run.score_thr, "input_size": run.input_size, "scale": run.scale,
                    "count_band": run.count_band, "precision": run.precision},
            "yolo_scores": job.yolo_scores,
            "detector": None if detector is None else detector_identity(detector, device=device)}
    if run.classes is not None:  # (left out otherwise, so results made before the option still stand)
        want["run"]["classes"] = sorted({str(c) for c in run.classes})  # red,green = green,red
    return as_json(want)


def input_state(path: str | Path) -> list[int] | None:
    """Size and modification time (ns) of an input file: another photo saved under the same
    name is not the image a result was made from. None when it cannot be read."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def check_name_lengths(out_dir: str | Path, paths: Iterable[Path]) -> None:
    """Raise ENAMETOOLONG for the first of ``paths`` whose name is longer, in bytes, than the
    file system of ``out_dir`` holds (255 where it cannot say: a folder not made yet)."""
    try:
        limit = os.pathconf(out_dir, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    for path in paths:
        if len(os.fsencode(Path(path).name)) > limit:
            raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))


def output_stem(path: str | Path) -> str:
    """The stem every output file of ``path`` is named after."""
    return Path(path).stem or "image"


def outputs_complete(out_dir: str | Path, stem: str, job: Job, inp: str | Path | None = None) -> bool:
    """True when every output ``job`` asks for exists for ``stem``, its JSON parses whole, and
    (with ``inp``) the JSON is of that same image file, unchanged since (size and modification
    time), made for the same request (:func:`request_key`: specs and detector) under the same
    rules (:data:`RULES_VERSION`).

    The last check keeps a restarted batch from skipping an image because another file of the
    same name (``IMG_0001.jpg`` of another folder), a replaced photo, other settings, another
    model or an older engine made the outputs there. A result written without that record (by a
    version before it) is redone. :func:`redo_reason` says which check failed.
    """
    return redo_reason(out_dir, stem, job, inp) is None


def _a_file(path: Path) -> bool:
    """Whether ``path`` is a file, False where that cannot be told: an output name too long for
    the file system (the photo's own name was not) is not done, and the image's run then fails
    on it as that image's error; ``Path.is_file`` raised, which stopped a whole batch run."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def redo_reason(out_dir: str | Path, stem: str, job: Job, inp: str | Path | None = None) -> str | None:
    """Why the outputs of ``stem`` do not stand for ``job`` (:func:`outputs_complete`), in a few
    words (``"not done"`` where there is no detections JSON at all, ``"other settings (run)"``
    naming what differs of the request, ``"made by an older engine (rules 1, now 2)"``), or None
    when they do."""
    paths = job.paths(out_dir, stem)
    if not _a_file(paths["json"]):
        return "not done"
    if not all(_a_file(p) for p in paths.values()):
        return "outputs missing"
    if "yolo" in paths and not _a_file(Path(out_dir) / YOLO_CLASSES_FILE):  # the labels' class list
        return "outputs missing"
    try:
        doc = json.loads(paths["json"].read_text())
    except (OSError, ValueError):
        return "result unreadable"
    if (not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("boxes"), list)
            or len(doc["boxes"]) != doc.get("num_detections")):
        return "result unreadable"
    if inp is None:
        return None if _outputs_as_recorded(doc, paths, stem) else "outputs changed"
    image = doc.get("image")
    recorded = image.get("path") if isinstance(image, dict) else None
    if not (isinstance(recorded, str) and same_path(recorded, inp)):
        return "another photo's result"
    settings = doc.get("settings")
    asked = settings.get("requested") if isinstance(settings, dict) else None
    if not isinstance(asked, dict):
        return "made by an older version"
    state = input_state(inp)
    if state is None or asked.get("input") != state:
        return "photo changed"
    want = job.request if job.request is not None else request_key(job)
    had = asked.get("job")
    older = _older_rules(had, want)
    if older is not None:  # first: other settings too or not, such a result is redone anyway
        return older
    if had != want:
        keys = sorted(k for k in set(want) | set(had if isinstance(had, dict) else {})
                      if not isinstance(had, dict) or had.get(k) != want.get(k))
        return f"other settings ({', '.join(keys)})"
    # the outputs' hashes last: the cheap checks above settle most images redone
    return None if _outputs_as_recorded(doc, paths, stem) else "outputs changed"


def _older_rules(had: Any, want: Any) -> str | None:
    """Why a result asked for as ``had`` (its recorded request) was made under other rules than
    ``want`` is asked under (:data:`RULES_VERSION`, or the one a caller's ``job.request``
    records), in a few words, or None where the rules are the same. A request recorded without
    a version is older than any (written before results carried one)."""
    if not isinstance(want, dict) or "rules" not in want:  # (a request made by hand: compared as a whole)
        return None
    now, was = want["rules"], had.get("rules") if isinstance(had, dict) else None
    if was == now:
        return None
    if not isinstance(was, int) or isinstance(was, bool):
        return f"made by an older engine (before rules {now})"
    if isinstance(now, int) and was > now:  # a result of a later version, read after a downgrade
        return f"made by a newer engine (rules {was}, now {now})"
    return f"made by an older engine (rules {was}, now {now})"


def process_image(
    inp: str | Path,
    detector: Any,
    job: Job,
    out_dir: str | Path,
    *,
    stem: str | None = None,
    name: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    detect: "Callable[[ImageSource], ImageResult] | None" = None,
    capture_warnings: bool = False,
) -> Outcome:
    """Detect objects in the image file ``inp`` and write its outputs into ``out_dir``.

    ``detect``, when given, replaces the in-process :func:`~densedet_tile.pipeline.detect_image`
    call: it receives the opened image and returns its :class:`~densedet_tile.pipeline.ImageResult`
    (``densedet-tile batch --split`` fans the tiles out to workers this way); ``detector`` is
    then unused.

    ``name`` is what the CSV and COCO rows call the image (default: its file name; see
    :func:`row_names`).

    ``capture_warnings``: the package's log warnings given while this image runs come back in
    the outcome's ``warnings`` instead of being logged (:func:`caught_warnings`).

    Never raises for a bad image or a failing detector: the error comes back in the
    :class:`Outcome` (one line naming the input), and no output file of this image is left
    behind. KeyboardInterrupt still propagates (after cleaning up).
    """
    if capture_warnings:
        with caught_warnings() as caught:
            outcome = process_image(inp, detector, job, out_dir, stem=stem, name=name, progress=progress, detect=detect)
        return replace(outcome, warnings=tuple(caught))
    from .pipeline import detect_image
    from .tiler.readers import open_image

    inp = str(inp)
    stem = stem or output_stem(inp)
    paths = job.paths(out_dir, stem)
    state = input_state(inp)  # before reading: a photo replaced meanwhile is redone next time
    t0 = time.perf_counter()
    try:
        # an output name the folder cannot hold fails now, not after the detector ran (the
        # same line as at write time: "<input>: <output>: File name too long")
        check_name_lengths(out_dir, paths.values())
        with open_image(inp, max_pixels=job.run.max_pixels) as src:
            opened = time.perf_counter() - t0  # a JPEG or PNG is decoded here, before detect_image starts its clock
            result = detect(src) if detect is not None else detect_image(
                src, detector, tiling=job.tiling, merge=job.merge, run=job.run, progress=progress,
            )
            result = _with_open_time(result, opened)
            asked = job.request if job.request is not None else request_key(job)
            # "file": the photo's real path (the JSON's image path is as given, relative to where
            # the run started, maybe through a link), to tell another photo of that name later
            result = replace(result, settings={**result.settings, "requested": {
                "job": asked, "input": state, "file": os.path.realpath(inp)}})
            # the rows of the CSV and COCO files name the image (another input's file of the same
            # name is called after its stem, so the rows of the two stay apart: row_names)
            rows = result if name is None else replace(result, name=name)
            # every output is made first, then they land together (write_files); the JSON goes
            # last: its presence marks the image as complete for restarts
            stage: dict[Path, bytes | str] = {}
            if "csv" in paths:
                write_csv(rows, paths["csv"], stage=stage)
            if "coco" in paths:
                write_coco(rows, paths["coco"], stage=stage)
            if "yolo" in paths:
                write_yolo(result, paths["yolo"], scores=job.yolo_scores, stage=stage)
            if "preview" in paths:
                write_preview(result, paths["preview"], src, stage=stage)
            siblings = [p.name for kind, p in paths.items() if kind != "json"]
            digests = {p.name: _sha256(stage[p]) for kind, p in paths.items() if kind != "json"}
            write_json(result, paths["json"], stage=stage, outputs=siblings, digests=digests, row_name=name)
        earlier = _recorded_outputs(paths["json"], stem)  # what the JSON being replaced says it came with
        # store_a/IMG_0001.jpg, then store_b/IMG_0001.jpg into one --out: said once replaced
        other = _made_from_another_input(paths["json"], inp, state)
        # a YOLO label file this tool did not write, or one changed since it wrote it (labels
        # corrected in a labelling tool), is the user's: never replaced. One holding exactly
        # what this run would write is ours (a run killed between writing it and its JSON).
        # So is a photo under the preview's name (``<stem>.preview.jpg``) that is no preview of
        # this tool's (each carries its mark): an outside review lost one that way.
        # The other outputs have names of this tool's own (".detections.csv"...) and are replaced.
        p = paths.get("yolo")
        if p is not None and not _ours(p, earlier, same_as=digests[p.name]):
            raise InvalidInputError(
                f"{p} is in the way: it was not written by densedet-tile, or was changed since; move it "
                "away or choose another --out (nothing was written for this image)")
        p = paths.get("preview")
        if p is not None and p.is_dir():  # (said as for the other outputs, not as a photo of the user's)
            raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(p))
        if p is not None and not _ours(p, earlier, same_as=digests[p.name]) and not is_our_preview(p):
            raise InvalidInputError(
                f"{p} is in the way: it is no preview this version of densedet-tile made (those carry its mark), "
                "and this image's detections JSON does not list it (a preview of a version before 2026-12-06 "
                "whose JSON was removed? then delete it); move it away or choose another --out (nothing was "
                "written for this image)")
        write_files(stage)
        if other is not None:
            log.warning("%s: replaced %s, which was made from another photo of that name (%s); give another "
                        "--out to keep both", inp, paths["json"], other)
        written = [p for p in stage if p.name != YOLO_CLASSES_FILE]
        _remove_stale_outputs(out_dir, {n: h for n, h in earlier.items() if n not in {p.name for p in paths.values()}})
    except BaseException as exc:
        if not isinstance(exc, Exception):
            raise
        from .errors import STOP_RECEIVED

        if STOP_RECEIVED[0] is not None:  # a stop signal that a C extension's import turned into an
            raise KeyboardInterrupt from exc  # ImportError: the run stops here, not at the next image
        log.debug("%s failed", inp, exc_info=True)
        return Outcome(input=inp, status="error", seconds=time.perf_counter() - t0, error=error_line(inp, exc),
                       out_failed=out_folder_failed(exc, out_dir))
    cr = result.count_range
    return Outcome(
        input=inp, status="ok", products=len(result.detections), tiles=result.num_tiles,
        width=result.width, height=result.height, seconds=time.perf_counter() - t0,
        outputs=tuple(str(p) for p in written), outputs_sha256=digests,
        count_range=None if cr is None else (cr.bounds or (cr.low, cr.high)), uncertain=None if cr is None else cr.uncertain,
    )


def _with_open_time(result: ImageResult, seconds: float) -> ImageResult:
    """``result`` with ``seconds`` spent opening its image counted in its ``read_s`` and ``total_s``
    (an outside review: the JSON of a panorama left out the quarter of the run its decoding took)."""
    t = dict(result.timings or {})
    for key in ("read_s", "total_s"):
        if isinstance(t.get(key), (int, float)):
            t[key] = round(float(t[key]) + seconds, 4)
    return replace(result, timings=t)


def _outputs_as_recorded(doc: dict[str, Any], paths: dict[str, Path], stem: str) -> bool:
    """Whether the outputs beside a detections JSON (``doc``) are the ones it was written with
    (:func:`_ours` of its record: a file of that name put there by hand, or left by another run,
    is not this result's; a CSV or COCO file saying "garbage" was skipped as complete). Outputs
    with no digest recorded (an older version's) are trusted if they are CSV and COCO files
    holding a row per detection (:func:`_whole`), and a YOLO label file always is (labels
    corrected in a labelling tool stay the user's)."""
    has_record = doc.get("outputs") is not None
    recorded = _outputs_record(doc, stem) if has_record else {}
    for kind, p in paths.items():
        if kind in ("json", "yolo"):
            continue
        if has_record and not _ours(p, recorded):
            return False
        # no digest to check it by (an older version's): one row per detection
        if recorded.get(p.name) is None and kind in ("csv", "coco") and not _whole(kind, p, doc.get("num_detections")):
            return False
    return True


def _whole(kind: str, path: Path, n: Any) -> bool:
    """Whether a CSV or COCO output written without a digest holds one row per detection (an
    upgrade review: a CSV saying "garbage" beside an older version's JSON was kept as complete)."""
    try:
        if kind == "coco":
            rows = json.loads(path.read_bytes())
            return isinstance(rows, list) and len(rows) == n and all(isinstance(r, dict) for r in rows)
        # rows as the csv module reads them: a quoted file name may hold commas and line breaks
        rows = list(csv.reader(io.StringIO(path.read_bytes().decode("utf-8", "surrogateescape"), newline="")))
    except (OSError, ValueError, csv.Error):
        return False
    if rows and rows[0][:1] == ["image_name"]:
        rows = rows[1:]
    return len(rows) == n and all(len(r) >= 8 for r in rows)


def _sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def _recorded_outputs(json_path: Path, stem: str) -> dict[str, str | None]:
    """The outputs an earlier run wrote together with the detections JSON at ``json_path``
    (its ``outputs`` list), limited to names this tool gives an image of ``stem``: name -> the
    SHA-256 it recorded (None from a version that recorded none). Empty when there is no such
    JSON, it cannot be read, or it holds no such record (written by a version before it, or not
    by this tool): then nothing beside it is ours."""
    try:
        doc = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return {}
    return _outputs_record(doc, stem)


def _outputs_record(doc: Any, stem: str) -> dict[str, str | None]:
    """:func:`_recorded_outputs` of a detections JSON already read."""
    names = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(names, list):
        return {}
    digests = doc.get("outputs_sha256")
    digests = digests if isinstance(digests, dict) else {}
    ours = {stem + suffix for kind, suffix in OUTPUT_SUFFIXES.items() if kind != "json"}
    return {n: (digests.get(n) if isinstance(digests.get(n), str) else None)
            for n in names if isinstance(n, str) and n in ours}


def _made_from_another_input(json_path: Path, inp: str, state: list[int] | None) -> str | None:
    """The real path of the image recorded in the detections JSON at ``json_path`` (its
    ``settings.requested.file``; the path as that run was given it is relative to where it ran,
    and pointed nowhere from here) when that JSON was made from another file than ``inp``, else
    None.

    Its ``settings.requested.file`` (the photo's real path) names another file that still
    exists; or, when that file is gone (moved, or the folder renamed), its recorded size and
    modification time are not those of ``inp`` (``state``). None as well when there is no such
    JSON, or it was written before the real path was recorded (2026-12-03).
    """
    try:
        doc = json.loads(json_path.read_text())
        asked = doc["settings"]["requested"]
        recorded, was = asked["file"], asked["input"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not isinstance(recorded, str) or not recorded:
        return None
    other = another_existing_file(recorded, inp)
    if other is False:
        return None  # this photo again (a rerun, or a new shot saved over it)
    if other is None and (was is None or was == state):
        return None  # moved here, or its folder renamed: the same photo, most likely
    return recorded


def _ours(path: Path, recorded: dict[str, str | None], *, same_as: str | None = None) -> bool:
    """Whether the file at ``path`` may be replaced or removed as this tool's: it is not there,
    it is an output the earlier run recorded and it holds what that run wrote (a record without
    digests, from an older version, is trusted), or its SHA-256 is ``same_as`` (what this run
    is about to write there)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    digest = _sha256(data)
    if same_as is not None and digest == same_as:
        return True
    if path.name not in recorded:
        return False
    want = recorded[path.name]
    return want is None or digest == want


def _remove_stale_outputs(out_dir: str | Path, recorded: dict[str, str | None]) -> None:
    """An image redone over an earlier result: the files ``recorded`` (outputs the earlier run
    recorded in its JSON and this run did not write again) are removed, so that no file beside
    the new JSON holds boxes of other settings. Files the earlier run did not record (a user's
    own label file that happens to share an output's name), or that were changed since it
    wrote them, are never touched."""
    for name in sorted(recorded):
        path = Path(out_dir) / name
        if not path.exists():
            continue
        if not _ours(path, recorded):
            log.warning("%s: left in place: changed since densedet-tile wrote it", path)
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("%s: could not remove the earlier run's output (%s)", path, exc)


def without_earlier_outputs(inputs: "Sequence[_P]") -> "list[_P]":
    """``inputs`` without the files an earlier run wrote as its outputs (a preview picked up
    again by a shell glob such as ``shelf/*.jpg``), each left out with a logged note: the file's
    name ends like an output of some stem, and that stem's detections JSON beside it lists the
    name among the outputs it was written with; or it is such a detections JSON itself (named
    ``<stem>.detections.json``, with this tool's schema: ``densedet-tile *`` in a folder that
    holds an earlier run's results). A file that only looks like one (no JSON beside it records
    it) stays."""
    kept = []
    for inp in inputs:
        name = Path(inp).name
        if name.endswith(OUTPUT_SUFFIXES["json"]) and _detections_json(Path(inp)):
            log.warning("%s: left out: the detections JSON of an earlier run", inp)
            continue
        if name == YOLO_CLASSES_FILE and _beside_our_yolo_labels(Path(inp)):
            # (it stopped the run: "this input is where the YOLO class list ... would be written")
            log.warning("%s: left out: the YOLO class list an earlier run wrote beside its labels", inp)
            continue
        if _audit_heatmap(Path(inp)):
            log.warning("%s: left out: an audit wrote it (its %s is beside it)", inp,
                        name[: -len(AUDIT_SUFFIXES["heatmap"])] + AUDIT_SUFFIXES["json"])
            continue
        for kind, suffix in OUTPUT_SUFFIXES.items():
            if kind == "json" or not name.endswith(suffix) or len(name) == len(suffix):
                continue
            stem = name[: -len(suffix)]
            record = Path(inp).with_name(stem + OUTPUT_SUFFIXES["json"])
            if name in _recorded_outputs(record, stem):
                log.warning("%s: left out: an earlier run wrote it (%s lists it among its outputs)", inp, record.name)
                break
        else:
            kept.append(inp)
    return kept


def _beside_our_yolo_labels(path: Path, look: int = 200) -> bool:
    """Whether ``path`` (a ``classes.txt``) sits beside YOLO labels this tool wrote: a detections
    JSON there (among the first ``look``) lists a ``<stem>.txt`` among its outputs."""
    import itertools

    for record in itertools.islice(path.parent.glob("*" + OUTPUT_SUFFIXES["json"]), look):
        stem = record.name[: -len(OUTPUT_SUFFIXES["json"])]
        if stem + OUTPUT_SUFFIXES["yolo"] in _recorded_outputs(record, stem):
            return True
    return False


def _tool_doc(path: Path, kind: str) -> dict[str, Any] | None:
    """The JSON at ``path`` when this tool wrote it as ``kind`` (its ``schema`` starts
    ``densedet-tile/<kind>@``: ``detections``, ``audit``), else None (absent, unreadable, another's)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and str(doc.get("schema", "")).startswith(f"densedet-tile/{kind}@") else None


def _detections_json(path: Path) -> bool:
    """Whether ``path`` holds a detections JSON of this tool (its ``schema``)."""
    return _tool_doc(path, "detections") is not None


def _audit_heatmap(path: Path) -> bool:
    """Whether ``path`` is the heat map ``densedet-tile audit`` wrote: named ``<stem>.heatmap.png``
    with the audit JSON of that stem beside it."""
    suffix = AUDIT_SUFFIXES["heatmap"]
    if not path.name.endswith(suffix) or len(path.name) == len(suffix):
        return False
    return _tool_doc(path.with_name(path.name[: -len(suffix)] + AUDIT_SUFFIXES["json"]), "audit") is not None


#: What each output of an image is called in messages.
_OUTPUT_WORDS = {"json": "detections JSON", "csv": "CSV", "coco": "COCO results", "yolo": "YOLO labels",
                 "preview": "preview"}


def refuse_outputs_over_inputs(inputs: "Sequence[str | Path]", stems: Sequence[str], out_dir: str | Path,
                               job: Job, *, option: str = "--out") -> None:
    """Raise :class:`~densedet_tile.errors.InvalidInputError` (one line) when an output that
    ``job`` would write for one of ``inputs`` (named after ``stems``, into ``out_dir``) is itself
    one of the inputs: writing it would destroy a photo, and perhaps before it is read.

    Call it before anything is written. Paths are compared resolved, and by file identity for
    the outputs that exist (a hard link), in one pass over the inputs."""
    def key(p: str | Path) -> str:
        return os.path.normcase(os.path.realpath(p))

    by_name: dict[str, str] = {}
    by_inode: dict[tuple[int, int], str] = {}
    for inp in inputs:
        by_name.setdefault(key(inp), str(inp))
        try:
            st = os.stat(inp)
        except OSError:
            continue
        by_inode.setdefault((st.st_dev, st.st_ino), str(inp))
    for inp, stem in zip(inputs, stems):
        planned = [(_OUTPUT_WORDS[kind], p) for kind, p in job.paths(out_dir, stem).items()]
        if "yolo" in job.formats:
            planned.append(("YOLO class list", Path(out_dir) / YOLO_CLASSES_FILE))
        for word, path in planned:
            hit = by_name.get(key(path))
            if hit is None:
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                hit = by_inode.get((st.st_dev, st.st_ino))
            if hit is not None:
                raise InvalidInputError(
                    f"{hit}: this input is where the {word} of {inp} would be written ({option} {out_dir}); "
                    f"writing it would overwrite the input: leave it out or choose another {option}"
                )


#: Errors writing into the output folder that no other image would escape: no permission (the
#: folder made read-only), a file system mounted read-only, no space or quota left.
_FOLDER_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT})


def out_folder_failed(exc: BaseException, out_dir: str | Path) -> bool:
    """Whether ``exc`` is a failure to write a file straight into the output folder ``out_dir``
    that every later image would meet too (:data:`_FOLDER_ERRNOS`): a batch stops at the first
    one instead of detecting every remaining image and failing to write each (an outside review:
    a folder made read-only mid-run, 23 images detected and lost)."""
    if not isinstance(exc, OSError) or exc.errno not in _FOLDER_ERRNOS or not exc.filename:
        return False
    try:
        if not os.path.samefile(os.path.dirname(os.fsdecode(exc.filename)) or ".", out_dir):
            return False
    except (OSError, ValueError, TypeError):
        return False
    if exc.errno in (errno.EACCES, errno.EPERM):
        # one file of the folder may be refused alone (another user's file in a sticky folder,
        # a shared /tmp-like --out: an outside review's second look had the run stop there on
        # every restart): the folder's, only when it takes no new file either
        from .io import _probe_writable

        try:
            _probe_writable(Path(out_dir))
        except OSError:
            return True
        return False
    return True


def error_line(inp: str, exc: BaseException) -> str:
    """One line saying what went wrong with input ``inp``; names the input and, for errors that
    are not the library's own or the system's, the exception type."""
    msg = one_line(exc)
    if not isinstance(exc, (DensedetError, OSError)):
        msg = f"{type(exc).__name__}: {msg}"
    # (one_line folds a name's line breaks into spaces: look for it folded too); a message that
    # only mentions the input further on (a command line quoted in it) still gets it in front
    if msg.startswith(inp) or msg.startswith(" ".join(inp.split())):
        return msg
    # a message that starts with the bare file name (the engine names images so) gets the path
    # as given instead: two inputs of the same name in other folders must stay apart
    name = " ".join(Path(inp).name.split())
    if name and msg.startswith(f"{name}:"):
        return shown_name(inp) + msg[len(name):]
    return f"{shown_name(inp)}: {msg}"


def row_names(paths: "Sequence[str | Path]", stems: Sequence[str], others: "Sequence[str | Path]" = (),
              known: "Sequence[str]" = ()) -> list[str | None]:
    """What the CSV and COCO rows call each image: its file name (None), unless its outputs took a
    new stem and another image goes by that file name (another input of this run, one in
    ``others``, an earlier run's, or one of ``known``: the image names of other detections in the
    output folder): then the stem and its suffix (``IMG_0001-2.jpg``). ``a.jpg`` and ``a.png``
    keep their names (stems ``a``, ``a-2``). No two of ``paths`` get one name: where a kept file
    name meets another's stem name (``a-2.jpg`` beside the second ``a.jpg``), the stems decide."""
    from collections import Counter

    distinct = {os.path.abspath(p) for p in paths} | {os.path.abspath(p) for p in others}
    count = Counter(Path(p).name for p in distinct)
    outside = Counter(known)
    names: list[str | None] = [
        str(stem) + Path(p).suffix if stem != output_stem(p) and (count[Path(p).name] > 1 or outside[Path(p).name])
        else None for p, stem in zip(paths, stems)]
    by_stem = [str(stem) + Path(p).suffix for p, stem in zip(paths, stems)]  # all different: stems are
    while True:
        final = [n or Path(p).name for n, p in zip(names, paths)]
        used = Counter(final)
        clash = [k for k, n in enumerate(final) if used[n] > 1 and n != by_stem[k]]
        if not clash:
            return names
        for k in clash:
            names[k] = by_stem[k]


def unique_stems(paths: "list[str] | list[Path]", reserved: "Collection[str]" = (),
                 out: "str | os.PathLike[str] | None" = None) -> list[str]:
    """Output stems for ``paths``: each file's stem, then ``-2``, ``-3``... where stems clash or
    the stem is ``reserved`` (see :attr:`Job.reserved_stems`). Which file keeps the plain stem
    does not depend on the order the paths are given in: every file whose own stem is free keeps
    it first (``a-2.jpg`` stays ``a-2``), the first by absolute path among files of one stem;
    the others then take suffixes in absolute-path order. So ``a/X.jpg b/X.jpg`` and ``b/X.jpg
    a/X.jpg`` name the same outputs alike (``X`` and ``X-2``). Where the output folder ``out``
    does not tell names apart by case (:func:`~densedet_tile.io.case_blind`: macOS, Windows),
    stems differing only in case clash too (``IMG_1.JPG`` and ``img_1.jpg``: ``IMG_1`` and
    ``img_1-2``; one image's outputs replaced the other's)."""
    stems = _unique_stems(paths, reserved, blind=False)
    if out is not None and len({s.casefold() for s in stems}) < len(stems) and case_blind(out):
        stems = _unique_stems(paths, reserved, blind=True)
    return stems


def _unique_stems(paths: "list[str] | list[Path]", reserved: "Collection[str]", *, blind: bool) -> list[str]:
    key = str.casefold if blind else str
    used: set[str] = {key(r) for r in reserved}
    folded = {r.casefold() for r in reserved}  # Classes.txt is classes.txt where case is not told apart

    def free(stem: str) -> bool:
        return key(stem) not in used and stem.casefold() not in folded

    base = [output_stem(p) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: (os.path.abspath(paths[i]), i))
    stems: list[str | None] = [None] * len(paths)
    for i in order:
        if free(base[i]):
            stems[i] = base[i]
            used.add(key(base[i]))
    for i in order:
        if stems[i] is None:
            k = 2
            while not free(f"{base[i]}-{k}"):
                k += 1
            stems[i] = f"{base[i]}-{k}"
            used.add(key(f"{base[i]}-{k}"))
    return [str(s) for s in stems]


def ready_detector(detector: Any) -> tuple[Any, str]:
    """``detector`` built when it is a spec, with the attributes it declares checked; returns it
    and what messages call it (the spec's kind, else the class name).

    A spec that cannot be built, or a detector that declares a bad ``input_size``,
    ``score_thr``..., raises one line (naming the spec's kind): the detector cannot be used, said
    once rather than once per image. The first step of :func:`build_detector`, and all that a
    Ray worker does before its first image (``DetectorWorker``), so both say it alike.
    """
    from .detector.base import check_declared
    from .detector.registry import DetectorSpec

    if not isinstance(detector, DetectorSpec):
        check_declared(detector)
        return detector, type(detector).__name__
    kind = detector.kind
    try:
        built = detector.build()
        check_declared(built)
    except DensedetError as exc:
        msg = one_line(exc)
        if type(exc) in (DetectorError, InvalidInputError) and msg.startswith("detector ") \
                and not msg.startswith(f"detector {kind!r}"):
            raise type(exc)(f"detector {kind!r}: {msg[len('detector '):]}") from exc  # its own kind kept
        raise
    except Exception as exc:  # building runs third-party code: one line, not a traceback
        raise DetectorError(f"detector {kind!r}: {type(exc).__name__}: {one_line(exc)}") from exc
    return built, kind


def build_detector(detector: Any, job: Job) -> tuple[Any, Job]:
    """Build ``detector`` when it is a spec (one line on failure) and fit ``job`` to its VRAM budget.

    What every worker does once before its first image; returns the detector and the job as
    it will run (the batch size chosen under ``--max-vram``).
    """
    from .vram import fit_to_vram, warn_if_ignored

    detector, kind = ready_detector(detector)
    if job.run.classes is not None:  # a class the detector does not have: one error, not one per image
        from .detector.base import classes_of

        job = replace(job, run=replace(job.run, classes=classes_of(detector, job.run.classes)))
    warn_if_ignored(detector, job.run)  # (a batch size given: not planned, so said here)
    try:
        tiling, run = fit_to_vram(detector, job.tiling, job.run)
    except DensedetError:
        raise
    except Exception as exc:  # the --max-vram probes run the detector on the GPU: one line, not a traceback
        raise DetectorError(f"detector {kind!r}: planning --max-vram failed: {type(exc).__name__}: "
                            f"{one_line(exc)}") from exc
    return detector, replace(job, tiling=tiling, run=run)
