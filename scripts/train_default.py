#!/usr/bin/env python
"""Train the built-in default detector (ShelfNet, see densedet_tile/detector/builtin.py) from scratch
on synthetic shelves drawn on the fly by densedet_tile.synth.shelves. The losses, augmentation, EMA and
checkpoint format live in densedet_tile.train (shared with ``densedet-tile adapt``); this script is the
command line and the loop around them.

Sample ``i`` of the stream is drawn from ``np.random.default_rng([seed, i])``, so the data do not
depend on the number of workers; the network init and augmentations are seeded too. Given
``--steps`` the run is reproducible (up to nondeterministic GPU kernels); with ``--minutes`` the
number of steps depends on the machine's speed, and the learning-rate schedule follows
whichever of the two budgets runs out first.

Examples:
    # CPU, 2 cores, about 85 minutes (the documented CPU recipe)
    python scripts/train_default.py --device cpu --size 384 --batch 8 --workers 1 --reuse 2 --minutes 85 --out runs/cpu
    # GPU (what scripts/gpu_train_default.sh runs)
    python scripts/train_default.py --device cuda --size 640 --batch 32 --reuse 3 --lr 2e-3 --workers 14 \
        --minutes 7 --save-every 60 --seed 0 --out $OUT

Writes ``OUT/default.pt`` (fp16 EMA weights + config + training info, loadable with
``torch.load(weights_only=True)``) every ``--save-every`` seconds and at the end, and
``OUT/train_log.csv`` (step, seconds, images, loss terms, lr).
"""

from __future__ import annotations

import argparse
import csv
import signal
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.detector.builtin import DEFAULT_CONFIG, ShelfNet  # noqa: E402
from densedet_tile.train import (  # noqa: E402
    ShelfStream,
    ema_copy,
    learning_rate,
    make_optimizer,
    normaliser,
    save_checkpoint,
    train_step,
)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)


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
    if args.size % 32 or args.size < 96:
        ap.error("--size must be a multiple of 32, at least 96 (smaller crops cannot hold the generated products)")
    if args.init and not Path(args.init).is_file():
        ap.error(f"--init {args.init}: no such file")

    t_start = time.time()

    def stop(signum: int, frame: object) -> None:  # `timeout` and schedulers send SIGTERM
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
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
    ema = ema_copy(model)
    opt = make_optimizer(model, args.lr)
    ds = ShelfStream(seed=args.seed, size=args.size, stride=stride, tile_ratio=tile_ratio)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=args.batch, shuffle=False, num_workers=args.workers, pin_memory=dev.type == "cuda",
        drop_last=True, persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers > 0 else None,
        worker_init_fn=_worker_init)
    gen = torch.Generator().manual_seed(args.seed + 1)
    mean, std = normaliser(config, dev)
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
    bad_in_a_row = 0  # batches with a non-finite loss, one after another

    def run_info(**extra: object) -> dict:
        return {"steps": step, "images": images, "seconds": round(time.time() - t0, 1), "size": args.size,
                "batch": args.batch, "seed": args.seed, "loss_ema": run_loss, "device": str(dev), **extra}

    try:
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
                lr = learning_rate(args.lr, step, prog, warmup)
                terms = train_step(model, ema, opt, (img, heat, box_t, weight), step=step, lr=lr, gen=gen, mean=mean,
                                   std=std, stride=stride, ema_decay=args.ema, amp=amp,
                                   memory_format=torch.channels_last)
                if terms is None:  # nothing was updated: skip the batch, unless it keeps happening
                    bad_in_a_row += 1
                    print(f"non-finite loss at step {step} ({bad_in_a_row} in a row); batch skipped", flush=True)
                    if bad_in_a_row >= 20:
                        raise FloatingPointError(f"20 batches in a row with a non-finite loss at step {step}")
                    break
                bad_in_a_row = 0
                step += 1
                if step <= 20 or step % 25 == 0:
                    lv, hv, bv = terms["loss"], terms["heat"], terms["box"]
                    run_loss = lv if run_loss is None else 0.9 * run_loss + 0.1 * lv
                    el = time.time() - t0
                    log.writerow([step, f"{el:.1f}", images, f"{lv:.4f}", f"{hv:.4f}", f"{bv:.4f}", f"{lr:.2e}",
                                  f"{float(nbox.float().mean()):.1f}"])
                    log_f.flush()
                    print(f"step {step:6d} t={el:7.1f}s img={images:7d} loss={lv:.3f} (heat {hv:.3f} box {bv:.3f}) "
                          f"lr={lr:.1e} img/s={images / max(el, 1e-6):.1f}", flush=True)
                if time.time() - last_save > args.save_every:
                    info = run_info()
                    save_checkpoint(ema, config, info, out / "default.pt")
                    last_save = time.time()
                    print(f"saved {out / 'default.pt'} at step {step}", flush=True)
        info = run_info(reuse=args.reuse, lr=args.lr)
        save_checkpoint(ema, config, info, out / "default.pt")
    except BaseException as exc:  # a crash or a kill midway still leaves the latest averaged weights
        info = run_info(reuse=args.reuse, lr=args.lr, aborted=f"{type(exc).__name__}: {exc}"[:300])
        try:
            save_checkpoint(ema, config, info, out / "default.pt")
            print(f"aborted at step {step}; saved {out / 'default.pt'}", flush=True)
        except Exception as save_exc:  # (the device itself may be what failed)
            print(f"aborted at step {step}; could not save: {save_exc}", flush=True)
        raise
    log_f.close()
    print(f"done: {info}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
