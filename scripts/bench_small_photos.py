#!/usr/bin/env python
"""Small copies and close-ups of real shelf photos: counts by the built-in model's photo rule,
against the human counts (copies) or the original's (close-ups).

    python scripts/bench_small_photos.py --photos ../shared/real-shelves --sizes 0.1,0.3,0.5,0.79,1.05
    python scripts/bench_small_photos.py --photos ../shared/real-shelves --closeups 1.5,2,3

Each photo listed in ``human_counts.csv`` is turned upright, shrunk (Lanczos) to each size in
megapixels, keeping its aspect, and saved as a JPEG at quality 90 in memory, as a messaging app
or a web page would hand it over. Each copy is counted twice with the built-in model at its
defaults: by its photo rule (the engine's default), and at the tile's scale (``input_size``
640: each 1280 px tile, or the whole image where it is smaller, shown 640 px long), which is what
the engine did with images under a megapixel until 2026-12-05. Prints, per size and way, the
mean and median absolute percentage error against the human counts and found / human, and
writes every count to ``--json``. The photos stay outside the repository.

``--closeups Z,...`` measures close-ups instead: the centre 1/Z of each upright photo (each
side), enlarged back to the photo's size (Lanczos) and saved as a JPEG at quality 92, stands for
the photo a phone takes Z times nearer the shelf. The original photo and each close-up are
counted at the defaults; a close-up's count is compared with the original's in the same region,
both counted inside the crop less a margin of a tenth of its side (products cut by the crop's
edges count in neither). Each close-up is counted twice: by the engine (the rule with its
close-up check) and at the rule's own scale (``RunSpec(scale=...)``: what the engine did before
the check, for photos of 3.55 MP or more, as all 85 are: smaller ones the rule enlarges 1.5
times past the tile's scale, and those were probed before too).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from densedet_tile.io import atomic_write


def upright(path: Path):
    """The photo at ``path`` as upright RGB (its EXIF rotation applied), as a PIL image."""
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).convert("RGB")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", default=str(Path(__file__).resolve().parents[2] / "shared" / "real-shelves"),
                   help="folder with the photos and human_counts.csv (default: ../shared/real-shelves)")
    p.add_argument("--sizes", default="0.1,0.3,0.5,0.79,1.05", help="copy sizes in megapixels, comma-separated")
    p.add_argument("--closeups", default=None, help="measure close-ups of these zooms instead (comma-separated)")
    p.add_argument("--limit", type=int, default=0, help="only the first N photos")
    p.add_argument("--json", default=None, help="write every count here")
    args = p.parse_args(argv)
    from PIL import Image

    import densedet_tile as dt
    from densedet_tile import RunSpec

    folder = Path(args.photos)
    counts_csv = folder / "human_counts.csv"
    if not counts_csv.is_file():
        print(f"{folder}: no human_counts.csv here; the real photos are not available (see --photos)", file=sys.stderr)
        return 2
    try:
        sizes = [float(s) for s in args.sizes.split(",")]
    except ValueError:
        print(f"--sizes {args.sizes}: give megapixels separated by commas", file=sys.stderr)
        return 2
    with open(counts_csv, newline="") as f:
        human = {r["image_name"]: int(r["products"]) for r in csv.DictReader(f)}
    names = sorted(human)[: args.limit or None]
    det = dt.load_detector("default", device="cpu")
    if args.closeups:
        try:
            zooms = [float(z) for z in args.closeups.split(",")]
        except ValueError:
            zooms = []
        if not zooms or not all(math.isfinite(z) and 1 < z <= 20 for z in zooms):
            print(f"--closeups {args.closeups}: give zooms over 1 and at most 20 separated by commas", file=sys.stderr)
            return 2
        return closeups(folder, names, zooms, det, args.json)
    ways = {"rule": None, "tile": RunSpec(input_size=640)}
    found: dict[str, dict[str, int]] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for name in names:
        photo = upright(folder / name)
        w, h = photo.size
        for mp in sizes:
            f = math.sqrt(mp * 1e6 / (w * h))
            buf = io.BytesIO()
            photo.resize((max(1, round(w * f)), max(1, round(h * f))), Image.LANCZOS).save(buf, "JPEG", quality=90)
            for way, run in ways.items():
                t = time.perf_counter()
                found.setdefault(f"{mp:g} MP, {way}", {})[name] = len(dt.detect(buf.getvalue(), det, run=run))
                seconds[f"{mp:g} MP, {way}"] = seconds.get(f"{mp:g} MP, {way}", 0.0) + time.perf_counter() - t
        print(name, human[name], {k: v[name] for k, v in found.items()}, flush=True)
    print(f"{len(names)} photos, {time.perf_counter() - t0:.0f} s")
    print("| copy | mean APE | median APE | found / human | seconds per photo |\n|---|---|---|---|---|")
    for key, per in found.items():
        err = np.array([(per[n] - human[n]) / human[n] for n in names])
        print(f"| {key} | {100 * np.abs(err).mean():.1f} % | {100 * np.median(np.abs(err)):.1f} % | "
              f"{sum(per.values()) / sum(human[n] for n in names):.3f} | {seconds[key] / len(names):.2f} |")
    if args.json:
        atomic_write(args.json, json.dumps({"human": {n: human[n] for n in names}, "found": found}, indent=1))
    return 0


def closeups(folder: Path, names: list[str], zooms: list[float], det, json_out: str | None) -> int:
    """The ``--closeups`` measurement (module doc)."""
    from PIL import Image

    import densedet_tile as dt
    from densedet_tile import RunSpec

    def inside(xyxy: np.ndarray, box: tuple[float, float, float, float]) -> int:
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
        return int(((cx >= box[0]) & (cx < box[2]) & (cy >= box[1]) & (cy < box[3])).sum())

    rows: dict[str, dict[str, dict[str, float]]] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    for name in names:
        photo = upright(folder / name)
        w, h = photo.size
        buf = io.BytesIO()
        photo.save(buf, "JPEG", quality=92)
        t = time.perf_counter()
        original = dt.detect(buf.getvalue(), det).xyxy
        seconds["original"] = seconds.get("original", 0.0) + time.perf_counter() - t
        rule = det.photo_scale(w, h)
        for z in zooms:
            x0, y0 = round((w - w / z) / 2), round((h - h / z) / 2)
            x1, y1 = w - x0, h - y0
            mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            ref = inside(original, (x0 + mx, y0 + my, x1 - mx, y1 - my))
            buf = io.BytesIO()
            photo.crop((x0, y0, x1, y1)).resize((w, h), Image.LANCZOS).save(buf, "JPEG", quality=92)
            fx, fy = w / (x1 - x0), h / (y1 - y0)
            for way, run in (("engine", None), ("rule's scale", RunSpec(scale=rule))):
                t = time.perf_counter()
                res = dt.detect_image(buf.getvalue(), det, run=run)
                key = f"x{z:g}, {way}"
                seconds[key] = seconds.get(key, 0.0) + time.perf_counter() - t
                rows.setdefault(key, {})[name] = {"found": inside(res.detections.xyxy, (mx * fx, my * fy, w - mx * fx, h - my * fy)),
                                                  "original": ref, "rule": rule,
                                                  "scale": res.settings["scale"].get("value") or rule}
        print(name, {k: v[name]["found"] for k, v in rows.items()}, flush=True)
    print(f"{len(names)} photos, {time.perf_counter() - t0:.0f} s; originals {seconds['original'] / len(names):.2f} s per photo")
    print("| close-up | mean abs. difference | signed | median | shown smaller than the rule | seconds per photo |\n"
          "|---|---|---|---|---|---|")
    for key, per in rows.items():
        d = np.array([(per[n]["found"] - per[n]["original"]) / max(per[n]["original"], 1) for n in names])
        smaller = sum(1 for n in names if per[n]["scale"] < 0.999 * per[n]["rule"])
        print(f"| {key} | {100 * np.abs(d).mean():.1f} % | {100 * d.mean():+.1f} % | {100 * np.median(np.abs(d)):.1f} % | "
              f"{smaller} | {seconds[key] / len(names):.2f} |")
    if json_out:
        atomic_write(json_out, json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
