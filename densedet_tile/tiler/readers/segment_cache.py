"""A byte-bounded LRU cache of decoded TIFF segments, so overlapping windows decode them once."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["SegmentCache"]


class SegmentCache:
    """Decoded segments, (h, w, 3) uint8 RGB, by segment index; at most ``limit`` bytes in all.

    The least recently used segment is dropped first; a segment larger than the whole budget is
    not kept (a ``limit`` of 0 disables the cache). Not thread-safe: the owner locks around it.
    ``hits`` counts lookups that found their segment.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.nbytes = 0
        self.hits = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: int) -> np.ndarray | None:
        """The cached segment ``key`` (now the most recently used), or None."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return hit

    def put(self, key: int, rgb: np.ndarray) -> None:
        """Keep ``rgb`` as segment ``key`` (not already cached), dropping old ones to fit."""
        if rgb.nbytes > self.limit:
            return
        self._items[key] = rgb
        self.nbytes += rgb.nbytes
        while self.nbytes > self.limit:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = 0
