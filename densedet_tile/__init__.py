"""densedet-tile: tiled sliding-window inference for giant images of densely packed objects."""

from typing import TYPE_CHECKING, Any

from .detector.base import Detector
from .errors import (
    DensedetError,
    DetectorError,
    ImageReadError,
    InvalidInputError,
    MissingDependencyError,
)
from .types import CountRange, Detections, MergeSpec, RunSpec, Tile, TileSpec

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy names below are, for type checkers (nothing imported at run time)
    from .detector.registry import DetectorSpec, load_detector
    from .merge import merge_tiles
    from .pipeline import ImageResult, detect, detect_image
    from .tiler.readers import open_image

# The engine's entry points load lazily so that ``import densedet_tile`` stays light (no torch).
_LAZY = {
    "detect": ("pipeline", "detect"),
    "detect_image": ("pipeline", "detect_image"),
    "ImageResult": ("pipeline", "ImageResult"),
    "load_detector": ("detector.registry", "load_detector"),
    "DetectorSpec": ("detector.registry", "DetectorSpec"),
    "open_image": ("tiler.readers", "open_image"),
    "merge_tiles": ("merge", "merge_tiles"),
}


# ... and so do its submodules, reached as attributes (``dt.pipeline.describe_detector``)
_SUBMODULES = frozenset({"audit", "batch", "detector", "distributed", "errors", "eval", "io", "merge", "pipeline",
                         "runner", "scale", "synth", "tiler", "train", "types", "vram"})


def __getattr__(name: str) -> Any:
    # (Any, not object: a type checker then takes ``dt.scale.choose_scale`` as the README writes
    # it; importing the submodules here for type checkers instead made an import circle of the
    # package and its submodules)
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'densedet_tile' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)

__all__ = [
    "detect",
    "detect_image",
    "ImageResult",
    "load_detector",
    "open_image",
    "merge_tiles",
    "Detections",
    "Detector",
    "Tile",
    "TileSpec",
    "MergeSpec",
    "RunSpec",
    "CountRange",
    "DetectorSpec",
    "DensedetError",
    "DetectorError",
    "ImageReadError",
    "InvalidInputError",
    "MissingDependencyError",
    "__version__",
]
