#!/usr/bin/env python
"""The light install's figures: built-in model tiles/s on ONNX Runtime vs torch, CLI cold start.

    python scripts/bench_light.py speed --threads 2 [--onnx /tmp/int8.onnx ...]
    python scripts/bench_light.py photo --image data/shelves_val/images/shelf_1000_0000.jpg --threads 2
    python scripts/bench_light.py cold --python /tmp/light/bin/python --python "$(command -v python)" \\
        --image examples/shelf.jpg --runs 5

``speed``: 640x640 generated shelf tiles through ``DefaultDetector.predict`` (normalise, network,
decode) and through the runtime alone (network only), each runtime with ``--threads`` CPU
threads, in alternating rounds (so a shared machine's load falls on both alike); reports the
median and the best round as tiles per second, and process CPU seconds per tile. Extra
``--onnx`` files (other export formats) are timed beside the shipped one.

``photo``: one photo through ``dt.detect`` (reading, tiling, both resizes, predict, merge) in
this process after a warm-up run, the runtimes alternating; median and best wall, CPU seconds.
``--split-stacks-too`` adds each runtime with ``split_stacks=False`` (the stack splitter's cost).

``cold``: runs ``densedet-tile IMAGE`` in a fresh process per run under ``/usr/bin/time -v``
for each ``--python`` interpreter (a venv's, or the [all] environment's), a 10x10 image and
each ``--image``; reports median and best wall time, median CPU seconds (user + sys) and the
peak RSS. Every interpreter runs this
tree's code (``PYTHONPATH``); what differs is the packages installed beside it. ``--torch-too`` adds the
same runs with ``--detector-option runtime=torch`` for interpreters that have torch.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from _bench_common import machine_line  # noqa: E402


def _tiles(n: int = 4) -> list[np.ndarray]:
    try:
        from densedet_tile.synth.shelves import training_sample
    except ImportError:
        from densedet_tile.synth.shelves import training_sample
    return [training_sample(np.random.default_rng(31000 + i), size=640, tile=1280)[0] for i in range(n)]


def speed(args: argparse.Namespace) -> dict:
    from densedet_tile.detector.builtin import load_default

    if args.runtimes and "torch" in args.runtimes:
        import torch

        torch.set_num_threads(args.threads)
    dets = {}
    for rt in args.runtimes:
        dets[rt] = load_default(device="cpu", runtime=rt, threads=args.threads)
    for path in args.onnx:
        dets[f"onnxruntime:{Path(path).name}"] = load_default(device="cpu", runtime="onnxruntime", weights=path,
                                                              threads=args.threads)
    tiles = _tiles()
    batch = [np.stack([t]) for t in tiles]
    for d in dets.values():  # warm-up: first-run allocations, lazy kernels
        d.predict([tiles[0]])
        d.runner(batch[0])
    rounds: dict[str, dict[str, list[float]]] = {k: {"predict": [], "network": [], "cpu": []} for k in dets}
    for _ in range(args.rounds):
        for name, d in dets.items():
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(args.per_round):
                d.predict([tiles[i % len(tiles)]])
            rounds[name]["predict"].append((time.perf_counter() - t0) / args.per_round)
            rounds[name]["cpu"].append((time.process_time() - c0) / args.per_round)
            t0 = time.perf_counter()
            for i in range(args.per_round):
                d.runner(batch[i % len(batch)])
            rounds[name]["network"].append((time.perf_counter() - t0) / args.per_round)
    out = {}
    for name, r in rounds.items():
        out[name] = {
            "tiles_per_s_median": round(1 / statistics.median(r["predict"]), 2),
            "tiles_per_s_best": round(1 / min(r["predict"]), 2),
            "network_ms_median": round(1000 * statistics.median(r["network"]), 1),
            "network_ms_best": round(1000 * min(r["network"]), 1),
            "cpu_s_per_tile_median": round(statistics.median(r["cpu"]), 3),
            "info": {k: v for k, v in dets[name].info.items() if k in ("runtime", "precision", "threads")},
        }
    return {"mode": "speed", "threads": args.threads, "rounds": args.rounds, "per_round": args.per_round,
            "results": out}


def photo(args: argparse.Namespace) -> dict:
    """One photo end to end in this process, warm: ``dt.detect`` (read, tile, predict, merge)."""
    import densedet_tile as dt
    from densedet_tile.detector.builtin import load_default

    if "torch" in args.runtimes:
        import torch

        torch.set_num_threads(args.threads)
    dets = {rt: load_default(device="cpu", runtime=rt, threads=args.threads) for rt in args.runtimes}
    if args.split_stacks_too:  # the same runtimes with the stack splitter off, for its cost
        dets.update({f"{rt}, split_stacks off": load_default(device="cpu", runtime=rt, threads=args.threads,
                                                             split_stacks=False) for rt in args.runtimes})
    for d in dets.values():
        dt.detect(args.image, d)
    res: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in dets}
    boxes: dict[str, int] = {}
    for _ in range(args.rounds):
        for k, d in dets.items():
            c0, t0 = time.process_time(), time.perf_counter()
            boxes[k] = len(dt.detect(args.image, d))
            res[k]["wall"].append(time.perf_counter() - t0)
            res[k]["cpu"].append(time.process_time() - c0)
    return {"mode": "photo", "image": args.image, "threads": args.threads, "rounds": args.rounds,
            "results": {k: {"wall_s_median": round(statistics.median(v["wall"]), 2), "wall_s_best": round(min(v["wall"]), 2),
                            "cpu_s_median": round(statistics.median(v["cpu"]), 2), "products": boxes[k]}
                        for k, v in res.items()}}


def _time_v(cmd: list[str], env: dict) -> tuple[float, int, int, float]:
    r = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env)
    wall, rss, cpu = 0.0, 0, 0.0
    for line in r.stderr.splitlines():
        line = line.strip()
        if line.startswith(("User time (seconds)", "System time (seconds)")):
            cpu += float(line.rsplit(" ", 1)[1])
        elif line.startswith("Elapsed (wall clock) time"):
            parts = line.rsplit(" ", 1)[1].split(":")
            wall = sum(float(p) * 60 ** i for i, p in enumerate(reversed(parts)))
        elif line.startswith("Maximum resident set size"):
            rss = int(line.rsplit(" ", 1)[1])
    return wall, rss, r.returncode, cpu


def cold(args: argparse.Namespace) -> dict:
    from PIL import Image

    tmp = Path(tempfile.mkdtemp())
    tiny = tmp / "tiny10.png"
    Image.fromarray(np.full((10, 10, 3), 128, np.uint8)).save(tiny)
    images = [str(tiny), *args.image]
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    env["PYTHONPATH"] = str(ROOT)  # every interpreter runs this tree's code
    cases = []
    for py in args.python:
        has_torch = subprocess.run([py, "-c", "import importlib.util as u; raise SystemExit(u.find_spec('torch') is None)"],
                                   env=env).returncode == 0
        for extra in ([[]] + ([["--detector-option", "runtime=torch"]] if args.torch_too and has_torch else [])):
            for img in images:
                cases.append((py, has_torch, extra, img))
    results: dict[str, dict] = {}
    for _ in range(args.runs):  # alternate the cases run by run
        for py, has_torch, extra, img in cases:
            cmd = [py, "-m", "densedet_tile", img, "--out", str(tmp / "out"), "-q", *extra]
            wall, rss, rc, cpu = _time_v(cmd, env)
            if rc != 0:
                raise SystemExit(f"failed: {' '.join(cmd)}")
            key = f"{py} | {Path(img).name} | {'runtime=torch' if extra else 'default'}"
            rec = results.setdefault(key, {"python": py, "torch_installed": has_torch, "image": Path(img).name,
                                           "runtime": "torch" if extra else "default", "wall": [], "rss_kb": [],
                                           "cpu": []})
            rec["wall"].append(wall)
            rec["cpu"].append(cpu)
            rec["rss_kb"].append(rss)
    for rec in results.values():
        rec["wall_s_median"] = round(statistics.median(rec["wall"]), 2)
        rec["wall_s_best"] = round(min(rec["wall"]), 2)
        rec["peak_rss_mib"] = round(max(rec["rss_kb"]) / 1024, 1)
        rec["cpu_s_median"] = round(statistics.median(rec.pop("cpu")), 2)
        doc = json.loads((tmp / "out" / f"{Path(rec['image']).stem}.detections.json").read_text())
        rec.pop("rss_kb")
        rec["wall"] = [round(w, 2) for w in rec["wall"]]
        rec["last_products"] = doc["num_detections"]
    return {"mode": "cold", "runs": args.runs, "results": list(results.values())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--runtimes", nargs="*", default=["onnxruntime", "torch"])
    s.add_argument("--onnx", nargs="*", default=[], help="other .onnx exports to time beside the shipped one")
    s.add_argument("--rounds", type=int, default=7)
    s.add_argument("--per-round", type=int, default=4)
    c = sub.add_parser("cold")
    c.add_argument("--python", action="append", required=True, help="interpreter(s) to run the CLI with")
    c.add_argument("--image", action="append", default=[])
    c.add_argument("--runs", type=int, default=5)
    c.add_argument("--torch-too", action="store_true")
    p = sub.add_parser("photo")
    p.add_argument("--image", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runtimes", nargs="*", default=["onnxruntime", "torch"])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--split-stacks-too", action="store_true",
                   help="also time each runtime with the built-in model's stack splitter off")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    t0 = time.time()
    report = {"speed": speed, "cold": cold, "photo": photo}[args.mode](args)
    report["machine"] = machine_line()
    report["load_average_after"] = os.getloadavg()
    report["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report["seconds"] = round(time.time() - t0, 1)
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    from _bench_common import run_script  # noqa: E402

    raise SystemExit(run_script(main, "bench_light"))
