"""The built-in default detector: a small heatmap (CenterNet/TTFNet-style) product detector.

The network ("ShelfNet", :mod:`densedet_tile.detector.shelfnet`) is a compact residual CNN with a
top-down feature pyramid that ends at output stride 8. For every cell of that grid it predicts

* a product-centre heatmap (one class, "product"), trained with a Gaussian-smoothed focal loss;
* four distances (left, top, right, bottom) from the cell centre to the product's box edges,
  in input pixels, trained with a GIoU loss over a Gaussian region around each centre.

Decoding is a 3x3 max-pool peak search, a score threshold, top-k and an in-tile NMS. It suits
dense rows of same-class objects: neighbours that touch still have separate centres.

Two runtimes, one decode. The weights ship twice as package data: ``weights/default.onnx``
(int8 ONNX, quantised per channel and calibrated on generated shelves, exported from the other by
``scripts/export_default_onnx.py``), run by ONNX Runtime
on the CPU -- the light install, no torch -- and ``weights/default.pt`` (an fp16 state dict plus
its config, ``torch.load(weights_only=True)``), run by torch for CUDA, fp16 or user checkpoints
(:func:`choose_runtime` has the rule). Either runtime produces only the network's raw outputs;
this module's numpy :func:`decode` turns them into boxes for both, with the settings of
:class:`DecodeSettings` (resolved in one place, :func:`model_config`). This module imports no
torch: ``ShelfNet`` is loaded from :mod:`.shelfnet` on first use.

The weights were trained from scratch on synthetic shelves (:mod:`densedet_tile.synth.shelves`, a
test/training generator the detector does not import) by
``scripts/train_default.py``. See MODEL_CARD.md.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import DetectorError, InvalidInputError, MissingDependencyError
from ..types import Detections
from .base import check_threads, check_tiles, model_file, ort_session_options, resolve_device, score_floor_for, weights_there
from .shelfnet_config import DEFAULT_CONFIG
from .stacks import layer_counts, split_layers

__all__ = ["ShelfNet", "DefaultDetector", "load_default", "build_from_checkpoint", "decode", "build_targets",
           "DecodeSettings", "OnnxRunner", "choose_runtime", "model_config", "served_threshold", "usable_cpus",
           "DEFAULT_CONFIG", "WEIGHTS_FILE", "ONNX_FILE", "RUNTIMES"]

WEIGHTS_FILE = "default.pt"
ONNX_FILE = "default.onnx"

#: Runtimes of the built-in model (``runtime=`` / ``--detector-option runtime=...``).
RUNTIMES: tuple[str, ...] = ("auto", "onnxruntime", "torch")
_RUNTIME_ALIASES = {"onnx": "onnxruntime", "ort": "onnxruntime"}


#: Settings that are the package's own, whatever a weights file says (tuned after training,
#: so the same weights serve with updated thresholds).
_DECODE_KEYS = ("score_thr", "count_band", "nms_iou", "max_det", "topk", "split_stacks")


def model_config(ckpt_config: Mapping[str, Any] | None) -> dict[str, Any]:
    """The one place the built-in model's settings are resolved, for both runtimes.

    Architecture and input scale (``widths``, ``blocks``, ``neck``, ``input_size``, ``stride``,
    ``mean``, ``std``) come from the weights file's config (the ``.pt`` checkpoint's ``config``
    or the ``.onnx`` file's ``densedet_config`` metadata, a copy of it); the decoding settings
    (``score_thr``, ``count_band``, ``nms_iou``, ``max_det``, ``topk``) are always :data:`DEFAULT_CONFIG`'s.
    """
    return {**DEFAULT_CONFIG, **dict(ckpt_config or {}), **{k: DEFAULT_CONFIG[k] for k in _DECODE_KEYS}}


def threshold_problem(info: Mapping[str, Any] | None) -> str | None:
    """What is wrong with a weights file's ``info["score_thr"]`` (a number in (0, 1) where it is
    given), or None: a malformed one was served at the default without a word."""
    if not isinstance(info, Mapping) or "score_thr" not in info:
        return None
    thr = info["score_thr"]
    if isinstance(thr, (int, float)) and not isinstance(thr, bool) and 0.0 < float(thr) < 1.0:
        return None
    return f"its info's score_thr must be a number between 0 and 1, got {thr!r}"


def served_threshold(info: Mapping[str, Any] | None, default: float) -> float:
    """The score threshold a weights file asks to be served at: its ``info["score_thr"]`` when
    it has one (``densedet-tile adapt`` writes it: self-training moves the scores), else
    ``default``. An explicit ``score_thr`` from the caller wins over both."""
    thr = (info or {}).get("score_thr")
    if isinstance(thr, (int, float)) and not isinstance(thr, bool) and 0.0 < float(thr) < 1.0:
        return float(thr)
    return float(default)


@dataclass(frozen=True)
class DecodeSettings:
    """Everything between raw network outputs and boxes: input scale, normalisation, decoding.

    ``score_thr`` is the threshold the boxes are served at; peaks are decoded down to
    ``score_floor`` (``score_thr`` less the config's ``count_band`` and
    :data:`~densedet_tile.types.CONFIRM_BAND`) so that the engine can count the boxes just below
    the threshold too, each count merged as a run at its threshold would (:attr:`densedet_tile.types.RunSpec.count_band`)."""

    input_size: int
    stride: int
    score_thr: float
    score_floor: float
    nms_iou: float
    max_det: int
    topk: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    split_stacks: bool = bool(DEFAULT_CONFIG["split_stacks"])

    @classmethod
    def from_config(cls, config: Mapping[str, Any], score_thr: float | None = None) -> "DecodeSettings":
        thr = float(config["score_thr"] if score_thr is None else score_thr)
        if not 0.0 <= thr <= 1.0:  # the range RunSpec and every adapter take
            raise InvalidInputError(f"score_thr must be in [0, 1], got {thr!r}")
        return cls(
            input_size=int(config["input_size"]), stride=int(config["stride"]), score_thr=thr,
            score_floor=score_floor_for(thr, float(config.get("count_band") or 0.0)),
            nms_iou=float(config["nms_iou"]), max_det=int(config["max_det"]),
            topk=int(config.get("topk") or 2 * int(config["max_det"])),
            mean=tuple(float(v) for v in config["mean"]), std=tuple(float(v) for v in config["std"]),  # type: ignore[arg-type]
            split_stacks=_check_split_stacks(config.get("split_stacks", DEFAULT_CONFIG["split_stacks"])),
        )


# ----------------------------------------------------------------------------------------------
# decoding (numpy; shared by both runtimes)
# ----------------------------------------------------------------------------------------------
def _peaks(logits: np.ndarray) -> np.ndarray:
    """Flat indices of the cells of an (h, w) map equal to the max of their 3x3 neighbourhood."""
    h, w = logits.shape
    p = np.full((h + 2, w + 2), -np.inf, np.float32)
    p[1:-1, 1:-1] = logits
    m = np.maximum(p[:, :-2], p[:, 1:-1])
    m = np.maximum(m, p[:, 2:])  # (h + 2, w): row-wise max of 3
    m = np.maximum(np.maximum(m[:-2], m[1:-1]), m[2:])  # (h, w)
    return np.flatnonzero(logits >= m)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def decode_one(logits: np.ndarray, dist: np.ndarray, *, stride: int, score_thr: float, nms_iou: float,
               max_det: int, topk: int | None = None,
               clip: tuple[float, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one image from its raw outputs: ``logits`` (h, w), ``dist`` (4, h, w) pixels.

    Peaks are the cells whose logit is the largest of their 3x3 neighbourhood (the max-pool
    test, on logits so that saturated probabilities cannot make ties); a peak's score is the
    sigmoid of its logit. Peaks scoring at least ``score_thr`` are sorted by score (ties: the
    earlier cell), cut to ``topk`` (default ``2 * max_det``), turned into boxes around the cell
    centres and passed through the engine's exact greedy NMS (:func:`densedet_tile.merge.nms`,
    IoU strictly above ``nms_iou`` suppresses), keeping at most ``max_det``. With ``clip`` (w, h)
    the boxes are cut to the image ``[0, w] x [0, h]`` before the NMS: two boxes that differ
    only beyond the image's edge are one box there (left for the NMS to thin, not for the merge).

    Returns ``(boxes (N, 4) float32 xyxy input pixels, scores (N,) float32)`` by descending score.
    """
    from ..merge.nms import nms

    logits = np.asarray(logits, np.float32)
    dist = np.asarray(dist, np.float32)
    h, w = logits.shape
    idx = _peaks(logits)
    scores = _sigmoid(logits.reshape(-1)[idx])
    keep = scores >= np.float32(score_thr)
    idx, scores = idx[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[: int(topk if topk is not None else 2 * max_det)]
    idx, scores = idx[order], scores[order]
    half = stride / 2
    xs = ((idx % w) * stride + half).astype(np.float32)
    ys = ((idx // w) * stride + half).astype(np.float32)
    d = dist.reshape(4, -1)[:, idx]
    boxes = np.stack([xs - d[0], ys - d[1], xs + d[2], ys + d[3]], axis=1).astype(np.float32)
    ok = np.isfinite(boxes).all(axis=1)
    if not ok.all():
        boxes, scores = boxes[ok], scores[ok]
    if clip is not None:
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, clip[0])
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, clip[1])
        ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes, scores = boxes[ok], scores[ok]
    if boxes.shape[0] == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    k = nms(boxes, scores, float(nms_iou))[: int(max_det)]
    return boxes[k], scores[k]


def decode(
    heat_logits: Any,
    dist: Any,
    *,
    stride: int,
    score_thr: float,
    nms_iou: float,
    max_det: int,
    topk: int | None = None,
) -> list[tuple[Any, Any]]:
    """Turn network outputs into boxes, per image (the one decode both runtimes use).

    Args:
        heat_logits: (B, 1, h, w) centre logits. dist: (B, 4, h, w) ltrb distances in pixels.
            numpy arrays, or torch tensors (any device, any float dtype).
    Returns:
        One ``(boxes (N, 4) float32 xyxy in input pixels, scores (N,))`` pair per image, at most
        ``max_det`` boxes, sorted by score; torch tensors (on the CPU) when torch tensors came
        in, else numpy arrays. See :func:`decode_one` for the rule.
    """
    as_torch = type(heat_logits).__module__.startswith("torch")
    if as_torch:
        heat_logits = heat_logits.detach().float().cpu().numpy()
        dist = dist.detach().float().cpu().numpy()
    heat_logits = np.asarray(heat_logits, np.float32)
    dist = np.asarray(dist, np.float32)
    if heat_logits.ndim != 4 or heat_logits.shape[1] != 1 or dist.shape != (heat_logits.shape[0], 4, *heat_logits.shape[2:]):
        raise InvalidInputError(f"decode: expected heat (B, 1, h, w) and dist (B, 4, h, w), got {heat_logits.shape} "
                                f"and {dist.shape}")
    out = [decode_one(heat_logits[i, 0], dist[i], stride=stride, score_thr=score_thr, nms_iou=nms_iou,
                      max_det=max_det, topk=topk) for i in range(heat_logits.shape[0])]
    if as_torch:
        import torch

        return [(torch.from_numpy(b), torch.from_numpy(s)) for b, s in out]
    return out


# ----------------------------------------------------------------------------------------------
# training targets (the inverse of decode)
# ----------------------------------------------------------------------------------------------
# Gaussian extent (fraction of the box) for the centre heatmap and the regression region.
HEAT_ALPHA = 0.54
REG_BETA = 0.54


def build_targets(boxes: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense training targets for one ``size`` x ``size`` image at ``stride``.

    Returns ``heat`` float32 (1, g, g) in [0, 1] with exactly 1 at each box's centre cell;
    ``box_t`` float32 (4, g, g) the xyxy box (input pixels) that each cell regresses;
    ``weight`` float32 (1, g, g) regression weights (per box: Gaussian, summing to log(area)).
    Where regions overlap, the smaller box wins (boxes are drawn largest first).
    """
    g = size // stride
    heat = np.zeros((g, g), np.float32)
    box_t = np.zeros((4, g, g), np.float32)
    weight = np.zeros((g, g), np.float32)
    if len(boxes) == 0:
        return heat[None], box_t, weight[None]
    wh = boxes[:, 2:] - boxes[:, :2]
    order = np.argsort(-(wh[:, 0] * wh[:, 1]), kind="stable")  # equal areas: in the given order on every CPU
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / stride
    for i in order:
        bw, bh = wh[i] / stride
        cx, cy = centres[i]
        ix, iy = min(int(cx), g - 1), min(int(cy), g - 1)
        sx, sy = max(HEAT_ALPHA * bw / 6, 0.3), max(HEAT_ALPHA * bh / 6, 0.3)
        rx, ry = int(3 * sx) + 1, int(3 * sy) + 1
        x0, x1 = max(0, ix - rx), min(g, ix + rx + 1)
        y0, y1 = max(0, iy - ry), min(g, iy + ry + 1)
        xs = np.arange(x0, x1) - ix
        ys = np.arange(y0, y1) - iy
        gau = np.exp(-(xs[None, :] ** 2) / (2 * sx * sx) - (ys[:, None] ** 2) / (2 * sy * sy))
        np.maximum(heat[y0:y1, x0:x1], gau, out=heat[y0:y1, x0:x1])
        # regression region: Gaussian of the same shape, cut to the (beta-scaled) box
        bx0, bx1 = (cx - REG_BETA * bw / 2), (cx + REG_BETA * bw / 2)
        by0, by1 = (cy - REG_BETA * bh / 2), (cy + REG_BETA * bh / 2)
        cxs = np.arange(x0, x1) + 0.5
        cys = np.arange(y0, y1) + 0.5
        inside = ((cxs[None, :] >= bx0) & (cxs[None, :] <= bx1)) & ((cys[:, None] >= by0) & (cys[:, None] <= by1))
        inside[iy - y0, ix - x0] = True
        rw = np.where(inside, gau, 0.0)
        rw *= np.log(max(wh[i, 0] * wh[i, 1], 2.0)) / rw.sum()
        sel = inside
        weight[y0:y1, x0:x1][sel] = rw[sel]
        for c in range(4):
            box_t[c, y0:y1, x0:x1][sel] = boxes[i, c]
    return heat[None], box_t, weight[None]


# ----------------------------------------------------------------------------------------------
# runtimes
# ----------------------------------------------------------------------------------------------
def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota and by
    ``OMP_NUM_THREADS`` when that is set (Ray sets it to an actor's CPU allotment, and torch
    follows it too)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    omp = os.environ.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return max(1, n)


def _import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise MissingDependencyError("the built-in model on ONNX Runtime", "onnxruntime", None, exc) from exc
    return onnxruntime


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("the built-in model on torch (CUDA, fp16 or a .pt checkpoint)", "torch",
                                     "torch", exc) from exc
    return torch


class OnnxRunner:
    """Runs the exported network on ONNX Runtime (CPU): uint8 NHWC batch in, raw outputs out.

    ``source`` is an ``.onnx`` path or the file's bytes. ``threads`` sets ONNX Runtime's
    intra-op threads (default: :func:`usable_cpus`); inter-op parallelism is off (one graph,
    run sequentially). ``metadata`` is the file's custom metadata (``densedet_config`` ...).
    """

    runtime = "onnxruntime"

    def __init__(self, source: "str | os.PathLike[str] | bytes", *, threads: int | None = None,
                 label: str | None = None) -> None:
        ort = _import_onnxruntime()
        self.threads = check_threads(threads) or usable_cpus()
        self.device = "cpu"
        opts = ort_session_options(ort, self.threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.label = label or (os.fspath(source) if not isinstance(source, (bytes, bytearray)) else ONNX_FILE)
        try:
            self.session = ort.InferenceSession(source if isinstance(source, (bytes, bytearray)) else os.fspath(source),
                                                sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"onnx model {self.label}: cannot be loaded ({' '.join(str(exc).split())[:200]})") from exc
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if names_in != ["input"] or sorted(names_out) != ["dist", "heat_logits"]:
            raise DetectorError(f"onnx model {self.label}: expected input 'input' and outputs 'heat_logits', 'dist' "
                                f"(a ShelfNet export), got {names_in} -> {names_out}")
        self.metadata: dict[str, str] = dict(self.session.get_modelmeta().custom_metadata_map)
        self.format = self.metadata.get("format", "fp32")
        self._mean: np.ndarray | None = None
        self._std: np.ndarray | None = None

    def config(self) -> dict[str, Any]:
        """The checkpoint config the file was exported with (``densedet_config`` metadata)."""
        try:
            return dict(json.loads(self.metadata.get("densedet_config", "{}")))
        except ValueError as exc:
            raise DetectorError(f"onnx model {self.label}: unreadable densedet_config metadata") from exc

    def training_info(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.metadata.get("densedet_info", "{}")))
        except ValueError:
            return {}

    def set_normalisation(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self._mean = np.asarray(mean, np.float32) * np.float32(255.0)
        self._std = np.asarray(std, np.float32) * np.float32(255.0)

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": "cpu", "precision": self.format, "threads": self.threads}

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._mean is None or self._std is None:
            raise DetectorError("OnnxRunner: set_normalisation was not called")
        x = np.empty((batch.shape[0], 3, batch.shape[1], batch.shape[2]), np.float32)
        for c in range(3):  # channel by channel: ~6x faster than one strided transpose
            plane = x[:, c]
            plane[...] = batch[..., c]
            plane -= self._mean[c]
            plane /= self._std[c]
        try:
            heat, dist = self.session.run(["heat_logits", "dist"], {"input": x})
        except Exception as exc:
            raise DetectorError(f"onnx model {self.label}: inference failed ({' '.join(str(exc).split())[:200]})") from exc
        return heat, dist


# ----------------------------------------------------------------------------------------------
# the Detector
# ----------------------------------------------------------------------------------------------
class DefaultDetector:
    """The packaged shelf-product detector; implements the :class:`Detector` protocol.

    Built by :func:`load_default` (or :func:`build_from_checkpoint`). ``model`` is a runner --
    :class:`OnnxRunner` or :class:`~densedet_tile.detector.shelfnet.TorchRunner` -- or, as in
    earlier versions, a torch ``ShelfNet`` (wrapped in a TorchRunner on ``device``).

    Attributes:
        input_size: longer tile side the model was trained for (640); the engine resizes each
            tile so its longer side equals it (a 1280 px tile is halved).
        name: ``"densedet-default"``. class_names: ``("product",)``.
        runtime: ``"onnxruntime"`` or ``"torch"`` (also in ``info``, hence in the output JSON).
        device: ``"cpu"`` on ONNX Runtime, a torch device on torch.
        settings: the :class:`DecodeSettings`; score_thr, score_floor, nms_iou, max_det, topk,
            stride mirror it.
        score_thr: the threshold the engine serves the boxes at. score_floor: the lowest score
            :meth:`predict` returns (``score_thr - 0.1``, not below 0.05: the count band and the
            confirmers below it): the engine drops the boxes in between before the merge and only
            counts them (the count range, see
            :attr:`densedet_tile.types.RunSpec.count_band`); at most ``scale_thr``, the weights'
            own threshold, which the products are measured at whatever the served threshold.
        info: training run, runtime, device, precision, threads and weights file.
    """

    name = "densedet-default"
    class_names: tuple[str, ...] = ("product",)
    #: Tiles are shrunk with the area filter, as the training images were drawn at size.
    resize_filter = "area"
    #: Median product height at the model input in the training stream (median over images of
    #: each image's median box height, seed 1, 40 samples at the shipped run's scale jitter
    #: x0.4 to x2: 79 px, quartiles 60 and 101). ``tile="auto"`` brings products to it.
    product_size = 80.0
    #: The whole-photo rule (:meth:`photo_scale`): the model pixels a whole phone photo is shown
    #: in, those of the 3264 x 2448 photo it was made for at its default tile (1280 px shown at
    #: 640: scale 0.5).
    photo_model_pixels = 1632 * 1224

    def photo_scale(self, width: int, height: int) -> float | None:
        """The scale a whole phone photo is shown at: the one that brings it to
        :attr:`photo_model_pixels`, so that the shelf's products reach the model at one size
        whatever camera or app made the photo (a 12 MP phone, a 50 MP mode, a messaging app's
        1600 px or 1024 px copy). At the default tile, a 3264 x 2448 photo was shown at 0.5 and a
        4032 x 3024 one at 0.5 too, its products 24 % larger (11 % more boxes on 22 real photos),
        an 8064 x 6048 one 2.5 times larger (products cut into lines of print: twice the boxes)
        and a 1600 px copy's products half as large (a fifth fewer boxes). Measured on 85 real
        SKU-110K photos of 15 sizes (MODEL_CARD.md, "Input scale"). Small images too: a photo
        under a megapixel was left to the tile until 2026-12-05 (shown 640 px long, its products
        a third of the size they reach the model at from a larger copy), and counted 35 to 39 % off
        the human counts at 0.1 to 0.8 MP against 23 % just over 1 MP; shown by the rule, 23 to 25 %
        (BENCHMARKS.md, "Small copies"). The engine applies it to photo-like images only
        (longer side at most twice the shorter) and, where it would enlarge an image 1.5 times
        past what the default tile shows, measures the products first and enlarges only until
        they reach 1.6 times :attr:`product_size`, or, where too few products can be measured,
        to 1.5 times the default tile's scale (a crop keeps about that scale; ``scale`` or
        ``tile="auto"`` decide there); then every photo is run whole once at
        the model's input, and one whose products would still reach the model at over 2.5
        times :attr:`product_size` (a close-up: the largest of 85 real whole photos came to
        2.43) is shown with them at 1.6 times instead. At most 100 (an image of 14 x 14 px or
        less), the most the engine takes from a detector's rule."""
        return min(100.0, math.sqrt(self.photo_model_pixels / max(float(width) * float(height), 1.0)))

    def __init__(self, model: Any, config: Mapping[str, Any], *, device: Any = None,
                 score_thr: float | None = None, info: Mapping[str, Any] | None = None,
                 fp16: bool = False, split_stacks: bool | None = None) -> None:
        self.config = dict(config)
        if split_stacks is not None:
            self.config["split_stacks"] = _check_split_stacks(split_stacks)
        if score_thr is None:  # the weights' own threshold (adapted weights carry one), else the package's
            score_thr = served_threshold(info, self.config["score_thr"])
        self.settings = DecodeSettings.from_config(self.config, score_thr)
        if getattr(model, "runtime", None) not in ("onnxruntime", "torch"):  # a bare ShelfNet
            from .shelfnet import TorchRunner

            model = TorchRunner(model, device=device if device is not None else "cpu", mean=self.settings.mean,
                                std=self.settings.std, fp16=fp16)
        if isinstance(model, OnnxRunner):
            model.set_normalisation(self.settings.mean, self.settings.std)
        self.runner = model
        self.runtime: str = model.runtime
        self.device = model.device
        self.input_size = self.settings.input_size
        self.stride = self.settings.stride
        self.score_thr = self.settings.score_thr
        #: The products' size is measured (to choose the scale) with boxes at the weights' own
        #: threshold at least, whatever lower one the boxes are served at: the close-up check
        #: shrinks a photo up to 6 times on a handful of boxes, and at 0.2 to 0.4 a few whole
        #: shelf sections boxed at low scores made 2 of the 85 real photos close-ups (4 to 7
        #: products counted for 162 and 171; an outside review)
        self.scale_thr = served_threshold(info, self.config["score_thr"])
        if self.settings.score_floor > self.scale_thr:
            # served above the weights' own threshold, the boxes are still decoded down to it, so
            # that the products are measured with the same boxes whatever the threshold (a model
            # built at 0.8 returned none under 0.7, and chose another scale than one at 0.6)
            self.settings = replace(self.settings, score_floor=self.scale_thr)
        self.score_floor = self.settings.score_floor
        self.nms_iou = self.settings.nms_iou
        self.max_det = self.settings.max_det
        self.topk = self.settings.topk
        trained = dict(info or {})
        if "device" in trained:  # the training run's device, not the one this runs on (describe() below)
            trained["trained_on"] = trained.pop("device")
        self.info = {**trained, **model.describe(), "split_stacks": self.settings.split_stacks}
        self._pad_value = np.round(np.asarray(self.settings.mean) * 255.0).astype(np.uint8)

    @property
    def split_stacks(self) -> bool:
        """Whether a box around a pile of identical packs is cut into one box per layer
        (:mod:`densedet_tile.detector.stacks`; on by default); settable."""
        return self.settings.split_stacks

    @split_stacks.setter
    def split_stacks(self, value: bool) -> None:
        self.settings = replace(self.settings, split_stacks=_check_split_stacks(value))
        self.info["split_stacks"] = self.settings.split_stacks

    @property
    def fp16(self) -> bool:
        """Whether the network runs under fp16 autocast (torch on CUDA); settable on torch."""
        return bool(getattr(self.runner, "fp16", False))

    @fp16.setter
    def fp16(self, value: bool) -> None:
        if hasattr(self.runner, "fp16"):
            self.runner.fp16 = bool(value)
            self.info.update(self.runner.describe())
        elif value:
            raise InvalidInputError("fp16 needs the torch runtime (load_default(runtime='torch', fp16=True))")

    @property
    def model(self) -> Any:
        """The torch module on the torch runtime; the ONNX Runtime session otherwise."""
        return getattr(self.runner, "model", None) or getattr(self.runner, "session", None)

    def to(self, device: Any) -> "DefaultDetector":
        """Move the network to ``device`` (torch runtime; ONNX Runtime runs on the CPU already).
        The engine calls ``to("cpu")`` when one tile no longer fits in GPU memory."""
        mover = getattr(self.runner, "to", None)
        if mover is None:
            if str(device) != "cpu":
                raise InvalidInputError(f"the built-in model on ONNX Runtime runs on the CPU, not {device!r}")
            return self
        mover(device)
        self.device = self.runner.device
        self.info.update(self.runner.describe())
        return self

    def __repr__(self) -> str:
        return (f"DefaultDetector(runtime={self.runtime!r}, input_size={self.input_size}, "
                f"score_thr={self.score_thr}, device={self.device})")

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """Detect products on a batch of RGB tiles.

        Args:
            tiles: HxWx3 uint8 RGB arrays; sizes may differ within the batch (they are padded
                bottom-right to a common multiple of 32, run once, and boxes clipped back).
        Returns:
            One :class:`Detections` per tile: tile-local xyxy float32 pixels, scores, labels 0;
            every box scoring at least ``score_floor`` (a little below ``score_thr``: the engine
            applies the threshold itself).
        """
        from ..merge.nms import nms

        tiles = check_tiles(tiles, allow_empty=True)
        if not tiles:
            return []
        sizes = [(t.shape[0], t.shape[1]) for t in tiles]
        results: list[Detections | None] = [None] * len(tiles)
        live = [i for i, (h, w) in enumerate(sizes) if h > 0 and w > 0]
        for i, (h, w) in enumerate(sizes):
            if h == 0 or w == 0:
                results[i] = Detections.empty()
        if live:
            ph = max(sizes[i][0] for i in live)
            pw = max(sizes[i][1] for i in live)
            ph, pw = -(-ph // 32) * 32, -(-pw // 32) * 32
            # pad with the normalisation mean: zero after normalising, like the network's own
            # zero padding at a true image border, so a padded tile sees what it would alone
            batch = np.empty((len(live), ph, pw, 3), np.uint8)
            for j, i in enumerate(live):
                h, w = sizes[i]
                batch[j, :h, :w] = tiles[i]
                # only the margins are padded (filling the whole batch with a 3-byte value first
                # took 3 ms a 640 px tile, more than copying the tile in)
                if w < pw:
                    batch[j, :h, w:] = self._pad_value
                if h < ph:
                    batch[j, h:] = self._pad_value
            heat, dist = self.runner(batch)
            s = self.settings
            for j, i in enumerate(live):
                h, w = sizes[i]
                # cut to the tile before the NMS: boxes reaching past its edge (into the padding)
                # by different amounts are one box inside it, and the merge takes each tile's
                # boxes as distinct
                boxes, scores = decode_one(heat[j, 0], dist[j], stride=s.stride, score_thr=s.score_floor,
                                           nms_iou=s.nms_iou, max_det=s.max_det, topk=s.topk, clip=(w, h))
                if s.split_stacks:
                    layers = layer_counts(tiles[i], boxes)
                    if (layers > 1).any():
                        boxes, scores = split_layers(boxes, scores, layers)
                        # two stacks the NMS let through (overlapping at IoU 0.5 or under) can
                        # still share layers: one of each pair of layers at once
                        k = np.sort(nms(boxes, scores, s.nms_iou))  # (in their order)
                        boxes, scores = boxes[k], scores[k]
                results[i] = Detections(boxes, scores, np.zeros(len(scores), np.int64))
        return [r if r is not None else Detections.empty() for r in results]


# ----------------------------------------------------------------------------------------------
# choosing a runtime, loading
# ----------------------------------------------------------------------------------------------
def _weights_kind(weights: Any) -> str | None:
    """None (the packaged weights), "onnx" (an .onnx file) or "torch" (a checkpoint file or dict)."""
    if weights is None:
        return None
    if isinstance(weights, Mapping):
        return "torch"
    if isinstance(weights, (str, os.PathLike)):
        return "onnx" if os.fspath(weights).lower().endswith(".onnx") else "torch"
    raise InvalidInputError(f"weights must be a path (.onnx, .pt) or a checkpoint dict, got {type(weights).__name__}")


#: how a torch checkpoint file begins: a zip archive (torch.save since 1.6) or a pickle (older)
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _looks_like_torch(path: "str | os.PathLike[str]") -> None:
    """Refuse, in one line naming it, a weights file that is not a torch checkpoint by its first
    bytes (a photo, an mmdet config, an ONNX file without its .onnx name) before torch is looked
    for: any name but .onnx goes to torch, and on the light install that said "needs the 'torch'
    package", a few GB to install to learn that the file was the wrong one (an outside review)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as exc:
        raise DetectorError(f"checkpoint {os.fspath(path)}: {exc.strerror or exc}") from None
    if head.startswith(_TORCH_MAGIC):
        return
    what = ("its first bytes look like an ONNX model's: give it a name ending in .onnx" if head[:1] == b"\x08"
            else "it is empty" if not head else f"it begins {head!r}")
    raise DetectorError(f"checkpoint {os.fspath(path)}: not a torch checkpoint (.pt) nor an .onnx file of the "
                        f"built-in model's architecture ({what})")


def _is_cuda(device: str) -> bool:
    return device.strip().lower().startswith("cuda")


def choose_runtime(*, device: str = "auto", fp16: bool = False, weights: Any = None,
                   runtime: str = "auto") -> tuple[str, str]:
    """Which runtime runs the built-in model, and on which device: ``(runtime, device)``.

    The rule (``runtime="auto"``):

    * **torch** when the caller asks for something only torch does here: a CUDA device
      (``cuda``, ``cuda:N``) or torch weights (a ``.pt``/``.pth`` checkpoint path or a
      checkpoint dict);
    * **onnxruntime** for an ``.onnx`` weights file and otherwise on the CPU, fp16 included (it
      speeds up CUDA only: a warning, and the int8 file runs);
    * ``device="auto"`` resolves as :func:`~densedet_tile.detector.base.resolve_device` does:
      CUDA (hence torch) only when torch is installed *and* a CUDA device is usable. That check
      imports no torch when torch is not installed, nor when no NVIDIA/ROCm driver is visible
      (see ``resolve_device``), so a CPU machine never pays for importing torch.

    ``runtime="onnxruntime"`` or ``"torch"`` forces one; asking ONNX Runtime for CUDA, fp16 or
    torch weights (or torch for an ``.onnx`` file, or an ``.onnx`` file on CUDA) is an
    :class:`InvalidInputError`.
    """
    if not isinstance(runtime, str):
        raise InvalidInputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    rt = _RUNTIME_ALIASES.get(runtime.strip().lower(), runtime.strip().lower())
    if rt not in RUNTIMES:
        raise InvalidInputError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'auto', 'cpu' or 'cuda', got {device!r}")
    kind = _weights_kind(weights)
    cuda = _is_cuda(device)
    if rt == "onnxruntime":
        if cuda or fp16 or kind == "torch":
            why = "a CUDA device" if cuda else "fp16" if fp16 else "torch weights"
            extra = "" if importlib.util.find_spec("torch") is not None else " (pip install 'densedet-tile[torch]')"
            raise InvalidInputError(f"the built-in model on ONNX Runtime runs on the CPU only (its shipped int8 file, "
                                    f"or an fp32 one); {why} needs runtime=torch{extra}")
        resolve_device("cpu" if device.strip().lower() == "auto" else device)
        return "onnxruntime", "cpu"
    if rt == "torch":
        if kind == "onnx":
            raise InvalidInputError("an .onnx weights file runs on ONNX Runtime, not runtime=torch")
        _import_torch()
        return "torch", resolve_device(device)
    # auto
    if kind == "onnx":
        if cuda:
            extra = "" if importlib.util.find_spec("torch") is not None else " (pip install 'densedet-tile[torch]')"
            raise InvalidInputError(f"an .onnx weights file runs on the CPU here; use the .pt weights for CUDA{extra}")
        resolve_device("cpu" if device.strip().lower() == "auto" else device)
        if fp16:
            _fp16_on_cpu()
        return "onnxruntime", "cpu"
    if cuda or kind == "torch":
        _import_torch()
        return "torch", resolve_device(device)
    dev = resolve_device(device)
    if _is_cuda(dev):
        return "torch", dev
    if fp16:
        _fp16_on_cpu()
    return "onnxruntime", "cpu"


def _fp16_on_cpu() -> None:
    # fp16 speeds up CUDA only; on the CPU torch would run the same network in fp32, slower than
    # the ONNX file and only where torch is installed
    import importlib.util

    # (on the light install the option leads to the missing-torch error: say so here; an outside review)
    torch_there = importlib.util.find_spec("torch") is not None
    # (worded for the command line and Python alike: "--precision fp16" was the flag's alone; an
    # outside review)
    warnings.warn("fp16 applies on CUDA only; on the CPU the built-in model runs on ONNX Runtime "
                  "(the detector option runtime=torch forces torch"
                  + ("" if torch_there else ", which needs pip install 'densedet-tile[torch]'") + ")",
                  RuntimeWarning, stacklevel=3)


def _package_file(name: str) -> bytes:
    ref = importlib.resources.files("densedet_tile.detector").joinpath("weights", name)
    try:
        return ref.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise DetectorError(f"built-in weights {name} are missing from the package ({exc})") from exc


def _read_weights() -> bytes:
    return _package_file(WEIGHTS_FILE)


def _check_checkpoint_layout(ckpt: Any, where: str) -> None:
    """Refuse anything but ``{"config": {...}, "state_dict": {...}, ...}``, saying what it is instead."""
    if not isinstance(ckpt, Mapping):
        raise DetectorError(f"{where}: not a ShelfNet checkpoint (a dict with 'config' and 'state_dict'), "
                            f"it holds a {type(ckpt).__name__}")
    if "state_dict" in ckpt and "config" in ckpt:
        return
    torch = sys.modules.get("torch")  # loaded: the dict came from torch.load
    if ckpt and torch is not None and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise DetectorError(f"{where}: holds a bare state dict; a ShelfNet checkpoint is a dict with 'config' "
                            "and 'state_dict' (and 'info'), as densedet-tile's training and adapt write it")
    lacking = " and ".join(repr(k) for k in ("config", "state_dict") if k not in ckpt)
    found = ", ".join(repr(k) for k in list(ckpt)[:5]) or "nothing"
    raise DetectorError(f"{where}: not a ShelfNet checkpoint: no {lacking} (it has {found}){adapt_state_hint(ckpt)}")


def adapt_state_hint(ckpt: Any) -> str:
    """``"; it is the saved state of a stopped adapt run..."`` (how to go on) when ``ckpt``, given
    where weights were wanted, is the state a stopped adapt run keeps beside its ``--out``; else
    ``""``."""
    if not (isinstance(ckpt, Mapping) and {"phase", "ema", "labels", "holdout"} <= ckpt.keys()):
        return ""
    return ("; it is the saved state of a stopped adapt run, not weights: continue the run with densedet-tile adapt "
            "PHOTOS --out WEIGHTS --resume; the weights to load are that --out file, written when the run ends")


_BOOL_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "on": True,
               "off": False}


def _check_split_stacks(value: Any) -> bool:
    """A bool, or one of the words of :data:`_BOOL_WORDS` in any case (``--detector-option
    split_stacks=False`` arrives as the string ``False``: it is not JSON)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):  # --detector-option split_stacks=0
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[value.strip().lower()]
    raise InvalidInputError(f"split_stacks must be true or false, got {value!r}"[:200])


def _is_int(v: Any, lo: int) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= lo


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_)) \
        and math.isfinite(float(v))


def _checked_config(raw: Any, where: str) -> dict[str, Any]:
    """:func:`model_config` of a checkpoint's ``config``, refusing what cannot describe a ShelfNet."""
    if not isinstance(raw, Mapping):
        raise DetectorError(f"{where}: 'config' must be a dict of ShelfNet settings, got {type(raw).__name__}")
    config = model_config(raw)
    checks = (
        ("widths", lambda v: isinstance(v, (list, tuple)) and len(v) == 5 and all(_is_int(x, 1) for x in v),
         "a list of 5 positive ints"),
        ("blocks", lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_int(x, 0) for x in v),
         "a list of 3 ints >= 0"),
        ("neck", lambda v: _is_int(v, 1), "a positive int"),
        ("input_size", lambda v: _is_int(v, 16), "an int >= 16"),
        ("stride", lambda v: _is_int(v, 1), "a positive int"),
        ("mean", lambda v: isinstance(v, (list, tuple)) and len(v) == 3 and all(_is_number(x) for x in v),
         "a list of 3 numbers"),
        ("std", lambda v: isinstance(v, (list, tuple)) and len(v) == 3
         and all(_is_number(x) and float(x) > 0 for x in v), "a list of 3 positive numbers"),
    )
    for key, ok, what in checks:
        if not ok(config[key]):
            raise DetectorError(f"{where}: config {key} must be {what}, got {config[key]!r}"[:300])
    return config


def _refuse_bad_threshold(info: Any, where: str) -> None:
    """Weights whose info asks for a served threshold out of (0, 1) are refused (torch or ONNX)."""
    problem = threshold_problem(info)
    if problem:
        raise DetectorError(f"{where}: {problem}")


def build_from_checkpoint(ckpt: dict[str, Any], *, device: str = "auto", score_thr: float | None = None,
                          fp16: bool = False, threads: int | None = None,
                          source: str | None = None, split_stacks: bool | None = None) -> DefaultDetector:
    """Make a torch :class:`DefaultDetector` from a checkpoint dict ``{"config", "state_dict", "info"}``.

    ``source`` names where the dict came from (a file) in the errors about its content; keys
    saved from a DataParallel model (``module.`` prefix) are accepted.
    """
    where = f"checkpoint {source}" if source else "checkpoint"
    _check_checkpoint_layout(ckpt, where)
    _, dev = choose_runtime(device=device, fp16=fp16, weights=ckpt, runtime="torch")
    torch = _import_torch()
    from .shelfnet import TorchRunner, model_from_checkpoint

    threads = check_threads(threads)
    if threads is not None and not _is_cuda(dev):
        torch.set_num_threads(threads)  # process-wide in torch
    if fp16 and not _is_cuda(dev):
        warnings.warn("fp16 applies on CUDA only; on the CPU these torch weights run in fp32",
                      RuntimeWarning, stacklevel=2)
    config = _checked_config(ckpt["config"], where)
    settings = DecodeSettings.from_config(config, score_thr)  # validate before building
    runner = TorchRunner(model_from_checkpoint(ckpt, config, source=where), device=dev, mean=settings.mean,
                         std=settings.std, fp16=fp16)
    info = ckpt.get("info")
    _refuse_bad_threshold(info, where)
    return DefaultDetector(runner, config, score_thr=score_thr, info=dict(info) if isinstance(info, Mapping) else {},
                           split_stacks=split_stacks)


def load_default(*, device: str = "auto", score_thr: float | None = None, fp16: bool = False,
                 runtime: str = "auto", weights: Any = None, threads: int | None = None,
                 split_stacks: bool | None = None) -> DefaultDetector:
    """Load the packaged default detector (no download, ever).

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``... (``auto``: CUDA when torch is
            installed and a GPU is usable, else the CPU; see :func:`choose_runtime`).
        score_thr: keep boxes scoring at least this; None uses the shipped default (see
            MODEL_CARD.md). Use a low value (0.05) for AP evaluation.
        fp16: run the network under fp16 autocast on CUDA (torch runtime; ignored on the CPU).
        runtime: ``"auto"`` (the rule of :func:`choose_runtime`), ``"onnxruntime"`` or ``"torch"``.
        weights: None for the packaged weights, or a path: an ``.onnx`` export (ONNX Runtime)
            or a ``.pt`` ShelfNet checkpoint (torch).
        threads: CPU threads (ONNX Runtime's intra-op threads, default: the CPUs this process
            may use; on torch it calls the process-wide ``torch.set_num_threads``).
        split_stacks: cut boxes around piles of identical packs into one box per layer
            (:mod:`densedet_tile.detector.stacks`); None: the package default (on).
    """
    if split_stacks is not None:
        split_stacks = _check_split_stacks(split_stacks)
    if isinstance(weights, (str, os.PathLike)) and _weights_kind(weights) == "torch":  # (.onnx: model_file below)
        # a path mistyped is said as such before the runtime it would need (a missing .pt was
        # "needs the 'torch' package": a few GB installed to learn of a typo; an outside review)
        weights_there(weights)
        _looks_like_torch(weights)
    rt, dev = choose_runtime(device=device, fp16=fp16, weights=weights, runtime=runtime)
    threads = check_threads(threads)
    if rt == "torch":
        from .shelfnet import read_checkpoint

        if weights is None:
            ckpt, label = read_checkpoint(_read_weights()), WEIGHTS_FILE
        elif isinstance(weights, Mapping):
            ckpt, label = dict(weights), None
        else:
            ckpt, label = read_checkpoint(weights), os.fspath(weights)
        det = build_from_checkpoint(ckpt, device=dev, score_thr=score_thr, fp16=fp16, threads=threads, source=label,
                                    split_stacks=split_stacks)
        if label:
            det.info["weights_file"] = label
        return det
    if weights is None:
        source: Any = _package_file(ONNX_FILE)
        label = ONNX_FILE
    else:
        model_file(weights, "onnx")
        source = label = os.fspath(weights)
    runner = OnnxRunner(source, threads=threads, label=label)
    # checked as a .pt's are (build_from_checkpoint): an export whose info asked for a threshold
    # out of (0, 1) was served at the default without a word, where the .pt was refused (an
    # outside review)
    where = f"weights {label}"
    config = _checked_config(runner.config(), where)
    info = runner.training_info()
    _refuse_bad_threshold(info, where)
    det = DefaultDetector(runner, config, score_thr=score_thr, info=info, split_stacks=split_stacks)
    det.info["weights_file"] = label
    return det


def __getattr__(name: str) -> Any:
    # ShelfNet needs torch: load it on first use so that importing this module does not
    if name == "ShelfNet":
        if importlib.util.find_spec("torch") is None:
            raise MissingDependencyError("ShelfNet (the built-in network in torch)", "torch", "torch")
        from .shelfnet import ShelfNet

        return ShelfNet
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
