"""Upgrade the MMDetection 1.x SKU110K-DenseDet checkpoint to the shipped 3.x config.

Command line: ``densedet-tile convert-checkpoint OLD.pth NEW.pth [--config densedet-x101] [--no-verify]``.

Key mapping (1.x CascadeRCNN, mmdet 1.0rc1 -> 3.x CascadeRCNN with CascadeRoIHead):

| 1.x key                          | 3.x key                                   | values              |
|----------------------------------|-------------------------------------------|---------------------|
| module.<k> (DataParallel)        | <k>                                       | unchanged           |
| backbone.*                       | backbone.*                                | unchanged           |
| neck.0.* (FPN), neck.1.* (BFP)   | neck.0.*, neck.1.* (refine.{g,theta,phi,conv_out}.conv.*) | unchanged |
| rpn_head.rpn_{conv,cls,reg}.*    | rpn_head.rpn_{conv,cls,reg}.*             | unchanged (sigmoid) |
| bbox_roi_extractor.<i>.*         | roi_head.bbox_roi_extractor.<i>.*         | unchanged           |
| bbox_head.<i>.shared_fcs.*       | roi_head.bbox_head.<i>.shared_fcs.*       | unchanged           |
| bbox_head.<i>.fc_cls.{weight,bias} | roi_head.bbox_head.<i>.fc_cls.*         | rows reordered      |
| bbox_head.<i>.fc_reg.{weight,bias} | roi_head.bbox_head.<i>.fc_reg.*         | agnostic: unchanged |

Class order: 1.x softmax heads put background at row 0 and the C classes after it
(num_classes = C + 1 = 2 for DenseDet); 3.x puts the C classes first and background last, so
row 0 moves to the end. Class-specific regression (not DenseDet's, which is class-agnostic)
would also lose the 4 background rows. The optimizer state is dropped; ``meta`` keeps the class
names and the source version as plain Python values, so the result loads with
``torch.load(weights_only=True)`` and no allow-list.

The 1.x box arithmetic (width = x2 - x1 + 1, anchor centres at +0.5, decode with +-0.5, RoIs
+1 before RoIAlign, NMS offset 1, reported x2/y2 + 1) is not in the weights: the 3.x config
selects LegacyAnchorGenerator and the DenseDet1x* components of
:mod:`densedet_tile.detector.mmdet_legacy`, so nothing else is rewritten. What still differs
from 1.x is :data:`EXACTNESS_SUMMARY`, which the command line prints after a conversion.

With --config (default: the full DenseDet config) the converted keys and shapes are checked
against a model built from that config and any mismatch is an error. Without it (--no-verify) a
state dict that is clearly another model is still refused by its layout: one of another library
(torchvision's rpn.*, roi_heads.*; Detectron2's proposal_generator.*), or one short of the
backbone.*, rpn_head.* and bbox_head.* parts every 1.x Cascade R-CNN has.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch

from ..configs import find_config
from ..errors import DetectorError, InvalidInputError
from ..io import atomic_write
from .checkpoints import load_checkpoint, state_dict_of

__all__ = ["upgrade_key", "background_last", "upgrade_state_dict", "convert", "verify", "DEFAULT_CONFIG",
           "EXACTNESS_SUMMARY"]

#: The config a converted checkpoint is checked against unless told otherwise.
DEFAULT_CONFIG = "densedet-x101"

#: How exact the port is: a short form of docs/mmdet.md, "How exact is the port".
EXACTNESS_SUMMARY = """\
How exact is the port (docs/mmdet.md, "How exact is the port"):
  box arithmetic: mmdet 1.0rc1's, by the DenseDet1x* coder, RoI extractor and box head the
    shipped configs select; given the same network outputs, RPN + 2 stages reproduce 1.x's
    reported boxes to 0.0004 px (mmdet 3's legacy coder alone: 2 px wider/taller, 0.5 px up-left)
  still different from 1.x:
    - RoIs under one feature pixel wide are widened to one by RoIAlign (degenerate boxes only)
    - NMS ties at exactly IoU 0.7 (1.x CPU kernel: >=, here: >)
    - whole-photo rescale by per-axis factors: up to 0.5/scale px at the far edge, 0 for 4:3
    - training targets (3.x reads ground truth as x + w, 1.x as x + w - 1); TTA boxes not offset
    - tiles are resized one by one: their edge pixels are sampled inside the tile
  scale: on photos the engine applies the 3000x1800 rule (photo_scale) with bilinear resizing
"""

#: the parts with weights that every 1.x Cascade R-CNN has (the neck not: a C4 cascade has none;
#: the RoI extractors have no weights); a state dict short of one is not such a model, whatever
#: else it holds (a torchvision detector, an ImageNet backbone, a RetinaNet also have backbone.*)
_V1_REQUIRED = ("backbone.", "rpn_head.", "bbox_head.")
#: other libraries' detectors: prefixes of theirs that an mmdet 1.x detector never has (its parts
#: are attributes named rpn_head, bbox_head, ...), then more of their prefixes, only named in the
#: message. Detectron2 is tried first, by prefixes torchvision lacks: both have roi_heads.*.
_OTHER_LIBRARIES = (
    ("a Detectron2 model", ("proposal_generator.", "backbone.bottom_up."), ("roi_heads.",)),
    ("a torchvision detector", ("rpn.", "roi_heads.", "head.classification_head.", "head.regression_head."),
     ("backbone.body.", "backbone.fpn.")),
)
_HEAD = re.compile(r"^(bbox_head|bbox_roi_extractor)\.(\d+)\.(.+)$")
_CLS = re.compile(r"\.fc_cls\.(weight|bias)$")
_REG = re.compile(r"\.fc_reg\.(weight|bias)$")


def upgrade_key(key: str) -> str:
    """The 3.x name of a 1.x DenseDet state-dict key."""
    if key.startswith("module."):
        key = key[len("module."):]
    if _HEAD.match(key):
        return "roi_head." + key
    return key


def background_last(value: torch.Tensor) -> torch.Tensor:
    """Move row 0 (1.x background) of an ``fc_cls`` weight (C+1, F) or bias (C+1,) to the end."""
    return torch.cat([value[1:], value[:1]], dim=0)


def upgrade_state_dict(old: Mapping[str, torch.Tensor], *, num_classes_v1: int = 2) -> "OrderedDict[str, torch.Tensor]":
    """Rename and reorder a 1.x DenseDet state dict into the 3.x config's layout.

    ``num_classes_v1`` counts the background, as 1.x configs did (2 for DenseDet; at least 2:
    the background and a class). A state dict that already has 3.x keys (``roi_head.*``) is
    refused: converting it again would move the class rows a second time.
    """
    if isinstance(num_classes_v1, bool) or not isinstance(num_classes_v1, int) or num_classes_v1 < 2:
        # (1 took a class-agnostic regression for the background's rows and wrote it empty, exit
        # 0: an outside review)
        raise InvalidInputError(f"num_classes_v1 counts the background: at least 2 (the background and a class), "
                                f"got {num_classes_v1!r}")
    already = _first_3x_key(old)
    if already is not None:
        raise DetectorError(f"already in MMDetection 3.x form (key {already}), nothing to convert")
    single = next((k for k in old if _strip_module(k).startswith(("bbox_head.", "bbox_roi_extractor."))
                   and _HEAD.match(_strip_module(k)) is None), None)
    if single is not None:  # a one-stage head (a plain Faster R-CNN of the same repo): not this model
        raise DetectorError(f"{single}: a box head without a stage index (a single-stage Faster R-CNN?); only "
                            "SKU110K-DenseDet's cascade checkpoints (bbox_head.0., bbox_head.1.) convert")
    new: "OrderedDict[str, torch.Tensor]" = OrderedDict()
    for key, value in old.items():
        new_key = upgrade_key(key)
        if new_key in new:
            raise DetectorError(f"two 1.x keys map to {new_key}")
        # Rows are reordered only for keys that really are 1.x head keys; a key that is
        # already named the 3.x way must never be reordered a second time.
        is_v1_head = _HEAD.match(_strip_module(key)) is not None
        if is_v1_head and (_CLS.search(new_key) or _REG.search(new_key)) and value.dim() == 0:
            raise DetectorError(f"{key}: a single number, not a layer's weight or bias (its rows are classes)")
        if is_v1_head and _CLS.search(new_key):
            if value.shape[0] != num_classes_v1:
                raise DetectorError(
                    f"{key}: expected {num_classes_v1} class rows (background included), got {tuple(value.shape)}"
                )
            value = background_last(value)
        elif is_v1_head and _REG.search(new_key) and value.shape[0] == 4 * num_classes_v1:
            value = value[4:]  # class-specific regression: drop the background's 4 rows
        new[new_key] = value.clone()
    return new


def _strip_module(key: str) -> str:
    return key[len("module."):] if key.startswith("module.") else key


def _not_v1_cascade(state_dict: Mapping[str, Any]) -> str | None:
    """What a state dict looks like when it is clearly not a 1.x Cascade R-CNN's (another
    library's detector, or one short of the parts every such model has), else None."""
    keys = [_strip_module(k) for k in state_dict]

    def present(prefixes: tuple[str, ...]) -> list[str]:
        return [p for p in prefixes if any(k.startswith(p) for k in keys)]

    for library, own, backbone in _OTHER_LIBRARIES:
        found = present(own)
        if found:
            return f"looks like {library} state dict ({', '.join(p + '*' for p in found + present(backbone))})"
    missing = [p for p in _V1_REQUIRED if not present((p,))]
    if not missing:
        return None
    names = [p + "*" for p in missing]
    tops = sorted({k.split(".", 1)[0] + ".*" for k in keys})
    has = ", ".join(tops[:6]) + (", ..." if len(tops) > 6 else "") if tops else "no keys"
    return f"no {' or '.join([', '.join(names[:-1]), names[-1]] if len(names) > 1 else names)} keys (it has {has})"


def _first_3x_key(state_dict: Mapping[str, Any]) -> str | None:
    """The first key laid out the 3.x way (``roi_head.*``), or None for a 1.x state dict."""
    for key in state_dict:
        if _strip_module(key).startswith("roi_head."):
            return key
    return None


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    config: str | Path | None = DEFAULT_CONFIG,
    num_classes_v1: int = 2,
) -> dict[str, Any]:
    """Read ``src`` (safely), write the upgraded checkpoint to ``dst`` atomically; return its ``meta``.

    ``config`` (a shipped config name or a file; None skips the check) is built to verify the
    converted keys and shapes. A checkpoint already in 3.x form (``roi_head.*`` keys, or a
    ``meta`` that records ``converted_from``) is refused.
    """
    ckpt = load_checkpoint(src)
    old_sd = state_dict_of(ckpt, source=f"checkpoint {src}")
    old_meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    if (isinstance(old_meta, dict) and "converted_from" in old_meta) or _first_3x_key(old_sd) is not None:
        raise DetectorError(f"checkpoint {src}: already in MMDetection 3.x form, nothing to convert")
    foreign = _not_v1_cascade(old_sd)
    if foreign is not None:
        # checked even without ``config``: with --no-verify a torchvision detector (it has
        # backbone.* keys too) was written out as if it were this model
        raise DetectorError(f"checkpoint {src}: {foreign}, not a SKU110K-DenseDet checkpoint "
                            "(an MMDetection 1.x Cascade R-CNN)")
    new_sd = upgrade_state_dict(old_sd, num_classes_v1=num_classes_v1)
    if config is not None:  # (before the class names' warning, which says the file is written)
        verify(new_sd, config)
    classes = old_meta.get("CLASSES") if isinstance(old_meta, dict) else None
    if not (isinstance(classes, (list, tuple)) and all(isinstance(c, str) for c in classes)):
        classes = ("product",)
    elif len(classes) != num_classes_v1 - 1:
        # 1.x training saved its dataset class's names: SKU110K-DenseDet trained through
        # CocoDataset, whose 80 COCO names would label every product "person"
        import logging

        logging.getLogger("densedet_tile").warning(
            "checkpoint %s names %d classes (%s, ...) but its head has %d: written with the class name 'product'",
            src, len(classes), ", ".join(list(classes)[:3]), num_classes_v1 - 1)
        classes = ("product",)
    meta = {
        "dataset_meta": {"classes": list(classes)},
        "converted_from": "mmdet 1.x",
        "source_mmdet_version": str(old_meta.get("mmdet_version", "unknown")) if isinstance(old_meta, dict) else "unknown",
        "converter": "densedet-tile convert-checkpoint",
    }
    import io

    buf = io.BytesIO()
    torch.save({"meta": meta, "state_dict": new_sd}, buf)
    atomic_write(dst, buf.getvalue())
    return meta


def verify(state_dict: Mapping[str, torch.Tensor], config: str | Path) -> None:
    """Check keys and shapes against a model built from ``config``; raise DetectorError if off."""
    from .mmdet_adapter import _import_stack, build_model, read_config

    _import_stack()
    # a config that cannot be parsed or builds no model is one line, as the adapter says it
    # (convert-checkpoint printed mmengine's traceback; an outside review)
    own = build_model(read_config(find_config(config), config), config).state_dict()
    missing = [k for k in own if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [k for k in state_dict if k in own and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or shapes:
        raise DetectorError(
            f"converted keys do not fit {config}: missing {missing[:3]} ({len(missing)}), "
            f"unexpected {unexpected[:3]} ({len(unexpected)}), wrong shape {shapes[:3]} ({len(shapes)})"
        )
