"""The short linear orchestrator: read -> tile -> predict -> merge.

Only the reader touches the input file; everything else here works on arrays. Tiles stream
through in batches (the next batch is read while the detector works on the current one), so
memory is bounded by the batch, not the image, wherever the reader can read by region.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .detector.base import Detector, input_size_of, resolve_device
from .errors import DetectorError, InvalidInputError
from .merge import merge_tiles
from .tiler import make_grid
from .tiler.batching import iter_tile_batches
from .tiler.readers import DEFAULT_MAX_PIXELS, open_image
from .tiler.resize import resize_to
from .types import Detections, MergeSpec, Tile, TileSpec

__all__ = ["detect", "detect_image", "predict_tiles", "ImageResult", "default_batch_size"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageResult:
    """Everything the engine knows about one processed image."""

    detections: Detections
    name: str
    path: str | None
    width: int
    height: int
    num_tiles: int
    settings: dict[str, Any]
    model: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def default_batch_size(device: str) -> int:
    """Tiles per ``predict`` call when the caller does not say: 4 on a GPU, 1 on the CPU.

    On the CPU a bigger batch gains nothing (torch already uses every core on one tile) and
    costs memory; on a GPU a few tiles per call keep it busy.
    """
    return 4 if device.startswith("cuda") else 1


def detect(
    source: str | os.PathLike[str] | np.ndarray,
    detector: Detector | None = None,
    *,
    tile: int = 1280,
    overlap: float = 0.2,
    merge: MergeSpec | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    score_thr: float | None = None,
    input_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: ProgressFn | None = None,
) -> Detections:
    """Detect objects in a giant image by tiles and return global boxes.

    ``source`` is an image path (JPEG, PNG, WebP, BMP, TIFF/BigTIFF...), an HxWx3 uint8 RGB
    array, or an image source already opened with :func:`densedet_tile.tiler.readers.open_image`
    (left open). ``detector`` is any object with ``predict(tiles) -> list[Detections]``; None loads
    the built-in default model on ``device``. The image is cut into ``tile`` px squares
    overlapping by ``overlap`` (a fraction of the tile), each tile is resized to the detector's
    ``input_size`` (or the ``input_size`` given here) when it declares one, and the per-tile
    boxes are merged per ``merge``. Boxes with a score below ``score_thr`` are dropped before
    the merge. Returns :class:`Detections` in pixels of the upright (EXIF-applied) image.
    """
    return detect_image(
        source,
        detector,
        tile=tile,
        overlap=overlap,
        merge=merge,
        batch_size=batch_size,
        device=device,
        score_thr=score_thr,
        input_size=input_size,
        max_pixels=max_pixels,
        progress=progress,
    ).detections


def detect_image(
    source: str | os.PathLike[str] | np.ndarray,
    detector: Detector | None = None,
    *,
    tile: int = 1280,
    overlap: float = 0.2,
    merge: MergeSpec | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    score_thr: float | None = None,
    input_size: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    progress: ProgressFn | None = None,
) -> ImageResult:
    """Like :func:`detect`, but also return image size, tile count, settings and timings."""
    t_start = time.perf_counter()
    spec = TileSpec(tile=tile, overlap=overlap)
    merge = MergeSpec() if merge is None else merge
    if not isinstance(merge, MergeSpec):
        raise InvalidInputError(f"merge must be a MergeSpec, got {type(merge).__name__}")
    dev, batch_size = _check_run_options(score_thr, input_size, batch_size, device)
    if detector is None:
        from .detector.registry import load_detector

        detector = load_detector("default", device=dev)
    model_size = _model_size(detector, input_size)

    t_open = time.perf_counter()
    if _is_image_source(source):  # already open (the CLI keeps it open for the preview)
        ctx: Any = contextlib.nullcontext(source)
    else:
        ctx = open_image(source, max_pixels=max_pixels)
    with ctx as src:
        name, path = src.name, (None if src.path is None else str(src.path))
        width, height = src.width, src.height
        tiles = make_grid(width, height, spec)
        runner = _Runner(detector, batch_size, name)
        t_read = time.perf_counter() - t_open
        stats: dict[str, float] = {}
        done_dets = _predict_tiles(src, tiles, runner, model_size, score_thr, progress, stats)
    t_merge0 = time.perf_counter()
    merged = merge_tiles(tiles, done_dets, merge)
    t_end = time.perf_counter()
    timings = {
        "read_s": round(t_read + stats["read_s"], 4),
        "resize_s": round(stats["resize_s"], 4),
        "predict_s": round(runner.predict_s, 4),
        "merge_s": round(t_end - t_merge0, 4),
        "total_s": round(t_end - t_start, 4),
    }
    settings = {
        "tile": spec.tile,
        "overlap": spec.overlap,
        "merge": asdict(merge),
        "batch_size": batch_size,
        "final_batch_size": runner.batch_size,
        "device": dev,
        "score_thr": score_thr,
        "input_size": model_size,
    }
    return ImageResult(
        detections=merged,
        name=name,
        path=path,
        width=width,
        height=height,
        num_tiles=len(tiles),
        settings=settings,
        model=describe_detector(detector),
        timings=timings,
    )


def predict_tiles(
    src: Any,
    tiles: Sequence[Tile],
    detector: Detector,
    *,
    batch_size: int | None = None,
    input_size: int | None = None,
    score_thr: float | None = None,
    device: str = "auto",
    progress: ProgressFn | None = None,
    timings: dict[str, float] | None = None,
) -> list[Detections]:
    """Run ``detector`` over some ``tiles`` of the open image ``src``, without merging.

    The tiles are read, batched, resized to the model size and mapped back exactly as
    :func:`detect_image` does (``input_size`` None: what the detector declares; ``batch_size``
    None: the default for ``device``), and boxes scoring below ``score_thr`` are dropped.
    Returns one :class:`Detections` per tile, in the order given, in *tile-local* pixels; pass
    them with the same tiles to :func:`densedet_tile.merge.merge_tiles` for global boxes.
    ``densedet-tile batch --split`` runs this on each worker for its share of a giant image.
    When ``timings`` is a dict, ``read_s``, ``resize_s`` and ``predict_s`` are added to it.
    """
    dev, batch_size = _check_run_options(score_thr, input_size, batch_size, device)
    model_size = _model_size(detector, input_size)
    runner = _Runner(detector, batch_size, str(getattr(src, "name", "<image>")))
    stats: dict[str, float] = {}
    dets = _predict_tiles(src, list(tiles), runner, model_size, score_thr, progress, stats)
    if timings is not None:
        for k, v in (("read_s", stats["read_s"]), ("resize_s", stats["resize_s"]), ("predict_s", runner.predict_s)):
            timings[k] = timings.get(k, 0.0) + v
    return dets


def _model_size(detector: object, input_size: int | None) -> int | None:
    """Check ``detector`` has ``predict``; the side tiles are resized to (None: native)."""
    if not callable(getattr(detector, "predict", None)):
        raise InvalidInputError(f"detector must have a predict(tiles) method, got {type(detector).__name__}")
    return input_size if input_size is not None else input_size_of(detector)


def _check_run_options(
    score_thr: float | None, input_size: int | None, batch_size: int | None, device: str
) -> tuple[str, int]:
    """Validate the per-run options; return the resolved device and batch size."""
    if score_thr is not None and not (isinstance(score_thr, (int, float)) and 0.0 <= score_thr <= 1.0):
        raise InvalidInputError(f"score_thr must be in [0, 1], got {score_thr!r}")
    if input_size is not None and (isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 16):
        raise InvalidInputError(f"input_size must be an int >= 16, got {input_size!r}")
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = default_batch_size(dev)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")
    return dev, batch_size


def _predict_tiles(
    src: Any,
    tiles: list[Tile],
    runner: "_Runner",
    model_size: int | None,
    score_thr: float | None,
    progress: ProgressFn | None,
    stats: dict[str, float],
) -> list[Detections]:
    """The tile loop shared by :func:`detect_image` and :func:`predict_tiles`.

    Fills ``stats`` with ``read_s`` (time spent waiting for pixels) and ``resize_s``.
    """
    # Tiles are resized in the reader thread, so resizing overlaps inference too.
    feed = src if model_size is None else _ResizingSource(src, model_size)
    done: list[Detections] = []
    t_read = 0.0
    wait_start = time.perf_counter()
    for batch_tiles, arrays in iter_tile_batches(feed, tiles, runner.batch_size):
        t_read += time.perf_counter() - wait_start
        dets = runner.predict(arrays)
        for t, a, d in zip(batch_tiles, arrays, dets):
            d = _to_tile_frame(d, a.shape[1] / t.w, a.shape[0] / t.h, t.w, t.h)
            if score_thr is not None and len(d):
                d = d[d.scores >= score_thr]
            done.append(d)
        if progress is not None:
            progress(len(done), len(tiles))
        wait_start = time.perf_counter()
    stats["read_s"] = t_read
    stats["resize_s"] = getattr(feed, "resize_s", 0.0)
    return done


def _is_image_source(obj: object) -> bool:
    return not isinstance(obj, (str, os.PathLike, np.ndarray)) and all(
        hasattr(obj, a) for a in ("read", "width", "height", "name")
    )


def describe_detector(detector: object) -> dict[str, Any]:
    """A small JSON-able description of a detector for output files.

    ``name``, ``input_size`` and ``class_names`` when the detector has them, and under ``info``
    the entries of its own ``info`` dict (config, checkpoint, training run...) whose values are
    JSON scalars.
    """
    info: dict[str, Any] = {"name": str(getattr(detector, "name", type(detector).__name__))}
    size = getattr(detector, "input_size", None)
    if size is not None:
        info["input_size"] = size
    names = getattr(detector, "class_names", None)
    if names:
        info["class_names"] = list(names)
    extra = getattr(detector, "info", None)
    if isinstance(extra, dict):
        scalars = {str(k): v for k, v in extra.items() if v is None or isinstance(v, (str, int, float, bool))}
        if scalars:
            info["info"] = scalars
    return info


def _is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class _Runner:
    """Calls the detector on a batch: resizing, validating, OOM back-off and timing."""

    def __init__(self, detector: Detector, batch_size: int, image_name: str) -> None:
        self.detector = detector
        self.batch_size = batch_size
        self.image_name = image_name
        self.predict_s = 0.0

    def predict(self, inputs: Sequence[np.ndarray]) -> list[Detections]:
        """Run the detector over ``inputs`` in chunks of the current batch size."""
        out: list[Detections] = []
        start = 0
        while start < len(inputs):
            chunk = inputs[start : start + self.batch_size]
            try:
                t1 = time.perf_counter()
                res = self.detector.predict(chunk)
                self.predict_s += time.perf_counter() - t1
            except Exception as exc:
                if not _is_oom(exc):
                    if isinstance(exc, DetectorError):
                        raise
                    raise DetectorError(
                        f"{self.image_name}: detector failed: {type(exc).__name__}: {exc}"
                    ) from exc
                self._recover_from_oom(len(chunk))
                continue  # retry the same chunk at the new batch size / device
            out.extend(self._validate(res, chunk))
            start += len(chunk)
        return out

    def _recover_from_oom(self, chunk_len: int) -> None:
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        if chunk_len > 1:
            self.batch_size = max(1, chunk_len // 2)
            warnings.warn(
                f"{self.image_name}: out of GPU memory; retrying with batch size {self.batch_size}",
                RuntimeWarning,
                stacklevel=3,
            )
            return
        to = getattr(self.detector, "to", None)
        if to is None or getattr(self.detector, "_densedet_on_cpu", False):
            raise DetectorError(f"{self.image_name}: out of memory even with one tile per batch")
        warnings.warn(
            f"{self.image_name}: out of GPU memory with one tile per batch; continuing on the CPU",
            RuntimeWarning,
            stacklevel=3,
        )
        to("cpu")
        try:
            self.detector._densedet_on_cpu = True  # type: ignore[attr-defined]
        except AttributeError:
            pass

    def _validate(self, res: object, chunk: Sequence[np.ndarray]) -> list[Detections]:
        who = f"{self.image_name}: detector {type(self.detector).__name__}"
        if not isinstance(res, (list, tuple)) or len(res) != len(chunk):
            got = f"{type(res).__name__} of length {len(res)}" if isinstance(res, (list, tuple)) else type(res).__name__
            raise DetectorError(f"{who} returned {got} for {len(chunk)} tiles; expected a list of Detections, one per tile")
        out = []
        for d in res:
            if not isinstance(d, Detections):
                raise DetectorError(f"{who} returned a {type(d).__name__} for a tile; expected Detections")
            out.append(d)
        return out


class _ResizingSource:
    """An image source whose windows come out resized so their longer side is ``size``."""

    def __init__(self, src: Any, size: int) -> None:
        self.src, self.size, self.resize_s = src, size, 0.0

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        a = self.src.read(x, y, w, h)
        if max(a.shape[0], a.shape[1]) == self.size:
            return a
        t0 = time.perf_counter()
        r, _ = resize_to(a, self.size)
        self.resize_s += time.perf_counter() - t0
        return r


def _to_tile_frame(d: Detections, sx: float, sy: float, w: int, h: int) -> Detections:
    """Map boxes from the model input (tile scaled by sx, sy) to tile pixels, clipped to the tile."""
    if not len(d):
        return d
    xyxy = d.xyxy
    if sx != 1.0 or sy != 1.0:
        xyxy = xyxy / np.array([sx, sy, sx, sy], dtype=np.float32)
    lim = np.array([w, h, w, h], dtype=np.float32)
    xyxy = np.clip(xyxy, 0.0, lim)
    keep = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])
    return Detections(xyxy[keep], d.scores[keep], d.labels[keep])
