"""scripts/eval_audit_real.py: its row matching, its perfect-box mode, and its refusal without photos."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "eval_audit_real.py"


@pytest.fixture(scope="module")
def ev():
    spec = importlib.util.spec_from_file_location("_eval_audit_real", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def slow_matches(found: np.ndarray, truth: np.ndarray, thr: float) -> int:
    """Greedy one-to-one matching written out pair by pair."""
    pairs = []
    for i, a in enumerate(found):
        for j, b in enumerate(truth):
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if union > 0 and inter / union >= thr:
                pairs.append((-inter / union, i, j))
    used_i, used_j, n = set(), set(), 0
    for _, i, j in sorted(pairs):
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            n += 1
    return n


@pytest.mark.parametrize("seed", range(10))
def test_row_matching_is_one_to_one_and_matches_a_slow_reference(ev, seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = np.column_stack([rng.uniform(0, 500, (12, 2)), rng.uniform(0, 500, (12, 2)) + 600])
    truth = np.column_stack([truth[:, 0], truth[:, 1], truth[:, 0] + rng.uniform(50, 300, 12), truth[:, 1] + rng.uniform(20, 80, 12)])
    found = np.concatenate([truth + rng.normal(0, 15, truth.shape), truth[:4] + rng.normal(0, 5, (4, 4))])
    m = ev.match_rows(found, truth)
    assert len({f for f, _, _ in m}) == len({t for _, t, _ in m}) == len(m)
    assert all(iou >= 0.5 for _, _, iou in m)
    assert len(m) == slow_matches(found, truth, 0.5)


def test_perfect_box_mode_runs_and_scores_the_geometry(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--synthetic", "3"]) == 0
    out = capsys.readouterr().out
    assert "row recall" in out and "gaps_across_uprights" in out


def test_missing_photos_exit_2_with_a_message(ev, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ev.main(["--photos", str(tmp_path / "nowhere")])
    assert exc.value.code == 2
    assert "not available" in capsys.readouterr().err


def test_the_contact_sheet_is_refused_inside_the_repository(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--synthetic", "1", "--sheet", str(SCRIPT.parent / "sheet.jpg")]) == 2
    assert not (SCRIPT.parent / "sheet.jpg").exists()


def _aisle_photo(photos: Path, stem: str, seed: int):
    """A generated aisle saved as ``photos/<stem>.jpg`` with its rows as the real photos' human
    labels (``shelf-rows/<stem>.txt``, YOLO boxes); returns the aisle."""
    from PIL import Image

    from densedet_tile.synth.audit_aisles import render_aisle, synthetic_aisle

    a = synthetic_aisle(np.random.default_rng(seed), width=2400, n_rows=3, tilt_deg=0.0, jitter=0.0)
    Image.fromarray(render_aisle(a)).save(photos / f"{stem}.jpg", quality=80)
    lines = []
    for r in range(int(a.row_of.max()) + 1):
        b = a.xyxy[a.row_of == r]
        x0, y0, x1, y1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        lines.append(f"0 {(x0 + x1) / 2 / a.width} {(y0 + y1) / 2 / a.height} {(x1 - x0) / a.width} "
                     f"{(y1 - y0) / a.height}")
    (photos / "shelf-rows" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return a


def test_real_photo_mode_splits_rows_by_the_engines_count_flag(ev, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A generated folder in the real photos' layout; the detections JSONs carry count ranges."""
    import json

    photos, dets = tmp_path / "photos", tmp_path / "dets"
    (photos / "shelf-rows").mkdir(parents=True)
    dets.mkdir()
    for k, flag in enumerate((False, True, None)):
        stem = f"p{k}"
        a = _aisle_photo(photos, stem, 30 + k)
        doc = {"schema": "densedet-tile/detections@1",
               "image": {"path": str(photos / f"{stem}.jpg"), "name": f"{stem}.jpg", "width": a.width, "height": a.height},
               "settings": {}, "model": {}, "timings": {}, "num_tiles": 1,
               "boxes": np.round(a.xyxy, 2).tolist(), "scores": [0.9] * len(a.xyxy), "labels": [0] * len(a.xyxy),
               "categories": {"0": "product"},
               "count_range": None if flag is None else {"counts": [1, 2, 3], "uncertain": flag}}
        (dets / f"{stem}.detections.json").write_text(json.dumps(doc))
    assert ev.main(["--photos", str(photos), "--dets", str(dets), "--json", str(tmp_path / "rep.json")]) == 0
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert [r["uncertain"] for r in rep["per_photo"]] == [False, True, None]
    split = rep["by_count_flag"]
    assert split["certain"]["photos"] == split["uncertain"]["photos"] == 1
    assert split["certain"]["label_rows"] == 3 and split["certain"]["recall"] == 1.0
    assert "flags uncertain: 1, row recall 1.000" in capsys.readouterr().out


def test_cached_detections_of_another_engine_are_named(ev, tmp_path):
    # The audit's real-photo figures once came from a cache made by an earlier engine: a cached
    # detections JSON whose model or settings differ from today's is named (another detector's
    # boxes are welcome there, so it is a note, not a refusal).
    import json

    img = np.full((300, 400, 3), 128, np.uint8)
    img[100:200, 50:120] = 30
    ev.cache_detections(img, tmp_path / "a.detections.json")  # as the script caches a photo's boxes
    current = ev.engine_fingerprint()
    assert ev.check_cached(tmp_path, ["a", "missing"], current) is None  # run-only settings differ: fine
    doc = json.loads((tmp_path / "a.detections.json").read_text())
    doc["model"]["info"]["threads"] = 7  # the same engine run with other threads (taskset)
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    assert ev.check_cached(tmp_path, ["a"], current) is None
    doc = json.loads((tmp_path / "a.detections.json").read_text())
    # the merge's tolerances as they ran follow the photo's scale (a run-only setting); what was
    # asked of the merge is compared through the request
    doc["settings"]["merge"]["edge_tol"] = 19.77
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    assert ev.check_cached(tmp_path, ["a"], current) is None
    doc["settings"]["requested"]["job"]["merge"]["edge_tol"] = 8.0
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    why = ev.check_cached(tmp_path, ["a"], current)
    assert why is not None and "a.detections.json" in why and "merge.edge_tol" in why
    doc["settings"]["requested"]["job"]["merge"]["edge_tol"] = 16.0
    doc["settings"]["merge"]["edge_tol"] = 16.0
    doc["model"]["info"]["precision"] = "fp32"
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    why = ev.check_cached(tmp_path, ["a"], current)
    assert "other model" in why and "info.precision: 'fp32' there, 'int8' now" in why
    # the tiles the photo rule cut for another image size are no other settings; a cache made
    # before the rule reached its images (at the tile's scale) is
    doc["model"]["info"]["precision"] = "int8"
    doc["settings"].update(tile=1003, overlap=0.25, input_size=None)
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    assert ev.check_cached(tmp_path, ["a"], current) is None
    doc["settings"]["scale"] = {"source": "tile", "value": None}
    (tmp_path / "a.detections.json").write_text(json.dumps(doc))
    assert "scale.source: 'tile' there, 'photo rule' now" in ev.check_cached(tmp_path, ["a"], current)


def test_a_cache_asked_for_another_tile_overlap_threshold_model_or_rules_is_named(ev, tmp_path):
    # The check left out the tile, overlap and input size (the photo rule decides those for each
    # image's size), so a cache of `densedet-tile --overlap 0.1 --out` passed as today's engine's;
    # it now compares the request each cache records, as a resumed batch does.
    import json
    from dataclasses import replace

    import densedet_tile as dt
    from densedet_tile import RunSpec, TileSpec
    from densedet_tile.detector.registry import DetectorSpec
    from densedet_tile.io import write_json
    from densedet_tile.runner import RULES_VERSION, Job, request_key

    img = np.full((300, 400, 3), 128, np.uint8)
    img[100:200, 50:120] = 30
    res = dt.detect_image(img)
    current = ev.engine_fingerprint()
    path = tmp_path / "a.detections.json"

    def check(job: Job, edit=None) -> str | None:
        key = request_key(job, DetectorSpec())
        if edit is not None:
            edit(key)
        write_json(replace(res, settings={**res.settings, "requested": {"job": key}}), path)
        return ev.check_cached(tmp_path, ["a"], current)

    assert check(Job()) is None  # the defaults, as a densedet-tile run records them
    for job, said in ((Job(tiling=TileSpec(overlap=0.1)), "tiling.overlap: 0.1 there, 0.2 now"),
                      (Job(tiling=TileSpec(tile=640)), "tiling.tile: 640 there, 1280 now"),
                      (Job(run=RunSpec(score_thr=0.3)), "run.score_thr: 0.3 there, None now"),
                      (Job(run=RunSpec(input_size=800)), "run.input_size: 800 there, None now")):
        why = check(job)
        assert why is not None and "a.detections.json" in why and "other settings" in why and said in why, why
    why = check(Job(), lambda key: key["detector"].update(weights="0" * 16))  # other shipped weights
    assert f"detector.weights: '{'0' * 16}' there" in why
    why = check(Job(), lambda key: key.update(rules=RULES_VERSION - 1))
    assert f"another engine's rules (rules {RULES_VERSION - 1} there, {RULES_VERSION} now)" in why
    # a cache that records no request (the script's before this check, or another tool's) is named
    write_json(res, path)
    assert "records no request" in ev.check_cached(tmp_path, ["a"], current)
    # the note names the first, and says whether it is one of a few or the whole cache
    write_json(res, tmp_path / "b.detections.json")
    assert ev.check_cached(tmp_path, ["a", "b", "c"], current).endswith("(2 of 2 cached files are stale)")


def two_labelled_bays(rng: np.random.Generator) -> np.ndarray:
    """Human-style row boxes: two bays of four shelves side by side, their rows meeting near
    x = 1000 (each end drawn within 12 px of it, as hands draw them)."""
    rows = []
    for r in range(4):
        top = 100 + r * 300
        rows.append([20, top, 1000 + rng.uniform(-12, 12), top + 260])
        rows.append([1000 + rng.uniform(-12, 12), top + 5, 1980, top + 265])
    return np.array(rows)


def test_label_boxes_fill_each_row_up_to_a_straight_upright(ev) -> None:
    truth = two_labelled_bays(np.random.default_rng(0))
    a = ev.label_boxes(truth, np.zeros((0, 4)), np.random.default_rng(1), 2000, 1400, upright=0.2, jitter=0.0)
    assert len(a) >= 8 * 5  # each row of 980 px holds five products or more
    cx, cy = (a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2
    for x0, y0, x1, y1 in truth:  # every row filled, and its boxes stand within its band
        mine = (cy > y0) & (cy < y1) & (cx > x0 - 30) & (cx < x1 + 30)
        assert mine.sum() >= 5
        assert np.all(a[mine, 1] >= y0 - 1e-6) and np.all(a[mine, 3] <= y1 + 1e-6)
    # one upright for both bays: a straight line through the middles of the rows' junctions (the
    # ends were drawn up to 24 px apart), each row stopping half the upright from it, the upright
    # 0.2 of the row's product width
    ends, mids_y = [], []
    for side, rows in ((0, truth[::2]), (1, truth[1::2])):
        for _, y0, _, y1 in rows:
            mine = (cy > y0) & (cy < y1) & ((cx < 1000) if side == 0 else (cx > 1000))
            w = float(np.median(a[mine, 2] - a[mine, 0]))
            end = a[mine, 2].max() + 0.1 * w if side == 0 else a[mine, 0].min() - 0.1 * w
            ends.append(end)
            mids_y.append((y0 + y1) / 2)
    ends, mids_y = np.array(ends), np.array(mids_y)
    fit = np.polyval(np.polyfit(mids_y, ends, 1), mids_y)
    assert np.all(np.abs(ends - fit) < 0.03 * np.median(a[:, 2] - a[:, 0])), ends - fit
    assert np.all(np.abs(ends - 1000) < 12)
    # a row the labellers ended well short of the upright (a fridge's door frame) keeps its end
    short = truth.copy()
    short[2, 2] = 880.0
    b = ev.label_boxes(short, np.zeros((0, 4)), np.random.default_rng(1), 2000, 1400, upright=0.2, jitter=0.0)
    by = (b[:, 1] + b[:, 3]) / 2
    row2 = (by > short[2, 1]) & (by < short[2, 3]) & ((b[:, 0] + b[:, 2]) / 2 < 1000)
    assert abs(b[row2, 2].max() - 880.0) < 1e-6
    # the same seed gives the same boxes; jitter moves edges by at most its share of a width
    again = ev.label_boxes(truth, np.zeros((0, 4)), np.random.default_rng(1), 2000, 1400, upright=0.2, jitter=0.0)
    assert np.array_equal(a, again)
    shaken = ev.label_boxes(truth, np.zeros((0, 4)), np.random.default_rng(1), 2000, 1400, upright=0.2, jitter=0.03)
    assert shaken.shape == a.shape
    assert np.all(np.abs(shaken - a) <= 0.03 * (a[:, 2:3] - a[:, 0:1]) + 1e-6)


def test_label_boxes_follow_the_shelf_line_of_the_detectors_boxes(ev) -> None:
    # the detector's boxes in a row stand on a line falling 0.1 px per px to the right: the made
    # products stand on that slope, the lower end at the row box's bottom
    truth = np.array([[100.0, 100.0, 1100.0, 500.0]])
    xs = np.linspace(150, 1050, 10)
    dets = np.column_stack([xs - 40, 200 + 0.1 * (xs - 100), xs + 40, 400 + 0.1 * (xs - 100)])
    a = ev.label_boxes(truth, dets, np.random.default_rng(2), 1200, 600, upright=0.2, jitter=0.0)
    cx = (a[:, 0] + a[:, 2]) / 2
    slope = np.polyfit(cx, a[:, 3], 1)[0]
    assert abs(slope - 0.1) < 1e-6
    assert np.all(a[:, 1] >= 100 - 1e-6) and abs(a[:, 3].max() - 500) < 0.1 * 1000 * 0.1


def test_label_boxes_option_refuses_a_wild_upright(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--label-boxes", "3"]) == 2
    assert "--label-boxes 3.0" in capsys.readouterr().err


@pytest.mark.parametrize("seed", range(5))
def test_boxes_outside_the_labelled_rows_match_a_pixel_count(ev, seed: int) -> None:
    # a box is kept when under 0.3 of its pixels lie in the union of the human rows: counted
    # here pixel by pixel on a mask, rows that overlap each other included
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(0, 300, (6, 2)).T
    truth = np.column_stack([x0, y0, x0 + rng.integers(20, 150, 6), y0 + rng.integers(20, 80, 6)]).astype(float)
    b0 = rng.integers(0, 400, (200, 2))
    dets = np.column_stack([b0, b0 + rng.integers(1, 60, (200, 2))]).astype(float)
    mask = np.zeros((500, 500), bool)
    for x0_, y0_, x1_, y1_ in truth.astype(int):
        mask[y0_:y1_, x0_:x1_] = True
    share = np.array([mask[int(b[1]):int(b[3]), int(b[0]):int(b[2])].mean() for b in dets])
    kept = ev.outside_rows(dets, truth)
    assert 0 < len(kept) < len(dets)
    np.testing.assert_array_equal(kept, dets[share < 0.3])


def test_with_unlabelled_needs_label_boxes(ev, capsys: pytest.CaptureFixture[str]) -> None:
    assert ev.main(["--with-unlabelled"]) == 2
    assert "--with-unlabelled goes with --label-boxes" in capsys.readouterr().err


def test_another_detectors_boxes_as_csv_or_yolo_score_as_its_json_does(ev, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """--dets as the audit command reads boxes: one CSV of every photo, or per-photo CSV / YOLO
    files; a photo such a folder has no boxes for stops the run (never filled in by the model)."""
    import json

    photos, dets = tmp_path / "photos", tmp_path / "dets"
    (photos / "shelf-rows").mkdir(parents=True)
    per_csv, per_yolo = tmp_path / "csv", tmp_path / "yolo"
    for d in (dets, per_csv, per_yolo):
        d.mkdir()
    rows = ["image_name,x1,y1,x2,y2,class,image_width,image_height,score"]
    for k in range(2):
        stem = f"p{k}"
        a = _aisle_photo(photos, stem, 40 + k)
        xyxy = np.round(a.xyxy, 2)
        (dets / f"{stem}.detections.json").write_text(json.dumps({
            "schema": "densedet-tile/detections@1",
            "image": {"path": str(photos / f"{stem}.jpg"), "name": f"{stem}.jpg", "width": a.width, "height": a.height},
            "boxes": xyxy.tolist(), "scores": [0.9] * len(xyxy), "labels": [0] * len(xyxy)}))
        mine = [f"{stem}.jpg,{x0},{y0},{x1},{y1},object,{a.width},{a.height},0.9" for x0, y0, x1, y1 in xyxy]
        rows += mine
        (per_csv / f"{stem}.csv").write_text(rows[0] + "\n" + "\n".join(mine) + "\n")
        (per_yolo / f"{stem}.txt").write_text("".join(
            f"0 {(x0 + x1) / 2 / a.width} {(y0 + y1) / 2 / a.height} {(x1 - x0) / a.width} {(y1 - y0) / a.height}\n"
            for x0, y0, x1, y1 in xyxy))
    (tmp_path / "all.csv").write_text("\n".join(rows) + "\n")
    got = {}
    for name, source in (("json", dets), ("csv", tmp_path / "all.csv"), ("per_csv", per_csv), ("yolo", per_yolo)):
        assert ev.main(["--photos", str(photos), "--dets", str(source), "--json", str(tmp_path / f"{name}.json")]) == 0
        rep = json.loads((tmp_path / f"{name}.json").read_text())
        got[name] = [(r["products"], r["found"], r["matched"]) for r in rep["per_photo"]]
    assert got["json"] == got["csv"] == got["per_csv"] == got["yolo"] and got["json"][0][2] == 3
    (per_csv / "p1.csv").unlink()
    with pytest.raises(SystemExit, match=r"holds no boxes for p1\.jpg"):
        ev.main(["--photos", str(photos), "--dets", str(per_csv)])


def _products(row: list[float], n: int) -> np.ndarray:
    """``n`` boxes side by side filling the row box ``row``."""
    x = np.linspace(row[0], row[2], n + 1)
    return np.column_stack([x[:-1], np.full(n, row[1]), x[1:], np.full(n, row[3])])


def test_each_missed_human_row_gets_the_first_reason_that_holds(ev) -> None:
    truth = np.array([
        [0, 0, 400, 100],       # 0: matched (found row 0)
        [0, 110, 400, 210],     # 1, 2: two bays' rows that found row 1 runs across (IoU 0.44 each)
        [500, 110, 900, 210],
        [0, 220, 400, 320],     # 3, 4: two shelves that found row 2 made one (IoU 0.48 each)
        [0, 330, 400, 430],
        [0, 440, 400, 540],     # 5: only two boxes in it
        [500, 440, 900, 540],   # 6: boxes, and no found row near it
        [500, 220, 900, 320],   # 7: found row 3 covers a third of it
    ], np.float64)
    found = np.array([
        [0, 0, 400, 100],
        [0, 110, 900, 210],
        [0, 220, 400, 430],
        [500, 220, 630, 320],
    ], np.float64)
    boxes = np.concatenate([_products(list(r), 2 if i == 5 else 6) for i, r in enumerate(truth)])
    m = ev.match_rows(found, truth)
    assert [(f, t) for f, t, _ in m] == [(0, 0)]
    why = ev.miss_reasons(found, truth, m, boxes)
    assert list(why) == list(ev.MISS_REASONS)
    assert why == {"few boxes": 1, "no row there": 1, "crosses bays": 2, "rows merged": 2, "row too short": 1,
                   "taken": 0, "other": 0}
    none = dict.fromkeys(ev.MISS_REASONS, 0)
    # a row running on into the next bay far enough to match one of its rows: the other is
    # missed because the row crosses the bays, though it matched
    wide = np.array([[0, 110, 700, 210]], np.float64)
    pair = truth[[1, 2]]
    pm = ev.match_rows(wide, pair)
    assert [(f, t) for f, t, _ in pm] == [(0, 0)]
    assert ev.miss_reasons(wide, pair, pm, boxes) == {**none, "crosses bays": 1}
    # a found row holding a human row whole, at an IoU under 0.1 (shelves of several bays made
    # one), is that row's reason; a sliver inside it covering under a tenth is none
    assert ev.miss_reasons(np.array([[0, 0, 900, 500]], np.float64), truth[[0]], [], boxes) == {**none, "crosses bays": 1}
    assert ev.miss_reasons(np.array([[0, 0, 100, 30]], np.float64), truth[[0]], [], boxes) == {**none, "no row there": 1}
    # rows side by side overlapping: the one a found row matched takes it from its neighbour
    side = np.array([[0, 0, 400, 100], [150, 0, 550, 100]], np.float64)
    sm = ev.match_rows(side[:1], side)
    assert [(f, t) for f, t, _ in sm] == [(0, 0)]
    assert ev.miss_reasons(side[:1], side, sm, np.concatenate([_products(list(r), 6) for r in side])) == \
        {**none, "taken": 1}
    # shifted by half a row: none of the named reasons
    shifted = truth[[0]] + [0, 50, 0, 50]
    assert ev.miss_reasons(shifted, truth[[0]], ev.match_rows(shifted, truth[[0]]), boxes)["other"] == 1


def test_the_real_photo_report_says_why_rows_were_missed(ev, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a photo folder of one generated photo with one labelled row, and a detections CSV for it
    from PIL import Image

    photos = tmp_path / "photos"
    (photos / "shelf-rows").mkdir(parents=True)
    Image.new("RGB", (400, 300), (90, 90, 90)).save(photos / "p1.jpg")
    # one human row 0.1..0.9 x 0.2..0.5, and one the detector missed (0.1..0.9 x 0.6..0.9)
    (photos / "shelf-rows" / "p1.txt").write_text("0 0.5 0.35 0.8 0.3\n0 0.5 0.75 0.8 0.3\n")
    rows = ["image_name,x1,y1,x2,y2,class,image_width,image_height"]
    for b in _products([40, 60, 360, 150], 8):
        rows.append("p1.jpg," + ",".join(f"{v:.1f}" for v in b) + ",product,400,300")
    csv = tmp_path / "dets.csv"
    csv.write_text("\n".join(rows) + "\n")
    out = tmp_path / "r.json"
    assert ev.main(["--photos", str(photos), "--dets", str(csv), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "human rows missed, why: few boxes 1," in printed
    import json

    doc = json.loads(out.read_text())
    assert doc["missed_because"]["few boxes"] == 1 and doc["per_photo"][0]["missed_because"]["few boxes"] == 1
    assert doc["matched"] == 1


def test_a_photo_replaced_under_its_name_is_detected_again_not_scored_with_its_old_boxes(ev, tmp_path, capsys):
    # a cache made from one photo scored another photo saved under that name, without a word (an
    # outside review): the cache records the photo's size and time, and a photo that differs is redone
    import os

    from PIL import Image

    photos, dets = tmp_path / "photos", tmp_path / "dets"
    photos.mkdir()
    photo = photos / "p.jpg"
    from densedet_tile.synth.shelves import render_shelf

    shelf, _ = render_shelf(np.random.default_rng(2), width=640, height=480, product_height=120)
    Image.fromarray(np.asarray(shelf)).save(photo, quality=95)
    first = ev.detections_for(photo, dets)
    again = ev.detections_for(photo, dets)  # the same photo: the cache as it is
    assert "detected again" not in capsys.readouterr().err
    assert np.array_equal(again.xyxy, first.xyxy)
    Image.fromarray(np.full((480, 640, 3), 128, np.uint8)).save(photo)  # another photo: an empty grey one
    os.utime(photo, ns=(photo.stat().st_atime_ns, photo.stat().st_mtime_ns + 10**9))
    now = ev.detections_for(photo, dets)
    assert "is not the photo p.detections.json was made from" in capsys.readouterr().err
    assert ev._photo_changed(dets / "p.detections.json", photo) is False  # the cache is today's photo's now
    assert len(first.xyxy) > 0 and len(now.xyxy) == 0  # the shelf's boxes are gone with the shelf


def test_least_recall_lists_the_photos_by_their_recall(ev, capsys):
    rows = [{"photo": "a", "matched": 9, "labels": 24, "found": 12, "gaps": 0, "gaps_across_bays": 0},  # 0.375, 15 missed
            {"photo": "b", "matched": 0, "labels": 3, "found": 1, "gaps": 0, "gaps_across_bays": 0},  # 0.0, 3 missed
            {"photo": "c", "matched": 1, "labels": 2, "found": 2, "gaps": 0, "gaps_across_bays": 0}]  # 0.5
    ev.print_report({**ev.summarise(rows), "per_photo": rows}, "t")
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("least recall"))
    assert line == "least recall: b 0/3 (found 1), a 9/24 (found 12), c 1/2 (found 2)"


def test_another_detectors_json_or_a_copied_photo_is_not_redone(ev, tmp_path):
    # a diff review: a detections JSON of another detector whose photo's time differs was
    # overwritten with the built-in model's boxes; a photo copied (same size, new time) is the same
    import json
    import shutil

    from PIL import Image

    from densedet_tile.synth.shelves import render_shelf

    shelf, _ = render_shelf(np.random.default_rng(2), width=640, height=480, product_height=120)
    photo = tmp_path / "a" / "p.jpg"
    photo.parent.mkdir()
    Image.fromarray(np.asarray(shelf)).save(photo, quality=95)
    dets = tmp_path / "dets"
    ev.detections_for(photo, dets)
    cached = dets / "p.detections.json"
    copy = tmp_path / "b" / "p.jpg"
    copy.parent.mkdir()
    shutil.copy(photo, copy)  # same bytes, another time and path
    assert ev._photo_changed(cached, copy) is False
    doc = json.loads(cached.read_text())
    doc["settings"]["requested"]["job"]["detector"]["kind"] = "mymod:make"
    doc["settings"]["requested"]["input"][0] += 1  # and its photo another size
    cached.write_text(json.dumps(doc))
    assert ev._photo_changed(cached, photo) is False
