"""The generators stay out of the engine: no engine module imports densedet_tile.synth, and
``import densedet_tile`` (or any engine entry point) does not load it."""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import densedet_tile

PKG = Path(densedet_tile.__file__).resolve().parent


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, anywhere in the file (lazy imports too)."""
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    package = parts[:-1]  # the package a relative import starts from (also for __init__.py)
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


def test_no_engine_module_imports_synth() -> None:
    engine = [p for p in PKG.rglob("*.py") if "synth" not in p.relative_to(PKG).parts]
    assert len(engine) > 20
    offenders = {
        str(p.relative_to(PKG.parent)): sorted(n for n in _imported_modules(p) if n.startswith("densedet_tile.synth"))
        for p in engine
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_engine_does_not_load_synth() -> None:
    code = (
        "import sys, densedet_tile\n"
        "assert not [m for m in sys.modules if m.startswith('densedet_tile.synth')], 'import densedet_tile'\n"
        "import densedet_tile.pipeline, densedet_tile.merge, densedet_tile.tiler, densedet_tile.eval\n"
        "import densedet_tile.audit, densedet_tile.cli, densedet_tile.detector.registry, densedet_tile.detector.builtin\n"
        "print(sorted(m for m in sys.modules if m.startswith('densedet_tile.synth')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


@pytest.mark.parametrize("old", ["densedet_tile.shelves", "densedet_tile.synthetic", "densedet_tile.audit.synthetic"])
def test_the_old_generator_paths_are_gone(old: str) -> None:
    # no shim left behind; an editable install of another checkout may still resolve the name
    # there, so only a module inside this package counts
    spec = importlib.util.find_spec(old)
    assert spec is None or not Path(spec.origin or "").resolve().is_relative_to(PKG)
