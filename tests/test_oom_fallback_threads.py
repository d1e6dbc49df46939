"""The out-of-memory CPU fallback of one detector served to many threads: a move to or from the
CPU waits for the predict calls running in other threads, a call that ran out while another
thread moved the detector retries where it is now, and an image whose detector another image
moved back to the GPU can fall back again (it failed with "out of memory even with one tile").
No GPU: fakes that say ``cuda`` and block on events; every wait has a deadline."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from densedet_tile.detector import calls
from densedet_tile.detector.calls import DetectorCalls, back_to_the_gpu

from fakes import BlobDetector

GPU_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB"
WAIT = 20.0  # seconds any one wait may take before the test fails instead of hanging


def _tile() -> np.ndarray:
    t = np.zeros((64, 64, 3), np.uint8)
    t[10:20, 10:30] = 255
    return t


def _until(cond, what: str) -> None:
    end = time.monotonic() + WAIT
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.005)


def _writers_waiting(det: object) -> int:
    lock = getattr(calls, "_move_lock", None)
    return 0 if lock is None else lock(det)._waiting


class _Gated(BlobDetector):
    """On ``cuda``; a predict call waits for ``go`` (after setting ``inside``); ``to`` records the
    device and how many predict calls were running when it moved."""

    def __init__(self) -> None:
        super().__init__()
        self.device = "cuda"
        self.inside = threading.Event()
        self.go = threading.Event()
        self.running = 0
        self.moves: list[tuple[str, int]] = []

    def to(self, device):
        self.moves.append((str(device), self.running))
        self.device = str(device)
        return self

    def predict(self, tiles):
        self.running += 1
        try:
            self.inside.set()
            if not self.go.wait(WAIT):
                raise AssertionError("predict was never let go")
            return super().predict(tiles)
        finally:
            self.running -= 1


def _in_thread(fn) -> tuple[threading.Thread, list]:
    errors: list = []

    def run():
        try:
            fn()
        except BaseException as exc:  # (shown by the test)
            errors.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, errors


def test_a_move_back_to_the_gpu_waits_for_another_threads_running_predict():
    det = _Gated()
    # an earlier image ran out and left it on the CPU, to go back for the next image
    det.device, det._densedet_on_cpu, det._densedet_back_to, det._densedet_cpu_for = "cpu", True, "cuda", "a#1"
    running = DetectorCalls(det, 1, "a", key="a#1")  # the image that ran out, still running
    t1, err1 = _in_thread(lambda: running.predict([_tile()]))
    assert det.inside.wait(WAIT)
    # another thread's image begins: it would move the weights under the running call
    t2, err2 = _in_thread(lambda: back_to_the_gpu(det, "b#2"))
    _until(lambda: det.moves or _writers_waiting(det), "the move to begin or to wait")
    assert det.moves == []  # not moved while the call runs
    det.go.set()
    t1.join(WAIT)
    t2.join(WAIT)
    assert not t1.is_alive() and not t2.is_alive() and err1 == [] and err2 == []
    assert det.moves == [("cuda", 0)] and det._densedet_on_cpu is False


class _OOMOnGpu(_Gated):
    """Runs out of GPU memory on ``cuda`` (once let go); fine on the CPU."""

    def predict(self, tiles):
        if self.device != "cpu":
            self.running += 1
            try:
                self.inside.set()
                if not self.go.wait(WAIT):
                    raise AssertionError("predict was never let go")
            finally:
                self.running -= 1
            raise RuntimeError(GPU_OOM)
        return BlobDetector.predict(self, tiles)


def test_the_fallback_move_waits_for_a_call_of_another_thread():
    det = _OOMOnGpu()
    # thread B: a call already running on the GPU (a detector that finishes once let go)
    b_inside, b_go = threading.Event(), threading.Event()
    real = det.predict

    def predict(tiles):
        if threading.current_thread().name == "B":
            det.running += 1
            try:
                b_inside.set()
                assert b_go.wait(WAIT)
                return BlobDetector.predict(det, tiles)
            finally:
                det.running -= 1
        return real(tiles)

    det.predict = predict
    b_calls = DetectorCalls(det, 1, "b", key="b#2")
    tb = threading.Thread(target=lambda: b_calls.predict([_tile()]), name="B", daemon=True)
    tb.start()
    assert b_inside.wait(WAIT)
    # thread A runs out of memory at one tile and would move the detector under B's call
    a_calls = DetectorCalls(det, 1, "a", key="a#1")
    det.go.set()
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        ta, err_a = _in_thread(lambda: a_calls.predict([_tile()]))
        _until(lambda: det.moves or _writers_waiting(det), "the move to begin or to wait")
        assert det.moves == []  # B's call still runs: no move under it
        b_go.set()
        ta.join(WAIT)
        tb.join(WAIT)
    assert not ta.is_alive() and not tb.is_alive() and err_a == []
    assert det.moves == [("cpu", 0)]


def test_a_call_that_ran_out_while_another_thread_moved_the_detector_retries_on_the_cpu():
    # two threads out of GPU memory at once: the second to get to the move finds it made,
    # and retries there (it took the detector's CPU mark for "out of memory on the CPU too")
    det = _OOMOnGpu()
    a = DetectorCalls(det, 1, "a", key="a#1")
    b = DetectorCalls(det, 1, "b", key="b#2")
    both_in = threading.Barrier(2, timeout=WAIT)

    def predict(tiles):
        if det.device != "cpu":
            both_in.wait()  # both calls began on the GPU before either moves
            raise RuntimeError(GPU_OOM)
        return BlobDetector.predict(det, tiles)

    det.predict = predict
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        ta, err_a = _in_thread(lambda: a.predict([_tile()]))
        tb, err_b = _in_thread(lambda: b.predict([_tile()]))
        ta.join(WAIT)
        tb.join(WAIT)
    assert not ta.is_alive() and not tb.is_alive()
    assert err_a == [] and err_b == []
    assert det.moves == [("cpu", 0)]


def test_an_image_moved_back_to_the_gpu_by_another_image_can_fall_back_again():
    # image a runs out and goes to the CPU; image b (another thread) begins and moves the
    # detector back to the GPU between a's calls; a's next call runs out on the GPU again
    det = _OOMOnGpu()
    det.go.set()
    a = DetectorCalls(det, 1, "a", key="a#1")
    with pytest.warns(RuntimeWarning, match="continuing on the CPU for this image"):
        assert len(a.predict([_tile()])[0]) == 1
    DetectorCalls(det, 1, "b", key="b#2")  # b's calls begin: back to the GPU
    assert det.device == "cuda"
    with pytest.warns(RuntimeWarning, match="continuing on the CPU for this image"):
        assert len(a.predict([_tile()])[0]) == 1  # (was: out of memory even with one tile per batch)
    assert [d for d, _ in det.moves] == ["cpu", "cuda", "cpu"]


def test_an_out_of_memory_inside_the_calls_moves_the_detector_without_waiting_on_itself():
    det = _OOMOnGpu()
    det.go.set()
    a = DetectorCalls(det, 1, "a", key="a#1")
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        t, err = _in_thread(lambda: a.predict([_tile()]))
        t.join(WAIT)
    assert not t.is_alive(), "the fallback waited on its own predict call"
    assert err == [] and det.moves == [("cpu", 0)]


def test_a_detector_whose_predict_runs_the_engine_again_does_not_wait_on_itself():
    # its predict begins another image's calls (back to the GPU): that move would wait for the
    # predict call it is made from; it stays where it is instead
    class _Nested(_Gated):
        def predict(self, tiles):
            DetectorCalls(self, 1, "inner", key="inner#9")
            return BlobDetector.predict(self, tiles)

    det = _Nested()
    det.device, det._densedet_on_cpu, det._densedet_back_to, det._densedet_cpu_for = "cpu", True, "cuda", "a#1"
    outer = DetectorCalls(det, 1, "a", key="a#1")
    t, err = _in_thread(lambda: outer.predict([_tile()]))
    t.join(WAIT)
    assert not t.is_alive(), "the move waited on its own predict call"
    assert err == [] and det.moves == []
