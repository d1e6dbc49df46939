"""Rules of the engine, the batch's naming and reuse, and the scale choice that no test pinned
(a mutation review, round 2: each case fails with one of them changed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from densedet_tile import Detections, MergeSpec, RunSpec, TileSpec
from densedet_tile.batch import batch_stems, run_batch
from densedet_tile.pipeline import detect_image
from densedet_tile.runner import Job
from fakes import BlobDetector
from test_scale import SizedBlobs, shelf


class TwoBoxes:
    """One box at the threshold and one between the floor and the threshold's band."""

    name = "two"
    score_thr, score_floor = 0.5, 0.4

    def predict(self, tiles):
        return [Detections(np.array([[10, 10, 50, 50], [60, 10, 100, 50]], np.float32), [0.5, 0.42], [0, 0])
                for _ in tiles]


def test_a_box_at_the_threshold_is_served_and_not_also_a_near_miss() -> None:
    r = detect_image(np.zeros((120, 120, 3), np.uint8), TwoBoxes(), tile=2048, device="cpu")
    assert r.detections.scores.tolist() == [0.5]
    assert r.near_misses.scores.tolist() == []  # (0.42 lies below the 0.05 band under the threshold)


class NoFloor:
    name = "nofloor"  # says nothing of the boxes below the threshold

    def predict(self, tiles):
        return [Detections(np.array([[10, 10, 50, 50], [60, 10, 100, 50]], np.float32), [0.9, 0.47], [0, 0])
                for _ in tiles]


def test_a_detector_that_declares_no_floor_gives_no_upper_end_of_the_count_range() -> None:
    r = detect_image(np.zeros((120, 120, 3), np.uint8), NoFloor(), tile=2048, device="cpu", score_thr=0.45)
    assert (r.count_range.low, r.count_range.count, r.count_range.high) == (1, 2, None)


class SeamDet:
    """Tile 0 sees a product cut by its right edge; tile 1 has another product and a faint box
    where the cut view is (score ``c``)."""

    name = "seam"
    score_thr, score_floor = 0.45, 0.30

    def __init__(self, c: float) -> None:
        self.c = c

    def predict(self, tiles):
        out = []
        for t in tiles:
            if int(t[0, 0, 0]) + 256 * int(t[0, 0, 1]) == 0:
                out.append(Detections(np.array([[170, 60, 200, 110]], np.float32), [0.6], [0]))
            else:
                out.append(Detections(np.array([[150, 20, 190, 60], [35, 65, 55, 105]], np.float32), [0.9, self.c],
                                      [0, 0]))
        return out


def test_a_cut_view_is_confirmed_by_boxes_in_the_band_below_the_threshold_only() -> None:
    x = np.arange(340)
    img = np.zeros((200, 340, 3), np.uint8)
    img[..., 0], img[..., 1] = x % 256, x // 256  # each tile knows where it starts
    got = {}
    for c in (0.32, 0.37):
        r = detect_image(img, SeamDet(c), tile=200, overlap=0.3, device="cpu", batch_size=1)
        got[c] = (len(r.detections), r.count_range.low, r.count_range.count, r.count_range.high)
    assert got == {0.32: (1, 1, 1, 1), 0.37: (1, 1, 1, 2)}


def test_tile_auto_keeps_an_overlap_the_caller_gave_when_it_is_enough() -> None:
    from densedet_tile.scale import choose_scale
    from densedet_tile.tiler.readers import open_image

    img, _ = shelf(3000, 1200, 60)
    with open_image(img) as src:
        c = choose_scale(src, SizedBlobs(), TileSpec(tile="auto", overlap=0.45), RunSpec())
    assert c.tiling.overlap == 0.45


def test_earlier_records_name_the_latest_owner_of_a_stem(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    a, b = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"
    for p in (a, b):
        p.parent.mkdir()
        p.write_bytes(b"img")
    # a was done as x, then b took x: b keeps it, a (if it comes again) is numbered
    assert batch_stems([a, b], out, [{"input": str(a), "stem": "x"}, {"input": str(b), "stem": "x"}]) == ["x-2", "x"]


def test_a_stem_whose_result_is_another_images_is_not_taken(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    mine = tmp_path / "mine" / "x.jpg"
    mine.parent.mkdir()
    mine.write_bytes(b"new photo")
    # a detect run left x's result there for another image file (no manifest record)
    (out / "x.detections.json").write_text(json.dumps({"image": {"name": "x.jpg", "path": str(tmp_path / "o" / "x.jpg")}}))
    assert batch_stems([mine], out, []) == ["x-2"]
    # an earlier input, gone since, whose result records another size and time: not this photo moved
    gone = tmp_path / "gone" / "x.jpg"
    (out / "x.detections.json").write_text(json.dumps({"image": {"name": "x.jpg", "path": str(gone)},
                                                        "settings": {"requested": {"input": [3, 1]}}}))
    assert batch_stems([mine], out, [{"input": str(gone), "stem": "x"}]) == ["x-2"]


def _rerun(tmp_path: Path, first: Job, second: Job, damage: bool = False) -> list[str]:
    img = np.zeros((100, 100, 3), np.uint8)
    img[20:60, 20:60] = 255
    Image.fromarray(img).save(tmp_path / "x.png")
    out = tmp_path / "out"
    run_batch([tmp_path / "x.png"], out, detector=BlobDetector(), job=first)
    if damage:  # the JSON parses, but its boxes are gone
        p = out / "x.detections.json"
        doc = json.loads(p.read_text())
        doc["boxes"] = []
        p.write_text(json.dumps(doc))
    return [r["status"] for r in run_batch([tmp_path / "x.png"], out, detector=BlobDetector(), job=second).records]


def test_a_result_whose_boxes_do_not_match_its_count_is_redone(tmp_path: Path) -> None:
    assert _rerun(tmp_path, Job(), Job(), damage=True) == ["ok"]


def test_other_merge_settings_redo_an_image(tmp_path: Path) -> None:
    assert _rerun(tmp_path, Job(), Job(merge=MergeSpec(mode="none"))) == ["ok"]


def test_another_count_band_redoes_an_image(tmp_path: Path) -> None:
    assert _rerun(tmp_path, Job(), Job(run=RunSpec(count_band=0.1))) == ["ok"]


def test_the_same_request_again_is_skipped(tmp_path: Path) -> None:
    assert _rerun(tmp_path, Job(), Job()) == ["skipped"]
