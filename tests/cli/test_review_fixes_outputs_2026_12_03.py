"""Cases an outside review of what the tool writes found on 2026-12-03: a NaN detector option
in the detections JSON, a panorama's preview filled in by its outlines, the audit preview
drawing rows past their region, and the audit preview turning a photo the engine read upright."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
import shapely
from PIL import Image

from densedet_tile.audit import run_audit
from densedet_tile.audit.regions import Region
from densedet_tile.audit.report import load_preview_image, render_preview
from densedet_tile.cli import main
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.runner import detector_identity

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shelf.jpg"


def strict_json(text: str) -> object:
    """JSON as JavaScript reads it: a bare NaN or Infinity is an error."""
    def refuse(word: str) -> None:
        raise ValueError(f"bare {word}")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_detector_option_is_refused_before_anything_runs(value: str, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main([str(EXAMPLE), "--out", str(out), "--detector-option", f"x={value}"])
    err = capsys.readouterr().err
    assert rc == 2 and f"x={value}: {value} is not a finite number" in err
    assert not out.exists()


@pytest.mark.parametrize("value", ["[1e999]", '{"y": -1e999}', "[NaN]"])
def test_a_non_finite_number_inside_a_detector_option_is_refused_too(value: str, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    rc = main([str(EXAMPLE), "--out", str(out), "--detector-option", f"x={value}"])
    err = capsys.readouterr().err
    assert rc == 2 and f"x={value}: " in err and ("is not a finite number" in err or "is not finite" in err)
    assert not out.exists()


def test_a_non_finite_option_given_in_python_is_written_as_valid_json(tmp_path: Path) -> None:
    factory = tmp_path / "mydet.py"
    factory.write_text("def make(**kw):\n    raise RuntimeError('not built here')\n")
    spec = DetectorSpec(kind=f"{factory}:make", options={"x": float("nan"), "y": [float("inf"), 1.5], "z": 2})
    ident = detector_identity(spec)
    assert ident["options"] == {"x": "nan", "y": ["inf", 1.5], "z": 2}
    strict_json(json.dumps(ident))


def test_a_panoramas_preview_keeps_its_small_products_as_outlines(tmp_path: Path) -> None:
    from densedet_tile.io import _outline_width

    # a 40000 px aisle shrunk to an 8000 px preview: products 13 px wide there get 1 px lines,
    # not the 8 px that would fill them in; a phone photo's preview keeps its 3 px lines
    small = np.array([[10 + 16 * i, 100, 23 + 16 * i, 160] for i in range(400)], np.float32)
    assert _outline_width(small, 8000, 480) == 1
    big = np.array([[10 + 120 * i, 100, 110 + 120 * i, 400] for i in range(20)], np.float32)
    assert _outline_width(big, 2448, 3264) == 3
    assert _outline_width(np.zeros((0, 4), np.float32), 8000, 480) == 8


def test_the_panorama_preview_through_the_command_is_mostly_picture(tmp_path: Path) -> None:
    from densedet_tile import Detections

    class Dense:  # 40 px products everywhere on a very wide image (13 px in its preview)
        input_size = None
        class_names = ("product",)

        def predict(self, tiles):
            out = []
            for t in tiles:
                h, w = t.shape[:2]
                xs = np.arange(4, w - 44, 48, dtype=np.float32)
                ys = np.arange(4, h - 120, 130, dtype=np.float32)
                gx, gy = np.meshgrid(xs, ys)
                xyxy = np.stack([gx.ravel(), gy.ravel(), gx.ravel() + 40, gy.ravel() + 120], 1)
                out.append(Detections(xyxy=xyxy, scores=np.full(len(xyxy), 0.9, np.float32),
                                      labels=np.zeros(len(xyxy), np.int64)))
            return out

    import densedet_tile as dt
    from densedet_tile.io import write_preview

    img = np.full((400, 24000, 3), 90, np.uint8)
    res = dt.detect_image(img, detector=Dense(), tile=1024, overlap=0.1)
    path = write_preview(res, tmp_path / "p.jpg", _Array(img))
    a = np.asarray(Image.open(path).convert("RGB")).astype(int)
    green = (a[..., 1] > 180) & (a[..., 0] < 100) & (a[..., 2] < 120)
    assert a.shape[1] == 8000 and green.mean() < 0.3  # 8 px outlines filled the 13 px boxes in


class _Array:
    """An in-memory image as the preview writer reads one (``width``, ``height``, ``read``)."""

    def __init__(self, a: np.ndarray) -> None:
        self.a, self.height, self.width = a, a.shape[0], a.shape[1]

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.a[y:y + h, x:x + w]


def test_the_audit_preview_stops_rows_where_the_json_does() -> None:
    # one region on the right half; its first column of products straddles the region's edge,
    # so the rows' own outlines start 10 px left of it: the JSON cuts them there, and so must
    # the picture (nothing else is drawn left of the region: no products there)
    boxes = np.array([[990 + 62 * i, 40 + 180 * r, 1050 + 62 * i, 190 + 180 * r] for r in range(3)
                      for i in range(16)], float)
    res = run_audit(boxes, 2000, 600, regions=[Region("right", shapely.box(1000, 0, 2000, 600))])
    assert [len(p.layout.rows) for p in res.parts] == [3]
    assert min(x for row in res.parts[0].layout.rows for x, _ in row.polygon) < 995
    jpg, pw, ph, s = render_preview(res, None)
    assert (pw, ph, s) == (2000, 600, 1.0)
    a = np.asarray(Image.open(io.BytesIO(jpg)).convert("RGB")).astype(int)
    blue = (a[..., 2] > 200) & (a[..., 0] < 130) & (a[..., 1] < 150)  # row outlines, lines and labels
    assert blue[:, 1005:].sum() > 1000  # the rows are drawn...
    assert blue[:, :995].sum() == 0  # ...inside the region only


def _exif(orientation_type: int) -> bytes:
    """A little-endian EXIF block whose one tag is orientation 6, stored with ``orientation_type``
    (3: SHORT, as the standard says; 8: SSHORT, which the engine calls unreadable)."""
    ifd = struct.pack("<H", 1) + struct.pack("<HHI", 0x0112, orientation_type, 1) + struct.pack("<hh", 6, 0)
    return b"Exif\x00\x00II" + struct.pack("<HI", 42, 8) + ifd + struct.pack("<I", 0)


def _upright_pattern() -> Image.Image:
    a = np.zeros((300, 200, 3), np.uint8)
    a[:, :100] = (220, 30, 30)  # left red, right blue, a green band at the top
    a[:, 100:] = (30, 30, 220)
    a[:40] = (30, 220, 30)
    return Image.fromarray(a)


def test_the_audit_preview_turns_a_photo_as_the_engine_does(tmp_path: Path) -> None:
    up = _upright_pattern()
    stored = up.transpose(Image.Transpose.ROTATE_90)  # orientation 6 turns it back upright
    # a standard tag: the engine and the preview both turn it upright
    good = tmp_path / "good.jpg"
    stored.save(good, quality=95, exif=_exif(3))
    got = load_preview_image(good, up.width, up.height)
    assert got.size == up.size
    assert np.abs(np.asarray(got, float) - np.asarray(up, float)).mean() < 6
    # an SSHORT tag: the engine reads the photo as stored, so the preview shows it as stored
    # (Pillow's exif_transpose would turn it, under boxes found on the stored frame)
    odd = tmp_path / "odd.jpg"
    stored.save(odd, quality=95, exif=_exif(8))
    import densedet_tile as dt
    res = dt.detect_image(odd)
    assert (res.width, res.height) == stored.size
    got = load_preview_image(odd, *stored.size)
    assert got.size == stored.size
    assert np.abs(np.asarray(got, float) - np.asarray(stored, float)).mean() < 6


def test_audit_quiet_prints_the_summary_line_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fakes import write_aisle_detections

    boxes = np.array([[20 + 70 * i, 30 + 140 * r, 80 + 70 * i, 130 + 140 * r] for r in range(3) for i in range(12)],
                     np.float64)
    det = tmp_path / "aisle.detections.json"
    write_aisle_detections(det, boxes, 900, 450)
    assert main(["audit", "--detections", str(det), "--out", str(tmp_path / "a")]) == 0
    loud = capsys.readouterr().out.splitlines()
    assert main(["audit", "--detections", str(det), "--out", str(tmp_path / "b"), "-q"]) == 0
    quiet = capsys.readouterr().out.splitlines()
    assert len(loud) > 2 and quiet == loud[:1] and "36 products" in quiet[0]
    assert (tmp_path / "b" / "aisle.audit.json").is_file()


def test_a_factory_module_in_the_current_folder_gets_a_hint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from densedet_tile.detector.registry import load_detector
    from densedet_tile.errors import DetectorError

    (tmp_path / "mymod_s37.py").write_text("def make(**kw):\n    raise RuntimeError('not reached')\n")
    monkeypatch.chdir(tmp_path)
    # as the console script runs: the current folder is not on the import path
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", os.getcwd())])
    with pytest.raises(DetectorError, match=r"give it as mymod_s37\.py:make"):
        load_detector("mymod_s37:make", device="cpu")
    with pytest.raises(DetectorError) as info:  # a module that is nowhere: no hint
        load_detector("nowhere_s37:make", device="cpu")
    assert "give it as" not in str(info.value)
