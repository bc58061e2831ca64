"""Annotated datasets as input: a COCO json's boxes matched to a run's images, and the class filter.

``images.annotations=<COCO json>`` gives each input image the ground-truth boxes of the COCO image whose
``file_name`` is the input's path under the images folder (``images=<folder>``), or else its basename (when that
basename names one COCO image only). ``images.dataset=<mmdet config>`` reads the test split's ``ann_file`` and image
folder (``data_root`` + ``data_prefix.img``) from an mmdet dataset config. ``images.classes=[a, b]`` keeps the
images whose annotations hold any of those classes.

A json that is not COCO, or disagrees with the images (a box outside its image, an image size that is not the
file's), is one InputError line naming the file and the first problem. Images without annotations are kept (a
note counts them). Boxes are ``[x1, y1, x2, y2]`` in original image pixels (COCO stores ``[x, y, w, h]``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featvis_run.errors import ConfigError, InputError
from featvis_run.predictions import Detections

__all__ = [
    "AnnotatedInputs",
    "AnnotationSet",
    "GroundTruth",
    "annotate_inputs",
    "dataset_source",
    "read_coco",
    "run_annotations",
]


@dataclass(frozen=True)
class GroundTruth:
    """One image's annotated boxes: ``boxes`` as (x1, y1, x2, y2) tuples in original pixels, ``labels`` their class
    names; ``hw`` the (height, width) the json gives the image (None when it gives none)."""

    file_name: str
    boxes: tuple[tuple[float, float, float, float], ...]
    labels: tuple[str, ...]
    hw: tuple[int, int] | None = None

    def as_detections(self) -> Detections:
        """The boxes as :class:`Detections` (score 1) for drawing."""
        names = tuple(dict.fromkeys(self.labels))
        boxes = np.asarray(self.boxes, np.float32).reshape(-1, 4)
        labels = np.asarray([names.index(lab) for lab in self.labels], np.int64)
        return Detections(boxes, np.ones(len(self.labels), np.float32), labels, names)

    def record(self) -> dict[str, Any]:
        """The manifest's ``images[].annotations`` entry."""
        return {"boxes": [{"bbox": list(b), "label": lab} for b, lab in zip(self.boxes, self.labels, strict=True)]}


@dataclass(frozen=True)
class AnnotationSet:
    """A COCO json read and checked: its images by ``file_name`` and its category names."""

    source: str
    images: dict[str, GroundTruth]
    categories: tuple[str, ...]


@dataclass(frozen=True)
class AnnotatedInputs:
    """The inputs a run keeps, each image's ground truth (by image id; absent: not in the json) and notes."""

    inputs: list[tuple[str, Path]]
    truth: dict[str, GroundTruth]
    notes: tuple[str, ...] = ()


def _bad(source: str, problem: str) -> InputError:
    return InputError(f"{source}: {problem}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _list_of_dicts(data: dict[str, Any], key: str, source: str) -> list[dict[str, Any]]:
    items = data.get(key)
    if not isinstance(items, list):
        raise _bad(source, f"has no {key!r} list; a COCO json has 'images', 'annotations' and 'categories'")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise _bad(source, f"{key}[{i}] is not an object")
    return items


def _categories(data: dict[str, Any], source: str) -> dict[Any, str]:
    names: dict[Any, str] = {}
    for i, cat in enumerate(_list_of_dicts(data, "categories", source)):
        if "id" not in cat or not isinstance(cat.get("name"), str):
            raise _bad(source, f"categories[{i}] needs an 'id' and a 'name'")
        if cat["id"] in names:
            raise _bad(source, f"categories[{i}]: category id {cat['id']!r} appears twice")
        names[cat["id"]] = cat["name"]
    return names


def _image_entries(data: dict[str, Any], source: str) -> dict[Any, tuple[str, tuple[int, int] | None]]:
    entries: dict[Any, tuple[str, tuple[int, int] | None]] = {}
    seen: set[str] = set()
    for i, im in enumerate(_list_of_dicts(data, "images", source)):
        if "id" not in im or not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise _bad(source, f"images[{i}] needs an 'id' and a 'file_name'")
        name = _normal(im["file_name"])
        if im["id"] in entries:
            raise _bad(source, f"images[{i}]: image id {im['id']!r} appears twice")
        if name in seen:
            raise _bad(source, f"images[{i}]: file_name {im['file_name']!r} appears twice")
        seen.add(name)
        hw = None
        if "height" in im or "width" in im:
            h, w = im.get("height"), im.get("width")
            if not (isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0):
                raise _bad(source, f"images[{i}] ({im['file_name']}): height and width must be positive integers")
            hw = (h, w)
        entries[im["id"]] = (name, hw)
    return entries


def read_coco(path: str | Path, source: str | None = None) -> AnnotationSet:
    """Read and check a COCO json (``source``: how errors name it, default ``images.annotations='<path>'``)."""
    source = source or f"images.annotations={str(path)!r}"
    try:
        data = json.loads(Path(path).expanduser().read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise _bad(source, "no such file; give the path of a COCO json") from None
    except (OSError, UnicodeDecodeError) as err:
        raise _bad(source, f"cannot be read ({err}); check the file") from None
    except json.JSONDecodeError as err:
        raise _bad(source, f"is not JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(data, dict):
        raise _bad(source, "is not a COCO json (an object with 'images', 'annotations' and 'categories')")
    cats = _categories(data, source)
    entries = _image_entries(data, source)
    boxes: dict[Any, list[tuple[float, float, float, float]]] = {k: [] for k in entries}
    labels: dict[Any, list[str]] = {k: [] for k in entries}
    for i, ann in enumerate(_list_of_dicts(data, "annotations", source)):
        where = f"annotations[{i}]"
        if ann.get("image_id") not in entries:
            raise _bad(source, f"{where} refers to image_id {ann.get('image_id')!r}, which 'images' does not list")
        if ann.get("category_id") not in cats:
            raise _bad(source, f"{where} refers to category_id {ann.get('category_id')!r}, not in 'categories'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise _bad(source, f"{where}: bbox {bbox!r} is not [x, y, width, height] (4 finite numbers)")
        x, y, w, h = (float(v) for v in bbox)
        if w < 0 or h < 0:
            raise _bad(source, f"{where}: bbox {bbox!r} has a negative width or height")
        name, hw = entries[ann["image_id"]]
        if hw is not None and (x < -1 or y < -1 or x + w > hw[1] + 1 or y + h > hw[0] + 1):
            raise _bad(source, f"{where}: bbox {bbox!r} lies outside its image {name} ({hw[1]}x{hw[0]})")
        boxes[ann["image_id"]].append((x, y, x + w, y + h))
        labels[ann["image_id"]].append(cats[ann["category_id"]])
    images = {name: GroundTruth(name, tuple(boxes[k]), tuple(labels[k]), hw) for k, (name, hw) in entries.items()}
    return AnnotationSet(source, images, tuple(dict.fromkeys(cats.values())))


def _normal(file_name: str) -> str:
    """A file_name compared as a relative POSIX path (``./a\\b.png`` -> ``a/b.png``)."""
    name = file_name.replace("\\", "/")
    while name.startswith("./"):
        name = name[2:]
    return name


def dataset_source(config: str) -> tuple[Path, Path]:
    """(annotation file, image folder) of an mmdet dataset config's test split (``test_dataloader.dataset``:
    ``data_root`` + ``ann_file``, ``data_root`` + ``data_prefix.img``). The config is Python that mmengine runs."""
    from mmengine.config import Config

    from featvis_run.errors import error_line

    path = Path(config).expanduser()
    if not path.is_file():
        raise ConfigError(f"images.dataset={config!r}: no such file; give an mmdet dataset config (.py)")
    try:
        cfg = Config.fromfile(str(path))
    except Exception as err:  # noqa: BLE001 - any failure of the config's code is one line
        raise ConfigError(f"images.dataset={config!r} cannot be read: {error_line(err)}") from None
    dataset = (cfg.get("test_dataloader") or {}).get("dataset")
    while isinstance(dataset, dict) and "ann_file" not in dataset and "dataset" in dataset:
        dataset = dataset["dataset"]  # through dataset wrappers
    if not isinstance(dataset, dict) or not dataset.get("ann_file"):
        raise ConfigError(f"images.dataset={config!r} has no test_dataloader.dataset.ann_file")
    root = Path(str(dataset.get("data_root") or ""))
    prefix = dataset.get("data_prefix") or {}
    img = prefix.get("img", prefix.get("img_path", "")) if isinstance(prefix, dict) else str(prefix)

    def under_root(value: str) -> Path:  # as mmdet joins them (a relative data_root is relative to the cwd)
        p = Path(value).expanduser()
        return p if p.is_absolute() else root / p

    return under_root(str(dataset["ann_file"])), under_root(str(img or ""))


def _relative(path: Path, root: Path | None) -> str | None:
    if root is None:
        return None
    try:
        return Path(os.path.relpath(path.resolve(), root.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return None


def _check_size(truth: GroundTruth, path: Path, source: str) -> None:
    """The json's image size is the file's (else its boxes are in another frame)."""
    if truth.hw is None:
        return
    from PIL import Image

    try:
        with Image.open(path) as im:  # the header only
            w, h = im.size
    except Exception:  # noqa: BLE001 - not readable here: the image loader reports it
        return
    if (h, w) != truth.hw:
        raise _bad(
            source,
            f"{truth.file_name} is {truth.hw[1]}x{truth.hw[0]} in the json but {path} is {w}x{h}; the boxes would "
            "not fit: give the json of these images",
        )


def annotate_inputs(
    inputs: Sequence[tuple[str, Path]], ann: AnnotationSet, root: Path | None, classes: Sequence[str] | None
) -> AnnotatedInputs:
    """Match ``inputs`` (id, path) to ``ann``'s images: by path relative to ``root`` (the images folder), else by
    basename when one COCO image has it. With ``classes``, keep the images holding any of them. A json that matches
    no input is an InputError; the images without annotations are counted in a note."""
    if classes is not None:
        unknown = [c for c in classes if c not in ann.categories]
        if unknown or not classes:
            shown = ", ".join(ann.categories[:20]) + (", ..." if len(ann.categories) > 20 else "")
            raise ConfigError(
                f"images.classes={list(classes)!r}: {', '.join(map(repr, unknown)) or 'an empty list'} "
                f"{'is' if len(unknown) == 1 else 'are'} not a category of {ann.source}; its categories: {shown}"
            )
    by_base: dict[str, list[str]] = {}
    for name in ann.images:
        by_base.setdefault(name.rsplit("/", 1)[-1], []).append(name)
    truth: dict[str, GroundTruth] = {}
    for image_id, path in inputs:
        rel = _relative(path, root)
        found = ann.images.get(rel) if rel is not None else None
        if found is None and len(by_base.get(path.name, [])) == 1:
            found = ann.images[by_base[path.name][0]]
        if found is not None:
            _check_size(found, path, ann.source)
            truth[image_id] = found
    if not truth:
        where = f" under {root}" if root is not None else ""
        example = next(iter(ann.images), "-")
        raise _bad(
            ann.source,
            f"no input image{where} matches a file_name in it (e.g. {example!r}); give the images folder the "
            "file_names are relative to",
        )
    kept = list(inputs)
    notes: list[str] = []
    missing = sum(image_id not in truth for image_id, _ in inputs)
    if classes is not None:
        wanted = set(classes)
        kept = [(i, p) for i, p in inputs if i in truth and wanted & set(truth[i].labels)]
        notes.append(
            f"images.classes={list(classes)}: kept {len(kept)} of {len(inputs)} images (those annotated with any "
            "of these classes)"
        )
        if not kept:
            raise InputError(f"images.classes={list(classes)}: no input image holds any of these classes")
    elif missing:
        notes.append(
            f"{missing} of {len(inputs)} images have no entry in {ann.source}: drawn without ground truth (their "
            "metrics use the explained detections' boxes)"
        )
    return AnnotatedInputs(kept, {i: truth[i] for i, _ in kept if i in truth}, tuple(notes))


def run_annotations(cfg: Any, inputs: Sequence[tuple[str, Path]]) -> AnnotatedInputs | None:
    """A run's annotations (``images.annotations`` or ``images.dataset``) matched to its inputs and filtered by
    ``images.classes``; None when the run has none."""
    im = cfg.images
    if im.annotations is None and im.dataset is None:
        if im.classes is not None:
            raise ConfigError(
                f"images.classes={list(im.classes)} keeps images by their annotations: add "
                "images.annotations=<COCO json> (or images.dataset=<mmdet config>)"
            )
        return None
    if im.annotations is not None and im.dataset is not None:
        raise ConfigError(
            f"images.annotations={im.annotations!r} and images.dataset={im.dataset!r} are both given; keep one"
        )
    if im.dataset is not None:
        ann_file, root = dataset_source(im.dataset)
        ann = read_coco(ann_file, f"images.dataset={im.dataset!r} (its ann_file {str(ann_file)!r})")
    else:
        paths = im.paths
        root = Path(paths).expanduser() if isinstance(paths, str) and Path(paths).expanduser().is_dir() else None
        ann = read_coco(im.annotations)
    return annotate_inputs(inputs, ann, root, im.classes)
