"""Recorder presets a model cannot feed, decided from its config alone (before anything is built): the DETR
encoder on a model without one, a pose model's head on another kind of model, a method of a part the model lacks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from featvis_run.schema import RecorderSpec, RecorderType

__all__ = ["preset_problem"]

_PARTS = ("head", "decode_head", "neck", "backbone")  # the parts whose forward method a preset records


def _top(model_cfg: Mapping[str, Any]) -> list[str]:
    """The config's top-level modules (the keys holding a ``type``)."""
    return [k for k, v in model_cfg.items() if isinstance(v, Mapping) and "type" in v]


def _others(model_cfg: Mapping[str, Any], repo: str, part: str | None = None) -> str:
    """The presets this model can feed instead, as ``recorder=...`` choices (a classifier's neck is a pooling)."""
    parts = (("backbone", "backbone"),) if repo == "mmpretrain" else (("fpn", "neck"), ("backbone", "backbone"))
    choices = [f"recorder={r}" for r, p in parts if model_cfg.get(p)]
    if part != "decode_head" and model_cfg.get("decode_head"):
        choices.append("recorder=decode_head")
    if model_cfg.get("panoptic_head"):  # Mask2Former/MaskFormer: the transformer is in the pixel decoder
        decoder = "{type:module_outputs,source:panoptic_head.pixel_decoder}"
        choices.append(f"recorder=custom '+recorder.recorders.x={decoder}'")
    return " or ".join(choices) or "a recorder of your own (every name: featvis-run mode=layers)"


def preset_problem(name: str, spec: RecorderSpec, model_cfg: Mapping[str, Any], repo: str) -> str | None:
    """The one line refusing recorder ``name`` for the model ``model_cfg`` (a ``{repo}`` config's ``model``), or
    None when the config does not rule it out (the built model is checked again)."""
    kind = str(model_cfg.get("type", "?")).rsplit(".", 1)[-1]
    if spec.type is RecorderType.encoder_memory:
        detr = "encoder" in model_cfg or "DETR" in kind.upper() or "DINO" in kind.upper()
        if not detr:
            return (
                f"recorder {name!r} records the encoder memory of DETR-family detectors (their pre_transformer and "
                f"{spec.source} methods), but {kind} has no transformer encoder; use {_others(model_cfg, repo)}"
            )
        return None
    if spec.type is not RecorderType.method_outputs or spec.source.count(".") != 1:
        return None
    part = spec.source.split(".", 1)[0]
    if part == "head" and name == "head" and repo != "mmpose":
        return (
            f"recorder {name!r} draws a top-down pose model's heatmaps (model.repo=mmpose), but {kind} is a {repo} "
            f"model; use {_others(model_cfg, repo, part)}"
        )
    if part in _PARTS and part not in model_cfg:
        return (
            f"recorder {name!r} records the model's {part!r} ({spec.source}), but {kind} has none (its top-level "
            f"modules: {', '.join(_top(model_cfg))}); use {_others(model_cfg, repo, part)}"
        )
    return None
