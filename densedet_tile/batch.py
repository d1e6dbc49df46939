"""``densedet-tile batch``: many images (or one giant image) across a pool of workers.

Images are handed to a pool of Ray actors, each of which builds the detector once and keeps
it; every image's outputs are written by :func:`densedet_tile.runner.process_image`, exactly as
the single-image CLI writes them. Without Ray (not installed, or ``--ray none``) the same loop
runs in this process. With ``split=True`` each image's tiles are fanned out to the workers
instead, and their tile-local detections merged here once, so the result is the one a single
process computes.

A run is restartable: images whose outputs exist and are complete are skipped, half-written or
corrupt outputs are redone. Every image's end is appended to ``<out>/manifest.jsonl`` as it
happens (one JSON object per line, written with a single ``O_APPEND`` write), and
``<out>/manifest.json`` (the latest record of every image the folder has seen, plus the runs) is
rewritten atomically when the run ends.
"""

from __future__ import annotations

import contextlib
import errno
import json
import itertools
import logging
import os
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Collection, Iterable, Sequence

from .detector.registry import DetectorSpec
from .errors import InvalidInputError, one_line, shown_name, stop_reason
from .io import (OUTPUT_SUFFIXES, YOLO_CLASSES_FILE, atomic_write, case_blind, check_out_as_given, ensure_out_dir,
                 flock_path, new_folders, remove_empty, same_path, sweep_temporaries, unlock_fd)
from .runner import (LOG_PLACEHOLDER, Job, build_detector, input_state, output_stem, process_image, redo_reason,
                     refuse_outputs_over_inputs, request_key, row_names, without_earlier_outputs)
from .runner import _outputs_record, _remove_stale_outputs, _tool_doc  # (what a detections JSON of ours says it was written with)
from .tiler.readers import IMAGE_SUFFIXES
from .types import ordered_range

__all__ = [
    "BatchSummary",
    "Manifest",
    "MANIFEST_SCHEMA",
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "run_batch",
]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "densedet-tile/batch-manifest@1"

#: Why a folder is refused while a batch run holds it (after "--out OUT: another" or ": a").
_HELD = ("densedet-tile batch run is writing there (its manifest.jsonl is locked); wait for it to end or "
         "choose another --out")


# -- the manifest -------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """The run log of an output folder: ``manifest.jsonl`` (append-only) and ``manifest.json``.

    Only the driver writes it. Each record is one line appended with a single ``os.write`` on
    an ``O_APPEND`` descriptor and fsynced, so a crash loses at most the line being written;
    a torn last line is skipped when reading and closed off before the next append. A write
    that fails part way (a full disk) is cut back off the file before the error goes on, so
    the log stays whole lines. :meth:`lock` keeps a second run out of the folder meanwhile.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.log_path = self.out_dir / "manifest.jsonl"
        self.json_path = self.out_dir / "manifest.json"
        self._lock_fd: int | None = None
        self._locked: tuple[int, int] | None = None  # (device, inode) of the log locked
        self._made_log = False

    def lock(self) -> None:
        """Hold the folder for this run: an exclusive lock on ``manifest.jsonl`` (made empty if
        missing), held until :meth:`unlock`. Another run on the same folder meanwhile would pick
        output names from a manifest this run is changing and write over its results: it is
        refused (:class:`~densedet_tile.errors.InvalidInputError`). Windows locks it with
        ``msvcrt.locking``."""
        made = not self.log_path.exists()
        try:  # (a run that just ended may remove the empty log this one opened: the new one is locked)
            state, fd = flock_path(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except ImportError:  # pragma: no cover - neither fcntl nor msvcrt
            return
        self._made_log = made
        if state == "busy":
            raise InvalidInputError(f"--out {self.out_dir}: another {_HELD}")
        self._lock_fd = fd  # None on a file system without locks (some network mounts): run unlocked
        # the log this run holds, to tell a folder removed or replaced meanwhile (check_held); where
        # nothing can be locked, the log as it is now stands for it
        with contextlib.suppress(OSError):
            st = os.fstat(fd) if fd is not None else os.stat(self.log_path)
            self._locked = (st.st_dev, st.st_ino)
        if state == "no locks":
            # said, not silent: two runs into one such folder each name a photo "a" and replace the
            # other's results (an outside review, on NFS mounted nolock or Lustre without flock)
            log.warning("--out %s: its file system takes no locks (a network mount without them?), so this run "
                        "cannot keep another batch run out of the folder: run one at a time into it, or two photos "
                        "of the same name from two runs may replace each other's results", self.out_dir)

    @staticmethod
    def held(out_dir: str | os.PathLike[str]) -> str | None:
        """Why not to write into ``out_dir`` outside a batch run: a batch run holds it (its log is
        locked), and sweeps its images' temporaries as it starts and ends, whatever their age (a
        detect run writing the same names there meanwhile lost them and failed on one image with
        "... .tmp: No such file or directory"; an outside review). None when no batch holds it:
        the lock is only tried, and let go at once."""
        log_path = os.path.join(out_dir, "manifest.jsonl")
        if not os.path.isfile(log_path):
            return None
        try:  # (no O_CREAT: a log removed meanwhile is not made again)
            state, fd = flock_path(log_path, os.O_RDONLY)
        except (ImportError, OSError):  # (no locks on this system, or the log does not open: not held)
            return None
        if fd is not None:
            unlock_fd(fd)
            os.close(fd)
        return f"--out {out_dir}: a {_HELD}" if state == "busy" else None

    def unlock(self) -> None:
        """Let go of the folder; a manifest this run made and never wrote to goes again."""
        fd, self._lock_fd, self._locked = self._lock_fd, None, None
        if fd is None:
            return
        try:
            if self._made_log and os.fstat(fd).st_size == 0:
                with contextlib.suppress(OSError):
                    self.log_path.unlink()
        finally:
            unlock_fd(fd)
            os.close(fd)

    def check_held(self) -> None:
        """Raise :class:`OutputFolderError` when the log this run locked is no longer the folder's
        (the folder was removed, or removed and made again, by hand or by another run, while this
        one wrote into it). Each output is written by its path, which made such a folder again
        without a word: the results written before were lost, the run ended "done" with exit 0,
        and a second run took the new folder alongside it (an outside review)."""
        if self._locked is None:
            return
        try:
            st = os.stat(self.log_path)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now != self._locked:
            raise OutputFolderError(
                f"the folder was removed or replaced during the run (its {self.log_path.name} is not the one "
                "this run holds): the run stops; run it again to redo the images whose outputs went with it")

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object) as one line, into the log this run holds."""
        self.check_held()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
        # 0o666 less the umask, as every output is (a group-shared folder stays writable to the group)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        try:
            size = os.fstat(fd).st_size
            if size:
                size, line = self._mend_tail(fd, size, line)
            try:
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(errno.ENOSPC, f"{self.log_path}: wrote {written} of {len(line)} bytes "
                                                "of a record (no space left?)")
                os.fsync(fd)
            except OSError:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)  # no torn line left behind for readers of the log
                raise
        finally:
            os.close(fd)

    def _mend_tail(self, fd: int, size: int, line: bytes) -> tuple[int, bytes]:
        """The log's size and the line to append, once a last line without its newline is dealt
        with: a whole record only lost its newline (it gets one); a record cut short by a crash
        (or an older version's full disk) is cut off, so that the log stays JSON Lines for every
        reader (``jq``, ``pandas.read_json(lines=True)`` failed on it), with a warning."""
        with open(self.log_path, "rb") as fh:
            fh.seek(size - 1)
            if fh.read(1) == b"\n":
                return size, line
            start = max(0, size - (1 << 20))
            fh.seek(start)
            tail = fh.read()
            cut = tail.rfind(b"\n")
            if cut < 0 and start > 0:  # a last line over 1 MiB: read it whole
                fh.seek(0)
                tail, start = fh.read(), 0
                cut = tail.rfind(b"\n")
        piece = tail[cut + 1:]
        try:
            whole = isinstance(json.loads(piece), dict)
        except ValueError:
            whole = False
        if whole:
            return size, b"\n" + line
        keep = start + cut + 1
        os.ftruncate(fd, keep)
        log.warning("%s: removed a record cut short at its end (%d bytes, from a run that was stopped while "
                    "writing it)", self.log_path, size - keep)
        return keep, line

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (torn or garbled lines are skipped)."""
        try:
            raw = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The manifest document: runs, and the latest record of every image, oldest image first."""
        runs: list[dict[str, Any]] = []
        images: dict[str, dict[str, Any]] = {}
        by_stem: dict[str, str] = {}  # stem -> the input whose outputs it holds now
        for rec in self.records():
            ev = rec.get("event")
            if ev == "run":
                runs.append(dict(rec))
            elif ev == "end" and runs and runs[-1].get("run") == rec.get("run"):
                runs[-1].update({k: v for k, v in rec.items() if k not in ("event", "run")})
            elif ev == "image" and isinstance(rec.get("input"), str):
                images.pop(rec["input"], None)  # re-insert: most recently touched last
                images[rec["input"]] = rec
                stem = rec.get("stem")
                if isinstance(stem, str):
                    before = by_stem.get(stem)
                    if (before is not None and before != rec["input"]
                            and images.get(before, {}).get("stem") == stem):
                        images.pop(before, None)  # a photo moved: its old path's outputs are the new one's
                    by_stem[stem] = rec["input"]
        counts: dict[str, int] = {}
        for rec in images.values():
            counts[rec.get("status", "?")] = counts.get(rec.get("status", "?"), 0) + 1
        return {"schema": MANIFEST_SCHEMA, "updated": _now(), "runs": runs, "counts": counts,
                "images": list(images.values())}

    def write_snapshot(self) -> Path:
        """Rewrite ``manifest.json`` atomically from the log."""
        return atomic_write(self.json_path, json.dumps(self.snapshot(), indent=1, default=str))


# -- inputs ---------------------------------------------------------------------------------------
def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Absolute paths of the inputs, folders replaced by their image files (sorted, not recursive).

    Duplicates (the same file named twice, or reached through a link, in a folder or not) are
    kept once, first position. A link to a photo is kept under the link's own path, named or in a
    folder (its name is the outputs' stem). A path that does not exist (or a link that leads nowhere, or
    round in a loop, named or in a folder) is kept under the name it was given: it fails as that
    image's error, not the run's. The previews this tool drew into a folder (``<stem>.preview.jpg`` whose
    ``<stem>.detections.json`` lists it among its outputs, or a JSON from before that list) are not taken
    (a warning per folder says how many were left out), nor are a folder's hidden files (a name starting
    with ``.``: macOS's ``._IMG_0001.jpg`` resource forks are no photos; a hidden file named
    as an input is taken). A folder that cannot be listed is refused
    (:class:`~densedet_tile.errors.InvalidInputError` naming it).
    """
    out: list[Path] = []
    seen: set[str] = set()
    for raw in inputs:
        given = Path(raw).expanduser()
        try:
            p = given.resolve()
        except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13)
            p = Path(os.path.abspath(given))
        if _told(given.is_symlink) and not _told(p.is_dir):
            # a link to nothing fails under its own name; a link to a photo is that photo under the
            # link's name, as in a folder's listing (named, it took its target's name: another
            # stem, and the photo's outputs twice, from one run to the next), in its folder's real
            # path as a listing has it (a link's folder reached through a link: /tmp on macOS)
            try:
                p = Path(os.path.realpath(given.parent)) / given.name
            except (OSError, RuntimeError):  # (a loop above it)
                p = Path(os.path.abspath(given))
        previews: list[Path] = []
        try:
            if _told(p.is_dir):
                found = sorted(c for c in p.iterdir() if not c.name.startswith(".")
                               and (c.is_file() or (c.is_symlink() and not c.exists()))  # a broken link is listed as one
                               and c.suffix.lower() in IMAGE_SUFFIXES)
                drawn = [_our_preview(c) for c in found]
                previews = [c for c, ours in zip(found, drawn) if ours]
                found = [c for c, ours in zip(found, drawn) if not ours]
            else:
                found = [p]
        except OSError as exc:
            raise InvalidInputError(f"{raw}: cannot list the folder ({one_line(exc)})") from None
        if previews:  # said once for the folder, however many (a folder that was --out of a run of thousands)
            more = f" and {len(previews) - 1} more" if len(previews) > 1 else ""
            log.warning("%s: left out %d preview%s an earlier run drew there (%s%s), not %s", raw, len(previews),
                        "s" if len(previews) > 1 else "", shown_name(previews[0].name), more,
                        "photos" if len(previews) > 1 else "a photo")
        for f in found:
            key = os.path.realpath(f) if _told(f.exists) else str(f)  # a file and a link to it are one photo
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def _told(test: Callable[[], bool]) -> bool:
    """A path test (``Path.exists``, ``is_dir``, ``is_symlink``), False where it cannot be told:
    a file in a folder the user may not enter (PermissionError) is kept under its name and fails
    as that image's error, not the run's."""
    try:
        return test()
    except OSError:
        return False


def _may_exist(path: Path) -> bool:
    """False only where ``path`` surely is not there: no such file (or a folder on its way is a
    file, or it is a link to nothing or round in a loop). A path whose state cannot be told (a
    file in a folder the user may not enter, a name too long for the file system) may be there:
    it runs, and fails as that image's error, as an unreadable file does; ``Path.exists``
    raised for it (Python 3.11, 3.12), which stopped the whole run."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError as exc:
        return exc.errno != errno.ELOOP
    except ValueError:  # (a NUL in the name)
        return False
    return True


def _image_names_in(out: Path, inputs: Sequence[Path]) -> list[str]:
    """The names the CSV and COCO rows of the other images whose detections JSONs lie in ``out``
    may go by (a detect run writes there too, and the manifest does not list those), ``inputs``'
    own left out: each one's file name and, where its outputs took another stem, that stem with
    the file's suffix (``x-2.jpg`` for the second ``x.jpg``: a later ``x-2.jpg`` must not take
    it, an outside review)."""
    mine = {os.path.abspath(p) for p in inputs}
    names = []
    for f in out.glob("*" + OUTPUT_SUFFIXES["json"]):
        try:
            image = json.loads(f.read_text(encoding="utf-8"))["image"]
            name, path = image["name"], image.get("path")
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            continue
        if isinstance(name, str) and not (isinstance(path, str) and os.path.abspath(path) in mine):
            names.append(name)
            alias = f.name[: -len(OUTPUT_SUFFIXES["json"])] + Path(name).suffix
            if alias != name:
                names.append(alias)
    return names


def _our_preview(path: Path) -> bool:
    """Whether ``path`` is a preview this tool drew: ``<stem>.preview.jpg`` beside
    ``<stem>.detections.json``, which lists it among the outputs it was written with (a folder
    that is also the output folder holds them, and they are not photos to detect in). A photo of
    the user's that only has that name is one (a JSON beside it was not enough: such a photo was
    left out without a word, then drawn over by the preview of ``<stem>``'s photo)."""
    suffix = OUTPUT_SUFFIXES["preview"]
    if not path.name.endswith(suffix) or len(path.name) == len(suffix):
        return False
    stem = path.name[: -len(suffix)]
    doc = _tool_doc(path.parent / (stem + OUTPUT_SUFFIXES["json"]), "detections")
    if doc is None:
        return False
    # (a JSON written before the outputs were listed, 2026-12-02, lists none: its preview is one)
    return "outputs" not in doc or path.name in _outputs_record(doc, stem)


def _written_before(paths: list[Path], earlier: Sequence[dict[str, Any]]) -> list[Path]:
    """``paths`` without the files that the manifest's ``earlier`` records list as outputs an
    image of theirs wrote (a preview whose detections JSON a killed run never renamed into place:
    nothing beside it records it, and it was refused as an input where that preview goes, or
    detected as a photo), each left out with a logged note."""
    written = {os.path.realpath(o) for r in earlier if r.get("event") == "image"
               for o in (r.get("outputs") if isinstance(r.get("outputs"), list) else []) if isinstance(o, str)}
    if not written:
        return paths
    kept = []
    for p in paths:
        real = os.path.realpath(p)  # (a link named to an earlier output: the output's own name)
        if real in written and os.path.basename(real).endswith(tuple(OUTPUT_SUFFIXES.values())):
            log.warning("%s: left out: an earlier run wrote it (manifest.jsonl lists it among its outputs)", p)
            continue
        kept.append(p)
    return kept


def _outputs_logged(earlier: Sequence[dict[str, Any]], out: Path) -> dict[str, dict[str, str]]:
    """stem -> {output name: SHA-256} of the outputs the manifest's ``earlier`` records say an
    image of that stem was written with (the latest record's digest of a name), limited to files
    directly in ``out`` with a name this tool gives an output of that stem, not the JSON, and
    recorded with their SHA-256 (a record of a version before them tells no file of ours from a
    label file corrected since: it names none)."""
    logged: dict[str, dict[str, str]] = {}
    for r in earlier:
        stem, paths, digests = r.get("stem"), r.get("outputs"), r.get("outputs_sha256")
        if (r.get("event") != "image" or r.get("status") != "ok" or not isinstance(stem, str)
                or not isinstance(paths, list) or not isinstance(digests, dict)):
            continue
        names = [Path(o).name for o in paths if isinstance(o, str) and os.path.realpath(Path(o).parent) == str(out)]
        own = _outputs_record({"outputs": names, "outputs_sha256": digests}, stem)
        logged.setdefault(stem, {}).update({n: h for n, h in own.items() if h is not None})
    return logged


def _renamed_outputs(earlier: Sequence[dict[str, Any]], out: Path, paths: Sequence[Path],
                     stems: Sequence[str]) -> dict[str, tuple[str, dict[str, str]]]:
    """input -> (its earlier stem, {output name: SHA-256}) for the inputs of this run whose latest
    finished record gave them another stem than they get now, one no input of this run takes (a
    photo named ``classes.jpg`` first run without YOLO labels, then with them: ``classes`` is the
    class list's name, so it becomes ``classes-2``). Its outputs under the old stem, the JSON
    included, go once the image is done under the new one, where they still hold what the tool
    wrote; left there, the photo's products were counted twice by anything reading the folder's
    ``*.detections.json`` (an outside review)."""
    now = {str(p): stem for p, stem in zip(paths, stems)}
    taken = {stem.casefold() for stem in stems}
    latest: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}  # stem -> the input its latest record gave it to
    for r in earlier:
        if isinstance(r.get("input"), str) and _plain_stem(r.get("stem")):
            owner[r["stem"].casefold()] = r["input"]
        if r.get("event") == "image" and r.get("status") == "ok" and isinstance(r.get("input"), str):
            latest[r["input"]] = r
    out_real = os.path.realpath(out)
    found: dict[str, tuple[str, dict[str, str]]] = {}
    for inp, r in latest.items():
        stem, digests = r.get("stem"), r.get("outputs_sha256")
        if inp not in now or not _plain_stem(stem) or stem == now[inp] or stem.casefold() in taken \
                or owner.get(stem.casefold()) != inp or not isinstance(digests, dict) \
                or not isinstance(r.get("outputs"), list):
            continue  # (a stem an earlier run gave another input since holds that input's outputs)
        ours = {stem + suffix for suffix in OUTPUT_SUFFIXES.values()}
        names = {Path(o).name for o in r["outputs"] if isinstance(o, str)
                 and os.path.realpath(Path(o).parent) == out_real and Path(o).name in ours}
        files = {n: digests[n] for n in names if isinstance(digests.get(n), str)}
        if files:
            found[inp] = (stem, files)
    return found


def _remove_own_json(out: Path, stem: str, inp: str) -> None:
    """Remove ``stem``'s detections JSON in ``out`` when it is this tool's and was made from the
    photo ``inp`` (the manifest keeps no digest of the JSON: it is written last, listing the
    others')."""
    path = out / (stem + OUTPUT_SUFFIXES["json"])
    image = (_tool_doc(path, "detections") or {}).get("image")
    if isinstance(image, dict) and isinstance(image.get("path"), str) and same_path(image["path"], inp):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _remove_outputs_logged_before(out: Path, rec: dict[str, Any], logged: dict[str, dict[str, str]]) -> None:
    """An image redone (``rec``, its new record): the outputs the manifest says an earlier run
    wrote for its stem (:func:`_outputs_logged`) and this one did not write again are removed,
    as :func:`~densedet_tile.runner.process_image` removes those its old JSON lists; that JSON may
    be unreadable (corrupt, cut short), which left them beside the new ones. Only a file that
    still holds what the tool wrote goes."""
    earlier = logged.get(str(rec.get("stem")))
    if not earlier:
        return
    now = {Path(o).name for o in rec.get("outputs") or () if isinstance(o, str)}
    _remove_stale_outputs(out, {n: h for n, h in earlier.items() if n not in now})


def _result_json(out_dir: Path, stem: str) -> dict[str, Any] | None:
    """The detections JSON ``stem`` has in ``out_dir``, parsed; None when there is none or it is
    unreadable or no JSON object."""
    try:
        doc = json.loads((out_dir / (stem + OUTPUT_SUFFIXES["json"])).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _existing_products(out_dir: Path, stem: str) -> dict[str, Any]:
    """``products``, ``count_range`` and ``uncertain`` of an image done by an earlier run, from
    its detections JSON (None for what it does not say)."""
    out: dict[str, Any] = {"products": None, "count_range": None, "uncertain": None}
    doc = _result_json(out_dir, stem)
    try:
        out["products"] = int(doc.get("num_detections"))  # type: ignore[union-attr]
    except (AttributeError, ValueError, TypeError):
        return out
    cr = doc.get("count_range")
    if isinstance(cr, dict) and isinstance(cr.get("counts"), list) and len(cr["counts"]) == 3:
        out["count_range"] = ordered_range(cr["counts"])
        out["uncertain"] = cr.get("uncertain") if isinstance(cr.get("uncertain"), bool) else None
    return out


def _plain_stem(stem: Any) -> bool:
    """Whether a manifest's ``stem`` is a name with no folder part, as this tool gives them (a
    suffix always follows it, so even ``..`` names a file in --out). A record of
    ``../elsewhere/x`` (a manifest edited, or received with a shared folder) made the next run
    write outside --out (a security review)."""
    return (isinstance(stem, str) and stem != "" and "\0" not in stem and os.sep not in stem
            and (os.altsep is None or os.altsep not in stem))


def batch_stems(paths: Sequence[Path], out_dir: Path, earlier: Sequence[dict[str, Any]],
                reserved: Collection[str] = ()) -> list[str]:
    """Output stems for ``paths`` in ``out_dir``: an input keeps the stem an earlier run there gave
    it (``earlier``: the manifest's records), and a new one takes its file's stem, then ``-2``,
    ``-3``... (new inputs whose own stem is free keep it first, in absolute-path order) past
    every stem in use: by another input of this run, by an input of an earlier run, or by a
    detections JSON there of another image file. So a rerun over part of the inputs, or
    in another order, never writes one image's outputs over another's. No input gets a stem in
    ``reserved`` (``classes`` when YOLO labels are written: ``classes.txt`` lists the classes)."""
    # where the folder does not tell names apart by case (macOS, Windows), neither do the stems:
    # IMG_1.JPG and img_1.jpg would otherwise write one file, each image's outputs over the other's
    key = str.casefold if case_blind(out_dir) else str
    owner: dict[str, str] = {}  # stem (its key) -> input, the latest record of each input winning
    had: dict[str, str] = {}
    for rec in earlier:
        inp, stem = rec.get("input"), rec.get("stem")
        if isinstance(inp, str) and _plain_stem(stem):
            old = had.get(inp)
            if old is not None and owner.get(key(old)) == inp:
                del owner[key(old)]
            had[inp] = stem
            owner[key(stem)] = inp
    stems: list[str | None] = [None] * len(paths)
    used: set[str] = {key(r) for r in reserved}
    folded = {r.casefold() for r in reserved}  # Classes.txt is classes.txt where case is not told apart

    def free(stem: str) -> bool:
        return key(stem) not in used and stem.casefold() not in folded

    for k, p in enumerate(paths):  # first, the stems earlier runs gave these inputs
        stem = had.get(str(p))
        if stem is not None and owner.get(key(stem)) == str(p) and free(stem):
            stems[k] = stem
            used.add(key(stem))

    gone: dict[str, list[str]] | None = None  # file name -> stems of earlier inputs gone from their paths
    for k, p in enumerate(paths):  # then a photo moved since: it takes the stem of the file it was
        if stems[k] is not None:
            continue
        if gone is None:  # built once, and only when some input is new
            gone = {}
            for q, stem in had.items():
                if owner.get(key(stem)) == q and free(stem) and not os.path.lexists(q):
                    gone.setdefault(Path(q).name, []).append(stem)
        stem = _moved_from(p, out_dir, [s for s in gone.get(p.name, ()) if free(s)])
        if stem is not None:
            stems[k] = stem
            used.add(key(stem))
            owner[key(stem)] = str(p)

    def taken(stem: str, p: Path) -> bool:
        if not free(stem) or owner.get(key(stem), str(p)) != str(p):
            return True
        image = (_result_json(out_dir, stem) or {}).get("image")
        if not isinstance(image, dict) or "path" not in image:
            return False  # no result there, or an unreadable one: not one to keep
        return not (isinstance(image["path"], str) and same_path(image["path"], p))

    # a new input whose own stem is free keeps it before any other takes a numbered one (an
    # input named x-2.jpg stays x-2), then the rest are numbered; both in absolute-path order,
    # as the main command names them (runner.unique_stems), whatever order they were given in
    new = sorted((k for k in range(len(paths)) if stems[k] is None), key=lambda k: (os.path.abspath(paths[k]), k))
    for k in new:
        if not taken(output_stem(paths[k]), paths[k]):
            stems[k] = output_stem(paths[k])
            used.add(key(stems[k]))
    for k in new:
        p = paths[k]
        if stems[k] is not None:
            continue
        base = output_stem(p)
        stem, n = f"{base}-2", 3
        while taken(stem, p):
            stem, n = f"{base}-{n}", n + 1
        stems[k] = stem
        used.add(key(stem))
    return [s for s in stems if s is not None]


def _moved_from(p: Path, out_dir: Path, stems: Iterable[str]) -> str | None:
    """The stem of an earlier input that ``p`` is, moved with its folder: of ``stems`` (those of
    earlier inputs of ``p``'s file name that are gone from their paths), the first whose result
    records ``p``'s size and modification time (a move keeps both). Its outputs are then redone
    under that stem, not doubled under a new one (the manifest listed the photo twice, its
    products counted twice). None when there is no such input."""
    state = input_state(p)
    if state is None:
        return None
    for stem in stems:
        settings = (_result_json(out_dir, stem) or {}).get("settings")
        requested = settings.get("requested") if isinstance(settings, dict) else None
        if isinstance(requested, dict) and requested.get("input") == state:
            return stem
    return None


# -- the run ----------------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """What a batch run did: per-image records (as written to the manifest) and counts."""

    run: str
    backend: str
    workers: int
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    out: Path | None = None  #: the output folder, as an absolute path

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.get("status") == status)

    @property
    def failed(self) -> int:
        return self.count("error")

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def skipped(self) -> int:
        return self.count("skipped")


#: What ``--ray`` accepts besides default/none: Ray's own words, a head's HOST:PORT or a client URL.
_RAY_ADDRESS = re.compile(r"local|auto|(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}")


def _resolve_backend(ray_address: str | None) -> str | None:
    """``None``/``"none"``: in-process. ``"default"``: local Ray when installed, else in-process."""
    if ray_address is None or ray_address.lower() in ("none", "off", "no"):
        return None
    if ray_address == "default":
        from .distributed import ray_installed

        try:
            have_ray = ray_installed()
        except ImportError:  # (installed but broken: --ray default runs without it, as before)
            have_ray = False
        if not have_ray:
            if os.environ.get("RAY_ADDRESS"):  # a cluster was named: say that it is not used
                log.warning("RAY_ADDRESS is set but Ray is not installed (pip install 'densedet-tile[ray]'): "
                            "running in this process")
            else:
                log.info("ray is not installed: running in this process")
            return None
        return "auto" if os.environ.get("RAY_ADDRESS") else "local"
    if not _RAY_ADDRESS.fullmatch(ray_address):
        raise InvalidInputError(
            f"--ray {ray_address!r}: not a Ray address; give 'default', 'none', 'local', 'auto', "
            "HOST:PORT or ray://HOST:PORT"
        )
    from .distributed import require_ray

    require_ray()
    return ray_address


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    detector: Any = None,
    job: Job | None = None,
    ray: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    split: bool = False,
    retries: int = 2,
    timeout: float | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_submit: Callable[[Any, Any], None] | None = None,
    run_info: dict[str, Any] | None = None,
    stop_signal: Callable[[], int | None] | None = None,
    redo: bool = False,
) -> BatchSummary:
    """Process image files into ``out_dir``, skipping those whose outputs are already complete
    (``redo``: none is skipped; what an earlier version or run wrote is written anew).

    ``stop_signal``, when given, says which signal (if any) turned into the KeyboardInterrupt
    that stopped the run (the command's stop handler knows; Ray raises a KeyboardInterrupt of
    its own over it), for the manifest's ``stopped``.

    ``detector`` is a :class:`~densedet_tile.detector.registry.DetectorSpec` (built once per
    worker), a picklable detector object, or None (the built-in default model). ``job`` says how
    each image is tiled, merged and run and which outputs it gets. ``ray``: None or ``"none"`` runs in this process; ``"local"`` starts an
    embedded Ray instance; ``"auto"`` joins ``$RAY_ADDRESS`` (or the cluster running here);
    ``"ray://host:10001"`` / ``"host:6379"`` join that cluster; ``"default"`` means local Ray
    when Ray is installed, else in-process. ``workers`` defaults to as many workers of
    ``cpus_per_worker`` CPUs and ``gpus_per_worker`` GPUs as the cluster's nodes hold; more than
    that is cut down (with a warning), and a worker no node can hold is an error. ``split`` fans
    each image's tiles out to the workers and merges here (one giant image on many workers).
    A worker that dies has its image (or tile chunk) retried on another, up to ``retries``
    times; so does one still busy with an item after ``timeout`` seconds (it is stopped). ``on_record`` gets each manifest record as it is written; ``on_submit(actor, item)``
    is called when Ray hands an item to an actor.

    Never raises for a bad image (it becomes an ``"error"`` record), but stops with
    :class:`OutputFolderError` (an OSError) at the first image whose outputs the folder refused
    (no permission, a read-only mount, a full disk: every image after it would be lost so); raises
    :class:`~densedet_tile.errors.DensedetError` subclasses for bad options, an output that
    would overwrite one of the inputs (checked before anything is written), a detector that
    cannot be built, Ray that cannot be reached, or workers no node of the cluster can hold;
    :class:`~densedet_tile.distributed.ray_pool.ClusterLostError` (a DensedetError) when the
    cluster goes away mid-run. A run stopped by an exception (that one, or KeyboardInterrupt)
    still ends its manifest: an ``end`` record saying why (``stopped``) and ``manifest.json``.
    """
    job = Job() if job is None else job
    if not isinstance(job, Job):
        raise InvalidInputError(f"job must be a Job, got {type(job).__name__}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInputError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not (isinstance(cpus_per_worker, (int, float)) and cpus_per_worker >= 0):
        raise InvalidInputError(f"cpus_per_worker must be >= 0, got {cpus_per_worker!r}")
    if not (isinstance(gpus_per_worker, (int, float)) and gpus_per_worker >= 0):
        raise InvalidInputError(f"gpus_per_worker must be >= 0, got {gpus_per_worker!r}")
    detector = DetectorSpec() if detector is None else detector
    if isinstance(detector, DetectorSpec):
        detector = detector.resolved()
    elif not callable(getattr(detector, "predict", None)):
        raise InvalidInputError(f"detector must be a DetectorSpec or have a predict(tiles) method, got {type(detector).__name__}")

    backend = _resolve_backend(ray)
    # a folder named that does not exist is a bad option (nothing runs); a missing image file
    # fails as its own image. Without the folder, a name that ends in a separator or has no
    # image suffix is taken for a folder.
    gone = [str(i) for i in inputs if not os.path.lexists(Path(i).expanduser())  # (a broken link: its own error)
            and (str(i).endswith(("/", os.sep)) or Path(i).suffix.lower() not in IMAGE_SUFFIXES)]
    if gone:
        raise InvalidInputError(f"{gone[0]}: no such file or folder{f' (and {len(gone) - 1} more)' if len(gone) > 1 else ''}")
    paths = expand_inputs(inputs)
    # outputs of an earlier run named again (a glob over the output folder picks up its previews):
    # not photos, left out with a note, as the detect verb does
    paths = without_earlier_outputs(paths)
    if not paths:
        raise InvalidInputError(f"no image files in {', '.join(str(i) for i in inputs)} "
                                f"(looked for {', '.join(IMAGE_SUFFIXES)})")
    check_out_as_given(out_dir)  # before it is resolved: "" is the current folder then
    made = new_folders(Path(out_dir).expanduser().resolve())
    out = ensure_out_dir(Path(out_dir).expanduser().resolve())
    if not any(_may_exist(p) for p in paths):
        # every input misnamed: nothing to run (one missing among others fails as its own image)
        remove_empty(made)
        missing = [str(i) for i in inputs]
        raise InvalidInputError(f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: no such file or folder")
    for name in ("manifest.jsonl", "manifest.json"):
        if (out / name).is_dir():
            raise InvalidInputError(f"--out {out}: {name} there is a folder; the run log needs that name")
    manifest = Manifest(out)
    manifest.lock()  # one run at a time in a folder: the names below are chosen from its manifest
    todo: list[tuple[Path, str]] = []
    done: list[tuple[Path, str]] = []
    try:  # (from here on every way out lets go of the lock: this block's, or the run's finally)
        earlier = manifest.records()
        paths = _written_before(paths, earlier)
        # the folder's own run log named again (a glob over --out): no photo, left out with a note
        # (each failed as an unknown image format, exit 1 on every rerun: an outside review)
        logs = {os.path.realpath(manifest.log_path), os.path.realpath(manifest.json_path)}
        own_log = [os.path.realpath(p) in logs for p in paths]
        for p in itertools.compress(paths, own_log):
            log.warning("%s: left out: this output folder's run log", p)
        paths = [p for p, mine in zip(paths, own_log) if not mine]
        if not paths:
            raise InvalidInputError("every input is an output of an earlier run (see the warnings above); nothing to do")
        stems = batch_stems(paths, out, earlier, reserved=job.reserved_stems)
        bumped = any(stem != output_stem(p) for p, stem in zip(paths, stems))
        names = dict(zip(map(str, paths), row_names(
            paths, stems, [r["input"] for r in earlier if isinstance(r.get("input"), str)],
            known=_image_names_in(out, paths) if bumped else ())))
        refuse_outputs_over_inputs(paths, stems, out, job)  # before anything is written
        # what a killed run was writing: this run's outputs' temporaries whatever their age (the
        # lock keeps other batch runs out, and a run stopped and started again at once must not
        # find them), any others' once they are old
        own = _own_output_names(stems)
        sweep_temporaries(out, own=own)
        # Ray's workers see a GPU only where they reserve one: there the built-in model's "auto" is decided
        workers_device = None if backend is None else ("cuda" if gpus_per_worker > 0 else "cpu")
        job = replace(job, request=request_key(job, detector, device=workers_device))
        why: Counter[str] = Counter()  # images done before and redone now, by what changed
        for p, stem in zip(paths, stems):
            reason = None if redo else redo_reason(out, stem, job, p)
            (done if not redo and reason is None else todo).append((p, stem))
            if reason is not None and reason != "not done":
                why[reason] += 1
        if why:  # said once, not per image: "other settings (run)" for every image after --score-thr 0.6
            log.warning("%d image(s) done before are redone: %s", sum(why.values()),
                        "; ".join(f"{reason}: {n}" for reason, n in why.most_common()))
    except BaseException:
        manifest.unlock()
        raise
    t0 = time.perf_counter()
    summary = BatchSummary(run=uuid.uuid4().hex[:12], backend="in-process" if backend is None else f"ray:{backend}",
                           workers=1, out=out)

    said: Counter[str] = Counter()  # images that gave each kind of warning (its format string)
    logged = _outputs_logged(earlier, out)
    renamed = _renamed_outputs(earlier, out, paths, stems)
    reserved = {r.casefold() for r in job.reserved_stems}

    def record(rec: dict[str, Any]) -> None:
        rec = {"event": "image", "run": summary.run, "time": _now(), **rec}
        manifest.check_held()  # (before removing anything: a folder made again may be another run's)
        if rec.get("status") == "ok":
            _remove_outputs_logged_before(out, rec, logged)
            old = renamed.get(str(rec.get("input")))
            if old is not None:
                _remove_stale_outputs(out, old[1])
                _remove_own_json(out, old[0], str(rec.get("input")))
                why = (" (YOLO's class list is named so)" if old[0].casefold() in reserved else "")
                log.warning("%s: its outputs are now named %s, no longer %s%s; the earlier run's outputs under "
                            "%s were removed", rec.get("input"), rec.get("stem"), old[0], why, old[0])
        manifest.append(rec)
        summary.records.append(rec)
        _say_warnings(rec, said)
        if on_record is not None:
            on_record(rec)

    def begin(rec: dict[str, Any]) -> None:
        """The run's first line, then the images an earlier run finished (between ``run`` and
        ``end``, like every image line)."""
        nonlocal begun
        from . import __version__

        manifest.append({"event": "run", "run": summary.run, "started": _now(), "version": __version__, **rec,
                         "out": str(out), "inputs": len(paths), "to_do": len(todo), **(run_info or {})})
        begun = True
        for p, stem in done:
            record({"input": str(p), "stem": stem, "status": "skipped", **_existing_products(out, stem),
                    "error": None, "worker": None, "note": "outputs already complete"})

    begun = False
    started_ray = False
    stopped: str | None = None
    failure: BaseException | None = None
    try:
        if backend is None or not todo:
            summary.backend = "in-process" if backend is None else summary.backend
            built = build_detector(detector, job) if todo else None  # before the run line: a detector
            # that cannot be built starts no run (and leaves no folder of this run's)
            begin({"backend": summary.backend, "workers": 1, "split": split})
            if built is not None:
                if split:
                    log.warning("split needs Ray workers; each image runs whole in this process (%s)", _ray_hint())
                if timeout is not None:
                    log.warning("a time limit needs Ray workers; it is not applied in this process (%s)", _ray_hint())
                if workers is not None or cpus_per_worker != 1.0 or gpus_per_worker != 0.0:
                    log.warning("workers, CPUs and GPUs per worker need Ray workers; the images run one after "
                                "another in this process (%s)", _ray_hint())
                _run_in_process(todo, out, *built, record, names, before=manifest.check_held)
        else:
            from .distributed.ray_pool import RayPool, connect

            from .distributed.ray_pool import plan_workers

            # worker output stays in Ray's logs: what the run says, it says through its own records
            started_ray = connect(backend, num_cpus=None, log_to_driver=False)
            n = plan_workers(workers, cpus_per_worker, gpus_per_worker,  # before the run line: no node fits -> error
                             items=None if split else len(todo))
            if not split:
                n = min(n, len(todo))
            summary.workers = n
            # Each item may lose a worker retries + 1 times (with --split, each of an image's n
            # chunks and its scale choice too): enough replacements that hanging or crashing
            # images cannot starve the good ones.
            respawns = 2 * n + (retries + 1) * len(todo) * (n + 1 if split else 1)
            start_s = 600.0 if timeout is None else max(120.0, 4 * timeout)  # building + one warm-up prediction
            with RayPool(detector, workers=n, num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                         max_respawns=respawns, start_timeout=start_s) as pool:
                # the run line once the workers hold their detectors: one that cannot be built
                # starts no run, nor one without the classes asked for
                _check_classes(job, pool.info)
                begin({"backend": summary.backend, "workers": n, "cpus_per_worker": cpus_per_worker,
                       "gpus_per_worker": gpus_per_worker, "split": split})
                if split:
                    _run_split(todo, out, pool, job, record, names, retries=retries, timeout=timeout, on_submit=on_submit)
                else:
                    _run_pool(todo, out, pool, job, record, names, retries=retries, timeout=timeout, on_submit=on_submit)
    except BaseException as exc:
        failure = exc
        if isinstance(exc, KeyboardInterrupt):
            stopped = _stop_reason(exc, stop_signal() if stop_signal is not None else None)
        else:
            stopped = one_line(exc) or type(exc).__name__
        raise
    finally:
        summary.seconds = time.perf_counter() - t0
        try:
            if begun:  # (a cluster that could not be reached started no run: nothing to log)
                end = {"event": "end", "run": summary.run, "ended": _now(), "seconds": round(summary.seconds, 3),
                       "ok": summary.ok, "error": summary.failed, "skipped": summary.skipped,
                       "finished": len(summary.records) == len(paths)}
                if stopped is not None:
                    end["stopped"] = stopped
                try:  # (the log's line through its open handle: a folder made read-only still takes it)
                    manifest.append(end)
                    manifest.write_snapshot()
                except OSError:
                    if not isinstance(failure, OutputFolderError):
                        raise
                    # the folder that refused the images refuses it too: the run's own line says
                    # why; the next run writes it from the log
                _say_repeated(said)
        finally:  # also when the log could not be written (a full disk)
            try:
                if started_ray:
                    import ray as _ray

                    try:
                        _ray.shutdown()
                    except KeyboardInterrupt as late:
                        if stopped is not None:
                            raise
                        # Ctrl-C (or SIGTERM) after the run's end line: every image is done and
                        # logged, so the run stands as finished; only Ray's clean-up was cut short
                        log.warning("%s while Ray shut down; the run itself had finished",
                                    _stop_reason(late, stop_signal() if stop_signal is not None else None))
                # a worker stopped, timed out or killed while writing left its temporaries behind:
                # they are this run's own (its images' outputs), every writer of them is gone, and
                # the lock still keeps the next run out
                sweep_temporaries(out, own=own)
            finally:
                manifest.unlock()
                if not begun:  # stopped before its first line (while Ray started): no folder of its own left empty
                    remove_empty(made)
    return summary


#: How many images may give one kind of warning (one log message) in a batch run before the
#: rest are only counted, and said once at the end: thousands of photos taken from too far away
#: gave thousands of lines that buried the errors.
WARNING_REPEATS = 3


def _say_warnings(rec: dict[str, Any], said: Counter[str]) -> None:
    """Log the warnings an image's record carries (given where it ran: this process or a Ray
    worker, whose own log lines stay in Ray's files), each kind for the first
    :data:`WARNING_REPEATS` images only; the image's name leads a line that does not name it."""
    raw = Path(str(rec.get("input") or "")).name
    name = shown_name(raw)
    for kind, text in rec.get("warnings") or ():
        said[kind] += 1
        if said[kind] <= WARNING_REPEATS:
            # the text names the image as it is, as a line shows it (escaped) or with its line
            # breaks folded (an error's); the log line escapes it either way
            named = bool(raw) and (raw in text or name in text or " ".join(raw.split()) in text)
            log.warning("%s", text if named else f"{name}: {text}")


def _say_repeated(said: Counter[str]) -> None:
    for kind, n in said.items():
        if n > WARNING_REPEATS:
            more = n - WARNING_REPEATS
            log.warning("%d more image%s had the warning \"%s\" (each image's warnings are in its line of "
                        "manifest.jsonl)", more, "s" if more > 1 else "", _gist(kind))


def _gist(kind: str) -> str:
    """A log message's format string with its placeholders as "..." (a leading one, the image's
    name, left out), cut to about 70 characters."""
    text = LOG_PLACEHOLDER.sub(lambda m: "%" if m.group() == "%%" else "...", kind)
    text = re.sub(r"^\.\.\.[:,]?\s*", "", text)
    return text if len(text) <= 70 else text[:67].rstrip() + "..."


def _own_output_names(stems: Sequence[str]) -> set[str]:
    """The file names a batch run's images may write, in every format (an earlier run's other
    formats too), and the YOLO class list."""
    return {stem + suffix for stem in stems for suffix in OUTPUT_SUFFIXES.values()} | {YOLO_CLASSES_FILE}


def _stop_reason(exc: KeyboardInterrupt, signum: int | None = None) -> str:
    """What the manifest's ``stopped`` says of a run stopped by Ctrl-C ("interrupted") or by a
    signal the command turns into one (``signum``, from the command's stop handler, else from the
    exception: "stopped by SIGTERM")."""
    if signum is None:
        signum = getattr(exc, "signum", None)
    return stop_reason(signum)


def _image_record(rec: dict[str, Any], stem: str, attempts: int = 1) -> dict[str, Any]:
    keep = ("input", "status", "products", "count_range", "uncertain", "tiles", "width", "height", "seconds", "error",
            "outputs", "outputs_sha256", "worker", "warnings")
    out = {k: rec.get(k) for k in keep}
    out["stem"] = stem
    out["attempts"] = attempts
    return out


def _ray_hint() -> str:
    """What would give a run Ray workers, for the warnings of an in-process run that asked for
    what only they do (the light install has no Ray; an outside review). Asked only then: a Ray
    that fails to import ended a --ray none run when it was asked every time."""
    from .distributed import ray_installed

    try:
        have_ray = ray_installed()
    except Exception:  # (a broken Ray: as good as none for this run)
        have_ray = False
    return ("give --ray local or an address (ray= in Python)" if have_ray
            else "Ray is not installed: pip install 'densedet-tile[ray]'")


class OutputFolderError(OSError):
    """The output folder stopped taking files (made read-only, a read-only mount, a full disk):
    the run stops at the first image that could not be written."""


def _stop_if_folder_failed(rec: dict[str, Any], left: int | None) -> None:
    """Stop the run when an image failed because its outputs could not be written into the
    output folder at all (``out_failed``, :func:`~densedet_tile.runner.out_folder_failed`): every
    image after it would be detected and then lost the same way. ``left``: the images not yet
    begun (None where the pool's workers hold some: they are stopped with it)."""
    if rec.get("out_failed"):
        more = f"; {left} more not begun" if left else ("; the images left not done" if left is None else "")
        raise OutputFolderError(f"cannot write there ({rec.get('error')}): the run stops{more}; "
                                "run it again once the folder takes files (the images done are kept)")


def _run_in_process(todo: list[tuple[Path, str]], out: Path, det: Any, job: Job,
                    record: Callable[[dict[str, Any]], None], names: dict[str, str | None],
                    before: Callable[[], None] | None = None) -> None:
    for k, (p, stem) in enumerate(todo):
        if before is not None:
            before()  # (the folder still the run's: no output written into one made again)
        outcome = process_image(p, det, job, out, stem=stem, name=names.get(str(p)), capture_warnings=True)
        rec = outcome.as_dict()
        rec["worker"] = f"in-process:{os.getpid()}"
        record(_image_record(rec, stem))
        _stop_if_folder_failed(rec, len(todo) - k - 1)


def _check_classes(job: Job, infos: Sequence[dict[str, Any]]) -> None:
    """Refuse ``job.run.classes`` that the workers' detector does not have (one error before the
    run, not one per image); a worker describes its detector's class names in ``info``."""
    if job.run.classes is None or not infos:
        return
    from .detector.base import class_ids

    model = infos[0].get("model") or {}
    names = model.get("class_names")
    class_ids(job.run.classes, None if names is None else tuple(names), str(model.get("name") or "of the workers"))


def _run_pool(todo: list[tuple[Path, str]], out: Path, pool: Any, job: Job,
              record: Callable[[dict[str, Any]], None], names: dict[str, str | None], *, retries: int,
              timeout: float | None, on_submit: Callable[[Any, Any], None] | None) -> None:
    def submit(actor: Any, item: tuple[Path, str]) -> Any:
        return actor.process.remote(str(item[0]), job, str(out), item[1], names.get(str(item[0])))

    seen = 0
    for res in pool.map(todo, submit, retries=retries, on_submit=on_submit, timeout=timeout):
        p, stem = res.item
        seen += 1
        if res.ok:
            # what fitting the job to the worker said: once for the run, before the image's own
            pool.hold_warnings(res.value.get("fit_warnings"))
            pool.say_held()
            record(_image_record(res.value, stem, res.attempts))
            # (the images other workers hold now are stopped with the pool)
            _stop_if_folder_failed(res.value, None if seen < len(todo) else 0)
        else:
            record({"input": str(p), "stem": stem, "status": "error", "products": None, "error": f"{p}: {res.error}",
                    "worker": res.worker, "attempts": res.attempts})


def _run_split(todo: list[tuple[Path, str]], out: Path, pool: Any, job: Job,
               record: Callable[[dict[str, Any]], None], names: dict[str, str | None], *, retries: int,
               timeout: float | None, on_submit: Callable[[Any, Any], None] | None) -> None:
    from .distributed.split import detect_split

    for k, (p, stem) in enumerate(todo):
        report: dict[str, Any] = {}
        outcome = process_image(
            p, None, job, out, stem=stem, name=names.get(str(p)),
            detect=lambda src: detect_split(src, pool, job, retries=retries, timeout=timeout, on_submit=on_submit,
                                            report=report),
            capture_warnings=True,
        )
        pool.say_held()  # what fitting the job to the workers said, once for the run (detect_split held it)
        pool.raise_if_lost()  # (process_image made it this image's error: it is the run's)
        rec = outcome.as_dict()
        rec["worker"] = f"split:{len(pool.slots)}"
        record(_image_record(rec, stem, report.get("attempts", 1)))
        _stop_if_folder_failed(rec, len(todo) - k - 1)
