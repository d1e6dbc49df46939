"""Small images and files shared by the reader tests (written to tmp_path, never to the repository)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

RNG = np.random.default_rng(1234)


def noise(h: int, w: int, c: int | None = 3, dtype=np.uint8, hi: int = 256) -> np.ndarray:
    """Random (h, w, c) values in [0, hi) of ``dtype``; (h, w) when ``c`` is None."""
    shape = (h, w) if c is None else (h, w, c)
    return RNG.integers(0, hi, shape).astype(dtype)


def quadrants(h: int, w: int) -> np.ndarray:
    """Four flat colour blocks (red TL, green TR, blue BL, white BR): survive JPEG exactly enough."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (255, 0, 0)
    a[: h // 2, w // 2 :] = (0, 255, 0)
    a[h // 2 :, : w // 2] = (0, 0, 255)
    a[h // 2 :, w // 2 :] = (255, 255, 255)
    return a


def png_bytes(arr: np.ndarray, colortype: int, *, size: tuple[int, int] | None = None) -> bytes:
    """A minimal PNG writer (Pillow cannot write 48-bit RGB or zero-size PNGs)."""
    h, w = arr.shape[:2] if size is None else size[::-1]
    depth = 16 if arr.dtype == np.uint16 else 8
    rows = arr.astype(">u2" if depth == 16 else "u1")
    raw = b"".join(b"\x00" + rows[i].tobytes() for i in range(arr.shape[0]))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, depth, colortype, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def read_all(src) -> np.ndarray:
    """The whole upright image of ``src``: (height, width, 3) uint8."""
    return src.read(0, 0, src.width, src.height)


def check_output(a: np.ndarray, h: int, w: int) -> None:
    """What every window must be: (h, w, 3) uint8, C-contiguous, writable."""
    assert a.shape == (h, w, 3) and a.dtype == np.uint8
    assert a.flags.c_contiguous and a.flags.writeable


def save_with_orientation(path, arr, orientation, fmt="JPEG", **kw):
    """Save ``arr`` through Pillow with EXIF orientation tag ``orientation``."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(arr).save(path, fmt, exif=exif, **kw)


def encoded_image(fmt: str) -> bytes:
    """A 64x64 noise image encoded as ``fmt`` by Pillow."""
    buf = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buf, fmt)
    return buf.getvalue()


def jpeg_bytes(arr: np.ndarray) -> bytes:
    """``arr`` as a quality-95 JPEG."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=95)
    return buf.getvalue()
