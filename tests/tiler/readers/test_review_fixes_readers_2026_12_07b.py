"""Faults found by an outside review of the readers on giant and odd images (2026-12-07, stop
70): each test fails on the code before it."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers.colour import scale_uint

from reader_samples import noise, read_all

tifffile = pytest.importorskip("tifffile")


def _expected(v: np.ndarray, bits: int) -> np.ndarray:
    return np.minimum(v.astype(np.float32) * np.float32(255.0 / ((1 << bits) - 1)) + np.float32(0.5),
                      255).astype(np.uint8)


@pytest.mark.parametrize("layout", [dict(), dict(tile=(32, 32), compression="zlib"), dict(rowsperstrip=16),
                                    dict(planarconfig="separate")])
@pytest.mark.parametrize("bits", [10, 12])
def test_10_and_12_bit_data_in_16_bit_samples_is_read_over_its_own_range(tmp_path, caplog, layout, bits):
    # a machine-vision camera's 12-bit data stored in 16-bit samples read 16 times too dark (its
    # preview near black, 103 products counted for the 128 of the same picture at full range)
    rgb = noise(96, 128, 3, np.uint16, 1 << bits)
    rgb[5, 7] = (1 << bits) - 1  # (its white, somewhere)
    path = tmp_path / f"d{bits}.tif"
    data = np.moveaxis(rgb, -1, 0) if layout.get("planarconfig") == "separate" else rgb
    tifffile.imwrite(path, data, photometric="rgb", **layout)
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        got = read_all(src)
    np.testing.assert_array_equal(got, _expected(rgb, bits))
    assert f"({bits}-bit data)" in caplog.text and str(path) in caplog.text


def test_a_16_bit_image_that_uses_its_range_keeps_it_and_brighter_values_clip_to_white(tmp_path, caplog):
    full = noise(64, 80, 3, np.uint16, 65536)
    path = tmp_path / "full.tif"
    tifffile.imwrite(path, full, photometric="rgb")
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        np.testing.assert_array_equal(read_all(src), _expected(full, 16))
    assert "bit data" not in caplog.text
    # an underexposed photo using a quarter of its range keeps its bits (14-bit data with it)
    dim = noise(64, 80, 3, np.uint16, 16384)
    tifffile.imwrite(tmp_path / "dim.tif", dim, photometric="rgb")
    with open_image(tmp_path / "dim.tif") as src:
        np.testing.assert_array_equal(read_all(src), _expected(dim, 16))
    # a MaxSampleValue tag under what the pixels show, or not a number, does not count
    for name, tag in (("low_tag.tif", (281, "H", 1, 255, True)), ("text_tag.tif", (281, "s", 0, "4095", True))):
        tifffile.imwrite(tmp_path / name, full, photometric="rgb", extratags=[tag])
        with open_image(tmp_path / name) as src:
            np.testing.assert_array_equal(read_all(src), _expected(full, 16))
    # ... one above them says where white is (a brighter pixel somewhere unsampled would clip)
    gray = noise(64, 80, None, np.uint16, 3000)
    tifffile.imwrite(tmp_path / "tagged.tif", gray, photometric="minisblack", extratags=[(281, "H", 1, 4095, True)])
    with open_image(tmp_path / "tagged.tif") as src:
        np.testing.assert_array_equal(read_all(src)[..., 0], _expected(gray, 12))


def test_alpha_keeps_the_file_s_bits_and_opening_decodes_nothing(tmp_path):
    rgba = noise(48, 64, 4, np.uint16, 4096)
    rgba[..., 3] = 32768  # half transparent, at 16 bits
    path = tmp_path / "rgba.tif"
    tifffile.imwrite(path, rgba, photometric="rgb", extrasamples=["unassalpha"], tile=(16, 16), compression="zlib")
    with open_image(path) as src:
        assert src.stats.segments_decoded == 0  # (its size alone: nothing decoded)
        got = read_all(src).astype(np.float64)
    colour = _expected(rgba[..., :3], 12).astype(np.float64)
    a = 32768 / 65535
    np.testing.assert_allclose(got, colour * a + 255 * (1 - a), atol=1.5)


def test_an_uncompressed_big_strip_of_12_bit_data_is_sampled_in_place(tmp_path):
    gray = noise(120, 150, None, np.uint16, 4096)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, gray, photometric="minisblack")
    with open_image(path, tiff_cache_bytes=1000) as src:
        assert src.stats.segments_decoded == 0
        np.testing.assert_array_equal(src.read(10, 20, 70, 60)[..., 1], _expected(gray, 12)[20:80, 10:80])


def test_scale_uint_clips_values_above_the_bits_it_is_told():
    a = np.array([0, 4095, 4096, 65535], np.uint16)
    assert scale_uint(a, 12).tolist() == [0, 255, 255, 255]
    assert scale_uint(a, 16).tolist() == [0, 16, 16, 255]
    assert int(scale_uint(np.array(5000, np.uint16), 12)) == 255 and int(scale_uint(np.uint16(100), 12)) == 6
