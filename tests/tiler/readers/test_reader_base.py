"""The ImageSource interface: window checks and the read-only stats snapshot."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tifffile

from densedet_tile import InvalidInputError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import DECODERS, SourceStats

from reader_samples import noise, png_bytes


def test_window_outside_image_is_rejected():
    src = open_image(noise(10, 10))
    for args in [(-1, 0, 5, 5), (0, 0, 11, 5), (6, 6, 5, 5), (0, 0, 0, 3), (0.5, 0, 1, 1)]:
        with pytest.raises(InvalidInputError):
            src.read(*args)


def test_stats_per_source_kind(tmp_path):
    rgb = noise(20, 30)
    tifffile.imwrite(tmp_path / "t.tif", rgb, photometric="rgb", tile=(16, 16))
    for decoder in DECODERS:  # TIFF is always read through tifffile
        with open_image(tmp_path / "t.tif", decoder=decoder) as src:
            assert src.stats == SourceStats(decoder="tifffile")
    src = open_image(rgb, decoder="pillow")
    assert src.stats == SourceStats(decoder=None, full_decodes=0)
    # a 16-bit gray PNG: declined by imagecodecs from its mode (Pillow's I;16), so Pillow decodes it once
    (tmp_path / "g16.png").write_bytes(png_bytes(noise(6, 9, dtype=np.uint16, hi=65536)[..., 0], colortype=0))
    with open_image(tmp_path / "g16.png") as src:
        assert src.stats.full_decodes == 1 and src.decoder == src.stats.decoder == "pillow"


def test_stats_is_a_read_only_snapshot(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, noise(32, 32), photometric="rgb", tile=(16, 16))
    with open_image(path) as src:
        before = src.stats
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.cache_hits = 5  # type: ignore[misc]
        with pytest.raises(AttributeError):
            src.stats = before  # type: ignore[misc]
        src.read(0, 0, 32, 32)
        assert before.segments_decoded == 0 and src.stats.segments_decoded == 4
        assert src.stats.cached_segments == 4 and src.stats.cache_bytes == 4 * 16 * 16 * 3
    assert src.stats.cached_segments == 0 and src.stats.cache_bytes == 0 and src.stats.segments_decoded == 4
