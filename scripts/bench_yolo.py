"""Tiles per second of the yolo adapter on this CPU: a YOLOv8n-sized network at 640, as ONNX and as
int8 TFLite, next to the built-in model on 640 px tiles.

No trained YOLO weights are downloaded: the script writes a network with YOLOv8n's layout and size
(backbone C2f/SPPF, PAN neck, decoupled DFL head over strides 8/16/32; Conv+BN fused into biased
convolutions as exports have them; one class, as a SKU-110K model) with random weights, once,
against two backends: torch (exported to ONNX with the raw ``(1, 4 + nc, 8400)`` head in pixels,
as Ultralytics exports ONNX) and a TFLite graph (``scripts/make_yolo_tflite_fixture.py``'s
``TfliteGraph``; boxes normalised to 0..1, as Ultralytics exports TFLite), quantised to int8 by
LiteRT's calibrator on generated shelf tiles. The float TFLite graph is checked against the ONNX
model on the same input before anything is timed.

Each detector then runs ``predict`` on single 640x640 tiles cut from a generated shelf (warm-up
first); the figures are wall and CPU seconds per tile, and the share spent inside the runtime
(the rest is letterbox, decode and NMS). The random weights are scaled once on a real tile as batch
norm would (see :class:`Weights`), and the class bias is set so a tile yields tens to ~700 boxes
after NMS (median ~300), about what a trained model reports on a packed shelf.

    python scripts/bench_yolo.py [--tiles 20] [--threads 2] [--json out.json] [--append-md BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _bench_common import machine_line, publish  # noqa: E402

#: DFL bins per box side, as in YOLOv8
REG_MAX = 16
SIZE = 640


def _fixture_module():
    spec = importlib.util.spec_from_file_location("_yolo_tflite_fixture", HERE / "make_yolo_tflite_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


# -- the network, written once ---------------------------------------------------------------------
class Weights:
    """Random weights, made on first use by name (the same names give the same arrays).

    Fresh weights are scaled on their first run (see :func:`torch_model`'s ``init``) so each
    convolution's output channels have mean 0 and standard deviation 1 on a real tile plus the
    bias asked for: what batch norm folded into a trained network's convolutions gives. Plain
    random scales either vanish or explode through the 60-odd layers.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.store: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def conv(self, name: str, cin: int, cout: int, k: int, bias: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        if name not in self.store:
            std = np.sqrt(1.0 / (cin * k * k))
            w = (self.rng.standard_normal((cout, cin, k, k)) * std).astype(np.float32)
            self.store[name] = (w, np.full(cout, bias, np.float32))
        return self.store[name]


def yolov8n(ops: Any, w: Weights, x: Any, nc: int = 1) -> list[tuple[Any, Any]]:
    """YOLOv8n up to the head's per-level (box distribution, class logit) maps.

    ``ops`` provides conv(x, weight, bias, stride, act), split2, cat, add, maxpool5, up2 and
    channels(x); the same code builds the torch module and the TFLite graph.
    """
    count = iter(range(10_000))

    def conv(x: Any, cout: int, k: int = 1, s: int = 1, act: bool = True, bias: float = 0.0) -> Any:
        wt, b = w.conv(f"conv{next(count)}", ops.channels(x), cout, k, bias)
        return ops.conv(x, wt, b, s, act)

    def c2f(x: Any, cout: int, n: int, shortcut: bool) -> Any:
        c = cout // 2
        y = list(ops.split2(conv(x, 2 * c)))
        for _ in range(n):
            z = conv(conv(y[-1], c, 3), c, 3)
            y.append(ops.add(y[-1], z) if shortcut else z)
        return conv(ops.cat(y), cout)

    def sppf(x: Any, cout: int) -> Any:
        y = [conv(x, ops.channels(x) // 2)]
        for _ in range(3):
            y.append(ops.maxpool5(y[-1]))
        return conv(ops.cat(y), cout)

    x = conv(conv(x, 16, 3, 2), 32, 3, 2)
    x = c2f(x, 32, 1, True)
    p3 = c2f(conv(x, 64, 3, 2), 64, 2, True)
    p4 = c2f(conv(p3, 128, 3, 2), 128, 2, True)
    p5 = sppf(c2f(conv(p4, 256, 3, 2), 256, 1, True), 256)
    n4 = c2f(ops.cat([ops.up2(p5), p4]), 128, 1, False)
    n3 = c2f(ops.cat([ops.up2(n4), p3]), 64, 1, False)
    n4 = c2f(ops.cat([conv(n3, 64, 3, 2), n4]), 128, 1, False)
    n5 = c2f(ops.cat([conv(n4, 128, 3, 2), p5]), 256, 1, False)
    c2, c3 = max(16, 64 // 4, REG_MAX * 4), max(64, min(nc, 100))
    heads = []
    for f in (n3, n4, n5):
        box = conv(conv(conv(f, c2, 3), c2, 3), 4 * REG_MAX, act=False)
        # logits ~ N(-8, 1) on the init tile; heavier tails on others: tens to ~700 boxes per tile
        # after NMS (median ~300), about what a trained model reports on packed shelves
        cls = conv(conv(conv(f, c3, 3), c3, 3), nc, act=False, bias=-8.0)
        heads.append((box, cls))
    return heads


def anchor_grid(size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(A, 2) anchor centres in grid units and (A,) strides, levels 8/16/32 in row-major order."""
    pts, strides = [], []
    for s in (8, 16, 32):
        g = size // s
        yy, xx = np.mgrid[0:g, 0:g]
        pts.append(np.stack([xx + 0.5, yy + 0.5], -1).reshape(-1, 2))
        strides.append(np.full(g * g, s))
    return np.concatenate(pts).astype(np.float32), np.concatenate(strides).astype(np.float32)


#: distances (l, t, r, b) -> (cx, cy, w, h) offsets, in grid units (rows: l, t, r, b)
LTRB_TO_XYWH = np.array([[-0.5, 0, 1, 0], [0, -0.5, 0, 1], [0.5, 0, 1, 0], [0, 0.5, 0, 1]], np.float32)


# -- torch backend -------------------------------------------------------------------------------------
def torch_model(weights: Weights, nc: int = 1, *, init: bool = False) -> Any:
    """The network as a torch module. With ``init`` its forward also normalises each convolution's
    weights in place (per output channel, on the batch it sees): run it once on a real tile."""
    import torch
    import torch.nn.functional as F

    class Ops:
        def conv(self, x, w, b, s, act):
            if init:
                with torch.no_grad():
                    y = F.conv2d(x, torch.from_numpy(w), None, stride=s, padding=w.shape[-1] // 2)
                    mean = y.mean((0, 2, 3)).numpy()
                    std = y.std((0, 2, 3)).numpy() + 1e-6
                w *= (1.0 / std).astype(np.float32).reshape(-1, 1, 1, 1)
                b -= (mean / std).astype(np.float32)
            y = F.conv2d(x, torch.from_numpy(w), torch.from_numpy(b), stride=s, padding=w.shape[-1] // 2)
            return F.silu(y) if act else y

        def split2(self, x):
            return x.chunk(2, 1)

        def cat(self, xs):
            return torch.cat(xs, 1)

        def add(self, a, b):
            return a + b

        def maxpool5(self, x):
            return F.max_pool2d(x, 5, 1, 2)

        def up2(self, x):
            return F.interpolate(x, scale_factor=2.0, mode="nearest")

        def channels(self, x):
            return x.shape[1]

    anchors, strides = anchor_grid()

    class V8n(torch.nn.Module):
        def forward(self, x):
            heads = yolov8n(Ops(), weights, x, nc)
            b = x.shape[0]
            box = torch.cat([h[0].flatten(2) for h in heads], 2)  # (B, 64, A)
            cls = torch.cat([h[1].flatten(2) for h in heads], 2)  # (B, nc, A)
            a = box.shape[2]
            dist = box.view(b, 4, REG_MAX, a).transpose(2, 1).softmax(1)  # DFL
            dist = (dist * torch.arange(REG_MAX, dtype=torch.float32).view(1, REG_MAX, 1, 1)).sum(1)  # (B, 4, A)
            xywh = torch.einsum("bka,kj->bja", dist, torch.from_numpy(LTRB_TO_XYWH))
            xywh = xywh + torch.from_numpy(np.concatenate([anchors, np.zeros_like(anchors)], 1).T).unsqueeze(0)
            xywh = xywh * torch.from_numpy(strides).view(1, 1, -1)
            return torch.cat([xywh, cls.sigmoid()], 1)  # (B, 4 + nc, A), pixels

    return V8n()


def export_onnx(weights: Weights, path: Path) -> Path:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch_model(weights), (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=["images"],
                          output_names=["output0"], opset_version=17, dynamo=False)
    import onnx

    m = onnx.load(str(path))
    for k, v in {"names": "{0: 'object'}", "stride": "32", "task": "detect", "imgsz": f"[{SIZE}, {SIZE}]"}.items():
        m.metadata_props.add(key=k, value=v)
    onnx.save(m, str(path))
    return path


# -- TFLite backend ---------------------------------------------------------------------------------------
def tflite_model(weights: Weights, nc: int = 1) -> bytes:
    fx = _fixture_module()
    g = fx.TfliteGraph()

    class Ops:
        def conv(self, x, w, b, s, act):
            y = g.conv(x, w, b, stride=s)
            return g.silu(y) if act else y

        def split2(self, x):
            return g.split(x, 2, axis=3)

        def cat(self, xs):
            return g.concat(xs, axis=3)

        def add(self, a, b):
            return g.add(a, b)

        def maxpool5(self, x):
            return g.max_pool(x, 5)

        def up2(self, x):
            return g.upsample2(x)

        def channels(self, x):
            return g.shape(x)[3]

    x = g.input("images", (1, SIZE, SIZE, 3))
    heads = yolov8n(Ops(), weights, x, nc)
    def flat(t: int) -> int:  # (1, h, w, c) -> (1, h * w, c): row-major anchors, as torch's flatten(2)
        _, h, w_, c = g.shape(t)
        return g.reshape(t, (1, h * w_, c))

    box = g.concat([flat(h[0]) for h in heads], axis=1)
    cls = g.concat([flat(h[1]) for h in heads], axis=1)
    a = g.shape(box)[1]
    # DFL: softmax over each side's 16 bins, then the expected bin (a 1x1 conv with weights 0..15)
    dist = g.softmax(g.reshape(box, (1, a, 4, REG_MAX)))
    dist = g.conv(dist, np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1), np.zeros(1, np.float32))
    xywh = g.conv(g.reshape(dist, (1, a, 1, 4)), LTRB_TO_XYWH.T.reshape(4, 4, 1, 1).copy(), np.zeros(4, np.float32))
    anchors, strides = anchor_grid()
    xywh = g.add(g.reshape(xywh, (1, a, 4)), g.const(np.concatenate([anchors, np.zeros_like(anchors)], 1)[None]))
    xywh = g.mul(xywh, g.const((strides / SIZE).reshape(1, a, 1)))  # normalised, as TFLite exports are
    out = g.transpose(g.concat([xywh, g.logistic(cls)], axis=2), (0, 2, 1))
    g.output(out, "output0")
    return fx.with_metadata(g.finish("YOLOv8n-sized random-weight network (densedet-tile benchmark)"),
                            {"names": {"0": "object"}, "imgsz": [SIZE, SIZE], "stride": 32, "task": "detect"})


def params_and_gflops(weights: Weights) -> tuple[int, float]:
    """Parameters and GFLOPs (2 x multiply-adds) of the convolutions at 640, from a traced run."""
    import torch

    flops = [0]
    orig = torch.nn.functional.conv2d

    def counting(x, w, b=None, stride=1, padding=0, *a, **k):
        y = orig(x, w, b, stride, padding, *a, **k)
        flops[0] += 2 * w.numel() * y.shape[2] * y.shape[3]
        return y

    torch.nn.functional.conv2d = counting
    try:
        with torch.no_grad():
            torch_model(weights)(torch.zeros(1, 3, SIZE, SIZE))
    finally:
        torch.nn.functional.conv2d = orig
    params = sum(w.size + b.size for w, b in weights.store.values())
    return params, flops[0] / 1e9


# -- timing -------------------------------------------------------------------------------------------------
def shelf_tiles(n: int, seed: int = 0) -> list[np.ndarray]:
    """n 640x640 RGB tiles cut from generated shelves (products on shelves, not noise)."""
    from densedet_tile.synth import render_shelf

    rng = np.random.default_rng(seed)
    return [render_shelf(rng, width=SIZE, height=SIZE, product_height=110.0)[0] for _ in range(n)]


def time_detector(det: Any, tiles: Sequence[np.ndarray], warmup: int = 3,
                  timer: "Timed | None" = None) -> dict[str, float]:
    """Median wall and CPU milliseconds of ``predict`` on one tile, after ``warmup`` calls; with a
    ``timer``, also the share of the wall time spent inside the runtime."""
    for t in tiles[:warmup]:
        det.predict([t])
    walls, cpus, inner, boxes = [], [], [], []
    for t in tiles:
        i0 = timer.seconds if timer else 0.0
        w0, c0 = time.perf_counter(), time.process_time()
        (d,) = det.predict([t])
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
        inner.append((timer.seconds if timer else 0.0) - i0)
        boxes.append(len(d))
    wall = float(np.median(walls))
    out = {"wall_ms": round(1000 * wall, 1), "cpu_ms": round(1000 * float(np.median(cpus)), 1),
           "tiles_per_s": round(1.0 / wall, 2), "boxes_per_tile": float(np.mean(boxes))}
    if timer:
        out["in_runtime_share"] = round(float(np.sum(inner) / np.sum(walls)), 3)
    return out


class Timed:
    """Wraps a yolo detector's runtime to add up the seconds spent inside it."""

    def __init__(self, det: Any) -> None:
        self.seconds = 0.0
        run = det._rt.run

        def timed(x: np.ndarray) -> np.ndarray:
            t0 = time.perf_counter()
            try:
                return run(x)
            finally:
                self.seconds += time.perf_counter() - t0

        det._rt.run = timed


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--calibration", type=int, default=16, help="generated tiles fed to the int8 calibrator")
    ap.add_argument("--json", default=None)
    ap.add_argument("--append-md", default=None)
    args = ap.parse_args(argv)

    import onnxruntime as ort
    import torch
    from ai_edge_litert import __version__ as litert_version

    import densedet_tile as dt

    load_before = os.getloadavg()[0]
    torch.set_num_threads(args.threads)
    weights = Weights(0)
    (init_tile,) = shelf_tiles(1, seed=2)
    with torch.no_grad():
        torch_model(weights, init=True)(torch.from_numpy(init_tile.astype(np.float32).transpose(2, 0, 1)[None] / 255))
    params, gflops = params_and_gflops(weights)
    tiles = shelf_tiles(args.tiles + 3)
    work = Path(tempfile.mkdtemp(prefix="bench_yolo_"))
    onnx_path = export_onnx(weights, work / "v8n_random.onnx")
    f32 = tflite_model(weights)
    (work / "v8n_random_float32.tflite").write_bytes(f32)
    fx = _fixture_module()
    cal = [(t.astype(np.float32) / 255.0)[None] for t in shelf_tiles(args.calibration, seed=1)]
    t0 = time.perf_counter()
    i8 = fx.with_metadata(fx.quantize_int8(f32, cal), {"names": {"0": "object"}, "imgsz": [SIZE, SIZE]})
    quant_s = time.perf_counter() - t0
    (work / "v8n_random_int8.tflite").write_bytes(i8)

    dets = {
        "yolo ONNX fp32 (onnxruntime)": dt.load_detector("yolo", checkpoint=str(onnx_path), device="cpu",
                                                         options={"threads": args.threads}),
        "yolo TFLite fp32 (LiteRT)": dt.load_detector("yolo", checkpoint=str(work / "v8n_random_float32.tflite"),
                                                      device="cpu", options={"threads": args.threads}),
        "yolo TFLite int8 (LiteRT)": dt.load_detector("yolo", checkpoint=str(work / "v8n_random_int8.tflite"),
                                                      device="cpu", options={"threads": args.threads}),
    }
    # the float TFLite graph computes what the ONNX model computes (same weights, same input)
    canvas = tiles[0].astype(np.float32)[None] / 255.0
    onnx_out = dets["yolo ONNX fp32 (onnxruntime)"]._rt.run(np.ascontiguousarray(canvas.transpose(0, 3, 1, 2)))
    tfl_out = dets["yolo TFLite fp32 (LiteRT)"]._rt.run(canvas)
    tfl_out[:, :4] *= SIZE
    check = {"max_abs_diff_box_px": float(np.abs(onnx_out[:, :4] - tfl_out[:, :4]).max()),
             "max_abs_diff_score": float(np.abs(onnx_out[:, 4:] - tfl_out[:, 4:]).max())}

    rows: dict[str, dict[str, Any]] = {}
    for name, det in dets.items():
        rows[name] = time_detector(det, tiles[3:], timer=Timed(det))
    default = dt.load_detector("default", device="cpu")
    rows["built-in default (ONNX Runtime int8, 640 px tile)"] = time_detector(default, tiles[3:])

    report = {
        "machine": machine_line(),
        "load_average_1min": [round(load_before, 1), round(os.getloadavg()[0], 1)],
        "date": time.strftime("%Y-%m-%d"),
        "versions": {"onnxruntime": ort.__version__, "ai-edge-litert": litert_version, "torch": torch.__version__,
                     "numpy": np.__version__, "python": platform.python_version()},
        "threads": args.threads,
        "model": {"params": params, "gflops_640": round(gflops, 2), "onnx_bytes": onnx_path.stat().st_size,
                  "tflite_fp32_bytes": len(f32), "tflite_int8_bytes": len(i8), "int8_quantise_s": round(quant_s, 1)},
        "float_tflite_vs_onnx": check,
        "rows": rows,
    }
    publish(report, to_markdown, script=__file__, argv=argv, json_path=args.json, append_md=args.append_md)
    return 0


def to_markdown(r: dict[str, Any], command: str) -> str:
    m = r["model"]
    lines = [
        f"### YOLO adapter on the CPU ({r['date']})",
        "",
        f"Machine: {r['machine']}; {r['threads']} runtime thread{'s' if r['threads'] != 1 else ''}; "
        + ", ".join(f"{k} {v}" for k, v in r["versions"].items())
        + f"; load average {r['load_average_1min'][0]} at the start, {r['load_average_1min'][1]} at the end "
        "(other jobs share the cores: CPU ms is the steadier figure).",
        f"Command: `{command}`",
        "",
        f"Network: YOLOv8n layout, random weights, 1 class: {m['params'] / 1e6:.2f} M parameters, "
        f"{m['gflops_640']} GFLOPs at 640; ONNX {m['onnx_bytes'] / 1e6:.1f} MB, TFLite fp32 "
        f"{m['tflite_fp32_bytes'] / 1e6:.1f} MB, int8 {m['tflite_int8_bytes'] / 1e6:.1f} MB (quantised in "
        f"{m['int8_quantise_s']} s). Float TFLite vs ONNX on one tile: max difference "
        f"{r['float_tflite_vs_onnx']['max_abs_diff_box_px']:.2g} px, {r['float_tflite_vs_onnx']['max_abs_diff_score']:.2g} score.",
        "",
        "| detector | ms per 640 tile (wall, median) | CPU ms | tiles/s | inside the runtime | boxes/tile |",
        "|---|---|---|---|---|---|",
    ]
    for name, row in r["rows"].items():
        share = f"{100 * row['in_runtime_share']:.0f}%" if "in_runtime_share" in row else "-"
        lines.append(f"| {name} | {row['wall_ms']} | {row['cpu_ms']} | **{row['tiles_per_s']}** | {share} | "
                     f"{row['boxes_per_tile']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
