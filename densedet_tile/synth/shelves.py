"""Synthetic supermarket shelves with exact product boxes, for training and testing detectors.

The default model of densedet-tile is trained only on these images (no real labelled shelf
photos can be had here), so the generator aims at what matters for transfer to real photos:
rows of tightly packed products of several kinds (boxes, bottles, cans, bags, jars) with
repeated facings of the same design side by side, printed-looking packaging (gradients,
stripes, glyph rows, logos, colour blocks), shelf edges with price tags, uneven light and
shadows under each shelf, slight perspective and rotation, blur, noise and JPEG artefacts.

Everything is seeded by a :class:`numpy.random.Generator`; the same generator state gives the
same image and boxes. Boxes are axis-aligned xyxy float32 in pixels of the returned image: the
visible extent of each product (clipped by the image border and the shelf lip in front of it).
Products with less than ``min_visible`` of their area inside the image are dropped.

Public functions: :func:`render_shelf` (one image of a given size and product scale),
:func:`training_sample` (a model-input-sized crop as a 1280 px tile of a phone photo would look
after resizing, with scale jitter) and :func:`write_dataset` (images plus SKU-110K style CSV).
"""

from __future__ import annotations

import csv
import functools
import io
import math
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ..errors import InvalidInputError
from ..io import TMP_SUFFIX, atomic_write

__all__ = ["render_shelf", "training_sample", "write_dataset", "PHOTO_PRODUCT_HEIGHT"]

#: Typical product height in a SKU-110K phone photo (about 3000 px on the long side).
PHOTO_PRODUCT_HEIGHT = 260.0

_KINDS = ("box", "bottle", "can", "bag", "jar")
_KIND_P = np.array([0.30, 0.25, 0.18, 0.15, 0.12])
# Width / height ranges per kind.
_ASPECT = {"box": (0.35, 1.3), "bottle": (0.22, 0.45), "can": (0.45, 0.7), "bag": (0.5, 0.95), "jar": (0.6, 1.0)}


# --------------------------------------------------------------------------------------------
# colours and textures
# --------------------------------------------------------------------------------------------
def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) to RGB float in [0, 255], output shape (..., 3)."""
    h = np.asarray(h, np.float64) % 1.0
    s = np.asarray(s, np.float64)
    v = np.asarray(v, np.float64)
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(int) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.stack([r, g, b], axis=-1) * 255.0


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A packaging colour: mostly saturated brand colours, sometimes white/black/metal."""
    u = rng.random()
    if u < 0.12:
        return np.full(3, rng.uniform(215, 250))  # white
    if u < 0.22:
        return np.full(3, rng.uniform(15, 60))  # black
    if u < 0.28:
        return np.full(3, rng.uniform(120, 190))  # silver / grey
    return _hsv_to_rgb(rng.random(), rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))


def _glyph_rows(rng: np.random.Generator, w: int, h: int, y0: int, y1: int, img: np.ndarray,
                colour: np.ndarray) -> None:
    """Draw text-like rows of blocky glyphs into ``img[y0:y1]`` (in place)."""
    if y1 - y0 < 3 or w < 6:
        return
    line_h = int(max(2, rng.uniform(0.025, 0.1) * h))
    n_lines = max(1, int((y1 - y0) / (line_h * 1.6)))
    n_lines = int(rng.integers(1, min(n_lines, 6) + 1))
    for k in range(n_lines):
        ly = y0 + int(k * line_h * 1.6)
        if ly + line_h > y1:
            break
        margin = int(rng.uniform(0.08, 0.25) * w)
        span = w - 2 * margin
        if span < 4:
            continue
        cols = max(2, int(span / max(1.0, line_h * 0.35)))
        cells = rng.random((3, cols)) < rng.uniform(0.35, 0.7)
        cells[:, rng.random(cols) < 0.15] = False  # word gaps
        big = np.repeat(np.repeat(cells, int(np.ceil(line_h / 3)), axis=0), int(np.ceil(span / cols)), axis=1)
        big = big[:line_h, :span]
        region = img[ly:ly + big.shape[0], margin:margin + big.shape[1]]
        region[big[: region.shape[0], : region.shape[1]]] = colour


_LETTERS = np.array(list("ABCDEFGHIJKLMNOPRSTUVWXYZ0123456789"))


@functools.lru_cache(maxsize=64)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType: fixed-size bitmap font
        return ImageFont.load_default()


def _print_words(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Print a few random words (brand names, weights) on a float RGB sprite."""
    h, w = img.shape[:2]
    pil = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(int(rng.integers(1, 4))):
        size = int(np.clip(h * rng.uniform(0.04, 0.16), 5, 160))
        n = int(min(rng.integers(2, 9), max(1, (w * 0.95) // max(1.0, 0.62 * size))))
        word = "".join(rng.choice(_LETTERS, n))
        x = rng.uniform(0, max(1.0, w - 0.62 * size * n))
        y = rng.uniform(0.05, 0.85) * h
        bg = img[min(h - 1, int(y + size / 2)), min(w - 1, int(x))].mean()
        colour = tuple(int(c) for c in (_random_colour(rng) if rng.random() < 0.4 else
                                          np.full(3, 25.0 if bg > 120 else 240.0)))
        draw.text((x, y), word, font=_font(size), fill=colour)
    return np.asarray(pil, dtype=np.float32)


def _width_profile(kind: str, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Half-width of the product silhouette at each row y (float array of length h)."""
    y = (np.arange(h) + 0.5) / h
    half = w / 2.0
    prof = np.full(h, half)
    if kind == "bottle":
        cap = rng.uniform(0.05, 0.1)
        neck = rng.uniform(0.18, 0.3)
        shoulder = neck + rng.uniform(0.08, 0.2)
        nw = rng.uniform(0.28, 0.45) * half
        cw = nw * rng.uniform(1.0, 1.25)
        prof = np.where(y < cap, cw, prof)
        prof = np.where((y >= cap) & (y < neck), nw, prof)
        t = np.clip((y - neck) / (shoulder - neck), 0, 1)
        prof = np.where((y >= neck) & (y < shoulder), nw + (half - nw) * np.sin(t * np.pi / 2), prof)
        prof = np.where(y > 0.97, half * 0.93, prof)
    elif kind == "can":
        prof = np.where((y < 0.04) | (y > 0.96), half * 0.9, prof)
    elif kind == "jar":
        lid = rng.uniform(0.08, 0.16)
        prof = np.where(y < lid, half * rng.uniform(0.8, 0.95), prof)
        prof = np.where(y > 0.95, half * 0.92, prof)
    elif kind == "bag":
        top = rng.uniform(0.8, 0.95)
        prof = half * (top + (1 - top) * np.clip(y * 1.5, 0, 1))
        prof = prof * (1 + 0.02 * np.sin(y * rng.uniform(10, 25)))
    elif kind == "box":
        pass
    return np.minimum(prof, half)


def _make_sprite(rng: np.random.Generator, kind: str, w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    """One product design: RGB float32 (h, w, 3) and a boolean silhouette (h, w)."""
    xs = np.arange(w) + 0.5
    prof = _width_profile(kind, h, w, rng)
    mask = np.abs(xs[None, :] - w / 2.0) <= prof[:, None]
    base = _random_colour(rng)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    # vertical gradient
    if rng.random() < 0.6:
        other = _random_colour(rng)
        t = np.linspace(0, 1, h)[:, None, None] ** rng.uniform(0.5, 2.0)
        amt = rng.uniform(0.2, 0.8)
        img = img * (1 - amt * t) + other * (amt * t)
    # stripe / colour-block bands
    for _ in range(int(rng.integers(0, 4))):
        c = _random_colour(rng)
        y0 = int(rng.uniform(0, 0.9) * h)
        y1 = min(h, y0 + max(1, int(rng.uniform(0.03, 0.35) * h)))
        if rng.random() < 0.25:  # diagonal band
            yy, xx = np.mgrid[0:h, 0:w]
            d = yy + (xx - w / 2) * rng.uniform(-0.6, 0.6)
            band = (d >= y0) & (d < y1)
            img[band] = c
        else:
            img[y0:y1] = c
    # photo-like smooth colour field (food pictures on packs)
    if rng.random() < 0.4:
        y0 = int(rng.uniform(0.1, 0.6) * h)
        y1 = min(h, y0 + max(2, int(rng.uniform(0.2, 0.5) * h)))
        small = (rng.random((3, 3, 3)) * 255).astype(np.uint8)
        blob = np.asarray(Image.fromarray(small).resize((w, y1 - y0), Image.Resampling.BICUBIC), np.float32)
        img[y0:y1] = blob
    # label panel (bottles, cans, jars carry a wrap label)
    if kind in ("bottle", "jar", "can") and rng.random() < 0.8:
        y0 = int(rng.uniform(0.35, 0.55) * h) if kind == "bottle" else int(rng.uniform(0.1, 0.3) * h)
        y1 = min(h, y0 + int(rng.uniform(0.25, 0.45) * h))
        img[y0:y1] = _random_colour(rng)
    # logo: filled ellipse with contrasting colour, sometimes ringed
    if rng.random() < 0.75:
        cx, cy = w * rng.uniform(0.3, 0.7), h * rng.uniform(0.25, 0.7)
        rx, ry = w * rng.uniform(0.15, 0.42), h * rng.uniform(0.05, 0.18)
        yy, xx = np.ogrid[0:h, 0:w]
        e = ((xx + 0.5 - cx) / rx) ** 2 + ((yy + 0.5 - cy) / ry) ** 2
        img[e <= 1.0] = _random_colour(rng)
        if rng.random() < 0.5:
            img[(e > 1.0) & (e <= 1.35)] = _random_colour(rng)
        if rng.random() < 0.6:
            _glyph_rows(rng, w, h, int(cy - ry * 0.4), int(cy + ry * 0.4), img, _random_colour(rng))
    # text-like glyph rows
    if rng.random() < 0.85:
        y0 = int(rng.uniform(0.2, 0.75) * h)
        _glyph_rows(rng, w, h, y0, min(h, y0 + int(0.3 * h)), img,
                    np.full(3, 20.0) if img[min(h - 1, y0), w // 2].mean() > 110 else np.full(3, 240.0))
    # kind specific details
    if kind == "bottle":
        capc = _random_colour(rng)
        img[: max(1, int(0.08 * h))] = capc
    elif kind == "jar":
        img[: max(1, int(0.12 * h))] = _random_colour(rng) * 0.8
    elif kind == "can":
        rim = max(1, int(0.05 * h))
        img[:rim] = 185
        img[-rim:] = 150
    elif kind == "bag":
        crimp = max(1, int(0.06 * h))
        zig = (np.arange(w) // max(1, w // 12)) % 2
        img[:crimp] = img[:crimp] * (0.75 + 0.2 * zig[None, :, None])
    # printed words and fine print-like texture
    if rng.random() < 0.7 and w >= 10 and h >= 10:
        img = _print_words(rng, img)
    if rng.random() < 0.5:
        gh, gw = int(rng.integers(4, 24)), int(rng.integers(2, 10))
        noise = (rng.random((gh, gw)) * 255).astype(np.uint8)
        tex = np.asarray(Image.fromarray(noise).resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255 - 0.5
        img = img * (1 + rng.uniform(0.1, 0.4) * tex[:, :, None])
    # boxes seen slightly from the side show a darker side face
    if kind == "box" and rng.random() < 0.5 and w >= 8:
        sw = max(1, int(w * rng.uniform(0.06, 0.2)))
        if rng.random() < 0.5:
            img[:, :sw] *= rng.uniform(0.45, 0.75)
        else:
            img[:, -sw:] *= rng.uniform(0.45, 0.75)
    # shading: cylinders get a cosine profile + specular stripe, boxes slightly dark edges
    u = (xs / w) * 2 - 1
    if kind in ("bottle", "can", "jar"):
        shade = 0.5 + 0.5 * np.sqrt(np.clip(1 - u ** 2, 0, 1))
        spec_pos = rng.uniform(-0.5, -0.1)
        spec = rng.uniform(0.2, 0.6) * np.exp(-((u - spec_pos) / rng.uniform(0.05, 0.12)) ** 2)
        img = img * shade[None, :, None] + (255 - img) * spec[None, :, None]
    elif kind == "bag":
        shade = 0.8 + 0.2 * np.cos(u * rng.uniform(2, 5) + rng.uniform(0, 6))
        img = img * shade[None, :, None]
    else:
        shade = 1.0 - 0.18 * np.abs(u) ** 4
        img = img * shade[None, :, None]
    # dark outline so neighbours separate like real edges do (not always)
    if rng.random() < 0.6:
        edge = mask & ~(np.roll(mask, 1, 1) & np.roll(mask, -1, 1) & np.roll(mask, 1, 0) & np.roll(mask, -1, 0))
        img[edge] *= 0.6
    return np.clip(img, 0, 255), mask


# --------------------------------------------------------------------------------------------
# scene
# --------------------------------------------------------------------------------------------
def _background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    kind = rng.random()
    if kind < 0.35:
        base = np.full(3, rng.uniform(20, 70))  # dark shelf back
    elif kind < 0.65:
        base = np.full(3, rng.uniform(150, 235))  # light metal
    else:
        base = _random_colour(rng) * rng.uniform(0.4, 0.9)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    g = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.7, 1.1), h, dtype=np.float32)
    img *= g[:, None, None]
    if rng.random() < 0.35:  # pegboard holes
        step = int(rng.uniform(8, 25))
        img[step // 2::step, step // 2::step] *= 0.4
    return img


def render_shelf(
    rng: np.random.Generator,
    *,
    width: int,
    height: int,
    product_height: float,
    min_visible: float = 0.25,
    jpeg: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one shelf image.

    Args:
        rng: source of all randomness (the image is a pure function of its state).
        width, height: output size in pixels.
        product_height: typical product height in pixels; rows vary around it (x0.6..x1.6)
            and products within a row vary again.
        min_visible: products with less than this fraction of their area inside the image
            are dropped; the others are clipped to the border.
        jpeg: pass the result through JPEG at a random quality.

    Returns:
        ``(image, boxes)``: uint8 (height, width, 3) RGB, float32 (N, 4) xyxy pixel boxes.
    """
    if width < 16 or height < 16:
        raise InvalidInputError(f"render_shelf: size must be at least 16x16, got {width}x{height}")
    if not (4.0 <= product_height <= 4 * max(width, height)):
        raise InvalidInputError(f"render_shelf: product_height {product_height!r} out of range")
    # Draw on a canvas with a margin, warp, then crop: rotation/perspective never show corners.
    m = int(0.08 * max(width, height))
    cw, ch = width + 2 * m, height + 2 * m
    canvas = _background(rng, cw, ch)
    light = np.ones(ch, np.float32)  # per-row light factor (shadows under each shelf)
    boxes: list[list[float]] = []
    sprites: list[tuple[np.ndarray, np.ndarray, int, int, float]] = []
    lips: list[tuple[int, int, np.ndarray]] = []
    y = -rng.uniform(0.0, 1.0) * product_height * 1.3
    while y < ch:
        row_h = product_height * float(np.exp(rng.normal(0, 0.22)))
        row_h = float(np.clip(row_h, 0.55 * product_height, 1.7 * product_height))
        lip_h = max(3, int(row_h * rng.uniform(0.08, 0.2)))
        clearance = row_h * rng.uniform(1.03, 1.22)
        top = y
        floor = int(top + clearance)  # products stand on this line
        lips.append((floor - int(lip_h * rng.uniform(0.0, 0.35)), lip_h, _random_colour(rng) if rng.random() < 0.3
                     else np.full(3, rng.choice([235.0, 200.0, 40.0, 215.0]))))
        # shadow from the shelf above, strongest just under it
        t0, t1 = int(max(0, top)), int(min(ch, floor))
        if t1 > t0:
            d = (np.arange(t0, t1) - top) / max(1.0, clearance)
            light[t0:t1] *= 1.0 - rng.uniform(0.1, 0.45) * np.exp(-d / rng.uniform(0.15, 0.4))
        x = -rng.uniform(0, 1) * row_h
        while x < cw:
            if rng.random() < 0.07:  # empty gap
                x += row_h * rng.uniform(0.3, 1.5)
                continue
            kind = _KINDS[int(rng.choice(len(_KINDS), p=_KIND_P))]
            ph = row_h * rng.uniform(0.65, 1.0) if kind != "bottle" else row_h * rng.uniform(0.8, 1.05)
            ph = min(ph, clearance * 0.97)
            lo, hi = _ASPECT[kind]
            pw = ph * rng.uniform(lo, hi)
            iw, ih = max(3, int(round(pw))), max(3, int(round(ph)))
            rgb, mask = _make_sprite(rng, kind, iw, ih)
            facings = int(min(12, 1 + rng.geometric(0.3)))
            gap = row_h * rng.uniform(0.0, 0.04)
            for _ in range(facings):
                if x >= cw:
                    break
                fx = int(x + rng.normal(0, 0.5))
                # One product per facing, standing on the shelf. (Stacked packs are not drawn: a
                # "two high" branch here could never fire on rows of 9 px or more, since a product is at least 0.65 of
                # the row and the clearance at most 1.22; stacks that do fire are the training
                # experiment in benchmarks/default_model/generator_stacks_fridges_grilles.patch.)
                fy = floor - ih - int(abs(rng.normal(0, 1.0)))
                bright = float(rng.uniform(0.85, 1.1))
                sprites.append((rgb, mask, fx, fy, bright))
                cols = np.nonzero(mask.any(0))[0]
                boxes.append([fx + cols[0], fy, fx + cols[-1] + 1, fy + ih])
                x += iw + gap
        y = floor + lip_h * 0.6 + rng.uniform(0, 0.1) * row_h
    # paste products (numpy, clipped to the canvas)
    for rgb, mask, fx, fy, bright in sprites:
        h_, w_ = mask.shape
        x0, y0 = max(fx, 0), max(fy, 0)
        x1, y1 = min(fx + w_, cw), min(fy + h_, ch)
        if x1 <= x0 or y1 <= y0:
            continue
        sm = mask[y0 - fy:y1 - fy, x0 - fx:x1 - fx]
        canvas[y0:y1, x0:x1][sm] = rgb[y0 - fy:y1 - fy, x0 - fx:x1 - fx][sm] * bright
    box_arr = np.asarray(boxes, np.float32).reshape(-1, 4)
    # shelf lips with price-tag strips, drawn over the product feet
    for ly, lh, colour in lips:
        a, b = max(0, ly), min(ch, ly + lh)
        if b <= a:
            continue
        canvas[a:b] = colour
        canvas[a:min(b, a + max(1, lh // 8))] *= 1.15
        if rng.random() < 0.85:
            tag_h = max(2, int(lh * rng.uniform(0.45, 0.8)))
            ty = a + (lh - tag_h) // 2
            tx = -rng.uniform(0, 1) * product_height
            tagc = np.full(3, 245.0) if rng.random() < 0.6 else np.array([250.0, 225, 60])
            while tx < cw:
                tw = int(product_height * rng.uniform(0.25, 0.6))
                x0, x1 = int(max(0, tx)), int(min(cw, tx + tw))
                if x1 > x0 and ty + tag_h <= ch and ty >= 0:
                    canvas[ty:ty + tag_h, x0:x1] = tagc
                    _glyph_rows(rng, x1 - x0, tag_h, 1, tag_h - 1, canvas[ty:ty + tag_h, x0:x1], np.full(3, 25.0))
                tx += tw + product_height * rng.uniform(0.2, 1.5)
        # a lip covers whatever stands behind it: cut boxes whose feet it hides
        if len(box_arr):
            hit = (box_arr[:, 3] > a) & (box_arr[:, 1] < a)
            box_arr[hit, 3] = np.minimum(box_arr[hit, 3], a)
    # hanging price cards / shelf talkers occlude a few products
    for _ in range(int(rng.poisson(1.0 * cw * ch / (product_height * 8) ** 2))):
        tw, th = product_height * rng.uniform(0.3, 0.9), product_height * rng.uniform(0.15, 0.4)
        tx, ty = rng.uniform(0, cw), rng.uniform(0, ch)
        x0, y0, x1, y1 = int(tx), int(ty), int(min(cw, tx + tw)), int(min(ch, ty + th))
        if x1 > x0 and y1 > y0:
            canvas[y0:y1, x0:x1] = _random_colour(rng) if rng.random() < 0.5 else np.array([250.0, 220, 40])
            _glyph_rows(rng, x1 - x0, y1 - y0, 1, y1 - y0 - 1, canvas[y0:y1, x0:x1], np.full(3, 20.0))
            box_arr = _occlude(box_arr, x0, y0, x1, y1)
    # big price signs with printed prices
    for _ in range(int(rng.poisson(0.3 * cw * ch / (product_height * 6) ** 2))):
        tw, th = product_height * rng.uniform(0.6, 1.6), product_height * rng.uniform(0.35, 0.9)
        x0, y0 = int(rng.uniform(0, cw)), int(rng.uniform(0, ch))
        x1, y1 = int(min(cw, x0 + tw)), int(min(ch, y0 + th))
        if x1 - x0 > 8 and y1 - y0 > 8:
            bg = np.array([[250.0, 250, 250], [250, 215, 30], [200, 30, 30], [20, 40, 120]])[rng.integers(4)]
            sign = Image.new("RGB", (x1 - x0, y1 - y0), tuple(int(v) for v in bg))
            fg = (20, 20, 20) if bg.mean() > 150 else (250, 250, 250)
            size = max(6, int((y1 - y0) * rng.uniform(0.4, 0.7)))
            ImageDraw.Draw(sign).text((size * 0.2, (y1 - y0 - size) / 2), f"${rng.integers(0, 20)}.{rng.integers(0, 99):02d}",
                                      font=_font(size), fill=fg)
            canvas[y0:y1, x0:x1] = np.asarray(sign, np.float32)
            box_arr = _occlude(box_arr, x0, y0, x1, y1)
    # vertical shelf uprights (slotted posts) hide product edges
    for _ in range(int(rng.random() < 0.3) * int(rng.integers(1, 3))):
        pw_ = max(2, int(product_height * rng.uniform(0.06, 0.18)))
        x0 = int(rng.uniform(0, cw - pw_))
        canvas[:, x0:x0 + pw_] = rng.uniform(60, 200) * rng.uniform(0.9, 1.05, 3)
        step = max(3, pw_)
        slot = max(1, pw_ // 3)
        canvas[::step, x0 + slot:x0 + pw_ - slot] *= 0.3
        box_arr = _occlude(box_arr, x0, 0, x0 + pw_, ch)
    # non-product areas: floor at the bottom or ceiling / aisle sign at the top
    if rng.random() < 0.25:
        band = int(ch * rng.uniform(0.08, 0.35))
        colour = np.full(3, rng.uniform(90, 220)) * rng.uniform(0.85, 1.1, 3)
        ramp = np.linspace(rng.uniform(0.7, 1.0), rng.uniform(0.9, 1.2), band, dtype=np.float32)[:, None, None]
        if rng.random() < 0.5:  # floor: speckled tiles, square or diagonal grout lines
            a = ch - band
            canvas[a:] = colour * ramp
            step = max(4, int(product_height * rng.uniform(0.5, 2.0)))
            yy, xx = np.mgrid[0:band, 0:cw]
            lw = max(1, step // 40)
            if rng.random() < 0.5:
                grout = ((xx + yy) % step < lw) | ((xx - yy) % step < lw)
            else:
                grout = (yy % max(2, step // 2) < lw) | (xx % step < lw)
            canvas[a:][grout] *= 0.6
            speck = rng.random((band, cw)) < rng.uniform(0.02, 0.12)
            canvas[a:][speck] = np.minimum(canvas[a:][speck] * 1.5 + 30, 255)
            if len(box_arr):
                h0 = box_arr[:, 3] - box_arr[:, 1]
                box_arr[:, 3] = np.minimum(box_arr[:, 3], a)
                box_arr = box_arr[(box_arr[:, 3] - box_arr[:, 1]) > 0.4 * h0]
        else:  # ceiling with lights, beams, posters and a sign board
            canvas[:band] = colour * ramp[::-1]
            for _ in range(int(rng.integers(0, 3))):  # photo posters / windows
                px0 = int(rng.uniform(0, cw * 0.8))
                px1 = min(cw, px0 + int(rng.uniform(0.1, 0.4) * cw))
                small = (rng.random((3, 3, 3)) * 255).astype(np.uint8)
                canvas[:band, px0:px1] = np.asarray(
                    Image.fromarray(small).resize((px1 - px0, band), Image.Resampling.BICUBIC), np.float32)
            for _ in range(int(rng.integers(2, 8))):
                ly = int(rng.uniform(0, band))
                canvas[ly:ly + max(1, int(product_height * 0.05)), int(rng.uniform(0, cw * 0.8)):] = \
                    250.0 if rng.random() < 0.5 else rng.uniform(60, 140)
            sx0 = int(rng.uniform(0, 0.6) * cw)
            sx1 = min(cw, sx0 + int(rng.uniform(0.2, 0.5) * cw))
            sy0, sy1 = int(band * 0.2), int(band * rng.uniform(0.5, 0.9))
            if sy1 > sy0 + 2 and sx1 > sx0 + 2:
                canvas[sy0:sy1, sx0:sx1] = _random_colour(rng)
                _glyph_rows(rng, sx1 - sx0, sy1 - sy0, 1, sy1 - sy0 - 1, canvas[sy0:sy1, sx0:sx1], np.full(3, 245.0))
            if len(box_arr):
                h0 = box_arr[:, 3] - box_arr[:, 1]
                box_arr[:, 1] = np.maximum(box_arr[:, 1], band)
                box_arr = box_arr[(box_arr[:, 3] - box_arr[:, 1]) > 0.4 * h0]
    # light: vertical shadows + global gradient + vignette + colour cast
    yy = np.linspace(-1, 1, ch, dtype=np.float32)[:, None]
    xx = np.linspace(-1, 1, cw, dtype=np.float32)[None, :]
    field = light[:, None] * (1 + rng.uniform(-0.25, 0.25) * xx + rng.uniform(-0.25, 0.25) * yy)
    field = field * (1 - rng.uniform(0.0, 0.35) * (xx ** 2 + yy ** 2) / 2)
    cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
    canvas *= field[:, :, None]
    canvas *= cast * np.float32(rng.uniform(0.7, 1.2))
    np.clip(canvas, 0, 255, out=canvas)
    img = Image.fromarray(canvas.astype(np.uint8))

    # geometry: a small homography (rotation + perspective) from canvas to output
    ang = np.deg2rad(rng.normal(0, 1.5))
    ca, sa = np.cos(ang), np.sin(ang)
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float64)
    centre = np.array([cw / 2, ch / 2])
    dst = (src - centre) @ np.array([[ca, sa], [-sa, ca]]) + centre
    u = rng.random()
    if u < 0.1:  # looking down an aisle: one side recedes
        side = rng.choice([-1.0, 1.0])
        k = rng.uniform(0.1, 0.25)
        far = 1 if side > 0 else 0  # corners 1,2 (right) or 0,3 (left) shrink vertically
        idx = [1, 2] if far else [0, 3]
        dst[idx[0], 1] += k * ch
        dst[idx[1], 1] -= k * ch
    dst += rng.normal(0, 0.05 if u > 0.75 else 0.02, (4, 2)) * np.array([cw, ch])
    dst -= m  # output frame: canvas margin cut off
    H = _homography(src, dst)  # canvas -> output
    Hinv = np.linalg.inv(H)
    coeffs = (Hinv / Hinv[2, 2]).reshape(-1)[:8]
    img = img.transform((width, height), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR,
                        fillcolor=(30, 30, 30))
    if len(box_arr):
        box_arr = _output_labels(box_arr, H, (cw, ch), (width, height), min_visible)

    # optics: blur, noise, JPEG
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.6)) * max(1.0, product_height / 130)))
    arr = np.asarray(img, dtype=np.float32)
    if rng.random() < 0.7:
        sigma = np.float32(rng.uniform(1, 7))
        arr = arr + rng.standard_normal((*arr.shape[:2], 1), dtype=np.float32) * sigma  # luminance noise
        if rng.random() < 0.5:
            arr += rng.standard_normal(arr.shape, dtype=np.float32) * (sigma * np.float32(0.5))  # chroma noise
    out = np.clip(arr, 0, 255, out=arr).astype(np.uint8)
    if jpeg and rng.random() < 0.8:
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, format="JPEG", quality=int(rng.integers(35, 95)))
        buf.seek(0)
        out = np.asarray(Image.open(buf).convert("RGB"))
    return out, box_arr


def _occlude(boxes: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Boxes after an opaque rectangle is drawn over them.

    A box mostly hidden (> 60 %) is dropped; one cut across its whole height or width keeps
    its larger visible side; others keep their full extent (a product behind a small card).
    """
    if not len(boxes):
        return boxes
    boxes = boxes.copy()
    iw = np.clip(np.minimum(boxes[:, 2], x1) - np.maximum(boxes[:, 0], x0), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], y1) - np.maximum(boxes[:, 1], y0), 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = iw * ih <= 0.6 * np.maximum(area, 1e-6)
    full_h = (y0 <= boxes[:, 1]) & (y1 >= boxes[:, 3]) & (iw > 0)
    left = np.clip(x0 - boxes[:, 0], 0, None)
    right = np.clip(boxes[:, 2] - x1, 0, None)
    cut = full_h & keep
    use_left = left >= right
    boxes[cut & use_left, 2] = np.minimum(boxes[cut & use_left, 2], x0)
    boxes[cut & ~use_left, 0] = np.maximum(boxes[cut & ~use_left, 0], x1)
    full_w = (x0 <= boxes[:, 0]) & (x1 >= boxes[:, 2]) & (ih > 0) & keep & ~full_h
    top = np.clip(y0 - boxes[:, 1], 0, None)
    bottom = np.clip(boxes[:, 3] - y1, 0, None)
    use_top = top >= bottom
    boxes[full_w & use_top, 3] = np.minimum(boxes[full_w & use_top, 3], y0)
    boxes[full_w & ~use_top, 1] = np.maximum(boxes[full_w & ~use_top, 1], y1)
    ok = keep & (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
    return boxes[ok]


def _warped_boxes(boxes: np.ndarray, H: np.ndarray) -> np.ndarray:
    """The labels of canvas boxes (N, 4) after the homography ``H`` (canvas -> output): the
    bounding box of each box's warped outline, as an annotator boxes what is seen (the outline
    is a quadrilateral: turned by the roll, a trapezoid where the shelf recedes; a homography maps
    straight edges to straight edges, so the four corners bound it). Until 2026-12-02 the box was
    re-centred with a size from the homography's global scale (H[0,0], H[1,1]), which ignores the
    perspective division: in aisle views boxes floated above the products or shrank inside them
    (median IoU 0.70 with the drawn product), and 4-5 % of all labels were below IoU 0.5."""
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [2, 3]], boxes[:, [0, 3]]], 1)
    pts = np.concatenate([corners.reshape(-1, 2), np.ones((corners.shape[0] * 4, 1))], 1) @ H.T
    pts = (pts[:, :2] / pts[:, 2:3]).reshape(-1, 4, 2)
    return np.concatenate([pts.min(1), pts.max(1)], 1)


def _output_labels(boxes: np.ndarray, H: np.ndarray, canvas: tuple[int, int], frame: tuple[int, int],
                   min_visible: float) -> np.ndarray:
    """The labels in the output frame of canvas boxes (N, 4) warped by ``H`` (canvas -> output).

    A box is cut to the canvas first: rows start above its top and left of its left edge and run
    past the others, and only what lies on the canvas is painted; where the warp brings a canvas
    edge into the picture (the far end of an aisle view) the rest would be a label over the
    empty fill. The visible share (the label's area inside the canvas and the frame over the
    whole warped box's) must reach ``min_visible``, and a label at least 2 px each way.
    """
    cw, ch = canvas
    width, height = frame
    whole = _warped_boxes(boxes, H)
    area = np.maximum((whole[:, 2] - whole[:, 0]) * (whole[:, 3] - whole[:, 1]), 1e-6)
    on = np.clip(boxes, 0, [cw, ch, cw, ch])
    painted = (on[:, 2] > on[:, 0]) & (on[:, 3] > on[:, 1])
    out = _warped_boxes(on, H)
    clipped = np.clip(out, 0, [width, height, width, height])
    bw, bh = clipped[:, 2] - clipped[:, 0], clipped[:, 3] - clipped[:, 1]
    keep = painted & (bw * bh / area >= min_visible) & (bw >= 2) & (bh >= 2)
    return clipped[keep].astype(np.float32)


def _homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """3x3 homography mapping the 4 ``src`` points onto the 4 ``dst`` points."""
    a = []
    for (x, y), (u, v) in zip(src, dst):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y, -u])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y, -v])
    _, _, vt = np.linalg.svd(np.asarray(a))
    return vt[-1].reshape(3, 3) / vt[-1, -1]


def training_sample(
    rng: np.random.Generator,
    *,
    size: int = 640,
    tile: int = 1280,
    scale_range: tuple[float, float] = (0.25, 2.0),
) -> tuple[np.ndarray, np.ndarray]:
    """One training image as a ``tile`` px crop of a phone photo looks after resizing to ``size``.

    The product scale is that of a SKU-110K photo (:data:`PHOTO_PRODUCT_HEIGHT`) times
    ``size / tile``, jittered log-uniformly by ``scale_range`` (close-ups and panoramas).
    Returns ``(image uint8 (size, size, 3), boxes float32 (N, 4))``.
    """
    base = PHOTO_PRODUCT_HEIGHT * size / tile
    s = float(np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))))
    # within what render_shelf draws (4 px to 4 times the side): a small ``size`` for a large
    # tile's products drew over that now and then, and the draw failed (an outside review:
    # `adapt --size 64` stopped at the same step every time, and --resume with it)
    return render_shelf(rng, width=size, height=size, product_height=min(max(base * s, 4.0), 4.0 * size))


#: Product height jitter of :func:`write_dataset`: each image's products are ``product_height``
#: times a factor drawn log-uniformly from this range.
DATASET_JITTER = (0.7, 1.4)
_DATASET_IMAGE = re.compile(r"^shelf_\d+_\d{4,}\.jpg$")
#: temporaries of write_dataset's own writes (``.tmp`` those of versions before 2026-12-06: in a
#: dataset folder every such name is the writer's)
_TEMPORARY = re.compile(r"^\..+(" + re.escape(TMP_SUFFIX) + r"|\.tmp)(\.old)?$")


def check_dataset_args(n: int, seed: int, width: int, height: int, product_height: float, *,
                       as_options: bool = False) -> None:
    """Refuse, before anything is written, arguments on which some image of a :func:`write_dataset`
    set would fail (:class:`InvalidInputError`). ``as_options`` names them as the command-line
    options of ``scripts/make_shelves.py`` (``--product-height``) instead of as arguments."""
    def name(arg: str) -> str:
        return "--" + arg.replace("_", "-") if as_options else arg

    if n < 1:
        raise InvalidInputError(f"{name('n')} {n}: must be at least 1")
    if seed < 0:
        raise InvalidInputError(f"{name('seed')} {seed}: must be 0 or more")
    if width < 16 or height < 16:
        raise InvalidInputError(f"{name('width')}/{name('height')}: images must be at least 16x16 px, "
                                f"got {width}x{height}")
    lo, hi = DATASET_JITTER
    top = 4 * max(width, height)  # render_shelf's range, which every jittered value must meet
    if not (math.isfinite(product_height) and product_height * lo >= 4.0 and product_height * hi <= top):
        raise InvalidInputError(
            f"{name('product_height')} {product_height:g}: out of range; with the x{lo}..x{hi} jitter it must lie "
            f"in [{4.0 / lo:.4g}, {top / hi:.4g}] for {width}x{height} images")


def _dataset_leftovers(out: Path) -> list[Path] | None:
    """The files of an earlier :func:`write_dataset` set in ``out`` (its CSV, images and
    temporaries), or None when ``out`` holds anything else (then it is not ours to replace)."""
    found: list[Path] = []
    for e in out.iterdir():
        if e.name == "annotations.csv" and e.is_file() or _TEMPORARY.match(e.name) and e.is_file():
            found.append(e)
        elif e.name == "images" and e.is_dir():
            for f in e.iterdir():
                if not f.is_file() or not (_DATASET_IMAGE.match(f.name) or _TEMPORARY.match(f.name)):
                    return None
                found.append(f)
        else:
            return None
    return found


def write_dataset(out: str | Path, *, n: int, seed: int, width: int = 2448, height: int = 3264,
                  product_height: float = PHOTO_PRODUCT_HEIGHT) -> Path:
    """Write ``n`` full-size shelf photos and ``annotations.csv`` (SKU-110K rows) under ``out``.

    Image ``i`` is drawn from ``np.random.default_rng([seed, i])``, so sets are reproducible and
    any image can be regenerated alone. Orientation alternates portrait/landscape. Returns the
    CSV path.

    The arguments are checked before anything is written (:class:`InvalidInputError`), the
    jittered product heights included. ``out`` must be missing, empty, or hold an earlier set of
    this function (``annotations.csv``, ``images/shelf_*.jpg`` and nothing else), which is
    replaced: its CSV is removed first, then every image is written atomically, images of the old
    set that the new one lacks are removed, and the CSV is written last, atomically. A set whose
    folder has no ``annotations.csv`` is therefore incomplete (an interrupted run), and a folder
    holding other files is refused rather than mixed with.
    """
    check_dataset_args(n, seed, width, height, product_height)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out}: exists and is not a folder")
    old = _dataset_leftovers(out) if out.is_dir() else []
    if old is None:
        raise InvalidInputError(f"{out}: holds files that are not a shelf dataset written by write_dataset; "
                                "give an empty or new folder")
    csv_path = out / "annotations.csv"
    (out / "images").mkdir(parents=True, exist_ok=True)
    if csv_path.exists():  # from here on the folder does not claim to be a complete set
        csv_path.unlink()
    buf = io.StringIO()
    wr = csv.writer(buf)
    wr.writerow(["image_name", "x1", "y1", "x2", "y2", "class", "image_width", "image_height"])
    names = set()
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        w, h = (width, height) if i % 2 == 0 else (height, width)
        ph = product_height * float(np.exp(rng.uniform(np.log(DATASET_JITTER[0]), np.log(DATASET_JITTER[1]))))
        img, boxes = render_shelf(rng, width=w, height=h, product_height=ph)
        name = f"shelf_{seed}_{i:04d}.jpg"
        jpg = io.BytesIO()
        Image.fromarray(img).save(jpg, "JPEG", quality=92)
        atomic_write(out / "images" / name, jpg.getvalue())
        names.add(name)
        for b in boxes:
            wr.writerow([name, *(f"{v:.1f}" for v in b), "product", w, h])
    for f in old:
        if f != csv_path and f.name not in names and f.exists():
            f.unlink()
    atomic_write(csv_path, buf.getvalue())
    return csv_path
