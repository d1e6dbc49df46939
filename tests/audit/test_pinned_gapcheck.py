"""Killing tests for surviving mutants of densedet_tile/audit/gapcheck.py (generated data only)."""
from __future__ import annotations

import numpy as np
import pytest

from densedet_tile.audit import check_gaps, run_audit
from densedet_tile.audit.analysis import AuditSettings

PW, PH, STEP = 100, 300, 105


def _print(rng, img, x0, bottom, lo, hi):
    block = rng.integers(lo, hi, size=(PH // 6, PW // 5, 3), dtype=np.uint8)
    img[bottom - PH:bottom, x0:x0 + PW] = np.kron(block, np.ones((6, 5, 1), np.uint8))


def _row(rng, img, boxes, n, bottom, lo=0, hi=256, *, missed=(), gone=()):
    """``n`` products printed side by side from x 60 on a shelf ending at ``bottom`` (those in
    ``gone`` not there at all), their boxes added to ``boxes`` but for those the detector
    ``missed``."""
    for i in range(n):
        if i in gone:
            continue
        _print(rng, img, 60 + i * STEP, bottom, lo, hi)
        if i not in missed:
            boxes.append([60 + i * STEP, bottom - PH, 60 + i * STEP + PW, bottom])


def test_a_row_of_two_products_is_judged_against_the_bay_not_its_own_two() -> None:
    # gapcheck.py:50 a row's own products are the reference only when there are 3 or more:
    # here the short row's two products are faint, the stretch between them as faint, the
    # top row's 14 products bold. Over the bay's median the stretch looks empty; over its two
    # faint neighbours alone it would look stocked.
    rng = np.random.default_rng(0)
    img = np.full((900, 1600, 3), 38, np.uint8)
    boxes = []
    _row(rng, img, boxes, 14, 400)
    _row(rng, img, boxes, 8, 850, 30, 50, missed=range(1, 7))  # faint print, also in the stretch
    res = run_audit(np.array(boxes, float), 1600, 900, settings=AuditSettings(min_row_products=2, end_gaps=False))
    gaps = [g for g in res.gaps if g.xyxy[1] > 450]
    assert len(gaps) == 1
    g = [q for q in check_gaps(res, img).gaps if q.xyxy[1] > 450][0]
    assert g.looks == "empty" and g.texture < 0.35


def _shelf():
    rng = np.random.default_rng(1)
    img = np.full((900, 1600, 3), 38, np.uint8)
    boxes = []
    _row(rng, img, boxes, 14, 400, gone=(5, 6))
    return img, np.array(boxes, float)


def test_an_explicit_scale_that_does_not_fit_the_image_is_refused() -> None:
    # gapcheck.py:136 a scale given by the caller must fit the image's size too
    img, boxes = _shelf()
    res = run_audit(boxes, 1600, 900)
    assert len(res.gaps) == 1
    check_gaps(res, img, scale=1.0)  # fits
    with pytest.raises(Exception, match=r"not the audited 1600x900 at one scale \(0\.5\)"):
        check_gaps(res, img, scale=0.5)


def test_each_side_of_a_reduced_image_keeps_its_own_scale() -> None:
    # gapcheck.py:126 a reduced decode rounds each side on its own: x and y scale differ (here
    # 0.1 and 0.101 on a 1000 x 30000 strip of shelves). One scale for both puts the gap at the
    # foot of the strip a whole row too high, over the products above it.
    rng = np.random.default_rng(2)
    sx, sy = 0.1, 0.101
    img = np.full((3030, 100, 3), 38, np.uint8)
    boxes = []
    for bottom in (29340, 29700):  # 60 px between the rows
        for i in range(10):
            x0, x1, y0, y1 = 30 + i * 95, 30 + i * 95 + 90, bottom - 300, bottom
            if bottom == 29700 and i in (4, 5):
                continue  # an empty stretch: flat back panel
            boxes.append([x0, y0, x1, y1])
            a, b, c, d = round(x0 * sx), round(y0 * sy), round(x1 * sx), round(y1 * sy)
            img[b:d, a:c] = rng.integers(0, 256, size=(d - b, c - a, 3), dtype=np.uint8)
    res = run_audit(np.array(boxes, float), 1000, 30000)
    assert len(res.gaps) == 1 and res.gaps[0].xyxy[1] > 29300
    g = check_gaps(res, img).gaps[0]
    assert g.looks == "empty"


def test_a_gap_is_judged_against_its_own_row_not_the_whole_bay() -> None:
    # gapcheck.py:179 the reference is the median of the gap's own row (3 products or more):
    # faint products on the lower shelf, two of them missed by the detector, under a shelf of
    # bold ones. Over its own row the missed stretch looks stocked; over the bay it would not.
    rng = np.random.default_rng(0)
    img = np.full((900, 1600, 3), 38, np.uint8)
    boxes = []
    _row(rng, img, boxes, 14, 400)
    _row(rng, img, boxes, 8, 850, 30, 60, missed=(3, 4))
    res = run_audit(np.array(boxes, float), 1600, 900, settings=AuditSettings(end_gaps=False))
    low = [g for g in check_gaps(res, img).gaps if g.xyxy[1] > 450]
    assert len(low) == 1 and low[0].looks == "stocked"


def test_an_empty_section_is_judged_against_the_two_bays_beside_it() -> None:
    # gapcheck.py:184 an empty section's reference is the products of the bays on either side,
    # not the whole image: two bays of faint products with faint products the detector missed
    # between them, and a wide third bay of bold ones. Over its own bays the section looks stocked.
    rng = np.random.default_rng(4)
    width, height = 7900, 2300
    img = np.full((height, width, 3), 38, np.uint8)
    faint = [60 + i * STEP for i in range(14)] + [3150 + i * STEP for i in range(14)]
    missed = [1560 + i * STEP for i in range(15)]
    bold = [4700 + i * STEP for i in range(30)]
    boxes = []
    for bottom in (400, 850, 1300, 1750, 2200):
        img[bottom:bottom + 12] = 150
        for x0 in faint + missed + bold:
            _print(rng, img, x0, bottom, *((0, 256) if x0 in bold else (30, 60)))
            if x0 not in missed:
                boxes.append([x0, bottom - PH, x0 + PW, bottom])
    res = run_audit(np.array(boxes, float), width, height)
    assert len(res.empty_sections) == 1
    sec = check_gaps(res, img).empty_sections[0]
    assert sec.looks == "stocked"


def test_print_in_horizontal_stripes_counts_as_detail() -> None:
    # gapcheck.py:82 the measure is |dI/dx| + |dI/dy|: products printed in horizontal bands
    # (no change along x) that the detector missed still look stocked (products 60 px tall:
    # the photo is not shrunk before measuring)
    rng = np.random.default_rng(5)
    img = np.full((900, 1600, 3), 38, np.uint8)
    boxes = []
    for i in range(20):
        x0 = 60 + i * 42
        if i in (9, 10):
            img[340:400, x0:x0 + 40] = np.repeat(rng.integers(0, 256, size=(30, 1, 3), dtype=np.uint8), 2, axis=0)
        else:
            block = rng.integers(0, 256, size=(10, 8, 3), dtype=np.uint8)
            img[340:400, x0:x0 + 40] = np.kron(block, np.ones((6, 5, 1), np.uint8))
            boxes.append([x0, 340, x0 + 40, 400])
    res = run_audit(np.array(boxes, float), 1600, 900)
    assert len(res.gaps) == 1
    assert check_gaps(res, img).gaps[0].looks == "stocked"


@pytest.mark.parametrize(("mode", "order"), [("I;16", "<u2"), ("I;16B", ">u2"), ("I;16L", "<u2")])
def test_16_bit_grey_keeps_its_levels_in_either_byte_order(mode: str, order: str) -> None:
    # an outside review: I;16B and I;16L (16-bit TIFFs) went through an RGB conversion, which
    # clipped every level above 255 (17 levels of 4096 left)
    from PIL import Image

    from densedet_tile.audit.gapcheck import _grey

    a = (np.arange(64 * 64).reshape(64, 64) * 16 % 65536).astype(np.uint16)
    g = _grey(Image.frombytes(mode, (64, 64), a.astype(order).tobytes()))
    assert np.array_equal(g, a.astype(np.float32))


def test_a_scale_must_be_a_number_not_a_flag() -> None:
    from densedet_tile.errors import InvalidInputError

    res = run_audit(np.array([[0, 0, 10, 20], [12, 0, 22, 20], [24, 0, 34, 20]], float), 100, 50)
    with pytest.raises(InvalidInputError, match="scale must be a positive number"):
        check_gaps(res, np.zeros((50, 100), np.uint8), scale=True)
