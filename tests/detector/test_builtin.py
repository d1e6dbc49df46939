"""The built-in default detector: packaging, the Detector contract, determinism and accuracy.

The detector-level tests run on both runtimes (ONNX Runtime, the default on the CPU, and torch);
tests/detector/test_runtimes.py compares the two and checks the runtime choice.
"""

from __future__ import annotations

import importlib.resources
import re

import numpy as np
import pytest
import torch

from densedet_tile.detector.base import Detector, input_size_of
from densedet_tile.detector.builtin import (
    ONNX_FILE,
    WEIGHTS_FILE,
    DefaultDetector,
    build_targets,
    decode,
    load_default,
)
from densedet_tile.detector.shelfnet_config import DEFAULT_CONFIG
from densedet_tile.errors import DetectorError, InvalidInputError
from densedet_tile.synth.shelves import training_sample
from densedet_tile.types import CONFIRM_BAND, Detections


@pytest.fixture(scope="module", params=["onnxruntime", "torch"])
def det(request: pytest.FixtureRequest) -> DefaultDetector:
    return load_default(device="cpu", runtime=request.param)


def _recall_precision(pred: np.ndarray, gt: np.ndarray, thr: float = 0.5) -> tuple[float, float]:
    """Greedy one-to-one matching at IoU >= thr (pred assumed sorted by score)."""
    lt = np.maximum(pred[:, None, :2], gt[None, :, :2])
    rb = np.minimum(pred[:, None, 2:], gt[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_p = np.prod(pred[:, 2:] - pred[:, :2], axis=1)
    area_g = np.prod(gt[:, 2:] - gt[:, :2], axis=1)
    iou = inter / (area_p[:, None] + area_g[None, :] - inter)
    used = np.zeros(len(gt), bool)
    tp = 0
    for row in iou:
        cand = np.where(used, -1.0, row)
        j = int(cand.argmax())
        if cand[j] >= thr:
            used[j] = True
            tp += 1
    return tp / len(gt), tp / max(len(pred), 1)


def test_weights_ship_as_package_data_within_budget() -> None:
    ref = importlib.resources.files("densedet_tile.detector").joinpath("weights", WEIGHTS_FILE)
    raw = ref.read_bytes()
    assert 0 < len(raw) <= 25 * 2**20
    import io

    ckpt = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    assert {"config", "state_dict"} <= set(ckpt)
    onnx_raw = importlib.resources.files("densedet_tile.detector").joinpath("weights", ONNX_FILE).read_bytes()
    assert 0 < len(onnx_raw) <= 16 * 2**20


def test_load_default_declares_the_contract(det: DefaultDetector) -> None:
    assert isinstance(det, Detector)
    assert input_size_of(det) == 640
    assert det.name == "densedet-default"
    assert det.class_names == ("product",)
    assert str(det.device) == "cpu"
    assert det.info["runtime"] == det.runtime in ("onnxruntime", "torch")
    assert det.max_det >= 500
    assert 0 < det.score_thr < 1
    # boxes come down to a little below the threshold, for the engine's count range
    # the count band below the threshold, and the confirmers below the band's lower threshold
    assert det.score_floor == pytest.approx(det.score_thr - DEFAULT_CONFIG["count_band"] - CONFIRM_BAND)
    assert DEFAULT_CONFIG["count_band"] > 0


def test_decoding_lower_keeps_the_boxes_above_unchanged(det: DefaultDetector) -> None:
    # the count range relies on it: boxes at or above a threshold do not depend on how far below
    # it the peaks were decoded (top-k and greedy NMS go by score)
    img, _ = training_sample(np.random.default_rng(777001), size=640, tile=1280, scale_range=(0.7, 1.4))
    low = load_default(device="cpu", runtime=det.runtime, score_thr=0.2).predict([img])[0]
    high_det = load_default(device="cpu", runtime=det.runtime, score_thr=0.5)
    high = high_det.predict([img])[0]
    assert high.scores.min() >= high_det.score_floor > low.scores.min()
    kept = low[low.scores >= high_det.score_floor]
    assert len(kept) == len(high) >= 10
    assert np.array_equal(kept.xyxy, high.xyxy) and np.array_equal(kept.scores, high.scores)


def test_predict_shapes_dtypes_and_mixed_sizes(det: DefaultDetector) -> None:
    a, _ = training_sample(np.random.default_rng(900), size=320, tile=640)
    b, _ = training_sample(np.random.default_rng(901), size=640, tile=1280)
    b = b[:480, :600]  # not a multiple of 32
    out = det.predict([a, b, np.zeros((0, 0, 3), np.uint8)])
    assert len(out) == 3
    for d, (h, w) in zip(out[:2], [(320, 320), (480, 600)]):
        assert isinstance(d, Detections)
        assert d.xyxy.dtype == np.float32 and d.scores.dtype == np.float32 and d.labels.dtype == np.int64
        assert len(d) > 0
        assert np.all(d.labels == 0)
        assert np.all(d.scores >= det.score_floor)
        assert np.all(d.xyxy[:, [0, 2]] >= 0) and np.all(d.xyxy[:, [0, 2]] <= w)
        assert np.all(d.xyxy[:, [1, 3]] >= 0) and np.all(d.xyxy[:, [1, 3]] <= h)
    assert len(out[2]) == 0
    assert det.predict([]) == []


def test_batching_with_a_larger_tile_matches_predicting_alone(det: DefaultDetector) -> None:
    a, _ = training_sample(np.random.default_rng(902), size=320, tile=640)
    big, _ = training_sample(np.random.default_rng(903), size=640, tile=1280)
    alone = np.array(det.predict([a])[0].xyxy)
    batched = np.array(det.predict([a, big])[0].xyxy)
    assert len(alone) >= 20
    # away from the padded right/bottom edges the boxes are the same ones
    def inner(x: np.ndarray) -> np.ndarray:
        return x[(x[:, 2] < 320 - 40) & (x[:, 3] < 320 - 40)]

    recall, precision = _recall_precision(inner(batched), inner(alone), thr=0.9)
    assert recall >= 0.97 and precision >= 0.97
    # near them the padding shifts a few boxes a little, but they are still found
    recall, precision = _recall_precision(batched, alone, thr=0.5)
    assert recall >= 0.85 and precision >= 0.85


def test_blank_tile_gives_no_products(det: DefaultDetector) -> None:
    flat = np.full((640, 640, 3), 128, np.uint8)
    assert len(det.predict([flat])[0]) == 0


def test_predict_is_deterministic(det: DefaultDetector) -> None:
    img, _ = training_sample(np.random.default_rng(904), size=640, tile=1280)
    d1, d2 = det.predict([img])[0], det.predict([img.copy()])[0]
    assert np.array_equal(d1.xyxy, d2.xyxy) and np.array_equal(d1.scores, d2.scores)


@pytest.mark.parametrize("seed", [777001, 777002])
def test_finds_most_products_on_a_generated_shelf(det: DefaultDetector, seed: int) -> None:
    # held-out seeds (training used seed 0's stream), products at the scale of a 1280 tile
    img, gt = training_sample(np.random.default_rng(seed), size=640, tile=1280, scale_range=(0.7, 1.4))
    assert len(gt) >= 10
    d = det.predict([img])[0]
    d = d[d.scores >= det.score_thr]  # what the engine serves (predict also returns the near misses)
    recall, precision = _recall_precision(np.array(d.xyxy), gt, thr=0.5)
    assert recall >= 0.8, f"recall@0.5 {recall:.2f} on {len(gt)} products"
    assert precision >= 0.8, f"precision@0.5 {precision:.2f} with {len(d)} boxes"


def test_bad_input_is_refused(det: DefaultDetector) -> None:
    with pytest.raises(InvalidInputError, match="tile 0"):
        det.predict([np.zeros((32, 32, 3), np.float32)])
    with pytest.raises(InvalidInputError, match="tile 1"):
        det.predict([np.zeros((32, 32, 3), np.uint8), np.zeros((32, 32), np.uint8)])
    with pytest.raises(InvalidInputError, match="score_thr"):
        load_default(device="cpu", score_thr=1.5)
    with pytest.raises(InvalidInputError, match="device"):
        load_default(device="not-a-device")


def test_served_threshold_comes_from_the_weights_info_when_it_names_a_usable_one() -> None:
    from densedet_tile.detector.builtin import served_threshold

    assert served_threshold({"score_thr": 0.5}, 0.45) == 0.5
    assert served_threshold({"score_thr": 1}, 0.45) == 0.45  # not a threshold that keeps anything
    for info in (None, {}, {"score_thr": True}, {"score_thr": "0.5"}, {"score_thr": 0.0}, {"score_thr": -0.2}):
        assert served_threshold(info, 0.45) == 0.45


def test_targets_and_decode_are_inverse() -> None:
    _, boxes = training_sample(np.random.default_rng(905), size=640, tile=1280)
    heat, box_t, weight = build_targets(boxes, 640, 8)
    assert heat.shape == (1, 80, 80) and box_t.shape == (4, 80, 80) and weight.shape == (1, 80, 80)
    assert (heat == 1).sum() <= len(boxes)
    ys, xs = np.mgrid[0:80, 0:80]
    cx, cy = (xs + 0.5) * 8, (ys + 0.5) * 8
    dist = np.where(weight > 0, np.stack([cx - box_t[0], cy - box_t[1], box_t[2] - cx, box_t[3] - cy]), 0)
    logits = torch.logit(torch.from_numpy(heat).clamp(1e-4, 1 - 1e-4))[None]
    out_boxes, _ = decode(logits, torch.from_numpy(dist)[None].float(), stride=8, score_thr=0.5, nms_iou=0.7,
                          max_det=1000)[0]
    assert isinstance(out_boxes, torch.Tensor)  # torch in, torch out
    recall, precision = _recall_precision(out_boxes.numpy(), boxes, thr=0.95)
    assert recall >= 0.97 and precision == 1.0
    # the same decode on numpy arrays (what both runtimes call) gives the same boxes
    np_boxes, _ = decode(logits.numpy(), dist[None].astype(np.float32), stride=8, score_thr=0.5, nms_iou=0.7,
                         max_det=1000)[0]
    assert isinstance(np_boxes, np.ndarray)
    assert np.array_equal(np_boxes, out_boxes.numpy())


# -- user checkpoints (--checkpoint F.pt): every error names the file --------------------------------
TINY = {"widths": [4, 4, 4, 4, 4], "blocks": [0, 0, 0], "neck": 4}


@pytest.fixture(scope="module")
def tiny_ckpt() -> dict:
    from densedet_tile.detector.shelfnet import ShelfNet

    torch.manual_seed(0)
    model = ShelfNet(TINY)
    return {"config": dict(TINY), "state_dict": model.state_dict(), "info": {}}


def _load_pt(path, obj):
    from densedet_tile.detector.registry import load_detector

    torch.save(obj, path)
    return load_detector("default", checkpoint=str(path), device="cpu")


def _case(tiny: dict, name: str):
    sd = tiny["state_dict"]
    if name == "bare":
        return sd
    if name == "cfgstr":
        return {**tiny, "config": "garbage"}
    if name == "wrongcfg":
        return {**tiny, "config": {**TINY, "widths": [8, 8, 8, 8]}}
    if name == "badstd":
        return {**tiny, "config": {**TINY, "std": [0.2, 0.0, 0.2]}}
    if name == "wider":  # a valid config of another width than the weights
        return {**tiny, "config": {**TINY, "widths": [4, 4, 8, 4, 4]}}
    if name == "missing":
        return {**tiny, "state_dict": {k: v for k, v in sd.items() if k != "heat.1.weight"}}
    if name == "noconfig":
        return {"state_dict": sd}
    if name == "nan":  # a diverged run's weights
        return {**tiny, "state_dict": {k: (v * float("nan") if k == "heat.1.weight" else v) for k, v in sd.items()}}
    return [1, 2]  # "alist": not a dict at all


@pytest.mark.parametrize("name,match", [
    ("bare", "holds a bare state dict; a ShelfNet checkpoint is a dict with 'config' and 'state_dict'"),
    ("cfgstr", "'config' must be a dict of ShelfNet settings, got str"),
    ("wrongcfg", r"config widths must be a list of 5 positive ints, got \[8, 8, 8, 8\]"),
    ("badstd", "config std must be a list of 3 positive numbers"),
    ("wider", r"does not match the ShelfNet of its config: state dict keys \d+ of another shape \(e\.g\. s8\."),
    ("missing", r"does not match the ShelfNet of its config: state dict keys 1 missing \(e\.g\. heat\.1\.weight\)"),
    ("noconfig", r"not a ShelfNet checkpoint: no 'config' \(it has 'state_dict'\)"),
    ("alist", "not a ShelfNet checkpoint .*it holds a list"),
    ("nan", r"1 weight tensor\(s\) hold NaN or infinite values \(e\.g\. heat\.1\.weight\)"),
])
def test_a_bad_checkpoint_is_one_line_naming_the_file(tmp_path, tiny_ckpt, name, match) -> None:
    path = tmp_path / f"{name}.pt"
    with pytest.raises(DetectorError) as info:
        _load_pt(path, _case(tiny_ckpt, name))
    msg = str(info.value)
    assert msg.startswith(f"checkpoint {path}") and "\n" not in msg, msg
    assert re.search(match, msg), msg


def test_fp16_asked_for_torch_weights_on_the_cpu_is_said_not_dropped(tmp_path, tiny_ckpt) -> None:
    from densedet_tile.detector.registry import load_detector

    path = tmp_path / "w.pt"
    torch.save(tiny_ckpt, path)
    with pytest.warns(RuntimeWarning, match="fp16 applies on CUDA only; on the CPU these torch weights run in fp32"):
        det = load_detector("default", checkpoint=str(path), device="cpu", precision="fp16")
    assert det.info.get("precision", "fp32") == "fp32"


def test_a_data_parallel_checkpoint_loads_like_the_plain_one(tmp_path, tiny_ckpt) -> None:
    plain = _load_pt(tmp_path / "plain.pt", tiny_ckpt)
    dp = _load_pt(tmp_path / "dp.pt", {**tiny_ckpt, "state_dict": {"module." + k: v
                                                                     for k, v in tiny_ckpt["state_dict"].items()}})
    tile = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    a, b = plain.runner(tile[None]), dp.runner(tile[None])
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert dp.info["weights_file"] == str(tmp_path / "dp.pt")


def test_weights_that_are_no_torch_file_are_refused_before_torch_is_looked_for(tmp_path, monkeypatch):
    # any --checkpoint not named .onnx goes to torch: a photo or an ONNX file under another name
    # was "needs the 'torch' package" on the light install (a few GB to learn of the wrong file)
    from densedet_tile.detector import builtin
    from densedet_tile.errors import DetectorError

    def no_torch():
        raise AssertionError("torch was looked for")

    monkeypatch.setattr(builtin, "_import_torch", no_torch)
    photo = tmp_path / "shelf.pth"
    photo.write_bytes(b"\xff\xd8\xff\xe0" + bytes(64))
    onnx = tmp_path / "model.bin"
    onnx.write_bytes(builtin._package_file(builtin.ONNX_FILE)[:256])
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    for path, says in ((photo, "it begins b'\\xff\\xd8"), (onnx, "name ending in .onnx"), (empty, "it is empty")):
        with pytest.raises(DetectorError) as err:
            builtin.load_default(weights=str(path), device="cpu")
        msg = str(err.value)
        assert str(path) in msg and "not a torch checkpoint" in msg and says in msg and "\n" not in msg
