"""Merge benchmark (issue 5a): our merge against ensemble-boxes WBF and SAHI's postprocess.

Per-tile detections with realistic cross-tile duplicates and seam fragments are made from
painted-aisle ground truth: aisles of 20000x3000 px (``make_painted_aisle``) stacked into
one tall panorama, cut by the real tile grid (1280 px, overlap 0.2), and every product's view
in every tile that sees it -- its box clipped to the tile, 1 px of jitter, lower score when
truncated -- exactly what ``PaintedDetector`` reports for a painted aisle (checked at start
on one aisle). The same boxes, in global pixels, go to every method, in one process:

* ours: ``merge_tiles`` (mode wbf: seam repair + fusion + NMS; and mode nms), and the bare
  ``weighted_box_fusion`` (tiles as groups, iou 0.55) and ``nms`` (IoU 0.5) functions;
* ensemble-boxes ``weighted_boxes_fusion`` (all boxes as one model, coordinates normalised
  to [0, 1], iou_thr 0.55, skip_box_thr 0);
* SAHI ``greedy_nmm`` and ``nms`` from ``sahi.postprocess.combine`` (the array functions
  behind GreedyNMMPostprocess / NMSPostprocess, with SAHI's default backend here; match
  metric IOS 0.5 for GREEDYNMM as in SAHI's defaults, IOU 0.5 for NMS), which return only
  indices; and ``GreedyNMMPostprocess`` (IOS 0.5, per class) on a list of ObjectPrediction,
  the merge ``get_sliced_prediction`` runs, which also merges the boxes (building the list
  is not timed).

A peer whose predicted time at a size exceeds ``--budget`` seconds is not run there; its time
is extrapolated from the two largest sizes it ran (power law fitted on them) and marked.

    python scripts/bench_merge.py              # 10k, 30k, 100k, 1M boxes; writes benchmarks/merge.md
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gc
import math
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import save_page  # noqa: E402

from densedet_tile.merge import candidate_pairs, merge_tiles, nms, weighted_box_fusion
from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import Detections, MergeSpec, TileSpec

AISLE_W, AISLE_H, AISLE_N = 20000, 3000, 700


def tile_views(gt: np.ndarray, tiles: list, *, jitter: float, seed: int) -> list[Detections]:
    """Each product's view in each tile (box clipped to the tile), as PaintedDetector reports.

    ``gt`` (N, 4) global xyxy of disjoint rectangular products. Returns tile-local
    Detections per tile: clipped box + uniform jitter in [-jitter, jitter], clipped to the
    tile; score base in [0.8, 1.0) from the product id, times 0.7 when touching the tile
    border.
    """
    tb = np.array([(t.x, t.y, t.x2, t.y2) for t in tiles], np.float64)
    both = np.concatenate([tb, gt])
    i, j = candidate_pairs(both)
    keep = (i < len(tb)) & (j >= len(tb))
    ti, pj = i[keep], j[keep] - len(tb)
    order = np.lexsort((pj, ti))
    ti, pj = ti[order], pj[order]
    box = np.concatenate([np.maximum(gt[pj, :2], tb[ti, :2]), np.minimum(gt[pj, 2:], tb[ti, 2:])], axis=1)
    box -= tb[ti][:, [0, 1, 0, 1]]
    w = (tb[ti, 2] - tb[ti, 0])[:, None]
    h = (tb[ti, 3] - tb[ti, 1])[:, None]
    touches = (box[:, 0] <= 0) | (box[:, 1] <= 0) | (box[:, 2] >= w[:, 0]) | (box[:, 3] >= h[:, 0])
    uid = (pj + 1).astype(np.uint64)
    base = 0.8 + 0.2 * (((uid * np.uint64(2654435761)) % np.uint64(1 << 16)) / float(1 << 16))
    scores = base * np.where(touches, 0.7, 1.0)
    rng = np.random.default_rng(seed)
    box += rng.uniform(-jitter, jitter, box.shape)
    box[:, 0::2] = np.clip(box[:, 0::2], 0, w)
    box[:, 1::2] = np.clip(box[:, 1::2], 0, h)
    box[:, :2], box[:, 2:] = np.minimum(box[:, :2], box[:, 2:]), np.maximum(box[:, :2], box[:, 2:])
    counts = np.bincount(ti, minlength=len(tiles))
    splits = np.cumsum(counts)[:-1]
    return [
        Detections(b.astype(np.float32), s.astype(np.float32), np.zeros(len(s), np.int64))
        for b, s in zip(np.split(box, splits), np.split(scores, splits))
    ]


def make_case(target_boxes: int, seed: int = 0) -> tuple[list, list[Detections], int, int]:
    """Tiles and per-tile detections of a stacked-aisle panorama with ~``target_boxes`` views."""
    # Views per product ~ 2 at tile 1280 / overlap 0.2; a few distinct aisles cycled.
    aisles = [make_painted_aisle(AISLE_W, AISLE_H, n_products=AISLE_N, seed=seed + k)[1].xyxy for k in range(4)]
    per_aisle = None
    parts, k = [], 0
    while True:
        gt = aisles[k % len(aisles)].astype(np.float64) + np.array([0, k * AISLE_H, 0, k * AISLE_H])
        parts.append(gt)
        k += 1
        if per_aisle is None:
            tiles = make_grid(AISLE_W, AISLE_H, TileSpec())
            per_aisle = sum(len(d) for d in tile_views(gt, tiles, jitter=1.0, seed=seed))
        if k * per_aisle >= target_boxes:
            break
    gt = np.concatenate(parts)
    height = k * AISLE_H
    tiles = make_grid(AISLE_W, height, TileSpec())
    dets = tile_views(gt, tiles, jitter=1.0, seed=seed)
    # Trim to the target count (whole tiles, in grid order).
    counts = np.cumsum([len(d) for d in dets])
    last = int(np.searchsorted(counts, target_boxes)) + 1
    return tiles[:last], dets[:last], AISLE_W, height


def check_generator() -> str:
    """The analytic views equal PaintedDetector's on a painted aisle (same boxes, no jitter)."""
    img, gt = make_painted_aisle(AISLE_W, AISLE_H, n_products=AISLE_N, seed=0)
    tiles = make_grid(AISLE_W, AISLE_H, TileSpec())
    painted = PaintedDetector(jitter=0.0).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
    analytic = tile_views(gt.xyxy.astype(np.float64), tiles, jitter=0.0, seed=0)
    for a, b in zip(painted, analytic):
        ka = np.lexsort(a.xyxy.T[::-1])
        kb = np.lexsort(b.xyxy.T[::-1])
        if len(a) != len(b) or not np.array_equal(a.xyxy[ka], b.xyxy[kb]) or not np.allclose(a.scores[ka], b.scores[kb]):
            raise SystemExit("analytic tile views differ from PaintedDetector's")
    return f"analytic views == PaintedDetector on a painted {AISLE_W}x{AISLE_H} aisle ({sum(map(len, painted))} views)"


def flatten(tiles: list, dets: list[Detections]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xyxy = np.concatenate([d.xyxy.astype(np.float64) + np.array([t.x, t.y, t.x, t.y]) for t, d in zip(tiles, dets)])
    return xyxy, np.concatenate([d.scores for d in dets]).astype(np.float64), np.concatenate([d.labels for d in dets])


def timed(fn, repeat: int) -> tuple[float, float, object]:  # noqa: ANN001
    """Best wall and best CPU (this process) seconds over ``repeat`` runs, and the output."""
    wall, cpu, out = math.inf, math.inf, None
    for _ in range(repeat):
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - t0)
        cpu = min(cpu, time.process_time() - c0)
    return wall, cpu, out


def peak_mib(fn) -> float:  # noqa: ANN001
    gc.collect()
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def pile_case(k: int) -> int:
    """Time merge_tiles on ``k`` jittered copies per tile of one product lying in the overlap of
    two 1280 px tiles (scores uniform in 0.3-1), and print the time and the peak RSS."""
    import resource

    rng = np.random.default_rng(0)
    tiles = make_grid(2304, 1280, TileSpec(1280, 0.2))
    product = np.array([1040.0, 300, 1260, 700])
    dets = []
    for t in tiles:
        b = product + rng.normal(0, 8, (k, 4)) - [t.x, t.y, t.x, t.y]
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        dets.append(Detections(b.astype(np.float32), rng.uniform(0.3, 1, k).astype(np.float32)))
    t0 = time.perf_counter()
    out = merge_tiles(tiles, dets, MergeSpec())
    dt = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pile of {k} boxes per tile, {len(tiles)} tiles: {len(out)} box(es) out in {dt:.2f} s, peak RSS {peak:.0f} MB")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000, 1_000_000])
    ap.add_argument("--budget", type=float, default=60.0, help="skip a peer predicted to take longer (s)")
    ap.add_argument("--out", type=Path, default=None, help="also write the page here (e.g. benchmarks/merge.md)")
    ap.add_argument("--pile", type=int, default=None, metavar="K",
                    help="only time a pile: K boxes per tile over one product in the overlap of two tiles (a "
                         "detector with no NMS of its own), then stop")
    args = ap.parse_args(argv)
    if args.pile is not None:
        return pile_case(args.pile)

    from ensemble_boxes import weighted_boxes_fusion
    from sahi.postprocess import combine as sahi_combine
    from sahi.postprocess.backends import resolve_backend

    load0 = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    note = check_generator()
    print(note, flush=True)
    sahi_backend = resolve_backend()

    def ens(xyxy, s, lab, W, H):  # noqa: ANN001, ANN202
        norm = xyxy / np.array([W, H, W, H], np.float64)
        return weighted_boxes_fusion([norm], [s], [lab], iou_thr=0.55, skip_box_thr=0.0)

    def sahi_arr(xyxy, s, lab):  # noqa: ANN001, ANN202
        return np.concatenate([xyxy, s[:, None], lab[:, None].astype(np.float64)], axis=1).astype(np.float32)

    # Warm-up (numba JIT of SAHI's backend, numpy paths) on a small case, untimed.
    t_, d_, W_, H_ = make_case(2000)
    x_, s_, l_ = flatten(t_, d_)
    sahi_combine.greedy_nmm(sahi_arr(x_, s_, l_), "IOS", 0.5)
    sahi_combine.nms(sahi_arr(x_, s_, l_), "IOU", 0.5)
    merge_tiles(t_, d_, MergeSpec())

    from sahi.postprocess.combine import GreedyNMMPostprocess
    from sahi.prediction import ObjectPrediction

    def sahi_objects(xyxy, s, lab, W, H):  # noqa: ANN001, ANN202
        return [
            ObjectPrediction(bbox=list(map(float, b)), category_id=int(c), category_name="product", score=float(v),
                             full_shape=[H, W])
            for b, v, c in zip(xyxy, s, lab)
        ]

    methods = ["ours wbf (merge_tiles)", "ours nms (merge_tiles)", "ours weighted_box_fusion() alone",
               "ours bare nms()", "ensemble-boxes WBF", f"SAHI greedy_nmm ({sahi_backend})",
               f"SAHI nms ({sahi_backend})", "SAHI GreedyNMMPostprocess (ObjectPrediction list)"]
    results: dict[tuple[str, int], tuple[float, str]] = {}
    history: dict[str, list[tuple[int, float]]] = {m: [] for m in methods}
    extra: dict[int, dict] = {}
    for size in args.sizes:
        tiles, dets, W, H = make_case(size)
        xyxy, s, lab = flatten(tiles, dets)
        n = len(s)
        extra[n] = {"tiles": len(tiles), "panorama": f"{W}x{H}"}
        print(f"== {n} boxes, {len(tiles)} tiles, panorama {W}x{H}", flush=True)
        rep = 3 if n <= 200_000 else 1
        groups = np.repeat(np.arange(len(tiles)), [len(d) for d in dets])
        objects: list = []
        postprocess = GreedyNMMPostprocess(match_threshold=0.5, match_metric="IOS", class_agnostic=False)
        runs = {
            methods[0]: lambda: merge_tiles(tiles, dets, MergeSpec()),
            methods[1]: lambda: merge_tiles(tiles, dets, MergeSpec(mode="nms")),
            methods[2]: lambda: weighted_box_fusion(xyxy, s, groups=groups, iou_thr=0.55, labels=lab).scores,
            methods[3]: lambda: nms(xyxy, s, 0.5),
            methods[4]: lambda: ens(xyxy, s, lab, W, H),
            methods[5]: lambda: sahi_combine.greedy_nmm(sahi_arr(xyxy, s, lab), "IOS", 0.5),
            methods[6]: lambda: sahi_combine.nms(sahi_arr(xyxy, s, lab), "IOU", 0.5),
            # SAHI's merge step as get_sliced_prediction runs it (building the objects untimed).
            methods[7]: lambda: postprocess(objects),
        }
        for m, fn in runs.items():
            hist = history[m]
            if len(hist) >= 2:
                (n1, t1), (n2, t2) = hist[-2], hist[-1]
                expo = math.log(t2 / t1) / math.log(n2 / n1) if t1 > 0 and t2 > 0 else 2.0
                expo = min(max(expo, 1.0), 2.0)
                pred = t2 * (n / n2) ** expo
            elif len(hist) == 1:
                expo = 2.0 if not m.startswith("ours") else 1.0
                pred = hist[-1][1] * (n / hist[-1][0]) ** expo
            else:
                expo, pred = None, 0.0
            if pred > args.budget and not m.startswith("ours"):
                results[(m, n)] = (pred, f"~{pred:,.0f} s CPU (extrapolated, n^{expo:.2f})")
                print(f"{m:32s} skipped, predicted {pred:.1f} s", flush=True)
                continue
            if m == methods[7]:
                objects[:] = sahi_objects(xyxy, s, lab, W, H)
            r = 1 if (not m.startswith("ours") and (pred > 5 or n > 200_000)) else rep
            secs, cpu, out = timed(fn, r)
            kept = len(out) if not isinstance(out, tuple) else len(out[1])
            hist.append((n, cpu))
            objects.clear()
            results[(m, n)] = (cpu, f"{secs:.3f} s ({cpu:.3f})")
            print(f"{m:32s} {secs:9.3f} s wall {cpu:9.3f} s cpu -> {kept} boxes", flush=True)
            if m.startswith("ours") and m == methods[0]:
                extra[n]["out"] = kept
        extra[n]["peak"] = peak_mib(runs[methods[0]])
        print(f"ours wbf peak traced memory {extra[n]['peak']:.0f} MiB", flush=True)

    sizes = sorted(extra)
    lines = [
        "# Merge benchmark (issue 5a)",
        "",
        f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {platform.machine()}, {os.cpu_count()} CPU cores visible, Python {platform.python_version()}, "
        f"numpy {np.__version__}; SAHI backend: {sahi_backend}; load average at start {load0} "
        "(the 2 cores are shared with other work: absolute times are noisy, ratios less so)",
        f"- command: `python {' '.join(['scripts/bench_merge.py', *sys.argv[1:]])}`",
        f"- boxes: per-tile views of painted-aisle products ({AISLE_W}x{AISLE_H} aisles of {AISLE_N} products stacked; "
        "tile 1280, overlap 0.2, 1 px jitter), every method on the same boxes in one process; best of 3 "
        "below 200k boxes, else one run. " + note + ".",
        "- cells: wall seconds (CPU seconds of this process in parentheses). Every method here runs on one "
        "thread, so CPU time is the fair measure on this shared machine; speed-ups below use CPU time.",
        "- ours wbf = seam repair + cross-tile WBF + NMS (the engine default); ensemble-boxes gets all boxes as "
        "one model, normalised; 'SAHI greedy_nmm'/'nms' time only the array functions (indices out, no box "
        "merging); 'GreedyNMMPostprocess' is SAHI's full merge step on ObjectPrediction lists (list building untimed).",
        "",
        "| method | " + " | ".join(f"{n:,} boxes" for n in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(results.get((m, n), (0, "-"))[1] for n in sizes) + " |")
    lines.append("| ours wbf: output boxes | " + " | ".join(f"{extra[n].get('out', '-'):,}" for n in sizes) + " |")
    lines.append("| ours wbf: peak traced MiB | " + " | ".join(f"{extra[n]['peak']:.0f}" for n in sizes) + " |")
    lines.append("| tiles / panorama | " + " | ".join(f"{extra[n]['tiles']:,} / {extra[n]['panorama']}" for n in sizes) + " |")
    lines += ["", "Speed-up of ours (wbf, the full merge) over each peer, by CPU time:", "",
              "| peer | " + " | ".join(f"{n:,}" for n in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for m in methods[4:]:
        cells = []
        for n in sizes:
            peer, ours = results.get((m, n)), results.get((methods[0], n))
            if peer and ours:
                tag = " (extrap.)" if "extrapolated" in peer[1] else ""
                cells.append(f"{peer[0] / ours[0]:,.0f}x{tag}")
            else:
                cells.append("-")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    save_page(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
