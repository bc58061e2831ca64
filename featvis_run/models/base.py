"""The seam between the runner and a model library: what an adapter plans, builds and returns.

Nothing here imports torch or a model library: the cache and the experiments use these types without loading one.
An adapter (one per OpenMMLab library, e.g. :mod:`featvis_run.models.mmdet`) implements :class:`ModelAdapter`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from featvis_run.errors import error_line
from featvis_run.maps.geometry import Geometry
from featvis_run.predictions import Predictions
from featvis_run.recording.levels import LevelKey
from featvis_run.schema import ModelConfig, RecorderSpec

__all__ = [
    "BuiltModel",
    "CheckpointInfo",
    "ExplainedBatch",
    "ImageFeatures",
    "ImageResult",
    "ModelAdapter",
    "ModelPlan",
    "PredictionFailed",
]


@dataclass(frozen=True)
class ImageResult:
    """One image's placement in the network input and the model's predictions on it (``notes``: what was dropped
    or went wrong, e.g. non-finite boxes)."""

    geometry: Geometry
    predictions: Predictions | None  # None: the model failed before predicting
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageFeatures:
    """One image's recorded maps (uncropped, (C, H, W) each), its geometry, the model's predictions and notes."""

    geometry: Geometry
    predictions: Predictions | None
    features: dict[LevelKey, np.ndarray]
    notes: tuple[str, ...] = ()


class PredictionFailed(Exception):
    """The model failed after its inputs were prepared (in a head or its post-processing): the geometry of each
    image is known, its predictions are not. Maps recorded before the failure can still be drawn."""

    def __init__(self, geometries: Sequence[Geometry], cause: BaseException):
        super().__init__(error_line(cause))  # one line: library messages end in newlines, runs of spaces
        self.geometries = list(geometries)
        self.cause = cause


@dataclass(frozen=True)
class ExplainedBatch:
    """A batch run for Grad-CAM: each image's geometry and the detections its target explains (original pixels),
    and ``score``, the sum of their logits over the batch as a scalar tensor whose graph reaches the recorded maps."""

    results: list[ImageResult]
    score: Any


@dataclass(frozen=True)
class CheckpointInfo:
    """Where the weights came from: a local file (with its sha256 and key match) or a seeded random init."""

    path: str | None
    sha256: str | None
    matched_keys: int = 0
    missing_keys: int = 0  # model parameters the checkpoint did not set
    unexpected_keys: int = 0  # checkpoint tensors unused (unknown name or other shape)
    seed: int | None = None
    notes: tuple[str, ...] = ()  # loud: a partial checkpoint accepted, non-finite weights


@dataclass(frozen=True)
class ModelPlan:
    """A model described but not built: its library, resolved config (cfg-options applied) and checkpoint.

    ``identity`` hashes everything that determines the model's features, for the activation cache and for reusing
    a built model within one process (Hydra's basic launcher runs a sweep's jobs in one process).
    """

    config: ModelConfig
    repo: str
    cfg: Any  # the library's resolved config (an mmengine Config)
    config_path: Path
    checkpoint_path: Path | None
    checkpoint_sha256: str | None
    identity: str
    key: str = "model"  # its config key (model, model_a, model_b), named in error messages
    notes: tuple[str, ...] = ()  # what the adapter changed in the config (e.g. slide inference made whole)


@dataclass(frozen=True)
class BuiltModel:
    """A model built from a :class:`ModelPlan`, in eval mode on its device, with its test pipeline."""

    plan: ModelPlan
    model: Any  # torch.nn.Module
    classes: tuple[str, ...]
    checkpoint: CheckpointInfo
    pipeline: Any  # the library's test pipeline (callable on one image's data dict)
    palette: Any = None  # (K, 3) RGB class colours when the library or checkpoint defines them


class ModelAdapter(Protocol):
    """What a model library provides. Implementations set the library's default scope around every call."""

    repo: str

    def plan(self, mc: ModelConfig, key: str) -> ModelPlan:
        """Resolve and check ``mc`` (config, cfg-options, checkpoint file, device) without building anything.

        Args:
            mc: the model's config group.
            key: its config key (``model``, ``model_a``, ...), for error messages.
        """
        ...

    def build(self, plan: ModelPlan) -> BuiltModel:
        """Build the model: weights from the plan's checkpoint, else seeded random init."""
        ...

    def batch_groups(self, images: Sequence[np.ndarray]) -> list[list[int]]:
        """Indices of the images that can share one forward pass (a library may need equal sizes)."""
        ...

    def redirect_recorders(
        self, cfg: Any, recorders: Mapping[str, RecorderSpec]
    ) -> tuple[dict[str, RecorderSpec], list[str]]:
        """Point recorders where the model (its resolved config ``cfg``) computes what they name; returns them and
        notes saying what changed."""
        ...

    def run_batch(self, built: BuiltModel, images: Sequence[np.ndarray]) -> list[ImageResult]:
        """Run the library's test pipeline and test step on BGR images as one batch (recorders hook meanwhile).

        Returns:
            Each image's geometry (for aligning maps) and predictions, in input order.

        Raises:
            PredictionFailed: the model failed after the inputs were prepared (geometry known).
        """
        ...

    def explain_batch(
        self, built: BuiltModel, images: Sequence[np.ndarray], target: Any, score_thr: float
    ) -> ExplainedBatch:
        """Run a batch with gradients on and pick the logits of the detections ``target`` explains.

        Raises:
            ModelError: the model's architecture is not supported (one line, naming what is).
            TargetNotFound: an image has no detection the target matches.
        """
        ...
