"""The torchvision-backed stand-in for mmcv._ext, checked against slow reference implementations."""

from __future__ import annotations

import importlib.util
import math
import sys

import numpy as np
import pytest

pytest.importorskip("mmcv")
torch = pytest.importorskip("torch")

from densedet_tile.detector import mmcv_shim  # noqa: E402
from densedet_tile.errors import DetectorError, MissingDependencyError  # noqa: E402


@pytest.fixture(scope="module")
def ops():
    mmcv_shim.install()
    import mmcv.ops

    return mmcv.ops


# -- references -----------------------------------------------------------------------------
def ref_nms(boxes: np.ndarray, scores: np.ndarray, thr: float, offset: int) -> list[int]:
    """Greedy NMS, one box at a time, in float64."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + offset)
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + offset)
            inter = iw * ih
            area_a = (a[2] - a[0] + offset) * (a[3] - a[1] + offset)
            area_b = (b[2] - b[0] + offset) * (b[3] - b[1] + offset)
            if inter / (area_a + area_b - inter) > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


def _bilinear(feat: np.ndarray, y: float, x: float) -> float:
    h, w = feat.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return 0.0
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
    return hy * hx * feat[y0, x0] + hy * lx * feat[y0, x1] + ly * hx * feat[y1, x0] + ly * lx * feat[y1, x1]


def ref_roi_align(feats, rois, out_hw, scale, sampling, aligned):
    """mmcv's CPU RoIAlign (average mode), written out loop by loop."""
    ph_n, pw_n = out_hw
    out = np.zeros((len(rois), feats.shape[1], ph_n, pw_n))
    off = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois):
        sx, sy = x1 * scale - off, y1 * scale - off
        rw, rh = x2 * scale - off - sx, y2 * scale - off - sy
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_n, rw / pw_n
        gh = sampling if sampling > 0 else math.ceil(rh / ph_n)
        gw = sampling if sampling > 0 else math.ceil(rw / pw_n)
        count = max(gh * gw, 1)
        for c in range(feats.shape[1]):
            f = feats[int(b), c]
            for ph in range(ph_n):
                for pw in range(pw_n):
                    acc = 0.0
                    for iy in range(gh):
                        y = sy + ph * bh + (iy + 0.5) * bh / gh
                        for ix in range(gw):
                            x = sx + pw * bw + (ix + 0.5) * bw / gw
                            acc += _bilinear(f, y, x)
                    out[k, c, ph, pw] = acc / count
    return out


# -- nms ------------------------------------------------------------------------------------
@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("seed", range(8))
def test_nms_matches_reference_on_random_boxes(ops, seed, offset):
    rng = np.random.default_rng(seed)
    n = 60
    xy = rng.uniform(0, 80, (n, 2))
    wh = rng.uniform(2, 40, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n + 0.01  # distinct scores, no ties
    thr = float(rng.choice([0.3, 0.5, 0.7]))
    dets, inds = ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr, offset=offset)
    assert inds.dtype == torch.long
    assert inds.tolist() == ref_nms(boxes.astype(np.float64), scores, thr, offset)
    np.testing.assert_allclose(dets[:, :4].numpy(), boxes[inds.numpy()])


@pytest.mark.parametrize("offset", [0, 1])
@pytest.mark.parametrize("thr", [0.5, 0.7])
def test_nms_decides_pairs_just_either_side_of_the_threshold(ops, thr, offset):
    # Pairs of 20-px boxes shifted along x so that IoU = thr * (1 +- 1e-3).
    rows, scores, expect_kept = [], [], []
    side = 20.0
    for k, sign in enumerate((+1, -1, +1, -1)):
        target = thr * (1 + sign * 1e-3)
        s = side + offset  # effective side in the offset convention
        dx = s * (1 - target) / (1 + target)
        y = 100.0 * k
        rows += [[0, y, side, y + side], [dx, y, side + dx, y + side]]
        scores += [0.9 - 0.1 * k, 0.85 - 0.1 * k]
        expect_kept.append(sign < 0)  # below the threshold the second box survives
    boxes = np.array(rows, dtype=np.float32)
    sc = np.array(scores, dtype=np.float32)
    _, inds = ops.nms(torch.from_numpy(boxes), torch.from_numpy(sc), thr, offset=offset)
    kept = set(inds.tolist())
    for k, survives in enumerate(expect_kept):
        assert 2 * k in kept
        assert (2 * k + 1 in kept) == survives
    assert inds.tolist() == ref_nms(boxes.astype(np.float64), sc, thr, offset)


def test_nms_of_no_boxes_is_empty(ops):
    dets, inds = ops.nms(torch.zeros((0, 4)), torch.zeros(0), 0.5)
    assert inds.shape == (0,) and dets.shape[0] == 0


def test_batched_nms_keeps_classes_apart(ops):
    boxes = torch.tensor([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.tensor([0, 1, 0])
    dets, keep = ops.batched_nms(boxes, scores, labels, dict(type="nms", iou_threshold=0.5))
    assert sorted(keep.tolist()) == [0, 1]


# -- roi_align ------------------------------------------------------------------------------
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [0, 2])
@pytest.mark.parametrize("seed", range(3))
def test_roi_align_matches_reference(ops, aligned, sampling, seed):
    rng = np.random.default_rng(100 + seed)
    feats = rng.normal(size=(2, 3, 12, 15)).astype(np.float32)
    k = 7
    x1 = rng.uniform(-8, 50, k)
    y1 = rng.uniform(-8, 40, k)
    w = rng.uniform(0.2, 40, k)  # includes RoIs below one feature pixel
    h = rng.uniform(0.2, 30, k)
    rois = np.stack([rng.integers(0, 2, k), x1, y1, x1 + w, y1 + h], axis=1).astype(np.float32)
    scale = 0.25
    got = ops.roi_align(
        torch.from_numpy(feats), torch.from_numpy(rois), (3, 4), scale, sampling, "avg", aligned
    ).numpy()
    want = ref_roi_align(feats.astype(np.float64), rois.astype(np.float64), (3, 4), scale, sampling, aligned)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_roi_align_module_used_by_mmdet_goes_through_the_shim(ops):
    layer = ops.RoIAlign(output_size=2, spatial_scale=0.5, sampling_ratio=2, aligned=False)
    feats = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    rois = torch.tensor([[0, 2.0, 2.0, 10.0, 10.0]])
    got = layer(feats, rois).numpy()
    want = ref_roi_align(feats.numpy().astype(np.float64), rois.numpy().astype(np.float64), (2, 2), 0.5, 2, False)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_roi_align_max_mode_is_refused_by_name(ops):
    with pytest.raises(mmcv_shim.ShimOpUnavailableError, match="roi_align_forward.*max"):
        ops.roi_align(torch.zeros(1, 1, 4, 4), torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]]), (2, 2), 1.0, 0, "max", True)


# -- activation and errors ------------------------------------------------------------------
def test_ops_it_cannot_supply_raise_naming_the_op(ops):
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=torch.float32)
    with pytest.raises(mmcv_shim.ShimOpUnavailableError, match="'softnms'") as err:
        ops.soft_nms(boxes, torch.tensor([0.9, 0.8]), 0.5)
    assert isinstance(err.value, DetectorError)
    assert "nms, roi_align_forward" in str(err.value)


def test_install_is_idempotent_and_reports_the_shim(ops):
    first = sys.modules["mmcv._ext"]
    assert mmcv_shim.install() is True
    assert sys.modules["mmcv._ext"] is first
    assert mmcv_shim.is_active()
    assert not hasattr(first, "__wrapped_nonexistent_dunder__")


def test_mmengine_and_importlib_still_work_beside_the_shim(ops):
    # a program that compares with mmdet's own API in the same process: importlib answers for
    # the stand-in (it raised ValueError for a module without a spec) and mmengine is not led
    # to think compiled ops exist (it calls the ops of full mmcv then)
    assert mmcv_shim.is_active()
    spec = importlib.util.find_spec("mmcv._ext")
    assert spec is not None and spec.loader is None
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.utils.dl_utils import mmcv_full_available

    assert mmcv_full_available() is False
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.SyncBatchNorm(4))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in revert_sync_batchnorm(model).modules())


def test_not_installed_when_compiled_ext_exists(monkeypatch):
    monkeypatch.delitem(sys.modules, "mmcv._ext", raising=False)
    real_find_spec = importlib.util.find_spec

    def fake_find_spec(name, *args, **kwargs):
        if name == "mmcv._ext":
            return importlib.machinery.ModuleSpec("mmcv._ext", loader=None)
        return real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(mmcv_shim.importlib.util, "find_spec", fake_find_spec)
    assert mmcv_shim.install() is False
    assert "mmcv._ext" not in sys.modules
    assert not mmcv_shim.is_active()


def test_missing_mmcv_is_a_missing_dependency(monkeypatch):
    monkeypatch.delitem(sys.modules, "mmcv._ext", raising=False)
    monkeypatch.setitem(sys.modules, "mmcv", None)
    with pytest.raises(MissingDependencyError, match=r"densedet-tile\[mmdet\]"):
        mmcv_shim.install()
