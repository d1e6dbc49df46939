"""Faults found by an outside review of the batch verb (2026-12-07, stop 67)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile.batch import Manifest, OutputFolderError, run_batch
from densedet_tile.runner import Job
from densedet_tile.types import TileSpec
from fakes import BlobDetector, blob_image


def _images(folder: Path, n: int = 3) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"img{i}.png"
        Image.fromarray(blob_image(200, 300 + 10 * i, (40 + 5 * i, 60, 90 + 5 * i, 120))).save(p)
        paths.append(p)
    return paths


def _remover(out: Path) -> tuple[list[str], object]:
    """An ``on_record`` that removes ``out`` after the first image, and the stems it saw."""
    seen: list[str] = []

    def remove_after_first(rec):
        seen.append(rec["stem"])
        if len(seen) == 1:
            shutil.rmtree(out)

    return seen, remove_after_first


def test_a_folder_removed_during_the_run_stops_it_instead_of_being_made_again(tmp_path) -> None:
    # the first image's outputs went with the folder; each output written by its path made the
    # folder again, the run said "done" and exited 0 (an outside review)
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    seen, remove_after_first = _remover(out)
    with pytest.raises(OutputFolderError, match="removed or replaced during the run"):
        run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray=None,
                  on_record=remove_after_first)
    assert seen == ["img0"]  # the run stopped at the next image, not after all of them


def test_a_second_run_in_the_folder_made_again_stops_the_first(tmp_path) -> None:
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    other = Manifest(out)

    def replace_after_first(rec):
        if other._lock_fd is None:
            shutil.rmtree(out)
            out.mkdir()
            other.lock()  # another run takes the folder made again

    try:
        with pytest.raises(OutputFolderError):
            run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray=None,
                      on_record=replace_after_first)
        # the first run wrote nothing into the other's log
        assert other.records() == []
    finally:
        other.unlock()


def test_the_cli_says_it_in_one_line_with_exit_1(tmp_path, capsys, monkeypatch) -> None:
    from densedet_tile import batch as batch_mod
    from densedet_tile.cli.batch import batch_main

    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    real = batch_mod.Manifest.append
    calls = []

    def append(self, record):
        calls.append(record.get("event"))
        if calls.count("image") == 2:
            shutil.rmtree(out)
        return real(self, record)

    monkeypatch.setattr(batch_mod.Manifest, "append", append)
    fakes = Path(__file__).parent / "fakes.py"
    code = batch_main([*map(str, imgs), "--out", str(out), "--ray", "none", "--detector", f"{fakes}:make_blob",
                       "--tile", "256", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and err[0].startswith("densedet-tile batch: error: --out ") and "removed or replaced" in err[0]


def test_a_run_left_alone_is_not_stopped(tmp_path) -> None:
    imgs = _images(tmp_path / "in")
    s = run_batch(imgs, tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray=None)
    assert s.ok == 3 and s.failed == 0
    assert [r["event"] for r in Manifest(tmp_path / "out").records()] == ["run", "image", "image", "image", "end"]


def test_a_photo_renamed_for_yolos_class_list_leaves_no_outputs_under_its_old_name(tmp_path, caplog) -> None:
    # classes.png run without YOLO labels, then with them: "classes" is the class list's name, so
    # the photo becomes classes-2, and its first outputs stayed beside the new ones: the folder
    # held two results of one photo (an outside review)
    from densedet_tile.cli.batch import batch_main

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(blob_image(200, 300, (40, 60, 90, 120))).save(folder / "classes.png")
    Image.fromarray(blob_image(200, 320, (50, 60, 100, 120))).save(folder / "other.png")
    out = tmp_path / "out"
    fakes = Path(__file__).parent / "fakes.py"
    common = ["--out", str(out), "--ray", "none", "--detector", f"{fakes}:make_blob", "--tile", "256", "-q"]
    assert batch_main([str(folder), *common, "--format", "csv"]) == 0
    assert (out / "classes.detections.json").is_file() and (out / "classes.detections.csv").is_file()
    assert batch_main([str(folder), *common, "--format", "csv,yolo"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert "classes.detections.json" not in names and "classes.detections.csv" not in names
    assert {"classes-2.detections.json", "classes-2.detections.csv", "classes-2.txt", "classes.txt",
            "other.detections.json", "other.detections.csv", "other.txt"} <= set(names)
    assert sorted(n for n in names if n.endswith(".detections.json")) == ["classes-2.detections.json",
                                                                           "other.detections.json"]
    assert "no longer classes" in caplog.text


def test_a_renamed_photos_old_outputs_changed_by_the_user_stay(tmp_path) -> None:
    from densedet_tile.cli.batch import batch_main

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(blob_image(200, 300, (40, 60, 90, 120))).save(folder / "classes.png")
    out = tmp_path / "out"
    fakes = Path(__file__).parent / "fakes.py"
    common = ["--out", str(out), "--ray", "none", "--detector", f"{fakes}:make_blob", "--tile", "256", "-q"]
    assert batch_main([str(folder), *common, "--format", "csv"]) == 0
    edited = out / "classes.detections.csv"
    edited.write_text(edited.read_text() + "# checked by hand\n")
    assert batch_main([str(folder), *common, "--format", "csv,yolo"]) == 0
    assert edited.read_text().endswith("# checked by hand\n")


def test_a_folder_removed_on_a_file_system_without_locks_stops_the_run_too(tmp_path, monkeypatch) -> None:
    # (a diff review: on NFS mounted nolock the check had nothing to compare with)
    from densedet_tile import batch as batch_mod

    def no_locks(path, flags):  # opened (and so made), then no lock taken, as on such a mount
        os.close(os.open(path, flags, 0o666))
        return "no locks", None

    monkeypatch.setattr(batch_mod, "flock_path", no_locks)
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    seen, remove_after_first = _remover(out)
    with pytest.raises(OutputFolderError):
        run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray=None,
                  on_record=remove_after_first)
    assert seen == ["img0"]
    assert not out.exists()  # checked before the next image was written: nothing made the folder again


def test_a_stem_given_to_another_input_since_keeps_that_inputs_outputs(tmp_path) -> None:
    # a/shelf.png ran as "shelf"; moved to b/, it ran as "shelf" again; a new a/shelf.png then
    # gets shelf-2, and b's outputs under "shelf" (byte for byte a's first ones) stay
    from densedet_tile.cli.batch import batch_main

    fakes = Path(__file__).parent / "fakes.py"
    out = tmp_path / "out"
    common = ["--out", str(out), "--ray", "none", "--detector", f"{fakes}:make_blob", "--tile", "256", "-q",
              "--format", "csv"]
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    Image.fromarray(blob_image(200, 300, (40, 60, 90, 120))).save(a / "shelf.png")
    assert batch_main([str(a / "shelf.png"), *common]) == 0
    (a / "shelf.png").rename(b / "shelf.png")
    assert batch_main([str(b / "shelf.png"), *common]) == 0
    Image.fromarray(blob_image(200, 330, (60, 60, 110, 120))).save(a / "shelf.png")
    assert batch_main([str(a / "shelf.png"), *common]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"shelf.detections.json", "shelf.detections.csv", "shelf-2.detections.json",
            "shelf-2.detections.csv"} <= names


def test_a_glob_over_the_output_folder_leaves_its_run_log_out(tmp_path, caplog) -> None:
    # "batch in/* --out in": the folder's manifest.json and manifest.jsonl were taken for photos
    # and failed as unknown image formats, exit 1 on every rerun (an outside review)
    imgs = _images(tmp_path / "in")
    job = Job(tiling=TileSpec(tile=256))
    first = run_batch(imgs, tmp_path / "in", detector=BlobDetector(), job=job, ray=None)
    named = sorted((tmp_path / "in").iterdir())  # what the shell's in/* gives now
    assert {"manifest.json", "manifest.jsonl"} <= {p.name for p in named}
    with caplog.at_level("WARNING", logger="densedet_tile"):
        again = run_batch(named, tmp_path / "in", detector=BlobDetector(), job=job, ray=None)
    said = [r.getMessage() for r in caplog.records]
    assert any(m.endswith("manifest.jsonl: left out: this output folder's run log") for m in said)
    assert any(m.endswith("manifest.json: left out: this output folder's run log") for m in said)
    assert first.failed == again.failed == 0 and again.skipped == len(imgs)
