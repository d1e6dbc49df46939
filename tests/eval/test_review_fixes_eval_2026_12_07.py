"""Fixes after an outside review of ``densedet-tile eval`` (2026-12-07): each test fails on the
code before it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from densedet_tile.cli.eval import eval_main
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.formats import read_ground_truth, read_predictions

HEADER = "image_name,x1,y1,x2,y2,class,image_width,image_height"


@pytest.mark.parametrize("name, said", [("", "empty"), ("   ", "empty"), ("/", "'/', which names no file")])
@pytest.mark.parametrize("which", ["ground truth", "predictions"])
def test_a_csv_row_without_an_image_name_is_refused_naming_its_line(tmp_path: Path, name, said, which) -> None:
    # it was scored as one more image, named "": ground truth nobody predicted (recall and AP
    # fell without a word), or predictions of an image the ground truth lacks
    rows = [f"{HEADER}{',score' if which == 'predictions' else ''}"]
    rows += [f"a.jpg,10,10,50,50,object,200,200{',0.9' if which == 'predictions' else ''}",
             f"b.jpg,10,10,50,50,object,200,200{',0.8' if which == 'predictions' else ''}",
             f"{name},60,60,100,100,object,200,200{',0.7' if which == 'predictions' else ''}"]
    path = tmp_path / "boxes.csv"
    path.write_text("\n".join(rows) + "\n")
    read = read_predictions if which == "predictions" else read_ground_truth
    with pytest.raises(InvalidInputError, match=rf"boxes\.csv: line 4: image_name is {said}$"):
        read(path)
    # the same rows with a name are read: the refusal is about the name alone
    path.write_text("\n".join(rows[:3]) + "\n")
    assert sorted(read(path).images) == ["a.jpg", "b.jpg"]


def test_a_coco_file_name_of_spaces_is_no_file_name(tmp_path: Path) -> None:
    gt = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "  "}],
          "categories": [{"id": 1, "name": "object"}], "annotations": []}
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(InvalidInputError, match=r"gt\.json: image id 2 has no file_name"):
        read_ground_truth(path)


def test_a_coco_image_size_given_as_null_is_a_size_not_known(tmp_path: Path, capsys) -> None:
    # exporters write null for a size they do not know; the whole file was refused ("width must
    # be a positive integer, got None") while leaving the keys out was accepted, and pycocotools
    # scores it
    gt = {"images": [{"id": 1, "file_name": "a.jpg", "width": None, "height": None},
                     {"id": 2, "file_name": "b.jpg", "width": 300, "height": 200}],
          "categories": [{"id": 1, "name": "object"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "area": 1600, "iscrowd": 0},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 40, 40], "area": 1600,
                           "iscrowd": 0}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    images = read_ground_truth(tmp_path / "gt.json").images
    assert (images["a.jpg"].width, images["a.jpg"].height) == (None, None)
    assert (images["b.jpg"].width, images["b.jpg"].height) == (300, 200)
    (tmp_path / "r.json").write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 40, 40], "score": 0.9},
                                                 {"image_id": 2, "category_id": 1, "bbox": [50, 50, 40, 40], "score": 0.8}]))
    assert eval_main([str(tmp_path / "r.json"), str(tmp_path / "gt.json")]) == 0
    assert "1.0000  1.0000  1.0000" in capsys.readouterr().out
    # a size that is there must still be a size
    gt["images"][1]["width"] = "wide"
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    with pytest.raises(InvalidInputError, match=r"gt\.json: image id 2: width must be a positive integer"):
        read_ground_truth(tmp_path / "gt.json")


def test_a_problem_on_a_line_before_a_blank_image_name_is_the_one_named(tmp_path: Path) -> None:
    # (a review of the fix above: the blank name was said first, whatever came before it)
    path = tmp_path / "boxes.csv"
    path.write_text(f"{HEADER}\na.jpg,abc,10,50,50,object,200,200\nb.jpg,10,10,50,50,object,200,200\n"
                    ",60,60,100,100,object,200,200\n")
    with pytest.raises(InvalidInputError, match=r"boxes\.csv: line 2: ") as e:
        read_ground_truth(path)
    assert "image_name" not in str(e.value)
    # and a short record after the blank name does not hide it
    path.write_text(f"{HEADER}\na.jpg,10,10,50,50,object,200,200\n,60,60,100,100,object,200,200\nc.jpg,1,2\n")
    with pytest.raises(InvalidInputError, match=r"boxes\.csv: line 3: image_name is empty$"):
        read_ground_truth(path)
