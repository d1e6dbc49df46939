"""The Python API, from an outside review (2026-12-06): each test fails on the code before it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile as dt
from densedet_tile.errors import ImageReadError, InvalidInputError
from densedet_tile.tiler.readers import open_image
from fakes import BlobDetector, blob_image


def _photo(tmp_path: Path) -> Path:
    p = tmp_path / "blob.png"
    Image.fromarray(blob_image(200, 300, (40, 50, 120, 140))).save(p)
    return p


def test_a_precision_a_built_detector_does_not_run_at_is_warned_about(tmp_path: Path) -> None:
    # detect_image(path, det, precision="fp16") recorded fp16 of a model built otherwise, silently
    det = BlobDetector()
    det.info = {"precision": "int8"}
    with pytest.warns(RuntimeWarning, match=r"precision='fp16' applies where the engine builds the model; "
                                            r"this detector runs at int8"):
        res = dt.detect_image(_photo(tmp_path), det, precision="fp16", tile=256)
    assert len(res.detections) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the default precision, or the detector's own: nothing said
        dt.detect_image(_photo(tmp_path), det, tile=256)
        det.info = {"precision": "fp16"}
        dt.detect_image(_photo(tmp_path), det, precision="fp16", tile=256)
    # built by load_detector for that precision (as the CLI builds it): what became of fp16 on the
    # CPU was said when it was built, not again for every image (CI caught a second line)
    with pytest.warns(RuntimeWarning, match="fp16 applies on CUDA only"):
        built = dt.load_detector("default", device="cpu", precision="fp16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ran = dt.detect_image(_photo(tmp_path), built, precision="fp16")
    # ... and the settings say the precision it ran at (they said fp16 of the int8 file)
    assert ran.settings["precision"] == built.info["precision"] == "int8"
    res = dt.detect_image(_photo(tmp_path), det, precision="fp16", tile=256)
    assert res.settings["precision"] == "fp16"  # (the detector's own info says so)


def test_inputs_that_were_bare_python_errors_or_misleading(tmp_path: Path) -> None:
    p = _photo(tmp_path)
    im = Image.open(p)
    im.load()
    im.close()
    with pytest.raises(ImageReadError, match=r"^<PIL image>: Operation on closed image"):  # was a bare ValueError
        open_image(im)
    with pytest.raises(InvalidInputError, match=r"bytes are read as the image file's contents; give a path as str"):
        open_image(bytes(p))  # was "unknown or unsupported image format"
    with pytest.raises(ImageReadError, match=r"^the image path is empty$"):  # was ".: is a directory"
        open_image("")
    for bad in (None, -1, True, 1.5):  # None was a bare TypeError, the rest accepted
        with pytest.raises(InvalidInputError, match="tiff_cache_bytes must be an integer >= 0"):
            open_image(p, tiff_cache_bytes=bad)
    with open_image(p.read_bytes()) as src:  # the bytes of the file still read as the file
        assert src.size == (300, 200)


def test_the_mmdet_photo_rule_stays_within_what_the_engine_takes() -> None:
    # an image 17 px high made the rule 105.9 and the image failed ("must be a number in [0.01, 100]")
    from densedet_tile.detector.base import photo_scale_of
    from densedet_tile.detector.mmdet_adapter import MMDetDetector

    class Model:
        cfg = {"photo_scale": (3000, 1800)}

    det = MMDetDetector.__new__(MMDetDetector)  # the rule only: no mmdet model built
    det.model = Model()
    assert photo_scale_of(det, 20, 15) == 100.0
    assert photo_scale_of(det, 17, 17) == 100.0
    assert photo_scale_of(det, 4000, 3000) == pytest.approx(0.6)  # a phone photo as before


@pytest.mark.parametrize("missing", ["torchvision", "torch"])
def test_mmdet_without_torch_or_torchvision_says_what_to_install_when_built(monkeypatch, missing) -> None:
    # without torchvision every image failed ("No module named 'torchvision'") once a tile ran;
    # without torch the build gave a bare ModuleNotFoundError
    import sys

    from densedet_tile.detector import mmdet_adapter
    from densedet_tile.errors import MissingDependencyError

    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(MissingDependencyError, match=rf"needs the '{missing}' package.*densedet-tile\[mmdet\]"):
        mmdet_adapter._import_stack()


def test_checkpoint_messages_are_cut_at_a_word() -> None:
    from densedet_tile.detector.checkpoints import _first_line

    whole = ("PytorchStreamReader failed reading zip archive: failed finding central directory. If you are seeing "
             "this error, there is a high likelihood that your checkpoint file is corrupted or truncated on the disk "
             "in some way.")
    text = _first_line(RuntimeError(whole))
    assert len(text) <= 200 and text.endswith("...")
    kept = text[:-3]
    assert whole.startswith(kept) and whole[len(kept)] == " "  # cut where a word ends, not inside one
    assert _first_line(RuntimeError("short\nsecond line")) == "short"


def test_a_detector_given_by_name_points_to_load_detector() -> None:
    import numpy as np
    import pytest

    import densedet_tile as dt

    with pytest.raises(dt.InvalidInputError, match=r"got str; a name is built into one by load_detector\('default'\)"):
        dt.detect(np.zeros((64, 64, 3), np.uint8), "default")
