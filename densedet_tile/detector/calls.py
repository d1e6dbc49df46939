"""Calling a detector on tiles the way the engine does: in batches, with one-line errors that
name the image, its output checked, and an out-of-memory back-off (smaller batches, then the
CPU). Used by the pipeline for the tiles and by ``tile=auto`` for its probe windows."""

from __future__ import annotations

import contextlib
import itertools
import logging
import sys
import threading
import time
import warnings
import weakref
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import DetectorError, caller_level
from ..types import Detections
from .base import Detector, class_names_of, loaded_torch

__all__ = ["DetectorCalls", "back_to_the_gpu", "image_key", "is_oom"]


#: How an allocation failure reads when it is not torch's own type: torch's older RuntimeError,
#: ONNX Runtime's arena ("Failed to allocate memory for requested buffer of size ...", raised as
#: its own RuntimeException, which is no RuntimeError) and CUDA's error names.
_OOM_PHRASES = ("out of memory", "failed to allocate memory", "cudaerrormemoryallocation",
                "cuda_error_out_of_memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed")


def is_oom(exc: BaseException) -> bool:
    """Whether ``exc`` is a device running out of memory: torch's ``OutOfMemoryError``, or an
    error whose text says so (:data:`_OOM_PHRASES`), here or in what it was raised from (an
    adapter wraps ONNX Runtime's error in a :class:`DetectorError` ``from`` it)."""
    return oom_excerpt(exc) is not None


def oom_excerpt(exc: BaseException, width: int = 160) -> str | None:
    """The words of the out-of-memory error in ``exc``'s chain (:func:`is_oom`), on one line and
    cut to about ``width`` characters around where it says so; None when it is no such error."""
    torch = loaded_torch()
    kinds: tuple[type, ...] = ()
    if torch is not None:
        kinds = tuple(k for k in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if isinstance(k, type))
    # the chain of "raise ... from": an adapter's own error raised from the runtime's; not the
    # context of an error raised while handling one (a detector that caught its out-of-memory
    # and then failed for another reason), nor a file error (its path may hold the words, and
    # so may an error quoting it)
    chain: list[BaseException] = []
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        chain.append(e)
        e = e.__cause__
    if any(isinstance(c, OSError) for c in chain):
        return None
    for e in chain:
        if kinds and isinstance(e, kinds):
            return _excerpt(_text_of(e), -1, width)
        if isinstance(e, Exception):
            text = _text_of(e)
            at = min((i for i in (text.lower().find(p) for p in _OOM_PHRASES) if i >= 0), default=-1)
            if at >= 0:
                return _excerpt(text, at, width)
    return None


def _text_of(exc: BaseException) -> str:
    try:
        return " ".join(str(exc).split())
    except Exception:  # an exception whose __str__ fails
        return type(exc).__name__


def _excerpt(text: str, at: int, width: int) -> str:
    """``text`` cut to about ``width`` characters from ``at`` (or its start)."""
    start = max(0, min(at, len(text) - width)) if at >= 0 else 0
    return ("..." if start else "") + text[start:start + width] + ("..." if start + width < len(text) else "")


#: The longest a move of a detector waits for the predict calls of other threads to end (s).
#: Past it, the fallback to the CPU moves the detector under the calls still running, as the
#: engine did before the lock, with a warning; the move back to the GPU is not made (the image
#: runs on the CPU, with a warning). Without a bound a move could wait for ever: a detector
#: whose predict hands tiles to a pool whose threads run the engine on the same detector holds
#: the lock in the calling thread, while the pool thread that ran out of memory waits for that
#: call to end, and the call waits for the pool thread. A thread pool leaves no trace of who
#: waits on whom, so it cannot be told from a call that is merely long. The bound is far above
#: a GPU call (the calls a fallback waits for), so when it passes, the calls still running are
#: most likely waiting on the move; moving then is no worse than before the lock, and failing
#: the image instead would fail it every time. A move back to the GPU waits for calls on the
#: CPU, which can be long, and it is an optimisation only: staying on the CPU is always safe.
MOVE_WAIT_S = 30.0


class _MoveLock:
    """Where one detector's weights are, guarded: its predict calls hold this shared and a move
    to or from the CPU holds it alone. One detector serves many threads (a service's pool, the
    engine's own), and the out-of-memory fallback moved the weights under another thread's
    running predict (a CUDA model half on the CPU fails, or gives another device's tensors).
    A move waiting here holds back predict calls that have not begun (else a busy pool, its
    calls always overlapping, kept it waiting for ever), except those of a thread already inside
    one (that thread would wait on itself). ``moves`` counts the moves: a call that ran out of
    memory retries where another thread's move put the detector instead of moving it again."""

    __slots__ = ("_cond", "_inside", "_moving", "_waiting", "moves", "batch_cap", "plan_budget", "cap_budget")

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._inside: dict[int, int] = {}  # thread id -> its predict calls running
        self._moving = False
        self._waiting = 0  # moves waiting for the calls to end
        self.moves = 0
        #: the batch size the detector came down to after running out of memory, by the side of
        #: the tiles it was given, kept with its lock (by identity): the next image of tiles that
        #: size starts there instead of running out again. Only at that side (one image's 4096 px
        #: tiles at batch 1 held a later run of 256 px tiles at batch 1 for good), and until a
        #: --max-vram plan finds more memory on the card than the plan before it (:func:`forget_batch_caps`:
        #: one image that ran out while another program held memory kept every later one at batch 1;
        #: an outside review)
        self.batch_cap: dict[int, int] = {}
        #: the budget (bytes) of the last --max-vram plan made for the detector, and the one in
        #: force when a batch cap was last set
        self.plan_budget = 0
        self.cap_budget = 0

    def enter(self) -> int:
        """Begin a predict call (waiting while the detector moves); the moves made so far."""
        me = threading.get_ident()
        with self._cond:
            if me not in self._inside:
                while self._moving or self._waiting:
                    self._cond.wait()
            self._inside[me] = self._inside.get(me, 0) + 1
            return self.moves

    def held_here(self) -> bool:
        """Whether this thread is inside a predict call of the detector (a detector whose
        predict runs the engine again): it cannot wait for a move."""
        return threading.get_ident() in self._inside

    def leave(self) -> None:
        """End a predict call. Called from a ``finally`` whose ``try`` holds :meth:`enter` too
        (so an interrupt just after it counted the call still lets go): this thread's call may
        not have been counted (interrupted sooner), and is then not let go twice."""
        me = threading.get_ident()
        with self._cond:
            n = self._inside.pop(me, 0) - 1
            if n > 0:
                self._inside[me] = n
            elif self._waiting and len(self._inside) <= 1:  # (one left: maybe the waiting move's own)
                self._cond.notify_all()

    def _others_inside(self, me: int) -> int:
        """How many threads other than ``me`` are inside a predict call."""
        return len(self._inside) - (me in self._inside)

    @contextlib.contextmanager
    def moving(self, anyway: bool) -> Iterator[int | None]:
        """Hold the detector alone for a move, once the predict calls of other threads have
        ended. This thread's own (a detector whose predict runs the engine on itself, and the
        inner call ran out of memory) are not waited for: they wait on this move. It moves
        under them, as the engine did before the lock, and the outer call goes on where the
        detector now is or fails with its own error.

        Yields how many other threads were still inside a predict call: 0, unless they had
        not all ended within :data:`MOVE_WAIT_S`; then, with ``anyway``, the detector is held
        (for the move) all the same, and without it, not held, and None is yielded (no move)."""
        me = threading.get_ident()
        with self._cond:
            self._waiting += 1
            try:
                end = time.monotonic() + MOVE_WAIT_S
                while True:
                    if self._moving:  # another thread's move: it ends (a move is no predict call)
                        self._cond.wait()
                        continue
                    others = self._others_inside(me)
                    left = end - time.monotonic()
                    if not others or left <= 0:
                        break
                    self._cond.wait(left)
            finally:
                self._waiting -= 1
                if not self._waiting:  # (also when the wait was interrupted: the calls held back go on)
                    self._cond.notify_all()
            if others and not anyway:
                held = False
            else:
                self._moving = held = True
        if not held:
            yield None
            return
        try:
            yield others
        finally:
            with self._cond:
                self._moving = False
                self.moves += 1
                self._cond.notify_all()


class _NoLock:
    """The lock of a detector that takes neither a weak reference nor an attribute (a class with
    ``__slots__`` and no ``__weakref__``): none, as before the lock. One lock for all such
    detectors made unrelated detectors wait for each other's calls, and a lock found by
    equality is shared by equal replicas."""

    __slots__ = ()
    moves = 0
    batch_cap: dict[int, int] = {}  # (never filled: each image starts at the planned batch size, as before)

    def enter(self) -> int:
        return 0

    def leave(self) -> None:
        pass

    def held_here(self) -> bool:
        return False

    @contextlib.contextmanager
    def moving(self, anyway: bool) -> Iterator[int | None]:
        yield 0


_NO_LOCK = _NoLock()
#: Each detector's :class:`_MoveLock`, by the detector's identity: ``id()``, not equality (a
#: detector's ``==`` may give an array, or call two replicas of one model on two GPUs equal; its
#: hash may change with its device, and a default ``@dataclass`` has none). The entry is dropped
#: by a :func:`weakref.finalize` on the detector, which runs before the detector's memory, and
#: so its ``id()``, can be given to another object.
_MOVE_LOCKS: dict[int, _MoveLock] = {}
_MOVE_LOCKS_LOCK = threading.Lock()
#: where a detector that takes no weak reference but has a ``__dict__`` keeps its lock
_LOCK_ATTR = "_densedet_move_lock"


def _move_lock(detector: object) -> "_MoveLock | _NoLock":
    """The detector's :class:`_MoveLock` (made on first use; it also keeps the batch cap)."""
    lock = _MOVE_LOCKS.get(id(detector))  # (only this detector's while it lives: see _MOVE_LOCKS)
    if lock is not None:
        return lock
    with _MOVE_LOCKS_LOCK:
        lock = _MOVE_LOCKS.get(id(detector))
        if lock is not None:
            return lock
        try:
            gone = weakref.finalize(detector, _MOVE_LOCKS.pop, id(detector), None)
        except TypeError:  # no weak references: kept on the detector where it takes attributes
            own = getattr(detector, "__dict__", None)
            if not isinstance(own, dict):
                return _NO_LOCK
            kept = own.get(_LOCK_ATTR)
            if not isinstance(kept, _MoveLock):
                kept = own[_LOCK_ATTR] = _MoveLock()
            return kept
        gone.atexit = False  # (nothing to tidy at exit)
        lock = _MOVE_LOCKS[id(detector)] = _MoveLock()
        return lock


_OPENED = itertools.count(1)


def image_key(src: object) -> str:
    """What tells one open image's calls from the next image's: its name and a serial number
    given to the source object on its first call (arrays all have one name, and ``id()`` is
    reused once an image's source is freed: the next image of a run could then pass for the one
    that ran out of memory and stay on the CPU)."""
    key = getattr(src, "_densedet_image_key", None)
    if isinstance(key, str):
        return key
    key = f"{getattr(src, 'name', '<image>')}#{next(_OPENED)}"
    try:
        src._densedet_image_key = key  # type: ignore[attr-defined]
    except (AttributeError, TypeError):  # a source that takes no attributes: its id, as before
        return f"{getattr(src, 'name', '<image>')}#{id(src)}"
    return key


def back_to_the_gpu(detector: object, key: str) -> None:
    """A detector moved to the CPU by one image's out-of-memory goes back to its GPU when
    another image's calls begin (one huge panorama, or another program holding the card for a
    while, sent every later image of a batch to the CPU); the batch size it came down to stays.
    When the move itself fails (the card is still full), the detector is put back on the CPU
    whole and this image runs there too, with a warning. The move waits for the predict calls
    of other threads that are running on the CPU (:class:`_MoveLock`)."""
    if not _goes_back(detector, key):  # (no lock on the usual path: nothing to move)
        return
    lock = _move_lock(detector)
    if lock.held_here():  # (called from inside its own predict: it stays where it is)
        return
    with lock.moving(anyway=False) as others:
        if others is None:  # (calls of other threads still run on the CPU: see MOVE_WAIT_S)
            back = getattr(detector, "_densedet_back_to", None)
            if _goes_back(detector, key):
                warnings.warn(f"{key.rpartition('#')[0]}: could not move back to {back}: "
                              f"predict calls of other threads still ran on the CPU after {MOVE_WAIT_S:g} s; "
                              "this image runs on the CPU", RuntimeWarning, stacklevel=caller_level())
            return
        if _goes_back(detector, key):  # (another thread's image may have moved it back meanwhile)
            _move_back(detector, key)


def predict_held(detector: Any, tiles: Sequence[np.ndarray]) -> object:
    """``detector.predict(tiles)`` with no move of the detector while it runs (another thread's
    out-of-memory fallback waits for it): for calls made outside :class:`DetectorCalls`."""
    lock = _move_lock(detector)
    try:
        lock.enter()  # (in the try: see _MoveLock.leave)
        return detector.predict(tiles)
    finally:
        lock.leave()


def _goes_back(detector: object, key: str) -> bool:
    return bool(getattr(detector, "_densedet_back_to", None) and getattr(detector, "_densedet_on_cpu", False)
                and getattr(detector, "_densedet_cpu_for", None) != key)  # (not the image that ran out)


def _move_back(detector: object, key: str) -> None:
    back = getattr(detector, "_densedet_back_to")
    try:
        detector.to(back)  # type: ignore[attr-defined]
    except Exception as exc:
        try:
            detector.to("cpu")  # type: ignore[attr-defined]  # whole again: a move can stop part-way
        except Exception:  # (the error raised below is the first one)
            logging.getLogger("densedet_tile").debug("moving the detector back to the CPU failed too", exc_info=True)
        detector._densedet_cpu_for = key  # type: ignore[attr-defined]
        torch = loaded_torch()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if not is_oom(exc):
            raise DetectorError(f"{key.rpartition('#')[0]}: could not move the detector back to {back}: "
                                f"{type(exc).__name__}: {exc}") from exc
        # said: the image runs wholly on the CPU (slower, and its JSON says cpu), not for
        # anything it did; the next image tries the GPU again
        warnings.warn(f"{key.rpartition('#')[0]}: could not move back to {back} (out of memory); "
                      "this image runs on the CPU", RuntimeWarning, stacklevel=caller_level())
        return
    detector._densedet_on_cpu = False  # type: ignore[attr-defined]
    detector._densedet_back_to = None  # type: ignore[attr-defined]
    detector._densedet_cpu_for = None  # type: ignore[attr-defined]


#: A --max-vram plan's budget this many times the one a batch cap was learnt at, or more, forgets
#: the caps (:func:`forget_batch_caps`).
CAP_BUDGET_MORE = 1.05


def forget_batch_caps(detector: object, budget: int) -> None:
    """A --max-vram plan for ``detector`` has just measured a ``budget`` (bytes: the cap, or what
    the card has free if less): where it is clearly more (:data:`CAP_BUDGET_MORE` times) than the
    budget in force when the detector last came down to a smaller batch after running out of
    memory, those batch sizes are forgotten (the memory another program held is free again); at
    about the same budget they stay (the probes' blank tiles plan the same batch again, which real
    tiles ran out at: every image ran out again; and what another program holds moves by a few
    MB from plan to plan)."""
    lock = _move_lock(detector)
    if lock is _NO_LOCK:
        return
    if budget > CAP_BUDGET_MORE * lock.cap_budget:
        lock.batch_cap.clear()
    lock.plan_budget = int(budget)


def _runs_on_the_cpu(detector: object, run_device: str | None = None) -> bool:
    """Whether ``detector`` runs on the CPU: its ``device``, or where it does not say one, the
    device the run resolved (a CPU detector without the attribute, run with --device cpu, was
    told "out of GPU memory" and advised --device cpu; a second look)."""
    own = getattr(detector, "device", None)
    return str(own if own is not None else run_device).lower().startswith("cpu")


#: Boxes an image's detector calls must have returned before their frame is judged (a stray
#: box or two outside a tile says nothing).
FRAME_CHECK_MIN = 10


class DetectorCalls:
    """Calls the detector on a batch: resizing, validating, OOM back-off and timing."""

    def __init__(self, detector: Detector, batch_size: int, image_name: str, key: str | None = None,
                 device: str | None = None, side: int | None = None) -> None:
        self.detector = detector
        #: the device the run resolved (``run.device``), for a detector that does not say its own
        self._run_device = device
        #: the image these calls are for (:func:`image_key`; a tile=auto probe's are its image's):
        #: an out-of-memory CPU fallback lasts until another image's calls begin
        self.image_key = image_name if key is None else key
        self._lock = _move_lock(detector)  # (looked up once per image, not per call)
        back_to_the_gpu(detector, self.image_key)
        self.batch_size = batch_size
        #: the side of the tiles (the key of their batch cap): ``side`` when the caller knows the
        #: image's (its tiles at the model's input: the tile reader then reads no more at a time
        #: than the model takes), else each predict()'s largest
        self._fixed_side = side
        self._side = 0
        if side is not None:
            self._capped(side)
        self.image_name = image_name
        self.predict_s = 0.0
        self._boxes = 0  # boxes returned so far, and those lying wholly outside their tile
        self._outside = 0
        self._specks = 0
        self._said_outside = False
        try:
            names = class_names_of(detector)
        except DetectorError:  # refused where the outputs are written; no count to compare with here
            names = None
        self._n_names = len(names) if names else None
        self._said_label = False
        #: moved to the CPU by these calls' out-of-memory fallback: kept here, not only on the
        #: detector, because a detector that takes no new attributes (a frozen dataclass,
        #: __slots__) cannot hold the mark, and a tile that still did not fit was then moved and
        #: retried for ever
        self._moved_to_cpu = False

    def predict(self, inputs: Sequence[np.ndarray]) -> list[Detections]:
        """Run the detector over ``inputs`` in chunks of the current batch size."""
        out: list[Detections] = []
        self._capped(self._fixed_side if self._fixed_side is not None
                     else max((max(np.shape(t)[:2]) for t in inputs), default=0))
        start = 0
        while start < len(inputs):
            chunk = list(inputs[start : start + self.batch_size])  # (a list, as the Detector protocol says)
            try:
                # no move while it runs; let go before any move below, and also when an interrupt
                # (Ctrl-C) comes just after enter() counted the call (see _MoveLock.leave)
                moves = self._lock.enter()
                t1 = time.perf_counter()
                res = self.detector.predict(chunk)
                self.predict_s += time.perf_counter() - t1
            except Exception as exc:
                host = isinstance(exc, MemoryError) and not is_oom(exc)
                if host and len(chunk) > 1:
                    oom = None  # (out of RAM: halved below, outside the handler, as a device's)
                elif not is_oom(exc):
                    if isinstance(exc, DetectorError):
                        raise
                    said = _text_of(exc)
                    if host:  # a bare MemoryError said "detector failed: MemoryError: " and no more
                        raise DetectorError(f"{self.image_name}: the detector ran out of memory (RAM; {type(exc).__name__}"
                                            f"{': ' + said if said else ''}) even with one tile per batch; try a "
                                            "smaller tile (--tile)") from exc
                    raise DetectorError(
                        f"{self.image_name}: detector failed: {type(exc).__name__}{': ' + said if said else ''}"
                    ) from exc
                else:
                    oom = oom_excerpt(exc) or ""  # its words only: the exception's traceback holds the call's tensors
            else:
                oom = host = None
            finally:
                self._lock.leave()
            if host and oom is None:
                # out of RAM (a MemoryError, not a device's out-of-memory) at several tiles: fewer
                # at a time, the detector left where it is (moving it off a GPU would not free RAM)
                self._fewer_at_a_time(len(chunk), "memory (RAM)")
                continue
            if oom is not None:
                # recovered outside the handler: its traceback held the failed call's tensors,
                # which the cache could then not give back
                self._recover_from_oom(len(chunk), oom, moves)
                continue  # retry the same chunk at the new batch size / device
            out.extend(self._validate(res, chunk))
            start += len(chunk)
        return out

    def _capped(self, side: int) -> None:
        """Take the batch size the detector came down to for tiles of ``side`` (if smaller)."""
        self._side = int(side)
        cap = self._lock.batch_cap.get(self._side)
        if cap is not None:
            self.batch_size = max(1, min(self.batch_size, cap))

    def _on_cpu(self) -> bool:
        """Whether the detector is on the CPU already: moved by these calls (unless another
        thread's image moved it back since, which clears the detector's mark), by another
        image's, or there all along (the built-in model on ONNX Runtime, a CPU detector, whose
        out of RAM is no GPU's, with nothing to move and --device cpu no advice)."""
        mark = getattr(self.detector, "_densedet_on_cpu", None)
        return ((self._moved_to_cpu and mark is not False) or bool(mark)
                or _runs_on_the_cpu(self.detector, self._run_device))

    def _recover_from_oom(self, chunk_len: int, said: str = "", moves: int | None = None) -> None:
        """Halve the batch, or at one tile move the detector to the CPU (or say it cannot).
        ``moves``: :attr:`_MoveLock.moves` when the call that ran out began."""
        torch = loaded_torch()
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if chunk_len > 1:
            self._fewer_at_a_time(chunk_len, "memory" if self._on_cpu() else "GPU memory")
            return
        if getattr(self.detector, "to", None) is None:
            self._to_cpu(torch, said)  # (nothing to move: it says so)
            return
        # the other threads' calls end first (or MOVE_WAIT_S passes); none begins till it is done
        with self._lock.moving(anyway=True) as others:
            if moves is not None and self._lock.moves != moves:
                return  # moved by another thread since this call began: retried where it is now
            self._to_cpu(torch, said, others or 0)

    def _fewer_at_a_time(self, chunk_len: int, what: str) -> None:
        """Halve the batch after a call of ``chunk_len`` tiles ran out of ``what``, and say so."""
        self.batch_size = max(1, (chunk_len + 1) // 2)  # 3 -> 2, not 1
        if self._lock is not _NO_LOCK:
            self._lock.batch_cap[self._side] = self.batch_size
            self._lock.cap_budget = self._lock.plan_budget
        warnings.warn(f"{self.image_name}: out of {what}; retrying with batch size {self.batch_size}",
                      RuntimeWarning, stacklevel=caller_level())

    def _to_cpu(self, torch: Any, said: str, others: int = 0) -> None:
        """Move the detector to the CPU (or say why not); ``others``: threads whose predict calls
        still ran after :data:`MOVE_WAIT_S` (moved under them, with a warning)."""
        on_cpu = self._on_cpu()
        to = getattr(self.detector, "to", None)
        if to is None or on_cpu:
            said = f" ({said})" if said else ""
            smaller = ("a smaller input size (--input-size) or tile (--tile)" if getattr(self.detector, "input_size", None)
                       else "a smaller tile (--tile)")
            cpu = "" if on_cpu else ", or the CPU (--device cpu)"
            raise DetectorError(f"{self.image_name}: out of memory even with one tile per batch{said}; "
                                f"try {smaller}{cpu}")
        was = getattr(self.detector, "device", None)
        precision = getattr(self.detector, "precision", None)
        if others:
            warnings.warn(f"{self.image_name}: moving the detector to the CPU under the predict calls of {others} "
                          f"other thread{'s' if others > 1 else ''}, still running after {MOVE_WAIT_S:g} s (a predict "
                          "that waits for engine calls it gave to other threads, or a very long call); a call "
                          "still running may fail", RuntimeWarning, stacklevel=caller_level())
        to("cpu")
        self._moved_to_cpu = True
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()  # the weights' memory, back to the card's other users
        now = getattr(self.detector, "precision", None)
        back = False
        try:
            self.detector._densedet_on_cpu = True  # type: ignore[attr-defined]
            # back to the GPU for the next image, unless the move changed how it computes (an
            # fp16 mmdet backbone is fp32 on the CPU: on the GPU it would need more memory still)
            if was is not None and str(was).startswith("cuda") and now == precision:
                self.detector._densedet_back_to = str(was)  # type: ignore[attr-defined]
                self.detector._densedet_cpu_for = self.image_key  # type: ignore[attr-defined]
                back = True
        except AttributeError:
            pass
        # said after the move: only then is it known whether the next image tries the GPU again
        # (the warning said "for this image" while an fp16 detector stayed on the CPU for good)
        if back:
            how = "for this image"
        elif now != precision:
            how = (f"for the rest of the run (the move made it {now} from {precision}, "
                   "which would need more GPU memory still)")
        else:
            how = "for the rest of the run"
        warnings.warn(
            f"{self.image_name}: out of GPU memory with one tile per batch; continuing on the CPU {how}",
            RuntimeWarning,
            stacklevel=caller_level(),
        )

    def _validate(self, res: object, chunk: Sequence[np.ndarray]) -> list[Detections]:
        who = f"{self.image_name}: detector {type(self.detector).__name__}"
        if not isinstance(res, (list, tuple)) or len(res) != len(chunk):
            got = f"{type(res).__name__} of length {len(res)}" if isinstance(res, (list, tuple)) else type(res).__name__
            raise DetectorError(f"{who} returned {got} for {len(chunk)} tiles; expected a list of Detections, one per tile")
        out = []
        for d in res:
            if not isinstance(d, Detections):
                raise DetectorError(f"{who} returned a {type(d).__name__} for a tile; expected Detections")
            if len(d) and int(d.labels.min()) < 0:
                raise DetectorError(f"{who} returned class label {int(d.labels.min())}; labels are class ids from 0")
            if self._n_names is not None and len(d) and int(d.labels.max()) >= self._n_names and not self._said_label:
                self._said_label = True  # once per image: the outputs name such a class by its number
                warnings.warn(f"{who} returned class label {int(d.labels.max())} but names {self._n_names} "
                              f"class{'es' if self._n_names > 1 else ''} (labels 0 to {self._n_names - 1}); "
                              "the outputs call it by its number", RuntimeWarning, stacklevel=caller_level())
            if len(d) and (float(d.scores.min()) < 0.0 or float(d.scores.max()) > 1.0):
                raise DetectorError(f"{who} returned scores from {float(d.scores.min()):g} to {float(d.scores.max()):g}; "
                                    "scores must be confidences in [0, 1] (thresholds and the merge rely on it)")
            out.append(d)
        self._check_frame(out, chunk, who)
        return out

    def _check_frame(self, dets: list[Detections], chunk: Sequence[np.ndarray], who: str) -> None:
        """Say once when most boxes (of at least :data:`FRAME_CHECK_MIN` so far) lie wholly
        outside the tile they were found in, or are under 2 px both ways: boxes in another frame
        (the model's input size, or normalised to 0..1) are clipped away or kept as specks, and
        the image would count nothing, or nonsense, silently."""
        for d, tile in zip(dets, chunk):
            if not len(d):
                continue
            h, w = tile.shape[:2]
            b = d.xyxy
            self._outside += int(np.count_nonzero((b[:, 0] >= w) | (b[:, 1] >= h) | (b[:, 2] <= 0) | (b[:, 3] <= 0)))
            self._specks += int(np.count_nonzero((b[:, 2] - b[:, 0] < 2.0) & (b[:, 3] - b[:, 1] < 2.0)))
            self._boxes += len(d)
        if self._said_outside or self._boxes < FRAME_CHECK_MIN:
            return
        if self._outside > self._boxes / 2:
            what = "wholly outside the tile they were found in (they are dropped)"
            n = self._outside
        elif self._specks > self._boxes / 2:
            what = "under 2 px wide and high (normalised 0..1 coordinates?)"
            n = self._specks
        else:
            return
        self._said_outside = True
        warnings.warn(f"{who} returned {n} of {self._boxes} boxes {what}: are its boxes in tile pixels?",
                      RuntimeWarning, stacklevel=caller_level())
