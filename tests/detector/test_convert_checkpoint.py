"""Safe checkpoint loading, and the 1.x -> 3.x DenseDet checkpoint converter.

The 1.x checkpoint is built here: keys of the 3.x (light) model laid out the 1.x way by the
inverse mapping, written out independently of the converter, with random tensors.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from densedet_tile.detector.checkpoints import (  # noqa: E402
    load_checkpoint,
    restricted_getattr,
    state_dict_of,
)
from densedet_tile.configs import config_path  # noqa: E402
from densedet_tile.errors import DetectorError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "densedet_tile", "convert-checkpoint"]
LIGHT = config_path("densedet-r18-light")


def _script():
    from densedet_tile.detector import convert

    return convert


# -- safe loading ---------------------------------------------------------------------------
def test_numpy_meta_loads_without_turning_safety_off(tmp_path):
    p = tmp_path / "c.pth"
    torch.save({"state_dict": {"w": torch.ones(2)},
                "meta": {"seed": np.int64(3), "arr": np.arange(3.0), "ok": np.bool_(True)}}, p)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(p)  # the plain default refuses numpy objects ...
    ckpt = load_checkpoint(p)  # ... the allow-list accepts exactly them
    assert ckpt["meta"]["seed"] == 3 and ckpt["meta"]["arr"].tolist() == [0.0, 1.0, 2.0]
    assert state_dict_of(ckpt)["w"].tolist() == [1.0, 1.0]


def test_numpy_1x_pickle_names_are_accepted(tmp_path):
    p = tmp_path / "np2.pth"
    torch.save({"meta": {"arr": np.arange(4, dtype=np.int32), "s": np.float32(2.5)}}, p)
    # rewrite the pickle as numpy 1.x wrote it: numpy.core instead of numpy._core
    old = tmp_path / "np1.pth"
    with zipfile.ZipFile(p) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    ckpt = load_checkpoint(old)
    assert ckpt["meta"]["arr"].tolist() == [0, 1, 2, 3] and ckpt["meta"]["s"] == 2.5


class _Gadget:
    def __reduce__(self):
        return (os.getcwd, ())


def test_other_objects_are_refused_by_name(tmp_path):
    p = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": _Gadget()}, p)
    with pytest.raises(DetectorError, match=r"evil\.pth: .*not allow-listed.*getcwd"):
        load_checkpoint(p)


def test_restricted_getattr_returns_only_methods_of_its_owners():
    class Buf:
        def mean(self):
            return 1

    get, name = restricted_getattr([Buf])
    assert name == "builtins.getattr"
    assert get(Buf, "mean") is Buf.__dict__["mean"]
    for obj, attr in ((os, "system"), (Buf, "__init__"), (Buf, "__class__"), (Buf, "missing")):
        with pytest.raises(pickle.UnpicklingError):
            get(obj, attr)


def test_bad_files_give_one_line_errors(tmp_path):
    with pytest.raises(DetectorError, match="no such file"):
        load_checkpoint(tmp_path / "missing.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(DetectorError, match="junk.pth"):
        load_checkpoint(junk)
    with pytest.raises(DetectorError, match="no state dict"):
        state_dict_of({"meta": {}})
    with pytest.raises(DetectorError, match="not tensors"):
        state_dict_of({"state_dict": {"a": torch.zeros(1), "b": 1}})
    assert list(state_dict_of({"module.a": torch.zeros(1)})) == ["a"]


def _onnx_bytes():
    """A real (tiny) ONNX model, serialised: what a user may hand over by mistake."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return helper.make_model(graph).SerializeToString()


def test_files_that_are_not_checkpoints_say_so(tmp_path):
    cases = {"model.onnx": _onnx_bytes(), "notes.pth": b"hello world, this is text\n", "empty.pth": b""}
    for name, data in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(DetectorError) as info:
            load_checkpoint(p)
        msg = str(info.value)
        assert f"{name}: " in msg and "not a PyTorch checkpoint (.pt/.pth file)" in msg, msg
        assert "\n" not in msg and "weights_only" not in msg


def _zip_with_pickle(tmp_path, name, pickled):
    """A zip checkpoint whose data.pkl is replaced by ``pickled``."""
    good = tmp_path / "good.pth"
    torch.save({"a": torch.zeros(1)}, good)
    out = tmp_path / name
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(out, "w") as zout:
        for item in zin.infolist():
            zout.writestr(item, pickled if item.filename.endswith("data.pkl") else zin.read(item.filename))
    return out


def test_unpickler_errors_show_the_cause_not_the_unsafe_advice(tmp_path):
    # protocol 2 pickle with a FLOAT opcode (70), which the weights-only unpickler does not take
    odd = _zip_with_pickle(tmp_path, "odd.pth", b"\x80\x02F1.0\n.")
    # a legacy (non-zip) file holding a function: no list of unsafe globals can be read from it
    legacy = tmp_path / "legacy.pth"
    torch.save({"x": _Gadget()}, legacy, _use_new_zipfile_serialization=False)
    for path, cause in ((odd, r"Unsupported operand 70"), (legacy, r"GLOBAL \w+\.getcwd")):
        with pytest.raises(DetectorError) as info:
            load_checkpoint(path)
        msg = str(info.value)
        assert msg.startswith(f"checkpoint {path}: cannot be unpickled safely (")
        assert re.search(cause, msg), msg
        assert "weights_only" not in msg and "Re-running" not in msg and "\n" not in msg


# -- the converter --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def v3_state_dict():
    pytest.importorskip("mmdet")
    from densedet_tile.detector import mmdet_adapter

    torch.manual_seed(1)
    det = mmdet_adapter.build(config=str(LIGHT), checkpoint=None, device="cpu", input_size=96, score_thr=0.0)
    g = torch.Generator().manual_seed(2)
    sd = OrderedDict()
    for k, v in det.model.state_dict().items():
        sd[k] = torch.rand(v.shape, generator=g).to(v.dtype) if v.is_floating_point() else v.clone()
    return sd


def to_v1_layout(sd):
    """The inverse mapping, written out by hand: how mmdet 1.0rc1 laid out the same model."""
    old = OrderedDict()
    for k, v in sd.items():
        if k.startswith("roi_head."):
            k = k[len("roi_head."):]
            if ".fc_cls." in k:
                v = torch.cat([v[-1:], v[:-1]], dim=0)  # background first
        old["module." + k] = v.clone()
    return old


def test_inverse_layout_has_the_1x_names(v3_state_dict):
    old = to_v1_layout(v3_state_dict)
    for key in ("module.bbox_head.0.fc_cls.weight", "module.bbox_head.1.shared_fcs.1.weight",
                "module.neck.1.refine.g.conv.weight", "module.rpn_head.rpn_cls.weight",
                "module.backbone.layer1.0.conv1.weight"):
        assert key in old
    assert not any(k.startswith("module.roi_head") for k in old)


def test_convert_restores_the_3x_state_dict(tmp_path, v3_state_dict):
    conv = _script()
    old = to_v1_layout(v3_state_dict)
    src = tmp_path / "densedet_v1.pth"
    # 1.x era files: legacy (non-zip) serialization, numpy in meta, an optimizer state
    torch.save({"meta": {"mmdet_version": "1.0rc1+a3d9ca2", "CLASSES": ("object",), "epoch": np.int64(24),
                         "config": "model = dict(type='CascadeRCNN')"},
                "state_dict": old, "optimizer": {"state": {}, "param_groups": [{"lr": 0.02}]}},
               src, _use_new_zipfile_serialization=False)
    dst = tmp_path / "densedet_v3.pth"
    meta = conv.convert(src, dst, config=LIGHT)
    assert meta["dataset_meta"]["classes"] == ["object"] and meta["source_mmdet_version"] == "1.0rc1+a3d9ca2"
    out = torch.load(dst, weights_only=True)  # plain safe load, no allow-list needed
    assert set(out) == {"meta", "state_dict"}
    got = out["state_dict"]
    assert list(got) == list(v3_state_dict)
    for k, v in v3_state_dict.items():
        assert torch.equal(got[k], v), k
    # the background row really moved: the 1.x row 0 is now last
    assert torch.equal(got["roi_head.bbox_head.0.fc_cls.weight"][-1], old["module.bbox_head.0.fc_cls.weight"][0])


def test_converted_checkpoint_runs_in_the_adapter(tmp_path, v3_state_dict):
    from densedet_tile.detector import mmdet_adapter

    conv = _script()
    src, dst = tmp_path / "v1.pth", tmp_path / "v3.pth"
    torch.save({"state_dict": to_v1_layout(v3_state_dict)}, src)
    r = subprocess.run([*CLI, str(src), str(dst), "--config", "densedet-r18-light"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "classes: product" in r.stdout
    det = mmdet_adapter.build(config=str(LIGHT), checkpoint=str(dst), device="cpu", input_size=96, score_thr=0.0,
                              cfg_options={"model.test_cfg.rpn.max_per_img": 300})
    assert det.class_names == ("product",)
    for k, v in det.model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, v3_state_dict[k]), k
    (d,) = det.predict([np.zeros((96, 96, 3), np.uint8)])
    assert d.xyxy.shape[1] == 4
    del conv


COCO_NAMES = ("person", "bicycle", "car") + tuple(f"coco class {i}" for i in range(3, 80))


def test_a_1x_checkpoints_coco_class_names_do_not_label_the_products(tmp_path, v3_state_dict, caplog):
    # mmdet 1.x saved its dataset class's names, and SKU110K-DenseDet trained through CocoDataset:
    # 80 COCO names for a one-class head would label every product "person"
    from densedet_tile.detector import mmdet_adapter

    conv = _script()
    src, dst = tmp_path / "v1.pth", tmp_path / "v3.pth"
    torch.save({"meta": {"mmdet_version": "1.0rc1", "CLASSES": COCO_NAMES}, "state_dict": to_v1_layout(v3_state_dict)},
               src)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        meta = conv.convert(src, dst, config=LIGHT)
    assert meta["dataset_meta"]["classes"] == ["product"]
    assert any("names 80 classes (person, bicycle, car, ...) but its head has 1" in r.getMessage() for r in caplog.records)
    # and a 3.x checkpoint that carries them anyway: the config's names win, said once
    bad = tmp_path / "v3_coco.pth"
    torch.save({"meta": {"dataset_meta": {"classes": list(COCO_NAMES)}}, "state_dict": v3_state_dict}, bad)
    with caplog.at_level("WARNING", logger="densedet_tile"):
        det = mmdet_adapter.build(config=str(LIGHT), checkpoint=str(bad), device="cpu", input_size=96, score_thr=0.0)
    assert det.class_names == ("product",)
    assert any("names 80 classes but the model's head has 1" in r.getMessage() for r in caplog.records)


def test_a_single_stage_box_head_is_refused_even_without_verifying(v3_state_dict):
    # the repository's legacy Faster R-CNN models have bbox_head.fc_cls (no stage index): with
    # --no-verify they were written with their head keys neither moved nor reordered
    from densedet_tile.detector.convert import upgrade_state_dict

    old = OrderedDict((k.replace("bbox_head.0.", "bbox_head."), v) for k, v in to_v1_layout(v3_state_dict).items()
                      if "bbox_head.1." not in k)
    with pytest.raises(DetectorError, match="a box head without a stage index"):
        upgrade_state_dict(old)


def test_convert_refuses_a_checkpoint_of_another_model(tmp_path, v3_state_dict):
    conv = _script()
    old = to_v1_layout(v3_state_dict)
    old.pop("module.neck.1.refine.g.conv.weight")
    old["module.extra_head.weight"] = torch.zeros(3)
    src = tmp_path / "other.pth"
    torch.save({"state_dict": old}, src)
    with pytest.raises(DetectorError, match="missing.*refine.g.conv.weight.*unexpected.*extra_head"):
        conv.convert(src, tmp_path / "out.pth", config=LIGHT)
    assert not (tmp_path / "out.pth").exists()
    r = subprocess.run([*CLI, str(tmp_path / "nope.pth"), str(tmp_path / "o.pth"), "--no-verify"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nope.pth: no such file" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def _tiny(keys):
    return OrderedDict((k, torch.zeros(2)) for k in keys)


#: a torchvision Faster R-CNN's state dict layout (fasterrcnn_resnet50_fpn), a few keys of each part
TORCHVISION_KEYS = ("backbone.body.conv1.weight", "backbone.body.layer1.0.conv1.weight",
                    "backbone.body.layer4.2.bn3.running_var", "backbone.fpn.inner_blocks.0.0.weight",
                    "backbone.fpn.layer_blocks.3.0.bias", "rpn.head.conv.0.0.weight", "rpn.head.cls_logits.weight",
                    "rpn.head.bbox_pred.bias", "roi_heads.box_head.fc6.weight", "roi_heads.box_head.fc7.bias",
                    "roi_heads.box_predictor.cls_score.weight", "roi_heads.box_predictor.bbox_pred.bias")


def test_another_librarys_detector_is_refused_without_verifying(tmp_path, capsys):
    # with --no-verify any state dict with a backbone.* key converted: a torchvision detector was
    # written out as a DenseDet checkpoint
    from densedet_tile.cli.convert import convert_main

    cases = {
        "tv.pth": (_tiny(TORCHVISION_KEYS), "looks like a torchvision detector state dict (rpn.*, roi_heads.*, "
                                            "backbone.body.*, backbone.fpn.*)"),
        "tv_dp.pth": (_tiny("module." + k for k in TORCHVISION_KEYS), "looks like a torchvision detector"),
        "d2.pth": (_tiny(("backbone.bottom_up.stem.conv1.weight", "backbone.fpn_lateral2.weight",
                          "proposal_generator.rpn_head.conv.weight", "roi_heads.box_predictor.cls_score.weight")),
                   "looks like a Detectron2 model state dict (proposal_generator.*, backbone.bottom_up.*, roi_heads.*)"),
        # an ImageNet backbone, a 1.x RetinaNet: mmdet names, but not the parts of a cascade
        "imagenet.pth": (_tiny(("backbone.conv1.weight", "backbone.layer1.0.conv1.weight", "head.fc.weight")),
                         "no rpn_head.* or bbox_head.* keys (it has backbone.*, head.*)"),
        "retina.pth": (_tiny(("backbone.conv1.weight", "neck.fpn_convs.0.conv.weight", "bbox_head.retina_cls.weight")),
                       "no rpn_head.* keys (it has backbone.*, bbox_head.*, neck.*)"),
    }
    try:  # the real layout too, where torchvision is there (no weights: the keys are all it needs)
        from torchvision.models.detection import fasterrcnn_resnet50_fpn

        real = fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict()
        cases["tv_real.pth"] = (real, "looks like a torchvision detector state dict (rpn.*, roi_heads.*")
    except ImportError:
        pass
    for name, (sd, said) in cases.items():
        src, dst = tmp_path / name, tmp_path / f"out_{name}"
        torch.save({"state_dict": sd}, src)
        assert convert_main([str(src), str(dst), "--no-verify"]) == 2, name
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"checkpoint {src}: {said}" in err, err
        assert "not a SKU110K-DenseDet checkpoint" in err
        assert not dst.exists()


def test_the_least_1x_cascade_still_converts_without_verifying(tmp_path, v3_state_dict):
    # the structural check asks backbone.*, rpn_head.* and bbox_head.* of a 1.x Cascade R-CNN:
    # the model built here (DataParallel prefix or not) and one without a neck (C4) pass it
    conv = _script()
    old = to_v1_layout(v3_state_dict)
    for name, sd in (("dp.pth", old), ("plain.pth", OrderedDict((k[len("module."):], v) for k, v in old.items())),
                     ("c4.pth", OrderedDict((k, v) for k, v in old.items() if not k.startswith("module.neck.")))):
        torch.save({"state_dict": sd}, tmp_path / name)
        conv.convert(tmp_path / name, tmp_path / f"v3_{name}", config=None)
        assert "roi_head.bbox_head.1.fc_cls.weight" in torch.load(tmp_path / f"v3_{name}", weights_only=True)["state_dict"]


def test_fc_cls_with_wrong_class_count_is_refused(v3_state_dict):
    conv = _script()
    old = to_v1_layout(v3_state_dict)
    with pytest.raises(DetectorError, match="fc_cls.weight: expected 3 class rows"):
        conv.upgrade_state_dict(old, num_classes_v1=3)


def test_the_command_refuses_to_write_over_its_source(tmp_path, capsys):
    from densedet_tile.cli.convert import convert_main

    src = tmp_path / "sd.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, src)
    before = src.read_bytes()
    assert convert_main([str(src), str(tmp_path / "." / "sd.pth"), "--no-verify"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "source checkpoint" in err and "overwrite" in err
    assert src.read_bytes() == before


def test_verifying_without_mmdet_names_the_mmdet_extra_first(tmp_path, capsys, monkeypatch):
    import importlib.util

    from densedet_tile.cli.convert import convert_main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mmdet" else real(name, *a))
    src = tmp_path / "sd.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, src)
    assert convert_main([str(src), str(tmp_path / "out.pth")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'densedet-tile[mmdet]'" in err and "--no-verify" in err
    assert not (tmp_path / "out.pth").exists()


def test_without_torch_both_ways_say_torch_is_needed_in_one_line(tmp_path, capsys, monkeypatch):
    # it named [mmdet] and said --no-verify skips that; with --no-verify it then named [torch] in
    # a line of another form: torch is needed either way
    import importlib.util

    from densedet_tile.cli.convert import convert_main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    src = tmp_path / "sd.pth"
    src.write_bytes(b"x")
    for extra, want in (([], "mmdet"), (["--no-verify"], "torch")):
        assert convert_main([str(src), str(tmp_path / "out.pth"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("densedet-tile convert-checkpoint: error: ")
        assert "needs the 'torch' package" in err and f"pip install 'densedet-tile[{want}]'" in err
    assert not (tmp_path / "out.pth").exists()


def test_converting_a_converted_checkpoint_is_refused(tmp_path, v3_state_dict):
    conv = _script()
    src, once = tmp_path / "v1.pth", tmp_path / "once.pth"
    torch.save({"state_dict": to_v1_layout(v3_state_dict)}, src)
    conv.convert(src, once, config=None)
    # the converter's own output: roi_head.* keys and meta["converted_from"]
    with pytest.raises(DetectorError, match=r"once\.pth: already in MMDetection 3\.x form, nothing to convert"):
        conv.convert(once, tmp_path / "twice.pth", config=None)
    assert not (tmp_path / "twice.pth").exists()
    # a 3.x checkpoint from elsewhere (no converter meta, DataParallel prefix) is refused too
    plain = tmp_path / "plain3x.pth"
    torch.save({"meta": {"dataset_meta": {"classes": ["product"]}},
                "state_dict": {"module." + k: v for k, v in v3_state_dict.items()}}, plain)
    r = subprocess.run([*CLI, str(plain), str(tmp_path / "o.pth"), "--config", "densedet-r18-light"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "plain3x.pth: already in MMDetection 3.x form" in r.stderr
    assert not (tmp_path / "o.pth").exists()
    # so is a meta that says the file was converted, whatever its keys
    marked = tmp_path / "marked.pth"
    torch.save({"meta": {"converted_from": "mmdet 1.x"}, "state_dict": to_v1_layout(v3_state_dict)}, marked)
    with pytest.raises(DetectorError, match=r"marked\.pth: already in MMDetection 3\.x form"):
        conv.convert(marked, tmp_path / "m.pth", config=None)


def test_upgrade_state_dict_never_reorders_3x_keys(v3_state_dict):
    conv = _script()
    with pytest.raises(DetectorError, match=r"already in MMDetection 3\.x form \(key roi_head\."):
        conv.upgrade_state_dict(v3_state_dict)
    # a mix (one head already renamed) is refused as well instead of half reordered
    mixed = to_v1_layout(v3_state_dict)
    mixed["roi_head.bbox_head.0.fc_cls.weight"] = mixed.pop("module.bbox_head.0.fc_cls.weight")
    with pytest.raises(DetectorError, match="already in MMDetection 3.x form"):
        conv.upgrade_state_dict(mixed)


def test_a_broken_config_is_one_line_naming_the_config_before_any_conversion(tmp_path, v3_state_dict, capsys):
    # convert-checkpoint --config printed mmengine's traceback for a config it could not parse
    # or build, and blamed a missing one on the checkpoint, after converting it (an outside review)
    from densedet_tile.cli.convert import convert_main

    src = tmp_path / "v1.pth"
    torch.save({"state_dict": to_v1_layout(v3_state_dict)}, src)
    (tmp_path / "syntax.py").write_text('model = dict(type="CascadeRCNN"\n')
    (tmp_path / "kind.py").write_text('model = dict(type="NoSuchDetector")\n')
    for config, said in (("syntax.py", "cannot be parsed"), ("kind.py", "model cannot be built")):
        assert convert_main([str(src), str(tmp_path / "out.pth"), "--config", str(tmp_path / config)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"error: mmdet config {tmp_path / config}: {said}" in err
    assert convert_main([str(src), str(tmp_path / "out.pth"), "--config", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "error: config 'nosuch': no such file" in err and str(src) not in err
    assert not (tmp_path / "out.pth").exists()


def test_a_class_layer_that_is_a_single_number_is_refused_in_one_line(v3_state_dict):
    # value.shape[0] of a 0-d tensor: an IndexError traceback (an outside review)
    conv = _script()
    old = to_v1_layout(v3_state_dict)
    key = next(k for k in old if k.endswith("bbox_head.0.fc_cls.bias"))
    old[key] = torch.tensor(1.0)
    with pytest.raises(DetectorError, match=r"fc_cls.bias: a single number, not a layer's weight or bias"):
        conv.upgrade_state_dict(old)


@pytest.mark.parametrize("n", [1, 0, True])
def test_a_class_count_without_room_for_the_background_is_refused(v3_state_dict, n):
    # 1 took the class-agnostic regression for the background's rows and wrote it empty, exit 0
    from densedet_tile.errors import InvalidInputError

    conv = _script()
    with pytest.raises(InvalidInputError, match=r"num_classes_v1 counts the background: at least 2"):
        conv.upgrade_state_dict(to_v1_layout(v3_state_dict), num_classes_v1=n)


def test_the_command_refuses_num_classes_v1_below_two(tmp_path, capsys):
    from densedet_tile.cli.convert import convert_main

    src = tmp_path / "sd.pth"
    torch.save({"state_dict": {"a": torch.zeros(1)}}, src)
    assert convert_main([str(src), str(tmp_path / "out.pth"), "--no-verify", "--num-classes-v1", "1"]) == 2
    assert "--num-classes-v1: expected an integer of 2 or more" in capsys.readouterr().err
    assert not (tmp_path / "out.pth").exists()


def test_a_state_dict_key_that_is_no_text_is_refused_in_one_line(tmp_path):
    # an int key reached k.startswith: an AttributeError traceback (an outside review)
    path = tmp_path / "intkey.pth"
    torch.save({"state_dict": {"module.backbone.conv1.weight": torch.zeros(1), 5: torch.zeros(1)}}, path)
    with pytest.raises(DetectorError, match=r"keys that are not parameter names \(text\): 5"):
        state_dict_of(load_checkpoint(path), source=str(path))
