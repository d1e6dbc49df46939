"""adapt, from an outside review (2026-12-06): each test fails on the code before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from densedet_tile.detector.builtin import build_from_checkpoint
from densedet_tile.errors import DetectorError, InvalidInputError
from densedet_tile.train.adapt import adapt, output_paths
from test_adapt_run import TINY, _stop_at, write_photos

WEIGHTS = Path(__file__).parents[2] / "densedet_tile" / "detector" / "weights" / "default.pt"


def test_an_onnx_name_for_the_weights_is_refused() -> None:
    # adapt wrote torch weights there, which --checkpoint then read as ONNX and could not load
    with pytest.raises(InvalidInputError, match=r"--out 'w\.onnx': adapt writes torch weights.*\.pt"):
        output_paths("w.onnx")
    assert output_paths("w.pth")["report_json"].name == "w.report.json"


def test_the_report_of_other_weights_still_there_is_not_replaced(tmp_path: Path) -> None:
    # stores.pth beside stores.pt: their reports share a name, and the other's (the only record
    # of its held-out check) was replaced without --overwrite
    folder = write_photos(tmp_path / "p")
    first = tmp_path / "stores.pt"
    adapt(folder, first, TINY, device="cpu")
    report = output_paths(first)["report_json"]
    before = report.read_bytes()
    with pytest.raises(InvalidInputError, match=rf"{report} is the report of .*stores\.pt, which is still there"):
        adapt(folder, tmp_path / "stores.pth", TINY, device="cpu")
    assert report.read_bytes() == before and not (tmp_path / "stores.pth").exists()
    assert adapt(folder, tmp_path / "stores.pth", TINY, device="cpu", overwrite=True).status == "done"
    assert json.loads(report.read_text())["out"].endswith("stores.pth")
    # once those weights are gone, their report is an earlier run's like any other
    (tmp_path / "stores.pth").unlink()
    assert adapt(folder, tmp_path / "stores.pth", TINY, device="cpu").status == "done"


@pytest.mark.parametrize("thr", [5.0, "abc", 0.0, True])
def test_weights_whose_served_threshold_is_malformed_are_refused(tmp_path: Path, thr) -> None:
    # served at 0.45 without a word, by adapt's --from and by detection alike
    ck = torch.load(WEIGHTS, weights_only=True)
    ck["info"] = {**dict(ck.get("info") or {}), "score_thr": thr}
    bad = tmp_path / "bad_thr.pt"
    torch.save(ck, bad)
    with pytest.raises(InvalidInputError, match=rf"--from {bad}: its info's score_thr must be a number between 0 and 1"):
        adapt(write_photos(tmp_path / "p"), tmp_path / "m.pt", TINY, base=bad, device="cpu")
    with pytest.raises(DetectorError, match=r"its info's score_thr must be a number between 0 and 1"):
        build_from_checkpoint(ck, device="cpu", source=str(bad))
    ck["info"]["score_thr"] = 0.55  # a good one is served
    assert build_from_checkpoint(ck, device="cpu").settings.score_thr == 0.55


def test_resuming_with_fewer_steps_than_done_is_refused(tmp_path: Path) -> None:
    # --resume --steps 5 after 20: it labelled a photo "in this round's share of the time" and
    # ended with info.steps 20 against settings.steps 5
    folder = write_photos(tmp_path / "p")
    out = tmp_path / "m.pt"
    first = adapt(folder, out, TINY, device="cpu", should_stop=_stop_at(8))  # stopped after 2 steps
    assert first.status == "stopped" and first.report["steps"] == 2
    with pytest.raises(InvalidInputError, match=r"--steps 1: the stopped run .* has done 2 steps already; give 2 or more"):
        adapt(folder, out, None, device="cpu", resume=True, budget={"steps": 1})
    assert first.paths["state"].exists()
    assert adapt(folder, out, None, device="cpu", resume=True, budget={"steps": TINY.steps}).status == "done"


def test_a_file_of_that_name_elsewhere_does_not_make_the_report_anothers(tmp_path: Path, monkeypatch) -> None:
    # (a second review: the report's relative "out" was looked for from the current folder too)
    folder = write_photos(tmp_path / "p")
    (tmp_path / "a").mkdir()
    report = tmp_path / "a" / "stores.report.json"
    report.write_text(json.dumps({"status": "stopped", "out": "stores.pt", "folder": "p", "settings": {},
                                  "rounds": []}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "stores.pt").write_bytes(b"unrelated")
    monkeypatch.chdir(tmp_path / "b")
    assert adapt(folder, tmp_path / "a" / "stores.pth", TINY, device="cpu").status == "done"


def test_adapt_s_own_runs_measure_the_scale_at_the_threshold_they_serve_at() -> None:
    # the built-in model measures the products at its weights' threshold at least (scale_thr);
    # adapt builds its detectors from the weights in training, without their record, and its
    # held-out checks of weights served at 0.3 were measured at the package's 0.45 (a third look)
    import types

    import densedet_tile as dt
    from densedet_tile.scale import _measured_boxes
    from densedet_tile.train.adapt import AdaptRun
    from densedet_tile.types import RunSpec

    base = dt.load_detector("default")
    run = types.SimpleNamespace(config=base.config, ema=base.runner, dev="cpu")
    for thr in (0.3, 0.6):
        det = AdaptRun._detector(run, thr)
        assert det.scale_thr == thr and _measured_boxes(det, RunSpec(score_thr=thr))[0] == thr
    assert AdaptRun._detector(run, None).scale_thr == 0.45
