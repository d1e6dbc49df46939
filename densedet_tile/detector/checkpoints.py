"""Load PyTorch / OpenMMLab checkpoints with ``weights_only=True``.

torch >= 2.6 refuses to unpickle anything but tensors and plain containers unless the type is
allow-listed. OpenMMLab checkpoints also carry numpy arrays and scalars in their ``meta`` and
``message_hub`` entries. We allow-list exactly those types (by the names numpy 1.x and 2.x
pickle them under) for the duration of one load, never turning the safety off; anything else
is reported by name so the user can see what the file holds.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import types
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Iterable, Sequence

from ..errors import DetectorError

__all__ = ["numpy_safe_globals", "restricted_getattr", "load_checkpoint", "state_dict_of"]

SafeGlobal = Callable[..., Any] | tuple[Callable[..., Any], str]


@contextlib.contextmanager
def quiet_pickle_notes() -> Iterator[None]:
    """Around ``torch.load``: its two-line note on a pickle of another protocol than its own
    (a file that is no checkpoint, or one pickled by hand) is left out, so that the one-line
    error that follows, or the load, is all that is said (an outside review)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected pickle protocol", category=UserWarning)
        yield


def numpy_safe_globals() -> list[SafeGlobal]:
    """The numpy callables a pickled array, dtype or scalar refers to.

    Each is listed under its numpy 2 name and, as a ``(callable, name)`` pair, under the
    ``numpy.core`` name that checkpoints written with numpy 1.x use.
    """
    import numpy as np

    try:  # numpy 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    entries: list[SafeGlobal] = [np.ndarray, np.dtype, ma._reconstruct, ma.scalar]
    entries += [
        (ma._reconstruct, "numpy.core.multiarray._reconstruct"),
        (ma.scalar, "numpy.core.multiarray.scalar"),
        (ma._reconstruct, "numpy._core.multiarray._reconstruct"),
        (ma.scalar, "numpy._core.multiarray.scalar"),
    ]
    # numpy >= 1.25 may pickle a dtype by its class (numpy.dtypes.Float32DType, ...).
    dtype_classes = {type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDGUSVOMm"}
    entries += sorted(
        (c for c in dtype_classes if c is not np.dtype), key=lambda c: c.__qualname__
    )
    return entries


def restricted_getattr(owners: Sequence[type]) -> tuple[Callable[..., Any], str]:
    """A stand-in for the pickled global ``builtins.getattr``, limited to methods of ``owners``.

    Some objects (mmengine's ``HistoryBuffer`` in a runner's ``message_hub``) pickle references
    to their own methods as ``getattr(Class, "name")``. Allow-listing the real ``getattr`` would
    open the door to arbitrary attribute access, so this version only returns plain functions
    defined on one of ``owners`` and refuses everything else.
    """
    allowed = tuple(owners)

    def _getattr(obj: Any, name: str) -> Any:
        if obj in allowed and isinstance(name, str) and not name.startswith("_"):
            value = obj.__dict__.get(name)
            if isinstance(value, types.FunctionType):
                return value
        raise pickle.UnpicklingError(f"refusing getattr({obj!r}, {name!r}) while loading a checkpoint")

    return (_getattr, "builtins.getattr")


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    map_location: str = "cpu",
    extra_safe_globals: Iterable[SafeGlobal] = (),
) -> Any:
    """``torch.load(path, weights_only=True)`` with numpy (and ``extra_safe_globals``) allowed.

    Raises :class:`DetectorError` with a one-line message when the file is missing, is not a
    torch checkpoint, or holds objects of types outside the allow-list (they are named).
    """
    import torch

    from .base import weights_there

    p = os.fspath(path)
    weights_there(p)
    _check_container(p)
    allowed = numpy_safe_globals() + list(extra_safe_globals)
    try:
        with torch.serialization.safe_globals(allowed), quiet_pickle_notes():
            return torch.load(p, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        try:
            with torch.serialization.safe_globals(allowed):
                unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(p)
        except Exception:  # noqa: BLE001 - only used to improve the message
            unsafe = []
        if unsafe:
            raise DetectorError(
                f"checkpoint {p}: holds objects of types that are not allow-listed for safe "
                f"loading ({', '.join(unsafe[:8])}); re-save its state_dict alone"
            ) from exc
        raise DetectorError(f"checkpoint {p}: cannot be unpickled safely ({_unpickler_cause(exc)})") from exc
    except Exception as exc:  # torch's unpickler raises many kinds on a damaged file
        raise DetectorError(f"checkpoint {p}: not a readable torch checkpoint ({_first_line(exc)})") from exc


def state_dict_of(checkpoint: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """The parameter dict inside a loaded checkpoint.

    Accepts a bare state dict or a dict holding one under ``state_dict`` / ``model`` /
    ``module``; strips a leading ``module.`` (DataParallel) from every key.
    """
    import torch

    sd: Any = checkpoint
    if isinstance(sd, Mapping):
        for key in ("state_dict", "model", "module"):
            inner = sd.get(key)
            if isinstance(inner, Mapping):
                sd = inner
                break
    if not isinstance(sd, Mapping) or not any(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DetectorError(f"{source}: no state dict found (got {type(checkpoint).__name__})")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise DetectorError(f"{source}: entries that are not tensors: {', '.join(map(str, bad[:5]))}")
    odd = [k for k in sd if not isinstance(k, str)]
    if odd:  # (an int key reached k.startswith: a traceback; an outside review)
        raise DetectorError(f"{source}: keys that are not parameter names (text): {', '.join(map(repr, odd[:5]))}")
    keys: Sequence[str] = list(sd)
    if all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in sd.items()}
    return dict(sd)


#: How the files torch.load reads begin: a zip archive (torch >= 1.6), a pickle (the legacy
#: format, protocol 2 or later) and, at offset 257, a tar archive (torch before 0.4).
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PICKLE_MAGIC = b"\x80"
#: the legacy format's first pickle: torch's magic number (a 10-byte long), within its first
#: bytes at any pickle protocol; a pickle without it is no torch checkpoint (a plain pickle got
#: the unpickler's "Unsupported operand 149": an outside review)
_LEGACY_MAGIC = b"\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_TAR_MAGIC = b"ustar"


def _check_container(p: str) -> None:
    """Refuse a file that cannot be a torch checkpoint before torch tries to unpickle it.

    Without this, an ONNX model or a text file reaches the unpickler, whose errors ("Unsupported
    operand 8", a bare opcode number) say nothing about what went wrong.
    """
    try:
        with open(p, "rb") as fh:
            head = fh.read(262)
    except OSError as exc:
        raise DetectorError(f"checkpoint {p}: cannot be read ({_first_line(exc)})") from exc
    if head.startswith(_ZIP_MAGIC) or head[257:262] == _TAR_MAGIC:
        return
    if head.startswith(_PICKLE_MAGIC):
        if _LEGACY_MAGIC in head[:32]:
            if len(head) > 1 and head[1] >= 4:  # (FRAME opcodes, which torch's safe loader cannot read)
                raise DetectorError(f"checkpoint {p}: torch's legacy format at pickle protocol {head[1]}, which the "
                                    "safe loader cannot read; re-save it with torch.save (the zip format) or at "
                                    "pickle_protocol=2")
            return
        raise DetectorError(f"checkpoint {p}: a Python pickle, but not a PyTorch checkpoint (.pt/.pth file)")
    what = "an empty file, " if not head else ""
    raise DetectorError(f"checkpoint {p}: {what}not a PyTorch checkpoint (.pt/.pth file)")


def _unpickler_cause(exc: BaseException) -> str:
    """What the weights-only unpickler objected to, without torch's advice around it.

    torch wraps the unpickler's own message in text that suggests loading again with the
    weights-only check turned off; that would run arbitrary code from the file, so only the cause
    is kept.
    """
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.rsplit(marker, 1)[1]
    else:
        text = text.replace("Weights only load failed.", "", 1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if "weights_only" not in ln]
    return lines[0][:200] if lines else type(exc).__name__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return _clipped(text[0], 200) if text else type(exc).__name__


def _clipped(text: str, most: int) -> str:
    """``text`` cut to at most ``most`` characters at a word's end, with "..." where it was cut
    (cut mid-word, a message ended "...your checkpoint file is)")."""
    if len(text) <= most:
        return text
    cut = text[: most - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."
