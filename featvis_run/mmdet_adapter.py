"""Everything mmdet-specific: config resolution, model building, checkpoint loading, test pipeline, inference.

The rest of the package sees a :class:`Detector` and plain arrays: :func:`load_detector` builds it from a
:class:`~featvis_run.schema.ModelConfig`, :func:`run_batch` runs mmdet's own test pipeline and ``test_step`` on a
batch of BGR images and returns each image's geometry (for aligning maps) and detections.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import re
import time
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.geometry import Geometry
from featvis_run.paths import resolve_package_path
from featvis_run.render import Detections
from featvis_run.schema import ModelConfig

__all__ = [
    "CheckpointInfo",
    "Detector",
    "ImageResult",
    "load_checkpoint_state",
    "ModelPlan",
    "load_detector",
    "plan_model",
    "mmdet_config_root",
    "parse_cfg_options",
    "resolve_mmdet_config",
    "run_batch",
]


@dataclass(frozen=True)
class CheckpointInfo:
    """Where the weights came from: a local file (with its sha256 and key match) or a seeded random init."""

    path: str | None
    sha256: str | None
    matched_keys: int = 0
    missing_keys: int = 0  # model parameters the checkpoint did not set
    unexpected_keys: int = 0  # checkpoint tensors unused (unknown name or other shape)
    seed: int | None = None

    @property
    def random_init(self) -> bool:
        return self.path is None


@dataclass
class Detector:
    """A built mmdet detector in eval mode, with its resolved config and test pipeline."""

    name: str
    model: nn.Module
    cfg: Any
    config_path: str
    device: str
    classes: tuple[str, ...]
    checkpoint: CheckpointInfo
    pipeline: Any
    load_seconds: float


@dataclass(frozen=True)
class ImageResult:
    """One image's placement in the network input and the detector's predictions on it."""

    geometry: Geometry
    detections: Detections


@contextlib.contextmanager
def quiet_openmmlab() -> Iterator[None]:
    """Silence mmengine's INFO logging (per-parameter init reports) and library warnings."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def mmdet_config_root() -> Path:
    """The configs folder shipped inside the installed mmdet package."""
    import mmdet

    return Path(mmdet.__file__).parent / ".mim" / "configs"


def resolve_mmdet_config(ref: str, key: str = "model") -> Path:
    """A config given as a path, ``pkg://featvis_run/...``, or a name under mmdet's packaged configs."""
    if ref.startswith("pkg://"):
        return resolve_package_path(ref)
    name = ref.removeprefix("mmdet::")
    direct = Path(name).expanduser()
    if direct.is_file():
        return direct.resolve()
    root = mmdet_config_root()
    candidates = [name, name if name.endswith(".py") else f"{name}.py"]
    for cand in candidates:
        if (root / cand).is_file():
            return root / cand
    stem = Path(name).stem
    found = sorted(root.rglob(f"{stem}.py"))
    if found:
        return found[0]
    names = [str(p.relative_to(root)) for p in root.rglob("*.py") if not p.name.startswith("_")]
    close = difflib.get_close_matches(name, names, n=4, cutoff=0.4)
    example = "retinanet/retinanet_r50_fpn_2x_coco.py"
    hint = f"closest: {', '.join(close)}" if close else f"give a config file path or a name like {example}"
    raise ModelError(f"{key}.mmdet_config={ref!r} is neither a file nor a config in the installed mmdet ({hint})")


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
            raise ModelError(f"{key}.cfg_options entry {opt!r}: cannot parse the value ({err})") from err
    return parsed


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint_state(path: Path, trust: bool, key: str = "model") -> dict[str, Any]:
    """Read a checkpoint file; ``torch.load(weights_only=True)`` unless the user trusts the file."""
    if not path.is_file():
        raise ModelError(f"{key}.checkpoint={str(path)!r}: no such file; give the path of a local .pth checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=not trust)
    except Exception as err:
        msg = str(err)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", msg)
        if found:
            raise ModelError(
                f"{key}.checkpoint={str(path)!r} was refused by torch.load(weights_only=True): it pickles Python "
                f"objects besides tensors ({found.group(1)}). If you trust where the file came from, rerun with "
                f"{key}.trust_checkpoint=true (loading then runs the pickle's code)"
            ) from err
        detail = msg.strip().splitlines()[-1][:120] if msg.strip() else type(err).__name__
        raise ModelError(
            f"{key}.checkpoint={str(path)!r} is not a readable PyTorch checkpoint ({detail}); "
            "give a .pth file saved by torch.save"
        ) from err
    if not isinstance(ckpt, dict):
        raise ModelError(f"{key}.checkpoint={str(path)!r} holds a {type(ckpt).__name__}, not a state dict")
    return ckpt


def _apply_weights(
    model: nn.Module, ckpt: dict[str, Any], path: Path, sha256: str | None, key: str = "model"
) -> CheckpointInfo:
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise ModelError(f"{key}.checkpoint={str(path)!r}: 'state_dict' is a {type(state).__name__}, not a dict")
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    own = model.state_dict()
    matched = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    if not matched:
        raise ModelError(
            f"{key}.checkpoint={str(path)!r} does not fit this model: none of its {len(state)} tensors match a "
            "parameter by name and shape; check model=... (the architecture) against the checkpoint"
        )
    result = model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return CheckpointInfo(
        path=str(path),
        sha256=sha256 or _sha256(path),
        matched_keys=len(matched),
        missing_keys=len(result.missing_keys),
        unexpected_keys=len(state) - len(matched),
    )


def _checkpoint_classes(ckpt: dict[str, Any]) -> tuple[str, ...] | None:
    meta = ckpt.get("meta", {}) if isinstance(ckpt.get("meta"), dict) else {}
    if isinstance(meta.get("dataset_meta"), dict):
        classes = {k.lower(): v for k, v in meta["dataset_meta"].items()}.get("classes")
        if classes:
            return tuple(classes)
    if meta.get("CLASSES"):
        return tuple(meta["CLASSES"])
    return None


def _check_device(device: str, key: str = "model") -> None:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"{key}.device={device!r} but this torch has no usable CUDA device; use {key}.device=cpu")
    try:
        torch.device(device)
    except RuntimeError as err:
        raise ModelError(f"{key}.device={device!r} is not a torch device; use cpu or cuda:0") from err


def _test_pipeline_cfg(cfg: Any, test_scale: Sequence[int] | None) -> list[dict[str, Any]]:
    from mmdet.utils import get_test_pipeline_cfg

    steps = [dict(s) for s in get_test_pipeline_cfg(cfg)]
    for step in steps:
        if "LoadImageFromFile" in str(step.get("type")):
            step["type"] = "mmdet.LoadImageFromNDArray"
        if test_scale is not None and str(step.get("type")).endswith("Resize") and "scale" in step:
            step["scale"] = tuple(int(v) for v in test_scale)
    return steps


def _test_pipeline(cfg: Any, test_scale: Sequence[int] | None) -> Any:
    from mmcv.transforms import Compose

    return Compose(_test_pipeline_cfg(cfg, test_scale))


@dataclass
class ModelPlan:
    """A detector described but not built: resolved config (cfg-options applied), checkpoint and its hash.

    ``identity`` hashes everything that determines the model's features, for the activation cache and for reusing
    a built model within one process (Hydra's basic launcher runs a sweep's jobs in one process).
    """

    config: ModelConfig
    cfg: Any
    config_path: Path
    checkpoint_path: Path | None
    checkpoint_sha256: str | None
    identity: str
    key: str = "model"  # its config key (model, model_a, model_b), named in error messages


def plan_model(mc: ModelConfig, key: str = "model") -> ModelPlan:
    """Resolve and check ``mc`` (config file, cfg-options, checkpoint file, device) without building the model."""
    from mmengine.config import Config

    from featvis_run.cache import stable_hash

    _check_device(mc.device, key)
    config_path = resolve_mmdet_config(mc.mmdet_config, key)
    _check_packaged_pair(mc, key)
    ckpt_path = resolve_package_path(mc.checkpoint) if mc.checkpoint else None
    if ckpt_path is not None and not ckpt_path.is_file():
        what = "a folder, not a file" if ckpt_path.is_dir() else "no such file"
        raise ModelError(f"{key}.checkpoint={mc.checkpoint!r}: {what}; give the path of a local .pth checkpoint")
    try:
        cfg = Config.fromfile(str(config_path))
    except Exception as err:
        raise ModelError(f"{key}.mmdet_config={mc.mmdet_config!r} cannot be read: {err}") from err
    if mc.cfg_options:
        cfg.merge_from_dict(parse_cfg_options(mc.cfg_options, key))
    if cfg.model.get("backbone", {}).get("init_cfg") is not None:
        cfg.model.backbone.init_cfg = None  # never download pretrained backbone weights
    sha = _sha256(ckpt_path) if ckpt_path else None
    identity = stable_hash(
        {
            "model": cfg.model.to_dict(),
            "pipeline": _test_pipeline_cfg(cfg, mc.test_scale),
            "weights": sha or f"random-init seed {mc.seed}",
            "device": torch.device(mc.device).type,
        }
    )
    return ModelPlan(mc, cfg, config_path, ckpt_path, sha, identity, key)


def _check_packaged_pair(mc: ModelConfig, key: str) -> None:
    """The shipped demo weights only fit the shipped demo config: catch ``model.mmdet_config=x`` left on them."""
    if mc.checkpoint and mc.checkpoint.startswith("pkg://") and not mc.mmdet_config.startswith("pkg://"):
        group = "model" if key == "model" else f"model@{key}"
        raise ModelError(
            f"{key}.checkpoint={mc.checkpoint!r} holds the shipped demo model's weights, which do not fit "
            f"{key}.mmdet_config={mc.mmdet_config!r}; choose the model group first (e.g. {group}=retinanet_r50 "
            f"{key}.mmdet_config={mc.mmdet_config}), or set {key}.checkpoint=null (random init) or a path to yours"
        )


_BUILT: OrderedDict[str, Detector] = OrderedDict()
_KEEP_BUILT = 2


def load_detector(mc: ModelConfig | ModelPlan) -> Detector:
    """The detector ``mc`` describes (weights from its local checkpoint, else seeded random init).

    The last two detectors built in this process are reused when asked for again with the same identity."""
    plan = mc if isinstance(mc, ModelPlan) else plan_model(mc)
    if plan.identity in _BUILT:
        _BUILT.move_to_end(plan.identity)
        det = _BUILT[plan.identity]
        det.name = plan.config.name
        det.load_seconds = 0.0
        return det
    det = _build(plan)
    _BUILT[plan.identity] = det
    while len(_BUILT) > _KEEP_BUILT:
        _BUILT.popitem(last=False)
    return det


def _build(plan: ModelPlan) -> Detector:
    from mmengine.registry import init_default_scope

    start = time.perf_counter()
    mc, cfg = plan.config, plan.cfg
    ckpt = load_checkpoint_state(plan.checkpoint_path, mc.trust_checkpoint, plan.key) if plan.checkpoint_path else None
    init_default_scope(cfg.get("default_scope", "mmdet"))
    from mmdet.registry import MODELS

    with quiet_openmmlab():
        torch.manual_seed(mc.seed)
        try:
            model = MODELS.build(cfg.model)
        except Exception as err:
            raise ModelError(f"mmdet cannot build {plan.config_path.name}: {type(err).__name__}: {err}") from err
        if ckpt is None:
            model.init_weights()
            info = CheckpointInfo(path=None, sha256=None, seed=mc.seed)
        else:
            info = _apply_weights(model, ckpt, plan.checkpoint_path, plan.checkpoint_sha256, plan.key)
    classes = (_checkpoint_classes(ckpt) if ckpt else None) or _config_classes(cfg)
    model.to(mc.device).eval()
    return Detector(
        name=mc.name,
        model=model,
        cfg=cfg,
        config_path=str(plan.config_path),
        device=mc.device,
        classes=classes,
        checkpoint=info,
        pipeline=_test_pipeline(cfg, mc.test_scale),
        load_seconds=time.perf_counter() - start,
    )


def _config_classes(cfg: Any) -> tuple[str, ...]:
    meta = cfg.get("test_dataloader", {}).get("dataset", {}).get("metainfo") or {}
    if meta.get("classes"):
        return tuple(meta["classes"])
    from mmdet.evaluation import get_classes

    return tuple(get_classes("coco"))


def run_batch(det: Detector, images: Sequence[np.ndarray]) -> list[ImageResult]:
    """Run mmdet's test pipeline and ``test_step`` on BGR images (one batch); hooks record meanwhile."""
    datas = [det.pipeline(dict(img=img, img_id=i)) for i, img in enumerate(images)]
    batch = dict(inputs=[d["inputs"] for d in datas], data_samples=[d["data_samples"] for d in datas])
    with torch.no_grad(), quiet_openmmlab():
        samples = det.model.test_step(batch)
    results = []
    for sample in samples:
        meta = sample.metainfo
        geom = Geometry(
            ori_hw=tuple(int(v) for v in meta["ori_shape"][:2]),
            img_hw=tuple(int(v) for v in meta["img_shape"][:2]),
            input_hw=tuple(int(v) for v in meta["batch_input_shape"][:2]),
        )
        pred = sample.pred_instances
        dets = Detections(
            boxes=pred.bboxes.detach().cpu().numpy().astype(np.float32),
            scores=pred.scores.detach().cpu().numpy().astype(np.float32),
            labels=pred.labels.detach().cpu().numpy().astype(np.int64),
            class_names=det.classes,
        )
        results.append(ImageResult(geom, dets))
    return results
