#!/usr/bin/env python
"""Train the built-in default detector (ShelfNet, see densedet_tile/detector/builtin.py) from scratch
on synthetic shelves drawn on the fly by densedet_tile.synth.shelves.

Sample ``i`` of the stream is drawn from ``np.random.default_rng([seed, i])``, so the data do not
depend on the number of workers; the network init and augmentations are seeded too. Given
``--steps`` the run is reproducible (up to nondeterministic GPU kernels); with ``--minutes`` the
number of steps depends on the machine's speed, and the learning-rate schedule follows
whichever of the two budgets runs out first.

Examples:
    # CPU, 2 cores, about 85 minutes (the documented CPU recipe)
    python scripts/train_default.py --device cpu --size 384 --batch 8 --workers 1 --minutes 85 --out runs/cpu
    # GPU (what scripts/gpu_train_default.sh runs)
    python scripts/train_default.py --device cuda --size 640 --batch 64 --workers 14 --minutes 7 --out $OUT

Writes ``OUT/default.pt`` (fp16 EMA weights + config + training info, loadable with
``torch.load(weights_only=True)``) every ``--save-every`` seconds and at the end, and
``OUT/train_log.csv`` (step, seconds, images, loss terms, lr).
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.detector.builtin import DEFAULT_CONFIG, ShelfNet, build_targets  # noqa: E402
from densedet_tile.synth.shelves import training_sample  # noqa: E402

class ShelfStream(torch.utils.data.Dataset):
    """Map-style view of an endless stream: item ``i`` is a pure function of (seed, i)."""

    def __init__(self, *, seed: int, size: int, stride: int, tile_ratio: float, length: int = 10**9) -> None:
        self.seed, self.size, self.stride, self.tile_ratio, self.length = seed, size, stride, tile_ratio, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, int(i)])
        img, boxes = training_sample(rng, size=self.size, tile=int(round(self.size * self.tile_ratio)))
        heat, box_t, weight = build_targets(boxes, self.size, self.stride)
        return (torch.from_numpy(np.array(img)), torch.from_numpy(heat), torch.from_numpy(box_t),
                torch.from_numpy(weight), len(boxes))


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


def focal_loss(logits: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss, normalised by the number of centres."""
    logits = logits.float()
    pos = gt >= 0.999
    logp = F.logsigmoid(logits)
    log1mp = F.logsigmoid(-logits)
    p = torch.sigmoid(logits)
    pos_loss = (logp * (1 - p) ** 2)[pos].sum()
    neg_loss = (log1mp * p ** 2 * (1 - gt) ** 4)[~pos].sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def giou_loss(dist: torch.Tensor, box_t: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Weighted GIoU loss of the decoded boxes at cells with positive weight."""
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


def augment(img: torch.Tensor, heat, box_t, weight, gen: torch.Generator):
    """GPU/CPU batch augmentation: per-sample horizontal flip, channel shuffle, brightness/contrast.

    ``img`` float (B, 3, S, S) in [0, 255]. Returns augmented copies (inputs untouched).
    """
    b, _, s, _ = img.shape
    dev = img.device
    flip = torch.rand(b, generator=gen).to(dev) < 0.5
    img = torch.where(flip.view(b, 1, 1, 1), img.flip(-1), img)
    heat = torch.where(flip.view(b, 1, 1, 1), heat.flip(-1), heat)
    weight = torch.where(flip.view(b, 1, 1, 1), weight.flip(-1), weight)
    fb = box_t.flip(-1)
    fb = torch.stack([s - fb[:, 2], fb[:, 1], s - fb[:, 0], fb[:, 3]], 1)
    box_t = torch.where(flip.view(b, 1, 1, 1), fb, box_t)
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)]).to(dev)
    shuffle = (torch.rand(b, generator=gen) < 0.5).to(dev)
    perm = torch.where(shuffle[:, None], perm, torch.arange(3, device=dev).expand(b, 3))
    img = torch.gather(img, 1, perm.view(b, 3, 1, 1).expand_as(img))
    gray = (torch.rand(b, generator=gen) < 0.05).to(dev)
    img = torch.where(gray.view(b, 1, 1, 1), img.mean(1, keepdim=True).expand_as(img), img)
    a = (torch.rand(b, 1, 1, 1, generator=gen) * 0.6 + 0.7).to(dev)
    c = ((torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 50).to(dev)
    img = (img * a + c).clamp(0, 255)
    return img, heat, box_t, weight


def save_checkpoint(model: torch.nn.Module, config: dict, info: dict, path: Path) -> None:
    state = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
             for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"config": config, "state_dict": state, "info": info}, tmp)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--size", type=int, default=640, help="training crop side (multiple of 32)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--minutes", type=float, default=None, help="time budget")
    ap.add_argument("--steps", type=int, default=None, help="step budget")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--reuse", type=int, default=1, help="optimizer steps per loaded batch (fresh augmentation each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every", type=float, default=60.0, help="seconds between checkpoints")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--init", default=None, help="start from this checkpoint (fine-tuning)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.minutes is None and args.steps is None:
        ap.error("give --minutes or --steps")
    if args.size % 32:
        ap.error("--size must be a multiple of 32")

    t_start = time.time()
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    config = dict(DEFAULT_CONFIG)
    stride = config["stride"]
    tile_ratio = 1280 / config["input_size"]  # products appear as in a 1280 tile resized to input_size

    model = ShelfNet(config)
    if args.init:
        ck = torch.load(args.init, map_location="cpu", weights_only=True)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state_dict"].items()})
    model.to(dev).to(memory_format=torch.channels_last)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 5e-4}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99))
    ds = ShelfStream(seed=args.seed, size=args.size, stride=stride, tile_ratio=tile_ratio)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch, shuffle=False, num_workers=args.workers, pin_memory=dev.type == "cuda",
        drop_last=True, persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers > 0 else None,
        worker_init_fn=_worker_init)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mean = torch.tensor(config["mean"], device=dev).view(1, 3, 1, 1) * 255
    std = torch.tensor(config["std"], device=dev).view(1, 3, 1, 1) * 255
    amp = dev.type == "cuda"
    warmup = 200 if args.steps is None else min(200, max(1, args.steps // 10))

    log_f = open(out / "train_log.csv", "w", newline="")
    log = csv.writer(log_f)
    log.writerow(["step", "seconds", "images", "loss", "heat", "box", "lr", "boxes_per_img"])
    step, images, last_save = 0, 0, time.time()
    t0 = time.time()
    budget_s = None if args.minutes is None else args.minutes * 60 - (t0 - t_start)
    run_loss = None
    done = False
    info: dict = {}
    print(f"device={dev} size={args.size} batch={args.batch} workers={args.workers} params="
          f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f}M", flush=True)
    it = iter(loader)
    while not done:
        img_u8, heat, box_t, weight, nbox = next(it)
        img = img_u8.to(dev, non_blocking=True).permute(0, 3, 1, 2).float()
        heat, box_t, weight = (t.to(dev, non_blocking=True) for t in (heat, box_t, weight))
        images += img.shape[0]
        for _ in range(args.reuse):
            prog = 0.0
            if args.steps is not None:
                prog = step / args.steps
            if budget_s is not None:
                prog = max(prog, (time.time() - t0) / budget_s)
            if prog >= 1.0:
                done = True
                break
            lr = args.lr * min(1.0, (step + 1) / warmup) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * prog)))
            for g_ in opt.param_groups:
                g_["lr"] = lr
            x, h_t, b_t, w_t = augment(img, heat, box_t, weight, gen)
            x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=amp):
                logits, dist = model(x)
            l_heat = focal_loss(logits, h_t)
            l_box = giou_loss(dist, b_t, w_t, stride)
            loss = l_heat + 5.0 * l_box
            if not torch.isfinite(loss):
                print(f"non-finite loss at step {step}: heat={l_heat.item()} box={l_box.item()}", flush=True)
                return 1
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            d = min(args.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.mul_(d).add_(pm.detach(), alpha=1 - d)
                for be, bm in zip(ema.buffers(), model.buffers()):
                    be.copy_(bm)
            step += 1
            if step <= 20 or step % 25 == 0:
                lv, hv, bv = loss.item(), l_heat.item(), l_box.item()
                run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
                el = time.time() - t0
                log.writerow([step, f"{el:.1f}", images, f"{lv:.4f}", f"{hv:.4f}", f"{bv:.4f}", f"{lr:.2e}",
                              f"{float(nbox.float().mean()):.1f}"])
                log_f.flush()
                print(f"step {step:6d} t={el:7.1f}s img={images:7d} loss={lv:.3f} (heat {hv:.3f} box {bv:.3f}) "
                      f"lr={lr:.1e} img/s={images / max(el, 1e-6):.1f}", flush=True)
            if time.time() - last_save > args.save_every:
                info = {"steps": step, "images": images, "seconds": round(time.time() - t0, 1), "size": args.size,
                        "batch": args.batch, "seed": args.seed, "loss_ema": run_loss, "device": str(dev)}
                save_checkpoint(ema, config, info, out / "default.pt")
                last_save = time.time()
                print(f"saved {out / 'default.pt'} at step {step}", flush=True)
    info = {"steps": step, "images": images, "seconds": round(time.time() - t0, 1), "size": args.size,
            "batch": args.batch, "seed": args.seed, "loss_ema": run_loss, "device": str(dev),
            "reuse": args.reuse, "lr": args.lr}
    save_checkpoint(ema, config, info, out / "default.pt")
    log_f.close()
    print(f"done: {info}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
