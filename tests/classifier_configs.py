"""Tiny mmpretrain classifiers for tests: they build in well under a second and run on 64 x 64 inputs."""

# ResNet-18 at 1/8 width (8..64 channels), 5 named classes; the ImageNet test pipeline scaled down: the short edge
# resized to 72, then a 64 x 64 centre crop.
TINY_RESNET_CLS = """
model = dict(
    type='ImageClassifier',
    backbone=dict(type='ResNet', depth=18, stem_channels=8, base_channels=8, num_stages=4, out_indices=(3,)),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=5, in_channels=64, loss=dict(type='CrossEntropyLoss')),
)
data_preprocessor = dict(num_classes=5, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
test_dataloader = dict(
    batch_size=1,
    dataset=dict(type='CustomDataset', data_root='', metainfo=dict(classes=('circle', 'square', 'triangle', 'ring',
                 'star')), pipeline=test_pipeline),
)
"""

# A two-layer ViT on 64 x 64 inputs with 16 x 16 patches (a 4 x 4 grid) and a class token, and the same as a DeiT
# with a distillation token too (two extra tokens).
TINY_VIT_CLS = """
model = dict(
    type='ImageClassifier',
    backbone=dict(type='{backbone}', arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
                  img_size=64, patch_size=16, out_type='cls_token'),
    neck=None,
    head=dict(type='{head}', num_classes=5, in_channels=32, loss=dict(type='CrossEntropyLoss')),
)
data_preprocessor = dict(num_classes=5, mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=72, edge='short'),
    dict(type='CenterCrop', crop_size=64),
    dict(type='PackInputs'),
]
test_dataloader = dict(batch_size=1, dataset=dict(type='CustomDataset', data_root='', pipeline=test_pipeline))
"""
