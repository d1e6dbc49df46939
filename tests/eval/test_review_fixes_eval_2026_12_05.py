"""Ground truth and predictions an outside review of 2026-12-05 found read wrongly: COCO images
sharing an id, and a CSV with not even a header."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.formats import read_ground_truth, read_predictions


def _coco(images: list[dict]) -> dict:
    return {"images": images,
            "annotations": [{"id": 1, "image_id": 1, "bbox": [10, 10, 50, 80], "category_id": 1, "iscrowd": 0}],
            "categories": [{"id": 1, "name": "product"}]}


@pytest.mark.parametrize("first", ["shelf.jpg", "other.jpg"])
def test_two_coco_images_with_one_id_are_refused(first: str, tmp_path: Path) -> None:
    # two datasets merged without renumbering: before, the later image took the id and the
    # earlier one vanished (or predictions for it were refused as of an unknown image)
    second = "other.jpg" if first == "shelf.jpg" else "shelf.jpg"
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_coco([{"id": 1, "file_name": first, "width": 800, "height": 600},
                                    {"id": 1, "file_name": second, "width": 800, "height": 600}])))
    with pytest.raises(InvalidInputError, match=r"gt\.json: two images have id 1; COCO ids must be unique"):
        read_ground_truth(gt)


def test_two_coco_categories_with_one_id_are_refused(tmp_path: Path) -> None:
    data = _coco([{"id": 1, "file_name": "shelf.jpg", "width": 800, "height": 600}])
    data["categories"].append({"id": 1, "name": "price tag"})
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(data))
    with pytest.raises(InvalidInputError, match="two categories have id 1"):
        read_ground_truth(gt)


@pytest.mark.parametrize("text", ["", "\n\n", "\r\n"])
def test_a_csv_without_even_a_header_is_refused(text: str, tmp_path: Path) -> None:
    f = tmp_path / "dets.csv"
    f.write_text(text, newline="")
    for read in (read_predictions, read_ground_truth):
        with pytest.raises(InvalidInputError, match=r"dets\.csv: the file is empty"):
            read(f)


def test_a_csv_with_only_its_header_is_a_run_that_found_nothing(tmp_path: Path) -> None:
    f = tmp_path / "dets.csv"
    f.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n")
    assert read_predictions(f).images == {}


def _one_image():
    import numpy as np

    from densedet_tile.eval import EvalImage

    g = np.array([[0, 0, 10, 10.0], [0, 0, 200, 200]])
    return EvalImage("im", g, [1, 1], g[:1], [0.9], [1])


@pytest.mark.parametrize("ranges", [{}, {"small": (0, 1024), "large": (9216, 1e10)}])
def test_area_ranges_without_all_are_refused(ranges) -> None:
    # before: an empty set divided by zero, and without "all" AP was silently the first range's
    # (1.0 here, where the true AP is 0.505)
    from densedet_tile.eval import evaluate_boxes

    with pytest.raises(InvalidInputError, match="area_ranges must include 'all'"):
        evaluate_boxes([_one_image()], area_ranges=ranges)


def test_coco_stats_of_custom_ranges_says_which_are_missing() -> None:
    from densedet_tile.eval import evaluate_boxes

    m = evaluate_boxes([_one_image()], area_ranges={"all": (0, 1e10)})
    assert m.stats["AP"] == pytest.approx(0.50495, abs=1e-4)
    with pytest.raises(InvalidInputError, match="needs the area ranges small, medium and large"):
        m.coco_stats()  # (a KeyError before)


@pytest.mark.parametrize("chunk", [2.5, 0, True, "4"])
def test_chunk_elems_must_be_a_positive_integer(chunk) -> None:
    from densedet_tile.eval import evaluate_boxes

    with pytest.raises(InvalidInputError, match="chunk_elems must be a positive integer"):
        evaluate_boxes([_one_image()], chunk_elems=chunk)


def _gt_with_ann_ids(ids: list) -> dict:
    return {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "categories": [{"id": 1, "name": "x"}],
            "annotations": [{"id": i, "image_id": 1, "category_id": 1, "bbox": [10 + 40 * k, 10, 20, 20], "area": 400,
                             "iscrowd": 0} for k, i in enumerate(ids)]}


def test_two_coco_annotations_with_one_id_are_refused(tmp_path: Path) -> None:
    # pycocotools indexes annotations by id: it kept one twice and lost the other (AP 0.25
    # there, 1.0 here, without a word)
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(_gt_with_ann_ids([5, 5])))
    with pytest.raises(InvalidInputError, match=r"gt.json: two annotations have id 5; give each its own id"):
        read_ground_truth(p)
    p.write_text(json.dumps(_gt_with_ann_ids([5, 6])))
    assert len(read_ground_truth(p).images["a.jpg"].xyxy) == 2


def test_an_annotation_of_id_0_is_said_to_differ_from_pycocotools(tmp_path: Path, caplog) -> None:
    p = tmp_path / "gt.json"
    p.write_text(json.dumps(_gt_with_ann_ids([0, 1])))
    with caplog.at_level("WARNING", logger="densedet_tile"):
        gt = read_ground_truth(p)
    assert "an annotation has id 0, which pycocotools never matches" in caplog.text
    assert len(gt.images["a.jpg"].xyxy) == 2


def test_csvs_joined_with_their_headers_read_as_one(tmp_path: Path) -> None:
    # `cat out/*.detections.csv > all.csv` repeats each file's header: it was "line 3:
    # coordinates must be numbers, got 'x1'"
    head = "image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
    p = tmp_path / "all.csv"
    p.write_text(head + "a.jpg,1,2,30,40,product,100,80,0.9\n" + head + "b.jpg,5,6,20,30,product,90,70,0.8\n"
                 "b.jpg,25,6,40,30,product,90,70,0.7\n")
    got = read_predictions(p)
    assert sorted(got.images) == ["a.jpg", "b.jpg"]
    assert got.images["b.jpg"].xyxy.tolist() == [[5, 6, 20, 30], [25, 6, 40, 30]]
    # a line that only looks like the header is still a bad record
    p.write_text(head + "a.jpg,1,2,30,40,product,100,80,0.9\n" + head.replace("x1", "x_1"))
    with pytest.raises(InvalidInputError, match="line 3"):
        read_predictions(p)


def test_a_results_image_id_written_as_text_of_a_numeric_ground_truth_id_gets_a_hint(tmp_path: Path) -> None:
    from densedet_tile.eval.compare import pair_images

    gtp, resp = tmp_path / "gt.json", tmp_path / "res.json"
    gtp.write_text(json.dumps(_gt_with_ann_ids([1])))
    resp.write_text(json.dumps([{"image_id": "1", "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9}]))
    gt = read_ground_truth(gtp)
    with pytest.raises(InvalidInputError, match=r'predictions for image 1, .*has an image of id 1, a number: a '
                                                r'result\'s image_id "1" is text'):
        pair_images(gt, read_predictions(resp, gt=gt))


def test_a_folder_of_yolo_labels_scores_as_the_same_boxes_in_a_csv(tmp_path: Path) -> None:
    # `--format yolo` writes them and the audit reads them; eval refused the folder
    from densedet_tile.eval import evaluate_boxes
    from densedet_tile.eval.compare import pair_images

    gtp = tmp_path / "gt.csv"
    gtp.write_text("a.jpg,10,20,50,80,product,200,100\nb.png,0,0,40,40,product,80,160\n")
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "classes.txt").write_text("product\n")
    # a.jpg: one good box and one off; b.png: one good box (normalised to each image's size)
    (labels / "a.txt").write_text("0 0.15 0.5 0.2 0.6 0.9\n0 0.8 0.5 0.1 0.2 0.95\n")
    (labels / "b.txt").write_text("0 0.25 0.125 0.5 0.25 0.8\n")
    csvp = tmp_path / "pred.csv"
    csvp.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height,score\n"
                    "a.jpg,10,20,50,80,product,200,100,0.9\na.jpg,150,40,170,60,product,200,100,0.95\n"
                    "b.png,0,0,40,40,product,80,160,0.8\n")
    gt = read_ground_truth(gtp)
    yolo = read_predictions(labels, gt=gt)
    assert yolo.scored and sorted(yolo.images) == ["a.jpg", "b.png"]
    np.testing.assert_allclose(yolo.images["a.jpg"].xyxy, [[10, 20, 50, 80], [150, 40, 170, 60]])
    a = evaluate_boxes(pair_images(gt, yolo)[0]).coco_stats()
    b = evaluate_boxes(pair_images(gt, read_predictions(csvp, gt=gt))[0]).coco_stats()
    np.testing.assert_allclose(a, b, atol=1e-12)
    # labels of an image the ground truth lacks, or without the ground truth's sizes: one line
    (labels / "c.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.raises(InvalidInputError, match=r"c.txt: labels of image c, which is not in the ground truth"):
        read_predictions(labels, gt=gt)
    with pytest.raises(InvalidInputError, match="YOLO labels are normalised to their images"):
        read_predictions(labels)


def test_coco_images_of_one_name_in_two_folders_are_told_apart_by_path(tmp_path: Path) -> None:
    # train/a.jpg and val/a.jpg were refused ("two images are named a.jpg"), though results by
    # image id tell them apart exactly, as pycocotools does
    from densedet_tile.eval import evaluate_boxes
    from densedet_tile.eval.compare import pair_images

    gt_doc = {"images": [{"id": 1, "file_name": "train/a.jpg", "width": 100, "height": 100},
                         {"id": 2, "file_name": "val\\a.jpg", "width": 100, "height": 100},
                         {"id": 3, "file_name": "b.jpg", "width": 100, "height": 100}],
              "categories": [{"id": 1, "name": "x"}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
                              {"id": 2, "image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20]},
                              {"id": 3, "image_id": 3, "category_id": 1, "bbox": [5, 5, 20, 20]}]}
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps(gt_doc))
    gt = read_ground_truth(gtp)
    assert list(gt.images) == ["train/a.jpg", "val/a.jpg", "b.jpg"]
    res = [{"image_id": 2, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.9},
           {"image_id": "train/a.jpg", "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.8},
           {"image_id": "b.jpg", "category_id": 1, "bbox": [5, 5, 20, 20], "score": 0.7}]
    resp = tmp_path / "res.json"
    resp.write_text(json.dumps(res))
    pairs, _ = pair_images(gt, read_predictions(resp, gt=gt))
    assert evaluate_boxes(pairs).coco_stats()[0] == pytest.approx(1.0)
    # by the file name alone it is either image: refused, saying why
    resp.write_text(json.dumps([{"image_id": "a.jpg", "category_id": 1, "bbox": [1, 1, 5, 5], "score": 0.5}]))
    with pytest.raises(InvalidInputError, match=r"2 images named a.jpg in different folders \(train/a.jpg, val/a.jpg\)"):
        pair_images(gt, read_predictions(resp, gt=gt))


def test_the_table_has_a_seconds_column_only_for_timed_runs() -> None:
    from densedet_tile.cli.eval import format_table

    stats = {"AP": 0.5, "AP50": 0.7, "AP75": 0.4, "AR@100": 0.6}
    plain = format_table([("preds.csv", stats, None)], 100).splitlines()
    assert plain[0].split() == ["run", "AP", "AP50", "AP75", "AR@100"] and plain[1].split()[-1] == "0.6000"
    timed = format_table([("tiled", stats, 1.5), ("untiled", stats, 0.25)], 100).splitlines()
    assert timed[0].split()[-1] == "seconds" and timed[2].split()[-1] == "0.25"


def test_a_bare_name_beside_the_same_name_in_a_folder_is_refused(tmp_path: Path) -> None:
    # a.jpg and train/a.jpg: a prediction named a.jpg (our JSON names images by file name) could
    # be either, and landed on the first silently
    gtp = tmp_path / "gt.json"
    gtp.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 50},
                                          {"id": 2, "file_name": "train/a.jpg", "width": 50, "height": 50}],
                               "categories": [{"id": 1, "name": "x"}], "annotations": []}))
    with pytest.raises(InvalidInputError, match=r"gt.json: two images are named a.jpg \(one of them in no folder\)"):
        read_ground_truth(gtp)


def test_class_agnostic_given_against_one_coco_class_leaves_out_other_categories(tmp_path: Path) -> None:
    # pycocotools' useCats=0 takes the ground truth's categories only, with one class as with many
    from densedet_tile.eval import evaluate_boxes
    from densedet_tile.eval.compare import pair_images

    gtp, resp = tmp_path / "gt.json", tmp_path / "res.json"
    gtp.write_text(json.dumps(_gt_with_ann_ids([1, 2])))
    res = [{"image_id": 1, "category_id": 7, "bbox": [0, 0, 5, 5], "score": 0.95},
           {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
           {"image_id": 1, "category_id": 1, "bbox": [50, 10, 20, 20], "score": 0.8}]
    resp.write_text(json.dumps(res))
    gt = read_ground_truth(gtp)
    pairs, notes = pair_images(gt, read_predictions(resp, gt=gt), class_agnostic=True)
    assert "1 prediction has a class the ground truth does not know and was not scored" in notes
    assert evaluate_boxes(pairs).coco_stats()[0] == pytest.approx(1.0)
