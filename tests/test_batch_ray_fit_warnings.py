"""What a Ray worker says while it fits the job to its detector reaches the command once per run.

``--max-vram`` on the CPU printed "max_vram (--max-vram) applies to CUDA devices only; ignored
on the CPU" with ``--ray none`` and nothing on Ray: the worker fitted the job
(``runner.build_detector``) outside the capture of the image's warnings, and with
``log_to_driver`` off its lines stayed in Ray's log files. Under ``--split`` the worker also
fitted every image's own job (its scale's tiling and run) again, on every worker."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from densedet_tile import MergeSpec, RunSpec, TileSpec
from densedet_tile.runner import Job
from fakes import BlobDetector, blob_image

pytest.importorskip("ray")

from densedet_tile.distributed.ray_pool import DetectorWorker, RayPool  # noqa: E402

IGNORED = "max_vram (--max-vram) applies to CUDA devices only; ignored on the CPU"
ON_CPU = RunSpec(device="cpu", max_vram=4.0)


def _image(folder: Path, name: str = "img0.png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.fromarray(blob_image(200, 300, (20, 30, 120, 90))).save(path)
    return path


@pytest.mark.parametrize("batch", [None, 2])  # planned (plan_batch's warning), given (warn_if_ignored's)
def test_a_worker_sends_what_fitting_said_with_its_result_and_logs_none_of_it(tmp_path, caplog, batch):
    worker = DetectorWorker(BlobDetector(), "w1")
    job = Job(run=RunSpec(device="cpu", max_vram=4.0, batch_size=batch))
    img = _image(tmp_path / "in")
    with caplog.at_level(logging.WARNING), warnings.catch_warnings():
        warnings.simplefilter("default")  # (as the command runs: the tests' own filter makes a warning an error)
        first = worker.process(str(img), job, str(tmp_path / "out"), "img0")
        second = worker.process(str(img), job, str(tmp_path / "out"), "img0-2")
    assert first["status"] == "ok", first["error"]
    assert [w[1] for w in first.get("fit_warnings", [])] == [f"RuntimeWarning: {IGNORED}"]
    assert second.get("fit_warnings") == []  # fitted once: said once
    assert first["warnings"] == [] and not caplog.records  # not the image's, and not logged on the worker


def test_the_pool_says_each_fit_warning_once_for_the_run(caplog):
    said = [f"RuntimeWarning: {IGNORED}"] * 2
    pool = SimpleNamespace(_said=set(), _held=[])  # what hold_warnings and say_held keep of a pool
    with pytest.warns(RuntimeWarning) as rec:
        for _ in range(3):  # three workers' first images
            RayPool.hold_warnings(pool, [said])
            RayPool.say_held(pool)
        RayPool.hold_warnings(pool, None)  # (a result without any)
        RayPool.say_held(pool)
    assert [str(w.message) for w in rec] == [IGNORED]


def test_a_split_worker_fits_once_per_run_not_once_per_image(tmp_path, monkeypatch):
    import densedet_tile.runner as runner

    calls = []
    real = runner.build_detector

    def counted(detector, job):
        calls.append(job)
        return real(detector, job)

    monkeypatch.setattr(runner, "build_detector", counted)
    worker = DetectorWorker(BlobDetector(), "w1")
    job = Job(tiling=TileSpec(tile=256, overlap=0.2), merge=MergeSpec(), run=ON_CPU)
    paths = [_image(tmp_path, f"img{i}.png") for i in range(3)]
    said = []
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        _split_images(worker, job, paths, said)
    worker.close_image()
    # the run's job once (planned: "ignored on the CPU", the usual batch), its images' jobs once (all alike)
    assert len(calls) == 2, calls
    assert [w[1] for w in said] == [f"RuntimeWarning: {IGNORED}"] * 2  # (the driver says each text once)


def _split_images(worker, job, paths, said):
    from densedet_tile.pipeline import plan
    from densedet_tile.tiler.readers import open_image

    for i, path in enumerate(paths):
        tiling, run, _, *fit = worker.choose_scale(str(path), job)
        said += fit[0] if fit else []
        # every image comes with its own scale: its tiles' job differs from the others'
        own = Job(tiling=TileSpec(tile=200 + 8 * i, overlap=0.1 + 0.05 * i), merge=job.merge, run=run)
        with open_image(str(path)) as src:
            tiles = plan(src, own.tiling)
        out = worker.predict_tiles(str(path), tiles, own)
        said += out.get("fit_warnings", [])
        assert out["run"].batch_size == run.batch_size


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "max_vram" in line]


@pytest.mark.parametrize("more", [["--batch-size", "2"], [], ["--split"]])
def test_the_max_vram_warning_reaches_the_command_once_on_ray_as_in_process(tmp_path, more):
    from fakes import run_cli

    for i in range(3):
        _image(tmp_path / "in", f"img{i}.png")
    said = {}
    for backend, extra in (("none", []), ("local", ["--workers", "2"])):
        r = run_cli("batch", tmp_path / "in", "--out", tmp_path / backend, "--ray", backend, *extra, "-q",
                    "--detector", "fakes:make_blob", "--device", "cpu", "--max-vram", "4", *more, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        said[backend] = _lines(r.stderr)
    assert said["none"] == [f"densedet-tile: WARNING: {IGNORED}"], said
    assert said["local"] == said["none"]
