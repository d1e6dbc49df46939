"""What the audit refuses: boxes that are not (N, 4), scores or count ranges that do not match
the audit, and settings of the wrong kind (numpy numbers are fine, True is not a number)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densedet_tile.audit import (
    AuditSettings,
    audit_to_dict,
    count_in_regions,
    density_grid,
    estimate_tilt,
    find_bays,
    find_gaps,
    find_rows,
    parse_regions,
    part_count_ranges,
    run_audit,
    usable_boxes,
)
from densedet_tile.audit.heatmap import auto_cell
from densedet_tile.audit.neighbours import neighbour_pairs, right_neighbours, stands_on_another
from densedet_tile.errors import InvalidInputError

W, H = 400, 400


def _shelf() -> np.ndarray:
    """Three rows of six products, 45 x 100 px, 5 px apart."""
    r, c = np.divmod(np.arange(18), 6)
    x, y = 10.0 + 50 * c, 20.0 + 120 * r
    return np.stack([x, y, x + 45, y + 100], axis=1)


def _square() -> list:
    return parse_regions({"type": "Polygon", "coordinates": [[[0, 0], [200, 0], [200, 200], [0, 200], [0, 0]]]})


_EMPTY_LAYOUT = find_rows(np.zeros((0, 4)))

ENTRY_POINTS = {
    "run_audit": lambda x: run_audit(x, W, H),
    "usable_boxes": lambda x: usable_boxes(x, W, H),
    "count_in_regions": lambda x: count_in_regions(x, _square()),
    "density_grid": lambda x: density_grid(x, W, H),
    "auto_cell": lambda x: auto_cell(x, W, H),
    "find_rows": lambda x: find_rows(x),
    "estimate_tilt": lambda x: estimate_tilt(x),
    "find_bays": lambda x: find_bays(x),
    "find_gaps": lambda x: find_gaps(x, _EMPTY_LAYOUT),
    "find_gaps occupied": lambda x: find_gaps(np.zeros((0, 4)), _EMPTY_LAYOUT, occupied=x),
    "part_count_ranges near": lambda x: part_count_ranges(run_audit(_shelf(), W, H), np.full(18, 0.9), x,
                                                          score_thr=0.5, band=0.05),
    "right_neighbours": lambda x: right_neighbours(x),
    "neighbour_pairs": lambda x: neighbour_pairs(x),
    "stands_on_another": lambda x: stands_on_another(x),
}

# (1, 8): the corners of one product read as two boxes; (4, 2): points read as two boxes;
# (3, 5): boxes with a score column
BAD_SHAPES = {
    "(1, 8)": np.array([[10, 10, 50, 90, 60, 10, 100, 90]], float),
    "(4, 2)": np.array([[1, 2], [30, 40], [5, 6], [70, 80]], float),
    "(3, 5)": np.hstack([_shelf()[:3], np.full((3, 1), 0.9)]),
}


@pytest.mark.parametrize("shape", list(BAD_SHAPES))
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_every_audit_entry_point_refuses_boxes_not_shaped_n_by_4(entry, shape):
    with pytest.raises(InvalidInputError, match=r"must have shape \(N, 4\)"):
        ENTRY_POINTS[entry](BAD_SHAPES[shape])


@pytest.mark.parametrize("bad", [np.zeros(4), np.zeros((0, 5)), np.zeros((3, 0)), np.zeros((2, 2, 4)), np.float64(3.0)])
def test_flat_or_odd_empty_arrays_are_not_boxes(bad):
    with pytest.raises(InvalidInputError, match=r"must have shape \(N, 4\)"):
        run_audit(bad, W, H)
    with pytest.raises(InvalidInputError, match=r"must have shape \(N, 4\)"):
        find_rows(bad)


def test_boxes_that_are_not_numbers_are_refused():
    with pytest.raises(InvalidInputError, match="array of numbers"):
        usable_boxes([[1, 2, 3, 4], [1, 2]], W, H)


@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, 4)), np.zeros((0, 0))])
def test_no_boxes_still_makes_an_empty_audit(empty):
    doc = audit_to_dict(run_audit(empty, W, H))
    assert doc["summary"]["products"] == 0 and doc["summary"]["rows"] == 0
    assert usable_boxes(empty, W, H)[0].shape == (0, 4)
    assert len(find_rows(empty).assignment) == 0


def test_valid_boxes_audit_the_same_as_a_list_or_an_array():
    a = _shelf()
    from_array, from_list = audit_to_dict(run_audit(a, W, H)), audit_to_dict(run_audit(a.tolist(), W, H))
    assert from_array == from_list
    assert from_array["summary"]["products"] == 18 and from_array["summary"]["rows"] == 3
    assert count_in_regions(a, _square()).sum() == 8  # centres in the 200 px square: 4 columns of 2 rows
    assert density_grid(a.astype(np.float32), W, H).counts.sum() == 18


def test_part_count_ranges_wants_one_score_per_audited_box():
    res = run_audit(_shelf(), W, H)
    near = np.zeros((0, 4))
    ranges = part_count_ranges(res, np.linspace(0.5, 0.99, 18), near, score_thr=0.5, band=0.05)
    assert sum(r.count for r in ranges) == 18
    for scores in (np.full(3, 0.9), np.full(19, 0.9), np.full((18, 1), 0.9)):
        with pytest.raises(InvalidInputError, match="one score per audited box"):
            part_count_ranges(res, scores, near, score_thr=0.5, band=0.05)
    for thr, band in ((float("nan"), 0.05), (0.5, 0.6), (1.5, 0.05), (0.5, True)):
        with pytest.raises(InvalidInputError, match="score_thr|band"):
            part_count_ranges(res, np.full(18, 0.9), near, score_thr=thr, band=band)


def test_audit_to_dict_wants_one_count_range_per_part():
    res = run_audit(_shelf(), W, H)
    ranges = part_count_ranges(res, np.full(18, 0.9), np.zeros((0, 4)), score_thr=0.5, band=0.05)
    doc = audit_to_dict(res, count_ranges=ranges)
    assert all("count_range" in b for b in doc["bays"])
    for wrong in ([], ranges * 2):
        with pytest.raises(InvalidInputError, match=f"but the audit has {len(res.parts)} parts"):
            audit_to_dict(res, count_ranges=wrong)


def test_audit_settings_take_numpy_numbers_as_plain_ones():
    s = AuditSettings(gap_k=np.float32(0.75), end_k=np.float64(2.0), max_tilt=np.int64(3), min_row_products=np.int32(2),
                      cell=np.int64(40), bay_width_m=np.float32(1.25), min_region_inside=np.float16(0.5),
                      perspective=np.False_, end_gaps=np.True_, bays=np.bool_(True))
    assert type(s.gap_k) is float and s.gap_k == pytest.approx(0.75)
    assert type(s.min_row_products) is int and type(s.cell) is int and type(s.max_tilt) is int
    assert s.perspective is False and s.end_gaps is True and s.bays is True
    doc = audit_to_dict(run_audit(_shelf(), W, H, settings=s))
    json.dumps(doc, allow_nan=False)  # the settings go into the JSON as they are
    assert doc["settings"]["heatmap_cell_px"] == 40 and doc["settings"]["perspective"] is False


@pytest.mark.parametrize("field", ["gap_k", "end_k", "max_tilt", "min_row_products", "cell", "bay_width_m",
                                   "min_region_inside"])
@pytest.mark.parametrize("flag", [True, False, np.True_])
def test_audit_settings_refuse_true_or_false_as_a_number(field, flag):
    with pytest.raises(InvalidInputError):
        AuditSettings(**{field: flag})


@pytest.mark.parametrize("field", ["end_gaps", "perspective", "bays"])
@pytest.mark.parametrize("value", ["no", 1, 0, None, np.int64(1)])
def test_audit_settings_switches_must_be_true_or_false(field, value):
    with pytest.raises(InvalidInputError, match=f"{field} must be True or False"):
        AuditSettings(**{field: value})


def test_audit_settings_check_the_options_the_audit_used_to_check_late():
    for kw, msg in ((dict(end_k=float("nan")), "end gap k"), (dict(cell=0), "heatmap cell"), (dict(cell=32.0), "heatmap cell"),
                    (dict(min_row_products=0), "min_row_products"), (dict(min_row_products=2.5), "min_row_products")):
        with pytest.raises(InvalidInputError, match=msg):
            AuditSettings(**kw)


def test_part_count_ranges_near_one_count_their_lower_end_at_one_as_the_image_does():
    # a threshold within the band of 1: each part's lower end is its count at 1, as the image's
    # range is (it was None, and the bays had no range where the image had one)
    res = run_audit(_shelf(), W, H)
    scores = np.where(np.arange(18) < 6, 1.0, 0.97)
    ranges = part_count_ranges(res, scores, np.zeros((0, 4)), score_thr=0.96, band=0.05)
    assert sum(r.low for r in ranges) == 6 and sum(r.count for r in ranges) == 18
    assert all(r.uncertain is not None for r in ranges)


def test_a_near_miss_in_a_regions_hole_counts_for_what_stands_there_only():
    from densedet_tile.audit import parse_regions, run_audit
    from densedet_tile.audit.confidence import part_count_ranges

    # 4 rows of 20 products; a region over the whole image but for a hole over the middle, where
    # a found bay stands. One near miss in the hole raised both ranges (an outside review)
    boxes = np.array([[10 + x * 55, 10 + r * 120, 60 + x * 55, 110 + r * 120] for r in range(4) for x in range(20)],
                     float)
    hole = [[300, 5], [800, 5], [800, 480], [300, 480], [300, 5]]
    reg = parse_regions({"type": "Feature", "properties": {"name": "donut"}, "geometry": {
        "type": "Polygon", "coordinates": [[[0, 0], [1200, 0], [1200, 500], [0, 500], [0, 0]], hole]}})
    res = run_audit(boxes, 1200, 500, regions=reg)
    assert [(p.name, p.kind) for p in res.parts] == [("donut", "region"), ("bay 2", "bay")]
    for centre, want in (((520, 290), [0, 1]), ((100, 290), [1, 0])):
        near = np.array([[centre[0] - 20, centre[1] - 40, centre[0] + 20, centre[1] + 40]], float)
        ranges = part_count_ranges(res, np.ones(len(boxes)), near, score_thr=0.45, band=0.05)
        assert [c.high - c.count for c in ranges] == want
