#!/usr/bin/env python
"""Peak resident memory of reading giant images tile by tile (issue 5d).

Measures, each in a fresh child process so peaks do not mix:

1. writing a 40000 x 40000 RGB tiled BigTIFF (512 px tiles, zlib level 1 of a cheap pattern),
   fed to tifffile tile by tile so the writer stays bounded too;
2. reading every 1280 px window (overlap 0.2) of it through ``open_image`` +
   ``iter_tile_batches``;
3. the same through ``dt.detect(path, detector=<returns no boxes>)``, the whole engine;
4. for a ~20000 x 3000 JPEG panorama: opening + tiling through the readers, ``dt.detect``, and,
   for reference, the naive ``np.asarray(Image.open(p).convert("RGB"))``; the same for a PNG;
5. the same panorama as TIFFs stored in one strip (uncompressed RGB, zlib RGB, uncompressed RGBA).

Peak RSS is ``ru_maxrss`` of the child (Linux reports KiB). "baseline" is the child's RSS after
its imports, before any pixel is touched; "peak - baseline" is what the image work cost.

    python scripts/bench_memory.py                     # full run, writes benchmarks/memory.md
    python scripts/bench_memory.py --size 8000 --pano 6000x1000 --out /tmp/m.md   # quick
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _bench_common import save_page  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MiB = 2**20


def _peak_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------------------
# Children: each prints one JSON line
# ------------------------------------------------------------------------------------------
def child_write_tiff(path: str, size: int, tile: int) -> dict:
    import tifffile

    base = _rss_bytes()
    yy, xx = np.mgrid[0:tile, 0:tile]
    # Flat 32 px blocks: deflate squeezes them ~100x, so 4.8 GB of pixels stay small on disk.
    pattern = np.stack([(xx // 32 * 37 % 256), (yy // 32 * 59 % 256), ((xx // 32 + yy // 32) * 17 % 256)], axis=-1).astype(np.uint8)
    n = -(-size // tile)

    def tiles():
        for r in range(n):
            for c in range(n):
                t = pattern.copy()
                t[:8, :8] = (r % 256, c % 256, 0)  # a marker so tiles differ
                yield t

    t0 = time.perf_counter()
    tifffile.imwrite(
        path,
        tiles(),
        shape=(size, size, 3),
        dtype=np.uint8,
        tile=(tile, tile),
        photometric="rgb",
        compression="zlib",
        compressionargs={"level": 1},
        bigtiff=True,
        maxworkers=1,
    )
    return {
        "seconds": time.perf_counter() - t0,
        "baseline": base,
        "peak": _peak_bytes(),
        "file_bytes": os.path.getsize(path),
    }


def child_read_tiles(path: str, tile: int, overlap: float, batch: int) -> dict:
    from densedet_tile import TileSpec
    from densedet_tile.tiler import iter_tile_batches, make_grid, open_image

    base = _rss_bytes()
    t0 = time.perf_counter()
    checksum = 0
    n = 0
    with open_image(path) as src:
        t_open = time.perf_counter() - t0
        tiles = make_grid(src.width, src.height, TileSpec(tile=tile, overlap=overlap))
        for batch_tiles, pixels in iter_tile_batches(src, tiles, batch):
            for p in pixels:
                checksum += int(p[::97, ::89].sum())  # touch the pixels
            n += len(batch_tiles)
        size = (src.width, src.height)
        decoded = getattr(src, "segments_decoded", None)
    return {
        "seconds": time.perf_counter() - t0,
        "open_seconds": t_open,
        "baseline": base,
        "peak": _peak_bytes(),
        "tiles": n,
        "size": size,
        "segments_decoded": decoded,
        "checksum": checksum,
    }


class _NoBoxes:
    """A detector that finds nothing: isolates the engine's own memory."""

    name = "no-boxes"

    def predict(self, tiles):
        from densedet_tile import Detections

        return [Detections.empty() for _ in tiles]


def child_detect(path: str, tile: int, overlap: float, batch: int) -> dict:
    import densedet_tile as dt

    base = _rss_bytes()
    t0 = time.perf_counter()
    dets = dt.detect(path, detector=_NoBoxes(), tile=tile, overlap=overlap, batch_size=batch, device="cpu")
    return {"seconds": time.perf_counter() - t0, "baseline": base, "peak": _peak_bytes(), "boxes": len(dets)}


def child_naive_pillow(path: str) -> dict:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    base = _rss_bytes()
    t0 = time.perf_counter()
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return {"seconds": time.perf_counter() - t0, "baseline": base, "peak": _peak_bytes(), "shape": list(arr.shape)}


def _shelf_pattern(width: int, height: int, channels: int) -> np.ndarray:
    """Shelf-like pattern: coloured "products" in rows, drawn by broadcasting (cheap,
    compressible); a fourth channel is opaque alpha."""
    x = np.arange(width, dtype=np.int32)
    y = np.arange(height, dtype=np.int32)
    img = np.empty((height, width, channels), np.uint8)
    img[..., 0] = ((x[None, :] // 37) * 53 % 256).astype(np.uint8)
    img[..., 1] = ((y[:, None] // 41) * 97 % 256).astype(np.uint8)
    img[..., 2] = (((x[None, :] // 37) + (y[:, None] // 41)) * 31 % 256).astype(np.uint8)
    if channels == 4:
        img[..., 3] = 255
    return img


def child_write_image(path: str, width: int, height: int) -> dict:
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    t0 = time.perf_counter()
    img = _shelf_pattern(width, height, 3)
    img[(np.arange(height) % 400) < 12] = 40  # shelf edges
    if path.endswith(".png"):
        Image.fromarray(img).save(path, "PNG", compress_level=1)
    else:
        Image.fromarray(img).save(path, "JPEG", quality=88)
    return {"seconds": time.perf_counter() - t0, "file_bytes": os.path.getsize(path)}


def child_write_strip_tiff(path: str, width: int, height: int, compression: str, channels: int) -> dict:
    """A TIFF stored as one strip (tifffile's default layout): the whole image in one segment."""
    import tifffile

    img = _shelf_pattern(width, height, channels)
    extra = {}
    if channels == 4:
        extra["extrasamples"] = ["unassalpha"]
    t0 = time.perf_counter()
    tifffile.imwrite(path, img, photometric="rgb", rowsperstrip=height,
                     compression=None if compression == "none" else compression, **extra)
    return {"seconds": time.perf_counter() - t0, "file_bytes": os.path.getsize(path)}


CHILDREN = {
    "write_strip_tiff": child_write_strip_tiff,
    "write_tiff": child_write_tiff,
    "read_tiles": child_read_tiles,
    "detect": child_detect,
    "naive_pillow": child_naive_pillow,
    "write_image": child_write_image,
}


def run_child(name: str, *args: object) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, *map(str, args)]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise SystemExit(f"child {name} failed ({res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def _mib(b: float) -> str:
    return f"{b / MiB:,.0f}"


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=40000, help="side of the square BigTIFF (px)")
    ap.add_argument("--tiff-tile", type=int, default=512)
    ap.add_argument("--pano", default="20000x3000", help="JPEG panorama WIDTHxHEIGHT")
    ap.add_argument("--tile", type=int, default=1280)
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--workdir", default=None, help="where to write the images (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the written images")
    ap.add_argument("--out", default=None, help="also write the page here (e.g. benchmarks/memory.md)")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        name, *rest = args.child
        fn = CHILDREN[name]
        conv = []
        for a in rest:
            for t in (int, float):
                try:
                    a = t(a)
                    break
                except ValueError:
                    continue
            conv.append(a)
        print(json.dumps(fn(*conv)))
        return 0

    pw, ph = (int(v) for v in args.pano.lower().split("x"))
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="densedet-mem-"))
    work.mkdir(parents=True, exist_ok=True)
    tif, jpg = work / f"big_{args.size}.tif", work / f"pano_{pw}x{ph}.jpg"
    rows: list[tuple[str, str, str, str, str, str]] = []
    started = _dt.datetime.now(_dt.timezone.utc)
    try:
        # ---- TIFF -----------------------------------------------------------------------
        w = run_child("write_tiff", tif, args.size, args.tiff_tile)
        print(f"wrote {tif} ({w['file_bytes'] / MiB:.1f} MiB on disk) in {w['seconds']:.1f}s, peak {_mib(w['peak'])} MiB", flush=True)
        raw = args.size * args.size * 3
        rows.append((f"write {args.size}x{args.size} BigTIFF (tile {args.tiff_tile}, zlib)", _mib(raw), _mib(w["baseline"]), _mib(w["peak"]), _mib(w["peak"] - w["baseline"]), f"{w['seconds']:.1f}"))
        r = run_child("read_tiles", tif, args.tile, args.overlap, args.batch)
        n_tiff_tiles = (-(-args.size // args.tiff_tile)) ** 2
        print(f"read {r['tiles']} windows in {r['seconds']:.1f}s, peak {_mib(r['peak'])} MiB, TIFF tiles decoded {r['segments_decoded']} of {n_tiff_tiles}", flush=True)
        rows.append((f"open_image + iter_tile_batches: {r['tiles']} windows, batch {args.batch}; {r['segments_decoded']} TIFF tile decodes for {n_tiff_tiles} tiles", _mib(raw), _mib(r["baseline"]), _mib(r["peak"]), _mib(r["peak"] - r["baseline"]), f"{r['seconds']:.1f}"))
        d = run_child("detect", tif, args.tile, args.overlap, args.batch)
        print(f"dt.detect on the TIFF in {d['seconds']:.1f}s, peak {_mib(d['peak'])} MiB", flush=True)
        rows.append((f"dt.detect(tiff, detector=no boxes), batch {args.batch}", _mib(raw), _mib(d["baseline"]), _mib(d["peak"]), _mib(d["peak"] - d["baseline"]), f"{d['seconds']:.1f}"))
        if not args.keep:
            tif.unlink()
        # ---- JPEG panorama ----------------------------------------------------------------
        j = run_child("write_image", jpg, pw, ph)
        print(f"wrote {jpg} ({j['file_bytes'] / MiB:.1f} MiB) in {j['seconds']:.1f}s", flush=True)
        decoded = pw * ph * 3
        r = run_child("read_tiles", jpg, args.tile, args.overlap, args.batch)
        rows.append((f"JPEG {pw}x{ph}: open_image + iter_tile_batches, {r['tiles']} windows (open/decode {r['open_seconds']:.1f}s)", _mib(decoded), _mib(r["baseline"]), _mib(r["peak"]), _mib(r["peak"] - r["baseline"]), f"{r['seconds']:.1f}"))
        print(f"JPEG tiles: peak {_mib(r['peak'])} MiB, above baseline {(r['peak'] - r['baseline']) / decoded:.2f}x the decoded RGB size", flush=True)
        r1 = run_child("read_tiles", jpg, args.tile, args.overlap, 1)
        rows.append((f"JPEG {pw}x{ph}: open_image + iter_tile_batches, batch 1 (the CPU default)", _mib(decoded), _mib(r1["baseline"]), _mib(r1["peak"]), _mib(r1["peak"] - r1["baseline"]), f"{r1['seconds']:.1f}"))
        d = run_child("detect", jpg, args.tile, args.overlap, args.batch)
        rows.append((f"JPEG {pw}x{ph}: dt.detect(detector=no boxes), batch {args.batch}", _mib(decoded), _mib(d["baseline"]), _mib(d["peak"]), _mib(d["peak"] - d["baseline"]), f"{d['seconds']:.1f}"))
        n = run_child("naive_pillow", jpg)
        rows.append((f"JPEG {pw}x{ph}: naive np.asarray(Image.open(p).convert('RGB')) (reference)", _mib(decoded), _mib(n["baseline"]), _mib(n["peak"]), _mib(n["peak"] - n["baseline"]), f"{n['seconds']:.1f}"))
        if not args.keep:
            jpg.unlink()
        # ---- PNG panorama -------------------------------------------------------------------
        png = work / f"pano_{pw}x{ph}.png"
        run_child("write_image", png, pw, ph)
        r = run_child("read_tiles", png, args.tile, args.overlap, 1)
        rows.append((f"PNG {pw}x{ph}: open_image + iter_tile_batches, batch 1 (open/decode {r['open_seconds']:.1f}s)", _mib(decoded), _mib(r["baseline"]), _mib(r["peak"]), _mib(r["peak"] - r["baseline"]), f"{r['seconds']:.1f}"))
        n = run_child("naive_pillow", png)
        rows.append((f"PNG {pw}x{ph}: naive np.asarray(Image.open(p).convert('RGB')) (reference)", _mib(decoded), _mib(n["baseline"]), _mib(n["peak"]), _mib(n["peak"] - n["baseline"]), f"{n['seconds']:.1f}"))
        if not args.keep:
            png.unlink()
        # ---- TIFFs stored as one strip ------------------------------------------------------
        for compression, channels in (("none", 3), ("zlib", 3), ("none", 4)):
            st = work / f"strip_{compression}_{channels}.tif"
            run_child("write_strip_tiff", st, pw, ph, compression, channels)
            r = run_child("read_tiles", st, args.tile, args.overlap, 1)
            kind = f"{'RGBA' if channels == 4 else 'RGB'}, {'uncompressed' if compression == 'none' else compression}"
            rows.append((f"TIFF {pw}x{ph} in one strip ({kind}): open_image + iter_tile_batches, {r['tiles']} windows, "
                         f"{r['segments_decoded']} strip decodes", _mib(decoded), _mib(r["baseline"]), _mib(r["peak"]),
                         _mib(r["peak"] - r["baseline"]), f"{r['seconds']:.1f}"))
            print(f"strip TIFF ({kind}): {r['seconds']:.1f}s, peak {_mib(r['peak'])} MiB", flush=True)
            if not args.keep:
                st.unlink()
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)

    cmd = "python scripts/bench_memory.py" + ("" if argv is None else " " + " ".join(argv))
    if argv is None:
        cmd = "python scripts/bench_memory.py " + " ".join(sys.argv[1:])
    lines = [
        "# Peak memory of reading giant images",
        "",
        f"- Machine: {_machine()}",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Command: `{cmd.strip()}`",
        f"- Tiles {args.tile} px, overlap {args.overlap}; each row is a fresh process; peak = `ru_maxrss`;",
        "  baseline = RSS after imports; MiB = 2^20 bytes. \"decoded\" is width x height x 3 bytes.",
        "- 8-bit RGB/gray JPEGs and PNGs are decoded by imagecodecs into one 3-byte-per-pixel array",
        "  when it is installed (Pillow would keep 4 bytes per pixel: 1.33x \"decoded\"); the rest of",
        "  peak - baseline is the tiles in flight",
        "  (up to batch x (prefetch 2 + 2) windows of 1280 x 1280 x 3 = 4.7 MiB). TIFF: the decoded-tile",
        "  cache is bounded at 256 MiB (`tiff_cache_bytes`), enough for each 512 px TIFF tile to be",
        "  decoded exactly once over a row-major grid of a 40000 px wide image. A TIFF stored as one",
        "  strip is read in place when uncompressed (memory-mapped: 0 strip decodes) and decoded",
        "  once when compressed (held in the cache while a window needs it, beyond the budget if one window spans more).",
        "",
        "| what | decoded image MiB | baseline MiB | peak RSS MiB | peak - baseline MiB | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    lines += [f"| {a} | {b} | {c} | {d_} | {e} | {f} |" for a, b, c, d_, e, f in rows]
    save_page(args.out, "\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
