"""An outside review of the image readers (2026-12-06): files of a format the engine does not
read (PostScript, which Pillow hands to Ghostscript), JPEGs whose data stops early, camera RAW,
file objects already read from, and the wording of a few refusals. Each test fails on the code
before it."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.cli import main
from densedet_tile.errors import ImageReadError
from densedet_tile.runner import error_line
from densedet_tile.tiler.readers import open_image
from densedet_tile.tiler.readers.compact import fill_corner
from fakes import blob_photo
from fakes import error_lines as _errors
from reader_samples import noise

BLOB = ["--detector", "fakes:make_blob", "--tile", "256", "--device", "cpu"]

#: a small EPS file: PostScript that Pillow's EPS plugin renders by running Ghostscript
EPS = (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n"
       b"newpath 0 0 moveto 100 100 lineto stroke\nshowpage\n%%EOF\n")


@pytest.fixture
def fake_gs(tmp_path, monkeypatch):
    """A ``gs`` first on PATH that notes each call in a file (the path returned) and fails."""
    if os.name != "posix":
        pytest.skip("a shell script as a program: POSIX")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gs_calls.log"
    gs = bin_dir / "gs"
    gs.write_text(f'#!/bin/sh\necho "$@" >> "{calls}"\ncase "$1" in --version) echo 10.02.1; exit 0;; esac\nexit 1\n')
    gs.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ.get('PATH', '')}")
    return calls


def test_postscript_named_like_a_photo_is_an_unknown_format_and_never_reaches_ghostscript(tmp_path, fake_gs):
    upload = tmp_path / "upload.jpg"
    upload.write_bytes(EPS)
    with pytest.raises(ImageReadError) as err:
        open_image(upload)
    assert str(err.value) == f"{upload}: unknown or unsupported image format"
    with pytest.raises(ImageReadError) as err:
        open_image(EPS)  # an upload's bytes
    assert str(err.value) == "<bytes>: unknown or unsupported image format"
    assert not fake_gs.exists(), fake_gs.read_text()


def test_postscript_among_the_inputs_fails_on_its_own_line(tmp_path, fake_gs, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "upload.jpg").write_bytes(EPS)
    blob_photo(tmp_path / "ok.png")
    rc = main(["upload.jpg", "ok.png", "--out", "o", "-q", *BLOB])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert _errors(err) == ["densedet-tile: error: upload.jpg: unknown or unsupported image format"]
    assert (tmp_path / "o" / "ok.detections.json").is_file()
    assert not fake_gs.exists()


def test_an_unexpected_fault_of_a_decoder_is_an_image_read_error_naming_the_source(tmp_path, monkeypatch):
    from PIL import PngImagePlugin

    def broken(self):
        raise subprocess.CalledProcessError(1, ["helper", "-f", self.filename])

    buf = io.BytesIO()
    Image.fromarray(noise(20, 30)).save(buf, format="PNG")
    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", broken)
    with pytest.raises(ImageReadError) as err:
        open_image(buf.getvalue(), decoder="pillow")
    msg = str(err.value)
    assert msg.startswith("<bytes>: cannot decode PNG image (CalledProcessError: ") and ".densedet-image." not in msg


def test_an_error_line_that_quotes_the_input_further_on_still_starts_with_it():
    exc = subprocess.CalledProcessError(1, ["gs", "-f", "shop/upload.jpg"])
    line = error_line("shop/upload.jpg", exc)
    assert line.startswith("shop/upload.jpg: CalledProcessError: ")


# -- JPEGs whose coded data stops before their last block, though the file ends properly ------


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **{"quality": 90, **kw})
    return buf.getvalue()


def _cut_with_eoi(data: bytes) -> bytes:
    """``data`` cut inside its scan, an end-of-image marker put back after the cut."""
    cut = data[: len(data) // 2]
    return cut.rstrip(b"\xff") + b"\xff\xd9"


def _stray_restarts(data: bytes) -> bytes:
    """``data`` with three restart markers put in halfway through its scan (not between a 0xFF
    and its stuffed byte): a JPEG without restart intervals has none there."""
    start = data.find(b"\xff\xda")
    at = start + (len(data) - start) // 2
    while data[at - 1] == 0xFF:
        at += 1
    return data[:at] + b"\xff\xd0" * 3 + data[at:]


def _photo(h: int = 96, w: int = 128) -> Image.Image:
    return Image.fromarray(noise(h, w))


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
@pytest.mark.parametrize("damage", [_cut_with_eoi, _stray_restarts])
@pytest.mark.parametrize("mode", ["RGB", "CMYK"])  # (a CMYK JPEG is always Pillow's)
def test_a_jpeg_whose_data_stops_early_is_refused_on_either_decoder(tmp_path, decoder, damage, mode):
    path = tmp_path / "short.jpg"
    path.write_bytes(damage(_jpeg(_photo().convert(mode))))
    with pytest.raises(ImageReadError) as err:
        open_image(path, decoder=decoder)
    msg = str(err.value)
    assert msg.startswith(f"{path}: the JPEG data is damaged") and "128x96 pixels" in msg and "\n" not in msg


def test_a_pil_image_of_a_jpeg_whose_data_stops_early_is_read_as_the_program_decoded_it(tmp_path):
    # (it was refused, until a second look found PIL images that had been shrunk or drawn on
    # refused too: a PIL image is the program's pixels; its file is checked when read as one)
    path = tmp_path / "short.jpg"
    path.write_bytes(_stray_restarts(_jpeg(_photo().convert("CMYK"))))
    with Image.open(path) as im, open_image(im) as src:
        assert np.array_equal(src.read(0, 0, 128, 96), np.asarray(im.convert("RGB")))
    with pytest.raises(ImageReadError, match=r"the JPEG data is damaged"):
        open_image(path)


def test_a_short_jpeg_is_padded_where_the_program_asked_for_it(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "short.jpg"
    path.write_bytes(_cut_with_eoi(_jpeg(_photo().convert("CMYK"))))
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with open_image(path) as src:  # Pillow's decode, padded as the flag asks (README)
        assert src.read(0, 0, src.width, src.height).shape == (96, 128, 3)


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
@pytest.mark.parametrize("kind", ["CMYK", "restarts", "progressive"])
def test_a_whole_jpeg_with_a_fill_grey_corner_is_read(tmp_path, decoder, kind):
    rgb = noise(96, 128)
    rgb[-24:] = 128  # the grey a block without data decodes to: what sends a file through the check
    img = Image.fromarray(rgb)
    if kind == "CMYK":
        cmyk = np.asarray(img.convert("CMYK")).copy()
        cmyk[-24:] = (127, 128, 127, 128)
        data = _jpeg(Image.fromarray(cmyk, "CMYK"))
    elif kind == "restarts":  # restart markers in their turn, one every 4 blocks
        data = _jpeg(img, restart_marker_blocks=4)
        assert data.count(b"\xff\xd1") > 1
    else:
        data = _jpeg(img, progressive=True)
    path = tmp_path / "whole.jpg"
    path.write_bytes(data)
    with Image.open(path) as im:
        assert fill_corner(np.asarray(im))  # (checked, and found whole)
        want = np.asarray(im.convert("RGB"))
    with open_image(path, decoder=decoder) as src:
        got = src.read(0, 0, src.width, src.height)
    assert np.array_equal(got, want) and (got[-8:] != 0).all()


# -- camera RAW, and TIFFs that hold only previews ------------------------------------------


def _raw_tiff(path: Path, *, dng: bool) -> None:
    """A TIFF laid out as cameras write DNG: page 1 a small RGB preview tagged reduced-resolution,
    the sensor's colour filter array data in a SubIFD; with a DNGVersion tag when ``dng``."""
    import tifffile

    dng_tag = [(50706, "B", 4, (1, 4, 0, 0), True)] if dng else []
    raw = np.random.default_rng(0).integers(0, 4096, (96, 128)).astype(np.uint16)
    with tifffile.TiffWriter(path) as tif:
        tif.write(noise(24, 32), subfiletype=1, subifds=1, photometric="rgb", extratags=dng_tag)
        tif.write(raw, photometric=32803, extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)])


def test_a_dng_is_refused_rather_than_read_on_its_thumbnail(tmp_path):
    path = tmp_path / "IMG_0001.DNG"
    _raw_tiff(path, dng=True)
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    assert str(err.value) == f"{path}: camera RAW (DNG) is not supported: export a JPEG or TIFF"


def test_a_tiff_of_previews_whose_image_is_in_a_subifd_is_refused(tmp_path):
    path = tmp_path / "IMG_0002.tif"
    _raw_tiff(path, dng=False)
    with pytest.raises(ImageReadError, match=r"only a reduced-resolution preview \(32x24\); its image is in a SubIFD"):
        open_image(path)


def test_a_page_of_sensor_data_is_refused_as_camera_raw(tmp_path):
    import tifffile

    path = tmp_path / "cfa.tif"
    tifffile.imwrite(path, np.zeros((32, 48), np.uint16), photometric=32803,
                     extratags=[(33421, "H", 2, (2, 2), True), (33422, "B", 4, (0, 1, 1, 2), True)])
    with pytest.raises(ImageReadError, match=r"camera RAW is not supported: export a JPEG or TIFF$"):
        open_image(path)


def test_a_tiff_of_reduced_resolution_pages_alone_is_read_with_a_warning(tmp_path, caplog):
    import logging

    import tifffile

    big = noise(40, 60)
    path = tmp_path / "previews.tif"
    with tifffile.TiffWriter(path) as tif:
        tif.write(big[::4, ::4].copy(), photometric="rgb", subfiletype=1)
        tif.write(big, photometric="rgb", subfiletype=1)
    with caplog.at_level(logging.WARNING), open_image(path) as src:
        assert np.array_equal(src.read(0, 0, src.width, src.height), big)
    said = [r.getMessage() for r in caplog.records if "reduced-resolution" in r.getMessage()]
    assert said == [f"{path}: every page of the TIFF is tagged as a reduced-resolution copy (a preview or thumbnail); "
                    "reading the largest, page 2 (60x40)"]


# -- a file object already read from ---------------------------------------------------------


def test_a_seekable_file_object_already_read_from_is_read_from_its_start():
    rgb = noise(48, 64)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    with Image.open(buf) as im:  # an upload checked first, as services do
        im.verify()
    assert buf.tell() > 0
    with open_image(buf) as src:
        assert src.name == "<BytesIO>" and np.array_equal(src.read(0, 0, 64, 48), rgb)


def test_a_stream_that_cannot_seek_is_read_from_where_it_is():
    buf = io.BytesIO()
    Image.fromarray(noise(48, 64)).save(buf, format="PNG")

    class Stream(io.RawIOBase):  # a pipe: no seeking
        def __init__(self, data: bytes) -> None:
            self._data = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            chunk = self._data.read(len(b))
            b[: len(chunk)] = chunk
            return len(chunk)

    stream = Stream(b"junk" + buf.getvalue())
    assert stream.read(4) == b"junk"
    with open_image(stream) as src:
        assert (src.width, src.height) == (64, 48)


# -- the wording of two refusals --------------------------------------------------------------


def test_a_truncated_avif_is_called_cut_short_not_an_unknown_format(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow reads no AVIF")
    buf = io.BytesIO()
    Image.fromarray(noise(96, 128)).save(buf, format="AVIF", quality=90)
    data = buf.getvalue()
    path = tmp_path / "cut.avif"
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    assert str(err.value) == f"{path}: the AVIF file breaks off or is damaged (the file is cut short?)"


def test_a_deflate_compressed_ycbcr_tiff_is_not_called_uncompressed(tmp_path):
    import tifffile

    path = tmp_path / "ycc.tif"
    tifffile.imwrite(path, noise(32, 48), photometric="ycbcr", subsampling=(1, 1), compression="zlib")
    with pytest.raises(ImageReadError) as err:
        open_image(path)
    assert str(err.value) == (f"{path}: a YCbCr TIFF is read only when JPEG-compressed; this one is "
                              "ADOBE_DEFLATE-compressed: save it as RGB")


def test_a_heif_of_the_brand_it_shares_with_avif_is_still_said_to_be_heif(tmp_path):
    import importlib.util
    import struct

    if importlib.util.find_spec("pillow_heif") is not None:
        pytest.skip("pillow-heif installed: the file goes to it")
    path = tmp_path / "IMG_0006.heic"
    path.write_bytes(struct.pack(">I", 24) + b"ftypmif1" + bytes(4) + b"mif1heic" + bytes(200))
    with pytest.raises(ImageReadError, match=r"a HEIC/HEIF photo, which this install cannot decode"):
        open_image(path)


@pytest.mark.parametrize("decoder", ["auto", "pillow"])
@pytest.mark.parametrize(("mode", "quality", "where"), [("CMYK", 90, 12), ("CMYK", 96, 7), ("RGB", 90, 24)])
def test_a_jpeg_with_restart_markers_cut_short_is_refused(tmp_path, decoder, mode, quality, where):
    # each was read with the rest of the image grey: the probes reach only the rest of one
    # restart interval, and at 1/8 scale (the blocks' means, as this was checked before) they
    # changed nothing in the CMYK files; the RGB one is cut just after an interval's last block,
    # where probes put in alone are skipped as junk
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3)).astype(np.uint8)  # (its own: the same file
    rgb[-40:] = 128  # whatever ran before, for the cut positions below)
    data = _jpeg(Image.fromarray(rgb).convert(mode), quality=quality, restart_marker_blocks=1)
    sos = data.find(b"\xff\xda")
    cut = sos + 300 + (len(data) - sos - 400) * where // 40
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:cut].rstrip(b"\xff") + b"\xff\xd9")
    with pytest.raises(ImageReadError, match=r"the JPEG data is damaged"):
        open_image(path, decoder=decoder)
