"""Boundaries of the COCO evaluation, the YOLO reader and the writers that no other test pinned
(a mutation review: each case fails with the rule changed by one comparison)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval import EvalImage, evaluate_boxes
from densedet_tile.eval.formats import parse_yolo_labels
from densedet_tile.io import label_name, write_csv


def _stats(gt, dets, scores, **kw) -> dict:
    im = EvalImage("a", np.array(gt, float), np.zeros(len(gt), int), np.array(dets, float), np.array(scores, float),
                   np.zeros(len(dets), int))
    return evaluate_boxes([im], **kw).stats


def test_an_iou_threshold_of_one_takes_a_box_equal_but_for_rounding() -> None:
    assert _stats([[0, 0, 100, 100]], [[0, 0, 100, 100 + 1e-9]], [0.9], iou_thrs=[1.0])["AP"] == pytest.approx(1.0)


def test_an_area_of_exactly_32x32_is_in_the_small_range_as_in_pycocotools() -> None:
    # pycocotools' ranges are closed: 32^2 is small (and medium), for ground truth and detections
    assert _stats([[0, 0, 32, 32]], [[0, 0, 32, 32]], [0.9])["AP_small"] == pytest.approx(1.0)
    assert _stats([[0, 0, 32, 32]], [[0, 0, 32, 32]], [0.9])["AP_medium"] == pytest.approx(1.0)
    # a small object found, and an unmatched 32x32 detection scored above it: it counts against small
    assert _stats([[0, 0, 20, 20]], [[100, 100, 132, 132], [0, 0, 20, 20]], [0.9, 0.8])["AP_small"] == pytest.approx(0.5)
    # ... an unmatched 33x33 one lies outside the range and does not
    assert _stats([[0, 0, 20, 20]], [[100, 100, 133, 133], [0, 0, 20, 20]], [0.9, 0.8])["AP_small"] == pytest.approx(1.0)


def test_yolo_coordinates_far_above_one_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="coordinates above 1"):
        parse_yolo_labels("0 3.5 0.5 0.1 0.1\n", "labels/a.txt")
    names, vals, _ = parse_yolo_labels("0 0.5 0.5 0.1 0.1\n", "labels/a.txt")
    assert names == ["0"] and vals.shape == (1, 5)


def test_a_label_outside_the_names_is_written_as_its_number() -> None:
    assert label_name(["product", "price tag"], 1) == "price tag"
    assert label_name(["product", "price tag"], 2) == "2"
    assert label_name(["product", "price tag"], -1) == "-1"  # not the last name


def test_csv_coordinates_are_rounded_to_the_nearest_pixel(tmp_path) -> None:
    det = dt.Detections(np.array([[10.7, 20.2, 60.5, 89.6]]), np.array([0.9]), np.array([0]))
    res = dt.ImageResult(detections=det, name="a.jpg", path=None, width=200, height=100, num_tiles=1, settings={},
                         model={})
    row = write_csv(res, tmp_path / "a.csv").read_text().splitlines()[1].split(",")
    assert row[1:5] == ["11", "20", str(int(np.rint(60.5))), "90"]


def test_an_older_folder_with_a_renumbered_second_photo_is_read_by_its_file_names(tmp_path) -> None:
    # written before image.row_name: both JSONs name the image x.jpg; the second one's file is
    # x-2 (and its CSV and COCO rows say x-2.jpg). eval refused the folder ("a second detections
    # file"), and a batch rerun skipped the images as complete, so it never mended (an upgrade review)
    from densedet_tile.eval.formats import read_predictions
    from densedet_tile.io import write_json

    det = dt.Detections(np.array([[10.0, 20.0, 60.0, 90.0]]), np.array([0.9]), np.array([0]))
    res = dt.ImageResult(detections=det, name="x.jpg", path=None, width=200, height=100, num_tiles=1, settings={},
                         model={})
    write_json(res, tmp_path / "x.detections.json")
    write_json(res, tmp_path / "x-2.detections.json")
    write_json(res, tmp_path / "x_copy.detections.json")  # renamed by hand: not a renumbered one
    import json

    for f in tmp_path.glob("*.json"):  # as a version before row_name and written_by wrote them
        doc = json.loads(f.read_text())
        assert "row_name" not in doc["image"]
        del doc["written_by"]
        f.write_text(json.dumps(doc))
    (tmp_path / "x.detections.json").unlink()
    assert sorted(read_predictions(tmp_path).images) == ["x-2.jpg", "x.jpg"]  # x_copy stays x.jpg
    (tmp_path / "x_copy.detections.json").rename(tmp_path / "x.detections.json")
    assert sorted(read_predictions(tmp_path).images) == ["x-2.jpg", "x.jpg"]
    # alone, the renumbered file keeps the name it records: a.jpg and a.png, the latter saved as
    # a-2, are a.jpg and a.png (their CSV rows say so), not a-2.png
    (tmp_path / "x.detections.json").unlink()
    assert sorted(read_predictions(tmp_path).images) == ["x.jpg"]


def test_this_versions_jsons_are_named_as_they_say(tmp_path) -> None:
    from densedet_tile.eval.formats import read_predictions
    from densedet_tile.io import write_json

    det = dt.Detections(np.array([[10.0, 20.0, 60.0, 90.0]]), np.array([0.9]), np.array([0]))
    for name, stem in (("a.jpg", "a"), ("a.png", "a-2"), ("classes.jpg", "classes-2")):
        res = dt.ImageResult(detections=det, name=name, path=None, width=200, height=100, num_tiles=1,
                             settings={}, model={})
        write_json(res, tmp_path / f"{stem}.detections.json")
    assert sorted(read_predictions(tmp_path).images) == ["a.jpg", "a.png", "classes.jpg"]


def test_a_real_x2_photo_beside_an_older_renumbered_x_photo_keeps_its_own_name(tmp_path) -> None:
    import json

    from densedet_tile.eval.formats import read_predictions
    from densedet_tile.io import write_json

    det = dt.Detections(np.array([[10.0, 20.0, 60.0, 90.0]]), np.array([0.9]), np.array([0]))
    for name, stem in (("x.jpg", "x"), ("x.jpg", "x-2"), ("x-2.jpg", "x-2-2")):
        res = dt.ImageResult(detections=det, name=name, path=None, width=200, height=100, num_tiles=1,
                             settings={}, model={})
        f = write_json(res, tmp_path / f"{stem}.detections.json")
        doc = json.loads(Path(f).read_text())
        del doc["written_by"]  # an older version's
        Path(f).write_text(json.dumps(doc))
    assert sorted(read_predictions(tmp_path).images) == ["x-2-2.jpg", "x-2.jpg", "x.jpg"]
