"""Evaluation of detections against ground truth (COCO-style AP/AR), and a run tiled against untiled."""

from .coco import (
    COCO_AREA_RANGES,
    COCO_IOU_THRS,
    COCO_REC_THRS,
    DEFAULT_MAX_DETS,
    CocoMetrics,
    EvalImage,
    box_iou_coco,
    evaluate_boxes,
    over_max_dets,
)

__all__ = [
    "COCO_AREA_RANGES",
    "COCO_IOU_THRS",
    "COCO_REC_THRS",
    "DEFAULT_MAX_DETS",
    "CocoMetrics",
    "EvalImage",
    "box_iou_coco",
    "evaluate_boxes",
    "over_max_dets",
]
