"""The eval readers take numbers as JSON numbers only: a string or a boolean where a box, a
score or a label belongs is refused in one line naming the file (it was read as a number:
bbox "1234" as [1, 2, 3, 4]), and ``iscrowd`` is 0 or 1 ("0" was a crowd region)."""

from __future__ import annotations

import pytest

from densedet_tile.eval.formats import read_ground_truth, read_predictions

from eval_inputs import OURS, RESULT, assert_refused, gt_copy, json_files


@pytest.mark.parametrize("field, value", [
    ("bbox", "1234"),                   # was read as [1, 2, 3, 4]
    ("bbox", ["10", "10", "50", "50"]),
    ("bbox", [True, 10, 50, 50]),
    ("bbox", [10, 10, 50]),
    ("bbox", None),
    ("score", "0.9"),
    ("score", True),
    ("score", None),
])
def test_coco_results_take_numbers_only(tmp_path, capsys, field, value) -> None:
    p, g = json_files(tmp_path, [dict(RESULT, **{field: value})])
    assert_refused(tmp_path, capsys, p, g, p, field)


@pytest.mark.parametrize("field, value", [
    ("bbox", "1050"),                   # was read as [1, 0, 5, 0]
    ("bbox", ["10", 10, 50, 50]),
    ("bbox", [10, 10, False, 50]),
    ("iscrowd", "0"),                   # was a crowd region
    ("iscrowd", 2),
    ("iscrowd", 1.0),
    ("iscrowd", None),
])
def test_coco_ground_truth_takes_numbers_only(tmp_path, capsys, field, value) -> None:
    gt = gt_copy()
    gt["annotations"][0][field] = value
    p, g = json_files(tmp_path, [RESULT], gt)
    assert_refused(tmp_path, capsys, p, g, g, field)


@pytest.mark.parametrize("crowd, is_crowd", [(0, False), (1, True), (False, False), (True, True)])
def test_iscrowd_may_be_0_1_or_a_boolean(tmp_path, crowd, is_crowd) -> None:
    gt = gt_copy()
    gt["annotations"][0]["iscrowd"] = crowd
    _, g = json_files(tmp_path, [RESULT], gt)
    assert read_ground_truth(g).images["a.jpg"].crowd.tolist() == [is_crowd]


@pytest.mark.parametrize("field, value", [
    ("boxes", [["10", "10", "60", "60"]]),
    ("boxes", [[10, 10, 60, True]]),
    ("boxes", "10,10,60,60"),
    ("scores", ["0.9"]),
    ("scores", [False]),
    ("labels", ["0"]),
    ("labels", [True]),
])
def test_our_detections_json_takes_numbers_only(tmp_path, capsys, field, value) -> None:
    p, g = json_files(tmp_path, dict(OURS, **{field: value}))
    assert_refused(tmp_path, capsys, p, g, p, field)


def test_numbers_of_either_kind_still_read(tmp_path) -> None:
    p, g = json_files(tmp_path, [dict(RESULT, bbox=[10.0, 10, 50, 50.0], score=1)])
    gt = read_ground_truth(g)
    assert read_predictions(p, gt=gt).images["a.jpg"].xyxy.tolist() == [[10, 10, 60, 60]]
    p, _ = json_files(tmp_path, dict(OURS, scores=[1], labels=[0.0]))
    assert read_predictions(p, gt=gt).images["a.jpg"].scores.tolist() == [1.0]
