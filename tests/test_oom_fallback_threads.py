"""The out-of-memory CPU fallback of one detector served to many threads: a move to or from the
CPU waits for the predict calls running in other threads, a call that ran out while another
thread moved the detector retries where it is now, and an image whose detector another image
moved back to the GPU can fall back again (it failed with "out of memory even with one tile").
No GPU: fakes that say ``cuda`` and block on events; every wait has a deadline."""

from __future__ import annotations

import gc
import threading
import warnings
import time
import weakref
from dataclasses import dataclass, field

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


# --- each detector's lock (and batch cap) by its identity, not by equality ---------------------

def _blob(tiles):
    return BlobDetector().predict(tiles)


@dataclass
class _DcGated:
    """A default ``@dataclass`` (unhashable, weakly referable): its calls wait for ``go``."""

    device: str = "cuda"
    inside: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)

    def predict(self, tiles):
        self.inside.set()
        if not self.go.wait(WAIT):
            raise AssertionError("predict was never let go")
        return _blob(tiles)


class _OOMUntilMoved:
    """Out of GPU memory on ``cuda``, fine once moved to the CPU (``device`` and ``moves`` are
    the subclass's own: a dataclass's fields, or slots)."""

    __slots__ = ()

    def to(self, device):
        self.moves.append(str(device))
        self.device = str(device)
        return self

    def predict(self, tiles):
        if self.device != "cpu":
            raise RuntimeError(GPU_OOM)
        return _blob(tiles)


@dataclass
class _DcFull(_OOMUntilMoved):
    """A default ``@dataclass`` that runs out of GPU memory on ``cuda`` and moves to the CPU."""

    device: str = "cuda"
    moves: list = field(default_factory=list)


class _SlotsGated:
    """Neither weakly referable nor taking attributes."""

    __slots__ = ("device", "inside", "go")

    def __init__(self) -> None:
        self.device, self.inside, self.go = "cuda", threading.Event(), threading.Event()

    def predict(self, tiles):
        self.inside.set()
        if not self.go.wait(WAIT):
            raise AssertionError("predict was never let go")
        return _blob(tiles)


class _SlotsFull(_OOMUntilMoved):
    __slots__ = ("device", "moves")

    def __init__(self) -> None:
        self.device, self.moves = "cuda", []


@pytest.mark.parametrize("kinds", [(_DcGated, _DcFull), (_SlotsGated, _SlotsFull)], ids=["dataclass", "slots"])
def test_the_fallback_of_one_detector_does_not_wait_for_an_unrelated_detectors_call(kinds):
    # detectors that cannot be weak dictionary keys shared one process-wide lock: the move of
    # one waited for the running calls of every other
    gated_kind, full_kind = kinds
    busy, full = gated_kind(), full_kind()
    tb, err_b = _in_thread(lambda: DetectorCalls(busy, 1, "busy", key="busy#1").predict([_tile()]))
    try:
        assert busy.inside.wait(WAIT)
        with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
            ta, err_a = _in_thread(lambda: DetectorCalls(full, 1, "full", key="full#2").predict([_tile()]))
            ta.join(WAIT)
        assert not ta.is_alive(), "the move waited for another detector's call"
        assert err_a == [] and full.moves == ["cpu"]
    finally:
        busy.go.set()
        tb.join(WAIT)
    assert not tb.is_alive() and err_b == []


class _ArrayEq(BlobDetector):
    """``==`` gives an array, as numpy's does (hashable by identity)."""

    __hash__ = object.__hash__

    def __init__(self) -> None:
        super().__init__()
        self.device = "cuda"

    def __eq__(self, other):
        return np.array([True, False])

    def predict(self, tiles):
        if len(tiles) > 1:
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def test_a_detector_whose_equality_gives_an_array_runs_image_after_image():
    det = _ArrayEq()
    with pytest.warns(RuntimeWarning, match="retrying with batch size 1"):
        assert len(DetectorCalls(det, 2, "a", key="a#1").predict([_tile(), _tile()])) == 2
    for key in ("b#2", "c#3"):  # (was: ValueError, the truth value of an array, from the lookup)
        calls_ = DetectorCalls(det, 2, key, key=key)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no new out of memory: the cap it came down to stays
            assert len(calls_.predict([_tile(), _tile()])) == 2
        assert calls_.batch_size == 1


class _Replica(BlobDetector):
    """Equal by configuration, as two replicas of one model on two GPUs may be."""

    def __init__(self, device: str) -> None:
        super().__init__()
        self.device = device

    def __eq__(self, other):
        return isinstance(other, _Replica)

    def __hash__(self):
        return hash(_Replica)

    def predict(self, tiles):
        if len(tiles) > 1 and self.device == "cuda:0":
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def test_replicas_equal_by_value_keep_their_own_batch_cap_and_lock():
    a, b = _Replica("cuda:0"), _Replica("cuda:1")
    with pytest.warns(RuntimeWarning, match="retrying with batch size 1"):
        DetectorCalls(a, 2, "a", key="a#1").predict([_tile(), _tile()])
    again, other = DetectorCalls(a, 2, "a2", key="a2#2"), DetectorCalls(b, 2, "b", key="b#3")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again.predict([_tile(), _tile()])
        other.predict([_tile(), _tile()])
    assert again.batch_size == 1
    assert other.batch_size == 2  # (was 1: a's cap, found by equality)
    assert calls._move_lock(a) is not calls._move_lock(b)


@dataclass(unsafe_hash=True)
class _HashByDevice:
    """Its hash changes with its device (a field), which the move changes."""

    device: str = "cuda"
    inside: threading.Event = field(default_factory=threading.Event, compare=False)
    go: threading.Event = field(default_factory=threading.Event, compare=False)
    moves: list = field(default_factory=list, compare=False)

    def to(self, device):
        self.moves.append(str(device))
        self.device = str(device)
        return self

    def predict(self, tiles):
        self.inside.set()
        if not self.go.wait(WAIT):
            raise AssertionError("predict was never let go")
        return _blob(tiles)


def test_a_detector_whose_hash_changes_with_its_device_keeps_one_lock():
    det = _HashByDevice()
    running = DetectorCalls(det, 1, "a", key="a#1")  # its lock looked up while it said cuda
    # then the image ran out of memory and moved it to the CPU, to go back for the next image
    det.device, det._densedet_on_cpu, det._densedet_back_to, det._densedet_cpu_for = "cpu", True, "cuda", "a#1"
    t1, err1 = _in_thread(lambda: running.predict([_tile()]))
    try:
        assert det.inside.wait(WAIT)
        t2, err2 = _in_thread(lambda: back_to_the_gpu(det, "b#2"))
        _until(lambda: det.moves or _writers_waiting(det), "the move to begin or to wait")
        assert det.moves == []  # (was: moved under the running call, its lock found by the new hash)
    finally:
        det.go.set()
        t1.join(WAIT)
    t2.join(WAIT)
    assert not t1.is_alive() and not t2.is_alive() and err1 == [] and err2 == []
    assert det.moves == ["cuda"]


class _SlotsAndDict:
    __slots__ = ("__dict__",)  # attributes, but no weak references

    def predict(self, tiles):
        return _blob(tiles)


def test_a_detector_that_takes_attributes_but_no_weak_reference_has_a_lock_of_its_own():
    a, b = _SlotsAndDict(), _SlotsAndDict()
    with pytest.raises(TypeError):
        weakref.ref(a)
    assert calls._move_lock(a) is calls._move_lock(a)
    assert calls._move_lock(a) is not calls._move_lock(b)


def test_a_lock_goes_with_its_detector():
    det = BlobDetector()
    calls._move_lock(det)
    ident = id(det)
    assert ident in calls._MOVE_LOCKS
    del det
    gc.collect()
    assert ident not in calls._MOVE_LOCKS


# --- an interrupt never leaves a call counted -------------------------------------------------

@pytest.mark.parametrize("how", ["DetectorCalls", "predict_held"])
@pytest.mark.parametrize("when", ["after it counted the call", "before it counted the call"])
def test_an_interrupt_as_a_call_begins_leaves_the_lock_free(monkeypatch, how, when):
    # Ctrl-C can land between enter() counting the call and the try that lets it go: the call
    # stayed counted for ever, and every later move of the detector waited for it
    real = calls._MoveLock.enter

    def interrupted(self):
        if when == "after it counted the call":
            real(self)
        raise KeyboardInterrupt

    monkeypatch.setattr(calls._MoveLock, "enter", interrupted)
    det = BlobDetector()
    with pytest.raises(KeyboardInterrupt):
        if how == "DetectorCalls":
            DetectorCalls(det, 1, "a", key="a#1").predict([_tile()])
        else:
            calls.predict_held(det, [_tile()])
    monkeypatch.undo()
    assert not calls._move_lock(det).held_here()
    assert det.calls == []


# --- an out-of-memory inside the detector's own predict call ----------------------------------

class _SplitsItself(BlobDetector):
    """Runs the engine on itself for a tile over 64 px (its 64 px corner); out of GPU memory
    on ``cuda``, fine on the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.device = "cuda"
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(str(device))
        self.device = str(device)
        return self

    def predict(self, tiles):
        if tiles[0].shape[0] > 64:
            return [DetectorCalls(self, 1, "sub", key="sub#1").predict([t[:64, :64]])[0] for t in tiles]
        if self.device != "cpu":
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def _big_tile() -> np.ndarray:
    t = np.zeros((128, 128, 3), np.uint8)
    t[10:20, 10:30] = 255
    return t


def test_an_out_of_memory_in_a_call_the_detectors_own_predict_made_moves_it_to_the_cpu():
    # (was: "the detector cannot be moved from inside its own predict call"; before the lock it
    # moved, and so it does again)
    det = _SplitsItself()
    got: list = []
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        t, err = _in_thread(lambda: got.extend(DetectorCalls(det, 1, "a", key="a#1").predict([_big_tile()])))
        t.join(WAIT)
    assert not t.is_alive(), "the move waited on its own predict call"
    assert err == [] and det.moves == ["cpu"] and len(got) == 1 and len(got[0]) == 1


def _call_held_in_thread_b(det) -> tuple[threading.Thread, threading.Event]:
    """Start a call of ``det`` in a thread named B that stays inside its predict (the plain
    blob detector's) until the returned event is set; returns once it is inside."""
    b_inside, b_go = threading.Event(), threading.Event()
    real = det.predict

    def predict(tiles):
        if threading.current_thread().name == "B":
            b_inside.set()
            assert b_go.wait(WAIT)
            return BlobDetector.predict(det, tiles)
        return real(tiles)

    det.predict = predict
    tb = threading.Thread(target=lambda: DetectorCalls(det, 1, "b", key="b#2").predict([_tile()]), name="B",
                          daemon=True)
    tb.start()
    assert b_inside.wait(WAIT)
    return tb, b_go


def test_that_move_still_waits_for_another_threads_call():
    det = _SplitsItself()
    tb, b_go = _call_held_in_thread_b(det)
    try:
        with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
            ta, err_a = _in_thread(lambda: DetectorCalls(det, 1, "a", key="a#1").predict([_big_tile()]))
            _until(lambda: det.moves or _writers_waiting(det) or err_a, "the move to begin or to wait")
            assert det.moves == [] and err_a == []  # B's call still runs: no move under it
            b_go.set()
            ta.join(WAIT)
    finally:
        b_go.set()
        tb.join(WAIT)
    assert not ta.is_alive() and not tb.is_alive() and err_a == []
    assert det.moves == ["cpu"]


# --- a move waits for other threads' calls no longer than MOVE_WAIT_S ---------------------------

class _FansOut(_SplitsItself):
    """For a tile over 64 px, hands its 64 px corner to another thread that runs the engine on
    this same detector, and waits for it (a pool inside predict); out of GPU memory on
    ``cuda``, fine on the CPU."""

    def predict(self, tiles):
        if tiles[0].shape[0] > 64:
            got: list = []
            t, err = _in_thread(lambda: got.extend(
                DetectorCalls(self, 1, "sub", key="sub#1").predict([x[:64, :64] for x in tiles])))
            t.join(WAIT)
            if t.is_alive():
                raise AssertionError("the engine call given to another thread never ended")
            if err:
                raise err[0]
            return got
        if self.device != "cpu":
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def test_a_predict_that_waits_for_engine_calls_it_gave_another_thread_does_not_hang(monkeypatch):
    # the other thread's call ran out of memory and its move waited for the calling thread's
    # call, which waited for it: for ever. Past MOVE_WAIT_S it moves, as before the lock
    monkeypatch.setattr(calls, "MOVE_WAIT_S", 0.05, raising=False)
    det = _FansOut()
    got: list = []
    with pytest.warns(RuntimeWarning) as rec:
        t, err = _in_thread(lambda: got.extend(DetectorCalls(det, 1, "a", key="a#1").predict([_big_tile()])))
        t.join(2 * WAIT)
    assert not t.is_alive(), "hung"
    assert err == [] and det.moves == ["cpu"] and len(got) == 1 and len(got[0]) == 1
    said = [str(w.message) for w in rec]
    assert any("sub: moving the detector to the CPU under the predict calls of 1 other thread, still running "
               "after 0.05 s" in s for s in said), said
    assert any("continuing on the CPU" in s for s in said), said


def test_a_move_back_to_the_gpu_is_not_made_while_other_threads_calls_run_on_past_the_bound(monkeypatch):
    monkeypatch.setattr(calls, "MOVE_WAIT_S", 0.05, raising=False)
    det = _Gated()
    det.device, det._densedet_on_cpu, det._densedet_back_to, det._densedet_cpu_for = "cpu", True, "cuda", "a#1"
    running = DetectorCalls(det, 1, "a", key="a#1")
    t1, err1 = _in_thread(lambda: running.predict([_tile()]))
    try:
        assert det.inside.wait(WAIT)
        with pytest.warns(RuntimeWarning, match="b: could not move back to cuda: predict calls of other threads "
                                                "still ran on the CPU after 0.05 s; this image runs on the CPU"):
            t2, err2 = _in_thread(lambda: back_to_the_gpu(det, "b#2"))
            t2.join(WAIT)
        assert not t2.is_alive(), "the move back waited for the running call"
        assert err2 == [] and det.moves == [] and det.device == "cpu"
        assert _writers_waiting(det) == 0  # (new calls are no longer held back)
    finally:
        det.go.set()
        t1.join(WAIT)
    assert not t1.is_alive() and err1 == []
    back_to_the_gpu(det, "c#3")  # no call runs now: it goes back
    assert det.moves == [("cuda", 0)]


def test_past_the_bound_the_fallback_moves_under_another_threads_call_with_a_warning(monkeypatch):
    monkeypatch.setattr(calls, "MOVE_WAIT_S", 0.05, raising=False)
    det = _OOMOnGpu()
    det.go.set()
    tb, b_go = _call_held_in_thread_b(det)
    try:
        with pytest.warns(RuntimeWarning) as rec:
            ta, err_a = _in_thread(lambda: DetectorCalls(det, 1, "a", key="a#1").predict([_tile()]))
            ta.join(WAIT)
        assert not ta.is_alive(), "the move waited for ever"
        assert err_a == [] and det.moves == [("cpu", 0)]
        said = [str(w.message) for w in rec]
        assert any("a: moving the detector to the CPU under the predict calls of 1 other thread" in s
                   for s in said), said
    finally:
        b_go.set()
        tb.join(WAIT)
    assert not tb.is_alive()
