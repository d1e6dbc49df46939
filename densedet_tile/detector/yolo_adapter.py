"""Ultralytics YOLO exports (v5, v8, v11) in ONNX and TFLite: ``--detector yolo --checkpoint best.onnx``.

Runs the files the Ultralytics exporter writes without the ``ultralytics`` package: ONNX through
ONNX Runtime (extra ``[onnx]``), TFLite (float32, float16, int8) through LiteRT's interpreter
(``ai-edge-litert``, extra ``[tflite]``). The runtime is chosen by the file: a ``.tflite`` name or
the TFLite file identifier ``TFL3`` means LiteRT, anything else ONNX.

What is read from the export itself:

* the input canvas (H, W) and its layout: NCHW (ONNX) or NHWC (TFLite), told apart by where the
  3 colour channels are; float32/float16 input, or int8/uint8 input with its scale and zero
  point; whether the batch dimension is dynamic (tiles then run as one batch) or fixed (tiles
  run in chunks of that size, the last one padded);
* class names: the ``names`` entry of the ONNX metadata (a dict literal such as
  ``"{0: 'object'}"``, read with :func:`ast.literal_eval`) or of the ``metadata.json`` that
  Ultralytics appends to a ``.tflite`` file as a zip member; ``class_names=`` overrides;
* the output layout, from the output shape (see :func:`output_layout`): the raw v8/v11 head
  ``(B, 4 + nc, N)``, the v5 head ``(B, N, 5 + nc)`` with objectness, or an end-to-end export
  ``(B, K, 6)`` (x1, y1, x2, y2, score, class; K at most 1000) that already contains NMS.
  Coordinates may be in input pixels (ONNX exports) or normalised to 0..1 (TFLite exports):
  a raw head whose anchors' centres (all of them, whatever their scores: they cover the canvas)
  lie within 1.5 by their median, or an end-to-end export whose detections' corners all do (until
  a tile of it showed pixels), is taken as normalised (``normalized=`` forces either).

Preprocessing is the Ultralytics letterbox: the tile keeps its aspect ratio, is centred on a
canvas filled with grey 114, RGB, divided by 255 (and quantised with the input's scale and zero
point for int8 inputs). The adapter never enlarges a tile: one smaller than the canvas is padded,
one larger is shrunk to fit. Boxes are mapped back through the letterbox, clipped to the tile's
picture (boxes wholly in the padding vanish), and for raw heads reduced by the adapter's own
class-wise NMS.

Input scale: ``input_size`` (the engine resizes every tile so its longer side is that) is by
default the canvas's shorter side (its only side for a square export), the scale the model was
trained at, so the engine's square tiles fill the canvas, or sit whole in a non-square one
(``imgsz=(384, 640)``: 384 px tiles, padded on the long side, never shrunk again).
An explicit ``input_size`` (``--input-size``) sets the scale instead: tiles reach the model at
that size and are padded on the canvas (e.g. ``--input-size 320`` on a 640 model shows products
at half the size, as a whole-photo model saw them). It cannot exceed a fixed canvas's longer side
(export with a larger ``imgsz`` or ``dynamic=True``); above the shorter side it suits a whole
image of the canvas's shape (a landscape photo on a landscape canvas), while square tiles are
shrunk to fit. For exports with a dynamic H/W it sets the canvas (rounded up to the model stride).

Thresholds (Ultralytics ``predict`` defaults): ``conf`` 0.25 (``score_thr``, i.e. ``--score-thr``,
is the same threshold), ``iou`` 0.7, ``max_det`` 1000 (dense shelves need more than Ultralytics'
300), class-wise NMS unless ``agnostic=True``. ``predict`` decodes down to ``score_floor``
(``conf`` less 0.1: the count band and the band of boxes that confirm cut views, not below
0.05) and the engine serves ``conf``: the boxes in between are only counted (the count range)
or confirm. Greedy NMS lets a box suppress only lower-scoring ones, so the
boxes at ``conf`` and above are the ones Ultralytics gives at ``conf``.
"""

from __future__ import annotations

import ast
import json
import logging
import math
import os
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import DetectorError, InvalidInputError, MissingDependencyError
from ..merge.nms import nms
from ..types import Detections, check_input_size
from .base import (check_threads, check_tiles, class_names_option, model_file, ort_session_options, quiet_native_stderr, say_nonfinite,
                   score_floor_for)

__all__ = [
    "build",
    "YoloDetector",
    "LAYOUTS",
    "PAD_VALUE",
    "letterbox",
    "output_layout",
    "decode",
    "parse_names",
]

log = logging.getLogger(__name__)

#: Output layouts understood (``layout=`` forces one; None detects it from the shape).
LAYOUTS: tuple[str, ...] = ("v8", "v5", "end2end")
#: Grey of the letterbox padding, as in Ultralytics' ``LetterBox``.
PAD_VALUE = 114
#: At most this many candidates (highest scores) enter NMS, as Ultralytics' ``max_nms``.
MAX_NMS = 30000
_TFLITE_MAGIC = b"TFL3"


# -- pure parts: letterbox, layout, decode ------------------------------------------------------
@dataclass(frozen=True)
class Letterbox:
    """Where a tile sits on the canvas: ``scale_x``/``scale_y`` (canvas pixels per tile pixel
    after rounding), ``left``/``top`` padding, and the resized picture's ``width``/``height``."""

    scale_x: float
    scale_y: float
    left: int
    top: int
    width: int
    height: int

    def to_tile(self, xyxy: np.ndarray, tile_w: int, tile_h: int) -> np.ndarray:
        """Canvas-pixel boxes (N, 4) -> tile-pixel boxes, clipped to the tile."""
        out = (xyxy.astype(np.float32) - np.array([self.left, self.top] * 2, np.float32))
        out /= np.array([self.scale_x, self.scale_y] * 2, np.float32)
        return np.clip(out, 0.0, np.array([tile_w, tile_h, tile_w, tile_h], np.float32))


def letterbox(tile: np.ndarray, height: int, width: int) -> tuple[np.ndarray, Letterbox]:
    """Centre an HxWx3 uint8 tile on a ``height`` x ``width`` canvas of grey 114.

    The tile keeps its aspect ratio and is never enlarged: a tile larger than the canvas is shrunk
    to fit (OpenCV-style bilinear, as Ultralytics' ``LetterBox`` resizes), a smaller one is only
    padded. The padding is split as Ultralytics'
    ``LetterBox`` splits it (``round(d / 2 - 0.1)`` before, the rest after). Returns the
    (height, width, 3) uint8 canvas and the :class:`Letterbox` that maps boxes back.
    """
    h, w = tile.shape[:2]
    r = min(1.0, height / h, width / w)
    nw, nh = (w, h) if r == 1.0 else (max(1, min(width, round(w * r))), max(1, min(height, round(h * r))))
    if (nw, nh) != (w, h):
        from ..tiler.resize import resize_to

        tile, _ = resize_to(tile, max(nw, nh), filter="bilinear")
        nh, nw = tile.shape[:2]
    left, top = round((width - nw) / 2 - 0.1), round((height - nh) / 2 - 0.1)
    if (nh, nw) == (height, width):
        canvas = np.ascontiguousarray(tile)
    else:
        canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
        canvas[top:top + nh, left:left + nw] = tile
    return canvas, Letterbox(nw / w, nh / h, left, top, nw, nh)


#: The most rows an end-to-end (NMS inside) output is taken to have when the layout is read from
#: the shape. Ultralytics' end-to-end exports keep ``max_det`` rows, 300 unless the export says
#: otherwise; a longer output is far likelier a raw head written channels last. ``layout=end2end``
#: reads a longer one anyway.
END2END_MAX_ROWS = 1000


def _anchor_counts(height: int, width: int) -> set[int]:
    """Anchor points of a head over strides 8-32 (P3-P5), 8-64 (P3-P6) and 4-32 (P2-P5)."""
    def points(s: int) -> int:
        return math.ceil(height / s) * math.ceil(width / s)

    p5 = points(8) + points(16) + points(32)
    return {p5, p5 + points(64), points(4) + p5}


def output_layout(shape: Sequence[int], canvas_hw: tuple[int, int]) -> str:
    """Which YOLO output layout a (B, d1, d2) output of a ``canvas_hw`` model is.

    * ``v8`` (v8, v11 raw head, channels first): ``d2`` is the anchor-point count of strides
      8/16/32 (or 8..64, or 4..32) on the canvas, ``d1 = 4 + nc (+ extra channels)``;
    * ``v5`` (anchor-based head with objectness): ``d1`` is three times that count,
      ``d2 = 5 + nc``;
    * ``end2end`` (NMS inside the export): ``d2 == 6`` and ``d1`` at most
      :data:`END2END_MAX_ROWS` and not an anchor count;
    * otherwise ``d1 < d2`` with ``d1 >= 5`` is read as a v8 head with other strides.

    Raises :class:`DetectorError` naming the shape for anything else, in particular for a
    ``(B, N, 6)`` output too long to be NMS output (a raw head written channels last).
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3:
        raise DetectorError(f"output of shape {shape} is not a YOLO output (expected 3 dimensions)")
    _, d1, d2 = shape
    counts = _anchor_counts(*canvas_hw)
    if d2 in counts and d1 >= 5:
        return "v8"
    if d1 in {3 * n for n in counts} and d2 >= 6:
        return "v5"
    if d2 == 6 and d1 in counts:  # (1, anchors, 6): a v8 head written channels last, not NMS output
        raise DetectorError(
            f"output of shape {shape} looks like a v8 head written channels last ((1, anchors, 4+nc)), which "
            "is not a layout I read; export it channels first ((1, 4+nc, anchors)) or with NMS ((1, K, 6))"
        )
    if d2 == 6 and d1 <= END2END_MAX_ROWS:
        return "end2end"
    if d2 == 6:
        raise DetectorError(
            f"output of shape {shape} has too many rows ({d1}) for an end-to-end export with NMS (at most "
            f"{END2END_MAX_ROWS}) and is probably a raw head written channels last, which is not a layout I read; "
            "if it really is NMS output, force that with --detector-option layout=end2end"
        )
    if 5 <= d1 < d2:
        return "v8"
    raise DetectorError(
        f"output of shape {shape} is not a YOLO layout I know for a {canvas_hw[0]}x{canvas_hw[1]} input: "
        "expected (1, 4+nc, N) (v8/v11), (1, N, 5+nc) (v5) or (1, K, 6) (end-to-end with NMS)"
    )


def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    half = b[:, 2:4] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], axis=1)


def _reach(boxes: np.ndarray, keep: np.ndarray, finite: np.ndarray, layout: str) -> float:
    """How far the coordinates that tell 0..1 from pixels reach (0 when none do): a raw head's
    anchor centres, whatever their scores, by their median (they cover the canvas: a few hundred
    pixels in a pixel export, about 0.5 in a 0..1 one, where a background anchor's centre may
    stray past 1.5); an end-to-end export's rows are its detections (zeros after them), told by
    the largest corner of those above the threshold. Told by the candidates above the threshold
    alone, a tile whose few candidates sat at the canvas's top-left corner (a product cut by the
    corner, a weak hit in the padding) had its pixel boxes read as 0..1 and blown up to the whole
    tile (an outside review)."""
    if layout == "end2end":
        told_by = boxes[keep]
        return float(np.abs(told_by).max()) if told_by.size else 0.0
    told_by = boxes[finite, :2]
    return float(np.median(np.abs(told_by))) if told_by.size else 0.0


def _head(out: np.ndarray, layout: str, nc: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (N, 4) as the export gives them, scores (N,), labels (N,)) of one image's raw output."""
    if layout not in LAYOUTS:
        raise InvalidInputError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    a = np.asarray(out, np.float32)
    if layout == "v8":
        a = a.T
    need = {"v8": 5, "v5": 6, "end2end": 6}[layout]
    if a.ndim != 2 or a.shape[1] < need or (layout == "end2end" and a.shape[1] != 6):
        raise DetectorError(f"output of shape {tuple(np.shape(out))} cannot be read as {layout}")
    if layout == "v8":
        cls = a[:, 4:] if nc is None else a[:, 4:4 + nc]
        return a[:, :4], cls.max(axis=1), cls.argmax(axis=1)
    if layout == "v5":
        cls = a[:, 5:] if nc is None else a[:, 5:5 + nc]
        cls = cls * a[:, 4:5]
        return a[:, :4], cls.max(axis=1), cls.argmax(axis=1)
    return a[:, :4], a[:, 4], np.rint(a[:, 5])


def coordinate_reach(out: np.ndarray, layout: str, *, conf: float = 0.25, nc: int | None = None) -> float:
    """How far one image's raw output's coordinates reach (see :func:`decode`): over 1.5, they are
    pixels."""
    boxes, scores, _ = _head(out, layout, nc)
    finite = np.isfinite(boxes).all(axis=1)
    return _reach(boxes, np.flatnonzero((scores >= conf) & finite), finite, layout)


def decode(
    out: np.ndarray,
    layout: str,
    canvas_hw: tuple[int, int],
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 1000,
    nc: int | None = None,
    normalized: bool | None = None,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw YOLO output -> (xyxy float32 (n, 4) canvas pixels, scores, labels).

    ``out`` is the image's slice of the output: (4 + nc, N) for ``v8``, (N, 5 + nc) for ``v5``,
    (K, 6) for ``end2end``, dequantised. ``nc`` limits the class channels read (extra channels of
    segmentation or pose heads are ignored); None means all. Candidates scoring >= ``conf`` are
    kept; raw heads then go through NMS at ``iou`` (class-wise unless ``agnostic``); at most
    ``max_det`` boxes come back, by descending score. ``normalized`` says whether coordinates are
    0..1 (None: they are when the anchors' centres, whatever their scores, lie within 1.5 by
    their median, or the corners of an end-to-end export's detections above ``conf`` all do).
    """
    boxes, scores, labels = _head(out, layout, nc)
    finite = np.isfinite(boxes).all(axis=1)
    keep = np.flatnonzero((scores >= conf) & finite)
    reach = _reach(boxes, keep, finite, layout)
    if keep.size > MAX_NMS:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:MAX_NMS]]
    boxes, scores, labels = boxes[keep], scores[keep].astype(np.float32), labels[keep].astype(np.int64)
    # (told by the centres of x, y, w, h heads, not their sizes: a v5 head's widths reach past 1
    # in 0..1 exports, and one wide candidate above the threshold had a tile's boxes taken as
    # pixels, shrunk to under a pixel; an outside review)
    if len(keep) and (normalized if normalized is not None else reach <= 1.5):
        h, w = canvas_hw
        boxes = boxes * np.array([w, h, w, h], np.float32)
    if layout != "end2end":
        boxes = _xywh_to_xyxy(boxes)
    boxes = boxes.astype(np.float32)
    ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes, scores, labels = boxes[ok], scores[ok], labels[ok]
    if layout != "end2end" and len(scores):
        order = nms(boxes, scores, iou, labels=None if agnostic else labels)
    else:
        order = np.argsort(-scores, kind="stable")
    order = order[:max_det]
    return boxes[order], scores[order], labels[order]


def parse_names(value: Any) -> tuple[str, ...] | None:
    """Class names from Ultralytics metadata: a dict {index: name} (or its string form, keys int
    or digit strings) or a list; None when ``value`` is absent or not readable as either."""
    if isinstance(value, (str, bytes)):
        try:
            value = ast.literal_eval(value.decode() if isinstance(value, bytes) else value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return None
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    if isinstance(value, dict) and value:
        try:
            items = sorted((int(k), str(v)) for k, v in value.items())
        except (TypeError, ValueError):
            return None
        if [k for k, _ in items] == list(range(len(items))):
            return tuple(v for _, v in items)
    return None


# -- runtimes ---------------------------------------------------------------------------------------
def _literal(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return value
    return value


def _dim(d: Any) -> int | None:
    """A fixed dimension, or None for a dynamic one (a name, None, -1 or 0)."""
    return int(d) if isinstance(d, (int, np.integer)) and d > 0 else None


def _input_layout(shape: Sequence[Any], where: str) -> str:
    dims = [_dim(d) for d in shape]
    if len(dims) == 4 and dims[1] == 3 and dims[3] != 3:
        return "nchw"
    if len(dims) == 4 and dims[3] == 3:
        return "nhwc"
    raise DetectorError(f"{where}: input of shape {list(shape)} is not an image batch (1, 3, H, W) or (1, H, W, 3)")


class _OnnxRuntime:
    """An ONNX Runtime session: float32/float16 input, the first 3-D output."""

    framework = "onnxruntime"

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise MissingDependencyError("the yolo detector (ONNX models)", "onnxruntime", None, exc) from exc
        from .onnx_adapter import _check_cuda_started, _providers

        opts = ort_session_options(ort, threads)
        providers = _providers(ort, device)
        try:
            self.session = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own types for unreadable files
            raise DetectorError(f"yolo model {path}: not a readable ONNX model ({' '.join(str(exc).split())[:200]})") from exc
        _check_cuda_started(ort, self.session, device, f"yolo model {path}")
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise DetectorError(f"yolo model {path}: expected one image input, got {[i.name for i in inputs]}")
        inp = inputs[0]
        self.input_name, self.input_shape = inp.name, list(inp.shape)
        dtypes = {"tensor(float)": np.float32, "tensor(float16)": np.float16}
        if inp.type not in dtypes:
            raise DetectorError(f"yolo model {path}: input {inp.name!r} is {inp.type}, expected float32 or float16")
        self.input_dtype, self.input_quant = np.dtype(dtypes[inp.type]), None
        outs = [o for o in self.session.get_outputs() if len(o.shape) == 3]
        if not outs:
            shapes = [list(o.shape) for o in self.session.get_outputs()]
            raise DetectorError(f"yolo model {path}: no 3-D output to decode (outputs {shapes})")
        self.output_name, self.output_shape = outs[0].name, list(outs[0].shape)
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map or {})
        self.providers = list(self.session.get_providers())
        from .onnx_adapter import _device_of

        self.device = _device_of(self.session)  # cuda:N as the CUDA provider was given it, or cpu

    def run(self, x: np.ndarray) -> np.ndarray:
        (y,) = self.session.run([self.output_name], {self.input_name: x})
        return np.asarray(y, np.float32)


class _LiteRuntime:
    """A LiteRT interpreter: float or int8/uint8 input and output with their quantisation."""

    framework = "litert"

    def __init__(self, path: Path, device: str, threads: int | None) -> None:
        if device not in ("auto", "cpu"):
            raise InvalidInputError(f"yolo model {path}: TFLite models run on the CPU here, not {device!r}")
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:
            raise MissingDependencyError("the yolo detector (TFLite models)", "ai-edge-litert", "tflite", exc) from exc
        self.path = path
        try:
            with quiet_native_stderr():  # (LiteRT's "INFO: Created ... delegate", under -q too)
                self.interp = Interpreter(model_path=os.fspath(path), num_threads=threads)
        except Exception as exc:  # LiteRT raises ValueError/RuntimeError for damaged files
            raise DetectorError(f"yolo model {path}: not a readable TFLite model ({' '.join(str(exc).split())[:200]})") from exc
        inputs = self.interp.get_input_details()
        if len(inputs) != 1:
            raise DetectorError(f"yolo model {path}: expected one image input, got {[i['name'] for i in inputs]}")
        inp = inputs[0]
        self.input_index = inp["index"]
        sig = inp.get("shape_signature")
        self.input_shape = [int(d) for d in (sig if sig is not None and len(sig) else inp["shape"])]
        self.input_dtype = np.dtype(inp["dtype"])
        if self.input_dtype not in (np.float32, np.float16, np.int8, np.uint8):
            raise DetectorError(f"yolo model {path}: input is {self.input_dtype}, expected float, int8 or uint8")
        self.input_quant = self._quant(inp) if self.input_dtype.kind in "iu" else None
        outs = [o for o in self.interp.get_output_details() if len(o["shape"]) == 3]
        if not outs:
            shapes = [o["shape"].tolist() for o in self.interp.get_output_details()]
            raise DetectorError(f"yolo model {path}: no 3-D output to decode (outputs {shapes})")
        out = outs[0]
        self.output_index = out["index"]
        osig = out.get("shape_signature")
        self.output_shape = [int(d) for d in (osig if osig is not None and len(osig) else out["shape"])]
        self.output_quant = self._quant(out) if np.dtype(out["dtype"]).kind in "iu" else None
        self.metadata = _zip_metadata(path)
        self.providers = ["litert-cpu"]
        self.device = "cpu"
        self._allocated: tuple[int, ...] = tuple(int(d) for d in inp["shape"])
        self._lock = threading.Lock()
        try:
            with quiet_native_stderr():
                self.interp.allocate_tensors()
        except Exception as exc:  # (ops LiteRT cannot run, "Select TensorFlow op(s)": said as the file's)
            raise DetectorError(f"yolo model {path}: LiteRT cannot prepare it ({' '.join(str(exc).split())[:200]})"
                                ) from exc

    def _quant(self, detail: dict[str, Any]) -> tuple[float, int]:
        scale, zero = detail["quantization"]
        if not scale:
            raise DetectorError(f"yolo model {self.path}: {detail['name']!r} is integer but has no quantisation scale")
        return float(scale), int(zero)

    def run(self, x: np.ndarray) -> np.ndarray:
        # one interpreter holds one input and one output at a time: calls from several threads
        # take turns (unlocked, a third of the calls of two threads failed with LiteRT's "at
        # least 1 reference to internal data"; a loaded detector serves many threads, README)
        with self._lock:
            if tuple(x.shape) != self._allocated:
                self.interp.resize_tensor_input(self.input_index, list(x.shape))
                with quiet_native_stderr():
                    self.interp.allocate_tensors()
                self._allocated = tuple(x.shape)
            self.interp.set_tensor(self.input_index, x)
            self.interp.invoke()
            y = np.array(self.interp.get_tensor(self.output_index))  # (a copy: the next call overwrites it)
        if self.output_quant is not None:
            scale, zero = self.output_quant
            return (y.astype(np.float32) - zero) * np.float32(scale)
        return np.asarray(y, np.float32)


def _zip_metadata(path: Path) -> dict[str, Any]:
    """The ``metadata.json`` Ultralytics appends to a .tflite file as a zip member, or {}."""
    try:
        if not zipfile.is_zipfile(path):
            return {}
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".json")]
            if not names:
                return {}
            meta = json.loads(zf.read(names[0]).decode("utf-8"))
    except (OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError):
        return {}
    return meta if isinstance(meta, dict) else {}


# -- the detector -----------------------------------------------------------------------------------
class YoloDetector:
    """A YOLO export behind the Detector protocol.

    Attributes: ``name`` (``"yolo:<file stem>"``), ``input_size``, ``canvas_hw`` (the model's
    (H, W) input), ``layout`` (``v8``/``v5``/``end2end``; None for an output of dynamic shape,
    whose layout is then read from each output), ``batch`` (None when dynamic), ``class_names``,
    ``conf``, ``iou``, ``max_det``, ``device``, ``info``.
    """

    #: Tiles are resized with OpenCV-style bilinear sampling, as Ultralytics' pipeline does.
    resize_filter = "bilinear"

    def __init__(
        self,
        runtime: Any,
        *,
        name: str,
        canvas_hw: tuple[int, int],
        input_size: int,
        batch: int | None,
        layout: str | None,
        forced: bool,
        class_names: tuple[str, ...] | None,
        conf: float,
        iou: float,
        max_det: int,
        normalized: bool | None,
        agnostic: bool,
        info: dict[str, Any],
        check_names: bool = False,
    ) -> None:
        self._rt = runtime
        self.name = name
        self.canvas_hw = canvas_hw
        self.input_size = input_size
        self.batch = batch
        self.layout = layout
        self._forced = forced
        self.class_names = class_names
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.score_thr = conf
        self.score_floor = score_floor_for(conf)  # decoded a little lower, for the count range
        self._normalized = normalized
        self._pixels = False  # a tile's output was seen in pixels (normalized None)
        self._agnostic = agnostic
        self.device = runtime.device
        self.info = info
        #: the class_names given could not be held against the output's class channels when the
        #: model was loaded (its output's shape is dynamic): done on the first output
        self._check_names = check_names

    def __repr__(self) -> str:
        return f"YoloDetector(name={self.name!r}, canvas_hw={self.canvas_hw}, layout={self.layout!r})"

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """HxWx3 uint8 RGB tiles -> one Detections per tile, in that tile's pixels."""
        tiles = check_tiles(tiles)
        out: list[Detections] = []
        step = self.batch or max(1, len(tiles))
        for i in range(0, len(tiles), step):
            out.extend(self._chunk(tiles[i:i + step]))
        return out

    def _chunk(self, tiles: list[np.ndarray]) -> list[Detections]:
        H, W = self.canvas_hw
        canvases, boxes = zip(*(letterbox(t, H, W) for t in tiles))
        x = np.stack(canvases)
        if self.batch is not None and len(tiles) < self.batch:  # a fixed batch: fill with padding
            x = np.concatenate([x, np.full((self.batch - len(tiles), H, W, 3), PAD_VALUE, np.uint8)])
        try:
            y = self._rt.run(self._to_input(x))
        except Exception as exc:  # the runtimes raise their own exception types
            raise DetectorError(f"{self.name}: inference failed ({' '.join(str(exc).split())[:200]})") from exc
        if y.ndim != 3 or y.shape[0] < len(tiles):
            raise DetectorError(f"{self.name}: output of shape {y.shape} for a batch of {x.shape[0]}")
        say_nonfinite(self, y[:len(tiles)])
        try:
            layout = self.layout if self._forced else output_layout(y.shape, self.canvas_hw)
        except DetectorError as exc:
            raise DetectorError(f"{self.name}: {exc}") from None
        nc = len(self.class_names) if self.class_names is not None else None
        if self._check_names and nc is not None and layout in ("v8", "v5"):
            channels = int(y.shape[1] - 4 if layout == "v8" else y.shape[2] - 5)
            if nc != channels:
                raise DetectorError(f"{self.name}: {nc} class_names for an output with {channels} class channels"
                                    + ("; name every class (the boxes of the unnamed ones would be dropped)"
                                       if nc < channels else ""))
            self._check_names = False
        normalized = self._normalized
        if normalized is None and layout == "end2end" and not self._pixels and any(
                coordinate_reach(yi, layout, conf=self.score_floor, nc=nc) > 1.5 for yi in y[:len(tiles)]):
            # an end-to-end export is told by its detections only: once a tile's were pixels, the
            # export's are, on every tile from now on (a tile with a single detection at the
            # canvas's corner reads as 0..1 by itself). A raw head is told by its anchors on each
            # tile (one stray background anchor in a 0..1 export would make every later tile pixels)
            self._pixels = True
        if normalized is None and self._pixels:
            normalized = False
        res = []
        for t, lb, yi in zip(tiles, boxes, y):
            xyxy, scores, labels = decode(yi, layout, self.canvas_hw, conf=self.score_floor, iou=self.iou,
                                          max_det=self.max_det, nc=nc, normalized=normalized,
                                          agnostic=self._agnostic)
            xyxy = lb.to_tile(xyxy, t.shape[1], t.shape[0])
            ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
            res.append(Detections(xyxy[ok], scores[ok], labels[ok]))
        return res

    def _to_input(self, canvases: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 canvases -> the model's input array (layout, dtype, quantisation)."""
        rt = self._rt
        if rt.input_quant is not None:
            scale, zero = rt.input_quant
            info = np.iinfo(rt.input_dtype)
            q = np.rint(canvases.astype(np.float32) / np.float32(255.0 * scale)) + zero
            x = np.clip(q, info.min, info.max).astype(rt.input_dtype)
        else:
            x = canvases.astype(np.float32) * np.float32(1.0 / 255.0)
            x = x.astype(rt.input_dtype, copy=False)
        if self.info["input_layout"] == "nchw":
            x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x


def _runtime_kind(path: Path) -> str:
    """``tflite`` for a .tflite name or the TFLite file identifier, else ``onnx``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise InvalidInputError(f"yolo model {path}: cannot be read ({exc.strerror or exc})") from exc
    if path.suffix.lower() == ".tflite" or head[4:8] == _TFLITE_MAGIC:
        return "tflite"
    if path.suffix.lower() in (".pt", ".pth"):
        raise InvalidInputError(
            f"yolo model {path}: a PyTorch checkpoint, not an export; export it to ONNX or TFLite first "
            "(e.g. `yolo export model=best.pt format=onnx`)"
        )
    return "onnx"


def _number(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not (lo <= float(value) <= hi):
        raise InvalidInputError(f"yolo detector: {name} must be a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def build(
    *,
    config: str | None = None,
    checkpoint: str | None,
    device: str = "auto",
    input_size: int | None = None,
    score_thr: float | None = None,
    conf: float | None = None,
    iou: float = 0.7,
    max_det: int = 1000,
    class_names: Sequence[str] | None = None,
    layout: str | None = None,
    normalized: bool | None = None,
    agnostic: bool = False,
    threads: int | None = None,
    **options: Any,
) -> YoloDetector:
    """Open the YOLO export ``checkpoint`` (``.onnx`` or ``.tflite``).

    ``conf`` (or ``score_thr``, the engine's name for it; give one) defaults to 0.25, ``iou`` to
    0.7, ``max_det`` to 1000. ``class_names`` overrides the names in the file's metadata;
    ``layout`` (``v8``, ``v5``, ``end2end``) and ``normalized`` override what is read from the
    output; ``agnostic`` runs NMS across classes; ``threads`` limits the runtime's CPU threads.
    ``config`` is not used (an export describes itself) and must be None.
    """
    if options:
        raise InvalidInputError(f"yolo detector: unknown option(s) {', '.join(sorted(options))}")
    if config is not None:
        raise InvalidInputError("yolo detector: takes no config (--config): the exported file describes the model")
    if not checkpoint:
        raise InvalidInputError("yolo detector: a checkpoint (checkpoint=, --checkpoint best.onnx or .tflite) is required")
    path = model_file(checkpoint, "yolo")
    check_input_size(input_size)
    if score_thr is not None and conf is not None and float(score_thr) != float(conf):
        raise InvalidInputError(f"yolo detector: give the confidence threshold once (score_thr {score_thr} and conf {conf})")
    conf_v = _number("conf", conf if conf is not None else score_thr if score_thr is not None else 0.25, 0.0, 1.0)
    iou_v = _number("iou", iou, 0.0, 1.0)
    if isinstance(max_det, bool) or not isinstance(max_det, (int, np.integer)) or max_det < 1:
        raise InvalidInputError(f"yolo detector: max_det must be a positive int, got {max_det!r}")
    if layout is not None and layout not in LAYOUTS:
        raise InvalidInputError(f"yolo detector: layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    if normalized is not None and not isinstance(normalized, bool):
        raise InvalidInputError(f"yolo detector: normalized must be true, false or absent, got {normalized!r}")
    if not isinstance(agnostic, bool):
        raise InvalidInputError(f"yolo detector: agnostic must be true or false, got {agnostic!r}")
    threads = check_threads(threads, "yolo detector: ")
    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', got {device!r}")

    kind = _runtime_kind(path)
    rt: Any = _LiteRuntime(path, device, threads) if kind == "tflite" else _OnnxRuntime(path, device, threads)
    where = f"yolo model {checkpoint}"
    in_layout = _input_layout(rt.input_shape, where)
    dims = [_dim(d) for d in rt.input_shape]
    hw = (dims[2], dims[3]) if in_layout == "nchw" else (dims[1], dims[2])
    meta = rt.metadata
    stride = _literal(meta.get("stride", 32))
    stride = int(stride) if isinstance(stride, int) and stride > 0 else 32
    if None in hw:  # dynamic H/W: the canvas is input_size (or the export's imgsz) rounded up to the stride
        side = input_size
        if side is None:
            imgsz = _literal(meta.get("imgsz"))
            side = max(imgsz) if isinstance(imgsz, (list, tuple)) and imgsz and all(isinstance(v, int) for v in imgsz) else None
        if side is None:
            raise DetectorError(f"{where}: input {list(rt.input_shape)} has no fixed size and no imgsz metadata; give its size (input_size=, --input-size)")
        free = math.ceil(side / stride) * stride
        # a side the export fixes stays fixed (it was made the dynamic one's size too: loaded, then
        # every image failed in onnxruntime's words; an outside review)
        canvas = (hw[0] or free, hw[1] or free)
        known = [d for d in hw if d is not None]
        if known and input_size is not None and input_size > max(known):
            raise InvalidInputError(
                f"{where}: input_size {input_size} (--input-size) is larger than the {known[0]} px the model's input "
                f"{list(rt.input_shape)} fixes; give at most {known[0]}, or export with dynamic=True")
    else:
        canvas = (int(hw[0]), int(hw[1]))
        if input_size is not None and input_size > max(canvas):
            raise InvalidInputError(
                f"{where}: input_size {input_size} (--input-size) is larger than the model's fixed {canvas[0]}x{canvas[1]} input; "
                "export with a larger imgsz or dynamic=True"
            )
    # the engine sends square tiles (edge tiles narrower) resized to this side: on a non-square
    # canvas (imgsz=(384, 640)) the shorter side, so that the letterbox does not shrink them again
    # and the products reach the model at the scale the run records
    size = int(input_size) if input_size is not None else min(canvas)
    batch = dims[0]

    names = parse_names(meta.get("names"))
    if class_names is not None:
        names = class_names_option(class_names, "yolo detector")
    found = layout
    if found is None and all(_dim(d) is not None for d in rt.output_shape):
        try:
            found = output_layout(rt.output_shape, canvas)
        except DetectorError as exc:
            raise DetectorError(f"{where}: {exc}") from None
    if found is None and len(rt.output_shape) == 3 and all(_dim(d) is not None for d in rt.output_shape[1:]):
        try:  # a dynamic batch alone leaves the layout readable
            layout_seen: str | None = output_layout([1, *rt.output_shape[1:]], canvas)
        except DetectorError:
            layout_seen = None
    else:
        layout_seen = found
    # the output's class channels, wherever that dimension is fixed: a dynamic batch (an
    # Ultralytics dynamic=True export) skipped the class-name check below, and the boxes of the
    # classes a short class_names left out were dropped without a word (an outside review)
    class_dim = {"v8": 1, "v5": 2}.get(layout_seen or "")
    channels = None
    if class_dim is not None and len(rt.output_shape) > class_dim and _dim(rt.output_shape[class_dim]) is not None:
        channels = _dim(rt.output_shape[class_dim]) - (4 if layout_seen == "v8" else 5)
    if names is not None and channels is not None:
        if class_names is not None and len(names) < channels:
            raise InvalidInputError(f"{where}: {len(names)} class_names for an output with {channels} class channels; "
                                    "name every class (the boxes of the unnamed ones would be dropped)")
        if len(names) > channels:
            if class_names is not None:
                raise InvalidInputError(f"{where}: {len(names)} class_names for an output with {channels} class channels")
            log.warning("%s: metadata names %d classes but the output has %d; ignoring the names", where, len(names), channels)
            names = None
    if names is None and channels is not None and channels > 1:
        # unnamed classes are called by their numbers, all of them alike
        names = tuple(str(i) for i in range(channels))
    info = {
        "framework": rt.framework,
        "checkpoint": os.fspath(path),
        "model_input": [d if d is not None else -1 for d in dims],
        "input_layout": in_layout,
        "input_dtype": str(rt.input_dtype),
        "canvas": list(canvas),
        "input_size": size,
        "batch": "dynamic" if batch is None else batch,
        "layout": found or "auto",
        "conf": conf_v,
        "iou": iou_v,
        "max_det": int(max_det),
        "providers": rt.providers,
        "device": rt.device,  # where the runtime runs it (cuda:N or cpu), as the JSON's model.info says
    }
    if rt.input_quant is not None:
        info["input_quant"] = list(rt.input_quant)
    if getattr(rt, "output_quant", None) is not None:
        info["output_quant"] = list(rt.output_quant)
    return YoloDetector(
        rt, name=f"yolo:{path.stem}", canvas_hw=canvas, input_size=size, batch=batch, layout=found,
        forced=layout is not None, class_names=names, conf=conf_v, iou=iou_v, max_det=int(max_det), normalized=normalized,
        agnostic=bool(agnostic), info=info, check_names=class_names is not None and channels is None,
    )
