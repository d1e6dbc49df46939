""":func:`open_image`: check the options, sniff the file's format, hand it to the right reader."""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import shutil
import stat
import sys
import tempfile
import threading
import weakref
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ...errors import DensedetError, ImageReadError, InvalidInputError, one_line
from .array import ArraySource
from .base import DEFAULT_MAX_PIXELS, ImageSource
from .pillow import DECODERS, Decoder, PillowSource
from .tiff import DEFAULT_TIFF_CACHE_BYTES, TiffSource

__all__ = ["open_image", "IMAGE_SUFFIXES"]

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

#: File name endings of images, for taking the images out of a folder (batch, eval, adapt). A
#: file named directly is read whatever its name (the format is sniffed from its bytes); HEIC is
#: listed so that an iPhone folder's photos fail with a message saying what to do instead of
#: being passed over in silence.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".avif", ".bmp", ".tif",
                                   ".tiff", ".gif", ".heic", ".heif")


def open_image(
    source: str | os.PathLike[str] | np.ndarray | bytes | Any,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tiff_cache_bytes: int = DEFAULT_TIFF_CACHE_BYTES,
    decoder: Decoder = "auto",
) -> ImageSource:
    """Open ``source`` for windowed reading of its upright RGB pixels.

    ``source`` is a path (format sniffed from the file's first bytes, not its extension), an
    ``HxWx3`` uint8 RGB array (``HxW`` gray and ``HxWx4`` RGBA are accepted too), the bytes of
    an image file (``bytes``, ``bytearray``, ``memoryview``) or a binary file object (an upload,
    ``io.BytesIO``; read from its start when it can seek, as ``Image.open`` does, else from where
    it is), read like a file of theirs (EXIF rotation applied; spooled to a temporary
    file that is gone once the source no longer needs it), or a ``PIL.Image.Image`` (its EXIF
    rotation applied, as a file's would be; ``np.asarray(Image.open(...))`` loses it). Pillow
    formats are decoded here, once; TIFF/BigTIFF only has its header read here.

    ``max_pixels`` caps ``width * height`` of files (None: no cap); it replaces Pillow's
    decompression-bomb limit for this call only. ``tiff_cache_bytes`` bounds the decoded-segment
    cache of a TIFF source (beyond it only by the segments the latest window shares with its
    neighbours: see :class:`~.segment_cache.SegmentCache`). ``decoder`` (see :data:`Decoder`)
    picks the whole-image decoder of JPEG, PNG, WebP ... files: ``"auto"`` (imagecodecs for
    8-bit RGB and gray JPEG and PNG and still WebP, Pillow for the rest), ``"imagecodecs"``
    (an error for a file it cannot decode) or ``"pillow"``. TIFF/BigTIFF is always read
    through tifffile, and arrays are not decoded; the source's :attr:`~ImageSource.stats`
    says what ran.

    Raises :class:`~densedet_tile.errors.ImageReadError` (one line naming the file) for a missing
    file, an empty path, a directory, an empty, unreadable, truncated or unknown-format file, a
    TIFF strip shorter than its declared size, a zero-size image, one over ``max_pixels``, one
    ``decoder="imagecodecs"`` cannot decode, or a closed PIL image;
    :class:`~densedet_tile.errors.InvalidInputError` for a bad array or option (``tiff_cache_bytes``
    an integer >= 0), or bytes that name a file (``b"shelf.jpg"``: give a str or Path);
    :class:`~densedet_tile.errors.MissingDependencyError` for a TIFF compression (or
    ``decoder="imagecodecs"``) that needs the ``imagecodecs`` package.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0):
        raise InvalidInputError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if not isinstance(decoder, str) or decoder not in DECODERS:
        raise InvalidInputError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    if tiff_cache_bytes is None or isinstance(tiff_cache_bytes, bool) or \
            not isinstance(tiff_cache_bytes, (int, np.integer)) or tiff_cache_bytes < 0:
        raise InvalidInputError(f"tiff_cache_bytes must be an integer >= 0 (0: no cache), got {tiff_cache_bytes!r}")
    if isinstance(source, np.ndarray):
        return ArraySource(source)
    pil = sys.modules.get("PIL.Image")
    if pil is not None and isinstance(source, pil.Image):
        return _from_pil(source, max_pixels)
    if isinstance(source, bytes) and len(source) < 4096 and b"\0" not in source and os.path.isfile(source):
        # the bytes of a path (b"shelf.jpg", os.fsencode): read as image data they were an
        # "unknown format" without a word of why
        raise InvalidInputError(f"{source!r}: bytes are read as the image file's contents; give a path as str or "
                                "Path (os.fsdecode)")
    if isinstance(source, (bytes, bytearray, memoryview)) or callable(getattr(source, "read", None)):
        return _spooled(source, max_pixels=max_pixels, tiff_cache_bytes=tiff_cache_bytes, decoder=decoder)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(
            "image source must be a file path, a numpy array, the bytes of an image file, a binary file object "
            f"or a PIL image, got {type(source).__name__}"
        )
    if not os.fspath(source):  # (Path("") is the current folder: "is a directory" said nothing useful)
        raise ImageReadError("the image path is empty")
    path = Path(os.fspath(source))
    label = str(path)
    try:
        if path.is_dir():
            raise ImageReadError(f"{label}: is a directory, not an image file")
        if not stat.S_ISREG(os.stat(path).st_mode):
            # a pipe (/dev/stdin, <(...): the sniffed bytes would be gone; a named pipe waits for
            # a writer when opened: a FIFO among a batch's inputs hung the run), a socket or a device
            raise ImageReadError(f"{label}: not a regular file (a pipe?): the image is read more than once; "
                                 "save it to a file first")
        with open(path, "rb") as fh:
            head = fh.read(32)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{label}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{label}: permission denied") from None
    except OSError as exc:
        raise ImageReadError(f"{label}: cannot open file ({one_line(exc)})") from exc
    if not head:
        raise ImageReadError(f"{label}: the file is empty")
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        pw, ph = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if pw == 0 or ph == 0:  # Pillow would only say it cannot identify the file
            raise ImageReadError(f"{label}: the image has zero size ({pw}x{ph})")
    if head[:4] in TIFF_MAGICS:
        return TiffSource(path, max_pixels=max_pixels, cache_bytes=tiff_cache_bytes)
    return PillowSource(path, max_pixels=max_pixels, decoder=decoder)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:  # pragma: no cover - already gone, or still open (Windows) until exit
        pass


#: The temporary file being opened in this thread (or task) for an image given as bytes, and the
#: name its log lines say instead (:func:`_named_in_logs`).
_RENAMED: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("densedet_renamed", default=None)


class _Renamed(logging.Filter):
    """Writes the label of this context's temporary file for its path in the records it sees."""

    def filter(self, record: logging.LogRecord) -> bool:
        pair = _RENAMED.get()
        if pair is not None:
            message = record.getMessage()
            if pair[0] in message:
                record.msg, record.args = message.replace(*pair), None
        return True


_RENAMER = _Renamed()


@contextlib.contextmanager
def _named_in_logs(path: str, label: str) -> Iterator[None]:
    """While the readers open the temporary file ``path``, their log lines say ``label`` instead
    (an outside review: a photo given as bytes was warned about as
    ``/tmp/.densedet-image.k3x9.tmp: invalid orientation tag 9``). One filter, never removed,
    sits on each of the package's reader loggers (where the records are made: a filter on a
    parent logger does not see its children's records) and renames only what this thread or
    task is opening (a filter added and removed per call raced with other threads' records)."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("densedet_tile.tiler"):
            lg = logging.getLogger(name)
            if _RENAMER not in lg.filters:
                lg.addFilter(_RENAMER)
    token = _RENAMED.set((path, label))
    try:
        yield
    finally:
        _RENAMED.reset(token)


def _rewind(source: Any) -> None:
    """Put a seekable file object back to its start, as ``Image.open`` does: an upload already
    read from (``Image.open(f).verify()`` first) was read from where that left it, an "unknown
    format" (an outside review). A stream that cannot seek is read from where it is."""
    try:
        if source.seekable():
            source.seek(0)
    except (AttributeError, OSError, ValueError):  # no seekable(), a pipe, a closed file (said on reading)
        pass


def _spooled(source: Any, **options: Any) -> ImageSource:
    """An image given as bytes or a binary file object, opened from a temporary file of them, so
    that it is read exactly as the same file on disk would be (format sniffing, EXIF rotation,
    TIFF windows, the pixel limit). Errors name the source (``<bytes>``, or the file object's
    name), never the temporary file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = "<bytes>"
    else:
        name = getattr(source, "name", None)
        label = f"<{os.path.basename(name) if isinstance(name, str) and name else type(source).__name__}>"
    fd, tmp = tempfile.mkstemp(prefix=".densedet-image.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(source, (bytes, bytearray, memoryview)):
                fh.write(source)
            else:
                _rewind(source)
                try:
                    shutil.copyfileobj(source, fh)
                except (TypeError, UnicodeDecodeError):  # str from a text-mode file (or its failed decode)
                    raise InvalidInputError(f"{label}: a file object in text mode; open the image with 'rb'") from None
        with _named_in_logs(tmp, label):
            src = open_image(tmp, **options)
    except ImageReadError as exc:
        _unlink_quietly(tmp)
        raise ImageReadError(str(exc).replace(tmp, label)) from None
    except (DensedetError, MemoryError):
        _unlink_quietly(tmp)
        raise
    except Exception as exc:  # a reader's fault that is not one of ours: said as one, naming the source
        _unlink_quietly(tmp)
        raise ImageReadError(f"{label}: cannot read the image ({type(exc).__name__}: "
                             f"{one_line(exc).replace(tmp, label)})") from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    src.name, src.path = label, None  # (its later errors say the label too)
    try:
        os.unlink(tmp)  # POSIX: the reader's open handle keeps the data until it closes
    except OSError:  # pragma: no cover - Windows keeps an open file: removed once the source is gone
        weakref.finalize(src, _unlink_quietly, tmp)
    return src


#: held while a PIL image handed in is read and decoded: ``Image.open`` is lazy, and Pillow's
#: decoding is not safe from two threads at once (one image given to ``detect()`` from 4 threads
#: gave errors, or silently other boxes, and left the caller's image damaged: an outside review).
#: One lock for every image: decoding is a small share of a detection.
_PIL_LOAD = threading.Lock()


def _from_pil(im: Any, max_pixels: int | None) -> ImageSource:
    """A PIL image, converted as a file of it is read: the pixel limit first (``Image.open`` is
    lazy: nothing is decoded yet), its EXIF rotation, 16-bit and float samples by their range,
    transparency on white, palettes (``convert("RGB")`` made a 16-bit gray photo white). A
    damaged file behind it is refused as the file would be: truncated, or a PNG whose pixel data
    ends before its last row (an outside review: a bare ``OSError``, and black rows read
    without a word); not a JPEG whose coded data stops early behind a proper end (the file
    readers' check): the image holds what the program decoded and may have changed since."""
    from .colour import pillow_converter, stored_8bit
    from .orientation import exif_orientation
    from .pillow import check_pil_size, check_png_rows, load_pixels

    label = "<PIL image>"
    with _PIL_LOAD:
        check_pil_size(im, label, max_pixels)
        w, h = int(im.size[0]), int(im.size[1])
        eight_bit = stored_8bit(im)  # (asked before loading, as the file reader does)
        # its file, taken before loading: Pillow lets go of a file object once the pixels are in
        read_file = _pil_file_reader(im)
        load_pixels(im, label, im.format or "unknown", w, h)
        if im.format == "PNG":
            check_png_rows(im, read_file, label)
    # (a JPEG's coded data is not checked for stopping early here: the image is pixels the
    # program has decoded, perhaps shrunk (thumbnail, draft) or drawn on since, so they cannot
    # be compared with the file's; an outside review found such images refused as damaged)
    # the pixels as stored, turned upright window by window as a file's are: the result records
    # the orientation applied, as for the file (it said 1 for a PIL image of a rotated photo)
    try:
        pixels = pillow_converter(im, eight_bit=eight_bit)(im)
    except ValueError as exc:  # a conversion Pillow refuses: Pillow's words, said as ours
        raise ImageReadError(f"{label}: {one_line(exc)}") from None
    return ArraySource(pixels, name=label, orientation=exif_orientation(im, label))


def _pil_file_reader(im: Any) -> Callable[[], bytes]:
    """A function giving the bytes of the file the PIL image ``im`` was opened from: its file
    object as it is now (read from the start, its position put back), else its file name; no
    bytes when it has neither (made in memory, or loaded from a file object Pillow has let go)."""
    from .colour import file_bytes

    fp, filename = getattr(im, "fp", None), getattr(im, "filename", None)
    return lambda: file_bytes(fp, filename)
