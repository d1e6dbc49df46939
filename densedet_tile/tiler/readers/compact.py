"""Whole-image decoding of 8-bit RGB and gray JPEG and PNG, and of still WebP, by imagecodecs.

imagecodecs (libjpeg-turbo, libpng, libwebp) decodes straight into a numpy array with the same
pixels as Pillow's decoders, 3 bytes per RGB pixel (4 for a WebP with alpha), where Pillow
would keep 4 bytes per RGB pixel (and, for WebP, libwebp's animation decoder with two more
canvases of the image for as long as its image object lives). :func:`decode_compact` says why
when it declines, so Pillow can take over (``decoder="auto"``) or the caller can be told
(``decoder="imagecodecs"``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...errors import ImageReadError, MissingDependencyError, one_line
from .colour import png_bit_depth, scale_uint
from .orientation import PNG_ORIENTATION_TEXT

__all__ = ["COMPACT_FORMATS", "Compact", "NOT_TRIED", "decode_compact", "png_rows_missing", "png_bit_depth",
           "fill_corner", "check_jpeg_whole"]

log = logging.getLogger(__name__)

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
    ``why_not``: the reason there are none; ``ran``: whether imagecodecs decoded the file at all;
    ``decodes``: how many times it decoded the whole image (a JPEG checked for missing data is
    decoded again).
    """

    pixels: np.ndarray | None
    why_not: str = ""
    ran: bool = False
    decodes: int = 0


#: The outcome when imagecodecs is not asked (``decoder="pillow"``).
NOT_TRIED = Compact(None, "not tried")


def _declined(label: str, why_not: str, *, required: bool, ran: bool = False) -> Compact:
    if required:
        raise ImageReadError(
            f"{label}: decoder='imagecodecs' cannot decode this image ({why_not}); use decoder='auto' or 'pillow'"
        )
    return Compact(None, why_not, ran, decodes=int(ran))


#: Samples per pixel of each PNG colour type (grey, RGB, palette, grey + alpha, RGBA).
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
#: The seven passes of Adam7 interlacing: (x0, y0, dx, dy).
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


#: Most bytes :func:`png_rows_missing` inflates at a time.
_INFLATE_STEP = 1 << 24


def png_rows_missing(data: bytes) -> bool:
    """Whether the pixel stream of the PNG ``data`` inflates to fewer bytes than the rows its
    header announces need (any colour type, bit depth and interlacing): the image data ends
    before the last row. False when that cannot be told (an unparsable header)."""
    import zlib

    if len(data) < 33 or data[12:16] != b"IHDR":
        return False
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    depth, colour, interlace = data[24], data[25], data[28]
    if colour not in _PNG_CHANNELS or depth not in (1, 2, 4, 8, 16) or interlace not in (0, 1):
        return False
    bits = _PNG_CHANNELS[colour] * depth

    def stream(w: int, h: int) -> int:  # bytes of h rows of w pixels, each row led by its filter byte
        return h * (1 + (w * bits + 7) // 8) if w and h else 0

    if interlace:
        need = sum(stream((width - x0 + dx - 1) // dx if width > x0 else 0, (height - y0 + dy - 1) // dy if height > y0 else 0)
                   for x0, y0, dx, dy in _ADAM7)
    else:
        need = stream(width, height)
    pos, inflate, got = 8, zlib.decompressobj(), 0

    def take(chunk: bytes) -> None:
        # at most _INFLATE_STEP bytes at a time, each let go at once: the limit of one call was
        # the whole rest of the stream, and a 15000 x 15000 16-bit RGBA PNG of 1.7 MB (zeros) was
        # inflated into one 1.8 GB buffer for this check (an outside review)
        nonlocal got
        cap = min(need - got, _INFLATE_STEP)
        n = len(inflate.decompress(chunk, cap))
        got += n
        # more input left, or the output stopped at the cap (zlib may hold output of input it took)
        while got < need and (inflate.unconsumed_tail or n == cap):
            tail = inflate.unconsumed_tail
            cap = min(need - got, _INFLATE_STEP)
            n = len(inflate.decompress(tail, cap))
            got += n
            if n == 0 and len(inflate.unconsumed_tail) >= len(tail):  # (no progress: the stream ended)
                break

    try:
        while pos + 8 <= len(data) and got < need:
            size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
            if kind == b"IDAT":
                take(data[pos + 8 : pos + 8 + size])
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
    JPEG whose last scan is not followed by an end-of-image marker, unless it is one sequential
    scan that runs to the end of the file (then it is decoded here, and read with a warning if
    its data is whole), a PNG with an
    eXIf chunk after its pixels (only Pillow's full load finds it), a decoding error (Pillow then
    says what is wrong), or an unexpected shape or dtype. ``required``
    (``decoder="imagecodecs"``) makes each of these an error instead:
    :class:`~densedet_tile.errors.MissingDependencyError` for the missing package,
    :class:`~densedet_tile.errors.ImageReadError` naming the file and the reason otherwise.

    A JPEG whose coded data ends before its last block (a truncated file, a header that
    announces more rows than the data holds, a stray marker inside the data: libjpeg-turbo
    fills the rest with grey without a word) raises :class:`~densedet_tile.errors.ImageReadError` whatever ``required`` says.
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
    no_eoi = False  # a JPEG whose one scan runs to the end of the file
    if fmt == "PNG":
        depth = png_bit_depth(data)
        # a 48-bit RGB PNG is decoded here to uint16 and scaled as a 16-bit TIFF is (v / 257,
        # rounded): Pillow opens it as 8-bit RGB by keeping each sample's high byte, so the same
        # samples gave other pixels (and boxes) as PNG than as TIFF (an outside review); other
        # 16-bit PNGs (gray: Pillow's I;16, scaled alike) and other depths go to Pillow
        if depth is not None and depth != 8 and not (depth == 16 and mode == "RGB"):
            return _declined(label, f"a {depth}-bit PNG, which imagecodecs would decode to uint16"
                             if depth == 16 else f"a {depth}-bit PNG", required=required)
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
        no_eoi = last_sos < 0 or data.find(b"\xff\xd9", last_sos) < 0
        if no_eoi and not _one_sequential_scan_to_the_end(data):
            return _declined(label, "no end-of-image marker after the last JPEG scan", required=required)
        decode = imagecodecs.jpeg8_decode
    try:
        arr = decode(data)
    except Exception as exc:
        if fmt == "PNG" and "not enough image data" in str(exc).lower() and png_rows_missing(data):
            # libpng checks what Pillow does not: a pixel stream that ends before the last row is
            # filled with black by Pillow, without a word (other libpng complaints, such as a
            # missing checksum after whole rows, fall back to Pillow)
            raise ImageReadError(f"{label}: the PNG is truncated: its pixel data ends before the last row "
                                 f"(libpng: {one_line(exc)})") from None
        return _declined(label, f"imagecodecs: {one_line(exc)}", required=required, ran=True)
    if fmt == "PNG" and isinstance(arr, np.ndarray) and arr.dtype == np.uint16:
        arr = scale_uint(arr, 16)
    if fmt == "WEBP":  # RGBA when it has alpha; either is fine (opaque alpha changes no pixel)
        shapes: tuple[tuple[int, ...], ...] = ((height, width, 3), (height, width, 4))
    else:
        shapes = ((height, width, 3) if mode == "RGB" else (height, width),)
    if not isinstance(arr, np.ndarray) or arr.dtype != np.uint8 or arr.shape not in shapes:
        got = f"{arr.dtype} {arr.shape}" if isinstance(arr, np.ndarray) else type(arr).__name__
        want = " or ".join(str(shape) for shape in shapes)
        return _declined(label, f"imagecodecs gave {got} pixels, not uint8 {want}", required=required, ran=True)
    decodes = 1
    if fmt in ("JPEG", "MPO"):
        # libjpeg fills the blocks its data does not reach with flat grey (128), without an
        # error; only then (or when the end marker is missing) is the data checked
        if no_eoi or fill_corner(arr):
            decodes += check_jpeg_whole(data, width, height, _decodes_to(arr, decode), label, no_eoi=no_eoi)
            if no_eoi:
                log.warning("%s: the JPEG lacks its end-of-image marker; its pixel data is complete and is read",
                            label)
    arr.flags.writeable = False
    return Compact(arr, ran=True, decodes=decodes)


def _one_sequential_scan_to_the_end(data: bytes) -> bool:
    """Whether the JPEG ``data`` is one baseline or extended sequential (Huffman) scan whose
    coded data runs to the end of the file: the image file with no end-of-image marker, cut
    there or written so. The marker segments are walked from the start (a thumbnail inside an
    APP segment is skipped whole); False for anything else (progressive or several scans, an
    end marker, junk after the scan, an unparsable header)."""
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, n, sequential = 2, len(data), False
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return False
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return False
        if marker in (0xC0, 0xC1):
            sequential = True
        elif 0xC2 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return False  # progressive, lossless, hierarchical or arithmetic-coded
        if marker == 0xDA:  # SOS: the coded data follows its header
            if not sequential:
                return False
            pos += 2 + length
            while True:
                ff = data.find(b"\xff", pos)
                if ff < 0 or ff + 1 >= n:
                    return True  # no marker after the scan: the data simply stops
                following = data[ff + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:  # a stuffed byte or a restart marker
                    pos = ff + 2
                    continue
                return False  # a marker after the scan (another scan, EOI...)
        pos += 2 + length
    return False


#: Coded bytes to put in where libjpeg stops reading a JPEG's data (no 0xFF among them, so they
#: hold no marker): they change the picture only if the decoder reaches them, that is if the
#: image's data stops before its last block. Two alternating bit patterns: a single one can happen to decode as
#: the very coefficients the decoder filled in.
_PROBES = (b"\x55" * 4096, b"\xaa" * 4096)


def fill_corner(arr: np.ndarray) -> bool:
    """Whether the bottom-right 2x2 pixels are all what a block libjpeg had no data for decodes
    to: every sample of it mid-grey (128; 127 in a CMYK image as Pillow stores it, inverted).
    The last block is the last one coded, so a JPEG whose data stops early always shows it."""
    corner = arr[-2:, -2:]
    return bool(((corner == 128) | (corner == 127)).all())


def check_jpeg_whole(data: bytes, width: int, height: int, matches: Callable[[bytes], bool], label: str, *,
                     no_eoi: bool = False) -> int:
    """Refuse the ``width`` x ``height`` JPEG ``data`` when its coded data stops before its
    last block (:func:`_jpeg_runs_short`; ``matches(jpeg)`` decodes other JPEG bytes at full
    size and says whether they give the very pixels read from ``data``, raising when they do
    not decode), with one line naming ``label``: truncated when the file has no end marker
    (``no_eoi``), else damaged. Returns the whole-size decodes the check ran.

    An arithmetic-coded JPEG is not checked: its decoder reads on past the coded data (it
    takes the bytes there as more of it), so the probes change an intact file's pixels too,
    and a whole one with a grey corner was refused (an outside review)."""
    if _arithmetic(data):
        return 0
    short, decodes = _jpeg_runs_short(data, matches)
    if short:
        if no_eoi:
            raise ImageReadError(f"{label}: the JPEG file is truncated: its data ends before the last of "
                                 f"the {width}x{height} pixels its header announces")
        # the file ends as a JPEG should: bytes inside it are damaged, cut out, or a marker stands
        # in the coded data where it does not belong
        raise ImageReadError(f"{label}: the JPEG data is damaged: it runs out before the last of the "
                             f"{width}x{height} pixels its header announces, though the file ends properly")
    return decodes


def _arithmetic(data: bytes) -> bool:
    """Whether the JPEG ``data``'s frame is arithmetic-coded (SOF9 to SOF15, from its
    start-of-frame marker; the segments are walked from the start, so a thumbnail inside an
    APP segment does not count). False when no frame marker is found before the first scan."""
    if not data.startswith(b"\xff\xd8"):
        return False
    pos, n = 2, len(data)
    while pos + 4 <= n and data[pos] == 0xFF:
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker >= 0xC9
        if marker == 0xDA:
            return False
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


#: In coded (entropy) data: a marker, after any fill bytes (0xFF 0x00 is a coded 0xFF byte).
_CODED_MARKER = re.compile(rb"\xff+[^\x00\xff]")


def _scan_stop(data: bytes) -> tuple[int, bytes] | None:
    """Where libjpeg stops reading the coded data of the JPEG's last scan (of its first image:
    an MPO's second picture follows the first one's end marker): at the first marker in it that
    is not the restart marker due there (the marker that ends the scan, a stray restart marker
    of a damaged file, one out of turn), else at the end of the file; with the restart marker
    due there (b"" in a scan without restart intervals). The marker segments are walked from
    the start (a thumbnail inside an APP segment is skipped whole); None when they cannot be
    (no SOI, junk between segments)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    pos, n, interval, stop = 2, len(data), 0, None
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return stop
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            pos += 2
            continue
        if pos + 4 > n:
            return stop
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if marker == 0xDD and length >= 4:  # DRI: MCUs between restart markers (0: none)
            interval = int.from_bytes(data[pos + 4 : pos + 6], "big")
        pos += 2 + length
        if marker != 0xDA:
            continue
        # SOS: its coded data follows; restart markers in their turn belong to it (numbered
        # from 0 in each scan), any other marker ends it
        due, at = 0, None
        while True:
            found = _CODED_MARKER.search(data, pos)
            if found is None:  # the data runs to the end of the file
                return (n if at is None else at), (bytes([0xFF, 0xD0 + due]) if interval else b"")
            code = data[found.end() - 1]
            if 0xD0 <= code <= 0xD7:
                if at is None and interval and code == 0xD0 + due:
                    due = (due + 1) % 8
                elif at is None:
                    at = found.start()
                pos = found.end()
                continue
            stop = (found.start() if at is None else at), (bytes([0xFF, 0xD0 + due]) if interval else b"")
            pos = found.end() - 2
            break
    return stop


def _same(a: np.ndarray, b: np.ndarray, rows: int = 256) -> bool:
    """``np.array_equal`` of two images of one shape, a band of ``rows`` rows at a time from the
    bottom up (where a short file's pixels differ; no image-sized boolean array)."""
    for stop in range(a.shape[0], 0, -rows):
        if not np.array_equal(a[max(0, stop - rows) : stop], b[max(0, stop - rows) : stop]):
            return False
    return True


def _decodes_to(arr: np.ndarray, decode: Any) -> Callable[[bytes], bool]:
    """A ``matches`` for :func:`check_jpeg_whole`: whether ``decode(jpeg)`` gives ``arr``; the
    decoded copy is let go before it returns."""

    def matches(jpeg: bytes) -> bool:
        again = decode(jpeg)
        return isinstance(again, np.ndarray) and again.shape == arr.shape and _same(again, arr)

    return matches


def _jpeg_runs_short(data: bytes, matches: Callable[[bytes], bool]) -> tuple[bool, int]:
    """Whether the JPEG's coded data ends before its last block: decoded again with
    :data:`_PROBES` put in where libjpeg stops reading it (:func:`_scan_stop`: the end of the
    last scan, or a marker that does not belong inside it), it gives other pixels (the decoder
    went on reading) than the file as it is (``matches(jpeg)`` is False). False when that
    cannot be told (the decodes fail). Also returns how many whole-size decodes it ran; one
    probed decode is alive at a time (``matches`` lets it go) besides the pixels read.

    The probed decodes are compared at full size: at 1/8 scale (each block's mean, from its DC
    coefficient alone, as this was checked before) the probes can move what they reach by
    less than a level where they reach only a few blocks (those left of a restart interval, a
    file cut a block or two from its end): a CMYK file with restart markers cut early was read.
    They run only for a file whose last block is the fill grey, or that lacks its end marker."""
    found = _scan_stop(data)
    if found is None:  # (segments that cannot be walked: the last scan's end marker, if any)
        last_sos = data.rfind(b"\xff\xda")
        end = data.find(b"\xff\xd9", last_sos) if last_sos >= 0 else -1
        found = (len(data) if end < 0 else end), b""
    stop, restart = found
    rest = data[stop:] or b"\xff\xd9"
    if stop and data[stop - 1] == 0xFF:  # a file cut between a 0xFF and the byte stuffed after it
        stop -= 1
    body = memoryview(data)[:stop]  # (no copy of the file's bytes besides the probed ones)
    runs = 0
    for probe in _PROBES:
        runs += 1
        try:
            # in a file with restart intervals the probe goes in twice, around the restart
            # marker due there: data cut inside an interval reads the first, data cut just
            # after an interval's last block skips it as junk (the probes were read past) and
            # reads the second as the next interval's
            same = matches(b"".join((body, probe, restart, probe, rest)))
        except Exception:
            continue
        if not same:
            return True, runs
    return False, runs
