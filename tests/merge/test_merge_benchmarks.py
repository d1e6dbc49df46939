"""The merge and seam benchmark scripts run, and their box generator is faithful."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import TileSpec

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def load(name: str):  # noqa: ANN201
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while it runs
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


def test_bench_real_seams_says_so_when_the_photos_are_not_there(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    brs = load("bench_real_seams")
    out = tmp_path / "real.md"
    rc = brs.main(["--photos", str(tmp_path / "nowhere"), "--out", str(out), "--cache", ""])
    assert rc == 2 and "not there" in capsys.readouterr().err
    assert not out.exists()


def test_bench_real_seams_scoring() -> None:
    brs = load("bench_real_seams")
    ref = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [100, 0, 110, 10]], float)
    pred = np.array([[1, 0, 10, 10], [0, 0, 10, 10], [21, 0, 31, 10], [50, 0, 60, 10], [98, 0, 108, 10]], float)
    pm, rm = brs.match_boxes(pred, ref, 0.5)
    assert pm.tolist() == [-1, 0, 1, -1, 2] and rm.tolist() == [1, 2, 4]
    c = brs.score(pred, ref, np.zeros((0, 2)), 0.5)
    assert c == {"tp": 3, "fp": 2, "fn": 0, "dup": 1, "frag": 0}
    assert brs.score(pred, ref, np.zeros((0, 2)), 0.75)["tp"] == 2  # pred 4 has IoU 0.67
    # A band around x = 105 (a stitching seam): ref 2 and the prediction matched to it vanish.
    c = brs.score(pred, ref, np.array([[95.0, 115.0]]), 0.5)
    assert c == {"tp": 2, "fp": 2, "fn": 0, "dup": 1, "frag": 0}
    assert brs.f1(c) == 4 / 6
    assert brs.group_photos(list("abcdefghi"), 4) == [list("abcd"), list("efghi")]


def test_bench_real_seams_matching_is_the_greedy_order() -> None:
    brs = load("bench_real_seams")
    rng = np.random.default_rng(3)
    for _ in range(20):
        ref = rng.uniform(0, 300, size=(60, 2))
        ref = np.concatenate([ref, ref + rng.uniform(10, 40, size=(60, 2))], axis=1)
        pred = ref[rng.integers(0, 60, size=80)] + rng.normal(0, 4, size=(80, 4))
        pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
        pm, rm = brs.match_boxes(pred, ref, 0.5)
        # Sequential greedy over all pairs by descending IoU (dense: small test only).
        from densedet_tile.merge import pair_iou

        both = np.concatenate([pred, ref])
        pi, ri = np.meshgrid(np.arange(80), np.arange(60), indexing="ij")
        iou = pair_iou(both, pi.ravel(), 80 + ri.ravel())
        want = np.full(80, -1)
        used = set()
        for k in np.lexsort((ri.ravel(), pi.ravel(), -iou)):
            p, r = int(pi.ravel()[k]), int(ri.ravel()[k])
            if iou[k] >= 0.5 and want[p] < 0 and r not in used:
                want[p] = r
                used.add(r)
        np.testing.assert_array_equal(pm, want)
