"""TIFF/BigTIFF read region by region: windows, layouts, compressions, sample types, damage."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densedet_tile import ImageReadError, MissingDependencyError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers import TiffSource

from reader_samples import check_output, noise, read_all


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


@pytest.mark.parametrize("layout", [{}, {"planarconfig": "separate"}, {"tile": (16, 16), "compression": "zlib"}])
def test_a_cmyk_tiff_gives_the_pixels_pillow_converts_it_to(tmp_path, layout):
    # a CMYK TIFF was refused ("unsupported photometric interpretation SEPARATED") while the same
    # picture as a CMYK JPEG was read (an outside review); it is read as Pillow converts CMYK
    from PIL import Image

    inks = noise(37, 29, c=4)
    inks[0, :3] = [[0, 0, 0, 0], [255, 255, 255, 255], [10, 200, 30, 128]]
    path = tmp_path / "cmyk.tif"
    planes = layout.get("planarconfig") == "separate"  # (samples, h, w) for separate planes
    tifffile.imwrite(path, np.moveaxis(inks, -1, 0) if planes else inks, photometric="separated", **layout)
    with open_image(path) as src:
        got = read_all(src)
    want = np.asarray(Image.frombytes("CMYK", (29, 37), inks.tobytes()).convert("RGB"))
    np.testing.assert_array_equal(got, want)
    assert got[0, 0].tolist() == [255, 255, 255] and got[0, 1].tolist() == [0, 0, 0]


def test_a_separated_tiff_of_other_inks_is_refused_in_one_line(tmp_path):
    path = tmp_path / "inks.tif"
    tifffile.imwrite(path, noise(8, 8, c=4), photometric="separated", extratags=[(332, "H", 1, 2, True)])
    with pytest.raises(ImageReadError, match=r"inks\.tif: separated TIFF with inks other than CMYK"):
        open_image(path)


@pytest.mark.parametrize("layout", [dict(tile=(32, 32), compression="zlib"), dict(rowsperstrip=24, compression="zlib")])
def test_a_preview_pass_decodes_each_tiff_segment_once_and_keeps_none(tmp_path, layout):
    # the preview of a giant TIFF read it again through the segment cache the detection had
    # filled: its memory twice over. Now what the detection kept is let go first, the bands hold
    # whole strips or tile rows (each decoded once) and each band's segments go after it.
    from densedet_tile.tiler.resize import shrink_source

    rgb = noise(200, 150)
    path = tmp_path / "big.tif"
    tifffile.imwrite(path, rgb, photometric="rgb", **layout)
    with open_image(path) as src:
        src.read(0, 0, 150, 100)  # a detection's window: its segments stay cached
        assert src.stats.cache_bytes > 0
        segments = src.stats.segments_decoded
        small = shrink_source(src, 0.5, band_bytes=150 * 3 * 40)  # bands of 40 rows, not whole units
        assert src.stats.cache_bytes == 0
        per_pass = -(-200 // 32) * -(-150 // 32) if "tile" in layout else -(-200 // 24)
        assert src.stats.segments_decoded - segments == per_pass
        assert small.size == (75, 100)
        src.release()
        assert src.stats.cache_bytes == 0 and src.read(0, 0, 10, 10).shape == (10, 10, 3)  # still open


def test_a_one_strip_tiff_is_decoded_once_for_a_preview_in_bands(tmp_path):
    # its strip is the image's height: the bands cannot hold whole strips, so the strip must stay
    # cached from one band to the next (it was let go after each band: decoded 15 times)
    from densedet_tile.tiler.resize import shrink_source

    path = tmp_path / "one.tif"
    tifffile.imwrite(path, noise(300, 80), photometric="rgb", compression="zlib", rowsperstrip=300)
    with open_image(path) as src:
        shrink_source(src, 0.5, band_bytes=80 * 3 * 20)  # bands of 20 rows
        assert src.stats.segments_decoded == 1
