"""An outside review of stops and failing streams (2026-12-05, latest): standard error closed or
on a full disk ended a run of several images after the first; a stop signal that came while a C
extension was importing read as a broken install; ``eval`` had no stop handling; ``audit`` and
``eval`` gave a full disk exit 2 (bad input) instead of 1; a stop between the write probe's
creation and removal left it in the output folder for good."""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import densedet_tile.detector.builtin as builtin
import densedet_tile.eval.formats as formats
from densedet_tile import io as dio
from densedet_tile.cli import main

FAKE = str(Path(__file__).resolve().parents[1] / "fakes.py") + ":BlobDetector"


def _photos(folder: Path, n: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img = np.zeros((90, 120, 3), np.uint8)
        img[20:60, 30 + 10 * i:70 + 10 * i] = 255
        Image.fromarray(img).save(folder / f"p{i}.png")
        out.append(str(folder / f"p{i}.png"))
    return out


class _Failing:
    """A standard stream whose every write fails as a closed descriptor or a full disk does."""

    def __init__(self, code: int) -> None:
        self.code = code
        self.encoding = "utf-8"

    def write(self, text: str) -> int:
        raise OSError(self.code, os.strerror(self.code))

    def flush(self) -> None:
        raise OSError(self.code, os.strerror(self.code))

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "closed")


@pytest.mark.parametrize("code", [errno.EBADF, errno.ENOSPC])
def test_a_failing_standard_error_loses_the_messages_not_the_run(tmp_path, monkeypatch, code: int) -> None:
    photos = _photos(tmp_path / "in", 3)
    monkeypatch.setattr(sys, "stderr", _Failing(code))
    assert main([*photos, "--out", str(tmp_path / "out"), "--detector", FAKE, "--tile", "128"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.detections.json")) == \
        ["p0.detections.json", "p1.detections.json", "p2.detections.json"]


def test_a_failing_standard_output_still_fails_the_run(tmp_path, monkeypatch, capsys) -> None:
    # (what a verb prints there is its result: `densedet-tile eval ... > metrics.txt` on a full disk)
    photos = _photos(tmp_path / "in", 1)
    gt = tmp_path / "gt.csv"
    gt.write_text("p0.png,30,20,70,60,object,120,90\n")
    assert main([*photos, "--out", str(tmp_path / "out"), "--detector", FAKE, "--tile", "128", "-q"]) == 0
    monkeypatch.setattr(sys, "stdout", _Failing(errno.ENOSPC))
    assert main(["eval", str(tmp_path / "out"), str(gt)]) == 1
    assert "standard output" in capsys.readouterr().err


def test_a_stop_while_onnxruntime_imports_is_a_stop_not_a_broken_install(tmp_path, monkeypatch, capsys) -> None:
    # pybind11 turns the KeyboardInterrupt a signal raises inside an extension's initialisation
    # into "ImportError: initialization failed"
    def interrupted_import():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)  # (the handler runs here)
        except KeyboardInterrupt as exc:
            raise builtin.MissingDependencyError("the built-in model on ONNX Runtime", "onnxruntime", None,
                                                 ImportError("initialization failed")) from exc
        pytest.fail("the stop signal did not arrive")

    monkeypatch.setattr(builtin, "_import_onnxruntime", interrupted_import)
    photos = _photos(tmp_path / "in", 1)
    assert main([*photos, "--out", str(tmp_path / "out"), "--device", "cpu"]) == 128 + signal.SIGTERM
    err = capsys.readouterr().err
    assert "stopped by SIGTERM" in err and "reinstall" not in err
    assert not (tmp_path / "out").exists()


def test_eval_stops_on_ctrl_c_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(formats, "read_ground_truth", interrupted)
    monkeypatch.setattr("densedet_tile.cli.eval.read_ground_truth", interrupted)
    (tmp_path / "gt.csv").write_text("p0.png,30,20,70,60,object,120,90\n")
    (tmp_path / "preds").mkdir()
    assert main(["eval", str(tmp_path / "preds"), str(tmp_path / "gt.csv"), "-o", str(tmp_path / "m.json")]) == 130
    err = capsys.readouterr().err
    assert err.strip() == "densedet-tile eval: error: interrupted"
    assert not (tmp_path / "m.json").exists()


@pytest.mark.parametrize("verb", ["audit", "eval"])
def test_a_full_disk_is_a_failed_run_not_bad_input(tmp_path, monkeypatch, capsys, verb: str) -> None:
    photos = _photos(tmp_path / "in", 1)
    gt = tmp_path / "gt.csv"
    gt.write_text("p0.png,30,20,70,60,object,120,90\n")
    assert main([*photos, "--out", str(tmp_path / "dets"), "--detector", FAKE, "--tile", "128", "-q"]) == 0

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("densedet_tile.cli.audit.write_files", full)
    monkeypatch.setattr("densedet_tile.cli.eval.atomic_write", full)
    argv = (["audit", str(tmp_path / "dets" / "p0.detections.json"), "--out", str(tmp_path / "audit")]
            if verb == "audit" else ["eval", str(tmp_path / "dets"), str(gt), "-o", str(tmp_path / "m.json")])
    assert main(argv) == 1
    assert "No space left on device" in capsys.readouterr().err


def test_a_write_probe_left_by_a_stop_is_swept(tmp_path) -> None:
    left = tmp_path / ".densedet-write-test.abcd1234"
    left.write_bytes(b"")
    old = time.time() - 3600
    os.utime(left, (old, old))
    mine = tmp_path / ".densedet-write-test-not-ours"
    mine.write_bytes(b"")
    os.utime(mine, (old, old))
    assert dio.sweep_temporaries(tmp_path) == 1
    assert not left.exists() and mine.exists()


def test_standard_error_closed_at_start_keeps_messages_off_standard_output(tmp_path, monkeypatch, capsys) -> None:
    # Python starts with sys.stderr None when descriptor 2 is closed (`2>&-`); print(file=None)
    # writes to standard output, where `eval ... > metrics.txt` keeps its figures
    monkeypatch.setattr(sys, "stderr", None)
    assert main([str(tmp_path / "nosuch.jpg"), "--out", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().out == ""


def test_a_stop_swallowed_inside_one_image_stops_the_run_there(tmp_path, monkeypatch) -> None:
    # the stop signal came while a C extension imported (its ImportError reached the image's
    # error handler): the image is not reported as failed and the next ones are not started
    from densedet_tile import errors
    from densedet_tile.runner import Job, process_image

    class Importing:
        def predict(self, tiles):
            raise ImportError("initialization failed")

    (photo,) = _photos(tmp_path / "in", 1)
    monkeypatch.setattr(errors, "STOP_RECEIVED", [signal.SIGTERM])
    with pytest.raises(KeyboardInterrupt):
        process_image(photo, Importing(), Job(), str(tmp_path / "out"))
    monkeypatch.setattr(errors, "STOP_RECEIVED", [None])
    assert process_image(photo, Importing(), Job(), str(tmp_path / "out")).status == "error"
