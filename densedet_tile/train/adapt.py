"""Fit the built-in model to a user's own shelf photos, without labels (``densedet-tile adapt``).

Self-training in rounds. Each round the current model (its weight average) labels the photos
through the tiled engine with test-time augmentation (:mod:`densedet_tile.train.pseudo`), then
the model is fine-tuned on batches that mix crops of the photos (pseudo-labels as targets,
uncertain boxes ignored) with generated shelves (so it keeps what it knew and does not drift
towards its own mistakes). Later rounds re-label with the improved model.

The run has a budget (minutes of wall time, optimiser steps, or both: whichever ends first) and
follows it: rounds start at equal fractions of the budget, the learning rate decays over it, and
time for the end is kept aside (picking the threshold the weights serve at, and the final
held-out check). :func:`adapt` can be stopped between two steps
or two photos (``should_stop``); it then writes its state atomically and a later call with
``resume=True`` continues exactly where it stopped (same data, same random numbers: a step
budget run stopped and resumed ends with the weights of an uninterrupted one).

Files, next to ``out`` (never inside the package): ``out`` itself (the adapted weights in the
built-in format, fp16, with provenance under ``info``; load with ``--detector default
--checkpoint out``), ``<stem>.report.json`` and ``<stem>.report.txt``, and while a run is
unfinished ``<stem>.state.pt`` (model, optimiser, labels; removed when the run completes).
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import stat
import time
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import _torch  # noqa: F401  (first: without torch, one line naming the extra)
import torch

from .. import __version__
from ..detector.base import resolve_device
from ..detector.builtin import (DEFAULT_CONFIG, DecodeSettings, DefaultDetector, _read_weights, adapt_state_hint,
                                model_config, served_threshold, threshold_problem)
from ..detector.shelfnet import ShelfNet, read_checkpoint
from ..errors import DensedetError, InvalidInputError, clipped, one_line, utf8_text
from ..io import OutputLock, atomic_write, ensure_out_dir, names_a_folder, same_path, sweep_temporaries, write_files
from ..tiler.readers import IMAGE_SUFFIXES
from ..tiler.readers.base import check_size
from ..tiler.readers.pillow import open_header
from ..types import DEFAULT_MAX_PIXELS, MergeSpec, RunSpec, TileSpec
from .data import PhotoCrops, SyntheticPool, stack_samples, tile_ratio
from .loop import checkpoint_bytes, checkpoint_dict, ema_copy, learning_rate, make_optimizer, normaliser, train_step
from .pseudo import PseudoLabels, agreement, pseudo_label
from .settings import AdaptSettings

__all__ = ["AdaptSettings", "AdaptResult", "AdaptRun", "AdaptFailed", "adapt", "find_photos", "output_paths", "report_text",
           "IMAGE_SUFFIXES"]

#: 2 since held-out photos no longer pick the threshold and the checks count without the stack
#: splitter: a state of 1 would go on with the old rules, so it is refused
STATE_VERSION = 2
#: A photo with a side shorter than this (pixels) is skipped: a thumbnail holds no shelf to learn from.
MIN_PHOTO_SIDE = 64

#: What a saved state must hold, and the type each entry must have (checked before resuming).
_STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "settings": dict, "folder": str, "train": list, "holdout": list, "skipped": list, "base": dict, "config": dict,
    "phase": str, "round": int, "step": int, "elapsed": (int, float), "labels": dict, "labelled_this_round": list,
    "crop_order": list, "rounds": list, "holdout_before": dict, "timing": dict, "model": dict, "ema": dict, "opt": dict,
}
_PHASES = ("before", "label", "train", "final")

#: The score thresholds a served threshold is picked from (``AdaptSettings.serve_thr`` None).
CALIB_GRID: tuple[float, ...] = tuple(round(0.2 + 0.01 * i, 2) for i in range(71))
#: Under a time budget, the share of the calibration photos always counted: past the budget (the
#: machine slowed down after the time kept for the end was estimated) the pick stops there
#: rather than overrun ``--minutes`` by the rest.
CALIB_MIN_SHARE = 1 / 3


class _Drop:
    """A logging filter that drops the engine's messages holding all of ``needles``, counting
    them: notes and warnings written for detect (their advice names detect options) that adapt's
    own runs would repeat for every photo."""

    def __init__(self, *needles: str) -> None:
        self.needles = needles
        self.seen = 0

    def filter(self, record: Any) -> bool:
        msg = str(record.msg)
        if all(n in msg for n in self.needles):
            self.seen += 1
            return False
        return True


#: the engine's note that the photo rule replaced the --tile asked for
_TILE_REPLACED = ("replaced by", "photo rule")
#: the engine's warning that a photo's products reach the model small (its advice, ``--tile
#: auto``, is a detect option; adapt's own runs show each photo as its labels do)
_SMALL_PRODUCTS = ("reach the model at about",)


class AdaptFailed(DensedetError, RuntimeError):
    """The run cannot finish as asked; the message says why and what was kept (the state to
    resume from, or nothing)."""

ProgressFn = Callable[[dict[str, Any]], None]


# ----------------------------------------------------------------------------------------------
# photos
# ----------------------------------------------------------------------------------------------
def _listed_files(root: Path) -> tuple[list[Path], list[Path]]:
    """``(files, dangling)`` under ``root``, each sorted: the files (links to files included),
    and the links whose target does not exist. Linked folders are followed (a folder of links
    to each store's photos is a usual way to gather them), each real folder once, so a link
    back up the tree is no loop; hidden files and folders (names starting with ``.``) are left
    out."""
    files: list[Path] = []
    dangling: list[Path] = []
    visited: set[tuple[int, int]] = set()
    for top, dirs, names in os.walk(root, followlinks=True):
        try:
            st = os.stat(top)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited and st.st_ino:
            dirs[:] = []  # reached again through a link: listed already
            continue
        visited.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.startswith("."):
                continue
            path = Path(top, name)
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    files.append(path)
            except (FileNotFoundError, NotADirectoryError):
                if os.path.islink(path):
                    dangling.append(path)
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # a loop of links: as a link to nothing
                    dangling.append(path)
                else:  # what it is cannot be told (a folder listed but not entered, mode r--): listed,
                    files.append(path)  # to be skipped with its reason as an unreadable photo is (it ended the run)
    return sorted(files), sorted(dangling)


def _is_state(path: Path) -> bool:
    """Whether ``path`` looks like a stopped adapt run's state (any version: a damaged or older
    one is told on ``--resume``), not another file by that name (another run's weights)."""
    try:
        s = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return True  # (unreadable: as before, a stopped run to resume or delete)
    return isinstance(s, dict) and "version" in s and "phase" in s


def find_photos(folder: str | os.PathLike[str], max_pixels: int | None = DEFAULT_MAX_PIXELS
                ) -> tuple[list[Path], list[tuple[Path, str]], int]:
    """The image files under ``folder`` (recursively, sorted; hidden files and folders, whose
    names start with ``.``, left out) whose headers can be read and that have at most
    ``max_pixels`` pixels (None: no limit).

    Returns ``(readable, bad, other)``: readable image paths; ``(path, reason)`` for files with an
    image suffix that cannot be opened (they are skipped), for the previews an earlier run of this
    tool drew there (``<stem>.preview.jpg`` listed by its detections JSON), and for a second name of a file listed
    already (a symbolic or hard link: one photo trained on twice, or held out under one name and
    trained on under the other); the number of other files ignored. Copies with their own bytes
    are not recognised. Raises :class:`InvalidInputError` when ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.exists():
        raise InvalidInputError(f"{folder}: no such folder")
    if not root.is_dir():
        raise InvalidInputError(f"{folder}: not a folder")
    try:  # (rglob passes over a folder it may not list, and said "no readable images")
        with os.scandir(root) as entries:
            next(entries, None)
    except OSError as exc:
        raise InvalidInputError(f"{folder}: cannot list the folder ({exc.strerror or exc})") from None
    good: list[Path] = []
    bad: list[tuple[Path, str]] = []
    other = 0
    seen: dict[tuple[int, int], Path] = {}
    # hidden files and folders are passed over (macOS's ._IMG_0001.jpg resource forks, .thumbnails/)
    files, dangling = _listed_files(root)
    bad.extend((p, "a link to a file that does not exist") for p in dangling if p.suffix.lower() in IMAGE_SUFFIXES)
    other += sum(p.suffix.lower() not in IMAGE_SUFFIXES for p in dangling)
    from ..batch import _our_preview

    for p in files:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            other += 1
            continue
        if _our_preview(p):
            # (a folder that was a batch's --out: the previews, boxes drawn on a copy of each photo,
            # were trained on, the held-out photo's among them; an outside review)
            bad.append((p, "a preview an earlier run drew (its detections JSON lists it), not a photo"))
            continue
        size = None
        try:
            st = p.stat()
            size = st.st_size
            # (an inode number of 0 says nothing: some Windows and network file systems)
            first = seen.setdefault((st.st_dev, st.st_ino), p) if st.st_ino else p
        except OSError:
            first = p
        if first != p:
            bad.append((p, f"the same file as {first.relative_to(root).as_posix()}"))
            continue
        try:
            if size == 0:
                raise ValueError("the file is empty")  # as the engine's readers say it
            if p.suffix.lower() in (".tif", ".tiff"):
                from ..tiler.readers import open_image

                with open_image(p, max_pixels=max_pixels) as src:
                    w, h = src.width, src.height
            else:  # the header only; the engine's pixel limit, not Pillow's (panoramas are big)
                with open_header(p) as im:
                    w, h = im.size
                check_size(str(p), w, h, max_pixels)
            if min(w, h) < MIN_PHOTO_SIDE:  # a thumbnail or an icon holds no shelf to learn from
                raise ValueError(f"{w}x{h} px: too small for a shelf photo (under {MIN_PHOTO_SIDE} px a side)")
        except Exception as exc:  # any reader error means: skip this file and say why
            bad.append((p, one_line(exc)))
            continue
        good.append(p)
    return good, bad, other


def _pixels_over(path: Path, max_pixels: int | None) -> tuple[int, int] | None:
    """``(width, height)`` of the photo at ``path`` when it has more than ``max_pixels`` pixels
    (its header says so), else None (within the limit, or not readable at all)."""
    if max_pixels is None:
        return None
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            from ..tiler.readers import open_image

            with open_image(path, max_pixels=None) as src:
                w, h = src.width, src.height
        else:
            with open_header(path) as im:
                w, h = im.size
    except Exception:  # unreadable: not over the limit (its own reason says what it is)
        return None
    return (w, h) if w * h > max_pixels else None


def _no_photo_text(folder: Path, bad: list[tuple[Path, str]], other: int, max_pixels: int | None) -> str:
    """Why :func:`find_photos` found no photo in ``folder``, telling the photos over the pixel
    limit apart from the files that do not read (counted as unreadable, they sent the user to
    the first bad file, which had nothing to do with it)."""
    big = [(p, wh) for p, wh in ((p, _pixels_over(p, max_pixels)) for p, _ in bad) if wh is not None]
    over = {q for q, _ in big}
    rest = [(p, why) for p, why in bad if p not in over]
    first = f"{rest[0][0].relative_to(folder).as_posix()}: {rest[0][1]}" if rest else ""
    if not big:
        return (f"{folder}: no readable images (looked for {', '.join(IMAGE_SUFFIXES)}; {len(bad)} unreadable, "
                f"{other} other files{'; the first: ' + first if first else ''})")
    (p, (w, h)), n = big[0], len(big)
    return (f"{folder}: no photo within the --max-pixels limit of {max_pixels} pixels: {n} photo"
            f"{' is' if n == 1 else 's are'} over it (the first: {p.relative_to(folder).as_posix()}, {w}x{h} = {w * h} "
            f"pixels; raise --max-pixels, or give none for no limit); besides them {len(rest)} unreadable, "
            f"{other} other files{'; the first unreadable: ' + first if first else ''}")


def _read_photo(path: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The upright RGB pixels of a photo, as the engine reads them (EXIF orientation applied)."""
    from ..tiler.readers import open_image

    with open_image(path, max_pixels=max_pixels) as src:
        return src.read(0, 0, src.width, src.height)


def output_paths(out: str | os.PathLike[str]) -> dict[str, Path]:
    """``{"weights", "state", "report_json", "report_txt"}`` of an adapt run writing ``out``.

    Raises :class:`InvalidInputError` for a path without a file name (``.``, ``/``, one ending
    with a separator or a dot: ``models/`` is a folder, though ``Path`` drops the slash).
    """
    given = os.fspath(out)
    out = Path(out)
    if not out.name or out.name in (".", "..") or names_a_folder(given):
        raise InvalidInputError(f"--out {given!r}: not a file name; give the weights file to write, "
                                "such as my_stores.pt")
    if out.suffix.lower() == ".onnx":  # (the detector reads a .onnx file as ONNX: these could not be served)
        raise InvalidInputError(f"--out {given!r}: adapt writes torch weights, and --checkpoint reads a .onnx "
                                "file as ONNX; give a .pt name such as my_stores.pt")
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return {
        "weights": out,
        "state": out.with_name(f"{stem}.state.pt"),
        "report_json": out.with_name(f"{stem}.report.json"),
        "report_txt": out.with_name(f"{stem}.report.txt"),
    }


def _checked_config(raw: Any, label: str) -> dict[str, Any]:
    """The model config of weights named ``label``, resolved as the detector resolves it
    (:func:`~densedet_tile.detector.builtin.model_config`) and checked for the values training
    reads, so that a damaged file is refused before any work rather than failing mid-run."""
    if not isinstance(raw, Mapping):
        raise InvalidInputError(f"{label}: its 'config' is a {type(raw).__name__}, not a dict")
    cfg = model_config(raw)

    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    size, stride = cfg.get("input_size"), cfg.get("stride")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise InvalidInputError(f"{label}: config input_size must be an integer of at least 32, got {size!r}")
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise InvalidInputError(f"{label}: config stride must be a positive integer, got {stride!r}")
    for key in ("mean", "std"):
        v = cfg.get(key)
        if not (isinstance(v, (list, tuple)) and len(v) == 3 and all(number(x) for x in v)):
            raise InvalidInputError(f"{label}: config {key} must be 3 numbers (R, G, B), got {v!r}")
    if any(x <= 0 for x in cfg["std"]):
        raise InvalidInputError(f"{label}: config std must be positive, got {cfg['std']!r}")
    try:
        DecodeSettings.from_config(cfg)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInputError(f"{label}: config cannot be used ({one_line(exc)})") from None
    return cfg


def _check_outside_package(path: Path) -> None:
    pkg = Path(__file__).resolve().parents[1]
    target = Path(os.path.realpath(path))  # (not resolve(): RuntimeError on a loop of links)
    if target == pkg or pkg in target.parents:
        raise InvalidInputError(f"{path}: will not write inside the installed package ({pkg}); choose another --out")


# ----------------------------------------------------------------------------------------------
# result
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AdaptResult:
    """``status`` "done" (weights written) or "stopped" (state written; resume to continue),
    ``paths`` from :func:`output_paths`, and the ``report`` (also written as JSON and text)."""

    status: str
    paths: dict[str, Path]
    report: dict[str, Any]


def report_text(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    lines = [f"densedet-tile adapt: {report['status']}"
             + (f" -> {report['out']}" if report["status"] == "done" else f" (state in {report['state']}; "
                "run again with --resume to continue)")]
    used, available = report["photos_used"], report.get("photos_available", report["photos_used"])
    gone = report.get("unreadable_after_use", [])
    lines.append(f"photos: {used}{'' if used == available else f' of {available}'} used for training"
                 + ("" if used == available else " (trained on so far)" if report["status"] != "done" else
                    " (no step drew crops from the others: too few steps for the photos, or they were "
                    "labelled too late to train on)")
                 + (f" ({len(gone)} of them unreadable since, after training on them)" if gone else "")
                 + f", {report['holdout']} held out"
                 + (f", {len(report['skipped'])} skipped" if report["skipped"] else ""))
    for what, entries in (("unreadable since", gone), ("skipped", report["skipped"])):
        for name, why in entries[:10]:
            lines.append(f"  {what} {name}: {why}")
        if len(entries) > 10:
            lines.append(f"  ... and {len(entries) - 10} more {what}")
    for r in report["rounds"]:
        per = r["pseudo_labels"] / max(r["photos_labelled"], 1)
        loss = "-" if r.get("loss") is None else f"{r['loss']:.3f}"
        lines.append(f"round {r['round']}: {_n(r['photos_labelled'], 'photo')} labelled, {r['pseudo_labels']} pseudo-labels "
                     f"({per:.1f} per photo), {r['ignore_regions']} ignore regions; steps {r['steps_from']}-"
                     f"{r['steps_to']}, loss {loss}")
    h = report.get("holdout_check")
    if h:
        b, a = h["before"], h["after"]

        def f(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        names = h.get("names") or []
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        lines.append(f"held-out photos ({h['photos']}){' ' + shown if shown else ''}: boxes per photo "
                     f"{b['boxes_per_photo']:.1f} before, {a['boxes_per_photo']:.1f} after; agreement with the final "
                     f"weights' test-time pseudo-labels ({h['reference_per_photo']:.1f} per photo), F1 at IoU 0.5: {f(b['f1'])} "
                     f"before, {f(a['f1'])} after (precision {f(b['precision'])} -> {f(a['precision'])}, recall "
                     f"{f(b['recall'])} -> {f(a['recall'])})")
    elif report["holdout"]:
        lines.append("held-out photos: not checked yet (the run has not finished)")
    lines.append(f"time: {report['minutes']:.1f} min ({report['cpu_minutes']:.1f} CPU-min, {report['threads']} threads), "
                 f"{report['steps']} steps on {report['device']}")
    thr = report.get("serve_thr", report.get("settings", {}).get("serve_thr"))
    if report["status"] == "done" and thr is not None:
        how = ""
        cal = report.get("serve_thr_picked")
        if cal and cal["matched_counts"]:
            start = cal.get("start_boxes_per_photo")
            start_text = "" if start is None else f", the starting weights {start:.1f} at their threshold"
            which = "the starting weights' count" if cal.get("matched") == "starting_weights" else "their pseudo-labels' count"
            larger = "" if start is None else ", the larger"  # (a run resumed from an earlier version's state: one count)
            of = f" of {cal.get('photos_planned')} (the time budget ran out)" if cal.get("cut_short") else ""
            how = (f" (picked to match {which}{larger}: there they count {cal['boxes_per_photo']:.1f} boxes per "
                   f"photo on {_n(cal['photos'], 'photo')}{of}, their pseudo-labels {cal['pseudo_labels_per_photo']:.1f}"
                   f"{start_text})")
        elif cal and cal.get("out_of_reach"):
            which = "the starting weights'" if cal.get("matched") == "starting_weights" else "their pseudo-labels'"
            target = cal["start_boxes_per_photo"] if cal.get("matched") == "starting_weights" \
                else cal["pseudo_labels_per_photo"]
            of = f" of {cal.get('photos_planned')} (the time budget ran out)" if cal.get("cut_short") else ""
            how = (f" (the closest to {which} {target:.1f} boxes per photo: no threshold of the search counts as "
                   f"{'many' if cal['out_of_reach'] == 'under' else 'few'}; there they count "
                   f"{cal['boxes_per_photo']:.1f} on {_n(cal['photos'], 'photo')}{of})")
        elif cal:
            nor = "" if cal.get("start_boxes_per_photo") is None else " nor starting weights' boxes"
            how = (f" (the starting weights' own: no pseudo-labels{nor} on the "
                   f"{_n(cal['photos'], 'photo')} to match counts with)")
        lines.append(f"the weights serve at score threshold {thr:g}{how} unless --score-thr says otherwise")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _n(n: int, word: str) -> str:
    """``n`` and ``word``, plural unless ``n`` is 1 ("1 photo", "3 photos")."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _adapt_report(path: Path) -> bool:
    """Whether ``path`` holds the JSON report an adapt run wrote (a run that stopped or failed
    there leaves one without weights; a new run may replace it and the text beside it)."""
    import json

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and {"status", "out", "folder", "settings", "rounds"} <= doc.keys()


def _reported_weights(path: Path) -> Path | None:
    """The weights file the adapt report at ``path`` was written for, where that file still
    exists beside the report (a run writes its report beside its weights); None otherwise."""
    import json

    if not _adapt_report(path):
        return None
    out = json.loads(path.read_text(encoding="utf-8")).get("out")
    if not isinstance(out, str) or not out or not Path(out).name:
        return None
    cand = path.parent / Path(out).name
    return cand if cand.is_file() else None


def _adapt_report_text(path: Path) -> bool:
    """Whether ``path`` holds the text report an adapt run wrote (its first line, as
    :func:`report_text` writes it)."""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline(200)
    except (OSError, ValueError):
        return False
    return first.startswith("densedet-tile adapt: ")


def _trained_on_of_old_state(s: dict[str, Any]) -> list[str]:
    """The photos trained on, by a state saved before they were kept: those labelled before its
    last step (their crops joined the batches when they were labelled)."""
    labels = s["labels"]
    return [n for n in s["train"] if isinstance(labels.get(n), dict) and labels[n].get("since", 0) < s["step"]]


def _state_digest(obj: Any) -> str:
    """SHA-256 of a saved state's contents (every tensor's dtype, shape and bytes, every other
    value's repr, dict entries by key; its own ``digest`` entry left out): torch's file format
    holds no checksum, so bytes damaged inside a tensor loaded as other weights, resumed from
    without a word (an outside review)."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, torch.Tensor):
            t = x.detach().cpu().resolve_conj().resolve_neg().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            if t.numel():
                h.update(t.reshape(-1).view(torch.uint8).numpy())
        elif isinstance(x, Mapping):
            h.update(b"{")
            for k in sorted(x, key=repr):
                if k == "digest" and x is top:
                    continue
                h.update(repr(k).encode())
                feed(x[k])
            h.update(b"}")
        elif isinstance(x, (set, frozenset)):  # (in a stable order: a set's own follows the hash seed)
            h.update(b"<")
            for v in sorted(x, key=repr):
                feed(v)
            h.update(b">")
        elif isinstance(x, (list, tuple)):
            h.update(b"[" if isinstance(x, list) else b"(")
            for v in x:
                feed(v)
            h.update(b"]")
        else:
            h.update(repr(x).encode())

    top = obj
    feed(obj)
    return h.hexdigest()


def _f32_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def adapt(
    folder: str | os.PathLike[str],
    out: str | os.PathLike[str],
    settings: AdaptSettings | None = None,
    *,
    base: str | os.PathLike[str] | None = None,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    budget: Mapping[str, Any] | None = None,
    progress: ProgressFn | None = None,
    should_stop: Callable[[], bool] | None = None,
    log: Callable[[str], None] | None = None,
) -> AdaptResult:
    """Adapt the built-in model (or the ``base`` checkpoint) to the photos under ``folder``.

    ``out`` is the weights file to write (see the module docstring for the files beside it).
    ``resume`` continues the stopped run whose state lies beside ``out`` with its own settings;
    with ``settings`` given, its budget (``minutes``/``steps``) and ``save_every`` replace the
    saved ones (``settings=None`` keeps the saved budget too). ``budget`` (resume only) replaces
    just the entries it names (``minutes``, ``steps``, ``save_every``) and keeps the others, as
    the CLI does for ``--resume --minutes N`` (it wins over ``settings``).
    ``progress`` receives a dict per photo and per step (``phase``, ``round``, ``rounds``,
    ``done``, ``total``, ``step``, ``steps_total``, ``loss``, ``seconds_left``); ``should_stop``
    is polled between photos and steps (True: write the state and return "stopped"); ``log``
    receives one-line notes.

    Raises :class:`InvalidInputError` for a folder without readable images (or none that
    decodes), an output inside the package or without a file name, an existing output (without
    ``overwrite``), a state in the way (without ``resume``), none to resume or a damaged one,
    base weights whose config or info is malformed; :class:`~densedet_tile.errors.DetectorError`
    for unreadable base weights; :class:`AdaptFailed` for a run that cannot write weights (no
    training step in its budget, or weights that are not finite).
    """
    return AdaptRun(folder, out, settings, base=base, device=device, resume=resume, overwrite=overwrite,
                    budget=budget, progress=progress, should_stop=should_stop, log=log).run()


class _Stop(Exception):
    """Raised inside the run when ``should_stop`` says so; caught by :meth:`AdaptRun.run`."""


class AdaptRun:
    """One adapt run: the constructor checks the inputs and sets everything up (raising
    :class:`InvalidInputError` before any work is done), :meth:`run` does the work. Arguments as
    for :func:`adapt`."""

    def __init__(
        self,
        folder: str | os.PathLike[str],
        out: str | os.PathLike[str],
        settings: AdaptSettings | None = None,
        *,
        base: str | os.PathLike[str] | None = None,
        device: str = "auto",
        resume: bool = False,
        overwrite: bool = False,
        budget: Mapping[str, Any] | None = None,
        progress: ProgressFn | None = None,
        should_stop: Callable[[], bool] | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        if settings is None and not resume:
            settings = AdaptSettings()
        if budget is not None:
            unknown = set(budget) - {"minutes", "steps", "save_every"}
            if unknown:
                raise InvalidInputError(f"adapt: budget takes minutes, steps and save_every, not {', '.join(sorted(unknown))}")
            if not resume:
                raise InvalidInputError("adapt: budget changes a resumed run's budget; a new run takes it in settings")
        self.paths = output_paths(out)
        for p in self.paths.values():
            _check_outside_package(p)
        where = self.paths["weights"].parent
        if not where.is_dir():  # (a file there was said not to exist: an outside review)
            raise InvalidInputError(f"{out}: its folder {where} " + ("is a file, not a folder" if where.exists()
                                                                      else "does not exist"))
        for p in self.paths.values():
            if p.is_dir():
                raise InvalidInputError(f"--out {out}: {p} is a folder; give a file name for the weights")
            if p.exists() and not p.is_file():  # never replaced, --overwrite, --resume or not
                raise InvalidInputError(f"--out {out}: {p} exists and is not a regular file (a device, pipe or "
                                        "socket); choose another --out")
        ensure_out_dir(self.paths["weights"].parent)  # writable, checked before hours of work
        # named after the state (the outputs' common stem): --out a.pt and --out a.pth write the
        # same state and reports, so they must take the same lock
        state = self.paths["state"]
        self._lock = OutputLock(state.with_name(f".{state.name}.lock"))
        try:
            free = self._lock.acquire()
        except OSError as exc:
            raise InvalidInputError(f"--out {out}: cannot take the lock {self._lock.path} "
                                    f"({exc.strerror or exc})") from None
        if not free:
            raise InvalidInputError(f"--out {out}: another adapt run is writing it (its lock {self._lock.path.name} "
                                    "is held); wait for it to end or choose another --out")
        try:
            self._set_up(folder, settings, base, device, resume, overwrite, budget, progress, should_stop, log)
        except BaseException:
            self._lock.release()
            raise

    def close(self) -> None:
        """Let go of ``--out`` without running (:meth:`run` does so when it ends); idempotent."""
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.release()

    def __enter__(self) -> "AdaptRun":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a run built and dropped unrun must not keep --out locked
        try:
            self.close()
        except Exception:  # (at interpreter exit the modules it needs may be gone)
            pass

    def _set_up(self, folder, settings, base, device, resume, overwrite, budget, progress, should_stop, log) -> None:
        # what a killed run of these outputs was writing (the lock keeps any live one out)
        sweep_temporaries(self.paths["weights"].parent, own=[p.name for p in self.paths.values()])
        self.folder = Path(folder)
        self.progress = progress or (lambda e: None)
        self.should_stop = should_stop or (lambda: False)
        self.log = log or (lambda m: None)
        self.dev = torch.device(resolve_device(device))
        self.t_session = time.monotonic()
        self.cpu_session = time.process_time()
        self.last_save = time.monotonic()
        if resume:
            self._load_state(settings, budget)
        else:
            self._fresh(settings, base, overwrite)
        self._build()

    # -- set-up -------------------------------------------------------------------------------
    def _fresh(self, settings: AdaptSettings, base, overwrite: bool) -> None:
        root = Path(os.path.realpath(self.folder))
        for p in self.paths.values():
            # one of the photos: said before --overwrite is offered (which is refused for it too)
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file() and Path(os.path.realpath(p)).is_relative_to(root):
                raise InvalidInputError(f"--out {self.paths['weights']}: it or its state or report would overwrite "
                                        f"the photo {p}; choose an --out that is not one of the photos")
        if self.paths["state"].exists():
            if _is_state(self.paths["state"]):
                raise InvalidInputError(f"{self.paths['state']} holds a stopped run: pass --resume to continue it, "
                                        "or delete it to start again")
            # (another run's weights named m.state.pt were offered for deletion as a stopped run;
            # an outside review)
            raise InvalidInputError(f"{self.paths['state']} is there but holds no stopped adapt run (it is where a run "
                                    f"of --out {self.paths['weights'].name} keeps its state): move it away or choose "
                                    "another --out")
        if self.paths["weights"].exists() and not overwrite:
            raise InvalidInputError(f"{self.paths['weights']} exists: choose another --out or pass --overwrite")
        for key, ours in (("report_json", _adapt_report), ("report_txt", _adapt_report_text)):
            # a file of the user's by that name, or a report of another run (each judged on its own:
            # an adapt JSON beside it does not make a text of the user's a report)
            if self.paths[key].exists() and not overwrite and not ours(self.paths[key]):
                raise InvalidInputError(f"{self.paths[key]} exists (the report of --out {self.paths['weights'].name} "
                                        "goes there): choose another --out or pass --overwrite")
        other = _reported_weights(self.paths["report_json"])
        if other is not None and not overwrite and not same_path(other, self.paths["weights"]):
            # my_stores.pth beside my_stores.pt: the report is the only record of the other's check
            raise InvalidInputError(f"{self.paths['report_json']} is the report of {other}, which is still there: "
                                    "choose another --out or pass --overwrite")
        good, bad, other = find_photos(self.folder, settings.max_pixels)
        mine = {os.path.realpath(p) for p in self.paths.values()}
        hit = next((p for p in good if os.path.realpath(p) in mine), None)
        if hit is not None:  # --overwrite would replace a photo with the weights (or a report)
            raise InvalidInputError(f"--out {self.paths['weights']}: it or its state or report would overwrite "
                                    f"the photo {hit}; choose an --out that is not one of the photos")
        if not good:
            raise InvalidInputError(_no_photo_text(self.folder, bad, other, settings.max_pixels))
        if settings.holdout >= len(good):
            raise InvalidInputError(f"--holdout {settings.holdout} leaves no photo to train on "
                                    f"({len(good)} readable photos)")
        if base is None:
            raw = _read_weights()
            ckpt = read_checkpoint(raw)
            base_info = {"weights": "built-in (densedet_tile/detector/weights/default.pt)", "sha256": _sha256(raw)}
        else:
            raw = Path(base).read_bytes() if Path(base).is_file() else None
            ckpt = read_checkpoint(base)
            base_info = {"weights": str(Path(base).resolve()), "sha256": _sha256(raw) if raw else None}
            if same_path(base, self.paths["weights"]):
                # adapted again into the same file (--overwrite): the file named no longer holds
                # the starting weights; their hash and provenance below do (an outside review)
                base_info["replaced_by_this_run"] = True
        label = f"--from {base}" if base is not None else "the built-in weights"
        if not (isinstance(ckpt, dict) and isinstance(ckpt.get("state_dict"), dict) and isinstance(ckpt.get("config"), dict)):
            raise InvalidInputError(f"{label}: not weights of the built-in model (a checkpoint dict with "
                                    "'config' and 'state_dict', as adapt and scripts/train_default.py write)"
                                    + adapt_state_hint(ckpt))
        info = ckpt.get("info")
        if info is not None and not isinstance(info, Mapping):
            raise InvalidInputError(f"{label}: its 'info' is a {type(info).__name__}, not a dict")
        if problem := threshold_problem(info):
            raise InvalidInputError(f"{label}: {problem}")
        base_info["info"] = dict(info or {})
        config = _checked_config(ckpt["config"], label)
        self.settings = settings
        names = [p.relative_to(self.folder).as_posix() for p in good]
        decoded: list[tuple[str, str]] = []
        held = self._draw_holdout(names, decoded)
        held_set = set(held)
        train = [n for n in names if n not in held_set]
        skipped = [[p.relative_to(self.folder).as_posix(), why] for p, why in bad] + [list(x) for x in decoded]
        self._check_one_decodes(train, decoded, skipped, len(held), len(bad))
        self.s: dict[str, Any] = {
            "version": STATE_VERSION,
            "settings": settings.to_dict(),
            "folder": str(self.folder.resolve()),
            "train": train,
            "holdout": held,
            "skipped": skipped,
            "base": base_info,
            "config": config,
            "phase": "before",
            "round": 0,
            "step": 0,
            "elapsed": 0.0,
            "cpu": 0.0,
            "labels": {},
            # the training photos whose crops at least one step drew from (see _mark_trained)
            "trained_on": [],
            "labelled_this_round": [],
            "crop_order": [],
            "rounds": [],
            "holdout_before": {},
            "timing": {"label_s": [], "plain_s": [], "step_s": [], "calib_s": []},
            "loss": None,
            "train_end": None,
            "calib": {},
            # the starting weights' own plain counts on the calibration photos (at their threshold,
            # before any step): the count the served threshold may not fall below (_calibrate)
            "start_counts": None,
            # --overwrite given at the start: the run may replace what stands at --out (checked on resume)
            "replace_out": bool(overwrite),
        }
        self.resumed = False
        self._source = label
        try:
            self._init_weights = _f32_state(ckpt["state_dict"])
        except AttributeError:  # an entry of the state dict that is not a tensor
            raise InvalidInputError(f"{label}: its state_dict holds entries that are not tensors") from None
        broken = [k for k, v in self._init_weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if broken:  # training from them fails at the first step, whatever the lr
            raise InvalidInputError(f"{label}: {len(broken)} of its tensors hold inf or nan (the first: {broken[0]}); "
                                    "these weights cannot be trained on")
        for p, why in bad:
            self.log(f"skipping {p.relative_to(self.folder).as_posix()}: {why}")
        for name, why in decoded:
            self.log(f"skipping {name}: {why}")

    def _try_decode(self, name: str, failed: list[tuple[str, str]]) -> bool:
        """Whether photo ``name`` decodes; a failure is added to ``failed`` with its reason."""
        try:
            _read_photo(self.folder / name, self.settings.max_pixels)
        except (DensedetError, OSError) as exc:
            failed.append((name, one_line(exc)))
            return False
        return True

    def _draw_holdout(self, names: list[str], failed: list[tuple[str, str]]) -> list[str]:
        """The held-out photos: drawn at random (``seed``), each decoded to make sure it can be
        checked; one that fails is skipped and the next drawn photo takes its place."""
        want = self.settings.holdout
        held: list[str] = []
        if not want:
            return held
        for i in np.random.default_rng([self.settings.seed, 11]).permutation(len(names)):
            if len(held) == want or len(names) - len(failed) - len(held) <= 1:
                break  # enough, or only one photo left for training
            if self._try_decode(names[int(i)], failed):
                held.append(names[int(i)])
        if len(held) < want:
            raise InvalidInputError(f"--holdout {want} leaves no photo to train on ({len(names) - len(failed)} of "
                                    f"{len(names)} photos could be decoded"
                                    + (f"; the first that could not: {failed[0][0]}: {failed[0][1]})" if failed else ")"))
        return sorted(held)

    def _check_one_decodes(self, train: list[str], failed: list[tuple[str, str]], skipped: list[list[str]],
                           n_held: int, n_unlisted: int = 0) -> None:
        """Refuse a folder none of whose training photos decodes (their headers can pass the
        listing: a truncated JPEG fails only when decoded), before any work. Photos are tried
        in order until one decodes; the failures are added to ``skipped``. ``n_unlisted``: the
        image files the listing found unreadable already (said too)."""
        for name in train:
            if any(n == name for n, _ in failed):
                continue
            k = len(failed)
            if self._try_decode(name, failed):
                return
            skipped.append(list(failed[k]))
        first = next(((n, why) for n, why in failed if n in set(train)), None)
        what = f" (the first: {first[0]}: {first[1]})" if first else ""
        if n_unlisted:
            what += f"; {_n(n_unlisted, 'other image file')} skipped when the folder was listed"
        if n_held:
            raise InvalidInputError(f"{self.folder}: none of its {_n(len(train), 'photo')} left for training after "
                                    f"--holdout {n_held} could be decoded{what}")
        raise InvalidInputError(f"{self.folder}: none of its {_n(len(train), 'photo')} could be decoded{what}")

    def _load_state(self, settings: AdaptSettings | None, budget: Mapping[str, Any] | None = None) -> None:
        sp = self.paths["state"]
        if not sp.exists():
            raise InvalidInputError(f"nothing to resume: {sp} does not exist")
        try:
            s = torch.load(sp, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch's own text would suggest loading it unsafely: not repeated
            raise InvalidInputError(f"{sp}: cannot read the saved state (damaged, or not an adapt state: "
                                    f"{type(exc).__name__}); delete it to start again") from exc
        if isinstance(s, dict) and isinstance(s.get("version"), int) and s["version"] < STATE_VERSION:
            raise InvalidInputError(f"{sp}: saved by an earlier version of densedet-tile (state version {s['version']}, "
                                    f"this one reads {STATE_VERSION}); delete it to start again")
        if not isinstance(s, dict) or s.get("version") != STATE_VERSION:
            raise InvalidInputError(f"{sp}: not an adapt state of this version")
        if "digest" in s and s["digest"] != _state_digest(s):  # (a state saved before it had one: not checked)
            raise InvalidInputError(f"{sp}: the saved state is damaged (its contents do not match the checksum saved "
                                    "with them); delete it to start again")
        missing = [k for k in _STATE_KEYS if k not in s]
        wrong = [k for k, t in _STATE_KEYS.items() if k in s and (not isinstance(s[k], t) or isinstance(s[k], bool))]
        if missing or wrong or s["phase"] not in _PHASES:
            what = (f"missing {', '.join(missing)}" if missing else
                    f"malformed {', '.join(wrong)}" if wrong else f"unknown phase {s['phase']!r}")
            raise InvalidInputError(f"{sp}: not a complete adapt state ({what}); delete it to start again")
        if Path(s["folder"]) != self.folder.resolve():
            raise InvalidInputError(f"{sp} belongs to a run over {s['folder']}, not {self.folder.resolve()}")
        if not s.get("replace_out", True):  # (a state saved before the key existed: as before, no check)
            # a stopped run writes no weights: a file there now was put there since (--overwrite
            # cannot be given with --resume, and the run was started without it)
            clash = self.paths["weights"] if self.paths["weights"].exists() else next(
                (self.paths[k] for k, ours in (("report_json", _adapt_report), ("report_txt", _adapt_report_text))
                 if self.paths[k].exists() and not ours(self.paths[k])), None)
            if clash is not None:
                raise InvalidInputError(f"{clash} exists, and this run, started without --overwrite, would replace "
                                        f"it when it ends: move it away, then --resume again")
        try:
            saved = AdaptSettings.from_dict(s["settings"])
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{sp}: its settings cannot be used ({one_line(exc)})") from None
        if budget:
            self.settings = replace(saved, **dict(budget))  # validated again by AdaptSettings
        elif settings is None:
            self.settings = saved
        else:
            self.settings = replace(saved, minutes=settings.minutes, steps=settings.steps, save_every=settings.save_every)
        done = s.get("step")
        asked = (budget or {}).get("steps") if budget else (settings.steps if settings is not None else None)
        if asked is not None and isinstance(done, int) and asked < done:
            # (it labelled a photo "in this round's share of the time" and ended with steps 20 of 5)
            raise InvalidInputError(f"--steps {asked}: the stopped run in {sp} has done {done} steps "
                                    f"already; give {done} or more to continue it")
        s["settings"] = self.settings.to_dict()
        s.setdefault("loss", None)
        s.setdefault("cpu", 0.0)
        s.setdefault("train_end", None)
        if not isinstance(s.get("trained_on"), list):
            s["trained_on"] = _trained_on_of_old_state(s)
        if not isinstance(s.get("calib"), dict):  # a state saved before the served threshold was picked
            s["calib"] = {}
        s["timing"].setdefault("calib_s", [])
        # a state saved before the starting weights were counted: counted when it is still before
        # the first step, in whatever phase (the weights are still the starting ones: _count_start),
        # else the threshold is picked from the pseudo-labels alone, as then
        s.setdefault("start_counts", None)
        self.s = s
        self.resumed = True
        self._source = str(sp)
        st = self.settings
        if budget:
            told = ("from this call" if {"minutes", "steps"} <= set(budget) else
                    f"{' and '.join(k for k in ('minutes', 'steps') if k in budget)} from this call, the rest saved")
        else:
            told = "saved" if settings is None else "from this call"
        budget_text = " and ".join(b for b in ((f"{st.minutes:g} min" if st.minutes is not None else ""),
                                               (f"{st.steps} steps" if st.steps is not None else "")) if b)
        self.log(f"resuming from {sp}: round {s['round'] + 1}, step {s['step']}, {s['elapsed'] / 60:.1f} min so far; "
                 f"budget {budget_text} in all ({told}), the saved run's settings")

    def _build(self) -> None:
        st = self.settings
        cfg = _checked_config(self.s["config"], self._source)
        self.config = cfg
        self.stride = int(cfg["stride"])
        torch.manual_seed(st.seed)
        try:
            self.model = ShelfNet(cfg)
        except (TypeError, ValueError, RuntimeError, IndexError, KeyError) as exc:  # widths, blocks, neck
            raise InvalidInputError(f"{self._source}: its config does not describe a model that can be built "
                                    f"({clipped(one_line(exc))})") from None
        try:
            if self.resumed:  # the saved tensors move into the model; the state dict keeps only the rest
                self.model.load_state_dict(self.s.pop("model"))
            else:
                self.model.load_state_dict(self._init_weights)
                del self._init_weights
        except (RuntimeError, TypeError, ValueError, AttributeError) as exc:  # another architecture, or damaged
            raise InvalidInputError(f"{self._source}: the weights do not fit the model they describe "
                                    f"({clipped(one_line(exc))})") from None
        self._check_stride()
        self.model.to(self.dev)
        self.ema = ema_copy(self.model)
        self.opt = make_optimizer(self.model, st.lr)
        if self.resumed:
            try:
                self.ema.load_state_dict(self.s.pop("ema"))
                self.opt.load_state_dict(self.s.pop("opt"))
            except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as exc:
                raise InvalidInputError(f"{self._source}: its saved weight average or optimiser does not fit the "
                                        f"model ({clipped(one_line(exc))}); delete it to start again") from None
        self.mean, self.std = normaliser(cfg, self.dev)
        self.pool = SyntheticPool(seed=st.seed, size=st.size, stride=self.stride, tile_ratio=tile_ratio(cfg),
                                  pool=st.synth_pool)
        self.crops = PhotoCrops(size=st.size, stride=self.stride, input_size=int(cfg["input_size"]),
                                tile=st.labels.tile)
        self.crop_index: dict[str, int] = {}
        self._drawn: list[int] = []

    def _check_stride(self) -> None:
        """Refuse a config whose ``stride`` is not the one the network's outputs have: training
        targets and decoded boxes are placed with it."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                heat, _ = self.model(torch.zeros(1, 3, 64, 64))
        except (RuntimeError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"{self._source}: the model its config describes does not run "
                                    f"({clipped(one_line(exc))})") from None
        finally:
            self.model.train(was_training)
        real = 64 // max(int(heat.shape[-1]), 1)
        if real != self.stride:
            raise InvalidInputError(f"{self._source}: config stride is {self.stride}, but the network's outputs "
                                    f"are at stride {real}")

    # -- clock and budget ------------------------------------------------------------------------
    def elapsed(self) -> float:
        """Wall seconds of the run so far, over all its sessions."""
        return self.s["elapsed"] + (time.monotonic() - self.t_session)

    def cpu_seconds(self) -> float:
        """CPU seconds of this process's threads spent on the run, over all its sessions (on a busy
        machine far fewer than wall seconds times cores)."""
        return self.s.get("cpu", 0.0) + (time.process_time() - self.cpu_session)

    def _mean(self, key: str) -> float | None:
        v = self.s["timing"][key]
        return float(np.mean(v[-50:])) if v else None

    def reserve_s(self) -> float:
        """Seconds kept for the end: picking the served threshold (TTA labels and one plain run
        of each calibration photo) and the check of the held-out photos (TTA labels and one
        plain run each)."""
        n_hold = len(self.s["holdout"])
        n_cal = 0 if self.settings.serve_thr is not None else min(self.settings.calib_photos, len(self.s["train"]))
        if not n_hold and not n_cal:
            return 0.0
        lab, plain, counts = self._end_times()
        return (n_cal + n_hold) * lab + n_cal * counts + n_hold * plain + 5.0

    def _end_times(self) -> tuple[float, float, float]:
        """Seconds of one photo's test-time labels, one plain run and one count at every
        threshold, from the mean times so far (each estimated from another where it has none
        yet; 0 where nothing was timed)."""
        lab, plain, counts = self._mean("label_s"), self._mean("plain_s"), self._mean("calib_s")
        views = len(self.settings.labels.views)
        if lab is None and plain is not None:
            lab = plain * views
        if plain is None and lab is not None:
            plain = lab / views
        if counts is None and plain is not None:
            counts = 2.0 * plain  # one plain run merged at every threshold of the grid: about twice one run
        return lab or 0.0, plain or 0.0, counts or 0.0

    def fraction(self) -> float:
        """How much of the budget is used, in [0, 1+)."""
        st = self.settings
        p = 0.0
        if st.steps is not None:
            p = self.s["step"] / st.steps
        if st.minutes is not None:
            usable = max(st.minutes * 60 - self.reserve_s(), 1e-6)
            p = max(p, self.elapsed() / usable)
        return p

    def seconds_left(self) -> float | None:
        """Wall seconds left: from the time budget, or under a step budget alone an estimate
        from the mean step and labelling times so far (None until there is one)."""
        st = self.settings
        if st.minutes is not None:
            return max(0.0, st.minutes * 60 - self.elapsed())
        step_s = self._mean("step_s")
        if step_s is None:
            return None
        left = max(0, (st.steps or 0) - self.s["step"]) * step_s
        lab = self._mean("label_s")
        if lab is not None:  # the rounds still to label, each over all the training photos
            later = st.rounds - 1 - self.s["round"] + (1 if self.s["phase"] in ("before", "label") else 0)
            left += max(0, later) * lab * len(self._readable(self.s["train"]))
        return left + self.reserve_s()

    def steps_total(self) -> int | None:
        st = self.settings
        est = None
        step_s = self._mean("step_s")
        if st.minutes is not None and step_s:
            left = st.minutes * 60 - self.reserve_s() - self.elapsed()
            left -= (st.rounds - 1 - self.s["round"]) * (self.label_cap() or 0.0)  # later rounds' labelling
            est = self.s["step"] + int(max(0.0, left) / step_s)
        if st.steps is not None:
            est = st.steps if est is None else min(est, st.steps)
        return est

    def label_cap(self) -> float | None:
        """Seconds a round may spend labelling under a time budget (None without one)."""
        st = self.settings
        if st.minutes is None:
            return None
        return st.label_share * max(st.minutes * 60 - self.reserve_s(), 1.0) / st.rounds

    def _poll(self) -> None:
        if self.should_stop():
            raise _Stop()
        if time.monotonic() - self.last_save >= self.settings.save_every:
            self.save_state()

    # -- state ---------------------------------------------------------------------------------------
    def save_state(self) -> None:
        s = dict(self.s)
        s["elapsed"] = self.elapsed()
        s["cpu"] = self.cpu_seconds()
        s["model"] = _f32_state(self.model.state_dict())
        s["ema"] = _f32_state(self.ema.state_dict())
        s["opt"] = self.opt.state_dict()
        s["digest"] = _state_digest(s)
        atomic_write(self.paths["state"], checkpoint_bytes(s))
        self.last_save = time.monotonic()

    # -- detectors --------------------------------------------------------------------------------------
    def _detector(self, score_thr: float | None, *, split_stacks: bool | None = None) -> DefaultDetector:
        cfg = {**self.config, **{k: DEFAULT_CONFIG[k] for k in ("score_thr", "nms_iou", "max_det")}}
        det = DefaultDetector(self.ema, cfg, device=self.dev, score_thr=score_thr, split_stacks=split_stacks)
        if score_thr is not None:
            # its runs measure the products at the threshold they serve at, as the weights will
            # when served at it (they declare it); the package's 0.45 measured the held-out
            # checks of weights served at 0.3 at another scale (a third look)
            det.scale_thr = score_thr
        return det

    def _plain(self, image: np.ndarray, score_thr: float, name: str = "<array>") -> np.ndarray:
        """The weight average's own boxes at ``score_thr``, one plain run: (N, 5) x1 y1 x2 y2
        score. The stack splitter is off, as it is for pseudo-labels, so that the two are
        compared like with like (a stack cut in k layers would count k - 1 boxes the labels lack)."""
        from ..pipeline import detect_image
        from ..tiler.readers.array import ArraySource

        import logging

        lab = self.settings.labels
        pipe_log, quiet = logging.getLogger("densedet_tile.pipeline"), _Drop(*_SMALL_PRODUCTS)
        pipe_log.addFilter(quiet)  # (the starting weights count 24 photos: one warned of on every run)
        try:
            d = detect_image(ArraySource(image, name=name), self._detector(score_thr, split_stacks=False),
                             tiling=TileSpec(tile=lab.tile, overlap=lab.overlap), merge=MergeSpec()).detections
        finally:
            pipe_log.removeFilter(quiet)
        return np.column_stack([d.xyxy, d.scores]).astype(np.float32)

    def _base_thr(self) -> float:
        """The threshold the starting weights are served at (theirs, or the built-in default)."""
        return served_threshold(self.s["base"].get("info"), DEFAULT_CONFIG["score_thr"])

    def _label(self, image: np.ndarray, name: str = "<array>") -> PseudoLabels:
        # labels are the network's own boxes: the stack splitter is a rule applied when serving
        # (on the adapted weights too), and a product it cut by mistake must not become labels
        # (the photo rule's checks measure at the served threshold, as the crops' scale is found:
        # views and crops start from the scale the engine serves the photo at)
        return pseudo_label(image, self._detector(self.settings.labels.score_lo, split_stacks=False),
                            self.settings.labels, name=name, scale_thr=self._base_thr())

    def _readable(self, names: list[str]) -> list[str]:
        """``names`` less the photos found unreadable so far (a truncated JPEG shows itself
        only when it is decoded, after the folder was listed)."""
        bad = {n for n, _ in self.s["skipped"]}
        return [n for n in names if n not in bad]

    def _read(self, name: str) -> np.ndarray | None:
        try:
            return _read_photo(self.folder / name, self.settings.max_pixels)
        except (DensedetError, OSError) as exc:
            if not any(n == name for n, _ in self.s["skipped"]):
                self.s["skipped"].append([name, one_line(exc)])
                self.log(f"skipping {name}: {one_line(exc)}")
            return None

    def _event(self, phase: str, done: int, total: int, **kw: Any) -> None:
        self.progress({"phase": phase, "round": self.s["round"] + 1, "rounds": self.settings.rounds, "done": done,
                       "total": total, "step": self.s["step"], "steps_total": self.steps_total(),
                       "loss": self.s["loss"], "seconds_left": self.seconds_left(), **kw})

    # -- phases ----------------------------------------------------------------------------------------
    def run(self) -> AdaptResult:
        import logging

        # the engine's note that the photo rule replaced a --tile asked for comes for every
        # photo, every round, naming a detect option adapt has not: said once here instead
        scale_log = logging.getLogger("densedet_tile.scale")
        quiet = _Drop(*_TILE_REPLACED)
        scale_log.addFilter(quiet)
        try:
            return self._run()
        finally:
            scale_log.removeFilter(quiet)
            if quiet.seen:
                self.log(f"note: --tile {self.settings.labels.tile} applied to panoramas only: the photos were "
                         "labelled and trained at the scale the model's photo rule serves them at, as the "
                         "adapted weights will be (docs/adapt.md, \"Serving tile\")")
            self._lock.release()

    def _run(self) -> AdaptResult:
        try:
            if self.resumed and self.s["phase"] in ("label", "train") and self.s["crop_order"]:
                self._reload_crops()
            while True:
                phase = self.s["phase"]
                if phase == "before":
                    self._holdout_before()
                    self._count_start()
                    self.s["phase"] = "label"
                elif phase == "label":
                    self._count_start()  # (a state of an earlier version stopped before any step)
                    self._label_round()
                    self.s["phase"] = "train"
                    self.save_state()
                elif phase == "train":
                    self._count_start()  # (the same, stopped or out of budget before the first step)
                    self._train_round()
                    self.s["train_end"] = None
                    last = self.s["round"] + 1 >= self.settings.rounds
                    if last or self.fraction() >= 1.0:
                        self.s["phase"] = "final"
                    else:
                        self.s["round"] += 1
                        self.s["labelled_this_round"] = []
                        self.s["phase"] = "label"
                    self.save_state()
                elif phase == "final":
                    if not self.s["step"]:
                        self._no_step()  # raises: nothing trained, so no threshold to pick either
                    self._calibrate()
                    return self._finish()
        except _Stop:
            self.save_state()
            report = self._report("stopped")
            if self.paths["weights"].exists():
                # weights of an earlier run (--overwrite; a stopped run writes none): their report
                # is their only record of the held-out check, and stays
                self.log(f"note: the report of this stopped run is not written: {self.paths['weights']} is an "
                         "earlier run's, and its report stays with it until this run finishes (--resume)")
            else:
                self._write_report(report)
            return AdaptResult("stopped", self.paths, report)

    def _photos(self, names: list[str], phase: str, done: Container[str] = ()) -> Iterator[tuple[str, np.ndarray]]:
        """Each photo of ``names`` not in ``done`` (looked up as each comes) that decodes, as
        ``(name, pixels)``, after a stop check (a stop raises; the state is saved and a resumed
        run comes back here) and a progress event of ``phase``."""
        for k, name in enumerate(names):
            if name in done:
                continue
            self._poll()
            self._event(phase, k, len(names))
            image = self._read(name)
            if image is not None:
                yield name, image

    def _reload_crops(self) -> None:
        for name, image in self._photos(list(self.s["crop_order"]), "read"):
            self._add_crop(name, image)

    def _served_scale(self, image: np.ndarray, name: str) -> float | None:
        """The scale the engine serves this photo at by the model's photo rule (None: at the
        tile's), so that its crops are trained at the size the adapted weights will see it."""
        from ..scale import photo_rule_scale
        from ..tiler.readers.array import ArraySource

        lab = self.settings.labels
        return photo_rule_scale(ArraySource(image, name=name), self._detector(self._base_thr(), split_stacks=False),
                                TileSpec(tile=lab.tile, overlap=lab.overlap), RunSpec(), measure_thr=self._base_thr())

    def _add_crop(self, name: str, image: np.ndarray) -> None:
        # the photo as first read (its pixels' checksum, kept in the state): one replaced under
        # its name later (between a stop and --resume, or between rounds) would be trained with
        # the first one's pseudo-labels and crop scale (an outside review); it is refused, named
        img = np.ascontiguousarray(image)
        digest = f"{img.shape[1]}x{img.shape[0]}:" + hashlib.blake2b(img.data, digest_size=16).hexdigest()
        sums = self.s.setdefault("photo_sums", {})
        if sums.setdefault(name, digest) != digest:
            raise AdaptFailed(f"{self.folder / name}: this photo changed since the run first labelled it (its "
                              "pseudo-labels and crop scale are the first one's): put it back as it was and resume, "
                              "or start the run again (a new photo under a name of its own)")
        if name not in self.crop_index:
            scales = self.s.setdefault("crop_scale", {})  # decided once: a resumed run trains the same crops
            if name not in scales:
                scales[name] = self._served_scale(image, name)
            try:
                self.crop_index[name] = self.crops.add(image, scale=scales[name])
            except (OSError, ValueError, MemoryError) as exc:  # the photo named: it can be moved away
                raise AdaptFailed(f"{name}: cannot keep this photo for training ({one_line(exc)}); move it out "
                                  "of the folder and run again") from exc
        lab = self.s["labels"].get(name)
        if lab is not None:
            self.crops.set_labels(self.crop_index[name], lab["boxes"].numpy(), lab["ignore"].numpy())

    def _holdout_before(self) -> None:
        for name, image in self._photos(self.s["holdout"], "before", done=self.s["holdout_before"]):
            t0 = time.monotonic()
            self.s["holdout_before"][name] = torch.from_numpy(self._plain(image, self._base_thr(), name))
            self.s["timing"]["plain_s"].append(time.monotonic() - t0)

    def _count_start(self) -> None:
        """Before the first step: the starting weights' own boxes on each calibration photo, run
        plainly at their threshold (the stack splitter off), for :meth:`_calibrate`. Called at
        each phase that may come before the first step; a no-op once counted, or after a step."""
        if self.settings.serve_thr is not None or self.s["step"]:
            return
        start = self.s["start_counts"]
        if start is None:
            start = self.s["start_counts"] = {"names": self._calib_names(), "counts": {}}
        counts = start["counts"]
        for name, image in self._photos(start["names"], "count", done=counts):  # a resumed run goes on
            t0 = time.monotonic()
            counts[name] = int(len(self._plain(image, self._base_thr(), name)))
            self.s["timing"]["plain_s"].append(time.monotonic() - t0)

    def _round_record(self) -> dict[str, Any]:
        r = self.s["round"] + 1
        if not self.s["rounds"] or self.s["rounds"][-1]["round"] != r:
            self.s["rounds"].append({"round": r, "photos_labelled": 0, "pseudo_labels": 0, "ignore_regions": 0,
                                     "label_seconds": 0.0, "steps_from": self.s["step"], "steps_to": self.s["step"],
                                     "loss": None})
        return self.s["rounds"][-1]

    def _label_round(self) -> None:
        st = self.settings
        rec = self._round_record()
        names = self.s["train"]
        order = [names[i] for i in np.random.default_rng([st.seed, 13, self.s["round"]]).permutation(len(names))]
        # photos never labelled first, then those whose labels are oldest (in the seed's order
        # among equals): a round cut short by its share of the time leaves the photos it did not
        # reach for the next round to take first
        order = sorted(order, key=lambda n: self.s["labels"][n]["round"] if n in self.s["labels"] else 0)
        order = self._readable(order)  # photos that failed to decode are not tried again
        done = set(self.s["labelled_this_round"])
        cap = self.label_cap()
        for k, name in enumerate(order):
            if name in done:
                continue
            self._poll()  # a stop asked while the last photo was labelled wins over the budget
            if rec["photos_labelled"] and (self.fraction() >= 1.0 or (cap is not None and rec["label_seconds"] >= cap)):
                self.log(f"round {self.s['round'] + 1}: labelled {rec['photos_labelled']} of {_n(len(order), 'photo')} "
                         "in this round's share of the time")
                break
            self._event("label", k, len(order))
            t0 = time.monotonic()
            image = self._read(name)
            if image is None:
                continue
            pl = self._label(image, name)
            self.s["labels"][name] = {"boxes": _t(pl.boxes), "scores": _t(pl.scores), "ignore": _t(pl.ignore),
                                      "round": self.s["round"] + 1}
            if name not in self.crop_index:
                self.s["crop_order"].append(name)
            self._add_crop(name, image)
            dt_s = time.monotonic() - t0
            self.s["timing"]["label_s"].append(dt_s)
            self.s["labelled_this_round"].append(name)
            rec["photos_labelled"] += 1
            rec["pseudo_labels"] += len(pl)
            rec["ignore_regions"] += int(pl.ignore.shape[0])
            rec["label_seconds"] += dt_s
        self._event("label", len(order), len(order))
        if not self.crop_index and not self._readable(self.s["train"]):
            # the set-up decoded one of them: the folder changed under the run
            train = set(names)
            first, why = next(((n, w) for n, w in self.s["skipped"] if n in train), ("?", "?"))
            raise AdaptFailed(f"{self.folder}: none of its {len(names)} training photos can be decoded any more "
                              f"(the first: {first}: {why}); was the folder changed during the run?")

    def _batch(self, step: int) -> tuple[torch.Tensor, ...]:
        st = self.settings
        rng = np.random.default_rng([st.seed, 17, step])
        n_syn = st.n_synth if len(self.crops) else st.batch
        samples = [self.pool.get(step * max(n_syn, 1) + j) for j in range(n_syn)]
        self._drawn = []  # the photos (crop indices) this batch's crops came from
        n_photo = st.batch - n_syn
        for j in range(n_photo):
            k = self._photo_of_draw(step * n_photo + j)
            samples.append(self.crops.sample(rng, k))
            self._drawn.append(k)
        return tuple(t.to(self.dev) for t in stack_samples(samples))

    def _photo_of_draw(self, d: int) -> int:
        """The photo (crop index) of the run's ``d``-th photo crop (``d`` counts up by one a
        draw): the photos labelled so far in turn, each turn in an order of its own (shuffled by
        the seed and ``d``) with the photos no step has drawn from yet first, so that a few
        steps draw from as many photos as they can and a photo newly labelled is drawn soon. The
        turn is kept in the run's state: a resumed run draws what the uninterrupted one did."""
        n, s = len(self.crops), self.s
        if len(s.get("draw_order", ())) != n or not 0 <= d - s.get("draw_from", d) < n:
            trained = set(s["trained_on"])
            name_of = {k: name for name, k in self.crop_index.items()}
            perm = [int(k) for k in np.random.default_rng([self.settings.seed, 29, int(d)]).permutation(n)]
            s["draw_order"] = ([k for k in perm if name_of.get(k) not in trained]
                               + [k for k in perm if name_of.get(k) in trained])
            s["draw_from"] = int(d)
        return int(s["draw_order"][d - s["draw_from"]])

    def _label_fraction(self) -> float:
        """The share of the budget one later round's labelling is expected to take (0 without a
        time budget: only the clock counts labelling)."""
        st = self.settings
        lab = self._mean("label_s")
        if st.minutes is None or not lab:
            return 0.0
        seconds = lab * max(len(self._readable(self.s["train"])), 1)
        cap = self.label_cap()
        if cap is not None:
            seconds = min(seconds, cap + lab)  # it stops at the cap, after the photo that reached it
        return seconds / max(st.minutes * 60 - self.reserve_s(), 1e-6)

    def _train_end(self) -> float:
        """Where, as a fraction of the budget, this round's training ends.

        On schedule: at the end of the round's equal share. When the labelling overran that
        share (a busy machine, or photos slower to label than a round's time), the round is
        rescheduled so that it still trains: what is left of the budget is shared between this
        round's training and as many later rounds (labelling and training) as can still fit,
        each getting an equal part for training. With nothing left (the budget ran out while
        labelling) the round trains no step.
        """
        st = self.settings
        r = self.s["round"]
        end = (r + 1) / st.rounds
        now = self.fraction()
        if now < end - 1e-9 or now >= 1.0:
            return end
        left = 1.0 - now
        per_round = self._label_fraction()
        later = st.rounds - 1 - r
        if per_round > 0:
            later = min(later, max(0, math.ceil(left / per_round) - 1))
        new_end = now + (left - later * per_round) / (later + 1)
        self.log(f"round {r + 1}: labelling overran the round's share of the budget; training until "
                 f"{100 * new_end:.0f}% of it" + (" (no time left to label again)" if not later else ""))
        return new_end

    def _train_round(self) -> None:
        st = self.settings
        rec = self._round_record()
        if self.s.get("train_end") is None:  # kept in the state, so a resumed round ends where it would have
            self.s["train_end"] = self._train_end()
        end = self.s["train_end"]
        # the engine moves a detector to the CPU for the rest of an image that ran out of GPU
        # memory, and labelling's detectors wrap the weight average itself: it trains where the
        # model is
        self.ema.to(self.dev)
        self.model.train()
        amp = self.dev.type == "cuda"
        while self.fraction() < end - 1e-9:
            self._poll()
            step = self.s["step"]
            t0 = time.monotonic()
            batch = self._batch(step)
            gen = torch.Generator().manual_seed(st.seed * 1_000_003 + step)
            lr = learning_rate(st.lr, step, self._lr_progress(), st.warmup)
            terms = train_step(self.model, self.ema, self.opt, batch, step=step, lr=lr, gen=gen, mean=self.mean,
                               std=self.std, stride=self.stride, ema_decay=st.ema, amp=amp)
            if terms is None:
                # resuming would run the same steps into the same overflow: the state goes, as in _finish
                try:
                    self.paths["state"].unlink()
                except FileNotFoundError:
                    pass
                raise AdaptFailed(f"adapt: the loss or its gradient became non-finite at step {step}; nothing "
                                  f"written and the state removed: start again with a lower --lr (it was {st.lr:g})")
            self.s["step"] = step + 1
            self._mark_trained()
            self.s["loss"] = terms["loss"] if self.s["loss"] is None else 0.9 * self.s["loss"] + 0.1 * terms["loss"]
            self.s["timing"]["step_s"].append(time.monotonic() - t0)
            self.s["timing"]["step_s"] = self.s["timing"]["step_s"][-200:]
            rec["steps_to"] = self.s["step"]
            rec["loss"] = self.s["loss"]
            self._event("train", self.s["step"], self.steps_total() or self.s["step"])
        self.model.eval()

    def _lr_progress(self) -> float:
        st = self.settings
        p = 0.0 if st.steps is None else self.s["step"] / st.steps
        if st.minutes is not None:
            p = max(p, self.fraction())
        return p

    def _calib_names(self) -> list[str]:
        """The photos that pick the served threshold: training photos in an order drawn from the
        seed, never the held-out ones (their check would then be scored at a threshold fitted
        on them); fixed once calibration starts, so that a resumed run uses the same ones."""
        names = self.s["calib"].get("names")
        if names is None:
            train = self._readable(self.s["train"])
            order = [train[i] for i in np.random.default_rng([self.settings.seed, 29]).permutation(len(train))]
            names = order[: self.settings.calib_photos]
        return list(names)

    def served_thr(self) -> float:
        """The score threshold the adapted weights serve at: the one given, else the one picked
        by :meth:`_calibrate` (the starting weights' own before that)."""
        if self.settings.serve_thr is not None:
            return float(self.settings.serve_thr)
        picked = self.s["calib"].get("thr")
        return float(picked) if picked is not None else self._base_thr()

    def _calibrate(self) -> None:
        """Pick the served threshold (``settings.serve_thr`` None): the one of :data:`CALIB_GRID`
        at which the final weights, run as served, count as many boxes over the calibration
        photos as the larger of two counts there: their own pseudo-labels (boxes the test-time
        views agree on, scored ``score_hi`` or more) and the starting weights' boxes at their
        threshold, counted before the first step; of several thresholds that count equally
        close, the one nearest the starting weights' threshold. Self-training lifts the scores of everything the model finds, its
        mistakes too, so a fixed threshold counts more boxes the longer it trains; the views'
        agreement does not drift that way, but it is a cautious count (products the views
        score under ``score_hi`` are left out of it), and matched alone it served the weights
        under the starting weights' count on real photos, whose threshold was chosen for
        counting. Every count is of the network's own boxes (the stack splitter off)."""
        if self.settings.serve_thr is not None or self.s["calib"].get("thr") is not None:
            return
        from ..pipeline import counts_at_thresholds
        from ..tiler.readers.array import ArraySource

        cal = self.s["calib"]
        start = self.s.get("start_counts")
        names = cal.setdefault("names", list(start["names"]) if start else self._calib_names())
        photos = cal.setdefault("photos", {})
        lab = self.settings.labels
        need = max(1, int(np.ceil(CALIB_MIN_SHARE * len(names))))
        for name, image in self._photos(names, "calibrate", done=photos):  # a resumed run goes on from its stop
            if len(photos) >= need and self._calibration_late():
                cal["cut_short"] = [len(photos), len(names)]
                self.log(f"note: the threshold is picked on {len(photos)} of {len(names)} calibration photos: one more "
                         f"would run past --minutes {self.settings.minutes:g} (the machine slowed down after the "
                         "time for the end was set aside)")
                break
            t0 = time.monotonic()
            ref = self._label(image, name)
            t1 = time.monotonic()
            # (at the scale the labels and the crops see the photo at: measured at the served threshold)
            counts = counts_at_thresholds(ArraySource(image, name=name), self._detector(CALIB_GRID[0], split_stacks=False),
                                          CALIB_GRID,
                                          tiling=TileSpec(tile=lab.tile, overlap=lab.overlap), merge=MergeSpec(),
                                          scale_thr=self._base_thr())
            self.s["timing"]["label_s"].append(t1 - t0)
            self.s["timing"]["calib_s"].append(time.monotonic() - t1)
            photos[name] = {"reference": int(len(ref.boxes)), "counts": [int(c) for c in counts]}
        # a photo the starting weights could not be counted on (unreadable then) is left out
        started = start["counts"] if start else None
        kept = [n for n in names if n in photos and (started is None or n in started)]
        used = [photos[n] for n in kept]
        reference = sum(p["reference"] for p in used)
        start_total = sum(started[n] for n in kept) if started is not None else None
        target = max(reference, start_total or 0)
        if not target:
            # no photo readable, or nothing the views agree on: nothing to match; the starting
            # weights' threshold is the honest guess
            cal["thr"] = self._base_thr()
            cal["picked"] = False
            nor = "" if start_total is None else " nor starting weights' boxes"
            self.log(f"no pseudo-labels{nor} on the {len(used)} calibration photos to match counts with: the weights "
                     f"serve at the starting weights' threshold {cal['thr']:g}")
        else:
            totals = np.sum([p["counts"] for p in used], axis=0)
            miss = np.abs(totals - target)
            ties = np.flatnonzero(miss == miss.min())
            # of thresholds that count alike, the one nearest the starting weights' (their middle
            # drifted from 0.45 to 0.38 on a flat count after 4 steps that changed nothing, where
            # a real photo's count would have risen: an outside review)
            base = self._base_thr()
            j = int(ties[int(np.argmin(np.abs(np.asarray(CALIB_GRID)[ties] - base)))])
            cal["thr"] = CALIB_GRID[j]
            cal["picked"] = True
            # the target beyond what any threshold of the grid counts: its end is the closest, no
            # match (the report said "picked to match" of weights 10 boxes a photo short at 0.2:
            # an outside review)
            end = "under" if totals.max() < target else "over" if totals.min() > target else None
            cal["out_of_reach"] = end
            if end is not None:
                self.log(f"note: no threshold from {CALIB_GRID[0]:g} to {CALIB_GRID[-1]:g} counts as many boxes as "
                         f"the target ({target / max(len(used), 1):.1f} a photo): at {cal['thr']:g} the weights "
                         f"count {totals[j] / max(len(used), 1):.1f}, {'fewer' if end == 'under' else 'more'}; they "
                         "serve there, the closest")
        cal["photos_used"] = len(used)
        cal["reference"] = reference
        cal["start"] = start_total
        cal["count"] = int(np.sum([p["counts"][CALIB_GRID.index(cal["thr"])] for p in used])) \
            if cal["picked"] else None
        self.save_state()

    def _calibration_late(self) -> bool:
        """Under a time budget: whether one more calibration photo (at the mean time of those so
        far) and the check of the held-out photos after it would end past the budget."""
        if self.settings.minutes is None:
            return False
        lab, plain, counts = self._end_times()
        hold = len([n for n in self.s["holdout"] if n in self.s["holdout_before"]]) * (lab + plain)
        return self.elapsed() + lab + counts + hold > self.settings.minutes * 60

    def _holdout_after(self) -> dict[str, Any] | None:
        names = [n for n in self.s["holdout"] if n in self.s["holdout_before"]]
        if not names:
            return None
        before = {"boxes": 0, "matched": 0, "pred": 0}
        after = {"boxes": 0, "matched": 0, "pred": 0}
        ref_total = 0
        checked: list[str] = []  # a held-out photo that no longer reads is left out on both sides
        for name, image in self._photos(names, "after"):  # a resumed run checks all the photos again
            checked.append(name)
            t0 = time.monotonic()
            ref = self._label(image, name)  # the final weights' own test-time labels of the photo
            ref_boxes, ref_ignore = ref.boxes, ref.ignore
            self.s["timing"]["label_s"].append(time.monotonic() - t0)
            t1 = time.monotonic()
            now = self._plain(image, self.served_thr(), name)
            self.s["timing"]["plain_s"].append(time.monotonic() - t1)
            ref_total += len(ref_boxes)
            for acc, pred in ((before, self.s["holdout_before"][name].numpy()), (after, now)):
                pred = pred[np.argsort(-pred[:, 4], kind="stable")]
                a = agreement(pred[:, :4], ref_boxes, ref_ignore)
                acc["boxes"] += len(pred)
                acc["matched"] += a["matched"]
                acc["pred"] += a["pred"]

        def figures(acc: dict[str, int]) -> dict[str, float | None]:
            if not acc["pred"] and not ref_total:  # no boxes on either side: nothing to agree on
                return {"boxes_per_photo": 0.0, "precision": None, "recall": None, "f1": None}
            p = acc["matched"] / acc["pred"] if acc["pred"] else 0.0
            r = acc["matched"] / ref_total if ref_total else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            return {"boxes_per_photo": acc["boxes"] / len(checked), "precision": round(p, 4),
                    "recall": round(r, 4), "f1": round(f1, 4)}

        if not checked:  # every held-out photo has gone since the run began: nothing was measured
            return None
        return {"photos": len(checked), "names": checked,  # paths within the folder, as skipped files are
                "reference_per_photo": ref_total / len(checked), "before": figures(before), "after": figures(after)}

    def _mark_trained(self) -> None:
        """Count the photos the last step's crops came from as trained on (after the step): for
        good, whatever becomes of their files later (a photo deleted or damaged after a stop drops
        out of a resumed run's crops, but the steps before the stop were trained on it). Until
        2026-12-06 every photo the batches could draw from counted from the first step (an outside
        review: 9 photos "used" after 2 steps of one photo crop each)."""
        drawn = set(self._drawn)
        if not drawn:
            return
        done = self.s["trained_on"]
        seen = set(done)
        # (in the order the photos were added: the record does not depend on the draws' order)
        done.extend(n for n, k in self.crop_index.items() if k in drawn and n not in seen)

    def _photos_labelled(self) -> int:
        """Training photos whose crops were trained on by at least one step (a photo first
        labelled by a round left no time to train counts for nothing; one that no longer reads
        counts if it was trained on before)."""
        return len(self.s["trained_on"])

    def _photos_available(self) -> int:
        """Training photos there were: those still readable, and those trained on before they
        stopped reading (a photo never used that does not read is a skipped one)."""
        used = set(self.s["trained_on"])
        bad = {n for n, _ in self.s["skipped"]}
        return sum(n in used or n not in bad for n in self.s["train"])

    def _skipped(self) -> tuple[list[list[str]], list[list[str]]]:
        """``(skipped, unreadable_after_use)``: the files never used (with why), and the photos
        trained on that no longer read (deleted or damaged since; with why)."""
        used = set(self.s["trained_on"])
        skipped = [list(x) for x in self.s["skipped"] if x[0] not in used]
        return skipped, [list(x) for x in self.s["skipped"] if x[0] in used]

    def _provenance(self) -> dict[str, Any]:
        return {
            "kind": "densedet-tile adapt",
            "score_thr": self.served_thr(),
            "score_thr_picked": self._calibration(),
            "base": self.s["base"],
            "photos": self._photos_labelled(),
            "photos_available": self._photos_available(),
            "holdout_photos": len(self._readable(self.s["holdout"])),
            "steps": int(self.s["step"]),
            "rounds_done": len(self.s["rounds"]),
            "minutes": round(self.elapsed() / 60, 2),
            "cpu_minutes": round(self.cpu_seconds() / 60, 2),
            "device": str(self.dev),
            "settings": self.settings.to_dict(),
            "pseudo_labels_per_round": [int(r["pseudo_labels"]) for r in self.s["rounds"]],
            "densedet_tile_version": __version__,
            "torch_version": str(torch.__version__),
            "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def _report(self, status: str, holdout: dict[str, Any] | None = None) -> dict[str, Any]:
        skipped, gone = self._skipped()
        return {
            "status": status,
            "out": str(self.paths["weights"]),
            "state": None if status == "done" else str(self.paths["state"]),  # removed when done
            "folder": self.s["folder"],
            "photos_used": self._photos_labelled(),
            "photos_available": self._photos_available(),
            "holdout": len(self._readable(self.s["holdout"])),
            "skipped": skipped,
            "unreadable_after_use": gone,
            "rounds": [dict(r) for r in self.s["rounds"]],
            "holdout_check": holdout,
            "steps": int(self.s["step"]),
            "minutes": round(self.elapsed() / 60, 2),
            "cpu_minutes": round(self.cpu_seconds() / 60, 2),
            "threads": torch.get_num_threads(),
            "device": str(self.dev),
            "base": self.s["base"],
            "settings": self.settings.to_dict(),
            **({"serve_thr": self.served_thr(), "serve_thr_picked": self._calibration()} if status == "done" else {}),
        }

    def _calibration(self) -> dict[str, Any] | None:
        """How the served threshold was picked (None: it was given)."""
        cal = self.s["calib"]
        if self.settings.serve_thr is not None or cal.get("thr") is None:
            return None
        n = max(int(cal["photos_used"]), 1)
        start = cal.get("start")
        matched = None
        if cal["picked"]:
            matched = "starting_weights" if start is not None and start > cal["reference"] else "pseudo_labels"
        return {"photos": int(cal["photos_used"]), "photos_planned": len(cal.get("names") or ()),
                "cut_short": bool(cal.get("cut_short")),
                "matched_counts": bool(cal["picked"]) and not cal.get("out_of_reach"), "matched": matched,
                "out_of_reach": cal.get("out_of_reach"),
                "pseudo_labels_per_photo": round(cal["reference"] / n, 1),
                "start_boxes_per_photo": None if start is None else round(start / n, 1),
                "boxes_per_photo": None if cal["count"] is None else round(cal["count"] / n, 1)}

    def _report_files(self, report: dict[str, Any]) -> dict[Path, str]:
        """The report's two files and their texts. In the text report a file name that is not
        UTF-8 shows its odd bytes as ``\\xe9`` escapes, as the console shows it (written as UTF-8,
        it ended a finished run with a UnicodeEncodeError); the JSON escapes them its own way."""
        import json

        text = utf8_text(report_text(report))
        return {self.paths["report_json"]: json.dumps(report, indent=1) + "\n",
                self.paths["report_txt"]: text + "\n"}

    def _write_report(self, report: dict[str, Any]) -> None:
        write_files(self._report_files(report))

    def _no_step(self) -> None:
        """The budget ran out before the first step: the starting weights unchanged are no result.
        Keep the state, so that a larger budget can continue (training the last round that
        labelled photos); raises :class:`AdaptFailed` (or stops, when a stop was asked meanwhile:
        the run was stopped, not short of time)."""
        self.s["phase"] = "train"
        self.s["train_end"] = None
        self.s["calib"] = {}  # (a state of an earlier version may hold one) picked again after training
        self.save_state()
        if self.should_stop():  # a resumed run trains that round
            raise _Stop()
        st = self.settings
        used = ""
        if st.minutes is not None:
            # what is kept back for the end (picking the threshold, the held-out check) counts too:
            # with a budget smaller than that, labelling alone did not use it up
            start = self.s.get("start_counts")
            what = "counting the starting weights' boxes and labelling" if start and start["counts"] else "labelling"
            used = (f" ({what} took {self.elapsed() / 60:.2g} of {st.minutes:g} min, and {self.reserve_s() / 60:.2g} "
                    "min are kept back for picking the threshold and the held-out check; --calib-photos fewer "
                    "keeps back less)")
        raise AdaptFailed(
            f"adapt: the budget ran out before the first training step{used}; no weights written. The state is "
            f"kept in {self.paths['state']}: continue with --resume and a larger --minutes")

    def _finish(self) -> AdaptResult:  # after at least one step (run() checks)
        holdout = self._holdout_after()
        if self.should_stop():
            # asked during the last photo (of the held-out check, or of the threshold's pick):
            # stopped as the line said, before anything is written; a run that went on wrote its
            # weights and ended 0 after "stopping after this step or photo" (an outside review)
            raise _Stop()
        info = self._provenance()
        if holdout is not None:
            info["holdout_check"] = holdout
        ckpt = checkpoint_dict(self.ema, self.config, info)
        bad = [k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
        if bad:
            # diverged (or grown past what fp16 holds): resuming would give the same, so the state goes too
            try:
                self.paths["state"].unlink()
            except FileNotFoundError:
                pass
            raise AdaptFailed(
                f"adapt: training diverged: after {self.s['step']} steps {len(bad)} of the weights' tensors hold "
                f"inf or nan in fp16 (the first: {bad[0]}); nothing written and the state removed: start again "
                f"with a lower --lr (it was {self.settings.lr:g})")
        report = self._report("done", holdout)
        # the weights and their report together, all or nothing: a report that failed after the
        # weights were written left a finished run that its own --resume refused
        write_files({self.paths["weights"]: checkpoint_bytes(ckpt), **self._report_files(report)})
        try:
            self.paths["state"].unlink()
        except FileNotFoundError:
            pass
        return AdaptResult("done", self.paths, report)
