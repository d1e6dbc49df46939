"""The tile grid: coverage, bounds, overlap and edge flags, by properties and by example."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from densedet_tile import InvalidInputError, TileSpec
from densedet_tile.tiler import make_grid


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 9000),
    height=st.integers(1, 9000),
    tile=st.integers(32, 3000),
    overlap=st.floats(0.0, 0.8),  # above, many images are refused for their tile count (below)
)
def test_grid_covers_image_within_bounds(width, height, tile, overlap):
    spec = TileSpec(tile=tile, overlap=overlap)
    assume((width / spec.stride + 1) * (height / spec.stride + 1) < 20_000)  # keep examples quick
    tiles = make_grid(width, height, spec)
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    assert len(tiles) == len(xs) * len(ys)
    for t in tiles:
        # inside the image, full size where the image allows
        assert 0 <= t.x and t.x2 <= width and 0 <= t.y and t.y2 <= height
        assert t.w == min(tile, width) and t.h == min(tile, height)
    # coverage along each axis: consecutive windows leave no gap, first at 0, last flush
    for starts, length, size in ((xs, width, min(tile, width)), (ys, height, min(tile, height))):
        assert starts[0] == 0 and starts[-1] + size == length
        gaps = np.diff(starts)
        assert np.all(gaps > 0)
        # neighbours overlap by at least the requested overlap (the last one may overlap more)
        assert np.all(size - gaps >= min(spec.overlap_px, size - 1))


@settings(max_examples=200, deadline=None)
@given(width=st.integers(1, 6000), height=st.integers(1, 6000), tile=st.integers(32, 2000))
def test_interior_flags_match_neighbours(width, height, tile):
    tiles = make_grid(width, height, TileSpec(tile=tile, overlap=0.2))
    xs = sorted({t.x for t in tiles})
    ys = sorted({t.y for t in tiles})
    for t in tiles:
        assert t.interior_left == (t.x != xs[0])
        assert t.interior_right == (t.x != xs[-1])
        assert t.interior_top == (t.y != ys[0])
        assert t.interior_bottom == (t.y != ys[-1])
    assert [t.index for t in tiles] == list(range(len(tiles)))


def test_every_pixel_covered_small_exhaustive():
    for w, h in [(1, 1), (100, 37), (1281, 1280), (2560, 2560), (3000, 1800)]:
        tiles = make_grid(w, h, TileSpec(tile=640, overlap=0.25))
        cover = np.zeros((h, w), np.int32)
        for t in tiles:
            cover[t.y : t.y2, t.x : t.x2] += 1
        assert cover.min() >= 1


def test_image_smaller_than_tile_is_one_tile():
    (t,) = make_grid(500, 300, TileSpec(tile=1280, overlap=0.2))
    assert (t.x, t.y, t.w, t.h) == (0, 0, 500, 300)
    assert t.interior == (False, False, False, False)


def test_known_layout_3000x1800():
    tiles = make_grid(3000, 1800, TileSpec(tile=1280, overlap=0.2))
    assert sorted({t.x for t in tiles}) == [0, 1024, 1720]
    assert sorted({t.y for t in tiles}) == [0, 520]


@pytest.mark.parametrize("bad", [dict(tile=0), dict(tile=16), dict(tile=1.5), dict(overlap=1.0), dict(overlap=-0.1), dict(tile=True)])
def test_tilespec_rejects_bad_values(bad):
    with pytest.raises(InvalidInputError):
        TileSpec(**bad)


def test_grid_rejects_empty_image():
    with pytest.raises(InvalidInputError, match="0x10"):
        make_grid(0, 10, TileSpec())


def test_an_absurd_number_of_tiles_is_refused_before_any_is_made():
    from densedet_tile.tiler.grid import MAX_TILES

    with pytest.raises(InvalidInputError, match="is the whole tile"):
        TileSpec(tile=32, overlap=0.99)  # rounds to 32 px of overlap: the grid would never advance
    with pytest.raises(InvalidInputError, match=r"overlap 0.97 cuts this 2048x1536 image into \d+ tiles"):
        make_grid(2048, 1536, TileSpec(tile=64, overlap=0.97))
    assert len(make_grid(2048, 1536, TileSpec(tile=64, overlap=0.75))) == 125 * 93  # 0.75 is allowed (16x)
    with pytest.raises(InvalidInputError, match=r"tiles of 32 px with overlap 0 for a 60000x60000 image"):
        make_grid(60_000, 60_000, TileSpec(tile=32, overlap=0.0))
    assert len(make_grid(100_000, 3000, TileSpec(tile=256, overlap=0.2))) < MAX_TILES  # a big panorama is fine


def test_axis_starts_names_a_bad_stride_or_tile():
    from densedet_tile.tiler import axis_starts

    assert axis_starts(3000, 1280, 1024) == [0, 1024, 1720] and axis_starts(np.int64(500), 1280, 1024) == [0]
    for args, word in [((3000, 1280, 0), "stride"), ((3000, 1280, -5), "stride"), ((3000, 0, 10), "tile"),
                       ((-1, 1280, 1024), "length"), ((3000, 1280, 2.5), "stride"), ((3000, True, 10), "tile")]:
        with pytest.raises(InvalidInputError, match=f"axis_starts: {word} must be"):
            axis_starts(*args)
