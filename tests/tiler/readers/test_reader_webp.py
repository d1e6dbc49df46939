"""WebP: one decoded copy is all a source keeps, whichever decoder ran (Pillow's WebP image
object would otherwise keep libwebp's animation decoder and its frame buffers alive)."""

from __future__ import annotations

import gc
import io
import weakref

import numpy as np
import pytest
from PIL import Image

from densedet_tile import ImageReadError
from densedet_tile.tiler import open_image
from densedet_tile.tiler.readers.colour import composite_white

from reader_samples import noise, read_all


@pytest.fixture
def pillow_opened(monkeypatch):
    """Weak references to every image the reader opens while the test runs."""
    from densedet_tile.tiler.readers import pillow

    seen: list[weakref.ref] = []
    real_open = pillow.open_header

    def spy(*args, **kwargs):
        im = real_open(*args, **kwargs)
        seen.append(weakref.ref(im))
        return im

    monkeypatch.setattr(pillow, "open_header", spy)
    return seen


def _still_alive(refs) -> list:
    gc.collect()
    return [r() for r in refs if r() is not None]


def _smooth(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([(xx * 3) % 256, (yy * 5) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)


def _pillow_pixels(path) -> np.ndarray:
    """What Pillow's own full decode gives (the first frame of an animation)."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im).copy()


def test_still_webp_is_one_compact_copy_and_pillow_keeps_nothing(tmp_path, pillow_opened):
    pytest.importorskip("imagecodecs", reason="compact WebP decoding needs the imagecodecs package")
    path = tmp_path / "s.webp"
    Image.fromarray(_smooth(70, 110)).save(path, quality=80)
    expected = _pillow_pixels(path)
    pillow_opened.clear()
    with open_image(path) as src:
        stats = src.stats
        assert stats.decoder == "imagecodecs" and stats.stored_mode == "RGB" and stats.full_decodes == 1
        assert stats.decoded_bytes == 70 * 110 * 3  # one 3-byte-per-pixel copy, nothing else
        assert pillow_opened and not _still_alive(pillow_opened)  # the header's image (and its decoder) is gone
        np.testing.assert_array_equal(read_all(src), expected)
        np.testing.assert_array_equal(src.read(13, 7, 40, 50), expected[7:57, 13:53])


@pytest.mark.parametrize("lossless", [False, True])
def test_webp_with_alpha_is_composited_onto_white_by_either_decoder(tmp_path, lossless):
    rgba = noise(40, 56, 4)
    rgba[::3, :, 3] = 255  # opaque rows among random alpha
    path = tmp_path / "a.webp"
    Image.fromarray(rgba, "RGBA").save(path, lossless=lossless, quality=90)
    decoded = _pillow_pixels(path)
    assert decoded.shape == (40, 56, 4)
    expected = composite_white(decoded[..., :3], decoded[..., 3])
    for decoder in ("auto", "pillow"):
        with open_image(path, decoder=decoder) as src:
            np.testing.assert_array_equal(read_all(src), expected)
            np.testing.assert_array_equal(src.read(5, 9, 30, 20), expected[9:29, 5:35])
            if src.decoder == "imagecodecs":
                assert src.stats.stored_mode == "RGBA" and src.stats.decoded_bytes == 40 * 56 * 4


def test_webp_decoded_by_pillow_keeps_only_its_pixels(tmp_path, pillow_opened):
    path = tmp_path / "p.webp"
    Image.fromarray(_smooth(50, 80)).save(path, lossless=True)
    pillow_opened.clear()
    with open_image(path, decoder="pillow") as src:
        assert src.stats.decoder == "pillow" and src.stats.stored_mode == "RGB"
        # the file's image object, its libwebp decoder and frame buffers with it, is not kept
        assert pillow_opened and not _still_alive(pillow_opened)
        np.testing.assert_array_equal(read_all(src), _smooth(50, 80))


def _animated(path, frames, **kw):
    ims = [Image.fromarray(f) for f in frames]
    ims[0].save(path, save_all=True, append_images=ims[1:], duration=80, **kw)


@pytest.mark.parametrize("channels", [3, 4])
def test_animated_webp_reads_its_first_frame(tmp_path, pillow_opened, channels):
    frames = [noise(30, 44, channels) for _ in range(3)]
    for f in frames:
        if channels == 4:
            f[..., 3] = np.where(f[..., 3] > 60, 255, f[..., 3])
    path = tmp_path / "anim.webp"
    _animated(path, frames, lossless=True)
    with Image.open(path) as im:
        assert im.n_frames == 3
    first = _pillow_pixels(path)
    expected = first if channels == 3 else composite_white(first[..., :3], first[..., 3])
    seen = frames[0][..., 3] == 255 if channels == 4 else np.ones((30, 44), bool)
    np.testing.assert_array_equal(first[seen][:, :3], frames[0][seen][:, :3])  # lossless: the first frame
    for decoder in ("auto", "pillow"):
        pillow_opened.clear()
        with open_image(path, decoder=decoder) as src:
            assert src.decoder == "pillow"  # Pillow composes the first frame onto the canvas
            assert pillow_opened and not _still_alive(pillow_opened)
            np.testing.assert_array_equal(read_all(src), expected)


def test_decoder_imagecodecs_refuses_an_animated_webp(tmp_path):
    pytest.importorskip("imagecodecs", reason="decoder='imagecodecs' needs the imagecodecs package")
    path = tmp_path / "anim.webp"
    _animated(path, [noise(20, 24) for _ in range(2)])
    with pytest.raises(ImageReadError) as err:
        open_image(path, decoder="imagecodecs")
    msg = str(err.value)
    assert "anim.webp" in msg and "animated" in msg and "decoder='imagecodecs'" in msg and "\n" not in msg
    still = io.BytesIO()
    Image.fromarray(noise(20, 24)).save(still, "WEBP", lossless=True)
    (tmp_path / "still.webp").write_bytes(still.getvalue())
    with open_image(tmp_path / "still.webp", decoder="imagecodecs") as src:
        assert src.stats.decoder == "imagecodecs"


@pytest.mark.parametrize("keep", [0.1, 0.5])
def test_a_truncated_webp_is_said_to_be_truncated(tmp_path, keep):
    # libwebp says only "could not create decoder object"; the RIFF header tells how long the
    # file should be
    whole = tmp_path / "whole.webp"
    Image.fromarray(noise(120, 160)).save(whole, quality=80)
    data = whole.read_bytes()
    cut = tmp_path / "cut.webp"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ImageReadError, match=rf"cut.webp: the WebP file is truncated: its header announces "
                                             rf"{len(data)} bytes, the file has {int(len(data) * keep)}"):
        with open_image(cut) as src:
            src.read(0, 0, 160, 120)
    with open_image(whole) as src:
        assert src.read(0, 0, 160, 120).shape == (120, 160, 3)
