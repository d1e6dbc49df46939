"""Image readers: one ``ImageSource`` interface over Pillow files, TIFF/BigTIFF and numpy arrays.

Every source exposes the *upright* image (EXIF / TIFF orientation applied) and hands out
windows of it with :meth:`ImageSource.read`, always as ``(h, w, 3)`` uint8 RGB, C-contiguous.
Coordinates are integer pixels in the upright frame, origin top-left, ``x`` to the right.
:func:`open_image` picks the reader; each source's ``stats`` (:class:`SourceStats`) says what
decoded it, what it holds, and how much it has decoded.

Memory model
------------
* 8-bit RGB and gray JPEGs and PNGs, and still WebPs, are decoded once, at :func:`open_image`,
  by imagecodecs (libjpeg-turbo, libpng, libwebp) straight into a 3-byte-per-pixel numpy array
  (4 for a WebP with alpha) when imagecodecs is installed (same pixels as Pillow's decoders),
  so a panorama costs one decoded copy. Windows are small copies of it. Pillow still reads the
  header (size, EXIF orientation). ``decoder="pillow"`` leaves them to Pillow;
  ``decoder="imagecodecs"`` insists on imagecodecs.
* Other Pillow formats (PNG, animated WebP, BMP, GIF, CMYK JPEG ...) are decoded once, at
  :func:`open_image`, and kept in Pillow's own buffer in their native mode. Nothing is
  converted or rotated up front: each :meth:`~ImageSource.read` crops the matching window of
  the stored (un-rotated) image, converts only that crop to RGB uint8 and rotates only that
  crop. So an image costs one decoded copy (Pillow stores RGB as 4 bytes per pixel) plus the
  windows in flight; of a WebP or AVIF, whose Pillow image object would keep its codec's
  decoder (and that decoder's own copies of the image), only a plain copy of the pixels is kept.
* TIFF and BigTIFF are read through tifffile region by region: a window decodes only the TIFF
  tiles (or strips) it overlaps, and a bounded LRU cache of decoded segments lets overlapping
  windows share work. It exceeds its budget only by the segments the latest window shares with
  its neighbours, when those alone are over it (big strips): at most one window's segments. A
  40000 x 40000 TIFF is never wholly in memory.
* numpy arrays are never copied whole; windows are small copies (views for RGB windows that
  span whole rows); gray and RGBA arrays are converted window by window.

The colour policy (gray, alpha, palette, CMYK, 16-bit and float to RGB uint8) is in
:mod:`.colour`, orientation in :mod:`.orientation`.

Modules: :mod:`.base` (the interface, stats, size check), :mod:`.array`, :mod:`.pillow` with
:mod:`.compact` (the imagecodecs path), :mod:`.tiff` with :mod:`.segment_cache`, and
:mod:`.opener` (:func:`open_image`).
"""

from .array import ArraySource
from .base import DEFAULT_MAX_PIXELS, ImageSource, SourceStats
from .opener import IMAGE_SUFFIXES, open_image
from .pillow import DECODERS, Decoder, PillowSource
from .tiff import DEFAULT_TIFF_CACHE_BYTES, TiffSource

__all__ = [
    "IMAGE_SUFFIXES",
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
