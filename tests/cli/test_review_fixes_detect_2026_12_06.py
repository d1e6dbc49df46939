"""detect's options, from an outside review against README (2026-12-06, stop 62): each test
fails on the code before it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from densedet_tile.cli.detect import detect_main
from fakes import blob_image

FAKES = str(Path(__file__).resolve().parents[1] / "fakes.py")


def _photo(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "shelf.png"
    Image.fromarray(blob_image(120, 160, (40, 30, 100, 90))).save(path)
    return path


def test_format_given_twice_keeps_both_lists(tmp_path: Path) -> None:
    # only the last was kept, and a rerun then removed the earlier run's CSV
    photo = _photo(tmp_path / "in")
    out = tmp_path / "o"
    assert detect_main([str(photo), "--detector", f"{FAKES}:make_blob", "--out", str(out), "-q", "--device", "cpu",
                        "--format", "csv", "--format", "coco"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["shelf.coco.json", "shelf.detections.csv", "shelf.detections.json"]


def test_a_rerun_over_the_folder_leaves_out_the_yolo_class_list_it_wrote(tmp_path: Path, caplog) -> None:
    # `densedet-tile out/* --out out --format yolo` stopped at classes.txt ("this input is where
    # the YOLO class list ... would be written") before any image ran
    out = tmp_path / "o"
    photo = _photo(out)
    args = ["--detector", f"{FAKES}:make_blob", "--out", str(out), "-q", "--device", "cpu", "--format", "yolo"]
    assert detect_main([str(photo)] + args) == 0
    assert (out / "classes.txt").is_file()
    assert detect_main(sorted(str(p) for p in out.iterdir()) + args) == 0
    assert "classes.txt: left out: the YOLO class list an earlier run wrote beside its labels" in caplog.text
    # a classes.txt of the user's (no labels of ours beside it) is still no photo of ours to skip
    mine = tmp_path / "mine"
    _photo(mine)
    (mine / "classes.txt").write_text("cola\n")
    assert detect_main([str(mine / "classes.txt"), str(mine / "shelf.png"), "--detector", f"{FAKES}:make_blob",
                        "--out", str(tmp_path / "o2"), "-q", "--device", "cpu"]) != 0
