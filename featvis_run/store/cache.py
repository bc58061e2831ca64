"""On-disk activation cache: recorded feature maps keyed by everything that determines them.

The key hashes the resolved mmdet config, the checkpoint's sha256 (or the random-init seed), the image bytes, the
test pipeline, the recorder spec, the device class and the library versions. Drawing options (reducer, topk, layout,
output, use_norm) are not in it, so a sweep over them runs the model once per image. Entries are ``.npz`` files
written atomically (temp file + rename), so parallel jobs never see a torn entry; an unreadable entry (e.g. a
truncated file) is deleted and recomputed.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.hashing import stable_hash
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.predictions import Detections
from featvis_run.recording.levels import LevelKey
from featvis_run.store.outputs import write_bytes

__all__ = ["ActivationCache", "CacheStats", "library_versions"]

_LIBRARIES = ("featvis-run", "torch", "mmcv", "mmdet", "mmengine", "numpy")
_FORMAT = 3


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    written_bytes: int = 0


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can change recorded features."""
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def _encode(item: ImageFeatures) -> bytes:
    levels = list(item.features)
    meta = {
        "format": _FORMAT,
        "levels": [[k.layer, k.level] for k in levels],
        "geometry": [item.geometry.ori_hw, item.geometry.img_hw, item.geometry.input_hw, item.geometry.offset_hw],
        "class_names": list(item.detections.class_names),
        "notes": list(item.notes),
    }
    arrays = {f"level_{i}": np.ascontiguousarray(item.features[k], dtype=np.float32) for i, k in enumerate(levels)}
    buf = io.BytesIO()
    np.savez(
        buf,
        meta=np.array(json.dumps(meta)),
        boxes=item.detections.boxes,
        scores=item.detections.scores,
        labels=item.detections.labels,
        **arrays,
    )
    return buf.getvalue()


def _decode(path: Path) -> ImageFeatures:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"cache format {meta.get('format')} != {_FORMAT}")
        ori, img, inp, offset = (tuple(int(v) for v in hw) for hw in meta["geometry"])
        features = {LevelKey(*k): data[f"level_{i}"] for i, k in enumerate(meta["levels"])}
        dets = Detections(data["boxes"], data["scores"], data["labels"], tuple(meta["class_names"]))
    return ImageFeatures(Geometry(ori, img, inp, offset), dets, features, tuple(meta.get("notes", ())))


@dataclass
class ActivationCache:
    """A folder of cached :class:`ImageFeatures`; ``root=None`` disables it (every lookup misses, nothing is kept)."""

    root: Path | None
    stats: CacheStats = field(default_factory=CacheStats)

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def key(self, model_identity: str, image_sha256: str, recorder_spec: Any) -> str:
        return stable_hash(
            {"model": model_identity, "image": image_sha256, "recorder": recorder_spec, "libs": library_versions()}
        )

    def _path(self, key: str) -> Path:
        return Path(self.root or ".") / key[:2] / f"{key}.npz"

    def get(self, key: str) -> ImageFeatures | None:
        """The cached entry, or None (missing, disabled, or unreadable: then it is deleted)."""
        if self.root is None:
            self.stats.misses += 1
            return None
        path = self._path(key)
        try:
            item = _decode(path)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except Exception:  # truncated or corrupt: recompute
            self.stats.corrupt += 1
            self.stats.misses += 1
            path.unlink(missing_ok=True)
            return None
        self.stats.hits += 1
        return item

    def put(self, key: str, item: ImageFeatures) -> None:
        """Store atomically; a concurrent writer of the same key writes the same bytes (last rename wins)."""
        if self.root is None:
            return
        data = _encode(item)
        write_bytes(self._path(key), data, overwrite=True)
        self.stats.written_bytes += len(data)

    def size_bytes(self) -> int:
        """Total size of the cache folder."""
        if self.root is None or not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*.npz"))
