"""``densedet-tile eval`` entry point and the evaluation API, re-exported from :mod:`densedet_tile.eval`."""

from .eval import CocoMetrics, EvalImage, evaluate_boxes
from .eval.cli import compare_tiled_untiled, eval_main, pair_images
from .eval.formats import read_detections_json, read_ground_truth, read_predictions

__all__ = [
    "CocoMetrics",
    "EvalImage",
    "compare_tiled_untiled",
    "eval_main",
    "evaluate_boxes",
    "pair_images",
    "read_detections_json",
    "read_ground_truth",
    "read_predictions",
]
