"""The synthetic shelf generator: determinism, box validity, scale, dataset writing."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.shelves import render_shelf, training_sample, write_dataset


def test_same_seed_same_image_and_boxes() -> None:
    a_img, a_box = render_shelf(np.random.default_rng(7), width=320, height=256, product_height=60)
    b_img, b_box = render_shelf(np.random.default_rng(7), width=320, height=256, product_height=60)
    c_img, _ = render_shelf(np.random.default_rng(8), width=320, height=256, product_height=60)
    assert np.array_equal(a_img, b_img)
    assert np.array_equal(a_box, b_box)
    assert not np.array_equal(a_img, c_img)


@pytest.mark.parametrize("seed", range(6))
def test_boxes_lie_inside_the_image_and_are_well_formed(seed: int) -> None:
    img, boxes = render_shelf(np.random.default_rng(seed), width=400, height=300, product_height=70)
    assert img.shape == (300, 400, 3) and img.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert len(boxes) > 0
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 1] >= 0)
    assert np.all(boxes[:, 2] <= 400) and np.all(boxes[:, 3] <= 300)
    assert np.all(boxes[:, 2] - boxes[:, 0] >= 2) and np.all(boxes[:, 3] - boxes[:, 1] >= 2)


def test_product_scale_follows_product_height() -> None:
    small = [render_shelf(np.random.default_rng(s), width=512, height=512, product_height=40)[1] for s in range(4)]
    large = [render_shelf(np.random.default_rng(s), width=512, height=512, product_height=120)[1] for s in range(4)]
    h_small = np.median(np.concatenate([b[:, 3] - b[:, 1] for b in small]))
    h_large = np.median(np.concatenate([b[:, 3] - b[:, 1] for b in large]))
    assert 20 < h_small < 60
    assert 60 < h_large < 180
    # denser packing at the small scale: many more products per image
    assert sum(map(len, small)) > 3 * sum(map(len, large))


def test_products_are_packed_side_by_side() -> None:
    _, boxes = render_shelf(np.random.default_rng(3), width=640, height=640, product_height=100)
    # most products have a horizontal neighbour within a few pixels (tight facings)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    same_row = np.abs(cy[:, None] - cy[None, :]) < 25
    gap = boxes[None, :, 0] - boxes[:, None, 2]  # left edge of j minus right edge of i
    near = same_row & (gap > -3) & (gap < 8) & (cx[None, :] > cx[:, None])
    assert near.any(axis=1).mean() > 0.5


def test_training_sample_size() -> None:
    img, boxes = training_sample(np.random.default_rng(0), size=256, tile=512)
    assert img.shape == (256, 256, 3)
    assert boxes.shape[1] == 4


def test_bad_arguments_raise() -> None:
    with pytest.raises(InvalidInputError, match="16x16"):
        render_shelf(np.random.default_rng(0), width=8, height=100, product_height=20)
    with pytest.raises(InvalidInputError, match="product_height"):
        render_shelf(np.random.default_rng(0), width=100, height=100, product_height=0.5)


def test_write_dataset(tmp_path) -> None:
    csv_path = write_dataset(tmp_path / "ds", n=2, seed=5, width=300, height=200, product_height=50)
    with csv_path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"]
    names = {r[0] for r in rows[1:]}
    assert names == {"shelf_5_0000.jpg", "shelf_5_0001.jpg"}
    for r in rows[1:]:
        w, h = int(r[6]), int(r[7])
        with Image.open(tmp_path / "ds" / "images" / r[0]) as im:
            assert im.size == (w, h)
        x1, y1, x2, y2 = map(float, r[1:5])
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert r[5] == "product"
    # alternating orientation
    assert {(int(r[6]), int(r[7])) for r in rows[1:]} == {(300, 200), (200, 300)}


@pytest.mark.parametrize("far", [(1, 2), (0, 3)], ids=["right side recedes", "left side recedes"])
def test_labels_follow_the_warped_products_in_an_aisle_view(far: tuple[int, int]) -> None:
    # The homography render_shelf applies to an aisle view (one side recedes, a little roll); each product painted with its own id on the canvas and warped with the same PIL
    # transform: its label must be the box of the pixels it ends up on.
    from densedet_tile.synth.shelves import _homography, _warped_boxes

    cw, ch = 1200, 900
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64)
    ang = np.deg2rad(2.0)
    rot = np.array([[np.cos(ang), np.sin(ang)], [-np.sin(ang), np.cos(ang)]])
    dst = (src - [cw / 2, ch / 2]) @ rot + [cw / 2, ch / 2]
    dst[far[0], 1] += 0.25 * ch
    dst[far[1], 1] -= 0.25 * ch
    dst -= 80  # the output frame cuts the canvas margin off, as in render_shelf
    H = _homography(src, dst)
    xs, ys = np.arange(40, cw - 120, 110), np.arange(40, ch - 150, 160)
    boxes = np.array([[x, y, x + 90, y + 140] for y in ys for x in xs], np.float64)
    ids = np.zeros((ch, cw), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        ids[y0:y1, x0:x1] = k + 1
    Hinv = np.linalg.inv(H)
    warped = np.asarray(Image.fromarray(ids).transform((cw, ch), Image.Transform.PERSPECTIVE,
                                                       tuple((Hinv / Hinv[2, 2]).reshape(-1)[:8]),
                                                       Image.Resampling.NEAREST, fillcolor=0))
    labels = _warped_boxes(boxes, H)
    ious = []
    inside = (labels[:, 0] >= 0) & (labels[:, 1] >= 0) & (labels[:, 2] <= cw) & (labels[:, 3] <= ch)
    assert inside.sum() > 0.8 * len(boxes)
    for k in np.flatnonzero(inside):
        yy, xx = np.nonzero(warped == k + 1)
        seen = np.array([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1], np.float64)
        lab = labels[k]
        iw = min(seen[2], lab[2]) - max(seen[0], lab[0])
        ih = min(seen[3], lab[3]) - max(seen[1], lab[1])
        inter = max(iw, 0) * max(ih, 0)
        ious.append(inter / ((seen[2] - seen[0]) * (seen[3] - seen[1]) + (lab[2] - lab[0]) * (lab[3] - lab[1]) - inter))
    assert min(ious) > 0.93, sorted(ious)[:5]


def test_labels_stop_at_the_canvas_where_an_aisle_view_shows_its_edge() -> None:
    # A strong aisle view brings the canvas's left edge into the picture (the empty fill beside
    # it). Rows start left of the canvas, so some products lie partly off it: their labels must
    # cover only what was painted, and a product wholly off the canvas gets none.
    from densedet_tile.synth.shelves import _homography, _output_labels

    cw, ch = 1000, 800
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64)
    dst = src.copy()
    dst[[0, 3], 0] += 150  # the left edge moves 150 px into the 1000 x 800 frame
    dst[0, 1] += 0.2 * ch
    dst[3, 1] -= 0.2 * ch
    H = _homography(src, dst)
    boxes = np.array([[-80, 300, 40, 420],  # mostly off the canvas
                      [-200, 300, -60, 420],  # wholly off it
                      [300, 300, 420, 420]], np.float64)
    ids = np.zeros((ch, cw), np.int32)
    for k, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
        ids[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = k + 1  # painting clips to the canvas
    Hinv = np.linalg.inv(H)
    warped = np.asarray(Image.fromarray(ids).transform((cw, ch), Image.Transform.PERSPECTIVE,
                                                       tuple((Hinv / Hinv[2, 2]).reshape(-1)[:8]),
                                                       Image.Resampling.NEAREST, fillcolor=0))
    labels = _output_labels(boxes, H, (cw, ch), (cw, ch), min_visible=0.25)
    assert len(labels) == 2  # the product wholly off the canvas is gone
    for k, lab in zip((0, 2), labels):
        yy, xx = np.nonzero(warped == k + 1)
        seen = np.array([xx.min(), yy.min(), xx.max() + 1, yy.max() + 1], np.float64)
        np.testing.assert_allclose(lab, seen, atol=2.0)
    # Under a quarter painted: dropped like a product mostly outside the frame.
    assert len(_output_labels(boxes[:1] - [60, 0, 60, 0], H, (cw, ch), (cw, ch), min_visible=0.25)) == 0


def test_a_training_sample_whose_products_would_outgrow_the_image_is_still_drawn() -> None:
    # 64 px samples of a 64 px tile: products of a phone photo's 260 px, times up to 2, were
    # drawn over the 4 x 64 px that render_shelf takes, and the draw failed (adapt --size 64)
    for seed in range(5):
        img, boxes = training_sample(np.random.default_rng(seed), size=64, tile=64, scale_range=(1.9, 2.0))
        assert img.shape == (64, 64, 3) and np.isfinite(boxes).all()


def test_a_dataset_left_with_an_earlier_versions_temporary_is_replaced(tmp_path) -> None:
    # a write interrupted by a version before 2026-12-06 left ".<name>.<8>.tmp" (now
    # ".densedet-tmp"): inside a dataset folder it is still the writer's, not a stranger's file
    from densedet_tile.io import TMP_SUFFIX

    ds = tmp_path / "ds"
    write_dataset(ds, n=2, seed=0, width=64, height=64, product_height=20)
    for name in (".shelf_0_0001.jpg.abcd1234.tmp", f".shelf_0_0000.jpg.efgh5678{TMP_SUFFIX}.old"):
        (ds / "images" / name).write_bytes(b"x")
    write_dataset(ds, n=2, seed=1, width=64, height=64, product_height=20)
    assert sorted(p.name for p in (ds / "images").iterdir()) == ["shelf_1_0000.jpg", "shelf_1_0001.jpg"]
