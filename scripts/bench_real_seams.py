#!/usr/bin/env python
"""Seams with a real detector (issue 12, part 1): tiled panoramas against whole photos.

The painted aisles (``scripts/bench_seams.py``) have 1 px box noise; a real CNN's two views of
one product from two tiles disagree by more. This benchmark measures the merge on a real
detector's boxes, with no labels needed:

1. Real shelf photos (``../shared/real-shelves``, SKU-110K phone photos) are taken in file
   order, resized to one height (default 3264 px) and put side by side, ``--per-pano`` at a
   time (default 4, the last panorama takes the leftover photo), e.g. 9792x3264 px.
2. The reference: the detector (default: the built-in model) run on **each photo whole**,
   as one tile the size of the photo, at one fixed scale ``--scale`` (default 0.5: the model's
   input is the photo at half size, the scale it was trained for at the default 1280 px tile).
3. Ours: the panorama through ``plan`` -> ``predict_tiles`` -> ``merge_tiles`` at tiles 1024,
   1280 and 1632 (overlap 0.2), each tile shown to the model at the same scale
   (``input_size = tile * scale``), so a product looks the same in every tile and in the
   whole photo.
4. SAHI: ``get_sliced_prediction`` (GREEDYNMM, IOS 0.5, ``perform_standard_pred=False``)
   with the same detector (the wrapper of ``scripts/bench_e2e.py``: the same resize before
   ``predict``) on the same slices (checked: SAHI's slice boxes equal our tiles).
5. Both are scored against the reference: one-to-one matching by IoU (pairs from the grid
   index of ``densedet_tile.merge``, greedy by IoU, never an N x M matrix), F1 at IoU 0.5
   and 0.75, summed over panoramas.

The stitching seams between photos are not real: a product cut by a photo boundary is not a
product, and the detector sees a different neighbour there in the panorama than at the
photo's border. Within ``--seam-band`` px of each stitching seam nothing is scored: a reference
box reaching into the band is ignored, and so is a prediction matched to it or, unmatched,
reaching into the band.

The detector runs once per distinct tile: its outputs are cached on disk by the hash of the
pixels it was given (``--cache``), so the SAHI pass and any rerun cost no inference.
``--dump DIR`` saves each panorama's tile-local boxes, references and SAHI boxes, and
``--from-dump DIR`` rescores the merge from them alone (no photos, no model, no SAHI rerun),
for merge development.

    python scripts/bench_real_seams.py --out benchmarks/real_seams.md   # all photos, the published page
    python scripts/bench_real_seams.py --panoramas 4 --dump /tmp/rs_dump
    python scripts/bench_real_seams.py --from-dump /tmp/rs_dump --out /tmp/rs.md

Exit status: 0 done, 2 when the photos are not there (the script says so).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine_line, save_page  # noqa: E402

from densedet_tile.merge import merge_tiles  # noqa: E402
from densedet_tile.merge.boxes import candidate_pairs, pair_iou  # noqa: E402
from densedet_tile.types import Detections, MergeSpec, Tile  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PHOTOS = ROOT.parent / "shared" / "real-shelves"
SAHI_SETTINGS = dict(perform_standard_pred=False, postprocess_type="GREEDYNMM",
                     postprocess_match_metric="IOS", postprocess_match_threshold=0.5)
IOUS = (0.5, 0.75)


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------
def match_boxes(pred: np.ndarray, ref: np.ndarray, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of ``pred`` (N, 4) to ``ref`` (M, 4) boxes at IoU >= ``thr``.

    Greedy by IoU (the best remaining pair first), computed in rounds: every pair that is the
    best of both its boxes among the still free ones is taken at once, which picks the same
    pairs as the sequential greedy order. Pairs come from the merge's grid index over both
    sets, never an N x M matrix. Returns ``pm`` int64 (N,) (matched ref index or -1) and
    ``rm`` int64 (M,) (matched pred index or -1).
    """
    n, m = len(pred), len(ref)
    pm = np.full(n, -1, np.int64)
    rm = np.full(m, -1, np.int64)
    if n == 0 or m == 0:
        return pm, rm
    both = np.concatenate([np.asarray(pred, np.float64), np.asarray(ref, np.float64)])
    i, j = candidate_pairs(both)
    cross = (i < n) & (j >= n)
    i, j = i[cross], j[cross]
    iou = pair_iou(both, i, j)
    ok = iou >= thr
    p, r, iou = i[ok], j[ok] - n, iou[ok]
    # Stable ties: higher IoU first, then lower indices.
    order = np.lexsort((r, p, -iou))
    p, r, iou = p[order], r[order], iou[order]
    while p.size:
        # The first (best) pair of each pred and of each ref among the free ones.
        best_p = np.full(n, -1, np.int64)
        best_r = np.full(m, -1, np.int64)
        k = np.arange(p.size)
        best_p[p[::-1]] = k[::-1]  # the last write wins: the first occurrence in order
        best_r[r[::-1]] = k[::-1]
        take = (best_p[p] == k) & (best_r[r] == k)
        pm[p[take]] = r[take]
        rm[r[take]] = p[take]
        free = (pm[p] < 0) & (rm[r] < 0)
        p, r, iou = p[free], r[free], iou[free]
    return pm, rm


def in_bands(xyxy: np.ndarray, bands: np.ndarray) -> np.ndarray:
    """Boxes whose x range reaches into any of the ``bands`` (K, 2) x intervals."""
    if len(bands) == 0 or len(xyxy) == 0:
        return np.zeros(len(xyxy), bool)
    lo = np.searchsorted(bands[:, 1], xyxy[:, 0], side="right")  # first band ending after x1
    lo = np.minimum(lo, len(bands) - 1)
    return (bands[lo, 0] < xyxy[:, 2]) & (bands[lo, 1] > xyxy[:, 0])


def score(pred: np.ndarray, ref: np.ndarray, bands: np.ndarray, thr: float) -> dict[str, int]:
    """TP/FP/FN of ``pred`` against ``ref`` at IoU ``thr``, nothing counted in the ``bands``.

    Also splits the false positives: ``dup`` (IoU >= 0.5 with a reference box another
    prediction matched: a duplicate), ``frag`` (at least half of its own area inside one
    reference box: a piece of a product) and the rest.
    """
    pm, rm = match_boxes(pred, ref, thr)
    ref_ign = in_bands(ref, bands)
    pred_band = in_bands(pred, bands)
    pred_ign = np.where(pm >= 0, ref_ign[np.maximum(pm, 0)], pred_band)
    tp = int(np.count_nonzero((pm >= 0) & ~pred_ign))
    fp_mask = (pm < 0) & ~pred_ign
    fn = int(np.count_nonzero((rm < 0) & ~ref_ign))
    dup = frag = 0
    fpi = np.flatnonzero(fp_mask)
    if fpi.size:
        both = np.concatenate([np.asarray(pred, np.float64), np.asarray(ref, np.float64)])
        n = len(pred)
        i, j = candidate_pairs(both)
        sel = (i < n) & (j >= n) & fp_mask[np.minimum(i, n - 1)]
        i, j = i[sel], j[sel]
        iou = pair_iou(both, i, j)
        a, b = both[i], both[j]
        iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0, None)
        ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0, None)
        area = np.maximum((a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1]), 1e-9)
        is_dup = np.zeros(n, bool)
        is_dup[i[(iou >= 0.5) & (rm[j - n] >= 0)]] = True
        is_frag = np.zeros(n, bool)
        is_frag[i[iw * ih / area >= 0.5]] = True
        dup = int(np.count_nonzero(is_dup & fp_mask))
        frag = int(np.count_nonzero(is_frag & ~is_dup & fp_mask))
    return {"tp": tp, "fp": int(fpi.size), "fn": fn, "dup": dup, "frag": frag}


def f1(c: dict[str, int]) -> float:
    d = 2 * c["tp"] + c["fp"] + c["fn"]
    return 2 * c["tp"] / d if d else 1.0


def add(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b[k] for k in b}


# ----------------------------------------------------------------------------------------------
# photos, panoramas and the cached detector
# ----------------------------------------------------------------------------------------------
def list_photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jpg") if p.is_file())


def group_photos(photos: Sequence[Path], per: int) -> list[list[Path]]:
    """Consecutive groups of ``per`` photos; a shorter remainder joins the last group."""
    groups = [list(photos[k : k + per]) for k in range(0, len(photos), per)]
    if len(groups) > 1 and len(groups[-1]) < per:
        groups[-2].extend(groups.pop())
    return groups


def load_photo(path: Path, height: int) -> np.ndarray:
    """The upright photo (EXIF applied by the engine's reader) resized to ``height`` px."""
    from PIL import Image

    from densedet_tile.tiler.readers import open_image

    with open_image(path) as src:
        arr = src.read(0, 0, src.width, src.height)
    w = max(1, int(round(arr.shape[1] * height / arr.shape[0])))
    return np.asarray(Image.fromarray(arr).resize((w, height), Image.LANCZOS))


def stitch(photos: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Photos side by side; returns the panorama and the photos' x bounds (K + 1,)."""
    xs = np.concatenate([[0], np.cumsum([p.shape[1] for p in photos])]).astype(np.int64)
    return np.ascontiguousarray(np.concatenate(photos, axis=1)), xs


class CachedDetector:
    """A detector whose outputs are remembered by the hash of the pixels it was given.

    ``input_size`` is what this wrapper declares (the engine and the SAHI wrapper resize
    each tile to it); several wrappers may share one cache (``store``) and one model. Results
    also go to ``folder`` (one small ``.npz`` per distinct input) when given.
    """

    def __init__(self, inner: Any, input_size: int, store: dict, folder: Path | None, tag: str) -> None:
        self.inner, self.input_size, self.store, self.folder, self.tag = inner, int(input_size), store, folder, tag
        self.score_thr = getattr(inner, "score_thr", None)
        self.class_names = getattr(inner, "class_names", None) or ("product",)
        self.name = f"cached:{getattr(inner, 'name', type(inner).__name__)}"
        self.hits = self.misses = 0
        self.predict_s = 0.0

    def _key(self, a: np.ndarray) -> str:
        h = hashlib.sha1(self.tag.encode())
        h.update(np.asarray(a.shape, np.int64).tobytes())
        h.update(np.ascontiguousarray(a).data)
        return h.hexdigest()

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        keys = [self._key(a) for a in tiles]
        out: list[Detections | None] = []
        for k in keys:
            d = self.store.get(k)
            if d is None and self.folder is not None:
                f = self.folder / f"{k}.npz"
                if f.exists():
                    z = np.load(f)
                    d = Detections(z["xyxy"], z["scores"], z["labels"])
                    self.store[k] = d
            out.append(d)
        todo = [n for n, d in enumerate(out) if d is None]
        self.hits += len(tiles) - len(todo)
        self.misses += len(todo)
        if todo:
            t0 = time.perf_counter()
            got = self.inner.predict([tiles[n] for n in todo])
            self.predict_s += time.perf_counter() - t0
            for n, d in zip(todo, got):
                out[n] = d
                self.store[keys[n]] = d
                if self.folder is not None:
                    tmp = self.folder / f"{keys[n]}.tmp.npz"
                    np.savez(tmp, xyxy=d.xyxy, scores=d.scores, labels=d.labels)
                    os.replace(tmp, self.folder / f"{keys[n]}.npz")
        return out  # type: ignore[return-value]


# ----------------------------------------------------------------------------------------------
# one panorama
# ----------------------------------------------------------------------------------------------
@dataclass
class Pano:
    """Everything needed to score merges on one panorama (what ``--dump`` saves)."""

    name: str
    photos: list[str]
    width: int
    height: int
    bounds: np.ndarray  # (K + 1,) photo x bounds
    ref: np.ndarray  # (M, 4) whole-photo boxes, panorama frame
    tiles: dict[int, list[Tile]] = field(default_factory=dict)
    dets: dict[int, list[Detections]] = field(default_factory=dict)
    sahi: dict[int, np.ndarray] = field(default_factory=dict)
    #: the threshold the detector served at: ``dets`` also hold the boxes just below it, which
    #: confirm cut views as in the engine (None: a dump from before 2026-12-02, served boxes only)
    score_thr: float | None = None

    def served(self, tile: int) -> list[Detections]:
        thr = self.score_thr
        return self.dets[tile] if thr is None else [d[d.scores >= thr] for d in self.dets[tile]]

    def merge(self, tile: int, spec: MergeSpec) -> Detections:
        """The engine's merge of one tiling at the served threshold: the boxes below it, down to
        ``CONFIRM_BAND`` under it, confirm cut views (:func:`densedet_tile.pipeline.merge_counted`)."""
        from densedet_tile.pipeline import CONFIRM_BAND

        thr = self.score_thr
        below = None if thr is None else [d[(d.scores < thr) & (d.scores >= thr - CONFIRM_BAND - 1e-9)]
                                          for d in self.dets[tile]]
        return merge_tiles(self.tiles[tile], self.served(tile), spec, confirmers=below)

    def bands(self, half: float) -> np.ndarray:
        inner = self.bounds[1:-1].astype(np.float64)
        return np.stack([inner - half, inner + half], axis=1) if inner.size else np.zeros((0, 2))


def _sahi_slices_match(w: int, h: int, tile: int, ratio: float, tiles: Sequence[Tile]) -> bool:
    from sahi.slicing import get_slice_bboxes

    theirs = sorted(tuple(int(v) for v in b) for b in get_slice_bboxes(
        h, w, tile, tile, overlap_height_ratio=ratio, overlap_width_ratio=ratio))
    return theirs == sorted((t.x, t.y, t.x2, t.y2) for t in tiles)


def run_pano(name: str, paths: Sequence[Path], args: argparse.Namespace, base: Any, store: dict) -> Pano:
    import densedet_tile as dt
    from densedet_tile.pipeline import plan, predict_tiles
    from densedet_tile.tiler.readers import open_image
    from densedet_tile.types import RunSpec, TileSpec

    from bench_e2e import _sahi_confidence, _sahi_model_class
    from sahi.predict import get_sliced_prediction

    photos = [load_photo(p, args.height) for p in paths]
    pano, bounds = stitch(photos)
    H, W = pano.shape[:2]
    out = Pano(name, [p.name for p in paths], W, H, bounds, np.zeros((0, 4)))
    tag = f"{args.detector}|thr={getattr(base, 'score_thr', None)}"
    cache = args.cache
    refs = []
    for k, ph in enumerate(photos):
        side = max(ph.shape[:2])
        det = CachedDetector(base, round(side * args.scale), store, cache, tag)
        res = dt.detect_image(ph, det, tiling=TileSpec(tile=side, overlap=0.0), merge=MergeSpec(mode="none"),
                              run=RunSpec(input_size=det.input_size, device=args.device, batch_size=1))
        assert res.num_tiles == 1
        refs.append(res.detections.xyxy + np.array([bounds[k], 0, bounds[k], 0], np.float32))
    out.ref = np.concatenate(refs).astype(np.float64)
    model_cls = _sahi_model_class()
    for tile in args.tiles:
        spec = TileSpec(tile=tile, overlap=args.overlap)
        det = CachedDetector(base, round(tile * args.scale), store, cache, tag)
        with open_image(pano) as src:
            tiles = plan(src, spec)
            preds = predict_tiles(src, tiles, det, RunSpec(input_size=det.input_size, device=args.device,
                                                           batch_size=1))
        out.tiles[tile], out.dets[tile], out.score_thr = list(tiles), list(preds.dets), preds.run.score_thr
        # SAHI's overlap in px is int(ratio * tile); ours is round(overlap * tile).
        ratio = spec.overlap_px / tile
        if not _sahi_slices_match(W, H, tile, ratio, tiles):
            raise SystemExit(f"bench_real_seams: SAHI's slices differ from our tiles at tile {tile}")
        model = model_cls(model=det, confidence_threshold=_sahi_confidence(det), device="cpu")
        res = get_sliced_prediction(pano, model, slice_height=tile, slice_width=tile, overlap_height_ratio=ratio,
                                    overlap_width_ratio=ratio, verbose=0, force_postprocess_type=True,
                                    **SAHI_SETTINGS)
        out.sahi[tile] = np.array([p.bbox.to_xyxy() for p in res.object_prediction_list],
                                  np.float64).reshape(-1, 4)
        print(f"#   {name} tile {tile}: {len(tiles)} tiles, detector {det.misses} run / {det.hits} cached",
              file=sys.stderr, flush=True)
    return out


def save_pano(p: Pano, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {"bounds": p.bounds, "ref": p.ref}
    for t in p.tiles:
        arrays[f"tiles_{t}"] = np.array([(x.x, x.y, x.w, x.h, *x.interior) for x in p.tiles[t]], np.int64)
        counts = np.array([len(d) for d in p.dets[t]], np.int64)
        arrays[f"counts_{t}"] = counts
        arrays[f"xyxy_{t}"] = np.concatenate([d.xyxy for d in p.dets[t]]).reshape(-1, 4)
        arrays[f"scores_{t}"] = np.concatenate([d.scores for d in p.dets[t]])
        arrays[f"labels_{t}"] = np.concatenate([d.labels for d in p.dets[t]])
        arrays[f"sahi_{t}"] = p.sahi[t]
    np.savez_compressed(folder / f"{p.name}.npz", **arrays)
    (folder / f"{p.name}.json").write_text(json.dumps({"name": p.name, "photos": p.photos, "width": p.width,
                                                       "height": p.height, "tiles": sorted(p.tiles),
                                                       "score_thr": p.score_thr}))


def load_pano(path: Path) -> Pano:
    meta = json.loads(path.with_suffix(".json").read_text())
    z = np.load(path)
    p = Pano(meta["name"], meta["photos"], meta["width"], meta["height"], z["bounds"], z["ref"],
             score_thr=meta.get("score_thr"))
    for t in meta["tiles"]:
        rows = z[f"tiles_{t}"]
        p.tiles[t] = [Tile(x=int(r[0]), y=int(r[1]), w=int(r[2]), h=int(r[3]), interior_left=bool(r[4]),
                           interior_top=bool(r[5]), interior_right=bool(r[6]), interior_bottom=bool(r[7]), index=k)
                      for k, r in enumerate(rows)]
        cuts = np.cumsum(z[f"counts_{t}"])[:-1]
        p.dets[t] = [Detections(a, b, c) for a, b, c in zip(np.split(z[f"xyxy_{t}"], cuts),
                                                            np.split(z[f"scores_{t}"], cuts),
                                                            np.split(z[f"labels_{t}"], cuts))]
        p.sahi[t] = z[f"sahi_{t}"]
    return p


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def evaluate(panos: Sequence[Pano], band: float, merge: MergeSpec | None = None, holdout: int = 0) -> dict[str, Any]:
    """Summed counts per (method, tile, IoU), the same over panoramas ``holdout`` and later
    (``held``), per-panorama F1 and the merge seconds of ours."""
    merge = merge or MergeSpec()
    tiles = sorted({t for p in panos for t in p.tiles})
    res: dict[str, Any] = {"tiles": tiles, "counts": {}, "held": {}, "merge_s": {}, "per_pano": []}
    for t in tiles:
        tot = {("ours", thr): {} for thr in IOUS} | {("sahi", thr): {} for thr in IOUS}
        held: dict[str, dict[str, int]] = {}
        secs = 0.0
        for k, p in enumerate(panos):
            t0 = time.perf_counter()
            ours = p.merge(t, merge).xyxy.astype(np.float64)
            secs += time.perf_counter() - t0
            bands = p.bands(band)
            row = {"pano": p.name, "tile": t}
            for meth, boxes in (("ours", ours), ("sahi", p.sahi[t])):
                for thr in IOUS:
                    c = score(boxes, p.ref, bands, thr)
                    tot[(meth, thr)] = add(tot[(meth, thr)], c)
                    if k >= holdout:
                        held[f"{meth}@{thr}"] = add(held.get(f"{meth}@{thr}", {}), c)
                    row[f"{meth}@{thr}"] = round(f1(c), 4)
            res["per_pano"].append(row)
        res["counts"][t] = {f"{m}@{thr}": c for (m, thr), c in tot.items()}
        res["held"][t] = held
        res["merge_s"][t] = secs
    return res


def ablation_specs() -> dict[str, MergeSpec]:
    """Merge variants of the ablation table: what each part of the issue-12 merge adds."""
    return {
        "merge (default)": MergeSpec(),
        "without containment": MergeSpec(contain=None),
        "without confirmation": MergeSpec(confirm=False),
        "fixed tolerances (adaptive_tol=False)": MergeSpec(adaptive_tol=False),
        "previous merge (all three off)": MergeSpec(adaptive_tol=False, contain=None, confirm=False),
    }


def ablation(panos: Sequence[Pano], band: float) -> list[str]:
    """F1 of each :func:`ablation_specs` variant (rows) at each tile (columns), summed over panoramas."""
    from densedet_tile.merge import merge_tolerances

    tiles = sorted({t for p in panos for t in p.tiles})
    lines = ["| merge | " + " | ".join(f"{t}: F1@0.5 / F1@0.75" for t in tiles) + " |",
             "|---|" + "---|" * len(tiles)]
    for name, spec in ablation_specs().items():
        cells = []
        for t in tiles:
            tot: dict[float, dict[str, int]] = {thr: {} for thr in IOUS}
            for p in panos:
                boxes = p.merge(t, spec).xyxy.astype(np.float64)
                for thr in IOUS:
                    tot[thr] = add(tot[thr], score(boxes, p.ref, p.bands(band), thr))
            cells.append(f"{f1(tot[0.5]):.4f} / {f1(tot[0.75]):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    noise = []
    for t in tiles:
        tol = [merge_tolerances(p.tiles[t], p.served(t)) for p in panos]
        m = np.array([x.measured for x in tol if x.pairs])
        noise.append(f"tile {t}: measured s {np.min(m):.3f}-{np.max(m):.3f} (median {np.median(m):.3f}) over "
                     f"{min(x.pairs for x in tol)}-{max(x.pairs for x in tol)} pairs of whole views per panorama"
                     if m.size else f"tile {t}: no pairs measured")
    return lines + ["", "View-to-view disagreement measured by the merge (80th percentile of |side difference| / "
                    "box size between two whole views of one product from two tiles): " + "; ".join(noise) + "."]


def to_markdown(res: dict[str, Any], panos: Sequence[Pano], args: argparse.Namespace, command: str) -> str:
    n_ref = sum(len(p.ref) for p in panos)
    sizes = sorted({(p.width, p.height) for p in panos})
    lines = [
        "## Seams with a real detector: tiled panoramas against whole photos (issue 12)",
        "",
        f"- machine: {machine_line()}",
        f"- date: {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- command: `{command}`",
        f"- {len(panos)} panoramas of {sum(len(p.photos) for p in panos)} photos from `real-shelves` (file order, "
        f"{args.per_pano} side by side, height {panos[0].height if panos else args.height} px; sizes "
        f"{', '.join(f'{w}x{h}' for w, h in sizes[:3])}{'...' if len(sizes) > 3 else ''}); "
        f"{n_ref} reference boxes.",
        f"- detector `{args.detector}` at scale {args.scale} everywhere (input size = tile x {args.scale}; "
        "reference = each photo whole as one tile at the same scale); overlap "
        f"{args.overlap}; SAHI {SAHI_SETTINGS['postprocess_type']} / {SAHI_SETTINGS['postprocess_match_metric']} "
        f"{SAHI_SETTINGS['postprocess_match_threshold']}, no full-image pass, same detector, same slices.",
        f"- F1 of one-to-one IoU matching against the whole-photo boxes, summed over panoramas; nothing scored "
        f"within {args.seam_band:g} px of a stitching seam. FP split: dup = IoU >= 0.5 with a reference box "
        "matched by another box; frag = at least half inside a reference box.",
        "",
        "| tile | ours F1@0.5 | ours F1@0.75 | SAHI F1@0.5 | SAHI F1@0.75 | ours TP/FP/FN @0.5 (dup, frag) | "
        "SAHI TP/FP/FN @0.5 (dup, frag) | ours merge s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in res["tiles"]:
        c = res["counts"][t]
        cell = lambda m: f"{c[m]['tp']}/{c[m]['fp']}/{c[m]['fn']} ({c[m]['dup']}, {c[m]['frag']})"  # noqa: E731
        o5, o7, s5, s7 = (f1(c[k]) for k in ("ours@0.5", "ours@0.75", "sahi@0.5", "sahi@0.75"))
        b = lambda x, y: f"**{x:.4f}**" if x >= y else f"{x:.4f}"  # noqa: E731
        lines.append(f"| {t} | {b(o5, s5)} | {b(o7, s7)} | {b(s5, o5)} | {b(s7, o7)} | {cell('ours@0.5')} | "
                     f"{cell('sahi@0.5')} | {res['merge_s'][t]:.3f} |")
    if args.holdout and 0 < args.holdout < len(panos):
        lines += ["", f"Panoramas {args.holdout} and later only (the merge's thresholds were chosen looking at "
                  f"panoramas 0-{args.holdout - 1}): summed F1 below.", "",
                  "| tile | ours F1@0.5 | ours F1@0.75 | SAHI F1@0.5 | SAHI F1@0.75 |", "|---|---|---|---|---|"]
        for t in res["tiles"]:
            c = res["held"][t]
            lines.append(f"| {t} | {f1(c['ours@0.5']):.4f} | {f1(c['ours@0.75']):.4f} | {f1(c['sahi@0.5']):.4f} | "
                         f"{f1(c['sahi@0.75']):.4f} |")
    if args.ablation:
        lines += ["", "What each part of the merge adds (same boxes, merge only):", "", *ablation(panos, args.seam_band)]
    lines += ["", "Per panorama (F1):", "",
              "| panorama | photos | tile | ours @0.5 | ours @0.75 | SAHI @0.5 | SAHI @0.75 |",
              "|---|---|---|---|---|---|---|"]
    names = {p.name: p for p in panos}
    for r in res["per_pano"]:
        lines.append(f"| {r['pano']} | {', '.join(Path(x).stem for x in names[r['pano']].photos)} | {r['tile']} | "
                     f"{r['ours@0.5']:.4f} | {r['ours@0.75']:.4f} | {r['sahi@0.5']:.4f} | {r['sahi@0.75']:.4f} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="folder of real shelf photos (*.jpg)")
    ap.add_argument("--per-pano", type=int, default=4, help="photos side by side in one panorama")
    ap.add_argument("--panoramas", type=int, default=None, help="only the first N panoramas (default: all)")
    ap.add_argument("--height", type=int, default=3264, help="photos are resized to this height")
    ap.add_argument("--scale", type=float, default=0.5, help="model input pixels per photo pixel, everywhere")
    ap.add_argument("--tiles", type=int, nargs="+", default=[1024, 1280, 1632])
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--seam-band", type=float, default=128.0,
                    help="px either side of a stitching seam left out of the scoring")
    ap.add_argument("--detector", default="default", help="a load_detector name")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "densedet_tile" / "bench_real_seams",
                    help="on-disk cache of the detector's outputs by input hash ('' for none)")
    ap.add_argument("--dump", type=Path, default=None, help="save each panorama's raw boxes here")
    ap.add_argument("--from-dump", type=Path, default=None, help="rescore the merge from a --dump folder")
    ap.add_argument("--out", type=Path, default=None,
                    help="also write the page here (e.g. benchmarks/real_seams.md)")
    ap.add_argument("--json", type=Path, default=None, help="also write the summed counts here")
    ap.add_argument("--holdout", type=int, default=3,
                    help="also sum panoramas from this index on (the merge was tuned looking at the first 3; 0: off)")
    ap.add_argument("--no-ablation", dest="ablation", action="store_false",
                    help="skip the table of merge variants (merge on/off parts)")
    a = ap.parse_args(argv)
    if a.cache is not None and str(a.cache) in ("", "."):
        a.cache = None
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python " + " ".join(["scripts/bench_real_seams.py", *(sys.argv[1:] if argv is None else argv)])
    if args.from_dump is not None:
        files = sorted(args.from_dump.glob("*.npz"))
        if not files:
            print(f"bench_real_seams: no dumped panoramas in {args.from_dump}", file=sys.stderr)
            return 2
        panos = [load_pano(f) for f in files][: args.panoramas]
    else:
        photos = list_photos(args.photos) if args.photos.is_dir() else []
        if len(photos) < 2:
            print(f"bench_real_seams: the real shelf photos are not there ({args.photos}: "
                  f"{len(photos)} *.jpg found, at least 2 needed); nothing measured. Pass --photos DIR.",
                  file=sys.stderr)
            return 2
        from densedet_tile.detector.registry import load_detector

        if args.cache is not None:
            args.cache.mkdir(parents=True, exist_ok=True)
        base = load_detector(args.detector, device=args.device)
        groups = group_photos(photos, args.per_pano)[: args.panoramas]
        store: dict = {}
        panos = []
        for k, g in enumerate(groups):
            t0 = time.perf_counter()
            p = run_pano(f"pano{k:02d}", g, args, base, store)
            panos.append(p)
            if args.dump is not None:
                save_pano(p, args.dump)
            print(f"# {p.name} ({p.width}x{p.height}, {len(p.ref)} reference boxes): "
                  f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
            store.clear()  # tiles never repeat across panoramas
    res = evaluate(panos, args.seam_band, holdout=args.holdout)
    md = to_markdown(res, panos, args, command)
    save_page(args.out, "# " + md[3:] if md.startswith("## ") else md)
    if args.json is not None:
        args.json.write_text(json.dumps({str(t): v for t, v in res["counts"].items()}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
