"""The command line, run as a user runs it: in a subprocess."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fakes import blob_image

FAKES = str(Path(__file__).parents[1] / "fakes.py")


def run_cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1]) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [sys.executable, "-m", "densedet_tile", *map(str, args)],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=300,
    )


@pytest.fixture
def shelf_png(tmp_path):
    p = tmp_path / "shelf.png"
    Image.fromarray(blob_image(900, 2000, (700, 300, 860, 520))).save(p)
    return p


def test_detect_writes_all_formats(tmp_path, shelf_png):
    out = tmp_path / "out"
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--tile", "640", "--overlap", "0.2",
                "--out", out, "--format", "json,csv,coco", "--preview", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    doc = json.loads((out / "shelf.detections.json").read_text())
    assert doc["schema"] == "densedet-tile/detections@1"
    assert doc["image"] == {"path": str(shelf_png), "name": "shelf.png", "width": 2000, "height": 900, "orientation": 1}
    assert doc["num_tiles"] == 8 and doc["settings"]["tile"] == 640
    assert doc["boxes"] == [[700.0, 300.0, 860.0, 520.0]]
    assert set(doc["timings"]) >= {"read_s", "predict_s", "merge_s", "total_s"}
    rows = list(csv.reader((out / "shelf.detections.csv").read_text().splitlines()))
    assert rows[0][:8] == ["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"]
    assert rows[1][:8] == ["shelf.png", "700", "300", "860", "520", "product", "2000", "900"]
    coco = json.loads((out / "shelf.coco.json").read_text())
    assert coco[0]["bbox"] == [700.0, 300.0, 160.0, 220.0] and coco[0]["category_id"] == 1
    with Image.open(out / "shelf.preview.jpg") as im:
        assert im.size == (2000, 900)
        # the box outline is drawn in green on the preview
        px = np.asarray(im)[300:520, 700]
        assert (px[:, 1] > 200).mean() > 0.9 and (px[:, 0] < 80).mean() > 0.9
    assert "shelf.png: 1 product, 8 tiles" in r.stderr
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_panorama_preview_is_downscaled(tmp_path):
    p = tmp_path / "pano.png"
    Image.fromarray(blob_image(200, 9000, (100, 50, 200, 150))).save(p)
    r = run_cli(p, "--detector", f"{FAKES}:make_blob", "--out", tmp_path, "--preview", "-q", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "pano.preview.jpg") as im:
        assert im.size == (8000, 178)


def test_bad_inputs_do_not_stop_good_ones(tmp_path, shelf_png):
    missing = tmp_path / "missing.jpg"
    text = tmp_path / "notes.jpg"
    text.write_text("not an image at all")
    trunc = tmp_path / "trunc.jpg"
    Image.fromarray(blob_image(400, 400, (1, 1, 9, 9))).save(trunc, quality=90)
    trunc.write_bytes(trunc.read_bytes()[:600])
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    out = tmp_path / "out"
    r = run_cli(missing, text, shelf_png, trunc, empty, "--detector", f"{FAKES}:make_blob", "--out", out, "-q", "--device", "cpu")
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 4, r.stderr
    for name in ("missing.jpg", "notes.jpg", "trunc.jpg", "empty.png"):
        assert sum(name in ln for ln in errors) == 1, (name, r.stderr)
    assert sorted(p.name for p in out.iterdir()) == ["shelf.detections.json"]


def test_malformed_detector_output_leaves_no_file(tmp_path, shelf_png):
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_nan", "--out", tmp_path / "o", "-q", "--device", "cpu")
    assert r.returncode == 1
    assert "shelf.png" in r.stderr and "NaN" in r.stderr
    assert not (tmp_path / "o").exists()  # nothing written: not even the empty folder stays
    mine = tmp_path / "mine"
    mine.mkdir()
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_nan", "--out", mine, "-q", "--device", "cpu")
    assert r.returncode == 1 and mine.is_dir()  # a folder the user had is left alone


@pytest.mark.parametrize(
    "opts, word",
    [
        (["--overlap", "1.0"], "overlap"),
        (["--tile", "0"], "tile"),
        (["--format", "xml"], "xml"),
        (["--merge", "mean"], "merge"),
        (["--batch-size", "-2"], "batch-size"),
        (["--detector", "nosuchmodule:factory"], "nosuchmodule"),
        (["--detector", "yolo"], "yolo"),
        (["--device", "tpu"], "tpu"),
        (["--count-band", "0.1"], "count-band"),  # detectors return boxes only 0.05 below their threshold
        (["--max-pixels", "inf"], "max-pixels"),
        (["--max-pixels", "nan"], "max-pixels"),
        (["--max-pixels", "1.5"], "max-pixels"),
        (["--overlap", "0.9999"], "whole tile"),
    ],
)
def test_bad_options_exit_2_with_one_clear_line(tmp_path, shelf_png, opts, word):
    r = run_cli(shelf_png, *opts, "--out", tmp_path / "o")
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert word in last and "error" in last
    assert not (tmp_path / "o").exists()


def test_module_factory_import_form(tmp_path, shelf_png):
    r = run_cli(shelf_png, "--detector", "fakes:make_blob", "--out", tmp_path, "-q", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "shelf.detections.json").read_text())["model"]["name"] == "blob"


def test_merge_options_reach_the_merge(tmp_path):
    p = tmp_path / "pair.png"
    # blob inside the overlap of tiles starting at x=0 and x=300 (tile 400, overlap 0.25)
    Image.fromarray(blob_image(400, 1000, (310, 100, 390, 200))).save(p)
    counts = {}
    for mode in ("none", "wbf"):
        out = tmp_path / mode
        r = run_cli(p, "--detector", f"{FAKES}:make_blob", "--tile", "400", "--overlap", "0.25",
                    "--merge", mode, "--nms-iou", "0.6", "--fuse-iou", "0.7", "--out", out, "-q", "--device", "cpu")
        assert r.returncode == 0, r.stderr
        doc = json.loads((out / "pair.detections.json").read_text())
        counts[mode] = doc["num_detections"]
        assert doc["settings"]["merge"]["nms_iou"] == 0.6 and doc["settings"]["merge"]["fuse_iou"] == 0.7
    assert counts == {"none": 2, "wbf": 1}
    r = run_cli(p, "--fuse-iou", "0", "--out", tmp_path / "bad")
    assert r.returncode == 2 and "argument --fuse-iou" in r.stderr.strip().splitlines()[-1]


def test_tile_auto_and_scale_on_the_command_line(tmp_path, shelf_png):
    out = tmp_path / "out"
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--detector-option", "product_size=80", "--tile",
                "auto", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    scale = json.loads((out / "shelf.detections.json").read_text())["settings"]["scale"]
    assert scale["source"] == "auto" and "probes" in scale
    # a detector that declares no product size: the run without auto, and a warning saying why
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--tile", "auto", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    scale = json.loads((out / "shelf.detections.json").read_text())["settings"]["scale"]
    assert scale["source"] == "tile" and scale["asked"] == "auto" and "probes" not in scale
    assert r.stderr.count("tile auto cannot pick a scale: the detector declares no product_size") == 1
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--scale", "0.5", "--input-size", "300", "--out", out)
    assert r.returncode == 2 and "not both" in r.stderr
    r = run_cli(shelf_png, "--tile", "huge", "--out", out)
    assert r.returncode == 2 and "'auto'" in r.stderr


def test_count_range_on_the_line_and_in_the_json(tmp_path):
    from fakes import cell_image

    sure, unsure = tmp_path / "sure.png", tmp_path / "unsure.png"
    Image.fromarray(cell_image([0.6] * 12 + [0.2] * 4)).save(sure)
    Image.fromarray(cell_image([0.6] * 10 + [0.47] * 5 + [0.42] * 3)).save(unsure)
    out = tmp_path / "out"
    r = run_cli(sure, unsure, "--detector", f"{FAKES}:make_cells", "--out", out, "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "sure.png: 12 products (12-12), 1 tile" in r.stderr
    assert "unsure.png: 15 products (10-18, uncertain count), 1 tile" in r.stderr
    doc = json.loads((out / "unsure.detections.json").read_text())
    assert doc["num_detections"] == 15
    near = doc["count_range"].pop("near_misses")
    assert doc["count_range"] == {"score_thr": 0.45, "band": 0.05, "at_scores": [0.5, 0.45, 0.4],
                                  "counts": [10, 15, 18], "sensitivity": 0.5333, "uncertain": True}
    assert len(near["boxes"]) == len(near["scores"]) == 3 and all(0.4 <= v < 0.45 for v in near["scores"])
    assert doc["settings"]["count_band"] == 0.05
    # --count-band 0 turns it off; another band moves both ends
    r = run_cli(unsure, "--detector", f"{FAKES}:make_cells", "--out", out, "--count-band", "0", "--device", "cpu")
    assert r.returncode == 0, r.stderr
    assert "unsure.png: 15 products, 1 tile" in r.stderr
    assert json.loads((out / "unsure.detections.json").read_text())["count_range"] is None
    r = run_cli(unsure, "--detector", f"{FAKES}:make_cells", "--out", out, "--count-band", "0.03", "-q",
                "--device", "cpu")
    assert r.returncode == 0, r.stderr
    cr = json.loads((out / "unsure.detections.json").read_text())["count_range"]
    assert cr["at_scores"] == [0.48, 0.45, 0.42] and cr["counts"] == [10, 15, 15]  # 0.4196 < 0.42


def test_an_unusable_out_is_refused_before_any_image_is_read(tmp_path, shelf_png):
    out = tmp_path / "taken"
    out.write_text("a file")
    r = run_cli(shelf_png, tmp_path / "missing.png", "--detector", f"{FAKES}:make_blob", "--out", out)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "not a folder" in lines[0]
    assert "missing.png" not in r.stderr and out.read_text() == "a file"


def test_quiet_prints_no_per_image_line_and_auto_with_a_scale_is_a_usage_error(tmp_path, shelf_png):
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--out", tmp_path / "q", "-q", "--device", "cpu")
    assert r.returncode == 0 and "product" not in r.stderr and (tmp_path / "q" / "shelf.detections.json").is_file()
    r = run_cli(shelf_png, "--detector", f"{FAKES}:make_blob", "--out", tmp_path / "a", "--tile", "auto",
                "--scale", "0.5", "--device", "cpu")
    assert r.returncode == 2 and "--tile auto" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "a").exists()


def test_one_file_named_twice_is_detected_once_and_a_batch_then_skips_it(tmp_path, shelf_png):
    out = tmp_path / "out"
    same = tmp_path / "sub" / ".." / shelf_png.name  # the same file by another spelling
    (tmp_path / "sub").mkdir()
    other = tmp_path / "sub" / shelf_png.name  # another file of the same name, named in between
    other.write_bytes(shelf_png.read_bytes())
    r = run_cli(shelf_png, other, same, "--detector", f"{FAKES}:make_blob", "--tile", "640", "--out", out, "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == ["shelf-2.detections.json", "shelf.detections.json"]
    doc = json.loads((out / "shelf.detections.json").read_text())
    assert doc["image"]["path"] == str(shelf_png)  # the inputs keep their order and their names
    (out / "shelf-2.detections.json").unlink()
    # the result records what was asked, so a batch with the same options takes it as done
    r = run_cli("batch", shelf_png, "--detector", f"{FAKES}:make_blob", "--tile", "640", "--out", out,
                "--ray", "none")
    assert r.returncode == 0, r.stderr
    assert "0 done, 1 skipped" in r.stderr


def test_no_progress_bar_and_no_tqdm_when_stderr_is_a_pipe(tmp_path, shelf_png, monkeypatch):
    import io

    from densedet_tile.cli import detect as cli_detect

    seen = []
    monkeypatch.setitem(sys.modules, "tqdm", None)  # importing it now fails: it must not be needed
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # a pipe or a log file: not a terminal
    progress = cli_detect._Progress("shelf.png", enabled=True)
    progress(1, 4)
    progress(4, 4)
    progress.close()
    assert not progress.enabled and progress.bar is None and sys.stderr.getvalue() == ""

    class Tty(io.StringIO):
        def isatty(self):
            seen.append(True)
            return True

    monkeypatch.setattr(sys, "stderr", Tty())
    monkeypatch.delitem(sys.modules, "tqdm")
    progress = cli_detect._Progress("shelf.png", enabled=True)
    progress(1, 4)
    assert seen and progress.bar is not None
    progress.close()
    assert not cli_detect._Progress("shelf.png", enabled=False).enabled  # -q
