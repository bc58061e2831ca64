#!/usr/bin/env python
"""Train featvis_run's embedded demo model: a tiny RetinaNet on synthetic circles / squares / triangles.

Steps: generate a training set and a held-out validation set with ``featvis_run.demo.shapes`` (different
seeds), train ``featvis_run/demo/demo_shapes_config.py`` from scratch with mmengine's ``Runner`` on the
CPU, evaluate with mmdet's ``CocoMetric`` on the held-out set, and export

* ``--out`` (default ``featvis_run/assets/demo_shapes.pth``): a plain dict
  ``{'state_dict': {...}, 'meta': {...}}`` of tensors / str / int / float / list / dict that loads with
  ``torch.load(path, weights_only=True)``;
* ``<out stem>_metrics.json`` next to it: the evaluation metrics and training settings;
* ``demo_scene.png`` / ``demo_scene.json`` next to it: the packaged demo image and its annotations.

Example (the packaged weights)::

    .venv/bin/python scripts/train_demo_model.py

``--quick`` trains a few iterations on a handful of images (for tests); give it an ``--out`` outside the
package.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from featvis_run.demo.shapes import CLASSES, write_coco_dataset, write_demo_scene  # noqa: E402

CONFIG = REPO / "featvis_run" / "demo" / "demo_shapes_config.py"
DEFAULT_OUT = REPO / "featvis_run" / "assets" / "demo_shapes.pth"
MAX_CKPT_BYTES = 5 * 1024 * 1024

TRAIN_SIZE = (384, 384)  # (H, W) of generated training images
VAL_SIZE = (480, 640)  # held-out images have the demo scene's size
SCENE_KWARGS = dict(min_size=12, max_size=340)  # objects 12..340 px in both sets: P3 (stride 8) .. P7 (128)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint to write")
    p.add_argument("--config", type=Path, default=CONFIG, help="mmdet config (for experiments)")
    p.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="data, logs and mmengine checkpoints (default: a new temp dir under outputs/)",
    )
    p.add_argument("--iters", type=int, default=None, help="training iterations (default 3500, quick: 4)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default 8, quick: 2)")
    p.add_argument("--lr", type=float, default=2e-3, help="peak AdamW learning rate")
    p.add_argument("--num-train", type=int, default=None, help="training images (default 3000, quick: 8)")
    p.add_argument("--num-val", type=int, default=None, help="held-out images (default 300, quick: 4)")
    p.add_argument("--seed", type=int, default=0, help="seed of data generation and training")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch default)")
    p.add_argument("--quick", action="store_true", help="a few iterations on a few images (for tests)")
    p.add_argument("--keep-data", action="store_true", help="keep the generated images in the work dir")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (("iters", 3500, 4), ("batch_size", 8, 2), ("num_train", 3000, 8), ("num_val", 300, 4)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def build_cfg(args: argparse.Namespace, data_dir: Path, work_dir: Path):
    """The demo config with data paths, schedule and seed filled in."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(args.config))
    train_root, val_root = data_dir / "train", data_dir / "val"
    cfg.train_dataloader.dataset.data_root = str(train_root)
    cfg.train_dataloader.batch_size = args.batch_size
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = str(val_root)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = str(val_root / "annotations.json")
        evaluator.classwise = True

    iters = args.iters
    warmup = min(200, max(2, iters // 10))
    # no validation inside the loop (mmengine would run one at the last iteration): evaluated once below
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=iters, val_begin=iters + 1, val_interval=iters + 1)
    cfg.optim_wrapper.optimizer.lr = args.lr
    cfg.param_scheduler = [
        dict(type="LinearLR", start_factor=0.01, by_epoch=False, begin=0, end=warmup),
        dict(
            type="CosineAnnealingLR",
            T_max=max(1, iters - warmup),
            eta_min=args.lr * 0.01,
            by_epoch=False,
            begin=warmup,
            end=iters,
        ),
    ]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", interval=iters, by_epoch=False, max_keep_ckpts=1)
    cfg.default_hooks.logger.interval = 1 if args.quick else 50
    cfg.randomness = dict(seed=args.seed, deterministic=True)
    cfg.work_dir = str(work_dir)
    cfg.launcher = "none"
    return cfg


def plain_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU copies of the model's parameters and buffers (no wrapper prefixes)."""
    from mmengine.model import is_model_wrapper

    if is_model_wrapper(model):
        model = model.module
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def demo_scene_check(model: torch.nn.Module, cfg, png: Path, ann_json: Path) -> dict:
    """Detect on the demo scene: best same-class match (IoU > 0.5) score of every annotated object."""
    import cv2
    from mmcv.transforms import Compose
    from mmdet.structures.bbox import bbox_overlaps

    pipeline = [dict(t) for t in cfg.test_dataloader.dataset.pipeline if t["type"] != "LoadAnnotations"]
    pipeline[0] = dict(type="mmdet.LoadImageFromNDArray")
    data = Compose(pipeline)(dict(img=cv2.imread(str(png)), img_id=0))
    batch = dict(inputs=[data["inputs"]], data_samples=[data["data_samples"]])
    model.eval()
    with torch.no_grad():
        pred = model.test_step(batch)[0].pred_instances
    objects = json.loads(ann_json.read_text())["objects"]
    gt = torch.tensor([o["bbox"] for o in objects], dtype=torch.float32)
    ious = bbox_overlaps(gt, pred.bboxes) if len(pred) else torch.zeros(len(gt), 0)
    scores = []
    for i, obj in enumerate(objects):
        ok = (ious[i] > 0.5) & (pred.labels == CLASSES.index(obj["label"]))
        scores.append(round(float(pred.scores[ok].max()), 4) if bool(ok.any()) else 0.0)
    return {
        "best_scores": scores,
        "labels": [o["label"] for o in objects],
        "all_found_score_gt_0.5": all(s > 0.5 for s in scores),
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    import mmdet
    from mmengine.runner import Runner

    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.work_dir is None:
        (REPO / "outputs").mkdir(exist_ok=True)
        work_dir = Path(tempfile.mkdtemp(prefix="train_demo_", dir=REPO / "outputs"))
    else:
        work_dir = args.work_dir.resolve()
        work_dir.mkdir(parents=True, exist_ok=True)
    data_dir = work_dir / "data"

    t0 = time.time()
    write_coco_dataset(data_dir / "train", args.num_train, seed=args.seed, size=TRAIN_SIZE, **SCENE_KWARGS)
    # the held-out set uses a different base seed, hence independent scene seeds
    write_coco_dataset(data_dir / "val", args.num_val, seed=args.seed + 1_000_003, size=VAL_SIZE, **SCENE_KWARGS)
    t_data = time.time() - t0
    print(f"generated {args.num_train} train + {args.num_val} val images in {t_data:.1f}s -> {data_dir}")

    cfg = build_cfg(args, data_dir, work_dir)
    runner = Runner.from_cfg(cfg)
    t1 = time.time()
    runner.train()
    t_train = time.time() - t1
    metrics = runner.val()
    t_eval = time.time() - t1 - t_train
    print(f"training {t_train:.1f}s, evaluation {t_eval:.1f}s")

    # CocoMetric returns nothing when the model detects nothing at all (e.g. after --quick)
    bbox_map = float(metrics.get("coco/bbox_mAP", 0.0))
    bbox_map50 = float(metrics.get("coco/bbox_mAP_50", 0.0))
    state_dict = plain_state_dict(runner.model)
    ckpt = {
        "state_dict": state_dict,
        "meta": {
            "dataset_meta": {"classes": list(CLASSES)},
            "mmdet_version": mmdet.__version__,
            "config": CONFIG.name,
            "bbox_mAP": bbox_map,
            "bbox_mAP_50": bbox_map50,
            "seed": args.seed,
            "iters": args.iters,
            "num_train": args.num_train,
            "num_val": args.num_val,
        },
    }
    torch.save(ckpt, out)
    size = out.stat().st_size
    torch.load(out, weights_only=True)  # fail loudly if anything but plain types slipped in
    print(f"wrote {out} ({size / 1e6:.2f} MB)")
    if size > MAX_CKPT_BYTES:
        print(f"WARNING: checkpoint larger than {MAX_CKPT_BYTES} bytes", file=sys.stderr)

    png, ann_json = write_demo_scene(out.parent)
    demo = demo_scene_check(runner.model, cfg, png, ann_json)
    print(f"demo scene {png}: best same-class IoU>0.5 scores {demo['best_scores']}")

    report = {
        "bbox_mAP": bbox_map,
        "bbox_mAP_50": bbox_map50,
        "coco_metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, int | float | np.floating)},
        "demo_scene": demo,
        "checkpoint": out.name,
        "checkpoint_bytes": size,
        "train": {
            "config": CONFIG.name,
            "seed": args.seed,
            "iters": args.iters,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "num_train": args.num_train,
            "train_size_hw": list(TRAIN_SIZE),
            "num_val": args.num_val,
            "val_size_hw": list(VAL_SIZE),
            "scene_kwargs": SCENE_KWARGS,
            "torch_threads": torch.get_num_threads(),
            "data_seconds": round(t_data, 1),
            "train_seconds": round(t_train, 1),
            "eval_seconds": round(t_eval, 1),
            "torch_version": torch.__version__,
            "mmdet_version": mmdet.__version__,
        },
    }
    metrics_path = out.with_name(f"{out.stem}_metrics.json")
    metrics_path.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in ("bbox_mAP", "bbox_mAP_50")}))
    print(f"wrote {metrics_path}")
    if not args.keep_data:
        shutil.rmtree(data_dir, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
