"""A resumed batch and the version of the engine's rules (runner.RULES_VERSION): the request key
recorded the settings but not the rules that turn them into boxes, so a batch resumed after an
upgrade that changed those rules (the scale rule of 2026-12-06) kept the older engine's results
without a word. Each test fails on the code before the version was recorded."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from densedet_tile import runner
from densedet_tile.batch import run_batch
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.runner import RULES_VERSION, Job, request_key
from fakes import BlobDetector
from test_review_fixes_batch import JOB, _photo


def _rules_of(out: Path, stem: str, rules: object = "drop") -> None:
    """The result of ``stem`` as if made under ``rules`` ("drop": recorded without any, as every
    result before the version was)."""
    path = out / f"{stem}.detections.json"
    doc = json.loads(path.read_text())
    job = doc["settings"]["requested"]["job"]
    if rules == "drop":
        job.pop("rules", None)
    else:
        job["rules"] = rules
    path.write_text(json.dumps(doc))


def test_every_request_records_the_rules_version_whatever_the_detector() -> None:
    # the rules decide the boxes of an outside detector as much as the built-in model's
    for det in (None, BlobDetector(), DetectorSpec(device="cpu"), DetectorSpec(kind="yolo", checkpoint="m.onnx")):
        assert request_key(Job(), det)["rules"] == RULES_VERSION
    assert isinstance(RULES_VERSION, int) and RULES_VERSION >= 1


def test_results_of_other_rules_are_redone_and_said_once_those_of_the_same_kept(tmp_path: Path, caplog) -> None:
    photos = [_photo(tmp_path / "in" / f"p{k}.png", (10 + 40 * k, 20, 100 + 40 * k, 80)) for k in range(4)]
    out = tmp_path / "out"
    assert run_batch(photos, out, detector=BlobDetector(), job=JOB).ok == 4
    _rules_of(out, "p0")  # written before results carried the version: older
    _rules_of(out, "p1", RULES_VERSION - 1)
    _rules_of(out, "p2", RULES_VERSION + 1)  # a later engine's, read after a downgrade
    with caplog.at_level(logging.WARNING):
        s = run_batch(photos, out, detector=BlobDetector(), job=JOB)
    assert (s.ok, s.skipped, s.failed) == (3, 1, 0)
    assert [r["input"] for r in s.records if r["status"] == "skipped"] == [str(photos[3])]
    lines = [r.getMessage() for r in caplog.records if "redone" in r.getMessage()]
    assert len(lines) == 1, lines  # one line for the run, not one per image
    assert lines[0].startswith("3 image(s) done before are redone: ")
    assert f"made by an older engine (before rules {RULES_VERSION}): 1" in lines[0]
    assert f"made by an older engine (rules {RULES_VERSION - 1}, now {RULES_VERSION}): 1" in lines[0]
    assert f"made by a newer engine (rules {RULES_VERSION + 1}, now {RULES_VERSION}): 1" in lines[0]
    # redone under today's rules, and kept from then on
    for k in range(3):
        doc = json.loads((out / f"p{k}.detections.json").read_text())
        assert doc["settings"]["requested"]["job"]["rules"] == RULES_VERSION
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        s = run_batch(photos, out, detector=BlobDetector(), job=JOB)
    assert (s.ok, s.skipped) == (0, 4) and "redone" not in caplog.text


def test_an_upgrade_that_bumps_the_rules_redoes_every_result(tmp_path: Path, caplog, monkeypatch) -> None:
    # the same settings and detector (an outside one here) after an engine whose rules moved on
    photos = [_photo(tmp_path / "in" / f"p{k}.png", (10 + 40 * k, 20, 100 + 40 * k, 80)) for k in range(2)]
    out = tmp_path / "out"
    assert run_batch(photos, out, detector=BlobDetector(), job=JOB).ok == 2
    monkeypatch.setattr(runner, "RULES_VERSION", RULES_VERSION + 1)
    with caplog.at_level(logging.WARNING):
        s = run_batch(photos, out, detector=BlobDetector(), job=JOB)
    assert (s.ok, s.skipped) == (2, 0)
    assert (f"2 image(s) done before are redone: made by an older engine (rules {RULES_VERSION}, now "
            f"{RULES_VERSION + 1}): 2") in caplog.text
    assert run_batch(photos, out, detector=BlobDetector(), job=JOB).skipped == 2
