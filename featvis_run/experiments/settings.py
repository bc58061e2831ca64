"""How maps are drawn in a run, validated from the config before any model is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from featvis_run.drawing.colour import colormap_id
from featvis_run.drawing.layout import check_arrangement
from featvis_run.drawing.render import RenderOptions
from featvis_run.errors import ConfigError
from featvis_run.maps.modes import ArrayExport, PicturesMode, ReducerName, ScaleMode
from featvis_run.maps.scales import ScaleSpec
from featvis_run.maps.targets import Target, parse_target
from featvis_run.predictions import Detections, Keypoints, Predictions
from featvis_run.schema import Config

__all__ = ["DEFAULT_PICTURES", "DrawSettings", "pictures_mode"]

#: ``output.pictures=null``: what each experiment stores by default. One image (single), two models (diff) and a
#: checkpoint sequence are small: both the pictures and the arrays the report page draws. multi_image runs over
#: thousands of images: arrays and one JPEG per image (about 20x fewer bytes than image-sized PNGs, measured in
#: benchmarks/RESULTS.md), drawn at the model's pace.
DEFAULT_PICTURES = {"single": "both", "multi_image": "maps", "diff": "both", "checkpoints": "both"}


def pictures_mode(value: PicturesMode | str | None, experiment: str) -> str:
    """``output.pictures`` as ``composite``, ``maps`` or ``both``; null: the experiment's default
    (:data:`DEFAULT_PICTURES`, ``composite`` for any other)."""
    if value is None:
        return DEFAULT_PICTURES.get(experiment, PicturesMode.composite.value)
    return PicturesMode(value).value


@dataclass(frozen=True)
class DrawSettings:
    """How to turn a (C, H, W) map into an image: reduction, normalization, rendering, boxes, format."""

    reducer: str
    topk: int
    use_norm: bool
    render: RenderOptions
    draw_boxes: bool
    pred_score_thr: float
    fmt: str
    draw_predictions: bool = True
    scale: ScaleSpec = field(default_factory=ScaleSpec)
    save_arrays: str = ArrayExport.none.value
    target: Target | None = None  # what reducer=gradcam explains (None for the other reducers)
    pictures: str = PicturesMode.composite.value  # output.pictures, resolved (see :func:`pictures_mode`)
    caption: bool = False  # output.caption: a band above each single picture naming its level and colour range

    @property
    def write_pictures(self) -> bool:
        """Whether image-sized pictures are drawn and written (``output.pictures=composite|both``)."""
        return self.pictures != PicturesMode.maps.value

    @property
    def write_maps(self) -> bool:
        """Whether each reduced map is stored as ``<level>.npy`` and the input once as ``image.jpg``
        (``output.pictures=maps|both``)."""
        return self.pictures != PicturesMode.composite.value

    @property
    def save_maps(self) -> bool:
        """Whether the drawn 2-D maps are saved as ``<level>.npy`` (save_arrays or pictures: maps or both)."""
        return self.write_maps or self.save_arrays in (ArrayExport.maps.value, ArrayExport.both.value)

    @property
    def save_features(self) -> bool:
        """Whether the recorded (C, H, W) maps are saved as ``<level>.features.npy``."""
        return self.save_arrays in (ArrayExport.features.value, ArrayExport.both.value)

    def shown(self, predictions: Predictions | None) -> Predictions | None:
        """The predictions to draw: none when ``output.draw_predictions`` is off, detector boxes only with
        ``output.draw_boxes`` and at or above ``output.pred_score_thr``; keypoints at or above it."""
        if predictions is None or not self.draw_predictions:
            return None
        if isinstance(predictions, Detections):
            if not self.draw_boxes:
                return None
            if self.target is not None:  # Grad-CAM: the explained detections, whatever their score
                return predictions.best(self.render.max_boxes)
            return predictions.above(self.pred_score_thr).best(self.render.max_boxes)
        if isinstance(predictions, Keypoints):
            return predictions.above(self.pred_score_thr)
        return predictions

    @classmethod
    def from_config(cls, cfg: Config) -> DrawSettings:
        """Validate the drawing options (before any model is loaded) and collect them."""
        out, lay = cfg.output, cfg.layout
        if not 0.0 <= out.alpha <= 1.0:
            raise ConfigError(f"output.alpha={out.alpha} must be within [0, 1] (0: image only, 1: map only)")
        if not 0.0 <= out.pred_score_thr <= 1.0:
            raise ConfigError(f"output.pred_score_thr={out.pred_score_thr} must be within [0, 1]")
        if out.resize_shape is not None and (len(out.resize_shape) != 2 or min(out.resize_shape) <= 0):
            shape = list(out.resize_shape)
            raise ConfigError(f"output.resize_shape={shape} must be [height, width] (positive numbers) or null")
        if lay.max_tile is not None and lay.max_tile <= 0:
            raise ConfigError(f"layout.max_tile={lay.max_tile} must be a positive size in pixels, or null (image size)")
        if lay.min_tile < 0 or lay.gap < 0 or out.min_size < 0:
            raise ConfigError(
                f"layout.min_tile={lay.min_tile}, layout.gap={lay.gap} and output.min_size={out.min_size} must not "
                "be negative"
            )
        reducer = ReducerName(cfg.reducer.name).value
        if reducer == ReducerName.none.value:
            if cfg.topk == 0 or cfg.topk < -1:
                raise ConfigError(f"topk={cfg.topk} is invalid with reducer=none: use a positive count, or -1")
            if cfg.topk > 0:
                check_arrangement(cfg.topk, lay.arrangement)
        target = None
        if reducer == ReducerName.gradcam.value:
            target = parse_target(cfg.target)
            if cfg.use_norm:
                raise ConfigError(
                    "use_norm=true standardizes channels, which reducer=gradcam does not draw (it weights them by "
                    "their gradient); drop use_norm=true"
                )
        colormap_id(out.colormap)
        if out.max_boxes is not None and out.max_boxes < 0:
            raise ConfigError(f"output.max_boxes={out.max_boxes} must be 0 or more, or null to draw every box")
        render = RenderOptions(
            overlaid=out.overlaid,
            alpha=float(out.alpha),
            resize_shape=tuple(out.resize_shape) if out.resize_shape else None,
            colormap=out.colormap,
            min_size=out.min_size,
            arrangement=tuple(lay.arrangement) if lay.arrangement else None,
            min_tile=lay.min_tile,
            max_tile=lay.max_tile,
            gap=lay.gap,
            label=lay.label,
            colorbar=out.colorbar,
            max_boxes=out.max_boxes,
        )
        fmt = out.format.value if hasattr(out.format, "value") else str(out.format)
        return cls(
            reducer,
            cfg.topk,
            cfg.use_norm,
            render,
            out.draw_boxes,
            float(out.pred_score_thr),
            fmt,
            out.draw_predictions,
            _scale_spec(cfg),
            ArrayExport(out.save_arrays).value,
            target,
            pictures_mode(out.pictures, cfg.experiment.name),
            bool(out.caption),
        )


def _scale_spec(cfg: Config) -> ScaleSpec:
    """``output.scale``, ``scale_range`` and ``clip_percentile`` checked: a fixed range needs lo < hi, a percentile
    lies in (50, 100]."""
    out = cfg.output
    mode = ScaleMode(out.scale).value
    fixed = None
    if mode == ScaleMode.fixed.value:
        rng = out.scale_range
        if rng is None or len(rng) != 2 or not all(math.isfinite(v) for v in rng) or not rng[0] < rng[1]:
            raise ConfigError(
                f"output.scale=fixed needs output.scale_range=[lo, hi] with lo < hi (finite numbers), got "
                f"{list(rng) if rng is not None else None}; e.g. output.scale_range=[0,1]"
            )
        fixed = (float(rng[0]), float(rng[1]))
    elif out.scale_range is not None:
        raise ConfigError(
            f"output.scale_range={list(out.scale_range)} is used only with output.scale=fixed (scale is {mode}); "
            "add output.scale=fixed or drop scale_range"
        )
    clip = out.clip_percentile
    if clip is not None and not 50.0 < clip <= 100.0:
        raise ConfigError(
            f"output.clip_percentile={clip} must be within (50, 100] (99: colours span the 1st..99th percentile)"
        )
    return ScaleSpec(mode, fixed, float(clip) if clip is not None else None)
