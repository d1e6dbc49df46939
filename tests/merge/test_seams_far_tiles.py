"""Fragments are joined only across the seam of neighbouring tiles: tiles i and i+2 of a row can
overlap by a few pixels (the last column shifted inward, or an overlap just over a half), and two
products meeting in that strip, each cut by one of them, were joined into one inflated box
(an outside review). The detector here reports exactly each product's visible part."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.merge import merge_tiles
from densedet_tile.tiler import make_grid


def perfect_views(width: int, height: int, spec: dt.TileSpec, products: np.ndarray):
    tiles = make_grid(width, height, spec)
    dets = []
    for t in tiles:
        c = np.c_[np.maximum(products[:, 0], t.x), np.maximum(products[:, 1], t.y),
                  np.minimum(products[:, 2], t.x2), np.minimum(products[:, 3], t.y2)]
        ok = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
        dets.append(dt.Detections(c[ok] - [t.x, t.y, t.x, t.y], np.full(int(ok.sum()), 0.9)))
    return tiles, dets


def best_iou(found: np.ndarray, truth: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(found[:, None, 2], truth[None, :, 2]) - np.maximum(found[:, None, 0], truth[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(found[:, None, 3], truth[None, :, 3]) - np.maximum(found[:, None, 1], truth[None, :, 1]), 0, None)
    inter = iw * ih
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    iou = inter / (area(found)[:, None] + area(truth)[None, :] - inter)
    return iou.max(axis=0)


@pytest.mark.parametrize("width, spec, products", [
    # tiles (0, 1280), (1024, 2304), (1260, 2540): the first and last overlap by 20 px
    (2540, dt.TileSpec(1280, 0.2), [[1100, 100, 1271, 300], [1270, 100, 1400, 300]]),
    # overlap 0.53 at tile 256: every tile i and i+2 overlap by 16 px
    (700, dt.TileSpec(256, 0.53), [[180, 40, 249, 160], [248, 40, 300, 160]]),
])
def test_two_products_meeting_where_tiles_i_and_i_plus_2_overlap_stay_two(width, spec, products) -> None:
    p = np.asarray(products, float)
    tiles, dets = perfect_views(width, 600 if width > 1000 else 200, spec, p)
    out = merge_tiles(tiles, dets)
    np.testing.assert_allclose(np.sort(out.xyxy, axis=0), np.sort(p, axis=0))


def test_a_product_over_three_tiles_is_still_joined_tile_by_tile() -> None:
    p = np.array([[200.0, 40, 700, 160]])
    tiles, dets = perfect_views(900, 200, dt.TileSpec(256, 0.25), p)
    assert sum(len(d) for d in dets) >= 3
    np.testing.assert_allclose(merge_tiles(tiles, dets).xyxy, p)


def test_packed_rows_come_out_one_box_per_product_whatever_the_last_columns_shift() -> None:
    # widths where the last column moves inward far enough for columns 1 and 3 to overlap by a
    # little, rows of products whose boxes overlap their neighbours' by 0 to 2 px
    rng = np.random.default_rng(5)
    bad = []
    for width in (2530, 2536, 2540, 2546, 2552):  # columns 1 and 3 overlap by 8 to 30 px
        for trial in range(4):
            rows = []
            for y0 in (40.0, 340.0):
                x = float(rng.uniform(0, 30))
                tall = float(rng.uniform(180, 250))  # one product line per shelf: heights agree
                while x < width - 60:
                    w = float(rng.uniform(40, 160))
                    rows.append([x, y0, min(x + w, width), y0 + tall + float(rng.uniform(-4, 4))])
                    x += w - float(rng.integers(0, 3))
            p = np.array(rows)
            tiles, dets = perfect_views(width, 640, dt.TileSpec(1280, 0.2), p)
            out = merge_tiles(tiles, dets)
            iou = best_iou(out.xyxy.astype(float), p)
            if len(out) != len(p) or iou.min() < 0.95:
                bad.append((width, trial, len(out), len(p), round(float(iou.min()), 3)))
    assert not bad


def test_a_tile_list_that_is_no_grid_joins_fragments_as_before() -> None:
    # staggered rows (a caller's own tiles): ranking the tiles by their starts over all rows
    # cut a product of the first row into three (a diff review); only a grid gets the rule
    from densedet_tile.types import Tile

    rows = [(0, [0, 400, 800]), (350, [0, 200, 600, 800])]
    starts = [(x, y) for y, xs in rows for x in xs]
    tiles = [Tile(x, y, 512, 400, interior_left=x > 0, interior_right=x + 512 < 1312, interior_top=y > 0,
                  interior_bottom=y + 400 < 750, index=i) for i, (x, y) in enumerate(starts)]
    p = np.array([[100.0, 50, 1200, 300]])
    dets = []
    for t in tiles:
        c = np.c_[np.maximum(p[:, 0], t.x), np.maximum(p[:, 1], t.y), np.minimum(p[:, 2], t.x + t.w),
                  np.minimum(p[:, 3], t.y + t.h)]
        ok = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
        dets.append(dt.Detections(c[ok] - [t.x, t.y, t.x, t.y], np.full(int(ok.sum()), 0.9)))
    np.testing.assert_allclose(merge_tiles(tiles, dets).xyxy, p)


@pytest.mark.parametrize("mode", ["wbf", "nms"])
def test_a_last_row_moved_onto_the_one_before_still_joins_the_row_above(mode) -> None:
    # a 694 px image at tile 384 and overlap 0.2 has rows at 0, 307 and 310; a product cut by
    # row 0 whose row-307 view was missed had its row-0 and row-310 fragments kept apart (rows
    # two apart are no neighbours): counted twice under NMS (an outside review)
    tiles = make_grid(400, 694, dt.TileSpec(384, 0.2))
    assert sorted({t.y for t in tiles}) == [0, 307, 310]
    views = {0: [152.9, 267.4, 233.7, 384.0, 0.49], 310: [153.1, 310.0, 231.8, 448.7, 0.60]}
    dets = []
    for t in tiles:
        v = np.array([views[t.y]] if t.y in views else [], float).reshape(-1, 5)
        dets.append(dt.Detections(v[:, :4] - [t.x, t.y, t.x, t.y], v[:, 4]))
    out = merge_tiles(tiles, dets, dt.MergeSpec(mode=mode))
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [152.9, 267.4, 233.7, 448.7], atol=0.05)


@pytest.mark.parametrize("mode", ["wbf", "nms"])
def test_two_products_meeting_where_the_last_column_overlaps_the_one_two_back_thinly_stay_two(mode) -> None:
    # a diff review: columns 0, 205, 410, 615, 635 of an 891 px image at tile 256 and overlap 0.2;
    # the last shares column 615's rank only if it overlaps column 410 by the safe overlap (49 px):
    # at 31 px two products meeting there were joined into one
    p = np.array([[560.0, 20, 651, 180], [650, 20, 740, 180]])
    tiles, dets = perfect_views(891, 200, dt.TileSpec(256, 0.2), p)
    assert sorted({t.x for t in tiles}) == [0, 205, 410, 615, 635]
    out = merge_tiles(tiles, dets, dt.MergeSpec(mode=mode))
    np.testing.assert_allclose(np.sort(out.xyxy, axis=0), np.sort(p, axis=0))
