# Light variant of SKU110K-DenseDet for fast tests and CPU smoke runs: identical structure
# (two-stage Cascade R-CNN, FPN + BFP non-local, the 1.x box arithmetic, same test settings)
# with a ResNet-18 backbone and narrower neck and heads. Not a released model: meant for
# random weights in CI, or for a model trained by the user. (mmengine replaces lists rather
# than merging them, so the neck and the two box heads are spelled out in full.)
_base_ = './densedet_x101_32x4d_cascade_bfp.py'

photo_scale = None  # tiles at the size given: random-weight smoke runs stay small

model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNet',
        depth=18,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch'),
    neck=[
        dict(type='FPN', in_channels=[64, 128, 256, 512], out_channels=64, num_outs=5),
        dict(type='BFP', in_channels=64, num_levels=5, refine_level=2, refine_type='non_local'),
    ],
    rpn_head=dict(in_channels=64, feat_channels=64),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=64),
        bbox_head=[
            dict(
                type='DenseDet1xShared2FCBBoxHead',
                in_channels=64,
                fc_out_channels=256,
                roi_feat_size=7,
                num_classes=1,
                bbox_coder=dict(
                    type='DenseDet1xDeltaXYWHBBoxCoder',
                    target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=[0.1, 0.1, 0.2, 0.2]),
                reg_class_agnostic=True,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
            dict(
                type='DenseDet1xShared2FCBBoxHead',
                in_channels=64,
                fc_out_channels=256,
                roi_feat_size=7,
                num_classes=1,
                bbox_coder=dict(
                    type='DenseDet1xDeltaXYWHBBoxCoder',
                    target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=[0.05, 0.05, 0.1, 0.1]),
                reg_class_agnostic=True,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
        ]))
