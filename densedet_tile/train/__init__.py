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
  a budget, a resumable state, and a report (its function is ``densedet_tile.train.adapt.adapt``:
  ``densedet_tile.train.adapt`` is the module); :mod:`.settings` -- its settings, without torch.
"""

# Loaded on first use (PEP 562): most of this package needs torch, and importing one of its
# torch-free modules (settings, pseudo) must not load it (``densedet-tile adapt --help`` on the
# light install).
_FROM = {
    "AdaptResult": "adapt",
    "AdaptSettings": "settings",
    "find_photos": "adapt",
    "output_paths": "adapt",
    "report_text": "adapt",
    "PhotoCrops": "data",
    "Sample": "data",
    "ShelfStream": "data",
    "SyntheticPool": "data",
    "augment": "data",
    "crop_boxes": "data",
    "ignore_map": "data",
    "make_sample": "data",
    "stack_samples": "data",
    "checkpoint_bytes": "loop",
    "checkpoint_dict": "loop",
    "ema_copy": "loop",
    "ema_update": "loop",
    "learning_rate": "loop",
    "make_optimizer": "loop",
    "normaliser": "loop",
    "save_checkpoint": "loop",
    "train_step": "loop",
    "detection_loss": "losses",
    "focal_loss": "losses",
    "giou_loss": "losses",
    "LabelSettings": "pseudo",
    "PseudoLabels": "pseudo",
    "agreement": "pseudo",
    "fuse_views": "pseudo",
    "pseudo_label": "pseudo",
    "view_detections": "pseudo",
}


def __getattr__(name: str) -> object:
    if name in _FROM:
        import importlib

        value = getattr(importlib.import_module(f".{_FROM[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptResult",
    "AdaptSettings",
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
