"""Feature maps of a model while it trains: what :class:`featvis_run.hooks.FeatvisHook` does, without mmengine's
hook machinery (so it can be tested and reused on its own).

- :func:`hook_settings` turns the hook's options (named like the config groups: ``recorder``, ``reducer``, ``topk``,
  ``output``, ``layout``, ...) into the same typed config groups a ``featvis-run`` run uses.
- :class:`LiveModel` records a training model: unwrapped (DDP ``module``, a distiller's ``architecture``), in eval
  mode under ``torch.no_grad``, every module's train/eval flag restored afterwards.
- :func:`write_call` draws one call into ``<root>/<iter_N|epoch_N>/`` (replaced when drawn again after a resume) and
  keeps the recorded maps there; :func:`write_summary` draws every call's maps as ``experiment=checkpoints`` does.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import ConfigError
from featvis_run.experiments.draw import draw_levels, non_finite_notes, prediction_counts
from featvis_run.experiments.evolution import Frame, write_sequence
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.evolution import natural_key
from featvis_run.maps.geometry import geometry_record
from featvis_run.models.base import BuiltModel, CheckpointInfo, ImageFeatures, ModelPlan
from featvis_run.models.source import record_batch
from featvis_run.schema import (
    CacheConfig,
    Config,
    ExperimentConfig,
    LayoutConfig,
    ModelConfig,
    OutputConfig,
    RecorderConfig,
    ReducerConfig,
    ReducerName,
)
from featvis_run.store.cache import decode_features, encode_features
from featvis_run.store.images import InputImage
from featvis_run.store.manifest import ImageRecord, RunResult
from featvis_run.store.outputs import safe_name, write_bytes

__all__ = ["LiveModel", "call_folders", "hook_settings", "unwrap_model", "write_call", "write_summary"]

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
_CALL = re.compile(r"^(iter|epoch)_\d+$")
_STATE = ".featvis"  # where a call keeps its recorded maps (for the end-of-training summary)


def _group(group: str, option: str | dict[str, Any], schema: type, overrides: dict[str, Any] | None) -> Any:
    """A config group option (``conf/<group>/<option>.yaml``, or a dict of its fields) with ``overrides`` applied,
    as its typed dataclass."""
    from omegaconf import OmegaConf

    if isinstance(option, str):
        path = CONF_DIR / group / f"{option}.yaml"
        if not path.is_file():
            known = ", ".join(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))
            raise ConfigError(f"FeatvisHook {group}={option!r} is unknown; choose one of {known}, or give a dict")
        base = OmegaConf.load(path)
    else:
        base = OmegaConf.create({"name": "custom", **dict(option)})
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), base, overrides or {}))
    except Exception as err:  # omegaconf's validation: an unknown key, a value of the wrong type
        raise ConfigError(f"FeatvisHook {group}: {str(err).splitlines()[0]}") from None


def hook_settings(
    recorder: str | dict[str, Any] = "fpn",
    reducer: str = "squeeze_mean",
    topk: int = 20,
    use_norm: bool = False,
    output: str | dict[str, Any] = "overlay",
    layout: str | dict[str, Any] = "auto",
    output_options: dict[str, Any] | None = None,
    layout_options: dict[str, Any] | None = None,
    frame_ms: int = 700,
) -> tuple[Config, DrawSettings]:
    """The typed config groups and drawing settings of the hook's options; a ConfigError names a bad one."""
    try:
        reducer_name = ReducerName(reducer)
    except ValueError:
        raise ConfigError(
            f"FeatvisHook reducer={reducer!r} is unknown; choose one of {', '.join(r.value for r in ReducerName)}"
        ) from None
    if frame_ms <= 0:
        raise ConfigError(f"FeatvisHook frame_ms={frame_ms} must be a positive duration in ms, e.g. 700")
    cfg = Config(
        model=ModelConfig(name="training"),
        recorder=_group("recorder", recorder, RecorderConfig, None),
        reducer=ReducerConfig(reducer_name),
        layout=_group("layout", layout, LayoutConfig, layout_options),
        output=_group("output", output, OutputConfig, output_options),
        experiment=ExperimentConfig(name="training", frame_ms=frame_ms),
        cache=CacheConfig(enabled=False),
        topk=topk,
        use_norm=use_norm,
    )
    cfg.recorder.parsed()  # a bad recorder entry fails here, before the first call
    return cfg, DrawSettings.from_config(cfg)


def unwrap_model(model: Any) -> Any:
    """The user's model inside wrappers: DDP and other mmengine model wrappers (``module``), and MMRazor
    algorithms such as distillers (``architecture``), so layer names are the ones of the user's config."""
    from mmengine.model import is_model_wrapper
    from torch import nn

    while True:
        if is_model_wrapper(model) or isinstance(model, (nn.DataParallel, nn.parallel.DistributedDataParallel)):
            model = model.module
        elif isinstance(getattr(model, "architecture", None), nn.Module):
            model = model.architecture
        else:
            return model


class LiveModel:
    """A training model, recorded in eval mode on BGR images through its library's test pipeline.

    Args:
        model: the runner's model (wrappers are removed, see :func:`unwrap_model`).
        cfg: the training config (an mmengine Config): its test (else val) pipeline prepares the images.
        repo: the model's library (``mmdet``, ``mmseg``, ``mmpretrain``).
    """

    def __init__(self, model: Any, cfg: Any, repo: str = "mmdet"):
        from mmcv.transforms import Compose

        from featvis_run.models.registry import adapter_for

        self.model = unwrap_model(model)
        self.adapter = adapter_for(repo)
        if cfg.get("test_dataloader") is None and cfg.get("val_dataloader") is not None:
            cfg = cfg.copy()
            cfg.test_dataloader = cfg.val_dataloader
        with self.adapter.scope():
            pipeline = Compose(self.adapter.test_pipeline_cfg(cfg, None))
        try:
            classes = tuple((getattr(self.model, "dataset_meta", None) or {}).get("classes", ())) or tuple(
                self.adapter.config_classes(cfg)
            )
        except Exception:
            classes = ()
        plan = ModelPlan(
            ModelConfig(name="training", repo=repo), repo, cfg, Path(cfg.filename or "training"), None, None, "live"
        )
        self.built = BuiltModel(plan, self.model, classes, CheckpointInfo(None, None), pipeline)

    def record(self, arrays: Sequence[np.ndarray], cfg: Config) -> list[ImageFeatures]:
        """One forward pass in eval mode without gradients; every module's train/eval flag is restored after."""
        import torch

        flags = [(m, m.training) for m in self.model.modules()]
        recorders, mappings = cfg.recorder.parsed()
        recorders = getattr(self.adapter, "adapt_recorders", lambda r: r)(recorders)  # a classifier: its stages
        self.model.eval()
        try:
            with torch.no_grad():
                out: list[ImageFeatures | None] = [None] * len(arrays)
                for group in self.adapter.batch_groups(arrays):  # one pass (mmseg: one per image size)
                    items = record_batch(self.built, [arrays[i] for i in group], recorders, mappings)
                    for i, item in zip(group, items, strict=True):
                        out[i] = item
                return [item for item in out if item is not None]
        finally:
            for module, training in flags:
                module.training = training


def write_call(
    root: Path,
    tag: str,
    images: Sequence[InputImage],
    items: Sequence[ImageFeatures],
    settings: DrawSettings,
    options: dict[str, Any],
    send: Callable[[str, np.ndarray], None] | None = None,
) -> RunResult:
    """Draw one call's maps into ``root/tag/<image>/<layer>/<level>.<fmt>`` with its manifest (an earlier folder of
    the same call, e.g. before a resume, is replaced), keep the maps for the summary, and pass each picture (BGR)
    with its name to ``send`` (the visualizer backends)."""
    folder = root / tag
    if folder.exists():
        shutil.rmtree(folder)
    outputs, image_records, notes = [], [], []
    for im, item in zip(images, items, strict=True):
        drawn = draw_levels(im.image_id, im.array, item.features, item.geometry, item.predictions, settings, folder)
        for record, picture in drawn:
            outputs.append(record)
            if send is not None:
                send(f"featvis_{safe_name(im.image_id)}_{safe_name(record.layer)}_{safe_name(record.level)}", picture)
        g = item.geometry
        counts = prediction_counts(item.predictions, settings)
        image_records.append(ImageRecord(str(im.path), g.ori_hw, g.input_hw, **counts, geometry=geometry_record(g)))
        notes += [f"{im.image_id}: {n}" for n in item.notes]
        write_bytes(folder / _STATE / f"{safe_name(im.image_id)}.npz", encode_features(item))
    result = RunResult(
        experiment="training_hook",
        out_dir=folder,
        config=options,
        models=(),
        images=tuple(image_records),
        outputs=tuple(outputs),
        notes=tuple(non_finite_notes(outputs) + notes),
        extra={"call": tag},
    )
    result.save()
    return result


def call_folders(root: Path) -> list[Path]:
    """The call folders under ``root`` (``iter_N`` or ``epoch_N``) that kept their maps, in natural order."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and _CALL.match(p.name) and (p / _STATE).is_dir()]
    return sorted(found, key=lambda p: natural_key(p.name))


def write_summary(
    root: Path, images: Sequence[InputImage], settings: DrawSettings, options: dict[str, Any], frame_ms: int
) -> RunResult | None:
    """Every call's maps of every level as one sequence, in ``root/evolution/``: frames, GIF, strip and change plot
    on one colour range per level, and the manifest (as ``experiment=checkpoints``); None before any call."""
    calls = call_folders(root)
    if not calls:
        return None
    out_dir = root / "evolution"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    outputs, levels, notes = [], [], []
    for im in images:
        items = []
        for call in calls:
            path = call / _STATE / f"{safe_name(im.image_id)}.npz"
            if path.is_file():
                items.append((call.name, decode_features(path)))
        if not items:
            continue
        for key in items[-1][1].features:
            frames = [Frame(t, it.features[key], it.geometry, it.predictions) for t, it in items if key in it.features]
            records, entry, level_notes = write_sequence(
                out_dir, im.image_id, im.array, key, frames, settings, frame_ms
            )
            outputs += records
            levels.append(entry)
            notes += [n for n in level_notes if n not in notes]
    result = RunResult(
        experiment="training_hook",
        out_dir=out_dir,
        config=options,
        models=(),
        images=(),
        outputs=tuple(outputs),
        notes=tuple(non_finite_notes(outputs) + notes),
        extra={"calls": [c.name for c in calls], "levels": levels},
    )
    result.save()
    return result
