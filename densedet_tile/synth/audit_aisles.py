"""Synthetic aisle layouts with known products and planted gaps, for tests and benchmarks.

A layout is a number of shelf rows, each filled left to right with groups of identical
facings (width and height drawn per group) separated by small natural spacings. From each
row some runs of products are removed so that each planted interior gap is at least one
median product width wide (an emptied row end: 2.5 median widths of the products left and
three base widths). The whole layout can be tilted (rotated about the image centre) and the
boxes jittered like a detector's. :func:`render_aisle` paints it as an RGB image for report previews.

Pixel coordinates, ``xyxy`` of the (tilted) image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError

__all__ = ["SyntheticAisle", "synthetic_aisle", "SyntheticBays", "synthetic_bays", "render_aisle", "GapScore",
           "score_gaps"]


@dataclass(frozen=True, eq=False)
class SyntheticAisle:
    """``xyxy`` (N, 4) float64 product boxes and ``row_of`` (N,) their row; ``gaps`` planted
    gaps as (row, x1, x2) along the row's middle line; ``corners`` (N, 4, 2) the tilted outline
    of each product; ``tilt_deg`` the rotation applied; ``shelf_lines`` (rows, 2, 2) each row's
    shelf edge as two (x, y) points."""

    width: int
    height: int
    xyxy: np.ndarray
    row_of: np.ndarray
    corners: np.ndarray
    gaps: tuple[tuple[int, float, float], ...]
    tilt_deg: float
    shelf_lines: np.ndarray
    colors: np.ndarray


def _rotate(pts: np.ndarray, deg: float, cx: float, cy: float) -> np.ndarray:
    t = np.radians(deg)
    c, s = np.cos(t), np.sin(t)
    x, y = pts[..., 0] - cx, pts[..., 1] - cy
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=-1)


@dataclass
class _Row:
    """The products of one filled row (flat shelf frame): boxes [x1, y1, x2, y2], their colours
    and the planted gaps (x1, x2)."""

    boxes: list[list[float]]
    colors: list[tuple[int, int, int]]
    gaps: list[tuple[float, float]]


def _fill_row(
    rng: np.random.Generator,
    x_left: float,
    x_right: float,
    bottom: float,
    row_height: float,
    base_width: float,
    *,
    spacing: float,
    stack_prob: float,
    gaps_per_row: int,
    end_gap: bool,
    color_seed: int,
    end_margin: float = 0.2,
) -> _Row:
    """Fill one shelf from ``x_left`` to ``x_right`` standing on ``bottom`` (see module doc) and
    remove runs of products for the planted gaps. The first product starts, and the last ends,
    up to ``end_margin`` base widths inside the shelf's ends."""
    items: list[tuple[float, float, float, float, int]] = []  # x1, x2, h, stacked, group
    cur = x_left + rng.uniform(0, end_margin) * base_width
    g = 0
    while True:
        gw = base_width * rng.uniform(0.6, 1.5)
        # a stacked group is two levels of low products, both within the shelf's height
        stacked = bool(rng.random() < stack_prob)
        gh = row_height * (rng.uniform(0.25, 0.45) if stacked else rng.uniform(0.5, 0.92))
        n = int(rng.integers(2, 7))
        done = False
        for _ in range(n):
            w = gw * rng.uniform(0.97, 1.03)
            if cur + w > x_right - rng.uniform(0, end_margin) * base_width:
                done = True
                break
            items.append((cur, cur + w, gh, float(stacked), g))
            cur += w + rng.uniform(0, spacing) * base_width
        g += 1
        if done:
            break
    x1s = np.array([it[0] for it in items])
    x2s = np.array([it[1] for it in items])
    med = float(np.median(x2s - x1s))
    removed = np.zeros(len(items), bool)
    # interior gaps: remove a run of products at least one median width wide
    tries = 0
    made = 0
    while made < gaps_per_row and tries < 200:
        tries += 1
        i = int(rng.integers(3, len(items) - 4))
        j = i
        while j < len(items) - 3 and x2s[j] - x1s[i] < med:
            j += 1
        if x2s[j] - x1s[i] < med or removed[max(0, i - 2): j + 3].any():
            continue
        removed[i: j + 1] = True
        made += 1
    if end_gap:
        # an emptied row end: at least 2.5 median widths of the products left on the row
        # and 3 base widths, clear of the natural slack at a shelf end (up to one of the
        # widest products)
        widths = x2s - x1s
        n_items = len(items)
        pos = np.arange(n_items)
        if rng.random() < 0.5:
            j = 0
            while j < n_items - 4 and x2s[j] - x1s[0] < max(2.5 * np.median(widths[~removed & (pos > j)]), 3 * base_width):
                j += 1
            removed[: j + 1] = True
        else:
            j = n_items - 1
            while j > 4 and x2s[-1] - x1s[j] < max(2.5 * np.median(widths[~removed & (pos < j)]), 3 * base_width):
                j -= 1
            removed[j:] = True
    # planted gaps are the uncovered stretches left by removed runs
    out = _Row([], [], [])
    idx = np.flatnonzero(~removed)
    for a, b in zip(idx[:-1], idx[1:]):
        if b - a > 1:
            out.gaps.append((float(x2s[a]), float(x1s[b])))
    if removed[0]:
        out.gaps.append((float(x1s[0]), float(x1s[idx[0]])))
    if removed[-1]:
        out.gaps.append((float(x2s[idx[-1]]), float(x2s[-1])))
    for k in idx:
        x1, x2, h, stacked, grp = items[k]
        color = tuple(int(v) for v in np.random.default_rng(grp * 7919 + color_seed).integers(30, 230, 3))
        y2 = bottom - rng.uniform(0, 2)
        out.boxes.append([x1, y2 - h, x2, y2])
        out.colors.append(color)
        if stacked:
            out.boxes.append([x1, y2 - 2 * h - 2, x2, y2 - h - 2])
            out.colors.append(color)
    return out


def synthetic_aisle(
    rng: np.random.Generator,
    *,
    width: int = 6000,
    n_rows: int = 5,
    row_height: int = 260,
    base_width: float = 80.0,
    tilt_deg: float = 0.0,
    gaps_per_row: int = 2,
    end_gap_rows: int = 1,
    spacing: float = 0.25,
    stack_prob: float = 0.15,
    jitter: float = 0.02,
) -> SyntheticAisle:
    """Make one aisle (see module doc). ``spacing`` is the largest natural space between
    neighbouring products as a fraction of ``base_width``; ``end_gap_rows`` rows get a gap at
    their left or right end besides ``gaps_per_row`` interior gaps."""
    if width < 20 * base_width or n_rows < 1 or row_height < 20:
        raise InvalidInputError("synthetic_aisle: width must be >= 20 product widths, n_rows >= 1, row_height >= 20")
    lip = 0.14 * row_height
    # room above and below for the tilted layout to stay inside the image
    margin = 0.5 * row_height + 0.5 * width * abs(np.sin(np.radians(tilt_deg)))
    height = int(np.ceil(2 * margin + n_rows * (row_height + lip)))
    boxes: list[list[float]] = []
    rows: list[int] = []
    colors: list[tuple[int, int, int]] = []
    planted: list[tuple[int, float, float]] = []
    shelf: list[list[tuple[float, float]]] = []
    x_left = 0.03 * width
    x_right = 0.97 * width
    end_rows = set(rng.choice(n_rows, size=min(end_gap_rows, n_rows), replace=False).tolist())
    for r in range(n_rows):
        bottom = margin + (r + 1) * (row_height + lip) - lip
        shelf.append([(0.0, bottom + lip / 2), (float(width), bottom + lip / 2)])
        fill = _fill_row(rng, x_left, x_right, bottom, row_height, base_width, spacing=spacing, stack_prob=stack_prob,
                         gaps_per_row=gaps_per_row, end_gap=r in end_rows, color_seed=r)
        boxes += fill.boxes
        rows += [r] * len(fill.boxes)
        colors += fill.colors
        planted += [(r, x1, x2) for x1, x2 in fill.gaps]
    b = np.array(boxes, dtype=np.float64)
    corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)
    cx, cy = width / 2, height / 2
    rc = _rotate(corners, tilt_deg, cx, cy)
    xyxy = np.column_stack([rc[..., 0].min(1), rc[..., 1].min(1), rc[..., 0].max(1), rc[..., 1].max(1)])
    if jitter > 0:
        wh = np.repeat(xyxy[:, 2:] - xyxy[:, :2], 2, axis=0).reshape(-1, 4)
        xyxy = xyxy + rng.uniform(-jitter, jitter, xyxy.shape) * wh
        xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    # planted gaps move with the rotation: take their ends on the row's middle line
    gaps_out = []
    for r, x1, x2 in planted:
        bottom = margin + (r + 1) * (row_height + lip) - lip
        mid = bottom - row_height / 2
        p = _rotate(np.array([[x1, mid], [x2, mid]]), tilt_deg, cx, cy)
        gaps_out.append((r, float(p[0, 0]), float(p[1, 0])))
    lines = _rotate(np.array(shelf, dtype=np.float64), tilt_deg, cx, cy)
    return SyntheticAisle(width, height, xyxy, np.array(rows, np.int64), rc, tuple(gaps_out), float(tilt_deg),
                          lines, np.array(colors, np.uint8).reshape(-1, 3))


@dataclass(frozen=True, eq=False)
class SyntheticBays:
    """An aisle of bays side by side, seen in perspective (see :func:`synthetic_bays`).

    ``xyxy`` (N, 4) product boxes in image pixels, ``bay_of``/``row_of`` (N,) each box's bay
    (left to right) and row within its bay (top to bottom); ``row_boxes`` (R, 4) the bounding
    box of each true row's products and ``row_keys`` (R, 2) its (bay, row), bay after bay;
    ``gaps`` planted gaps as (bay, row, x1, x2) in image x along the row's middle line;
    ``uprights`` (B-1,) image x of the uprights between bays at the middle height of the
    aisle, and ``upright_lines`` (B-1, 2, 2) each upright's centre line as two (x, y) points,
    top and bottom (vertical but for the roll);
    ``bay_outlines`` (B, 4, 2) each bay's outline (its shelves' extent); ``corners`` (N, 4, 2)
    each product's outline; ``shelf_lines`` (R, 2, 2) each row's shelf edge as two (x, y) points.
    ``perspective_deg`` is the camera's turn about the vertical axis (0: facing the shelves)."""

    width: int
    height: int
    xyxy: np.ndarray
    bay_of: np.ndarray
    row_of: np.ndarray
    row_boxes: np.ndarray
    row_keys: np.ndarray
    corners: np.ndarray
    gaps: tuple[tuple[int, int, float, float], ...]
    uprights: np.ndarray
    upright_lines: np.ndarray
    bay_outlines: np.ndarray
    shelf_lines: np.ndarray
    colors: np.ndarray
    perspective_deg: float
    roll_deg: float

    @property
    def n_bays(self) -> int:
        return int(len(self.bay_outlines))


def synthetic_bays(
    rng: np.random.Generator,
    *,
    n_bays: int = 3,
    perspective_deg: float = 0.0,
    roll_deg: float | None = None,
    base_width: float | None = None,
    gaps_per_row: int = 1,
    stack_prob: float = 0.15,
    spacing: float = 0.25,
    jitter: float = 0.02,
    upright_width: tuple[float, float] = (0.25, 0.6),
    end_margin: float = 0.2,
    same_shelves: float = 0.25,
    pitch_deg: float = 0.0,
) -> SyntheticBays:
    """Bays side by side, each with its own number of shelves and shelf height, seen at an angle.

    Built flat first: bay ``b`` spans ``bay_width`` (22 to 34 base widths), uprights
    ``upright_width`` base widths wide (drawn uniformly) stand between bays, all bays stand on one
    floor line, and each has 3 to 7 shelves of its own height (a neighbour copies the previous
    bay's shelves with probability ``same_shelves``, so that only the upright separates them).
    Products stand ``spacing`` base widths apart at most, and each shelf's first and last
    products up to ``end_margin`` base widths inside the uprights (a real detector's tight boxes
    on products filled up to thin uprights: ``spacing=0.03, end_margin=0.02, upright_width=(0.1,
    0.25)``). Each shelf is filled as in :func:`synthetic_aisle`
    (``gaps_per_row`` interior gaps, one row per bay with an emptied end). The flat layout is then
    seen by a pinhole camera turned by ``perspective_deg`` about the vertical axis at a distance
    of 0.6 to 1.0 times the aisle's width, and rolled by ``roll_deg`` (default: up to 2 degrees
    either way), so the rows converge towards a vanishing point and the uprights stay vertical
    (before the roll). ``pitch_deg`` tilts the camera up (positive) or down as well, as a phone
    held below or above the shelves' middle is: the uprights then converge on a point above or
    below the image instead of standing parallel. Product boxes are the hulls of the seen
    product fronts, jittered by ``jitter`` of their size.
    """
    if not (1 <= n_bays <= 12):
        raise InvalidInputError(f"synthetic_bays: n_bays must be in 1..12, got {n_bays}")
    if not (-40 <= perspective_deg <= 40) or not (-40 <= pitch_deg <= 40):
        raise InvalidInputError(f"synthetic_bays: perspective and pitch must be within 40 degrees, got {perspective_deg}, "
                                f"{pitch_deg}")
    lo_up, hi_up = (float(v) for v in upright_width)
    if not (0 < lo_up <= hi_up) or end_margin < 0 or not (0 <= same_shelves <= 1) or spacing < 0:
        raise InvalidInputError("synthetic_bays: upright_width must be 0 < low <= high, end_margin and spacing >= 0, "
                                f"same_shelves in [0, 1]; got {upright_width}, {end_margin}, {spacing}, {same_shelves}")
    base = float(rng.uniform(60, 110)) if base_width is None else float(base_width)
    roll = float(rng.uniform(-2, 2)) if roll_deg is None else float(roll_deg)
    boxes: list[list[float]] = []
    bay_of: list[int] = []
    row_of: list[int] = []
    colors: list[tuple[int, int, int]] = []
    planted: list[tuple[int, int, float, float]] = []
    shelf: list[tuple[int, int, float, float, float]] = []  # bay, row, x0, x1, y
    outlines: list[tuple[float, float, float, float]] = []
    uprights: list[float] = []
    x0 = 0.0
    floor = 0.0
    prev: tuple[int, float] | None = None
    for b in range(n_bays):
        bay_w = base * rng.uniform(22, 34)
        if prev is not None and rng.random() < same_shelves:
            n_rows, row_h = prev
        else:
            n_rows, row_h = int(rng.integers(3, 8)), base * rng.uniform(2.0, 3.6)
        prev = (n_rows, row_h)
        lip = 0.14 * row_h
        kick = base * rng.uniform(0.3, 1.5)
        end_row = int(rng.integers(n_rows))
        top_y = floor - kick - n_rows * (row_h + lip)
        for r in range(n_rows):
            bottom = floor - kick - (n_rows - 1 - r) * (row_h + lip)
            fill = _fill_row(rng, x0, x0 + bay_w, bottom, row_h, base, spacing=spacing, stack_prob=stack_prob,
                             gaps_per_row=gaps_per_row, end_gap=r == end_row, color_seed=1000 * b + r,
                             end_margin=end_margin)
            boxes += fill.boxes
            bay_of += [b] * len(fill.boxes)
            row_of += [r] * len(fill.boxes)
            colors += fill.colors
            planted += [(b, r, g0, g1, bottom - row_h / 2) for g0, g1 in fill.gaps]  # type: ignore[misc]
            shelf.append((b, r, x0, x0 + bay_w, bottom + lip / 2))
        outlines.append((x0, top_y, x0 + bay_w, floor - kick + lip))
        upright = base * rng.uniform(lo_up, hi_up)
        if b < n_bays - 1:
            uprights.append(x0 + bay_w + upright / 2)
        x0 += bay_w + upright
    total_w = x0
    bx = np.array(boxes, dtype=np.float64)
    xc, yc = total_w / 2, float(np.mean([o[1] for o in outlines]) + np.mean([o[3] - o[1] for o in outlines]) / 2)
    dist = total_w * rng.uniform(0.6, 1.0)
    t, rl, pt = np.radians(perspective_deg), np.radians(roll), np.radians(pitch_deg)

    def view(pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The points in the camera's frame: across, down, depth."""
        x, y = pts[..., 0] - xc, pts[..., 1] - yc
        z = dist + x * np.sin(t)
        if pt:
            # the camera tilted about its horizontal axis (y grows downwards: a positive pitch looks up)
            y, z = y * np.cos(pt) + z * np.sin(pt), z * np.cos(pt) - y * np.sin(pt)
        return x, y, z

    def project(pts: np.ndarray) -> np.ndarray:
        x, y, z = view(pts)
        u, v = dist * x * np.cos(t) / z, dist * y / z
        return np.stack([u * np.cos(rl) - v * np.sin(rl), u * np.sin(rl) + v * np.cos(rl)], axis=-1)

    # a camera turned and tilted so far that part of the aisle lies beside or behind it
    # would mirror it, or blow it up to millions of pixels
    ol = np.array(outlines)
    extent = np.array([[ol[:, 0].min(), ol[:, 1].min()], [ol[:, 2].max(), ol[:, 1].min()],
                       [ol[:, 2].max(), ol[:, 3].max()], [ol[:, 0].min(), ol[:, 3].max()]])
    if float(view(extent)[2].min()) < 0.2 * dist:
        raise InvalidInputError(f"synthetic_bays: a camera turned by {perspective_deg} and tilted by {pitch_deg} "
                                "degrees sees part of this aisle from beside or behind; turn or tilt it less")

    corners = project(np.stack([bx[:, [0, 1]], bx[:, [2, 1]], bx[:, [2, 3]], bx[:, [0, 3]]], axis=1))
    bay_poly = project(np.stack([ol[:, [0, 1]], ol[:, [2, 1]], ol[:, [2, 3]], ol[:, [0, 3]]], axis=1))
    sh = np.array([s_[2:] for s_ in shelf])
    lines = project(np.stack([sh[:, [0, 2]], sh[:, [1, 2]]], axis=1))
    pg = np.array([[g[2], g[4], g[3], g[4]] for g in planted]).reshape(-1, 2, 2)
    gap_pts = project(pg)
    up = project(np.array([[u_, yc] for u_ in uprights]).reshape(-1, 2))
    top_y, bottom_y = float(ol[:, 1].min()), float(ol[:, 3].max())
    up_lines = project(np.array([[[u_, top_y], [u_, bottom_y]] for u_ in uprights]).reshape(-1, 2, 2))
    # shift into the image with a margin of half a (near) row
    allp = np.concatenate([corners.reshape(-1, 2), bay_poly.reshape(-1, 2)])
    margin = 0.5 * float(np.median(bx[:, 3] - bx[:, 1])) + 20
    off = allp.min(0) - margin
    width = int(np.ceil(allp[:, 0].max() - off[0] + margin))
    height = int(np.ceil(allp[:, 1].max() - off[1] + margin))
    corners, bay_poly, lines, gap_pts, up, up_lines = (corners - off, bay_poly - off, lines - off, gap_pts - off, up - off,
                                                      up_lines - off)
    xyxy = np.column_stack([corners[..., 0].min(1), corners[..., 1].min(1), corners[..., 0].max(1), corners[..., 1].max(1)])
    if jitter > 0:
        wh = np.repeat(xyxy[:, 2:] - xyxy[:, :2], 2, axis=0).reshape(-1, 4)
        xyxy = xyxy + rng.uniform(-jitter, jitter, xyxy.shape) * wh
        xyxy[:, 2:] = np.maximum(xyxy[:, 2:], xyxy[:, :2] + 1)
    xyxy = np.clip(xyxy, 0, [width, height, width, height])
    bay_arr, row_arr = np.array(bay_of, np.int64), np.array(row_of, np.int64)
    keys = sorted(set(zip(bay_of, row_of)))
    row_boxes = np.array([
        [*xyxy[(bay_arr == b) & (row_arr == r), :2].min(0), *xyxy[(bay_arr == b) & (row_arr == r), 2:].max(0)]
        for b, r in keys
    ], dtype=np.float64).reshape(-1, 4)
    gaps = tuple((int(g[0]), int(g[1]), float(p[0, 0]), float(p[1, 0])) for g, p in zip(planted, gap_pts))
    return SyntheticBays(
        width, height, xyxy, bay_arr, row_arr, row_boxes, np.array(keys, np.int64).reshape(-1, 2), corners, gaps,
        up[:, 0].copy(), up_lines, bay_poly, lines, np.array(colors, np.uint8).reshape(-1, 3), float(perspective_deg), roll,
    )


def render_aisle(aisle: SyntheticAisle | SyntheticBays, *, scale: float = 1.0) -> np.ndarray:
    """Paint the aisle (shelf edges and flat-coloured products) as HxWx3 uint8 RGB, optionally
    at ``scale`` of its pixel size."""
    from PIL import Image, ImageDraw

    w, h = max(1, int(round(aisle.width * scale))), max(1, int(round(aisle.height * scale)))
    im = Image.new("RGB", (w, h), (208, 206, 200))
    d = ImageDraw.Draw(im)
    lip_w = max(1, int(round(0.03 * aisle.height / max(len(aisle.shelf_lines), 1) * scale * 3)))
    for (x0, y0), (x1, y1) in aisle.shelf_lines * scale:
        d.line([(x0, y0), (x1, y1)], fill=(70, 70, 78), width=lip_w)
    for poly, col in zip(aisle.corners * scale, aisle.colors):
        d.polygon([tuple(p) for p in poly.tolist()], fill=tuple(int(c) for c in col), outline=(25, 25, 25))
    return np.asarray(im)


@dataclass(frozen=True)
class GapScore:
    """How found gaps compare with the planted ones: ``found`` planted gaps matched by a found
    gap of the same row covering over half of them, ``planted`` their number, ``false`` found
    gaps matching no planted gap, and ``rows_ok`` whether the row count is right."""

    found: int
    planted: int
    false: int
    rows_ok: bool


def score_gaps(aisle: SyntheticAisle, gaps: Sequence[Any], n_rows_found: int) -> GapScore:
    """Match found gaps (objects with ``row``, ``x1``, ``x2``; rows numbered top to bottom from
    0) against ``aisle.gaps``."""
    matched: set[int] = set()
    found = 0
    for r, x1, x2 in aisle.gaps:
        hits = [i for i, g in enumerate(gaps) if g.row == r and min(x2, g.x2) - max(x1, g.x1) > 0.5 * (x2 - x1)]
        if hits:
            found += 1
            matched.update(hits)
    n_rows = int(aisle.row_of.max()) + 1 if len(aisle.row_of) else 0
    return GapScore(found, len(aisle.gaps), len(gaps) - len(matched), n_rows_found == n_rows)
