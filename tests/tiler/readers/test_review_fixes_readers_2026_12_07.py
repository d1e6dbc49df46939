"""Faults found by an outside review of the image readers (2026-12-07, stop 68): each test fails
on the code before it."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile as dt
from densedet_tile.errors import ImageReadError

tifffile = pytest.importorskip("tifffile")


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def tifffile_log():
    kept = _Kept()
    lg = logging.getLogger("tifffile")
    lg.addHandler(kept)
    try:
        yield kept
    finally:
        lg.removeHandler(kept)


def test_tifffile_s_own_log_lines_stay_out_of_a_library_read(tmp_path: Path, tifffile_log) -> None:
    # a library user saw "<tifffile.TiffTag 274 @94> raised ValueError('0 is not a valid
    # ORIENTATION')" on stderr, naming no file; the reader's own result or error says what matters
    tag0 = tmp_path / "o0.tif"
    tifffile.imwrite(tag0, np.zeros((64, 64, 3), np.uint8), extratags=[(274, 3, 1, 0, True)])
    header = tmp_path / "header.tif"
    header.write_bytes(tag0.read_bytes()[:8])
    src = dt.open_image(tag0)
    try:
        assert src.orientation == 1
    finally:
        src.close()
    with pytest.raises(ImageReadError, match="header.tif: the TIFF has no readable pages: a damaged or truncated file"):
        dt.open_image(header)
    assert tifffile_log.records == []
    # tifffile used directly still logs as it always did
    with tifffile.TiffFile(header) as tif:
        assert len(tif.pages) == 0
    assert tifffile_log.records


@pytest.mark.parametrize("kind", ["tiff", "jpeg", "pil"])
def test_the_pixel_limit_names_the_upright_size(tmp_path: Path, kind: str) -> None:
    # stored 768 wide and 1024 high, turned a quarter by its orientation: 1024x768 everywhere,
    # but the pixel limit said 768x1024
    pixels = np.zeros((1024, 768, 3), np.uint8)
    if kind == "tiff":
        path = tmp_path / "o6.tif"
        tifffile.imwrite(path, pixels, extratags=[(274, 3, 1, 6, True)])
        source = path
    else:
        path = tmp_path / "o6.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(pixels).save(path, exif=exif)
        source = Image.open(path) if kind == "pil" else path
    src = dt.open_image(path)
    try:
        assert src.size == (1024, 768)
        with pytest.raises(ImageReadError, match=r"image is 1024x768 = 786432 pixels, more than max_pixels=786431"):
            dt.open_image(source, max_pixels=786431)
    finally:
        src.close()
        if isinstance(source, Image.Image):
            source.close()
