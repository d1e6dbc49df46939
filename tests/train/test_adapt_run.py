"""adapt(): budgets, a stopped and resumed run equal to an uninterrupted one, refusals, files."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.shelves import render_shelf
from densedet_tile.train.adapt import STATE_VERSION, AdaptSettings, adapt, find_photos, output_paths
from densedet_tile.train.pseudo import LabelSettings

# tiny and cheap: one view per photo (each photo is one tile), 64 px crops, a pool of 2 shelves
TINY = AdaptSettings(minutes=None, steps=4, rounds=2, size=64, batch=2, synth=0.5, synth_pool=2, warmup=2,
                     labels=LabelSettings(scales=(1.0,), flip=False, tile=256))


def write_photos(folder, n=2, size=(224, 160)):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, _ = render_shelf(np.random.default_rng(100 + i), width=size[0], height=size[1], product_height=55)
        Image.fromarray(np.asarray(img)).save(folder / f"shelf_{i}.jpg", quality=90)
    return folder


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def uninterrupted(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("full") / "full.pt"
    res = adapt(photos, out, TINY, device="cpu")
    return res, torch.load(out, weights_only=True)


def count_calls(monkeypatch, module, name):
    """Wrap ``module.name`` so that its calls are counted in the returned ``{"n": ...}``."""
    calls = {"n": 0}
    real = getattr(module, name)

    def counting(*a, **kw):
        calls["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(module, name, counting)
    return calls


def _stop_at(polls):
    count = {"n": 0}

    def should_stop():
        count["n"] += 1
        return count["n"] == polls

    return should_stop


def test_uninterrupted_run_writes_weights_report_and_provenance(uninterrupted, photos):
    res, ck = uninterrupted
    assert res.status == "done" and not res.paths["state"].exists()
    info = ck["info"]
    assert info["kind"] == "densedet-tile adapt" and info["photos"] == 2 and info["steps"] == 4
    assert info["base"]["weights"].startswith("built-in") and len(info["base"]["sha256"]) == 64
    assert info["settings"]["labels"]["scales"] == [1.0] and info["settings"]["steps"] == 4
    assert len(info["pseudo_labels_per_round"]) == 2
    rep = json.loads(res.paths["report_json"].read_text())
    assert [r["round"] for r in rep["rounds"]] == [1, 2]
    assert [(r["steps_from"], r["steps_to"]) for r in rep["rounds"]] == [(0, 2), (2, 4)]
    assert all(r["photos_labelled"] == 2 and r["pseudo_labels"] > 0 for r in rep["rounds"])
    assert "round 2:" in res.paths["report_txt"].read_text()


def test_adapted_weights_serve_at_their_own_threshold_unless_told(uninterrupted, tmp_path):
    from densedet_tile.detector.builtin import DEFAULT_CONFIG, load_default

    res, ck = uninterrupted
    thr = ck["info"]["score_thr"]
    # (the pick itself may land on the package default: four steps barely move the scores, and
    # the starting weights' count at 0.45 can be the one matched)
    assert TINY.serve_thr is None and thr == res.report["serve_thr"]
    assert f"serve at score threshold {thr:g} (picked" in res.paths["report_txt"].read_text()
    assert load_default(weights=res.paths["weights"], device="cpu").score_thr == thr
    # a threshold of the weights' own other than the package default is the one served
    own = tmp_path / "own.pt"
    torch.save({**ck, "info": {**ck["info"], "score_thr": 0.61}}, own)
    assert DEFAULT_CONFIG["score_thr"] != 0.61 and load_default(weights=own, device="cpu").score_thr == 0.61
    assert load_default(weights=res.paths["weights"], device="cpu", score_thr=0.3).score_thr == 0.3
    # weights that name no threshold (the built-in's own) serve at the package default
    plain = tmp_path / "plain.pt"
    torch.save({**ck, "info": {k: v for k, v in ck["info"].items() if k != "score_thr"}}, plain)
    assert load_default(weights=plain, device="cpu").score_thr == DEFAULT_CONFIG["score_thr"]


@pytest.mark.parametrize("polls", [6, 8], ids=["stop-while-training", "stop-while-relabelling"])
def test_stopped_and_resumed_run_ends_with_the_uninterrupted_weights(uninterrupted, photos, tmp_path, polls):
    # should_stop is polled before each photo and each step: the starting weights count the 2
    # photos, then 2 photos, 2 steps, 2 photos, 2 steps. Poll 6 comes before step 2 (round 1
    # training); poll 8 before the second photo of round 2.
    out = tmp_path / "resumed.pt"
    first = adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(polls))
    assert first.status == "stopped" and first.paths["state"].exists() and not out.exists()
    assert first.report["steps"] == (1 if polls == 6 else 2)
    with pytest.raises(InvalidInputError, match="--resume"):
        adapt(photos, out, TINY, device="cpu")
    # settings=None (the CLI's --resume without --minutes/--steps): the saved budget, not a default one
    second = adapt(photos, out, None, device="cpu", resume=True)
    assert second.status == "done" and not second.paths["state"].exists()
    assert second.report["steps"] == TINY.steps
    got = torch.load(out, weights_only=True)["state_dict"]
    want = uninterrupted[1]["state_dict"]
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), k
    def counts(report):  # everything but the clock
        return [{k: v for k, v in r.items() if k != "label_seconds"} for r in report["rounds"]]

    assert counts(second.report) == counts(uninterrupted[0].report)


@pytest.fixture
def clock(monkeypatch):
    """A clock for the run that moves only when a photo is labelled (``label`` seconds) or a step
    is taken (``step`` seconds): time budgets tested without depending on the machine's speed."""
    import time as real_time
    from types import SimpleNamespace

    mod = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name

    c = {"t": 1000.0, "label": 1.0, "step": 1.0}
    real_label, real_step = mod.pseudo_label, mod.train_step

    def label(*a, **kw):
        c["t"] += c["label"]
        return real_label(*a, **kw)

    def step(*a, **kw):
        c["t"] += c["step"]
        return real_step(*a, **kw)

    monkeypatch.setattr(mod, "time", SimpleNamespace(monotonic=lambda: c["t"], process_time=real_time.process_time))
    monkeypatch.setattr(mod, "pseudo_label", label)
    monkeypatch.setattr(mod, "train_step", step)
    return c


def test_time_budget_ends_the_run_and_still_writes_weights(photos, tmp_path, clock):
    # 6 s, one round: labelling may take half (3 s; 2 photos x 1 s), then 1 s steps up to 6 s
    # (a threshold given: picking one at the end takes time of its own, tested in test_adapt_serve_thr)
    s = AdaptSettings(**{**TINY.__dict__, "minutes": 0.1, "steps": None, "rounds": 1, "serve_thr": 0.5})
    res = adapt(photos, tmp_path / "quick.pt", s, device="cpu")
    assert res.status == "done" and (tmp_path / "quick.pt").is_file()
    assert res.report["rounds"][0]["photos_labelled"] == 2 and res.report["steps"] == 4


def test_a_round_whose_labelling_overran_its_share_still_trains(photos, tmp_path, clock):
    # 60 s in 2 rounds of 30 s; one photo takes 35 s to label, more than the round's share. The
    # round is rescheduled: no time is left to label again, so it trains to the end of the budget.
    clock.update(label=35.0, step=5.0)
    s = AdaptSettings(**{**TINY.__dict__, "minutes": 1.0, "steps": None, "rounds": 2, "serve_thr": 0.5})
    res = adapt(photos, tmp_path / "slow.pt", s, device="cpu")
    rep = res.report
    assert res.status == "done" and rep["steps"] == 5  # 35 s + 5 x 5 s = 60 s
    assert [(r["photos_labelled"], r["steps_from"], r["steps_to"]) for r in rep["rounds"]] == [(1, 0, 5)]
    # the photo never labelled was not trained on, and the report says so
    assert rep["photos_used"] == 1 and rep["photos_available"] == 2
    assert torch.load(tmp_path / "slow.pt", weights_only=True)["info"]["photos"] == 1
    # (why, in both of its cases: a photo never labelled, or labelled but drawn by no step)
    assert ("photos: 1 of 2 used for training (no step drew crops from the others: too few steps for the "
            "photos, or they were labelled too late to train on)") in res.paths["report_txt"].read_text()


def test_a_run_that_trained_no_step_writes_no_weights_and_keeps_its_state(photos, tmp_path, clock, monkeypatch):
    from densedet_tile.train.adapt import AdaptFailed

    counted = count_calls(monkeypatch, importlib.import_module("densedet_tile.pipeline"), "counts_at_thresholds")
    clock.update(label=70.0, step=50.0)  # one photo takes longer than the whole 60 s budget
    s = AdaptSettings(**{**TINY.__dict__, "minutes": 1.0, "steps": None, "rounds": 2})
    out = tmp_path / "none.pt"
    # the one photo labelled took 70 s; nothing more (no threshold is picked for untrained weights)
    with pytest.raises(AdaptFailed, match=r"before the first training step \(counting the starting weights' boxes and labelling "
                                          r"took 1.2 of 1 min, and "
                                          r"[0-9.e-]+ min are kept back for picking the threshold.*\).*"
                                          r"--resume and a larger --minutes"):
        adapt(photos, out, s, device="cpu")
    assert not out.exists() and output_paths(out)["state"].exists() and counted["n"] == 0
    # a larger budget continues from the labels already made, trains, and picks the threshold then
    clock.update(label=1.0, step=1.0)
    res = adapt(photos, out, None, device="cpu", resume=True, budget={"minutes": 10.0})
    assert res.status == "done" and out.is_file() and res.report["steps"] > 0
    assert res.report["rounds"][0]["photos_labelled"] == 1 and res.report["rounds"][0]["steps_to"] > 0
    assert counted["n"] == 2 and res.report["serve_thr_picked"]["photos"] == 2


def test_weights_that_are_not_finite_are_refused_not_written(photos, tmp_path, monkeypatch):
    # what a diverged run leaves: batch-norm statistics beyond what fp16 holds (inf once saved)
    mod = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name
    from densedet_tile.train.adapt import AdaptFailed

    real_step = mod.train_step

    def blow_up(model, ema, *a, **kw):
        terms = real_step(model, ema, *a, **kw)
        ema.stem[0][1].running_var.fill_(1e6)
        return terms

    monkeypatch.setattr(mod, "train_step", blow_up)
    out = tmp_path / "inf.pt"
    with pytest.raises(AdaptFailed, match=r"diverged.*inf or nan.*lower --lr"):
        adapt(photos, out, AdaptSettings(**{**TINY.__dict__, "steps": 1, "rounds": 1}), device="cpu")
    assert not out.exists() and not output_paths(out)["state"].exists()


def test_holdout_photos_are_checked_before_and_after(tmp_path):
    folder = write_photos(tmp_path / "p", n=3)
    s = AdaptSettings(**{**TINY.__dict__, "holdout": 1, "steps": 2, "rounds": 1})
    res = adapt(folder, tmp_path / "h.pt", s, device="cpu")
    h = res.report["holdout_check"]
    assert res.report["photos_used"] == 2 and h["photos"] == 1
    assert set(h["before"]) == set(h["after"]) == {"boxes_per_photo", "precision", "recall", "f1"}
    assert h["reference_per_photo"] > 0 and h["before"]["boxes_per_photo"] > 0
    assert len(h["names"]) == 1 and h["names"][0] in ("shelf_0.jpg", "shelf_1.jpg", "shelf_2.jpg")
    text = res.paths["report_txt"].read_text()
    assert f"held-out photos (1) {h['names'][0]}:" in text
    # a finished run names no state file (it is removed when the run completes)
    assert res.report["status"] == "done" and res.report["state"] is None


def test_a_held_out_photo_with_no_boxes_on_either_side_has_no_f1(tmp_path):
    # blank photos: the model sees nothing before or after, and the labels hold nothing: the
    # agreement is not measured (it is not 0)
    folder = tmp_path / "p"
    folder.mkdir()
    for k in range(3):
        Image.new("RGB", (224, 160), (128, 128, 128)).save(folder / f"blank_{k}.png")
    s = AdaptSettings(**{**TINY.__dict__, "holdout": 1, "steps": 1, "rounds": 1})
    res = adapt(folder, tmp_path / "b.pt", s, device="cpu")
    h = res.report["holdout_check"]
    assert h["reference_per_photo"] == 0 and h["before"]["f1"] is None and h["after"]["f1"] is None
    assert "F1 at IoU 0.5: n/a before, n/a after" in res.paths["report_txt"].read_text()


def test_a_photo_that_fails_only_when_decoded_is_skipped_and_not_counted(tmp_path):
    # a JPEG cut short passes the folder listing (its header is fine) and fails when labelled
    folder = write_photos(tmp_path / "p", n=2)
    whole = (folder / "shelf_1.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])
    good, bad, _ = find_photos(folder)
    assert "cut.jpg" in [p.name for p in good] and not bad
    s = AdaptSettings(**{**TINY.__dict__, "steps": 2, "rounds": 1})
    res = adapt(folder, tmp_path / "c.pt", s, device="cpu")
    assert [n for n, _ in res.report["skipped"]] == ["cut.jpg"]
    assert res.report["photos_used"] == 2 and res.report["rounds"][0]["photos_labelled"] == 2
    assert torch.load(tmp_path / "c.pt", weights_only=True)["info"]["photos"] == 2
    assert "photos: 2 used for training, 0 held out, 1 skipped" in res.paths["report_txt"].read_text()


def test_folder_without_readable_images_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidInputError, match="no readable images"):
        adapt(tmp_path / "empty", tmp_path / "x.pt", TINY, device="cpu")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg")
    (bad / "notes.txt").write_text("hello")
    with pytest.raises(InvalidInputError, match=r"no readable images .*1 unreadable, 1 other files; the first: a\.jpg: "):
        adapt(bad, tmp_path / "x.pt", TINY, device="cpu")
    with pytest.raises(InvalidInputError, match="missing: no such folder"):
        adapt(tmp_path / "missing", tmp_path / "x.pt", TINY, device="cpu")
    with pytest.raises(InvalidInputError, match="notes.txt: not a folder"):
        adapt(bad / "notes.txt", tmp_path / "x.pt", TINY, device="cpu")


def test_find_photos_skips_and_lists_bad_files(tmp_path):
    folder = write_photos(tmp_path / "p", n=1)
    (folder / "sub").mkdir()
    Image.new("RGB", (200, 150)).save(folder / "sub" / "b.png")
    Image.new("RGB", (1, 1)).save(folder / "sub" / "icon.png")  # no shelf in it: skipped, said why
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "readme.md").write_text("x")
    good, bad, other = find_photos(folder)
    assert [p.name for p in good] == ["shelf_0.jpg", "b.png"]
    assert [p.name for p, _ in bad] == ["broken.jpg", "icon.png"] and other == 1
    assert "1x1 px: too small" in dict((p.name, why) for p, why in bad)["icon.png"]


def test_refusals_before_any_work(photos, tmp_path):
    import densedet_tile

    pkg = Path(densedet_tile.__file__).parent
    with pytest.raises(InvalidInputError, match="inside the installed package"):
        adapt(photos, pkg / "detector" / "weights" / "mine.pt", TINY, device="cpu")
    (tmp_path / "taken.pt").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="--overwrite"):
        adapt(photos, tmp_path / "taken.pt", TINY, device="cpu")
    with pytest.raises(InvalidInputError, match="nothing to resume"):
        adapt(photos, tmp_path / "new.pt", TINY, device="cpu", resume=True)
    with pytest.raises(InvalidInputError, match="leaves no photo"):
        adapt(photos, tmp_path / "new.pt", AdaptSettings(**{**TINY.__dict__, "holdout": 2}), device="cpu")
    with pytest.raises(InvalidInputError, match="does not exist"):
        adapt(photos, tmp_path / "no" / "such" / "dir.pt", TINY, device="cpu")
    (tmp_path / "a_folder.pt").mkdir()
    with pytest.raises(InvalidInputError, match="is a folder"):
        adapt(photos, tmp_path / "a_folder.pt", TINY, device="cpu", overwrite=True)
    assert not list(pkg.rglob("mine*"))


def test_from_weights_that_are_not_the_built_in_models_are_refused_up_front(photos, tmp_path):
    odd = tmp_path / "odd.pt"
    torch.save({"a": torch.zeros(3)}, odd)
    with pytest.raises(InvalidInputError, match="not weights of the built-in model"):
        adapt(photos, tmp_path / "m.pt", TINY, base=odd, device="cpu")
    good = torch.load(Path(__file__).parents[2] / "densedet_tile" / "detector" / "weights" / "default.pt", weights_only=True)
    good["state_dict"].pop(next(iter(good["state_dict"])))
    torch.save(good, odd)
    with pytest.raises(InvalidInputError, match="do not fit the model"):
        adapt(photos, tmp_path / "m.pt", TINY, base=odd, device="cpu")
    assert not (tmp_path / "m.pt").exists()


def test_a_folder_whose_photos_all_fail_to_decode_is_refused_not_trained_on(tmp_path):
    folder = tmp_path / "p"
    folder.mkdir()
    whole = (write_photos(tmp_path / "src", n=1) / "shelf_0.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(whole[: len(whole) // 3])  # its header passes the listing
    with pytest.raises(InvalidInputError, match=r"none of its 1 photo could be decoded \(the first: cut\.jpg"):
        adapt(folder, tmp_path / "m.pt", TINY, device="cpu")
    assert not (tmp_path / "m.pt").exists()


def test_find_photos_takes_images_larger_than_pillows_bomb_limit(tmp_path, monkeypatch):
    from PIL import Image as PILImage

    folder = write_photos(tmp_path / "p", n=1)
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 1000)  # the photo is a "bomb" to Pillow now
    good, bad, _ = find_photos(folder)
    assert [p.name for p in good] == ["shelf_0.jpg"] and not bad
    assert PILImage.MAX_IMAGE_PIXELS == 1000  # and Pillow's own limit is left as it was


def test_settings_round_trip_and_refuse_nonsense():
    assert AdaptSettings.from_dict(TINY.to_dict()) == TINY
    for kw in [dict(minutes=None, steps=None), dict(size=100), dict(synth=1.0), dict(rounds=0), dict(batch=0),
               dict(serve_thr=0.0), dict(serve_thr=1.0), dict(calib_photos=0), dict(calib_photos=True)]:
        with pytest.raises(InvalidInputError):
            AdaptSettings(**kw)


def test_output_paths_sit_beside_the_weights(tmp_path):
    p = output_paths(tmp_path / "my_stores.pt")
    assert {k: v.name for k, v in p.items()} == {"weights": "my_stores.pt", "state": "my_stores.state.pt",
                                                 "report_json": "my_stores.report.json",
                                                 "report_txt": "my_stores.report.txt"}


def test_an_out_without_a_file_name_is_refused(photos):
    for bad in (".", "/", ""):
        with pytest.raises(InvalidInputError, match="not a file name"):
            output_paths(bad)
    with pytest.raises(InvalidInputError, match="not a file name"):
        adapt(photos, ".", TINY, device="cpu")


def _base_weights():
    return torch.load(Path(__file__).parents[2] / "densedet_tile" / "detector" / "weights" / "default.pt",
                      weights_only=True)


@pytest.mark.parametrize("change, says", [
    ({"config": {"input_size": "abc"}}, "input_size"),
    ({"config": {"mean": [0.5]}}, "mean must be 3 numbers"),
    ({"config": {"std": [0.2, 0.2, 0.0]}}, "std must be positive"),
    ({"config": {"stride": 7}}, "stride is 7, but the network's outputs are at stride 8"),
    ({"config": {"widths": [16]}}, "does not describe a model"),
    ({"info": "notadict"}, "'info' is a str, not a dict"),
], ids=["input_size", "mean", "std", "stride", "widths", "info"])
def test_from_weights_with_a_malformed_config_or_info_are_refused_up_front(photos, tmp_path, change, says):
    ck = _base_weights()
    ck["config"] = {**ck["config"], **change.get("config", {})}
    if "info" in change:
        ck["info"] = change["info"]
    base = tmp_path / "odd.pt"
    torch.save(ck, base)
    with pytest.raises(InvalidInputError, match=f"--from {base}: .*{says}"):
        adapt(photos, tmp_path / "m.pt", TINY, base=base, device="cpu")
    assert list(tmp_path.iterdir()) == [base]


def test_a_folder_whose_photos_fail_to_decode_is_refused_at_set_up_naming_the_photo(tmp_path):
    from densedet_tile.train.adapt import AdaptRun

    folder = tmp_path / "p"
    folder.mkdir()
    whole = (write_photos(tmp_path / "src", n=1) / "shelf_0.jpg").read_bytes()
    (folder / "b_cut.jpg").write_bytes(whole[: len(whole) // 3])  # its header passes the listing
    (folder / "a_text.png").write_text("not an image")  # fails at the listing
    # refused before the run starts (the CLI's exit 2), naming the photo that failed, not a.png
    with pytest.raises(InvalidInputError, match=r"none of its 1 photo could be decoded \(the first: b_cut\.jpg: .*trunc"):
        AdaptRun(folder, tmp_path / "m.pt", TINY, device="cpu")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p", "src"]


def test_a_held_out_photo_that_fails_to_decode_is_replaced(tmp_path):
    folder = write_photos(tmp_path / "p", n=3)
    whole = (folder / "shelf_0.jpg").read_bytes()
    (folder / "a_cut.jpg").write_bytes(whole[: len(whole) // 3])  # first of the sorted names
    seed = next(k for k in range(100) if np.random.default_rng([k, 11]).permutation(4)[0] == 0)  # draws it
    # (two photo crops a step: the one step draws from both training photos)
    s = AdaptSettings(**{**TINY.__dict__, "holdout": 1, "steps": 1, "rounds": 1, "seed": seed, "batch": 4})
    res = adapt(folder, tmp_path / "h.pt", s, device="cpu")
    rep = res.report
    assert [n for n, _ in rep["skipped"]] == ["a_cut.jpg"]
    assert rep["holdout"] == 1 and rep["holdout_check"]["photos"] == 1 and rep["photos_used"] == 2


def test_a_stop_during_the_final_held_out_check_is_honoured_and_resume_redoes_it(tmp_path):
    folder = write_photos(tmp_path / "p", n=3)
    s = AdaptSettings(**{**TINY.__dict__, "holdout": 2, "steps": 1, "rounds": 1})
    seen = {"after": 0, "left": []}

    def progress(e):
        seen["after"] += e["phase"] == "after"
        if e["phase"] == "train":
            seen["left"].append(e["seconds_left"])

    out = tmp_path / "a.pt"
    first = adapt(folder, out, s, device="cpu", progress=progress, should_stop=lambda: seen["after"] > 0)
    assert first.status == "stopped" and seen["after"] == 1 and not out.exists()
    assert first.paths["state"].exists()
    # under a step budget alone the time left is estimated from the time the steps took
    assert seen["left"] and all(isinstance(x, float) for x in seen["left"])
    second = adapt(folder, out, None, device="cpu", resume=True)
    assert second.status == "done" and second.report["holdout_check"]["photos"] == 2


def test_resume_with_part_of_the_budget_keeps_the_rest(photos, tmp_path):
    out = tmp_path / "b.pt"
    assert adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(4)).status == "stopped"
    for budget in ({"lr": 1.0}, {"steps": 0}):
        with pytest.raises(InvalidInputError, match="budget takes|steps must be"):
            adapt(photos, out, None, device="cpu", resume=True, budget=budget)
    res = adapt(photos, out, None, device="cpu", resume=True, budget={"minutes": 30.0})
    assert res.status == "done" and res.report["steps"] == TINY.steps  # the saved step budget still counts
    assert res.report["settings"]["minutes"] == 30.0 and res.report["settings"]["steps"] == TINY.steps


def test_a_damaged_state_is_refused_in_one_line(photos, tmp_path):
    out = tmp_path / "s.pt"
    torch.save({"version": STATE_VERSION, "folder": str(photos.resolve()), "settings": TINY.to_dict()},
               output_paths(out)["state"])
    with pytest.raises(InvalidInputError, match=r"s\.state\.pt: not a complete adapt state \(missing train, "):
        adapt(photos, out, None, device="cpu", resume=True)
    # a file that is not a state at all (a JPEG in its place): said so, without repeating torch's
    # advice to load it unsafely
    output_paths(out)["state"].write_bytes((photos / "shelf_0.jpg").read_bytes())
    with pytest.raises(InvalidInputError) as info:
        adapt(photos, out, None, device="cpu", resume=True)
    msg = str(info.value)
    assert "cannot read the saved state (damaged" in msg and "weights_only" not in msg and "\n" not in msg


def test_batches_keep_at_least_one_photo_crop():
    assert AdaptSettings(batch=8, synth=0.95).n_synth == 7
    assert AdaptSettings(batch=8, synth=0.5).n_synth == 4
    assert AdaptSettings(batch=1, synth=0.9).n_synth == 0
    assert AdaptSettings(batch=2, synth=0.0).n_synth == 0


def test_max_pixels_skips_larger_photos_and_is_a_setting(tmp_path):
    folder = write_photos(tmp_path / "p", n=1)  # 224 x 160 = 35840 pixels
    Image.new("RGB", (300, 300)).save(folder / "big.png")
    good, bad, _ = find_photos(folder, max_pixels=50_000)
    assert [p.name for p in good] == ["shelf_0.jpg"]
    assert [p.name for p, _ in bad] == ["big.png"] and "more than max_pixels=50000" in bad[0][1]
    assert [p.name for p in find_photos(folder, max_pixels=None)[0]] == ["big.png", "shelf_0.jpg"]
    s = AdaptSettings(max_pixels=50_000)
    assert AdaptSettings.from_dict(s.to_dict()) == s
    assert AdaptSettings.from_dict({k: v for k, v in s.to_dict().items() if k != "max_pixels"}).max_pixels == 2**31
    with pytest.raises(InvalidInputError, match="max_pixels"):
        AdaptSettings(max_pixels=0)


def test_pseudo_labels_are_the_networks_own_boxes_without_the_stack_splitter(photos, tmp_path, monkeypatch):
    mod = importlib.import_module("densedet_tile.train.adapt")
    seen = []
    real_label = mod.pseudo_label

    def spy(image, detector, settings, **kw):
        seen.append(detector.split_stacks)
        return real_label(image, detector, settings, **kw)

    monkeypatch.setattr(mod, "pseudo_label", spy)
    s = AdaptSettings(**{**TINY.__dict__, "steps": 2, "rounds": 1})
    out = tmp_path / "labels.pt"
    assert adapt(photos, out, s, device="cpu").status == "done"
    assert seen and not any(seen)
    # the adapted weights are served like the shipped ones: with the splitter
    from densedet_tile.detector.registry import load_detector

    assert load_detector("default", device="cpu", checkpoint=str(out)).split_stacks is True


def test_what_the_engine_says_while_labelling_names_the_photo_and_the_view(monkeypatch):
    # the engine's warnings during adapt's labelling said "<array>" (an adapt run on real photos
    # printed two small-product warnings naming no photo): each view carries the photo's name
    import densedet_tile.pipeline as pipeline
    from densedet_tile.train.pseudo import LabelSettings, view_detections
    from fakes import BlobDetector, blob_image

    names = []
    real = pipeline.detect_image

    def spy(source, *a, **k):
        names.append(source.name)
        return real(source, *a, **k)

    monkeypatch.setattr(pipeline, "detect_image", spy)
    image = blob_image(300, 500, (10, 20, 100, 80))
    view_detections(image, BlobDetector(), LabelSettings(), name="IMG_0001.jpg")
    assert names and all(n.startswith("IMG_0001.jpg (view at tile ") for n in names)
    assert any(n.endswith(", mirrored)") for n in names) == any(flip for _, flip in LabelSettings().views_of(500, 300))


def test_find_photos_says_when_it_may_not_list_the_folder(tmp_path, monkeypatch):
    # a folder the user may not read: rglob passed over it and the run said "no readable images"
    import os

    locked = tmp_path / "photos"
    locked.mkdir()
    scandir = os.scandir

    def refuse(path):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refuse)
    with pytest.raises(InvalidInputError, match="photos: cannot list the folder \\(Permission denied\\)"):
        find_photos(locked)


def test_a_stop_asked_while_the_budget_runs_out_stops_the_run_rather_than_failing_it(photos, tmp_path, clock):
    # an outside review: SIGTERM while a photo was labelled, and that photo used up the budget;
    # the budget check came first, so the run ended "failed: the budget ran out", exit 1, not
    # stopped (exit 143) with its state kept for --resume
    clock.update(label=70.0, step=1.0)  # one photo takes longer than the whole 60 s budget
    s = AdaptSettings(**{**TINY.__dict__, "minutes": 1.0, "steps": None, "rounds": 2})
    out = tmp_path / "stopped.pt"
    res = adapt(photos, out, s, device="cpu", should_stop=lambda: clock["t"] > 1000.0)  # asked during the label
    assert res.status == "stopped" and not out.exists() and res.paths["state"].exists()
    clock.update(label=1.0, step=1.0)
    res = adapt(photos, out, None, device="cpu", resume=True, budget={"minutes": 10.0})
    assert res.status == "done" and out.is_file() and res.report["steps"] > 0
