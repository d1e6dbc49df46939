#!/usr/bin/env python
"""CPU cost of the mmdet DenseDet configs on one tile: seconds and peak memory.

Usage:
    python scripts/bench_mmdet_cpu.py [--config configs/densedet_x101_32x4d_cascade_bfp.py]
        [--tile 1280] [--repeats 2] [--threads N] [--json out.json]

Random weights (no checkpoint), DenseDet test settings from the config, the tile resized by
nothing (input_size = tile). Reports, per predict() call after one warm-up call: wall seconds
and process CPU seconds (all threads), plus the process's peak resident memory (ru_maxrss)
after building the model and at the end. Run one config per process so peak RSS is its own.
The content of the synthetic tile barely matters: the RPN keeps its 3000 proposals either way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_shelf(side: int, seed: int = 0) -> np.ndarray:
    """A side x side RGB picture of coloured boxes on rows of shelves, with noise."""
    rng = np.random.default_rng(seed)
    img = np.full((side, side, 3), 60, np.uint8)
    row_h = max(side // 8, 16)
    for y in range(0, side - row_h, row_h):
        x = 0
        while x < side:
            w = int(rng.integers(row_h // 3, row_h))
            colour = rng.integers(30, 250, 3)
            img[y + 4:y + row_h - 4, x + 2:min(side, x + w - 2)] = colour
            x += w
    noise = rng.integers(-12, 13, img.shape)
    return np.clip(img.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "densedet_x101_32x4d_cascade_bfp.py"))
    ap.add_argument("--tile", type=int, default=1280)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", default=None, help="append the result as one JSON line to this file")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from densedet_tile.detector import mmdet_adapter

    rss_start = peak_rss_mib()
    t0 = time.perf_counter()
    det = mmdet_adapter.build(config=args.config, checkpoint=None, device="cpu", input_size=args.tile)
    build_s = time.perf_counter() - t0
    rss_built = peak_rss_mib()
    n_params = sum(p.numel() for p in det.model.parameters())
    tile = synthetic_shelf(args.tile)
    det.predict([tile])  # warm-up
    walls, cpus, nboxes = [], [], []
    for _ in range(args.repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        (d,) = det.predict([tile])
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        nboxes.append(len(d))
    result = {
        "config": Path(args.config).name,
        "tile": args.tile,
        "params_m": round(n_params / 1e6, 2),
        "threads": torch.get_num_threads(),
        "build_s": round(build_s, 2),
        "wall_s_per_tile": round(float(np.median(walls)), 2),
        "cpu_s_per_tile": round(float(np.median(cpus)), 2),
        "wall_s_all": [round(x, 2) for x in walls],
        "cpu_s_all": [round(x, 2) for x in cpus],
        "boxes": nboxes,
        "peak_rss_mib_after_import": round(rss_start, 1),
        "peak_rss_mib_after_build": round(rss_built, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "ops": det.info["mmdet_ops"],
    }
    print(json.dumps(result))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "bench_mmdet_cpu"))
