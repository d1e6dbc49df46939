"""An output name longer than the file system holds fails before the detector runs, with the
line the write would have given (it failed only at write time, the detection's time lost)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile.runner import Job, process_image
from densedet_tile.types import TileSpec
from fakes import BlobDetector, blob_image


def _limit(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def test_an_output_name_too_long_fails_before_the_detector_runs(tmp_path: Path) -> None:
    limit = _limit(tmp_path)
    stem = "p" * (limit - len(".png"))  # the photo's name fits; "<stem>.detections.json" does not
    photo = tmp_path / f"{stem}.png"
    Image.fromarray(blob_image(120, 160, (10, 10, 60, 60))).save(photo)
    det = BlobDetector()
    out = tmp_path / "out"
    res = process_image(photo, det, Job(tiling=TileSpec(tile=128)), out)
    assert res.status == "error" and det.calls == []
    assert res.error.endswith(f"{stem}.detections.json: File name too long")
    assert not out.exists() or list(out.iterdir()) == []


def test_names_that_fit_run_as_before(tmp_path: Path) -> None:
    limit = _limit(tmp_path)
    stem = "p" * (limit - len(".detections.json"))  # the longest stem whose outputs all fit
    photo = tmp_path / f"{stem}.png"
    Image.fromarray(blob_image(120, 160, (10, 10, 60, 60))).save(photo)
    det = BlobDetector()
    res = process_image(photo, det, Job(tiling=TileSpec(tile=128), preview=False), tmp_path / "out")
    assert res.status == "ok" and det.calls and (tmp_path / "out" / f"{stem}.detections.json").is_file()


def test_an_audit_report_name_too_long_fails_before_the_detector_runs(tmp_path: Path, monkeypatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import densedet_tile.cli.audit as cli

    limit = _limit(tmp_path)
    stem = "p" * (limit - len(".png"))  # the photo's name fits; "<stem>.audit.json" does not
    photo = tmp_path / f"{stem}.png"
    Image.fromarray(blob_image(120, 160, (10, 10, 60, 60))).save(photo)
    calls = []
    monkeypatch.setattr(cli, "_detect", lambda *a, **k: calls.append(1))
    assert cli.audit_main([str(photo), "--out", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err.strip()
    assert calls == [] and len(err.splitlines()) == 1 and err.endswith("File name too long")
    assert not (tmp_path / "out").exists()
