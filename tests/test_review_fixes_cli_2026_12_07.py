"""Faults found by an outside review of the commands' bad-input paths (2026-12-07, stop 67):
each was a Python traceback where the project promises one line and an exit code."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.cli import main
from densedet_tile.detector.base import MAX_THREADS, check_threads
from densedet_tile.errors import InvalidInputError


@pytest.mark.parametrize("value", ["3000000000", "99999999999999999999", str(MAX_THREADS + 1), "0"])
def test_adapt_refuses_a_thread_count_no_runtime_takes_in_one_line(tmp_path, capsys, value) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(photos / "a.jpg")
    code = main(["adapt", str(photos), "--out", str(tmp_path / "w.pt"), "--steps", "1", "--threads", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "--threads" in err[0] and value in err[0] and "Traceback" not in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing written


@pytest.mark.parametrize("value", [0, -1, True, 2.0, MAX_THREADS + 1, 10 ** 20])
def test_every_detector_checks_threads_the_same_way(value) -> None:
    with pytest.raises(InvalidInputError, match=f"at most {MAX_THREADS}"):
        check_threads(value)


@pytest.mark.parametrize("value", [1, MAX_THREADS, np.int64(4), None])
def test_usable_thread_counts_pass(value) -> None:
    assert check_threads(value) == (None if value is None else int(value))


def test_detect_refuses_a_huge_thread_option_naming_it(tmp_path, capsys) -> None:
    img = tmp_path / "a.jpg"
    Image.fromarray(np.full((64, 64, 3), 100, np.uint8)).save(img)
    code = main([str(img), "--out", str(tmp_path / "o"), "-q", "--detector-option", "threads=99999999999999999999"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "threads must be a positive int of at most" in err[0] and "incompatible function arguments" not in err[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


@pytest.mark.parametrize("name", ["a\x00b.jpg", "\ud800x.jpg"])
def test_audit_takes_a_photo_name_no_file_can_have_as_a_photo_not_found(tmp_path, capsys, name) -> None:
    # a JSON handed to a service may name its photo with a NUL byte or a lone surrogate: the
    # look for the photo raised ValueError out of the command (a traceback, exit 1)
    boxes = [[10.0 + 60 * c, 10.0 + 90 * r, 60.0 + 60 * c, 90.0 + 90 * r] for r in range(3) for c in range(6)]
    det = tmp_path / "boxes.json"
    det.write_text(json.dumps({
        "schema": "densedet-tile/detections@1",
        "image": {"path": name, "name": "shelf.jpg", "width": 400, "height": 300},
        "settings": {}, "model": {}, "timings": {}, "num_tiles": 1,
        "boxes": boxes, "scores": [0.9] * len(boxes), "labels": [0] * len(boxes), "categories": {"0": "product"}}))
    code = main(["audit", "--detections", str(det), "--out", str(tmp_path / "a"), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "is not found from here" in err and "Traceback" not in err
    doc = json.loads(next((tmp_path / "a").glob("*.audit.json")).read_text())
    assert doc["summary"]["products"] == len(boxes)
