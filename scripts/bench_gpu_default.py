#!/usr/bin/env python
"""GPU throughput and peak VRAM of the default detector (issue 5e), written as JSON.

Cases (random-content uint8 images through ``DefaultDetector.predict``, which includes the
host-to-device copy, normalisation, the network and decoding with NMS):

* ``tile1280``: a 1280 px tile as the engine feeds it, resized to the model's input_size (640);
* ``whole2560``: a whole 2560x2560 image at the model's scale (resized to 1280x1280);
* ``whole2560_native``: the same image fed at 2560x2560 without resizing (products twice as
  large as the model knows; a pure cost figure).

For batch 1/4/8 and fp32/fp16 (autocast) it records images per second (median of ``--iters``
timed calls after warm-up, ``torch.cuda.synchronize`` around each) and
``torch.cuda.max_memory_allocated`` in MiB. Also runs on CPU for a dry run (no VRAM figures).

    python scripts/bench_gpu_default.py --weights densedet_tile/detector/weights/default.pt --out gpu_bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

try:
    import torch
except ModuleNotFoundError:  # the light install has no torch: one line naming the extra, no traceback
    print("bench_gpu_default: needs torch: pip install 'densedet-tile[torch]'", file=sys.stderr)
    raise SystemExit(2) from None

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densedet_tile.detector.builtin import build_from_checkpoint  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--cases", default="tile1280,whole2560,whole2560_native")
    args = ap.parse_args(argv)

    ckpt = torch.load(args.weights, map_location="cpu", weights_only=True)
    det = build_from_checkpoint(ckpt, device=args.device, score_thr=0.3)
    cuda = det.device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True
    sizes = {"tile1280": det.input_size, "whole2560": det.input_size * 2, "whole2560_native": 2560}
    rng = np.random.default_rng(0)
    results: list[dict] = []
    meta = {"device": torch.cuda.get_device_name(0) if cuda else platform.processor() or "cpu",
            "torch": torch.__version__, "weights": str(args.weights), "iters": args.iters,
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "note": "predict() end to end: H2D copy, normalisation, network, decode + NMS; random pixels"}
    for case in args.cases.split(","):
        side = sizes[case]
        for bs in (int(b) for b in args.batches.split(",")):
            imgs = [rng.integers(0, 255, (side, side, 3), dtype=np.uint8) for _ in range(bs)]
            for prec in ("fp32", "fp16"):
                if prec == "fp16" and not cuda:
                    continue
                det.fp16 = prec == "fp16"
                if cuda:
                    torch.cuda.synchronize()
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                for _ in range(2):
                    det.predict(imgs)
                times = []
                for _ in range(args.iters):
                    if cuda:
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    det.predict(imgs)
                    if cuda:
                        torch.cuda.synchronize()
                    times.append(time.perf_counter() - t)
                med = statistics.median(times)
                row = {"case": case, "input_side": side, "batch": bs, "precision": prec,
                       "ms_per_call": round(med * 1000, 2), "images_per_s": round(bs / med, 1),
                       "peak_vram_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1) if cuda else None}
                results.append(row)
                print(json.dumps(row), flush=True)
                Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "bench_gpu_default"))
