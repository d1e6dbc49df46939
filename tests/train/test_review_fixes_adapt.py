"""adapt, from an outside review of the verb: --out may not be one of the photos, a run whose
loss overflows leaves nothing to resume into the same overflow, a photo linked twice is one
photo, a report of the user's is not replaced, and weights holding nan are refused up front."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from densedet_tile.errors import InvalidInputError
from densedet_tile.train.adapt import AdaptFailed, AdaptSettings, adapt, find_photos, output_paths
from test_adapt_run import TINY, write_photos

WEIGHTS = Path(__file__).parents[2] / "densedet_tile" / "detector" / "weights" / "default.pt"


def test_out_over_one_of_the_photos_is_refused_even_with_overwrite(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "p")
    photo = folder / "shelf_0.jpg"
    before = photo.read_bytes()
    with pytest.raises(InvalidInputError, match="would overwrite the photo"):
        adapt(folder, photo, TINY, device="cpu", overwrite=True)
    assert photo.read_bytes() == before


def test_a_loss_that_overflows_removes_the_state_and_says_to_start_again(tmp_path: Path, monkeypatch) -> None:
    mod = importlib.import_module("densedet_tile.train.adapt")
    monkeypatch.setattr(mod, "train_step", lambda *a, **kw: None)  # what train_step returns for a non-finite step
    folder = write_photos(tmp_path / "p")
    out = tmp_path / "m.pt"
    with pytest.raises(AdaptFailed, match=r"non-finite at step 0.*state removed.*lower --lr"):
        adapt(folder, out, TINY, device="cpu")
    assert not out.exists() and not output_paths(out)["state"].exists()
    monkeypatch.undo()
    assert adapt(folder, out, TINY, device="cpu").status == "done"  # a fresh run is not refused


def test_a_photo_with_two_names_is_listed_once(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "p", n=3)
    (folder / "sub").mkdir()
    (folder / "sub" / "again.jpg").symlink_to(folder / "shelf_0.jpg")
    os.link(folder / "shelf_1.jpg", folder / "sub" / "hard.jpg")
    good, bad, _ = find_photos(folder)
    assert sorted(p.relative_to(folder).as_posix() for p in good) == ["shelf_0.jpg", "shelf_1.jpg", "shelf_2.jpg"]
    reasons = {p.relative_to(folder).as_posix(): why for p, why in bad}
    assert reasons == {"sub/again.jpg": "the same file as shelf_0.jpg", "sub/hard.jpg": "the same file as shelf_1.jpg"}
    res = adapt(folder, tmp_path / "m.pt", AdaptSettings(**{**TINY.__dict__, "holdout": 1}), device="cpu")
    held = res.report["holdout_check"]["names"]
    assert len(held) == 1 and held[0] in {"shelf_0.jpg", "shelf_1.jpg", "shelf_2.jpg"}
    assert res.report["photos_available"] == 2  # the other two, each once


def test_a_file_of_the_users_where_the_report_goes_is_not_replaced(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "p")
    out = tmp_path / "stores.pt"
    notes = output_paths(out)["report_txt"]
    notes.write_text("my notes\n")
    with pytest.raises(InvalidInputError, match=r"stores\.report\.txt exists"):
        adapt(folder, out, TINY, device="cpu")
    assert notes.read_text() == "my notes\n"
    assert adapt(folder, out, TINY, device="cpu", overwrite=True).status == "done"
    out.unlink()  # the weights gone, the run's own reports stay: a new run may replace them
    assert adapt(folder, out, TINY, device="cpu").status == "done"


def test_from_weights_holding_nan_are_refused_before_any_work(tmp_path: Path) -> None:
    ck = torch.load(WEIGHTS, weights_only=True)
    name = next(k for k, v in ck["state_dict"].items() if v.is_floating_point())
    ck["state_dict"][name] = torch.full_like(ck["state_dict"][name], float("nan"))
    torch.save(ck, tmp_path / "nan.pt")
    with pytest.raises(InvalidInputError, match=r"inf or nan.*cannot be trained on"):
        adapt(write_photos(tmp_path / "p"), tmp_path / "m.pt", TINY, base=tmp_path / "nan.pt", device="cpu")
    assert not (tmp_path / "m.pt").exists() and not output_paths(tmp_path / "m.pt")["state"].exists()
