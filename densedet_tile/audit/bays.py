"""Bays: the fixtures side by side in one photo or panorama, found from the product boxes (and,
when the photo is given, from its shelf lines).

An aisle is a row of bays (shelf units) separated by uprights. Uprights stay parallel in a
photo taken at an angle down an aisle (only the shelf lines converge), so bays are strips of
columns, and finding them is one-dimensional. The uprights lean with the camera's roll (a
degree or two in a hand-held photo moves an upright by a product width from the top shelf to
the bottom one, enough to close its gutter), and converge on a point above or below the photo
when the camera is tilted down or up, as phone photos of shelves mostly are; so the columns
follow them: the frame is the one that leaves the most columns no box crosses
(:func:`upright_frame`), each box is moved into it by its centre's height (tight boxes also
narrowed to their product's width at its middle height: a product leaning with the uprights is
boxed by its hull, wider by its height times the lean), and the cuts are the frame's lines
(:meth:`BayCuts.cut_x`). Three kinds of evidence cut the columns:

1. **Uprights** (and the breaks of the price rail they carry): a *gutter*, a stretch of
   columns where the products of every shelf stop. The *coverage* of a column is the summed
   height of the boxes that cover it; a gutter is a run of columns whose coverage falls below
   ``gutter_frac`` of the smaller of the highest coverages within ``window`` median product
   widths on either side, or that no box covers at all (inside a stretch wider than the window,
   a bay emptied, the highest coverage nearby is nothing as well), with two shelves or more on
   either side (along a single shelf an empty stretch may as well be a gap). It is an upright
   when it is at least ``min_gutter`` widths of the products beside it wide (and wider than
   ``SPACING_MULT`` times the median space between neighbouring products), or at least
   ``jump_gutter`` widths wide where the shelf lines do not go on across it (most products just
   left of it have no product just right of it standing on their shelf line, or no box near it
   is beside one of the other side at all though both sides reach over the same heights: two
   bays whose shelves interleave, :func:`_interleaved`), or at least
   ``thin_gutter`` widths wide (one whole bin of a sixteenth of a width, in effect) where it is
   wider than ``SPACING_MULT`` times nearly every space between neighbouring products (their
   95th percentile, spaces of half a product width or more left out as gaps, and those across
   lone candidate gutters, which bays of a few products a shelf have many of): a real
   detector's tight boxes on products filled up to a thin upright leave a gutter of a tenth of
   a product's width or less, which no shelf's own spacing makes on every shelf at once.
   Also where the breaks between neighbours line up over nearly every shelf with a mean space
   well above the usual one on either side, though the boxes' jitter closes the gutter on a
   shelf or two (:func:`_lined_up_breaks`).
2. **Jumps in shelf height**: where the shelves of neighbouring bays stand at different
   heights, the products on either side of the upright overlap vertically but do not stand on
   one line. Each box is paired with its nearest right-hand neighbour (:mod:`.neighbours`).
   The bottoms of an aligned pair must also agree with the slope of the shelf lines there
   (within ``jump_tol`` of the taller box's height), from the image's slope field (see
   :mod:`.rows`; in a view down an aisle every bay's shelves converge on one point).
   Here a box's neighbour need only overlap it vertically by 0.3 of the shorter one's height
   (across a jump of half a shelf pitch no pair overlaps by half), and price rails (flat boxes
   three times as wide as high and under half the median height) are left out of the pairs.
   Every pair marks its junction (the columns between the two boxes, widened by a quarter
   median width); columns where at least ``jump_min`` pairs meet misaligned, at least
   ``jump_frac`` of the shelves there (the standing boxes over the column, a box under half the
   median height counting as its share of one, at most nearby on either side), and at most
   half as many aligned pairs meet, are a jump. Products stacked on others and stray boxes also make
   misaligned pairs, but scattered over the columns; a jump lines them up.
3. **Shelf lines in the photo** (``picture`` given; :mod:`.shelflines`): columns where the
   photo's shelf edges and rails stop lining up from one side to the other, which the boxes
   cannot show where a shelf holds few products or the detector missed those by the upright.

A run of cut columns gives one cut at its middle (a gutter wins over a jump or a shelf break
where they overlap). A bay narrower than two median product widths is merged into its
neighbour across its weaker cut. Each box belongs to the bay holding its centre. Coordinates are pixels of the
upright image; everything is vectorised over boxes (the pairs come from a spatial index).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError
from .boxes import as_boxes, require_finite
from .neighbours import neighbour_pairs, stands_on_another
from .rows import RowLayout, _clip_spread, find_rows, slope_field

__all__ = ["BayCuts", "find_bays", "upright_frame", "upright_lean"]

#: A gutter where the shelf lines go on across it is an upright only when it is wider than this
#: many times the usual space between neighbouring products (products standing in tidy columns
#: leave gutters of just that space on every shelf: 4 bays of 2 products and no row before).
SPACING_MULT = 1.5
#: The share of the spaces between neighbouring products a narrow gutter must exceed (times
#: ``SPACING_MULT``); spaces of ``_GAP_SPACE`` median widths or more are gaps, not spacing.
_SPACING_Q = 0.95
_GAP_SPACE = 0.5


@dataclass(frozen=True, eq=False)
class BayCuts:
    """The bays of one image: ``cuts`` (B-1,) image x of the cuts between bays, left to right,
    at the height ``y_ref`` (the cuts lean with the uprights: by ``lean + lean_slope * (x -
    x_ref)``, dx/dy, at column ``x``, see :meth:`cut_x`); ``kinds`` (B-1,) what each cut is
    (``"upright"``, ``"height jump"`` or ``"shelf break"``: the photo's shelf lines end or jump
    there, :mod:`.shelflines`);
    ``bay_of`` (N,) int64 each box's bay, by its centre. ``spans`` (B-1, 2): the x extent at
    ``y_ref`` of the empty columns each upright cut stands in (no box crosses them; NaN for a
    height jump): an upright's own width, or much more where the shelves beside it are empty
    over their whole height."""

    cuts: np.ndarray
    kinds: tuple[str, ...]
    bay_of: np.ndarray
    lean: float = 0.0
    y_ref: float = 0.0
    spans: np.ndarray | None = None
    lean_slope: float = 0.0
    x_ref: float = 0.0

    @property
    def n_bays(self) -> int:
        return int(len(self.cuts)) + 1

    def cut_x(self, y: np.ndarray | float) -> np.ndarray:
        """(..., B-1) image x of every cut at image height(s) ``y``: an upright leans with the
        camera's roll (and, with the camera tilted up or down, the more the further it stands
        from the middle), from ``cuts`` at ``y_ref``."""
        return self.to_image(self.cuts, np.asarray(y, np.float64)[..., None])

    def to_image(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """Image x at height(s) ``y`` of the upright line through column ``x`` at ``y_ref``
        (broadcasts)."""
        x = np.asarray(x, np.float64)
        return x + (self.lean + self.lean_slope * (x - self.x_ref)) * (np.asarray(y, np.float64) - self.y_ref)


def _runs(mask: np.ndarray) -> np.ndarray:
    """(K, 2) start/end (exclusive) of the runs of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    return edges.reshape(-1, 2)


def _beside(la: np.ndarray, ra: np.ndarray) -> np.ndarray:
    """(len(la), len(ra)) bool: the boxes overlap vertically by over 0.3 of the shorter one's height."""
    lh, rh = la[:, 3] - la[:, 1], ra[:, 3] - ra[:, 1]
    overlap = np.minimum(la[:, None, 3], ra[None, :, 3]) - np.maximum(la[:, None, 1], ra[None, :, 1])
    return overlap > 0.3 * np.minimum(lh[:, None], rh[None, :])


def _shelves_continue(a: np.ndarray, left: np.ndarray, right: np.ndarray, frame: RowLayout, tol: float) -> bool:
    """Whether the shelf lines left of a gutter go on right of it: of the boxes ``left``
    (standing just left of it) that have a box among ``right`` overlapping them vertically, at
    least half have one whose bottom lies on their shelf line (the frame's slope, within ``tol``
    of the taller box's height). Small arrays: one gutter's neighbours."""
    la, ra = a[left], a[right]
    lcx, rcx = (la[:, 0] + la[:, 2]) / 2, (ra[:, 0] + ra[:, 2]) / 2
    lh, rh = la[:, 3] - la[:, 1], ra[:, 3] - ra[:, 1]
    slope = frame.slope_at(frame.deskew(la[:, 3], lcx))
    res = ra[None, :, 3] - la[:, None, 3] - slope[:, None] * (rcx[None, :] - lcx[:, None])
    beside = _beside(la, ra)
    ok = beside & (np.abs(res) <= tol * np.maximum(lh[:, None], rh[None, :]))
    seen = beside.any(axis=1)  # a shelf emptied right of the gutter says nothing
    return bool(seen.sum() == 0 or ok.any(axis=1)[seen].mean() >= 0.5)


def _interleaved(a: np.ndarray, left: np.ndarray, right: np.ndarray) -> bool:
    """Whether the boxes ``left`` and ``right`` of a gutter (every box near it, stacked ones
    included) reach over the same heights, by a median box height or more, though none of
    either side overlaps one of the other vertically by 0.3 of the shorter box's height: their
    shelves stand at other heights, half a pitch apart (two bays whose shelves interleave), so
    the shelf lines do not go on across the gutter. Where no box is beside another only because
    the two sides hold different heights (top shelves stocked on one side, bottom ones on the
    other), nothing is said. Small arrays: one gutter's neighbours."""
    la, ra = a[left], a[right]
    if _beside(la, ra).any():
        return False
    common = min(la[:, 3].max(), ra[:, 3].max()) - max(la[:, 1].min(), ra[:, 1].min())
    return bool(common >= np.median(np.r_[la[:, 3] - la[:, 1], ra[:, 3] - ra[:, 1]]))


def _shelf_count(bottoms: np.ndarray, med_h: float) -> int:
    """How many shelf lines a few box bottoms stand on: clusters of sorted bottoms split where
    two neighbours differ by more than half a median product height."""
    if len(bottoms) == 0:
        return 0
    b = np.sort(bottoms)
    return int(1 + np.count_nonzero(np.diff(b) > 0.5 * med_h))


def _window_max(v: np.ndarray, k: int, side: str) -> np.ndarray:
    """Running maximum of ``v`` over the ``k`` bins to the left (inclusive) or right."""
    pad = np.zeros(k - 1)
    if side == "left":
        ext = np.r_[pad, v]
    else:
        ext = np.r_[v, pad]
    return np.lib.stride_tricks.sliding_window_view(ext, k).max(axis=1)


def _to_frame(x: np.ndarray, dy: np.ndarray, lean: np.ndarray, slope: np.ndarray, x_ref: float) -> np.ndarray:
    """Image x at height ``dy`` (from the uprights' reference height) -> the x, at the reference
    height, of the upright through it. The uprights lean by ``lean + slope * (x' - x_ref)``
    (dx/dy) at column ``x'``: all alike for ``slope = 0``, converging on a point above or below
    the image otherwise. Broadcasts."""
    return x_ref + (x - x_ref - lean * dy) / (1.0 + slope * dy)


def _hole_chunks(a: np.ndarray, leans: np.ndarray, slopes: np.ndarray, x_ref: float, y_ref: float,
                 med_w: float, hull: float = 0.0):
    """For each candidate upright frame (``leans[k]``, ``slopes[k]``) every box is moved into the
    frame (by its centre's height); the stretches of columns between the outermost boxes that no
    box crosses are its *holes*. Yields, chunk of candidates by chunk, (candidate, first column,
    end column) of every hole, in bins of ``bin_px`` (the last value, the same for every chunk)
    counted from ``lo`` (the leftmost box edge of any frame, the values' last): at most 20 000
    bins per frame, and at most a few million cells per chunk, so memory stays bounded on a
    panorama. ``hull`` (dx/dy): each box is first narrowed as the hull of a product leaning with
    the frame at its column, by a lean of at most this (0: not at all)."""
    cy = (a[:, 1] + a[:, 3]) / 2
    dy = cy - y_ref
    k_all = len(leans)
    n = len(a)
    lo = hi = None
    chunk = max(1, 4_000_000 // max(n, 1))
    for c in range(0, k_all, chunk):
        lv, sv = leans[c:c + chunk, None], slopes[c:c + chunk, None]
        x0s = _to_frame(a[None, :, 0], dy[None, :], lv, sv, x_ref)
        x1s = _to_frame(a[None, :, 2], dy[None, :], lv, sv, x_ref)
        lo = float(x0s.min()) if lo is None else min(lo, float(x0s.min()))
        hi = float(x1s.max()) if hi is None else max(hi, float(x1s.max()))
    bin_px = max(med_w / 16, (hi - lo + 1) / 20000)
    nb_all = int((hi - lo) / bin_px) + 2
    step = max(1, min(k_all, 4_000_000 // max(n, 1), 4_000_000 // nb_all))
    for c in range(0, k_all, step):
        lv, sv = leans[c:c + step, None], slopes[c:c + step, None]
        k = len(lv)
        x0s = _to_frame(a[None, :, 0], dy[None, :], lv, sv, x_ref)
        x1s = _to_frame(a[None, :, 2], dy[None, :], lv, sv, x_ref)
        if hull:
            # each box narrowed as the hull of a product leaning with the frame there (see
            # find_bays), by a lean of at most ``hull`` (dx/dy)
            tilt = np.minimum(np.abs(lv + sv * ((x0s + x1s) / 2 - x_ref)), hull) / (1.0 + sv * dy[None, :])
            inset = np.minimum(tilt * (0.5 * (a[None, :, 3] - a[None, :, 1])), 0.25 * (x1s - x0s))
            x0s += inset
            x1s -= inset
        left = np.floor((x0s - lo) / bin_px).astype(np.int64)
        right = np.floor((x1s - lo) / bin_px).astype(np.int64)
        nb = int(right.max()) + 2
        row = np.arange(k)[:, None] * nb
        diff = (np.bincount((row + left).ravel(), minlength=k * nb)
                - np.bincount((row + right + 1).ravel(), minlength=k * nb))
        cov = np.cumsum(diff.reshape(k, nb), axis=1)
        first, last = left.min(axis=1), right.max(axis=1)
        cols = np.arange(nb)[None, :]
        inside = (cols > first[:, None]) & (cols < last[:, None])
        # the candidates' rows end outside ``inside``, so no run spans two of them
        runs = _runs(((cov == 0) & inside).ravel())
        yield c + runs[:, 0] // nb, runs[:, 0] % nb, runs[:, 0] % nb + (runs[:, 1] - runs[:, 0]), bin_px, lo


def _holes(a: np.ndarray, leans: np.ndarray, slopes: np.ndarray, x_ref: float, y_ref: float,
           med_w: float, hull: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
    """Every hole of every candidate frame at once (:func:`_hole_chunks`): (candidate, first
    column, end column, bin width, the columns' origin). For a few hundred leans of one photo's
    boxes; ``hull`` as there."""
    ks, starts, ends, bin_px, lo = [], [], [], 1.0, 0.0
    for k, h0, h1, bin_px, lo in _hole_chunks(a, leans, slopes, x_ref, y_ref, med_w, hull):
        ks.append(k)
        starts.append(h0)
        ends.append(h1)
    return np.concatenate(ks), np.concatenate(starts), np.concatenate(ends), bin_px, lo


def _room(a: np.ndarray, leans: np.ndarray, slopes: np.ndarray, x_ref: float, y_ref: float,
          med_w: float, count: bool = False, hull: float = 0.0) -> np.ndarray:
    """For each candidate upright frame: its holes' columns (:func:`_hole_chunks`), in sixteenths
    of the median width, each hole counted up to two median widths (the room between the aisle
    and a stray box far from it grows with the shear and must not win). ``count``: the number of
    holes instead, their room (each up to half a median width) breaking ties: for tight boxes,
    whose thin uprights each leave a hole of a few columns, a frame that keeps more of them
    clean is the better one, though a bay's emptied end beside one upright would outweigh
    several of them in columns. Summed chunk by chunk; ``hull`` as in :func:`_hole_chunks`."""
    room = np.zeros(len(leans))
    holes = np.zeros(len(leans))
    for k, h0, h1, bin_px, _ in _hole_chunks(a, leans, slopes, x_ref, y_ref, med_w, hull):
        cap = int(np.ceil((0.5 if count else 2.0) * med_w / bin_px))
        room += np.bincount(k, weights=np.minimum(h1 - h0, cap), minlength=len(leans))
        holes += np.bincount(k, minlength=len(leans))
    if count:
        return holes + room / (room.max() + 1.0)
    return room


def _plateau_middle(score: np.ndarray, start: tuple[int, ...]) -> tuple[float, ...]:
    """The middle (mean index) of the connected set of best-scoring cells of a small grid that
    holds the best cell nearest ``start``: leans that tie leave the same room over a range (a
    gutter as wide as w stays clean over leans of about w over the aisle's height)."""
    best = score == score.max()
    cells = np.argwhere(best)
    seed = tuple(cells[np.argmin(np.abs(cells - np.asarray(start)).sum(axis=1))])
    seen = {seed}
    todo = [seed]
    while todo:  # a flood fill over a grid of a few hundred cells
        cell = todo.pop()
        for axis in range(score.ndim):
            for d in (-1, 1):
                nxt = list(cell)
                nxt[axis] += d
                t = tuple(nxt)
                if 0 <= t[axis] < score.shape[axis] and t not in seen and best[t]:
                    seen.add(t)
                    todo.append(t)
    return tuple(float(v) for v in np.mean(np.array(sorted(seen)), axis=0))


def upright_lean(xyxy: np.ndarray, *, max_deg: float = 3.0, step_deg: float = 0.1, center: float = 0.0) -> float:
    """How far uprights lean in the image (dx/dy), from where the product boxes leave room.

    Products stand on shelves between uprights, which lean with the camera's roll; an upright
    is a band of columns that no product crosses, straight only when the columns lean as it
    does. For every candidate lean in ``[-max_deg, max_deg]`` the boxes are sheared (each by
    its centre's height) and the columns (bins of a sixteenth of the median width) between the
    outermost boxes that no box covers are counted, each empty stretch up to two median widths;
    the middle of the run of leans that leave the most empty columns wins (with no upright in
    view every lean ties: no lean). ``center`` (dx/dy): search ``max_deg`` either side of this
    lean instead of upright, and fall back on it when every lean ties. Uprights that converge
    (a camera tilted up or down): :func:`upright_frame`."""
    a = as_boxes(xyxy)
    if len(a) < 8:
        return 0.0
    return _lean_search(a, max_deg, step_deg, center, float(np.median((a[:, 1] + a[:, 3]) / 2)))[0]


def _lean_search(a: np.ndarray, max_deg: float, step_deg: float, center: float, y_ref: float,
                 count: bool = False, hull: float = 0.0) -> tuple[float, float]:
    """:func:`upright_lean`'s search: (lean, room it leaves; ``count`` and ``hull``: see
    :func:`_room`)."""
    med_w = max(float(np.median(a[:, 2] - a[:, 0])), 1.0)
    n_ang = int(round(max_deg / step_deg))
    c_deg = float(np.degrees(np.arctan(center)))
    leans = np.tan(np.radians(c_deg + np.arange(-n_ang, n_ang + 1) * step_deg))
    room = _room(a, leans, np.zeros_like(leans), 0.0, y_ref, med_w, count, hull)
    (mid,) = _plateau_middle(room, (n_ang,))
    return float(np.tan(np.radians(c_deg + (mid - n_ang) * step_deg))), float(room.max())


#: Uprights converging on a point above or below the image: the search allows their lean to
#: differ by up to this many degrees between the leftmost and the rightmost products (phone
#: photos of shelves: a median of 4.5 degrees between the left and right thirds' vertical
#: edges, 8 at the 90th percentile, over the 85 real photos).
UPRIGHT_TURN_DEG = 20.0
#: When the converging search finds no frame, it looks again with each box narrowed as the hull
#: of a product leaning with the candidate frame, by a lean of at most this many degrees. More
#: narrows the boxes of steep candidates into chance holes; narrowing in every search instead of
#: only when the first finds nothing won about as many generated tight aisles as it lost (caps
#: of 0.75 to 3 degrees); as a second search, 1.5 degrees won 27 of 1400 fresh ones and lost 3.
_HULL_DEG = 1.5
#: Above this many boxes (a panorama of many photos, each tilted its own way, and a search
#: whose cost grows with the boxes) the uprights are taken as parallel.
_TURN_MAX_BOXES = 5_000


def upright_frame(xyxy: np.ndarray, *, max_deg: float = 3.0, center: float = 0.0,
                  max_turn_deg: float = UPRIGHT_TURN_DEG, fixed_middle: bool = False) -> tuple[float, float, float, float]:
    """How the uprights stand in the image: ``(lean, slope, x_ref, y_ref)``, the upright
    through column ``x'`` at height ``y_ref`` leaning by ``lean + slope * (x' - x_ref)`` (dx/dy).

    A phone tilted up or down (to get the top or the bottom shelf in) makes the uprights
    converge on a point above or below the photo: the left ones lean one way and the right ones
    the other, by several degrees at the photo's sides (a median of 4.5 degrees between the
    vertical edges of the left and right thirds of the 85 real shelf photos), and no single lean
    keeps a thin upright's gutter clean from the top shelf to the bottom one.

    Where the boxes are loose (see :func:`_tight`: the median of the spaces between neighbouring
    products that do not touch ``_TIGHT`` median widths or more, as the built-in model's are on
    real photos, and more than a fifth of them apart), their spaces
    line up by chance over a few shelves and make as much room as any frame would: the frame is
    the best single lean, as :func:`upright_lean` finds it (``max_deg`` either side of
    ``center``; slope 0). So it is above ``_TURN_MAX_BOXES`` boxes. Tight boxes (a real
    detector's) leave each upright a hole of a few columns, and the frames are compared by how
    many holes they leave (each hole's room, up to half a width, breaking ties: see
    :func:`_room`):

    1. the best single lean, as above;
    2. every lean an upright may take anywhere (``max_deg`` plus half ``max_turn_deg`` either
       side of ``center``) is tried alone; holes at one place (within a median width) over
       three leans or more make a cluster, one upright, standing at the lean where its hole is
       widest; the ``_MAX_CLUSTERS`` clean over the most leans are kept;
    3. the candidate frames: the line through each pair of clusters two widths apart or more,
       with ``fixed_middle`` (facing the shelves) the line through each cluster and ``center``
       at the middle, and single leans (the first search's and each cluster's); a single
       lean within step 1's range, a line's lean at the middle within it plus the line's own
       turn over the boxes' span (the middle of the boxes is the camera's centre column only
       in an uncropped photo facing the shelves, and a tilted camera leans the uprights
       elsewhere) and within step 2's range, slopes turning the outermost products' uprights
       by at most ``max_turn_deg`` apart, one candidate per cell of the grid below;
    4. the best, refined over a small grid around it (0.1 degree of lean, a sixth of the slope
       range), is kept when it keeps more holes clean than the single lean, all scored
       together (a cluster of spaces lining up by chance finds no partner, and a steep lean
       that only widens one hole beside a bay's emptied end does not win);
    5. when none is kept, steps 1 to 4 once more with each box narrowed as the hull of a
       product leaning with the candidate frame (by a lean of at most ``_HULL_DEG``): products
       leaning with steep uprights have hulls that close a thin upright's hole at every lean.
       The narrowed boxes leave chance holes too, so in this second search a line's lean at
       the middle keeps to step 1's range (beyond it, generated aisles facing the shelves got
       frames 3 to 5 degrees off square that no upright stood on)."""
    return _upright_frame(xyxy, max_deg=max_deg, center=center, max_turn_deg=max_turn_deg,
                          fixed_middle=fixed_middle)[:4]


def _upright_frame(xyxy: np.ndarray, *, max_deg: float = 3.0, center: float = 0.0,
                   max_turn_deg: float = UPRIGHT_TURN_DEG, fixed_middle: bool = False,
                   tight: bool | None = None) -> tuple[float, float, float, float, float]:
    """:func:`upright_frame`'s tuple and the largest lean (dx/dy) by which the boxes were
    narrowed as leaning products' hulls when the frame was chosen: ``tan(_HULL_DEG)`` where
    step 5 found it (narrowing them by more for the cuts opens chance gutters), ``inf`` where
    the boxes were not narrowed. ``tight``: :func:`_tight` of the boxes, when the caller has
    it."""
    a = as_boxes(xyxy)
    if len(a) < 8:
        return 0.0, 0.0, 0.0, 0.0, np.inf
    cy = (a[:, 1] + a[:, 3]) / 2
    cx = (a[:, 0] + a[:, 2]) / 2
    y_ref = float(np.median(cy))
    x_ref = float((cx.min() + cx.max()) / 2)
    span = float(cx.max() - cx.min())
    reach = float(np.abs(cy - y_ref).max())
    if max_turn_deg <= 0 or span <= 0 or len(a) > _TURN_MAX_BOXES or not (_tight(a) if tight is None else tight):
        return _lean_search(a, max_deg, 0.1, center, y_ref)[0], 0.0, x_ref, y_ref, np.inf

    def search(hull: float, line_deg: float) -> tuple[tuple[float, float, float, float], bool]:
        # steps 1 to 4, each box narrowed as a hull by a lean of at most ``hull`` (dx/dy), the
        # lines' lean at the middle within ``line_deg`` of ``center``
        lean = _lean_search(a, max_deg, 0.1, center, y_ref, count=True, hull=hull)[0]
        med_w = max(float(np.median(a[:, 2] - a[:, 0])), 1.0)
        # the slope that turns the outermost uprights by max_turn_deg apart, and no more than keeps
        # every box's scale 1 + slope * dy within 0.5 to 1.5
        s_max = min(float(np.tan(np.radians(max_turn_deg))) / span, 0.5 / max(reach, 1.0))
        c_deg = float(np.degrees(np.arctan(center)))
        half = max_deg + 0.5 * max_turn_deg
        degs = c_deg + np.arange(-half, half + 1e-9, 0.1)
        k, h0, h1, bin_px, lo = _holes(a, np.tan(np.radians(degs)), np.zeros(len(degs)), x_ref, y_ref, med_w, hull)
        wide = h1 - h0
        # an upright's hole, not the room of a bay emptied or of the aisle's end (clean at every lean)
        keep = wide * bin_px < 2 * med_w
        k, h0, wide = k[keep], h0[keep], wide[keep]
        if len(k) == 0:
            return (lean, 0.0, x_ref, y_ref), False
        mid = h0 + wide / 2
        order = np.argsort(mid, kind="stable")
        k, mid, wide = k[order], mid[order], wide[order]
        # holes closer than a median width make one cluster: one upright (its column moves a little
        # with the lean, the more the further from y_ref its boxes stand)
        group = np.r_[0, np.cumsum(np.diff(mid) * bin_px > med_w)]
        n_g = int(group[-1]) + 1
        # a cluster that holes at a lean or two only is chance: an upright stays clean over a range;
        # of the others, the _MAX_CLUSTERS clean over the most leans (the pairs below grow with
        # their square: a long row of cans in tidy columns leaves a cluster at every column)
        n_leans = np.bincount(np.unique(group * len(degs) + k) // len(degs), minlength=n_g)
        chosen = np.flatnonzero(n_leans >= 3)
        chosen = chosen[np.argsort(-n_leans[chosen], kind="stable")[:_MAX_CLUSTERS]]
        if len(chosen) == 0:
            return (lean, 0.0, x_ref, y_ref), False
        sel = np.isin(group, chosen)
        group = np.unique(group[sel], return_inverse=True)[1]  # 0 .. n_g-1, in column order
        k, mid, wide = k[sel], mid[sel], wide[sel]
        n_g = len(chosen)
        weight = np.bincount(group, weights=wide, minlength=n_g)
        # each cluster's lean: where its room is widest (the middle of the leans that tie), since
        # the room of an upright beside a short or sparse bay stays open over a lopsided range
        per = np.zeros((n_g, len(degs)))
        np.add.at(per, (group, k), wide)
        g_deg = np.array([degs[int(round(_plateau_middle(row, (int(np.argmax(row)),))[0]))] for row in per])
        # columns back in pixels
        g_x = lo + np.bincount(group, weights=wide * mid, minlength=n_g) / weight * bin_px
        g_lean = np.tan(np.radians(g_deg))
        # candidate frames: the line through each pair of clusters at least two widths apart and,
        # facing the shelves, the line through each cluster and the square lean at the middle; a
        # cluster of spaces lining up by chance finds no partner that keeps more holes clean
        i, j = np.triu_indices(len(g_x), 1)
        apart = np.abs(g_x[j] - g_x[i]) >= 2 * med_w
        i, j = i[apart], j[apart]
        c_l1 = (g_lean[j] - g_lean[i]) / (g_x[j] - g_x[i])
        c_l0 = g_lean[i] + c_l1 * (x_ref - g_x[i])
        if fixed_middle:
            far = np.abs(g_x - x_ref) >= 2 * med_w
            c_l0 = np.r_[c_l0, np.full(int(far.sum()), float(center))]
            c_l1 = np.r_[c_l1, (g_lean[far] - center) / (g_x[far] - x_ref)]
        # and a single lean at each cluster within the first search's range (a start to refine)
        n_lines = len(c_l0)
        c_l0, c_l1 = np.r_[c_l0, g_lean], np.r_[c_l1, np.zeros(len(g_lean))]
        ok = np.abs(c_l1) <= s_max * (1 + 1e-9)
        # a line's lean at the middle may leave the first search's range: the middle of the
        # boxes is the camera's centre column only in a photo that faces the shelves and is not
        # cropped; seen down an aisle (the near side larger) or cut from a larger photo, a tilted
        # camera leans the uprights there too, besides the roll. By no more than the line's own
        # turn over the boxes' span (the camera's centre column lies within about a span of the
        # middle), and within the range the clusters were sought in: a line through two chance
        # clusters 12 degrees off, nearly parallel, is a steep single lean. A single lean (one
        # cluster's) stays within the first search's range: one hole alone may be chance
        dev = np.abs(np.degrees(np.arctan(c_l0)) - c_deg)
        turn = np.degrees(np.arctan(np.abs(c_l1) * span))
        ok &= dev <= np.where(np.arange(len(c_l0)) < n_lines, np.minimum(line_deg, max_deg + turn), max_deg) + 1e-9
        # one candidate per cell of the refining grid below (many pairs give nearly the same line)
        key = np.round(np.c_[np.degrees(np.arctan(c_l0)) / 0.1, c_l1 / (s_max / 18)]).astype(np.int64)
        _, first = np.unique(key[ok], axis=0, return_index=True)
        c_l0, c_l1 = c_l0[ok][np.sort(first)], c_l1[ok][np.sort(first)]
        if len(c_l0) == 0:
            return (lean, 0.0, x_ref, y_ref), False
        b = int(np.argmax(_room(a, c_l0, c_l1, x_ref, y_ref, med_w, count=True, hull=hull)))
        # then a small search around the best: three tenths of a degree of lean either side, and a
        # sixth of the slope's range; the middle of the cells that leave the most holes. The single
        # lean is scored with them, as the first frame, so that the counts compare alike
        b_deg = float(np.degrees(np.arctan(c_l0[b])))
        g_l0 = np.tan(np.radians(b_deg + np.linspace(-0.3, 0.3, 7)))
        g_l1 = c_l1[b] + np.linspace(-s_max / 6, s_max / 6, 7)
        lv, sv = np.meshgrid(g_l0, g_l1, indexing="ij")
        ok = (np.abs(sv) <= s_max * (1 + 1e-9)).ravel()
        rr = _room(a, np.r_[lean, lv.ravel()[ok]], np.r_[0.0, sv.ravel()[ok]], x_ref, y_ref, med_w, count=True,
                   hull=hull)
        grid = np.full(lv.size, -1.0)
        grid[ok] = rr[1:]
        grid = grid.reshape(lv.shape)
        # kept only when it keeps more holes clean than the single lean (not merely more room: a
        # steep single lean can widen one hole beside a bay's emptied end)
        if np.floor(grid.max()) <= np.floor(rr[0]):
            return (lean, 0.0, x_ref, y_ref), False
        mi, mj = _plateau_middle(np.floor(grid), (3, 3))
        return (float(np.tan(np.radians(b_deg + (mi - 3) * 0.1))), float(np.interp(mj, np.arange(7), g_l1)),
                x_ref, y_ref), True

    frame, kept = search(0.0, max_deg + 0.5 * max_turn_deg)
    if not kept:
        # no converging frame: the hulls of products leaning with steep uprights may have closed
        # their holes at every lean; once more with each box narrowed as such a hull
        other, kept = search(float(np.tan(np.radians(_HULL_DEG))), max_deg)
        if kept:
            return (*other, float(np.tan(np.radians(_HULL_DEG))))
    return (*frame, np.inf)


#: At most this many hole clusters (those clean over the most leans) make the converging
#: frame's candidates.
_MAX_CLUSTERS = 12


#: Boxes are tight enough to trust a converging frame (:func:`upright_frame`) when the median
#: of the spaces between neighbouring products that do not touch (over a hundredth of a width;
#: half a width or more are gaps) is under this many median widths: generated tight boxes with
#: 3 to 5 % jitter leave 0.015 to 0.045, the same aisles with spaces of up to a quarter of a
#: product 0.063 to 0.137, the built-in model's boxes on the 85 real photos a median of 0.091.
#: A median, robust to the uprights' own gutters (a sixth of the spaces where bays hold six
#: products a shelf).
_TIGHT = 0.05


def _tight(a: np.ndarray, pairs=None) -> bool:
    """Whether the boxes leave only thin spaces between neighbouring products (see ``_TIGHT``);
    ``pairs``: their :func:`neighbour_pairs`, when at hand."""
    if pairs is None:
        pairs = neighbour_pairs(a)
    med_w = max(float(np.median(a[:, 2] - a[:, 0])), 1.0)
    space = (a[pairs.right, 0] - a[pairs.left, 2]) / med_w
    space = space[space < _GAP_SPACE]
    apart = space[space > 0.01]
    if len(space) < 8:
        return False
    # nearly every neighbour touching or overlapping (what is left apart is mostly the uprights'
    # own gutters) is the tightest of all; otherwise the median of the spaces that do not touch
    return len(apart) <= 0.2 * len(space) or (len(apart) >= 8 and float(np.median(apart)) < _TIGHT)


#: Facing the shelves, the uprights' lean is sought this many degrees either side of square to
#: the shelf lines.
_SQUARE_DEG = 0.5


def _lean_of(a: np.ndarray, tight: bool | None = None) -> tuple[float, float, float, float, float]:
    """The uprights' frame for :func:`find_bays` (:func:`_upright_frame`'s tuple; ``tight``:
    :func:`_tight` of the boxes, when at hand). Facing the
    shelves (parallel shelf lines), the camera's roll turns shelves and uprights alike, so the
    uprights stand nearly square to the shelf lines, whose tilt is measured on many boxes at
    once and far surer than the room the boxes leave: the lean is sought within
    ``_SQUARE_DEG`` of square. Within, not at: a camera turned by a few degrees, too few for
    the shelf lines to converge measurably, still tilts the shelves above and below its height
    by different amounts, so their pooled tilt misses the roll by a few tenths of a degree,
    enough to close the gutter of a thin upright over a tall bay. Seen down an aisle
    (converging shelves) the shelf lines do not tell the roll: the whole range. Either way the
    uprights may converge (a camera tilted up or down, which leaves the shelf lines level), and
    the frames built on two uprights' holes may lean at the middle beyond that range (see
    :func:`upright_frame`, step 3)."""
    if len(a) >= 8:
        frame = find_rows(a)
        if frame.spread == 0.0:
            return _upright_frame(a, max_deg=_SQUARE_DEG, center=-float(np.tan(np.radians(frame.tilt_deg))),
                                  fixed_middle=True, tight=tight)
    return _upright_frame(a, tight=tight)


#: Neighbouring pairs needed to measure the boxes' own noise (:func:`_jump_tolerance`).
_NOISE_PAIRS = 20


def _jump_tolerance(rel: np.ndarray, calm: np.ndarray, jump_tol: float) -> float:
    """How far (in taller-box heights) the bottoms of a neighbouring pair may disagree and still
    stand on one shelf line, for the height-jump test: ``jump_tol``, or more where the boxes'
    own noise is larger. A detector whose box edges wander by 5 % of a box (real ones do) puts a
    tenth of truly aligned pairs past a fixed 0.12, and where those line up over a few shelves
    they read as a jump in shelf height: on generated aisles with 5 % jitter 24 false cuts and
    bays right on 57 of 80 instead of 74 (an outside review). The noise is 3.5 robust standard
    deviations (1.4826 median absolute deviations) of ``rel``, the pairs' bottom disagreements,
    over the pairs of boxes standing on the shelf (``calm``: none stacked on another); real
    jumps are a minority of the pairs and do not move the median. The narrow-gutter test keeps
    ``jump_tol`` (there a gutter stands for the cut, the shelf lines only confirm it)."""
    r = rel[calm]
    if r.size < _NOISE_PAIRS:
        return jump_tol
    spread = 1.4826 * float(np.median(np.abs(r - np.median(r))))
    return max(jump_tol, 3.5 * spread)


#: Neighbours judged for a jump in shelf height need only overlap vertically by this share of
#: the shorter box: across a jump of half a shelf pitch no box has a neighbour overlapping it by
#: half, so no misaligned pair marked the jump (an outside review: two bays side by side, the
#: right one lowered by 130 to 170 px on a 300 px pitch, were one bay of one row).
_JUMP_OVERLAP = 0.3


#: Lined-up breaks (see :func:`_lined_up_breaks`): their mean space must exceed the usual one by
#: this many standard errors; they must come on this share of the shelves over the column; and a
#: break counts for the columns within this many median widths of its middle.
_BREAK_Z = 5.0
_BREAK_SHARE = 0.8
_BREAK_TOL = 0.12


def _lined_up_breaks(a: np.ndarray, pairs, stacked: np.ndarray, med_w: float, shelves: np.ndarray,
                     interval_sum, to_bin, thin_gutter: float, window: float) -> np.ndarray:
    """Columns (bins of :func:`find_bays`) where the boxes break off on nearly every shelf
    with a space on average wider than the usual one: a thin upright whose gutter the boxes'
    jitter closes on a shelf or two. The gutter rule needs columns that no box crosses; with
    edges wandering by 3 % of a width, an upright a tenth of a width wide keeps about half
    of it clean over six shelves, no wider than the widest spaces of single neighbours. Its
    breaks, though, stand at one column on every shelf, and their mean space is the upright's
    width: the chance that six spaces of touching products (a robust standard deviation of
    2.5 % of a width) average a tenth is nil. So a column is cut where the breaks between
    neighbouring standing products within ``_BREAK_TOL`` median widths of it
    - come on at least ``_BREAK_SHARE`` of its shelves (and 3 or more; ``shelves``, counted
      with each box on the bins it covers whole),
    - have a mean space (overlaps counted down to -0.2 widths) of at least ``thin_gutter``
      median widths, above the usual space by ``_BREAK_Z`` standard errors: the usual space
      is the larger of the mean spaces between the neighbours within ``window`` widths on
      either side (the column's own breaks left out) and the median space of all,
    - and at least half of them are wider than the usual space by two standard deviations.
    Products in tidy columns line up their breaks too, but at the usual space, and one wide
    space among them (a product missing on one shelf) is not enough. Loose boxes (products a
    tenth of a width apart, or a noisier detector) are asked the same, their wider spread of
    spaces raising the bar: boxes made from the real photos' rows with products up to a
    tenth of a width apart (``scripts/eval_audit_real.py --label-boxes 0.2 --label-spacing
    0.1``) pass as tight on 11 of 85 photos, and asking the breaks of the others too lifted
    their rows' recall by a tenth, while the built-in model's loose boxes on the same photos
    get no cut more or less. Not told apart from an upright: a space of a tenth of a width
    between two product families (or a divider) on every shelf of one bay. Measured:
    docs/audit.md, "Real photos' geometry with a detector's boxes"."""
    nb = len(shelves)
    i, j = pairs.left, pairs.right
    sp = a[j, 0] - a[i, 2]
    ok = (sp < _GAP_SPACE * med_w) & ~stacked[i] & ~stacked[j]
    if ok.sum() < 20:
        return np.zeros(nb, bool)
    sp, i, j = sp[ok], i[ok], j[ok]
    mu = float(np.median(sp))
    sigma = max(1.4826 * float(np.median(np.abs(sp - mu))), 0.01 * med_w)
    mid = (a[i, 2] + a[j, 0]) / 2
    sp = np.maximum(sp, -0.2 * med_w)
    tol, reach = _BREAK_TOL * med_w, window * med_w
    one = np.ones(len(sp))
    count = interval_sum(mid - tol, mid + tol, one)
    mean = interval_sum(mid - tol, mid + tol, sp) / np.maximum(count, 1.0)
    # the usual space on either side: the spaces within ``window`` widths left (and right) of
    # the column, its own breaks left out; where a side has under three, the median of all
    ref = np.full(nb, mu)
    for lo, hi in ((mid + tol, mid + reach), (mid - reach, mid - tol)):
        n_side = interval_sum(lo, hi, one)
        side = np.where(n_side >= 3, interval_sum(lo, hi, sp) / np.maximum(n_side, 1.0), mu)
        ref = np.maximum(ref, side)
    # and most of the breaks wide on their own (one wide space on one shelf of a bay in tidy
    # columns, whose breaks line up at every column, lifts that column's mean as much)
    wide = sp > ref[np.minimum(to_bin(mid), nb - 1)] + 2.0 * sigma
    n_wide = interval_sum(mid - tol, mid + tol, wide.astype(np.float64))
    return ((count >= np.maximum(3.0, _BREAK_SHARE * shelves)) & (mean >= thin_gutter * med_w)
            & (mean - ref > _BREAK_Z * sigma / np.sqrt(np.maximum(count, 1.0))) & (n_wide >= 0.5 * count))


#: the evidence of each kind of cut, weakest first: a sliver of a bay goes to the side of the weaker
_CUT_RANK = {"shelf break": 0, "height jump": 1, "upright": 2}

#: the photo's shelf lines are compared at columns this many bins (of a sixteenth of the median
#: product width) apart
_PHOTO_STEP = 4


def _photo_breaks(picture: tuple[np.ndarray, float], a: np.ndarray, cx: np.ndarray, frame: RowLayout,
                  lean_: float, lean_slope: float, x_lean: float, y_lean: float, med_w: float, med_h: float,
                  x0: float, bin_px: float, nb: int) -> np.ndarray:
    """(nb,) bool: the bins of columns where the photo's shelf lines break (:mod:`.shelflines`),
    looked at between the top of the highest box and the bottom of the lowest (in the frame of
    the shelf lines; not the ceiling or the floor), the columns following the uprights."""
    from .shelflines import HALF, HOLD, REACH, RUN, SLACK, WIDE, edge_map, filled, line_breaks, line_match

    gray, scale = picture
    gray = filled(gray)
    q = _PHOTO_STEP
    us = x0 + (np.arange(0, nb, q) + q / 2) * bin_px
    yp_top = frame.deskew(a[:, 1], cx)
    yp_bot = frame.deskew(a[:, 3], cx)

    def to_image(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return x + (lean_ + lean_slope * (x - x_lean)) * (y - y_lean)

    edges = edge_map(gray, RUN * med_w * scale)
    y_lo, y_hi = float(yp_top.min()), float(yp_bot.max())
    r = line_match(edges, scale, us, HALF * med_w, frame, to_image, y_lo, y_hi, SLACK * med_h)
    step = q * bin_px
    cut = line_breaks(r, int(round(REACH * med_w / step)), int(round(HALF * med_w / step)))
    if cut.any():
        # a change in what stands on a shelf (a gap, other products) spans a product or two;
        # an upright or a jump goes on: no break where the lines line up again further out
        wide = line_match(edges, scale, us[cut], WIDE * med_w, frame, to_image, y_lo, y_hi, SLACK * med_h)
        cut[np.flatnonzero(cut)] = wide < HOLD  # (unknown out there, past the photo's edge: no cut)
    return np.repeat(cut, q)[:nb]  # (each compared column stands for its q bins)


def find_bays(
    xyxy: np.ndarray,
    *,
    gutter_frac: float = 0.2,
    min_gutter: float = 0.25,
    window: float = 3.0,
    jump_min: int = 2,
    jump_frac: float = 0.4,
    jump_tol: float = 0.12,
    jump_gutter: float = 0.1,
    thin_gutter: float = 0.05,
    lean: float | None = None,
    picture: tuple[np.ndarray, float] | None = None,
) -> BayCuts:
    """Cut the image's columns into bays (see the module doc). ``xyxy`` (N, 4) pixels.
    ``lean``: how far the uprights lean (dx/dy), all alike; None estimates their frame
    (:func:`upright_frame`). ``thin_gutter`` is the floor of the spacing rule only: where the
    shelf lines do not go on, the gutter needs ``jump_gutter`` (a twentieth of a width there let
    a sliver of a crossed column beside a real upright take its cut, as measured on generated
    aisles with loose boxes). ``picture``: the photo as ``(grey, scale)``, an (H, W) greyscale
    array and its size over the boxes' pixels, to cut where its shelf lines break too."""
    a = as_boxes(xyxy)
    # the boxes in one order whatever order they come in (by left, top, right, bottom edge): the
    # sums over them (coverage, shelves per column) are of floats, whose rounding depends on the
    # order of addition, and a count compared with a share of such a sum sat on the line (a
    # panorama's boxes in the order its detections JSON lists them gave 3 bays, shuffled 4: an
    # outside review found auditing a JSON and the live run disagreeing)
    order = np.lexsort((a[:, 3], a[:, 2], a[:, 1], a[:, 0]))
    a = a[order]
    if not (0 < gutter_frac < 1) or min(min_gutter, jump_gutter, thin_gutter) < 0 or window <= 0 or jump_min < 1 \
            or not (0 < jump_frac <= 1):
        raise InvalidInputError("find_bays: gutter_frac must be in (0, 1), jump_frac in (0, 1], window > 0, "
                                "min_gutter, jump_gutter and thin_gutter >= 0, jump_min >= 1")
    require_finite(a, "find_bays: boxes")
    n = len(a)
    none = BayCuts(np.zeros(0), (), np.zeros(n, np.int64))
    if n < 4:
        return none
    # columns follow the uprights: shear each box by its centre's height so that they stand
    # upright (the shelf geometry below is measured on the boxes as they are)
    upright = a
    pairs = neighbour_pairs(upright)
    tight = _tight(upright, pairs)
    hull = np.inf
    if lean is None:
        lean_, lean_slope, x_lean, y_lean, hull = _lean_of(a, tight)
    else:
        lean_, lean_slope, x_lean = float(lean), 0.0, 0.0
        y_lean = float(np.median((a[:, 1] + a[:, 3]) / 2))
    if lean_ or lean_slope:
        a = a.copy()
        dy = (a[:, 1] + a[:, 3]) / 2 - y_lean
        a[:, 0] = _to_frame(a[:, 0], dy, lean_, lean_slope, x_lean)
        a[:, 2] = _to_frame(a[:, 2], dy, lean_, lean_slope, x_lean)
        if tight:
            # a product leaning with the uprights is boxed by its hull, wider than the product by
            # its height times the lean: side by side up to a thin upright, the hulls close its
            # gutter. Moved into the frame, each box is narrowed to the product's width at its
            # middle height (at most by half its width; in the frame's scale, 1 + slope * dy).
            # Only for tight boxes: loose ones (spaces of up to a quarter of a width, boxes
            # reaching across the uprights) are opened by it as often between products as at an
            # upright. A frame found through such hulls narrowed by at most ``hull`` is used with
            # the same cap (narrowing by more opens a chance gutter at every column of a steep
            # frame's far end: tall bottles in a fridge)
            tilt = np.minimum(np.abs(lean_ + lean_slope * ((a[:, 0] + a[:, 2]) / 2 - x_lean)), hull)
            inset = np.minimum(0.5 * (a[:, 3] - a[:, 1]) * tilt / (1.0 + lean_slope * dy), 0.25 * (a[:, 2] - a[:, 0]))
            a[:, 0] += inset
            a[:, 2] -= inset
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    med_w = max(float(np.median(w)), 1.0)
    med_h = max(float(np.median(h)), 1.0)
    bin_px = med_w / 16
    x0 = float(a[:, 0].min())
    nb = int(np.ceil((a[:, 2].max() - x0) / bin_px)) + 1

    def to_bin(x: np.ndarray) -> np.ndarray:
        return np.clip(np.floor((np.asarray(x) - x0) / bin_px).astype(np.int64), 0, nb)

    def interval_sum(lo: np.ndarray, hi: np.ndarray, weight: np.ndarray) -> np.ndarray:
        diff = np.zeros(nb + 2)
        np.add.at(diff, to_bin(lo), weight)
        np.add.at(diff, to_bin(hi) + 1, -weight)
        return np.cumsum(diff)[:nb]

    # the slope of the shelf lines everywhere (one vanishing point for the whole aisle)
    i, j = pairs.left, pairs.right
    # the usual space between a product and the next on its shelf (0 where they touch)
    space = np.maximum(a[j, 0] - a[i, 2], 0.0)
    spacing = float(np.median(space)) if len(space) else 0.0
    cx = (a[:, 0] + a[:, 2]) / 2
    x_ref, y_ref = float((cx.min() + cx.max()) / 2), float(np.median(a[:, 3]))
    field = slope_field(a, cx, x_ref, y_ref, pairs)
    if field is None:
        frame = RowLayout((), np.zeros(0, np.int64), 0.0, x_ref)
    else:
        frame = RowLayout((), np.zeros(0, np.int64), float(np.degrees(np.arctan(field[0]))), x_ref,
                          _clip_spread(field[1], cx, x_ref), y_ref)
    stacked = stands_on_another(upright)
    standing = np.flatnonzero(~stacked)

    # 1. gutters: coverage against the highest coverage nearby on either side
    cov = interval_sum(a[:, 0], a[:, 2] - 1e-9, h)
    k = max(2, int(round(window * med_w / bin_px)))
    ref = np.minimum(_window_max(cov, k, "left"), _window_max(cov, k, "right"))
    # ... and the columns no box covers: in a wide empty stretch (a bay emptied, or left to a
    # region) the highest coverage nearby is nothing too, yet shelves on both sides of it
    # make it a gutter as much as a narrow one
    empty = cov <= 1e-9 * med_h
    low = ((cov < gutter_frac * ref) & (ref > 0)) | empty
    # nearly the widest space between neighbouring products of one bay: missing products left
    # out, and the spaces across lone gutters (where bays hold six products a shelf, the
    # uprights' own gutters are a sixth of the spaces, and would be their 95th percentile); not
    # those across gutters with another within two widths: products standing in tidy columns
    # leave a gutter at every column, and those spaces are the spacing the narrow rule must beat
    runs = _runs(low)
    close = np.diff((runs[:, 0] + runs[:, 1]) * (bin_px / 2)) < 2 * med_w
    lone = runs[~(np.r_[False, close] | np.r_[close, False])]
    # (each run's first and last bin, by their middles)
    lone_low = interval_sum(x0 + (lone[:, 0] + 0.5) * bin_px, x0 + (lone[:, 1] - 0.5) * bin_px,
                            np.ones(len(lone))) > 0
    # (a space reaching into a lone run is that run's: with jitter, a box ending short of the
    # upright leaves a space whose middle falls just outside the run)
    lone_sum = np.r_[0, np.cumsum(lone_low)]
    lo_b = np.minimum(to_bin(np.minimum(a[i, 2], a[j, 0])), nb - 1)
    hi_b = np.minimum(to_bin(np.maximum(a[i, 2], a[j, 0])), nb - 1)
    inner = (space < _GAP_SPACE * med_w) & (lone_sum[hi_b + 1] == lone_sum[lo_b])
    spacing_hi = float(np.quantile(space[inner], _SPACING_Q)) if inner.sum() >= 8 else np.inf
    gutter = np.zeros(nb, bool)
    reach = window * med_w

    def near_finder(idx: np.ndarray):
        # the boxes ``idx`` ending within reach left of a gutter and starting within reach right
        # of it, found by bisection on their edges
        by_right = idx[np.argsort(a[idx, 2], kind="stable")]
        by_left = idx[np.argsort(a[idx, 0], kind="stable")]
        rights, lefts = a[by_right, 2], a[by_left, 0]

        def near(g0: float, g1: float) -> tuple[np.ndarray, np.ndarray]:
            return (by_right[np.searchsorted(rights, g0 - reach, "left"):np.searchsorted(rights, g0 + bin_px, "right")],
                    by_left[np.searchsorted(lefts, g1 - bin_px, "left"):np.searchsorted(lefts, g1 + reach, "right")])
        return near

    near_standing = near_finder(standing)
    near_all = near_finder(np.arange(n))  # stacked ones included, for the interleaved shelves' test
    for s, e in _runs(low):
        # a gutter needs two shelves or more on each side (along a single shelf an empty
        # stretch may as well be a gap), and is measured in the widths of the products beside it
        g0, g1 = x0 + s * bin_px, x0 + e * bin_px
        left, right = near_standing(g0, g1)
        if len(left) == 0 or len(right) == 0:
            continue
        local_w = float(np.median(w[np.r_[left, right]]))
        width = (e - s) * bin_px
        if _shelf_count(a[left, 3], med_h) < 2 or _shelf_count(a[right, 3], med_h) < 2:
            continue
        # no wider than the usual space between products, with the shelf lines going on across
        # it, a gutter is that space (products standing in tidy columns), not an upright
        wide = width >= min_gutter * local_w
        narrow = width >= jump_gutter * local_w
        thin = width >= thin_gutter * local_w
        if (wide and width > SPACING_MULT * spacing) or (thin and width > SPACING_MULT * spacing_hi) or (
            (wide or narrow) and (not _shelves_continue(a, left, right, frame, jump_tol)
                                  or _interleaved(a, *near_all(g0, g1)))
        ):
            gutter[s:e] = True
    # 2. height jumps: misaligned junctions lined up over most shelves of the column
    # (a pair stands on one line when its bottoms agree with the slope of the shelf lines there)
    # price rails (wide, flat boxes) are no products: they neither pair nor count as shelves
    goods = np.flatnonzero(~((w > 3 * h) & (h < 0.5 * med_h)))
    jp = neighbour_pairs(upright[goods], min_overlap=_JUMP_OVERLAP)
    i, j = goods[jp.left], goods[jp.right]
    xs, ys = (cx[i] + cx[j]) / 2, (a[i, 3] + a[j, 3]) / 2
    expected = frame.slope_at(frame.deskew(ys, xs))
    resid = (a[j, 3] - a[i, 3]) - expected * (cx[j] - cx[i])
    on_line = np.abs(resid) <= _jump_tolerance(resid / np.maximum(h[i], h[j]), ~stacked[i] & ~stacked[j],
                                               jump_tol) * np.maximum(h[i], h[j])
    lo = np.minimum(a[i, 2], a[j, 0]) - 0.25 * med_w
    hi = np.maximum(a[i, 2], a[j, 0]) + 0.25 * med_w
    misaligned = ~on_line & ~stacked[i] & ~stacked[j]
    mis = interval_sum(lo, hi, misaligned.astype(np.float64))
    ali = interval_sum(lo, hi, on_line.astype(np.float64))
    # the shelves in the column: the standing boxes over it, at most, nearby on either side (the
    # coverage over the median height counted the shelves of a panorama's large products twice);
    # a box under half the median height counts as its share of one (a price rail, a tag)
    shelf = np.intersect1d(standing, goods)
    weight = np.minimum(1.0, h[shelf] / (0.5 * med_h))
    stand = interval_sum(a[shelf, 0], a[shelf, 2] - 1e-9, weight)
    shelves = np.minimum(_window_max(stand, k, "left"), _window_max(stand, k, "right"))
    jump = (mis >= jump_min) & (mis >= jump_frac * shelves) & (ali <= 0.5 * mis)
    # breaks lined up on nearly every shelf. Here each box counts on the bins it covers whole:
    # neighbours that touch share the bin where one ends and the next begins, and the highest
    # count nearby (such a bin) counted every shelf twice. (The height-jump rule above keeps that
    # count, its threshold set with it: counted whole, a single tight bay with a tenth of its
    # products a sixth of their height off the shelf line got a false jump 15 times in 100
    # instead of 7, in an outside review)
    whole = interval_sum(a[shelf, 0] + 0.5 * bin_px, a[shelf, 2] - 0.5 * bin_px, weight)
    counted = np.minimum(_window_max(whole, k, "left"), _window_max(whole, k, "right"))
    gutter |= _lined_up_breaks(a, pairs, stacked, med_w, counted, interval_sum, to_bin, thin_gutter, window) & ~jump
    # 3. shelf lines that end or jump in the photo's pixels (where the boxes say nothing)
    broken = np.zeros(nb, bool)
    if picture is not None:
        broken = _photo_breaks(picture, a, cx, frame, lean_, lean_slope, x_lean, y_lean, med_w, med_h, x0, bin_px, nb)
        broken &= ~(gutter | jump)
    # one cut per run, at the middle of its gutter part if it has one
    cuts: list[float] = []
    kinds: list[str] = []
    spans: list[tuple[float, float]] = []
    for s, e in _runs(gutter | jump | broken):
        g = np.flatnonzero(gutter[s:e])
        if len(g):
            mid = s + (g[0] + g[-1] + 1) / 2
            kind = "upright"
            # the columns of the gutter no box covers at all (bins are whole: a box's edge
            # inside a bin makes it covered)
            free = np.flatnonzero(empty[s:e])
            spans.append((x0 + (s + free[0]) * bin_px, x0 + (s + free[-1] + 1) * bin_px) if len(free)
                         else (np.nan, np.nan))
        else:
            mid = (s + e) / 2
            kind = "height jump" if jump[s:e].any() else "shelf break"
            spans.append((np.nan, np.nan))
        cuts.append(x0 + mid * bin_px)
        kinds.append(kind)
    cut_arr = np.array(cuts)
    span_arr = np.array(spans, np.float64).reshape(-1, 2)
    # merge slivers: a bay narrower than two median widths joins its neighbour (the bays'
    # extents are measured once; dropping a cut joins the extents of the two bays beside it)
    lo_x = np.full(len(cut_arr) + 1, np.inf)
    hi_x = np.full(len(cut_arr) + 1, -np.inf)
    if len(cut_arr):
        bay_of = np.searchsorted(cut_arr, cx)
        np.minimum.at(lo_x, bay_of, a[:, 0])
        np.maximum.at(hi_x, bay_of, a[:, 2])
    while len(cut_arr):
        nbays = len(cut_arr) + 1
        width = np.where(np.isfinite(lo_x), hi_x - lo_x, 0.0)
        narrow = np.flatnonzero(width < 2 * med_w)
        if not len(narrow):
            break
        b = int(narrow[0])
        # drop the cut on the side whose neighbour is narrower (a sliver between two cuts goes
        # to the side of the weaker cut: a shelf break seen in the photo only, then a height
        # jump, rather than across an upright)
        if b == 0:
            drop = 0
        elif b == nbays - 1:
            drop = b - 1
        else:
            left_k, right_k = _CUT_RANK[kinds[b - 1]], _CUT_RANK[kinds[b]]
            if left_k != right_k:
                drop = b - 1 if left_k < right_k else b
            else:
                drop = b - 1 if width[b - 1] <= width[b + 1] else b
        lo_x[drop], hi_x[drop] = min(lo_x[drop], lo_x[drop + 1]), max(hi_x[drop], hi_x[drop + 1])
        lo_x, hi_x = np.delete(lo_x, drop + 1), np.delete(hi_x, drop + 1)
        cut_arr = np.delete(cut_arr, drop)
        span_arr = np.delete(span_arr, drop, axis=0)
        kinds.pop(drop)
    bay = np.empty(n, np.int64)
    bay[order] = np.searchsorted(cut_arr, cx)  # (each box's bay, in the order the boxes came)
    return BayCuts(cut_arr, tuple(kinds), bay, lean_, y_lean, span_arr,
                   lean_slope, x_lean)
