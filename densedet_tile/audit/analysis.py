"""The aisle audit as one pure function: boxes in, bays / rows / gaps / region counts / density out.

:func:`run_audit` takes global product boxes (``xyxy`` pixels of the upright image) and the
image size, cuts the image into bays (:mod:`.bays`: uprights and jumps in shelf height), finds
the shelf rows of each bay on its own (:mod:`.rows`: neighbouring bays often set their shelves at
different heights, and a view down an aisle makes each row converge at its own slope) and the
gaps along each row (:mod:`.gaps`: never across an upright or past the bay's end), counts
products per region when regions are given, and grids the density. Regions given by the caller
win where present: each region is one bay, and only the products outside every region make
the automatically found bays (the cuts between them are looked for among all the products).
:func:`audit_to_dict` turns the result into the JSON document (schema ``densedet-tile/audit@1``)
that the report and the ``audit`` command write.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np
import shapely

from ..errors import InvalidInputError
from ..types import _plain_numbers
from .bays import find_bays
from .boxes import as_boxes
from .gaps import DEFAULT_GAP_K, MIN_GAP_PX, EmptyShelf, Gap, find_empty_shelves, find_gaps
from .heatmap import DensityGrid, colour_top, density_grid
from .regions import MIN_THICKNESS, Region, inside_shares, overlapping_regions, region_members, thickness
from .rows import RowLayout, find_rows

__all__ = ["AuditSettings", "RegionStats", "AuditPart", "AuditResult", "run_audit", "usable_boxes", "audit_to_dict",
           "shelf_lines_scale", "AUDIT_SCHEMA"]

AUDIT_SCHEMA = "densedet-tile/audit@1"


@dataclass(frozen=True)
class AuditSettings:
    """Options of the audit. ``gap_k``: interior gap threshold in median product widths;
    ``end_gaps``/``end_k``: whether empty row ends count, and above how many median widths
    (default: ``gap_k`` widths plus the fixture's widest common product, see
    :func:`~densedet_tile.audit.gaps.find_gaps`); ``max_tilt``: largest tilt of parallel
    shelves searched, degrees; ``perspective``: recognise shelves converging down an aisle;
    ``bays``: cut the image into bays (else it is one fixture); ``min_row_products``: fewest
    boxes a row needs (a shelf between two rows needs at most two); ``cell``: heatmap cell in
    pixels (None: automatic; :func:`run_audit` refuses one that makes more than :data:`~densedet_tile.audit.heatmap.MAX_CELLS` cells); ``bay_width_m``:
    the width of one bay in metres, for facings per metre (None: not reported);
    ``min_region_inside``: a region with less of its area inside the image is reported in the
    result's warnings."""

    gap_k: float = DEFAULT_GAP_K
    end_gaps: bool = True
    end_k: float | None = None
    max_tilt: float = 4.0
    min_row_products: int = 3
    cell: int | None = None
    perspective: bool = True
    bays: bool = True
    bay_width_m: float | None = None
    min_region_inside: float = 0.5

    def __post_init__(self) -> None:
        # as the engine's specs do: numpy numbers become Python ones, numpy booleans Python bools,
        # and True / False is refused where a number belongs (it would read as 1 / 0)
        _plain_numbers(self)
        for name in ("end_gaps", "perspective", "bays"):
            v = getattr(self, name)
            if isinstance(v, np.bool_):
                object.__setattr__(self, name, bool(v))
            elif not isinstance(v, bool):
                raise InvalidInputError(f"AuditSettings.{name} must be True or False, got {v!r}")
        if not (_is_number(self.gap_k) and 0 < self.gap_k < 1e3):
            raise InvalidInputError(f"gap k must be a positive number of product widths under 1000, got {self.gap_k!r}")
        if self.end_k is not None and not (_is_number(self.end_k) and 0 < self.end_k < np.inf):
            raise InvalidInputError(f"end gap k must be a positive number of product widths, got {self.end_k!r}")
        if not (_is_number(self.max_tilt) and 0 <= self.max_tilt <= 30):
            raise InvalidInputError(f"max tilt must be in [0, 30] degrees, got {self.max_tilt!r}")
        if not (_is_int(self.min_row_products) and self.min_row_products >= 1):
            raise InvalidInputError(f"min_row_products must be a positive integer, got {self.min_row_products!r}")
        if self.cell is not None and not (_is_int(self.cell) and self.cell >= 1):
            raise InvalidInputError(f"heatmap cell must be a positive number of pixels, got {self.cell!r}")
        if self.bay_width_m is not None and not (_is_number(self.bay_width_m) and 0.05 <= self.bay_width_m <= 1e3):
            raise InvalidInputError(f"bay width must be 0.05 to 1000 metres, got {self.bay_width_m!r}")
        if not (_is_number(self.min_region_inside) and 0 <= self.min_region_inside <= 1):
            raise InvalidInputError(f"min_region_inside must be in [0, 1], got {self.min_region_inside!r}")


def _is_number(v: Any) -> bool:
    """A Python int or float, not a bool (NaN passes here and fails the range checks)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class RegionStats:
    """Figures of one region: products whose centre it holds, its area (px^2), products per
    megapixel of its area inside the image (None when none of it is inside), its gaps (count and summed width in products) and shelf rows, and the share
    of its area inside the image."""

    name: str
    products: int
    area_px: float
    density_per_mpx: float | None
    gaps: int
    gap_width_products: float
    bounds: tuple[float, float, float, float]
    rows: int = 0
    inside_share: float = 1.0


@dataclass(frozen=True, eq=False)
class AuditPart:
    """Rows and gaps of one bay: found in the image (``kind`` "bay") or given as a region
    (``kind`` "region"). ``index`` (M,) are the part's boxes in the image's box array;
    ``layout.assignment`` and the gaps' row numbers refer to the part's own rows. ``polygon`` is
    the bay's outline in image pixels (found bays: from the upper edge of its top row to the
    bottom line of its bottom row, across its products' columns; regions: the region's outer
    ring); ``edges`` what bounds it on the left and right: ``"upright"``, ``"height jump"`` or
    ``"shelf break"`` (a cut between found bays; the last seen in the photo's shelf lines only), ``"image edge"`` (its products reach the image border: the bay
    may go on beyond the photo), ``"end"`` (nothing beyond) or ``"region"`` (a region's own
    sides; a found bay's side where a region lies beside its products). A region is cut to
    the image first; ``pieces`` holds the outer ring of each of its pieces (largest first, the
    first is ``polygon``) when it has more than one there."""

    name: str | None
    index: np.ndarray
    layout: RowLayout
    gaps: tuple[Gap, ...]
    kind: str = "bay"
    polygon: tuple[tuple[float, float], ...] = ()
    edges: tuple[str, str] = ("end", "end")
    area: float | None = None
    pieces: tuple[tuple[tuple[float, float], ...], ...] = ()
    #: A found bay's strip of the image between the cuts beside it (shapely; None: no cuts): its
    #: rows and gaps are drawn within it (a box across an upright would carry them past it).
    strip: Any = field(default=None, repr=False)
    #: Whole shelves empty between two of its rows (see :func:`~densedet_tile.audit.gaps.find_empty_shelves`).
    empty_shelves: tuple[EmptyShelf, ...] = ()
    #: A region's holes (rings of its pieces' interiors, inside the image): its rows, gaps and
    #: empty shelves stop at them as at its outline (what stands there is not the region's).
    holes: tuple[tuple[tuple[float, float], ...], ...] = ()

    @property
    def rings(self) -> tuple[tuple[tuple[float, float], ...], ...]:
        """Every outer ring of the part's outline: its ``pieces``, else its one ``polygon``."""
        return self.pieces or (self.polygon,)

    @property
    def area_px(self) -> float:
        """``area`` when given (a region: its area inside the image, all its pieces, holes
        left out), else the area of the outline (shoelace), px^2."""
        if self.area is not None:
            return self.area
        if len(self.polygon) < 3:
            return 0.0
        p = np.asarray(self.polygon, dtype=np.float64)
        x, y = p[:, 0], p[:, 1]
        return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


@dataclass(frozen=True)
class EmptySection:
    """A stretch empty on every shelf between two found bays: the upright's gutter, much
    wider than an upright (a bay emptied, or the end of one). ``between`` names the bays on
    either side; ``x1``/``x2`` its extent at the height of the middle of ``polygon`` (it leans
    with the uprights), ``width_products`` in median widths of the products of the two bays.
    ``texture`` and ``looks``: the second look in the photo's pixels, as a gap's (None until
    then; ``xyxy`` is the outline's bounding box)."""

    between: tuple[str, str]
    x1: float
    x2: float
    width_px: float
    width_products: float
    polygon: tuple[tuple[float, float], ...]
    texture: float | None = None
    looks: str | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        xs, ys = [x for x, _ in self.polygon], [y for _, y in self.polygon]
        return (min(xs), min(ys), max(xs), max(ys)) if xs else (self.x1, 0.0, self.x2, 0.0)


@dataclass(frozen=True, eq=False)
class AuditResult:
    """Everything the audit found for one image (see :func:`run_audit`). ``warnings`` are
    one-line messages about the input (a region outside the image...)."""

    width: int
    height: int
    xyxy: np.ndarray
    parts: tuple[AuditPart, ...]
    grid: DensityGrid
    regions: tuple[RegionStats, ...] = ()
    region_shapes: tuple[Region, ...] = ()
    settings: AuditSettings = field(default_factory=AuditSettings)
    warnings: tuple[str, ...] = ()
    empty_sections: tuple[EmptySection, ...] = ()
    #: whether the photo's shelf lines were read for the bays (a picture was given, its
    #: products large enough in it, and found bays were cut: not when regions hold every box;
    #: not whether they cut any)
    shelf_lines: bool = False

    @property
    def gaps(self) -> tuple[Gap, ...]:
        """All gaps, part after part."""
        return tuple(g for p in self.parts for g in p.gaps)

    @property
    def empty_shelves(self) -> tuple[EmptyShelf, ...]:
        """All empty shelves, part after part."""
        return tuple(e for p in self.parts for e in p.empty_shelves)


def _bay_outline(a: np.ndarray, layout: RowLayout) -> tuple[tuple[float, float], ...]:
    """A found bay's outline: its top row's upper edge and its bottom row's bottom line across
    the columns of its products (their bounding box when it has no rows), moved up or down to
    hold the bay's products beyond its rows that stand close on (shelves too short to be a row,
    one after the other: each within a median product height of the outline so far). A box
    further off (on a sign, the ceiling, the floor) does not stretch it."""
    if len(a) == 0:
        return ()
    x0, x1 = float(a[:, 0].min()), float(a[:, 2].max())
    if not layout.rows:
        y0, y1 = float(a[:, 1].min()), float(a[:, 3].max())
        return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    top, bottom = layout.rows[0], layout.rows[-1]
    xs = np.array([x0, x1])
    # each box's reach beyond the lines (at its worse corner) and the near edge it starts from
    above = np.minimum(a[:, 1] - top.top_at(a[:, 0]), a[:, 1] - top.top_at(a[:, 2]))
    above_near = np.minimum(a[:, 3] - top.top_at(a[:, 0]), a[:, 3] - top.top_at(a[:, 2]))
    below = np.maximum(a[:, 3] - bottom.bottom_at(a[:, 0]), a[:, 3] - bottom.bottom_at(a[:, 2]))
    below_near = np.maximum(a[:, 1] - bottom.bottom_at(a[:, 0]), a[:, 1] - bottom.bottom_at(a[:, 2]))
    step = float(np.median(a[:, 3] - a[:, 1]))
    ty = top.top_at(xs) - _reach(-above, -above_near, step)
    by = bottom.bottom_at(xs) + _reach(below, below_near, step)
    return ((x0, float(ty[0])), (x1, float(ty[1])), (x1, float(by[1])), (x0, float(by[0])))


def _reach(far: np.ndarray, near: np.ndarray, step: float) -> float:
    """How far (>= 0) an outline's edge moves out to hold boxes reaching ``far`` past it whose
    near side is ``near`` past it (both outwards), taken in order of ``near``: a box joins while
    its near side lies within ``step`` of the edge so far."""
    out = far > 0
    if not out.any():
        return 0.0
    order = np.argsort(near[out], kind="stable")
    f, n = far[out][order], near[out][order]
    # the edge as it stands before each box: the furthest reach of the boxes before it
    edge = np.maximum.accumulate(np.r_[0.0, f])[:-1]
    stop = np.flatnonzero(n > edge + step)
    taken = f[: stop[0]] if len(stop) else f
    return float(taken.max(initial=0.0))


def _cut_ring(points: Sequence[tuple[float, float]], clip: Any) -> tuple[tuple[float, float], ...]:
    """The ring ``points`` cut by the shapely polygon ``clip`` (the image, a bay's strip): the
    ring itself when it lies inside, else the outer ring of the largest piece inside (an
    outline across the image's edge keeps its shape up to the edge: its corners are not pushed
    onto the edge), or () when nothing of it is inside."""
    rings = _cut_rings(points, clip)
    return rings[0] if rings else ()


def _cut_rings(points: Sequence[tuple[float, float]], clip: Any) -> list[tuple[tuple[float, float], ...]]:
    """Every piece of the ring ``points`` inside the shapely geometry ``clip``, as outer rings,
    largest first: ``[points]`` when it lies inside, [] when nothing of it is (a row across a
    region of several pieces, or across a region's hole, falls in several pieces)."""
    if len(points) < 3:
        return [tuple(points)]
    poly = shapely.Polygon(points)
    if not poly.is_valid:  # a row whose top and bottom lines cross inside it
        poly = shapely.make_valid(poly)
    if clip.covers(poly):
        return [tuple((float(x), float(y)) for x, y in points)]
    cut = poly.intersection(clip)
    pieces = [g for g in getattr(cut, "geoms", [cut]) if g.geom_type == "Polygon" and not g.is_empty and g.area > 0]
    pieces.sort(key=lambda g: -g.area)
    return [tuple((float(x), float(y)) for x, y in list(g.exterior.coords)[:-1]) for g in pieces]


def _bay_strip(cut: Any, b: int, width: float, height: float) -> Any:
    """The image's part between the cuts on either side of bay ``b`` (they lean with the
    uprights), as a shapely polygon. Converging cuts meet at the uprights' vanishing point: the
    strip stops short of it (at least twice as far from the cuts' reference height as any
    product), so that it never folds over itself."""
    ys = np.array([-height, 2.0 * height])
    slope = float(getattr(cut, "lean_slope", 0.0))
    if slope:
        y_v = cut.y_ref - 1.0 / slope  # where every cut line meets
        if y_v > cut.y_ref:
            ys[1] = min(ys[1], cut.y_ref + 0.9 * (y_v - cut.y_ref))
        else:
            ys[0] = max(ys[0], cut.y_ref - 0.9 * (cut.y_ref - y_v))
    xs = cut.cut_x(ys)  # (2, B-1)
    far = 10.0 * (width + height)
    left = xs[:, b - 1] if b > 0 else np.full(2, -far)
    right = xs[:, b] if b < len(cut.cuts) else np.full(2, far)
    strip = shapely.Polygon([(left[0], ys[0]), (right[0], ys[0]), (right[1], ys[1]), (left[1], ys[1])])
    return strip.intersection(shapely.box(0.0, 0.0, width, height))


def usable_boxes(xyxy: Any, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes clipped to the ``width`` x ``height`` image, and which of them keep an area there.

    Returns ``(clipped, keep)``: (N, 4) float64 and (N,) bool. Raises
    :class:`~densedet_tile.errors.InvalidInputError` for a non-finite coordinate. A box may
    overshoot the image a little (other detectors' boxes do); one with no area inside it (a
    point, a line, or a box of another image) is not a product of this image.
    """
    a = as_boxes(xyxy)
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidInputError(f"box {i} has a coordinate that is not a finite number: {a[i].tolist()}")
    c = np.empty_like(a)
    np.clip(a[:, 0::2], 0.0, float(width), out=c[:, 0::2])
    np.clip(a[:, 1::2], 0.0, float(height), out=c[:, 1::2])
    keep = (c[:, 2] > c[:, 0]) & (c[:, 3] > c[:, 1])
    return c, keep


#: the photo is looked at for its shelf lines with its products about this many pixels tall
#: (finer only costs time), and not at all when they are under ``SHELF_LINES_MIN_PX`` tall in
#: the picture given (a panorama's preview: no shelf edge to tell from the print)
SHELF_LINES_PX = 50.0
SHELF_LINES_MIN_PX = 12.0
#: and at most this many pixels of it are read (a panorama of small products: about 20 bytes a
#: pixel while it is read; products stay at least ``SHELF_LINES_MIN_PX`` tall or it is not read)
SHELF_LINES_MAX_PIXELS = 16_000_000
_SLACK = 1e-3


def _lines_scale(med_h: float, pixels: float, slack: float = 0.0) -> float | None:
    """The scale (at most 1) of a picture of ``pixels`` pixels whose products are ``med_h``
    tall at which the shelf lines are read (see ``SHELF_LINES_PX``), None when they would be
    under ``SHELF_LINES_MIN_PX``; ``slack`` (relative) lets a picture already at that scale, its
    size rounded, be read as it is."""
    if not med_h > 0:
        return None
    s = min(1.0, SHELF_LINES_PX * (1 + slack) / med_h, float(np.sqrt(SHELF_LINES_MAX_PIXELS * (1 + slack) / pixels)))
    return s if med_h * s >= SHELF_LINES_MIN_PX * (1 - slack) else None


def shelf_lines_scale(xyxy: Any, width: int, height: int) -> float | None:
    """The scale of the ``width`` x ``height`` image (at most 1) at which :func:`run_audit`
    reads the photo's shelf lines: its products' median height made ``SHELF_LINES_PX`` pixels,
    at most ``SHELF_LINES_MAX_PIXELS`` in all (None: no boxes, or too small to read). A picture
    loaded at this scale is read as it is, whatever else it is shown at."""
    a = as_boxes(xyxy)
    if len(a) == 0:
        return None
    return _lines_scale(float(np.median(a[:, 3] - a[:, 1])), float(width) * float(height))


def _grey(picture: Any) -> np.ndarray:
    """(H, W) float32 brightness of a picture: a PIL image of any mode (16-bit and float ones
    at their own values) or an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array of numbers, in
    any range (the shelf lines are compared by correlation: only contrast counts). Pixels that
    are not finite take the median of the others."""
    if hasattr(picture, "mode") and hasattr(picture, "convert"):
        try:
            arr = np.asarray(picture if picture.mode in ("F", "I", "I;16", "I;16B", "I;16L", "I;16N")
                             else picture.convert("L"))
        except ValueError as exc:  # a mode Pillow cannot turn grey (LAB)
            raise InvalidInputError(f"picture: cannot read an image of mode {picture.mode} ({exc})") from None
    else:
        arr = np.asarray(picture)
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"picture must hold numbers, got an array of {arr.dtype}")
    if arr.dtype.kind == "f" and arr.size:
        big = np.abs(arr[np.isfinite(arr)]).max(initial=0.0)
        if big > 1e30:  # (past float32: made inf, then blank)
            arr = arr / big
    arr = arr.astype(np.float32)
    if arr.ndim == 3:
        arr = arr[..., :3].mean(axis=2)
    if arr.ndim != 2 or arr.size == 0:
        raise InvalidInputError(f"picture must be an image or an (H, W) or (H, W, 3) array, got shape {arr.shape}")
    from .shelflines import filled

    return filled(arr)


def _shelf_photo(picture: Any, a: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float] | None:
    """The greyscale picture, and its scale to the image's pixels, in which :func:`find_bays`
    looks for shelf lines (None: too small for it, or no boxes). ``picture``: the upright image
    at any scale (see :func:`_grey`); made the image's shape at its scale, to the pixel, and
    shrunk to ``SHELF_LINES_PX`` pixels a product when it is finer."""
    from PIL import Image

    arr = _grey(picture)
    ph, pw = arr.shape
    if abs(pw / width - ph / height) > 0.02 * max(pw / width, ph / height) + 1.0 / min(width, height):
        raise InvalidInputError(f"the picture is {pw}x{ph}, not the shape of the {width}x{height} image "
                                "(another photo's, or not turned upright?)")
    if len(a) == 0:
        return None
    # (a thousandth of slack: a picture loaded at shelf_lines_scale, its size rounded, is read
    # as it is; its boxes there were clipped to the image, which moves the median a little)
    f = _lines_scale(float(np.median(a[:, 3] - a[:, 1])) * pw / width, float(pw * ph), _SLACK)
    if f is None:
        return None
    scale = pw / width * f
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if abs(size[0] - pw) <= 1 and abs(size[1] - ph) <= 1:
        size = (pw, ph)  # (no resample for a pixel of rounding)
    if size != (pw, ph):
        # (also the last pixel of a preview rounded the other way: the scale holds for x and y)
        arr = np.asarray(Image.fromarray(arr, mode="F").resize(size, Image.Resampling.BILINEAR), np.float32)
    return arr, size[0] / width


def run_audit(
    xyxy: np.ndarray,
    width: int,
    height: int,
    *,
    regions: Sequence[Region] | None = None,
    settings: AuditSettings | None = None,
    picture: Any = None,
) -> AuditResult:
    """Audit one image's products. ``xyxy`` (N, 4) float pixels of the upright
    ``width`` x ``height`` image; ``regions`` optional named polygons (same frame);
    ``picture`` the upright photo at any scale (a PIL image, or an (H, W) or (H, W, 3) array,
    as :func:`~densedet_tile.audit.report.load_preview_image` gives): the bays are then cut
    where its shelf lines end or jump, too (:mod:`.shelflines`). A picture of another shape
    than the image is refused.

    Boxes are clipped to the image; a box with no area inside it is refused
    (:class:`~densedet_tile.errors.InvalidInputError`): leave such boxes out first, with
    :func:`usable_boxes`, as ``densedet-tile audit`` does. Boxes are taken as they are: a pile of
    near-copies (a detector without NMS) makes the search for neighbours grow with its square
    (5 000 jittered copies of one box: about 50 s); thin it first with
    :func:`densedet_tile.merge.core.pile_kept`, as the command does.
    """
    s = AuditSettings() if settings is None else settings
    def whole(v: Any) -> bool:  # an integer, or a float holding one (2448.0)
        if isinstance(v, (bool, np.bool_)):
            return False
        return isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer())

    if not all(whole(v) and v > 0 for v in (width, height)):
        raise InvalidInputError(f"image size must be positive integers (pixels), got {width!r} x {height!r}")
    width, height = int(width), int(height)
    a, keep = usable_boxes(xyxy, width, height)
    if not keep.all():
        i = int(np.flatnonzero(~keep)[0])
        raise InvalidInputError(
            f"{int(np.count_nonzero(~keep))} boxes have no area inside the {width}x{height} image "
            f"(the first: box {i}, {as_boxes(xyxy)[i].tolist()})"
        )

    image_box = shapely.box(0.0, 0.0, float(width), float(height))
    shelf_photo = None if picture is None or not s.bays else _shelf_photo(picture, a, width, height)
    far = 10.0 * (width + height)
    textures = None
    if shelf_photo is not None:
        from .texture import _gradient_integral, texture_means

        sat: list[np.ndarray] = []  # (made once, when a bay first asks)

        def textures(xyxy: np.ndarray) -> np.ndarray:
            """Each box's mean gradient in the photo's shelf lines picture (NaN: no pixel)."""
            if not sat:
                sat.append(_gradient_integral(shelf_photo[0]))
            return texture_means(sat[0], xyxy, shelf_photo[1])
    lines_read: list[bool] = []  # (the found bays' cut read them: not with regions over every box)
    post_notes: list[str] = []  # (bays cut along a post seen in the photo: said, as it may be wrong)

    def analyse(idx: np.ndarray, occupied: np.ndarray | None = None
                ) -> tuple[RowLayout, tuple[Gap, ...], tuple[EmptyShelf, ...]]:
        lay = find_rows(a[idx], max_tilt=s.max_tilt, perspective=s.perspective, min_products=s.min_row_products)
        gaps = tuple(find_gaps(a[idx], lay, k=s.gap_k, end_gaps=s.end_gaps, end_k=s.end_k, occupied=occupied))
        return lay, gaps, tuple(find_empty_shelves(lay))

    def found_bays(idx: np.ndarray, first: int, taken: frozenset[str] = frozenset(),
                   covered: Any = None, occupied: np.ndarray | None = None,
                   region_gaps: Any = None, regions_union: Any = None) -> list[AuditPart]:
        """Cut the boxes ``idx`` into bays and analyse each; named ``bay <first>``, ``bay
        <first + 1>``... (a name in ``taken``, a region's, gets " (found)" added, or " (found 2)",
        " (found 3)" ... when that is a region's too). ``occupied``
        are the regions' products (indices): they stand on the shelves too, so the cuts are
        found from them and ``idx`` together (a region's products show the uprights beside
        it, and the columns it fills keep the bays on either side apart), and they fill a
        found bay's shelves where they stand in its columns. A gap left at least half inside
        ``covered(gaps)`` (the union of the regions near those gaps) is the region's to report, not the bay's: a region
        over part of a bay's shelves is neither empty shelf nor counted twice, while an empty
        stretch beside it stays a gap. Unless the regions report no gap there (``region_gaps``,
        a spatial tree of their gaps' polygons): an empty stretch across a region's edge is an
        end of the region's rows, too short for an end gap, and a gap of the bay's row that
        mostly lies in the region; the bay reports it. An outer end of the bay with a region
        beside its products (``regions_union``, every region's area; :func:`_region_ends`) is a
        ``"region"`` edge: the bay goes on in the region, so the found part is not a whole bay."""
        occ = np.zeros(0, np.int64) if occupied is None else occupied
        cut = None
        if not s.bays or len(idx) == 0:
            groups, occ_groups, kinds = [idx], [occ], ()
        else:
            every = np.r_[idx, occ]
            cut = find_bays(a[every], picture=shelf_photo)
            lines_read.append(shelf_photo is not None)
            bay_of, occ_of = cut.bay_of[:len(idx)], cut.bay_of[len(idx):]
            groups = _split_by(idx, bay_of, cut.n_bays)
            occ_groups = _split_by(occ, occ_of, cut.n_bays)
            kinds = cut.kinds
        out = []
        name_of: dict[int, tuple[str, str]] = {}  # a cut's bay: the names of its first and last piece
        med_w = float(np.median(a[idx, 2] - a[idx, 0])) if len(idx) else 0.0
        for b, g in enumerate(groups):
            if len(g) == 0:
                continue
            # only the regions' products in this bay's columns fill its shelves
            occ_b = occ_groups[b]
            lay, gaps, shelves = analyse(g, a[occ_b] if len(occ_b) else None)
            left = kinds[b - 1] if b > 0 else ("image edge" if a[g, 0].min() <= 0.5 * med_w else "end")
            right = kinds[b] if b < len(kinds) else ("image edge" if a[g, 2].max() >= width - 0.5 * med_w else "end")
            clip = _bay_strip(cut, b, width, height) if cut is not None else image_box
            pieces = [(g, occ_b, lay, gaps, shelves, clip, left, right)]
            posts = _post_lines(a, g, lay, gaps, textures) if textures is not None and len(lay.rows) else []
            rows_before = len(lay.rows)
            y_mid = float((a[g, 1].min() + a[g, 3].max()) / 2)  # (the whole bay's: g is each piece's below)
            if posts:
                # an upright the boxes did not show, seen in the photo: the bay is cut along it
                pieces = []
                for q, (gq, oq, band) in enumerate(_post_pieces(a, g, occ_b, posts, clip, height, far)):
                    if not len(gq):
                        continue
                    lq, gapq, shq = analyse(gq, a[oq] if len(oq) else None)
                    pieces.append((gq, oq, lq, gapq, shq, band,
                                   left if q == 0 else "upright", right if q == len(posts) else "upright"))
                if any(not len(piece[2].rows) for piece in pieces) or len(pieces) < 2:
                    # a side with no row of its own is no bay: the cut is not made
                    pieces, posts = [(g, occ_b, lay, gaps, shelves, clip, left, right)], []
            first_name = None
            for g, occ_b, lay, gaps, shelves, clip, left, right in pieces:
                if covered is not None and gaps:
                    union = covered(gaps)
                    beside = {id(q) for q in _gaps_inside(gaps, union, keep_inside=False)}
                    # one mostly in a region that reports none there is kept only where it crosses the
                    # region's edge (a stretch the region's rows end in); one wholly inside lies over
                    # products the region counted (a found row running through a region on a real
                    # photo reported a gap on a shelf the region's row filled: an outside review)
                    across = {id(q) for q in _gaps_inside(gaps, union, keep_inside=False, share=0.95)}
                    gaps = tuple(q for q in gaps if id(q) in beside
                                 or (id(q) in across and not _reported(q, region_gaps)))
                if covered is not None and shelves:  # a region there holds that shelf's products
                    shelves = _gaps_inside(shelves, covered(shelves), keep_inside=False)
                if regions_union is not None:
                    left, right = _region_ends(a[g], (left, right), regions_union, med_w)
                name = f"bay {first + len(out)}"
                # the outline stops at the image's edges and at the cuts beside the bay (a box across
                # an upright would otherwise carry it into the next bay)
                outline = _bay_outline(a[g], lay)
                outline = _cut_ring(outline, clip) or outline
                if (cut is not None and cut.n_bays > 1 or len(pieces) > 1) and gaps:
                    gaps = _gaps_cut(gaps, clip, s.gap_k)  # a gap stops at the bay's cuts too
                if gaps:
                    # ... and at the bay's own columns (its outline's ends): a region's products within
                    # an end stretch's reach of them make the stretch up to the bay's first product
                    # one between two products, beginning beyond the bay; the part inside is its gap
                    x0, x1 = float(a[g, 0].min()), float(a[g, 2].max())
                    gaps = _gaps_cut(gaps, shapely.box(x0, -1.0 - height, x1, 2.0 * height + 1.0), s.gap_k,
                                     keep_narrow=True)
                if name in taken:  # (a region may be named "bay 3 (found)" too: then "(found 2)", ...)
                    name = next(n for n in (f"{name} (found)", *(f"{name} (found {k})" for k in range(2, len(taken) + 3)))
                                if n not in taken)
                out.append(AuditPart(name, g, lay, gaps, "bay",
                                     outline, (left, right),
                                     strip=clip if (cut is not None and cut.n_bays > 1) or len(pieces) > 1 else None,
                                     empty_shelves=shelves))
                first_name = first_name or name
                name_of[b] = (first_name, name)
            if posts and first_name is not None:
                at_x = " and ".join(f"{c + k * y_mid:.0f}" for c, k, _ in posts)
                rows_at = " and ".join(str(n) for n in sorted({n for _, _, n in posts}))
                post_notes.append(
                    f"{first_name} to {name}: cut along {'an upright' if len(posts) == 1 else f'{len(posts)} uprights'} "
                    f"(x {at_x}), where the gaps of {rows_at} of the {rows_before} rows found before lined up and look "
                    "flat in the photo, as an upright's post does; a column of empty shelf would look alike, and its "
                    "gaps are not reported")
        if cut is not None and cut.spans is not None:
            empties.extend(_empty_sections(cut, [np.r_[g, o] for g, o in zip(groups, occ_groups)],
                                           name_of, {p.name: p for p in out}, a, s.gap_k))
        return out

    empties: list[EmptySection] = []
    grid = density_grid(a, width, height, cell=s.cell)
    stats: list[RegionStats] = []
    regs = tuple(regions or ())
    warnings: list[str] = []
    if not regs:
        parts = tuple(found_bays(np.arange(len(a)), 1))
    else:
        members = region_members(a, list(regs))
        shares = inside_shares(list(regs), width, height)
        given = []
        for i, r in enumerate(regs):
            idx = members.of(i)
            lay, gaps, shelves = analyse(idx, _beside_region(a, r.geometry))
            # a region's rows end where its products do, not at its outline: an end gap past the
            # outline (an L-shaped region, a sloping edge) stops there, as a bay's at its cuts
            gaps = _gaps_cut(_gaps_inside(gaps, r.geometry), r.geometry, s.gap_k)
            if gaps:
                # ... and at its products' columns, as a found bay's: a product beside the region
                # (in the notch of an L, another bay's) closed a stretch from the row's last
                # product that was then reported past the row's outline, up to the region's
                # edge (an outside review)
                x0, x1 = float(a[idx, 0].min()), float(a[idx, 2].max())
                gaps = _gaps_cut(gaps, shapely.box(x0, -1.0 - height, x1, 2.0 * height + 1.0), s.gap_k,
                                 keep_narrow=True)
            rings, holes = _rings_in_image(r.geometry, width, height)
            given.append(AuditPart(r.name, idx, lay, gaps, "region", rings[0], ("region", "region"),
                                   area=r.area * float(shares[i]), pieces=rings if len(rings) > 1 else (),
                                   empty_shelves=_gaps_inside(shelves, r.geometry), holes=holes))
        held = members.per_box()
        rest = np.flatnonzero(held == 0)
        geoms = np.array([r.geometry for r in regs], dtype=object)
        tree = shapely.STRtree(geoms)

        def covered(gaps: tuple[Any, ...]) -> Any:
            """The union of the regions that reach the gaps' bounding box (not of them all)."""
            xy = np.array([g.xyxy for g in gaps], dtype=np.float64)
            near = tree.query(shapely.box(*xy[:, :2].min(axis=0), *xy[:, 2:].max(axis=0)))
            return shapely.union_all(geoms[np.sort(near)])

        region_gaps = shapely.STRtree(_as_polygons([g.polygon for p in given for g in p.gaps]))

        taken_names = frozenset(r.name for r in regs)
        union = shapely.union_all(geoms)
        extra = (found_bays(rest, len(given) + 1, taken_names, covered, np.flatnonzero(held > 0), region_gaps,
                            union) if len(rest) else [])
        parts = tuple(given) + tuple(extra)
        if empties:  # a stretch at least half inside a region is the region's to report, as a gap is
            polys = _as_polygons([e.polygon for e in empties])
            inside = shapely.area(shapely.intersection(polys, union)) >= 0.5 * np.maximum(shapely.area(polys), 1e-9)
            empties[:] = [e for e, i in zip(empties, inside.tolist()) if not i]
        overlaps = overlapping_regions(list(regs))
        if len(overlaps):
            pairs = [(regs[i].name, regs[j].name) for i, j in overlaps[:3].tolist()]
            names = "; ".join(f"{x!r} and {y!r}" for x, y in pairs)
            if len(overlaps) > 3:
                names += f"; {len(overlaps) - 3} more pairs"
            n_shared = int(np.count_nonzero(held > 1))
            if n_shared:
                many = n_shared > 1
                what = (f"{n_shared} {'products lie' if many else 'product lies'} in more than one region and "
                        f"{'are' if many else 'is'} counted in each, so the regions' counts add up to more "
                        "than the image's")
            else:
                what = ("no product lies in more than one of them, but their areas (and densities) each count the "
                        "area they share")
            warnings.append(f"regions overlap ({names}): {what}")
        for r, part, share in zip(regs, given, shares.tolist()):
            n = len(part.index)
            stats.append(
                RegionStats(
                    name=r.name,
                    products=n,
                    area_px=r.area,
                    # per area in the image; none there (a region wholly outside): no density
                    density_per_mpx=n / part.area_px * 1e6 if part.area_px > 0 else None,
                    gaps=len(part.gaps),
                    gap_width_products=float(sum(g.width_products for g in part.gaps)),
                    bounds=r.bounds,
                    rows=len(part.layout.rows),
                    inside_share=share,
                )
            )
            if share < s.min_region_inside:
                where = "outside" if share == 0 else f"mostly outside ({100 * share:.0f}% inside)"
                x0, y0, x1, y1 = r.bounds
                warnings.append(
                    f"region {r.name!r} lies {where} the {width}x{height} image (its bounds are "
                    f"{x0:.0f},{y0:.0f} to {x1:.0f},{y1:.0f}): regions are in pixels of the upright image; "
                    "check the frame, the image's rotation and that the regions belong to this photo"
                )
            elif max(r.bounds[2], r.bounds[3]) <= 1.0 and min(width, height) > 2:
                x0, y0, x1, y1 = r.bounds
                warnings.append(
                    f"region {r.name!r} spans at most 1 px of the {width}x{height} image (its bounds are "
                    f"{x0:g},{y0:g} to {x1:g},{y1:g}): coordinates normalised to 0-1? regions are in pixels of "
                    "the upright image"
                )
    if len(a) == 0:
        warnings.append("no product boxes: no bay, row or gap to find (an empty fixture, or the detections of "
                        "another image?)")
    warnings.extend(_wide_bays(parts, s.bay_width_m))
    warnings.extend(post_notes)
    warnings.extend(_lined_up_gaps(parts))
    warnings.extend(_rolled_past_max_tilt(parts, a, s.max_tilt))
    warnings.extend(_boxes_over_products(a))
    return AuditResult(width, height, a, parts, grid, tuple(stats), regs, s, tuple(warnings), tuple(empties),
                       any(lines_read))


#: A box holding the centres of this many other boxes (and of :data:`_OVER_SHARE` of all) is
#: no product: a detector's box around a shelf, a bay or the whole photo (none on the 85 real
#: photos with the built-in model's boxes; 3 of them have one holding 5, stacks boxed whole).
_OVER_MIN = 8
_OVER_SHARE = 0.05
#: Only boxes of at least this many times the median box area can hold that many centres of
#: products beside each other, and only the :data:`_OVER_CHECK` largest are looked at (a pile of
#: copies of one box holds every centre of the pile: its pairs grow with its square).
_OVER_AREA = 4.0
_OVER_CHECK = 32


def _boxes_over_products(a: np.ndarray) -> list[str]:
    """A warning for boxes that hold the centres of many other boxes: one such box over the
    whole image joins every shelf into one row and every bay into one (an outside review), and
    nothing else says why. The centres inside the largest boxes are counted with one
    spatial-tree query (at most :data:`_OVER_CHECK` boxes times the centres)."""
    n = len(a)
    if n < _OVER_MIN + 1:
        return []
    area = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    big = np.flatnonzero(area >= _OVER_AREA * np.median(area))
    if not len(big):
        return []
    big = big[np.argsort(-area[big], kind="stable")][:_OVER_CHECK]
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    box_k, pt_i = shapely.STRtree(shapely.points(cx, cy)).query(shapely.box(*a[big].T), predicate="contains")
    held = np.bincount(box_k[big[box_k] != pt_i], minlength=len(big))
    over = np.flatnonzero(held >= max(_OVER_MIN, _OVER_SHARE * n))
    if not len(over):
        return []
    k = int(over[np.argmax(held[over])])
    top = int(big[k])
    many = f"{len(over)} boxes each hold" if len(over) > 1 else "1 box holds"
    return [f"{many} the centres of {_OVER_MIN} or more other products (box {top}, "
            f"{[round(float(v)) for v in a[top]]}, holds {int(held[k])}): a detector's box "
            "around a shelf, a bay or the whole photo? The bays and rows are found with it; leave it out of the "
            "boxes if it is no product"]


#: The steepest roll :func:`_rolled_past_max_tilt` looks for (degrees), and how much more
#: sharply the boxes must line up there than at any tilt within ``max_tilt``. Measured
#: (2026-12-06): rolled 5 to 25 degrees, 90 generated aisles line up 1.67 to 7 times as sharply
#: at their roll as within 4 degrees (1.67: 60 boxes at 5 degrees, then 2.5 and up); the bays of
#: the 85 real photos (built-in model's boxes) at most 1.15 times past 4 degrees (small bays,
#: chance lines), the 231 bays of parallel shelves of 200 generated aisles faced square or in
#: perspective at most 0.93, 100 generated aisles rolled within 4 degrees at most 0.95.
_ROLL_SEARCH = 45.0
_ROLL_SHARPER = 1.5
_ROLL_BOXES = 3000
#: Fewer boxes than this line up by chance: 8 to 14 boxes scattered at random did 1.5 times as
#: sharply at some steep angle in 1 to 6 layouts of 100, 20 or more in none (at most 1.38); a
#: rolled aisle of 60 boxes did 1.67 times at 5 degrees (a second look, 2026-12-06)
_ROLL_MIN_BOXES = 20


def _rolled_past_max_tilt(parts: Sequence[AuditPart], a: np.ndarray, max_tilt: float) -> list[str]:
    """Say which bays (or regions) of parallel shelves line up much more sharply at a tilt
    steeper than ``max_tilt``, which their rows were searched within: a photo rolled 10 degrees
    gave one row and no gap at the default 4, without a word (an outside review)."""
    from .rows import tilt_sharpness

    # every quarter degree out to the search's end, and the rows' own twentieths within max_tilt
    fine = np.arange(-int(np.floor(max_tilt / 0.05 + 1e-9)), int(np.floor(max_tilt / 0.05 + 1e-9)) + 1) * 0.05
    angles = np.unique(np.round(np.r_[np.arange(-_ROLL_SEARCH / 0.25, _ROLL_SEARCH / 0.25 + 1) * 0.25, fine], 6))
    inside = np.abs(angles) <= max_tilt + 1e-9
    steep = []
    for p in parts:
        if p.layout.spread != 0.0 or len(p.index) < _ROLL_MIN_BOXES or inside.all():
            continue
        box = a[p.index]
        if np.ptp(box[:, [0, 2]]) > 4 * np.ptp(box[:, [1, 3]]):
            continue  # a strip of a stitched panorama, not a rolled photo (and its sheared span is vast)
        # (a bay of tens of thousands of boxes is judged by a few thousand of them, evenly taken)
        idx = p.index if len(p.index) <= _ROLL_BOXES else p.index[np.linspace(0, len(p.index) - 1, _ROLL_BOXES).astype(np.int64)]
        score = tilt_sharpness(a[idx], angles)
        best_in = float(score[inside].max())
        k = int(np.argmax(np.where(inside, -np.inf, score)))
        if score[k] >= _ROLL_SHARPER * best_in:
            steep.append((p.name, float(angles[k])))
    if not steep:
        return []
    most = max(abs(t) for _, t in steep)
    names = ", ".join(f"{n} (about {t:+.0f} deg)" for n, t in steep[:3]) + (f" and {len(steep) - 3} more"
                                                                           if len(steep) > 3 else "")
    fix = (f"give --max-tilt {min(30, int(np.ceil(most)) + 2)} (max_tilt= in Python)" if most < 30
           else "turn the photo upright first (--max-tilt goes to 30)")
    return [f"the shelf lines of {names} slope more than --max-tilt {max_tilt:g} degrees, the most the rows are "
            f"searched at: their rows and gaps are not to be trusted; {fix}"]


#: A column where the interior gaps of at least this share of a bay's rows (and of
#: :data:`_LINED_MIN_ROWS` rows) overlap is worth a warning (:func:`_lined_up_gaps`).
_LINED_SHARE = 0.6
_LINED_MIN_ROWS = 3


def _gap_columns(gaps: Sequence[Gap], rows: int, unit: float) -> list[tuple[float, float, int]]:
    """The columns ``(x0, x1, rows)`` over which the interior gaps of at least
    :data:`_LINED_SHARE` of a bay's ``rows`` rows (and :data:`_LINED_MIN_ROWS`) overlap, left to
    right, with the most rows any x of each holds. Stretches less than ``unit`` (a product
    width) apart are one column: the gaps at a leaning post shift from row to row, and the
    overlap went up and down past the share every few pixels (one post cut five times, slivers
    of one box as bays between; a diff review)."""
    inner = [g for g in gaps if g.kind == "interior"]
    need = max(_LINED_MIN_ROWS, int(np.ceil(_LINED_SHARE * rows)))
    if len({g.row for g in inner}) < need:
        return []
    # a row's gaps never overlap each other: the gaps over a column are that many rows
    x = np.array([(g.x1, g.x2) for g in inner], dtype=np.float64)
    at = np.r_[x[:, 0], x[:, 1]]
    step = np.r_[np.ones(len(x), np.int64), -np.ones(len(x), np.int64)]
    order = np.lexsort((step, at))  # (an end before a start at one x: touching gaps do not overlap)
    depth = np.cumsum(step[order])
    deep = depth >= need
    # each stretch of x over which ``need`` rows' gaps overlap (it starts where the depth
    # reaches ``need`` and ends at the next event) is one column
    cols: list[tuple[float, float, int]] = []
    for k in np.flatnonzero(deep & ~np.r_[False, deep[:-1]]).tolist():
        end = k + int(np.argmin(deep[k:]))  # (the depth ends at 0: some later event is shallow)
        lo, hi, n = float(at[order][k]), float(at[order][end]), int(depth[k:end].max())
        if cols and lo - cols[-1][1] < unit:
            lo, n = cols[-1][0], max(n, cols[-1][2])
            cols.pop()
        cols.append((lo, hi, n))
    return cols


def _lined_up_gaps(parts: Sequence[AuditPart]) -> list[str]:
    """Say where the interior gaps of most of a bay's rows overlap at one column: an upright the
    audit did not cut there (its post passes the look in the pixels as empty shelf), or a column
    of products the detector missed on every shelf; either way not a column of empty shelf to
    trust (an outside review: on a real photo of three sections, 9 of the 10 gaps that looked
    empty lay on the two uprights the audit had not found). Where the photo shows such a column
    flat on most rows, the bay is cut there (:func:`_post_lines`); what is left is named here."""
    out = []
    for p in parts:
        rows = len(p.layout.rows)
        cols = _gap_columns(p.gaps, rows, float(np.median([r.median_width for r in p.layout.rows])) if rows else 0.0)
        if not cols:
            continue
        need = max(_LINED_MIN_ROWS, int(np.ceil(_LINED_SHARE * rows)))
        name = p.name if p.name is not None else "the fixture"
        where = ", ".join(f"x {lo:.0f}{'' if round(lo) == round(hi) else f'-{hi:.0f}'} ({n} rows)"
                          for lo, hi, n in cols[:3])
        where += f" and {len(cols) - 3} more" if len(cols) > 3 else ""
        out.append(f"{name}: gaps line up over {need} or more of its {rows} rows at {where}: an upright not cut "
                   "there, or a column of products missed; those gaps are not to be read as empty shelf without "
                   "a look")
    return out


#: A column of gaps (:func:`_gap_columns`) whose gaps' texture over their rows' products has a
#: median under this is an upright's post (the look in the pixels' "empty", gapcheck.LOOKS_EMPTY)
_POST_TEXTURE = 0.35
#: ... and whose whole height, from the bay's top row to its bottom one (shelf lips and the rows
#: without a gap there included), is under this share of the bay's products' texture: a post
#: is flat all the way down, while shelf lips and products cross a column of empty shelf or of
#: products missed (the 85 real photos: 0.34 and 0.43 on train_3108's posts, 0.67 and more on
#: the 21 other columns; generated aisles painted flat, their empty columns 5.7 and more)
_POST_WHOLE = 0.5
#: Steepest lean (dx/dy) of a post's line through its gaps.
_POST_LEAN = 0.15


def _post_lines(a: np.ndarray, idx: np.ndarray, layout: RowLayout, gaps: Sequence[Gap],
                textures: Any) -> list[tuple[float, float, int]]:
    """``(c, k, rows)`` for each upright a found bay's boxes ``a[idx]`` (rows ``layout``, gaps
    ``gaps``) did not show, left to right: its line ``x = c + k * y`` and the rows of gaps behind
    it. Such an upright is a column of gaps lined up over most of the bay's rows
    (:func:`_gap_columns`) that looks flat in the photo: its gaps' middles, their median texture
    under :data:`_POST_TEXTURE` of their rows' products', and the column from the bay's top to its
    bottom under :data:`_POST_WHOLE` of the bay's. Products missed in a column look like
    products there (on the 85 real photos all such columns but two, both on train_3108's two
    uprights between sections at one shelf height, have a median texture of 0.5 or more), and
    shelf lips and products across a column of empty shelf mostly raise its whole height (a flat
    one with thin plain lips passes: docs/audit.md, "Uprights seen in the pixels").
    ``textures(xyxy)``: each box's mean gradient in the photo, NaN where it holds no pixel."""
    unit = float(np.median(a[idx, 2] - a[idx, 0]))
    cols = _gap_columns(gaps, len(layout.rows), unit)
    if not cols:
        return []
    every = textures(a[idx])
    finite = every[np.isfinite(every)]
    bay_ref = float(np.median(finite)) if len(finite) >= 3 else float("nan")
    if not (np.isfinite(bay_ref) and bay_ref > 0):
        return []
    top = min(min(r.top_y) for r in layout.rows)
    bottom = max(max(r.bottom_y) for r in layout.rows)
    whole = textures(np.array([[lo, top, hi, bottom] for lo, hi, _ in cols], np.float64)) / bay_ref
    lines = []
    for (lo, hi, n), flat in zip(cols, whole.tolist()):
        if not flat < _POST_WHOLE:  # (NaN: too narrow to hold a pixel)
            continue
        col = [g for g in gaps if g.kind == "interior" and g.x1 < hi and g.x2 > lo]
        tex = textures(np.array([g.xyxy for g in col], np.float64))
        ratios = []
        for g, t in zip(col, tex):
            own = every[layout.assignment == g.row]
            own = own[np.isfinite(own)]
            ref = float(np.median(own)) if len(own) >= 3 else bay_ref
            if np.isfinite(t) and np.isfinite(ref) and ref > 0:
                ratios.append(t / ref)
        if len(ratios) < _LINED_MIN_ROWS or float(np.median(ratios)) >= _POST_TEXTURE:
            continue
        # through its gaps' own middles, leaning as they do (their parts within the column, where
        # most rows' gaps overlap, all lay near one x: a post leaning 0.08 was fitted at 0, a
        # product beyond it went to the near side and its gaps stayed; a second diff review)
        xm = np.array([(g.x1 + g.x2) / 2 for g in col])
        ym = np.array([(g.xyxy[1] + g.xyxy[3]) / 2 for g in col])
        k = 0.0
        if np.ptp(ym) > 0:
            dy = ym[:, None] - ym[None, :]
            pair = dy > 0
            k = float(np.clip(np.median(((xm[:, None] - xm[None, :])[pair]) / dy[pair]), -_POST_LEAN, _POST_LEAN))
        lines.append((float(np.median(xm - k * ym)), k, n))
    y0, y1 = float(a[idx, 1].min()), float(a[idx, 3].max())
    lines.sort(key=lambda ck: ck[0] + ck[1] * (y0 + y1) / 2)
    # two lines that come within a product width of each other over the bay's height (crossing
    # there, leaning apart) would cut a sliver, or a band folded over itself: the first is kept
    kept: list[tuple[float, float, int]] = []
    for c, k, n in lines:
        if kept and min(c + k * y - (kept[-1][0] + kept[-1][1] * y) for y in (y0, y1)) < unit:
            continue
        kept.append((c, k, n))
    return kept


def _post_pieces(a: np.ndarray, idx: np.ndarray, occ: np.ndarray, posts: Sequence[tuple[float, float, int]],
                 clip: Any, height: float, far: float) -> list[tuple[np.ndarray, np.ndarray, Any]]:
    """A found bay cut along its posts' lines (:func:`_post_lines`, left to right): for each
    side, left to right, its boxes among ``idx`` and ``occ`` (each by its centre) and its part of
    the bay's strip ``clip``, cut by the half-planes of the lines over the image's height only
    (lines leaning apart cross far above or below it, and a band between two drawn out to
    there folded over itself; a diff review). ``far``: past every box, sideways."""
    cs = np.array([c for c, _, _ in posts])
    ks = np.array([k for _, k, _ in posts])

    def side_of(boxes: np.ndarray) -> np.ndarray:
        cy = (boxes[:, 1] + boxes[:, 3]) / 2
        cx = (boxes[:, 0] + boxes[:, 2]) / 2
        return (cx[:, None] >= cs[None] + ks[None] * cy[:, None]).sum(axis=1)

    def half(q: int, right_of: bool) -> Any:
        ys = (-1.0, height + 1.0)
        xs = [cs[q] + ks[q] * y for y in ys]
        edge = far if right_of else -far
        return shapely.Polygon([(xs[0], ys[0]), (edge, ys[0]), (edge, ys[1]), (xs[1], ys[1])])

    at = side_of(a[idx])
    occ_at = side_of(a[occ]) if len(occ) else np.zeros(0, np.int64)
    out = []
    for q in range(len(posts) + 1):
        band = clip
        if q > 0:
            band = band.intersection(half(q - 1, True))
        if q < len(posts):
            band = band.intersection(half(q, False))
        out.append((idx[at == q], occ[occ_at == q], band))
    return out


def _beside_region(a: np.ndarray, geometry: Any) -> np.ndarray | None:
    """The boxes of ``a`` whose centres lie within the bounds of a region's ``geometry`` but
    outside it (in a hole, between its pieces, in the notch of an L): products left out of
    the region, not missing, so they fill its rows' shelves where they stand (``occupied`` of
    :func:`~densedet_tile.audit.gaps.find_gaps`). A hole over part of a row made a gap of the
    row's stretch across it, products under it included (an outside review). None: no such box."""
    if not len(a):
        return None
    x0, y0, x1, y1 = geometry.bounds
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    near = np.flatnonzero((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1))
    if not len(near):
        return None
    out = near[~shapely.intersects_xy(geometry, cx[near], cy[near])]
    return a[out] if len(out) else None


def _region_ends(boxes: np.ndarray, edges: tuple[str, str], union: Any, med_w: float) -> tuple[str, str]:
    """A found bay's ``edges`` with an outer ``"end"`` made ``"region"`` where a region covers,
    within ``med_w`` (a median product's width) of the bay's products (``boxes``) on that side
    and at their heights, at least half a product's box (that width by half the median product
    height): the shelves go on into the region, so the bay was cut there, not ended."""
    y0, y1 = float(boxes[:, 1].min()), float(boxes[:, 3].max())
    x0, x1 = float(boxes[:, 0].min()), float(boxes[:, 2].max())
    reach = max(med_w, 1.0)
    # beside the bay over at least half a product's height: a region that only touches its
    # height range (one drawn over the shelf above, its edge on this bay's top) does not go on
    # from its rows (a diff review)
    least = 0.5 * reach * max(float(np.median(boxes[:, 3] - boxes[:, 1])), 1.0)
    out = list(edges)
    for k, (lo, hi) in enumerate(((x0 - reach, x0), (x1, x1 + reach))):
        if out[k] == "end" and shapely.area(shapely.intersection(union, shapely.box(lo, y0, hi, y1))) >= least:
            out[k] = "region"
    return out[0], out[1]


def _wide_bays(parts: Sequence[AuditPart], bay_width_m: float | None) -> list[str]:
    """With ``bay_width_m`` every found bay counts as that wide: say which are more than twice
    as wide as the median found bay (most often two or more bays the audit did not cut apart,
    whose facings per metre then read several times too high). Among three found bays or more
    faced square (bays seen down the aisle differ in pixels by their distance), not counting
    the pieces of bays a region cuts (a side ``"region"``) in the median: they are pieces the
    user's regions left, not bays, and pulled the median down (an outside review: a bay cut
    right was called several bays beside two such pieces)."""
    if not bay_width_m:
        return []
    # bays seen down the aisle (converging shelves) differ in pixels by their distance: only the
    # bays faced square are compared
    found = [p for p in parts if p.kind == "bay" and p.layout.rows and p.layout.spread == 0.0]
    bays = [(p.name, max(r.x_end for r in p.layout.rows) - min(r.x_start for r in p.layout.rows),
             "region" not in p.edges) for p in found]
    compared = [w for _, w, own in bays if own]
    if len(compared) < 3:
        return []
    med = float(np.median(compared))
    return [f"{name} is {w / med:.1f} times as wide as the median bay ({w:.0f} px against {med:.0f} px): perhaps "
            f"several bays not cut apart; its facings per metre take it as {bay_width_m:g} m wide"
            for name, w, _ in bays if med > 0 and w > 2 * med]


def _empty_sections(cut: Any, with_occupied: list[np.ndarray], name_of: dict[int, tuple[str, str]],
                    parts: dict[str, "AuditPart"], a: np.ndarray, gap_k: float) -> list[EmptySection]:
    """The upright cuts whose empty columns are wider than an end gap of the bays beside them
    (``gap_k`` median product widths plus the width of their widest common product, as
    :func:`~densedet_tile.audit.gaps.find_gaps` measures a row's end): every shelf there is
    empty. Between bays ``b`` and ``b + 1`` of ``with_occupied`` (each bay's box indices, the
    regions' products standing in its columns included)."""
    out = []
    for b, kind in enumerate(cut.kinds):
        lo, hi = (float(v) for v in cut.spans[b])
        if kind != "upright" or not np.isfinite(lo) or b not in name_of or b + 1 not in name_of:
            continue
        # (a bay cut again along a post seen in the photo: its last piece and the next's first)
        left_name, right_name = name_of[b][1], name_of[b + 1][0]
        beside = np.r_[with_occupied[b], with_occupied[b + 1]]
        w = a[beside, 2] - a[beside, 0]
        unit = float(np.median(w))
        if unit <= 0 or hi - lo <= gap_k * unit + float(np.percentile(w, 95)):
            continue
        left, right = parts[left_name], parts[right_name]
        ys = [y for p in (left, right) for _, y in p.polygon]
        if not ys:
            continue
        y0, y1 = min(ys), max(ys)
        ym = (y0 + y1) / 2
        (l0, h0), (l1, h1), (lm, hm) = (cut.to_image(np.array([lo, hi]), y).tolist() for y in (y0, y1, ym))
        poly = ((l0, y0), (h0, y0), (h1, y1), (l1, y1))
        out.append(EmptySection((left.name, right.name), lm, hm, hm - lm, (hm - lm) / unit, poly))
    return out


def _split_by(idx: np.ndarray, group: np.ndarray, n: int) -> list[np.ndarray]:
    """``idx`` split into ``n`` groups by ``group`` (each group in ``idx``'s order)."""
    order = np.argsort(group, kind="stable")
    return np.split(idx[order], np.cumsum(np.bincount(group, minlength=n))[:-1])


def _gaps_cut(gaps: tuple[Gap, ...], strip: Any, gap_k: float, *, keep_narrow: bool = False) -> tuple[Gap, ...]:
    """The gaps of a found bay cut at its strip (the columns between the cuts beside it). A
    bay's fixture ends were its boxes' extent, so a box reaching across an upright (a price rail,
    a stray box) stretched a row's end gap into the next bay: its polygon was clipped when
    written, but not its ends and widths (a gap from x 0 to 2192 in a bay starting at 2136, and
    the summed gap widths 8 times too large). Ends and widths shrink with the polygon's
    extent; a gap left narrower than ``gap_k`` of its products, or with nothing inside the strip,
    is dropped (with ``keep_narrow``, only one left no wider than
    :data:`~densedet_tile.audit.gaps.MIN_GAP_PX`)."""
    out = []
    for g in gaps:
        poly = shapely.Polygon(g.polygon)
        if not poly.is_valid:  # a sliver gap's corners may cross (a steep row line)
            poly = shapely.make_valid(poly)
        try:
            piece = shapely.intersection(poly, strip)
        except shapely.errors.GEOSException:  # (numerically degenerate: kept as found)
            out.append(g)
            continue
        if piece.is_empty or piece.area <= 0:
            continue
        bx0, _, bx1, _ = piece.bounds
        x1, x2 = max(g.x1, bx0), min(g.x2, bx1)
        if x1 <= g.x1 + 1e-6 and x2 >= g.x2 - 1e-6:
            out.append(g)  # wholly inside: as it was
            continue
        share = (x2 - x1) / max(g.x2 - g.x1, 1e-9)
        if x2 - x1 <= (MIN_GAP_PX if keep_narrow else 0.0) or (not keep_narrow and g.width_products * share < gap_k):
            continue
        ring = _ring_of(piece)
        xs, ys = [x for x, _ in ring], [y for _, y in ring]
        out.append(replace(g, x1=float(x1), x2=float(x2), width_px=g.width_px * share,
                           width_products=g.width_products * share, polygon=ring,
                           xyxy=(min(xs), min(ys), max(xs), max(ys))))
    return tuple(out)


def _reported(gap: Gap, region_gaps: Any) -> bool:
    """Whether a region reports a gap where ``gap`` lies: one of the gaps in the spatial tree
    ``region_gaps`` covers a twentieth of it or more (None: taken as reported)."""
    if region_gaps is None:
        return True
    poly = shapely.make_valid(shapely.Polygon(gap.polygon))
    near = region_gaps.query(poly)
    if not len(near):
        return False
    shared = shapely.area(shapely.intersection(poly, shapely.union_all(region_gaps.geometries.take(near))))
    return bool(shared >= 0.05 * max(poly.area, 1e-9))


def _as_polygons(rings: Sequence[Sequence[tuple[float, float]]]) -> np.ndarray:
    """Shapely polygons of outlines with any number of corners: a gap cut at a region's edge may
    keep 3 or 5 of them, and one array of all the corners (``shapely.polygons`` of a list) then
    failed with a numpy shape error inside :func:`run_audit`."""
    out = np.empty(len(rings), dtype=object)
    for k, ring in enumerate(rings):
        out[k] = shapely.Polygon(ring)
    return out


def _ring_of(piece: Any) -> tuple[tuple[float, float], ...]:
    """The outer ring of a clipped gap (its largest piece), without the closing point."""
    parts = sorted(getattr(piece, "geoms", [piece]), key=lambda q: -q.area)
    poly = next(q for q in parts if q.geom_type == "Polygon")
    return tuple((float(x), float(y)) for x, y in list(poly.exterior.coords)[:-1])


def _gaps_inside(gaps: tuple[Any, ...], geometry: Any, *, keep_inside: bool = True, share: float = 0.5) -> tuple[Any, ...]:
    """The gaps (or empty shelves: anything with an ``xyxy``) that lie in ``geometry`` (or, with
    ``keep_inside=False``, outside it). A row
    found across a region of several pieces, or around a hole, spans stretches that are not the
    region's shelf (their products were left out, not missing), so a region's gap at least half
    outside it is dropped; a found bay's gap at least half inside a region lies over products the
    region counted. "In" is ``share`` of a gap's box or more inside (a half by default)."""
    if not gaps:
        return gaps
    boxes = shapely.box(*np.array([g.xyxy for g in gaps], dtype=np.float64).T)
    area = shapely.area(boxes)
    inside = shapely.area(shapely.intersection(boxes, geometry)) >= share * np.maximum(area, 1e-9)
    keep = inside if keep_inside else ~inside
    return tuple(g for g, k in zip(gaps, keep.tolist()) if k)


def _rings_in_image(geometry: Any, width: int, height: int
                    ) -> tuple[tuple[tuple[tuple[float, float], ...], ...], tuple[tuple[tuple[float, float], ...], ...]]:
    """The outer rings of a region's pieces inside the ``width`` x ``height`` image, largest
    first, and the rings of their holes there; a region wholly outside keeps its own rings,
    every piece's (it is warned about)."""
    def pieces(g: Any) -> list[Any]:
        # (a piece thinner than the JSON's 0.1 px would be written as a line: a region reaching
        # into the image by a hair is left with its own rings, and warned about as outside)
        return sorted((p for p in getattr(g, "geoms", [g]) if p.geom_type == "Polygon" and p.area > 0
                       and thickness(p) >= MIN_THICKNESS), key=lambda p: -p.area)

    def ring(r: Any) -> tuple[tuple[float, float], ...]:
        return tuple((float(x), float(y)) for x, y in r.coords[:-1])

    x0, y0, x1, y1 = geometry.bounds
    within = x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height  # nothing to cut (most regions)
    inside = pieces(geometry if within else shapely.intersection(geometry, shapely.box(0, 0, width, height)))
    # (a region built in Python skips parse_regions' thickness check: its own pieces, thin or not)
    chosen = inside or pieces(geometry) or [p for p in getattr(geometry, "geoms", [geometry])
                                            if p.geom_type == "Polygon" and p.area > 0]
    return (tuple(ring(p.exterior) for p in chosen),
            tuple(ring(h) for p in chosen for h in p.interiors if len(h.coords) >= 4))


def part_clip(part: AuditPart) -> Any:
    """The shapely geometry a part's rows, gaps and empty shelves stop at, in the JSON and in
    the preview alike: a region's outline less its holes (its products' boxes may reach past it), a found
    bay's strip between the cuts beside it (None: the whole image)."""
    if part.kind == "region":
        rings = [shapely.Polygon(r) for r in part.rings if len(r) >= 3]
        if not rings:
            return None
        shape = shapely.make_valid(shapely.union_all(rings))
        holes = [shapely.Polygon(h) for h in part.holes if len(h) >= 3]
        # its holes cut its rows too (another part's products stand there)
        return shapely.make_valid(shapely.difference(shape, shapely.union_all(holes))) if holes else shape
    return part.strip


def _r(v: float, nd: int = 1) -> float:
    return float(round(float(v), nd)) + 0.0  # (+ 0.0: no "-0.0" for a tilt rounded to nothing)


def _poly(points: Sequence[tuple[float, float]], width: float | None = None,
          height: float | None = None, within: Any = None) -> list[list[float]]:
    """[[x, y], ...] rounded, and cut by the ``width`` x ``height`` image when given (a row
    outline follows whole product boxes, and the top row's upper edge may lie above the image)
    and by the shapely geometry ``within`` (a region's outline): the part inside, same shape up
    to its edges; an outline wholly outside keeps its corners pushed onto the image's edge."""
    if width is None or height is None:
        return [[_r(x), _r(y)] for x, y in points]
    clip = shapely.box(0.0, 0.0, width, height)
    if within is not None and not within.is_empty:
        clip = clip.intersection(within)
    inside = _cut_ring(points, clip)
    if inside:
        return [[_r(x), _r(y)] for x, y in inside]
    return [[_r(min(max(x, 0.0), width)), _r(min(max(y, 0.0), height))] for x, y in points]


def _polys(points: Sequence[tuple[float, float]], width: float, height: float,
           within: Any = None) -> list[list[list[float]]]:
    """As :func:`_poly`, but every piece inside (largest first, the first is :func:`_poly`'s):
    a row across a region of several pieces, or across a region's hole, has one per stretch."""
    clip = shapely.box(0.0, 0.0, width, height)
    if within is not None and not within.is_empty:
        clip = clip.intersection(within)
    inside = _cut_rings(points, clip)
    if inside:
        return [[[_r(x), _r(y)] for x, y in ring] for ring in inside]
    return [_poly(points, width, height, within)]


def _segments(p: tuple[float, float], q: tuple[float, float], width: float, height: float,
              within: Any = None) -> list[list[list[float]]]:
    """The pieces of the segment p-q inside the image (and the shapely geometry ``within``),
    left to right, each as [[x, y], [x, y]]; [] when it misses."""
    clip = shapely.box(0.0, 0.0, width, height)
    if within is not None and not within.is_empty:
        clip = clip.intersection(within)
    cut = shapely.LineString([p, q]).intersection(clip)
    out = []
    for seg in getattr(cut, "geoms", [cut]):
        if seg.geom_type != "LineString" or seg.is_empty or seg.length <= 0:
            continue
        (x0, y0), (x1, y1) = seg.coords[0], seg.coords[-1]
        if (x1, y1) < (x0, y0):
            (x0, y0), (x1, y1) = (x1, y1), (x0, y0)
        out.append(((x0, y0), (x1, y1)))
    out.sort()
    return [[[_r(x0), _r(y0)], [_r(x1), _r(y1)]] for (x0, y0), (x1, y1) in out]


def _segment(p: tuple[float, float], q: tuple[float, float], width: float, height: float,
             within: Any = None) -> list[list[float]]:
    """The segment p-q cut by the image (and by the shapely geometry ``within``, a bay's strip
    or a region), as [[x, y], [x, y]] (its slope kept): from the start of its first piece
    inside to the end of its last (a region of several pieces, or with a hole, cuts it in
    pieces: :func:`_segments` gives each); the segment as it is when it misses."""
    pieces = _segments(p, q, width, height, within)
    if pieces:
        return [pieces[0][0], pieces[-1][1]]
    return [[_r(p[0]), _r(p[1])], [_r(q[0]), _r(q[1])]]


def _across(rings: Sequence[Sequence[Sequence[float]]], x: float, *, nearest: bool = False) -> tuple[float, float] | None:
    """(top, bottom) of the outlines ``rings`` (a row's pieces) along the column ``x``; None where
    none reaches it, or with ``nearest``, along the nearest column of the piece nearest to ``x``
    (a row across a region of several pieces whose middle falls between them)."""
    ys = []
    for ring in rings:
        if len(ring) < 3:
            continue
        hit = shapely.Polygon(ring).intersection(shapely.LineString([(x, -1e12), (x, 1e12)]))
        if not hit.is_empty:
            ys += [hit.bounds[1], hit.bounds[3]]
    if ys or not nearest:
        return (min(ys), max(ys)) if ys else None
    spans = [(min(p[0] for p in ring), max(p[0] for p in ring), ring) for ring in rings if len(ring) >= 3]
    spans = [s for s in spans if s[1] > s[0]]
    if not spans:
        return None
    x0, x1, ring = min(spans, key=lambda s: max(s[0] - x, x - s[1], 0.0))
    inset = 1e-6 * (x1 - x0)
    return _across([ring], min(max(x, x0 + inset), x1 - inset))


def row_lines(row: Any, width: float, height: float, within: Any,
              pieces: Sequence[Sequence[Sequence[float]]]) -> list[list[list[float]]]:
    """A row's shelf line as the JSON gives it and the preview draws it: its pieces inside the
    image and the part's area ``within`` (:func:`_segments`). Where the line misses that area
    (a region's edge across the row above its products' bottoms), the bottom of the row's outline
    as cut (``pieces``, :func:`_polys`), from each piece's left end to its right: the line as it was lay
    outside both the region and the row's outline, and reached into the next bay (an outside
    review)."""
    shelf = ((row.shelf_x[0], row.bottom_y[0]), (row.shelf_x[1], row.bottom_y[1]))
    lines = _segments(*shelf, width, height, within)
    if within is None:
        return lines or [_segment(*shelf, width, height, within)]
    out = list(lines)
    for ring in pieces:  # (a row across a region of several pieces: a piece the line misses gets its own)
        xs = [x for x, _ in ring]
        if len(ring) < 3 or max(xs) <= min(xs):
            continue
        x0, x1 = min(xs), max(xs)
        if any(min(a[0], b[0]) < x1 and max(a[0], b[0]) > x0 for a, b in lines):
            continue
        inset = 1e-6 * (x1 - x0)
        lo, hi = _across([ring], x0 + inset), _across([ring], x1 - inset)
        if lo is not None and hi is not None:
            out.append([[_r(x0), _r(lo[1])], [_r(x1), _r(hi[1])]])
    return sorted(out) or [_segment(*shelf, width, height, within)]


def _looks(item: Any) -> dict[str, Any]:
    """The JSON fields of the second look in the pixels at a gap, empty shelf or section."""
    return {"looks": item.looks, "texture": None if item.texture is None else _r(item.texture, 3)}


def audit_to_dict(result: AuditResult, *, image: dict[str, Any] | None = None,
                  count_ranges: Sequence[Any] | None = None) -> dict[str, Any]:
    """The JSON document of an audit (schema ``densedet-tile/audit@1``). Bays, rows and gaps
    carry their outlines as ``polygon`` lists of [x, y] in image pixels; rows also their fitted
    bottom ``line`` ([x, y] at the bay's left and right end). ``count_ranges`` (one
    :class:`~densedet_tile.types.CountRange` per part, see
    :func:`~densedet_tile.audit.confidence.part_count_ranges`) adds each bay's
    ``count_range``."""
    if count_ranges is not None:
        count_ranges = tuple(count_ranges)
        if len(count_ranges) != len(result.parts):
            raise InvalidInputError(f"count_ranges holds {len(count_ranges)} ranges but the audit has "
                                    f"{len(result.parts)} parts (bays and regions): one range per part")
    a = result.xyxy
    widths = a[:, 2] - a[:, 0]
    s = result.settings
    W, H = float(result.width), float(result.height)
    # a region's holes (what stands there is another part's), drawn and listed as its outline is
    holes = {r.name: [_poly(list(h.coords)[:-1]) for g in getattr(r.geometry, "geoms", [r.geometry])
                      if g.geom_type == "Polygon" for h in g.interiors]
             for r in result.region_shapes}
    bays, rows, gaps, shelves = [], [], [], []
    for b, part in enumerate(result.parts, start=1):
        lay = part.layout
        where = {"bay": b, **({"region": part.name} if part.kind == "region" else {})}
        outline = [pt for ring in part.rings for pt in ring]
        bay_x0 = min((x for x, _ in outline), default=0.0)
        bay_x1 = max((x for x, _ in outline), default=0.0)
        bay_w = max(bay_x1 - bay_x0, 1e-9)
        within = part_clip(part)
        for row in lay.rows:
            mine = [g for g in part.gaps if g.row == row.index]
            # a row across a region of several pieces (or around its hole) is in several pieces
            # too: ``polygon`` the largest, ``pieces`` all of them; its ends span them all
            cut = _polys(row.polygon, W, H, within)
            outline = cut[0]
            xs_all = [x for ring in cut for x, _ in ring]
            x_lo = max(row.x_start, min(xs_all)) if xs_all else row.x_start
            x_hi = min(row.x_end, max(xs_all)) if xs_all else row.x_end
            lines = row_lines(row, W, H, within, cut)
            xm = (row.x_start + row.x_end) / 2
            span = max(row.x_end - row.x_start, 1e-9)
            empty = sum(g.width_px for g in mine)
            y_top = min(max(float(row.top_at(xm)), 0.0), H)
            y_bottom = min(max(float(row.bottom_at(xm)), 0.0), H)
            if within is not None:
                # within the row's outline as cut there (a region's edge across the row; the
                # outline's corners are rounded: half a pixel of slack)
                reach = _across(cut, xm, nearest=True)
                if reach is not None:
                    y_top, y_bottom = (y if reach[0] - 0.5 <= y <= reach[1] + 0.5 else min(max(y, reach[0]), reach[1])
                                       for y in (y_top, y_bottom))
            rows.append({
                **where,
                "row": row.index + 1,
                "products": row.count,
                "y_top": _r(y_top),
                "y_bottom": _r(y_bottom),
                "x_start": _r(x_lo),
                "x_end": _r(x_hi),
                "median_product_width": _r(row.median_width),
                "median_product_height": _r(row.median_height),
                "tilt_deg": _r(row.tilt_deg, 2),
                "gaps": len(mine),
                "gap_width_px": _r(empty),
                "gap_width_products": _r(sum(g.width_products for g in mine), 2),
                # within the row's own span (a found bay's row filled on by a region's products may
                # hold a gap between them, beyond its own last product: not of that span)
                "empty_share": _r(sum(max(0.0, min(g.x2, row.x_end) - max(g.x1, row.x_start))
                                      for g in mine if g.kind == "interior") / span, 4),
                "fill": _r(max(0.0, 1.0 - empty / bay_w), 4),
                **({"facings_per_m": _r(row.count / s.bay_width_m, 2)} if s.bay_width_m else {}),
                "line": [lines[0][0], lines[-1][1]],
                **({"lines": lines} if len(lines) > 1 else {}),
                "polygon": outline,
                **({"pieces": cut} if len(cut) > 1 else {}),
            })
        for g in part.gaps:
            outline = _poly(g.polygon, W, H, within)
            xs, ys = [x for x, _ in outline], [y for _, y in outline]
            gaps.append({
                "id": len(gaps) + 1,
                **where,
                "row": g.row + 1,
                "kind": g.kind,
                "x1": _r(g.x1),
                "x2": _r(g.x2),
                "width_px": _r(g.width_px),
                "width_products": _r(g.width_products, 2),
                # the product width it is measured in: the row's median product, narrowed to
                # the product inside a tilted box and taken at the gap's distance down the aisle
                "product_width_px": _r(g.width_px / g.width_products)
                if g.width_products > 0 and np.isfinite(g.width_products) else None,
                **_looks(g),
                "xyxy": [min(xs), min(ys), max(xs), max(ys)],
                "polygon": outline,
            })
        for e in part.empty_shelves:
            outline = _poly(e.polygon, W, H, within)
            xs, ys = [x for x, _ in outline], [y for _, y in outline]
            shelves.append({
                "id": len(shelves) + 1,
                **where,
                "between_rows": [e.above + 1, e.below + 1],
                "shelves": e.shelves,
                "pitch_ratio": _r(e.pitch_ratio, 2),
                "x1": _r(max(e.x1, min(xs))),
                "x2": _r(min(e.x2, max(xs))),
                "height_px": _r(e.height_px),
                **_looks(e),
                "xyxy": [min(xs), min(ys), max(xs), max(ys)],
                "polygon": outline,
            })
        area = part.area_px
        bays.append({
            "bay": b,
            "name": part.name,
            "kind": part.kind,
            "products": int(len(part.index)),
            "products_in_rows": int((lay.assignment >= 0).sum()),
            "rows": len(lay.rows),
            "gaps": len(part.gaps),
            "gaps_looking_empty": sum(1 for g in part.gaps if g.looks == "empty"),
            "gap_width_products": _r(sum(g.width_products for g in part.gaps), 2),
            "empty_shelves": sum(1 for e in shelves if e["bay"] == b),
            "density_per_mpx": _r(len(part.index) / area * 1e6, 2) if area > 0 else None,
            "tilt_deg": _r(lay.tilt_deg, 2),
            "converging": bool(lay.spread != 0.0),
            "left_edge": part.edges[0],
            "right_edge": part.edges[1],
            "x_start": _r(bay_x0),
            "x_end": _r(bay_x1),
            # a region's outline was cut to the image already (one wholly outside keeps its own)
            "polygon": _poly(part.polygon) if part.kind == "region" else _poly(part.polygon, W, H),
            **({"pieces": [_poly(ring) for ring in part.pieces]} if part.pieces else {}),
            **({"holes": holes[part.name]} if part.kind == "region" and holes.get(part.name) else {}),
            **({"count_range": count_ranges[b - 1].as_dict()} if count_ranges is not None else {}),
        })
    number = {p.name: b for b, p in enumerate(result.parts, start=1)}
    empties = []
    for e in result.empty_sections:
        outline = _poly(e.polygon, W, H)
        xs, ys = [x for x, _ in outline], [y for _, y in outline]
        empties.append({
            "id": len(empties) + 1,
            "between_bays": [number.get(e.between[0]), number.get(e.between[1])],
            "x1": _r(e.x1),
            "x2": _r(e.x2),
            "width_px": _r(e.width_px),
            "width_products": _r(e.width_products, 2),
            **_looks(e),
            "xyxy": [min(xs), min(ys), max(xs), max(ys)],
            "polygon": outline,
        })
    n_rows = sum(len(p.layout.rows) for p in result.parts)
    in_rows = sum(int((p.layout.assignment >= 0).sum()) for p in result.parts)
    tilts = [p.layout.tilt_deg for p in result.parts if p.layout.rows]
    grid = result.grid
    return {
        "schema": AUDIT_SCHEMA,
        "image": image or {"width": result.width, "height": result.height},
        "settings": {
            "gap_k": s.gap_k, "end_gaps": s.end_gaps, "end_k": s.end_k,
            "max_tilt_deg": s.max_tilt, "perspective": s.perspective, "bays": s.bays,
            "shelf_lines": result.shelf_lines,
            "min_row_products": s.min_row_products, "heatmap_cell_px": grid.cell, "bay_width_m": s.bay_width_m,
        },
        "summary": {
            "products": int(len(a)),
            # a region wholly outside the image is listed (and warned about) but is no bay of it
            "bays": sum(1 for p in result.parts if p.area_px > 0),
            "rows": n_rows,
            "products_in_rows": in_rows,
            "gaps": len(gaps),
            "gap_width_products": _r(sum(g.width_products for g in result.gaps), 2),
            # the second look in the pixels (check_gaps): how many gaps look empty, and how many
            # look stocked (products the detector missed?); "not_judged" without the photo
            "gap_looks": {**{v: sum(1 for g in result.gaps if g.looks == v) for v in ("empty", "unsure", "stocked")},
                          "not_judged": sum(1 for g in result.gaps if g.looks is None)},
            # and the width of each kind: the empty width above counts gaps that look stocked too
            "gap_width_looks": {**{v: _r(sum(g.width_products for g in result.gaps if g.looks == v), 2)
                                   for v in ("empty", "unsure", "stocked")},
                                "not_judged": _r(sum(g.width_products for g in result.gaps if g.looks is None), 2)},
            "empty_sections": len(empties),
            "empty_shelves": len(shelves),
            "tilt_deg": _r(float(np.median(tilts)), 2) if tilts else 0.0,
            "median_product_width": _r(float(np.median(widths))) if len(a) else None,
            "density_per_mpx": _r(len(a) / (result.width * result.height) * 1e6, 2),
        },
        "warnings": list(result.warnings),
        "bays": bays,
        "rows": rows,
        "gaps": gaps,
        "empty_sections": empties,
        "empty_shelves": shelves,
        "regions": [
            {
                "name": r.name, "products": r.products, "area_px": _r(r.area_px, 0),
                "density_per_mpx": None if r.density_per_mpx is None else _r(r.density_per_mpx, 2), "rows": r.rows, "gaps": r.gaps,
                "gap_width_products": _r(r.gap_width_products, 2), "bounds": [_r(v) for v in r.bounds],
                "inside_share": _r(r.inside_share, 3),
            }
            for r in result.regions
        ],
        "heatmap": {
            "cell_px": grid.cell,
            "cols": int(grid.counts.shape[1]),
            "rows": int(grid.counts.shape[0]),
            "counts": grid.counts.tolist(),
            "density_per_mpx": np.round(grid.density, 1).tolist(),
            # the density drawn fully red (the PNG, the report's legend): thin edge cells above it
            # are drawn at that colour (heatmap.colour_top)
            "colour_max_per_mpx": _r(colour_top(grid), 1),
        },
    }
