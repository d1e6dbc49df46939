"""The built-in model's training losses: centre heatmap focal loss and box GIoU loss.

Both take the network outputs of :class:`~densedet_tile.detector.builtin.ShelfNet` and the dense
targets of :func:`~densedet_tile.detector.builtin.build_targets`. ``ignore`` maps (from
:func:`densedet_tile.train.data.ignore_map`) mark cells whose heatmap loss is skipped: regions
where a pseudo-label would be a guess (an uncertain box) contribute neither loss nor gradient.
"""

from __future__ import annotations

from . import _torch  # noqa: F401  (first: without torch, one line naming the extra)
import torch
import torch.nn.functional as F

__all__ = ["focal_loss", "giou_loss", "detection_loss", "distill_loss", "BOX_LOSS_WEIGHT"]

#: weight of the GIoU term in :func:`detection_loss` (the shipped weights were trained with it)
BOX_LOSS_WEIGHT = 5.0


def focal_loss(logits: torch.Tensor, gt: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres.

    Args:
        logits: (B, 1, h, w) centre logits. gt: (B, 1, h, w) Gaussian targets in [0, 1], exactly
            1 at centres. ignore: optional (B, 1, h, w), nonzero where a cell is ignored; an
            ignored cell that is also a centre (``gt == 1``) still counts as a centre.
    Returns:
        A scalar tensor.
    """
    logits = logits.float()
    pos = gt >= 0.999
    logp = F.logsigmoid(logits)
    log1mp = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    neg_w = (1 - gt) ** 4
    if ignore is not None:
        neg_w = neg_w * (ignore <= 0)
    pos_loss = torch.where(pos, logp * (1 - p) ** 2, torch.zeros_like(logp)).sum()
    neg_loss = torch.where(pos, torch.zeros_like(logp), log1mp * p ** 2 * neg_w).sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def giou_loss(dist: torch.Tensor, box_t: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Weighted GIoU loss of the boxes decoded at cells with positive regression weight.

    Args:
        dist: (B, 4, h, w) predicted ltrb distances in input pixels. box_t: (B, 4, h, w) target
            xyxy boxes. weight: (B, 1, h, w) regression weights (zero: no box to learn there).
    """
    from torchvision.ops import generalized_box_iou_loss

    b, _, h, w = dist.shape
    m = weight[:, 0] > 0
    if not m.any():
        return dist.sum() * 0
    ys, xs = torch.meshgrid(torch.arange(h, device=dist.device), torch.arange(w, device=dist.device), indexing="ij")
    cx = (xs.float() + 0.5) * stride
    cy = (ys.float() + 0.5) * stride
    d = dist.float().permute(0, 2, 3, 1)[m]
    cxm = cx.expand(b, h, w)[m]
    cym = cy.expand(b, h, w)[m]
    pred = torch.stack([cxm - d[:, 0], cym - d[:, 1], cxm + d[:, 2], cym + d[:, 3]], 1)
    tgt = box_t.permute(0, 2, 3, 1)[m]
    wt = weight[:, 0][m]
    loss = generalized_box_iou_loss(pred, tgt, reduction="none")
    return (loss * wt).sum() / wt.sum().clamp(min=1e-6)


def detection_loss(
    logits: torch.Tensor,
    dist: torch.Tensor,
    heat: torch.Tensor,
    box_t: torch.Tensor,
    weight: torch.Tensor,
    *,
    stride: int,
    ignore: torch.Tensor | None = None,
    box_weight: float = BOX_LOSS_WEIGHT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(total, heat term, box term)`` with ``total = heat + box_weight * box``."""
    l_heat = focal_loss(logits, heat, ignore)
    l_box = giou_loss(dist, box_t, weight, stride)
    return l_heat + box_weight * l_box, l_heat, l_box


def distill_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, heat: torch.Tensor,
                 weight: torch.Tensor, ignore: torch.Tensor | None = None) -> torch.Tensor:
    """How far the centre heatmap has moved from a teacher's where the labels say nothing.

    The Bernoulli KL divergence KL(teacher || student) of each cell's centre probability, summed
    over the cells away from every labelled product (target heat under 0.01 and no regression
    weight; ignored cells left out too) and normalised, as :func:`focal_loss` is, by the number of
    centres. Zero when the student equals the teacher. Fine-tuning with it (learning without
    forgetting) lets the labels teach what is new while the background keeps the teacher's
    opinion; see ``scripts/train_default.py --distill``.
    """
    s = logits.float()
    t = teacher_logits.float().detach()
    pt = torch.sigmoid(t)
    kl = pt * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - pt) * (F.logsigmoid(-t) - F.logsigmoid(-s))
    away = (heat < 0.01) & (weight <= 0)
    if ignore is not None:
        away = away & (ignore <= 0)
    n_pos = (heat >= 0.999).sum().clamp(min=1)
    return (kl * away).sum() / n_pos
