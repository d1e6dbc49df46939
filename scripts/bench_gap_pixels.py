"""How well the audit's second look in the pixels tells empty gaps from products the detector missed.

Generated shelf photos (``densedet_tile.synth.shelves.render_shelf``: empty stretches drawn
into the rows, signs and price cards in front of some products) with their true boxes, a share
of them dropped as a detector's misses; the audit runs on the boxes left, and
:func:`densedet_tile.audit.check_gaps` judges every gap in the image at the preview's scale.
A gap is *missed products* when dropped boxes cover at least 40 % of its width at its middle
height, *empty* when no true box covers more than 10 % of it, and is not scored otherwise.

    python scripts/bench_gap_pixels.py                 # 40 photos, 10 % missed, scale 0.5
    python scripts/bench_gap_pixels.py --images 80 --drop 0.2 --ratios
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

import numpy as np


def _covered(boxes: np.ndarray, x1: float, x2: float, ym: float) -> float:
    """Share of ``x1..x2`` covered by the boxes crossing height ``ym`` (overlaps counted once)."""
    b = boxes[(boxes[:, 1] < ym) & (boxes[:, 3] > ym)]
    lo, hi = np.clip(b[:, 0], x1, x2), np.clip(b[:, 2], x1, x2)
    keep = hi > lo
    lo, hi = np.sort(lo[keep]), hi[keep][np.argsort(lo[keep])]
    total, reach = 0.0, x1
    for a, b_ in zip(lo, hi):  # a few boxes per gap
        if b_ > reach:
            total += b_ - max(a, reach)
            reach = b_
    return total / max(x2 - x1, 1e-9)


def run(images: int, drop: float, scale: float, seed: int) -> dict[str, list[float]]:
    from PIL import Image

    from densedet_tile.audit import check_gaps, run_audit
    from densedet_tile.synth.shelves import render_shelf

    ratios: dict[str, list[float]] = {"empty": [], "missed": []}
    unjudged = 0
    for i in range(images):
        rng = np.random.default_rng(seed + i)
        w, h = (2448, 3264) if i % 2 == 0 else (3264, 2448)
        img, truth = render_shelf(rng, width=w, height=h, product_height=260 * rng.uniform(0.6, 1.3))
        lost = np.random.default_rng(10_000 + seed + i).random(len(truth)) < drop
        res = run_audit(truth[~lost], w, h)
        small = np.asarray(Image.fromarray(img).resize((round(w * scale), round(h * scale)), Image.BILINEAR))
        res = check_gaps(res, small)
        for g in res.gaps:
            ym = (g.xyxy[1] + g.xyxy[3]) / 2
            missed = _covered(truth[lost], g.x1, g.x2, ym)
            anything = _covered(truth, g.x1, g.x2, ym)
            kind = "missed" if missed >= 0.4 else "empty" if anything <= 0.1 else None
            if kind is None:
                continue
            if g.texture is None:
                unjudged += 1
                continue
            ratios[kind].append(g.texture)
    ratios["unjudged"] = [float(unjudged)]
    return ratios


def main(argv: Sequence[str] | None = None) -> int:
    from densedet_tile.audit.gapcheck import LOOKS_EMPTY, LOOKS_STOCKED

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=40)
    ap.add_argument("--drop", type=float, default=0.1, help="share of the true boxes dropped (missed)")
    ap.add_argument("--scale", type=float, default=0.5, help="scale of the image the gaps are judged in")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ratios", action="store_true", help="also print the ratios' percentiles")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    r = run(args.images, args.drop, args.scale, args.seed)
    print(f"{args.images} generated photos, {args.drop:.0%} of the boxes dropped, judged at scale {args.scale} "
          f"({time.perf_counter() - t0:.0f} s); thresholds {LOOKS_EMPTY} / {LOOKS_STOCKED}")
    print("| true gap | gaps | looks empty | unsure | looks stocked |")
    print("|---|---|---|---|---|")
    for kind, label in (("empty", "empty shelf"), ("missed", "products missed by the detector")):
        v = np.asarray(r[kind])
        n = max(len(v), 1)
        print(f"| {label} | {len(v)} | {np.sum(v < LOOKS_EMPTY) / n:.1%} | "
              f"{np.sum((v >= LOOKS_EMPTY) & (v < LOOKS_STOCKED)) / n:.1%} | {np.sum(v >= LOOKS_STOCKED) / n:.1%} |")
        if args.ratios and len(v):
            print(f"  ratio percentiles 10/25/50/75/90: {np.round(np.percentile(v, [10, 25, 50, 75, 90]), 2).tolist()}")
    print(f"not judged: {int(r['unjudged'][0])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
