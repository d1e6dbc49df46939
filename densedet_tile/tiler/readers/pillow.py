"""JPEG, PNG, WebP, BMP, GIF ... files: decoded whole, once, at open; windows converted on demand.

8-bit RGB and gray JPEG and PNG and still WebP go to imagecodecs (:mod:`.compact`, 3 bytes per
pixel, 4 for WebP with alpha) unless ``decoder="pillow"``; everything else stays in Pillow's own
buffer in its native mode, and each window is cropped, converted to RGB (:mod:`.colour`) and
turned upright on its own.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from ...errors import ImageReadError, one_line
from .base import ImageSource, SourceStats, check_size
from .colour import pillow_converter, stored_8bit, uint8_to_rgb
from .compact import NOT_TRIED, _arithmetic, check_jpeg_whole, decode_compact, fill_corner, png_rows_missing
from .orientation import exif_orientation

__all__ = ["Decoder", "DECODERS", "PillowSource", "open_header", "load_pixels", "check_png_rows"]

log = logging.getLogger(__name__)

#: Which decoder :func:`open_image` uses for the formats it decodes whole (JPEG, PNG, WebP ...):
#: ``"auto"`` imagecodecs for 8-bit RGB and gray JPEG and PNG and still WebP, Pillow for
#: everything else; ``"imagecodecs"`` imagecodecs or an error; ``"pillow"`` Pillow always.
Decoder = Literal["auto", "imagecodecs", "pillow"]
DECODERS: tuple[str, ...] = ("auto", "imagecodecs", "pillow")

#: Pillow's pixel limit is process-wide. A few format plugins (WebP) check it themselves while
#: reading the header; for those alone it is lifted around that read, under this lock.
_PIL_LIMIT_LOCK = threading.Lock()
#: Pixels a window needing a colour conversion is converted at a time (:meth:`PillowSource._read_stored`).
_CONVERT_CHUNK_PIXELS = 1 << 20


#: Formats whose first bytes say what they are beyond doubt: a file that starts like one and
#: whose header cannot be read is that format, cut short or damaged, not an unknown one.
_STRICT_MAGIC = frozenset({"JPEG", "MPO", "PNG", "WEBP", "GIF", "TIFF", "AVIF"})

#: The Pillow formats a file is ever opened as (Pillow's plugin names; MPO comes in through the
#: JPEG plugin, HEIF through pillow-heif's). Pillow's other plugins are never asked: some hand
#: the file to another program (EPS to Ghostscript: an upload named ``photo.jpg`` that holds
#: PostScript was run through ``gs``, an outside review), and none of them is a photo format.
READABLE_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "AVIF", "BMP", "GIF", "TIFF", "HEIF"})


def _riff_short(path: Path) -> tuple[int, int] | None:
    """(bytes announced, bytes there) for a WebP file shorter than its RIFF header says, else None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            size = os.fstat(fh.fileno()).st_size
    except OSError:
        return None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    announced = struct.unpack("<I", head[4:8])[0] + 8
    return (announced, size) if size < announced else None


def open_header(path: str | os.PathLike[str]) -> Any:
    """``PIL.Image.open(path)`` (the header only) without Pillow's decompression-bomb check: the
    engine's ``max_pixels`` replaces it (panoramas are far over Pillow's limit). Pillow's limit
    (``Image.MAX_IMAGE_PIXELS``) is process-wide, and a program may rely on it for its own
    files: Pillow checks it in ``Image.open`` after the format plugin has read the header, so
    this calls the plugins the same way (those Pillow loads first, then all) and leaves the
    check out, changing nothing (only the plugins of :data:`READABLE_FORMATS` are asked). Only
    a plugin that checks the limit itself (WebP) gets it lifted around its header read, under a
    lock (as the whole reader did before).
    Raises ``PIL.UnidentifiedImageError`` as ``Image.open`` does, with ``broken_format`` set
    to the format when the file starts as one of :data:`_STRICT_MAGIC` (else None)."""
    from PIL import Image, UnidentifiedImageError

    fp = open(path, "rb")
    try:
        prefix = fp.read(16)
        tried: set[str] = set()
        broken: str | None = None
        for register in (Image.preinit, Image.init):
            register()
            for fmt in list(Image.ID):
                if fmt in tried or fmt not in READABLE_FORMATS:
                    continue
                tried.add(fmt)
                factory, accept = Image.OPEN[fmt]
                try:
                    fits = accept(prefix) if accept else True
                    if not fits or isinstance(fits, str):  # a string: why it does not fit
                        continue
                    fp.seek(0)
                    try:
                        im = factory(fp, os.fspath(path))
                    except Image.DecompressionBombError:
                        with _PIL_LIMIT_LOCK:
                            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
                            try:
                                fp.seek(0)
                                im = factory(fp, os.fspath(path))
                            finally:
                                Image.MAX_IMAGE_PIXELS = saved
                except (SyntaxError, IndexError, TypeError, struct.error):
                    # not this format after all (a prefix too short for it...), as Image.open goes on;
                    # a file that starts as one of the common formats and breaks off is kept in mind
                    if fmt in _STRICT_MAGIC and broken is None:
                        broken = fmt
                    continue
                im._exclusive_fp = True  # closing the image closes the file, as Image.open's do
                return im
        unknown = UnidentifiedImageError(f"cannot identify image file {os.fspath(path)!r}")
        unknown.broken_format = broken  # type: ignore[attr-defined]  # (see _STRICT_MAGIC)
        raise unknown
    except BaseException:
        fp.close()
        raise


#: What a header read can raise for a file it cannot read (a Warning: Pillow's, about a damaged
#: EXIF block, raised where warnings are errors).
_HEADER_ERRORS = (OSError, ValueError, SyntaxError, Warning)


#: A Huffman-coded JPEG spends at least one bit on every 8x8 block of every component (its DC
#: code), so at least one byte per 512 pixels even for a blank grey image; a file with under an
#: eighth of that cannot hold the image its header claims.
_JPEG_MIN_BYTES_PER_PIXEL = 1 / 4096


def _check_jpeg_data(path: Path, label: str, width: int, height: int) -> None:
    """Refuse a JPEG whose header claims far more pixels than its data can hold (a damaged
    size field, or a decompression bomb): Pillow would fill the rest with grey, in gigabytes."""
    try:
        size = path.stat().st_size
    except OSError:
        return
    if size >= width * height * _JPEG_MIN_BYTES_PER_PIXEL:
        return
    with open(path, "rb") as fh:
        head = fh.read(1 << 18)
    if _arithmetic(head):  # (arithmetic coding can code a blank block in less)
        return
    raise ImageReadError(f"{label}: the JPEG header says {width}x{height} pixels but the file holds only {size} "
                         "bytes, far too few for that: a damaged header or a truncated file")


#: Formats whose Pillow image object keeps its codec's decoder after loading, and with it the
#: decoder's own copies of the image (WebP: libwebp's animation decoder holds the canvas and
#: the previous frame, two more RGBA copies; AVIF: the decoded YUV planes). Of these only a
#: plain copy of the loaded pixels is kept, and the file's image object is let go.
_KEEPS_ITS_DECODER = ("WEBP", "AVIF")


def _pixels_only(im: Any, label: str) -> Any:
    """A plain Pillow image of ``im``'s loaded pixels; ``im`` is closed. The copy is made
    while the decoder's buffers still exist, yet stays within a WebP load's own peak (which
    held libwebp's two canvases and Pillow's frame bytes); an AVIF's peak grows a little (a
    16000x3000 WebP: 550 MiB held after loading, 186 MiB with the copy, same peak)."""
    try:
        return im.copy()
    except MemoryError as exc:
        raise ImageReadError(f"{label}: not enough memory to decode the {im.size[0]}x{im.size[1]} image") from exc
    finally:
        im.close()


def _is_heif(path: Path) -> bool:
    """Whether the file is HEIC/HEIF (an iPhone's photos): an ISO box ``ftyp`` of a HEIF brand."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return False
    if b"avif" in head[8:64]:  # AVIF shares HEIF's container and its "mif1" brand
        return False
    return head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                                                   b"msf1")


def _heif_plugin() -> bool:
    """Register the pillow-heif plugin when it is installed; whether Pillow can read HEIF now."""
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def _unknown_format(path: Path, heif: bool) -> str:
    if heif:
        return (f"{path}: a HEIC/HEIF photo, which this install cannot decode: pip install pillow-heif, or save "
                "the photos as JPEG (on an iPhone: Settings > Camera > Formats > Most Compatible)")
    return f"{path}: unknown or unsupported image format"


def _warn_other_frames(im: Any, label: str, fmt: str) -> None:
    """One warning line for an animation (GIF, WebP, APNG...): only its first frame is read, as
    only the first page of a multi-page TIFF is. An MPO (a camera's JPEG with a second, smaller
    picture inside) is left alone: its first picture is the photo."""
    if fmt == "MPO":
        return
    try:
        frames = int(getattr(im, "n_frames", 1))
    except Exception:  # a damaged later frame: the first one still decides
        return
    if frames > 1:
        log.warning("%s: the %s is animated, with %d frames; only the first frame is read", label, fmt, frames)


def check_png_rows(im: Any, read_file: Callable[[], bytes], label: str) -> None:
    """Refuse a PNG whose pixel data ends before its last row although the file ends properly:
    Pillow decodes it without a word, the missing rows left at 0. Only a last row of one value
    (all a short stream can leave) sends the file's data (``read_file()``, which may raise
    ``OSError``; no bytes: nothing to check) through the check."""
    w, h = im.size
    last = np.asarray(im.crop((0, h - 1, w, h)))
    if last.size and (last == last.reshape(-1)[0]).all():
        try:
            short = png_rows_missing(read_file())
        except OSError:
            return
        if short:
            raise ImageReadError(f"{label}: the PNG is truncated: its pixel data ends before the last row")


def _same_rows(a: Any, b: Any) -> bool:
    """Whether two Pillow images of one mode and size hold the same pixels, compared a band of
    rows at a time from the bottom up (where a short file's differ): no whole-image copy. The
    bands are a quarter megapixel, which stay in the CPU's cache: bands of a megapixel made
    the comparison of a 48 MP image several times slower."""
    if a.mode != b.mode or a.size != b.size:
        return False
    w, h = a.size
    rows = max(1, (1 << 18) // max(1, w))
    for stop in range(h, 0, -rows):
        box = (0, max(0, stop - rows), w, stop)
        if a.crop(box).tobytes() != b.crop(box).tobytes():
            return False
    return True


def _decodes_to(im: Any) -> Callable[[bytes], bool]:
    """A ``matches`` for :func:`~.compact.check_jpeg_whole`: whether Pillow decodes the JPEG
    bytes to the pixels of ``im`` (no pixel limit: the engine's ``max_pixels`` has been
    checked); the decoded image is closed before it returns."""
    import io

    from PIL import JpegImagePlugin

    def matches(jpeg: bytes) -> bool:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(jpeg)) as again:
            again.load()
            return _same_rows(again, im)

    return matches


def check_jpeg_rows(im: Any, read_file: Callable[[], bytes], label: str) -> int:
    """Refuse a JPEG (or MPO) file that Pillow has decoded to ``im`` whose coded data stops
    before its last block though the file ends properly (an end marker after data cut short, a
    stray marker inside the data): libjpeg fills the rest with grey without a word. Only a
    bottom-right corner of that grey (:func:`~.compact.fill_corner`) sends the file's data
    (``read_file()``, which may raise ``OSError``; no bytes: nothing to check) through the
    check. Left out where the program set ``ImageFile.LOAD_TRUNCATED_IMAGES``: it asked for
    short files padded. Returns the whole-size decodes the check ran (for ``stats``); ``im``
    is compared with them band by band, not copied."""
    from PIL import ImageFile

    w, h = im.size
    if ImageFile.LOAD_TRUNCATED_IMAGES or not fill_corner(np.asarray(im.crop((max(0, w - 2), max(0, h - 2), w, h)))):
        return 0
    try:
        data = read_file()
    except OSError:
        return 0
    return check_jpeg_whole(data, w, h, _decodes_to(im), label) if data else 0


def load_pixels(im: Any, label: str, fmt: str, sw: int, sh: int) -> None:
    """``im.load()``, its failures said as :class:`~densedet_tile.errors.ImageReadError` naming
    ``label``: a truncated file as truncated, Pillow's other complaints as a file it cannot
    decode, and a PIL image closed before it was handed in as Pillow says it."""
    try:
        im.load()
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        msg = one_line(exc)
        if "truncated" in msg:
            raise ImageReadError(f"{label}: the {fmt} file is truncated ({msg})") from exc
        if isinstance(exc, ValueError) and "closed" in msg:  # "Operation on closed image": not a decoding fault
            raise ImageReadError(f"{label}: {msg}") from None
        raise ImageReadError(f"{label}: cannot decode {fmt} image ({msg})") from exc
    except MemoryError as exc:
        raise ImageReadError(f"{label}: not enough memory to decode the {sw}x{sh} image") from exc
    except Exception as exc:  # any other fault of a plugin: still a file it cannot decode, named
        raise ImageReadError(f"{label}: cannot decode {fmt} image ({type(exc).__name__}: {one_line(exc)})") from exc


def check_pil_size(im: Any, label: str, max_pixels: int | None) -> None:
    """:func:`~densedet_tile.tiler.readers.base.check_size` of a Pillow image (opened, not yet
    decoded); one refused is said at its upright size, its EXIF orientation read from the header
    for that alone (an outside review: 768x1024 refused, 1024x768 everywhere else)."""
    w, h = int(im.size[0]), int(im.size[1])
    big = max_pixels is not None and w * h > max_pixels
    check_size(label, w, h, max_pixels, turned=big and exif_orientation(im, label) >= 5)


class PillowSource(ImageSource):
    """A JPEG/PNG/WebP/BMP/GIF... decoded once by Pillow; windows converted on demand.

    ``decoder`` (see :data:`Decoder`) picks imagecodecs or Pillow for the whole-image decode.
    """

    def __init__(self, path: Path, *, max_pixels: int | None, decoder: Decoder = "auto") -> None:
        from PIL import UnidentifiedImageError

        label = str(path)
        try:
            im = open_header(path)
        except UnidentifiedImageError as exc:
            broken = getattr(exc, "broken_format", None)
            heif = _is_heif(path)
            if broken is not None and not (broken == "AVIF" and heif):  # (HEIF shares AVIF's "mif1" brand)
                # (libavif checks the whole container, its pixel data's extent included, on opening)
                where = "" if broken == "AVIF" else " inside its header"
                raise ImageReadError(f"{label}: the {broken} file breaks off or is damaged{where} "
                                     "(the file is cut short?)") from None
            if not (heif and _heif_plugin()):
                raise ImageReadError(_unknown_format(path, heif)) from None
            try:
                im = open_header(path)
            except _HEADER_ERRORS as exc:
                raise ImageReadError(f"{label}: cannot read image header ({one_line(exc)})") from exc
        except _HEADER_ERRORS as exc:
            short = _riff_short(path)
            if short is not None:  # (libwebp says only "could not create decoder object")
                raise ImageReadError(f"{label}: the WebP file is truncated: its header announces {short[0]} bytes, "
                                     f"the file has {short[1]}") from None
            raise ImageReadError(f"{label}: cannot read image header ({one_line(exc)})") from exc
        except Exception as exc:  # any other fault of a plugin reading the header
            raise ImageReadError(f"{label}: cannot read image header ({type(exc).__name__}: {one_line(exc)})") from exc
        try:
            sw, sh = im.size
            check_pil_size(im, label, max_pixels)
            fmt = im.format or "unknown"
            _warn_other_frames(im, label, fmt)
            if fmt == "JPEG":
                _check_jpeg_data(path, label, sw, sh)
            compact, checked = NOT_TRIED, 0
            if decoder != "pillow":
                compact = decode_compact(path, fmt, sw, sh, im.mode, im.info, required=decoder == "imagecodecs")
            pixels = compact.pixels
            eight_bit = stored_8bit(im)  # (asked before loading: the tiles that say it go then)
            if pixels is None:
                load_pixels(im, label, fmt, sw, sh)
                if fmt == "PNG":
                    check_png_rows(im, path.read_bytes, label)
                elif fmt in ("JPEG", "MPO"):
                    checked = check_jpeg_rows(im, path.read_bytes, label)
            # from the header's chunks and segments (a PNG's eXIf after its pixels: Pillow's decode
            # above has read it; decode_compact declines such files), without decoding again
            orientation = exif_orientation(im, label)
            if pixels is not None:
                im.close()  # only its header was needed
            elif fmt in _KEEPS_ITS_DECODER:
                im = _pixels_only(im, label)
        except BaseException:
            im.close()
            raise
        self._lock = threading.Lock()
        self._pixels: np.ndarray | None = pixels
        self._im: Any = None if pixels is not None else im
        self._convert = None if pixels is not None else pillow_converter(im, eight_bit=eight_bit)
        self._decoder = "imagecodecs" if pixels is not None else "pillow"
        # (and the decodes that checked a JPEG's data: they took as long as the one read)
        self._full_decodes = compact.decodes + (1 if pixels is None else 0) + checked
        super().__init__(name=path.name, path=path, stored_size=(sw, sh), orientation=orientation, fmt=fmt)

    @property
    def decoder(self) -> str:
        """What decoded the pixels: ``"imagecodecs"`` (8-bit RGB/gray JPEG and PNG and still
        WebP, stored at 3 bytes per pixel, 4 for WebP with alpha) or ``"pillow"``; the same as
        ``stats.decoder``."""
        return self._decoder

    @property
    def stats(self) -> SourceStats:
        with self._lock:
            pixels, im = self._pixels, self._im
        if pixels is not None:
            mode, nbytes = ("L" if pixels.ndim == 2 else "RGBA" if pixels.shape[2] == 4 else "RGB"), pixels.nbytes
        else:
            mode, nbytes = (None, 0) if im is None else (im.mode, None)
        return SourceStats(decoder=self._decoder, stored_mode=mode, decoded_bytes=nbytes, full_decodes=self._full_decodes)

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        pixels = self._pixels
        im = self._im
        plain = (pixels.ndim == 3 and pixels.shape[2] == 3) if pixels is not None else (im is not None and im.mode == "RGB")
        rows = max(1, _CONVERT_CHUNK_PIXELS // max(1, w))
        if not plain and h > rows:
            # a colour conversion (alpha over white, 16 bits, a palette) makes temporaries several
            # times the size of what it converts: a band of a preview of a transparent
            # panorama reached ten times its 32 MiB budget, so big windows go a band at a time
            out = np.empty((h, w, 3), np.uint8)
            for r in range(0, h, rows):
                out[r : r + rows] = self._read_stored(x, y + r, w, min(rows, h - r))
            return out
        if pixels is not None:  # read-only array: read() copies whatever it hands out
            win = pixels[y : y + h, x : x + w]
            return uint8_to_rgb(win)
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
