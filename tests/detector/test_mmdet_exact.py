"""The DenseDet port's box arithmetic against mmdet 1.0rc1, whose formulas are written out here in
plain numpy (float64), independently of the code under test.

mmdet 1.0rc1, as shipped by SKU110K-DenseDet, at inference:

* anchors (``AnchorGenerator``): centre ``(stride - 1) / 2``, ``ws = stride * scale / sqrt(ratio)``,
  ``[c - (ws - 1) / 2, ..., c + (ws - 1) / 2]`` rounded, shifted by ``stride`` on the grid;
* ``delta2bbox``: ``pw = x2 - x1 + 1``, ``gx = px + pw * dx``, ``gw = pw * exp(dw)``,
  ``x1 = gx - gw / 2 + 0.5``, ``x2 = gx + gw / 2 - 0.5``, clamped to ``[0, W - 1]``;
* ``SingleRoIExtractor.map_roi_levels``: ``floor(log2(sqrt((x2 - x1 + 1) * (y2 - y1 + 1)) / 56 + 1e-6))``;
* the RoIAlign kernel: ``start = x1 * s``, ``end = (x2 + 1) * s``, ``width = max(end - start, 0)``,
  ``sampling_ratio`` points per bin, bilinear, zero outside ``[-1, H] x [-1, W]``;
* Cascade R-CNN: proposals -> stage 1 deltas -> stage 2 deltas; the score is the softmax of the
  stages' mean logits;
* COCO output (``xyxy2xywh``): ``w = x2 - x1 + 1``, i.e. the continuous box ``[x1, y1, x2 + 1, y2 + 1]``.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mmdet")
torch = pytest.importorskip("torch")

from densedet_tile.configs import CONFIGS, config_path  # noqa: E402
from densedet_tile.detector import mmdet_adapter  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
LIGHT = "densedet-r18-light"
RPN_STDS = (1.0, 1.0, 1.0, 1.0)
STAGE_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1))
CLIP = abs(math.log(16 / 1000))


# -- mmdet 1.0rc1, in numpy ------------------------------------------------------------------
def delta2bbox_1x(rois, deltas, stds, max_shape=None):
    rois = np.asarray(rois, np.float64)
    d = np.asarray(deltas, np.float64) * np.asarray(stds, np.float64)
    dx, dy = d[:, 0], d[:, 1]
    dw, dh = np.clip(d[:, 2], -CLIP, CLIP), np.clip(d[:, 3], -CLIP, CLIP)
    px, py = (rois[:, 0] + rois[:, 2]) * 0.5, (rois[:, 1] + rois[:, 3]) * 0.5
    pw, ph = rois[:, 2] - rois[:, 0] + 1.0, rois[:, 3] - rois[:, 1] + 1.0
    gw, gh = pw * np.exp(dw), ph * np.exp(dh)
    gx, gy = px + pw * dx, py + ph * dy
    out = np.stack([gx - gw * 0.5 + 0.5, gy - gh * 0.5 + 0.5, gx + gw * 0.5 - 0.5, gy + gh * 0.5 - 0.5], 1)
    if max_shape is not None:
        h, w = max_shape[:2]
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, w - 1)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, h - 1)
    return out


def reported_1x(boxes):
    """What 1.x wrote to COCO json, as a continuous xyxy box."""
    return np.asarray(boxes, np.float64) + np.array([0.0, 0.0, 1.0, 1.0])


def cascade_1x(proposals, stage_deltas, max_shape):
    """RoIs seen by each stage and the reported boxes of the last one."""
    rois = [np.asarray(proposals, np.float64)]
    for deltas, stds in zip(stage_deltas, STAGE_STDS):
        rois.append(delta2bbox_1x(rois[-1], deltas, stds, max_shape))
    return rois[:-1], reported_1x(rois[-1])


def roi_levels_1x(rois, num_levels=4, finest_scale=56):
    rois = np.asarray(rois, np.float64)
    scale = np.sqrt((rois[:, 2] - rois[:, 0] + 1) * (rois[:, 3] - rois[:, 1] + 1))
    return np.clip(np.floor(np.log2(scale / finest_scale + 1e-6)), 0, num_levels - 1).astype(int)


def _bilinear(feat, y, x):
    _, h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(feat.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= h - 1:
        y0 = y1 = h - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= w - 1:
        x0 = x1 = w - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    hy, hx = 1.0 - ly, 1.0 - lx
    return hy * hx * feat[:, y0, x0] + hy * lx * feat[:, y0, x1] + ly * hx * feat[:, y1, x0] + ly * lx * feat[:, y1, x1]


def roi_align_1x(feat, roi, scale, out=7, samples=2):
    """The 1.0rc1 RoIAlign kernel for one RoI (x1, y1, x2, y2 in image pixels) on (C, H, W)."""
    x1, y1, x2, y2 = (float(v) for v in roi)
    start_w, start_h = x1 * scale, y1 * scale
    bin_w = max((x2 + 1) * scale - start_w, 0.0) / out
    bin_h = max((y2 + 1) * scale - start_h, 0.0) / out
    res = np.zeros((feat.shape[0], out, out))
    for ph in range(out):
        for pw in range(out):
            acc = np.zeros(feat.shape[0])
            for iy in range(samples):
                y = start_h + ph * bin_h + (iy + 0.5) * bin_h / samples
                for ix in range(samples):
                    acc += _bilinear(feat, y, start_w + pw * bin_w + (ix + 0.5) * bin_w / samples)
            res[:, ph, pw] = acc / (samples * samples)
    return res


def anchors_1x(featmap_sizes, strides, scales=(8.0,), ratios=(0.5, 1.0, 2.0)):
    out = []
    for (fh, fw), s in zip(featmap_sizes, strides):
        ctr = 0.5 * (s - 1)
        h_ratios = np.sqrt(np.asarray(ratios))
        w_ratios = 1 / h_ratios
        ws = (s * w_ratios[:, None] * np.asarray(scales)[None, :]).ravel()
        hs = (s * h_ratios[:, None] * np.asarray(scales)[None, :]).ravel()
        base = np.round(np.stack([ctr - 0.5 * (ws - 1), ctr - 0.5 * (hs - 1),
                                  ctr + 0.5 * (ws - 1), ctr + 0.5 * (hs - 1)], 1))
        xx, yy = np.meshgrid(np.arange(fw) * s, np.arange(fh) * s)  # rows over y, x inner
        shifts = np.stack([xx.ravel(), yy.ravel(), xx.ravel(), yy.ravel()], 1)
        out.append((shifts[:, None, :] + base[None]).reshape(-1, 4))
    return out


# -- helpers ---------------------------------------------------------------------------------
def random_boxes(rng, n, shape, lo=40, hi=150):
    """Inclusive boxes with sides in [lo, hi] px, inside an image of ``shape`` (h, w)."""
    h, w = shape
    bw, bh = rng.uniform(lo, hi, n), rng.uniform(lo, hi, n)
    x1, y1 = rng.uniform(0, w - 1 - bw), rng.uniform(0, h - 1 - bh)
    return np.stack([x1, y1, x1 + bw - 1, y1 + bh - 1], 1)


def same_box_sets(got, want, tol):
    """Every box of ``got`` is within ``tol`` of one of ``want`` and vice versa (orders differ)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape
    dist = np.abs(got[:, None, :] - want[None, :, :]).max(-1)
    return float(max(dist.min(1).max(), dist.min(0).max()))


def chain_stats(got, ref):
    """Max / mean |difference| of coordinates, and mean width/height and centre offsets."""
    d = np.asarray(got, np.float64) - ref
    wh = (d[:, 2] - d[:, 0], d[:, 3] - d[:, 1])
    centre = ((d[:, 0] + d[:, 2]) / 2, (d[:, 1] + d[:, 3]) / 2)
    return dict(max=float(np.abs(d).max()), mean=float(np.abs(d).mean()),
                dw=float(wh[0].mean()), dh=float(wh[1].mean()), dcx=float(centre[0].mean()),
                dcy=float(centre[1].mean()))


@pytest.fixture(scope="module")
def legacy():
    mmdet_adapter._import_stack()  # what every build does first: registers the 1.x components
    from densedet_tile.detector import mmdet_legacy

    return mmdet_legacy


@pytest.fixture(scope="module")
def cfg():
    from mmengine.config import Config

    return Config.fromfile(str(config_path("densedet-x101")))


def _coders(cfg, names=None):
    from mmdet.registry import TASK_UTILS

    specs = [cfg.model.rpn_head.bbox_coder] + [h.bbox_coder for h in cfg.model.roi_head.bbox_head]
    specs = [dict(s) for s in specs]
    if names is not None:
        for s in specs:
            s["type"] = names
    return [TASK_UTILS.build(s) for s in specs]


def _decode_chain(coders, anchors, deltas, shape, report):
    boxes = torch.as_tensor(anchors, dtype=torch.float32)
    for coder, d in zip(coders, deltas):
        boxes = coder.decode(boxes, torch.as_tensor(d, dtype=torch.float32), max_shape=shape)
    return boxes.numpy().astype(np.float64) + np.array([0.0, 0.0, report, report])


def _random_chain(seed=0, n=20000, shape=(1280, 1280)):
    rng = np.random.default_rng(seed)
    anchors = random_boxes(rng, n, shape)
    # network outputs: small RPN corrections, stage outputs of about one normalised unit
    deltas = [rng.normal(0, 0.1, (n, 4)), rng.normal(0, 1.0, (n, 4)), rng.normal(0, 1.0, (n, 4))]
    p = delta2bbox_1x(anchors, deltas[0], RPN_STDS, shape)
    _, ref = cascade_1x(p, deltas[1:], shape)
    return anchors, deltas, ref


# -- the coder -------------------------------------------------------------------------------
def test_coder_decodes_like_1x_delta2bbox(legacy):
    rng = np.random.default_rng(3)
    shape = (300, 400)
    rois = random_boxes(rng, 500, shape, 5, 200)
    deltas = rng.normal(0, 1.0, (500, 4))
    deltas[:5, 2:] = [[9.0, -9.0]] * 5  # beyond the 16/1000 aspect clip
    coder = legacy.DenseDet1xDeltaXYWHBBoxCoder(target_stds=(0.1, 0.1, 0.2, 0.2))
    got = coder.decode(torch.as_tensor(rois, dtype=torch.float32), torch.as_tensor(deltas, dtype=torch.float32),
                       max_shape=shape).numpy()
    want = delta2bbox_1x(rois, deltas, (0.1, 0.1, 0.2, 0.2), shape)
    assert np.abs(got - want).max() < 1e-3
    assert got[:, [0, 2]].max() <= shape[1] - 1 and got[:, [1, 3]].max() <= shape[0] - 1
    # zero deltas give the box back (1.x's +-0.5 undoes the +1 of the width)
    same = coder.decode(torch.as_tensor(rois, dtype=torch.float32), torch.zeros(500, 4)).numpy()
    assert np.abs(same - rois).max() < 1e-3
    # several classes side by side decode class by class
    two = coder.decode(torch.as_tensor(rois, dtype=torch.float32),
                       torch.as_tensor(np.concatenate([deltas, deltas[::-1]], 1), dtype=torch.float32),
                       max_shape=shape).numpy()
    assert np.abs(two[:, :4] - want).max() < 1e-3
    # encode stays 1.x's bbox2delta, the inverse of this decode
    gt = torch.as_tensor(want, dtype=torch.float32)
    enc = coder.encode(torch.as_tensor(rois, dtype=torch.float32), gt)
    back = coder.decode(torch.as_tensor(rois, dtype=torch.float32), enc).numpy()
    assert np.abs(back - want)[5:].max() < 1e-2


def test_rpn_and_two_stages_chained_match_1x(legacy, cfg):
    anchors, deltas, ref = _random_chain()
    shape = (1280, 1280)
    ours = _decode_chain(_coders(cfg), anchors, deltas, shape, legacy.REPORT_OFFSET)
    s = chain_stats(ours, ref)
    assert s["max"] < 0.01, s
    # the stock 3.x legacy coder, without the reporting offset: what the port did before
    stock = chain_stats(_decode_chain(_coders(cfg, "LegacyDeltaXYWHBBoxCoder"), anchors, deltas, shape, 0.0), ref)
    assert 1.8 < stock["dw"] < 2.2 and 1.8 < stock["dh"] < 2.2, stock
    assert -0.55 < stock["dcx"] < -0.45 and -0.55 < stock["dcy"] < -0.45, stock
    assert stock["max"] > 1.5


def test_shipped_configs_select_the_1x_components():
    from mmengine.config import Config

    for name in CONFIGS:
        m = Config.fromfile(str(config_path(name))).model
        assert m.rpn_head.anchor_generator.type == "LegacyAnchorGenerator", name
        assert m.rpn_head.anchor_generator.center_offset == 0.5
        assert m.rpn_head.bbox_coder.type == "DenseDet1xDeltaXYWHBBoxCoder", name
        ext = m.roi_head.bbox_roi_extractor
        assert ext.type == "DenseDet1xRoIExtractor" and ext.roi_layer.type == "RoIAlign", name
        assert ext.roi_layer.aligned is False and ext.roi_layer.sampling_ratio == 2
        assert len(m.roi_head.bbox_head) == 2
        for head, stds in zip(m.roi_head.bbox_head, STAGE_STDS):
            assert head.type == "DenseDet1xShared2FCBBoxHead", name
            assert head.bbox_coder.type == "DenseDet1xDeltaXYWHBBoxCoder"
            assert tuple(head.bbox_coder.target_stds) == stds and head.reg_class_agnostic
        assert m.test_cfg.rpn.min_bbox_size == -1  # 1.x filtered nothing at min_bbox_size=0
        assert m.test_cfg.rpn.nms.offset == 1 and m.test_cfg.rcnn.nms.offset == 1


def test_components_are_registered_by_the_first_build_not_by_import():
    code = (
        "import sys, densedet_tile\n"
        "from densedet_tile.detector import mmdet_adapter\n"
        "assert 'densedet_tile.detector.mmdet_legacy' not in sys.modules\n"
        "mmdet_adapter._import_stack()\n"  # the first thing build() and the converter's verify() do
        "from mmdet.registry import MODELS, TASK_UTILS\n"
        "from densedet_tile.detector import mmdet_legacy as L\n"
        "regs = dict(MODELS=MODELS, TASK_UTILS=TASK_UTILS)\n"
        "print([regs[r].get(n) is getattr(L, n) for r, n in L.REGISTERED])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[True, True, True]"


def test_extractor_refuses_an_aligned_roi_layer(legacy):
    with pytest.raises(ValueError, match="aligned=False"):
        legacy.DenseDet1xRoIExtractor(roi_layer=dict(type="RoIAlign", output_size=7, sampling_ratio=2, aligned=True),
                                      out_channels=4, featmap_strides=[4, 8, 16, 32])


# -- the RoI extractor -----------------------------------------------------------------------
def test_roi_extractor_matches_1x_levels_and_roialign(legacy, cfg):
    from mmdet.registry import MODELS

    rng = np.random.default_rng(5)
    shape = (512, 640)
    strides = [4, 8, 16, 32]
    feats = [torch.as_tensor(rng.normal(0, 1, (1, 4, shape[0] // s, shape[1] // s)), dtype=torch.float32)
             for s in strides]
    boxes = np.concatenate([
        random_boxes(rng, 24, shape, 40, 150),
        random_boxes(rng, 12, shape, 150, 480),
        [[20.0, 15.0, 509.0, 489.5], [100.0, 8.0, 630.0, 500.0]],  # level 3
        # on 1.x's level boundaries: 112 and 224 px wide counting the +1 (x2 - x1 = 111, 223)
        [[10.0, 20.0, 121.0, 131.0], [200.0, 100.0, 423.0, 323.0], [300.5, 40.25, 411.5, 151.25]],
    ])
    spec = dict(cfg.model.roi_head.bbox_roi_extractor, out_channels=4)
    ours = MODELS.build(spec)
    rois = torch.cat([torch.zeros(len(boxes), 1), torch.as_tensor(boxes, dtype=torch.float32)], 1)
    got = ours(tuple(feats), rois).numpy()
    levels = roi_levels_1x(boxes)
    assert set(levels) == {0, 1, 2, 3}
    assert np.array_equal(ours.map_roi_levels(rois + torch.tensor([0.0, 0, 0, 1, 1]), 4).numpy(), levels)
    for i, (box, lvl) in enumerate(zip(boxes, levels)):
        want = roi_align_1x(feats[lvl][0].numpy().astype(np.float64), box, 1 / strides[lvl])
        assert np.abs(got[i] - want).max() < 1e-4, (i, box, lvl)
    # the stock extractor puts the boundary boxes one level lower and samples a 1 px smaller RoI
    stock = MODELS.build(dict(spec, type="SingleRoIExtractor"))
    assert (stock.map_roi_levels(rois, 4).numpy()[-3:] == levels[-3:] - 1).all()
    assert np.abs(stock(tuple(feats), rois).numpy() - got).max() > 1e-2


# -- the real model --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def light_model(legacy):
    torch.manual_seed(0)
    keep_all = {"model.test_cfg.rcnn.nms.iou_threshold": 1.0, "model.test_cfg.rcnn.max_per_img": 100000,
                "model.test_cfg.rpn.nms.iou_threshold": 1.0, "model.test_cfg.rpn.nms_pre": 0,
                "model.test_cfg.rpn.max_per_img": 100000}
    det = mmdet_adapter.build(config=LIGHT, checkpoint=None, device="cpu", input_size=None, score_thr=0.0,
                              cfg_options=keep_all)
    return det.model


def _sample(shape):
    from mmdet.structures import DetDataSample

    s = DetDataSample()
    s.set_metainfo(dict(img_shape=shape, ori_shape=shape, pad_shape=shape, scale_factor=(1.0, 1.0)))
    return s


def test_rpn_head_proposals_match_1x(light_model):
    """Random RPN outputs through the model's own RPN head: anchors, decode, no size filter."""
    model = light_model
    rng = np.random.default_rng(11)
    shape = (96, 160)
    strides = [4, 8, 16, 32, 64]
    sizes = [(math.ceil(shape[0] / s), math.ceil(shape[1] / s)) for s in strides]
    cls = [torch.as_tensor(rng.normal(0, 2, (1, 3, h, w)), dtype=torch.float32) for h, w in sizes]
    reg = [torch.as_tensor(rng.normal(0, 0.3, (1, 12, h, w)), dtype=torch.float32) for h, w in sizes]
    with torch.inference_mode():
        (res,) = model.rpn_head.predict_by_feat(cls, reg, batch_img_metas=[_sample(shape).metainfo],
                                                cfg=model.test_cfg.rpn, rescale=False)
    want = []
    for a, c, r in zip(anchors_1x(sizes, strides), cls, reg):
        d = r[0].numpy().transpose(1, 2, 0).reshape(-1, 4)  # (H, W, A*4) -> anchor-major rows
        want.append(delta2bbox_1x(a, d, RPN_STDS, shape))
    want = np.concatenate(want)
    got = res.bboxes.numpy()
    assert len(got) == len(want)  # nothing filtered: 1.x kept even the boxes clamped to a line
    assert same_box_sets(got, want, 0.01) < 0.01


def test_cascade_of_the_built_model_matches_1x(light_model):
    """Fixed proposals, random stage outputs (hooked in): RoIs per stage and per RoIAlign level,
    final boxes and scores against the 1.x reference."""
    model = light_model
    rng = np.random.default_rng(7)
    shape = (256, 320)
    props = random_boxes(rng, 150, shape)
    outs = [(rng.normal(0, 1, (150, 2)), rng.normal(0, 1, (150, 4))) for _ in range(2)]
    seen_rois, seen_align = [], []
    hooks = []
    for stage in range(2):
        ext = model.roi_head.bbox_roi_extractor[stage]
        hooks.append(ext.register_forward_pre_hook(lambda m, a: seen_rois.append(a[1].clone())))
        for lvl, layer in enumerate(ext.roi_layers):
            hooks.append(layer.register_forward_pre_hook(
                lambda m, a, lvl=lvl: seen_align.append((len(seen_rois) - 1, lvl, a[1].clone()))))
        logits, deltas = (torch.as_tensor(v, dtype=torch.float32) for v in outs[stage])
        hooks.append(model.roi_head.bbox_head[stage].register_forward_hook(
            lambda m, a, o, logits=logits, deltas=deltas: (logits, deltas)))
    try:
        from mmengine.structures import InstanceData

        with torch.inference_mode():
            x = model.extract_feat(torch.rand(1, 3, *shape))
            proposals = InstanceData(bboxes=torch.as_tensor(props, dtype=torch.float32))
            (res,) = model.roi_head.predict(x, [proposals], [_sample(shape)], rescale=False)
    finally:
        for h in hooks:
            h.remove()

    stage_rois, want = cascade_1x(props, [o[1] for o in outs], shape)
    # each stage saw 1.x's RoIs; RoIAlign saw them extended by +1, on 1.x's level
    for stage in range(2):
        assert np.abs(seen_rois[stage][:, 1:].numpy() - stage_rois[stage]).max() < 1e-3
        levels = roi_levels_1x(stage_rois[stage])
        for lvl in range(4):
            got = [r for s, lv, r in seen_align if s == stage and lv == lvl]
            idx = np.flatnonzero(levels == lvl)
            if not len(idx):
                assert not got
                continue
            ext = stage_rois[stage][idx] + np.array([0.0, 0.0, 1.0, 1.0])
            assert np.abs(got[0][:, 1:].numpy() - ext).max() < 1e-3
    mean_logits = (outs[0][0] + outs[1][0]) / 2
    e = np.exp(mean_logits - mean_logits.max(1, keepdims=True))
    want_scores = e[:, 0] / e.sum(1)
    got = res.bboxes.numpy()
    assert len(got) == len(want)
    order = np.argsort(-want_scores, kind="stable")
    assert np.abs(np.sort(res.scores.numpy())[::-1] - want_scores[order]).max() < 1e-5
    assert same_box_sets(got, want, 0.01) < 0.01


# -- the converter and the docs say how exact the port is -----------------------------------------
def test_converter_prints_how_exact_the_port_is(tmp_path, capsys):
    from densedet_tile.cli.convert import convert_main
    from densedet_tile.detector import convert

    src = tmp_path / "v1.pth"
    # the least a 1.x Cascade R-CNN has (a backbone alone is refused even with --no-verify)
    torch.save({"state_dict": {"module.backbone.conv1.weight": torch.zeros(2, 3, 1, 1),
                               "module.rpn_head.rpn_cls.weight": torch.zeros(3, 2, 1, 1),
                               "module.bbox_head.0.fc_cls.weight": torch.zeros(2, 4),
                               "module.bbox_head.1.fc_cls.weight": torch.zeros(2, 4)}}, src)
    assert convert_main([str(src), str(tmp_path / "v3.pth"), "--no-verify"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("wrote ")
    assert convert.EXACTNESS_SUMMARY.strip() in out
    assert len(convert.EXACTNESS_SUMMARY.strip().splitlines()) <= 12


def test_docs_have_the_exactness_section():
    text = (ROOT / "docs" / "mmdet.md").read_text()
    assert "### How exact is the port" in text
    section = text.split("### How exact is the port", 1)[1].split("\n## ", 1)[0]
    for word in ("DenseDet1xDeltaXYWHBBoxCoder", "DenseDet1xRoIExtractor", "DenseDet1xShared2FCBBoxHead",
                 "remain"):
        assert word in section
