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


def test_held_segments_stay_beyond_the_budget_until_the_next_window():
    strip = np.zeros((4, 10, 3), np.uint8)  # 120 bytes
    cache = SegmentCache(200)  # one strip fits, two do not
    cache.hold([0, 1])  # a window spanning strips 0 and 1, both shared with its neighbours
    cache.put(0, strip.copy())
    cache.put(1, strip.copy())  # a plain LRU would drop strip 0 here
    assert cache.get(0) is not None and cache.get(1) is not None
    assert len(cache) == 2 and cache.nbytes == 240  # over the budget by what the window needs
    cache.put(5, strip.copy())  # not held, and no room beside the held ones: not kept
    assert cache.get(5) is None and len(cache) == 2
    cache.hold([1, 2])  # the next window: strip 0 goes, back within the budget
    assert cache.get(0) is None and cache.get(1) is not None and cache.nbytes == 120
    cache.put(2, strip.copy())
    assert cache.nbytes == 240 and len(cache) == 2
    cache.hold([])  # a window that shares nothing: the budget holds again
    assert cache.nbytes <= 200 and len(cache) == 1
    big = np.zeros((10, 10, 3), np.uint8)  # 300 bytes, over the whole budget
    cache.hold([7])
    cache.put(7, big)
    assert cache.get(7) is not None and cache.nbytes == 300  # kept while a window needs it
    cache.hold([])
    assert len(cache) == 0 and cache.nbytes == 0
    disabled = SegmentCache(0)
    disabled.hold([0])
    disabled.put(0, strip.copy())
    assert disabled.get(0) is None and len(disabled) == 0  # a disabled cache keeps nothing, held or not
