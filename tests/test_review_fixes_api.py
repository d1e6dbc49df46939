"""Library calls given bad arguments raise the package's one-line errors naming the problem
(an outside review of the API, 2026-12-02)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densedet_tile.audit import run_audit
from densedet_tile.audit.bays import find_bays
from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.coco import EvalImage, evaluate_boxes
from densedet_tile.io import TMP_SUFFIX, atomic_write

BOX = np.array([[10.0, 10.0, 50.0, 90.0]])


@pytest.mark.parametrize("width", [float("nan"), float("inf"), None, [1000], 1000.7, "1000", True, 0, -5])
def test_run_audit_refuses_an_image_size_that_is_not_whole_pixels(width) -> None:
    with pytest.raises(InvalidInputError, match="image size must be positive integers"):
        run_audit(BOX, width, 800)


def test_run_audit_takes_integers_of_any_kind() -> None:
    for width in (1000, np.int64(1000), 1000.0):
        assert run_audit(BOX, width, 800).width == 1000


def test_find_bays_refuses_non_finite_boxes_however_few() -> None:
    for n in (1, 5, 40):
        boxes = np.tile(BOX, (n, 1)) + np.arange(n)[:, None] * [60.0, 0, 60.0, 0]
        boxes[0, 0] = np.nan
        with pytest.raises(InvalidInputError, match="finite"):
            find_bays(boxes)


def test_eval_inputs_that_are_not_numbers_are_named() -> None:
    g = np.array([[0.0, 0.0, 10.0, 10.0]])
    base = dict(name="img7", gt_xyxy=g, gt_labels=[0], dt_xyxy=g, dt_scores=[0.5], dt_labels=[0])
    for key, value, what in (("dt_scores", ["x"], "scores"), ("dt_scores", None, "scores"), ("gt_area", ["a"], "areas")):
        with pytest.raises(InvalidInputError, match=f"img7: {what}: expected numbers"):
            EvalImage(**{**base, key: value})
    im = EvalImage(**base)
    with pytest.raises(InvalidInputError, match="area_ranges"):
        evaluate_boxes([im], area_ranges={"all": (0,)})
    with pytest.raises(InvalidInputError, match="EvalImage items, got dict"):
        evaluate_boxes([{"a": 1}])


def test_a_failed_write_names_the_file_asked_for_not_its_temporary(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "a.json"  # its folder is a file
    with pytest.raises(OSError) as info:
        atomic_write(target, "{}")
    assert str(target) in str(info.value) and TMP_SUFFIX not in str(info.value)
