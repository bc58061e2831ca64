# A tiny top-down heatmap pose model for tests: ResNet-18 at a quarter width, a 128x96 input, three small deconv
# layers to 32x24 heatmaps (stride 4), 17 COCO keypoints (names and skeleton from mmpose's coco.py).
codec = dict(type='MSRAHeatmap', input_size=(96, 128), heatmap_size=(24, 32), sigma=2)

model = dict(
    type='TopdownPoseEstimator',
    data_preprocessor=dict(
        type='PoseDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], bgr_to_rgb=True),
    backbone=dict(type='ResNet', depth=18, stem_channels=16, base_channels=16),
    head=dict(
        type='HeatmapHead',
        in_channels=128,
        out_channels=17,
        deconv_out_channels=(16, 16, 16),
        deconv_kernel_sizes=(4, 4, 4),
        loss=dict(type='KeypointMSELoss', use_target_weight=True),
        decoder=codec),
    test_cfg=dict(flip_test=True, flip_mode='heatmap', shift_heatmap=True))

val_pipeline = [
    dict(type='LoadImage'),
    dict(type='GetBBoxCenterScale'),
    dict(type='TopdownAffine', input_size=codec['input_size']),
    dict(type='PackPoseInputs'),
]
test_dataloader = dict(
    batch_size=1,
    dataset=dict(type='CocoDataset', data_root='', data_mode='topdown', ann_file='', test_mode=True,
                 pipeline=val_pipeline))
default_scope = 'mmpose'
