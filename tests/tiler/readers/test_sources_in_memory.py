"""Images given as bytes, a binary file object or a PIL image (a service's uploads): read as the
same file on disk is, EXIF rotation included (an outside review: the obvious
``np.asarray(Image.open(BytesIO(data)))`` dropped a phone photo's rotation, 47 products -> 1)."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.errors import ImageReadError, InvalidInputError
from densedet_tile.tiler.readers import open_image


def _rotated_jpeg() -> bytes:
    img = np.zeros((200, 300, 3), np.uint8)
    img[20:80, 30:200] = 255
    im = Image.fromarray(img)
    exif = im.getexif()
    exif[0x0112] = 6  # stored landscape, shown portrait (a phone held upright)
    buf = io.BytesIO()
    im.save(buf, "JPEG", exif=exif, quality=95)
    return buf.getvalue()


def _leftovers() -> list[str]:
    return sorted(n for n in os.listdir(tempfile.gettempdir()) if n.startswith(".densedet-image."))


def test_bytes_file_objects_and_pil_images_read_as_the_file_does(tmp_path: Path) -> None:
    data = _rotated_jpeg()
    (tmp_path / "rot.jpg").write_bytes(data)
    before = _leftovers()
    with open_image(tmp_path / "rot.jpg") as src:
        want = src.read(0, 0, src.width, src.height)
    assert want.shape == (300, 200, 3)  # upright
    with open(tmp_path / "rot.jpg", "rb") as fh:
        sources = [data, bytearray(data), memoryview(data), io.BytesIO(data), fh, Image.open(io.BytesIO(data))]
        names = ["<bytes>", "<bytes>", "<bytes>", "<BytesIO>", "<rot.jpg>", "<PIL image>"]
        for source, name in zip(sources, names):
            with open_image(source) as src:
                assert (src.name, src.path, src.size) == (name, None, (200, 300)), name
                # the orientation applied, as for the file (a PIL image said 1: an outside review)
                assert src.orientation == 6, name
                got = src.read(0, 0, src.width, src.height)
                part = src.read(30, 170, 100, 90)  # a window turned upright as the file's is
            assert np.array_equal(got, want), name
            assert np.array_equal(part, want[170:260, 30:130]), name
    assert _leftovers() == before  # no temporary file stays behind


def test_bad_bytes_are_named_as_bytes_not_as_a_temporary_file() -> None:
    before = _leftovers()
    with pytest.raises(ImageReadError, match=r"^<bytes>: unknown or unsupported image format"):
        open_image(b"not an image at all")
    with pytest.raises(ImageReadError, match=r"^<bytes>: the file is empty"):
        open_image(b"")
    with pytest.raises(InvalidInputError, match=r"<StringIO>: a file object in text mode; open the image with 'rb'"):
        open_image(io.StringIO("text"))
    with pytest.raises(InvalidInputError, match=r"image source must be a file path, a numpy array, the bytes"):
        open_image(12345)
    assert _leftovers() == before


def test_the_pixel_limit_holds_for_bytes_too() -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(buf, "PNG")
    with pytest.raises(ImageReadError, match=r"^<bytes>: .*10000"):
        open_image(buf.getvalue(), max_pixels=5000)


def test_a_pil_image_is_converted_as_its_file_is_read(tmp_path: Path) -> None:
    gray16 = (np.arange(120 * 160, dtype=np.uint32).reshape(120, 160) * 3 % 65536).astype(np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    with open_image(tmp_path / "g16.png") as src:
        want = src.read(0, 0, 160, 120)
    with Image.open(tmp_path / "g16.png") as im, open_image(im) as src:  # convert("RGB") made it white
        assert np.array_equal(src.read(0, 0, 160, 120), want)
    rgba = np.zeros((50, 60, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent: on white, as a file's is
    Image.fromarray(rgba).save(tmp_path / "t.png")
    with Image.open(tmp_path / "t.png") as im, open_image(tmp_path / "t.png") as a, open_image(im) as b:
        assert np.array_equal(a.read(0, 0, 60, 50), b.read(0, 0, 60, 50))
    with Image.open(tmp_path / "g16.png") as im:
        with pytest.raises(ImageReadError, match=r"<PIL image>.*19200"):  # the pixel limit, before decoding
            open_image(im, max_pixels=1000)


def _short_rows_png(width: int, height: int, rows: int) -> bytes:
    """An 8-bit RGB PNG whose pixel stream holds ``rows`` of its ``height`` rows, yet ends with
    IDAT and IEND intact (Pillow fills the rest with black without a word)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    pixels = b"".join(b"\x00" + bytes([128]) * width * 3 for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


def test_a_damaged_file_behind_a_pil_image_is_refused_as_the_file_is(tmp_path: Path) -> None:
    # an outside review: a truncated file given as Image.open(...) was a bare OSError ("image file
    # is truncated"), and a PNG whose pixels end before its last row was read with black rows
    img = np.random.default_rng(7).integers(0, 256, (120, 160, 3), np.uint8)
    for fmt, kw in (("PNG", {}), ("JPEG", {"quality": 90}), ("GIF", {})):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, fmt, **kw)
        cut = buf.getvalue()[: len(buf.getvalue()) * 6 // 10]
        (tmp_path / "cut").write_bytes(cut)
        with pytest.raises(ImageReadError, match=rf"cut: the {fmt} file is truncated"):  # the file route
            open_image(tmp_path / "cut")
        for opened in (Image.open(tmp_path / "cut"), Image.open(io.BytesIO(cut))):
            with opened, pytest.raises(ImageReadError, match=rf"^<PIL image>: the {fmt} file is truncated \(") as err:
                open_image(opened)
            assert "\n" not in str(err.value)
    short = _short_rows_png(40, 30, 15)
    (tmp_path / "short.png").write_bytes(short)
    with pytest.raises(ImageReadError, match=r"short\.png: the PNG is truncated: its pixel data ends before the last row"):
        open_image(tmp_path / "short.png")
    loaded = Image.open(tmp_path / "short.png")
    loaded.load()  # (loaded before it is handed in: its file is still named)
    with open(tmp_path / "short.png", "rb") as fh:
        for opened in (Image.open(tmp_path / "short.png"), Image.open(io.BytesIO(short)), Image.open(fh), loaded):
            with opened, pytest.raises(
                    ImageReadError, match=r"^<PIL image>: the PNG is truncated: its pixel data ends before the last row$"):
                open_image(opened)
    # whole files, and images made in memory, read as before (a last row of one value included)
    whole = _short_rows_png(40, 30, 30)
    made = Image.fromarray(np.full((30, 40, 3), 128, np.uint8))
    done = Image.open(io.BytesIO(whole))
    done.load()
    for opened in (Image.open(io.BytesIO(whole)), made, done):
        with open_image(opened) as src:
            assert (src.read(0, 0, 40, 30) == 128).all()
