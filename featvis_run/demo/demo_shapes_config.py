# mmdet 3.x config of featvis_run's embedded demo model: a tiny RetinaNet (ResNet-18 at 1/4 width, 64-channel
# FPN P3-P7 with ReLU outputs, SSD-style single-conv RetinaHead) trained from scratch on synthetic circles /
# squares / triangles (featvis_run/demo/shapes.py). Weights: featvis_run/assets/demo_shapes.pth, produced by
# scripts/train_demo_model.py, which also fills in the data paths below.
#
# Self-contained on purpose: no _base_ files and no pretrained init_cfg, so loading it never downloads
# anything.
#
# Anchors: octave_base_scale=2 (mmdet's default RetinaNet uses 4), so on 640x480 images every level
# P3..P7 (strides 8..128) gets objects: the level with stride s has anchors of 2*s .. 3.2*s px and handles
# objects of roughly 1.8*s .. 3.6*s px (P3 ~14-28, P4 ~28-57, P5 ~57-113, P6 ~113-226, P7 >= ~226).
#
# Test images are resized to fit 640x480 (keep ratio); training uses 384x384 synthetic images at their
# native size (objects 12..340 px).

default_scope = "mmdet"

classes = ("circle", "square", "triangle")
metainfo = dict(classes=classes)

# ------------------------------------------------------------------------------------------------ model
model = dict(
    type="RetinaNet",
    data_preprocessor=dict(
        type="DetDataPreprocessor",
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_size_divisor=32,
    ),
    backbone=dict(
        type="ResNet",
        depth=18,
        base_channels=16,  # stage widths 16, 32, 64, 128
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=-1,
        norm_cfg=dict(type="BN", requires_grad=True),
        norm_eval=False,  # trained from scratch: BatchNorm statistics must be learned
        style="pytorch",
        init_cfg=None,
    ),
    neck=dict(
        type="FPN",
        in_channels=[16, 32, 64, 128],
        out_channels=64,
        start_level=1,
        add_extra_convs="on_input",
        # ReLU on the FPN convs: with the linear head below, a level's features have to be non-negative and
        # large exactly where that level detects something, so FPN maps light up on objects of their scale.
        act_cfg=dict(type="ReLU"),
        num_outs=5,
    ),
    bbox_head=dict(
        type="RetinaHead",
        num_classes=3,
        in_channels=64,
        stacked_convs=0,  # SSD-style: one 3x3 conv per branch reads the FPN features directly
        feat_channels=64,
        anchor_generator=dict(
            type="AnchorGenerator",
            octave_base_scale=2,
            scales_per_octave=3,
            ratios=[0.5, 1.0, 2.0],
            strides=[8, 16, 32, 64, 128],
        ),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0, 0.0, 0.0, 0.0], target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="L1Loss", loss_weight=1.0),
    ),
    train_cfg=dict(
        assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0, ignore_iof_thr=-1),
        sampler=dict(type="PseudoSampler"),
        allowed_border=-1,
        pos_weight=-1,
        debug=False,
    ),
    test_cfg=dict(
        nms_pre=1000, min_bbox_size=0, score_thr=0.05, nms=dict(type="nms", iou_threshold=0.5), max_per_img=100
    ),
)

# ------------------------------------------------------------------------------------------------- data
dataset_type = "CocoDataset"
data_root = "data/shapes/"  # overridden by scripts/train_demo_model.py
backend_args = None

# The generator already draws objects at every scale, so training uses images at their native size.
train_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="RandomFlip", prob=[0.25, 0.25], direction=["horizontal", "vertical"]),
    dict(type="PackDetInputs"),
]
test_pipeline = [
    dict(type="LoadImageFromFile", backend_args=backend_args),
    dict(type="Resize", scale=(640, 480), keep_ratio=True),
    # If you don't have a gt annotation, delete the pipeline
    dict(type="LoadAnnotations", with_bbox=True),
    dict(type="PackDetInputs", meta_keys=("img_id", "img_path", "ori_shape", "img_shape", "scale_factor")),
]

train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type="InfiniteSampler", shuffle=True),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root + "train/",
        ann_file="annotations.json",
        data_prefix=dict(img="images/"),
        filter_cfg=dict(filter_empty_gt=True, min_size=1),
        pipeline=train_pipeline,
        backend_args=backend_args,
    ),
)
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type="DefaultSampler", shuffle=False),
    dataset=dict(
        type=dataset_type,
        metainfo=metainfo,
        data_root=data_root + "val/",
        ann_file="annotations.json",
        data_prefix=dict(img="images/"),
        test_mode=True,
        pipeline=test_pipeline,
        backend_args=backend_args,
    ),
)
test_dataloader = val_dataloader

val_evaluator = dict(
    type="CocoMetric",
    ann_file=data_root + "val/annotations.json",
    metric="bbox",
    format_only=False,
    backend_args=backend_args,
)
test_evaluator = val_evaluator

# -------------------------------------------------------------------------------------------- schedule
max_iters = 3500
train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_begin=max_iters + 1, val_interval=max_iters + 1)
val_cfg = dict(type="ValLoop")
test_cfg = dict(type="TestLoop")

optim_wrapper = dict(
    type="OptimWrapper",
    optimizer=dict(type="AdamW", lr=2e-3, weight_decay=0.05),
    paramwise_cfg=dict(norm_decay_mult=0.0, bias_decay_mult=0.0),
    clip_grad=dict(max_norm=10, norm_type=2),
)
param_scheduler = [
    dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=200),
    dict(type="CosineAnnealingLR", T_max=max_iters - 200, eta_min=2e-5, by_epoch=False, begin=200, end=max_iters),
]

# ------------------------------------------------------------------------------------------------ runtime
default_hooks = dict(
    timer=dict(type="IterTimerHook"),
    logger=dict(type="LoggerHook", interval=50),
    param_scheduler=dict(type="ParamSchedulerHook"),
    checkpoint=dict(type="CheckpointHook", interval=max_iters, by_epoch=False, max_keep_ckpts=1),
    sampler_seed=dict(type="DistSamplerSeedHook"),
    visualization=dict(type="DetVisualizationHook"),
)

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method="fork", opencv_num_threads=0),
    dist_cfg=dict(backend="gloo"),
)

vis_backends = [dict(type="LocalVisBackend")]
visualizer = dict(type="DetLocalVisualizer", vis_backends=vis_backends, name="visualizer")
log_processor = dict(type="LogProcessor", window_size=50, by_epoch=False)

log_level = "INFO"
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
