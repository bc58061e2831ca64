"""Checkpoints saved by mmengine's training loop load without trust_checkpoint, and without running code."""

from __future__ import annotations

import collections
import os

import numpy as np
import pytest
import torch

from featvis_run.errors import ModelError
from featvis_run.models.checkpoint import load_checkpoint_state
from featvis_run.models.training_checkpoint import SkippedObject


def _training_checkpoint(path):
    from mmengine.logging import HistoryBuffer

    weights = collections.OrderedDict(conv=torch.arange(6, dtype=torch.float32).reshape(2, 3))
    loss = HistoryBuffer()
    loss.update(0.5)
    ckpt = {
        "meta": {
            "epoch": 3,
            "iter": 60,
            "seed": np.int64(7),
            "lr": np.float64(0.01),
            "dataset_meta": {"classes": ("a",)},
        },
        "state_dict": weights,
        "message_hub": {"log_scalars": {"train/loss": loss}, "runtime_info": {"iter": 60, "steps": np.arange(3)}},
        "optimizer": {"state": {0: {"momentum_buffer": torch.ones(2, 3)}}, "param_groups": [{"lr": 0.01}]},
    }
    torch.save(ckpt, path)
    return ckpt


def test_an_mmengine_training_checkpoint_loads_without_trust(tmp_path):
    path = tmp_path / "epoch_3.pth"
    saved = _training_checkpoint(path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(path, weights_only=True)  # what made users pass trust_checkpoint=true
    loaded = load_checkpoint_state(path, trust=False)
    assert torch.equal(loaded["state_dict"]["conv"], saved["state_dict"]["conv"])
    assert loaded["meta"]["seed"] == 7 and loaded["meta"]["lr"] == pytest.approx(0.01)
    assert loaded["meta"]["dataset_meta"] == {"classes": ("a",)}
    np.testing.assert_array_equal(loaded["message_hub"]["runtime_info"]["steps"], [0, 1, 2])
    assert isinstance(loaded["message_hub"]["log_scalars"]["train/loss"], SkippedObject)  # training state, unused
    assert torch.equal(loaded["optimizer"]["state"][0]["momentum_buffer"], torch.ones(2, 3))


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if it ran


class _OpenMMLabCall:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from mmengine.utils import mkdir_or_exist

        return (mkdir_or_exist, (self.marker,))  # an OpenMMLab function: replaced, never called


def test_code_in_a_pickle_is_still_refused_or_never_run(tmp_path):
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": _RunsCode(str(marker))}, evil)
    with pytest.raises(ModelError, match=r"refused by torch.load\(weights_only=True\).*trust_checkpoint=true"):
        load_checkpoint_state(evil, trust=False)
    stub = tmp_path / "stub.pth"
    torch.save({"state_dict": {}, "x": _OpenMMLabCall(str(marker))}, stub)
    loaded = load_checkpoint_state(stub, trust=False)
    assert isinstance(loaded["x"], SkippedObject) and not os.path.exists(marker)
