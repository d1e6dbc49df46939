"""A CSV this tool wrote for an image whose file name is not UTF-8 reads back with that name;
a class or a first line that is not UTF-8 is still refused."""

import os

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.formats import read_ground_truth, read_predictions
from densedet_tile.io import write_csv


def _result(name: str) -> "dt.ImageResult":
    det = dt.Detections(np.array([[10.0, 20.0, 60.0, 90.0], [70.0, 20.0, 120.0, 90.0]]), np.array([0.9, 0.8]),
                        np.array([0, 0]))
    return dt.ImageResult(detections=det, name=name, path=None, width=200, height=100, num_tiles=1, settings={},
                          model={})


def test_a_written_csv_with_a_latin1_image_name_reads_back_under_that_name(tmp_path):
    name = os.fsdecode(b"caf\xe9.jpg")  # how Python names the file: a surrogate escape
    path = write_csv(_result(name), tmp_path / "out.csv")
    assert b"caf\xe9.jpg," in path.read_bytes()
    preds = read_predictions(path)
    assert list(preds.images) == [name]
    boxes = preds.images[name]
    np.testing.assert_allclose(boxes.xyxy, [[10, 20, 60, 90], [70, 20, 120, 90]])
    np.testing.assert_allclose(boxes.scores, [0.9, 0.8])


def test_a_class_that_is_not_utf8_is_refused_by_name(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_bytes(b"image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                     b"a.jpg,1,2,30,40,caf\xe9,100,100\n")
    with pytest.raises(InvalidInputError, match=r"gt\.csv: class .* is not UTF-8 text"):
        read_ground_truth(path)


def test_a_utf16_csv_or_a_latin1_header_is_refused_as_not_utf8(tmp_path):
    text = "image_name,x1,y1,x2,y2,class,image_width,image_height\na.jpg,1,2,30,40,product,100,100\n"
    for name, data in (("u16.csv", text.encode("utf-16")),
                       ("hdr.csv", text.replace("image_height", "image_height,d\xe9tail").encode("latin-1"))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InvalidInputError, match=rf"{name}: not UTF-8 text \(the first line"):
            read_ground_truth(tmp_path / name)


def test_an_image_named_in_latin1_on_one_side_only_is_said(tmp_path):
    from densedet_tile.eval.compare import pair_images

    gt = tmp_path / "gt.csv"
    gt.write_bytes(b"image_name,x1,y1,x2,y2,class,image_width,image_height\ncaf\xe9.jpg,1,2,30,40,p,100,100\n")
    pred = tmp_path / "pred.csv"
    pred.write_bytes("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
                     "caf\u00e9.jpg,1,2,30,40,p,100,100,0.9\n".encode("utf-8"))
    with pytest.raises(InvalidInputError, match=r"not in the ground truth .*named in bytes that are not UTF-8"):
        pair_images(read_ground_truth(gt), read_predictions(pred))
