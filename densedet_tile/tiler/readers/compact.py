"""Whole-image decoding of 8-bit RGB and gray JPEG and PNG, and of still WebP, by imagecodecs.

imagecodecs (libjpeg-turbo, libpng, libwebp) decodes straight into a numpy array with the same
pixels as Pillow's decoders, 3 bytes per RGB pixel (4 for a WebP with alpha), where Pillow
would keep 4 bytes per RGB pixel (and, for WebP, libwebp's animation decoder with two more
canvases of the image for as long as its image object lives). :func:`decode_compact` says why
when it declines, so Pillow can take over (``decoder="auto"``) or the caller can be told
(``decoder="imagecodecs"``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageReadError, MissingDependencyError, one_line
from .orientation import PNG_ORIENTATION_TEXT

__all__ = ["COMPACT_FORMATS", "Compact", "NOT_TRIED", "decode_compact"]

#: Pillow format names of the files imagecodecs decodes here (MPO is a multi-picture JPEG).
COMPACT_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")
#: Pillow modes decoded here: WebP (always 8-bit) is RGB or RGBA, the others RGB or gray.
_MODES = {"WEBP": ("RGB", "RGBA")}
_DEFAULT_MODES = ("RGB", "L")


@dataclass(frozen=True, eq=False)
class Compact:
    """What :func:`decode_compact` did.

    ``pixels``: the read-only (h, w, 3) RGB, (h, w, 4) RGBA (a WebP with alpha, composited
    onto white window by window like Pillow's RGBA) or (h, w) gray uint8 image, or None;
    ``why_not``: the reason there are none; ``ran``: whether imagecodecs decoded the file at all.
    """

    pixels: np.ndarray | None
    why_not: str = ""
    ran: bool = False


#: The outcome when imagecodecs is not asked (``decoder="pillow"``).
NOT_TRIED = Compact(None, "not tried")


def _declined(label: str, why_not: str, *, required: bool, ran: bool = False) -> Compact:
    if required:
        raise ImageReadError(
            f"{label}: decoder='imagecodecs' cannot decode this image ({why_not}); use decoder='auto' or 'pillow'"
        )
    return Compact(None, why_not, ran)


def _png_rows_missing(data: bytes, width: int, height: int, mode: str) -> bool:
    """Whether the pixel stream of this 8-bit, non-interlaced RGB or gray PNG inflates to fewer
    bytes than its rows need (False when that cannot be told: interlaced, or unparsable)."""
    import zlib

    if len(data) < 33 or data[28] != 0:  # IHDR's interlace byte: Adam7 rows are sized otherwise
        return False
    need = height * (1 + width * (3 if mode == "RGB" else 1))
    pos, inflate, got = 8, zlib.decompressobj(), 0
    try:
        while pos + 8 <= len(data) and got < need:
            size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                got += len(inflate.decompress(data[pos + 8 : pos + 8 + size]))
            elif kind == b"IEND":
                break
            pos += 12 + size
    except zlib.error:
        return True
    return got < need


def _webp_animated(data: bytes) -> bool:
    """Whether the WebP's extended header (VP8X) sets its animation flag."""
    return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)


def decode_compact(
    path: Path, fmt: str, width: int, height: int, mode: str, info: dict[str, Any], *, required: bool
) -> Compact:
    """The image at ``path`` (Pillow ``fmt``, ``mode`` and ``info`` from its header) decoded by imagecodecs.

    No pixels means "let Pillow do it": not an 8-bit RGB or gray JPEG or PNG or a WebP, an
    animated WebP (Pillow composes its first frame onto the canvas), imagecodecs missing, a
    JPEG whose last scan is not followed by an end-of-image marker (libjpeg-turbo would
    silently fill a truncated image with grey, while Pillow reports it), a PNG with an
    eXIf chunk after its pixels (only Pillow's full load finds it), a decoding error (Pillow then
    says what is wrong), or an unexpected shape or dtype (e.g. 48-bit PNG). ``required``
    (``decoder="imagecodecs"``) makes each of these an error instead:
    :class:`~densedet_tile.errors.MissingDependencyError` for the missing package,
    :class:`~densedet_tile.errors.ImageReadError` naming the file and the reason otherwise.
    """
    label = str(path)
    if fmt not in COMPACT_FORMATS or mode not in _MODES.get(fmt, _DEFAULT_MODES):
        why = (f"it decodes 8-bit RGB and gray JPEG and PNG, and WebP, only; "
               f"this is a {fmt} image in mode {mode}")
        return _declined(label, why, required=required)
    try:
        import imagecodecs
    except ImportError:
        if required:
            raise MissingDependencyError(f"Decoding {label} with decoder='imagecodecs'", "imagecodecs", None) from None
        return Compact(None, "imagecodecs is not installed")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _declined(label, f"cannot read the file: {one_line(exc)}", required=required)
    if fmt == "PNG":
        if "exif" not in info and b"eXIf" in data:
            return _declined(label, "the PNG has an eXIf chunk after its pixels", required=required)
        for key in PNG_ORIENTATION_TEXT:
            if key not in info and key.encode() in data:  # an orientation Pillow reads after the pixels
                return _declined(label, f"the PNG has a {key!r} chunk after its pixels", required=required)
        decode = imagecodecs.png_decode
    elif fmt == "WEBP":
        if _webp_animated(data):
            return _declined(label, "an animated WebP, whose first frame Pillow composes", required=required)
        decode = imagecodecs.webp_decode
    else:
        # Inside entropy-coded data 0xFF is always followed by 0x00 or a restart marker, so the
        # last SOS (FF DA) belongs to the final scan, and an EOI (FF D9) after it means the
        # scan is whole.
        last_sos = data.rfind(b"\xff\xda")
        if last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0:
            return _declined(label, "no end-of-image marker after the last JPEG scan", required=required)
        decode = imagecodecs.jpeg8_decode
    try:
        arr = decode(data)
    except Exception as exc:
        if fmt == "PNG" and "not enough image data" in str(exc).lower() and _png_rows_missing(data, width, height, mode):
            # libpng checks what Pillow does not: a pixel stream that ends before the last row is
            # filled with black by Pillow, without a word (other libpng complaints, such as a
            # missing checksum after whole rows, fall back to Pillow)
            raise ImageReadError(f"{label}: the PNG is truncated: its pixel data ends before the last row "
                                 f"(libpng: {one_line(exc)})") from None
        return _declined(label, f"imagecodecs: {one_line(exc)}", required=required, ran=True)
    del data
    if fmt == "WEBP":  # RGBA when it has alpha; either is fine (opaque alpha changes no pixel)
        shapes: tuple[tuple[int, ...], ...] = ((height, width, 3), (height, width, 4))
    else:
        shapes = ((height, width, 3) if mode == "RGB" else (height, width),)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape not in shapes:
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        want = " or ".join(str(shape) for shape in shapes)
        return _declined(label, f"imagecodecs gave {got} pixels, not uint8 {want}", required=required, ran=True)
    arr.flags.writeable = False
    return Compact(arr, ran=True)
