"""Faults found by an outside review of detectors of one's own (2026-12-07, stop 68): each test
fails on the code before it."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile import DetectorError, InvalidInputError

from fakes import BlobDetector, blob_image

FACTORY = '''
from fakes import BlobDetector

def make(a: int = 5):
    det = BlobDetector()
    det.a = a
    return det

def make_none():
    return None
'''


@pytest.fixture
def factory_file(tmp_path: Path) -> Path:
    path = tmp_path / "mydet.py"
    path.write_text(FACTORY)
    return path


def test_a_detector_option_given_none_reaches_the_factory(factory_file: Path, caplog) -> None:
    # "--detector-option a=none" was dropped as if not given (the factory ran with its default 5),
    # and a misspelt key given none was not warned about
    assert dt.load_detector(f"{factory_file}:make", options={"a": None}).a is None
    assert dt.load_detector(f"{factory_file}:make").a == 5
    with caplog.at_level(logging.WARNING, logger="densedet_tile"):
        dt.load_detector(f"{factory_file}:make", options={"b": None})
    assert any("takes no b; it is ignored" in r.getMessage() for r in caplog.records)


def test_a_detector_option_named_like_a_load_detector_argument_is_refused_in_one_line(factory_file: Path) -> None:
    # it reached the factory's call twice: "got multiple values for keyword argument 'score_thr'"
    with pytest.raises(InvalidInputError, match=r"detector option\(s\) score_thr have their own command-line flags"):
        dt.load_detector(f"{factory_file}:make", score_thr=0.5, options={"score_thr": 0.3})


def test_a_factory_returning_no_detector_is_said_once_without_advice_about_its_attributes(factory_file: Path,
                                                                                           caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="densedet_tile"):
        with pytest.raises(DetectorError, match=r"has no callable predict\(tiles\) method \(got NoneType\)"):
            dt.load_detector(f"{factory_file}:make_none", score_thr=0.3, input_size=512)
    assert caplog.records == []


class _RamBound(BlobDetector):
    """Out of RAM (a bare MemoryError) when given more than ``most`` tiles at once."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self.most = most

    def predict(self, tiles):
        if len(tiles) > self.most:
            raise MemoryError()
        return super().predict(tiles)


def test_out_of_ram_at_several_tiles_halves_the_batch_and_ends_as_a_small_batch_run() -> None:
    img = blob_image(600, 1800, (700, 100, 900, 300))  # 600 high, 1800 wide: 8 or more tiles
    with pytest.warns(RuntimeWarning) as rec:
        res = dt.detect(img, _RamBound(most=1), tile=300, overlap=0.2, batch_size=8, device="cpu")
    said = [str(w.message) for w in rec]
    assert said == ["<array>: out of memory (RAM); retrying with batch size 4",
                    "<array>: out of memory (RAM); retrying with batch size 2",
                    "<array>: out of memory (RAM); retrying with batch size 1"]
    small = dt.detect(img, BlobDetector(), tile=300, overlap=0.2, batch_size=1, device="cpu")
    assert len(small) >= 1
    np.testing.assert_array_equal(res.xyxy, small.xyxy)


def test_out_of_ram_at_one_tile_is_one_line_with_advice_not_an_empty_message() -> None:
    # "detector failed: MemoryError: " and nothing after it
    with pytest.raises(DetectorError) as info:
        dt.detect(blob_image(600, 600, (10, 10, 50, 50)), _RamBound(most=0), tile=600, batch_size=1, device="cpu")
    msg = str(info.value)
    assert msg == "<array>: the detector ran out of memory (RAM; MemoryError) even with one tile per batch; try a " \
                  "smaller tile (--tile)"


class _Silent(BlobDetector):
    def predict(self, tiles):
        raise ValueError()


def test_an_error_without_words_is_named_without_a_dangling_colon() -> None:
    with pytest.raises(DetectorError, match=r"detector failed: ValueError$"):
        dt.detect(blob_image(600, 600, (10, 10, 50, 50)), _Silent(), tile=600, device="cpu")


def test_an_onnx_file_asked_for_cuda_names_the_extra_its_pt_weights_need(monkeypatch, tmp_path: Path) -> None:
    # the light install was told to use the .pt weights, which need torch it does not have
    import sys

    from densedet_tile.detector.builtin import choose_runtime

    onnx = tmp_path / "my.onnx"
    onnx.write_bytes(b"\x08\x07")
    with pytest.raises(InvalidInputError, match=r"use the .pt weights for CUDA$"):
        choose_runtime(device="cuda", weights=str(onnx))  # torch here: nothing more to say
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(InvalidInputError, match=r"use the .pt weights for CUDA \(pip install 'densedet-tile\[torch\]'\)"):
        choose_runtime(device="cuda", weights=str(onnx))
