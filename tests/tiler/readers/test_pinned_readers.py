"""Behaviour of the image readers the suite did not pin (found by mutation testing)."""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.errors import ImageReadError
from densedet_tile.tiler.readers import open_image
from densedet_tile.tiler.readers.colour import composite_white
from densedet_tile.tiler.readers.orientation import info_orientation

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _png(w: int, h: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_a_png_of_zero_height_is_said_to_have_zero_size(tmp_path):
    p = tmp_path / "flat.png"
    p.write_bytes(_png(5, 0))
    with pytest.raises(ImageReadError, match=r"zero size \(5x0\)"):
        open_image(p)


def test_compositing_onto_white_rounds_to_nearest():
    c = np.repeat(np.arange(256, dtype=np.uint8)[:, None], 256, axis=1)[..., None].repeat(3, axis=2)
    a = np.repeat(np.arange(256, dtype=np.uint8)[None, :], 256, axis=0)
    got = composite_white(c, a).astype(np.float64)
    exact = (c.astype(np.float64) * a[..., None] + 255.0 * (255 - a[..., None])) / 255.0
    assert np.abs(got - exact).max() <= 0.5 + 1e-9
    assert composite_white(np.full((1, 1, 3), 127, np.uint8), np.ones((1, 1), np.uint8))[0, 0, 0] == 254


def test_a_palette_png_with_partial_transparency_is_composited_on_white(tmp_path):
    im = Image.new("P", (4, 2))
    im.putpalette([200, 0, 0, 0, 100, 0, 0, 0, 50] + [0] * (3 * 253))
    im.putdata([0, 0, 1, 1, 2, 2, 2, 2])
    p = tmp_path / "pal.png"
    im.save(p, transparency=b"\x00\x80")  # index 0 clear, 1 half, 2 opaque
    with Image.open(p) as chk:
        assert isinstance(chk.info.get("transparency"), bytes)
    with open_image(p) as src:
        px = src.read(0, 0, 4, 2)
    np.testing.assert_array_equal(px[0, 0], [255, 255, 255])
    np.testing.assert_array_equal(px[0, 2], composite_white(np.array([[[0, 100, 0]]], np.uint8),
                                                            np.array([[128]], np.uint8))[0, 0])
    np.testing.assert_array_equal(px[1, 0], [0, 0, 50])


@pytest.mark.parametrize("extra, want", [("assocalpha", 100 + 127), ("unassalpha", (100 * 128 + 255 * 127 + 127) // 255)])
def test_tiff_alpha_associated_or_not(tmp_path, extra, want):
    tifffile = pytest.importorskip("tifffile")
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 100
    rgba[..., 3] = 128
    p = tmp_path / f"{extra}.tif"
    tifffile.imwrite(p, rgba, photometric="rgb", extrasamples=[extra])
    with open_image(p) as src:
        px = src.read(0, 0, 8, 8)
    assert (px == want).all(), (px[0, 0], want)


def _exif(kind: int, value: int, order: str = "II") -> bytes:
    e = "<" if order == "II" else ">"
    entry = struct.pack(e + "HHI", 0x0112, kind, 1)
    if kind == 3:
        entry += struct.pack(e + "HH", value, 0)
    elif kind == 4:
        entry += struct.pack(e + "I", value)
    else:
        entry += bytes([value, 0, 0, 0])
    return b"Exif\x00\x00" + order.encode() + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1) + entry + b"\x00" * 4


@pytest.mark.parametrize("kind", [1, 3, 4])
@pytest.mark.parametrize("order", ["II", "MM"])
def test_exif_orientation_stored_as_byte_short_or_long(kind, order, caplog):
    assert info_orientation({"exif": _exif(kind, 6, order)}, "x.jpg") == 6
    assert "unreadable" not in caplog.text


def test_xmp_orientation_as_an_element_or_an_attribute():
    elem = b'<x:xmpmeta><rdf:Description><tiff:Orientation>8</tiff:Orientation></rdf:Description></x:xmpmeta>'
    attr = b'<x:xmpmeta><rdf:Description tiff:Orientation="3"/></x:xmpmeta>'
    assert info_orientation({"xmp": elem}, "x.webp") == 8
    assert info_orientation({"XML:com.adobe.xmp": attr.decode()}, "x.png") == 3


def test_a_jpeg_cut_between_a_0xff_and_its_stuffed_zero_is_truncated(tmp_path):
    pytest.importorskip("imagecodecs")
    rng = np.random.default_rng(7)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (96, 128, 3)).astype(np.uint8)).save(buf, "JPEG", quality=95)
    data = buf.getvalue()
    sos = data.rfind(b"\xff\xda")
    stuffed = [i for i in range(sos + 20, len(data) - 2) if data[i] == 0xFF and data[i + 1] == 0x00]
    cut = min(stuffed, key=lambda i: abs(i - len(data) // 2))  # a stuffed 0xFF near the middle of the scan
    p = tmp_path / "cut_ff.jpg"
    p.write_bytes(data[: cut + 1])  # ends with the 0xFF, its 0x00 gone
    with pytest.raises(ImageReadError, match="truncated"):
        open_image(p)
