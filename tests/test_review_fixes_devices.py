"""Out-of-memory and device choices that an outside review found wrong: ONNX Runtime's
allocation failure was not taken for out-of-memory, a broken torch stopped ``--device auto``, a
single tile that did not fit gave no advice, and ``"cuda"`` without an index meant GPU 0."""

from __future__ import annotations

import builtins
import logging
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from densedet_tile import DetectorError
from densedet_tile.detector import base
from densedet_tile.detector.calls import is_oom
from densedet_tile.pipeline import detect_image

from fakes import BlobDetector, blob_image

# the text of ONNX Runtime's CUDA arena failure (onnxruntime raises its own RuntimeException,
# which derives from Exception, not RuntimeError)
ORT_OOM = ("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code returned while running Conv node. "
           "Name:'/model.0/conv/Conv' Status Message: /onnxruntime_src/onnxruntime/core/framework/bfc_arena.cc:376 "
           "void* onnxruntime::BFCArena::AllocateRawInternal(size_t, bool, onnxruntime::Stream*, bool, "
           "onnxruntime::WaitNotificationFn) Failed to allocate memory for requested buffer of size 1073741824")


class RuntimeException(Exception):
    """Stands for ``onnxruntime.capi.onnxruntime_pybind11_state.RuntimeException``."""


def _wrapped(exc: Exception) -> DetectorError:
    """``exc`` as an adapter passes it on: a DetectorError raised from it."""
    try:
        try:
            raise exc
        except Exception as inner:
            raise DetectorError(f"yolo: inference failed ({' '.join(str(inner).split())[:200]})") from inner
    except DetectorError as outer:
        return outer


def test_onnx_runtimes_allocation_failure_is_out_of_memory_also_when_an_adapter_wraps_it() -> None:
    assert is_oom(RuntimeException(ORT_OOM))
    assert is_oom(_wrapped(RuntimeException(ORT_OOM)))
    assert is_oom(RuntimeError("CUDA error: out of memory"))
    assert is_oom(RuntimeError("CUDNN_STATUS_ALLOC_FAILED"))
    assert not is_oom(RuntimeException("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions"))
    assert not is_oom(_wrapped(ValueError("shape mismatch")))
    assert not is_oom(KeyboardInterrupt())
    # an exception whose cause chain loops back is looked at once
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_oom(a)


class _OrtOOMAboveBatch(BlobDetector):
    """A GPU ONNX Runtime adapter: batches above ``limit`` tiles fail in the session, wrapped."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def predict(self, tiles):
        if len(tiles) > self.limit:
            raise _wrapped(RuntimeException(ORT_OOM))
        return super().predict(tiles)


def test_an_onnx_runtime_out_of_memory_halves_the_batch_and_finds_the_same_boxes() -> None:
    img = blob_image(1000, 3000, (1100, 100, 1200, 200))
    det = _OrtOOMAboveBatch(limit=1)
    with pytest.warns(RuntimeWarning, match="retrying with batch size") as rec:
        res = detect_image(img, det, tile=500, overlap=0.2, batch_size=4, device="cpu")
    assert [str(w.message).rsplit(" ", 1)[-1] for w in rec] == ["2", "1"]
    assert res.settings["final_batch_size"] == 1 and len(det.seen) == res.num_tiles
    one = detect_image(img, BlobDetector(), tile=500, overlap=0.2, batch_size=1, device="cpu")
    np.testing.assert_array_equal(res.detections.xyxy, one.detections.xyxy)


@pytest.mark.parametrize("input_size, advice", [(None, "a smaller tile (--tile)"),
                                                 (640, "a smaller input size (--input-size) or tile (--tile)")])
def test_one_tile_that_does_not_fit_says_what_failed_and_what_to_try(input_size, advice) -> None:
    det = _OrtOOMAboveBatch(limit=0)  # no .to(): it cannot move to the CPU
    if input_size is not None:
        det.input_size = input_size
    img = blob_image(600, 600, (10, 10, 50, 50))
    with pytest.raises(DetectorError) as info:
        detect_image(img, det, tile=600, batch_size=1, device="cpu")
    msg = str(info.value)
    assert "out of memory even with one tile per batch" in msg and "Failed to allocate memory" in msg
    # (a run on the CPU is not advised the CPU: the detector says no device, so the run's counts)
    assert advice in msg and "--device cpu" not in msg and "\n" not in msg


@pytest.mark.parametrize("failure", [ImportError, OSError])
def test_auto_runs_on_the_cpu_with_a_warning_when_torch_is_installed_but_broken(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure: type) -> None:
    real_import = builtins.__import__

    def broken(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch."):
            raise failure("libcudnn.so.9: cannot open shared object file: No such file or directory")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(base.importlib.util, "find_spec", lambda name, *a: object() if name == "torch" else None)
    monkeypatch.setattr(base, "cuda_plausible", lambda: True)
    monkeypatch.setattr(builtins, "__import__", broken)
    with caplog.at_level(logging.WARNING, logger="densedet_tile.detector"):
        assert base.resolve_device("auto") == "cpu"
    assert any("torch is installed but does not import" in r.getMessage() and "libcudnn" in r.getMessage()
               for r in caplog.records)
    # asked for by name, the failure is the user's to see
    with pytest.raises(failure, match="libcudnn"):
        base.resolve_device("cuda")


def test_cuda_without_an_index_is_the_current_device_for_the_memory_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    from densedet_tile import vram

    calls: dict[str, object] = {}
    fake_cuda = SimpleNamespace(
        current_device=lambda: 1,
        get_device_properties=lambda i: SimpleNamespace(total_memory=4 * vram.GiB),
        set_per_process_memory_fraction=lambda f, i: calls.update(fraction=(round(f, 3), i)),
        mem_get_info=lambda i: (calls.update(info=i), (3 * vram.GiB, 4 * vram.GiB))[1],
        memory_reserved=lambda i: 0,
    )

    class FakeDevice:
        def __init__(self, spec: str) -> None:
            self.index = int(spec.split(":")[1]) if ":" in spec else None

    fake_torch = SimpleNamespace(cuda=fake_cuda, device=FakeDevice)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    vram.apply_vram_cap(2.0, "cuda")
    assert calls["fraction"] == (0.5, 1) and calls["info"] == 1
    vram.apply_vram_cap(2.0, "cuda:0")
    assert calls["fraction"] == (0.5, 0) and calls["info"] == 0


def test_an_error_raised_while_handling_an_out_of_memory_is_not_one() -> None:
    # a detector that caught its own out-of-memory and then failed otherwise: that failure is
    # the one to report (following __context__ made it "out of memory even with one tile")
    try:
        try:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        except RuntimeError:
            raise RuntimeError("expected scalar type Half but found Float")
    except RuntimeError as exc:
        assert not is_oom(exc)
    # a file error whose path happens to hold the words is no memory error
    assert not is_oom(FileNotFoundError(2, "No such file", "/data/out of memory runs/model.onnx"))
    assert not is_oom(_wrapped(FileNotFoundError(2, "No such file", "/data/out of memory runs/x.png")))

    class Unprintable(Exception):
        def __str__(self) -> str:
            raise ValueError("no text")

    assert not is_oom(Unprintable())
