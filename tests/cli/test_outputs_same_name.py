"""Two photos of one file name from two folders, run one after the other into one --out."""

import json

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
    assert len(lines) == 1 and "store_b/IMG_0001.png: replaces" in lines[0] and "(store_a/IMG_0001.png)" in lines[0]
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
