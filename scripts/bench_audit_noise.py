"""The audit under a real detector's kinds of box noise, on generated aisles with known rows.

    python scripts/bench_audit_noise.py [--aisles 80] [--only jitter,rail] [--tight]

The true product boxes of generated aisles (:func:`densedet_tile.synth.audit_aisles.synthetic_bays`,
1 to 4 bays, up to 25 degrees of perspective; seeds 0..N-1, each padded above and below by 1.5
median box heights so that there is room for boxes off the shelving) are perturbed one way at a
time, as detectors do, and audited with default settings. ``--tight`` draws the aisles as a real
detector's tight boxes show them instead (products filled up to uprights 0.1 to 0.25 widths
wide, as ``scripts/eval_audit_real.py --tight``), with the camera tilted up or down by up to 10
degrees:

- ``jitter``: every coordinate moved by a normal draw of the given share of the box's size;
- ``rail``: thin boxes (2-8 product widths, 0.08-0.15 of a product high) centred on each row's
  shelf edge, the given number per row on average;
- ``tags``: small boxes (0.4-0.7 of a product wide, 0.12-0.2 high) on the shelf edges;
- ``strays``: the given number of product-sized boxes per aisle scattered above or below the
  shelving (signs, lights, items on the floor);
- ``drop``: the given share of the products missed (each box dropped at random);
- ``real``: several at once, as a real detector gives them: 3 % jitter, the given share missed,
  one rail box per row and 3 strays per aisle.

Printed per condition: row recall and precision (each found row's bounding box matched one to
one to a true row's at IoU >= 0.5, as ``scripts/eval_audit_real.py`` does), aisles whose row
count and bay count are right, planted gaps found (a found gap in the matching row covering half
of the planted one), other gaps, and empty shelves reported. Figures: docs/audit.md, "A real
detector's noise".
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_audit_real import TIGHT, aisle_pitch, audit_geometry, match_rows  # noqa: E402

from densedet_tile.audit import run_audit  # noqa: E402
from densedet_tile.synth.audit_aisles import synthetic_bays  # noqa: E402

PAD = 1.5  # room above and below the shelving, in median box heights


def make_aisle(seed: int, tight: bool = False) -> dict:
    rng = np.random.default_rng([seed, 2026])
    world = dict(TIGHT, pitch_deg=aisle_pitch(seed, 10.0)) if tight else {}
    a = synthetic_bays(rng, n_bays=int(rng.integers(1, 5)), perspective_deg=float(rng.uniform(-25, 25)), **world)
    h = float(np.median(a.xyxy[:, 3] - a.xyxy[:, 1]))
    pad = round(PAD * h)
    shift = np.array([0, pad, 0, pad], float)
    return {"src": a, "xyxy": a.xyxy + shift, "key": a.bay_of * 1000 + a.row_of, "width": a.width,
            "height": a.height + 2 * pad, "pad": pad, "med_h": h, "med_w": float(np.median(a.xyxy[:, 2] - a.xyxy[:, 0])),
            "row_boxes": a.row_boxes + shift, "shelf_lines": a.shelf_lines + np.array([0, pad])}


def _row_stats(A: dict, k: int) -> tuple[np.ndarray, float, float]:
    b, r = A["src"].row_keys[k]
    rb = A["xyxy"][A["key"] == b * 1000 + r]
    return rb, float(np.median(rb[:, 3] - rb[:, 1])), float(np.median(rb[:, 2] - rb[:, 0]))


def _on_shelf_edges(A: dict, rng: np.random.Generator, per_row: float, width: tuple[float, float],
                    height: tuple[float, float]) -> np.ndarray:
    """False boxes centred on each row's shelf edge line."""
    out = []
    for k in range(len(A["src"].row_keys)):
        rb, h, w = _row_stats(A, k)
        (x0, y0), (x1, y1) = A["shelf_lines"][k]
        lo, hi = rb[:, 0].min(), rb[:, 2].max()
        for _ in range(rng.poisson(per_row)):
            bw = w * rng.uniform(*width)
            x = rng.uniform(lo, max(lo + 1, hi - bw))
            yc = y0 + (y1 - y0) * (x + bw / 2 - x0) / (x1 - x0)
            bh = h * rng.uniform(*height)
            out.append([x, yc - bh / 2, x + bw, yc + bh / 2])
    return np.array(out).reshape(-1, 4)


def perturb(kind: str, A: dict, rng: np.random.Generator, s: float) -> tuple[np.ndarray, np.ndarray]:
    """(boxes, true key of each: bay * 1000 + row, -1 for a box that is no product)."""
    xy, key = A["xyxy"].copy(), A["key"].copy()
    if kind == "jitter":
        size = np.repeat(xy[:, 2:] - xy[:, :2], 2, axis=0).reshape(-1, 4)
        xy = xy + rng.normal(0, s, xy.shape) * size
        xy[:, 2:] = np.maximum(xy[:, 2:], xy[:, :2] + 1)
        return xy, key
    if kind == "rail":
        extra = _on_shelf_edges(A, rng, s, (2, 8), (0.08, 0.15))
    elif kind == "tags":
        extra = _on_shelf_edges(A, rng, s, (0.4, 0.7), (0.12, 0.2))
    elif kind == "strays":
        top, bottom, out = xy[:, 1].min(), xy[:, 3].max(), []
        for _ in range(int(s)):
            w, h = A["med_w"] * rng.uniform(0.5, 2), A["med_h"] * rng.uniform(0.4, 1.2)
            x = rng.uniform(0, A["width"] - w)
            y = (rng.uniform(max(0, top - A["pad"]), max(1, top - h - 2)) if rng.random() < 0.5
                 else rng.uniform(min(bottom + 2, A["height"] - h - 1), A["height"] - h))
            out.append([x, y, x + w, y + h])
        extra = np.array(out).reshape(-1, 4)
    elif kind == "drop":
        keep = rng.random(len(xy)) >= s
        return xy[keep], key[keep]
    elif kind == "real":
        # several at once, as a real detector gives them: 3 % jitter, s of the products missed,
        # one rail box per row and 3 strays
        xy, key = perturb("jitter", A, rng, 0.03)
        xy, key = perturb("drop", dict(A, xyxy=xy, key=key), rng, s)
        rail = _on_shelf_edges(A, rng, 1.0, (2, 8), (0.08, 0.15))
        B = dict(A, xyxy=xy, key=key)
        xy2, key2 = perturb("strays", B, rng, 3)
        return np.r_[xy2, rail], np.r_[key2, np.full(len(rail), -1)]
    elif kind == "none":
        return xy, key
    else:
        raise ValueError(kind)
    return np.r_[xy, extra], np.r_[key, np.full(len(extra), -1)]


def score(A: dict, xy: np.ndarray, key: np.ndarray, res) -> dict:
    geo = audit_geometry(res)
    matched = match_rows(geo["rows"], A["row_boxes"])
    found_key = np.full(len(xy), -1, np.int64)
    gaps = []
    for bi, part in enumerate(res.parts):
        ok = part.layout.assignment >= 0
        found_key[part.index[ok]] = bi * 1000 + part.layout.assignment[ok]
        gaps += [(bi, g) for g in part.gaps]
    real = key >= 0
    true_of = {}  # a found row stands for the true row most of its products belong to
    for k in set(found_key[real].tolist()) - {-1}:
        vals, counts = np.unique(key[real][found_key[real] == k], return_counts=True)
        true_of[k] = int(vals[np.argmax(counts)])
    hit: set[int] = set()
    found = 0
    for b, r, x1, x2 in A["src"].gaps:
        mine = [i for i, (bi, g) in enumerate(gaps) if true_of.get(bi * 1000 + g.row) == b * 1000 + r
                and min(x2, g.x2) - max(x1, g.x1) > 0.5 * (x2 - x1)]
        found += bool(mine)
        hit.update(mine)
    return {"true": len(A["row_boxes"]), "rows": len(geo["rows"]), "matched": len(matched),
            "rows_right": int(len(geo["rows"]) == len(A["row_boxes"])),
            "bays_right": int(len(res.parts) == A["src"].n_bays), "planted": len(A["src"].gaps), "found": found,
            "other_gaps": len(gaps) - len(hit), "empty_shelves": len(res.empty_shelves)}


CONDITIONS = {"none": [0.0], "jitter": [0.03, 0.05], "rail": [1.0, 2.0], "tags": [3.0], "strays": [5.0, 10.0],
              "drop": [0.1, 0.2], "real": [0.1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--aisles", type=int, default=80)
    p.add_argument("--only", default="", help="comma list of " + ", ".join(CONDITIONS))
    p.add_argument("--before", action="store_true",
                   help="without the three noise rules of 2026-12-03 (jump tolerance from the boxes' noise, rows "
                        "on one line, price rails fill no shelf), for comparison")
    p.add_argument("--tight", action="store_true",
                   help="tight boxes on products filled up to thin uprights, the camera tilted by up to 10 degrees")
    args = p.parse_args(argv)
    if args.before:
        from densedet_tile.audit import bays, gaps, rows

        bays._NOISE_PAIRS = 10**12
        rows._rows_on_a_line = lambda a, cx, frame, assignment, n_rows, min_products: (assignment, n_rows)
        gaps._STANDS = -np.inf
    only = [c for c in args.only.split(",") if c] or list(CONDITIONS)
    unknown = [c for c in only if c not in CONDITIONS]
    if unknown:
        p.error(f"--only: unknown condition(s) {', '.join(unknown)} (known: {', '.join(CONDITIONS)})")
    aisles = [make_aisle(s, args.tight) for s in range(args.aisles)]
    print(f"{args.aisles} generated {'tight ' if args.tight else ''}aisles{' (before the noise rules)' if args.before else ''}; row recall / precision, rows right, bays right, planted gaps found, "
          f"other gaps, empty shelves")
    for kind in only:
        ci = list(CONDITIONS).index(kind)  # each condition's noise draws are its own, --only or not
        for s in CONDITIONS[kind]:
            tot: dict[str, int] = {}
            t0 = time.perf_counter()
            for seed, A in enumerate(aisles):
                xy, key = perturb(kind, A, np.random.default_rng([seed, 7, ci, int(s * 1000)]), s)
                xy = np.clip(xy, 0, [A["width"], A["height"], A["width"], A["height"]])
                keep = (xy[:, 2] > xy[:, 0]) & (xy[:, 3] > xy[:, 1])
                for k, v in score(A, xy[keep], key[keep], run_audit(xy[keep], A["width"], A["height"])).items():
                    tot[k] = tot.get(k, 0) + v
            print(f"{kind:7s} {s:5g} | recall {tot['matched'] / tot['true']:.3f} precision "
                  f"{tot['matched'] / max(tot['rows'], 1):.3f} | rows right {tot['rows_right']:3d} | bays right "
                  f"{tot['bays_right']:3d} | gaps {tot['found']}/{tot['planted']}, other {tot['other_gaps']} | "
                  f"empty shelves {tot['empty_shelves']} | {(time.perf_counter() - t0) / len(aisles) * 1e3:.0f} ms/aisle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
