"""write_dataset / scripts/make_shelves.py: arguments checked before anything is written, atomic
images, the CSV written last, and an earlier set replaced rather than mixed with."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile.errors import InvalidInputError
from densedet_tile.synth.shelves import write_dataset

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
SMALL = dict(width=96, height=64, product_height=20)


def _names(csv_path: Path) -> set[str]:
    with csv_path.open(newline="") as fh:
        return {r[0] for r in list(csv.reader(fh))[1:]}


@pytest.mark.parametrize("kw, expect", [
    (dict(product_height=5), "product_height 5"),  # x0.7 jitter would go below render_shelf's 4 px
    (dict(product_height=-3), "product_height -3"),
    (dict(product_height=300), "product_height 300"),  # x1.4 over 4 x the longer side
    (dict(width=-5), "16x16"),
    (dict(width=10, height=10), "16x16"),
    (dict(seed=-1), "seed -1"),
    (dict(n=0), "n 0"),
])
def test_bad_arguments_are_refused_before_anything_is_written(tmp_path, kw, expect) -> None:
    args = {"n": 2, "seed": 1, **SMALL, **kw}
    with pytest.raises(InvalidInputError, match=expect):
        write_dataset(tmp_path / "ds", **args)
    assert not (tmp_path / "ds").exists()


def test_rerun_with_fewer_images_removes_the_old_ones(tmp_path) -> None:
    out = tmp_path / "ds"
    write_dataset(out, n=3, seed=1, **SMALL)
    csv_path = write_dataset(out, n=1, seed=2, **SMALL)
    assert sorted(p.name for p in (out / "images").iterdir()) == ["shelf_2_0000.jpg"]
    assert _names(csv_path) == {"shelf_2_0000.jpg"}


def test_a_folder_holding_other_files_is_refused(tmp_path) -> None:
    out = tmp_path / "ds"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InvalidInputError, match="not a shelf dataset"):
        write_dataset(out, n=1, seed=1, **SMALL)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        write_dataset(f, n=1, seed=1, **SMALL)


def test_a_failure_midway_leaves_no_partial_image_and_no_csv(tmp_path, monkeypatch) -> None:
    out = tmp_path / "ds"
    write_dataset(out, n=2, seed=1, **SMALL)
    old_second = (out / "images" / "shelf_1_0001.jpg").read_bytes()
    real_save = Image.Image.save
    calls = []

    def torn_save(self, fp, *a, **k):  # the second image's write is cut short (a kill, a full disk)
        calls.append(1)
        if len(calls) == 2:
            if isinstance(fp, (str, Path)):
                Path(fp).write_bytes(b"partial")
            else:
                fp.write(b"partial")
            raise OSError("disk full")
        return real_save(self, fp, *a, **k)

    monkeypatch.setattr(Image.Image, "save", torn_save)
    with pytest.raises(OSError):
        write_dataset(out, n=2, seed=1, **SMALL)
    # no CSV claims the folder is a complete set, and the image that failed was not touched
    assert not (out / "annotations.csv").exists()
    assert (out / "images" / "shelf_1_0001.jpg").read_bytes() == old_second
    assert not [p for p in (out / "images").iterdir() if p.name.startswith(".")]
    monkeypatch.setattr(Image.Image, "save", real_save)
    csv_path = write_dataset(out, n=2, seed=1, **SMALL)  # an interrupted set is ours to finish
    assert _names(csv_path) == {"shelf_1_0000.jpg", "shelf_1_0001.jpg"}


@pytest.mark.parametrize("argv, expect", [
    (["--width", "-5"], "--width/--height"),
    (["--width", "10", "--height", "10"], "--width/--height"),
    (["--product-height", "-3"], "--product-height -3"),
    (["--product-height", "5"], "--product-height 5"),
    (["--seed", "-1"], "--seed -1"),
    (["--n", "0"], "--n 0"),
    (["--out", "FILE"], "--out"),
])
def test_make_shelves_bad_options_one_line(tmp_path, capsys, argv, expect) -> None:
    spec = importlib.util.spec_from_file_location("_review_make_shelves", SCRIPTS / "make_shelves.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.path.insert(0, str(SCRIPTS))
    try:
        from _bench_common import run_script
    finally:
        sys.path.remove(str(SCRIPTS))
    f = tmp_path / "file"
    f.write_text("x")
    argv = [str(f) if a == "FILE" else a for a in argv]
    out = ["--out", str(tmp_path / "ds")] if "--out" not in argv else []
    rc = run_script(lambda: mod.main([*out, "--n", "1", *argv]), "make_shelves")
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("make_shelves: ") and "\n" not in err and expect in err
    assert not (tmp_path / "ds").exists() and f.read_text() == "x"
