"""The orchestrator: tiling, resizing to the model's input, frames, validation, OOM back-off."""

import threading
from pathlib import Path

import numpy as np
import pytest

import densedet_tile as dt
from densedet_tile import Detections, DetectorError, InvalidInputError, TileSpec
from densedet_tile.pipeline import detect_image

from fakes import BlobDetector, NaNDetector, NotDetectionsDetector, WrongLengthDetector, blob_image

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "shelf.jpg"


def test_single_tile_box_in_global_frame():
    img = blob_image(300, 500, (40, 50, 140, 90))
    det = BlobDetector()
    out = dt.detect(img, det, tile=1280, device="cpu")
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [40, 50, 140, 90])
    assert det.seen == [(300, 500)]


def test_product_seen_whole_by_two_tiles_comes_out_once():
    # tile 400, overlap 0.25 -> x starts 0, 300, 600, ...; the blob sits inside the overlap 300..400
    img = blob_image(400, 1000, (310, 100, 390, 200))
    out = dt.detect(img, BlobDetector(), tile=400, overlap=0.25, device="cpu")
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [310, 100, 390, 200], atol=1e-4)


@pytest.mark.parametrize("input_size", [200, 640])
def test_tiles_resized_to_input_size_and_boxes_mapped_back(input_size):
    img = blob_image(800, 800, (100, 200, 300, 260))
    det = BlobDetector(input_size=input_size)
    res = detect_image(img, det, tile=800, device="cpu")
    assert det.seen == [(input_size, input_size)]
    assert res.settings["input_size"] == input_size
    # box edges land within one model pixel of the truth after mapping back
    tol = 800 / input_size + 1e-3
    np.testing.assert_allclose(res.detections.xyxy[0], [100, 200, 300, 260], atol=tol)


def test_explicit_input_size_overrides_detector():
    img = blob_image(600, 600, (10, 10, 50, 50))
    det = BlobDetector(input_size=300)
    dt.detect(img, det, tile=600, input_size=150, device="cpu")
    assert det.seen == [(150, 150)]


def test_batches_and_progress():
    img = blob_image(1000, 2500, (5, 5, 20, 20))
    det = BlobDetector()
    calls = []
    res = detect_image(img, det, tile=500, overlap=0.2, batch_size=3, device="cpu",
                       progress=lambda done, total: calls.append((done, total)))
    n = res.num_tiles
    assert sum(det.calls) == n and max(det.calls) <= 3
    assert calls[-1] == (n, n) and all(a <= b for (a, _), (b, _) in zip(calls, calls[1:]))


def test_score_threshold_drops_low_boxes():
    img = blob_image(300, 300, (10, 10, 50, 50))
    assert len(dt.detect(img, BlobDetector(score=0.3), score_thr=0.5, device="cpu")) == 0
    assert len(dt.detect(img, BlobDetector(score=0.6), score_thr=0.5, device="cpu")) == 1


def test_input_array_is_not_modified():
    img = blob_image(700, 900, (10, 10, 50, 50))
    before = img.copy()
    dt.detect(img, BlobDetector(input_size=256), tile=512, device="cpu")
    np.testing.assert_array_equal(img, before)


@pytest.mark.parametrize(
    "det, match",
    [
        (NaNDetector(), "NaN"),
        (WrongLengthDetector(), "one per tile"),
        (NotDetectionsDetector(), "expected Detections"),
    ],
)
def test_malformed_detector_output_is_a_clear_error(det, match):
    img = blob_image(700, 900, (10, 10, 50, 50))
    with pytest.raises(DetectorError, match=match):
        dt.detect(img, det, tile=512, batch_size=2, device="cpu")


@pytest.mark.parametrize(
    "kwargs",
    [dict(tile=0), dict(overlap=1.0), dict(batch_size=0), dict(score_thr=1.5), dict(device="tpu"), dict(input_size=3)],
)
def test_bad_options_rejected(kwargs):
    with pytest.raises(InvalidInputError):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), BlobDetector(), **kwargs)


def test_not_a_detector_rejected():
    with pytest.raises(InvalidInputError, match="predict"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), object(), device="cpu")


class _OOMOnBigBatches(BlobDetector):
    """Raises torch's out-of-memory error for batches above ``limit`` tiles."""

    def __init__(self, limit):
        super().__init__()
        self.limit = limit

    def predict(self, tiles):
        import torch

        if len(tiles) > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super().predict(tiles)


def test_oom_halves_the_batch_and_keeps_every_tile():
    img = blob_image(1000, 3000, (1100, 100, 1200, 200))
    det = _OOMOnBigBatches(limit=2)
    with pytest.warns(RuntimeWarning, match="retrying with batch size") as rec:
        res = detect_image(img, det, tile=500, overlap=0.2, batch_size=8, device="cpu")
    assert [str(w.message).rsplit(" ", 1)[-1] for w in rec] == ["4", "2"]  # 8 -> 4 -> 2, then it fits
    assert res.settings["final_batch_size"] == 2
    assert len(det.seen) == res.num_tiles  # no tile lost, none run twice successfully
    assert len(res.detections) == 1


def test_the_next_image_starts_at_the_batch_that_fitted():
    # Out of memory at 8 and 4 on the first image; the second starts at 2 instead of running out again.
    img = blob_image(1000, 3000, (1100, 100, 1200, 200))
    det = _OOMOnBigBatches(limit=2)
    with pytest.warns(RuntimeWarning, match="retrying with batch size"):
        detect_image(img, det, tile=500, overlap=0.2, batch_size=8, device="cpu")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = detect_image(img, det, tile=500, overlap=0.2, batch_size=8, device="cpu")
    assert res.settings["final_batch_size"] == 2 and len(res.detections) == 1
    # another detector object is not held back by it
    other = _OOMOnBigBatches(limit=100)
    assert detect_image(img, other, tile=500, overlap=0.2, batch_size=8, device="cpu").settings["final_batch_size"] == 8


def test_the_built_in_model_on_torch_moves_to_the_cpu_when_one_tile_does_not_fit():
    # The CPU fallback needs detector.to(); the shipped detectors had none, so a 4 GB card that
    # could not hold one tile failed every image instead of going on on the CPU.
    pytest.importorskip("torch")
    import torch

    det = dt.load_detector("default", device="cpu", options={"runtime": "torch"})
    runner = det.runner
    real_call = type(runner).__call__
    calls = []

    def call(self, batch):
        calls.append(str(self.device))
        if getattr(self, "pretend_gpu", False):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.00 GiB")
        return real_call(self, batch)

    real_to = type(runner).to

    def to(self, device):
        self.pretend_gpu = False
        return real_to(self, device)

    type(runner).__call__, type(runner).to = call, to
    try:
        runner.pretend_gpu = True
        det.device = "cuda"
        from PIL import Image

        img = np.asarray(Image.open(EXAMPLE).convert("RGB"))
        with pytest.warns(RuntimeWarning, match="continuing on the CPU"):
            res = dt.detect_image(img, det, batch_size=1, device="cuda")
        assert det.device == torch.device("cpu") and res.settings["device"] == "cpu"
        assert len(res.detections) > 100  # the whole example shelf, found on the CPU
    finally:
        type(runner).__call__, type(runner).to = real_call, real_to


class _OOMUntilCPU(BlobDetector):
    def __init__(self):
        super().__init__()
        self.device = "cuda"

    def to(self, device):
        self.device = device
        return self

    def predict(self, tiles):
        import torch

        if self.device != "cpu":
            raise torch.OutOfMemoryError("CUDA out of memory")
        return super().predict(tiles)


def test_oom_at_batch_one_falls_back_to_cpu():
    img = blob_image(600, 600, (10, 10, 50, 50))
    det = _OOMUntilCPU()
    with pytest.warns(RuntimeWarning, match="CPU"):
        out = dt.detect(img, det, tile=600, batch_size=1, device="cuda")
    assert det.device == "cpu" and len(out) == 1
    # the next image of a --device cuda run tries its GPU again; still full: the CPU again
    with pytest.warns(RuntimeWarning, match="CPU for this image"):
        res = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert len(res.detections) == 1 and res.settings["device"] == "cpu"


class _OOMOnce(_OOMUntilCPU):
    """Out of GPU memory for the first image only (another program held the card a while)."""

    full = True

    def predict(self, tiles):
        if self.device != "cpu" and self.full:
            self.full = False
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory")
        return BlobDetector.predict(self, tiles)


def test_after_one_images_cpu_fallback_the_next_image_runs_on_the_gpu_again():
    # one huge panorama (or a moment when the card was full) sent every later image of a batch
    # to the CPU, silently
    img = blob_image(600, 600, (10, 10, 50, 50))
    det = _OOMOnce()
    with pytest.warns(RuntimeWarning, match="CPU for this image"):
        first = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert first.settings["device"] == "cpu"
    second = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert det.device == "cuda" and second.settings["device"] == "cuda" and len(second.detections) == 1


def test_a_device_other_than_the_detectors_own_is_refused_not_misreported():
    class OnCPU(BlobDetector):
        device = "cpu"

    img = blob_image(200, 200, (10, 10, 50, 50))
    with pytest.raises(InvalidInputError, match="device='cuda' was asked for, but the detector was built for 'cpu'"):
        dt.detect_image(img, OnCPU(), device="cuda")
    assert dt.detect_image(img, OnCPU(), device="cpu").settings["device"] == "cpu"
    assert dt.detect_image(img, OnCPU()).settings["device"] == "cpu"


def test_detector_exception_is_wrapped_with_image_name():
    class Boom:
        def predict(self, tiles):
            raise ValueError("bad tensor")

    with pytest.raises(DetectorError, match="<array>.*bad tensor"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), Boom(), device="cpu")


def test_no_reader_thread_left_after_detector_error():
    before = threading.active_count()
    img = blob_image(1500, 1500, (10, 10, 50, 50))
    with pytest.raises(DetectorError):
        dt.detect(img, NaNDetector(), tile=400, device="cpu")
    import time

    for _ in range(50):
        if threading.active_count() <= before:
            break
        time.sleep(0.02)
    assert threading.active_count() <= before


def test_detections_refuse_corrupted_labels_and_complex_boxes():
    with pytest.raises(InvalidInputError, match="class id 1e\\+30 is out of range"):
        dt.Detections([[1, 1, 2, 2]], [0.5], labels=[1e30])
    with pytest.raises(InvalidInputError, match="out of range"):
        dt.Detections([[1, 1, 2, 2]], [0.5], labels=np.array([2**64 - 1], np.uint64))
    with pytest.raises(InvalidInputError, match="real numbers"):
        dt.Detections(np.array([[1, 1, 2, 2]], complex), [0.5])
    assert dt.Detections([[1, 1, 2, 2]], [0.5], labels=np.array([7], np.uint64)).labels.tolist() == [7]


@pytest.mark.parametrize("score", [-3.0, 1.5])
def test_scores_outside_zero_one_from_a_detector_are_refused(score):
    class Odd:
        def predict(self, tiles):
            return [dt.Detections([[5, 5, 40, 40]], [score]) for _ in tiles]

    with pytest.raises(DetectorError, match=r"<array>: detector Odd returned scores from .* must be confidences in \[0, 1\]"):
        dt.detect(blob_image(100, 100, (5, 5, 40, 40)), Odd())


def test_numpy_numbers_are_fine_in_the_specs_and_stay_json_friendly():
    import json
    from dataclasses import asdict

    run = dt.RunSpec(score_thr=np.float32(0.5), batch_size=np.int64(2), count_band=np.float32(0.05))
    merge = dt.MergeSpec(fuse_iou=np.float32(0.5), nms_iou=np.float64(0.6))
    assert type(run.score_thr) is float and type(run.batch_size) is int and type(merge.fuse_iou) is float
    json.dumps([asdict(run), asdict(merge)])


def test_a_progress_that_is_not_a_function_is_refused_before_any_work():
    with pytest.raises(InvalidInputError, match="progress must be a function"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), BlobDetector(), progress=5)


def test_a_detectors_class_names_and_labels_are_checked_before_its_boxes_are_written():
    class OneString(BlobDetector):
        class_names = "product"  # would be split into its letters

    with pytest.raises(DetectorError, match="single string 'product'"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), OneString())

    class NumpyAttrs(BlobDetector):
        class_names = np.array(["can", "box"])

    res = dt.detect_image(blob_image(64, 64, (1, 1, 5, 5)), NumpyAttrs(input_size=np.int64(64)))
    import json

    assert json.loads(json.dumps(res.model)) == {"name": "blob", "input_size": 64, "class_names": ["can", "box"]}

    class Negative:
        def predict(self, tiles):
            return [dt.Detections([[1, 1, 5, 5]], [0.9], labels=[-1]) for _ in tiles]

    with pytest.raises(DetectorError, match="class label -1"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), Negative())


def test_the_api_serves_a_threshold_below_the_built_in_models_own(caplog):
    from PIL import Image

    img = np.asarray(Image.open(Path(__file__).parents[1] / "examples" / "shelf.jpg").convert("RGB"))[:600, :800]
    low = dt.detect_image(img, score_thr=0.2)
    assert low.settings["score_thr"] == 0.2
    assert len(low.detections) and float(low.detections.scores.min()) < 0.45  # the model reached down to it
    with caplog.at_level("WARNING", logger="densedet_tile.pipeline"):
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.0)
    assert "without overlap" in caplog.text


def test_an_overlap_too_narrow_for_the_seam_repair_is_warned_about(caplog):
    img = blob_image(600, 800, (100, 100, 160, 160))
    with caplog.at_level("WARNING", logger="densedet_tile.pipeline"):
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.05)  # 13 px: not over 2 x 16 + 16
    assert "overlap by 13 px, under the 49 px the seam repair needs" in caplog.text
    assert "an overlap of 0.2 or more of these 256 px tiles (49 px)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.pipeline"):
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.16)  # 41 px: a 14 px product can be lost
    assert "overlap by 41 px, under the 49 px" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.pipeline"):  # a tight tolerance, the same band
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.08, merge=dt.MergeSpec(seam_tol=4.0))  # 20 px
    assert "overlap by 20 px, under the 37 px the seam repair needs (over twice the 16 px band" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.pipeline"):
        # their band and tolerance: over 2 x 4 + 4 px
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.05, merge=dt.MergeSpec(edge_tol=4.0, seam_tol=4.0))
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.2)  # 51 px
        dt.detect_image(img, BlobDetector(), tile=256, overlap=0.05, merge=dt.MergeSpec(mode="none"))  # nothing is repaired
        dt.detect_image(img, BlobDetector(), tile=1024, overlap=0.0)  # one tile: no seam
        # 0.02 of 512 px asked, but the second tile sits flush with the border: 500 px shared
        dt.detect_image(blob_image(400, 524, (100, 100, 160, 160)), BlobDetector(), tile=512, overlap=0.02)
    assert "overlap" not in caplog.text


def test_a_scale_and_tile_auto_together_are_refused():
    with pytest.raises(InvalidInputError, match="scale or tile='auto'"):
        dt.detect(blob_image(64, 64, (1, 1, 5, 5)), BlobDetector(), tile="auto", scale=0.5)


class _GridBoxes:
    """Twelve 20 px boxes per tile, in tile pixels, or multiplied by ``factor`` (another frame:
    the model's input size), or divided by the tile's size (normalised 0..1)."""

    def __init__(self, factor: float = 1.0, normalised: bool = False) -> None:
        self.factor, self.normalised = factor, normalised

    def predict(self, tiles):
        out = []
        for t in tiles:
            h, w = t.shape[:2]
            xs = np.arange(12, dtype=np.float32) * 20 % max(w - 20, 1)
            b = np.stack([xs, np.full(12, 5.0, np.float32), xs + 20, np.full(12, 25.0, np.float32)], 1) * self.factor
            if self.normalised:
                b = b / np.array([w, h, w, h], np.float32)
            out.append(Detections(b, np.full(12, 0.9, np.float32)))
        return out


def test_boxes_in_another_frame_are_said_not_silently_dropped_or_kept_as_specks():
    img = blob_image(300, 500, (40, 60, 140, 160))
    with pytest.warns(RuntimeWarning, match=r"returned 12 of 12 boxes wholly outside the tile .* in tile pixels"):
        res = dt.detect_image(img, _GridBoxes(100.0), tiling=TileSpec(tile=256))
    assert len(res.detections) == 0
    with pytest.warns(RuntimeWarning, match=r"boxes under 2 px wide and high \(normalised"):
        dt.detect_image(img, _GridBoxes(normalised=True), tiling=TileSpec(tile=256))
    assert len(dt.detect_image(img, _GridBoxes(), tiling=TileSpec(tile=256)).detections)  # no warning (errors here)


def test_a_stray_box_outside_its_tile_says_nothing():
    class OneStray(_GridBoxes):
        calls = 0

        def predict(self, tiles):
            out = super().predict(tiles)
            if OneStray.calls == 0:  # the first tile's only box lies past it; the rest are fine
                out[0] = Detections(np.array([[900.0, 5.0, 920.0, 25.0]], np.float32), np.array([0.9], np.float32))
            OneStray.calls += 1
            return out

    img = blob_image(300, 500, (40, 60, 140, 160))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # whatever the run's warning filters are
        res = dt.detect_image(img, OneStray(), tiling=TileSpec(tile=256))
    assert res.num_tiles > 1 and len(res.detections) > 0


def test_a_detector_returning_none_is_said_not_taken_for_out_of_memory():
    from densedet_tile.detector.calls import DetectorCalls

    class Nothing(BlobDetector):
        device = "cuda:0"

        def predict(self, tiles):
            return None

    with pytest.raises(dt.DetectorError, match="returned NoneType for 2 tiles"):
        DetectorCalls(Nothing(), 4, "a.png").predict([blob_image(64, 64, (5, 5, 20, 20))] * 2)


class _FullCard(_OOMUntilCPU):
    """A card full for the whole run; counts the moves."""

    def __init__(self, back_fails=False):
        super().__init__()
        self.moves, self.back_fails = [], back_fails

    def to(self, device):
        if device != "cpu" and self.back_fails:
            self.device = device  # part-way, as a module's .to() can stop
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory")
        self.moves.append(device)
        return super().to(device)


def test_the_cpu_fallback_lasts_the_whole_image_with_tile_auto_probes():
    # tile=auto runs probe windows before the tiles: each probe's calls moved the detector back
    # to the full GPU and out again (17 moves for one image)
    img = blob_image(900, 1400, (10, 10, 50, 50))
    det = _FullCard()
    det.product_size = 80.0  # (auto probes for a detector that declares one)
    with pytest.warns(RuntimeWarning, match="CPU for this image"):
        res = dt.detect_image(img, det, tile="auto", batch_size=1, device="cuda")
    assert det.moves == ["cpu"] and res.settings["device"] == "cpu"


def test_a_failed_move_back_leaves_the_detector_whole_on_the_cpu():
    img = blob_image(600, 600, (10, 10, 50, 50))
    det = _FullCard()
    with pytest.warns(RuntimeWarning, match="CPU for this image"):
        dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    det.back_fails = True
    with pytest.warns(RuntimeWarning, match="could not move back to cuda"):  # the card is still full
        res = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert det.device == "cpu" and res.settings["device"] == "cpu" and len(res.detections) == 1


def test_a_detector_whose_precision_the_cpu_move_changed_stays_on_the_cpu():
    # an fp16 mmdet backbone becomes fp32 on the CPU; back on the GPU it would need more memory
    # than the fp16 one that ran out, so the fallback keeps it on the CPU as before
    class Half(_FullCard):
        precision = "fp16"

        def to(self, device):
            if device == "cpu":
                self.precision = "fp32"
            return super().to(device)

    img = blob_image(600, 600, (10, 10, 50, 50))
    det = Half()
    with pytest.warns(RuntimeWarning, match="CPU for the rest of the run"):
        dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    res = dt.detect_image(img, det, tile=600, batch_size=1, device="cuda")
    assert det.moves == ["cpu"] and res.settings["device"] == "cpu"


def test_each_opened_image_has_its_own_key_even_when_its_id_is_reused():
    # the out-of-memory fallback tells "the image that ran out" by this key: a freed source's
    # id() goes to the next one, which then stayed on the CPU (and this file's test above
    # failed now and then)
    from densedet_tile.detector.calls import image_key

    class Source:
        name = "<array>"

    keys = []
    for _ in range(20):
        src = Source()
        keys.append(image_key(src))
        assert image_key(src) == keys[-1]  # one image's calls share it
        del src
    assert len(set(keys)) == 20


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_turned_striped_tiff_decodes_each_strip_once(tmp_path, orientation):
    """Tiles are read in the file's own row order: a quarter-turned TIFF whose compressed strips
    outgrow the cache is not decoded again for every row of tiles, and the boxes come back in
    tile order, the same as from the upright pixels."""
    import tifffile

    from densedet_tile.tiler import make_grid, open_image
    from densedet_tile.tiler.batching import stored_order

    rng = np.random.default_rng(orientation)
    stored = np.zeros((240, 200, 3), np.uint8)
    for _ in range(12):  # bright squares for the blob detector
        y, x = rng.integers(0, 220), rng.integers(0, 180)
        stored[y : y + 12, x : x + 12] = 255
    path = tmp_path / "turned.tif"
    tifffile.imwrite(path, stored, photometric="rgb", rowsperstrip=40, compression="zlib",
                     extratags=[(274, 3, 1, orientation, True)])
    strip_bytes = 40 * 200 * 3
    with open_image(path, tiff_cache_bytes=strip_bytes) as src:  # room for one strip
        upright = src.read(0, 0, src.width, src.height).copy()
    with open_image(path, tiff_cache_bytes=strip_bytes) as src:
        got = detect_image(src, BlobDetector(), tile=64, overlap=0.25)
        assert src.stats.segments_decoded == 6  # the 6 strips, once each
        tiles = make_grid(src.width, src.height, TileSpec(64, 0.25))
        order = stored_order(src, tiles)
        assert sorted(order) == list(range(len(tiles)))
        if orientation == 1:
            assert order == list(range(len(tiles)))  # the grid's own order
    want = detect_image(upright, BlobDetector(), tile=64, overlap=0.25)
    assert len(want.detections) >= 2
    np.testing.assert_array_equal(got.detections.xyxy, want.detections.xyxy)
    np.testing.assert_array_equal(got.detections.scores, want.detections.scores)
