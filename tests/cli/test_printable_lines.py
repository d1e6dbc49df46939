"""Messages stay one line of the terminal whatever a file name holds, and every gap the audit
finds is either judged in the photo or said not to be (an outside review, 2026-12-06)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit import AuditSettings, check_gaps, run_audit
from densedet_tile.cli import _LineFormatter
from densedet_tile.cli.audit import audit_main
from densedet_tile.cli.options import error
from densedet_tile.errors import printable, shown_name
from fakes import printed_shelf

ODD = "nl\nname\x1b[31mRED"


def test_printable_escapes_control_characters_and_keeps_letters():
    assert printable(f"{ODD}.jpg") == "nl\\nname\\x1b[31mRED.jpg"
    assert printable("café 商品\ttab") == "café 商品\\ttab"
    assert shown_name("a\rb\x07c") == "a\\rb\\x07c"
    assert printable("plain name.jpg") == "plain name.jpg"


def test_log_lines_escape_a_name_but_keep_a_traceback():
    fmt = _LineFormatter("densedet-tile: %(levelname)s: %(message)s")
    rec = logging.LogRecord("densedet_tile", logging.WARNING, __file__, 1, "%s: tile replaced", (f"{ODD}.jpg",), None)
    line = fmt.format(rec)
    assert line == "densedet-tile: WARNING: nl\\nname\\x1b[31mRED.jpg: tile replaced"
    try:
        raise ValueError("boom")
    except ValueError:
        rec = logging.LogRecord("densedet_tile", logging.DEBUG, __file__, 1, "traceback", (), sys.exc_info())
    assert "Traceback" in fmt.format(rec) and len(fmt.format(rec).splitlines()) > 2


def test_an_error_naming_an_odd_file_is_one_line(capsys: pytest.CaptureFixture[str]):
    error("densedet-tile", f"{ODD}.jpg: not an image")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\x1b" not in err and "\\x1b[31mRED.jpg" in err


def test_audit_warnings_naming_an_odd_photo_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    img, boxes = printed_shelf()
    h, w = img.shape[:2]
    photo = tmp_path / f"{ODD}.png"
    Image.fromarray(img).save(photo)
    det = tmp_path / "shelf.detections.json"  # the boxes of another photo's name: the audit warns
    det.write_text(json.dumps({"schema": "densedet-tile/detections@1",
                               "image": {"name": "shelf.jpg", "width": w, "height": h},
                               "boxes": np.round(boxes, 2).tolist(), "scores": [0.9] * len(boxes),
                               "labels": [0] * len(boxes)}))
    assert audit_main(["--detections", str(det), str(photo), "--out", str(tmp_path / "o"), "-q"]) == 0
    err = capsys.readouterr().err
    warned = [ln for ln in err.splitlines() if "audited here with" in ln]
    assert len(warned) == 1 and "nl\\nname\\x1b[31mRED.png" in warned[0]
    assert "\x1b" not in err and all(ln.startswith("densedet-tile audit: ") for ln in err.splitlines())


def test_gaps_too_narrow_for_a_pixel_are_said_not_checked():
    img, boxes = printed_shelf()
    # products 5 px apart, their boxes half a pixel narrower on each side: gaps of 6 px found at a
    # tiny --gap-k, of which some hold no whole pixel in their middle
    thin = boxes + np.array([0.5, 0.0, -0.5, 0.0])
    res = check_gaps(run_audit(thin, img.shape[1], img.shape[0], settings=AuditSettings(gap_k=0.01)), img)
    unjudged = [g for g in res.gaps if g.looks is None]
    assert unjudged, "expected gaps too narrow to judge"
    said = [w for w in res.warnings if "too narrow" in w]
    assert len(said) == 1 and said[0].startswith(f"{len(unjudged)} gap")
    # a check at the default gap size says nothing of the kind
    plain = check_gaps(run_audit(boxes, img.shape[1], img.shape[0]), img)
    assert not any("too narrow" in w for w in plain.warnings)
