"""Options that did nothing, or were not recorded (an outside review of every option, 2026-12-05):
eval --compare --ignore-size, what eval --compare -o and the audit record of the run, and the
audit's advice on a thin preview."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from densedet_tile.cli import main
from densedet_tile.cli.eval import eval_main
from fakes import BlobDetector, write_aisle_detections

TESTS = Path(__file__).resolve().parents[1]
BLOB = f"{TESTS / 'fakes.py'}:make_blob"


class CountingBlob(BlobDetector):
    calls = 0

    def predict(self, tiles):
        CountingBlob.calls += 1
        return super().predict(tiles)


def make_counting():
    return CountingBlob()


def _folder(tmp_path: Path, gt_width: int) -> tuple[Path, Path]:
    img = np.zeros((120, 160, 3), np.uint8)
    img[30:90, 40:100] = 255
    (tmp_path / "imgs").mkdir()
    Image.fromarray(img).save(tmp_path / "imgs" / "photo.png")
    gt = tmp_path / "gt.csv"
    gt.write_text(f"photo.png,40,30,100,90,object,{gt_width},120\n")
    return tmp_path / "imgs", gt


def test_compare_refuses_a_size_mismatch_before_running_and_ignore_size_evaluates_anyway(tmp_path: Path, capsys,
                                                                                        monkeypatch) -> None:
    imgs, gt = _folder(tmp_path, gt_width=200)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    det = f"{Path(__file__)}:make_counting"
    CountingBlob.calls = 0
    assert eval_main([str(imgs), str(gt), "--compare", "--tile", "96", "--device", "cpu", "--detector", det]) == 2
    err = capsys.readouterr().err.strip()
    assert "photo.png: is 160x120 but 200x120 in the ground truth" in err and "--ignore-size" in err
    assert "\n" not in err
    assert CountingBlob.calls == 0  # told before two detector passes, not after them
    # --ignore-size went nowhere with --compare: the same error came back
    assert eval_main([str(imgs), str(gt), "--compare", "--tile", "96", "--device", "cpu", "--detector", det,
                      "--ignore-size"]) == 0, capsys.readouterr().err


def test_compare_report_records_the_settings_that_decide_its_numbers(tmp_path: Path, capsys) -> None:
    imgs, gt = _folder(tmp_path, gt_width=160)
    reports = []
    for extra in ([], ["--score-thr", "0.6", "--fuse-iou", "0.3", "--input-size", "80"]):
        out = tmp_path / f"cmp{len(reports)}.json"
        assert eval_main([str(imgs), str(gt), "--compare", "--tile", "96", "--device", "cpu", "--detector", BLOB,
                          "-o", str(out), *extra]) == 0, capsys.readouterr().err
        reports.append(json.loads(out.read_text())["settings"])
    plain, changed = reports
    assert plain != changed  # the runs differ, and their reports say so
    assert (changed["run"]["score_thr"], changed["merge_spec"]["fuse_iou"], changed["run"]["input_size"]) == (0.6, 0.3, 80)
    # (a one-class ground truth: boxes matched whatever their class, as `eval -o` says too)
    assert plain["tiling"] == {"tile": 96, "overlap": 0.2} and plain["class_agnostic"] is True
    assert plain["model"]["kind"] == BLOB and "factory" in plain["model"]["files"]


def test_an_audit_that_detects_records_the_settings_of_its_boxes(tmp_path: Path) -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    img[50:150, 60:120] = 255
    Image.fromarray(img).save(tmp_path / "shelf.png")
    for name, extra in (("a", []), ("b", ["--tile", "256", "--score-thr", "0.7"])):
        assert main(["audit", str(tmp_path / "shelf.png"), "--detector", BLOB, "--device", "cpu", "--out",
                     str(tmp_path / name), "-q", *extra]) == 0
    a = json.loads((tmp_path / "a" / "shelf.audit.json").read_text())["image"]["settings"]
    b = json.loads((tmp_path / "b" / "shelf.audit.json").read_text())["image"]["settings"]
    assert a["tile"] != b["tile"] == 256
    assert b["score_thr"] == 0.7


def test_a_thin_preview_made_by_the_width_asked_for_says_to_raise_it(tmp_path: Path) -> None:
    # 3385 x 873 shrunk to 300 px wide: rounding made it look like the height cap's doing
    w, h = 3385, 873
    xs = np.arange(0, w - 60, 80.0)
    boxes = np.array([[x, y, x + 60, y + 100] for x in xs for y in (100.0, 400.0)])
    dets = tmp_path / "bays.detections.json"
    write_aisle_detections(dets, boxes, w, h)
    assert main(["audit", "--detections", str(dets), "--out", str(tmp_path / "o"), "-q",
                 "--preview-max-width", "300"]) == 0
    warnings = json.loads((tmp_path / "o" / "bays.audit.json").read_text())["warnings"]
    thin = [x for x in warnings if "too thin to show shelves" in x]
    assert len(thin) == 1 and "raise --preview-max-width" in thin[0], warnings


def test_end_k_with_end_gaps_turned_off_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    dets = tmp_path / "a.detections.json"
    write_aisle_detections(dets, np.array([[10.0, 10, 60, 110], [70, 10, 120, 110]]), 400, 300)
    assert main(["audit", "--detections", str(dets), "--out", str(tmp_path / "o"), "--no-end-gaps",
                 "--end-k", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--end-k 2 sets the end gaps that --no-end-gaps turns off" in err and "\n" not in err
    assert not (tmp_path / "o").exists()
