"""Recording intermediate results of a torch model: module outputs/inputs, method and function outputs, and the
memory of a DETR-family transformer encoder.

A :class:`FeatureRecorder` installs forward hooks (modules) or wrappers (methods, functions) on ``__enter__`` and
removes every one of them on ``__exit__``. What it records is kept per recorder name, one entry per call;
mappings then pick the call (``record_idx``) and the element (``data_idx``) to draw, as MMRazor's recorders do.
A mapping is checked against the recorded structure as soon as its call is recorded, so a wrong ``data_idx`` stops
the forward pass right there instead of after the model's heads.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from featvis_run.errors import RecordingError
from featvis_run.recording.levels import (
    ParameterValue,
    SpatialTokens,
    StageOutputs,
    check_map_value,
    missing_part,
)
from featvis_run.recording.select import select_record
from featvis_run.schema import MappingSpec, RecorderSpec, RecorderType

__all__ = ["FeatureRecorder", "find_module", "stage_parts"]


def find_module(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted), or a RecordingError naming the closest valid names."""
    modules = dict(model.named_modules())
    if name in modules and name != "":
        return modules[name]
    close = difflib.get_close_matches(name, [n for n in modules if n], n=5, cutoff=0.5)
    top = ", ".join(n for n, _ in model.named_children())
    hint = f"closest: {', '.join(close)}" if close else f"top-level modules: {top}"
    raise RecordingError(
        f"no module named {name!r} in the model ({hint}); list all names with `featvis-run mode=layers`"
    )


def stage_parts(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The parts of a backbone whose outputs may be stages: its direct children, and the elements of its
    ``ModuleList`` / ``Sequential`` children (ResNet's ``layer1``.., ConvNeXt's ``stages.0``.., a ViT's ``layers.0``..),
    by dotted name."""
    parts = []
    for name, child in module.named_children():
        parts.append((name, child))
        if isinstance(child, (nn.ModuleList, nn.Sequential)):
            parts += [(f"{name}.{sub}", grandchild) for sub, grandchild in child.named_children()]
    return parts


def _import_attr(path: str) -> tuple[Any, str, Any]:
    """Split ``pkg.mod.Class.method`` or ``pkg.mod.func`` into (owner object, attribute name, attribute)."""
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:-1]:
                owner = getattr(owner, attr)
            return owner, parts[-1], getattr(owner, parts[-1])
        except AttributeError:
            break
    raise RecordingError(
        f"source={path!r} is not an importable function or method: give its full import path, "
        "e.g. mmdet.models.dense_heads.retina_head.RetinaHead.forward_single"
    )


def _detach(x: Any) -> Any:
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, (tuple, list)) and not hasattr(x, "_fields"):
        return type(x)(_detach(v) for v in x)
    if isinstance(x, dict):
        return {k: _detach(v) for k, v in x.items()}
    return x


def _encoder_levels(kwargs: Mapping[str, Any], memory: torch.Tensor, feat_shapes: list[tuple[int, int]]) -> Any:
    """The (h, w) of each level in an encoder's memory: its ``spatial_shapes`` argument (multi-level encoders), else
    the input feature map whose h * w is the token count (single-level DETRs)."""
    shapes = kwargs.get("spatial_shapes")
    if shapes is not None:
        return tuple((int(h), int(w)) for h, w in shapes.tolist())
    fits = [hw for hw in feat_shapes if hw[0] * hw[1] == memory.shape[1]]
    if not fits:
        raise RecordingError(
            f"the encoder memory has {memory.shape[1]} tokens, and no input feature map "
            f"{feat_shapes} has that many cells; record the encoder with a mapping and an explicit grid: [H, W]"
        )
    return (fits[-1],)


class FeatureRecorder:
    """Context manager recording what the configured ``recorders`` see while the model runs.

    Args:
        model: the model whose modules are hooked.
        recorders: what to record, by recorder name.
        mappings: levels to check as soon as their call is recorded (structure only).
        batch: images per forward pass (mappings are checked against it).
        keep_graph: keep recorded tensors attached to the autograd graph (for gradients to them: Grad-CAM).
    """

    def __init__(
        self,
        model: nn.Module,
        recorders: Mapping[str, RecorderSpec],
        mappings: Mapping[str, MappingSpec] | None = None,
        batch: int = 1,
        keep_graph: bool = False,
    ):
        self.model = model
        self._keep: Callable[[Any], Any] = (lambda x: x) if keep_graph else _detach
        self.specs = dict(recorders)
        self.mappings = dict(mappings or {})
        self.batch = batch
        self.records: dict[str, list[Any]] = {name: [] for name in self.specs}
        self._undo: list[Callable[[], None]] = []
        # Resolve every source now, so that a bad name fails before the (slow) forward pass.
        self._targets = {name: self._resolve(name, spec) for name, spec in self.specs.items()}

    def _resolve(self, name: str, spec: RecorderSpec) -> Any:
        if spec.type in (RecorderType.module_outputs, RecorderType.module_inputs, RecorderType.stage_outputs):
            try:
                return find_module(self.model, spec.source)
            except RecordingError as err:
                if spec.source in ("neck", "backbone") and spec.level_prefix:
                    top = [n for n, _ in self.model.named_children()]
                    detr = callable(getattr(self.model, "pre_transformer", None))
                    raise RecordingError(
                        missing_part(name, spec.source, type(self.model).__name__, top, detr)
                    ) from None
                raise err
        if spec.type is RecorderType.parameter:
            names = dict(self.model.named_parameters())
            if spec.source not in names:
                close = difflib.get_close_matches(spec.source, list(names), n=5, cutoff=0.5)
                hint = f"closest: {', '.join(close)}" if close else "names: model.named_parameters()"
                raise RecordingError(f"recorder {name!r}: the model has no parameter {spec.source!r} ({hint})")
            return names[spec.source]
        if spec.type is RecorderType.encoder_memory:
            missing = [m for m in ("pre_transformer", spec.source) if not callable(getattr(self.model, m, None))]
            if missing:
                others = [f"recorder={r}" for r, part in (("fpn", "neck"), ("backbone", "backbone")) if self._has(part)]
                if self._has("panoptic_head.pixel_decoder"):  # Mask2Former/MaskFormer: the transformer is there
                    others.append(
                        "recorder=custom "
                        "'+recorder.recorders.x={type:module_outputs,source:panoptic_head.pixel_decoder}'"
                    )
                raise RecordingError(
                    f"recorder {name!r} records the encoder memory of DETR-family detectors (their "
                    f"pre_transformer and {spec.source} methods), but {type(self.model).__name__} has no "
                    f"{' or '.join(missing)}; use {' or '.join(others) or 'a recorder of your own (mode=layers)'}"
                )
            return spec.source
        return self._resolve_callable(spec.source)

    def _has(self, path: str) -> bool:
        """Whether the model has the submodule at the dotted ``path``."""
        obj = self.model
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return False
        return True

    def _resolve_callable(self, source: str) -> tuple[Any, str, Any]:
        """A method of one of the model's modules (``decode_head.forward``: wrapped on that instance only), or a
        method or function by import path (wrapped on its class or module)."""
        path, _, attr = source.rpartition(".")
        owner = dict(self.model.named_modules()).get(path) if path else self.model
        if (
            owner is not None
            and callable(getattr(owner, attr, None))
            and not isinstance(getattr(owner, attr), nn.Module)
        ):
            return owner, attr, getattr(owner, attr)
        return _import_attr(source)

    def _store(self, name: str) -> Callable[[Any], None]:
        """Append to recorder ``name`` and check the mappings of that call right away."""
        store = self.records[name]
        checks = [(level, m) for level, m in self.mappings.items() if m.recorder == name and m.record_idx >= 0]

        def add(value: Any) -> None:
            store.append(value)
            for level, mapping in checks:
                if mapping.record_idx == len(store) - 1:
                    check_map_value(select_record(self.records, level, mapping), f"{name}/{level}", self.batch)

        return add

    def __enter__(self) -> FeatureRecorder:
        for name, spec in self.specs.items():
            add = self._store(name)
            target = self._targets[name]
            if spec.type is RecorderType.module_outputs:
                handle = target.register_forward_hook(lambda m, i, o, add=add: add(self._keep(o)))
                self._undo.append(handle.remove)
            elif spec.type is RecorderType.module_inputs:
                handle = target.register_forward_pre_hook(lambda m, i, add=add: add(self._keep(i)))
                self._undo.append(handle.remove)
            elif spec.type is RecorderType.encoder_memory:
                self._wrap_encoder(target, add)
            elif spec.type is RecorderType.parameter:
                add(ParameterValue(target.detach()))
            elif spec.type is RecorderType.stage_outputs:
                self._hook_stages(target, add)
            else:
                inputs = spec.type in (RecorderType.method_inputs, RecorderType.function_inputs)
                self._wrap(target, add, inputs)
        return self

    def _hook_stages(self, backbone: nn.Module, add: Callable[[Any], None]) -> None:
        """Record what each of :func:`stage_parts` outputs into one :class:`StageOutputs` per forward pass, in the
        order the calls finish (a part called again moves to the end)."""
        stages = StageOutputs({}, int(getattr(backbone, "num_extra_tokens", 0) or 0))
        add(stages)

        def keep(name: str, out: Any) -> None:
            stages.outputs.pop(name, None)
            stages.outputs[name] = self._keep(out)

        for name, part in stage_parts(backbone):
            handle = part.register_forward_hook(lambda m, i, o, name=name: keep(name, o))
            self._undo.append(handle.remove)

    def _wrap_encoder(self, method: str, add: Callable[[Any], None]) -> None:
        """Wrap the detector's ``pre_transformer`` (to see the feature maps fed in) and ``method`` (the encoder
        call, whose ``memory`` output is recorded with its level shapes) on this model instance only."""
        model = self.model
        pre, encode = model.pre_transformer, getattr(model, method)
        feat_shapes: list[tuple[int, int]] = []

        def pre_transformer(*args: Any, **kwargs: Any) -> Any:
            feats = args[0] if args else kwargs.get("img_feats", ())
            feat_shapes[:] = [tuple(int(v) for v in f.shape[-2:]) for f in feats]
            return pre(*args, **kwargs)

        def forward_encoder(*args: Any, **kwargs: Any) -> Any:
            out = encode(*args, **kwargs)
            memory = out["memory"] if isinstance(out, Mapping) else out
            add(SpatialTokens(self._keep(memory), _encoder_levels(kwargs, memory, feat_shapes)))
            return out

        for attr, fn in (("pre_transformer", pre_transformer), (method, forward_encoder)):
            setattr(model, attr, fn)
            self._undo.append(lambda attr=attr: delattr(model, attr))

    def _wrap(self, target: tuple[Any, str, Any], add: Callable[[Any], None], inputs: bool = False) -> None:
        """Replace ``owner.attr`` by a wrapper recording its outputs, or its inputs (positional arguments, then
        keyword arguments in signature order, as MMRazor's input recorders do)."""
        owner, attr, _ = target
        original = getattr(owner, attr)  # now, not when resolved: another recorder may have wrapped it since
        raw = inspect.getattr_static(owner, attr)
        own = attr in vars(owner)
        # a function on a class receives the instance first (MMRazor drops it); a bound method does not
        skip = 1 if inspect.isclass(owner) and not isinstance(raw, (staticmethod, classmethod)) else 0
        try:
            params = list(inspect.signature(original).parameters)
        except (TypeError, ValueError):
            params = []

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            if inputs:
                add(self._keep([*args[skip:], *(kwargs[k] for k in params if k in kwargs)]))
            else:
                add(self._keep(out))
            return out

        replacement: Any = wrapper
        if isinstance(raw, staticmethod):
            replacement = staticmethod(wrapper)
        elif isinstance(raw, classmethod):  # ``original`` is already bound to the class
            replacement = classmethod(lambda cls, *a, **k: wrapper(*a, **k))
        setattr(owner, attr, replacement)
        self._undo.append(lambda: setattr(owner, attr, raw) if own else delattr(owner, attr))

    def __exit__(self, *exc: object) -> None:
        while self._undo:
            self._undo.pop()()
