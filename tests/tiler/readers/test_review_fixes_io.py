"""Reading images, from an outside review of giant-image input: PNGs whose pixel data ends
before the last row in every colour type, 16-bit PNGs decoded once, a truncated JPEG checked
without holding the image three times, the orientation in the JSON, and damaged files told in
one line of the command's own."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile as dt
from densedet_tile.errors import ImageReadError
from densedet_tile.tiler.readers import compact
from fakes import run_cli


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png(path: Path, rows: np.ndarray, width: int, height: int, depth: int, colour: int, *,
         keep: float = 1.0, extra: bytes = b"") -> Path:
    """A non-interlaced PNG of ``rows`` ((height, row bytes) uint8, filter byte 0 added), whose
    pixel stream holds only the first ``keep`` of its rows, yet ends with IDAT and IEND intact."""
    n = int(round(height * keep))
    raw = b"".join(b"\x00" + r.tobytes() for r in rows[:n])
    head = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", head) + extra + _chunk(b"IDAT", zlib.compress(raw))
                     + _chunk(b"IEND", b""))
    return path


def _cases(rng: np.random.Generator) -> dict[str, tuple[np.ndarray, int, int, bytes]]:
    """Row bytes, depth, colour type and extra chunks of one 60x40 image per colour type."""
    h, w = 40, 60
    rgb16 = rng.integers(0, 65535, (h, w * 3), dtype=np.uint16).astype(">u2").view(np.uint8).reshape(h, -1)
    grey16 = rng.integers(0, 65535, (h, w), dtype=np.uint16).astype(">u2").view(np.uint8).reshape(h, -1)
    return {
        "rgb16": (rgb16, 16, 2, b""),
        "grey16": (grey16, 16, 0, b""),
        "palette": (rng.integers(1, 200, (h, w), dtype=np.uint8), 8, 3, _chunk(b"PLTE", bytes(range(256)) * 3)),
        "rgba": (rng.integers(1, 255, (h, w * 4), dtype=np.uint8), 8, 6, b""),
        "rgb8": (rng.integers(1, 255, (h, w * 3), dtype=np.uint8), 8, 2, b""),
    }


@pytest.mark.parametrize("kind", ["rgb16", "grey16", "palette", "rgba", "rgb8"])
def test_a_png_whose_pixel_data_ends_early_is_refused_in_every_colour_type(tmp_path: Path, kind: str) -> None:
    rows, depth, colour, extra = _cases(np.random.default_rng(3))[kind]
    whole = _png(tmp_path / "whole.png", rows, 60, 40, depth, colour, extra=extra)
    with dt.open_image(whole) as src:
        assert src.size == (60, 40) and src.read(0, 0, 60, 40).shape == (40, 60, 3)
    for keep in (0.5, 0.6, 0.9):  # the 8-bit check once found 16-bit files short by half only
        short = _png(tmp_path / f"short{keep}.png", rows, 60, 40, depth, colour, keep=keep, extra=extra)
        with pytest.raises(ImageReadError, match=r"short.*\.png: the PNG is truncated"):
            dt.open_image(short)


def test_rows_missing_counts_every_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    img = rng.integers(0, 255, (37, 53, 3), dtype=np.uint8)
    for mode, kw in (("RGB", {}), ("RGB", {"interlace": 1}), ("L", {"interlace": 1}), ("1", {}), ("P", {"interlace": 1})):
        path = tmp_path / f"{mode}{kw}.png"
        Image.fromarray(img).convert(mode).save(path, **kw)
        data = path.read_bytes()
        assert not compact.png_rows_missing(data), (mode, kw)
        # cut the pixel stream short (the same chunk layout, a shorter IDAT)
        pos = data.index(b"IDAT") - 4
        size = int.from_bytes(data[pos:pos + 4], "big")
        stream = zlib.decompress(data[pos + 8: pos + 8 + size])
        cut = data[:pos] + _chunk(b"IDAT", zlib.compress(stream[: len(stream) - 9])) + _chunk(b"IEND", b"")
        assert compact.png_rows_missing(cut), (mode, kw)


def test_a_16_bit_png_is_decoded_once(tmp_path: Path) -> None:
    rows, depth, colour, _ = _cases(np.random.default_rng(4))["rgb16"]
    with dt.open_image(_png(tmp_path / "deep.png", rows, 60, 40, depth, colour)) as src:
        # (48-bit RGB by imagecodecs, scaled as a 16-bit TIFF is: see test_reader_compact)
        assert src.stats.decoder == "imagecodecs" and src.stats.full_decodes == 1
    rows, depth, colour, _ = _cases(np.random.default_rng(4))["grey16"]
    with dt.open_image(_png(tmp_path / "grey.png", rows, 60, 40, depth, colour)) as src:
        assert src.stats.decoder == "pillow" and src.stats.full_decodes == 1


def test_a_jpeg_checked_for_missing_data_counts_its_decodes_and_compares_band_by_band(tmp_path: Path) -> None:
    img = np.random.default_rng(0).integers(0, 255, (300, 200, 3), dtype=np.uint8)
    img[-16:, -16:] = 128  # a mid-grey bottom-right corner sends an intact file through the check
    Image.fromarray(img).save(tmp_path / "grey_corner.jpg", quality=95)
    # baseline: checked at full size too (at 1/8 scale the blocks' means missed a file with
    # restart markers cut early: the probes moved them by under a level)
    with dt.open_image(tmp_path / "grey_corner.jpg") as src:
        assert src.stats.decoder == "imagecodecs" and src.stats.full_decodes == 3
        np.testing.assert_array_equal(src.read(0, 0, 200, 300), np.asarray(Image.open(tmp_path / "grey_corner.jpg")))
    Image.fromarray(img).save(tmp_path / "grey_progressive.jpg", quality=95, progressive=True)
    with dt.open_image(tmp_path / "grey_progressive.jpg") as src:  # progressive: at full size
        assert src.stats.decoder == "imagecodecs" and src.stats.full_decodes == 3
    a = np.zeros((1000, 7, 3), np.uint8)
    b = a.copy()
    assert compact._same(a, b, rows=64)
    for row in (0, 500, 999):
        c = a.copy()
        c[row, 3, 1] = 1
        assert not compact._same(a, c, rows=64)


def test_the_json_says_which_orientation_was_applied(tmp_path: Path) -> None:
    stored = np.full((40, 80, 3), 30, np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned: the upright image is 40 wide and 80 high
    Image.fromarray(stored).save(tmp_path / "turned.jpg", exif=exif.tobytes())
    r = run_cli(str(tmp_path / "turned.jpg"), "--out", str(tmp_path / "out"), "--detector", "tests/fakes.py:make_blob",
                "-q", cwd=Path(__file__).resolve().parents[3])
    assert r.returncode == 0, r.stderr
    image = json.loads((tmp_path / "out" / "turned.detections.json").read_text())["image"]
    assert (image["width"], image["height"], image["orientation"]) == (40, 80, 6)


def _tiff_bytes() -> bytes:
    import io

    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((64, 64, 3), np.uint8))  # its tags' values lie past byte 200
    return buf.getvalue()


def test_a_damaged_tiff_is_one_line_of_the_commands_own(tmp_path: Path) -> None:
    (tmp_path / "cut.tif").write_bytes(_tiff_bytes()[:200])  # tags point past the end of the file
    (tmp_path / "no_page.tif").write_bytes(b"II*\x00\x08\x00\x00\x00" + b"\x00" * 8)
    for name in ("cut.tif", "no_page.tif"):
        r = run_cli(str(tmp_path / name), "--out", str(tmp_path / "out"), "-q", cwd=tmp_path)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.returncode == 1 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"densedet-tile: error: {tmp_path / name}: "), r.stderr
        assert "zero size" not in lines[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_corrupt_exif_block_is_said_once(tmp_path: Path) -> None:
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "bad.jpg", exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    r = run_cli(str(tmp_path / "bad.jpg"), "--out", str(tmp_path / "out"), "--detector", "tests/fakes.py:make_blob", "-q",
                cwd=Path(__file__).resolve().parents[3])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 0 and len(lines) == 1 and "unreadable EXIF" in lines[0], r.stderr


def test_a_corrupt_exif_block_where_warnings_are_errors_is_a_read_error(tmp_path: Path) -> None:
    # a program run with warnings as errors (pytest -W error, PYTHONWARNINGS=error) got Pillow's
    # own UserWarning out of the reader, not one of the package's errors naming the file
    import warnings

    from densedet_tile import ImageReadError
    from densedet_tile.tiler.readers import open_image

    path = tmp_path / "bad.jpg"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(path, exif=b"Exif\x00\x00II*\x00\xff\xff\xff\x7f")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # (Pillow's own words follow in brackets; not matched, they may change with its version)
        with pytest.raises(ImageReadError, match=r"bad\.jpg: cannot read image header \("):
            open_image(path)


def test_the_png_truncation_check_inflates_in_bounded_steps():
    # a 6000 x 6000 16-bit RGBA PNG of zeros is 1 MB on disk and 288 MB of pixel stream: the
    # check inflated it into one buffer of that size
    import struct
    import tracemalloc
    import zlib

    from densedet_tile.tiler.readers import compact

    w = h = 6000
    row = b"\0" * (1 + w * 8)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(h)) + z.flush()
    whole = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 6, 0, 0, 0))
             + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    cut = whole[:8 + 25 + 12 + len(idat) // 2]  # half the pixel stream
    tracemalloc.start()
    try:
        assert not compact.png_rows_missing(whole)
        assert compact.png_rows_missing(cut)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_an_orientation_tag_holding_more_than_one_value_is_not_applied(tmp_path: Path) -> None:
    # a SHORT orientation tag whose count says 2^32 - 1 values: Pillow's getexif() skips it, and
    # the reader applied its first value (7) and turned the image and every box
    import io
    import json

    buf = io.BytesIO()
    Image.fromarray(np.full((30, 40, 3), 90, np.uint8)).save(buf, "JPEG")
    seg = b"Exif\0\0MM\0*\0\0\0\x08\0\x05\x01\x12\0\x03\xff\xff\xff\xff\0\x07\0\0" + b"\xff" * 40
    data = buf.getvalue()
    (tmp_path / "bad.jpg").write_bytes(data[:2] + b"\xff\xe1" + (len(seg) + 2).to_bytes(2, "big") + seg + data[2:])
    r = run_cli(str(tmp_path / "bad.jpg"), "--out", str(tmp_path / "out"), "--detector", "tests/fakes.py:make_blob", "-q",
                cwd=Path(__file__).resolve().parents[3])
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    # one line of the command's own, naming the file (not Pillow's two lines naming its source)
    assert r.returncode == 0 and len(lines) == 1, r.stderr
    assert "bad.jpg" in lines[0] and "unreadable EXIF" in lines[0] and "upright" in lines[0], r.stderr
    image = json.loads((tmp_path / "out" / "bad.detections.json").read_text())["image"]
    assert (image["width"], image["height"], image["orientation"]) == (40, 30, 1)


def test_warnings_about_an_image_given_as_bytes_name_it_not_the_temporary_file(caplog) -> None:
    import io

    from densedet_tile.tiler.readers import open_image

    exif = Image.Exif()
    exif[274] = 9  # no such orientation
    buf = io.BytesIO()
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(buf, "JPEG", exif=exif)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        with open_image(buf.getvalue()):
            pass
        buf.seek(0)
        with open_image(buf):
            pass
    lines = [r.getMessage() for r in caplog.records if "orientation" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith("<bytes>: ") and lines[1].startswith("<BytesIO>: "), lines
    assert not any(".densedet-image." in r.getMessage() for r in caplog.records)


def test_the_renaming_of_temporary_files_in_logs_belongs_to_the_thread_that_opens(caplog) -> None:
    # a filter added and removed per open raced with other threads' records (a second look);
    # now one filter stays, and renames only what the thread inside the open is opening
    import logging
    import threading

    from densedet_tile.tiler.readers import opener

    log = logging.getLogger("densedet_tile.tiler.readers")
    inside, done = threading.Event(), threading.Event()

    def opening() -> None:
        with opener._named_in_logs("/tmp/.densedet-image.A.tmp", "<bytes>"):
            log.warning("/tmp/.densedet-image.A.tmp: first")
            inside.set()
            done.wait(10)

    with caplog.at_level("WARNING", logger="densedet_tile"):
        t = threading.Thread(target=opening)
        t.start()
        assert inside.wait(10)
        # another thread meanwhile: its lines are its own
        log.warning("/tmp/.densedet-image.A.tmp: from elsewhere")
        done.set()
        t.join(10)
        log.warning("/tmp/.densedet-image.A.tmp: after")
    got = [r.getMessage() for r in caplog.records]
    assert got == ["<bytes>: first", "/tmp/.densedet-image.A.tmp: from elsewhere", "/tmp/.densedet-image.A.tmp: after"]
