"""Every way of giving a model input side takes the same range as ``RunSpec`` (16 to 16384
pixels): ``load_detector`` and each adapter once took any side from 16 up, so a typo (an extra
digit) loaded the model and failed on the first tile, blamed on the detector."""

from __future__ import annotations

from pathlib import Path

import pytest

from densedet_tile import RunSpec, load_detector
from densedet_tile.errors import InvalidInputError
from densedet_tile.types import MAX_INPUT_SIZE, check_input_size

FIXTURES = Path(__file__).parent / "fixtures"
ONNX = Path(__file__).parents[2] / "densedet_tile" / "detector" / "weights" / "default.onnx"


def _kinds() -> list[tuple[str, dict]]:
    kinds = [("default", {}), ("onnx", {"checkpoint": str(ONNX)}),
             ("yolo", {"checkpoint": str(FIXTURES / "bright_cells_float32.tflite")})]
    kinds.append(("torchvision", {"config": "fasterrcnn_resnet50_fpn"}))
    kinds.append(("mmdet", {"config": "densedet-x101"}))
    return kinds


@pytest.mark.parametrize("side", [MAX_INPUT_SIZE + 1, 20000, 15])
@pytest.mark.parametrize(("kind", "given"), _kinds(), ids=[k for k, _ in _kinds()])
def test_every_detector_refuses_the_sides_runspec_refuses(kind: str, given: dict, side: int) -> None:
    if kind == "torchvision":
        pytest.importorskip("torchvision")
    if kind == "mmdet":
        pytest.importorskip("mmdet")
    with pytest.raises(InvalidInputError, match=f"input_size must be an integer from 16 to {MAX_INPUT_SIZE}"):
        RunSpec(input_size=side)
    with pytest.raises(InvalidInputError, match=f"input_size must be an integer from 16 to {MAX_INPUT_SIZE}"):
        load_detector(kind, input_size=side, device="cpu", **given)


def test_the_rule_keeps_the_sides_in_range() -> None:
    assert check_input_size(None) is None
    assert check_input_size(16) == 16 and check_input_size(MAX_INPUT_SIZE) == MAX_INPUT_SIZE
    for bad in (True, 640.0, "640"):
        with pytest.raises(InvalidInputError):
            check_input_size(bad)
