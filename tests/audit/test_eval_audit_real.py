"""scripts/eval_audit_real.py: its row matching, its perfect-box mode, and its refusal without photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_audit_real.py"


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("_eval_audit_real", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def slow_matches(found: np.ndarray, truth: np.ndarray, thr: float) -> int:
    """Greedy one-to-one matching written out pair by pair."""
    pairs = []
    for i, a in enumerate(found):
        for j, b in enumerate(truth):
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union >= thr:
                pairs.append((-inter / union, i, j))
    used_i, used_j, n = set(), set(), 0
    for _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            n += 1
    return n


@pytest.mark.parametrize("seed", range(10))
def test_row_matching_is_one_to_one_and_matches_a_slow_reference(ev, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = np.column_stack([rng.uniform(0, 500, (12, 2)), rng.uniform(0, 500, (12, 2)) + 600])
    truth = np.column_stack([truth[:, 0], truth[:, 1], truth[:, 0] + rng.uniform(50, 300, 12), truth[:, 1] + rng.uniform(20, 80, 12)])
    found = np.concatenate([truth + rng.normal(0, 15, truth.shape), truth[:4] + rng.normal(0, 5, (4, 4))])
    m = ev.match_rows(found, truth)
    assert len({f for f, _, _ in m}) == len({t for _, t, _ in m}) == len(m)
    assert all(iou >= 0.5 for _, _, iou in m)
    assert len(m) == slow_matches(found, truth, 0.5)


def test_perfect_box_mode_runs_and_scores_the_geometry(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--synthetic", "3"]) == 0
    out = capsys.readouterr().out
    assert "row recall" in out and "gaps_across_uprights" in out


def test_missing_photos_exit_2_with_a_message(ev, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ev.main(["--photos", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    assert "not available" in capsys.readouterr().err


def test_the_contact_sheet_is_refused_inside_the_repository(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--synthetic", "1", "--sheet", str(SCRIPT.parent / "sheet.jpg")]) == 2
    assert not (SCRIPT.parent / "sheet.jpg").exists()
