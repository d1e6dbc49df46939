"""Image readers: round trips on tiny files written to tmp_path, windows, and the bad-input list."""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import struct
import sys
import zlib

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from densedet_tile import ImageReadError, InvalidInputError, MissingDependencyError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import DECODERS, ArraySource, PillowSource, SourceStats, TiffSource
from densedet_tile.tiler.readers.colour import pillow_converter

RNG = np.random.default_rng(1234)


def noise(h: int, w: int, c: int | None = 3, dtype=np.uint8, hi: int = 256) -> np.ndarray:
    shape = (h, w) if c is None else (h, w, c)
    return RNG.integers(0, hi, shape).astype(dtype)


def quadrants(h: int, w: int) -> np.ndarray:
    """Four flat colour blocks (red TL, green TR, blue BL, white BR): survive JPEG exactly enough."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def png_bytes(arr: np.ndarray, colortype: int, *, size: tuple[int, int] | None = None) -> bytes:
    """A minimal PNG writer (Pillow cannot write 48-bit RGB or zero-size PNGs)."""
    h, w = arr.shape[:2] if size is None else size[::-1]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = arr.astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(arr.shape[0]))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colortype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def read_all(src) -> np.ndarray:
    return src.read(0, 0, src.width, src.height)


def check_output(a: np.ndarray, h: int, w: int) -> None:
    assert a.shape == (h, w, 3) and a.dtype == np.uint8
    assert a.flags.c_contiguous and a.flags.writeable


# ---------------------------------------------------------------------------------------------
# EXIF orientation
# ---------------------------------------------------------------------------------------------
# Where the stored image's top-left (red) quadrant ends up in the upright image.
RED_CORNER = {1: "tl", 2: "tr", 3: "br", 4: "bl", 5: "tl", 6: "tr", 7: "br", 8: "bl"}


def save_with_orientation(path, arr, orientation, fmt="JPEG", **kw):
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, fmt, exif=exif, **kw)


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
    arr = noise(10, 14)
    path = tmp_path / "bad.png"
    save_with_orientation(path, arr, bad, fmt="PNG")
    with caplog.at_level(logging.WARNING, logger="densedet_tile.tiler.readers"):
        with open_image(path) as src:
            assert src.orientation == 1 and src.size == (14, 10)
            np.testing.assert_array_equal(read_all(src), arr)
    assert any("orientation" in r.getMessage() and "bad.png" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------------------------------------
# Pillow modes
# ---------------------------------------------------------------------------------------------
def test_16bit_gray_png_scaled_by_full_range(tmp_path):
    a = np.array([[0, 257, 65535, 32768], [1000, 128, 60000, 2]], np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as im:
        assert im.mode.startswith("I;16")
    with open_image(path) as src:
        out = read_all(src)
    check_output(out, 2, 4)
    expected = np.round(a / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    np.testing.assert_array_equal(out[..., 1], out[..., 2])


def test_48bit_rgb_png(tmp_path):
    a = noise(6, 9, dtype=np.uint16, hi=65536)
    path = tmp_path / "rgb48.png"
    path.write_bytes(png_bytes(a, colortype=2))
    with open_image(path) as src:
        out = read_all(src)
    check_output(out, 6, 9)
    assert np.abs(out.astype(int) - np.round(a / 257.0)).max() <= 1


def test_rgba_composited_on_white(tmp_path):
    a = np.zeros((2, 3, 4), np.uint8)
    a[..., :3] = (200, 40, 10)
    a[0, 0, 3] = 0  # transparent -> white
    a[0, 1, 3] = 255  # opaque -> colour
    a[0, 2, 3] = 128
    a[1, :, 3] = 255
    path = tmp_path / "rgba.png"
    Image.fromarray(a, "RGBA").save(path)
    with open_image(path) as src:
        out = read_all(src)
    check_output(out, 2, 3)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert tuple(out[0, 1]) == (200, 40, 10)
    expected = np.round((np.array([200, 40, 10]) * 128 + 255 * 127) / 255)
    assert np.abs(out[0, 2].astype(int) - expected).max() <= 1


def test_gray_and_gray_alpha(tmp_path):
    g = noise(5, 6, c=None)
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    with open_image(tmp_path / "g.png") as src:
        out = read_all(src)
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, axis=2))

    la = np.stack([g, np.full_like(g, 255)], axis=-1)
    la[0, 0, 1] = 0
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    with open_image(tmp_path / "la.png") as src:
        out = read_all(src)
    assert tuple(out[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(out[1:, :, 0], g[1:])


def test_bilevel_image(tmp_path):
    bits = noise(7, 9, c=None, hi=2).astype(bool)
    Image.fromarray(bits).save(tmp_path / "b.png")
    with Image.open(tmp_path / "b.png") as im:
        assert im.mode == "1"
    with open_image(tmp_path / "b.png") as src:
        out = read_all(src)
    np.testing.assert_array_equal(out[..., 1], bits.astype(np.uint8) * 255)


@pytest.mark.parametrize("kind", ["index", "table"])
def test_palette_with_transparency(tmp_path, kind):
    idx = noise(8, 10, c=None, hi=4)
    idx[0, 0] = 3
    palette = [10, 20, 30, 40, 50, 60, 70, 80, 90, 200, 100, 0]
    im = Image.fromarray(idx, "P")
    im.putpalette(palette)
    path = tmp_path / f"p_{kind}.png"
    if kind == "index":
        im.save(path, transparency=3)
    else:
        im.save(path, transparency=bytes([255, 255, 255, 0]))
    with Image.open(path) as im:
        assert im.mode == "P"
    with open_image(path) as src:
        out = read_all(src)
    table = np.array(palette, np.uint8).reshape(4, 3)
    opaque = idx != 3
    np.testing.assert_array_equal(out[opaque], table[idx[opaque]])
    assert (out[~opaque] == 255).all()


def test_cmyk_jpeg_webp_bmp(tmp_path):
    cmyk = noise(16, 24, c=4)
    Image.fromarray(cmyk, "CMYK").save(tmp_path / "c.jpg", quality=95)
    with open_image(tmp_path / "c.jpg") as src:
        assert src.format == "JPEG"
        out = read_all(src)
    with Image.open(tmp_path / "c.jpg") as im:
        np.testing.assert_array_equal(out, np.asarray(im.convert("RGB")))

    rgb = noise(13, 17)
    Image.fromarray(rgb).save(tmp_path / "w.webp", lossless=True)
    Image.fromarray(rgb).save(tmp_path / "b.bmp")
    for name in ("w.webp", "b.bmp"):
        with open_image(tmp_path / name) as src:
            np.testing.assert_array_equal(read_all(src), rgb)


@pytest.mark.parametrize(
    "values, expected",
    [
        (np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), [[0, 128], [255, 64]]),  # [0, 1]
        (np.array([[-1.0, 0.0], [1.0, 3.0]], np.float32), [[0, 64], [128, 255]]),  # stretched
    ],
)
def test_float_mode_scaling(values, expected):
    im = Image.fromarray(values, "F")
    conv = pillow_converter(im)
    out = conv(im)
    np.testing.assert_array_equal(out[..., 0], np.array(expected, np.uint8))


def test_int32_mode_with_16bit_values():
    im = Image.fromarray(np.array([[0, 65535, 257]], np.int32), "I")
    out = pillow_converter(im)(im)
    np.testing.assert_array_equal(out[0, :, 0], [0, 255, 1])


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


def test_decompression_bomb_limit_replaced_and_restored(tmp_path, monkeypatch):
    rgb = noise(60, 50)
    path = tmp_path / "big.png"
    Image.fromarray(rgb).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # Pillow alone would refuse this file
    with open_image(path, max_pixels=None) as src:
        np.testing.assert_array_equal(read_all(src), rgb)
    assert Image.MAX_IMAGE_PIXELS == 100
    with pytest.raises(ImageReadError) as err:
        open_image(path, max_pixels=2999)
    msg = str(err.value)
    assert "big.png" in msg and "50x60" in msg and "max_pixels=2999" in msg and "\n" not in msg
    assert Image.MAX_IMAGE_PIXELS == 100
    with open_image(path, max_pixels=3000) as src:
        assert src.size == (50, 60)


def test_pillow_source_keeps_one_decoded_copy(tmp_path):
    # Pillow-decoded images stay in Pillow's buffer in their own mode; reads do not cache windows.
    path = tmp_path / "p.png"
    Image.fromarray(noise(40, 30)).save(path)
    src = open_image(path, decoder="pillow")
    stats = src.stats
    assert stats.decoder == "pillow" and stats.decoded_bytes is None  # no numpy copy: Pillow holds it
    assert stats.stored_mode == "RGB" and stats.full_decodes == 1 and src.size == (30, 40)
    a, b = src.read(0, 0, 30, 40), src.read(0, 0, 30, 40)
    assert not np.shares_memory(a, b)
    assert src.stats == stats
    src.close()
    assert src.closed and src.stats.stored_mode is None and src.stats.decoded_bytes == 0
    with pytest.raises(ImageReadError, match="closed"):
        src.read(0, 0, 1, 1)


# ---------------------------------------------------------------------------------------------
# TIFF / BigTIFF
# ---------------------------------------------------------------------------------------------
TIFF_LAYOUTS = {
    "tiled-bigtiff-zlib": dict(tile=(32, 48), compression="zlib", bigtiff=True),
    "tiled-none": dict(tile=(16, 16)),
    "striped": dict(rowsperstrip=7),
    "striped-zlib-one-strip": dict(rowsperstrip=1000, compression="zlib"),
}


@pytest.mark.parametrize("layout", sorted(TIFF_LAYOUTS))
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_tiff_windows_equal_slices(tmp_path, layout, data):
    path = tmp_path / f"{layout}.tif"
    if not path.exists():
        np.save(tmp_path / f"{layout}.npy", noise(101, 131))
        tifffile.imwrite(path, np.load(tmp_path / f"{layout}.npy"), photometric="rgb", **TIFF_LAYOUTS[layout])
    full = np.load(tmp_path / f"{layout}.npy")
    x = data.draw(st.integers(0, 130))
    y = data.draw(st.integers(0, 100))
    w = data.draw(st.integers(1, 131 - x))
    h = data.draw(st.integers(1, 101 - y))
    with open_image(path, tiff_cache_bytes=data.draw(st.sampled_from([0, 10_000, 10**8]))) as src:
        assert isinstance(src, TiffSource) and src.size == (131, 101)
        win = src.read(x, y, w, h)
        check_output(win, h, w)
        np.testing.assert_array_equal(win, full[y : y + h, x : x + w])
        np.testing.assert_array_equal(src.read(x, y, w, h), win)  # again, now from the cache


def test_tiled_tiff_window_decodes_only_overlapping_tiles(tmp_path):
    full = noise(200, 300)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(64, 32), compression="zlib", bigtiff=True)
    # 32 wide x 64 tall tiles: 10 across, 4 down. Each window below needs every tile it overlaps
    # for its pixels to be right, so a decode count equal to that number of tiles means that
    # exactly those tiles were decoded.
    with open_image(path) as src:
        assert src.stats.decoder == "tifffile" and src.stats.segments_decoded == 0
        win = src.read(40, 70, 50, 60)  # cols 40..89 -> tiles 1,2; rows 70..129 -> tiles 1,2
        np.testing.assert_array_equal(win, full[70:130, 40:90])
        assert (src.stats.segments_decoded, src.stats.cache_hits) == (4, 0)
        np.testing.assert_array_equal(src.read(60, 100, 10, 10), full[100:110, 60:70])
        assert (src.stats.segments_decoded, src.stats.cache_hits) == (4, 2)  # inside tiles 11, 12: cached
        np.testing.assert_array_equal(src.read(0, 0, 300, 1), full[:1])  # the top row of tiles only
        assert (src.stats.segments_decoded, src.stats.cache_hits) == (14, 2)
        assert src.segments_decoded == 14


def test_striped_tiff_decodes_only_covering_strips(tmp_path):
    full = noise(100, 40)
    path = tmp_path / "s.tif"
    tifffile.imwrite(path, full, photometric="rgb", rowsperstrip=10)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(5, 25, 10, 20), full[25:45, 5:15])
        assert src.stats.segments_decoded == 3  # rows 25..44: strips 2, 3 and 4, each needed


def test_tiff_cache_stays_within_its_budget(tmp_path):
    full = noise(128, 128)
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(16, 16))
    budget = 5 * 16 * 16 * 3
    with open_image(path, tiff_cache_bytes=budget) as src:
        for y in range(0, 128, 16):
            src.read(0, y, 128, 16)
            assert src.stats.cache_bytes <= budget and src.stats.cached_segments <= 5
        np.testing.assert_array_equal(read_all(src), full)


@pytest.mark.parametrize("compression", ["lzw", "jpeg", "lzma"])
def test_tiff_compressions_match_tifffile(tmp_path, compression):
    if compression != "lzma":
        pytest.importorskip("imagecodecs", reason="LZW/JPEG TIFF decoding needs the imagecodecs package")
    yy, xx = np.mgrid[0:96, 0:80]
    smooth = np.stack([xx * 3, yy * 2, (xx + yy)], axis=-1).astype(np.uint8)
    path = tmp_path / f"{compression}.tif"
    tifffile.imwrite(path, smooth, photometric="rgb", tile=(32, 32), compression=compression)
    ref = tifffile.imread(path)
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(5, 7, 60, 70), ref[7:77, 5:65])


def test_tiff_compression_without_codec_names_the_package(tmp_path, monkeypatch):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, noise(8, 8), photometric="rgb", compression="zlib")

    class NoCodecs:
        def __getitem__(self, key):
            raise KeyError(f"{key!r} requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TIFF, "DECOMPRESSORS", NoCodecs())
    with pytest.raises(MissingDependencyError, match="imagecodecs") as err:
        open_image(path)
    assert "t.tif" in str(err.value)


def test_tiff_sample_types_and_colour_models(tmp_path):
    rgb16 = noise(20, 30, dtype=np.uint16, hi=65536)
    tifffile.imwrite(tmp_path / "u16.tif", rgb16, photometric="rgb", tile=(16, 16))
    with open_image(tmp_path / "u16.tif") as src:
        np.testing.assert_array_equal(read_all(src), np.round(rgb16 / 257.0).astype(np.uint8))

    gray = noise(20, 30, c=None)
    tifffile.imwrite(tmp_path / "g.tif", gray, photometric="minisblack")
    with open_image(tmp_path / "g.tif") as src:
        np.testing.assert_array_equal(read_all(src), np.repeat(gray[..., None], 3, axis=2))
    tifffile.imwrite(tmp_path / "w.tif", gray, photometric="miniswhite")
    with open_image(tmp_path / "w.tif") as src:
        np.testing.assert_array_equal(read_all(src)[..., 0], 255 - gray)

    rgba = noise(20, 30, c=4)
    rgba[0, 0, 3] = 0
    rgba[0, 1, 3] = 255
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"], tile=(16, 16))
    with open_image(tmp_path / "a.tif") as src:
        out = read_all(src)
    assert tuple(out[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(out[0, 1], rgba[0, 1, :3])

    planar = noise(3, 25, c=35).transpose(1, 2, 0).copy()  # (25, 35, 3)
    tifffile.imwrite(tmp_path / "sep.tif", planar.transpose(2, 0, 1), photometric="rgb", planarconfig="separate", rowsperstrip=8)
    with open_image(tmp_path / "sep.tif") as src:
        np.testing.assert_array_equal(src.read(3, 4, 20, 15), planar[4:19, 3:23])

    bits = noise(12, 20, c=None, hi=2).astype(bool)
    tifffile.imwrite(tmp_path / "bits.tif", bits, photometric="minisblack")
    with open_image(tmp_path / "bits.tif") as src:
        np.testing.assert_array_equal(read_all(src)[..., 2], bits.astype(np.uint8) * 255)

    fl = np.array([[0.0, 0.5, 1.0, 2.0, -1.0]], np.float32)
    tifffile.imwrite(tmp_path / "f.tif", fl, photometric="minisblack")
    with open_image(tmp_path / "f.tif") as src:
        np.testing.assert_array_equal(read_all(src)[0, :, 0], [0, 128, 255, 255, 0])

    idx = noise(10, 12, c=None, hi=3)
    cmap = np.zeros((3, 256), np.uint16)
    cmap[:, :3] = [[65535, 0, 0], [0, 65535, 0], [0, 0, 65535]]
    tifffile.imwrite(tmp_path / "pal.tif", idx, photometric="palette", colormap=cmap)
    with open_image(tmp_path / "pal.tif") as src:
        np.testing.assert_array_equal(read_all(src), np.eye(3, dtype=np.uint8)[idx] * 255)


def test_tiff_orientation_tag_applied(tmp_path):
    full = noise(30, 50)
    path = tmp_path / "o.tif"
    tifffile.imwrite(path, full, photometric="rgb", tile=(16, 16), extratags=[(274, 3, 1, 6, False)])
    with open_image(path) as src:
        assert src.orientation == 6 and src.size == (30, 50)
        np.testing.assert_array_equal(read_all(src), np.rot90(full, k=-1))


def test_multipage_tiff_uses_first_page(tmp_path):
    big, small = noise(40, 60), noise(20, 30)
    path = tmp_path / "pyr.tif"
    with tifffile.TiffWriter(path) as w:
        w.write(big, photometric="rgb", tile=(16, 16))
        w.write(small, photometric="rgb", tile=(16, 16))
    with open_image(path) as src:
        assert src.size == (60, 40)
        np.testing.assert_array_equal(read_all(src), big)


def test_truncated_tiff_raises_on_read(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, noise(64, 64), photometric="rgb", tile=(16, 16), compression="zlib")
    data = path.read_bytes()
    # tifffile writes the tile data before the IFD; keep the header and IFD, zero a tile.
    with tifffile.TiffFile(path) as t:
        off, cnt = t.pages[0].dataoffsets[5], t.pages[0].databytecounts[5]
    broken = data[:off] + b"\x00" * cnt + data[off + cnt :]
    path.write_bytes(broken)
    with open_image(path) as src:
        src.read(0, 0, 16, 16)  # tile 0 is fine
        with pytest.raises(ImageReadError, match="t.tif"):
            src.read(16, 16, 16, 16)  # tile 5 is garbage


# ---------------------------------------------------------------------------------------------
# numpy arrays
# ---------------------------------------------------------------------------------------------
def test_array_source_windows_without_copying_the_image():
    a = noise(40, 50)
    src = open_image(a)
    assert isinstance(src, ArraySource) and src.name == "<array>" and src.path is None
    assert src.size == (50, 40)
    win = src.read(5, 6, 20, 10)
    check_output(win, 10, 20)
    np.testing.assert_array_equal(win, a[6:16, 5:25])
    rows = src.read(0, 10, 50, 5)
    assert np.shares_memory(rows, a)  # whole rows: a view
    np.testing.assert_array_equal(rows, a[10:15])


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


def test_window_outside_image_is_rejected():
    src = open_image(noise(10, 10))
    for args in [(-1, 0, 5, 5), (0, 0, 11, 5), (6, 6, 5, 5), (0, 0, 0, 3), (0.5, 0, 1, 1)]:
        with pytest.raises(InvalidInputError):
            src.read(*args)


# ---------------------------------------------------------------------------------------------
# Bad inputs: one-line ImageReadError naming the file
# ---------------------------------------------------------------------------------------------
def _encoded(fmt: str) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buf, fmt)
    return buf.getvalue()


@pytest.mark.parametrize(
    "name, make, phrase",
    [
        ("missing.jpg", None, "no such file"),
        ("empty.jpg", lambda p: p.write_bytes(b""), "empty"),
        ("text.jpg", lambda p: p.write_text("not an image, just text\n" * 5), "unknown or unsupported"),
        ("cut.jpg", lambda p: p.write_bytes(_encoded("JPEG")[:-300]), "truncated"),
        ("cut.png", lambda p: p.write_bytes(_encoded("PNG")[: len(_encoded("PNG")) // 2]), "truncated"),
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
    with pytest.raises(InvalidInputError, match="path or a numpy array"):
        open_image(12)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="max_pixels"):
        open_image(noise(2, 2), max_pixels=0)


def test_truncated_jpeg_raises_even_if_pillow_was_told_to_accept_it(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "cut.jpg"
    path.write_bytes(_encoded("JPEG")[:-300])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageReadError, match="truncated"):
        open_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored


# ---------------------------------------------------------------------------------------------
# JPEG through imagecodecs: one 3-byte-per-pixel decoded copy, same pixels as Pillow
# ---------------------------------------------------------------------------------------------
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
    good = _encoded_array(img)
    (tmp_path / "trail.jpg").write_bytes(good + b"camera trailer \x00\x01")
    (tmp_path / "odd.jpg").write_bytes(good + b"\xff\xda junk without an end marker")
    with open_image(tmp_path / "trail.jpg") as src:
        assert src.decoder == "imagecodecs"
        ref = read_all(src)
    with open_image(tmp_path / "odd.jpg") as src:
        assert src.decoder == "pillow"  # structure unclear: Pillow decides
        np.testing.assert_array_equal(read_all(src), ref)


def _encoded_array(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()


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


# ---------------------------------------------------------------------------------------------
# The decoder option and the stats snapshot
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad", ["turbo", "Pillow", "", None, 1])
def test_decoder_option_is_validated(bad):
    with pytest.raises(InvalidInputError) as err:
        open_image(noise(4, 4), decoder=bad)  # type: ignore[arg-type]
    msg = str(err.value)
    assert "decoder" in msg and repr(bad) in msg and "auto, imagecodecs, pillow" in msg and "\n" not in msg


def test_decoder_imagecodecs_is_strict(tmp_path):
    pytest.importorskip("imagecodecs", reason="decoder='imagecodecs' needs the imagecodecs package")
    rgb = noise(12, 16)
    Image.fromarray(rgb).save(tmp_path / "ok.png")
    with open_image(tmp_path / "ok.png", decoder="imagecodecs") as src:
        assert src.stats.decoder == "imagecodecs"
        np.testing.assert_array_equal(read_all(src), rgb)
    Image.fromarray(rgb).save(tmp_path / "w.webp", lossless=True)
    (tmp_path / "odd.jpg").write_bytes(_encoded_array(rgb) + b"\xff\xda junk without an end marker")
    (tmp_path / "rgb48.png").write_bytes(png_bytes(noise(6, 9, dtype=np.uint16, hi=65536), colortype=2))
    for name, why in (("w.webp", "WEBP"), ("odd.jpg", "end-of-image"), ("rgb48.png", "uint16")):
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


def test_stats_per_source_kind(tmp_path):
    rgb = noise(20, 30)
    tifffile.imwrite(tmp_path / "t.tif", rgb, photometric="rgb", tile=(16, 16))
    for decoder in DECODERS:  # TIFF is always read through tifffile
        with open_image(tmp_path / "t.tif", decoder=decoder) as src:
            assert src.stats == SourceStats(decoder="tifffile")
    src = open_image(rgb, decoder="pillow")
    assert src.stats == SourceStats(decoder=None, full_decodes=0)
    # a 48-bit PNG: imagecodecs decodes it to uint16, so Pillow decodes it again
    (tmp_path / "rgb48.png").write_bytes(png_bytes(noise(6, 9, dtype=np.uint16, hi=65536), colortype=2))
    with open_image(tmp_path / "rgb48.png") as src:
        compact = importlib.util.find_spec("imagecodecs") is not None
        assert src.stats.full_decodes == (2 if compact else 1) and src.decoder == src.stats.decoder == "pillow"


def test_stats_is_a_read_only_snapshot(tmp_path):
    path = tmp_path / "t.tif"
    tifffile.imwrite(path, noise(32, 32), photometric="rgb", tile=(16, 16))
    with open_image(path) as src:
        before = src.stats
        with pytest.raises(dataclasses.FrozenInstanceError):
            before.cache_hits = 5  # type: ignore[misc]
        with pytest.raises(AttributeError):
            src.stats = before  # type: ignore[misc]
        src.read(0, 0, 32, 32)
        assert before.segments_decoded == 0 and src.stats.segments_decoded == 4
        assert src.stats.cached_segments == 4 and src.stats.cache_bytes == 4 * 16 * 16 * 3
    assert src.stats.cached_segments == 0 and src.stats.cache_bytes == 0 and src.stats.segments_decoded == 4
