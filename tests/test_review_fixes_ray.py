"""densedet-tile batch on Ray: worker requests the cluster cannot hold, workers that start late,
a cluster that goes away mid-run, SIGTERM, what --ray auto/local attach to, and --split attempts."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile import TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.cli.batch import batch_main
from densedet_tile.errors import DensedetError
from densedet_tile.runner import Job
from fakes import BlobDetector, blob_image

ray = pytest.importorskip("ray")

TESTS = Path(__file__).parent
HERE = Path(__file__).resolve()


class HangOnGrey(BlobDetector):
    """BlobDetector that never finishes a uniformly grey-99 tile (it keeps a run going)."""

    def predict(self, tiles):
        if any(int(t.min()) == 99 == int(t.max()) for t in tiles):
            time.sleep(600)
        return super().predict(tiles)


def make_hang_on_grey():
    """Factory for ``--detector tests/test_review_fixes_ray.py:make_hang_on_grey``."""
    return HangOnGrey()


def _images(folder: Path, n: int, h: int = 300, w: int = 400) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(blob_image(h, w, (10 + 20 * i, 30, 200, 90))).save(p)
        out.append(p)
    return out


def _grey(path: Path) -> Path:
    Image.fromarray(np.full((100, 100, 3), 99, np.uint8)).save(path)
    return path


def _records(out: Path) -> list[dict]:
    try:
        lines = (out / "manifest.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def _wait_for_images(out: Path, n: int, proc: subprocess.Popen, limit: float = 240.0) -> None:
    """Wait until ``n`` image records are in the manifest (``limit`` is only an upper bound)."""
    deadline = time.monotonic() + limit
    while sum(r.get("event") == "image" for r in _records(out)) < n:
        if proc.poll() is not None:
            pytest.fail(f"the run ended early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {n} image records after {limit:.0f} s: {proc.communicate()[1][-2000:]}")
        time.sleep(0.2)


def _pids_with(entry: str) -> list[int]:
    """Processes whose environment holds ``entry`` (NAME=VALUE): those a test started, by id."""
    found = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                env = (d / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if entry.encode() in env:
                found.append(int(d.name))
    return found


def _kill_all(entry: str) -> None:
    for pid in _pids_with(entry):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- 1. requests the cluster cannot hold ---------------------------------------------------------
def test_a_worker_no_node_can_hold_fails_at_once_in_one_line_and_writes_nothing(local_ray, tmp_path, capsys):
    imgs = _images(tmp_path / "in", 2)
    # (before, Ray waited for such a worker until the start limit: 120 s with --timeout 30)
    with pytest.raises(DensedetError, match=r"no node of the Ray cluster can host a worker with 3 CPU"):
        run_batch(imgs, tmp_path / "a", detector=BlobDetector(), ray="local", cpus_per_worker=3, timeout=30)
    assert not (tmp_path / "a" / "manifest.jsonl").exists()
    # no GPU anywhere: the default worker count used to be 1 such worker, waited for in vain
    out = tmp_path / "b" / "new"
    argv = [*map(str, imgs), "--out", str(out), "--ray", "local", "--gpus-per-worker", "1", "--timeout", "30",
            "--detector", f"{TESTS / 'fakes.py'}:make_blob"]
    assert batch_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error: no node of the Ray cluster can host" in err[0] and "1 GPU(s)" in err[0]
    assert not out.exists()  # the folder the run made is removed again


def test_more_workers_than_the_cluster_holds_are_cut_down_with_a_warning(local_ray, tmp_path, caplog):
    imgs = _images(tmp_path / "in", 3)
    with caplog.at_level(logging.WARNING, logger="densedet_tile"):
        s = run_batch(imgs, tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)),
                      ray="local", workers=3, timeout=30)
    assert (s.ok, s.failed, s.workers) == (3, 0, 2)
    assert _records(tmp_path / "out")[0]["workers"] == 2
    assert any("holds only 2 worker(s)" in r.getMessage() for r in caplog.records)


def test_the_pool_starts_on_the_actors_that_are_up_and_late_ones_join(local_ray):
    from densedet_tile.distributed.ray_pool import RayPool

    # three 1-CPU actors on 2 CPUs: the third cannot start while the others live
    # (started once, here: entering the pool as a context would start it already)
    pool = RayPool(BlobDetector(), workers=3, num_cpus=1, start_timeout=60, join_grace=1)
    try:
        up = pool.start()
        waiting = [s for s in pool.slots if s.starting is not None]
        assert 1 <= len(up) <= 2 and len(up) + len(waiting) == 3
        results = list(pool.map(range(4), lambda actor, n: actor.info.remote(), timeout=60))
    finally:
        pool.close()
    assert sorted(r.item for r in results if r.ok) == [0, 1, 2, 3]


# -- 4. --split attempts ------------------------------------------------------------------------------
def test_split_records_the_most_tries_a_chunk_of_the_image_took(local_ray, tmp_path):
    from fakes import HeldBlob, kill_while_held

    imgs = _images(tmp_path / "in", 2, h=600, w=900)
    killed: list[int] = []
    hold = tmp_path / "hold"
    hold.touch()  # held from the start: a chunk begun before on_submit ran could finish before the kill

    def kill_once(actor, chunk):
        if not killed:  # the first chunk handed out: one of img0's
            killed.append(chunk.start)
            kill_while_held(actor, hold)  # the chunk cannot finish before the kill lands

    s = run_batch(imgs, tmp_path / "out", detector=HeldBlob(hold), job=Job(tiling=TileSpec(tile=256)), ray="local",
                  workers=2, split=True, on_submit=kill_once)
    assert killed and (s.ok, s.failed) == (2, 0)
    rec = {Path(r["input"]).name: r for r in s.records}
    assert rec["img0.png"]["attempts"] == 2  # the chunk whose worker was killed ran twice
    assert rec["img1.png"]["attempts"] == 1


# -- 3. what --ray auto and --ray local attach to -------------------------------------------------------
def test_auto_joins_only_a_cluster_ray_start_recorded_and_local_is_always_new(monkeypatch):
    import ray._private.utils as ray_utils

    from densedet_tile.distributed import ray_pool

    calls: list[dict] = []

    def fake_init(**kw):
        calls.append(kw)
        signal.signal(signal.SIGTERM, lambda *a: sys.exit(15))  # as ray.init does

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(ray_pool.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray_pool.ray, "init", fake_init)
    # nothing recorded by `ray start`: Ray's own "auto" would join any instance running here
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda *a, **k: None)
    with pytest.raises(DensedetError, match="no cluster was started on this machine"):
        ray_pool.connect("auto")
    # a recorded head that is gone: said at once, not left to Ray's search
    port = _free_port()
    monkeypatch.setattr(ray_utils, "read_ray_address", lambda *a, **k: f"127.0.0.1:{port}")
    with pytest.raises(DensedetError, match="nothing answers"):
        ray_pool.connect("auto")
    assert calls == []
    previous = signal.getsignal(signal.SIGTERM)

    def ours(signum, frame):  # pragma: no cover - never sent
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, ours)
    try:
        with socket.socket() as head:  # a recorded head that answers: Ray is asked for "auto"
            head.bind(("127.0.0.1", 0))
            head.listen()
            monkeypatch.setattr(ray_utils, "read_ray_address", lambda *a, **k: f"127.0.0.1:{head.getsockname()[1]}")
            assert ray_pool.connect("auto") is False
        assert calls[-1]["address"] == "auto"
        assert signal.getsignal(signal.SIGTERM) is ours  # ray.init's handler does not replace the caller's
        monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # "local" starts a new instance whatever it says
        assert ray_pool.connect("local", num_cpus=2) is True
        assert calls[-1]["address"] == "local" and calls[-1]["num_cpus"] == 2
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_warning_text_is_cut_at_a_word_and_loses_colour_codes():
    from densedet_tile.distributed.ray_pool import clip

    text = "\x1b[33m(raylet)\x1b[0m The task may or may not have been executed on the actor"
    assert clip(text, 200) == "(raylet) The task may or may not have been executed on the actor"
    cut = clip(text, 40)
    assert len(cut) <= 40 and cut.endswith("...") and cut[:-3] in text.replace("\x1b[33m", "").replace("\x1b[0m", "")
    assert cut == "(raylet) The task may or may not have..."


# -- 2. the cluster going away mid-run, and SIGTERM (each in a process of its own) ------------------------
needs_proc = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds its processes in /proc")


def _child_env(**extra: str) -> dict[str, str]:
    """The environment of a `densedet-tile batch` child: the test helpers importable, no
    RAY_ADDRESS of the caller's, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)
    return {**env, **extra}


def _hanging_run(tmp_path: Path) -> tuple[list[Path], Path]:
    """Inputs of a run that keeps going (two images, then a grey one the detector never
    finishes between them) and its output folder."""
    imgs = _images(tmp_path / "in", 2)
    return [imgs[0], _grey(tmp_path / "in" / "hang.png"), imgs[1]], tmp_path / "out"


@needs_proc
def test_a_cluster_that_goes_away_mid_run_ends_with_one_line_exit_2_and_a_closed_manifest(tmp_path):
    # the ray command beside this interpreter (a venv need not be activated), else on PATH
    beside = Path(sys.executable).parent / "ray"
    exe = str(beside) if beside.is_file() else shutil.which("ray")
    if exe is None:
        pytest.skip("the ray command is not installed")
    mark = f"DENSEDET_TEST_CLUSTER={uuid.uuid4().hex}"
    temp = tempfile.mkdtemp(prefix="ddt", dir="/tmp")  # short: Ray's socket paths live under it
    port = _free_port()
    base = _child_env(RAY_AUTH_MODE="disabled")
    proc = None
    try:
        subprocess.run([exe, "start", "--head", f"--port={port}", "--num-cpus=2", f"--temp-dir={temp}",
                        "--include-dashboard=false", "--disable-usage-stats"],
                       env={**base, mark.split("=")[0]: mark.split("=")[1]}, check=True, capture_output=True,
                       timeout=240)
        inputs, out = _hanging_run(tmp_path)
        proc = subprocess.Popen(
            [sys.executable, "-m", "densedet_tile", "batch", *map(str, inputs), "--out", str(out), "--tile", "256",
             "--ray", "auto", "--workers", "2", "--detector", f"{HERE}:make_hang_on_grey"],
            # Ray ends a driver whose cluster head has been gone for 60 s; lifted to 10 min here so
            # that the test does not race that timer: only the engine's own check ends the run
            env={**base, "RAY_ADDRESS": f"127.0.0.1:{port}", "RAY_gcs_rpc_server_reconnect_timeout_s": "600"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _wait_for_images(out, 2, proc)  # img0 and img1; hang.png keeps the run going
        _kill_all(mark)  # the whole cluster, at once
        stdout, stderr = proc.communicate(timeout=120)  # an upper bound only
        assert proc.returncode == 2, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "the Ray cluster went away" in errors[0], stderr[-3000:]
        assert "Raylet is terminated" not in stdout + stderr and "\x1b[" not in stdout + stderr
        recs = _records(out)
        assert recs[-1]["event"] == "end" and recs[-1]["finished"] is False and recs[-1]["ok"] == 2
        assert "went away" in recs[-1]["stopped"]
        snap = json.loads((out / "manifest.json").read_text())
        assert snap["counts"] == {"ok": 2} and snap["runs"][-1]["finished"] is False
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.communicate()
        _kill_all(mark)
        shutil.rmtree(temp, ignore_errors=True)


def _is_ray_process(pid: int) -> bool:
    """Whether process ``pid`` runs one of Ray's own programs (its cluster's servers)."""
    try:
        return b"/ray/" in (Path("/proc") / str(pid) / "cmdline").read_bytes()
    except OSError:
        return False


def _assert_all_gone(mark: str, within: float = 60.0) -> None:
    """Every process marked ``mark`` goes away (``within`` seconds is only an upper bound)."""
    deadline = time.monotonic() + within
    while _pids_with(mark) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _pids_with(mark) == []


def _end(proc: subprocess.Popen, mark: str) -> None:
    """Whatever a test left running: the batch process and every process it marked."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    _kill_all(mark)


def _start_hanging_batch(tmp_path: Path, name: str, *, workers: int) -> tuple[str, Path, subprocess.Popen]:
    """`densedet-tile batch --ray local` over a run that keeps going, its processes marked by
    ``NAME=<random>`` in their environment: (that mark, the output folder, the process)."""
    mark = f"{name}={uuid.uuid4().hex}"
    env = _child_env(**{name: mark.split("=")[1]})
    inputs, out = _hanging_run(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "densedet_tile", "batch", *map(str, inputs), "--out", str(out), "--tile", "256",
         "--ray", "local", "--workers", str(workers), "--detector", f"{HERE}:make_hang_on_grey",
         # half a CPU each: the workers asked for start on a machine (or container) Ray sees as one CPU
         "--cpus-per-worker", "0.5"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return mark, out, proc


@needs_proc
def test_sigterm_stops_a_ray_run_as_ctrl_c_does(tmp_path):
    mark, out, proc = _start_hanging_batch(tmp_path, "DENSEDET_TEST_RUN", workers=2)
    try:
        _wait_for_images(out, 2, proc)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stderr[-3000:]  # (before: Ray's own SIGTERM handler, exit 1)
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "stopped by SIGTERM (re-run" in errors[0]
        recs = _records(out)
        assert recs[-1]["event"] == "end" and recs[-1]["stopped"] == "stopped by SIGTERM" and recs[-1]["finished"] is False
        assert json.loads((out / "manifest.json").read_text())["counts"] == {"ok": 2}
        _assert_all_gone(mark)  # the run's own Ray instance is stopped with it
    finally:
        _end(proc, mark)


@needs_proc
def test_sigterm_while_ray_starts_stops_ray_and_the_run_cleanly(tmp_path):
    # The signal goes out as soon as Ray's first process exists, while the run is still starting
    # Ray (about two seconds here). Whenever it lands, the run must end as a stopped run: exit
    # 143, one line, none of Ray's processes left, and either no output folder (stopped before
    # its first line: before, an empty one stayed, with exit 15 from Ray's handler) or a closed
    # manifest.
    mark, out, proc = _start_hanging_batch(tmp_path, "DENSEDET_TEST_START", workers=1)
    try:
        deadline = time.monotonic() + 120  # an upper bound
        while not [p for p in _pids_with(mark) if p != proc.pid and _is_ray_process(p)] and proc.poll() is None:
            assert time.monotonic() < deadline, "Ray never started"
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 143, stderr[-3000:]
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and "stopped by SIGTERM (re-run" in errors[0], stderr[-3000:]
        if out.exists():
            recs = _records(out)
            assert recs and recs[-1]["event"] == "end" and recs[-1]["stopped"] == "stopped by SIGTERM"
        _assert_all_gone(mark)  # the run's own Ray instance is stopped with it
    finally:
        _end(proc, mark)


class _FakeRayStart:
    """Stands in for ray.init: sets Ray's own SIGTERM handler (exit status 15) as Ray does, then
    the process receives ``signals`` while it 'starts'."""

    def __init__(self, signals):
        self.signals, self.shutdowns, self.started = list(signals), 0, False

    def init(self, **kwargs):
        from ray._private import utils

        utils.set_sigterm_handler(lambda signum, frame: sys.exit(signum))
        for sig in self.signals:
            signal.raise_signal(sig)
        self.started = True

    def shutdown(self):
        self.shutdowns += 1
        self.started = False


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_during_ray_start_up_waits_then_stops_ray_and_reaches_the_callers_handler(monkeypatch, sig):
    from densedet_tile.distributed import ray_pool

    fake = _FakeRayStart([sig])
    monkeypatch.setattr(ray_pool.ray, "init", fake.init)
    monkeypatch.setattr(ray_pool.ray, "shutdown", fake.shutdown)
    monkeypatch.setattr(ray_pool.ray, "is_initialized", lambda: fake.started)
    seen = []

    def mine(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    before = {s: signal.signal(s, mine) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(KeyboardInterrupt):
            ray_pool.connect("local")
        # the start-up ended, Ray went again, and only then did the caller's handler see the signal
        assert seen == [sig] and fake.shutdowns == 1 and not fake.started
        # Ray's exit-15 handler was never installed: the caller's is in place
        assert signal.getsignal(signal.SIGTERM) is mine and signal.getsignal(signal.SIGINT) is mine
        fake.signals = []  # no signal: connected, handlers the caller's
        assert ray_pool.connect("local") is True and fake.started and fake.shutdowns == 1
        fake.shutdown()
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        for s, h in before.items():
            signal.signal(s, h)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def test_a_second_stop_signal_during_ray_start_up_does_not_wait(monkeypatch):
    from densedet_tile.distributed import ray_pool

    fake = _FakeRayStart([signal.SIGTERM, signal.SIGTERM])
    monkeypatch.setattr(ray_pool.ray, "init", fake.init)
    monkeypatch.setattr(ray_pool.ray, "shutdown", fake.shutdown)
    monkeypatch.setattr(ray_pool.ray, "is_initialized", lambda: fake.started)
    before = signal.signal(signal.SIGTERM, _raise_interrupt)  # as the command line's stop handler
    try:
        with pytest.raises(KeyboardInterrupt):
            ray_pool.connect("local")
    finally:
        signal.signal(signal.SIGTERM, before)
    assert not fake.started and fake.shutdowns == 1  # what had started was shut down


def test_a_stop_held_while_joining_a_cluster_wins_over_the_failed_connection(monkeypatch):
    from densedet_tile.distributed import ray_pool

    def init(**kwargs):
        signal.raise_signal(signal.SIGINT)  # Ctrl-C while Ray tries to connect...
        raise ConnectionError("could not connect")  # ...which then fails

    monkeypatch.setattr(ray_pool, "_check_reachable", lambda target: None)
    monkeypatch.setattr(ray_pool.ray, "init", init)
    monkeypatch.setattr(ray_pool.ray, "is_initialized", lambda: False)
    before = signal.signal(signal.SIGINT, _raise_interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):  # was: DensedetError, the Ctrl-C lost
            ray_pool.connect("head.example:6379")
    finally:
        signal.signal(signal.SIGINT, before)


def test_plan_workers_packs_fractions_of_a_gpu_as_ray_does(monkeypatch):
    from densedet_tile.distributed import ray_pool

    nodes = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}},
             {"Alive": False, "Resources": {"CPU": 64.0, "GPU": 8.0}}]  # a dead node holds nothing
    monkeypatch.setattr(ray_pool.ray, "nodes", lambda: nodes)
    assert ray_pool.plan_workers(None, 1, 0.4) == 4  # two per GPU (0.8 used), not 2 / 0.4 = 5
    assert ray_pool.plan_workers(None, 1, 0.6) == 2
    assert ray_pool.plan_workers(None, 1, 1) == 2
    assert ray_pool.plan_workers(None, 3, 0) == 5


def test_batch_started_with_stdout_closed_reports_without_a_traceback(tmp_path):
    import os

    (tmp_path / "bad.png").write_text("not a picture")
    r = subprocess.run([sys.executable, "-m", "densedet_tile", "batch", str(tmp_path / "bad.png"), "--out",
                        str(tmp_path / "o"), "--ray", "none"], stderr=subprocess.PIPE, text=True, timeout=120,
                       preexec_fn=lambda: os.close(1))
    # an unreadable input is that input's error (exit 1), reported in one line, then the summary
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bad.png" in r.stderr.splitlines()[0]


@pytest.mark.skipif(sys.platform != "linux", reason="file names that are not UTF-8 are a POSIX thing")
def test_a_file_name_that_is_not_utf8_runs_on_ray(tmp_path):
    # Ray hands the driver's command line to C++ as UTF-8: a name such as caf\xe9.png from an old
    # camera or archive ended the run with a UnicodeEncodeError traceback inside ray.init
    name = os.fsencode(tmp_path) + b"/caf\xe9.png"
    Image.fromarray(blob_image(200, 300, (40, 30, 160, 90))).save(os.fsdecode(name))
    out = tmp_path / "o"
    r = subprocess.run([sys.executable.encode(), b"-m", b"densedet_tile", b"batch", name, b"--out", os.fsencode(out),
                        b"--ray", b"local", b"--workers", b"1", b"-q",
                        b"--detector", os.fsencode(f"{TESTS / 'fakes.py'}:make_blob")],
                       stderr=subprocess.PIPE, text=True, errors="replace", timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    recs = _records(out)
    image = [rec for rec in recs if rec["event"] == "image"]
    assert [rec["status"] for rec in image] == ["ok"] and image[0]["input"] == os.fsdecode(name)
    doc = json.loads((out / os.fsdecode(b"caf\xe9.detections.json")).read_text())
    assert doc["num_detections"] == 1
