"""Batch runs over folders, from an outside review: one run at a time in an output folder, a
symlink loop or an unlistable folder told as such, the run log kept whole lines on a full disk,
the CSV and COCO rows named after the file, and an image called classes.jpg with YOLO labels."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile import InvalidInputError, TileSpec
from densedet_tile.batch import Manifest, expand_inputs, run_batch
from densedet_tile.runner import Job, row_names
from fakes import BlobDetector, blob_image

JOB = Job(tiling=TileSpec(tile=256))


def _photo(path: Path, box=(10, 20, 100, 80), size=(300, 500)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(*size, box)).save(path)
    return path


def test_a_second_run_on_a_folder_in_use_is_refused_and_runs_after_it(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    first = Manifest(out)
    first.lock()  # a run holding the folder
    try:
        with pytest.raises(InvalidInputError, match="another densedet-tile batch run is writing there"):
            run_batch([img], out, detector=BlobDetector(), job=JOB)
        assert not (out / "a.detections.json").exists()
    finally:
        first.unlock()
    assert list(out.iterdir()) == []  # the empty log the lock made went with it
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).ok == 1
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).skipped == 1  # the lock is let go each time


def test_a_symlink_loop_among_the_inputs_is_that_inputs_error(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "a.png")
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    res = run_batch([tmp_path / "loop_a", img], tmp_path / "out", detector=BlobDetector(), job=JOB)
    assert res.ok == 1 and res.failed == 1
    (bad,) = [r for r in res.records if r["status"] == "error"]
    assert "loop_a" in bad["error"] and "symbolic links" in bad["error"]


def test_a_folder_that_cannot_be_listed_is_named(tmp_path: Path, monkeypatch) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    real = Path.iterdir

    def iterdir(self):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    with pytest.raises(InvalidInputError, match=r"locked: cannot list the folder \(.*Permission denied"):
        expand_inputs([locked])


def test_a_record_cut_short_by_a_full_disk_is_taken_back_off_the_log(tmp_path: Path, monkeypatch) -> None:
    m = Manifest(tmp_path)
    m.append({"event": "run", "run": "x"})
    before = m.log_path.read_bytes()
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:  # the disk fills after 7 bytes
        return real_write(fd, data[:7])

    monkeypatch.setattr(os, "write", short_write)
    with pytest.raises(OSError, match="wrote 7 of"):
        m.append({"event": "image", "input": "a.png", "status": "ok"})
    monkeypatch.undo()
    assert m.log_path.read_bytes() == before
    m.append({"event": "end", "run": "x"})
    assert [json.loads(line)["event"] for line in m.log_path.read_text().splitlines()] == ["run", "end"]


def test_csv_and_coco_rows_are_named_after_the_file_unless_another_file_has_its_name(tmp_path: Path) -> None:
    a_jpg = _photo(tmp_path / "in" / "a.jpg")
    a_png = _photo(tmp_path / "in" / "a.png", box=(50, 60, 70, 90))
    day2 = _photo(tmp_path / "day2" / "a.jpg", box=(200, 30, 260, 90))  # another photo of a.jpg's name
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv", "coco"))
    res = run_batch([a_jpg, a_png, day2], out, detector=BlobDetector(), job=job)
    stems = {Path(r["input"]).relative_to(tmp_path).as_posix(): r["stem"] for r in res.records}
    # numbered in absolute-path order, as the main command numbers them: day2/ before in/
    assert stems == {"day2/a.jpg": "a", "in/a.jpg": "a-2", "in/a.png": "a-3"}

    def names(stem: str) -> set[str]:
        with open(out / f"{stem}.detections.csv", newline="") as fh:
            rows = {r["image_name"] for r in csv.DictReader(fh)}
        coco = json.loads((out / f"{stem}.coco.json").read_text())
        return rows | {str(d["image_id"]) for d in coco}

    # in/a.jpg shares its file name with day2/a.jpg: its rows take its stem; a.png keeps its name
    assert names("a") == {"a.jpg"} and names("a-2") == {"a-2.jpg"} and names("a-3") == {"a.png"}
    assert row_names(["x/a.jpg", "x/a.png"], ["a", "a-2"]) == [None, None]
    assert row_names(["y/a.jpg"], ["a-2"], others=["x/a.jpg"]) == ["a-2.jpg"]  # an earlier run's a.jpg


def test_a_later_runs_photo_does_not_take_the_row_name_an_earlier_photo_was_given(tmp_path: Path) -> None:
    # run 1: d1/x.jpg and d2/x.jpg (rows "x.jpg" and "x-2.jpg"); run 2: d3/x-2.jpg, whose own
    # file name is the second photo's row name: its rows were "x-2.jpg" too (an outside review)
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv", "coco"))
    out = tmp_path / "out"
    first = [_photo(tmp_path / "d1" / "x.jpg"), _photo(tmp_path / "d2" / "x.jpg", box=(50, 60, 70, 90))]
    run_batch(first, out, detector=BlobDetector(), job=job)
    later = run_batch([_photo(tmp_path / "d3" / "x-2.jpg", box=(200, 30, 260, 90))], out, detector=BlobDetector(),
                      job=job)
    assert later.records[0]["stem"] == "x-2-2"
    names = {}
    for f in out.glob("*.detections.csv"):
        with open(f, newline="") as fh:
            names[f.name] = {r["image_name"] for r in csv.DictReader(fh)}
    assert names == {"x.detections.csv": {"x.jpg"}, "x-2.detections.csv": {"x-2.jpg"},
                     "x-2-2.detections.csv": {"x-2-2.jpg"}}
    assert {str(d["image_id"]) for d in json.loads((out / "x-2-2.coco.json").read_text())} == {"x-2-2.jpg"}


def test_an_image_called_classes_gets_another_stem_beside_yolo_labels(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "classes.jpg")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "yolo"))
    res = run_batch([img], out, detector=BlobDetector(), job=job)
    assert res.ok == 1 and res.records[0]["stem"] == "classes-2"
    assert (out / "classes-2.txt").is_file() and (out / "classes.txt").read_text().strip()  # labels; class list
    again = run_batch([img], out, detector=BlobDetector(), job=job)
    assert again.skipped == 1
    shutil.rmtree(out)
    plain = run_batch([img], out, detector=BlobDetector(), job=JOB)  # no YOLO labels: its own name
    assert plain.records[0]["stem"] == "classes"


def test_a_folders_hidden_files_are_not_inputs(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "IMG_1.jpg")
    (tmp_path / "in" / "._IMG_1.jpg").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)  # a macOS resource fork
    assert expand_inputs([tmp_path / "in"]) == [img.resolve()]
    assert expand_inputs([tmp_path / "in" / "._IMG_1.jpg"]) == [(tmp_path / "in" / "._IMG_1.jpg").resolve()]  # named


def test_sighup_stops_a_run_as_sigterm_does_and_the_manifest_names_it(tmp_path: Path) -> None:
    import signal

    from densedet_tile.cli.options import Stopped, StopSignals

    # as a terminal's session starts it: under nohup (SIGHUP ignored) StopSignals leaves it ignored
    before = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        with pytest.raises(Stopped) as caught:
            with StopSignals() as stop:
                signal.raise_signal(signal.SIGHUP)  # handled in this thread before the call returns
        assert caught.value.signum == signal.SIGHUP and stop.exit_status == 129
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # handed back
    finally:
        signal.signal(signal.SIGHUP, before)

    imgs = [_photo(tmp_path / "in" / f"{k}.png") for k in range(3)]

    def hang_up(rec):
        raise Stopped(signal.SIGHUP)

    with pytest.raises(Stopped):
        run_batch(imgs, tmp_path / "out", detector=BlobDetector(), job=JOB, on_record=hang_up)
    end = Manifest(tmp_path / "out").records()[-1]
    assert end["event"] == "end" and end["stopped"] == "stopped by SIGHUP" and end["finished"] is False


def test_a_folder_given_to_the_single_image_command_points_to_batch(tmp_path: Path, capsys) -> None:
    from densedet_tile.cli import main

    (tmp_path / "photos").mkdir()
    img = _photo(tmp_path / "a.png")
    assert main([str(tmp_path / "photos"), str(img), "--out", str(tmp_path / "out"), "--detector",
                 str(Path(__file__).parent / "fakes.py") + ":make_blob", "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a folder" in err[0] and "densedet-tile batch" in err[0]
    assert (tmp_path / "out" / "a.detections.json").is_file()  # the other input still ran


def test_a_run_that_fails_while_checking_earlier_outputs_lets_go_of_the_folder(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    # an earlier result whose boxes are no list: once a TypeError after the lock was taken
    (out / "a.detections.json").write_text(json.dumps({"schema": "densedet-tile/detections@1", "boxes": None,
                                                       "num_detections": 0}))
    first = run_batch([img], out, detector=BlobDetector(), job=JOB)
    assert first.ok == 1  # redone, not skipped and not a crash
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).skipped == 1  # not refused as busy

    def broken(*a, **k):
        raise RuntimeError("disk gone")

    import densedet_tile.batch as batch

    real = batch.redo_reason  # (what batch asks of each earlier result)
    batch.redo_reason = broken
    try:
        with pytest.raises(RuntimeError):
            run_batch([img], out, detector=BlobDetector(), job=JOB)
    finally:
        batch.redo_reason = real
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).skipped == 1


def test_a_lock_taken_on_a_log_that_was_just_removed_is_taken_again_on_the_new_one(tmp_path: Path,
                                                                                    monkeypatch) -> None:
    import fcntl

    a, b, c = Manifest(tmp_path), Manifest(tmp_path), Manifest(tmp_path)
    a.lock()  # made the empty log
    real = fcntl.flock
    calls = {"n": 0}

    def late(fd, op):  # b opened the log, then a ended (removing its empty log) before b's flock
        calls["n"] += 1
        if calls["n"] == 1:
            a.unlock()
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", late)
    b.lock()
    monkeypatch.undo()
    assert calls["n"] == 2 and b.log_path.exists()  # locked again, on the log that is there now
    with pytest.raises(InvalidInputError, match="another densedet-tile batch run"):
        c.lock()
    b.unlock()


def test_row_names_never_give_two_images_one_name() -> None:
    assert row_names(["/1/a.jpg", "/2/a.jpg", "/3/a-2.jpg"], ["a", "a-2", "a-2-2"]) == [None, "a-2.jpg", "a-2-2.jpg"]
    # another image's detections in the folder (a detect run's) took the stem: named apart too
    assert row_names(["/y/x.jpg"], ["x-2"], known=["x.jpg"]) == ["x-2.jpg"]
    assert row_names(["/y/x.jpg"], ["x-2"], known=["x.png"]) == [None]


def test_classes_is_reserved_whatever_its_case(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "Classes.jpg")
    res = run_batch([img], tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256),
                                                                                 formats=("json", "yolo")))
    assert res.ok == 1 and res.records[0]["stem"] == "Classes-2"


def test_max_vram_is_planned_once_and_never_caps_torch_for_a_detector_torch_does_not_run(monkeypatch) -> None:
    import warnings

    from densedet_tile import vram
    from densedet_tile.types import RunSpec

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tiling, run = vram.fit_to_vram(BlobDetector(), TileSpec(), RunSpec(max_vram=2.0, device="cpu"))
    assert run.max_vram == 2.0 and run.batch_size == 1  # reported as asked, planned as usual
    assert vram.fit_to_vram(BlobDetector(), tiling, run) == (tiling, run)
    capped = []
    monkeypatch.setattr(vram, "apply_vram_cap", lambda gb, device: capped.append(device))
    monkeypatch.setattr("densedet_tile.detector.base.resolve_device", lambda d: d)

    class OnOnnx(BlobDetector):
        runtime = "onnxruntime"
        device = "cuda:0"

    class OnTorch(BlobDetector):
        device = "cuda:0"

    ask = RunSpec(max_vram=2.0, device="cuda:0", batch_size=4)
    vram.fit_to_vram(OnOnnx(), TileSpec(), ask)
    assert capped == []  # once, with the usual batch, this applied torch's cap on every image
    vram.fit_to_vram(OnTorch(), TileSpec(), ask)
    assert capped == ["cuda:0"]


@pytest.mark.parametrize("spoil", ["garbage\n", "", "coco:{}", "coco:[]"])
def test_an_older_versions_csv_or_coco_that_is_not_whole_is_redone(tmp_path: Path, spoil: str) -> None:
    # results from before outputs_sha256 carry no digest: their CSV and COCO were trusted as
    # they stood, "garbage" included (an upgrade review); now each must hold a row per box
    img = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv", "coco"))
    assert run_batch([img], out, detector=BlobDetector(), job=job).ok == 1
    doc = json.loads((out / "a.detections.json").read_text())
    for key in ("outputs", "outputs_sha256"):  # as a version before them wrote it
        doc.pop(key, None)
    (out / "a.detections.json").write_text(json.dumps(doc))
    assert run_batch([img], out, detector=BlobDetector(), job=job).skipped == 1  # whole: kept
    if spoil.startswith("coco:"):
        (out / "a.coco.json").write_text(spoil[5:])
    else:
        (out / "a.detections.csv").write_text(spoil)
    again = run_batch([img], out, detector=BlobDetector(), job=job)
    assert (again.ok, again.skipped) == (1, 0)


def test_redo_writes_complete_outputs_anew_and_runs_say_which_version_wrote_them(tmp_path: Path) -> None:
    # an upgraded batch kept every earlier result, with no way to have them written again but
    # deleting files (an upgrade review)
    import densedet_tile
    from densedet_tile.cli.batch import batch_main

    img = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).ok == 1
    assert run_batch([img], out, detector=BlobDetector(), job=JOB).skipped == 1
    again = run_batch([img], out, detector=BlobDetector(), job=JOB, redo=True)
    assert (again.ok, again.skipped) == (1, 0)
    doc = json.loads((out / "a.detections.json").read_text())
    assert doc["written_by"] == f"densedet-tile {densedet_tile.__version__}"
    runs = [r for r in Manifest(out).records() if r.get("event") == "run"]
    assert len(runs) == 3 and all(r["version"] == densedet_tile.__version__ for r in runs)
    fake = str(Path(__file__).parent / "fakes.py") + ":make_blob"
    assert batch_main([str(img), "--out", str(out), "--ray", "none", "--detector", fake, "--tile", "256", "-q",
                       "--redo"]) == 0
    last = [r for r in Manifest(out).records() if r.get("event") == "image"][-1]
    assert last["status"] == "ok"


def test_an_older_versions_csv_naming_a_photo_with_a_comma_and_a_line_break_is_whole(tmp_path: Path) -> None:
    img = _photo(tmp_path / "in" / "shelf, left\nend.png")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv"))
    assert run_batch([img], out, detector=BlobDetector(), job=job).ok == 1
    (jp,) = out.glob("*.detections.json")
    doc = json.loads(jp.read_text())
    doc.pop("outputs", None)
    doc.pop("outputs_sha256", None)
    jp.write_text(json.dumps(doc))
    assert run_batch([img], out, detector=BlobDetector(), job=job).skipped == 1  # read as csv reads it
