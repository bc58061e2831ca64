"""Reading a local checkpoint file safely and applying it to a model, with the key-match counts users need.

A checkpoint that fits only part of the model (it sets under 90% of the model's tensors, or over 10% of its own go
unused) is refused unless the user accepts it (``partial_checkpoint``); then, and for weights that are not finite,
the run carries a loud note.
"""

from __future__ import annotations

import numbers
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.hashing import file_sha256
from featvis_run.models.base import CheckpointInfo
from featvis_run.models.checkpoint_scan import CheckpointRefused, scan_checkpoint
from featvis_run.models.training_checkpoint import load_without_trust

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


def _file_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a checkpoint at all (empty, a cut-off zip, neither zip nor pickle), else None."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if not head:
        return "is empty or cut short"
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        return "is a truncated or corrupted checkpoint (PyTorch cannot read its zip archive)"
    if not head.startswith(b"PK") and head[:1] != b"\x80":  # PROTO starts every pickle of protocol 2 or later
        return "is not a PyTorch checkpoint (neither a torch.save archive nor a pickle)"
    return None


def describe_load_failure(err: BaseException, path: Path, key: str) -> str:
    """One whole-sentence line for a checkpoint ``torch.load`` could not read or refused."""
    where = f"{key}.checkpoint={str(path)!r}"
    msg = str(err)
    if isinstance(err, pickle.UnpicklingError) and "weights only load failed" in msg.lower():
        found = re.search(r"GLOBAL ([\w.]+)", msg)
        what = f" ({found.group(1)})" if found else ""
        return _refused(where, f"it pickles Python objects besides tensors{what}", key)
    problem = _file_problem(path)
    if problem is None and (isinstance(err, EOFError) or path.stat().st_size == 0):
        problem = "is empty or cut short"
    elif problem is None and ("central directory" in msg or isinstance(err, zipfile.BadZipFile)):
        problem = "is a truncated or corrupted checkpoint (PyTorch cannot read its zip archive)"
    elif problem is None:
        detail = _first_sentence(msg) if msg.strip() else "no message"
        problem = f"cannot be read by torch.load ({type(err).__name__}: {detail})"
    return f"{where} {problem}; give a .pth file saved by torch.save"


def _refused(where: str, reason: str, key: str) -> str:
    return (
        f"{where} was refused by torch.load(weights_only=True): {reason}. If you trust where the file came from, "
        f"rerun with {key}.trust_checkpoint=true (loading then runs the pickle's code)"
    )


def load_checkpoint_state(path: Path, trust: bool, key: str = "model") -> dict[str, Any]:
    """Read a checkpoint file: unless the user trusts it, checked first, then loaded running no code.

    Args:
        path: the checkpoint file.
        trust: load arbitrary pickles (``<key>.trust_checkpoint=true``).
        key: the model's config key, for error messages.

    Returns:
        The loaded dict; a ModelError names the file and the fix when it cannot be read or is refused.
    """
    if not path.is_file():
        raise ModelError(f"{key}.checkpoint={str(path)!r}: no such file; give the path of a local .pth checkpoint")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False) if trust else _load_untrusted(path, key)
    except ModelError:
        raise
    except Exception as err:
        raise ModelError(describe_load_failure(err, path, key)) from err
    if not isinstance(ckpt, dict):
        raise ModelError(f"{key}.checkpoint={str(path)!r} holds a {type(ckpt).__name__}, not a state dict")
    return ckpt


def _load_untrusted(path: Path, key: str) -> Any:
    """Scan ``path`` (calls, BUILDs, sizes: see checkpoint_scan), then load it with torch's weights_only unpickler and
    the training-state allowlist; nothing of a refused file is built."""
    where = f"{key}.checkpoint={str(path)!r}"
    problem = _file_problem(path)
    if problem:
        raise ModelError(f"{where} {problem}; give a .pth file saved by torch.save")
    try:
        scan_checkpoint(path)
    except CheckpointRefused as err:
        raise ModelError(_refused(where, str(err), key)) from err
    except Exception as err:  # a damaged zip or pickle: zipfile, pickletools (ValueError), a short stack or memo
        detail = _first_sentence(str(err)) if str(err).strip() else type(err).__name__
        raise ModelError(
            f"{where} is a truncated or corrupted checkpoint (its pickle cannot be read: {detail}); give a .pth file "
            "saved by torch.save"
        ) from err
    return load_without_trust(path)


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


def _dataset_meta(ckpt: dict[str, Any], where: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint's ``meta`` and its ``dataset_meta`` (str keys lower-cased); {} where absent."""
    meta = ckpt.get("meta") if isinstance(ckpt.get("meta"), dict) else {}
    dataset_meta = meta.get("dataset_meta", {})
    if dataset_meta is None:
        dataset_meta = {}
    if not isinstance(dataset_meta, dict):
        raise ModelError(_odd_meta(where, "['dataset_meta']", dataset_meta, "a dict (classes, palette)"))
    return meta, {k.lower(): v for k, v in dataset_meta.items() if isinstance(k, str)}


def _odd_meta(where: str, name: str, value: Any, expected: str) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    kind = type(value).__name__
    article = "an" if kind[:1] in "aeiou" else "a"
    return (
        f"{where}: its meta{name} is {article} {kind} ({shown}); expected {expected} (re-save the "
        "checkpoint without it to use the config's)"
    )


def _colour(value: Any) -> list[int] | None:
    """``value`` as an [r, g, b] of 0-255 integers, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 3:
        return None
    ok = all(isinstance(c, numbers.Real) and not isinstance(c, bool) and 0 <= c <= 255 and c == int(c) for c in value)
    return [int(c) for c in value] if ok else None


def checkpoint_palette(ckpt: dict[str, Any], where: str = "the checkpoint") -> list[list[int]] | None:
    """Class colours stored in a checkpoint's meta (``dataset_meta.palette`` or mmseg 0.x's ``PALETTE``); a
    ModelError names the key when they are not a list of [r, g, b] (0-255)."""
    meta, dataset_meta = _dataset_meta(ckpt, where)
    name, palette = ("['dataset_meta']['palette']", dataset_meta.get("palette"))
    if palette is None or (isinstance(palette, (list, tuple)) and not palette):
        name, palette = "['PALETTE']", meta.get("PALETTE")
    if palette is None or (isinstance(palette, (list, tuple)) and not palette):
        return None
    listed = palette.tolist() if isinstance(palette, np.ndarray) else palette
    colours = [_colour(c) for c in listed] if isinstance(listed, (list, tuple)) else [None]
    if any(c is None for c in colours):
        raise ModelError(_odd_meta(where, name, palette, "a list of [r, g, b] colours of integers 0-255"))
    return colours


def checkpoint_classes(ckpt: dict[str, Any], where: str = "the checkpoint") -> tuple[str, ...] | None:
    """Class names stored in a checkpoint's meta (mmengine's ``dataset_meta`` or mmdet 2.x's ``CLASSES``); a
    ModelError names the key when they are not a list of strings."""
    meta, dataset_meta = _dataset_meta(ckpt, where)
    for name, classes in (
        ("['dataset_meta']['classes']", dataset_meta.get("classes")),
        ("['CLASSES']", meta.get("CLASSES")),
    ):
        if classes is None or (isinstance(classes, (list, tuple)) and not classes):
            continue
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise ModelError(_odd_meta(where, name, classes, "a list of class names (strings)"))
        return tuple(classes)
    return None
