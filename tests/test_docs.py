"""The docs cannot drift from the code: every config key has a description next to its field in the schema and
appears in the generated reference; every documented manifest key has a description, the JSON Schema accepts what
the runner writes and refuses a manifest missing a required key; the getting-started page's commands run as written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import subprocess
import typing
from pathlib import Path

import pytest

from featvis_run import schema
from featvis_run.store.manifest import Failure, ImageRecord, MapRecord, ModelRecord, RunResult

from .conftest import REPO, console_script

jsonschema = pytest.importorskip("jsonschema")

MANIFEST_SCHEMA = REPO / "featvis_run" / "schemas" / "manifest.schema.json"


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "scripts" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _validator():
    return jsonschema.Draft202012Validator(json.loads(MANIFEST_SCHEMA.read_text(encoding="utf-8")))


def _dotted_keys(cls: type, prefix: str = "") -> list[str]:
    """Every key below ``cls`` by full dotted name, walked with dataclasses (not with the generator's code)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        keys.append(prefix + f.name)
        inner = [a for a in typing.get_args(hints[f.name]) if a is not type(None)] or [hints[f.name]]
        if dataclasses.is_dataclass(inner[0]) and f.name not in ("model_a", "model_b", "recorder_b"):
            keys += _dotted_keys(inner[0], f"{prefix}{f.name}.")
    return keys


def test_every_schema_field_has_a_description():
    assert _gen().missing_descriptions() == []


def test_a_field_without_a_description_line_is_reported(tmp_path):
    src = tmp_path / "schema.py"
    src.write_text(
        "from dataclasses import dataclass\n\n@dataclass\nclass A:\n    #: the first\n    #: (two lines)\n"
        "    first: int = 1\n    second: int = 2  # an inline comment is not a description\n\n"
        "    #: separated by a blank line: not this field's\n\n    third: int = 3\n"
    )
    gen = _gen()
    assert gen.field_descriptions(src)["A"]["first"] == "the first (two lines)"
    assert gen.missing_descriptions(src) == ["A.second", "A.third"]


def test_configuration_reference_lists_every_key_with_its_description():
    page = _gen().config_reference()
    keys = _dotted_keys(schema.Config)
    keys += [f"recorder.recorders.<name>.{f.name}" for f in dataclasses.fields(schema.RecorderSpec)]
    keys += [f"recorder.mappings.<name>.{f.name}" for f in dataclasses.fields(schema.MappingSpec)]
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", page, re.M)}
    assert sorted(k for k in keys if k not in rows) == []
    assert "no description" not in page
    # a row carries the type, the default of a plain run and the meaning written above the field
    assert rows["output.scale"].startswith("| `output.scale` | `per_map` / `per_image` / `per_level` / `per_run`")
    assert "| `per_map` | Which maps share one colour range" in rows["output.scale"]
    assert "| `squeeze_mean` |" in rows["reducer.name"]  # conf/config.yaml's default option, not the first enum value
    assert "| `pkg://featvis_run/assets/demo_shapes.pth` |" in rows["model.checkpoint"]
    # every option of every group, with what it sets where it differs from the default option
    assert "`output.overlaid`=`false`, `output.draw_boxes`=`false`" in rows["output=heatmap"]
    assert "recorder `neck` = {type: module_outputs, source: neck, level_prefix: p}" in rows["recorder=fpn"]


def test_every_documented_manifest_key_has_a_description():
    assert _gen().undocumented_manifest_keys() == []
    page = _gen().manifest_reference()
    for key in ("format_version", "images[].geometry", "outputs[].stride_hw", "failures[].reason"):
        assert f"| `{key}` |" in page


def _result(tmp_path: Path) -> RunResult:
    model = ModelRecord("m", "mmdet", "/c.py", None, None, 0, "cpu", 3)
    image = ImageRecord("/i.png", (48, 64), (48, 64), detections=2, boxes_drawn=2, id="i")
    output = MapRecord("i", "neck", "p3", (8, 6, 8), (6, 8), "squeeze_mean", (), {"min": 0.0, "max": 1.0,
                       "mean": 0.5}, "i/neck/p3.png", scale=(0.0, 1.0))  # fmt: skip
    return RunResult("single", tmp_path, {"topk": 20}, (model,), (image,), (output,), (Failure("/x.png", "why"),),
                     ("a note",), {"forward": 0.1}, {"cache_hit": False, "forward_passes": 1})  # fmt: skip


def test_manifest_schema_accepts_what_a_run_writes_and_refuses_a_missing_or_mistyped_key(tmp_path):
    validator = _validator()
    manifest = json.loads(json.dumps(_result(tmp_path).manifest()))
    assert manifest["format_version"] == 2
    assert list(validator.iter_errors(manifest)) == []
    for key in ("format_version", "experiment", "models", "images", "outputs", "failures", "config"):
        broken = {k: v for k, v in manifest.items() if k != key}
        assert not validator.is_valid(broken), key
    for path, value in ((("format_version",), "2"), (("outputs", 0, "shape"), [6, 8]),
                        (("images", 0, "size_hw"), [48]), (("status",), "fine")):  # fmt: skip
        broken = json.loads(json.dumps(manifest))
        node = broken
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
        assert not validator.is_valid(broken), path
    del manifest["outputs"][0]["file"]
    assert not validator.is_valid(manifest)


def _bash_blocks(page: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)


@pytest.mark.slow
def test_getting_started_commands_run_as_written(tmp_path):
    """Every ```bash block of docs/getting-started.md, in order, in an empty folder, offline."""
    blocks = _bash_blocks(REPO / "docs" / "getting-started.md")
    assert len(blocks) >= 4
    env = dict(os.environ, PATH=f"{Path(console_script()).parent}{os.pathsep}{os.environ['PATH']}")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", "2")
    for block in blocks:
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=240)  # fmt: skip
        assert done.returncode == 0, f"{block}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    validator = _validator()
    first = tmp_path / "first-run"
    pictures = [f"p{k}.{ext}" for k in range(3, 8) for ext in ("npy", "png")]  # output.pictures=both for single
    assert sorted(p.name for p in (first / "demo_scene" / "neck").iterdir()) == pictures
    assert (first / "demo_scene" / "image.jpg").is_file()
    for name in ("index.html", "manifest.json", "cli.log", ".hydra", ".featvis"):
        assert (first / name).exists(), name
    manifests = {p.parent.name: json.loads(p.read_text()) for p in tmp_path.rglob("manifest.json")}
    for name, manifest in manifests.items():
        assert list(validator.iter_errors(manifest)) == [], name
    assert manifests["top8"]["cache_hit"] and manifests["top8"]["forward_passes"] == 0  # "builds no model"
    assert {o["reducer"] for o in manifests["top8"]["outputs"]} == {"top8"}  # reducer=none, topk=8
    assert {len(o["channels"]) for o in manifests["top8"]["outputs"]} == {8}
    assert sorted(o["level"] for o in manifests["backbone"]["outputs"]) == ["c2", "c3", "c4", "c5"]
    sweep = tmp_path / "first-sweep"
    jobs = sorted(p.name for p in sweep.iterdir() if (p / "manifest.json").exists())
    assert len(jobs) == 2 and (sweep / "summary.csv").exists() and (sweep / "index.html").exists()
    assert sum(manifests[j]["forward_passes"] for j in jobs) == 0  # the cache the first run filled


def test_readme_is_short_and_its_links_into_docs_exist():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    links = re.findall(r"\]\(((?:docs/)[^)#]+)", readme)
    assert links and [link for link in links if not (REPO / link).exists()] == []
