"""Training samples for the built-in model: generated shelves, crops of real photos, augmentation.

Every sample is a pure function of its seed and index, so a run can be repeated, resumed, and
split across data workers without changing what it sees.

* :class:`ShelfStream`: an endless map-style dataset of generated shelves
  (:func:`densedet_tile.synth.shelves.training_sample`) with their dense targets.
* :class:`SyntheticPool`: the same samples, kept in memory once drawn, for runs that reuse a
  bounded set of generated shelves (drawing one costs about as much as a training step on a CPU).
* :class:`PhotoCrops`: random crops of the user's photos at the scale the engine shows them to
  the model, with pseudo-labels as targets and uncertain boxes as ignore regions.
* :func:`ignore_map`, :func:`augment`, :func:`stack_samples`.

A sample is a :class:`Sample`: ``image`` uint8 (S, S, 3) and the four target maps of
:func:`~densedet_tile.detector.builtin.build_targets` plus :func:`ignore_map` at the model stride.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import _torch  # noqa: F401  (first: without torch, one line naming the extra)
import torch

from ..detector.builtin import build_targets
from ..errors import InvalidInputError
from ..synth.shelves import training_sample
from ..tiler.resize import resize_to

__all__ = [
    "Sample",
    "ShelfStream",
    "SyntheticPool",
    "PhotoCrops",
    "ignore_map",
    "make_sample",
    "stack_samples",
    "augment",
    "crop_boxes",
    "tile_ratio",
]


def tile_ratio(config: dict) -> float:
    """Photo pixels per model-input pixel at the engine's default tile (1280 px tile -> 640 input)."""
    return 1280 / int(config["input_size"])


@dataclass(frozen=True)
class Sample:
    """One training image and its dense targets (numpy, see :func:`make_sample`)."""

    image: np.ndarray  # uint8 (S, S, 3)
    heat: np.ndarray  # float32 (1, g, g)
    box_t: np.ndarray  # float32 (4, g, g)
    weight: np.ndarray  # float32 (1, g, g)
    ignore: np.ndarray  # float32 (1, g, g), 1 where the heatmap loss is skipped
    boxes: int  # number of labelled boxes


def ignore_map(boxes: np.ndarray, size: int, stride: int) -> np.ndarray:
    """float32 (1, g, g), ``g = size // stride``: 1 at cells whose centre lies inside any of the
    (N, 4) xyxy ``boxes`` (input pixels), else 0. A box too small to hold a cell centre still
    marks the cell under its own centre."""
    g = size // stride
    out = np.zeros((g, g), np.float32)
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    centres = (np.arange(g) + 0.5) * stride
    for x0, y0, x1, y1 in b:
        cols = np.flatnonzero((centres >= x0) & (centres <= x1))
        rows = np.flatnonzero((centres >= y0) & (centres <= y1))
        if cols.size and rows.size:
            out[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = 1.0
        else:
            cx = min(max(int((x0 + x1) / 2 // stride), 0), g - 1)
            cy = min(max(int((y0 + y1) / 2 // stride), 0), g - 1)
            if x1 > 0 and y1 > 0 and x0 < size and y0 < size:
                out[cy, cx] = 1.0
    return out[None]


def make_sample(image: np.ndarray, boxes: np.ndarray, ignore: np.ndarray | None, stride: int) -> Sample:
    """The :class:`Sample` of a square uint8 ``image`` with labelled ``boxes`` and ``ignore`` boxes."""
    size = image.shape[0]
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    heat, box_t, weight = build_targets(boxes, size, stride)
    ign = ignore_map(np.zeros((0, 4)) if ignore is None else ignore, size, stride)
    return Sample(np.ascontiguousarray(image), heat, box_t, weight, ign, int(len(boxes)))


class ShelfStream(torch.utils.data.Dataset):
    """Map-style view of an endless stream of generated shelves: item ``i`` is sample
    ``start + i``, a pure function of ``(seed, start + i)``. Items are ``(image uint8 (S, S, 3),
    heat, box_t, weight, number of boxes)`` tensors, products at the scale of a
    ``tile_ratio * size`` px photo tile resized to ``size``. ``start`` lets a resumed run pick the
    stream up where it stopped instead of drawing the same samples again."""

    def __init__(self, *, seed: int, size: int, stride: int, tile_ratio: float, length: int = 10**9,
                 start: int = 0) -> None:
        if start < 0:
            raise InvalidInputError(f"start must be >= 0, got {start}")
        self.seed, self.size, self.stride, self.tile_ratio, self.length = seed, size, stride, tile_ratio, length
        self.start = int(start)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        k = self.start + int(i)
        tile = int(round(self.size * self.tile_ratio))
        for attempt in range(4):
            # a sample the generator fails on (none seen in 2 000 drawn, but a run draws 40 000)
            # is drawn again from a seed of its own: one bad draw must not end a GPU run early
            rng = np.random.default_rng([self.seed, k] if attempt == 0 else [self.seed, k, attempt])
            try:
                img, boxes = training_sample(rng, size=self.size, tile=tile)
                break
            except Exception as exc:
                if attempt == 3:
                    raise
                print(f"sample {k} (seed {self.seed}, try {attempt + 1}) failed: {type(exc).__name__}: {exc}; "
                      "drawing another", file=sys.stderr, flush=True)
        heat, box_t, weight = build_targets(boxes, self.size, self.stride)
        return (torch.from_numpy(np.array(img)), torch.from_numpy(heat), torch.from_numpy(box_t),
                torch.from_numpy(weight), len(boxes))


class SyntheticPool:
    """Generated shelves ``0 .. pool-1`` of seed ``seed``, each drawn once when first asked for.

    ``get(i)`` returns sample ``i % pool`` as a :class:`Sample` (no ignore regions). Sample ``k``
    is ``training_sample(default_rng([seed, k]))``, the same image :class:`ShelfStream` gives.
    """

    def __init__(self, *, seed: int, size: int, stride: int, tile_ratio: float, pool: int) -> None:
        if pool < 1:
            raise InvalidInputError(f"pool must be >= 1, got {pool}")
        self.seed, self.size, self.stride, self.tile_ratio, self.pool = seed, size, stride, tile_ratio, pool
        self._cache: dict[int, Sample] = {}

    def get(self, i: int) -> Sample:
        k = int(i) % self.pool
        s = self._cache.get(k)
        if s is None:
            rng = np.random.default_rng([self.seed, k])
            img, boxes = training_sample(rng, size=self.size, tile=int(round(self.size * self.tile_ratio)))
            s = self._cache[k] = make_sample(np.asarray(img), boxes, None, self.stride)
        return s


def crop_boxes(boxes: np.ndarray, x0: float, y0: float, zoom: float, size: int,
               min_visible: float = 0.5, min_side: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Map (N, 4) boxes into a crop: ``(b - (x0, y0)) * zoom``, clipped to ``[0, size]``.

    Returns ``(kept, cut)``: boxes with at least ``min_visible`` of their area inside the crop
    and both sides at least ``min_side`` px (clipped), and the clipped remains of the others that
    still show inside (to be ignored rather than taught as background).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    if not len(b):
        z = np.zeros((0, 4), np.float32)
        return z, z
    m = (b - [x0, y0, x0, y0]) * zoom
    c = np.clip(m, 0, size)
    area = np.maximum(m[:, 2] - m[:, 0], 0) * np.maximum(m[:, 3] - m[:, 1], 0)
    cw, ch = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    vis = np.where(area > 0, cw * ch / np.maximum(area, 1e-9), 0.0)
    inside = (cw > 0) & (ch > 0)
    keep = inside & (vis >= min_visible) & (cw >= min_side) & (ch >= min_side)
    return c[keep].astype(np.float32), c[inside & ~keep].astype(np.float32)


#: The longest side a JPEG can hold (libjpeg's limit).
JPEG_MAX_SIDE = 65_500


class PhotoCrops:
    """Square training crops of the user's photos with their pseudo-labels.

    Each photo is added once with :meth:`add` as an upright RGB array, resized to the scale at
    which the engine shows it to the model (``input_size / min(tile, longer side)``: a 1280 px
    tile becomes 640 px) and kept JPEG-encoded (quality 95) so thousands of photos fit in memory
    (PNG past the 65 500 px a JPEG side can hold: a panorama at a small tile).
    :meth:`set_labels` gives a photo's pseudo-labels and ignore boxes in photo pixels.
    :meth:`sample` draws crop ``rng``: a photo, a zoom (log-uniform in ``zoom_range``) and a
    position, all from ``rng``.
    """

    def __init__(self, *, size: int, stride: int, input_size: int, tile: int,
                 zoom_range: tuple[float, float] = (0.8, 1.25)) -> None:
        self.size, self.stride, self.input_size, self.tile = size, stride, input_size, tile
        self.zoom_range = zoom_range
        self._jpeg: list[bytes] = []
        self._scale: list[float] = []
        self._shape: list[tuple[int, int]] = []
        self._labels: list[np.ndarray] = []
        self._ignore: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self._jpeg)

    def model_scale(self, width: int, height: int) -> float:
        """Model-input pixels per photo pixel for a photo of this size (as the engine resizes)."""
        return self.input_size / min(self.tile, max(width, height))

    def add(self, image: np.ndarray, scale: float | None = None) -> int:
        """Add an upright uint8 RGB photo; returns its index. ``scale``: model-input pixels per
        photo pixel where the engine serves this photo at a scale of its own (a photo rule),
        else :meth:`model_scale`."""
        from PIL import Image

        h, w = image.shape[:2]
        s = self.model_scale(w, h) if scale is None else float(scale)
        small, _ = resize_to(image, max(1, round(max(h, w) * s)))
        buf = io.BytesIO()
        if max(small.shape[:2]) <= JPEG_MAX_SIDE:
            Image.fromarray(small).save(buf, "JPEG", quality=95)
        else:  # a panorama wider than JPEG allows, even at model scale: kept as PNG (lossless)
            Image.fromarray(small).save(buf, "PNG", compress_level=1)
        self._jpeg.append(buf.getvalue())
        self._scale.append(small.shape[1] / w)
        self._shape.append(small.shape[:2])
        self._labels.append(np.zeros((0, 4), np.float32))
        self._ignore.append(np.zeros((0, 4), np.float32))
        return len(self._jpeg) - 1

    def set_labels(self, index: int, boxes: np.ndarray, ignore: np.ndarray) -> None:
        """Pseudo-labels and ignore boxes of photo ``index``, (N, 4) xyxy in photo pixels."""
        self._labels[index] = np.asarray(boxes, np.float32).reshape(-1, 4)
        self._ignore[index] = np.asarray(ignore, np.float32).reshape(-1, 4)

    def _decode(self, index: int):
        from PIL import Image

        with Image.open(io.BytesIO(self._jpeg[index])) as im:
            return im.convert("RGB")

    def sample(self, rng: np.random.Generator, k: int | None = None) -> Sample:
        """One crop as a :class:`Sample` (pads with the mean grey where the photo is too small),
        of photo ``k`` (its index in the order added), or of one ``rng`` draws."""
        if not self._jpeg:
            raise InvalidInputError("no photos to crop")
        from PIL import Image

        k = int(rng.integers(len(self._jpeg))) if k is None else int(k)
        if not 0 <= k < len(self._jpeg):
            raise InvalidInputError(f"no photo {k} to crop (there are {len(self._jpeg)})")
        lo, hi = self.zoom_range
        zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        h, w = self._shape[k]
        side = self.size / zoom  # crop side in cached (model-scale) pixels
        x0 = float(rng.uniform(0, w - side)) if w > side else (w - side) / 2
        y0 = float(rng.uniform(0, h - side)) if h > side else (h - side) / 2
        img = self._decode(k)
        # output pixel (u, v) samples photo pixel (x0 + u / zoom, y0 + v / zoom); outside is the mean grey,
        # zero after normalising, like the padding at inference
        canvas = np.asarray(img.transform((self.size, self.size), Image.AFFINE,
                                          (1 / zoom, 0, x0, 0, 1 / zoom, y0), resample=Image.BILINEAR,
                                          fillcolor=(124, 116, 104)))
        s = self._scale[k]
        kept, cut = crop_boxes(self._labels[k] * s, x0, y0, zoom, self.size)
        ign_kept, ign_cut = crop_boxes(self._ignore[k] * s, x0, y0, zoom, self.size, min_visible=0.0,
                                       min_side=0.0)
        ignore = np.concatenate([cut, ign_kept, ign_cut])
        return make_sample(canvas, kept, ignore, self.stride)


def stack_samples(samples: Sequence[Sample]) -> tuple[torch.Tensor, ...]:
    """``(images uint8 (B, S, S, 3), heat, box_t, weight, ignore)`` tensors of a batch."""
    return (
        torch.from_numpy(np.stack([s.image for s in samples])),
        torch.from_numpy(np.stack([s.heat for s in samples])),
        torch.from_numpy(np.stack([s.box_t for s in samples])),
        torch.from_numpy(np.stack([s.weight for s in samples])),
        torch.from_numpy(np.stack([s.ignore for s in samples])),
    )


def augment(img: torch.Tensor, heat: torch.Tensor, box_t: torch.Tensor, weight: torch.Tensor,
            gen: torch.Generator, ignore: torch.Tensor | None = None):
    """Batch augmentation: per-sample horizontal flip, channel shuffle, grey, brightness/contrast.

    ``img`` float (B, 3, S, S) in [0, 255]; the target maps follow the flips (``box_t`` holds
    xyxy boxes, mirrored too). Random numbers come from ``gen`` only, in a fixed order. Returns
    augmented copies ``(img, heat, box_t, weight, ignore)`` (inputs untouched; ``ignore`` stays
    None when not given).
    """
    b, _, s, _ = img.shape
    dev = img.device
    flip = torch.rand(b, generator=gen).to(dev) < 0.5
    fl = flip.view(b, 1, 1, 1)
    img = torch.where(fl, img.flip(-1), img)
    heat = torch.where(fl, heat.flip(-1), heat)
    weight = torch.where(fl, weight.flip(-1), weight)
    if ignore is not None:
        ignore = torch.where(fl, ignore.flip(-1), ignore)
    fb = box_t.flip(-1)
    fb = torch.stack([s - fb[:, 2], fb[:, 1], s - fb[:, 0], fb[:, 3]], 1)
    box_t = torch.where(fl, fb, box_t)
    perm = torch.stack([torch.randperm(3, generator=gen) for _ in range(b)]).to(dev)
    shuffle = (torch.rand(b, generator=gen) < 0.5).to(dev)
    perm = torch.where(shuffle[:, None], perm, torch.arange(3, device=dev).expand(b, 3))
    img = torch.gather(img, 1, perm.view(b, 3, 1, 1).expand_as(img))
    gray = (torch.rand(b, generator=gen) < 0.05).to(dev)
    img = torch.where(gray.view(b, 1, 1, 1), img.mean(1, keepdim=True).expand_as(img), img)
    a = (torch.rand(b, 1, 1, 1, generator=gen) * 0.6 + 0.7).to(dev)
    c = ((torch.rand(b, 1, 1, 1, generator=gen) - 0.5) * 50).to(dev)
    img = (img * a + c).clamp(0, 255)
    return img, heat, box_t, weight, ignore
