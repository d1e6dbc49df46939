"""Lazy prefetched tile batches: order, completeness, bounded read-ahead, errors, early stop."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import tifffile

from densedet_tile import InvalidInputError, TileSpec
from densedet_tile.tiler import iter_tile_batches, make_grid, open_image
from densedet_tile.tiler.readers import ArraySource

READER_THREAD = "densedet-tile-reader"


def reader_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == READER_THREAD]


class CountingSource(ArraySource):
    """An array source that counts reads and can fail at a chosen read."""

    def __init__(self, array: np.ndarray, *, fail_at: int | None = None) -> None:
        super().__init__(array)
        self.reads = 0
        self.fail_at = fail_at
        self.lock = threading.Lock()

    def read(self, x, y, w, h):
        with self.lock:
            n = self.reads
            self.reads += 1
        if self.fail_at is not None and n == self.fail_at:
            raise OSError(f"disk on fire at read {n}")
        return super().read(x, y, w, h)


@pytest.fixture
def image() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (300, 420, 3), dtype=np.uint8)


@pytest.mark.parametrize("batch_size, prefetch", [(1, 2), (3, 1), (4, 0), (100, 3)])
def test_batches_are_complete_and_in_order(image, batch_size, prefetch):
    tiles = make_grid(420, 300, TileSpec(tile=64, overlap=0.25))
    got_tiles = []
    sizes = []
    for batch_tiles, pixels in iter_tile_batches(open_image(image), tiles, batch_size, prefetch=prefetch):
        assert len(batch_tiles) == len(pixels)
        sizes.append(len(batch_tiles))
        for t, p in zip(batch_tiles, pixels):
            assert p.shape == (t.h, t.w, 3) and p.dtype == np.uint8
            np.testing.assert_array_equal(p, image[t.y : t.y2, t.x : t.x2])
        got_tiles.extend(batch_tiles)
    assert got_tiles == tiles
    assert all(s == batch_size for s in sizes[:-1]) and 1 <= sizes[-1] <= batch_size
    assert reader_threads() == []


def test_nothing_is_read_before_the_first_batch_is_asked_for(image):
    src = CountingSource(image)
    gen = iter_tile_batches(src, make_grid(420, 300, TileSpec(tile=64, overlap=0.0)), 2)
    time.sleep(0.05)
    assert src.reads == 0 and reader_threads() == []
    next(gen)
    gen.close()
    assert reader_threads() == []


@pytest.mark.parametrize("prefetch", [1, 2, 4])
def test_read_ahead_is_bounded_by_prefetch(image, prefetch):
    src = CountingSource(image)
    tiles = make_grid(420, 300, TileSpec(tile=32, overlap=0.0))  # 140 tiles
    bs = 3
    for k, (batch_tiles, _) in enumerate(iter_tile_batches(src, tiles, bs, prefetch=prefetch), start=1):
        time.sleep(0.002)  # let the reader run as far ahead as it is allowed to
        # queued (prefetch) + the one being filled + the one held here
        assert src.reads <= (k + prefetch + 1) * bs
        if k == 5:
            # A slow consumer lets the reader fill the queue: it reads ahead, then stops there.
            deadline = time.monotonic() + 10
            while src.reads < (k + prefetch) * bs and time.monotonic() < deadline:
                time.sleep(0.005)
            assert src.reads >= (k + prefetch) * bs  # it did read ahead while we were busy
            time.sleep(0.05)
            assert src.reads <= (k + prefetch + 1) * bs
    assert src.reads == len(tiles)


def test_reader_exception_reaches_the_caller_after_earlier_batches(image):
    src = CountingSource(image, fail_at=7)
    tiles = make_grid(420, 300, TileSpec(tile=64, overlap=0.0))
    delivered = []
    with pytest.raises(OSError, match="disk on fire at read 7"):
        for batch_tiles, _ in iter_tile_batches(src, tiles, 2):
            delivered.extend(batch_tiles)
    assert delivered == tiles[:6]  # batches 0..2 are whole; batch 3 held the failing read
    assert reader_threads() == []


@pytest.mark.parametrize("how", ["break", "close", "del"])
def test_early_stop_leaves_no_thread_behind(image, how):
    src = CountingSource(image)
    tiles = make_grid(420, 300, TileSpec(tile=32, overlap=0.0))
    gen = iter_tile_batches(src, tiles, 1, prefetch=2)
    if how == "break":
        for _ in gen:
            break
        gen.close()
    else:
        next(gen)
        time.sleep(0.02)  # the reader is now blocked on a full queue
        assert len(reader_threads()) == 1
        if how == "close":
            gen.close()
        else:
            del gen
    deadline = time.monotonic() + 5
    while reader_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader_threads() == []
    assert src.reads < len(tiles)


def test_tiff_tiles_are_decoded_once_over_a_row_major_grid(tmp_path):
    full = np.random.default_rng(3).integers(0, 256, (500, 700, 3), dtype=np.uint8)
    path = tmp_path / "g.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(64, 64), compression="zlib", bigtiff=True)
    tiles = make_grid(700, 500, TileSpec(tile=160, overlap=0.2))
    with open_image(path) as src:
        for batch_tiles, pixels in iter_tile_batches(src, tiles, 4):
            for t, p in zip(batch_tiles, pixels):
                np.testing.assert_array_equal(p, full[t.y : t.y2, t.x : t.x2])
        n_tiff_tiles = -(-700 // 64) * -(-500 // 64)
        assert src.segments_decoded == n_tiff_tiles


@pytest.mark.parametrize("kw", [dict(batch_size=0), dict(batch_size=1.5), dict(batch_size=2, prefetch=-1)])
def test_bad_options(image, kw):
    with pytest.raises(InvalidInputError):
        iter_tile_batches(open_image(image), [], **kw)


def test_no_tiles_gives_no_batches(image):
    assert list(iter_tile_batches(open_image(image), [], 4)) == []
