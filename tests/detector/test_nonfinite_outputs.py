"""A model whose raw output holds NaN or infinite numbers (broken weights, an fp16 export that
overflows): its boxes are left out as before, and the run now says so once instead of counting 0
products without a word (an outside review of 2026-12-05)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from densedet_tile.detector.onnx_adapter import OnnxDetector
from densedet_tile.detector.yolo_adapter import YoloDetector


class _Session:
    """ONNX Runtime's session as the adapter uses it, returning fixed outputs."""

    def __init__(self, outputs: list[np.ndarray]) -> None:
        self.outputs = outputs

    def get_providers(self) -> list[str]:
        return ["CPUExecutionProvider"]

    def run(self, names, feeds):
        return self.outputs


class _Runtime:
    device = "cpu"
    input_quant = None
    input_dtype = np.float32

    def __init__(self, y: np.ndarray) -> None:
        self.y = y

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.repeat(self.y[None], len(x), axis=0)


def _onnx(bboxes: np.ndarray) -> OnnxDetector:
    return OnnxDetector(session=_Session([bboxes[None], np.zeros((1, len(bboxes)), np.int64)]), input_name="input",
                        output_names=("dets", "labels"), model_hw=(64, 64), input_size=64, upscale=True,
                        score_thr=0.3, name="model.onnx", class_names=None, mean=(0, 0, 0), std=(1, 1, 1),
                        info={"device": "cpu"})


def _yolo(y: np.ndarray) -> YoloDetector:
    return YoloDetector(_Runtime(y), name="best.onnx", canvas_hw=(64, 64), input_size=64, batch=None,
                        layout="end2end", forced=True, class_names=None, conf=0.25, iou=0.7, max_det=100,
                        normalized=False, agnostic=False, info={"input_layout": "nhwc"})


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "NaN or infinite" in r.getMessage()]


@pytest.mark.parametrize("make", [_onnx, _yolo])
def test_nan_outputs_are_left_out_and_said_once(make, caplog: pytest.LogCaptureFixture) -> None:
    good = [8.0, 8.0, 40.0, 40.0, 0.9]
    rows = np.array([good, [np.nan] * 5, [1.0, 2.0, np.inf, 30.0, 0.8]], np.float32)
    if make is _yolo:
        rows = np.c_[rows, np.zeros(3, np.float32)]  # end-to-end rows: x1 y1 x2 y2 score class
    det = make(rows)
    tile = np.zeros((64, 64, 3), np.uint8)
    with caplog.at_level(logging.WARNING, logger="densedet_tile"):
        first = det.predict([tile, tile])
        again = det.predict([tile])
    assert [len(d) for d in first + again] == [1, 1, 1]
    np.testing.assert_allclose(first[0].xyxy, [good[:4]], atol=1e-4)
    (line,) = _said(caplog)
    assert line.startswith(det.name + ": the model's output holds")


@pytest.mark.parametrize("make", [_onnx, _yolo])
def test_finite_outputs_say_nothing(make, caplog: pytest.LogCaptureFixture) -> None:
    rows = np.array([[8.0, 8.0, 40.0, 40.0, 0.9]], np.float32)
    if make is _yolo:
        rows = np.c_[rows, np.zeros(1, np.float32)]
    with caplog.at_level(logging.WARNING, logger="densedet_tile"):
        assert len(make(rows).predict([np.zeros((64, 64, 3), np.uint8)])[0]) == 1
    assert _said(caplog) == []
