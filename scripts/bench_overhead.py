#!/usr/bin/env python
"""Engine overhead: the share of ``densedet_tile.detect`` wall time that is not ``detector.predict``.

For each image (a ~3000 px shelf photo and a shelf panorama, both synthetic JPEGs written to disk
first) the default model runs through ``detect_image`` at default settings (tile 1280, overlap
0.2, batch per device, merge "wbf"). The detector is wrapped in a thin proxy that clocks every
``predict`` call from outside the engine, so

    overhead = (wall of detect_image - time inside detector.predict) / wall

counts reading/decoding, tiling, resizing tiles to the model size, mapping boxes back, merging
and Python glue; only the part of reading that the prefetch thread does *not* hide behind
inference shows up. The engine's own stage timings (``read_s, resize_s, predict_s, merge_s``)
are listed as well, and the time for Pillow to decode the same JPEG (``Image.open().load()`` and
to a numpy array) gives a yardstick: "the engine costs N decodes of the file".

Runs share one process (model loaded once, one warm-up call), repeats alternate between images,
and medians are reported.

Examples::

    python scripts/bench_overhead.py --repeats 3 --append-md benchmarks/overhead.md
    python scripts/bench_overhead.py --quick --detector tests/fakes.py:make_blob  # smoke test
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import machine_line, publish  # noqa: E402


class TimedDetector:
    """Forwards ``predict`` to a detector and adds up the seconds spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.calls = 0
        self.tiles = 0
        self.record: list[Any] | None = None  # set to a list to keep every result, in call order
        for attr in ("input_size", "name", "class_names"):
            if hasattr(inner, attr):
                setattr(self, attr, getattr(inner, attr))

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Any]:
        t0 = time.perf_counter()
        try:
            out = self.inner.predict(tiles)
            if self.record is not None:
                self.record.extend(out)
            return out
        finally:
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            self.tiles += len(tiles)

    def reset(self) -> None:
        self.seconds, self.calls, self.tiles = 0.0, 0, 0


class ReplayDetector:
    """Returns recorded per-tile results in order, at no inference cost.

    Fed the results a real detector gave on the same image (the engine visits tiles in a fixed
    order), it leaves only the engine's own work in the wall time: the floor that remains when
    inference is fast (a GPU), with the real number of boxes to merge.
    """

    def __init__(self, results: Sequence[Any], input_size: int | None) -> None:
        self.results = list(results)
        self.input_size = input_size
        self.pos = 0

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Any]:
        out = self.results[self.pos : self.pos + len(tiles)]
        if len(out) != len(tiles):
            raise RuntimeError("ReplayDetector: more tiles than recorded results")
        self.pos += len(tiles)
        return out


def build_detector(spec: str) -> Any:
    """``default`` or any other :func:`~densedet_tile.detector.registry.load_detector` name.

    (The painted-id detector of :mod:`densedet_tile.synth.painted_aisles` is no use here: on a
    natural JPEG nearly every pixel run is a "product".)
    """
    from densedet_tile.detector.registry import load_detector

    return load_detector(spec, device="cpu")


def make_shelf_jpeg(path: Path, width: int, height: int, seed: int) -> int:
    """Write a synthetic shelf of ``width`` x ``height`` as JPEG q92; return its product count.

    Products are as tall as in a SKU-110K phone photo (``PHOTO_PRODUCT_HEIGHT``, 260 px) in both
    the photo and the panorama (an aisle swept at phone resolution).
    """
    from PIL import Image

    from densedet_tile.synth.shelves import PHOTO_PRODUCT_HEIGHT, render_shelf

    ph = PHOTO_PRODUCT_HEIGHT
    img, boxes = render_shelf(np.random.default_rng(seed), width=width, height=height,
                              product_height=ph, jpeg=False)
    Image.fromarray(img).save(path, quality=92)
    return int(len(boxes))


def decode_seconds(path: Path, repeats: int) -> tuple[float, float]:
    """Median seconds for Pillow to decode ``path`` (``load()``), and to reach an RGB numpy array."""
    from PIL import Image

    load, arr = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with Image.open(path) as im:
            im.load()
            t1 = time.perf_counter()
            np.asarray(im.convert("RGB"))
        t2 = time.perf_counter()
        load.append(t1 - t0)
        arr.append(t2 - t0)
    return float(np.median(load)), float(np.median(arr))


def measure(images: list[tuple[str, Path, int]], detector_spec: str, repeats: int,
            tile: int, overlap: float) -> dict[str, Any]:
    import torch

    import densedet_tile as dt

    det = TimedDetector(build_detector(detector_spec))
    side = det.input_size if getattr(det, "input_size", None) else tile
    det.predict([np.full((side, side, 3), 127, np.uint8)])  # warm-up, not counted
    rows: dict[str, list[dict[str, Any]]] = {label: [] for label, _, _ in images}
    for rep in range(repeats):
        for label, path, _n in images:
            det.reset()
            t0 = time.perf_counter()
            res = dt.detect_image(str(path), det, tile=tile, overlap=overlap, device="cpu")
            wall = time.perf_counter() - t0
            run = {"wall_s": wall, "predict_s": det.seconds, "calls": det.calls, "tiles": det.tiles,
                   "boxes": len(res.detections), "num_tiles": res.num_tiles,
                   "size": f"{res.width}x{res.height}", "engine": res.timings,
                   "overhead_s": wall - det.seconds, "overhead_share": (wall - det.seconds) / wall}
            rows[label].append(run)
            print(f"# {label} rep {rep}: wall {wall:.2f} s, predict {det.seconds:.2f} s, overhead "
                  f"{100 * run['overhead_share']:.1f}%, engine {res.timings}", file=sys.stderr)
    # Replay: the same image through the engine with the recorded detector output, predict ~ 0.
    replay: dict[str, list[float]] = {label: [] for label, _, _ in images}
    for label, path, _n in images:
        det.reset()
        det.record = []
        dt.detect_image(str(path), det, tile=tile, overlap=overlap, device="cpu")
        recorded, det.record = det.record, None
        for _ in range(repeats):
            rep_det = ReplayDetector(recorded, getattr(det, "input_size", None))
            t0 = time.perf_counter()
            dt.detect_image(str(path), rep_det, tile=tile, overlap=overlap, device="cpu")
            replay[label].append(time.perf_counter() - t0)
    out: dict[str, Any] = {"detector": detector_spec, "torch_threads": torch.get_num_threads(), "images": {}}
    for label, path, n in images:
        dec_load, dec_arr = decode_seconds(path, max(3, repeats))
        rs = rows[label]
        med = {k: float(np.median([r[k] for r in rs])) for k in ("wall_s", "predict_s", "overhead_s", "overhead_share")}
        eng = {k: float(np.median([r["engine"][k] for r in rs])) for k in rs[0]["engine"]}
        out["images"][label] = {"path": str(path), "products": n, "size": rs[0]["size"],
                                "num_tiles": rs[0]["num_tiles"], "boxes": rs[0]["boxes"],
                                "runs": rs, "median": med, "engine_median": eng,
                                "replay_s": replay[label], "replay_median_s": float(np.median(replay[label])),
                                "decode_load_s": dec_load, "decode_array_s": dec_arr}
    return out


def to_markdown(report: dict[str, Any], command: str) -> str:
    lines = [
        f"### Engine overhead, detector `{report['detector']}`, tile {report['tile']}, overlap {report['overlap']}",
        "",
        f"- machine: {machine_line()}, torch threads {report['torch_threads']}",
        f"- date: {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- command: `{command}`",
        f"- {report['repeats']} run(s) per image in one process after a warm-up call; medians; "
        "predict = seconds inside detector.predict clocked by a proxy outside the engine; "
        "engine alone = the same image with the detector's recorded output replayed at no cost",
        "",
        "| image | tiles | boxes | wall s | predict s | overhead s | overhead share | engine alone s (replayed detector) | JPEG decode s (load / to array) | overhead in decodes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in report["images"].items():
        m = r["median"]
        lines.append(
            f"| {label} {r['size']} ({r['products']} products) | {r['num_tiles']} | {r['boxes']} | {m['wall_s']:.2f} | "
            f"{m['predict_s']:.2f} | {m['overhead_s']:.3f} | {100 * m['overhead_share']:.1f}% | {r['replay_median_s']:.3f} | "
            f"{r['decode_load_s']:.3f} / {r['decode_array_s']:.3f} | {m['overhead_s'] / r['decode_array_s']:.2f} |"
        )
    lines += ["", "Engine's own stage timings (median s; read overlaps predict in a prefetch thread):", ""]
    for label, r in report["images"].items():
        lines.append(f"- {label}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["engine_median"].items()))
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--detector", default="default")
    p.add_argument("--photo", default="2448x3264", help="WxH of the photo")
    p.add_argument("--panorama", default="16000x2400", help="WxH of the panorama")
    p.add_argument("--tile", type=int, default=1280)
    p.add_argument("--overlap", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--append-md", default=None)
    p.add_argument("--quick", action="store_true", help="small images, one run: a smoke test")
    a = p.parse_args(argv)
    if a.quick:
        a.photo, a.panorama, a.repeats = "900x1200", "3000x700", 1
    return a


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"bench_overhead: expected WxH such as 2448x3264, got {text!r}") from None
    return w, h


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="bench_overhead_"))
    work.mkdir(parents=True, exist_ok=True)
    images = []
    for label, spec in (("photo", args.photo), ("panorama", args.panorama)):
        w, h = _size(spec)
        path = work / f"{label}_{w}x{h}_{args.seed}.jpg"
        t0 = time.perf_counter()
        n = make_shelf_jpeg(path, w, h, args.seed)
        print(f"# {label}: {w}x{h}, {n} products, made in {time.perf_counter() - t0:.1f} s -> {path}", file=sys.stderr)
        images.append((label, path, n))
    report = measure(images, args.detector, args.repeats, args.tile, args.overlap)
    report.update(tile=args.tile, overlap=args.overlap, repeats=args.repeats)
    publish(report, to_markdown, script=__file__, argv=argv, json_path=args.json, append_md=args.append_md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
