"""An image handed to eval in place of a file of boxes is said to be one (an outside review,
2026-12-06: "not UTF-8 text ... save the file as UTF-8")."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from densedet_tile.cli.eval import eval_main


@pytest.mark.parametrize("fmt, kind", [("JPEG", "JPEG"), ("PNG", "PNG"), ("TIFF", "TIFF"), ("WEBP", "WebP")])
def test_an_image_given_as_predictions_is_named_as_one(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       fmt: str, kind: str) -> None:
    gt = tmp_path / "gt.csv"
    gt.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\nshelf.jpg,10,10,50,80,product,200,100\n")
    photo = tmp_path / f"shelf.{fmt.lower()}"
    Image.new("RGB", (200, 100), (120, 90, 60)).save(photo, fmt)
    assert eval_main([str(photo), str(gt)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is a {kind} image, not a file of boxes" in err[0] and "UTF-8" not in err[0], err
    # and where an audit is given one as its boxes
    from densedet_tile.cli.audit import audit_main

    assert audit_main(["--detections", str(photo), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"is a {kind} image, not a file of boxes" in err[0], err
