"""``densedet-tile batch``: many images (or one giant image) across a pool of workers.

Images are handed to a pool of Ray actors, each of which builds the detector once and keeps
it; every image's outputs are written by :func:`densedet_tile.runner.process_image`, exactly as
the single-image CLI writes them. Without Ray (not installed, or ``--ray none``) the same loop
runs in this process. With ``split=True`` each image's tiles are fanned out to the workers
instead, and their tile-local detections merged here once, so the result is the one a single
process computes.

A run is restartable: images whose outputs exist and are complete are skipped, half-written or
corrupt outputs are redone. Every image's end is appended to ``<out>/manifest.jsonl`` as it
happens (one JSON object per line, written with a single ``O_APPEND`` write), and
``<out>/manifest.json`` (the latest record of every image the folder has seen, plus the runs) is
rewritten atomically when the run ends.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

from .errors import DensedetError, InvalidInputError, MissingDependencyError, one_line
from .runner import RunOptions, output_stem, outputs_complete

if TYPE_CHECKING:
    from .pipeline import ImageResult
    from .tiler.readers import ImageSource

__all__ = [
    "DetectorSpec",
    "BatchSummary",
    "Manifest",
    "MANIFEST_SCHEMA",
    "IMAGE_SUFFIXES",
    "expand_inputs",
    "run_batch",
    "batch_main",
    "build_batch_parser",
]

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "densedet-tile/batch-manifest@1"
#: File name endings taken from a folder given as an input.
IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2


# -- what each worker builds --------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorSpec:
    """A picklable recipe for a detector: what ``--detector/--config/--checkpoint/...`` say.

    Each worker calls :meth:`build` once. Paths are made absolute by :meth:`resolved` so that
    workers whose working folder differs still find them (on a cluster they must lie on storage
    every node sees).
    """

    name: str = "default"
    config: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    input_size: int | None = None
    score_thr: float | None = None

    def build(self) -> Any:
        """Build the detector (in the calling process)."""
        from .detector.base import resolve_device
        from .detector.registry import load_detector

        resolve_device(self.device)
        return load_detector(self.name, config=self.config, checkpoint=self.checkpoint, device=self.device,
                             input_size=self.input_size, score_thr=self.score_thr)

    def resolved(self) -> "DetectorSpec":
        """The same spec with every existing local file path made absolute."""

        def absolute(p: str | None) -> str | None:
            return str(Path(p).resolve()) if p and Path(p).exists() else p

        name = self.name
        if ":" in name:
            module, _, factory = name.rpartition(":")
            if module.endswith(".py") and Path(module).is_file():
                name = f"{Path(module).resolve()}:{factory}"
        return replace(self, name=name, config=absolute(self.config), checkpoint=absolute(self.checkpoint))


# -- the manifest -------------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Manifest:
    """The run log of an output folder: ``manifest.jsonl`` (append-only) and ``manifest.json``.

    Only the driver writes it. Each record is one line appended with a single ``os.write`` on
    an ``O_APPEND`` descriptor and fsynced, so a crash loses at most the line being written;
    a torn last line is skipped when reading and closed off before the next append.
    """

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.out_dir = Path(out_dir)
        self.log_path = self.out_dir / "manifest.jsonl"
        self.json_path = self.out_dir / "manifest.json"

    def append(self, record: dict[str, Any]) -> None:
        """Append one record (a JSON object) as one line."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        line = (json.dumps(record, sort_keys=False, default=str) + "\n").encode()
        fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(self.log_path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":  # a torn line from a crash: end it first
                        line = b"\n" + line
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    def records(self) -> list[dict[str, Any]]:
        """Every readable record, oldest first (torn or garbled lines are skipped)."""
        try:
            raw = self.log_path.read_bytes()
        except FileNotFoundError:
            return []
        out = []
        for line in raw.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
        return out

    def snapshot(self) -> dict[str, Any]:
        """The manifest document: runs, and the latest record of every image, oldest image first."""
        runs: list[dict[str, Any]] = []
        images: dict[str, dict[str, Any]] = {}
        for rec in self.records():
            ev = rec.get("event")
            if ev == "run":
                runs.append(dict(rec))
            elif ev == "end" and runs and runs[-1].get("run") == rec.get("run"):
                runs[-1].update({k: v for k, v in rec.items() if k not in ("event", "run")})
            elif ev == "image" and isinstance(rec.get("input"), str):
                images.pop(rec["input"], None)  # re-insert: most recently touched last
                images[rec["input"]] = rec
        counts: dict[str, int] = {}
        for rec in images.values():
            counts[rec.get("status", "?")] = counts.get(rec.get("status", "?"), 0) + 1
        return {"schema": MANIFEST_SCHEMA, "updated": _now(), "runs": runs, "counts": counts,
                "images": list(images.values())}

    def write_snapshot(self) -> Path:
        """Rewrite ``manifest.json`` atomically from the log."""
        from .writers import atomic_write

        data = json.dumps(self.snapshot(), indent=1, default=str).encode()
        return atomic_write(self.json_path, lambda fh: fh.write(data))


# -- inputs ---------------------------------------------------------------------------------------
def expand_inputs(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Absolute paths of the inputs, folders replaced by their image files (sorted, not recursive).

    Duplicates (the same file named twice) are kept once, first position. A path that does not
    exist is kept: it fails as that image's error, not the run's.
    """
    out: list[Path] = []
    seen: set[Path] = set()
    for raw in inputs:
        p = Path(raw).expanduser().resolve()
        found = (
            sorted(c for c in p.iterdir() if c.is_file() and c.suffix.lower() in IMAGE_SUFFIXES)
            if p.is_dir() else [p]
        )
        for f in found:
            if f not in seen:
                seen.add(f)
                out.append(f)
    return out


def _unique_stems(paths: Sequence[Path]) -> list[str]:
    """Output stems as the CLI makes them: the file stem, then ``-2``, ``-3``... on clashes."""
    used: set[str] = set()
    stems = []
    for p in paths:
        stem = base = output_stem(p)
        k = 2
        while stem in used:
            stem, k = f"{base}-{k}", k + 1
        used.add(stem)
        stems.append(stem)
    return stems


def _existing_products(out_dir: Path, stem: str) -> int | None:
    try:
        doc = json.loads((out_dir / f"{stem}.detections.json").read_text())
        return int(doc.get("num_detections"))
    except (OSError, ValueError, TypeError):
        return None


# -- the run ----------------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """What a batch run did: per-image records (as written to the manifest) and counts."""

    run: str
    backend: str
    workers: int
    records: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r.get("status") == status)

    @property
    def failed(self) -> int:
        return self.count("error")

    @property
    def ok(self) -> int:
        return self.count("ok")

    @property
    def skipped(self) -> int:
        return self.count("skipped")


def _resolve_backend(ray_address: str | None) -> str | None:
    """``None``/``"none"``: in-process. ``"default"``: local Ray when installed, else in-process."""
    if ray_address is None or ray_address.lower() in ("none", "off", "no"):
        return None
    if ray_address == "default":
        try:
            import ray  # noqa: F401
        except ImportError:
            log.info("ray is not installed: running in this process")
            return None
        return "auto" if os.environ.get("RAY_ADDRESS") else "local"
    from .distributed import require_ray

    require_ray()
    return ray_address


def run_batch(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    detector: Any = None,
    opts: RunOptions | None = None,
    ray: str | None = None,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    gpus_per_worker: float = 0.0,
    split: bool = False,
    retries: int = 2,
    timeout: float | None = None,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    on_submit: Callable[[Any, Any], None] | None = None,
    run_info: dict[str, Any] | None = None,
) -> BatchSummary:
    """Process image files into ``out_dir``, skipping those whose outputs are already complete.

    ``detector`` is a :class:`DetectorSpec` (built once per worker), a picklable detector object,
    or None (the built-in default model). ``opts`` are the per-image options (tile, overlap,
    merge, formats...). ``ray``: None or ``"none"`` runs in this process; ``"local"`` starts an
    embedded Ray instance; ``"auto"`` joins ``$RAY_ADDRESS`` (or the cluster running here);
    ``"ray://host:10001"`` / ``"host:6379"`` join that cluster; ``"default"`` means local Ray
    when Ray is installed, else in-process. ``workers`` defaults to the cluster's CPUs divided by
    ``cpus_per_worker`` (or its GPUs by ``gpus_per_worker`` when that is > 0). ``split`` fans
    each image's tiles out to the workers and merges here (one giant image on many workers).
    A worker that dies has its image (or tile chunk) retried on another, up to ``retries``
    times; so does one still busy with an item after ``timeout`` seconds (it is stopped). ``on_record`` gets each manifest record as it is written; ``on_submit(actor, item)``
    is called when Ray hands an item to an actor.

    Never raises for a bad image (it becomes an ``"error"`` record); raises
    :class:`~densedet_tile.errors.DensedetError` subclasses for bad options, a detector that
    cannot be built, or Ray that cannot be reached.
    """
    opts = RunOptions() if opts is None else opts
    if not isinstance(opts, RunOptions):
        raise InvalidInputError(f"opts must be a RunOptions, got {type(opts).__name__}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise InvalidInputError(f"retries must be an integer >= 0, got {retries!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InvalidInputError(f"workers must be a positive integer, got {workers!r}")
    if timeout is not None and not (isinstance(timeout, (int, float)) and not isinstance(timeout, bool) and timeout > 0):
        raise InvalidInputError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not (isinstance(cpus_per_worker, (int, float)) and cpus_per_worker >= 0):
        raise InvalidInputError(f"cpus_per_worker must be >= 0, got {cpus_per_worker!r}")
    if not (isinstance(gpus_per_worker, (int, float)) and gpus_per_worker >= 0):
        raise InvalidInputError(f"gpus_per_worker must be >= 0, got {gpus_per_worker!r}")
    detector = DetectorSpec() if detector is None else detector
    if isinstance(detector, DetectorSpec):
        detector = detector.resolved()
    elif not callable(getattr(detector, "predict", None)):
        raise InvalidInputError(f"detector must be a DetectorSpec or have a predict(tiles) method, got {type(detector).__name__}")

    out = Path(out_dir).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    paths = expand_inputs(inputs)
    stems = _unique_stems(paths)
    manifest = Manifest(out)
    backend = _resolve_backend(ray)
    t0 = time.perf_counter()
    summary = BatchSummary(run=uuid.uuid4().hex[:12], backend="in-process" if backend is None else f"ray:{backend}",
                           workers=1)

    def record(rec: dict[str, Any]) -> None:
        rec = {"event": "image", "run": summary.run, "time": _now(), **rec}
        manifest.append(rec)
        summary.records.append(rec)
        if on_record is not None:
            on_record(rec)

    todo: list[tuple[Path, str]] = []
    for p, stem in zip(paths, stems):
        if outputs_complete(out, stem, opts):
            record({"input": str(p), "stem": stem, "status": "skipped", "products": _existing_products(out, stem),
                    "error": None, "worker": None, "note": "outputs already complete"})
        else:
            todo.append((p, stem))

    started_ray = False
    try:
        if backend is None or not todo:
            summary.backend = "in-process" if backend is None else summary.backend
            manifest.append({"event": "run", "run": summary.run, "started": _now(), "backend": summary.backend,
                             "workers": 1, "split": split, "out": str(out), "inputs": len(paths),
                             "to_do": len(todo), **(run_info or {})})
            if todo:
                if split:
                    log.warning("split needs Ray workers; each image runs whole in this process")
                if timeout is not None:
                    log.warning("a time limit needs Ray workers; it is not applied in this process")
                _run_in_process(todo, out, detector, opts, record)
        else:
            from .distributed.ray_pool import RayPool, connect

            started_ray = connect(backend, num_cpus=None)
            n = workers if workers is not None else _default_workers(cpus_per_worker, gpus_per_worker)
            if not split:
                n = min(n, len(todo))
            summary.workers = n
            manifest.append({"event": "run", "run": summary.run, "started": _now(), "backend": summary.backend,
                             "workers": n, "cpus_per_worker": cpus_per_worker, "gpus_per_worker": gpus_per_worker,
                             "split": split, "out": str(out), "inputs": len(paths), "to_do": len(todo),
                             **(run_info or {})})
            with RayPool(detector, workers=n, num_cpus=cpus_per_worker, num_gpus=gpus_per_worker) as pool:
                if split:
                    _run_split(todo, out, pool, opts, record, retries=retries, timeout=timeout, on_submit=on_submit)
                else:
                    _run_pool(todo, out, pool, opts, record, retries=retries, timeout=timeout, on_submit=on_submit)
    finally:
        summary.seconds = time.perf_counter() - t0
        manifest.append({"event": "end", "run": summary.run, "ended": _now(), "seconds": round(summary.seconds, 3),
                         "ok": summary.ok, "error": summary.failed, "skipped": summary.skipped,
                         "finished": len(summary.records) == len(paths)})
        manifest.write_snapshot()
        if started_ray:
            import ray as _ray

            _ray.shutdown()
    return summary


def _default_workers(cpus_per_worker: float, gpus_per_worker: float) -> int:
    import ray

    res = ray.cluster_resources()
    if gpus_per_worker > 0:
        return max(1, int(res.get("GPU", 0) // gpus_per_worker))
    if cpus_per_worker > 0:
        return max(1, int(res.get("CPU", 1) // cpus_per_worker))
    return max(1, int(res.get("CPU", 1)))


def _image_record(rec: dict[str, Any], stem: str, attempts: int = 1) -> dict[str, Any]:
    keep = ("input", "status", "products", "tiles", "width", "height", "seconds", "error", "outputs", "worker")
    out = {k: rec.get(k) for k in keep}
    out["stem"] = stem
    out["attempts"] = attempts
    return out


def _build(spec: DetectorSpec) -> Any:
    from .errors import DetectorError

    try:
        return spec.build()
    except DensedetError:
        raise
    except Exception as exc:  # building runs third-party code: one line, not a traceback
        raise DetectorError(f"detector {spec.name!r}: {type(exc).__name__}: {one_line(exc)}") from exc


def _run_in_process(todo: list[tuple[Path, str]], out: Path, detector: Any, opts: RunOptions,
                    record: Callable[[dict[str, Any]], None]) -> None:
    from .runner import process_image

    det = _build(detector) if isinstance(detector, DetectorSpec) else detector
    for p, stem in todo:
        outcome = process_image(p, det, opts, out, stem=stem)
        rec = outcome.as_dict()
        rec["worker"] = f"in-process:{os.getpid()}"
        record(_image_record(rec, stem))


def _run_pool(todo: list[tuple[Path, str]], out: Path, pool: Any, opts: RunOptions,
              record: Callable[[dict[str, Any]], None], *, retries: int, timeout: float | None,
              on_submit: Callable[[Any, Any], None] | None) -> None:
    def submit(actor: Any, item: tuple[Path, str]) -> Any:
        return actor.process.remote(str(item[0]), opts, str(out), item[1])

    for res in pool.map(todo, submit, retries=retries, on_submit=on_submit, timeout=timeout):
        p, stem = res.item
        if res.ok:
            record(_image_record(res.value, stem, res.attempts))
        else:
            record({"input": str(p), "stem": stem, "status": "error", "products": None, "error": f"{p}: {res.error}",
                    "worker": res.worker, "attempts": res.attempts})


# -- one image split across workers -------------------------------------------------------------------
def _chunks(n_tiles: int, n_workers: int) -> list[range]:
    """Contiguous runs of tile indices: about two per worker, so a slow or lost one costs little."""
    k = max(1, min(n_tiles, 2 * n_workers))
    bounds = [round(i * n_tiles / k) for i in range(k + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


def detect_split(src: "ImageSource", pool: Any, opts: RunOptions, *, retries: int = 2, timeout: float | None = None,
                 on_submit: Callable[[Any, Any], None] | None = None) -> "ImageResult":
    """Detect objects in the open image ``src`` with its tiles spread over ``pool``'s workers.

    The workers open ``src.path`` themselves (it must be readable from every worker) and return
    tile-local detections for their tiles; those are merged here once with
    :func:`densedet_tile.merge.merge_tiles`, as :func:`densedet_tile.pipeline.detect_image` does,
    so the boxes equal the single-process result. Raises on a failed chunk (the caller, ``process_image``,
    turns that into the image's error).
    """
    import numpy as np

    from .errors import DetectorError
    from .merge import merge_tiles
    from .pipeline import ImageResult, default_batch_size
    from .tiler import make_grid
    from .types import Detections, MergeSpec, TileSpec

    t_start = time.perf_counter()
    if src.path is None:
        raise InvalidInputError(f"{src.name}: a split image must be a file every worker can read")
    spec = TileSpec(tile=opts.tile, overlap=opts.overlap)
    merge = MergeSpec() if opts.merge is None else opts.merge
    tiles = make_grid(src.width, src.height, spec)
    chunks = _chunks(len(tiles), max(1, len(pool.slots)))
    path = str(src.path)

    def submit(actor: Any, chunk: range) -> Any:
        return actor.predict_tiles.remote(path, [tiles[i] for i in chunk], opts)

    dets: list[Detections | None] = [None] * len(tiles)
    timings = {"read_s": 0.0, "resize_s": 0.0, "predict_s": 0.0}
    used: list[str] = []
    try:
        for res in pool.map(chunks, submit, retries=retries, on_submit=on_submit, timeout=timeout):
            if not res.ok:
                raise DetectorError(f"{src.name}: tiles {res.item.start}..{res.item.stop - 1}: {res.error}")
            v = res.value
            for i, xyxy, scores, labels in zip(res.item, v["xyxy"], v["scores"], v["labels"]):
                dets[i] = Detections(np.array(xyxy), np.array(scores), np.array(labels))
            for k in timings:
                timings[k] += float(v["timings"].get(k, 0.0))
            if v["worker"] not in used:
                used.append(v["worker"])
    finally:
        for s in pool.slots:  # let the workers drop the decoded image
            s.handle.close_image.remote()
    if any(d is None for d in dets):  # pragma: no cover - map() yields every chunk once
        raise DetectorError(f"{src.name}: some tiles came back without detections")
    t_merge0 = time.perf_counter()
    merged = merge_tiles(tiles, dets, merge)  # type: ignore[arg-type]
    t_end = time.perf_counter()
    info = pool.info[0] if pool.info else {}
    device = info.get("auto_device") if opts.device == "auto" else opts.device
    device = device or "cpu"
    batch_size = opts.batch_size if opts.batch_size is not None else default_batch_size(device)
    model = dict(info.get("model", {}))
    settings = {
        "tile": spec.tile,
        "overlap": spec.overlap,
        "merge": _asdict(merge),
        "batch_size": batch_size,
        "final_batch_size": batch_size,
        "device": device,
        "score_thr": opts.score_thr,
        "input_size": opts.input_size if opts.input_size is not None else model.get("input_size"),
        "split_workers": used,
    }
    timings_out = {k: round(v, 4) for k, v in timings.items()}
    timings_out["merge_s"] = round(t_end - t_merge0, 4)
    timings_out["total_s"] = round(t_end - t_start, 4)
    return ImageResult(
        detections=merged, name=src.name, path=path, width=src.width, height=src.height,
        num_tiles=len(tiles), settings=settings, model=model, timings=timings_out,
    )


def _asdict(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(obj)


def _run_split(todo: list[tuple[Path, str]], out: Path, pool: Any, opts: RunOptions,
               record: Callable[[dict[str, Any]], None], *, retries: int, timeout: float | None,
               on_submit: Callable[[Any, Any], None] | None) -> None:
    from .runner import process_image

    for p, stem in todo:
        outcome = process_image(
            p, None, opts, out, stem=stem,
            detect=lambda src: detect_split(src, pool, opts, retries=retries, timeout=timeout, on_submit=on_submit),
        )
        rec = outcome.as_dict()
        rec["worker"] = f"split:{len(pool.slots)}"
        record(_image_record(rec, stem))


# -- command line -----------------------------------------------------------------------------------
def build_batch_parser() -> argparse.ArgumentParser:
    """The ``densedet-tile batch`` argument parser."""
    from .argtypes import nonneg_float, nonneg_int, positive_float, positive_int
    from .cli import _formats, add_detector_options, add_tiling_options

    p = argparse.ArgumentParser(
        prog="densedet-tile batch",
        description="Detect products in many images (or one giant image) on a pool of workers: "
        "a local or remote Ray cluster, or this process when Ray is not installed. Restartable: "
        "images whose outputs are complete are skipped; every image's result is logged in "
        "OUT/manifest.jsonl and summarised in OUT/manifest.json.",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, or folders of them (not recursive)")
    add_tiling_options(p)
    add_detector_options(p)
    o = p.add_argument_group("output")
    o.add_argument("--out", required=True, metavar="DIR", help="output folder (every worker must be able to write it)")
    o.add_argument("--format", type=_formats, default=("json",), metavar="LIST",
                   help="comma-separated outputs beside the JSON: json, csv (SKU-110K rows), coco (COCO results)")
    o.add_argument("--preview", action="store_true", help="also write <stem>.preview.jpg with the boxes drawn")
    o.add_argument("-q", "--quiet", action="store_true", help="no per-image lines")
    o.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    r = p.add_argument_group("workers")
    r.add_argument("--ray", default="default", metavar="ADDRESS",
                   help="'local' (start Ray on this machine), 'auto' (join $RAY_ADDRESS or the cluster running "
                   "here), ray://HEAD:10001 or HEAD:6379 (join that cluster), or 'none' (this process only). "
                   "Default: auto when $RAY_ADDRESS is set, else local when Ray is installed, else none")
    r.add_argument("--workers", type=positive_int, default=None, metavar="N",
                   help="number of workers (default: cluster CPUs / --cpus-per-worker, or GPUs / --gpus-per-worker)")
    r.add_argument("--cpus-per-worker", type=nonneg_float, default=1.0, metavar="X",
                   help="CPUs reserved by each worker (default: %(default)s)")
    r.add_argument("--gpus-per-worker", type=nonneg_float, default=0.0, metavar="X",
                   help="GPUs reserved by each worker, e.g. 1 or 0.5 (default: %(default)s)")
    r.add_argument("--split", action="store_true",
                   help="split each image's tiles across all workers (for a few giant panoramas)")
    r.add_argument("--retries", type=nonneg_int, default=2, metavar="N",
                   help="times an image is retried when its worker dies (default: %(default)s)")
    r.add_argument("--timeout", type=positive_float, default=None, metavar="S",
                   help="seconds one image (with --split: one run of tiles) may take on a worker before the "
                   "worker is stopped and the image retried (default: no limit)")
    return p


def _err(msg: str) -> None:
    print(f"densedet-tile batch: error: {msg}", file=sys.stderr, flush=True)


def batch_main(argv: Sequence[str]) -> int:
    """``densedet-tile batch ...``: exit 0 when every image is done, 1 when some failed, 2 for bad usage."""
    from .cli import options_from_args

    parser = build_batch_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.debug:
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    spec = DetectorSpec(name=args.detector, config=args.config, checkpoint=args.checkpoint, device=args.device,
                        input_size=args.input_size, score_thr=args.score_thr)
    total = [0]

    def show(rec: dict[str, Any]) -> None:
        total[0] += 1
        if args.quiet and rec["status"] != "error":
            return
        name = Path(rec["input"]).name
        if rec["status"] == "error":
            _err(rec.get("error") or f"{rec['input']}: failed")
        elif rec["status"] == "skipped":
            print(f"{name}: skipped (outputs complete)", file=sys.stderr, flush=True)
        else:
            print(f"{name}: {rec.get('products')} products, {rec.get('tiles')} tiles, {rec.get('seconds', 0):.2f} s"
                  f" [{rec.get('worker')}]", file=sys.stderr, flush=True)

    try:
        opts = options_from_args(args)
        summary = run_batch(
            args.inputs, args.out, detector=spec, opts=opts, ray=args.ray, workers=args.workers,
            cpus_per_worker=args.cpus_per_worker, gpus_per_worker=args.gpus_per_worker, split=args.split,
            retries=args.retries, timeout=args.timeout, on_record=show, run_info={"argv": list(argv)},
        )
    except KeyboardInterrupt:
        _err("interrupted (re-run the same command to continue where it stopped)")
        return 130
    except (DensedetError, MissingDependencyError) as exc:
        if args.debug:
            raise
        _err(one_line(exc))
        return EXIT_USAGE
    if not args.quiet:
        print(f"batch {summary.run} ({summary.backend}, {summary.workers} worker(s)): {summary.ok} done, "
              f"{summary.skipped} skipped, {summary.failed} failed in {summary.seconds:.1f} s; "
              f"manifest: {Manifest(args.out).json_path}", file=sys.stderr, flush=True)
    return EXIT_SOME_FAILED if summary.failed else EXIT_OK
