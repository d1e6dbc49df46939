#!/usr/bin/env python
"""``--tile auto`` against fixed tiles, with the built-in model (or any ``load_detector`` name).

1. Generated shelves (:func:`densedet_tile.synth.shelves.render_shelf`) rendered with products
   from 40 to 600 px tall: recall at IoU 0.5 against the generator's boxes for fixed tiles
   and for ``auto``.
2. Real photos (``../shared/real-shelves``, when present) resized by 0.5x, 1x and 2x:
   agreement (F1 at IoU 0.5, boxes mapped back to 1x) of the fixed default tile and of ``auto``
   with the default tile's result on the 1x photo. The humans' counts are not used here: the
   question is whether the result stays the same when the camera is nearer or farther.

    python scripts/bench_tile_auto.py --append-md benchmarks/tile_auto.md
    python scripts/bench_tile_auto.py --quick          # a smoke run in seconds
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine_line, publish  # noqa: E402
from bench_e2e import match_stats  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "real-shelves"


def f1(pred: np.ndarray, ref: np.ndarray) -> float:
    """F1 at IoU 0.5 of ``pred`` against ``ref`` (a box counts when some box of the other set
    overlaps it at IoU >= 0.5)."""
    if not len(pred) and not len(ref):
        return 1.0
    r = match_stats(pred, ref)["recall50"] if len(ref) else 0.0
    p = match_stats(ref, pred)["recall50"] if len(pred) else 0.0
    return 0.0 if r + p == 0 else 2 * r * p / (r + p)


def generated(detector: Any, heights: Sequence[int], tiles: Sequence[int], *, size: tuple[int, int], seed: int) -> list[dict]:
    import densedet_tile as dt
    from densedet_tile.synth.shelves import render_shelf

    rows = []
    for k, h in enumerate(heights):
        img, truth = render_shelf(np.random.default_rng([seed, k]), width=size[0], height=size[1], product_height=h)
        row: dict[str, Any] = {"product_height": h, "products": int(len(truth))}
        for t in tiles:
            row[f"tile {t}"] = match_stats(dt.detect(img, detector, tile=t).xyxy, truth)["recall50"]
        t0 = time.perf_counter()
        res = dt.detect_image(img, detector, tile="auto")
        row["auto"] = match_stats(res.detections.xyxy, truth)["recall50"]
        row["auto tile"] = res.settings["tile"]
        row["auto estimate"] = res.settings["scale"].get("product_height_px")
        row["auto s"] = round(time.perf_counter() - t0, 2)
        print(f"# generated h={h}: {row}", file=sys.stderr, flush=True)
        rows.append(row)
    return rows


def real(detector: Any, names: Sequence[str], factors: Sequence[float]) -> list[dict]:
    import densedet_tile as dt
    from PIL import Image

    from densedet_tile.tiler.readers import open_image

    rows = []
    for name in names:
        with open_image(PHOTOS / name) as src:
            full = src.read(0, 0, src.width, src.height)
        ref = dt.detect(full, detector).xyxy
        for f in factors:
            img = full if f == 1.0 else np.asarray(Image.fromarray(full).resize(
                (round(full.shape[1] * f), round(full.shape[0] * f)), Image.Resampling.BILINEAR))
            row: dict[str, Any] = {"photo": name, "factor": f}
            for label, kw in (("default", {}), ("auto", {"tile": "auto"})):
                res = dt.detect_image(img, detector, **kw)
                row[label] = f1(res.detections.xyxy / np.float32(f), ref)
                if label == "auto":
                    row["auto tile"] = res.settings["tile"]
            print(f"# real {name} x{f}: {row}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def to_markdown(report: dict[str, Any], command: str) -> str:
    gen, tiles = report["generated"], report["tiles"]
    lines = [
        f"### `--tile auto` vs fixed tiles, detector `{report['detector']}`",
        "",
        f"- machine: {machine_line()}",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}`",
        "",
        f"Generated shelves {report['size'][0]}x{report['size'][1]}, recall at IoU 0.5 against the generator's boxes:",
        "",
        "| product height px | products | " + " | ".join(f"tile {t}" for t in tiles) + " | auto | auto tile | estimated height | best fixed - auto |",
        "|---" * (len(tiles) + 6) + "|",
    ]
    for r in gen:
        best = max(r[f"tile {t}"] for t in tiles)
        lines.append(
            f"| {r['product_height']} | {r['products']} | " + " | ".join(f"{r[f'tile {t}']:.3f}" for t in tiles)
            + f" | {r['auto']:.3f} | {r['auto tile']} | {r['auto estimate']} | {best - r['auto']:+.3f} |"
        )
    if report.get("real"):
        lines += ["", "Real photos resized, F1 at IoU 0.5 against the default tile's boxes on the 1x photo:", "",
                  "| factor | photos | default tile | auto |", "|---|---|---|---|"]
        for f in sorted({r["factor"] for r in report["real"]}):
            rs = [r for r in report["real"] if r["factor"] == f]
            lines.append(f"| {f} | {len(rs)} | {np.mean([r['default'] for r in rs]):.3f} | {np.mean([r['auto'] for r in rs]):.3f} |")
    elif report.get("real_note"):
        lines += ["", report["real_note"]]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--detector", default="default")
    ap.add_argument("--heights", default="40,80,150,300,600")
    ap.add_argument("--tiles", default="640,1280,2560")
    ap.add_argument("--size", default="2448x3264", help="generated shelf WIDTHxHEIGHT")
    ap.add_argument("--photos", type=int, default=6, help="real photos to resize (0: none)")
    ap.add_argument("--factors", default="0.5,1,2")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="small images, two heights, no real photos")
    ap.add_argument("--json", default=None)
    ap.add_argument("--append-md", default=None)
    args = ap.parse_args(argv)
    import densedet_tile as dt

    detector = dt.load_detector(args.detector)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    heights = [int(v) for v in args.heights.split(",")]
    tiles = [int(v) for v in args.tiles.split(",")]
    if args.quick:
        size, heights, tiles, args.photos = (800, 600), [60, 150], [640], 0
    report: dict[str, Any] = {"detector": args.detector, "size": size, "tiles": tiles,
                              "generated": generated(detector, heights, tiles, size=size, seed=args.seed)}
    if args.photos:
        if PHOTOS.is_dir():
            names = sorted(p.name for p in PHOTOS.glob("train_*.jpg"))
            step = max(1, len(names) // args.photos)
            report["real"] = real(detector, names[::step][: args.photos], [float(v) for v in args.factors.split(",")])
        else:
            report["real_note"] = f"(real photos skipped: {PHOTOS} is not there)"
            print(f"bench_tile_auto: {PHOTOS} is not there; real-photo part skipped", file=sys.stderr)
    publish(report, to_markdown, script=__file__, argv=argv, json_path=args.json, append_md=args.append_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
