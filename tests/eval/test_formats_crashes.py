"""JSON the eval readers crashed on (a traceback, exit 1) is refused in one line naming the
file (exit 2): integers no float holds, integers too long for Python to read, and nesting too
deep to parse."""

from __future__ import annotations

import json

import pytest

from eval_inputs import GT, OURS, RESULT, assert_refused, json_files

BIG = "1" + "0" * 400  # an integer no float holds (float() raised OverflowError)
LONG = "1" + "0" * 5000  # past Python's 4300 digits (json raised ValueError)
DEEP = "[" * 100_000 + "]" * 100_000  # (json raised RecursionError)


@pytest.mark.parametrize("pred, gt, bad, what", [
    pytest.param('[{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50], "score": %s}]' % BIG, None,
                 "pred", "score", id="result-score-too-large"),
    pytest.param('[{"image_id": 1, "category_id": 1, "bbox": [%s, 10, 50, 50], "score": 0.5}]' % BIG, None,
                 "pred", "bbox", id="result-bbox-too-large"),
    pytest.param(None, json.dumps(GT).replace('"bbox": [10', f'"bbox": [{BIG}'), "gt", "bbox",
                 id="annotation-bbox-too-large"),
    pytest.param(json.dumps(OURS).replace('"scores": [0.9]', f'"scores": [{BIG}]'), None, "pred", "scores",
                 id="ours-score-too-large"),
    pytest.param('[{"image_id": 1, "category_id": 1, "bbox": [%s, 10, 50, 50], "score": 0.5}]' % LONG, None,
                 "pred", "integer too long to read", id="result-integer-too-long"),
    pytest.param(None, json.dumps(GT).replace('"area": 2500', f'"area": {LONG}'), "gt", "integer too long to read",
                 id="annotation-integer-too-long"),
    pytest.param(DEEP, None, "pred", "nested too deeply", id="predictions-too-deep"),
    pytest.param(None, '{"images": ' + DEEP + "}", "gt", "nested too deeply", id="ground-truth-too-deep"),
])
def test_huge_or_deep_json_is_refused_not_a_traceback(tmp_path, capsys, pred, gt, bad, what) -> None:
    p, g = json_files(tmp_path, pred or [RESULT], gt or GT)
    assert_refused(tmp_path, capsys, p, g, p if bad == "pred" else g, what)
