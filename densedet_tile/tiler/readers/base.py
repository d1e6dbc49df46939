"""The :class:`ImageSource` interface every reader implements, its stats, and the size check.

A source serves windows of the *upright* image (orientation applied) as ``(h, w, 3)`` uint8
RGB, C-contiguous; a subclass only supplies windows of the *stored* (un-rotated) image through
:meth:`ImageSource._read_stored`, and the base class checks the window, maps it to the stored
frame and turns the result upright.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageReadError, InvalidInputError
from ...types import DEFAULT_MAX_PIXELS
from .orientation import orient, stored_box

__all__ = ["DEFAULT_MAX_PIXELS", "SourceStats", "ImageSource", "check_size"]


def check_size(label: str, width: int, height: int, max_pixels: int | None, *, turned: bool = False) -> None:
    """Refuse an image with no pixels, or with more than ``max_pixels`` of them. ``width`` and
    ``height`` as stored; ``turned``: its orientation turns it a quarter, so the message gives
    the upright size, as the rest of the tool does (an outside review: 768x1024 refused, 1024x768
    everywhere else)."""
    if turned:
        width, height = height, width
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{label}: the image has zero size ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"{label}: image is {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels} "
            "(the pixel limit: --max-pixels on the command line); raise it to read the image "
            "(--max-pixels none, or max_pixels=None in Python: no limit)"
        )


@dataclass(frozen=True, slots=True)
class SourceStats:
    """What an image source holds and has decoded: a snapshot taken when :attr:`ImageSource.stats` is read.

    ``decoder``: what decodes the pixels: ``"imagecodecs"`` or ``"pillow"`` (the whole image, at
    :func:`open_image`), ``"tifffile"`` (TIFF segments, as windows are read), None for an array.
    ``stored_mode``: the mode the decoded whole image is held in: ``"RGB"``, ``"L"`` or
    ``"RGBA"`` (WebP with alpha) for imagecodecs (3, 1 or 4 bytes per pixel), Pillow's own
    mode (``"RGB"``, ``"P"``, ``"I;16"`` ...) for Pillow; None when the source holds no
    decoded whole image (TIFF, array, closed source).
    ``decoded_bytes``: bytes of the decoded whole image held as a numpy array (imagecodecs); None
    while Pillow holds it (Pillow does not report its buffer size); 0 when none is held.
    ``full_decodes``: whole-image decodes run (an imagecodecs decode whose result Pillow had to
    replace counts too, and so do those that check a JPEG whose corner is the fill grey for
    data that stops early); 0 for TIFF and arrays.
    ``segments_decoded``: TIFF tiles or strips decoded (each plane of a separate-planes file
    counts). ``cache_hits``: TIFF segments a window found in the decoded-segment cache.
    ``cached_segments`` and ``cache_bytes``: what that cache holds now.
    """

    decoder: str | None = None
    stored_mode: str | None = None
    decoded_bytes: int | None = 0
    full_decodes: int = 0
    segments_decoded: int = 0
    cache_hits: int = 0
    cached_segments: int = 0
    cache_bytes: int = 0


class ImageSource(ABC):
    """An open image that serves windows of its upright version.

    Attributes: ``name`` (file name, or ``"<array>"``), ``path`` (:class:`~pathlib.Path` or
    None), ``width`` and ``height`` (of the upright image, pixels), ``format`` (e.g. ``"JPEG"``,
    ``"TIFF"``, ``"array"``), ``orientation`` (the EXIF/TIFF value applied, 1 = none), ``stats``
    (a :class:`SourceStats` snapshot: decoder, decoded memory, decode and cache counts).

    Use as a context manager or call :meth:`close`. :meth:`read` may be called from one
    thread at a time per source or concurrently (TIFF and Pillow sources lock internally).
    """

    name: str
    path: Path | None
    width: int
    height: int
    format: str
    orientation: int

    def __init__(self, *, name: str, path: Path | None, stored_size: tuple[int, int], orientation: int, fmt: str) -> None:
        self.name = name
        self.path = path
        self.format = fmt
        self.orientation = orientation
        self._stored_w, self._stored_h = stored_size
        if orientation >= 5:
            self.width, self.height = self._stored_h, self._stored_w
        else:
            self.width, self.height = self._stored_w, self._stored_h
        self._closed = False

    # -- public ---------------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the upright image."""
        return self.width, self.height

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def stats(self) -> SourceStats:
        """A read-only snapshot of what this source holds and has decoded so far."""
        return SourceStats()

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """Pixels of the upright window with top-left ``(x, y)`` and size ``w`` x ``h``.

        Returns a C-contiguous, writable ``(h, w, 3)`` uint8 RGB array, always a fresh one (never
        a view of an :class:`ArraySource`'s array). The window must lie inside the image; otherwise
        :class:`~densedet_tile.errors.InvalidInputError` is raised.
        """
        if self._closed:
            raise ImageReadError(f"{self._label}: the image source is closed")
        x, y, w, h = self._check_window(x, y, w, h)
        x0, y0, w0, h0 = stored_box(self.orientation, x, y, w, h, self._stored_w, self._stored_h)
        stored = self._read_stored(x0, y0, w0, h0)
        out = np.ascontiguousarray(orient(stored, self.orientation))
        if not out.flags.writeable:  # e.g. a Pillow buffer; torch.from_numpy wants writable
            out = out.copy()
        return out

    def close(self) -> None:
        """Release the decoded image / file handle. Idempotent."""
        self._closed = True

    def release(self) -> None:
        """Drop what the source keeps for later reads (a TIFF's decoded segments) and hand the
        memory back; the source stays open. Called between passes over a giant image (the
        detection's tiles, then the preview's bands). Nothing to drop by default."""

    @property
    def band_rows(self) -> int | None:
        """Rows of the upright image that one decode unit spans (a TIFF's strip or tile height),
        when reading in bands of a multiple of it decodes each unit once; None when it does not
        matter (the image is decoded whole)."""
        return None

    def __enter__(self) -> "ImageSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = ", closed" if self._closed else ""
        return f"{type(self).__name__}({self.name!r}, {self.width}x{self.height}, {self.format}{state})"

    # -- for subclasses ---------------------------------------------------------------------
    @property
    def _label(self) -> str:
        return str(self.path) if self.path is not None else self.name

    @abstractmethod
    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        """(h, w, 3) uint8 RGB window of the *stored* (un-rotated) image; may be a view."""

    def _check_window(self, x: Any, y: Any, w: Any, h: Any) -> tuple[int, int, int, int]:
        vals = []
        for nm, v in (("x", x), ("y", y), ("w", w), ("h", h)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise InvalidInputError(f"{self._label}: window {nm} must be an integer, got {v!r}")
            vals.append(int(v))
        x, y, w, h = vals
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > self.width or y + h > self.height:
            raise InvalidInputError(
                f"{self._label}: window x={x} y={y} w={w} h={h} is not inside the "
                f"{self.width}x{self.height} image"
            )
        return x, y, w, h


def trim_heap() -> None:
    """Hand freed memory back to the system (glibc's ``malloc_trim``; nothing elsewhere): buffers
    freed on a reader thread stay in that thread's arena otherwise, and a second pass over a giant
    image allocated as much again beside them."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        _MALLOC_TRIM = False
        try:
            import ctypes
            import ctypes.util

            name = ctypes.util.find_library("c")
            if name:
                _MALLOC_TRIM = getattr(ctypes.CDLL(name), "malloc_trim", False)
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


_MALLOC_TRIM: Any = None
