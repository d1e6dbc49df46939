"""Faults found by an outside review of ``densedet-tile adapt`` (2026-12-07, stop 68): each test
fails on the code before it."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from densedet_tile.errors import clipped
from densedet_tile.train.adapt import adapt

from test_adapt_run import TINY, write_photos


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"), n=3)


@pytest.mark.parametrize("holdout", [1, 0])
def test_a_stop_asked_during_the_last_photo_stops_before_the_weights_are_written(photos, tmp_path, holdout) -> None:
    # Ctrl-C during the last held-out photo (or the last photo of the threshold's pick) said
    # "stopping after this step or photo", then wrote the weights and ended 0
    last_phase = "after" if holdout else "calibrate"
    seen = {"last": False}

    def progress(e):
        if e["phase"] == last_phase and e["done"] == e["total"] - 1:
            seen["last"] = True

    out = tmp_path / "w.pt"
    s = replace(TINY, rounds=1, steps=2, holdout=holdout)
    res = adapt(photos, out, s, device="cpu", progress=progress, should_stop=lambda: seen["last"])
    assert seen["last"] and res.status == "stopped"
    assert not out.exists() and res.paths["state"].exists()
    done = adapt(photos, out, None, device="cpu", resume=True)
    assert done.status == "done" and out.exists() and not res.paths["state"].exists()


def test_weights_adapted_again_into_their_own_file_say_the_file_no_longer_holds_the_start(photos, tmp_path) -> None:
    # --from b.pt --out b.pt --overwrite replaced the starting weights, and the provenance named
    # that file as theirs without a word (an outside review); their hash and provenance stay
    import hashlib

    first = tmp_path / "b.pt"
    adapt(photos, first, replace(TINY, rounds=1, steps=1), device="cpu")
    sha = hashlib.sha256(first.read_bytes()).hexdigest()
    adapt(photos, first, replace(TINY, rounds=1, steps=1), base=str(first), device="cpu", overwrite=True)
    base = torch.load(first, weights_only=True)["info"]["base"]
    assert base["replaced_by_this_run"] is True and base["sha256"] == sha
    assert base["info"]["kind"] == "densedet-tile adapt"
    other = tmp_path / "c.pt"
    adapt(photos, other, replace(TINY, rounds=1, steps=1), base=str(first), device="cpu")
    assert "replaced_by_this_run" not in torch.load(other, weights_only=True)["info"]["base"]


def test_a_long_message_is_cut_at_a_word_and_says_so() -> None:
    text = ("size mismatch for stem.0.weight: copying a param with shape torch.Size([32, 3, 3, 3]) from checkpoint, "
            "the shape in current model is torch.Size([8, 3, 3, 3]). ") * 3
    cut = clipped(text, 120)
    assert cut.endswith(" ...") and len(cut) <= 124 and text.startswith(cut[:-4])
    assert not cut[:-4].endswith(("[8, 3, 3,", ","))
    assert clipped("short") == "short"
