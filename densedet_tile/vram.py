"""Fitting the work into a GPU memory budget (``--max-vram``).

The budget is enforced, not only planned for: torch's caching allocator is capped at the
budget, so going over it raises out-of-memory, which the pipeline answers by halving the batch
and, at one tile, by moving on to the CPU. The plan picks the largest batch that fits from two
probe runs (one and two blank tiles at the size the model will see): peak memory is close to
linear in the batch, ``peak(b) = base + b * per_tile``.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, replace
from typing import Any, Callable, Sequence

import numpy as np

from .detector.base import tiles_resized_to
from .errors import InvalidInputError, caller_level
from .types import RunSpec, TileSpec, default_batch_size

__all__ = ["VramPlan", "plan_from_probes", "plan_batch", "apply_vram_cap", "fit_to_vram"]

log = logging.getLogger(__name__)

GiB = 2**30
#: Head-room kept free inside the budget for fragmentation and the merge.
SAFETY = 0.85
#: Largest batch the planner proposes; more rarely pays on one image.
MAX_BATCH = 16


@dataclass(frozen=True)
class VramPlan:
    """A batch size (and tile side) expected to fit ``budget_bytes``."""

    batch_size: int
    tile: int
    base_bytes: int
    per_tile_bytes: int
    budget_bytes: int
    #: False when not even one tile of ``tile`` px is expected to fit: the run starts at batch 1
    #: anyway and a tile that runs out of memory goes to the CPU
    fits: bool = True


def plan_from_probes(
    peak1: int, peak2: int, *, budget_bytes: int, tile: int, resizes_tiles: bool, min_tile: int = 256
) -> VramPlan:
    """Choose batch (and, when needed, a smaller tile) from peaks measured at batch 1 and 2.

    ``resizes_tiles``: the detector declares an ``input_size``, so the model sees the same
    pixel count whatever the tile: shrinking the tile then saves nothing and is not done.
    Otherwise memory per tile scales with the tile's area and the tile shrinks until one fits.
    """
    if budget_bytes <= 0:
        raise InvalidInputError(f"max VRAM must be positive, got {budget_bytes} bytes")
    per_tile = max(1, peak2 - peak1)
    base = max(0, peak1 - per_tile)
    usable = budget_bytes * SAFETY
    batch = int((usable - base) // per_tile)
    # the safety margin is for batches extrapolated past those the probes ran: one or two tiles
    # whose measured peak is inside the budget fit (a heavy model at 3.45 and 3.9 GiB in 4 was
    # told "not even one tile fits", or had its tile shrunk under the one that had just run at
    # batch 2: an outside review)
    ran = 2 if peak2 <= budget_bytes else 1 if peak1 <= budget_bytes else 0
    batch = max(batch, ran)
    if batch >= 1:
        return VramPlan(min(batch, MAX_BATCH), tile, base, per_tile, budget_bytes)
    if resizes_tiles or usable <= base:
        return VramPlan(1, tile, base, per_tile, budget_bytes, fits=False)
    shrink = math.sqrt((usable - base) / per_tile)
    # never above the tile asked for (a --tile 192 became 256, "reduced to fit" and over budget):
    # the floor only stops the shrinking, it does not grow a tile that is smaller already
    new_tile = min(tile, max(min(min_tile, tile), int(tile * shrink) // 32 * 32))
    new_per_tile = max(1, int(per_tile * (new_tile / tile) ** 2))
    return VramPlan(1, new_tile, base, new_per_tile, budget_bytes, fits=base + new_per_tile <= usable)


def _probe_peaks(predict: Callable[[Sequence[np.ndarray]], object], side: int, device: int) -> tuple[int, int | None]:
    """Peak memory of one and of two blank tiles; None for two when one fits but two do not."""
    import torch

    from .detector.calls import is_oom

    peaks = []
    for b in (1, 2):
        tiles = [np.full((side, side, 3), 127, np.uint8) for _ in range(b)]
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        try:
            predict(tiles)
        except Exception as exc:
            if b == 1 or not is_oom(exc):
                raise
            oom = True
        else:
            oom = False
        if oom:  # outside the handler: the failed call's tensors are free to go
            torch.cuda.empty_cache()
            return peaks[0], None
        torch.cuda.synchronize(device)
        peaks.append(int(torch.cuda.max_memory_allocated(device)))
    return peaks[0], peaks[1]


def _device_index(torch: Any, device: str) -> int:
    """The CUDA device's index; ``"cuda"`` without one is the current device (what a model put
    on ``"cuda"`` runs on), not always GPU 0."""
    idx = torch.device(device).index
    return int(torch.cuda.current_device()) if idx is None else int(idx)


def apply_vram_cap(max_vram_gb: float, device: str) -> int:
    """Cap torch's CUDA allocator on ``device`` at ``max_vram_gb`` GiB (2**30 bytes, as a "4 GB"
    card has); returns the budget in bytes: the cap, or less where the card has less free."""
    import torch

    from .types import MIN_VRAM_GB

    if not (isinstance(max_vram_gb, (int, float)) and max_vram_gb >= MIN_VRAM_GB):
        # (a tiny budget would cap the allocator at a few bytes: every tile to the CPU)
        raise InvalidInputError(f"max_vram (--max-vram) must be at least {MIN_VRAM_GB:g} GiB, got {max_vram_gb!r}")
    idx = _device_index(torch, device)
    total = torch.cuda.get_device_properties(idx).total_memory
    cap = int(max_vram_gb * GiB)
    # set every time: a later call with a larger budget lifts an earlier, smaller cap
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), idx)
    # what is really there: a laptop's 4 GB card also holds the display and other programs
    try:
        free, _ = torch.cuda.mem_get_info(idx)
        there = int(free) + int(torch.cuda.memory_reserved(idx))
    except (RuntimeError, AttributeError):  # pragma: no cover - an old torch or a driver without it
        there = total
    if there < min(cap, total) and (idx, max_vram_gb) not in _SAID_FREE:
        _SAID_FREE.add((idx, max_vram_gb))  # once: the pipeline applies the cap again for every image
        log.warning("max_vram %g GiB: only %.2f GiB of the card's memory is free for this process; planning for that",
                    max_vram_gb, there / GiB)
    return min(cap, total, there)


#: (device index, budget) pairs whose shortage of free memory has been said.
_SAID_FREE: set[tuple[int, float]] = set()


def plan_batch(detector: object, *, tile: int, input_size: int | None, max_vram_gb: float, device: str,
               resizes_tiles: bool | None = None, min_tile: int = 256) -> VramPlan | None:
    """Cap the allocator at the budget and pick a batch (and tile) that fits it.

    ``input_size``: the side the model sees (probed); ``resizes_tiles``: whether the model sees
    that side whatever the tile (it declares an input size; default: ``input_size`` is given).
    A model that sees tiles at their size (or at a fixed scale of it) whose probe at one tile
    runs out of memory inside the cap is probed again at half the tile, down to ``min_tile``.
    Returns None (with a warning) on the CPU, where the option does not apply, and for a
    detector that does not allocate through torch (ONNX Runtime, LiteRT), which the cap and the
    probes cannot see.
    """
    ignored = _ignored_why(detector, device)
    if ignored is not None:
        warnings.warn(ignored, RuntimeWarning, stacklevel=caller_level())
        return None
    import torch

    from .detector.calls import is_oom, predict_held

    resizes = input_size is not None if resizes_tiles is None else bool(resizes_tiles)
    budget = apply_vram_cap(max_vram_gb, device)
    side = input_size or tile
    while True:
        try:
            # probed as the run will call it: tiles resized to the run's side (an adapter with its own
            # resize keeps them so), or as they come
            with tiles_resized_to(side if input_size is not None else None):
                # (held: another thread's out-of-memory fallback does not move the model mid-probe)
                p1, p2 = _probe_peaks(lambda t: predict_held(detector, t), side, _device_index(torch, device))
            break
        except Exception as exc:
            if not is_oom(exc):
                raise
        torch.cuda.empty_cache()
        smaller = max(min_tile, tile // 2 // 32 * 32)
        if resizes or smaller >= tile:
            log.warning("probe at %d px ran out of memory inside %.1f GiB; starting at batch 1", side, max_vram_gb)
            return VramPlan(1, tile, 0, budget, budget, fits=False)
        log.warning("probe at %d px ran out of memory inside %.1f GiB; trying tile %d", side, max_vram_gb, smaller)
        side = max(16, round(side * smaller / tile))
        tile = smaller
    if p2 is None:  # one tile fits and two do not: batch 1 at this tile, not a smaller tile
        log.info("VRAM plan: batch 1, tile %d (two tiles do not fit %.2f GiB)", tile, budget / GiB)
        return VramPlan(1, tile, 0, p1, budget)
    if p2 - p1 < _UNSEEN:
        # a second tile cost torch nothing: the detector keeps its memory out of torch's sight
        # (its own runtime) and the arithmetic would plan the largest batch on nothing
        batch = default_batch_size(device)
        log.warning("max_vram %g GiB: the probes saw no GPU memory grow with the batch (the detector may allocate "
                    "outside torch); batch %d, the usual one, and the cap guards torch's part only",
                    max_vram_gb, batch)
        return VramPlan(batch, tile, p1, 0, budget)
    plan = plan_from_probes(p1, p2, budget_bytes=budget, tile=tile, resizes_tiles=resizes, min_tile=min_tile)
    log.info("VRAM plan: batch %d, tile %d (base %.2f GiB + %.2f GiB per tile, budget %.2f GiB)",
             plan.batch_size, plan.tile, plan.base_bytes / GiB, plan.per_tile_bytes / GiB, budget / GiB)
    return plan


#: Less growth than this (bytes) from one probe tile to two is no growth seen.
_UNSEEN = 2**20


def _ignored_why(detector: object, device: str) -> str | None:
    """Why ``max_vram`` does not apply to ``detector`` on ``device`` (off CUDA, or a runtime that
    allocates GPU memory out of torch's sight), in a warning's words; None where it applies."""
    if not device.startswith("cuda"):
        return "max_vram (--max-vram) applies to CUDA devices only; ignored on the CPU"
    runtime = _own_allocator(detector)
    if runtime is not None:
        return (f"max_vram (--max-vram) plans and caps torch's GPU memory; this detector runs on {runtime}, "
                "which allocates its own, so the option is ignored (set a batch size by hand)")
    return None


def _run_device(detector: object, run: RunSpec) -> str:
    """Where ``detector`` runs for ``run``: its own device, else the run's, a CUDA one resolved."""
    from .detector.base import device_of, resolve_device

    device = device_of(detector, run.device)
    return resolve_device(device) if device.startswith("cuda") else device


def warn_if_ignored(detector: object, run: RunSpec) -> None:
    """Say that ``run.max_vram`` does nothing for ``detector`` where a batch size is given with it
    (:func:`fit_to_vram` then only caps the allocator, and said nothing when it could not: the
    CPU, ONNX Runtime; an outside review). Called once per run where the detector is built, not
    per image: the batch size the planner chose for an image comes back in ``run`` as well."""
    if run.max_vram is None or run.batch_size is None:
        return
    ignored = _ignored_why(detector, _run_device(detector, run))
    if ignored is not None:
        warnings.warn(ignored.replace(" (set a batch size by hand)", ""), RuntimeWarning, stacklevel=caller_level())


def _own_allocator(detector: object) -> str | None:
    """The runtime of a detector that allocates GPU memory on its own, out of torch's sight
    (``"onnxruntime"``, ``"litert"``), else None."""
    info = getattr(detector, "info", None)
    runtime = getattr(detector, "runtime", None) or (info.get("framework") if isinstance(info, dict) else None)
    return runtime if runtime in ("onnxruntime", "litert") else None


def fit_to_vram(detector: object, tiling: TileSpec, run: RunSpec) -> tuple[TileSpec, RunSpec]:
    """Apply ``run.max_vram`` for ``detector``: cap the allocator, choose batch (and tile).

    The returned specs carry the chosen batch size. :func:`~densedet_tile.detect_image` calls
    this for every image, which probes again (the card's free memory may have changed since:
    a plan made while another program held it would keep a later image at batch 1). A batch size
    given in ``run`` is kept (only the cap is applied); a tile is shrunk only for models that
    see tiles at their native size. Off CUDA (and for ONNX Runtime / LiteRT detectors) the
    option does not apply: a warning, and the specs come back with the usual batch size (so a
    later call neither plans nor warns again, and no torch cap is set for a detector torch does
    not run). A detector an out-of-memory moved to the CPU for the image still running is not
    planned for (its GPU plan comes with the next image, once it is back there).
    """
    if run.max_vram is None:
        return tiling, run
    from .detector.base import input_size_of

    if getattr(detector, "_densedet_on_cpu", False) and getattr(detector, "_densedet_back_to", None):
        # the fallback's CPU is for the image that ran out only: no "ignored on the CPU"
        # warning, and no CPU batch remembered for the GPU it goes back to
        return tiling, run
    device = _run_device(detector, run)
    if run.batch_size is not None:
        if device.startswith("cuda") and _own_allocator(detector) is None:
            apply_vram_cap(run.max_vram, device)
        return tiling, run
    tile = tiling.tile if isinstance(tiling.tile, int) else TileSpec().tile  # auto: planned at the default
    declared = run.input_size or input_size_of(detector)
    side = declared
    if side is None and run.scale is not None:  # a native-size model sees the tile at the scale given
        from .scale import scaled_side

        side = scaled_side(tile, run.scale)  # refused past the largest input, before any probe allocates it
    # tile=auto picks its tile later, from the image: no smaller tile to probe instead
    found = plan_batch(detector, tile=tile, input_size=side, max_vram_gb=run.max_vram, device=device,
                       resizes_tiles=declared is not None or not isinstance(tiling.tile, int))
    if found is None:  # not planned (said why): the usual batch, so later images do not ask again
        return tiling, replace(run, batch_size=default_batch_size(device))
    from .detector.calls import forget_batch_caps

    forget_batch_caps(detector, found.budget_bytes)  # (clearly more memory than when a cap was learnt: it goes)
    if not found.fits:
        # nothing fitted: say what the run does instead of claiming a tile "to fit", at the tile
        # asked for (a smaller one that does not fit either only made more tiles: 80 of 256 px
        # instead of 4 of 1280 px, all on the CPU, without a word of the change; an outside review)
        smallest = f" (nor one of {found.tile} px)" if found.tile != tile else ""
        log.warning("max_vram %g GiB (--max-vram): not even one %d px tile fits%s; running at batch 1, and a tile "
                    "that runs out of GPU memory goes to the CPU (a larger --max-vram, or a smaller --tile or "
                    "--input-size, may avoid that)", run.max_vram, tile, smallest)
    elif found.tile != tile and isinstance(tiling.tile, int):
        log.warning("max_vram %g GiB (--max-vram): tile reduced to %d px to fit", run.max_vram, found.tile)
        tiling = replace(tiling, tile=found.tile)
    return tiling, replace(run, batch_size=found.batch_size)
