"""adapt, from an outside review of its usability (2026-12-06, stop 62): each test fails on the
code before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densedet_tile.errors import InvalidInputError
from densedet_tile.train.adapt import AdaptRun, adapt, find_photos
from test_adapt_run import TINY, write_photos


def test_previews_an_earlier_run_drew_into_the_folder_are_no_photos(tmp_path: Path) -> None:
    # a folder that was a batch's --out: its previews (boxes drawn on a copy of each photo) were
    # trained on, the held-out photo's among them
    folder = write_photos(tmp_path / "p", n=2)
    (folder / "shelf_0.preview.jpg").write_bytes((folder / "shelf_0.jpg").read_bytes())
    (folder / "shelf_0.detections.json").write_text(json.dumps({
        "schema": "densedet-tile/detections@1", "outputs": ["shelf_0.detections.json", "shelf_0.preview.jpg"]}))
    good, bad, _ = find_photos(folder)
    assert sorted(p.name for p in good) == ["shelf_0.jpg", "shelf_1.jpg"]
    assert [(p.name, why.split(" (")[0]) for p, why in bad] == [("shelf_0.preview.jpg", "a preview an earlier run drew")]
    # a photo of the user's that only has such a name (no JSON of ours lists it) is a photo
    (folder / "mine.preview.jpg").write_bytes((folder / "shelf_1.jpg").read_bytes())
    assert "mine.preview.jpg" in [p.name for p in find_photos(folder)[0]]


def test_an_out_that_is_one_of_the_photos_is_said_before_overwrite_is_offered(tmp_path: Path) -> None:
    folder = write_photos(tmp_path / "p", n=2)
    for overwrite in (False, True):
        with pytest.raises(InvalidInputError, match=r"would overwrite the photo .*shelf_0\.jpg; choose an --out that "
                                                    r"is not one of the photos"):
            AdaptRun(folder, folder / "shelf_0.jpg", TINY, device="cpu", overwrite=overwrite)


def test_another_runs_weights_where_the_state_goes_are_not_offered_for_deletion(tmp_path: Path) -> None:
    # weights written as m.state.pt by one run were "a stopped run: ... or delete it" to the run
    # of --out m.pt
    folder = write_photos(tmp_path / "p", n=2)
    res = adapt(folder, tmp_path / "m.state.pt", TINY, device="cpu")
    assert res.status == "done" and "info" in torch.load(tmp_path / "m.state.pt", weights_only=True)
    with pytest.raises(InvalidInputError, match=r"m\.state\.pt is there but holds no stopped adapt run .*move it away"):
        AdaptRun(folder, tmp_path / "m.pt", TINY, device="cpu")

