"""Issue 2 acceptance: seams on a painted aisle panorama, through the real engine.

A 20000x3000 px aisle with 700 painted products (some larger than the 256 px overlap), the
PaintedDetector (every visible product, clipped at the tile edge, 1 px of jitter) run by
``dt.detect`` with tile 1280 and overlap 0.2. ``scripts/bench_seams.py`` records the same
measurement for several seeds and all merge modes in ``benchmarks/seams.md``.
"""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle, seam_report
from densedet_tile.types import MergeSpec, TileSpec

SPEC = TileSpec(1280, 0.2)


@pytest.fixture(scope="module")
def aisle() -> tuple[np.ndarray, dt.Detections]:
    return make_painted_aisle(20000, 3000, n_products=700, seed=11)


def test_aisle_is_a_fair_test(aisle) -> None:  # noqa: ANN001
    _, gt = aisle
    side = np.maximum(gt.xyxy[:, 2] - gt.xyxy[:, 0], gt.xyxy[:, 3] - gt.xyxy[:, 1])
    assert len(gt) >= 500
    assert np.sum(side >= SPEC.overlap_px) >= 20  # products larger than the overlap
    # Many products really cross a seam: right tile edges sit at x = 1280 + k * 1024.
    seams = 1280 + 1024 * np.arange(19)
    crossing = (gt.xyxy[:, 0, None] < seams) & (gt.xyxy[:, 2, None] > seams)
    assert crossing.any(axis=1).sum() >= 30


def test_wbf_meets_the_issue_2_targets(aisle) -> None:  # noqa: ANN001
    image, gt = aisle
    out = dt.detect(image, detector=PaintedDetector(jitter=1.0, seed=3), tile=SPEC.tile, overlap=SPEC.overlap)
    r = seam_report(out, gt, large_side=SPEC.overlap_px)
    assert r["recall_small"] >= 0.99, r
    assert r["recall_large"] >= 0.95, r
    assert r["dup_frag_rate"] <= 0.005, r
    assert r["merged"] == 0 and r["false_positives"] == 0, r


def test_without_merging_the_seams_show(aisle) -> None:  # noqa: ANN001
    # The same run with mode "none" must be visibly worse: the measurement can fail.
    image, gt = aisle
    out = dt.detect(image, detector=PaintedDetector(jitter=1.0, seed=3), tile=SPEC.tile, overlap=SPEC.overlap,
                    merge=MergeSpec(mode="none"))
    r = seam_report(out, gt, large_side=SPEC.overlap_px)
    assert r["dup_frag_rate"] > 0.2 and r["recall_large"] < 0.95, r
