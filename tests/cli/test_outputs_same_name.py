"""Two photos of one file name from two folders, run one after the other into one --out."""

import json

import numpy as np
from PIL import Image

from fakes import blob_image, run_cli


def _photos(tmp_path):
    for folder, box in (("store_a", (100, 100, 300, 260)), ("store_b", (400, 200, 700, 380))):
        (tmp_path / folder).mkdir()
        Image.fromarray(blob_image(600, 900, box)).save(tmp_path / folder / "IMG_0001.png")


def _run(cwd, photo, out):
    return run_cli(photo, "--detector", "fakes:make_blob", "--out", out, "-q", "--device", "cpu", cwd=cwd)


def test_replacing_another_photos_results_is_said_once(tmp_path):
    _photos(tmp_path)
    first = _run(tmp_path, "store_a/IMG_0001.png", "out")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    second = _run(tmp_path, "store_b/IMG_0001.png", "out")
    assert second.returncode == 0, second.stderr
    lines = second.stderr.strip().splitlines()
    # the other photo by its real path (the path as its run was given it is relative to where that ran)
    other = (tmp_path / "store_a" / "IMG_0001.png").resolve()
    assert len(lines) == 1 and "store_b/IMG_0001.png: replaced" in lines[0] and f"({other})" in lines[0]
    doc = json.loads((tmp_path / "out" / "IMG_0001.detections.json").read_text())
    assert doc["image"]["path"] == "store_b/IMG_0001.png"  # replaced, as before: the warning only says so


def test_the_same_photo_again_is_not_another_one(tmp_path):
    _photos(tmp_path)
    assert _run(tmp_path, "store_a/IMG_0001.png", "out").returncode == 0
    again = _run(tmp_path, "store_a/IMG_0001.png", "out")  # a rerun
    from_inside = _run(tmp_path / "store_a", "IMG_0001.png", "../out")  # the same file by another path
    assert (again.returncode, again.stderr) == (0, "")
    assert (from_inside.returncode, from_inside.stderr) == (0, "")
    # the photo itself replaced by a new shot under its own name: an update, not another photo
    Image.fromarray(blob_image(600, 900, (10, 10, 90, 90))).save(tmp_path / "store_a" / "IMG_0001.png")
    new_shot = _run(tmp_path, "store_a/IMG_0001.png", "out")
    assert (new_shot.returncode, new_shot.stderr) == (0, "")


def test_two_photos_of_one_size_and_time_are_still_two(tmp_path):
    # an unzip leaves equal sizes and modification times: the real path tells them apart
    import os

    for folder, value in (("store_a", 60), ("store_b", 200)):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(tmp_path / folder / "IMG_0002.bmp")
        os.utime(tmp_path / folder / "IMG_0002.bmp", ns=(1_767_261_600_000_000_000,) * 2)
    assert _run(tmp_path, "store_a/IMG_0002.bmp", "out").returncode == 0
    second = _run(tmp_path, "store_b/IMG_0002.bmp", "out")
    assert second.returncode == 0 and f"({(tmp_path / 'store_a' / 'IMG_0002.bmp').resolve()})" in second.stderr


def test_a_link_that_now_points_elsewhere_is_another_photo(tmp_path):
    import os

    _photos(tmp_path)
    os.symlink("store_a", tmp_path / "current")
    assert _run(tmp_path, "current/IMG_0001.png", "out").returncode == 0
    os.unlink(tmp_path / "current")
    os.symlink("store_b", tmp_path / "current")
    again = _run(tmp_path, "current/IMG_0001.png", "out")
    assert again.returncode == 0 and "replaced" in again.stderr


def test_nothing_is_said_when_nothing_was_replaced(tmp_path):
    # the image failed (a YOLO label file of the user's in the way): the first photo's outputs stay
    _photos(tmp_path)
    assert _run(tmp_path, "store_a/IMG_0001.png", "out").returncode == 0
    (tmp_path / "out" / "IMG_0001.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    r = run_cli("store_b/IMG_0001.png", "--detector", "fakes:make_blob", "--out", "out", "--format", "yolo", "-q",
                "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 1 and "in the way" in r.stderr and "another photo" not in r.stderr
    doc = json.loads((tmp_path / "out" / "IMG_0001.detections.json").read_text())
    assert doc["image"]["path"] == "store_a/IMG_0001.png"


def test_audit_says_when_it_replaced_another_photos_report(tmp_path):
    _photos(tmp_path)

    def audit(photo):
        return run_cli("audit", photo, "--detector", "fakes:make_blob", "--out", "aud", "-q", "--device", "cpu",
                       cwd=tmp_path)

    first = audit("store_a/IMG_0001.png")
    assert first.returncode == 0 and "another file" not in first.stderr, first.stderr
    assert json.loads((tmp_path / "aud" / "IMG_0001.audit.json").read_text())["image"]["file"] == str(
        (tmp_path / "store_a" / "IMG_0001.png").resolve())
    again = audit("store_a/IMG_0001.png")
    assert again.returncode == 0 and "another file" not in again.stderr
    other = audit("store_b/IMG_0001.png")
    assert other.returncode == 0 and "another file of that name" in other.stderr and "store_a" in other.stderr


def test_two_photos_of_one_name_keep_their_outputs_whatever_order_they_are_given_in(tmp_path):
    _photos(tmp_path)
    (tmp_path / "IMG_0001-2.png").write_bytes((tmp_path / "store_a" / "IMG_0001.png").read_bytes())
    ab = run_cli("store_a/IMG_0001.png", "store_b/IMG_0001.png", "IMG_0001-2.png", "--detector", "fakes:make_blob",
                 "--out", "out", "-q", "--device", "cpu", cwd=tmp_path)
    assert (ab.returncode, ab.stderr) == (0, "")

    def made_from():
        return {f.name: json.loads(f.read_text())["image"]["path"] for f in (tmp_path / "out").glob("*.detections.json")}

    first = made_from()
    # a file named like a suffixed stem keeps its own name; the second IMG_0001 moves on
    assert first == {"IMG_0001.detections.json": "store_a/IMG_0001.png",
                     "IMG_0001-2.detections.json": "IMG_0001-2.png",
                     "IMG_0001-3.detections.json": "store_b/IMG_0001.png"}
    ba = run_cli("IMG_0001-2.png", "store_b/IMG_0001.png", "store_a/IMG_0001.png", "--detector", "fakes:make_blob",
                 "--out", "out", "-q", "--device", "cpu", cwd=tmp_path)
    assert (ba.returncode, ba.stderr) == (0, "")  # nothing replaced by another photo: no warning
    assert made_from() == first


def test_unique_stems_do_not_depend_on_the_order_given():
    from itertools import permutations

    from densedet_tile.runner import unique_stems

    paths = ["/p/b/x.jpg", "/p/a/x.jpg", "/p/x-2.jpg", "/p/c/x.png", "/p/classes.jpg"]
    want = dict(zip(paths, unique_stems(paths, {"Classes"})))
    assert want == {"/p/a/x.jpg": "x", "/p/b/x.jpg": "x-3", "/p/c/x.png": "x-4", "/p/x-2.jpg": "x-2",
                    "/p/classes.jpg": "classes-2"}
    for order in permutations(paths):
        assert dict(zip(order, unique_stems(list(order), {"Classes"}))) == want


def test_yolo_labels_given_a_numbered_name_are_warned_about(tmp_path):
    # x.jpg and x.png in one run: x.png's labels went to x-2.txt without a word, and a labelling
    # tool pairing labels with images by name read x.txt as x.png's (an outside review)
    Image.fromarray(blob_image(600, 900, (100, 100, 300, 260))).save(tmp_path / "x.png")
    Image.fromarray(blob_image(600, 900, (100, 100, 300, 260))).save(tmp_path / "x.jpg")
    res = run_cli("x.jpg", "x.png", "--detector", "fakes:make_blob", "--out", "out", "-q", "--device", "cpu",
                  "--format", "yolo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if "YOLO labels" in ln]
    assert "x.png: its YOLO labels are written as x-2.txt (x.txt is another input's)" in line
    assert (tmp_path / "out" / "x-2.txt").is_file()
    # without YOLO labels nothing is said (the JSON names its image)
    res = run_cli("x.jpg", "x.png", "--detector", "fakes:make_blob", "--out", "out2", "-q", "--device", "cpu",
                  cwd=tmp_path)
    assert res.returncode == 0 and "YOLO labels" not in res.stderr


def test_an_image_named_like_the_class_list_is_said_so(tmp_path):
    Image.fromarray(blob_image(600, 900, (100, 100, 300, 260))).save(tmp_path / "classes.png")
    res = run_cli("classes.png", "--detector", "fakes:make_blob", "--out", "out", "-q", "--device", "cpu",
                  "--format", "yolo", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    (line,) = [ln for ln in res.stderr.splitlines() if "YOLO labels" in ln]
    assert "(classes.txt is the class list)" in line and "another input" not in line
