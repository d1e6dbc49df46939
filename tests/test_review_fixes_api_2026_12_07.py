"""Faults found by an outside review of the library API (2026-12-07, stop 70): each test fails
on the code before it."""
from __future__ import annotations

import sys
import textwrap
import warnings

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile import Detections, InvalidInputError
from densedet_tile.detector.registry import DetectorSpec, load_detector
from densedet_tile.types import Tile


class _Empty:
    def predict(self, tiles):
        return [Detections.empty() for _ in tiles]


@pytest.fixture()
def factory(tmp_path, monkeypatch):
    """A user's factory module that takes score_thr and input_size as they come."""
    (tmp_path / "my_factory_s70.py").write_text(textwrap.dedent("""
        class D:
            def __init__(self, score_thr=None, input_size=None):
                self.got = (score_thr, input_size)
            def predict(self, tiles):
                return [None for _ in tiles]
        def make(score_thr=None, input_size=None):
            return D(score_thr, input_size)
        def bare():
            return D()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_factory_s70"
    sys.modules.pop("my_factory_s70", None)


@pytest.mark.parametrize("kw, msg", [
    (dict(score_thr=float("nan")), "score_thr must be in"),
    (dict(score_thr=5), "score_thr must be in"),
    (dict(score_thr="0.5"), "score_thr must be in"),
    (dict(input_size="abc"), "input_size must be"),
    (dict(input_size=5), "input_size must be"),
])
def test_a_factory_s_score_thr_and_input_size_are_checked_at_load(factory, kw, msg):
    # a user's MODULE:FACTORY got NaN or a string as it was (or, not taking it, had it set on
    # what it built), and the run failed at its first image with an error blaming the detector
    for target in (f"{factory}:make", f"{factory}:bare"):
        with pytest.raises(InvalidInputError, match=msg):
            load_detector(target, device="cpu", **kw)
    det = load_detector(f"{factory}:make", device="cpu", score_thr=0.25, input_size=512)
    assert det.got == (0.25, 512)


@pytest.mark.parametrize("kw, msg", [
    (dict(input_size="x"), "input_size must be"),
    (dict(score_thr=5), "score_thr must be in"),
    (dict(score_thr=True), "score_thr must be in"),
    (dict(options=[1, 2]), "options must be a dict"),
    (dict(checkpoint=3), "checkpoint must be a name or a path"),
])
def test_a_detector_spec_is_checked_where_it_is_made(kw, msg):
    # (refused only by build(), on every batch worker; a list of options was a bare TypeError)
    with pytest.raises(InvalidInputError, match=msg):
        DetectorSpec(**kw)
    from pathlib import Path

    spec = DetectorSpec(checkpoint=Path("w.pt"), score_thr=np.float32(0.5), input_size=np.int64(512))
    assert spec.checkpoint == "w.pt"
    # kept as plain numbers (a batch's request key recorded "np.float32(0.5)" as text)
    assert type(spec.score_thr) is float and spec.score_thr == 0.5 and type(spec.input_size) is int


def test_a_gpu_torch_does_not_see_is_warned_about_for_a_detector_that_names_no_device():
    # (settings said cuda:3 on a CPU machine without a word; not refused: the detector may run on
    # a GPU of its own runtime's that torch does not know of)
    torch = pytest.importorskip("torch")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    img = np.zeros((200, 200, 3), np.uint8)
    with pytest.warns(RuntimeWarning, match=f"device='cuda:{n}' was asked for a detector that names no device, "
                                            "and torch sees") as got:
        dt.detect_image(img, _Empty(), device=f"cuda:{n}")
    assert got[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dt.detect_image(img, _Empty(), device="cpu").settings["device"] == "cpu"


def test_the_precision_warning_names_the_caller_s_line_from_detect():
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        dt.detect(np.zeros((64, 64, 3), np.uint8), _Empty(), precision="fp16")
    (w,) = [w for w in got if "precision" in str(w.message)]
    assert w.filename == __file__


def test_a_tile_s_edge_flags_and_index_are_checked():
    with pytest.raises(InvalidInputError, match="Tile.interior_left must be True or False, got 'yes'"):
        Tile(0, 0, 100, 100, interior_left="yes")
    with pytest.raises(InvalidInputError, match="Tile.index must be an integer"):
        Tile(0, 0, 100, 100, index=1.5)
    t = Tile(0, 0, 100, 100, interior_right=np.bool_(True), index=np.int64(3))
    assert t.interior_right is True and t.index == 3 and type(t.index) is int


def test_detections_concat_of_one_detections_and_uint32_labels_out_of_range():
    d = Detections([[0, 0, 1, 1], [2, 2, 3, 3]], [0.5, 0.6])
    with pytest.raises(InvalidInputError, match="takes a list of Detections"):
        Detections.concat(d)
    assert len(Detections.concat([d, d])) == 4
    with pytest.raises(InvalidInputError, match="out of range"):
        Detections([[0, 0, 1, 1]], [0.5], np.array([4_000_000_000], np.uint32))
    ok = Detections([[0, 0, 1, 1]], [0.5], np.array([7], np.uint32))
    assert ok.labels.tolist() == [7] and ok.labels.dtype == np.int64
