"""``--format yolo``: Ultralytics label files and the one classes.txt beside them."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.errors import InvalidInputError
from densedet_tile.io import FORMATS, output_paths, write_yolo
from densedet_tile.pipeline import ImageResult
from densedet_tile.runner import Job, process_image
from fakes import BlobDetector, blob_image


def result(boxes, labels, scores=None, *, names=("product",), width=200, height=100, name="a.jpg"):
    n = len(boxes)
    d = dt.Detections(np.asarray(boxes, np.float32).reshape(n, 4),
                      np.asarray(scores if scores is not None else [0.5] * n, np.float32), np.asarray(labels, np.int64))
    return ImageResult(detections=d, name=name, path=None, width=width, height=height, num_tiles=1,
                       settings={}, model={"name": "m", "class_names": list(names)} if names else {"name": "m"})


def test_yolo_is_a_format_and_names_its_file():
    assert "yolo" in FORMATS
    assert output_paths("out", "aisle", ("yolo",), False)["yolo"].name == "aisle.txt"


def test_lines_are_class_and_normalised_centre_and_size(tmp_path):
    r = result([[20, 10, 60, 50], [0, 0, 200, 100]], [1, 0], [0.91, 0.5], names=("a", "b"))
    p = write_yolo(r, tmp_path / "a.txt")
    assert p.read_text().splitlines() == ["1 0.200000 0.300000 0.200000 0.400000",
                                          "0 0.500000 0.500000 1.000000 1.000000"]
    assert (tmp_path / "classes.txt").read_text() == "a\nb\n"


def test_score_column_is_optional(tmp_path):
    r = result([[20, 10, 60, 50]], [0], [0.91234])
    write_yolo(r, tmp_path / "a.txt", scores=True)
    assert (tmp_path / "a.txt").read_text() == "0 0.200000 0.300000 0.200000 0.400000 0.91234\n"  # the float32, in full


def test_empty_image_writes_an_empty_label_file(tmp_path):
    write_yolo(result([], []), tmp_path / "a.txt")
    assert (tmp_path / "a.txt").read_text() == ""
    assert (tmp_path / "classes.txt").read_text() == "product\n"


def test_several_images_keep_one_consistent_classes_file(tmp_path):
    write_yolo(result([[0, 0, 10, 10]], [0], names=("shelf",)), tmp_path / "a.txt")
    mtime = (tmp_path / "classes.txt").stat().st_mtime_ns
    write_yolo(result([[0, 0, 10, 10]], [0], names=("shelf",)), tmp_path / "b.txt")
    assert (tmp_path / "classes.txt").stat().st_mtime_ns == mtime  # unchanged: not rewritten
    # a label past the model's names gets its number as a name, and extends the file
    write_yolo(result([[0, 0, 10, 10]], [2], names=("shelf",)), tmp_path / "c.txt")
    assert (tmp_path / "classes.txt").read_text() == "shelf\n1\n2\n"
    write_yolo(result([[0, 0, 10, 10]], [0], names=("shelf",)), tmp_path / "d.txt")
    assert (tmp_path / "classes.txt").read_text() == "shelf\n1\n2\n"  # never shrinks


def test_contradicting_names_are_refused_and_nothing_is_written(tmp_path):
    write_yolo(result([[0, 0, 10, 10]], [0], names=("shelf",)), tmp_path / "a.txt")
    with pytest.raises(InvalidInputError, match="names class 0 'shelf' but this model calls it 'product'"):
        write_yolo(result([[0, 0, 10, 10]], [0], names=("product",)), tmp_path / "b.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "classes.txt"]


def test_a_label_far_past_the_names_is_refused_not_listed_class_by_class(tmp_path):
    # classes.txt lists every class up to the largest label: 2**31 - 1 ran the machine out of memory
    from densedet_tile.io import YOLO_MAX_CLASSES

    with pytest.raises(InvalidInputError, match="class label 2147483647 is past the model's 1 class names"):
        write_yolo(result([[0, 0, 10, 10]], [2**31 - 1]), tmp_path / "a.txt")
    assert list(tmp_path.iterdir()) == []
    write_yolo(result([[0, 0, 10, 10]], [YOLO_MAX_CLASSES - 1]), tmp_path / "b.txt")  # the longest list kept
    assert len((tmp_path / "classes.txt").read_text().splitlines()) == YOLO_MAX_CLASSES


def test_an_image_called_classes_cannot_clobber_the_class_list(tmp_path):
    with pytest.raises(InvalidInputError, match="rename the image"):
        write_yolo(result([[0, 0, 10, 10]], [0], name="classes.jpg"), tmp_path / "classes.txt")


def test_process_image_writes_labels_with_the_other_outputs(tmp_path):
    from PIL import Image

    img = tmp_path / "shelf.png"
    Image.fromarray(blob_image(300, 500, (100, 60, 200, 120))).save(img)
    out = tmp_path / "out"
    job = Job(tiling=dt.TileSpec(tile=256), formats=("json", "yolo"), yolo_scores=True)
    outcome = process_image(img, BlobDetector(), job, out)
    assert outcome.status == "ok"
    assert sorted(p.name for p in out.iterdir()) == ["classes.txt", "shelf.detections.json", "shelf.txt"]
    cls, cx, cy, w, h, s = (out / "shelf.txt").read_text().split()
    assert cls == "0" and float(s) == pytest.approx(0.9)
    np.testing.assert_allclose([float(v) for v in (cx, cy, w, h)], [150 / 500, 90 / 300, 100 / 500, 60 / 300], atol=1e-5)


def test_yolo_scores_without_the_yolo_format_is_refused_not_ignored():
    from densedet_tile.runner import Job

    with pytest.raises(InvalidInputError, match=r"yolo_scores \(--yolo-scores\) needs the yolo format"):
        Job(formats=("json", "csv"), yolo_scores=True)
    assert Job(formats=("json", "yolo"), yolo_scores=True).yolo_scores


def test_a_classes_file_with_a_byte_order_mark_or_not_utf8_is_told_plainly(tmp_path):
    # Notepad's byte-order mark made class 0 "\ufeffproduct" and every image was refused as
    # naming it otherwise; a Latin-1 file failed each image with a bare UnicodeDecodeError
    (tmp_path / "classes.txt").write_bytes(b"\xef\xbb\xbfproduct\r\n")
    write_yolo(result([[20, 10, 60, 50]], [0]), tmp_path / "a.txt")
    assert (tmp_path / "a.txt").is_file()
    (tmp_path / "classes.txt").write_bytes(b"caf\xe9\nbottle\n")
    with pytest.raises(InvalidInputError, match=r"classes\.txt: not UTF-8 text .*fix it or move it away"):
        write_yolo(result([[20, 10, 60, 50]], [0]), tmp_path / "b.txt")
    assert not (tmp_path / "b.txt").exists()
