"""MMDetection 3.x models as densedet-tile detectors (``--detector mmdet``).

``build(config=..., checkpoint=...)`` turns an MMDetection config file (and optionally a
checkpoint) into a :class:`MMDetDetector`. mmdet, mmengine and mmcv are imported on the first
build only; with mmcv-lite (no compiled ``mmcv._ext``) the torchvision shim in
:mod:`densedet_tile.detector.mmcv_shim` supplies the ops inference needs. The same first build
registers the mmdet 1.x box arithmetic the DenseDet configs select
(:mod:`densedet_tile.detector.mmdet_legacy`: ``DenseDet1x*`` coder, RoI extractor, box head).

Frames: ``predict`` takes RGB uint8 tiles and returns boxes in each tile's own pixel frame
(mmdet's ``rescale=True`` undoes its Resize; boxes are clipped to the tile).

Input scale: ``input_size`` is, in order, the ``input_size`` option, the config's top-level
``tile_input_size``, else None. When it is set the engine resizes each tile so its longer side
equals it, and the config's test ``Resize`` is set to that square so mmdet does not resize
again; when it is None tiles go in at native size and the config's own Resize applies.
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from typing import Any, Literal, Sequence

import numpy as np

from ..configs import find_config
from ..errors import DetectorError, InvalidInputError, MissingDependencyError, one_line
from ..types import PRECISIONS, Detections, check_input_size
from .base import (check_tiles, engine_input_size, refuse_nonfinite_weights, resolve_device, score_floor_for,
                   weights_there)
from .checkpoints import load_checkpoint, restricted_getattr, state_dict_of

__all__ = ["build", "MMDetDetector", "Precision"]

log = logging.getLogger(__name__)

Precision = Literal["fp32", "fp16", "bf16"]
_FEATURE = "the mmdet detector"


def _import_stack() -> None:
    """Import torch, mmengine, mmcv and mmdet (installing the op shim if needed, and then
    torchvision, whose ops it runs) with their import noise muted; a missing one is a
    :class:`MissingDependencyError` naming it."""
    # torch first: mmdet imports without it but not its models (a bare ModuleNotFoundError)
    for pkg, dist in (("torch", "torch"), ("mmengine", "mmengine"), ("mmcv", "mmcv-lite"), ("mmdet", "mmdet")):
        try:
            __import__(pkg)
        except ImportError as exc:
            raise MissingDependencyError(_FEATURE, dist, "mmdet", exc) from exc
    from . import mmcv_shim

    if mmcv_shim.install():
        # the shim runs torchvision's ops, only once a tile does: without torchvision every image
        # failed instead of one line here (full mmcv has its own compiled ops)
        try:
            __import__("torchvision")
        except ImportError as exc:
            raise MissingDependencyError(_FEATURE, "torchvision", "mmdet", exc) from exc
    _find_packages_without_pkg_resources()
    global _STACK_READY
    with _STACK_LOCK:
        if _STACK_READY:
            return
        # mmcv/mmdet warn on import about moved modules and deprecated paths; not ours to fix.
        # The filters are the process's, whatever the thread (Python 3.11): muted once, at the
        # first build, and by one thread at a time, not at every build (two builds in two threads
        # overlapping could leave the process's warnings muted for good, one's "ignore" restored
        # after the other had put the filters back)
        _import_models()
        _STACK_READY = True


def _import_models() -> None:
    """mmdet's model components (and the 1.x arithmetic the DenseDet configs select), their
    import noise muted; once per process, by :func:`_import_stack`."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mmdet.models  # noqa: F401  (registers every model component)
        import mmdet.datasets.transforms  # noqa: F401
        import mmdet.structures  # noqa: F401

        # the 1.x box arithmetic the DenseDet configs select (DenseDet1x* coder, RoI extractor, head)
        from . import mmdet_legacy  # noqa: F401


#: The mmdet stack is imported (:func:`_import_stack`), by one thread at a time.
_STACK_LOCK = threading.Lock()
_STACK_READY = False


def _installed_path(package: str) -> str:
    """The folder of an installed package by its name (``mmdet``, or a distribution such as
    ``mmpretrain``), found without ``pkg_resources``."""
    import importlib.metadata
    import importlib.util

    names = [package.replace("-", "_")]
    try:
        top = importlib.metadata.distribution(package).read_text("top_level.txt") or ""
        names += [t.strip() for t in top.splitlines() if t.strip()]
    except importlib.metadata.PackageNotFoundError:
        pass
    for name in names:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None:
            return os.path.dirname(spec.origin)
    raise ModuleNotFoundError(f"{package} is not installed")


def _is_installed(package: str) -> bool:
    try:
        _installed_path(package)
    except (ModuleNotFoundError, ValueError):
        return False
    return True


def _find_packages_without_pkg_resources() -> None:
    """mmengine resolves a config's ``_base_ = 'mmdet::...'`` through ``pkg_resources``, which
    setuptools no longer ships (81 and later): without it every such config failed to parse.
    Where ``pkg_resources`` is missing, mmengine's config module is given lookups that use
    importlib instead (same answers for an installed package)."""
    import importlib.util

    if importlib.util.find_spec("pkg_resources") is not None:
        return
    import mmengine.config.config as mm_config

    mm_config.get_installed_path = _installed_path
    mm_config.is_installed = _is_installed


_check_size = check_input_size


def _set_score_thr(test_cfg: Any, thr: float) -> None:
    """Lower/raise the model's own score threshold so boxes down to ``thr`` reach us."""
    if test_cfg is None:
        return
    if "rcnn" in test_cfg and test_cfg["rcnn"] is not None:
        test_cfg["rcnn"]["score_thr"] = thr
    elif "score_thr" in test_cfg:
        test_cfg["score_thr"] = thr


def _tile_pipeline(cfg: Any, input_size: int | None) -> list[dict]:
    """The config's test pipeline, reading arrays instead of files (and resizing to input_size)."""
    import copy

    if cfg.get("test_pipeline") is not None:
        steps = copy.deepcopy(list(cfg.test_pipeline))
    else:
        try:
            steps = copy.deepcopy(list(cfg.test_dataloader.dataset.pipeline))
        except (AttributeError, KeyError) as exc:
            raise DetectorError("mmdet config has neither test_pipeline nor test_dataloader.dataset.pipeline") from exc
    out: list[dict] = []
    for step in steps:
        step = dict(step)
        kind = str(step.get("type", "")).split(".")[-1]
        if kind in ("LoadImageFromFile", "LoadImageFromNDArray"):
            step = dict(type="mmdet.LoadImageFromNDArray")
        elif kind == "LoadAnnotations":
            continue  # inference only
        elif kind == "Resize" and input_size is not None:
            step.pop("scale_factor", None)
            step.update(scale=(input_size, input_size), keep_ratio=True)
        out.append(step)
    if not out or out[0].get("type") != "mmdet.LoadImageFromNDArray":
        out.insert(0, dict(type="mmdet.LoadImageFromNDArray"))
    return out


class MMDetDetector:
    """A built MMDetection model behind the :class:`~densedet_tile.detector.base.Detector` protocol.

    Attributes: ``name`` (``"mmdet:<config stem>"``), ``input_size`` (int or None, see module
    doc), ``class_names`` (tuple of str, index = label), ``device``, ``precision``, ``info``
    (a JSON-ready dict describing the model), ``model`` (the torch module, eval mode).
    """

    #: Tiles are resized with OpenCV-style bilinear sampling, as the usual training pipelines
    #: (mmdet, torchvision transforms, exporters' runners) do.
    resize_filter = "bilinear"

    def __init__(
        self,
        *,
        model: Any,
        pipeline: Any,
        name: str,
        input_size: int | None,
        score_thr: float,
        device: str,
        precision: Precision,
        class_names: tuple[str, ...],
        info: dict[str, Any],
    ) -> None:
        self.model = model
        self._pipeline = pipeline
        self._pipelines: dict[int, Any] = {}  # the test pipeline resizing to each size a run asked
        self.name = name
        self.input_size = input_size
        self.score_thr = float(score_thr)
        self.score_floor = score_floor_for(self.score_thr)  # a little lower, for the count range
        self.device = device
        self.precision = precision
        self.class_names = class_names
        self.info = info
        self._precision_hooks: tuple[Any, ...] = ()  # the half-precision hooks, removed by to("cpu")
        self._box_cap: int | None = None  # the config's max_per_img (a tile that fills it lost boxes)
        self._box_cap_key = ""  # the cfg_options key that sets it
        self._cap_warned = False

    def photo_scale(self, width: int, height: int) -> float | None:
        """The scale the config's whole-photo rule (``photo_scale = (long, short)``) gives a photo,
        within the [0.01, 100] the engine takes from a detector's rule (an image 17 px high made
        105.9 and failed: an outside review; the built-in model's rule stops at 100 too)."""
        rule = self.model.cfg.get("photo_scale") if hasattr(self.model, "cfg") else None
        if not rule:
            return None
        long_side, short_side = (float(v) for v in rule)
        scale = min(long_side / max(width, height, 1), short_side / max(min(width, height), 1))
        return min(100.0, max(0.01, scale))

    def to(self, device: str) -> "MMDetDetector":
        """Move the model to ``device`` (the engine's CPU fallback after running out of GPU memory).
        An fp16 backbone and neck go back to fp32 off CUDA (half convolutions are a CUDA thing)."""
        device = str(device)
        if self.precision == "fp16" and not device.startswith("cuda"):
            for handle in getattr(self, "_precision_hooks", ()):
                handle.remove()
            self._precision_hooks = ()
            self.model.backbone.float()
            if getattr(self.model, "neck", None) is not None:
                self.model.neck.float()
            self.precision = "fp32"
            self.info["precision"] = "fp32"
        self.model.to(device)
        self.device = device
        self.info["device"] = device
        return self

    def __repr__(self) -> str:
        return f"MMDetDetector(name={self.name!r}, device={self.device!r}, input_size={self.input_size})"

    def _pipeline_for(self, size: int | None) -> Any:
        """The test pipeline for tiles the engine resized to ``size``: its Resize maps them onto
        themselves (a stock config's ``Resize(1333, 800)`` would undo a run's scale); the
        pipeline built with the detector for tiles as they come (None) or at its own size."""
        if size is None or size == self.input_size or not hasattr(self.model, "cfg"):
            return self._pipeline
        if size not in self._pipelines:
            from mmcv.transforms import Compose

            self._pipelines[size] = Compose(_tile_pipeline(self.model.cfg, size))
        return self._pipelines[size]

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """Detect in a batch of tiles: HxWx3 uint8 RGB each -> one Detections per tile (tile pixels)."""
        import torch

        tiles = check_tiles(tiles)
        if not tiles:
            return []
        inputs, samples = [], []
        pipeline = self._pipeline_for(engine_input_size())
        for i, t in enumerate(tiles):
            # mmdet's convention for in-memory images is BGR (its preprocessor flips to RGB).
            packed = pipeline(dict(img=np.ascontiguousarray(t[:, :, ::-1]), img_id=i))
            inputs.append(packed["inputs"])
            samples.append(packed["data_samples"])
        with torch.inference_mode():
            results = self.model.test_step(dict(inputs=inputs, data_samples=samples))
        out: list[Detections] = []
        for t, res in zip(tiles, results):
            inst = res.pred_instances
            if self._box_cap is not None and len(inst) >= self._box_cap and not self._cap_warned:
                # stock configs keep 100 boxes per image; a dense shelf tile holds more
                self._cap_warned = True
                cap, key = self._box_cap, self._box_cap_key
                log.warning("mmdet detector %s returned its config's limit of %d boxes for a tile, so boxes "
                            "were probably lost there; raise it, e.g. --detector-option cfg_options="
                            "'{\"%s\": %d}', or use smaller tiles", self.name, cap, key, max(400, 4 * cap))
            boxes = inst.bboxes.detach().float().cpu().numpy().reshape(-1, 4)
            scores = inst.scores.detach().float().cpu().numpy().reshape(-1)
            labels = inst.labels.detach().cpu().numpy().astype(np.int64).reshape(-1)
            keep = scores >= self.score_floor
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            h, w = t.shape[:2]
            boxes = np.clip(boxes, 0.0, np.array([w, h, w, h], dtype=np.float32))
            out.append(Detections(boxes.astype(np.float32), scores.astype(np.float32), labels))
        return out


def _add_precision_hooks(model: Any, precision: Precision) -> tuple[Any, ...]:
    """Run backbone + neck in half precision and the heads in fp32.

    ``torch.autocast`` fails inside mmdet's RoI heads (index_put with mixed dtypes), so instead
    the backbone and neck weights are cast and hooks convert their input down and their output
    features back to float32. The backbone/neck hold nearly all of the FLOPs.
    """
    import torch

    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    backbone = model.backbone
    neck = getattr(model, "neck", None)
    backbone.to(dtype)
    if neck is not None:
        neck.to(dtype)

    def to_half(_module: Any, args: tuple) -> tuple:
        return tuple(a.to(dtype) if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def to_float(_module: Any, _args: Any, output: Any) -> Any:
        if torch.is_tensor(output):
            return output.float()
        return type(output)(o.float() if torch.is_tensor(o) else o for o in output)

    return (backbone.register_forward_pre_hook(to_half),
            (neck if neck is not None else backbone).register_forward_hook(to_float))



def read_config(cfg_path: Any, config: Any) -> Any:
    """The mmengine Config of the file ``cfg_path`` (named ``config`` in errors): a file that
    cannot be parsed is one line, not mmengine's traceback."""
    from mmengine.config import Config

    try:
        return Config.fromfile(str(cfg_path))
    except Exception as exc:  # mmengine raises many kinds for a bad config
        raise DetectorError(f"mmdet config {config}: cannot be parsed ({one_line(exc)})") from exc


def build_model(cfg: Any, config: Any) -> Any:
    """The torch model of ``cfg`` (its ``model`` entry, in its default scope), random weights;
    a config that builds none is one line naming ``config``."""
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS

    if "model" not in cfg:
        raise DetectorError(f"mmdet config {config}: has no 'model' entry")
    init_default_scope(cfg.get("default_scope", "mmdet"))
    # (no warnings filter here: the filters are the whole process's, and a build in one thread
    # muted the warnings of every other meanwhile; the DenseDet configs build without a warning)
    try:
        return MODELS.build(cfg.model)
    except Exception as exc:
        raise DetectorError(f"mmdet config {config}: model cannot be built ({one_line(exc)})") from exc

def build(
    *,
    config: str | None,
    checkpoint: str | None,
    device: str = "auto",
    input_size: int | None = None,
    score_thr: float = 0.05,
    precision: Precision = "fp32",
    cfg_options: dict[str, Any] | None = None,
    **options: Any,
) -> MMDetDetector:
    """Build an MMDetection detector from a config file and an optional checkpoint.

    ``config``: a shipped config name (``densedet-x101``, see :mod:`densedet_tile.configs`) or
    the path of an MMDetection 3.x config file.
    ``checkpoint``: a 3.x checkpoint (``state_dict`` with the config's keys; convert a 1.x
    DenseDet checkpoint with ``densedet-tile convert-checkpoint``) or None for random weights.
    ``score_thr``: the threshold the boxes are served at; ``predict`` returns them down to
    :func:`~densedet_tile.detector.base.score_floor_for` of it (0.1 lower, for the engine's count
    range), which is also set as the model's own test score_thr.
    ``precision``: "fp32", or "fp16" (CUDA) / "bf16" for a half-precision backbone and neck.
    ``cfg_options``: dotted-key overrides merged into the config (mmengine ``merge_from_dict``).
    """
    if options:
        raise InvalidInputError(f"mmdet detector: unknown option(s) {', '.join(sorted(options))}")
    if not config:
        raise InvalidInputError("mmdet detector: a config is required (config=, --config NAME or PATH)")
    cfg_path = find_config(config)
    if not isinstance(score_thr, (int, float)) or not (0.0 <= float(score_thr) <= 1.0):
        raise InvalidInputError(f"score_thr must be in [0, 1], got {score_thr!r}")
    if precision not in PRECISIONS:
        raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    input_size = _check_size(input_size, "input_size")
    if checkpoint is not None and isinstance(checkpoint, (str, os.PathLike)):
        weights_there(checkpoint)  # (a typo said before the packages it would need)
    # the packages first: a light install asked for --device cuda was told to install [torch],
    # which has no mmdet (an outside review)
    _import_stack()
    dev = resolve_device(device)
    if precision == "fp16" and not dev.startswith("cuda"):
        raise InvalidInputError("precision 'fp16' needs a CUDA device; use 'bf16' or 'fp32' on CPU")

    from mmcv.transforms import Compose

    cfg = read_config(cfg_path, config)
    if cfg_options is not None and not isinstance(cfg_options, dict):
        raise InvalidInputError('mmdet detector: cfg_options must be a dict of dotted keys, e.g. '
                                f"cfg_options='{{\"model.test_cfg.rcnn.max_per_img\": 300}}', got {cfg_options!r}")
    if cfg_options:
        _check_cfg_options(cfg, cfg_options, config)
        cfg.merge_from_dict(cfg_options)
    if "model" not in cfg:
        raise DetectorError(f"mmdet config {config}: has no 'model' entry")
    if input_size is None:
        input_size = _check_size(cfg.get("tile_input_size"), f"{config}: tile_input_size")
    _set_score_thr(cfg.model.get("test_cfg"), score_floor_for(float(score_thr)))
    cfg.model.pop("pretrained", None)
    model = build_model(cfg, config)

    classes: tuple[str, ...] = tuple(cfg.get("metainfo", {}).get("classes", ()) or ())
    ckpt_info: dict[str, Any] = {"checkpoint": None}
    if checkpoint is not None:
        named = _load_weights(model, checkpoint)
        heads = _head_classes(model)
        if named and heads is not None and len(named) != heads:
            # a checkpoint carrying its training dataset's names (80 COCO ones for a one-class
            # head) would label the products "person": the config's names win
            log.warning("mmdet checkpoint %s names %d classes but the model's head has %d; using the config's names",
                        os.fspath(checkpoint), len(named), heads)
            named = ()
        classes = named or classes
        ckpt_info = {"checkpoint": os.fspath(checkpoint)}
    else:
        log.warning("mmdet detector %s: no checkpoint given, running with random weights", cfg_path.name)
    if not classes:
        classes = tuple(f"class_{i}" for i in range(_num_classes(cfg.model)))
    model.cfg = cfg
    model.to(dev)
    model.eval()
    hooks = _add_precision_hooks(model, precision) if precision != "fp32" else ()
    pipeline = Compose(_tile_pipeline(cfg, input_size))
    info = {
        "framework": "mmdet",
        "config": str(cfg_path),
        **ckpt_info,
        "architecture": cfg.model.get("type"),
        "device": dev,
        "precision": precision,
        "input_size": input_size,
        "photo_scale": str(tuple(cfg.get("photo_scale"))) if cfg.get("photo_scale") else None,
        "score_thr": float(score_thr),
        "classes": list(classes),
        "mmdet_ops": "torchvision shim" if _shim_active() else "mmcv._ext",
    }
    det = MMDetDetector(
        model=model,
        pipeline=pipeline,
        name=f"mmdet:{cfg_path.stem}",
        input_size=input_size,
        score_thr=float(score_thr),
        device=dev,
        precision=precision,
        class_names=classes,
        info=info,
    )
    det._precision_hooks = hooks
    det._box_cap, det._box_cap_key = _box_cap(cfg.model)
    if _reports_1x_boxes(model):
        # 1.x's "+1" on x2 and y2 is in the photo's pixels: the engine keeps it so when it
        # scales back the boxes of a tile it resized (pipeline._to_tile_frame)
        from .mmdet_legacy import REPORT_OFFSET

        det.box_end_offset = REPORT_OFFSET
    return det


def _reports_1x_boxes(model: Any) -> bool:
    """Whether ``model``'s final box head reports boxes as MMDetection 1.x did (x2 + 1, y2 + 1)."""
    heads = getattr(getattr(model, "roi_head", None), "bbox_head", None)
    last = heads[-1] if isinstance(heads, (list, tuple)) or hasattr(heads, "__getitem__") else heads
    return type(last).__name__ == "DenseDet1xShared2FCBBoxHead"


def _check_cfg_options(cfg: Any, options: dict[str, Any], config: str) -> None:
    """Look at each dotted key before it is merged: a number given as text is refused (the model
    would fail on every tile), and a key the config does not have is named with the nearest one
    it has (mmengine adds it silently, and a misspelt key changes nothing or fails every tile)."""
    import difflib

    for key, value in options.items():
        if not isinstance(key, str) or not key:
            raise InvalidInputError(f"mmdet detector: cfg_options keys must be dotted names, got {key!r}")
        if key in ("model.test_cfg.rcnn.score_thr", "model.test_cfg.score_thr"):
            # the engine writes its own there (a little under score_thr, for the count range): a
            # value given here was replaced without a word (an outside review)
            raise InvalidInputError(f"mmdet detector: cfg_options {key} is set from the detector's score_thr; "
                                    "give the threshold as --score-thr (score_thr= in Python)")
        node: Any = cfg
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not hasattr(node, "keys") or part not in node:
                have = sorted(str(k) for k in node.keys()) if hasattr(node, "keys") else []
                near = difflib.get_close_matches(part, have, n=1)
                where = ".".join(parts[:depth]) or "the top level"
                log.warning("mmdet config %s has no %r under %s, so cfg_options adds %s%s", config, part, where, key,
                            f" (did you mean {'.'.join(parts[:depth] + [near[0]])}?)" if near else "")
                break
            node = node[part]
        else:
            old = node
            if isinstance(old, (int, float)) and not isinstance(old, bool) and isinstance(value, str):
                raise InvalidInputError(f"mmdet detector: cfg_options {key} must be a number like the config's "
                                        f"{old!r}, got the text {value!r}")


def _box_cap(model_cfg: Any) -> tuple[int | None, str]:
    """The most boxes the config lets the model return per image and the cfg_options key that
    sets it (``model.test_cfg.rcnn.max_per_img`` of a two-stage model, ``model.test_cfg.max_per_img``
    of a one-stage one); the number is None when it sets none."""
    test_cfg = model_cfg.get("test_cfg") or {}
    key = "model.test_cfg.rcnn.max_per_img" if "rcnn" in test_cfg else "model.test_cfg.max_per_img"
    value = (test_cfg.get("rcnn") or {}).get("max_per_img") if "rcnn" in test_cfg else test_cfg.get("max_per_img")
    return (int(value) if isinstance(value, (int, float)) and value > 0 else None), key


def _shim_active() -> bool:
    from . import mmcv_shim

    return mmcv_shim.is_active()


def _num_classes(model_cfg: Any) -> int:
    for head_key in ("roi_head", "bbox_head"):
        head = model_cfg.get(head_key)
        if head is None:
            continue
        if head_key == "roi_head":
            head = head.get("bbox_head")
        if isinstance(head, (list, tuple)):
            head = head[-1]
        if head is not None and "num_classes" in head:
            return int(head["num_classes"])
    return 1


def _head_classes(model: Any) -> int | None:
    """The class count of the model's box head (a cascade's first stage; a one-stage head), or
    None when it does not say."""
    head = getattr(getattr(model, "roi_head", None), "bbox_head", None) or getattr(model, "bbox_head", None)
    if head is not None and not hasattr(head, "num_classes"):  # a cascade's list of stages
        try:
            head = head[0]
        except (TypeError, IndexError, KeyError):
            return None
    n = getattr(head, "num_classes", None)
    return int(n) if isinstance(n, int) and n > 0 else None


def _load_weights(model: Any, checkpoint: str | os.PathLike[str]) -> tuple[str, ...]:
    """Load a checkpoint safely into ``model``; return the class names it records (or ())."""
    extra: list[Any] = []
    try:
        from mmengine.logging.history_buffer import HistoryBuffer

        # the message_hub of checkpoints saved by mmengine runners holds HistoryBuffers, which
        # pickle their statistics methods as getattr(HistoryBuffer, name)
        extra += [HistoryBuffer, restricted_getattr([HistoryBuffer])]
    except ImportError:  # pragma: no cover - mmengine present whenever this runs
        pass
    ckpt = load_checkpoint(checkpoint, extra_safe_globals=extra)
    sd = state_dict_of(ckpt, source=f"checkpoint {os.fspath(checkpoint)}")
    own = model.state_dict()
    missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in own]
    mismatched = [k for k in sd if k in own and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        hint = " (a 1.x checkpoint? run densedet-tile convert-checkpoint)" if any(
            k.startswith("bbox_head.") for k in unexpected
        ) else ""
        raise DetectorError(f"checkpoint {os.fspath(checkpoint)} does not fit the config: {'; '.join(parts)}{hint}")
    refuse_nonfinite_weights(sd, f"checkpoint {os.fspath(checkpoint)}")
    model.load_state_dict(sd, strict=False)
    meta = ckpt.get("meta", {}) if isinstance(ckpt, dict) else {}
    names: Any = None
    if isinstance(meta, dict):
        names = (meta.get("dataset_meta") or {}).get("classes") or meta.get("CLASSES")
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return tuple(names)
    return ()
