"""The built-in model's network in torch, and its torch runtime.

Imported only when torch is wanted: to train (``scripts/train_default.py``), to export the ONNX
file (``scripts/export_default_onnx.py``), or to run the built-in model on torch (a CUDA device,
fp16, or a ``.pt`` checkpoint; see :func:`densedet_tile.detector.builtin.choose_runtime`).
The light install runs the same network from ``weights/default.onnx`` on ONNX Runtime and never
imports this module. Decoding is not here: both runtimes hand the raw outputs to the one numpy
decode in :mod:`densedet_tile.detector.builtin`.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import DetectorError, one_line
from .base import refuse_nonfinite_weights
from .checkpoints import quiet_pickle_notes, state_dict_of
from .shelfnet_config import DEFAULT_CONFIG

__all__ = ["ShelfNet", "TorchRunner", "read_checkpoint", "model_from_checkpoint", "REG_SCALE"]

REG_SCALE = 32.0  # predicted distance = softplus(raw) * REG_SCALE input pixels


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
    (left, top, right, bottom) distances in input pixels from each cell centre. These two raw
    outputs are also the outputs of the exported ONNX graph.
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
        return self.heat(p8), F.softplus(self.reg(p8)) * REG_SCALE


def read_checkpoint(source: "str | os.PathLike[str] | bytes") -> dict[str, Any]:
    """``torch.load`` a checkpoint file (or its bytes) safely: ``weights_only=True``, on the CPU."""
    try:
        with quiet_pickle_notes():
            if isinstance(source, (bytes, bytearray)):
                return torch.load(io.BytesIO(source), map_location="cpu", weights_only=True)
            return torch.load(os.fspath(source), map_location="cpu", weights_only=True)
    except FileNotFoundError as exc:
        raise DetectorError(f"checkpoint {source}: no such file") from exc
    except IsADirectoryError as exc:
        raise DetectorError(f"checkpoint {source}: is a folder, not a checkpoint file") from exc
    except Exception as exc:  # torch raises many kinds for a corrupt or foreign file
        where = "built-in weights" if isinstance(source, (bytes, bytearray)) else f"checkpoint {source}"
        raise DetectorError(f"{where}: cannot be read as a torch checkpoint with weights_only=True "
                            f"({type(exc).__name__}; not a .pt file, damaged, or holding objects that are not weights)") from exc


def model_from_checkpoint(ckpt: dict[str, Any], config: dict[str, Any], *, source: str = "checkpoint") -> ShelfNet:
    """A fp32 ShelfNet in eval mode with ``ckpt['state_dict']`` loaded (architecture: ``config``).

    ``source`` (e.g. ``"checkpoint my.pt"``) starts every error message. A ``module.`` prefix on
    every key (a DataParallel model's state dict) is removed.
    """
    try:
        model = ShelfNet(config)
    except Exception as exc:  # a config that is no ShelfNet fails in many ways inside torch
        raise DetectorError(f"{source}: its config cannot build a ShelfNet ({type(exc).__name__}: "
                            f"{one_line(exc)[:200]})") from exc
    sd = state_dict_of(ckpt["state_dict"], source=source)
    state = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(found)} {what} (e.g. {', '.join(found[:3])})"
                 for found, what in ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of another shape"))
                 if found]
        raise DetectorError(f"{source} does not match the ShelfNet of its config: state dict keys {'; '.join(parts)}")
    refuse_nonfinite_weights(state, source)  # weights of a run that diverged would find nothing, silently
    model.load_state_dict(state)
    return model.eval()


def memory_format_for(device: "torch.device | str") -> torch.memory_format:
    """The layout of the network's weights and inputs on ``device``: channels_last on CUDA (it
    helps cuDNN), the usual contiguous one elsewhere (channels_last measured ~10x slower on the
    CPU here)."""
    return torch.channels_last if torch.device(device).type == "cuda" else torch.contiguous_format


class TorchRunner:
    """Runs ShelfNet in torch: uint8 NHWC batch in, raw ``(heat_logits, dist)`` numpy out.

    ``device`` is a torch device; ``fp16`` runs the network under fp16 autocast on CUDA (it is
    ignored on the CPU). Normalisation happens on the device (the uint8 batch is what travels).
    """

    runtime = "torch"

    def __init__(self, model: nn.Module, *, device: "torch.device | str", mean: Any, std: Any,
                 fp16: bool = False) -> None:
        self.fp16 = bool(fp16)
        self.model = model.eval()
        self._mean = torch.tensor(list(mean)).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(list(std)).view(1, 3, 1, 1) * 255.0
        self.to(device)

    def to(self, device: "torch.device | str") -> "TorchRunner":
        """Put the network on ``device`` as it runs there (also the engine's CPU fallback after
        running out of GPU memory, and the move back to the GPU for the next image): one place
        for both, since the way back to CUDA left the weights in the CPU's layout."""
        self.device = torch.device(device)
        self._memory_format = memory_format_for(self.device)
        self.model.to(self.device, memory_format=self._memory_format)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "device": str(self.device), "precision": "fp16" if self.fp16 and
                self.device.type == "cuda" else "fp32", "threads": torch.get_num_threads()}

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float()
            x = ((x - self._mean) / self._std).contiguous(memory_format=self._memory_format)
            if self.fp16 and self.device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    heat, dist = self.model(x)
            else:
                heat, dist = self.model(x)
            return heat.float().cpu().numpy(), dist.float().cpu().numpy()
