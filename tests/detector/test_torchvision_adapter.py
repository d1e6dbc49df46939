"""torchvision detection builders through the adapter (random weights, nothing downloaded)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from densedet_tile import Detections  # noqa: E402
from densedet_tile.detector import torchvision_adapter as tva  # noqa: E402
from densedet_tile.detector.registry import load_detector  # noqa: E402
from densedet_tile.errors import DetectorError, InvalidInputError  # noqa: E402
from fakes import assert_same_boxes, one_torch_thread  # noqa: E402

LIGHT = "fasterrcnn_mobilenet_v3_large_320_fpn"


def _tiles(seed, shapes):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


@pytest.fixture(scope="module")
def det():
    torch.manual_seed(0)
    return tva.build(config=LIGHT, checkpoint=None, device="cpu", score_thr=0.0, num_classes=3, input_size=96)


def test_builds_with_declared_and_given_input_size():
    d = tva.build(config=LIGHT, checkpoint=None, device="cpu")
    assert d.input_size == 320  # what the model's transform declares
    assert d.model.transform.min_size == (320,) and d.model.transform.max_size == 320
    assert d.model.roi_heads.detections_per_img == 400 and d.model.roi_heads.score_thresh == 0.05
    assert d.class_names == ("product",) and d.name == f"torchvision:{LIGHT}"


def test_predict_gives_tile_local_detections(det):
    tiles = _tiles(0, [(96, 80), (64, 96)])
    out = det.predict(tiles)
    assert len(out) == 2
    for d, t in zip(out, tiles):
        assert isinstance(d, Detections) and len(d) <= 400
        h, w = t.shape[:2]
        assert (d.xyxy >= 0).all() and (d.xyxy[:, [0, 2]] <= w).all() and (d.xyxy[:, [1, 3]] <= h).all()
        assert set(d.labels.tolist()) <= {0, 1}  # 3 classes with background removed and shifted
    assert sum(len(d) for d in out) > 0


def test_boxes_are_mapped_back_from_the_models_resize(det):
    # input_size 96: a 300x240 tile is shrunk by the model's transform; boxes must come back.
    (d,) = det.predict(_tiles(1, [(240, 300)]))
    assert len(d) > 0 and d.xyxy[:, 2].max() > 150


def test_checkpoint_num_classes_and_weights_round_trip(det, tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(det.model.state_dict(), path)
    other = tva.build(config=LIGHT, checkpoint=str(path), device="cpu", score_thr=0.0, input_size=96)
    assert other.info["num_classes"] == 3 and other.class_names == ("0", "1")  # numbered alike, none "product"
    tiles = _tiles(2, [(96, 96)])
    a, b = det.predict(tiles)[0], other.predict(tiles)[0]
    assert_same_boxes(a, b, box_atol=1e-3, score_atol=1e-5)
    assert sorted(a.labels.tolist()) == sorted(b.labels.tolist())
    with pytest.raises(DetectorError, match="has 3 classes"):
        tva.build(config=LIGHT, checkpoint=str(path), device="cpu", num_classes=5)


@pytest.mark.parametrize("name,k", [("ssdlite320_mobilenet_v3_large", 4), ("retinanet_resnet50_fpn", 2),
                                    ("fcos_resnet50_fpn", 7)])
def test_num_classes_is_read_from_other_head_layouts(name, k):
    sd = tva._construct(name, k, {}).state_dict()
    assert tva.infer_num_classes(name, sd) == k


def test_mismatched_checkpoint_and_bad_names(tmp_path, det):
    sd = det.model.state_dict()
    sd.pop("rpn.head.conv.0.0.weight")
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(DetectorError, match="does not fit.*rpn.head.conv.0.0.weight"):
        tva.build(config=LIGHT, checkpoint=str(path), device="cpu")
    sd = det.model.state_dict()
    sd["rpn.head.conv.0.0.weight"] = torch.zeros(sd["rpn.head.conv.0.0.weight"].shape[:2] + (1, 1))
    torch.save(sd, path)
    with pytest.raises(DetectorError, match=r"does not fit .*: 1 tensors of another shape \(e.g. size mismatch"):
        tva.build(config=LIGHT, checkpoint=str(path), device="cpu")
    with pytest.raises(InvalidInputError, match="single string 'product'"):
        tva.build(config=LIGHT, checkpoint=None, num_classes=2, class_names="product")
    with pytest.raises(InvalidInputError, match="builder_kwargs must be a dict.*got 5"):
        tva.build(config=LIGHT, checkpoint=None, builder_kwargs=5)
    with pytest.raises(InvalidInputError, match="unknown builder 'resnet50'"):
        tva.build(config="resnet50", checkpoint=None)
    with pytest.raises(InvalidInputError, match="is required"):
        tva.build(config=None, checkpoint=None)
    with pytest.raises(InvalidInputError, match="unknown option"):
        tva.build(config=LIGHT, checkpoint=None, flavour=1)
    with pytest.raises(InvalidInputError, match="tile 0"):
        det.predict([np.zeros((5, 5), np.uint8)])


def test_registry_builds_the_torchvision_adapter():
    d = load_detector("torchvision", config=LIGHT, device="cpu", input_size=128, score_thr=0.1)
    assert isinstance(d, tva.TorchvisionDetector) and d.input_size == 128 and d.score_thr == 0.1


def test_a_one_class_sigmoid_head_needs_label_offset_0(tmp_path):
    # A 1-class RetinaNet has no background column: its one class is label 0, which the default
    # label_offset=1 would turn into -1 and drop, so every tile would come back empty.
    torch.manual_seed(0)
    model = tva._construct("retinanet_resnet50_fpn", 1, {})
    with torch.no_grad():
        model.head.classification_head.cls_logits.bias.fill_(5.0)  # every anchor scores ~0.99
    path = tmp_path / "retina1.pth"
    torch.save(model.state_dict(), path)
    with pytest.raises(DetectorError, match=r"retina1\.pth has num_classes=1, so label_offset=1 leaves no label "
                                            r"to report.*--detector-option label_offset=0") as e:
        load_detector("torchvision", config="retinanet_resnet50_fpn", checkpoint=str(path), device="cpu")
    assert "\n" not in str(e.value)
    d = load_detector("torchvision", config="retinanet_resnet50_fpn", checkpoint=str(path), device="cpu",
                      input_size=64, score_thr=0.5, options={"label_offset": 0})
    assert d.class_names == ("product",)
    (got,) = d.predict(_tiles(3, [(64, 64)]))
    assert len(got) > 0 and set(got.labels.tolist()) == {0}


def test_a_one_class_softmax_head_is_refused_as_background_only():
    for offset in (1, 0):  # R-CNN postprocessing never reports column 0, whatever the offset
        with pytest.raises(DetectorError, match=r"num_classes=1, the background alone, so it can detect nothing"):
            tva.build(config=LIGHT, checkpoint=None, device="cpu", num_classes=1, label_offset=offset)
    with pytest.raises(InvalidInputError, match="label_offset must be an int >= 0, got -1"):
        tva.build(config=LIGHT, checkpoint=None, device="cpu", label_offset=-1)


def test_a_runs_input_size_is_not_undone_by_the_models_transform():
    # built at the transform's own 320 px; a run asking 128 px tiles (--scale, tile auto,
    # RunSpec) must have them reach the backbone at 128, and plain predict calls go back to 320
    import densedet_tile as dt

    torch.manual_seed(0)
    d = tva.build(config=LIGHT, checkpoint=None, device="cpu", score_thr=0.0)
    assert d.input_size == 320
    seen: list[tuple[int, int]] = []
    d.model.backbone.register_forward_pre_hook(lambda mod, args: seen.append(tuple(args[0].shape[-2:])))
    img = _tiles(2, [(400, 400)])[0]
    res = dt.detect_image(img, d, tiling=dt.TileSpec(tile=256, overlap=0.25), run=dt.RunSpec(input_size=128, device="cpu"))
    assert res.settings["input_size"] == 128 and seen and set(seen) == {(128, 128)}
    seen.clear()
    d.predict(_tiles(3, [(128, 128)]))
    assert seen == [(320, 320)]


def test_a_built_detector_pickles_for_ray(det):
    # Ray ships a built detector to its workers; the adapter's lock is made afresh on the other side
    import pickle

    other = pickle.loads(pickle.dumps(det))
    tiles = _tiles(4, [(96, 96)])
    assert_same_boxes(other.predict(tiles)[0], det.predict(tiles)[0])
    assert other._lock is not det._lock


def test_threads_sharing_a_detector_at_two_sides_each_see_their_own():
    # calls at the pinned side run together; one at another side waits for them to finish before
    # it re-pins, so no call runs under another's pin
    import threading

    import densedet_tile as dt

    torch.manual_seed(0)
    d = tva.build(config=LIGHT, checkpoint=None, device="cpu", score_thr=0.0)
    seen: dict[str, set] = {}  # by thread name (unique per thread; an ident may be reused)
    d.model.backbone.register_forward_pre_hook(
        lambda mod, args: seen.setdefault(threading.current_thread().name, set()).add(tuple(args[0].shape[-2:])))
    img = _tiles(5, [(300, 300)])[0]
    want: dict[str, int] = {}

    def work(side: int) -> None:
        want[threading.current_thread().name] = side
        for _ in range(3):
            dt.detect_image(img, d, tiling=dt.TileSpec(tile=160, overlap=0.25),
                            run=dt.RunSpec(input_size=side, device="cpu"))

    threads = [threading.Thread(target=work, args=(side,), name=f"side-{i}") for i, side in enumerate((128, 192, 128, 192))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(seen) == 4 and all(seen[k] == {(want[k], want[k])} for k in seen)


def test_a_checkpoint_holding_nan_is_refused_when_built(det, tmp_path):
    # torchvision drops NaN boxes in its own post-processing: such weights gave 0 products, exit 0
    sd = {k: v.clone() for k, v in det.model.state_dict().items()}
    sd["backbone.body.0.0.weight"][0, 0, 0, 0] = float("nan")
    path = tmp_path / "nan.pth"
    torch.save(sd, path)
    with pytest.raises(DetectorError, match=r"nan.pth: 1 weight tensor\(s\) hold NaN or infinite values "
                                            r"\(e.g. backbone.body.0.0.weight\)"):
        tva.build(config=LIGHT, checkpoint=str(path), device="cpu")


def test_builder_kwargs_may_not_set_what_the_adapter_sets(det, tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(det.model.state_dict(), path)
    for key in ("num_classes", "weights", "weights_backbone"):
        with pytest.raises(InvalidInputError, match=f"builder_kwargs may not set {key}"):
            tva.build(config=LIGHT, checkpoint=str(path), device="cpu", builder_kwargs={key: 5})


def test_class_names_must_name_every_class_the_model_reports(det, tmp_path):
    path = tmp_path / "sd.pth"
    torch.save(det.model.state_dict(), path)  # 3 classes, background included: 2 reported
    ok = tva.build(config=LIGHT, checkpoint=str(path), device="cpu", class_names=["can", "bottle"])
    assert ok.class_names == ("can", "bottle")
    for names in (["can"], ["can", "bottle", "box"]):
        with pytest.raises(InvalidInputError, match=rf"{len(names)} class_names given, but the model reports 2 classes"):
            tva.build(config=LIGHT, checkpoint=str(path), device="cpu", class_names=names)


def test_builder_kwargs_unknown_to_torchvision_are_refused(det, tmp_path):
    # the detection models hand keywords they do not know to their input transform, which drops
    # them: a misspelt min_size would run the model at its default size without a word
    path = tmp_path / "sd.pth"
    torch.save(det.model.state_dict(), path)
    with pytest.raises(InvalidInputError, match=r"unknown keyword\(s\) min_sizee"):
        tva.build(config=LIGHT, checkpoint=str(path), device="cpu", builder_kwargs={"min_sizee": 200})
    ok = tva.build(config=LIGHT, checkpoint=str(path), device="cpu",
                   builder_kwargs={"rpn_post_nms_top_n_test": 200, "size_divisible": 64})
    assert ok.model.transform.size_divisible == 64 and ok.model.rpn._post_nms_top_n["testing"] == 200


@pytest.mark.parametrize("config,kwargs,option", [
    (LIGHT, {"box_score_thresh": 0.9}, r"score_thr \(--score-thr\)"),
    (LIGHT, {"box_detections_per_img": 50}, r"the max_detections option \(--detector-option max_detections=N\)"),
    (LIGHT, {"min_size": 640}, r"input_size \(--input-size\)"),
    (LIGHT, {"max_size": 1066}, r"input_size \(--input-size\)"),
    (LIGHT, {"fixed_size": (500, 500)}, r"input_size \(--input-size\)"),
    ("retinanet_resnet50_fpn", {"score_thresh": 0.9}, r"score_thr \(--score-thr\)"),
    ("fcos_resnet50_fpn", {"detections_per_img": 50}, r"the max_detections option"),
    ("ssdlite320_mobilenet_v3_large", {"score_thresh": 0.9}, r"score_thr \(--score-thr\)"),
    ("ssdlite320_mobilenet_v3_large", {"size": (300, 300)}, r"input_size \(--input-size\)"),
])
def test_builder_kwargs_the_adapter_would_overwrite_are_refused(config, kwargs, option):
    # these were taken and then replaced by the engine's threshold, cap and pinned input size:
    # box_score_thresh=0.9 ran at 0.05 and box_detections_per_img=50 kept 400 boxes, without a word
    (key,) = kwargs
    with pytest.raises(InvalidInputError, match=rf"builder_kwargs may not set {key}, which the engine sets from {option}") as e:
        load_detector("torchvision", config=config, device="cpu", options={"builder_kwargs": kwargs})
    assert "\n" not in str(e.value)


def test_builder_kwargs_the_adapter_leaves_alone_still_reach_the_model():
    d = tva.build(config="retinanet_resnet50_fpn", checkpoint=None, device="cpu", input_size=64,
                  builder_kwargs={"topk_candidates": 77, "nms_thresh": 0.3})
    assert d.model.topk_candidates == 77 and d.model.nms_thresh == 0.3


@pytest.fixture
def one_thread():
    with one_torch_thread():  # (two full ResNet-50 detectors a case)
        yield


@pytest.mark.parametrize("name,head", [("maskrcnn_resnet50_fpn", "mask"), ("keypointrcnn_resnet50_fpn", "keypoint")])
def test_mask_and_keypoint_heads_are_dropped_and_the_boxes_stay(tmp_path, name, head, one_thread):
    # the engine reads boxes alone, and the heads cost per box kept (Mask R-CNN pastes a full-size
    # mask per box): 2.9 s against 1.7 s for a 384 px tile with 200 boxes on a CPU. The checkpoint
    # still holds their weights and must load without key errors.
    import copy

    torch.manual_seed(0)
    full = tva._construct(name, 2, {})
    path = tmp_path / "full.pth"
    torch.save(full.state_dict(), path)
    assert any(k.startswith(f"roi_heads.{head}_") for k in full.state_dict())
    det = tva.build(config=name, checkpoint=str(path), device="cpu", score_thr=0.0, input_size=96,
                    max_detections=20)  # (20 boxes through the heads kept the test short)
    parts = [f"{head}_roi_pool", f"{head}_head", f"{head}_predictor"]
    assert all(getattr(det.model.roi_heads, p) is None for p in parts)
    assert not any(k.startswith(f"roi_heads.{head}_") for k in det.model.state_dict())
    assert det.info["dropped_heads"] == head
    with_heads = copy.deepcopy(det)  # the same model with the heads put back from the checkpoint
    for p in parts:
        setattr(with_heads.model.roi_heads, p, getattr(full.roi_heads, p))
    tiles = _tiles(6, [(96, 96), (80, 96)])
    with torch.inference_mode():  # they would run: the full model returns masks / keypoints
        raw = with_heads.model([torch.from_numpy(tiles[0]).permute(2, 0, 1).float() / 255])
    assert (head + "s") in raw[0] and len(raw[0]["boxes"]) == 20
    got, want = det.predict(tiles), with_heads.predict(tiles)
    assert sum(len(d) for d in got) > 0
    for a, b in zip(got, want):
        assert_same_boxes(a, b, box_atol=0.0, score_atol=0.0)
        assert a.labels.tolist() == b.labels.tolist()


def test_models_without_mask_or_keypoint_heads_keep_all_they_have(det):
    assert "dropped_heads" not in det.info and det.model.roi_heads.box_predictor is not None


def test_a_reference_training_checkpoint_with_its_args_loads(det, tmp_path):
    # torchvision's references/detection/train.py saves model_N.pth as a dict with "args", an
    # argparse.Namespace, which weights_only=True refuses unless allow-listed; it is, for this load only
    import argparse

    from densedet_tile.detector.checkpoints import load_checkpoint

    opt = torch.optim.SGD(det.model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[16, 22], gamma=0.1)  # a Counter inside
    path = tmp_path / "model_3.pth"
    torch.save({"model": det.model.state_dict(), "optimizer": opt.state_dict(), "lr_scheduler": sched.state_dict(),
                "args": argparse.Namespace(lr=0.1, data_path="/data/coco", weights=None), "epoch": 3}, path)
    other = tva.build(config=LIGHT, checkpoint=str(path), device="cpu", score_thr=0.0, input_size=96)
    assert other.info["num_classes"] == 3
    tiles = _tiles(7, [(96, 96)])
    assert_same_boxes(det.predict(tiles)[0], other.predict(tiles)[0], box_atol=1e-3, score_atol=1e-5)
    assert argparse.Namespace not in torch.serialization.get_safe_globals()  # not process-wide
    with pytest.raises(DetectorError, match=r"not allow-listed .*argparse\.Namespace"):
        load_checkpoint(path)  # the shared loader still refuses it


def test_a_build_leaves_the_process_warnings_filters_alone(monkeypatch):
    # the build muted every warning while it ran (warnings.catch_warnings): the filters are the
    # whole process's, so a build in one thread hid the warnings of every other meanwhile, and two
    # builds overlapping could leave them muted for good
    import warnings

    import torchvision

    seen = []
    real = torchvision.models.get_model

    def spy(*args, **kwargs):
        seen.append(list(warnings.filters))
        return real(*args, **kwargs)

    monkeypatch.setattr(torchvision.models, "get_model", spy)
    load_detector("torchvision", config=LIGHT, device="cpu", input_size=128)
    assert seen and seen[0] == list(warnings.filters)


def test_an_ssd_gets_a_tile_short_on_one_side_padded_not_stretched():
    # SSD resizes to a fixed square: an edge tile the image cut short (320 x 188 after the
    # engine's resize) was stretched to 320 x 320, its products 1.7 times taller (an outside review)
    ssd = tva.build(config="ssdlite320_mobilenet_v3_large", checkpoint=None, device="cpu", input_size=64,
                    score_thr=0.0)
    seen = []
    forward = ssd.model.transform.forward

    def spy(images, targets=None):
        out = forward(images, targets)
        seen.append((out[0].tensors.clone(), [tuple(s) for s in out[0].image_sizes]))
        return out

    ssd.model.transform.forward = spy
    tile = np.random.default_rng(4).integers(0, 255, (38, 64, 3), dtype=np.uint8)
    (d,) = ssd.predict([tile])
    (x, sizes), = seen
    assert sizes == [(64, 64)]
    mean = torch.tensor(ssd.model.transform.image_mean).reshape(3, 1, 1)
    std = torch.tensor(ssd.model.transform.image_std).reshape(3, 1, 1)
    want = (torch.from_numpy(tile).permute(2, 0, 1).float() / 255 - mean) / std
    torch.testing.assert_close(x[0, :, :38, :], want, atol=1e-5, rtol=0)
    assert x[0, :, 38:, :].abs().max() < 1e-6  # the padding: the mean, nothing once normalised
    assert (d.xyxy[:, 3] <= 38).all() and (d.xyxy[:, 3] > d.xyxy[:, 1]).all()
