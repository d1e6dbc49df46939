"""ONNX Runtime models with the DenseDet export contract (``--detector onnx --checkpoint m.onnx``).

The contract (that of the ailia export of SKU110K-DenseDet):

* input ``img``: float32 (1, 3, H, W), RGB, ImageNet-normalised ((x - mean) / std on 0..255),
  the picture scaled by ``min(H / h, W / w)`` and padded bottom-right with zeros;
* outputs ``det_bboxes`` (n, 5): x1, y1, x2, y2, score in that padded input's pixels, and
  ``det_labels`` (n,) integer classes (a leading batch axis of 1 is fine, as MMDeploy writes
  ``dets`` (1, n, 5) and ``labels`` (1, n)); or three outputs, boxes (n, 4), scores (n,) and
  labels (n,), as exports of torchvision-style detectors give them, told apart by their names
  (``box``, ``score``, ``label``/``class``) or else by shape and type (the one ending in 4 is
  the boxes, an integer one the labels).

H and W are read from the model (they must be fixed, unless ``input_size`` is given, which then
sets a square input). The batch dimension is 1 in such exports, so tiles are run one at a
time. Boxes are mapped back to each tile's pixel frame and clipped to it.

Input scale: ``input_size`` defaults to the model's shorter input side, so the engine resizes a
square tile to fill a square canvas (the export contract's "scale to fit"), or to sit whole in a
non-square one (800x1333: 800 px tiles, padded). The engine resizes every tile to the run's
input size (this one, an explicit ``input_size``, or a run's ``--scale``) and the adapter only
pads it, never enlarges it back; it still shrinks a tile that does not fit the canvas (an
explicit ``input_size`` above the shorter side suits whole images of the canvas's shape), with
the filter it declares (``resize_filter``, bilinear) and the engine's sampler for it, so both
resizes of a tile to one size give the same pixels.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np

from ..errors import DetectorError, InvalidInputError, MissingDependencyError, caller_level
from ..types import Detections, check_input_size
from .base import (check_threads, check_tiles, class_names_option, model_file, ort_session_options, resize_filter_of, say_nonfinite,
                   score_floor_for)

__all__ = ["build", "OnnxDetector", "IMAGENET_MEAN", "IMAGENET_STD", "letterbox"]

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


def letterbox(
    tile: np.ndarray,
    *,
    height: int,
    width: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    upscale: bool = True,
    filter: str = "bilinear",
) -> tuple[np.ndarray, float]:
    """Scale an HxWx3 uint8 RGB tile to fit (height, width), pad bottom-right, normalise.

    Returns the (1, 3, height, width) float32 input and the scale applied (model pixels per
    tile pixel). With ``upscale=False`` the tile is only ever shrunk. ``filter`` is one of
    :data:`~densedet_tile.tiler.resize.RESIZE_FILTERS`, sampled as the engine samples it.
    """
    from ..tiler.resize import resize_exact

    h, w = tile.shape[:2]
    scale, nh, nw = _fit(h, w, height, width, upscale)
    if (nh, nw) != (h, w):
        # the engine's sampler for the declared filter (a Pillow BOX shrink here averaged where
        # the engine samples bilinearly): a tile shrunk here reaches the model as the engine's
        # resize of it to that size would
        tile = resize_exact(tile, nh, nw, filter=filter)
    out = np.zeros((1, 3, height, width), np.float32)
    m = np.asarray(mean, np.float32).reshape(3, 1, 1)
    s = np.asarray(std, np.float32).reshape(3, 1, 1)
    out[0, :, :nh, :nw] = (tile.transpose(2, 0, 1).astype(np.float32) - m) / s
    return out, scale


def _fit(h: int, w: int, height: int, width: int, upscale: bool) -> tuple[float, int, int]:
    """Scale and resized (h, w) of an h x w tile letterboxed into height x width."""
    scale = min(height / h, width / w)
    if not upscale:
        scale = min(scale, 1.0)
    nh, nw = max(1, min(height, int(round(h * scale)))), max(1, min(width, int(round(w * scale))))
    return scale, nh, nw


#: Image input types the adapter feeds (a float16 export gets the letterboxed tile as float16).
_INPUT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxDetector:
    """An ONNX Runtime session behind the Detector protocol.

    Attributes: ``name`` (``"onnx:<file stem>"``), ``input_size``, ``model_hw`` (the model's
    (H, W) canvas), ``class_names`` (tuple or None), ``providers``, ``info``.
    """

    #: Tiles are resized with OpenCV-style bilinear sampling, as the usual training pipelines
    #: (mmdet, torchvision transforms, exporters' runners) do: by the engine to the run's input
    #: size, and by the letterbox, with the same sampler, when a tile does not fit the canvas.
    resize_filter = "bilinear"

    def __init__(
        self,
        *,
        session: Any,
        input_name: str,
        output_names: tuple[str, ...],
        model_hw: tuple[int, int],
        input_size: int | None,
        upscale: bool,
        score_thr: float,
        name: str,
        class_names: tuple[str, ...] | None,
        mean: Sequence[float],
        std: Sequence[float],
        info: dict[str, Any],
        input_dtype: Any = np.float32,
        label_offset: int = 0,
    ) -> None:
        self._session = session
        self._input_dtype = input_dtype
        self.label_offset = int(label_offset)
        self._input_name = input_name
        self._output_names = output_names
        self.model_hw = model_hw
        self.input_size = input_size
        self._upscale = upscale
        self.score_thr = float(score_thr)
        self.score_floor = score_floor_for(self.score_thr)  # a little lower, for the count range
        self.name = name
        self.class_names = class_names
        self._mean = tuple(mean)
        self._std = tuple(std)
        self.info = info
        self.providers = tuple(session.get_providers())
        self.device = info.get("device") or _device_of(session)  # where ONNX Runtime runs it, whatever torch sees

    def __repr__(self) -> str:
        return f"OnnxDetector(name={self.name!r}, model_hw={self.model_hw}, input_size={self.input_size})"

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """HxWx3 uint8 RGB tiles -> one Detections per tile, in that tile's pixels."""
        return [self._one(tile) for tile in check_tiles(tiles)]

    def _one(self, tile: np.ndarray) -> Detections:
        h, w = tile.shape[:2]
        x, scale = letterbox(tile, height=self.model_hw[0], width=self.model_hw[1],
                             mean=self._mean, std=self._std, upscale=self._upscale, filter=resize_filter_of(self))
        if self._input_dtype is not np.float32:
            x = x.astype(self._input_dtype)
        try:
            got = self._session.run(list(self._output_names), {self._input_name: x})
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"{self.name}: inference failed ({exc})") from exc
        if len(got) == 3:  # boxes (n, 4), scores (n,), labels (n,)
            boxes4, sc, labels = (np.asarray(a) for a in got)
            boxes4 = boxes4[0] if boxes4.ndim == 3 else boxes4
            sc = sc[0] if sc.ndim == 2 else sc
            labels = labels[0] if labels.ndim == 2 else labels
            if boxes4.ndim != 2 or boxes4.shape[1] != 4 or sc.shape != (boxes4.shape[0],) \
                    or labels.shape != (boxes4.shape[0],):
                raise DetectorError(f"{self.name}: expected boxes (n, 4), scores (n,) and labels (n,), got "
                                    f"{boxes4.shape}, {sc.shape} and {labels.shape}")
            bboxes = np.column_stack([boxes4.astype(np.float32), sc.astype(np.float32)])
        else:
            bboxes, labels = np.asarray(got[0], np.float32), np.asarray(got[1])
            if bboxes.ndim == 3:  # (1, n, 5) variants
                bboxes = bboxes[0]
            if labels.ndim == 2:
                labels = labels[0]
            if bboxes.ndim != 2 or bboxes.shape[1] != 5 or labels.shape != (bboxes.shape[0],):
                raise DetectorError(
                    f"{self.name}: expected det_bboxes (n, 5) and det_labels (n,), got {bboxes.shape} and {labels.shape}"
                )
        if labels.size and not np.all(np.isfinite(labels.astype(np.float64))):
            raise DetectorError(f"{self.name}: labels must be finite class ids")
        say_nonfinite(self, bboxes)
        if labels.dtype.kind == "f":  # class ids computed in floats (2.9999998 is class 3, not 2)
            labels = np.rint(labels)
        scores = bboxes[:, 4]
        keep = np.isfinite(bboxes).all(axis=1) & (scores >= self.score_floor)
        if self.label_offset:
            labels = labels.astype(np.int64) - self.label_offset
            keep &= labels >= 0  # the background class of a torchvision-style export
        # clip to the picture inside the canvas first: boxes wholly in the padding collapse
        _, nh, nw = _fit(h, w, self.model_hw[0], self.model_hw[1], self._upscale)
        boxes = np.clip(bboxes[keep, :4], 0.0, np.array([nw, nh, nw, nh], np.float32))
        keep2 = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes = np.clip(boxes[keep2] * np.array([w / nw, h / nh, w / nw, h / nh], np.float32),
                        0.0, np.array([w, h, w, h], np.float32))
        return Detections(boxes, scores[keep][keep2], labels[keep][keep2].astype(np.int64))


def _device_of(session: Any) -> str:
    """``cuda:N`` (the CUDA provider's device) or ``cpu``: where the session runs the model."""
    providers = session.get_providers()
    if not providers or not str(providers[0]).startswith("CUDA"):
        return "cpu"
    try:
        opts = session.get_provider_options().get(providers[0], {})
    except Exception:  # pragma: no cover - a runtime without provider options
        opts = {}
    return f"cuda:{opts.get('device_id', 0)}"


def _check_cuda_started(ort: Any, session: Any, device: str, what: str) -> None:
    """Say when ONNX Runtime was given its CUDA provider but runs on the CPU: onnxruntime-gpu
    lists the provider even when it cannot load CUDA or cuDNN, falls back with a warning of its
    own (quieted by the command), and every image then failed with advice to build the detector
    on the device it had been built for. ``device="cuda..."``: an error; ``"auto"``: a warning."""
    if device == "cpu" or "CUDAExecutionProvider" not in ort.get_available_providers():
        return
    if str((session.get_providers() or ["?"])[0]).startswith("CUDA"):
        return
    msg = (f"{what}: ONNX Runtime lists its CUDA provider but could not start it (CUDA or cuDNN libraries "
           "missing or of another version than this onnxruntime-gpu needs)")
    if device == "auto":
        warnings.warn(msg + "; running on the CPU", RuntimeWarning, stacklevel=caller_level())
        return
    raise DetectorError(msg + "; install matching CUDA libraries, or run on the CPU (device 'cpu', --device cpu)")


def _three_outputs(outputs: Sequence[Any], checkpoint: str) -> tuple[str, str, str]:
    """The (boxes, scores, labels) names of a three-output export: by name where the names say
    (``box``, ``score``/``conf``, ``label``/``class``), else by shape and type (the output whose
    last axis is 4 holds the boxes, an integer one the labels, the other the scores)."""
    names = [o.name for o in outputs]
    low = [n.lower() for n in names]

    def named(*words: str) -> list[int]:
        return [k for k, n in enumerate(low) if any(w in n for w in words)]

    box, score, label = named("box"), named("score", "conf"), named("label", "class")
    if len(box) == 1 and len(score) == 1 and len(label) == 1 and len({box[0], score[0], label[0]}) == 3:
        return names[box[0]], names[score[0]], names[label[0]]
    shapes = [list(o.shape) for o in outputs]
    four = [k for k, sh in enumerate(shapes) if sh and sh[-1] == 4]
    ints = [k for k, o in enumerate(outputs) if "int" in str(o.type)]
    rest = [k for k in range(3) if k not in four and k not in ints]
    if len(four) == 1 and len(ints) == 1 and len(rest) == 1 and four[0] != ints[0]:
        return names[four[0]], names[rest[0]], names[ints[0]]
    raise DetectorError(f"onnx model {checkpoint}: three outputs {names}, but which are the boxes (n, 4), the scores "
                        "(n,) and the labels (n,) cannot be told (name them boxes, scores and labels)")


def _two_outputs(outputs: Sequence[Any]) -> tuple[str, str]:
    """The (boxes, labels) names of a two-output export (``dets`` (n, 5) and ``labels`` (n,), as
    MMDeploy writes them): the output with one axis more holds the boxes, else the one not named
    like labels (``label``, ``class``) does; in the order given when neither tells (the shape
    check that follows refuses a model that is not of this kind)."""
    names = [o.name for o in outputs]
    ranks = [len(o.shape) if isinstance(o.shape, (list, tuple)) else 0 for o in outputs]
    if ranks[0] and ranks[1] and abs(ranks[0] - ranks[1]) == 1:
        k = int(ranks[1] > ranks[0])
        return names[k], names[1 - k]
    labelled = [k for k, n in enumerate(names) if any(w in n.lower() for w in ("label", "class"))]
    if len(labelled) == 1:
        return names[1 - labelled[0]], names[labelled[0]]
    return names[0], names[1]


def _shape_text(shape: list[Any]) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "?" for d in shape) + ")"


def _providers(ort: Any, device: str) -> list[Any]:
    if not isinstance(device, str):
        raise InvalidInputError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', got {device!r}")
    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]
    if device == "cuda" or device.startswith("cuda:"):
        if "CUDAExecutionProvider" not in available:
            raise InvalidInputError(f"device {device!r} requested but onnxruntime has no CUDA provider here "
                                    "(install onnxruntime-gpu in its place, or use device 'cpu' or 'auto', --device)")
        idx = device.partition(":")[2] or "0"
        if not idx.isdigit():
            raise InvalidInputError(f"device {device!r} is not a valid device")
        return [("CUDAExecutionProvider", {"device_id": int(idx)}), "CPUExecutionProvider"]
    raise InvalidInputError(f"device {device!r} is not one of auto, cpu, cuda, cuda:N")


def build(
    *,
    config: str | None = None,
    checkpoint: str | None,
    device: str = "auto",
    input_size: int | None = None,
    score_thr: float = 0.05,
    class_names: Sequence[str] | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    threads: int | None = None,
    label_offset: int = 0,
    **options: Any,
) -> OnnxDetector:
    """Open ``checkpoint`` (an .onnx file) with ONNX Runtime.

    ``config`` is not used (an ONNX file is self-describing) and must be None. ``threads``
    limits ONNX Runtime's intra-op threads. ``mean``/``std`` override the normalisation.
    ``label_offset`` is taken off every label (1 for a torchvision-style export, whose class 0 is
    the background); a box whose label falls below 0 is dropped.
    """
    if isinstance(label_offset, bool) or not isinstance(label_offset, (int, np.integer)) or label_offset < 0:
        raise InvalidInputError(f"onnx detector: label_offset must be an integer >= 0, got {label_offset!r}")
    if options:
        raise InvalidInputError(f"onnx detector: unknown option(s) {', '.join(sorted(options))}")
    if config is not None:
        raise InvalidInputError("onnx detector: takes no config (--config): the .onnx file describes the model")
    if not checkpoint:
        raise InvalidInputError("onnx detector: a checkpoint (checkpoint=, --checkpoint model.onnx) is required")
    path = model_file(checkpoint, "onnx")
    check_input_size(input_size)
    if not isinstance(score_thr, (int, float)) or not (0.0 <= float(score_thr) <= 1.0):
        raise InvalidInputError(f"score_thr must be in [0, 1], got {score_thr!r}")
    def three(v: Any) -> bool:
        try:
            a = np.asarray(v, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        return a.shape == (3,) and bool(np.isfinite(a).all())

    if not three(mean) or not three(std) or any(float(s) == 0 for s in std):
        raise InvalidInputError(f"onnx detector: mean and std need 3 numbers each, e.g. mean=[123.7,116.3,103.5] "
                                f"(std non-zero), got {mean!r} and {std!r}")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise MissingDependencyError("the onnx detector", "onnxruntime", None, exc) from exc

    threads = check_threads(threads)
    opts = ort_session_options(ort, threads)
    try:
        session = ort.InferenceSession(os.fspath(path), sess_options=opts, providers=_providers(ort, device))
    except InvalidInputError:
        raise
    except Exception as exc:
        raise DetectorError(f"onnx model {checkpoint}: cannot be loaded ({str(exc).strip()[:200]})") from exc
    _check_cuda_started(ort, session, device, f"onnx model {checkpoint}")

    inputs = session.get_inputs()
    inp = next((i for i in inputs if i.name == "img"), inputs[0] if len(inputs) == 1 else None)
    if inp is None:
        raise DetectorError(f"onnx model {checkpoint}: expected an input named 'img', got {[i.name for i in inputs]}")
    if len(inputs) > 1:  # (every image would fail at the first run with "required inputs are missing")
        others = [i.name for i in inputs if i.name != inp.name]
        raise DetectorError(f"onnx model {checkpoint}: takes {len(inputs)} inputs ({inp.name!r} and "
                            f"{', '.join(repr(n) for n in others)}); this adapter feeds the image alone: export "
                            "the model with the image as its only input")
    shape = list(inp.shape)
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise DetectorError(f"onnx model {checkpoint}: input {inp.name!r} should be (1, 3, H, W), got {shape}")
    if isinstance(shape[0], int) and shape[0] > 1:
        # (loaded, then every tile failed in onnxruntime's own words; an outside review)
        raise DetectorError(f"onnx model {checkpoint}: input {inp.name!r} takes a batch of exactly {shape[0]} "
                            f"images ({shape}); this adapter feeds one tile at a time: export with a batch of 1 "
                            "or a dynamic batch")
    if inp.type not in _INPUT_TYPES:
        raise DetectorError(f"onnx model {checkpoint}: input {inp.name!r} should be float32 or float16, got {inp.type}")
    fixed = [d if isinstance(d, int) and d > 0 else None for d in shape[2:]]
    if None in fixed:
        if input_size is None:
            raise DetectorError(
                f"onnx model {checkpoint}: input {inp.name!r} has no fixed size ({shape}); give its size (--input-size, or input_size=)"
            )
        # a side the export fixes stays fixed; the size given is the dynamic one's (it was both:
        # a model of dynamic height and width 320 loaded, then failed on every image; an outside review)
        model_hw = (fixed[0] or int(input_size), fixed[1] or int(input_size))
        known = [d for d in fixed if d is not None]
        if known and input_size > max(known):
            raise InvalidInputError(
                f"onnx model {checkpoint}: input size {input_size} is larger than the {known[0]} px its input "
                f"{inp.name!r} fixes ({shape}); give at most {known[0]}, or export with both sides dynamic")
    else:
        model_hw = (int(fixed[0]), int(fixed[1]))
        if input_size is not None and input_size > max(model_hw):
            raise InvalidInputError(
                f"onnx model {checkpoint}: input size {input_size} is larger than its fixed {model_hw[0]}x{model_hw[1]} "
                "input (tiles would only be shrunk back); give at most its longer side, or export with a dynamic input")
    outputs = [o.name for o in session.get_outputs()]
    if "det_bboxes" in outputs and "det_labels" in outputs:
        out_names: tuple[str, ...] = ("det_bboxes", "det_labels")
    elif len(outputs) == 2:
        out_names = _two_outputs(session.get_outputs())  # (in either order: an outside review)
    elif len(outputs) == 3:
        out_names = _three_outputs(session.get_outputs(), checkpoint)
    else:
        # (a YOLO export has one output, output0: the hint was only on the two-output path)
        raise DetectorError(f"onnx model {checkpoint}: expected outputs det_bboxes and det_labels (or boxes, "
                            f"scores and labels), got {outputs}"
                            + (" (for a YOLO export: --detector yolo)" if len(outputs) == 1 else ""))
    # the shapes the export declares, where it declares them: a model with two outputs of
    # another kind (a heatmap network, a raw YOLO head) is refused here, not on every image
    shapes = {o.name: list(o.shape) for o in session.get_outputs()}
    box_shape, label_shape = shapes[out_names[0]], shapes[out_names[-1]]
    width = 5 if len(out_names) == 2 else 4
    if box_shape and label_shape and (len(box_shape) not in (2, 3) or (isinstance(box_shape[-1], int) and box_shape[-1] != width)
            or len(label_shape) != len(box_shape) - 1):
        raise DetectorError(
            f"onnx model {checkpoint}: outputs {out_names[0]} {_shape_text(box_shape)} and {out_names[-1]} "
            f"{_shape_text(label_shape)} are not "
            + ("det_bboxes (n, 5) and det_labels (n,)" if width == 5 else "boxes (n, 4) and labels (n,)")
            + " (for a YOLO export: --detector yolo)")

    # the engine resizes every tile to the run's input size (this one unless a run asks another:
    # --scale, tile='auto'); the letterbox then only pads it, or shrinks a tile larger than the
    # input, never enlarges it back to the canvas. A square tile fits a non-square canvas
    # (800x1333) whole at its shorter side.
    size = int(input_size) if input_size is not None else min(model_hw)
    info = {
        "framework": "onnxruntime",
        "checkpoint": os.fspath(path),
        "model_input": [1, 3, model_hw[0], model_hw[1]],
        "input_size": size,
        "providers": list(session.get_providers()),
        "execution_provider": session.get_providers()[0],
        # the CUDA device asked for (cuda:N) when the session runs on CUDA, else what it reports
        "device": (device if _device_of(session) != "cpu" and str(device).startswith("cuda:") else _device_of(session)),
        "score_thr": float(score_thr),
        "label_offset": int(label_offset),
    }
    return OnnxDetector(
        session=session,
        input_name=inp.name,
        output_names=out_names,
        model_hw=model_hw,
        input_size=size,
        upscale=False,
        score_thr=float(score_thr),
        name=f"onnx:{path.stem}",
        class_names=class_names_option(class_names, "onnx detector"),
        mean=mean,
        std=std,
        info=info,
        input_dtype=_INPUT_TYPES[inp.type],
        label_offset=int(label_offset),
    )
