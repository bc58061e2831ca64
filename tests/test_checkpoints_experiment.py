"""``experiment=checkpoints`` end to end with the tiny model: natural order, a broken checkpoint among good ones,
one colour range per level, channels chosen on the last checkpoint, GIF frames, the cache per checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from .test_cli import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def checkpoint_dir(tiny_config: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """epoch_2, epoch_9, epoch_10 of the tiny model (different weights) and a broken epoch_5."""
    import torch

    from featvis_run.models.pool import ModelPool
    from featvis_run.models.registry import build_model
    from featvis_run.schema import ModelConfig

    folder = tmp_path_factory.mktemp("work_dir")
    for epoch, seed in ((2, 1), (9, 2), (10, 3)):
        det, _ = build_model(ModelConfig(name="tiny", mmdet_config=str(tiny_config), seed=seed), ModelPool())
        torch.save({"state_dict": det.model.state_dict(), "meta": {"epoch": epoch}}, folder / f"epoch_{epoch}.pth")
    (folder / "epoch_5.pth").write_bytes(b"not a checkpoint")
    return folder


def test_checkpoints_run_in_natural_order_on_one_scale_with_a_broken_one_listed(
    checkpoint_dir, tiny_config, scene_image, tmp_path
):
    out, cache = tmp_path / "run", tmp_path / "cache"
    common = [f"model.mmdet_config={tiny_config}", f"image={scene_image}", "reducer=select_max", f"cache.dir={cache}"]
    proc = run_cli("experiment=checkpoints", f"checkpoints={checkpoint_dir}/epoch_*.pth", f"output.dir={out}", *common)
    assert proc.returncode == 1, proc.stderr  # a checkpoint failed: the others ran, the exit code says so
    m = json.loads((out / "manifest.json").read_text())
    assert [c["checkpoint"] for c in m["checkpoints"]] == ["epoch_2", "epoch_5", "epoch_9", "epoch_10"]
    assert [c["status"] for c in m["checkpoints"]] == ["ok", "failed", "ok", "ok"]
    assert "not a PyTorch checkpoint" in m["checkpoints"][1]["reason"]
    assert m["failures"][0]["item"].endswith("epoch_5.pth") and "epoch_5.pth" in proc.stdout
    assert all(len(c["sha256"]) == 64 and c["matched_keys"] > 0 for c in m["checkpoints"] if c["status"] == "ok")
    assert [lv["level"] for lv in m["levels"]] == ["p3", "p4", "p5", "p6", "p7"]
    for lv in m["levels"]:
        frames = [o for o in m["outputs"] if o["level"] == lv["level"]]
        assert [o["checkpoint"] for o in frames] == ["epoch_2", "epoch_9", "epoch_10"]
        lows, highs = [o["stats"]["min"] for o in frames], [o["stats"]["max"] for o in frames]
        assert lv["scale"] == [min(lows), max(highs)] and all(o["scale"] == lv["scale"] for o in frames)
        assert len({tuple(o["channels"]) for o in frames}) == 1 and lv["channels"] == frames[0]["channels"]
        with Image.open(out / lv["gif"]) as gif:
            assert gif.n_frames == 3
        assert (out / lv["strip"]).is_file() and (out / lv["change_plot"]).is_file()
        assert all((out / f).is_file() for f in lv["frames"])
        assert lv["change"][-1] == {"checkpoint": "epoch_10", "mean_abs_diff": 0.0, "cka": pytest.approx(1.0)}
        assert lv["change"][0]["mean_abs_diff"] > 0.0
    # one cache entry per checkpoint (the broken one is looked up too, then fails to load)
    assert m["forward_passes"] == 3 and m["cache"]["misses"] == 4 and m["cache"]["hits"] == 0

    # the channel select_max shows is the one a plain run of the last checkpoint picks
    single = tmp_path / "single"
    proc = run_cli(f"model.checkpoint={checkpoint_dir}/epoch_10.pth", f"output.dir={single}", *common)
    assert proc.returncode == 0, proc.stderr
    picked = {o["level"]: o["channels"] for o in json.loads((single / "manifest.json").read_text())["outputs"]}
    assert {lv["level"]: lv["channels"] for lv in m["levels"]} == picked

    # a second run reads every checkpoint's maps from the cache
    again = tmp_path / "again"
    proc = run_cli("experiment=checkpoints", f"checkpoints={checkpoint_dir}", f"output.dir={again}", *common)
    m2 = json.loads((again / "manifest.json").read_text())
    assert proc.returncode == 1 and m2["forward_passes"] == 0 and m2["cache"]["hits"] == 3, proc.stderr
    assert [lv["scale"] for lv in m2["levels"]] == [lv["scale"] for lv in m["levels"]]
