"""What the tool writes, read back by its own readers and by strict ones (an outside review of
the outputs, 2026-12-05): two inputs of one file name, scores next to a threshold, class names
with line breaks or spaces, a model's NaN, and the manifest under a group-writable umask."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.cli import main
from fakes import blob_image

TESTS = str(Path(__file__).resolve().parents[1])


def _twins(tmp_path: Path) -> None:
    for folder, box in (("a", (100, 100, 300, 260)), ("b", (400, 200, 700, 380))):
        (tmp_path / folder).mkdir()
        Image.fromarray(blob_image(600, 900, box)).save(tmp_path / folder / "x.png")


def test_an_output_folder_with_two_inputs_of_one_file_name_is_evaluated_and_audited(tmp_path, monkeypatch, capsys):
    # eval refused the folder ("a second detections file for image x.png"): the second image's
    # JSON kept the file name while its CSV and COCO rows call it x-2.png
    _twins(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["a/x.png", "b/x.png", "--detector", "fakes:make_blob", "--device", "cpu", "--out", "o",
                 "--format", "json,csv", "-q"]) == 0
    second = json.loads((tmp_path / "o" / "x-2.detections.json").read_text())
    assert second["image"]["name"] == "x.png" and second["image"]["row_name"] == "x-2.png"
    assert "row_name" not in json.loads((tmp_path / "o" / "x.detections.json").read_text())["image"]
    (tmp_path / "gt.csv").write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                                     "x.png,100,100,300,260,product,900,600\n"
                                     "x-2.png,400,200,700,380,product,900,600\n")
    capsys.readouterr()
    assert main(["eval", "o", "gt.csv"]) == 0
    assert "AP=1.0000" in capsys.readouterr().out
    # the second image's own CSV audits with it (its rows go by x-2.png)
    assert main(["audit", "b/x.png", "--detections", "o/x-2.detections.csv", "--out", "au", "-q"]) == 0


_DETECTOR = """
import numpy as np
from densedet_tile import Detections


class Fixed:
    name = "fixed"
    class_names = ("a", "b\\u2028c", " sp", "x\\ny")
    info = {"lr": float("nan"), "best": float("inf"), "ok": 1.5}

    def predict(self, tiles):
        boxes = np.array([[10, 10, 60, 90], [70, 10, 120, 90], [130, 10, 180, 90], [190, 10, 240, 90]], np.float32)
        return [Detections(boxes, np.array([0.49996, 0.9, 0.45, 0.7], np.float32), np.arange(4)) for _ in tiles]


def make(**kw):
    return Fixed()
"""


def _fixed(tmp_path: Path) -> str:
    (tmp_path / "fixed.py").write_text(textwrap.dedent(_DETECTOR))
    for k in range(2):
        Image.fromarray(np.full((100, 260, 3), 40 + k, np.uint8)).save(tmp_path / f"s{k}.png")
    return "fixed.py:make"


def test_scores_are_written_as_the_float32_the_run_compared(tmp_path, monkeypatch):
    # rounded to 4 decimals, 0.49996 was written 0.5: above the count band's 0.5 that the run had
    # it below, and the audit's range then disagreed with the JSON's own
    det = _fixed(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["s0.png", "--detector", det, "--device", "cpu", "--out", "o", "--format", "json,csv,coco,yolo",
                 "--yolo-scores", "-q"]) == 0
    text = (tmp_path / "o" / "s0.detections.json").read_text()
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"not strict JSON: {c}"))
    assert sorted(doc["scores"]) == [0.45, 0.49996, 0.7, 0.9]
    assert np.array_equal(np.sort(np.asarray(doc["scores"], np.float32)),
                          np.sort(np.array([0.49996, 0.9, 0.45, 0.7], np.float32)))
    assert "0.49996" in (tmp_path / "o" / "s0.detections.csv").read_text()
    assert '"score":0.49996' in (tmp_path / "o" / "s0.coco.json").read_text()
    assert any(line.endswith(" 0.49996") for line in (tmp_path / "o" / "s0.txt").read_text().splitlines())
    # the model's own NaN and infinity, by name: strict JSON readers refuse a bare NaN
    assert doc["model"]["info"]["lr"] == "nan" and doc["model"]["info"]["best"] == "inf"


def test_class_names_with_line_breaks_and_spaces_round_trip_through_every_format(tmp_path, monkeypatch, capsys):
    # "b\u2028c" split classes.txt on reading (the second image then failed: "names class 1 'b'");
    # "x\ny" and " sp" were other classes in the YOLO folder and the CSV than in the JSON
    det = _fixed(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["s0.png", "s1.png", "--detector", det, "--device", "cpu", "--out", "o", "--format",
                 "json,csv,yolo", "-q"]) == 0
    assert (tmp_path / "o" / "classes.txt").read_text().splitlines() == ["a", "b c", " sp", "x y"]
    rows = "".join((tmp_path / "o" / f"s{k}.detections.csv").read_text().split("\n", 1)[1] for k in range(2))
    (tmp_path / "gt.csv").write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n" + rows)
    capsys.readouterr()
    assert main(["eval", "o", "gt.csv"]) == 0
    assert "AP=1.0000" in capsys.readouterr().out
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    for name in ("s0.txt", "s1.txt", "classes.txt"):
        (yolo / name).write_text((tmp_path / "o" / name).read_text())
    capsys.readouterr()
    assert main(["eval", "yolo", "gt.csv"]) == 0
    assert "AP=1.0000" in capsys.readouterr().out


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX modes")
def test_the_manifest_follows_the_umask_as_every_output_does(tmp_path, monkeypatch):
    # created 0644 whatever the umask: a group sharing the output folder could not run batch there
    (tmp_path / "imgs").mkdir()
    Image.fromarray(blob_image(200, 300, (20, 20, 80, 80))).save(tmp_path / "imgs" / "p.png")
    monkeypatch.chdir(tmp_path)
    old = os.umask(0o002)
    try:
        assert main(["batch", "imgs", "--ray", "none", "--detector", "fakes:make_blob", "--device", "cpu",
                     "--out", "out", "-q"]) == 0
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir() if p.is_file()}
    assert modes["manifest.jsonl"] == 0o664 and modes["p.detections.json"] == 0o664, modes


def test_ground_truth_classes_one_name_but_for_spaces_are_refused(tmp_path, capsys):
    # classes match by their words, so "a b" and "a  b" of a CSV ground truth merged silently
    (tmp_path / "gt.csv").write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                                     "img.jpg,0,0,10,10,a b,100,100\nimg.jpg,50,50,60,60,a  b,100,100\n")
    (tmp_path / "pred.csv").write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
                                       "img.jpg,0,0,10,10,a b,100,100,0.9\n")
    assert main(["eval", str(tmp_path / "pred.csv"), str(tmp_path / "gt.csv")]) == 2
    err = capsys.readouterr().err  # (the error line shows runs of spaces as one)
    assert "gt.csv: classes 'a b' and 'a b' are one name but for spaces" in err
