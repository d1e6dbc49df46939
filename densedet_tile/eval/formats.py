"""Readers for the box files ``densedet-tile eval`` and ``audit`` consume.

Supported inputs (all boxes become float64 ``xyxy`` pixels of the upright image):

* our detections JSON (schema ``densedet-tile/detections@1``), one file per image, or a
  directory of them (its ``*.detections.json``, the names the tool writes, so a ``batch``
  output folder can be given as it is; every ``*.json`` when there are none of those);
* our CSV and SKU-110K CSV: rows ``image_name,x1,y1,x2,y2,class,image_width,image_height``
  with or without a header line. An optional ninth column ``score`` holds the detection
  score (a finite number, higher is more confident); prediction files without it score
  every box 1.0. With a header, columns are found by name and may come in any order;
* COCO: a ground-truth dataset (``images``/``annotations``/``categories``, ``bbox`` as
  x, y, w, h) and a COCO results list (``image_id``, ``category_id``, ``bbox``, ``score``).

Images are keyed by file name without directories (``a/b/img_1.jpg`` -> ``img_1.jpg``).
COCO image and category ids are integers or strings and are matched exactly as written, as
pycocotools matches them (``"12"`` is not ``12``); a COCO result's string ``image_id`` that is no
image id of the ground truth is taken as an image file name (or as the whole path of a
ground-truth image keyed by its path: two COCO images of one file name in different folders are
keyed by their paths). A folder of YOLO label files reads as predictions, sized by the ground
truth's images.
Every problem raises :class:`~densedet_tile.errors.InvalidInputError` (bad content) or
:class:`~densedet_tile.errors.ImageReadError` (missing / unreadable file) with a one-line
message naming the file and, where it helps, the line or record.
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import math
import os
import re
import stat
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ..errors import DensedetError, ImageReadError, InvalidInputError
from ..io import OUTPUT_SUFFIXES, YOLO_CLASSES_FILE

__all__ = [
    "SCHEMA",
    "CSV_COLUMNS",
    "ImageBoxes",
    "BoxSet",
    "image_key",
    "read_detections_json",
    "read_ground_truth",
    "read_predictions",
]

log = logging.getLogger(__name__)

SCHEMA = "densedet-tile/detections@1"
CSV_COLUMNS = ("image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height")


def image_path_key(name: str) -> str:
    """A ground-truth image's key when another image of the ground truth has its file name in
    another folder: its whole path, with ``/`` separators."""
    return str(name).replace("\\", "/").strip().strip("/")


def image_key(name: str) -> str:
    """The key an image is matched by: its file name without any directory part, and without
    spaces around it (the SKU-110K CSV reader strips its fields, so every reader does: a photo
    named " a.jpg" is the same image in the CSV, the JSON and the COCO files)."""
    return str(name).replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].strip()


@dataclass(eq=False)
class ImageBoxes:
    """The boxes of one image: ``xyxy`` float64 (N, 4) pixels, ``scores`` (N,), ``classes``
    (N,) class names (str). ``area``/``crowd`` are set only by COCO ground truth.
    ``width``/``height`` are None when the source does not say."""

    name: str
    width: int | None
    height: int | None
    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    area: np.ndarray | None = None
    crowd: np.ndarray | None = None
    path: str | None = None
    count_range: dict[str, Any] | None = None
    #: (N, 2) the boxes' width and height as a COCO file gave them (x + w - x is not always w
    #: in floating point; pycocotools works on w and h), None for other sources.
    wh: np.ndarray | None = None
    #: our detections JSON only: the photo's real (absolute) path when it was run
    #: (``settings.requested.file``), where ``path`` is as the run was given it
    file: str | None = None
    #: our detections JSON only: the photo's size and modification time (ns) when it was run
    #: (``settings.requested.input``), which tell that very file from another
    stamp: tuple[int, int] | None = None
    #: our detections JSON of an older version only: the name its run's CSV rows gave a second
    #: input of one file name (``x-2.jpg``), which eval takes when two files name one image
    alt_name: str | None = None


@dataclass(eq=False)
class BoxSet:
    """Boxes of many images (``images`` keyed by :func:`image_key`) and what they came from.

    ``categories`` lists the class names in the dataset's own order (COCO category id order,
    or first appearance in a CSV). ``scored`` is False for a prediction file that had no
    scores (every score is then 1.0). ``source`` names the file or folder read.
    """

    images: dict[str, ImageBoxes] = field(default_factory=dict)
    categories: list[str] = field(default_factory=list)
    scored: bool = True
    source: str = ""
    kind: str = ""
    #: COCO ground truth only: image id -> image key, category id -> name (ids as the file
    #: gives them, int or str).
    coco_images: dict[int | str, str] = field(default_factory=dict)
    coco_categories: dict[int | str, str] = field(default_factory=dict)


def _empty(name: str, w: int | None, h: int | None, path: str | None = None) -> ImageBoxes:
    return ImageBoxes(name, w, h, np.zeros((0, 4)), np.zeros(0), np.zeros(0, dtype=object), path=path)


def undecoded_bytes(text: str) -> bool:
    """Whether ``text`` holds a byte that was not UTF-8 (a lone surrogate of surrogateescape)."""
    return any("\udc80" <= ch <= "\udcff" for ch in text)


def refuse_device(path: str | os.PathLike[str]) -> int | None:
    """Raise :class:`ImageReadError` where ``path`` is a device or a socket: read as text, one
    such as ``/dev/zero`` never ends, and the reader filled the memory before a traceback (an
    outside review). A pipe is read as it comes (process substitution, ``<(...)``); a path
    that cannot be looked at is left to the open, which says why. Returns the file's mode (None:
    not looked at)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
        raise ImageReadError(f"{path}: not a regular file (a device or socket), expected a file")
    return mode


#: The first bytes of the image files a user may hand to a verb that reads boxes.
_IMAGE_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"),
                (b"II+\x00", "BigTIFF"), (b"MM\x00+", "BigTIFF"), (b"GIF8", "GIF"), (b"BM", "BMP"))


def _refuse_image(path: Path, mode: int | None) -> None:
    """Raise where the file that was to hold boxes (``mode``: its :func:`refuse_device`) is an
    image (``eval photo.jpg gt.csv`` said "not UTF-8 text, save the file as UTF-8"; an outside
    review); else nothing."""
    import stat

    if mode is None or not stat.S_ISREG(mode):  # (a pipe's first bytes, once read, are gone)
        return
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
    except (OSError, ValueError):
        return
    kind = next((k for magic, k in _IMAGE_MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "WebP"
    if kind is not None:
        raise InvalidInputError(f"{path}: is a {kind} image, not a file of boxes (a detections JSON, COCO JSON, "
                                "CSV or YOLO labels)")


def _read_text(path: Path, *, newline: str | None = None, errors: str = "strict") -> str:
    """The file's text. ``newline=""`` keeps line endings as they are (what :mod:`csv` needs,
    so a quoted field may hold a carriage return); the default turns them into ``\\n``.
    ``errors="surrogateescape"`` keeps bytes that are not UTF-8 as lone surrogates, the way
    Python names a file whose name is not UTF-8 (``os.fsdecode``). Devices are refused
    (:func:`refuse_device`)."""
    _refuse_image(path, refuse_device(path))
    try:
        with path.open(encoding="utf-8-sig", newline=newline, errors=errors) as fh:
            return fh.read()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a directory, expected a file") from None
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _load_json(path: Path) -> Any:
    text = _read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise InvalidInputError(f"{path}: holds an integer too long to read (over {sys.get_int_max_str_digits()} "
                                "digits)") from None
    except RecursionError:
        raise InvalidInputError(f"{path}: JSON nested too deeply to read") from None


def _is_json(path: Path) -> bool:
    """Whether ``path`` is to be read as JSON: its name ends in .json, or, named otherwise (a
    copy without its suffix), it is a plain file whose first character is ``{`` or ``[`` and
    whose first line is no CSV record (read as CSV, such a file was refused as "header lacks
    column(s) image_name, ..."). A pipe is not peeked at (that would eat what it holds): the CSV
    reader says it holds JSON instead."""
    if path.suffix.lower() == ".json":
        return True
    if path.suffix.lower() == ".csv":
        return False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            head = f.read(4096)
    except (OSError, ValueError):
        return False  # (the CSV reader says what is wrong with it)
    return _looks_json(head.decode("utf-8", "replace"))


def _looks_json(text: str) -> bool:
    """Whether text beginning so is JSON rather than a CSV: it begins with ``{`` or ``[`` and its
    first line is not a record of 8 or 9 fields (a header-less SKU-110K CSV whose first image is
    "[1].jpg" begins with "[" too). Judged on the first line only: a JSON file that is cut short
    or not UTF-8 still gets its own error from the JSON reader, and is parsed once."""
    body = text.lstrip("\ufeff \t\r\n")
    if body[:1] not in ("{", "["):
        return False
    first = body.splitlines()[0] if body else ""
    try:
        fields = next(csv.reader([first]), [])
    except csv.Error:
        return True
    return len(fields) not in (8, 9)


def _check_boxes(xyxy: np.ndarray, where: str) -> None:
    if not np.all(np.isfinite(xyxy)):
        raise InvalidInputError(f"{where}: box coordinates must be finite numbers")
    bad = (xyxy[:, 2] < xyxy[:, 0]) | (xyxy[:, 3] < xyxy[:, 1])
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(f"{where}: box {i} {xyxy[i].tolist()} has x2 < x1 or y2 < y1")
    huge = _beyond_floats(xyxy)
    if huge.any():
        i = int(np.flatnonzero(huge)[0])
        raise InvalidInputError(f"{where}: box {i} {xyxy[i].tolist()} {TOO_LARGE}")


#: What is wrong with a box whose width, height or area is no float (see :func:`_beyond_floats`).
TOO_LARGE = "is too large: its width, height or area is beyond floating point"


def _beyond_floats(xyxy: np.ndarray) -> np.ndarray:
    """bool (N,): the boxes (finite corners) whose width, height or area overflows float64
    (x from -1e308 to 1e308): the evaluator could not measure them."""
    with np.errstate(over="ignore", invalid="ignore"):
        wh = xyxy[:, 2:] - xyxy[:, :2]
        area = wh[:, 0] * wh[:, 1]
    return ~(np.isfinite(wh).all(1) & np.isfinite(area))


def _real(value: Any) -> bool:
    """Whether ``value`` is a JSON number (int or float; not a bool, not a string)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _xywh(value: Any, where: str) -> tuple[float, float, float, float]:
    """A COCO ``bbox``: a list of four finite numbers (x, y, w, h), w and h >= 0, whose far
    corner and area are floats too; else an :class:`InvalidInputError` (``where``: the file
    and record)."""
    vals = [_finite(v) for v in value] if isinstance(value, list) and len(value) == 4 else [None]
    if any(v is None for v in vals) or vals[2] < 0 or vals[3] < 0:  # type: ignore[operator]
        raise InvalidInputError(f"{where} has a bad bbox {_show(value)}; expected [x, y, w, h], four finite "
                                "numbers with w, h >= 0")
    x, y, w, h = vals  # type: ignore[misc]
    if not all(math.isfinite(v) for v in (x + w, y + h, w * h)):
        raise InvalidInputError(f"{where}: bbox {_show(value)} {TOO_LARGE}")
    return x, y, w, h


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return f if math.isfinite(f) else None


def _show(value: Any, limit: int = 60) -> str:
    """A short one-line repr of a value for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: The largest image side taken from a file (2**31 - 1 px: beyond any image a reader opens).
MAX_SIDE = 2**31 - 1


def _size(value: Any, what: str, where: str) -> int:
    f = _finite(value)
    if f is None or f <= 0 or f != int(f):
        raise InvalidInputError(f"{where}: {what} must be a positive integer, got {_show(value)}")
    if f > MAX_SIDE:
        raise InvalidInputError(f"{where}: {what} {_show(value)} is beyond any image ({MAX_SIDE} px at most)")
    return int(f)


# --------------------------------------------------------------------------- our JSON
def _parse_our_json(data: Mapping[str, Any], path: Path) -> ImageBoxes:
    if data.get("schema") != SCHEMA:
        raise InvalidInputError(f"{path}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
    img = data.get("image")
    if not isinstance(img, dict):
        raise InvalidInputError(f"{path}: missing 'image' object")
    # a second input of one file name is called in the rows (and here) as its outputs' stem
    name = img.get("row_name") or img.get("name") or (image_key(img["path"]) if isinstance(img.get("path"), str) else None)
    if not isinstance(name, str) or not name:
        raise InvalidInputError(f"{path}: image.name must be a non-empty string")
    alt = None
    if not img.get("row_name") and "written_by" not in data:
        # written before row_name (2026-12-05): a second input of this file name saved as
        # <stem>-2 is called so in that run's CSV and COCO rows; eval takes that name when two
        # files of the folder name one image (_add_our), and only then (a.jpg and a.png, the
        # latter saved as a-2, keep their own names)
        own = path.name[: -len(".detections.json")] if path.name.endswith(".detections.json") else None
        base, suffix = os.path.splitext(name)
        if own and own != base and re.fullmatch(re.escape(base) + r"-[0-9]+", own):
            alt = own + suffix
    w = _size(img.get("width"), "image.width", str(path))
    h = _size(img.get("height"), "image.height", str(path))
    for key in ("boxes", "scores", "labels"):  # numbers as JSON numbers: "10" or true is no coordinate
        value = [] if data.get(key) is None else data[key]
        if not isinstance(value, list):
            raise InvalidInputError(f"{path}: {key} must be an array, got {_show(value)}")
        def items() -> Iterable[Any]:
            return (itertools.chain.from_iterable(row if isinstance(row, list) else [row] for row in value)
                    if key == "boxes" else value)
        # one pass over the types as a set (bool is not int there); the values only when it fails
        bad = [v for v in items() if not _real(v)] if set(map(type, items())) - {int, float} else []
        if bad:
            raise InvalidInputError(f"{path}: {key} must hold numbers"
                                    f"{' (boxes as [x1, y1, x2, y2])' if key == 'boxes' else ''}, got {_show(bad[0])}")
    # the shapes as written: a flat list, pairs or rows of eight were read as boxes of four
    boxes_in = data.get("boxes") or []
    odd = next((row for row in boxes_in if not (isinstance(row, list) and len(row) == 4)), None)
    if odd is not None:
        raise InvalidInputError(f"{path}: boxes must be [[x1, y1, x2, y2], ...], got {_show(odd)} among them")
    try:
        xyxy = np.asarray(boxes_in, dtype=np.float64).reshape(-1, 4)
        scores = np.asarray(data.get("scores") or [], dtype=np.float64).reshape(-1)
        labels = np.asarray(data.get("labels") or [], dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):  # (an integer too large for a float: 10**400)
        raise InvalidInputError(f"{path}: boxes/scores/labels must be arrays of numbers, boxes as [x1, y1, x2, y2]") from None
    n = len(xyxy)
    if scores.shape != (n,) or labels.shape != (n,):
        raise InvalidInputError(f"{path}: {n} boxes but {scores.size} scores and {labels.size} labels")
    _check_boxes(xyxy, str(path))
    if not np.all(np.isfinite(scores)):
        raise InvalidInputError(f"{path}: scores must be finite numbers")
    if n and (not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels))):
        raise InvalidInputError(f"{path}: labels must be integer class ids")
    cats = data.get("categories") or {}
    if not isinstance(cats, dict):
        raise InvalidInputError(f"{path}: 'categories' must map label ids to names")
    ids, inverse = np.unique(labels, return_inverse=True)
    names = np.array([str(cats.get(str(int(lab)), int(lab))) for lab in ids.tolist()], dtype=object)[inverse.reshape(-1)]
    cr = data.get("count_range")
    img_path = img.get("path") if isinstance(img.get("path"), str) else None
    settings = data.get("settings")
    requested = settings.get("requested") if isinstance(settings, dict) else None
    real = requested.get("file") if isinstance(requested, dict) else None
    stamp = requested.get("input") if isinstance(requested, dict) else None
    stamp = (tuple(stamp) if isinstance(stamp, list) and len(stamp) == 2
             and all(isinstance(v, int) and not isinstance(v, bool) for v in stamp) else None)
    return ImageBoxes(image_key(name), w, h, xyxy, scores, names, path=img_path,
                      count_range=cr if isinstance(cr, dict) else None, file=real if isinstance(real, str) else None,
                      stamp=stamp, alt_name=None if alt is None else image_key(alt))


def read_detections_json(path: str | os.PathLike[str]) -> ImageBoxes:
    """Read one detections JSON (schema ``densedet-tile/detections@1``) written by the CLI."""
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, dict):
        raise InvalidInputError(f"{p}: expected a JSON object with schema {SCHEMA!r}")
    return _parse_our_json(data, p)


def read_boxes_json(path: str | os.PathLike[str], image_name: str | None = None) -> ImageBoxes | BoxSet:
    """The boxes of a JSON file: our detections JSON (one image, :func:`read_detections_json`)
    or a list of COCO results (a :class:`BoxSet` by image; their sizes unknown). A COCO
    ``image_id`` is the image's file name (as ``--format coco`` writes it) or a number; numbers
    name images only through a COCO dataset, so a file of numeric ids is read only when it holds
    one image's results, given the name ``image_name``."""
    p = Path(path)
    data = _load_json(p)
    if isinstance(data, dict):
        return _parse_our_json(data, p)
    if not isinstance(data, list):
        raise InvalidInputError(f"{p}: expected our detections JSON (schema {SCHEMA!r}) or a list of COCO results")
    ids = [r.get("image_id") if isinstance(r, dict) else None for r in data]
    # (a number as COCO reads it: 7.0 is image 7, as _coco_results takes it)
    numeric = [k for k in map(_coco_id, (i for i in ids if isinstance(i, (int, float)))) if isinstance(k, int)]
    if numeric:
        distinct = sorted(set(numeric))
        if any(isinstance(i, str) for i in ids):
            raise InvalidInputError(f"{p}: COCO results whose image_id is a number for some, a name for others")
        if len(distinct) > 1:
            shown = ", ".join(map(str, distinct[:5])) + (", ..." if len(distinct) > 5 else "")
            raise InvalidInputError(f"{p}: COCO results of {len(distinct)} images by numeric image_id ({shown}), "
                                    "which name images only through their COCO dataset: give one image's results, "
                                    "or results whose image_id is the image's file name")
        if image_name is None:
            raise InvalidInputError(f"{p}: COCO results of image_id {distinct[0]}, a number that names no file; "
                                    "give the image as well")
        data = [dict(r, image_id=image_name) if isinstance(r, dict) and "image_id" in r else r for r in data]
    return _coco_results(data, p, None)


# --------------------------------------------------------------------------- CSV
#: CSV records turned into arrays at a time. A record's fields are Python strings (about 60
#: bytes each), so only one chunk of them is alive at once: a file of a million boxes is held as
#: its arrays, not as eight million strings (whose memory Python keeps after they are freed).
CSV_CHUNK = 16384

#: One line of a CSV text with its line break (the last one may have none).
_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


def _csv_records(text: str, path: Path) -> Iterator[tuple[list[list[str]], list[int]]]:
    """The records of a CSV text that hold something, in chunks of up to :data:`CSV_CHUNK`, each
    with the file line every record starts on (blank lines count). A record the csv module
    cannot read (a field past its size limit: an unclosed quote swallowing the rest of a large
    file) is an :class:`InvalidInputError` naming ``path`` and the line it starts on."""
    # The csv module joins the lines of a record itself: a quoted field may hold line breaks.
    # Lines end at \r\n, \r or \n only, as io.StringIO(newline="") splits them (str.splitlines
    # would also break at \x0b, \x0c, \x1c-\x1e, \x85, \u2028 and \u2029 inside a field); they
    # are cut from the text as read, where a StringIO would copy it at 4 bytes a character.
    reader = csv.reader(m.group() for m in _LINE.finditer(text))
    rows: list[list[str]] = []
    lines: list[int] = []
    before = 0  # the lines read before the current record
    while True:
        try:
            r = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise InvalidInputError(f"{path}: line {before + 1}: unreadable CSV record ({exc}; an unclosed quote?)") \
                from None
        if r and (len(r) > 1 or r[0].strip()):
            rows.append(r)
            lines.append(before + 1)
            if len(rows) == CSV_CHUNK:
                yield rows, lines
                rows, lines = [], []
        before = reader.line_num
    if rows:
        yield rows, lines


def _numbered(column: Sequence[str], table: dict[str, int]) -> np.ndarray:
    """int64 (N,): each field's number in ``table`` (distinct strings numbered in order of first
    appearance, added as they come; the table keeps one string object per distinct value)."""
    return np.array([table.setdefault(v, len(table)) for v in column], dtype=np.int64)


def _renumber(table: dict[str, int], clean: Any) -> tuple[np.ndarray, list[str]]:
    """Merge the raw strings of ``table`` that ``clean`` makes equal: (old number -> new number,
    the clean values in order of first appearance)."""
    new: dict[str, int] = {}
    mapping = np.array([new.setdefault(clean(raw), len(new)) for raw in table], dtype=np.int64)
    return mapping, list(new)


def _parse_csv(path: Path, *, predictions: bool) -> BoxSet:
    # an image named by a file name that is not UTF-8 is written with the name's own bytes
    # (io.write_csv), and read back as Python names that file; anything else must be UTF-8
    text = _read_text(path, newline="", errors="surrogateescape")
    out = BoxSet(source=str(path), kind="csv")
    chunks = _csv_records(text, path)
    if _looks_json(text[:4096]):
        # (a pipe or a .csv name holding JSON: a header lacking its columns said nothing useful;
        # a header-less CSV whose first image is "[1].jpg" is a CSV all the same)
        raise InvalidInputError(f"{path}: holds JSON, not CSV; give it as a file whose name ends in .json")
    first_chunk = next(chunks, None)
    if first_chunk is None:
        # not even a header (this tool's CSVs always have one, also with no boxes): a failed
        # export or a file cut short, not a run that found nothing
        raise InvalidInputError(f"{path}: the file is empty (not even a CSV header)")
    first = [c.strip() for c in first_chunk[0][0]]
    if any(undecoded_bytes(c) for c in first):  # (UTF-16 from a spreadsheet, or a Latin-1 column name)
        raise InvalidInputError(f"{path}: not UTF-8 text (the first line holds bytes that are not UTF-8: "
                                "save the file as UTF-8)")
    # a header names its columns: no number among the four after the first (a record without one
    # whose x1 was empty or "1,701" was refused as a header lacking columns: an outside review)
    header = len(first) > 1 and not any(_is_number(c) for c in first[1:5])
    if header:
        cols = {c.lower(): i for i, c in enumerate(first)}
        missing = [c for c in CSV_COLUMNS[:6] if c not in cols]
        if missing:
            raise InvalidInputError(f"{path}: header lacks column(s) {', '.join(missing)}")
        idx = [cols.get(c, -1) for c in CSV_COLUMNS] + [cols.get("score", -1)]
        header_row = first_chunk[0][0]
        first_chunk = (first_chunk[0][1:], first_chunk[1][1:])
    else:
        if len(first) not in (8, 9):
            sep = next((name for c, name in ((";", "semicolons"), ("\t", "tabs")) if len(first) == 1 and c in first[0]),
                       None)
            raise InvalidInputError(
                f"{path}: line {first_chunk[1][0]} has {len(first)} fields, expected 8 "
                "(image_name,x1,y1,x2,y2,class,image_width,image_height) or 9 (+score)"
                + (f"; its fields are separated by {sep}: the file must use commas (and a point for decimals)"
                   if sep else "")
            )
        idx = list(range(8)) + [8 if len(first) == 9 else -1]
        header_row = None
    width_needed = max(idx) + 1
    # no record has more non-empty fields than the header or the first record (a score column
    # from the second row on was dropped without a word, every prediction scored 1.0); trailing
    # empty fields (a spreadsheet's export ends rows with a comma) are nothing
    width_max = len(first)
    has_score = idx[8] >= 0
    sized = idx[6] >= 0 and idx[7] >= 0
    if not has_score and predictions:
        out.scored = False
    del text  # (the records' reader holds it until spent, so it is freed before the arrays are joined)
    name_table: dict[str, int] = {}
    class_table: dict[str, int] = {}
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("name", "class", "xyxy", "score", "w", "h")}
    n = 0  # records read
    for body, lines in itertools.chain([first_chunk], chunks):
        if header:
            # the header again further down: per-image CSVs joined with cat (each has its own)
            again = [k for k, r in enumerate(body) if r == header_row]
            if again:
                cut = set(again)
                body = [r for k, r in enumerate(body) if k not in cut]
                lines = [ln for k, ln in enumerate(lines) if k not in cut]
        if not body:
            continue
        # every check of a single record runs chunk by chunk, and the first line of the file with
        # a problem is the one named, however the file is chunked
        short = next((k for k, r in enumerate(body) if len(r) < width_needed
                      or (len(r) > width_max and any(c.strip() for c in r[width_max:]))), None)
        if short is not None:
            body, lines, short_row = body[:short], lines[:short], (lines[short], len(body[short]))
        cols_t = list(zip(*body)) if body else [()] * width_needed
        # an image_name that is empty or blank (or only "/") names no image: refused, as such a
        # COCO file_name is (it was scored as one more image, named ""); cut there like a short
        # record, so that a problem on an earlier line is still the one named
        blank_row = None
        blank = [raw for raw in set(cols_t[idx[0]]) if not image_key(raw.strip())] if body else []
        if blank:
            k = next(k for k, raw in enumerate(cols_t[idx[0]]) if raw in blank)
            blank_row = (lines[k], cols_t[idx[0]][k].strip())
            body, lines = body[:k], lines[:k]
            cols_t = list(zip(*body)) if body else [()] * width_needed
        xyxy_c = np.column_stack([_csv_numbers(cols_t[i]) for i in idx[1:5]]).reshape(len(body), 4, 2)
        score_c = _csv_numbers(cols_t[idx[8]]) if has_score else np.array([[1.0, _OK]] * len(body)).reshape(-1, 2)
        size_c = [_csv_numbers(cols_t[i], allow_empty=True) for i in idx[6:8]] if sized else []
        _first_record_problem(path, lines, [cols_t[i] for i in idx[1:5]], xyxy_c, score_c,
                              cols_t[idx[8]] if has_score else None, size_c, [cols_t[i] for i in idx[6:8]] if sized else [])
        if blank_row is not None:
            what = "empty" if not blank_row[1] else f"{blank_row[1]!r}, which names no file"
            raise InvalidInputError(f"{path}: line {blank_row[0]}: image_name is {what}")
        if short is not None:
            if short_row[1] < width_needed:
                raise InvalidInputError(f"{path}: line {short_row[0]} has {short_row[1]} fields, expected {width_needed}")
            raise InvalidInputError(f"{path}: line {short_row[0]} has {short_row[1]} fields, expected at most "
                                    f"{width_max} (as {'the header' if header else 'the first line'})")
        n += len(lines)
        parts["name"].append(_numbered(cols_t[idx[0]], name_table))
        parts["class"].append(_numbered(cols_t[idx[5]], class_table))
        # copies: a view would keep each chunk's problem column alive as well
        parts["xyxy"].append(np.ascontiguousarray(xyxy_c[:, :, 0]))
        if has_score:
            parts["score"].append(np.ascontiguousarray(score_c[:, 0]))
        if sized:
            parts["w"].append(np.ascontiguousarray(size_c[0][:, 0]))
            parts["h"].append(np.ascontiguousarray(size_c[1][:, 0]))
        del body, cols_t
    if not n:
        return out
    xyxy = np.concatenate(parts["xyxy"]).reshape(-1, 4)
    scores = np.concatenate(parts["score"]) if has_score else np.ones(n)
    if sized:
        wv, hv = np.concatenate(parts["w"]), np.concatenate(parts["h"])
    else:
        wv = hv = np.full(n, np.nan)
    # images are keyed by file name: two folders' a.jpg would merge (" a.jpg" and "a.jpg" are one)
    name_map, keys = _renumber(name_table, lambda raw: image_key(raw.strip()))
    first_raw: dict[int, str] = {}
    for raw, k in zip(name_table, name_map.tolist()):
        if first_raw.setdefault(k, raw.strip()) != raw.strip():
            raise InvalidInputError(f"{path}: {first_raw[k]!r} and {raw.strip()!r} are both image {keys[k]!r} "
                                    "(images are matched by file name); give them different names")
    class_map, class_names = _renumber(class_table, str.strip)
    bad = next((c for c in class_names if undecoded_bytes(c)), None)
    if bad is not None:
        raise InvalidInputError(f"{path}: class {bad!r} is not UTF-8 text")
    grp = name_map[np.concatenate(parts["name"])]  # image number, in order of first appearance
    cls = class_map[np.concatenate(parts["class"])]
    del parts
    by, bounds = _groups(grp, len(keys))
    starts = bounds[:-1]
    wmin, wmax = np.fmin.reduceat(wv[by], starts), np.fmax.reduceat(wv[by], starts)
    hmin, hmax = np.fmin.reduceat(hv[by], starts), np.fmax.reduceat(hv[by], starts)
    clash = np.flatnonzero((wmin != wmax) & np.isfinite(wmin) | (hmin != hmax) & np.isfinite(hmin))
    if clash.size:
        g = int(clash[0])
        raise InvalidInputError(
            f"{path}: image {keys[g]} is given as both {wmin[g]:g}x{hmin[g]:g} and {wmax[g]:g}x{hmax[g]:g}"
        )
    names_obj = np.array(class_names, dtype=object)
    for g, name in enumerate(keys):
        rows_g = by[bounds[g]: bounds[g + 1]]
        w = int(wmin[g]) if np.isfinite(wmin[g]) and np.isfinite(hmin[g]) else None
        h = int(hmin[g]) if w is not None else None
        out.images[name] = ImageBoxes(name, w, h, xyxy[rows_g], scores[rows_g], names_obj[cls[rows_g]])
    out.categories = class_names
    return out


#: What :func:`_csv_numbers` marks a field as (its second column).
_OK, _NOT_A_NUMBER, _NOT_FINITE = 0.0, 1.0, 2.0


def _csv_numbers(values: Sequence[str], *, allow_empty: bool = False) -> np.ndarray:
    """(N, 2) float64 of CSV fields: the value (NaN where it is no number) and what is wrong with
    it: :data:`_NOT_A_NUMBER`, or with ``allow_empty`` (an empty field is "not given", NaN)
    :data:`_NOT_FINITE` for a "nan" or "inf" written out."""
    vals = [v.strip() for v in values]
    out = np.zeros((len(vals), 2))
    if allow_empty:
        given = np.array([bool(v) for v in vals], bool)
        vals = [v if v else "nan" for v in vals]
    try:
        if "_" in "".join(vals):  # (numpy, as float(), takes "1_701": the fields one by one, as _number reads them)
            raise ValueError
        out[:, 0] = np.array(vals, dtype=np.float64) if vals else np.zeros(0)
    except ValueError:  # rare: the fields one by one
        for i, v in enumerate(vals):
            try:
                out[i, 0] = _number(v)
            except ValueError:
                out[i] = np.nan, _NOT_A_NUMBER
    if allow_empty:
        out[:, 1] = np.where((out[:, 1] == _OK) & ~np.isfinite(out[:, 0]) & given, _NOT_FINITE, out[:, 1])
    return out


def _first_record_problem(path: Path, lines: Sequence[int], coord_text: Sequence[Sequence[str]], xyxy: np.ndarray,
                          score: np.ndarray, score_text: Sequence[str] | None, size: Sequence[np.ndarray],
                          size_text: Sequence[Sequence[str]]) -> None:
    """Raise the :class:`InvalidInputError` of the first CSV record (file order) with a problem of
    its own, if any. On one line the problems are named in this order: a field that is no number
    (coordinates x1, y1, x2, y2, then the score, width, height), a width or height written as nan
    or inf, coordinates or score not finite, a box with x2 < x1 or y2 < y1, one too large to
    measure, a width or height that is no positive integer or larger than any image.
    ``xyxy`` (N, 4, 2), ``score`` (N, 2) and ``size`` (width, height: (N, 2) each) as
    :func:`_csv_numbers` gives them; ``score_text`` None when the file has no score; the texts
    are the fields as read."""
    n = len(lines)
    if n == 0:
        return
    xy = xyxy[:, :, 0]
    wv, hv = (size[0][:, 0], size[1][:, 0]) if size else (np.full(n, np.nan), np.full(n, np.nan))
    known = np.isfinite(wv) & np.isfinite(hv)
    with np.errstate(invalid="ignore"):
        inverted = (xy[:, 2] < xy[:, 0]) | (xy[:, 3] < xy[:, 1])
    # (bad rows, the message for row i), in the order a line's problems are named
    checks: list[tuple[np.ndarray, Any]] = [
        (xyxy[:, c, 1] == _NOT_A_NUMBER, lambda i, c=c: f"coordinates must be numbers, got {coord_text[c][i].strip()!r}")
        for c in range(4)]
    if score_text is not None:
        checks.append((score[:, 1] == _NOT_A_NUMBER, lambda i: f"score must be numbers, got {score_text[i].strip()!r}"))
    sizes = list(zip(("image_width", "image_height"), size, size_text))
    checks += [(s[:, 1] == _NOT_A_NUMBER, lambda i, name=name, text=text: f"{name} must be numbers, got {text[i].strip()!r}")
               for name, s, text in sizes]
    checks += [(s[:, 1] == _NOT_FINITE,
                lambda i, name=name, text=text: f"{name} must be a finite number or empty, got {text[i].strip()!r}")
               for name, s, text in sizes]
    checks += [
        (~np.isfinite(xy).all(1) | ~np.isfinite(score[:, 0]),
         lambda i: "coordinates and score must be finite" if score_text is not None else "coordinates must be finite"),
        (inverted, lambda i: f"box {xy[i].tolist()} has x2 < x1 or y2 < y1"),
        (_beyond_floats(np.nan_to_num(xy)), lambda i: f"box {xy[i].tolist()} {TOO_LARGE}"),
        (known & ((wv <= 0) | (hv <= 0) | (wv != np.round(wv)) | (hv != np.round(hv))),
         lambda i: "image_width/image_height must be positive integers"),
        (known & ((wv > MAX_SIDE) | (hv > MAX_SIDE)), lambda i: f"image_width/image_height beyond any image ({MAX_SIDE} px at most)"),
    ]
    flags = np.column_stack([bad for bad, _ in checks])  # (N, K)
    bad_rows = np.flatnonzero(flags.any(1))
    if bad_rows.size:
        i = int(bad_rows[0])
        say = checks[int(np.flatnonzero(flags[i])[0])][1]
        raise InvalidInputError(f"{path}: line {lines[i]}: {say(i)}")


def _number(text: str) -> float:
    """``float(text)`` for a number as a box file writes it; a ValueError also for digits grouped
    with underscores ("1_701"), Python's own literal syntax, which float() takes but no CSV or
    label writer does (a typo, or two fields run together, read as one number)."""
    if "_" in text:
        raise ValueError(f"not a number: {text!r}")
    return float(text)


def _is_number(text: str) -> bool:
    try:
        _number(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- COCO
def _coco_id(value: Any) -> int | str | None:
    """A COCO id as the key it is matched by: an int or a str, as given (pycocotools keys its
    dicts by the id as written, so ``"12"`` and ``12`` are different images). A float that is
    a whole number is that int (Python and pycocotools find ``7.0`` under ``7``). None for
    anything else, bool included."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, str)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _id_order(key: int | str) -> tuple[bool, int | str]:
    """Sort key for ids: pycocotools sorts them; integer ids come before string ids."""
    return isinstance(key, str), key


def _coco_records(data: Mapping[str, Any], field_name: str, path: Path) -> dict[int | str, Mapping[str, Any]]:
    """The ``images`` or ``categories`` list of a COCO dataset, keyed by their ids."""
    records = data.get(field_name, [])
    if not isinstance(records, list):
        raise InvalidInputError(f"{path}: COCO {field_name!r} must be a list")
    what = field_name[:-1] if field_name == "images" else "category"
    out: dict[int | str, Mapping[str, Any]] = {}
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or "id" not in rec:
            raise InvalidInputError(f"{path}: {what} {i} of {field_name!r} is not an object with an 'id'")
        key = _coco_id(rec["id"])
        if key is None:
            raise InvalidInputError(f"{path}: {what} {i} of {field_name!r} has id {_show(rec['id'])}; "
                                    "COCO ids must be integers or strings")
        if key in out:
            # (two datasets merged without renumbering): the later one silently took the id
            # and the earlier one's image vanished, or the predictions were refused as of an
            # image not in the ground truth
            raise InvalidInputError(f"{path}: two {field_name} have id {_show(rec['id'])}; COCO ids must be unique "
                                    "(renumber one of them)")
        out[key] = rec
    return out


# --------------------------------------------------------------------------- COCO, column-wise
# A COCO file of a million boxes is a million small dicts. They are read a column at a time
# (one list per field, type checks on sets of types, numbers converted and checked as arrays),
# about three times faster than checking record by record. Anything a column does not pass is
# handed to the record-by-record reader, which names the first bad record (or reads what the
# columns were too strict for, such as an id written 7.0).

def _columns(records: list[Any], keys: Sequence[str]) -> list[list[Any]] | None:
    """Each key's values over the records, in file order; None when a record is no object or
    lacks one of the keys."""
    if {type(r) for r in records} - {dict}:
        return None
    try:
        return [[r[k] for r in records] for k in keys]
    except KeyError:
        return None


def _fast_xywh(bboxes: list[Any]) -> np.ndarray | None:
    """(N, 4) float64 of COCO bboxes when every one is a list of four JSON numbers (not bools),
    finite, with w, h >= 0 and a far corner and area that are floats; else None."""
    if {type(b) for b in bboxes} - {list} or set(map(len, bboxes)) - {4}:
        return None
    if set(map(type, itertools.chain.from_iterable(bboxes))) - {int, float}:
        return None
    try:
        a = np.array(bboxes, dtype=np.float64).reshape(-1, 4)
    except OverflowError:  # an integer too large for a float
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        ok = (np.isfinite(a).all() and (a[:, 2:] >= 0).all() and np.isfinite(a[:, :2] + a[:, 2:]).all()
              and np.isfinite(a[:, 2] * a[:, 3]).all())
    return a if ok else None


def _fast_numbers(values: list[Any]) -> np.ndarray | None:
    """float64 (N,) of JSON numbers (not bools), all finite; else None."""
    if set(map(type, values)) - {int, float}:
        return None
    try:
        a = np.array(values, dtype=np.float64)
    except OverflowError:
        return None
    return a if np.isfinite(a).all() else None


def _plain_ids(values: list[Any]) -> bool:
    """Whether every id is an int or a str (what :func:`_coco_id` keeps as it is)."""
    return not set(map(type, values)) - {int, str}


def _groups(index: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The records of each group in file order: (record order, bounds) with group g's records at
    ``order[bounds[g]:bounds[g + 1]]``."""
    order = np.argsort(index, kind="stable")
    return order, np.r_[0, np.cumsum(np.bincount(index, minlength=count))]


#: An annotation without an "area" (whose area is then its box's; null is a bad area).
_NO_AREA = object()


def _fast_coco_annotations(anns: list[Any], id_to_key: Mapping[int | str, str],
                           cats: Mapping[int | str, str], out: BoxSet) -> bool:
    """Fill ``out``'s images from COCO annotations column-wise; False (``out`` untouched) when
    any record needs the record-by-record reader."""
    cols = _columns(anns, ("image_id", "category_id", "bbox"))
    if cols is None:
        return False
    iids, cids, bboxes = cols
    crowds = [a.get("iscrowd", 0) for a in anns]
    areas = [a.get("area", _NO_AREA) for a in anns]
    if not (_plain_ids(iids) and _plain_ids(cids)):
        return False
    if set(map(type, crowds)) - {int, bool} or set(crowds) - {0, 1}:
        return False
    keys = list(out.images)  # the images of the ground truth, in their order
    key_index = {k: i for i, k in enumerate(keys)}
    try:
        img = np.array([key_index[id_to_key[i]] for i in iids], dtype=np.int64)
        cat_names = list(dict.fromkeys(cats[c] for c in cids))
    except KeyError:  # an unknown image or category id
        return False
    xywh = _fast_xywh(bboxes)
    if xywh is None:
        return False
    given = np.array([v is not _NO_AREA for v in areas], dtype=bool)
    area = _fast_numbers([0 if v is _NO_AREA else v for v in areas])
    if area is None or (area < 0).any():
        return False
    cat_index = {n: i for i, n in enumerate(cat_names)}
    cls = np.array([cat_index[cats[c]] for c in cids], dtype=np.int64)
    names = np.array(cat_names, dtype=object)
    area = np.where(given, area, xywh[:, 2] * xywh[:, 3])
    xyxy = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    crowd = np.array(crowds, dtype=bool)
    order, bounds = _groups(img, len(keys))
    for g in np.flatnonzero(np.diff(bounds)).tolist():
        rows = order[bounds[g]: bounds[g + 1]]
        im = out.images[keys[g]]
        im.wh = xywh[rows, 2:]
        im.xyxy = xyxy[rows]
        im.classes = names[cls[rows]]
        im.scores = np.ones(len(rows))
        im.area = area[rows]
        im.crowd = crowd[rows]
    return True


def _fast_coco_results(data: list[Any], path: Path, gt: BoxSet | None) -> BoxSet | None:
    """COCO results read column-wise (see :func:`_coco_results`), None when any record needs the
    record-by-record reader."""
    ids = gt.coco_images if gt is not None else {}
    cats = gt.coco_categories if gt is not None else {}
    cols = _columns(data, ("image_id", "category_id", "bbox", "score"))
    if cols is None:
        return None
    iids, cids, bboxes, scores = cols
    if not (_plain_ids(iids) and _plain_ids(cids)):
        return None
    keys: dict[str, int] = {}  # image key -> group, in order of first appearance
    group_of: dict[int | str, int] = {}
    for iid in dict.fromkeys(iids):
        if iid in ids:
            key = ids[iid]
        elif isinstance(iid, str):
            key = _result_image_key(iid, gt)
        else:  # a numeric id the ground truth lacks: the record-by-record reader says so
            return None
        group_of[iid] = keys.setdefault(key, len(keys))
    xywh = _fast_xywh(bboxes)
    score = _fast_numbers(scores)
    if xywh is None or score is None:
        return None
    name_of = {cid: cats.get(cid, f"category_id {cid} (not in the ground truth)" if cats else str(cid))
               for cid in dict.fromkeys(cids)}
    cat_names = list(dict.fromkeys(name_of.values()))
    cat_index = {n: i for i, n in enumerate(cat_names)}
    cls = np.array([cat_index[name_of[c]] for c in cids], dtype=np.int64)
    names = np.array(cat_names, dtype=object)
    img = np.array([group_of[i] for i in iids], dtype=np.int64)
    xyxy = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
    order, bounds = _groups(img, len(keys))
    out = BoxSet(source=str(path), kind="coco-results")
    for g, key in enumerate(keys):
        rows = order[bounds[g]: bounds[g + 1]]
        im = gt.images.get(key) if gt is not None else None
        out.images[key] = ImageBoxes(key, im.width if im else None, im.height if im else None, xyxy[rows],
                                     score[rows], names[cls[rows]], wh=xywh[rows, 2:])
    out.categories = _first_seen(im.classes for im in out.images.values())
    return out


def _check_annotation_ids(anns: list[Any], path: Path) -> None:
    """Refuse two annotations of one id (pycocotools indexes annotations by id: it keeps one of
    them twice and loses the other, so its AP would not be this one), and say where an id is 0
    (pycocotools takes 0 for "no match" and never matches such an annotation). Ids are not
    needed otherwise: annotations without one are fine."""
    ids = [_coco_id(a.get("id")) for a in anns if isinstance(a, dict) and "id" in a]
    ids = [i for i in ids if i is not None]
    dup = next((i for i, n in Counter(ids).items() if n > 1), None)
    if dup is not None:
        raise InvalidInputError(f"{path}: two annotations have id {dup!r}; give each its own id (pycocotools would "
                                "keep one of them twice and lose the other)")
    if 0 in ids:
        log.warning("%s: an annotation has id 0, which pycocotools never matches (it takes 0 for 'no match'); "
                    "it is scored here as any other, so pycocotools' figures on this file differ", path)


def class_key(name: object) -> str:
    """A class name as classes are matched: its words, one space apart. The formats keep names
    differently (CSV readers strip the spaces around a field, ``classes.txt`` holds no line
    break), so the tool's own YOLO folder or CSV scored a class ``"x\\ny"`` or ``" sp"`` of its
    JSON as unknown."""
    return " ".join(str(name).split())


def _coco_gt(data: Mapping[str, Any], path: Path) -> BoxSet:
    out = BoxSet(source=str(path), kind="coco")
    cats = {k: str(c.get("name", k)) for k, c in _coco_records(data, "categories", path).items()}
    images = _coco_records(data, "images", path)
    names = list(cats.values())
    keys = [class_key(n) for n in names]
    if len(set(keys)) < len(keys):  # classes are matched by name: two ids with one name would merge
        k = next(k for k in keys if keys.count(k) > 1)
        dup = [n for n, m in zip(names, keys) if m == k]
        said = f"named {dup[0]!r}" if len(set(dup)) == 1 else f"named {dup[0]!r} and {dup[1]!r}, one name but for spaces"
        raise InvalidInputError(f"{path}: two categories are {said}; classes are matched by name, so give "
                                "each category its own name")
    out.categories = [cats[k] for k in sorted(cats, key=_id_order)]
    id_to_key: dict[int | str, str] = {}
    for iid, im in images.items():
        fname = im.get("file_name")
        if not isinstance(fname, str) or not image_key(fname):  # (empty, blank or "/": no file named)
            raise InvalidInputError(f"{path}: image id {iid!r} has no file_name")
    # images are keyed by file name without folders; two of one name in different folders
    # (train/a.jpg, val/a.jpg) are keyed by their whole path instead, which results by id and
    # by that path still find
    base = [image_key(im["file_name"]) for im in images.values()]
    shared = {k for k, n in Counter(base).items() if n > 1}
    for (iid, im), key in zip(images.items(), base):
        if key in shared:
            whole = image_path_key(im["file_name"])
            if whole == key:  # a.jpg beside train/a.jpg: a prediction named a.jpg could be either
                raise InvalidInputError(f"{path}: two images are named {key} (one of them in no folder); give them "
                                        "different file names")
            key = whole
        if key in out.images:
            raise InvalidInputError(f"{path}: two images are named {im['file_name'].strip()}")
        # (null, as some exporters write a size they do not know, is no size, as a missing key is)
        w = _size(im["width"], "width", f"{path}: image id {iid!r}") if im.get("width") is not None else None
        h = _size(im["height"], "height", f"{path}: image id {iid!r}") if im.get("height") is not None else None
        out.images[key] = _empty(key, w, h)
        id_to_key[iid] = key
    anns = data.get("annotations", [])
    if not isinstance(anns, list):
        raise InvalidInputError(f"{path}: 'annotations' must be a list")
    _check_annotation_ids(anns, path)
    grouped: dict[str, list[tuple[list[float], str, float, bool]]] = {}
    for j, a in enumerate([] if _fast_coco_annotations(anns, id_to_key, cats, out) else anns):
        if not isinstance(a, dict) or not all(k in a for k in ("image_id", "category_id", "bbox")):
            raise InvalidInputError(f"{path}: annotation {j} needs image_id, category_id and bbox [x, y, w, h]")
        raw_iid, raw_cid = a["image_id"], a["category_id"]
        iid, cid = _coco_id(raw_iid), _coco_id(raw_cid)
        if iid not in id_to_key:
            raise InvalidInputError(f"{path}: annotation {j} refers to unknown image_id {_show(raw_iid)}")
        if cid not in cats:
            raise InvalidInputError(f"{path}: annotation {j} refers to unknown category_id {_show(raw_cid)}")
        x, y, w, h = _xywh(a["bbox"], f"{path}: annotation {j}")
        crowd = a.get("iscrowd", 0)
        if not (isinstance(crowd, (int, bool)) and crowd in (0, 1)):  # (1.0 is a float: refused)
            raise InvalidInputError(f"{path}: annotation {j} has iscrowd {_show(crowd)}; expected 0 or 1")
        if "area" in a:  # pycocotools takes the area as given; without one it is the box's
            area = _finite(a["area"])
            if area is None or area < 0:
                raise InvalidInputError(f"{path}: annotation {j} has area {_show(a['area'])}; "
                                        "expected a finite number >= 0 (or no 'area', to use the box's)")
        else:
            area = w * h
        grouped.setdefault(id_to_key[iid], []).append(([x, y, x + w, y + h], cats[cid], area, bool(crowd), (w, h)))
    for key, items in grouped.items():
        im = out.images[key]
        im.wh = np.array([wh for *_, wh in items], dtype=np.float64).reshape(-1, 2)
        items = [i[:4] for i in items]
        im.xyxy = np.array([b for b, _, _, _ in items], dtype=np.float64).reshape(-1, 4)
        im.classes = np.array([c for _, c, _, _ in items], dtype=object)
        im.scores = np.ones(len(items))
        im.area = np.array([a for _, _, a, _ in items], dtype=np.float64)
        im.crowd = np.array([c for _, _, _, c in items], dtype=bool)
    # images in id order, as pycocotools evaluates them
    out.images = {id_to_key[i]: out.images[id_to_key[i]] for i in sorted(id_to_key, key=_id_order)}
    out.coco_images = id_to_key
    out.coco_categories = cats
    return out


def _result_image_key(name: str, gt: BoxSet | None) -> str:
    """The image a COCO result's string ``image_id`` names: its file name, or the whole path of
    a ground-truth image keyed by its path (:func:`image_path_key`)."""
    whole = image_path_key(name)
    return whole if gt is not None and whole in gt.images else image_key(name)


def _coco_results(data: list[Any], path: Path, gt: BoxSet | None) -> BoxSet:
    """COCO results. ``image_id`` is a COCO image id (needs COCO ground truth; matched exactly,
    int or str) or, as our CLI's ``--format coco`` writes it, the image file name (works with
    any ground truth). A string is first looked up as an id, then as a file name."""
    fast = _fast_coco_results(data, path, gt)
    if fast is not None:
        return fast
    ids = gt.coco_images if gt is not None else {}
    cats = gt.coco_categories if gt is not None else {}
    out = BoxSet(source=str(path), kind="coco-results")
    grouped: dict[str, list[tuple[list[float], float, str, tuple[float, float]]]] = {}
    for j, r in enumerate(data):
        if not isinstance(r, dict) or not all(k in r for k in ("image_id", "category_id", "bbox", "score")):
            raise InvalidInputError(f"{path}: result {j} needs image_id, category_id, bbox [x, y, w, h] and score")
        raw_id, raw_cid = r["image_id"], r["category_id"]
        iid, cid = _coco_id(raw_id), _coco_id(raw_cid)
        if iid is None:
            raise InvalidInputError(f"{path}: result {j}: image_id must be an integer id or an image file name, "
                                    f"got {_show(raw_id)}")
        if cid is None:
            raise InvalidInputError(f"{path}: result {j}: category_id must be an integer or string id, got {_show(raw_cid)}")
        if iid in ids:  # the exact id of a ground-truth image
            key = ids[iid]
        elif isinstance(iid, str):  # else a string names the image file
            key = _result_image_key(iid, gt)
        elif gt is None or gt.kind != "coco":
            raise InvalidInputError(
                f"{path}: result {j} has a numeric image_id; numeric ids need a COCO JSON ground truth"
            )
        else:
            hint = f" (it has the string id {str(iid)!r})" if str(iid) in ids else ""
            raise InvalidInputError(
                f"{path}: result {j} refers to image_id {iid}, which the ground truth does not have{hint}"
            )
        x, y, w, h = _xywh(r["bbox"], f"{path}: result {j}")
        score = _finite(r["score"])
        if score is None:
            raise InvalidInputError(f"{path}: result {j} has score {_show(r['score'])}; expected a finite number")
        # a category id a COCO ground truth lacks gets a name no category of it can have (its
        # number could be one's name: scored as that category, where pycocotools leaves it out)
        name = cats.get(cid, f"category_id {cid} (not in the ground truth)" if cats else str(cid))
        grouped.setdefault(key, []).append(([x, y, x + w, y + h], score, name, (w, h)))
    for key, items in grouped.items():
        g = gt.images.get(key) if gt is not None else None
        out.images[key] = ImageBoxes(
            key, g.width if g else None, g.height if g else None,
            np.array([b for b, _, _, _ in items], dtype=np.float64).reshape(-1, 4),
            np.array([s for _, s, _, _ in items], dtype=np.float64),
            np.array([c for _, _, c, _ in items], dtype=object),
            wh=np.array([wh for *_, wh in items], dtype=np.float64).reshape(-1, 2),
        )
    out.categories = _first_seen(im.classes for im in out.images.values())
    return out


#: The name ending of the detections files the tool writes (``<stem>.detections.json``).
DETECTIONS_SUFFIX = OUTPUT_SUFFIXES["json"]


# --------------------------------------------------------------------------- entry points
def read_ground_truth(path: str | os.PathLike[str]) -> BoxSet:
    """Read ground truth from a SKU-110K CSV or a COCO JSON dataset."""
    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{p}: ground truth must be a CSV or COCO JSON file, got a directory")
    if _is_json(p):
        data = _load_json(p)
        if not isinstance(data, dict) or "images" not in data:
            raise InvalidInputError(f"{p}: not a COCO dataset (expected an object with 'images' and 'annotations')")
        if "annotations" not in data:  # (an empty list is a ground truth with no objects: fine)
            raise InvalidInputError(f"{p}: no 'annotations' in it: a list of images without their boxes (a test "
                                    "set's image info?) is no ground truth to score against")
        gt = _coco_gt(data, p)
    else:
        gt = _parse_csv(p, predictions=False)
    for im in gt.images.values():
        im.scores = np.ones(len(im.xyxy))
    if not gt.images:
        raise InvalidInputError(f"{p}: holds no images")
    return gt


def parse_yolo_labels(text: str, where: str, *, mixed_scores: bool = False) -> tuple[list[str], np.ndarray, bool]:
    """The lines of a YOLO label file (``class cx cy w h [score]``, normalised to the image, as
    Ultralytics' ``save_txt`` and ``--format yolo`` write them): each line's class field, and
    float64 (N, 5) ``cx, cy, w, h, score`` (score 1.0 where a line has none), and whether any line
    has a score. Bad content is an :class:`InvalidInputError` naming ``where`` and the line; so
    are lines with and without a score in one file, unless ``mixed_scores`` (the audit counts the
    boxes; AP would rank the unscored ones first)."""
    rows = [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    bad = next(((n, f) for n, f in rows if len(f) not in (5, 6)), None)
    if bad is not None:
        raise InvalidInputError(f"{where}: line {bad[0]} has {len(bad[1])} fields, expected 5 (class cx cy w h) "
                                "or 6 (+score)")
    if not mixed_scores and len({len(f) for _, f in rows}) > 1:
        # a line without its score would count as sure (1.0), ahead of every scored box, and
        # change AP without a word (a CSV with an empty score is refused the same way)
        plain = next(n for n, f in rows if len(f) == 5)
        with_score = next(n for n, f in rows if len(f) == 6)
        raise InvalidInputError(f"{where}: line {plain} has no score but line {with_score} has one; give every "
                                "line its score, or none")
    try:
        vals = np.array([[_number(v) for v in f[1:5]] + [_number(f[5]) if len(f) == 6 else 1.0] for _, f in rows],
                        np.float64).reshape(-1, 5)
    except ValueError:
        n, f = next((n, f) for n, f in rows if not all(_is_number(v) for v in f[1:]))
        raise InvalidInputError(f"{where}: line {n}: coordinates and scores must be numbers, got "
                                f"{next(v for v in f[1:] if not _is_number(v))!r}") from None
    box_bad = ~np.isfinite(vals[:, :4]).all(axis=1) | (vals[:, 2:4] < 0).any(axis=1)
    score_bad = ~np.isfinite(vals[:, 4])
    if box_bad.any() or score_bad.any():
        k = int(np.flatnonzero(box_bad | score_bad)[0])
        what = ("coordinates must be finite, widths and heights not negative" if box_bad[k]
                else "the score must be a finite number")
        raise InvalidInputError(f"{where}: line {rows[k][0]}: {what}")
    if len(vals) and vals[:, :4].max() > 2.0:
        raise InvalidInputError(f"{where}: coordinates above 1: YOLO labels are normalised to the image (0-1)")
    return [f[0] for _, f in rows], vals, any(len(f) == 6 for _, f in rows)


def yolo_to_xyxy(vals: np.ndarray, width: float, height: float) -> np.ndarray:
    """float64 (N, 4) pixel boxes of :func:`parse_yolo_labels`' normalised centres and sizes."""
    c = vals[:, :4] * [width, height, width, height]
    return np.column_stack([c[:, 0] - c[:, 2] / 2, c[:, 1] - c[:, 3] / 2, c[:, 0] + c[:, 2] / 2, c[:, 1] + c[:, 3] / 2])


def _yolo_folder(p: Path, files: list[Path], gt: BoxSet | None) -> BoxSet:
    """A folder of YOLO label files (``--format yolo``): each ``<stem>.txt`` is the image of the
    ground truth whose file name has that stem, whose size turns it into pixels; ``classes.txt``
    beside them names the class numbers."""
    if gt is None:
        raise InvalidInputError(f"{p}: YOLO labels are normalised to their images; they need the ground truth's "
                                "image sizes")
    by_stem: dict[str, list[str]] = {}
    for key in gt.images:
        by_stem.setdefault(Path(key).stem, []).append(key)
    names: list[str] = []
    cls_file = p / YOLO_CLASSES_FILE
    if cls_file.is_file():
        names = [n.strip() for n in _read_text(cls_file).splitlines()]
    out = BoxSet(source=str(p), kind="yolo", scored=False)
    plain: Path | None = None  # a file whose lines have no score, and one whose lines do
    with_score: Path | None = None
    for f in files:
        keys = by_stem.get(f.stem)
        if not keys:
            text = _read_text(f)
            if not text.strip():  # an empty file: an image with no boxes, nothing to score (as in compare)
                out.images[f.stem] = ImageBoxes(f.stem, None, None, np.zeros((0, 4)), np.zeros(0),
                                                np.zeros(0, dtype=object), path=str(f))
                continue
            raise InvalidInputError(f"{f}: labels of image {f.stem}, which is not in the ground truth {gt.source}")
        if len(keys) > 1:
            raise InvalidInputError(f"{f}: the ground truth {gt.source} has {len(keys)} images named {f.stem} "
                                    f"({', '.join(keys[:3])}); YOLO labels are matched by the name without its suffix")
        g = gt.images[keys[0]]
        if g.width is None or g.height is None:
            raise InvalidInputError(f"{f}: the ground truth {gt.source} does not give the size of {keys[0]}, "
                                    "which YOLO labels need to be turned into pixels")
        cls, vals, scored = parse_yolo_labels(_read_text(f), str(f))
        out.scored |= scored
        if len(vals):
            if scored:
                with_score = with_score or f
            else:
                plain = plain or f
            if plain is not None and with_score is not None:
                # (as within one file: the unscored boxes would all count as sure, 1.0)
                raise InvalidInputError(f"{plain}: its lines have no score but those of {with_score.name} have; "
                                        "give every file's lines their scores, or none")
        # a class number (digits 0-9: "²" passed str.isdigit and failed int(), a traceback; an
        # outside review) names the class.txt line; anything else is a class name of its own
        classes = np.array([names[int(c)] if c.isascii() and c.isdigit() and int(c) < len(names) else c
                            for c in cls], dtype=object)
        out.images[keys[0]] = ImageBoxes(keys[0], g.width, g.height, yolo_to_xyxy(vals, g.width, g.height),
                                         vals[:, 4].copy(), classes, path=str(f))
    out.categories = _first_seen(im.classes for im in out.images.values())
    return out


def read_predictions(path: str | os.PathLike[str], *, gt: BoxSet | None = None) -> BoxSet:
    """Read predictions: our JSON file, a directory of them, our CSV, COCO results (needs
    ``gt``), or a directory of YOLO label files (needs ``gt``, for the image sizes)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix.lower() == ".json" and f.is_file())
        ours = [f for f in files if f.name.lower().endswith(DETECTIONS_SUFFIX)]
        # beside them sit batch's manifest.json, *.coco.json and *.audit.json: without any
        # *.detections.json, other JSON files are read as detections JSONs, but not those
        other = [f for f in files if not f.name.lower().endswith((".coco.json", ".audit.json"))
                 and f.name.lower() != "manifest.json"]
        coco = [f for f in files if f.name.lower().endswith(".coco.json")]
        files = ours or other
        if not files and coco:
            raise InvalidInputError(f"{p}: the folder holds COCO results ({coco[0].name}{', ...' if len(coco) > 1 else ''}), "
                                    "not detections JSONs: give a COCO results file itself, or a folder of "
                                    f"*{DETECTIONS_SUFFIX} files")
        if not files:
            labels = sorted(f for f in p.iterdir() if f.suffix.lower() == ".txt" and f.is_file()
                            and f.name != YOLO_CLASSES_FILE)
            if labels:
                return _yolo_folder(p, labels, gt)
            raise InvalidInputError(f"{p}: directory holds no .json detection files (nor YOLO .txt labels)")
        out = BoxSet(source=str(p), kind="json")
        _add_all_ours(out, [(read_detections_json(f), f) for f in files])
        out.categories = _first_seen(im.classes for im in out.images.values())
        return out
    if _is_json(p):
        data = _load_json(p)
        if isinstance(data, list):
            return _coco_results(data, p, gt)
        if not isinstance(data, dict):
            raise InvalidInputError(f"{p}: expected our detections JSON or a COCO results list")
        out = BoxSet(source=str(p), kind="json")
        _add_our(out, _parse_our_json(data, p), p)
        out.categories = _first_seen(im.classes for im in out.images.values())
        return out
    return _parse_csv(p, predictions=True)


def _add_our(out: BoxSet, im: ImageBoxes, path: Path) -> None:
    if im.name in out.images:
        raise InvalidInputError(f"{path}: a second detections file for image {im.name}")
    out.images[im.name] = im


def _add_all_ours(out: BoxSet, found: list[tuple[ImageBoxes, Path]]) -> None:
    """A folder's detections JSONs, each under its image's name; where several name one image
    (an older version's renumbered second photo: ``x-2.detections.json`` naming ``x.jpg``), each
    of them with an ``alt_name`` takes it, as that run's CSV rows did, until no name is held
    twice (``x-2-2``, a real ``x-2.jpg`` of a later run, first takes ``x-2.jpg``, then gives it
    up to the renumbered ``x.jpg``)."""
    names = [im.name for im, _ in found]
    for _ in range(len(found) + 1):
        held: dict[str, list[int]] = {}
        for k, n in enumerate(names):
            held.setdefault(n, []).append(k)
        moved = False
        for ks in held.values():
            if len(ks) > 1:
                for k in ks:
                    alt = found[k][0].alt_name
                    if alt is not None and names[k] != alt:
                        names[k], moved = alt, True
        if not moved:
            break
    for (im, path), name in zip(found, names):
        _add_our(out, im if name == im.name else replace(im, name=name), path)


def _first_seen(arrays: Iterable[np.ndarray]) -> list[str]:
    seen: dict[str, None] = {}
    for a in arrays:
        for c in a:
            seen.setdefault(str(c), None)
    return list(seen)
