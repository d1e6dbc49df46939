"""A pool of Ray actors that each build the detector once and keep it.

Work goes out one item per idle actor; an actor that dies (killed, out of memory, node lost)
is replaced and the item it held is handed to another actor, up to ``retries`` times. An
exception raised by the work itself is not retried: it is the item's result.

This module imports Ray; import it only when Ray is wanted (see :func:`.require_ray`).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
from dataclasses import dataclass
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from ..errors import DensedetError, DetectorError, InvalidInputError, one_line

__all__ = ["connect", "DetectorWorker", "RayPool", "TaskResult", "worker_lost_errors"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exceptions that mean "the worker went away", not "the work failed": the item is retried.
worker_lost_errors: tuple[type[BaseException], ...] = (RayActorError, WorkerCrashedError, ObjectLostError)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def connect(address: str, *, num_cpus: int | None = None, num_gpus: int | None = None,
            log_to_driver: bool = True) -> bool:
    """Attach this process to Ray; return True when this call started a local instance.

    ``address``: ``"local"`` starts an embedded single-machine instance (``num_cpus`` /
    ``num_gpus`` default to what the machine has); ``"auto"`` joins the cluster named by the
    ``RAY_ADDRESS`` environment variable, or else the one already running on this machine;
    anything else (``ray://head:10001``, ``head:6379``) is passed to :func:`ray.init`. When
    Ray is already initialised in this process it is used as it is and False is returned.
    """
    if ray.is_initialized():
        return False
    if address == "local":
        ray.init(num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                 log_to_driver=log_to_driver, logging_level=logging.WARNING)
        return True
    target = (os.environ.get("RAY_ADDRESS") or "auto") if address == "auto" else address
    _check_reachable(target)
    try:
        ray.init(address=target, log_to_driver=log_to_driver, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DensedetError(f"cannot connect to the Ray cluster at {target!r}: {one_line(exc)}") from exc
    return False


#: Seconds to wait for a TCP connection to a Ray head before saying it cannot be reached.
REACH_TIMEOUT_S = 10.0


def _check_reachable(target: str) -> None:
    """For a ``HOST:PORT`` or ``ray://HOST:PORT`` address, fail at once when nothing answers
    there (Ray itself keeps retrying for minutes); other addresses are left to Ray."""
    hostport = target[len("ray://"):] if target.startswith("ray://") else target
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise DensedetError(f"cannot connect to the Ray cluster at {target!r}: nothing answers there "
                            f"({one_line(exc)})") from None


class DetectorWorker:
    """The actor: builds its detector once (from a spec with ``build()`` or a ready object).

    Building never raises here; a failure is reported by :meth:`info` so that the driver can
    say why instead of showing an actor-death traceback.
    """

    def __init__(self, detector: Any, label: str) -> None:
        self.label = f"{label}@{socket.gethostname()}:{os.getpid()}"
        self.error: str | None = None
        self.detector: Any = None
        self._open: tuple[str, Any] | None = None  # (path, ImageSource) kept for --split chunks
        self._jobs: dict[Any, Any] = {}  # job as given -> job fitted to this worker
        try:
            build = getattr(detector, "build", None)
            self.detector = build() if callable(build) and not hasattr(detector, "predict") else detector
        except Exception as exc:  # reported by info()
            msg = one_line(exc)
            self.error = msg if isinstance(exc, DensedetError) else f"{type(exc).__name__}: {msg}"
            return
        self._warm_up()

    def _warm_up(self) -> None:
        """One prediction on a blank tile, so the first real image does not pay the framework's
        first-call set-up (kernel selection, allocator growth): that is start-up, not work."""
        import numpy as np

        size = getattr(self.detector, "input_size", None) or 512
        try:
            self.detector.predict([np.zeros((int(size), int(size), 3), np.uint8)])
        except Exception:  # a detector that dislikes blank tiles shows its errors on real ones
            log.debug("warm-up prediction failed", exc_info=True)

    def info(self) -> dict[str, Any]:
        """Who this worker is and what it runs; ``error`` is set when the detector failed to build."""
        from ..detector.base import device_of
        from ..pipeline import describe_detector

        out: dict[str, Any] = {"worker": self.label, "error": self.error}
        if self.error is None:
            out["model"] = describe_detector(self.detector)
            out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
            out["auto_device"] = device_of(self.detector, "auto")
        return out

    def _fitted(self, job: Any) -> Any:
        """``job`` fitted to this worker's detector and GPU budget, worked out once per job."""
        if job not in self._jobs:
            from ..runner import build_detector

            self._jobs[job] = build_detector(self.detector, job)[1]
        return self._jobs[job]

    def process(self, inp: str, job: Any, out_dir: str, stem: str) -> dict[str, Any]:
        """Run one whole image through the engine and write its outputs (see ``runner.process_image``)."""
        from ..runner import process_image

        outcome = process_image(inp, self.detector, self._fitted(job), out_dir, stem=stem)
        rec = outcome.as_dict()
        rec["worker"] = self.label
        return rec

    def _image(self, path: str, max_pixels: int | None) -> Any:
        """The image at ``path``, kept open across calls for the same split image."""
        from ..tiler.readers import open_image

        if self._open is None or self._open[0] != path:
            self.close_image()
            self._open = (path, open_image(path, max_pixels=max_pixels))
        return self._open[1]

    def choose_scale(self, path: str, job: Any) -> tuple[Any, Any, dict[str, Any]]:
        """The tiling and run specs that show the image at ``path`` at the right scale to this
        worker's detector (see :func:`densedet_tile.scale.choose_scale`), and why."""
        from ..scale import choose_scale

        job = self._fitted(job)
        choice = choose_scale(self._image(path, job.run.max_pixels), self.detector, job.tiling, job.run)
        return choice.tiling, choice.run, choice.info

    def predict_tiles(self, path: str, tiles: Sequence[Any], job: Any) -> dict[str, Any]:
        """Tile-local detections for ``tiles`` of the image at ``path`` (part of a split image).

        Returns plain arrays (``xyxy`` (N, 4) float32, ``scores``, ``labels`` per tile, in the
        order given), the run spec as resolved here, the lowest score the detector returns, and timings.
        """
        from ..pipeline import predict_tiles

        t0 = time.perf_counter()
        job = self._fitted(job)
        src = self._image(path, job.run.max_pixels)
        t_open = time.perf_counter() - t0
        preds = predict_tiles(src, tiles, self.detector, job.run)
        return {
            "worker": self.label,
            "xyxy": [d.xyxy for d in preds.dets],
            "scores": [d.scores for d in preds.dets],
            "labels": [d.labels for d in preds.dets],
            "run": preds.run,
            "score_floor": preds.score_floor,
            "final_batch_size": preds.final_batch_size,
            "timings": {"read_s": preds.read_s + t_open, "resize_s": preds.resize_s, "predict_s": preds.predict_s},
            "seconds": time.perf_counter() - t0,
        }

    def close_image(self) -> None:
        """Forget the image kept open for split work."""
        if self._open is not None:
            self._open[1].close()
            self._open = None


@dataclass(frozen=True)
class TaskResult(Generic[T]):
    """The end of one item: ``value`` when ``ok``, else ``error`` (one line)."""

    item: T
    ok: bool
    value: Any = None
    error: str | None = None
    attempts: int = 1
    worker: str | None = None


@dataclass
class _Slot:
    handle: Any
    label: str
    busy: bool = False
    starting: Any = None  # ObjectRef of info() while a replacement actor starts


@dataclass
class _Leftover:
    """An item still running on ``slot`` when its map() was left: since when, and whether its
    actor was already stopped for the time limit."""

    slot: _Slot
    since: float
    stopped: bool = False


class RayPool:
    """``workers`` :class:`DetectorWorker` actors, each with ``num_cpus`` CPUs and ``num_gpus`` GPUs.

    Use as a context manager (actors are killed on exit). ``max_respawns`` bounds how many
    replacement actors may be started over the pool's life for actors that died;
    ``start_timeout`` is how long to wait for actors to start (and build the detector) when
    no other work is running (a cluster without room for them would otherwise wait forever).
    """

    def __init__(
        self,
        detector: Any,
        *,
        workers: int,
        num_cpus: float = 1.0,
        num_gpus: float = 0.0,
        max_respawns: int | None = None,
        start_timeout: float = 600.0,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
        if not (num_cpus >= 0 and num_gpus >= 0):
            raise InvalidInputError(f"CPUs and GPUs per worker must be >= 0, got {num_cpus!r} and {num_gpus!r}")
        self.detector_ref = ray.put(detector)
        self.workers = workers
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.max_respawns = 2 * workers if max_respawns is None else max_respawns
        self.start_timeout = float(start_timeout)
        self.respawned = 0
        self.slots: list[_Slot] = []
        self.info: list[dict[str, Any]] = []
        self._counter = 0
        self._draining: dict[Any, _Leftover] = {}  # items left running by an abandoned map()
        self._overdue: set[Any] = set()  # running items whose actor was killed for the time limit
        self._actor_cls = ray.remote(DetectorWorker)

    # -- life cycle -------------------------------------------------------------------------
    def _spawn(self) -> _Slot:
        self._counter += 1
        label = f"w{self._counter}"
        handle = self._actor_cls.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0,
        ).remote(self.detector_ref, label)
        return _Slot(handle, label)

    def start(self) -> list[dict[str, Any]]:
        """Start the actors and wait until each has built its detector; return their ``info``.

        Raises :class:`~densedet_tile.errors.DetectorError` when the detector cannot be built,
        and :class:`~densedet_tile.errors.DensedetError` when the actors do not start within
        ``start_timeout`` seconds (the cluster lacks the CPUs/GPUs asked for).
        """
        self.slots = [self._spawn() for _ in range(self.workers)]
        refs = [s.handle.info.remote() for s in self.slots]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.start_timeout)
        if len(ready) < len(refs):
            self.close()
            raise DensedetError(
                f"{len(refs) - len(ready)} of {len(refs)} Ray workers did not start within {self.start_timeout:.0f} s "
                "(building the detector and one warm-up prediction); does the cluster have "
                f"{self.num_cpus:g} CPU(s) and {self.num_gpus:g} GPU(s) free for each, and does the detector finish "
                "a prediction?"
            )
        infos = ray.get(refs)
        for slot, inf in zip(self.slots, infos):
            slot.label = inf["worker"]
        bad = next((i for i in infos if i.get("error")), None)
        if bad is not None:
            self.close()
            raise DetectorError(f"the detector cannot be built on worker {bad['worker']}: {bad['error']}")
        self.info = infos
        return infos

    def close(self) -> None:
        """Kill every actor of the pool."""
        for s in self.slots:
            try:
                ray.kill(s.handle)
            except Exception:  # pragma: no cover - already gone
                pass
        self.slots = []
        self._draining.clear()

    def __enter__(self) -> "RayPool":
        if not self.slots:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def model(self) -> dict[str, Any]:
        """The detector description reported by the first worker."""
        return dict(self.info[0].get("model", {})) if self.info else {}

    # -- work -------------------------------------------------------------------------------
    def map(
        self,
        items: Iterable[T],
        submit: Callable[[Any, T], Any],
        *,
        retries: int = 2,
        on_submit: Callable[[Any, T], None] | None = None,
        timeout: float | None = None,
    ) -> Iterator[TaskResult[T]]:
        """Run ``submit(actor_handle, item) -> ObjectRef`` for every item; yield results as they end.

        Each actor holds at most one item at a time. When the actor holding an item dies, the
        actor is replaced (within ``max_respawns``) and the item is queued again, at most
        ``retries`` times. ``on_submit(actor_handle, item)`` is called after each hand-out
        (monitoring; tests use it to kill an actor mid-item). An item still running after
        ``timeout`` seconds has its actor killed, and counts as a worker death (retried). Leaving
        the loop early is safe: items still running finish in the background and free their
        actors for the next map.
        """
        pending: list[tuple[T, int]] = [(it, 1) for it in items]
        pending.reverse()  # pop() from the end keeps the input order
        inflight: dict[Any, tuple[T, int, _Slot]] = {}
        since: dict[Any, float] = {}
        self._overdue: set[Any] = set()
        try:
            while pending or inflight:
                for slot in self.slots:
                    if not pending:
                        break
                    if slot.busy or slot.starting is not None:
                        continue
                    item, attempt = pending.pop()
                    ref = submit(slot.handle, item)
                    slot.busy = True
                    inflight[ref] = (item, attempt, slot)
                    since[ref] = time.monotonic()
                    if on_submit is not None:
                        on_submit(slot.handle, item)
                starting = {s.starting: s for s in self.slots if s.starting is not None}
                if not inflight and not self._draining and not starting:
                    # nothing running and nothing could be handed out: no live workers are left
                    while pending:
                        item, attempt = pending.pop()
                        yield TaskResult(item, False, error="no live Ray workers left to run it", attempts=attempt - 1)
                    return
                waiting = [*inflight, *self._draining, *starting]
                wait_s = None if (inflight or self._draining) else self.start_timeout
                live = [since[r] for r in inflight if r not in self._overdue]
                live += [left.since for left in self._draining.values() if not left.stopped]
                if timeout is not None and live:
                    left = max(0.05, min(live) + timeout - time.monotonic())
                    wait_s = left if wait_s is None else min(wait_s, left)
                done, _ = ray.wait(waiting, num_returns=1, timeout=wait_s)
                if timeout is not None:
                    now = time.monotonic()
                    for r, (_, _, slot) in inflight.items():
                        if r not in self._overdue and r not in done and now - since[r] >= timeout:
                            self._overdue.add(r)  # its result becomes an actor death: retried
                            ray.kill(slot.handle)
                    for r, left in self._draining.items():  # left over from an abandoned map: stopped too
                        if not left.stopped and r not in done and now - left.since >= timeout:
                            left.stopped = True
                            ray.kill(left.slot.handle)
                if not done:
                    if not inflight and not self._draining:  # only starting actors, none came up in time
                        for slot in starting.values():
                            self._drop(slot)
                    continue
                for ref in done:
                    if ref in starting:
                        self._started(starting[ref], ref)
                    elif ref in self._draining:
                        slot = self._draining.pop(ref).slot
                        try:
                            ray.get(ref)
                            slot.busy = False
                        except worker_lost_errors:
                            self._replace(slot)
                        except RayTaskError:
                            slot.busy = False
                    else:
                        yield from self._finish(ref, inflight, pending, retries)
        finally:
            for ref, (_, _, slot) in inflight.items():
                self._draining[ref] = _Leftover(slot, since.get(ref, time.monotonic()), ref in self._overdue)

    def _finish(self, ref: Any, inflight: dict[Any, tuple[T, int, _Slot]], pending: list[tuple[T, int]],
                retries: int) -> Iterator[TaskResult[T]]:
        item, attempt, slot = inflight.pop(ref)
        try:
            value = ray.get(ref)
        except worker_lost_errors as exc:
            why = _ANSI.sub("", one_line(exc))
            if ref in self._overdue:
                why = "it ran past the time limit and its worker was stopped"
            log.warning("worker %s died (%s); %s", slot.label, why[:200],
                        "retrying its item" if attempt <= retries else "giving up on its item")
            self._replace(slot)
            if attempt <= retries:
                pending.append((item, attempt + 1))
            else:
                yield TaskResult(item, False, error=f"its worker was lost {attempt} time(s); last: {why[:300]}",
                                 attempts=attempt, worker=slot.label)
            return
        except RayTaskError as exc:
            cause = exc.cause if isinstance(exc.cause, BaseException) else exc
            msg = _ANSI.sub("", one_line(cause))
            if not isinstance(cause, (DensedetError, OSError)):
                msg = f"{type(cause).__name__}: {msg}"
            slot.busy = False
            yield TaskResult(item, False, error=msg, attempts=attempt, worker=slot.label)
            return
        slot.busy = False
        yield TaskResult(item, True, value=value, attempts=attempt, worker=slot.label)

    def _drop(self, slot: _Slot) -> None:
        try:
            ray.kill(slot.handle)
        except Exception:  # pragma: no cover - already gone
            pass
        self.slots = [s for s in self.slots if s is not slot]

    def _replace(self, dead: _Slot) -> None:
        """Drop a dead actor and, within the respawn budget, start a fresh one (without waiting)."""
        self._drop(dead)
        if self.respawned >= self.max_respawns:
            return
        self.respawned += 1
        fresh = self._spawn()
        fresh.starting = fresh.handle.info.remote()
        self.slots.append(fresh)

    def _started(self, slot: _Slot, ref: Any) -> None:
        """A replacement actor answered: keep it if its detector built, else drop it."""
        slot.starting = None
        try:
            inf = ray.get(ref)
        except worker_lost_errors:
            self._drop(slot)
            return
        if inf.get("error"):
            log.warning("replacement worker %s cannot build the detector: %s", inf.get("worker"), inf["error"])
            self._drop(slot)
            return
        slot.label = inf["worker"]
