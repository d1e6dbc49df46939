"""Output folders that do not tell names apart by case (macOS, Windows; FAT or SMB mounts).

There ``IMG_0001.JPG`` and ``img_0001.jpg`` of one run wrote one ``.detections.json``, the
second image's over the first's (an outside portability review). Such a file system cannot be
mounted here, so :func:`case_blind` is checked against the file system at hand, and the naming
with the probe's answer given.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from PIL import Image

import densedet_tile.batch as batch_mod
import densedet_tile.io as io_mod
import densedet_tile.runner as runner_mod
from densedet_tile import TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.runner import Job, unique_stems
from fakes import BlobDetector, blob_image


def _really_case_blind(folder: Path) -> bool:
    (folder / "Probe-Ab").write_text("x")
    try:
        return (folder / "pROBE-aB").exists()
    finally:
        (folder / "Probe-Ab").unlink()


def test_case_blind_says_what_the_file_system_does_and_leaves_nothing(tmp_path: Path) -> None:
    assert io_mod.case_blind(tmp_path) is _really_case_blind(tmp_path)
    # a folder not made yet is asked of its nearest parent, and is not made
    assert io_mod.case_blind(tmp_path / "new" / "deeper") is _really_case_blind(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_case_blind_falls_back_on_the_platform_where_nothing_can_be_written(tmp_path: Path, monkeypatch) -> None:
    def refused(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(io_mod.tempfile, "mkstemp", refused)
    assert io_mod.case_blind(tmp_path) is (sys.platform in ("darwin", "win32"))


def test_stems_differing_only_in_case_are_told_apart_where_the_folder_is_case_blind(tmp_path: Path,
                                                                                  monkeypatch) -> None:
    asked: list[object] = []

    def blind(folder) -> bool:
        asked.append(folder)
        return True

    monkeypatch.setattr(runner_mod, "case_blind", blind)
    paths = ["a/IMG_0001.JPG", "b/img_0001.jpg", "c/other.jpg"]
    assert unique_stems(paths, out=tmp_path) == ["IMG_0001", "img_0001-2", "other"]
    assert unique_stems(list(reversed(paths)), out=tmp_path) == ["other", "img_0001-2", "IMG_0001"]
    # a numbered stem meeting another file's own stem in the other case clashes too
    assert unique_stems(["a/X.jpg", "b/X.jpg", "c/x-2.jpg"], out=tmp_path) == ["X", "X-3", "x-2"]
    n = len(asked)
    assert unique_stems(["a/A.jpg", "b/B.jpg"], out=tmp_path) == ["A", "B"]
    assert len(asked) == n  # no clash in any case: the folder is not asked
    assert unique_stems(paths) == ["IMG_0001", "img_0001", "other"]  # no folder given: names as they are
    monkeypatch.setattr(runner_mod, "case_blind", lambda folder: False)
    assert unique_stems(paths, out=tmp_path) == ["IMG_0001", "img_0001", "other"]  # case-sensitive: unchanged


def _photo(path: Path, box: tuple[int, int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(300, 500, box)).save(path)
    return path


def test_batch_gives_images_differing_only_in_case_two_names_where_the_folder_is_case_blind(tmp_path: Path,
                                                                                            monkeypatch) -> None:
    monkeypatch.setattr(batch_mod, "case_blind", lambda folder: True)
    upper = _photo(tmp_path / "a" / "IMG_0001.PNG", (10, 20, 100, 80))
    lower = _photo(tmp_path / "b" / "img_0001.png", (200, 30, 260, 90))
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256))
    res = run_batch([lower, upper], out, detector=BlobDetector(), job=job)
    stems = {Path(r["input"]).name: r["stem"] for r in res.records}
    assert stems == {"IMG_0001.PNG": "IMG_0001", "img_0001.png": "img_0001-2"}
    for name, stem in stems.items():
        doc = json.loads((out / f"{stem}.detections.json").read_text())
        assert Path(doc["image"]["path"]).name == name
    # a rerun keeps each image's name and redoes nothing
    again = run_batch([upper, lower], out, detector=BlobDetector(), job=job)
    assert again.skipped == 2
    assert {Path(r["input"]).name: r["stem"] for r in again.records} == stems
    # an earlier run's image in the other case keeps its stem; a new one there is numbered
    third = _photo(tmp_path / "c" / "Img_0001.png", (50, 50, 120, 120))
    res3 = run_batch([third], out, detector=BlobDetector(), job=job)
    assert [r["stem"] for r in res3.records] == ["Img_0001-3"]


def test_batch_on_a_case_sensitive_folder_keeps_both_plain_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(batch_mod, "case_blind", lambda folder: False)
    upper = _photo(tmp_path / "a" / "IMG_0001.PNG", (10, 20, 100, 80))
    lower = _photo(tmp_path / "b" / "img_0001.png", (200, 30, 260, 90))
    res = run_batch([upper, lower], tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)))
    assert sorted(r["stem"] for r in res.records) == ["IMG_0001", "img_0001"]


@pytest.mark.parametrize("blind", [True, False])
def test_the_detect_command_names_outputs_by_the_folders_case_rule(tmp_path: Path, monkeypatch, blind: bool) -> None:
    from densedet_tile.cli import main

    monkeypatch.setattr(runner_mod, "case_blind", lambda folder: blind)
    upper = _photo(tmp_path / "a" / "IMG_0001.PNG", (10, 20, 100, 80))
    lower = _photo(tmp_path / "b" / "img_0001.png", (200, 30, 260, 90))
    out = tmp_path / "out"
    assert main([str(lower), str(upper), "--out", str(out), "-q", "--device", "cpu", "--detector",
                 str(Path(__file__).parent / "fakes.py") + ":make_blob"]) == 0
    want = {"IMG_0001.detections.json", "img_0001-2.detections.json"} if blind else \
        {"IMG_0001.detections.json", "img_0001.detections.json"}
    assert {p.name for p in out.glob("*.detections.json")} == want
