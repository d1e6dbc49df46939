"""The scale at which an image reaches the model, and the tiles that give it.

A detector sees products best at the size its training showed them. It may declare that in
one of two ways (besides ``input_size``, the side its input is resized to):

* ``product_size``: the typical product height, in model-input pixels, of its training data
  (the built-in model: about 80 px). With ``TileSpec(tile="auto")`` the engine measures the
  products' height in the image with a few probe windows and picks the scale that brings them
  to that size (a detector that declares none runs as without ``auto``, with a warning: there is
  no size to bring them to);
* ``photo_scale(width, height)``: the rule its training applied to a whole photo (DenseDet:
  ``min(3000 / long side, 1800 / short side)``). Used for photo-like images (longer side at
  most twice the shorter) when the caller sets no scale and does not ask for ``auto``: a
  panorama has no "whole photo", so it needs a scale from the caller or ``auto``.

A scale ``s`` (image pixels to model pixels) becomes specs as follows: a detector with a fixed
``input_size`` I gets tiles of ``I / s`` image pixels (one tile of the whole image, resized by
``s``, when that is larger than the image); a detector without one keeps its tile and gets
``input_size = tile * s``. An explicit ``RunSpec.input_size`` wins over all of this.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from .detector.base import (classes_of, input_size_of, photo_scale_of, product_size_of, resize_filter_of,
                            scale_thr_of, score_thr_of)
from .detector.calls import DetectorCalls, image_key
from .errors import InvalidInputError
from .tiler.resize import resize_to, shrink_source
from .types import MergeSpec, RunSpec, TileSpec

__all__ = ["ScaleChoice", "choose_scale", "estimate_product_height", "photo_rule_scale", "scaled_side",
           "PHOTO_ASPECT_MAX", "MIN_PROBE_BOXES", "PHOTO_RULE_MAX_PRODUCT", "PHOTO_RULE_CHECK_FROM",
           "PHOTO_RULE_CLOSEUP", "CLOSEUP_MAX_SPREAD", "photo_rule_specs"]

log = logging.getLogger(__name__)

#: Images whose longer side is at most this many times the shorter count as photos.
PHOTO_ASPECT_MAX = 2.0
#: The whole image is probed only up to this aspect ratio (longer side / shorter side).
WHOLE_PROBE_ASPECT_MAX = 4.0
#: A probe window must yield at least this many boxes for its size estimate to count.
MIN_PROBE_BOXES = 5
#: A large probe window measures the products only when its boxes cover at least this share of
#: it (shelves of products cover 0.3 to 0.5 of a photo; a few stray boxes in a view of far-away
#: products cover far less).
MIN_PROBE_COVER = 0.1
#: A smaller probe window's estimate is used over the largest readable window's when the two
#: agree within this factor (:func:`_pick_probe`).
PROBE_AGREE = 1.6
#: Two square probes this many times apart in size or more can tell a real product's size (the
#: same in image pixels in both) from what a model makes of a view (which grows with the view);
#: used under twice apart only against a panorama's strip view (:func:`_same_size`).
_ZOOM_EVIDENCE = 1.25
#: Side of the model input used to probe detectors that declare no input size.
_NATIVE_PROBE = 1024
#: Overlap chosen by ``auto``: at least this many typical product heights (capped at half a tile).
_AUTO_OVERLAP_PRODUCTS = 1.25
#: A photo rule that would show an image larger than the default tile does (a small photo, or a crop of
#: one: both have few pixels) is checked with the probes of ``auto``: it enlarges the image only
#: as far as its products reach this many times the detector's ``product_size`` (a crop's
#: products are already large; a messaging app's copy of a whole photo has small ones).
PHOTO_RULE_MAX_PRODUCT = 1.6
#: ... checked only where the rule shows the image this many times larger than the default tile does or
#: more (a 5 MP photo shown 1.3 times larger is not: a crop of a third of a photo's area is).
PHOTO_RULE_CHECK_FROM = 1.5
#: Every photo the rule shows is then checked for a close-up (products larger than on any whole
#: photo) with one run of the whole image at the model's input side: where its median product
#: would reach the model at over this many times the detector's ``product_size``, the image is
#: shown so that it reaches :data:`PHOTO_RULE_MAX_PRODUCT` times that size instead
#: (:func:`_closeup_checked`).
PHOTO_RULE_CLOSEUP = 2.5
#: ... measured only where the boxes agree on the products' size: the upper quartile of their
#: heights at most this many times the lower. A photo whose few boxes mix price labels with whole
#: fridge doors measures nothing (one of 85 real photos: quartiles 87 and 356 px on its 0.5 MP
#: copy, shrunk as a close-up to 19 boxes for 162 products; of the 157 close-ups made from the 85
#: photos that the check shrinks, all but one have quartiles at most 3.2 times apart).
CLOSEUP_MAX_SPREAD = 3.5


@dataclass(frozen=True)
class ScaleChoice:
    """Specs adjusted to a scale, and what was decided and why (for ``settings["scale"]``)."""

    tiling: TileSpec
    run: RunSpec
    info: dict[str, Any]


def _probes(width: int, height: int, model_side: int) -> list[list[tuple[int, int, int, int]]]:
    """Probe windows (x, y, w, h), grouped by size: squares of the model side times 0.5, 1, 2,
    4, 8 and 16 (capped by the image's shorter side; one at the centre, plus two spread along
    the long axis when the window is small against the image), then the whole image when it is
    longer than the largest square (close-ups of big products need a smaller scale than any
    square fits) but not a strip: a panorama shrunk whole to the model's side shows nothing,
    and reading it whole would cost memory. A panorama longer than
    :data:`WHOLE_PROBE_ASPECT_MAX` times its short side gets windows of its full short side and
    that many times as long instead (the view of a 4:1 image: its products as small as any
    whole view shows them), which the choice treats as the whole view."""
    short, longer = min(width, height), max(width, height)
    groups = []
    for side in sorted({min(short, int(model_side * f)) for f in (0.5, 1, 2, 4, 8, 16)}):
        if side < 16:
            continue
        cx, cy = (width - side) // 2, (height - side) // 2
        if longer < 3 * side:
            corners = [(cx, cy)]
        elif width >= height:
            corners = [(cx, cy), ((width - side) // 5, cy), (4 * (width - side) // 5, cy)]
        else:
            corners = [(cx, cy), (cx, (height - side) // 5), (cx, 4 * (height - side) // 5)]
        groups.append([(x, y, side, side) for x, y in corners])
    if 1.5 * short < longer <= WHOLE_PROBE_ASPECT_MAX * short or not groups:
        groups.append([(0, 0, width, height)])
    elif longer > WHOLE_PROBE_ASPECT_MAX * short:
        # a panorama's products may be too large for its squares too (one shelf filling a strip's
        # height; an outside review: 330-380 px products on a 12000x420 strip, 700-900 px ones on
        # 12000x2400, none measured): its full height, WHOLE_PROBE_ASPECT_MAX times as long, is
        # what a 4:1 image's whole view shows, and stands in for it (at the centre, and at two
        # places along the panorama where three such windows do not overlap)
        span = int(WHOLE_PROBE_ASPECT_MAX * short)
        starts = [(longer - span) // 2]
        if longer >= 3 * span:
            starts += [(longer - span) // 5, 4 * (longer - span) // 5]
        groups.append([(a, 0, span, short) if width >= height else (0, a, short, span) for a in starts])
    return groups


#: A probe window larger than this (decoded RGB bytes) is read and shrunk in bands of rows, so
#: that probing a giant image costs about what its tiles cost, not the window whole.
_PROBE_READ_BYTES = 64 * 2**20


class _Window:
    """A rectangle of an open image, read like an image of its own."""

    def __init__(self, src: Any, x: int, y: int, w: int, h: int) -> None:
        self.src, self.x, self.y, self.width, self.height = src, x, y, w, h

    def read(self, x: int, y: int, w: int, h: int) -> np.ndarray:
        return self.src.read(self.x + x, self.y + y, w, h)


def _probe_pixels(src: Any, window: tuple[int, int, int, int], model_side: int, filt: str) -> tuple[np.ndarray, float]:
    """A probe window resized to the model side, and the scale from image to probe pixels."""
    x, y, w, h = window
    if 3 * w * h <= _PROBE_READ_BYTES:
        return resize_to(src.read(x, y, w, h), model_side, filter=filt)
    first = model_side / max(w, h)  # shrunk band by band, then brought to the exact size
    pic = np.asarray(shrink_source(_Window(src, x, y, w, h), first, band_bytes=_PROBE_READ_BYTES // 4))
    img, s = resize_to(pic, model_side, filter=filt)
    return img, first * (s or 1.0)


def estimate_product_height(src: Any, detector: Any, *, score_thr: float | None = None,
                            target: float | None = None,
                            classes: Sequence[int] | None = None) -> tuple[float | None, dict[str, Any]]:
    """Typical product height in image pixels of the open image ``src``, or None.

    Windows of a few sizes (see :func:`_probes`) are resized to the detector's input and run
    through it;
    each window size whose boxes (those clear of the window's border, which may cut them)
    number at least :data:`MIN_PROBE_BOXES` gives an estimate (median box height, in image
    pixels). Of the windows whose products reach the model at half ``target`` (the detector's
    ``product_size``) or more, the estimate of the one nearest ``target`` that agrees with the
    largest of them is returned, else the one closest to ``target`` (:func:`_pick_probe`: None
    where only a few boxes at the size over a window they barely cover measured: print, a sign;
    without a target, the middle of the sizes that worked).
    ``classes`` (class ids): only their boxes measure (those of a run's ``classes``).
    Returns ``(height, details)``.
    """
    model_side = input_size_of(detector) or _NATIVE_PROBE
    filt = resize_filter_of(detector)
    probes: list[dict[str, Any]] = []
    for group in _probes(int(src.width), int(src.height), model_side):
        heights: list[np.ndarray] = []
        covered = 0.0  # image pixels under whole boxes, over the group's windows
        for window in group:
            h_win, cover_win = _window_heights(src, detector, window, model_side, filt, score_thr, classes)
            heights.append(h_win)
            covered += cover_win
        side = max(group[0][2], group[0][3])
        h_img = np.concatenate(heights)
        probe = {"window": side, "boxes": int(h_img.size),
                 "cover": round(covered / sum(w * h for _, _, w, h in group), 4)}
        if group[0][2] != group[0][3]:
            probe["whole"] = True  # the whole image, not a square
            if max(src.width, src.height) > WHOLE_PROBE_ASPECT_MAX * min(src.width, src.height):
                probe["strip"] = True  # ... a panorama's full height at 4:1 standing in for it
        if h_img.size >= MIN_PROBE_BOXES:
            probe["median_px"] = round(float(np.median(h_img)), 1)
            probe["at_input_px"] = round(probe["median_px"] * model_side / side, 1)
        probes.append(probe)
    good = [p for p in probes if "median_px" in p]
    details: dict[str, Any] = {"probes": probes}
    if not good:
        return None, details
    best, why = _pick_probe(good, target)
    details["chosen_by"] = why
    if best is None:
        return None, details
    details["chosen_window"] = best["window"]
    return float(best["median_px"]), details


def _window_heights(src: Any, detector: Any, window: tuple[int, int, int, int], model_side: int, filt: str,
                    score_thr: float | None, classes: Sequence[int] | None,
                    what: str = "a tile=auto probe") -> tuple[np.ndarray, float]:
    """The heights (image pixels) of the boxes the detector finds in one probe window resized to
    ``model_side``, those clear of the window's border only (a border may cut a box: it does not
    measure a product), and the image pixels under those boxes. ``what`` names the run in a
    detector's error."""
    img, s = _probe_pixels(src, window, model_side, filt)
    # as the tiles are run: errors wrapped in one line naming the image, output checked
    (d,) = DetectorCalls(detector, 1, f"{src.name} ({what})", key=image_key(src)).predict([img])
    if score_thr is not None and len(d):
        d = d[d.scores >= score_thr]
    if classes is not None and len(d):
        d = d[np.isin(d.labels, classes)]
    b, lim = d.xyxy, np.array(img.shape[1::-1], np.float32) - 2.0
    whole = (b[:, 0] >= 2.0) & (b[:, 1] >= 2.0) & (b[:, 2] <= lim[0]) & (b[:, 3] <= lim[1])
    hb = b[whole, 3] - b[whole, 1]
    covered = float(np.sum((b[whole, 2] - b[whole, 0]).clip(0) * hb.clip(0))) / (s or 1.0) ** 2
    return hb[hb > 0] / (s or 1.0), covered


def _pick_probe(good: list[dict[str, Any]], target: float | None) -> tuple[dict[str, Any] | None, str]:
    """The probe whose estimate counts, of those with enough boxes (in window order), and why.

    A small window zoomed in on a phone photo shows the print of one or two products, and a
    model finds "products" in it (text lines, logos: a third of the real height on a real
    photo), while a larger window shows the shelves. So the largest window whose products reach
    the model at half ``target`` or more, and whose boxes cover at least
    :data:`MIN_PROBE_COVER` of it (not a few stray boxes over far-away products), is the
    reference; of those windows, the one whose products come closest to ``target`` and whose
    estimate is within :data:`PROBE_AGREE` of the reference's measures them (the reference
    itself when no other agrees); when none is readable, the one whose products come closest
    to it, of those showing them under half the target or covering enough of their window
    (None when there is none: nothing measured); without a target, the middle one."""
    if target is None:
        return good[len(good) // 2], "middle window (no product size declared)"
    readable = [p for p in good if p["at_input_px"] >= target / 2 and p.get("cover", 1.0) >= MIN_PROBE_COVER]
    readable = _without_contradicted_whole(readable)
    if readable:
        largest = max(readable, key=lambda p: p["window"])
        # the largest window sees the products small, and misses the smallest of them: its
        # median runs high (a panorama of phone photos: 234 px where the window showing them at
        # the model's size measured 174, so the tile chosen was a third too large and counted a
        # sixth fewer). A window nearer the size measures better, when it agrees with the largest
        # (a zoomed-in window measuring the print on one product does not)
        agree = [p for p in readable if _agree(p, largest)]
        best = min(agree, key=lambda p: abs(math.log(p["at_input_px"] / target)))
        return best, ("largest window showing products at half their size or more" if best is largest
                      else "window nearest the product size that agrees with the largest readable one")
    # none readable: the window whose products come closest to the size, of those that measure
    # something: products shown under half the size (far-away ones, which a model finds few of),
    # or at that size or more and covering enough of their window. A few boxes at the size over a
    # window they barely cover are print or a sign, not shelves (a 300x200 crop of the bundled
    # example: 12 boxes of text lines covering 7 % of it, "measured" at 24 px, enlarged the crop
    # 5.4 times and counted 52 products where it shows 3; an outside review)
    measures = [p for p in good if p["at_input_px"] < target / 2 or p.get("cover", 1.0) >= MIN_PROBE_COVER]
    if not measures:
        return None, "no window measures: boxes at the size cover too little of their window (print, signs)"
    return min(measures, key=lambda p: abs(math.log(p["at_input_px"] / target))), "window nearest the product size"


def _agree(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two probes' estimates lie within :data:`PROBE_AGREE` of each other."""
    return abs(math.log(a["median_px"] / b["median_px"])) <= math.log(PROBE_AGREE)


def _without_contradicted_whole(readable: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``readable`` without the whole-image probe where the squares measure the products and
    it does not agree with them: two squares at least twice apart in size (the larger at least
    half the largest square; for a panorama's strip view, nearer in size too: :func:`_same_size`)
    agreeing with each other and none with the whole view. A real
    product keeps its size in image pixels from one zoom to the next, while what a model finds
    at its preferred size in a view that shows nothing it knows (print zoomed in, shelf sections
    shrunk away) grows with the view. Shrunk whole to the model's side, a panorama of three
    phone photos showed 7 to 38 boxes of whole shelf sections, 3 to 7 times the squares'
    products, and was read at that scale: 5 of 30 panoramas of the 85 real photos counted a
    fraction of their products (an outside review). A close-up's big products, which no square
    shows whole, are the whole view's to measure still."""
    whole = [p for p in readable if p.get("whole")]
    squares = [p for p in readable if not p.get("whole")]
    if not whole or not squares or any(_agree(w, q) for w in whole for q in squares):
        return readable
    top = max(q["window"] for q in squares)
    strip = any(w.get("strip") for w in whole)
    measured = any(_same_size(a, b, near=strip) and 2 * b["window"] >= top for a in squares for b in squares)
    return squares if measured else readable


def _same_size(a: dict[str, Any], b: dict[str, Any], *, near: bool = False) -> bool:
    """Whether the larger probe ``b`` measures the same thing in image pixels as ``a``: both agree
    and ``b`` is at least twice ``a``'s size, or, with ``near`` (a panorama's strip view is the
    one in question), ``b`` is at least :data:`_ZOOM_EVIDENCE` times ``a``'s size and their
    estimates are nearer one size than sizes in the ratio of the windows (within the square root
    of that ratio). A panorama's squares are capped at its short side: its two largest, 2560 and
    3264 px, agreed at 230 and 241 px, were not twice apart, and the strip view's 8 boxes of shelf
    sections (1806 px) were read instead: 12 products where the default tile finds 952 (an outside
    review). Not for a close-up's whole view: there two large squares 1.6 times apart can agree on
    print and half-bottles while the whole view measures the products (a second look: 5 of 230
    enlarged crops of real photos read 2 to 5 times too large)."""
    r = b["window"] / a["window"]
    if r >= 2:
        return _agree(a, b)
    if not near:
        return False
    m = b["median_px"] / a["median_px"]
    return r >= _ZOOM_EVIDENCE and abs(math.log(m)) <= 0.5 * math.log(r)


def _apply(tiling: TileSpec, run: RunSpec, detector: Any, s: float, width: int, height: int) -> tuple[TileSpec, RunSpec]:
    """Specs that show the image at scale ``s`` to ``detector`` (the run's own ``scale`` is
    then spent: the specs returned carry it as a tile and input size)."""
    run = replace(run, scale=None)
    model_side = input_size_of(detector)
    base_tile = tiling.tile if isinstance(tiling.tile, int) else TileSpec().tile
    longer = max(width, height)
    if model_side is None:
        # a tile's longer side is resized to input_size: the tile, or the whole image where it
        # is smaller than one tile
        return replace(tiling, tile=base_tile), replace(run, input_size=scaled_side(min(base_tile, longer), s))
    tile = round(model_side / s)
    if tile >= longer or longer <= 32:  # the whole image fits in one tile: show it at scale s
        return replace(tiling, tile=max(32, longer)), replace(run, input_size=scaled_side(longer, s))
    if tile < 32:  # tiles are 32 px at least: 32 px tiles, resized to 32 * s px (the model's side, 640, allowed 20x)
        return replace(tiling, tile=32), replace(run, input_size=scaled_side(32, s))
    return replace(tiling, tile=tile), run


def scaled_side(tile: int, s: float) -> int:
    """The model input side that shows ``tile`` pixels at scale ``s``, refused beyond
    :data:`~densedet_tile.types.MAX_INPUT_SIZE` (a scale of 100 made a 128 000 px input)."""
    from .types import MAX_INPUT_SIZE

    side = max(16, round(tile * s))
    if side > MAX_INPUT_SIZE:
        raise InvalidInputError(f"scale {s:g} would show a {tile} px tile as {side} px, more than the largest model "
                                f"input ({MAX_INPUT_SIZE} px): give a smaller scale or tile")
    return side


def choose_scale(src: Any, detector: Any, tiling: TileSpec, run: RunSpec, merge: MergeSpec | None = None, *,
                 measure_thr: float | None = None) -> ScaleChoice:
    """Decide the scale for the open image ``src`` and return specs that produce it.

    The products are measured (``auto``, the photo rule's checks) with boxes scoring
    ``measure_thr`` or more where it is given, as given; else the detector's ``scale_thr`` where
    it declares one, whatever the run's threshold; else the run's threshold.

    In order: an explicit ``run.input_size`` wins (tiles are resized to it, as given);
    ``run.scale``; ``tiling.tile == "auto"`` (products measured, see
    :func:`estimate_product_height`; overlap raised to cover a typical product, and to the
    ``seam_overlap_px`` of ``merge``, default :class:`MergeSpec`), for a detector that declares a
    ``product_size`` (one that does not runs as with the default tile, photo rule included,
    warned once per detector, and ``info["asked"]`` is ``"auto"``); the
    detector's ``photo_scale`` rule for photo-like images (tiles it makes smaller than the one
    asked for keep such an overlap too, as tiles a given scale shrinks do, see :func:`photo_rule_specs`);
    else the tiling as given.
    """
    width, height = int(src.width), int(src.height)
    auto = tiling.tile == "auto"
    if run.input_size is not None and (run.scale is not None or auto):
        raise InvalidInputError("give a scale (or tile='auto') or an input_size, not both")
    if run.scale is not None and auto:
        raise InvalidInputError("give a scale or tile='auto' (which measures the scale), not both")
    if run.input_size is not None:
        return ScaleChoice(tiling, run, {"source": "input_size", "value": None})
    if run.scale is not None:
        t, r = _apply(tiling, run, detector, run.scale, width, height)
        t = _kept_overlap(tiling, t, MergeSpec() if merge is None else merge)
        if tiling.tile != TileSpec().tile and t.tile != tiling.tile:  # a tile that was asked for
            # (the side this run resizes each tile to: the model's own, or the one the scale set,
            # e.g. an image smaller than the tile shown whole at 0.5: 408 px for an 816 px image)
            log.warning("%s: tile %d replaced by %d px: the model sees each tile at %d px, so the scale sets "
                        "the tile; give the tile or the scale, not both", src.name, tiling.tile, t.tile,
                        r.input_size if r.input_size is not None else input_size_of(detector))
        return ScaleChoice(t, r, {"source": "given", "value": run.scale})
    measured = _measured_boxes(detector, run, measure_thr)
    if auto and product_size_of(detector) is not None:
        return _auto(src, detector, tiling, run, MergeSpec() if merge is None else merge, measured)
    if auto:
        # nothing to bring the products to: the run is the one without auto (an outside review:
        # a detector shaped like the mmdet adapter, whose photo rule counted 253 of a phone
        # photo's 253 products, counted 224 with auto's default tile, and 136 of 209 on a small copy)
        _say_no_product_size(src, detector)
        choice = choose_scale(src, detector, replace(tiling, tile=TileSpec().tile), run, merge,
                              measure_thr=measure_thr)
        note = (f"tile auto asked, but the detector declares no product_size, so auto cannot pick a scale: "
                f"{'its photo rule' if choice.info['source'] == 'photo rule' else 'the default tile'} used")
        info = {**choice.info, "asked": "auto",
                "note": f"{choice.info['note']}; {note}" if "note" in choice.info else note}
        return ScaleChoice(choice.tiling, choice.run, info)
    rule = photo_scale_of(detector, width, height)
    if rule is not None and max(width, height) <= PHOTO_ASPECT_MAX * min(width, height):
        info: dict[str, Any] = {"source": "photo rule", "value": round(rule, 6)}
        s = _rule_checked(src, detector, tiling, measured, rule, info)
        t, r, shown = photo_rule_specs(tiling, run, detector, s, width, height, MergeSpec() if merge is None else merge)
        if shown < s:
            said = f"a small image: shown at {shown:.3g} in tiles of {t.tile} px or whole, the smallest the seam " \
                   f"repair and the model's input allow"
            info.update(value=round(shown, 6), rule=info.get("rule", round(rule, 6)),
                        note=f"{info['note']}; {said}" if "note" in info else said)
        if tiling.tile != TileSpec().tile and t.tile != tiling.tile:  # a tile that was asked for
            log.warning("%s: tile %d replaced by %d px: the model's photo rule shows a photo at the scale it was "
                        "trained on; give an input size (--input-size) to keep the tile", src.name, tiling.tile,
                        t.tile)
        return ScaleChoice(t, r, info)
    return ScaleChoice(tiling, run, {"source": "tile", "value": None})


def photo_rule_scale(src: Any, detector: Any, tiling: TileSpec, run: RunSpec, *,
                     measure_thr: float | None = None) -> float | None:
    """The scale the engine shows the open image ``src`` at by the detector's photo rule (checked
    as :func:`choose_scale` checks it), or None where no photo rule applies: what a tool that
    runs the engine at other scales of its own (``adapt``'s views, its training crops) starts from."""
    choice = choose_scale(src, detector, tiling, run, measure_thr=measure_thr)
    return float(choice.info["value"]) if choice.info.get("source") == "photo rule" else None


def _rule_checked(src: Any, detector: Any, tiling: TileSpec, measured: "_Measured", rule: float,
                  info: dict[str, Any]) -> float:
    """The photo rule's scale, checked in two steps (detectors without a fixed input size or a
    product size keep the rule):

    1. where the rule would enlarge the image :data:`PHOTO_RULE_CHECK_FROM` times past what the
       default tile shows or more (a small photo, or a crop of one; the tile asked for is
       replaced by the rule's, and changes nothing), the products are measured by the
       probes of ``auto`` (at the run's threshold), and the image is enlarged only until they
       reach :data:`PHOTO_RULE_MAX_PRODUCT` times the detector's ``product_size``, but never
       shown smaller than the default tile shows it;
    2. then every photo is checked for a close-up (:func:`_closeup_checked`): products larger
       than a whole photo's at the scale step 1 left are brought to that size, below the
       tile's scale where need be (a close-up at full resolution is shrunk by the rule as a
       whole shelf is; a smaller copy of it, enlarged by the rule, keeps at least the tile's
       scale in step 1: both would show its products too large).

    ``info`` gets what was decided: ``product_height_px`` (step 1's measure, image pixels),
    ``closeup_px`` (step 2's), ``seconds`` (both steps; a result's ``timings["scale_s"]``), and
    ``rule`` and ``note`` where the scale is not the rule's."""
    target, side = product_size_of(detector), input_size_of(detector)
    if target is None or side is None or not isinstance(tiling.tile, int):
        return rule
    width, height = int(src.width), int(src.height)
    # the scale the default tile shows the image at: the rule replaces whatever tile was asked
    # for, so that tile must not decide the check either (an outside review: --tile 2048 ran the
    # crop check on whole phone photos, and moved 32 of 85 real photos' counts by 8.6 % on average)
    given = side / min(TileSpec().tile, max(width, height))
    t0 = time.perf_counter()
    s = rule
    if rule >= given * PHOTO_RULE_CHECK_FROM:  # a small photo, or a crop of one
        height_px, _ = _measure(src, detector, measured, target)
        info["product_height_px"] = height_px
        if height_px is not None:
            s = min(rule, max(given, PHOTO_RULE_MAX_PRODUCT * target / height_px))
        else:
            # nothing to measure (a crop of a few products, or of a sign): the rule's full
            # enlargement showed print as products (a 600 x 400 crop of the bundled example at 2.9:
            # 59 boxes where the whole photo has 9 there; an outside review), so no more than
            # where the check begins
            s = min(rule, given * PHOTO_RULE_CHECK_FROM)
    closeup_px, close = _closeup_checked(src, detector, measured, s, target, side)
    info["closeup_px"] = None if closeup_px is None else round(closeup_px, 1)
    info["seconds"] = round(time.perf_counter() - t0, 4)
    if close is not None:
        s = close
    if s < rule:
        h = closeup_px if close is not None else info["product_height_px"]
        why = "larger than on a whole photo: a close-up?" if close is not None else "a crop or a close-up?"
        note = (f"the rule would show the products at {h * rule:.0f} px ({why}); shown at {h * s:.0f} px"
                if h is not None else
                f"the probes could not measure the products (a crop of few products?): shown at {s:.3g}, "
                f"{PHOTO_RULE_CHECK_FROM:g} times what the default tile shows, not the rule's {rule:.3g}")
        info.update(value=round(s, 6), rule=round(rule, 6), note=note)
    return s


def _closeup_checked(src: Any, detector: Any, measured: "_Measured", s: float, target: float,
                     side: int) -> tuple[float | None, float | None]:
    """``(median product height, scale)`` for a photo a photo rule would show at ``s``: the
    whole image, resized to the model's input side, is run once (at the run's threshold, of its
    classes); the median height (image pixels) of its products is None with fewer than
    :data:`MIN_PROBE_BOXES`, ones covering less than :data:`MIN_PROBE_COVER` of the image, or
    ones whose heights' quartiles lie over :data:`CLOSEUP_MAX_SPREAD` times apart.
    Where they would reach the model at ``s`` over :data:`PHOTO_RULE_CLOSEUP` times the
    detector's ``product_size`` (larger than on any whole photo: a close-up), the scale returned
    brings them to :data:`PHOTO_RULE_MAX_PRODUCT` times that size; else None (``s`` stands)."""
    width, height = int(src.width), int(src.height)
    h_img, covered = _window_heights(src, detector, (0, 0, width, height), side, resize_filter_of(detector),
                                     *measured, "the photo rule's close-up check")
    if h_img.size < MIN_PROBE_BOXES or covered < MIN_PROBE_COVER * width * height:
        return None, None
    q1, height_px, q3 = (float(q) for q in np.percentile(h_img, [25, 50, 75]))
    if q3 > CLOSEUP_MAX_SPREAD * q1:
        return None, None
    if height_px * s <= PHOTO_RULE_CLOSEUP * target:
        return height_px, None
    return height_px, PHOTO_RULE_MAX_PRODUCT * target / height_px


def _measure(src: Any, detector: Any, measured: "_Measured", target: float | None) -> tuple[float | None, dict[str, Any]]:
    """:func:`estimate_product_height` at the run's served threshold (detectors return boxes a
    little below it, for the count range) and of the run's classes (the products counted are the
    ones measured)."""
    thr, classes = measured
    return estimate_product_height(src, detector, score_thr=thr, target=target, classes=classes)


#: ``(threshold, classes)`` of the boxes that measure the products (:func:`_measured_boxes`).
_Measured = tuple[float | None, Sequence[int] | None]


def _measured_boxes(detector: Any, run: RunSpec, given: float | None = None) -> _Measured:
    """``(threshold, classes)`` of the boxes that measure the products for a run: the detector's
    ``scale_thr`` where it declares one, whatever threshold the run serves at (the image is seen
    at the scale its model's sure boxes measure: a run served lower counts more boxes, one served
    higher fewer, on the same tiles, so the count range's ends are exactly the runs at those
    thresholds; measured at a run's own higher threshold, a run at 0.6 chose another scale than
    one at 0.55, and its count was not the range's low end: an outside review); else the run's
    served threshold. Its classes, as the boxes it counts. A threshold ``given`` by the caller
    is taken as it is."""
    if given is not None:
        return float(given), classes_of(detector, run.classes)
    thr = scale_thr_of(detector)
    if thr is None:
        thr = run.score_thr if run.score_thr is not None else score_thr_of(detector)
    return thr, classes_of(detector, run.classes)


def photo_rule_specs(tiling: TileSpec, run: RunSpec, detector: Any, s: float, width: int, height: int,
                     merge: MergeSpec) -> tuple[TileSpec, RunSpec, float]:
    """Specs that show a photo at its photo rule's scale ``s``, and the scale they show it at:
    as :func:`_apply`, but made for the seam repair where the rule enlarges a small photo. Its
    tiles (smaller than the one asked for) keep an overlap of ``seam_overlap_px``
    (:func:`_kept_overlap`), and are never under twice that (98 px by default: a 200x150 copy of
    a phone photo would be cut into 78 px tiles, which no overlap serves; 32 px, the smallest
    tile, for a merge that repairs no seams), nor is an image no larger than that shown larger
    than the model's input: the scale is lowered to fit (a 200x150 copy is shown at 6.5 instead of
    8.2). An image under 1.5 times the least tile (147 px) is shown whole at the model's input
    (98 px tiles at half a tile's overlap would cover it four times over). Shown whole at the
    rule's scale on a larger input instead, the 0.03 MP copies of 85 real photos counted 45.5 %
    off the human counts, against 34.3 % in 98 px tiles at the model's input (BENCHMARKS.md,
    "Small copies")."""
    side = input_size_of(detector)
    if side is not None:
        least = 32 if merge.mode == "none" else max(32, math.ceil(2 * merge.seam_overlap_px))
        longer = max(width, height)
        s = min(s, side / (longer if longer < 1.5 * least else least))
    t, r = _apply(tiling, run, detector, s, width, height)
    return _kept_overlap(tiling, t, merge), r, s


def _kept_overlap(asked: TileSpec, tiling: TileSpec, merge: MergeSpec) -> TileSpec:
    """``tiling`` (the engine's, for a scale) with its overlap raised to ``seam_overlap_px`` (up
    to half a tile) where a scale made its tiles smaller than the one asked for and the overlap
    asked for, in pixels of the tile asked for, was at least that. The fraction asked for is
    kept otherwise: an overlap asked under what the repair needs (``overlap=0``) stays as asked,
    and the engine says so."""
    if not isinstance(asked.tile, int) or tiling.tile >= asked.tile or merge.mode == "none" \
            or asked.overlap * asked.tile < merge.seam_overlap_px:
        return tiling
    return _seam_overlap(tiling, merge)


def _seam_overlap(tiling: TileSpec, merge: MergeSpec, least_px: float = 0.0) -> TileSpec:
    """``tiling`` with its overlap raised (up to 0.5) to ``least_px`` and to the merge's
    ``seam_overlap_px``, for a tile the engine chose; a merge that repairs nothing needs none."""
    least = max(least_px, 0.0 if merge.mode == "none" else merge.seam_overlap_px)
    need = min(0.5, math.ceil(1e4 * least / tiling.tile) / 1e4)  # (rounded up: 0.3828 of 128 px is under 49)
    return replace(tiling, overlap=need) if need > tiling.overlap else tiling


#: Detectors already told about (:func:`_say_no_product_size`), held weakly.
_TOLD: "weakref.WeakSet[Any]" = weakref.WeakSet()
_TOLD_LOCK = threading.Lock()


def _say_no_product_size(src: Any, detector: Any) -> None:
    """Warn, once per detector object (each image where one cannot be remembered), that
    ``tile="auto"`` falls back for it: it declares no ``product_size``, the size auto brings the
    products to."""
    try:
        with _TOLD_LOCK:
            if detector in _TOLD:
                return
            _TOLD.add(detector)
    except TypeError:  # (not weakly referable, or unhashable)
        pass
    log.warning("%s: tile auto cannot pick a scale: the detector declares no product_size (the typical product "
                "height its training showed, in model-input pixels), so the run is the one without auto "
                "(the detector's photo rule on a photo, else the default tile); give --scale, or declare "
                "product_size on a factory detector", src.name)


def _auto_specs(tiling: TileSpec, run: RunSpec, detector: Any, s: float, width: int, height: int,
                merge: MergeSpec) -> tuple[TileSpec, RunSpec, float]:
    """Specs that show an image at the scale ``s`` auto measured, within the limits the engine
    holds a scale given by the caller to, and the scale they show it at. As :func:`_apply`, but:

    * tiles are never smaller than the least tile of :func:`photo_rule_specs` (twice the seam
      repair's overlap, 98 px by default; 32 px for a merge that repairs nothing), where the
      image is larger than that: a detector of a fixed input size shows such a tile larger than
      its input, at the scale measured (6 px products and a 640 px model made 48 px tiles, whose
      overlap, at most half a tile, could not reach the 49 px the seam repair needs);
    * a detector without an input size gets a tile small enough that the tile at the scale fits
      :data:`~densedet_tile.types.MAX_INPUT_SIZE` (it kept the 1280 px tile, and 6 px products,
      at 13.3, made an input of 17067 px, refused as if the caller had asked it);
    * the scale is lowered only where even the least tile would pass that input size."""
    from .types import MAX_INPUT_SIZE

    least = 32 if merge.mode == "none" else max(32, math.ceil(2 * merge.seam_overlap_px))
    s = min(s, MAX_INPUT_SIZE / least)
    longer = max(width, height)
    side = input_size_of(detector)
    if side is None:
        base = tiling.tile if isinstance(tiling.tile, int) else TileSpec().tile
        tile = min(base, max(least, math.floor(MAX_INPUT_SIZE / s)))
        t, r = _apply(replace(tiling, tile=tile), run, detector, s, width, height)
        return t, r, s
    t, r = _apply(tiling, run, detector, s, width, height)
    if t.tile < least and t.tile < longer:
        # (an image no larger than the least tile: shown whole, at the scale)
        tile = least if least < longer else max(32, longer)
        t, r = replace(t, tile=tile), replace(r, input_size=scaled_side(min(tile, longer), s))
    return t, r, s


def _auto(src: Any, detector: Any, tiling: TileSpec, run: RunSpec, merge: MergeSpec, measured: _Measured) -> ScaleChoice:
    t0 = time.perf_counter()
    target = product_size_of(detector)
    height_px, details = _measure(src, detector, measured, target)
    info: dict[str, Any] = {"source": "auto", "product_height_px": height_px, "target_px": target, **details}
    fallback = replace(tiling, tile=TileSpec().tile)
    if height_px is None:
        log.warning("%s: tile auto found no products to measure; using the default tile %d", src.name, fallback.tile)
        info.update(value=None, note="no products found in the probe windows; default tile used")
        tiling, run = fallback, run
    else:
        s = target / height_px
        tiling, run, shown = _auto_specs(tiling, run, detector, s, int(src.width), int(src.height), merge)
        info["value"] = round(shown, 6)
        if shown < s:
            info.update(measured_scale=round(s, 6),
                        note=f"products of {height_px:g} px would need a scale of {s:.3g}; shown at {shown:.3g}, "
                             f"the largest at which a {tiling.tile} px tile fits the largest model input")
    if height_px is not None:
        # and no narrower than the seam repair needs (small products make small tiles: 20 px
        # products, tiles of 160 px, 32 px of overlap)
        tiling = _seam_overlap(tiling, merge, _AUTO_OVERLAP_PRODUCTS * height_px)
    info["seconds"] = round(time.perf_counter() - t0, 4)
    return ScaleChoice(tiling, run, info)
