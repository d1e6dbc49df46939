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
@pytest.mark.parametrize("bits", [10, 12, 14])
def test_10_12_and_14_bit_data_in_16_bit_samples_is_read_over_its_own_range(tmp_path, caplog, layout, bits):
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
    # the SMaxSampleValue tag says where white is: a value above it clips, never wraps round
    gray = noise(64, 80, None, np.uint16, 4096)
    gray[0, 0] = 9000
    path = tmp_path / "tagged.tif"
    tifffile.imwrite(path, gray, photometric="minisblack", extratags=[(281, "H", 1, 4095, True)])
    with open_image(path) as src:
        got = read_all(src)
    assert got[0, 0].tolist() == [255, 255, 255]
    np.testing.assert_array_equal(got[..., 0], _expected(gray, 12))


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
