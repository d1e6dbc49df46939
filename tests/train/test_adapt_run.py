"""adapt(): budgets, a stopped and resumed run equal to an uninterrupted one, refusals, files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.shelves import render_shelf
from densedet_tile.train.adapt import AdaptSettings, adapt, find_photos, output_paths
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
    assert ck["info"]["score_thr"] == TINY.serve_thr == 0.5 != DEFAULT_CONFIG["score_thr"]
    assert "serve at score threshold 0.5" in res.paths["report_txt"].read_text()
    assert load_default(weights=res.paths["weights"], device="cpu").score_thr == 0.5
    assert load_default(weights=res.paths["weights"], device="cpu", score_thr=0.3).score_thr == 0.3
    # weights that name no threshold (the built-in's own) serve at the package default
    plain = tmp_path / "plain.pt"
    torch.save({**ck, "info": {k: v for k, v in ck["info"].items() if k != "score_thr"}}, plain)
    assert load_default(weights=plain, device="cpu").score_thr == DEFAULT_CONFIG["score_thr"]


@pytest.mark.parametrize("polls", [4, 6], ids=["stop-while-training", "stop-while-relabelling"])
def test_stopped_and_resumed_run_ends_with_the_uninterrupted_weights(uninterrupted, photos, tmp_path, polls):
    # should_stop is polled before each photo and each step: 2 photos, 2 steps, 2 photos, 2 steps.
    # Poll 4 comes before step 2 (round 1 training); poll 6 before the second photo of round 2.
    out = tmp_path / "resumed.pt"
    first = adapt(photos, out, TINY, device="cpu", should_stop=_stop_at(polls))
    assert first.status == "stopped" and first.paths["state"].exists() and not out.exists()
    assert first.report["steps"] == (1 if polls == 4 else 2)
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


def test_time_budget_ends_the_run_and_still_writes_weights(photos, tmp_path):
    s = AdaptSettings(minutes=0.02, steps=None, rounds=1, size=64, batch=2, synth_pool=2,
                      labels=LabelSettings(scales=(1.0,), flip=False, tile=256))
    res = adapt(photos, tmp_path / "quick.pt", s, device="cpu")
    assert res.status == "done" and (tmp_path / "quick.pt").is_file()
    assert res.report["rounds"][0]["photos_labelled"] >= 1  # at least one photo, whatever the clock


def test_holdout_photos_are_checked_before_and_after(tmp_path):
    folder = write_photos(tmp_path / "p", n=3)
    s = AdaptSettings(**{**TINY.__dict__, "holdout": 1, "steps": 2, "rounds": 1})
    res = adapt(folder, tmp_path / "h.pt", s, device="cpu")
    h = res.report["holdout_check"]
    assert res.report["photos_used"] == 2 and h["photos"] == 1
    assert set(h["before"]) == set(h["after"]) == {"boxes_per_photo", "precision", "recall", "f1"}
    assert h["reference_per_photo"] > 0 and h["before"]["boxes_per_photo"] > 0
    assert "held-out photos (1)" in res.paths["report_txt"].read_text()


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
    with pytest.raises(InvalidInputError, match=r"no readable images .*1 unreadable, 1 other"):
        adapt(bad, tmp_path / "x.pt", TINY, device="cpu")
    with pytest.raises(InvalidInputError, match="not a folder"):
        adapt(tmp_path / "missing", tmp_path / "x.pt", TINY, device="cpu")


def test_find_photos_skips_and_lists_bad_files(tmp_path):
    folder = write_photos(tmp_path / "p", n=1)
    (folder / "sub").mkdir()
    Image.new("RGB", (40, 30)).save(folder / "sub" / "b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (folder / "readme.md").write_text("x")
    good, bad, other = find_photos(folder)
    assert [p.name for p in good] == ["shelf_0.jpg", "b.png"]
    assert [p.name for p, _ in bad] == ["broken.jpg"] and other == 1


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
    with pytest.raises(InvalidInputError, match=r"none of its 1 photos could be decoded \(the first: cut\.jpg"):
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
               dict(serve_thr=0.0), dict(serve_thr=1.0)]:
        with pytest.raises(InvalidInputError):
            AdaptSettings(**kw)


def test_output_paths_sit_beside_the_weights(tmp_path):
    p = output_paths(tmp_path / "my_stores.pt")
    assert {k: v.name for k, v in p.items()} == {"weights": "my_stores.pt", "state": "my_stores.state.pt",
                                                 "report_json": "my_stores.report.json",
                                                 "report_txt": "my_stores.report.txt"}
