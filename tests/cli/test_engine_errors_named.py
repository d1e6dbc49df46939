"""A fault inside the engine (not the detector's) is not reported by ``audit`` or ``eval
--compare`` as "detector failed": the line names the exception's type, and ``--debug`` shows
the traceback, as ``detect`` and ``batch`` do. A detector that fails still says so."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile.pipeline as pipeline
from densedet_tile.cli import main

DETECTORS = (
    "import numpy as np\n"
    "from densedet_tile import Detections\n\n"
    "class Fine:\n"
    "    def __init__(self, **kw):\n"
    "        pass\n\n"
    "    def predict(self, tiles):\n"
    "        return [Detections(np.array([[10, 10, 60, 90]], np.float32), np.array([0.9], np.float32),\n"
    "                           np.array([0])) for _ in tiles]\n\n"
    "class Broken(Fine):\n"
    "    def predict(self, tiles):\n"
    "        raise RuntimeError('the weights are for another input')\n"
)


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path, Path]:
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(np.full((120, 160, 3), 128, np.uint8)).save(imgs / "photo.png")
    gt = tmp_path / "gt.csv"
    gt.write_text("photo.png,10,10,60,90,object,160,120\n")
    det = tmp_path / "dets.py"
    det.write_text(DETECTORS)
    return imgs, gt, det


def _engine_fault(*args: object, **kwargs: object) -> None:
    raise AttributeError("an engine fault")


def _commands(imgs: Path, gt: Path, det: Path, kind: str, out: Path) -> dict[str, list[str]]:
    return {
        "audit": ["audit", str(imgs / "photo.png"), "--out", str(out), "--device", "cpu", "--tile", "96",
                  "--detector", f"{det}:{kind}"],
        "eval": ["eval", str(imgs), str(gt), "--compare", "--device", "cpu", "--tile", "96",
                 "--detector", f"{det}:{kind}"],
    }


@pytest.mark.parametrize("verb", ["audit", "eval"])
def test_an_engine_fault_is_named_by_its_type_and_debug_shows_where(scene, tmp_path, capsys, caplog,
                                                                    monkeypatch, verb: str) -> None:
    imgs, gt, det = scene
    monkeypatch.setattr(pipeline, "merge_tiles", _engine_fault)
    argv = _commands(imgs, gt, det, "Fine", tmp_path / "out")[verb]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "AttributeError: an engine fault" in err and "detector failed" not in err
    assert "--debug" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing written
    assert not any(r.exc_info for r in caplog.records)
    assert main(argv + ["--debug"]) == 1  # (the traceback is logged: here to pytest's handler, not stderr)
    assert any(r.exc_info and r.exc_info[0] is AttributeError for r in caplog.records)
    assert "_engine_fault" in caplog.text


@pytest.mark.parametrize("verb", ["audit", "eval"])
def test_a_failing_detector_is_still_named(scene, tmp_path, capsys, verb: str) -> None:
    imgs, gt, det = scene
    assert main(_commands(imgs, gt, det, "Broken", tmp_path / "out")[verb]) == 1
    err = capsys.readouterr().err
    assert "detector failed" in err and "the weights are for another input" in err
    assert "Traceback" not in err
