"""Write the tiny YOLO-layout TFLite models the yolo adapter's tests run (float32, float16, int8).

No TensorFlow: the graph is written as a TFLite flatbuffer with the schema classes LiteRT ships
(``ai_edge_litert.schema_py_generated``), and the int8 model is made from the float one by
LiteRT's own post-training calibration and quantiser (the same code TensorFlow's converter
calls), fed with generated images.

The model, "bright cells", has the raw v8/v11 head layout of a 64x64 Ultralytics TFLite export:
input ``(1, 64, 64, 3)`` float 0..1 (or int8), output ``(1, 4 + 2, 84)``: for each of the 84
anchor points of strides 8, 16 and 32, a box (cx, cy, w, h) normalised to 0..1 and two class
scores. Only the 64 stride-8 cells score: a cell's box is the cell itself, and its scores are
sigmoids of its mean colour: class 0 ("white") ``sigmoid(20 (G - 0.7))``, class 1 ("red")
``sigmoid(20 (R - G - 0.5))``. So a white or red 8x8 block aligned to the cell grid of the
canvas is "detected" exactly where it is, and the letterbox grey (114) is not. Each file carries
Ultralytics' ``metadata.json`` (names, imgsz, stride) appended as a zip member, as real exports do.

    python scripts/make_yolo_tflite_fixture.py [--out tests/detector/fixtures]

The test file builds the same function as a torch module, exported to ONNX, to compare them.
``TfliteGraph`` is also used by ``scripts/bench_yolo.py`` for a YOLOv8n-sized network.
"""

from __future__ import annotations

import argparse
import io
import json
import zipfile
from pathlib import Path
from typing import Callable, Iterable, Sequence

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as fb

OPS = fb.BuiltinOperator
OPT = fb.BuiltinOptions
CANVAS = 64
STRIDE = 8
NAMES = {0: "white", 1: "red"}
#: 1x1 convolution over a cell's mean (R, G, B) -> the two class logits
CLASS_W = np.array([[0.0, 20.0, 0.0], [20.0, -20.0, 0.0]], np.float32)
CLASS_B = np.array([-14.0, -10.0], np.float32)


class TfliteGraph:
    """A TFLite graph built op by op, shapes computed as it goes (NHWC, float32 activations).

    With ``half=True`` every constant is stored as float16 and turned back into float32 by a
    DEQUANTIZE op, as TensorFlow's float16 quantisation writes it.
    """

    def __init__(self, *, half: bool = False) -> None:
        self.half = half
        self.tensors: list[fb.TensorT] = []
        self.shapes: list[tuple[int, ...]] = []
        self.buffers: list[fb.BufferT] = [fb.BufferT()]  # buffer 0: the empty sentinel
        self.ops: list[fb.OperatorT] = []
        self.codes: dict[int, int] = {}
        self.inputs: list[int] = []
        self.outputs: list[int] = []

    # -- tensors
    def _tensor(self, shape: Sequence[int], name: str, dtype: int = fb.TensorType.FLOAT32, data: bytes | None = None) -> int:
        t = fb.TensorT()
        t.shape, t.type, t.name, t.buffer = [int(s) for s in shape], dtype, name, 0
        if data is not None:
            buf = fb.BufferT()
            buf.data = np.frombuffer(data, np.uint8)
            self.buffers.append(buf)
            t.buffer = len(self.buffers) - 1
        self.tensors.append(t)
        self.shapes.append(tuple(int(s) for s in shape))
        return len(self.tensors) - 1

    def input(self, name: str, shape: Sequence[int]) -> int:
        i = self._tensor(shape, name)
        self.inputs.append(i)
        return i

    def output(self, t: int, name: str) -> None:
        self.tensors[t].name = name
        self.outputs.append(t)

    def const(self, value: np.ndarray, name: str = "const") -> int:
        """A float constant (float16 + DEQUANTIZE when ``half``)."""
        value = np.ascontiguousarray(value, np.float32)
        if not self.half:
            return self._tensor(value.shape, name, data=value.tobytes())
        h = self._tensor(value.shape, name + "_fp16", fb.TensorType.FLOAT16, value.astype(np.float16).tobytes())
        out = self._tensor(value.shape, name)
        self._op(OPS.DEQUANTIZE, [h], [out])
        return out

    def int_const(self, value: Sequence[int], name: str = "shape") -> int:
        v = np.asarray(value, np.int32)
        return self._tensor(v.shape, name, fb.TensorType.INT32, v.tobytes())

    def shape(self, t: int) -> tuple[int, ...]:
        return self.shapes[t]

    # -- operators
    def _op(self, code: int, ins: list[int], outs: list[int], opt_type: int = 0, opt: object = None) -> None:
        if code not in self.codes:
            self.codes[code] = len(self.codes)
        op = fb.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = self.codes[code], ins, outs
        if opt is not None:
            op.builtinOptionsType, op.builtinOptions = opt_type, opt
        self.ops.append(op)

    def conv(self, x: int, weight_oihw: np.ndarray, bias: np.ndarray, *, stride: int = 1, same: bool = True) -> int:
        """Convolution with a torch-layout (O, I, kh, kw) weight; ``same`` pads k // 2 on every side.

        Strided convolutions pad explicitly (a PAD op), so they match torch's symmetric padding
        rather than TFLite's SAME (which pads only after).
        """
        o, i, kh, kw = weight_oihw.shape
        n, h, w, c = self.shape(x)
        if c != i:
            raise ValueError(f"conv: input has {c} channels, weight expects {i}")
        padding = fb.Padding.VALID
        if same and kh > 1:
            if stride == 1:
                padding = fb.Padding.SAME
            else:
                x = self.pad(x, kh // 2)
                n, h, w, c = self.shape(x)
        if padding == fb.Padding.SAME:
            oh, ow = -(-h // stride), -(-w // stride)
        else:
            oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
        wt = self.const(np.transpose(weight_oihw, (0, 2, 3, 1)), "conv_w")
        bt = self.const(bias, "conv_b")
        out = self._tensor((n, oh, ow, o), "conv")
        opt = fb.Conv2DOptionsT()
        opt.padding, opt.strideW, opt.strideH = padding, stride, stride
        opt.dilationWFactor = opt.dilationHFactor = 1
        self._op(OPS.CONV_2D, [x, wt, bt], [out], OPT.Conv2DOptions, opt)
        return out

    def pad(self, x: int, p: int) -> int:
        n, h, w, c = self.shape(x)
        pads = self.int_const([[0, 0], [p, p], [p, p], [0, 0]], "pads")
        out = self._tensor((n, h + 2 * p, w + 2 * p, c), "pad")
        self._op(OPS.PAD, [x, pads], [out], OPT.PadOptions, fb.PadOptionsT())
        return out

    def _pool(self, code: int, x: int, k: int, stride: int, same: bool) -> int:
        n, h, w, c = self.shape(x)
        oh, ow = (-(-h // stride), -(-w // stride)) if same else ((h - k) // stride + 1, (w - k) // stride + 1)
        out = self._tensor((n, oh, ow, c), "pool")
        opt = fb.Pool2DOptionsT()
        opt.padding = fb.Padding.SAME if same else fb.Padding.VALID
        opt.strideW = opt.strideH = stride
        opt.filterWidth = opt.filterHeight = k
        self._op(code, [x], [out], OPT.Pool2DOptions, opt)
        return out

    def avg_pool(self, x: int, k: int, stride: int) -> int:
        return self._pool(OPS.AVERAGE_POOL_2D, x, k, stride, same=False)

    def max_pool(self, x: int, k: int, *, same: bool = True) -> int:
        """Max pooling with stride 1 (SAME: padded with -inf, as torch pads max pooling)."""
        return self._pool(OPS.MAX_POOL_2D, x, k, 1, same=same)

    def _unary(self, code: int, x: int) -> int:
        out = self._tensor(self.shape(x), "act")
        self._op(code, [x], [out])
        return out

    def logistic(self, x: int) -> int:
        return self._unary(OPS.LOGISTIC, x)

    def _binary(self, code: int, opt_type: int, opt: object, a: int, b: int) -> int:
        shape = np.broadcast_shapes(self.shape(a), self.shape(b))
        out = self._tensor(shape, "bin")
        self._op(code, [a, b], [out], opt_type, opt)
        return out

    def mul(self, a: int, b: int) -> int:
        return self._binary(OPS.MUL, OPT.MulOptions, fb.MulOptionsT(), a, b)

    def add(self, a: int, b: int) -> int:
        return self._binary(OPS.ADD, OPT.AddOptions, fb.AddOptionsT(), a, b)

    def sub(self, a: int, b: int) -> int:
        return self._binary(OPS.SUB, OPT.SubOptions, fb.SubOptionsT(), a, b)

    def silu(self, x: int) -> int:
        return self.mul(x, self.logistic(x))

    def softmax(self, x: int) -> int:
        out = self._tensor(self.shape(x), "softmax")
        opt = fb.SoftmaxOptionsT()
        opt.beta = 1.0
        self._op(OPS.SOFTMAX, [x], [out], OPT.SoftmaxOptions, opt)
        return out

    def reshape(self, x: int, shape: Sequence[int]) -> int:
        shape = [int(s) for s in shape]
        if int(np.prod(shape)) != int(np.prod(self.shape(x))):
            raise ValueError(f"reshape: {self.shape(x)} cannot become {shape}")
        out = self._tensor(shape, "reshape")
        opt = fb.ReshapeOptionsT()
        opt.newShape = shape
        self._op(OPS.RESHAPE, [x, self.int_const(shape)], [out], OPT.ReshapeOptions, opt)
        return out

    def concat(self, xs: Sequence[int], axis: int) -> int:
        shapes = [self.shape(x) for x in xs]
        shape = list(shapes[0])
        shape[axis] = sum(s[axis] for s in shapes)
        out = self._tensor(shape, "concat")
        opt = fb.ConcatenationOptionsT()
        opt.axis = axis
        self._op(OPS.CONCATENATION, list(xs), [out], OPT.ConcatenationOptions, opt)
        return out

    def split(self, x: int, parts: int, axis: int) -> list[int]:
        shape = list(self.shape(x))
        shape[axis] //= parts
        outs = [self._tensor(shape, "split") for _ in range(parts)]
        opt = fb.SplitOptionsT()
        opt.numSplits = parts
        self._op(OPS.SPLIT, [self.int_const([axis], "axis"), x], outs, OPT.SplitOptions, opt)
        return outs

    def transpose(self, x: int, perm: Sequence[int]) -> int:
        out = self._tensor([self.shape(x)[p] for p in perm], "transpose")
        self._op(OPS.TRANSPOSE, [x, self.int_const(perm, "perm")], [out], OPT.TransposeOptions, fb.TransposeOptionsT())
        return out

    def upsample2(self, x: int) -> int:
        n, h, w, c = self.shape(x)
        out = self._tensor((n, 2 * h, 2 * w, c), "upsample")
        opt = fb.ResizeNearestNeighborOptionsT()
        opt.alignCorners, opt.halfPixelCenters = False, False
        self._op(OPS.RESIZE_NEAREST_NEIGHBOR, [x, self.int_const([2 * h, 2 * w], "size")], [out],
                 OPT.ResizeNearestNeighborOptions, opt)
        return out

    # -- the file
    def finish(self, description: str = "densedet-tile test model") -> bytes:
        sub = fb.SubGraphT()
        sub.tensors, sub.inputs, sub.outputs, sub.operators, sub.name = (
            self.tensors, self.inputs, self.outputs, self.ops, "main")
        model = fb.ModelT()
        model.version, model.subgraphs, model.buffers, model.description = 3, [sub], self.buffers, description
        codes = []
        for code, _ in sorted(self.codes.items(), key=lambda kv: kv[1]):
            oc = fb.OperatorCodeT()
            oc.builtinCode, oc.deprecatedBuiltinCode, oc.version = code, min(code, 127), 1
            codes.append(oc)
        model.operatorCodes = codes
        b = flatbuffers.Builder(1024)
        b.Finish(model.Pack(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def quantize_int8(model: bytes, samples: Iterable[np.ndarray]) -> bytes:
    """Full-integer int8 model (int8 input and output) from a float model and sample inputs."""
    from ai_edge_litert import _pywrap_tensorflow_lite_calibration_wrapper as calibration

    cal = calibration.CalibrationWrapper(model, [], [])
    prepared = False
    for x in samples:
        if not prepared:
            cal.Prepare([list(x.shape)])
            prepared = True
        cal.FeedTensor([np.ascontiguousarray(x, np.float32)])
    i8, i32 = np.dtype(np.int8).num, np.dtype(np.int32).num
    # input type, output type, allow float ops, activations type, bias type,
    # disable per-channel, disable per-channel for dense layers
    return bytes(cal.QuantizeModel(i8, i8, False, i8, i32, False, False))


def with_metadata(model: bytes, metadata: dict) -> bytes:
    """``model`` with Ultralytics' ``metadata.json`` appended as a zip member (LiteRT ignores it)."""
    buf = io.BytesIO()
    buf.write(model)
    with zipfile.ZipFile(buf, "a", zipfile.ZIP_DEFLATED) as zf:
        member = zipfile.ZipInfo("metadata.json", date_time=(2026, 1, 1, 0, 0, 0))  # same bytes every run
        zf.writestr(member, json.dumps(metadata), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def anchor_boxes(canvas: int = CANVAS) -> np.ndarray:
    """(N, 4) cx, cy, w, h in canvas pixels of every anchor cell of strides 8, 16 and 32."""
    rows = []
    for s in (8, 16, 32):
        g = canvas // s
        yy, xx = np.mgrid[0:g, 0:g]
        rows.append(np.stack([(xx + 0.5) * s, (yy + 0.5) * s, np.full(xx.shape, s), np.full(xx.shape, s)], -1).reshape(-1, 4))
    return np.concatenate(rows).astype(np.float32)


def bright_cells(*, half: bool = False) -> bytes:
    """The float "bright cells" model (see the module docstring)."""
    g = TfliteGraph(half=half)
    x = g.input("images", (1, CANVAS, CANVAS, 3))
    cells = (CANVAS // STRIDE) ** 2
    pooled = g.avg_pool(x, STRIDE, STRIDE)
    logits = g.conv(pooled, CLASS_W.reshape(2, 3, 1, 1), CLASS_B)
    scores = g.reshape(g.logistic(logits), (1, cells, 2))
    boxes = anchor_boxes() / CANVAS
    head = g.concat([g.const(boxes[None, :cells], "cell_boxes"), scores], axis=2)
    rest = np.concatenate([boxes[cells:], np.zeros((len(boxes) - cells, 2), np.float32)], axis=1)
    out = g.transpose(g.concat([head, g.const(rest[None], "coarse_anchors")], axis=1), (0, 2, 1))
    g.output(out, "output0")
    return g.finish("bright cells: a YOLOv8-layout test model (densedet-tile)")


def calibration_images(n: int = 48, seed: int = 0) -> Callable[[], Iterable[np.ndarray]]:
    """Canvases like the tests': grey letterbox bands, dark background, white and red cells."""

    def gen() -> Iterable[np.ndarray]:
        rng = np.random.default_rng(seed)
        for _ in range(n):
            img = np.full((CANVAS, CANVAS, 3), rng.integers(0, 80), np.uint8)
            band = int(rng.integers(0, 4)) * STRIDE
            img[:band], img[CANVAS - band:] = 114, 114
            for _ in range(int(rng.integers(1, 6))):
                r, c = rng.integers(0, CANVAS // STRIDE, 2) * STRIDE
                img[r:r + STRIDE, c:c + STRIDE] = (255, 255, 255) if rng.random() < 0.5 else (230, 20, 20)
            yield (img.astype(np.float32) / 255.0)[None]

    return gen


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "tests" / "detector" / "fixtures"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {"description": "bright cells test model", "task": "detect", "stride": 32, "batch": 1,
            "imgsz": [CANVAS, CANVAS], "names": {str(k): v for k, v in NAMES.items()}}
    f32 = bright_cells()
    models = {
        "bright_cells_float32.tflite": f32,
        "bright_cells_float16.tflite": bright_cells(half=True),
        "bright_cells_int8.tflite": quantize_int8(f32, calibration_images()()),
    }
    for name, data in models.items():
        path = out / name
        path.write_bytes(with_metadata(data, meta))
        print(f"{path}: {path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
