"""What a Ray worker does while it builds its detector, said as a run in one process says it.

A detector that builds but declares a bad attribute stopped an in-process run with one line
(exit 2, no folder) but failed every image on Ray workers (exit 1): the workers checked the
declared attributes per image, not when they built the detector. And the warnings given while
a worker built its detector (the torchvision adapter's "no checkpoint given, running with
random weights") stayed in Ray's log files: they were outside the capture of each image's."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

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
import logging
import warnings

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


class Quiet(Declares):
    score_thr = 0.5


def make_warns():
    # as an adapter of the package says it (the torchvision adapter's logger)
    logging.getLogger("densedet_tile.detector.fake_adapter").warning(
        "fake detector %s: no checkpoint given, running with random weights", "tiny.py")
    return Quiet()


def make_warns_python():
    warnings.warn("the fake's weights are from an older release", UserWarning)
    return Quiet()


def make_warns_then_fails():
    make_warns()
    raise RuntimeError("no such weights file")
'''

RANDOM = "fake detector tiny.py: no checkpoint given, running with random weights"


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


# -- 2. what building the detector says reaches the user, once -----------------------------------------
def test_a_worker_keeps_what_building_said_for_the_driver_and_logs_none_of_it(tmp_path, caplog):
    factory = _factory(tmp_path)
    with caplog.at_level(logging.WARNING):
        info = DetectorWorker(DetectorSpec(kind=f"{factory}:make_warns"), "w1").info()
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # (the tests' own filter makes a warning an error)
            py = DetectorWorker(DetectorSpec(kind=f"{factory}:make_warns_python"), "w2").info()
        failed = DetectorWorker(DetectorSpec(kind=f"{factory}:make_warns_then_fails"), "w3").info()
    assert info["error"] is None
    assert info["warnings"] == [["fake detector %s: no checkpoint given, running with random weights", RANDOM]]
    text = "UserWarning: the fake's weights are from an older release"
    assert py["warnings"] == [[text, text]]
    # a build that fails after a warning: both reach the driver
    assert "no such weights file" in failed["error"] and [w[1] for w in failed["warnings"]] == [RANDOM]
    assert not [r for r in caplog.records if "random weights" in r.getMessage()]  # held back, not logged here


def test_the_driver_says_each_build_warning_once_for_all_workers(caplog):
    from densedet_tile.distributed.ray_pool import RayPool

    log_w = ["fake detector %s: no checkpoint given, running with random weights", RANDOM]
    py_w = ["UserWarning: weights are old", "UserWarning: weights are old"]
    pool = SimpleNamespace(_said=set())  # what _say_build_warnings keeps of a pool
    with caplog.at_level(logging.WARNING, logger="densedet_tile"), pytest.warns(UserWarning) as rec:
        for worker in ("w1", "w2", "w3"):  # every worker builds the same detector (w3: a replacement)
            RayPool._say_build_warnings(pool, {"worker": worker, "error": None, "warnings": [log_w, py_w]})
    assert [r.getMessage() for r in caplog.records if r.name.startswith("densedet_tile")] == [RANDOM]
    assert [str(w.message) for w in rec] == ["weights are old"]


def _warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "random weights" in line]


def test_a_build_warning_reaches_the_command_once_on_ray_as_it_does_in_process(tmp_path):
    from fakes import run_cli

    kind = f"{_factory(tmp_path)}:make_warns"
    _images(tmp_path / "in", 2)
    said = {}
    for backend, more in (("none", []), ("local", ["--workers", "2"])):
        r = run_cli("batch", tmp_path / "in", "--out", tmp_path / backend, "--ray", backend, *more, "-q",
                    "--detector", kind, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        said[backend] = _warning_lines(r.stderr)
    assert said["none"] == [f"densedet-tile: WARNING: {RANDOM}"]
    assert said["local"] == said["none"]  # two workers built it: said once, as one process says it
