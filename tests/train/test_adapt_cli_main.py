"""``densedet-tile adapt`` through its entry point, in this process: exit statuses, refusals,
signals and ``--resume`` options (the run itself is tested in test_adapt_run.py)."""

from __future__ import annotations

import importlib
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from densedet_tile.cli.adapt import adapt_main
from densedet_tile.synth.shelves import render_shelf
from densedet_tile.train.adapt import AdaptSettings, adapt, output_paths
from densedet_tile.train.pseudo import LabelSettings

ARGS = ["--steps", "2", "--rounds", "2", "--size", "64", "--batch", "2", "--scales", "1", "--no-flip", "--tile", "256",
        "--device", "cpu", "-q"]
TINY = AdaptSettings(minutes=None, steps=4, rounds=2, size=64, batch=2, synth=0.5, synth_pool=2, warmup=2,
                     labels=LabelSettings(scales=(1.0,), flip=False, tile=256))
ADAPT = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name


def write_photos(folder, n=2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, _ = render_shelf(np.random.default_rng(100 + i), width=224, height=160, product_height=55)
        Image.fromarray(np.asarray(img)).save(folder / f"shelf_{i}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


def last_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and lines[-1].startswith("densedet-tile adapt: error: "), lines
    return lines[-1]


@pytest.mark.parametrize("out", [".", "/"])
def test_an_out_without_a_file_name_is_a_usage_error(photos, out, capsys):
    assert adapt_main([str(photos), "--out", out, *ARGS]) == 2
    assert "not a file name" in last_error(capsys)


def test_a_folder_none_of_whose_photos_decode_is_exit_2_without_a_resume_hint(tmp_path, capsys):
    folder = tmp_path / "p"
    folder.mkdir()
    whole = (write_photos(tmp_path / "src", n=1) / "shelf_0.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    (folder / "a.png").write_text("not an image")
    assert adapt_main([str(folder), "--out", str(tmp_path / "m.pt"), *ARGS]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert "could be decoded (the first: cut.jpg" in line and "--resume" not in err
    assert not list(tmp_path.glob("m.*"))


@pytest.mark.parametrize("given", [["--seed", "0"], ["--batch", "8"], ["--max-pixels", "5"], ["--holdout", "0"]])
def test_resume_refuses_run_options_even_at_their_default_values(photos, tmp_path, given, capsys):
    assert adapt_main([str(photos), "--out", str(tmp_path / "m.pt"), "--resume", *given]) == 2
    line = last_error(capsys)
    assert "--resume continues the saved run" in line and given[0] in line.split("leave out")[1]


def test_resume_with_only_minutes_keeps_the_saved_steps(photos, tmp_path, monkeypatch, capsys):
    out = tmp_path / "m.pt"
    assert adapt(photos, out, TINY, device="cpu", should_stop=lambda: True).status == "stopped"
    seen = {}

    def run(self):  # the settings the resumed run would use; then stop as Ctrl-C would
        seen["settings"] = self.settings
        raise KeyboardInterrupt

    monkeypatch.setattr(ADAPT.AdaptRun, "run", run)
    assert adapt_main([str(photos), "--out", str(out), "--resume", "--minutes", "30", "--device", "cpu", "-q"]) == 130
    assert seen["settings"].minutes == 30 and seen["settings"].steps == TINY.steps
    assert "is kept for --resume" in last_error(capsys)  # a state exists: say so


def test_a_run_that_trains_no_step_exits_1_and_keeps_its_state(photos, tmp_path, capsys):
    # a budget so small that it is over before the first step (labelling always gets a photo)
    out = tmp_path / "m.pt"
    assert ARGS[:2] == ["--steps", "2"]
    assert adapt_main([str(photos), "--out", str(out), "--minutes", "1e-9", *ARGS[2:]]) == 1
    line = last_error(capsys)
    assert "before the first training step" in line and "--resume" in line
    assert not out.exists() and output_paths(out)["state"].exists()


@pytest.fixture
def own_handlers():
    """Handlers for SIGTERM and SIGINT that fail the test if adapt_main leaves a signal to them
    (instead of the default: SIGTERM would end the test process); restored afterwards."""

    class NotHandled(Exception):
        pass

    def fail(signum, frame):
        raise NotHandled(signal.Signals(signum).name)

    before = {s: signal.signal(s, fail) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in before.items():
        signal.signal(s, h)


def test_sigterm_stops_cleanly_and_saves_the_state(photos, tmp_path, monkeypatch, own_handlers, capsys):
    real_step = ADAPT.train_step

    def step(*a, **kw):  # the first step receives SIGTERM, as from a service manager
        if kw["step"] == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(*a, **kw)

    monkeypatch.setattr(ADAPT, "train_step", step)
    out = tmp_path / "m.pt"
    assert adapt_main([str(photos), "--out", str(out), *ARGS]) == 143
    err = capsys.readouterr().err
    assert "SIGTERM: stopping" in err and f"--out {out} --resume" in err
    assert not out.exists() and torch.load(output_paths(out)["state"], weights_only=True)["step"] == 1


def test_a_second_ctrl_c_before_any_save_says_there_is_nothing_to_resume(photos, tmp_path, monkeypatch, own_handlers,
                                                                        capsys):
    real_label = ADAPT.pseudo_label

    def label(*a, **kw):  # two Ctrl-C while the first photo is labelled, before any state is saved
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        return real_label(*a, **kw)

    monkeypatch.setattr(ADAPT, "pseudo_label", label)
    out = tmp_path / "m.pt"
    assert adapt_main([str(photos), "--out", str(out), *ARGS]) == 130
    assert "aborted; no state was saved yet, so there is nothing to resume" in last_error(capsys)
    assert not output_paths(out)["state"].exists() and not out.exists()
