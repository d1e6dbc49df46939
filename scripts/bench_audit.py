"""Audit on synthetic aisles: gap recall / false gaps against the gap threshold k, row and tilt
accuracy, empty shelves, and the time of each stage on a long panorama.

    python scripts/bench_audit.py [--seeds 20] [--shelf-aisles 200] [--panorama-width 40000]

Prints a table per k (planted gaps found, false gaps, over all seeds and tilts), the empty-shelf
figures on ``--shelf-aisles`` generated aisles in perspective (1 to 4 bays; none reported on the
intact aisles, one inner shelf emptied, two neighbouring shelves emptied, boxes dropped at
random) and the timings; the numbers go to BENCHMARKS.md / docs/audit.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from densedet_tile.audit import AuditSettings, audit_to_dict, find_gaps, find_rows, heatmap_png, render_preview, run_audit
from densedet_tile.synth.audit_aisles import score_gaps, synthetic_aisle, synthetic_bays


def sweep(seeds: int, ks: list[float]) -> None:
    tilts = (0.0, 1.0, -2.0, 3.0)
    totals = {k: [0, 0, 0] for k in ks}
    tilt_err, rows_bad = [], 0
    for seed in range(seeds):
        for tilt in tilts:
            rng = np.random.default_rng([seed, int(round(tilt * 10)) + 100])
            a = synthetic_aisle(rng, width=int(rng.integers(4000, 12000)), n_rows=int(rng.integers(3, 7)),
                                base_width=float(rng.uniform(50, 120)), tilt_deg=tilt, jitter=0.03, spacing=0.3)
            lay = find_rows(a.xyxy)
            tilt_err.append(abs(lay.tilt_deg - tilt))
            rows_bad += len(lay.rows) != a.row_of.max() + 1
            for k in ks:
                sc = score_gaps(a, find_gaps(a.xyxy, lay, k=k), len(lay.rows))
                totals[k][0] += sc.found
                totals[k][1] += sc.planted
                totals[k][2] += sc.false
    n = seeds * len(tilts)
    print(f"{n} aisles (tilts {tilts}, box jitter 3%, natural spacing up to 0.3 base widths)")
    print(f"row count wrong in {rows_bad} aisles; tilt error max {max(tilt_err):.3f} deg, mean {np.mean(tilt_err):.3f} deg")
    print("k     found/planted  false gaps")
    for k in ks:
        f, p, fa = totals[k]
        print(f"{k:<5} {f:>5}/{p:<7}  {fa}")


def misses(seeds: int, rates: list[float], k: float) -> None:
    """A missed detection leaves the same hole as a missing product: false gaps per 100 products."""
    print(f"detector misses at k={k}: rate -> planted found, false gaps, false gaps per 100 products")
    for rate in rates:
        f = p = fa = n = 0
        for seed in range(seeds):
            rng = np.random.default_rng([seed, 999])
            a = synthetic_aisle(rng, width=8000, n_rows=5, tilt_deg=1.0, jitter=0.03, spacing=0.3)
            keep = rng.random(len(a.xyxy)) >= rate
            boxes = a.xyxy[keep]
            lay = find_rows(boxes)
            sc = score_gaps(a, find_gaps(boxes, lay, k=k), len(lay.rows))
            f, p, fa, n = f + sc.found, p + sc.planted, fa + sc.false, n + len(a.xyxy)
        print(f"  {rate:.0%}: {f}/{p}, {fa} false, {100 * fa / n:.2f} per 100 products")


def timing(width: int) -> None:
    rng = np.random.default_rng(7)
    a = synthetic_aisle(rng, width=width, n_rows=6, base_width=90, tilt_deg=0.8)
    t0 = time.perf_counter()
    res = run_audit(a.xyxy, a.width, a.height, settings=AuditSettings())
    t1 = time.perf_counter()
    audit_to_dict(res)
    t2 = time.perf_counter()
    jpeg, pw, ph, _ = render_preview(res, None)
    t3 = time.perf_counter()
    heatmap_png(res.grid)
    t4 = time.perf_counter()
    print(f"panorama {a.width}x{a.height}, {len(a.xyxy)} products, {len(res.gaps)} gaps: "
          f"analysis {1e3 * (t1 - t0):.0f} ms, JSON {1e3 * (t2 - t1):.0f} ms, "
          f"preview {pw}x{ph} {1e3 * (t3 - t2):.0f} ms ({len(jpeg) / 1e6:.1f} MB), heatmap {1e3 * (t4 - t3):.0f} ms")


def empty_shelves(n: int, rates: tuple[float, ...] = (0.1, 0.2, 0.3)) -> None:
    """Empty shelves on ``n`` generated aisles: reported on intact ones, found where one inner
    shelf (of a bay of 4 shelves or more) or two neighbouring ones (of 6 or more) were emptied,
    and reported when a share of the boxes is dropped at random."""
    intact = 0
    one = [0, 0]  # aisles, emptied shelf found as one shelf
    two = [0, 0]  # aisles, reported as two shelves
    dropped = dict.fromkeys(rates, 0)
    for seed in range(n):
        rng = np.random.default_rng([seed, 55])
        n_bays = int(rng.integers(1, 5))
        aisle = synthetic_bays(rng, n_bays=n_bays, perspective_deg=float(rng.uniform(-25, 25)))
        intact += len(run_audit(aisle.xyxy, aisle.width, aisle.height).empty_shelves)
        for rate in rates:
            keep = np.random.default_rng([seed, 7]).random(len(aisle.xyxy)) >= rate
            dropped[rate] += len(run_audit(aisle.xyxy[keep], aisle.width, aisle.height).empty_shelves)
        bay = int(rng.integers(n_bays))
        mine = aisle.bay_of == bay
        n_rows = int(aisle.row_of[mine].max()) + 1
        for emptied, tally in (([int(rng.integers(1, n_rows - 1))] if n_rows >= 4 else None, one),
                               ([2, 3] if n_rows >= 6 else None, two)):
            if emptied is None:
                continue
            gone = mine & np.isin(aisle.row_of, emptied)
            res = run_audit(aisle.xyxy[~gone], aisle.width, aisle.height)
            hole = aisle.xyxy[gone]
            x, y = float(np.median((hole[:, 0] + hole[:, 2]) / 2)), float(np.median((hole[:, 1] + hole[:, 3]) / 2))
            at = [e for e in res.empty_shelves if e.x1 <= x <= e.x2 and e.xyxy[1] <= y <= e.xyxy[3]]
            tally[0] += 1
            tally[1] += int(bool(at) and all(e.shelves == len(emptied) for e in at))
    print(f"\n## Empty shelves on {n} generated aisles (1-4 bays, up to 25 deg, perfect boxes)")
    print(f"intact aisles: {intact} reported")
    print(f"one inner shelf emptied: found as one shelf on {one[1]} of {one[0]}")
    print(f"two neighbouring shelves emptied: found as two shelves on {two[1]} of {two[0]}")
    print("boxes dropped at random from the intact aisles: " +
          ", ".join(f"{100 * r:.0f} %: {k} reported" for r, k in dropped.items()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--shelf-aisles", type=int, default=200)
    p.add_argument("--panorama-width", type=int, default=40000)
    args = p.parse_args()
    sweep(args.seeds, [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    misses(args.seeds, [0.0, 0.01, 0.03, 0.05], 0.7)
    empty_shelves(args.shelf_aisles)
    timing(args.panorama_width)


if __name__ == "__main__":
    main()
