"""Fixes from the outside reviews of 2026-12-07 (stop 71): the audit command's photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit.report import load_preview_image
from densedet_tile.cli.audit import audit_main
from densedet_tile.synth.audit_aisles import render_aisle, synthetic_aisle

from test_cli_report import write_detections


def _counting_open(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from densedet_tile.tiler import readers

    real = readers.open_image
    opened: list[str] = []

    def counting(path, *a, **k):
        opened.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(readers, "open_image", counting)
    return opened


def test_a_png_photo_is_decoded_once_for_the_preview_and_the_shelf_lines(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the preview and the picture the bays are read from each decoded the whole PNG (1.3 s each
    # on a 60-megapixel panorama: an outside review)
    a = synthetic_aisle(np.random.default_rng(3), width=3000, n_rows=4, tilt_deg=0.5)
    img = tmp_path / "aisle.png"
    Image.fromarray(render_aisle(a)).save(img)
    det = tmp_path / "aisle.detections.json"
    write_detections(det, a.xyxy, a.width, a.height, str(img))
    import densedet_tile.cli.audit as cli

    real_run = cli.run_audit
    pictures = []

    def run(*a, **k):
        pictures.append(k.get("picture"))
        return real_run(*a, **k)

    monkeypatch.setattr(cli, "run_audit", run)
    opened = _counting_open(monkeypatch)
    assert audit_main(["--detections", str(det), str(img), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert opened == [str(img)]
    # both were made: the shelf lines' picture (at its own scale) went to the audit
    assert len(pictures) == 1 and pictures[0] is not None and pictures[0].size != (a.width, a.height)
    assert (tmp_path / "o" / "aisle.audit.html").is_file()


def test_several_preview_sizes_from_one_opening_equal_each_made_alone(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from densedet_tile.audit.report import load_preview_images

    rng = np.random.default_rng(5)
    arr = rng.integers(0, 255, (300, 800, 3), dtype=np.uint8)
    for name in ("x.png", "x.jpg"):
        path = tmp_path / name
        Image.fromarray(arr).save(path)
        sizes = [(400, 400), (120, 500)]
        alone = [load_preview_image(path, 800, 300, max_width=w, max_height=h) for w, h in sizes]
        opened = _counting_open(monkeypatch)
        both = load_preview_images(path, 800, 300, sizes)
        assert len(opened) == (1 if name.endswith(".png") else 0)
        monkeypatch.undo()
        assert [im.size for im in both] == [im.size for im in alone]
        if name.endswith(".png"):  # (a JPEG is decoded at the nearest reduced scale above)
            assert [im.size for im in both] == [(400, 150), (120, 45)]
        for x, y in zip(both, alone):
            assert np.array_equal(np.asarray(x), np.asarray(y))
