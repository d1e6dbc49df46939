"""adapt, from a second outside review (2026-12-06): each test fails on the code before it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from densedet_tile.cli.adapt import adapt_main
from densedet_tile.errors import DetectorError, InvalidInputError
from densedet_tile.train.adapt import AdaptRun, AdaptSettings, adapt, output_paths
from densedet_tile.train.pseudo import LabelSettings
from test_adapt_cli_main import ARGS, last_error
from test_adapt_run import TINY, _stop_at, write_photos


@pytest.mark.parametrize("polls, used", [(8, 3), (7, 1)], ids=["after-a-step", "before-any-step"])
def test_photos_trained_on_before_a_stop_count_when_they_no_longer_read(tmp_path: Path, polls, used) -> None:
    # 3 photos; should_stop is polled before each photo and each step (the starting weights count
    # the 3 photos first): poll 8 comes after round 1 trained one step on all three, poll 7
    # before any step. Two photos are then deleted or
    # damaged, and the run resumed: the weights' info["photos"] and the report said "1 used for
    # training" and listed the two as skipped, never used, though the first step trained on them.
    # (Three photo crops a step: a step draws from every photo labelled, each turn of draws
    # taking the photos not drawn yet first)
    folder = write_photos(tmp_path / "p", n=3)
    out = tmp_path / "r.pt"
    first = adapt(folder, out, replace(TINY, batch=6), device="cpu", should_stop=_stop_at(polls))
    assert first.status == "stopped" and first.report["steps"] == polls - 7
    (folder / "shelf_0.jpg").unlink()
    whole = (folder / "shelf_1.jpg").read_bytes()
    (folder / "shelf_1.jpg").write_bytes(whole[: len(whole) // 3])  # its header still reads
    res = adapt(folder, out, None, device="cpu", resume=True)
    rep = res.report
    assert res.status == "done" and rep["steps"] == TINY.steps
    assert torch.load(out, weights_only=True)["info"]["photos"] == rep["photos_used"] == used
    gone = sorted(n for n, _ in rep["unreadable_after_use"])
    text = res.paths["report_txt"].read_text()
    if used == 3:  # trained on, then gone: said so, and not among the files never used
        assert gone == ["shelf_0.jpg", "shelf_1.jpg"] and rep["skipped"] == [] and rep["photos_available"] == 3
        assert "photos: 3 used for training (2 of them unreadable since, after training on them), 0 held out\n" in text
        assert "  unreadable since shelf_0.jpg: " in text and "skipped" not in text
    else:  # labelled but never trained on before they went: skipped, not used
        assert gone == [] and sorted(n for n, _ in rep["skipped"]) == ["shelf_0.jpg", "shelf_1.jpg"]
        assert rep["photos_available"] == 1 and "photos: 1 used for training, 0 held out, 2 skipped" in text
    assert json.loads(res.paths["report_json"].read_text())["photos_used"] == used


def test_photos_over_max_pixels_are_told_apart_from_unreadable_files(tmp_path: Path) -> None:
    # "no readable images (3 unreadable ...; the first: a_bad.jpg: ...)": the photos over the
    # limit were counted as unreadable, and the file named had nothing to do with it
    folder = write_photos(tmp_path / "p", n=2)  # 224 x 160
    (folder / "a_bad.jpg").write_bytes(b"not a jpeg")
    s = AdaptSettings(**{**TINY.__dict__, "max_pixels": 1000})
    with pytest.raises(InvalidInputError, match=r"p: no photo within the --max-pixels limit of 1000 pixels: 2 photos "
                                                r"are over it \(the first: shelf_0\.jpg, 224x160 = 35840 pixels; raise "
                                                r"--max-pixels, or give none for no limit\); besides them 1 unreadable, "
                                                r"0 other files; the first unreadable: a_bad\.jpg: "):
        AdaptRun(folder, tmp_path / "m.pt", s, device="cpu")
    (folder / "a_bad.jpg").unlink()
    with pytest.raises(InvalidInputError, match=r"2 photos are over it .*; besides them 0 unreadable, 0 other files$"):
        AdaptRun(folder, tmp_path / "m.pt", s, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


@pytest.mark.parametrize("args, says", [
    (["--scales", "1,1,1"], "argument --scales: expected different scales (each is one view), such as 1,1.5; got '1,1,1'"),
    (["--scales", "1,1.0"], "argument --scales: expected different scales"),
    # argparse took 0 ("a value in [0.0, 1.0]"), then the settings refused it as outside (0, 1]
    (["--min-views", "0"], "argument --min-views: expected a value in (0.0, 1.0], got '0'"),
    (["--score-lo", "0.7"], "--score-lo 0.7 is above --score-hi 0.6: "),
    (["--score-lo", "0.5", "--score-hi", "0.4"], "--score-lo 0.5 is above --score-hi 0.4: "),
    # the settings said "bad tiling: tile=16 overlap=0.2"
    (["--tile", "16"], "argument --tile: expected a tile side >= 32 pixels, got '16'"),
], ids=["scales", "scales-as-written", "min-views", "score-lo", "score-hi", "tile"])
def test_pseudo_label_options_are_refused_in_the_options_own_words(tmp_path: Path, capsys, args, says) -> None:
    assert adapt_main([str(tmp_path), "--out", str(tmp_path / "m.pt"), *ARGS, *args]) == 2
    line = last_error(capsys)
    assert says in line and "score_lo" not in line and "(0, 1]" not in line, line
    assert not (tmp_path / "m.pt").exists()


def test_repeated_scales_are_refused_from_python_too() -> None:
    with pytest.raises(InvalidInputError,
                       match=r"scales must differ from one another \(each is one view\), got \(1\.0, 1\.0\)"):
        LabelSettings(scales=(1.0, 1.0))
    assert LabelSettings(min_views=1.0).min_views == 1.0 and LabelSettings(scales=(1.0, 1.5)).scales == (1.0, 1.5)
    with pytest.raises(InvalidInputError, match=r"tile must be a side of 32 px or more .*got tile=16 "):
        LabelSettings(tile=16)


def test_an_adapt_state_given_as_weights_says_what_it_is(tmp_path: Path) -> None:
    # --checkpoint stores.state.pt said only "not a ShelfNet checkpoint: no 'state_dict'"
    from densedet_tile.detector.builtin import load_default

    folder = write_photos(tmp_path / "p", n=1)
    out = tmp_path / "stores.pt"
    assert adapt(folder, out, TINY, device="cpu", should_stop=_stop_at(1)).status == "stopped"
    state = output_paths(out)["state"]
    hint = (r"not a ShelfNet checkpoint: no 'state_dict' \(it has .*\); it is the saved state of a "
            r"stopped adapt run, not weights: continue the run with densedet-tile adapt PHOTOS --out WEIGHTS --resume; "
            r"the weights to load are that --out file")
    with pytest.raises(DetectorError, match=hint):
        load_default(weights=state, device="cpu")
    with pytest.raises(InvalidInputError, match=r"not weights of the built-in model .*; it is the saved state of a "
                                                r"stopped adapt run"):  # --from it, likewise
        adapt(folder, tmp_path / "other.pt", TINY, base=state, device="cpu")
