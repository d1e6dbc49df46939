"""Every file the library writes: the one atomic writer, and the detections outputs.

:func:`write_files` is the only place that creates output files: each file's whole content is
built first, written to a temporary file in the target folder, fsynced, given the mode a plain
``open()`` would give it under the process umask, and renamed into place, so a crash or an error
never leaves a partial file under the final name and readers of the folder can read the result.
Detections go out as JSON (schema ``densedet-tile/detections@1``), SKU-110K CSV, COCO results,
Ultralytics YOLO label files and a JPEG preview; the eval and audit reports and the batch manifest use the same writer.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np

if TYPE_CHECKING:
    from .pipeline import ImageResult

__all__ = [
    "SCHEMA",
    "stat_or_none",
    "another_existing_file",
    "FORMATS",
    "atomic_write",
    "write_files",
    "result_to_json",
    "output_class_names",
    "label_name",
    "count_range_json",
    "write_json",
    "write_csv",
    "write_coco",
    "write_yolo",
    "YOLO_CLASSES_FILE",
    "write_preview",
    "output_paths",
    "PREVIEW_MAX_SIDE",
]

SCHEMA = "densedet-tile/detections@1"
#: Preview colours: boxes kept, and boxes just below the score threshold (the count range).
KEPT_COLOUR, NEAR_MISS_COLOUR = (0, 255, 0), (255, 150, 0)
FORMATS: tuple[str, ...] = ("json", "csv", "coco", "yolo")
#: The class list beside YOLO label files (one name a line; line i names class i).
YOLO_CLASSES_FILE = "classes.txt"
#: Longest side of a preview image; a panorama preview is downscaled to fit.
PREVIEW_MAX_SIDE = 8000
#: Bytes of the image read at a time while drawing a preview.
PREVIEW_BAND_BYTES = 32 * 2**20


def _umask() -> int:
    """The process umask, read without changing it where /proc allows (os.umask is global state)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_files(files: Mapping[str | os.PathLike[str], bytes | str]) -> list[Path]:
    """Write several files all or nothing; returns their paths in the order given.

    Each file is staged as a temporary file beside its target (fsynced, mode ``0o666`` less the
    umask, or the read and write bits of the file it replaces) before any is renamed into place,
    in the order given; if staging any of them fails, no target is touched and the temporaries
    are removed. If a rename fails (a target that is a
    folder, a full disk...), the targets already replaced get their old contents back (or are
    removed if they are new), so a failed write never leaves a mix of two runs' files.
    ``str`` content is written as UTF-8.
    """
    mode = 0o666 & ~_umask()
    staged: list[tuple[str, Path]] = []
    try:
        for target, data in files.items():
            target = Path(target)
            if target.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder is in the way", str(target))
            if target.exists() and not target.is_file():
                # a device, a pipe or a socket: renaming over it would replace it with a file
                # (as root, /dev/null itself)
                raise OSError(errno.EEXIST, "exists and is not a regular file (a device, pipe or socket)", str(target))
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # (the name's start only: a name near the file system's 255-byte limit still fits)
                fd, tmp = tempfile.mkstemp(prefix=f".{_name_start(target.name)}.", suffix=TMP_SUFFIX, dir=target.parent)
            except OSError as exc:  # said of the file asked for, not of its temporary
                raise type(exc)(exc.errno, exc.strerror, str(target)) from None
            staged.append((tmp, target))
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data.encode("utf-8") if isinstance(data, str) else data)
                    fh.flush()
                    os.fsync(fh.fileno())
                # a file replaced keeps its permissions (a report made private with chmod 600
                # stays so, as an editor or cp would leave it); a new one gets the umask's
                # (its read and write bits only, and a link's target's never: the link itself is replaced)
                try:
                    st = os.lstat(target)
                    keep = stat.S_IMODE(st.st_mode) & 0o666 if stat.S_ISREG(st.st_mode) else None
                except OSError:
                    keep = None
                os.chmod(tmp, mode if keep is None else keep)
            except OSError as exc:  # a full disk: said of the file asked for (a write names no file)
                if exc.errno is None or exc.filename is not None:
                    raise
                raise OSError(exc.errno, exc.strerror, str(target)) from None
        _replace_all(staged)
    except BaseException:
        for tmp, _ in staged:
            for leftover in (tmp, f"{tmp}.old"):
                try:
                    os.unlink(leftover)
                except FileNotFoundError:
                    pass
        raise
    return [t for _, t in staged]


def _replace_all(staged: list[tuple[str, Path]]) -> None:
    """Rename each staged temporary onto its target; on a failure, undo the renames done."""
    # (target, the name its old contents are kept under, or None for a new file). Each entry is
    # recorded before its target is touched, so an interruption (KeyboardInterrupt, a signal
    # turned into one) at any point between two steps is undone like an error is.
    done: list[tuple[Path, str | None]] = []
    try:
        for tmp, target in staged:
            try:
                if os.path.lexists(target):
                    old = f"{tmp}.old"
                    done.append((target, old))
                    try:
                        os.link(target, old)  # the target stays in place while it is replaced
                    except OSError:  # no hard links here: move it aside instead
                        os.replace(target, old)
                else:
                    done.append((target, None))
                os.replace(tmp, target)
            except OSError as exc:
                # said of the file asked for: the line named the temporary it was being moved to
                # (an outside review: "o/.o1.detections.k3x9a0b1.tmp.old: Operation not permitted")
                if exc.errno is None:
                    raise
                raise type(exc)(exc.errno, exc.strerror, str(target)) from None
    except BaseException:
        for target, old in reversed(done):
            try:
                if old is None:
                    os.unlink(target)
                elif os.path.lexists(old):
                    # a hard link onto the same file is a no-op rename: the link stays
                    os.replace(old, target)
                    if os.path.lexists(old):
                        os.unlink(old)
                # (no saved copy: the step stopped before the target was touched)
            except OSError:
                pass
        raise
    for _, old in done:
        if old is not None:
            try:
                os.unlink(old)
            except FileNotFoundError:
                pass


def same_path(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether ``a`` and ``b`` name the same file (by the file system when both exist, else by
    their resolved paths)."""
    try:
        return Path(a).samefile(b)
    except OSError:  # one of them does not exist (yet), or is a loop of links
        # (os.path.realpath, not Path.resolve: that raises RuntimeError on a loop of links,
        # which left five verbs with a traceback instead of the reader's one-line error)
        return os.path.realpath(a) == os.path.realpath(b)


def another_existing_file(recorded: object, path: str | os.PathLike[str]) -> bool | None:
    """Whether the real path an earlier output recorded (``recorded``) names a file that still
    exists and is not ``path``: True (another file), False (this one), None (no usable record,
    or that file is gone). How a report tells another photo of the same name from this one."""
    if not isinstance(recorded, str) or not recorded or not os.path.exists(recorded):
        return None
    try:
        return not same_path(recorded, path)
    except (OSError, ValueError):
        return None


def refuse_overwriting_input(output: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str]],
                             *, option: str) -> None:
    """Raise :class:`~densedet_tile.errors.InvalidInputError` when the output file ``output``
    is one of the ``inputs`` (name -> path): writing it would destroy what was read."""
    from .errors import InvalidInputError

    out = Path(output)
    for name, inp in inputs.items():
        if same_path(out, inp):
            raise InvalidInputError(f"{option} {out}: that is the {name} file; writing there would overwrite it")


#: Temporaries of :func:`write_files`: ``.<name start>.<random>.densedet-tmp`` (``.old`` added
#: to a replaced file's hard link while the new one lands). The suffix is the tool's own, since
#: :func:`sweep_temporaries` deletes what matches in the user's folders: ``.<name>.<random>.tmp``
#: is what other programs' ``mkstemp`` calls leave too (an outside review: a user's
#: ``.thesis.docx.a1b2c3d4.tmp`` went with a detection run in its folder).
TMP_SUFFIX = ".densedet-tmp"
TMP_NAME_KEEP = 100


def _name_start(name: str) -> str:
    """The first TMP_NAME_KEEP bytes of a file name, as the file system stores it (a character
    cut in two stays as its bytes: a file name is bytes, not text)."""
    return os.fsdecode(os.fsencode(name)[:TMP_NAME_KEEP])


def sweep_temporaries(folder: str | os.PathLike[str], *, older_than: float = 120.0,
                      own: Iterable[str] = ()) -> int:
    """Remove the temporaries a killed run of this tool left in ``folder`` (not its
    subfolders); returns how many. Only names :func:`write_files` and the write probe of
    :func:`ensure_out_dir` make, and only those not
    touched for ``older_than`` seconds (a live writer renames its temporaries within moments),
    except the temporaries of the output files named in ``own``, which go whatever their age:
    a caller names the outputs that only it may write (a batch run holding its folder's lock,
    once its workers are gone), so a run stopped and started again at once leaves none."""
    import re
    import time

    # (group 2: ``.tmp``, what versions before 2026-12-06 left: the shape of any program's
    # mkstemp temporaries, so taken only where the name is an output named in ``own`` or ends
    # as only this tool's outputs do: ``.detections.json``, ``.audit.html``..., not ``.txt``)
    pattern = re.compile(r"^\.(.+)\.[A-Za-z0-9_]{8}(" + re.escape(TMP_SUFFIX) + r"|\.tmp)(\.old)?$")
    endings = tuple(x for x in (*OUTPUT_SUFFIXES.values(), *AUDIT_SUFFIXES.values()) if x.count(".") > 1)
    starts = {_name_start(name) for name in own}
    now, n = time.time(), 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for e in entries:
        try:
            m = pattern.match(e.name)
            if m is not None and m.group(2) != TMP_SUFFIX and not (m.group(1) in starts
                                                                 or m.group(1).endswith(endings)):
                m = None
            probe = e.name.startswith(_PROBE_PREFIX) and len(e.name) == len(_PROBE_PREFIX) + 8  # (mkstemp's 8)
            if (m or probe) and e.is_file(follow_symlinks=False) and (
                    (m and m.group(1) in starts) or now - e.stat(follow_symlinks=False).st_mtime > older_than):
                os.unlink(e.path)
                n += 1
        except OSError:
            continue
    return n


#: Where a Windows lock sits: one byte far past any content, since a locked range also refuses
#: reads and writes through the holder's other handles (the manifest is appended through one).
_WINDOWS_LOCK_AT = 1 << 40


def _try_lock(fd: int) -> str:
    """Take the exclusive lock on the open file ``fd`` without waiting: "held", "busy" (another
    process holds it) or "no locks" (the file system takes none). ``flock`` where the system has
    ``fcntl``, else ``msvcrt.locking`` (Windows); ImportError where it has neither."""
    try:
        import fcntl
    except ImportError:
        import msvcrt  # Windows; ImportError again where there is neither

        try:
            os.lseek(fd, _WINDOWS_LOCK_AT, os.SEEK_SET)  # (a file system that cannot: no locks)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as exc:  # EACCES: locked by another process (EDEADLOCK after retries)
            return "busy" if exc.errno in (errno.EACCES, getattr(errno, "EDEADLOCK", errno.EDEADLK)) else "no locks"
        return "held"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return "busy"
    except OSError:
        return "no locks"
    return "held"


def unlock_fd(fd: int) -> None:
    """Let go of the lock :func:`flock_path` took on ``fd`` (the caller closes it next). Closing
    is enough for ``flock``; Windows asks for the range to be unlocked first, since it frees the
    locks of a closed handle only some time later."""
    try:
        import fcntl  # noqa: F401 - closing the file lets go of the flock
    except ImportError:
        try:
            import msvcrt
        except ImportError:
            return
        with contextlib.suppress(OSError):
            os.lseek(fd, _WINDOWS_LOCK_AT, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def flock_path(path: str | os.PathLike[str], flags: int) -> tuple[str, int | None]:
    """Open ``path`` with ``flags`` (``os.O_CREAT`` among them) and take an exclusive lock on
    it without waiting (:func:`_try_lock`: ``flock``, or ``msvcrt.locking`` on Windows):
    ``("held", fd)``, ``("busy", None)`` when another process holds it, or ``("no locks",
    None)`` where the file system takes none (some network mounts). A file the holder removed
    between our open and our lock (it let go) is opened again, so the lock is always on the
    file that stands at ``path``. OSError when it cannot be opened; ImportError on a system
    with neither ``fcntl`` nor ``msvcrt``. Let go with :func:`unlock_fd`, then close."""
    for _ in range(20):
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0), 0o666)  # the umask decides (a group-shared folder)
        try:
            state = _try_lock(fd)
        except BaseException:
            os.close(fd)
            raise
        if state != "held":
            os.close(fd)
            return state, None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return "held", fd
        unlock_fd(fd)
        os.close(fd)  # the holder just let go and removed the file: lock the new one
    return "busy", None


class OutputLock:
    """An exclusive lock on ``path`` (a small file made for it, removed again on
    :meth:`release`), so that two runs never write the same outputs at once. :meth:`acquire`
    returns False when another process holds it, and raises OSError when the file cannot be
    made or opened. Where the system has neither ``flock`` nor ``msvcrt`` (Windows), or the
    file system takes no locks (some network mounts), it always succeeds."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> bool:
        try:  # read-only: a lock file a killed run of another user left (0644) still opens
            state, fd = flock_path(self.path, os.O_RDONLY | os.O_CREAT)
        except ImportError:  # pragma: no cover - neither fcntl nor msvcrt
            return True
        if state == "no locks":  # run unlocked, and leave no file behind
            with contextlib.suppress(OSError):
                self.path.unlink()
        self._fd = fd
        return state != "busy"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            with contextlib.suppress(OSError):  # (Windows removes no open file: it stays, unlocked)
                self.path.unlink()  # while still held: whoever opens it next makes a new one
        finally:
            unlock_fd(fd)
            os.close(fd)


def case_blind(folder: str | os.PathLike[str]) -> bool:
    """Whether the file system at ``folder`` (or at its nearest existing parent) takes ``A.json``
    and ``a.json`` for one file: macOS and Windows as they come, and FAT, exFAT or SMB mounts on
    Linux. Asked by making a temporary file there and looking for its name in the other case;
    where no file can be made there, the platform's usual answer."""
    at = Path(folder).expanduser().absolute()
    while not at.is_dir() and at.parent != at:
        at = at.parent
    try:
        fd, probe = tempfile.mkstemp(prefix=".densedet-case-probe.", dir=at)
    except OSError:
        return sys.platform in ("darwin", "win32")
    try:
        os.close(fd)
        return os.path.exists(os.path.join(os.path.dirname(probe), os.path.basename(probe).swapcase()))
    finally:
        with contextlib.suppress(OSError):
            os.unlink(probe)


def _probe_writable(folder: Path) -> None:
    """Create and remove a temporary file in ``folder``; OSError when it takes no new files."""
    fd, probe = tempfile.mkstemp(prefix=_PROBE_PREFIX, dir=folder)
    try:
        os.close(fd)
    finally:  # (a stop signal between the two: sweep_temporaries takes what is left)
        os.unlink(probe)


#: The name a write probe starts with (:func:`_probe_writable`).
_PROBE_PREFIX = ".densedet-write-test."


def check_out_as_given(path: str | os.PathLike[str], *, option: str = "--out") -> None:
    """Refuse an output folder that is empty as typed (an unset variable: ``--out "$OUT"``, which
    would be the current folder unasked) or a link to a folder that does not exist (making it
    failed as "File exists"), with :class:`~densedet_tile.errors.InvalidInputError` naming
    ``option``. Before the path is resolved: resolved, both look like any folder."""
    from .errors import InvalidInputError

    if not os.fspath(path).strip():
        raise InvalidInputError(f"{option} is empty: give a folder (. for the current one)")
    out = Path(path).expanduser()
    # (os.path's tests: Path's raised for a name too long on Python 3.11 and 3.12, which
    # ensure_out_dir says as the option's error)
    if os.path.islink(out) and not os.path.exists(out):
        raise InvalidInputError(f"{option} {out}: a link to {os.readlink(out)}, which does not exist")


def ensure_out_dir(path: str | os.PathLike[str], *, option: str = "--out") -> Path:
    """Make sure the output folder ``path`` exists and takes new files, before any work is
    done; returns it. Raises :class:`~densedet_tile.errors.InvalidInputError` with one line
    naming ``option`` and the folder otherwise."""
    from .errors import InvalidInputError

    check_out_as_given(path, option=option)
    out = Path(path).expanduser()
    if os.path.exists(out) and not os.path.isdir(out):
        raise InvalidInputError(f"{option} {out}: exists and is not a folder")
    try:  # (a name too long, a folder above it the user may not enter: making it says why)
        out.mkdir(parents=True, exist_ok=True)
        _probe_writable(out)
    except OSError as exc:
        raise InvalidInputError(f"{option} {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def names_a_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` as typed can only name a folder: it ends with a separator, ``.`` or
    ``..`` (``Path`` drops a trailing ``/`` and ``/.``: ``out/`` would be taken for a file
    named ``out``)."""
    text = os.fspath(path)
    seps = os.sep + (os.altsep or "")
    last = text
    for c in seps:
        last = last.rsplit(c, 1)[-1]
    return last in ("", ".", "..")


def ensure_out_file(path: str | os.PathLike[str], *, option: str) -> Path:
    """Make sure the output file ``path`` can be written, before any work is done: the nearest
    of its folders that exists takes new files, and ``path`` is not a folder; returns it.
    Raises :class:`~densedet_tile.errors.InvalidInputError` with one line naming ``option``
    and the file otherwise."""
    from .errors import InvalidInputError

    if names_a_folder(path):
        raise InvalidInputError(f"{option} {os.fspath(path)}: ends with a slash or a dot, so it names a folder; "
                                "give a file name")
    out = Path(path).expanduser()
    # (os.path's tests: Path's raised for a name too long on Python 3.11 and 3.12)
    if os.path.isdir(out):
        raise InvalidInputError(f"{option} {out}: is a folder, not a file name")
    if os.path.exists(out) and not os.path.isfile(out):
        raise InvalidInputError(f"{option} {out}: exists and is not a regular file (a device, pipe or socket); "
                                "give a file name")
    # the nearest folder that exists must take new files (the missing ones are made when the
    # file is written, not now: a run that fails later leaves no empty folder)
    near = out.absolute().parent
    while _absent(near) and near != near.parent:
        near = near.parent
    if not near.is_dir():
        raise InvalidInputError(f"{option} {out}: cannot write there ({near} is not a folder)")
    if _name_too_long(out.absolute(), near):  # said now, not once the work is done (and its folders made)
        raise InvalidInputError(f"{option} {out}: cannot write there ({os.strerror(errno.ENAMETOOLONG)})")
    try:
        _probe_writable(near)
    except OSError as exc:
        raise InvalidInputError(f"{option} {out}: cannot write there ({exc.strerror or exc})") from None
    return out


def new_folders(path: str | os.PathLike[str]) -> list[Path]:
    """The folders that making ``path`` would create, deepest first (none when it exists):
    what :func:`remove_empty` takes back after a run that wrote nothing."""
    out, made = Path(path).expanduser().absolute(), []
    while _absent(out) and out != out.parent:
        made.append(out)
        out = out.parent
    return made


def _name_too_long(path: Path, near: Path) -> bool:
    """Whether a name in ``path`` below the folder ``near`` (that exists) is longer than the file
    system there takes; False where it does not say (Windows)."""
    try:
        most = os.pathconf(near, "PC_NAME_MAX")
    except (AttributeError, OSError, ValueError):
        return False
    return most > 0 and any(len(os.fsencode(part)) > most for part in path.relative_to(near).parts)


def stat_or_none(path: str | os.PathLike[str]) -> os.stat_result | None:
    """``os.stat(path)``, or None where the path cannot be looked at: not there, in a folder the
    user may not enter, a name too long or holding a NUL (``Path.is_dir`` / ``is_file`` raised
    for some of those on Python 3.11 and 3.12, which ended a run on one input's path)."""
    try:
        return os.stat(path)
    except (OSError, ValueError):
        return None


def _absent(path: Path) -> bool:
    """Whether ``path`` is not there. A name the system refuses (too long) is not there (
    ``Path.exists`` raised for it on Python 3.11 and 3.12: ``--out`` with such a name ended the
    command on a bare system error); another error that hides it (a folder above that the user
    may not enter) counts as there: never taken for a folder of the run's own."""
    try:
        return not path.exists()
    except OSError as exc:
        return exc.errno == errno.ENAMETOOLONG


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (deepest first) while they are empty: a failed run leaves no empty
    output folder behind. A folder that holds anything stays, and so do those above it."""
    for d in folders:
        try:
            d.rmdir()
        except OSError as exc:
            # not made (its name too long, say): those above it may have been
            if exc.errno not in (errno.ENOENT, errno.ENAMETOOLONG):
                return


def atomic_write(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write one file atomically (see :func:`write_files`); returns its path."""
    return write_files({path: data})[0]


def output_class_names(model: Mapping[str, Any]) -> list[str]:
    """The names the output files give labels 0, 1, ... of a run whose detector ``model``
    describes (``ImageResult.model``): its declared ``class_names``, else ``product`` for
    label 0. ``eval --compare`` names its runs' classes by this rule too."""
    names = model.get("class_names")
    return list(names) if names else ["product"]


def _class_names(result: "ImageResult") -> list[str]:
    return output_class_names(result.model)


def label_name(names: list[str], label: int) -> str:
    """Label ``label``'s name among ``names`` (:func:`output_class_names`); its number past them."""
    return names[label] if 0 <= label < len(names) else str(label)


def result_to_json(result: "ImageResult", *, outputs: "list[str] | None" = None,
                   digests: "dict[str, str] | None" = None, row_name: str | None = None) -> dict[str, Any]:
    """The JSON document for one image (schema ``densedet-tile/detections@1``).

    ``outputs``: the file names of the other outputs written together with this JSON (its
    CSV, COCO, YOLO and preview files), kept as the document's ``outputs`` list so that a
    later run over the same name knows which files beside it are this tool's own; left out
    when None. ``digests``: the SHA-256 of each of them as written (``outputs_sha256``), so
    that a later run can tell a file changed since (a label file corrected by hand) from its
    own. ``row_name``: what the CSV and COCO rows call the image when it is not its file name
    (a second input of that file name, ``x-2.jpg``), kept as ``image.row_name``; ``eval``
    keys the image by it, as by the rows."""
    d = result.detections
    names = _class_names(result)
    used = sorted(set(int(x) for x in np.unique(d.labels))) if len(d) else []
    cats = {str(i): n for i, n in enumerate(names)}
    for i in used:
        cats.setdefault(str(i), str(i))
    from . import __version__

    return {
        "schema": SCHEMA,
        "written_by": f"densedet-tile {__version__}",  # (which version's rules made these boxes)
        # boxes are in pixels of the upright image: the stored one with its EXIF orientation applied
        "image": {"path": result.path, "name": result.name, "width": result.width, "height": result.height,
                  "orientation": int(getattr(result, "orientation", 1)),
                  **({} if row_name is None or row_name == result.name else {"row_name": row_name})},
        "settings": result.settings,
        "model": result.model,
        "timings": result.timings,
        "num_tiles": result.num_tiles,
        "num_detections": len(d),
        "count_range": count_range_json(result),
        "categories": cats,
        "boxes": box_values(d.xyxy).tolist(),
        "scores": score_values(d.scores),
        "labels": d.labels.tolist(),
        **({} if outputs is None else {"outputs": list(outputs)}),
        **({} if digests is None else {"outputs_sha256": dict(digests)}),
    }


#: Every character ``str.splitlines`` ends a line at, to a space: a class name holding one (a
#: vertical tab, U+2028) split ``classes.txt`` on reading and shifted every later class.
_LINE_BREAKS = str.maketrans({c: " " for c in "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"})


def score_texts(scores: np.ndarray) -> list[str]:
    """Each score as the shortest decimal that reads back as the same float32, the type the engine
    compares with its thresholds (``"0.45"``, ``"0.49996"``). Rounded to 4 decimals, 0.49996 was
    written 0.5 and read back above a threshold of 0.5 that the run had it below (an outside
    review): a reader comparing these numbers with a decimal threshold, in float32 or float64,
    decides as the run did."""
    return np.asarray(scores, dtype=np.float32).reshape(-1).astype(str).tolist()


def box_values(xyxy: np.ndarray) -> np.ndarray:
    """Boxes as the detections JSON holds them: float64 pixels rounded to 0.01 px. ``eval`` of
    the JSON scores these, and ``eval --compare`` scores its runs' boxes through this too, so that
    its tiled row is what ``detect`` then ``eval`` gives (boxes under 0.005 px apart can lie on
    either side of an IoU threshold)."""
    return np.round(np.asarray(xyxy, dtype=np.float64), 2)


def score_values(scores: np.ndarray) -> list[float]:
    """:func:`score_texts` as numbers: ``json.dumps`` writes each with that same text."""
    return [float(t) for t in score_texts(scores)]


def count_range_json(result: "ImageResult") -> dict[str, Any] | None:
    """The count range, with the near misses (the boxes scoring just below the threshold) that
    let the audit tell each bay's range."""
    if result.count_range is None:
        return None
    out = result.count_range.as_dict()
    near = result.near_misses
    if near is not None:
        out["near_misses"] = {"boxes": box_values(near.xyxy).tolist(),
                              "scores": score_values(near.scores)}
    return out


def _put(path: str | os.PathLike[str], data: bytes | str, stage: dict[Path, bytes | str] | None) -> Path:
    """Write ``data`` to ``path`` atomically, or add it to ``stage`` (a dict later given to
    :func:`write_files`, so several outputs land together)."""
    if stage is None:
        return atomic_write(path, data)
    stage[Path(path)] = data
    return Path(path)


def write_json(result: "ImageResult", path: str | os.PathLike[str], *, stage: dict[Path, bytes | str] | None = None,
               outputs: "list[str] | None" = None, digests: "dict[str, str] | None" = None,
               row_name: str | None = None) -> Path:
    """Write the JSON document for ``result`` to ``path`` atomically (or into ``stage``);
    ``outputs``, ``digests`` and ``row_name`` as :func:`result_to_json` takes them."""
    data = json.dumps(result_to_json(result, outputs=outputs, digests=digests, row_name=row_name),
                      separators=(",", ":")).encode()
    return _put(path, data, stage)


def write_csv(result: "ImageResult", path: str | os.PathLike[str], *, stage: dict[Path, bytes | str] | None = None) -> Path:
    """SKU-110K-style rows ``image_name,x1,y1,x2,y2,class,image_width,image_height,score``.

    Coordinates are rounded to whole pixels as in the SKU-110K annotation files; ``score`` is
    an extra last column (readers of the original format can ignore it).
    """
    d = result.detections
    names = _class_names(result)
    buf = io.StringIO()
    # the writer quotes a field holding "\n" but not a bare "\r", which readers take for a line
    # end: a name or class holding one gets every field quoted
    odd = "\r" in result.name or any("\r" in n for n in names)
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_ALL if odd else csv.QUOTE_MINIMAL)
    w.writerow(["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height", "score"])
    xyxy = np.rint(d.xyxy).astype(np.int64)
    for (x1, y1, x2, y2), lab, s in zip(xyxy.tolist(), d.labels.tolist(), score_texts(d.scores)):
        w.writerow([result.name, x1, y1, x2, y2, label_name(names, lab), result.width, result.height, s])
    # a file name that is not valid UTF-8 (surrogate escapes) keeps its original bytes
    data = buf.getvalue().encode("utf-8", "surrogateescape")
    return _put(path, data, stage)


def write_coco(result: "ImageResult", path: str | os.PathLike[str], *, stage: dict[Path, bytes | str] | None = None) -> Path:
    """A COCO results file: a list of ``{image_id, category_id, bbox: [x, y, w, h], score}``.

    ``image_id`` is the image file name (COCO ground truth made from SKU-110K CSVs keys images by
    file name too); ``category_id`` is the label + 1, as COCO category ids start at 1.
    """
    d = result.detections
    xywh = d.xyxy.astype(np.float64).copy()
    xywh[:, 2:] -= xywh[:, :2]
    boxes = [round(v, 2) for v in xywh.ravel().tolist()]
    scores = score_values(d.scores)
    cats = (d.labels.astype(np.int64) + 1).tolist()
    # The text json.dumps writes for these records, byte for byte, from a template per row:
    # faster than a dict per box (400k boxes: 3.1 s -> 1.9 s written). json.dumps writes a float as
    # its repr; Detections hold finite numbers only (no NaN or Infinity to spell differently).
    head = '{"image_id":' + json.dumps(result.name) + ',"category_id":'
    it = iter(boxes)
    rows = [f'{head}{c},"bbox":[{x!r},{y!r},{w!r},{h!r}],"score":{s!r}}}'
            for c, x, y, w, h, s in zip(cats, it, it, it, it, scores)]
    text = "[" + ",".join(rows) + "]"
    return _put(path, text.encode(), stage)


#: The most classes ``classes.txt`` lists for labels past the model's names (LVIS has 1203).
YOLO_MAX_CLASSES = 100_000


def write_yolo(result: "ImageResult", path: str | os.PathLike[str], *, scores: bool = False,
               stage: dict[Path, bytes | str] | None = None) -> Path:
    """An Ultralytics YOLO label file: one line ``class cx cy w h`` per box, normalised to 0..1.

    With ``scores`` each line ends with the box's score (Ultralytics' ``save_conf`` layout; a
    labelling tool reading plain labels may refuse it). Beside the file, ``classes.txt`` lists the
    class names (line i names class i): the model's names, and the label number itself for a
    label past them. Several images written into one folder share that file; it is rewritten
    (atomically) only to add classes, and a model whose names contradict it is refused with
    :class:`~densedet_tile.errors.InvalidInputError` before anything is written.
    """
    from .errors import InvalidInputError

    target = Path(path)
    classes = target.parent / YOLO_CLASSES_FILE
    if target.name == YOLO_CLASSES_FILE:
        raise InvalidInputError(f"{result.name}: its YOLO labels would overwrite {classes}; rename the image")
    d = result.detections
    names = [n.translate(_LINE_BREAKS) for n in _class_names(result)]
    top = int(d.labels.max()) + 1 if len(d) else 0
    if top > max(len(names), YOLO_MAX_CLASSES):
        # every class up to the label gets a line: a label of 2**31 - 1 ran out of memory
        raise InvalidInputError(f"{result.name}: class label {top - 1} is past the model's {len(names)} class names "
                                f"and the longest YOLO class list written ({YOLO_MAX_CLASSES} classes); "
                                "leave yolo out of --format for this detector")
    names += [str(i) for i in range(len(names), top)]
    old: list[str] = []
    if classes.is_file():
        try:  # (utf-8-sig: a byte-order mark, as Windows' Notepad saves, is no part of class 0's name)
            old = classes.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{classes}: not UTF-8 text ({exc.reason} at byte {exc.start}); it names the "
                                    "classes of the YOLO labels written beside it: fix it or move it away") from None
        clash = [i for i, (a, b) in enumerate(zip(old, names)) if a != b]
        if clash:
            i = clash[0]
            raise InvalidInputError(
                f"{result.name}: {classes} names class {i} {old[i]!r} but this model calls it {names[i]!r}"
            )
    W, H = float(result.width), float(result.height)
    xyxy = np.clip(d.xyxy.astype(np.float64), 0.0, [W, H, W, H])
    cxcywh = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / (2 * W), (xyxy[:, 1] + xyxy[:, 3]) / (2 * H),
                       (xyxy[:, 2] - xyxy[:, 0]) / W, (xyxy[:, 3] - xyxy[:, 1]) / H], axis=1)
    lines = []
    for lab, (cx, cy, w, h), s in zip(d.labels.tolist(), cxcywh.tolist(), score_texts(d.scores)):
        lines.append(f"{lab} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}" + (f" {s}" if scores else ""))
    files: dict[Path, str] = {target: "".join(line + "\n" for line in lines)}
    if len(names) > len(old):
        files[classes] = "".join(n + "\n" for n in names)
    if stage is not None:
        stage.update(files)
        return target
    return write_files(files)[0]


def shrunk_image(source: Any, scale: float) -> Any:
    """``source`` (an open image source: ``width``, ``height``, ``read(x, y, w, h)`` giving RGB
    uint8) shrunk by ``scale`` (<= 1) as a PIL RGB image, read in bands of rows of at most
    PREVIEW_BAND_BYTES (a panorama's rows are long), so the image never sits in memory whole."""
    from .tiler.resize import shrink_source

    return shrink_source(source, scale, band_bytes=PREVIEW_BAND_BYTES)


def _outline_width(boxes: np.ndarray, pw: int, ph: int) -> int:
    """Outline width for boxes drawn on a ``pw`` x ``ph`` preview: a pixel per thousand of its
    longer side, but at most a tenth of the boxes' usual (median) shorter side there, so that
    the small products of a shrunk panorama stay outlines and do not fill in."""
    width = max(1, round(max(pw, ph) / 1000))
    if len(boxes):
        short = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        width = min(width, max(1, int(float(np.median(short)) / 10)))
    return width


def write_preview(
    result: "ImageResult",
    path: str | os.PathLike[str],
    source: Any,
    *,
    max_side: int = PREVIEW_MAX_SIDE,
    quality: int = 85,
    stage: dict[Path, bytes | str] | None = None,
) -> Path:
    """Draw the boxes on a downscaled copy of the image and save it as JPEG: the boxes kept in
    green, the near misses (boxes just below the score threshold, see the count range) in orange.

    ``source`` is an open :class:`~densedet_tile.tiler.readers.ImageSource` (or anything with
    ``width``, ``height`` and ``read(x, y, w, h)``); the image is read and shrunk in bands of
    rows, so a giant image never sits in memory at full size.
    """
    from PIL import ImageDraw

    W, H = int(source.width), int(source.height)
    scale = min(1.0, max_side / max(W, H))
    canvas = shrunk_image(source, scale)
    pw, ph = canvas.size
    draw = ImageDraw.Draw(canvas)
    near = result.near_misses
    width = _outline_width(result.detections.xyxy * np.float32(scale), pw, ph)
    if near is not None and len(near):
        for x1, y1, x2, y2 in (near.xyxy * np.float32(scale)).tolist():
            draw.rectangle((x1, y1, x2, y2), outline=NEAR_MISS_COLOUR, width=width)
    boxes = result.detections.xyxy * np.float32(scale)
    for x1, y1, x2, y2 in boxes.tolist():
        draw.rectangle((x1, y1, x2, y2), outline=KEPT_COLOUR, width=width)
    buf = io.BytesIO()
    # marked as the tool's own (a JPEG comment): a photo of the user's under a preview's name is
    # not replaced (the runner's check, :func:`is_our_preview`)
    canvas.save(buf, format="JPEG", quality=quality, comment=PREVIEW_MARK)
    data = buf.getvalue()
    return _put(path, data, stage)


#: The JPEG comment of every preview :func:`write_preview` makes.
PREVIEW_MARK = b"densedet-tile preview"


def is_our_preview(path: str | os.PathLike[str]) -> bool:
    """Whether the file at ``path`` is a preview this tool made: a JPEG whose comment, in its
    first 64 KiB (the comment segment follows the JPEG's header), is :data:`PREVIEW_MARK`."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return False
    n = len(PREVIEW_MARK) + 2
    return head[:2] == b"\xff\xd8" and b"\xff\xfe" + n.to_bytes(2, "big") + PREVIEW_MARK in head


#: The name ending of each output of an image: ``<stem><suffix>``.
OUTPUT_SUFFIXES: dict[str, str] = {
    "json": ".detections.json",
    "csv": ".detections.csv",
    "coco": ".coco.json",
    "yolo": ".txt",
    "preview": ".preview.jpg",
}


#: What ``densedet-tile audit`` writes for an image of stem ``<stem>``.
AUDIT_SUFFIXES: dict[str, str] = {
    "json": ".audit.json",
    "html": ".audit.html",
    "heatmap": ".heatmap.png",
}


def output_paths(out_dir: str | os.PathLike[str], stem: str, formats: tuple[str, ...], preview: bool) -> dict[str, Path]:
    """Where each requested output of one image goes (``<stem>.detections.json`` etc.)."""
    out = Path(out_dir)
    names = {kind: stem + suffix for kind, suffix in OUTPUT_SUFFIXES.items()}
    paths = {"json": out / names["json"]}
    for f in formats:
        paths[f] = out / names[f]
    if preview:
        paths["preview"] = out / names["preview"]
    return paths
