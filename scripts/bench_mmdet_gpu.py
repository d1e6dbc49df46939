#!/usr/bin/env python
"""GPU cost of the DenseDet mmdet config (issue 5e): latency and peak memory.

Measures configs/densedet_x101_32x4d_cascade_bfp.py with random weights on one CUDA device:

* a 1280 px tile and a whole 2560 px photo (2560 x 1920, portrait, like a shelf photo scaled
  to the export's 2560 canvas), each at batch 1, 4 and 8;
* precision fp32, and fp16 through the adapter's deliberate path (backbone + neck in half
  precision, RPN and cascade RoI heads in fp32; ``torch.autocast`` breaks mmdet's RoI head).

Per case: median wall ms per predict() call over --repeats after --warmup calls (CUDA synced),
ms per image, peak GPU memory (torch.cuda.max_memory_allocated, reset per case), boxes per
image. For batch 1 it also reports how well fp16 boxes agree with fp32 boxes on the same
input: the fraction of fp16 boxes with an fp32 box at IoU >= 0.9. One JSON line per case
goes to --out; a Markdown table is printed at the end.

Run on a device with mmdet (see docs/mmdet.md, "GPU benchmark", for carrying the wheels):
    PYTHONUNBUFFERED=1 python3 scripts/bench_mmdet_gpu.py --out $OUT/mmdet_gpu.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

CASES = (("tile1280", 1280, 1280), ("whole2560", 2560, 1920))


def timed(det, images, warmup: int, repeats: int, cuda: bool):
    import torch

    sync = torch.cuda.synchronize if cuda else (lambda: None)
    for _ in range(warmup):
        det.predict(images)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times, out = [], None
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        out = det.predict(images)
        sync()
        times.append((time.perf_counter() - t0) * 1000.0)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    return float(np.median(times)), peak, out


def agreement(a, b) -> float:
    """Fraction of boxes in ``a`` that have a box in ``b`` at IoU >= 0.9."""
    import torch
    from torchvision.ops import box_iou

    if len(a) == 0:
        return 1.0
    if len(b) == 0:
        return 0.0
    iou = box_iou(torch.from_numpy(np.asarray(a.xyxy)), torch.from_numpy(np.asarray(b.xyxy)))
    return float((iou.max(dim=1).values >= 0.9).float().mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "densedet_x101_32x4d_cascade_bfp.py"))
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--precisions", default="fp32,fp16")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="mmdet_gpu.jsonl")
    ap.add_argument("--smoke", action="store_true",
                    help="check the script itself on the CPU: light config, small sizes, bf16 for fp16")
    args = ap.parse_args(argv)

    import torch

    from bench_mmdet_cpu import synthetic_shelf
    from densedet_tile.detector import mmdet_adapter

    cases = CASES
    device, half = "cuda", "fp16"
    if args.smoke:
        args.config = str(ROOT / "configs" / "densedet_r18_cascade_bfp_light.py")
        cases = (("tile128", 128, 128), ("whole256", 256, 192))
        device, half = "cpu", "bf16"
        args.batches, args.warmup, args.repeats = "1,2", 0, 1
    elif not torch.cuda.is_available():
        print("error: no CUDA device", file=sys.stderr)
        return 2
    cuda = device == "cuda"
    gpu = torch.cuda.get_device_name(0) if cuda else "cpu (smoke check)"
    batches = [int(b) for b in args.batches.split(",")]
    rows, reference = [], {}
    with open(args.out, "w") as fh:
        for precision in args.precisions.split(","):
            precision = half if precision == "fp16" else precision
            for case, h, w in cases:
                torch.manual_seed(0)  # same random weights for fp32 and fp16
                t0 = time.perf_counter()
                det = mmdet_adapter.build(config=args.config, checkpoint=None, device=device,
                                          input_size=max(h, w), precision=precision)
                build_s = time.perf_counter() - t0
                img = synthetic_shelf(max(h, w))[:h, :w]
                for batch in batches:
                    try:
                        ms, peak, out = timed(det, [img] * batch, args.warmup, args.repeats, cuda)
                    except torch.cuda.OutOfMemoryError:
                        torch.cuda.empty_cache()  # recorded, then the next case runs
                        row = {"case": case, "precision": precision, "batch": batch, "error": "out of memory"}
                        rows.append(row)
                        fh.write(json.dumps(row) + "\n")
                        continue
                    row = {
                        "gpu": gpu, "torch": torch.__version__, "case": case, "h": h, "w": w,
                        "precision": precision, "batch": batch, "ms_per_call": round(ms, 1),
                        "ms_per_image": round(ms / batch, 1), "peak_gib": round(peak, 2),
                        "boxes_per_image": len(out[0]), "build_s": round(build_s, 1),
                        "ops": det.info["mmdet_ops"],
                    }
                    if batch == 1:
                        if precision == "fp32":
                            reference[case] = out[0]
                        elif case in reference:
                            row["fp16_boxes_matching_fp32"] = round(agreement(out[0], reference[case]), 3)
                    rows.append(row)
                    fh.write(json.dumps(row) + "\n")
                    fh.flush()
                    print(json.dumps(row), flush=True)
                del det
                if cuda:
                    torch.cuda.empty_cache()
    print(f"\n{Path(args.config).name}, random weights, {gpu}, torch {torch.__version__}\n")
    print("| case | precision | batch | ms / call | ms / image | peak GiB | boxes / image | fp16 vs fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['case']} | {r['precision']} | {r['batch']} | {r['error']} | | | | |")
            continue
        print(f"| {r['case']} | {r['precision']} | {r['batch']} | {r['ms_per_call']} | {r['ms_per_image']} "
              f"| {r['peak_gib']} | {r['boxes_per_image']} | {r.get('fp16_boxes_matching_fp32', '')} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
