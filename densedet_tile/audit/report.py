"""The audit's visual outputs: a preview JPEG with boxes and gaps, and a self-contained HTML
report (preview and heatmap embedded as base64 data URIs, inline CSS, no external assets).

The preview is the upright image scaled by ``min(1, max_width / W, max_height / H)`` so a
20000 px panorama comes out at most ``max_width`` (default 8000) pixels wide.
"""

from __future__ import annotations

import base64
import html
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from PIL import Image

import numpy as np

from ..errors import ImageReadError, InvalidInputError
from ..types import ordered_range
from .analysis import AuditResult, _poly, _polys, part_clip, row_lines

__all__ = ["preview_scale", "render_preview", "render_html", "load_preview_image", "PREVIEW_MAX_WIDTH",
           "PREVIEW_MAX_HEIGHT"]

#: The preview's colours (RGB), drawn and named in the report's key from here.
PRODUCT_COLOUR, BAY_COLOUR, ROW_COLOUR, REGION_COLOUR = (40, 230, 80), (0, 220, 240), (30, 70, 230), (250, 200, 0)
#: Gap colours by what the second look in the photo saw (``looks``; not looked at: as "empty").
GAP_COLOURS: dict[str, tuple[int, int, int]] = {"empty": (230, 30, 30), "unsure": (255, 140, 0),
                                                "stocked": (150, 60, 210)}

PREVIEW_MAX_WIDTH = 8000
PREVIEW_MAX_HEIGHT = 2400
JPEG_MAX_SIDE = 65500


def preview_scale(width: int, height: int, *, max_width: int = PREVIEW_MAX_WIDTH, max_height: int = PREVIEW_MAX_HEIGHT) -> float:
    """Scale factor of the preview of a ``width`` x ``height`` image (never above 1, and no side
    beyond the 65500 px a JPEG can hold)."""
    return float(min(1.0, min(max_width, JPEG_MAX_SIDE) / width, min(max_height, JPEG_MAX_SIDE) / height))


def render_preview(
    result: AuditResult,
    image: Any | None,
    *,
    max_width: int = PREVIEW_MAX_WIDTH,
    max_height: int = PREVIEW_MAX_HEIGHT,
    quality: int = 82,
) -> tuple[bytes, int, int, float]:
    """Draw the products (green), bays (cyan outlines) with their rows (blue outlines, the fitted
    bottom line drawn thick, labelled bay.row where the row is taller than its label in the
    preview), gaps (numbered as in the JSON), empty sections and empty shelves (red; orange where
    the look in the pixels was unsure, purple where it looks stocked, see
    :func:`~densedet_tile.audit.gapcheck.check_gaps`) and regions (yellow outlines) over the image.

    ``image`` is a PIL image or HxWx3 uint8 array of the upright image at any scale (it is
    resized to the preview size), or None for a plain grey canvas. Returns
    (JPEG bytes, preview width, preview height, scale from image pixels to preview pixels).
    """
    from PIL import Image, ImageDraw

    s = preview_scale(result.width, result.height, max_width=max_width, max_height=max_height)
    pw, ph = max(1, int(round(result.width * s))), max(1, int(round(result.height * s)))
    if image is None:
        base = Image.new("RGB", (pw, ph), (190, 190, 190))
    else:
        base = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
        base = base.convert("RGB")
        if base.size != (pw, ph):
            base = base.resize((pw, ph), Image.Resampling.BILINEAR if s < 1 else Image.Resampling.NEAREST)
    over = Image.new("RGBA", (pw, ph), (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    lw = max(1, int(round(2 * s)))
    font = _label_font(pw)

    def tag(x: float, y: float, text: str, fill: tuple[int, ...]) -> float:
        """A label with its top-left corner at (x, y), kept on the picture; returns its height."""
        l, t, r, b = d.textbbox((0, 0), text, font=font)
        pad = max(2, (b - t) // 5)
        w, h = r - l + 2 * pad, b - t + 2 * pad
        x = min(max(x, 0.0), max(0.0, pw - w))
        y = min(max(y, 0.0), max(0.0, ph - h))
        d.rectangle([x, y, x + w, y + h], fill=fill)
        d.text((x + pad - l, y + pad - t), text, font=font, fill=(255, 255, 255, 255))
        return float(h)

    label_h = float(d.textbbox((0, 0), "0.9", font=font)[3]) * 1.4
    for x1, y1, x2, y2 in (result.xyxy * s).tolist():
        d.rectangle([x1, y1, x2, y2], outline=PRODUCT_COLOUR + (255,), width=lw)
    W, H = float(result.width), float(result.height)
    clips = [part_clip(part) for part in result.parts]
    # each row's outline cut as the JSON cuts it (at the bay's cuts, at the region), per part
    # (every piece of a row across a region of several pieces, or around a region's hole)
    outlines = [[_polys(row.polygon, W, H, within) for row in part.layout.rows]
                for part, within in zip(result.parts, clips)]
    for part, within, cut in zip(result.parts, clips, outlines):
        for row, pieces in zip(part.layout.rows, cut):
            for outline in pieces:
                poly = [(x * s, y * s) for x, y in outline]
                d.line(poly + poly[:1], fill=(40, 90, 235, 200), width=lw)
            for line in row_lines(row, W, H, within, pieces):
                d.line([(x * s, y * s) for x, y in line], fill=ROW_COLOUR + (255,), width=max(2, 2 * lw))
    def mark(poly: list[tuple[float, float]], looks: str | None, fill_alpha: int, width: int,
             label: str | None = None) -> None:
        """Red where the gap looks empty in the photo (or was not looked at), orange where the look
        was unsure, purple where it looks stocked (products the detector missed?); ``label`` at
        its top-left corner."""
        colour = GAP_COLOURS.get(looks or "empty", GAP_COLOURS["empty"])
        alpha = {"stocked": 45, "unsure": 70}.get(looks or "empty", fill_alpha)
        d.polygon(poly, fill=colour + (alpha,), outline=colour + (255,), width=width)
        if label:
            label += "?" if looks == "stocked" else ""
            tag(min(x for x, _ in poly), min(y for _, y in poly), label, tuple(int(c * 0.75) for c in colour) + (230,))

    gap_id = 0  # the gaps' ids in the JSON and the report's table: in this order
    for part, within in zip(result.parts, clips):
        for g in part.gaps:
            gap_id += 1
            mark([(x * s, y * s) for x, y in _poly(g.polygon, W, H, within)], g.looks, 90, max(2, 2 * lw),
                 str(gap_id))
    for e in result.empty_sections:  # every shelf empty between two bays: a gap the height of the bays
        mark([(x * s, y * s) for x, y in e.polygon], e.looks, 70, max(2, 3 * lw), "empty section")
    for part, within in zip(result.parts, clips):
        for e in part.empty_shelves:  # a whole shelf empty inside a bay: the room between two rows
            mark([(x * s, y * s) for x, y in _poly(e.polygon, W, H, within)], e.looks, 70, max(2, 3 * lw),
                 "empty shelf")
    for b, part in enumerate(result.parts, start=1):
        if part.kind == "bay" and len(part.polygon) >= 3:
            ring = [(x * s, y * s) for x, y in part.polygon]
            d.line(ring + ring[:1], fill=BAY_COLOUR + (255,), width=max(2, 3 * lw))
            # at the outline's top-left corner: above it, or just inside where that is off the picture
            x0 = min(x for x, _ in ring)
            y0 = min(y for x, y in ring if x <= x0 + 0.5 * (max(x for x, _ in ring) - x0))
            tag(x0, y0 - label_h, part.name or f"bay {b}", (0, 150, 170, 230))
        for row, pieces in zip(part.layout.rows, outlines[b - 1]):  # the label inside the row as drawn
            x0 = max(row.x_start, min((x for outline in pieces for x, _ in outline), default=row.x_start))
            x, y = x0 * s, float(row.bottom_at(x0) + row.top_at(x0)) / 2 * s
            if float(row.bottom_at(x0) - row.top_at(x0)) * s < label_h:
                continue  # a label taller than its row (a long panorama shrunk) would hide the rows
            tag(x, y - label_h / 2, f"{b}.{row.index + 1}", (20, 60, 200, 220))
    for reg in result.region_shapes:
        geoms = getattr(reg.geometry, "geoms", [reg.geometry])
        for gm in geoms:
            for r in (gm.exterior, *getattr(gm, "interiors", ())):  # its holes too (another part stands there)
                ring = [(x * s, y * s) for x, y in r.coords]
                d.line(ring, fill=REGION_COLOUR + (255,), width=max(2, 2 * lw))
        import shapely

        # named at the top-left of its part in the image; a region wholly outside has no name
        # drawn (it was pushed into the picture's corner, where no region is; the warning names it)
        shown = reg.geometry.intersection(shapely.box(0.0, 0.0, W, H))
        if shown.is_empty:
            continue
        x0, y0, _, _ = shown.bounds
        tag(x0 * s + 4, y0 * s + 4, reg.name, (150, 110, 0, 230))  # dark under the yellow outline's name
    out = Image.alpha_composite(base.convert("RGBA"), over).convert("RGB")
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue(), pw, ph, s


def _label_font(preview_width: int) -> Any:
    """The labels' font: about 1/110 of the preview's width (readable when the report fits the
    preview to a screen's width), 12 to 48 px; Pillow's small bitmap font where FreeType is
    missing."""
    from PIL import ImageFont

    size = int(min(48, max(12, round(preview_width / 110))))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # an old Pillow, or one without FreeType
        return ImageFont.load_default()


def _table(cls: str, head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    if not rows:
        body = f'<tr class="none"><td colspan="{len(head)}">none</td></tr>'
    return f'<table class="figures {cls}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 8px} h2{font-size:16px;margin:20px 0 6px}
.summary span{display:inline-block;margin:0 18px 6px 0} .summary b{font-size:18px}
.scroll{overflow:auto;max-width:100%;border:1px solid #ccc;background:#fff}
.stage{position:relative;display:block;line-height:0;overflow:hidden}
.stage img#preview{width:100%;height:auto;display:block}
#actual-size:checked ~ .scroll .stage{display:inline-block}
#actual-size:checked ~ .scroll .stage img#preview{width:auto;max-width:none}
.key span{display:inline-block;margin-right:14px} .key i{display:inline-block;width:12px;height:12px;
margin-right:4px;vertical-align:-1px;border:2px solid}
.stage img.heat{position:absolute;left:0;top:0;width:100%;height:100%;opacity:.6;image-rendering:pixelated;display:none}
#show-heat:checked ~ .scroll .stage img.heat{display:block}
table.figures{border-collapse:collapse;margin:4px 0 12px;background:#fff}
table.figures td,table.figures th{border:1px solid #ccc;padding:3px 8px;text-align:right}
table.figures td:first-child,table.figures th:first-child{text-align:left}
table.figures th{background:#eee} .legend{display:inline-block;vertical-align:middle;width:160px;height:12px;
background:linear-gradient(90deg,rgb(20,30,90),rgb(20,140,150),rgb(240,220,60),rgb(215,40,30))}
.note{color:#666} .warn{color:#8a4b00;background:#fff3d6;border:1px solid #e0b050;padding:4px 8px}
"""

def _key_item(colour: tuple[int, int, int], text: str, fill: bool = True) -> str:
    r, g, b = colour
    bg = f"background:rgba({r},{g},{b},.35);" if fill else ""
    return f'<span><i style="{bg}border-color:rgb({r},{g},{b})"></i>{html.escape(text)}</span>'


def _key(doc: dict[str, Any]) -> str:
    """The colours of the preview, said on the page. A gap not looked at in the photo is drawn
    as one that looks empty: the key says so where there is one (an outside review: with
    ``--no-pixel-check`` every gap was red under "looks empty in the photo")."""
    found = [g for k in ("gaps", "empty_sections", "empty_shelves") for g in (doc.get(k) or [])]
    unchecked = any(isinstance(g, dict) and g.get("looks") is None for g in found)
    checked = any(isinstance(g, dict) and g.get("looks") is not None for g in found)
    if unchecked and not checked:
        gaps = [_key_item(GAP_COLOURS["empty"], "gap (not checked in the photo)")]
    else:
        gaps = [
            _key_item(GAP_COLOURS["empty"], "gap that looks empty in the photo"
                      + (", or was not checked (see the table)" if unchecked else "")),
            _key_item(GAP_COLOURS["unsure"], "gap, unsure"),
            _key_item(GAP_COLOURS["stocked"], "gap that looks stocked (products missed?)"),
        ]
    return "".join([
        _key_item(PRODUCT_COLOUR, "product", fill=False),
        _key_item(BAY_COLOUR, "bay", fill=False),
        _key_item(ROW_COLOUR, "shelf row (thick: its shelf line)", fill=False),
        *gaps,
        _key_item(REGION_COLOUR, "region", fill=False),
    ]) + '<span class="note">Numbers on gaps are their ids in the table below.</span>'

_SCRIPT = """
window.addEventListener('load', function () {
  var img = document.getElementById('preview');
  var heat = document.getElementById('heatmap');
  var b = document.body;
  b.setAttribute('data-preview-natural-width', String(img.naturalWidth));
  b.setAttribute('data-heatmap-natural-width', String(heat.naturalWidth));
  b.setAttribute('data-table-rows', String(document.querySelectorAll('table.figures tbody tr').length));
  b.setAttribute('data-report-ready', img.complete && img.naturalWidth > 0 ? 'yes' : 'no');
});
"""


def _blank_none(value: Any) -> Any:
    """A figure that does not exist (a region outside the image has no density) as an empty cell."""
    return "" if value is None else value


def _range_cell(count_range: dict[str, Any] | None) -> str:
    """``"31-55, uncertain"`` for a bay's count range (the counts at the threshold +-band)."""
    if not count_range:
        return ""
    lo, hi = ordered_range(count_range.get("counts") or (None, None, None))
    if lo is None or hi is None:
        return ""
    return f"{lo}-{hi}" + (", uncertain" if count_range.get("uncertain") else "")


def _looks_cell(gap: dict[str, Any]) -> str:
    """What the second look in the pixels saw in a gap, empty shelf or section (older JSONs have
    no ``looks``)."""
    looks = gap.get("looks")
    if looks is None:
        return "not checked"
    # texture: the gap's pixel detail against its bay's products (1: as busy as they are)
    return ({"stocked": "stocked? (check: missed products)"}.get(looks, looks)
            + f" (texture {gap.get('texture')} of the products')")


def _thin_cells(top: float, drawn: float) -> str:
    """The legend's note when thin cells at the image's edge are denser than the scale's top."""
    return f"; thin cells at the image's edge up to {top:g}, drawn as {drawn:g}" if top > drawn else ""


def render_html(doc: dict[str, Any], preview_jpeg: bytes, heatmap_png: bytes, *, title: str | None = None) -> str:
    """The self-contained HTML report of an audit document (see
    :func:`~densedet_tile.audit.analysis.audit_to_dict`) with its preview and heatmap images."""
    name = str(doc.get("image", {}).get("name") or "image")
    title = title or f"Aisle audit: {name}"
    s = doc["summary"]
    looks = s.get("gap_looks") or {}  # (older JSONs have none)
    summary = "".join(
        f"<span>{html.escape(k)} <b>{html.escape(str(v))}</b></span>"
        for k, v in (
            ("products", s["products"]), ("bays", s.get("bays", "")), ("shelf rows", s["rows"]), ("gaps", s["gaps"]),
            *((("gaps that look empty", looks["empty"]), ("unsure", looks.get("unsure", 0)),
               ("look stocked", looks["stocked"]),
               *((("not checked in the photo", looks["not_judged"]),) if looks.get("not_judged") else ()))
              if looks and looks.get("not_judged", 0) < s["gaps"] else ()),
            *((("empty sections", s["empty_sections"]),) if s.get("empty_sections") else ()),
            *((("empty shelves", s["empty_shelves"]),) if s.get("empty_shelves") else ()),
            ("empty width (products)", s["gap_width_products"]),
            *((("of which looks stocked", (s.get("gap_width_looks") or {}).get("stocked")),)
              if (s.get("gap_width_looks") or {}).get("stocked") else ()),
            ("tilt (deg)", s["tilt_deg"]),
            ("products / Mpx", s["density_per_mpx"]),
        )
    )
    names = {b["bay"]: b["name"] for b in doc.get("bays", [])}

    def where(item: dict[str, Any]) -> list[Any]:
        return [item["region"] if "region" in item else names.get(item.get("bay"), item.get("bay", ""))]

    # facings per metre when the bays' width was given (--bay-width-m); marked where the photo
    # may show the bay only in part (its products reach the image's edge, or a region takes the
    # rest: a found bay's side marked "region"): there they count that part over the whole width
    per_m = any("facings_per_m" in r for r in doc["rows"])
    cut_off = {b["bay"] for b in doc.get("bays", []) if b.get("kind") != "region"
               and {b.get("left_edge"), b.get("right_edge")} & {"image edge", "region"}}

    def facings(r: dict[str, Any]) -> str:
        v = r.get("facings_per_m", "")
        return f"{v} *" if v != "" and r.get("bay") in cut_off else str(v)
    rows = _table("rows", ["bay", "row", "products", "y top", "y bottom", "slope (deg)", "median width px", "gaps",
                           "gap width (products)", "empty between its products", "bay width filled"]
                  + (["facings per metre"] if per_m else []),
                  [where(r) + [r["row"], r["products"], r["y_top"], r["y_bottom"], r["tilt_deg"],
                   r["median_product_width"], r["gaps"], r["gap_width_products"], f"{100 * r['empty_share']:.1f}%",
                   f"{100 * r['fill']:.1f}%"] + ([facings(r)] if per_m else [])
                   for r in doc["rows"]])
    if per_m and any(r.get("bay") in cut_off for r in doc["rows"]):
        rows += ("<p class=\"note\">* the bay's products reach the image's edge or a region: the photo may show "
                 "it only in part, and its facings per metre count that part over the whole bay's width.</p>")
    gaps = _table("gaps", ["gap", "bay", "row", "where", "x from", "x to", "width px", "width (products)",
                           "product width px (narrowed, at the gap)", "looks (in the photo)"],
                  [[g["id"]] + where(g) + [g["row"], g["kind"].replace("_", " "), g["x1"], g["x2"], g["width_px"],
                   g["width_products"], g.get("product_width_px") or "", _looks_cell(g)] for g in doc["gaps"]])
    empties = ""
    if doc.get("empty_sections"):
        empties = ("<h2>Empty sections</h2><p class=\"note\">Every shelf empty between two bays, wider than a "
                   "gap at a row's end: a bay (or the end of one) with nothing on it.</p>" + _table(
                       "empty-sections", ["section", "between bays", "x from", "x to", "width px", "width (products)",
                                          "looks (in the photo)"],
                       [[e["id"], " and ".join(str(names.get(b, b)) for b in e["between_bays"]), e["x1"], e["x2"],
                         e["width_px"], e["width_products"], _looks_cell(e)] for e in doc["empty_sections"]]))
    if doc.get("empty_shelves"):
        empties += ("<h2>Empty shelves</h2><p class=\"note\">A whole shelf empty inside a bay: two rows stand "
                    "much further apart than the bay's other shelves, with room for a shelf of products between "
                    "them. A shelf whose products the detector missed looks the same: check by eye.</p>" + _table(
                        "empty-shelves", ["shelf", "bay", "between rows", "shelves", "x from", "x to", "height px",
                                          "looks (in the photo)"],
                        [[e["id"]] + where(e) + [" and ".join(str(r) for r in e["between_rows"]), e["shelves"], e["x1"],
                         e["x2"], e["height_px"], _looks_cell(e)] for e in doc["empty_shelves"]]))
    areas = {r["name"]: r for r in doc.get("regions", [])}
    bays = "<h2>Bays</h2>" + _table(
        "bays", ["bay", "given as", "products", "count range", "products / Mpx", "shelf rows", "gaps",
                 "gap width (products)", "left edge", "right edge"],
        [[b["name"], "region" if b["kind"] == "region" else "found", b["products"], _range_cell(b.get("count_range")),
          _blank_none(areas[b["name"]]["density_per_mpx"] if b["name"] in areas else b["density_per_mpx"]),
          b["rows"], b["gaps"],
          b["gap_width_products"], b["left_edge"], b["right_edge"]] for b in doc.get("bays", [])])
    warn = "".join(f'<p class="warn">{html.escape(w)}</p>' for w in doc.get("warnings", []))
    hm = doc["heatmap"]
    hm_all = max((max(r) for r in hm["density_per_mpx"] if r), default=0)
    hm_max = hm.get("colour_max_per_mpx", hm_all)  # (a JSON of an earlier version: the largest)
    pv = base64.b64encode(preview_jpeg).decode("ascii")
    hp = base64.b64encode(heatmap_png).decode("ascii")
    # the grid's cells are whole: the last column and row reach past the image's right and bottom
    # edges, so the overlay is as much larger than the preview (the stage clips it)
    n_rows = len(hm["density_per_mpx"])
    n_cols = max((len(r) for r in hm["density_per_mpx"]), default=0)
    iw, ih = float(doc["image"].get("width") or 0), float(doc["image"].get("height") or 0)
    heat_w = 100.0 * n_cols * hm["cell_px"] / iw if iw > 0 and n_cols else 100.0
    heat_h = 100.0 * n_rows * hm["cell_px"] / ih if ih > 0 and n_rows else 100.0
    st = doc["settings"]
    end_rule = (f"{st['end_k']} widths" if st.get("end_k") is not None
                else "that plus the widest common product")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{_CSS}</style></head>
<body data-report-ready="pending">
<h1>{html.escape(title)}</h1>
<p class="note">{html.escape(str(doc['image'].get('width')))} x {html.escape(str(doc['image'].get('height')))} px.
Gaps: empty stretches wider than {st['gap_k']} median product widths of their row
({end_rule} at row ends).</p>
{warn}<div class="summary">{summary}</div>
<h2>Preview</h2>
<p class="key">{_key(doc)}</p>
<input type="checkbox" id="show-heat"> <label for="show-heat">show density heatmap</label>
<span class="legend"></span> 0 to {hm_max:g} products / Mpx ({hm['cell_px']} px cells{_thin_cells(hm_all, hm_max)})
<input type="checkbox" id="actual-size"> <label for="actual-size">actual size (scroll to see it all)</label>
<div class="scroll"><div class="stage">
<img id="preview" alt="preview with product boxes (green), bays (cyan), shelf rows (blue), gaps numbered as in the table (red: looks empty, orange: unsure, purple: looks stocked) and regions (yellow)" src="data:image/jpeg;base64,{pv}">
<img id="heatmap" class="heat" alt="density heatmap" style="width:{heat_w:.4f}%;height:{heat_h:.4f}%" src="data:image/png;base64,{hp}">
</div></div>
{bays}
<h2>Shelf rows</h2>{rows}
<h2>Gaps</h2>{gaps}
{empties}
<script>{_SCRIPT}</script>
</body></html>
"""
    # A name that is no valid Unicode (a lone surrogate: a JSON "\ud83d", or a file name whose
    # bytes are not UTF-8) cannot be written as UTF-8: shown as "?" instead of failing the report.
    return page.encode("utf-8", "replace").decode("utf-8")


def load_preview_image(path: str | Path, width: int, height: int, *, max_width: int = PREVIEW_MAX_WIDTH,
                       max_height: int = PREVIEW_MAX_HEIGHT) -> Image.Image:
    """The upright image at (about) preview size as a PIL RGB image.

    Baseline JPEGs are decoded at a reduced scale directly (``draft``); everything else goes
    through the engine's readers (16-bit and greyscale images made 8-bit RGB as the detector saw
    them) and is shrunk in bands of rows. A TIFF panorama is read region by region, never whole;
    a PNG or a progressive JPEG is decoded whole once, as detection decodes it (one 8-bit RGB
    copy: about 0.9 GB for a 60000 x 5000 panorama), and the preview is made from it. The EXIF
    orientation is applied. Raises :class:`ImageReadError` if it cannot be read or
    :class:`InvalidInputError` if its upright size is not ``width`` x ``height`` (the detections
    belong to another image).
    """
    return load_preview_images(path, width, height, [(max_width, max_height)])[0]


def load_preview_images(path: str | Path, width: int, height: int, sizes: Sequence[tuple[int, int]]) -> list[Image.Image]:
    """The upright image at each of several preview sizes ``sizes`` ((max_width, max_height)
    each), as :func:`load_preview_image` makes one, from one opening of the file: a PNG (any
    image but a JPEG, which is decoded at each reduced scale from the file, cheaply) is decoded
    once for all of them (the audit command's preview and the picture its bays are read from
    decoded a 60-megapixel PNG twice, 1.3 s each: an outside review)."""
    from PIL import Image

    p = Path(path)
    scales = [preview_scale(width, height, max_width=mw, max_height=mh) for mw, mh in sizes]

    def mismatch(w: int, h: int) -> InvalidInputError:
        return InvalidInputError(f"{p}: image is {w}x{h} but the detections are for {width}x{height}")

    from ..tiler.readers.orientation import exif_orientation, orient
    from ..tiler.readers.pillow import open_header

    try:
        with open_header(p) as im:  # no pixel limit: the size is checked against the detections instead
            if im.format == "JPEG":
                orient_tag = exif_orientation(im, str(p))
                sw, sh = im.size
                turned = orient_tag in (5, 6, 7, 8)
                upright = (sh, sw) if turned else (sw, sh)
                if upright != (width, height):
                    raise mismatch(*upright)
                out = []
                # each from the file again: draft() decodes at one reduced scale, which is cheap
                for s in scales:
                    with open_header(p) as again:
                        tw, th = max(1, int(width * s)), max(1, int(height * s))
                        again.draft("RGB", (th, tw) if turned else (tw, th))
                        # turned the way the engine read it (Pillow's own exif_transpose reads tags
                        # the engine calls unreadable, and would turn the photo under the boxes)
                        out.append(Image.fromarray(np.ascontiguousarray(orient(np.asarray(again.convert("RGB")),
                                                                               orient_tag))))
                return out
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except InvalidInputError:
        raise
    except Exception:  # Pillow cannot read it (BigTIFF...): the engine's readers may
        logging.getLogger("densedet_tile").debug("%s: Pillow cannot read it; trying the engine's readers", p,
                                                 exc_info=True)
    from ..io import shrunk_image
    from ..tiler.readers import open_image

    try:
        with open_image(p) as src:
            if (src.width, src.height) != (width, height):
                raise mismatch(src.width, src.height)
            return [shrunk_image(src, s) for s in scales]
    except (InvalidInputError, ImageReadError):
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except Exception as exc:
        raise ImageReadError(f"{p}: cannot read the image ({exc})") from None
