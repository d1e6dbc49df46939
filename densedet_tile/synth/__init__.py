"""Synthetic data generators for tests, benchmarks and training; not part of the engine.

Nothing in the engine (pipeline, tiler, merge, detectors, eval, audit) imports this package,
and ``import densedet_tile`` does not load it. Each module draws everything from a seed or a
:class:`numpy.random.Generator`, so the same seed gives the same image and boxes.

* :mod:`.shelves` -- photo-like supermarket shelves with exact product boxes (rows of packed
  products with printed packaging, shelf lips with price tags, light, perspective, blur, noise,
  JPEG). The built-in model is trained and evaluated on them (``scripts/train_default.py``,
  ``scripts/make_shelves.py``, MODEL_CARD.md). :func:`render_shelf` draws one image,
  :func:`training_sample` a model-input-sized training crop, :func:`write_dataset` a folder of
  photos plus a SKU-110K style ``annotations.csv``.
* :mod:`.painted_aisles` -- flat-painted shelf panoramas whose pixel colours encode product
  ids (:func:`make_painted_aisle`, :func:`encode_ids`, :func:`decode_ids`), a fake detector that
  reads those ids back from tile pixels (:class:`PaintedDetector`), and :func:`seam_report`,
  which scores merged boxes against the painted ground truth. Used by the merge/seam tests and
  benchmarks (``scripts/bench_seams.py``, ``bench_merge.py``, ``bench_e2e.py``).
* :mod:`.audit_aisles` -- aisle layouts (product boxes per shelf row, optionally tilted and
  jittered) with planted gaps, for the audit's row and gap finding (:func:`synthetic_aisle`,
  :func:`render_aisle` to paint one, :func:`score_gaps` / :class:`GapScore` to compare found
  gaps with the planted ones; ``scripts/bench_audit.py``).
"""

from .audit_aisles import GapScore, SyntheticAisle, render_aisle, score_gaps, synthetic_aisle
from .painted_aisles import PaintedDetector, decode_ids, encode_ids, make_painted_aisle, seam_report
from .shelves import PHOTO_PRODUCT_HEIGHT, render_shelf, training_sample, write_dataset

__all__ = [
    # shelves
    "PHOTO_PRODUCT_HEIGHT",
    "render_shelf",
    "training_sample",
    "write_dataset",
    # painted_aisles
    "make_painted_aisle",
    "PaintedDetector",
    "encode_ids",
    "decode_ids",
    "seam_report",
    # audit_aisles
    "SyntheticAisle",
    "synthetic_aisle",
    "render_aisle",
    "GapScore",
    "score_gaps",
]
