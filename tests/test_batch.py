"""densedet-tile batch without Ray: in-process runs, manifest, restart, inputs and errors."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densedet_tile import DetectorError, InvalidInputError, MissingDependencyError, RunSpec, TileSpec
from densedet_tile.batch import Manifest, expand_inputs, run_batch
from densedet_tile.cli import main as cli_main
from densedet_tile.cli.batch import batch_main
from densedet_tile.detector.registry import DetectorSpec
from densedet_tile.runner import Job
from fakes import BlobDetector, blob_image

FAKES = str(Path(__file__).parent / "fakes.py")


def _images(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    specs = [("a.png", 300, 500, (10, 20, 100, 80)), ("b.png", 400, 300, (50, 60, 70, 90)),
             ("c.png", 200, 700, (300, 40, 620, 180))]
    out = []
    for name, h, w, box in specs:
        p = folder / name
        Image.fromarray(blob_image(h, w, box)).save(p)
        out.append(p)
    return out


def _doc(path: Path) -> dict:
    doc = json.loads(path.read_text())
    doc.pop("timings")
    return doc


def test_in_process_outputs_equal_the_single_image_cli(tmp_path):
    imgs = _images(tmp_path / "in")
    common = ["--detector", f"{FAKES}:make_blob", "--tile", "256", "--format", "csv,coco", "-q"]
    assert cli_main([*map(str, imgs), "--out", str(tmp_path / "cli"), *common]) == 0
    assert batch_main([*map(str, imgs), "--out", str(tmp_path / "batch"), "--ray", "none", *common]) == 0
    for p in imgs:
        a, b = _doc(tmp_path / "cli" / f"{p.stem}.detections.json"), _doc(tmp_path / "batch" / f"{p.stem}.detections.json")
        assert a == b
        assert len(a["boxes"]) == 1
        for ext in ("csv", "coco.json"):
            cli_files = sorted(x.name for x in (tmp_path / "cli").glob(f"{p.stem}.*{ext}"))
            assert cli_files, ext
            for name in cli_files:
                assert (tmp_path / "cli" / name).read_bytes() == (tmp_path / "batch" / name).read_bytes()


def test_cli_dispatches_the_batch_verb(tmp_path):
    imgs = _images(tmp_path / "in")
    argv = ["batch", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--ray", "none",
            "--detector", f"{FAKES}:make_blob", "--tile", "256", "-q"]
    assert cli_main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "out").glob("*.detections.json")) == [f"{p.stem}.detections.json" for p in imgs]
    assert cli_main(argv) == 0  # everything skipped the second time
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"] == {"skipped": 3}


def test_split_chunks_cover_every_tile_once():
    from densedet_tile.distributed.split import chunk_ranges

    for n_tiles in (1, 2, 5, 17, 100):
        for workers in (1, 2, 3, 8):
            chunks = chunk_ranges(n_tiles, workers)
            assert [i for c in chunks for i in c] == list(range(n_tiles))
            assert len(chunks) == min(n_tiles, 2 * workers)


def test_bad_image_is_reported_in_the_manifest_and_the_run_goes_on(tmp_path, capsys):
    imgs = _images(tmp_path / "in")
    bad = tmp_path / "in" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    missing = tmp_path / "in" / "missing.png"
    argv = [str(imgs[0]), str(bad), str(missing), str(imgs[1]), "--out", str(tmp_path / "out"), "--ray", "none",
            "--detector", f"{FAKES}:make_blob", "--tile", "256"]
    assert batch_main(argv) == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "missing.png" in err
    snap = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert snap["schema"] == "densedet-tile/batch-manifest@1"
    by_name = {Path(r["input"]).name: r for r in snap["images"]}
    assert snap["counts"] == {"ok": 2, "error": 2}
    assert by_name["a.png"]["status"] == "ok" and by_name["a.png"]["products"] == 1
    assert by_name["a.png"]["worker"].startswith("in-process")
    assert by_name["broken.jpg"]["status"] == "error" and "broken.jpg" in by_name["broken.jpg"]["error"]
    assert "\n" not in by_name["broken.jpg"]["error"]
    assert not list((tmp_path / "out").glob("broken*")) and not list((tmp_path / "out").glob("missing*"))
    assert [r["event"] for r in Manifest(tmp_path / "out").records()] == ["run"] + ["image"] * 4 + ["end"]


def test_restart_skips_complete_outputs_and_redoes_corrupt_ones(tmp_path):
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv"))
    det = BlobDetector()
    first = run_batch(imgs, out, detector=det, job=job)
    assert first.ok == 3 and first.backend == "in-process"
    calls_after_first = len(det.seen)
    good = {p.stem: (out / f"{p.stem}.detections.json").read_bytes() for p in imgs}

    second = run_batch(imgs, out, detector=det, job=job)
    assert second.skipped == 3 and second.ok == 0
    assert len(det.seen) == calls_after_first  # nothing was run again
    assert [r["products"] for r in second.records] == [1, 1, 1]

    # a half-written JSON, and an image whose CSV went missing, are redone
    (out / "b.detections.json").write_bytes(good["b"][: len(good["b"]) // 2])
    (out / "c.detections.csv").unlink()
    third = run_batch(imgs, out, detector=det, job=job)
    status = {Path(r["input"]).stem: r["status"] for r in third.records}
    assert status == {"a": "skipped", "b": "ok", "c": "ok"}
    assert len(det.seen) > calls_after_first
    for p in imgs:
        assert json.loads((out / f"{p.stem}.detections.json").read_text())["boxes"] == json.loads(good[p.stem])["boxes"]
    assert (out / "c.detections.csv").is_file()
    snap = json.loads((out / "manifest.json").read_text())
    assert len(snap["runs"]) == 3 and all(r.get("finished") for r in snap["runs"])
    assert {Path(r["input"]).stem: r["status"] for r in snap["images"]} == status


def test_manifest_survives_a_torn_last_line(tmp_path, caplog):
    m = Manifest(tmp_path)
    m.append({"event": "image", "input": "/x/a.png", "status": "ok"})
    with open(m.log_path, "ab") as fh:
        fh.write(b'{"event": "image", "input": "/x/b.p')  # the driver died mid-write
    with caplog.at_level("WARNING", logger="densedet_tile.batch"):
        m.append({"event": "image", "input": "/x/c.png", "status": "error"})
    recs = m.records()
    assert [r["input"] for r in recs] == ["/x/a.png", "/x/c.png"]
    # the torn record is cut off, not left in the middle: every line is JSON (jq, pandas lines=True)
    lines = m.log_path.read_bytes().splitlines()
    assert len(lines) == 2 and all(isinstance(json.loads(x), dict) for x in lines)
    assert any("removed a record cut short at its end (35 bytes" in r.getMessage() for r in caplog.records)
    snap = m.snapshot()
    assert snap["counts"] == {"ok": 1, "error": 1}
    # a whole record that only lost its newline is kept
    with open(m.log_path, "ab") as fh:
        fh.write(b'{"event": "image", "input": "/x/d.png", "status": "ok"}')
    m.append({"event": "image", "input": "/x/e.png", "status": "ok"})
    assert [r["input"] for r in m.records()] == ["/x/a.png", "/x/c.png", "/x/d.png", "/x/e.png"]
    assert m.log_path.read_bytes().count(b"\n") == 4


def test_folders_expand_to_images_and_clashing_names_get_suffixes(tmp_path):
    _images(tmp_path / "one")
    (tmp_path / "one" / "notes.txt").write_text("not an image")
    (tmp_path / "two").mkdir()
    Image.fromarray(blob_image(100, 100, (10, 10, 40, 40))).save(tmp_path / "two" / "a.png")
    paths = expand_inputs([tmp_path / "one", tmp_path / "two", tmp_path / "one" / "a.png"])
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["one/a.png", "one/b.png", "one/c.png", "two/a.png"]
    s = run_batch([tmp_path / "one", tmp_path / "two"], tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)))
    assert [r["stem"] for r in s.records] == ["a", "b", "c", "a-2"]
    assert json.loads((tmp_path / "out" / "a-2.detections.json").read_text())["image"]["width"] == 100


def test_explicit_ray_without_ray_installed_is_a_clear_error(tmp_path, monkeypatch, capsys):
    imgs = _images(tmp_path / "in")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MissingDependencyError, match=r"densedet-tile\[ray\]"):
        run_batch(imgs, tmp_path / "o1", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray="local")
    argv = [str(imgs[0]), "--out", str(tmp_path / "o2"), "--detector", f"{FAKES}:make_blob", "--ray", "auto"]
    assert batch_main(argv) == 2
    assert "pip install 'densedet-tile[ray]'" in capsys.readouterr().err
    # the default falls back to this process
    s = run_batch(imgs, tmp_path / "o3", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), ray="default")
    assert s.backend == "in-process" and s.ok == 3


def test_a_cluster_named_in_ray_address_without_ray_installed_is_said(tmp_path, monkeypatch, caplog):
    imgs = _images(tmp_path / "in")
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    with caplog.at_level("WARNING", logger="densedet_tile"):
        s = run_batch(imgs[:1], tmp_path / "o", detector=BlobDetector(), ray="default")
    assert s.backend == "in-process" and "RAY_ADDRESS is set but Ray is not installed" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"workers": 0}, "workers"),
        ({"retries": -1}, "retries"),
        ({"timeout": 0}, "timeout"),
        ({"gpus_per_worker": -1.0}, "gpus_per_worker"),
        ({"detector": object()}, "detector"),
        ({"job": {"tile": 256}}, "Job"),
    ],
)
def test_bad_options_are_rejected(tmp_path, kwargs, match):
    kwargs = {"detector": BlobDetector(), **kwargs}
    with pytest.raises(InvalidInputError, match=match):
        run_batch([tmp_path / "a.png"], tmp_path / "out", **kwargs)


def test_out_must_be_a_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"):
        run_batch([tmp_path / "a.png"], tmp_path / "file", detector=BlobDetector())


def test_cli_usage_errors_exit_2(tmp_path, capsys):
    assert batch_main(["a.png"]) == 2  # --out is required
    assert batch_main(["a.png", "--out", str(tmp_path), "--retries", "-1"]) == 2
    assert batch_main(["a.png", "--out", str(tmp_path), "--gpus-per-worker", "x"]) == 2
    assert batch_main(["a.png", "--out", str(tmp_path), "--timeout", "0"]) == 2
    assert batch_main(["--help"]) == 0
    assert "--split" in capsys.readouterr().out


def test_detector_that_cannot_be_built_exits_2_with_one_line(tmp_path, capsys):
    imgs = _images(tmp_path / "in")
    argv = [str(imgs[0]), "--out", str(tmp_path / "out"), "--ray", "none", "--detector", f"{FAKES}:no_such_factory"]
    assert batch_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no_such_factory" in err[0]
    # no run was started: no manifest, and the folder the run made is gone (it held a manifest)
    assert not (tmp_path / "out").exists()
    with pytest.raises(DetectorError):
        run_batch(imgs, tmp_path / "out2", detector=DetectorSpec(kind=f"{FAKES}:no_such_factory"))
    assert not (tmp_path / "out2").exists()
    (tmp_path / "out3").mkdir()  # a folder that was there stays, without a run in its log
    with pytest.raises(DetectorError):
        run_batch(imgs, tmp_path / "out3", detector=DetectorSpec(kind=f"{FAKES}:no_such_factory"))
    assert list((tmp_path / "out3").iterdir()) == []
    # --debug adds the traceback and keeps the exit status
    assert batch_main([*argv, "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_worker_options_without_ray_are_said_to_be_unused(tmp_path, caplog):
    imgs = _images(tmp_path / "in")
    with caplog.at_level("WARNING", logger="densedet_tile"):
        run_batch(imgs[:1], tmp_path / "out", detector=BlobDetector(), ray="none", workers=4)
    assert "need Ray workers" in caplog.text
    # and what would give them Ray workers (the light install has no Ray: which extra)
    assert "give --ray local" in caplog.text  # (Ray is installed where the tests run)
    caplog.clear()
    with caplog.at_level("WARNING", logger="densedet_tile"):
        run_batch(imgs[:1], tmp_path / "out2", detector=BlobDetector(), ray="none")
    assert "need Ray workers" not in caplog.text


def test_detector_spec_resolves_local_paths(tmp_path, monkeypatch):
    (tmp_path / "cfg.py").write_text("x = 1\n")
    (tmp_path / "det.py").write_text("def make():\n    return None\n")
    monkeypatch.chdir(tmp_path)
    spec = DetectorSpec(kind="det.py:make", config="cfg.py", checkpoint="weights.pth").resolved()
    assert spec.kind == f"{tmp_path / 'det.py'}:make"
    assert spec.config == str(tmp_path / "cfg.py")
    assert spec.checkpoint == "weights.pth"  # not here: left as given (it may be a name)
    assert DetectorSpec(kind="pkg.module:make").resolved().kind == "pkg.module:make"


def test_painted_scene_in_process_matches_detect(tmp_path):
    import densedet_tile as dt
    from densedet_tile.synth.painted_aisles import PaintedDetector, make_painted_aisle

    img, _ = make_painted_aisle(900, 300, n_products=40, seed=3, small_size=(20, 60), large_size=(100, 160))
    p = tmp_path / "aisle.png"
    Image.fromarray(img).save(p)
    s = run_batch([p], tmp_path / "out", detector=PaintedDetector(), job=Job(tiling=TileSpec(tile=256, overlap=0.25)))
    assert s.ok == 1
    doc = json.loads((tmp_path / "out" / "aisle.detections.json").read_text())
    ref = dt.detect(p, PaintedDetector(), tile=256, overlap=0.25)
    np.testing.assert_allclose(np.array(doc["boxes"], np.float32).reshape(-1, 4), ref.xyxy, atol=0.006)


def test_default_backend_follows_ray_address(monkeypatch):
    pytest.importorskip("ray")
    from densedet_tile.batch import _resolve_backend

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert _resolve_backend("default") == "local"
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")
    assert _resolve_backend("default") == "auto"
    assert _resolve_backend("none") is None and _resolve_backend(None) is None
    assert _resolve_backend("ray://other:10001") == "ray://other:10001"


def test_batch_passes_precision_detector_options_and_vram_to_the_build(tmp_path):
    # These three were once parsed by `batch` and dropped on the way to the detector.
    imgs = _images(tmp_path / "in")[:1]
    argv = [str(imgs[0]), "--out", str(tmp_path / "out"), "--ray", "none", "--device", "cpu", "--tile", "256",
            "--detector", f"{FAKES}:make_recording", "--precision", "bf16", "--detector-option", "threads=4",
            "--detector-option", "mode=\"fast\"", "--max-vram", "8", "-q"]
    with pytest.warns(RuntimeWarning, match="CUDA devices only"):  # on the CPU the budget is reported, not applied
        assert batch_main(argv) == 0
    doc = json.loads((tmp_path / "out" / "a.detections.json").read_text())
    assert doc["model"]["info"] == {"precision": "bf16", "option_threads": 4, "option_mode": "fast", "option_device": "cpu"}
    assert doc["settings"]["precision"] == "bf16" and doc["settings"]["max_vram"] == 8.0
    assert doc["settings"]["device"] == "cpu" and doc["settings"]["tile"] == 256


def test_count_range_reaches_the_manifest_and_the_summary_line(tmp_path, capsys):
    from fakes import cell_image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(cell_image([0.6] * 12)).save(folder / "sure.png")
    Image.fromarray(cell_image([0.6] * 10 + [0.47] * 5 + [0.42] * 3)).save(folder / "unsure.png")
    assert batch_main([str(folder), "--out", str(tmp_path / "out"), "--ray", "none",
                       "--detector", f"{FAKES}:make_cells", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "unsure.png: 15 products (10-18, uncertain count)" in err
    assert "1 with an uncertain count" in err
    recs = {Path(r["input"]).name: r for r in Manifest(tmp_path / "out").records() if r.get("event") == "image"}
    assert recs["sure.png"]["count_range"] == [12, 12] and recs["sure.png"]["uncertain"] is False
    assert recs["unsure.png"]["count_range"] == [10, 18] and recs["unsure.png"]["uncertain"] is True
    # a second run skips both and still knows their ranges, from the JSON the first one wrote
    assert batch_main([str(folder), "--out", str(tmp_path / "out"), "--ray", "none",
                       "--detector", f"{FAKES}:make_cells", "--device", "cpu"]) == 0
    assert "0 done, 2 skipped, 0 failed" in capsys.readouterr().err
    last = [r for r in Manifest(tmp_path / "out").records() if r.get("event") == "image"][-2:]
    assert {Path(r["input"]).name: (r["status"], r["count_range"], r["uncertain"]) for r in last} == {
        "sure.png": ("skipped", [12, 12], False), "unsure.png": ("skipped", [10, 18], True)}


def test_another_file_of_the_same_name_gets_its_own_stem_and_never_overwrites(tmp_path):
    a = _images(tmp_path / "day1")[0]
    b = tmp_path / "day2" / a.name  # same name, another photo
    b.parent.mkdir()
    shutil.copy(_images(tmp_path / "other")[1], b)
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256))
    run_batch([a], out, detector=BlobDetector(), job=job)
    doc = lambda stem: json.loads((out / f"{stem}.detections.json").read_text())  # noqa: E731
    assert Path(doc("a")["image"]["path"]).samefile(a)
    again = run_batch([b], out, detector=BlobDetector(), job=job)
    assert again.ok == 1 and again.skipped == 0  # not skipped for its name
    assert Path(doc("a")["image"]["path"]).samefile(a)  # a's result stays
    assert Path(doc("a-2")["image"]["path"]).samefile(b)
    # each keeps its stem in later runs, in any order and over any part of the inputs
    both = run_batch([b, a], out, detector=BlobDetector(), job=job)
    assert both.skipped == 2
    assert {r["input"]: r["stem"] for r in both.records} == {str(a): "a", str(b): "a-2"}


def test_a_moved_folder_keeps_its_stems_and_is_listed_once(tmp_path):
    # photos/ moved to archive/photos/ between runs: its photos took new stems (a-2...) beside
    # the old outputs, and the manifest listed every photo twice (its products counted twice)
    first = _images(tmp_path / "photos")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256))
    assert run_batch(first, out, detector=BlobDetector(), job=job).ok == 3
    (tmp_path / "archive").mkdir()
    shutil.move(str(tmp_path / "photos"), str(tmp_path / "archive" / "photos"))  # keeps size and mtime
    moved = sorted((tmp_path / "archive" / "photos").glob("*.png"))
    again = run_batch(moved, out, detector=BlobDetector(), job=job)
    assert again.ok == 3 and again.failed == 0  # redone: their JSONs now name where they are
    assert {Path(r["input"]).name: r["stem"] for r in again.records} == {"a.png": "a", "b.png": "b", "c.png": "c"}
    assert sorted(p.name for p in out.glob("*.detections.json")) == [f"{x}.detections.json" for x in "abc"]
    assert Path(_doc(out / "a.detections.json")["image"]["path"]).samefile(moved[0])
    snap = json.loads((out / "manifest.json").read_text())
    assert sorted(r["input"] for r in snap["images"]) == sorted(map(str, moved))
    assert snap["counts"] == {"ok": 3}
    assert run_batch(moved, out, detector=BlobDetector(), job=job).skipped == 3  # and kept from then on
    # a photo of that name that is another file (other size or time) is not taken for the moved one
    other = tmp_path / "elsewhere" / "a.png"
    other.parent.mkdir()
    Image.fromarray(blob_image(320, 520, (10, 20, 100, 80))).save(other)
    assert [r["stem"] for r in run_batch([other], out, detector=BlobDetector(), job=job).records] == ["a-2"]
    # nor is a same-named photo while the first one is still where it was
    copy = tmp_path / "copy" / "b.png"
    copy.parent.mkdir()
    shutil.copy2(moved[1], copy)
    assert [r["stem"] for r in run_batch([copy], out, detector=BlobDetector(), job=job).records] == ["b-2"]


def test_an_edited_factory_file_is_another_model(tmp_path):
    import os

    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    factory = tmp_path / "my_detector.py"
    factory.write_text(Path(FAKES).read_text())
    spec = DetectorSpec(kind=f"{factory}:make_blob")
    job = Job(tiling=TileSpec(tile=256))
    assert run_batch([a], out, detector=spec, job=job).ok == 1
    assert run_batch([a], out, detector=spec, job=job).skipped == 1
    factory.write_text(Path(FAKES).read_text() + "\n# the user's edit\n")  # another size and time
    st = factory.stat()
    os.utime(factory, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_batch([a], out, detector=spec, job=job).ok == 1  # redone, not taken for the old model's
    assert run_batch([a], out, detector=spec, job=job).skipped == 1


def test_an_edited_factory_module_is_another_model(tmp_path, monkeypatch):
    import os

    from densedet_tile.runner import _module_file

    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    pkg = tmp_path / "site" / "shopdets"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    module = pkg / "blobs.py"
    module.write_text(Path(FAKES).read_text())
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    spec = DetectorSpec(kind="shopdets.blobs:make_blob")
    job = Job(tiling=TileSpec(tile=256))
    assert run_batch([a], out, detector=spec, job=job).ok == 1
    assert run_batch([a], out, detector=spec, job=job).skipped == 1
    module.write_text(Path(FAKES).read_text() + "\n# the user's edit\n")
    st = module.stat()
    os.utime(module, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert run_batch([a], out, detector=spec, job=job).ok == 1  # redone under the edited module
    assert run_batch([a], out, detector=spec, job=job).skipped == 1
    # the file is found without running anything: a package whose __init__ fails is not imported
    bad = tmp_path / "site" / "brokenpkg"
    bad.mkdir()
    (bad / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (bad / "mod.py").write_text("")
    assert Path(_module_file("brokenpkg.mod")).samefile(bad / "mod.py")
    assert "brokenpkg" not in sys.modules
    assert _module_file("no_such_module_here.x") is None and _module_file("shopdets.blobs.deeper") is None
    # a package installed with pip install -e is found by its own finder on sys.meta_path, not on sys.path
    import importlib.util

    editable = tmp_path / "elsewhere" / "editpkg"
    editable.mkdir(parents=True)
    (editable / "__init__.py").write_text("raise RuntimeError('imported')\n")
    (editable / "mod.py").write_text("")

    class EditableFinder:
        @staticmethod
        def find_spec(name, path=None, target=None):
            if name == "editpkg":
                return importlib.util.spec_from_file_location(name, editable / "__init__.py",
                                                              submodule_search_locations=[str(editable)])
            return None

    monkeypatch.setattr(sys, "meta_path", [EditableFinder(), *sys.meta_path])
    assert Path(_module_file("editpkg.mod")).samefile(editable / "mod.py") and "editpkg" not in sys.modules


def test_restart_redoes_what_other_settings_or_another_model_made(tmp_path):
    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    doc = lambda: json.loads((out / "a.detections.json").read_text())  # noqa: E731
    spec = DetectorSpec(kind=f"{FAKES}:make_blob")
    plain = Job(tiling=TileSpec(tile=256))
    assert run_batch([a], out, detector=spec, job=plain).ok == 1
    assert run_batch([a], out, detector=spec, job=plain).skipped == 1
    # a setting given once and then left to its default again is a change both ways
    for job in (Job(tiling=TileSpec(tile=256), run=RunSpec(score_thr=0.7)),
                Job(tiling=TileSpec(tile=256), run=RunSpec(input_size=128)),
                Job(tiling=TileSpec(tile=256), run=RunSpec(scale=0.5)),
                Job(tiling=TileSpec(tile=256, overlap=0.3)),
                Job(tiling=TileSpec(tile="auto")),
                plain):
        assert run_batch([a], out, detector=spec, job=job).ok == 1, job
        assert doc()["settings"]["requested"]["job"]["run"]["score_thr"] == job.run.score_thr
        assert run_batch([a], out, detector=spec, job=job).skipped == 1, job
    # another model: another factory, or the same checkpoint path holding other weights
    other = DetectorSpec(kind=f"{FAKES}:make_recording")
    assert run_batch([a], out, detector=other, job=plain).ok == 1
    assert run_batch([a], out, detector=other, job=plain).skipped == 1
    ckpt = tmp_path / "w.bin"
    ckpt.write_bytes(b"one")
    with_ckpt = DetectorSpec(kind=f"{FAKES}:make_recording", checkpoint=str(ckpt))
    assert run_batch([a], out, detector=with_ckpt, job=plain).ok == 1
    assert run_batch([a], out, detector=with_ckpt, job=plain).skipped == 1
    ckpt.write_bytes(b"retrained")
    assert run_batch([a], out, detector=with_ckpt, job=plain).ok == 1


def test_restart_redoes_a_photo_replaced_under_the_same_path(tmp_path):
    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256))
    assert run_batch([a], out, detector=BlobDetector(), job=job).ok == 1
    Image.fromarray(blob_image(600, 900, (100, 100, 400, 300))).save(a)  # another photo, same name
    again = run_batch([a], out, detector=BlobDetector(), job=job)
    assert again.ok == 1 and again.skipped == 0
    d = json.loads((out / "a.detections.json").read_text())
    assert (d["image"]["width"], d["image"]["height"]) == (900, 600)


def test_an_image_redone_with_fewer_outputs_loses_the_earlier_ones(tmp_path):
    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    first = Job(tiling=TileSpec(tile=256), formats=("json", "csv", "coco"), preview=True)
    run_batch([a], out, detector=BlobDetector(), job=first)
    assert {p.name for p in out.glob("a.*")} == {"a.detections.json", "a.detections.csv", "a.coco.json",
                                                  "a.preview.jpg"}
    run_batch([a], out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=200)))
    assert {p.name for p in out.glob("a.*")} == {"a.detections.json"}


def test_an_image_redone_over_an_unreadable_json_loses_the_earlier_outputs_the_manifest_lists(tmp_path, caplog):
    # the clean-up trusted the old JSON's `outputs` list alone: a JSON cut short (a full disk, a
    # crash in an older version) left the CSV and preview of other settings beside the new result
    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    first = Job(tiling=TileSpec(tile=256), formats=("json", "csv", "coco"), preview=True)
    run_batch([a], out, detector=BlobDetector(), job=first)
    (out / "a.detections.json").write_text('{"schema": "densedet-tile/detections@1", "boxes": [[1, 2')
    (out / "a.coco.json").write_text("[]\n")  # changed since the tool wrote it: no longer its to remove
    (out / "a.notes.txt").write_text("mine")  # a name the manifest never recorded
    again = run_batch([a], out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=200)))
    assert again.ok == 1
    assert {p.name for p in out.glob("a.*")} == {"a.detections.json", "a.coco.json", "a.notes.txt"}
    assert (out / "a.coco.json").read_text() == "[]\n" and (out / "a.notes.txt").read_text() == "mine"
    assert "a.coco.json: left in place: changed since densedet-tile wrote it" in caplog.text
    assert _doc(out / "a.detections.json")["outputs"] == []


def test_temporaries_of_a_killed_run_are_swept_and_skipped_lines_follow_the_run_line(tmp_path):
    import os
    import time

    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256))
    run_batch(imgs[:1], out, detector=BlobDetector(), job=job)
    old = [out / ".a.detections.json.k3j_x9ab.densedet-tmp", out / ".a.detections.csv.Zq81hh0p.densedet-tmp.old",
           out / ".zz.detections.json.k3j_x9ab.densedet-tmp"]
    # this run's own outputs' temporaries go however recent (a run stopped and started again at
    # once: an outside review found them left), another writer's recent ones stay
    own_fresh = out / ".b.preview.jpg.p0p0p0p0.densedet-tmp"
    fresh = out / ".zz.detections.json.p0p0p0p0.densedet-tmp"
    keep = out / ".notes.tmp"  # not a name this tool makes
    for f in (*old, own_fresh, fresh, keep):
        f.write_text("x")
    stale = time.time() - 3600
    for f in (*old, keep):
        os.utime(f, (stale, stale))
    run_batch(imgs, out, detector=BlobDetector(), job=job)
    assert not any(f.exists() for f in old) and not own_fresh.exists() and fresh.exists() and keep.exists()
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    last_run = max(i for i, r in enumerate(lines) if r["event"] == "run")
    assert [r["event"] for r in lines[last_run:]] == ["run", "image", "image", "image", "end"]
    assert lines[last_run + 1]["status"] == "skipped"


def test_temporaries_a_run_leaves_while_it_runs_are_gone_when_it_ends(tmp_path):
    # a worker killed or timed out while writing leaves its temporaries; the run sweeps its own
    # images' ones when it ends (stopped or not), and leaves any other writer's recent ones
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    debris = [out / ".b.detections.json.Ab12Cd34.densedet-tmp", out / ".c.coco.json.Ab12Cd34.densedet-tmp.old"]
    other = out / ".zz.detections.json.Ab12Cd34.densedet-tmp"

    def on_record(rec):
        if rec["input"].endswith("a.png"):
            for f in (*debris, other):
                f.write_text("x")

    summary = run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)), on_record=on_record)
    assert summary.ok == 3
    assert not any(f.exists() for f in debris) and other.exists()


@pytest.mark.parametrize("case", ["bad_ray", "empty_folder", "out_is_file", "manifest_is_folder"])
def test_batch_refuses_bad_runs_before_writing_anything(tmp_path, case, capsys):
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["batch", str(imgs[0]), "--out", str(out), "--ray", "none", "--tile", "256", "--detector",
            f"{FAKES}:make_blob"]
    want = {"bad_ray": "not a Ray address", "empty_folder": "no image files", "out_is_file": "not a folder",
            "manifest_is_folder": "manifest.jsonl there is a folder"}[case]
    if case == "bad_ray":
        argv[argv.index("--ray") + 1] = "foo"
    elif case == "empty_folder":
        (tmp_path / "nothing").mkdir()
        argv[1] = str(tmp_path / "nothing")
    elif case == "out_is_file":
        out.write_text("not a folder")
    else:
        (out / "manifest.jsonl").mkdir(parents=True)
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and want in err[0]
    if case == "manifest_is_folder":
        assert [p.name for p in out.iterdir()] == ["manifest.jsonl"]
    elif case == "out_is_file":
        assert out.read_text() == "not a folder"
    else:
        assert not out.exists()


@pytest.mark.parametrize("missing", ["no_such_folder/", "no_such_folder", "shelves_2026"])
def test_a_folder_named_that_does_not_exist_runs_nothing(tmp_path, capsys, missing):
    # README: exit 2 for a folder named that does not exist, nothing run (an outside review: the
    # folder beside it was run and the missing one counted as a failed image, exit 1)
    _images(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["batch", str(tmp_path / "in"), f"{tmp_path}{os.sep}{missing}", "--out", str(out), "--ray", "none",
            "--tile", "256", "--detector", f"{FAKES}:make_blob", "-q"]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{missing}: no such file or folder" in err[0]
    assert not out.exists()
    # a missing image file is that image's failure: the others run
    argv[2] = str(tmp_path / "gone.jpg")
    assert cli_main(argv) == 1
    assert len(list(out.glob("*.detections.json"))) == 3


@pytest.mark.skipif(sys.platform == "win32", reason="symlinks need privileges on Windows")
def test_links_in_a_folder_are_one_photo_with_their_target_and_broken_ones_are_listed(tmp_path):
    folder = tmp_path / "in"
    a, b, c = _images(folder)
    (folder / "a_again.png").symlink_to(a.name)
    (folder / "broken.png").symlink_to("nowhere.png")
    got = expand_inputs([folder])
    assert [p.name for p in got] == ["a.png", "b.png", "broken.png", "c.png"]
    # named, the same: a link to a photo already taken adds nothing, a broken one keeps its name
    got = expand_inputs([a, folder / "a_again.png", folder / "broken.png"])
    assert [p.name for p in got] == ["a.png", "broken.png"]
    summary = run_batch([folder], tmp_path / "out", detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)))
    assert (summary.ok, summary.failed) == (3, 1)
    assert [r["input"] for r in summary.records if r["status"] == "error"] == [str(folder / "broken.png")]


def test_a_folder_that_is_also_the_output_folder_does_not_take_its_previews_as_photos(tmp_path):
    folder = tmp_path / "shelves"
    imgs = _images(folder)
    job = Job(tiling=TileSpec(tile=256), preview=True)
    first = run_batch([folder], folder, detector=BlobDetector(), job=job)
    assert first.ok == len(imgs)
    again = run_batch([folder], folder, detector=BlobDetector(), job=job)
    assert again.ok == 0 and again.skipped == len(imgs)  # no preview of a preview
    assert not list(folder.glob("*.preview.preview.jpg"))
    lone = folder / "holiday.preview.jpg"  # a photo that only looks like a preview
    Image.fromarray(blob_image(100, 120, (10, 10, 40, 40))).save(lone)
    assert lone in expand_inputs([folder])


def test_a_missing_yolo_class_list_is_written_again_on_a_restart(tmp_path):
    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "yolo"))
    run_batch(imgs, out, detector=BlobDetector(), job=job)
    (out / "classes.txt").unlink()
    again = run_batch(imgs, out, detector=BlobDetector(), job=job)
    assert again.ok == len(imgs) and (out / "classes.txt").read_text().splitlines() == ["product"]


def test_restart_skips_images_whose_tile_the_detectors_own_scale_rule_changed(tmp_path):
    class Scaled(BlobDetector):
        def photo_scale(self, width, height):  # as the mmdet adapter's DenseDet rule does
            return 0.25

    imgs = _images(tmp_path / "in")
    job = Job(tiling=TileSpec(tile=256))
    first = run_batch(imgs, tmp_path / "out", detector=Scaled(input_size=128), job=job)
    assert first.ok == 3
    doc = json.loads((tmp_path / "out" / "a.detections.json").read_text())
    assert doc["settings"]["scale"]["source"] == "photo rule" and doc["settings"]["tile"] != 256
    assert run_batch(imgs, tmp_path / "out", detector=Scaled(input_size=128), job=job).skipped == 3


def test_restart_redoes_an_image_whose_json_has_no_image_record(tmp_path):
    imgs = _images(tmp_path / "in")[:1]
    out = tmp_path / "out"
    run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256)))
    path = out / f"{imgs[0].stem}.detections.json"
    doc = json.loads(path.read_text())
    doc["image"] = None
    path.write_text(json.dumps(doc))
    assert run_batch(imgs, out, detector=BlobDetector(), job=Job(tiling=TileSpec(tile=256))).ok == 1


def test_a_phone_folder_gives_every_photo_format_not_only_jpeg(tmp_path):
    folder = tmp_path / "phone"
    folder.mkdir()
    for name in ("IMG_0001.JPG", "IMG_0002.HEIC", "IMG_0003.jfif", "IMG_0004.avif", "IMG_0005.heif", "notes.txt"):
        (folder / name).write_bytes(b"x")
    names = [p.name for p in expand_inputs([folder])]
    # a HEIC photo is taken so that it fails with a message saying what to do, not skipped unseen
    assert names == ["IMG_0001.JPG", "IMG_0002.HEIC", "IMG_0003.jfif", "IMG_0004.avif", "IMG_0005.heif"]


def test_restart_skips_over_a_new_pixel_limit_or_vram_budget_but_not_new_yolo_lines(tmp_path):
    a = _images(tmp_path / "in")[0]
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "yolo"))
    assert run_batch([a], out, detector=BlobDetector(), job=job).ok == 1
    # how or whether an image runs, not what it finds: a rerun only adds what was refused
    for run in (RunSpec(max_pixels=None), RunSpec(max_vram=2.0), RunSpec(batch_size=3)):
        again = Job(tiling=TileSpec(tile=256), formats=("json", "yolo"), run=run)
        assert run_batch([a], out, detector=BlobDetector(), job=again).skipped == 1, run
    scored = Job(tiling=TileSpec(tile=256), formats=("json", "yolo"), yolo_scores=True)
    assert run_batch([a], out, detector=BlobDetector(), job=scored).ok == 1  # other label lines


def test_summary_line_names_the_out_folder_with_home_expanded(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    imgs = _images(tmp_path / "in")
    assert batch_main([str(imgs[0]), "--out", "~/det", "--ray", "none", "--detector", f"{FAKES}:make_blob"]) == 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.endswith(f"manifest: {tmp_path / 'home' / 'det' / 'manifest.json'}"), last
    assert "~" not in last and (tmp_path / "home" / "det" / "manifest.json").is_file()


def test_an_interrupted_run_still_closes_its_manifest(tmp_path):
    imgs = _images(tmp_path / "in")

    def stop_after_first(rec):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_batch(imgs, tmp_path / "out", detector=BlobDetector(), ray=None, on_record=stop_after_first)
    recs = Manifest(tmp_path / "out").records()
    assert [r["event"] for r in recs] == ["run", "image", "end"]
    assert recs[-1]["stopped"] == "interrupted" and recs[-1]["finished"] is False
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["runs"][0]["stopped"] == "interrupted"


def test_the_manifest_drops_an_earlier_path_only_for_the_stem_it_still_holds(tmp_path):
    # p failed under stem 'classes', then ran as 'classes-2' (YOLO reserves 'classes'); q took
    # the free 'classes' later: both photos have outputs, so both stay listed
    m = Manifest(tmp_path)
    for rec in ({"input": "/a/p/classes.png", "stem": "classes", "status": "error"},
                {"input": "/a/p/classes.png", "stem": "classes-2", "status": "ok"},
                {"input": "/a/q/classes.png", "stem": "classes", "status": "ok"},
                {"input": "/a/old/x.png", "stem": "x", "status": "ok"},
                {"input": "/a/new/x.png", "stem": "x", "status": "ok"}):  # x moved: listed once
        m.append({"event": "image", **rec})
    snap = m.snapshot()
    assert sorted(r["input"] for r in snap["images"]) == ["/a/new/x.png", "/a/p/classes.png", "/a/q/classes.png"]
    assert snap["counts"] == {"ok": 3}


def test_batch_names_same_named_inputs_as_the_main_command_does(tmp_path):
    # two x.jpg and a photo whose own name is x-2.jpg: it keeps x-2, the second x becomes x-3
    # (batch took x-2 for the second x and moved the photo named x-2 to x-2-2)
    paths = []
    for folder, box in (("na", (10, 20, 100, 80)), ("nb", (50, 60, 170, 190)), ("nc", (300, 40, 420, 180))):
        (tmp_path / folder).mkdir()
        name = "x-2.png" if folder == "nc" else "x.png"
        Image.fromarray(blob_image(300, 500, box)).save(tmp_path / folder / name)
        paths.append(str(tmp_path / folder / name))
    common = ["--detector", f"{FAKES}:make_blob", "--tile", "256", "-q"]
    assert cli_main([*paths, "--out", str(tmp_path / "cli"), *common]) == 0
    assert batch_main([*paths, "--out", str(tmp_path / "batch"), "--ray", "none", *common]) == 0

    def made_from(out):
        return {f.name: json.loads(f.read_text())["image"]["path"] for f in (tmp_path / out).glob("*.detections.json")}

    want = {"x.detections.json": paths[0], "x-3.detections.json": paths[1], "x-2.detections.json": paths[2]}
    assert made_from("cli") == want
    assert made_from("batch") == want
    # given in the reverse order, both verbs still give na/x the plain name
    rev = paths[::-1]
    assert cli_main([*rev, "--out", str(tmp_path / "cli_rev"), *common]) == 0
    assert batch_main([*rev, "--out", str(tmp_path / "batch_rev"), "--ray", "none", *common]) == 0
    assert made_from("cli_rev") == want
    assert made_from("batch_rev") == want


def test_an_images_line_says_when_it_ran_again_after_its_worker_was_lost():
    # the "worker ... died; retrying its item" warning cannot name the image: its own line does
    from densedet_tile.cli.batch import image_line

    rec = {"input": "/data/img1.png", "status": "ok", "products": 4, "tiles": 1, "seconds": 0.5, "worker": "w1"}
    assert image_line({**rec, "attempts": 1}) == "img1.png: 4 products, 1 tile, 0.50 s [w1]"
    assert image_line({**rec, "attempts": 3}).endswith("[w1], attempt 3 (a worker was lost before)")


def test_a_name_with_a_line_break_stays_on_one_line_and_is_named_once():
    # an outside review: a photo named "a<newline>b.jpg" split its progress line in two, and its
    # error named the path twice (the message folds the name's line break, so it was not found)
    from densedet_tile.cli.batch import image_line
    from densedet_tile.errors import ImageReadError
    from densedet_tile.runner import error_line

    inp = "/data/a\nb.jpg"
    folded = error_line(inp, ImageReadError("/data/a\nb.jpg: unknown or unsupported image format"))
    assert folded == "/data/a b.jpg: unknown or unsupported image format"
    assert error_line(inp, ImageReadError("a\nb.jpg: the file is empty")) == "/data/a\\nb.jpg: the file is empty"
    assert error_line(inp, ValueError("boom")) == "/data/a\\nb.jpg: ValueError: boom"
    line = image_line({"input": inp, "status": "ok", "products": 2, "tiles": 1, "seconds": 0.1, "worker": "w"})
    assert "\n" not in line and line.startswith("a\\nb.jpg: 2 products")


@pytest.mark.parametrize("raw", ["tab\there.png", "a\nb.png", "plain.png", "caf\udce9.png"])
def test_a_warning_naming_its_image_is_not_prefixed_with_the_name_again(raw, caplog):
    # an outside review: the check looked for the escaped name in a text holding the raw one, so
    # "tab<TAB>here.png: tile replaced" came out as "tab\there.png: tab\there.png: tile replaced"
    from collections import Counter

    from densedet_tile.batch import _say_warnings
    from densedet_tile.errors import shown_name

    with caplog.at_level("WARNING", logger="densedet_tile"):
        _say_warnings({"input": f"/data/{raw}", "warnings": [("k1", f"{raw}: tile 300 replaced by 98 px"),
                                                              ("k2", "no products found")]}, Counter())
    said = [r.getMessage() for r in caplog.records]
    assert said[0].count(raw) == 1 and said[0].startswith(raw)
    assert said[1] == f"{shown_name(raw)}: no products found"


def test_an_images_warnings_are_in_its_record_and_said_a_few_times_each(tmp_path, caplog):
    # each image's warnings travel in its record (a Ray worker's own log lines never reach the
    # command); one kind is said for the first images only, then counted once at the end
    from densedet_tile.batch import WARNING_REPEATS
    from fakes import WarningBlob

    folder = tmp_path / "in"
    folder.mkdir()
    n = WARNING_REPEATS + 2
    for i in range(n):
        Image.fromarray(blob_image(200, 300, (10, 20, 60 + 10 * i, 80))).save(folder / f"p{i}.png")
    with caplog.at_level("WARNING", logger="densedet_tile"):
        s = run_batch([folder], tmp_path / "out", detector=WarningBlob(), job=Job(tiling=TileSpec(tile=512)), ray=None)
    assert s.ok == n
    for r in s.records:
        width = 50 + 10 * int(Path(r["input"]).stem[1:])
        assert r["warnings"] == [["a blob %d px wide looked odd", f"a blob {width} px wide looked odd"]]
    said = [m for m in caplog.messages if "looked odd" in m and "more images" not in m]
    # named by the image, as the record says it
    assert said == [f"p{i}.png: a blob {50 + 10 * i} px wide looked odd" for i in range(WARNING_REPEATS)]
    assert [m for m in caplog.messages if "more images had the warning" in m] == [
        '2 more images had the warning "a blob ... px wide looked odd" (each image\'s warnings are in its line '
        'of manifest.jsonl)']
    lines = [json.loads(x) for x in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert sum(1 for x in lines if x.get("warnings")) == n


def test_a_restart_redoes_an_output_the_json_was_not_written_with(tmp_path):
    # a CSV or COCO file of the right name that is not the one the JSON records (put there by
    # hand, or left by another run) was taken for complete and kept as it was
    imgs = _images(tmp_path / "in")[:1]
    out = tmp_path / "out"
    job = Job(tiling=TileSpec(tile=256), formats=("json", "csv"))
    run_batch(imgs, out, detector=BlobDetector(), job=job, ray=None)
    good = (out / "a.detections.csv").read_bytes()
    again = run_batch(imgs, out, detector=BlobDetector(), job=job, ray=None)
    assert [r["status"] for r in again.records] == ["skipped"]
    (out / "a.detections.csv").write_text("garbage\n")
    again = run_batch(imgs, out, detector=BlobDetector(), job=job, ray=None)
    assert [r["status"] for r in again.records] == ["ok"]
    assert (out / "a.detections.csv").read_bytes() == good
    # a format the JSON was not written with, whose file is there already: redone too
    (out / "a.coco.json").write_text("garbage")
    coco = replace(job, formats=("json", "csv", "coco"))
    again = run_batch(imgs, out, detector=BlobDetector(), job=coco, ray=None)
    assert [r["status"] for r in again.records] == ["ok"]
    assert json.loads((out / "a.coco.json").read_text())[0]["image_id"] == "a.png"


def test_a_batch_keeps_debug_lines_and_counts_python_warnings_by_their_text(tmp_path, caplog):
    # holding back an image's warnings swallowed --debug's lines (its tracebacks of failed
    # images) too; and Python warnings, logged as "%s", all counted as one kind
    import logging
    import warnings as py_warnings

    from densedet_tile.runner import caught_warnings

    with caplog.at_level("DEBUG", logger="densedet_tile"), py_warnings.catch_warnings():
        py_warnings.simplefilter("always")  # (the suite makes warnings errors)
        with caught_warnings() as caught:
            logging.getLogger("densedet_tile.tests").debug("a debug line")
            logging.getLogger("densedet_tile.tests").warning("%s", "first of its kind")
            py_warnings.warn("second of its kind", UserWarning)
    assert "a debug line" in caplog.text and "first of its kind" not in caplog.text
    assert caught == [("first of its kind", "first of its kind"),
                      ("UserWarning: second of its kind", "UserWarning: second of its kind")]


def test_worker_options_on_a_machine_without_ray_name_its_extra(tmp_path, caplog, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    imgs = _images(tmp_path / "in")
    with caplog.at_level("WARNING", logger="densedet_tile"):
        run_batch(imgs[:1], tmp_path / "out", detector=BlobDetector(), timeout=5.0, split=True)
    assert "split needs Ray workers" in caplog.text and "a time limit needs Ray workers" in caplog.text
    assert caplog.text.count("pip install 'densedet-tile[ray]'") == 2


def test_a_folder_that_cannot_be_locked_is_said(tmp_path, caplog, monkeypatch):
    # NFS mounted nolock, Lustre without flock: the run went on unlocked without a word, and two
    # runs into one folder replaced each other's results
    import densedet_tile.batch as batch_mod

    monkeypatch.setattr(batch_mod, "flock_path", lambda path, flags: ("no locks", None))
    imgs = _images(tmp_path / "in")
    with caplog.at_level("WARNING", logger="densedet_tile"):
        summary = run_batch(imgs[:1], tmp_path / "out", detector=BlobDetector(), ray="none")
    assert summary.ok == 1
    assert "takes no locks" in caplog.text and str(tmp_path / "out") in caplog.text


@pytest.mark.parametrize("err", ["EACCES", "ENOSPC"])
def test_a_folder_that_stops_taking_files_stops_the_run_at_the_first_image(tmp_path, monkeypatch, err):
    # an outside review: a folder made read-only mid-run had every remaining image detected and
    # then lost to "Permission denied", one by one, before the run ended
    import errno

    import densedet_tile.io as io_
    import densedet_tile.runner as runner

    imgs = _images(tmp_path / "in")
    out = tmp_path / "out"
    det = BlobDetector()
    real, real_probe = runner.write_files, io_._probe_writable
    calls = []

    def refusing(files):
        calls.append(1)
        if len(calls) >= 2:  # from the second image on, the folder takes nothing
            target = next(iter(files))
            raise OSError(getattr(errno, err), os.strerror(getattr(errno, err)), str(target))
        return real(files)

    def no_new_file(folder):  # (as root the folder's mode would not stop the probe)
        if len(calls) < 2:  # (the check of the folder as the run starts)
            return real_probe(folder)
        raise PermissionError(errno.EACCES, "Permission denied", str(folder))

    monkeypatch.setattr(runner, "write_files", refusing)
    monkeypatch.setattr(io_, "_probe_writable", no_new_file)
    with pytest.raises(OSError, match=r"cannot write there .*: the run stops; 1 more not begun; run it again"):
        run_batch(imgs, out, detector=det, job=Job(tiling=TileSpec(tile=256)))
    lines = [json.loads(x) for x in (out / "manifest.jsonl").read_text().splitlines()]
    images = [r for r in lines if r["event"] == "image"]
    assert [r["status"] for r in images] == ["ok", "error"]  # the third image never ran
    assert lines[-1]["event"] == "end" and lines[-1]["finished"] is False and "cannot write there" in lines[-1]["stopped"]
    assert "out_failed" not in images[1]
    # an image's own failure (not the folder's) goes on to the next image as before
    assert not runner.out_folder_failed(OSError(errno.EACCES, "Permission denied", str(tmp_path / "in" / "a.png")), out)
    assert not runner.out_folder_failed(OSError(errno.EIO, "I/O error", str(out / "a.detections.json")), out)
    assert runner.out_folder_failed(OSError(errno.EROFS, "Read-only file system", str(out / "a.detections.json")), out)
    # one file refused in a folder that still takes new ones (another user's file in a sticky
    # folder): that image's failure alone, and the run goes on (a second look at this fix)
    monkeypatch.setattr(io_, "_probe_writable", real_probe)
    calls.clear()
    if err == "EACCES":
        summary = run_batch(imgs, out, detector=det, job=Job(tiling=TileSpec(tile=256)))
        assert summary.ok == 1 and summary.failed == 1 and summary.skipped == 1 and len(calls) == 2
    # the folder taking files again, the run goes on where it stopped
    monkeypatch.setattr(runner, "write_files", real)
    summary = run_batch(imgs, out, detector=det, job=Job(tiling=TileSpec(tile=256)))
    assert summary.ok + summary.skipped == 3 and summary.failed == 0


def test_detect_stops_at_the_first_input_its_folder_would_not_take(tmp_path, monkeypatch, capsys):
    import errno

    import densedet_tile.runner as runner
    from densedet_tile.cli.detect import detect_main

    imgs = _images(tmp_path / "in")
    real, calls = runner.write_files, []

    def refusing(files):
        calls.append(1)
        if len(calls) >= 2:
            raise OSError(errno.EROFS, "Read-only file system", str(next(iter(files))))
        return real(files)

    monkeypatch.setattr(runner, "write_files", refusing)
    code = detect_main([*map(str, imgs), "--out", str(tmp_path / "o"), "--detector", "fakes:make_blob",
                        "--device", "cpu", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(calls) == 2, err
    assert err[-1].endswith("cannot write there: the run stops; 1 more not begun; run it again once the folder "
                            "takes files (the images done are kept)")
    assert "Read-only file system" in err[-2]


def test_a_ray_that_fails_to_import_does_not_stop_an_in_process_batch(tmp_path):
    # a second look: asking whether Ray is there (only to word the warning that --split needs
    # Ray workers) imported a broken Ray and ended a --ray none run with its traceback
    from fakes import run_cli

    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "__init__.py").write_text("raise RuntimeError('a broken Ray')\n")
    Image.fromarray(blob_image(200, 300, (40, 30, 160, 90))).save(tmp_path / "a.png")
    r = run_cli("batch", "a.png", "--out", "o", "--ray", "none", "--split", "--detector", "fakes:make_blob",
                "--device", "cpu", "-q", cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "split needs Ray workers" in r.stderr and (tmp_path / "o" / "a.detections.json").is_file()


def test_a_folder_named_ray_is_not_taken_for_ray(tmp_path, monkeypatch):
    # an outside review: `python -m densedet_tile batch` run in /tmp, where Ray's own temp folder
    # /tmp/ray lies, found it as a namespace package on a light install (no Ray) and refused to
    # run: "the 'ray' package, which is installed but cannot be imported"
    import importlib.machinery
    import importlib.util

    from densedet_tile.batch import _resolve_backend
    from densedet_tile.distributed import ray_installed

    (tmp_path / "ray").mkdir()
    spec = importlib.machinery.PathFinder.find_spec("ray", [str(tmp_path)])
    assert spec is not None and spec.origin in (None, "namespace")  # what Python makes of the folder
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: spec if name == "ray" else real(name, *a))
    assert ray_installed() is False
    assert _resolve_backend("default") is None  # in-process, as without Ray
    with pytest.raises(MissingDependencyError, match="not installed"):
        _resolve_backend("local")
