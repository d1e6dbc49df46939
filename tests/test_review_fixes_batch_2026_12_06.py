"""Batch runs whose output folder is their input folder, from an outside review (2026-12-06):
each test fails on the code before it."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile import InvalidInputError
from densedet_tile.batch import run_batch
from fakes import BlobDetector
from test_review_fixes_batch import JOB, _photo


def test_a_photo_named_like_a_preview_is_not_taken_for_one(tmp_path: Path) -> None:
    # x.preview.jpg, a photo of the user's beside x.jpg: once x's JSON was there it was left out
    # without a word, then drawn over by x's preview
    folder = tmp_path / "pv"
    _photo(folder / "x.png")
    theirs = folder / "x.preview.jpg"
    Image.fromarray(np.full((300, 500, 3), 77, np.uint8)).save(theirs)
    before = theirs.read_bytes()
    run_batch([folder], folder, detector=BlobDetector(), job=JOB)  # both photos detected
    assert (folder / "x.detections.json").is_file() and (folder / "x.preview.detections.json").is_file()
    with pytest.raises(InvalidInputError, match=r"x\.preview\.jpg: this input is where the preview of .*x\.png would be written"):
        run_batch([folder], folder, detector=BlobDetector(), job=replace(JOB, preview=True))
    assert theirs.read_bytes() == before


def test_a_preview_whose_json_a_kill_lost_is_not_a_photo_on_the_rerun(tmp_path: Path, caplog) -> None:
    # the JSON is renamed into place last: killed before it, the preview stood alone, and the
    # rerun refused it as an input where that preview goes (or, without --preview, detected it)
    folder = tmp_path / "pw"
    _photo(folder / "x.png")
    _photo(folder / "y.png", (200, 100, 290, 200))
    job = replace(JOB, preview=True)
    run_batch([folder], folder, detector=BlobDetector(), job=job)
    (folder / "x.detections.json").unlink()
    with caplog.at_level(logging.WARNING):
        summary = run_batch([folder], folder, detector=BlobDetector(), job=job)
    assert "x.preview.jpg: left out: an earlier run wrote it (manifest.jsonl lists it among its outputs)" in caplog.text
    assert (summary.ok, summary.skipped, summary.failed) == (1, 1, 0)
    assert (folder / "x.detections.json").is_file() and not (folder / "x.preview.detections.json").exists()
    # and without --preview it is not detected as a photo either
    (folder / "x.detections.json").unlink()
    summary = run_batch([folder], folder, detector=BlobDetector(), job=JOB)
    assert not (folder / "x.preview.detections.json").exists()


def test_a_rerun_says_why_it_redoes_images_done_before(tmp_path: Path, caplog) -> None:
    # every image was redone after --score-thr 0.6 without a word of why
    from densedet_tile import RunSpec

    photos = [_photo(tmp_path / "in" / f"{k}.png", (10 + 40 * k, 20, 100 + 40 * k, 80)) for k in range(3)]
    out = tmp_path / "out"
    run_batch(photos, out, detector=BlobDetector(), job=JOB)
    with caplog.at_level(logging.WARNING):
        s = run_batch(photos, out, detector=BlobDetector(), job=replace(JOB, run=RunSpec(score_thr=0.6)))
    assert s.ok == 3
    assert "3 image(s) done before are redone: other settings (run): 3" in caplog.text
    caplog.clear()
    photos[0].write_bytes(photos[0].read_bytes())  # the same name, written again: its time moved on
    import os
    os.utime(photos[0], ns=(1, 1))
    with caplog.at_level(logging.WARNING):
        s = run_batch(photos, out, detector=BlobDetector(), job=replace(JOB, run=RunSpec(score_thr=0.6)))
    assert (s.ok, s.skipped) == (1, 2)
    assert "1 image(s) done before are redone: photo changed: 1" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # nothing redone: nothing said; new images are no news
        run_batch([*photos, _photo(tmp_path / "in" / "new.png")], out, detector=BlobDetector(),
                  job=replace(JOB, run=RunSpec(score_thr=0.6)))
    assert "redone" not in caplog.text


def test_a_preview_beside_a_json_from_before_the_outputs_were_listed_is_still_one(tmp_path: Path) -> None:
    # (a second review: JSONs written before 2026-12-02 list no outputs; their previews stay previews)
    import json

    folder = tmp_path / "old"
    _photo(folder / "a.png")
    Image.fromarray(np.full((300, 500, 3), 77, np.uint8)).save(folder / "a.preview.jpg")
    (folder / "a.detections.json").write_text(json.dumps({"schema": "densedet-tile/detections@1", "boxes": []}))
    from densedet_tile.batch import expand_inputs

    assert [p.name for p in expand_inputs([folder])] == ["a.png"]
    (folder / "a.detections.json").write_text(json.dumps({"some": "thing"}))  # no JSON of ours: a photo
    assert [p.name for p in expand_inputs([folder])] == ["a.png", "a.preview.jpg"]


def test_an_empty_out_is_refused_by_batch_too(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    img = _photo(tmp_path / "in" / "a.png")
    with pytest.raises(InvalidInputError, match=r"^--out is empty: give a folder"):
        run_batch([img], "", detector=BlobDetector(), job=JOB)
    assert not (tmp_path / "manifest.jsonl").exists()


def test_a_link_to_a_photo_keeps_its_name_whether_named_or_listed(tmp_path: Path) -> None:
    # listed in its folder a link was "ext", named on its own its target's name "b": a rerun
    # wrote the photo's outputs a second time under the other stem
    target = _photo(tmp_path / "elsewhere" / "b.png")
    folder = tmp_path / "L"
    folder.mkdir()
    (folder / "ext.png").symlink_to(target)
    from densedet_tile.batch import expand_inputs

    assert [p.name for p in expand_inputs([folder])] == ["ext.png"]
    assert [p.name for p in expand_inputs([folder / "ext.png"])] == ["ext.png"]
    out = tmp_path / "out"
    run_batch([folder], out, detector=BlobDetector(), job=JOB)
    again = run_batch([folder / "ext.png"], out, detector=BlobDetector(), job=JOB)
    assert again.skipped == 1 and sorted(p.name for p in out.glob("*.detections.json")) == ["ext.detections.json"]
    # a link and its target named together are still one photo
    assert len(expand_inputs([target, folder / "ext.png"])) == 1


def test_a_link_in_a_folder_reached_through_a_link_has_one_path_named_or_listed(tmp_path: Path) -> None:
    # (a second review: named, the link kept the linked folder in its path; listed, the folder's
    # real path: two inputs, two stems)
    real = tmp_path / "real"
    target = _photo(tmp_path / "b.png")
    real.mkdir()
    (real / "a.png").symlink_to(target)
    (tmp_path / "dirlink").symlink_to(real)
    from densedet_tile.batch import expand_inputs

    listed = expand_inputs([tmp_path / "dirlink"])
    named = expand_inputs([tmp_path / "dirlink" / "a.png"])
    assert listed == named and [p.name for p in named] == ["a.png"]


def test_previews_left_out_of_a_folder_are_said_once_with_their_count(tmp_path: Path, caplog) -> None:
    # a folder that was also --out: its previews were left out without a word, where a preview
    # named on the command line gets a note (README: "left out with a note")
    folder = tmp_path / "many"
    for k in range(5):
        _photo(folder / f"p{k}.png", (10 + 30 * k, 20, 100 + 30 * k, 80))
    job = replace(JOB, preview=True)
    run_batch([folder], folder, detector=BlobDetector(), job=job)
    with caplog.at_level(logging.WARNING):
        summary = run_batch([folder], folder, detector=BlobDetector(), job=job)
    assert summary.skipped == 5 and summary.failed == 0
    notes = [r.getMessage() for r in caplog.records if "left out" in r.getMessage()]
    assert notes == [f"{folder}: left out 5 previews an earlier run drew there (p0.preview.jpg and 4 more), "
                     "not photos"]


@pytest.mark.parametrize("redo", [False, True])
def test_a_stopped_batch_says_what_running_it_again_does(tmp_path: Path, monkeypatch, capsys, redo: bool) -> None:
    # a --redo run stopped was told "re-run the same command to continue where it stopped",
    # and the same command started over from the first image
    import densedet_tile.cli.batch as cli_batch

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_batch, "_batch", stopped)
    code = cli_batch.batch_main(["a.jpg", "--out", str(tmp_path / "o"), "--ray", "none"] + (["--redo"] if redo else []))
    err = capsys.readouterr().err
    assert code != 0
    if redo:
        assert "re-run with --redo to start over from the first image, or without --redo to keep what is written" in err
    else:
        assert "re-run the same command to continue where it stopped" in err
