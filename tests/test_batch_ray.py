"""densedet-tile batch on a real local Ray instance (2 CPUs, started once for this module)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile as dt
from densedet_tile import DetectorError, InvalidInputError, TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.cli.batch import batch_main
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.pipeline import describe_detector
from densedet_tile.runner import Job
from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle
from densedet_tile.tiler import make_grid
from fakes import BlobDetector, blob_image

ray = pytest.importorskip("ray")

TESTS = Path(__file__).parent


class SlowBlob(BlobDetector):
    """BlobDetector that takes a little while per tile, so an actor can be killed mid-image."""

    def predict(self, tiles):
        time.sleep(0.3)  # long enough that the asynchronous kill lands while img1 is still running
        return super().predict(tiles)


class CrashOnGrey(BlobDetector):
    """Kills its worker process outright on a uniformly grey-77 tile (a poison image) and
    hangs on a grey-99 one."""

    def predict(self, tiles):
        if any(int(t.min()) == 77 == int(t.max()) for t in tiles):
            os._exit(3)
        if any(int(t.min()) == 99 == int(t.max()) for t in tiles):
            time.sleep(120)
        return super().predict(tiles)


def _images(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(blob_image(300 + 40 * i, 500, (10 + 20 * i, 30, 200 + 20 * i, 90 + 10 * i))).save(p)
        out.append(p)
    return out


def _docs(out: Path) -> dict[str, dict]:
    docs = {}
    for f in sorted(out.glob("*.detections.json")):
        d = json.loads(f.read_text())
        d.pop("timings")
        # how the detector was named (an object here, a factory's spec for the workers)
        d["settings"]["requested"]["job"].pop("detector")
        docs[f.name] = d
    return docs


def test_ray_pool_writes_what_in_process_writes_and_restarts(local_ray, tmp_path):
    imgs = _images(tmp_path / "in", 4)
    bad = tmp_path / "in" / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    inputs = [imgs[0], imgs[1], bad, imgs[2], imgs[3]]
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv"))
    ref = run_batch(inputs, tmp_path / "local", detector=BlobDetector(), job=job, ray=None)
    assert (ref.ok, ref.failed) == (4, 1)
    # the command line on Ray: each worker builds the detector from its spec (a factory in a file)
    argv = [*map(str, inputs), "--out", str(tmp_path / "ray"), "--ray", "local", "--workers", "2", "--tile", "256",
            "--format", "csv", "--detector", f"{TESTS / 'fakes.py'}:make_blob", "-q"]
    assert batch_main(argv) == 1  # one image failed
    assert _docs(tmp_path / "ray") == _docs(tmp_path / "local")
    for p in imgs:
        name = f"{p.stem}.detections.csv"
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "local" / name).read_bytes()
    snap = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert snap["counts"] == {"ok": 4, "error": 1} and snap["runs"][0]["workers"] == 2
    by = {Path(r["input"]).name: r for r in snap["images"]}
    assert by["bad.png"]["status"] == "error" and "bad.png" in by["bad.png"]["error"]
    # which actor took which image is the pool's business: a second actor that starts late on a
    # loaded machine may find the first has taken them all (so no "both took work" here)
    assert 1 <= len({r["worker"] for r in snap["images"]}) <= 2
    assert all(r["worker"].startswith(("w1@", "w2@")) for r in snap["images"])

    # restart: complete outputs are skipped, a corrupt one is redone on Ray
    (tmp_path / "ray" / "img2.detections.json").write_text('{"schema": "densedet-tile/detections@1", "box')
    # (the same detector as the command line's: a result of another detector would be redone)
    spec = DetectorSpec(kind=f"{TESTS / 'fakes.py'}:make_blob")
    again = run_batch(inputs, tmp_path / "ray", detector=spec, job=job, ray="local", workers=2)
    status = {Path(r["input"]).name: r["status"] for r in again.records}
    assert status == {"img0.png": "skipped", "img1.png": "skipped", "img3.png": "skipped",
                      "img2.png": "ok", "bad.png": "error"}
    assert _docs(tmp_path / "ray") == _docs(tmp_path / "local")
    snap = json.loads((tmp_path / "ray" / "manifest.json").read_text())
    assert [r["backend"] for r in snap["runs"]] == ["ray:local", "ray:local"]


def test_killed_actor_has_its_image_retried_on_another(local_ray, tmp_path):
    from fakes import HeldBlob, kill_while_held

    imgs = _images(tmp_path / "in", 4)
    killed: list[str] = []
    hold = tmp_path / "hold"
    # held from the start: the item is handed out before on_submit runs, and a worker that began
    # it before the hold was made finished it before the kill on a busy machine (an outside review)
    hold.touch()

    def kill_once(actor, item):
        if not killed:
            killed.append(item[0].name)
            kill_while_held(actor, hold)  # the first item cannot finish before the kill lands

    s = run_batch(imgs, tmp_path / "out", detector=HeldBlob(hold), job=Job(tiling=TileSpec(tile=256)), ray="local",
                  workers=2, on_submit=kill_once)
    assert killed
    assert s.ok == 4 and s.failed == 0
    rec = {Path(r["input"]).name: r for r in s.records}
    assert rec[killed[0]]["attempts"] == 2
    assert all(r["attempts"] == 1 for n, r in rec.items() if n != killed[0])
    assert len(_docs(tmp_path / "out")) == 4
    ref = run_batch(imgs, tmp_path / "ref", detector=SlowBlob(), job=Job(tiling=TileSpec(tile=256)), ray=None)
    assert ref.ok == 4 and _docs(tmp_path / "out") == _docs(tmp_path / "ref")


def test_images_that_kill_or_hang_workers_are_reported_and_the_run_completes(local_ray, tmp_path):
    imgs = _images(tmp_path / "in", 2)
    poison, hang = tmp_path / "in" / "poison.png", tmp_path / "in" / "hang.png"
    Image.fromarray(np.full((100, 100, 3), 77, np.uint8)).save(poison)
    Image.fromarray(np.full((100, 100, 3), 99, np.uint8)).save(hang)
    s = run_batch([imgs[0], poison, hang, imgs[1]], tmp_path / "out", detector=CrashOnGrey(),
                  job=Job(tiling=TileSpec(tile=256)), ray="local", workers=2, retries=1, timeout=5.0)
    rec = {Path(r["input"]).name: r for r in s.records}
    assert rec["poison.png"]["status"] == "error"
    assert rec["poison.png"]["attempts"] == 2 and "worker was lost 2 time(s)" in rec["poison.png"]["error"]
    assert rec["hang.png"]["status"] == "error" and "time limit" in rec["hang.png"]["error"]
    assert rec["img0.png"]["status"] == rec["img1.png"]["status"] == "ok"
    assert not (tmp_path / "out" / "hang.detections.json").exists()


def _painted(tmp_path: Path) -> Path:
    img, _ = make_painted_aisle(1400, 400, n_products=70, seed=11, small_size=(20, 60), large_size=(120, 200))
    p = tmp_path / "aisle.png"
    Image.fromarray(img).save(p)
    return p


class PaintedOrFail(PaintedDetector):
    """PaintedDetector that raises on a uniformly grey-77 tile (a detector error, not a crash)."""

    def predict(self, tiles):
        if any(int(t.min()) == 77 == int(t.max()) for t in tiles):
            raise ValueError("grey tile")
        return super().predict(tiles)


def test_split_image_equals_single_process_even_when_an_actor_dies(local_ray, tmp_path):
    p = _painted(tmp_path)
    again = tmp_path / "aisle-again.png"
    again.write_bytes(p.read_bytes())
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((500, 900, 3), 77, np.uint8)).save(grey)
    job = Job(tiling=TileSpec(tile=256, overlap=0.25))
    ref_result = dt.detect_image(p, PaintedDetector(jitter=1.0, seed=5), tile=256, overlap=0.25)
    ref = ref_result.detections
    assert len(ref) > 40
    killed: list[int] = []

    def kill_once(actor, chunk):
        if chunk.start > 0 and not killed:
            killed.append(chunk.start)
            ray.kill(actor)

    # the kill hits the first image; the grey one fails (its other chunks are left running);
    # the last one must still get every worker and come out right
    s = run_batch([p, grey, again], tmp_path / "out", detector=PaintedOrFail(jitter=1.0, seed=5), job=job,
                  ray="local", workers=2, split=True, on_submit=kill_once)
    assert killed
    status = {Path(r["input"]).name: r["status"] for r in s.records}
    assert status == {"aisle.png": "ok", "grey.png": "error", "aisle-again.png": "ok"}, s.records
    assert "grey tile" in s.records[1]["error"] and "grey.png" in s.records[1]["error"]
    for stem in ("aisle", "aisle-again"):
        doc = json.loads((tmp_path / "out" / f"{stem}.detections.json").read_text())
        got = np.array(doc["boxes"], np.float32).reshape(-1, 4)
        assert got.shape == ref.xyxy.shape
        np.testing.assert_allclose(got, ref.xyxy, atol=0.006)  # the JSON keeps 2 decimals
        np.testing.assert_allclose(doc["scores"], ref.scores, atol=1e-4)
        assert doc["num_tiles"] == len(make_grid(1400, 400, dt.TileSpec(256, 0.25)))
        settings = dict(doc["settings"])
        assert all(w.startswith("w") and "@" in w for w in settings.pop("split_workers"))
        asked = settings.pop("requested")  # what a restart compares, and the photo's absolute path
        assert set(asked) == {"job", "input", "file"} and Path(asked["file"]).is_absolute()
        assert Path(asked["file"]).name == doc["image"]["name"]
        assert settings == ref_result.settings
        assert doc["model"] == describe_detector(PaintedOrFail()) == {"name": "PaintedOrFail"}


def test_detector_that_cannot_be_built_on_workers_is_one_clear_error(local_ray, tmp_path):
    imgs = _images(tmp_path / "in", 1)
    spec = DetectorSpec(kind=f"{TESTS / 'fakes.py'}:no_such_factory")
    with pytest.raises(DetectorError, match="no_such_factory"):
        run_batch(imgs, tmp_path / "out", detector=spec, ray="local", workers=1)


def test_pool_with_no_workers_left_fails_the_remaining_items(local_ray):
    from densedet_tile.distributed.ray_pool import RayPool

    with RayPool(BlobDetector(), workers=1, max_respawns=0) as pool:
        def submit(actor, n):
            # Kill first and wait until the death is visible: ray.kill is asynchronous, and a
            # quick call sent right after it can still be served.
            ray.kill(actor)
            for _ in range(200):
                try:
                    ray.get(actor.info.remote(), timeout=10)
                except ray.exceptions.RayActorError:
                    break
                time.sleep(0.05)
            return actor.info.remote()

        results = list(pool.map([1, 2, 3], submit, retries=2))
    assert [r.item for r in results] == [1, 2, 3]
    assert not any(r.ok for r in results)
    assert "no live Ray workers" in results[-1].error


def test_an_address_where_nothing_answers_fails_at_once_in_one_line(monkeypatch):
    import socket

    from densedet_tile.distributed import ray_pool
    from densedet_tile.errors import DensedetError

    with socket.socket() as s:  # a port nobody listens on: bound, then released
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(ray_pool.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_pool.ray, "init", lambda **kw: pytest.fail("ray.init must not be tried"))
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(DensedetError, match=f"127.0.0.1:{port}.*nothing answers"):
            ray_pool.connect(address)


def test_many_hanging_images_do_not_use_up_the_workers_of_the_good_ones(local_ray, tmp_path):
    good = _images(tmp_path / "in", 1)[0]
    hangs = []
    for k in range(3):  # more deaths than the pool's base replacements (2 per worker)
        hangs.append(tmp_path / "in" / f"hang{k}.png")
        Image.fromarray(np.full((100, 100, 3), 99, np.uint8)).save(hangs[-1])
    s = run_batch([*hangs, good], tmp_path / "out", detector=CrashOnGrey(), job=Job(tiling=TileSpec(tile=256)),
                  ray="local", workers=1, retries=0, timeout=6.0)  # the good image must fit well inside it
    rec = {Path(r["input"]).name: r for r in s.records}
    assert all(rec[h.name]["status"] == "error" and "time limit" in rec[h.name]["error"] for h in hangs)
    assert rec[good.name]["status"] == "ok", rec[good.name]


def test_an_item_left_running_by_an_abandoned_map_is_stopped_by_a_later_time_limit(local_ray, tmp_path):
    from densedet_tile.distributed.ray_pool import RayPool

    hangs = []
    for k in range(2):
        hangs.append(tmp_path / f"hang{k}.png")
        Image.fromarray(np.full((100, 100, 3), 99, np.uint8)).save(hangs[-1])
    good = _images(tmp_path / "in", 1)[0]
    job, out = Job(tiling=TileSpec(tile=256)), str(tmp_path / "out")

    def submit(actor, path):
        return actor.process.remote(str(path), job, out, Path(path).stem)

    with RayPool(CrashOnGrey(), workers=2) as pool:
        # --split leaves a map like this when one chunk of an image fails: the other one hangs on
        for res in pool.map([hangs[0], tmp_path / "missing.png"], submit):
            assert res.item.name == "missing.png" and res.value["status"] == "error"
            break
        assert len(pool._draining) == 1
        # a later map under a time limit stops the leftover too, not only its own items (before,
        # the leftover's worker stayed hung for good, and with every worker hung the run hung)
        (res,) = pool.map([hangs[1]], submit, retries=0, timeout=2.0)
        assert not res.ok and "time limit" in res.error
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (res,) = pool.map([good], submit, timeout=10.0)
            assert res.ok and res.value["status"] == "ok"
            if not pool._draining:
                break
        assert not pool._draining and pool.respawned == 2


def test_a_long_temporary_folder_does_not_stop_a_local_ray_run(tmp_path):
    # Ray's socket paths live under TMPDIR and must fit in 107 bytes: under a long one (a job
    # scheduler's scratch folder) `--ray local` failed with "AF_UNIX path length cannot exceed
    # 107 bytes"; the private instance now goes to /tmp/ray there
    from fakes import run_cli

    long_tmp = tmp_path / ("scratch_" + "x" * 60)
    long_tmp.mkdir()
    _images(tmp_path / "in", 2)
    r = run_cli("batch", tmp_path / "in", "--out", tmp_path / "out", "--ray", "local", "--workers", "1", "-q",
                "--detector", "fakes:make_blob", cwd=tmp_path, env={"TMPDIR": str(long_tmp)})
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").glob("*.detections.json")) == [
        "img0.detections.json", "img1.detections.json"]


def test_ray_refuses_a_class_the_workers_detector_lacks_before_any_image(local_ray, tmp_path):
    from densedet_tile import InvalidInputError, RunSpec
    from fakes import ColourDetector, colour_image

    (tmp_path / "in").mkdir()
    Image.fromarray(colour_image(200, 300, (10, 10, 80, 90), (120, 20, 200, 120))).save(tmp_path / "in" / "a.png")
    job = Job(tiling=TileSpec(tile=256), run=RunSpec(classes=["green", "cup"]))
    with pytest.raises(InvalidInputError, match="no class 'cup'.*red, green"):
        run_batch([tmp_path / "in"], tmp_path / "o", detector=ColourDetector(), job=job, ray="local", workers=1)
    assert not (tmp_path / "o").exists()  # no run started, no folder left
    job = Job(tiling=TileSpec(tile=256), run=RunSpec(classes=["green"]))
    s = run_batch([tmp_path / "in"], tmp_path / "o", detector=ColourDetector(), job=job, ray="local", workers=1)
    assert s.ok == 1
    doc = json.loads((tmp_path / "o" / "a.detections.json").read_text())
    assert doc["labels"] == [1] and doc["settings"]["classes"] == [1]


def test_a_workers_warnings_reach_the_command_and_the_manifest(local_ray, tmp_path, caplog):
    # a warning given on a Ray worker went to Ray's log files only: now it comes back in the
    # image's record, said here as the in-process run says it
    imgs = _images(tmp_path / "in", 2)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        s = run_batch(imgs, tmp_path / "out", detector=DetectorSpec(kind=f"{TESTS / 'fakes.py'}:make_warning_blob"),
                      job=Job(tiling=TileSpec(tile=1024)), ray="local", workers=2)
    assert s.ok == 2
    said = sorted(m for m in caplog.messages if "looked odd" in m)
    assert said == ["img0.png: a blob 190 px wide looked odd", "img1.png: a blob 190 px wide looked odd"]
    assert all(len(r["warnings"]) == 1 for r in s.records)


def test_ctrl_c_while_ray_shuts_down_after_the_run_leaves_it_finished(local_ray, tmp_path, monkeypatch, caplog):
    # the end line was written, then Ctrl-C landed in Ray's shutdown: the run said "interrupted,
    # re-run" and exited 130 (or 1) though every image was done
    import densedet_tile.distributed.ray_pool as rp

    imgs = _images(tmp_path / "in", 2)
    monkeypatch.setattr(rp, "connect", lambda *a, **k: True)  # as if this run had started Ray

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "shutdown", interrupted)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        s = run_batch(imgs, tmp_path / "out", detector=DetectorSpec(kind=f"{TESTS / 'fakes.py'}:make_blob"),
                      job=Job(tiling=TileSpec(tile=1024)), ray="local", workers=1)
    assert s.ok == 2
    assert "interrupted while Ray shut down; the run itself had finished" in caplog.text
    end = json.loads((tmp_path / "out" / "manifest.jsonl").read_text().splitlines()[-1])
    assert end["event"] == "end" and end["finished"] and "stopped" not in end
    assert not list((tmp_path / "out").glob("*tmp*"))


_FILE_DETECTOR = '''
import numpy as np
from densedet_tile import Detections


class Corner:
    """One box in each tile's top-left corner; defined in a file given as path:factory."""

    def predict(self, tiles):
        return [Detections(np.array([[0, 0, 20, 20]], np.float32), np.array([0.9], np.float32),
                           np.zeros(1, np.int64)) for _ in tiles]


def make():
    return Corner()
'''


def test_a_detector_object_from_a_file_factory_runs_on_ray_workers(local_ray, tmp_path):
    # its class lives in a module only this process had: the workers died unpickling it
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "corner_det.py").write_text(_FILE_DETECTOR)
    det = dt.load_detector(f"{tmp_path / 'elsewhere' / 'corner_det.py'}:make")
    imgs = _images(tmp_path / "in", 2)
    s = run_batch(imgs, tmp_path / "out", detector=det, job=Job(tiling=TileSpec(tile=256)), ray="local", workers=1)
    assert (s.ok, s.failed) == (2, 0), s.records
    assert json.loads((tmp_path / "out" / f"{imgs[0].stem}.detections.json").read_text())["num_detections"] >= 1


class _HoldsALock(BlobDetector):
    def __init__(self):
        super().__init__()
        self.lock = threading.Lock()  # as an open inference session: cannot be pickled


def test_a_detector_object_that_cannot_be_pickled_is_one_line_naming_what_to_pass(local_ray, tmp_path):
    imgs = _images(tmp_path / "in", 1)
    with pytest.raises(InvalidInputError, match=r"cannot be sent to Ray's workers: .*give a DetectorSpec") as info:
        run_batch(imgs, tmp_path / "out", detector=_HoldsALock(), ray="local", workers=1)
    assert "\n" not in str(info.value)
