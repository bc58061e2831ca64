"""The input images of a run: which files, their output names, and decoding them in batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from featvis_run.errors import ConfigError, InputError
from featvis_run.schema import Config
from featvis_run.store.images import InputImage, collect_images, demo_image_path, read_image, select_images
from featvis_run.store.manifest import Failure
from featvis_run.store.outputs import safe_name

__all__ = ["ImageBatches", "check_inputs", "image_paths", "named_inputs", "selected_inputs", "unique_ids"]


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
    """Output folder names for images: their stems, made unique (``a``, ``a-2``) when two share one."""
    seen: dict[str, int] = {}
    ids = []
    for p in paths:
        stem = safe_name(p.stem)
        seen[stem] = seen.get(stem, 0) + 1
        ids.append(stem if seen[stem] == 1 else f"{stem}-{seen[stem]}")
    return ids


def named_inputs(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(output id, path) pairs: ids are the stems, made unique over ``paths``."""
    return list(zip(unique_ids(paths), paths, strict=True))


def selected_inputs(spec: str | Sequence[str] | None, limit: int | None, shard: str | None) -> list[tuple[str, Path]]:
    """(output id, path) of the images ``spec`` names, after ``limit`` and ``shard``. Ids are made unique over the
    whole list before sharding, so the shards of one folder write disjoint, mergeable folders."""
    return select_images(named_inputs(collect_images(spec)), limit, shard)


class ImageBatches:
    """Decodes ``inputs`` in batches of ``batch_size`` as they are iterated.

    Args:
        inputs: (output id, path) pairs.
        batch_size: images per batch.
        strict: an unreadable image raises its InputError (single runs); otherwise it is listed in
            :attr:`failures` and skipped.
    """

    def __init__(self, inputs: Sequence[tuple[str, Path]], batch_size: int, strict: bool):
        if batch_size <= 0:
            raise ConfigError(f"images.batch_size={batch_size} must be a positive number of images")
        self.inputs, self.batch_size, self.strict = list(inputs), batch_size, strict
        self.failures: list[Failure] = []

    def __len__(self) -> int:
        return len(self.inputs)

    def __iter__(self) -> Iterator[list[InputImage]]:
        batch: list[InputImage] = []
        for image_id, path in self.inputs:
            try:
                array, sha = read_image(path, "image" if self.strict else "images")
            except InputError as err:
                if self.strict:
                    raise
                self.failures.append(Failure(str(path), str(err)))
                continue
            batch.append(InputImage(image_id, path, array, sha))
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch
