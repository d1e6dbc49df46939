"""The tile grid: a pure function of (image size, tile size, overlap)."""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError
from ..types import Tile, TileSpec

__all__ = ["axis_starts", "make_grid"]


def axis_starts(length: int, tile: int, stride: int) -> list[int]:
    """Origins of the windows along one axis of ``length`` pixels.

    Windows are ``tile`` long and start every ``stride`` pixels; the last one is moved inward
    so it ends flush with the border (every window full size, no sliver). A length that fits
    in one tile gives one window at 0 (which is then ``length`` long, see :func:`make_grid`).
    """
    for name, v in (("length", length), ("tile", tile), ("stride", stride)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < (0 if name == "length" else 1):
            raise InvalidInputError(f"axis_starts: {name} must be a {'non-negative' if name == 'length' else 'positive'} "
                                    f"integer, got {v!r}")
    if length <= tile:
        return [0]
    n = int(np.ceil((length - tile) / stride)) + 1
    starts = [min(i * stride, length - tile) for i in range(n)]
    # The shift of the last window can make it coincide with the previous one.
    out: list[int] = []
    for s in starts:
        if not out or s != out[-1]:
            out.append(s)
    return out


#: Most tiles one image may be cut into: far beyond any real image at sane settings (a
#: 100000 px square at 256 px tiles is 240 000); more is a mistake such as an overlap of 0.99.
MAX_TILES = 2_000_000
#: Most tiles an overlap may add, as a multiple of the tiles without overlap: 0.5 doubles each
#: axis (4x), 0.8 is about 25x (up to 30x on small tiles, where the overlap rounds to whole
#: pixels); more (0.9 and up) only repeats the same pixels, for hours.
OVERLAP_TILES_MAX = 40


def make_grid(width: int, height: int, spec: TileSpec) -> list[Tile]:
    """Cover a ``width`` x ``height`` image with overlapping tiles, row by row.

    Every pixel lies in at least one tile; neighbouring tiles overlap by at least
    ``spec.overlap_px``; all tiles are ``spec.tile`` square except along an axis shorter than
    a tile, where the single tile spans the whole axis.
    """
    if not isinstance(spec, TileSpec):
        raise InvalidInputError(f"make_grid needs a TileSpec, got {type(spec).__name__}")
    if spec.tile == "auto":
        raise InvalidInputError("make_grid needs a tile size: tile='auto' is chosen per image first "
                                "(densedet_tile.scale.choose_scale, which detect() calls)")
    if width <= 0 or height <= 0:
        raise InvalidInputError(f"image size must be positive, got {width}x{height}")
    xs = axis_starts(width, spec.tile, spec.stride)
    ys = axis_starts(height, spec.tile, spec.stride)
    plain = -(-width // spec.tile) * -(-height // spec.tile)  # the tiles without overlap
    if len(xs) * len(ys) > OVERLAP_TILES_MAX * plain and len(xs) * len(ys) > 100:
        raise InvalidInputError(
            f"overlap {spec.overlap:g} cuts this {width}x{height} image into {len(xs) * len(ys)} tiles of "
            f"{spec.tile} px, {len(xs) * len(ys) // plain} times as many as without overlap; "
            "an overlap of 0.2-0.5 is enough to see every product whole"
        )
    if len(xs) * len(ys) > MAX_TILES:
        raise InvalidInputError(
            f"{len(xs) * len(ys)} tiles of {spec.tile} px with overlap {spec.overlap:g} for a {width}x{height} image "
            f"(more than {MAX_TILES}: neighbouring tiles start {spec.stride} px apart); use a larger tile or a "
            "smaller overlap"
        )
    tw, th = min(spec.tile, width), min(spec.tile, height)
    tiles = []
    for j, y in enumerate(ys):
        for i, x in enumerate(xs):
            tiles.append(
                Tile(
                    x=x,
                    y=y,
                    w=tw,
                    h=th,
                    interior_left=i > 0,
                    interior_top=j > 0,
                    interior_right=i < len(xs) - 1,
                    interior_bottom=j < len(ys) - 1,
                    index=len(tiles),
                )
            )
    return tiles
