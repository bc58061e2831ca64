"""On-disk activation cache: recorded feature maps keyed by everything that determines them.

The key hashes the resolved model config, the checkpoint's sha256 (or the random-init seed), the image bytes, the
test pipeline, the recorder spec, the device class and the library versions. Drawing options (reducer, topk, layout,
output, use_norm) are not in it, so a sweep over them runs the model once per image.

- Compact: each level is stored as float16 with a per-level power-of-two scale (so values of any magnitude, 1e-13 or
  1e9, keep 11 bits of precision and none becomes infinite), deflate-compressed. A run with the cache on quantizes
  fresh features the same way (:meth:`ActivationCache.quantize`), so its pictures and numbers are the same whether
  its features came from the cache or from the model.
- Atomic: entries are written to ``tmp/`` and renamed into place; parallel jobs never see a torn entry, an
  unreadable entry is deleted and recomputed, and temp files left by a killed writer are removed after 15 minutes.
- Verified: each entry holds the key it was written under (and its image's sha256); an entry read under another
  key (files swapped or copied on disk) or written in an older format is not trusted: it is recomputed, replaced,
  and named in :attr:`CacheStats.recomputed` (the manifest and the terminal summary list it).
- Bounded: the folder's size is kept in a small ledger (no walk per run); when it passes ``max_bytes`` the least
  recently used entries (reads touch an entry's mtime) are evicted down to 80% of it, under a file lock, so
  concurrent processes evict safely.
- Best effort: a read or write that fails for any reason but a missing entry (full disk, unwritable folder) turns
  the cache off for the rest of the run with one warning; the run goes on.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import io
import json
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.hashing import stable_hash
from featvis_run.maps.geometry import Geometry, geometry_record
from featvis_run.models.base import ImageFeatures
from featvis_run.predictions import Classification, Detections, Keypoints, Predictions, SegmentationMap
from featvis_run.recording.levels import LevelKey
from featvis_run.store.outputs import write_bytes

__all__ = [
    "ActivationCache",
    "CacheStats",
    "decode_features",
    "dequantize",
    "encode_features",
    "library_versions",
    "quantize_level",
]

_LIBRARIES = ("featvis-run", "torch", "mmcv", "mmdet", "mmengine", "mmsegmentation", "mmpose", "numpy")
_FORMAT = 7  # 6: entries hold their key; 7: geometry as named fields with signed offsets and an affine
_READABLE_FORMATS = (5, 6, 7)  # decode_features also reads 5 and 6 (state files of earlier training runs)
_STALE_TMP_SECONDS = 15 * 60
_EVICT_TO = 0.8


@dataclass
class CacheStats:
    """What the cache did in this run."""

    hits: int = 0
    misses: int = 0
    corrupt: int = 0
    written_bytes: int = 0
    evicted_entries: int = 0
    evicted_bytes: int = 0
    recomputed: list[str] = field(default_factory=list)  # why each entry read was not trusted, naming its image


@functools.cache
def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that can change recorded features (looked up once per process)."""
    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def quantize_level(x: np.ndarray) -> tuple[np.ndarray, float]:
    """(float16 values, power-of-two scale) with ``values * scale`` ~ ``x``: the largest finite |x| maps into
    [2^14, 2^15), so nothing finite overflows and the relative error is at most 2^-11. NaN and infinities stay."""
    finite = np.abs(x[np.isfinite(x)])
    peak = float(finite.max()) if finite.size else 0.0
    scale = 2.0 ** (math.floor(math.log2(peak)) - 14) if peak > 0 else 1.0
    return (x.astype(np.float32) / np.float32(scale)).astype(np.float16), scale


def dequantize(values: np.ndarray, scale: float) -> np.ndarray:
    """The float32 map a :func:`quantize_level` pair stands for."""
    return values.astype(np.float32) * np.float32(scale)


def _encode(item: ImageFeatures, key: str | None = None, image_sha256: str | None = None) -> bytes:
    levels = list(item.features)
    packed = [quantize_level(item.features[k]) for k in levels]
    g, pred = item.geometry, item.predictions
    meta = {
        "format": _FORMAT,
        "key": key,
        "image_sha256": image_sha256,
        "levels": [[k.layer, k.level] for k in levels],
        "scales": [scale for _, scale in packed],
        "geometry": geometry_record(g),  # format 7: named pairs (offsets may be negative), affine
        "predictions": type(pred).__name__ if pred is not None else None,
        "class_names": list(pred.class_names) if pred is not None else [],
        "notes": list(item.notes),
        "explained": list(pred.explained) if isinstance(pred, Classification) else [],
    }
    arrays: dict[str, np.ndarray] = {f"level_{i}": values for i, (values, _) in enumerate(packed)}
    if isinstance(pred, Detections):
        arrays |= {"boxes": pred.boxes, "scores": pred.scores, "labels": pred.labels}
    elif isinstance(pred, SegmentationMap):
        arrays |= {"seg_labels": pred.labels, "palette": pred.palette}
    elif isinstance(pred, Keypoints):
        skeleton = np.asarray(pred.skeleton, np.int64).reshape(-1, 2)
        arrays |= {"keypoints": pred.points, "keypoint_scores": pred.scores, "skeleton": skeleton}
    elif isinstance(pred, Classification):
        arrays |= {"top_indices": pred.indices, "top_scores": pred.scores}
    buf = io.BytesIO()
    np.savez_compressed(buf, meta=np.array(json.dumps(meta)), **arrays)
    return buf.getvalue()


def _decode(path: Path) -> tuple[ImageFeatures, dict[str, Any]]:
    """The entry's features and its metadata (format, key, image sha256)."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if meta.get("format") not in _READABLE_FORMATS:
            raise ValueError(f"cache format {meta.get('format')} is not one of {_READABLE_FORMATS}")
        features = {
            LevelKey(*k): dequantize(data[f"level_{i}"], meta["scales"][i]) for i, k in enumerate(meta["levels"])
        }
        names, kind = tuple(meta["class_names"]), meta["predictions"]
        pred: Predictions | None = None
        if kind == "Detections":
            pred = Detections(data["boxes"], data["scores"], data["labels"], names)
        elif kind == "SegmentationMap":
            pred = SegmentationMap(data["seg_labels"], names, data["palette"])
        elif kind == "Keypoints":
            skeleton = tuple((int(i), int(j)) for i, j in data["skeleton"])
            pred = Keypoints(data["keypoints"], data["keypoint_scores"], names, skeleton)
        elif kind == "Classification":
            explained = tuple(int(i) for i in meta.get("explained", ()))
            pred = Classification(data["top_indices"], data["top_scores"], names, explained)
    geometry = _geometry_from(meta["geometry"])
    return ImageFeatures(geometry, pred, features, tuple(meta.get("notes", ()))), meta


def _geometry_from(stored: Any) -> Geometry:
    """A :class:`Geometry` from format 7's record, or from formats 5 and 6's list of four (h, w) pairs."""
    if isinstance(stored, dict):
        pairs = [tuple(int(v) for v in stored[name]) for name in ("ori_hw", "img_hw", "input_hw", "offset_hw")]
        affine = stored.get("affine")
        rows = tuple(tuple(float(v) for v in row) for row in affine) if affine is not None else None
        return Geometry(*pairs, affine=rows)  # type: ignore[arg-type]
    ori, img, inp, offset = (tuple(int(v) for v in hw) for hw in stored)
    return Geometry(ori, img, inp, offset)


def encode_features(item: ImageFeatures) -> bytes:
    """One image's maps, geometry and predictions as the cache stores them (float16 levels, compressed npz)."""
    return _encode(item)


def decode_features(path: Path) -> ImageFeatures:
    """The :class:`ImageFeatures` an :func:`encode_features` file holds (float32 maps)."""
    return _decode(path)[0]


@dataclass
class ActivationCache:
    """A folder of cached :class:`ImageFeatures`; ``root=None`` disables it (every lookup misses, nothing is kept).

    Args:
        root: the cache folder.
        max_bytes: the size bound (None: unbounded).
    """

    root: Path | None
    max_bytes: int | None = None
    stats: CacheStats = field(default_factory=CacheStats)
    warning: str | None = None  # why the cache was turned off during the run
    home: Path | None = field(init=False)  # the configured folder, kept when the cache turns itself off
    _cleaned: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.home = self.root

    @property
    def configured(self) -> bool:
        """Whether the run was configured with a cache (even if it turned itself off since)."""
        return self.home is not None

    @property
    def enabled(self) -> bool:
        return self.root is not None

    def key(self, model_identity: str, image_sha256: str, recorder_spec: Any) -> str:
        """The entry key of one image's features under one model and recorder spec."""
        return stable_hash(
            {"model": model_identity, "image": image_sha256, "recorder": recorder_spec, "libs": library_versions()}
        )

    def quantize(self, item: ImageFeatures) -> ImageFeatures:
        """``item`` as the cache stores it (float16 with a per-level scale) when the cache is configured, so a run
        draws the same whether features were cached or fresh; unchanged with ``cache=off``."""
        if not self.configured:
            return item
        levels = {k: dequantize(*quantize_level(v)) for k, v in item.features.items()}
        return replace(item, features=levels)

    def _path(self, key: str) -> Path:
        return Path(self.root or ".") / key[:2] / f"{key}.npz"

    def _disable(self, action: str, err: BaseException) -> None:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        self.warning = (
            f"the activation cache at {self.root} could not {action} ({reason}); it is off for the rest of this run"
        )
        print(f"featvis-run: warning: {self.warning}", file=sys.stderr)
        self.root = None

    def get(self, key: str, label: str = "an image") -> ImageFeatures | None:
        """The cached entry, or None: missing, disabled, or not to be trusted, i.e. unreadable (then deleted),
        written under another key or in an older format (then replaced by the caller's :meth:`put`). Entries not
        trusted are named by ``label`` (the image) in :attr:`CacheStats.recomputed`."""
        if self.root is None:
            self.stats.misses += 1
            return None
        path = self._path(key)
        try:
            item, meta = _decode(path)
        except FileNotFoundError:
            self.stats.misses += 1
            return None
        except (PermissionError, IsADirectoryError, NotADirectoryError) as err:
            self._disable("be read", err)
            self.stats.misses += 1
            return None
        except Exception:  # truncated, corrupt or of an unknown format: recompute
            self._distrust(f"cache entry for {label} was unreadable (truncated or corrupt); recomputed")
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        if meta.get("format") != _FORMAT:
            self._distrust(f"cache entry for {label} was in an older cache format; recomputed")
            return None
        if meta.get("key") != key:
            self._distrust(f"cache entry for {label} did not match its key; recomputed")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # least recently used = oldest mtime
        self.stats.hits += 1
        return item

    def _distrust(self, reason: str) -> None:
        self.stats.corrupt += 1
        self.stats.misses += 1
        self.stats.recomputed.append(reason)

    def put(self, key: str, item: ImageFeatures, image_sha256: str | None = None) -> None:
        """Store atomically, with ``key`` (and the image's sha256) inside the entry so a read can verify it; a
        concurrent writer of the same key writes the same bytes (last rename wins). Evicts the least recently used
        entries past ``max_bytes``. Any failure turns the cache off with a warning."""
        if self.root is None:
            return
        try:
            data = _encode(item, key, image_sha256)
            tmp_dir = self._tmp()
            path = self._path(key)
            with self._locked():  # the write and the ledger change together, so no evictor counts one twice
                old = path.stat().st_size if path.exists() else 0
                write_bytes(path, data, overwrite=True, tmp_dir=tmp_dir)
                self.stats.written_bytes += len(data)
                ledger = self._read_ledger()
                size = ledger + len(data) - old if ledger is not None else self._scan_size()
                if self.max_bytes is not None and size > self.max_bytes:
                    size = self._evict(keep=path)
                self._write_ledger(size)
        except Exception as err:  # a cache is an optimization: it never fails the run
            self._disable("be written", getattr(err, "__cause__", None) or err)

    def put_model(self, identity: str, record: dict[str, Any]) -> None:
        """Keep what building a model found out (checkpoint key match, notes, classes), so that a later run served
        from the cache without building the model can still report it. Best effort, like :meth:`put`."""
        if self.root is None:
            return
        try:
            data = json.dumps(record, sort_keys=True).encode()
            write_bytes(self.root / "models" / f"{identity}.json", data, tmp_dir=self._tmp())
        except Exception as err:
            self._disable("be written", getattr(err, "__cause__", None) or err)

    def get_model(self, identity: str) -> dict[str, Any] | None:
        """What :meth:`put_model` kept for ``identity``, or None."""
        if self.root is None:
            return None
        try:
            return json.loads((self.root / "models" / f"{identity}.json").read_text())
        except (OSError, ValueError):
            return None

    def size_bytes(self) -> int:
        """The cache folder's size from its ledger (rebuilt by one scan when missing)."""
        if self.root is None or not self.root.is_dir():
            return 0
        try:
            with self._locked():
                size = self._read_ledger()
                if size is None:
                    size = self._scan_size()
                    self._write_ledger(size)
                return size
        except Exception:  # sizing is informational: never fail a run over it
            return 0

    # ---- internals (the ledger is read and written under the lock) ----
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        assert self.root is not None
        with open(self.root / ".lock", "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _read_ledger(self) -> int | None:
        """The ledger's size, or None when it is missing or unreadable (then the caller scans)."""
        assert self.root is not None
        try:
            return int(json.loads((self.root / "size.json").read_text())["bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _scan_size(self) -> int:
        return sum(size for _, size, _ in self._entries())

    def _write_ledger(self, size: int) -> None:
        assert self.root is not None
        write_bytes(self.root / "size.json", json.dumps({"bytes": max(0, size)}).encode(), tmp_dir=self._tmp())

    def _tmp(self) -> Path:
        """The folder temp files are written to (created; stale files a killed writer left are removed once)."""
        assert self.root is not None
        tmp_dir = self.root / "tmp"
        tmp_dir.mkdir(parents=True, exist_ok=True)
        if not self._cleaned:
            self._clean_tmp(tmp_dir)
        return tmp_dir

    def _entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, mtime) of every entry."""
        assert self.root is not None
        found = []
        for shard in os.scandir(self.root):
            if not shard.is_dir() or len(shard.name) != 2:
                continue
            for entry in os.scandir(shard.path):
                with contextlib.suppress(FileNotFoundError):
                    st = entry.stat()
                    if entry.name.endswith(".npz"):
                        found.append((Path(entry.path), st.st_size, st.st_mtime))
                    elif entry.name.endswith(".tmp") and st.st_mtime < time.time() - _STALE_TMP_SECONDS:
                        os.unlink(entry.path)  # left by a killed writer of an earlier version
        return found

    def _evict(self, keep: Path) -> int:
        """Delete the least recently used entries down to 80% of ``max_bytes``; returns the size left."""
        assert self.max_bytes is not None
        entries = sorted(self._entries(), key=lambda e: e[2])
        size = sum(s for _, s, _ in entries)
        target = int(self.max_bytes * _EVICT_TO)
        for path, entry_size, _ in entries:
            if size <= target:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                size -= entry_size
                self.stats.evicted_entries += 1
                self.stats.evicted_bytes += entry_size
        return size

    def _clean_tmp(self, tmp_dir: Path) -> None:
        """Remove temp files a killed writer left behind (older than 15 minutes: no live write takes that long)."""
        self._cleaned = True
        cutoff = time.time() - _STALE_TMP_SECONDS
        for entry in os.scandir(tmp_dir):
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
