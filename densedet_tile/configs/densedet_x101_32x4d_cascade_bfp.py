# SKU110K-DenseDet (Media-Smart, arXiv 2007.11946) ported from MMDetection 1.0rc1 to 3.x.
#
# Same network and test settings as the released model: Cascade R-CNN with two stages
# (IoU 0.5 then 0.6), ResNeXt-101 32x4d, FPN followed by BFP with a non-local refine block,
# anchors of scale 8 and ratios 0.5/1/2 on strides 4..64, class-agnostic box regression and
# one class ("product"). The 1.x box arithmetic the weights were trained with is kept exactly
# (densedet_tile/detector/mmdet_legacy.py, imported below): LegacyAnchorGenerator (centre offset
# 0.5), DenseDet1xDeltaXYWHBBoxCoder (1.x delta2bbox: width = x2 - x1 + 1 and the +-0.5 that
# mmdet 3's LegacyDeltaXYWHBBoxCoder leaves out), DenseDet1xRoIExtractor (RoIs extended by
# +1 px for the level choice and RoIAlign, aligned=False), NMS with offset=1, no RPN size
# filter (min_bbox_size=-1; 1.x had none at 0), and DenseDet1xShared2FCBBoxHead, which reports
# the final boxes with x2 + 1, y2 + 1 as 1.x wrote them to COCO json. A checkpoint converted by
# densedet-tile convert-checkpoint loads into this config without missing keys.
#
# Test scale. The original test pipeline resizes a whole photo to fit 3000x1800 (keep ratio);
# the model was trained on 1200x1200 crops of photos resized that way. Here the model sees
# tiles: `tile_input_size` (read by densedet_tile.detector.mmdet_adapter) is the longer side
# the engine resizes each tile to, and the Resize below is set to the same square so it is a
# no-op after the engine's resize. 1280 equals the engine's default tile, so by default tiles
# run at native resolution. For a SKU-110K-like photo (2448x3264) the original pipeline
# shrinks by 0.735. `photo_scale` (read by the adapter) declares that rule: for a photo-like
# image the engine picks the tile that reproduces it (1280 / 0.735 ~= 1740 px for 3264x2448),
# unless --scale, --tile auto or --input-size say otherwise.
# densedet_x101_32x4d_cascade_bfp_wholeimage.py keeps the original 3000x1800 scale.

tile_input_size = 1280
photo_scale = (3000, 1800)  # whole photo resized to fit long x short, keep ratio

custom_imports = dict(imports=['densedet_tile.detector.mmdet_legacy'], allow_failed_imports=False)

model = dict(
    type='CascadeRCNN',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32),
    backbone=dict(
        type='ResNeXt',
        depth=101,
        groups=32,
        base_width=4,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch'),
    neck=[
        dict(
            type='FPN',
            in_channels=[256, 512, 1024, 2048],
            out_channels=256,
            num_outs=5),
        dict(
            type='BFP',
            in_channels=256,
            num_levels=5,
            refine_level=2,
            refine_type='non_local'),
    ],
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='LegacyAnchorGenerator',
            center_offset=0.5,
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(
            type='DenseDet1xDeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='SmoothL1Loss', beta=1.0 / 9.0, loss_weight=1.0)),
    roi_head=dict(
        type='CascadeRoIHead',
        num_stages=2,
        stage_loss_weights=[1, 0.5],
        bbox_roi_extractor=dict(
            type='DenseDet1xRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=2, aligned=False),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=[
            dict(
                type='DenseDet1xShared2FCBBoxHead',
                in_channels=256,
                fc_out_channels=1024,
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
                in_channels=256,
                fc_out_channels=1024,
                roi_feat_size=7,
                num_classes=1,
                bbox_coder=dict(
                    type='DenseDet1xDeltaXYWHBBoxCoder',
                    target_means=[0.0, 0.0, 0.0, 0.0],
                    target_stds=[0.05, 0.05, 0.1, 0.1]),
                reg_class_agnostic=True,
                loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
                loss_bbox=dict(type='SmoothL1Loss', beta=1.0, loss_weight=1.0)),
        ]),
    # Training settings of the original (RandomSampler of 1024 RPN / 3072 R-CNN boxes),
    # kept so the config documents the model; inference does not use them.
    train_cfg=dict(
        rpn=dict(
            assigner=dict(type='MaxIoUAssigner', pos_iou_thr=0.7, neg_iou_thr=0.3,
                          min_pos_iou=0.3, ignore_iof_thr=-1),
            sampler=dict(type='RandomSampler', num=1024, pos_fraction=0.5,
                         neg_pos_ub=-1, add_gt_as_proposals=False),
            allowed_border=0,
            pos_weight=-1,
            debug=False),
        rpn_proposal=dict(nms_pre=2000, max_per_img=2000,
                          nms=dict(type='nms', iou_threshold=0.7, offset=1), min_bbox_size=-1),
        rcnn=[
            dict(
                assigner=dict(type='MaxIoUAssigner', pos_iou_thr=iou, neg_iou_thr=iou,
                              min_pos_iou=iou, ignore_iof_thr=-1),
                sampler=dict(type='RandomSampler', num=3072, pos_fraction=0.25,
                             neg_pos_ub=-1, add_gt_as_proposals=True),
                pos_weight=-1,
                debug=False) for iou in (0.5, 0.6)
        ]),
    test_cfg=dict(
        rpn=dict(
            nms_pre=3000,
            max_per_img=3000,
            nms=dict(type='nms', iou_threshold=0.7, offset=1),
            min_bbox_size=-1),
        rcnn=dict(
            score_thr=0.05,
            nms=dict(type='nms', iou_threshold=0.7, offset=1),
            max_per_img=400)))

default_scope = 'mmdet'
metainfo = dict(classes=('product', ))

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(tile_input_size, tile_input_size), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# for mmdet's own init_detector / inference_detector, which read the pipeline and the class
# names from here (densedet-tile reads test_pipeline); no annotation file is ever loaded
test_dataloader = dict(
    batch_size=1,
    dataset=dict(type='CocoDataset', metainfo=metainfo, data_root='', ann_file='', lazy_init=True,
                 test_mode=True, pipeline=test_pipeline))
