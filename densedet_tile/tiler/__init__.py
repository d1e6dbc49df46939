"""Cutting images into tiles: the grid, the readers and lazy batching."""

from .grid import axis_starts, make_grid

__all__ = ["axis_starts", "make_grid"]
