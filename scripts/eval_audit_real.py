"""Shelf rows found by the audit against human shelf-row labels, and on generated aisles.

    python scripts/eval_audit_real.py [--photos ../shared/real-shelves] [--dets /tmp/audit_real/dets]
                                      [--sheet /tmp/audit_real/contact_sheet.jpg] [--json OUT.json]
                                      [--label-bays] [--label-boxes W [--with-unlabelled]] [--no-shelf-lines]
    python scripts/eval_audit_real.py --synthetic 200 [--tight] [--pitch 15] [--picture] [--sheet /tmp/audit_real/synthetic_sheet.jpg]

**Real photos** (reads ``--photos``: the photos and ``shelf-rows/*.txt``, the human row boxes in
YOLO format ``0 cx cy w h`` normalised to the upright image; exits 2 when they are missing).
The product boxes come from the built-in model at default settings, run once per photo and kept
as ``<stem>.detections.json`` under ``--dets`` (reused on later runs, each recording what it was
asked for; a cache asked for other settings, made with another model or by an older engine's rules
is named in a note; pass another folder to use another detector's boxes written by
``densedet-tile --out``). Another detector's boxes may also
come as the audit command reads them: ``--dets`` a folder of ``<stem>.csv`` (the SKU-110K
layout) or ``<stem>.txt`` (YOLO labels, normalised) per photo, or one CSV file holding the rows
of every photo; then no photo is detected by the built-in model, and one without boxes there
stops the run. Each photo is audited with default
settings, with the photo given (the bays are found from its shelf lines too, read as the audit
command reads them; ``--no-shelf-lines``: from the boxes alone). Every found row's bounding box (of its polygon) is matched one to one to a human row
box when their IoU is >= 0.5, greedily from the highest IoU. Printed: row recall (matched human
rows / human rows), row precision (matched found rows / found rows), the row-count error per
photo, gaps that span two human bays (a gap across an upright), and empty shelves (a whole shelf
empty inside a bay) with how many of them hold a human row's centre (there the labellers saw
products, so the shelf is not empty). The contact sheet is one
JPEG with every photo small: human rows in white, found rows green (matched) or orange (not),
bays in yellow, gaps in red. Keep it outside the repository: the photos may not be copied there.
Also printed: how many human rows hold the centres of 3 or more detected products (the rows any
row finder can see with these boxes) and the recall among them. ``--label-bays`` is a
diagnostic: the human bays (row boxes grouped by their columns) are given as regions and only
their rows are scored, which shows how far the rows get when the bays are right.
``--label-boxes W`` is another: instead of the detector's boxes, the audit gets boxes made from
the human row boxes (:func:`label_boxes`: every labelled row filled with touching products, or
up to ``--label-spacing`` of a width apart, a straight upright W product widths wide at each
boundary between human bays, 3 % jitter; ``--label-seed`` draws another set), which shows the
geometry of real photos (their bays, perspective and labelling) apart from the detector, as a
detector that boxes every labelled product would see it. The made boxes stop where the labels
stop; ``--with-unlabelled`` keeps the detector's boxes outside every labelled row beside them
(:func:`outside_rows`: the bays nobody labelled, false boxes), as a detector that boxes the
whole photo gives them. When the detections JSONs carry the
engine's count flag (``count_range.uncertain``, written by the engine since 2026-12-02), the
figures are also split between photos flagged and not.

**Generated aisles** (``--synthetic N``, "perfect boxes"): N aisles from
:func:`densedet_tile.synth.audit_aisles.synthetic_bays` with 1 to 4 bays at different shelf
heights and up to 25 degrees of perspective; the true product boxes go straight into the
audit, so the geometry is measured apart from any detector. Same matching against the true rows'
boxes, plus: boxes in the right row, planted gaps found, false gaps, gaps across an upright.
``--tight`` draws the aisles as a real SKU-110K-trained detector sees real shelves: tight boxes
(3 % jitter) on products filled up to thin uprights (0.1 to 0.25 of a product wide, the
products at most 0.03 of a width apart and within 0.02 of the uprights), and half the
neighbouring bays with their shelves at the same heights, so that only the upright separates
them. ``--pitch D`` tilts each aisle's camera up or down by up to D degrees (drawn per aisle),
so that the uprights converge as they do in phone photos of shelves (the 85 real photos: a
median of 4.5 degrees between the vertical edges of their left and right thirds, about what a
pitch of 15 to 20 degrees gives here).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = ROOT.parent / "shared" / "real-shelves"


# ----------------------------------------------------------------------------- matching
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of xyxy boxes (a few dozen rows per photo: a small dense matrix)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def match_rows(found: np.ndarray, truth: np.ndarray, thr: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches (found index, truth index, IoU) with IoU >= ``thr``, greedily from the
    highest IoU (ties: lower indices first)."""
    iou = box_iou(found, truth)
    if iou.size == 0:
        return []
    fi, ti = np.nonzero(iou >= thr)
    order = np.lexsort((ti, fi, -iou[fi, ti]))
    used_f: set[int] = set()
    used_t: set[int] = set()
    out = []
    for k in order:
        f, t = int(fi[k]), int(ti[k])
        if f in used_f or t in used_t:
            continue
        used_f.add(f)
        used_t.add(t)
        out.append((f, t, float(iou[f, t])))
    return out


#: Why a human row found no match, in the order they are tried (see :func:`miss_reasons`).
MISS_REASONS = ("few boxes", "no row there", "crosses bays", "rows merged", "row too short", "taken", "other")


def miss_reasons(found: np.ndarray, truth: np.ndarray, matches: list[tuple[int, int, float]],
                 boxes: np.ndarray) -> dict[str, int]:
    """Why each human row without a match has none, counted per reason (every reason named,
    0 when none). The found row that covers most of the human row's area stands for it; the
    first of these that holds counts:

    - ``few boxes``: fewer than 3 of ``boxes`` have their centre in the human row (the detector
      missed it; no geometry finds a row there);
    - ``no row there``: no found row covers a tenth of its area;
    - ``crosses bays``: that found row is over 1.5 times as wide (it runs on across an upright
      or into the bay beside);
    - ``rows merged``: it is over 1.6 times as high (two shelves made one row);
    - ``row too short``: it is under 0.6 times as wide or as high (a row split, or cut short);
    - ``taken``: it matched another human row, and none of the three above holds (rows side by
      side that overlap);
    - ``other``: none of these (a row shifted, or the found row's ends off its own).
    A found row matched to one human row can thus be the reason another is missed."""
    out = dict.fromkeys(MISS_REASONS, 0)
    missed = np.setdiff1d(np.arange(len(truth)), [t for _, t, _ in matches])
    if not len(missed):
        return out
    taken = {f for f, _, _ in matches}
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    tm = truth[missed]
    holds = ((cx[None] >= tm[:, :1]) & (cx[None] <= tm[:, 2:3]) & (cy[None] >= tm[:, 1:2])
             & (cy[None] <= tm[:, 3:4])).sum(axis=1)
    area = np.maximum((tm[:, 2] - tm[:, 0]) * (tm[:, 3] - tm[:, 1]), 1e-9)
    if len(found):
        iw = np.clip(np.minimum(found[:, None, 2], tm[None, :, 2]) - np.maximum(found[:, None, 0], tm[None, :, 0]), 0, None)
        ih = np.clip(np.minimum(found[:, None, 3], tm[None, :, 3]) - np.maximum(found[:, None, 1], tm[None, :, 1]), 0, None)
        cover = iw * ih / area[None]
    else:
        cover = np.zeros((0, len(tm)))
    for k, t in enumerate(missed):
        if holds[k] < 3:
            out["few boxes"] += 1
            continue
        if not len(found) or cover[:, k].max() < 0.1:
            out["no row there"] += 1
            continue
        f = int(cover[:, k].argmax())
        fw, fh = found[f, 2] - found[f, 0], found[f, 3] - found[f, 1]
        tw, th = truth[t, 2] - truth[t, 0], truth[t, 3] - truth[t, 1]
        if fw > 1.5 * tw:
            out["crosses bays"] += 1
        elif fh > 1.6 * th:
            out["rows merged"] += 1
        elif fw < 0.6 * tw or fh < 0.6 * th:
            out["row too short"] += 1
        elif f in taken:
            out["taken"] += 1
        else:
            out["other"] += 1
    return out


# ----------------------------------------------------------------------------- audit access
def audit_geometry(result: Any, *, only_regions: bool = False) -> dict[str, Any]:
    """Rows (bounding box and outline), bays (outline) and gaps (outline, bay) of an audit
    result; with ``only_regions`` only those of the bays given as regions."""
    rows, row_polys, bays, gaps = [], [], [], []
    for bi, part in enumerate(result.parts):
        if only_regions and getattr(part, "kind", "region") != "region":
            continue
        lay = part.layout
        for row in lay.rows:
            poly = np.asarray(row_polygon(lay, row), np.float64)
            row_polys.append(poly)
            rows.append([poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()])
        outline = getattr(part, "polygon", None)
        if outline is not None:
            bays.append(np.asarray(outline, np.float64))
        for g in part.gaps:
            gaps.append((bi, np.asarray(g.polygon, np.float64)))
    return {"rows": np.asarray(rows, np.float64).reshape(-1, 4), "row_polygons": row_polys, "bays": bays, "gaps": gaps}


def row_polygon(lay: Any, row: Any) -> Sequence[tuple[float, float]]:
    if hasattr(row, "polygon"):
        return row.polygon
    # before per-row lines: the parallelogram of the row's de-tilted band
    xs = np.array([row.x_start, row.x_end, row.x_end, row.x_start])
    ys = lay.y_at(np.array([row.top, row.top, row.bottom, row.bottom]), xs)
    return list(zip(xs.tolist(), np.asarray(ys).tolist()))


def label_bay_of(truth: np.ndarray) -> np.ndarray:
    """Each human row box's bay, numbered 0, 1, ... from the left: the row boxes grouped by their
    columns (two boxes overlapping horizontally by over half the narrower one's width are in one
    bay)."""
    n = len(truth)
    group = np.arange(n)
    for i in range(n):  # a few dozen boxes per photo
        for j in range(i + 1, n):
            ov = min(truth[i, 2], truth[j, 2]) - max(truth[i, 0], truth[j, 0])
            if ov > 0.5 * min(truth[i, 2] - truth[i, 0], truth[j, 2] - truth[j, 0]):
                group[group == group[j]] = group[i]
    ids = np.unique(group)
    left = np.array([truth[group == g, 0].min() for g in ids])
    rank = np.empty(len(ids), np.int64)
    rank[np.argsort(left, kind="stable")] = np.arange(len(ids))
    return rank[np.searchsorted(ids, group)]


def label_bays(truth: np.ndarray) -> list[tuple[float, float]]:
    """The human bays of a photo (:func:`label_bay_of`) as (x_left, x_right), from the left."""
    bay = label_bay_of(truth)
    return [(float(truth[bay == b, 0].min()), float(truth[bay == b, 2].max())) for b in range(int(bay.max()) + 1)] \
        if len(truth) else []


def _row_slopes(truth: np.ndarray, dets: np.ndarray) -> np.ndarray:
    """The slope (dy/dx) of each human row's shelf line, for :func:`label_boxes`: per row, the
    median slope between the bottoms of the detector's boxes that stand within it (5 or more;
    boxes reaching into the rows above or below, as on glass-door fridges, say nothing of it),
    then one plane over the photo (slope = a + b * y + c * x, the way the shelf lines of a
    perspective view turn) fitted to those by iteratively reweighted least squares, so a row with
    a few stray boxes takes its neighbours' slope."""
    cx = (dets[:, 0] + dets[:, 2]) / 2
    est = np.full(len(truth), np.nan)
    for r, (x0, y0, x1, y1) in enumerate(truth):
        m = 0.1 * (y1 - y0)
        inside = np.flatnonzero((cx > x0) & (cx < x1) & (dets[:, 1] > y0 - m) & (dets[:, 3] < y1 + m))
        if len(inside) >= 5:
            i, j = np.triu_indices(len(inside), 1)
            dx = cx[inside[j]] - cx[inside[i]]
            ok = np.abs(dx) > 1e-6
            if ok.any():
                est[r] = float(np.median((dets[inside[j], 3] - dets[inside[i], 3])[ok] / dx[ok]))
    ok = np.isfinite(est)
    if ok.sum() < 4:
        return np.where(ok, est, 0.0)
    design = np.c_[np.ones(len(truth)), (truth[:, 1] + truth[:, 3]) / 2, (truth[:, 0] + truth[:, 2]) / 2]
    weight = np.ones(int(ok.sum()))
    for _ in range(5):
        coef = np.linalg.lstsq(design[ok] * weight[:, None], est[ok] * weight, rcond=None)[0]
        res = np.abs(est[ok] - design[ok] @ coef)
        scale = max(1.5 * float(np.median(res)), 1e-3)
        weight = np.sqrt(np.minimum(1.0, scale / np.maximum(res, 1e-9)))
    return design @ coef


def label_boxes(truth: np.ndarray, dets: np.ndarray, rng: np.random.Generator, width: int, height: int, *,
                upright: float = 0.2, jitter: float = 0.03, spacing: float = 0.0) -> np.ndarray:
    """Product boxes made from a photo's human row boxes, for the ``--label-boxes`` diagnostic:
    what a detector that boxes every labelled product, and nothing else, would give the audit.

    Each human row is filled from its left end to its right with products side by side
    (touching; each row's own height, 0.8 to 0.95 of the row's free height, and aspect, 0.35 to
    0.9, widths within 10 %), standing on the row's shelf line (its slope from ``dets``, the
    detector's boxes: :func:`_row_slopes`), below the row above it in its bay. Between
    neighbouring human bays, an upright: a straight line through the middles of the junctions of
    their rows side by side, ``upright`` product widths wide: rows reaching into it stop at it
    (human row boxes of neighbouring bays touch or overlap, and their ends wander; real uprights
    are straight), rows ended short of it keep their ends (a fridge's door frame). With
    ``spacing`` > 0 each product is followed by a space of up to that share of its width
    (shelves not faced up). Then every edge is moved by up to ``jitter`` of its box's width
    (uniform), as the generated aisles' boxes are, and the boxes are clipped to the ``width`` x
    ``height`` image (those left without area dropped)."""
    n = len(truth)
    if n == 0:
        return np.zeros((0, 4))
    slope = _row_slopes(truth, dets)
    x_lo, x_hi = truth[:, 0].copy(), truth[:, 2].copy()
    y_top = truth[:, 1].copy()
    row_h = truth[:, 3] - truth[:, 1]
    y_mid = (truth[:, 1] + truth[:, 3]) / 2
    # each row's products: height and aspect, drawn before the rows are trimmed
    aspect = rng.uniform(0.35, 0.9, n)
    frac = rng.uniform(0.8, 0.95, n)
    for r in range(n):
        over = (np.minimum(truth[:, 2], truth[r, 2]) - np.maximum(truth[:, 0], truth[r, 0])) > 0.3 * (truth[r, 2] - truth[r, 0])
        above = over & (truth[:, 3] < truth[r, 3] - 0.3 * row_h[r]) & (truth[:, 3] > truth[r, 1])
        above[r] = False
        if above.any():
            y_top[r] = float(truth[above, 3].max()) + 0.03 * row_h[r]
    free = truth[:, 3] - y_top
    rise = np.abs(slope) * (truth[:, 2] - truth[:, 0])
    prod_h = frac * np.maximum(free - np.minimum(rise, 0.5 * free), 0.4 * free)
    gap = upright * prod_h * aspect
    bay = label_bay_of(truth)
    for b in range(int(bay.max())):
        left, right = np.flatnonzero(bay == b), np.flatnonzero(bay == b + 1)
        pts = []
        for i in left:
            for j in right:
                vo = min(truth[i, 3], truth[j, 3]) - max(truth[i, 1], truth[j, 1])
                if vo > 0.3 * min(row_h[i], row_h[j]) and abs(truth[j, 0] - truth[i, 2]) < min(row_h[i], row_h[j]):
                    pts.append(((truth[i, 2] + truth[j, 0]) / 2, (max(truth[i, 1], truth[j, 1]) + min(truth[i, 3], truth[j, 3])) / 2))
        if not pts:
            continue
        pt = np.array(pts)
        lean, x0 = (np.polyfit(pt[:, 1], pt[:, 0], 1) if len(pt) >= 2 and np.ptp(pt[:, 1]) > 0
                    else (0.0, float(pt[:, 0].mean())))
        line = x0 + lean * y_mid
        # rows reaching into the upright stop at it; rows the labellers ended short of it (a
        # fridge's door frame, products not faced up to the post) keep their ends
        near = np.abs(x_hi - line) < row_h
        x_hi[left] = np.where(near[left], np.minimum(x_hi[left], line[left] - gap[left] / 2), x_hi[left])
        near = np.abs(x_lo - line) < row_h
        x_lo[right] = np.where(near[right], np.maximum(x_lo[right], line[right] + gap[right] / 2), x_lo[right])
    out = []
    for r in range(n):
        x, end, pw = x_lo[r], x_hi[r], prod_h[r] * aspect[r]
        while x < end - 0.3 * pw:
            w = pw * rng.uniform(0.9, 1.1)
            xe = min(x + w, end)
            if end - xe < 0.5 * pw:
                xe = end
            xm = (x + xe) / 2
            # the shelf line through the row box's lower corner on its lower side
            bottom = truth[r, 3] + slope[r] * (xm - (truth[r, 2] if slope[r] > 0 else truth[r, 0]))
            h = prod_h[r] * rng.uniform(0.85, 1.0)
            out.append((x, bottom - h, xe, bottom))
            x = xe + (rng.uniform(0, spacing) * pw if spacing > 0 else 0.0)
    boxes = np.array(out, np.float64).reshape(-1, 4)
    if jitter > 0 and len(boxes):
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        boxes = boxes + rng.uniform(-jitter, jitter, boxes.shape) * w
    boxes = np.clip(boxes, 0.0, [width, height, width, height])
    return boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]


def outside_rows(dets: np.ndarray, truth: np.ndarray, *, share: float = 0.3) -> np.ndarray:
    """The boxes of ``dets`` (N, 4) that stand outside every human row box of ``truth``: under
    ``share`` of each box's area inside the human rows (their union, on the photo's pixels). With
    ``--label-boxes --with-unlabelled`` they join the made boxes, as a detector that boxes the
    whole photo adds the products of bays nobody labelled (and its own false boxes on signs and
    floors), which the made boxes alone leave out."""
    d = np.asarray(dets, np.float64).reshape(-1, 4)
    if len(d) == 0 or len(truth) == 0:
        return d
    w, h = int(np.ceil(max(d[:, 2].max(), truth[:, 2].max()))) + 1, int(np.ceil(max(d[:, 3].max(), truth[:, 3].max()))) + 1
    # the rows' union as a summed-area table: each box's labelled area in four lookups
    mask = np.zeros((h + 1, w + 1), np.int64)
    for x0, y0, x1, y1 in np.rint(truth).astype(np.int64):
        mask[max(y0, 0) + 1: y1 + 1, max(x0, 0) + 1: x1 + 1] = 1
    sat = mask.cumsum(0).cumsum(1)
    b = np.clip(np.rint(d).astype(np.int64), 0, [w, h, w, h])
    inside = sat[b[:, 3], b[:, 2]] - sat[b[:, 1], b[:, 2]] - sat[b[:, 3], b[:, 0]] + sat[b[:, 1], b[:, 0]]
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1)
    return d[inside < share * area]


def label_bay_regions(truth: np.ndarray, height: int) -> list[Any]:
    """The human bays as regions (full-height strips): the "bays known" diagnostic."""
    from densedet_tile.audit import parse_regions

    feats = [{"type": "Feature", "properties": {"name": f"human bay {k + 1}"},
              "geometry": {"type": "Polygon", "coordinates": [[[x0, 0], [x1, 0], [x1, height], [x0, height], [x0, 0]]]}}
             for k, (x0, x1) in enumerate(label_bays(truth))]
    return parse_regions({"type": "FeatureCollection", "features": feats}) if feats else []


def gaps_across_bays(gaps: list[tuple[int, np.ndarray]], truth: np.ndarray) -> int:
    """Gaps that reach into two side-by-side human row boxes at the gap's own height: a gap
    across an upright (or into the next bay)."""
    n = 0
    for _, poly in gaps:
        x1, x2 = poly[:, 0].min(), poly[:, 0].max()
        ym = poly[:, 1].mean()
        hit = truth[(truth[:, 1] <= ym) & (truth[:, 3] >= ym) & (truth[:, 0] < x2) & (truth[:, 2] > x1)]
        if len(hit) >= 2:
            # two label boxes that do not overlap horizontally: two bays
            order = np.argsort(hit[:, 0])
            h = hit[order]
            if np.any(h[1:, 0] >= h[:-1, 2] - 0.05 * (h[:-1, 2] - h[:-1, 0])):
                n += 1
    return n


# ----------------------------------------------------------------------------- real photos
def read_labels(path: Path, width: int, height: int) -> np.ndarray:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        _, cx, cy, w, h = (float(v) for v in parts)
        rows.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
    return np.asarray(rows, np.float64).reshape(-1, 4)


#: Settings that say how a run was executed, not what it found; and those the scale rule decides
#: for each image's size (the built-in model's photo rule cuts a 1920x2560 photo into other tiles
#: than a 3264x2448 one, and a small image into small ones): of the scale, its source is kept.
#: What was asked of those (the tile, overlap and input size before the rule) is compared in the
#: request each cached JSON records (:func:`default_request`).
#: settings a run decides for each image (the merge's pixel tolerances follow the scale the
#: photo is shown at: pipeline.merge_at_model_scale); what was asked of them is compared
#: through the recorded request instead
_RUN_ONLY = ("batch_size", "final_batch_size", "device", "scale", "tile", "overlap", "input_size", "merge")


def default_request() -> dict[str, Any]:
    """What the cached detections are asked for: the engine's defaults and the built-in model,
    as a batch run records its request (``densedet_tile.runner.request_key``: tile, overlap,
    threshold, input size, scale, merge, precision, the model with its shipped weights' hash,
    and the version of the engine's rules)."""
    from densedet_tile.detector.registry import DetectorSpec
    from densedet_tile.runner import Job, request_key

    return request_key(Job(), DetectorSpec())


def engine_fingerprint() -> dict[str, Any]:
    """The ``model`` and ``settings`` a detections JSON of today's engine at its defaults records
    (from a run on a small blank image), without the settings that only say how it ran, and the
    ``request`` it is asked for (:func:`default_request`)."""
    import tempfile

    import densedet_tile as dt
    from densedet_tile.io import write_json

    res = dt.detect_image(np.full((64, 64, 3), 128, np.uint8))
    with tempfile.TemporaryDirectory() as tmp:
        doc = json.loads(write_json(res, Path(tmp) / "probe.detections.json").read_text())
    return {**_fingerprint_of(doc), "request": default_request()}


def cache_detections(image: Any, cached: Path) -> Path:
    """Detect ``image`` (a photo's path, or an array) with the built-in model at its defaults
    and write the detections JSON ``cached``, recording the request it was made for
    (:func:`default_request`) in ``settings.requested.job`` as a batch run does, so that a
    later run can tell a cache asked for other settings or made by other rules."""
    import os
    from dataclasses import replace

    import densedet_tile as dt
    from densedet_tile.io import write_json
    from densedet_tile.runner import input_state

    res = dt.detect_image(image)
    asked: dict[str, Any] = {"job": default_request()}
    if isinstance(image, (str, Path)):
        asked.update(input=input_state(image), file=os.path.realpath(image))
    cached.parent.mkdir(parents=True, exist_ok=True)
    return write_json(replace(res, settings={**res.settings, "requested": asked}), cached)


def _fingerprint_of(doc: dict[str, Any]) -> dict[str, Any]:
    # (what was asked, "requested", is compared on its own: _stale_request)
    settings = {k: v for k, v in (doc.get("settings") or {}).items() if k not in _RUN_ONLY and k != "requested"}
    scale = (doc.get("settings") or {}).get("scale")
    settings["scale.source"] = scale.get("source") if isinstance(scale, dict) else None
    model = dict(doc.get("model") or {})
    info = model.pop("info", None)
    if isinstance(info, dict):  # the model's own description, less where and how it ran
        model.update({f"info.{k}": v for k, v in info.items() if k not in ("threads", "device")})
    return {"model": model, "settings": settings}


def _first_difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any] | None:
    """The first (in name order) dotted key where the JSON values ``a`` and ``b`` differ, with
    both values, or None where they are the same."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            diff = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else k)
            if diff is not None:
                return diff
        return None
    return None if a == b else (where, a, b)


def _stale_request(path: Path, doc: Any, want: dict[str, Any]) -> str | None:
    """Why the detections JSON ``doc`` at ``path`` was not asked for as ``want`` (its recorded
    request, ``settings.requested.job``: every setting the user gives that changes the boxes,
    the detector and the engine's rules version), in one line, or None."""
    settings = doc.get("settings") if isinstance(doc, dict) else None
    asked = settings.get("requested") if isinstance(settings, dict) else None
    had = asked.get("job") if isinstance(asked, dict) else None
    fix = "to measure today's engine, remove the cached detections or pass --dets to another folder"
    if not isinstance(had, dict):
        # the tile, overlap and input size it ran at are the photo rule's for that image; what
        # was asked (an --overlap of a densedet-tile run, say) is unknown, and so are its rules
        return (f"{path}: records no request: made before caches recorded the settings asked (tile, overlap...) "
                f"and the engine's rules version, so by an older engine, or not by densedet-tile; {fix}")
    if had.get("rules") != want.get("rules"):
        return (f"{path}: made by another engine's rules (rules {had.get('rules', 'unrecorded')} there, "
                f"{want.get('rules')} now); {fix}")
    diff = _first_difference(had, want)
    if diff is None:
        return None
    k, a, b = diff
    return f"{path}: asked for with other settings than today's defaults ({k}: {a!r} there, {b!r} now); {fix}"


def check_cached(dets: Path, stems: list[str], current: dict[str, Any]) -> str | None:
    """A one-line reason when a cached detections JSON in ``dets`` for one of ``stems`` was made
    with another model or other settings than ``current`` (:func:`engine_fingerprint`), else None:
    asked for another way (its recorded request against ``current["request"]``: tile, overlap,
    threshold, input size, scale, merge, precision, detector and its weights, the rules version;
    one that records none cannot be checked, and is named), or run with another model or
    settings as its ``model`` and ``settings`` say. The first such file is named, with how many
    of the cached files are such. (Changes to the engine's code are seen as far as their
    authors bump the rules version.)"""
    stale: list[str] = []
    cached = 0
    for stem in stems:
        path = dets / f"{stem}.detections.json"
        if not path.is_file():
            continue
        cached += 1
        why = _stale_cache(path, current)
        if why is not None:
            stale.append(why)
    if not stale:
        return None
    # (one note for the run: which file, and whether it is one of a few or the whole cache)
    return stale[0] if len(stale) == 1 else f"{stale[0]} ({len(stale)} of {cached} cached files are stale)"


def _stale_cache(path: Path, current: dict[str, Any]) -> str | None:
    """:func:`check_cached`'s reason for one cached detections JSON, or None."""
    try:
        doc = json.loads(path.read_text())
        got = _fingerprint_of(doc)
    except (OSError, ValueError, AttributeError) as exc:
        return f"{path}: not a readable detections JSON ({exc})"
    if "request" in current:
        why = _stale_request(path, doc, current["request"])
        if why is not None:
            return why
    for part in ("model", "settings"):
        a, b = got[part] or {}, current[part] or {}
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            k = diff[0]
            return (f"{path}: made with other {part} than today's engine ({k}: {a.get(k)!r} there, {b.get(k)!r} "
                    f"now); to measure today's engine, remove the cached detections or pass --dets to another "
                    f"folder")
    return None


def detections_for(photo: Path, dets: Path) -> Any:
    """The boxes of ``photo``: another detector's as the audit command reads them (``dets`` one
    CSV of every photo, or a folder of ``<stem>.csv`` / ``<stem>.txt`` files), else the cached
    built-in-model detections (made and cached when missing)."""
    from densedet_tile.cli.audit import _read_boxes
    from densedet_tile.eval.formats import read_detections_json

    if dets.is_file():  # one CSV of every photo, matched by file name
        return _read_boxes(str(dets), str(photo))
    cached = dets / f"{photo.stem}.detections.json"
    other = [dets / f"{photo.stem}{ext}" for ext in (".csv", ".txt")]
    mine = next((p for p in other if p.is_file()), None)
    if not cached.is_file() and mine is not None:
        return _read_boxes(str(mine), str(photo))
    if not cached.is_file() and dets.is_dir() and (any(dets.glob("*.csv")) or any(dets.glob("*.txt"))):
        # another detector's folder: a photo it has no boxes for is not filled in by the built-in model
        raise SystemExit(f"eval_audit_real: {dets} holds no boxes for {photo.name} "
                         f"({photo.stem}.detections.json, .csv or .txt)")
    if not cached.is_file():
        cache_detections(photo, cached)
    elif _photo_changed(cached, photo):
        # another photo under the name (replaced, or --photos another folder with the same names):
        # its cached boxes were scored against this photo's labels without a word (an outside review)
        print(f"eval_audit_real: note: {photo} is not the photo {cached.name} was made from (its size differs, "
              "or it was saved since): detected again", file=sys.stderr)
        cache_detections(photo, cached)
    return read_detections_json(cached)


def _photo_changed(cached: Path, photo: Path) -> bool:
    """Whether ``cached`` is this script's own cache of the built-in model's boxes (its recorded
    request: the shipped model) made from another photo than ``photo`` now: another size, or the
    same file (by its real path) saved since. Another detector's JSON is never redone (a
    diff review: it was overwritten with the built-in model's boxes), nor a photo copied or moved
    with its size kept (its time changes with the copy)."""
    import os

    from densedet_tile.runner import input_state

    try:
        doc = json.loads(cached.read_text())
    except (OSError, ValueError):
        return False
    settings = doc.get("settings") if isinstance(doc, dict) else None
    asked = settings.get("requested") if isinstance(settings, dict) else None
    if not isinstance(asked, dict):
        return False
    job = asked.get("job")
    detector = job.get("detector") if isinstance(job, dict) else None
    if not (isinstance(detector, dict) and detector.get("kind") == "default" and detector.get("checkpoint") is None):
        return False
    had, now = asked.get("input"), input_state(photo)
    if not (isinstance(had, list) and len(had) == 2) or now is None:
        return False
    if had[0] != now[0]:
        return True
    return asked.get("file") == os.path.realpath(photo) and had[1] != now[1]


def eval_real(args: argparse.Namespace) -> dict[str, Any]:
    from densedet_tile.audit import check_gaps, load_preview_image, run_audit
    from densedet_tile.audit.analysis import shelf_lines_scale

    photos_dir = Path(args.photos)
    labels_dir = photos_dir / "shelf-rows"
    if not labels_dir.is_dir():
        print(f"{photos_dir}: no shelf-rows/ folder here; the real photos are not available (see --photos)",
              file=sys.stderr)
        raise SystemExit(2)
    labelled = sorted(p.stem for p in labels_dir.glob("*.txt"))
    stems = [s for s in labelled if (photos_dir / f"{s}.jpg").is_file()]
    photos = sorted(p.stem for p in photos_dir.glob("*.jpg"))
    unscored = sorted(set(photos) - set(stems)) + [s for s in labelled if s not in stems]
    if unscored:  # (said: a photo without labels, or labels without a photo, is left out)
        print(f"eval_audit_real: note: {len(unscored)} photo(s) or label file(s) without the other left out: "
              f"{', '.join(unscored[:5])}{' ...' if len(unscored) > 5 else ''}", file=sys.stderr)
    if args.limit:
        stems = stems[: args.limit]
        print(f"eval_audit_real: note: the first {len(stems)} photos only (--limit): NOT the full set",
              file=sys.stderr)
    # another detector's boxes are welcome here (--dets of a real SKU-110K model's JSONs); boxes
    # cached by an earlier version of the built-in engine look the same, so say whenever they differ
    stale = check_cached(Path(args.dets), stems, engine_fingerprint())
    if stale:
        print(f"eval_audit_real: note: {stale} (fine for another detector's boxes; not the engine of today)",
              file=sys.stderr)
    per_photo = []
    sheet_items = []
    t_audit = 0.0
    for stem in stems:
        photo = photos_dir / f"{stem}.jpg"
        boxes = detections_for(photo, Path(args.dets))
        w, h = int(boxes.width), int(boxes.height)
        truth = read_labels(labels_dir / f"{stem}.txt", w, h)
        xyxy = boxes.xyxy
        if args.label_boxes is not None:
            # the photo's own seed (a checksum of its name): the same boxes on every run,
            # whatever the other photos; --label-seed draws another set
            xyxy = label_boxes(truth, xyxy, np.random.default_rng([zlib.crc32(stem.encode()), args.label_seed]),
                               w, h, upright=args.label_boxes, spacing=args.label_spacing)
            if args.with_unlabelled:
                xyxy = np.concatenate([xyxy, outside_rows(boxes.xyxy, truth)])
        regions = label_bay_regions(truth, h) if args.label_bays else None
        picture = load_preview_image(photo, w, h)
        # the shelf lines read as the audit command reads them: at one scale of the products
        lines = None
        scale = None if args.no_shelf_lines else shelf_lines_scale(xyxy, w, h)
        if scale is not None:
            lines = load_preview_image(photo, w, h, max_width=max(1, round(w * scale)),
                                       max_height=max(1, round(h * scale)))
        t0 = time.perf_counter()
        res = run_audit(xyxy, w, h, regions=regions, picture=lines)
        t_audit += time.perf_counter() - t0
        # the second look at each gap in the photo (as the audit command does with the photo at hand)
        res = check_gaps(res, picture)
        geo = audit_geometry(res, only_regions=args.label_bays)
        m = match_rows(geo["rows"], truth)
        # human rows that hold the centres of 3 or more detected products: the rows a row finder
        # can see at all with these boxes
        cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
        holds = ((cx[None] >= truth[:, :1]) & (cx[None] <= truth[:, 2:3]) & (cy[None] >= truth[:, 1:2])
                 & (cy[None] <= truth[:, 3:4])).sum(axis=1)
        seen = holds >= 3
        # empty shelves (a whole shelf empty inside a bay): one holding a human row's centre stands
        # where the labellers saw products, so that shelf is not empty
        hx, hy = (truth[:, 0] + truth[:, 2]) / 2, (truth[:, 1] + truth[:, 3]) / 2
        on_rows = sum(bool(((hx > e.xyxy[0]) & (hx < e.xyxy[2]) & (hy > e.xyxy[1]) & (hy < e.xyxy[3])).any())
                      for e in res.empty_shelves)
        rec = {
            "photo": stem, "products": int(len(xyxy)), "labels": int(len(truth)),
            "found": int(len(geo["rows"])), "matched": len(m), "bays": len(res.parts),
            "labels_with_3_products": int(seen.sum()), "matched_of_those": int(sum(seen[t] for _, t, _ in m)),
            "missed_because": miss_reasons(geo["rows"], truth, m, xyxy),
            "gaps": len(geo["gaps"]), "gaps_across_bays": gaps_across_bays(geo["gaps"], truth),
            "gaps_looking": {v: sum(1 for p in res.parts if not args.label_bays or p.kind == "region"
                                    for g in p.gaps if g.looks == v) for v in ("empty", "unsure", "stocked")},
            "empty_shelves": len(res.empty_shelves), "empty_shelves_on_human_rows": on_rows,
            # the engine's count flag, when the detections JSON has one (README, "How sure is the count?")
            "uncertain": (boxes.count_range or {}).get("uncertain"),
        }
        per_photo.append(rec)
        sheet_items.append((photo, w, h, truth, geo, {f for f, _, _ in m}, rec))
    report = summarise(per_photo)
    # where the boxes came from, and whether they are today's engine's (the note printed above)
    report["detections"] = {"folder": str(args.dets), "stale": stale}
    # (a run on part of the photos said so on stderr only: an outside review)
    report["limit"] = args.limit or None
    report["full_set"] = not args.limit
    seen = sum(r["labels_with_3_products"] for r in per_photo)
    report["labels_with_3_products"] = seen
    report["recall_of_those"] = sum(r["matched_of_those"] for r in per_photo) / seen if seen else float("nan")
    report["audit_seconds_per_photo"] = t_audit / max(len(stems), 1)
    flagged = {k: [r for r in per_photo if r["uncertain"] is want] for k, want in (("certain", False),
                                                                                     ("uncertain", True))}
    if any(flagged.values()):
        report["by_count_flag"] = {k: {f: v for f, v in summarise(rs).items() if f != "per_photo"}
                                   for k, rs in flagged.items() if rs}
    if args.sheet:
        contact_sheet(sheet_items, Path(args.sheet))
        report["sheet"] = str(args.sheet)
    return report


def summarise(per_photo: list[dict[str, Any]]) -> dict[str, Any]:
    n_l = sum(r["labels"] for r in per_photo)
    n_f = sum(r["found"] for r in per_photo)
    n_m = sum(r["matched"] for r in per_photo)
    err = np.array([r["found"] - r["labels"] for r in per_photo])
    return {
        "photos": len(per_photo),
        "label_rows": n_l,
        "found_rows": n_f,
        "matched": n_m,
        "recall": n_m / n_l if n_l else float("nan"),
        "precision": n_m / n_f if n_f else float("nan"),
        "row_count_exact": int((err == 0).sum()),
        "row_count_mae": float(np.abs(err).mean()) if len(err) else float("nan"),
        "row_count_mean_signed": float(err.mean()) if len(err) else float("nan"),
        "gaps": sum(r["gaps"] for r in per_photo),
        "gaps_across_bays": sum(r["gaps_across_bays"] for r in per_photo),
        **({"gaps_looking": {v: sum(r["gaps_looking"][v] for r in per_photo) for v in ("empty", "unsure", "stocked")}}
           if per_photo and "gaps_looking" in per_photo[0] else {}),
        **({"empty_shelves": sum(r["empty_shelves"] for r in per_photo),
            "empty_shelves_on_human_rows": sum(r["empty_shelves_on_human_rows"] for r in per_photo)}
           if per_photo and "empty_shelves" in per_photo[0] else {}),
        **({"missed_because": {k: sum(r["missed_because"][k] for r in per_photo) for k in MISS_REASONS}}
           if per_photo and "missed_because" in per_photo[0] else {}),
        "per_photo": per_photo,
    }


def contact_sheet(items: list[Any], out: Path, *, cell: tuple[int, int] = (300, 400), cols: int = 10) -> None:
    """One JPEG: every photo (or generated aisle) fitted into a ``cell`` (width, height), with
    human rows white, found rows green (matched) or orange (not), bays yellow, gaps red, and
    ``name matched/human of found`` on top."""
    from PIL import Image, ImageDraw, ImageOps

    cw, ch = cell
    n_rows = (len(items) + cols - 1) // cols
    sheet = Image.new("RGB", (cols * cw, max(n_rows, 1) * ch), (30, 30, 30))
    for k, (photo, w, h, truth, geo, matched, rec) in enumerate(items):
        s = min(cw / w, ch / h)
        tw, th = max(1, int(w * s)), max(1, int(h * s))
        if photo is None:
            im = Image.new("RGB", (tw, th), (200, 200, 200))
        else:
            im = Image.open(photo)
            im.draft("RGB", (tw * 2, th * 2))
            im = ImageOps.exif_transpose(im.convert("RGB")).resize((tw, th), Image.Resampling.BILINEAR)
        over = Image.new("RGBA", im.size, (0, 0, 0, 0))
        d = ImageDraw.Draw(over)
        for bay in geo["bays"]:
            d.line([(x * s, y * s) for x, y in np.vstack([bay, bay[:1]])], fill=(255, 220, 0, 255), width=2)
        for _, poly in geo["gaps"]:
            d.polygon([(x * s, y * s) for x, y in poly], fill=(255, 0, 0, 110), outline=(255, 0, 0, 255))
        for x1, y1, x2, y2 in truth * s:
            d.rectangle([x1, y1, x2, y2], outline=(255, 255, 255, 255), width=1)
        for i, poly in enumerate(geo["row_polygons"]):
            col = (40, 230, 60, 255) if i in matched else (255, 140, 0, 255)
            d.polygon([(x * s, y * s) for x, y in poly], outline=col, width=1)
        label = f"{rec['photo']} {rec['matched']}/{rec['labels']} of {rec['found']}"
        d.rectangle([0, 0, 6 * len(label) + 6, 12], fill=(0, 0, 0, 190))
        d.text((3, 0), label, fill=(255, 255, 255, 255))
        thumb = Image.alpha_composite(im.convert("RGBA"), over).convert("RGB")
        sheet.paste(thumb, ((k % cols) * cw + (cw - tw) // 2, (k // cols) * ch + (ch - th) // 2))
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=85)


# ----------------------------------------------------------------------------- generated aisles
#: ``--tight``: generated aisles as a real detector's tight boxes show them (module doc).
TIGHT = {"spacing": 0.03, "end_margin": 0.02, "upright_width": (0.1, 0.25), "same_shelves": 0.5, "jitter": 0.03}


def aisle_pitch(seed: int, max_deg: float) -> float:
    """Generated aisle ``seed``'s camera pitch, up to ``max_deg`` either way, drawn from its own
    stream so that the aisles without a pitch stay the same."""
    return float(np.random.default_rng([seed, 5]).uniform(-max_deg, max_deg)) if max_deg else 0.0


def eval_synthetic(args: argparse.Namespace) -> dict[str, Any]:
    from densedet_tile.audit import run_audit
    from densedet_tile.synth.audit_aisles import synthetic_bays

    per = []
    sheet_items = []
    rows_exact = 0
    planted = found_gaps = false_gaps = across = 0
    t_audit = 0.0
    world = TIGHT if getattr(args, "tight", False) else {}
    pitch = float(getattr(args, "pitch", 0.0))
    for seed in range(args.synthetic):
        rng = np.random.default_rng([seed, 2026])
        aisle = synthetic_bays(rng, n_bays=int(rng.integers(1, 5)), perspective_deg=float(rng.uniform(-25, 25)),
                               pitch_deg=aisle_pitch(seed, pitch), **world)
        picture = None
        if getattr(args, "picture", False):
            # the aisle painted (shelf edges, flat products), at most 1600 px on its longer side
            from densedet_tile.synth.audit_aisles import render_aisle
            picture = render_aisle(aisle, scale=min(1.0, 1600 / max(aisle.width, aisle.height)))
        t0 = time.perf_counter()
        res = run_audit(aisle.xyxy, aisle.width, aisle.height, picture=picture)
        t_audit += time.perf_counter() - t0
        geo = audit_geometry(res)
        truth = aisle.row_boxes
        m = match_rows(geo["rows"], truth)
        sc = score_bays(aisle, res)
        rows_exact += sc["assignment_exact"]
        planted += sc["planted"]
        found_gaps += sc["found"]
        false_gaps += sc["false"]
        across += sc["across_upright"]
        rec = {"photo": f"aisle {seed}", "products": int(len(aisle.xyxy)), "labels": int(len(truth)),
               "found": int(len(geo["rows"])), "matched": len(m), "bays": len(res.parts),
               "true_bays": int(aisle.n_bays), "perspective_deg": round(aisle.perspective_deg, 1),
               "gaps": len(geo["gaps"]), "gaps_across_bays": sc["across_upright"]}
        per.append(rec)
        if args.sheet and seed < 60:
            sheet_items.append((None, aisle.width, aisle.height, truth, geo, {f for f, _, _ in m}, rec))
    report = summarise(per)
    report.update({
        "assignment_exact": rows_exact, "planted_gaps": planted, "planted_found": found_gaps,
        "false_gaps": false_gaps, "gaps_across_uprights": across,
        "audit_seconds_per_aisle": t_audit / max(args.synthetic, 1),
    })
    if args.sheet:
        contact_sheet(sheet_items, Path(args.sheet), cell=(400, 160), cols=6)
        report["sheet"] = str(args.sheet)
    return report


def score_bays(aisle: Any, res: Any) -> dict[str, int]:
    """Against a generated aisle: every box in the right (bay, row), planted gaps found (a found
    gap of the same row covering over half of one), false gaps, and gaps across an upright (the
    upright's centre line, at the gap's height, more than a quarter product width inside it)."""
    truth_key = aisle.bay_of * 1000 + aisle.row_of
    found_key = np.full(len(aisle.xyxy), -1, np.int64)
    gap_list = []
    for bi, part in enumerate(res.parts):
        a = part.layout.assignment
        ok = a >= 0
        found_key[part.index[ok]] = bi * 1000 + a[ok]
        for g in part.gaps:
            gap_list.append((bi, g))
    # map found (bay, row) keys to true ones by majority; exact when the map is one to one and total
    exact = bool((found_key >= 0).all())
    if exact:
        pairs = set(zip(found_key.tolist(), truth_key.tolist()))
        exact = len(pairs) == len(set(found_key.tolist())) == len(set(truth_key.tolist()))
    # which true (bay, row) each found gap lies on: the true row of most of the part row's boxes
    key_map: dict[int, int] = {}
    for k in set(found_key.tolist()) - {-1}:
        vals, cnt = np.unique(truth_key[found_key == k], return_counts=True)
        key_map[k] = int(vals[np.argmax(cnt)])
    matched: set[int] = set()
    found = 0
    for b, r, x1, x2 in aisle.gaps:
        hits = [i for i, (bi, g) in enumerate(gap_list)
                if key_map.get(bi * 1000 + g.row) == b * 1000 + r and min(x2, g.x2) - max(x1, g.x1) > 0.5 * (x2 - x1)]
        if hits:
            found += 1
            matched.update(hits)
    across = 0
    for _, g in gap_list:
        # each upright's x at the gap's height (uprights lean with the camera's roll)
        ym = float(np.mean([y for _, y in g.polygon]))
        (xt, yt), (xb, yb) = aisle.upright_lines[:, 0].T, aisle.upright_lines[:, 1].T
        xu = xt + (xb - xt) * (ym - yt) / np.where(yb != yt, yb - yt, 1)
        # a quarter of a product's width of overlap is a gap touching the upright, not across it
        tol = 0.25 * g.width_px / g.width_products if g.width_products > 0 else 0.0
        across += int(np.any((xu > g.x1 + tol) & (xu < g.x2 - tol)))
    return {"assignment_exact": int(exact), "planted": len(aisle.gaps), "found": found,
            "false": len(gap_list) - len(matched), "across_upright": across}


# ----------------------------------------------------------------------------- main
def print_report(rep: dict[str, Any], title: str) -> None:
    print(f"## {title}")
    print(f"photos {rep['photos']}, human rows {rep['label_rows']}, found rows {rep['found_rows']}, matched {rep['matched']}")
    print(f"row recall {rep['recall']:.3f}, row precision {rep['precision']:.3f}")
    print(f"row count: exact on {rep['row_count_exact']}/{rep['photos']}, mean |error| {rep['row_count_mae']:.2f}, "
          f"mean signed {rep['row_count_mean_signed']:+.2f}")
    print(f"gaps {rep['gaps']}, across two bays {rep['gaps_across_bays']}")
    if "gaps_looking" in rep:
        looks = rep["gaps_looking"]
        print(f"gaps in the photos' pixels: {looks['empty']} look empty, {looks['unsure']} unsure, "
              f"{looks['stocked']} look stocked")
    if "empty_shelves" in rep:
        print(f"empty shelves {rep['empty_shelves']}, holding a human row's centre "
              f"{rep['empty_shelves_on_human_rows']}")
    if "missed_because" in rep:
        print("human rows missed, why: " + ", ".join(f"{k} {v}" for k, v in rep["missed_because"].items()))
    if "recall_of_those" in rep:
        print(f"human rows holding 3+ detected products: {rep['labels_with_3_products']} of {rep['label_rows']}, "
              f"recall among them {rep['recall_of_those']:.3f}")
    for k in ("assignment_exact", "planted_gaps", "planted_found", "false_gaps", "gaps_across_uprights",
              "audit_seconds_per_photo", "audit_seconds_per_aisle", "sheet"):
        if k in rep:
            print(f"{k}: {rep[k]}")
    for k, g in rep.get("by_count_flag", {}).items():
        print(f"photos whose count the engine flags {k}: {g['photos']}, row recall {g['recall']:.3f}, "
              f"precision {g['precision']:.3f}, row count exact on {g['row_count_exact']}")
    if rep.get("per_photo") and "true_bays" not in rep["per_photo"][0]:
        # lowest recall first, the photo with more rows missed first among equals (it sorted by
        # rows missed and called that least recall: an outside review)
        worst = sorted(rep["per_photo"], key=lambda r: (r["matched"] / max(r["labels"], 1), r["matched"] - r["labels"]))[:10]
        print("least recall: " + ", ".join(f"{r['photo']} {r['matched']}/{r['labels']} (found {r['found']})"
                                           for r in worst))


def main(argv: Sequence[str] | None = None) -> int:
    from densedet_tile.cli.options import nonneg_int

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder with the photos and shelf-rows/ (default: %(default)s)")
    p.add_argument("--dets", default="/tmp/audit_real/dets",
                   help="detections cache folder (default: %(default)s); or another detector's boxes: a folder of "
                   "<stem>.csv / <stem>.txt (YOLO) files, or one CSV of every photo (SKU-110K layout)")
    p.add_argument("--sheet", default=None, help="write the contact sheet JPEG here (outside the repository)")
    p.add_argument("--json", default=None, help="write the figures (and per-photo rows) here")
    p.add_argument("--limit", type=nonneg_int, default=0, help="only the first N photos (0: all)")
    p.add_argument("--synthetic", type=int, default=0, metavar="N", help="measure on N generated aisles instead")
    p.add_argument("--tight", action="store_true",
                   help="with --synthetic: tight boxes on products filled up to thin uprights, as a real detector "
                        "sees real shelves")
    p.add_argument("--pitch", type=float, default=0.0, metavar="D",
                   help="with --synthetic: tilt each aisle's camera up or down by up to D degrees (uprights converge)")
    p.add_argument("--picture", action="store_true",
                   help="with --synthetic: give the audit each aisle painted (shelf edges and products), as a photo")
    p.add_argument("--no-shelf-lines", action="store_true",
                   help="find the bays from the boxes alone (not also from the shelf lines in the photo; the "
                        "gaps are still checked in it)")
    p.add_argument("--label-bays", action="store_true",
                   help="diagnostic: give the human bays as regions and score only their rows (how far the rows "
                        "get when the bays are known and the bays nobody labelled are left out)")
    p.add_argument("--label-boxes", type=float, default=None, metavar="W",
                   help="diagnostic: audit boxes made from the human row boxes instead of the detector's (every "
                        "labelled product boxed, nothing else), with an upright W product widths wide at each human "
                        "bay boundary and 3 %% jitter: the geometry of real photos apart from the detector")
    p.add_argument("--with-unlabelled", action="store_true",
                   help="with --label-boxes: keep the detector's boxes that stand outside every labelled row "
                        "(products of bays nobody labelled, false boxes), as a detector that boxes the whole photo "
                        "gives them; the made boxes alone stop where the labels stop")
    p.add_argument("--label-spacing", type=float, default=0.0, metavar="S",
                   help="with --label-boxes: products up to S of a width apart instead of touching")
    p.add_argument("--label-seed", type=int, default=0, metavar="K",
                   help="with --label-boxes: the K-th set of made boxes (the figures vary by a few hundredths "
                        "from one set to the next)")
    args = p.parse_args(argv)
    if not (0 <= args.label_spacing < 1):
        print(f"--label-spacing {args.label_spacing}: the space must be in [0, 1) product widths", file=sys.stderr)
        return 2
    if args.with_unlabelled and args.label_boxes is None:
        print("--with-unlabelled goes with --label-boxes", file=sys.stderr)
        return 2
    if args.label_boxes is not None and not (0 <= args.label_boxes < 2):
        print(f"--label-boxes {args.label_boxes}: the upright's width must be in [0, 2) product widths", file=sys.stderr)
        return 2
    if args.sheet and Path(args.sheet).resolve().is_relative_to(ROOT):
        print(f"{args.sheet}: the contact sheet shows the photos; write it outside the repository", file=sys.stderr)
        return 2
    if args.synthetic:
        rep = eval_synthetic(args)
        print_report(rep, f"generated aisles, {'tight' if args.tight else 'perfect'} boxes ({args.synthetic})"
                          + (f", camera pitch up to {args.pitch:g} degrees" if args.pitch else ""))
    else:
        rep = eval_real(args)
        source = (f"made from the human rows (uprights {args.label_boxes:g} widths"
                  + (f", products up to {args.label_spacing:g} widths apart" if args.label_spacing else "")
                  + (", the detector's boxes outside the labelled rows kept" if args.with_unlabelled else "") + ")"
                  if args.label_boxes is not None
                  else "from " + args.dets)
        print_report(rep, "real photos, boxes " + source + (", human bays given" if args.label_bays else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(rep, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
