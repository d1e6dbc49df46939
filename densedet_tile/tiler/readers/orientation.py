"""EXIF/TIFF orientation: map a window of the upright image to the stored image and back.

Orientation values follow EXIF/TIFF: 1 upright, 2 mirrored, 3 rotated 180, 4 flipped,
5 transposed, 6 needs a 90 degree clockwise turn, 7 transversed, 8 needs a 90 degree
counter-clockwise turn. Values 5..8 swap width and height.
"""

from __future__ import annotations

import logging
import re
import struct
from typing import Any

import numpy as np

from ...errors import one_line

__all__ = ["stored_box", "orient", "checked_orientation", "exif_orientation", "info_orientation"]

# The package's logger, under the name it had when the readers were one module.
log = logging.getLogger("densedet_tile.tiler.readers")


def stored_box(orientation: int, x: int, y: int, w: int, h: int, sw: int, sh: int) -> tuple[int, int, int, int]:
    """Window (x, y, w, h) of the upright image -> (x0, y0, w0, h0) of the stored image.

    ``sw`` x ``sh`` is the size of the stored (un-rotated) image.
    """
    if orientation == 1:
        return x, y, w, h
    if orientation == 2:
        return sw - x - w, y, w, h
    if orientation == 3:
        return sw - x - w, sh - y - h, w, h
    if orientation == 4:
        return x, sh - y - h, w, h
    if orientation == 5:
        return y, x, h, w
    if orientation == 6:
        return y, sh - x - w, h, w
    if orientation == 7:
        return sw - y - h, sh - x - w, h, w
    if orientation == 8:
        return sw - y - h, x, h, w
    raise AssertionError(f"unreachable orientation {orientation}")  # pragma: no cover


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored-frame (h0, w0, C) crop into the upright frame (a view, not a copy)."""
    if orientation == 1:
        return a
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.transpose(1, 0, 2)
    if orientation == 6:
        return a.transpose(1, 0, 2)[:, ::-1]
    if orientation == 7:
        return a[::-1, ::-1].transpose(1, 0, 2)
    if orientation == 8:
        return a.transpose(1, 0, 2)[::-1]
    raise AssertionError(f"unreachable orientation {orientation}")  # pragma: no cover


def checked_orientation(value: object, name: str) -> int:
    """An orientation tag value as 1..8; 0 (written by many phones and editors for "not set")
    is upright without a word; anything else is logged and treated as upright."""
    try:
        o = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        o = -1
    if 1 <= o <= 8:
        return o
    if o == 0:
        return 1
    log.warning("%s: invalid orientation tag %r, treating the image as upright", name, value)
    return 1


def exif_orientation(im: Any, label: str) -> int:
    """The EXIF orientation of the Pillow image ``im`` (1 when it has none or it is unreadable),
    read from its header ``info`` as Pillow's ``getexif()`` reads it (see :func:`info_orientation`).

    Damaged EXIF never stops the image from loading: it is logged, naming ``label``. Pillow's own
    EXIF reader is not used: it reports damage through Python's warnings, which name no file and
    could only be caught by changing process-wide state that other threads rely on.
    """
    return info_orientation(getattr(im, "info", {}) or {}, label)


def _exif_orientation_tag(raw: bytes) -> int | None:
    """Tag 0x0112 of the first IFD of a TIFF-structured EXIF block (``Exif\\0\\0`` prefix
    optional); None when absent. Raises ValueError for a block it cannot walk."""
    if raw.startswith(b"Exif\x00\x00"):
        raw = raw[6:]
    if len(raw) < 8 or raw[:2] not in (b"II", b"MM"):
        raise ValueError("not a TIFF-structured EXIF block")
    e = "<" if raw[:2] == b"II" else ">"
    magic, first = struct.unpack(e + "HI", raw[2:8])
    if magic != 42 or first + 2 > len(raw):
        raise ValueError("bad EXIF header")
    (n,) = struct.unpack(e + "H", raw[first : first + 2])
    for k in range(n):
        at = first + 2 + 12 * k
        if at + 12 > len(raw):
            raise ValueError("EXIF directory cut short")
        tag, kind, count = struct.unpack(e + "HHI", raw[at : at + 8])
        if tag != 0x0112:
            continue
        if count != 1:  # (Pillow's getexif() skips such a tag: the image is upright to it)
            raise ValueError(f"the orientation tag holds {count} values instead of one")
        if kind == 3:  # SHORT, the standard type
            return int(struct.unpack(e + "H", raw[at + 8 : at + 10])[0])
        if kind == 4:  # LONG
            return int(struct.unpack(e + "I", raw[at + 8 : at + 12])[0])
        if kind == 1:  # BYTE
            return int(raw[at + 8])
        raise ValueError(f"orientation stored as type {kind}")
    return None


_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([0-9])')  # as Pillow's getexif() reads it
#: The text chunks of a PNG that may carry an orientation (besides its eXIf chunk).
PNG_ORIENTATION_TEXT = ("Raw profile type exif", "XML:com.adobe.xmp")


def info_orientation(info: dict[str, Any], label: str) -> int:
    """The orientation an image's header ``info`` (Pillow's) carries: its EXIF block (a JPEG's
    APP1, a PNG's eXIf chunk, WebP's), ImageMagick's hex "Raw profile type exif" text chunk, or
    XMP (``tiff:Orientation``), in the order Pillow's ``getexif()`` looks; 1 when none says."""
    raw: Any = info.get("exif")
    if raw is None and isinstance(info.get("Raw profile type exif"), str):
        lines = info["Raw profile type exif"].split("\n")
        try:
            raw = bytes.fromhex("".join(lines[3:]))  # "", "exif", length, then the hex
        except ValueError:
            raw = None
    if isinstance(raw, (bytes, bytearray)) and raw:
        try:
            value = _exif_orientation_tag(bytes(raw))
        except (ValueError, struct.error) as exc:
            log.warning("%s: unreadable EXIF data (%s), treating the image as upright", label, one_line(exc))
            return 1
        if value is not None:
            return checked_orientation(value, label)
    xmp = info.get("XML:com.adobe.xmp") or info.get("xmp")
    if xmp:
        m = _XMP_ORIENTATION.search(xmp.encode() if isinstance(xmp, str) else bytes(xmp))
        if m:
            return checked_orientation(int(m.group(1)), label)
    return 1
