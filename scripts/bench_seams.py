"""Issue-2 acceptance measurement: seam handling on a painted aisle panorama.

Paints a synthetic aisle (default 20000x3000 px, 700 products, some larger than the tile
overlap), runs :class:`densedet_tile.synth.painted_aisles.PaintedDetector` (a fake detector
that reads product ids from the tile pixels and reports every visible product, clipped by the
tile edge, with up to ``--jitter`` px of noise) through the real engine (``dt.detect``) with
tile 1280 and overlap 0.2, and scores the merged boxes for each merge mode with
:func:`densedet_tile.synth.painted_aisles.seam_report`.

    python scripts/bench_seams.py                       # modes wbf, nms, none; writes benchmarks/seams.md
    python scripts/bench_seams.py --sweep               # also the MergeSpec default sweep

Targets (issue 2): recall at IoU 0.9 >= 0.99 (products smaller than the overlap) and
>= 0.95 (larger ones); duplicates + fragments <= 0.5% of products.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import platform
import sys
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import save_page  # noqa: E402

from densedet_tile.merge import merge_tiles
from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle, seam_report
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import MergeSpec, TileSpec

JITTERS = (1.0, 2.0, 4.0, 8.0)
COLS = ["recall_small", "recall_large", "duplicates", "fragments", "merged", "dup_frag_rate"]


def per_tile(image: np.ndarray, tiles, detector) -> list:  # noqa: ANN001
    return detector.predict([image[t.y : t.y2, t.x : t.x2] for t in tiles])


def run_engine(image, detector, spec: TileSpec, merge: MergeSpec):  # noqa: ANN001
    """Through dt.detect when the pipeline is importable, else grid + predict + merge_tiles."""
    try:
        import densedet_tile as dt

        detect = dt.detect
    except (ImportError, AttributeError):
        detect = None
    if detect is not None:
        return detect(image, detector=detector, tile=spec.tile, overlap=spec.overlap, merge=merge), "dt.detect"
    tiles = make_grid(image.shape[1], image.shape[0], spec)
    return merge_tiles(tiles, per_tile(image, tiles, detector), merge), "make_grid+merge_tiles"


def fmt_row(name: str, r: dict, secs: float | None = None) -> str:
    cells = [name, f"{r['recall_small']:.4f}", f"{r['recall_large']:.4f}", str(r["duplicates"]),
             str(r["fragments"]), str(r["merged"]), f"{100 * r['dup_frag_rate']:.2f}%"]
    if secs is not None:
        cells.append(f"{secs:.3f}")
    return "| " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=20000)
    ap.add_argument("--height", type=int, default=3000)
    ap.add_argument("--products", type=int, default=700)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jitter", type=float, default=1.0)
    ap.add_argument("--tile", type=int, default=1280)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--sweep", action="store_true", help="also sweep MergeSpec tolerances and IoUs")
    ap.add_argument("--out", type=Path, default=None, help="also write the page here (e.g. benchmarks/seams.md)")
    args = ap.parse_args(argv)
    spec = TileSpec(args.tile, args.overlap)
    lines = [
        "# Seam handling on painted aisle panoramas (issue 2)",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, "
        f"{platform.processor() or 'cpu'}, Python {platform.python_version()}",
        f"- command: `python {' '.join(['scripts/bench_seams.py', *sys.argv[1:]])}`",
        f"- aisle {args.width}x{args.height} px, {args.products} products, seeds {args.seeds}; "
        f"PaintedDetector jitter {args.jitter} px; tile {spec.tile}, overlap {spec.overlap} "
        f"({spec.overlap_px} px). 'small' = longer side < {spec.overlap_px} px.",
        "- duplicates: unmatched boxes with IoU >= 0.5 to a product matched by another box; fragments: "
        "other unmatched boxes with IoU > 0.1 to a product or at least half inside one; merged: boxes "
        "covering half of each of >= 2 products. Recall at IoU 0.9.",
        "",
    ]
    header = "| mode / seed | recall small | recall large | duplicates | fragments | merged | dup+frag | merge s |"
    lines += [header, "|" + "---|" * 8]
    worst = {}
    for seed in args.seeds:
        image, gt = make_painted_aisle(args.width, args.height, n_products=args.products, seed=seed)
        det = PaintedDetector(jitter=args.jitter, seed=seed)
        tiles = make_grid(args.width, args.height, spec)
        raw = per_tile(image, tiles, det)
        for mode in ("wbf", "nms", "none"):
            t0 = time.perf_counter()
            out = merge_tiles(tiles, raw, MergeSpec(mode=mode))
            secs = time.perf_counter() - t0
            r = seam_report(out, gt, large_side=spec.overlap_px)
            lines.append(fmt_row(f"{mode} / {seed}", r, secs))
            print(lines[-1], flush=True)
            if mode == "wbf":
                for k in ("recall_small", "recall_large"):
                    worst[k] = min(worst.get(k, 1.0), r[k])
                worst["dup_frag_rate"] = max(worst.get("dup_frag_rate", 0.0), r["dup_frag_rate"])
                worst["n"] = (r["n_small"], r["n_large"])
        # The same detector through the whole engine (reads, batching, merge) for the default.
        out, how = run_engine(image, det, spec, MergeSpec())
        r = seam_report(out, gt, large_side=spec.overlap_px)
        lines.append(fmt_row(f"wbf via {how} / {seed}", r))
        print(lines[-1], flush=True)
    ok = (worst["recall_small"] >= 0.99 and worst["recall_large"] >= 0.95 and worst["dup_frag_rate"] <= 0.005)
    lines += ["", f"Worst over seeds (wbf): recall small {worst['recall_small']:.4f}, recall large "
              f"{worst['recall_large']:.4f}, dup+frag {100 * worst['dup_frag_rate']:.2f}% -> "
              f"targets {'MET' if ok else 'MISSED'}.", ""]
    if args.sweep:
        lines += sweep(args, spec)
    save_page(args.out, "\n".join(lines))
    return 0 if ok else 1


def sweep(args, spec: TileSpec) -> list[str]:  # noqa: ANN001
    """Vary one MergeSpec field at a time around the defaults, at several jitter levels."""
    lines = ["## MergeSpec sweep (one field varied, others default; mean over seeds)", "",
             f"Aisle {args.width}x{args.height}, {args.products} products, seeds {args.seeds}.", ""]
    grid = {
        "edge_tol": [0.0, 2.0, 4.0, 8.0, 16.0],
        "seam_tol": [1.0, 4.0, 8.0, 16.0, 32.0],
        "seam_tol_frac": [0.0, 0.03, 0.1, 0.2],
        "fuse_iou": [0.3, 0.55, 0.7, 0.85],
        "nms_iou": [0.3, 0.5, 0.7],
    }
    data = []
    for jitter in JITTERS:
        for seed in args.seeds:
            image, gt = make_painted_aisle(args.width, args.height, n_products=args.products, seed=seed)
            tiles = make_grid(args.width, args.height, spec)
            data.append((jitter, gt, tiles, per_tile(image, tiles, PaintedDetector(jitter=jitter, seed=seed))))
    base = MergeSpec()
    lines += ["| field = value | jitter | recall small | recall large | duplicates | fragments | merged | dup+frag |",
              "|" + "---|" * 8]
    for field, values in grid.items():
        for v in values:
            ms = dataclasses.replace(base, **{field: v})
            for jitter in JITTERS:
                rs = [seam_report(merge_tiles(t, d, ms), g, large_side=spec.overlap_px)
                      for j, g, t, d in data if j == jitter]
                mean = {k: float(np.mean([r[k] for r in rs])) for k in COLS}
                mark = " (default)" if getattr(base, field) == v else ""
                lines.append(f"| {field} = {v}{mark} | {jitter} | {mean['recall_small']:.4f} | "
                             f"{mean['recall_large']:.4f} | {mean['duplicates']:.1f} | {mean['fragments']:.1f} | "
                             f"{mean['merged']:.1f} | {100 * mean['dup_frag_rate']:.2f}% |")
                print(lines[-1], flush=True)
    return lines + [""]


if __name__ == "__main__":
    sys.exit(main())
