"""Files users really have that once read wrong: a PNG's orientation kept in XMP or a raw EXIF
text chunk, TIFFs with a thumbnail page first or several pages, float TIFFs holding 8-bit
values, a PNG whose pixel stream ends early, an iPhone's HEIC photo; and reading in a process
that does other things (no process-wide warning or Pillow state touched while decoding)."""

from __future__ import annotations

import logging
import struct
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageOps, PngImagePlugin

from densedet_tile.errors import ImageReadError
from densedet_tile.tiler import open_image

from reader_samples import noise, read_all

_XMP = ('<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>')


def _raw_profile(orientation: int) -> str:
    exif = Image.Exif()
    exif[0x0112] = orientation
    hexed = exif.tobytes().hex()
    return f"\nexif\n{len(hexed) // 2:8d}\n" + "\n".join(hexed[i:i + 72] for i in range(0, len(hexed), 72)) + "\n"


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
@pytest.mark.parametrize("where", ["xmp", "raw profile"])
def test_a_png_orientation_kept_in_text_chunks_is_applied_by_every_decoder(tmp_path, decoder, where):
    upright = noise(30, 40)
    info = PngImagePlugin.PngInfo()
    if where == "xmp":
        info.add_itxt("XML:com.adobe.xmp", _XMP)
    else:  # ImageMagick's way
        info.add_text("Raw profile type exif", _raw_profile(6), zip=True)
    path = tmp_path / "turned.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path, pnginfo=info)  # stored turned by 90 degrees
    reference = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    with open_image(path, decoder=decoder) as src:
        assert (src.width, src.height) == (reference.shape[1], reference.shape[0])
        np.testing.assert_array_equal(read_all(src), reference)


def test_a_tiff_with_a_thumbnail_first_is_read_at_full_resolution(tmp_path, caplog):
    full = noise(90, 120)
    path = tmp_path / "camera.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(full[::8, ::8].copy(), photometric="rgb", subfiletype=1)  # a reduced-resolution preview
        tif.write(full, photometric="rgb")
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        assert (src.width, src.height) == (120, 90)
        np.testing.assert_array_equal(read_all(src), full)
    assert "pages" not in caplog.text  # the preview is not another image


def test_a_tiff_of_several_images_reads_the_first_and_says_so(tmp_path, caplog):
    first, second = noise(40, 50), noise(20, 70)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(first, photometric="rgb")
        tif.write(second, photometric="rgb")
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        np.testing.assert_array_equal(read_all(src), first)
    assert "has 2 pages; only page 1 (50x40) is read" in caplog.text


def test_float_tiffs_holding_8_bit_values_are_not_turned_white(tmp_path):
    rgb = noise(30, 40)
    tifffile.imwrite(tmp_path / "f255.tif", rgb.astype(np.float32), photometric="rgb", tile=(16, 16))
    with open_image(tmp_path / "f255.tif") as src:
        np.testing.assert_array_equal(read_all(src), rgb)
    # the usual 0..1 convention, with an HDR highlight above 1: clipped, not rescaled
    hdr = rgb.astype(np.float32) / 255
    hdr[0, 0] = 7.5
    tifffile.imwrite(tmp_path / "hdr.tif", hdr, photometric="rgb")
    with open_image(tmp_path / "hdr.tif") as src:
        out = read_all(src)
    assert tuple(out[0, 0]) == (255, 255, 255)
    assert np.abs(out[1:].astype(int) - rgb[1:]).max() <= 1
    # SMaxSampleValue says where white is
    tifffile.imwrite(tmp_path / "tagged.tif", rgb.astype(np.float32) / 2, photometric="rgb",
                     extratags=[(341, "d", 3, (127.5, 127.5, 127.5), False)])
    with open_image(tmp_path / "tagged.tif") as src:
        assert np.abs(read_all(src).astype(int) - rgb).max() <= 1


def _png(width: int, height: int, rows: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    pixels = b"".join(b"\x00" + bytes([128]) * width * 3 for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(pixels)) + chunk(b"IEND", b""))


def test_a_png_whose_pixels_end_early_is_refused_not_filled_with_black(tmp_path):
    pytest.importorskip("imagecodecs")
    whole, short = tmp_path / "whole.png", tmp_path / "short.png"
    whole.write_bytes(_png(40, 30, 30))
    short.write_bytes(_png(40, 30, 15))  # half the rows, then a proper end: Pillow shows black
    with open_image(whole) as src:
        assert read_all(src).min() == 128
    with pytest.raises(ImageReadError, match=r"short\.png: the PNG is truncated: its pixel data ends before the last row"):
        open_image(short)
    # every row there, only the stream's checksum cut off: Pillow reads it whole, and so do we
    data = _png(40, 30, 30)
    idat = data.index(b"IDAT")
    length = int.from_bytes(data[idat - 4 : idat], "big")
    body = data[idat + 4 : idat + 4 + length - 4]  # without the Adler-32
    chunk = (len(body)).to_bytes(4, "big") + b"IDAT" + body + struct.pack(">I", zlib.crc32(b"IDAT" + body) & 0xFFFFFFFF)
    nosum = tmp_path / "nosum.png"
    nosum.write_bytes(data[: idat - 4] + chunk + data[idat + 4 + length + 4 :])
    with open_image(nosum) as src:
        assert read_all(src).min() == 128 and (src.width, src.height) == (40, 30)


def test_a_heic_photo_says_what_to_do(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as on an install without the plugin
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64))
    with pytest.raises(ImageReadError, match=r"IMG_0001\.HEIC: a HEIC/HEIF photo.*pip install pillow-heif"):
        open_image(path)
    other = tmp_path / "notes.jpg"
    other.write_bytes(b"hello, not an image at all")
    with pytest.raises(ImageReadError, match="unknown or unsupported image format"):
        open_image(other)


def test_reading_changes_no_process_wide_state(tmp_path, monkeypatch):
    # catch_warnings and Pillow's limits are process-wide: another thread of the application
    # would see them changed (or, with two threads interleaving, left changed for good)
    import warnings

    from PIL import ImageFile

    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _XMP)
    paths = [tmp_path / "x.png", tmp_path / "x.jpg", tmp_path / "x.webp", tmp_path / "x16.png"]
    Image.fromarray(noise(30, 40)).save(paths[0], pnginfo=info)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(noise(30, 40)).save(paths[1], exif=exif.tobytes())
    Image.fromarray(noise(30, 40)).save(paths[2])
    Image.fromarray((noise(30, 40, c=None).astype(np.uint16) * 257)).save(paths[3])

    def no_catching(*args, **kwargs):
        raise AssertionError("warnings.catch_warnings on the read path")

    monkeypatch.setattr(warnings, "catch_warnings", no_catching)
    limits = []
    real_load = ImageFile.ImageFile.load

    def load(self):
        limits.append((Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    for path in paths:
        for decoder in ("auto", "pillow"):
            with open_image(path, decoder=decoder) as src:
                assert src.read(0, 0, src.width, src.height).shape[2] == 3
    assert limits and all(seen == before for seen in limits)  # decodes ran with the application's settings
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


def test_a_jpeg_whose_header_claims_far_more_pixels_than_its_data_is_refused(tmp_path):
    import io

    buf = io.BytesIO()
    Image.fromarray(noise(100, 120)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)  # a damaged size field (or a bomb)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    with pytest.raises(ImageReadError, match=r"bomb\.jpg: the JPEG header says 20000x20000 pixels"):
        open_image(bomb)
    # a real image that compresses to almost nothing (one flat grey) is still read
    flat = tmp_path / "flat.jpg"
    Image.new("L", (3000, 2000), 128).save(flat, quality=10, progressive=True, optimize=True)
    with open_image(flat) as src:
        assert (src.width, src.height) == (3000, 2000) and int(src.read(0, 0, 8, 8).mean()) in (127, 128, 129)


def test_an_orientation_after_the_pixels_is_read_the_same_by_both_decoders(tmp_path):
    # XMP written after IDAT: Pillow finds it only after decoding; the fast path must not miss it
    upright = noise(30, 40)
    path = tmp_path / "late.png"
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path)
    data = path.read_bytes()
    text = b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + _XMP.encode()
    chunk = struct.pack(">I", len(text)) + b"iTXt" + text + struct.pack(">I", zlib.crc32(b"iTXt" + text) & 0xFFFFFFFF)
    end = data.rindex(b"IEND") - 4
    path.write_bytes(data[:end] + chunk + data[end:])
    sizes = set()
    for decoder in ("auto", "pillow"):
        with open_image(path, decoder=decoder) as src:
            sizes.add((src.width, src.height))
            np.testing.assert_array_equal(read_all(src), np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")))
    assert sizes == {(30, 40)} or sizes == {(40, 30)}


def test_tiff_pages_all_marked_reduced_give_the_largest(tmp_path):
    big = noise(40, 60)
    path = tmp_path / "mislabelled.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(big[::4, ::4].copy(), photometric="rgb", subfiletype=1)
        tif.write(big, photometric="rgb", subfiletype=1)
    with open_image(path) as src:
        np.testing.assert_array_equal(read_all(src), big)


def test_a_float_panorama_mostly_black_fill_keeps_its_8_bit_scale(tmp_path):
    rgb = noise(40, 60)
    fl = np.zeros((40, 200, 3), np.float32)  # stitched: most of the canvas is black fill
    fl[:, 70:130] = rgb
    tifffile.imwrite(tmp_path / "pano.tif", fl, photometric="rgb")
    with open_image(tmp_path / "pano.tif") as src:
        np.testing.assert_array_equal(read_all(src)[:, 70:130], rgb)


def _make_sparse(path, index):
    """Blank segment ``index`` of ``path`` as GDAL's SPARSE_OK files do (offset and byte count 0)."""
    with tifffile.TiffFile(path, mode="r+b") as tif:
        page = tif.pages[0]
        offsets, counts = list(page.dataoffsets), list(page.databytecounts)
        offsets[index] = counts[index] = 0
        kind = "Tile" if page.is_tiled else "Strip"
        page.tags[f"{kind}Offsets"].overwrite(offsets)
        page.tags[f"{kind}ByteCounts"].overwrite(counts)


@pytest.mark.parametrize("layout", [dict(tile=(16, 16), compression="zlib"), dict(rowsperstrip=10)])
def test_a_tiff_of_nothing_but_empty_segments_is_refused(tmp_path, layout):
    # a writer that failed after the header leaves every strip at offset 0 and 0 bytes: it was
    # read as a black image (0 products, exit 0, no word); one empty segment among others is
    # GDAL's sparse data and reads as no-data (below)
    path = tmp_path / "nothing.tif"
    tifffile.imwrite(path, noise(40, 48), photometric="rgb", **layout)
    with tifffile.TiffFile(path) as tif:
        n = len(tif.pages[0].dataoffsets)
    for k in range(n):
        _make_sparse(path, k)
    kind = "tiles" if "tile" in layout else "strips"
    with pytest.raises(ImageReadError, match=rf"nothing.tif: the TIFF holds no image data \(every one of its {n} {kind} is empty"):
        open_image(path)


@pytest.mark.parametrize("layout", [dict(tile=(16, 16), compression="zlib"), dict(rowsperstrip=10)])
def test_a_sparse_tiff_segment_reads_as_tifffile_reads_it(tmp_path, layout):
    rgb = noise(40, 48)
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", **layout)
    _make_sparse(path, 2)
    expected = tifffile.imread(path)
    assert (expected == 0).all(axis=2).sum() >= 160  # the blank segment
    # a small cache too, so that an uncompressed file would be read in place
    for cache in (1 << 20, 100):
        with open_image(path, tiff_cache_bytes=cache) as src:
            np.testing.assert_array_equal(read_all(src), expected)
