"""The single-image command's fixes: what a rerun removes, outputs that would overwrite inputs,
``~`` in --out, stopping on SIGTERM, --debug with a broken detector, option checks, and two
inputs of the same name."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile import InvalidInputError, TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.cli import main as cli_main
from densedet_tile.eval.formats import read_predictions
from densedet_tile.runner import Job
from fakes import BlobDetector, blob_image, run_cli, stale_temporaries

FAKES = str(Path(__file__).parents[1] / "fakes.py")
BLOB = ["--detector", f"{FAKES}:make_blob", "--tile", "256", "--device", "cpu", "-q"]


def _photo(path: Path, box=(10, 20, 100, 80)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(300, 500, box)).save(path)
    return path


def _last_line(err: str) -> str:
    return err.strip().splitlines()[-1]


# -- 1. a rerun removes only the files an earlier run recorded as its own ------------------------
def test_a_rerun_keeps_the_users_own_file_of_an_output_name(tmp_path):
    photo = _photo(tmp_path / "IMG_1.png")
    labels = tmp_path / "IMG_1.txt"  # the user's own label file beside the photo
    labels.write_text("0 0.5 0.5 0.1 0.1\n")
    notes = tmp_path / "IMG_1.detections.csv"
    notes.write_text("mine\n")
    for _ in range(2):  # the second run finds the first run's JSON there
        assert cli_main([str(photo), "--out", str(tmp_path), *BLOB]) == 0
    assert labels.read_text() == "0 0.5 0.5 0.1 0.1\n" and notes.read_text() == "mine\n"
    doc = json.loads((tmp_path / "IMG_1.detections.json").read_text())
    assert doc["outputs"] == []


def test_a_users_own_file_of_an_output_name_is_never_overwritten(tmp_path, capsys):
    photo = _photo(tmp_path / "IMG_1.png")
    labels = tmp_path / "IMG_1.txt"  # a label file of the user's, where --format yolo would write
    labels.write_text("0 0.5 0.5 0.1 0.1\n")
    assert cli_main([str(photo), "--out", str(tmp_path), "--format", "yolo", *BLOB]) == 1
    assert "IMG_1.txt is in the way" in _last_line(capsys.readouterr().err)
    assert labels.read_text() == "0 0.5 0.5 0.1 0.1\n" and not (tmp_path / "IMG_1.detections.json").exists()


def test_a_label_file_corrected_since_the_tool_wrote_it_is_kept(tmp_path, capsys, caplog):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli_main([str(photo), "--out", str(out), "--format", "yolo", *BLOB]) == 0
    doc = json.loads((out / "a.detections.json").read_text())
    assert set(doc["outputs_sha256"]) == {"a.txt"}
    assert cli_main([str(photo), "--out", str(out), "--format", "yolo", *BLOB]) == 0  # its own: replaced
    (out / "a.txt").write_text("0 0.2 0.2 0.1 0.1\n")  # corrected in a labelling tool
    assert cli_main([str(photo), "--out", str(out), "--format", "yolo", *BLOB]) == 1  # not replaced
    assert "a.txt is in the way" in _last_line(capsys.readouterr().err)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        assert cli_main([str(photo), "--out", str(out), *BLOB]) == 0  # nor removed as a stale output
    assert (out / "a.txt").read_text() == "0 0.2 0.2 0.1 0.1\n"
    assert "changed since densedet-tile wrote it" in caplog.text


def test_a_label_file_left_by_a_run_killed_before_its_json_is_redone(tmp_path, capsys):
    # killed between renaming the label file into place and the JSON: the file holds exactly
    # what the rerun writes, so it is this tool's; other outputs are replaced whatever they hold
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli_main([str(photo), "--out", str(out), "--format", "yolo,csv", *BLOB]) == 0
    (out / "a.detections.json").unlink()
    (out / "a.detections.csv").write_text("edited in a spreadsheet\r\n")
    assert cli_main([str(photo), "--out", str(out), "--format", "yolo,csv", *BLOB]) == 0, capsys.readouterr().err
    assert (out / "a.detections.csv").read_text().startswith("image_name,")


def test_a_rerun_removes_the_outputs_the_earlier_run_recorded(tmp_path):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli_main([str(photo), "--out", str(out), "--format", "csv,coco", "--preview", *BLOB]) == 0
    doc = json.loads((out / "a.detections.json").read_text())
    assert doc["outputs"] == ["a.detections.csv", "a.coco.json", "a.preview.jpg"]
    assert read_predictions(out / "a.detections.json").images["a.png"].xyxy.shape == (1, 4)  # eval reads it
    assert cli_main([str(photo), "--out", str(out), "--format", "csv", *BLOB]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.detections.csv", "a.detections.json"]


def test_a_json_without_the_record_makes_a_rerun_remove_nothing(tmp_path):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli_main([str(photo), "--out", str(out), "--format", "csv", *BLOB]) == 0
    doc = json.loads((out / "a.detections.json").read_text())
    del doc["outputs"]  # as an earlier version wrote it
    (out / "a.detections.json").write_text(json.dumps(doc))
    assert cli_main([str(photo), "--out", str(out), *BLOB]) == 0
    assert (out / "a.detections.csv").is_file()


def test_a_record_naming_other_files_removes_none_of_them(tmp_path):
    photo = _photo(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert cli_main([str(photo), "--out", str(out), *BLOB]) == 0
    keep = [out / "other.txt", out / "a.notes", tmp_path / "a.detections.csv"]
    for f in keep:
        f.write_text("x")
    doc = json.loads((out / "a.detections.json").read_text())
    doc["outputs"] = ["other.txt", "a.notes", "../a.detections.csv", 7]
    (out / "a.detections.json").write_text(json.dumps(doc))
    assert cli_main([str(photo), "--out", str(out), *BLOB]) == 0
    assert all(f.is_file() for f in keep)


# -- 2. an output that would overwrite an input -----------------------------------------------------
def test_a_preview_that_would_overwrite_another_input_is_refused_before_anything_is_written(tmp_path, capsys):
    shelf = tmp_path / "shelf"
    base = _photo(shelf / "base.jpg")
    other = shelf / "base.preview.jpg"  # a photo of its own that happens to bear the preview's name
    Image.fromarray(blob_image(200, 300, (5, 5, 50, 50))).save(other)
    before = {p.name: p.read_bytes() for p in shelf.iterdir()}
    assert cli_main([str(base), str(other), "--out", str(shelf), "--preview", *BLOB]) == 2
    line = _last_line(capsys.readouterr().err)
    assert line.startswith("densedet-tile: error: ") and str(other) in line and "preview" in line
    assert {p.name: p.read_bytes() for p in shelf.iterdir()} == before
    # without the preview nothing clashes
    assert cli_main([str(base), str(other), "--out", str(shelf), *BLOB]) == 0


def test_a_photo_under_the_previews_name_is_not_replaced_when_not_named_either(tmp_path, capsys):
    # the photo base.preview.jpg lies in --out but is not an input this time: it is no preview of
    # this tool's (none carries its mark), so the image stops with one line and nothing is written
    shelf = tmp_path / "shelf"
    base = _photo(shelf / "base.jpg")
    other = shelf / "base.preview.jpg"
    Image.fromarray(blob_image(200, 300, (5, 5, 50, 50))).save(other)
    before = {p.name: p.read_bytes() for p in shelf.iterdir()}
    assert cli_main([str(base), "--out", str(shelf), "--preview", *BLOB]) == 1
    line = _last_line(capsys.readouterr().err)
    assert str(other) in line and "is no preview this version of densedet-tile made" in line
    assert {p.name: p.read_bytes() for p in shelf.iterdir()} == before
    # a preview of this tool's whose JSON is gone (a run killed between them, or the JSON
    # deleted to redo the photo) is replaced as before
    other.unlink()
    assert cli_main([str(base), "--out", str(shelf), "--preview", *BLOB]) == 0
    (shelf / "base.detections.json").unlink()
    assert cli_main([str(base), "--out", str(shelf), "--preview", *BLOB]) == 0
    assert sorted(p.name for p in shelf.iterdir()) == ["base.detections.json", "base.jpg", "base.preview.jpg"]


def test_a_preview_of_an_earlier_run_picked_up_by_a_glob_is_left_out(tmp_path, caplog):
    # `densedet-tile shelf/*.jpg --out shelf --preview`, twice: the second glob holds the first
    # run's preview, which its JSON records: left out with a note, the photo detected again
    shelf = tmp_path / "shelf"
    base = _photo(shelf / "base.jpg")
    assert cli_main([str(base), "--out", str(shelf), "--preview", *BLOB]) == 0
    preview = shelf / "base.preview.jpg"
    assert preview.is_file()
    caplog.clear()
    assert cli_main([str(p) for p in sorted(shelf.glob("*.jpg"))] + ["--out", str(shelf), "--preview", *BLOB]) == 0
    assert any("base.preview.jpg: left out" in r.getMessage() for r in caplog.records)
    assert sorted(p.name for p in shelf.iterdir()) == ["base.detections.json", "base.jpg", "base.preview.jpg"]
    # given alone, there is nothing left to do: a usage error, nothing written
    assert cli_main([str(preview), "--out", str(shelf), "--preview", *BLOB]) == 2
    assert sorted(p.name for p in shelf.iterdir()) == ["base.detections.json", "base.jpg", "base.preview.jpg"]


def test_batch_refuses_an_output_over_an_input_too(tmp_path):
    shelf = tmp_path / "shelf"
    base = _photo(shelf / "base.png")
    other = _photo(shelf / "base.preview.jpg")
    out = tmp_path / "out"
    with pytest.raises(InvalidInputError, match="base.preview.jpg"):
        run_batch([base, other], shelf, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256), preview=True))
    assert sorted(p.name for p in shelf.iterdir()) == ["base.png", "base.preview.jpg"]  # no manifest either
    assert run_batch([base, other], out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256))).ok == 2


# -- 3. ~ in --out -------------------------------------------------------------------------------------
def test_batch_leaves_out_a_preview_of_an_earlier_run_named_again(tmp_path, caplog):
    shelf = tmp_path / "shelf"
    base = _photo(shelf / "base.jpg")
    job = Job(tiling=TileSpec(tile=256), preview=True)
    run_batch([base], shelf, detector=BlobDetector(), job=job)
    assert (shelf / "base.preview.jpg").is_file()
    caplog.clear()
    summary = run_batch(sorted(shelf.glob("*.jpg")), shelf, detector=BlobDetector(), job=job)
    assert any("base.preview.jpg: left out" in r.getMessage() for r in caplog.records)
    assert not (shelf / "base.preview.preview.jpg").exists() and summary.failed == 0


def test_a_tilde_in_out_is_the_home_folder(tmp_path, monkeypatch):
    home, cwd = tmp_path / "home", tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    photo = _photo(tmp_path / "a.png")
    assert cli_main([str(photo), "--out", "~/res", *BLOB]) == 0
    assert (home / "res" / "a.detections.json").is_file()
    assert list(cwd.iterdir()) == []


# -- 4. SIGTERM and the temporaries of a killed run ------------------------------------------------------
_STOPPER = '''
import os, signal
from fakes import BlobDetector

class Stopper(BlobDetector):
    """Sends this process SIGTERM while it works on the image of the given width."""
    def __init__(self, width):
        super().__init__()
        self.width = width
    def predict(self, tiles):
        if tiles and tiles[0].shape[1] == self.width:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().predict(tiles)

def make(width=333):
    return Stopper(width)
'''


def test_sigterm_stops_cleanly_with_143_and_rolls_the_image_back(tmp_path):
    (tmp_path / "stopper.py").write_text(_STOPPER)
    first = _photo(tmp_path / "a.png")
    second = tmp_path / "b.png"
    Image.fromarray(blob_image(300, 333, (10, 20, 100, 80))).save(second)
    out = tmp_path / "out"
    opts = ["--detector", "stopper:make", "--tile", "400", "--format", "csv", "--preview", "-q", "--out", out]
    r = run_cli(first, second, *opts, cwd=tmp_path)
    assert r.returncode == 143, r.stderr
    assert _last_line(r.stderr) == "densedet-tile: error: stopped by SIGTERM"
    assert sorted(p.name for p in out.iterdir()) == ["a.detections.csv", "a.detections.json", "a.preview.jpg"]
    # stopped before its first image was done: the folder it made is gone again
    r = run_cli(second, *opts[:-1], tmp_path / "new" / "out", cwd=tmp_path)
    assert r.returncode == 143, r.stderr
    assert not (tmp_path / "new").exists()


def test_a_killed_runs_temporaries_are_swept_at_start(tmp_path):
    out = tmp_path / "out"
    old, keep = stale_temporaries(out, [".a.detections.json.k3j_x9ab.densedet-tmp", ".a.detections.csv.Zq81hh0p.densedet-tmp.old"])
    assert cli_main([str(_photo(tmp_path / "a.png")), "--out", str(out), *BLOB]) == 0
    assert not any(f.exists() for f in old) and keep.exists()


# -- 5. --debug with a detector that cannot be built ------------------------------------------------------
def test_debug_prints_the_traceback_then_the_one_line_error(tmp_path, capsys):
    photo = _photo(tmp_path / "a.png")
    rc = cli_main([str(photo), "--detector", "nosuchmodule_xyz:factory", "--debug", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "Traceback (most recent call last)" in err
    assert _last_line(err).startswith("densedet-tile: error: detector 'nosuchmodule_xyz:factory'")
    assert not (tmp_path / "o").exists()


# -- 6. option values the specs refuse are refused by the parser, by the option's name ------------------------
@pytest.mark.parametrize("opt, value", [("--fuse-iou", "0"), ("--nms-iou", "0"), ("--input-size", "15"),
                                        ("--edge-tol", "10000"), ("--seam-tol", "1e9")])
def test_option_values_are_checked_with_the_options_name(tmp_path, capsys, opt, value):
    assert cli_main([str(tmp_path / "a.png"), opt, value, "--out", str(tmp_path / "o")]) == 2
    line = _last_line(capsys.readouterr().err)
    assert f"argument {opt}:" in line and "MergeSpec" not in line and "input_size" not in line


def test_the_pixel_limit_error_names_the_option(tmp_path, capsys):
    photo = _photo(tmp_path / "a.png")
    assert cli_main([str(photo), "--max-pixels", "1e3", "--out", str(tmp_path / "o"), *BLOB]) == 1
    line = _last_line(capsys.readouterr().err)
    assert str(photo) in line and "--max-pixels on the command line" in line


# -- 7. two inputs of the same name --------------------------------------------------------------------------
def test_two_inputs_of_one_name_are_told_apart_in_errors_and_rows(tmp_path, capsys):
    a = _photo(tmp_path / "a" / "same.png")
    b = _photo(tmp_path / "b" / "same.png", box=(200, 100, 300, 200))
    bad = ["--detector", f"{FAKES}:make_nan", "--device", "cpu", "-q", "--out", str(tmp_path / "bad")]
    assert cli_main([str(a), str(b), *bad]) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if "error" in ln]
    assert len(errors) == 2 and str(a) in errors[0] and str(b) in errors[1]

    out = tmp_path / "out"
    assert cli_main([str(a), str(b), "--out", str(out), "--format", "csv,coco", *BLOB]) == 0
    names = {}
    for stem in ("same", "same-2"):
        rows = (out / f"{stem}.detections.csv").read_text().splitlines()
        coco = json.loads((out / f"{stem}.coco.json").read_text())
        assert {r.split(",")[0] for r in rows[1:]} == {coco[0]["image_id"]}
        names[stem] = coco[0]["image_id"]
        # eval reads them back under those names
        assert list(read_predictions(out / f"{stem}.detections.csv").images) == [names[stem]]
    assert names == {"same": "same.png", "same-2": "same-2.png"}


@pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs symbolic links")
def test_a_file_also_named_through_a_link_is_detected_once_and_said(tmp_path, caplog):
    photo = _photo(tmp_path / "IMG_0042.png")
    (tmp_path / "latest.png").symlink_to(photo.name)
    out = tmp_path / "out"
    with caplog.at_level("WARNING", logger="densedet_tile"):
        assert cli_main([str(tmp_path / "latest.png"), str(photo), str(tmp_path / "." / "latest.png"),
                         "--out", str(out), *BLOB]) == 0
    assert sorted(p.name for p in out.glob("*.detections.json")) == ["latest.detections.json"]
    said = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert len(said) == 1 and "IMG_0042.png: left out: the same file as" in said[0] and "latest.png" in said[0]
