"""Typed config schema: one dataclass per Hydra config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these schemas, so a misspelt key or a value of the wrong type
(``alpha=abc``, ``topk=x``) fails when Hydra composes the config, with Hydra's own message.
The same dataclasses are what the runner receives (``OmegaConf.to_object``): inner code never sees a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from omegaconf import MISSING

__all__ = [
    "Config",
    "ExperimentConfig",
    "ImageFormat",
    "LayoutConfig",
    "MappingSpec",
    "Mode",
    "ModelConfig",
    "OutputConfig",
    "RecorderConfig",
    "RecorderSpec",
    "RecorderType",
    "ReducerConfig",
    "ReducerName",
    "register_configs",
]


class RecorderType(str, Enum):
    """What a recorder captures, after MMRazor's recorder types."""

    module_outputs = "module_outputs"
    module_inputs = "module_inputs"
    method_outputs = "method_outputs"
    function_outputs = "function_outputs"


class ReducerName(str, Enum):
    """How a (C, H, W) map becomes something drawable."""

    pixel_wise_max = "pixel_wise_max"
    squeeze_mean = "squeeze_mean"
    select_max = "select_max"
    none = "none"


class ImageFormat(str, Enum):
    png = "png"
    jpg = "jpg"


class Mode(str, Enum):
    """``draw`` renders feature maps; ``layers`` lists the model's modules with their output shapes."""

    draw = "draw"
    layers = "layers"


@dataclass
class ModelConfig:
    """An mmdet detector: config (from the installed mmdet package, or a path) and optional local checkpoint."""

    name: str = MISSING
    mmdet_config: str = MISSING
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    device: str = "cpu"
    seed: int = 0
    test_scale: list[int] | None = None
    cfg_options: list[str] = field(default_factory=list)


@dataclass
class RecorderSpec:
    """Records the outputs/inputs of a module (dotted name), or the outputs of a method/function (import path)."""

    type: RecorderType = RecorderType.module_outputs
    source: str = MISSING


@dataclass
class MappingSpec:
    """Names one recorded map: which recorder, which call (``record_idx``), which tuple element (``data_idx``)."""

    recorder: str = MISSING
    data_idx: int | None = None
    record_idx: int = 0


@dataclass
class RecorderConfig:
    name: str = MISSING
    recorders: dict[str, RecorderSpec] = field(default_factory=dict)
    mappings: dict[str, MappingSpec] = field(default_factory=dict)


@dataclass
class ReducerConfig:
    name: ReducerName = ReducerName.squeeze_mean


@dataclass
class LayoutConfig:
    """Top-k grid layout: ``arrangement`` is [rows, cols]; null picks a near-square grid."""

    name: str = MISSING
    arrangement: list[int] | None = None
    min_tile: int = 64
    gap: int = 2
    label: bool = True


@dataclass
class OutputConfig:
    name: str = MISSING
    dir: str | None = None
    overlaid: bool = True
    alpha: float = 0.5
    resize_shape: list[int] | None = None
    colormap: str = "jet"
    draw_boxes: bool = True
    pred_score_thr: float = 0.3
    format: ImageFormat = ImageFormat.png
    min_size: int = 128


@dataclass
class ExperimentConfig:
    name: str = "single"


@dataclass
class Config:
    model: ModelConfig = MISSING
    recorder: RecorderConfig = MISSING
    reducer: ReducerConfig = MISSING
    layout: LayoutConfig = MISSING
    output: OutputConfig = MISSING
    experiment: ExperimentConfig = MISSING
    image: str | None = None
    topk: int = 20
    use_norm: bool = False
    mode: Mode = Mode.draw
    debug: bool = False


def register_configs() -> None:
    """Register the schemas so that the YAML files can extend them (``defaults: [<group>_schema]``)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="config_schema", node=Config)
    cs.store(group="model", name="model_schema", node=ModelConfig)
    cs.store(group="recorder", name="recorder_schema", node=RecorderConfig)
    cs.store(group="reducer", name="reducer_schema", node=ReducerConfig)
    cs.store(group="layout", name="layout_schema", node=LayoutConfig)
    cs.store(group="output", name="output_schema", node=OutputConfig)
    cs.store(group="experiment", name="experiment_schema", node=ExperimentConfig)
