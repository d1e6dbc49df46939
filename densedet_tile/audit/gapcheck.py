"""Does a gap look empty? A second look at each gap in the photo's own pixels.

The audit finds gaps from the boxes alone, so a product the detector missed leaves the same
hole as an empty shelf. On the 85 real SKU-110K photos most gaps found from the built-in
model's boxes have products in them (docs/audit.md, "Gaps checked in the pixels"). An
empty stretch of shelf shows the back panel, a shadow or the shelf behind: little fine detail.
Products show print, edges and highlights. So each gap gets a **texture ratio**: the mean
grey-level gradient (``|dI/dx| + |dI/dy|``) over its middle (the outline's bounding box with
``_INSET`` cut off each side: the neighbours' edges and the shelf lip stay out), divided by the
median of the same measure over the products of its row (three or more; else its bay's, else
the image's), which makes it independent of the photo's contrast and exposure and nearly of
its scale. Empty shelves and empty sections are judged the same way, over their bay's products
(both bays' for a section). Then:

- below :data:`LOOKS_EMPTY`: ``"empty"`` (as flat as a shelf with nothing on it);
- from :data:`LOOKS_STOCKED` up: ``"stocked"`` (as busy as the products beside it: products the
  detector missed, or a sign or price card in front of the shelf; check it by eye);
- between: ``"unsure"``.

Thresholds chosen on generated shelves (``scripts/bench_gap_pixels.py``), not on the real photos.
The measure needs the products at least :data:`MIN_PRODUCT_PX` pixels tall in the image given;
below that no gap is judged (``looks`` stays None). Where they are much taller, the image is
shrunk first (block means) until they are about 48 to 96 px tall, which barely moves the ratio
and keeps the memory small.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .analysis import AuditResult
from .texture import _gradient_integral, texture_means

__all__ = ["check_gaps", "judged", "product_px", "texture_means", "LOOKS_EMPTY", "LOOKS_STOCKED", "MIN_PRODUCT_PX"]

#: A gap with a texture ratio below this looks empty.
LOOKS_EMPTY = 0.35
#: A gap with a texture ratio at least this looks stocked (products the detector missed).
LOOKS_STOCKED = 0.7
#: Products shorter than this (median height, pixels of the image given) are too small to judge.
MIN_PRODUCT_PX = 12.0
#: The photo is shrunk by whole factors while its products stay at least this tall (pixels).
_WORK_PRODUCT_PX = 48.0
#: Fewest products of a row (or bay) whose median is the reference.
_MIN_REFERENCE = 3
_PLURAL = {"gap": "gaps", "empty shelf": "empty shelves", "empty section": "empty sections"}


def _grey(image: Any) -> np.ndarray:
    """(H, W) float32 grey levels of a PIL image or an (H, W[, C]) array (C = 1: grey; 2: grey and
    alpha; 3 or more: RGB[A]), converted in bands of rows (no float copy of the whole colour
    image). Raises :class:`InvalidInputError` for another shape or a pixel that is not finite."""
    if hasattr(image, "mode") and hasattr(image, "convert") and \
            image.mode not in ("RGB", "RGBA", "L", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = image.convert("RGB")  # palette, CMYK, 1-bit...: their colours, not their indices
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] in (1, 2):
        a = a[..., 0]
    if a.ndim == 3 and a.shape[2] >= 3:
        out = np.empty(a.shape[:2], np.float32)
        weights = np.array([0.299, 0.587, 0.114], np.float32)
        for r in range(0, a.shape[0], 256):
            out[r:r + 256] = a[r:r + 256, :, :3].astype(np.float32) @ weights
    elif a.ndim == 2:
        out = a.astype(np.float32)
    else:
        raise InvalidInputError(f"the image must be H x W or H x W x C, got an array of shape {a.shape}")
    if out.size == 0:  # (every gap came back unjudged, without a word)
        raise InvalidInputError(f"the image is empty (an array of shape {a.shape})")
    if not np.isfinite(out).all():
        raise InvalidInputError("the image has pixels that are not finite numbers (NaN or infinity)")
    return out


def _verdict(ratio: float) -> str:
    if ratio < LOOKS_EMPTY:
        return "empty"
    return "stocked" if ratio >= LOOKS_STOCKED else "unsure"


def check_gaps(result: AuditResult, image: Any, *, scale: float | None = None) -> AuditResult:
    """``result`` with each gap's, empty shelf's and empty section's ``texture`` (ratio) and
    ``looks`` (``"empty"``, ``"unsure"`` or ``"stocked"``) measured in ``image``: the upright image (PIL image or array, colour or grey)
    at any scale; ``scale`` is image-given pixels per image pixel (default: each side's own, its
    width over the audit's and its height over the audit's: a reduced decode rounds each side on
    its own). When the products are under :data:`MIN_PRODUCT_PX` tall at that scale (a preview of a
    long panorama), or a gap's middle holds no whole pixel, ``looks`` stays None (see
    :func:`judged`)."""
    grey = _grey(image)
    gh, gw = grey.shape
    if scale is None:
        sx, sy = gw / float(result.width), gh / float(result.height)
    else:
        if isinstance(scale, bool) or not (isinstance(scale, (int, float, np.integer, np.floating))
                                           and np.isfinite(scale) and scale > 0):
            raise InvalidInputError(f"scale must be a positive number, got {scale!r}")
        sx = sy = float(scale)
    # an image of another shape (another photo, an un-rotated one) fits no one scale, allowing
    # each side the rounding of a reduced decode (2 px, or 1 %)
    W, H = float(result.width), float(result.height)
    lo = max((gw - 2.0) / W, (gh - 2.0) / H) / 1.01
    hi = min((gw + 2.0) / W, (gh + 2.0) / H) * 1.01
    if lo > hi or (scale is not None and not lo <= sx <= hi):
        raise InvalidInputError(f"the image is {gw}x{gh}, not the audited {result.width}x{result.height} "
                                f"at one scale" + ("" if scale is None else f" ({scale:g})"))
    if not (result.gaps or result.empty_shelves or result.empty_sections):
        return result
    a = result.xyxy
    tall = product_px(result, sy)
    if tall < MIN_PRODUCT_PX:
        return result
    k = int(tall // _WORK_PRODUCT_PX)
    if k >= 2:  # products far taller than needed: block means, k x k
        h, w = gh // k * k, gw // k * k
        grey = grey[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3), dtype=np.float32)
        sx, sy = sx / k, sy / k
    sat = _gradient_integral(grey)
    every = texture_means(sat, a, (sx, sy))
    whole = float(np.nanmedian(every)) if np.isfinite(every).any() else float("nan")

    def reference(sel: np.ndarray, fallback: float) -> float:
        v = every[sel]
        v = v[np.isfinite(v)]
        return float(np.median(v)) if len(v) >= _MIN_REFERENCE else fallback

    def judge(items: Any, refs: list[float], what: str) -> tuple[Any, ...]:
        """The items (gaps, empty shelves, sections) with their ratio and verdict, each over its
        own reference measure; unjudged where either is missing."""
        if not items:
            return tuple(items)
        tex = texture_means(sat, np.array([q.xyxy for q in items], np.float64), (sx, sy))
        out = []
        for q, t, ref in zip(items, tex, refs):
            if np.isfinite(t) and np.isfinite(ref) and ref > 0:
                out.append(replace(q, texture=float(t / ref), looks=_verdict(float(t / ref))))
            else:
                if np.isfinite(t) and not (np.isfinite(ref) and ref > 0):
                    flat[what] = flat.get(what, 0) + 1  # nothing to compare with: its products show no texture
                elif not np.isfinite(t):
                    # its own middle holds no whole pixel of the picture read (a gap of a pixel or
                    # two, left at a tiny --gap-k): said as well, or the tally of verdicts would
                    # not add up to the gaps found, without a word (an outside review)
                    thin[what] = thin.get(what, 0) + 1
                out.append(q)
        return tuple(out)

    flat: dict[str, int] = {}  # what was left unjudged for want of a reference, by kind
    thin: dict[str, int] = {}  # ... for want of a whole pixel in its own middle

    parts = []
    for part in result.parts:
        bay_ref = reference(part.index, whole)
        if not (part.gaps or part.empty_shelves):
            parts.append(part)
            continue
        rows = {r: reference(part.index[part.layout.assignment == r], bay_ref) for r in {g.row for g in part.gaps}}
        parts.append(replace(part, gaps=judge(part.gaps, [rows[g.row] for g in part.gaps], "gap"),
                             empty_shelves=judge(part.empty_shelves, [bay_ref] * len(part.empty_shelves), "empty shelf")))
    # a section between two bays: over the products of both
    beside = [[p.index for p in result.parts if p.name in e.between] for e in result.empty_sections]
    both = [reference(np.concatenate(idx), whole) if idx else whole for idx in beside]
    sections = judge(result.empty_sections, both, "empty section")
    warned = result.warnings
    if flat:
        # said once, with the count (as the CLI says products too small to judge): not silently
        n = sum(flat.values())
        what = " and ".join(f"{v} {k if v == 1 else _PLURAL[k]}" for k, v in flat.items())
        warned = (*warned, f"{what} not checked in the photo: the products beside {'it' if n == 1 else 'them'} "
                  "show no texture to compare with (a flat or blank image there?)")
    if thin:
        n = sum(thin.values())
        what = " and ".join(f"{v} {k if v == 1 else _PLURAL[k]}" for k, v in thin.items())
        warned = (*warned, f"{what} not checked in the photo: too narrow to hold a whole pixel of it in "
                  f"{'its' if n == 1 else 'their'} middle at the scale it is read")
    return replace(result, parts=tuple(parts), empty_sections=sections, warnings=warned)


def product_px(result: AuditResult, scale: float) -> float:
    """The products' median height (0 without products) in an image of the audited photo at
    ``scale`` (its pixels per the photo's, vertically): the check judges nothing under
    :data:`MIN_PRODUCT_PX`."""
    a = result.xyxy
    return float(np.median(a[:, 3] - a[:, 1])) * scale if len(a) else 0.0


def judged(result: AuditResult) -> bool:
    """Whether any gap, empty shelf or empty section of ``result`` has a verdict (False also
    when it has none of them)."""
    return any(q.looks is not None for q in (*result.gaps, *result.empty_shelves, *result.empty_sections))
