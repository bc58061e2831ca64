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
    "AnalysisConfig",
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
    stage_outputs = "stage_outputs"  # a backbone's stages: the last map of each size its parts output (classifiers)


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

    #: The name the model is reported by (summary, manifest, panels); the model options set it to the config's
    #: file stem, e.g. retinanet_r50_fpn_2x_coco.
    name: str = MISSING
    #: An mmdet config, the same thing as model.config (kept for mmdet users): a path under the installed
    #: library's configs folder (atss/atss_r50_fpn_1x_coco.py), a file name packaged with it, or a path of yours.
    mmdet_config: str | None = None
    #: The model's config: a path under the installed library's configs folder, a file name packaged with it, or
    #: a path of yours (config files are Python code: use only configs you trust).
    config: str | None = None
    #: The OpenMMLab library of the model (as MMRazor's --repo): mmdet or mmseg; the model options set it.
    repo: str = "mmdet"
    #: A local checkpoint file; null: seeded random init (said loudly). Loaded weights-only after a scan.
    checkpoint: str | None = None
    #: Load a checkpoint the weights-only scan refuses with plain torch.load (runs code in the file: only for
    #: files you trust).
    trust_checkpoint: bool = False
    #: Accept a checkpoint that sets fewer than 90% of the model's tensors or leaves more than 10% of its own
    #: unused (a loud PARTIAL CHECKPOINT note).
    partial_checkpoint: bool = False
    #: Where the model runs: cpu, cuda or cuda:<n>.
    device: str = "cpu"
    #: Seed of the random init used when there is no checkpoint.
    seed: int = 0
    #: [long, short] side of the test pipeline's Resize (a smaller scale runs faster on a CPU); null: the
    #: config's own.
    test_scale: list[int] | None = None
    #: mmengine --cfg-options strings merged into the model config, e.g. ["model.test_cfg.score_thr=0.5"].
    cfg_options: list[str] = field(default_factory=list)
    #: Pose models (repo=mmpose): person boxes [[x1, y1, x2, y2], ...] in original pixels; each image is drawn once per
    #: box, as <image>_box<i>. null: the whole image is the box.
    bboxes: list[Any] | None = None


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

    #: What is recorded: module_outputs, module_inputs, method_outputs, method_inputs, function_outputs,
    #: function_inputs, parameter (a 4-D weight: its first filter) or encoder_memory (a DETR-family encoder's
    #: memory, split into one map per level).
    type: RecorderType = RecorderType.module_outputs
    #: A module's dotted name (neck, backbone.layer3), a method or function by import path
    #: (mmdet.models.dense_heads.RetinaHead.forward_single), or a parameter's name.
    source: str = MISSING
    #: Names the maps of a recorder without mappings by stride (p: p3 is the map at stride 8); null: by position.
    level_prefix: str | None = None


@dataclass
class MappingSpec:
    """Names one recorded map: which recorder, which call (``record_idx``), which element (``data_idx``: an index,
    or a path into nested outputs such as ``'1.0'`` or ``memory``). A (B, L, C) token tensor is laid on its grid:
    ``grid`` [H, W] when given, else the grid the output carries or the one its stride implies, after dropping
    ``extra_tokens`` leading (class/distillation) tokens."""

    #: The name of the recorder (a key of recorder.recorders) whose record this mapping takes.
    recorder: str = MISSING
    #: Which element of the recorded value: an index, or a path into nested outputs ('1.0', memory, [1, 0]);
    #: null: the value itself.
    data_idx: Any = None
    #: Which call of the recorder (negative counts from the end).
    record_idx: int = 0
    #: [H, W] grid of a (B, L, C) token output; null: the grid the output carries or its stride implies.
    grid: list[int] | None = None
    #: Leading class/distillation tokens dropped before laying tokens on their grid.
    extra_tokens: int = 0


@dataclass
class RecorderConfig:
    """Named recorders and named mappings (levels). Entries are plain dicts so that new ones can be added from
    the command line (``+recorder.recorders.head={type:method_outputs,source:...}``); :meth:`parsed` validates
    them into :class:`RecorderSpec` / :class:`MappingSpec`."""

    #: The recorder option's name (fpn, backbone, encoder, decode_head, mmrazor, custom).
    name: str = MISSING
    #: Named recorders: name -> {type, source, level_prefix} (see recorder.recorders.<name>.* below).
    recorders: dict[str, Any] = field(default_factory=dict)
    #: Named maps (levels): name -> {recorder, data_idx, record_idx, grid, extra_tokens}; empty: every map of
    #: each recorder's first call, named by stride.
    mappings: dict[str, Any] = field(default_factory=dict)
    #: An MMRazor vis_config file (recorder=mmrazor): its recorders and mappings are used (Python code: use only
    #: files you trust).
    file: str | None = None

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
    """How the C channels of a map become a picture (the ``reducer`` group)."""

    #: pixel_wise_max (max over channels), squeeze_mean (mean), select_max (the channel with the largest spatial
    #: sum), none (the topk channels in a grid), gradcam (Grad-CAM of target), eigencam (first principal component).
    name: ReducerName = ReducerName.squeeze_mean


@dataclass
class LayoutConfig:
    """Top-k grid layout: ``arrangement`` is [rows, cols]; null picks a near-square grid."""

    #: The layout option's name (auto, grid_2x4, grid_4x5).
    name: str = MISSING
    #: [rows, cols] of a top-k grid; null: a near-square grid chosen from topk.
    arrangement: list[int] | None = None
    #: Bare (not overlaid) tiles are enlarged until their short side is at least this many pixels.
    min_tile: int = 64
    #: Long side (px) of an overlaid tile: the picture is shrunk to it in grids; null keeps the image size.
    max_tile: int | None = 320
    #: Pixels between tiles.
    gap: int = 2
    #: Label each tile with its channel index.
    label: bool = True


@dataclass
class OutputConfig:
    """How and where pictures are written (the ``output`` group: overlay or heatmap)."""

    #: The output option's name (overlay, heatmap).
    name: str = MISSING
    #: The run folder (pictures, manifest.json, index.html); null: a new dated folder outputs/<date>/<time>.
    dir: str | None = None
    #: Replace a run with other settings in output.dir (only the files it recorded are removed).
    overwrite: bool = False
    #: Blend each map on the input image (false: the map alone).
    overlaid: bool = True
    #: Weight of the heatmap in the blend: (1 - alpha) * image + alpha * heatmap, in [0, 1].
    alpha: float = 0.5
    #: [height, width] of every picture; null keeps the input image's size.
    resize_shape: list[int] | None = None
    #: An OpenCV colormap name (jet, turbo, viridis, inferno, ...).
    colormap: str = "jet"
    #: Draw the model's predictions on single overlays: a detector's boxes, a segmentor's class map with a legend.
    draw_predictions: bool = True
    #: Draw a detector's boxes (false turns them off even with draw_predictions).
    draw_boxes: bool = True
    #: Boxes (and Grad-CAM targets class:/all) scoring below this are left out.
    pred_score_thr: float = 0.3
    #: Picture file format: png or jpg.
    format: ImageFormat = ImageFormat.png
    #: A map drawn without an image is enlarged (integer factor) until its short side is at least this.
    min_size: int = 128
    #: Which maps share one colour range: per_map, per_image, per_level (over the run), per_run, fixed.
    scale: ScaleMode = ScaleMode.per_map
    #: [lo, hi] of output.scale=fixed.
    scale_range: list[float] | None = None
    #: p in (50, 100]: ranges from the (100-p)-th to the p-th percentile of the values; null: min..max.
    clip_percentile: float | None = None
    #: A labelled colour bar beside each picture.
    colorbar: bool = False
    #: .npy files next to each picture: none, maps (the drawn map), features (the recorded map) or both.
    save_arrays: ArrayExport = ArrayExport.none
    #: Detector boxes drawn per picture, the best by score; null: all.
    max_boxes: int | None = 20
    #: Ground-truth boxes (images.annotations) drawn in magenta on single maps; null: on when annotations are given.
    draw_gt: bool | None = None
    #: What is stored of each map: composite (image-sized pictures), maps (the reduced map at feature resolution as
    #: <level>.npy, float32, and the input image once as <image>/image.jpg; the report page draws them) or both;
    #: null: the experiment's default (single, diff, checkpoints: both; multi_image: maps).
    pictures: PicturesMode | None = None
    #: A caption band above each picture: layer/level, and the colour range (checkpoint frames: the checkpoint).
    caption: bool = True


@dataclass
class ExperimentConfig:
    """``single``, ``multi_image``, ``diff`` or ``checkpoints``, with their options."""

    #: What runs: single, multi_image, diff or checkpoints.
    name: str = "single"
    #: multi_image: one sheet per layer and level with every image's map side by side (contact/<layer>/<level>.png).
    contact_sheet: bool = True
    #: Height in pixels of each image's tile on a contact sheet.
    contact_tile: int = 240
    #: diff: abs (|A - B|, as MMRazor), signed (A - B, centred on 0) or relative (|A - B| / (|A| + |B|)).
    diff_mode: DiffMode = DiffMode.abs
    #: checkpoints: how long each frame of a level's GIF shows, in milliseconds.
    frame_ms: int = 700


@dataclass
class CacheConfig:
    """The activation cache: recorded maps on disk, reused by runs that change only how maps are drawn."""

    #: Read and write the cache (cache=off: always run the model).
    enabled: bool = True
    #: Cache folder (put it on a filesystem every node sees for SLURM sweeps).
    dir: str = "outputs/cache"
    #: Size bound in GB: past it the least recently used entries are evicted; null: no bound.
    max_gb: float | None = 4.0


@dataclass
class ImagesConfig:
    """Inputs of ``experiment=multi_image`` (and a list for ``diff``): ``paths`` is a file, folder (searched
    recursively), glob, or a list of those; ``images=...`` on the command line is short for ``images.paths=...``.
    ``limit`` keeps the first N (sorted), then ``shard: i/n`` keeps every n-th from the i-th (0-based).
    ``max_pixels`` (also for ``image=``) refuses larger inputs from their header, before they are decoded."""

    #: A file, a folder (searched recursively), a glob, or a list of those (images=X is short for images.paths=X).
    paths: Any = None
    #: Keep the first N images (sorted); null: all.
    limit: int | None = None
    #: i/n: keep every n-th image from the i-th (0-based), to split a folder across jobs.
    shard: str | None = None
    #: Images per forward pass (measured with make bench: on a 2-core CPU 1 is as fast as 2).
    batch_size: int = 1
    #: Refuse larger images from their header, before decoding (a run holds about 40 bytes per input pixel: 50 MP
    #: is about 2 GB on top of the model); null: no limit.
    max_pixels: int | None = 50_000_000
    #: a COCO json of the images' boxes: images matched by file_name (path under the images folder, or basename)
    annotations: str | None = None
    #: an mmdet dataset config (Python: code, as model configs): its test split's ann_file and image folder
    dataset: str | None = None
    #: keep only the images whose annotations hold any of these classes, e.g. [circle, square]
    classes: list[str] | None = None


@dataclass
class AnalysisConfig:
    """Numbers over a run: channel statistics, a channel atlas, explanation metrics (Grad-CAM, EigenCAM)."""

    #: per-channel statistics of every recorded level over the run, written to channels.csv
    channels: bool = False
    #: channel atlas: the N images where each channel fires most (0: off)
    top_images: int = 0
    #: explanation metrics: pixels removed / revealed in this many steps (deletion and insertion curves)
    steps: int = 20
    #: explanation metrics: also score a seeded random map (random), or not (null)
    baseline: str | None = None
    #: explanation metrics of reducer=gradcam|eigencam runs (pointing game, energy in boxes, deletion and
    #: insertion AUC); costs 2 x steps forward passes per image (twice that with baseline=random)
    metrics: bool = False


@dataclass
class Config:
    """The whole config: one node per group, and the top-level keys."""

    #: The model (group model: demo_shapes, retinanet_r50, mmdet, mmseg, ...).
    model: ModelConfig = MISSING
    #: What is recorded (group recorder: fpn, backbone, encoder, decode_head, mmrazor, custom).
    recorder: RecorderConfig = MISSING
    #: How channels become a picture (group reducer).
    reducer: ReducerConfig = MISSING
    #: Top-k grid layout (group layout).
    layout: LayoutConfig = MISSING
    #: How and where pictures are written (group output: overlay, heatmap).
    output: OutputConfig = MISSING
    #: What runs (group experiment: single, multi_image, diff, checkpoints).
    experiment: ExperimentConfig = MISSING
    #: The activation cache (group cache: on, off).
    cache: CacheConfig = MISSING
    #: The input image of experiment=single; null: the demo scene shipped with the package.
    image: str | None = None
    #: The inputs of experiment=multi_image (and a list for diff and checkpoints).
    images: ImagesConfig = field(default_factory=ImagesConfig)
    #: Numbers over the run: channel statistics, the channel atlas, explanation metrics (group analysis).
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    #: experiment=checkpoints: a checkpoint file, glob, folder (its *.pth files) or a list, run in natural order.
    checkpoints: Any = None
    #: experiment=diff: model A, with the same keys as model (model@model_a=retinanet_r101).
    model_a: ModelConfig | None = None
    #: experiment=diff: model B, with the same keys as model (model@model_b=retinanet_r50).
    model_b: ModelConfig | None = None
    #: experiment=diff: model B's own recorder (+recorder@recorder_b=backbone); null: recorder.
    recorder_b: RecorderConfig | None = None
    #: Channels drawn by reducer=none, ranked by spatial sum; -1 draws a 1- or 3-channel map as it is.
    topk: int = 20
    #: What reducer=gradcam explains: top, det:<i> (i-th by score), class:<name>, all.
    target: str = "top"
    #: Standardize each channel (mean 0, std 1) before reducing.
    use_norm: bool = False
    #: draw: render feature maps; layers: list the model's modules with their output shapes.
    mode: Mode = Mode.draw
    #: Show full tracebacks for user errors.
    debug: bool = False


def register_configs() -> None:
    """Register the root schema (``conf/config.yaml`` extends it, so every group's YAML merges into typed nodes)
    and the resolvers the YAML files use (:mod:`featvis_run.resolvers`)."""
    from hydra.core.config_store import ConfigStore

    from featvis_run.resolvers import register_resolvers

    register_resolvers()
    ConfigStore.instance().store(name="config_schema", node=Config)
