"""In-memory numpy images as an :class:`~.base.ImageSource`, never copied whole."""

from __future__ import annotations

import logging

import numpy as np

from ...errors import ImageReadError, InvalidInputError
from .base import ImageSource
from .colour import uint8_to_rgb

__all__ = ["ArraySource"]


class ArraySource(ImageSource):
    """Windows of an in-memory ``HxWx3`` uint8 RGB array (``HxW`` or ``HxWx1`` gray and ``HxWx4`` RGBA too).

    The array is referenced, never copied whole; do not modify it while the source is in use.
    Every window is a copy of its part of the array (gray and RGBA windows converted), so a
    detector that preprocesses its tiles in place cannot change the caller's image or the
    overlap another tile will read.
    """

    def __init__(self, array: np.ndarray, *, name: str = "<array>", orientation: int = 1) -> None:
        if not isinstance(array, np.ndarray):
            raise InvalidInputError(f"{name}: expected a numpy array, got {type(array).__name__}")
        if array.ndim == 3 and array.shape[2] == 1:  # gray with a channel axis (OpenCV's, Keras'): a view
            array = array[:, :, 0]
        if array.dtype != np.uint8:
            raise InvalidInputError(
                f"{name}: expected a uint8 image array (HxWx3 RGB, HxW or HxWx1 gray, or HxWx4 RGBA), got dtype {array.dtype}"
            )
        if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
            raise InvalidInputError(
                f"{name}: expected an image array of shape HxWx3 (RGB), HxW or HxWx1 (gray) or HxWx4 (RGBA), got shape {array.shape}"
            )
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise InvalidInputError(f"{name}: the image array is empty (shape {array.shape})")
        if array.ndim == 3 and array.shape[2] == 4 and not array[:, :, 3].any():
            # composited on white as RGBA is, the picture is gone: a BGRA or RGBX buffer whose fourth
            # channel is no alpha (an outside review: 0 boxes, nothing said)
            logging.getLogger("densedet_tile").warning(
                "%s: the array's fourth channel (alpha) is 0 everywhere, so the image is blank once composited "
                "on white; if that channel is no alpha, pass array[..., :3]", name)
        self._array: np.ndarray | None = array
        # ``orientation``: the array as stored, to be turned upright as a file's EXIF says (a PIL image)
        super().__init__(name=name, path=None, stored_size=(array.shape[1], array.shape[0]), orientation=orientation,
                         fmt="array")

    def _read_stored(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        a = self._array
        if a is None:  # pragma: no cover - guarded by read()
            raise ImageReadError(f"{self.name}: the image source is closed")
        win = uint8_to_rgb(a[y : y + h, x : x + w])
        return win.copy() if np.shares_memory(win, a) else win

    def close(self) -> None:
        self._array = None
        super().close()
