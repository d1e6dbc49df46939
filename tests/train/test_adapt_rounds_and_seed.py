"""adapt: which photos a round labels when its time runs short, what counts as a photo used,
and the range of --seed (from an outside review of the verb)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.train.adapt import AdaptRun, AdaptSettings, adapt
from fakes import run_cli
from test_adapt_run import TINY, write_photos


def test_a_round_cut_short_leaves_its_unreached_photos_to_the_next_round_first(tmp_path, monkeypatch):
    # a label cap of 0 s: every round labels its first photo only; the next round must take a
    # photo not labelled yet, not one drawn again at random
    monkeypatch.setattr(AdaptRun, "label_cap", lambda self: 0.0)
    folder = write_photos(tmp_path / "p", n=3)
    res = adapt(folder, tmp_path / "r.pt", replace(TINY, rounds=3, steps=6), device="cpu")
    assert [r["photos_labelled"] for r in res.report["rounds"]] == [1, 1, 1]
    assert res.report["photos_used"] == 3


def test_a_photo_first_labelled_by_a_round_with_no_steps_left_is_not_counted_as_used(tmp_path, monkeypatch):
    monkeypatch.setattr(AdaptRun, "label_cap", lambda self: 0.0)
    real_end = AdaptRun._train_end

    def no_steps_in_the_last_round(self):
        return self.fraction() if self.s["round"] == self.settings.rounds - 1 else real_end(self)

    monkeypatch.setattr(AdaptRun, "_train_end", no_steps_in_the_last_round)
    folder = write_photos(tmp_path / "p", n=3)
    res = adapt(folder, tmp_path / "u.pt", replace(TINY, rounds=3, steps=6), device="cpu")
    last = res.report["rounds"][-1]
    assert last["photos_labelled"] == 1 and last["steps_from"] == last["steps_to"]
    # the last round's photo was never drawn from; the two before it were (each round draws
    # first from the photos no step has drawn yet)
    assert res.report["photos_used"] == 2


@pytest.mark.parametrize("seed", [-1, 2**32, 2**64, True, 1.5])
def test_a_seed_out_of_range_is_refused_up_front(seed):
    with pytest.raises(InvalidInputError, match="seed must be an integer from 0 to 4294967295"):
        AdaptSettings(**{**TINY.__dict__, "seed": seed})


def test_the_largest_seed_runs(tmp_path):
    folder = write_photos(tmp_path / "p", n=2)
    res = adapt(folder, tmp_path / "s.pt", replace(TINY, seed=2**32 - 1, steps=2, rounds=1), device="cpu")
    assert res.status == "done"


def test_cli_refuses_a_huge_seed_in_one_line_and_writes_nothing(tmp_path):
    folder = write_photos(tmp_path / "p", n=2)
    r = run_cli("adapt", folder, "--out", tmp_path / "m.pt", "--seed", str(2**64), "--steps", "1", "-q", cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "seed must be an integer from 0 to 4294967295" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_an_out_ending_with_a_slash_is_refused_not_written_as_a_file(tmp_path):
    folder = write_photos(tmp_path / "p", n=1)
    for out in (str(tmp_path / "models") + "/", str(tmp_path / "models") + "/."):
        with pytest.raises(InvalidInputError, match="not a file name"):
            adapt(folder, out, replace(TINY, steps=1, rounds=1), device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


@pytest.mark.parametrize("text, folder", [("a/", True), ("a/.", True), ("a/..", True), (".", True), ("", True),
                                          ("a", False), ("a/b.pt", False), ("a.b/c", False), ("...", False)])
def test_names_a_folder(text, folder):
    from densedet_tile.io import names_a_folder

    assert names_a_folder(text) is folder


def test_a_state_saved_by_an_earlier_version_is_refused_naming_it(tmp_path):
    import torch

    from densedet_tile.train.adapt import STATE_VERSION, output_paths

    folder = write_photos(tmp_path / "p", n=1)
    out = tmp_path / "old.pt"
    torch.save({"version": STATE_VERSION - 1, "folder": str(folder.resolve()), "settings": TINY.to_dict()},
               output_paths(out)["state"])
    with pytest.raises(InvalidInputError, match=f"earlier version of densedet-tile .state version {STATE_VERSION - 1}"):
        adapt(folder, out, None, device="cpu", resume=True)
