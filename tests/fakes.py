"""Small detectors for tests. Each is a real Detector: it looks at tile pixels only."""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Sequence

import numpy as np

from densedet_tile import Detections


class BlobDetector:
    """Reports the bounding box of all bright (> 127) pixels in a tile as one box, or nothing.

    Records the shapes it was given, so tests can check tiling and resizing.
    """

    name = "blob"

    def __init__(self, input_size: int | None = None, score: float = 0.9) -> None:
        self.input_size = input_size
        self.score = score
        self.seen: list[tuple[int, int]] = []
        self.calls: list[int] = []

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        self.calls.append(len(tiles))
        out = []
        for t in tiles:
            assert t.dtype == np.uint8 and t.ndim == 3 and t.shape[2] == 3
            self.seen.append(t.shape[:2])
            mask = t.max(axis=2) > 127
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            if rows.size == 0:
                out.append(Detections.empty())
                continue
            box = [[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]]
            out.append(Detections(np.array(box, np.float32), [self.score], [0]))
        return out


class NaNDetector:
    name = "nan"

    def predict(self, tiles):
        return [Detections(np.full((1, 4), np.nan, np.float32), [0.5], [0]) for _ in tiles]


class WrongLengthDetector:
    def predict(self, tiles):
        return [Detections.empty()]  # one result, whatever the batch


class NotDetectionsDetector:
    def predict(self, tiles):
        return [np.zeros((0, 5)) for _ in tiles]


def make_blob(input_size: int | None = None, product_size: float | None = None):
    """Factory for ``--detector tests/fakes.py:make_blob`` (``--detector-option product_size=N``:
    one that declares it, for ``--tile auto``)."""
    det = BlobDetector(input_size=input_size)
    if product_size is not None:
        det.product_size = float(product_size)
    return det


class WarningBlob(BlobDetector):
    """BlobDetector that logs a warning (on the package's logger) for every tile it sees with a
    blob, as the engine warns of an image's products being too small."""

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        import logging

        out = super().predict(tiles)
        for d in out:
            if len(d):
                logging.getLogger("densedet_tile.tests").warning("a blob %d px wide looked odd", int(d.xyxy[0, 2] - d.xyxy[0, 0]))
        return out


def make_warning_blob(input_size: int | None = None):
    """Factory for ``--detector tests/fakes.py:make_warning_blob``."""
    return WarningBlob(input_size=input_size)


def make_recording(input_size: int | None = None, precision: str | None = None, **options):
    """Factory that reports what its build received in ``info`` (it lands in the JSON ``model``)."""
    det = BlobDetector(input_size=input_size)
    det.info = {"precision": precision, **{f"option_{k}": v for k, v in options.items()}}
    return det


def make_nan():
    return NaNDetector()


class ColourDetector:
    """Two classes from pixels: the bounding box of the red pixels of a tile (class 0, ``red``,
    score 0.9) and that of its green pixels (class 1, ``green``, score 0.8); nothing where a
    colour is absent. Channels count as lit above 127."""

    name = "colours"
    class_names = ("red", "green")

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for t in tiles:
            boxes, scores, labels = [], [], []
            lit = t > 127
            for label, mask, score in ((0, lit[..., 0] & ~lit[..., 1], 0.9), (1, lit[..., 1] & ~lit[..., 0], 0.8)):
                rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
                if rows.size:
                    boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
                    scores.append(score)
                    labels.append(label)
            out.append(Detections(np.array(boxes, np.float32).reshape(-1, 4), scores, labels))
        return out


def make_colours():
    """Factory for ``--detector tests/fakes.py:make_colours`` (see :class:`ColourDetector`)."""
    return ColourDetector()


def colour_image(h: int, w: int, red: tuple[int, int, int, int], green: tuple[int, int, int, int]) -> np.ndarray:
    """A black RGB image with a red and a green rectangle (x1, y1, x2, y2; green drawn last)."""
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = red
    img[y1:y2, x1:x2, 0] = 255
    x1, y1, x2, y2 = green
    img[y1:y2, x1:x2] = (0, 255, 0)
    return img


def blob_image(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """A dark image with one white rectangle ``box`` = (x1, y1, x2, y2)."""
    img = np.full((h, w, 3), 20, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    return img


def assert_same_boxes(a: Detections, b: Detections, *, box_atol: float = 1e-2, score_atol: float = 1e-4) -> None:
    """Assert two Detections hold the same boxes in any row order (ties may come back swapped).

    Every box of ``a`` must have a box of ``b`` within ``box_atol`` px on each side and
    ``score_atol`` in score, and the pairing must be one to one.
    """
    assert len(a) == len(b), (len(a), len(b))
    if not len(a):
        return
    close = (np.abs(a.xyxy[:, None, :] - b.xyxy[None, :, :]).max(axis=2) <= box_atol) & (
        np.abs(a.scores[:, None] - b.scores[None, :]) <= score_atol
    )
    assert close.any(axis=1).all() and close.any(axis=0).all(), "some boxes have no counterpart"
    # one to one: greedily pair rows with the fewest candidates first
    free = np.ones(len(b), bool)
    for i in np.argsort(close.sum(axis=1), kind="stable"):
        cand = np.flatnonzero(close[i] & free)
        assert cand.size, f"box {a.xyxy[i].tolist()} pairs only with boxes already taken"
        free[cand[0]] = False


class CellDetector:
    """One box per ``cell`` x ``cell`` square of the tile (aligned to the tile's corner) whose
    mean grey level exceeds 30, scored ``mean / 255``: an image painted with squares of chosen
    grey levels gives boxes of chosen scores. Declares ``score_thr`` and ``score_floor`` when
    given; boxes below the floor are not returned, as a real detector's decoding would."""

    name = "cells"

    def __init__(self, cell: int = 32, score_thr: float | None = None, score_floor: float | None = None) -> None:
        self.cell = cell
        if score_thr is not None:
            self.score_thr = score_thr
        if score_floor is not None:
            self.score_floor = score_floor

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        floor = getattr(self, "score_floor", getattr(self, "score_thr", 0.0))
        out = []
        for t in tiles:
            c = self.cell
            gh, gw = t.shape[0] // c, t.shape[1] // c
            grey = t[: gh * c, : gw * c].mean(axis=2).reshape(gh, c, gw, c).mean(axis=(1, 3))
            ys, xs = np.nonzero(grey > 30)
            scores = (grey[ys, xs] / 255.0).astype(np.float32)
            boxes = np.stack([xs * c, ys * c, xs * c + c, ys * c + c], axis=1).astype(np.float32).reshape(-1, 4)
            keep = scores >= floor
            out.append(Detections(boxes[keep], scores[keep], np.zeros(int(keep.sum()), np.int64)))
        return out


def cell_image(levels: Sequence[float], cell: int = 32, cols: int = 8) -> np.ndarray:
    """A black image with one square per score in ``levels`` (grey ``round(score * 255)``),
    ``cols`` squares to a row with a black square between neighbours."""
    rows = (len(levels) + cols - 1) // cols
    img = np.zeros(((2 * rows + 1) * cell, (2 * cols + 1) * cell, 3), np.uint8)
    for k, s in enumerate(levels):
        r, q = divmod(k, cols)
        y, x = (2 * r + 1) * cell, (2 * q + 1) * cell
        img[y:y + cell, x:x + cell] = int(round(s * 255))
    return img


def make_cells(cell: int = 32, score_thr: float = 0.45, score_floor: float = 0.3):
    """Factory for ``--detector tests/fakes.py:make_cells`` (see :class:`CellDetector`)."""
    return CellDetector(cell=cell, score_thr=score_thr, score_floor=score_floor)


def run_cli(*args: object, cwd: "os.PathLike[str] | str", env: "dict[str, str] | None" = None
            ) -> "subprocess.CompletedProcess[str]":
    """``python -m densedet_tile ARGS`` in a child process run in ``cwd``, with this folder and
    ``cwd`` on its PYTHONPATH (so ``--detector module:factory`` finds fakes and helpers written
    there) and ``env`` added to its environment; output captured as text."""
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, **(env or {}),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parent), str(cwd),
                                           os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "densedet_tile", *map(str, args)], capture_output=True, text=True,
                          errors="backslashreplace", cwd=cwd, env=env, timeout=300)


def stale_temporaries(out: "os.PathLike[str] | str", names: Sequence[str]) -> tuple[list, object]:
    """Make ``out`` with the given temporaries of a killed run (written an hour ago) and a
    ``.notes.tmp`` of the user's; returns ``(temporaries, notes)`` as paths."""
    import time
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    old = [out / n for n in names]
    keep = out / ".notes.tmp"
    stale = time.time() - 3600
    for f in (*old, keep):
        f.write_text("x")
        os.utime(f, (stale, stale))
    return old, keep


def write_aisle_detections(path: "os.PathLike[str] | str", boxes: np.ndarray, width: int, height: int) -> None:
    """A detections JSON (as ``densedet-tile --out`` writes one) of a generated aisle's ``boxes``,
    for the audit command: image ``aisle.jpg`` (no such file: the preview is drawn on grey)."""
    import json

    doc = {"schema": "densedet-tile/detections@1",
           "image": {"path": "aisle.jpg", "name": "aisle.jpg", "width": int(width), "height": int(height)},
           "boxes": np.asarray(boxes).tolist(), "scores": [0.9] * len(boxes), "labels": [0] * len(boxes),
           "categories": {"0": "product"}}
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(doc, fh)


class HeldBlob(BlobDetector):
    """BlobDetector that waits while the file ``hold`` exists (60 s at most) before each call
    with a tile that is not blank (a worker's warm-up is not held): a test holds every worker in
    the middle of its item while it kills one (:func:`kill_while_held`), so the kill lands there
    however slow the machine."""

    def __init__(self, hold: "os.PathLike[str] | str") -> None:
        super().__init__()
        self.hold = os.fspath(hold)

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        import time

        if all(not t.any() for t in tiles):  # a worker's warm-up on a blank tile is not held
            return super().predict(tiles)
        end = time.monotonic() + 60
        while os.path.exists(self.hold) and time.monotonic() < end:
            time.sleep(0.02)
        return super().predict(tiles)


def kill_while_held(actor: object, hold: "os.PathLike[str] | str") -> None:
    """Hold the workers (``hold`` created), kill ``actor`` and wait until Ray reports it dead,
    then let the others go on. Called as a run submits an item to ``actor``: the item cannot
    finish on it (its calls wait), so it is the item the kill interrupts."""
    import time
    from pathlib import Path

    import ray
    from ray.exceptions import GetTimeoutError, RayActorError

    Path(hold).touch()
    try:
        ray.kill(actor)
        end = time.monotonic() + 60
        while time.monotonic() < end:
            try:  # a dead actor's calls fail at once; a held one's wait
                ray.get(actor.__ray_ready__.remote(), timeout=0.5)
            except RayActorError:
                return
            except GetTimeoutError:
                continue
            time.sleep(0.05)  # (answered: not dead yet)
        raise AssertionError("the killed actor was still alive after 60 s")
    finally:
        os.unlink(hold)


#: :func:`printed_shelf`'s photo (width, height), products (width, height, pitch), the products
#: never put on its top shelf and those of its bottom shelf drawn but not boxed.
SHELF_SIZE = (1600, 900)
SHELF_PRODUCT = (100, 300, 105)
SHELF_EMPTY = (5, 6)
SHELF_MISSED = (9, 10)


def printed_shelf(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo of two shelves of 14 printed products on a dark flat back panel, and its boxes:
    two places empty on the top shelf (SHELF_EMPTY), two products of the bottom shelf drawn but
    left out of the boxes (SHELF_MISSED), as a detector would miss them."""
    (w, h), (pw, ph, step) = SHELF_SIZE, SHELF_PRODUCT
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 38, np.uint8)
    boxes = []
    for bottom, skip in ((400, SHELF_EMPTY), (850, ())):
        img[bottom:bottom + 12] = 150  # the shelf lip under the row
        for i in range(14):
            if i in skip:
                continue
            x0, y0 = 60 + i * step, bottom - ph
            # print: blocks of colour
            block = rng.integers(0, 256, size=(ph // 6, pw // 5, 3), dtype=np.uint8)
            img[y0:bottom, x0:x0 + pw] = np.kron(block, np.ones((6, 5, 1), np.uint8))
            if bottom == 850 and i in SHELF_MISSED:
                continue
            boxes.append([x0, y0, x0 + pw, bottom])
    return img, np.asarray(boxes, np.float64)


class CloseUpUnsure:
    """The built-in model's photo rule, input and product size; whatever it is shown, a 3 x 4
    grid of products each 0.3 of its height (a close-up's products, seen whole) scored 0.35:
    under the 0.45 the built-in model serves at, over the 0.3 it is built at (as adapt builds its
    labelling model). Records the shape of every input."""

    input_size = 640
    product_size = 80.0
    score_thr = 0.3

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def photo_scale(self, width: int, height: int) -> float:
        return (1632 * 1224 / (width * height)) ** 0.5

    def predict(self, tiles: Sequence[np.ndarray]) -> list[Detections]:
        out = []
        for t in tiles:
            self.seen.append(t.shape[:2])
            h, w = t.shape[:2]
            xyxy = np.array([[w * (0.05 + 0.23 * i), h * (0.03 + 0.32 * j), w * (0.05 + 0.23 * i + 0.2),
                              h * (0.03 + 0.32 * j + 0.3)] for i in range(4) for j in range(3)], np.float32)
            out.append(Detections(xyxy, np.full(len(xyxy), 0.35, np.float32)))
        return out


def blob_photo(path: "os.PathLike[str] | str") -> "os.PathLike[str] | str":
    """A 500x300 PNG of one blob (:func:`blob_image`) at ``path``, its folders made: a photo for
    the command-line tests of inputs and outputs."""
    from pathlib import Path

    from PIL import Image

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(300, 500, (10, 20, 100, 80))).save(path)
    return path


def error_lines(err: str) -> list[str]:
    """The lines of a command's standard error that are errors (``PROG: error: ...``)."""
    return [line for line in err.splitlines() if ": error: " in line]


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """torch on one thread meanwhile: tests of full-size models on a shared 2-core machine, whose
    threads spin-wait for each other (a case took 4 s, then 100 s under load)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
