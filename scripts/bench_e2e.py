#!/usr/bin/env python
"""End-to-end benchmark: ``densedet_tile.detect`` against SAHI's ``get_sliced_prediction``.

Both sides run the SAME detector object type on the SAME image file with the same tile size and
overlap. SAHI gets the detector wrapped as a ``sahi.models.base.DetectionModel`` (see
:class:`DensedetSahiModel`), which resizes each slice to the detector's ``input_size`` exactly as
our engine does, so the detector sees identical pixels on both sides.

Every (method, repeat) runs in its own fresh Python subprocess, so wall time and peak RSS
(``VmHWM`` of /proc/self/status on Linux) belong to that method alone. Methods alternate
within one run, so ratios hold on a noisy shared machine. Wall time starts after imports, model
loading and an untimed warm-up run of the same method on a two-tile crop of the scene (so lazy
imports, torch's first call and SAHI's numba JIT stay out), and covers reading the file, tiling,
inference and merging.

Scenes (written to disk first, then read back by every method):

* ``aisle``: a painted aisle panorama from :mod:`densedet_tile.synth.painted_aisles` (PNG:
  painted product ids do not survive JPEG), usually with ``--detector painted``.
* ``shelf``: a shelf photo from :func:`densedet_tile.synth.shelves.render_shelf` (JPEG q92),
  usually with ``--detector default``.

Accuracy is scored against the generator's boxes: recall at IoU 0.5 and 0.9 (a ground-truth box
counts when some prediction overlaps it at that IoU), duplicates (extra predictions at IoU >= 0.5
on an already-found box) and unmatched predictions (IoU < 0.5 with every box: fragments,
inflated merges, false positives). Candidate pairs come from a shapely STRtree, never an N x M
matrix.

Examples::

    python scripts/bench_e2e.py --scene aisle --detector painted --width 20000 --height 3000 \
        --products 600 --repeats 2 --append-md benchmarks/e2e.md
    python scripts/bench_e2e.py --scene shelf --detector default --append-md benchmarks/e2e.md
    python scripts/bench_e2e.py --quick          # seconds; used by tests/test_bench_scripts.py
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine_line, publish  # noqa: E402

#: SAHI settings compared. ``sahi-default`` is get_sliced_prediction's own defaults (which
#: include a full-image pass, ``perform_standard_pred=True``, and GREEDYNMM matched by
#: intersection over the smaller box at 0.5). The others drop the full-image pass and try the
#: postprocesses that suit packed shelves better.
SAHI_VARIANTS: dict[str, dict[str, Any]] = {
    "sahi-default": dict(perform_standard_pred=True, postprocess_type="GREEDYNMM",
                         postprocess_match_metric="IOS", postprocess_match_threshold=0.5),
    "sahi-greedynmm": dict(perform_standard_pred=False, postprocess_type="GREEDYNMM",
                           postprocess_match_metric="IOS", postprocess_match_threshold=0.5),
    "sahi-nms-iou": dict(perform_standard_pred=False, postprocess_type="NMS",
                         postprocess_match_metric="IOU", postprocess_match_threshold=0.5),
    "sahi-nms-ios": dict(perform_standard_pred=False, postprocess_type="NMS",
                         postprocess_match_metric="IOS", postprocess_match_threshold=0.5),
    "sahi-nmm-ios": dict(perform_standard_pred=False, postprocess_type="NMM",
                         postprocess_match_metric="IOS", postprocess_match_threshold=0.5),
}
METHODS: tuple[str, ...] = ("ours", *SAHI_VARIANTS)


# ----------------------------------------------------------------------------------------------
# accuracy against known boxes
# ----------------------------------------------------------------------------------------------
def _pairs(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersecting (pred index, gt index) pairs and their IoU, found with an STRtree."""
    import shapely

    if len(pred) == 0 or len(gt) == 0:
        e = np.zeros(0, np.int64)
        return e, e, np.zeros(0, np.float64)
    p = pred.astype(np.float64)
    g = gt.astype(np.float64)
    tree = shapely.STRtree(shapely.box(g[:, 0], g[:, 1], g[:, 2], g[:, 3]))
    pi, gi = tree.query(shapely.box(p[:, 0], p[:, 1], p[:, 2], p[:, 3]), predicate="intersects")
    a, b = p[pi], g[gi]
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return pi.astype(np.int64), gi.astype(np.int64), iou


def match_stats(pred_xyxy: np.ndarray, gt_xyxy: np.ndarray) -> dict[str, float | int]:
    """Score global predictions against known boxes.

    Args:
        pred_xyxy: float (N, 4) predicted boxes, image pixels xyxy.
        gt_xyxy: float (M, 4) true boxes in the same frame.

    Returns:
        ``n_pred``, ``n_gt``; ``recall50`` / ``recall90``: share of true boxes that some
        prediction overlaps at IoU >= 0.5 / 0.9; ``duplicates``: predictions at IoU >= 0.5 with a
        true box beyond the first one on that box; ``unmatched``: predictions at IoU < 0.5 with
        every true box. (At IoU >= 0.5 a prediction can match at most one of several disjoint
        true boxes, so these counts do not double count on non-overlapping ground truth.)
    """
    pred = np.asarray(pred_xyxy, np.float64).reshape(-1, 4)
    gt = np.asarray(gt_xyxy, np.float64).reshape(-1, 4)
    pi, gi, iou = _pairs(pred, gt)
    best_gt = np.zeros(len(gt))
    np.maximum.at(best_gt, gi, iou)
    best_pred = np.zeros(len(pred))
    np.maximum.at(best_pred, pi, iou)
    hits = np.bincount(gi[iou >= 0.5], minlength=len(gt))
    n_gt = len(gt)
    return {
        "n_pred": int(len(pred)),
        "n_gt": int(n_gt),
        "recall50": float(np.mean(best_gt >= 0.5)) if n_gt else float("nan"),
        "recall90": float(np.mean(best_gt >= 0.9)) if n_gt else float("nan"),
        "duplicates": int(np.clip(hits - 1, 0, None).sum()),
        "unmatched": int(np.count_nonzero(best_pred < 0.5)),
    }


# ----------------------------------------------------------------------------------------------
# detectors and the SAHI wrapper
# ----------------------------------------------------------------------------------------------
def build_detector(spec: str, *, seed: int = 0) -> Any:
    """``painted`` (the synthetic painted-id reader), ``default`` or any ``load_detector`` name."""
    if spec == "painted":
        from densedet_tile.synth.painted_aisles import PaintedDetector

        return PaintedDetector(seed=seed)
    from densedet_tile.detector.registry import load_detector

    return load_detector(spec, device="cpu")


def _sahi_model_class() -> type:
    """Build the SAHI wrapper class lazily so importing this module does not need SAHI."""
    from sahi.models.base import DetectionModel
    from sahi.prediction import ObjectPrediction

    from densedet_tile.detector.base import input_size_of
    from densedet_tile.tiler.resize import resize_to

    class DensedetSahiModel(DetectionModel):
        """A densedet ``Detector`` as a SAHI model: one slice per ``perform_inference`` call.

        The slice is resized to the detector's ``input_size`` (when it has one) with the same
        function our engine uses, and boxes are mapped back to slice pixels and clipped.
        """

        def load_model(self) -> None:  # the detector always comes in through ``model=``
            raise ValueError("DensedetSahiModel needs model=<a densedet Detector>")

        def set_model(self, model: Any, **kwargs: Any) -> None:
            self.model = model
            self._input_size = input_size_of(model)
            if self.category_mapping is None:
                names = getattr(model, "class_names", None) or ("product",)
                self.category_mapping = {str(i): str(n) for i, n in enumerate(names)}

        def perform_inference(self, image: np.ndarray) -> None:
            self.calls = getattr(self, "calls", 0) + 1
            h, w = image.shape[:2]
            scale = 1.0
            if self._input_size is not None and max(h, w) != self._input_size:
                image, scale = resize_to(np.ascontiguousarray(image), self._input_size)
            det = self.model.predict([image])[0]
            xyxy = det.xyxy / np.float32(scale) if scale != 1.0 else det.xyxy
            xyxy = np.clip(xyxy, 0.0, np.array([w, h, w, h], np.float32))
            self._original_predictions = (xyxy, det.scores, det.labels)

        def _create_object_prediction_list_from_original_predictions(
            self,
            shift_amount_list: list[list[int | float]] | None = [[0, 0]],
            full_shape_list: list[list[int | float]] | None = None,
        ) -> None:
            xyxy, scores, labels = self._original_predictions
            # get_prediction (the full-image pass) passes flat [x, y] / [h, w] lists
            if shift_amount_list and not isinstance(shift_amount_list[0], (list, tuple)):
                shift_amount_list = [shift_amount_list]  # type: ignore[list-item]
            if full_shape_list and not isinstance(full_shape_list[0], (list, tuple)):
                full_shape_list = [full_shape_list]  # type: ignore[list-item]
            shift = shift_amount_list[0] if shift_amount_list else [0, 0]
            full = None if full_shape_list is None else full_shape_list[0]
            keep = (scores > self.confidence_threshold) & (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            preds = [
                ObjectPrediction(
                    bbox=[float(v) for v in b],
                    category_id=int(c),
                    category_name=self.category_mapping.get(str(int(c)), str(int(c))),
                    score=float(s),
                    shift_amount=list(shift),
                    full_shape=full,
                )
                for b, s, c in zip(xyxy[keep], scores[keep], labels[keep])
            ]
            self._object_prediction_list_per_image = [preds]

    return DensedetSahiModel


def _sahi_confidence(detector: Any) -> float:
    """A SAHI confidence_threshold that keeps every box the detector reports.

    SAHI drops scores <= its threshold, so this sits just under the detector's own ``score_thr``
    (0 when it has none). SAHI would also switch its postprocess to NMS below 0.1 on its own; the
    workers pass ``force_postprocess_type=True`` so that never happens.
    """
    thr = getattr(detector, "score_thr", None)
    return float(thr) - 1e-6 if isinstance(thr, (int, float)) and thr > 0 else 0.0


# ----------------------------------------------------------------------------------------------
# one method in one subprocess
# ----------------------------------------------------------------------------------------------
def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (``VmHWM``, ``VmRSS``) in MB, None where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """Peak RSS of this process so far, in MB.

    On Linux this is ``VmHWM`` of this process's own address space: ``ru_maxrss`` is not
    used there because it carries the parent's high-water mark across fork+exec (the parent
    holds the whole generated panorama, so every worker would report at least that).
    """
    hwm = _status_mb("VmHWM")
    if hwm is not None:
        return hwm
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20  # KiB on Linux, bytes on macOS


def warm_path(image: Path) -> Path:
    """Where :func:`make_scene` puts the small warm-up crop of ``image``."""
    return image.with_name(image.stem + "_warm.png")


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class _TimedPredict:
    """Wraps a detector's ``predict`` to add up the seconds spent inside it."""

    def __init__(self, detector: Any) -> None:
        self.inner, self.seconds = detector.predict, 0.0
        detector.predict = self

    def __call__(self, tiles: Any) -> Any:
        t = time.perf_counter()
        try:
            return self.inner(tiles)
        finally:
            self.seconds += time.perf_counter() - t


def run_worker(method: str, image: Path, result: Path, *, detector_spec: str, tile: int,
               overlap: float, seed: int, cold: bool = False) -> None:
    """Run one method on ``image`` and write boxes, timings and RSS to ``result`` (npz + json).

    ``cold``: no warm-up, and the wall time starts before the method's own imports (our engine's
    pipeline, or SAHI), as a command-line run pays them.
    """
    t_import0 = time.perf_counter()

    detector = build_detector(detector_spec, seed=seed)
    timer = _TimedPredict(detector)
    if cold:
        t0 = time.perf_counter()
        rss_before = _peak_rss_mb()
        cpu0 = _cpu_s()
        setup_s = 0.0
    import densedet_tile as dt
    # Warm-up, untimed: the whole method once on a two-tile crop of the scene, so one-off costs
    # (lazy imports, torch's first call, SAHI's numba JIT for GREEDYNMM) stay out of the timing,
    # as in a long-running service.
    if method != "ours":
        from sahi.predict import get_sliced_prediction

        model = _sahi_model_class()(model=detector, confidence_threshold=_sahi_confidence(detector),
                                    device="cpu")
    if not cold:
        from PIL import Image

        with Image.open(warm_path(image)) as im:
            crop = np.asarray(im.convert("RGB"))
        if method == "ours":
            dt.detect(crop, detector, tile=tile, overlap=overlap, device="cpu")
        else:
            get_sliced_prediction(crop, model, slice_height=tile, slice_width=tile, overlap_height_ratio=overlap,
                                  overlap_width_ratio=overlap, verbose=0, force_postprocess_type=True,
                                  **SAHI_VARIANTS[method])
            model.calls = 0
        del crop
        setup_s = time.perf_counter() - t_import0
        rss_before = _peak_rss_mb()
        cpu0 = _cpu_s()
        timer.seconds = 0.0
        t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if method == "ours":
        res = dt.detect_image(str(image), detector, tile=tile, overlap=overlap, device="cpu")
        xyxy, scores = res.detections.xyxy, res.detections.scores
        extra = {"timings": res.timings, "num_tiles": res.num_tiles}
    else:
        out = get_sliced_prediction(
            str(image), model, slice_height=tile, slice_width=tile, overlap_height_ratio=overlap,
            overlap_width_ratio=overlap, verbose=0, force_postprocess_type=True,
            **SAHI_VARIANTS[method],
        )
        preds = out.object_prediction_list
        xyxy = np.array([p.bbox.to_xyxy() for p in preds], np.float32).reshape(-1, 4)
        scores = np.array([p.score.value for p in preds], np.float32)
        extra = {"timings": {k: round(v, 4) for k, v in out.durations_in_seconds.items()},
                 "num_tiles": model.calls}
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    rss_after = _peak_rss_mb()
    np.savez(result.with_suffix(".npz"), xyxy=xyxy, scores=scores)
    info = {"method": method, "wall_s": wall, "cpu_s": cpu, "setup_s": setup_s, "rss_before_mb": rss_before,
            "peak_rss_mb": rss_after, "predict_s": timer.seconds, "overhead_s": wall - timer.seconds,
            "torch_loaded": "torch" in sys.modules, **extra}
    result.with_suffix(".json").write_text(json.dumps(info))


# ----------------------------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scene:
    path: Path
    gt: np.ndarray  # float32 (M, 4) xyxy
    width: int
    height: int
    describe: str


def make_scene(kind: str, out_dir: Path, *, width: int, height: int, products: int,
               seed: int, tile: int, aisle: dict[str, Any] | None = None) -> Scene:
    """Generate the scene and write it to ``out_dir`` (PNG for ``aisle``, JPEG q92 for ``shelf``),
    plus its top-left ``tile`` x ``2 * tile`` crop as the warm-up image."""
    warm_h, warm_w = min(height, tile), min(width, 2 * tile)
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    if kind == "aisle":
        from densedet_tile.synth.painted_aisles import make_painted_aisle

        img, gt = make_painted_aisle(width, height, n_products=products, seed=seed, **(aisle or {}))
        path = out_dir / f"aisle_{width}x{height}_{seed}.png"
        Image.fromarray(img).save(path, compress_level=1)
        desc = f"painted aisle {width}x{height}, {len(gt)} products, PNG"
    elif kind == "shelf":
        from densedet_tile.synth.shelves import PHOTO_PRODUCT_HEIGHT, render_shelf

        ph = PHOTO_PRODUCT_HEIGHT * max(width, height) / 3264.0
        img, boxes = render_shelf(np.random.default_rng(seed), width=width, height=height,
                                  product_height=ph, jpeg=False)
        gt = boxes
        path = out_dir / f"shelf_{width}x{height}_{seed}.jpg"
        Image.fromarray(img).save(path, quality=92)
        desc = f"synthetic shelf photo {width}x{height}, {len(boxes)} products, JPEG q92"
    else:
        raise ValueError(f"unknown scene {kind!r}: expected aisle or shelf")
    # a (1 x 2 tiles) crop for the workers' untimed warm-up, so they never decode the scene twice
    Image.fromarray(np.ascontiguousarray(img[:warm_h, :warm_w])).save(warm_path(path))
    xyxy = gt.xyxy if hasattr(gt, "xyxy") else np.asarray(gt, np.float32)
    return Scene(path, np.asarray(xyxy, np.float32).reshape(-1, 4), width, height, desc)


# ----------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------
def run_all(args: argparse.Namespace) -> dict[str, Any]:
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"bench_e2e: unknown method {m!r}; choose from {', '.join(METHODS)}")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_e2e_"))
    t0 = time.perf_counter()
    scene = make_scene(args.scene, work, width=args.width, height=args.height,
                       products=args.products, seed=args.seed, tile=args.tile,
                       aisle=dict(small_size=args.small_size, large_size=args.large_size,
                                  large_fraction=args.large_fraction, stack_fraction=args.stack_fraction))
    print(f"# scene: {scene.describe} ({time.perf_counter() - t0:.1f} s to make) -> {scene.path}",
          file=sys.stderr)
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for m in methods:
            res = work / f"{m}_{rep}"
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", m, "--image", str(scene.path),
                   "--result", str(res), "--detector", args.detector, "--tile", str(args.tile),
                   "--overlap", str(args.overlap), "--seed", str(args.seed)] + (["--cold"] if args.cold else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(f"bench_e2e: worker {m} failed:\n{proc.stderr[-4000:]}")
            info = json.loads(res.with_suffix(".json").read_text())
            boxes = np.load(res.with_suffix(".npz"))["xyxy"]
            info.update(match_stats(boxes, scene.gt), repeat=rep)
            runs.append(info)
            print(f"# {m} rep {rep}: {info['wall_s']:.2f} s (engine {info['overhead_s']:.2f} s), peak RSS {info['peak_rss_mb']:.0f} MB, "
                  f"recall50 {info['recall50']:.4f}, recall90 {info['recall90']:.4f}, "
                  f"dups {info['duplicates']}, unmatched {info['unmatched']}", file=sys.stderr)
    return {"scene": scene.describe, "image": str(scene.path), "n_gt": int(len(scene.gt)),
            "detector": args.detector, "tile": args.tile, "overlap": args.overlap, "cold": args.cold, "runs": runs}


def to_markdown(report: dict[str, Any], command: str) -> str:
    runs = report["runs"]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    by = {m: [r for r in runs if r["method"] == m] for m in methods}
    ours = by.get("ours")
    ours_wall = float(np.median([r["wall_s"] for r in ours])) if ours else None
    ours_eng = float(np.median([r["overhead_s"] for r in ours])) if ours else None
    cold = " (cold: imports included, no warm-up)" if report.get("cold") else ""
    lines = [
        f"### {report['scene']}: detector `{report['detector']}`, tile {report['tile']}, overlap {report['overlap']}{cold}",
        "",
        f"- machine: {machine_line()}",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}`",
        f"- {len(runs) // max(1, len(methods))} run(s) per method, each in a fresh subprocess, methods "
        "alternating; wall = median (all runs listed in brackets); CPU = median user+sys seconds of "
        "the timed run (all threads; less sensitive than wall time to other load on the machine); peak RSS = VmHWM of that "
        "process, with the peak before the timed run (imports, model, warm-up) in brackets; "
        "detector calls = tiles (SAHI: slices plus its full-image pass); engine s = wall minus the "
        "seconds inside detector.predict (reading, tiling, resizing, merging and, cold, the imports); "
        "torch = whether torch was loaded in that process",
        "",
        "| method | wall s | vs ours | engine s | ours/their engine | CPU s | detector calls | peak RSS MB (before run) | RSS growth MB | torch | recall@0.5 | recall@0.9 | boxes | duplicates | unmatched |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in methods:
        rs = by[m]
        wall = float(np.median([r["wall_s"] for r in rs]))
        walls = ", ".join(f"{r['wall_s']:.2f}" for r in rs)
        ratio = f"{wall / ours_wall:.2f}x" if ours_wall else "-"
        eng = float(np.median([r["overhead_s"] for r in rs]))
        eng_ratio = f"{ours_eng / eng:.2f}" if ours_eng is not None and eng > 0 else "-"
        cpu = float(np.median([r["cpu_s"] for r in rs]))
        r0 = rs[-1]  # accuracy is deterministic per method; show the last run
        rss = max(r["peak_rss_mb"] for r in rs)
        base = max(r["rss_before_mb"] for r in rs)
        lines.append(
            f"| {m} | {wall:.2f} ({walls}) | {ratio} | {eng:.2f} | {eng_ratio} | {cpu:.2f} | {r0.get('num_tiles', '-')} | {rss:.0f} ({base:.0f}) | {rss - base:.0f} | "
            f"{'yes' if r0.get('torch_loaded') else 'no'} | {r0['recall50']:.4f} | "
            f"{r0['recall90']:.4f} | {r0['n_pred']} / {r0['n_gt']} true | {r0['duplicates']} | {r0['unmatched']} |"
        )
    if ours:
        t = ours[-1].get("timings", {})
        if t:
            lines += ["", "ours, stage timings of the last run (s): "
                      + ", ".join(f"{k} {v}" for k, v in t.items())]
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scene", choices=("aisle", "shelf"), default="aisle")
    p.add_argument("--detector", default=None, help="painted (aisle default), default (shelf default) or a load_detector name")
    p.add_argument("--width", type=int, default=None)
    p.add_argument("--height", type=int, default=None)
    p.add_argument("--products", type=int, default=600, help="aisle only")
    sides = lambda t: tuple(int(v) for v in t.split(","))  # noqa: E731
    p.add_argument("--small-size", type=sides, default=(40, 250), metavar="MIN,MAX",
                   help="aisle only: side range of small products in px (default: 40,250)")
    p.add_argument("--large-size", type=sides, default=(300, 700), metavar="MIN,MAX",
                   help="aisle only: side range of large products in px (default: 300,700)")
    p.add_argument("--large-fraction", type=float, default=0.1, help="aisle only: share of large products (default: 0.1)")
    p.add_argument("--stack-fraction", type=float, default=0.5,
                   help="aisle only: chance of stacking one more small product (default: 0.5)")
    p.add_argument("--tile", type=int, default=1280)
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--methods", default=None, help=f"comma-separated, from: {', '.join(METHODS)} (default: all; --quick: ours,sahi-default)")
    p.add_argument("--work-dir", default=None, help="where the scene and per-run results go (default: a temp dir)")
    p.add_argument("--json", default=None, help="write the full report here")
    p.add_argument("--append-md", default=None, help="append the markdown section to this file")
    p.add_argument("--quick", action="store_true", help="a tiny scene and two methods, for smoke tests")
    p.add_argument("--cold", action="store_true",
                   help="time each method as a fresh command: imports included, no warm-up run")
    # internal: one method in a subprocess
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--image", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.detector is None:
        a.detector = "painted" if a.scene == "aisle" else "default"
    if a.quick:
        a.width = a.width or 4000
        a.height = a.height or 1500
        a.products = 40 if a.scene == "aisle" else a.products
        a.tile = 640
        a.methods = a.methods or "ours,sahi-default"
    a.methods = a.methods or ",".join(METHODS)
    if a.scene == "shelf" and a.detector == "painted":
        p.error("the painted detector reads painted ids: it only makes sense on --scene aisle")
    if a.width is None:
        a.width = 20000 if a.scene == "aisle" else 2448
    if a.height is None:
        a.height = 3000 if a.scene == "aisle" else 3264
    return a


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        run_worker(args.worker, Path(args.image), Path(args.result), detector_spec=args.detector,
                   tile=args.tile, overlap=args.overlap, seed=args.seed, cold=args.cold)
        return 0
    report = run_all(args)
    publish(report, to_markdown, script=__file__, argv=argv, json_path=args.json, append_md=args.append_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
