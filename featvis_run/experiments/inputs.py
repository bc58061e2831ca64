"""The input images of a run: which files, their output names, and decoding them in batches."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from featvis_run.errors import ConfigError, InputError
from featvis_run.schema import Config
from featvis_run.store.images import (
    DEFAULT_MAX_PIXELS,
    InputImage,
    collect_images,
    demo_image_path,
    load_image,
    select_images,
)
from featvis_run.store.manifest import Failure
from featvis_run.store.outputs import safe_name

__all__ = [
    "ImageBatches",
    "check_inputs",
    "image_paths",
    "input_sources",
    "named_inputs",
    "per_box",
    "picture_ids",
    "selected_inputs",
    "unique_ids",
]


def image_paths(cfg: Config) -> list[Path]:
    """The input images of a single-image run (``image``, or the shipped demo scene)."""
    return [Path(cfg.image).expanduser() if cfg.image else demo_image_path()]


def check_inputs(cfg: Config) -> None:
    """Refuse inputs the experiment would ignore: ``image`` and ``images`` together, ``images`` in a single run."""
    if cfg.image and cfg.images.paths is not None:
        raise ConfigError(
            f"image={cfg.image!r} and images={cfg.images.paths!r} are both given; keep one "
            "(image= for one file, images= for a folder, glob or list)"
        )
    if cfg.images.paths is not None and cfg.experiment.name == "single":
        raise ConfigError(
            f"images={cfg.images.paths!r} is read by experiment=multi_image (and diff); add experiment=multi_image, "
            "or give one file as image=..."
        )


def unique_ids(paths: Sequence[Path]) -> list[str]:
    """Output folder names for images, unique whatever the names (compared ignoring case, as on macOS/Windows).

    An id is the file's stem (made file-name safe). When several inputs share a stem, the first in input order keeps
    it and each later one gets ``stem-N`` with the smallest N >= 2 that is neither any input's stem nor an id given
    already: ``a-2.jpg, a.jpg, a.png`` -> ``a-2, a, a-3``. A stem no other input shares stays the bare stem.
    """
    stems = [safe_name(p.stem) for p in paths]
    taken = {s.casefold() for s in stems}  # every stem is reserved, so a made-up id never takes another's name
    given: set[str] = set()
    ids = []
    for stem in stems:
        candidate, n = stem, 1
        while candidate.casefold() in given or (n > 1 and candidate.casefold() in taken):
            n += 1
            candidate = f"{stem}-{n}"
        given.add(candidate.casefold())
        ids.append(candidate)
    return ids


def named_inputs(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(output id, path) pairs: ids are the stems, made unique over ``paths``."""
    return list(zip(unique_ids(paths), paths, strict=True))


def selected_inputs(spec: str | Sequence[str] | None, limit: int | None, shard: str | None) -> list[tuple[str, Path]]:
    """(output id, path) of the images ``spec`` names, after ``limit`` and ``shard``. Ids are made unique over the
    whole list before sharding, so the shards of one folder write disjoint, mergeable folders."""
    return select_images(named_inputs(collect_images(spec)), limit, shard)


def input_sources(cfg: Config) -> dict[str, str]:
    """The run's inputs as image id -> absolute path, as the experiments name them (empty when they cannot be
    listed): what the report page may read photos from."""
    try:
        if cfg.images.paths is not None:
            inputs = selected_inputs(cfg.images.paths, cfg.images.limit, cfg.images.shard)
        elif cfg.experiment.name == "multi_image" and cfg.image:
            inputs = selected_inputs(cfg.image, cfg.images.limit, cfg.images.shard)
        else:
            inputs = named_inputs(image_paths(cfg))
    except (ConfigError, InputError, OSError):
        return {}
    return {image_id: os.path.abspath(path) for image_id, path in inputs}


def picture_ids(image_id: str, boxes: Sequence[Sequence[float]] | None) -> list[str]:
    """The output ids of one input: ``<image>_box<i>`` per box of a pose model's ``model.bboxes``, else the id."""
    return [image_id] if boxes is None else [f"{image_id}_box{i}" for i in range(len(boxes))]


def per_box(image: InputImage, boxes: Sequence[Sequence[float]] | None) -> list[InputImage]:
    """A pose model's pictures of one image: one per box of ``model.bboxes``, with ids ``<image>_box<i>`` (i from
    0, in the list's order); the image itself (its whole area the box) without boxes."""
    if boxes is None:
        return [image]
    ids = picture_ids(image.image_id, boxes)
    return [replace(image, image_id=i, box=tuple(float(v) for v in box)) for i, box in zip(ids, boxes, strict=True)]


class ImageBatches:
    """Decodes ``inputs`` in batches of ``batch_size`` as they are iterated.

    Args:
        inputs: (output id, path) pairs.
        batch_size: images per batch.
        strict: an unreadable image raises its InputError (single runs); otherwise it is listed in
            :attr:`failures` and skipped.
        max_pixels: ``images.max_pixels``: larger images are refused before they are decoded (None: no limit).
        boxes: a pose model's ``model.bboxes``: each image is yielded once per box (see :func:`per_box`).
    """

    def __init__(
        self,
        inputs: Sequence[tuple[str, Path]],
        batch_size: int,
        strict: bool,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        boxes: Sequence[Sequence[float]] | None = None,
    ):
        if batch_size <= 0:
            raise ConfigError(f"images.batch_size={batch_size} must be a positive number of images")
        if max_pixels is not None and max_pixels <= 0:
            raise ConfigError(f"images.max_pixels={max_pixels} must be a positive number of pixels, or null")
        self.inputs, self.batch_size, self.strict, self.max_pixels = list(inputs), batch_size, strict, max_pixels
        self.boxes = boxes
        self.failures: list[Failure] = []

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[list[InputImage]]:
        batch: list[InputImage] = []
        for image_id, path in self.inputs:
            try:
                loaded = load_image(path, "image" if self.strict else "images", self.max_pixels)
            except InputError as err:
                if self.strict:
                    raise
                self.failures.append(Failure(str(path), str(err)))
                continue
            for image in per_box(InputImage(image_id, path, loaded.array, loaded.sha256, loaded.notes), self.boxes):
                batch.append(image)
                if len(batch) == self.batch_size:
                    yield batch
                    batch = []
        if batch:
            yield batch
