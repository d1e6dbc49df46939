"""The audit command's outputs: a stopped audit leaves nothing half-done, names that are no valid
Unicode still give a report, and its heat map is not taken for a photo by a later run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from densedet_tile.cli import main as cli_main
from densedet_tile.runner import without_earlier_outputs
from fakes import blob_image, run_cli, stale_temporaries

FAKES = str(Path(__file__).parents[1] / "fakes.py")
BLOB = ["--detector", f"{FAKES}:make_blob", "--tile", "256", "--device", "cpu"]

_STOPPER = '''
import os, signal
from fakes import BlobDetector

class Stopper(BlobDetector):
    """Sends this process SIGTERM (or SIGINT) when it is first asked to detect."""
    def __init__(self, sig):
        super().__init__()
        self.sig = getattr(signal, sig)
    def predict(self, tiles):
        os.kill(os.getpid(), self.sig)
        return super().predict(tiles)

def make(sig="SIGTERM"):
    return Stopper(sig)
'''


def _photo(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(300, 400, (10, 20, 100, 80))).save(path)
    return path


def test_a_stopped_audit_exits_like_an_interrupted_run_and_leaves_the_earlier_report(tmp_path):
    (tmp_path / "stopper.py").write_text(_STOPPER)
    photo = _photo(tmp_path / "shelf.png")
    out = tmp_path / "out"
    assert cli_main(["audit", str(photo), "--out", str(out), *BLOB]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(before) == ["shelf.audit.html", "shelf.audit.json", "shelf.heatmap.png"]
    for sig, code in (("SIGTERM", 143), ("SIGINT", 130)):
        opts = ["--detector", "stopper:make", "--detector-option", f"sig={sig}", "--tile", "256"]
        r = run_cli("audit", photo, "--out", out, *opts, cwd=tmp_path)
        assert r.returncode == code, r.stderr
        said = "interrupted" if sig == "SIGINT" else f"stopped by {sig}"
        assert r.stderr.strip().splitlines()[-1] == f"densedet-tile audit: error: {said}"
        assert "Traceback" not in r.stderr
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, no temporaries
        # into a folder it made: removed again
        r = run_cli("audit", photo, "--out", tmp_path / "new" / "out", *opts, cwd=tmp_path)
        assert r.returncode == code, r.stderr
        assert not (tmp_path / "new").exists()


def test_an_audit_sweeps_the_temporaries_a_killed_run_left(tmp_path):
    photo = _photo(tmp_path / "shelf.png")
    out = tmp_path / "out"
    old, keep = stale_temporaries(out, [".shelf.audit.html.q8dvwt0a.densedet-tmp", ".shelf.audit.json.Zq81hh0p.densedet-tmp.old"])
    assert cli_main(["audit", str(photo), "--out", str(out), *BLOB]) == 0
    assert not any(f.exists() for f in old) and keep.exists()


def test_names_that_are_no_valid_unicode_still_give_a_report(tmp_path, capsys):
    photo = _photo(tmp_path / "shelf.png")
    regions = tmp_path / "r.geojson"
    # a valid JSON escape, but half of an emoji: no UTF-8 encoding exists for it
    regions.write_text('{"type": "Feature", "properties": {"name": "bay \\ud83d"}, "geometry": {"type": "Polygon", '
                       '"coordinates": [[[0, 0], [200, 0], [200, 300], [0, 300], [0, 0]]]}}')
    out = tmp_path / "out"
    assert cli_main(["audit", str(photo), "--regions", str(regions), "--out", str(out), *BLOB]) == 0
    page = (out / "shelf.audit.html").read_text(encoding="utf-8")
    assert "bay ?" in page
    doc = json.loads((out / "shelf.audit.json").read_text())
    assert doc["regions"][0]["name"] == "bay \ud83d"  # the JSON keeps it, escaped
    assert "region bay \\ud83d" in capsys.readouterr().out


def test_a_file_name_that_is_no_utf8_is_printed_escaped_not_lost(tmp_path):
    # With strict UTF-8 output, printing such a name raised UnicodeEncodeError, which the pipe
    # guard took for a closed pipe: the '->' line vanished, stdout went to /dev/null, exit 0.
    photo = _photo(tmp_path / os.fsdecode(b"shelf\xff.png"))
    r = run_cli("audit", photo, "--out", tmp_path / "out", *BLOB, cwd=tmp_path, env={"PYTHONIOENCODING": "utf-8"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("shelf\\udcff.png: ") and lines[-1].startswith("-> ")
    assert "shelf\\udcff.audit.html" in lines[-1]


def test_the_heat_map_of_an_audit_is_not_taken_for_a_photo(tmp_path):
    photo = _photo(tmp_path / "shelf.png")
    assert cli_main(["audit", str(photo), "--out", str(tmp_path), *BLOB]) == 0
    heat = tmp_path / "shelf.heatmap.png"
    assert heat.is_file()
    assert without_earlier_outputs([photo, heat]) == [photo]
    # a PNG of that name with no audit beside it is somebody's photo
    other = tmp_path / "x" / "aisle.heatmap.png"
    other.parent.mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(other)
    assert without_earlier_outputs([other]) == [other]
    (other.parent / "aisle.audit.json").write_text('{"schema": "something/else@1"}')
    assert without_earlier_outputs([other]) == [other]


def _csv(path: Path, rows: list[tuple[str, np.ndarray, int, int]], *, sizes: bool = True) -> Path:
    lines = ["image_name,x1,y1,x2,y2,class,image_width,image_height,score"]
    for name, xyxy, w, h in rows:
        for b in xyxy:
            size = f"{w},{h}" if sizes else ","
            lines.append(f"{name},{b[0]:.1f},{b[1]:.1f},{b[2]:.1f},{b[3]:.1f},product,{size},0.9")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_audit_reads_another_detectors_boxes_from_a_sku110k_csv(tmp_path, capsys):
    # a real SKU-110K detector's boxes come as SKU-110K CSV rows: audited as our own JSON would be
    from densedet_tile.audit import run_audit
    from densedet_tile.synth.audit_aisles import synthetic_aisle

    a = synthetic_aisle(np.random.default_rng(3), width=3000, n_rows=4, gaps_per_row=2)
    W, H = int(a.xyxy[:, 2].max()) + 20, int(a.xyxy[:, 3].max()) + 20
    other = a.xyxy[: len(a.xyxy) // 2] + 5.0
    one = _csv(tmp_path / "shelf.detections.csv", [("shelf.jpg", a.xyxy, W, H)])
    out = tmp_path / "out"
    assert cli_main(["audit", "--detections", str(one), "--out", str(out)]) == 0
    doc = json.loads((out / "shelf.audit.json").read_text())
    want = run_audit(np.round(a.xyxy, 1), W, H)
    assert (doc["summary"]["rows"], doc["summary"]["gaps"]) == (sum(len(p.layout.rows) for p in want.parts),
                                                                len(want.gaps))
    assert doc["summary"]["products"] == len(a.xyxy) and doc["image"]["width"] == W
    # rows of two images: the IMAGE named picks them; without it, one line and nothing written
    both = _csv(tmp_path / "run.csv", [("shelf.jpg", a.xyxy, W, H), ("other.jpg", other, W, H)])
    capsys.readouterr()
    assert cli_main(["audit", "--detections", str(both), "--out", str(tmp_path / "o2")]) == 2
    assert "rows of 2 images; give the IMAGE" in capsys.readouterr().err and not (tmp_path / "o2").exists()
    photo = tmp_path / "pics" / "other.jpg"
    photo.parent.mkdir()
    Image.new("RGB", (W, H), (90, 90, 90)).save(photo)
    assert cli_main(["audit", str(photo), "--detections", str(both), "--out", str(tmp_path / "o3")]) == 0
    assert json.loads((tmp_path / "o3" / "other.audit.json").read_text())["summary"]["products"] == len(other)
    # no sizes in the rows: the image gives them, and without it the audit says so
    bare = _csv(tmp_path / "bare.csv", [("shelf.jpg", a.xyxy, W, H)], sizes=False)
    assert cli_main(["audit", "--detections", str(bare), "--out", str(tmp_path / "o4")]) == 2
    assert "give no image_width/image_height for 'shelf.jpg'" in capsys.readouterr().err


def test_the_audit_reads_yolo_labels_with_their_image(tmp_path, capsys):
    # a YOLO model run by hand writes normalised labels (Ultralytics' save_txt): the image gives the size
    from densedet_tile.audit import run_audit
    from densedet_tile.synth.audit_aisles import synthetic_aisle

    a = synthetic_aisle(np.random.default_rng(4), width=3000, n_rows=4, gaps_per_row=2)
    W, H = int(a.xyxy[:, 2].max()) + 20, int(a.xyxy[:, 3].max()) + 20
    photo = tmp_path / "shelf.jpg"
    Image.new("RGB", (W, H), (90, 90, 90)).save(photo)
    c = np.column_stack([(a.xyxy[:, 0] + a.xyxy[:, 2]) / 2 / W, (a.xyxy[:, 1] + a.xyxy[:, 3]) / 2 / H,
                         (a.xyxy[:, 2] - a.xyxy[:, 0]) / W, (a.xyxy[:, 3] - a.xyxy[:, 1]) / H])
    labels = tmp_path / "shelf.txt"
    labels.write_text("".join(f"0 {x:.7f} {y:.7f} {w:.7f} {h:.7f} 0.8\n" for x, y, w, h in c))
    assert cli_main(["audit", str(photo), "--detections", str(labels), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "shelf.audit.json").read_text())
    want = run_audit(a.xyxy, W, H)
    assert doc["summary"]["products"] == len(a.xyxy)
    assert (doc["summary"]["rows"], doc["summary"]["gaps"]) == (sum(len(p.layout.rows) for p in want.parts),
                                                                len(want.gaps))
    capsys.readouterr()
    assert cli_main(["audit", "--detections", str(labels), "--out", str(tmp_path / "o2")]) == 2
    assert "YOLO labels are normalised to their image; give the image" in capsys.readouterr().err
    labels.write_text("0 0.5 0.5 0.1\n")
    assert cli_main(["audit", str(photo), "--detections", str(labels), "--out", str(tmp_path / "o3")]) == 2
    assert "line 1 has 4 fields" in capsys.readouterr().err and not (tmp_path / "o3").exists()


def test_a_csv_of_a_run_that_found_nothing_audits_an_empty_shelf(tmp_path, capsys):
    # our own --format csv of an image with no boxes is a header only: with the image, an audit
    # of 0 products (an empty shelf is worth one), not "no rows"
    photo = tmp_path / "bare.jpg"
    Image.new("RGB", (800, 600), (0, 0, 0)).save(photo)
    empty = _csv(tmp_path / "bare.detections.csv", [])
    assert cli_main(["audit", str(photo), "--detections", str(empty), "--out", str(tmp_path / "o")]) == 0
    doc = json.loads((tmp_path / "o" / "bare.audit.json").read_text())
    assert doc["summary"]["products"] == 0 and (doc["image"]["width"], doc["image"]["height"]) == (800, 600)
    capsys.readouterr()
    assert cli_main(["audit", str(tmp_path / "gone.jpg"), "--detections", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "gone.jpg: no such image file" in capsys.readouterr().err


def test_the_audit_reads_the_photos_shelf_lines_whatever_the_preview_width(tmp_path):
    # the bays came out otherwise with a narrower report preview (an outside review): the shelf
    # lines are read at one scale of the products; --no-shelf-lines leaves them out
    rng = np.random.default_rng(8)
    W, H, s = 3000, 1400, 0.5
    boxes = []
    for b in (300.0, 600.0, 900.0, 1200.0):
        x = rng.uniform(0, 20)
        while x + 100 <= W:
            boxes.append([x, b - 150, x + 100, b])
            x += 100 + rng.uniform(0, 20)
    boxes = np.array(boxes)
    pic = rng.normal(120.0, 35.0, (int(H * s), int(W * s)))
    for b in (300.0, 600.0, 900.0, 1200.0):
        for x0, x1, dy in ((0, int(W * s) // 2, 0.0), (int(W * s) // 2, int(W * s), 150.0)):
            y = int(round((b + dy) * s))
            if y + 8 < pic.shape[0]:
                pic[y:y + 5, x0:x1] = 235.0
                pic[y + 5:y + 8, x0:x1] = 30.0
    Image.fromarray(np.clip(pic, 0, 255).astype(np.uint8)).resize((W, H)).save(tmp_path / "shelf.png")
    dets = _csv(tmp_path / "shelf.detections.csv", [("shelf.png", boxes, W, H)])
    docs = {}
    for name, extra in (("default", []), ("narrow", ["--preview-max-width", "400"]), ("boxes", ["--no-shelf-lines"])):
        out = tmp_path / name
        assert cli_main(["audit", str(tmp_path / "shelf.png"), "--detections", str(dets), "--out", str(out), *extra]) == 0
        docs[name] = json.loads((out / "shelf.audit.json").read_text())
    edges = {k: [(b["left_edge"], b["right_edge"]) for b in d["bays"]] for k, d in docs.items()}
    assert edges["default"] == [("image edge", "shelf break"), ("shelf break", "image edge")]
    assert edges["narrow"] == edges["default"]
    assert edges["boxes"] == [("image edge", "image edge")]
    assert docs["default"]["settings"]["shelf_lines"] is True
    assert docs["boxes"]["settings"]["shelf_lines"] is False
