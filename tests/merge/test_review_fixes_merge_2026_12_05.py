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


def test_weighted_fusion_refuses_a_pile_too_large_to_pair_in_one_line(monkeypatch) -> None:
    # 20 000 boxes over one spot, each of its own group: the pairs grow as the square of the
    # pile, and the process was killed for memory (an outside review)
    import sys

    import numpy as np

    wbf_mod = sys.modules["densedet_tile.merge.wbf"]
    monkeypatch.setattr(wbf_mod, "_MAX_PAIRS", 5000)
    monkeypatch.setattr(wbf_mod, "_MAX_PAIRS_PER_BOX", 4)
    rng = np.random.default_rng(0)
    n = 400  # 79 800 pairs
    pile = np.array([100.0, 100, 200, 200]) + rng.normal(0, 2, (n, 4))
    with pytest.raises(InvalidInputError) as info:
        weighted_box_fusion(pile, rng.random(n), groups=np.arange(n), iou_thr=0.55)
    assert "the 400 boxes overlap one another in more than 5000 pairs" in str(info.value)
    # spread out, as many boxes fuse as before
    apart = pile + (np.arange(n) * 300.0)[:, None] * np.array([1, 0, 1, 0])
    assert len(weighted_box_fusion(apart, rng.random(n), groups=np.arange(n), iou_thr=0.55).xyxy) == n
