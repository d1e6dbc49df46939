"""TIFF strips bigger than the segment cache (a whole image in one strip, tifffile's default):
read in place when uncompressed, decoded once when compressed, never once per window."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from densedet_tile import ImageReadError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import tiff as tiff_mod

from reader_samples import noise, read_all

# Windows of a 3x3 grid with overlap, as the tiler asks for them, row by row.
WINDOWS = [(x, y, 60, 50) for y in (0, 40, 70) for x in (0, 45, 90)]


def _check_windows(src, full):
    for x, y, w, h in WINDOWS:
        np.testing.assert_array_equal(src.read(x, y, w, h), full[y : y + h, x : x + w])


@pytest.mark.parametrize("layout", [
    dict(),  # one contiguous strip (tifffile's default)
    dict(rowsperstrip=33),
    dict(planarconfig="separate"),
    dict(byteorder=">"),
])
def test_uncompressed_big_strips_are_read_in_place(tmp_path, layout):
    full = noise(120, 150)
    path = tmp_path / "s.tif"
    data = np.moveaxis(full, -1, 0) if layout.get("planarconfig") == "separate" else full  # planes first
    tifffile.imwrite(path, data, photometric="rgb", **layout)
    # a budget far below one strip: without reading in place every window would decode it again
    with open_image(path, tiff_cache_bytes=1000) as src:
        _check_windows(src, full)
        assert src.stats.segments_decoded == 0 and src.stats.cache_bytes == 0
        np.testing.assert_array_equal(read_all(src), full)


def test_uncompressed_big_strip_colour_conversions(tmp_path):
    rgba = noise(90, 110, 4)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"])
    with open_image(path, tiff_cache_bytes=1000) as src, open_image(path) as ref:
        assert src.stats.segments_decoded == 0
        np.testing.assert_array_equal(src.read(10, 20, 70, 60), ref.read(10, 20, 70, 60))
    deep = noise(90, 110, 3, np.uint16, 65536)
    path16 = tmp_path / "deep.tif"
    tifffile.imwrite(path16, deep, photometric="rgb", byteorder=">")
    with open_image(path16, tiff_cache_bytes=1000) as src:
        expected = ((deep.astype(np.float32) * (255.0 / 65535)) + 0.5).astype(np.uint8)
        np.testing.assert_array_equal(src.read(5, 7, 100, 80), expected[7:87, 5:105])


def test_compressed_big_strip_is_decoded_once(tmp_path):
    full = noise(120, 150)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, full, photometric="rgb", compression="zlib", rowsperstrip=120)
    with open_image(path, tiff_cache_bytes=1000) as src:
        _check_windows(src, full)
        assert src.stats.segments_decoded == 1  # kept beside the cache, not decoded per window


def test_compressed_big_strips_keep_a_bounded_number(tmp_path):
    full = noise(120, 150)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, full, photometric="rgb", compression="zlib", rowsperstrip=30)  # 4 strips
    strip = 30 * 150 * 3
    with open_image(path, tiff_cache_bytes=1000) as src:
        for x, y, w, h in WINDOWS:  # each spans 2 strips, both kept while it is the latest
            np.testing.assert_array_equal(src.read(x, y, w, h), full[y : y + h, x : x + w])
            spanned = (y + h - 1) // 30 - y // 30 + 1
            assert src.stats.cached_segments == spanned
            assert src.stats.cache_bytes == spanned * strip  # what is kept is counted
        before = src.stats.segments_decoded
        src.read(0, 0, 150, 10)  # the last window needed strips 2 and 3 only: strip 0 is decoded again
        assert src.stats.segments_decoded == before + 1
        assert src.stats.cached_segments == 1 and src.stats.cache_bytes == strip


def test_big_segment_conversion_in_bands_equals_whole(tmp_path, monkeypatch):
    rgba = noise(64, 80, 4)
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["assocalpha"], compression="zlib")
    with open_image(path) as ref:
        whole = read_all(ref)
    monkeypatch.setattr(tiff_mod, "_CONVERT_CHUNK_BYTES", 80 * 4 * 3)  # 3 rows at a time
    with open_image(path) as src:
        np.testing.assert_array_equal(read_all(src), whole)


def test_truncated_uncompressed_strip_is_a_clear_error(tmp_path):
    full = noise(60, 70)
    path = tmp_path / "cut.tif"
    tifffile.imwrite(path, full, photometric="rgb")
    data = path.read_bytes()
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[0]
    path.write_bytes(data[: offset + full.nbytes // 2])
    with pytest.raises(ImageReadError, match=r"cut\.tif.*truncated"):
        with open_image(path, tiff_cache_bytes=100) as src:
            src.read(0, 0, 70, 60)


def test_strips_a_window_cannot_hold_together_are_decoded_once_per_sweep(tmp_path):
    # Each strip fits the budget alone, two do not, and every window spans two: a plain LRU
    # drops the first strip for the second, and the next window needs both again.
    full = noise(120, 200)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, full, photometric="rgb", compression="zlib", rowsperstrip=30)  # 4 strips
    strip = 30 * 200 * 3
    budget = strip + strip // 2
    windows = [(x, y, 50, 50) for y in (0, 40, 70) for x in (0, 40, 80, 120, 150)]  # row-major, overlapping
    with open_image(path, tiff_cache_bytes=budget) as src:
        for x, y, w, h in windows:
            np.testing.assert_array_equal(src.read(x, y, w, h), full[y : y + h, x : x + w])
            assert src.stats.cache_bytes <= max(budget, 2 * strip)  # what one window needs, no more
        assert src.stats.segments_decoded == 4  # each strip once (a plain LRU: 2 per window, 28)


def test_a_whole_image_window_keeps_no_strip_over_the_budget(tmp_path):
    # strips wholly inside the window are of no use to a neighbour: only the budget is kept
    full = noise(120, 200)
    path = tmp_path / "z.tif"
    tifffile.imwrite(path, full, photometric="rgb", compression="zlib", rowsperstrip=30)
    budget = 30 * 200 * 3 + 100
    with open_image(path, tiff_cache_bytes=budget) as src:
        np.testing.assert_array_equal(read_all(src), full)
        assert src.stats.cache_bytes <= budget and src.stats.cached_segments == 1


def _float_of(full):
    return full.astype(np.float32)  # 8-bit values stored as floats: the reader finds the 0..255 scale


@pytest.mark.parametrize("layout", [dict(), dict(planarconfig="separate")])
def test_float_big_strip_scale_is_measured_without_decoding_it(tmp_path, monkeypatch, layout):
    full = noise(120, 150)
    data = np.moveaxis(full, -1, 0) if layout else full
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, _float_of(data), photometric="rgb", **layout)

    def refuse(self, index):
        raise AssertionError("an uncompressed strip was decoded whole")

    monkeypatch.setattr(tiff_mod.TiffSource, "_decode_raw", refuse)
    with open_image(path, tiff_cache_bytes=1000) as src:
        _check_windows(src, full)
        assert src.stats.segments_decoded == 0


def test_float_compressed_strip_measured_at_open_is_not_decoded_again(tmp_path, monkeypatch):
    full = noise(120, 150)
    path = tmp_path / "fz.tif"
    tifffile.imwrite(path, _float_of(full), photometric="rgb", compression="zlib", rowsperstrip=120)
    calls = []
    decode = tiff_mod.TiffSource._decode_raw
    monkeypatch.setattr(tiff_mod.TiffSource, "_decode_raw", lambda self, i: calls.append(i) or decode(self, i))
    with open_image(path, tiff_cache_bytes=1000) as src:
        assert len(calls) == src.stats.segments_decoded == 1  # measured at open, counted
        _check_windows(src, full)
        assert len(calls) == src.stats.segments_decoded == 1  # and kept for the windows


def test_float_panorama_with_black_margins_keeps_its_8_bit_scale(tmp_path):
    # 3 rows x 40 columns of tiles with a one-tile black margin left and right (a stitched
    # panorama): the segments sampled for the scale must not all fall in the margins
    full = noise(48, 640)
    fl = _float_of(full)
    fl[:, :16] = 0
    fl[:, -16:] = 0
    path = tmp_path / "pano.tif"
    tifffile.imwrite(path, fl, photometric="rgb", tile=(16, 16))
    with open_image(path) as src:
        np.testing.assert_array_equal(read_all(src)[:, 16:-16], full[:, 16:-16])


@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_a_strip_shorter_than_the_declared_size_is_refused_not_read_on(tmp_path, dtype):
    # an outside review: a header saying more rows than its strip's byte count holds was read on
    # into the next page's pixels (exit 0, wrong image) where the strip was read in place
    full = noise(120, 150) if dtype == "uint8" else noise(120, 150).astype(np.float32) / 255
    path = tmp_path / "long.tif"
    with tifffile.TiffWriter(path) as w:
        w.write(full, photometric="rgb", rowsperstrip=120)
        w.write(np.full_like(full, 200 if dtype == "uint8" else 0.8), photometric="rgb", rowsperstrip=120)
    with tifffile.TiffFile(path, mode="r+b") as t:
        t.pages[0].tags["ImageLength"].overwrite(180)
        t.pages[0].tags["RowsPerStrip"].overwrite(180)
    with pytest.raises(ImageReadError, match=r"long\.tif: the TIFF's strip 0 holds \d+ bytes, fewer than the \d+ "
                                             r"its declared size needs"):
        with open_image(path, tiff_cache_bytes=1000) as src:
            src.read(0, 0, src.width, src.height)
