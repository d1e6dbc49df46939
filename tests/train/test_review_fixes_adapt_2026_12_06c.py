"""adapt, from a third outside review (2026-12-06, stop 64)."""

from __future__ import annotations

from dataclasses import replace

import torch

from densedet_tile.train.adapt import AdaptRun, adapt
from test_adapt_run import TINY, write_photos


def test_photos_used_are_those_a_step_drew_crops_from(tmp_path) -> None:
    # 5 photos, 2 steps of one photo crop each (batch 2, half generated shelves): the report and
    # the weights said 5 photos used for training; at most 2 can have been
    folder = write_photos(tmp_path / "p", n=5)
    out = tmp_path / "m.pt"
    res = adapt(folder, out, replace(TINY, steps=2, rounds=1), device="cpu")
    assert res.report["photos_used"] == 2 and res.report["photos_available"] == 5
    assert torch.load(out, weights_only=True)["info"]["photos"] == 2


class _Crops:
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


def test_each_turn_of_draws_takes_the_photos_not_drawn_yet_first() -> None:
    run = object.__new__(AdaptRun)
    run.settings = replace(TINY, seed=3)
    run.crops = _Crops(4)
    run.crop_index = {f"shelf_{k}.jpg": k for k in range(4)}
    run.s = {"trained_on": ["shelf_1.jpg", "shelf_2.jpg"]}
    first = [run._photo_of_draw(d) for d in range(4)]
    assert sorted(first[:2]) == [0, 3] and sorted(first) == [0, 1, 2, 3]
    # the next turn: every photo once again; and from the same state, the same draws again
    run.s["trained_on"] = [f"shelf_{k}.jpg" for k in range(4)]
    saved = dict(run.s)
    second = [run._photo_of_draw(d) for d in range(4, 8)]
    assert sorted(second) == [0, 1, 2, 3]
    run.s = saved
    assert [run._photo_of_draw(d) for d in range(4, 8)] == second
    # a fifth photo labelled: a new turn starts with it
    run.crops = _Crops(5)
    run.crop_index["shelf_4.jpg"] = 4
    assert run._photo_of_draw(8) == 4


def test_a_photo_replaced_under_its_name_before_resume_is_refused_and_named(tmp_path) -> None:
    import pytest
    from PIL import Image

    from densedet_tile.train.adapt import AdaptFailed
    from test_adapt_run import _stop_at

    folder = write_photos(tmp_path / "p", n=2)
    out = tmp_path / "m.pt"
    # (polls: the starting weights count the 2 photos, then 2 photos labelled, a step; stopped
    # before the second step)
    assert adapt(folder, out, TINY, device="cpu", should_stop=_stop_at(6)).status == "stopped"
    original = (folder / "shelf_1.jpg").read_bytes()
    Image.new("RGB", (400, 100), (200, 30, 30)).save(folder / "shelf_1.jpg")  # another photo, same name
    with pytest.raises(AdaptFailed, match=r"shelf_1\.jpg: this photo changed since the run first labelled it"):
        adapt(folder, out, None, device="cpu", resume=True)
    # put back: the run resumes and finishes
    (folder / "shelf_1.jpg").write_bytes(original)
    assert adapt(folder, out, None, device="cpu", resume=True).status == "done"


def test_a_tile_the_photo_rule_replaces_is_said_once_not_for_every_photo(tmp_path, caplog) -> None:
    # --tile 256 on photos: the engine's "tile 256 replaced by ... give an input size
    # (--input-size)" came for every photo and round (adapt has no --input-size), naming the
    # held-out and calibration photos "<array>"
    import logging

    folder = write_photos(tmp_path / "p", n=3)
    said: list[str] = []
    caplog.set_level(logging.WARNING)
    res = adapt(folder, tmp_path / "m.pt", replace(TINY, holdout=1), device="cpu", log=said.append)
    assert res.status == "done"
    assert not [r for r in caplog.records if "replaced by" in r.getMessage()]
    notes = [m for m in said if "applied to panoramas only" in m]
    assert len(notes) == 1 and "--tile 256" in notes[0]
    assert not [r for r in caplog.records if "<array>" in r.getMessage()]


def test_a_stopped_overwrite_run_leaves_the_earlier_weights_report_alone(tmp_path) -> None:
    from test_adapt_run import _stop_at

    folder = write_photos(tmp_path / "p", n=2)
    out = tmp_path / "m.pt"
    done = adapt(folder, out, TINY, device="cpu")
    assert done.status == "done"
    weights = out.read_bytes()
    reports = {p: p.read_bytes() for p in (done.paths["report_txt"], done.paths["report_json"])}
    said: list[str] = []
    second = adapt(folder, out, replace(TINY, seed=5), device="cpu", overwrite=True, should_stop=_stop_at(5),
                   log=said.append)
    assert second.status == "stopped" and out.read_bytes() == weights
    assert {p: p.read_bytes() for p in reports} == reports
    assert any("report of this stopped run is not written" in m for m in said)
    # resumed to its end, the run replaces both
    third = adapt(folder, out, None, device="cpu", resume=True)
    assert third.status == "done" and out.read_bytes() != weights
    assert done.paths["report_json"].read_bytes() != reports[done.paths["report_json"]]
