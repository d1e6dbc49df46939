"""Fixes after a second outside review of the seams with a real detector's noise (2026-12-07,
stop 69): each test fails on the code before it where it says so."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.merge import merge_tiles
from densedet_tile.tiler.grid import make_grid


def _detections(tiles, views: dict[int, list[float]]) -> list:
    """One box per tile index in ``views`` (global xyxy, moved into the tile's frame)."""
    out = []
    for k, t in enumerate(tiles):
        if k in views:
            b = np.subtract(views[k], [t.x, t.y, t.x, t.y])
            out.append(dt.Detections(np.array([b], np.float32), np.array([0.9], np.float32), np.array([0])))
        else:
            out.append(dt.Detections.empty())
    return out


@pytest.mark.parametrize("mode", ["wbf", "nms"])
@pytest.mark.parametrize("last_top", [429.0, 430.0])
def test_a_last_row_moved_a_few_pixels_still_joins_the_row_two_back(mode, last_top):
    # rows at 0, 142, 284, 426 and 429 (the last moved 3 px to end at the image's edge; the row
    # two back overlaps it by 47 px, under the 49 px the seam repair trusts). One product,
    # 20..90 x 398..578: cut by row 284's bottom edge and by both lower rows' top edges. Row
    # 426's view starts at 430, row 429's at ``last_top``: a pixel higher (429), it passed as
    # the fuller view, row 426's was dropped, and row 429's could not join row 284's fragment
    # (not its neighbour): two boxes under NMS, one short one under the fusion (before the fix)
    tiles = make_grid(192, 621, dt.TileSpec(192, 50 / 192))
    assert sorted({t.y for t in tiles}) == [0, 142, 284, 426, 429]
    views = {2: [20, 398, 90, 474], 3: [21, 430, 89, 578], 4: [20, last_top, 90, 578]}
    merged = merge_tiles(tiles, _detections(tiles, views), dt.MergeSpec(mode=mode))
    assert len(merged) == 1
    np.testing.assert_allclose(merged.xyxy[0], [20, 398, 90, 578], atol=1.0)


def test_a_last_row_moved_far_still_keeps_its_own_rank():
    # the rank rule's other side: rows 0, 142, 284, 400 of tile 192 at a 50 px overlap; the last
    # row is moved by 116 px, not a few, and its overlap with row 284 (76 px) is what lets
    # fragments join there, not the moved-rule: a product cut by row 284 and row 400 joins
    tiles = make_grid(192, 592, dt.TileSpec(192, 50 / 192))
    ys = sorted({t.y for t in tiles})
    assert ys[-1] - ys[-2] > 16
    top = ys[-1]
    views = {len(ys) - 2: [20, top - 40, 90, ys[-2] + 190], len(ys) - 1: [20, top + 2, 90, top + 150]}
    merged = merge_tiles(tiles, _detections(tiles, views), dt.MergeSpec(mode="nms"))
    assert len(merged) == 1
