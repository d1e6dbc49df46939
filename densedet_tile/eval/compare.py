"""Pairing predictions with ground truth, and a detector run tiled against untiled."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..io import YOLO_CLASSES_FILE, box_values, label_name, output_class_names, score_values
from ..types import RunSpec, TileSpec
from .coco import DEFAULT_MAX_DETS, CocoMetrics, EvalImage, evaluate_boxes, over_max_dets
from .formats import BoxSet, ImageBoxes, class_key, image_key, undecoded_bytes

__all__ = ["pair_images", "uses_class_agnostic", "compare_tiled_untiled", "CompareRun"]


def _gt_classes(gt: BoxSet) -> list[str]:
    return list(dict.fromkeys(list(gt.categories) + [str(c) for im in gt.images.values() for c in im.classes]))


#: The start of a note that is a warning: something is likely wrong with the input (the command
#: line says it as a warning, not a note).
WARNING = "warning: "


def _not_scored(n: int) -> str:
    return (f"{n} prediction{' has' if n == 1 else 's have'} a class the ground truth does not know and "
            f"{'was' if n == 1 else 'were'} not scored")


def _few(names: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(repr(str(c)) for c in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _unknown_classes(gt: BoxSet, pred: BoxSet, gt_classes: list[str], ids: dict[str, int]) -> str:
    """The classes of ``pred`` that ``gt`` lacks and the ones it has (a few of each), and how to
    match them."""
    theirs = list(dict.fromkeys(str(c) for p in pred.images.values() for c in p.classes if class_key(c) not in ids))
    where = f"(theirs: {_few(theirs)}; the ground truth's: {_few(gt_classes)})"
    if pred.kind == "coco-results":  # (class-agnostic, pycocotools leaves other categories out too)
        return f"{where}; COCO results name classes by category_id: give them the ground truth's ids"
    if pred.kind == "run":  # --compare: the detector's own names
        return f"{where}; pass --class-agnostic to score the boxes alone"
    if pred.kind == "yolo":
        names = Path(pred.source) / YOLO_CLASSES_FILE
        fix = (f"the names in {names} must be the ground truth's" if names.is_file() else
               f"YOLO labels number their classes: put a {YOLO_CLASSES_FILE} beside them naming the ground truth's "
               "classes (line k for class k)")
    else:
        fix = "name the classes as the ground truth does"
    return f"{where}; {fix}, or pass --class-agnostic to score the boxes alone"


def uses_class_agnostic(gt: BoxSet, class_agnostic: bool | None = None, pred: BoxSet | None = None) -> bool:
    """Whether :func:`pair_images` scores ``gt`` class-agnostically: as asked, or (``None``)
    when the ground truth has at most one class, unless ``pred`` are COCO results against a
    COCO ground truth some of whose category ids are the ground truth's own: ids are exact
    there, and results of other ids are left out, as pycocotools does."""
    if class_agnostic is not None:
        return bool(class_agnostic)
    classes = _gt_classes(gt)
    if len(classes) > 1:
        return False
    if pred is not None and pred.kind == "coco-results" and gt.kind == "coco" and classes:
        return not any(str(c) == classes[0] for im in pred.images.values() for c in im.classes)
    return True


def _by_class(im: ImageBoxes, rank: np.ndarray) -> ImageBoxes:
    """``im`` with its boxes stably sorted by ``rank`` (their class's place in the categories)."""
    order = np.argsort(rank, kind="stable")
    if np.array_equal(order, np.arange(len(order))):
        return im

    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[order]

    return replace(im, xyxy=im.xyxy[order], scores=im.scores[order], classes=im.classes[order], area=pick(im.area),
                   crowd=pick(im.crowd), wh=pick(im.wh))


def pair_images(
    gt: BoxSet,
    pred: BoxSet,
    *,
    class_agnostic: bool | None = None,
    check_sizes: bool = True,
) -> tuple[list[EvalImage], list[str]]:
    """Match predictions to ground-truth images by file name and map class names to ids.

    Returns the :class:`EvalImage` list (ground-truth order; an image without predictions has
    none) and notes worth telling the user. ``class_agnostic=None`` means: agnostic when the
    ground truth has a single class (SKU-110K's ``object`` versus our ``product``), else classes
    are matched by name. Class-agnostic, an image's boxes are taken class by class in the ground
    truth's category order (pycocotools' ``useCats=0``; against one class, predictions in file
    order). Raises :class:`InvalidInputError` for predictions of an image the
    ground truth lacks, (``check_sizes``) an image whose width/height differ between the two,
    or predictions none of whose classes the ground truth knows (nothing could be scored: YOLO
    labels without their ``classes.txt`` against named classes); when most of them are of
    such classes, the note saying so is a warning (it starts with :data:`WARNING`).
    """
    notes: list[str] = []
    extra = [k for k in pred.images if k not in gt.images]
    # an image with no predictions has nothing to score: a photo of an empty shelf in a run's
    # folder of JSONs (or its empty YOLO file) cannot be in a SKU-110K CSV, which lists boxes
    # only, and refusing it made the folder unscorable (an outside review)
    empty = [k for k in extra if len(pred.images[k].xyxy) == 0]
    if empty:
        gone = set(empty)
        extra = [k for k in extra if k not in gone]
        pred = replace(pred, images={k: v for k, v in pred.images.items() if k not in gone})
        notes.append(f"{len(empty)} image(s) without predictions and not in the ground truth left out "
                     f"({', '.join(empty[:3])}{' ...' if len(empty) > 3 else ''})")
    if extra:
        more = f" (and {len(extra) - 1} more)" if len(extra) > 1 else ""
        # a CSV naming its images in bytes that are not UTF-8 (Latin-1, from an older tool) keeps
        # them as such, as the file system names such files: say so when that is the likely cause
        odd = [k for src in (gt, pred) for k in src.images if undecoded_bytes(k)]
        hint = (f"; {odd[0]!r} is named in bytes that are not UTF-8 (Latin-1?): write both files in one encoding"
                if odd else "")
        twins = [k for k in gt.images if k != extra[0] and image_key(k) == extra[0]]
        if twins:
            hint = (f" by that name alone: it has {len(twins)} images named {extra[0]} in different folders "
                    f"({', '.join(twins[:3])}); name them by their path or, in COCO results, by image id")
        as_number = int(extra[0]) if extra[0].isascii() and extra[0].isdigit() else None
        if as_number is not None and as_number in gt.coco_images:
            # a COCO result's image_id written as the text "1" where the ground truth's id is 1:
            # ids match as written (as in pycocotools), so the text was taken for a file name
            hint = (f" (the ground truth has an image of id {as_number}, a number: a result's image_id "
                    f"\"{extra[0]}\" is text, taken for a file name; write it as a number)")
        raise InvalidInputError(
            f"{pred.source}: predictions for image {extra[0]}{more}, which is not in the ground truth {gt.source}{hint}"
        )
    if check_sizes:
        for k, p in pred.images.items():
            g = gt.images[k]
            if None not in (p.width, p.height, g.width, g.height) and (p.width, p.height) != (g.width, g.height):
                raise InvalidInputError(
                    f"{pred.source}: image {k} is {p.width}x{p.height} in the predictions but {g.width}x{g.height} "
                    f"in the ground truth {gt.source} (EXIF rotation or resizing?); pass --ignore-size to evaluate anyway"
                )
    gt_classes = _gt_classes(gt)
    agnostic = uses_class_agnostic(gt, class_agnostic, pred)
    if agnostic and class_agnostic is None and gt_classes:
        notes.append(f"ground truth has one class ({gt_classes[0]!r}): every prediction counts as it")
    if not agnostic and pred.kind == "coco-results" and gt.kind != "coco":
        raise InvalidInputError(
            f"{pred.source}: COCO results name classes by category_id only, and the ground truth {gt.source} has "
            f"{len(gt_classes)} classes by name, so they cannot be matched; give --class-agnostic, a COCO JSON "
            "ground truth, or the predictions as detections JSON or CSV (which carry class names)"
        )
    ids: dict[str, int] = {}
    for i, c in enumerate(gt_classes):
        k = class_key(c)
        if k in ids:  # classes match by their words: two such would merge without a word
            raise InvalidInputError(f"{gt.source}: classes {gt_classes[ids[k]]!r} and {c!r} are one name but for "
                                    "spaces; classes are matched by name, so give each class its own name")
        ids[k] = i
    # predictions left unscored: of another COCO category, class-agnostic (as pycocotools leaves
    # them out), or of a class the ground truth lacks, classes matched by name
    unscored = 0
    # COCO results against COCO ground truth of several classes, class-agnostic (or of one class
    # with --class-agnostic given): pycocotools' useCats=0 still takes only the ground truth's
    # categories, so a result of another category_id is left out (against one class without the
    # option, or with class names, every prediction counts: SKU-110K's "object" and our "product")
    coco_agnostic = (agnostic and (len(ids) > 1 or class_agnostic is True) and pred.kind == "coco-results"
                     and gt.kind == "coco")
    out: list[EvalImage] = []
    for k, g in gt.images.items():
        p = pred.images.get(k)
        gl = np.array([ids[class_key(c)] for c in g.classes], dtype=np.int64)
        dwh = None
        if agnostic:
            # pycocotools' useCats=0 takes an image's boxes category by category (in id order,
            # the ground truth's category order here; file order within one): the order decides
            # which ground truth wins an equal IoU and which detection goes first on a tied score
            g = _by_class(g, gl)
        if p is None:
            dx, ds, dl = np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)
        elif agnostic:
            if len(ids) > 1 or coco_agnostic:  # (a class the ground truth lacks after its own)
                rank = np.array([ids.get(class_key(c), len(gt_classes)) for c in p.classes], dtype=np.int64)
                if coco_agnostic and (rank == len(gt_classes)).any():
                    known = rank < len(gt_classes)
                    unscored += int((~known).sum())
                    p = replace(p, xyxy=p.xyxy[known], scores=p.scores[known], classes=p.classes[known],
                                wh=None if p.wh is None else p.wh[known])
                    rank = rank[known]
                p = _by_class(p, rank)
            # else every prediction counts as the one class, in file order
            dx, ds, dl, dwh = p.xyxy, p.scores, np.zeros(len(p.xyxy), np.int64), p.wh
        else:
            lab = np.array([ids.get(class_key(c), -1) for c in p.classes], dtype=np.int64)
            known = lab >= 0
            unscored += int((~known).sum())
            dx, ds, dl = p.xyxy[known], p.scores[known], lab[known]
            dwh = None if p.wh is None else p.wh[known]
        if agnostic:
            gl = np.zeros(len(g.xyxy), np.int64)
        out.append(EvalImage(k, g.xyxy, gl, dx, ds, dl, gt_area=g.area, gt_crowd=g.crowd, gt_wh=g.wh, dt_wh=dwh))
    total = sum(len(p.classes) for p in pred.images.values())
    if unscored:
        told = _unknown_classes(gt, pred, gt_classes, ids)
        if unscored == total:  # nothing to score: AP 0 from names that do not match
            raise InvalidInputError(f"{pred.source}: none of its {total} prediction{'' if total == 1 else 's'} has a "
                                    f"class the ground truth {gt.source} knows {told}")
        n = unscored
        if 2 * n > total:  # most of them: nearly the refusal above, though something was scored
            notes.append(f"{WARNING}{_not_scored(n)}, of {total} {told}")
        else:
            notes.append(_not_scored(n))
    # an image with no boxes in either is scored right as it is (nothing to find, nothing
    # found): only one with boxes to find (crowd boxes are not) has them all missed (an outside review)
    unpredicted = [k for k, g in gt.images.items() if k not in pred.images
                   and (len(g.xyxy) if g.crowd is None else int(np.count_nonzero(~np.asarray(g.crowd, bool))))]
    if unpredicted:
        more = f" and {len(unpredicted) - 1} more" if len(unpredicted) > 1 else ""
        notes.append(f"{len(unpredicted)} ground-truth image{' has' if len(unpredicted) == 1 else 's have'} no "
                     f"predictions in {pred.source} "
                     f"({unpredicted[0]}{more}): all their boxes count as missed")
    if not pred.scored:
        notes.append(f"{pred.source} has no score column: every prediction scored 1.0, so AP follows file order")
    return out, notes


@dataclass(frozen=True)
class CompareRun:
    """One way of running the detector over the folder and what it scored.

    The tiling fields say what ran (the engine's settings of each image), which may differ
    from what was asked: a detector's ``photo_scale`` rule, a ``scale`` or ``tile="auto"``
    resize the tiles. ``tile``/``overlap`` are the tile side (image pixels) and overlap every
    image ran with, None when the images differ (``tiles`` then lists the sides); the untiled
    run's tile is the image's longer side. ``num_tiles`` counts the tiles over all images and
    ``scale`` names how the scale was set (the distinct ``settings["scale"]["source"]``
    values, in image order: ``"photo rule"``, ``"given"``, ``"auto"``, ``"input_size"``,
    ``"tile"`` for the tiling as given, ``"whole image"`` for the untiled run).
    """

    name: str
    tile: int | None
    overlap: float | None
    seconds: float
    metrics: CocoMetrics
    tiles: tuple[int, ...] = ()
    num_tiles: int = 0
    scale: tuple[str, ...] = ()
    #: whether boxes were matched whatever their class (asked, or decided by the ground truth)
    class_agnostic: bool = False
    #: images holding more ground-truth boxes and predictions of one class than the last
    #: ``max_dets`` lets AP count, and the most such boxes (:func:`~densedet_tile.eval.coco.over_max_dets`)
    over_max_dets: tuple[int, int] = (0, 0)


def _untiled(src: Any, detector: Any, merge: Any, run: RunSpec) -> Any:
    """The image ``src`` as one tile as large as it, resized to the detector's input size (the
    run's ``input_size`` when given): the engine's stages without its scale choice, which
    would apply a detector's ``photo_scale`` rule and cut the photo into tiles again."""
    from ..pipeline import describe_detector, finish, plan, predict_tiles

    started = time.perf_counter()
    whole = TileSpec(tile=max(int(src.width), int(src.height), 32), overlap=0.0)
    tiles = plan(src, whole)
    # a scale asked for the tiled run does not apply here: the image reaches the model whole
    preds = predict_tiles(src, tiles, detector, replace(run, scale=None))
    return finish(src, tiles, preds, tiling=whole, merge=merge, model=describe_detector(detector), started=started,
                  extra_settings={"scale": {"source": "whole image", "value": None}})


def _one_or_none(values: list[Any]) -> Any:
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _only_classes(gt: BoxSet, keep: Sequence[str]) -> BoxSet:
    """``gt`` with the boxes of the classes ``keep`` only (names), its categories likewise.
    None of them in ``gt`` is an :class:`InvalidInputError` naming the classes there are."""
    have = _gt_classes(gt)
    wanted = [c for c in have if c in set(keep)]
    if not wanted:
        shown = ", ".join(have[:30]) + (", ..." if len(have) > 30 else "")
        raise InvalidInputError(f"classes: the ground truth {gt.source} has none of {', '.join(dict.fromkeys(keep))} "
                                f"(its classes: {shown})")
    images = {}
    for k, im in gt.images.items():
        m = np.isin(im.classes.astype(str), wanted)
        images[k] = replace(im, xyxy=im.xyxy[m], scores=im.scores[m], classes=im.classes[m],
                            area=None if im.area is None else im.area[m], crowd=None if im.crowd is None else im.crowd[m],
                            wh=None if im.wh is None else im.wh[m])
    return BoxSet(images=images, categories=[c for c in gt.categories if c in wanted] or wanted, scored=gt.scored,
                  source=gt.source, kind=gt.kind, coco_images=gt.coco_images,
                  coco_categories={i: c for i, c in gt.coco_categories.items() if c in wanted})


def compare_tiled_untiled(
    images: Sequence[str | Path],
    gt: BoxSet,
    detector: Any,
    *,
    tiling: TileSpec | None = None,
    merge: Any = None,
    run: RunSpec | None = None,
    max_dets: Sequence[int] = DEFAULT_MAX_DETS,
    class_agnostic: bool | None = None,
    check_sizes: bool = True,
) -> list[CompareRun]:
    """Run ``detector`` over ``images`` tiled (``tiling``, as :func:`densedet_tile.detect`
    runs it: a ``photo_scale`` rule, ``scale`` or ``tile="auto"`` may change the tile) and
    untiled (one tile as large as the image, which the engine resizes to the detector's
    ``input_size``; never scaled or cut), evaluate both against ``gt`` and return the two runs
    with the tiling each actually ran (:class:`CompareRun`). Seconds are detection wall time
    summed over images. ``check_sizes``: an image whose size differs from the ground truth's
    (EXIF rotation, a resized copy) is refused before any detector runs (``--ignore-size``
    evaluates it anyway).
    """
    from ..detector.base import classes_of
    from ..pipeline import describe_detector, detect_image, specs_from
    from ..tiler.readers import open_image

    tiling, merge, run = specs_from(tiling, merge, run)
    # classes by the names the run's detections JSON gives them (a detector without names
    # calls label 0 "product"), so that a compare run scores as `detect` then `eval` would
    names = output_class_names(describe_detector(detector))
    agn = class_agnostic
    if run.classes is not None and len(_gt_classes(gt)) > 1:
        # the detector's other classes are dropped: so are the ground truth's, or each would
        # count as all missed (checked before any image runs), class-agnostic or not; classes
        # stay matched by name when only one is left, unless class-agnostic was asked
        gt = _only_classes(gt, [label_name(names, i) for i in classes_of(detector, run.classes) or ()])
        agn = False if agn is None else agn
    # an image the ground truth does not name cannot be scored: told before two detector passes
    # over every image, not after them (the command runs only the images it names)
    unknown = [str(p) for p in images if image_key(Path(p).name) not in gt.images]
    if unknown:
        more = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise InvalidInputError(f"{unknown[0]}{more}: not in the ground truth {gt.source}, so it cannot be scored; "
                                "leave it out")
    if check_sizes:  # told before two detector passes over every image, not after them
        for path in images:
            g = gt.images.get(image_key(Path(path).name))
            if g is None or None in (g.width, g.height):
                continue
            with open_image(path, max_pixels=run.max_pixels) as src:
                if (src.width, src.height) != (g.width, g.height):
                    raise InvalidInputError(
                        f"{path}: is {src.width}x{src.height} but {g.width}x{g.height} in the ground truth "
                        f"{gt.source} (EXIF rotation or resizing?); pass --ignore-size to evaluate anyway")
    runs: dict[str, dict[str, ImageBoxes]] = {"tiled": {}, "untiled": {}}
    secs = {"tiled": 0.0, "untiled": 0.0}
    ran: dict[str, list[dict[str, Any]]] = {"tiled": [], "untiled": []}
    for path in images:
        key = image_key(Path(path).name)
        with open_image(path, max_pixels=run.max_pixels) as src:
            w, h = src.width, src.height
            for name in ("tiled", "untiled"):
                t0 = time.perf_counter()
                if name == "tiled":
                    res = detect_image(src, detector, tiling=tiling, merge=merge, run=run)
                else:
                    res = _untiled(src, detector, merge, run)
                secs[name] += time.perf_counter() - t0
                det = res.detections
                ran[name].append({"tile": int(res.settings["tile"]), "overlap": float(res.settings["overlap"]),
                                  "tiles": res.num_tiles, "scale": str(res.settings["scale"]["source"])})
                run_names = output_class_names(res.model)
                cls = np.array([label_name(run_names, int(v)) for v in det.labels], dtype=object)
                # boxes and scores as the run's detections JSON holds them (what eval of it scores)
                runs[name][key] = ImageBoxes(key, w, h, box_values(det.xyxy),
                                             np.array(score_values(det.scores), dtype=np.float64), cls)
    out = []
    for name in ("tiled", "untiled"):
        pred = BoxSet(images=runs[name], source=f"{name} run", kind="run")
        # the ground truth's own order (as eval of the run's outputs, and pycocotools, take it):
        # with scores tied across images the order decides which box counts first (an outside
        # review: the tiled row differed from detect + eval in the fourth decimal)
        sub = BoxSet(images={k: v for k, v in gt.images.items() if k in runs[name]}, categories=gt.categories,
                     source=gt.source, kind=gt.kind)
        pairs, _ = pair_images(sub, pred, class_agnostic=agn, check_sizes=check_sizes)
        m = evaluate_boxes(pairs, max_dets=max_dets)
        done = ran[name]
        out.append(CompareRun(
            name, _one_or_none([r["tile"] for r in done]), _one_or_none([r["overlap"] for r in done]), secs[name], m,
            tiles=tuple(sorted({r["tile"] for r in done})), num_tiles=sum(r["tiles"] for r in done),
            scale=tuple(dict.fromkeys(r["scale"] for r in done)),
            class_agnostic=uses_class_agnostic(sub, agn, pred),
            over_max_dets=over_max_dets(pairs, m.max_dets[-1]),
        ))
    return out


