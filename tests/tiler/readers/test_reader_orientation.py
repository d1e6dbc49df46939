"""EXIF/TIFF orientation: windows of the upright image, whatever the stored frame."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers.orientation import orient, stored_box

from reader_samples import check_output, noise, quadrants, read_all, save_with_orientation


RED_CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_places_pixels(tmp_path, orientation):
    h, w = 48, 80
    path = tmp_path / f"o{orientation}.jpg"
    save_with_orientation(path, quadrants(h, w), orientation, quality=95)
    with open_image(path) as src:
        assert src.orientation == orientation
        upright = (w, h) if orientation <= 4 else (h, w)
        assert (src.width, src.height) == upright
        full = read_all(src)
        check_output(full, src.height, src.width)
        # Same decoder, so Pillow's own exif_transpose is an exact reference ...
        with Image.open(path) as im:
            ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        np.testing.assert_array_equal(full, ref)
        # ... and independently, the red quadrant sits in the expected corner.
        corners = {
            "tl": full[2, 2],
            "tr": full[2, -3],
            "bl": full[-3, 2],
            "br": full[-3, -3],
        }
        red = [k for k, v in corners.items() if v[0] > 200 and v[1] < 60 and v[2] < 60]
        assert red == [RED_CORNER[orientation]]


@pytest.mark.parametrize("orientation", range(1, 9))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_oriented_windows_equal_slices_of_the_upright_image(tmp_path, orientation, data):
    arr = noise(23, 37)
    path = tmp_path / f"o{orientation}.png"
    if not path.exists():
        save_with_orientation(path, arr, orientation, fmt="PNG")
    with open_image(path) as src:
        full = read_all(src)
        x = data.draw(st.integers(0, src.width - 1))
        y = data.draw(st.integers(0, src.height - 1))
        w = data.draw(st.integers(1, src.width - x))
        h = data.draw(st.integers(1, src.height - y))
        win = src.read(x, y, w, h)
        check_output(win, h, w)
        np.testing.assert_array_equal(win, full[y : y + h, x : x + w])
    with Image.open(path) as im:
        ref = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(full, ref)


@pytest.mark.parametrize("bad", [0, 9, 65535])
def test_invalid_orientation_is_upright_with_a_warning(tmp_path, caplog, bad):
    # 0 ("not set", written by many phones: 3 of the 85 SKU-110K photos) is upright too, quietly
    arr = noise(10, 14)
    path = tmp_path / "bad.png"
    save_with_orientation(path, arr, bad, fmt="PNG")
    with caplog.at_level(logging.WARNING, logger="densedet_tile.tiler.readers"):
        with open_image(path) as src:
            assert src.orientation == 1 and src.size == (14, 10)
            np.testing.assert_array_equal(read_all(src), arr)
    warned = any("orientation" in r.getMessage() and "bad.png" in r.getMessage() for r in caplog.records)
    assert warned is (bad != 0)


def test_tiff_orientation_tag_applied(tmp_path):
    full = noise(30, 50)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(16, 16), extratags=[(274, 3, 1, 6, False)])
    with open_image(path) as src:
        assert src.orientation == 6 and src.size == (30, 50)
        np.testing.assert_array_equal(read_all(src), np.rot90(full, k=-1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_stored_box_and_orient_agree(orientation):
    stored = noise(5, 7)
    upright = orient(stored, orientation)
    assert upright.shape == ((5, 7, 3) if orientation <= 4 else (7, 5, 3))
    uh, uw = upright.shape[:2]
    for x, y, w, h in [(0, 0, uw, uh), (1, 2, 2, 3), (uw - 1, uh - 1, 1, 1)]:
        x0, y0, w0, h0 = stored_box(orientation, x, y, w, h, 7, 5)
        window = orient(stored[y0 : y0 + h0, x0 : x0 + w0], orientation)
        np.testing.assert_array_equal(window, upright[y : y + h, x : x + w])
