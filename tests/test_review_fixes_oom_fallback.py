"""The out-of-memory fallback to the CPU as an outside review found it: a detector that takes no
new attributes was moved and retried for ever, a detector on the CPU all along was told about
GPU memory and "moved", a failed move back to the GPU was silent, and an fp16 detector that the
move made fp32 stayed on the CPU under a warning that said "for this image"."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

import densedet_tile as dt
from densedet_tile import DetectorError

from fakes import BlobDetector, blob_image

GPU_OOM = "CUDA out of memory. Tried to allocate 20.00 GiB"


@dataclass(frozen=True)
class _Frozen:
    """A detector that takes no new attributes, whose one tile never fits, not even on the CPU."""

    device: str = "cuda"
    moves: list = field(default_factory=list)

    def to(self, device):
        self.moves.append(str(device))
        if len(self.moves) > 5:  # the old loop: stop it here rather than hang the test run
            raise AssertionError(f"moved to the CPU {len(self.moves)} times for one tile")
        return self

    def predict(self, tiles):
        raise RuntimeError(GPU_OOM)


def test_a_detector_that_takes_no_attributes_is_moved_to_the_cpu_once_then_the_error_is_raised():
    det = _Frozen()
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        with pytest.raises(DetectorError, match="out of memory even with one tile per batch"):
            dt.detect(blob_image(600, 600, (10, 10, 50, 50)), det, tile=600, batch_size=1, device="cuda")
    assert det.moves == ["cpu"]
