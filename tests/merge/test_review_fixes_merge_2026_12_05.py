"""The merge functions on inputs an outside review of the Python API (2026-12-05) found answered
by numpy from deep inside, or fused wrongly."""

from __future__ import annotations

import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import nms, weighted_box_fusion


@pytest.mark.parametrize(("call", "said"), [
    (lambda: nms([[0, 0, 1], [0, 0, 1, 1]], [1, 1], 0.5), "xyxy: expected boxes of shape (N, 4) of numbers"),
    (lambda: nms([["a", 0, 1, 1]], [1], 0.5), "xyxy: expected boxes of shape (N, 4) of numbers"),
    (lambda: nms([[0, 0, 1, 1]] * 3, ["a", "b", "c"], 0.5), "nms: scores must be numbers"),
    (lambda: weighted_box_fusion([[0, 0, 1, 1]], [[1, 2], [3]], groups=[0], iou_thr=0.5),
     "weighted_box_fusion: scores must be numbers"),
    (lambda: nms([[0, 0, 1, 1]], [1, 2], 0.5), "nms: 1 boxes but 2 scores"),
])
def test_ragged_or_text_input_is_one_line(call, said: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        call()
    assert said in str(info.value)


def test_weighted_fusion_refuses_negative_scores() -> None:
    # a negative weight flipped the fused box: [0, 0, 10, 10] at 0.5 and [0, 0, 12, 12] at -0.45
    # fused to [0, 0, -8, -8]
    with pytest.raises(InvalidInputError, match="scores must be >= 0"):
        weighted_box_fusion([[0, 0, 10, 10], [0, 0, 12, 12]], [0.5, -0.45], groups=[0, 1], iou_thr=0.5)
    fused = weighted_box_fusion([[0, 0, 10, 10], [0, 0, 12, 12]], [0.5, 0.0], groups=[0, 1], iou_thr=0.5)
    assert fused.xyxy.tolist() == [[0.0, 0.0, 10.0, 10.0]]  # a zero score weighs nothing
