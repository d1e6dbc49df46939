"""``eval --compare`` names a detector's classes as its detections JSON does, so its tiled row
scores what ``detect`` with the same tiling then ``eval`` of the JSON scores."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densedet_tile.cli import main
from densedet_tile.cli.eval import eval_main
from densedet_tile.io import label_name, output_class_names

from fakes import blob_image

TILING = ["--tile", "96", "--overlap", "0.25", "--device", "cpu"]


def _shelf(tmp_path: Path) -> tuple[Path, Path]:
    """A folder with one photo of one bright product, and a two-class ground truth that lists
    a ``shelf`` box first and the ``product`` second."""
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(blob_image(120, 160, (40, 30, 100, 90))).save(imgs / "photo.png")
    gt = tmp_path / "gt.csv"
    gt.write_text("photo.png,0,100,160,120,shelf,160,120\n"
                  "photo.png,40,30,100,90,product,160,120\n")
    return imgs, gt


def test_compare_scores_an_unnamed_detector_as_detect_then_eval_does(tmp_path: Path) -> None:
    imgs, gt = _shelf(tmp_path)
    # detect, then eval of its detections JSON (label 0 of a detector without names: "product")
    det = tmp_path / "det"
    assert main([str(imgs / "photo.png"), *TILING, "--detector", "fakes:make_blob", "--out", str(det), "-q"]) == 0
    assert json.loads((det / "photo.detections.json").read_text())["categories"] == {"0": "product"}
    plain = tmp_path / "plain.json"
    assert eval_main([str(det), str(gt), "-o", str(plain)]) == 0
    want = json.loads(plain.read_text())["metrics"]
    # --compare: its tiled run is the same run; it took label 0 for "shelf", the first class
    both = tmp_path / "compare.json"
    assert eval_main([str(imgs), str(gt), "--compare", *TILING, "--detector", "fakes:make_blob", "-o", str(both)]) == 0
    tiled = json.loads(both.read_text())["runs"][0]
    assert tiled["name"] == "tiled"
    assert tiled["metrics"] == pytest.approx(want, abs=1e-6)
    assert want["AP50"] == pytest.approx(0.5)  # the product found, the shelf missed


def test_the_detections_json_and_compare_share_one_naming_rule() -> None:
    assert output_class_names({}) == ["product"]
    assert output_class_names({"class_names": ["a", "b"]}) == ["a", "b"]
    names = output_class_names({"class_names": ["a", "b"]})
    assert [label_name(names, i) for i in (0, 1, 2)] == ["a", "b", "2"]
