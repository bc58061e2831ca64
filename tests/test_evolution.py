"""Maps over a sequence of checkpoints: natural order, fixed channels, one colour range, GIF frames, change numbers."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from featvis_run.drawing.render import RenderOptions, render_map
from featvis_run.errors import ConfigError
from featvis_run.experiments.checkpoints import collect_checkpoints
from featvis_run.experiments.evolution import Frame, write_sequence
from featvis_run.experiments.settings import DrawSettings
from featvis_run.maps.evolution import change_to_reference, natural_key, reduce_fixed, shared_range
from featvis_run.maps.geometry import Geometry
from featvis_run.maps.reduce import ReducedMap
from featvis_run.recording.levels import LevelKey


def test_natural_order_puts_epoch_9_before_epoch_10():
    names = ["epoch_10", "epoch_9", "iter_100", "epoch_1", "epoch_2", "iter_20"]
    assert sorted(names, key=natural_key) == ["epoch_1", "epoch_2", "epoch_9", "epoch_10", "iter_20", "iter_100"]
    assert sorted(names) != sorted(names, key=natural_key)  # plain sorting would put epoch_10 first


def test_collect_checkpoints_from_a_glob_a_folder_and_a_list(tmp_path):
    for n in (10, 9, 1, 2):
        (tmp_path / f"epoch_{n}.pth").write_bytes(b"x")
    (tmp_path / "last_checkpoint").write_text("epoch_10.pth")
    want = [tmp_path / f"epoch_{n}.pth" for n in (1, 2, 9, 10)]
    assert collect_checkpoints(str(tmp_path / "epoch_*.pth")) == want
    assert collect_checkpoints(str(tmp_path)) == want  # a folder: its .pth files only
    missing = tmp_path / "epoch_3.pth"
    listed = collect_checkpoints([str(tmp_path / "epoch_10.pth"), str(missing), str(tmp_path / "epoch_2.pth")])
    assert listed == [tmp_path / "epoch_2.pth", missing, tmp_path / "epoch_10.pth"]  # a missing file is kept
    with pytest.raises(ConfigError, match="matches no file"):
        collect_checkpoints(str(tmp_path / "nothing_*.pth"))
    with pytest.raises(ConfigError, match="needs checkpoints"):
        collect_checkpoints(None)


def test_shared_range_is_the_finite_min_and_max_over_all_frames():
    a = np.array([[[1.0, 2.0], [np.nan, 3.0]]])
    b = np.array([[[-4.0, 0.5], [np.inf, 2.0]]])
    assert shared_range([a, b]) == (-4.0, 3.0)
    assert shared_range([np.full((1, 2, 2), np.nan)]) is None


def test_select_max_and_topk_keep_the_reference_channels():
    early = np.zeros((4, 3, 3), np.float32)
    early[0] = 5.0  # on its own, the early frame's strongest channel is 0 ...
    early[2] = 1.0
    last = np.zeros((4, 3, 3), np.float32)
    last[2], last[3] = 9.0, 4.0  # ... but the last frame's are 2, then 3
    red = reduce_fixed(early, "select_max", 20, (2,))
    assert red.channels == (2,) and np.array_equal(red.maps, early[2:3])
    grid = reduce_fixed(early, "none", 2, (2, 3))
    assert grid.channels == (2, 3) and grid.kind == "grid" and np.array_equal(grid.maps, early[[2, 3]])
    assert reduce_fixed(early, "squeeze_mean", 20, None).maps.shape == (1, 3, 3)


def test_value_range_maps_colours_over_the_range_and_clips():
    values = np.array([[[0.0, 5.0, 10.0, 20.0]]], np.float32)  # 20 is past the range: clipped to its top
    opts = RenderOptions(overlaid=False, min_size=0, value_range=(0.0, 10.0), colormap="jet")
    picture = render_map(ReducedMap(values, (), "squeeze_mean"), (1, 4), Geometry.identity((1, 4)), None, opts)
    expected = cv2.applyColorMap(np.array([[0, 127, 255, 255]], np.uint8), cv2.COLORMAP_JET)  # floor(5 * 25.5)
    assert np.array_equal(picture, expected)
    per_map = render_map(
        ReducedMap(values, (), "x"), (1, 4), Geometry.identity((1, 4)), None, RenderOptions(min_size=0)
    )
    assert not np.array_equal(per_map, picture)  # without a range, 20 is the top colour and 10 is not


def test_change_to_reference_matches_numpy():
    rng = np.random.default_rng(0)
    ref = rng.random((3, 4, 5)).astype(np.float32)
    other = ref + 0.5
    (c_other, c_ref) = change_to_reference([other, ref], ref)
    assert c_other["mean_abs_diff"] == pytest.approx(0.5, abs=1e-6) and c_other["cka"] == pytest.approx(1.0)
    assert c_ref == {"mean_abs_diff": 0.0, "cka": pytest.approx(1.0)}


def _settings(reducer: str) -> DrawSettings:
    render = RenderOptions(overlaid=False, min_size=0)
    return DrawSettings(reducer, 20, False, render, False, 0.3, "png")


def test_a_level_sequence_writes_frames_gif_strip_plot_on_one_scale(tmp_path):
    g = Geometry.identity((4, 6))
    frames = []
    for i, peak in enumerate((1.0, 3.0, 2.0)):
        feat = np.zeros((3, 4, 6), np.float32)
        feat[1] = peak  # channel 1 is the strongest in the last frame ...
        feat[0] = 2.5 if i == 0 else 0.0  # ... channel 0 in the first one (kept at channel 1 nevertheless)
        frames.append(Frame(f"epoch_{[2, 9, 10][i]}", feat, g))
    image = np.zeros((4, 6, 3), np.uint8)
    records, entry, notes = write_sequence(
        tmp_path, "img", image, LevelKey("neck", "p3"), frames, _settings("select_max")
    )
    assert entry["scale"] == [1.0, 3.0] and entry["channels"] == [1] and not notes
    assert [r.checkpoint for r in records] == ["epoch_2", "epoch_9", "epoch_10"]
    assert all(r.channels == (1,) and r.scale == (1.0, 3.0) for r in records)
    # constant frames on the shared range: 1.0 is the bottom colour, 3.0 the top, 2.0 the middle (floor(127.5))
    for record, level in zip(records, (0, 255, 127), strict=True):
        picture = cv2.imread(str(tmp_path / record.file))
        colour = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_JET)[0, 0]
        assert (picture == colour).all(), record.file
    with Image.open(tmp_path / entry["gif"]) as gif:
        assert gif.n_frames == 3
    strip = cv2.imread(str(tmp_path / entry["strip"]))
    assert strip.shape[1] >= 3 * 6
    assert (tmp_path / entry["change_plot"]).is_file()
    diffs = [c["mean_abs_diff"] for c in entry["change"]]
    expected = [np.abs(f.feat - frames[-1].feat).mean() for f in frames]
    assert diffs == pytest.approx(expected) and entry["change"][-1]["cka"] == pytest.approx(1.0)


def test_experiment_checkpoints_composes_its_options(tmp_path):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from featvis_run.experiments.checkpoints import run_checkpoints
    from featvis_run.schema import register_configs

    from .conftest import CONF_DIR

    register_configs()
    overrides = ["experiment=checkpoints", "checkpoints=[a.pth,b.pth]", "experiment.frame_ms=0"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = OmegaConf.to_object(compose(config_name="config", overrides=overrides))
    assert cfg.experiment.name == "checkpoints" and list(cfg.checkpoints) == ["a.pth", "b.pth"]
    assert cfg.experiment.frame_ms == 0
    with pytest.raises(ConfigError, match="experiment.frame_ms=0"):
        run_checkpoints(cfg, tmp_path, {})
