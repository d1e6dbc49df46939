"""Cutting images into tiles: the grid, the readers and lazy batching."""

from .batching import iter_tile_batches
from .grid import axis_starts, make_grid
from .readers import DEFAULT_MAX_PIXELS, ImageSource, open_image
from .resize import resize_to

__all__ = [
    "axis_starts",
    "make_grid",
    "DEFAULT_MAX_PIXELS",
    "ImageSource",
    "open_image",
    "iter_tile_batches",
    "resize_to",
]
