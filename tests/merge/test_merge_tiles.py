"""merge_tiles on seam cases built by hand: painted products, the real grid, PaintedDetector."""

from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.errors import InvalidInputError
from densedet_tile.merge import merge_tiles, pair_iou, to_global
from densedet_tile.synth.painted_aisles import PaintedDetector, encode_ids, make_painted_aisle, seam_report
from densedet_tile.tiler.grid import make_grid
from densedet_tile.types import Detections, MergeSpec, Tile, TileSpec

# Tiles of 200 px overlapping by 60 px: origins 0, 140, 280, ...; seam strips [140, 200], ...
SPEC = TileSpec(200, 0.3)


def paint(width: int, height: int, boxes: list[list[int]]) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        img[y1:y2, x1:x2] = encode_ids(np.array(k))
    return img


def run(width: int, height: int, boxes: list[list[int]], *, jitter: float = 0.0, seed: int = 0, mode: str = "wbf"):  # noqa: ANN201
    img = paint(width, height, boxes)
    tiles = make_grid(width, height, SPEC)
    dets = PaintedDetector(jitter=jitter, seed=seed).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
    return tiles, dets, merge_tiles(tiles, dets, MergeSpec(mode=mode))


def assert_one_box_each(out: Detections, boxes: list[list[int]], min_iou: float) -> None:
    gt = np.array(boxes, float)
    assert len(out) == len(gt), f"expected {len(gt)} boxes, got {len(out)}: {out.xyxy}"
    both = np.concatenate([gt, out.xyxy.astype(float)])
    n = len(gt)
    for k in range(n):
        ious = pair_iou(both, np.full(len(out), k), n + np.arange(len(out)))
        assert ious.max() >= min_iou, f"product {boxes[k]} best IoU {ious.max():.3f}"
        assert np.sum(ious > 0.1) == 1, f"product {boxes[k]} overlapped by {np.sum(ious > 0.1)} boxes"


CASES = {
    # name: (width, height, products)
    "vertical seam": (340, 200, [[170, 50, 215, 90]]),
    "horizontal seam": (200, 340, [[50, 170, 90, 215]]),
    "four-tile corner": (340, 340, [[170, 170, 215, 215]]),
    "larger than overlap, cut in every tile": (340, 340, [[100, 100, 260, 260]]),
    "larger than overlap, one seam": (340, 200, [[20, 50, 330, 120]]),
    "larger than a tile, three tiles": (480, 200, [[30, 40, 450, 100]]),
    "neighbours touching across a vertical seam": (340, 200, [[120, 50, 170, 120], [170, 50, 230, 120]]),
    "neighbours touching across a horizontal seam": (200, 340, [[40, 120, 90, 170], [40, 170, 90, 230]]),
    "large neighbours touching across a seam": (340, 340, [[60, 20, 170, 330], [170, 20, 300, 330]]),
    "packed row crossing two seams": (480, 200, [[x, 30, x + 35, 150] for x in range(5, 440, 35)]),
    "product barely across a seam": (200, 340, [[50, 135, 90, 148], [100, 195, 140, 205]]),
    "sliver at the tile edge": (340, 200, [[198, 60, 240, 100], [140, 110, 142, 150]]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_seam_case_exact(name: str) -> None:
    w, h, boxes = CASES[name]
    _, dets, out = run(w, h, boxes)
    assert sum(len(d) for d in dets) > len(boxes)  # the case really involves several views
    assert_one_box_each(out, boxes, 0.999)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", range(4))
def test_seam_case_with_jitter(name: str, seed: int) -> None:
    w, h, boxes = CASES[name]
    _, _, out = run(w, h, boxes, jitter=1.0, seed=seed)
    # 1 px of noise on each side of a 2 px sliver leaves little IoU; the rest must be tight.
    sliver = any(min(b[2] - b[0], b[3] - b[1]) < 5 for b in boxes)
    assert_one_box_each(out, boxes, 0.2 if sliver else 0.85)


# Products smaller than the seam tolerance (16 px) side by side: before the tolerance was capped
# at half the larger box, neighbours agreed "within 16 px", so a row of thin products cut by a
# seam was joined into one long box and a small product beside a cut one was dropped as its
# truncated view.
SMALL_CASES = {
    "thin products cut in both tiles of a horizontal seam": (200, 340, [[x, 120, x + 10, 230] for x in range(50, 120, 13)]),
    "flat products cut in both tiles of a vertical seam": (340, 200, [[120, y, 230, y + 9] for y in range(40, 140, 12)]),
}


@pytest.mark.parametrize("name", list(SMALL_CASES))
def test_products_smaller_than_the_tolerance_stay_apart(name: str) -> None:
    w, h, boxes = SMALL_CASES[name]
    _, dets, out = run(w, h, boxes)
    assert sum(len(d) for d in dets) > len(boxes)
    assert_one_box_each(out, boxes, 0.999)
    for seed in range(4):
        _, _, out = run(w, h, boxes, jitter=0.5, seed=seed)
        assert_one_box_each(out, boxes, 0.6)


def test_a_small_neighbour_is_not_taken_for_the_fuller_view() -> None:
    # Two tiles overlapping by 26 px; three 10 px products seen exactly, each whole in some tile.
    # In tile a the middle one lies 14 px from the interior edge (flagged cut within edge_tol),
    # in tile b 2 px; the neighbours 13 px away "agreed" within 16 px and dropped it.
    a = Tile(0, 0, 256, 100, interior_right=True)
    b = Tile(230, 0, 256, 100, interior_left=True, index=1)
    truth = np.array([[219, 40, 229, 50], [232, 40, 242, 50], [245, 40, 255, 51]], np.float32)
    da = Detections(truth, np.full(3, 0.9, np.float32))
    db = Detections(truth[1:] - np.array([230, 0, 230, 0], np.float32), np.full(2, 0.8, np.float32))
    out = merge_tiles([a, b], [da, db], MergeSpec())
    assert_one_box_each(out, truth.tolist(), 0.999)


def test_nms_mode_also_repairs_seams_and_none_only_concatenates() -> None:
    w, h, boxes = CASES["larger than overlap, cut in every tile"]
    tiles, dets, out = run(w, h, boxes, mode="nms")
    assert_one_box_each(out, boxes, 0.999)
    _, _, raw = run(w, h, boxes, mode="none")
    assert len(raw) == sum(len(d) for d in dets) == 4
    # "none" only shifts: every raw box equals its tile-local box plus the tile origin.
    want = np.concatenate([d.xyxy + np.array([t.x, t.y, t.x, t.y], np.float32) for t, d in zip(tiles, dets)])
    np.testing.assert_array_equal(raw.xyxy, want)


@pytest.mark.parametrize("seed", range(6))
def test_random_small_aisles(seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(500, 900)), int(rng.integers(300, 500))
    img, gt = make_painted_aisle(
        w, h, n_products=int(rng.integers(20, 40)), seed=seed, small_size=(12, 55), large_size=(70, 150), large_fraction=0.2
    )
    spec = TileSpec(160, 0.3)
    tiles = make_grid(w, h, spec)
    dets = PaintedDetector(jitter=1.0, seed=seed).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
    out = merge_tiles(tiles, dets, MergeSpec())
    r = seam_report(out, gt, large_side=spec.overlap_px)
    assert r["duplicates"] == r["fragments"] == r["merged"] == r["false_positives"] == 0, r
    assert r["n_pred"] == r["n_gt"]
    # 1 px of noise per side on a 12 px product caps its IoU near 0.72.
    ious = pair_iou(np.concatenate([gt.xyxy, out.xyxy]), *_matches(gt, out))
    assert ious.min() >= 0.7


def _matches(gt: Detections, out: Detections) -> tuple[np.ndarray, np.ndarray]:
    c_gt = (gt.xyxy[:, :2] + gt.xyxy[:, 2:]) / 2
    c_out = (out.xyxy[:, :2] + out.xyxy[:, 2:]) / 2
    j = np.array([np.argmin(((c_out - c) ** 2).sum(1)) for c in c_gt])
    return np.arange(len(gt)), len(gt) + j


def test_a_fragment_is_dropped_for_a_fuller_view_of_any_label() -> None:
    # A tile-0 fragment of class 1 inside a tile-1 box of class 0 is a view of that product
    # (a classifier of many classes errs most on a cut product): dropped in both modes, the
    # fuller view keeps its own label; counting it again would count the product twice
    tiles = make_grid(340, 200, SPEC)
    d0 = Detections(np.array([[170, 50, 200, 90]], np.float32), np.array([0.6], np.float32), np.array([1]))
    d1 = Detections(np.array([[30, 50, 75, 90]], np.float32), np.array([0.9], np.float32), np.array([0]))
    for agnostic in (False, True):
        out = merge_tiles(tiles, [d0, d1], MergeSpec(class_agnostic=agnostic))
        assert out.labels.tolist() == [0]
        np.testing.assert_allclose(out.xyxy[0], [170, 50, 215, 90])


def test_fragments_of_two_labels_are_joined_only_class_agnostic() -> None:
    # the two halves of a box cut by the seam, one on each side: joined into one box only when
    # their labels agree or the merge is class-agnostic (two products of two classes meeting
    # at the seam stay two)
    tiles = make_grid(340, 200, SPEC)  # origins 0 and 140: the overlap is 140-200
    d0 = Detections(np.array([[100, 50, 200, 90]], np.float32), np.array([0.8], np.float32), np.array([2]))
    d1 = Detections(np.array([[0, 50, 120, 90]], np.float32), np.array([0.7], np.float32), np.array([5]))
    assert sorted(merge_tiles(tiles, [d0, d1], MergeSpec()).labels.tolist()) == [2, 5]
    out = merge_tiles(tiles, [d0, d1], MergeSpec(class_agnostic=True))
    assert out.labels.tolist() == [2] and len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [100, 50, 260, 90])
    same = Detections(d1.xyxy, d1.scores, np.array([2]))
    assert len(merge_tiles(tiles, [d0, same], MergeSpec())) == 1


def test_class_agnostic_fusion_keeps_the_best_label() -> None:
    # two whole views of one product from two tiles (neither cut), labelled 3 and 7: fused into
    # one only class-agnostic; per class both stay (fusion and NMS keep classes apart)
    tiles = make_grid(340, 200, SPEC)
    d0 = Detections(np.array([[160, 50, 180, 90]], np.float32), np.array([0.6], np.float32), np.array([3]))
    d1 = Detections(np.array([[21, 51, 41, 91]], np.float32), np.array([0.9], np.float32), np.array([7]))
    out = merge_tiles(tiles, [d0, d1], MergeSpec(class_agnostic=True))
    assert out.labels.tolist() == [7] and len(out) == 1
    out = merge_tiles(tiles, [d0, d1], MergeSpec())
    assert sorted(out.labels.tolist()) == [3, 7]


def test_to_global_clips_shifts_and_flags_cut_sides() -> None:
    tiles = make_grid(340, 340, SPEC)  # 2 x 2 tiles, origins 0 and 140
    dets = [Detections(np.array([[-5, 10, 60, 199]], np.float32), np.array([0.5], np.float32)) for _ in tiles]
    xyxy, scores, labels, groups, cut = to_global(tiles, dets, edge_tol=2.0)
    np.testing.assert_array_equal(xyxy[0], [0, 10, 60, 199])
    np.testing.assert_array_equal(xyxy[3], [140, 150, 200, 339])
    assert groups.tolist() == [0, 1, 2, 3]
    # Left side touches x=0: interior only for the right-hand tiles; bottom (199 of 200) is
    # within 2 px of the edge, interior only for the top tiles.
    assert cut.tolist() == [
        [False, False, False, True],
        [True, False, False, True],
        [False, False, False, False],
        [True, False, False, False],
    ]


def test_empty_and_mismatched_input() -> None:
    tiles = make_grid(340, 200, SPEC)
    out = merge_tiles(tiles, [Detections.empty(), Detections.empty()], MergeSpec())
    assert len(out) == 0 and out.xyxy.shape == (0, 4)
    assert len(merge_tiles([], [], MergeSpec())) == 0
    with pytest.raises(InvalidInputError, match="2 tiles but 1"):
        merge_tiles(tiles, [Detections.empty()], MergeSpec())
    with pytest.raises(InvalidInputError, match="MergeSpec"):
        merge_tiles(tiles, [Detections.empty()] * 2, "wbf")  # type: ignore[arg-type]


def test_a_box_seen_by_one_tile_keeps_its_score() -> None:
    tiles = [Tile(0, 0, 100, 100, interior_right=True), Tile(60, 0, 100, 100, interior_left=True, index=1)]
    d0 = Detections(np.array([[10, 10, 30, 30]], np.float32), np.array([0.37], np.float32))
    out = merge_tiles(tiles, [d0, Detections.empty()], MergeSpec())
    assert out.scores.tolist() == [np.float32(0.37)]


def test_merge_spec_validation() -> None:
    for bad in (dict(mode="avg"), dict(fuse_iou=0.0), dict(nms_iou=1.5), dict(edge_tol=-1.0),
                dict(seam_tol=True), dict(seam_tol_frac=1.0), dict(class_agnostic=1)):
        with pytest.raises(InvalidInputError, match="merge mode|MergeSpec"):
            MergeSpec(**bad)


def test_two_nearly_whole_views_keep_the_larger() -> None:
    # g is cut on its right, f on its top; each reaches a little past the other's cut, so each
    # qualifies as a truncated view of the other: exactly one (the larger, g) must survive.
    t0 = Tile(0, 0, 100, 100, interior_right=True)
    t1 = Tile(3, 65, 100, 100, interior_top=True, index=1)
    g = Detections(np.array([[50, 62, 100, 90]], np.float32), np.array([0.8], np.float32))
    f = Detections(np.array([[47, 0, 100, 25]], np.float32), np.array([0.9], np.float32))  # global 50,65,103,90
    for mode in ("nms", "wbf"):
        out = merge_tiles([t0, t1], [g, f], MergeSpec(mode=mode, fuse_iou=0.99))
        assert len(out) == 1
        np.testing.assert_array_equal(out.xyxy[0], [50, 62, 100, 90])


@pytest.mark.parametrize("mode", ["wbf", "nms"])
def test_four_views_of_one_product_in_a_corner_leave_one_box(mode: str) -> None:
    # a product in the corner where four tiles overlap, its sides near every interior edge: each
    # view is flagged cut and reaches a fraction of a pixel past the next one's cut side, so
    # each was dropped as a truncated view of another, round the ring, and the product vanished
    tiles = make_grid(1800, 1800, TileSpec(1000, 0.2))
    views = {(0, 0): [811.437, 807.5, 996.12, 993.121], (800, 0): [811.48, 807.057, 995.461, 993.282],
             (0, 800): [810.781, 807.139, 996.565, 991.467], (800, 800): [811.388, 807.892, 995.455, 992.887]}
    dets = [Detections((np.array(views[(t.x, t.y)]) - [t.x, t.y, t.x, t.y])[None].astype(np.float32),
                       np.array([0.9], np.float32)) for t in tiles]
    for adaptive in (True, False):
        out = merge_tiles(tiles, dets, MergeSpec(mode=mode, adaptive_tol=adaptive))
        assert len(out) == 1
        assert pair_iou(np.concatenate([out.xyxy, [[811, 807, 996, 992]]]), np.array([0]), np.array([1]))[0] > 0.98


@pytest.mark.parametrize("mode", ["wbf", "nms"])
def test_a_chain_of_drops_without_a_cycle_still_drops_every_view_but_one(mode: str) -> None:
    # four noisy views of one 13x9 px product (a painted detector's, 3 px noise): tile 35's view
    # drops 36's, and 36's drops 25's although 25's is larger; with no cycle every such drop
    # stands (a first guard against cycles kept 25's view beside the product's box)
    views = {24: [66.508, 114.612, 74.681, 117.616], 25: [2.156, 113.629, 11.986, 119.836],
             35: [65.994, 77.389, 74.258, 87.074], 36: [1.185, 78.330, 7.120, 87.047]}
    scores = {24: 0.6586, 25: 0.6586, 35: 0.9409, 36: 0.6586}
    tiles = make_grid(792, 291, TileSpec(120, 52 / 120))
    dets = [Detections(np.array([views[t.index]], np.float32), np.array([scores[t.index]], np.float32))
            if t.index in views else Detections.empty() for t in tiles]
    out = merge_tiles(tiles, dets, MergeSpec(mode=mode))
    assert len(out) == 1
    np.testing.assert_allclose(out.xyxy[0], [202.0, 248.4, 210.3, 258.1], atol=0.05)


def test_a_narrow_product_beside_larger_ones_is_kept_over_the_overlap_the_engine_asks_for() -> None:
    # a product narrower than seam_tol between two larger ones agrees with each; where the overlap
    # lets it be flagged cut in both tiles (within edge_tol of either edge) both its views were
    # dropped for its neighbours: the engine warns under MergeSpec.seam_overlap_px
    # (tests/test_pipeline.py) and from it on no such product is lost, whatever its width, gap
    # and place in the strip
    least = int(MergeSpec().seam_overlap_px)
    tiles = make_grid(760, 200, TileSpec(400, least / 400))
    assert tiles[1].x == 400 - least
    for big in (27, 60):
        for w in range(4, 24, 2):
            for gap in (0, 2, 4):
                for off in range(0, least - w + 1, 3):
                    x0 = 400 - least + off
                    boxes = [[x0 - gap - big, 100, x0 - gap, 131], [x0, 104, x0 + w, 131],
                             [x0 + w + gap, 96, x0 + w + gap + big, 131]]
                    img = paint(760, 200, boxes)
                    dets = PaintedDetector(jitter=0.0).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
                    assert_one_box_each(merge_tiles(tiles, dets, MergeSpec()), boxes, 0.999)


@pytest.mark.parametrize("seed", range(3))
def test_near_seam_shortcut_changes_nothing(seed: int) -> None:
    from densedet_tile.merge import repair_seams
    from densedet_tile.merge.core import _near_lines, _tile_geo

    img, _ = make_painted_aisle(3000, 1200, n_products=50, seed=seed, small_size=(20, 120), large_size=(150, 300))
    tiles = make_grid(3000, 1200, TileSpec(500, 0.2))
    dets = PaintedDetector(jitter=1.5, seed=seed).predict([img[t.y : t.y2, t.x : t.x2] for t in tiles])
    spec = MergeSpec()
    xyxy, scores, labels, groups, cut = to_global(tiles, dets, edge_tol=spec.edge_tol)
    kw = dict(tol_px=spec.seam_tol, tol_frac=spec.seam_tol_frac)
    near = _near_lines(_tile_geo(tiles), xyxy, spec.seam_tol + spec.edge_tol)
    assert 0 < near.sum() < len(near)
    full = repair_seams(xyxy, scores, labels, groups, cut, **kw)
    fast = repair_seams(xyxy, scores, labels, groups, cut, near_seam=near, **kw)
    assert full.dropped.any() and np.array_equal(full.keep, fast.keep)
    np.testing.assert_array_equal(full.joined_xyxy, fast.joined_xyxy)


def test_boxes_one_tile_kept_side_by_side_survive_the_global_nms() -> None:
    # A detector kept two overlapping products (IoU ~0.6, e.g. one partly behind the other)
    # inside one tile; the merge must not second-guess its own NMS. The same pair seen again by
    # the neighbouring tile is a cross-tile duplicate and goes.
    from densedet_tile import Detections, MergeSpec, TileSpec
    from densedet_tile.merge import merge_tiles
    from densedet_tile.tiler import make_grid

    tiles = make_grid(1000, 400, TileSpec(tile=400, overlap=0.25))  # x starts 0, 300, 600
    pair = np.array([[310.0, 50.0, 370.0, 150.0], [325.0, 50.0, 385.0, 150.0]])
    iou = (45 * 100) / (2 * 60 * 100 - 45 * 100)
    assert 0.55 < iou < 0.7
    dets = []
    for t in tiles:
        local = pair - [t.x, t.y, t.x, t.y]
        inside = (local[:, 0] >= 0) & (local[:, 2] <= t.w)
        dets.append(Detections(local[inside], [0.9, 0.8][: int(inside.sum())], np.zeros(int(inside.sum()))))
    for mode in ("nms", "wbf"):
        out = merge_tiles(tiles, dets, MergeSpec(mode=mode, nms_iou=0.5))
        assert len(out) == 2, mode
        np.testing.assert_allclose(np.sort(out.xyxy[:, 0]), [310.0, 325.0], atol=1e-4)


def test_merge_inputs_of_the_wrong_kind_are_one_line_errors():
    from densedet_tile import InvalidInputError

    t = Tile(0, 0, 10, 10)
    d = Detections([[1, 1, 5, 5]], [0.9])
    with pytest.raises(InvalidInputError, match=r"detections\[0\] is a NoneType, not a Detections"):
        merge_tiles([t], [None])
    with pytest.raises(InvalidInputError, match=r"tiles\[0\] is a tuple, not a Tile"):
        merge_tiles([(0, 0, 10, 10)], [d])
    assert len(merge_tiles((x for x in [t]), (x for x in [d]))) == 1  # any iterable will do
    with pytest.raises(InvalidInputError, match="part 1 is a str"):
        Detections.concat([d, "x"])
    for bad in ((0, 0, -10, 10), (-1, 0, 10, 10), ("0", 0, 10, 10)):
        with pytest.raises(InvalidInputError, match="Tile"):
            Tile(*bad)


def test_the_unconfirmed_rule_does_not_depend_on_other_boxes_in_the_image() -> None:
    # A view cut by tile a's right edge, lying wholly inside tile b, which reported nothing there:
    # dropped, whether it is the only box of the image or not (it survived alone before).
    a = Tile(0, 0, 256, 100, interior_right=True)
    b = Tile(200, 0, 256, 100, interior_left=True, index=1)
    cut = Detections(np.array([[230, 40, 256, 60]], np.float32), np.array([0.9], np.float32))
    far = Detections(np.array([[300, 40, 330, 60]], np.float32) - np.array([200, 0, 200, 0], np.float32),
                     np.array([0.9], np.float32))
    assert len(merge_tiles([a, b], [cut, Detections.empty()], MergeSpec())) == 0
    out = merge_tiles([a, b], [cut, far], MergeSpec())
    assert out.xyxy.tolist() == [[300, 40, 330, 60]]
    assert len(merge_tiles([a, b], [cut, Detections.empty()], MergeSpec(confirm=False))) == 1


def test_a_small_product_seen_whole_near_the_edge_survives_the_other_tiles_miss() -> None:
    # A 30 px product standing 10 px from tile a's right edge lies in the overlap, whole in both
    # tiles; tile b misses it. Within the 16 px band its side counts as cut, but 10 px is a
    # third of its width: it was seen whole, and b's silence is b's miss, not a border artefact
    # of a (it was dropped, so an overlap lost small products at twice the miss rate).
    a = Tile(0, 0, 256, 100, interior_right=True)
    b = Tile(200, 0, 256, 100, interior_left=True, index=1)
    near = Detections(np.array([[216, 40, 246, 70]], np.float32), np.array([0.9], np.float32))
    assert merge_tiles([a, b], [near, Detections.empty()], MergeSpec()).xyxy.tolist() == [[216, 40, 246, 70]]
    # the same product reaching to within 3 px of the edge (a tenth of its width) may be a view
    # of something beyond it: b saw that place whole and reported nothing, so it goes
    edge = Detections(np.array([[223, 40, 253, 70]], np.float32), np.array([0.9], np.float32))
    assert len(merge_tiles([a, b], [edge, Detections.empty()], MergeSpec())) == 0
    # a box 40 px wide stopping 5 px short of the edge (an eighth of its width) too
    big = Detections(np.array([[211, 10, 251, 95]], np.float32), np.array([0.9], np.float32))
    assert len(merge_tiles([a, b], [big, Detections.empty()], MergeSpec())) == 0
    assert len(merge_tiles([a, b], [big, Detections.empty()], MergeSpec(confirm=False))) == 1


@pytest.mark.parametrize("overlap", [64, 128])
def test_big_neighbours_meeting_inside_an_overlap_the_warning_calls_safe_stay_two(overlap) -> None:
    # two products about 1000 px wide touching inside the overlap: the band of cut sides grows
    # with a box's size (edge_frac), but never past half the overlap less the side tolerance,
    # or both boxes look cut there and are joined into one (at 64 px, over the 49 px the engine
    # warns under)
    from densedet_tile.tiler.grid import Tile

    assert overlap > MergeSpec().seam_overlap_px
    a = Tile(0, 0, 1280, 900, interior_right=True)
    b = Tile(1280 - overlap, 0, 1280, 900, interior_left=True, index=1)
    meet = 1280 - overlap // 2  # the middle of the overlap
    da = Detections(np.array([[230, 100, meet + 1, 800], [meet, 100, 1280, 800]], np.float32), np.array([0.9, 0.6]),
                    np.zeros(2, np.int64))
    db = Detections(np.array([[0, 100, meet - b.x, 800], [meet - b.x - 1, 101, 2260 - b.x, 799]], np.float32),
                    np.array([0.6, 0.9]), np.zeros(2, np.int64))
    for spec in (MergeSpec(), MergeSpec(adaptive_tol=False), MergeSpec(mode="nms")):
        out = merge_tiles([a, b], [da, db], spec)
        assert len(out) == 2, (spec, out.xyxy.tolist())
        assert out.xyxy[:, 0].min() == 230 and out.xyxy[:, 2].max() == 2260


def test_side_overlaps_of_a_grid() -> None:
    from densedet_tile.merge.core import _side_overlaps, _tile_geo

    tiles = make_grid(340, 340, SPEC)  # 2 x 2 tiles of 200 px at origins 0 and 140: 60 px overlaps
    ov = _side_overlaps(_tile_geo(tiles))
    want = {(0, 0): [0, 0, 60, 60], (140, 0): [60, 0, 0, 60], (0, 140): [0, 60, 60, 0], (140, 140): [60, 60, 0, 0]}
    assert {(t.x, t.y): row.tolist() for t, row in zip(tiles, ov)} == want


def test_a_tall_products_views_stopping_short_of_the_seam_are_joined() -> None:
    # Views of a product 1400 px tall cut by the seam of two tiles stop 25-30 px (3-4 % of the
    # part seen) short of the tile edges, as a real detector's do: within twice the noise the
    # merge assumes (the prior, 3.3 %), not within once, which left the product as two halves.
    a = Tile(0, 0, 300, 1000, interior_bottom=True)
    b = Tile(0, 800, 300, 1000, interior_top=True, index=1)
    da = Detections(np.array([[50, 100, 150, 970]], np.float32), np.array([0.9], np.float32))
    db = Detections(np.array([[51, 25, 149, 700]], np.float32), np.array([0.8], np.float32))
    out = merge_tiles([a, b], [da, db], MergeSpec())
    assert out.xyxy.tolist() == [[50, 100, 150, 1500]]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of (N, 4) and (M, 4) boxes."""
    b = np.asarray(b, np.float64)
    lt, rb = np.maximum(a[:, None, :2], b[None, :, :2]), np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def _views(tiles: list[Tile], boxes: list[list[float]], labels: list[int], scores: list[float] | None = None,
           noise: float = 0.0, seed: int = 0) -> list[Detections]:
    """What a detector that sees every object (clipped to the tile, each side off by up to
    ``noise`` px) reports in each tile, in tile pixels."""
    rng = np.random.default_rng(seed)
    b = np.asarray(boxes, np.float64)
    out = []
    for t in tiles:
        c = b - [t.x, t.y, t.x, t.y]
        c[:, [0, 2]] = c[:, [0, 2]].clip(0, t.w)
        c[:, [1, 3]] = c[:, [1, 3]].clip(0, t.h)
        seen = np.flatnonzero((c[:, 2] - c[:, 0] >= 4) & (c[:, 3] - c[:, 1] >= 4))
        c = c[seen] + rng.uniform(-noise, noise, (len(seen), 4))
        c[:, 2:] = np.maximum(c[:, 2:], c[:, :2] + 1)
        s = np.full(len(seen), 0.9) if scores is None else np.asarray(scores, np.float64)[seen]
        out.append(Detections(c.astype(np.float32), s.astype(np.float32), np.asarray(labels, np.int64)[seen]))
    return out


@pytest.mark.parametrize("mode", ["wbf", "nms"])
def test_a_product_inside_a_larger_box_of_another_class_across_the_seam_is_kept(mode: str) -> None:
    # a product whole in two tiles, but within edge_tol of both their edges (so both views count
    # as cut), inside a larger box of another class crossing the seam (its pack): each view lay
    # inside the other tile's view of the larger box and both were dropped (an outside review).
    # (Of one class, a slice of a shelf section looks like the product at its end: not changed)
    tiles = make_grid(1400, 1152, TileSpec(512, 0.25))
    for product, big in (([300, 400, 360, 500], [280, 370, 380, 530]),
                         ([300, 370, 360, 520], [280, 340, 380, 550])):  # taller than the overlap
        out = merge_tiles(tiles, _views(tiles, [product, big], [0, 1]), MergeSpec(mode=mode))
        assert len(out) == 2
        assert _iou(np.array([product, big], np.float64), out.xyxy).max(axis=1).min() > 0.99


def test_products_in_packs_across_seams_are_each_kept_once() -> None:
    # packs of 2 to 4 products (the pack a box of its own class, 4 px beyond its products),
    # row after row, seen with 1 px of noise: every product and every pack once, at tiles
    # whose seams cut through packs everywhere (7 of 423 products were lost this way)
    rng = np.random.default_rng(1)
    prods, packs = [], []
    y = 10
    while y < 1700:
        x, ph = 10, int(rng.integers(60, 140))
        while x < 2600:
            k, pw = int(rng.integers(2, 5)), int(rng.integers(50, 110))
            packs.append([x, y, x + k * pw + 8, y + ph + 8])
            prods += [[x + 4 + i * pw, y + 4, x + 4 + (i + 1) * pw, y + 4 + ph] for i in range(k)]
            x = packs[-1][2] + 6
        y += ph + 20
    tiles = make_grid(3200, 2000, TileSpec(512, 0.2))
    dets = _views(tiles, prods + packs, [0] * len(prods) + [1] * len(packs), noise=1.0)
    out = merge_tiles(tiles, dets, MergeSpec())
    for lab, truth in ((0, prods), (1, packs)):
        mine = out.xyxy[out.labels == lab].astype(np.float64)
        assert len(mine) == len(truth)
        assert _iou(np.array(truth, np.float64), mine).max(axis=1).min() > 0.9


@pytest.mark.parametrize("wider", [True, False])
def test_two_views_cut_by_one_edge_keep_the_better_score(wider: bool) -> None:
    # two tiles of one column share their right edge (x=896), which cuts a product that only
    # they report: a pixel of noise past that edge made the lower-scored view the "fuller" one,
    # kept for the 0.95 one (and at a threshold between the two scores the product was then
    # served and a near miss too; an outside review)
    tiles = [Tile(384, 0, 512, 512, True, False, True, True, 0), Tile(384, 384, 512, 512, True, True, True, False, 1)]
    right = 893.5 if wider else 891.5
    views = [Detections(np.array([[801.8 - 384, 465, right - 384, 496]], np.float32), np.array([0.47], np.float32)),
             Detections(np.array([[802.3 - 384, 82, 892.4 - 384, 112]], np.float32), np.array([0.95], np.float32))]
    out = merge_tiles(tiles, views, MergeSpec(mode="nms"))
    assert len(out) == 1 and out.scores[0] == np.float32(0.95)
    out = merge_tiles(tiles, views, MergeSpec())  # fused, not the 0.47 view alone
    assert len(out) == 1 and out.scores[0] > 0.6


def test_repair_seams_takes_group_ids_that_are_no_tile_indices() -> None:
    # with tile rectangles given, the one-edge rule looked the groups up as tile indices:
    # IndexError for ids past them (a caller's own ids), a wrong tile for negative ones
    from densedet_tile.merge import repair_seams

    xyxy = np.array([[90, 10, 100, 40], [92, 10, 100, 40]], np.float64)
    cut = np.array([[False, False, True, False], [False, False, True, False]])
    rects = np.array([[0, 0, 100, 100], [0, 50, 100, 150]], np.float64)
    for groups in ([0, 1], [5, 9], [-1, 3]):
        rep = repair_seams(xyxy, np.array([0.9, 0.5]), np.zeros(2, np.int64), np.array(groups), cut,
                           tol_px=16, tol_frac=0.1, tile_xyxy=rects)
        assert rep.keep.sum() + rep.dropped.sum() == 2


def test_pile_and_copy_checks_go_class_by_class_with_any_class_keys() -> None:
    from densedet_tile.merge.core import copies_kept, pile_kept

    rng = np.random.default_rng(0)
    base = np.c_[rng.uniform(0, 900, 50), rng.uniform(0, 900, 50)]
    boxes = np.c_[base, base + 40]
    # one object given four classes at one box: no pile, no copies (a detector's per-class NMS)
    four = np.repeat(boxes, 4, axis=0)
    labels = np.tile(np.array([0, "drink", None, 2.5], dtype=object), 50)
    assert pile_kept(four, None, labels=labels) is None and copies_kept(four, None, labels) is None
    # the same boxes twice in one class: half of them are copies
    kept = copies_kept(np.repeat(boxes, 2, axis=0), None, np.zeros(100))
    assert kept is not None and len(kept) == 50
    # NaN labels are one class; a wrong number of labels is refused
    assert len(copies_kept(np.repeat(boxes, 2, axis=0), None, np.full(100, np.nan))) == 50
    with pytest.raises(InvalidInputError, match="100 boxes but 150 labels"):
        copies_kept(np.repeat(boxes, 2, axis=0), None, np.zeros(150))
