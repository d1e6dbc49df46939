"""TIFF and BigTIFF, read region by region through tifffile.

A window decodes only the TIFF tiles (or strips) it overlaps; decoded segments, converted to
RGB (:class:`~.colour.TiffColour`), wait in a byte-bounded LRU cache (:class:`~.segment_cache.SegmentCache`)
so the overlap of neighbouring windows is decoded once.

Strips too big for that cache (many writers, tifffile's own default among them, store a whole
image as one strip) would be decoded again for every window, a whole-image decode per tile:

* uncompressed ones are not decoded at all: the file is memory-mapped and a window reads just
  its own rows and columns, converted to RGB window by window;
* compressed ones cannot be read in part. The cache never drops the segments a window shares
  with its neighbours (those reaching outside it) while that window is the latest read, even
  beyond its budget (:meth:`~.segment_cache.SegmentCache.hold`): so a window spanning more
  than the budget holds (one strip of a whole image, or two strips of 60 % of the budget
  each) does not push out the strips the next window needs. Each is decoded once over a
  row-major sweep, and the cache holds at most max(budget, the segments one window spans);
  a single-strip compressed TIFF is then in memory once, as RGB, which is the least its
  format allows.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import math
import mmap
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ImageReadError, MissingDependencyError, one_line
from .base import ImageSource, SourceStats, check_size, trim_heap
from .colour import TiffColour, float_white
from .orientation import checked_orientation
from .segment_cache import SegmentCache

__all__ = ["DEFAULT_TIFF_CACHE_BYTES", "TiffSource"]

#: Default byte budget of the decoded-segment cache of one TIFF source.
DEFAULT_TIFF_CACHE_BYTES: int = 256 * 2**20
#: Rows converted to RGB at a time, in bytes of the file's samples: bounds the temporaries of
#: the colour conversion of a big segment.
_CONVERT_CHUNK_BYTES: int = 4 * 2**20
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


log = logging.getLogger(__name__)

#: True while this package's TIFF reader calls tifffile (in this thread or task). tifffile logs
#: what it finds wrong in a file as it reads (a bad tag value, a page it cannot follow), and the
#: reader says what matters itself in one line naming the file: a library user saw tifffile's
#: lines bare on stderr, through Python's last-resort handler, naming no file (an outside
#: review; the command line already left them out).
_IN_READER: contextvars.ContextVar[bool] = contextvars.ContextVar("densedet_tiff_reading", default=False)


class _WhileReading(logging.Filter):
    """Drops tifffile's records made while this package's reader runs (see :data:`_IN_READER`);
    one filter, never removed, so other threads' and other code's use of tifffile is untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _IN_READER.get()


logging.getLogger("tifffile").addFilter(_WhileReading())  # (once, as this module loads)


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Leave out tifffile's log records while the block runs (see :data:`_IN_READER`)."""
    token = _IN_READER.set(True)
    try:
        yield
    finally:
        _IN_READER.reset(token)

#: How many pages are looked at for the full-resolution image (a preview may come first).
_PAGES_LOOKED_AT = 16
_WARNED_PAGES: set[str] = set()


#: TIFF tags and photometric values of camera RAW files: DNGVersion, and the colour filter
#: array and linear raw sensor data that DNG (and other TIFF-based RAW formats) store.
_DNG_VERSION = 50706
_RAW_PHOTOMETRIC = (32803, 34892)


def _refuse_raw(tif: Any, label: str) -> None:
    """Refuse a camera RAW file (DNG, or another TIFF-based RAW: a Canon CR2, a page of sensor
    data): its first page is at most the camera's preview, its picture raw sensor data that
    takes a RAW converter. Read as a TIFF, the preview was detected on without a word."""
    first = tif.pages[0]
    if first.tags.get(_DNG_VERSION) is not None:
        raise ImageReadError(f"{label}: camera RAW (DNG) is not supported: export a JPEG or TIFF")
    fh = tif.filehandle
    try:
        fh.seek(0)
        head = fh.read(12)
    except (OSError, ValueError):  # pragma: no cover - the header was just read
        head = b""
    # a CR2's header: its first IFD at 16, after the "CR" signature and version 2.0 at 8 (an
    # ordinary TIFF may hold those bytes there as pixels: libtiff writes the data first)
    cr2 = head[:4] == b"II*\x00" and head[4:8] == b"\x10\x00\x00\x00" and head[8:12] == b"CR\x02\x00"
    if cr2 or int(getattr(first, "photometric", 0) or 0) in _RAW_PHOTOMETRIC:
        raise ImageReadError(f"{label}: camera RAW is not supported: export a JPEG or TIFF")


def _warn_once(label: str, msg: str, *args: Any) -> None:
    """``log.warning(msg, label, *args)``, once per file and process: a file is opened more
    than once (its size first, then its pixels)."""
    key = f"{msg}\0{label}"
    if key in _WARNED_PAGES:
        return
    if len(_WARNED_PAGES) >= 4096:  # a long-running service sees many files: forget the old ones
        _WARNED_PAGES.clear()
    _WARNED_PAGES.add(key)
    log.warning(msg, label, *args)


def _subifd_sizes(pages: list[Any]) -> list[tuple[int, int] | None]:
    """(width, height) of each image in the ``pages``' SubIFDs (one level down); None for a
    SubIFD that tifffile cannot read (what it holds is not known)."""
    import tifffile

    sizes: list[tuple[int, int] | None] = []
    for page in pages:
        if not getattr(page, "subifds", None):
            continue
        try:
            sizes.extend((int(sub.imagewidth), int(sub.imagelength)) for sub in tifffile.TiffPages(page))
        except Exception:  # (a damaged or unusual SubIFD: counted as possibly the image)
            sizes.append(None)
    return sizes


def _main_page(tif: Any, label: str) -> Any:
    """The page that holds the image: the first that is not a reduced-resolution copy
    (NewSubfileType bit 0: thumbnails and previews, which cameras put first). Other
    full-resolution pages are not read, and a warning says so. Where every page is marked
    reduced-resolution the largest is read, with a warning, unless a SubIFD of one of them
    holds a larger image: then that is the image (a camera's layout), which is not read, and
    the file is refused. SubIFDs of smaller images (a pyramid's levels) are passed over."""
    n = len(tif.pages)
    pages = [tif.pages[i] for i in range(min(n, _PAGES_LOOKED_AT))]
    reduced = [bool(int(getattr(pg, "subfiletype", 0) or 0) & 1) for pg in pages]
    full = [i for i, r in enumerate(reduced) if not r]
    k = full[0] if full else max(range(len(pages)), key=lambda i: int(pages[i].imagewidth) * int(pages[i].imagelength))
    size = (int(pages[k].imagewidth), int(pages[k].imagelength))
    if not full:
        larger = [sub for sub in _subifd_sizes(pages) if sub is None or sub[0] * sub[1] > size[0] * size[1]]
        if larger:
            known = [sub for sub in larger if sub is not None]
            big = max(known, key=lambda sub: sub[0] * sub[1]) if known else None
            where = f" ({big[0]}x{big[1]})" if big else ""
            raise ImageReadError(f"{label}: the TIFF holds only a reduced-resolution preview ({size[0]}x{size[1]}); "
                                 f"its image is in a SubIFD{where}, which is not read (camera RAW?): export a JPEG "
                                 "or TIFF")
        # a mislabelled file, or previews alone: the largest is what there is
        _warn_once(label, "%s: every page of the TIFF is tagged as a reduced-resolution copy (a preview or "
                   "thumbnail); reading the largest, page %d (%dx%d)", k + 1, *size)
    if k > 0:
        log.info("%s: page 1 is a reduced-resolution copy; reading page %d", label, k + 1)
    others = n - 1 - sum(r for i, r in enumerate(reduced) if i != k)
    if others > 0:
        _warn_once(label, "%s: the TIFF has %d pages; only page %d (%dx%d) is read", n, k + 1, *size)
    return pages[k]


class TiffSource(ImageSource):
    """The main page of a TIFF/BigTIFF (the first full-resolution one; see
    :func:`_main_page`), read segment by segment through tifffile.

    A window decodes only the TIFF tiles (tiled files) or strips (striped files) it overlaps.
    Decoded segments, converted to RGB uint8, are kept in an LRU cache of at most
    ``cache_bytes`` bytes so the overlap of neighbouring windows is decoded once.
    """

    def __init__(self, path: Path, *, max_pixels: int | None, cache_bytes: int = DEFAULT_TIFF_CACHE_BYTES) -> None:
        with _reading():
            self._open(path, max_pixels=max_pixels, cache_bytes=cache_bytes)

    def _open(self, path: Path, *, max_pixels: int | None, cache_bytes: int) -> None:
        import tifffile

        label = str(path)
        try:
            tif = tifffile.TiffFile(path)
        except Exception as exc:
            raise ImageReadError(f"{label}: cannot read TIFF ({one_line(exc)})") from exc
        try:
            if len(tif.pages) == 0:
                # (a file cut short before its first page's index, as often as one with none: an
                # outside review found "no pages" for a truncated LZW TIFF)
                raise ImageReadError(f"{label}: the TIFF has no readable pages: a damaged or truncated file")
            _refuse_raw(tif, label)
            page = _main_page(tif, label)
            sw, sh = int(page.imagewidth), int(page.imagelength)
            if sw == 0 or sh == 0:  # tifffile read no image page (it logs why): not an empty picture
                raise ImageReadError(f"{label}: the TIFF holds no readable image page ({sw}x{sh}): a damaged "
                                     "or truncated file")
            orient_tag = page.tags.get("Orientation")
            orientation = 1 if orient_tag is None else checked_orientation(orient_tag.value, label)
            check_size(label, sw, sh, max_pixels, turned=orientation >= 5)
            self._setup_layout(page, label)
            self._colour = TiffColour.of_page(page, self._samples, label)
        except BaseException:
            tif.close()
            raise
        self._tif: Any = tif
        self._page: Any = page
        self._fh = tif.filehandle
        self._lock = threading.Lock()
        self._cache = SegmentCache(cache_bytes)
        self._segments_decoded = 0
        self._direct: mmap.mmap | None = None
        if self._direct_dtype is not None:
            rgb_bytes = self._seg_w * self._seg_h * 3
            if rgb_bytes > self._cache.limit // 4:
                try:
                    with open(path, "rb") as fh:
                        self._direct = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):  # an unmappable file: decode as usual
                    self._direct = None
        super().__init__(name=path.name, path=path, stored_size=(sw, sh), orientation=orientation, fmt="TIFF")
        kind = np.dtype(page.dtype).kind
        try:
            if kind == "f":
                self._colour = replace(self._colour, float_range=self._float_range(page))
            # (integers deeper than 8 bits: the bits they use are looked for at the first read, not
            # here: opening a file for its size only decoded up to 16 of its segments; a diff review)
            self._bits_pending = kind == "u" and self._colour.bits > 8 and self._colour.colormap is None
        except BaseException:
            self.close()
            raise

    def _float_range(self, page: Any) -> tuple[float, float]:
        """The values of float samples that are black and white: the SMin/SMaxSampleValue tags,
        else 0..1 (the usual convention; an HDR image's highlights above 1 are clipped), unless
        the middle of the samples lies above 1: then 8- or 16-bit values stored as floats, which
        clipping at 1 would turn all white, read as 0..255 or 0..65535 (or 0..the largest value).

        Measured on the samples above 0 (a stitched panorama's black fill says nothing of the
        scale) of up to 4 x 4 segments at the middles of an even grid over the image's segment
        rows and columns, so a margin along any border is never all that is seen. Uncompressed
        strips read in place are sampled in place (a few hundred rows of each, every few
        columns), so opening a big file does not read it whole; the segments decoded to measure
        them are counted, converted and cached (the first, and the others within the cache's
        budget), so they are not decoded again by the first reads."""
        tags = page.tags
        lo_tag, hi_tag = tags.get("SMinSampleValue"), tags.get("SMaxSampleValue")
        if hi_tag is not None:
            lo = float(np.min(lo_tag.value)) if lo_tag is not None else 0.0
            hi = float(np.max(hi_tag.value))
            if np.isfinite(lo) and np.isfinite(hi) and hi > lo:
                return lo, hi

        values, decoded = self._sampled()
        values = values[np.isfinite(values) & (values > 0)]
        lo, hi = 0.0, float_white(values, float(values.max()) if values.size else 1.0)
        if hi > 1.0:
            top = float(values.max())
            log.info("%s: float samples around %g, up to %g: read as 0..%g", self._label, float(np.median(values)),
                     top, hi)
        self._keep_decoded(replace(self._colour, float_range=(lo, hi)), decoded)
        return lo, hi

    def _significant_bits(self, page: Any) -> int:
        """The bits that unsigned colour samples deeper than 8 bits use: 10- or 12-bit data from a
        machine-vision or scientific camera stored in 16-bit samples read 16 to 64 times too dark
        (and were counted short: an outside review, 12-bit data in a 16-bit TIFF, 103 products
        for 128). The largest value among the samples :meth:`_float_range` looks at (or a
        MaxSampleValue / SMaxSampleValue tag's number where it is larger), rounded up to an even
        number of bits from 8, when that is at least 4 under the file's: a photo whose samples
        all stay under a sixteenth of their range is such data (or nearly black: brighter helps
        it as well), while an underexposed photo of a quarter of its range keeps its bits (a diff
        review). Anything brighter elsewhere is read as white; alpha keeps the file's bits. A
        warning says so. Run at the first read (opening a file for its size decodes nothing)."""
        bits = self._colour.bits
        values, decoded = self._sampled()
        top = float(values.max()) if values.size else 0.0
        for name in ("MaxSampleValue", "SMaxSampleValue"):
            tag = page.tags.get(name)
            try:  # (a tag of another type, text: ignored, not a numpy error)
                said = float(np.max(np.asarray(tag.value, dtype=np.float64))) if tag is not None else 0.0
            except (TypeError, ValueError):
                said = 0.0
            if np.isfinite(said):
                top = max(top, said)  # (a tag under what the pixels show is wrong: never below them)
        used = bits
        if top > 0:
            need = max(8, math.ceil(math.log2(top + 1)))
            need += need % 2
            if need <= bits - 4:
                used = need
                _warn_once(self._label, "%s: its %d-bit samples reach only %d (%d-bit data): read as 0..%d, "
                           "brighter values elsewhere as white", bits, int(top), used, (1 << used) - 1)
        self._keep_decoded(replace(self._colour, colour_bits=used), decoded)
        return used

    def _sampled(self) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Colour samples of up to 4 x 4 segments at the middles of an even grid over the
        image's segment rows and columns (see :meth:`_float_range`), flattened, and the segments
        decoded to see them (to be kept, :meth:`_keep_decoded`)."""

        def spread(n: int) -> list[int]:  # the middles of min(n, 4) equal parts of 0..n-1
            k = min(n, 4)
            return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})

        seen = []
        decoded: dict[int, np.ndarray] = {}
        kept = 0
        for r in spread(self._segs_down):
            for c in spread(self._segs_across):
                key = r * self._segs_across + c
                if self._direct is not None:  # whole-width strips (c is 0): a few rows of each
                    raw = self._sample_rows(r)
                else:
                    raw = self._raw_segment(key)
                    self._segments_decoded += self._samples if self._separate else 1
                    if not decoded or kept + raw.nbytes <= self._cache.limit:  # one always; more
                        decoded[key] = raw  # only within the cache's budget
                        kept += raw.nbytes
                colour = np.asarray(raw[..., : self._colour.ncolor] if raw.ndim == 3 else raw).ravel()
                seen.append(colour[:: max(1, colour.size // 100_000)])
        return (np.concatenate(seen) if seen else np.zeros(0)), decoded

    def _keep_decoded(self, colour: TiffColour, decoded: dict[int, np.ndarray]) -> None:
        """Segments decoded to sample them, converted with ``colour`` and kept for the first
        reads (held, so that one big strip is kept even when it is over the cache's budget, as a
        read keeps it; the first read's hold releases them)."""
        self._cache.hold(decoded)
        for key in list(decoded):
            self._cache.put(key, self._to_rgb8_with(colour, decoded.pop(key)))

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
                cache_hits=self._cache.hits,
                cached_segments=len(self._cache),
                cache_bytes=self._cache.nbytes,
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
                    f"Reading {label} ({comp_name}-compressed TIFF)", "imagecodecs", None
                ) from None
            raise ImageReadError(f"{label}: unsupported TIFF compression {comp_name}") from None
        self._samples = int(page.samplesperpixel)
        self._separate = int(page.planarconfig) == 2 and self._samples > 1
        sw, sh = int(page.imagewidth), int(page.imagelength)
        if page.is_tiled:
            self._seg_w, self._seg_h = int(page.tilewidth), int(page.tilelength)
            # a tile is at most the image rounded up to whole tiles of 16 px, or 4096 px (what
            # writers may use on small images): a 176-byte file declaring one
            # 40000 x 40000 tile on a 40001 x 16 image was filled in memory, 9.5 GB, under any
            # --max-pixels (a security review)
            pad_w, pad_h = -(-sw // 16) * 16, -(-sh // 16) * 16
            # and in bytes, whatever its samples: at most the whole image's, or 128 MiB
            per_px = int(page.samplesperpixel) * max(1, int(page.bitspersample) // 8)
            budget = max(pad_w * pad_h * per_px, 128 << 20)
            if (self._seg_w > max(pad_w, 4096) or self._seg_h > max(pad_h, 4096)
                    or self._seg_w * self._seg_h * per_px > budget):
                raise ImageReadError(f"{label}: its TIFF tiles ({self._seg_w}x{self._seg_h} px) are larger than the "
                                     f"image ({sw}x{sh} px): a damaged file")
        else:
            rps = int(page.rowsperstrip) if page.rowsperstrip else sh
            self._seg_w, self._seg_h = sw, max(1, min(rps, sh))
        # Uncompressed strips of whole bytes per sample can be read in place (memory-mapped).
        self._direct_dtype: np.dtype | None = None
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        if (not page.is_tiled and int(page.compression) == 1 and dtype is not None and dtype != np.bool_
                and dtype.itemsize * 8 == int(page.bitspersample)
                and all(int(n) > 0 for n in page.databytecounts)):  # (a sparse strip has no bytes to map)
            self._direct_dtype = dtype.newbyteorder(page.parent.byteorder)
        self._segs_across = -(-sw // self._seg_w)
        self._segs_down = -(-sh // self._seg_h)
        per_plane = self._segs_across * self._segs_down
        self._segs_per_plane = per_plane
        expected = per_plane * (self._samples if self._separate else 1)
        if len(page.dataoffsets) < expected:
            raise ImageReadError(
                f"{label}: the TIFF lists {len(page.dataoffsets)} data segments, {expected} are needed"
            )
        if not any(int(n) > 0 for n in page.databytecounts[:expected]):
            # a segment with no bytes is a sparse one (GDAL), read as no-data; a file of nothing
            # else holds no picture at all (a writer that failed after the header): it was read as
            # a black image with 0 products and no word
            raise ImageReadError(f"{label}: the TIFF holds no image data (every one of its {expected} "
                                 f"{'tiles' if page.is_tiled else 'strips'} is empty; a failed write?)")

    # -- decoding -------------------------------------------------------------------------------
    def _decode_raw(self, index: int) -> np.ndarray:
        """Decode data segment ``index`` to (h, w, samples_in_segment) in the file's dtype."""
        page = self._page
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if count > 0:
            self._fh.seek(offset)
            data = self._fh.read(count)
            if len(data) != count:
                raise ImageReadError(f"{self._label}: the TIFF is truncated (segment {index} is incomplete)")
        else:  # a segment never written (GDAL's sparse files): its pixels are the no-data value
            return self._sparse_segment(index)
        try:
            with _reading():
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

    def _sparse_segment(self, index: int) -> np.ndarray:
        """Segment ``index`` stored with no bytes (offset and byte count 0), as tifffile reads
        it: filled with the file's no-data value (GDAL_NODATA, else 0)."""
        page = self._page
        row = (index % self._segs_per_plane) // self._segs_across
        h = self._seg_h if page.is_tiled else min(self._seg_h, self._stored_h - row * self._seg_h)
        samples = 1 if self._separate else self._samples
        nodata = getattr(page, "nodata", 0) or 0
        log.debug("%s: TIFF segment %d holds no data: read as %g", self._label, index, nodata)
        return np.full((h, self._seg_w, samples), nodata, np.dtype(page.dtype))

    def _segment(self, r: int, c: int) -> np.ndarray:
        """RGB uint8 pixels of segment row ``r`` column ``c`` (cached; caller holds the lock)."""
        key = r * self._segs_across + c
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        raw = self._raw_segment(key)
        self._segments_decoded += self._samples if self._separate else 1
        rgb = self._to_rgb8(raw)
        self._cache.put(key, rgb)
        return rgb

    def _raw_segment(self, key: int) -> np.ndarray:
        """The decoded samples (h, w, S) of segment ``key`` (row * across + column), its planes
        stacked when the file stores each sample in a plane of its own."""
        if not self._separate:
            return self._decode_raw(key)
        planes = [self._decode_raw(s * self._segs_per_plane + key)[..., 0] for s in range(self._samples)]
        return np.stack(planes, axis=-1)

    def _to_rgb8(self, raw: np.ndarray) -> np.ndarray:
        """The colour conversion of a decoded segment, a band of rows at a time when it is big
        (the conversion's temporaries are several times the size of what they convert)."""
        return self._to_rgb8_with(self._colour, raw)

    @staticmethod
    def _to_rgb8_with(colour: TiffColour, raw: np.ndarray) -> np.ndarray:
        rows = max(1, _CONVERT_CHUNK_BYTES // max(1, raw[:1].nbytes))
        if rows >= raw.shape[0]:
            return colour.to_rgb8(raw)
        out = np.empty(raw.shape[:2] + (3,), np.uint8)
        for r in range(0, raw.shape[0], rows):
            out[r : r + rows] = colour.to_rgb8(raw[r : r + rows])
        return out

    def _strip_offset(self, index: int, need: int) -> int:
        """The file offset of uncompressed strip ``index``, refused (:class:`ImageReadError`)
        where its byte count holds fewer than the ``need`` bytes the declared size makes it:
        read on, its last rows were the next page's pixels (an outside review: a header saying
        2500 rows over a strip of 1536, read without a word)."""
        counts = getattr(self._page, "databytecounts", None)
        declared = int(counts[index]) if counts is not None and len(counts) > index else need
        if declared < need:
            raise ImageReadError(f"{self._label}: the TIFF's strip {index} holds {declared} bytes, fewer than the "
                                 f"{need} its declared size needs (its width, height or rows per strip are wrong)")
        return int(self._page.dataoffsets[index])

    def _sample_rows(self, r: int, most: int = 256) -> np.ndarray:
        """Up to ``most`` evenly spaced rows of uncompressed strip ``r``, every few columns, as
        (rows, columns, S) samples, read with plain reads (a strided look through the memory
        map faults in, and reads ahead, far more of the file than it touches)."""
        sw = self._stored_w
        n_rows = min(self._seg_h, self._stored_h - r * self._seg_h)
        dtype = self._direct_dtype
        assert dtype is not None
        per_pixel = 1 if self._separate else self._samples
        row_bytes = sw * per_pixel * dtype.itemsize
        ys = range(0, n_rows, max(1, n_rows // most))
        step = max(1, sw // 1024)
        planes = []
        for s in range(self._samples if self._separate else 1):
            offset = self._strip_offset(s * self._segs_per_plane + r, n_rows * row_bytes)
            rows = []
            for y in ys:
                self._fh.seek(offset + y * row_bytes)
                data = self._fh.read(row_bytes)
                if len(data) != row_bytes:
                    raise ImageReadError(f"{self._label}: the TIFF is truncated (strip {r} is incomplete)")
                rows.append(np.frombuffer(data, dtype).reshape(sw, per_pixel)[::step])
            planes.append(np.stack(rows))
        return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=-1)

    def _mapped(self, r: int, rows: slice, cols: slice) -> np.ndarray:
        """Samples (h, w, S) of strip ``r``'s ``rows`` and ``cols``, straight from the mapped
        file (uncompressed strips; caller holds the lock)."""
        sw, sh = self._stored_w, self._stored_h
        n_rows = min(self._seg_h, sh - r * self._seg_h)
        dtype = self._direct_dtype
        assert dtype is not None and self._direct is not None
        per_pixel = 1 if self._separate else self._samples
        planes = []
        for s in range(self._samples if self._separate else 1):
            index = s * self._segs_per_plane + r
            need = n_rows * sw * per_pixel * dtype.itemsize
            offset = self._strip_offset(index, need)
            if offset + need > len(self._direct):
                raise ImageReadError(f"{self._label}: the TIFF is truncated (strip {index} is incomplete)")
            strip = np.ndarray((n_rows, sw, per_pixel), dtype, buffer=self._direct, offset=offset)
            planes.append(strip[rows, cols])
        return planes[0] if len(planes) == 1 else np.concatenate(planes, axis=-1)

    def _shared_segments(self, x: int, y: int, w: int, h: int) -> list[int]:
        """Keys of the segments under window (x, y, w, h) that reach outside it: the ones the
        windows around it may need as well. Those wholly inside are of no use to a window that
        does not overlap this one, and are all a window of the whole image spans: the cache
        keeps them only within its budget."""
        sw_, sh_ = self._seg_w, self._seg_h
        c0, c1 = x // sw_, (x + w - 1) // sw_
        r0, r1 = y // sh_, (y + h - 1) // sh_
        keys = []
        for r in range(r0, r1 + 1):
            out_y = r * sh_ < y or min((r + 1) * sh_, self._stored_h) > y + h
            for c in range(c0, c1 + 1):
                if out_y or c * sw_ < x or min((c + 1) * sw_, self._stored_w) > x + w:
                    keys.append(r * self._segs_across + c)
        return keys

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        out = np.empty((h, w, 3), np.uint8)
        sw_, sh_ = self._seg_w, self._seg_h
        c0, c1 = x // sw_, (x + w - 1) // sw_
        r0, r1 = y // sh_, (y + h - 1) // sh_
        with self._lock:
            if self._page is None:  # pragma: no cover - guarded by read()
                raise ImageReadError(f"{self._label}: the image source is closed")
            if self._bits_pending:
                self._bits_pending = False
                self._colour = replace(self._colour, colour_bits=self._significant_bits(self._page))
            if self._direct is not None:  # uncompressed big strips: the window's own samples
                for r in range(r0, r1 + 1):
                    gy0 = r * sh_
                    ya, yb = max(y, gy0), min(y + h, gy0 + sh_)
                    win = self._mapped(r, slice(ya - gy0, yb - gy0), slice(x, x + w))
                    out[ya - y : yb - y] = self._to_rgb8(win)
                    del win
                if _DONTNEED is not None:  # the file's pages stay in the page cache, not in
                    self._direct.madvise(_DONTNEED)  # this process's memory
                return out
            self._cache.hold(self._shared_segments(x, y, w, h))
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

    def release(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:  # pragma: no cover
            return
        with lock:
            self._cache.clear()
        trim_heap()

    @property
    def band_rows(self) -> int | None:
        # upright rows are the stored rows, top first, unless the orientation turns or flips them
        return self._seg_h if self.orientation in (1, 2) and self._direct is None else None

    def close(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is None:  # pragma: no cover
            return
        with lock:
            if self._page is not None:
                self._tif.close()
                self._page = None
                self._cache.clear()
                if self._direct is not None:
                    try:
                        self._direct.close()
                    except BufferError:  # pragma: no cover - a window still refers to it
                        pass
                    self._direct = None
        super().close()
