"""The merge and seam benchmark scripts run, and their box generator is faithful."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import TileSpec

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_bench_merge_views_equal_painted_detector() -> None:
    bm = load("bench_merge")
    img, gt = make_painted_aisle(3000, 1200, n_products=40, seed=4)
    tiles = make_grid(3000, 1200, TileSpec(500, 0.2))
    painted = PaintedDetector(jitter=0.0).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
    views = bm.tile_views(gt.xyxy.astype(np.float64), tiles, jitter=0.0, seed=0)
    assert sum(map(len, views)) > len(gt)  # duplicates across tiles exist
    for a, b in zip(painted, views):
        ka, kb = np.lexsort(a.xyxy.T[::-1]), np.lexsort(b.xyxy.T[::-1])
        np.testing.assert_array_equal(a.xyxy[ka], b.xyxy[kb])
        np.testing.assert_allclose(a.scores[ka], b.scores[kb], rtol=1e-6)


def test_bench_seams_runs_and_reports(tmp_path: Path) -> None:
    bs = load("bench_seams")
    out = tmp_path / "seams.md"
    rc = bs.main(["--width", "5000", "--height", "1500", "--products", "60", "--seeds", "0", "--out", str(out)])
    text = out.read_text()
    assert rc == 0, text
    assert "| wbf / 0 |" in text and "| none / 0 |" in text and "targets MET" in text
