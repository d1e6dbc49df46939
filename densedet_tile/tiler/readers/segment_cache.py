"""A byte-bounded LRU cache of decoded TIFF segments, so overlapping windows decode them once."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

__all__ = ["SegmentCache"]


class SegmentCache:
    """Decoded segments, (h, w, 3) uint8 RGB, by segment index; at most ``limit`` bytes in all.

    The least recently used segment is dropped first. A segment larger than the whole budget
    is not kept, unless ``oversize_slots`` > 0: then the most recent ones that large are kept
    apart, up to that many (a segment that cannot be read in part is better kept than decoded
    again for every window); ``nbytes`` counts them too. A ``limit`` of 0 disables the cache.
    Not thread-safe: the owner locks around it. ``hits`` counts lookups that found their segment.
    """

    def __init__(self, limit: int, *, oversize_slots: int = 0) -> None:
        self.limit = max(0, int(limit))
        self.oversize_slots = max(0, int(oversize_slots)) if self.limit > 0 else 0
        self.nbytes = 0  # both kinds; the budget bounds the small ones
        self._small_nbytes = 0
        self.hits = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._big: OrderedDict[int, np.ndarray] = OrderedDict()
        self._big_nbytes = 0

    def __len__(self) -> int:
        return len(self._items) + len(self._big)

    def get(self, key: int) -> np.ndarray | None:
        """The cached segment ``key`` (now the most recently used), or None."""
        for items in (self._items, self._big):
            hit = items.get(key)
            if hit is not None:
                items.move_to_end(key)
                self.hits += 1
                return hit
        return None

    def put(self, key: int, rgb: np.ndarray) -> None:
        """Keep ``rgb`` as segment ``key`` (not already cached), dropping old ones to fit."""
        if rgb.nbytes > self.limit:
            if self.oversize_slots:
                self._big[key] = rgb
                self._big_nbytes += rgb.nbytes
                while len(self._big) > self.oversize_slots:
                    _, old = self._big.popitem(last=False)
                    self._big_nbytes -= old.nbytes
                self.nbytes = self._small_nbytes + self._big_nbytes
            return
        self._items[key] = rgb
        self._small_nbytes += rgb.nbytes
        while self._small_nbytes > self.limit:
            _, old = self._items.popitem(last=False)
            self._small_nbytes -= old.nbytes
        self.nbytes = self._small_nbytes + self._big_nbytes

    def clear(self) -> None:
        self._items.clear()
        self._big.clear()
        self.nbytes = self._small_nbytes = self._big_nbytes = 0
