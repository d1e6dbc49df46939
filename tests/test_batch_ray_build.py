"""What a Ray worker does while it builds its detector, said as a run in one process says it.

A detector that builds but declares a bad attribute stopped an in-process run with one line
(exit 2, no folder) but failed every image on Ray workers (exit 1): the workers checked the
declared attributes per image, not when they built the detector."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from densedet_tile import DetectorError
from densedet_tile.cli.batch import batch_main
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.errors import one_line
from densedet_tile.runner import Job, build_detector
from fakes import BlobDetector, blob_image

pytest.importorskip("ray")

from densedet_tile.distributed.ray_pool import DetectorWorker  # noqa: E402

_FACTORIES = '''
import numpy as np
from densedet_tile import Detections


class Declares:
    """Builds fine; its score_thr is out of range."""

    score_thr = 1.5

    def predict(self, tiles):
        return [Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
                for _ in tiles]


def make():
    return Declares()
'''


class _DeclaresBadly(BlobDetector):
    score_thr = 1.5


def _factory(tmp_path: Path) -> str:
    path = tmp_path / "factories" / "baddecl.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(_FACTORIES)
    return str(path)


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(blob_image(200, 300, (20, 30, 120, 90))).save(p)
        out.append(p)
    return out


# -- 1. a detector that declares a bad attribute cannot be built, on a worker as in one process ---------
def test_a_worker_reports_a_bad_declared_attribute_as_the_build_failure_one_process_says(tmp_path):
    spec = DetectorSpec(kind=f"{_factory(tmp_path)}:make")
    with pytest.raises(DetectorError) as here:
        build_detector(spec, Job())
    info = DetectorWorker(spec, "w1").info()
    assert info["error"] == one_line(here.value)
    assert info["error"] == f"detector '{spec.kind}': score_thr must be a number in [0, 1], got 1.5"
    assert "model" not in info  # (what the driver takes for a worker whose detector did not build)


def test_a_worker_given_a_ready_detector_checks_what_it_declares_too(tmp_path):
    with pytest.raises(DetectorError) as here:
        build_detector(_DeclaresBadly(), Job())
    info = DetectorWorker(_DeclaresBadly(), "w1").info()
    assert info["error"] == one_line(here.value) and "score_thr must be a number in [0, 1], got 1.5" in info["error"]


def test_a_bad_declared_attribute_stops_a_ray_run_as_it_stops_one_in_process(local_ray, tmp_path, capsys):
    kind = f"{_factory(tmp_path)}:make"
    imgs = _images(tmp_path / "in", 2)
    for backend in ("none", "local"):
        out = tmp_path / backend / "new"
        workers = ["--workers", "2"] if backend == "local" else []
        assert batch_main([*map(str, imgs), "--out", str(out), "--ray", backend, *workers, "--detector", kind]) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1, (backend, err)
        assert "error: " in err[0] and f"detector '{kind}': score_thr must be a number in [0, 1], got 1.5" in err[0]
        assert not out.exists(), backend  # no run started, no folder left
