"""JPEGs whose data is shorter or longer than their header says, and animations read as one frame."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
from PIL import Image

from densedet_tile.errors import ImageReadError
from densedet_tile.tiler.readers import open_image
from reader_samples import noise


def _jpeg(arr: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **kw)
    return buf.getvalue()


def _read(src) -> np.ndarray:
    return src.read(0, 0, src.width, src.height)


def _taller(data: bytes, rows: int) -> bytes:
    """``data`` with the height in its start-of-frame header set to ``rows``."""
    sof = data.find(b"\xff\xc0")
    return data[: sof + 5] + rows.to_bytes(2, "big") + data[sof + 7 :]


@pytest.mark.parametrize("decoder", ["auto", "imagecodecs"])
def test_a_header_announcing_more_rows_than_the_data_holds_is_refused(tmp_path, decoder):
    path = tmp_path / "taller.jpg"
    path.write_bytes(_taller(_jpeg(noise(96, 128)), 192))  # data for 96 rows, header says 192
    with pytest.raises(ImageReadError) as err:
        open_image(path, decoder=decoder)
    msg = str(err.value)
    # the file ends as a JPEG should, so it is called damaged (its bytes are all there), not truncated
    assert str(path) in msg and "damaged" in msg and "128x192 pixels" in msg and "\n" not in msg


def test_a_file_cut_inside_its_scan_is_refused(tmp_path):
    data = _jpeg(noise(96, 128))
    for name, cut, says in (("cut.jpg", data[: len(data) // 2], "truncated"),
                            ("cut_eoi.jpg", data[: len(data) // 2] + b"\xff\xd9", "damaged")):
        (tmp_path / name).write_bytes(cut)
        with pytest.raises(ImageReadError, match=says):
            open_image(tmp_path / name)


def test_a_whole_jpeg_without_its_end_marker_is_read_with_a_warning(tmp_path, caplog):
    rgb = noise(96, 128)
    data = _jpeg(rgb)
    (tmp_path / "whole.jpg").write_bytes(data)
    (tmp_path / "noeoi.jpg").write_bytes(data[:-2])
    with open_image(tmp_path / "whole.jpg") as src:
        want = _read(src)
    with caplog.at_level(logging.WARNING), open_image(tmp_path / "noeoi.jpg") as src:
        np.testing.assert_array_equal(_read(src), want)
    assert "noeoi.jpg" in caplog.text and "end-of-image marker" in caplog.text


def test_a_whole_image_with_a_mid_grey_corner_is_not_taken_for_a_short_one(tmp_path, caplog):
    grey = np.full((64, 96, 3), 128, np.uint8)
    grey[:16, :16] = 30
    (tmp_path / "grey.jpg").write_bytes(_jpeg(grey))
    with caplog.at_level(logging.WARNING), open_image(tmp_path / "grey.jpg") as src:
        assert src.stats.decoder == "imagecodecs" and (_read(src)[-8:, -8:] == 128).all()
    assert caplog.text == ""


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_an_animation_warns_that_only_its_first_frame_is_read(tmp_path, caplog, fmt):
    frames = [Image.fromarray(noise(40, 60)) for _ in range(3)]
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:], duration=100)
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        assert src.size == (60, 40)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and str(path) in lines[0] and "3 frames" in lines[0] and "first frame" in lines[0]
    still = tmp_path / f"still.{fmt.lower()}"
    frames[0].save(still, format=fmt)
    caplog.clear()
    with caplog.at_level(logging.WARNING), open_image(still):
        pass
    assert caplog.records == []
