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


class _OrtOnCpu(BlobDetector):
    """Like the built-in model on ONNX Runtime: on the CPU all along, ``to("cpu")`` a no-op, and
    its arena out of RAM."""

    device = "cpu"

    def __init__(self) -> None:
        super().__init__()
        self.moves: list[str] = []

    def to(self, device):
        self.moves.append(str(device))
        return self

    def predict(self, tiles):
        raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while "
                           "running Conv node. Failed to allocate memory for requested buffer of size 2147483648")


def test_a_detector_on_the_cpu_all_along_is_told_out_of_memory_not_gpu_memory_and_not_moved():
    det = _OrtOnCpu()
    with pytest.warns(RuntimeWarning) as rec:
        with pytest.raises(DetectorError) as info:
            dt.detect(blob_image(1200, 600, (10, 10, 50, 50)), det, tile=600, batch_size=2, device="cpu")
    said = [str(w.message) for w in rec]
    assert said == ["<array>: out of memory; retrying with batch size 1"]
    msg = str(info.value)
    assert "out of memory even with one tile per batch" in msg and "Failed to allocate memory" in msg
    assert "--device cpu" not in msg and "GPU" not in msg and "try a smaller tile (--tile)" in msg
    assert det.moves == [] and not getattr(det, "_densedet_on_cpu", False)


class _CardStaysFull(BlobDetector):
    """Out of GPU memory on the GPU, and the move back to it runs out too (the card is full)."""

    device = "cuda"

    def to(self, device):
        if str(device) != "cpu":
            raise RuntimeError("CUDA out of memory. Tried to allocate 900.00 MiB")
        self.device = "cpu"
        return self

    def predict(self, tiles):
        if self.device != "cpu":
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def test_an_image_that_cannot_move_back_to_the_gpu_says_it_runs_on_the_cpu():
    det = _CardStaysFull()
    img = blob_image(600, 600, (10, 10, 50, 50))
    with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
        dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    src = dt.open_image(img)
    with pytest.warns(RuntimeWarning) as rec:
        res = dt.detect_image(src, det, tile=600, batch_size=1, device="cuda")
    said = [str(w.message) for w in rec]
    assert said == ["<array>: could not move back to cuda (out of memory); this image runs on the CPU"]
    assert res.settings["device"] == "cpu" and len(res.detections) == 1


class _Half(BlobDetector):
    """Like the mmdet adapter in fp16: ``to("cpu")`` makes it fp32. Out of GPU memory once."""

    device, precision, full = "cuda", "fp16", True

    def to(self, device):
        self.device = str(device)
        if self.device == "cpu":
            self.precision = "fp32"
        return self

    def predict(self, tiles):
        if self.device != "cpu" and self.full:
            self.full = False
            raise RuntimeError(GPU_OOM)
        return super().predict(tiles)


def test_an_fp16_detector_made_fp32_by_the_move_is_told_it_stays_on_the_cpu_for_the_run():
    det = _Half()
    img = blob_image(600, 600, (10, 10, 50, 50))
    with pytest.warns(RuntimeWarning) as rec:
        dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    said = [str(w.message) for w in rec]
    assert said == ["<array>: out of GPU memory with one tile per batch; continuing on the CPU for the rest of "
                    "the run (the move made it fp32 from fp16, which would need more GPU memory still)"]
    # as said: the next image stays there
    res = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert det.device == "cpu" and res.settings["device"] == "cpu"


class _NoDeviceOnCpu(_OrtOnCpu):
    """The same, but a detector that does not say its device (run with --device cpu)."""

    device = None


def test_a_detector_that_does_not_say_its_device_goes_by_the_runs():
    # a second look: without a ``device`` attribute it was taken for a GPU detector on a
    # --device cpu run ("out of GPU memory", "moved" to the CPU, --device cpu advised)
    det = _NoDeviceOnCpu()
    with pytest.warns(RuntimeWarning) as rec:
        with pytest.raises(DetectorError) as info:
            dt.detect(blob_image(1200, 600, (10, 10, 50, 50)), det, tile=600, batch_size=2, device="cpu")
    assert [str(w.message) for w in rec] == ["<array>: out of memory; retrying with batch size 1"]
    assert "--device cpu" not in str(info.value) and det.moves == []
