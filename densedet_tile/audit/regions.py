"""Regions (bays, shelf sections) from GeoJSON, and product counts per region.

The GeoJSON holds polygons in **pixel coordinates of the upright image** (x right, y down),
not longitudes/latitudes: a ``FeatureCollection`` of ``Polygon`` / ``MultiPolygon`` features
(or a single ``Feature`` or bare geometry), each named by its ``name`` property (else
``region <i>``, or the next free number when a feature is given that name). Coordinates must be numbers (a third one, a height, is accepted and dropped).
A product belongs to every region that holds its box centre, inside or on its outline; a
centre that lies only on outlines (on the edge two neighbouring regions share) belongs to the
first of those regions alone, so regions that tile the image count each product once. The
centres go into one spatial index (``shapely.STRtree``) queried with every region at once, and
the result is kept sparse (:class:`RegionMembers`: one pair per product and region holding it).

A region that lies outside the image, or mostly outside, holds no products; that is almost
always a coordinate mistake (another frame, an image that was not rotated upright, another
photo's file): :func:`regions_outside` names such regions so callers can warn.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import shapely
from shapely.geometry import shape

from ..errors import ImageReadError, InvalidInputError
from .boxes import as_boxes, require_finite

__all__ = ["Region", "RegionMembers", "load_regions", "parse_regions", "region_members", "count_in_regions",
           "overlapping_regions", "inside_shares", "regions_outside"]


@dataclass(frozen=True, eq=False)
class Region:
    """A named polygon (shapely geometry, pixel coordinates)."""

    name: str
    geometry: Any

    @property
    def area(self) -> float:
        return float(self.geometry.area)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]


#: Largest coordinate a region may have, in pixels (far beyond any image; larger is a mistake).
MAX_COORDINATE = 1e7
#: Thinnest a region may be, in pixels (twice its area over its outline's length: a rectangle's
#: shorter side, nearly). The JSON gives polygons to 0.1 px: a thinner one is written as a line.
MIN_THICKNESS = 0.1


def thickness(geometry: Any) -> float:
    """About how thick a polygon is, in its units: twice its area over its outline's length
    (a long rectangle's shorter side, a disc's radius)."""
    length = float(geometry.length)
    return 2.0 * float(geometry.area) / length if length > 0 else 0.0


def parse_regions(data: Any, *, source: str = "<regions>") -> list[Region]:
    """Regions from a parsed GeoJSON object (see module doc); ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a GeoJSON object")
    crs = data.get("crs")
    name = crs.get("properties", {}).get("name") if isinstance(crs, dict) and isinstance(crs.get("properties"), dict) \
        else None
    if isinstance(name, str) and re.search(r"EPSG:+4326\b|CRS:?84\b|EPSG:+4258\b|EPSG:+4269\b", name, re.IGNORECASE):
        # longitude and latitude over a photo: a region of a degree counted 0 products over 1 px2
        # without a word (an outside review)
        raise InvalidInputError(f"{source}: its coordinate system ({name}) is longitude and latitude: regions are "
                                "given in pixels of the upright image (x right, y down), with no crs member")
    kind = data.get("type")
    if kind == "FeatureCollection":
        feats = data.get("features")
        if not isinstance(feats, list):
            raise InvalidInputError(f"{source}: FeatureCollection without a 'features' list")
    elif kind == "Feature":
        feats = [data]
    elif kind in ("Polygon", "MultiPolygon"):
        feats = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        raise InvalidInputError(f"{source}: GeoJSON type {kind!r} is not a FeatureCollection, Feature or Polygon")
    out: list[Region] = []
    seen: set[str] = set()
    # the names given, so that an automatic name ("region 2" for an unnamed second feature)
    # never takes one of them: it moves on to the next free number
    given = {str(p["name"]).strip() for f in feats if isinstance(f, dict) and isinstance(p := f.get("properties"), dict)
             and p.get("name") is not None and str(p.get("name")).strip() != ""}
    auto = 0
    for i, f in enumerate(feats):
        if not isinstance(f, dict) or not isinstance(f.get("geometry"), dict):
            raise InvalidInputError(f"{source}: feature {i + 1} has no geometry")
        g = f["geometry"]
        if g.get("type") not in ("Polygon", "MultiPolygon"):
            raise InvalidInputError(f"{source}: feature {i + 1} is a {g.get('type')!r}; regions must be Polygon or MultiPolygon")
        odd = _not_a_number(g.get("coordinates"))
        if odd is not None:
            raise InvalidInputError(f"{source}: feature {i + 1} has a coordinate that is not a number ({odd[0]!r})")
        short = _short_ring(g)
        if short is not None:
            raise InvalidInputError(f"{source}: feature {i + 1} has a ring of {short} distinct "
                                    f"point{'' if short == 1 else 's'}; a polygon needs at least 3")
        # NaN, infinite or huge numbers: refused in one line before shapely warns of them (a
        # warnings filter around it was not safe in threads: four threads parsing regions at once
        # left RuntimeWarning ignored in the whole process; an outside review)
        extreme = _extreme(g.get("coordinates"))
        if extreme == "not finite":
            raise InvalidInputError(f"{source}: feature {i + 1} is empty or has non-finite coordinates")
        if extreme == "too far":
            raise InvalidInputError(f"{source}: feature {i + 1} has a coordinate beyond {MAX_COORDINATE:.0e} px "
                                    "(regions are in pixels of the upright image)")
        try:
            # a third number per point (a height, allowed by GeoJSON) says nothing in an image
            geom = shapely.force_2d(shape(g))
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise InvalidInputError(f"{source}: feature {i + 1} has malformed coordinates ({exc})") from None
        if geom.is_empty or not np.all(np.isfinite(geom.bounds)):
            raise InvalidInputError(f"{source}: feature {i + 1} is empty or has non-finite coordinates")
        if np.abs(geom.bounds).max() > MAX_COORDINATE:
            raise InvalidInputError(f"{source}: feature {i + 1} has a coordinate beyond {MAX_COORDINATE:.0e} px "
                                    "(regions are in pixels of the upright image)")
        if not geom.is_valid:
            raise InvalidInputError(f"{source}: feature {i + 1} is not a valid polygon ({shapely.is_valid_reason(geom)})")
        if thickness(geom) < MIN_THICKNESS:
            # (an outside review: a sliver 1e-6 px wide was valid, held nothing, and came out of
            # the JSON as a polygon of two points)
            hint = "; coordinates normalised to 0-1? regions are in pixels" if max(map(abs, geom.bounds)) <= 1 else ""
            raise InvalidInputError(f"{source}: feature {i + 1} is thinner than {MIN_THICKNESS:g} px (area "
                                    f"{geom.area:.3g} px2 along {geom.length:.3g} px of outline){hint}")
        props = f.get("properties") or {}
        raw = props.get("name") if isinstance(props, dict) else None
        # GIS tools write null (or an empty string) for an unset attribute: that is no name
        if raw is None or str(raw).strip() == "":
            auto = max(auto, i + 1)
            while f"region {auto}" in given or f"region {auto}" in seen:
                auto += 1
            name = f"region {auto}"
        else:
            name = str(raw)
        if name.strip() in seen:  # "x" and "x " look the same in every table
            raise InvalidInputError(f"{source}: two regions are named {name.strip()!r}")
        seen.add(name.strip())
        shapely.prepare(geom)
        out.append(Region(name, geom))
    if not out:
        raise InvalidInputError(f"{source}: holds no regions")
    return out


def _short_ring(geometry: dict[str, Any]) -> int | None:
    """The number of distinct points of the first ring of a (Multi)Polygon with fewer than 3
    (shapely's own message, about "a linearring" and "4 coordinates", says little to a user
    who drew 2 points); None when every ring has 3 or more, or the coordinates are malformed
    (shapely says so then)."""
    coords = geometry.get("coordinates")
    polys = coords if geometry.get("type") == "MultiPolygon" else [coords]
    try:
        for poly in polys:
            for ring in poly:
                n = len({tuple(float(v) for v in pt[:2]) for pt in ring})
                if n < 3:
                    return n
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return None


def _not_a_number(coords: Any) -> Any:
    """``(v,)`` for the first leaf ``v`` of a GeoJSON ``coordinates`` nesting that is not a
    number (a string, a boolean, null...), else None. Shapely would read "12" as 12.0 and true
    as 1.0. One pass over the coordinates (lists, tuples or numeric arrays), without recursion."""
    stack = [coords]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
        elif isinstance(v, np.ndarray):
            if v.dtype.kind not in "iuf":
                return (v.tolist(),)
        elif isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            return (v,)
    return None


def _extreme(coords: Any) -> str | None:
    """``"not finite"`` or ``"too far"`` (beyond :data:`MAX_COORDINATE`) for the first number of a
    GeoJSON ``coordinates`` nesting (numbers only: see :func:`_not_a_number`) that is so, else
    None. One pass, without recursion."""
    stack = [coords]
    while stack:
        v = stack.pop()
        if isinstance(v, (list, tuple)):
            stack.extend(reversed(v))
            continue
        a = np.asarray(v)
        if a.dtype.kind == "f":
            if not np.isfinite(a).all():
                return "not finite"
            if a.size and float(np.abs(a).max()) > MAX_COORDINATE:
                return "too far"
        elif any(abs(x) > MAX_COORDINATE for x in a.ravel().tolist()):  # (Python ints beyond any float)
            return "too far"
    return None


def load_regions(path: str | os.PathLike[str]) -> list[Region]:
    """Read regions from a GeoJSON file (see module doc)."""
    from ..eval.formats import refuse_device

    p = Path(path)
    refuse_device(p)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{p}: not valid JSON ({exc.msg}: line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:  # arrays in arrays thousands deep: Python's parser gives up
        raise InvalidInputError(f"{p}: JSON nested too deeply to read") from None
    try:
        return parse_regions(data, source=str(p))
    except RecursionError:
        raise InvalidInputError(f"{p}: coordinates nested too deeply to read") from None


@dataclass(frozen=True, eq=False)
class RegionMembers:
    """Which boxes each region holds, as sparse pairs: box ``box[k]`` lies in region
    ``region[k]``; pairs sorted by region, then box. ``n_regions`` x ``n_boxes`` is the size of
    the (dense) membership matrix they stand for."""

    region: np.ndarray
    box: np.ndarray
    n_regions: int
    n_boxes: int

    def of(self, i: int) -> np.ndarray:
        """(M,) int64 the boxes region ``i`` holds, ascending."""
        lo, hi = np.searchsorted(self.region, [i, i + 1])
        return self.box[lo:hi]

    def counts(self) -> np.ndarray:
        """(R,) how many boxes each region holds."""
        return np.bincount(self.region, minlength=self.n_regions).astype(np.int64)

    def per_box(self) -> np.ndarray:
        """(N,) in how many regions each box lies (0: outside every region)."""
        return np.bincount(self.box, minlength=self.n_boxes).astype(np.int64)

    def dense(self) -> np.ndarray:
        """The (R, N) bool matrix (for a few regions; R x N bytes)."""
        out = np.zeros((self.n_regions, self.n_boxes), bool)
        out[self.region, self.box] = True
        return out


def region_members(xyxy: np.ndarray, regions: Sequence[Region]) -> RegionMembers:
    """Which regions hold which boxes' centres (see the module doc), sparse. ``xyxy`` (N, 4)
    pixels. Cost: one spatial index of the centres and one query of all regions."""
    a = as_boxes(xyxy)
    require_finite(a)  # (a NaN centre lay in no region: counted nowhere, without a word)
    n, r = len(a), len(regions)
    none = np.zeros(0, np.int64)
    if n == 0 or r == 0:
        return RegionMembers(none, none, r, n)
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    geoms = np.array([g.geometry for g in regions], dtype=object)
    tree = shapely.STRtree(shapely.points(cx, cy))
    reg, box = tree.query(geoms, predicate="covers")  # inside or on the outline
    reg, box = reg.astype(np.int64), box.astype(np.int64)
    strict = shapely.contains_xy(geoms[reg], cx[box], cy[box]) if len(reg) else np.zeros(0, bool)
    inside_one = np.zeros(n, bool)
    inside_one[box[strict]] = True
    # a centre only on outlines goes to the first region whose outline holds it
    edge = ~inside_one[box]
    order = np.lexsort((reg, box))
    first = np.zeros(len(reg), bool)
    first[order] = np.r_[True, box[order][1:] != box[order][:-1]]
    keep = ~edge | first
    reg, box = reg[keep], box[keep]
    order = np.lexsort((box, reg))
    return RegionMembers(reg[order], box[order], r, n)


def count_in_regions(xyxy: np.ndarray, regions: Sequence[Region]) -> np.ndarray:
    """Which regions hold which boxes: bool (R, N), True where region r holds box n's centre
    (see the module doc; :func:`region_members` gives the same sparse, for many regions).

    ``xyxy`` (N, 4) pixels. Counts per region are ``.sum(axis=1)``.
    """
    return region_members(xyxy, regions).dense()


def overlapping_regions(regions: Sequence[Region]) -> np.ndarray:
    """(K, 2) int64 the pairs ``i < j`` of regions whose insides meet (an overlap of positive
    area; regions that only share an edge or a corner do not overlap), sorted. One spatial
    index query of all regions."""
    if len(regions) < 2:
        return np.zeros((0, 2), np.int64)
    geoms = np.array([g.geometry for g in regions], dtype=object)
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    mine = i < j
    i, j = i[mine], j[mine]
    # interior meets interior: for polygons, a shared area larger than zero
    both = shapely.relate_pattern(geoms[i], geoms[j], "T********") if len(i) else np.zeros(0, bool)
    pairs = np.stack([i[both], j[both]], axis=1).astype(np.int64)
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def inside_shares(regions: Sequence[Region], width: int, height: int) -> np.ndarray:
    """(R,) share of each region's area inside the ``width`` x ``height`` image (0 to 1)."""
    if not regions:
        return np.ones(0)
    geoms = np.array([g.geometry for g in regions], dtype=object)
    area = shapely.area(geoms)
    b = shapely.bounds(geoms)
    out = np.where(area > 0, 1.0, 0.0)
    # only the regions reaching past the image's edges are cut to it
    cross = (area > 0) & ((b[:, 0] < 0) | (b[:, 1] < 0) | (b[:, 2] > width) | (b[:, 3] > height))
    if cross.any():
        cut = shapely.area(shapely.intersection(geoms[cross], shapely.box(0, 0, width, height)))
        out[cross] = cut / area[cross]
    return out


def regions_outside(regions: Sequence[Region], width: int, height: int, *, min_inside: float = 0.5) -> list[tuple[str, float]]:
    """(name, share inside) of the regions with less than ``min_inside`` of their area inside
    the ``width`` x ``height`` image, in the regions' order."""
    shares = inside_shares(regions, width, height)
    return [(r.name, float(sh)) for r, sh in zip(regions, shares) if sh < min_inside]
