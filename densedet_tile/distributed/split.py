"""One giant image on many workers: ``plan`` here, ``predict_tiles`` on the workers, ``finish`` here.

The driver cuts the image into tiles, hands contiguous runs of them to the pool's workers
(each opens the image itself and runs :func:`densedet_tile.pipeline.predict_tiles` on its
share), and merges the tile-local boxes once with :func:`densedet_tile.pipeline.finish`, so the
result is the one a single process computes. Ray is reached only through the pool object.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..errors import DetectorError, InvalidInputError
from ..pipeline import Predictions, finish, plan
from ..types import Detections

if TYPE_CHECKING:
    from ..pipeline import ImageResult
    from ..runner import Job

__all__ = ["detect_split", "chunk_ranges"]


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
    tiling, run, scale_info = res.value
    job = replace(job, tiling=tiling, run=run)
    tiles = plan(src, job.tiling)
    chunks = chunk_ranges(len(tiles), max(1, len(pool.slots)))

    def submit(actor: Any, chunk: range) -> Any:
        return actor.predict_tiles.remote(path, [tiles[i] for i in chunk], job)

    parts: dict[int, Predictions] = {}
    used: list[str] = []
    try:
        for res in pool.map(chunks, submit, retries=retries, on_submit=on_submit, timeout=timeout):
            tried(res)
            if not res.ok:
                raise DetectorError(f"{src.name}: tiles {res.item.start}..{res.item.stop - 1}: {res.error}")
            v = res.value
            dets = [Detections(np.asarray(b), np.asarray(s), np.asarray(lab))
                    for b, s, lab in zip(v["xyxy"], v["scores"], v["labels"])]
            parts[res.item.start] = Predictions(dets, v["run"], v["final_batch_size"], **v["timings"],
                                                score_floor=v.get("score_floor"))
            if v["worker"] not in used:
                used.append(v["worker"])
    finally:
        for s in pool.slots if getattr(pool, "lost", None) is None else ():  # let the workers drop the image
            s.handle.close_image.remote()
    preds = Predictions.join([parts[k] for k in sorted(parts)])
    model = dict(pool.info[0].get("model", {})) if pool.info else {}
    return finish(src, tiles, preds, tiling=job.tiling, merge=job.merge, model=model, started=started,
                  extra_settings={"scale": scale_info, "split_workers": used})
