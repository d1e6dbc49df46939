"""Regions (bays, shelf sections) from GeoJSON, and product counts per region.

The GeoJSON holds polygons in **pixel coordinates of the upright image** (x right, y down),
not longitudes/latitudes: a ``FeatureCollection`` of ``Polygon`` / ``MultiPolygon`` features
(or a single ``Feature`` or bare geometry), each named by its ``name`` property (else
``region <i>``). A product belongs to every region that contains its box centre; the test is
one vectorised ``shapely.contains_xy`` call per region.

A region that lies outside the image, or mostly outside, holds no products; that is almost
always a coordinate mistake (another frame, an image that was not rotated upright, another
photo's file): :func:`regions_outside` names such regions so callers can warn.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from ..errors import ImageReadError, InvalidInputError
from .boxes import as_boxes

__all__ = ["Region", "load_regions", "parse_regions", "count_in_regions", "inside_shares", "regions_outside"]


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


def parse_regions(data: Any, *, source: str = "<regions>") -> list[Region]:
    """Regions from a parsed GeoJSON object (see module doc); ``source`` names it in errors."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{source}: expected a GeoJSON object")
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
    for i, f in enumerate(feats):
        if not isinstance(f, dict) or not isinstance(f.get("geometry"), dict):
            raise InvalidInputError(f"{source}: feature {i} has no geometry")
        g = f["geometry"]
        if g.get("type") not in ("Polygon", "MultiPolygon"):
            raise InvalidInputError(f"{source}: feature {i} is a {g.get('type')!r}; regions must be Polygon or MultiPolygon")
        try:
            with warnings.catch_warnings():  # NaN or huge numbers: refused below in one line, not warned about
                warnings.simplefilter("ignore", RuntimeWarning)
                geom = shape(g)
        except Exception as exc:  # shapely raises several types for malformed coordinates
            raise InvalidInputError(f"{source}: feature {i} has malformed coordinates ({exc})") from None
        if geom.is_empty or not np.all(np.isfinite(geom.bounds)):
            raise InvalidInputError(f"{source}: feature {i} is empty or has non-finite coordinates")
        if np.abs(geom.bounds).max() > MAX_COORDINATE:
            raise InvalidInputError(f"{source}: feature {i} has a coordinate beyond {MAX_COORDINATE:.0e} px "
                                    "(regions are in pixels of the upright image)")
        if not geom.is_valid:
            raise InvalidInputError(f"{source}: feature {i} is not a valid polygon ({shapely.is_valid_reason(geom)})")
        props = f.get("properties") or {}
        raw = props.get("name") if isinstance(props, dict) else None
        # GIS tools write null (or an empty string) for an unset attribute: that is no name
        name = f"region {i + 1}" if raw is None or str(raw).strip() == "" else str(raw)
        if name in seen:
            raise InvalidInputError(f"{source}: two regions are named {name!r}")
        seen.add(name)
        shapely.prepare(geom)
        out.append(Region(name, geom))
    if not out:
        raise InvalidInputError(f"{source}: holds no regions")
    return out


def load_regions(path: str | os.PathLike[str]) -> list[Region]:
    """Read regions from a GeoJSON file (see module doc)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ImageReadError(f"{p}: cannot read ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{p}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    return parse_regions(data, source=str(p))


def count_in_regions(xyxy: np.ndarray, regions: list[Region]) -> np.ndarray:
    """Which regions hold which boxes: bool (R, N), True where region r contains box n's centre.

    ``xyxy`` (N, 4) pixels. Counts per region are ``.sum(axis=1)``.
    """
    a = as_boxes(xyxy)
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    out = np.zeros((len(regions), len(a)), bool)
    for i, r in enumerate(regions):
        x0, y0, x1, y1 = r.bounds
        near = np.flatnonzero((cx >= x0) & (cx <= x1) & (cy >= y0) & (cy <= y1))
        if near.size:
            out[i, near] = shapely.contains_xy(r.geometry, cx[near], cy[near])
    return out


def inside_shares(regions: list[Region], width: int, height: int) -> np.ndarray:
    """(R,) share of each region's area inside the ``width`` x ``height`` image (0 to 1)."""
    frame = shapely.box(0, 0, width, height)
    out = np.ones(len(regions))
    for i, r in enumerate(regions):
        area = r.area
        out[i] = float(r.geometry.intersection(frame).area / area) if area > 0 else 0.0
    return out


def regions_outside(regions: list[Region], width: int, height: int, *, min_inside: float = 0.5) -> list[tuple[str, float]]:
    """(name, share inside) of the regions with less than ``min_inside`` of their area inside
    the ``width`` x ``height`` image, in the regions' order."""
    shares = inside_shares(regions, width, height)
    return [(r.name, float(sh)) for r, sh in zip(regions, shares) if sh < min_inside]
