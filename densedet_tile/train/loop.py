"""The pieces of a training loop for the built-in model, shared by ``scripts/train_default.py``
(training from scratch on generated shelves) and :mod:`densedet_tile.train.adapt` (fitting the
model to a user's photos).

* :func:`make_optimizer`: AdamW with weight decay on weights only.
* :func:`learning_rate`: linear warm-up, then cosine decay over the run's progress.
* :func:`ema_copy` / :func:`ema_update`: an exponential moving average of the weights, which is
  what gets saved and used for inference.
* :func:`train_step`: augment, normalise, forward, loss, backward, clip, step, EMA.
* :func:`checkpoint_dict` / :func:`checkpoint_bytes` / :func:`save_checkpoint`: the weights file
  format :func:`~densedet_tile.detector.builtin.build_from_checkpoint` reads (fp16 state dict,
  config, info; loadable with ``torch.load(weights_only=True)``), written atomically.
"""

from __future__ import annotations

import copy
import io
import math
import os
from pathlib import Path
from typing import Any

from . import _torch  # noqa: F401  (first: without torch, one line naming the extra)
import torch

from ..io import atomic_write
from .data import augment
from .losses import detection_loss, distill_loss

__all__ = [
    "make_optimizer",
    "learning_rate",
    "ema_copy",
    "ema_update",
    "normaliser",
    "train_step",
    "checkpoint_dict",
    "checkpoint_bytes",
    "save_checkpoint",
]


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float = 5e-4) -> torch.optim.AdamW:
    """AdamW (betas 0.9, 0.99); weight decay on conv weights, none on biases and norms."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.99))


def learning_rate(base: float, step: int, progress: float, warmup: int, floor: float = 0.02) -> float:
    """``base`` x linear warm-up over ``warmup`` steps x cosine from 1 to ``floor`` as ``progress``
    goes from 0 to 1."""
    progress = min(max(progress, 0.0), 1.0)
    warm = min(1.0, (step + 1) / max(warmup, 1))
    return base * warm * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` in eval mode, to be kept as its moving average."""
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """``ema = d * ema + (1 - d) * model`` with ``d = min(decay, (1 + step) / (10 + step))``;
    buffers (BatchNorm statistics) are copied."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.mul_(d).add_(pm.detach(), alpha=1 - d)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def normaliser(config: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean, std)`` (1, 3, 1, 1) tensors in 0-255 units for ``(x - mean) / std``."""
    mean = torch.tensor(config["mean"], device=device).view(1, 3, 1, 1) * 255
    std = torch.tensor(config["std"], device=device).view(1, 3, 1, 1) * 255
    return mean, std


def train_step(
    model: torch.nn.Module,
    ema: torch.nn.Module | None,
    opt: torch.optim.Optimizer,
    batch: tuple[torch.Tensor, ...],
    *,
    step: int,
    lr: float,
    gen: torch.Generator,
    mean: torch.Tensor,
    std: torch.Tensor,
    stride: int,
    ema_decay: float = 0.999,
    clip: float = 10.0,
    amp: bool = False,
    memory_format: torch.memory_format = torch.contiguous_format,
    teacher: torch.nn.Module | None = None,
    distill: float = 0.0,
) -> dict[str, float] | None:
    """One optimiser step on ``batch``.

    ``batch`` is ``(img, heat, box_t, weight)`` or ``(img, heat, box_t, weight, ignore)`` on the
    model's device, ``img`` float (B, 3, S, S) in [0, 255] (or uint8 (B, S, S, 3), converted).
    The batch is augmented with ``gen`` (fresh each call), normalised, and the loss
    (focal + 5 x GIoU, ignore regions masked) minimised; the EMA follows. Returns the loss terms
    as floats, or None when the loss or the gradient was not finite (nothing is updated then).
    With a ``teacher`` (a frozen network) and ``distill`` > 0, ``distill`` x
    :func:`~densedet_tile.train.losses.distill_loss` of the teacher's heatmap on the same
    augmented batch is added (the ``distill`` term of the result).
    """
    img, heat, box_t, weight = batch[:4]
    ignore = batch[4] if len(batch) > 4 else None
    if img.dtype == torch.uint8:
        img = img.permute(0, 3, 1, 2).float()
    for g in opt.param_groups:
        g["lr"] = lr
    x, h_t, b_t, w_t, i_t = augment(img, heat, box_t, weight, gen, ignore)
    x = ((x - mean) / std).contiguous(memory_format=memory_format)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
        logits, dist = model(x)
    loss, l_heat, l_box = detection_loss(logits, dist, h_t, b_t, w_t, stride=stride, ignore=i_t)
    l_dist = None
    if teacher is not None and distill > 0:
        with torch.no_grad(), torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=amp):
            t_logits, _ = teacher(x)
        l_dist = distill_loss(logits, t_logits, h_t, w_t, i_t)
        loss = loss + distill * l_dist
    if not torch.isfinite(loss):
        return None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    if not torch.isfinite(norm):  # a finite loss can still overflow a gradient: clipping keeps the NaN
        opt.zero_grad(set_to_none=True)
        return None
    opt.step()
    if ema is not None:
        ema_update(ema, model, step, ema_decay)
    terms = {"loss": float(loss.detach()), "heat": float(l_heat.detach()), "box": float(l_box.detach()), "lr": lr}
    if l_dist is not None:
        terms["distill"] = float(l_dist.detach())
    return terms


def checkpoint_dict(model: torch.nn.Module, config: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """``{"config", "state_dict" (fp16 on the CPU), "info"}``: the built-in weights file format."""
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    return {"config": dict(config), "state_dict": state, "info": dict(info)}


def checkpoint_bytes(obj: Any) -> bytes:
    """``torch.save(obj)`` into bytes."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def save_checkpoint(model: torch.nn.Module, config: dict[str, Any], info: dict[str, Any],
                    path: str | os.PathLike[str]) -> Path:
    """Write :func:`checkpoint_dict` to ``path`` atomically (whole file or nothing)."""
    return atomic_write(path, checkpoint_bytes(checkpoint_dict(model, config, info)))
