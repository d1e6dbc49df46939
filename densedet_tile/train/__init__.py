"""Training and adapting the built-in model (ShelfNet, :mod:`densedet_tile.detector.builtin`).

Torch land, like the built-in detector; nothing in the engine imports it, and it is the one part
of the package besides :mod:`densedet_tile.synth` itself that uses the shelf generator.

* :mod:`.losses` -- focal heatmap loss (with ignore regions) and GIoU box loss.
* :mod:`.data` -- generated shelves (:class:`ShelfStream`, :class:`SyntheticPool`), crops of real
  photos with pseudo-labels (:class:`PhotoCrops`), ignore maps, batch augmentation.
* :mod:`.loop` -- optimiser, learning-rate schedule, weight average (EMA), one training step,
  the weights-file format; ``scripts/train_default.py`` is a command line around these.
* :mod:`.pseudo` -- pseudo-labels from test-time-augmented views fused by weighted box fusion.
* :mod:`.adapt` -- ``densedet-tile adapt``: self-training on a folder of unlabelled photos, with
  a budget, a resumable state, and a report.
"""

from .adapt import AdaptResult, AdaptSettings, adapt, find_photos, output_paths, report_text
from .data import (
    PhotoCrops,
    Sample,
    ShelfStream,
    SyntheticPool,
    augment,
    crop_boxes,
    ignore_map,
    make_sample,
    stack_samples,
)
from .loop import (
    checkpoint_bytes,
    checkpoint_dict,
    ema_copy,
    ema_update,
    learning_rate,
    make_optimizer,
    normaliser,
    save_checkpoint,
    train_step,
)
from .losses import detection_loss, focal_loss, giou_loss
from .pseudo import LabelSettings, PseudoLabels, agreement, fuse_views, pseudo_label, view_detections

__all__ = [
    "AdaptResult",
    "AdaptSettings",
    "adapt",
    "find_photos",
    "output_paths",
    "report_text",
    "PhotoCrops",
    "Sample",
    "ShelfStream",
    "SyntheticPool",
    "augment",
    "crop_boxes",
    "ignore_map",
    "make_sample",
    "stack_samples",
    "checkpoint_bytes",
    "checkpoint_dict",
    "ema_copy",
    "ema_update",
    "learning_rate",
    "make_optimizer",
    "normaliser",
    "save_checkpoint",
    "train_step",
    "detection_loss",
    "focal_loss",
    "giou_loss",
    "LabelSettings",
    "PseudoLabels",
    "agreement",
    "fuse_views",
    "pseudo_label",
    "view_detections",
]
