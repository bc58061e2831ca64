"""Checkpoints saved by mmengine's training loop load without trust_checkpoint, and without running code; their meta
(classes, palette) is checked."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.models import training_checkpoint
from featvis_run.models.checkpoint import checkpoint_classes, checkpoint_palette, load_checkpoint_state
from featvis_run.models.training_checkpoint import SkippedObject


def _training_checkpoint(path):
    """What mmengine's Runner.save_checkpoint writes (meta, weights, message hub, optimizer, schedulers)."""
    from mmengine.logging import MessageHub
    from mmengine.runner.checkpoint import weights_to_cpu

    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(2.0).reshape(2, 1, 1, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model(torch.ones(1, 1, 2, 2)).sum().backward()
    optimizer.step()
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3)
    hub = MessageHub.get_instance("featvis-test-training-checkpoint")
    hub.update_scalar("train/loss", 0.5)
    hub.update_scalar("train/lr", np.float32(0.01))
    hub.update_info("iter", 60)
    hub.update_info("steps", np.arange(3))
    hub.update_info("seed", np.int64(7))
    ckpt = {
        "meta": {
            "epoch": 3,
            "iter": 60,
            "cfg": "model = dict(type='X')",
            "seed": np.int64(7),
            "lr": np.float64(0.01),
            "dataset_meta": {"classes": ("a", "b"), "palette": [(220, 20, 60), (0, 0, 142)]},
        },
        "state_dict": weights_to_cpu(model.state_dict()),  # an OrderedDict with _metadata (set by BUILD)
        "message_hub": hub.state_dict(),
        "optimizer": optimizer.state_dict(),
        "param_schedulers": [scheduler.state_dict()],
    }
    torch.save(ckpt, path)
    return ckpt


@pytest.mark.parametrize("fallback", [False, True], ids=["safe_globals", "restricted-unpickler"])
def test_an_mmengine_training_checkpoint_loads_without_trust(fallback, tmp_path, monkeypatch):
    if fallback:  # torch < 2.5 has no safe_globals: the restricted unpickler loads instead
        monkeypatch.setattr(training_checkpoint, "_has_safe_globals", lambda: False)
    path = tmp_path / "epoch_3.pth"
    saved = _training_checkpoint(path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what made users pass trust_checkpoint=true
    loaded = load_checkpoint_state(path, trust=False)
    assert loaded["state_dict"]["0.weight"].flatten().tolist() == [0.0, 1.0]
    assert list(loaded["state_dict"]) == list(saved["state_dict"])
    assert loaded["state_dict"]._metadata == saved["state_dict"]._metadata
    assert loaded["meta"]["seed"] == 7 and loaded["meta"]["lr"] == 0.01 and loaded["meta"]["cfg"].startswith("model")
    assert checkpoint_classes(loaded) == ("a", "b")
    assert checkpoint_palette(loaded) == [[220, 20, 60], [0, 0, 142]]
    runtime = loaded["message_hub"]["runtime_info"]
    np.testing.assert_array_equal(runtime["steps"], [0, 1, 2])
    assert runtime["seed"] == 7 and runtime["seed"].dtype == np.int64
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], SkippedObject)  # training state, unused
    momentum = loaded["optimizer"]["state"][0]["momentum_buffer"]
    assert torch.equal(momentum, saved["optimizer"]["state"][0]["momentum_buffer"])
    assert loaded["param_schedulers"][0]["step_size"] == 3


class _OpenMMLabCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from mmengine.utils import mkdir_or_exist

        return (mkdir_or_exist, (self.marker,))  # an OpenMMLab function: not data a checkpoint needs


def test_openmmlab_functions_beyond_the_training_state_are_refused(tmp_path):
    marker = tmp_path / "ran"
    stub = tmp_path / "stub.pth"
    torch.save({"state_dict": {}, "x": _OpenMMLabCall(str(marker))}, stub)
    with pytest.raises(ModelError, match=r"\(mmengine.utils.path.mkdir_or_exist\)\..*model.trust_checkpoint=true"):
        load_checkpoint_state(stub, trust=False)
    assert not os.path.exists(marker)
    assert load_checkpoint_state(stub, trust=True)["x"] is None and marker.exists()  # trusted: the call runs


NAMES, DICT = "a list of class names", "a dict (classes, palette)"


@pytest.mark.parametrize(
    ("meta", "key", "expected"),
    [
        ({"dataset_meta": {"classes": 5}}, "meta['dataset_meta']['classes'] is an int (5)", NAMES),
        ({"dataset_meta": {"classes": {"a": 1}}}, "meta['dataset_meta']['classes'] is a dict ({'a': 1})", NAMES),
        ({"dataset_meta": {"classes": ["a", ["b"]]}}, "meta['dataset_meta']['classes'] is a list", NAMES),
        ({"CLASSES": "person"}, "meta['CLASSES'] is a str ('person')", NAMES),
        ({"dataset_meta": [1, 2]}, "meta['dataset_meta'] is a list ([1, 2])", DICT),
    ],
)
def test_odd_class_meta_is_one_line_naming_the_key(meta, key, expected):
    with pytest.raises(ModelError) as info:
        checkpoint_classes({"meta": meta}, "model.checkpoint='x.pth'")
    message = str(info.value)
    assert message.startswith("model.checkpoint='x.pth': its " + key) and f"expected {expected}" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("palette", "shown"),
    [
        (["a", "b"], "is a list (['a', 'b'])"),
        ([[1, 2, 3], [4, 5]], "is a list"),
        ([[1, 2, 300]], "is a list ([[1, 2, 300]])"),
        ([["1", "2", "3"]], "is a list"),
        (7, "is an int (7)"),
    ],
)
def test_an_odd_palette_is_one_line_naming_the_key(palette, shown):
    with pytest.raises(ModelError) as info:
        checkpoint_palette({"meta": {"dataset_meta": {"palette": palette}}}, "model.checkpoint='x.pth'")
    message = str(info.value)
    assert message.startswith("model.checkpoint='x.pth': its meta['dataset_meta']['palette'] " + shown)
    assert "expected a list of [r, g, b] colours of integers 0-255" in message and "\n" not in message


def test_plain_meta_still_reads():
    ckpt = {"meta": {"CLASSES": ["x", "y"], "PALETTE": np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)}}
    assert checkpoint_classes(ckpt) == ("x", "y")
    assert checkpoint_palette(ckpt) == [[1, 2, 3], [4, 5, 6]]
    assert checkpoint_classes({"meta": {"dataset_meta": {"classes": ()}, "CLASSES": ("z",)}}) == ("z",)
    assert checkpoint_classes({"meta": None}) is None and checkpoint_palette({"state_dict": {}}) is None
    assert checkpoint_palette({"meta": {"dataset_meta": {1: "junk", "PALETTE": [(0, 0, 0.0)]}}}) == [[0, 0, 0]]
    assert all(type(c) is int for c in checkpoint_palette(ckpt)[0])
