"""A pool of Ray actors that each build the detector once and keep it.

Work goes out one item per idle actor; an actor that dies (killed, out of memory, node lost)
is replaced and the item it held is handed to another actor, up to ``retries`` times. An
exception raised by the work itself is not retried: it is the item's result. When the cluster's
head itself stops answering, the pool raises :class:`ClusterLostError` instead of waiting for
replacements that can never start.

This module imports Ray; import it only when Ray is wanted (see :func:`.require_ray`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, replace
from typing import Any, Callable, Generic, Iterable, Iterator, Sequence, TypeVar

import ray
from ray.exceptions import ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from ..detector.registry import USER_MODULE_PREFIX
from ..errors import DensedetError, DetectorError, InvalidInputError, one_line, utf8_text

__all__ = ["ClusterLostError", "connect", "DetectorWorker", "plan_workers", "RayPool", "TaskResult",
           "worker_lost_errors"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exceptions that mean "the worker went away", not "the work failed": the item is retried.
worker_lost_errors: tuple[type[BaseException], ...] = (RayActorError, WorkerCrashedError, ObjectLostError)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ClusterLostError(DensedetError, ConnectionError):
    """The Ray cluster went away under a running pool (its head no longer answers)."""


def clip(text: str, limit: int) -> str:
    """``text`` without terminal colour codes, on one line, cut at a word boundary to at most
    ``limit`` characters (with "..." when cut)."""
    text = " ".join(_ANSI.sub("", text).split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 3]
    space = cut.rfind(" ")
    if text[len(cut)] != " " and space > limit // 2:  # (a cut that ends a word keeps it)
        cut = cut[:space]
    return cut.rstrip(" ,;:.") + "..."


def connect(address: str, *, num_cpus: int | None = None, num_gpus: int | None = None,
            log_to_driver: bool = True) -> bool:
    """Attach this process to Ray; return True when this call started a local instance.

    ``address``: ``"local"`` starts a new single-machine instance private to this process
    (``num_cpus`` / ``num_gpus`` default to what the machine has), even when a cluster runs
    here or ``RAY_ADDRESS`` is set; ``"auto"`` joins the cluster named by the ``RAY_ADDRESS``
    environment variable, or else the one ``ray start`` last started on this machine (never
    another process's private instance); anything else (``ray://head:10001``, ``head:6379``) is
    passed to :func:`ray.init`. When Ray is already initialised in this process it is used as it
    is and False is returned.

    Stop signals during the start-up (a few seconds for a local instance) are held back until it
    is over: Ray is then shut down again and the signal goes to the handler the caller had set
    (a Ctrl-C or SIGTERM that arrived in the middle of starting Ray's processes would otherwise
    end the program with Ray's own exit status and leave some of them running). A second
    Ctrl-C or SIGTERM does not wait. :func:`ray.init` installs its own SIGTERM handler; the
    caller's (or SIGTERM being ignored) is kept.
    """
    if ray.is_initialized():
        return False
    held = _HeldSignals()
    try:
        with held:
            return _init(address, num_cpus=num_cpus, num_gpus=num_gpus, log_to_driver=log_to_driver)
    finally:
        # a stop asked for while Ray was starting (whether it then started, joined or failed):
        # Ray goes (a joined cluster is only left), then the signal, which the stop wins over
        # a failed connection
        if held.signum is not None:
            if ray.is_initialized():
                ray.shutdown()
                _reassert_handlers()
            signal.raise_signal(held.signum)


@contextlib.contextmanager
def _utf8_entrypoint() -> Iterator[None]:
    """While Ray starts, the command line it records as this driver's entry point (for its
    dashboard: ``ray._private.utils.get_entrypoint_name``) with bytes that are not UTF-8 shown
    as ``\\xe9`` escapes: Ray hands that line to C++ as UTF-8, and a file name that is not UTF-8
    on the command line (``caf\\xe9.jpg`` from an old camera or archive) ended the whole batch
    with a UnicodeEncodeError inside ``ray.init``."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "get_entrypoint_name", None)
    if not callable(original):  # (another Ray version: nothing to mend)
        yield
        return

    def entrypoint() -> str:
        return utf8_text(original())

    utils.get_entrypoint_name = entrypoint
    try:
        yield
    finally:
        utils.get_entrypoint_name = original


def _init(address: str, *, num_cpus: int | None, num_gpus: int | None, log_to_driver: bool) -> bool:
    with _utf8_entrypoint():
        return _init_ray(address, num_cpus=num_cpus, num_gpus=num_gpus, log_to_driver=log_to_driver)


def _init_ray(address: str, *, num_cpus: int | None, num_gpus: int | None, log_to_driver: bool) -> bool:
    if address == "local":
        # the private cluster of this run takes Ray's token authentication by default; Ray's line
        # saying so (and how to opt out) is no news to someone who ran `densedet-tile batch`
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        try:
            ray.init(address="local", num_cpus=num_cpus, num_gpus=num_gpus, include_dashboard=False,
                     log_to_driver=log_to_driver, logging_level=logging.WARNING, **_short_temp_dir())
        except BaseException:  # (a second stop signal): what had started goes with it
            _shutdown_quietly()
            raise
        return True
    target = _auto_address() if address == "auto" else address
    _check_reachable(target)
    try:
        # "auto" itself goes to Ray when it names the cluster `ray start` recorded: Ray then
        # takes that cluster's token authentication as it would for `ray.init("auto")`
        ray.init(address="auto" if address == "auto" and not os.environ.get("RAY_ADDRESS") else target,
                 log_to_driver=log_to_driver, logging_level=logging.WARNING)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise DensedetError(f"cannot connect to the Ray cluster at {target!r}: {one_line(exc)}") from exc
    except BaseException:
        _shutdown_quietly()
        raise
    return False


#: The longest temporary folder a local Ray instance can live under: its sockets'
#: paths (``<tmp>/ray/session_<date>_<time>_<us>_<pid>/sockets/plasma_store``) must fit in the
#: 107 bytes of a Unix socket's name, about 67 of which Ray's own names take.
_RAY_TMP_MAX = 38


def _short_temp_dir() -> dict[str, str]:
    """``_temp_dir`` for :func:`ray.init` where the default would be too long for Ray's sockets
    (a ``TMPDIR`` such as a job scheduler's ``/scratch/<user>/job_<id>/tmp``, where a local
    instance failed with "AF_UNIX path length cannot exceed 107 bytes"): ``/tmp/ray``, as on a
    machine without one. Nothing when ``RAY_TMPDIR`` is set (the user chose) or the default fits."""
    import tempfile

    if os.environ.get("RAY_TMPDIR"):
        return {}
    base = tempfile.gettempdir()
    if len(os.fsencode(base)) <= _RAY_TMP_MAX or not os.path.isdir("/tmp") or not os.access("/tmp", os.W_OK | os.X_OK):
        return {}
    return {"_temp_dir": "/tmp/ray"}


def _shutdown_quietly() -> None:
    try:
        ray.shutdown()
    except Exception as exc:  # pragma: no cover - a half-started Ray that cannot even shut down
        log.debug("ray.shutdown after a stopped start-up failed: %s", exc)


def _put_detector(detector: Any) -> Any:
    """``ray.put(detector)``, for the workers. A detector whose class comes from a file given as
    ``path/to/file.py:FACTORY`` lives in a module only this process has (Ray's workers could not
    unpickle it: "No module named '_densedet_user_...'"), so that module goes by value. A
    detector that cannot be pickled at all (an open inference session) is one line saying what
    to pass instead."""
    import ray.cloudpickle as cloudpickle

    module = sys.modules.get(getattr(type(detector), "__module__", "") or "")
    if module is not None and module.__name__.startswith(USER_MODULE_PREFIX):
        cloudpickle.register_pickle_by_value(module)
    try:
        return ray.put(detector)
    except Exception as exc:  # a TypeError, PicklingError or the object's own error
        raise InvalidInputError(
            f"the detector ({type(detector).__name__}) cannot be sent to Ray's workers: {clip(one_line(exc), 200)}; "
            "give a DetectorSpec (e.g. DetectorSpec('default') or DetectorSpec('file.py:FACTORY')) so that each "
            "worker builds its own, or run without Ray (ray='none')") from exc


class _HeldSignals:
    """While Ray starts, in the main thread: the first SIGINT or SIGTERM is noted instead of
    acted on (``signum``; a second one raises KeyboardInterrupt at once), and on leaving the
    handlers in place before are back. Ray's start-up would otherwise act on it in two ways: it
    sets a SIGTERM handler that exits with status 15 (kept from being set here), and while the
    driver connects, native code installs its own crash handler, for which SIGTERM ends the
    process at once; the connection therefore runs with both signals blocked in this thread,
    and a signal sent meanwhile is noted when they are unblocked. Signals the caller ignores
    stay ignored. Elsewhere than the main thread nothing is changed (signals go to the main
    thread)."""

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        self._undo: list[Callable[[], None]] = []

    def __enter__(self) -> "_HeldSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in self._SIGNALS:
            current = signal.getsignal(sig)
            self._previous[sig] = current
            if current is not signal.SIG_IGN:
                signal.signal(sig, self._note)
        utils = getattr(getattr(ray, "_private", None), "utils", None)
        if callable(getattr(utils, "set_sigterm_handler", None)):
            self._swap(utils, "set_sigterm_handler", lambda handler: None)
        worker = getattr(getattr(ray, "_private", None), "worker", None)
        if callable(getattr(worker, "connect", None)):
            self._swap(worker, "connect", self._blocked(worker.connect))
        return self

    def _swap(self, owner: Any, name: str, replacement: Any) -> None:
        original = getattr(owner, name)
        setattr(owner, name, replacement)
        self._undo.append(lambda: setattr(owner, name, original))

    def _blocked(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            # (Windows has no signal masks: there Ray's start-up is not shielded)
            if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
                return fn(*args, **kwargs)
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, self._SIGNALS)
            try:
                return fn(*args, **kwargs)
            finally:
                _reassert_handlers()  # over the native handler, before a pending signal comes in
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        return call

    def _note(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            return
        raise KeyboardInterrupt

    def __exit__(self, *exc: Any) -> None:
        while self._undo:
            self._undo.pop()()
        for sig, handler in self._previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
        if self.signum is not None and self._previous.get(self.signum) is signal.SIG_IGN:
            self.signum = None


def _reassert_handlers() -> None:
    """Set SIGINT's and SIGTERM's Python handlers again: Ray's native code replaces them under
    Python (while connecting, and again when shut down) without Python knowing."""
    if threading.current_thread() is threading.main_thread():
        for sig in _HeldSignals._SIGNALS:
            handler = signal.getsignal(sig)
            if handler is not None:
                signal.signal(sig, handler)


def _auto_address() -> str:
    """What ``--ray auto`` joins: ``$RAY_ADDRESS``, else the address ``ray start`` recorded on
    this machine. Without either, Ray's own "auto" would take any Ray processes it finds running
    here, such as another run's private ``--ray local`` instance (which goes away when that run
    ends), and with a recorded address that no longer answers it would too: the caller checks
    that the address answers before handing "auto" to Ray."""
    env = os.environ.get("RAY_ADDRESS")
    if env:
        return env
    try:
        from ray._private.utils import read_ray_address
    except ImportError:  # pragma: no cover - a Ray that keeps it elsewhere: let Ray look
        return "auto"
    found = read_ray_address()
    if not found:
        raise DensedetError("--ray auto: RAY_ADDRESS is not set and no cluster was started on this machine with "
                            "'ray start'; start one, give its address, or use --ray local")
    return found


#: Seconds to wait for a TCP connection to a Ray head before saying it cannot be reached.
REACH_TIMEOUT_S = 10.0

#: Seconds the head of a running cluster must keep refusing connections before the pool
#: says the cluster is lost (a single failed connection may be a passing network hiccup).
LOST_AFTER_S = 5.0

#: How often (seconds) a pool that is waiting checks that the cluster's head still answers.
CHECK_EVERY_S = 5.0


def _split_hostport(target: str) -> tuple[str, int] | None:
    hostport = target[len("ray://"):] if target.startswith("ray://") else target
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    return host.strip("[]"), int(port)


def _check_reachable(target: str) -> None:
    """For a ``HOST:PORT`` or ``ray://HOST:PORT`` address, fail at once when nothing answers
    there (Ray itself keeps retrying for minutes); other addresses are left to Ray."""
    hp = _split_hostport(target)
    if hp is None:
        return
    try:
        socket.create_connection(hp, timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise DensedetError(f"cannot connect to the Ray cluster at {target!r}: nothing answers there "
                            f"({one_line(exc)})") from None


def _head_address() -> tuple[str, int] | None:
    """Host and port of the head (GCS) this driver is attached to, or None when it cannot be
    told (Ray Client: the driver talks to a proxy, which raises ConnectionError itself)."""
    try:
        if ray.util.client.ray.is_connected():
            return None
        return _split_hostport(str(ray.get_runtime_context().gcs_address))
    except Exception:  # an older or newer Ray without these: no check
        return None


def head_gone(head: tuple[str, int] | None, patience: float = LOST_AFTER_S) -> str | None:
    """Why the head at ``head`` is gone, or None as soon as it accepts a connection. The head
    is called gone only when it refused or timed out on every try for ``patience`` seconds."""
    if head is None:
        return None
    deadline = time.monotonic() + patience
    while True:
        try:
            socket.create_connection(head, timeout=min(2.0, max(0.1, patience))).close()
            return None
        except OSError as exc:
            why = one_line(exc)
        if time.monotonic() >= deadline:
            return f"its head at {head[0]}:{head[1]} stopped answering ({why})"
        time.sleep(0.5)


def plan_workers(workers: int | None, num_cpus: float, num_gpus: float, items: int | None = None) -> int:
    """How many workers of ``num_cpus`` CPUs and ``num_gpus`` GPUs to start on the connected cluster.

    Raises :class:`~densedet_tile.errors.DensedetError` when no node of the cluster has that
    much (Ray would wait for such a worker for ever). ``workers`` None means as many as the
    nodes hold (as many as the cluster's CPUs when a worker asks for nothing); more than the
    nodes hold is cut down to that, with a warning, which says how many start when the caller
    will start no more than its ``items``.
    """
    nodes = [n.get("Resources") or {} for n in ray.nodes() if n.get("Alive")]

    def fits(res: dict[str, float]) -> float:
        k = math.inf
        for name, need in (("CPU", num_cpus), ("GPU", num_gpus)):
            if need <= 0:
                continue
            have = float(res.get(name, 0.0))
            if name == "GPU" and need < 1:
                # Ray packs fractions of a GPU onto whole GPUs: 0.4 -> 2 per GPU, not 2 GPUs / 0.4
                k = min(k, math.floor(have + 1e-6) * math.floor(1 / need + 1e-6))
            else:
                k = min(k, math.floor(have / need + 1e-6))
        return k

    room = sum(fits(r) for r in nodes)
    if room < 1:
        most_cpu = max((float(r.get("CPU", 0)) for r in nodes), default=0.0)
        most_gpu = max((float(r.get("GPU", 0)) for r in nodes), default=0.0)
        raise DensedetError(
            f"no node of the Ray cluster can host a worker with {num_cpus:g} CPU(s) and {num_gpus:g} GPU(s) "
            f"(its {len(nodes)} node(s) have at most {most_cpu:g} CPU(s) and {most_gpu:g} GPU(s)); "
            "lower --cpus-per-worker / --gpus-per-worker or add such a node"
        )
    if workers is None:
        if math.isinf(room):
            return max(1, int(sum(float(r.get("CPU", 0)) for r in nodes)))
        return int(room)
    if workers > room:
        # (the caller starts no more workers than it has items: the warning says what starts)
        starting = int(room) if items is None else max(1, min(int(room), items))
        log.warning("--workers %d: the Ray cluster holds only %d worker(s) of %g CPU(s) and %g GPU(s); "
                    "starting %d", workers, room, num_cpus, num_gpus, starting)
        return int(room)
    return workers


class DetectorWorker:
    """The actor: builds its detector once (from a spec with ``build()`` or a ready object).

    Building never raises here; a failure is reported by :meth:`info` so that the driver can
    say why instead of showing an actor-death traceback. A detector that builds but declares a
    bad attribute (``score_thr = 1.5``) is such a failure too, as it is for a run in one process
    (:func:`~densedet_tile.runner.ready_detector`), not an error on every image.
    """

    def __init__(self, detector: Any, label: str) -> None:
        from ..detector.registry import DetectorSpec
        from ..runner import caught_warnings, ready_detector

        self.label = f"{label}@{socket.gethostname()}:{os.getpid()}"
        self.error: str | None = None
        self.detector: Any = None
        self._open: tuple[str, Any] | None = None  # (path, ImageSource) kept for --split chunks
        self._jobs: dict[Any, Any] = {}  # what fitting a job reads of it (_fit_key) -> the job as fitted
        self._fit_said: list[list[str]] = []  # warnings given while fitting jobs, not yet sent to the driver
        # what building says ("no checkpoint given, running with random weights") is held here
        # for info() to carry to the driver, which says it: this process's own lines stay in
        # Ray's log files
        with caught_warnings() as said:
            try:
                build = getattr(detector, "build", None)
                if callable(build) and not hasattr(detector, "predict") and not isinstance(detector, DetectorSpec):
                    detector = build()  # (a spec of the caller's own making)
                self.detector = ready_detector(detector)[0]
            except Exception as exc:  # reported by info()
                msg = one_line(exc)
                self.error = msg if isinstance(exc, DensedetError) else f"{type(exc).__name__}: {msg}"
        self.build_warnings: list[list[str]] = [list(w) for w in said]
        if self.error is None:
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
        """Who this worker is and what it runs; ``error`` is set when the detector failed to build,
        and ``warnings`` holds those given while it was built (``(kind, text)`` pairs, as
        :func:`~densedet_tile.runner.caught_warnings` keeps them; also when it failed)."""
        from ..detector.base import device_of
        from ..pipeline import describe_detector

        out: dict[str, Any] = {"worker": self.label, "error": self.error, "warnings": self.build_warnings}
        if self.error is None:
            out["model"] = describe_detector(self.detector)
            out["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
            out["auto_device"] = device_of(self.detector, "auto")
        return out

    def _fitted(self, job: Any) -> Any:
        """``job`` fitted to this worker's detector and GPU budget (``runner.build_detector``),
        worked out once per distinct thing the fitting reads (:func:`_fit_key`): a split image's
        tiles come with a job of the image's own scale, which made every image fit again on
        every worker. The warnings the fitting gives ("max_vram ... ignored on the CPU") are
        kept for the driver (:meth:`_take_fit_said`): this process's own lines stay in Ray's
        log files."""
        key = _fit_key(job)
        if key not in self._jobs:
            from ..runner import build_detector, caught_warnings

            said: list[tuple[str, str]] = []
            try:
                with caught_warnings() as said:
                    self._jobs[key] = build_detector(self.detector, job)[1]
            finally:  # (also those given before it failed)
                self._fit_said += [list(w) for w in said]
        fitted = self._jobs[key]
        if key[0] == "planned":
            return replace(job, tiling=fitted.tiling, run=fitted.run)
        # nothing planned: the fitting changed only the class names into ids
        return replace(job, run=replace(job.run, classes=fitted.run.classes))

    def _take_fit_said(self) -> list[list[str]]:
        """The warnings fitting jobs gave since the last call, for the driver to say."""
        said, self._fit_said = self._fit_said, []
        return said

    def process(self, inp: str, job: Any, out_dir: str, stem: str, name: str | None = None) -> dict[str, Any]:
        """Run one whole image through the engine and write its outputs (see ``runner.process_image``);
        ``fit_warnings`` holds what fitting the job to this worker said (not the image's own)."""
        from ..runner import process_image

        job = self._fitted(job)
        outcome = process_image(inp, self.detector, job, out_dir, stem=stem, name=name, capture_warnings=True)
        rec = outcome.as_dict()
        rec["worker"] = self.label
        rec["fit_warnings"] = self._take_fit_said()
        return rec

    def _image(self, path: str, max_pixels: int | None) -> Any:
        """The image at ``path``, kept open across calls for the same split image."""
        from ..tiler.readers import open_image

        if self._open is None or self._open[0] != path:
            self.close_image()
            self._open = (path, open_image(path, max_pixels=max_pixels))
        return self._open[1]

    def choose_scale(self, path: str, job: Any) -> tuple[Any, Any, dict[str, Any], list[list[str]]]:
        """The tiling and run specs that show the image at ``path`` at the right scale to this
        worker's detector (see :func:`densedet_tile.scale.choose_scale`), why, and what fitting
        the job to this worker said (for the driver, as :meth:`process`'s ``fit_warnings``)."""
        from ..scale import choose_scale

        job = self._fitted(job)
        choice = choose_scale(self._image(path, job.run.max_pixels), self.detector, job.tiling, job.run, job.merge)
        return choice.tiling, choice.run, choice.info, self._take_fit_said()

    def predict_tiles(self, path: str, tiles: Sequence[Any], job: Any) -> dict[str, Any]:
        """Tile-local detections for ``tiles`` of the image at ``path`` (part of a split image).

        Returns plain arrays (``xyxy`` (N, 4) float32, ``scores``, ``labels`` per tile, in the
        order given), the run spec as resolved here, the lowest score the detector returns, and timings;
        ``model``, the detector as it ran these tiles (after an out-of-memory fallback: on the
        CPU, which the description made when the worker started does not say), and ``warnings``,
        those given while they ran (``(kind, text)`` pairs, :func:`~densedet_tile.runner.caught_warnings`),
        for the driver to say: a worker's own never reach the image's record; ``fit_warnings``,
        what fitting the job to this worker said (:meth:`process`'s).
        """
        from ..pipeline import describe_detector, predict_tiles
        from ..runner import caught_warnings

        t0 = time.perf_counter()
        job = self._fitted(job)
        src = self._image(path, job.run.max_pixels)
        t_open = time.perf_counter() - t0
        with caught_warnings() as said:
            preds = predict_tiles(src, tiles, self.detector, job.run)
        return {
            "worker": self.label,
            "model": describe_detector(self.detector),
            "warnings": [list(w) for w in said],
            "fit_warnings": self._take_fit_said(),
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


def _fit_key(job: Any) -> tuple[Any, ...]:
    """What ``runner.build_detector`` reads of ``job``. A run with a batch size, or without
    ``max_vram``, is not planned: fitting it only turns its classes into ids and, with a budget,
    caps the allocator and says whether the budget applies, so its device, budget, batch size
    and classes are all that counts (a split image's own tiling and scale do not); otherwise
    the tiling and run, which the plan reads and may change."""
    run = job.run
    if run.batch_size is not None or run.max_vram is None:
        return ("given", run.device, run.max_vram, run.batch_size, run.classes)
    return ("planned", job.tiling, run)


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
    starting: Any = None  # ObjectRef of info() while the actor starts (a late one or a replacement)
    since: float = 0.0  # when it was asked to start


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
    :meth:`start` goes on as soon as some actors are up: those that are not up within
    ``join_grace`` seconds (or as long again as the first one took, if longer) join the work
    when the cluster makes room for them.
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
        join_grace: float = 10.0,
    ) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
        if not (num_cpus >= 0 and num_gpus >= 0):
            raise InvalidInputError(f"CPUs and GPUs per worker must be >= 0, got {num_cpus!r} and {num_gpus!r}")
        self.detector_ref = _put_detector(detector)
        self.workers = workers
        self.num_cpus = float(num_cpus)
        self.num_gpus = float(num_gpus)
        self.max_respawns = 2 * workers if max_respawns is None else max_respawns
        self.start_timeout = float(start_timeout)
        self.join_grace = float(join_grace)
        self.respawned = 0
        self.lost: str | None = None  # the error saying the cluster is gone, once it is
        self.slots: list[_Slot] = []
        self.info: list[dict[str, Any]] = []
        self._counter = 0
        self._draining: dict[Any, _Leftover] = {}  # items left running by an abandoned map()
        self._overdue: set[Any] = set()  # running items whose actor was killed for the time limit
        self._actor_cls = ray.remote(DetectorWorker)
        self._head = _head_address()
        self._said: set[str] = set()  # the workers' build and fit warnings said so far (each once)
        self._held: list[tuple[str, str]] = []  # fit warnings heard and not yet said (hold_warnings)

    # -- life cycle -------------------------------------------------------------------------
    def _spawn(self) -> _Slot:
        self._counter += 1
        label = f"w{self._counter}"
        handle = self._actor_cls.options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0, max_task_retries=0,
        ).remote(self.detector_ref, label)
        return _Slot(handle, label)

    def start(self) -> list[dict[str, Any]]:
        """Start the actors and wait until some have built their detector; return their ``info``.

        Waits up to ``start_timeout`` seconds for the first actor, then up to ``join_grace``
        seconds (or as long again as the first took) for the others; those still starting then
        join later (see :meth:`map`). Raises :class:`~densedet_tile.errors.DetectorError` when
        the detector cannot be built, :class:`~densedet_tile.errors.DensedetError` when no actor
        starts within ``start_timeout`` seconds, and :class:`ClusterLostError` when the cluster
        goes away meanwhile.
        """
        t0 = time.monotonic()
        self.slots = [self._spawn() for _ in range(self.workers)]
        by_ref: dict[Any, _Slot] = {}
        for slot in self.slots:
            slot.since = t0
            by_ref[slot.handle.info.remote()] = slot
        try:
            ready, rest = self._wait_up(list(by_ref), 1, t0 + self.start_timeout)
            if not ready:
                raise DensedetError(
                    f"none of the {self.workers} Ray worker(s) started within {self.start_timeout:.0f} s (building "
                    "the detector and one warm-up prediction); is the cluster busy with other work, and does the "
                    "detector finish a prediction?"
                )
            if rest:
                waited = time.monotonic() - t0
                ready_more, rest = self._wait_up(rest, len(rest), min(t0 + self.start_timeout,
                                                                      time.monotonic() + max(self.join_grace, waited)))
                ready += ready_more
            infos: dict[int, dict[str, Any]] = {}
            for ref in ready:
                slot = by_ref[ref]
                try:
                    inf = ray.get(ref)
                except worker_lost_errors as exc:
                    log.warning("worker %s died while starting (%s)", slot.label, clip(one_line(exc), 160))
                    self._drop(slot)
                    continue
                self._say_build_warnings(inf)
                if inf.get("error"):
                    raise DetectorError(f"the detector cannot be built on worker {inf['worker']}: {inf['error']}")
                slot.label = inf["worker"]
                infos[id(slot)] = inf
            if not infos:
                raise DensedetError(f"every Ray worker that started died at once ({len(ready)} of {self.workers})")
        except BaseException:
            self.close()
            raise
        for ref in rest:  # not up yet: map() hands them work once they are
            by_ref[ref].starting = ref
        if rest:
            log.warning("%d of %d Ray workers are up; the other %d join when the cluster has room for them",
                        len(infos), self.workers, len(rest))
        self.info = [infos[id(s)] for s in self.slots if id(s) in infos]
        return self.info

    def _say_build_warnings(self, inf: dict[str, Any]) -> None:
        """Say here the warnings a worker gave while it built its detector (as a run in one
        process says its own build's), each text once for the whole pool: every worker builds
        the same detector, and a replacement builds it again."""
        from ..runner import say_again

        fresh = []
        for kind, text in inf.get("warnings") or ():
            if str(text) not in self._said:
                self._said.add(str(text))
                fresh.append((str(kind), str(text)))
        say_again(fresh)

    def hold_warnings(self, said: Iterable[Sequence[str]] | None) -> None:
        """Keep for :meth:`say_held` the warnings a worker gave while it fitted a job to its
        detector (``fit_warnings`` of its results: "max_vram ... ignored on the CPU"), those
        not said already by this pool: a run in one process says them once, before its first
        image, and here every worker fits the job (a split image's tiles too)."""
        for kind, text in said or ():
            if str(text) not in self._said:
                self._said.add(str(text))
                self._held.append((str(kind), str(text)))

    def say_held(self) -> None:
        """Say the warnings :meth:`hold_warnings` kept (outside an image's capture, so that they
        are the run's, not an image's)."""
        from ..runner import say_again

        held, self._held = self._held, []
        say_again(held)

    def _wait_up(self, refs: list[Any], num: int, until: float) -> tuple[list[Any], list[Any]]:
        """``ray.wait`` for ``num`` of ``refs`` until the monotonic time ``until``, checking now and
        then that the cluster is still there."""
        ready: list[Any] = []
        rest = list(refs)
        while rest and len(ready) < num:
            left = until - time.monotonic()
            if left <= 0:
                break
            got, rest = ray.wait(rest, num_returns=min(num - len(ready), len(rest)),
                                 timeout=min(left, CHECK_EVERY_S))
            ready += got
            if not got:
                self._check_cluster()
        return ready, rest

    def _check_cluster(self) -> None:
        """Raise :class:`ClusterLostError` when the cluster's head no longer answers."""
        why = head_gone(self._head)
        if why is not None:
            self._lose(why)

    def _lose(self, why: str) -> None:
        self.lost = (f"the Ray cluster went away: {why}; the images finished so far are kept, run the same "
                     "command again when the cluster is back")
        raise ClusterLostError(self.lost)

    def raise_if_lost(self) -> None:
        """Raise :class:`ClusterLostError` again when the pool found the cluster gone (for callers
        whose own code caught it, as ``process_image`` does with a split image's errors)."""
        if self.lost is not None:
            raise ClusterLostError(self.lost)

    def close(self) -> None:
        """Kill every actor of the pool (when the cluster is lost they went with it)."""
        for s in self.slots if self.lost is None else ():
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
        actors for the next map. Actors still starting (late ones, replacements) get work once
        they are up. Raises :class:`ClusterLostError` when the cluster's head stops answering.
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
                wait_s = None
                if not inflight and not self._draining:  # only actors starting: each gets start_timeout
                    wait_s = max(0.0, min(s.since for s in starting.values()) + self.start_timeout - time.monotonic())
                live = [since[r] for r in inflight if r not in self._overdue]
                live += [left.since for left in self._draining.values() if not left.stopped]
                if timeout is not None and live:
                    left = max(0.05, min(live) + timeout - time.monotonic())
                    wait_s = left if wait_s is None else min(wait_s, left)
                if self._head is not None:  # wake up now and then to see that the cluster is still there
                    wait_s = CHECK_EVERY_S if wait_s is None else min(wait_s, CHECK_EVERY_S)
                try:
                    done, _ = ray.wait(waiting, num_returns=1, timeout=wait_s)
                except ConnectionError as exc:  # Ray Client: the connection to the cluster is gone
                    self._lose(clip(one_line(exc), 300))
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
                    if not inflight and not self._draining:  # only starting actors: drop those out of time
                        now = time.monotonic()
                        for slot in starting.values():
                            if now - slot.since >= self.start_timeout:
                                self._drop(slot)
                    self._check_cluster()
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
                            self._check_cluster()
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
            self._check_cluster()  # every worker goes when the cluster does: say that instead
            why = clip(one_line(exc), 300)
            if ref in self._overdue:
                why = "it ran past the time limit and its worker was stopped"
            log.warning("worker %s died (%s); %s", slot.label, clip(why, 160),
                        "retrying its item" if attempt <= retries else "giving up on its item")
            self._replace(slot)
            if attempt <= retries:
                pending.append((item, attempt + 1))
            else:
                yield TaskResult(item, False, error=f"its worker was lost {attempt} time(s); last: {why}",
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
        fresh.since = time.monotonic()
        self.slots.append(fresh)

    def _started(self, slot: _Slot, ref: Any) -> None:
        """A replacement actor answered: keep it if its detector built, else drop it."""
        slot.starting = None
        try:
            inf = ray.get(ref)
        except worker_lost_errors:
            self._check_cluster()
            self._drop(slot)
            return
        self._say_build_warnings(inf)
        if inf.get("error"):
            log.warning("replacement worker %s cannot build the detector: %s", inf.get("worker"), inf["error"])
            self._drop(slot)
            return
        slot.label = inf["worker"]
