"""Lazy, prefetched batches of tile pixels.

A background thread reads the next batches from the :class:`~.readers.ImageSource` while the
caller runs inference on the current one. The hand-over queue holds at most ``prefetch``
batches, so at any moment at most ``prefetch + 2`` batches of pixels exist (the queued ones,
the one the reader is filling and the one the caller holds). Pillow crops, tifffile/zlib
decoding and numpy copies release the GIL, so reading really overlaps a detector's work.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import Iterator, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..types import Tile
from .readers import ImageSource
from .readers.orientation import stored_box

__all__ = ["iter_tile_batches", "stored_order"]

_POLL_S = 0.05


class _Done:
    """End-of-stream marker put on the queue by the reader thread."""


class _Failed:
    """Carries an exception raised in the reader thread to the consumer."""

    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def stored_order(src: ImageSource, tiles: Sequence[Tile]) -> list[int]:
    """Indices of ``tiles`` in row-major order of the file's *stored* frame (top to bottom,
    then left to right; stable, so tiles of one stored position keep their order).

    A source turned by its orientation (EXIF/TIFF 5 to 8: a quarter turn) holds the upright
    image's columns as its stored rows, so tiles in upright row-major order sweep a striped
    TIFF column by column: every strip is decoded again for each row of tiles once the strips
    outgrow the cache. Read in this order, each strip is decoded once.
    """
    orientation = int(getattr(src, "orientation", 1) or 1)
    if orientation == 1:
        keys = [(t.y, t.x) for t in tiles]
    else:
        sw, sh = getattr(src, "_stored_w", src.width), getattr(src, "_stored_h", src.height)
        keys = [stored_box(orientation, t.x, t.y, t.w, t.h, sw, sh)[1::-1] for t in tiles]
    return sorted(range(len(tiles)), key=keys.__getitem__)


def _read_batch(src: ImageSource, batch: list[Tile]) -> list[np.ndarray]:
    return [src.read(t.x, t.y, t.w, t.h) for t in batch]


def iter_tile_batches(
    src: ImageSource,
    tiles: Sequence[Tile],
    batch_size: int,
    *,
    prefetch: int = 2,
) -> Iterator[tuple[list[Tile], list[np.ndarray]]]:
    """Yield ``(tiles, pixels)`` batches of up to ``batch_size`` tiles, in the order given.

    ``pixels[i]`` is ``src.read(tiles[i].x, tiles[i].y, tiles[i].w, tiles[i].h)``: an
    ``(h, w, 3)`` uint8 RGB array in the frame of the upright source image.

    With ``prefetch >= 1`` a daemon thread reads ahead by up to ``prefetch`` batches; with
    ``prefetch=0`` batches are read in the caller's thread when asked for. Nothing is read
    before the first batch is requested. An exception raised while reading is re-raised in the
    caller at the batch where it happened (earlier batches are still delivered). Closing the
    generator early (``break``, ``.close()``, garbage collection) stops and joins the thread.

    For TIFF sources pass tiles in row-major order of the stored image (:func:`stored_order`;
    for an upright file, the order :func:`~.grid.make_grid` makes them in): neighbouring windows
    then reuse the decoded TIFF segments from the source's cache.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if isinstance(prefetch, bool) or not isinstance(prefetch, (int, np.integer)) or prefetch < 0:
        raise InvalidInputError(f"prefetch must be an integer >= 0, got {prefetch!r}")
    return _generate(src, list(tiles), int(batch_size), int(prefetch))


def _generate(
    src: ImageSource, tiles: list[Tile], batch_size: int, prefetch: int
) -> Iterator[tuple[list[Tile], list[np.ndarray]]]:
    batches = [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]
    if prefetch == 0:
        for batch in batches:
            yield batch, _read_batch(src, batch)
        return

    q: queue.Queue[object] = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def put(item: object) -> bool:
        # Wait for room, but give up as soon as the consumer has gone away.
        while not stop.is_set():
            try:
                q.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def worker() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                pixels = _read_batch(src, batch)
                if not put((batch, pixels)):
                    return
            put(_Done())
        except BaseException as exc:  # handed to the consumer, who re-raises it
            put(_Failed(exc))

    # (in the caller's context: what it logs goes where the caller's records go, e.g. a batch
    # image's record)
    thread = threading.Thread(target=contextvars.copy_context().run, args=(worker,), name="densedet-tile-reader",
                              daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if isinstance(item, _Done):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # Free queued pixels and unblock a reader waiting to put, then wait for it to end.
        while True:
            try:
                q.get_nowait()
            except queue.Empty:
                break
        thread.join()
