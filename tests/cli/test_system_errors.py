"""System errors that no verb catches itself (a file in a folder the user may not enter,
standard output on a full disk) end the command with one line naming the file or the stream,
not a traceback (an outside review of 2026-12-05)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import densedet_tile.cli.detect as detect_cli
import densedet_tile.cli.eval as eval_cli
from densedet_tile.cli import main


@pytest.mark.parametrize(("exc", "status"), [
    (PermissionError(13, "Permission denied", "locked/shelf.jpg"), 2),
    (IsADirectoryError(21, "Is a directory", "locked/shelf.jpg"), 2),
    (OSError(5, "Input/output error", "locked/shelf.jpg"), 1),
])
def test_an_uncaught_system_error_is_one_line_naming_the_file(exc: OSError, status: int,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    # where a verb meets it (Path.is_dir() of a file in a folder without the x permission raises)
    def fails(argv: list[str]) -> int:
        raise exc

    monkeypatch.setattr(detect_cli, "detect_main", fails)
    rc = main(["locked/shelf.jpg"])
    out, err = capsys.readouterr()
    assert rc == status and out == ""
    assert err.strip().splitlines() == [f"densedet-tile: error: locked/shelf.jpg: {exc.strerror}"]


def test_a_verb_names_itself_and_debug_adds_the_traceback(monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import logging

    def fails(argv: list[str]) -> int:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)  # as --debug does for the run
        raise PermissionError(13, "Permission denied", "gt.json")

    monkeypatch.setattr(eval_cli, "eval_main", fails)
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    h = Keep()
    logging.getLogger("densedet_tile").addHandler(h)
    try:
        rc = main(["eval", "p.json", "gt.json"])
    finally:
        logging.getLogger("densedet_tile").removeHandler(h)
    err = capsys.readouterr().err
    assert rc == 2 and "densedet-tile eval: error: gt.json: Permission denied" in err
    assert any(r.exc_info and r.exc_info[1].filename == "gt.json" for r in records)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_standard_output_on_a_full_disk_is_one_line(tmp_path: Path) -> None:
    # `densedet-tile eval ... > metrics.txt` on a full disk: the table cannot be written
    (tmp_path / "p.json").write_text(json.dumps({
        "schema": "densedet-tile/detections@1", "image": {"name": "a.jpg", "width": 400, "height": 300},
        "boxes": [[10, 10, 60, 90]], "scores": [0.9], "labels": [0]}))
    (tmp_path / "gt.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 400, "height": 300}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 50, 80], "category_id": 1, "area": 4000,
                         "iscrowd": 0}],
        "categories": [{"id": 1, "name": "product"}]}))
    argv = [sys.executable, "-m", "densedet_tile", "eval", str(tmp_path / "p.json"), str(tmp_path / "gt.json")]
    ok = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr  # the files are right: only standard output differs below
    with open("/dev/full", "w") as full:
        p = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 1
    lines = p.stderr.strip().splitlines()
    assert lines[-1] == "densedet-tile eval: error: standard output: No space left on device", p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr


def _lock(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Make the files under ``folder`` behave as in a folder without the x permission (as a
    user who is not root sees it): stat and lstat of anything inside raise PermissionError."""
    import pathlib

    stat, lstat = pathlib.Path.stat, pathlib.Path.lstat
    inside = str(folder) + os.sep

    def guard(method):
        def checked(self, *a, **k):
            if os.path.abspath(self).startswith(inside):
                raise PermissionError(13, "Permission denied", str(self))
            return method(self, *a, **k)
        return checked

    monkeypatch.setattr(pathlib.Path, "stat", guard(stat))
    monkeypatch.setattr(pathlib.Path, "lstat", guard(lstat))


def test_a_batch_input_in_a_locked_folder_fails_as_that_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from densedet_tile.batch import expand_inputs

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    _lock(monkeypatch, tmp_path / "locked")
    # before: the first stat raised, and the whole run stopped blaming --out
    got = expand_inputs([str(tmp_path / "b.jpg"), str(tmp_path / "locked" / "a.jpg")])
    assert [p.name for p in got] == ["b.jpg", "a.jpg"]


def test_an_audit_photo_in_a_locked_folder_is_as_one_not_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from densedet_tile.cli.audit import _photo_named_in

    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "a.jpg").write_bytes(b"x")
    _lock(monkeypatch, tmp_path / "locked")
    assert _photo_named_in(str(tmp_path / "locked" / "a.jpg"), str(tmp_path / "a.detections.json"), 10, 10) is None


def test_audit_says_a_readers_warning_once(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # audit reads the photo twice (to detect, then to look at the gaps' pixels): each reader
    # warning was shown twice
    import logging

    from PIL import Image

    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # the command's own log lines, as from a shell

    im = Image.open(Path(__file__).resolve().parents[2] / "examples" / "shelf.jpg").convert("RGB")
    im = im.resize((im.width // 4, im.height // 4))
    exif = im.getexif()
    exif[0x0112] = 9  # no such orientation
    photo = tmp_path / "odd.jpg"
    im.save(photo, exif=exif.tobytes())
    rc = main(["audit", str(photo), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 0
    assert err.count("invalid orientation tag 9") == 1, err


@pytest.mark.parametrize(("argv", "said"), [
    (["--detector", "onnx", "--checkpoint", "FOLDER"], "onnx model FOLDER: is a folder, not a model file"),
    (["--detector", "yolo", "--checkpoint", "FOLDER"], "yolo model FOLDER: is a folder, not a model file"),
    (["--detector", "default", "--checkpoint", "FOLDER", "--detector-option", "runtime=torch"],
     "checkpoint FOLDER: is a folder, not a checkpoint file"),
])
def test_a_folder_given_as_the_model_is_called_a_folder(argv: list[str], said: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    if "runtime=torch" in argv:
        pytest.importorskip("torch")
    folder = tmp_path / "weights"
    folder.mkdir()
    example = Path(__file__).resolve().parents[2] / "examples" / "shelf.jpg"
    rc = main([str(example), "--out", str(tmp_path / "o"), *[str(folder) if a == "FOLDER" else a for a in argv]])
    err = capsys.readouterr().err
    assert rc == 2 and said.replace("FOLDER", str(folder)) in err, err
    assert not (tmp_path / "o").exists()
