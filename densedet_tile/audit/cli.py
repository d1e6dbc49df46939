"""``densedet-tile audit``: rows, gaps, counts per region, density heatmap, HTML + JSON report.

Usage::

    densedet-tile audit PANORAMA.jpg [--regions regions.geojson] [--out DIR] [detector options]
    densedet-tile audit --detections PANORAMA.detections.json [PANORAMA.jpg] [--regions ...]

Writes ``<stem>.audit.json``, ``<stem>.audit.html`` and ``<stem>.heatmap.png`` into ``--out``
(all or nothing, each atomically). Exit status 0 on success, 2 for bad usage or input (one line
on stderr naming the file and the problem), 1 when the detector fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..argtypes import positive_float, positive_int
from ..errors import DensedetError, ImageReadError, InvalidInputError
from ..eval.formats import read_detections_json
from ..eval.output import write_all_atomic
from .analysis import AuditSettings, audit_to_dict, run_audit
from .gaps import DEFAULT_GAP_K
from .heatmap import heatmap_png
from .regions import load_regions
from .report import PREVIEW_MAX_HEIGHT, PREVIEW_MAX_WIDTH, preview_scale, render_html, render_preview

__all__ = ["audit_main", "build_parser", "load_preview_image"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    from ..cli import add_detector_options, add_tiling_options

    p = argparse.ArgumentParser(
        prog="densedet-tile audit",
        description="Shelf audit of one image: products per region (--regions) or per shelf row found from the "
        "detections, shelf gaps, a density heatmap, and a self-contained HTML report plus a JSON with the same figures.",
    )
    p.add_argument("image", nargs="?", default=None, metavar="IMAGE",
                   help="the shelf photo or panorama (detected with the given detector unless --detections is given)")
    p.add_argument("--detections", default=None, metavar="FILE",
                   help="use this detections JSON (densedet-tile/detections@1) instead of running a detector")
    p.add_argument("--regions", default=None, metavar="GEOJSON",
                   help="named polygons (pixel coordinates of the upright image) to count products in")
    p.add_argument("--gap-k", type=positive_float, default=DEFAULT_GAP_K, metavar="K",
                   help="a gap is an empty stretch wider than K median product widths of its row (default: %(default)s)")
    p.add_argument("--end-k", type=positive_float, default=None, metavar="K",
                   help="threshold for empty row ends, in median product widths (default: gap-k widths plus the widest common product)")
    p.add_argument("--no-end-gaps", action="store_true", help="do not report empty stretches at row ends")
    p.add_argument("--max-tilt", type=float, default=4.0, metavar="DEG", help="largest shelf tilt searched (default: %(default)s)")
    p.add_argument("--min-row-products", type=positive_int, default=3, metavar="N",
                   help="fewest products a shelf row needs (default: %(default)s)")
    p.add_argument("--cell", type=positive_int, default=None, metavar="PX",
                   help="heatmap cell side in pixels (default: about two product heights)")
    p.add_argument("--preview-max-width", type=positive_int, default=PREVIEW_MAX_WIDTH, metavar="PX",
                   help="widest preview in the report (default: %(default)s)")
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    add_tiling_options(p)
    add_detector_options(p)
    return p


def _err(msg: str) -> None:
    print(f"densedet-tile audit: error: {' '.join(str(msg).split())}", file=sys.stderr, flush=True)


def load_preview_image(path: str | Path, width: int, height: int, *, max_width: int = PREVIEW_MAX_WIDTH,
                       max_height: int = PREVIEW_MAX_HEIGHT) -> Any:
    """The upright image at (about) preview size as a PIL image.

    JPEGs are decoded at a reduced scale directly (``draft``); the EXIF orientation is applied.
    Raises :class:`ImageReadError` if it cannot be read or :class:`InvalidInputError` if its
    upright size is not ``width`` x ``height`` (the detections belong to another image).
    """
    from PIL import Image, ImageOps

    p = Path(path)
    s = preview_scale(width, height, max_width=max_width, max_height=max_height)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            old = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None  # the size is checked against the detections instead
            try:
                im = Image.open(p)
                orient = im.getexif().get(0x0112, 1)
                sw, sh = im.size
                upright = (sh, sw) if orient in (5, 6, 7, 8) else (sw, sh)
                if upright != (width, height):
                    raise InvalidInputError(f"{p}: image is {upright[0]}x{upright[1]} but the detections are for {width}x{height}")
                tw, th = max(1, int(width * s)), max(1, int(height * s))
                if im.format == "JPEG":
                    im.draft("RGB", (tw, th) if orient not in (5, 6, 7, 8) else (th, tw))
                im = ImageOps.exif_transpose(im.convert("RGB"))
                im.load()
            finally:
                Image.MAX_IMAGE_PIXELS = old
    except FileNotFoundError:
        raise ImageReadError(f"{p}: no such file") from None
    except InvalidInputError:
        raise
    except Exception as exc:  # Pillow cannot read it: try the engine's readers (BigTIFF...)
        try:
            from ..tiler.readers import open_image

            with open_image(p) as src:
                if (src.width, src.height) != (width, height):
                    raise InvalidInputError(
                        f"{p}: image is {src.width}x{src.height} but the detections are for {width}x{height}"
                    )
                # strips whose height is a multiple of the step: bounded memory, aligned sampling
                step = max(1, int(1 / s))
                strip = step * max(1, 512 // step)
                arr = np.concatenate([
                    src.read(0, y0, src.width, min(strip, src.height - y0))[::step, ::step]
                    for y0 in range(0, src.height, strip)
                ])
            return Image.fromarray(np.ascontiguousarray(arr))
        except InvalidInputError:
            raise
        except Exception:
            raise ImageReadError(f"{p}: cannot read the image ({exc})") from None
    return im


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (".detections.json", ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def audit_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile audit``; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    det_path = args.detections
    image_path = args.image
    if det_path is None and image_path is not None and image_path.lower().endswith(".json"):
        det_path, image_path = image_path, None
    if det_path is None and image_path is None:
        _err("give an IMAGE to detect in, or --detections FILE")
        return EXIT_USAGE
    try:
        settings = AuditSettings(gap_k=args.gap_k, end_gaps=not args.no_end_gaps, end_k=args.end_k,
                                 max_tilt=args.max_tilt, min_row_products=args.min_row_products, cell=args.cell)
        regions = load_regions(args.regions) if args.regions else None
        if det_path is not None:
            boxes = read_detections_json(det_path)
            xyxy, width, height = boxes.xyxy, int(boxes.width or 0), int(boxes.height or 0)
            info = {"path": boxes.path, "name": boxes.name, "width": width, "height": height, "detections": str(det_path)}
            if image_path is None and boxes.path and Path(boxes.path).is_file():
                image_path = boxes.path
            stem = _stem(image_path or det_path)
        else:
            code, found = _detect(args, image_path)
            if code != EXIT_OK:
                return code
            xyxy, width, height, info = found
            stem = _stem(image_path)
        result = run_audit(xyxy, width, height, regions=regions, settings=settings)
        doc = audit_to_dict(result, image=info)
        picture = None
        if image_path is not None:
            picture = load_preview_image(image_path, width, height, max_width=args.preview_max_width)
        jpeg, pw, ph, scale = render_preview(result, picture, max_width=args.preview_max_width)
        doc["preview"] = {"width": pw, "height": ph, "scale": round(scale, 6), "from_image": picture is not None}
        png = heatmap_png(result.grid)
        page = render_html(doc, jpeg, png)
    except (DensedetError, OSError) as exc:
        _err(str(exc))
        return EXIT_USAGE
    out = Path(args.out)
    files = {
        out / f"{stem}.audit.json": json.dumps(doc, indent=1) + "\n",
        out / f"{stem}.audit.html": page,
        out / f"{stem}.heatmap.png": png,
    }
    try:
        write_all_atomic(files)
    except OSError as exc:
        _err(f"{out}: cannot write the report ({exc.strerror or exc})")
        return EXIT_USAGE
    s = doc["summary"]
    print(f"{info.get('name')}: {s['products']} products, {s['rows']} shelf rows, {s['gaps']} gaps "
          f"({s['gap_width_products']} product widths empty), tilt {s['tilt_deg']} deg")
    for r in doc["regions"]:
        print(f"  region {r['name']}: {r['products']} products, {r['gaps']} gaps")
    print(f"-> {out / (stem + '.audit.html')}")
    return EXIT_OK


def _detect(args: argparse.Namespace, image_path: str) -> tuple[int, Any]:
    from ..cli import detector_from_args, merge_spec_from_args
    from ..pipeline import detect_image

    if not Path(image_path).is_file():
        raise ImageReadError(f"{image_path}: no such file")
    try:
        detector = detector_from_args(args)
    except (DensedetError, OSError):
        raise
    except Exception as exc:  # third-party model code
        _err(f"detector {args.detector!r}: {exc}")
        return EXIT_USAGE, None
    kw: dict[str, Any] = dict(tile=args.tile, overlap=args.overlap, merge=merge_spec_from_args(args),
                              batch_size=args.batch_size, device=args.device, score_thr=args.score_thr,
                              input_size=args.input_size)
    if args.max_pixels is not None:
        kw["max_pixels"] = args.max_pixels
    try:
        res = detect_image(image_path, detector, **kw)
    except (DensedetError, OSError):
        raise
    except Exception as exc:
        _err(f"{image_path}: detector failed ({exc})")
        return EXIT_FAILED, None
    info = {"path": res.path, "name": res.name, "width": res.width, "height": res.height, "model": res.model}
    return EXIT_OK, (res.detections.xyxy.astype(np.float64), res.width, res.height, info)
