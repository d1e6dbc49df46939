"""open_image: format sniffing, options, and one-line errors naming the file for bad inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from densedet_tile import ImageReadError, InvalidInputError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import PillowSource, TiffSource

from reader_samples import encoded_image, noise, png_bytes, read_all


def test_format_is_sniffed_by_content(tmp_path):
    rgb = noise(9, 11)
    Image.fromarray(rgb).save(tmp_path / "really_png.jpg", "PNG")
    tifffile.imwrite(tmp_path / "really_tiff.png", rgb, photometric="rgb")
    with open_image(tmp_path / "really_png.jpg") as src:
        assert isinstance(src, PillowSource) and src.format == "PNG"
        np.testing.assert_array_equal(read_all(src), rgb)
    with open_image(str(tmp_path / "really_tiff.png")) as src:
        assert isinstance(src, TiffSource)
        np.testing.assert_array_equal(read_all(src), rgb)


@pytest.mark.parametrize(
    "name, make, phrase",
    [
        ("missing.jpg", None, "no such file"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty"),
        ("text.jpg", lambda p: p.write_text("not an image, just text\n" * 5), "unknown or unsupported"),
        ("cut.jpg", lambda p: p.write_bytes(encoded_image("JPEG")[:-300]), "truncated"),
        ("cut.png", lambda p: p.write_bytes(encoded_image("PNG")[: len(encoded_image("PNG")) // 2]), "truncated"),
        ("zero.png", lambda p: p.write_bytes(png_bytes(np.zeros((0, 3), np.uint8), 0, size=(0, 5))), "zero size"),
        ("tiny.tif", lambda p: p.write_bytes(b"II*\x00\x08\x00\x00\x00"), "TIFF"),
    ],
)
def test_bad_files_raise_one_clear_line(tmp_path, name, make, phrase):
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    msg = str(err.value)
    assert str(path) in msg and phrase in msg and "\n" not in msg
    assert isinstance(err.value, OSError)


def test_directory_and_bad_arguments(tmp_path):
    with pytest.raises(ImageReadError, match="directory"):
        open_image(tmp_path)
    with pytest.raises(InvalidInputError, match="file path, a numpy array"):
        open_image(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_pixels"):
        open_image(noise(2, 2), max_pixels=0)


@pytest.mark.parametrize("bad", ["turbo", "Pillow", "", None, 1])
def test_decoder_option_is_validated(bad):
    with pytest.raises(InvalidInputError) as err:
        open_image(noise(4, 4), decoder=bad)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "decoder" in msg and repr(bad) in msg and "auto, imagecodecs, pillow" in msg and "\n" not in msg


@pytest.mark.skipif(not Path("/dev/fd").is_dir(), reason="needs /dev/fd (Linux, macOS)")
def test_a_pipe_is_refused_with_a_clear_line_not_called_an_unknown_format():
    import os

    r, w = os.pipe()
    try:
        os.write(w, b"\xff\xd8\xff\xe0" + b"\0" * 60)  # a JPEG's first bytes: sniffing would eat them
        with pytest.raises(ImageReadError, match=r"not a regular file \(a pipe\?\).*save it to a file first"):
            open_image(f"/dev/fd/{r}")
    finally:
        os.close(w)
        os.close(r)


@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs named pipes")
def test_a_named_pipe_with_no_writer_is_refused_at_once(tmp_path):
    # opening a FIFO waits for a writer: one among a batch's inputs hung the run (an outside
    # review); it is refused before it is opened
    import os
    import threading

    fifo = tmp_path / "shelf.jpg"
    os.mkfifo(fifo)
    done = []

    def attempt():
        try:
            open_image(fifo)
        except ImageReadError as exc:
            done.append(str(exc))

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(30)
    if t.is_alive():  # unblock the thread before failing: open the pipe's other end
        with open(fifo, "wb"):
            pass
        pytest.fail("open_image blocked on a named pipe")
    assert done and "shelf.jpg: not a regular file" in done[0]
