"""Typed config schema: one dataclass per Hydra config group, registered in Hydra's ConfigStore.

The YAML files under ``conf/`` extend these schemas, so a misspelt key or a value of the wrong type
(``alpha=abc``, ``topk=x``) fails when Hydra composes the config (on the command line,
:mod:`featvis_run.cli_checks` says so first, in one line).
The same dataclasses are what the runner receives (``OmegaConf.to_object``): inner code never sees a DictConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from omegaconf import MISSING

from featvis_run.errors import ConfigError
from featvis_run.maps.modes import ArrayExport, DiffMode, PicturesMode, ReducerName, ScaleMode

__all__ = [
    "ArrayExport",
    "CacheConfig",
    "Config",
    "DiffMode",
    "ImagesConfig",
    "ExperimentConfig",
    "ImageFormat",
    "LayoutConfig",
    "MappingSpec",
    "Mode",
    "ModelConfig",
    "OutputConfig",
    "PicturesMode",
    "RecorderConfig",
    "RecorderSpec",
    "RecorderType",
    "ReducerConfig",
    "ReducerName",
    "ScaleMode",
    "register_configs",
]


class RecorderType(str, Enum):
    """What a recorder captures, after MMRazor's recorder types."""

    module_outputs = "module_outputs"
    module_inputs = "module_inputs"
    method_outputs = "method_outputs"
    method_inputs = "method_inputs"
    function_outputs = "function_outputs"
    function_inputs = "function_inputs"
    parameter = "parameter"  # a parameter of the model by name (drawn when 4-D, as MMRazor: its first filter)
    encoder_memory = "encoder_memory"  # a DETR-family encoder's memory, split back into one map per level


class ImageFormat(str, Enum):
    png = "png"
    jpg = "jpg"


class Mode(str, Enum):
    """``draw`` renders feature maps; ``layers`` lists the model's modules with their output shapes."""

    draw = "draw"
    layers = "layers"


@dataclass
class ModelConfig:
    """A model of an OpenMMLab library (``repo``): its config (packaged with the library, or a path) and an
    optional local checkpoint."""

    name: str = MISSING
    mmdet_config: str | None = None  # an mmdet config (kept for mmdet users; the same as ``config``)
    config: str | None = None  # the library's config: packaged with it (path under its configs folder, or name)
    repo: str = "mmdet"
    checkpoint: str | None = None
    trust_checkpoint: bool = False
    partial_checkpoint: bool = False
    device: str = "cpu"
    seed: int = 0
    test_scale: list[int] | None = None
    cfg_options: list[str] = field(default_factory=list)


def config_reference(mc: ModelConfig, key: str = "model") -> tuple[str, str]:
    """(the model's config reference, the config key it was given as: ``model.config`` or ``model.mmdet_config``)."""
    if mc.config and mc.mmdet_config and mc.config != mc.mmdet_config:
        raise ConfigError(
            f"{key}.config={mc.config!r} and {key}.mmdet_config={mc.mmdet_config!r} are both set; they mean the same "
            f"thing: keep one"
        )
    if mc.config:
        return mc.config, f"{key}.config"
    if mc.mmdet_config:
        return mc.mmdet_config, f"{key}.mmdet_config"
    field_name, example = (
        ("mmdet_config", "atss/atss_r50_fpn_1x_coco.py")
        if mc.repo == "mmdet"
        else ("config", "segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py")
    )
    raise ConfigError(
        f"{key}.{field_name} is not set: give a config packaged with {mc.repo} (e.g. {example}) or a path to yours"
    )


@dataclass
class RecorderSpec:
    """Records the outputs/inputs of a module (dotted name), or the outputs of a method/function (import path).

    ``level_prefix`` (e.g. ``p``, ``c``) names the maps of a recorder without mappings by stride: ``p3`` is the
    map at stride 2^3; null names them by position (``0``, ``1``, ...; ``out`` for a single tensor).
    """

    type: RecorderType = RecorderType.module_outputs
    source: str = MISSING
    level_prefix: str | None = None


@dataclass
class MappingSpec:
    """Names one recorded map: which recorder, which call (``record_idx``), which element (``data_idx``: an index,
    or a path into nested outputs such as ``'1.0'`` or ``memory``). A (B, L, C) token tensor is laid on its grid:
    ``grid`` [H, W] when given, else the grid the output carries or the one its stride implies, after dropping
    ``extra_tokens`` leading (class/distillation) tokens."""

    recorder: str = MISSING
    data_idx: Any = None
    record_idx: int = 0
    grid: list[int] | None = None
    extra_tokens: int = 0


@dataclass
class RecorderConfig:
    """Named recorders and named mappings (levels). Entries are plain dicts so that new ones can be added from
    the command line (``+recorder.recorders.head={type:method_outputs,source:...}``); :meth:`parsed` validates
    them into :class:`RecorderSpec` / :class:`MappingSpec`."""

    name: str = MISSING
    recorders: dict[str, Any] = field(default_factory=dict)
    mappings: dict[str, Any] = field(default_factory=dict)
    file: str | None = None  # an MMRazor vis_config file (recorder=mmrazor): its recorders and mappings are used

    def parsed(self) -> tuple[dict[str, RecorderSpec], dict[str, MappingSpec]]:
        """The recorders and mappings as typed specs; a ConfigError names any bad entry."""
        return parse_recorders(self.name, self.recorders, self.mappings)


def parse_recorders(
    name: str, recorders: dict[str, Any], mappings: dict[str, Any], where: str = "recorder"
) -> tuple[dict[str, RecorderSpec], dict[str, MappingSpec]]:
    """Plain recorder and mapping dicts as typed specs; a ConfigError names any bad entry (``where`` prefixes the
    keys in messages: the config group, or a vis_config file)."""
    specs = {r: _spec(RecorderSpec, f"{where}.recorders.{r}", v) for r, v in recorders.items()}
    levels = {m: _spec(MappingSpec, f"{where}.mappings.{m}", v) for m, v in mappings.items()}
    for r, spec in specs.items():
        try:
            spec.type = RecorderType(spec.type)
        except ValueError:
            valid = ", ".join(t.value for t in RecorderType)
            raise ConfigError(f"{where}.recorders.{r}.type={spec.type!r} is unknown; use one of {valid}") from None
    if not specs:
        raise ConfigError(
            f"recorder={name} records nothing; add one, e.g. "
            "'+recorder.recorders.r3={type:module_outputs,source:backbone.layer3}'"
        )
    return specs, levels


def _spec(cls: type, where: str, value: Any) -> Any:
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping like {{recorder: neck, data_idx: 0}}, got {value!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - known)
    if unknown:
        raise ConfigError(f"{where} has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}")
    missing = [f.name for f in fields(cls) if f.default == MISSING and f.name not in value]
    if missing:
        raise ConfigError(f"{where} needs {', '.join(missing)}")
    return cls(**value)


@dataclass
class ReducerConfig:
    name: ReducerName = ReducerName.squeeze_mean


@dataclass
class LayoutConfig:
    """Top-k grid layout: ``arrangement`` is [rows, cols]; null picks a near-square grid."""

    name: str = MISSING
    arrangement: list[int] | None = None
    min_tile: int = 64
    max_tile: int | None = 320
    gap: int = 2
    label: bool = True


@dataclass
class OutputConfig:
    name: str = MISSING
    dir: str | None = None
    overwrite: bool = False
    overlaid: bool = True
    alpha: float = 0.5
    resize_shape: list[int] | None = None
    colormap: str = "jet"
    draw_predictions: bool = True
    draw_boxes: bool = True
    pred_score_thr: float = 0.3
    format: ImageFormat = ImageFormat.png
    min_size: int = 128
    scale: ScaleMode = ScaleMode.per_map  # which maps share one colour range
    scale_range: list[float] | None = None  # [lo, hi] of scale=fixed
    clip_percentile: float | None = None  # p in (50, 100]: ranges from the (100-p)th to the p-th percentile
    colorbar: bool = False  # a labelled colour bar beside each picture
    save_arrays: ArrayExport = ArrayExport.none  # .npy files next to each picture: maps, features, both
    max_boxes: int | None = 20  # detector boxes drawn per picture, the best by score; null: all
    #: What is stored of each map: composite (image-sized pictures), maps (the reduced map at feature resolution as
    #: <level>.npy, float32, and the input image once as <image>/image.jpg; the report page draws them) or both;
    #: null: the experiment's default (single, diff, checkpoints: both; multi_image: maps).
    pictures: PicturesMode | None = None
    #: A caption band above each picture: layer/level, and the colour range (checkpoint frames: the checkpoint).
    caption: bool = True


@dataclass
class ExperimentConfig:
    """``single``, ``multi_image``, ``diff`` or ``checkpoints``, with their options."""

    name: str = "single"
    contact_sheet: bool = True
    contact_tile: int = 240
    diff_mode: DiffMode = DiffMode.abs
    frame_ms: int = 700  # checkpoints: how long each frame of a level's GIF shows


@dataclass
class CacheConfig:
    """The activation cache: recorded maps on disk, reused by runs that change only how maps are drawn."""

    enabled: bool = True
    dir: str = "outputs/cache"
    max_gb: float | None = 4.0


@dataclass
class ImagesConfig:
    """Inputs of ``experiment=multi_image`` (and a list for ``diff``): ``paths`` is a file, folder (searched
    recursively), glob, or a list of those; ``images=...`` on the command line is short for ``images.paths=...``.
    ``limit`` keeps the first N (sorted), then ``shard: i/n`` keeps every n-th from the i-th (0-based).
    ``max_pixels`` (also for ``image=``) refuses larger inputs from their header, before they are decoded."""

    paths: Any = None
    limit: int | None = None
    shard: str | None = None
    batch_size: int = 1  # measured (make bench): RetinaNet-R50 on CPU is ~15% faster at 1 than at 2
    # null: no limit. A run holds about 40 bytes per input pixel: 50 MP is about 2 GB on top of the model
    max_pixels: int | None = 50_000_000


@dataclass
class Config:
    model: ModelConfig = MISSING
    recorder: RecorderConfig = MISSING
    reducer: ReducerConfig = MISSING
    layout: LayoutConfig = MISSING
    output: OutputConfig = MISSING
    experiment: ExperimentConfig = MISSING
    cache: CacheConfig = MISSING
    image: str | None = None
    images: ImagesConfig = field(default_factory=ImagesConfig)
    checkpoints: Any = None  # experiment=checkpoints: a checkpoint file, glob, folder (its *.pth), or a list
    model_a: ModelConfig | None = None
    model_b: ModelConfig | None = None
    recorder_b: RecorderConfig | None = None
    topk: int = 20
    target: str = "top"
    use_norm: bool = False
    mode: Mode = Mode.draw
    debug: bool = False


def register_configs() -> None:
    """Register the root schema (``conf/config.yaml`` extends it, so every group's YAML merges into typed nodes)
    and the resolvers the YAML files use (:mod:`featvis_run.resolvers`)."""
    from hydra.core.config_store import ConfigStore

    from featvis_run.resolvers import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="config_schema", node=Config)
