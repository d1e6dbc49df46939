"""A box whose width, height or area overflows float64 (x from -1e308 to 1e308) is refused in
one line naming the file, without a numpy warning (it was an ``overflow encountered in
subtract`` warning, then an error naming the image); boxes that are huge but measurable are
scored without warnings, as pycocotools scores them."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.eval import EvalImage, evaluate_boxes

from eval_inputs import CSV_HEAD, OURS, RESULT, assert_refused, gt_copy, json_files


@pytest.mark.parametrize("box", ["-1e308,0,1e308,10", "0,-1e308,10,1e308", "0,0,1e200,1e200"])
@pytest.mark.parametrize("side", ["pred", "gt"])
def test_csv_boxes_whose_size_overflows_are_refused_naming_the_file(tmp_path, capsys, box, side) -> None:
    good = "a.jpg,0,0,50,50,object,640,480,0.8\n"
    rows = {"pred": good, "gt": good}
    rows[side] = f"a.jpg,{box},object,640,480,0.9\n" + good
    p, g = tmp_path / "pred.csv", tmp_path / "gt.csv"
    p.write_text(CSV_HEAD + rows["pred"])
    g.write_text(CSV_HEAD + rows["gt"])
    assert_refused(tmp_path, capsys, str(p), str(g), str(p if side == "pred" else g), "line 2: box")


@pytest.mark.parametrize("doc, side", [
    pytest.param(dict(OURS, boxes=[[-1e308, 0, 1e308, 10]]), "pred", id="ours-width"),
    pytest.param([dict(RESULT, bbox=[1e308, 0, 1e308, 10])], "pred", id="result-far-corner"),
    pytest.param([dict(RESULT, bbox=[0, 0, 1e200, 1e200])], "pred", id="result-area"),
    pytest.param([RESULT], "gt", id="annotation-area"),
])
def test_json_boxes_whose_size_overflows_are_refused_naming_the_file(tmp_path, capsys, doc, side) -> None:
    gt = gt_copy()
    if side == "gt":
        gt["annotations"][0]["bbox"] = [0, 0, 1e200, 1e200]
    p, g = json_files(tmp_path, doc, gt)
    assert_refused(tmp_path, capsys, p, g, p if side == "pred" else g, "is too large")


@pytest.mark.parametrize("which", ["gt", "dt"])
def test_eval_image_refuses_boxes_whose_size_overflows(which) -> None:
    huge, ok = [[-1e308, 0, 1e308, 10]], [[0, 0, 10, 10]]
    g, d = (huge, ok) if which == "gt" else (ok, huge)
    with pytest.raises(InvalidInputError, match="a .* box is too large"):
        EvalImage("a.jpg", g, [0], d, [0.9], [0])


FAR_OUT = {
    "past-float32": [[4e38, 0, 4e38, 10], [0, 0, 50, 50]],  # the screen's float32 cast overflowed
    "area-past-float32": [[0, 0, 1e20, 1e20], [1e19, 1e19, 3e19, 3e19]],  # its float32 areas did
    "far-apart": [[-1.7e308, 0, -1e308, 1e-290], [1e308, 0, 1.7e308, 1e-290], [0, 0, 50, 50]],  # its shift did
    "zero-wide-far-apart": [[-1e308, 0, -1e308, 10], [1e308, 0, 1e308, 10], [0, 0, 50, 50]],
    "areas-adding-past-float64": [[0, 0, 1.3e154, 1.3e154], [0, 0, 50, 50], [1e150, 0, 1.1e150, 1]],
}


@pytest.mark.parametrize("boxes", list(FAR_OUT.values()), ids=list(FAR_OUT))
def test_boxes_far_out_are_scored_as_pycocotools_scores_them_without_warnings(boxes) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    g = np.array(boxes, np.float64)
    wh = g[:, 2:] - g[:, :2]
    scores = np.linspace(0.9, 0.5, len(g))
    m = evaluate_boxes([EvalImage("a.jpg", g, [0] * len(g), g, scores, [0] * len(g))], max_dets=(1, 10, 100))
    gt = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "o"}],
          "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [*b[:2], *s], "area": float(s[0] * s[1]),
                           "iscrowd": 0} for i, (b, s) in enumerate(zip(g.tolist(), wh.tolist()))]}
    res = [{"image_id": 1, "category_id": 1, "bbox": [*b[:2], *s], "score": float(sc)}
           for b, s, sc in zip(g.tolist(), wh.tolist(), scores)]
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt
        cg.createIndex()
        ev = COCOeval(cg, cg.loadRes(res), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    np.testing.assert_allclose(m.precision, ev.eval["precision"], atol=1e-12, rtol=0)
    np.testing.assert_allclose(m.coco_stats(), ev.stats, atol=1e-12, rtol=0)
