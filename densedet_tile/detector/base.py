"""The one interface every detector implements."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..types import Detections

__all__ = ["Detector", "input_size_of", "resolve_device", "cuda_plausible", "check_tiles"]


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
    """

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:  # pragma: no cover
        ...


def input_size_of(detector: object) -> int | None:
    """The detector's declared ``input_size`` (validated), or None when it declares none."""
    size = getattr(detector, "input_size", None)
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        from ..errors import DetectorError

        raise DetectorError(f"detector input_size must be an int >= 16 or None, got {size!r}")
    return int(size)


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto"`` into ``"cuda"`` when a GPU is usable, else ``"cpu"``; validate others.

    Accepts ``"auto"``, ``"cpu"``, ``"cuda"`` and ``"cuda:N"``. Asking for CUDA on a machine
    without it raises :class:`~densedet_tile.errors.InvalidInputError`; without torch installed,
    :class:`~densedet_tile.errors.MissingDependencyError` (the ``[torch]`` extra).

    ``"auto"`` imports torch only when it could answer yes: it is ``"cpu"`` when torch is not
    installed (``importlib.util.find_spec``, no import) or when no GPU driver is visible
    (:func:`cuda_plausible`); when torch is already imported, or installed and a driver is
    visible, it is ``torch.cuda.is_available()``. ``"cpu"`` never imports torch.
    """
    from ..errors import InvalidInputError, MissingDependencyError

    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    dev = device.strip().lower()
    if dev not in ("auto", "cpu") and not (dev == "cuda" or (dev.startswith("cuda:") and dev[5:].isdigit())):
        raise InvalidInputError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    if dev == "cpu":
        return "cpu"
    torch = sys.modules.get("torch")
    if torch is None:
        if importlib.util.find_spec("torch") is None:
            if dev == "auto":
                return "cpu"
            raise MissingDependencyError(f"device {device!r}", "torch", "torch")
        if dev == "auto" and not cuda_plausible():
            return "cpu"
        import torch
    has_cuda = torch.cuda.is_available()
    if dev == "auto":
        return "cuda" if has_cuda else "cpu"
    if not has_cuda:
        raise InvalidInputError(f"device {device!r} was requested but CUDA is not available on this machine")
    return dev


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
