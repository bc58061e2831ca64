"""What a Grad-CAM explains (the top-level ``target`` key): parsing it, and choosing the detections it means among
an image's detections. Pure, no I/O.

- ``top``: the highest-scoring detection;
- ``det:<i>``: the i-th detection by score (0 = ``top``);
- ``class:<name>``: every detection of that class scoring at or above ``output.pred_score_thr``;
- ``all``: every detection scoring at or above ``output.pred_score_thr``.

A classifier explains one class per image: ``top`` (its best class), ``class:<name>`` or ``class_idx:<i>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from featvis_run.errors import ConfigError, TargetNotFound

__all__ = ["Target", "check_class", "parse_target", "select_class", "select_detections"]

_SYNTAX = (
    "use top, det:<i> (e.g. det:0), class:<name> (e.g. class:circle) or all; a classifier: top, class:<name> or "
    "class_idx:<i>"
)
_CLASSIFIER = "a classifier explains one class: use target=top, class:<name> or class_idx:<i>"


@dataclass(frozen=True)
class Target:
    """A parsed ``target``: ``kind`` is top, det, class, class_idx or all; ``index`` goes with det and class_idx,
    ``class_name`` with class."""

    text: str
    kind: str
    index: int | None = None
    class_name: str | None = None


def parse_target(text: str) -> Target:
    """Parse ``target=...``; a ConfigError names the value and the syntax."""
    value = str(text).strip()
    if value in ("top", "all"):
        return Target(value, value)
    kind, sep, arg = value.partition(":")
    if sep and kind == "det" and arg.strip().isdigit():
        return Target(value, "det", index=int(arg))
    if sep and kind == "class_idx" and arg.strip().isdigit():
        return Target(value, "class_idx", index=int(arg))
    if sep and kind == "class" and arg.strip():
        return Target(value, "class", class_name=arg.strip())
    raise ConfigError(f"target={text!r} is not a target; {_SYNTAX}")


def check_class(target: Target, class_names: Sequence[str]) -> None:
    """A ``class:<name>`` target names one of the model's classes (a ConfigError lists them)."""
    if target.kind == "class" and target.class_name not in class_names:
        shown = ", ".join(class_names[:20]) + (f", ... ({len(class_names)} in all)" if len(class_names) > 20 else "")
        raise ConfigError(f"target={target.text!r}: the model has no class {target.class_name!r}; its classes: {shown}")


def _listing(scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], limit: int = 5) -> str:
    order = np.argsort(-scores, kind="stable")
    shown = [f"det:{r} {_name(labels[i], class_names)} {scores[i]:.2f}" for r, i in enumerate(order[:limit])]
    more = f", ... ({len(order)} in all)" if len(order) > limit else ""
    return ", ".join(shown) + more


def _name(label: int, class_names: Sequence[str]) -> str:
    return class_names[int(label)] if 0 <= int(label) < len(class_names) else str(int(label))


def select_detections(
    target: Target, scores: np.ndarray, labels: np.ndarray, class_names: Sequence[str], score_thr: float
) -> np.ndarray:
    """Indices (into ``scores``) of the detections ``target`` explains, highest score first.

    Raises:
        ConfigError: ``class:<name>`` names no class of the model.
        TargetNotFound: the target matches no detection of this image (the message lists what exists).
    """
    check_class(target, class_names)
    if target.kind == "class_idx":
        raise ConfigError(f"target={target.text!r} names a class by index, for classifiers; use class:<name>")
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    order = np.argsort(-scores, kind="stable")
    if not len(order):
        raise TargetNotFound(f"target={target.text!r}: the model detected nothing on this image")
    if target.kind == "top":
        return order[:1]
    if target.kind == "det":
        assert target.index is not None
        if target.index >= len(order):
            raise TargetNotFound(
                f"target={target.text!r}: the image has {len(order)} detections (det:0 to det:{len(order) - 1}): "
                f"{_listing(scores, labels, class_names)}"
            )
        return order[target.index : target.index + 1]
    above = order[scores[order] >= score_thr]
    if target.kind == "all":
        if not len(above):
            raise TargetNotFound(
                f"target='all': no detection scores at or above output.pred_score_thr={score_thr} (found: "
                f"{_listing(scores, labels, class_names)}); lower output.pred_score_thr or use target=top"
            )
        return above
    wanted = class_names.index(target.class_name)
    chosen = above[labels[above] == wanted]
    if not len(chosen):
        present = sorted({_name(labels[i], class_names) for i in above})
        detected = ", ".join(f"{n} ({sum(_name(labels[i], class_names) == n for i in above)})" for n in present)
        raise TargetNotFound(
            f"target={target.text!r}: no {target.class_name} scores at or above output.pred_score_thr={score_thr} "
            f"on this image; detected: {detected or 'nothing above the threshold'} (all: "
            f"{_listing(scores, labels, class_names)})"
        )
    return chosen


def select_class(target: Target, logits: np.ndarray, class_names: Sequence[str]) -> int:
    """The class index a classifier's ``target`` explains on one image with these (K,) ``logits``: ``top`` the
    best-scoring, ``class:<name>`` and ``class_idx:<i>`` a fixed one (a ConfigError when it is not a class of the
    model, or when the target is a detector's)."""
    count = int(np.asarray(logits).shape[-1])
    if target.kind == "top":
        return int(np.argmax(np.asarray(logits, np.float64)))
    if target.kind == "class":
        check_class(target, class_names)
        return list(class_names).index(target.class_name)
    if target.kind == "class_idx":
        assert target.index is not None
        if target.index >= count:
            raise ConfigError(f"target={target.text!r}: the model has {count} classes (class_idx:0 to {count - 1})")
        return target.index
    raise ConfigError(f"target={target.text!r}: {_CLASSIFIER}")
