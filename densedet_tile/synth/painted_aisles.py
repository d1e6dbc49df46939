"""Painted aisles: exact ground truth and a pixel-reading fake detector for merge tests.

:func:`make_painted_aisle` paints a shelf panorama of tightly packed products, each a solid
rectangle whose RGB colour encodes its id (``id + 1`` as a 24-bit number, big-endian
``R, G, B``; background 0). :class:`PaintedDetector` is a real :class:`~densedet_tile.Detector`:
it reads only the tile pixels it is given, decodes the ids and reports every visible
product's bounding box in tile-local pixels -- truncated by the tile edge exactly like a
detector trained on random crops would -- with a little coordinate noise. Run through the
real engine, the merge must turn those per-tile views back into the painted boxes.

Boxes are pixel-edge xyxy: a product covering columns ``x .. x + w - 1`` has ``x1 = x`` and
``x2 = x + w``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..errors import InvalidInputError
from ..types import Detections

__all__ = ["make_painted_aisle", "PaintedDetector", "encode_ids", "decode_ids", "seam_report"]

_MAX_ID = (1 << 24) - 2


def encode_ids(ids: np.ndarray) -> np.ndarray:
    """RGB uint8 colours (..., 3) painting product ``ids`` (0-based): ``id + 1`` as 24-bit."""
    v = np.asarray(ids, dtype=np.int64) + 1
    if v.size and (v.min() < 1 or v.max() > _MAX_ID + 1):
        raise InvalidInputError(f"painted product ids must be in [0, {_MAX_ID}]")
    return np.stack([(v >> 16) & 255, (v >> 8) & 255, v & 255], axis=-1).astype(np.uint8)


def decode_ids(image: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_ids` over an HxWx3 uint8 image: int32 (H, W), 0 = background,
    otherwise ``id + 1``."""
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InvalidInputError(f"painted image must be HxWx3 uint8, got {img.shape} {img.dtype}")
    out = img[..., 0].astype(np.int32) << 16
    out |= img[..., 1].astype(np.int32) << 8
    out |= img[..., 2]
    return out


def make_painted_aisle(
    width: int,
    height: int,
    *,
    n_products: int,
    seed: int,
    large_fraction: float = 0.1,
    small_size: tuple[int, int] = (40, 250),
    large_size: tuple[int, int] = (300, 700),
    max_gap: int = 2,
    stack_fraction: float = 0.5,
) -> tuple[np.ndarray, Detections]:
    """Paint a ``width`` x ``height`` aisle holding exactly ``n_products`` products.

    Shelf rows run the full width, separated by a thin background gap (the shelf edge);
    products stand on the bottom of their row in runs of 3-10 facings that touch or nearly
    touch (0..``max_gap`` px apart), the leftover width of a row spread between the runs.
    About ``large_fraction`` of the slots hold a large product (sides drawn from
    ``large_size``, meant to exceed a tile overlap), the others small products (sides from
    ``small_size``) stacked on one another while they fit, each further level with
    probability ``stack_fraction``, touching or nearly touching vertically.

    Returns ``(image, gt)``: ``image`` HxWx3 uint8 RGB, product ``k`` painted in the colour
    :func:`encode_ids` gives ``k``; ``gt`` :class:`Detections` with ``gt.xyxy[k]`` the exact
    box of product ``k`` (pixel edges), score 1 and label 0. Raises
    :class:`~densedet_tile.errors.InvalidInputError` when the products cannot fit.
    """
    for name, v in (("width", width), ("height", height), ("n_products", n_products)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise InvalidInputError(f"make_painted_aisle: {name} must be a positive integer, got {v!r}")
    if n_products > _MAX_ID:
        raise InvalidInputError(f"make_painted_aisle: at most {_MAX_ID} products, got {n_products}")
    if not (0.0 <= large_fraction <= 1.0) or not (0.0 <= stack_fraction <= 1.0):
        raise InvalidInputError("make_painted_aisle: large_fraction and stack_fraction must be in [0, 1]")
    smin, smax = int(small_size[0]), int(small_size[1])
    lmin, lmax = int(large_size[0]), int(large_size[1])
    if not (1 <= smin <= smax and 1 <= lmin <= lmax):
        raise InvalidInputError(f"make_painted_aisle: bad size ranges {small_size}, {large_size}")
    rng = np.random.default_rng(seed)
    margin, shelf_gap = 4, 8
    # Shelf rows top to bottom, tall enough for a large product where the image allows it.
    rows: list[tuple[int, int]] = []
    y = margin
    while True:
        avail = height - margin - y
        if avail < smin:
            break
        rh = int(rng.integers(max(smax, lmin) + 10, lmax + 20 + 1))
        rh = min(rh, avail)
        rows.append((y, y + rh))
        y += rh + shelf_gap
    if not rows:
        raise InvalidInputError(
            f"make_painted_aisle: a {width}x{height} image is too small for products of {smin}+ px"
        )
    quota = np.full(len(rows), n_products // len(rows))
    quota[: n_products % len(rows)] += 1
    boxes: list[np.ndarray] = []
    usable = width - 2 * margin
    for (r0, r1), q in zip(rows, quota):
        rh = r1 - r0
        slots: list[list[tuple[int, int, int, int]]] = []  # per slot: (x-rel, y1, w, h) items
        widths: list[int] = []
        count = 0
        while count < q:
            big = rng.random() < large_fraction and rh >= lmin
            if big:
                w = int(rng.integers(lmin, lmax + 1))
                h = int(rng.integers(lmin, min(lmax, rh) + 1))
                items = [(r1 - h, h)]
            else:
                w = int(rng.integers(smin, smax + 1))
                h = int(rng.integers(smin, min(smax, rh) + 1))
                items = [(r1 - h, h)]
                top = r1 - h
                # Stack more products on top while they fit (touching or nearly).
                while q - count - len(items) > 0 and rng.random() < stack_fraction:
                    h2 = int(rng.integers(smin, smax + 1))
                    gap = int(rng.integers(0, max_gap + 1))
                    if top - gap - h2 < r0:
                        break
                    top -= gap + h2
                    items.append((top, h2))
            slots.append([(0, y1, w, hh) for y1, hh in items])
            widths.append(w)
            count += len(items)
        # Runs of touching facings; leftover width spread between runs.
        ns = len(slots)
        within = rng.integers(0, max_gap + 1, size=ns)
        run_starts = np.zeros(ns, bool)
        pos = 0
        while pos < ns:
            run_starts[pos] = True
            pos += int(rng.integers(3, 11))
        within[run_starts] = 0
        need = int(sum(widths) + within.sum())
        if need > usable:
            raise InvalidInputError(
                f"make_painted_aisle: {n_products} products do not fit in {width}x{height} "
                f"(a shelf row needs {need} px of {usable}); lower n_products or enlarge the image"
            )
        nruns = int(run_starts.sum())
        spare = usable - need
        cuts = np.sort(rng.integers(0, spare + 1, size=nruns))
        extra = np.diff(np.concatenate([[0], cuts]))  # gap before each run
        gaps = within.copy()
        gaps[run_starts] = extra
        x = margin
        for k in range(ns):
            x += int(gaps[k])
            for _, y1, w, h in slots[k]:
                boxes.append(np.array([x, y1, x + w, y1 + h]))
            x += widths[k]
    xyxy = np.stack(boxes).astype(np.int64)
    image = np.zeros((height, width, 3), np.uint8)
    colours = encode_ids(np.arange(xyxy.shape[0]))
    for k, (x1, y1, x2, y2) in enumerate(xyxy):
        image[y1:y2, x1:x2] = colours[k]
    gt = Detections(xyxy.astype(np.float32), np.ones(len(xyxy), np.float32), np.zeros(len(xyxy), np.int64))
    return image, gt


class PaintedDetector:
    """A :class:`~densedet_tile.Detector` that reads painted product ids from tile pixels.

    For every product with at least ``min_visible_px`` pixels in a tile it reports the
    bounding box of those pixels in tile-local coordinates (so a product crossing the tile
    edge comes out truncated there), each coordinate moved by uniform noise in
    ``[-jitter, jitter]`` px and clipped to the tile. Scores mimic a detector that is less
    sure of cut-off objects: a per-product base in [0.8, 1.0) (from its id), times 0.7 when
    the box touches the tile border. Labels are 0. ``input_size`` is None (native tiles).
    The noise is drawn from ``seed`` and the tile content, so equal tiles give equal output.
    """

    input_size: int | None = None

    def __init__(self, jitter: float = 1.0, seed: int = 0, min_visible_px: int = 1) -> None:
        if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not (0 <= jitter < 1e3):
            raise InvalidInputError(f"PaintedDetector: jitter must be >= 0 pixels, got {jitter!r}")
        if isinstance(min_visible_px, bool) or not isinstance(min_visible_px, (int, np.integer)) or min_visible_px < 1:
            raise InvalidInputError(f"PaintedDetector: min_visible_px must be an integer >= 1, got {min_visible_px!r}")
        self.jitter = float(jitter)
        self.seed = int(seed)
        self.min_visible_px = int(min_visible_px)

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        """One tile-local :class:`Detections` per HxWx3 uint8 RGB tile."""
        return [self._one(t) for t in tiles]

    def _one(self, tile: np.ndarray) -> Detections:
        code = decode_ids(tile)
        h, w = code.shape
        # Horizontal runs of equal id: every row starts a run at column 0.
        change = np.ones((h, w), bool)
        np.not_equal(code[:, 1:], code[:, :-1], out=change[:, 1:])
        flat = np.flatnonzero(change)
        ends = np.append(flat[1:], h * w)
        rows = flat // w
        xs = flat - rows * w
        xe = ends - rows * w
        xe = np.where(ends // w > rows, w, xe)  # the last run of a row ends at the border
        ids = code.reshape(-1)[flat]
        fg = ids > 0
        if not fg.any():
            return Detections.empty()
        ids, rows, xs, xe = ids[fg], rows[fg], xs[fg], xe[fg]
        uid, inv = np.unique(ids, return_inverse=True)
        m = uid.size
        x1 = np.full(m, w, np.int64)
        y1 = np.full(m, h, np.int64)
        x2 = np.zeros(m, np.int64)
        y2 = np.zeros(m, np.int64)
        np.minimum.at(x1, inv, xs)
        np.maximum.at(x2, inv, xe)
        np.minimum.at(y1, inv, rows)
        np.maximum.at(y2, inv, rows + 1)
        npx = np.bincount(inv, weights=(xe - xs), minlength=m)
        ok = npx >= self.min_visible_px
        uid, x1, y1, x2, y2 = uid[ok], x1[ok], y1[ok], x2[ok], y2[ok]
        box = np.stack([x1, y1, x2, y2], axis=1).astype(np.float64)
        touches = (x1 == 0) | (y1 == 0) | (x2 == w) | (y2 == h)
        base = 0.8 + 0.2 * (((uid.astype(np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 16)) / float(1 << 16))
        scores = base * np.where(touches, 0.7, 1.0)
        if self.jitter > 0 and box.shape[0]:
            rng = np.random.default_rng([self.seed, h, w, box.shape[0], int(uid.sum() % (1 << 31))])
            box += rng.uniform(-self.jitter, self.jitter, size=box.shape)
            np.clip(box[:, 0::2], 0, w, out=box[:, 0::2])
            np.clip(box[:, 1::2], 0, h, out=box[:, 1::2])
            box[:, 0:2], box[:, 2:4] = np.minimum(box[:, 0:2], box[:, 2:4]), np.maximum(box[:, 0:2], box[:, 2:4])
        return Detections(box.astype(np.float32), scores.astype(np.float32), np.zeros(box.shape[0], np.int64))


def seam_report(pred: Detections, gt: Detections, *, large_side: float, iou: float = 0.9) -> dict:
    """Score merged boxes against painted ground truth (all one class; GT boxes disjoint).

    Predictions are matched one to one to GT boxes at IoU >= 0.5, best IoU first. Returns:

    * ``recall_small`` / ``recall_large``: fraction of GT boxes whose longer side is below /
      at least ``large_side`` px (the tile overlap) matched with IoU >= ``iou``;
    * ``duplicates``: unmatched predictions with IoU >= 0.5 to a GT box matched by another
      prediction (a second box on one product);
    * ``fragments``: other unmatched predictions overlapping a GT box with IoU > 0.1 or lying
      at least half inside one (a piece of a product);
    * ``merged``: predictions covering at least half of each of two or more GT boxes (two
      neighbours fused into one inflated box);
    * ``false_positives``: unmatched predictions touching no product;
    * ``dup_frag_rate``: (duplicates + fragments) / number of GT boxes;
    * counts ``n_gt``, ``n_pred``, ``n_small``, ``n_large``.
    """
    from ..merge.boxes import box_area, candidate_pairs, pair_iou

    g = gt.xyxy.astype(np.float64)
    p = pred.xyxy.astype(np.float64)
    ng, npr = g.shape[0], p.shape[0]
    both = np.concatenate([g, p])
    i, j = candidate_pairs(both)  # i < j: a GT-prediction pair has i < ng <= j
    cross = (i < ng) & (j >= ng)
    gi, pj = i[cross], j[cross] - ng
    ious = pair_iou(both, gi, pj + ng)
    iw = np.minimum(g[gi, 2], p[pj, 2]) - np.maximum(g[gi, 0], p[pj, 0])
    ih = np.minimum(g[gi, 3], p[pj, 3]) - np.maximum(g[gi, 1], p[pj, 1])
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    parea = box_area(p)[pj]
    garea = box_area(g)[gi]
    # Greedy one-to-one matching at IoU >= 0.5 (at most one such GT per prediction anyway,
    # as GT boxes do not overlap; the greedy order settles several predictions per GT).
    cand = np.flatnonzero(ious >= 0.5)
    cand = cand[np.lexsort((pj[cand], gi[cand], -ious[cand]))]
    g_match = np.full(ng, -1, np.int64)
    g_iou = np.zeros(ng)
    p_matched = np.zeros(npr, bool)
    # Each prediction has at most one GT at IoU >= 0.5, so the first per GT wins.
    firsts = np.ones(cand.size, bool)
    gsorted = gi[cand]
    order = np.argsort(gsorted, kind="stable")
    firsts_sorted = np.ones(cand.size, bool)
    firsts_sorted[1:] = gsorted[order][1:] != gsorted[order][:-1]
    firsts[:] = False
    firsts[order[firsts_sorted]] = True
    win = cand[firsts]
    g_match[gi[win]] = pj[win]
    g_iou[gi[win]] = ious[win]
    p_matched[pj[win]] = True
    dup = np.zeros(npr, bool)
    lose = cand[~firsts]
    dup[pj[lose]] = True
    dup &= ~p_matched
    frag = np.zeros(npr, bool)
    piece = (ious > 0.1) | (inter >= 0.5 * np.maximum(parea, 1e-9))
    frag[pj[piece]] = True
    frag &= ~p_matched & ~dup
    covers = inter >= 0.5 * garea
    ncover = np.bincount(pj[covers], minlength=npr)
    merged = ncover >= 2
    touched = np.zeros(npr, bool)
    touched[pj[inter > 0]] = True
    side = np.maximum(g[:, 2] - g[:, 0], g[:, 3] - g[:, 1])
    small = side < large_side
    hit = g_iou >= iou
    n_small, n_large = int(small.sum()), int((~small).sum())
    return {
        "n_gt": ng,
        "n_pred": npr,
        "n_small": n_small,
        "n_large": n_large,
        "recall_small": float(hit[small].mean()) if n_small else float("nan"),
        "recall_large": float(hit[~small].mean()) if n_large else float("nan"),
        "duplicates": int(dup.sum()),
        "fragments": int(frag.sum()),
        "merged": int(merged.sum()),
        "false_positives": int((~p_matched & ~touched).sum()),
        "dup_frag_rate": float((dup.sum() + frag.sum()) / max(ng, 1)),
    }
