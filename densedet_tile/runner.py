"""Process one image file end to end: detect, then write every requested output atomically.

Shared by the single-image CLI and ``densedet-tile batch`` (in-process or on Ray workers), so
both write exactly the same files.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .errors import DensedetError, one_line
from .types import MergeSpec

if TYPE_CHECKING:
    from .pipeline import ImageResult
    from .tiler.readers import ImageSource

log = logging.getLogger(__name__)

__all__ = ["RunOptions", "Outcome", "process_image", "output_stem", "outputs_complete"]


@dataclass(frozen=True)
class RunOptions:
    """Everything but the detector that decides what the engine does with one image."""

    tile: int = 1280
    overlap: float = 0.2
    merge: MergeSpec = field(default_factory=MergeSpec)
    batch_size: int | None = None
    device: str = "auto"
    score_thr: float | None = None
    input_size: int | None = None
    max_pixels: int | None = None  # None here means the reader's default limit
    formats: tuple[str, ...] = ("json",)
    preview: bool = False


@dataclass(frozen=True)
class Outcome:
    """What happened to one input: ``status`` is ``"ok"`` or ``"error"``."""

    input: str
    status: str
    products: int | None = None
    tiles: int | None = None
    width: int | None = None
    height: int | None = None
    seconds: float = 0.0
    error: str | None = None
    outputs: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "input": self.input, "status": self.status, "products": self.products, "tiles": self.tiles,
            "width": self.width, "height": self.height, "seconds": round(self.seconds, 3),
            "error": self.error, "outputs": list(self.outputs),
        }


def output_stem(path: str | Path) -> str:
    """The stem every output file of ``path`` is named after."""
    return Path(path).stem or "image"


def outputs_complete(out_dir: str | Path, stem: str, opts: RunOptions) -> bool:
    """True when every output ``opts`` asks for exists for ``stem`` and its JSON parses whole."""
    import json

    from .writers import SCHEMA, output_paths

    paths = output_paths(out_dir, stem, tuple(f for f in opts.formats if f != "json"), opts.preview)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        doc = json.loads(paths["json"].read_text())
    except (OSError, ValueError):
        return False
    return doc.get("schema") == SCHEMA and len(doc.get("boxes", ())) == doc.get("num_detections")


def process_image(
    inp: str | Path,
    detector: Any,
    opts: RunOptions,
    out_dir: str | Path,
    *,
    stem: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    detect: "Callable[[ImageSource], ImageResult] | None" = None,
) -> Outcome:
    """Detect objects in the image file ``inp`` and write its outputs into ``out_dir``.

    ``detect``, when given, replaces the in-process :func:`~densedet_tile.pipeline.detect_image`
    call: it receives the opened image and returns its :class:`~densedet_tile.pipeline.ImageResult`
    (``densedet-tile batch --split`` fans the tiles out to workers this way); ``detector`` is
    then unused.

    Never raises for a bad image or a failing detector: the error comes back in the
    :class:`Outcome` (one line naming the input), and no output file of this image is left
    behind. KeyboardInterrupt still propagates (after cleaning up).
    """
    from .pipeline import detect_image
    from .tiler.readers import DEFAULT_MAX_PIXELS, open_image
    from .writers import output_paths, write_coco, write_csv, write_json, write_preview

    inp = str(inp)
    stem = stem or output_stem(inp)
    paths = output_paths(out_dir, stem, tuple(f for f in opts.formats if f != "json"), opts.preview)
    max_pixels = DEFAULT_MAX_PIXELS if opts.max_pixels is None else opts.max_pixels
    written: list[Path] = []
    t0 = time.perf_counter()
    try:
        with open_image(inp, max_pixels=max_pixels) as src:
            result = detect(src) if detect is not None else detect_image(
                src, detector, tile=opts.tile, overlap=opts.overlap, merge=opts.merge,
                batch_size=opts.batch_size, device=opts.device, score_thr=opts.score_thr,
                input_size=opts.input_size, progress=progress,
            )
            # the JSON goes last: its presence marks the image as complete for restarts
            if "csv" in paths:
                written.append(write_csv(result, paths["csv"]))
            if "coco" in paths:
                written.append(write_coco(result, paths["coco"]))
            if "preview" in paths:
                written.append(write_preview(result, paths["preview"], src))
            written.append(write_json(result, paths["json"]))
    except BaseException as exc:
        for w in written:  # an image's outputs land together or not at all
            w.unlink(missing_ok=True)
        if not isinstance(exc, Exception):
            raise
        log.debug("%s failed", inp, exc_info=True)
        msg = one_line(exc)
        if not isinstance(exc, (DensedetError, OSError)):
            msg = f"{type(exc).__name__}: {msg}"
        if inp not in msg and Path(inp).name not in msg:
            msg = f"{inp}: {msg}"
        return Outcome(input=inp, status="error", seconds=time.perf_counter() - t0, error=msg)
    return Outcome(
        input=inp, status="ok", products=len(result.detections), tiles=result.num_tiles,
        width=result.width, height=result.height, seconds=time.perf_counter() - t0,
        outputs=tuple(str(p) for p in written),
    )
