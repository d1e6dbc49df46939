"""The shape of the house: imports point down only, frameworks load only where a model runs,
and an installed (not editable) package carries its configs."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import densedet_tile

PKG = Path(densedet_tile.__file__).resolve().parent
ROOT = PKG.parent
FRAMEWORKS = ("torch", "torchvision", "mmdet", "mmcv", "mmengine", "onnxruntime", "ai_edge_litert", "ray")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports anywhere (function-local imports too)."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return found


def _graph() -> dict[str, set[str]]:
    mods = {_module_name(p): p for p in PKG.rglob("*.py") if "configs" not in p.relative_to(PKG).parts}
    edges: dict[str, set[str]] = {}
    for m, path in mods.items():
        targets = set()
        for name in _imports(path):
            while name and name not in mods:
                name = name.rpartition(".")[0]
            if name and name != m and not m.startswith(name + "."):  # a package's own __init__ is not an edge up
                targets.add(name)
        edges[m] = targets
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(edges[w]))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def test_import_graph_has_no_cycle():
    assert _cycles(_graph()) == []


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_only_the_cli_imports_the_cli():
    up = sorted(f"{m} -> {t}" for m, ts in _graph().items() for t in ts
                if t.startswith("densedet_tile.cli") and not m.startswith("densedet_tile.cli")
                and m != "densedet_tile.__main__")
    assert up == []


def test_no_engine_module_imports_the_generators():
    # synth/ feeds tests, benchmarks and training (train/); the engine must never depend on it
    down = sorted(f"{m} -> {t}" for m, ts in _graph().items() for t in ts
                  if t.startswith("densedet_tile.synth")
                  and not m.startswith(("densedet_tile.synth", "densedet_tile.train")))
    assert down == []


def test_only_the_cli_imports_training():
    # train/ sits beside the cli on the top floor: it may use the engine, never the reverse
    up = sorted(f"{m} -> {t}" for m, ts in _graph().items() for t in ts
                if t.startswith("densedet_tile.train")
                and not m.startswith(("densedet_tile.train", "densedet_tile.cli")))
    assert up == []


@pytest.mark.parametrize("floor", ["merge", "tiler", "types", "errors", "io", "pipeline", "runner", "eval", "audit"])
def test_lower_floors_import_no_framework(floor):
    paths = list((PKG / floor).rglob("*.py")) if (PKG / floor).is_dir() else [PKG / f"{floor}.py"]
    bad = {str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.split(".")[0] in FRAMEWORKS) for p in paths}
    assert {k: v for k, v in bad.items() if v} == {}


def test_numpy_detector_run_never_imports_torch_or_the_generators():
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import densedet_tile as dt\n"
        "assert 'torch' not in sys.modules, 'import densedet_tile'\n"
        "from fakes import BlobDetector, blob_image\n"
        "res = dt.detect_image(blob_image(900, 2000, (700, 300, 860, 520)), BlobDetector(), tile=640)\n"
        "assert len(res.detections) == 1 and res.settings['device'] == 'cpu'\n"
        "import densedet_tile.cli, densedet_tile.eval, densedet_tile.audit, densedet_tile.batch\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in %r or m.startswith('densedet_tile.synth')))\n"
        % (FRAMEWORKS,)
    )
    r = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to copy the tracked tree")
def test_non_editable_install_finds_the_densedet_config_by_name(tmp_path):
    # Build and install a real wheel from the tracked files (no dependencies, no network), then
    # look the config up from outside the source tree.
    src = tmp_path / "src"
    # safe.directory: a CI job running as root over a clone owned by another user is refused by
    # git ("dubious ownership") otherwise; a source tree without git (a tarball) is skipped
    listing = subprocess.run(["git", "-c", f"safe.directory={ROOT}", "ls-files", "-z"], cwd=ROOT, capture_output=True)
    if listing.returncode != 0 or not listing.stdout:
        pytest.skip(f"{ROOT} is not a git work tree: no tracked files to build the wheel from")
    files = listing.stdout
    for rel in filter(None, files.decode().split("\0")):
        p = ROOT / rel
        if p.is_file() and not p.is_symlink() and not rel.startswith(("tests/", "benchmarks/", "examples/")):
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, src / rel)
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(src)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    # the licence travels with the wheel (Apache-2.0 asks that recipients get a copy)
    assert [p.name for p in target.glob("densedet_tile-*.dist-info/licenses/*")] == ["LICENSE"]
    code = ("import densedet_tile.configs as c; p = c.find_config('densedet-x101'); "
            "print(p); print(p.is_file()); print(c.find_config('densedet-x101-whole').is_file())")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    path, exists, whole = r.stdout.split()
    assert Path(path).is_relative_to(target) and exists == "True" and whole == "True"
