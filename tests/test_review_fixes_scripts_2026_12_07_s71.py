"""Fixes from the outside reviews of 2026-12-07 (stop 71): the model's scripts on the light install
(no torch, onnx or pycocotools) stop with one line naming the extra, before any work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "scripts"


def _without(modules: list[str], script: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``script`` with ``modules`` made unimportable (as on the light install)."""
    code = ("import sys, runpy, importlib.util\n"
            f"hidden = {modules!r}\n"
            "for m in hidden: sys.modules[m] = None\n"
            "real = importlib.util.find_spec\n"
            "importlib.util.find_spec = lambda name, *a: None if name.split('.')[0] in hidden else real(name, *a)\n"
            f"sys.argv = [{script!r}, *{list(args)!r}]\n"
            f"sys.path.insert(0, {str(SCRIPTS)!r})\n"
            f"runpy.run_path({script!r}, run_name='__main__')\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("script,extra", [("train_default.py", "train"), ("bench_gpu_default.py", "torch")])
def test_a_torch_script_without_torch_says_one_line(script, extra):
    r = _without(["torch"], str(SCRIPTS / script), "--help")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == f"{script[:-3]}: needs torch: pip install 'densedet-tile[{extra}]'"


def test_export_without_onnx_says_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "x.onnx"
    r = _without(["onnx"], str(SCRIPTS / "export_default_onnx.py"), "--out", str(out))
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == "export_default_onnx: exporting needs onnx: pip install 'densedet-tile[onnx]'"
    assert not out.exists()


def test_eval_without_pycocotools_stops_before_detecting(tmp_path):
    # it ran the whole detection pass, then failed with a traceback at the scoring
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "annotations.csv").write_text("image_name,x1,y1,x2,y2,class_name,image_width,image_height\n")
    r = _without(["pycocotools"], str(SCRIPTS / "eval_default.py"), "--data", str(data), "--speed-images", "0")
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip() == ("eval_default: --data is scored with pycocotools, which is not installed: "
                                "pip install 'densedet-tile[train]'")
