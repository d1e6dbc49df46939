"""The second look at each gap in the photo's pixels (densedet_tile.audit.gapcheck): an empty
stretch of shelf looks empty, products the detector missed look stocked, at any scale of the
photo, and the verdicts reach the JSON, the report and the command's summary."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit import audit_to_dict, check_gaps, render_html, render_preview, run_audit
from densedet_tile.audit.gapcheck import LOOKS_EMPTY, LOOKS_STOCKED, MIN_PRODUCT_PX
from densedet_tile.cli import main as cli_main
from densedet_tile.errors import InvalidInputError
from fakes import SHELF_EMPTY, SHELF_MISSED, SHELF_PRODUCT, SHELF_SIZE, printed_shelf

W, H = SHELF_SIZE
PW, PH, STEP = SHELF_PRODUCT
EMPTY, MISSED = SHELF_EMPTY, SHELF_MISSED
_shelf = printed_shelf


def _photo_and_csv(folder: Path, name: str, img: np.ndarray, boxes: np.ndarray) -> tuple[Path, Path]:
    """The photo as PNG and its boxes as a SKU-110K CSV, as another detector would give them."""
    photo = folder / f"{name}.png"
    Image.fromarray(img).save(photo)
    dets = folder / f"{name}.csv"
    h, w = img.shape[:2]
    dets.write_text("image_name,x1,y1,x2,y2,class,image_width,image_height\n" + "".join(
        f"{name}.png,{x0:g},{y0:g},{x1:g},{y1:g},product,{w},{h}\n" for x0, y0, x1, y1 in boxes))
    return photo, dets


def test_an_empty_stretch_looks_empty_and_missed_products_look_stocked() -> None:
    img, boxes = _shelf()
    res = run_audit(boxes, W, H)
    assert len(res.gaps) == 2 and all(g.looks is None and g.texture is None for g in res.gaps)
    checked = check_gaps(res, img)
    by_x = sorted(checked.gaps, key=lambda g: g.x1)
    empty, missed = by_x
    assert empty.x1 < 60 + EMPTY[0] * STEP + 10 and missed.x1 > 60 + MISSED[0] * STEP - 10
    assert empty.looks == "empty" and empty.texture < LOOKS_EMPTY
    assert missed.looks == "stocked" and missed.texture >= LOOKS_STOCKED
    # nothing else changed: same gaps, same rows
    assert [(g.row, g.x1, g.x2) for g in by_x] == sorted(((g.row, g.x1, g.x2) for g in res.gaps), key=lambda t: t[1])


@pytest.mark.parametrize("scale", [0.5, 0.25, 0.12])
def test_the_verdicts_hold_at_the_scale_of_a_preview(scale: float) -> None:
    img, boxes = _shelf(1)
    res = run_audit(boxes, W, H)
    small = Image.fromarray(img).resize((round(W * scale), round(H * scale)), Image.BILINEAR)
    full = {round(g.x1): g.looks for g in check_gaps(res, img).gaps}
    assert {round(g.x1): g.looks for g in check_gaps(res, small).gaps} == full
    assert sorted(full.values()) == ["empty", "stocked"]


def test_products_too_small_in_the_image_given_are_not_judged() -> None:
    img, boxes = _shelf()
    res = run_audit(boxes, W, H)
    scale = 0.9 * MIN_PRODUCT_PX / PH  # products under MIN_PRODUCT_PX tall
    tiny = Image.fromarray(img).resize((max(1, round(W * scale)), max(1, round(H * scale))), Image.BILINEAR)
    assert all(g.looks is None for g in check_gaps(res, tiny).gaps)


def test_a_photo_of_another_size_is_refused() -> None:
    img, boxes = _shelf()
    res = run_audit(boxes, W, H)
    with pytest.raises(InvalidInputError, match="not the audited 1600x900"):
        check_gaps(res, img[:, :1200])


def test_a_flat_photo_judges_nothing() -> None:
    # no detail anywhere (a grey canvas): the products' own measure is 0, so no ratio
    _, boxes = _shelf()
    res = run_audit(boxes, W, H)
    assert all(g.looks is None for g in check_gaps(res, np.full((H, W, 3), 90, np.uint8)).gaps)


def test_the_json_and_report_carry_the_verdicts() -> None:
    img, boxes = _shelf()
    res = check_gaps(run_audit(boxes, W, H), img)
    doc = audit_to_dict(res)
    assert sorted(g["looks"] for g in doc["gaps"]) == ["empty", "stocked"]
    assert all(isinstance(g["texture"], float) for g in doc["gaps"])
    assert doc["summary"]["gap_looks"] == {"empty": 1, "unsure": 0, "stocked": 1, "not_judged": 0}
    # the empty width counts the gap that looks stocked too: its share is given apart
    widths = {g["looks"]: g["width_products"] for g in doc["gaps"]}
    assert doc["summary"]["gap_width_looks"] == {"empty": round(widths["empty"], 2), "unsure": 0,
                                                 "stocked": round(widths["stocked"], 2), "not_judged": 0}
    assert sum(b["gaps_looking_empty"] for b in doc["bays"]) == 1
    plain = audit_to_dict(run_audit(boxes, W, H))
    assert plain["summary"]["gap_looks"]["not_judged"] == 2 and all(g["looks"] is None for g in plain["gaps"])
    json.dumps(doc, allow_nan=False)
    jpeg, *_ = render_preview(res, img)
    page = render_html(doc, jpeg, b"")
    assert "stocked? (check: missed products)" in page and "gaps that look empty" in page
    assert f"of which looks stocked <b>{doc['summary']['gap_width_looks']['stocked']}</b>" in page
    assert "gaps that look empty" not in render_html(plain, jpeg, b"")


def test_the_preview_draws_a_gap_that_looks_stocked_in_purple() -> None:
    img, boxes = _shelf()
    res = check_gaps(run_audit(boxes, W, H), img)
    jpeg, pw, ph, s = render_preview(res, None)
    from io import BytesIO

    pic = np.asarray(Image.open(BytesIO(jpeg)).convert("RGB")).astype(int)
    for g in res.gaps:
        x0, y0, x1, y1 = (np.asarray(g.xyxy) * s).round().astype(int)
        # the fill inside the outline, over the grey canvas (away from the number at its corner):
        # purple tints it bluish, red pink
        r, gr, b = np.median(pic[y0 + 20:y1 - 6, x0 + 30:x1 - 6].reshape(-1, 3), axis=0)
        if g.looks == "stocked":
            assert r - gr < 30 and b - gr > 10
        else:
            assert r - gr > 50


def test_the_audit_command_checks_the_gaps_in_the_photo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo, dets = _photo_and_csv(tmp_path, "shelf", *_shelf())
    assert cli_main(["audit", str(photo), "--detections", str(dets), "--out", str(tmp_path / "o")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    doc = json.loads((tmp_path / "o" / "shelf.audit.json").read_text())
    stocked = doc["summary"]["gap_width_looks"]["stocked"]
    assert "2 gaps" in line and f"1 looks empty, 1 looks stocked ({stocked} widths)" in line
    assert doc["summary"]["gap_looks"]["stocked"] == 1
    assert cli_main(["audit", str(photo), "--detections", str(dets), "--no-pixel-check",
                     "--out", str(tmp_path / "o2")]) == 0
    assert "look empty" not in capsys.readouterr().out
    doc = json.loads((tmp_path / "o2" / "shelf.audit.json").read_text())
    assert doc["summary"]["gap_looks"]["not_judged"] == 2


def test_check_gaps_leaves_a_result_without_gaps_as_it_is() -> None:
    img, boxes = _shelf()
    res = run_audit(boxes, W, H)
    bare = replace(res, parts=tuple(replace(p, gaps=()) for p in res.parts))
    assert check_gaps(bare, img) is bare


# ----------------------------------------------------------------------------- review of the change
def test_a_tall_narrow_photo_whose_preview_rounds_its_width_is_checked_not_refused() -> None:
    # 205 x 24000 px: a preview 20 px wide is 2.5 % off the height's scale; one scale still fits
    # both sides within the rounding of a reduced decode (the audit failed with rc 2)
    boxes = np.array([[10.0, 100.0 * i, 100.0, 100.0 * i + 90] for i in range(240) if i % 7], np.float64)
    res = run_audit(boxes, 205, 24000, settings=None)
    check_gaps(res, np.zeros((2400, 20, 3), np.uint8))  # no error
    with pytest.raises(InvalidInputError, match="not the audited 205x24000 at one scale"):
        check_gaps(res, np.zeros((2400, 40, 3), np.uint8))  # another aspect: another image


@pytest.mark.parametrize("form", ["one channel", "grey and alpha", "palette", "bool", "uint16", "float 0..1"])
def test_other_image_forms_give_the_same_verdicts(form: str) -> None:
    img, boxes = _shelf()
    res = run_audit(boxes, W, H)
    grey = np.asarray(Image.fromarray(img).convert("L"))
    given = {
        "one channel": grey[..., None],
        "grey and alpha": np.dstack([grey, np.full_like(grey, 255)]),
        "palette": Image.fromarray(img).convert("P"),
        "bool": img > 127,
        "uint16": img.astype(np.uint16) * 257,
        "float 0..1": img.astype(np.float32) / 255,
    }[form]
    want = {round(g.x1): g.looks for g in check_gaps(res, img).gaps}
    assert {round(g.x1): g.looks for g in check_gaps(res, given).gaps} == want


def test_a_pixel_that_is_not_a_number_is_refused_in_one_line() -> None:
    img, boxes = _shelf()
    f = img.astype(np.float32)
    f[3, 3, 1] = np.nan
    with pytest.raises(InvalidInputError, match="not finite"):
        check_gaps(run_audit(boxes, W, H), f)


def test_the_command_says_when_the_preview_is_too_small_to_check_the_gaps(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    photo, dets = _photo_and_csv(tmp_path, "shelf", *_shelf())
    # products 300 px tall; a preview 50 px wide makes them about 9 px
    assert cli_main(["audit", str(photo), "--detections", str(dets), "--preview-max-width", "50",
                     "--out", str(tmp_path / "o")]) == 0
    err = capsys.readouterr().err
    assert "gaps not checked in the photo" in err and "--preview-max-width" in err
    doc = json.loads((tmp_path / "o" / "shelf.audit.json").read_text())
    assert doc["summary"]["gap_looks"]["not_judged"] == 2 and any("not checked" in w for w in doc["warnings"])


# ----------------------------------------------------------------------------- empty shelves and sections
def _bays(kind: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Five shelves of printed products on a dark back panel. ``shelf_missed``: the middle
    shelf's products drawn but not boxed; ``shelf_empty``: the middle shelf bare; ``section_empty``
    / ``section_missed``: two bays with the stretch between them bare / drawn but not boxed."""
    rng = np.random.default_rng(seed)
    section = kind.startswith("section")
    width, height = (4700 if section else 1600), 2300
    img = np.full((height, width, 3), 38, np.uint8)
    columns = [60 + i * STEP for i in range(14)] + ([3150 + i * STEP for i in range(14)] if section else [])
    unboxed = [1560 + i * STEP for i in range(15)] if kind == "section_missed" else []
    boxes = []
    for r, bottom in enumerate((400, 850, 1300, 1750, 2200)):
        img[bottom:bottom + 12] = 150
        for x0 in columns + unboxed:
            if not (kind == "shelf_empty" and r == 2):
                block = rng.integers(0, 256, size=(PH // 6, PW // 5, 3), dtype=np.uint8)
                img[bottom - PH:bottom, x0:x0 + PW] = np.kron(block, np.ones((6, 5, 1), np.uint8))
            if (kind.startswith("shelf") and r == 2) or x0 in unboxed:
                continue
            boxes.append([x0, bottom - PH, x0 + PW, bottom])
    return img, np.asarray(boxes, np.float64), width, height


@pytest.mark.parametrize("kind, want", [("shelf_missed", "stocked"), ("shelf_empty", "empty"),
                                        ("section_missed", "stocked"), ("section_empty", "empty")])
def test_empty_shelves_and_sections_get_the_same_second_look(kind: str, want: str) -> None:
    img, boxes, width, height = _bays(kind)
    res = run_audit(boxes, width, height)
    found = res.empty_shelves if kind.startswith("shelf") else res.empty_sections
    assert len(found) == 1 and found[0].looks is None
    res = check_gaps(res, img)
    found = res.empty_shelves if kind.startswith("shelf") else res.empty_sections
    assert found[0].looks == want
    doc = audit_to_dict(res)
    listed = doc["empty_shelves"] if kind.startswith("shelf") else doc["empty_sections"]
    assert listed[0]["looks"] == want and isinstance(listed[0]["texture"], float)


def test_the_command_says_an_empty_shelf_looks_stocked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img, boxes, _, _ = _bays("shelf_missed")
    photo, dets = _photo_and_csv(tmp_path, "bay", img, boxes)
    assert cli_main(["audit", str(photo), "--detections", str(dets), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "empty shelf in bay 1 between rows 2 and 3" in out and "looks stocked in the photo" in out
    page = (tmp_path / "o" / "bay.audit.html").read_text()
    assert "stocked? (check: missed products)" in page


def _gradient_integral_whole(grey: np.ndarray) -> np.ndarray:
    """The summed-area table made the plain way, the whole image at once (the reference)."""
    g = np.zeros_like(grey)
    g[:, 1:] += np.abs(np.diff(grey, axis=1))
    g[1:, :] += np.abs(np.diff(grey, axis=0))
    sat = np.zeros((g.shape[0] + 1, g.shape[1] + 1), np.float64)
    np.cumsum(g, axis=0, dtype=np.float64, out=sat[1:, 1:])
    np.cumsum(sat[1:, 1:], axis=1, out=sat[1:, 1:])
    return sat


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 3), (2500, 1000), (1049, 1000)])
def test_the_gradient_table_made_in_bands_equals_the_whole_image_one(shape):
    from densedet_tile.audit.gapcheck import _gradient_integral

    # bands of about a million pixels: 2500 rows of 1000 cross two band edges, 1049 one by a row
    grey = (np.random.default_rng(shape).random(shape, dtype=np.float32) * 255).astype(np.float32)
    assert np.array_equal(_gradient_integral(grey), _gradient_integral_whole(grey))


def test_the_gradient_table_holds_little_beside_itself():
    import tracemalloc

    from densedet_tile.audit.gapcheck import _gradient_integral

    grey = np.random.default_rng(0).random((1250, 10000), dtype=np.float32)
    tracemalloc.start()
    try:
        sat = _gradient_integral(grey)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # the whole-image way held 145 MB beside the table's 95 MB; in bands about 12 MB
    assert peak - sat.nbytes < 40 * 2**20
