"""torchvision detection models as densedet-tile detectors (``--detector torchvision``).

``--config NAME`` is any builder in ``torchvision.models.detection`` (fasterrcnn_resnet50_fpn,
fcos_resnet50_fpn, retinanet_resnet50_fpn_v2, ssdlite320_mobilenet_v3_large, ...), built with
``weights=None, weights_backbone=None`` (nothing is downloaded); ``--checkpoint`` is a
state_dict saved with ``torch.save(model.state_dict(), path)`` (or a dict holding it under
``state_dict`` / ``model``, as torchvision's reference training script saves ``model_N.pth``
beside its ``args``), loaded with ``weights_only=True`` (numpy and ``argparse.Namespace`` allowed).

num_classes: the option, else read from the checkpoint, else 2 (background + "product").
torchvision counts the background as class 0, so labels are reported minus ``label_offset``
(1 by default) and background predictions are dropped. A model with num_classes=1 is refused
unless something is left to report: R-CNN and SSD heads (softmax over the background and the
classes) then hold the background alone; a RetinaNet or FCOS head (sigmoid, no background
column) holds one real class at label 0, which needs ``label_offset=0``.

Mask R-CNN and Keypoint R-CNN (``maskrcnn_*``, ``keypointrcnn_*``) run without their mask and
keypoint heads: the engine reads boxes alone, and those heads cost time and memory per box kept
(Mask R-CNN pastes a full-size mask for each: 2.9 s against 1.7 s for a 384 px tile with 200
boxes on a CPU). They are removed after the checkpoint is loaded (its weights for them must still
fit, and are then unused); the boxes are the same, and ``info["dropped_heads"]`` says which went.

Input scale: ``input_size`` is the option, else the scale the model's own transform declares
(its ``fixed_size`` longer side, or ``min_size``: the side a square tile is resized to). The
model's transform is then set to resize to exactly that, so after the engine's resize it does
nothing; boxes come back in tile pixels through torchvision's own postprocess. A model that
resizes to a fixed square (SSD) gets a tile shorter on one side padded to the square at its right
and bottom with its mean, not stretched. For that reason
(and because the score threshold and box cap are the engine's too) ``builder_kwargs`` may not
set the transform's sizes, the score threshold or the box cap: each is refused, naming the option
that sets it.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from typing import Any, Sequence

import numpy as np

from ..errors import DetectorError, InvalidInputError, MissingDependencyError, one_line
from ..types import Detections, check_input_size
from .base import (check_tiles, class_names_option, engine_input_size, refuse_nonfinite_weights, resolve_device,
                   score_floor_for)
from .checkpoints import _clipped, load_checkpoint, state_dict_of

__all__ = ["build", "TorchvisionDetector", "builder_names", "infer_num_classes"]

log = logging.getLogger(__name__)

#: Builder keywords whose setting the adapter replaces after building, and the engine option that
#: sets it instead: the score threshold and box cap (R-CNN's ``box_*``; RetinaNet, FCOS and SSD's
#: own) and the size of the model's input transform, which is pinned to the engine's input size.
_ENGINE_SET = {
    "box_score_thresh": "score_thr (--score-thr)",
    "score_thresh": "score_thr (--score-thr)",
    "box_detections_per_img": "the max_detections option (--detector-option max_detections=N)",
    "detections_per_img": "the max_detections option (--detector-option max_detections=N)",
    "min_size": "input_size (--input-size)",
    "max_size": "input_size (--input-size)",
    "fixed_size": "input_size (--input-size)",
    "size": "input_size (--input-size)",  # SSD's (its builders fix it)
}


def builder_names() -> list[str]:
    """Names of the detection model builders torchvision provides."""
    import torchvision
    from torchvision.models import detection

    return sorted(torchvision.models.list_models(module=detection))


def _construct(name: str, num_classes: int, kwargs: dict[str, Any]) -> Any:
    import torchvision

    # (no warnings filter: the filters are the whole process's, and a build in one thread muted
    # the warnings of every other meanwhile; the builders warn of nothing when given weights=None
    # and weights_backbone=None, and a note on the user's own builder_kwargs is theirs to see)
    model = torchvision.models.get_model(
        name, weights=None, weights_backbone=None, num_classes=num_classes, **kwargs
    )
    unknown = sorted(set(kwargs) - _builder_keywords(name, model))
    if unknown:  # the detection models pass what they do not know to their transform, which drops it
        raise ValueError(f"unknown keyword(s) {', '.join(unknown)} (torchvision would ignore them)")
    return model


def _builder_keywords(name: str, model: Any) -> set[str]:
    """The keywords that ``name``'s builder, the model's classes and their input transform name."""
    import inspect

    import torchvision
    from torchvision.models.detection.transform import GeneralizedRCNNTransform

    fns = [torchvision.models.get_model_builder(name), GeneralizedRCNNTransform.__init__]
    fns += [cls.__init__ for cls in type(model).__mro__ if "__init__" in vars(cls)]
    keys: set[str] = set()
    for fn in fns:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            continue
        keys.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    return keys - {"self"}


def infer_num_classes(name: str, state_dict: dict[str, Any], kwargs: dict[str, Any] | None = None) -> int:
    """The num_classes (background included) that ``state_dict`` was trained with.

    Builds the architecture for 2 and 3 classes, finds the parameters whose first dimension
    grows with num_classes (d = a * K + b) and solves for K from the checkpoint's shapes.
    """
    kw = dict(kwargs or {})
    s2 = _construct(name, 2, kw).state_dict()
    s3 = _construct(name, 3, kw).state_dict()
    answers: set[float] = set()
    for key, v2 in s2.items():
        d2, d3 = v2.shape[0] if v2.ndim else 0, s3[key].shape[0] if s3[key].ndim else 0
        if d2 == d3 or key not in state_dict:
            continue
        a = d3 - d2
        b = d2 - 2 * a
        answers.add((state_dict[key].shape[0] - b) / a)
    if not answers:
        raise DetectorError(f"torchvision model {name}: cannot tell num_classes from the checkpoint")
    if len(answers) != 1 or not float(next(iter(answers))).is_integer() or next(iter(answers)) < 1:
        raise DetectorError(f"torchvision model {name}: checkpoint layers disagree on num_classes ({sorted(answers)})")
    return int(next(iter(answers)))


class TorchvisionDetector:
    """A torchvision detection model behind the Detector protocol (eval mode, no grad)."""

    #: Tiles are resized with OpenCV-style bilinear sampling, as the usual training pipelines
    #: (mmdet, torchvision transforms, exporters' runners) do.
    resize_filter = "bilinear"

    def __init__(
        self,
        *,
        model: Any,
        name: str,
        input_size: int | None,
        score_thr: float,
        device: str,
        label_offset: int,
        class_names: tuple[str, ...] | None,
        info: dict[str, Any],
    ) -> None:
        self.model = model
        self.name = name
        self.input_size = input_size
        self.score_thr = float(score_thr)
        self.score_floor = score_floor_for(self.score_thr)  # a little lower, for the count range
        self.device = device
        self.label_offset = int(label_offset)
        self.class_names = class_names
        self.info = info
        self._pinned = input_size  # the side the model's own resize now maps onto itself
        self._lock = threading.Condition()  # calls at the pinned side run together; a re-pin waits for them
        self._running = 0

    def __getstate__(self) -> dict[str, Any]:  # picklable (Ray ships a built detector): the lock is not
        state = dict(self.__dict__)
        del state["_lock"], state["_running"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Condition()
        self._running = 0

    def to(self, device: str) -> "TorchvisionDetector":
        """Move the model to ``device`` (the engine's CPU fallback after running out of GPU memory)."""
        self.model.to(device)
        self.device = str(device)
        self.info["device"] = self.device
        return self

    def __repr__(self) -> str:
        return f"TorchvisionDetector(name={self.name!r}, device={self.device!r}, input_size={self.input_size})"

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """HxWx3 uint8 RGB tiles -> one Detections per tile, boxes in that tile's pixels."""
        import torch

        tiles = check_tiles(tiles)
        if not tiles:
            return []
        # a model resizing to a fixed square (SSD) would stretch a tile the image cut short (an edge
        # tile of an image narrower than the tile): such a tile is padded to a square at its
        # right and bottom with the model's mean (nothing, once normalised), so the products keep
        # their shape (they reached the network 1.7 times taller: an outside review)
        square = bool(getattr(self.model.transform, "fixed_size", None))
        mean = getattr(self.model.transform, "image_mean", None) if square else None
        batch = []
        for t in tiles:
            x = torch.from_numpy(np.ascontiguousarray(t)).to(self.device).permute(2, 0, 1).float().div_(255.0)
            h, w = x.shape[1:]
            if square and h != w:
                side = max(h, w)
                fill = torch.as_tensor(mean if mean is not None else [0.0, 0.0, 0.0], dtype=x.dtype,
                                       device=x.device).reshape(3, 1, 1)
                canvas = fill.expand(3, side, side).clone()
                canvas[:, :h, :w] = x
                x = canvas
            batch.append(x)
        # tiles the engine resized to a run's own size (--scale, tile auto) stay so: the model's
        # resize is pinned to that size for the call (else to the size it was built with)
        size = engine_input_size() or self.input_size
        with self._lock:  # threads sharing the detector at one side run at once, as before the pin
            while size is not None and size != self._pinned and self._running:
                self._lock.wait()
            if size is not None and size != self._pinned:
                _pin_transform(self.model.transform, size)
                self._pinned = size
            self._running += 1
        try:
            with torch.inference_mode():
                results = self.model(batch)
        finally:
            with self._lock:
                self._running -= 1
                self._lock.notify_all()
        out = []
        for t, r in zip(tiles, results):
            boxes = r["boxes"].detach().float().cpu().numpy().reshape(-1, 4)
            scores = r["scores"].detach().float().cpu().numpy().reshape(-1)
            labels = r["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1) - self.label_offset
            keep = (scores >= self.score_floor) & (labels >= 0)
            h, w = t.shape[:2]
            boxes = np.clip(boxes[keep], 0.0, np.array([w, h, w, h], np.float32))
            scores, labels = scores[keep], labels[keep]
            if square and h != w:  # (boxes wholly in the padding are nothing)
                some = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
                boxes, scores, labels = boxes[some], scores[some], labels[some]
            out.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), labels))
        return out


def _has_background_column(model: Any) -> bool:
    """Whether the model's class scores include the background as column 0 (softmax heads).

    R-CNN and SSD postprocessing never report label 0; RetinaNet and FCOS score every column
    with its own sigmoid and report all of them.
    """
    from torchvision.models.detection.ssd import SSD
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    return isinstance(model, (GeneralizedRCNN, SSD))


def _check_classes_left(model: Any, config: str, num_classes: int, label_offset: int, where: str) -> None:
    """Refuse a model/label_offset pair that can never report a box (see the module docstring)."""
    background = _has_background_column(model)
    if background and num_classes < 2:
        raise DetectorError(
            f"torchvision detector {config}: {where} has num_classes={num_classes}, the background alone, "
            "so it can detect nothing (count the background: one product class is num_classes=2)"
        )
    if num_classes - label_offset < 1:
        hint = "" if background else "; its head has no background column: pass --detector-option label_offset=0"
        raise DetectorError(
            f"torchvision detector {config}: {where} has num_classes={num_classes}, so label_offset={label_offset} "
            f"leaves no label to report{hint}"
        )


def _set_thresholds(model: Any, score_thr: float, max_detections: int) -> None:
    holder = getattr(model, "roi_heads", None)
    if holder is None or not hasattr(holder, "score_thresh"):
        holder = model
    if hasattr(holder, "score_thresh"):
        holder.score_thresh = float(score_thr)
    if hasattr(holder, "detections_per_img"):
        holder.detections_per_img = int(max_detections)


#: The heads of Mask R-CNN and Keypoint R-CNN that work on the boxes the engine keeps alone.
_UNUSED_HEADS = {
    "mask": ("mask_roi_pool", "mask_head", "mask_predictor"),
    "keypoint": ("keypoint_roi_pool", "keypoint_head", "keypoint_predictor"),
}


def _drop_unused_heads(model: Any) -> list[str]:
    """Remove the mask and keypoint heads (``roi_heads``), whose outputs the engine never reads.

    torchvision's RoIHeads runs a head only while its three parts are set (``has_mask()``,
    ``has_keypoint()``), and the boxes do not depend on them. Returns the names of those removed.
    """
    heads = getattr(model, "roi_heads", None)
    dropped = []
    for head, parts in _UNUSED_HEADS.items():
        if heads is not None and any(getattr(heads, part, None) is not None for part in parts):
            for part in parts:
                setattr(heads, part, None)
            dropped.append(head)
    return dropped


def _declared_size(transform: Any) -> int | None:
    fixed = getattr(transform, "fixed_size", None)
    if fixed:
        return int(max(fixed))
    mins = getattr(transform, "min_size", None)
    if mins:
        return int(mins[-1])
    return None


def _pin_transform(transform: Any, size: int) -> None:
    """Make the model's own resize map a tile whose longer side is ``size`` onto itself."""
    if getattr(transform, "fixed_size", None):
        transform.fixed_size = (size, size)
    transform.min_size = (size,)
    transform.max_size = size


def build(
    *,
    config: str | None,
    checkpoint: str | None,
    device: str = "auto",
    input_size: int | None = None,
    score_thr: float = 0.05,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    max_detections: int = 400,
    label_offset: int = 1,
    builder_kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> TorchvisionDetector:
    """Build ``torchvision.models.detection.<config>`` and load ``checkpoint`` into it.

    ``max_detections`` (default 400, DenseDet's per-image cap; torchvision's own is 100)
    bounds the boxes per tile. ``builder_kwargs`` go to the builder unchanged; keywords that
    neither the builder, the model nor its input transform names are refused (torchvision
    would drop them silently), and so are those the adapter sets itself after building
    (``_ENGINE_SET``: score thresholds, box caps, the transform's sizes), naming the option
    that sets each.
    """
    for pkg in ("torch", "torchvision"):
        try:
            __import__(pkg)
        except ImportError as exc:
            raise MissingDependencyError("the torchvision detector", pkg, "torchvision", exc) from exc
    import torch

    if options:
        raise InvalidInputError(f"torchvision detector: unknown option(s) {', '.join(sorted(options))}")
    if not config:
        raise InvalidInputError("torchvision detector: a config is required (config=, --config NAME: a torchvision.models.detection builder)")
    names = builder_names()
    if config not in names:
        raise InvalidInputError(f"torchvision detector: unknown builder {config!r}; choose one of {', '.join(names)}")
    check_input_size(input_size)
    if not isinstance(score_thr, (int, float)) or not (0.0 <= float(score_thr) <= 1.0):
        raise InvalidInputError(f"score_thr must be in [0, 1], got {score_thr!r}")
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
        raise InvalidInputError(f"num_classes must be a positive int, got {num_classes!r}")
    if isinstance(max_detections, bool) or not isinstance(max_detections, int) or max_detections < 1:
        raise InvalidInputError(f"max_detections must be a positive int, got {max_detections!r}")
    if isinstance(label_offset, bool) or not isinstance(label_offset, int) or label_offset < 0:
        raise InvalidInputError(f"label_offset must be an int >= 0, got {label_offset!r}")
    dev = resolve_device(device)
    if builder_kwargs is not None and not isinstance(builder_kwargs, dict):
        raise InvalidInputError(f"torchvision detector: builder_kwargs must be a dict of the builder's keywords, "
                                f"e.g. builder_kwargs='{{\"min_size\": 800}}', got {builder_kwargs!r}")
    kwargs = dict(builder_kwargs or {})
    taken = sorted(set(kwargs) & {"num_classes", "weights", "weights_backbone"})
    if taken:  # (a TypeError deep in torchvision before: "got multiple values for keyword argument")
        raise InvalidInputError(f"torchvision detector: builder_kwargs may not set {', '.join(taken)}: num_classes is "
                                "read from the checkpoint (or the num_classes option, --detector-option num_classes=N), and "
                                "the weights come from the checkpoint (checkpoint=, --checkpoint)")
    engine_set = sorted(set(kwargs) & set(_ENGINE_SET))
    if engine_set:  # (they were replaced after building, without a word)
        raise InvalidInputError("torchvision detector: builder_kwargs may not set " + "; ".join(
            f"{key}, which the engine sets from {_ENGINE_SET[key]}" for key in engine_set))

    sd = None
    if checkpoint is not None:
        # torchvision's reference training script saves its arguments beside the weights ("args",
        # an argparse.Namespace of plain values): allowed for this load alone
        sd = state_dict_of(load_checkpoint(checkpoint, extra_safe_globals=[argparse.Namespace]),
                           source=f"checkpoint {os.fspath(checkpoint)}")
        try:
            found = infer_num_classes(config, sd, kwargs)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"torchvision detector {config}: bad builder arguments ({exc})") from exc
        except DetectorError as exc:  # the head it looks for is not there: weights of another model?
            raise DetectorError(f"{one_line(exc)}; is {os.fspath(checkpoint)} a checkpoint of {config}?") from None
        if num_classes is not None and num_classes != found:
            raise DetectorError(
                f"checkpoint {os.fspath(checkpoint)} has {found} classes (background included), not num_classes={num_classes}"
            )
        num_classes = found
    elif num_classes is None:
        num_classes = 2
    try:
        model = _construct(config, num_classes, kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"torchvision detector {config}: bad builder arguments ({exc})") from exc
    where = f"checkpoint {os.fspath(checkpoint)}" if checkpoint is not None else "the model"
    _check_classes_left(model, config, num_classes, label_offset, where)
    if sd is not None:
        refuse_nonfinite_weights(sd, f"checkpoint {os.fspath(checkpoint)}")
        try:
            result = model.load_state_dict(sd, strict=False)
        except RuntimeError as exc:  # same names, other shapes: weights of another architecture
            sizes = [ln.strip() for ln in str(exc).splitlines() if "size mismatch" in ln]
            raise DetectorError(
                f"checkpoint {os.fspath(checkpoint)} does not fit {config}: {len(sizes)} tensors of another shape"
                + (f" (e.g. {_clipped(sizes[0], 160)})" if sizes else "")
            ) from None
        if result.missing_keys or result.unexpected_keys:
            raise DetectorError(
                f"checkpoint {os.fspath(checkpoint)} does not fit {config}: "
                f"{len(result.missing_keys)} missing (e.g. {', '.join(result.missing_keys[:3])}), "
                f"{len(result.unexpected_keys)} unexpected (e.g. {', '.join(result.unexpected_keys[:3])})"
            )
    else:
        log.warning("torchvision detector %s: no checkpoint given, running with random weights", config)
    # after the checkpoint is loaded, so that its mask/keypoint weights still fit the model
    dropped = _drop_unused_heads(model)
    size = int(input_size) if input_size is not None else _declared_size(model.transform)
    if size is not None:
        _pin_transform(model.transform, size)
    _set_thresholds(model, score_floor_for(float(score_thr)), max_detections)
    model.to(torch.device(dev)).eval()
    if class_names is not None:
        names_t: tuple[str, ...] | None = class_names_option(class_names, "torchvision detector")
        if names_t is not None and len(names_t) != num_classes - label_offset:
            # (a name too few or too many mislabels every box, without a word)
            raise InvalidInputError(
                f"torchvision detector {config}: {len(names_t)} class_names given, but the model reports "
                f"{num_classes - label_offset} classes (num_classes={num_classes} less label_offset={label_offset})")
    elif num_classes - label_offset == 1:
        names_t = ("product",)
    else:  # unnamed classes are called by their numbers, all of them alike (not class 0 "product")
        names_t = tuple(str(i) for i in range(num_classes - label_offset))
    info = {
        "framework": "torchvision",
        "config": config,
        "checkpoint": os.fspath(checkpoint) if checkpoint is not None else None,
        "num_classes": num_classes,
        "device": dev,
        "input_size": size,
        "score_thr": float(score_thr),
        "max_detections": max_detections,
    }
    if dropped:
        info["dropped_heads"] = ", ".join(dropped)
    return TorchvisionDetector(
        model=model,
        name=f"torchvision:{config}",
        input_size=size,
        score_thr=float(score_thr),
        device=dev,
        label_offset=label_offset,
        class_names=names_t,
        info=info,
    )
