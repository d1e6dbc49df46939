"""resize_to: sizes, scale factor, area averaging when shrinking, bilinear when enlarging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densedet_tile import InvalidInputError
from densedet_tile.tiler import resize_to


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 300), w=st.integers(1, 300), side=st.integers(1, 400))
def test_longer_side_and_scale(h, w, side):
    img = np.zeros((h, w, 3), np.uint8)
    out, scale = resize_to(img, side)
    assert scale == pytest.approx(side / max(h, w))
    assert max(out.shape[:2]) == side
    assert out.shape[2] == 3 and out.dtype == np.uint8 and out.flags.c_contiguous
    assert abs(out.shape[0] - h * scale) <= 0.5 + 1e-9 or out.shape[0] == 1
    assert abs(out.shape[1] - w * scale) <= 0.5 + 1e-9 or out.shape[1] == 1


def test_shrink_by_two_is_the_block_mean():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    out, scale = resize_to(img, 48)
    assert scale == 0.5 and out.shape == (32, 48, 3)
    blocks = img.reshape(32, 2, 48, 2, 3).astype(np.float64).mean(axis=(1, 3))
    assert np.abs(out.astype(np.float64) - blocks).max() <= 1.0


def test_shrink_does_not_alias_a_fine_stripe_pattern():
    img = np.zeros((120, 120, 3), np.uint8)
    img[:, ::2] = 255  # one-pixel stripes, shrunk 4x: every output pixel averages 2 on, 2 off
    out, _ = resize_to(img, 30)
    assert np.abs(out.astype(int) - 127.5).max() <= 1  # point sampling would give 0/255


def test_enlarge_is_bilinear_and_keeps_flat_regions():
    img = np.full((20, 10, 3), 77, np.uint8)
    out, scale = resize_to(img, 60)
    assert scale == 3.0 and out.shape == (60, 30, 3)
    assert (out == 77).all()
    ramp = np.tile(np.arange(0, 200, 20, dtype=np.uint8)[None, :, None], (4, 1, 3))  # 4x10
    big, _ = resize_to(ramp, 20)
    row = big[0, :, 0].astype(int)
    assert (np.diff(row) >= 0).all()  # monotone: interpolated, not blocky nearest-neighbour
    assert len(np.unique(row)) > 10


def test_same_size_is_returned_unchanged():
    img = np.zeros((50, 80, 3), np.uint8)
    out, scale = resize_to(img, 80)
    assert out is img and scale == 1.0


@pytest.mark.parametrize(
    "img, side",
    [
        (np.zeros((4, 4, 3), np.float32), 8),
        (np.zeros((4, 4, 4), np.uint8), 8),
        (np.zeros((0, 4, 3), np.uint8), 8),
        (np.zeros((4, 4, 3), np.uint8), 0),
        (np.zeros((4, 4, 3), np.uint8), 2.5),
    ],
)
def test_bad_input(img, side):
    with pytest.raises(InvalidInputError):
        resize_to(img, side)


def _bilinear_reference(img: np.ndarray, new_h: int, new_w: int) -> np.ndarray:
    """OpenCV INTER_LINEAR / torch bilinear(align_corners=False), written out slowly in float64."""
    h, w = img.shape[:2]
    out = np.zeros((new_h, new_w, img.shape[2]))
    for yo in range(new_h):
        y = min(max((yo + 0.5) * h / new_h - 0.5, 0.0), h - 1)
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for xo in range(new_w):
            x = min(max((xo + 0.5) * w / new_w - 0.5, 0.0), w - 1)
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[yo, xo] = top * (1 - fy) + bot * fy
    return out


@pytest.mark.parametrize("shape, side", [((37, 53), 29), ((20, 30), 47), ((64, 48), 64), ((9, 31), 7)])
def test_bilinear_filter_is_opencv_style_bilinear(shape, side):
    rng = np.random.default_rng(sum(shape) + side)
    img = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    out, scale = resize_to(img, side, filter="bilinear")
    ref = _bilinear_reference(img.astype(np.float64), *out.shape[:2])
    assert np.abs(out.astype(np.float64) - ref).max() <= 1.0 + 1e-6  # within rounding
    assert scale == pytest.approx(side / max(shape))


def test_bilinear_does_not_average_when_shrinking():
    # a one-pixel grid of black and white: the area filter averages it to grey, the bilinear
    # filter (no antialiasing) samples between two source pixels at exactly half a pixel
    img = np.zeros((40, 40, 3), np.uint8)
    img[:, ::2] = 255
    area, _ = resize_to(img, 10, filter="area")
    bil, _ = resize_to(img, 13, filter="bilinear")
    assert np.ptp(area) <= 2
    assert np.ptp(bil) > 100


def test_unknown_filter_is_refused():
    with pytest.raises(InvalidInputError, match="filter"):
        resize_to(np.zeros((4, 4, 3), np.uint8), 2, filter="lanczos")
