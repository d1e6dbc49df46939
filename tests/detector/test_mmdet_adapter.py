"""The mmdet backend: a real MMDetection model built from the repo's DenseDet (light) config.

Weights are random, so the tests check shapes, dtypes, frames and plumbing, not accuracy.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmdet")
torch = pytest.importorskip("torch")

from densedet_tile import Detections, TileSpec  # noqa: E402
from densedet_tile.configs import config_path  # noqa: E402
from densedet_tile.detector import mmdet_adapter  # noqa: E402
from densedet_tile.detector.registry import load_detector  # noqa: E402
from densedet_tile.errors import DetectorError, InvalidInputError  # noqa: E402
from densedet_tile.tiler.grid import make_grid  # noqa: E402
from fakes import assert_same_boxes  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LIGHT = "densedet-r18-light"  # shipped configs are found by name
FULL = str(config_path("densedet-x101"))
FAST = {"model.test_cfg.rpn.nms_pre": 1000, "model.test_cfg.rpn.max_per_img": 500}


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    # fewer RPN proposals than DenseDet's 3000 keep the CPU tests quick; the CLI test below runs
    # the config exactly as written
    return mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=128, score_thr=0.0,
                               cfg_options=FAST)


def _tiles(seed, shapes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_build_reads_the_config(det):
    assert det.name == "mmdet:densedet_r18_cascade_bfp_light"
    assert det.input_size == 128
    assert det.class_names == ("product",)
    assert det.info["architecture"] == "CascadeRCNN" and det.info["device"] == "cpu"
    assert not det.model.training
    # the DenseDet structure: two cascade stages, FPN + BFP, 1 class, class-agnostic regression
    assert det.model.roi_head.num_stages == 2
    assert [type(m).__name__ for m in det.model.neck] == ["FPN", "BFP"]
    head = det.model.roi_head.bbox_head[0]
    assert head.num_classes == 1 and head.reg_class_agnostic
    assert det.model.test_cfg.rcnn.max_per_img == 400
    assert det.model.test_cfg.rpn.max_per_img == 500  # cfg_options reached the model


def test_input_size_defaults_to_the_config_declaration():
    d = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu")
    assert d.input_size == 1280
    resize = [t for t in d._pipeline.transforms if type(t).__name__ == "Resize"][0]
    assert resize.scale == (1280, 1280) and resize.keep_ratio


def test_predict_returns_tile_local_boxes_per_tile(det):
    tiles = _tiles(1, [(96, 128), (128, 128), (40, 70)])
    out = det.predict(tiles)
    assert len(out) == 3
    for d, t in zip(out, tiles):
        assert isinstance(d, Detections)
        assert 0 < len(d) <= 400
        assert d.xyxy.dtype == np.float32 and d.scores.dtype == np.float32 and d.labels.dtype == np.int64
        h, w = t.shape[:2]
        assert (d.xyxy[:, [0, 2]] >= 0).all() and (d.xyxy[:, [0, 2]] <= w).all()
        assert (d.xyxy[:, [1, 3]] >= 0).all() and (d.xyxy[:, [1, 3]] <= h).all()
        assert ((d.scores >= 0) & (d.scores <= 1)).all()
        assert set(d.labels.tolist()) == {0}
        assert np.all(np.diff(d.scores) <= 1e-6)  # best first


def test_boxes_are_mapped_back_from_mmdets_resize(det):
    # 128 px input size, 256x200 tile: mmdet shrinks it by 0.5; boxes must come back in tile pixels.
    (tile,) = _tiles(2, [(200, 256)])
    (d,) = det.predict([tile])
    assert d.xyxy[:, 2].max() > 200 and d.xyxy[:, 3].max() > 150


def test_batched_equals_one_by_one_for_equal_tiles(det):
    tiles = _tiles(3, [(128, 128), (128, 128)])
    together = det.predict(tiles)
    alone = [det.predict([t])[0] for t in tiles]
    for a, b in zip(together, alone):  # as sets: boxes with tied scores may come back swapped
        assert_same_boxes(a, b, box_atol=1e-2, score_atol=1e-4)


def test_channel_order_reaches_the_model_as_rgb(det, monkeypatch):
    seen = {}
    orig = det.model.data_preprocessor.forward

    def spy(data, training=False):
        seen["raw"] = data["inputs"][0].clone()
        return orig(data, training)

    monkeypatch.setattr(det.model.data_preprocessor, "forward", spy)
    tile = np.zeros((64, 64, 3), np.uint8)
    tile[..., 0] = 200  # pure red in RGB
    det.predict([tile])
    # mmdet holds in-memory images as BGR (channel 2 = red) and flips to RGB in the preprocessor
    raw = seen["raw"]
    assert raw[2].float().mean() == 200 and raw[0].float().mean() == 0
    assert det.model.data_preprocessor._channel_conversion


def test_score_thr_drops_low_boxes(det):
    strict = copy.copy(det)
    strict.score_thr = 0.5
    (tile,) = _tiles(4, [(128, 128)])
    (loose_d,) = det.predict([tile])
    (strict_d,) = strict.predict([tile])
    assert (strict_d.scores >= 0.5).all()
    assert len(strict_d) == int((loose_d.scores >= 0.5).sum())


def test_empty_batch_and_bad_tiles(det):
    assert det.predict([]) == []
    with pytest.raises(InvalidInputError, match="tile 1: expected an HxWx3 uint8"):
        det.predict([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float32)])
    with pytest.raises(InvalidInputError, match="tile 0"):
        det.predict([np.zeros((8, 8), np.uint8)])


def test_checkpoint_round_trip_with_numpy_meta(det, tmp_path):
    from mmengine.logging.history_buffer import HistoryBuffer

    sd = {k: v.clone() for k, v in det.model.state_dict().items()}
    ckpt = {
        "meta": {"seed": np.int64(7), "epoch": 12, "dataset_meta": {"classes": ("sku",)},
                 "lr": np.array([0.02, 0.002])},
        "state_dict": sd,
        "message_hub": {"log_scalars": {"loss": HistoryBuffer([1.0, 0.5], [1, 1])}},
    }
    path = tmp_path / "model.pth"
    torch.save(ckpt, path)
    other = mmdet_adapter.build(config=LIGHT, checkpoint=str(path), device="cpu", input_size=128, score_thr=0.0,
                                cfg_options=FAST)
    assert other.class_names == ("sku",)
    assert other.info["checkpoint"] == str(path)
    (tile,) = _tiles(5, [(128, 96)])
    a, b = det.predict([tile])[0], other.predict([tile])[0]
    assert_same_boxes(a, b, box_atol=1e-3, score_atol=1e-5)


def test_checkpoint_with_1x_keys_is_refused_with_a_hint(det, tmp_path):
    sd = {("bbox_head." + k[len("roi_head.bbox_head."):] if k.startswith("roi_head.bbox_head.") else k): v
          for k, v in det.model.state_dict().items()}
    path = tmp_path / "old.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(DetectorError, match="densedet-tile convert-checkpoint"):
        mmdet_adapter.build(config=LIGHT, checkpoint=str(path), device="cpu")


def test_bad_arguments_fail_before_building(tmp_path):
    with pytest.raises(InvalidInputError, match="config is required"):
        mmdet_adapter.build(config=None, checkpoint=None)
    with pytest.raises(InvalidInputError, match="nope.py.: no such file, and not a shipped config"):
        mmdet_adapter.build(config=str(tmp_path / "nope.py"), checkpoint=None)
    with pytest.raises(InvalidInputError, match="unknown option"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, frobnicate=1)
    with pytest.raises(InvalidInputError, match="fp16"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", precision="fp16")
    with pytest.raises(InvalidInputError, match="input_size"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=3)
    with pytest.raises(DetectorError, match="no such file"):
        mmdet_adapter.build(config=LIGHT, checkpoint=str(tmp_path / "missing.pth"), device="cpu")
    with pytest.raises(InvalidInputError, match="cfg_options must be a dict of dotted keys.*got 5"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", cfg_options=5)


def test_bf16_backbone_path_keeps_heads_in_fp32():
    d = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=96, score_thr=0.0,
                            precision="bf16", cfg_options=FAST)
    assert next(d.model.backbone.parameters()).dtype == torch.bfloat16
    assert next(d.model.roi_head.parameters()).dtype == torch.float32
    (out,) = d.predict(_tiles(6, [(96, 80)]))
    assert len(out) > 0 and out.xyxy.dtype == np.float32
    assert (out.xyxy[:, 2] <= 80).all() and (out.xyxy[:, 3] <= 96).all()


def test_full_densedet_config_builds_the_published_structure():
    from mmengine.config import Config

    cfg = Config.fromfile(FULL)
    assert cfg.model.backbone.type == "ResNeXt" and cfg.model.backbone.depth == 101
    assert cfg.model.backbone.groups == 32 and cfg.model.backbone.base_width == 4
    assert cfg.model.test_cfg.rpn.max_per_img == 3000 and cfg.model.test_cfg.rcnn.max_per_img == 400
    assert cfg.model.rpn_head.anchor_generator.strides == [4, 8, 16, 32, 64]
    light = Config.fromfile(str(config_path(LIGHT)))
    assert light.model.test_cfg == cfg.model.test_cfg
    assert light.model.rpn_head.anchor_generator == cfg.model.rpn_head.anchor_generator


def test_registry_builds_the_mmdet_adapter():
    d = load_detector("mmdet", config=LIGHT, checkpoint=None, device="cpu", input_size=64, score_thr=0.2)
    assert isinstance(d, mmdet_adapter.MMDetDetector) and d.input_size == 64 and d.score_thr == 0.2


def test_importing_the_package_and_adapters_stays_light():
    code = (
        "import sys, densedet_tile\n"
        "import densedet_tile.detector.mmdet_adapter, densedet_tile.detector.checkpoints\n"
        "heavy = [m for m in ('mmdet', 'mmcv', 'mmengine', 'onnxruntime') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_cli_runs_a_real_mmdet_model_on_an_image(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(7)
    img = tmp_path / "shelf.png"
    Image.fromarray(rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)).save(img)
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "densedet_tile", str(img), "--detector", "mmdet", "--config", LIGHT,
         "--device", "cpu", "--tile", "256", "--overlap", "0.2", "--input-size", "128",
         "--score-thr", "0.3", "--out", str(out), "--format", "json,csv", "-q"],
        capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    doc = json.loads((out / "shelf.detections.json").read_text())
    assert doc["schema"] == "densedet-tile/detections@1"
    assert doc["image"]["width"] == 300 and doc["image"]["height"] == 200
    assert doc["num_tiles"] == len(make_grid(300, 200, TileSpec(tile=256, overlap=0.2))) > 1
    assert doc["model"]["name"] == "mmdet:densedet_r18_cascade_bfp_light"
    boxes = np.array(doc["boxes"], dtype=np.float64).reshape(-1, 4)
    assert len(boxes) > 0 and len(doc["scores"]) == len(boxes) == len(doc["labels"])
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 300).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 200).all()
    assert (np.array(doc["scores"]) >= 0.3).all()
    assert doc["categories"] == {"0": "product"}
    assert (out / "shelf.detections.csv").read_text().count("\n") == len(boxes) + 1


def test_a_shipped_config_loads_first_in_a_process_with_warnings_as_errors():
    # its custom_imports import the 1.x components before anything else of mmdet: the import
    # noise of mmcv (an ImportWarning about a moved module) made Config.fromfile fail under
    # -W error in a fresh process (and this file's next test, run alone)
    code = ("from mmengine.config import Config; from densedet_tile.configs import config_path; "
            "cfg = Config.fromfile(str(config_path('densedet-x101'))); print(cfg.model.type)")
    res = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "CascadeRCNN"


def test_whole_image_config_keeps_the_original_test_scale():
    from mmengine.config import Config

    cfg = Config.fromfile(str(config_path("densedet-x101-whole")))
    assert cfg.tile_input_size is None
    steps = mmdet_adapter._tile_pipeline(cfg, None)
    assert steps[0] == {"type": "mmdet.LoadImageFromNDArray"}
    resize = [s for s in steps if s["type"] == "Resize"][0]
    assert resize["scale"] == (3000, 1800) and resize["keep_ratio"]
    pinned = [s for s in mmdet_adapter._tile_pipeline(cfg, 1024) if s["type"] == "Resize"][0]
    assert pinned["scale"] == (1024, 1024) and pinned["keep_ratio"]


def test_a_runs_input_size_reaches_the_model_of_a_config_with_its_own_resize():
    # a stock config (no tile_input_size): its test pipeline's Resize stays for tiles as they
    # come, but tiles the engine resized to a run's own size (--scale, tile auto, RunSpec)
    # must reach the backbone at that size, not be resized back to the config's scale
    import densedet_tile as dt

    torch.manual_seed(0)
    d = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=None, score_thr=0.0,
                            cfg_options={**FAST, "tile_input_size": None})
    assert d.input_size is None
    seen: list[tuple[int, int]] = []
    d.model.backbone.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[-2:])))
    img = np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)
    res = dt.detect_image(img, d, tiling=TileSpec(tile=256, overlap=0.25), run=dt.RunSpec(input_size=128, device="cpu"))
    assert res.settings["input_size"] == 128 and seen and set(seen) == {(128, 128)}
    seen.clear()
    d.predict(_tiles(0, [(128, 128)]))  # outside the engine: the config's own resize, as before
    assert seen and seen[0] != (128, 128)


def test_a_tile_that_fills_the_configs_box_limit_is_warned_about_once(caplog):
    import logging

    torch.manual_seed(0)
    d = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=128, score_thr=0.0,
                            cfg_options={**FAST, "model.test_cfg.rcnn.max_per_img": 5})
    assert d._box_cap == 5
    with caplog.at_level(logging.WARNING, logger="densedet_tile.detector.mmdet_adapter"):
        out = d.predict(_tiles(0, [(128, 128), (128, 128)]))
    assert all(len(o) <= 5 for o in out) and any(len(o) == 5 for o in out)  # random weights: boxes everywhere
    said = [r.getMessage() for r in caplog.records if "limit of 5 boxes" in r.getMessage()]
    assert len(said) == 1 and "model.test_cfg.rcnn.max_per_img" in said[0]


# setuptools 77 to 80 warn on importing pkg_resources, which mmengine does while reading the
# config; the suite's warnings-as-errors would make that warning the failure
@pytest.mark.filterwarnings("ignore:pkg_resources is deprecated as an API:UserWarning")
@pytest.mark.parametrize("pkg_resources_present", [True, False])
def test_a_config_based_on_mmdets_own_configs_loads_with_or_without_pkg_resources(
        tmp_path, monkeypatch, pkg_resources_present):
    # `_base_ = 'mmdet::...'` is how configs written for MMDetection 3 start; mmengine finds the
    # mmdet package through pkg_resources, which setuptools 81 and later no longer ship
    import mmengine.config.config as mm_config

    for name in ("get_installed_path", "is_installed"):  # undone after the test
        monkeypatch.setattr(mm_config, name, getattr(mm_config, name))
    if pkg_resources_present:
        # setuptools 81 and later (CI's) ship none: a small one of our own, with what mmengine
        # calls, so this case runs everywhere instead of being skipped wherever setuptools is new
        try:
            import pkg_resources  # noqa: F401
        except ImportError:
            (tmp_path / "stub").mkdir()
            (tmp_path / "stub" / "pkg_resources.py").write_text(textwrap.dedent("""
                import importlib.metadata as _md

                class DistributionNotFound(Exception):
                    pass

                class _Distribution:
                    def __init__(self, location):
                        self.location = location

                def get_distribution(name):
                    try:
                        return _Distribution(str(_md.distribution(name).locate_file("")))
                    except _md.PackageNotFoundError:
                        raise DistributionNotFound(name) from None
            """))
            monkeypatch.syspath_prepend(str(tmp_path / "stub"))
            import importlib.util

            # loaded without import (which would put it in sys.modules before monkeypatch saw the
            # name missing) and set through monkeypatch, so that it is gone again after the test
            spec = importlib.util.spec_from_file_location("pkg_resources", tmp_path / "stub" / "pkg_resources.py")
            stub = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(stub)
            monkeypatch.setitem(sys.modules, "pkg_resources", stub)
    else:
        monkeypatch.setitem(sys.modules, "pkg_resources", None)  # as if setuptools had none
    cfg = tmp_path / "mine.py"
    cfg.write_text("_base_ = 'mmdet::retinanet/retinanet_r18_fpn_1x_coco.py'\n"
                   "model = dict(bbox_head=dict(num_classes=1))\n"
                   "metainfo = dict(classes=('product',))\n")
    torch.manual_seed(0)
    d = mmdet_adapter.build(config=str(cfg), checkpoint=None, device="cpu", input_size=128, score_thr=0.0)
    assert d.info["architecture"] == "RetinaNet" and d.info["classes"] == ["product"]
    out = d.predict(_tiles(0, [(128, 128)]))
    assert len(out) == 1 and isinstance(out[0], Detections)


def test_installed_path_names_the_package_folder_or_says_it_is_missing():
    import mmdet

    assert mmdet_adapter._installed_path("mmdet") == os.path.dirname(mmdet.__file__)
    assert mmdet_adapter._is_installed("mmdet")
    assert not mmdet_adapter._is_installed("no-such-package-densedet")
    with pytest.raises(ModuleNotFoundError, match="no_such_package_densedet"):
        mmdet_adapter._installed_path("no_such_package_densedet")


def test_a_checkpoint_holding_inf_is_refused_when_built(det, tmp_path):
    # mmdet drops non-finite boxes in its own post-processing: such weights gave 0 products, exit 0
    sd = {k: v.clone() for k, v in det.model.state_dict().items()}
    key = next(k for k, v in sd.items() if k.startswith("roi_head.") and v.is_floating_point())
    sd[key].view(-1)[0] = float("inf")
    path = tmp_path / "inf.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(DetectorError, match=rf"inf.pth: 1 weight tensor\(s\) hold NaN or infinite values \(e.g. {key}\)"):
        mmdet_adapter.build(config=LIGHT, checkpoint=str(path), device="cpu")


def test_cfg_options_are_checked_against_the_config(caplog):
    # a number given as text would fail on every tile: refused before the model is built
    with pytest.raises(InvalidInputError, match=r"cfg_options model.test_cfg.rpn.max_per_img must be a number .* 'abc'"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", cfg_options={"model.test_cfg.rpn.max_per_img": "abc"})
    # a key the config lacks is added by mmengine without a word: named, with the nearest key
    with caplog.at_level("WARNING", logger="densedet_tile.detector.mmdet_adapter"):
        det = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=128,
                                  cfg_options={**FAST, "model.test_cfg.rcnn.nms.iou_thresold": 0.4})
    said = [r.getMessage() for r in caplog.records if "cfg_options adds" in r.getMessage()]
    assert len(said) == 1 and "did you mean model.test_cfg.rcnn.nms.iou_threshold?" in said[0]
    assert det.model.test_cfg.rpn.max_per_img == 500  # the known keys still reached the model


def test_the_1x_plus_one_stays_one_tile_pixel_when_the_engine_resizes_the_tile():
    # the DenseDet head reports x2 + 1, y2 + 1 as 1.x did, in the pixels of the array it is
    # given; scaled back from a tile the engine had shrunk to half, that pixel became two (an
    # outside review: 0.36 px too wide and tall at the photo rule's 0.735)
    import densedet_tile as dt

    torch.manual_seed(0)
    model = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=128, score_thr=0.0,
                                cfg_options=FAST)
    assert model.box_end_offset == 1.0
    frac = (0.1, 0.2, 0.5, 0.6)

    def decode(bboxes, pred, max_shape=None, wh_ratio_clip=None):  # one box, at fractions of the input
        from mmdet.structures.bbox import get_box_tensor

        b = get_box_tensor(bboxes)
        h, w = float(max_shape[0]), float(max_shape[1])
        return b.new_tensor([frac[0] * w, frac[1] * h, frac[2] * w, frac[3] * h]).expand(b.shape[0], 4).clone()

    model.model.roi_head.bbox_head[-1].bbox_coder.decode = decode
    tile = np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)
    want = [0.1 * 256, 0.2 * 256, 0.5 * 256 + 1, 0.6 * 256 + 1]  # as 1.x reported it on the 256 px image
    own = model.predict([tile])[0]  # mmdet's own Resize to 128
    np.testing.assert_allclose(own.xyxy[np.argmax(own.scores)], want, atol=0.01)
    res = dt.detect_image(tile, model, tile=256, input_size=128)  # the engine resizes the tile to 128
    np.testing.assert_allclose(res.detections.xyxy[np.argmax(res.detections.scores)], want, atol=0.01)


def test_a_score_threshold_in_cfg_options_is_refused_for_score_thr():
    # it was replaced by the engine's own without a word (an outside review)
    with pytest.raises(InvalidInputError, match=r"cfg_options model.test_cfg.rcnn.score_thr is set from the "
                                                r"detector's score_thr; give the threshold as --score-thr"):
        mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=96,
                            cfg_options={"model.test_cfg.rcnn.score_thr": 0.3})


def test_a_build_leaves_the_process_warnings_filters_alone(monkeypatch):
    # as with torchvision: the model's build ran under warnings.catch_warnings, muting every
    # thread's warnings meanwhile; the stack's import noise is muted once, by one thread at a time
    import warnings

    from mmdet.registry import MODELS

    load_detector("mmdet", config=LIGHT, checkpoint=None, device="cpu", input_size=64)  # (the stack imported)
    seen = []
    real = MODELS.build

    def spy(*args, **kwargs):
        seen.append(list(warnings.filters))
        return real(*args, **kwargs)

    monkeypatch.setattr(MODELS, "build", spy)
    muted = []
    monkeypatch.setattr(mmdet_adapter, "_import_models", lambda: muted.append(1))
    load_detector("mmdet", config=LIGHT, checkpoint=None, device="cpu", input_size=64)
    assert seen and seen[0] == list(warnings.filters)
    assert muted == []  # the muted imports ran once, at the first build, and not again


def test_the_shipped_configs_work_with_mmdets_own_inference_api(det, tmp_path):
    # docs/mmdet.md says the configs serve mmdet's own tools too; they had a test_pipeline only,
    # and mmdet's init_detector and inference_detector read test_dataloader: both failed with
    # "'ConfigDict' object has no attribute 'test_dataloader'" (an outside review)
    from mmdet.apis import inference_detector, init_detector
    from mmengine.config import Config

    ckpt = tmp_path / "light.pth"
    # (with its class names in the meta, as convert-checkpoint writes them: without, mmdet itself
    # falls back to COCO's)
    torch.save({"state_dict": det.model.state_dict(), "meta": {"dataset_meta": {"classes": ("product",)}}}, str(ckpt))
    model = init_detector(str(config_path(LIGHT)), str(ckpt), device="cpu", cfg_options=dict(FAST))
    assert tuple(model.dataset_meta["classes"]) == ("product",)
    image = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = inference_detector(model, image).pred_instances.bboxes.numpy()
    # in the photo's frame (up to 1.x's inclusive pixel past the edge: docs/mmdet.md)
    assert len(boxes) and (boxes[:, 2] <= 161 + 1e-3).all() and (boxes[:, 3] <= 121 + 1e-3).all()
    # the whole-photo config's own test scale reaches its dataloader too
    whole = Config.fromfile(str(config_path("densedet-x101-whole")))
    resize = [p for p in whole.test_dataloader.dataset.pipeline if p["type"] == "Resize"]
    assert [r["scale"] for r in resize] == [(3000, 1800)]
