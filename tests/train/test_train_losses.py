"""Losses, ignore regions, training crops and the weights format of densedet_tile.train."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from densedet_tile.detector.builtin import DEFAULT_CONFIG, ShelfNet, build_from_checkpoint, build_targets
from densedet_tile.train.data import PhotoCrops, augment, crop_boxes, ignore_map, make_sample, stack_samples
from densedet_tile.train.loop import checkpoint_dict, ema_copy, ema_update, learning_rate, save_checkpoint
from densedet_tile.train.losses import focal_loss, giou_loss

STRIDE, SIZE = 8, 128


def _reference_focal(logits, gt):
    """The loss as scripts/train_default.py computed it before it moved (boolean indexing)."""
    pos = gt >= 0.999
    p = torch.sigmoid(logits)
    pos_loss = (F.logsigmoid(logits) * (1 - p) ** 2)[pos].sum()
    neg_loss = (F.logsigmoid(-logits) * p ** 2 * (1 - gt) ** 4)[~pos].sum()
    return -(pos_loss + neg_loss) / pos.sum().clamp(min=1)


def _targets(boxes, ignore=None):
    heat, box_t, weight = build_targets(np.array(boxes, np.float32), SIZE, STRIDE)
    ign = ignore_map(np.zeros((0, 4)) if ignore is None else np.array(ignore, float), SIZE, STRIDE)
    return [torch.from_numpy(a)[None] for a in (heat, box_t, weight, ign)]


@pytest.mark.parametrize("seed", range(3))
def test_focal_loss_without_ignore_is_the_old_loss(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(1, 1, SIZE // STRIDE, SIZE // STRIDE, generator=g) * 3
    heat, *_ = _targets([[10, 10, 50, 70], [60, 20, 100, 90]])
    torch.testing.assert_close(focal_loss(logits, heat), _reference_focal(logits, heat))
    zero = torch.zeros_like(heat)
    torch.testing.assert_close(focal_loss(logits, heat, zero), _reference_focal(logits, heat))


def test_ignore_region_contributes_no_loss_and_no_gradient():
    product, unsure = [8, 8, 48, 72], [72, 16, 120, 104]
    heat, _, _, ign = _targets([product], ignore=[unsure])
    g = ign[0, 0] > 0
    assert g.sum() > 20 and (heat[0, 0][g] < 0.999).all()  # a real region, holding no centre
    logits = (torch.randn(1, 1, *g.shape, generator=torch.Generator().manual_seed(0)) * 2).requires_grad_()
    loss = focal_loss(logits, heat, ign)
    loss.backward()
    assert torch.all(logits.grad[0, 0][g] == 0)
    assert torch.all(logits.grad[0, 0][~g] != 0)
    # anything the model says inside the ignore region leaves the loss as it is ...
    wild = logits.detach().clone()
    wild[0, 0][g] = torch.linspace(-9, 9, int(g.sum()))
    assert focal_loss(wild, heat, ign).item() == pytest.approx(loss.item(), rel=1e-6)
    # ... and without the ignore map the same change costs a lot
    assert focal_loss(wild, heat).item() > focal_loss(logits.detach(), heat).item() + 1.0


def test_a_centre_inside_an_ignore_region_still_counts():
    product = [40, 40, 80, 88]
    heat, _, _, ign = _targets([product], ignore=[[0, 0, SIZE, SIZE]])
    logits = torch.zeros(1, 1, SIZE // STRIDE, SIZE // STRIDE, requires_grad=True)
    focal_loss(logits, heat, ign).backward()
    centre = heat[0, 0] >= 0.999
    assert centre.sum() == 1
    assert logits.grad[0, 0][centre].item() < 0  # pushes the centre's logit up
    assert torch.all(logits.grad[0, 0][~centre] == 0)


def test_giou_loss_is_zero_for_exact_boxes_and_ignores_unweighted_cells():
    boxes = [[16, 16, 64, 96]]
    heat, box_t, weight, _ = _targets(boxes)
    g = SIZE // STRIDE
    cy, cx = (torch.arange(g).float() + 0.5) * STRIDE, (torch.arange(g).float() + 0.5) * STRIDE
    dist = torch.stack([cx[None, :] - box_t[0, 0], cy[:, None] - box_t[0, 1], box_t[0, 2] - cx[None, :],
                        box_t[0, 3] - cy[:, None]])[None]
    assert giou_loss(dist, box_t, weight, STRIDE).item() == pytest.approx(0.0, abs=1e-5)
    assert giou_loss(dist * 0 + 1, box_t, torch.zeros_like(weight), STRIDE).item() == 0.0


def test_ignore_map_marks_cells_whose_centre_is_inside():
    m = ignore_map(np.array([[8, 0, 24, 9]]), 32, 8)[0]
    # cell centres at 4, 12, 20, 28: x in [8, 24] -> columns 1, 2; y in [0, 9] -> row 0
    assert m.tolist() == [[0, 1, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    tiny = ignore_map(np.array([[13, 13, 14, 14]]), 32, 8)[0]  # holds no centre: its own cell
    assert tiny.sum() == 1 and tiny[1, 1] == 1


def test_crop_boxes_keeps_mostly_visible_boxes_and_returns_the_rest_as_cut():
    boxes = np.array([[10, 10, 30, 30], [90, 10, 130, 30], [110, 10, 170, 30], [200, 200, 220, 220]], float)
    kept, cut = crop_boxes(boxes, 0, 0, 1.0, 128)
    np.testing.assert_allclose(kept, [[10, 10, 30, 30], [90, 10, 128, 30]])  # 95 % inside
    np.testing.assert_allclose(cut, [[110, 10, 128, 30]])  # 30 % inside: ignore, not background
    kept, _ = crop_boxes(boxes[:1], 5, 5, 2.0, 128)
    np.testing.assert_allclose(kept, [[10, 10, 50, 50]])


def test_photo_crops_put_labels_where_the_pixels_are():
    photo = np.zeros((300, 400, 3), np.uint8)
    photo[100:170, 150:190] = 255  # one bright product
    crops = PhotoCrops(size=160, stride=8, input_size=640, tile=1280, zoom_range=(0.8, 1.25))
    i = crops.add(photo)
    crops.set_labels(i, np.array([[150, 100, 190, 170]], np.float32), np.zeros((0, 4), np.float32))
    found = 0
    for k in range(100):
        smp = crops.sample(np.random.default_rng(k))
        if smp.boxes:
            # the labelled box (what the cells around its centre regress) covers the bright pixels
            box = smp.box_t[:, smp.weight[0] > 0][:, 0]
            bright = smp.image.max(2) > 128
            rows, cols = np.flatnonzero(bright.any(1)), np.flatnonzero(bright.any(0))
            np.testing.assert_allclose(box, [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], atol=1.5)
            # the engine shows a 400 px photo (smaller than a tile) whole at 640 px: x1.6, times the zoom
            assert 40 * 1.6 * 0.8 - 1.5 <= box[2] - box[0] <= 40 * 1.6 * 1.25 + 1.5 or box[0] == 0 or box[2] == 160
            found += 1
    assert found >= 5


def test_a_panorama_wider_than_a_jpeg_allows_is_kept_and_cropped():
    # an outside review: at tile 640 a 66 000 px wide aisle stays 66 000 px at model scale, past
    # the 65 500 px a JPEG side can hold, and the whole adapt run failed after labelling
    photo = np.full((120, 66_000, 3), 40, np.uint8)
    photo[30:100, 65_900:65_950] = 255  # a product at the far end
    crops = PhotoCrops(size=64, stride=8, input_size=640, tile=640, zoom_range=(1.0, 1.0))
    i = crops.add(photo)
    crops.set_labels(i, np.array([[65_900, 30, 65_950, 100]], np.float32), np.zeros((0, 4), np.float32))
    assert crops._shape[i] == (120, 66_000)
    assert crops._decode(i).size == (66_000, 120)  # kept whole, losslessly
    assert np.asarray(crops._decode(i))[60, 65_920].tolist() == [255, 255, 255]


def test_augment_flips_ignore_with_the_image():
    img = torch.zeros(1, 3, 32, 32)
    img[..., :8] = 255
    heat, box_t, weight, ign = (torch.from_numpy(a)[None] for a in (
        *build_targets(np.array([[0, 0, 8, 8]], np.float32), 32, 8), ignore_map(np.array([[0, 8, 8, 32]]), 32, 8)))
    for seed in range(20):
        x, h, b, w, i = augment(img, heat, box_t, weight, torch.Generator().manual_seed(seed), ign)
        flipped = x[0, :, 0, -1].sum() > x[0, :, 0, 0].sum()
        assert bool(i[0, 0, 1, -1] > 0) == bool(flipped) and bool(i[0, 0, 1, 0] > 0) != bool(flipped)
        assert bool(h[0, 0, 0, -1] == 1) == bool(flipped)
    assert augment(img, heat, box_t, weight, torch.Generator())[4] is None


def test_stack_samples_shapes():
    smp = make_sample(np.zeros((64, 64, 3), np.uint8), np.array([[8, 8, 40, 40]]), np.array([[40, 0, 64, 64]]), 8)
    img, heat, box_t, weight, ign = stack_samples([smp, smp])
    assert img.shape == (2, 64, 64, 3) and heat.shape == (2, 1, 8, 8) and box_t.shape == (2, 4, 8, 8)
    assert weight.shape == ign.shape == (2, 1, 8, 8) and ign.sum() > 0


def test_learning_rate_warms_up_then_decays():
    assert learning_rate(1.0, 0, 0.0, 10) == pytest.approx(0.1)
    assert learning_rate(1.0, 50, 0.0, 10) == pytest.approx(1.0)
    assert learning_rate(1.0, 50, 0.5, 10) == pytest.approx(0.51)
    assert learning_rate(1.0, 50, 1.0, 10) == pytest.approx(0.02)


def test_ema_follows_the_model_and_checkpoints_load_weights_only(tmp_path):
    torch.manual_seed(0)
    model = ShelfNet(DEFAULT_CONFIG)
    ema = ema_copy(model)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema_update(ema, model, step=0, decay=0.99)  # d = min(0.99, 1/10) = 0.1
    pm, pe = next(model.parameters()), next(ema.parameters())
    torch.testing.assert_close(pe, pm - 0.1)  # 0.1 * old + 0.9 * new, new = old + 1
    path = save_checkpoint(ema, DEFAULT_CONFIG, {"note": "test"}, tmp_path / "w.pt")
    ck = torch.load(path, weights_only=True)
    assert ck["info"] == {"note": "test"} and all(
        v.dtype == torch.float16 for v in ck["state_dict"].values() if v.is_floating_point())
    det = build_from_checkpoint(ck, device="cpu")
    assert det.predict([np.zeros((64, 64, 3), np.uint8)])[0].xyxy.shape[1] == 4
    assert set(checkpoint_dict(ema, DEFAULT_CONFIG, {})) == {"config", "state_dict", "info"}


def test_a_step_whose_gradient_is_not_finite_changes_nothing():
    # A finite loss can still overflow a gradient; clipping by the norm keeps the NaN, so the
    # step must be skipped rather than poison the weights (and the EMA that follows them).
    from densedet_tile.train.loop import train_step

    torch.manual_seed(0)
    model = ShelfNet(DEFAULT_CONFIG)
    ema = ema_copy(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    heat, box_t, weight, _ = _targets([[10, 10, 50, 70], [60, 20, 100, 90]])
    img = torch.full((1, 3, SIZE, SIZE), 128.0)
    kw = dict(step=1, lr=1e-3, gen=torch.Generator().manual_seed(0), mean=torch.zeros(1, 3, 1, 1),
              std=torch.full((1, 3, 1, 1), 255.0), stride=STRIDE)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ema_before = {k: v.clone() for k, v in ema.state_dict().items()}
    hook = next(model.parameters()).register_hook(lambda g: g * float("nan"))
    assert train_step(model, ema, opt, (img, heat, box_t, weight), **kw) is None
    for k, v in model.state_dict().items():
        if v.is_floating_point() and "running" not in k:  # BatchNorm statistics move in forward
            assert torch.equal(v, before[k]), k
    for k, v in ema.state_dict().items():
        assert torch.equal(v, ema_before[k]), k
    hook.remove()
    assert train_step(model, ema, opt, (img, heat, box_t, weight), **kw) is not None  # a sound step runs


# --- learning without forgetting (--distill) ------------------------------------------------

def test_distill_loss_is_zero_for_the_teacher_itself_and_grows_with_drift():
    from densedet_tile.train.losses import distill_loss

    g = torch.Generator().manual_seed(0)
    heat, box_t, weight, ign = _targets([[10, 10, 50, 70]])
    t = torch.randn(1, 1, SIZE // STRIDE, SIZE // STRIDE, generator=g) * 3
    assert float(distill_loss(t, t, heat, weight)) == pytest.approx(0.0, abs=1e-6)
    small, large = t + 0.1, t + 1.0
    assert 0 < float(distill_loss(small, t, heat, weight)) < float(distill_loss(large, t, heat, weight))


def test_distill_loss_leaves_the_labelled_products_and_ignored_cells_to_the_labels():
    from densedet_tile.train.losses import distill_loss

    heat, box_t, weight, ign = _targets([[10, 10, 50, 70]], ignore=[[80, 80, 128, 128]])
    t = torch.zeros(1, 1, SIZE // STRIDE, SIZE // STRIDE)
    near = ((heat >= 0.01) | (weight > 0)).float()
    # the student moves only on and around the product: nothing to pay
    assert float(distill_loss(t + 5 * near, t, heat, weight)) == pytest.approx(0.0, abs=1e-6)
    # ... and in the ignored corner, once the ignore map is given
    moved = t + 5 * (ign > 0).float()
    assert float(distill_loss(moved, t, heat, weight)) > 0.1
    assert float(distill_loss(moved, t, heat, weight, ign)) == pytest.approx(0.0, abs=1e-6)
    # a gradient reaches the student only, never the teacher
    s = (t + 1).requires_grad_()
    tt = t.clone().requires_grad_()
    distill_loss(s, tt, heat, weight).backward()
    assert s.grad is not None and float(s.grad.abs().sum()) > 0 and tt.grad is None
