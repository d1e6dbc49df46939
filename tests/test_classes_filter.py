"""RunSpec.classes / --classes: only the classes asked for are kept, before the merge."""

import json

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile import InvalidInputError, MergeSpec, RunSpec
from densedet_tile.detector.base import class_ids
from fakes import BlobDetector, ColourDetector, colour_image, make_colours, run_cli

#: a red and a green product side by side, the green one across the seam of 256 px tiles
IMG = colour_image(300, 700, red=(40, 60, 140, 200), green=(200, 80, 330, 220))


def _only(d: dt.Detections, label: int) -> dt.Detections:
    return d[d.labels == label]


@pytest.mark.parametrize("classes, label", [(["green"], 1), ("green", 1), ([1], 1), (1, 1), (["1"], 1),
                                            (("red",), 0), ([0], 0)])
def test_kept_class_equals_the_full_run_filtered(classes, label):
    full = dt.detect_image(IMG, ColourDetector(), tile=256, overlap=0.2)
    assert sorted(set(full.detections.labels.tolist())) == [0, 1]
    kept = dt.detect_image(IMG, ColourDetector(), tile=256, overlap=0.2, classes=classes)
    want = _only(full.detections, label)
    assert len(want) == 1 and set(kept.detections.labels.tolist()) == {label}
    np.testing.assert_array_equal(kept.detections.xyxy, want.xyxy)
    np.testing.assert_array_equal(kept.detections.scores, want.scores)
    assert kept.settings["classes"] == (label,)
    assert full.settings["classes"] is None


def test_both_classes_by_name_and_id_keep_everything():
    full = dt.detect(IMG, ColourDetector(), tile=256)
    both = dt.detect(IMG, ColourDetector(), tile=256, classes=["green", 0, "green"])
    np.testing.assert_array_equal(both.xyxy, full.xyxy)


def test_dropped_class_neither_fuses_nor_suppresses_a_kept_one():
    # the green product stands inside the red one: merged across classes they are one box
    img = colour_image(300, 700, red=(100, 50, 400, 250), green=(120, 70, 380, 240))
    agnostic = MergeSpec(class_agnostic=True)
    mixed = dt.detect(img, ColourDetector(), tile=256, merge=agnostic)
    assert len(mixed) == 1 and mixed.labels[0] == 0  # the red box won
    kept = dt.detect(img, ColourDetector(), tile=256, merge=agnostic, classes=["green"])
    alone = dt.detect(colour_image(300, 700, red=(0, 0, 0, 0), green=(120, 70, 380, 240)), ColourDetector(),
                      tile=256, merge=agnostic)
    assert len(kept) == 1 and kept.labels[0] == 1
    np.testing.assert_allclose(kept.xyxy, alone.xyxy)


@pytest.mark.parametrize("classes, words", [
    (["cup"], ["no class 'cup'", "red, green"]),
    ([2], ["no class id 2", "ids 0 to 1"]),
    (["2"], ["no class id 2"]),
])
def test_a_class_the_detector_lacks_is_refused_naming_its_classes(classes, words):
    with pytest.raises(InvalidInputError) as err:
        dt.detect(IMG, ColourDetector(), tile=256, classes=classes)
    for w in words:
        assert w in str(err.value)


def test_names_need_a_detector_that_declares_them():
    img = np.zeros((200, 200, 3), np.uint8)
    img[50:100, 50:100] = 255
    with pytest.raises(InvalidInputError, match="declares no class names"):
        dt.detect(img, BlobDetector(), tile=256, classes=["product"])
    assert len(dt.detect(img, BlobDetector(), tile=256, classes=[0])) == 1
    assert len(dt.detect(img, BlobDetector(), tile=256, classes=[3])) == 0  # no names: any id may be asked


@pytest.mark.parametrize("bad", [[], "", [" "], [True], [-1], [1.5], 2.0, [None]])
def test_malformed_classes_are_refused_by_the_spec(bad):
    with pytest.raises(InvalidInputError, match="class"):
        RunSpec(classes=bad)


def test_spec_keeps_the_order_given_once_and_is_hashable():
    spec = RunSpec(classes=["green", np.int64(0), "green", " red "])
    assert spec.classes == ("green", 0, "red")
    assert hash(spec) == hash(RunSpec(classes=("green", 0, "red")))
    assert class_ids(spec.classes, ("red", "green"), "x") == (0, 1)


def test_cli_keeps_the_classes_asked_for_and_refuses_unknown_ones(tmp_path):
    from PIL import Image

    Image.fromarray(IMG).save(tmp_path / "two.png")
    fakes = f"{make_colours.__module__}:make_colours"
    r = run_cli("two.png", "--detector", fakes, "--classes", "green", "--out", "o", "--format", "json,csv", "-q",
                "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "o" / "two.detections.json").read_text())
    assert doc["settings"]["classes"] == [1]
    assert doc["labels"] == [1]
    r = run_cli("two.png", "--detector", fakes, "--classes", "green,cup", "--out", "bad", "-q", "--device", "cpu",
                cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no class 'cup'" in r.stderr and "red, green" in r.stderr
    assert not (tmp_path / "bad").exists()
    r = run_cli("two.png", "--detector", fakes, "--classes", " , ", "--out", "bad", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "--classes" in r.stderr and not (tmp_path / "bad").exists()


def test_a_rerun_with_other_classes_is_not_taken_for_done(tmp_path):
    from PIL import Image

    from densedet_tile.batch import run_batch
    from densedet_tile.runner import Job

    (tmp_path / "in").mkdir()
    Image.fromarray(IMG).save(tmp_path / "in" / "two.png")

    def once(classes):
        job = Job(tiling=dt.TileSpec(tile=256), run=RunSpec(classes=classes))
        return run_batch([tmp_path / "in"], tmp_path / "o", detector=ColourDetector(), job=job)

    s1, s2, s3 = once(["red"]), once(["red"]), once(["green"])
    assert (s1.ok, s2.ok, s2.count("skipped"), s3.ok) == (1, 0, 1, 1)
    doc = json.loads((tmp_path / "o" / "two.detections.json").read_text())
    assert doc["labels"] == [1]


def test_audit_counts_only_the_classes_asked_for_and_refuses_them_on_boxes_read(tmp_path):
    from PIL import Image

    Image.fromarray(IMG).save(tmp_path / "two.png")
    counts = {}
    for name, extra in (("both", []), ("red", ["--classes", "red"])):
        r = run_cli("audit", "two.png", "--detector", "fakes:make_colours", *extra, "--out", name, "-q",
                    "--device", "cpu", cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        counts[name] = json.loads((tmp_path / name / "two.audit.json").read_text())["summary"]["products"]
    assert counts == {"both": 2, "red": 1}
    # boxes read from a file were filtered (or not) where they were made
    r = run_cli("two.png", "--detector", "fakes:make_colours", "--out", "d", "-q",
                "--device", "cpu", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run_cli("audit", "d/two.detections.json", "--classes", "red", "--out", "x", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "--classes" in r.stderr and not (tmp_path / "x").exists()


class _TallAndShort:
    """Class 0 ("tall"): 12 boxes 0.4 of the tile high; class 1 ("short"): 12 boxes 0.08 high;
    all well inside the tile, wherever it is."""

    name = "tall-and-short"
    class_names = ("tall", "short")
    input_size = 320
    product_size = 40.0  # (tile auto measures for a detector that declares one)

    def predict(self, tiles):
        out = []
        for t in tiles:
            h, w = t.shape[:2]
            xs = np.linspace(0.05, 0.85, 12) * w
            tall = np.stack([xs, np.full(12, 0.1 * h), xs + 0.05 * w, np.full(12, 0.5 * h)], 1)
            short = np.stack([xs, np.full(12, 0.7 * h), xs + 0.05 * w, np.full(12, 0.78 * h)], 1)
            out.append(dt.Detections(np.concatenate([tall, short]).astype(np.float32), np.full(24, 0.9),
                                     np.repeat([0, 1], 12)))
        return out


def test_tile_auto_measures_only_the_classes_kept():
    img = np.full((2000, 3000, 3), 90, np.uint8)
    shares = {}
    for cls in ("tall", "short"):
        r = dt.detect_image(img, _TallAndShort(), tile="auto", classes=[cls])
        # each probe's median box, over its window's height: only the kept class's boxes
        # (0.4 of it tall, or 0.08); both classes' would give 0.24
        shares[cls] = {round(p["median_px"] / (2000 if p.get("whole") else p["window"]), 2)
                       for p in r.settings["scale"]["probes"] if "median_px" in p}
        assert set(r.detections.labels.tolist()) <= {_TallAndShort.class_names.index(cls)}
    assert shares == {"tall": {0.4}, "short": {0.08}}


def test_a_name_given_to_several_classes_keeps_them_all():
    assert class_ids(["product"], ("product", "product", "tag"), "x") == (0, 1)
    assert class_ids(["tag", 0], ("product", "product", "tag"), "x") == (0, 2)


def _two_class_set(tmp_path):
    """A folder with one image of a red and a green product, and its two-class ground truth."""
    from PIL import Image

    (tmp_path / "imgs").mkdir()
    Image.fromarray(IMG).save(tmp_path / "imgs" / "shelf.png")
    gt = tmp_path / "gt.csv"
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                  "shelf.png,40,60,140,200,red,700,300\n"
                  "shelf.png,200,80,330,220,green,700,300\n")
    return tmp_path / "imgs", gt


@pytest.mark.parametrize("kept", ["green", "1"])
def test_eval_compare_with_classes_scores_them_against_their_own_ground_truth(tmp_path, capsys, kept):
    # the red box is dropped by --classes: the red ground truth must go too, or half the
    # ground truth counts as missed (AP 0.5 for a perfect detector of the classes kept)
    from densedet_tile.cli.eval import eval_main

    imgs, gt = _two_class_set(tmp_path)
    out = tmp_path / "m.json"
    assert eval_main([str(imgs), str(gt), "--compare", "--detector", "fakes:make_colours", "--tile", "256",
                      "--classes", kept, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"classes {kept} only: 1 ground-truth box of them" in said
    doc = json.loads(out.read_text())
    assert doc["settings"]["classes"] == [kept]
    assert [r["metrics"]["AP"] for r in doc["runs"]] == [pytest.approx(1.0), pytest.approx(1.0)]
    # all classes: both boxes found, both counted
    assert eval_main([str(imgs), str(gt), "--compare", "--detector", "fakes:make_colours", "--tile", "256",
                      "-o", str(out)]) == 0
    assert [r["metrics"]["AP"] for r in json.loads(out.read_text())["runs"]] == [pytest.approx(1.0)] * 2


def test_eval_compare_library_cuts_the_ground_truth_to_the_kept_classes(tmp_path):
    from densedet_tile.eval.compare import compare_tiled_untiled
    from densedet_tile.eval.formats import read_ground_truth

    imgs, gt_file = _two_class_set(tmp_path)
    gt = read_ground_truth(gt_file)
    runs = compare_tiled_untiled([imgs / "shelf.png"], gt, ColourDetector(), tiling=dt.TileSpec(tile=256, overlap=0.2),
                                 run=RunSpec(classes=["red"]))
    assert [(r.metrics.num_gt, r.metrics.num_dt) for r in runs] == [(1, 1), (1, 1)]
    assert [r.metrics.stats["AP"] for r in runs] == [pytest.approx(1.0)] * 2
    assert sorted(str(c) for im in gt.images.values() for c in im.classes) == ["green", "red"]  # not changed


def test_eval_compare_refuses_classes_the_ground_truth_lacks(tmp_path, capsys):
    from densedet_tile.cli.eval import eval_main

    imgs, gt = _two_class_set(tmp_path)
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                  "shelf.png,40,60,140,200,red,700,300\n"
                  "shelf.png,200,80,330,220,blue,700,300\n")
    assert eval_main([str(imgs), str(gt), "--compare", "--detector", "fakes:make_colours", "--tile", "256",
                      "--classes", "green"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has none of green" in err[0] and "red, blue" in err[0]


def test_eval_compare_one_class_ground_truth_takes_every_kept_class_as_its_own(tmp_path):
    from densedet_tile.eval.compare import compare_tiled_untiled
    from densedet_tile.eval.formats import read_ground_truth

    imgs, gt_file = _two_class_set(tmp_path)
    gt_file.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                       "shelf.png,200,80,330,220,object,700,300\n")
    runs = compare_tiled_untiled([imgs / "shelf.png"], read_ground_truth(gt_file), ColourDetector(),
                                 tiling=dt.TileSpec(tile=256, overlap=0.2), run=RunSpec(classes=["green"]))
    assert [r.metrics.stats["AP"] for r in runs] == [pytest.approx(1.0)] * 2


def test_the_same_classes_spelled_in_another_order_are_the_same_request():
    from densedet_tile.runner import Job, request_key

    a = request_key(Job(run=RunSpec(classes=["red", "green"])))
    b = request_key(Job(run=RunSpec(classes=["green", "red", "green"])))
    c = request_key(Job(run=RunSpec(classes=["green"])))
    assert a == b != c
    assert "classes" not in request_key(Job())["run"]  # results made before the option still stand


def test_eval_compare_keeps_classes_matched_by_name_when_one_is_left(tmp_path):
    # ground truth red and blue, the run keeps red and green: green is not the ground truth's
    # only class left (red) and is left out of the score, not counted as a false red
    from densedet_tile.eval.compare import compare_tiled_untiled
    from densedet_tile.eval.formats import read_ground_truth

    imgs, gt_file = _two_class_set(tmp_path)
    gt_file.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                       "shelf.png,40,60,140,200,red,700,300\n"
                       "shelf.png,500,10,600,100,blue,700,300\n")
    runs = compare_tiled_untiled([imgs / "shelf.png"], read_ground_truth(gt_file), ColourDetector(),
                                 tiling=dt.TileSpec(tile=256, overlap=0.2), run=RunSpec(classes=["red", "green"]))
    assert [(r.metrics.num_gt, r.metrics.num_dt) for r in runs] == [(1, 1), (1, 1)]


def test_eval_compare_refuses_missing_classes_before_running_any_image(tmp_path):
    from densedet_tile.eval.compare import compare_tiled_untiled
    from densedet_tile.eval.formats import read_ground_truth

    class Counting(ColourDetector):
        calls = 0

        def predict(self, tiles):
            Counting.calls += 1
            return super().predict(tiles)

    imgs, gt_file = _two_class_set(tmp_path)
    gt_file.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n"
                       "shelf.png,40,60,140,200,red,700,300\n"
                       "shelf.png,500,10,600,100,blue,700,300\n")
    with pytest.raises(InvalidInputError, match="has none of green"):
        compare_tiled_untiled([imgs / "shelf.png"], read_ground_truth(gt_file), Counting(),
                              tiling=dt.TileSpec(tile=256), run=RunSpec(classes=["green"]))
    assert Counting.calls == 0


def test_eval_compare_classes_cut_the_ground_truth_class_agnostic_too(tmp_path):
    from densedet_tile.eval.compare import compare_tiled_untiled
    from densedet_tile.eval.formats import read_ground_truth

    imgs, gt_file = _two_class_set(tmp_path)
    runs = compare_tiled_untiled([imgs / "shelf.png"], read_ground_truth(gt_file), ColourDetector(),
                                 tiling=dt.TileSpec(tile=256, overlap=0.2), run=RunSpec(classes=["green"]),
                                 class_agnostic=True)
    assert [(r.metrics.num_gt, r.metrics.stats["AP"]) for r in runs] == [(1, pytest.approx(1.0))] * 2
