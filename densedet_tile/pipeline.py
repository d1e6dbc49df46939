"""The engine in three stages: ``plan`` -> ``predict_tiles`` -> ``finish``.

``plan`` cuts an open image into tiles (pure), ``predict_tiles`` streams the tiles through a
detector in batches (the next batch is read while the detector works on the current one, so
memory is bounded by the batch, not the image, wherever the reader can read by region) and
returns tile-local boxes, and ``finish`` merges them into global boxes and describes the run.
:func:`detect_image` is their composition; ``densedet-tile batch --split`` runs ``plan`` and
``finish`` on the driver and ``predict_tiles`` on the workers. Only the reader touches the
input file; everything here works on arrays and specs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Callable, Sequence, cast

import numpy as np

from .detector.base import (Detector, box_end_offset_of, class_names_of, classes_of, device_of, input_size_of,
                            product_size_of, resize_filter_of, score_floor_for, score_floor_of, score_thr_of,
                            tiles_resized_to)
from .detector.calls import DetectorCalls, back_to_the_gpu, image_key
from .errors import InvalidInputError, caller_level
from .merge import merge_tiles
from .merge.core import suppress_piles, warn_piles
from .scale import choose_scale
from .tiler import make_grid
from .tiler.batching import iter_tile_batches, stored_order
from .tiler.readers import open_image
from .tiler.resize import resize_to
from .types import CONFIRM_BAND, CountRange, Detections, MergeSpec, RunSpec, Tile, TileSpec, default_batch_size, finite_or_name

__all__ = [
    "detect",
    "detect_image",
    "plan",
    "predict_tiles",
    "finish",
    "resolve_run",
    "specs_from",
    "describe_detector",
    "ImageResult",
    "Predictions",
    "merge_counted",
    "merged_at",
    "counts_at_thresholds",
    "default_batch_size",
]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]

_TILING_KEYS = ("tile", "overlap")
_RUN_KEYS = ("batch_size", "device", "precision", "score_thr", "input_size", "max_pixels", "max_vram", "scale",
             "count_band", "classes")


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
    count_range: CountRange | None = None
    #: boxes of the count range's upper end that score below the threshold (the boxes the model
    #: half sees: drawn in the preview), None without that end
    near_misses: Detections | None = None
    #: the EXIF / TIFF orientation the reader applied (1: none): boxes, ``width`` and ``height``
    #: are those of the upright image, which is the stored one turned or mirrored by it
    orientation: int = 1


@dataclass
class Predictions:
    """What :func:`predict_tiles` returns: one tile-local :class:`Detections` per tile, in order.

    ``run`` is the run spec as resolved for the detector (device, batch size, input size and
    score threshold filled in); ``final_batch_size`` is the batch size in use at the end (smaller
    after running out of GPU memory); the ``*_s`` fields are seconds spent waiting for pixels,
    resizing tiles and inside ``predict``. ``dets`` reach down to ``run.score_thr - run.count_band
    - CONFIRM_BAND`` (for the count range, and for the boxes that confirm cut views just below
    each of its thresholds; :meth:`served` drops what lies below the threshold); ``score_floor``
    is the lowest score the detector returns (None: not known).
    """

    dets: list[Detections]
    run: RunSpec
    final_batch_size: int
    read_s: float = 0.0
    resize_s: float = 0.0
    predict_s: float = 0.0
    score_floor: float | None = None

    def served(self) -> list[Detections]:
        """``dets`` without the boxes below ``run.score_thr``: what to merge when merging by hand
        (:func:`finish` does it, and counts the boxes around the threshold too)."""
        thr = self.run.score_thr
        return list(self.dets) if thr is None else _at_least(self.dets, thr)

    @classmethod
    def join(cls, parts: Sequence["Predictions"]) -> "Predictions":
        """Several parts of one image's tiles, in tile order, as one (timings added up)."""
        if not parts:
            raise InvalidInputError("no predictions to join")
        return cls(
            dets=[d for p in parts for d in p.dets], run=parts[0].run,
            final_batch_size=min(p.final_batch_size for p in parts),
            read_s=sum(p.read_s for p in parts), resize_s=sum(p.resize_s for p in parts),
            predict_s=sum(p.predict_s for p in parts),
            # the boxes reach only as low as the highest floor of the parts (unknown if any is)
            score_floor=None if any(p.score_floor is None for p in parts) else max(p.score_floor for p in parts),
        )




def specs_from(
    tiling: TileSpec | None = None,
    merge: MergeSpec | None = None,
    run: RunSpec | None = None,
    **short: Any,
) -> tuple[TileSpec, MergeSpec, RunSpec]:
    """The three specs of a call, from spec objects or their short keywords (not both).

    ``tile``/``overlap`` build a :class:`TileSpec`; ``batch_size``, ``device``, ``precision``,
    ``score_thr``, ``input_size``, ``max_pixels``, ``max_vram``, ``scale``, ``count_band`` and
    ``classes`` build a :class:`RunSpec`.
    """
    unknown = sorted(set(short) - set(_TILING_KEYS) - set(_RUN_KEYS))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(unknown)}")
    t_kw = {k: short[k] for k in _TILING_KEYS if k in short}
    r_kw = {k: short[k] for k in _RUN_KEYS if k in short}
    for spec, kw, what in ((tiling, t_kw, "tiling"), (run, r_kw, "run")):
        if spec is not None and kw:
            raise InvalidInputError(f"give either {what}= or its keywords ({', '.join(kw)}), not both")
    for spec, cls, what in ((tiling, TileSpec, "tiling"), (merge, MergeSpec, "merge"), (run, RunSpec, "run")):
        if spec is not None and not isinstance(spec, cls):
            raise InvalidInputError(f"{what} must be a {cls.__name__}, got {type(spec).__name__}")
    return (
        tiling if tiling is not None else TileSpec(**t_kw),
        merge if merge is not None else MergeSpec(),
        run if run is not None else RunSpec(**r_kw),
    )


def resolve_run(detector: object, run: RunSpec) -> RunSpec:
    """``run`` with what it leaves open decided for ``detector``: device, batch size, input size
    and score threshold (the detector's declared ``score_thr``; None when it declares none), and
    its ``classes`` as class ids (names looked up in the detector's ``class_names``).

    Checks that ``detector`` has ``predict``. Imports no framework (see
    :func:`densedet_tile.detector.base.device_of`).
    """
    if not callable(getattr(detector, "predict", None)):
        hint = (f"; a name is built into one by load_detector({detector!r})" if isinstance(detector, str) else "")
        raise InvalidInputError(f"detector must have a predict(tiles) method, got {type(detector).__name__}{hint}")
    device = device_of(detector, run.device)
    class_names_of(detector)  # checked before any tile is run, not when the outputs are written
    return replace(
        run,
        device=device,
        batch_size=run.batch_size if run.batch_size is not None else default_batch_size(device),
        input_size=run.input_size if run.input_size is not None else input_size_of(detector),
        score_thr=run.score_thr if run.score_thr is not None else score_thr_of(detector),
        classes=classes_of(detector, run.classes),
    )


#: A tile enlarged more than this many times to reach the model's input is warned about: a
#: tile far smaller than the model sees (``tile=32`` for a 640 px model) magnifies products beyond
#: anything it was trained on and multiplies the tiles.
TINY_TILE_ZOOM = 4.0


def detect(
    source: str | os.PathLike[str] | np.ndarray | Any,
    detector: Detector | None = None,
    *,
    tiling: TileSpec | None = None,
    merge: MergeSpec | None = None,
    run: RunSpec | None = None,
    progress: ProgressFn | None = None,
    **short: Any,
) -> Detections:
    """Detect objects in a giant image by tiles and return global boxes.

    ``source`` is an image path (JPEG, PNG, WebP, BMP, TIFF/BigTIFF...), an HxWx3 uint8 RGB
    array, or an image source already opened with :func:`densedet_tile.tiler.readers.open_image`
    (left open). ``detector`` is any object with ``predict(tiles) -> list[Detections]``; None
    loads the built-in default model. ``tiling`` says how the image is cut (default 1280 px
    tiles overlapping by 0.2), ``merge`` how tile boxes become global ones, ``run`` the batch
    size, device, precision, score threshold, model input size, pixel limit and VRAM budget;
    the short keywords ``tile=``, ``overlap=``, ``batch_size=``, ``device=``, ``score_thr=``,
    ``input_size=``... build those specs for you. Returns :class:`Detections` in pixels of the
    upright (EXIF-applied) image.
    """
    return detect_image(source, detector, tiling=tiling, merge=merge, run=run, progress=progress, **short).detections


def detect_image(
    source: str | os.PathLike[str] | np.ndarray | Any,
    detector: Detector | None = None,
    *,
    tiling: TileSpec | None = None,
    merge: MergeSpec | None = None,
    run: RunSpec | None = None,
    progress: ProgressFn | None = None,
    **short: Any,
) -> ImageResult:
    """Like :func:`detect`, but also return image size, tile count, settings and timings."""
    t_start = time.perf_counter()
    tiling, merge, run = specs_from(tiling, merge, run, **short)
    if progress is not None and not callable(progress):
        raise InvalidInputError(f"progress must be a function progress(done, total) or None, got {type(progress).__name__}")
    if detector is None:
        from .detector.registry import load_detector

        # with the run's threshold, so the model returns boxes down to it (as the CLI builds it)
        detector = load_detector("default", device=run.device, precision=run.precision, score_thr=run.score_thr)
    elif run.precision != "fp32" and getattr(detector, "_densedet_precision_asked", None) != run.precision:
        # a detector built already runs at the precision it was built with (an outside review: the
        # settings said fp16 of an int8 model, without a word); one load_detector built for this
        # precision has said what became of it already (fp16 on the CPU)
        info = getattr(detector, "info", None)
        own = info.get("precision") if isinstance(info, dict) else None
        if own != run.precision:
            warnings.warn(f"precision={run.precision!r} applies where the engine builds the model; this detector "
                          f"runs at {own or 'the precision it was built with'} (give the precision to "
                          "load_detector)", RuntimeWarning, stacklevel=caller_level())
    ctx: Any = contextlib.nullcontext(source) if _is_image_source(source) else open_image(source, max_pixels=run.max_pixels)
    t_open = time.perf_counter()
    with ctx as src:
        t_open = time.perf_counter() - t_open
        if run.max_vram is not None:
            from .vram import fit_to_vram

            # back on its GPU first when an earlier image's out-of-memory moved it to the CPU
            # (predict_tiles would move it only after the plan): planned for the CPU, the budget
            # was "ignored on the CPU" and the image ran at batch 1 on the GPU
            back_to_the_gpu(detector, image_key(src))
            tiling, run = fit_to_vram(detector, tiling, run)
        scaled = choose_scale(src, detector, tiling, run, merge)
        tiles = plan(src, scaled.tiling)
        side = scaled.run.input_size or input_size_of(detector)
        # (tiles the engine cut at a scale it chose, a photo rule's or tile auto's, are meant to
        # show small products larger)
        if side and len(tiles) > 1 and side > TINY_TILE_ZOOM * max(tiles[0].w, tiles[0].h) \
                and scaled.info.get("source") not in ("photo rule", "auto"):
            log.warning("%s: %d px tiles are shown to the model at %d px (%.0fx larger): products look that much "
                        "bigger than in the photo, and it runs %d tiles; a tile near the model's input is usual",
                        src.name, max(tiles[0].w, tiles[0].h), side, side / max(tiles[0].w, tiles[0].h), len(tiles))
        if len(tiles) > 1:
            _warn_narrow_overlap(src.name, tiles, merge_at_model_scale(merge, tiles, side))
        preds = predict_tiles(src, tiles, detector, scaled.run, progress=progress)
    preds.read_s += t_open
    result = finish(src, tiles, preds, tiling=scaled.tiling, merge=merge, model=describe_detector(detector),
                    started=t_start, extra_settings={"scale": scaled.info})
    if scaled.info.get("source") != "auto" and side and tiles:
        _warn_small_products(result, product_size_of(detector), side / max(tiles[0].w, tiles[0].h))
    return result


#: Products shown to the model under this share of the size it declares (``product_size``)
#: are warned about: far below it a model finds only some of them (a panorama of a whole
#: aisle at the default tile), and ``tile="auto"`` measures them instead. The median height is
#: of the boxes found, the larger products when the small ones are missed, so it reads high:
#: at half (0.5 until 2026-12-07) a panorama of six real photos shrunk to a quarter counted
#: 44 % under its full size without a word, its found boxes at 40 model px and the products,
#: as ``tile="auto"`` measures them, at 32 (an outside review). On the 85 real photos at the
#: defaults this warns on 2 (at 0.5: 1), one 23 % under the human count.
SMALL_PRODUCT_SHARE = 0.625


def _warn_small_products(result: ImageResult, target: float | None, zoom: float) -> None:
    """Warn when the boxes found (10 or more) reach the model, in their median height, at under
    :data:`SMALL_PRODUCT_SHARE` of the detector's ``product_size`` (``zoom``: model input pixels
    per image pixel)."""
    xyxy = result.detections.xyxy
    if target is None or len(xyxy) < 10:
        return
    seen = float(np.median(xyxy[:, 3] - xyxy[:, 1])) * zoom
    if seen < SMALL_PRODUCT_SHARE * target:
        log.warning("%s: the products found reach the model at about %.0f px high, well under the %.0f px it was "
                    "trained on (and those found are the larger ones), so many are likely missed; tile='auto' "
                    "(--tile auto) measures them and picks the tile, or give a smaller tile", result.name, seen, target)


#: The least tolerance of the seam merge, in the model's pixels: a detector's box noise is in
#: the pixels it sees, while ``MergeSpec.edge_tol`` / ``seam_tol`` are image pixels (16 by
#: default: 8 model pixels at the built-in model's usual scale, 1280 px tiles shown at 640).
#: Where tiles are shrunk more (a 48 MP photo, a close-up, --tile auto or --scale on large
#: products), both are raised to this many model pixels: a fake detector with 2 px of box noise
#: left 27 seam fragments of 575 products at scale 0.2 and 68 at 0.1 with 16 image px, none with
#: the floor; the merge then works as at the usual scale (an outside review).
MIN_MODEL_TOL_PX = 8.0
_TOL_CEILING = 9999.0  # MergeSpec's pixel tolerances are under 10000


def merge_at_model_scale(merge: MergeSpec, tiles: Sequence[Tile], input_size: int | None) -> MergeSpec:
    """``merge`` with its pixel tolerances raised to :data:`MIN_MODEL_TOL_PX` model pixels where
    the tiles reach the model shrunk (``input_size``: the side each tile is resized to; None, a
    detector that sees tiles at their size: unchanged). Never lowered."""
    if not input_size or len(tiles) < 2 or merge.mode == "none":  # (one tile: no seam to merge across)
        return merge
    zoom = input_size / max(max(t.w, t.h) for t in tiles)  # model pixels per image pixel, full tiles
    # (under MergeSpec's own ceiling: a 20000 px tile shown at 16 px asked for 10000)
    floor = min(math.ceil(100 * MIN_MODEL_TOL_PX / zoom) / 100, _TOL_CEILING)
    if floor <= merge.edge_tol and floor <= merge.seam_tol:
        return merge
    return replace(merge, edge_tol=max(merge.edge_tol, floor), seam_tol=max(merge.seam_tol, floor))


def _tile_overlap(tiles: Sequence[Tile]) -> int | None:
    """The least overlap in pixels between neighbouring tiles of a grid, along either axis
    (the last tile of a row or column sits flush with the border and may overlap more); None
    for a single tile."""
    least = None
    for starts in ({(t.x, t.w) for t in tiles}, {(t.y, t.h) for t in tiles}):
        s = sorted(starts)
        for (a, w), (b, _) in zip(s, s[1:]):
            if b > a:
                least = a + w - b if least is None else min(least, a + w - b)
    return least


def _warn_narrow_overlap(name: str, tiles: Sequence[Tile], merge: MergeSpec) -> None:
    """Say when the tiles overlap too little for the seam repair (``MergeSpec.seam_overlap_px``): two
    products 2 px apart across a 26 px overlap were joined into one box, a 10 px product between
    two larger ones across 40 px was lost (outside reviews), and without any overlap the two
    fragments of a cut product never reach past each other's cut. Judged on the tiles as cut
    (a tile chosen by the engine, a last tile flush with the border), with the advice as a
    fraction of that tile."""
    px = _tile_overlap(tiles)
    least = merge.seam_overlap_px
    if px is None or merge.mode == "none" or px >= least:
        return
    side = max(max(t.w, t.h) for t in tiles)
    need = min(0.5, math.ceil(100 * math.ceil(least) / side) / 100)  # rounded up, as it is said
    if least > 0.5 * side:  # no overlap a tile this small can give: say what can
        advice = (f"tiles of {2 * math.ceil(least)} px or more (at overlap 0.5), or a smaller --edge-tol and "
                  f"--seam-tol (image pixels: a product seen this much enlarged is placed that much more finely)")
    elif px <= 0:
        advice = f"an overlap of {max(need, 0.2):.2g} or more of these {side} px tiles"
    else:
        advice = f"an overlap of {need:.2g} or more of these {side} px tiles ({math.ceil(least)} px)"
    if px <= 0:
        log.warning("%s: tiles without overlap: a product cut by a seam is seen as two fragments that "
                    "cannot be joined, so it may be counted twice or come out short; %s avoids it", name, advice)
    else:
        log.warning("%s: the tiles overlap by %d px, under the %d px the seam repair needs (over twice the %g px "
                    "band of cut box sides and the %g px tolerance of agreeing sides): a product cut by a seam and "
                    "products meeting there look alike, so some cut products stay in two pieces, some neighbours "
                    "are joined and a small product beside a larger one can be lost; %s avoids it", name, px,
                    math.ceil(least), merge.edge_tol, merge.seam_tol, advice)


def plan(source: Any, tiling: TileSpec) -> list[Tile]:
    """The tiles of an image (anything with ``width`` and ``height``) cut as ``tiling`` says."""
    if not (hasattr(source, "width") and hasattr(source, "height")):
        raise InvalidInputError(f"plan needs an open image (dt.open_image(path_or_array)) or anything with width "
                                f"and height, got {type(source).__name__}")
    return make_grid(int(source.width), int(source.height), tiling)


def predict_tiles(
    src: Any,
    tiles: Sequence[Tile],
    detector: Detector,
    run: RunSpec | None = None,
    *,
    progress: ProgressFn | None = None,
) -> Predictions:
    """Run ``detector`` over ``tiles`` of the open image ``src``, without merging.

    ``run`` must not carry a ``scale`` (refused): the scale is decided before the tiles are cut,
    by :func:`densedet_tile.scale.choose_scale`, whose ``tiling`` goes to :func:`plan` and whose
    ``run`` comes here (it also applies a detector's ``photo_scale`` rule, as :func:`detect_image`
    does; without that step tiles run at the tiling given).

    Tiles are read, batched and resized to the model size, and boxes are mapped back to tile
    pixels (not yet clipped to the tile: :func:`finish` does that); boxes scoring below
    ``run.score_thr - run.count_band - CONFIRM_BAND`` are dropped (:func:`finish` applies ``run.score_thr``
    and counts the rest). The detections are in
    *tile-local* pixels, one per tile in the order given: hand them to :func:`finish` with the
    same tiles for global boxes (or to :func:`merge_counted`, which also gives the count range;
    ``preds.served()`` alone through :func:`densedet_tile.merge.merge_tiles` merges without the
    boxes just below the threshold that confirm seam fragments, so its boxes can differ).
    """
    if not _is_image_source(src):
        raise InvalidInputError(f"predict_tiles needs an open image (dt.open_image(path_or_array)), "
                                f"got {type(src).__name__}")
    tiles = list(tiles)
    if not all(isinstance(t, Tile) for t in tiles):
        bad = next(t for t in tiles if not isinstance(t, Tile))
        raise InvalidInputError(f"predict_tiles needs the Tile objects plan() returns, got {type(bad).__name__}")
    if run is not None and not isinstance(run, RunSpec):
        raise InvalidInputError(f"predict_tiles needs a RunSpec, got {type(run).__name__}")
    if run is not None and run.scale is not None:
        # the scale sets the tiles (and the model's input), so it is spent before plan() cuts them
        raise InvalidInputError(
            "predict_tiles: run.scale decides the tiles, so it comes before plan(): choice = "
            "densedet_tile.scale.choose_scale(src, detector, tiling, run), then plan(src, choice.tiling) and "
            "predict_tiles(src, tiles, detector, choice.run), as detect_image does")
    # an earlier image's out-of-memory moved the detector to the CPU: this image tries the GPU
    back_to_the_gpu(detector, image_key(src))
    run = resolve_run(detector, RunSpec() if run is None else run)
    keep_from = None if run.score_thr is None else max(run.score_thr - run.count_band - CONFIRM_BAND, 0.0)
    floor = score_floor_of(detector)
    if run.score_thr is not None and floor is not None and floor > run.score_thr + 1e-9:
        # a detector built once and shared (a service) keeps the threshold it was built with
        warnings.warn(f"score_thr {run.score_thr:g} is below the lowest score this detector returns ({floor:g}, "
                      "from the threshold it was built with), so it keeps the boxes from there only; build the "
                      f"detector with score_thr={run.score_thr:g} to see lower ones", RuntimeWarning,
                      stacklevel=caller_level())
    # (the tiles' side at the model: the batch an out of memory brought tiles of that side down
    # to is read no more at a time than the model takes)
    side = run.input_size if run.input_size is not None else max((max(t.w, t.h) for t in tiles), default=0)
    runner = DetectorCalls(detector, int(run.batch_size or 1), str(getattr(src, "name", "<image>")), image_key(src),
                           device=run.device, side=side)
    # Tiles are resized in the reader thread, so resizing overlaps inference too.
    feed = src if run.input_size is None else _ResizingSource(src, run.input_size, resize_filter_of(detector))
    end_offset = box_end_offset_of(detector)
    # read in the file's own row order (a quarter-turned TIFF's strips once each), kept in tile order
    order = stored_order(src, tiles)
    done: list[Detections | None] = [None] * len(tiles)
    n_done = 0
    read_s = 0.0
    wait_start = time.perf_counter()
    for batch_tiles, arrays in iter_tile_batches(feed, [tiles[i] for i in order], runner.batch_size):
        read_s += time.perf_counter() - wait_start
        with tiles_resized_to(run.input_size):  # (a model with its own resize keeps them so)
            found = runner.predict(arrays)
        for t, a, d in zip(batch_tiles, arrays, found):
            d = _to_tile_frame(d, a.shape[1] / t.w, a.shape[0] / t.h, end_offset)
            if keep_from is not None and len(d):
                d = d[d.scores >= keep_from]
            if run.classes is not None and len(d):
                d = d[np.isin(d.labels, run.classes)]
            done[order[n_done]] = d
            n_done += 1
        if progress is not None:
            progress(n_done, len(tiles))
        wait_start = time.perf_counter()
    if getattr(detector, "_densedet_on_cpu", False) and run.device != "cpu":
        # it ran out of GPU memory and moved to the CPU: say where and how it ran (fp16 is CUDA's)
        run = replace(run, device="cpu", precision="fp32" if run.precision == "fp16" else run.precision)
    return Predictions(cast("list[Detections]", done), run, runner.batch_size, read_s=read_s,
                       resize_s=getattr(feed, "resize_s", 0.0), predict_s=runner.predict_s,
                       score_floor=score_floor_of(detector))


def finish(
    src: Any,
    tiles: Sequence[Tile],
    preds: Predictions,
    *,
    tiling: TileSpec,
    merge: MergeSpec,
    model: dict[str, Any] | Detector,
    started: float | None = None,
    extra_settings: dict[str, Any] | None = None,
) -> ImageResult:
    """Merge the tile-local ``preds`` of ``tiles`` into global boxes and describe the run.

    ``src`` gives the image's ``name``, ``path``, ``width`` and ``height``; ``model`` is the
    detector's description (:func:`describe_detector`; the detector itself is described here);
    ``started`` is the ``time.perf_counter()`` at which the image's work began (for
    ``total_s``). The result's ``settings`` are the specs as they ran, plus ``extra_settings``.
    """
    if not isinstance(model, dict):
        if not callable(getattr(model, "predict", None)):
            raise InvalidInputError(f"model must be the detector's description (describe_detector(detector)) or "
                                    f"the detector, got {type(model).__name__}")
        model = describe_detector(model)
    if len(preds.dets) != len(tiles):
        raise InvalidInputError(f"{src.name}: {len(preds.dets)} tile results for {len(tiles)} tiles")
    merge = merge_at_model_scale(merge, tiles, preds.run.input_size)  # (recorded as it ran)
    t_merge = time.perf_counter()
    merged, counts, near = merge_counted(tiles, preds, merge)
    t_end = time.perf_counter()
    timings = {
        "read_s": round(preds.read_s, 4),
        "resize_s": round(preds.resize_s, 4),
        "predict_s": round(preds.predict_s, 4),
        "merge_s": round(t_end - t_merge, 4),
        "total_s": round(t_end - (t_merge if started is None else started), 4),
    }
    extra = dict(extra_settings or {})
    scale = extra.get("scale")
    if isinstance(scale, dict) and "seconds" in scale:
        # the time the scale's probes took is a timing: in the settings it made two runs of one
        # photo with one command differ (an outside review)
        extra["scale"] = {k: v for k, v in scale.items() if k != "seconds"}
        timings["scale_s"] = scale["seconds"]
    settings = {**asdict(tiling), "merge": asdict(merge), **asdict(preds.run),
                "final_batch_size": preds.final_batch_size, **extra}
    info = model.get("info")
    ran = info.get("precision") if isinstance(info, dict) else None
    if isinstance(ran, str) and ran:
        # the precision the model ran at, where it says (the built-in model asked for fp16 on the
        # CPU runs its int8 ONNX file: settings said fp16; an outside review)
        settings["precision"] = ran
    path = getattr(src, "path", None)
    return ImageResult(
        detections=merged, name=str(src.name), path=None if path is None else str(path),
        width=int(src.width), height=int(src.height), num_tiles=len(tiles), settings=settings,
        model=model, timings=timings, count_range=counts, near_misses=near,
        orientation=int(getattr(src, "orientation", 1) or 1),
    )


def merge_counted(tiles: Sequence[Tile], preds: Predictions,
                  merge: MergeSpec) -> tuple[Detections, CountRange | None, Detections | None]:
    """The global boxes at ``preds.run.score_thr``, the :class:`CountRange` around it, and the
    near misses: the boxes of the range's upper end scoring below the threshold (None without
    that end).

    Each threshold's boxes are merged on their own (the seam merge depends on which boxes are
    there), as a run at that threshold would merge them, with the boxes down to
    :data:`CONFIRM_BAND` below it as confirmers where the detector returns them (the built-in
    model and the adapters do, :func:`~densedet_tile.detector.base.score_floor_for`; a detector
    of your own whose floor is ``score_thr - count_band`` gets an upper end without them, a few
    boxes short of a run at that threshold). The range is None when the
    run has no threshold or ``count_band`` is 0; its upper end (``high``) is None when the
    detector's boxes do not reach ``score_thr - count_band`` (or 0, the lowest threshold there
    is); its lower end is the count at ``score_thr + count_band``, or at 1 where that is higher.
    """
    thr, band = preds.run.score_thr, preds.run.count_band
    dets = thin_piles(tiles, preds.dets, merge)

    def at(t: float) -> Detections:
        return merged_at(tiles, dets, t, merge, thinned=True)

    if thr is None:
        return merge_tiles(tiles, dets, merge, thinned=True), None, None
    merged = at(thr)
    if band <= 0:
        return merged, None, None
    floor = preds.score_floor
    # the ends are runs at thresholds within [0, 1] (those there are), so a threshold within
    # the band of either still has both: the count at 0 where the detector returns every box,
    # at 1 (boxes scored 1) above
    wide = at(max(thr - band, 0.0)) if floor is not None and floor <= max(thr - band, 0.0) + 1e-9 else None
    low = len(at(min(thr + band, 1.0)))
    counts = CountRange(score_thr=thr, band=band, low=low, count=len(merged), high=None if wide is None else len(wide))
    return merged, counts, None if wide is None else _near_misses(wide, merged, thr, merge)


def _near_misses(wide: Detections, merged: Detections, thr: float, merge: MergeSpec) -> Detections:
    """The boxes of the range's upper end ``wide`` scoring below ``thr`` that are no product the
    run at ``thr`` serves (``merged``): one overlapping a served box of its class at
    ``merge.nms_iou`` or more is that product, its views fused there with a weaker one of another
    tile (a product served at 0.47 came back as a near miss at 0.44; an outside review)."""
    from .merge.boxes import cross_pairs, pair_iou

    low = np.flatnonzero(wide.scores < thr)
    if not len(low) or not len(merged):
        return wide[low]
    i, j = cross_pairs(wide.xyxy[low], merged.xyxy)
    same = pair_iou(np.concatenate([wide.xyxy[low], merged.xyxy]), i, j + len(low)) >= merge.nms_iou
    if not merge.class_agnostic:
        same &= wide.labels[low][i] == merged.labels[j]
    served = np.zeros(len(low), bool)
    served[i[same]] = True
    return wide[low[~served]]


def thin_piles(tiles: Sequence[Tile], dets: Sequence[Detections], merge: MergeSpec, *,
               warn: bool = True) -> list[Detections]:
    """The tiles' boxes with any pile thinned once, on all the boxes returned (said once per
    image unless ``warn`` is False), before the merges at several thresholds: each merge deciding
    on its own boxes saw a pile below the threshold and none above, and the count range came out
    inverted. Pass the result to :func:`merged_at` with ``thinned=True``."""
    if merge.mode == "none":
        return list(dets)
    out, piled = suppress_piles(dets, merge)
    if warn:
        warn_piles(piled, len(tiles), merge)
    return out


def merged_at(tiles: Sequence[Tile], dets: Sequence[Detections], thr: float, merge: MergeSpec, *,
              thinned: bool = False) -> Detections:
    """The global boxes a run at score threshold ``thr`` serves, from tile-local ``dets`` that
    reach down to ``thr - CONFIRM_BAND`` or lower.

    The boxes just below ``thr`` (within :data:`CONFIRM_BAND`) are not served, but still show
    that their tile saw an object where another tile's view of it is cut; a fixed window, so
    that each end of a count range equals a run at that threshold and the served boxes do not
    depend on ``count_band``. ``thinned``: ``dets`` went through
    :func:`~densedet_tile.merge.core.suppress_piles` already (see :func:`merge_tiles`).
    """
    below = [d[(d.scores < thr) & (d.scores >= thr - CONFIRM_BAND - 1e-9)] if len(d) else d for d in dets]
    return merge_tiles(tiles, _at_least(dets, thr), merge, confirmers=below, thinned=thinned)


def counts_at_thresholds(
    source: str | os.PathLike[str] | np.ndarray | Any,
    detector: Detector,
    thresholds: Sequence[float],
    *,
    tiling: TileSpec | None = None,
    merge: MergeSpec | None = None,
    run: RunSpec | None = None,
    scale_thr: float | None = None,
) -> list[int]:
    """How many boxes a run at each score threshold of ``thresholds`` would serve, for one pass
    of the network over ``source`` (a path, an array or an open image).

    ``detector`` must return boxes as low as a detector serving at ``min(thresholds)`` does
    (at least down to ``min(thresholds) - CONFIRM_BAND``, the confirmers of the lowest count; the
    built-in model and the adapters return :func:`~densedet_tile.detector.base.score_floor_for`
    of it, ``min(thresholds) - count band - CONFIRM_BAND``, not below 0.05; the built-in model built with
    ``score_thr=min(thresholds)`` does); each count is that of :func:`detect_image` at that
    threshold with the same tiling, merge and run (``run.score_thr`` is set to the lowest
    threshold). With ``tile="auto"``, or a photo rule checked by measuring the products (every
    photo: a small one or a crop by the probes, and each for a close-up, see
    :func:`densedet_tile.scale.choose_scale`), the scale is measured once, from the boxes
    scoring ``scale_thr`` or more (as given; by default the detector's ``scale_thr`` where it
    declares one, as every run measures it then, else the lowest threshold), where
    :func:`detect_image` measures it at each threshold for a detector that declares none: the
    counts are those of runs at that scale, which may then differ from a run's own (a close-up at
    one threshold may not be one at another). Used to pick a
    threshold from counts, e.g. for adapted weights (``adapt`` passes the threshold its starting
    weights serve at, as for its labels and its crops).
    """
    ts = [float(t) for t in thresholds]
    if not ts or not all(math.isfinite(t) and 0.0 <= t <= 1.0 for t in ts):
        raise InvalidInputError(f"thresholds must be scores in [0, 1], got {list(thresholds)!r}")
    if scale_thr is not None and not (isinstance(scale_thr, (int, float)) and 0.0 <= scale_thr <= 1.0):
        raise InvalidInputError(f"scale_thr must be a score in [0, 1], got {scale_thr!r}")
    tiling, merge, run = specs_from(tiling, merge, run)
    low = min(ts)
    floor = score_floor_of(detector)
    # the confirmers of the lowest count at least (a detector of your own may declare that floor;
    # the built-in model and the adapters return lower, score_floor_for(low), as a run there does)
    need = low if low <= 0.05 else max(low - CONFIRM_BAND, 0.05)  # (nothing returns under 0.05)
    if floor is not None and floor > need + 1e-9:
        raise InvalidInputError(f"the detector returns boxes down to {floor:g} only; counts at {low:g} need them "
                                f"down to {need:g}: build it with score_thr={low:g}")
    run = replace(run, score_thr=low)
    ctx: Any = contextlib.nullcontext(source) if _is_image_source(source) else open_image(source, max_pixels=run.max_pixels)
    with ctx as src:
        scaled = choose_scale(src, detector, tiling, run, merge, measure_thr=scale_thr)
        tiles = plan(src, scaled.tiling)
        preds = predict_tiles(src, tiles, detector, replace(scaled.run, score_thr=low))
    merge = merge_at_model_scale(merge, tiles, preds.run.input_size)  # as finish merges
    dets = thin_piles(tiles, preds.dets, merge)  # once for every threshold, as merge_counted does
    return [len(merged_at(tiles, dets, t, merge, thinned=True)) for t in ts]


def _at_least(dets: Sequence[Detections], thr: float) -> list[Detections]:
    """Each tile's boxes scoring ``thr`` or more."""
    return [d[d.scores >= thr] if len(d) else d for d in dets]


def _is_image_source(obj: object) -> bool:
    return not isinstance(obj, (str, os.PathLike, np.ndarray)) and all(
        hasattr(obj, a) for a in ("read", "width", "height", "name")
    )


def describe_detector(detector: object) -> dict[str, Any]:
    """A small JSON-able description of a detector for output files.

    ``name``, ``input_size`` and ``class_names`` when the detector has them, and under ``info``
    the entries of its own ``info`` dict (config, checkpoint, training run, runtime...) whose
    values are JSON scalars (a NaN or infinite float as its name, ``"nan"``, ``"inf"``).
    """
    info: dict[str, Any] = {"name": str(getattr(detector, "name", type(detector).__name__))}
    size = input_size_of(detector)
    if size is not None:
        info["input_size"] = size
    names = class_names_of(detector)
    if names:
        info["class_names"] = list(names)
    extra = getattr(detector, "info", None)
    if isinstance(extra, dict):

        scalars = {str(k): finite_or_name(v) for k, v in extra.items()
                   if v is None or isinstance(v, (str, int, float, bool))}
        if scalars:
            info["info"] = scalars
    return info


class _ResizingSource:
    """An image source whose windows come out resized so their longer side is ``size``."""

    def __init__(self, src: Any, size: int, filter: str) -> None:
        self.src, self.size, self.filter, self.resize_s = src, size, filter, 0.0

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        a = self.src.read(x, y, w, h)
        if max(a.shape[0], a.shape[1]) == self.size:
            return a
        t0 = time.perf_counter()
        r, _ = resize_to(a, self.size, filter=self.filter)
        self.resize_s += time.perf_counter() - t0
        return r


def _to_tile_frame(d: Detections, sx: float, sy: float, end_offset: float = 0.0) -> Detections:
    """Map boxes from the model input (the tile scaled by ``sx``, ``sy``) back to tile pixels.
    ``end_offset``: the pixels the detector adds to x2 and y2 (``box_end_offset``), kept that
    many tile pixels (scaled with the box, MMDetection 1.x's "+1" of the DenseDet head came out
    1/s px: 0.36 px too wide and tall at the photo rule's 0.735, 1 px at 0.5; an outside review).

    No clipping here: the merge clips every box to its tile once (:func:`densedet_tile.merge.to_global`).
    """
    if not len(d) or (sx == 1.0 and sy == 1.0):
        return d
    out = d.scaled(1.0 / sx, 1.0 / sy)
    if end_offset:
        xyxy = out.xyxy.copy()
        xyxy[:, 2] += np.float32(end_offset * (1.0 - 1.0 / sx))
        xyxy[:, 3] += np.float32(end_offset * (1.0 - 1.0 / sy))
        out = Detections(xyxy, out.scores, out.labels)
    return out
