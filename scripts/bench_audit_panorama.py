"""The audit on panoramas of real photos side by side: do its bays stop at the photo boundaries?

    python scripts/bench_audit_panorama.py [--photos DIR] [--dets DIR] [--sizes 4,8,16]

Every photo of ``../shared/real-shelves`` is its own shelving, so a panorama of N of them put
side by side (the portrait photos in file order, each scaled to one height; boxes only, no
pixels) has a boundary at every seam that no shelf row should cross. For each size the script
audits the panorama's boxes as ``densedet-tile audit`` would and reports the found bays, the rows
and gaps whose extent crosses a seam, and the bays that hold products of more than one photo.
The boxes are the built-in model's, from the cache ``scripts/eval_audit_real.py`` keeps (run it
once first). The photos stay outside the repository; without them the script says so and stops.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_audit_real as ear  # noqa: E402  (its detections cache and labels reader)


def panorama(photos: Path, dets: Path, n: int, height: int) -> tuple[np.ndarray, int, list[float]]:
    """Boxes of the first ``n`` portrait photos side by side at ``height`` px, the panorama's
    width, and the x of each seam."""
    parts, seams, x = [], [], 0.0
    for photo in sorted(photos.glob("train_*.jpg")):
        boxes = ear.detections_for(photo, dets)
        w, h = int(boxes.width), int(boxes.height)
        if h <= w:
            continue
        s = height / h
        b = np.asarray(boxes.xyxy, np.float64).reshape(-1, 4) * s
        b[:, [0, 2]] += x
        parts.append(b)
        x += round(w * s)
        seams.append(x)
        if len(parts) == n:
            break
    return np.concatenate(parts), int(x), seams[:-1]


def crossing(x1: float, x2: float, seams: Sequence[float], tol: float = 1.0) -> bool:
    return any(x1 < s - tol and x2 > s + tol for s in seams)


def measure(a: np.ndarray, width: int, height: int, seams: Sequence[float]) -> dict[str, Any]:
    from densedet_tile.audit import run_audit, usable_boxes

    a, _ = usable_boxes(a, width, height)
    t0 = time.perf_counter()
    res = run_audit(a, width, height)
    seconds = time.perf_counter() - t0
    photo_of = np.searchsorted(np.asarray(seams), (a[:, 0] + a[:, 2]) / 2, side="right")
    rows = gaps = mixed = 0
    for part in res.parts:
        if len(np.unique(photo_of[np.asarray(part.index)])) > 1:
            mixed += 1
        rows += sum(crossing(row.x_start, row.x_end, seams) for row in part.layout.rows)
        gaps += sum(crossing(g.x1, g.x2, seams) for g in part.gaps)
    return {"boxes": len(a), "bays": len(res.parts), "rows": sum(len(p.layout.rows) for p in res.parts),
            "rows_crossing": rows, "gaps": len(res.gaps), "gaps_crossing": gaps, "bays_over_photos": mixed,
            "seconds": seconds}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "real-shelves"))
    ap.add_argument("--dets", default="/tmp/audit_real/dets", help="detections cache of eval_audit_real.py")
    ap.add_argument("--sizes", default="4,8,16", help="photos per panorama")
    ap.add_argument("--height", type=int, default=3264)
    args = ap.parse_args(argv)
    photos = Path(args.photos)
    if not any(photos.glob("train_*.jpg")):
        print(f"{photos}: no real shelf photos here (see --photos); nothing measured", file=sys.stderr)
        return 2
    print("photos | width px | boxes | bays | bays over 2+ photos | rows | rows crossing a seam | gaps | "
          "gaps crossing | audit s")
    for n in (int(v) for v in args.sizes.split(",")):
        a, width, seams = panorama(photos, Path(args.dets), n, args.height)
        m = measure(a, width, args.height, seams)
        print(f"{n} | {width} | {m['boxes']} | {m['bays']} | {m['bays_over_photos']} | {m['rows']} | "
              f"{m['rows_crossing']} | {m['gaps']} | {m['gaps_crossing']} | {m['seconds']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
