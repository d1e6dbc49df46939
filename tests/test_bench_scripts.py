"""Smoke tests for the benchmark scripts (so they do not rot) and their accuracy scoring."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
FAKES = Path(__file__).resolve().parent / "fakes.py"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{name}", SCRIPTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _slow_stats(pred: np.ndarray, gt: np.ndarray) -> dict[str, float | int]:
    """Obvious N x M reference for match_stats (fine for a few boxes)."""
    iou = np.zeros((len(pred), len(gt)))
    for i, a in enumerate(pred):
        for j, b in enumerate(gt):
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            iou[i, j] = inter / union if union > 0 else 0.0
    best_gt = iou.max(axis=0) if len(pred) else np.zeros(len(gt))
    best_pred = iou.max(axis=1) if len(gt) else np.zeros(len(pred))
    hits = (iou >= 0.5).sum(axis=0)
    return {
        "n_pred": len(pred),
        "n_gt": len(gt),
        "recall50": float(np.mean(best_gt >= 0.5)),
        "recall90": float(np.mean(best_gt >= 0.9)),
        "duplicates": int(np.clip(hits - 1, 0, None).sum()),
        "unmatched": int(np.count_nonzero(best_pred < 0.5)),
    }


def test_match_stats_counts_hand_built_case():
    e2e = _load("bench_e2e")
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)
    pred = np.array(
        [
            [0, 0, 10, 10],  # exact: counts at 0.5 and 0.9
            [0.5, 0, 10, 10],  # duplicate of box 0 (IoU 0.95)
            [20, 0, 27, 10],  # IoU 0.7: found at 0.5, not at 0.9
            [40, 0, 43, 10],  # fragment of box 2 (IoU 0.3): unmatched, box 2 missed
            [100, 100, 110, 110],  # false positive
        ],
        np.float32,
    )
    s = e2e.match_stats(pred, gt)
    assert s["recall50"] == pytest.approx(2 / 3)
    assert s["recall90"] == pytest.approx(1 / 3)
    assert s["duplicates"] == 1
    assert s["unmatched"] == 2
    assert (s["n_pred"], s["n_gt"]) == (5, 3)


@pytest.mark.parametrize("seed", range(5))
def test_match_stats_agrees_with_slow_reference(seed):
    e2e = _load("bench_e2e")
    rng = np.random.default_rng(seed)
    # disjoint ground truth on a grid, predictions jittered copies, fragments and strays
    xs, ys = np.meshgrid(np.arange(8) * 30.0, np.arange(4) * 40.0)
    gt = np.stack([xs.ravel(), ys.ravel(), xs.ravel() + 25, ys.ravel() + 35], axis=1)
    pick = rng.choice(len(gt), size=40, replace=True)
    pred = gt[pick] + rng.normal(0, 3, size=(40, 4))
    pred[:, 2:] = np.maximum(pred[:, 2:], pred[:, :2] + 1)
    strays = rng.uniform(0, 250, size=(6, 2))
    pred = np.concatenate([pred, np.concatenate([strays, strays + 10], axis=1)])
    assert e2e.match_stats(pred, gt) == pytest.approx(_slow_stats(pred, gt))


def test_match_stats_empty_inputs():
    e2e = _load("bench_e2e")
    gt = np.array([[0, 0, 10, 10]], np.float32)
    s = e2e.match_stats(np.zeros((0, 4)), gt)
    assert (s["recall50"], s["duplicates"], s["unmatched"]) == (0.0, 0, 0)
    s = e2e.match_stats(gt, np.zeros((0, 4)))
    assert s["unmatched"] == 1 and np.isnan(s["recall50"])


def _run(script: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_bench_e2e_quick(tmp_path):
    pytest.importorskip("sahi")
    out = tmp_path / "report.json"
    md = tmp_path / "e2e.md"
    proc = _run("bench_e2e.py", ["--quick", "--work-dir", str(tmp_path / "w"), "--json", str(out),
                                 "--append-md", str(md)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    methods = {r["method"]: r for r in report["runs"]}
    assert set(methods) == {"ours", "sahi-default"}
    for r in methods.values():
        assert r["wall_s"] > 0 and r["peak_rss_mb"] >= r["rss_before_mb"] > 0
        assert r["n_gt"] == report["n_gt"] > 0
    # the painted detector finds every product; both pipelines must keep them all
    assert methods["ours"]["recall50"] >= 0.95
    assert methods["sahi-default"]["recall50"] >= 0.95
    text = md.read_text()
    assert "| ours |" in text and "| sahi-default |" in text and "command: `python" in text


def test_bench_overhead_quick(tmp_path):
    out = tmp_path / "report.json"
    proc = _run("bench_overhead.py", ["--quick", "--detector", f"{FAKES}:make_blob", "--work-dir", str(tmp_path / "w"),
                                      "--json", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert set(report["images"]) == {"photo", "panorama"}
    for r in report["images"].values():
        m = r["median"]
        assert 0 < m["predict_s"] < m["wall_s"]
        assert m["overhead_s"] == pytest.approx(m["wall_s"] - m["predict_s"])
        assert r["decode_array_s"] > 0 and r["num_tiles"] >= 1
        # every tile went through the detector exactly once
        assert r["runs"][0]["tiles"] == r["num_tiles"]
        assert len(r["replay_s"]) == 1 and r["replay_median_s"] > 0
    assert "| photo 900x1200" in proc.stdout and "| panorama 3000x700" in proc.stdout


def test_timed_detector_forwards_and_counts():
    ov = _load("bench_overhead")

    class Inner:
        input_size = 64
        name = "inner"

        def predict(self, tiles):
            return [len(t) for t in tiles]

    t = ov.TimedDetector(Inner())
    assert t.input_size == 64 and t.name == "inner"
    assert t.predict([np.zeros((3, 3, 3)), np.zeros((5, 3, 3))]) == [3, 5]
    assert (t.calls, t.tiles) == (1, 2) and t.seconds >= 0
    t.reset()
    assert (t.calls, t.tiles, t.seconds) == (0, 0, 0.0)


def test_replay_detector_returns_recorded_results_in_order():
    ov = _load("bench_overhead")
    rep = ov.ReplayDetector(["a", "b", "c"], input_size=32)
    assert rep.input_size == 32
    assert rep.predict([0, 0]) == ["a", "b"]
    assert rep.predict([0]) == ["c"]
    with pytest.raises(RuntimeError):
        rep.predict([0])


def test_bench_audit_noise_runs_and_the_rules_find_the_gaps_rails_hid(tmp_path):
    noise = _load("bench_audit_noise")
    import numpy as np

    from densedet_tile.audit import run_audit

    for before in (False, True):
        proc = _run("bench_audit_noise.py", ["--aisles", "2", "--only", "none,rail"] + (["--before"] if before else []),
                    tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "none" in proc.stdout and "rail" in proc.stdout
    A = noise.make_aisle(0)
    xy, key = noise.perturb("rail", A, np.random.default_rng(1), 2.0)
    assert (key == -1).sum() > 0 and len(xy) == len(key)
    res = noise.score(A, xy, key, run_audit(xy, A["width"], A["height"]))
    assert res["found"] >= 0.8 * res["planted"]


def test_bench_audit_noise_drop_and_real_perturb_as_described():
    noise = _load("bench_audit_noise")
    import numpy as np

    A = noise.make_aisle(3)
    n = len(A["xyxy"])
    xy, key = noise.perturb("drop", A, np.random.default_rng(5), 0.2)
    # a subset of the true boxes, untouched, each with its own key
    assert 0.6 * n < len(xy) < 0.95 * n and (key >= 0).all()
    assert len(np.unique(np.r_[A["xyxy"], xy], axis=0)) == n
    xy, key = noise.perturb("real", A, np.random.default_rng(5), 0.1)
    real = key >= 0
    # jittered products (not the true boxes any more), some missed, plus rails and 3 strays
    assert 0.75 * n < real.sum() < n and (~real).sum() >= 3
    assert not np.isin(xy[real, 0], A["xyxy"][:, 0]).any()


def test_bench_audit_panorama_says_when_the_real_photos_are_missing(tmp_path):
    import subprocess
    import sys

    script = Path(__file__).resolve().parents[1] / "scripts" / "bench_audit_panorama.py"
    r = subprocess.run([sys.executable, str(script), "--photos", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2 and "no real shelf photos here" in r.stderr


def test_bench_audit_panorama_counts_rows_across_a_seam():
    pano = _load("bench_audit_panorama")

    def bay(x0, yoff):  # 5 shelves of 20 products 80x250 on a 300 px pitch
        return [[x0 + k * 84, s * 300 + 50 + yoff, x0 + k * 84 + 80, s * 300 + 300 + yoff]
                for s in range(5) for k in range(20)]

    a = np.array(bay(0, 0) + bay(20 * 84, 150), float)
    m = pano.measure(a, 40 * 84, 1800, [20 * 84 - 2])  # two "photos", the second's shelves lower
    assert (m["bays"], m["bays_over_photos"], m["rows_crossing"]) == (2, 0, 0)
    m = pano.measure(a, 40 * 84, 1800, [10 * 84 - 2])  # a seam through the middle of the first bay
    assert m["bays_over_photos"] == 1 and m["rows_crossing"] == 5
