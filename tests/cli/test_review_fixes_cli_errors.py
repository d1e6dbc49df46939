"""Bad input on every verb: one line on stderr naming the file (or option), exit 2, nothing
written (an outside review of 2026-12-02 found these cases answered otherwise)."""

from __future__ import annotations

from pathlib import Path

import pytest

from densedet_tile.cli import main

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shelf.jpg"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("argv", [
    ["IMG", "--tile", "0"],
    ["batch", "IMG", "--workers", "0"],
    ["audit", "IMG", "--gap-k", "abc"],
    ["eval", "a", "b", "--max-dets", "x"],
    ["convert-checkpoint"],
    ["adapt", "photos"],
    ["adapt", "photos", "--out", "x.pt", "--size", "33"],  # not a multiple of 32: named as --size
])
def test_a_bad_option_is_one_line_without_the_usage_block(argv: list[str], capsys: pytest.CaptureFixture[str],
                                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the relative names (IMG, photos, x.pt) resolve in an empty folder
    rc, out, err = run(argv, capsys)
    assert rc == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0] and "usage:" not in err, err


def test_audit_of_a_folder_says_it_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "photo.jpg").mkdir()
    rc, _, err = run(["audit", str(tmp_path / "photo.jpg"), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "is a directory" in err and "photo.jpg" in err
    assert not (tmp_path / "out").exists()


def test_batch_of_only_missing_paths_is_refused_before_anything_is_written(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run(["batch", str(tmp_path / "nonexist"), "--out", str(tmp_path / "out")], capsys)
    assert rc == 2 and "nonexist" in err and "no such file" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def write_csvs(tmp_path: Path) -> tuple[Path, Path]:
    gt = tmp_path / "gt.csv"
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                  "shelf.jpg,10,10,60,90,object,2048,1536\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
                    "shelf.jpg,12,10,60,88,object,2048,1536,0.9\n")
    return gt, pred


def test_eval_checks_its_output_file_before_evaluating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = write_csvs(tmp_path)
    (tmp_path / "afile").write_text("x")
    rc, out, err = run(["eval", str(pred), str(gt), "-o", str(tmp_path / "afile" / "m.json")], capsys)
    assert rc == 2 and out == "" and "-o" in err and "afile" in err  # no metrics printed first
    rc, out, _ = run(["eval", str(pred), str(gt), "-o", str(tmp_path / "new" / "m.json")], capsys)
    assert rc == 0 and (tmp_path / "new" / "m.json").is_file()  # a missing folder is made when written
    rc, _, err = run(["eval", str(pred), str(tmp_path / "nope.csv"), "-o", str(tmp_path / "new2" / "m.json")], capsys)
    assert rc == 2 and not (tmp_path / "new2").exists()  # ... and not when the run fails


def test_eval_compare_refuses_a_limit_of_zero_and_calls_a_broken_image_bad_input(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, _ = write_csvs(tmp_path)
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "shelf.jpg").write_bytes(EXAMPLE.read_bytes()[:3000])  # truncated
    rc, _, err = run(["eval", "--compare", str(folder), str(gt), "--limit", "0"], capsys)
    assert rc == 2 and "--limit" in err
    rc, _, err = run(["eval", "--compare", str(folder), str(gt)], capsys)
    assert rc == 2 and "shelf.jpg" in err and "detector" not in err, err


def test_convert_checkpoint_names_the_right_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    src = tmp_path / "sd.pth"
    torch.save({"state_dict": {"foo.weight": torch.zeros(2)}}, src)
    (tmp_path / "afile").write_text("x")
    rc, _, err = run(["convert-checkpoint", str(src), str(tmp_path / "afile" / "x.pth")], capsys)
    assert rc == 2 and err.count("\n") == 1 and "dst" in err and "afile" in err and "sd.pth" not in err, err
    rc, _, err = run(["convert-checkpoint", str(tmp_path), str(tmp_path / "x.pth")], capsys)
    assert rc == 2 and "is a folder" in err
    # not a DenseDet checkpoint: refused even without building the model to verify it
    rc, _, err = run(["convert-checkpoint", str(src), str(tmp_path / "x.pth"), "--no-verify"], capsys)
    assert rc == 2 and "sd.pth" in err and "not a SKU110K-DenseDet checkpoint" in err
    assert not (tmp_path / "x.pth").exists()


def test_a_closed_stderr_does_not_stop_the_run(tmp_path: Path) -> None:
    # `densedet-tile ... 2>&1 | head -2`: the reader goes away; the run still ends well
    import os
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # nobody reads: the first write to stderr (the fp16-on-CPU warning) meets a closed pipe
    try:
        p = subprocess.run([sys.executable, "-m", "densedet_tile", str(EXAMPLE), "--out", str(tmp_path / "o"),
                            "--precision", "fp16"], stdout=subprocess.DEVNULL, stderr=w, timeout=600)
    finally:
        os.close(w)
    assert p.returncode == 0
    assert (tmp_path / "o" / "shelf.detections.json").is_file()


_DECLARING = """
import densedet_tile as dt


class Declaring:
    def predict(self, tiles):
        return [dt.Detections([[1, 1, 30, 30]], [0.9], [0]) for _ in tiles]


def make(attr, value):
    d = Declaring()
    setattr(d, attr, value)
    return d
"""


@pytest.mark.parametrize(("attr", "value", "said"), [
    ("input_size", "0", "input_size must be an int from 16 to 16384"),
    ("input_size", "100000", "input_size must be an int from 16 to 16384"),  # used to fill the memory
    ("score_thr", "1.5", "score_thr must be a number in [0, 1]"),
    ("resize_filter", "'nearest'", "resize_filter must be one of"),
    ("class_names", "[]", "class_names must be a non-empty list"),
])
def test_a_detector_declaring_a_bad_attribute_cannot_be_built(attr: str, value: str, said: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # said once, as a detector that cannot be built (exit 2), not as the same error for every image
    (tmp_path / "declaring.py").write_text(_DECLARING + f"\n\ndef factory():\n    return make({attr!r}, {value})\n")
    rc, out, err = run([str(EXAMPLE), str(EXAMPLE), "--detector", f"{tmp_path / 'declaring.py'}:factory",
                        "--out", str(tmp_path / "out")], capsys)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and said in lines[0] and "declaring.py:factory" in lines[0], err
    assert not (tmp_path / "out").exists()


def test_a_model_input_side_past_the_largest_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from densedet_tile import InvalidInputError, RunSpec, TileSpec
    from densedet_tile.scale import choose_scale
    from densedet_tile.types import MAX_INPUT_SIZE

    rc, _, err = run([str(EXAMPLE), "--input-size", "60000", "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "--input-size" in err and str(MAX_INPUT_SIZE) in err and not (tmp_path / "o").exists()
    with pytest.raises(InvalidInputError, match="input_size"):
        RunSpec(input_size=MAX_INPUT_SIZE + 1)
    assert RunSpec(input_size=MAX_INPUT_SIZE).input_size == MAX_INPUT_SIZE

    class Plain:  # no input size of its own: a scale sets the side tiles are resized to
        def predict(self, tiles):
            return []

    class Src:
        width, height = 3000, 2000

    with pytest.raises(InvalidInputError, match="scale 20 would show a 1280 px tile as 25600 px"):
        choose_scale(Src(), Plain(), TileSpec(tile=1280), RunSpec(scale=20.0))
    assert choose_scale(Src(), Plain(), TileSpec(tile=1280), RunSpec(scale=2.0)).run.input_size == 2560


@pytest.mark.parametrize("name", ["newdir/", "m.json/", "evalout/metrics/", "m.json/.", "newdir/.."])
def test_eval_output_ending_with_a_slash_is_refused_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    # Path() drops a trailing slash: "-o newdir/" was written as a file named newdir, and
    # "-o m.json/" replaced the file m.json
    monkeypatch.chdir(tmp_path)
    gt = tmp_path / "gt.csv"
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\nshelf.jpg,1,1,20,20,object,100,100\n")
    pred = tmp_path / "pred.csv"
    pred.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\nshelf.jpg,1,1,20,20,object,100,100,0.9\n")
    (tmp_path / "m.json").write_text("mine")
    (tmp_path / "evalout").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, _, err = run(["eval", str(pred), str(gt), "-o", name], capsys)
    assert rc == 2 and err.count("\n") == 1 and "ends with a slash or a dot" in err and name in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before and (tmp_path / "m.json").read_text() == "mine"
