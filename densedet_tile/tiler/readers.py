"""Image readers: one ``ImageSource`` interface over Pillow files, TIFF/BigTIFF and numpy arrays.

Every source exposes the *upright* image (EXIF / TIFF orientation applied) and hands out
windows of it with :meth:`ImageSource.read`, always as ``(h, w, 3)`` uint8 RGB, C-contiguous.
Coordinates are integer pixels in the upright frame, origin top-left, ``x`` to the right.

Memory model
------------
* 8-bit RGB and gray JPEGs and PNGs are decoded once, at :func:`open_image`, by imagecodecs
  (libjpeg-turbo, libpng) straight into a 3-byte-per-pixel numpy array when imagecodecs is
  installed (same pixels as Pillow's decoders), so a panorama costs one decoded copy. Windows
  are small copies of it. Pillow still reads the header (size, EXIF orientation).
* Other Pillow formats (PNG, WebP, BMP, GIF, CMYK JPEG ...) are decoded once, at
  :func:`open_image`, and kept in Pillow's own buffer in their native mode. Nothing is
  converted or rotated up front: each :meth:`~ImageSource.read` crops the matching window of the stored (un-rotated) image,
  converts only that crop to RGB uint8 and rotates only that crop. So an image costs one
  decoded copy (Pillow stores RGB as 4 bytes per pixel) plus the windows in flight.
* TIFF and BigTIFF are read through tifffile region by region: a window decodes only the TIFF
  tiles (or strips) it overlaps, and a bounded LRU cache of decoded segments lets overlapping
  windows share work. A 40000 x 40000 TIFF is never wholly in memory.
* numpy arrays are never copied whole; windows are small copies (views for RGB windows that
  span whole rows); gray and RGBA arrays are converted window by window.

Colour policy (all sources)
---------------------------
* Gray becomes R = G = B. Bilevel images become 0 / 255.
* Alpha (LA, RGBA, palette with transparency, TIFF extra samples) is composited onto a white
  background: shelf cut-outs and scans use transparent for "no product", and white keeps it
  from reading as black shelf gaps. Premultiplied TIFF alpha is handled as such.
* Integer images deeper than 8 bits are scaled by their full bit range (16-bit: ``v / 257``,
  rounded). Pillow's 32-bit ``I`` images are scaled from their actual value range when it
  exceeds 0..255 (16-bit data is taken as 0..65535). Float images in [0, 1] are scaled by 255;
  other float ranges are stretched linearly from their min to their max. Float TIFFs are
  clipped to [0, 1] and scaled by 255 (their range is not known without reading them whole).
* CMYK and YCbCr Pillow images are converted with Pillow's own conversion.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import numpy as np

from ..errors import ImageReadError, InvalidInputError, MissingDependencyError, one_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_TIFF_CACHE_BYTES",
    "DECODERS",
    "Decoder",
    "ImageSource",
    "SourceStats",
    "ArraySource",
    "PillowSource",
    "TiffSource",
    "open_image",
]

log = logging.getLogger(__name__)

#: Default cap on ``width * height`` of an input image (2**31, about 46341 x 46341 pixels).
DEFAULT_MAX_PIXELS: int = 2**31
#: Default byte budget of the decoded-segment cache of one TIFF source.
DEFAULT_TIFF_CACHE_BYTES: int = 256 * 2**20

#: Which decoder :func:`open_image` uses for the formats it decodes whole (JPEG, PNG, WebP ...):
#: ``"auto"`` imagecodecs for 8-bit RGB and gray JPEG and PNG, Pillow for everything else;
#: ``"imagecodecs"`` imagecodecs or an error; ``"pillow"`` Pillow always.
Decoder = Literal["auto", "imagecodecs", "pillow"]
DECODERS: tuple[str, ...] = ("auto", "imagecodecs", "pillow")

_TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")

# Pillow's decompression-bomb limit and LOAD_TRUNCATED_IMAGES are process-wide globals; they are
# changed only while this lock is held and restored afterwards, so one call never leaks into another.
_PIL_LIMIT_LOCK = threading.Lock()


@contextlib.contextmanager
def _pillow_limits_lifted() -> Iterator[None]:
    """Within: no Pillow pixel limit (``max_pixels`` replaces it) and truncated files are errors."""
    from PIL import Image, ImageFile

    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


# --------------------------------------------------------------------------------------------
# Orientation: map a window of the upright image to the stored image and back.
# --------------------------------------------------------------------------------------------
def _stored_box(orientation: int, x: int, y: int, w: int, h: int, sw: int, sh: int) -> tuple[int, int, int, int]:
    """Window (x, y, w, h) of the upright image -> (x0, y0, w0, h0) of the stored image.

    ``sw`` x ``sh`` is the size of the stored (un-rotated) image. Orientation values follow
    EXIF/TIFF: 1 upright, 2 mirrored, 3 rotated 180, 4 flipped, 5 transposed, 6 needs a 90
    degree clockwise turn, 7 transversed, 8 needs a 90 degree counter-clockwise turn.
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


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
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


def _checked_orientation(value: object, name: str) -> int:
    """An orientation tag value as 1..8; anything else is logged and treated as upright."""
    try:
        o = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        o = -1
    if 1 <= o <= 8:
        return o
    log.warning("%s: invalid orientation tag %r, treating the image as upright", name, value)
    return 1


# --------------------------------------------------------------------------------------------
# Pixel conversions shared by the readers (window-sized arrays only).
# --------------------------------------------------------------------------------------------
def _check_size(label: str, width: int, height: int, max_pixels: int | None) -> None:
    """Refuse an image with no pixels, or with more than ``max_pixels`` of them."""
    if width <= 0 or height <= 0:
        raise ImageReadError(f"{label}: the image has zero size ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise ImageReadError(
            f"{label}: image is {width}x{height} = {width * height} pixels, more than max_pixels={max_pixels}; "
            "pass a larger max_pixels (or None for no limit) to read it"
        )


def _composite_white(color: np.ndarray, alpha: np.ndarray, *, premultiplied: bool = False) -> np.ndarray:
    """Composite uint8 ``color`` (h, w, 3) with uint8 ``alpha`` (h, w) onto white."""
    c = color.astype(np.uint16)
    a = alpha.astype(np.uint16)[..., None]
    inv = 255 - a
    if premultiplied:
        out = c + inv
    else:
        out = (c * a + 255 * inv + 127) // 255
    return np.minimum(out, 255).astype(np.uint8)


def _gray_to_rgb(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[..., None], 3, axis=2)


def _scale_uint(a: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers of ``bits`` bits -> uint8 over the full range (rounded)."""
    if bits == 8 and a.dtype == np.uint8:
        return a
    top = (1 << bits) - 1
    return ((a.astype(np.float32) * (255.0 / top)) + 0.5).astype(np.uint8)


def _scale_range(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 255], clipped, uint8."""
    span = hi - lo if hi > lo else 1.0
    out = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / span)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SourceStats:
    """What an image source holds and has decoded: a snapshot taken when :attr:`ImageSource.stats` is read.

    ``decoder``: what decodes the pixels: ``"imagecodecs"`` or ``"pillow"`` (the whole image, at
    :func:`open_image`), ``"tifffile"`` (TIFF segments, as windows are read), None for an array.
    ``stored_mode``: the mode the decoded whole image is held in: ``"RGB"`` or ``"L"`` for
    imagecodecs (3 or 1 byte per pixel), Pillow's own mode (``"RGB"``, ``"P"``, ``"I;16"`` ...) for
    Pillow; None when the source holds no decoded whole image (TIFF, array, closed source).
    ``decoded_bytes``: bytes of the decoded whole image held as a numpy array (imagecodecs); None
    while Pillow holds it (Pillow does not report its buffer size); 0 when none is held.
    ``full_decodes``: whole-image decodes run (an imagecodecs decode whose result Pillow had to
    replace counts too); 0 for TIFF and arrays.
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

        Returns a C-contiguous, writable ``(h, w, 3)`` uint8 RGB array. It is a fresh copy,
        except for an RGB :class:`ArraySource` window spanning whole rows, which is a view of the
        caller's array. The window must lie inside the image; otherwise
        :class:`~densedet_tile.errors.InvalidInputError` is raised.
        """
        if self._closed:
            raise ImageReadError(f"{self._label}: the image source is closed")
        x, y, w, h = self._check_window(x, y, w, h)
        x0, y0, w0, h0 = _stored_box(self.orientation, x, y, w, h, self._stored_w, self._stored_h)
        stored = self._read_stored(x0, y0, w0, h0)
        out = np.ascontiguousarray(_orient(stored, self.orientation))
        if not out.flags.writeable:  # e.g. a Pillow buffer; torch.from_numpy wants writable
            out = out.copy()
        return out

    def close(self) -> None:
        """Release the decoded image / file handle. Idempotent."""
        self._closed = True

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


# --------------------------------------------------------------------------------------------
# numpy arrays
# --------------------------------------------------------------------------------------------
class ArraySource(ImageSource):
    """Windows of an in-memory ``HxWx3`` uint8 RGB array (``HxW`` gray and ``HxWx4`` RGBA too).

    The array is referenced, never copied whole; do not modify it while the source is in use.
    """

    def __init__(self, array: np.ndarray, *, name: str = "<array>") -> None:
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(f"{name}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != np.uint8:
            raise InvalidInputError(
                f"{name}: expected a uint8 image array (HxWx3 RGB, HxW gray or HxWx4 RGBA), got dtype {array.dtype}"
            )
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise InvalidInputError(
                f"{name}: expected an image array of shape HxWx3 (RGB), HxW (gray) or HxWx4 (RGBA), got shape {array.shape}"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InvalidInputError(f"{name}: the image array is empty (shape {array.shape})")
        self._array: np.ndarray | None = array
        super().__init__(name=name, path=None, stored_size=(array.shape[1], array.shape[0]), orientation=1, fmt="array")

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        a = self._array
        if a is None:  # pragma: no cover - guarded by read()
            raise ImageReadError(f"{self.name}: the image source is closed")
        win = a[y : y + h, x : x + w]
        if win.ndim == 2:
            return _gray_to_rgb(win)
        if win.shape[2] == 4:
            return _composite_white(win[..., :3], win[..., 3])
        return win

    def close(self) -> None:
        self._array = None
        super().close()


# --------------------------------------------------------------------------------------------
# Pillow formats
# --------------------------------------------------------------------------------------------
class PillowSource(ImageSource):
    """A JPEG/PNG/WebP/BMP/GIF... decoded once by Pillow; windows converted on demand.

    ``decoder`` (see :data:`Decoder`) picks imagecodecs or Pillow for the whole-image decode.
    """

    def __init__(self, path: Path, *, max_pixels: int | None, decoder: Decoder = "auto") -> None:
        from PIL import Image, UnidentifiedImageError

        label = str(path)
        with _pillow_limits_lifted():
            try:
                im = Image.open(path)  # reads the header only
            except UnidentifiedImageError:
                raise ImageReadError(f"{label}: unknown or unsupported image format") from None
            except (OSError, ValueError, SyntaxError) as exc:
                raise ImageReadError(f"{label}: cannot read image header ({one_line(exc)})") from exc
        try:
            sw, sh = im.size
            _check_size(label, sw, sh, max_pixels)
            fmt = im.format or "unknown"
            compact = _NOT_TRIED
            if decoder != "pillow":
                compact = _decode_compact(path, fmt, sw, sh, im.mode, im.info, required=decoder == "imagecodecs")
            pixels = compact.pixels
            if pixels is None:
                with _pillow_limits_lifted():
                    self._load(im, label, fmt, sw, sh)
            if pixels is not None and fmt == "PNG" and "exif" not in im.info:
                # Pillow would decode the whole PNG looking for a late eXIf chunk;
                # _decode_compact has checked that the file has none.
                orientation = 1
            else:
                orientation = self._exif_orientation(im, label)
            if pixels is not None:
                im.close()  # only its header was needed
        except BaseException:
            im.close()
            raise
        self._lock = threading.Lock()
        self._pixels: np.ndarray | None = pixels
        self._im: Any = None if pixels is not None else im
        self._convert = None if pixels is not None else self._make_converter(im, label)
        self._decoder = "imagecodecs" if pixels is not None else "pillow"
        self._full_decodes = 2 if compact.ran and pixels is None else 1
        super().__init__(name=path.name, path=path, stored_size=(sw, sh), orientation=orientation, fmt=fmt)

    @property
    def decoder(self) -> str:
        """What decoded the pixels: ``"imagecodecs"`` (8-bit RGB/gray JPEG and PNG, stored at
        3 bytes per pixel) or ``"pillow"``; the same as ``stats.decoder``."""
        return self._decoder

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            pixels, im = self._pixels, self._im
        if pixels is not None:
            mode, nbytes = ("RGB" if pixels.ndim == 3 else "L"), pixels.nbytes
        else:
            mode, nbytes = (None, 0) if im is None else (im.mode, None)
        return SourceStats(decoder=self._decoder, stored_mode=mode, decoded_bytes=nbytes, full_decodes=self._full_decodes)

    @staticmethod
    def _load(im: Any, label: str, fmt: str, sw: int, sh: int) -> None:
        try:
            im.load()
        except (OSError, ValueError, SyntaxError, EOFError) as exc:
            msg = one_line(exc)
            if "truncated" in msg:
                raise ImageReadError(f"{label}: the {fmt} file is truncated ({msg})") from exc
            raise ImageReadError(f"{label}: cannot decode {fmt} image ({msg})") from exc
        except MemoryError as exc:
            raise ImageReadError(f"{label}: not enough memory to decode the {sw}x{sh} image") from exc

    @staticmethod
    def _exif_orientation(im: Any, label: str) -> int:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = im.getexif().get(0x0112)
            for w in caught:
                log.warning("%s: %s", label, w.message)
        except Exception as exc:  # damaged EXIF must never stop the image from loading
            log.warning("%s: unreadable EXIF data (%s), treating the image as upright", label, one_line(exc))
            return 1
        if value is None:
            return 1
        return _checked_orientation(value, label)

    @staticmethod
    def _make_converter(im: Any, label: str) -> Callable[[Any], np.ndarray]:
        """A function turning a crop of ``im`` (same mode) into (h, w, 3) uint8 RGB."""
        mode = im.mode
        if mode == "RGB":
            return lambda c: np.asarray(c)
        if mode == "L":
            return lambda c: _gray_to_rgb(np.asarray(c))
        if mode == "1":
            return lambda c: _gray_to_rgb(np.asarray(c).astype(np.uint8) * np.uint8(255))
        if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
            premult = mode in ("RGBa", "La")

            def conv_alpha(c: Any) -> np.ndarray:
                if c.mode in ("LA", "La"):
                    a = np.asarray(c)
                    return _composite_white(_gray_to_rgb(a[..., 0]), a[..., 1], premultiplied=premult)
                if c.mode == "PA":
                    c = c.convert("RGBA")
                a = np.asarray(c)
                return _composite_white(a[..., :3], a[..., 3], premultiplied=premult)

            return conv_alpha
        if mode == "P":
            lut = _palette_lut(im)
            has_alpha = bool(np.any(lut[:, 3] < 255))

            def conv_p(c: Any) -> np.ndarray:
                px = lut[np.asarray(c)]
                if has_alpha:
                    return _composite_white(px[..., :3], px[..., 3])
                return px[..., :3]

            return conv_p
        if mode.startswith("I;16"):
            return lambda c: _gray_to_rgb(_scale_uint(np.asarray(c).astype(np.uint16, copy=False), 16))
        if mode in ("I", "F"):
            lo, hi = im.getextrema()
            if mode == "I":
                if lo >= 0 and hi <= 255:
                    lo, hi = 0, 255
                elif lo >= 0 and hi <= 65535:
                    lo, hi = 0, 65535
            elif lo >= 0 and hi <= 1:
                lo, hi = 0.0, 1.0
            elif lo >= 0 and hi <= 255:
                lo, hi = 0.0, 255.0
            lo_f, hi_f = float(lo), float(hi)
            return lambda c: _gray_to_rgb(_scale_range(np.asarray(c), lo_f, hi_f))
        # CMYK, YCbCr, LAB, HSV, RGBX ... : Pillow knows how to get RGB from these.
        return lambda c: np.asarray(c.convert("RGB"))

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        pixels = self._pixels
        if pixels is not None:  # read-only array: read() copies whatever it hands out
            win = pixels[y : y + h, x : x + w]
            return _gray_to_rgb(win) if win.ndim == 2 else win
        with self._lock:
            im = self._im
            if im is None:  # pragma: no cover - guarded by read()
                raise ImageReadError(f"{self._label}: the image source is closed")
            crop = im.crop((x, y, x + w, y + h))
        assert self._convert is not None
        out = self._convert(crop)
        if out.ndim != 3 or out.shape[2] != 3:  # pragma: no cover - defensive
            raise ImageReadError(f"{self._label}: unexpected pixel layout {out.shape} after conversion")
        return out

    def close(self) -> None:
        with self._lock:
            if self._im is not None:
                self._im.close()
                self._im = None
            self._pixels = None
        super().close()


_COMPACT_FORMATS = ("JPEG", "MPO", "PNG")


@dataclass(frozen=True, slots=True)
class _Compact:
    """What :func:`_decode_compact` did: the pixels, or why not, and whether imagecodecs ran."""

    pixels: np.ndarray | None
    why_not: str = ""
    ran: bool = False


_NOT_TRIED = _Compact(None, "not tried")


def _declined(label: str, why_not: str, *, required: bool, ran: bool = False) -> _Compact:
    if required:
        raise ImageReadError(f"{label}: decoder='imagecodecs' cannot decode this image ({why_not}); use decoder='auto' or 'pillow'")
    return _Compact(None, why_not, ran)


def _decode_compact(
    path: Path, fmt: str, width: int, height: int, mode: str, info: dict[str, Any], *, required: bool
) -> _Compact:
    """The JPEG/PNG at ``path`` decoded by imagecodecs (libjpeg-turbo, libpng), or why not.

    The pixels are a read-only (h, w, 3) or (h, w) uint8 array: 3 bytes per pixel, where Pillow
    keeps 4. No pixels means "let Pillow do it": not an 8-bit RGB or gray JPEG or PNG,
    imagecodecs missing, a JPEG whose last scan is not followed by an end-of-image marker
    (libjpeg-turbo would silently fill a truncated image with grey, while Pillow reports it), a
    PNG with an eXIf chunk after its pixels (only Pillow's full load finds it), a decoding error
    (Pillow then says what is wrong), or an unexpected shape or dtype (e.g. 16-bit PNG).
    ``required`` (``decoder="imagecodecs"``) turns each of these into an error instead.
    """
    label = str(path)
    if fmt not in _COMPACT_FORMATS or mode not in ("RGB", "L"):
        return _declined(label, f"it decodes 8-bit RGB and gray JPEG and PNG only; this is a {fmt} image in mode {mode}", required=required)
    try:
        import imagecodecs
    except ImportError:
        if required:
            raise MissingDependencyError(f"Decoding {label} with decoder='imagecodecs'", "imagecodecs", "tiff") from None
        return _Compact(None, "imagecodecs is not installed")
    try:
        data = path.read_bytes()
    except OSError as exc:
        return _declined(label, f"cannot read the file: {one_line(exc)}", required=required)
    if fmt == "PNG":
        if "exif" not in info and b"eXIf" in data:
            return _declined(label, "the PNG has an eXIf chunk after its pixels", required=required)
        decode = imagecodecs.png_decode
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
        return _declined(label, f"imagecodecs: {one_line(exc)}", required=required, ran=True)
    del data
    want = (height, width, 3) if mode == "RGB" else (height, width)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape != want:
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        return _declined(label, f"imagecodecs gave {got} pixels, not uint8 {want}", required=required, ran=True)
    arr.flags.writeable = False
    return _Compact(arr, ran=True)


def _palette_lut(im: Any) -> np.ndarray:
    """(256, 4) uint8 RGBA table of a palette image, transparency included."""
    pal_mode = getattr(im.palette, "mode", "RGB") if im.palette is not None else "RGB"
    channels = 4 if pal_mode == "RGBA" else 3
    raw = im.getpalette("RGBA" if channels == 4 else "RGB") or []
    lut = np.zeros((256, 4), np.uint8)
    lut[:, 3] = 255
    pal = np.asarray(raw, np.uint8).reshape(-1, channels)[:256]
    lut[: len(pal), :channels] = pal
    trans = im.info.get("transparency")
    if isinstance(trans, int) and 0 <= trans < 256:
        lut[trans, 3] = 0
    elif isinstance(trans, (bytes, bytearray)):
        t = np.frombuffer(bytes(trans), np.uint8)[:256]
        lut[: len(t), 3] = t
    return lut


# --------------------------------------------------------------------------------------------
# TIFF / BigTIFF
# --------------------------------------------------------------------------------------------
class TiffSource(ImageSource):
    """Page 0 of a TIFF/BigTIFF, read segment by segment through tifffile.

    A window decodes only the TIFF tiles (tiled files) or strips (striped files) it overlaps.
    Decoded segments, converted to RGB uint8, are kept in an LRU cache of at most
    ``cache_bytes`` bytes so the overlap of neighbouring windows is decoded once.
    """

    def __init__(self, path: Path, *, max_pixels: int | None, cache_bytes: int = DEFAULT_TIFF_CACHE_BYTES) -> None:
        import tifffile

        label = str(path)
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise ImageReadError(f"{label}: cannot read TIFF ({one_line(exc)})") from exc
        try:
            if len(tif.pages) == 0:
                raise ImageReadError(f"{label}: the TIFF has no pages")
            page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
            sw, sh = int(page.imagewidth), int(page.imagelength)
            _check_size(label, sw, sh, max_pixels)
            self._setup_layout(page, label)
            self._setup_colour(page, label)
            orient_tag = page.tags.get("Orientation")
            orientation = 1 if orient_tag is None else _checked_orientation(orient_tag.value, label)
        except BaseException:
            tif.close()
            raise
        self._tif: Any = tif
        self._page: Any = page
        self._fh = tif.filehandle
        self._lock = threading.Lock()
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._cache_limit = max(0, int(cache_bytes))
        self._segments_decoded = 0
        self._cache_hits = 0
        super().__init__(name=path.name, path=path, stored_size=(sw, sh), orientation=orientation, fmt="TIFF")

    @property
    def segments_decoded(self) -> int:
        """Number of segments decoded so far; the same as ``stats.segments_decoded``."""
        return self._segments_decoded

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            return SourceStats(
                decoder="tifffile",
                segments_decoded=self._segments_decoded,
                cache_hits=self._cache_hits,
                cached_segments=len(self._cache),
                cache_bytes=self._cache_bytes,
            )

    # -- layout -------------------------------------------------------------------------------
    def _setup_layout(self, page: Any, label: str) -> None:
        import tifffile

        if getattr(page, "imagedepth", 1) > 1 or getattr(page, "tiledepth", 1) > 1:
            raise ImageReadError(f"{label}: volumetric TIFF (image depth > 1) is not supported")
        comp_name = getattr(page.compression, "name", page.compression)
        try:
            tifffile.TIFF.DECOMPRESSORS[page.compression]
        except KeyError as exc:
            if "imagecodecs" in str(exc):
                raise MissingDependencyError(
                    f"Reading {label} ({comp_name}-compressed TIFF)", "imagecodecs", "tiff"
                ) from None
            raise ImageReadError(f"{label}: unsupported TIFF compression {comp_name}") from None
        self._samples = int(page.samplesperpixel)
        self._separate = int(page.planarconfig) == 2 and self._samples > 1
        sw, sh = int(page.imagewidth), int(page.imagelength)
        if page.is_tiled:
            self._seg_w, self._seg_h = int(page.tilewidth), int(page.tilelength)
        else:
            rps = int(page.rowsperstrip) if page.rowsperstrip else sh
            self._seg_w, self._seg_h = sw, max(1, min(rps, sh))
        self._segs_across = -(-sw // self._seg_w)
        self._segs_down = -(-sh // self._seg_h)
        per_plane = self._segs_across * self._segs_down
        self._segs_per_plane = per_plane
        expected = per_plane * (self._samples if self._separate else 1)
        if len(page.dataoffsets) < expected:
            raise ImageReadError(
                f"{label}: the TIFF lists {len(page.dataoffsets)} data segments, {expected} are needed"
            )

    def _setup_colour(self, page: Any, label: str) -> None:
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        photometric = int(page.photometric)
        bits = int(page.bitspersample)
        s = self._samples
        extras = [int(e) for e in (page.extrasamples or ())]
        self._dtype = dtype
        if dtype is None or not (dtype == np.bool_ or dtype.kind in "uf"):
            raise ImageReadError(f"{label}: unsupported TIFF sample type {dtype} ({bits} bits)")
        if photometric not in (0, 1, 2, 3, 6):
            name = getattr(page.photometric, "name", photometric)
            raise ImageReadError(f"{label}: unsupported TIFF photometric interpretation {name}")
        if photometric == 6 and int(page.compression) not in (6, 7):
            raise ImageReadError(f"{label}: uncompressed YCbCr TIFF is not supported")
        colour = photometric in (2, 6)
        ncolor = 3 if colour else 1
        if s < ncolor:
            raise ImageReadError(f"{label}: TIFF has {s} samples per pixel, too few for its colour model")
        # Alpha: the first extra sample, if it is marked as (associated or unassociated) alpha.
        alpha_idx = None
        premult = False
        if s > ncolor and extras and extras[0] in (1, 2):
            alpha_idx = ncolor
            premult = extras[0] == 1
        self._photometric = photometric
        self._ncolor = ncolor
        self._alpha_idx = alpha_idx
        self._premult = premult
        self._bits = bits
        self._colormap = None
        if photometric == 3:
            cmap = page.colormap
            if cmap is None:
                raise ImageReadError(f"{label}: palette TIFF without a colour map")
            cmap = np.asarray(cmap)
            if cmap.dtype != np.uint8:
                cmap = _scale_uint(cmap, 16)
            self._colormap = np.ascontiguousarray(cmap.T)  # (n, 3)

    # -- decoding -------------------------------------------------------------------------------
    def _to_rgb8(self, seg: np.ndarray) -> np.ndarray:
        """Decoded segment samples (h, w, S) in the file's dtype -> (h, w, 3) uint8 RGB."""
        dt = seg.dtype
        if dt == np.bool_:
            v = seg.astype(np.uint8) * np.uint8(255)
        elif dt.kind == "f":
            v = _scale_range(np.clip(seg, 0.0, 1.0), 0.0, 1.0)
        elif self._photometric == 3:
            v = seg  # palette indices, looked up below
        else:
            bits = self._bits if self._bits <= dt.itemsize * 8 else dt.itemsize * 8
            v = _scale_uint(seg, bits)
        if self._photometric == 3:
            idx = np.minimum(v[..., 0].astype(np.intp), len(self._colormap) - 1)
            return self._colormap[idx]
        if self._ncolor == 1:
            g = v[..., 0]
            if self._photometric == 0:  # min-is-white
                g = 255 - g
            rgb = _gray_to_rgb(g)
        else:
            rgb = v[..., :3]
        if self._alpha_idx is not None:
            return _composite_white(rgb, v[..., self._alpha_idx], premultiplied=self._premult)
        return np.ascontiguousarray(rgb)

    def _decode_raw(self, index: int) -> np.ndarray:
        """Decode data segment ``index`` to (h, w, samples_in_segment) in the file's dtype."""
        page = self._page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count > 0:
            self._fh.seek(offset)
            data = self._fh.read(count)
            if len(data) != count:
                raise ImageReadError(f"{self._label}: the TIFF is truncated (segment {index} is incomplete)")
        else:
            data = None
        try:
            arr, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
        except ImageReadError:
            raise
        except Exception as exc:
            raise ImageReadError(f"{self._label}: cannot decode TIFF segment {index} ({one_line(exc)})") from exc
        if arr is None:
            raise ImageReadError(f"{self._label}: TIFF segment {index} is empty")
        arr = np.asarray(arr)
        # tifffile gives (planes, depth, length, width, samples) or without the first axis.
        return arr.reshape(arr.shape[-3:])

    def _segment(self, r: int, c: int) -> np.ndarray:
        """RGB uint8 pixels of segment row ``r`` column ``c`` (cached; caller holds the lock)."""
        key = r * self._segs_across + c
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            self._cache_hits += 1
            return hit
        if self._separate:
            planes = [self._decode_raw(s * self._segs_per_plane + key)[..., 0] for s in range(self._samples)]
            raw = np.stack(planes, axis=-1)
            self._segments_decoded += self._samples
        else:
            raw = self._decode_raw(key)
            self._segments_decoded += 1
        rgb = self._to_rgb8(raw)
        nbytes = rgb.nbytes
        if nbytes <= self._cache_limit:
            self._cache[key] = rgb
            self._cache_bytes += nbytes
            while self._cache_bytes > self._cache_limit:
                _, old = self._cache.popitem(last=False)
                self._cache_bytes -= old.nbytes
        return rgb

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.empty((h, w, 3), np.uint8)
        sw_, sh_ = self._seg_w, self._seg_h
        c0, c1 = x // sw_, (x + w - 1) // sw_
        r0, r1 = y // sh_, (y + h - 1) // sh_
        with self._lock:
            if self._page is None:  # pragma: no cover - guarded by read()
                raise ImageReadError(f"{self._label}: the image source is closed")
            for r in range(r0, r1 + 1):
                for c in range(c0, c1 + 1):
                    seg = self._segment(r, c)
                    gy0, gx0 = r * sh_, c * sw_  # segment origin in the image
                    ya, yb = max(y, gy0), min(y + h, gy0 + sh_, gy0 + seg.shape[0])
                    xa, xb = max(x, gx0), min(x + w, gx0 + sw_, gx0 + seg.shape[1])
                    if ya >= yb or xa >= xb:
                        raise ImageReadError(f"{self._label}: TIFF segment {r},{c} is smaller than its declared size")
                    out[ya - y : yb - y, xa - x : xb - x] = seg[ya - gy0 : yb - gy0, xa - gx0 : xb - gx0]
        return out

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:  # pragma: no cover
            return
        with lock:
            if self._page is not None:
                self._tif.close()
                self._page = None
                self._cache.clear()
                self._cache_bytes = 0
        super().close()


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------
def open_image(
    source: str | os.PathLike[str] | np.ndarray,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    tiff_cache_bytes: int = DEFAULT_TIFF_CACHE_BYTES,
    decoder: Decoder = "auto",
) -> ImageSource:
    """Open ``source`` for windowed reading of its upright RGB pixels.

    ``source`` is a path (format sniffed from the file's first bytes, not its extension) or an
    ``HxWx3`` uint8 RGB array (``HxW`` gray and ``HxWx4`` RGBA are accepted too). Pillow
    formats are decoded here, once; TIFF/BigTIFF only has its header read here.

    ``max_pixels`` caps ``width * height`` of files (None: no cap); it replaces Pillow's
    decompression-bomb limit for this call only. ``tiff_cache_bytes`` bounds the decoded-segment
    cache of a TIFF source. ``decoder`` (see :data:`Decoder`) picks the whole-image decoder of
    JPEG, PNG, WebP ... files: ``"auto"`` (imagecodecs for 8-bit RGB and gray JPEG and PNG,
    Pillow for the rest), ``"imagecodecs"`` (an error for a file it cannot decode) or
    ``"pillow"``. TIFF/BigTIFF is always read through tifffile, and arrays are not decoded; the
    source's :attr:`~ImageSource.stats` says what ran.

    Raises :class:`~densedet_tile.errors.ImageReadError` (one line naming the file) for a missing
    file, a directory, an empty, unreadable, truncated or unknown-format file, a zero-size image,
    one over ``max_pixels`` or one ``decoder="imagecodecs"`` cannot decode; :class:`~densedet_tile.errors.InvalidInputError` for a bad array
    or option; :class:`~densedet_tile.errors.MissingDependencyError` for a TIFF compression (or
    ``decoder="imagecodecs"``) that needs the ``imagecodecs`` package.
    """
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0):
        raise InvalidInputError(f"max_pixels must be a positive integer or None, got {max_pixels!r}")
    if not isinstance(decoder, str) or decoder not in DECODERS:
        raise InvalidInputError(f"decoder must be one of {', '.join(DECODERS)}; got {decoder!r}")
    if isinstance(source, np.ndarray):
        return ArraySource(source)
    if not isinstance(source, (str, os.PathLike)):
        raise InvalidInputError(
            f"image source must be a file path or a numpy array, got {type(source).__name__}"
        )
    path = Path(os.fspath(source))
    label = str(path)
    try:
        if path.is_dir():
            raise ImageReadError(f"{label}: is a directory, not an image file")
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
    if head[:4] in _TIFF_MAGICS:
        return TiffSource(path, max_pixels=max_pixels, cache_bytes=tiff_cache_bytes)
    return PillowSource(path, max_pixels=max_pixels, decoder=decoder)
