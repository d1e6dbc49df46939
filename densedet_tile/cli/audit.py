"""``densedet-tile audit``: bays, rows, gaps, counts per region, density heatmap, HTML + JSON report.

Usage::

    densedet-tile audit PANORAMA.jpg [--regions regions.geojson] [--out DIR] [detector options]
    densedet-tile audit --detections PANORAMA.detections.json [PANORAMA.jpg] [--regions ...]
    densedet-tile audit PANORAMA.detections.json PANORAMA.jpg [...]   (read as --detections FILE IMAGE)

Writes ``<stem>.audit.json``, ``<stem>.audit.html`` and ``<stem>.heatmap.png`` into ``--out``
(all or nothing, each atomically). Exit status 0 on success, 2 for bad usage or input (one line
on stderr naming the file and the problem), 1 when the detector fails. Warnings about the input
(a region outside the image, near misses that are no boxes) go to stderr, one line each, and into the JSON and the report.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import stat
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..audit.analysis import AuditSettings, audit_to_dict, run_audit, shelf_lines_scale, usable_boxes
from ..audit.boxes import as_boxes
from ..audit.confidence import RANGE_LIMITS, part_count_ranges
from ..audit.gapcheck import MIN_PRODUCT_PX, check_gaps, judged, product_px
from ..audit.gaps import DEFAULT_GAP_K
from ..audit.heatmap import MAX_CELLS, check_cell, heatmap_png
from ..audit.regions import load_regions
from ..audit.report import (JPEG_MAX_SIDE, PREVIEW_MAX_HEIGHT, PREVIEW_MAX_WIDTH, load_preview_images, render_html,
                            render_preview)
from ..errors import DensedetError, ImageReadError, InvalidInputError, one_line, printable
from ..eval.formats import (BoxSet, ImageBoxes, image_key, parse_yolo_labels, read_boxes_json, read_predictions,
                            refuse_device, yolo_to_xyxy)
from ..io import (AUDIT_SUFFIXES, OUTPUT_SUFFIXES, another_existing_file, box_values, count_range_json, ensure_out_dir,
                  new_folders, refuse_overwriting_input, remove_empty, score_texts, stat_or_none, sweep_temporaries,
                  write_files)
from ..merge.core import NEAR_COPY_IOU, copies_kept, pile_kept
from ..pipeline import detect_image
from ..runner import Job, as_json, build_detector, check_name_lengths, error_line
from ..types import CountRange, MergeSpec
from .options import (
    StopSignals,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_detector_options,
    add_tiling_options,
    counted,
    detector_spec_from_args,
    warn_ap_threshold,
    error,
    exit_status_of,
    parse,
    fraction,
    options_changed,
    positive_float,
    positive_int,
    products_text,
    specs_from_args,
)

__all__ = ["audit_main", "build_parser"]

PROG = "densedet-tile audit"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Shelf audit of one image: the bays found from the detections (or given by --regions), the "
        "shelf rows of each bay (also in views down an aisle, where rows converge), shelf gaps, products per bay, "
        "row and region, a density heatmap, and a self-contained HTML report plus a JSON with the same figures.",
    )
    p.add_argument("image", nargs="?", default=None, metavar="IMAGE",
                   help="the shelf photo or panorama (detected with the given detector unless --detections is given); "
                   "or a detections file (.json, .csv, .txt), alone or with its photo as a second positional")
    # (a detections file and its photo given both as positionals: read as --detections FILE IMAGE)
    p.add_argument("more", nargs="*", default=[], help=argparse.SUPPRESS)
    p.add_argument("--detections", default=None, metavar="FILE",
                   help="use these boxes instead of running a detector: a detections JSON (densedet-tile/"
                   "detections@1), another detector's CSV in the SKU-110K layout (image_name,x1,y1,x2,y2,class,"
                   "image_width,image_height[,score]; with several images, IMAGE picks the rows), COCO results (a JSON "
                   "list of image_id, category_id, bbox [x, y, w, h], score, as --format coco writes; needs IMAGE), "
                   "or a YOLO label file (.txt, class cx cy w h [score] normalised; needs IMAGE)")
    p.add_argument("--regions", default=None, metavar="GEOJSON",
                   help="named polygons (pixel coordinates of the upright image) to count products in")
    p.add_argument("--gap-k", type=fraction(0.0, 1000.0, lo_open=True, hi_open=True), default=DEFAULT_GAP_K, metavar="K",
                   help="a gap is an empty stretch wider than K median product widths of its row, 0 < K < 1000 "
                        "(default: %(default)s)")
    p.add_argument("--end-k", type=positive_float, default=None, metavar="K",
                   help="threshold for empty row ends, in median product widths (default: gap-k widths plus the widest common product)")
    p.add_argument("--no-end-gaps", action="store_true", help="do not report empty stretches at row ends")
    p.add_argument("--max-tilt", type=fraction(0.0, 30.0), default=4.0, metavar="DEG",
                   help="largest tilt of parallel shelves searched, 0 to 30 degrees (default: %(default)s)")
    p.add_argument("--no-perspective", action="store_true",
                   help="shelves are parallel: do not look for rows converging down an aisle")
    p.add_argument("--no-bays", action="store_true",
                   help="the image is one fixture: do not cut it into bays (at uprights, jumps in shelf height or "
                        "breaks in the photo's shelf lines; the shelf lines are then not read)")
    p.add_argument("--no-shelf-lines", action="store_true",
                   help="find the bays from the product boxes alone, not also from where the shelf lines "
                        "in the photo end or jump (only matters with the photo at hand; docs/audit.md, \"Bays\")")
    p.add_argument("--no-pixel-check", action="store_true",
                   help="do not look at the photo's pixels to tell whether each gap looks empty or holds products "
                   "the detector missed")
    p.add_argument("--bay-width-m", type=fraction(0.05, 1000.0), default=None, metavar="M",
                   help="width of one bay in metres (0.05 to 1000), to report facings per metre of each row")
    p.add_argument("--min-row-products", type=positive_int, default=3, metavar="N",
                   help="fewest products a shelf row needs (default: %(default)s; a shelf between two rows needs "
                   "at most two)")
    p.add_argument("--cell", type=positive_int, default=None, metavar="PX",
                   help="heatmap cell side in pixels (default: about two product heights, at most 40,000 cells in "
                   f"all); a cell making more than {MAX_CELLS:,} cells is refused")
    p.add_argument("--preview-max-width", type=positive_int, default=PREVIEW_MAX_WIDTH, metavar="PX",
                   help=f"widest preview in the report (default: %(default)s; at most {JPEG_MAX_SIDE}, what a JPEG holds)")
    p.add_argument("--out", default=".", metavar="DIR", help="output folder (default: current folder)")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="print the summary line and warnings only (no line per bay, empty section or shelf)")
    p.add_argument("--debug", action="store_true", help="log tracebacks of errors")
    add_tiling_options(p)
    add_detector_options(p)
    return p


def _stem(path: str) -> str:
    name = Path(path).name
    for suffix in (OUTPUT_SUFFIXES["json"], OUTPUT_SUFFIXES["csv"], ".json"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def audit_main(argv: Sequence[str]) -> int:
    """Entry point of ``densedet-tile audit``; returns the exit status."""
    args = parse(build_parser(), argv, intermixed=True)
    if isinstance(args, int):
        return args
    if args.debug:  # (main puts the level back)
        logging.getLogger("densedet_tile").setLevel(logging.DEBUG)
    made = new_folders(args.out)
    with StopSignals() as stop:  # Ctrl-C or SIGTERM: the files being written are rolled back
        try:
            code = stop.outcome(_audit(args))
        except KeyboardInterrupt:
            error(PROG, stop.reason)
            code = stop.exit_status
    if code != EXIT_OK:
        remove_empty(made)  # a failed or stopped audit leaves no empty output folder behind
    return code


def _refuse_own_inputs(args: argparse.Namespace, stem: str, det_path: str | None, image_path: str | None) -> None:
    """Refuse (before any work) an output name that is one of the files read: a regions file or
    boxes named like the audit's own outputs in --out were replaced by them without a word (an
    outside review)."""
    inputs = {name: path for name, path in (("detections", det_path), ("regions", args.regions),
                                            ("image", image_path)) if path is not None}
    for suffix in AUDIT_SUFFIXES.values():
        refuse_overwriting_input(Path(args.out) / (stem + suffix), inputs, option="--out")


def _audit(args: argparse.Namespace) -> int:
    det_path = args.detections
    image_path = args.image
    boxes_file = (".json", ".csv", ".txt")
    if args.more:
        given = [image_path, *args.more]
        files = [g for g in given if g.lower().endswith(boxes_file)]
        if det_path is not None or len(given) != 2 or len(files) != 1:
            error(PROG, f"{' '.join(given)}: give one IMAGE, and its boxes with --detections FILE")
            return EXIT_USAGE
        det_path, image_path = files[0], next(g for g in given if g != files[0])
    elif det_path is None and image_path is not None and image_path.lower().endswith(boxes_file):
        det_path, image_path = image_path, None
    if det_path is None and image_path is None:
        error(PROG, "give an IMAGE to detect in, or --detections FILE")
        return EXIT_USAGE
    if args.no_end_gaps and args.end_k is not None:  # (the threshold of gaps that are not looked for)
        error(PROG, f"--end-k {args.end_k:g} sets the end gaps that --no-end-gaps turns off: give one of the two")
        return EXIT_USAGE
    if det_path is not None:  # the detector and tiling options are those of a run of the detector
        given = _detector_options_given(args)
        if given:
            error(PROG, f"{', '.join(given)}: only when the audit runs the detector, not with the boxes of "
                        f"{det_path} (filter them where they are made)")
            return EXIT_USAGE
    try:
        settings = AuditSettings(gap_k=args.gap_k, end_gaps=not args.no_end_gaps, end_k=args.end_k,
                                 max_tilt=args.max_tilt, min_row_products=args.min_row_products, cell=args.cell,
                                 perspective=not args.no_perspective, bays=not args.no_bays,
                                 bay_width_m=args.bay_width_m)
        if det_path is not None and image_path is not None:
            # a pipe given as the photo beside its boxes was waited on (the preview opens it)
            _refuse_special(image_path)
        ensure_out_dir(args.out)  # a bad output folder is told before any work, not after
        sweep_temporaries(args.out)  # what a killed run was writing
        regions = load_regions(args.regions) if args.regions else None
        no_photo = bad_range = other_name = image_range = None
        if det_path is not None:
            boxes = _read_boxes(det_path, image_path)
            xyxy, width, height = boxes.xyxy, int(boxes.width or 0), int(boxes.height or 0)
            if args.cell is not None and width > 0 and height > 0:
                check_cell(args.cell, width, height, option="--cell", source=str(det_path))
            count_range = boxes.count_range
            if count_range is not None and not _finite_json(count_range):
                bad_range = (f"{det_path}: its count_range holds numbers that are not finite; left out "
                             "(the bays get no count range)")
                count_range = None
            elif count_range is not None and not _range_settings_ok(count_range):
                # (the bays' ranges would refuse them, in an error that does not name the file)
                bad_range = (f"{det_path}: its count_range has a score_thr outside [0, 1] or a band outside "
                             "[0, 0.5]; left out (the bays get no count range)")
                count_range = None
            elif count_range is not None and (problem := _near_misses_problem(count_range)):
                bad_range = (f"{det_path}: its count_range's near misses are no boxes ({problem}); "
                             "left out (the bays get no count range)")
                # the image's own counts and flag still stand: its warning and the JSON keep them
                # (an outside review: one bad near miss also dropped "the detector is unsure")
                image_range = _without_boxes(count_range)
                count_range = None
            name = boxes.name
            # the photo's own name as the JSON records it (its path's), beside the name its run's rows
            # gave it: the second of two photos named x.jpg is "x-2.jpg" there, and was warned about
            # as another photo and named so when audited with the very photo (an outside review)
            # (image_key: a path recorded on Windows splits at its backslashes too)
            recorded = image_key(boxes.path) if isinstance(boxes.path, str) and boxes.path else None
            if image_path is not None and recorded and image_key(Path(image_path).name) == recorded:
                name = recorded
            info = {"path": boxes.path, "name": name, "width": width, "height": height,
                    "detections": str(det_path), "count_range": count_range}
            scores, classes = boxes.scores, boxes.classes
            ours = image_path is not None and not det_path.lower().endswith((".csv", ".txt"))
            if ours and boxes.name and image_key(Path(image_path).name) != image_key(str(name)):
                # (a CSV is matched by name, a YOLO file has none): a JSON of a renamed copy is fine,
                # one of another photo of the same size is not, and only the user can tell
                other_name = (f"{det_path} holds the boxes of {str(boxes.name)!r}, audited here with {image_path}; "
                              "check that they are one photo")
            elif ours and another_existing_file(boxes.file, image_path) and not _same_bytes(boxes.file, image_path):
                # one name, yet the photo the run recorded is still there and is another file
                # with other contents: the other x.jpg of two folders (a copy is the same photo)
                other_name = (f"{det_path} holds the boxes of {boxes.file}, audited here with {image_path} (another "
                              "file of that name); check that they are one photo")
            if image_path is None and boxes.path:
                image_path = _photo_named_in(boxes.path, det_path, width, height, real=boxes.file,
                                             stamp=getattr(boxes, "stamp", None))
                if image_path is None:
                    no_photo = (f"the photo {boxes.path!r} named in {det_path} is not found from here (or is "
                                "another image), so the report draws the boxes without it; pass the image as well "
                                "to see it")
            stem = _stem(image_path or det_path)
            _refuse_own_inputs(args, stem, det_path, image_path)
        else:
            there = _regular_file(image_path)  # (a photo missing, or named too long itself, is said so below)
            size = _upright_size(Path(image_path)) if args.cell is not None and there else None
            if size is not None:  # before the detector runs, not after
                check_cell(args.cell, size[0], size[1], option="--cell", source=str(image_path))
            stem = _stem(image_path)
            _refuse_own_inputs(args, stem, det_path, image_path)
            if there:
                # a report name the folder cannot hold fails now, not after the detector ran
                check_name_lengths(args.out, [Path(args.out) / (stem + suffix) for suffix in AUDIT_SUFFIXES.values()])
            code, found = _detect(args, image_path)
            if code != EXIT_OK:
                return code
            xyxy, width, height, info, scores = found
            classes = None
        dropped = small_preview = piled = None
        if det_path is not None:  # another tool's boxes may overshoot the image, or miss it
            xyxy, keep = usable_boxes(xyxy, width, height)
            if not keep.all():
                n_out = int(np.count_nonzero(~keep))
                dropped = (f"{det_path}: {n_out} of {len(keep)} boxes have no area inside the {width}x{height} image "
                           "and were left out (boxes of another image, or of zero size?)")
                xyxy, scores = xyxy[keep], (None if scores is None else np.asarray(scores)[keep])
                classes = None if classes is None else np.asarray(classes)[keep]
            kept = pile_kept(xyxy, scores, labels=classes)
            if kept is not None and len(kept) < len(xyxy):
                # (a detector without NMS: its near-copies made the audit's neighbour search
                # grow with their square, 20 000 copies of one box 7.8 GB; an outside review)
                piled = (f"{det_path}: {len(xyxy) - len(kept)} of {len(xyxy)} boxes were near-copies of others (a "
                         f"detector without NMS of its own?) and were left out by NMS at IoU {MergeSpec().nms_iou:g} "
                         "before the audit")
                xyxy, scores = xyxy[kept], (None if scores is None else np.asarray(scores)[kept])
                classes = None if classes is None else np.asarray(classes)[kept]
            # ... and whatever their classes: the audit's rows and bays take no class, and a pile of
            # one box per class (a detector keeping its top classes, or a crafted file) made the
            # audit's neighbour search grow with its square as well (20 000 copies of one box, each
            # of its own class: 5 GB, then a traceback; an outside review). A box given two or three
            # classes is no pile and stays, one product per class
            blind = pile_kept(xyxy, scores) if classes is not None else None
            if blind is not None and len(blind) < len(xyxy):
                also = (f"{det_path}: {len(xyxy) - len(blind)} of {len(xyxy)} boxes were near-copies of others of "
                        "other classes, piled on the same spots (a detector boxing each product once per class?), "
                        f"and were left out by NMS at IoU {MergeSpec().nms_iou:g} whatever their class before the audit")
                piled = also if piled is None else f"{piled}; then {also[len(f'{det_path}: '):]}"
                xyxy, scores = xyxy[blind], (None if scores is None else np.asarray(scores)[blind])
                classes = np.asarray(classes)[blind]
            if piled is None:
                kept = copies_kept(xyxy, scores, classes)
                if kept is not None:
                    # two or three copies of each box (two runs' files joined) counted every
                    # product twice or three times, without a word (an outside review)
                    piled = (f"{det_path}: {len(xyxy) - len(kept)} of {len(xyxy)} boxes were near-copies of others "
                             f"(overlapping one of their class at IoU above {NEAR_COPY_IOU:g}, which no detector's NMS "
                             "leaves: two runs' boxes in one file?) and were left out before the audit")
                    xyxy, scores = xyxy[kept], (None if scores is None else np.asarray(scores)[kept])
        picture = lines = None
        if image_path is not None:
            sizes = [(args.preview_max_width, PREVIEW_MAX_HEIGHT)]
            lines_scale = None if args.no_shelf_lines or args.no_bays else shelf_lines_scale(xyxy, width, height)
            if lines_scale is not None:
                # the bays are found from the shelf lines in the photo too: read at one scale
                # of its products, whatever the preview's width (which only shows the report)
                sizes.append((max(1, round(width * lines_scale)), max(1, round(height * lines_scale))))
            # (one opening of the photo for both: a PNG is decoded once)
            picture, *rest = load_preview_images(image_path, width, height, sizes)
            lines = rest[0] if rest else None
        result = run_audit(xyxy, width, height, regions=regions, settings=settings, picture=lines)
        if picture is not None:
            if not args.no_pixel_check:  # does each gap look empty in the photo? (docs/audit.md)
                result = check_gaps(result, picture)
                tall = product_px(result, picture.height / height)
                if (result.gaps or result.empty_shelves or result.empty_sections) and not judged(result) \
                        and tall < MIN_PRODUCT_PX:
                    small_preview = (f"gaps not checked in the photo: its products are {tall:.0f} px tall in the "
                                     f"preview, under the {MIN_PRODUCT_PX:g} px the check needs (raise "
                                     "--preview-max-width)")
        ranges = bay_ranges(result, scores, info.get("count_range"))
        info = {**info, "count_range": _without_boxes(info.get("count_range")) if image_range is None else image_range}
        doc = audit_to_dict(result, image=info, count_ranges=ranges)
        source = image_path or det_path  # what this audit was made from, links resolved (see _other_source)
        doc["image"]["file"] = os.path.realpath(source) if source else None
        unsure = count_warning(info.get("count_range"))
        if piled:
            doc["warnings"].insert(0, piled)
        if dropped:
            doc["warnings"].insert(0, dropped)
        if bad_range:
            doc["warnings"].insert(0, bad_range)
        if no_photo:
            doc["warnings"].append(no_photo)
        if small_preview:
            doc["warnings"].append(small_preview)
        if other_name:
            doc["warnings"].insert(0, other_name)
        if unsure:  # the first thing said (docs/audit.md): every figure below inherits it
            doc["warnings"].insert(0, unsure)
        jpeg, pw, ph, scale = render_preview(result, picture, max_width=args.preview_max_width)
        doc["preview"] = {"width": pw, "height": ph, "scale": round(scale, 6), "from_image": picture is not None}
        if min(width, args.preview_max_width) > JPEG_MAX_SIDE:
            doc["warnings"].append(f"--preview-max-width {args.preview_max_width}: a JPEG holds at most "
                                   f"{JPEG_MAX_SIDE} px a side, so the preview is {pw}x{ph} px")
        elif min(pw, ph) < MIN_PREVIEW_SIDE and max(width, height) > max(pw, ph):
            # a panorama of hundreds of bays shrunk to the preview's width: a strip of pixels
            # (which of the two limits shrank it: asked of the limits, not of the rounded sides)
            wide = args.preview_max_width / width <= PREVIEW_MAX_HEIGHT / height
            doc["warnings"].append(
                f"the preview is {pw}x{ph} px, too thin to show shelves; "
                + (f"raise --preview-max-width (up to {JPEG_MAX_SIDE}) or audit the panorama in parts (crops)" if wide
                   else f"it is at most {PREVIEW_MAX_HEIGHT} px tall: audit the image in parts (crops)"))
        png = heatmap_png(result.grid)
        page = render_html(doc, jpeg, png)
    except (DensedetError, OSError) as exc:
        # (a system error as the other verbs say it, "FILE: Permission denied", not "[Errno 13] ...: 'FILE'")
        error(PROG, str(exc) if isinstance(exc, DensedetError) else one_line(exc))
        return exit_status_of(exc)
    out = Path(args.out)
    files = {
        out / (stem + AUDIT_SUFFIXES["json"]): json.dumps(doc, indent=1, allow_nan=False) + "\n",
        out / (stem + AUDIT_SUFFIXES["html"]): page,
        out / (stem + AUDIT_SUFFIXES["heatmap"]): png,
    }
    other = _other_source(out / (stem + AUDIT_SUFFIXES["json"]), doc["image"].get("file"))
    try:
        write_files(files)
    except OSError as exc:
        # (the file in the way, when the system names it: a folder of the heatmap's name...)
        error(PROG, f"{exc.filename or out}: cannot write the report ({exc.strerror or exc})")
        return exit_status_of(exc)
    if other is not None:  # store_a/IMG_0001.jpg, then store_b/IMG_0001.jpg into one --out
        print(f"{PROG}: warning: replaced {printable(str(out / (stem + AUDIT_SUFFIXES['json'])))}, the audit of "
              f"another file of that name ({printable(other)}); give another --out to keep both", file=sys.stderr)
    for w in doc["warnings"]:
        print(f"{PROG}: warning: {printable(w)}", file=sys.stderr)  # (the JSON keeps the names as they are)
    s = doc["summary"]
    # the image's count range, as the main command prints it ("94 products (74-121)")
    print(f"{printable(str(info.get('name')))}: {counted(s['products'], 'product')}{_range_text(info, s['products'])}, "
          f"{counted(s['bays'], 'bay')}, "
          f"{counted(s['rows'], 'shelf row')}, {counted(s['gaps'], 'gap')} "
          f"({s['gap_width_products']} product widths empty{_looks_text(s['gap_looks'], s.get('gap_width_looks'))}), "
          f"tilt {s['tilt_deg']} deg")
    if args.quiet:
        return EXIT_OK
    for b in doc["bays"]:
        # a found bay by its own name ("bay 2", or "bay 2 (found)" where a region is called "bay 2")
        label = (f"region {printable(b['name'])}" if b["kind"] == "region"
                 else printable(b["name"]) if b.get("name") is not None else f"bay {b['bay']}")
        cr = b.get("count_range") or {}
        counts = cr.get("counts") or [None] * 3
        text = products_text(b["products"], (counts[0], counts[2]), cr.get("uncertain"))
        print(f"  {label}: {text}, {counted(b['rows'], 'row')}, {counted(b['gaps'], 'gap')}")
    for e in doc.get("empty_sections", []):
        left, right = e["between_bays"]
        print(f"  empty section between bays {left} and {right}: every shelf empty over "
              f"{e['width_products']:g} product widths (x {e['x1']:g} to {e['x2']:g}){_looks_said(e)}")
    for e in doc.get("empty_shelves", []):
        place = f"region {printable(e['region'])}" if "region" in e else f"bay {e['bay']}"
        above, below = e["between_rows"]
        print(f"  empty shelf in {place} between rows {above} and {below}: room for "
              f"{e['shelves']} {'shelf' if e['shelves'] == 1 else 'shelves'} (x {e['x1']:g} to {e['x2']:g})"
              f"{_looks_said(e)}")
    print(f"-> {printable(str(out / (stem + AUDIT_SUFFIXES['html'])))}")
    return EXIT_OK


#: A preview thinner than this (pixels) shows no shelves: the command says so.
MIN_PREVIEW_SIDE = 100


def _looks_text(looks: dict[str, int], widths: dict[str, float] | None = None) -> str:
    """"; 3 look empty, 1 unsure, 5 look stocked (4.2 widths)" from the summary's ``gap_looks``
    and ``gap_width_looks`` ("" when no gap was judged in the pixels): the empty width counts
    the gaps that look stocked too, so their share is said."""
    def verb(n: int) -> str:
        return "looks" if n == 1 else "look"

    said = [f"{looks[k]} {verb(looks[k])} {k}" if k != "unsure" else f"{looks[k]} unsure"
            for k in ("empty", "unsure", "stocked") if looks.get(k)]
    if said and looks.get("stocked") and widths and widths.get("stocked"):
        said[-1] += f" ({widths['stocked']} widths)"
    if said and looks.get("not_judged"):  # (so that the tally adds up to the gaps; a warning says why)
        said.append(f"{looks['not_judged']} not checked")
    return "; " + ", ".join(said) if said else ""


def _looks_said(item: dict[str, Any]) -> str:
    """What the photo's pixels say of an empty shelf or section, for its line ("" unjudged)."""
    return {"empty": ", looks empty in the photo", "unsure": ", unsure in the photo",
            "stocked": ", but looks stocked in the photo: products the detector missed?"}.get(item.get("looks") or "", "")


def _detector_options_given(args: argparse.Namespace) -> list[str]:
    """The detector and tiling options set to other than their defaults (as ``--tile``...)."""
    p = argparse.ArgumentParser(add_help=False)
    add_tiling_options(p)
    add_detector_options(p)
    return options_changed(args, vars(p.parse_args([])))


def _other_source(json_path: Path, source: str | None) -> str | None:
    """The file the audit JSON at ``json_path`` was made from (its ``image.file``, links
    resolved) when that file still exists and is not ``source``; None otherwise (no such JSON,
    one from before the path was recorded, or a file since moved away)."""
    try:
        recorded = json.loads(json_path.read_text())["image"]["file"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return recorded if source and another_existing_file(recorded, source) else None


def _same_bytes(a: str | None, b: str) -> bool:
    """Whether files ``a`` and ``b`` hold the same bytes (a copy of a photo does; two
    uncompressed photos of one camera are of one length, so the bytes are compared too)."""
    import filecmp

    try:
        return a is not None and os.stat(a).st_size == os.stat(b).st_size and filecmp.cmp(a, b, shallow=False)
    except (OSError, ValueError):
        return False


def _photo_named_in(recorded: str, det_path: str, width: int, height: int, real: str | None = None,
                    stamp: tuple[int, int] | None = None) -> str | None:
    """The photo a detections JSON names (as the detection run was given it: relative to where
    that ran), looked for from here and beside the JSON and the folder above it, then at
    ``real``, the absolute path the run recorded (``settings.requested.file``). A file beside
    the JSON or in the folder above it is taken (a photo copied there with the JSON, its
    modification time new); one elsewhere only when it is the very file the boxes were made
    from, its size and modification time as the run recorded them (``stamp``). So a JSON handed
    to a service cannot have the report show any image the service can read (an outside
    security review), and a file that is no image is as good as not there. Of
    those, one of the detections' size counts, and one whose size cannot be told from its header
    only when none is known to match. None when none is found."""
    p = Path(recorded)
    here = Path(os.path.abspath(det_path)).parent  # (a relative JSON path's parent is "." twice over)
    spots = [p] if p.is_absolute() else [p, here / p, here.parent / p]
    if real and Path(real).is_absolute():
        spots.append(Path(real))
    spots.append(here / p.name)
    # (links followed on both sides: a link beside the JSON to a file elsewhere is elsewhere)
    nearby = (os.path.realpath(here), os.path.realpath(here.parent))
    unknown = None
    for spot in dict.fromkeys(spots):  # (one path given two ways is looked at once)
        try:
            st = spot.stat()
            if not stat.S_ISREG(st.st_mode):
                continue
            near = os.path.dirname(os.path.realpath(spot)) in nearby
            if (st.st_size, st.st_mtime_ns) != stamp and not near:
                continue
            size = _upright_size(spot)
        except (OSError, ValueError, DensedetError):
            # unreadable, no image, or a name no file can have (a NUL byte, a lone surrogate in
            # a JSON handed over): as if not there
            continue
        if size == (width, height):
            return str(spot)
        if size is None and unknown is None:
            unknown = str(spot)
    return unknown


def _read_boxes(det_path: str, image_path: str | None) -> Any:
    """The boxes to audit: our detections JSON, another detector's rows in the SKU-110K CSV
    layout (``image_name,x1,y1,x2,y2,class,image_width,image_height[,score]``, as its annotations
    and many SKU-110K detectors' outputs are written; also what ``--format csv`` writes), COCO
    results (``--format coco``'s, or a COCO-style detector's: sized by IMAGE) or a YOLO label file.
    A file of several images gives the boxes of IMAGE (matched by file name); a CSV's size comes
    from its rows, else from IMAGE."""
    if det_path.lower().endswith(".txt"):
        return _read_yolo(det_path, image_path)
    if not det_path.lower().endswith(".csv"):
        # our JSON, or COCO results (what --format coco writes; an mmdet or detectron2 run's too)
        read = read_boxes_json(det_path, Path(image_path).name if image_path is not None else None)
        if not isinstance(read, BoxSet):
            return read
        if not read.images and image_path is None:
            raise InvalidInputError(f"{det_path}: no results, so no image size either; give the image as well")
        found, rows = read, "results"
    else:
        found, rows = read_predictions(det_path), "rows"
    return _one_image(found, det_path, image_path, rows)


def _one_image(found: BoxSet, det_path: str, image_path: str | None, rows: str) -> Any:
    """The boxes of IMAGE (or of the one image) among those of a CSV or COCO results file."""
    names = list(found.images)
    if not names:  # a header only: the run found nothing (an empty shelf is worth an audit too)
        if image_path is None:
            raise InvalidInputError(f"{det_path}: no rows, so no image size either; give the image as well")
        w, h = _size_of(image_path, det_path)
        return ImageBoxes(Path(image_path).name, w, h, np.zeros((0, 4)), np.zeros(0), np.zeros(0, object),
                          path=image_path)
    if image_path is not None:
        key = image_key(Path(image_path).name)
        own, csv_suffix = Path(det_path).name, OUTPUT_SUFFIXES["csv"]
        if (key not in found.images and len(names) == 1 and own.endswith(csv_suffix)
                and names[0] == own[: -len(csv_suffix)] + Path(image_path).suffix):
            # this tool's CSV of a second image of that file name: its rows go by the stem the
            # outputs took (x-3.jpg in x-3.detections.csv), so that the two images' rows stay apart
            key = names[0]
        if key not in found.images:
            shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
            raise InvalidInputError(f"{det_path}: no {rows} for image {key!r} (it has {shown})")
        boxes = found.images[key]
    elif len(names) == 1:
        boxes = found.images[names[0]]
    else:
        raise InvalidInputError(f"{det_path}: {rows} of {len(names)} images; give the IMAGE whose boxes to audit")
    if boxes.width is None or boxes.height is None:
        if image_path is None:
            said = "rows give no image_width/image_height" if rows == "rows" else "COCO results give no image size"
            raise InvalidInputError(f"{det_path}: its {said} for {boxes.name!r}; give the image as well")
        w, h = _size_of(image_path, det_path)
        boxes = replace(boxes, width=w, height=h)
    # without IMAGE, the photo the rows name is looked for (beside the CSV too), as for a JSON
    return replace(boxes, path=image_path or boxes.name)


def _size_of(image_path: str, det_path: str) -> tuple[int, int]:
    """The upright size of IMAGE, which the boxes of ``det_path`` need; one line when it has none."""
    if not _regular_file(image_path):
        why = _stat_error(image_path)
        raise InvalidInputError(f"{image_path}: {'no such image file' if why in (None, 'no such file') else why} "
                                f"(the boxes of {det_path} need its size)")
    size = _upright_size(Path(image_path))
    if size is None:
        raise InvalidInputError(f"{image_path}: cannot tell the image's size (the boxes of {det_path} need it)")
    return int(size[0]), int(size[1])


def _read_yolo(det_path: str, image_path: str | None) -> Any:
    """A YOLO label file (``class cx cy w h [score]`` per line, normalised to the image, as
    Ultralytics' ``save_txt`` writes) for ``image_path``, whose upright size turns it into pixels."""
    if image_path is None:
        raise InvalidInputError(f"{det_path}: YOLO labels are normalised to their image; give the image as well")
    size = _size_of(image_path, det_path)
    refuse_device(det_path)
    try:
        # (utf-8-sig: a byte-order mark made the first line's class "\ufeff0", another class than
        # the rest: a near-copy of its box was kept and counted twice; an outside review)
        text = Path(det_path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InvalidInputError(f"{det_path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{det_path}: cannot read it ({exc})") from None
    cls, vals, _ = parse_yolo_labels(text, det_path, mixed_scores=True)
    w, h = size
    return ImageBoxes(Path(image_path).name, int(w), int(h), yolo_to_xyxy(vals, w, h), vals[:, 4],
                      np.array(cls, dtype=object), path=image_path)


def _upright_size(path: Path) -> tuple[int, int] | None:
    """The upright size of the image at ``path`` from its header (TIFF: the page the engine
    reads), or None when that cannot be told (the full read checks it later)."""
    from ..tiler.readers import open_image
    from ..tiler.readers.opener import TIFF_MAGICS
    from ..tiler.readers.orientation import exif_orientation
    from ..tiler.readers.pillow import open_header

    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
        if magic in TIFF_MAGICS:  # TIFF: only its header is read
            with open_image(path) as src:
                return src.width, src.height
        with open_header(path) as im:  # no Pillow pixel limit: panoramas are far over it
            w, h = im.size
            orient = exif_orientation(im, str(path))  # from the header (getexif() would decode a PNG)
            return (h, w) if orient in (5, 6, 7, 8) else (w, h)
    except Exception:  # not for Pillow (BigTIFF...): the engine's readers decide later
        return None


def _finite_json(value: Any) -> bool:
    """Whether ``value`` makes valid JSON (no NaN or infinity anywhere in it)."""
    try:
        json.dumps(value, allow_nan=False)
    except (ValueError, TypeError):
        return False
    return True


def _range_settings_ok(count_range: Any) -> bool:
    """Whether a detections JSON's count range has the threshold and band the engine can have
    written (``score_thr`` in [0, 1], ``band`` in [0, 0.5]); a range missing them is left to
    :func:`bay_ranges`, which skips it."""
    if not isinstance(count_range, dict):
        return True
    for key, hi in RANGE_LIMITS:
        v = count_range.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and not 0 <= v <= hi:
            return False
    return True


def _near_misses_problem(count_range: Any) -> str | None:
    """What is wrong with a detections JSON's near-miss boxes (``count_range.near_misses``), as
    the audit's own box check says it (not rows of four numbers, x2 < x1 or y2 < y1), or None. A
    range without near misses is left to :func:`bay_ranges`, which skips it (an older file)."""
    near = count_range.get("near_misses") if isinstance(count_range, dict) else None
    if not isinstance(near, dict) or "boxes" not in near:
        return None
    try:
        as_boxes(near["boxes"], "boxes")
    except InvalidInputError as exc:
        return str(exc)
    return None


def bay_ranges(result: Any, scores: np.ndarray, count_range: Any) -> tuple[Any, ...] | None:
    """Each bay's count range, from the image's (as written in the detections JSON, with its
    near misses), or None when the detection run did not record one."""
    if not isinstance(count_range, dict):
        return None
    near = count_range.get("near_misses")
    try:
        thr, band = float(count_range["score_thr"]), float(count_range["band"])
        near_xyxy = np.asarray(near["boxes"] if isinstance(near, dict) else [], np.float64).reshape(-1, 4)
    except (KeyError, TypeError, ValueError):
        return None
    if not isinstance(near, dict) or len(scores) != len(result.xyxy):
        return None
    ranges = part_count_ranges(result, scores, near_xyxy, score_thr=thr, band=band)
    # one found bay holding every box is the image: its range is the image's, merged at each
    # threshold as the detection run merged it, not the per-bay approximation (a newcomer review:
    # "94 products (74-121)" from detect, "bay 1: 94 products (70-122)" from the audit)
    counts = _counts(count_range)
    if counts is not None and len(ranges) == 1 and result.parts[0].kind != "region" \
            and len(result.parts[0].index) == len(result.xyxy) == counts[1]:
        ranges = (CountRange(score_thr=thr, band=band, low=counts[0], count=counts[1], high=counts[2]),)
    return ranges


def _counts(count_range: Any) -> tuple[int, int, int] | None:
    """The (at the upper threshold, at the run's, at the lower) counts of a detections JSON's
    ``count_range``, or None when it has none that read as three numbers."""
    try:
        lo, n, hi = (int(v) for v in count_range["counts"])
    except (KeyError, TypeError, ValueError):
        return None
    return lo, n, hi


def _range_text(info: dict[str, Any], products: int) -> str:
    """" (lo-hi)" of the image's count range when the detection run recorded one for these very
    products, else ""."""
    counts = _counts(info.get("count_range"))
    return f" ({counts[0]}-{counts[2]})" if counts is not None and counts[1] == products else ""


def _without_boxes(count_range: Any) -> Any:
    """The count range for the audit JSON's ``image``: the figures, not the near-miss boxes."""
    if not isinstance(count_range, dict):
        return count_range
    return {k: v for k, v in count_range.items() if k != "near_misses"}


def count_warning(count_range: Any) -> str | None:
    """The warning for a detection run whose count was flagged uncertain (its ``count_range``
    as written in the detections JSON), else None."""
    if not isinstance(count_range, dict) or count_range.get("uncertain") is not True:
        return None
    counts = _counts(count_range)
    if counts is None:
        return None
    try:
        t_hi, _, t_lo = (float(v) for v in count_range["at_scores"])
    except (KeyError, TypeError, ValueError):
        return None
    lo, n, hi = counts
    return (f"the detector is unsure of this photo: {n} products, but {lo} at score {t_hi:g} and {hi} at "
            f"{t_lo:g}; products it missed show as gaps, so check the gaps by eye before acting on them")


def _stat_error(path: str) -> str | None:
    """Why ``path`` cannot be looked at (``no such file``, ``Permission denied``, ``File name too
    long``...), None when it can."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return exc.strerror or str(exc)
    except ValueError as exc:  # (a NUL in the name)
        return str(exc)
    return None


def _regular_file(path: str) -> bool:
    """Whether ``path`` is a regular file; False where that cannot be told (a file in a folder
    the user may not enter, a name too long), which ``Path.is_file`` raised for (Python 3.11,
    3.12)."""
    st = stat_or_none(path)
    return st is not None and stat.S_ISREG(st.st_mode)


def _refuse_special(image_path: str) -> None:
    """Raise for a photo path that is there but is no regular file: a pipe (waited on), a device
    such as /dev/zero. A missing one is said where it is needed."""
    st = stat_or_none(image_path)
    if st is None:  # not there, or cannot be told (a folder the user may not enter): said later
        return
    mode = st.st_mode
    if stat.S_ISDIR(mode):
        raise ImageReadError(f"{image_path}: is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise ImageReadError(f"{image_path}: not a regular file (a device, pipe or socket), expected an image file")


def _detect(args: argparse.Namespace, image_path: str) -> tuple[int, Any]:
    _refuse_special(image_path)
    why = _stat_error(image_path)
    if why is not None:  # (a link to nowhere, a loop of links, no permission, a name too long...)
        raise ImageReadError(f"{image_path}: {why}")
    tiling, merge, run = specs_from_args(args)
    try:
        detector, job = build_detector(detector_spec_from_args(args), Job(tiling=tiling, merge=merge, run=run))
    except (DensedetError, OSError):
        raise
    except Exception as exc:  # third-party model code
        error(PROG, f"detector {args.detector!r}: {exc}")
        return EXIT_USAGE, None
    warn_ap_threshold(args)
    try:
        res = detect_image(image_path, detector, tiling=job.tiling, merge=job.merge, run=job.run)
    except (InvalidInputError, ImageReadError, OSError):
        raise
    except Exception as exc:  # the detector's own failure says so; anything else is named by its type
        logging.getLogger("densedet_tile").debug("%s failed", image_path, exc_info=True)
        error(PROG, error_line(image_path, exc)
              + ("" if args.debug or isinstance(exc, DensedetError) else " (--debug for the traceback)"))
        return EXIT_FAILED, None
    # the settings the boxes were found with (tile, merge, threshold...), as a detections JSON keeps them
    info = {"path": res.path, "name": res.name, "width": res.width, "height": res.height, "model": res.model,
            "settings": as_json(res.settings), "count_range": count_range_json(res)}
    # the boxes and scores as the detections JSON holds them (0.01 px; the shortest decimal of each
    # float32 score), so that auditing that JSON later gives this very audit (an outside review:
    # a panorama's bays moved with the last digits of its boxes, 6 bays live and 4 from its JSON)
    return EXIT_OK, (box_values(res.detections.xyxy), res.width, res.height, info,
                     np.asarray(score_texts(res.detections.scores), dtype=np.float64))
