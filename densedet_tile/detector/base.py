"""The one interface every detector implements."""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from ..types import CONFIRM_BAND, COUNT_BAND, Detections, check_device

__all__ = [
    "class_ids",
    "classes_of",
    "Detector",
    "engine_input_size",
    "tiles_resized_to",
    "input_size_of",
    "product_size_of",
    "photo_scale_of",
    "score_thr_of",
    "scale_thr_of",
    "box_end_offset_of",
    "score_floor_of",
    "score_floor_for",
    "resize_filter_of",
    "resolve_device",
    "device_of",
    "cuda_plausible",
    "check_tiles",
    "ort_session_options",
    "weights_there",
]


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a batch of RGB tiles into tile-local boxes.

    ``predict`` receives HxWx3 uint8 RGB arrays (tiles of one batch may differ in size) and
    returns one :class:`Detections` per tile, boxes in that tile's pixel frame. It keeps no
    state between calls.

    A detector may also carry an ``input_size`` attribute (int pixels, or None): the longer
    side of the images its model was trained on. The engine then resizes every tile to that
    side before ``predict`` and maps the boxes back, so products reach the model at the scale
    it knows. Without it tiles are passed at their native resolution.

    Optional declarations the engine honours (see :mod:`densedet_tile.scale`):
    ``resize_filter`` (``"area"`` or ``"bilinear"``: how tiles are resized for it; default
    area), ``product_size`` (typical product height in model-input pixels of its training,
    used by ``tile="auto"``) and ``photo_scale(width, height) -> float`` (the scale its
    training applied to a whole photo).
    ``score_thr`` (the score its boxes are served at when the run does not set one) and
    ``score_floor`` (the lowest score ``predict`` returns, when below ``score_thr``: the engine
    then counts the boxes just under the threshold, see ``RunSpec.count_band``).
    """

    # (a list, as the engine passes: a detector declaring list[np.ndarray] or any Sequence fits)
    def predict(self, tiles: list[np.ndarray]) -> list[Detections]:  # pragma: no cover
        ...


#: The side the engine resized the tiles of the current ``predict`` calls to (None: tiles as the
#: image gives them), per thread and task (a ContextVar).
_ENGINE_INPUT_SIZE: ContextVar[int | None] = ContextVar("densedet_tile_engine_input_size", default=None)


def engine_input_size() -> int | None:
    """The side the engine resized the tiles now being predicted to (its run's ``input_size``),
    or None outside the engine. An adapter whose model resizes images on its own (an mmdet
    test pipeline, torchvision's transform) keeps such tiles as they come, so that a run's
    ``--scale``, ``tile='auto'`` or ``RunSpec(input_size=)`` is not undone by the size the
    model was built with."""
    return _ENGINE_INPUT_SIZE.get()


@contextmanager
def tiles_resized_to(size: int | None) -> Iterator[None]:
    """Within the block, :func:`engine_input_size` is ``size`` (the engine around its calls)."""
    token = _ENGINE_INPUT_SIZE.set(None if size is None else int(size))
    try:
        yield
    finally:
        _ENGINE_INPUT_SIZE.reset(token)


def input_size_of(detector: object) -> int | None:
    """The detector's declared ``input_size`` (validated), or None when it declares none."""
    size = getattr(detector, "input_size", None)
    if size is None:
        return None
    from ..types import MAX_INPUT_SIZE, MIN_INPUT_SIZE

    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
        from ..errors import DetectorError

        raise DetectorError(f"detector input_size must be an int from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE} or None, "
                            f"got {size!r}")
    return int(size)


def class_names_of(detector: object) -> tuple[str, ...] | None:
    """The detector's declared ``class_names`` (validated), or None when it declares none."""
    from ..errors import DetectorError, InvalidInputError

    names = getattr(detector, "class_names", None)
    try:
        return class_names_option(names if names is None or isinstance(names, (str, bytes)) else list(names),
                                  f"detector {type(detector).__name__}")
    except InvalidInputError as exc:
        raise DetectorError(str(exc)) from None
    except TypeError:  # not iterable
        raise DetectorError(f"detector {type(detector).__name__}: class_names must be a list of names, "
                            f"got {type(names).__name__}") from None


def class_ids(classes: Sequence[int | str] | None, names: Sequence[str] | None, what: str) -> tuple[int, ...] | None:
    """``classes`` (ids or names) as sorted class ids of a detector ``what`` whose classes are
    ``names`` (None: it declares none, and only ids can be given); a name stands for every id
    it names. An unknown name, or an id past the declared classes, is an
    :class:`InvalidInputError` naming the classes there are."""
    from ..errors import InvalidInputError

    if classes is None:
        return None
    known = None if names is None else ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
    ids: set[int] = set()
    for c in classes:
        if isinstance(c, str):
            if names is not None and c in names:  # every id of that name (names may repeat)
                ids.update(k for k, n in enumerate(names) if n == c)
                continue
            if not (c.isdecimal() and c.isascii()):
                if names is None:
                    raise InvalidInputError(f"classes: {c!r} is a class name, but detector {what} declares no class "
                                            "names; give class ids (0, 1, ...)")
                raise InvalidInputError(f"classes: detector {what} has no class {c!r} (its classes: {known})")
            c = int(c)  # "2", not the name of a class: an id
        if names is not None and c >= len(names):
            raise InvalidInputError(f"classes: detector {what} has no class id {c} (ids 0 to {len(names) - 1}: {known})")
        ids.add(int(c))
    return tuple(sorted(ids))


def classes_of(detector: object, classes: Sequence[int | str] | None) -> tuple[int, ...] | None:
    """:func:`class_ids` of ``classes`` for ``detector`` (its declared ``class_names``)."""
    return class_ids(classes, class_names_of(detector), str(getattr(detector, "name", None) or type(detector).__name__))


def resize_filter_of(detector: object) -> str:
    """The filter tiles are resized with for ``detector`` (its ``resize_filter``, default area)."""
    from ..tiler.resize import RESIZE_FILTERS

    filt = getattr(detector, "resize_filter", None) or "area"
    if filt not in RESIZE_FILTERS:
        from ..errors import DetectorError

        raise DetectorError(f"detector resize_filter must be one of {', '.join(RESIZE_FILTERS)}, got {filt!r}")
    return str(filt)


def product_size_of(detector: object) -> float | None:
    """The detector's declared ``product_size`` (typical product height at its input, px), or None."""
    size = getattr(detector, "product_size", None)
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, float, np.integer, np.floating)) or not 2 <= size <= 1e4:
        from ..errors import DetectorError

        raise DetectorError(f"detector product_size must be a number of pixels in [2, 10000], got {size!r}")
    return float(size)


def _score_attr(detector: object, name: str) -> float | None:
    v = getattr(detector, name, None)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not 0.0 <= float(v) <= 1.0:
        from ..errors import DetectorError

        raise DetectorError(f"detector {name} must be a number in [0, 1], got {v!r}")
    return float(v)


def score_thr_of(detector: object) -> float | None:
    """The detector's declared ``score_thr`` (the score its boxes are served at), or None."""
    return _score_attr(detector, "score_thr")


def scale_thr_of(detector: object) -> float | None:
    """The detector's declared ``scale_thr``: the least score of the boxes the engine measures
    the products' size with to choose a scale (``tile="auto"``, the photo rule's checks), whatever
    threshold a run serves its boxes at; None where it declares none (then the run's)."""
    return _score_attr(detector, "scale_thr")


def box_end_offset_of(detector: object) -> float:
    """The pixels the detector's ``predict`` adds to every box's x2 and y2 in the frame of the
    array it is given (``box_end_offset``; 0 when it declares none): MMDetection 1.x reported
    its boxes so (width ``x2 - x1 + 1``), in the photo's pixels, and the engine keeps that
    offset in the tile's pixels when it scales boxes of a resized tile back."""
    v = getattr(detector, "box_end_offset", None)
    if v is None:
        return 0.0
    if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not 0.0 <= float(v) <= 1.0:
        from ..errors import DetectorError

        raise DetectorError(f"detector box_end_offset must be a number in [0, 1] (pixels), got {v!r}")
    return float(v)


def score_floor_of(detector: object) -> float | None:
    """The lowest score the detector's ``predict`` returns: its ``score_floor``, else its
    ``score_thr`` (it filters there), else None (not known)."""
    floor = _score_attr(detector, "score_floor")
    return floor if floor is not None else score_thr_of(detector)


def model_file(path: "str | os.PathLike[str]", kind: str) -> Path:
    """``path`` as a Path when it is a file, else :class:`InvalidInputError` naming it as the
    ``kind`` model (``onnx``, ``yolo``): a folder is called a folder, anything else missing."""
    from ..errors import InvalidInputError

    p = Path(path)
    if p.is_dir():
        raise InvalidInputError(f"{kind} model {os.fspath(path)}: is a folder, not a model file")
    if not p.is_file():
        raise InvalidInputError(f"{kind} model {os.fspath(path)}: no such file")
    return p


def weights_there(path: "str | os.PathLike[str]") -> None:
    """:class:`~densedet_tile.errors.DetectorError` naming the checkpoint ``path`` when it is a
    folder or not there, as the checkpoint readers say it, but before the packages reading it
    would need are looked for (a mistyped .pt was "needs the 'torch' package": a few GB to
    install to learn of a typo)."""
    from ..errors import DetectorError

    p = Path(path)
    if p.is_dir():
        raise DetectorError(f"checkpoint {os.fspath(path)}: is a folder, not a checkpoint file")
    if not p.is_file():
        raise DetectorError(f"checkpoint {os.fspath(path)}: no such file")


def say_nonfinite(detector: Any, values: np.ndarray) -> None:
    """Log once per detector when its raw output holds NaN or infinite numbers. The adapters
    leave such boxes out, so broken weights (an fp16 export that overflows) gave 0 products
    without a word."""
    if getattr(detector, "_said_nonfinite", False):
        return
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        return
    bad = int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        detector._said_nonfinite = True
        logging.getLogger("densedet_tile.detector").warning(
            "%s: the model's output holds %d NaN or infinite numbers (of %d); the boxes they belong to are "
            "left out: are its weights or its export broken (an fp16 export that overflows)?",
            getattr(detector, "name", "detector"), bad, values.size)


def refuse_nonfinite_weights(state: Any, source: str) -> None:
    """Raise :class:`~densedet_tile.errors.DetectorError` when a state dict (name -> torch
    tensor) holds NaN or infinite numbers: such weights load and find nothing (frameworks drop
    NaN boxes in their own post-processing), so every image reported 0 products without a word."""
    from ..errors import DetectorError

    bad = [k for k, v in state.items()
           if hasattr(v, "is_floating_point") and v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise DetectorError(f"{source}: {len(bad)} weight tensor(s) hold NaN or infinite values "
                            f"(e.g. {', '.join(bad[:3])}): the training run that made it diverged, or the file is "
                            "damaged")


def score_floor_for(score_thr: float, band: float = COUNT_BAND) -> float:
    """The lowest score a detector serving at ``score_thr`` returns, so the engine can count the
    boxes just below the threshold and merge that count as a run at its threshold would, with
    the boxes just below that as confirmers of cut products: ``score_thr - band -``
    :data:`~densedet_tile.types.CONFIRM_BAND`, but not below 0.05 (a detector run at 0.05 or
    less, as for AP evaluation, keeps its threshold: a count that low is noise). Returning
    boxes only down to ``score_thr - band`` (before 2026-12-06) left the upper end of the count
    range without those confirmers: a few boxes short of a run at that threshold."""
    thr = float(score_thr)
    return thr if thr <= 0.05 else max(thr - float(band) - CONFIRM_BAND, 0.05)


def check_declared(detector: object) -> None:
    """Check every attribute ``detector`` declares that does not depend on an image (input
    size, class names, resize filter, product size, score threshold, floor and scale threshold):
    a bad one is a detector that cannot be used, said once, rather than the same error for every image."""
    for of in (input_size_of, class_names_of, resize_filter_of, product_size_of, score_thr_of, score_floor_of,
               scale_thr_of, box_end_offset_of):
        of(detector)


def photo_scale_of(detector: object, width: int, height: int) -> float | None:
    """The scale the detector's ``photo_scale`` rule gives a ``width`` x ``height`` photo, or None."""
    from ..errors import DetectorError, one_line

    rule = getattr(detector, "photo_scale", None)
    if not callable(rule):
        return None
    try:
        s = rule(width, height)
    except Exception as exc:  # third-party code
        raise DetectorError(f"detector photo_scale({width}, {height}) failed: {type(exc).__name__}: {one_line(exc)}") from exc
    if s is None:
        return None
    if isinstance(s, bool) or not isinstance(s, (int, float, np.floating)) or not 0.01 <= float(s) <= 100:
        raise DetectorError(f"detector photo_scale({width}, {height}) must be a number in [0.01, 100], got {s!r}")
    return float(s)


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is usable, else ``"cpu"``; validate others.

    Accepts ``"auto"``, ``"cpu"``, ``"cuda"`` and ``"cuda:N"``. Asking for CUDA on a machine
    without it raises :class:`~densedet_tile.errors.InvalidInputError`; without torch installed,
    :class:`~densedet_tile.errors.MissingDependencyError` (the ``[torch]`` extra).

    ``"auto"`` imports torch only when it could answer yes: it is ``"cpu"`` when torch is not
    installed (``importlib.util.find_spec``, no import) or when no GPU driver is visible
    (:func:`cuda_plausible`); when torch is already imported, or installed and a driver is
    visible, it is ``torch.cuda.is_available()``; a torch that is installed but fails to import
    (CUDA libraries of another version) makes it ``"cpu"`` with a warning. ``"cpu"`` never
    imports torch.
    """
    from ..errors import InvalidInputError, MissingDependencyError

    dev = check_device(device)
    if dev == "cpu":
        return "cpu"
    torch = loaded_torch()
    if torch is None:
        if importlib.util.find_spec("torch") is None:
            if dev == "auto":
                return "cpu"
            raise MissingDependencyError(f"device {device!r}", "torch", "torch")
        if dev == "auto" and not cuda_plausible():
            return "cpu"
        try:
            import torch
        except (ImportError, OSError) as exc:  # installed but broken (CUDA libraries of another version)
            if dev != "auto":
                raise
            logging.getLogger("densedet_tile.detector").warning(
                "torch is installed but does not import (%s: %s); running on the CPU",
                type(exc).__name__, " ".join(str(exc).split())[:200])
            return "cpu"
    has_cuda = torch.cuda.is_available()
    if dev == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise InvalidInputError(f"device {device!r} was requested but CUDA is not available on this machine")
    if ":" in dev:  # cuda:N: a GPU this machine has (else whatever touched it first failed its own way)
        n = torch.cuda.device_count()
        if int(dev.split(":", 1)[1]) >= n:
            raise InvalidInputError(f"device {device!r} was requested but this machine has {n} GPU"
                                    f"{'' if n == 1 else 's'} (cuda:0{f' to cuda:{n - 1}' if n > 1 else ''})")
    return dev


def device_of(detector: object, requested: str = "auto") -> str:
    """The device a run reports and sizes its batches for, without importing any framework.

    For ``"auto"``: the detector's own ``device`` attribute when it has one (the built-in model
    and the adapters do), else ``"cuda"`` only when torch is already loaded in this process and
    sees a GPU, else ``"cpu"``. An explicit ``requested`` device is returned as it is, unless
    the detector says it runs elsewhere: a detector built for the CPU does not move to a GPU
    because the run asks for one, so that is refused
    (:class:`~densedet_tile.errors.InvalidInputError`) rather than reported wrongly; a GPU for
    a detector that names no device, where torch is loaded and does not see that GPU, is
    warned about.
    """
    from ..errors import InvalidInputError

    dev = check_device(requested)
    own = getattr(detector, "device", None)
    own = None if own is None else str(own).lower()
    if own is not None and not (own == "cpu" or own.startswith("cuda")):
        own = None
    if dev != "auto":
        moved = own == "cpu" and getattr(detector, "_densedet_on_cpu", False)  # by the out-of-memory fallback
        if moved:
            return own
        if own is not None and not _same_device(dev, own):
            raise InvalidInputError(
                f"device={dev!r} was asked for, but the detector was built for {own!r}; build it on that "
                f"device (load_detector(..., device={dev!r})) or leave device='auto'"
            )
        if own is None and dev.startswith("cuda"):
            # a detector that names no device: the run's is taken at its word (it may run on a
            # GPU torch does not know of: ONNX Runtime's, TensorRT's), but where torch is loaded
            # and does not see that GPU, said (an outside review: the settings said "cuda:3" on a
            # machine with none, without a word; a diff review: refusing it would stop a detector
            # on onnxruntime-gpu beside a CPU build of torch)
            torch = loaded_torch()
            if torch is not None:
                index = int(dev.partition(":")[2] or 0)
                if not torch.cuda.is_available() or index >= torch.cuda.device_count():
                    import warnings

                    from ..errors import caller_level

                    warnings.warn(
                        f"device={dev!r} was asked for a detector that names no device, and torch sees "
                        + (f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device")
                        + f": the run's settings say {dev!r} as asked (give the detector a 'device' attribute, or "
                        "leave device='auto')", RuntimeWarning, stacklevel=caller_level())
        return dev
    if own is not None:
        return own
    torch = loaded_torch()
    if torch is not None and torch.cuda.is_available():
        return "cuda"
    return "cpu"


def class_names_option(value: Any, who: str) -> tuple[str, ...] | None:
    """A ``class_names`` option as a tuple of names (None stays None). A single string is
    refused rather than split into its letters, and so is an empty list or a name that is not
    text (:class:`~densedet_tile.errors.InvalidInputError` naming ``who``)."""
    from ..errors import InvalidInputError

    if value is None:
        return None
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(f"{who}: class_names must be a list of names, got the single string {value!r} "
                                f"(for one class: [{value!r}])")
    try:
        names = tuple(value)
    except TypeError:
        raise InvalidInputError(f"{who}: class_names must be a list of names, got {type(value).__name__}") from None
    if not names or not all(isinstance(n, str) for n in names):
        raise InvalidInputError(f"{who}: class_names must be a non-empty list of strings, got {list(names)[:5]!r}")
    return names


def _same_device(a: str, b: str) -> bool:
    """``cuda`` and ``cuda:0`` are the same device; ``cuda:1`` is another."""
    norm = lambda d: "cuda:0" if d == "cuda" else d  # noqa: E731
    return norm(a) == norm(b)


def loaded_torch() -> Any:
    """The torch module where something has imported it, else None; never starts an import. Where
    another thread is importing torch just then, waits for it as ``import torch`` would: the
    half-built module in ``sys.modules`` has no ``cuda`` yet, and every request running
    meanwhile failed with "partially initialized module 'torch' has no attribute 'cuda'" (an
    outside review: a service warming up a torch model while it served requests)."""
    if "torch" not in sys.modules:
        return None
    try:
        import torch  # (the import lock: waits for an import in progress in another thread)
    except Exception:  # (that import failed: as if there were no torch)
        return None
    return torch


def cuda_plausible() -> bool:
    """Whether a CUDA (or ROCm) GPU could be usable, judged without importing torch.

    False when ``CUDA_VISIBLE_DEVICES`` hides every device (empty or ``-1``), on macOS, and on
    Linux when there is neither an NVIDIA driver (``/proc/driver/nvidia/version``,
    ``/dev/nvidia0``...), nor ROCm's ``/dev/kfd``, nor WSL's ``/dev/dxg``. Elsewhere (Windows,
    other systems) True: torch is asked.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return False
    if sys.platform == "darwin":
        return False
    if sys.platform.startswith("linux"):
        if os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/kfd") or os.path.exists("/dev/dxg"):
            return True
        try:
            return any(n.startswith("nvidia") and n[6:].isdigit() for n in os.listdir("/dev"))
        except OSError:
            return True
    return True


def check_tiles(tiles: Sequence[np.ndarray], *, allow_empty: bool = False) -> list[np.ndarray]:
    """Validate a batch handed to ``predict``: each an HxWx3 uint8 RGB array.

    Returns the tiles as a list. Raises :class:`~densedet_tile.errors.InvalidInputError` naming
    the first bad tile; a tile with no pixels is refused unless ``allow_empty``.
    """
    from ..errors import InvalidInputError

    tiles = list(tiles)
    for i, t in enumerate(tiles):
        if not isinstance(t, np.ndarray) or t.dtype != np.uint8 or t.ndim != 3 or t.shape[2] != 3:
            got = f"{t.dtype} {t.shape}" if isinstance(t, np.ndarray) else type(t).__name__
            raise InvalidInputError(f"tile {i}: expected an HxWx3 uint8 RGB array, got {got}")
        if not allow_empty and (t.shape[0] < 1 or t.shape[1] < 1):
            raise InvalidInputError(f"tile {i}: empty tile of shape {t.shape}")
    return tiles


#: Set by the ``densedet-tile`` command, which owns its process: ONNX Runtime's process-wide
#: logger is then set to errors only when a session is built. Off for library use.
QUIET_ONNXRUNTIME_PROCESS = False

#: Whether a session built under the command turned ONNX Runtime's process-wide logger down
#: (:func:`restore_onnxruntime_logging` turns it back when the command returns to a program).
_ORT_QUIETED = False


def restore_onnxruntime_logging() -> None:
    """Give ONNX Runtime's process-wide logger back its default level (warnings) if the command
    turned it down; ``densedet_tile.cli.main`` calls it on return, so that a program calling it
    keeps its own ONNX Runtime warnings afterwards."""
    global _ORT_QUIETED
    if not _ORT_QUIETED:
        return
    _ORT_QUIETED = False
    ort = sys.modules.get("onnxruntime")
    set_severity = getattr(ort, "set_default_logger_severity", None)
    if callable(set_severity):
        set_severity(2)  # ONNX Runtime's default (it has no getter to remember another by)


_STDERR_LOCK = threading.Lock()


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Under the command (:data:`QUIET_ONNXRUNTIME_PROCESS`), send what native code writes to
    standard error during the block to /dev/null: LiteRT prints "INFO: Created TensorFlow Lite
    XNNPACK delegate for CPU." whatever its caller asks (under ``-q`` too). Python's own errors
    are exceptions and still reach the user. Off for library use, where the process is the caller's."""
    if not QUIET_ONNXRUNTIME_PROCESS:
        yield
        return
    with _STDERR_LOCK:  # (two threads swapping descriptor 2 would leave it pointing at /dev/null)
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError, AttributeError):  # no usable standard error: nothing to quiet
            yield
            return
        try:
            with open(os.devnull, "wb") as null:
                os.dup2(null.fileno(), 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


#: The most CPU threads a detector or a training run may be given: runtimes take a C int (a
#: larger number overflowed inside them, with their own error or none named), and no machine
#: has this many cores.
MAX_THREADS = 1024


def check_threads(threads: Any, who: str = "") -> int | None:
    """``threads`` as an int (None stays None), or :class:`InvalidInputError` naming ``who``:
    a positive int (not True) of at most :data:`MAX_THREADS`."""
    from ..errors import InvalidInputError

    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or not 1 <= threads <= MAX_THREADS:
        raise InvalidInputError(f"{who}threads must be a positive int of at most {MAX_THREADS}, got {threads!r}")
    return int(threads)


def ort_session_options(ort: Any, threads: int | None = None) -> Any:
    """ONNX Runtime session options as every adapter here builds them: ``threads`` intra-op
    threads (None: ONNX Runtime's own choice), quiet logging (under the command also the
    process-wide default logger: :data:`QUIET_ONNXRUNTIME_PROCESS`), and worker threads that sleep
    between runs instead of spinning. The engine runs a network call, then decodes, splits and
    merges on the main thread while the next tiles are resized on another: spinning workers
    kept a core busy through all of it (a 60-tile panorama took 5.3 CPU-s instead of 3.0, and
    its wall time grew as much on two cores; BENCHMARKS.md, "ONNX Runtime threads")."""
    # ONNX Runtime's own start-up warnings (1.23+ prints "GPU device discovery failed" on VMs
    # with a framebuffer card) would break the command's one-line promises: under the command
    # (which owns its process) its process-wide logger says errors only. A library caller's
    # own ONNX Runtime logging is left as it set it.
    global _ORT_QUIETED
    set_severity = getattr(ort, "set_default_logger_severity", None)
    if QUIET_ONNXRUNTIME_PROCESS and callable(set_severity):
        set_severity(3)
        _ORT_QUIETED = True
    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts
