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
    # under the verb's own name, as its other errors are (it was "densedet-tile: error: densedet-tile adapt ...")
    assert lines[0].startswith(f"densedet-tile {argv[0]}: error: {argv[0]} needs the 'torch' package"), lines[0]


@pytest.mark.parametrize("argv, said", [
    (["--checkpoint", "missing.pt"], "checkpoint missing.pt: no such file"),
    (["--detector", "mmdet", "--config", "densedet-x101", "--checkpoint", "missing.pth"],
     "checkpoint missing.pth: no such file"),
    (["--detector", "mmdet", "--config", "densedet-x101", "--device", "cuda"],
     "the mmdet detector needs the 'torch' package, which is not installed; install it with: "
     "pip install 'densedet-tile[mmdet]'"),
])
def test_without_torch_a_typo_is_a_typo_and_mmdet_names_its_own_extra(tmp_path: Path, argv: list[str],
                                                                        said: str) -> None:
    # the light install: a mistyped .pt was "needs the 'torch' package" (a few GB to install to
    # learn of a typo), and mmdet on CUDA named [torch], which has no mmdet
    from PIL import Image

    (tmp_path / "torch.py").write_text("raise ModuleNotFoundError(\"No module named 'torch'\", name='torch')\n")
    Image.new("RGB", (64, 48), (90, 90, 90)).save(tmp_path / "shelf.jpg")
    r = run_cli("shelf.jpg", *argv, "--out", "out", cwd=tmp_path)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and said in lines[0], r.stderr
    assert not (tmp_path / "out").exists()
