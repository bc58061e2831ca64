"""Every config group option composes into the typed schema; bad overrides fail in Hydra."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from featvis_run.errors import ConfigError
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.modes import ReducerName
from featvis_run.schema import Config, RecorderType, register_configs

from .conftest import CONF_DIR

register_configs()


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def _compose(*overrides: str) -> Config:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    return OmegaConf.to_object(cfg)


GROUPS = ("model", "recorder", "reducer", "layout", "output", "experiment", "cache")
GROUP_OPTIONS = [(g, o) for g in GROUPS for o in _options(g)]


@pytest.mark.slow  # about 40 Hydra compositions of 0.2-0.3 s: the config tree end to end
@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_every_group_option_composes_to_typed_config(group, option):
    generic = {  # the generic options need the config they run; recorder=mmrazor its vis_config file
        ("model", "mmdet"): ["model.mmdet_config=atss/atss_r50_fpn_1x_coco.py"],
        ("model", "mmseg"): ["model.config=segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py"],
        ("model", "mmpretrain"): ["model.config=resnet/resnet18_8xb32_in1k.py"],
        ("model", "mmpose"): [
            "model.config=body_2d_keypoint/topdown_heatmap/coco/td-hm_res50_8xb64-210e_coco-256x192.py"
        ],
        ("recorder", "mmrazor"): ["recorder.file=tests/vis_configs/fpn_feature_visualization.py"],
    }.get((group, option), [])
    cfg = _compose(f"{group}={option}", *generic)
    assert isinstance(cfg, Config)
    node = getattr(cfg, group)
    if group == "model":  # a model is reported by its config's file stem; other than detectors, models record stages
        ref = node.config or node.mmdet_config
        assert node.name == Path(ref).stem.removesuffix("_config")
        expected = {("mmdet", "fpn"), ("mmseg", "backbone"), ("mmpretrain", "backbone"), ("mmpose", "backbone")}
        assert (node.repo, cfg.recorder.name) in expected
    else:
        assert node.name == option if hasattr(node, "name") else node.enabled == (option == "on")
    assert DrawSettings.from_config(cfg).fmt in ("png", "jpg")


def test_defaults():
    cfg = _compose()
    assert cfg.model.name == "demo_shapes" and cfg.recorder.name == "fpn" and cfg.model.checkpoint.startswith("pkg://")
    assert cfg.reducer.name is ReducerName.squeeze_mean and cfg.output.overlaid and cfg.output.alpha == 0.5
    recorders, mappings = cfg.recorder.parsed()
    assert recorders["neck"].type is RecorderType.module_outputs and recorders["neck"].source == "neck"
    assert mappings == {} and recorders["neck"].level_prefix == "p"  # every neck output, named by stride


@pytest.mark.slow  # reads every named option's config from the installed libraries
def test_model_options_name_configs_that_exist_in_the_installed_libraries():
    from featvis_run.models.registry import adapter_for
    from featvis_run.schema import config_reference

    for option in set(_options("model")) - {"mmdet", "mmseg", "mmpretrain", "mmpose"}:
        cfg = _compose(f"model={option}")
        ref, where = config_reference(cfg.model)
        assert Path(adapter_for(cfg.model.repo).resolve_config(ref, where)).is_file(), option


def test_sweepable_plain_keys_and_nested_overrides():
    cfg = _compose("reducer=none", "topk=8", "use_norm=true", "layout.arrangement=[2,4]", "output.alpha=0.3")
    assert cfg.topk == 8 and cfg.use_norm and cfg.layout.arrangement == [2, 4] and cfg.output.alpha == 0.3
    s = DrawSettings.from_config(cfg)
    assert s.render.arrangement == (2, 4) and s.reducer == "none"


@pytest.mark.parametrize(
    ("override", "error", "message"),
    [
        ("output.alpha=abc", ConfigCompositionException, "Error merging override output.alpha=abc"),
        ("topk=x", ConfigCompositionException, "Error merging override topk=x"),
        ("output.alhpa=0.3", ConfigCompositionException, "Could not override 'output.alhpa'"),
        ("reducer=median", MissingConfigException, "Could not find 'reducer/median'"),
        ("model.device=[1]", ConfigCompositionException, "Error merging override model.device=[1]"),
        ("use_norm=maybe", ConfigCompositionException, "Error merging override use_norm=maybe"),
    ],
)
def test_bad_overrides_fail_at_composition(override, error, message):
    with pytest.raises(error) as info:
        _compose(override)
    assert message in str(info.value)


def test_recorder_accepts_user_defined_recorders_from_command_line():
    cfg = _compose(
        "recorder=backbone",
        "+recorder.recorders.head={type:method_outputs,source:mmdet.models.dense_heads.RetinaHead.forward_single}",
        "+recorder.mappings.head_cls={recorder:head,data_idx:0,record_idx:2}",
    )
    recorders, mappings = cfg.recorder.parsed()
    assert recorders["head"].type is RecorderType.method_outputs
    assert list(mappings) == ["head_cls"] and mappings["head_cls"].record_idx == 2
    assert recorders["backbone"].level_prefix == "c"  # the preset's own levels are still named by stride


def test_custom_recorder_records_only_what_the_user_adds():
    with pytest.raises(ConfigError, match=r"recorder=custom records nothing; add one, e.g. '\+recorder.recorders"):
        _compose("recorder=custom").recorder.parsed()
    cfg = _compose("recorder=custom", "+recorder.recorders.r3={type:module_outputs,source:backbone.layer3}")
    recorders, mappings = cfg.recorder.parsed()
    assert list(recorders) == ["r3"] and mappings == {}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("+recorder.recorders.x={type:module_output,source:neck}", r"recorder.recorders.x.type='module_output'"),
        ("+recorder.recorders.x={source:neck,layer:1}", r"recorder.recorders.x has unknown key\(s\) layer"),
        ("+recorder.mappings.y={data_idx:1}", r"recorder.mappings.y needs recorder"),
    ],
)
def test_bad_recorder_entries_name_the_key(override, message):
    from featvis_run.errors import ConfigError

    cfg = _compose(override)
    with pytest.raises(ConfigError, match=message):
        cfg.recorder.parsed()


def test_colour_scale_array_and_box_options_compose():
    s = DrawSettings.from_config(_compose())
    assert (s.scale.mode, s.scale.fixed, s.scale.clip_percentile) == ("per_map", None, None)
    assert (s.save_arrays, s.render.colorbar, s.render.max_boxes, s.render.value_range) == ("none", False, 20, None)
    cfg = _compose(
        "output.scale=fixed",
        "output.scale_range=[-1,2.5]",
        "output.clip_percentile=99",
        "output.colorbar=true",
        "output.save_arrays=both",
        "output.max_boxes=null",
    )
    s = DrawSettings.from_config(cfg)
    assert (s.scale.mode, s.scale.fixed, s.scale.clip_percentile) == ("fixed", (-1.0, 2.5), 99.0)
    assert s.save_maps and s.save_features and s.render.colorbar and s.render.max_boxes is None
    assert DrawSettings.from_config(_compose("output.scale=per_level")).scale.needs_stats
    assert not DrawSettings.from_config(_compose("output.scale=per_image")).scale.needs_stats
    assert DrawSettings.from_config(_compose("output.save_arrays=maps")).save_maps


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["output.scale=fixed"], r"output.scale=fixed needs output.scale_range=\[lo, hi\]"),
        (["output.scale=fixed", "output.scale_range=[2,1]"], "lo < hi"),
        (["output.scale_range=[0,1]"], "used only with output.scale=fixed"),
        (["output.clip_percentile=40"], r"output.clip_percentile=40.0 must be within \(50, 100\]"),
        (["output.max_boxes=-1"], "output.max_boxes=-1"),
    ],
)
def test_impossible_scale_options_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        DrawSettings.from_config(_compose(*overrides))


@pytest.mark.parametrize("override", ["output.scale=per_pixel", "output.save_arrays=all"])
def test_unknown_scale_and_export_values_fail_at_composition(override):
    with pytest.raises(ConfigCompositionException):
        _compose(override)
