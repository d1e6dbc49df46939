"""A verb whose optional package is installed but fails to import says so in one line (an
outside review, 2026-12-06: adapt and convert-checkpoint printed a traceback)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import run_cli


@pytest.mark.parametrize("argv", [["adapt", "photos", "--out", "out/x.pt", "--steps", "1"],
                                  ["convert-checkpoint", "in.pth", "out.pth"]])
def test_a_torch_that_fails_to_import_is_one_line(tmp_path: Path, argv: list[str]) -> None:
    # a torch built for another CUDA: its import raises ImportError (not ModuleNotFoundError)
    (tmp_path / "torch.py").write_text('raise ImportError("libcudart.so.12: cannot open shared object file")\n')
    (tmp_path / "photos").mkdir()
    r = run_cli(*argv, cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert "'torch' package, which is installed but cannot be imported" in lines[0]
    assert "libcudart.so.12" in lines[0] and "Traceback" not in r.stderr
