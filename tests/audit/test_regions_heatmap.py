"""Counts per region (GeoJSON polygons) and the density grid."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import Point, shape

from densedet_tile.audit import count_in_regions, density_grid, heatmap_png, load_regions, parse_regions
from densedet_tile.audit.heatmap import colorize
from densedet_tile.errors import ImageReadError, InvalidInputError


def poly(coords: list, name: str | None = None) -> dict:
    props = {} if name is None else {"name": name}
    return {"type": "Feature", "properties": props, "geometry": {"type": "Polygon", "coordinates": [coords]}}


def test_counts_match_a_point_by_point_reference() -> None:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 1000, (3000, 2))
    wh = rng.uniform(4, 40, (3000, 2))
    boxes = np.column_stack([xy - wh / 2, xy + wh / 2])
    fc = {"type": "FeatureCollection", "features": [
        poly([[0, 0], [500, 0], [500, 1000], [0, 1000], [0, 0]], "left bay"),
        poly([[500, 0], [1000, 500], [500, 1000], [500, 0]], "triangle"),
        {"type": "Feature", "properties": {"name": "two squares"}, "geometry": {"type": "MultiPolygon", "coordinates": [
            [[[100, 100], [200, 100], [200, 200], [100, 200], [100, 100]]],
            [[[800, 800], [900, 800], [900, 900], [800, 900], [800, 800]]]]}},
        poly([[300, 300], [700, 300], [700, 700], [300, 700], [300, 300]]),  # unnamed, ring hole below
    ]}
    fc["features"][3]["geometry"]["coordinates"].append([[400, 400], [600, 400], [600, 600], [400, 600], [400, 400]])
    regions = parse_regions(fc)
    assert [r.name for r in regions] == ["left bay", "triangle", "two squares", "region 4"]
    inside = count_in_regions(boxes, regions)
    for r, f in zip(range(4), fc["features"]):
        geom = shape(f["geometry"])
        ref = np.array([geom.contains(Point(x, y)) for x, y in xy])
        assert np.array_equal(inside[r], ref)
    assert inside.sum(1).min() > 0


@pytest.mark.parametrize(
    ("doc", "msg"),
    [
        ({"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": {"type": "Point", "coordinates": [1, 2]}}]}, "Polygon"),
        ({"type": "FeatureCollection", "features": [poly([[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]], "bow")]}, "not a valid polygon"),
        ({"type": "FeatureCollection", "features": [poly([[0, 0], [1, 0], [1, 1], [0, 0]], "a"), poly([[0, 0], [1, 0], [1, 1], [0, 0]], "a")]}, "two regions"),
        ({"type": "FeatureCollection", "features": []}, "no regions"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "LineString"),
        ({"type": "FeatureCollection", "features": [poly([[0, 0], [1e300, 0], [1e300, 1e300], [0, 0]], "far")]}, "beyond"),
        ({"type": "FeatureCollection", "features": [poly([[0, 0], [float("nan"), 0], [5, 5], [0, 0]], "nan")]}, "feature 1"),
    ],
)
def test_bad_geojson_is_refused_with_a_clear_message(doc: dict, msg: str) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a clear error, not numpy's warnings on the way to it
        with pytest.raises(InvalidInputError, match=msg):
            parse_regions(doc, source="r.geojson")


def test_load_regions_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match="nope.geojson"):
        load_regions(tmp_path / "nope.geojson")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(InvalidInputError, match="bad.geojson.*JSON"):
        load_regions(bad)
    good = tmp_path / "good.geojson"
    good.write_text(json.dumps(poly([[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], "bay")))
    assert [r.name for r in load_regions(good)] == ["bay"]


def test_density_grid_counts_centres_per_cell() -> None:
    # 250 x 130 image, 100 px cells -> 3 x 2 grid; border cells are partial
    boxes = np.array([[0, 0, 10, 10], [90, 90, 100, 100], [95, 0, 105, 10], [240, 120, 250, 130], [240, 120, 250, 130]], float)
    g = density_grid(boxes, 250, 130, cell=100)
    assert g.counts.tolist() == [[2, 1, 0], [0, 0, 2]]  # centres (5,5), (95,95) | (100,5) | (245,125) x2
    assert g.density[0, 0] == pytest.approx(2 / (100 * 100) * 1e6)
    assert g.density[1, 2] == pytest.approx(2 / (50 * 30) * 1e6)
    assert g.counts.sum() == len(boxes)
    with pytest.raises(InvalidInputError, match="cell"):
        density_grid(boxes, 250, 130, cell=0)


def test_heatmap_png_and_colours() -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    xy = rng.uniform(0, 2000, (500, 2))
    boxes = np.column_stack([xy, xy + 20])
    g = density_grid(boxes, 2000, 1000, cell=100)
    im = Image.open(io.BytesIO(heatmap_png(g)))
    assert im.mode == "RGBA" and im.size[0] % 20 == 0 and im.size[0] // 20 == im.size[1] // 10
    rgba = colorize(np.array([[0.0, 1.0, 2.0]]))
    assert rgba[0, 0, 3] == 0 and rgba[0, 1, 3] == 255
    assert tuple(rgba[0, 2, :3]) == (215, 40, 30)  # the maximum is drawn red


def test_bays_with_different_shelf_heights_are_analysed_one_by_one() -> None:
    from densedet_tile.audit import run_audit
    from densedet_tile.synth.audit_aisles import score_gaps, synthetic_aisle

    left = synthetic_aisle(np.random.default_rng(1), width=3000, n_rows=4, row_height=260)
    right = synthetic_aisle(np.random.default_rng(2), width=3000, n_rows=5, row_height=205)
    boxes = np.concatenate([left.xyxy, right.xyxy + [3000, 0, 3000, 0]])
    height = max(left.height, right.height)
    fc = {"type": "FeatureCollection", "features": [
        poly([[0, 0], [3000, 0], [3000, height], [0, height], [0, 0]], "bay A"),
        poly([[3000, 0], [6000, 0], [6000, height], [3000, height], [3000, 0]], "bay B"),
    ]}
    whole = run_audit(boxes, 6000, height)
    assert len(whole.parts[0].layout.rows) != 9  # the shelves of the two bays do not line up
    res = run_audit(boxes, 6000, height, regions=parse_regions(fc))
    assert [len(p.layout.rows) for p in res.parts] == [4, 5]
    for part, aisle, dx in zip(res.parts, (left, right), (0, 3000)):
        assert np.array_equal(part.layout.assignment, aisle.row_of)
        shifted = [type(g)(g.row, g.x1 - dx, g.x2 - dx, g.width_px, g.width_products, g.kind, g.polygon, g.xyxy)
                   for g in part.gaps]
        sc = score_gaps(aisle, shifted, len(part.layout.rows))
        assert sc.found == sc.planted and sc.false == 0
    assert [r.rows for r in res.regions] == [4, 5]


def test_a_regions_file_nested_too_deeply_is_one_line_naming_it(tmp_path: Path) -> None:
    # Python's JSON parser raises RecursionError past about a thousand levels: that was a
    # traceback out of `audit --regions` (an outside review), where a bad file is one line
    p = tmp_path / "deep.geojson"
    p.write_text('{"type": "Polygon", "coordinates": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(InvalidInputError, match=r"deep\.geojson: JSON nested too deeply to read"):
        load_regions(p)
