"""A batch resumed on another device: the built-in model's shipped weights run as the int8 ONNX
file on a CPU and in torch on a GPU (boxes differ by up to about 2 px), so the request a result
is reused for names the torch runtime (an outside review found CPU results reused on a GPU)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from densedet_tile import TileSpec
from densedet_tile.batch import run_batch
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.runner import Job, detector_identity, outputs_complete, request_key
from fakes import blob_image

CPU_KEYS = {"kind", "config", "checkpoint", "files", "precision", "input_size", "score_thr", "options", "weights"}


def test_the_built_in_models_runtime_is_part_of_its_identity_only_where_torch_runs_it() -> None:
    assert set(detector_identity(DetectorSpec(device="cpu"))) == CPU_KEYS
    assert detector_identity(DetectorSpec(device="cuda"))["runtime"] == "torch"
    assert detector_identity(DetectorSpec(device="cuda:1"))["runtime"] == "torch"
    # "auto" decided where the model runs: Ray workers with a GPU, or without one
    assert detector_identity(DetectorSpec(device="auto"), device="cuda")["runtime"] == "torch"
    assert "runtime" not in detector_identity(DetectorSpec(device="auto"), device="cpu")
    assert "runtime" not in detector_identity(DetectorSpec(device="cpu"), device="cuda")  # an explicit device wins
    # what the options or the weights already fix is not said twice
    assert "runtime" not in detector_identity(DetectorSpec(device="cuda", options={"runtime": "torch"}))
    assert "runtime" not in detector_identity(DetectorSpec(device="cuda", checkpoint="retrained.pt"))
    assert "runtime" not in detector_identity(DetectorSpec(kind="yolo", device="cuda"))


def test_the_built_in_models_shipped_weights_are_part_of_its_identity() -> None:
    # results made before the photo rule (at the tile's scale) are redone by the rules version in
    # every request (RULES_VERSION; this identity said "photo_rule" until it came); the shipped
    # weights, which no file stamp of the user's covers, by their hash
    ident = detector_identity(DetectorSpec(device="cpu"))
    assert isinstance(ident["weights"], str) and len(ident["weights"]) == 16
    assert detector_identity(DetectorSpec(device="cpu", input_size=800))["weights"] == ident["weights"]
    assert "weights" not in detector_identity(DetectorSpec(device="cpu", checkpoint="adapted.pt"))  # stamped as a file
    assert "weights" not in detector_identity(DetectorSpec(kind="onnx", checkpoint="m.onnx", device="cpu"))


def test_results_made_on_a_cpu_are_redone_for_a_gpu_run_and_kept_for_a_cpu_one(tmp_path: Path) -> None:
    img = tmp_path / "in" / "shelf.png"
    img.parent.mkdir()
    Image.fromarray(blob_image(400, 600, (100, 100, 300, 250))).save(img)
    job = Job(tiling=TileSpec(tile=512))
    out = tmp_path / "out"
    assert run_batch([img], out, detector=DetectorSpec(device="cpu"), job=job).ok == 1

    def reusable(spec: DetectorSpec, device: str | None = None) -> bool:
        from dataclasses import replace

        return outputs_complete(out, "shelf", replace(job, request=request_key(job, spec.resolved(), device=device)), img)

    assert reusable(DetectorSpec(device="cpu"))
    assert reusable(DetectorSpec(device="auto"), device="cpu")  # Ray workers without a GPU
    assert not reusable(DetectorSpec(device="cuda"))
    assert not reusable(DetectorSpec(device="auto"), device="cuda")  # Ray workers with one
