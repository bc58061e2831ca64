"""MMRazor vis_config files used unchanged (recorder=mmrazor recorder.file=...), and MMRazor's recorder types."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from featvis_run.errors import ConfigError, RecordingError
from featvis_run.recording.levels import LevelKey, extract_levels
from featvis_run.recording.mmrazor import load_vis_config
from featvis_run.recording.recorder import FeatureRecorder
from featvis_run.schema import RecorderType

from .test_cli import run_cli

VIS = Path(__file__).resolve().parent / "vis_configs"


def test_the_shipped_fpn_vis_config_reads_as_neck_mappings():
    vis = load_vis_config(str(VIS / "fpn_feature_visualization.py"))
    assert list(vis.recorders) == ["neck"] and vis.recorders["neck"].type is RecorderType.module_outputs
    assert vis.recorders["neck"].source == "neck" and vis.notes == ()
    assert {k: (m.recorder, m.data_idx, m.record_idx) for k, m in vis.mappings.items()} == {
        f"p{k}": ("neck", k - 3, 0) for k in range(3, 7)
    }


def test_a_diff_vis_config_gives_each_side_its_own_recorders(tmp_path):
    diff = VIS / "fpn_feature_diff_visualization.py"
    assert list(load_vis_config(str(diff), side=1).mappings) == ["p3", "p4", "p5", "p6"]
    custom = tmp_path / "diff.py"
    custom.write_text(
        "recorders1 = dict(a=dict(type='ModuleOutputs', source='neck'))\n"
        "mappings1 = dict(x=dict(recorder='a', data_idx=0))\n"
        "recorders2 = dict(b=dict(type='ModuleOutputsRecorder', source='architecture.backbone'))\n"
        "mappings2 = dict(x=dict(recorder='b', data_idx=1, record_idx=0))\n"
    )
    two = load_vis_config(str(custom), side=2)
    assert two.recorders["b"].source == "backbone" and two.mappings["x"].data_idx == 1
    assert two.notes and "architecture.backbone" in two.notes[0] and "'backbone'" in two.notes[0]
    assert load_vis_config(str(custom)).recorders["a"].source == "neck"  # a single run takes the first side


def test_every_mmrazor_recorder_type_maps_and_unknown_ones_are_refused(tmp_path):
    kinds = ["ModuleOutputs", "ModuleInputs", "MethodOutputs", "MethodInputs", "FunctionOutputs", "FunctionInputs",
             "Parameter"]  # fmt: skip
    path = tmp_path / "all.py"
    entries = ", ".join(f"r{i}=dict(_scope_='mmrazor', type='{k}', source='x.y')" for i, k in enumerate(kinds))
    path.write_text(f"recorders = dict({entries})\nmappings = dict()\n")
    vis = load_vis_config(str(path))
    assert [vis.recorders[f"r{i}"].type.value for i in range(len(kinds))] == [
        "module_outputs", "module_inputs", "method_outputs", "method_inputs", "function_outputs", "function_inputs",
        "parameter",
    ]  # fmt: skip
    path.write_text("recorders = dict(r=dict(type='Bogus', source='x'))\n")
    with pytest.raises(ConfigError, match=r"type='Bogus' is not an MMRazor recorder"):
        load_vis_config(str(path))
    with pytest.raises(ConfigError, match="no such file"):
        load_vis_config(str(tmp_path / "missing.py"))


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x):
        return sys.modules["toy_funcs"].double(self.conv(x), scale=2.0)


def test_function_inputs_and_parameters_are_recorded_as_mmrazor_does():
    module = types.ModuleType("toy_funcs")
    module.double = lambda t, scale=1.0: t * scale
    sys.modules["toy_funcs"] = module
    model = _Toy()
    specs = {
        "fin": _spec("function_inputs", "toy_funcs.double"),
        "w": _spec("parameter", "conv.weight"),
        "b": _spec("parameter", "conv.bias"),
    }
    x = torch.randn(2, 3, 8, 8)
    with FeatureRecorder(model, specs, batch=2) as rec:
        out = model(x)
    args = rec.records["fin"][0]
    assert torch.equal(args[0], model.conv(x).detach()) and args[1] == 2.0  # positional, then keywords
    levels = extract_levels(rec.records, {"w": specs["w"]}, {}, batch=2, input_hw=(8, 8))
    weight = model.conv.weight.detach().numpy()
    drawn = levels[LevelKey("w", "out")]
    assert drawn.shape == (2, 3, 3, 3)  # the first filter (in=3, 3 x 3), for each image
    np.testing.assert_array_equal(drawn[1], weight[0])
    with pytest.raises(RecordingError, match=r"parameter of shape \(4,\); only 4-D"):
        extract_levels(rec.records, {"b": specs["b"]}, {}, batch=2, input_hw=(8, 8))
    assert torch.equal(out, model.conv(x) * 2.0)
    del sys.modules["toy_funcs"]


def _spec(kind: str, source: str):
    from featvis_run.schema import RecorderSpec

    return RecorderSpec(type=RecorderType(kind), source=source)


@pytest.mark.slow
def test_mmrazor_vis_configs_run_unchanged(tmp_path):
    out = tmp_path / "fpn"
    proc = run_cli("recorder=mmrazor", f"recorder.file={VIS / 'fpn_feature_visualization.py'}", f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    # the demo model's neck: P3-P7 at strides 8-128 on the 480 x 640 scene; the vis_config maps its first four
    assert {o["level"]: o["shape"][1:] for o in m["outputs"]} == {
        "p3": [60, 80], "p4": [30, 40], "p5": [15, 20], "p6": [8, 10],
    }  # fmt: skip
    out = tmp_path / "backbone"
    proc = run_cli(
        "recorder=mmrazor", f"recorder.file={VIS / 'backbone_feature_visualization.py'}", f"output.dir={out}"
    )
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    # MMRazor's own names: its "p3".."p6" are the backbone's four stages, strides 4..32
    assert [(o["layer"], o["level"], o["shape"][1:]) for o in m["outputs"]] == [
        ("backbone", "p3", [120, 160]), ("backbone", "p4", [60, 80]), ("backbone", "p5", [30, 40]),
        ("backbone", "p6", [15, 20]),
    ]  # fmt: skip
    out = tmp_path / "diff"
    proc = run_cli(
        "experiment=diff", "model@model_a=demo_shapes", "model@model_b=demo_shapes", "model_b.checkpoint=null",
        "recorder=mmrazor", f"recorder.file={VIS / 'fpn_feature_diff_visualization.py'}", f"output.dir={out}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [c["level"] for c in m["comparisons"]] == ["p3", "p4", "p5", "p6"]
    assert all(c["cosine"] < 0.99 for c in m["comparisons"])  # trained against random weights


@pytest.mark.slow
def test_a_missing_vis_config_file_is_one_line(tmp_path):
    proc = run_cli("recorder=mmrazor", f"output.dir={tmp_path / 'x'}")
    assert proc.returncode == 2 and "add recorder.file=" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("recorder=mmrazor", f"recorder.file={tmp_path / 'nope.py'}", f"output.dir={tmp_path / 'y'}")
    assert proc.returncode == 2 and "no such file" in proc.stderr and proc.stderr.count("\n") == 1
