"""--split joins one image's runs of tiles from several workers: the first run spoke for all, so a
worker that ran out of GPU memory and went on on the CPU was hidden (settings and model.info said
the GPU, and the worker's warning never reached the image's record). No Ray: the real worker
class run in this process behind a pool that hands it the runs of tiles in turn."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("ray")

import densedet_tile as dt  # noqa: E402
from densedet_tile import MergeSpec, RunSpec, TileSpec  # noqa: E402
from densedet_tile.distributed.ray_pool import DetectorWorker, TaskResult  # noqa: E402
from densedet_tile.distributed.split import detect_split  # noqa: E402
from densedet_tile.runner import Job  # noqa: E402

from fakes import BlobDetector, blob_image  # noqa: E402


class _OnGpu(BlobDetector):
    """Says ``cuda`` (and its info, as the built-in model's does); with ``full``, a GPU call runs
    out of memory and ``to("cpu")`` moves it there."""

    def __init__(self, full: bool = False) -> None:
        super().__init__()
        self.device, self.full = "cuda", full
        self.info = {"runtime": "fake", "device": "cuda", "precision": "fp32"}

    def to(self, device):
        self.device = self.info["device"] = str(device)
        return self

    def predict(self, tiles):
        if self.full and self.device != "cpu":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(tiles)


class _Remote:
    """An actor handle's ``method.remote(...)``, run here."""

    def __init__(self, fn):
        self.remote = fn


class _Pool:
    """Hands the i-th item to worker ``i % n``, in order, as finished tasks."""

    def __init__(self, *detectors) -> None:
        self.workers = [DetectorWorker(d, f"w{i}") for i, d in enumerate(detectors)]
        self.slots = [SimpleNamespace(handle=SimpleNamespace(
            choose_scale=_Remote(w.choose_scale), predict_tiles=_Remote(w.predict_tiles),
            close_image=_Remote(w.close_image))) for w in self.workers]
        self.info = [w.info() for w in self.workers]
        self.lost = None

    def map(self, items, submit, **kw):
        for i, item in enumerate(items):
            slot = self.slots[i % len(self.slots)]
            yield TaskResult(item, True, submit(slot.handle, item), attempts=1, worker=f"w{i % len(self.slots)}")


def _image(tmp_path):
    path = tmp_path / "aisle.png"
    Image.fromarray(blob_image(600, 2400, (1900, 100, 2000, 200))).save(path)
    return path


JOB = Job(tiling=TileSpec(tile=600, overlap=0.0), merge=MergeSpec(), run=RunSpec(device="cuda", batch_size=1))


def test_a_worker_that_fell_back_to_the_cpu_is_not_hidden_behind_the_first_run_of_tiles(tmp_path):
    pool = _Pool(_OnGpu(), _OnGpu(full=True))  # w0 (the first run of tiles) fits, w1 runs out
    with dt.open_image(_image(tmp_path)) as src:
        with pytest.warns(RuntimeWarning) as rec:
            res = detect_split(src, pool, JOB)
    said = [str(w.message) for w in rec]
    # the worker's own fallback warning, said here once (its two runs of tiles both gave it)
    assert said.count("aisle.png: out of GPU memory with one tile per batch; continuing on the CPU for this image") == 1
    assert any("ran on more than one device or precision: cuda fp32 (2 tiles), cpu fp32 (2 tiles)" in s
               for s in said), said
    assert res.settings["device"] == "cpu"  # as one process that fell back says it
    assert res.settings["split_devices"] == [{"device": "cuda", "precision": "fp32", "tiles": 2},
                                             {"device": "cpu", "precision": "fp32", "tiles": 2}]
    assert res.model["info"]["device"] == "cpu"
    assert len(res.detections) == 1


def test_workers_that_agree_say_one_device_and_nothing_more(tmp_path):
    import warnings

    pool = _Pool(_OnGpu(), _OnGpu())
    with dt.open_image(_image(tmp_path)) as src:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = detect_split(src, pool, JOB)
    assert res.settings["device"] == "cuda" and "split_devices" not in res.settings
    assert res.model["info"]["device"] == "cuda" and len(res.detections) == 1


class _Int8(_OnGpu):
    """Its description says int8 (the run spec asks fp32), as a quantised model's does."""

    def __init__(self, full: bool = False) -> None:
        super().__init__(full)
        self.info["precision"] = "int8"


def _older_worker(pool: _Pool, i: int) -> None:
    """Make worker ``i`` answer as one from before its runs of tiles said how they ran (no
    ``model``, no ``warnings``)."""
    w = pool.workers[i]

    def predict_tiles(*a):
        out = dict(w.predict_tiles(*a))
        out.pop("model", None)
        out.pop("warnings", None)
        return out

    pool.slots[i].handle.predict_tiles = _Remote(predict_tiles)


def test_an_older_worker_that_sends_no_model_agrees_with_a_newer_one_that_ran_alike(tmp_path):
    # the older worker's runs were keyed by the run spec's precision (fp32), the newer one's by
    # the model's (int8): "cuda int8 (2 tiles), cuda fp32 (2 tiles)" for workers that agree
    import warnings

    pool = _Pool(_Int8(), _Int8())
    _older_worker(pool, 1)
    with dt.open_image(_image(tmp_path)) as src:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            res = detect_split(src, pool, JOB)
    assert "split_devices" not in res.settings and res.settings["device"] == "cuda"
    assert res.model["info"]["precision"] == "int8" and len(res.detections) == 1


def test_an_older_worker_on_the_gpu_and_a_newer_one_fallen_back_to_the_cpu_are_told_apart(tmp_path):
    pool = _Pool(_Int8(), _Int8(full=True))
    _older_worker(pool, 0)
    with dt.open_image(_image(tmp_path)) as src:
        with pytest.warns(RuntimeWarning) as rec:
            res = detect_split(src, pool, JOB)
    said = [str(w.message) for w in rec]
    assert any("ran on more than one device or precision: cuda int8 (2 tiles), cpu int8 (2 tiles)" in s
               for s in said), said  # (was: cuda fp32 for the older worker's runs)
    assert res.settings["split_devices"] == [{"device": "cuda", "precision": "int8", "tiles": 2},
                                             {"device": "cpu", "precision": "int8", "tiles": 2}]


class _FailsSecond(_Pool):
    """The second run of tiles fails (its worker lost, say) after the first gave its warnings."""

    def map(self, items, submit, **kw):
        for i, res in enumerate(super().map(items, submit, **kw)):
            yield res if i != 1 else TaskResult(res.item, False, error="worker lost", worker=res.worker)


def test_the_workers_warnings_are_said_when_a_later_run_of_tiles_fails(tmp_path):
    pool = _FailsSecond(_OnGpu(full=True), _OnGpu())  # w0 falls back to the CPU, then w1's run fails
    with dt.open_image(_image(tmp_path)) as src:
        with pytest.warns(RuntimeWarning, match="aisle.png: out of GPU memory with one tile per batch; continuing "
                                                "on the CPU for this image"):
            with pytest.raises(dt.DetectorError, match=r"tiles 1\.\.1: worker lost"):
                detect_split(src, pool, JOB)
