"""The built-in model's decoding at its boundaries (a mutation review: each case fails with the
rule changed by one comparison, a dropped cap or a clip on the wrong axis)."""

from __future__ import annotations

import numpy as np

from densedet_tile.detector import builtin as b


def _dist(h: int, w: int, v: float) -> np.ndarray:
    return np.full((4, h, w), v, np.float32)


def test_a_peak_scoring_exactly_the_threshold_is_kept() -> None:
    lg = np.full((4, 4), -6.0, np.float32)
    lg[1, 1] = 0.0  # sigmoid(0) = 0.5
    _, scores = b.decode_one(lg, _dist(4, 4, 6.0), stride=8, score_thr=0.5, nms_iou=0.5, max_det=10)
    assert scores.tolist() == [0.5]


def test_max_det_caps_the_boxes_after_nms() -> None:
    lg = np.full((4, 8), -6.0, np.float32)
    for c, v in zip((0, 2, 4, 6, 7), (3, 2.5, 2, 1.5, 1)):
        lg[1 if c != 7 else 3, c] = v
    _, scores = b.decode_one(lg, _dist(4, 8, 3.0), stride=8, score_thr=0.3, nms_iou=0.5, max_det=2, topk=10)
    assert len(scores) == 2


def test_candidates_reach_past_max_det_so_nms_losses_are_made_up() -> None:
    # the two best peaks give the same box (NMS keeps one): with max_det 2 the third still comes
    lg = np.full((4, 8), -6.0, np.float32)
    lg[1, 1], lg[1, 3], lg[2, 6] = 3, 2.9, 1
    d = _dist(4, 8, 3.0)
    d[:, 1, 1] = [12, 4, 12, 4]
    d[:, 1, 3] = [28, 4, 0, 4]
    boxes, _ = b.decode_one(lg, d, stride=8, score_thr=0.3, nms_iou=0.5, max_det=2)
    assert boxes.tolist() == [[0.0, 8.0, 24.0, 16.0], [49.0, 17.0, 55.0, 23.0]]


class _FakeRunner:
    """Raw network outputs chosen by hand: (row, col, logit, l, t, r, b) per peak."""

    runtime, device = "torch", "cpu"

    def __init__(self, cells) -> None:
        self.cells = cells

    def describe(self) -> dict:
        return {"runtime": "torch", "device": "cpu"}

    def __call__(self, batch):
        n, h, w, _ = batch.shape
        heat = np.full((n, 1, h // 8, w // 8), -8.0, np.float32)
        dist = np.full((n, 4, h // 8, w // 8), 4.0, np.float32)
        for r, c, lg, *d in self.cells:
            heat[:, 0, r, c] = lg
            dist[:, :, r, c] = d
        return heat, dist


def test_boxes_are_clipped_to_the_tiles_own_width_and_height() -> None:
    det = b.DefaultDetector(_FakeRunner([(1, 5, 3.0, 4, 4, 40, 4)]), b.model_config(None), split_stacks=False)
    (d,) = det.predict([np.full((16, 64, 3), 128, np.uint8)])  # wide and low: x to 64, y to 16
    assert d.xyxy.tolist() == [[40.0, 8.0, 64.0, 16.0]]


def test_a_peak_in_the_padding_beyond_a_narrow_tile_gives_no_box() -> None:
    det = b.DefaultDetector(_FakeRunner([(2, 2, 3.0, 5, 5, 5, 5), (2, 6, 3.0, 4, 5, 4, 5)]), b.model_config(None),
                            split_stacks=False)
    (d,) = det.predict([np.full((64, 40, 3), 128, np.uint8)])  # the second peak lies at x 48-56, past 40
    assert d.xyxy.tolist() == [[15.0, 15.0, 25.0, 25.0]]
