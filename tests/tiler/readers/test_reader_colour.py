"""Colour policy: gray, alpha, palette, bilevel, CMYK, 16-bit and float pixels become RGB uint8."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers.colour import pillow_converter, uint8_to_rgb

from reader_samples import check_output, noise, png_bytes, read_all


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
        # (an outside review: one NaN or infinity made the whole image black; they are left out
        # of the range and set to its ends)
        (np.array([[np.nan, 0.5], [1.0, 0.25]], np.float32), [[0, 128], [255, 64]]),
        (np.array([[np.inf, 0.5], [1.0, -np.inf]], np.float32), [[255, 128], [255, 0]]),
        (np.array([[np.nan, np.nan]], np.float32), [[0, 0]]),
        # as a float TIFF: 8-bit values stored as floats (whole or not: a resized copy) read as
        # 0..255; a 0..1 image whose highlights go a little over 1 is clipped (it read as 0..255:
        # nearly black); one value all over (100.5) is a gray, not black
        (np.array([[0.0, 128.0], [255.0, 64.0]], np.float32), [[0, 128], [255, 64]]),
        (np.array([[0.0, 30.2], [60.3, 15.1]], np.float32), [[0, 30], [60, 15]]),
        (np.array([[0.0, 0.5], [1.02, 0.25]], np.float32), [[0, 128], [255, 64]]),
        (np.array([[100.5, 100.5]], np.float32), [[101, 101]]),
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


def test_uint8_windows_to_rgb():
    rgb = noise(3, 4)
    assert uint8_to_rgb(rgb) is rgb  # RGB is handed back as is (an array window stays a view)
    gray = noise(3, 4, c=None)
    np.testing.assert_array_equal(uint8_to_rgb(gray), np.repeat(gray[..., None], 3, axis=2))
    rgba = noise(3, 4, c=4)
    rgba[..., 3] = 255
    rgba[0, 0, 3] = 0
    out = uint8_to_rgb(rgba)
    assert tuple(out[0, 0]) == (255, 255, 255)
    np.testing.assert_array_equal(out[1:], rgba[1:, :, :3])


@pytest.mark.parametrize("shape", [(37, 5, 3), (9, 1001), (3,)])
def test_scale_uint_in_bands_gives_the_whole_array_result(monkeypatch, shape):
    # a 16-bit panorama is scaled a band of rows at a time (two float32 copies of the whole
    # image before); the bands must give exactly what one pass gives
    from densedet_tile.tiler.readers import colour

    a = np.random.default_rng(3).integers(0, 1 << 16, shape, dtype=np.uint16)
    a[0, ...] = 65535
    whole = colour.scale_uint(a, 16)
    monkeypatch.setattr(colour, "_BAND_ELEMS", 2)
    banded = colour.scale_uint(a, 16)
    assert banded.dtype == np.uint8 and banded.shape == a.shape
    np.testing.assert_array_equal(banded, whole)
    np.testing.assert_array_equal(whole, ((a.astype(np.float32) * np.float32(255 / 65535)) + np.float32(0.5)).astype(np.uint8))


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_png_colour_key_is_transparent_like_any_other_transparency(tmp_path, mode):
    # a tRNS chunk on an RGB or gray PNG names one colour as transparent: composited on white,
    # as an alpha channel or a palette's transparency is (it came through as its colour before)
    key = (10, 20, 30) if mode == "RGB" else 7
    other = (1, 2, 3) if mode == "RGB" else 9
    a = np.zeros((4, 5, 3) if mode == "RGB" else (4, 5), np.uint8)
    a[...] = key
    a[0, :2] = other
    path = tmp_path / "key.png"
    Image.fromarray(a, mode).save(path, transparency=key)
    with open_image(path) as src:
        out = read_all(src)
    check_output(out, 4, 5)
    want_other = other if mode == "RGB" else (other,) * 3
    assert tuple(out[0, 0]) == tuple(out[0, 1]) == want_other
    assert (out[1:] == 255).all() and (out[0, 2:] == 255).all()


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_a_colour_keyed_png_given_as_a_pil_image_reads_as_its_file_loaded_or_not(tmp_path, mode):
    # an outside review: once Pillow had loaded the image (im.load(), ImageOps.exif_transpose)
    # its tiles, which said the 8-bit depth, were gone, and the key colour came through as itself
    import io

    key = (10, 20, 30) if mode == "RGB" else 7
    a = np.zeros((4, 5, 3) if mode == "RGB" else (4, 5), np.uint8)
    a[...] = key
    a[0, :2] = (1, 2, 3) if mode == "RGB" else 9
    path = tmp_path / "key.png"
    Image.fromarray(a, mode).save(path, transparency=key)
    with open_image(path) as src:
        want = read_all(src)
    assert (want[1:] == 255).all() and not (want[0, 0] == 255).any()

    def loaded(im):
        im.load()
        return im

    data = path.read_bytes()
    for how, im in (("lazy", Image.open(path)), ("loaded", loaded(Image.open(path))),
                    ("loaded from bytes", loaded(Image.open(io.BytesIO(data))))):
        with im, open_image(im) as src:
            np.testing.assert_array_equal(read_all(src), want, err_msg=how)


def test_an_rgb_copy_of_a_gif_keeps_its_opaque_pixels_of_the_transparent_colour(tmp_path):
    # convert("RGB") of a GIF whose palette has a transparent entry keeps that entry's colour as
    # an RGB "transparency": a second look at the fix above found every pixel of that colour
    # turned white, opaque ones too (two palette entries of one colour, one transparent)
    pal = [0, 0, 0, 0, 0, 0] + [200, 30, 30] * 254
    p = np.zeros((4, 6), np.uint8)
    p[:, 3:] = 1  # the right half: the opaque black entry
    im = Image.fromarray(p, "P")
    im.putpalette(pal)
    path = tmp_path / "t.gif"
    im.save(path, transparency=0)
    with open_image(path) as src:
        as_file = read_all(src)
    assert (as_file[:, :3] == 255).all() and (as_file[:, 3:] == 0).all()
    with Image.open(path) as gif:
        rgb = gif.convert("RGB")
    with open_image(rgb) as src:
        assert (read_all(src)[:, 3:] == 0).all()  # opaque black stays black


def test_a_16bit_png_colour_key_is_not_matched_against_the_8bit_pixels(tmp_path):
    # Pillow gives the 48-bit PNG's pixels at 8 bits but keeps its key at 16: (0, 0, 255) is a
    # nearly black blue there, not the bright blue (0, 0, 65535) that reads as (0, 0, 255)
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + np.array([[0, 0, 255], [0, 0, 65535], [1000, 1000, 1000]], ">u2").tobytes()
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 3, 1, 16, 2, 0, 0, 0))
           + chunk(b"tRNS", struct.pack(">HHH", 0, 0, 255)) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b""))
    path = tmp_path / "key16.png"
    path.write_bytes(png)
    with open_image(path) as src:
        out = read_all(src)
    assert out[0].tolist() == [[0, 0, 0], [0, 0, 255], [3, 3, 3]]
    with Image.open(path) as im:  # loaded, as a PIL image: its file's header still says 16 bits
        im.load()
        with open_image(im) as src:
            assert read_all(src)[0].tolist() == [[0, 0, 0], [0, 0, 255], [3, 3, 3]]
    # ... and loaded from bytes (a third look: taken for 8-bit, its bright blue turned white), or
    # with no file left to say its depth at all: the key is left out
    import io

    for kept in (True, False):
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            if not kept:
                im._fp = None
            with open_image(im) as src:
                assert read_all(src)[0].tolist() == [[0, 0, 0], [0, 0, 255], [3, 3, 3]], kept
