"""The built-in default detector: a small heatmap (CenterNet/TTFNet-style) product detector.

The network ("ShelfNet") is a compact residual CNN with a top-down feature pyramid that ends at
output stride 8. For every cell of that grid it predicts

* a product-centre heatmap (one class, "product"), trained with a Gaussian-smoothed focal loss;
* four distances (left, top, right, bottom) from the cell centre to the product's box edges,
  in input pixels, trained with a GIoU loss over a Gaussian region around each centre.

Decoding is a 3x3 max-pool peak search, a score threshold, top-k and an in-tile NMS. It suits
dense rows of same-class objects: neighbours that touch still have separate centres.

The weights were trained from scratch on synthetic shelves (:mod:`densedet_tile.synth.shelves`,
a test/training generator the detector does not import) by ``scripts/train_default.py`` and ship
as package data (``detector/weights/default.pt``, an fp16 state dict plus its config, loaded with
``torch.load(weights_only=True)``). See MODEL_CARD.md.
"""

from __future__ import annotations

import importlib.resources
import io
import os
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DetectorError, InvalidInputError
from ..types import Detections
from .base import check_tiles, resolve_device

__all__ = ["ShelfNet", "DefaultDetector", "load_default", "build_from_checkpoint", "read_checkpoint", "decode",
           "build_targets", "DEFAULT_CONFIG", "WEIGHTS_FILE"]

WEIGHTS_FILE = "default.pt"

#: Architecture and inference settings; the weights file carries its own copy.
DEFAULT_CONFIG: dict[str, Any] = {
    "widths": [16, 32, 64, 128, 256],  # stem1, stem2 (stride 4), stride 8, 16, 32
    "blocks": [2, 2, 2],  # residual blocks at strides 8, 16, 32
    "neck": 80,
    "input_size": 640,  # longer tile side the model was trained for
    "stride": 8,
    "score_thr": 0.5,  # chosen on real photos: 0.3-0.5 holds most false boxes there (MODEL_CARD.md)
    "nms_iou": 0.5,
    "max_det": 1000,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
}

_DECODE_KEYS = ("score_thr", "nms_iou", "max_det")

_REG_SCALE = 32.0  # predicted distance = softplus(raw) * _REG_SCALE input pixels


# ----------------------------------------------------------------------------------------------
# network
# ----------------------------------------------------------------------------------------------
class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, k: int = 3, s: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, bias=False), nn.BatchNorm2d(cout)]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Block(nn.Module):
    """Basic residual block (two 3x3 convolutions)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = _ConvBN(c, c)
        self.b = _ConvBN(c, c, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.b(self.a(x)))


class ShelfNet(nn.Module):
    """Backbone + top-down pyramid + heatmap/box heads at stride 8.

    Input: float (B, 3, H, W) normalised RGB, H and W multiples of 32.
    Output: ``(heat_logits (B, 1, H/8, W/8), dist (B, 4, H/8, W/8))`` where ``dist`` are the
    (left, top, right, bottom) distances in input pixels from each cell centre.
    """

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        super().__init__()
        cfg = {**DEFAULT_CONFIG, **(config or {})}
        w = cfg["widths"]
        nb = cfg["blocks"]
        n = cfg["neck"]
        self.stem = nn.Sequential(_ConvBN(3, w[0], s=2), _ConvBN(w[0], w[1], s=2))
        self.s8 = nn.Sequential(_ConvBN(w[1], w[2], s=2), *[_Block(w[2]) for _ in range(nb[0])])
        self.s16 = nn.Sequential(_ConvBN(w[2], w[3], s=2), *[_Block(w[3]) for _ in range(nb[1])])
        self.s32 = nn.Sequential(_ConvBN(w[3], w[4], s=2), *[_Block(w[4]) for _ in range(nb[2])])
        self.lat8 = _ConvBN(w[2], n, k=1, act=False)
        self.lat16 = _ConvBN(w[3], n, k=1, act=False)
        self.lat32 = _ConvBN(w[4], n, k=1, act=False)
        self.smooth16 = _ConvBN(n, n)
        self.smooth8 = _ConvBN(n, n)
        self.heat = nn.Sequential(_ConvBN(n, n), nn.Conv2d(n, 1, 1))
        self.reg = nn.Sequential(_ConvBN(n, n), nn.Conv2d(n, 4, 1))
        nn.init.constant_(self.heat[-1].bias, -4.6)  # start with p ~ 0.01 everywhere
        nn.init.normal_(self.heat[-1].weight, std=0.01)
        nn.init.constant_(self.reg[-1].bias, 0.5)
        nn.init.normal_(self.reg[-1].weight, std=0.01)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c8 = self.s8(self.stem(x))
        c16 = self.s16(c8)
        c32 = self.s32(c16)
        p16 = self.smooth16(F.relu(self.lat16(c16) + F.interpolate(self.lat32(c32), size=c16.shape[-2:], mode="nearest")))
        p8 = self.smooth8(F.relu(self.lat8(c8) + F.interpolate(p16, size=c8.shape[-2:], mode="nearest")))
        return self.heat(p8), F.softplus(self.reg(p8)) * _REG_SCALE


# ----------------------------------------------------------------------------------------------
# decoding
# ----------------------------------------------------------------------------------------------
def decode(
    heat_logits: torch.Tensor,
    dist: torch.Tensor,
    *,
    stride: int,
    score_thr: float,
    nms_iou: float,
    max_det: int,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Turn network outputs into boxes, per image.

    Args:
        heat_logits: (B, 1, h, w) centre logits. dist: (B, 4, h, w) ltrb distances in pixels.
    Returns:
        One ``(boxes (N, 4) float32 xyxy in input pixels, scores (N,))`` pair per image, at most
        ``max_det`` boxes, sorted by score.
    """
    from torchvision.ops import nms

    heat = torch.sigmoid(heat_logits.float())
    peaks = heat == F.max_pool2d(heat, 3, stride=1, padding=1)
    heat = torch.where(peaks, heat, torch.zeros_like(heat))
    b, _, h, w = heat.shape
    k = min(max_det * 2, h * w)
    scores, idx = heat.view(b, -1).topk(k, dim=1)
    ys = torch.div(idx, w, rounding_mode="floor").float().mul_(stride).add_(stride / 2)
    xs = (idx % w).float().mul_(stride).add_(stride / 2)
    d = dist.float().view(b, 4, -1)
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(b):
        keep = scores[i] >= score_thr
        s = scores[i][keep]
        sel = idx[i][keep]
        di = d[i][:, sel]
        x, y = xs[i][keep], ys[i][keep]
        boxes = torch.stack([x - di[0], y - di[1], x + di[2], y + di[3]], dim=1)
        if boxes.shape[0]:
            k2 = nms(boxes, s, nms_iou)[:max_det]
            boxes, s = boxes[k2], s[k2]
        out.append((boxes, s))
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
    order = np.argsort(-(wh[:, 0] * wh[:, 1]))
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
# the Detector
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Meta:
    config: dict[str, Any]
    info: dict[str, Any]


class DefaultDetector:
    """The packaged shelf-product detector; implements the :class:`Detector` protocol.

    Attributes:
        input_size: longer tile side the model was trained for (640); the engine resizes each
            tile so its longer side equals it (a 1280 px tile is halved).
        name: ``"densedet-default"``. class_names: ``("product",)``. device: torch device.
        score_thr, nms_iou, max_det: decoding settings (max_det per tile).
    """

    name = "densedet-default"
    class_names: tuple[str, ...] = ("product",)

    def __init__(self, model: ShelfNet, config: dict[str, Any], *, device: torch.device,
                 score_thr: float | None = None, info: dict[str, Any] | None = None,
                 fp16: bool = False) -> None:
        self.model = model
        #: run the network under fp16 autocast (CUDA only; ignored on CPU)
        self.fp16 = bool(fp16)
        self.config = dict(config)
        self.info = dict(info or {})
        self.device = device
        self.input_size = int(config["input_size"])
        self.stride = int(config["stride"])
        self.score_thr = float(config["score_thr"] if score_thr is None else score_thr)
        if not 0.0 <= self.score_thr < 1.0:
            raise InvalidInputError(f"score_thr must be in [0, 1), got {self.score_thr!r}")
        self.nms_iou = float(config["nms_iou"])
        self.max_det = int(config["max_det"])
        self._mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1) * 255.0
        self._memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
        self._pad_value = np.round(np.asarray(config["mean"]) * 255.0).astype(np.uint8)

    def __repr__(self) -> str:
        return f"DefaultDetector(input_size={self.input_size}, score_thr={self.score_thr}, device={self.device})"

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """Detect products on a batch of RGB tiles.

        Args:
            tiles: HxWx3 uint8 RGB arrays; sizes may differ within the batch (they are padded
                bottom-right to a common multiple of 32, run once, and boxes clipped back).
        Returns:
            One :class:`Detections` per tile: tile-local xyxy float32 pixels, scores, labels 0.
        """
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
            batch[:] = self._pad_value
            for j, i in enumerate(live):
                h, w = sizes[i]
                batch[j, :h, :w] = tiles[i]
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
                x = ((x - self._mean) / self._std).contiguous(memory_format=self._memory_format)
                if self.fp16 and self.device.type == "cuda":
                    with torch.autocast("cuda", dtype=torch.float16):
                        heat, dist = self.model(x)
                else:
                    heat, dist = self.model(x)
                dets = decode(heat, dist, stride=self.stride, score_thr=self.score_thr,
                              nms_iou=self.nms_iou, max_det=self.max_det)
            for j, i in enumerate(live):
                h, w = sizes[i]
                boxes, scores = dets[j]
                boxes = boxes.cpu().numpy().astype(np.float32)
                boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
                boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
                ok = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
                sc = scores.cpu().numpy().astype(np.float32)[ok]
                results[i] = Detections(boxes[ok], sc, np.zeros(int(ok.sum()), np.int64))
        return [r if r is not None else Detections.empty() for r in results]


def _read_weights() -> bytes:
    ref = importlib.resources.files("densedet_tile.detector").joinpath("weights", WEIGHTS_FILE)
    try:
        return ref.read_bytes()
    except (FileNotFoundError, OSError) as exc:
        raise DetectorError(f"built-in weights {WEIGHTS_FILE} are missing from the package ({exc})") from exc


def build_from_checkpoint(ckpt: dict[str, Any], *, device: str = "auto", score_thr: float | None = None,
                          fp16: bool = False) -> DefaultDetector:
    """Make a :class:`DefaultDetector` from a checkpoint dict ``{"config", "state_dict", "info"}``."""
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise DetectorError("checkpoint must be a dict with 'config' and 'state_dict'")
    dev = torch.device(resolve_device(device))
    # architecture and input scale from the checkpoint; decoding settings are the package's own
    # (tuned after training), so the same weights file serves with updated thresholds
    config = {**DEFAULT_CONFIG, **ckpt["config"], **{k: DEFAULT_CONFIG[k] for k in _DECODE_KEYS}}
    model = ShelfNet(config)
    state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise DetectorError(f"checkpoint does not match the ShelfNet config: {exc}") from exc
    model.eval().to(dev)
    if dev.type == "cuda":  # channels_last helps cuDNN; on CPU it measured ~10x slower here
        model.to(memory_format=torch.channels_last)
    return DefaultDetector(model, config, device=dev, score_thr=score_thr, info=ckpt.get("info", {}), fp16=fp16)


def read_checkpoint(weights: "str | os.PathLike[str] | bytes") -> dict[str, Any]:
    """Load a ShelfNet checkpoint (a ``.pt`` file path or its bytes) with ``weights_only=True``."""
    label = "built-in weights" if isinstance(weights, bytes) else os.fspath(weights)
    try:
        src = io.BytesIO(weights) if isinstance(weights, bytes) else os.fspath(weights)
        ckpt = torch.load(src, map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DetectorError(f"checkpoint not found: {label}") from exc
    except Exception as exc:  # pickle, zip and torch errors all mean: not a readable weights file
        raise DetectorError(f"cannot read {label} as a ShelfNet checkpoint (.pt): {exc}") from exc
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "config" not in ckpt:
        raise DetectorError(f"{label} is not a ShelfNet checkpoint (expected a dict with 'config' and 'state_dict')")
    return ckpt


def load_default(*, device: str = "auto", score_thr: float | None = None, fp16: bool = False,
                 weights: "str | os.PathLike[str] | None" = None) -> DefaultDetector:
    """Load the packaged default detector (no download, ever), or other weights of its architecture.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        score_thr: keep boxes scoring at least this; None uses the shipped default (see
            MODEL_CARD.md). Use a low value (0.05) for AP evaluation.
        fp16: run the network under fp16 autocast on CUDA (ignored on CPU).
        weights: None for the packaged weights, or the path of a ``.pt`` ShelfNet checkpoint of
            the same format (e.g. written by ``densedet-tile adapt``), loaded with
            ``weights_only=True``.
    """
    ckpt = read_checkpoint(_read_weights() if weights is None else weights)
    det = build_from_checkpoint(ckpt, device=device, score_thr=score_thr, fp16=fp16)
    if weights is not None:
        det.info["checkpoint"] = os.fspath(weights)
    return det
