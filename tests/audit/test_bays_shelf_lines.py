"""Bays from the shelf lines in the photo's pixels (:mod:`densedet_tile.audit.shelflines`):
where the shelf edges end or jump to other heights, a column the product boxes say nothing
about is cut; where they go on, nothing is (generated boxes and generated pictures)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit import run_audit
from densedet_tile.audit.bays import find_bays
from densedet_tile.audit.rows import RowLayout
from densedet_tile.audit.shelflines import edge_map, line_breaks, line_match
from densedet_tile.errors import InvalidInputError

W, H = 100.0, 150.0
BOTTOMS = (300.0, 600.0, 900.0, 1200.0)
WIDTH, HEIGHT = 3000, 1400
SCALE = 0.25


def _boxes(seed: int) -> np.ndarray:
    """One fixture's boxes as far as they tell: four shelves of products, a fifth of a width
    apart at most, all along the image (no gutter, no jump)."""
    rng = np.random.default_rng(seed)
    out = []
    for b in BOTTOMS:
        x = rng.uniform(0, 20)
        while x + W <= WIDTH:
            out.append([x, b - H, x + W, b])
            x += W + rng.uniform(0, 0.2) * W
    return np.array(out)


def _picture(seed: int, jump: float | None) -> np.ndarray:
    """The photo at ``SCALE``: product print (noise) with a bright shelf edge and its shadow
    under every shelf line; right of the middle the shelves stand ``jump`` lower (None: they go
    on at one height)."""
    rng = np.random.default_rng(1000 + seed)
    h, w = int(HEIGHT * SCALE), int(WIDTH * SCALE)
    pic = rng.normal(120.0, 35.0, (h, w))
    mid = w // 2
    for b in BOTTOMS:
        for x0, x1, dy in ((0, mid, 0.0), (mid, w, jump or 0.0)):
            y = int(round((b + dy) * SCALE))
            if y + 5 < h:
                pic[y:y + 3, x0:x1] = 235.0
                pic[y + 3:y + 5, x0:x1] = 30.0
    return np.clip(pic, 0, 255)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shelf_lines_jumping_in_the_photo_cut_a_bay_the_boxes_do_not_show(seed: int) -> None:
    boxes = _boxes(seed)
    assert find_bays(boxes).n_bays == 1  # the boxes alone: one fixture
    cut = find_bays(boxes, picture=(_picture(seed, 150.0), SCALE))
    assert cut.n_bays == 2, cut.kinds
    assert cut.kinds == ("shelf break",)
    assert abs(cut.cuts[0] - WIDTH / 2) < 0.75 * W


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_shelf_lines_going_on_in_the_photo_cut_nothing(seed: int) -> None:
    cut = find_bays(_boxes(seed), picture=(_picture(seed, None), SCALE))
    assert cut.n_bays == 1, (cut.kinds, cut.cuts)


def test_line_match_is_high_within_a_bay_and_low_across_the_jump() -> None:
    pic = _picture(4, 150.0)
    edges = edge_map(pic, W * SCALE)
    frame = RowLayout((), np.zeros(0, np.int64), 0.0, WIDTH / 2, 0.0, 700.0)
    us = np.arange(200.0, WIDTH - 200.0, 25.0)
    r = line_match(edges, SCALE, us, 0.6 * W, frame, lambda x, y: x + 0 * y, 100.0, 1300.0, 0.1 * H)
    far = np.abs(us - WIDTH / 2) > 2 * W
    near = np.abs(us - WIDTH / 2) < 0.2 * W
    assert r[far].min() > 0.8
    assert r[near].max() < 0.3
    # the break is found at the middle and nowhere else
    hits = us[line_breaks(r, 12, 2)]
    assert len(hits) == 1 and abs(hits[0] - WIDTH / 2) < 0.25 * W


def test_line_breaks_needs_lines_that_line_up_on_both_sides() -> None:
    # a dip among matches that are poor everywhere (print, pegboard, glass) is no break
    r = np.full(40, 0.3)
    r[20] = -0.2
    assert not line_breaks(r, 12, 2).any()
    r = np.full(40, 0.9)
    r[20] = 0.4
    assert line_breaks(r, 12, 2).tolist() == [i == 20 for i in range(40)]
    # unknown matches (NaN: past the photo's edge) are never a break, nor hold one up
    r[:10] = np.nan
    assert line_breaks(r, 12, 2)[20] and not line_breaks(r, 12, 2)[:10].any()
    assert line_breaks(np.zeros(0), 12, 2).shape == (0,)


def test_run_audit_takes_the_photo_at_any_scale_and_refuses_another_shape() -> None:
    boxes = _boxes(5)
    plain = run_audit(boxes, WIDTH, HEIGHT)
    assert len(plain.parts) == 1
    pic = Image.fromarray(_picture(5, 150.0).astype(np.uint8))
    res = run_audit(boxes, WIDTH, HEIGHT, picture=pic)
    assert len(res.parts) == 2
    assert res.parts[0].edges[1] == "shelf break" and res.parts[1].edges[0] == "shelf break"
    assert sorted(len(p.layout.rows) for p in res.parts) == [4, 4]
    # the same photo twice as large, as an RGB array: the same cut
    big = np.asarray(pic.resize((pic.size[0] * 2, pic.size[1] * 2)).convert("RGB"))
    again = run_audit(boxes, WIDTH, HEIGHT, picture=big)
    assert [p.edges for p in again.parts] == [p.edges for p in res.parts]
    with pytest.raises(InvalidInputError, match="not the shape"):
        run_audit(boxes, WIDTH, HEIGHT, picture=pic.resize((pic.size[0], pic.size[1] * 2)))
    # products under 12 px tall in the picture: no shelf edge to tell from the print, not looked at
    tiny = pic.resize((60, 28))
    assert len(run_audit(boxes, WIDTH, HEIGHT, picture=tiny).parts) == 1


def _painted(seed: int, pitch: float):
    from densedet_tile.synth.audit_aisles import render_aisle, synthetic_bays

    rng = np.random.default_rng([seed, 63])
    aisle = synthetic_bays(rng, n_bays=int(rng.integers(2, 5)), perspective_deg=float(rng.uniform(-20, 20)),
                           pitch_deg=pitch, spacing=0.03, end_margin=0.02, upright_width=(0.1, 0.25),
                           same_shelves=0.0, jitter=0.03)
    return aisle, render_aisle(aisle, scale=min(1.0, 1200 / max(aisle.width, aisle.height)))


def test_painted_aisles_in_perspective_get_their_bays_from_the_shelf_lines() -> None:
    """Tight boxes on products filled up to thin uprights, neighbouring bays' shelves at other
    heights, the camera turned down the aisle and pitched: with the painted aisle given, no
    aisle's bay count is further from the truth than from the boxes alone, and some are nearer."""
    off = {False: 0, True: 0}
    for seed in range(32):
        aisle, pic = _painted(seed, 18.0 if seed % 2 else -18.0)
        alone = abs(len(run_audit(aisle.xyxy, aisle.width, aisle.height).parts) - aisle.n_bays)
        seen = abs(len(run_audit(aisle.xyxy, aisle.width, aisle.height, picture=pic).parts) - aisle.n_bays)
        assert seen <= alone, seed
        off[False] += alone
        off[True] += seen
    assert off[True] < off[False], off


@pytest.mark.parametrize("kind", ["float 0..1", "uint16", "I;16", "F", "RGBA", "int 0..10"])
def test_pictures_of_any_range_and_mode_are_read(kind: str) -> None:
    # only the contrast counts: a float picture in 0..1 or a 16-bit one was clipped to black or
    # white and the shelf lines silently went unread (an outside review)
    boxes = _boxes(1)
    p = _picture(1, 150.0)
    pic = {"float 0..1": lambda: p / 255, "uint16": lambda: (p * 256).astype(np.uint16),
           "I;16": lambda: Image.fromarray((p * 256).astype(np.uint16)),
           "F": lambda: Image.fromarray((p / 255).astype(np.float32)),
           "RGBA": lambda: Image.fromarray(p.astype(np.uint8)).convert("RGBA"),
           "int 0..10": lambda: np.round(p / 25.5).astype(np.int64)}[kind]()
    res = run_audit(boxes, WIDTH, HEIGHT, picture=pic)
    assert res.shelf_lines
    assert [p.edges for p in res.parts] == [("image edge", "shelf break"), ("shelf break", "image edge")]


def test_pixels_that_are_not_numbers_do_not_blind_the_rest_of_their_row() -> None:
    boxes = _boxes(2)
    q = _picture(2, 150.0)
    q[50, 100] = np.nan
    q[60, 10] = np.inf
    assert find_bays(boxes, picture=(q, SCALE)).n_bays == 2
    assert len(run_audit(boxes, WIDTH, HEIGHT, picture=q).parts) == 2
    with pytest.raises(InvalidInputError, match="numbers"):
        run_audit(boxes, WIDTH, HEIGHT, picture=np.full((350, 750), "x"))


def test_a_picture_one_pixel_off_the_shape_is_read_at_the_image_scale() -> None:
    # a preview rounded the other way (8000 x 401 for 60000 x 3000): made the image's shape
    boxes = _boxes(3)
    p = Image.fromarray(_picture(3, 150.0).astype(np.uint8))
    off = p.resize((p.size[0], p.size[1] + 1))
    res = run_audit(boxes, WIDTH, HEIGHT, picture=off)
    assert len(res.parts) == 2


def test_edge_map_matches_its_definition_at_every_column() -> None:
    rng = np.random.default_rng(0)
    for (h, w), run in (((30, 40), 7.0), ((12, 5), 12.0), ((9, 20), 1.0), ((6, 1), 5.0)):
        g = rng.normal(size=(h, w)) * 40
        gy = np.abs(np.diff(g, axis=0, append=g[-1:]))
        k = int(round(run)) // 2
        want = np.stack([gy[:, max(0, x - k): x + k + 1].mean(axis=1) for x in range(w)], axis=1)
        assert np.allclose(edge_map(g, run), want, atol=1e-3)


def test_no_picture_read_without_bays() -> None:
    boxes = _boxes(4)
    from densedet_tile.audit import AuditSettings
    res = run_audit(boxes, WIDTH, HEIGHT, picture=_picture(4, 150.0), settings=AuditSettings(bays=False))
    assert len(res.parts) == 1 and not res.shelf_lines


def test_a_panorama_of_small_products_is_read_at_a_bounded_size() -> None:
    # products 40 px tall on a 40000 x 3000 panorama: read whole, the command took 2.5 GB and
    # four times as long (an outside review); at most 16 megapixels now, and not at all when
    # the products would be under 12 px there
    from densedet_tile.audit.analysis import SHELF_LINES_MAX_PIXELS, SHELF_LINES_MIN_PX, shelf_lines_scale

    small = np.array([[0, 0, 30, 40], [40, 0, 70, 40]], float)
    s = shelf_lines_scale(small, 40000, 3000)
    assert s is not None and 40000 * 3000 * s * s <= SHELF_LINES_MAX_PIXELS * 1.0001
    assert 40 * s >= SHELF_LINES_MIN_PX
    assert shelf_lines_scale(small, 400000, 30000) is None
    assert shelf_lines_scale(np.array([[0, 0, 80, 200]], float), 2448, 3264) == pytest.approx(0.25)
    assert shelf_lines_scale(np.zeros((0, 4)), 100, 100) is None


def test_pictures_that_cannot_be_read_grey_are_named_and_huge_numbers_are_read() -> None:
    boxes = _boxes(6)
    lab = Image.fromarray(_picture(6, 150.0).astype(np.uint8)).convert("RGB").convert("LAB")
    with pytest.raises(InvalidInputError, match="mode LAB"):
        run_audit(boxes, WIDTH, HEIGHT, picture=lab)
    # numbers past float32's range are read, not made infinite and blank
    huge = _picture(6, 150.0) * 1e40
    assert len(run_audit(boxes, WIDTH, HEIGHT, picture=huge).parts) == 2



def test_a_picture_loaded_at_the_shelf_lines_scale_is_read_as_it_is() -> None:
    # rounding a picture's size to whole pixels put its products a hair under 12 px (not read
    # at all) or its pixels a hair over 16 M (resampled by one pixel): a second review
    from densedet_tile.audit.analysis import _shelf_photo, shelf_lines_scale

    rng = np.random.default_rng(7)
    cases = [(27618, 4576, 33.726), (31547, 5977, 319.1381484933637)]  # (both failed before)
    cases += [(int(rng.integers(2000, 60000)), int(rng.integers(1000, 6000)), float(rng.uniform(10, 400)))
              for _ in range(30)]
    for width, height, med_h in cases:
        boxes = np.array([[0.0, 0.0, 10.0, med_h]] * 3)
        s = shelf_lines_scale(boxes, width, height)
        if s is None:
            continue
        pw, ph = max(1, round(width * s)), max(1, round(height * s))
        got = _shelf_photo(np.zeros((ph, pw), np.float32), boxes, width, height)
        assert got is not None and got[0].shape == (ph, pw), (width, height, med_h)


def test_shelf_lines_are_not_said_read_when_regions_hold_every_box() -> None:
    import shapely

    from densedet_tile.audit.regions import Region

    boxes = _boxes(7)
    pic = _picture(7, 150.0)
    whole = [Region("all", shapely.box(0, 0, WIDTH, HEIGHT))]
    assert not run_audit(boxes, WIDTH, HEIGHT, picture=pic, regions=whole).shelf_lines
    assert run_audit(boxes, WIDTH, HEIGHT, picture=pic).shelf_lines
