"""What every OpenMMLab 2.x library adapter shares: config resolution (a path or a config packaged with the
library), mmengine ``--cfg-options``, checkpoint checks, seeded random init, scope handling and quiet logging.

A library adapter subclasses :class:`OpenMMLabAdapter` and adds its test pipeline, class names and how a batch
is run and turned into geometry and predictions.
"""

from __future__ import annotations

import contextlib
import difflib
import importlib
import importlib.util
import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.devices import device_problem
from featvis_run.errors import FeatvisError, ModelError, error_line
from featvis_run.hashing import file_sha256_cached, stable_hash
from featvis_run.models.base import BuiltModel, CheckpointInfo, ImageResult, ModelPlan, PredictionFailed
from featvis_run.paths import resolve_package_path
from featvis_run.schema import ModelConfig, RecorderSpec, config_reference

__all__ = [
    "PROCESS_GROUP_NORMS",
    "OpenMMLabAdapter",
    "check_device",
    "check_test_scale",
    "device_type",
    "merge_cfg_options",
    "parse_cfg_options",
    "plain_batch_norm",
    "predict",
    "quiet_openmmlab",
]


def predict(model: Any, data: Any, geometries: Sequence[Any]) -> Any:
    """An OpenMMLab model's predictions on a preprocessed batch (``_run_forward(mode="predict")``, what test_step
    runs after the preprocessor); a failure in the model becomes :class:`PredictionFailed` with the images'
    geometries, a featvis-run error (a recorder's own check, e.g. a bad data_idx) passes as it is."""
    try:
        return model._run_forward(data, mode="predict")
    except FeatvisError:
        raise
    except Exception as err:
        raise PredictionFailed(geometries, err) from err


@contextlib.contextmanager
def quiet_openmmlab() -> Iterator[None]:
    """Silence mmengine's INFO logging (per-parameter init reports) and library warnings."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def parse_cfg_options(options: Sequence[str], key: str = "model") -> dict[str, Any]:
    """Parse ``key=value`` strings with mmengine's ``--cfg-options`` rules (lists, tuples, dotted keys)."""
    from mmengine.config import DictAction

    parsed: dict[str, Any] = {}
    for opt in options:
        name, sep, value = opt.partition("=")
        if not sep or not name:
            raise ModelError(f"{key}.cfg_options entry {opt!r} is not key=value; e.g. 'model.bbox_head.num_classes=3'")
        try:
            parsed[name] = DictAction._parse_iterable(value)
        except Exception as err:  # mmengine raises bare assertion/value errors here
            raise ModelError(f"{key}.cfg_options entry {opt!r}: cannot parse the value ({error_line(err)})") from err
    return parsed


def merge_cfg_options(cfg: Any, options: Sequence[str], key: str = "model") -> None:
    """Merge ``key=value`` strings into the mmengine config ``cfg``; a value mmengine cannot merge (a dict where the
    config has a number, a name into a list) or that leaves ``model`` without a dict is one ModelError line."""
    try:
        cfg.merge_from_dict(parse_cfg_options(options, key))
    except ModelError:
        raise
    except Exception as err:  # mmengine raises TypeError, KeyError, IndexError ... with multi-line messages
        reason = error_line(err)
        raise ModelError(f"{key}.cfg_options={list(options)} cannot be merged into the config: {reason}") from err
    if not isinstance(cfg.get("model"), dict):
        raise ModelError(
            f"{key}.cfg_options={list(options)} leaves the config's model as {cfg.get('model')!r}, not a dict; "
            "set keys inside it, e.g. 'model.bbox_head.num_classes=3'"
        )


def device_type(device: str, key: str = "model") -> str:
    """The type of a device string (``cuda:1`` -> ``cuda``), checked without importing torch (planning a model
    whose features are cached never loads it); only :data:`featvis_run.devices.DEVICE_CHOICES` are accepted."""
    problem = device_problem(f"{key}.device", device)
    if problem:
        raise ModelError(problem)
    return device.split(":")[0]


def check_device(device: str, key: str = "model") -> None:
    """Refuse a device this torch cannot use, naming the fix (when a model is built on it)."""
    import torch

    device_type(device, key)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"{key}.device={device!r} but this torch has no usable CUDA device; use {key}.device=cpu")


def check_test_scale(test_scale: Sequence[int] | None, key: str = "model") -> None:
    """``test_scale`` is null or two positive sizes."""
    if test_scale is None:
        return
    values = list(test_scale)
    if len(values) != 2 or any(int(v) <= 0 for v in values):
        raise ModelError(
            f"{key}.test_scale={values} must be two positive sizes [long, short] (e.g. [1333,800]), or null to keep "
            "the config's test scale"
        )


def _check_packaged_pair(mc: ModelConfig, key: str) -> None:
    """The shipped demo weights only fit the shipped demo config: catch ``model.mmdet_config=x`` left on them."""
    ref, where = config_reference(mc, key)
    if mc.checkpoint and mc.checkpoint.startswith("pkg://") and not ref.startswith("pkg://"):
        group = "model" if key == "model" else f"model@{key}"
        raise ModelError(
            f"{key}.checkpoint={mc.checkpoint!r} holds the shipped demo model's weights, which do not fit "
            f"{where}={ref!r}; choose the model group first (e.g. {group}=retinanet_r50 "
            f"{where}={ref}), or set {key}.checkpoint=null (random init) or a path to yours"
        )


def _missing_package(err: ImportError, ref: str, where: str) -> str:
    """One line for a config whose ``custom_imports`` (or ``_base_``) needs a package that is not installed."""
    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, ModuleNotFoundError):
        cause = cause.__cause__ or cause.__context__
    name = (getattr(cause, "name", None) or "").split(".")[0]
    if not name:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        return f"{where}={ref!r} cannot be read: {detail}"
    if name == "pkg_resources":  # mmengine resolves `mmdet::` config bases with it; setuptools 81 removed it
        return (
            f"{where}={ref!r} inherits from a packaged config (mmdet::, mmseg::), which mmengine resolves with "
            "pkg_resources, gone from setuptools 81 on; pip install 'setuptools<81'"
        )
    return (
        f"{where}={ref!r} imports the package {name!r} (custom_imports), which is not installed here; "
        f"install it (pip install {name}) or choose another config"
    )


def _strip_pretrained(node: Any) -> None:
    """Remove every pretrained-weight reference from a model config, wherever it sits: ``pretrained`` strings and
    ``init_cfg`` entries that load a checkpoint (``type='Pretrained'``, or a ``checkpoint`` key without a type, as
    PVT's), in the backbone, necks, RoI shared heads (C4), DetectoRS' ``rfp_backbone`` or the model itself."""

    def loads(entry: Any) -> bool:
        return isinstance(entry, dict) and ("checkpoint" in entry or str(entry.get("type", "")) == "Pretrained")

    if isinstance(node, dict):
        if isinstance(node.get("pretrained"), str):
            node["pretrained"] = None
        init = node.get("init_cfg")
        if loads(init):
            node["init_cfg"] = None
        elif isinstance(init, list):
            node["init_cfg"] = [entry for entry in init if not loads(entry)] or None
        for value in node.values():
            _strip_pretrained(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _strip_pretrained(value)


#: norm layers that need a distributed process group even to be built (mmcv's SyncBatchNorm asks for the world size);
#: torch's ``SyncBN`` builds without one and, in eval mode, normalises as plain BN does, so it is kept.
PROCESS_GROUP_NORMS = ("MMSyncBN",)


def plain_batch_norm(node: Any) -> list[str]:
    """Replace, in place, every norm config of a :data:`PROCESS_GROUP_NORMS` type by plain ``BN`` (same parameters
    and running statistics, so weights load and eval-mode outputs are the same in one process); returns the types
    replaced, once each per place (``['MMSyncBN', 'MMSyncBN']``)."""
    replaced: list[str] = []
    if isinstance(node, dict):
        kind = node.get("type")
        if isinstance(kind, str) and kind in PROCESS_GROUP_NORMS:
            node["type"] = "BN"
            replaced.append(kind)
        for value in node.values():
            replaced += plain_batch_norm(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            replaced += plain_batch_norm(value)
    return replaced


def _plain_batch_norm_note(replaced: Sequence[str]) -> list[str]:
    if not replaced:
        return []
    kinds = ", ".join(sorted(set(replaced)))
    return [
        f"the config's {kinds} norm layers (mmcv's SyncBN, {len(replaced)} places) need a distributed process "
        "group, which a single process has not got: they were built as plain BN (same weights and running "
        "statistics; the same outputs in eval mode)"
    ]


class OpenMMLabAdapter:
    """Shared plan/build logic of OpenMMLab 2.x libraries; subclasses set :attr:`repo` and the specifics."""

    repo = ""  # the library's package name, also its registry scope
    example_config = ""  # a packaged config name shown in error messages
    takes_boxes = False  # whether run_batch takes person boxes (model.bboxes: top-down pose models)

    # ---- what a library adds ----
    def test_pipeline_cfg(self, cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
        """The test pipeline's steps for in-memory BGR images, with ``test_scale`` applied to its resize."""
        raise NotImplementedError

    def config_classes(self, cfg: Any) -> tuple[str, ...]:
        """Class names from the config, when the checkpoint has none."""
        raise NotImplementedError

    def prepare(self, model: Any) -> None:
        """Adjust a freshly built model before use (work around library bugs); nothing by default."""

    def adjust_config(self, cfg: Any) -> list[str]:
        """Change the resolved config for recording (in place); returns notes saying what changed. Nothing by
        default."""
        return []

    def redirect_recorders(
        self, cfg: Any, recorders: Mapping[str, RecorderSpec]
    ) -> tuple[dict[str, RecorderSpec], list[str]]:
        """Point recorders at where the model really computes what they name (e.g. a cascade of decode heads);
        returns the recorders and notes saying what changed. Unchanged by default."""
        return dict(recorders), []

    def config_palette(self, cfg: Any) -> Any:
        """(K, 3) RGB class colours from the config's dataset, or None."""
        return None

    def test_scale_note(self, cfg: Any, test_scale: Sequence[int] | None, key: str) -> str | None:
        """What to tell about the input size: by default, that a ``test_scale`` changes nothing in the pipeline."""
        if test_scale is not None and self.test_pipeline_cfg(cfg, test_scale) == self.test_pipeline_cfg(cfg, None):
            return (
                f"{key}.test_scale={list(test_scale)} has no effect: this config's test pipeline has no Resize "
                "with a scale (e.g. CenterNet's RandomCenterCropPad keeps the image size)"
            )
        return None

    def check_recorders(self, plan: ModelPlan, recorders: Any) -> None:
        """Refuse, before the model is built, a recorder this kind of model cannot feed; nothing by default."""

    def batch_groups(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        """All images in one forward pass (the data preprocessor pads them to one size)."""
        return [list(range(len(images)))]

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        raise NotImplementedError

    def explain_batch(self, built: BuiltModel, images: Sequence[np.ndarray], target: Any, score_thr: float) -> Any:
        """Grad-CAM needs detections to explain: libraries without them refuse it in one line."""
        raise ModelError(
            f"reducer=gradcam explains detections, and {self.repo} models ({built.plan.config.name}) have none; use "
            "reducer=eigencam (no target, no gradients)"
        )

    # ---- shared ----
    @contextlib.contextmanager
    def scope(self) -> Iterator[None]:
        """The library's registry scope, set for the duration of one build or call (several libraries can share a
        process), with its logging and warnings quiet."""
        from mmengine.registry import DefaultScope

        with DefaultScope.overwrite_default_scope(self.repo), quiet_openmmlab():
            yield

    def config_root(self) -> Path:
        """The configs folder shipped inside the installed library (``<package>/.mim/configs``), found without
        importing the library (importing it loads torch)."""
        spec = importlib.util.find_spec(self.repo)
        if spec is None or not spec.submodule_search_locations:
            extras = ("mmseg", "mmpretrain", "mmpose")
            extra = f" (pip install 'featvis-run[{self.repo}]')" if self.repo in extras else ""
            raise ModelError(f"model.repo={self.repo!r} needs the {self.repo} package, which is not installed{extra}")
        return Path(list(spec.submodule_search_locations)[0]) / ".mim" / "configs"

    def resolve_config(self, ref: str, where: str = "model.mmdet_config") -> Path:
        """A config given as a path, ``pkg://featvis_run/...``, or a name under the library's packaged configs."""
        if ref.startswith("pkg://"):
            return resolve_package_path(ref)
        name = ref.removeprefix(f"{self.repo}::")
        direct = Path(name).expanduser()
        if direct.is_file():
            return direct.resolve()
        root = self.config_root()
        for cand in (name, name if name.endswith(".py") else f"{name}.py"):
            if (root / cand).is_file():
                return root / cand
        found = sorted(root.rglob(f"{Path(name).stem}.py"))
        if found:
            return found[0]
        names = [str(p.relative_to(root)) for p in root.rglob("*.py") if not p.name.startswith("_")]
        close = difflib.get_close_matches(name, names, n=4, cutoff=0.4)
        example = f"give a config file path or a name like {self.example_config}"
        hint = f"closest: {', '.join(close)}" if close else example
        raise ModelError(f"{where}={ref!r} is neither a file nor a config in the installed {self.repo} ({hint})")

    def plan(self, mc: ModelConfig, key: str = "model") -> ModelPlan:
        """Resolve and check ``mc`` (config file, cfg-options, checkpoint file, device) without building the model."""
        from mmengine.config import Config

        device = device_type(mc.device, key)
        check_test_scale(mc.test_scale, key)
        if getattr(mc, "bboxes", None) is not None and not self.takes_boxes:
            raise ModelError(
                f"{key}.bboxes={mc.bboxes} gives person boxes to top-down pose models ({key}.repo=mmpose); "
                f"{key}.repo={self.repo!r} does not take them: drop {key}.bboxes"
            )
        ref, where = config_reference(mc, key)
        config_path = self.resolve_config(ref, where)
        _check_packaged_pair(mc, key)
        ckpt_path = resolve_package_path(mc.checkpoint) if mc.checkpoint else None
        if ckpt_path is not None and not ckpt_path.is_file():
            what = "a folder, not a file" if ckpt_path.is_dir() else "no such file"
            raise ModelError(f"{key}.checkpoint={mc.checkpoint!r}: {what}; give the path of a local .pth checkpoint")
        try:
            cfg = Config.fromfile(str(config_path))
        except ImportError as err:
            raise ModelError(_missing_package(err, ref, where)) from err
        except Exception as err:
            raise ModelError(f"{where}={ref!r} ({config_path}) cannot be read: {error_line(err)}") from err
        if mc.cfg_options:
            merge_cfg_options(cfg, mc.cfg_options, key)
        _strip_pretrained(cfg.model)  # never download pretrained weights
        notes = tuple(_plain_batch_norm_note(plain_batch_norm(cfg.model)) + self.adjust_config(cfg))
        scale_note = self.test_scale_note(cfg, mc.test_scale, key)
        notes += (scale_note,) if scale_note else ()
        store_notes: list[str] = []  # the digest store was damaged and rebuilt
        sha = file_sha256_cached(ckpt_path, notes=store_notes) if ckpt_path else None
        notes += tuple(store_notes)
        identity = stable_hash(
            {
                "repo": self.repo,
                "model": cfg.model.to_dict(),
                "pipeline": self.test_pipeline_cfg(cfg, mc.test_scale),
                "weights": sha or f"random-init seed {mc.seed}",
                "device": device,
            }
        )
        return ModelPlan(mc, self.repo, cfg, config_path, ckpt_path, sha, identity, key, notes)

    def build(self, plan: ModelPlan, check: Callable[[Any], None] | None = None) -> BuiltModel:
        """Build the planned model: weights from its checkpoint, else seeded random init; eval mode on its device.
        ``check`` (e.g. the recorders' layer names) sees the built module before the checkpoint is read."""
        import torch
        from mmcv.transforms import Compose

        from featvis_run.models.checkpoint import (
            apply_weights,
            checkpoint_classes,
            checkpoint_palette,
            load_checkpoint_state,
        )

        mc, cfg = plan.config, plan.cfg
        check_device(mc.device, plan.key)
        registry = importlib.import_module(f"{self.repo}.registry")
        with self.scope():
            torch.manual_seed(mc.seed)
            try:
                model = registry.MODELS.build(cfg.model)
            except Exception as err:
                raise ModelError(f"{self.repo} cannot build {plan.config_path.name}: {error_line(err)}") from err
            if check is not None:
                check(model)  # e.g. a layer name the model does not have: refused before the checkpoint is read
            ckpt = (
                load_checkpoint_state(plan.checkpoint_path, mc.trust_checkpoint, plan.key)
                if plan.checkpoint_path
                else None
            )
            if ckpt is None:
                model.init_weights()
                info = CheckpointInfo(path=None, sha256=None, seed=mc.seed)
            else:
                info = apply_weights(
                    model, ckpt, plan.checkpoint_path, plan.checkpoint_sha256, plan.key, mc.partial_checkpoint
                )
            self.prepare(model)
            pipeline = Compose(self.test_pipeline_cfg(cfg, mc.test_scale))
        where = f"{plan.key}.checkpoint={str(plan.checkpoint_path)!r}"
        classes = (checkpoint_classes(ckpt, where) if ckpt else None) or self.config_classes(cfg)
        palette = (checkpoint_palette(ckpt, where) if ckpt else None) or self.config_palette(cfg)
        model.to(mc.device).eval()
        return BuiltModel(plan=plan, model=model, classes=classes, checkpoint=info, pipeline=pipeline, palette=palette)
