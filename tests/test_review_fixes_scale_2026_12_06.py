"""The scale rules for detectors other than the built-in model (an outside review, 2026-12-06):
what ``--tile auto`` does where a detector declares no product size, panoramas wider than the
whole-image probe's 4:1, auto's own choices against the engine's limits, and the input size a
warning names."""

from __future__ import annotations

import numpy as np
import pytest

import densedet_tile as dt
from test_scale import SizedBlobs


class BandDetector(SizedBlobs):
    """Boxes each bright rectangle of the array it gets (rows of bars on a dark background), but
    only those whose height there lies in [lo, hi] px: a model that knows one scale; it declares
    a product size only where one is given."""

    bright = 100

    def __init__(self, lo: float, hi: float, input_size: int | None = 640, product_size: float | None = None,
                 photo_rule: tuple[float, float] | None = None) -> None:
        self.lo, self.hi, self.input_size = lo, hi, input_size
        if product_size is not None:
            self.product_size = product_size
        self.rule = photo_rule
        self.seen: list[tuple[int, int]] = []

    def keeps(self, h: int) -> bool:
        return self.lo <= h <= self.hi


def bars(width: int, height: int, product_h: int, gap: int) -> np.ndarray:
    """Rows of bright bars ``product_h`` tall and 0.6 of that wide, ``gap`` apart."""
    img = np.full((height, width, 3), 10, np.uint8)
    w = max(2, int(product_h * 0.6))
    y = gap
    while y + product_h + gap <= height:
        for x in range(gap, width - w - gap, w + gap):
            img[y:y + product_h, x:x + w] = 220
        y += product_h + 2 * gap
    return img


def count_bars(width: int, height: int, product_h: int, gap: int) -> int:
    w = max(2, int(product_h * 0.6))
    return len(range(gap, width - w - gap, w + gap)) * len(range(gap, height - product_h - gap + 1, product_h + 2 * gap))


def test_a_scale_replacing_a_tile_names_the_input_size_the_run_used(caplog):
    # a 500 px image is smaller than the 0.5 scale's 1280 px tile: shown whole, at 250 px; the
    # warning said the model's own 640
    img = bars(500, 400, 40, 8)
    with caplog.at_level("WARNING", logger="densedet_tile.scale"):
        res = dt.detect_image(img, BandDetector(10, 100), tile=300, scale=0.5)
    assert res.settings["input_size"] == 250
    assert "tile 300 replaced by 500 px: the model sees each tile at 250 px" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile.scale"):  # tiles of the model's size: its size
        dt.detect_image(bars(3000, 400, 40, 8), BandDetector(10, 100), tile=300, scale=0.5)
    assert "tile 300 replaced by 1280 px: the model sees each tile at 640 px" in caplog.text


def test_tile_auto_without_a_product_size_runs_as_the_default_run_and_says_why(caplog):
    # shaped like the mmdet adapter: a fixed input and DenseDet's photo rule, no product_size.
    # auto measured the products, then ran the default tile and dropped the photo rule: on this
    # small copy of a photo (40 px products; the rule enlarges it 2.9 times, to 118 px) the
    # default tile shows them at 40 px, which this model does not see
    img = bars(816, 612, 40, 8)
    truth = count_bars(816, 612, 40, 8)
    rule = (3000.0, 1800.0)
    plain = dt.detect_image(img, BandDetector(80, 180, input_size=1280, photo_rule=rule))
    assert plain.settings["scale"]["source"] == "photo rule" and len(plain.detections) == truth
    det = BandDetector(80, 180, input_size=1280, photo_rule=rule)
    with caplog.at_level("WARNING", logger="densedet_tile.scale"):
        auto = dt.detect_image(img, det, tile="auto")
        dt.detect_image(img, det, tile="auto")  # said once per detector
    assert len(auto.detections) == truth
    info = auto.settings["scale"]
    assert info["source"] == "photo rule" and info["asked"] == "auto" and "declares no product_size" in info["note"]
    assert (auto.settings["tile"], auto.settings["overlap"]) == (plain.settings["tile"], plain.settings["overlap"])
    said = [r.getMessage() for r in caplog.records if "tile auto cannot pick a scale" in r.getMessage()]
    assert len(said) == 1 and "give --scale, or declare product_size" in said[0]
    # no photo rule (the ONNX, YOLO and torchvision adapters), or not a photo: the default tile
    # and overlap, not a tile kept with an overlap fitted to what was measured
    det = BandDetector(20, 60, input_size=640)
    pano = bars(4000, 900, 100, 20)
    auto = dt.detect_image(pano, det, tile="auto", overlap=0.05)
    assert (auto.settings["tile"], auto.settings["overlap"]) == (dt.TileSpec().tile, 0.05)
    assert auto.settings["scale"]["source"] == "tile" and auto.settings["scale"]["asked"] == "auto"
    assert len(auto.detections) == len(dt.detect_image(pano, det, overlap=0.05).detections)


def test_tile_auto_with_a_product_size_still_measures():
    img = bars(816, 612, 40, 8)
    det = BandDetector(80, 180, input_size=1280, product_size=120.0, photo_rule=(3000.0, 1800.0))
    info = dt.detect_image(img, det, tile="auto").settings["scale"]
    assert info["source"] == "auto" and "asked" not in info and "probes" in info


def test_tile_auto_on_tiny_products_keeps_within_the_engine_s_limits(caplog):
    # 6 px products, a model that sees them at 80 px: a scale of 13.3
    img = bars(1400, 60, 6, 4)
    truth = count_bars(1400, 60, 6, 4)
    # a detector without an input size kept the 1280 px tile: 17067 px at that scale, past the
    # largest input (16384 px), and the image failed ("give a smaller scale or tile")
    native = BandDetector(4, 200, input_size=None, product_size=80.0)
    res = dt.detect_image(img, native, tile="auto")
    assert res.settings["scale"]["value"] == pytest.approx(80 / 6, rel=0.05) and res.settings["input_size"] <= 16384
    assert res.settings["tile"] * res.settings["scale"]["value"] <= 16384 and len(res.detections) == truth
    # a 640 px model made 48 px tiles, whose overlap (half a tile, 24 px) is under the 49 px the
    # seam repair needs, and warned about its own choice: now 98 px tiles shown at the scale
    det = BandDetector(4, 200, input_size=640, product_size=80.0)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        res = dt.detect_image(img, det, tile="auto")
    assert "overlap by" not in caplog.text
    assert res.settings["tile"] == 98 and res.settings["input_size"] == round(98 * res.settings["scale"]["value"])
    assert round(res.settings["overlap"] * res.settings["tile"]) >= dt.MergeSpec().seam_overlap_px
    assert len(res.detections) == truth


def test_tile_auto_measures_products_as_tall_as_a_wide_panorama_s_shelves():
    # 6:1, one shelf of 500 px products: the largest square (the full height) shows them at 128 px
    # on a 256 px model trained at 40, too large to see; the whole view, only for images up to
    # 4:1, was not probed: nothing measured, the default tile showed them at 100 px, none found
    img = bars(6000, 1000, 500, 40)
    truth = count_bars(6000, 1000, 500, 40)
    det = BandDetector(25, 60, input_size=256, product_size=40.0)
    res = dt.detect_image(img, det, tile="auto")
    info = res.settings["scale"]
    assert info["product_height_px"] == pytest.approx(500, rel=0.05)
    strip = info["probes"][-1]  # the full height at 4:1, taken as the whole view
    assert strip["window"] == 4000 and strip.get("whole") and strip["boxes"] >= 5
    assert len(res.detections) == truth


def test_a_panorama_s_full_height_window_changes_nothing_where_the_squares_measure():
    from densedet_tile.scale import _probes

    # 30 px products on 9000x1200: the squares see them, the strip view (shrunk 14 times) not
    img = bars(9000, 1200, 30, 6)
    det = BandDetector(25, 60, input_size=256, product_size=40.0)
    info = dt.detect_image(img, det, tile="auto").settings["scale"]
    assert info["chosen_window"] < 1200 and info["product_height_px"] == pytest.approx(30, rel=0.05)
    # three such windows along a panorama 12 times as long as high, one at 4:1 or less; a photo
    # keeps its squares and whole view
    assert [len(g) for g in _probes(24000, 2000, 640) if g[0][2] == 8000] == [3]
    assert [g[0][2:] for g in _probes(16000, 2000, 640)][-1] == (8000, 2000)
    assert [g[0][2:] for g in _probes(2000, 16000, 640)][-1] == (2000, 8000)
    assert all(w == h for g in _probes(3264, 2448, 640) for _, _, w, h in g)
    assert [g[0][2:] for g in _probes(9600, 2400, 640)][-1] == (9600, 2400)
