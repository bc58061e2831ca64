"""Config files are Python that mmengine runs: one that cannot be read, or cfg-options that cannot be merged into
one, is a one-line error naming the file or the option and the underlying reason."""

from __future__ import annotations

from pathlib import Path

import pytest

from featvis_run.errors import ConfigError, ModelError
from featvis_run.models.openmmlab import device_type
from featvis_run.models.registry import adapter_for
from featvis_run.recording.mmrazor import load_vis_config
from featvis_run.schema import ModelConfig


def test_a_vis_config_with_a_syntax_error_names_the_file_and_the_line(tmp_path, monkeypatch):
    bad = tmp_path / "vis.py"
    bad.write_text("recorders = dict(\n    neck=dict(type='ModuleOutputs', source='neck'),\nmappings = dict()\n")
    with pytest.raises(ConfigError) as info:
        load_vis_config(str(bad))
    # the parenthesis opened on line 1 is never closed (Python 3.10+ reports where it opened)
    assert str(info.value) == (
        f"recorder.file={str(bad)!r} cannot be read as an mmengine config: SyntaxError: '(' was never closed at line 1"
    )
    monkeypatch.chdir(tmp_path)  # a relative path also gets the file's full path
    with pytest.raises(ConfigError) as info:
        load_vis_config("vis.py")
    assert str(info.value).startswith(f"recorder.file='vis.py' ({bad}) cannot be read as an mmengine config: ")


def test_a_vis_config_that_raises_gives_the_exception_on_one_line(tmp_path):
    bad = tmp_path / "raises.py"
    bad.write_text("recorders = {}\nraise RuntimeError('first\\n   second')\n")
    with pytest.raises(ConfigError) as info:
        load_vis_config(str(bad))
    assert str(info.value) == (
        f"recorder.file={str(bad)!r} cannot be read as an mmengine config: RuntimeError: first second"
    )


def _plan(tiny_config: Path, options: list[str]):
    return adapter_for("mmdet").plan(ModelConfig(name="tiny", mmdet_config=str(tiny_config), cfg_options=options))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # score_thr is a number in the config: a dict cannot be merged into it
        (
            ["model.test_cfg.score_thr.x=1"],
            "model.cfg_options=['model.test_cfg.score_thr.x=1'] cannot be merged into "
            "the config: TypeError: score_thr={'x': 1} in child config cannot inherit from base because score_thr is a "
            "dict in the child config but is of type <class 'float'> in base config. You may set `_delete_=True` to "
            "ignore the base config.",
        ),
        # test_pipeline is a list: a name is no index
        (
            ["test_pipeline.x=1"],
            "model.cfg_options=['test_pipeline.x=1'] cannot be merged into the config: "
            "TypeError: list indices must be integers or slices, not str",
        ),
        (
            ["model=3"],
            "model.cfg_options=['model=3'] leaves the config's model as 3, not a dict; set keys inside it, "
            "e.g. 'model.bbox_head.num_classes=3'",
        ),
    ],
)
def test_cfg_options_that_do_not_merge_are_one_line(tiny_config, options, message):
    with pytest.raises(ModelError) as info:
        _plan(tiny_config, options)
    assert str(info.value) == message


def test_cfg_options_that_merge_still_apply(tiny_config):
    plan = _plan(tiny_config, ["model.test_cfg.score_thr=0.07", "model.bbox_head.num_classes=5"])
    assert plan.cfg.model.test_cfg.score_thr == 0.07 and plan.cfg.model.bbox_head.num_classes == 5


@pytest.mark.parametrize("device", ["mps", "xpu:0", "meta", "cuda:", "CPU", "cuda:-1"])
def test_devices_other_than_cpu_and_cuda_are_refused_when_planning(device):
    with pytest.raises(ModelError) as info:
        device_type(device, "model_b")
    assert str(info.value) == (
        f"model_b.device={device!r} is not one of cpu, cuda, cuda:<n>; use model_b.device=cpu (or "
        "model_b.device=cuda:0 with a CUDA GPU)"
    )
    assert [device_type(d) for d in ("cpu", "cuda", "cuda:0", "cuda:12")] == ["cpu", "cuda", "cuda", "cuda"]
