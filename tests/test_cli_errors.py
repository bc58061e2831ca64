"""Bad input: a one-line error naming the value and the fix, exit code 2, no traceback (unless debug=true)."""

import argparse

import pytest
import torch

from .test_cli import run_cli

pytestmark = pytest.mark.slow


def assert_user_error(proc, *fragments):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("featvis-run: error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture()
def base_args(scene_image, tiny_config, tmp_path):
    return [
        f"image={scene_image}",
        "model=retinanet_r50",
        f"model.mmdet_config={tiny_config}",
        f"output.dir={tmp_path / 'out'}",
    ]


def test_missing_image(base_args, tmp_path):
    proc = run_cli(*base_args, f"image={tmp_path / 'nope.jpg'}")
    assert_user_error(proc, "image=", "nope.jpg", "no such file")


def test_unreadable_non_image_file(base_args, tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("this is not an image")
    assert_user_error(run_cli(*base_args, f"image={text}"), "notes.jpg", "not an image OpenCV can decode")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    assert_user_error(run_cli(*base_args, f"image={empty}"), "empty.png", "not an image")


def test_missing_checkpoint(base_args, tmp_path):
    proc = run_cli(*base_args, f"model.checkpoint={tmp_path / 'r101.pth'}")
    assert_user_error(proc, "model.checkpoint=", "r101.pth", "no such file")


def test_refused_checkpoint_explains_the_trust_flag(base_args, tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"state_dict": {}, "meta": {"args": argparse.Namespace(a=1)}}, path)
    proc = run_cli(*base_args, f"model.checkpoint={path}")
    assert_user_error(proc, "weights_only=True", "model.trust_checkpoint=true")


def test_a_checkpoint_that_would_crash_numpy_is_one_line_not_a_segfault(base_args, tmp_path):
    from .checkpoint_payloads import SEGFAULT, checkpoint_pickle, torch_zip

    path = torch_zip(tmp_path / "segfault.pth", checkpoint_pickle(SEGFAULT))
    proc = run_cli(*base_args, f"model.checkpoint={path}")
    assert_user_error(proc, "segfault.pth", "numpy dtype 'O8'", "model.trust_checkpoint=true")


def test_unknown_layer_lists_closest_names(base_args):
    proc = run_cli(*base_args, "recorder.recorders.neck.source=nek")
    assert_user_error(proc, "no module named 'nek'", "closest: neck", "mode=layers")


def test_arrangement_too_small(base_args):
    proc = run_cli(*base_args, "reducer=none", "topk=9", "layout=grid_2x4")
    assert_user_error(proc, "layout.arrangement=[2, 4] holds 8 maps but 9", "layout=auto")


def test_alpha_outside_unit_interval(base_args):
    assert_user_error(run_cli(*base_args, "output.alpha=1.5"), "output.alpha=1.5", "[0, 1]")


def test_unwritable_output_folder(base_args, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    proc = run_cli(*base_args, f"output.dir={blocker / 'sub'}")
    assert_user_error(proc, "output.dir=", "not a writable folder")


def test_topk_minus_one_on_many_channels_asks_for_a_reduction(base_args):
    proc = run_cli(*base_args, "reducer=none", "topk=-1")
    assert_user_error(proc, "topk=-1", "neck/p3 has 16", "reducer=")


def test_debug_shows_the_traceback(base_args, tmp_path):
    proc = run_cli(*base_args, f"image={tmp_path / 'nope.jpg'}", "debug=true")
    assert proc.returncode != 0 and "Traceback" in proc.stderr + proc.stdout


def test_wrong_types_and_misspelt_keys_are_one_line_before_hydra(base_args):
    proc = run_cli(*base_args, "output.alpha=abc")
    assert_user_error(proc, "output.alpha='abc' is not a number; e.g. output.alpha=0.5")
    proc = run_cli(*base_args, "output.alhpa=0.3")
    assert_user_error(proc, "there is no option output.alhpa; did you mean output.alpha=0.3?")


def test_demo_weights_left_on_another_config(scene_image, tiny_config, tmp_path):
    proc = run_cli(f"image={scene_image}", f"model.mmdet_config={tiny_config}", f"output.dir={tmp_path / 'out'}")
    assert_user_error(proc, "model.checkpoint='pkg://featvis_run/assets/demo_shapes.pth'", "model=retinanet_r50")


def test_inputs_the_experiment_would_ignore_are_refused(base_args, scene_image, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    no_image = [a for a in base_args if not a.startswith("image=")]
    proc = run_cli(*no_image, f"images={folder}")  # a single run would draw the demo scene instead
    assert_user_error(proc, f"images={str(folder)!r}", "experiment=multi_image")
    proc = run_cli(*base_args, "experiment=multi_image", f"images={folder}")
    assert_user_error(proc, "image=", "images=", "both given")


def test_diff_errors_name_the_model_key(scene_image, tiny_config, tmp_path):
    proc = run_cli(
        "experiment=diff",
        f"image={scene_image}",
        f"model_a.mmdet_config={tiny_config}",
        f"model_b.mmdet_config={tiny_config}",
        f"model_b.checkpoint={tmp_path / 'missing.pth'}",
        f"output.dir={tmp_path / 'out'}",
    )
    assert_user_error(proc, "model_b.checkpoint=", "missing.pth", "no such file")
