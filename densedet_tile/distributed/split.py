"""One giant image on many workers: ``plan`` here, ``predict_tiles`` on the workers, ``finish`` here.

The driver cuts the image into tiles, hands contiguous runs of them to the pool's workers
(each opens the image itself and runs :func:`densedet_tile.pipeline.predict_tiles` on its
share), and merges the tile-local boxes once with :func:`densedet_tile.pipeline.finish`, so the
result is the one a single process computes. Ray is reached only through the pool object.
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..errors import DetectorError, InvalidInputError, caller_level
from ..pipeline import Predictions, finish, plan
from ..types import Detections

if TYPE_CHECKING:
    from ..pipeline import ImageResult
    from ..runner import Job

__all__ = ["detect_split", "chunk_ranges"]

log = logging.getLogger(__name__)


def chunk_ranges(n_tiles: int, n_workers: int) -> list[range]:
    """Contiguous runs of tile indices: about two per worker, so a slow or lost one costs little."""
    k = max(1, min(n_tiles, 2 * n_workers))
    bounds = [round(i * n_tiles / k) for i in range(k + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def detect_split(src: Any, pool: Any, job: "Job", *, retries: int = 2, timeout: float | None = None,
                 on_submit: Callable[[Any, Any], None] | None = None,
                 report: dict[str, Any] | None = None) -> "ImageResult":
    """Detect objects in the open image ``src`` with its tiles spread over ``pool``'s workers.

    The workers open ``src.path`` themselves (it must be readable from every worker). Raises on
    a failed run of tiles (the caller, ``process_image``, turns that into the image's error).
    ``report``, when given, gets ``attempts``: the most tries any one piece of the image's work
    (the scale choice or a run of tiles) took, kept up to date as they end, so it is there
    even when the image fails.
    """
    report = {} if report is None else report
    report["attempts"] = 1

    def tried(res: Any) -> None:
        report["attempts"] = max(report["attempts"], int(res.attempts or 1))

    started = time.perf_counter()
    if src.path is None:
        raise InvalidInputError(f"{src.name}: a split image must be a file every worker can read")
    path = str(src.path)
    # the scale depends on the detector, which lives on the workers: one of them decides it
    (res,) = pool.map([job], lambda actor, j: actor.choose_scale.remote(path, j), retries=retries, timeout=timeout)
    tried(res)
    if not res.ok:
        raise DetectorError(f"{src.name}: choosing the scale: {res.error}")
    tiling, run, scale_info, *fit = res.value
    # what fitting the job to a worker said is the run's, said once by the pool after the image
    # (batch's _run_split), not the image's: held there, out of this image's capture
    hold = getattr(pool, "hold_warnings", None)
    if callable(hold):
        hold(fit[0] if fit else ())
    job = replace(job, tiling=tiling, run=run)
    tiles = plan(src, job.tiling)
    chunks = chunk_ranges(len(tiles), max(1, len(pool.slots)))

    def submit(actor: Any, chunk: range) -> Any:
        return actor.predict_tiles.remote(path, [tiles[i] for i in chunk], job)

    from ..runner import say_again

    parts: dict[int, Predictions] = {}
    models: dict[int, Any] = {}  # the detector as each run of tiles ran (by its first tile)
    said: dict[tuple[str, str], None] = {}  # the workers' warnings, once each, in the order given
    used: list[str] = []
    try:
        for res in pool.map(chunks, submit, retries=retries, on_submit=on_submit, timeout=timeout):
            tried(res)
            if not res.ok:
                say_again(said)  # (what the runs before it said: a fallback to the CPU, say)
                raise DetectorError(f"{src.name}: tiles {res.item.start}..{res.item.stop - 1}: {res.error}")
            v = res.value
            dets = [Detections(np.asarray(b), np.asarray(s), np.asarray(lab))
                    for b, s, lab in zip(v["xyxy"], v["scores"], v["labels"])]
            parts[res.item.start] = Predictions(dets, v["run"], v["final_batch_size"], **v["timings"],
                                                score_floor=v.get("score_floor"))
            models[res.item.start] = v.get("model")
            if callable(hold):
                hold(v.get("fit_warnings"))
            for w in v.get("warnings") or ():
                said.setdefault((str(w[0]), str(w[1])), None)
            if v["worker"] not in used:
                used.append(v["worker"])
    finally:
        for s in pool.slots if getattr(pool, "lost", None) is None else ():  # let the workers drop the image
            s.handle.close_image.remote()
    say_again(said)  # here, where the image's record takes them
    starts = sorted(parts)
    preds = Predictions.join([parts[k] for k in starts])
    started_as = dict(pool.info[0].get("model", {})) if pool.info else {}
    run, model, devices = _how_it_ran(src.name, [(parts[k], models.get(k)) for k in starts], started_as)
    preds = replace(preds, run=run)
    extra: dict[str, Any] = {"scale": scale_info, "split_workers": used}
    if devices is not None:
        extra["split_devices"] = devices
    return finish(src, tiles, preds, tiling=job.tiling, merge=job.merge, model=model, started=started,
                  extra_settings=extra)


def _ran_as(run: Any, model: Any) -> tuple[str, str]:
    """The device and precision one run of tiles ran at: the run spec's, the precision as the
    model says it where it does (as :func:`~densedet_tile.pipeline.finish` reports it)."""
    info = model.get("info") if isinstance(model, dict) else None
    own = info.get("precision") if isinstance(info, dict) else None
    return str(run.device), own if isinstance(own, str) and own else str(run.precision)


def _how_it_ran(name: str, parts: Sequence[tuple[Predictions, Any]],
               started_as: dict[str, Any]) -> tuple[Any, dict[str, Any], list[dict[str, Any]] | None]:
    """The run spec and model description of a split image joined from its runs of tiles (in
    tile order, each with the description of the detector as it ran them, None from a worker
    that sends none), and, where they did not all run on one device at one precision, each
    device and precision with its tile count (else None).

    The first run of tiles spoke for all of them, so a worker that ran out of GPU memory and
    went on on the CPU was hidden. One device for all: that one, as a single process says it.
    Several: the CPU's where one is (as a single process that fell back to the CPU says ``cpu``
    for the whole image), else the first; with a warning naming them all. ``started_as``: the
    description made when the pool started, for runs without their own.
    """
    ran = [(p.run, m if isinstance(m, dict) else None) for p, m in parts]
    tiles: dict[tuple[str, str], int] = {}
    for (run, model), (p, _) in zip(ran, parts):
        # a run without its own description is told by the one its result would take: an
        # older worker's run keyed by the run spec's precision (fp32) and a newer one's by its
        # model's (int8) disagreed where they ran alike
        key = _ran_as(run, started_as if model is None else model)
        tiles[key] = tiles.get(key, 0) + len(p.dets)
    pick = 0
    if len(tiles) > 1:
        pick = next((i for i, (run, _) in enumerate(ran) if str(run.device) == "cpu"), 0)
    run, model = ran[pick]
    if model is None:
        model = started_as
    if len(tiles) == 1:
        return run, dict(model), None
    devices = [{"device": d, "precision": prec, "tiles": n} for (d, prec), n in tiles.items()]
    each = ", ".join(f"{d} {prec} ({n} tile{'s' if n != 1 else ''})" for (d, prec), n in tiles.items())
    dev, prec = _ran_as(run, model)
    warnings.warn(f"{name}: its tiles ran on more than one device or precision: {each} (a worker's out-of-memory "
                  f"fallback to the CPU, or workers unlike each other); its settings say {dev} {prec}, and "
                  "settings.split_devices lists each", RuntimeWarning, stacklevel=caller_level())
    return run, dict(model), devices
