"""CSV image sizes: a size written as "inf" or "nan" is no size (it was taken as none given,
so the size check was skipped) and one past any image is refused, in one line naming the file
and line; an empty size is still "not given"."""

from __future__ import annotations

import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.eval.formats import read_predictions

from eval_inputs import CSV_HEAD, assert_refused


@pytest.mark.parametrize("width, what", [("inf", "image_width"), ("nan", "image_width"), ("-inf", "image_width"),
                                         ("1e300", "beyond any image")])
def test_csv_image_sizes_must_be_finite(tmp_path, capsys, width, what) -> None:
    g = tmp_path / "gt.csv"
    g.write_text("a.jpg,10,10,60,60,product,640,480\n")
    p = tmp_path / "pred.csv"
    p.write_text(CSV_HEAD + f"a.jpg,10,10,60,60,product,{width},480,0.9\n")  # "inf", "nan": taken as no size
    assert_refused(tmp_path, capsys, str(p), str(g), str(p), what)
    with pytest.raises(InvalidInputError, match="line 2"):
        read_predictions(p)


def test_csv_image_sizes_may_be_left_empty(tmp_path) -> None:
    p = tmp_path / "pred.csv"
    p.write_text(CSV_HEAD + "a.jpg,10,10,60,60,product,,,0.9\n")
    im = read_predictions(p).images["a.jpg"]
    assert (im.width, im.height) == (None, None)
