"""``densedet-tile adapt`` run as a user runs it, then its weights used with ``--checkpoint``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densedet_tile.synth.shelves import render_shelf


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if str(args[0]) == "adapt" and "--threads" not in map(str, args):  # tiny models: one thread, not two spin-waiting on a shared machine
        args = (*args, "--threads", "1")
    return subprocess.run([sys.executable, "-m", "densedet_tile", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=900)


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    (folder / "aisle 2").mkdir(parents=True)
    for i, sub in enumerate(["", "", "aisle 2"]):
        img, _ = render_shelf(np.random.default_rng(300 + i), width=224, height=160, product_height=55)
        Image.fromarray(np.asarray(img)).save(folder / sub / f"shelf_{i}.jpg", quality=90)
    (folder / "damaged.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "notes.txt").write_text("not a photo")
    return folder


TINY = ["--steps", "3", "--rounds", "2", "--size", "64", "--batch", "2", "--scales", "1", "--no-flip",
        "--tile", "256", "--device", "cpu", "-q"]


def test_adapt_end_to_end_then_detect_with_the_adapted_weights(photos, tmp_path):
    out = tmp_path / "models" / "my_stores.pt"
    out.parent.mkdir()
    r = run_cli("adapt", photos, "--out", out, "--holdout", "1", *TINY)
    assert r.returncode == 0, r.stderr
    # the report: on stdout and in two files; the damaged file is skipped and named
    assert "densedet-tile adapt: done" in r.stdout and "skipped damaged.jpg" in r.stdout
    assert "round 1:" in r.stdout and "round 2:" in r.stdout and "held-out photos (1)" in r.stdout
    rep = json.loads((out.parent / "my_stores.report.json").read_text())
    assert rep["photos_used"] == 2 and rep["holdout"] == 1 and rep["steps"] == 3
    assert [s[0] for s in rep["skipped"]] == ["damaged.jpg"]
    assert len(rep["rounds"]) == 2 and all(x["pseudo_labels"] > 0 for x in rep["rounds"])
    assert (out.parent / "my_stores.report.txt").read_text().strip() == r.stdout.strip()
    assert not (out.parent / "my_stores.state.pt").exists()  # finished: no state left behind
    # the weights: the built-in format, provenance inside, loadable with weights_only=True
    ck = torch.load(out, weights_only=True)
    assert set(ck) == {"config", "state_dict", "info"}
    info = ck["info"]
    assert info["kind"] == "densedet-tile adapt" and info["photos"] == 2 and info["holdout_photos"] == 1
    assert info["base"]["weights"].startswith("built-in") and info["settings"]["batch"] == 2
    assert info["holdout_check"]["photos"] == 1
    # ... and the default detector serves them
    r = run_cli(photos / "shelf_0.jpg", "--detector", "default", "--checkpoint", out, "--out", tmp_path / "det",
                "--device", "cpu", "-q")
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "det" / "shelf_0.detections.json").read_text())
    assert doc["model"]["info"]["kind"] == "densedet-tile adapt"
    assert doc["model"]["info"]["weights_file"] == str(out) and doc["model"]["info"]["runtime"] == "torch"
    # --from a previous adapt; a second run into the same file needs --overwrite
    r = run_cli("adapt", photos, "--out", out, "--from", out, *TINY)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = run_cli("adapt", photos, "--out", out, "--from", out, "--overwrite", "--steps", "1", "--rounds", "1",
                *TINY[4:])
    assert r.returncode == 0, r.stderr
    assert torch.load(out, weights_only=True)["info"]["base"]["info"]["kind"] == "densedet-tile adapt"


def test_a_folder_without_readable_images_is_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "nothing"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"\x89PNG but no")
    r = run_cli("adapt", folder, "--out", tmp_path / "m.pt", "--device", "cpu")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines[-1].startswith("densedet-tile adapt: error: ") and "no readable images" in lines[-1]
    assert "1 unreadable" in lines[-1]
    assert not (tmp_path / "m.pt").exists()


def test_default_detector_refuses_a_checkpoint_it_cannot_read(tmp_path):
    img = tmp_path / "x.png"
    Image.new("RGB", (64, 64)).save(img)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04" + b"not a whole archive")  # begins as torch.save's zip does
    for ckpt, says in [(bad, "not a torch checkpoint"), (damaged, "cannot be read"),
                       (tmp_path / "missing.pt", "no such file")]:
        r = run_cli(img, "--checkpoint", ckpt, "--out", tmp_path / "o", "--device", "cpu", "-q")
        assert r.returncode == 2 and says in r.stderr, r.stderr


def test_bad_options_are_usage_errors(tmp_path):
    for args, says in [(["--scales", "0,1"], "--scales"), (["--synth", "1"], "--synth"), (["--size", "100"], "size")]:
        r = run_cli("adapt", tmp_path, "--out", tmp_path / "m.pt", *args)
        assert r.returncode == 2 and says in r.stderr, r.stderr


def test_resume_refuses_run_options_and_names_them(photos, tmp_path):
    r = run_cli("adapt", photos, "--out", tmp_path / "m.pt", "--resume", "--holdout", "2", "--from", "x.pt",
                "--minutes", "1")
    assert r.returncode == 2
    line = r.stderr.strip().splitlines()[-1]
    assert "--resume continues the saved run" in line and "--holdout" in line and "--from" in line
    assert "--minutes" not in line.split("leave out")[1].split("(")[0]  # the budget may change


def test_progress_in_a_log_file_is_plain_lines(photos, tmp_path):
    r = run_cli("adapt", photos, "--out", tmp_path / "m.pt", *[a for a in TINY if a != "-q"])
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr  # stderr is a pipe here, not a terminal
    assert any(line.startswith("densedet-tile adapt: round 1/2 labelling: photo") for line in r.stderr.splitlines())
