"""Run folders made by hand (no model): images with padded or centred network inputs, maps of known values, and the
report page written for them. Shared by the report page's fast and browser tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from featvis_run.maps.geometry import Geometry, cell_placement, crop_valid, geometry_record, valid_cells
from featvis_run.report.page import write_run_page
from featvis_run.store.manifest import ImageRecord, MapRecord, ModelRecord, RunResult
from featvis_run.store.outputs import write_array


@dataclass(frozen=True)
class FakeImage:
    id: str
    geometry: Geometry
    feat_hw: dict[str, tuple[int, int]]  # level -> uncropped map size


#: a 100 x 150 image resized to 80 x 120 and padded right and bottom to 96 x 128; one centred in its input
PADDED = FakeImage(
    "padded", Geometry((100, 150), (80, 120), (96, 128), (0, 0)), {"p3": (12, 16), "p4": (6, 8), "p5": (3, 4)}
)
CENTRED = FakeImage(
    "centred", Geometry((60, 120), (64, 128), (128, 128), (32, 0)), {"p3": (16, 16), "p4": (8, 8), "p5": (4, 4)}
)
CHANNELS = 6


def _model() -> ModelRecord:
    return ModelRecord("fake", "mmdet", "fake.py", "w/epoch_3.pth", "ab" * 32, None, "cpu", 3)


def make_run(out_dir: Path, images: tuple[FakeImage, ...] = (PADDED, CENTRED), seed: int = 0) -> RunResult:
    """A multi_image run folder with a map and the (C, h, w) features of each level of each image, its page
    written; the maps' values are distinct random numbers (seeded)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, outputs, sources = [], [], {}
    for im in images:
        h, w = im.geometry.ori_hw
        photo = np.full((h, w, 3), 90, np.uint8)
        cv2.circle(photo, (w // 3, h // 2), min(h, w) // 4, (40, 40, 220), -1)
        source = out_dir.parent / f"{out_dir.name}-inputs" / f"{im.id}.png"
        source.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(source), photo)
        sources[im.id] = str(source.resolve())
        boxes = {"boxes": [{"bbox": [10.0, 12.0, 50.0, 40.0], "label": "circle", "score": 0.9}]}
        records.append(
            ImageRecord(
                str(source.resolve()),
                (h, w),
                im.geometry.input_hw,
                id=im.id,
                geometry=geometry_record(im.geometry),
                predictions=boxes,
            )
        )
        for level, feat_hw in im.feat_hw.items():
            feat = rng.normal(size=(CHANNELS, *feat_hw)).astype(np.float32)
            valid = crop_valid(feat, im.geometry)
            reduced = valid.max(axis=0)
            base = f"{im.id}/neck/{level}"
            write_array(out_dir / f"{base}.npy", reduced)
            write_array(out_dir / f"{base}.features.npy", valid)
            stride, origin = cell_placement(feat_hw, im.geometry)
            outputs.append(
                MapRecord(
                    image=im.id,
                    layer="neck",
                    level=level,
                    shape=(CHANNELS, *feat_hw),
                    valid_hw=valid_cells(feat_hw, im.geometry),
                    reducer="pixel_wise_max",
                    channels=(),
                    stats={"min": float(reduced.min()), "max": float(reduced.max()), "mean": float(reduced.mean())},
                    file=f"{base}.npy",
                    scale=(float(reduced.min()), float(reduced.max())),
                    arrays={
                        "map": {"file": f"{base}.npy", "shape": list(reduced.shape)},
                        "features": {"file": f"{base}.features.npy", "shape": list(valid.shape)},
                    },
                    stride_hw=stride,
                    cell_origin=origin,
                )
            )
    result = RunResult(
        "multi_image",
        out_dir,
        {"output": {"colormap": "jet", "alpha": 0.5}},
        (_model(),),
        tuple(records),
        tuple(outputs),
        extra={"scale": {"mode": "per_map", "clip_percentile": None}},
    )
    result.save()
    return write_run_page(result, sources)


def expected_cell(manifest: dict, image: str, level: str, x: float, y: float) -> tuple[int, int] | None:
    """FORMAT.md's mapping, written out: image pixel (x, y) -> (row, col) of ``<level>.npy``, or None."""
    im = next(i for i in manifest["images"] if i["id"] == image)
    out = next(o for o in manifest["outputs"] if o["image"] == image and o["level"] == level)
    g = im["geometry"]
    if not (0 <= x < g["ori_hw"][1] and 0 <= y < g["ori_hw"][0]):
        return None
    x_in = x * g["img_hw"][1] / g["ori_hw"][1] + g["offset_hw"][1]
    y_in = y * g["img_hw"][0] / g["ori_hw"][0] + g["offset_hw"][0]
    row = int(np.floor(y_in / out["stride_hw"][0])) - out["cell_origin"][0]
    col = int(np.floor(x_in / out["stride_hw"][1])) - out["cell_origin"][1]
    h, w = out["valid_hw"]
    return (row, col) if 0 <= row < h and 0 <= col < w else None
