"""The Pillow reader: one decoded copy; Pillow's process-wide settings never changed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from densedet_tile import ImageReadError
from densedet_tile.tiler import open_image

from reader_samples import encoded_image, noise, read_all


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


def test_a_header_read_leaves_pillows_pixel_limit_as_the_program_set_it(tmp_path, monkeypatch):
    # another thread of the program opening its own files meanwhile must see its own limit: the
    # reader skips Pillow's check instead of lifting the process-wide limit around it
    path = tmp_path / "big.png"
    Image.fromarray(noise(60, 50)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    factory, accept = Image.OPEN["PNG"]
    seen = []

    def spy(fp, filename):
        seen.append(Image.MAX_IMAGE_PIXELS)
        return factory(fp, filename)

    monkeypatch.setitem(Image.OPEN, "PNG", (spy, accept))
    for decoder in ("auto", "pillow"):
        with open_image(path, decoder=decoder, max_pixels=None) as src:
            assert src.size == (50, 60)
    assert seen == [100, 100]
    with pytest.raises(Image.DecompressionBombError):
        Image.open(path)  # Pillow's own check, for the program's files, is still there


def test_a_webp_over_pillows_limit_opens_and_a_few_bytes_are_an_unknown_format(tmp_path, monkeypatch):
    # Pillow's WebP plugin checks the limit itself while reading the header; a 3-byte file made
    # one plugin's header test fail with struct.error
    path = tmp_path / "pano.webp"
    Image.fromarray(noise(60, 50)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with open_image(path, max_pixels=None) as src:
        assert src.size == (50, 60)
    assert Image.MAX_IMAGE_PIXELS == 100
    for data, says in ((b"\xff\xd8\xff", "the JPEG file breaks off or is damaged inside its header"),
                       (b"BM", "unknown or unsupported image format"), (b"\x00", "unknown or unsupported image format")):
        short = tmp_path / "short.jpg"
        short.write_bytes(data)
        with pytest.raises(ImageReadError, match=f"short.jpg: {says}"):
            open_image(short)


def test_a_truncated_file_is_an_error_and_pillows_truncation_setting_is_the_programs(tmp_path, monkeypatch):
    from PIL import ImageFile

    path = tmp_path / "cut.jpg"
    path.write_bytes(encoded_image("JPEG")[:-300])
    for decoder in ("auto", "pillow"):
        with pytest.raises(ImageReadError, match="truncated"):
            open_image(path, decoder=decoder)
    # a program that told Pillow to pad truncated files (process-wide) keeps that setting while
    # the reader decodes, in every thread; the compact decoder still refuses the file
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    real_load = ImageFile.ImageFile.load
    seen = []

    def load(self):
        seen.append(ImageFile.LOAD_TRUNCATED_IMAGES)
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    with pytest.raises(ImageReadError, match="truncated"):
        open_image(path)
    with open_image(path, decoder="pillow") as src:
        assert src.size == (64, 64)
    assert seen and all(seen)


def test_a_png_cut_inside_its_header_is_called_cut_not_unknown(tmp_path):
    path = tmp_path / "g.png"
    Image.fromarray(noise(20, 30)).save(path)
    whole = path.read_bytes()
    for n in (8, 40):
        cut = tmp_path / f"cut{n}.png"
        cut.write_bytes(whole[:n])
        with pytest.raises(ImageReadError, match=rf"cut{n}.png: the PNG file breaks off or is damaged inside its header"):
            open_image(cut)
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    with pytest.raises(ImageReadError, match="notes.png: unknown or unsupported image format"):
        open_image(text)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "I;16"])
def test_a_big_window_needing_conversion_is_converted_in_bands_to_the_same_pixels(tmp_path, monkeypatch, mode):
    # the conversion's temporaries (alpha over white, 16 bits) are several times what it
    # converts: a preview band of a transparent panorama used ten times its budget, so windows
    # go a band of rows at a time, with the same result
    from densedet_tile.tiler.readers import pillow as pillow_mod

    rng = np.random.default_rng(3)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65536, (90, 70), dtype=np.uint16))
    elif mode == "P":
        im = Image.fromarray(rng.integers(0, 256, (90, 70, 3), dtype=np.uint8)).quantize(64)
    else:
        im = Image.fromarray(rng.integers(0, 256, (90, 70, len(mode)), dtype=np.uint8), mode=mode)
    path = tmp_path / "a.png"
    im.save(path)
    with open_image(path) as src:
        whole = src.read(0, 0, 70, 90)
    monkeypatch.setattr(pillow_mod, "_CONVERT_CHUNK_PIXELS", 70 * 7)  # bands of 7 rows
    with open_image(path) as src:
        np.testing.assert_array_equal(src.read(0, 0, 70, 90), whole)
        np.testing.assert_array_equal(src.read(5, 3, 60, 80), whole[3:83, 5:65])
