"""Splitting a box around a pile of identical packs into one box per layer (detector/stacks.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from densedet_tile.detector import stacks
from densedet_tile.detector.builtin import DefaultDetector, load_default
from densedet_tile.detector.registry import load_detector
from densedet_tile.detector.shelfnet_config import DEFAULT_CONFIG
from densedet_tile.errors import InvalidInputError


def _pack(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A printed pack: dark and bright blocks on a mid-tone background, no inner repetition."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(90, 170, 3)
    for i in range(6):
        y0, x0 = int(rng.integers(0, h - 3)), int(rng.integers(0, w - 3))
        tone = rng.integers(0, 60, 3) if i % 2 else rng.integers(196, 256, 3)
        img[y0:y0 + int(rng.integers(3, max(4, h // 2))), x0:x0 + int(rng.integers(3, max(4, w // 2)))] = tone
    return img


def _scene(layers: list[np.ndarray], pad: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """The layers stacked on top of each other on a plain grey image; returns it and the pile's box."""
    pile = np.concatenate(layers, axis=0)
    h, w = pile.shape[:2]
    img = np.full((h + 2 * pad, w + 2 * pad, 3), 128, np.uint8)
    img[pad:pad + h, pad:pad + w] = pile
    return img, np.array([[pad, pad, pad + w, pad + h]], np.float32)


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_a_pile_of_identical_packs_is_counted_layer_by_layer(k: int) -> None:
    # several packs per count: a pile of 6 also repeats every 2 and 3 layers, and its period
    # lies between those of 5 and 7 layers
    for seed, (h, w) in enumerate([(28, 70), (20, 90), (30, 60)]):
        pack = _pack(np.random.default_rng(10 * k + seed), h, w)  # flat packs
        img, box = _scene([pack] * k)
        assert stacks.layer_counts(img, box).tolist() == [k], (h, w)


def test_a_loose_box_and_lighting_across_the_pile_still_give_the_layers() -> None:
    rng = np.random.default_rng(7)
    img, box = _scene([_pack(rng, 30, 80)] * 3)
    ramp = np.linspace(0.75, 1.15, img.shape[0])[:, None, None]  # darker at the top
    img = np.clip(img * ramp, 0, 255).astype(np.uint8)
    loose = box + np.array([[-3, -4, 3, 4]], np.float32)  # a few pixels of shelf around the pile
    assert stacks.layer_counts(img, loose).tolist() == [3]
    grey = img.mean(axis=2).astype(np.uint8)  # a grey image is read the same way
    assert stacks.layer_counts(grey, loose).tolist() == [3]


def test_single_products_plain_boxes_and_different_packs_are_left_whole() -> None:
    rng = np.random.default_rng(3)
    single, box = _scene([_pack(rng, 90, 70)])
    plain, pbox = _scene([np.full((90, 70, 3), 150, np.uint8)])
    mixed, mbox = _scene([_pack(rng, 30, 70) for _ in range(3)])  # three different packs
    assert stacks.layer_counts(single, box).tolist() == [1]
    assert stacks.layer_counts(plain, pbox).tolist() == [1]
    assert stacks.layer_counts(mixed, mbox).tolist() == [1]


def _printed_pack(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A light pack with a few lines of fine dark print (1-3 px), sometimes a coloured band:
    the hardest case for a coarse grid, where thin lines fall between its rows."""
    img = np.empty((h, w, 3), np.uint8)
    img[:] = rng.integers(150, 230, 3)
    for _ in range(int(rng.integers(2, 6))):
        y = int(rng.integers(0, h - 1))
        img[y:y + int(rng.integers(1, 4)), int(rng.integers(0, w // 3)):int(rng.integers(2 * w // 3, w))] = \
            rng.integers(0, 70, 3)
    if rng.random() < 0.5:
        y = int(rng.integers(0, h - 3))
        img[y:y + int(rng.integers(2, max(3, h // 3))), : w // 2] = rng.integers(0, 256, 3)
    return img


def _as_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_the_coarse_first_pass_drops_no_pile_the_full_test_would_cut(monkeypatch) -> None:
    scenes = []
    for k in range(2, 7):
        rng = np.random.default_rng(k)
        for _ in range(60 if k == 5 else 20):  # five layers fall between the rows of a 48-row grid
            h, w = int(rng.integers(12, 61)), int(rng.integers(30, 201))
            pack = _printed_pack(rng, h, w)
            layers = [np.clip(pack.astype(int) + int(rng.integers(-25, 26)), 0, 255).astype(np.uint8)
                      for _ in range(k)]  # each layer lit a little differently
            img, box = _scene(layers, pad=15)
            img = _as_jpeg(img, int(rng.integers(30, 95)))
            scenes.append((img, box + rng.integers(-4, 5, 4)[None].astype(np.float32)))  # a loose box
    screened = [int(stacks.layer_counts(img, box)[0]) for img, box in scenes]
    monkeypatch.setattr(stacks, "_SCREEN_MARGIN", 10.0)  # every box on to the full test
    full = [int(stacks.layer_counts(img, box)[0]) for img, box in scenes]
    assert screened == full
    assert sum(k > 1 for k in full) >= len(full) // 2  # most of these piles are cut at all


def test_low_contrast_repetition_like_floor_tiles_is_not_a_pile() -> None:
    # a model's false box on a tiled floor: plain tiles whose joints repeat like layers
    tile = np.full((30, 80, 3), 170, np.uint8)
    tile[-3:] = 120
    tile += np.random.default_rng(0).integers(0, 6, tile.shape, dtype=np.uint8)
    img, box = _scene([tile] * 3)
    assert stacks.layer_counts(img, box).tolist() == [1]
    assert stacks.layer_counts(img, box, min_contrast=0.0).tolist() == [3]


def test_a_pile_of_two_needs_a_closer_repeat_than_a_taller_pile() -> None:
    rng = np.random.default_rng(9)
    pack = _pack(rng, 30, 80)
    two, tbox = _scene([pack] * 2)
    three, hbox = _scene([pack] * 3)
    assert stacks.layer_counts(two, tbox).tolist() == [2]
    assert stacks.layer_counts(two, tbox, min_peak_two=1.01).tolist() == [1]
    assert stacks.layer_counts(three, hbox, min_peak_two=1.01).tolist() == [3]


def test_thin_layers_and_narrow_layers_are_not_split() -> None:
    rng = np.random.default_rng(5)
    img, box = _scene([_pack(rng, 30, 80)] * 3)
    assert stacks.layer_counts(img, box, min_layer_px=31).tolist() == [1]  # layers 30 px high
    assert stacks.layer_counts(img, box, max_layers=2).tolist() == [1]  # three layers or none
    # tall items stacked (a layer 40 px high, 30 px wide) are not the flat packs piles are made of
    tall, tbox = _scene([_pack(rng, 40, 30)] * 3)
    assert stacks.layer_counts(tall, tbox).tolist() == [1]
    assert stacks.layer_counts(tall, tbox, min_layer_aspect=0.5).tolist() == [3]


def test_many_boxes_at_once_each_get_their_own_answer() -> None:
    rng = np.random.default_rng(11)
    a, abox = _scene([_pack(rng, 25, 60)] * 4)
    b, bbox = _scene([_pack(rng, 80, 60)])
    img = np.concatenate([a, np.full((a.shape[0], 30, 3), 128, np.uint8),
                          np.pad(b, ((0, a.shape[0] - b.shape[0]), (0, 0), (0, 0)), constant_values=128)], axis=1)
    shift = a.shape[1] + 30
    boxes = np.concatenate([abox, bbox + np.array([[shift, 0, shift, 0]], np.float32), abox])
    assert stacks.layer_counts(img, boxes).tolist() == [4, 1, 4]
    assert stacks.layer_counts(img, np.zeros((0, 4), np.float32)).shape == (0,)
    # boxes reaching past the image are read clipped, not refused
    assert stacks.layer_counts(img, np.array([[-50, -50, 10, 10]], np.float32)).tolist() == [1]


def test_odd_images_and_boxes_are_left_whole_not_refused() -> None:
    rng = np.random.default_rng(4)
    img, box = _scene([_pack(rng, 30, 80)] * 3)
    bad = np.array([[np.nan, 10, 50, 90], [0, 0, np.inf, 90], [10, -np.inf, 50, 90]], np.float32)
    assert stacks.layer_counts(img, bad).tolist() == [1, 1, 1]
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 10, 3), np.uint8), np.zeros((10, 0), np.uint8)):
        assert stacks.layer_counts(empty, box).tolist() == [1]
    assert stacks.layer_counts(img[..., :1], box).tolist() == [3]  # grey with a channel axis
    assert stacks.layer_counts(img, box, max_layers=500).tolist() == [3]  # capped, not an error
    # a box reaching past the image is read as its part inside the image
    x1, y1, x2, y2 = box[0].astype(int)
    pile = img[y1:y2, x1:x2]
    inside = np.array([[0, 0, pile.shape[1], pile.shape[0]]], np.float32)
    assert stacks.layer_counts(pile, inside).tolist() == [3]
    assert stacks.layer_counts(pile, inside + np.array([[-30, -40, 30, 40]], np.float32)).tolist() == [3]


def test_split_layers_cuts_each_box_into_equal_bands_in_place() -> None:
    boxes = np.array([[0, 0, 10, 30], [5, 10, 25, 20], [0, 1, 4, 8]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    out, s = stacks.split_layers(boxes, scores, np.array([3, 1, 2]))
    np.testing.assert_allclose(out, [[0, 0, 10, 10], [0, 10, 10, 20], [0, 20, 10, 30], [5, 10, 25, 20],
                                     [0, 1, 4, 4.5], [0, 4.5, 4, 8]])
    np.testing.assert_allclose(s, [0.9, 0.9, 0.9, 0.8, 0.7, 0.7])
    same, s2 = stacks.split_layers(boxes, scores, np.ones(3, np.int64))
    np.testing.assert_array_equal(same, boxes)
    np.testing.assert_array_equal(s2, scores)
    for bad in ([0, 2, 1], [-1, 1, 1], [2, 2]):
        with pytest.raises(ValueError, match="one layer count >= 1 per box"):
            stacks.split_layers(boxes, scores, np.array(bad))


class _OneBoxRunner:
    """A stand-in network: one centre peak with the distances of ``box`` (model-input pixels)."""

    runtime = "torch"
    device = "cpu"

    def __init__(self, box: np.ndarray, stride: int) -> None:
        self.box, self.stride = box, stride

    def describe(self) -> dict:
        return {"runtime": "torch"}

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, h, w, _ = batch.shape
        s = self.stride
        heat = np.full((n, 1, h // s, w // s), -10.0, np.float32)
        dist = np.zeros((n, 4, h // s, w // s), np.float32)
        x1, y1, x2, y2 = self.box
        cx, cy = int((x1 + x2) / 2 // s), int((y1 + y2) / 2 // s)
        heat[:, 0, cy, cx] = 5.0
        px, py = cx * s + s / 2, cy * s + s / 2
        dist[:, :, cy, cx] = [px - x1, py - y1, x2 - px, y2 - py]
        return heat, dist


def test_the_built_in_detector_splits_piles_unless_told_not_to() -> None:
    assert DEFAULT_CONFIG["split_stacks"] is True
    rng = np.random.default_rng(2)
    img, box = _scene([_pack(rng, 32, 96)] * 3, pad=48)
    runner = _OneBoxRunner(box[0], DEFAULT_CONFIG["stride"])
    det = DefaultDetector(runner, DEFAULT_CONFIG)
    assert det.split_stacks and det.info["split_stacks"] is True
    (found,) = det.predict([img])
    assert len(found.scores) == 3
    np.testing.assert_allclose(found.xyxy[:, [0, 2]], np.repeat(box[:, [0, 2]], 3, axis=0), atol=1e-4)
    assert found.xyxy[0, 1] == pytest.approx(box[0, 1]) and found.xyxy[2, 3] == pytest.approx(box[0, 3])
    det.split_stacks = False
    (whole,) = det.predict([img])
    assert len(whole.scores) == 1 and det.info["split_stacks"] is False
    assert len(DefaultDetector(runner, DEFAULT_CONFIG, split_stacks=False).predict([img])[0].scores) == 1
    det.split_stacks = "On"  # type: ignore[assignment]  # words too: the CLI passes False as a string
    assert det.split_stacks is True
    det.split_stacks = 0  # type: ignore[assignment]  # and split_stacks=0 arrives as the number 0
    assert det.split_stacks is False
    with pytest.raises(InvalidInputError, match="split_stacks must be true or false"):
        det.split_stacks = "perhaps"  # type: ignore[assignment]
    # a config without the key (an old caller's) gets the package default, not off
    config = {k: v for k, v in DEFAULT_CONFIG.items() if k != "split_stacks"}
    assert DefaultDetector(runner, config).split_stacks is True


def test_the_bundled_example_has_no_pile_and_loses_no_product_to_the_splitter() -> None:
    import densedet_tile as dt

    example = Path(__file__).parents[2] / "examples" / "shelf.jpg"
    on = dt.detect(example, load_default(device="cpu"))
    off = dt.detect(example, load_default(device="cpu", split_stacks=False))
    # at most one box cut, into at most three (129 = 129 here; an int8 kernel of another CPU or
    # onnxruntime release moves boxes by a fraction of a pixel, which may tip one borderline
    # box): the splitter must not take the example's products apart
    assert len(off) >= 120 and 0 <= len(on) - len(off) <= 2
    same = np.abs(off.xyxy[:, None, :] - on.xyxy[None, :, :]).max(axis=2).min(axis=1) <= 1e-3
    assert same.sum() >= len(off) - 1


def test_split_stacks_is_a_detector_option_of_the_built_in_model() -> None:
    assert load_default(device="cpu", split_stacks=False).split_stacks is False
    det = load_detector("default", device="cpu", options={"split_stacks": False})
    assert det.split_stacks is False and det.info["split_stacks"] is False
    assert load_detector("default", device="cpu").split_stacks is True
    with pytest.raises(InvalidInputError, match="split_stacks must be true or false"):
        load_detector("default", device="cpu", options={"split_stacks": "sometimes"})


def test_the_command_line_turns_the_splitter_off_and_records_it(tmp_path) -> None:
    import json

    from densedet_tile.cli import main as cli_main

    example = Path(__file__).parents[2] / "examples" / "shelf.jpg"
    for word, expect in (("false", False), ("False", False), ("true", True)):
        out = tmp_path / word
        assert cli_main([str(example), "--out", str(out), "--detector-option", f"split_stacks={word}"]) == 0
        report = json.loads((out / "shelf.detections.json").read_text())
        assert report["model"]["info"]["split_stacks"] is expect
    assert cli_main([str(example), "--out", str(tmp_path / "bad"), "--detector-option", "split_stacks=maybe"]) == 2
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("shape", [(640, 640, 3), (37, 91, 3), (50, 60), (3000, 3000, 3)])
def test_summed_area_table_is_exact_in_either_integer_width(shape) -> None:
    from densedet_tile.detector.stacks import _gray_integral

    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    if img.ndim == 3:
        img[:40, :40] = 255  # the brightest corner: every sum at its largest
        luma = (img[..., 0].astype(np.int64) * 77 + img[..., 1].astype(np.int64) * 150
                + img[..., 2].astype(np.int64) * 29) >> 8
    else:
        luma = img.astype(np.int64)
    want = np.zeros((shape[0] + 1, shape[1] + 1), np.int64)
    want[1:, 1:] = luma.cumsum(axis=0).cumsum(axis=1)
    got = _gray_integral(img)
    assert got.dtype == (np.int64 if shape[0] * shape[1] * 255 >= 2**31 else np.int32)
    assert np.array_equal(got, want)


class _BoxesRunner(_OneBoxRunner):
    """A stand-in network with one peak per box of ``boxes`` (model-input pixels, may reach past
    the image), scored by ``logits``; the peaks at each box's centre, clipped into the grid, or at
    the grid ``cells`` (column, row) given."""

    def __init__(self, boxes: np.ndarray, logits: list[float], stride: int,
                 cells: list[tuple[int, int]] | None = None) -> None:
        self.boxes, self.logits, self.stride, self.cells = np.asarray(boxes, np.float64), logits, stride, cells

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, h, w, _ = batch.shape
        s = self.stride
        heat = np.full((n, 1, h // s, w // s), -10.0, np.float32)
        dist = np.zeros((n, 4, h // s, w // s), np.float32)
        for k, ((x1, y1, x2, y2), logit) in enumerate(zip(self.boxes, self.logits)):
            cx = min(max(int((x1 + x2) / 2 // s), 0), w // s - 1)
            cy = min(max(int((y1 + y2) / 2 // s), 0), h // s - 1)
            if self.cells is not None:
                cx, cy = self.cells[k]
            heat[:, 0, cy, cx] = logit
            px, py = cx * s + s / 2, cy * s + s / 2
            dist[:, :, cy, cx] = [px - x1, py - y1, x2 - px, y2 - py]
        return heat, dist


def test_boxes_alike_inside_the_tile_are_thinned_there_not_left_to_the_merge() -> None:
    # two boxes of one product cut by the tile's left edge: outside it they reach 60 and 200 px
    # further (IoU 0.49, both kept by the NMS at 0.5 before the cut); inside, they are the same
    # box but for 4 px: one is kept, the higher-scoring
    img = np.full((256, 256, 3), 128, np.uint8)
    s = DEFAULT_CONFIG["stride"]
    a = np.array([-60.0, 40.0, 80.0, 200.0])
    b = np.array([-200.0, 44.0, 80.0, 200.0])
    iou_before = (140 * 156) / (140 * 160 + 280 * 156 - 140 * 156)
    assert iou_before <= DEFAULT_CONFIG["nms_iou"]
    # (their peaks 4 cells apart: neighbouring cells would be one peak, the higher)
    runner = _BoxesRunner(np.stack([a, b]), [4.0, 3.0], s, cells=[(2, 10), (2, 14)])
    (found,) = DefaultDetector(runner, DEFAULT_CONFIG, split_stacks=False).predict([img])
    assert len(found.scores) == 1
    np.testing.assert_allclose(found.xyxy[0], [0, 40, 80, 200], atol=1e-4)


def test_two_piles_sharing_layers_give_each_layer_once() -> None:
    # a pile of 5 identical packs boxed twice: over its top 4 layers, and over its bottom 3. The
    # whole boxes overlap at IoU 0.4, under the NMS's 0.5, so both are kept; split, their two
    # shared layers overlap at IoU 1, and each layer must come out once
    rng = np.random.default_rng(5)
    pack = _pack(rng, 40, 96)
    img, box = _scene([pack] * 5, pad=24)
    top = box[0].copy()
    top[3] = top[1] + 4 * 40
    low = box[0].copy()
    low[1] = top[1] + 40 * 2
    x1, x2 = max(top[1], low[1]), min(top[3], low[3])
    iou_whole = (x2 - x1) / ((top[3] - top[1]) + (low[3] - low[1]) - (x2 - x1))
    assert iou_whole <= DEFAULT_CONFIG["nms_iou"]
    runner = _BoxesRunner(np.stack([top, low]), [4.0, 3.0], DEFAULT_CONFIG["stride"])
    det = DefaultDetector(runner, DEFAULT_CONFIG)
    (found,) = det.predict([img])
    (whole,) = DefaultDetector(runner, DEFAULT_CONFIG, split_stacks=False).predict([img])
    assert len(whole.scores) == 2
    a = found.xyxy
    ix = np.clip(np.minimum(a[:, None, 2], a[None, :, 2]) - np.maximum(a[:, None, 0], a[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], a[None, :, 3]) - np.maximum(a[:, None, 1], a[None, :, 1]), 0, None)
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    iou = ix * iy / (area[:, None] + area[None, :] - ix * iy)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= DEFAULT_CONFIG["nms_iou"]
    # the 5 layers of the pile, each once (4 from the first box, the fifth from the second)
    assert len(found.scores) == 5
    np.testing.assert_allclose(np.sort(a[:, 1]), top[1] + 40 * np.arange(5), atol=1.0)
