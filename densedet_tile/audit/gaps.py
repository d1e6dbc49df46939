"""Shelf gaps: empty stretches along a row, wider than ``k`` times its median product width.

Along each row the boxes are sorted by their left edge and the covered stretch is tracked with
a running maximum of right edges; every uncovered stretch between two boxes wider than
``k * median_width`` (and than :data:`MIN_GAP_PX`, whatever ``k`` or ``end_k``) is a gap. With ``end_gaps`` the stretches between the fixture's ends
(the leftmost and rightmost product of any row, or ``span`` if given) and the row's first /
last product count too. A shelf rarely fits a whole number of products, so its end may show
up to one product's width of slack; by default an end stretch is a gap when it is wider than
``k * median_width`` plus the width of the fixture's widest common product (the 95th
percentile of all widths). ``end_k`` replaces that by ``end_k * median_width``.

Coordinates are pixels of the upright image. On a tilted image each box is first narrowed
to the width of the tilted product it bounds (the hull of a product of height h tilted by t
is about h sin t wider), so the gaps are measured between products, not between their hulls;
the median width is that of the narrowed boxes. Turned products' hulls overlap their
neighbours' by that much, upright products on shelves sloped by the view do not: a row whose
close neighbours overlap less is narrowed by their overlap at most (:func:`_narrowing_seen`). In a view down an aisle (converging shelves,
see :mod:`.rows`) products shrink towards the vanishing point: widths are compared after
dividing by the square of the frame's local scale, and a stretch's threshold is taken at the
scale of its middle. A gap's vertical extent is its row's outline (from the row's upper edge
to its fitted bottom line), so its ``polygon`` follows the shelf and ``xyxy`` is its bounding
box. A product of another row that reaches across the middle of a row's band (a tall bottle
in front of the shelf above) fills that stretch of it: what it hides is not seen to be empty. Gaps are found within one fixture's rows: run it per bay and no gap crosses an upright that cut the bays (one not found leaves a gap in each row at its post; the audit names such columns in a warning).

A gap lives in a row, and a row exists only where products stand, so a shelf emptied from end
to end leaves no row to hold it. :func:`find_empty_shelves` finds those from the spacing of the
rows that remain: where two neighbouring rows of a fixture stand much further apart than its
other rows do, with room between them for a whole shelf of products, a shelf is missing there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from .boxes import as_boxes, require_finite
from .rows import RowLayout, ShelfRow

__all__ = ["Gap", "find_gaps", "DEFAULT_GAP_K", "EmptyShelf", "find_empty_shelves"]

#: Default gap threshold in median product widths (chosen on synthetic aisles, see docs/audit.md).
DEFAULT_GAP_K = 0.7
#: No gap is narrower than this many pixels, whatever ``k`` or ``end_k`` (a threshold near 0 made
#: end gaps of 0.03 px, written as zero-width outlines: an outside review).
MIN_GAP_PX = 1.0


@dataclass(frozen=True)
class Gap:
    """An empty stretch of shelf: row index, horizontal extent ``x1..x2`` (pixels), its width in
    pixels and in the row's median product widths, where it lies (``interior``, ``left_end``,
    ``right_end``), and its outline: ``polygon`` (4 (x, y) corners) and bounding ``xyxy``.
    ``texture`` and ``looks`` are the second look in the photo's pixels
    (:func:`~densedet_tile.audit.gapcheck.check_gaps`; None until then): the gap's texture over
    its row's products', and ``"empty"``, ``"unsure"`` or ``"stocked"``."""

    row: int
    x1: float
    x2: float
    width_px: float
    width_products: float
    kind: str
    polygon: tuple[tuple[float, float], ...]
    xyxy: tuple[float, float, float, float]
    texture: float | None = None
    looks: str | None = None


#: A row's box fills shelf space when its top is at least this many of the row's median box
#: heights above the row's bottom line (:func:`find_gaps`).
_STANDS = 0.25
#: ... and is narrower than this many of the row's median product widths (wider: a price rail).
_RAIL_WIDTH = 1.5


def _standing(a: np.ndarray, cx: np.ndarray, row: ShelfRow, sel: np.ndarray) -> np.ndarray:
    """The boxes of ``sel`` (a row's) that fill its shelf: all but price rails, boxes that do not
    rise ``_STANDS`` of the row's median box height above its bottom line and are at least
    ``_RAIL_WIDTH`` of its median product width wide. A rail boxed by the detector joins the
    row whose band holds its centre, but fills none of the shelf: such boxes hid real gaps (2
    per row: 708 of 1250 planted gaps found; an outside review) and stretched the row's ends.
    Short products as narrow as their neighbours (tins beside tall packs) still fill it; so do
    small price tags, which hide part of a gap at most. A row of rails only keeps them all."""
    low = (row.bottom_at(cx[sel]) - a[sel, 1]) < _STANDS * row.median_height
    rail = low & (a[sel, 2] - a[sel, 0] >= _RAIL_WIDTH * row.median_width)
    return sel[~rail] if rail.any() and not rail.all() else sel


def _narrowing_seen(a: np.ndarray, w_true: np.ndarray, rows: dict[int, np.ndarray]) -> np.ndarray:
    """``w_true`` with each row's narrowing held to what its boxes show. Products turned with
    a rolled camera have hulls that overlap their neighbours' by about the narrowing (h sin t);
    shelf lines sloped by the view (a slight angle to the shelves) leave the products upright,
    their boxes side by side, and narrowing them opened a gap between every two (tall thin
    bottles 4 px apart on shelves sloping 3 degrees: 80 false gaps; an outside review). The
    evidence is a row's close neighbours: side by side (overlapping vertically by half the
    shorter box) with less room between their hulls than half the narrower product. When their
    median overlap reaches half their narrowing the products are turned and keep it all;
    otherwise they are upright and are narrowed by that overlap at most. A row without close
    neighbours (every other product missing) cannot tell and keeps the full narrowing."""
    out = w_true.copy()
    cut = (a[:, 2] - a[:, 0]) - w_true  # each box's full narrowing
    for sel in rows.values():
        if sel.size < 2:
            continue
        order = sel[np.argsort(a[sel, 0], kind="stable")]
        i, j = order[:-1], order[1:]
        overlap = a[i, 2] - a[j, 0]  # negative: room between the hulls
        beside = np.minimum(a[i, 3], a[j, 3]) - np.maximum(a[i, 1], a[j, 1]) >= 0.5 * np.minimum(
            a[i, 3] - a[i, 1], a[j, 3] - a[j, 1])
        close = beside & (-overlap < 0.5 * np.minimum(w_true[i], w_true[j]))
        if not close.any():
            continue
        seen = float(np.median(overlap[close]))
        if seen >= 0.5 * float(np.median((cut[i] + cut[j])[close] / 2)):
            continue  # turned products: the full narrowing
        out[sel] = np.maximum(w_true[sel], a[sel, 2] - a[sel, 0] - max(seen, 0.0))
    return out


def find_gaps(
    xyxy: np.ndarray,
    layout: RowLayout,
    *,
    k: float = DEFAULT_GAP_K,
    end_gaps: bool = True,
    end_k: float | None = None,
    span: tuple[float, float] | None = None,
    occupied: np.ndarray | None = None,
) -> list[Gap]:
    """Gaps of every row of ``layout`` (see module doc).

    ``xyxy`` (N, 4) the same boxes the layout was built from. ``span`` (x_left, x_right) is the
    fixture's extent in image x for end gaps; default: from the leftmost to the rightmost box
    of any row, with the row ends compared along the tilt. ``occupied`` (M, 4): other boxes
    that fill shelf space without being the rows' products (a region's products in a found
    bay's rows): a row's stretch is not empty where one of them stands in its band, within the
    fixture's columns (from its leftmost to its rightmost box, or ``span``): the part of such a
    box beyond them is ignored, so a box of a region elsewhere in the image opens no stretch.
    A stretch is a gap only when it is also wider than :data:`MIN_GAP_PX`. Returns gaps row by
    row, left to right.
    """
    if not (isinstance(k, (int, float)) and np.isfinite(k) and k > 0):
        raise InvalidInputError(f"gap k must be a positive number of product widths, got {k!r}")
    if end_k is not None and not (isinstance(end_k, (int, float)) and np.isfinite(end_k) and end_k > 0):
        raise InvalidInputError(f"end gap k must be a positive number of product widths, got {end_k!r}")
    a = as_boxes(xyxy)
    require_finite(a)  # (a NaN box opened gaps between every two products)
    if len(a) != len(layout.assignment):
        raise InvalidInputError(f"{len(a)} boxes but the row layout was built from {len(layout.assignment)}")
    occ = None if occupied is None else as_boxes(occupied, "occupied boxes")
    if occ is not None:
        require_finite(occ, "occupied boxes")
    if not layout.rows:
        return []
    # On a tilted image a box is the axis-aligned hull of a tilted product: wider than the
    # product by about its height * sin(tilt), which would eat into the gaps between products.
    # Undo it: the product width w solves W = w cos t + H sin t, H = w sin t + h cos t.
    # A view down an aisle tilts the shelf lines but not the products (uprights stay
    # vertical): no narrowing there.
    converging = layout.spread != 0.0
    t = 0.0 if converging else abs(float(np.radians(layout.tilt_deg)))
    W, H = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    if t > 1e-6:
        w_true = np.clip((W * np.cos(t) - H * np.sin(t)) / np.cos(2 * t), 0.25 * W, W)
    else:
        w_true = W
    cx = (a[:, 0] + a[:, 2]) / 2
    rows = {r.index: _standing(a, cx, r, np.flatnonzero(layout.assignment == r.index)) for r in layout.rows}
    if t > 1e-6:
        w_true = _narrowing_seen(a, w_true, rows)
    bx1, bx2 = cx - w_true / 2, cx + w_true / 2
    # Towards a vanishing point products shrink in width like the square of the frame's scale
    # (heights like the scale): widths are compared at the scale of the row's middle.
    sq = layout.scale(cx) ** 2
    # The fixture's vertical ends are tilted too: compare row ends after shifting each row by
    # (its height) * tan(tilt), the x part of undoing the rotation.
    tan = 0.0 if converging else float(np.tan(np.radians(layout.tilt_deg)))
    dx = {r.index: (r.top + r.bottom) / 2 * tan for r in layout.rows}
    span_given = span is not None
    if span is None:
        span = (min(float(bx1[i].min()) + dx[r] for r, i in rows.items()),
                max(float(bx2[i].max()) + dx[r] for r, i in rows.items()))
        # ... but an end gap never runs past the fixture's own columns (its outline)
        limits = (float(a[:, 0].min()), float(a[:, 2].max()))
    else:
        dx = {r.index: 0.0 for r in layout.rows}
        limits = (-np.inf, np.inf)
    in_rows = np.concatenate(list(rows.values()))
    wide = float(np.percentile(w_true[in_rows] / sq[in_rows], 95)) if in_rows.size else 0.0
    if occ is not None:
        # another fixture's boxes fill this one's shelves only within its columns: cut to them
        # (a box beyond its ends would otherwise open a stretch from the row's end to itself),
        # widened by the reach of an end stretch too short for an end gap: a region's product
        # that near makes the stretch to the row's first product one between two products of a
        # shelf (an empty stretch across a region's edge was two ends too short to report, the
        # region's and the bay's: an outside review)
        lo, hi = (min(span), max(span)) if span_given else limits
        if not span_given and in_rows.size:
            reach = k * float(np.median(w_true[in_rows] / sq[in_rows])) + wide
            lo, hi = lo - reach, hi + reach
        ox1, ox2 = np.maximum(occ[:, 0], lo), np.minimum(occ[:, 2], hi)
        inside = ox2 > ox1
        ocx = ((occ[:, 0] + occ[:, 2]) / 2)[inside]
        ocy = ((occ[:, 1] + occ[:, 3]) / 2)[inside]
        ox1, ox2 = ox1[inside], ox2[inside]
        if not len(ox1):
            occ = None
    gaps: list[Gap] = []
    for row in layout.rows:
        left_end = max(span[0] - dx[row.index], limits[0])
        right_end = min(span[1] - dx[row.index], limits[1])
        sel = rows[row.index]
        med_w = float(np.median(w_true[sel] / sq[sel]))
        x1, x2 = bx1[sel], bx2[sel]
        # another row's product reaching across the middle of this row's band (a tall bottle in
        # front of the shelf above, a hanging pack) hides that stretch: not an empty one
        other = np.flatnonzero((layout.assignment >= 0) & (layout.assignment != row.index))
        mid = (row.top_at(cx[other]) + row.bottom_at(cx[other])) / 2
        other = other[(a[other, 1] <= mid) & (a[other, 3] >= mid)]
        x1, x2 = np.r_[x1, bx1[other]], np.r_[x2, bx2[other]]
        if occ is not None:
            there = (ocy >= row.top_at(ocx)) & (ocy <= row.bottom_at(ocx))
            x1, x2 = np.r_[x1, ox1[there]], np.r_[x2, ox2[there]]
        order = np.argsort(x1, kind="stable")
        x1, x2 = x1[order], x2[order]
        covered = np.maximum.accumulate(x2)
        starts = covered[:-1]
        ends = x1[1:]
        stretches = [(s, e, "interior") for s, e in zip(starts.tolist(), ends.tolist())]
        if end_gaps:
            stretches = [(left_end, float(x1[0]), "left_end")] + stretches + [(float(covered[-1]), right_end, "right_end")]
        for s, e, kind in stretches:
            unit = med_w * float(layout.scale((s + e) / 2)) ** 2
            if kind == "interior":
                limit = k * unit
            elif end_k is None:
                limit = k * unit + wide * float(layout.scale((s + e) / 2)) ** 2
            else:
                limit = end_k * unit
            if e - s > max(limit, MIN_GAP_PX):
                gaps.append(_make_gap(row, s, e, kind, unit))
    return gaps


def _make_gap(row: ShelfRow, x1: float, x2: float, kind: str, unit: float) -> Gap:
    xs = np.array([x1, x2, x2, x1])
    ys = np.r_[row.top_at(xs[:2]), row.bottom_at(xs[2:])]
    poly = tuple((float(x), float(y)) for x, y in zip(xs, ys))
    return Gap(
        row=row.index,
        x1=float(x1),
        x2=float(x2),
        width_px=float(x2 - x1),
        width_products=float((x2 - x1) / unit) if unit > 0 else float("inf"),
        kind=kind,
        polygon=poly,
        xyxy=(float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())),
    )


#: A pair of neighbouring rows is an empty shelf apart when they stand at least this many times
#: the fixture's usual shelf pitch apart (2 for one missing shelf; chosen on generated bays, see
#: docs/audit.md "Empty shelves").
EMPTY_SHELF_PITCH = 1.7
#: ... and the room between the upper row's bottom line and the lower row's tops holds at least
#: this share of a usual pitch, and of the taller of the two rows' median products (a tall
#: shelf filled with tall products is not empty).
EMPTY_SHELF_ROOM = 0.8
#: The top or bottom row of a fixture bounds an empty shelf only when its products fill at least
#: this share of the width the fixture's usual row fills (the median of its other rows): a few boxes
#: on the floor, the ceiling or a sign beyond the shelving, spread over the bay's width, make a
#: "row" whose distance to the shelving read as an empty shelf of up to 7 shelves (an outside
#: review: 9 false empty shelves on a 40-bay panorama with 3 stray boxes a bay, 0 without them).
#: A shelf emptied next to a top or bottom shelf filled under this share is not reported (that
#: shelf's own gaps are).
EMPTY_SHELF_OUTER_SHARE = 0.3


@dataclass(frozen=True)
class EmptyShelf:
    """About ``shelves`` whole shelves empty between rows ``above`` and ``below`` (row indices
    of one fixture's layout, ``below == above + 1``): the two rows stand ``pitch_ratio`` of the
    fixture's usual shelf pitch apart. ``x1..x2`` the columns both rows span, ``height_px`` the
    room between them at its middle, ``polygon`` (4 (x, y) corners: the upper row's bottom line,
    then the lower row's upper edge) and its bounding ``xyxy``. ``texture`` and ``looks``: the
    second look in the photo's pixels, as a :class:`Gap`'s (None until then)."""

    above: int
    below: int
    shelves: int
    pitch_ratio: float
    x1: float
    x2: float
    height_px: float
    polygon: tuple[tuple[float, float], ...]
    xyxy: tuple[float, float, float, float]
    texture: float | None = None
    looks: str | None = None


def _stray_row(k: int, rows: Sequence[ShelfRow]) -> bool:
    """Whether row ``k`` of ``rows`` (the top or bottom one) fills too little of a shelf beside
    the fixture's other rows to be one of its shelves (:data:`EMPTY_SHELF_OUTER_SHARE`): the
    width its products fill (count times median width), so a bottom shelf of a few bulky packs
    is a shelf, and a few boxes spread over the floor are not."""
    filled = [r.count * r.median_width for r in rows]
    return bool(filled[k] < EMPTY_SHELF_OUTER_SHARE * float(np.median(filled[:k] + filled[k + 1:])))


def find_empty_shelves(layout: RowLayout, *, pitch: float = EMPTY_SHELF_PITCH,
                       room: float = EMPTY_SHELF_ROOM) -> list[EmptyShelf]:
    """Shelves emptied from end to end inside one fixture (see the module doc).

    Needs three rows or more: the usual pitch between the rows ``i`` and ``i + 1`` is the median
    spacing (of the rows' bottoms, in the layout's frame) of the fixture's other neighbouring
    rows, so a fixture of two rows has nothing to compare with, and a shelf emptied at the top
    or bottom of the fixture (no row beyond it) is not found. Two rows qualify when they are at
    least ``pitch`` usual pitches apart, the room between them holds ``room`` of a usual pitch
    and of the taller row's median product height, and they share at least three product widths
    of columns and half the narrower row's span (a row that ends where the other begins is a
    fixture of another height beside it, not a missing shelf). Returns them top to bottom.
    """
    if not (isinstance(pitch, (int, float)) and np.isfinite(pitch) and pitch > 1):
        raise InvalidInputError(f"empty-shelf pitch must be a number above 1, got {pitch!r}")
    if not (isinstance(room, (int, float)) and np.isfinite(room) and room > 0):
        raise InvalidInputError(f"empty-shelf room must be a positive number, got {room!r}")
    rows = sorted(layout.rows, key=lambda r: r.bottom)
    # a thin top or bottom row (stray boxes beyond the shelving) is none of the fixture's shelves:
    # it neither bounds an empty shelf nor takes part in the usual pitch
    while len(rows) >= 3 and _stray_row(0, rows):
        rows = rows[1:]
    while len(rows) >= 3 and _stray_row(len(rows) - 1, rows):
        rows = rows[:-1]
    if len(rows) < 3:
        return []
    bottoms = np.array([r.bottom for r in rows], dtype=np.float64)
    steps = np.diff(bottoms)
    out = []
    for i, step in enumerate(steps.tolist()):
        usual = float(np.median(np.delete(steps, i)))
        if usual <= 0 or step < pitch * usual:
            continue
        up, low = rows[i], rows[i + 1]
        x1, x2 = max(up.x_start, low.x_start), min(up.x_end, low.x_end)
        shared = x2 - x1
        if shared < 3 * max(up.median_width, low.median_width) or \
                shared < 0.5 * min(up.x_end - up.x_start, low.x_end - low.x_start):
            continue
        xm = (x1 + x2) / 2
        free = float(low.top_at(xm) - up.bottom_at(xm))
        scale = float(layout.scale(xm))
        if free < room * usual * scale or free < room * max(up.median_height, low.median_height):
            continue
        xs = np.array([x1, x2, x2, x1])
        ys = np.r_[up.bottom_at(xs[:2]), low.top_at(xs[2:])]
        out.append(EmptyShelf(
            above=up.index, below=low.index, shelves=max(1, int(round(step / usual)) - 1),
            pitch_ratio=float(step / usual), x1=float(x1), x2=float(x2), height_px=free,
            polygon=tuple((float(x), float(y)) for x, y in zip(xs, ys)),
            xyxy=(float(x1), float(ys.min()), float(x2), float(ys.max())),
        ))
    return out
