#!/usr/bin/env python
"""Count error on the real shelf photos: detector through the tiled engine vs. human counts.

    python scripts/eval_real.py --out /tmp/eval_real                # built-in model, defaults
    python scripts/eval_real.py --sweep --out /tmp/eval_real        # plus a score-threshold curve
    python scripts/eval_real.py --tile 1024 --sweep --out /tmp/eval_real_t1024

The photos and ``human_counts.csv`` come from ``--photos`` (default ``../shared/real-shelves``
beside the repository; they are never part of it). For every photo listed in the CSV the script
counts the boxes the engine returns and compares them with the number of products SKU-110K's
annotators boxed: signed error = (found - human) / human, in percent. It prints a per-photo
table and a summary (mean and median absolute % error, share of photos within 10 %, worst
photo, total found vs. human total, boxes and seconds per photo) and writes into ``--out``:

* ``eval_real.json``: every figure and the settings;
* ``eval_real.csv``: one row per photo;
* ``contact_sheet.jpg``: every photo as a small thumbnail with its boxes and counts, for
  looking by eye. It shows the photos, so keep it outside the repository.

``--sweep [T1,T2,...]`` evaluates several score thresholds for one pass of the network per
photo: the detector runs at the lowest threshold, then for each threshold the per-tile boxes
scoring below it are set aside and the tiles merged again, with the boxes just below it (down to
the floor of a run at that threshold) confirming cut views as the engine's do. That is exactly
what a run at that threshold does (the engine filters before the merge, and the detector's
greedy in-tile NMS keeps the same higher-scoring boxes whatever the threshold), so the curve
costs only extra merges, at the scale chosen at the main threshold: where the scale depends on
the threshold (``--tile auto``, whose probes measure at a run's threshold, or at the detector's
``scale_thr`` when that is higher), a run at a sweep threshold above it may choose another tile
(5 real photos at 0.5 with --tile auto: 4 counts differ by 1 to 11 boxes from the engine's;
every count at or below the main threshold, and every count at the default tile, matched).
(Until late on 2026-12-02 the confirmers were left out: 0-11 boxes
fewer per photo than the engine, mean APE 24.2 % against the engine's 23.8 %.)

Each photo also gets the engine's count range (the counts at score_thr +-0.05, each merged on
its own, and the "uncertain" flag when they differ by 30 % of the count or more; README, "How
sure is the count?"), and the summary splits the error between flagged and unflagged photos.

The annotators often leave tiny far-aisle products unboxed: a count above the human one is not
automatically better. Look at the contact sheet (``--views NAME,...`` also writes larger views).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import densedet_tile as dt  # noqa: E402  (light: the engine and torch load lazily)
from densedet_tile.cli.options import _key_value, positive_int  # noqa: E402  (the CLI's KEY=VALUE parsing)
from densedet_tile.io import atomic_write  # noqa: E402
from densedet_tile.detector.base import score_floor_for, score_floor_of, score_thr_of  # noqa: E402
from densedet_tile.types import COUNT_BAND, UNCERTAIN_AT, CountRange  # noqa: E402

DEFAULT_PHOTOS = REPO.parent / "shared" / "real-shelves"
DEFAULT_SWEEP = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.7)
WITHIN_PCT = 10.0  # "within 10 %": absolute error at most this
CELL_W, CELL_H, LABEL_H = 300, 400, 22  # contact-sheet cell: thumbnail box and caption strip
SHEET_COLS = 10
VIEW_SIDE = 1600  # longer side of the larger --views images
KEEP_COLOUR, EXTRA_COLOUR = (0, 255, 0), (255, 40, 40)


class PhotosMissing(Exception):
    """The photos folder or its human_counts.csv is not there."""


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
def find_photos(folder: Path, limit: int | None = None,
                names: tuple[str, str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """The photos listed in ``folder/human_counts.csv`` that exist, in CSV order.

    ``names=(first, last)`` keeps the photos whose file stem sorts between the two, both
    included (``("train_3170", "train_3202")``: the photos an adapt run never saw).
    Returns ``(photos, notes)``: each photo is ``{"name", "path", "human", "human_area_pct", "rows"}``
    (``rows``: its ``shelf-rows/NAME.txt`` when there is one, else None);
    notes say what was left out (listed but absent, outside ``names`` or cut by ``limit``).
    """
    folder = Path(folder)
    table = folder / "human_counts.csv"
    if not folder.is_dir():
        raise PhotosMissing(f"photos folder not found: {folder}")
    if not table.is_file():
        raise PhotosMissing(f"no human_counts.csv in the photos folder {folder}")
    photos, absent = [], []
    with open(table, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            name, human = row["image_name"].strip(), int(row["products"])
            if human <= 0:
                raise ValueError(f"{table}: {name} has a human count of {human}; need at least 1")
            path = folder / name
            if not path.is_file():
                absent.append(name)
                continue
            area = row.get("covered_area_pct")
            rows = folder / "shelf-rows" / f"{Path(name).stem}.txt"
            photos.append({"name": name, "path": path, "human": human,
                           "human_area_pct": float(area) if area not in (None, "") else None,
                           "rows": rows if rows.is_file() else None})
    notes = [f"{len(absent)} photo(s) listed in human_counts.csv are absent: {', '.join(absent)}"] if absent else []
    if names is not None:
        first, last = names
        kept = [p for p in photos if first <= Path(p["name"]).stem <= last]
        notes.append(f"--names {first}..{last}: {len(kept)} of {len(photos)} photos, NOT the full set")
        photos = kept
    if limit is not None and limit < len(photos):
        notes.append(f"--limit {limit}: only the first {limit} of {len(photos)} photos, NOT the full set")
        photos = photos[:limit]
    return photos, notes


# ----------------------------------------------------------------------------------------------
# error figures
# ----------------------------------------------------------------------------------------------
def count_errors(found: Sequence[int], human: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Signed and absolute percentage count errors, ``100 * (found - human) / human``."""
    f, h = np.asarray(found, np.float64), np.asarray(human, np.float64)
    signed = 100.0 * (f - h) / h
    return signed, np.abs(signed)


def summarise(names: Sequence[str], found: Sequence[int], human: Sequence[int],
              seconds: Sequence[float] | None = None) -> dict[str, Any]:
    """The summary figures of one run over ``names`` (parallel sequences)."""
    signed, ape = count_errors(found, human)
    worst = int(np.argmax(ape))
    out: dict[str, Any] = {
        "photos": len(names),
        "mean_ape": round(float(ape.mean()), 2),
        "median_ape": round(float(np.median(ape)), 2),
        "within_10pct": round(float(np.mean(ape <= WITHIN_PCT)), 4),
        "mean_signed_pct": round(float(signed.mean()), 2),
        "over": int(np.count_nonzero(signed > 0)),
        "under": int(np.count_nonzero(signed < 0)),
        "worst": {"name": names[worst], "found": int(found[worst]), "human": int(human[worst]),
                  "signed_pct": round(float(signed[worst]), 2)},
        "max_ape": round(float(ape[worst]), 2),
        "found_total": int(np.sum(found)),
        "human_total": int(np.sum(human)),
        "found_over_human": round(float(np.sum(found) / np.sum(human)), 4),
        "boxes_per_photo": round(float(np.mean(found)), 1),
    }
    if seconds is not None:
        out["seconds_per_photo"] = round(float(np.mean(seconds)), 3)
    return out


def flag_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How well the engine's "uncertain count" flag separates good counts from bad ones: the
    photos flagged and not, and the count error of each group."""
    out: dict[str, Any] = {"band": COUNT_BAND, "uncertain_at": UNCERTAIN_AT}
    for key, want in (("certain", False), ("uncertain", True)):
        grp = [r for r in rows if r.get("uncertain") is want]
        ape = np.array([r["abs_pct"] for r in grp], np.float64)
        out[key] = {"photos": len(grp),
                    "mean_ape": round(float(ape.mean()), 2) if len(grp) else None,
                    "median_ape": round(float(np.median(ape)), 2) if len(grp) else None,
                    "within_10pct": round(float(np.mean(ape <= WITHIN_PCT)), 4) if len(grp) else None,
                    "over_40pct": int(np.count_nonzero(ape > 40.0))}
    return out


def shelf_band(rows_path: Path | None, width: int, height: int) -> tuple[float, float] | None:
    """``(top, bottom)`` in pixels of the upright image: from the top of the highest to the bottom
    of the lowest hand-drawn shelf-row box (YOLO ``0 cx cy w h`` lines), or None without labels."""
    if rows_path is None:
        return None
    vals = np.loadtxt(rows_path, ndmin=2)
    if vals.size == 0:
        return None
    cy, h = vals[:, 2], vals[:, 4]
    return float((cy - h / 2).min() * height), float((cy + h / 2).max() * height)


def off_shelf(dets: dt.Detections, band: tuple[float, float] | None) -> int | None:
    """Boxes whose centre lies above or below the labelled shelf rows: floors, ceilings, signs and
    lights over the shelves (the rows of one bay only bound y, so nothing is said about x)."""
    if band is None:
        return None
    cy = (dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2
    return int(np.count_nonzero((cy < band[0]) | (cy > band[1])))


# ----------------------------------------------------------------------------------------------
# detection
# ----------------------------------------------------------------------------------------------
def detect_at_thresholds(src: Any, detector: Any, thresholds: Sequence[Any], *, tile: int | str,
                         overlap: float, input_size: int | None = None,
                         merge: dt.MergeSpec | None = None,
                         scale_thr: float | None = None) -> tuple[dict[Any, dt.Detections], dict[str, Any]]:
    """Global boxes of the open image ``src`` at each score threshold, for one network pass.

    Each item of ``thresholds`` is a threshold ``t`` (the boxes of a run at ``t``: of the boxes a
    detector serving at ``t`` returns (down to its floor), piles thinned once, then those scoring
    ``t`` or more merged with those down to ``CONFIRM_BAND`` below it as confirmers of cut views,
    by the engine's own :func:`densedet_tile.pipeline.thin_piles` and
    :func:`~densedet_tile.pipeline.merged_at`, as a run merges), ``None`` (everything the
    detector returned, no threshold) or a pair ``(t, lowest)`` (confirmers down to ``lowest``
    only: an end of a run's count range, whose detector stops at that run's floor). The
    detector must keep boxes down to the lowest score needed. ``scale_thr``: the threshold a
    model's photo rule measures the products at (the main figures'; default: the detector's), as
    a run at that threshold would. Returns ``({item: Detections}, info)``; ``info`` has
    ``tiles``, ``predict_s`` (reading, resizing and the network) and ``merge_s`` per item.
    """
    from densedet_tile.pipeline import merge_at_model_scale, merged_at, plan, predict_tiles, thin_piles
    from densedet_tile.scale import choose_scale

    merge = dt.MergeSpec() if merge is None else merge
    t0 = time.perf_counter()
    # the engine's own steps: the scale (tile auto, a model's photo rule), the grid, the tiles
    choice = choose_scale(src, detector, dt.TileSpec(tile=tile, overlap=overlap),
                          dt.RunSpec(input_size=input_size, score_thr=scale_thr))
    tiles = plan(src, choice.tiling)
    preds = predict_tiles(src, tiles, detector, replace(choice.run, score_thr=None))
    raw = preds.dets
    merge = merge_at_model_scale(merge, tiles, preds.run.input_size)  # as the engine's finish merges
    info: dict[str, Any] = {"tiles": len(tiles), "predict_s": time.perf_counter() - t0, "merge_s": {}}
    out = {}
    for item in thresholds:
        t1 = time.perf_counter()
        if item is None:
            out[item] = dt.merge_tiles(tiles, raw, merge)
        else:
            thr, lowest = item if isinstance(item, tuple) else (item, score_floor_for(item))
            seen = [d[d.scores >= lowest - 1e-9] for d in raw]  # what that run's detector returns
            out[item] = merged_at(tiles, thin_piles(tiles, seen, merge, warn=False), thr, merge, thinned=True)
        info["merge_s"][item] = time.perf_counter() - t1
    return out, info


def evaluate(photos: Sequence[dict[str, Any]], detector: Any, *, tile: int = 1280, overlap: float = 0.2,
             score_thr: float | None = None, sweep: Sequence[float] = (), input_size: int | None = None,
             views: Sequence[str] = (), keep_boxes: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run ``detector`` over ``photos`` (from :func:`find_photos`) and collect every figure.

    ``score_thr`` is the threshold of the main figures (None: keep what the detector returns);
    ``sweep`` adds more thresholds. Returns ``{"per_photo", "summary", "sweep", "cells", "views",
    "lowest", "boxes"}`` where ``cells`` are contact-sheet thumbnails, ``views`` larger images
    (Pillow) by name, ``lowest`` the lowest threshold counted (its extra boxes drawn in red) and,
    with ``keep_boxes``, ``boxes`` maps ``"NAME@THR"`` to (N, 5) x1 y1 x2 y2 score.
    """
    # the count range needs boxes down to score_thr - COUNT_BAND (the built-in decodes that low)
    floor = score_floor_of(detector)
    band = COUNT_BAND if score_thr is not None and floor is not None and floor <= score_thr - COUNT_BAND + 1e-9 else 0.0
    # the ends of the count range as the engine merges them: confirmers down to the floor of the
    # run at score_thr (pipeline.merge_counted), as low as a run at that end goes (since 2026-12-06)
    run_floor = None if score_thr is None else score_floor_for(score_thr)
    ends = tuple((round(t, 6), run_floor) for t in (score_thr + band, score_thr - band)) if band > 0 else ()
    shown = sorted({score_thr, *sweep}, key=lambda t: -1.0 if t is None else t)  # thresholds reported
    thresholds = [*shown, *ends]
    # the lowest threshold counted, whose boxes under score_thr the contact sheet draws in red
    lowest_key = min(thresholds, key=lambda k: -1.0 if k is None else (k[0] if isinstance(k, tuple) else k))
    lowest = lowest_key[0] if isinstance(lowest_key, tuple) else lowest_key
    rows, cells, big, boxes = [], [], {}, {}
    detector.predict([np.zeros((64, 64, 3), np.uint8)])  # warm-up: lazy set-up stays out of the timings
    for k, p in enumerate(photos):
        t0, c0 = time.perf_counter(), time.process_time()
        with dt.open_image(p["path"]) as src:
            t_open = time.perf_counter() - t0
            by_thr, info = detect_at_thresholds(src, detector, thresholds, tile=tile, overlap=overlap,
                                                input_size=input_size, scale_thr=score_thr)
            cpu_s = time.process_time() - c0  # all threads; steadier than wall time on a busy machine
            width, height = src.width, src.height
            image = src.read(0, 0, width, height)  # the upright pixels the boxes refer to, for drawing
        main = by_thr[score_thr]
        signed, ape = count_errors([len(main)], [p["human"]])
        row = {
            "name": p["name"], "human": p["human"], "found": len(main),
            "signed_pct": round(float(signed[0]), 2), "abs_pct": round(float(ape[0]), 2),
            "seconds": round(t_open + info["predict_s"] + info["merge_s"][score_thr], 3),
            "cpu_seconds": round(cpu_s, 3),
            "width": width, "height": height, "tiles": info["tiles"],
            "box_area_pct": round(100.0 * float(main.area.sum()) / (width * height), 2),
            "human_area_pct": p["human_area_pct"],
            "off_shelf": off_shelf(main, shelf_band(p.get("rows"), width, height)),
        }
        if band > 0:  # the engine's count range (pipeline.merge_counted): each end merged on its own
            cr = CountRange(score_thr=score_thr, band=band, low=len(by_thr[ends[0]]), count=len(main),
                            high=len(by_thr[ends[1]]))
            row["count_range"] = [cr.low, cr.high]
            row["sensitivity"] = None if cr.sensitivity is None else round(float(cr.sensitivity), 4)
            row["uncertain"] = cr.uncertain
        if sweep:
            row["found_at"] = {str(t): len(by_thr[t]) for t in shown}
        rows.append(row)
        if keep_boxes:
            for t in shown:
                d = by_thr[t]
                boxes[f"{p['name']}@{t}"] = np.column_stack([d.xyxy, d.scores]).astype(np.float32)
        extra = by_thr[lowest_key] if lowest != score_thr else None
        if extra is not None and score_thr is not None:
            extra = extra[extra.scores < score_thr]
        caption = f"{p['name'].rsplit('.', 1)[0]}  {row['found']}/{row['human']}  {row['signed_pct']:+.0f}%"
        cells.append(draw_boxes(image, main, extra, caption, (CELL_W, CELL_H), row["abs_pct"]))
        if p["name"].rsplit(".", 1)[0] in views:
            s = VIEW_SIDE / max(width, height)
            big[p["name"]] = draw_boxes(image, main, extra, caption, (round(width * s), round(height * s)),
                                        row["abs_pct"])
        if progress:
            print(f"[{k + 1}/{len(photos)}] {p['name']}: {row['found']} boxes, human {row['human']} "
                  f"({row['signed_pct']:+.1f} %), {row['seconds']:.2f} s", file=sys.stderr, flush=True)
    names = [r["name"] for r in rows]
    human = [r["human"] for r in rows]
    summary = summarise(names, [r["found"] for r in rows], human, [r["seconds"] for r in rows])
    if rows and "uncertain" in rows[0]:
        summary["count_range"] = flag_summary(rows)
    labelled = [r for r in rows if r["off_shelf"] is not None]
    if labelled:
        n_off = sum(r["off_shelf"] for r in labelled)
        summary["off_shelf"] = {"photos": len(labelled), "boxes": n_off,
                                "share": round(n_off / max(1, sum(r["found"] for r in labelled)), 4)}
    result: dict[str, Any] = {
        "per_photo": rows,
        "summary": summary,
        "sweep": [],
        "cells": cells,
        "views": big,
        "lowest": lowest,
        "boxes": boxes,
    }
    for t in (shown if sweep else []):
        s = summarise(names, [r["found_at"][str(t)] for r in rows], human)
        result["sweep"].append({"score_thr": t, **s})
    return result


# ----------------------------------------------------------------------------------------------
# pictures
# ----------------------------------------------------------------------------------------------
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed-size bitmap font
        return ImageFont.load_default()


def draw_boxes(image: np.ndarray, keep: dt.Detections, extra: dt.Detections | None, caption: str,
               box: tuple[int, int], abs_pct: float):
    """``image`` shrunk to fit ``box`` (w, h), with ``keep`` boxes in green, ``extra`` in red and a
    caption strip above it (coloured by the error: green within 10 %, yellow within 25 %, red)."""
    from PIL import Image, ImageDraw

    from densedet_tile.tiler import resize_to

    h, w = image.shape[:2]
    scale = min(box[0] / w, box[1] / h)
    small, _ = resize_to(image, max(1, round(max(w, h) * scale)))
    sx, sy = small.shape[1] / w, small.shape[0] / h
    big = box[0] > CELL_W
    label_h = 2 * LABEL_H if big else LABEL_H
    cell = Image.new("RGB", (box[0], box[1] + label_h), (24, 24, 24))
    cell.paste(Image.fromarray(small), (0, label_h))
    draw = ImageDraw.Draw(cell)
    width = 2 if big else 1
    for dets, colour in ((extra, EXTRA_COLOUR), (keep, KEEP_COLOUR)):
        if dets is None or not len(dets):
            continue
        xy = np.round(dets.xyxy * np.array([sx, sy, sx, sy], np.float32)).astype(int) + [0, label_h, 0, label_h]
        for x1, y1, x2, y2 in xy.tolist():  # one draw call per box: O(n)
            draw.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour, width=width)
    tint = (120, 230, 120) if abs_pct <= WITHIN_PCT else (240, 210, 80) if abs_pct <= 25 else (255, 110, 110)
    draw.text((4, 3), caption, fill=tint, font=_font(2 * 15 if big else 15))
    return cell


def contact_sheet(cells: Sequence[Any], title: str, cols: int = SHEET_COLS):
    """All ``cells`` (same-size Pillow images) in a grid under a title strip."""
    from PIL import Image, ImageDraw

    cw, ch = cells[0].size
    rows = -(-len(cells) // cols)
    top = 2 * LABEL_H + 8
    sheet = Image.new("RGB", (cols * cw + (cols + 1) * 4, top + rows * (ch + 4) + 4), (0, 0, 0))
    draw = ImageDraw.Draw(sheet)
    for i, line in enumerate(title.splitlines()[:2]):
        draw.text((6, 4 + i * LABEL_H), line, fill=(235, 235, 235), font=_font(16))
    for k, cell in enumerate(cells):
        r, c = divmod(k, cols)
        sheet.paste(cell, (4 + c * (cw + 4), top + r * (ch + 4)))
    return sheet


# ----------------------------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------------------------
CSV_FIELDS = ("name", "human", "found", "signed_pct", "abs_pct", "seconds", "cpu_seconds", "width", "height",
              "tiles", "box_area_pct", "human_area_pct", "off_shelf")


def per_photo_csv(rows: Sequence[dict[str, Any]]) -> str:
    sweep_cols = list(rows[0].get("found_at", {})) if rows else []
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow([*CSV_FIELDS, *(f"found_at_{t}" for t in sweep_cols)])
    for r in rows:
        out.writerow([("" if r[f] is None else r[f]) for f in CSV_FIELDS] + [r["found_at"][t] for t in sweep_cols])
    return buf.getvalue()


def to_markdown(report: dict[str, Any]) -> str:
    s, st = report["summary"], report["settings"]
    lines = [f"## Real photos: count error vs. human counts ({s['photos']} photos"
             f"{'' if report['full_set'] else ', NOT the full set'})", "",
             f"`{report['command']}`  ", f"{report['machine']}, {report['date']}  ",
             f"detector {st['detector']}, tile {st['tile']}, overlap {st['overlap']}, input size "
             f"{st['input_size']}, score_thr {st['score_thr']}", ""]
    lines += [f"- note: {n}" for n in report["notes"]]
    lines += ["", "| photo | human | found | signed % | abs % | s |", "|---|---|---|---|---|---|"]
    for r in report["per_photo"]:
        lines.append(f"| {r['name']} | {r['human']} | {r['found']} | {r['signed_pct']:+.1f} | {r['abs_pct']:.1f} "
                     f"| {r['seconds']:.2f} |")
    w = s["worst"]
    lines += ["", "| figure | value |", "|---|---|",
              f"| mean absolute % error | **{s['mean_ape']:.1f}** |",
              f"| median absolute % error | **{s['median_ape']:.1f}** |",
              f"| photos within {WITHIN_PCT:g} % | **{100 * s['within_10pct']:.1f} %** |",
              f"| mean signed % error (over / under) | {s['mean_signed_pct']:+.1f} ({s['over']} / {s['under']}) |",
              f"| worst photo | {w['name']}: {w['found']} vs {w['human']} ({w['signed_pct']:+.1f} %) |",
              f"| found / human total | {s['found_total']} / {s['human_total']} = {s['found_over_human']:.3f} |",
              f"| boxes per photo | {s['boxes_per_photo']:.1f} |",
              f"| seconds per photo (wall / CPU) | {s['seconds_per_photo']:.2f} / "
              f"{report['cpu_seconds_per_photo']:.2f} |"]
    if "off_shelf" in s:
        o = s["off_shelf"]
        lines.append(f"| boxes above or below the labelled shelf rows ({o['photos']} photos) | {o['boxes']} "
                     f"({100 * o['share']:.1f} %) |")
    if "count_range" in s:
        c = s["count_range"]
        lines += ["", f"Count range (score_thr +-{c['band']}; uncertain when it spans {100 * c['uncertain_at']:.0f} % "
                  "of the count or more):", "",
                  "| photos | n | mean APE | median APE | within 10 % | over 40 % |", "|---|---|---|---|---|---|"]
        for key in ("certain", "uncertain"):
            g = c[key]
            if g["photos"]:
                lines.append(f"| {key} | {g['photos']} | {g['mean_ape']:.1f} | {g['median_ape']:.1f} | "
                             f"{100 * g['within_10pct']:.1f} % | {g['over_40pct']} |")
    if report["sweep"]:
        lines += ["", "| score_thr | mean APE | median APE | within 10 % | found / human | max APE (photo) |",
                  "|---|---|---|---|---|---|"]
        for t in report["sweep"]:
            lines.append(f"| {t['score_thr']} | {t['mean_ape']:.1f} | {t['median_ape']:.1f} | "
                         f"{100 * t['within_10pct']:.1f} % | {t['found_over_human']:.3f} | "
                         f"{t['max_ape']:.1f} ({t['worst']['name']}) |")
    return "\n".join(lines) + "\n"


def _machine() -> str:
    try:
        from _bench_common import machine_line  # scripts/ is on sys.path when run as a script
    except ImportError:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _bench_common import machine_line
    return machine_line()


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def _thresholds(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not 0.0 <= v < 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be in [0, 1), got {text!r}")
    return values


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS,
                    help="folder with the photos and human_counts.csv (default: %(default)s)")
    ap.add_argument("--detector", default="default",
                    help="as dt.load_detector: default, mmdet, torchvision, onnx, MODULE:FACTORY")
    ap.add_argument("--config")
    ap.add_argument("--checkpoint")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--tile", type=lambda t: t if t == "auto" else int(t), default=1280, help="tile side or 'auto'")
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--score-thr", type=float, default=None,
                    help="threshold of the main figures (default: the detector's own)")
    ap.add_argument("--input-size", type=int, default=None, help="side tiles are resized to (default: the detector's)")
    ap.add_argument("--sweep", type=_thresholds, nargs="?", const=list(DEFAULT_SWEEP), default=[],
                    help="also evaluate these score thresholds (comma-separated; bare --sweep: "
                         f"{','.join(map(str, DEFAULT_SWEEP))}) from one network pass per photo")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "eval_real",
                    help="folder for the json, csv and contact sheet; keep it outside the repository, the sheet "
                         "shows the photos (default: %(default)s)")
    ap.add_argument("--views", default="", help="comma-separated photo names to also draw large (view_NAME.jpg)")
    ap.add_argument("--save-boxes", action="store_true",
                    help="also write boxes.npz: every photo's boxes at every threshold (key NAME@THR; x1 y1 x2 y2 score)")
    ap.add_argument("--threads", type=int, default=None,
                    help="CPU threads of the model (the built-in model's ONNX Runtime or torch threads; torch's for "
                         "other detectors) (default: the runtime's choice)")
    ap.add_argument("--detector-option", action="append", type=_key_value, default=[], metavar="KEY=VALUE",
                    help="extra keyword for the detector's build, as the CLI's (repeatable), e.g. split_stacks=false")
    # (1 or more: --limit 0 kept no photo and blamed the photo list, a negative one counted from
    # the end: an outside review)
    ap.add_argument("--limit", type=positive_int, default=None, help="first N photos only, for debugging (not the full set)")
    ap.add_argument("--names", type=_name_range, default=None, metavar="FIRST..LAST",
                    help="only the photos whose stem sorts from FIRST to LAST, e.g. train_3170..train_3202 "
                         "(a split, e.g. the photos an adapt run never saw; not the full set)")
    return ap.parse_args(argv)


def _name_range(text: str) -> tuple[str, str]:
    first, sep, last = text.partition("..")
    if not sep or not first.strip() or not last.strip() or first.strip() > last.strip():
        raise argparse.ArgumentTypeError(f"expected FIRST..LAST with FIRST <= LAST, got {text!r}")
    return first.strip(), last.strip()


def _load(args: argparse.Namespace, score_thr: float | None) -> Any:
    options = dict(args.detector_option)
    if args.threads and args.detector == "default":
        options.setdefault("threads", args.threads)
    try:
        return dt.load_detector(args.detector, config=args.config, checkpoint=args.checkpoint, device=args.device,
                                input_size=args.input_size, score_thr=score_thr, options=options)
    except dt.DensedetError as exc:
        raise SystemExit(f"eval_real: {exc}") from None


def main(argv: Sequence[str] | None = None, detector: Any = None) -> int:
    """Run the evaluation; ``detector`` (an object with ``predict``) replaces ``--detector``."""
    args = parse_args(argv)
    try:
        photos, notes = find_photos(args.photos, args.limit, args.names)
    except PhotosMissing as exc:
        print(f"eval_real: {exc} (the real shelf photos are not in the repository; pass --photos DIR)",
              file=sys.stderr)
        return 2
    if not photos:
        print(f"eval_real: none of the photos listed in {args.photos}/human_counts.csv is there", file=sys.stderr)
        return 2
    if args.threads and args.detector != "default":  # the built-in model takes them as an option
        import torch

        torch.set_num_threads(args.threads)

    score_thr = args.score_thr
    if detector is None:
        if args.sweep and score_thr is None:  # learn the detector's own threshold, then go lower
            score_thr = getattr(_load(args, None), "score_thr", None)
            if score_thr is None:
                print("eval_real: this detector does not say its score threshold; pass --score-thr with --sweep",
                      file=sys.stderr)
                return 2
        lowest = min([*args.sweep, score_thr]) if args.sweep else score_thr
        detector = _load(args, lowest)
        if score_thr is None:
            score_thr = getattr(detector, "score_thr", None)
    if score_thr is None:  # a detector passed in: its own served threshold, as the engine uses
        score_thr = score_thr_of(detector)
    if args.sweep and score_thr is None:
        print("eval_real: pass --score-thr with --sweep for this detector", file=sys.stderr)
        return 2

    views = {v.strip().rsplit(".", 1)[0] for v in args.views.split(",") if v.strip()}
    t0 = time.perf_counter()
    res = evaluate(photos, detector, tile=args.tile, overlap=args.overlap, score_thr=score_thr,
                   sweep=args.sweep, input_size=args.input_size, views=views, keep_boxes=args.save_boxes,
                   progress=True)
    from densedet_tile.pipeline import describe_detector

    model = describe_detector(detector)
    report = {
        "command": "python " + " ".join(shlex.quote(a) for a in ["scripts/eval_real.py",
                                                                  *(sys.argv[1:] if argv is None else argv)]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(),
        "full_set": args.limit is None and not notes,
        "notes": notes,
        "settings": {
            "photos": str(args.photos), "detector": args.detector, "config": args.config,
            "checkpoint": args.checkpoint, "model": model, "tile": args.tile, "overlap": args.overlap,
            "score_thr": score_thr, "input_size": args.input_size or model.get("input_size"),
            "sweep": list(args.sweep), "threads": args.threads, "limit": args.limit,
            "detector_options": dict(args.detector_option),
            "names": None if args.names is None else "..".join(args.names),
            "merge": "default MergeSpec (wbf)",
        },
        "summary": res["summary"],
        "sweep": res["sweep"],
        "per_photo": res["per_photo"],
        "cpu_seconds_per_photo": round(float(np.mean([r["cpu_seconds"] for r in res["per_photo"]])), 3),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out / "eval_real.json", (json.dumps(report, indent=1) + "\n").encode())
    atomic_write(args.out / "eval_real.csv", per_photo_csv(report["per_photo"]).encode())
    if args.save_boxes:
        buf = io.BytesIO()
        np.savez_compressed(buf, **res["boxes"])
        atomic_write(args.out / "boxes.npz", buf.getvalue())
    st, s = report["settings"], report["summary"]
    title = (f"{st['detector']} tile {st['tile']} overlap {st['overlap']} input {st['input_size']} "
             f"score_thr {score_thr}: mean APE {s['mean_ape']:.1f} %, median {s['median_ape']:.1f} %, "
             f"found/human {s['found_over_human']:.3f}"
             f"{'' if report['full_set'] else '  (NOT the full set)'}\n"
             f"green: boxes at score >= {score_thr}"
             + (f"; red: boxes below it down to {res['lowest']}" if res["lowest"] is not None
                and score_thr is not None and res["lowest"] < score_thr else "")
             + "; caption: found/human (signed error), green within 10 %, yellow 25 %, red beyond")
    for name, data in [("contact_sheet.jpg", contact_sheet(res["cells"], title))] + [
            (f"view_{n.rsplit('.', 1)[0]}.jpg", im) for n, im in res["views"].items()]:
        buf = io.BytesIO()
        data.save(buf, "JPEG", quality=85)
        atomic_write(args.out / name, buf.getvalue())
    print(to_markdown(report))
    print(f"wrote {args.out}/eval_real.json, eval_real.csv, contact_sheet.jpg", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
