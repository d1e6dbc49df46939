"""Reader fixes after an outside review of image inputs (2026-12-06, stop 62): unsigned TIFF
samples wider than 16 bits are refused (they read as black), and a Python file object opened in
text mode gets the hint it was meant to. Each test fails on the code before it."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import ImageReadError, InvalidInputError
from densedet_tile.tiler.readers import open_image
from fakes import BlobDetector


@pytest.mark.parametrize("dtype", [np.uint32, np.uint64])
def test_unsigned_tiff_samples_past_16_bits_are_refused_not_read_as_black(tmp_path, dtype) -> None:
    tifffile = pytest.importorskip("tifffile")
    rgb = np.full((30, 40, 3), 200, np.uint8)
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, rgb.astype(dtype) * 1000, photometric="rgb")
    with pytest.raises(ImageReadError, match=r"wide\.tif: unsupported TIFF sample type uint(32|64) .*1 to 16-bit"):
        open_image(path)
    tifffile.imwrite(path, rgb.astype(np.uint16) * 257, photometric="rgb")  # 16 bits still read
    with open_image(path) as src:
        assert int(src.read(0, 0, 40, 30).mean()) == 200


def test_a_file_object_in_text_mode_gets_the_hint(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "p.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(path)
    with open(path, encoding="utf-8") as fh, pytest.raises(InvalidInputError, match="a file object in text mode; "
                                                                                    "open the image with 'rb'"):
        dt.detect(fh, BlobDetector())
