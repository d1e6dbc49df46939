"""Killing tests for surviving mutants of densedet_tile/audit/regions.py (generated data only)."""
from __future__ import annotations

import pytest

from densedet_tile.audit.regions import parse_regions
from densedet_tile.errors import InvalidInputError


def _square(x: float, y: float, s: float, name=None) -> dict:
    props = {} if name is ... else {"name": name}
    return {"type": "Feature", "properties": props,
            "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + s, y], [x + s, y + s], [x, y + s], [x, y]]]}}


def _fc(*feats) -> dict:
    return {"type": "FeatureCollection", "features": list(feats)}


def test_names_differing_only_by_surrounding_spaces_are_duplicates() -> None:
    # regions.py:106 "x" and "x " look the same in every table: refused
    with pytest.raises(InvalidInputError, match="two regions are named 'shelf A'"):
        parse_regions(_fc(_square(0, 0, 10, "shelf A"), _square(20, 0, 10, "shelf A ")))


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_name_is_no_name(blank: str) -> None:
    # regions.py:105 GIS tools write "" for an unset attribute: the region gets its default name
    regs = parse_regions(_fc(_square(0, 0, 10, "a"), _square(20, 0, 10, blank)))
    assert [r.name for r in regs] == ["a", "region 2"]


def test_a_region_reaching_past_the_bottom_edge_is_cut_there() -> None:
    # regions.py:264 only the regions reaching past an edge are cut, the bottom edge included
    from densedet_tile.audit.regions import inside_shares, regions_outside
    regs = parse_regions(_fc(_square(100, 700, 400, "low"), _square(100, 100, 100, "in")))
    assert inside_shares(regs, 1000, 800).tolist() == pytest.approx([0.25, 1.0])
    assert regions_outside(regs, 1000, 800) == [("low", pytest.approx(0.25))]


def test_a_region_exactly_at_the_min_inside_share_is_not_outside() -> None:
    # regions.py:275 "less than min_inside": a region half inside is not named at 0.5
    from densedet_tile.audit.regions import regions_outside
    regs = parse_regions(_fc(_square(-50, 100, 100, "half")))
    assert regions_outside(regs, 1000, 800, min_inside=0.5) == []
    assert regions_outside(regs, 1000, 800, min_inside=0.51) == [("half", pytest.approx(0.5))]


def test_a_geojson_file_with_a_byte_order_mark_is_read(tmp_path) -> None:
    # regions.py:155 editors on Windows write UTF-8 with a BOM
    import json
    from densedet_tile.audit.regions import load_regions
    p = tmp_path / "r.geojson"
    p.write_bytes(b"\xef\xbb\xbf" + json.dumps(_fc(_square(0, 0, 10, "a"))).encode())
    assert [r.name for r in load_regions(p)] == ["a"]
