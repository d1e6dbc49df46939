"""Cases an outside review of the command line found on 2026-12-03: an output that is a device
or a pipe, detector options an audit of given boxes dropped without a word, the boxes of another
photo, a misspelled verb, a COCO file with no boxes, a two-point region, an empty photo in adapt."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.cli import main
from densedet_tile.errors import InvalidInputError, one_line
from densedet_tile.io import ensure_out_file, write_files

from fakes import write_aisle_detections

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shelf.jpg"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def aisle_boxes() -> np.ndarray:
    """Three shelves of 12 products, 60 x 100 px."""
    return np.array([[20 + 70 * i, 30 + 140 * r, 80 + 70 * i, 130 + 140 * r] for r in range(3) for i in range(12)],
                    np.float64)


@needs_fifo
def test_an_output_that_is_a_pipe_is_refused_and_left_as_it_was(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    with pytest.raises(InvalidInputError, match="not a regular file"):
        ensure_out_file(pipe, option="-o")
    with pytest.raises(OSError) as info:
        write_files({pipe: "x"})
    assert info.value.errno == errno.EEXIST and "not a regular file" in one_line(info.value)
    assert pipe.is_fifo() and os.listdir(tmp_path) == ["pipe"]  # no temporary left beside it
    # through eval's -o: one line, exit 2, the pipe still a pipe
    det = tmp_path / "a.detections.json"
    write_aisle_detections(det, aisle_boxes(), 900, 450)
    rc, out, err = run(["eval", str(det), str(det), "-o", str(pipe)], capsys)
    assert rc == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert "-o" in err and "pipe" in err and "not a regular file" in err
    assert pipe.is_fifo()


def test_a_system_error_reads_as_file_and_problem() -> None:
    exc = IsADirectoryError(errno.EISDIR, "a folder is in the way", "out/x.detections.json")
    assert one_line(exc) == "out/x.detections.json: a folder is in the way"
    assert one_line(OSError(errno.ENOSPC, "No space left on device")) == "No space left on device"
    assert one_line(OSError("plain message")) == "plain message"
    two = FileExistsError(errno.EEXIST, "File exists", ".a.tmp", None, "out/a.json")
    assert one_line(two) == ".a.tmp -> out/a.json: File exists"
    assert one_line(ValueError("a\n  b")) == "a b"


def test_detect_names_the_output_a_folder_blocks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:

    out = tmp_path / "out"
    (out / "shelf.detections.json").mkdir(parents=True)
    rc, _, err = run([str(EXAMPLE), "--out", str(out), "--detector", "fakes:make_blob", "-q"], capsys)
    assert rc == 1
    line = err.strip().splitlines()[-1]
    assert "[Errno" not in line and line.endswith("shelf.detections.json: a folder is in the way")


@pytest.mark.parametrize("options, named", [
    (["--score-thr", "0.9"], "--score-thr"),
    (["--tile", "640", "--score-thr", "0.9"], "--tile, --score-thr"),
    (["--detector", "yolo"], "--detector"),
])
def test_audit_of_given_boxes_refuses_detector_options(options: list[str], named: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    det = tmp_path / "aisle.detections.json"
    write_aisle_detections(det, aisle_boxes(), 900, 450)
    out = tmp_path / "out"
    rc, stdout, err = run(["audit", "--detections", str(det), "--out", str(out), *options], capsys)
    assert rc == 2 and stdout == "" and len(err.strip().splitlines()) == 1
    assert err.split("error: ", 1)[1].startswith(named + ":") and str(det) in err
    assert not out.exists()
    rc, _, _ = run(["audit", "--detections", str(det), "--out", str(out)], capsys)  # without them: audited
    assert rc == 0 and (out / "aisle.audit.json").is_file()


def test_audit_warns_when_the_boxes_are_of_another_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    det = tmp_path / "aisle.detections.json"
    write_aisle_detections(det, aisle_boxes(), 2048, 1536)  # the example's size, another name
    photo = tmp_path / "shelf.jpg"
    shutil.copy(EXAMPLE, photo)
    rc, _, err = run(["audit", str(photo), "--detections", str(det), "--out", str(tmp_path / "o1")], capsys)
    assert rc == 0
    said = f"{det} holds the boxes of 'aisle.jpg', audited here with {photo}"
    assert said in err
    doc = json.loads((tmp_path / "o1" / "shelf.audit.json").read_text())
    assert any(said in w for w in doc["warnings"])
    # the photo they name: nothing to say
    named = tmp_path / "aisle.jpg"
    shutil.copy(EXAMPLE, named)
    rc, _, err = run(["audit", str(named), "--detections", str(det), "--out", str(tmp_path / "o2")], capsys)
    assert rc == 0 and "holds the boxes of" not in err


def test_a_misspelled_verb_is_named_and_nothing_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLE, tmp_path / "shelf.jpg")
    rc, out, err = run(["btach", "shelf.jpg", "--out", "o"], capsys)
    assert rc == 2 and out == "" and "did you mean 'batch'?" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    rc, _, err = run(["Audit", "shelf.jpg"], capsys)
    assert rc == 2 and "did you mean 'audit'?" in err
    # the start of a verb is one too (the CLI module of convert-checkpoint is called convert)
    rc, _, err = run(["convert", "old.pth", "new.pth"], capsys)
    assert rc == 2 and "did you mean 'convert-checkpoint'?" in err
    # a name like no verb is a missing image, as before; a file named like a verb is an image
    rc, _, err = run(["qqqq", "--out", "o"], capsys)
    assert rc == 1 and "qqqq: no such file" in err and "verb" not in err
    (tmp_path / "batc").write_bytes(b"")
    rc, _, err = run(["batc", "--out", "o"], capsys)
    assert "batc" in err and "did you mean" not in err


def test_detect_may_be_named_as_a_verb(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o"
    rc, _, _ = run(["detect", str(EXAMPLE), "--out", str(out), "--detector", "fakes:make_blob", "-q"], capsys)
    assert rc == 0 and (out / "shelf.detections.json").is_file()


def test_a_coco_file_without_annotations_is_no_ground_truth(tmp_path: Path) -> None:
    from densedet_tile.eval.formats import read_ground_truth

    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80}]
    (tmp_path / "info.json").write_text(json.dumps({"images": images}))
    with pytest.raises(InvalidInputError, match="no 'annotations' in it"):
        read_ground_truth(tmp_path / "info.json")
    # an empty list is a ground truth with nothing in it
    (tmp_path / "empty.json").write_text(json.dumps({"images": images, "annotations": [],
                                                     "categories": [{"id": 1, "name": "product"}]}))
    gt = read_ground_truth(tmp_path / "empty.json")
    assert len(gt.images["a.jpg"].xyxy) == 0


@pytest.mark.parametrize("ring, points", [([[0, 0], [10, 10], [0, 0]], 2), ([[5, 5], [5, 5]], 1)])
def test_a_region_of_fewer_than_three_points_says_so(ring: list, points: int) -> None:
    from densedet_tile.audit import parse_regions

    for geom in ({"type": "Polygon", "coordinates": [ring]}, {"type": "MultiPolygon", "coordinates": [[ring]]}):
        with pytest.raises(InvalidInputError, match=f"feature 1 has a ring of {points} distinct point"):
            parse_regions(geom, source="r.json")
    ok = parse_regions({"type": "Polygon", "coordinates": [[[0, 0], [10, 0], [10, 10], [0, 0]]]}, source="r.json")
    assert ok[0].area == pytest.approx(50.0)


def test_adapt_calls_an_empty_photo_empty(tmp_path: Path) -> None:
    from densedet_tile.train.adapt import find_photos

    (tmp_path / "zero.jpg").write_bytes(b"")
    shutil.copy(EXAMPLE, tmp_path / "shelf.jpg")
    good, bad, _ = find_photos(tmp_path)
    assert [p.name for p in good] == ["shelf.jpg"]
    assert [(p.name, why) for p, why in bad] == [("zero.jpg", "the file is empty")]


@needs_fifo
@pytest.mark.parametrize("resume", [False, True])
def test_adapt_refuses_an_out_that_is_a_pipe_new_or_resumed(tmp_path: Path, resume: bool) -> None:
    pytest.importorskip("torch")
    from densedet_tile.train.adapt import AdaptRun

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLE, photos / "shelf.jpg")
    os.mkfifo(tmp_path / "w.pt")
    with pytest.raises(InvalidInputError, match="not a regular file"):
        AdaptRun(photos, tmp_path / "w.pt", None, resume=resume, overwrite=True)
    assert (tmp_path / "w.pt").is_fifo()


def test_adapt_keeps_a_text_of_the_users_beside_an_adapt_report(tmp_path: Path) -> None:
    # an outside review: an adapt .report.json beside it made any .report.txt count as adapt's
    pytest.importorskip("torch")
    from densedet_tile.train.adapt import AdaptRun, _adapt_report_text

    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(EXAMPLE, photos / "shelf.jpg")
    report = {"status": "stopped", "out": "n.pt", "folder": "photos", "settings": {}, "rounds": [],
              "state": "n.state.pt", "photos_used": 0, "holdout": 0, "skipped": []}
    (tmp_path / "n.report.json").write_text(json.dumps(report))
    (tmp_path / "n.report.txt").write_text("my notes\n")
    with pytest.raises(InvalidInputError, match=r"n\.report\.txt exists"):
        AdaptRun(photos, tmp_path / "n.pt")
    assert (tmp_path / "n.report.txt").read_text() == "my notes\n"
    # the text an adapt run writes is known as its own
    (tmp_path / "n.report.txt").write_text("densedet-tile adapt: stopped (state in n.state.pt; run again)\n")
    assert _adapt_report_text(tmp_path / "n.report.txt") and not _adapt_report_text(tmp_path / "n.report.json")
