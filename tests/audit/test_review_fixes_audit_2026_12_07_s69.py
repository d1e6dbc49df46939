"""Faults found by an outside review of the audit on real photos (2026-12-07, stop 69): each
test fails on the code before it where it says so."""
from __future__ import annotations

import re

import numpy as np

from densedet_tile.audit import run_audit

W, H, GAP_Y = 60.0, 100.0, 30.0


def _shelves(missing: dict[int, list[int]], rows: int = 6, per_row: int = 20) -> np.ndarray:
    """Rows of touching products, 60 x 100 px, shelves 30 px apart, every other row moved 25 px
    right (products do not stand in columns: no clean gutter runs down the bay); ``missing[r]``
    the product slots left empty in row r."""
    out = []
    for r in range(rows):
        y1, x0 = 20 + r * (H + GAP_Y), 20 + 25 * (r % 2)
        for k in range(per_row):
            if k not in missing.get(r, []):
                out.append([x0 + k * W, y1, x0 + (k + 1) * W - 1, y1 + H])
    return np.array(out, float)


def _lined(res) -> list[str]:
    return [m for m in res.warnings if "gaps line up" in m]


def test_gaps_lined_up_over_most_rows_of_a_bay_are_named():
    # slot 10 (x 620-680, or 645-705) empty on 4 of 6 shelves: on a real photo such a column was the post of
    # an upright the audit had not cut, and its gaps were reported as empty shelf, 9 of the 10
    # that "look empty" (before: not a word)
    a = _shelves({0: [10], 1: [10], 3: [10], 4: [10]})
    res = run_audit(a, 1400, 820)
    assert len(res.parts) == 1 and len(res.parts[0].layout.rows) == 6
    assert sum(g.kind == "interior" for g in res.parts[0].gaps) == 4
    (msg,) = _lined(res)
    lo, hi = (float(v) for v in re.search(r"at x (\d+)-(\d+) \(4 rows\)", msg).groups())
    assert 640 <= lo <= 650 and 675 <= hi <= 685
    assert "4 or more of its 6 rows" in msg


def test_gaps_scattered_over_the_rows_are_not_named():
    # as many gaps, each at its own column: nothing lines up
    a = _shelves({0: [3], 1: [7], 3: [10], 4: [14]})
    res = run_audit(a, 1400, 820)
    assert sum(g.kind == "interior" for p in res.parts for g in p.gaps) == 4
    assert _lined(res) == []
    # nor two rows' gaps in one column of six rows (under the share the warning asks for)
    assert _lined(run_audit(_shelves({0: [10], 4: [10], 2: [3], 5: [15]}), 1400, 820)) == []


def _picture(a: np.ndarray, width: int, height: int, *, fill: str) -> np.ndarray:
    """A flat back panel, the products' print on it (noise) and a shelf lip under each row
    (a bright edge over a dark shadow, across the whole width); in the empty slots of x 620-705:
    ``fill`` "post" a dark flat post at x 645-680 from top to bottom, in front of the lips, or
    "print" products the detector missed."""
    rng = np.random.default_rng(0)
    img = np.full((height, width), 120.0)
    for r in range(6):
        lip = int(20 + r * (H + GAP_Y) + H)
        img[lip + 4:lip + 10] = 240.0
        img[lip + 10:lip + 16] = 20.0
    for x0, y0, x1, y1 in a.astype(int):
        img[y0:y1, x0:x1] = rng.uniform(0, 255, (y1 - y0, x1 - x0))
    if fill == "post":
        img[:, 645:680] = 30.0
    elif fill == "print":
        band = img[:, 620:705]
        img[:, 620:705] = np.where(band == 120.0, rng.uniform(0, 255, band.shape), band)
    return img.astype(np.uint8)


def test_a_column_of_gaps_flat_in_the_photo_is_an_upright_and_cuts_the_bay():
    # two sections at one shelf height, the post between them boxed around on two shelves (no
    # clean gutter in the boxes): rows ran across it, with a gap at the post in the other four,
    # and the look in the pixels took the post for empty shelf (a real photo: before, 0 of its
    # 18 human rows found, 8 gaps across two human bays)
    a = _shelves({0: [10], 1: [10], 3: [10], 4: [10]})
    res = run_audit(a, 1400, 820, picture=_picture(a, 1400, 820, fill="post"))
    assert [(p.edges, len(p.layout.rows), len(p.gaps)) for p in res.parts] == [
        (("image edge", "upright"), 6, 0), (("upright", "end"), 6, 0)]
    left, right = res.parts
    assert a[left.index, 2].max() <= 700 and a[right.index, 0].min() >= 620
    assert len(left.index) + len(right.index) == len(a)
    assert _lined(res) == []
    # the cut is said, with what it may hide (a column of empty shelf looks alike)
    (note,) = [m for m in res.warnings if "cut along" in m]
    assert note.startswith("bay 1 to bay 2: cut along an upright (x 66")
    assert "gaps of 4 of the 6 rows found before" in note and "its gaps are not reported" in note
    # without the photo, nothing cuts: the column is named instead
    plain = run_audit(a, 1400, 820)
    assert len(plain.parts) == 1 and len(_lined(plain)) == 1


def test_a_column_of_gaps_where_the_photo_shows_products_is_not_cut():
    # the same boxes, the photo showing print in the column (products missed): not a post; the
    # bay stays whole, its four gaps reported, and the warning names the column
    a = _shelves({0: [10], 1: [10], 3: [10], 4: [10]})
    res = run_audit(a, 1400, 820, picture=_picture(a, 1400, 820, fill="print"))
    assert len(res.parts) == 1 and len(res.parts[0].gaps) == 4
    assert len(_lined(res)) == 1


def _leaning(posts: list[tuple[float, float]], gap_rows: tuple[int, ...], rows: int = 10,
             width: int = 2000, height: int = 1340) -> tuple[np.ndarray, np.ndarray]:
    """Shelves of 60 x 100 px products, each post ``(x at y 0, lean dx/dy)`` a flat dark strip
    leaning with the camera, hidden behind a product-wide gap on the shelves ``gap_rows`` (on
    the others boxes run across it); the photo with print, shelf lips and the posts."""
    out = []

    def fill(x0: float, x1: float, y: float) -> None:
        n = max(1, int(round((x1 - x0) / 60)))
        out.extend([x0 + k * (x1 - x0) / n, y, x0 + (k + 1) * (x1 - x0) / n - 1, y + H] for k in range(n))

    for r in range(rows):
        y, x = 20 + r * (H + GAP_Y), 20.0
        for c, k in posts:
            if r in gap_rows:
                at = c + k * (y + H / 2)
                fill(x, at, y)
                x = at + 60
        fill(x, width - 20, y)
    a = np.array(out)
    rng = np.random.default_rng(1)
    img = np.full((height, width), 120.0)
    for r in range(rows):
        lip = int(20 + r * (H + GAP_Y) + H)
        img[lip + 4:lip + 10] = 240.0
        img[lip + 10:lip + 16] = 20.0
    for x0, y0, x1, y1 in a.astype(int):
        img[y0:y1, x0:x1] = rng.uniform(0, 255, (y1 - y0, x1 - x0))
    for c, k in posts:
        for y in range(height):
            x = int(c + k * y) + 12
            img[y, x:x + 35] = 30.0
    return a, img.astype(np.uint8)


def test_two_posts_leaning_apart_cut_three_bays_without_a_fold():
    # two posts leaning opposite ways (a camera tilted): the bands between their lines were drawn
    # out to ten times the image's size, crossed there, and the audit failed with a GEOS
    # TopologyException (a diff review)
    import shapely

    a, img = _leaning([(600, 0.06), (1300, -0.06)], (0, 1, 2, 3, 5, 6, 7, 8, 9))
    res = run_audit(a, 2000, 1340, picture=img)
    assert [p.edges for p in res.parts] == [("image edge", "upright"), ("upright", "upright"),
                                            ("upright", "image edge")]
    assert all(len(p.layout.rows) == 10 for p in res.parts)
    assert sum(len(p.index) for p in res.parts) == len(a)
    for p in res.parts:
        assert p.strip is not None and shapely.is_valid(p.strip) and p.strip.area > 0


def test_one_leaning_post_is_one_cut_and_one_column():
    # the gaps at a leaning post shift from shelf to shelf: the rows over one x went up and down
    # past the share, the post was cut five times and slivers of one box each were bays (a diff
    # review); its columns in the warning were five too
    a, img = _leaning([(600, 0.08)], tuple(range(10)))
    res = run_audit(a, 2000, 1340, picture=img)
    assert [p.edges for p in res.parts] == [("image edge", "upright"), ("upright", "image edge")]
    assert all(len(p.layout.rows) == 10 for p in res.parts)
    (note,) = [m for m in res.warnings if "cut along" in m]
    assert "cut along an upright (x " in note
    (named,) = _lined(run_audit(a, 2000, 1340))
    assert named.count(" rows)") == 1


def test_a_leaning_posts_line_follows_its_gaps():
    # the line was fitted through the gaps' parts within the column where most of them overlap,
    # which for a post leaning 0.08 all lay near one x: fitted upright, 20 px off at mid-height,
    # a product beyond the post went to the near side and two of the post's gaps stayed, looking
    # empty (a second diff review). Through the gaps' own middles: x = 930 + 0.08 y
    a, img = _leaning([(900, 0.08)], (0, 1, 2, 4, 5, 6, 7, 8, 9))
    res = run_audit(a, 2000, 1340, picture=img)
    assert [p.edges for p in res.parts] == [("image edge", "upright"), ("upright", "image edge")]
    assert [len(p.gaps) for p in res.parts] == [0, 0]
    (note,) = [m for m in res.warnings if "cut along" in m]
    x = float(re.search(r"cut along an upright \(x (\d+)\)", note).group(1))
    assert abs(x - (930 + 0.08 * 655)) <= 10
    post = 930 + 0.08 * (a[:, 1] + a[:, 3]) / 2  # each box's side of the true line
    left = (a[:, 0] + a[:, 2]) / 2 < post
    assert set(np.flatnonzero(left)) == set(res.parts[0].index.tolist())
