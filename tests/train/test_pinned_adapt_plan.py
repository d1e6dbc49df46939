"""Bookkeeping of densedet_tile.train.adapt the suite did not pin (found by mutation testing).

The methods are pure arithmetic over the run's state, so they are called on a bare AdaptRun
(no folder, no model) with the clock stubbed."""

from __future__ import annotations

import pytest

from densedet_tile.train.adapt import AdaptRun, AdaptSettings


def _bare(settings: AdaptSettings, **state) -> AdaptRun:
    run = object.__new__(AdaptRun)
    run.settings = settings
    run.s = {"round": 0, "step": 0, "labels": {}, "train": [], "skipped": [], **state}
    run.log = lambda m: None
    return run


def test_an_overrun_round_plans_only_the_later_rounds_whose_labelling_still_fits():
    run = _bare(AdaptSettings(minutes=10, rounds=3))
    run.fraction = lambda: 0.5  # labelling of round 1 ran until half the budget (its share ends at 1/3)
    run._label_fraction = lambda: 0.3  # a later round's labelling takes 30 % of the budget
    # 50 % left: one more round fits (0.3 labelling + its training), two would not (0.6 > 0.5);
    # this round and that one share the remaining 0.2 for training
    assert run._train_end() == pytest.approx(0.6)
    run._label_fraction = lambda: 0.25  # two more rounds would use it all up labelling
    assert run._train_end() == pytest.approx(0.5 + (0.5 - 0.25) / 2)
    assert run._train_end() > run.fraction()


def test_marking_the_photos_trained_on_keeps_the_earlier_ones_and_adds_each_once():
    # (that a photo labelled after a round's first step is not counted is the train loop's
    # doing, tested through it in test_review_fixes_adapt_2026_12_06b)
    run = _bare(AdaptSettings(steps=5), step=4, train=["a.jpg", "b.jpg", "c.jpg", "d.jpg"], trained_on=["a.jpg"],
                skipped=[["d.jpg", "cannot decode"]])
    run.crop_index = {"a.jpg": 0, "b.jpg": 1, "c.jpg": 2}
    run._drawn = [1, 1]  # a step's crops came from b.jpg only: c.jpg, labelled too, is not counted
    run._mark_trained()
    run._drawn = [0, 1]  # the next from a.jpg and b.jpg: nothing counted twice
    run._mark_trained()
    assert run._photos_labelled() == 2 and run.s["trained_on"] == ["a.jpg", "b.jpg"]
    run._drawn = []  # a batch of generated shelves only
    run._mark_trained()
    assert run.s["trained_on"] == ["a.jpg", "b.jpg"]
    assert run._photos_available() == 3  # d.jpg never read


def test_a_state_saved_before_the_photos_trained_on_were_kept_counts_those_labelled_before_its_last_step():
    from densedet_tile.train import adapt as mod

    s = {"train": ["a.jpg", "b.jpg", "c.jpg"], "step": 5,
         "labels": {"a.jpg": {"since": 0}, "b.jpg": {"since": 4}, "c.jpg": {"since": 5}}}
    assert mod._trained_on_of_old_state(s) == ["a.jpg", "b.jpg"]
