"""Recorders on a small real torch model: module outputs/inputs, method/function outputs, indices, cleanup."""

import pytest
import torch
from torch import nn

from featvis_run.errors import RecordingError
from featvis_run.recording.layers import list_layers
from featvis_run.recording.levels import LevelKey, extract_levels
from featvis_run.recording.recorder import FeatureRecorder, find_module
from featvis_run.recording.select import select_record
from featvis_run.schema import MappingSpec, RecorderSpec, RecorderType


def helper_scale(x: torch.Tensor) -> torch.Tensor:
    """A module-level function, patched by the function_outputs recorder."""
    return x * 2


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x))

    def describe(self, x):
        return (x.mean(), x * 0)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Block(3, 4)
        self.stages = nn.ModuleList([Block(4, 8), Block(8, 8)])

    def forward(self, x):
        x = self.stem(x)
        outs = []
        for stage in self.stages:
            x = stage(x)
            outs.append(helper_scale(x))
        self.stem.describe(x)
        return tuple(outs)


def spec(kind, source):
    return RecorderSpec(type=RecorderType(kind), source=source)


def test_module_outputs_and_inputs_with_record_and_data_idx():
    model = Tiny().eval()
    x = torch.randn(2, 3, 32, 32)
    recorders = {"stages1": spec("module_outputs", "stages.1"), "stage0_in": spec("module_inputs", "stages.0")}
    with FeatureRecorder(model, recorders) as rec, torch.no_grad():
        model(x)
        model(x * 0)
    assert len(rec.records["stages1"]) == 2  # one entry per call
    assert rec.records["stages1"][0].shape == (2, 8, 4, 4)
    assert float(rec.records["stages1"][1].abs().sum()) != float(rec.records["stages1"][0].abs().sum())
    first_in = select_record(rec.records, "in", MappingSpec(recorder="stage0_in", data_idx=0, record_idx=0))
    assert first_in.shape == (2, 4, 16, 16)
    last = select_record(rec.records, "last", MappingSpec(recorder="stages1", record_idx=-1))
    assert torch.equal(last, rec.records["stages1"][1])


def test_hooks_and_patches_are_removed_on_exit():
    model = Tiny().eval()
    original_describe = Block.describe
    recorders = {
        "stem": spec("module_outputs", "stem"),
        "describe": spec("method_outputs", f"{__name__}.Block.describe"),
        "scale": spec("function_outputs", f"{__name__}.helper_scale"),
    }
    with FeatureRecorder(model, recorders) as rec, torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    assert not model.stem._forward_hooks
    assert Block.describe is original_describe and "describe" in vars(Block)
    assert helper_scale.__name__ == "helper_scale" and globals()["helper_scale"] is helper_scale
    assert len(rec.records["scale"]) == 2 and rec.records["scale"][1].shape == (1, 8, 2, 2)
    assert isinstance(rec.records["describe"][0], tuple)
    # after exit nothing is recorded any more
    with torch.no_grad():
        model(torch.randn(1, 3, 16, 16))
    assert len(rec.records["scale"]) == 2


def test_hooks_removed_even_when_forward_raises():
    model = Tiny().eval()
    with pytest.raises(RuntimeError), FeatureRecorder(model, {"stem": spec("module_outputs", "stem")}):
        model(torch.randn(1, 5, 16, 16))  # wrong channel count
    assert not model.stem._forward_hooks


def test_unknown_module_names_closest_matches():
    with pytest.raises(RecordingError, match=r"no module named 'stage.1'.*closest: stages.1.*mode=layers"):
        find_module(Tiny(), "stage.1")
    with pytest.raises(RecordingError, match="not an importable function or method"):
        FeatureRecorder(Tiny(), {"x": spec("method_outputs", "no.such.module.func")})


def test_bad_indices_name_the_value_and_range():
    records = {"neck": [(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 2, 2))]}
    with pytest.raises(RecordingError, match="record_idx=1 .* recorded 1 call"):
        select_record(records, "p", MappingSpec(recorder="neck", record_idx=1))
    with pytest.raises(RecordingError, match="data_idx=5 is out of range.*tuple of 2"):
        select_record(records, "p", MappingSpec(recorder="neck", data_idx=5))
    with pytest.raises(RecordingError, match="recorder='head', which is not defined"):
        select_record(records, "p", MappingSpec(recorder="head"))


def test_extract_levels_maps_and_auto_expansion():
    records = {"neck": [(torch.ones(2, 4, 8, 8), torch.ones(2, 4, 4, 4))], "stem": [torch.ones(2, 3, 16, 16)]}
    recorders = {"neck": spec("module_outputs", "neck"), "stem": spec("module_outputs", "stem")}
    mappings = {"p4": MappingSpec(recorder="neck", data_idx=1)}
    levels = extract_levels(records, recorders, mappings, batch=2, input_hw=(64, 64))
    assert list(levels) == [LevelKey("neck", "p4"), LevelKey("stem", "out")]
    assert levels[LevelKey("neck", "p4")].shape == (2, 4, 4, 4)
    auto = extract_levels(records, {"neck": recorders["neck"]}, {}, batch=2, input_hw=(64, 64))
    assert list(auto) == [LevelKey("neck", "0"), LevelKey("neck", "1")]
    with pytest.raises(RecordingError, match=r"tuple of 2 \[Tensor\(2x4x8x8\), Tensor\(2x4x4x4\)\].*set data_idx"):
        extract_levels(records, recorders, {"p": MappingSpec(recorder="neck")}, batch=2, input_hw=(64, 64))
    with pytest.raises(RecordingError, match=r"shape \(2, 3, 16, 16\): its first axis is not the batch of 1"):
        extract_levels(records, recorders, {"s": MappingSpec(recorder="stem")}, batch=1, input_hw=(64, 64))


def test_list_layers_reports_output_shapes():
    model = Tiny().eval()
    with torch.no_grad():
        layers = list_layers(model, lambda: model(torch.randn(1, 3, 32, 32))).layers
    by_name = {layer.name: layer for layer in layers}
    assert by_name["stages.0"].shapes == ((1, 8, 8, 8),) and by_name["stages.0"].type == "Block"
    assert by_name["stem.conv"].params == 3 * 4 * 9 + 4
    assert not model.stages[0]._forward_hooks
