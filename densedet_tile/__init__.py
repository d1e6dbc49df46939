"""densedet-tile: tiled sliding-window inference for giant images of densely packed objects."""

from .detector.base import Detector
from .errors import (
    DensedetError,
    DetectorError,
    ImageReadError,
    InvalidInputError,
    MissingDependencyError,
)
from .types import Detections, MergeSpec, Tile, TileSpec

__version__ = "0.1.0"

__all__ = [
    "Detections",
    "Detector",
    "Tile",
    "TileSpec",
    "MergeSpec",
    "DensedetError",
    "DetectorError",
    "ImageReadError",
    "InvalidInputError",
    "MissingDependencyError",
    "__version__",
]
