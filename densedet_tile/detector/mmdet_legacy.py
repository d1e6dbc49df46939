"""MMDetection 1.x box arithmetic for the DenseDet configs, registered into mmdet 3.x.

SKU110K-DenseDet was trained and evaluated with MMDetection 1.0rc1, whose boxes follow the
"inclusive pixel" convention: a box ``(x1, y1, x2, y2)`` covers pixels x1..x2, so its width is
``x2 - x1 + 1``. mmdet 3.3's ``LegacyDeltaXYWHBBoxCoder`` keeps only half of that arithmetic.
This module registers three components (imported by
:func:`densedet_tile.detector.mmdet_adapter._import_stack` before a model is built, and by the
shipped configs' ``custom_imports``) that reproduce 1.0rc1 at inference:

``DenseDet1xDeltaXYWHBBoxCoder`` (``TASK_UTILS``), 1.x ``delta2bbox``::

    px = (x1 + x2) / 2          pw = x2 - x1 + 1
    gx = px + pw * dx           gw = pw * exp(dw)      (dw clipped to |log(16/1000)|)
    x1' = gx - gw / 2 + 0.5     x2' = gx + gw / 2 - 0.5
    then clamped to [0, W - 1]  (W: the resized image)

    (the same for y/h). mmdet 3.3's legacy decoder leaves out the +-0.5, so each decode makes
    the box 1 px wider; encode is 3.3's ``legacy_bbox2delta``, which is 1.x's ``bbox2delta``.

``DenseDet1xRoIExtractor`` (``MODELS``), 1.x ``SingleRoIExtractor`` + 1.x ``RoIAlign``:
    the RoIs are extended by one pixel (x2 + 1, y2 + 1) before the FPN level is chosen and
    before RoIAlign runs with ``aligned=False``. That is 1.x's level rule
    ``sqrt((x2 - x1 + 1) * (y2 - y1 + 1))`` and its kernel's ``roi_end = (x2 + 1) * scale``.

``DenseDet1xShared2FCBBoxHead`` (``MODELS``), 1.x reporting:
    the final detections (after decode, rescale and NMS with offset 1, as in 1.x) get + 1 on x2
    and y2, which is what 1.x wrote to COCO json (``w = x2 - x1 + 1``). The boxes that come out
    are therefore plain continuous xyxy (width = x2 - x1) equal to what 1.x reported.
    Cascade refinement between stages uses the coder and is not offset.

The numbers (and what is still not bit-exact) are in docs/mmdet.md, "How exact is the port".
"""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from . import mmcv_shim

mmcv_shim.install()  # so that the mmdet imports below work with mmcv-lite (no-op with full mmcv)

import warnings  # noqa: E402

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

# mmcv and mmdet warn on import about their own moved modules (an ImportWarning for
# MultiScaleDeformableAttention...): not ours to fix, and an error under ``-W error``. The
# adapter mutes them around its imports; this module is also imported first by the shipped
# configs' custom_imports (mmengine's Config.fromfile, mmdet's init_detector), so it mutes them too
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from mmdet.models.roi_heads.bbox_heads import Shared2FCBBoxHead  # noqa: E402
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor  # noqa: E402
    from mmdet.models.task_modules.coders import LegacyDeltaXYWHBBoxCoder  # noqa: E402
    from mmdet.registry import MODELS, TASK_UTILS  # noqa: E402
    from mmdet.structures.bbox import HorizontalBoxes, get_box_tensor  # noqa: E402

__all__ = [
    "delta2bbox_1x",
    "DenseDet1xDeltaXYWHBBoxCoder",
    "DenseDet1xRoIExtractor",
    "DenseDet1xShared2FCBBoxHead",
    "REPORT_OFFSET",
    "REGISTERED",
]

#: Added to x2 and y2 of the final detections: 1.x reported widths as x2 - x1 + 1.
REPORT_OFFSET = 1.0

#: (registry name, class name) of what this module registers.
REGISTERED = (
    ("TASK_UTILS", "DenseDet1xDeltaXYWHBBoxCoder"),
    ("MODELS", "DenseDet1xRoIExtractor"),
    ("MODELS", "DenseDet1xShared2FCBBoxHead"),
)


def delta2bbox_1x(
    rois: Tensor,
    deltas: Tensor,
    means: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
    stds: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    max_shape: Optional[Any] = None,
    wh_ratio_clip: float = 16 / 1000,
) -> Tensor:
    """mmdet 1.0rc1's ``delta2bbox``: ``rois`` (N, 4) inclusive boxes, ``deltas`` (N, 4k) -> (N, 4k).

    ``max_shape`` is (H, W[, C]) of the resized image: boxes are clamped to [0, W - 1] x [0, H - 1].
    """
    means_t = deltas.new_tensor(means).repeat(1, deltas.size(1) // 4)
    stds_t = deltas.new_tensor(stds).repeat(1, deltas.size(1) // 4)
    denorm = deltas * stds_t + means_t
    dx = denorm[:, 0::4]
    dy = denorm[:, 1::4]
    max_ratio = abs(math.log(wh_ratio_clip))
    dw = denorm[:, 2::4].clamp(min=-max_ratio, max=max_ratio)
    dh = denorm[:, 3::4].clamp(min=-max_ratio, max=max_ratio)
    px = ((rois[:, 0] + rois[:, 2]) * 0.5).unsqueeze(1).expand_as(dx)
    py = ((rois[:, 1] + rois[:, 3]) * 0.5).unsqueeze(1).expand_as(dy)
    pw = (rois[:, 2] - rois[:, 0] + 1.0).unsqueeze(1).expand_as(dw)
    ph = (rois[:, 3] - rois[:, 1] + 1.0).unsqueeze(1).expand_as(dh)
    gw = pw * dw.exp()
    gh = ph * dh.exp()
    gx = px + pw * dx
    gy = py + ph * dy
    x1 = gx - gw * 0.5 + 0.5
    y1 = gy - gh * 0.5 + 0.5
    x2 = gx + gw * 0.5 - 0.5
    y2 = gy + gh * 0.5 - 0.5
    if max_shape is not None:
        h, w = float(max_shape[0]), float(max_shape[1])
        x1 = x1.clamp(min=0, max=w - 1)
        y1 = y1.clamp(min=0, max=h - 1)
        x2 = x2.clamp(min=0, max=w - 1)
        y2 = y2.clamp(min=0, max=h - 1)
    return torch.stack([x1, y1, x2, y2], dim=-1).view_as(deltas)


@TASK_UTILS.register_module(force=True)
class DenseDet1xDeltaXYWHBBoxCoder(LegacyDeltaXYWHBBoxCoder):
    """``LegacyDeltaXYWHBBoxCoder`` whose decode is mmdet 1.0rc1's, +-0.5 included (see module doc)."""

    def decode(
        self,
        bboxes: Any,
        pred_bboxes: Tensor,
        max_shape: Optional[Any] = None,
        wh_ratio_clip: Optional[float] = 16 / 1000,
    ) -> Any:
        bboxes = get_box_tensor(bboxes)
        assert pred_bboxes.size(0) == bboxes.size(0)
        if max_shape is not None and torch.is_tensor(max_shape):
            max_shape = [int(v) for v in max_shape.flatten()[:2].tolist()]
        elif max_shape is not None and isinstance(max_shape[0], (list, tuple)):
            raise ValueError("DenseDet1xDeltaXYWHBBoxCoder: one max_shape per batch is not supported")
        decoded = delta2bbox_1x(bboxes, pred_bboxes, self.means, self.stds, max_shape,
                                16 / 1000 if wh_ratio_clip is None else wh_ratio_clip)
        if self.use_box_type:
            assert decoded.size(-1) == 4, "boxes of several classes cannot be wrapped in a box type"
            decoded = HorizontalBoxes(decoded)
        return decoded


@MODELS.register_module(force=True)
class DenseDet1xRoIExtractor(SingleRoIExtractor):
    """``SingleRoIExtractor`` on RoIs extended by one pixel, as 1.x chose levels and ran RoIAlign.

    Needs ``roi_layer=dict(type='RoIAlign', ..., aligned=False)``: 1.x's kernel reads
    ``[x1 * s, (x2 + 1) * s]`` with no half-pixel shift.
    """

    def __init__(self, roi_layer: Any, *args: Any, **kwargs: Any) -> None:
        if roi_layer.get("type") != "RoIAlign" or roi_layer.get("aligned", True):
            raise ValueError(
                "DenseDet1xRoIExtractor reproduces mmdet 1.x's RoIAlign: it needs "
                f"roi_layer=dict(type='RoIAlign', ..., aligned=False), got {dict(roi_layer)!r}"
            )
        super().__init__(roi_layer, *args, **kwargs)

    def forward(self, feats: Any, rois: Tensor, roi_scale_factor: Optional[float] = None) -> Tensor:
        rois = rois.clone()
        rois[:, 3:5] += 1.0
        return super().forward(feats, rois, roi_scale_factor)


@MODELS.register_module(force=True)
class DenseDet1xShared2FCBBoxHead(Shared2FCBBoxHead):
    """``Shared2FCBBoxHead`` whose final detections are reported as 1.x did (x2 + 1, y2 + 1)."""

    def _predict_by_feat_single(self, roi: Tensor, cls_score: Tensor, bbox_pred: Tensor, img_meta: dict,
                                rescale: bool = False, rcnn_test_cfg: Any = None) -> Any:
        results = super()._predict_by_feat_single(roi, cls_score, bbox_pred, img_meta, rescale=rescale,
                                                  rcnn_test_cfg=rcnn_test_cfg)
        # rcnn_test_cfg None is mmdet's test-time-augmentation path: raw boxes to be merged and
        # NMS'd later in the inclusive convention, so they are left as they are.
        if rcnn_test_cfg is not None and len(results) > 0:
            boxes = get_box_tensor(results.bboxes)
            results.bboxes = boxes + boxes.new_tensor([0.0, 0.0, REPORT_OFFSET, REPORT_OFFSET])
        return results
