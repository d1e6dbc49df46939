"""The command line's top floor (``densedet_tile.cli.main``): what every verb gets from it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# torch (and torchvision) made unimportable in a fresh interpreter, as on the light install
NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            "from densedet_tile.cli import main; sys.exit(main(sys.argv[1:]))")


def run_without_torch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    # a wide COLUMNS: argparse wraps help to the terminal's width, which would split the phrases looked for
    return subprocess.run([sys.executable, "-c", NO_TORCH, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "COLUMNS": "200"})


@pytest.mark.parametrize("args, extra", [
    (("adapt", "photos", "--out", "m.pt"), "torch"),  # (adapt needs torch and torchvision only: [train] added onnx, pycocotools)
    (("convert-checkpoint", "a.pth", "b.pth"), "mmdet"),  # verifying builds the mmdet model: that extra
    (("convert-checkpoint", "a.pth", "b.pth", "--no-verify"), "torch"),
])
def test_verbs_that_need_torch_name_the_extra_in_one_line(tmp_path: Path, args: tuple, extra: str) -> None:
    r = run_without_torch(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"pip install 'densedet-tile[{extra}]'" in r.stderr and "'torch'" in r.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, prog", [
    (("adapt", "photos", "--out", "m.pt"), "densedet-tile adapt"),
    (("convert-checkpoint", "a.pth", "b.pth"), "densedet-tile convert-checkpoint"),  # (its own check: the model)
])
def test_a_missing_extra_is_said_under_the_verbs_own_name(tmp_path: Path, args: tuple, prog: str) -> None:
    # adapt's line began "densedet-tile: error: densedet-tile adapt needs ...", where every other
    # error of a verb (convert-checkpoint's missing torch included) is "densedet-tile VERB: error: ..."
    r = run_without_torch(*args, cwd=tmp_path)
    line = r.stderr.strip()
    assert r.returncode == 2 and len(line.splitlines()) == 1, r.stderr
    assert line.startswith(f"{prog}: error: {args[0]} ") and "needs the 'torch' package" in line, line
    assert f"densedet-tile {args[0]} needs" not in line, line


def test_adapt_help_reads_without_torch_and_names_the_extra(tmp_path: Path) -> None:
    r = run_without_torch("adapt", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--minutes" in r.stdout and "pip install 'densedet-tile[torch]'" in r.stdout, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_closed_stdout_neither_stops_the_verb_nor_prints_a_traceback(tmp_path: Path) -> None:
    # `densedet-tile audit ... | head -1`: the reader goes away before the verb has printed all
    boxes = [[x, y, x + 40, y + 90] for y in (20, 140, 260) for x in range(10, 800, 45)]
    det = tmp_path / "d.detections.json"
    det.write_text(json.dumps({
        "schema": "densedet-tile/detections@1",
        "image": {"path": "d.jpg", "name": "d.jpg", "width": 820, "height": 380},
        "settings": {}, "model": {}, "timings": {}, "num_tiles": 1,
        "boxes": boxes, "scores": [0.9] * len(boxes), "labels": [0] * len(boxes),
        "categories": {"0": "product"},
    }))
    p = subprocess.Popen([sys.executable, "-m", "densedet_tile", "audit", str(det), "--out", str(tmp_path / "a")],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    p.stdout.close()  # nobody reads what it prints
    with p.stderr:
        err = p.stderr.read()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err
    doc = json.loads((tmp_path / "a" / "d.audit.json").read_text())
    assert doc["summary"]["products"] == len(boxes) and doc["summary"]["rows"] == 3


def test_a_verb_started_with_stdout_closed_runs_without_a_traceback(tmp_path: Path) -> None:
    # cron and daemons may start a command with no stdout at all (sys.stdout is None)
    import os

    r = subprocess.run([sys.executable, "-m", "densedet_tile", "audit", "--help"], stderr=subprocess.PIPE,
                       text=True, cwd=tmp_path, timeout=120, preexec_fn=lambda: os.close(1))
    assert r.returncode == 0 and "Traceback" not in r.stderr and "Exception ignored" not in r.stderr, r.stderr


def test_main_gives_onnxruntime_its_logging_back_when_it_returns(tmp_path: Path, monkeypatch) -> None:
    # the command turns ONNX Runtime's process-wide logger down to errors while it runs; a program
    # calling main() kept it so for good (an outside review)
    ort = pytest.importorskip("onnxruntime")
    import numpy as np
    from PIL import Image

    from densedet_tile.cli import main

    calls: list[int] = []
    real = ort.set_default_logger_severity

    def spy(level: int) -> None:
        calls.append(level)
        real(level)

    monkeypatch.setattr(ort, "set_default_logger_severity", spy)
    Image.fromarray(np.full((200, 300, 3), 128, np.uint8)).save(tmp_path / "grey.png")
    assert main([str(tmp_path / "grey.png"), "--out", str(tmp_path / "o"), "-q", "--device", "cpu"]) == 0
    assert calls and calls[0] == 3 and calls[-1] == 2
    calls.clear()
    import densedet_tile as dt

    dt.load_detector("default", device="cpu")  # a library call leaves it alone
    assert calls == []
