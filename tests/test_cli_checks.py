"""The command-line checks before Hydra (featvis_run.cli_checks): one line, exit code 2, the valid values named; and
every valid command line (sweeps, functions, +key, ~key, hydra.*, packages, interpolations, quoted paths) let through.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from featvis_run.cli_args import prepare_argv
from featvis_run.cli_checks import check_command_line

from .conftest import console_script


def check(*args: str) -> str | None:
    """What the console script does before Hydra: shorthands and path quoting, then the checks."""
    return check_command_line(prepare_argv(list(args)))


@pytest.fixture()
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sbatch and srun on PATH (they are never run by the checks)."""
    folder = tmp_path / "slurm-bin"
    folder.mkdir()
    for tool in ("sbatch", "srun"):
        (folder / tool).write_text("#!/bin/sh\nexit 1\n")
        (folder / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))


VALID = [
    ["reducer=select_max", "topk=8", "layout=grid_2x4", "output=heatmap"],
    ["-m", "reducer=select_max,squeeze_mean", "output.scale=per_map,per_level"],
    ["reducer=none", "topk=8", "--multirun", "topk=4,8"],  # -m anywhere
    ["-m", "topk=range(2,10,2)", "output.alpha=interval(0.1,0.9)", "reducer=glob(s*)"],
    ["-m", "reducer=choice(none,gradcam)", "output.format=png,jpg", "model.device=cpu,cuda:1"],
    ["model.device=cuda", "model.device=cuda:0", "output.format=jpg", "output.scale=fixed", "output.scale_range=[0,1]"],
    ["+recorder.recorders.head={type:method_outputs,source:mmdet.models.dense_heads.RetinaHead.forward_single}"],
    ["+recorder.mappings.h={recorder:head,data_idx:0}", "recorder.recorders.neck.source=backbone.layer3"],
    ["~image", "++topk=3", "+recorder@recorder_b=backbone"],
    ["hydra.sweep.dir=/tmp/s", "hydra/launcher=parallel", "hydra.launcher.n_jobs=3", "hydra.verbose=true"],
    ["experiment=diff", "model@model_a=retinanet_r101", "model@model_b=demo_shapes", "model_a.checkpoint=/x/a b.pth"],
    ["model_b.device=cpu", "model_a.cfg_options=[model.test_cfg.score_thr=0.0]", "model.test_scale=[512,256]"],
    ["output.dir=${oc.env:HOME}/x", "topk=${oc.decode:'5'}", "output.alpha='0.5'", "use_norm=True"],
    ["output.dir=/tmp/a=b(1) ü/[x]", "image=/tmp/photo #1.jpg", "images=a.jpg,b.jpg", "-m"],
    ["images.paths=[a.jpg,b.jpg]", "images.limit=3", "images.shard=0/4", "checkpoints=/w/epoch_*.pth"],
    ["recorder=mmrazor", "recorder.file=/tmp/vis.py", "model.cfg_options=['a=1']", "target=class:circle"],
    ["output.resize_shape=null", "output.max_boxes=null", "cache=off", "cache.max_gb=0.5", "model=null"],
    ["--cfg", "job", "reducer=none"],
    ["--info", "config", "topk=3"],
    ["hydra.searchpath=[file:///tmp/my-conf]", "model=my_own_model"],  # options of the user's own config folder
    ["mode=layers", "debug=true", "experiment=checkpoints", "experiment.frame_ms=300", "output.colorbar=true"],
]


@pytest.mark.parametrize("args", VALID, ids=[" ".join(a)[:60] for a in VALID])
def test_valid_command_lines_pass(args):
    assert check(*args) is None


def test_valid_slurm_sweep_passes_where_slurm_is_installed(fake_slurm):
    assert check("-m", "hydra/launcher=slurm", "reducer=none,select_max", "hydra.launcher.partition=gpu") is None


# expected lines written by hand from the schema and conf/
BAD = [
    (
        ["model.device=mps"],
        "model.device='mps' is not one of cpu, cuda, cuda:<n>; use model.device=cpu (or "
        "model.device=cuda:0 with a CUDA GPU)",
    ),
    (
        ["model_a.device=xpu:0"],
        "model_a.device='xpu:0' is not one of cpu, cuda, cuda:<n>; use model_a.device=cpu "
        "(or model_a.device=cuda:0 with a CUDA GPU)",
    ),
    (
        ["-m", "model.device=cpu,meta"],
        "model.device='meta' is not one of cpu, cuda, cuda:<n>; use model.device=cpu "
        "(or model.device=cuda:0 with a CUDA GPU)",
    ),
    (["output.format=gif"], "output.format='gif' is not one of png, jpg; use output.format=png"),
    (["output.format=jpeg"], "output.format='jpeg' is not one of png, jpg; use output.format=jpg"),
    (
        ["output.scale=perlevel"],
        "output.scale='perlevel' is not one of per_map, per_image, per_level, per_run, "
        "fixed; use output.scale=per_level",
    ),
    (
        ["reducer=selectmax"],
        "reducer='selectmax' is not a reducer option; did you mean reducer=select_max? "
        "(options: eigencam, gradcam, none, pixel_wise_max, select_max, squeeze_mean)",
    ),
    (
        ["-m", "reducer=none,selectmax"],
        "reducer='selectmax' is not a reducer option; did you mean "
        "reducer=select_max? (options: eigencam, gradcam, none, pixel_wise_max, select_max, squeeze_mean)",
    ),
    (
        ["model@model_a=retinanet_r5"],
        "model@model_a='retinanet_r5' is not a model option; did you mean "
        "model@model_a=retinanet_r50? (options: convnext_t_in1k, deformable_detr_r50, demo_shapes, detr_r50, dino_r50, "
        "faster_rcnn_r50, fcos_r50, hrnet_w32_coco, mask_rcnn_r50, mmdet, mmpose, mmpretrain, mmseg, "
        "mobilenet_v2_in1k, pspnet_r50, resnet50_in1k, retinanet_r101, retinanet_r50, retinanet_swin_t, rtmdet_s, "
        "segformer_b0, simplebaseline_r50_coco, swin_t_in1k, vit_b16_in1k, yolov3_d53, yolox_s)",
    ),
    (["reducr=none"], "reducr=none: there is no option reducr; did you mean reducer=none?"),
    (["output.alhpa=0.3"], "output.alhpa=0.3: there is no option output.alhpa; did you mean output.alpha=0.3?"),
    (["ouptut.alpha=0.3"], "ouptut.alpha=0.3: there is no option ouptut.alpha; did you mean output.alpha=0.3?"),
    (["cache.zzz=1"], "cache.zzz=1: there is no option cache.zzz (options of cache: enabled, dir, max_gb)"),
    (
        ["topk=4,8"],
        "topk=4,8 gives several values, which is a sweep: add -m to run one job per value "
        "(featvis-run -m ... topk=4,8), or give one value",
    ),
    (
        ["reducer=none,gradcam"],
        "reducer=none,gradcam gives several values, which is a sweep: add -m to run one job "
        "per value (featvis-run -m ... reducer=none,gradcam), or give one value",
    ),
    (
        ["output.resize_shape=3,4"],
        "output.resize_shape=3,4 gives several values, which is a sweep: add -m to run one "
        "job per value (featvis-run -m ... output.resize_shape=3,4), or give one value, or write a list as "
        "output.resize_shape=[3,4]",
    ),
    (["topk=x"], "topk='x' is not a whole number; e.g. topk=20"),
    (["-m", "topk=4,x"], "topk='x' is not a whole number; e.g. topk=20"),
    (["output.alpha=abc"], "output.alpha='abc' is not a number; e.g. output.alpha=0.5"),
    (["use_norm=maybe"], "use_norm='maybe' is not true or false; e.g. use_norm=false"),
    (["images.limit=all"], "images.limit='all' is not a whole number"),
]


@pytest.mark.parametrize(("args", "line"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_values_keys_and_options_are_one_line_naming_the_fix(args, line):
    assert check(*args) == line


def test_the_first_bad_override_is_reported_after_valid_ones():
    assert check("reducer=none", "topk=8", "output.format=gif", "topk=x") == (
        "output.format='gif' is not one of png, jpg; use output.format=png"
    )


def test_a_slurm_sweep_without_slurm_says_how_to_run_locally(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    line = (
        "hydra/launcher=slurm needs SLURM, but sbatch and srun are not on PATH (no SLURM on this machine); run the "
        "sweep here instead: drop hydra/launcher=slurm (one job after another) or use hydra/launcher=parallel "
        "(joblib, jobs side by side)"
    )
    assert check("-m", "hydra/launcher=slurm", "reducer=none,select_max") == line
    assert check("hydra/launcher=slurm", "--cfg", "hydra") is None  # no sweep: the launcher is not used


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([console_script(), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["model.device=meta"],
            "model.device='meta' is not one of cpu, cuda, cuda:<n>; use model.device=cpu (or "
            "model.device=cuda:0 with a CUDA GPU)",
        ),
        (["output.format=gif"], "output.format='gif' is not one of png, jpg; use output.format=png"),
        (
            ["reducer=selectmax"],
            "reducer='selectmax' is not a reducer option; did you mean reducer=select_max? "
            "(options: eigencam, gradcam, none, pixel_wise_max, select_max, squeeze_mean)",
        ),
        (
            ["topk=4,8"],
            "topk=4,8 gives several values, which is a sweep: add -m to run one job per value "
            "(featvis-run -m ... topk=4,8), or give one value",
        ),
    ],
)
def test_the_console_script_exits_2_with_one_line(args, line, tmp_path):
    proc = run(*args, f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert (proc.returncode, proc.stderr, proc.stdout) == (2, f"featvis-run: error: {line}\n", "")
    assert not (tmp_path / "out").exists() and not (tmp_path / "outputs").exists()  # refused before Hydra ran


def test_the_console_script_accepts_valid_overrides(tmp_path):
    proc = run(
        "experiment=diff", "model@model_a=demo_shapes", f"output.dir={tmp_path / 'a=b(1) ü'}", "topk=${oc.decode:'5'}",
        "+recorder.recorders.x={type:module_outputs,source:neck}", "model_b.device=cuda:1", "--cfg", "job",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "device: cuda:1" in proc.stdout and "source: neck" in proc.stdout and "a=b(1) ü" in proc.stdout
