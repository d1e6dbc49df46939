"""A byte-bounded LRU cache of decoded TIFF segments, so overlapping windows decode them once."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

import numpy as np

__all__ = ["SegmentCache"]


class SegmentCache:
    """Decoded segments, (h, w, 3) uint8 RGB, by segment index, within a budget of ``limit`` bytes.

    The least recently used segment is dropped first, except the *held* ones (:meth:`hold`):
    the segments the window being read shares with the windows around it. They stay even when
    they alone exceed the budget. A plain LRU cannot serve a sweep of windows that each span
    more than the budget holds: with two strips of 60 % of the budget under every window, the
    second strip pushes out the first, the next window needs the first again, that pushes out
    the second, and so on, two strip decodes per window instead of two in all.

    Memory: ``nbytes`` <= max(``limit``, bytes of the held segments), so at most the segments
    of one window beyond the budget, never more. Segments that are not held are kept only
    where they fit beside the held ones (one larger than that is not kept at all). A ``limit``
    of 0 disables the cache: nothing is kept, held or not.

    Not thread-safe: the owner locks around it. ``hits`` counts lookups that found their segment.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, int(limit))
        self.nbytes = 0
        self.hits = 0
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()
        self._held: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self._items)

    def hold(self, keys: Iterable[int]) -> None:
        """Make ``keys`` the segments kept beyond the budget, in place of the previous ones,
        and drop least recently used segments no longer held until the budget is kept again."""
        self._held = frozenset(keys) if self.limit > 0 else frozenset()
        self._trim()

    def get(self, key: int) -> np.ndarray | None:
        """The cached segment ``key`` (now the most recently used), or None."""
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return hit

    def put(self, key: int, rgb: np.ndarray) -> None:
        """Keep ``rgb`` as segment ``key`` (not already cached), dropping old ones to fit."""
        if key not in self._held:
            held_bytes = sum(self._items[k].nbytes for k in self._held if k in self._items)
            if held_bytes + rgb.nbytes > self.limit:  # it could only stay by pushing out a held one
                return
        self._items[key] = rgb
        self.nbytes += rgb.nbytes
        self._trim()

    def _trim(self) -> None:
        """Drop the least recently used segments that are not held while over the budget."""
        excess = self.nbytes - self.limit
        if excess <= 0:
            return
        drop = []
        for key, rgb in self._items.items():  # least recently used first
            if excess <= 0:
                break
            if key not in self._held:
                drop.append(key)
                excess -= rgb.nbytes
        for key in drop:
            self.nbytes -= self._items.pop(key).nbytes

    def clear(self) -> None:
        self._items.clear()
        self._held = frozenset()
        self.nbytes = 0
