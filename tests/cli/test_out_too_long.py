"""An output folder or file whose name is longer than the file system takes is a path given
wrong: one line that names the option, exit 2, and no folder left behind, for every verb.

``batch --out <too long>`` ended with "/.../ooo...: File name too long" and exit 1 (finding the
folders to make raised outside the run's error handling, and ENAMETOOLONG was not counted as a
path error); detect and audit said it the same way; ``eval -o`` said it only after the work,
leaving the folders made above it."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from densedet_tile.cli import main
from densedet_tile.cli.options import exit_status_of
from fakes import blob_photo as _photo
from fakes import error_lines as _errors

BLOB = ["--detector", "fakes:make_blob", "--tile", "256", "--device", "cpu"]
#: a folder name no file system takes (a component over 255 bytes): ENAMETOOLONG, for root too
LONG = "o" * 300
TOO_LONG = os.strerror(errno.ENAMETOOLONG)




def test_a_name_too_long_is_a_path_error():
    assert exit_status_of(OSError(errno.ENAMETOOLONG, TOO_LONG, LONG)) == 2
    assert exit_status_of(OSError(errno.ENOSPC, "No space left on device", "x")) == 1  # (unchanged)


@pytest.mark.parametrize("out", [LONG, f"new/{LONG}", f"new/{LONG}/sub"], ids=["here", "new", "new-sub"])
@pytest.mark.parametrize(("verb", "lead"), [
    (["batch", "--ray", "none"], "densedet-tile batch: error: --out "),
    ([], "densedet-tile: error: --out "),
    (["audit"], "densedet-tile audit: error: --out "),
], ids=["batch", "detect", "audit"])
def test_an_out_folder_whose_name_is_too_long_is_one_line_exit_2_and_no_folder(
        verb, lead, out, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _photo(tmp_path / "ok.png")
    rc = main([*verb, "ok.png", "--out", out, "-q", *BLOB])
    err = capsys.readouterr().err
    assert rc == 2, err
    (line,) = _errors(err)
    assert line.startswith(lead) and line.endswith(f"{LONG}{out.split(LONG)[1]}: cannot write there ({TOO_LONG})"), line
    assert "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["ok.png"]  # no folder made above it left behind


def test_batch_says_what_finding_its_folders_to_make_raised_as_an_out_error(tmp_path: Path, monkeypatch,
                                                                           capsys) -> None:
    # (it ran before the run's error handling: a bare line, or a traceback under --debug)
    import densedet_tile.cli.batch as batch_cli

    def refused(path):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(batch_cli, "new_folders", refused)
    _photo(tmp_path / "ok.png")
    rc = main(["batch", "ok.png", "--out", "o", "--ray", "none", "--debug", *BLOB])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert _errors(err) == ["densedet-tile batch: error: --out o: o: Permission denied"]


@pytest.mark.parametrize("out", [f"{LONG}.json", f"new/{LONG}.json", f"new/{LONG}/m.json"],
                         ids=["here", "new", "new-sub"])
def test_an_eval_output_file_whose_name_is_too_long_is_said_before_the_work(out, tmp_path: Path, monkeypatch,
                                                                          capsys) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gt.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "bbox": [1, 1, 9, 9], "category_id": 1, "area": 81, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "product"}]}))
    (tmp_path / "pred.json").write_text(json.dumps([{"image_id": 1, "bbox": [1, 1, 9, 9], "category_id": 1,
                                                     "score": 0.9}]))
    rc = main(["eval", "pred.json", "gt.json", "-o", out])
    cap = capsys.readouterr()
    assert rc == 2, cap.err
    assert _errors(cap.err) == [f"densedet-tile eval: error: -o {out}: cannot write there ({TOO_LONG})"]
    assert cap.out == ""  # said before the metrics were worked out
    assert sorted(os.listdir(tmp_path)) == ["gt.json", "pred.json"]
