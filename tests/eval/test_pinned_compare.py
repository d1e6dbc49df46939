"""Behaviour of densedet_tile.eval.compare the suite did not pin (found by mutation testing)."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile import Detections
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.compare import pair_images
from densedet_tile.eval.formats import BoxSet, ImageBoxes


def _im(name, w, h, n=1):
    xyxy = np.tile([[1.0, 1.0, 20.0, 20.0]], (n, 1))
    return ImageBoxes(name, w, h, xyxy, np.ones(n), np.array(["product"] * n, dtype=object))


def test_an_image_whose_height_differs_between_gt_and_predictions_is_refused():
    gt = BoxSet(images={"a.jpg": _im("a.jpg", 100, 50)}, categories=["product"], source="gt.csv", kind="csv")
    same_w = BoxSet(images={"a.jpg": _im("a.jpg", 100, 60)}, source="pred.csv", kind="csv")
    with pytest.raises(InvalidInputError, match="100x60 in the predictions but 100x50"):
        pair_images(gt, same_w)
    pairs, _ = pair_images(gt, same_w, check_sizes=False)  # --ignore-size: evaluated anyway
    assert len(pairs) == 1


def test_compare_refuses_an_image_the_ground_truth_does_not_name_before_any_detector_pass(tmp_path):
    # an outside review: both passes ran over every image, then the pairing refused the run,
    # speaking of "predictions" the caller never gave
    from PIL import Image

    from densedet_tile.eval.compare import compare_tiled_untiled

    calls = []

    class Counting:
        def predict(self, tiles):
            calls.append(len(tiles))
            return [Detections.empty() for _ in tiles]

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((60, 90, 3), np.uint8)).save(tmp_path / name)
    gt = BoxSet(images={"a.png": _im("a.png", 90, 60)}, categories=["product"], source="gt.csv", kind="csv")
    with pytest.raises(InvalidInputError, match=r"b\.png: not in the ground truth gt\.csv"):
        compare_tiled_untiled([tmp_path / "a.png", tmp_path / "b.png"], gt, Counting())
    assert calls == []
