"""A second look at the reader fixes of 2026-12-06: the check for JPEG data that stops early
run on PIL images the program had changed, and on arithmetic-coded JPEGs; its cost on
Pillow's path; TIFFs taken for camera RAW or refused for a SubIFD of smaller levels. Each test
fails on the code before it, but for the one that keeps a real CR2's layout refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from densedet_tile.errors import ImageReadError
from densedet_tile.tiler.readers import open_image


def _grey_corner_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Noise whose bottom-right quarter is mid-grey (128): a grey wall in a photo's corner,
    what sends a JPEG through the check for data that stops early."""
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3)).astype(np.uint8)
    rgb[h // 2 :, w // 2 :] = 128
    return rgb


def _jpeg_file(path, rgb: np.ndarray, **kw) -> None:
    Image.fromarray(rgb).save(path, format="JPEG", **{"quality": 92, **kw})


# -- PIL images: the program's own pixels, not compared with the file behind them -----------


def _thumbnail(im):
    im.thumbnail((80, 80))  # in place: Pillow's draft, then a resize


def _draft_half(im):
    im.draft("RGB", (80, 60))


def _draft_gray(im):
    im.draft("L", im.size)


def _drawn_on(im):
    im.load()
    ImageDraw.Draw(im).rectangle([4, 4, 30, 30], outline=(255, 0, 0))


@pytest.mark.parametrize("change", [_thumbnail, _draft_half, _draft_gray, _drawn_on])
def test_a_pil_image_shrunk_or_drawn_on_with_a_grey_corner_is_read_as_it_is(tmp_path, change):
    # each was refused as "damaged JPEG": the file behind it was decoded again at full size and
    # compared with the changed image
    path = tmp_path / "wall.jpg"
    _jpeg_file(path, _grey_corner_rgb(120, 160))
    with Image.open(path) as im:
        change(im)
        want = np.asarray(im.convert("RGB"))
        with open_image(im) as src:
            got = src.read(0, 0, src.width, src.height)
    assert got.shape == want.shape and np.array_equal(got, want)
    assert (got[-2:, -2:] == 128).all()  # (the corner that sent it through the check)


# -- arithmetic-coded JPEGs: their decoder reads on past the coded data ----------------------


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
@pytest.mark.parametrize("progressive", [False, True])
def test_a_whole_arithmetic_coded_jpeg_with_a_grey_corner_is_read(tmp_path, decoder, progressive):
    # refused as damaged on both decoders: the probes put in after its coded data were read
    import shutil
    import subprocess

    jpegtran = shutil.which("jpegtran")
    if jpegtran is None:
        pytest.skip("no jpegtran here to write an arithmetic-coded JPEG")
    h, w = 301, 199
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 127 // (w + h)], -1).astype(np.uint8)
    rgb[-32:, -32:] = 127  # a grey wall in the corner (it decodes to 127s and 128s: the fill grey)
    huffman, path = tmp_path / "huffman.jpg", tmp_path / "arith.jpg"
    _jpeg_file(huffman, rgb, quality=95, subsampling=0)
    extra = ["-progressive"] if progressive else []
    made = subprocess.run([jpegtran, "-arithmetic", *extra, "-outfile", str(path), str(huffman)], capture_output=True)
    data = path.read_bytes() if path.exists() else b""
    if made.returncode != 0 or not data:
        pytest.skip(f"this jpegtran writes no arithmetic-coded JPEG ({made.stderr.decode(errors='replace')[:80]})")
    assert (b"\xff\xca" if progressive else b"\xff\xc9") in data[: data.find(b"\xff\xda")]
    with Image.open(path) as im:
        want = np.asarray(im.convert("RGB"))
    assert ((want[-2:, -2:] == 127) | (want[-2:, -2:] == 128)).all()
    with open_image(path, decoder=decoder) as src:
        assert np.array_equal(src.read(0, 0, w, h), want)


# -- the check's cost on Pillow's path --------------------------------------------------------


def _smooth_grey_corner(h: int, w: int) -> np.ndarray:
    """A smooth picture (a small file) whose bottom-right quarter is mid-grey."""
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x + y) * 255 // (w + h)], -1).astype(np.uint8)
    rgb[h // 2 :, w // 2 :] = 128
    return rgb


def test_the_decodes_that_check_a_jpeg_on_pillows_path_are_counted(tmp_path):
    # stats said 1 though the check had decoded the file twice more
    path = tmp_path / "wall.jpg"
    _jpeg_file(path, _smooth_grey_corner(96, 128))
    for decoder in ("pillow", "auto"):
        with open_image(path, decoder=decoder) as src:
            assert src.stats.full_decodes == 3, (decoder, src.stats)


def test_the_check_on_pillows_path_copies_no_whole_image(tmp_path):
    # it copied the image into an array, and each probed decode into another: a 48 MP photo
    # with a grey corner peaked at 846 MiB, where reading it takes 217
    import tracemalloc

    h, w = 1536, 2048
    path = tmp_path / "wall.jpg"
    _jpeg_file(path, _smooth_grey_corner(h, w))
    image_bytes = h * w * 3
    assert path.stat().st_size < image_bytes // 16
    with open_image(path, decoder="pillow"):  # (what it imports is not counted below)
        pass
    tracemalloc.start()
    try:
        with open_image(path, decoder="pillow") as src:
            _, peak = tracemalloc.get_traced_memory()
            checked = src.stats.full_decodes > 1  # (that the check ran)
    finally:
        tracemalloc.stop()
    assert peak < image_bytes // 2, peak  # (Pillow's own pixel buffers are not traced)
    assert checked


# -- TIFFs: Canon CR2 told by its header's layout; SubIFDs of smaller levels -----------------


def _gray_tiff(px: np.ndarray, *, cr2: bool) -> bytes:
    """A little-endian uncompressed 8-bit gray TIFF of ``px``: laid out as a Canon CR2's header
    (first IFD at 16 after "CR", version 2.0, at 8; the pixels after the IFD) when ``cr2``, else
    data first, as libtiff writes it (the pixels at 8, the IFD after them)."""
    import struct

    h, w = px.shape
    data = px.tobytes()
    n_tags = 9
    ifd_at = 16 if cr2 else 8 + len(data)
    data_at = ifd_at + 2 + 12 * n_tags + 4 if cr2 else 8
    tags = [(256, 3, 1, w), (257, 3, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1),
            (273, 4, 1, data_at), (277, 3, 1, 1), (278, 3, 1, h), (279, 4, 1, len(data))]
    ifd = struct.pack("<H", n_tags) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    if cr2:
        return b"II*\x00" + struct.pack("<I", 16) + b"CR\x02\x00" + struct.pack("<I", 0) + ifd + data
    return b"II*\x00" + struct.pack("<I", ifd_at) + data + ifd


def test_a_data_first_tiff_whose_first_pixels_spell_cr2_is_read(tmp_path):
    # refused as camera RAW: bytes 8 to 12 of any little-endian TIFF were taken for a CR2's
    # signature, and a TIFF written data first has its first pixels there
    px = np.random.default_rng(0).integers(0, 256, (48, 64)).astype(np.uint8)
    px[0, :4] = (67, 82, 2, 0)  # "CR", 2, 0
    path = tmp_path / "scan.tif"
    path.write_bytes(_gray_tiff(px, cr2=False))
    assert path.read_bytes()[8:12] == b"CR\x02\x00"
    with open_image(path) as src:
        got = src.read(0, 0, 64, 48)
    assert np.array_equal(got, np.repeat(px[..., None], 3, axis=2))


def test_a_tiff_laid_out_as_a_canon_cr2_is_still_refused_as_camera_raw(tmp_path):
    path = tmp_path / "IMG_0003.CR2"
    path.write_bytes(_gray_tiff(np.zeros((48, 64), np.uint8), cr2=True))
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    assert str(err.value) == f"{path}: camera RAW is not supported: export a JPEG or TIFF"


def test_a_tiff_of_reduced_resolution_pages_whose_subifds_hold_smaller_levels_is_read(tmp_path, caplog):
    # refused ("its image is in a SubIFD") for having SubIFDs at all: a mislabelled pyramid's
    # levels are smaller than its page, which is the image
    import logging

    import tifffile

    big = np.random.default_rng(0).integers(0, 256, (64, 96, 3)).astype(np.uint8)
    path = tmp_path / "pyramid.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(big, photometric="rgb", subfiletype=1, subifds=1, tile=(32, 32))
        tif.write(big[::2, ::2].copy(), photometric="rgb", subfiletype=1, tile=(32, 32))
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        assert np.array_equal(src.read(0, 0, 96, 64), big)
    assert any("reading the largest, page 1 (96x64)" in r.getMessage() for r in caplog.records)


def test_a_tiff_of_previews_whose_subifd_holds_a_larger_image_is_still_refused(tmp_path):
    import tifffile

    path = tmp_path / "IMG_0004.tif"
    with tifffile.TiffWriter(path) as tif:  # a camera's layout: the preview first, the image in its SubIFD
        tif.write(np.zeros((24, 32, 3), np.uint8), photometric="rgb", subfiletype=1, subifds=1)
        tif.write(np.zeros((96, 128, 3), np.uint8), photometric="rgb")
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    assert str(err.value) == (f"{path}: the TIFF holds only a reduced-resolution preview (32x24); its image is in a "
                              "SubIFD (128x96), which is not read (camera RAW?): export a JPEG or TIFF")
