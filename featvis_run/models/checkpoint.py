"""Reading a local checkpoint file safely and applying it to a model, with the key-match counts users need.

A checkpoint that fits only part of the model (it sets under 90% of the model's tensors, or over 10% of its own go
unused) is refused unless the user accepts it (``partial_checkpoint``); then, and for weights that are not finite,
the run carries a loud note.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.hashing import file_sha256
from featvis_run.models.base import CheckpointInfo
from featvis_run.models.training_checkpoint import load_training_checkpoint

__all__ = [
    "apply_weights",
    "checkpoint_classes",
    "checkpoint_palette",
    "describe_load_failure",
    "load_checkpoint_state",
]

MIN_SET = 0.9  # a checkpoint must set at least this share of the model's tensors ...
MAX_UNUSED = 0.1  # ... and leave at most this share of its own unused, unless partial_checkpoint=true
_PREFIXES = ("", "module.", "architecture.", "model.")  # DDP, MMRazor algorithms, other wrappers


def _first_sentence(text: str) -> str:
    """The first sentence of an exception message, whole (never cut mid-word)."""
    text = " ".join(text.split())
    found = re.match(r"(.+?[.!?])(\s|$)", text)
    return (found.group(1) if found else text).rstrip(".")


def describe_load_failure(err: BaseException, path: Path, key: str) -> str:
    """One whole-sentence line for a checkpoint ``torch.load`` could not read or refused."""
    where = f"{key}.checkpoint={str(path)!r}"
    msg = str(err)
    with open(path, "rb") as fh:
        head = fh.read(4)
    is_pickle = head[:1] == b"\x80"  # the PROTO opcode that starts every pickle of protocol 2 or later
    refused = "weights only load failed" in msg.lower() and ("GLOBAL" in msg or is_pickle)
    if isinstance(err, pickle.UnpicklingError) and refused:
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = f" ({found.group(1)})" if found else ""
        return (
            f"{where} was refused by torch.load(weights_only=True): it pickles Python objects besides tensors{what}. "
            f"If you trust where the file came from, rerun with {key}.trust_checkpoint=true (loading then runs the "
            "pickle's code)"
        )
    if isinstance(err, EOFError) or path.stat().st_size == 0:
        reason = "is empty or cut short"
    elif "central directory" in msg or isinstance(err, zipfile.BadZipFile):
        reason = "is a truncated or corrupted checkpoint (PyTorch cannot read its zip archive)"
    elif not head.startswith(b"PK") and not is_pickle:
        reason = "is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)"
    else:
        detail = _first_sentence(msg) if msg.strip() else "no message"
        reason = f"cannot be read by torch.load ({type(err).__name__}: {detail})"
    return f"{where} {reason}; give a .pth file saved by torch.save"


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
    except pickle.UnpicklingError as err:
        ckpt = _training_checkpoint(path, err, key)  # mmengine's training state: read without running code
    except Exception as err:
        raise ModelError(describe_load_failure(err, path, key)) from err
    if not isinstance(ckpt, dict):
        raise ModelError(f"{key}.checkpoint={str(path)!r} holds a {type(ckpt).__name__}, not a state dict")
    return ckpt


def _training_checkpoint(path: Path, refused: pickle.UnpicklingError, key: str) -> Any:
    """A checkpoint ``weights_only`` refused, read as one mmengine's training loop saves (weights plus training
    state); a pickle that needs anything else keeps the first refusal's message."""
    try:
        return load_training_checkpoint(path)
    except Exception:
        raise ModelError(describe_load_failure(refused, path, key)) from refused


def _strip_prefix(state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with the wrapper prefix (``module.``, ``architecture.``, ...) that matches most keys removed."""

    def strip(prefix: str) -> dict[str, torch.Tensor]:
        return {(k[len(prefix) :] if k.startswith(prefix) else k): v for k, v in state.items()}

    return max((strip(p) for p in _PREFIXES), key=lambda s: sum(k in own for k in s))


def _examples(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "") if keys else "none"


def apply_weights(
    model: nn.Module, ckpt: dict[str, Any], path: Path, sha256: str | None, key: str = "model", partial: bool = False
) -> CheckpointInfo:
    """Load the tensors of ``ckpt`` that match ``model`` by name and shape.

    Args:
        model: the built model.
        ckpt: the loaded checkpoint (a ``state_dict`` inside, or the state dict itself).
        path, sha256: the file and its digest (computed if None).
        key: the model's config key, for messages.
        partial: accept a checkpoint that fits only part of the model (with a loud note).

    Returns:
        The key-match counts and notes; a ModelError when nothing fits, or too little without ``partial``.
    """
    where = f"{key}.checkpoint={str(path)!r}"
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise ModelError(f"{where}: 'state_dict' is a {type(state).__name__}, not a dict")
    own = model.state_dict()
    state = _strip_prefix({k: v for k, v in state.items() if isinstance(v, torch.Tensor)}, own)
    matched = [k for k, v in state.items() if k in own and own[k].shape == v.shape]
    if not matched:
        raise ModelError(
            f"{where} does not fit this model: none of its {len(state)} tensors match a parameter by name and shape; "
            "check model=... (the architecture) against the checkpoint"
        )
    unset = [k for k in own if k not in set(matched)]
    unused = [k for k in state if k not in set(matched)]
    share_set, share_unused = len(matched) / len(own), len(unused) / len(state)
    notes = []
    if share_set < MIN_SET or share_unused > MAX_UNUSED:
        summary = (
            f"it sets {len(matched)} of the model's {len(own)} tensors ({share_set:.0%}; unset: {_examples(unset)}) "
            f"and {len(unused)} of its own {len(state)} go unused ({share_unused:.0%}; e.g. {_examples(unused)})"
        )
        if not partial:
            raise ModelError(
                f"{where} fits only part of this model: {summary}; check the model against the checkpoint, or "
                f"accept it with {key}.partial_checkpoint=true"
            )
        notes.append(f"PARTIAL CHECKPOINT: {where} {summary}; the rest of the model is randomly initialized")
    bad = [k for k in matched if state[k].is_floating_point() and not torch.isfinite(state[k]).all()]
    if bad:
        notes.append(f"NON-FINITE WEIGHTS: {len(bad)} tensors of {where} hold NaN or infinite values: {_examples(bad)}")
    result = model.load_state_dict({k: state[k] for k in matched}, strict=False)
    return CheckpointInfo(
        path=str(path),
        sha256=sha256 or file_sha256(path),
        matched_keys=len(matched),
        missing_keys=len(result.missing_keys),
        unexpected_keys=len(unused),
        notes=tuple(notes),
    )


def checkpoint_palette(ckpt: dict[str, Any]) -> list[list[int]] | None:
    """Class colours stored in a checkpoint's meta (``dataset_meta.palette`` or mmseg 0.x's ``PALETTE``)."""
    meta = ckpt.get("meta", {}) if isinstance(ckpt.get("meta"), dict) else {}
    dataset_meta = meta.get("dataset_meta") if isinstance(meta.get("dataset_meta"), dict) else {}
    palette = {k.lower(): v for k, v in dataset_meta.items()}.get("palette") or meta.get("PALETTE")
    return [list(map(int, c)) for c in palette] if palette else None


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
