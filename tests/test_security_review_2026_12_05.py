"""Inputs crafted against a service that runs the tool on uploads (an outside security review,
2026-12-05): a TIFF whose declared tile dwarfs its image, a manifest record whose stem leaves
--out, and a detections JSON naming a file elsewhere for the audit's preview."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile import TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.errors import ImageReadError
from densedet_tile.runner import Job
from densedet_tile.tiler.readers import open_image
from fakes import BlobDetector, blob_image


def _tiff_with_tile(path: Path, w: int, h: int, tile: int, tile_h: int | None = None, bits: int = 8) -> Path:
    """A tiny deflate RGB TIFF whose every tile is empty (0 bytes), ``tile`` x ``tile_h`` px."""
    th = tile if tile_h is None else tile_h
    n = -(-w // tile) * -(-h // th)
    out = bytearray(b"II*\0" + struct.pack("<I", 0))
    data = len(out)
    out += b"\x78\x9c\x03\x00\x00\x00\x00\x01"
    bps = len(out)
    out += struct.pack("<HHH", bits, bits, bits)
    offs = len(out)
    out += struct.pack(f"<{n}I", *([0] + [data] * (n - 1)))
    counts = len(out)
    out += struct.pack(f"<{n}I", *([0] + [8] * (n - 1)))
    ifd = len(out)
    tags = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 3, bps), (259, 3, 1, 8), (262, 3, 1, 2), (277, 3, 1, 3),
            (284, 3, 1, 1), (322, 4, 1, tile), (323, 4, 1, th), (324, 4, n, offs), (325, 4, n, counts)]
    out += struct.pack("<H", len(tags))
    for t, ty, c, v in tags:
        out += struct.pack("<HHIHH", t, ty, c, v, 0) if (ty == 3 and c == 1) else struct.pack("<HHII", t, ty, c, v)
    out += struct.pack("<I", 0)
    struct.pack_into("<I", out, 4, ifd)
    path.write_bytes(bytes(out))
    return path


def test_a_tiff_tile_far_larger_than_its_image_is_refused_before_it_is_filled(tmp_path: Path) -> None:
    bomb = _tiff_with_tile(tmp_path / "sparse.tif", 40001, 16, 40000)  # 176 bytes; filled, 9.5 GB
    assert bomb.stat().st_size < 400
    with pytest.raises(ImageReadError, match=r"sparse.tif: its TIFF tiles \(40000x40000 px\) are larger than the "
                                             r"image \(40001x16 px\)"):
        with open_image(bomb, max_pixels=1_000_000) as src:
            src.read(0, 0, 100, 16)


def test_a_tiff_tile_is_bounded_in_bytes_too(tmp_path: Path) -> None:
    # 8000 x 16 px of 16-bit RGB declaring 8000 x 4096 tiles: 196 MB to fill, under the per-side cap
    big = _tiff_with_tile(tmp_path / "deep.tif", 8000, 16, 8000, tile_h=4096, bits=16)
    with pytest.raises(ImageReadError, match=r"deep.tif: its TIFF tiles \(8000x4096 px\) are larger"):
        open_image(big, max_pixels=1_000_000)
    tifffile = pytest.importorskip("tifffile")
    img = np.random.default_rng(2).integers(0, 255, (16, 8000, 3), np.uint8)
    tifffile.imwrite(tmp_path / "ok.tif", img, tile=(2048, 8000), photometric="rgb", compression="zlib")
    with open_image(tmp_path / "ok.tif") as src:  # 49 MB tiles of 8-bit RGB: taken
        assert np.array_equal(src.read(0, 0, 8000, 16), img)


def test_tiles_a_little_larger_than_a_small_image_are_read() -> None:
    tifffile = pytest.importorskip("tifffile")
    import io

    img = np.random.default_rng(0).integers(0, 255, (100, 120, 3), np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, img, tile=(256, 256), photometric="rgb")
    with open_image(buf.getvalue()) as src:
        assert np.array_equal(src.read(0, 0, 120, 100), img)


def test_a_manifest_stem_that_leaves_the_output_folder_is_not_used(tmp_path: Path) -> None:
    img = tmp_path / "in" / "a.png"
    img.parent.mkdir()
    Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(img)
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "v.detections.json").write_text("precious")
    for stem in (str(victim / "v"), "../escaped/pwn", "sub/x"):  # ("..": "...detections.json" in --out)
        (out / "manifest.jsonl").write_text(json.dumps({"event": "image", "input": str(img), "stem": stem,
                                                        "status": "ok"}) + "\n")
        s = run_batch([img], out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)))
        assert [r["stem"] for r in s.records] == ["a"], stem
    assert (victim / "v.detections.json").read_text() == "precious"
    assert not (tmp_path / "escaped").exists() and not (out / "sub").exists()
    assert (out / "a.detections.json").is_file()


def test_the_audit_shows_no_file_a_detections_json_points_to_unless_its_boxes_came_from_it(tmp_path: Path,
                                                                                         capsys) -> None:
    from densedet_tile.cli import main

    photo = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(photo)
    fake = str(Path(__file__).parent / "fakes.py") + ":make_blob"
    assert main([str(photo), "--out", str(tmp_path / "det"), "-q", "--detector", fake, "--tile", "256"]) == 0
    det = tmp_path / "det" / "shelf.detections.json"
    # the run's own JSON: its photo (size and modification time as recorded) is drawn
    assert main(["audit", "--detections", str(det), "--out", str(tmp_path / "a1"), "-q"]) == 0
    assert json.loads((tmp_path / "a1" / "shelf.audit.json").read_text())["preview"]["from_image"] is True
    # the same JSON pointed at another image of that size (a private file on the server)
    private = tmp_path / "secret" / "private.png"
    private.parent.mkdir()
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(private)
    doc = json.loads(det.read_text())
    doc["image"]["path"] = str(private)
    doc["settings"]["requested"]["file"] = str(private)
    crafted = tmp_path / "upload" / "x.detections.json"
    crafted.parent.mkdir()
    crafted.write_text(json.dumps(doc))
    assert main(["audit", "--detections", str(crafted), "--out", str(tmp_path / "a2"), "-q"]) == 0
    report = json.loads(next((tmp_path / "a2").glob("*.audit.json")).read_text())
    assert report["preview"]["from_image"] is False
    assert not (tmp_path / "a2" / "private.audit.html").exists()
    # a file that is no image is as good as not there: a warning, not an error that tells it exists
    (tmp_path / "secret" / "notes.txt").write_text("x")
    for key in ("requested",):
        doc["settings"][key].pop("input", None)
    doc["image"]["path"] = doc["settings"]["requested"]["file"] = str(tmp_path / "secret" / "notes.txt")
    crafted.write_text(json.dumps(doc))
    assert main(["audit", "--detections", str(crafted), "--out", str(tmp_path / "a3"), "-q"]) == 0


def test_a_photo_copied_beside_its_json_is_drawn_though_its_time_changed(tmp_path: Path) -> None:
    import shutil

    from densedet_tile.cli import main

    photo = tmp_path / "run" / "shelf.png"
    photo.parent.mkdir()
    Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(photo)
    fake = str(Path(__file__).parent / "fakes.py") + ":make_blob"
    assert main([str(photo), "--out", str(tmp_path / "run" / "det"), "-q", "--detector", fake, "--tile", "256"]) == 0
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy(tmp_path / "run" / "det" / "shelf.detections.json", moved)
    shutil.copyfile(photo, moved / "shelf.png")  # a plain copy: a new modification time
    shutil.rmtree(tmp_path / "run")
    assert main(["audit", "--detections", str(moved / "shelf.detections.json"), "--out", str(tmp_path / "a"),
                 "-q"]) == 0
    assert json.loads((tmp_path / "a" / "shelf.audit.json").read_text())["preview"]["from_image"] is True


def test_tiles_of_2048_on_a_small_tiff_are_read() -> None:
    tifffile = pytest.importorskip("tifffile")
    import io

    img = np.random.default_rng(1).integers(0, 255, (400, 600, 3), np.uint8)
    buf = io.BytesIO()
    tifffile.imwrite(buf, img, tile=(2048, 2048), photometric="rgb", compression="zlib")
    with open_image(buf.getvalue()) as src:
        assert np.array_equal(src.read(0, 0, 600, 400), img)


def test_a_link_beside_the_json_to_a_file_elsewhere_counts_as_elsewhere(tmp_path: Path) -> None:
    from densedet_tile.cli import main

    photo = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 400, (50, 60, 150, 200))).save(photo)
    fake = str(Path(__file__).parent / "fakes.py") + ":make_blob"
    assert main([str(photo), "--out", str(tmp_path / "det"), "-q", "--detector", fake, "--tile", "256"]) == 0
    doc = json.loads((tmp_path / "det" / "shelf.detections.json").read_text())
    secret = tmp_path / "secret" / "private.png"
    secret.parent.mkdir()
    Image.fromarray(np.full((300, 400, 3), 200, np.uint8)).save(secret)
    up = tmp_path / "srv" / "uploads" / "u1"
    up.mkdir(parents=True)
    (up / "evil.png").symlink_to(secret)  # (an unpacked archive can hold links)
    doc["image"]["path"] = "evil.png"
    doc["settings"]["requested"]["file"] = str(up / "evil.png")
    (up / "x.detections.json").write_text(json.dumps(doc))
    assert main(["audit", "--detections", str(up / "x.detections.json"), "--out", str(tmp_path / "a"), "-q"]) == 0
    assert json.loads(next((tmp_path / "a").glob("*.audit.json")).read_text())["preview"]["from_image"] is False
