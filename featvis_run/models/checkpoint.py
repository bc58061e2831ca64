"""Reading a local checkpoint file safely and applying it to a model, with the key-match counts users need."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.hashing import file_sha256
from featvis_run.models.base import CheckpointInfo

__all__ = ["apply_weights", "checkpoint_classes", "load_checkpoint_state"]


def load_checkpoint_state(path: Path, trust: bool, key: str = "model") -> dict[str, Any]:
    """Read a checkpoint file with ``torch.load(weights_only=True)`` unless the user trusts the file.

    Args:
        path: the checkpoint file.
        trust: load arbitrary pickles (``<key>.trust_checkpoint=true``).
        key: the model's config key, for error messages.

    Returns:
        The loaded dict; a ModelError names the file and the fix when it cannot be read or refused.
    """
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


def apply_weights(
    model: nn.Module, ckpt: dict[str, Any], path: Path, sha256: str | None, key: str = "model"
) -> CheckpointInfo:
    """Load the tensors of ``ckpt`` that match ``model`` by name and shape; returns the key-match counts."""
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
        sha256=sha256 or file_sha256(path),
        matched_keys=len(matched),
        missing_keys=len(result.missing_keys),
        unexpected_keys=len(state) - len(matched),
    )


def checkpoint_classes(ckpt: dict[str, Any]) -> tuple[str, ...] | None:
    """Class names stored in a checkpoint's meta (mmengine's ``dataset_meta`` or mmdet 2.x's ``CLASSES``)."""
    meta = ckpt.get("meta", {}) if isinstance(ckpt.get("meta"), dict) else {}
    if isinstance(meta.get("dataset_meta"), dict):
        classes = {k.lower(): v for k, v in meta["dataset_meta"].items()}.get("classes")
        if classes:
            return tuple(classes)
    if meta.get("CLASSES"):
        return tuple(meta["CLASSES"])
    return None
