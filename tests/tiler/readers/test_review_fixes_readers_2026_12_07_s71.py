"""Fixes from the outside reviews of 2026-12-07 (stop 71): readers."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from densedet_tile.tiler.readers import open_image, pillow


def test_one_lazy_pil_image_from_two_threads_is_decoded_by_one_at_a_time(tmp_path: Path, monkeypatch) -> None:
    # Image.open is lazy and Pillow's decoding is not safe from two threads at once: one image
    # given to detect() from 4 threads gave errors, or silently other boxes, and damaged the
    # caller's image (an outside review). Each thread waits here for the other (at most half a
    # second): with the decoding held by one thread at a time, none ever finds the other inside.
    arr = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    Image.fromarray(arr).save(path)
    im = Image.open(path)
    real = pillow.load_pixels
    inside, most = [0], [0]
    count = threading.Lock()
    meet = threading.Barrier(2)

    def load(*a, **k):
        with count:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            meet.wait(timeout=0.5)
        except threading.BrokenBarrierError:
            pass
        try:
            return real(*a, **k)
        finally:
            with count:
                inside[0] -= 1

    monkeypatch.setattr(pillow, "load_pixels", load)
    with ThreadPoolExecutor(2) as ex:
        got = list(ex.map(lambda _: open_image(im).read(0, 0, 160, 120), range(2)))
    assert most[0] == 1
    for g in got:
        assert np.array_equal(g, arr)
    assert np.array_equal(np.asarray(im), arr)
