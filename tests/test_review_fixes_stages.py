"""The engine's stages called one by one, the package's submodules as attributes, and warnings
that name the caller's line (from an outside review of the Python API)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.pipeline import finish, plan, predict_tiles
from densedet_tile.scale import choose_scale
from fakes import BlobDetector, assert_same_boxes, blob_image


class _PhotoRule(BlobDetector):
    """A native-size detector with a photo rule: photos are shown at a quarter of their size."""

    def photo_scale(self, width: int, height: int) -> float:
        return 0.25


@pytest.mark.parametrize("detector, run", [
    (BlobDetector(input_size=128), dt.RunSpec(scale=0.5)),
    (BlobDetector(), dt.RunSpec(scale=0.5)),
    (_PhotoRule(), dt.RunSpec()),
])
def test_the_stages_after_choose_scale_give_what_detect_image_gives(detector, run) -> None:
    img = blob_image(1200, 2000, (700, 300, 1100, 500))
    tiling, merge = dt.TileSpec(tile=512, overlap=0.2), dt.MergeSpec()
    ref = dt.detect_image(img, detector, tiling=tiling, merge=merge, run=run)
    with dt.open_image(img) as src:
        choice = choose_scale(src, detector, tiling, run)
        tiles = plan(src, choice.tiling)
        preds = predict_tiles(src, tiles, detector, choice.run)
        res = finish(src, tiles, preds, tiling=choice.tiling, merge=merge, model=detector,
                     extra_settings={"scale": choice.info})
    assert res.num_tiles == ref.num_tiles and res.settings["scale"] == ref.settings["scale"]
    assert_same_boxes(res.detections, ref.detections)


def test_predict_tiles_refuses_a_run_that_still_carries_a_scale() -> None:
    for det in (BlobDetector(input_size=128), BlobDetector()):  # a scale was once refused as "both" or ignored
        with dt.open_image(blob_image(300, 400, (10, 10, 50, 50))) as src:
            tiles = plan(src, dt.TileSpec(tile=256))
            with pytest.raises(InvalidInputError, match="choose_scale"):
                predict_tiles(src, tiles, det, dt.RunSpec(scale=0.5))


def test_submodules_are_attributes_of_the_package_in_a_fresh_interpreter() -> None:
    code = ("import sys, densedet_tile as dt; f = dt.pipeline.describe_detector; s = dt.scale.choose_scale; "
            "print(callable(f) and callable(s), 'torch' in sys.modules, 'densedet_tile.cli' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "False", "False"]
    with pytest.raises(AttributeError):
        dt.no_such_module  # noqa: B018


def test_a_max_vram_warning_names_the_callers_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dt.detect(blob_image(100, 100, (10, 10, 40, 40)), BlobDetector(), tile=64, max_vram=2.0, device="cpu")
    mine = [w for w in caught if "max_vram" in str(w.message)]
    assert mine and all(w.filename == __file__ for w in mine), [(w.filename, str(w.message)) for w in caught]


def test_an_out_of_memory_warning_names_the_callers_line() -> None:
    class RunsOut(BlobDetector):
        device = "cuda"

        def predict(self, tiles):
            if len(tiles) > 1:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().predict(tiles)

    img = blob_image(300, 300, (10, 10, 60, 60))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dt.detect(img, RunsOut(), tile=128, overlap=0.0, batch_size=4, device="cuda")
    assert len(found) >= 1
    mine = [w for w in caught if "out of GPU memory" in str(w.message)]
    assert mine and all(w.filename == __file__ for w in mine), [(w.filename, str(w.message)) for w in caught]


def test_a_label_past_the_class_names_is_warned_about_once() -> None:
    from densedet_tile.types import Detections

    class Three(BlobDetector):
        class_names = ["product"]

        def predict(self, tiles):
            return [Detections(d.xyxy, d.scores, np.full(len(d), 3)) for d in super().predict(tiles)]

    img = blob_image(300, 300, (10, 10, 250, 250))  # seen by several tiles
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = dt.detect(img, Three(), tile=128)
    said = [w for w in caught if "class label 3" in str(w.message)]
    assert len(found) >= 1 and len(said) == 1 and said[0].filename == __file__
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dt.detect(img, BlobDetector(), tile=128)  # declares no names: nothing to say
    assert not [w for w in caught if "class label" in str(w.message)]


def test_tiles_far_smaller_than_the_model_input_are_warned_about(caplog) -> None:
    img = blob_image(400, 400, (10, 10, 60, 60))
    with caplog.at_level("WARNING", logger="densedet_tile"):
        dt.detect(img, BlobDetector(input_size=640), tile=64)
    assert any("64 px tiles are shown to the model at 640 px" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile"):
        dt.detect(img, BlobDetector(input_size=640), tile=256)  # 2.5x: usual
        dt.detect(blob_image(100, 100, (10, 10, 60, 60)), BlobDetector(input_size=640))  # one small image: fine
    assert not any("tiles are shown to the model" in r.getMessage() for r in caplog.records)
