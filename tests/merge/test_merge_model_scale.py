"""The seam merge's pixel tolerances follow the scale the model sees the tiles at."""

from __future__ import annotations

import zlib

import numpy as np

import densedet_tile as dt
from densedet_tile.types import Detections

STEP = 40  # palette step per channel (6 levels, 0 to 200): blends with the white background fall between


def _shelf(scale_up: int) -> tuple[np.ndarray, int]:
    """Rows of solid products, each its own colour, 70-90 px tall at scale_up 1, on white."""
    rng = np.random.default_rng(7)
    w, h = 1200 * scale_up, 800 * scale_up
    img = np.full((h, w, 3), 255, np.uint8)
    n, y = 0, 10
    while True:
        ph = int(rng.integers(70, 91))
        if y + ph > 790:
            break
        x = 10
        while True:
            pw = int(ph * rng.uniform(0.4, 0.8))
            if x + pw > 1190:
                break
            n += 1
            colour = [(n // 36) * STEP, ((n // 6) % 6) * STEP, (n % 6) * STEP]
            img[y * scale_up:(y + ph) * scale_up, x * scale_up:(x + pw) * scale_up] = colour
            x += pw + 12
        y += ph + 12
    assert n < 216  # one colour each
    return img, n


class _NoisyByColour:
    """Boxes the products' colours in the tile it is given, each side off by up to 2 px of its
    own input (a real detector's view-to-view noise), as a model of input 256 would."""

    input_size = 256
    resize_filter = "bilinear"
    score_thr = 0.5

    def predict(self, tiles):
        out = []
        for t in tiles:
            q = np.round(t.astype(np.int32) / STEP)
            exact = (np.abs(t.astype(np.int32) - q * STEP) <= 3).all(axis=2) & (q <= 5).all(axis=2)
            ids = np.where(exact, (q[..., 0] * 36 + q[..., 1] * 6 + q[..., 2]).astype(np.int64), -1)
            boxes = []
            for k in np.unique(ids[ids >= 0]):
                ys, xs = np.nonzero(ids == k)
                if len(xs) < 9:
                    continue
                box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
                if min(box[2] - box[0], box[3] - box[1]) < 6:  # slivers: no detector reports them
                    continue
                seed = zlib.crc32(f"{k} {int(box[0])} {int(box[1])}".encode())
                box += np.random.default_rng(seed).uniform(-2, 2, 4)
                boxes.append(box)
            xyxy = np.array(boxes, np.float32).reshape(-1, 4)
            out.append(Detections(xyxy, np.full(len(xyxy), 0.9, np.float32), np.zeros(len(xyxy), np.int64)))
        return out


def test_box_noise_of_a_few_model_pixels_leaves_no_seam_fragments_at_a_strong_shrink():
    # the same shelf at 8 times the size, shown at an eighth of the scale: the model sees the
    # same tiles and noise; with 16 image px of tolerance (1.6 model px at scale 0.1) the cut
    # views' fragments stayed as extra products
    small, n = _shelf(1)
    ref = dt.detect_image(small, _NoisyByColour(), scale=0.8)
    assert len(ref.detections) == n
    big, n8 = _shelf(8)
    res = dt.detect_image(big, _NoisyByColour(), scale=0.1)
    assert n8 == n and res.num_tiles > 4
    assert len(res.detections) == n
    merge = res.settings["merge"]
    assert merge["edge_tol"] >= 80 and merge["seam_tol"] >= 80  # 8 model px, recorded as it ran


def test_the_tolerances_are_never_lowered_and_left_alone_at_the_usual_scale():
    from densedet_tile.pipeline import merge_at_model_scale
    from densedet_tile.tiler import make_grid

    tiles = make_grid(3000, 2000, dt.TileSpec(tile=1280, overlap=0.2))
    spec = dt.MergeSpec()
    assert merge_at_model_scale(spec, tiles, 640) == spec  # the built-in model's usual 0.5
    assert merge_at_model_scale(spec, tiles, 1280) == spec
    assert merge_at_model_scale(spec, tiles, None) == spec  # a detector that sees tiles at their size
    shrunk = merge_at_model_scale(dt.MergeSpec(edge_tol=4, seam_tol=40), tiles, 256)
    assert shrunk.edge_tol == 40 and shrunk.seam_tol == 40


def test_a_huge_shrink_stays_within_the_merge_specs_limits_and_one_tile_is_left_alone():
    # a 20000 px tile shown at 16 px asked for 10000 px of tolerance, which MergeSpec refuses,
    # after every tile had run
    from densedet_tile.pipeline import merge_at_model_scale
    from densedet_tile.tiler import make_grid

    tiles = make_grid(40000, 2000, dt.TileSpec(tile=20000, overlap=0.2))
    spec = merge_at_model_scale(dt.MergeSpec(), tiles, 16)
    assert 0 < spec.edge_tol < 10000 and 0 < spec.seam_tol < 10000
    one = make_grid(3000, 2000, dt.TileSpec(tile=4000))
    assert len(one) == 1 and merge_at_model_scale(dt.MergeSpec(), one, 256) == dt.MergeSpec()
