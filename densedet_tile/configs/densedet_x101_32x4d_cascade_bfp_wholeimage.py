# SKU110K-DenseDet with the original whole-photo test scale: fit into 3000x1800, keep ratio.
# Use it with a tile larger than the photo (one tile per image), as the paper evaluated.
_base_ = './densedet_x101_32x4d_cascade_bfp.py'

tile_input_size = None
photo_scale = None  # the Resize below applies the rule itself

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(3000, 1800), keep_ratio=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
