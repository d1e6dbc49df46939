"""The threshold adapted weights serve at: picked from counts at the end of a run (the default),
or as given; and the engine's counts at many thresholds from one pass of the network."""

from __future__ import annotations

import importlib
import importlib.resources
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.pipeline import counts_at_thresholds, detect_image
from densedet_tile.synth.shelves import render_shelf
from densedet_tile.train.adapt import CALIB_GRID, _read_photo, adapt
from densedet_tile.train.pseudo import pseudo_label

from test_adapt_run import TINY, _stop_at, clock, count_calls, write_photos  # noqa: F401 (clock: a fixture)

#: the built-in weights as a torch checkpoint: the starting weights adapt trains from
BUILTIN_PT = importlib.resources.files("densedet_tile.detector") / "weights" / "default.pt"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return write_photos(tmp_path_factory.mktemp("photos"), n=3)


#: the threshold the photo rule's checks measured at, in each call adapt made to label a photo
#: or to count one at many thresholds (filled by ``picked``)
SCALE_THRS: dict[str, list] = {"pseudo_label": [], "counts_at_thresholds": []}


@pytest.fixture(scope="module")
def picked(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("picked") / "picked.pt"
    adapt_mod = importlib.import_module("densedet_tile.train.adapt")
    pipeline = importlib.import_module("densedet_tile.pipeline")

    def recording(fn, key):
        def wrapped(*a, **kw):
            SCALE_THRS[key].append(kw.get("scale_thr"))
            return fn(*a, **kw)
        return wrapped

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapt_mod, "pseudo_label", recording(adapt_mod.pseudo_label, "pseudo_label"))
        mp.setattr(pipeline, "counts_at_thresholds", recording(pipeline.counts_at_thresholds, "counts_at_thresholds"))
        res = adapt(photos, out, TINY, device="cpu")
    return res, torch.load(out, weights_only=True)


def test_labels_and_counts_see_each_photo_at_the_scale_it_is_served_at(picked):
    # an outside review: the photo rule's close-up check measured the labels' photos at their low
    # threshold (0.3) and the counts' at the grid's lowest (0.2), while the crops were cut at the
    # scale measured at the served threshold: boxes the served weights drop could make a photo a
    # close-up for one and not for the other
    served = dt.load_detector("default").score_thr
    assert SCALE_THRS["pseudo_label"] and set(SCALE_THRS["pseudo_label"]) == {served}
    assert SCALE_THRS["counts_at_thresholds"] and set(SCALE_THRS["counts_at_thresholds"]) == {served}


def test_counts_at_thresholds_equal_runs_at_each_threshold():
    img, _ = render_shelf(np.random.default_rng(5), width=900, height=700, product_height=110)
    img = np.asarray(img)
    tiling = dt.TileSpec(tile=384, overlap=0.2)
    # at a given scale: a small photo's rule measures its products at each run's threshold, and
    # counts_at_thresholds once (its docstring)
    run = dt.RunSpec(scale=1.5)
    grid = [0.05, 0.08, 0.3, 0.45, 0.6, 0.75, 0.9]  # (a detector returns nothing under 0.05)
    got = counts_at_thresholds(img, dt.load_detector("default", score_thr=0.05), grid, tiling=tiling, run=run)
    want = [len(detect_image(img, dt.load_detector("default", score_thr=t), tiling=tiling, run=run).detections)
            for t in grid]
    assert got == want
    assert want[0] > want[-1]  # the thresholds matter on this shelf: not equal by being all the same
    # a detector that stops above the lowest threshold cannot count there
    with pytest.raises(InvalidInputError, match="score_thr=0.3"):
        counts_at_thresholds(img, dt.load_detector("default", score_thr=0.5), grid[2:], tiling=tiling)
    with pytest.raises(InvalidInputError, match="thresholds"):
        counts_at_thresholds(img, dt.load_detector("default", score_thr=0.3), [], tiling=tiling)


def test_the_picked_threshold_counts_closest_to_the_larger_of_pseudo_labels_and_the_starting_count(picked, photos):
    res, ck = picked
    thr = ck["info"]["score_thr"]
    how = ck["info"]["score_thr_picked"]
    assert thr in CALIB_GRID and res.report["serve_thr"] == thr and how["matched_counts"]
    assert how["photos"] == 3  # fewer photos than calib_photos: every one
    # redo it from the written weights: their pseudo-labels and their counts at every threshold
    lab = TINY.labels
    labeller = dt.load_detector("default", checkpoint=res.paths["weights"], score_thr=lab.score_lo,
                                options={"split_stacks": False})
    counter = dt.load_detector("default", checkpoint=res.paths["weights"], score_thr=CALIB_GRID[0])
    tiling = dt.TileSpec(tile=lab.tile, overlap=lab.overlap)
    # the starting weights (the built-in ones, on torch as adapt trains them), plainly at their threshold
    starting = dt.load_detector("default", checkpoint=BUILTIN_PT, options={"split_stacks": False})
    reference, start, totals = 0, 0, np.zeros(len(CALIB_GRID), np.int64)
    served = dt.load_detector("default").score_thr  # (the starting weights': adapt measures scales there)
    for p in sorted(photos.glob("*.jpg")):
        image = _read_photo(p)
        reference += len(pseudo_label(image, labeller, lab, scale_thr=served).boxes)
        start += len(detect_image(image, starting, tiling=tiling).detections)
        totals += counts_at_thresholds(image, counter, CALIB_GRID, tiling=tiling, scale_thr=served)
    assert reference == round(how["pseudo_labels_per_photo"] * 3)
    assert start == round(how["start_boxes_per_photo"] * 3) and start > 0
    assert how["matched"] == ("starting_weights" if start > reference else "pseudo_labels")
    miss = np.abs(totals - max(reference, start))
    ties = np.flatnonzero(miss == miss.min())
    # of the thresholds that count alike, the one nearest the starting weights'
    assert CALIB_GRID.index(thr) == ties[np.argmin(np.abs(np.asarray(CALIB_GRID)[ties] - served))]
    assert totals[CALIB_GRID.index(thr)] == round(how["boxes_per_photo"] * 3)
    assert len(set(totals.tolist())) > 1  # the counts do depend on the threshold here


def test_a_given_serve_thr_is_written_as_given_and_nothing_is_picked(photos, tmp_path, monkeypatch):
    pipeline = importlib.import_module("densedet_tile.pipeline")

    def never(*a, **kw):
        raise AssertionError("counted at thresholds although the threshold was given")

    monkeypatch.setattr(pipeline, "counts_at_thresholds", never)
    res = adapt(photos, tmp_path / "fixed.pt", replace(TINY, serve_thr=0.55), device="cpu")
    ck = torch.load(res.paths["weights"], weights_only=True)
    assert ck["info"]["score_thr"] == 0.55 and ck["info"]["score_thr_picked"] is None
    assert res.report["serve_thr"] == 0.55 and res.report["serve_thr_picked"] is None
    assert "serve at score threshold 0.55 unless" in res.paths["report_txt"].read_text()


def test_a_stop_while_picking_resumes_to_the_same_threshold_and_weights(picked, photos, tmp_path):
    # polls: one before the starting weights count each of the 3 photos (3), 3 photos + 2 steps in
    # each of the 2 rounds (10), then one before each calibration photo
    out = tmp_path / "r.pt"
    events = []
    first = adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(15), progress=events.append)
    assert first.status == "stopped" and not out.exists()
    assert [e["done"] for e in events if e["phase"] == "calibrate"] == [0]
    second = adapt(photos, out, None, device="cpu", resume=True)
    assert second.status == "done"
    got, want = torch.load(out, weights_only=True), picked[1]
    assert got["info"]["score_thr"] == want["info"]["score_thr"]
    assert got["info"]["score_thr_picked"] == want["info"]["score_thr_picked"]
    for k in want["state_dict"]:
        assert torch.equal(got["state_dict"][k], want["state_dict"][k]), k


def test_held_out_photos_never_pick_the_threshold_their_check_is_scored_at(tmp_path, monkeypatch):
    # the threshold is fitted so that plain counts match pseudo-labels: fitted on the held-out
    # photos, their "after" count would agree by construction
    import hashlib

    mod = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name

    folder = write_photos(tmp_path / "p", n=4)
    seen: list[str] = []
    real = mod.pseudo_label

    def spying(image, *a, **kw):
        seen.append(hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest())
        return real(image, *a, **kw)

    monkeypatch.setattr(mod, "pseudo_label", spying)
    s = replace(TINY, holdout=1, rounds=1, steps=2, calib_photos=5)
    res = adapt(folder, tmp_path / "h.pt", s, device="cpu")
    how = res.report["serve_thr_picked"]
    assert how["photos"] == 3 and res.report["holdout_check"]["photos"] == 1  # every training photo, no more
    held = res.report["holdout_check"]["names"][0]
    held_hash = hashlib.sha1(mod._read_photo(folder / held).tobytes()).hexdigest()
    # 3 training photos labelled in the round, the same 3 to pick the threshold, the held-out one
    # once for its check, last
    assert len(seen) == 3 + 3 + 1 and seen.count(held_hash) == 1 and seen[-1] == held_hash
    assert sorted(seen[:3]) == sorted(seen[3:6])
    rep = json.loads(res.paths["report_json"].read_text())
    assert rep["serve_thr_picked"] == how and rep["serve_thr"] == res.report["serve_thr"]


def test_nothing_to_match_serves_at_the_starting_weights_threshold(photos, tmp_path, monkeypatch):
    mod = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name
    from densedet_tile.detector.builtin import DEFAULT_CONFIG

    real = mod.pseudo_label

    def none_at_the_end(image, detector, settings, run=None, **kw):
        got = real(image, detector, settings, run, **kw)
        if calibrating["on"]:
            return replace(got, boxes=got.boxes[:0], scores=got.scores[:0], votes=got.votes[:0])
        return got

    real_plain = mod.AdaptRun._plain

    def none_at_the_start(self, *a, **kw):  # the starting weights find nothing either
        got = real_plain(self, *a, **kw)
        return got[:0] if counting["on"] else got

    calibrating, counting = {"on": False}, {"on": False}

    def progress(e):
        calibrating["on"] = e["phase"] == "calibrate"
        counting["on"] = e["phase"] == "count"

    monkeypatch.setattr(mod, "pseudo_label", none_at_the_end)
    monkeypatch.setattr(mod.AdaptRun, "_plain", none_at_the_start)
    res = adapt(photos, tmp_path / "n.pt", replace(TINY, rounds=1, steps=2), device="cpu", progress=progress)
    assert res.report["serve_thr"] == DEFAULT_CONFIG["score_thr"]
    assert res.report["serve_thr_picked"]["matched_counts"] is False
    assert "the starting weights' own" in res.paths["report_txt"].read_text()


def test_a_time_budget_keeps_time_for_picking_the_threshold(photos, tmp_path, clock):
    # the clock moves 1 s per photo labelled and 1 s per step (nothing else takes time): 30 s in
    # one round; the 3 calibration photos take 3 s at the end, kept back from training
    start = clock["t"]
    res = adapt(photos, tmp_path / "t.pt", replace(TINY, minutes=0.5, steps=None, rounds=1), device="cpu")
    assert res.status == "done" and res.report["serve_thr_picked"]["photos"] == 3
    assert clock["t"] - start <= 30.0  # labelling 3 s, steps, then 3 s of calibration: all inside the budget
    assert res.report["steps"] >= 10  # and the reserve (3 x (1 s + 2 s estimated) + 5 s) is not most of it


def test_the_cli_takes_auto_or_a_threshold():
    from densedet_tile.cli.adapt import build_parser

    p = build_parser()
    assert p.parse_args(["photos", "--out", "o.pt"]).serve_thr is None  # auto by default
    assert p.parse_args(["photos", "--out", "o.pt", "--serve-thr", "AUTO"]).serve_thr is None
    args = p.parse_args(["photos", "--out", "o.pt", "--serve-thr", "0.55", "--calib-photos", "8"])
    assert args.serve_thr == 0.55 and args.calib_photos == 8
    for bad in (["--serve-thr", "0"], ["--serve-thr", "1"], ["--serve-thr", "high"], ["--calib-photos", "0"]):
        with pytest.raises(SystemExit):
            p.parse_args(["photos", "--out", "o.pt", *bad])


def test_the_threshold_and_the_held_out_check_count_the_networks_own_boxes(tmp_path, monkeypatch):
    # pseudo-labels are made without the stack splitter: the counts they are matched with, and
    # the boxes checked against them, must be made without it too (a stack cut in k layers
    # would add k - 1 boxes the labels lack)
    import densedet_tile.pipeline as pipeline

    mod = importlib.import_module("densedet_tile.train.adapt")
    splitter: dict[str, set] = {"count": set(), "plain": set(), "label": set()}
    real_counts, real_detect, real_label = pipeline.counts_at_thresholds, pipeline.detect_image, mod.pseudo_label

    def counts(image, detector, *a, **kw):
        splitter["count"].add(detector.split_stacks)
        return real_counts(image, detector, *a, **kw)

    def detect(image, detector, *a, **kw):
        splitter["plain"].add(detector.split_stacks)
        return real_detect(image, detector, *a, **kw)

    def label(image, detector, *a, **kw):
        splitter["label"].add(detector.split_stacks)
        return real_label(image, detector, *a, **kw)

    monkeypatch.setattr(pipeline, "counts_at_thresholds", counts)
    monkeypatch.setattr(pipeline, "detect_image", detect)  # the plain runs (the views' own runs too)
    monkeypatch.setattr(mod, "pseudo_label", label)
    folder = write_photos(tmp_path / "p", n=3)
    res = adapt(folder, tmp_path / "c.pt", replace(TINY, holdout=1, rounds=1, steps=1, calib_photos=2), device="cpu")
    assert res.status == "done" and res.report["holdout_check"]["photos"] == 1
    assert splitter == {"count": {False}, "plain": {False}, "label": {False}}


def _pick(totals, target):
    """The threshold adapt picks: counting closest to ``target``, of ties the one nearest the
    starting weights' threshold (the built-in's)."""
    miss = np.abs(np.asarray(totals) - target)
    ties = np.flatnonzero(miss == miss.min())
    base = dt.load_detector("default").score_thr
    return CALIB_GRID[int(ties[np.argmin(np.abs(np.asarray(CALIB_GRID)[ties] - base))])]


@pytest.mark.parametrize("fewer", ["pseudo_labels", "start"])
def test_the_served_threshold_follows_whichever_count_is_larger(photos, tmp_path, monkeypatch, fewer):
    # the pseudo-labels are a cautious count (products the views score under score_hi are left
    # out): where they count fewer boxes than the starting weights did, the starting weights'
    # count is matched, and the other way round (each side made small here in turn)
    mod = importlib.import_module("densedet_tile.train.adapt")  # the package exports a function of that name
    pipeline = importlib.import_module("densedet_tile.pipeline")
    real_label, real_plain, real_counts = mod.pseudo_label, mod.AdaptRun._plain, pipeline.counts_at_thresholds
    phase = {"now": None}
    seen = {"start": [], "labels": [], "totals": []}

    def label(image, detector, settings, run=None, **kw):
        got = real_label(image, detector, settings, run, **kw)
        if phase["now"] == "calibrate":
            if fewer == "pseudo_labels":
                got = replace(got, boxes=got.boxes[:1], scores=got.scores[:1], votes=got.votes[:1])
            seen["labels"].append(len(got.boxes))
        return got

    def plain(self, *a, **kw):
        got = real_plain(self, *a, **kw)
        if phase["now"] == "count":
            got = got[:1] if fewer == "start" else got
            seen["start"].append(len(got))
        return got

    def counts(*a, **kw):
        got = real_counts(*a, **kw)
        seen["totals"].append(got)
        return got

    def progress(e):
        phase["now"] = e["phase"]
        if e["phase"] == "train":
            assert len(seen["start"]) == 3  # counted before the first step: the starting weights

    monkeypatch.setattr(mod, "pseudo_label", label)
    monkeypatch.setattr(mod.AdaptRun, "_plain", plain)
    monkeypatch.setattr(pipeline, "counts_at_thresholds", counts)
    res = adapt(photos, tmp_path / "f.pt", replace(TINY, rounds=1, steps=2), device="cpu", progress=progress)
    how = res.report["serve_thr_picked"]
    start, labels, totals = sum(seen["start"]), sum(seen["labels"]), np.sum(seen["totals"], axis=0)
    assert len(seen["labels"]) == 3 and start == round(how["start_boxes_per_photo"] * 3)
    larger = max(start, labels)
    assert larger > min(start, labels)  # the two differ: the larger one decides
    assert how["matched"] == ("starting_weights" if fewer == "pseudo_labels" else "pseudo_labels")
    assert res.report["serve_thr"] == _pick(totals, larger)
    assert _pick(totals, larger) != _pick(totals, min(start, labels))  # (and matching the smaller picks another)
    assert ("the starting weights' count" if fewer == "pseudo_labels" else "their pseudo-labels' count") in \
        res.paths["report_txt"].read_text()


def test_a_stop_while_the_starting_weights_count_resumes_to_the_same_threshold_and_weights(picked, photos, tmp_path):
    out = tmp_path / "c.pt"
    events = []
    first = adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(2), progress=events.append)
    # (stopped at the poll before the second photo: the first counted, the rest left to the resumed run)
    assert first.status == "stopped" and [e["done"] for e in events if e["phase"] == "count"] == [0]
    assert not any(e["phase"] == "train" for e in events)
    second = adapt(photos, out, None, device="cpu", resume=True)
    got, want = torch.load(out, weights_only=True), picked[1]
    assert got["info"]["score_thr"] == want["info"]["score_thr"]
    assert got["info"]["score_thr_picked"] == want["info"]["score_thr_picked"]
    for k in want["state_dict"]:
        assert torch.equal(got["state_dict"][k], want["state_dict"][k]), k


def test_the_runs_that_count_do_not_repeat_the_engines_small_products_warning(photos, tmp_path, monkeypatch, caplog):
    # the starting weights count 24 photos at the start: a photo whose products reach the model
    # small was warned of there, with detect's advice (--tile auto); the labelling runs never warn
    import logging

    pipeline = importlib.import_module("densedet_tile.pipeline")
    calls = {"n": 0}

    def always(result, target, zoom):  # as if every photo's products were small
        calls["n"] += 1
        pipeline.log.warning("%s: the products found reach the model at about %.0f px high, under half", result.name,
                             10.0)

    monkeypatch.setattr(pipeline, "_warn_small_products", always)
    with caplog.at_level(logging.WARNING):
        res = adapt(photos, tmp_path / "w.pt", replace(TINY, rounds=1, steps=2, holdout=1), device="cpu")
    assert res.status == "done" and calls["n"] >= 2 + 2  # the count of 2 photos, the held-out check twice
    assert not [r for r in caplog.records if "reach the model at about" in r.getMessage()]
    # outside adapt the warning is the engine's, as before
    with caplog.at_level(logging.WARNING):
        dt.detect(np.zeros((64, 64, 3), np.uint8), dt.load_detector("default"))
    assert [r for r in caplog.records if "reach the model at about" in r.getMessage()]


@pytest.mark.parametrize("polls, phase", [(5, "label"), (7, "train")],
                         ids=["stopped-while-labelling", "stopped-before-the-first-step"])
def test_an_earlier_versions_state_before_any_step_counts_the_starting_weights_on_resume(picked, photos, tmp_path,
                                                                                         polls, phase):
    # a state saved by the version before the count (no "start_counts"), stopped before the first
    # step: the weights are still the starting ones, so the resumed run counts them (it picked from
    # the pseudo-labels alone, and its report said "the larger" of one count); the same threshold
    # and weights as an uninterrupted run
    from densedet_tile.io import atomic_write
    from densedet_tile.train.loop import checkpoint_bytes

    out = tmp_path / "old.pt"
    # polls: the count of the 3 photos (3), then one before each photo labelled and each step
    first = adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(polls))
    state = torch.load(first.paths["state"], weights_only=True)
    assert first.status == "stopped" and state["step"] == 0 and state["phase"] == phase
    del state["start_counts"], state["digest"]  # (the version before the count had no checksum either)
    atomic_write(first.paths["state"], checkpoint_bytes(state))
    second = adapt(photos, out, None, device="cpu", resume=True)
    got, want = torch.load(out, weights_only=True), picked[1]
    assert got["info"]["score_thr_picked"] == want["info"]["score_thr_picked"]
    assert got["info"]["score_thr_picked"]["start_boxes_per_photo"] is not None
    assert got["info"]["score_thr"] == want["info"]["score_thr"]


def test_an_earlier_versions_state_after_a_step_picks_from_the_pseudo_labels_and_says_so(photos, tmp_path):
    from densedet_tile.io import atomic_write
    from densedet_tile.train.loop import checkpoint_bytes

    out = tmp_path / "old.pt"
    s = replace(TINY, rounds=1, steps=3)
    first = adapt(photos, out, s, device="cpu", should_stop=_stop_at(3 + 3 + 2))  # after the first step
    state = torch.load(first.paths["state"], weights_only=True)
    assert first.status == "stopped" and state["step"] == 1
    del state["start_counts"], state["digest"]  # (the version before the count had no checksum either)
    atomic_write(first.paths["state"], checkpoint_bytes(state))
    res = adapt(photos, out, None, device="cpu", resume=True)
    how = res.report["serve_thr_picked"]
    assert how["start_boxes_per_photo"] is None and how["matched"] == "pseudo_labels"
    text = res.paths["report_txt"].read_text()
    assert "picked to match their pseudo-labels' count: there" in text and "the larger" not in text


def _slow_counts(monkeypatch, clock, seconds: float) -> None:
    """Each count of a calibration photo at every threshold moves the run's clock ``seconds``."""
    pipeline = importlib.import_module("densedet_tile.pipeline")
    real = pipeline.counts_at_thresholds

    def slow(*a, **kw):
        clock["t"] += seconds
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "counts_at_thresholds", slow)


def test_a_machine_slowing_down_at_the_end_cuts_the_pick_short_rather_than_overrun_the_budget(tmp_path, clock,
                                                                                            monkeypatch):
    # the clock moves 1 s per photo labelled and per step; counting a calibration photo at every
    # threshold takes 12 s (the machine slowed down after the reserve was estimated from 1 s
    # labels): all 6 photos would end some 40 s past the budget, so the pick stops after a
    # third of them
    folder = write_photos(tmp_path / "six", n=6)
    _slow_counts(monkeypatch, clock, 12.0)
    start = clock["t"]
    said: list[str] = []
    res = adapt(folder, tmp_path / "s.pt", replace(TINY, minutes=1.0, steps=None, rounds=1, calib_photos=6),
                device="cpu", log=said.append)
    assert res.status == "done"
    picked = res.report["serve_thr_picked"]
    assert picked["photos_planned"] == 6 and 2 <= picked["photos"] < 6
    # (the reserve foresaw 1 s a photo: training ran to about 49 s; the third of the photos always
    # counted, 2, then end the run; all 6 would have ended near 127 s)
    assert clock["t"] - start <= 60.0 + 2 * 13.0
    assert any("calibration photos: one more would run past --minutes" in m for m in said)
    assert "of 6 (the time budget ran out)" in res.paths["report_txt"].read_text()


def test_without_a_time_budget_every_calibration_photo_counts(tmp_path, clock, monkeypatch):
    folder = write_photos(tmp_path / "four", n=4)
    _slow_counts(monkeypatch, clock, 100.0)
    res = adapt(folder, tmp_path / "s.pt", replace(TINY, rounds=1, calib_photos=4), device="cpu")
    assert res.report["serve_thr_picked"]["photos"] == res.report["serve_thr_picked"]["photos_planned"] == 4


def test_photos_lost_from_the_pick_without_a_budget_are_not_said_to_be_the_budgets(tmp_path, monkeypatch) -> None:
    # (a diff review: calibration photos that no longer read made the report blame the budget)
    folder = write_photos(tmp_path / "four", n=4)
    pipeline = importlib.import_module("densedet_tile.pipeline")
    real = pipeline.counts_at_thresholds
    spoiled = []

    def spoil_the_rest(*a, **kw):
        out = real(*a, **kw)
        if not spoiled:
            for p in sorted(folder.glob("*.jpg")):
                p.write_bytes(b"not an image any more")
                spoiled.append(p)
        return out

    monkeypatch.setattr(pipeline, "counts_at_thresholds", spoil_the_rest)
    res = adapt(folder, tmp_path / "s.pt", replace(TINY, rounds=1, calib_photos=4), device="cpu")
    picked = res.report["serve_thr_picked"]
    assert picked["photos"] < picked["photos_planned"] and picked["cut_short"] is False
    assert "time budget" not in res.paths["report_txt"].read_text()


def test_a_count_no_threshold_reaches_is_served_at_the_closest_and_not_said_matched(photos, tmp_path, monkeypatch):
    # the weights counted 10 boxes a photo short of the target even at 0.2, the grid's lowest:
    # the report said "picked to match" and matched_counts true (an outside review)
    pipeline = importlib.import_module("densedet_tile.pipeline")

    def few(image, detector, thresholds, **kw):
        return [max(0, 3 - i) for i in range(len(thresholds))]  # at most 3 a photo, fewest at the top

    monkeypatch.setattr(pipeline, "counts_at_thresholds", few)
    res = adapt(photos, tmp_path / "few.pt", replace(TINY, rounds=1, steps=2), device="cpu")
    how = res.report["serve_thr_picked"]
    assert res.report["serve_thr"] == CALIB_GRID[0]
    assert how["out_of_reach"] == "under" and how["matched_counts"] is False and how["boxes_per_photo"] == 3.0
    text = res.paths["report_txt"].read_text()
    assert "the closest to" in text and "no threshold of the search counts as many" in text
    assert "picked to match" not in text
