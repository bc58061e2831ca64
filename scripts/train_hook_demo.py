#!/usr/bin/env python
"""``make train-hook-demo``: train the demo detector for a few iterations with ``FeatvisHook`` in its config.

Generates training scenes, writes the demo detector's training config with the two lines a user adds
(``custom_imports`` and ``custom_hooks``) to ``<work-dir>/train_config.py``, loads it back with mmengine's
``Config.fromfile`` (which imports ``featvis_run.hooks`` as it would for any mmdet config) and trains with
mmengine's ``Runner`` on the CPU. The last line printed is the hook's output folder.

Example::

    .venv/bin/python scripts/train_hook_demo.py --iters 60 --interval 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--work-dir", type=Path, default=None, help="default: outputs/train_hook_demo/<timestamp>")
    p.add_argument("--iters", type=int, default=60, help="training iterations")
    p.add_argument("--interval", type=int, default=20, help="FeatvisHook interval (iterations)")
    p.add_argument("--batch-size", type=int, default=4, help="training batch size")
    p.add_argument("--num-train", type=int, default=64, help="generated training scenes")
    p.add_argument("--size", type=int, default=256, help="side of a training scene in px")
    p.add_argument("--reducer", default="select_max", help="FeatvisHook reducer")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy machine)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    started = time.perf_counter()
    import torch
    from mmengine.config import Config
    from mmengine.runner import Runner

    from featvis_run.demo.training import demo_training_config, write_training_scenes

    torch.set_num_threads(args.threads)
    work_dir = (args.work_dir or REPO / "outputs" / "train_hook_demo" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    data_dir = write_training_scenes(work_dir / "data", args.num_train, size=args.size)
    # boxes of a model in its first iterations would cover the maps: off (output_options); the rest are defaults
    hook = dict(
        type="FeatvisHook",
        interval=args.interval,
        recorder="fpn",
        reducer=args.reducer,
        output_options=dict(draw_boxes=False),
    )
    cfg = demo_training_config(
        data_dir, work_dir, args.iters, hook, batch_size=args.batch_size, checkpoint_interval=args.interval
    )
    config_file = work_dir / "train_config.py"
    cfg.dump(str(config_file))
    cfg = Config.fromfile(str(config_file))  # imports featvis_run.hooks through custom_imports, as for any config
    Runner.from_cfg(cfg).train()
    seconds = time.perf_counter() - started
    featvis = work_dir / "featvis"
    if not (featvis / "evolution" / "manifest.json").is_file():
        sys.exit(f"train-hook-demo: FeatvisHook wrote no summary in {featvis}; see its error in the log above")
    print(f"trained {args.iters} iterations with FeatvisHook every {args.interval} in {seconds:.0f} s ({config_file})")
    print(f"per call: {featvis}/iter_N/<image>/<layer>/<level>.png; over training: {featvis}/evolution/")
    print(f"checkpoints: featvis-run experiment=checkpoints 'checkpoints={work_dir}/iter_*.pth'")
    print(featvis)
    return featvis


if __name__ == "__main__":
    main()
