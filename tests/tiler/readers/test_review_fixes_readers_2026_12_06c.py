"""Reader fixes after an outside review of image inputs (2026-12-06, stop 62): a Python file
object opened in text mode gets the hint it was meant to (the test fails on the code before
it); 32-bit TIFF samples still read by their bit depth."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.tiler.readers import open_image
from fakes import BlobDetector


def test_unsigned_tiff_samples_past_16_bits_are_read_by_their_bit_depth(tmp_path) -> None:
    # a refusal of every uint32 TIFF was tried and taken back (a second look: full-range 32-bit
    # and 24-bit files read right before it); a file of small values in 32 bits reads dark
    tifffile = pytest.importorskip("tifffile")
    path = tmp_path / "wide.tif"
    tifffile.imwrite(path, np.full((30, 40, 3), 200, np.uint32) * (2**32 // 256), photometric="rgb")
    with open_image(path) as src:
        assert abs(float(src.read(0, 0, 40, 30).mean()) - 200) <= 1


def test_a_file_object_in_text_mode_gets_the_hint(tmp_path) -> None:
    from PIL import Image

    path = tmp_path / "p.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3)).astype(np.uint8)).save(path)
    with open(path, encoding="utf-8") as fh, pytest.raises(InvalidInputError, match="a file object in text mode; "
                                                                                    "open the image with 'rb'"):
        dt.detect(fh, BlobDetector())
