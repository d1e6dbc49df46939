"""Colour policy: every source's pixels become ``(h, w, 3)`` uint8 RGB here.

* Gray becomes R = G = B. Bilevel images become 0 / 255.
* Alpha (LA, RGBA, palette with transparency, TIFF extra samples) is composited onto a white
  background: shelf cut-outs and scans use transparent for "no product", and white keeps it
  from reading as black shelf gaps. Premultiplied alpha is handled as such.
* Integer images deeper than 8 bits are scaled by their full bit range (16-bit: ``v / 257``,
  rounded). Pillow's 32-bit ``I`` images are scaled from their actual value range when it
  exceeds 0..255 (16-bit data is taken as 0..65535). Pillow float images are read as float TIFFs
  are: 0..1 (clipped above), or 0..255 / 0..65535 where the middle of their values lies above 1;
  ones with negative values are stretched linearly from their min to their max; NaN and
  infinities are left out of the range and set to its ends. Float TIFFs take the
  range their SMin/SMaxSampleValue tags give, else 0..1 unless a sample of the image shows
  integer values stored as floats (``TiffSource._float_range``), clipped to it and scaled to 0..255.
* CMYK and YCbCr Pillow images are converted with Pillow's own conversion.

Everything here works on window-sized arrays (or Pillow crops), never on a whole image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ...errors import ImageReadError

__all__ = [
    "composite_white",
    "gray_to_rgb",
    "uint8_to_rgb",
    "scale_uint",
    "scale_range",
    "palette_lut",
    "pillow_converter",
    "TiffColour",
]


def composite_white(color: np.ndarray, alpha: np.ndarray, *, premultiplied: bool = False) -> np.ndarray:
    """Composite uint8 ``color`` (h, w, 3) with uint8 ``alpha`` (h, w) onto white: (h, w, 3) uint8."""
    c = color.astype(np.uint16)
    a = alpha.astype(np.uint16)[..., None]
    inv = 255 - a
    if premultiplied:
        out = c + inv
    else:
        out = (c * a + 255 * inv + 127) // 255
    return np.minimum(out, 255).astype(np.uint8)


def gray_to_rgb(g: np.ndarray) -> np.ndarray:
    """Gray (h, w) -> (h, w, 3) with R = G = B (a new array)."""
    return np.repeat(g[..., None], 3, axis=2)


def uint8_to_rgb(win: np.ndarray) -> np.ndarray:
    """uint8 gray (h, w), RGB (h, w, 3) or RGBA (h, w, 4) -> (h, w, 3) RGB; RGB is returned as is."""
    if win.ndim == 2:
        return gray_to_rgb(win)
    if win.shape[2] == 4:
        return composite_white(win[..., :3], win[..., 3])
    return win


#: Samples converted at a time by :func:`scale_uint` (16 MB of float32).
_BAND_ELEMS = 1 << 22


def scale_uint(a: np.ndarray, bits: int) -> np.ndarray:
    """Unsigned integers of ``bits`` bits -> uint8 over the full range (rounded), same shape;
    values above the range (samples wider than ``bits``) become 255."""
    if bits == 8 and a.dtype == np.uint8:
        return a
    top = (1 << bits) - 1
    k = np.float32(255.0 / top)
    # samples wider than ``bits`` (12-bit data in 16-bit samples) may hold larger values: white
    over = np.issubdtype(a.dtype, np.integer) and np.iinfo(a.dtype).max > top
    if a.ndim == 0 or a.size <= _BAND_ELEMS:
        v = (a.astype(np.float32) * k) + np.float32(0.5)
        return (np.minimum(v, np.float32(255.0)) if over else v).astype(np.uint8)
    # in bands of rows: a whole 16-bit panorama scaled at once made two float32 copies of it,
    # eight bytes a sample on top of the decoded image (1.8 GB for a 40000 x 1500 RGB PNG)
    out = np.empty(a.shape, np.uint8)
    rows = max(1, _BAND_ELEMS // max(1, a.size // a.shape[0]))
    for i in range(0, a.shape[0], rows):
        band = a[i:i + rows].astype(np.float32)
        band *= k
        band += np.float32(0.5)
        if over:
            np.minimum(band, np.float32(255.0), out=band)
        out[i:i + rows] = band  # (float to uint8 truncates, as astype did)
    return out


def cmyk_to_rgb(cmyk: np.ndarray) -> np.ndarray:
    """(..., 4) uint8 CMYK inks -> (..., 3) uint8 RGB, exactly as Pillow converts them (each
    channel (255 - ink) scaled by (255 - K) / 255, rounded), so a CMYK TIFF gives the pixels
    the same picture gives as a CMYK JPEG."""
    v = cmyk.astype(np.int32)
    nk = 255 - v[..., 3:4]
    t = v[..., :3] * nk + 128
    return np.clip(nk - (((t >> 8) + t) >> 8), 0, 255).astype(np.uint8)


def scale_range(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear map of [lo, hi] to [0, 255], clipped, uint8, same shape."""
    span = hi - lo if hi > lo else 1.0
    out = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / span)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def palette_lut(im: Any) -> np.ndarray:
    """(256, 4) uint8 RGBA table of a Pillow palette image, transparency included."""
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


def _colour_key(im: Any, stored_8bit: bool) -> np.ndarray | None:
    """The transparent colour of an RGB or gray image stored at 8 bits that names one (a PNG's
    tRNS chunk: ``info["transparency"]``, a tuple for RGB, a number for gray), else None. Of a
    PNG stored at 16 bits (or 1, 2, 4 for gray), Pillow gives 8-bit pixels but keeps the key at
    the stored depth: compared with the pixels it would whiten others, so it is not used."""
    if not stored_8bit:
        return None
    key = im.info.get("transparency")
    if im.mode == "RGB" and isinstance(key, tuple) and len(key) == 3 and all(
            isinstance(v, int) and 0 <= v <= 255 for v in key):
        return np.array(key, np.uint8)
    if im.mode == "L" and isinstance(key, int) and not isinstance(key, bool) and 0 <= key <= 255:
        return np.array(key, np.uint8)
    return None


def png_bit_depth(data: bytes) -> int | None:
    """The bit depth in a PNG's header (IHDR), None when it cannot be read."""
    return data[24] if len(data) >= 29 and data[12:16] == b"IHDR" else None


def file_bytes(fp: Any, filename: Any, limit: int = -1) -> bytes:
    """The first ``limit`` bytes (all: -1) of the file a PIL image was opened from: its file
    object ``fp`` read from the start (its position put back), else its file name; no bytes
    when it has neither (made in memory, or a file object Pillow has let go). An error reading
    the file by its name is raised."""
    if fp is not None:
        try:
            if not fp.closed:
                pos = fp.tell()
                fp.seek(0)
                try:
                    return bytes(fp.read(limit))
                finally:
                    fp.seek(pos)
        except (AttributeError, OSError, ValueError):  # not seekable, or closed: the name may still do
            pass
    if filename and isinstance(filename, (str, bytes, os.PathLike)):
        with open(os.fsdecode(filename), "rb") as fh:
            return fh.read(limit)
    return b""


def stored_8bit(im: Any) -> bool:
    """Whether the Pillow image ``im`` stores 8-bit RGB or gray samples, the one depth whose
    colour key (a PNG's tRNS) Pillow keeps at the depth of the pixels it gives.

    Not yet loaded, its first tile's raw mode says it (plain ``RGB`` or ``L``). Pillow drops the
    tiles as it loads (an outside review: a colour-keyed PNG handed in as a PIL image after
    ``im.load()`` came out with its key colour, the file and a lazy image with white there).
    Then a PNG says its depth in the header of its file, by name or through the file object
    Pillow kept; where neither can be read the key is left out (Pillow keeps a 16-bit PNG's key
    at 16 bits). An image that is no PNG's own (made in memory, a copy, ``convert("RGB")`` of a GIF whose
    palette had a transparent entry, which Pillow keeps as an RGB colour) is not: its opaque
    pixels of that colour stay as they are (a second look at the fix turned them white)."""
    tile = getattr(im, "tile", None) or []
    if tile:
        return getattr(tile[0], "args", None) in ("RGB", "L")
    if im.mode not in ("RGB", "L") or getattr(im, "format", None) != "PNG":
        return False
    try:
        # (opened from bytes, Pillow keeps the file object it loaded from, ``_fp``, after load())
        depth = png_bit_depth(file_bytes(getattr(im, "_fp", None), getattr(im, "filename", None), 29))
    except OSError:  # its file gone or moved since
        depth = None
    # a depth not known leaves the key out, as Pillow's own 16-bit key matched against 8-bit
    # pixels would whiten opaque colours (a third look: (0, 0, 255) of a 48-bit PNG turned its
    # bright blue (0, 0, 65535) white)
    return depth == 8


def pillow_converter(im: Any, *, eight_bit: bool = False) -> Callable[[Any], np.ndarray]:
    """A function turning a crop of the Pillow image ``im`` (same mode) into (h, w, 3) uint8 RGB.

    Whatever needs the whole image (the palette, the value range of ``I`` and ``F`` images) is
    read here, once; the function itself only touches the crop it is given. ``eight_bit``: the
    image stores 8-bit samples (:func:`stored_8bit`, asked before loading), the one case where a
    colour key (a PNG's tRNS) is matched against the pixels.
    """
    mode = im.mode
    key = _colour_key(im, eight_bit)
    if key is not None:  # a PNG's tRNS colour: pixels of exactly that colour are transparent
        to_rgb = (lambda c: np.asarray(c)) if mode == "RGB" else (lambda c: gray_to_rgb(np.asarray(c)))

        def conv_key(c: Any) -> np.ndarray:
            a = np.asarray(c)
            hit = np.all(a == key, axis=-1) if a.ndim == 3 else a == key
            rgb = to_rgb(c)
            if hit.any():  # composited on white, as every other kind of transparency is
                rgb = rgb.copy()
                rgb[hit] = 255
            return rgb

        return conv_key
    if mode == "RGB":
        return lambda c: np.asarray(c)
    if mode == "L":
        return lambda c: gray_to_rgb(np.asarray(c))
    if mode == "1":
        return lambda c: gray_to_rgb(np.asarray(c).astype(np.uint8) * np.uint8(255))
    if mode in ("RGBA", "LA", "RGBa", "La", "PA"):
        premult = mode in ("RGBa", "La")

        def conv_alpha(c: Any) -> np.ndarray:
            if c.mode in ("LA", "La"):
                a = np.asarray(c)
                return composite_white(gray_to_rgb(a[..., 0]), a[..., 1], premultiplied=premult)
            if c.mode == "PA":
                c = c.convert("RGBA")
            a = np.asarray(c)
            return composite_white(a[..., :3], a[..., 3], premultiplied=premult)

        return conv_alpha
    if mode == "P":
        lut = palette_lut(im)
        has_alpha = bool(np.any(lut[:, 3] < 255))

        def conv_p(c: Any) -> np.ndarray:
            px = lut[np.asarray(c)]
            if has_alpha:
                return composite_white(px[..., :3], px[..., 3])
            return px[..., :3]

        return conv_p
    if mode.startswith("I;16"):
        return lambda c: gray_to_rgb(scale_uint(np.asarray(c).astype(np.uint16, copy=False), 16))
    if mode == "I":
        lo, hi = im.getextrema()
        if lo >= 0 and hi <= 255:
            lo, hi = 0, 255
        elif lo >= 0 and hi <= 65535:
            lo, hi = 0, 65535
        lo_i, hi_i = float(lo), float(hi)
        return lambda c: gray_to_rgb(scale_range(np.asarray(c), lo_i, hi_i))
    if mode == "F":
        lo_f, hi_f = _float_range(im)
        # (a NaN or an infinity made the whole image black: taken as the range's ends)
        return lambda c: gray_to_rgb(scale_range(np.nan_to_num(np.asarray(c), nan=lo_f, posinf=hi_f, neginf=lo_f),
                                                 lo_f, hi_f))
    # CMYK, YCbCr, LAB, HSV, RGBX ... : Pillow knows how to get RGB from these.
    return lambda c: np.asarray(c.convert("RGB"))


def float_white(positive: np.ndarray, top: float) -> float:
    """The value a float image's white is: 1.0, unless the middle of its positive samples
    ``positive`` lies above 1 (8- or 16-bit values stored as floats, which clipping at 1 would
    turn all white): then 255 or 65535, or ``top`` (its largest value) beyond those."""
    if positive.size and float(np.median(positive)) > 1.0:
        return next((v for v in (255.0, 65535.0) if top <= v * 1.0001), top)
    return 1.0


def _float_range(im: Any) -> tuple[float, float]:
    """The range a Pillow float (``F``) image is scaled from, as a float TIFF's is
    (``TiffSource._float_range``): 0..1 (values above clipped), unless the middle of its positive
    values lies above 1: then 8- or 16-bit values stored as floats, read as 0..255 or 0..65535 (or
    0..its largest value); an image with negative values is stretched from its min to its max.
    NaN and infinities are left out (Pillow's extrema are NaN with one NaN pixel, and an infinity
    took the whole range: the image read as black). The middle is measured on up to 64 rows."""
    lo, hi = (float(v) for v in im.getextrema())
    w, h = im.size
    if not (np.isfinite(lo) and np.isfinite(hi)):
        # the whole image's finite extrema, a band of rows at a time (a float copy of a panorama
        # is four bytes a pixel)
        lo, hi = np.inf, -np.inf
        step = max(1, (1 << 22) // max(w, 1))
        for y in range(0, h, step):
            band = np.asarray(im.crop((0, y, w, min(h, y + step))), np.float32)
            fin = band[np.isfinite(band)]
            if fin.size:
                lo, hi = min(lo, float(fin.min())), max(hi, float(fin.max()))
        if not np.isfinite(lo):  # nothing finite at all
            return 0.0, 1.0
    if lo < 0:
        return lo, hi
    if hi <= 1:
        return 0.0, 1.0
    rows = np.unique(np.linspace(0, h - 1, min(h, 64)).astype(int))
    sample = np.concatenate([np.asarray(im.crop((0, int(r), w, int(r) + 1)), np.float32).ravel() for r in rows])
    # (a 0..1 image whose highlights go a little over 1 is clipped)
    return 0.0, float_white(sample[np.isfinite(sample) & (sample > 0)], hi)


@dataclass(frozen=True, eq=False)
class TiffColour:
    """How the decoded samples of one TIFF page become RGB uint8.

    ``photometric`` is the TIFF value (0 min-is-white, 1 min-is-black, 2 RGB, 3 palette,
    5 CMYK, 6 YCbCr, decoded to RGB by the codec); ``ncolor`` the colour samples (1, 3 or 4);
    ``alpha_index`` the sample holding alpha (None: no alpha), ``premultiplied`` whether it is
    associated alpha; ``bits`` the bits per sample; ``colormap`` the (n, 3) uint8 palette.
    """

    photometric: int
    ncolor: int
    alpha_index: int | None
    premultiplied: bool
    bits: int
    colormap: np.ndarray | None
    #: the bits unsigned colour samples use where fewer than ``bits`` (12-bit data in 16-bit
    #: samples: :meth:`TiffSource._significant_bits`); None: ``bits``. Alpha keeps ``bits``.
    colour_bits: int | None = None
    #: the sample values that map to black and white, for float samples (SMin/SMaxSampleValue,
    #: or what the reader measured; 0..1 by default)
    float_range: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def of_page(cls, page: Any, samples: int, label: str) -> "TiffColour":
        """The colour model of tifffile page ``page`` with ``samples`` samples per pixel.

        Raises :class:`~densedet_tile.errors.ImageReadError` naming ``label`` for a sample type,
        photometric interpretation or sample count this policy does not cover.
        """
        dtype = np.dtype(page.dtype) if page.dtype is not None else None
        photometric = int(page.photometric)
        bits = int(page.bitspersample)
        extras = [int(e) for e in (page.extrasamples or ())]
        if dtype is None or not (dtype == np.bool_ or dtype.kind in "uf"):
            raise ImageReadError(f"{label}: unsupported TIFF sample type {dtype} ({bits} bits)")
        if photometric not in (0, 1, 2, 3, 5, 6):
            name = getattr(page.photometric, "name", photometric)
            raise ImageReadError(f"{label}: unsupported TIFF photometric interpretation {name}")
        if photometric == 6 and int(page.compression) not in (6, 7):
            # (libjpeg turns a JPEG-compressed one into RGB; any other is the YCbCr samples as stored)
            kind = "uncompressed" if int(page.compression) == 1 else \
                f"{getattr(page.compression, 'name', page.compression)}-compressed"
            raise ImageReadError(f"{label}: a YCbCr TIFF is read only when JPEG-compressed; this one is {kind}: "
                                 "save it as RGB")
        if photometric == 5:  # SEPARATED: CMYK inks (InkSet 1, the default), as Pillow writes them
            inkset = page.tags.get(332)
            if inkset is not None and int(inkset.value) != 1:
                raise ImageReadError(f"{label}: separated TIFF with inks other than CMYK is not supported")
        ncolor = {2: 3, 6: 3, 5: 4}.get(photometric, 1)
        if samples < ncolor:
            raise ImageReadError(f"{label}: TIFF has {samples} samples per pixel, too few for its colour model")
        # Alpha: the first extra sample, if it is marked as (associated or unassociated) alpha.
        alpha_index = None
        premultiplied = False
        if samples > ncolor and extras and extras[0] in (1, 2):
            alpha_index = ncolor
            premultiplied = extras[0] == 1
        colormap = None
        if photometric == 3:
            cmap = page.colormap
            if cmap is None:
                raise ImageReadError(f"{label}: palette TIFF without a colour map")
            cmap = np.asarray(cmap)
            if cmap.dtype != np.uint8:
                cmap = scale_uint(cmap, 16)
            colormap = np.ascontiguousarray(cmap.T)  # (n, 3)
        return cls(photometric, ncolor, alpha_index, premultiplied, bits, colormap)

    def to_rgb8(self, seg: np.ndarray) -> np.ndarray:
        """Decoded segment samples (h, w, S) in the file's dtype -> (h, w, 3) uint8 RGB."""
        dt = seg.dtype
        if dt == np.bool_:
            v = seg.astype(np.uint8) * np.uint8(255)
        elif dt.kind == "f":
            lo, hi = self.float_range
            v = scale_range(np.nan_to_num(seg, nan=lo, posinf=hi, neginf=lo), lo, hi)
        elif self.photometric == 3:
            v = seg  # palette indices, looked up below
        else:
            bits = self.bits if self.bits <= dt.itemsize * 8 else dt.itemsize * 8
            cbits = min(self.colour_bits, bits) if self.colour_bits else bits
            v = scale_uint(seg, cbits)
            if self.alpha_index is not None and cbits != bits:  # alpha at the file's own bits
                v[..., self.alpha_index] = scale_uint(seg[..., self.alpha_index], bits)
        if self.colormap is not None:
            idx = np.minimum(v[..., 0].astype(np.intp), len(self.colormap) - 1)
            return self.colormap[idx]
        if self.ncolor == 1:
            g = v[..., 0]
            if self.photometric == 0:  # min-is-white
                g = 255 - g
            rgb = gray_to_rgb(g)
        elif self.photometric == 5:
            rgb = cmyk_to_rgb(v[..., :4])
        else:
            rgb = v[..., :3]
        if self.alpha_index is not None:
            return composite_white(rgb, v[..., self.alpha_index], premultiplied=self.premultiplied)
        return np.ascontiguousarray(rgb)
