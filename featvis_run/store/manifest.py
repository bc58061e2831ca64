"""Frozen records of a run (what was drawn, from what, how long it took) and the manifest they save to."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from featvis_run.store.outputs import write_json

__all__ = ["FORMAT_VERSION", "Failure", "ImageRecord", "MapRecord", "ModelRecord", "RunResult"]

#: the manifest's ``format_version`` (2: images carry geometry and predictions, maps their stride and cell origin)
FORMAT_VERSION = 2


@dataclass(frozen=True)
class MapRecord:
    """One written image: which map of which image, its shape, how it was reduced, and its values."""

    image: str
    layer: str
    level: str
    shape: tuple[int, int, int]
    valid_hw: tuple[int, int]
    reducer: str
    channels: tuple[int, ...]
    stats: dict[str, float | None]
    file: str
    note: str | None = None
    non_finite: int = 0  # NaN and infinite values in the recorded map (drawn grey; stats are over finite values)
    scale: tuple[float, float] | None = None  # [lo, hi] of the colours; None: grid tiles scaled alone (tile_scales)
    tile_scales: tuple[tuple[float, float] | None, ...] = ()
    arrays: dict[str, Any] = field(default_factory=dict)  # saved .npy files: {"map"|"features": {file, shape}}
    stride_hw: tuple[float, float] | None = None  # network-input pixels per cell (None: runs before format 2)
    cell_origin: tuple[int, int] | None = None  # the first valid cell's (row, col) in the uncropped map


@dataclass(frozen=True)
class ImageRecord:
    """An input image that was drawn: its path, original and network-input sizes, and boxes drawn. ``id`` names
    its output folder: the file's stem, made unique over the run's inputs (``a``, ``a-2``; docs: many images)."""

    path: str
    size_hw: tuple[int, int]
    input_hw: tuple[int, int]
    detections: int | None = None  # a detector's boxes scoring at least output.pred_score_thr
    boxes_drawn: int | None = None  # of those, the ones drawn (at most output.max_boxes, the best by score)
    classes_predicted: int | None = None  # a segmentor's classes present in its class map
    keypoints_drawn: int | None = None  # a pose model's keypoints scoring at least output.pred_score_thr
    # what the model predicted, in original pixels (pose: {keypoints: [[x, y, score]], names, skeleton})
    predictions: dict[str, Any] | None = None
    explained: dict[str, Any] | None = None  # reducer=gradcam: the target and the detections it explained
    id: str | None = None  # the output folder name (None in records of runs before ids were recorded)
    annotations: dict[str, Any] | None = None  # images.annotations: {"boxes": [{"bbox", "label"}]}
    metrics: dict[str, Any] | None = None  # analysis.metrics: pointing_game, energy_in_boxes, deletion/insertion_auc
    geometry: dict[str, Any] | None = None  # ori_hw, img_hw, input_hw, offset_hw, affine (see FORMAT)
    # the stored input picture, relative to the run folder (``<image>/image.jpg``; output.pictures=maps|both, else
    # written for the report page), and its [H, W] (at most the network input's)
    image_file: str | None = None
    image_file_hw: tuple[int, int] | None = None


@dataclass(frozen=True)
class Failure:
    """An input that could not be processed and why; the run goes on and ends non-zero."""

    item: str
    reason: str


@dataclass(frozen=True)
class ModelRecord:
    """The manifest's description of a model: name, library, config, weights, device and checkpoint key match."""

    name: str
    repo: str
    mmdet_config: str
    checkpoint: str | None
    sha256: str | None
    seed: int | None
    device: str
    num_classes: int
    matched_keys: int | None = None  # checkpoint key match: None when the model came from the cache
    missing_keys: int | None = None
    unexpected_keys: int | None = None

    @property
    def weights(self) -> str:
        return self.sha256 or "random init"


@dataclass(frozen=True)
class RunResult:
    """Everything a run produced; :meth:`save` writes it as ``manifest.json`` in ``out_dir``."""

    experiment: str
    out_dir: Path
    config: dict[str, Any]
    models: tuple[ModelRecord, ...]
    images: tuple[ImageRecord, ...]
    outputs: tuple[MapRecord, ...]
    failures: tuple[Failure, ...] = ()
    notes: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def manifest(self) -> dict[str, Any]:
        models = []
        for m in self.models:
            d = asdict(m)
            d["weights"] = m.weights
            models.append(d)
        return {
            "format_version": FORMAT_VERSION,
            "experiment": self.experiment,
            "status": "ok" if self.ok else "failed",
            "out_dir": str(self.out_dir),
            "models": models,
            "images": [asdict(i) for i in self.images],
            "outputs": [asdict(o) for o in self.outputs],
            "failures": [asdict(f) for f in self.failures],
            "notes": list(self.notes),
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            **self.extra,
            "config": self.config,
        }

    def save(self) -> Path:
        """Write ``manifest.json`` atomically (a resumed run replaces its own earlier manifest)."""
        return write_json(self.out_dir / "manifest.json", self.manifest())
