"""Checkpoints a user should not get silently: one that fits only part of the model (README: it must set at least
90% of the model's tensors and leave at most 10% of its own unused, unless ``partial_checkpoint=true``), and one
whose pickle would run code. Tiny torch modules and hand-built pickles; no model library."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from featvis_run.errors import ModelError
from featvis_run.models.checkpoint import apply_weights, load_checkpoint_state


def _model() -> nn.Module:
    """20 tensors: ten 1 -> 1 linear layers (a weight and a bias each)."""
    torch.manual_seed(0)
    return nn.Sequential(*(nn.Linear(1, 1) for _ in range(10)))


def _checkpoint(model: nn.Module, keep: int, extra: int) -> dict:
    """The first ``keep`` of the model's tensors (set to 7) and ``extra`` tensors the model does not have."""
    state = {k: torch.full_like(v, 7.0) for k, v in list(model.state_dict().items())[:keep]}
    state.update({f"other.{i}.weight": torch.zeros(2) for i in range(extra)})
    return {"state_dict": state}


def _apply(model: nn.Module, ckpt: dict, partial: bool = False):
    return apply_weights(model, ckpt, Path("w.pth"), "0" * 64, key="model", partial=partial)


@pytest.mark.parametrize(
    ("keep", "extra", "fits"),
    [
        (20, 0, True),
        (18, 0, True),  # 18 of 20 = 90%: just enough
        (17, 0, False),  # 85% of the model set
        (20, 2, True),  # 2 of 22 = 9.1% of the checkpoint unused
        (20, 3, False),  # 3 of 23 = 13% unused: another architecture's checkpoint
        (19, 3, False),  # 95% set, but 3 of 22 = 13.6% unused
    ],
)
def test_a_checkpoint_fitting_part_of_the_model_is_refused_by_the_documented_shares(keep, extra, fits):
    model = _model()
    ckpt = _checkpoint(model, keep, extra)
    if fits:
        info = _apply(model, ckpt)
        assert info.matched_keys == keep and info.unexpected_keys == extra and not info.notes
        return
    with pytest.raises(ModelError) as err:
        _apply(model, ckpt)
    assert f"it sets {keep} of the model's 20 tensors" in str(err.value)
    assert "model.partial_checkpoint=true" in str(err.value)
    assert all(float(p) != 7.0 for p in model.state_dict().values())  # nothing was loaded


def test_an_accepted_partial_checkpoint_loads_what_fits_and_says_the_rest_is_random():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    info = _apply(model, _checkpoint(model, 17, 0), partial=True)
    assert info.matched_keys == 17 and len(info.notes) == 1 and info.notes[0].startswith("PARTIAL CHECKPOINT")
    assert "randomly initialized" in info.notes[0]
    after = list(model.state_dict().items())
    assert all(float(v) == 7.0 for _, v in after[:17])
    assert all(torch.equal(v, before[k]) for k, v in after[17:])


class _Exec:
    """Pickles as ``builtins.exec(source)`` (a REDUCE of the builtins global ``exec``)."""

    def __init__(self, source: str):
        self.source = source

    def __reduce__(self):
        return (exec, (self.source,))


class _Eval(_Exec):
    def __reduce__(self):
        return (eval, (self.source,))


@pytest.mark.parametrize("kind", [_Exec, _Eval])
@pytest.mark.parametrize("legacy", [False, True])
def test_a_checkpoint_calling_builtins_exec_is_refused_without_trust_and_never_runs(tmp_path, kind, legacy):
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').close()"
    if kind is _Eval:
        source = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    path = tmp_path / "evil.pth"
    payload = {"state_dict": {"w": torch.ones(1)}, "meta": {"note": kind(source)}}
    if legacy:  # torch's old, non-zip format: the pickle itself
        torch.save(payload, path, _use_new_zipfile_serialization=False)
    else:
        torch.save(payload, path)
    with pytest.raises(ModelError, match=r"refused by torch\.load\(weights_only=True\).*trust_checkpoint=true"):
        load_checkpoint_state(path, trust=False)
    assert not marker.exists()  # refused before anything ran
    loaded = load_checkpoint_state(path, trust=True)  # the user trusts it: then it is an ordinary pickle
    assert torch.equal(loaded["state_dict"]["w"], torch.ones(1)) and marker.exists()
