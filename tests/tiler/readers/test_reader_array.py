"""numpy arrays as image sources: windows without copying the image, gray and RGBA, bad arrays."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile import InvalidInputError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import ArraySource

from reader_samples import check_output, noise


def test_array_source_windows_without_copying_the_image():
    a = noise(40, 50)
    src = open_image(a)
    assert isinstance(src, ArraySource) and src.name == "<array>" and src.path is None
    assert src.size == (50, 40)
    win = src.read(5, 6, 20, 10)
    check_output(win, 10, 20)
    np.testing.assert_array_equal(win, a[6:16, 5:25])
    rows = src.read(0, 10, 50, 5)
    np.testing.assert_array_equal(rows, a[10:15])
    # even whole rows are a copy: writing into a window leaves the caller's image alone
    before = a.copy()
    rows[...] = 0
    win[...] = 0
    np.testing.assert_array_equal(a, before)


def test_a_detector_that_edits_its_tiles_in_place_changes_neither_the_image_nor_other_tiles():
    import densedet_tile as dt

    class Zeroing:
        def __init__(self):
            self.seen = []

        def predict(self, tiles):
            out = []
            for t in tiles:
                self.seen.append(int(t.min()))
                t[...] = 0
                out.append(dt.Detections.empty())
            return out

    a = np.full((3000, 600, 3), 200, np.uint8)  # tiles span whole rows
    det = Zeroing()
    dt.detect(a, det, tile=1280)
    assert len(det.seen) >= 3 and set(det.seen) == {200} and a.min() == 200


def test_array_source_gray_and_rgba():
    g = noise(10, 12, c=None)
    np.testing.assert_array_equal(open_image(g).read(1, 2, 5, 4), np.repeat(g[2:6, 1:6, None], 3, axis=2))
    rgba = noise(10, 12, c=4)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    out = open_image(rgba).read(0, 0, 12, 10)
    assert tuple(out[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(out[1:], rgba[1:, :, :3])


@pytest.mark.parametrize(
    "bad, what",
    [
        (np.zeros((4, 4, 3), np.float32), "dtype float32"),
        (np.zeros((4, 4, 2), np.uint8), "shape (4, 4, 2)"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape (2, 4, 4, 3)"),
        (np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_array_source_rejects_bad_arrays(bad, what):
    with pytest.raises(InvalidInputError) as err:
        open_image(bad)
    assert what in str(err.value)


def test_a_gray_array_with_a_channel_axis_reads_as_gray(caplog):
    # HxWx1 (OpenCV's and Keras' gray) was refused while HxW was read (an outside review)
    gray = noise(40, 60)[:, :, 0]
    a = ArraySource(gray[:, :, None])
    b = ArraySource(gray)
    assert (a.width, a.height) == (60, 40)
    np.testing.assert_array_equal(a.read(0, 0, 60, 40), b.read(0, 0, 60, 40))


def test_an_rgba_array_whose_alpha_is_0_everywhere_is_said(caplog):
    # a BGRA or RGBX buffer: composited on white it is blank, and gave 0 boxes without a word
    rgbx = np.dstack([noise(40, 60), np.zeros((40, 60), np.uint8)])
    with caplog.at_level("WARNING", logger="densedet_tile"):
        src = ArraySource(rgbx, name="frame")
    assert any("frame: the array's fourth channel (alpha) is 0 everywhere" in r.getMessage() for r in caplog.records)
    assert int(src.read(0, 0, 60, 40).min()) == 255  # (what it reads: white)
    caplog.clear()
    rgbx[0, 0, 3] = 1  # some alpha: a real RGBA image, nothing said
    with caplog.at_level("WARNING", logger="densedet_tile"):
        ArraySource(rgbx)
    assert not caplog.records
