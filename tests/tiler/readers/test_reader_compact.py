"""JPEG and PNG through imagecodecs: one 3-byte-per-pixel decoded copy, same pixels as Pillow."""

from __future__ import annotations

import importlib.util
import struct
import sys

import numpy as np
import tifffile
import pytest
from PIL import Image

from densedet_tile import ImageReadError, MissingDependencyError
from densedet_tile.tiler import open_image

from reader_samples import jpeg_bytes, noise, png_bytes, quadrants, read_all, save_with_orientation


@pytest.mark.parametrize(
    "mode, save_kw",
    [
        ("RGB", dict(quality=90)),  # 4:2:0
        ("RGB", dict(quality=95, subsampling=0)),  # 4:4:4
        ("RGB", dict(quality=85, progressive=True)),
        ("L", dict(quality=90)),
    ],
)
def test_jpeg_decoded_compactly_matches_pillow(tmp_path, mode, save_kw):
    pytest.importorskip("imagecodecs", reason="compact JPEG decoding needs the imagecodecs package")
    yy, xx = np.mgrid[0:90, 0:130]
    img = np.stack([xx * 2, yy * 2, (xx * yy) % 256], axis=-1).astype(np.uint8)
    pil = Image.fromarray(img if mode == "RGB" else img[..., 0], mode)
    path = tmp_path / "p.jpg"
    save_with_orientation(path, np.asarray(pil), 6, **save_kw)
    with open_image(path) as fast:
        # held as a numpy array of 3 bytes per pixel (1 for gray), not in Pillow's buffer
        assert fast.stats.decoder == "imagecodecs" and fast.stats.stored_mode == mode
        assert fast.stats.decoded_bytes == 90 * 130 * (3 if mode == "RGB" else 1)
        a = read_all(fast)
        row = fast.read(0, 3, fast.width, 2)
        row[:] = 0  # the caller's window is its own: the decoded image is not touched
        np.testing.assert_array_equal(fast.read(0, 3, fast.width, 2), a[3:5])
    with open_image(path, decoder="pillow") as slow:
        assert slow.stats.decoder == "pillow"
        np.testing.assert_array_equal(read_all(slow), a)


def test_jpeg_with_trailing_bytes(tmp_path):
    pytest.importorskip("imagecodecs", reason="compact JPEG decoding needs the imagecodecs package")
    img = quadrants(32, 48)
    good = jpeg_bytes(img)
    (tmp_path / "trail.jpg").write_bytes(good + b"camera trailer \x00\x01")
    (tmp_path / "odd.jpg").write_bytes(good + b"\xff\xda junk without an end marker")
    with open_image(tmp_path / "trail.jpg") as src:
        assert src.decoder == "imagecodecs"
        ref = read_all(src)
    with open_image(tmp_path / "odd.jpg") as src:
        assert src.decoder == "pillow"  # structure unclear: Pillow decides
        np.testing.assert_array_equal(read_all(src), ref)


def test_png_decoded_compactly_matches_pillow(tmp_path):
    pytest.importorskip("imagecodecs", reason="compact PNG decoding needs the imagecodecs package")
    rgb = noise(37, 53)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(rgb[..., 1]).save(tmp_path / "gray.png")
    for name, ref in (("rgb.png", rgb), ("gray.png", np.repeat(rgb[..., 1:2], 3, axis=2))):
        with open_image(tmp_path / name) as src:
            assert src.stats.decoder == "imagecodecs" and src.stats.decoded_bytes == ref.size // (3 if "gray" in name else 1)
            np.testing.assert_array_equal(read_all(src), ref)
    # 16-bit PNGs are not stored compactly (they would need two bytes per sample).
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(tmp_path / "g16.png")
    with open_image(tmp_path / "g16.png") as src:
        assert src.decoder == "pillow"
        np.testing.assert_array_equal(read_all(src)[..., 0], rgb[..., 0])
    with open_image(tmp_path / "rgb.png", decoder="pillow") as src:
        assert src.stats.decoder == "pillow"
        np.testing.assert_array_equal(read_all(src), rgb)


def _png_chunks(data: bytes) -> list[bytes]:
    out, pos = [], 8
    while pos < len(data):
        n = struct.unpack(">I", data[pos : pos + 4])[0]
        out.append(data[pos : pos + 12 + n])
        pos += 12 + n
    return out


def test_png_exif_after_the_pixels_is_still_applied(tmp_path):
    rgb = noise(20, 30)
    save_with_orientation(tmp_path / "early.png", rgb, 8, fmt="PNG")
    data = (tmp_path / "early.png").read_bytes()
    chunks = _png_chunks(data)
    exif = [c for c in chunks if c[4:8] == b"eXIf"]
    assert len(exif) == 1
    rest = [c for c in chunks if c[4:8] != b"eXIf"]
    late = data[:8] + b"".join(rest[:-1]) + exif[0] + rest[-1]  # eXIf just before IEND
    (tmp_path / "late.png").write_bytes(late)
    compact = importlib.util.find_spec("imagecodecs") is not None
    for name, decoder in (("early.png", "imagecodecs" if compact else "pillow"), ("late.png", "pillow")):
        with open_image(tmp_path / name) as src:
            assert src.decoder == decoder
            assert src.orientation == 8 and src.size == (20, 30)
            np.testing.assert_array_equal(read_all(src), np.rot90(rgb, 1))


def test_decoder_imagecodecs_is_strict(tmp_path):
    pytest.importorskip("imagecodecs", reason="decoder='imagecodecs' needs the imagecodecs package")
    rgb = noise(12, 16)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    with open_image(tmp_path / "ok.png", decoder="imagecodecs") as src:
        assert src.stats.decoder == "imagecodecs"
        np.testing.assert_array_equal(read_all(src), rgb)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    (tmp_path / "odd.jpg").write_bytes(jpeg_bytes(rgb) + b"\xff\xda junk without an end marker")
    (tmp_path / "g16.png").write_bytes(png_bytes(noise(6, 9, dtype=np.uint16, hi=65536)[..., 0], colortype=0))
    for name, why in (("b.bmp", "BMP"), ("odd.jpg", "end-of-image"), ("g16.png", "mode I")):
        with pytest.raises(ImageReadError) as err:
            open_image(tmp_path / name, decoder="imagecodecs")
        msg = str(err.value)
        assert str(tmp_path / name) in msg and "decoder='imagecodecs'" in msg and why in msg and "\n" not in msg
        with open_image(tmp_path / name) as src:  # "auto" lets Pillow decode them
            assert src.stats.decoder == "pillow"


def test_decoder_imagecodecs_without_the_package(tmp_path, monkeypatch):
    path = tmp_path / "p.png"
    Image.fromarray(noise(5, 6)).save(path)
    monkeypatch.setitem(sys.modules, "imagecodecs", None)  # "import imagecodecs" now fails
    with pytest.raises(MissingDependencyError, match="imagecodecs") as err:
        open_image(path, decoder="imagecodecs")
    assert "p.png" in str(err.value)
    with open_image(path) as src:
        assert src.stats.decoder == "pillow"


def test_a_48_bit_png_gives_the_pixels_of_the_same_samples_as_tiff(tmp_path):
    # Pillow opens a 48-bit RGB PNG as 8-bit by keeping each sample's high byte, while 16-bit
    # TIFF samples are scaled v / 257, rounded: the same samples gave other pixels and other boxes
    # as PNG than as TIFF (an outside review). The PNG is decoded and scaled as the TIFF is.
    pytest.importorskip("imagecodecs", reason="16-bit PNG decoding needs the imagecodecs package")
    samples = noise(23, 31, dtype=np.uint16, hi=65536)
    samples[0, :4] = [[0, 128, 65535], [127, 32767, 32896], [200, 255, 256], [65407, 65408, 65534]]
    (tmp_path / "rgb48.png").write_bytes(png_bytes(samples, colortype=2))
    tifffile.imwrite(tmp_path / "rgb48.tif", samples, photometric="rgb")
    with open_image(tmp_path / "rgb48.png") as png, open_image(tmp_path / "rgb48.tif") as tif:
        assert png.stats.decoder == "imagecodecs"
        np.testing.assert_array_equal(read_all(png), read_all(tif))
        np.testing.assert_array_equal(read_all(png), np.floor(samples / 257 + 0.5).astype(np.uint8))
