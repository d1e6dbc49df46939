"""Fixes from the outside reviews of 2026-12-07 (stop 71): the audit command's photo."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile.audit.report import load_preview_image
from densedet_tile.cli.audit import audit_main
from densedet_tile.synth.audit_aisles import render_aisle, synthetic_aisle

from test_cli_report import write_detections


def _counting_open(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    from densedet_tile.tiler import readers

    real = readers.open_image
    opened: list[str] = []

    def counting(path, *a, **k):
        opened.append(str(path))
        return real(path, *a, **k)

    monkeypatch.setattr(readers, "open_image", counting)
    return opened


def test_a_png_photo_is_decoded_once_for_the_preview_and_the_shelf_lines(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    # the preview and the picture the bays are read from each decoded the whole PNG (1.3 s each
    # on a 60-megapixel panorama: an outside review)
    a = synthetic_aisle(np.random.default_rng(3), width=3000, n_rows=4, tilt_deg=0.5)
    img = tmp_path / "aisle.png"
    Image.fromarray(render_aisle(a)).save(img)
    det = tmp_path / "aisle.detections.json"
    write_detections(det, a.xyxy, a.width, a.height, str(img))
    import densedet_tile.cli.audit as cli

    real_run = cli.run_audit
    pictures = []

    def run(*a, **k):
        pictures.append(k.get("picture"))
        return real_run(*a, **k)

    monkeypatch.setattr(cli, "run_audit", run)
    opened = _counting_open(monkeypatch)
    assert audit_main(["--detections", str(det), str(img), "--out", str(tmp_path / "o"), "-q"]) == 0
    assert opened == [str(img)]
    # both were made: the shelf lines' picture (at its own scale) went to the audit
    assert len(pictures) == 1 and pictures[0] is not None and pictures[0].size != (a.width, a.height)
    assert (tmp_path / "o" / "aisle.audit.html").is_file()


def test_several_preview_sizes_from_one_opening_equal_each_made_alone(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from densedet_tile.audit.report import load_preview_images

    rng = np.random.default_rng(5)
    arr = rng.integers(0, 255, (300, 800, 3), dtype=np.uint8)
    for name in ("x.png", "x.jpg"):
        path = tmp_path / name
        Image.fromarray(arr).save(path)
        sizes = [(400, 400), (120, 500)]
        alone = [load_preview_image(path, 800, 300, max_width=w, max_height=h) for w, h in sizes]
        opened = _counting_open(monkeypatch)
        both = load_preview_images(path, 800, 300, sizes)
        assert len(opened) == (1 if name.endswith(".png") else 0)
        monkeypatch.undo()
        assert [im.size for im in both] == [im.size for im in alone]
        if name.endswith(".png"):  # (a JPEG is decoded at the nearest reduced scale above)
            assert [im.size for im in both] == [(400, 150), (120, 45)]
        for x, y in zip(both, alone):
            assert np.array_equal(np.asarray(x), np.asarray(y))


def _aisle_cut_above_its_last_shelf():
    """A generated aisle, and a height between its bottom row's products' centres and bottoms."""
    a = synthetic_aisle(np.random.default_rng(7), width=2400, n_rows=4, tilt_deg=0.0)
    xyxy = a.xyxy
    last = xyxy[xyxy[:, 3] > xyxy[:, 3].max() - 0.5 * np.median(xyxy[:, 3] - xyxy[:, 1])]
    return a, float(np.median((last[:, 1] + last[:, 3]) / 2 * 0.3 + last[:, 3] * 0.7))


def test_a_rows_line_stays_in_its_region_when_the_regions_edge_cuts_the_row_above_its_shelf() -> None:
    # a region whose lower edge crosses its last row between the products' centres and their
    # bottoms: that row's line (the shelf line, wholly below the region) was given as it is,
    # outside the region and the row's outline, reaching into the next bay (an outside review)
    from shapely.geometry import LineString, Polygon

    from densedet_tile.audit import audit_to_dict, parse_regions, render_preview, run_audit

    a, edge = _aisle_cut_above_its_last_shelf()
    xyxy = a.xyxy
    bottom = xyxy[:, 3].max()
    w = a.width * 0.6
    feats = [{"type": "Feature", "properties": {"name": "left"},
              "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [w, 0], [w, edge], [0, edge], [0, 0]]]}}]
    res = run_audit(xyxy, a.width, a.height, regions=parse_regions({"type": "FeatureCollection", "features": feats}))
    doc = audit_to_dict(res)
    region = Polygon([(0, 0), (w, 0), (w, edge), (0, edge)])
    mine = [r for r in doc["rows"] if r.get("region") == "left"]
    assert len(mine) >= 3
    for r in mine:
        line, outline = LineString(r["line"]), Polygon(r["polygon"])
        assert region.buffer(0.5).covers(line), r
        assert outline.buffer(0.5).covers(line), r
        ys = [y for _, y in r["polygon"]]
        assert min(ys) - 0.5 <= r["y_top"] <= r["y_bottom"] <= max(ys) + 0.5, r
    # the preview draws the same line (rows in blue: nothing of it below the region's edge
    # inside the region's columns, beyond the line's width)
    import io

    jpeg, _, _, scale = render_preview(res, None, max_width=a.width, quality=100)
    pic = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int)
    below = pic[int((edge + 12) * scale):int((bottom - 2) * scale), int(20 * scale):int((w - 20) * scale)]
    row_blue = (np.abs(below - np.array([30, 70, 230])).max(axis=-1) < 30)
    assert row_blue.sum() < 5


def test_a_region_wholly_outside_the_image_has_no_name_drawn_in_the_preview() -> None:
    # its name was pushed into the picture's bottom-left corner, where no region is
    import io

    from densedet_tile.audit import parse_regions, render_preview, run_audit

    a = synthetic_aisle(np.random.default_rng(9), width=1600, n_rows=3, tilt_deg=0.0)

    def box(name, x0, y0, x1, y1):
        return {"type": "Feature", "properties": {"name": name},
                "geometry": {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}}

    inside = box("shelf", 0, 0, a.width / 2, a.height)
    gone = box("GONE GONE GONE", 0, a.height + 500, 500, a.height + 1000)
    pics = []
    for feats in ([inside], [inside, gone]):
        res = run_audit(a.xyxy, a.width, a.height, regions=parse_regions({"type": "FeatureCollection", "features": feats}))
        jpeg, *_ = render_preview(res, None, max_width=800, quality=100)
        pics.append(np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB")).astype(int))
    assert any("GONE" in w for w in res.warnings)
    # (the bays' numbers differ: the region is a part too) the picture's bottom-left corner,
    # where the name was pushed, is as without that region
    corner = (slice(pics[0].shape[0] - 60, None), slice(0, 300))
    assert np.abs(pics[0][corner] - pics[1][corner]).max() <= 2


def test_a_row_across_a_region_of_two_pieces_cut_above_its_shelf_has_a_line_in_each_piece() -> None:
    # the fallback line ran from the left piece to the right one across the gap between them,
    # and y_bottom (the middle fell in the gap) lay below the outline (a diff review)
    from shapely.geometry import LineString, shape

    from densedet_tile.audit import audit_to_dict, parse_regions, run_audit

    a, edge = _aisle_cut_above_its_last_shelf()
    xyxy = a.xyxy
    W = a.width
    geom = {"type": "MultiPolygon", "coordinates": [
        [[[0, 0], [0.35 * W, 0], [0.35 * W, edge], [0, edge], [0, 0]]],
        [[[0.65 * W, 0], [W, 0], [W, edge], [0.65 * W, edge], [0.65 * W, 0]]]]}
    feats = [{"type": "Feature", "properties": {"name": "two"}, "geometry": geom}]
    doc = audit_to_dict(run_audit(xyxy, a.width, a.height,
                                  regions=parse_regions({"type": "FeatureCollection", "features": feats})))
    region = shape(geom).buffer(0.5)
    mine = [r for r in doc["rows"] if r.get("region") == "two"]
    assert len(mine) >= 3
    for r in mine:
        pieces = r.get("lines", [r["line"]])
        assert len(pieces) == len(r.get("pieces", [r["polygon"]])) == 2, r
        for line in pieces:
            assert region.covers(LineString(line)), r
        ys = [y for p in r["pieces"] for _, y in p]
        assert min(ys) - 0.5 <= r["y_top"] <= r["y_bottom"] <= max(ys) + 0.5, r


def test_a_region_piece_the_shelf_line_misses_gets_its_own_line_beside_one_it_crosses() -> None:
    # the line was given piece by piece only when it missed every piece: one piece reaching below
    # the shelf, the other cut above it, left the second without a line (a diff review)
    from shapely.geometry import LineString, Polygon

    from densedet_tile.audit import audit_to_dict, parse_regions, run_audit

    a, edge = _aisle_cut_above_its_last_shelf()
    xyxy = a.xyxy
    W, H = a.width, a.height
    left = [[0, 0], [0.35 * W, 0], [0.35 * W, H], [0, H], [0, 0]]
    right = [[0.65 * W, 0], [W, 0], [W, edge], [0.65 * W, edge], [0.65 * W, 0]]
    feats = [{"type": "Feature", "properties": {"name": "two"},
              "geometry": {"type": "MultiPolygon", "coordinates": [[left], [right]]}}]
    doc = audit_to_dict(run_audit(xyxy, W, H, regions=parse_regions({"type": "FeatureCollection", "features": feats})))
    row = max((r for r in doc["rows"] if r.get("region") == "two"), key=lambda r: r["y_bottom"])
    lines = row.get("lines", [row["line"]])
    assert len(lines) == 2, row
    assert Polygon(left).buffer(0.5).covers(LineString(lines[0]))
    assert Polygon(right).buffer(0.5).covers(LineString(lines[1]))


def _shelf_yolo(tmp_path: Path, *, bom: bool) -> tuple[Path, Path]:
    """A photo and YOLO labels of 6 products, the first written twice (a near-copy)."""
    img = tmp_path / "shelf.png"
    Image.fromarray(np.full((300, 600, 3), 128, np.uint8)).save(img)
    lines = [f"0 {0.1 + 0.15 * i:.3f} 0.5 0.1 0.3" for i in range(6)]
    (tmp_path / "shelf.txt").write_text(("\ufeff" if bom else "") + "\n".join([lines[0]] + lines) + "\n",
                                        encoding="utf-8")
    return tmp_path / "shelf.txt", img


def test_a_yolo_file_with_a_byte_order_mark_reads_as_without(tmp_path: Path, capsys) -> None:
    # the mark made the first line's class "\ufeff0": its near-copy, of "another class", was kept
    import json

    counts = []
    for bom in (False, True):
        d = tmp_path / ("bom" if bom else "plain")
        d.mkdir()
        labels, img = _shelf_yolo(d, bom=bom)
        assert audit_main([str(labels), str(img), "--out", str(d / "o"), "-q"]) == 0
        doc = json.loads((d / "o" / "shelf.audit.json").read_text())
        counts.append(doc["summary"]["products"])
        assert "near-copies" in capsys.readouterr().err
    assert counts == [6, 6]


def test_csv_records_without_a_header_whose_first_x1_is_bad_name_the_line(tmp_path: Path) -> None:
    # refused as "header lacks column(s) image_name, x1, ..." when line 1's x1 was empty or "1,701"
    from densedet_tile.errors import InvalidInputError
    from densedet_tile.eval.formats import read_predictions

    rows = ["shelf.jpg,{x1},10,50,60,product,600,300,0.9", "shelf.jpg,100,10,150,60,product,600,300,0.9"]
    for x1, said in (("", "''"), ('"1,701"', "'1,701'")):
        p = tmp_path / "d.csv"
        p.write_text("\n".join([rows[0].format(x1=x1), rows[1]]) + "\n")
        with pytest.raises(InvalidInputError, match=f"line 1: coordinates must be numbers, got {said}"):
            read_predictions(p)


def test_a_csv_separated_by_semicolons_is_told_so(tmp_path: Path) -> None:
    from densedet_tile.errors import InvalidInputError
    from densedet_tile.eval.formats import read_predictions

    p = tmp_path / "d.csv"
    p.write_text("image_name;x1;y1;x2;y2;class;image_width;image_height\nshelf.jpg;1;2;3;4;product;600;300\n")
    with pytest.raises(InvalidInputError, match="separated by semicolons: the file must use commas"):
        read_predictions(p)


def test_regions_in_longitude_and_latitude_are_refused() -> None:
    # a region of a degree, EPSG:4326, counted 0 products over 1 px2 without a word
    from densedet_tile.audit import parse_regions
    from densedet_tile.errors import InvalidInputError

    doc = {"type": "FeatureCollection", "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::4326"}},
           "features": [{"type": "Feature", "properties": {"name": "bay A"}, "geometry": {
               "type": "Polygon", "coordinates": [[[13, 52], [14, 52], [14, 53], [13, 53], [13, 52]]]}}]}
    with pytest.raises(InvalidInputError, match=r"r\.geojson: its coordinate system .*EPSG::4326.* is longitude"):
        parse_regions(doc, source="r.geojson")
    doc["crs"]["properties"]["name"] = "urn:ogc:def:crs:EPSG::32633"  # (a projected one: still read as given)
    assert [r.name for r in parse_regions(doc, source="r.geojson")] == ["bay A"]
