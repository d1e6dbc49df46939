"""The detections JSON's timings count the time its image took to open (decode)."""

from __future__ import annotations

import json
import time

import densedet_tile as dt
import densedet_tile.tiler.readers as readers
from densedet_tile.runner import Job, process_image
from fakes import BlobDetector, blob_image


def test_the_time_spent_opening_the_image_is_in_read_s_and_total_s(tmp_path, monkeypatch):
    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 500, (10, 20, 100, 80))).save(img)
    real_open = readers.open_image

    def slow_open(*args, **kwargs):  # a decode that takes 0.3 s (a panorama's JPEG)
        time.sleep(0.3)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(readers, "open_image", slow_open)
    outcome = process_image(img, BlobDetector(), Job(tiling=dt.TileSpec(tile=256)), tmp_path / "out")
    assert outcome.status == "ok"
    timings = json.loads((tmp_path / "out" / "shelf.detections.json").read_text())["timings"]
    # lower bounds only: the sleep guarantees them, whatever the machine's speed
    assert timings["read_s"] >= 0.3 and timings["total_s"] >= 0.3
    assert timings["total_s"] >= timings["read_s"]
