"""The TIFF decoded-segment cache: bounded in bytes, least recently used dropped first."""

from __future__ import annotations

import numpy as np
import tifffile

from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers.segment_cache import SegmentCache

from reader_samples import noise, read_all


def test_tiff_cache_stays_within_its_budget(tmp_path):
    full = noise(128, 128)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(16, 16))
    budget = 5 * 16 * 16 * 3
    with open_image(path, tiff_cache_bytes=budget) as src:
        for y in range(0, 128, 16):
            src.read(0, y, 128, 16)
            assert src.stats.cache_bytes <= budget and src.stats.cached_segments <= 5
        np.testing.assert_array_equal(read_all(src), full)


def test_least_recently_used_segment_goes_first():
    seg = np.zeros((4, 4, 3), np.uint8)  # 48 bytes
    cache = SegmentCache(3 * seg.nbytes)
    for key in range(3):
        cache.put(key, seg.copy())
    assert cache.get(0) is not None and cache.hits == 1  # 0 is now the most recently used
    cache.put(3, seg.copy())  # over budget: 1, the least recently used, goes
    assert cache.get(1) is None and cache.hits == 1
    assert [k for k in range(4) if cache.get(k) is not None] == [0, 2, 3]
    assert len(cache) == 3 and cache.nbytes == 3 * seg.nbytes
    cache.put(9, np.zeros((8, 8, 3), np.uint8))  # larger than the whole budget: not kept
    assert cache.get(9) is None and len(cache) == 3
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_zero_budget_keeps_nothing():
    cache = SegmentCache(0)
    cache.put(0, np.zeros((1, 1, 3), np.uint8))
    assert cache.get(0) is None and len(cache) == 0 and cache.nbytes == 0


def test_oversize_slots_keep_the_latest_segments_larger_than_the_budget():
    small, big = np.zeros((4, 4, 3), np.uint8), np.zeros((8, 8, 3), np.uint8)  # 48 and 192 bytes
    cache = SegmentCache(2 * small.nbytes, oversize_slots=2)
    cache.put(0, small.copy())
    for key in (10, 11, 12):
        cache.put(key, big.copy())
    assert cache.get(10) is None and cache.get(11) is not None and cache.get(12) is not None
    assert cache.get(0) is not None and len(cache) == 3 and cache.nbytes == small.nbytes + 2 * big.nbytes
    cache.put(1, small.copy())
    cache.put(2, small.copy())  # the small ones keep their own budget: 0 goes
    assert cache.get(0) is None and cache.get(11) is not None
    assert SegmentCache(0, oversize_slots=2).oversize_slots == 0  # a disabled cache keeps nothing
