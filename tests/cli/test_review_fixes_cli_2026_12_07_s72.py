"""An outside review of bad inputs across the verbs (2026-12-07, second stop of the day): a loop
of symbolic links, an empty -o, the second of two photos of one name audited with its own
photo, a JSON file whose name does not end in .json, a folder under the preview's name. Each
test fails on the code before it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image

from densedet_tile.io import same_path
from fakes import blob_image, blob_photo, error_lines, run_cli

BLOB = ["--detector", "fakes:make_blob", "--tile", "256", "--device", "cpu"]


def _loop(folder: Path, name: str = "loop1.png") -> Path:
    """``folder/name``: a link to a link back to it."""
    a, b = folder / name, folder / ("other-" + name)
    a.symlink_to(b.name)
    b.symlink_to(a.name)
    return a


def _boxes(tmp_path: Path) -> tuple[Path, Path]:
    """A blob photo, its detections JSON and a one-box ground-truth CSV of it."""
    photo = blob_photo(tmp_path / "good.png")
    r = run_cli(photo.name, "--out", "det", "-q", *BLOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    det = tmp_path / "det" / "good.detections.json"
    gt = tmp_path / "gt.csv"
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\ngood.png,10,20,100,80,product,500,300\n")
    return det, gt


def test_a_loop_of_links_is_no_path_to_compare_and_no_traceback(tmp_path):
    # Path.resolve() raises RuntimeError on a loop of links (Python 3.11): five verbs printed a
    # traceback through same_path (audit, eval, convert-checkpoint, adapt)
    loop = _loop(tmp_path)
    assert same_path(loop, tmp_path / "elsewhere.json") is False
    assert same_path(loop, loop) is True
    det, gt = _boxes(tmp_path)
    for args in (["eval", loop.name, gt.name, "-o", "ev.json"],
                 ["eval", str(det), loop.name, "-o", "ev.json"],
                 ["audit", loop.name, "--out", "au", "-q"],
                 ["audit", loop.name, "--detections", str(det), "--out", "au2", "-q"]):
        r = run_cli(*args, cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        assert "Traceback" not in r.stderr and "RuntimeError" not in r.stderr, (args, r.stderr)
        errs = error_lines(r.stderr)
        assert len(errs) == 1 and loop.name in errs[0], (args, r.stderr)
        assert not (tmp_path / "ev.json").exists() and not (tmp_path / "au").exists() and not (tmp_path / "au2").exists()


@pytest.mark.parametrize("value", ["", "  "])
def test_eval_refuses_an_empty_output_name(tmp_path, value):
    # -o "$UNSET" printed the figures, wrote nothing and exited 0
    det, gt = _boxes(tmp_path)
    r = run_cli("eval", str(det), gt.name, "-o", value, cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert error_lines(r.stderr) == ["densedet-tile eval: error: -o is empty: give the JSON file to write the figures to"]
    assert "AP=" not in r.stdout


def test_eval_reads_json_by_its_contents_and_says_so_of_json_named_csv(tmp_path):
    det, gt = _boxes(tmp_path)
    want = run_cli("eval", str(det), gt.name, cwd=tmp_path)
    assert want.returncode == 0, want.stderr
    bare = tmp_path / "predictions"
    bare.write_bytes(det.read_bytes())
    r = run_cli("eval", bare.name, gt.name, cwd=tmp_path)  # was: "header lacks column(s) image_name, ..."
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == want.stdout.splitlines()[-1]
    # COCO ground truth without its suffix likewise
    coco = {"images": [{"id": 1, "file_name": "good.png", "width": 500, "height": 300}],
            "categories": [{"id": 1, "name": "product"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 90, 60], "area": 5400,
                             "iscrowd": 0}]}
    (tmp_path / "truth").write_text(json.dumps(coco))
    r = run_cli("eval", str(det), "truth", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == want.stdout.splitlines()[-1]
    # a .csv name holding JSON is said to hold JSON
    wrong = tmp_path / "wrong.csv"
    wrong.write_bytes(det.read_bytes())
    r = run_cli("eval", wrong.name, gt.name, cwd=tmp_path)
    assert r.returncode == 2
    assert error_lines(r.stderr) == ["densedet-tile eval: error: wrong.csv: holds JSON, not CSV; give it as a file "
                                     "whose name ends in .json"]


def test_the_second_photo_of_one_name_audited_with_its_own_photo_is_no_other_photo(tmp_path):
    # x-2.detections.json (row name x-2.png) audited with b/x.png, the very photo it was made
    # from, warned "holds the boxes of 'x-2.png' ... check that they are one photo" and named the
    # photo x-2.png; another x.png (a/x.png, another file) is still warned about
    blob_photo(tmp_path / "a" / "x.png")
    (tmp_path / "b").mkdir()
    Image.fromarray(blob_image(300, 500, (200, 100, 330, 220))).save(tmp_path / "b" / "x.png")
    assert os.path.getsize(tmp_path / "a" / "x.png") != os.path.getsize(tmp_path / "b" / "x.png")
    r = run_cli("a/x.png", "b/x.png", "--out", "det", "-q", *BLOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    second = Path("det") / "x-2.detections.json"
    assert json.loads((tmp_path / second).read_text())["image"]["row_name"] == "x-2.png"
    r = run_cli("audit", "b/x.png", "--detections", str(second), "--out", "au1", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr
    assert r.stdout.startswith("x.png: "), r.stdout
    r = run_cli("audit", "a/x.png", "--detections", str(second), "--out", "au2", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "b/x.png" in warned[0] and "check that they are one photo" in warned[0], r.stderr


def test_a_folder_under_the_previews_name_is_said_to_be_a_folder(tmp_path):
    # it was "is no preview this version of densedet-tile made ... delete it"
    blob_photo(tmp_path / "good.png")
    (tmp_path / "det" / "good.preview.jpg").mkdir(parents=True)
    r = run_cli("good.png", "--out", "det", "--preview", "-q", *BLOB, cwd=tmp_path)
    assert r.returncode == 1
    assert error_lines(r.stderr) == ["densedet-tile: error: good.png: det/good.preview.jpg: a folder is in the way"]
    assert sorted(p.name for p in (tmp_path / "det").iterdir()) == ["good.preview.jpg"]


# -- COCO results as the audit's boxes: each format the main command writes can be audited -----


def _coco_run(tmp_path: Path) -> tuple[Path, Path, dict]:
    """Two blob photos detected with --format json,coco; the first's files and audit JSON."""
    photo = blob_photo(tmp_path / "good.png")
    r = run_cli(photo.name, "--out", "det", "--format", "json,coco", "-q", *BLOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("audit", photo.name, "--detections", "det/good.detections.json", "--out", "from_json", "-q",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "from_json" / "good.audit.json").read_text())
    return tmp_path / "det" / "good.coco.json", photo, doc


def test_the_audit_reads_coco_results_with_their_image(tmp_path):
    # "expected a JSON object with schema 'densedet-tile/detections@1'": --format coco's own
    # output (and an mmdet or detectron2 run's) could not be audited
    coco, photo, want = _coco_run(tmp_path)
    results = json.loads(coco.read_text())
    assert results and all(r["image_id"] == "good.png" for r in results)
    r = run_cli("audit", photo.name, "--detections", str(coco.relative_to(tmp_path)), "--out", "from_coco", "-q",
                cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "from_coco" / "good.audit.json").read_text())
    assert got["summary"]["products"] == want["summary"]["products"] == len(results)
    assert got["image"]["width"] == 500 and got["image"]["height"] == 300
    # numeric ids, as a COCO-style detector writes them: one image's results, with that image
    (tmp_path / "numeric.json").write_text(json.dumps([dict(x, image_id=7) for x in results]))
    r = run_cli("audit", photo.name, "--detections", "numeric.json", "--out", "from_numeric", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "from_numeric" / "good.audit.json").read_text())
    assert got["summary"]["products"] == len(results)


def test_coco_results_the_audit_cannot_place_are_refused_in_one_line(tmp_path):
    coco, photo, _ = _coco_run(tmp_path)
    results = json.loads(coco.read_text())
    (tmp_path / "two.json").write_text(json.dumps([dict(x, image_id=k % 2 + 1) for k, x in enumerate(results * 2)]))
    (tmp_path / "mixed.json").write_text(json.dumps([dict(x, image_id=1) for x in results] + results))
    (tmp_path / "numeric.json").write_text(json.dumps([dict(x, image_id=7) for x in results]))
    cases = {
        ("--detections", str(coco.relative_to(tmp_path))):
            "its COCO results give no image size for 'good.png'; give the image as well",
        ("--detections", "numeric.json"): "COCO results of image_id 7, a number that names no file",
        (photo.name, "--detections", "two.json"): "COCO results of 2 images by numeric image_id (1, 2)",
        (photo.name, "--detections", "mixed.json"): "image_id is a number for some, a name for others",
    }
    for args, said in cases.items():
        r = run_cli("audit", *args, "--out", "au", "-q", cwd=tmp_path)
        assert r.returncode == 2, (args, r.stderr)
        errs = error_lines(r.stderr)
        assert len(errs) == 1 and said in errs[0], (args, r.stderr)
        assert not (tmp_path / "au").exists()


# -- a diff review of the fixes above ------------------------------------------------------------


def test_a_header_less_csv_whose_first_image_is_bracketed_is_still_a_csv(tmp_path):
    # "[1].png,10,20,..." begins with "[": it was refused as holding JSON (named .csv) or read
    # as bad JSON (named without a suffix)
    Image.fromarray(blob_image(300, 500, (10, 20, 100, 80))).save(tmp_path / "[1].png")
    (tmp_path / "gt.csv").write_text("[1].png,10,20,100,80,product,500,300\n")
    (tmp_path / "gt").write_text("[1].png,10,20,100,80,product,500,300\n")
    (tmp_path / "pred.csv").write_text("[1].png,10,20,100,80,product,500,300,0.9\n")
    for gt in ("gt.csv", "gt"):
        r = run_cli("eval", "pred.csv", gt, cwd=tmp_path)
        assert r.returncode == 0, (gt, r.stderr)
        assert "AP=1.0000" in r.stdout
    r = run_cli("audit", "[1].png", "--detections", "pred.csv", "--out", "au", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("[1].png: 1 product"), r.stdout


def test_another_photo_of_one_name_and_one_length_is_still_warned_about(tmp_path):
    # two uncompressed photos of one size are of one length: the check compared lengths only
    blob_photo(tmp_path / "src.png")
    for folder, box in (("a", (10, 20, 100, 80)), ("b", (200, 100, 330, 220))):
        (tmp_path / folder).mkdir()
        Image.fromarray(blob_image(300, 500, box)).save(tmp_path / folder / "x.bmp")
    assert os.path.getsize(tmp_path / "a" / "x.bmp") == os.path.getsize(tmp_path / "b" / "x.bmp")
    r = run_cli("a/x.bmp", "b/x.bmp", "--out", "det", "-q", *BLOB, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("audit", "a/x.bmp", "--detections", "det/x-2.detections.json", "--out", "au", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "warning" in line]
    assert len(warned) == 1 and "b/x.bmp" in warned[0], r.stderr
    # a byte-for-byte copy elsewhere is that photo: no warning
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "x.bmp").write_bytes((tmp_path / "b" / "x.bmp").read_bytes())
    r = run_cli("audit", "c/x.bmp", "--detections", "det/x-2.detections.json", "--out", "au2", "-q", cwd=tmp_path)
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr


def test_a_photo_recorded_with_backslashes_is_named_by_its_file_name(tmp_path):
    det, _ = _boxes(tmp_path)
    doc = json.loads(det.read_text())
    doc["image"]["path"] = "C:\\shelves\\good.png"
    (tmp_path / "win.detections.json").write_text(json.dumps(doc))
    r = run_cli("audit", "good.png", "--detections", "win.detections.json", "--out", "au", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("good.png: "), r.stdout
    assert json.loads((tmp_path / "au" / "good.audit.json").read_text())["image"]["name"] == "good.png"


def test_coco_results_of_a_whole_float_image_id_are_one_images(tmp_path):
    # 7.0 is image 7 to COCO: it got eval's "numeric ids need a COCO JSON ground truth"
    coco, photo, _ = _coco_run(tmp_path)
    results = json.loads(coco.read_text())
    (tmp_path / "float.json").write_text(json.dumps([dict(x, image_id=7.0) for x in results]))
    r = run_cli("audit", photo.name, "--detections", "float.json", "--out", "au", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "au" / "good.audit.json").read_text())["summary"]["products"] == len(results)


def test_json_cut_short_or_not_utf8_without_its_suffix_gets_the_json_readers_error(tmp_path):
    # (a second diff review: judged by whether it parsed, such a file went to the CSV reader,
    # "line 1 has 21 fields, expected 8 ...", and a JSON of Latin-1 was said to hold JSON)
    results = json.dumps([{"image_id": "a.png", "category_id": 1, "bbox": [10, 20, 30, 40], "score": 0.9}] * 3)
    (tmp_path / "cut").write_text(results[:-5])
    (tmp_path / "cut_pretty").write_text(json.dumps(json.loads(results), indent=1)[:-5])
    (tmp_path / "latin").write_bytes(results.encode().replace(b"a.png", b"a\xe9.png", 1))
    (tmp_path / "gt.csv").write_text("a.png,10,20,40,60,product,500,300\n")
    said = {"cut": "cut: not valid JSON (Expecting value at line 1 column 239)",
            "cut_pretty": "cut_pretty: not valid JSON (Expecting ',' delimiter at line 33 column 15)",
            "latin": "latin: not UTF-8 text"}
    for name, want in said.items():
        r = run_cli("eval", name, "gt.csv", cwd=tmp_path)
        assert r.returncode == 2, (name, r.stderr)
        errs = error_lines(r.stderr)
        assert len(errs) == 1 and want in errs[0], (name, r.stderr)
