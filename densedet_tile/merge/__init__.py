"""Merging per-tile detections into one global set (seam repair, WBF, NMS).

All functions are numpy arrays in, arrays out, vectorised over sparse candidate pairs from a
grid index (never an N x N matrix): :func:`merge_tiles` is the engine's entry point;
:func:`nms`, :func:`weighted_box_fusion`, :func:`repair_seams`, :func:`candidate_pairs` and
:func:`pair_iou` are the building blocks.
"""

from .boxes import box_area, candidate_pairs, connected_components, pair_iou
from .core import merge_tiles, merge_tolerances, to_global
from .nms import nms
from .seams import SeamRepair, SeamTolerances, measure_view_noise, repair_seams, seam_tolerances
from .wbf import Fusion, fuse_clusters, weighted_box_fusion

__all__ = [
    "merge_tiles",
    "merge_tolerances",
    "to_global",
    "nms",
    "weighted_box_fusion",
    "fuse_clusters",
    "Fusion",
    "repair_seams",
    "SeamRepair",
    "SeamTolerances",
    "measure_view_noise",
    "seam_tolerances",
    "candidate_pairs",
    "pair_iou",
    "box_area",
    "connected_components",
]
