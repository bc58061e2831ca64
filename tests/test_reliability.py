"""Faults a user meets: a full or unwritable cache, NaN and partial weights, Ctrl-C and resume, two runs at once,
odd paths and inputs. Each asserts what the user sees (exit code, one line, files) and that no work is lost."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from featvis_run.cli_args import prepare_argv
from featvis_run.errors import ModelError
from featvis_run.models.checkpoint import load_checkpoint_state
from featvis_run.paths import DEMO_CHECKPOINT, DEMO_SCENE
from featvis_run.store.images import collect_images

from .conftest import console_script
from .test_cli import run_cli
from .test_cli_errors import assert_user_error

ROOT = os.geteuid() == 0


def strict_json(path: Path) -> dict:
    """Parse as a browser would: NaN and Infinity are errors."""

    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    """Eight 320 x 240 scenes with a disc and a square."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        img = (rng.random((240, 320, 3)) * 60 + 80).astype(np.uint8)
        cv2.circle(img, (80 + 10 * i, 120), 40, (0, 0, 255), -1)
        cv2.rectangle(img, (200, 60), (290, 150), (255, 0, 0), -1)
        cv2.imwrite(str(folder / f"img{i}.png"), img)
    return folder


@pytest.fixture()
def tmpfs(tmp_path: Path):
    """A 600 KB tmpfs (needs root: skipped otherwise), unmounted afterwards."""
    if not ROOT:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


# ---- pure pieces ----


def test_symlinked_folders_are_followed_once_without_looping(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "sub").mkdir(parents=True)
    elsewhere.mkdir()
    for folder, name in ((root, "a.png"), (root / "sub", "b.png"), (elsewhere, "c.png")):
        cv2.imwrite(str(folder / name), np.zeros((4, 4, 3), np.uint8))
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a link back up
    found = collect_images(str(root))
    assert [p.name for p in found] == ["a.png", "c.png", "b.png"]  # linked/c.png sorts before sub/b.png


def test_path_values_are_quoted_for_hydra_and_commas_still_sweep():
    argv = prepare_argv(
        ["image=/d/a b=ü(1).jpg", "-m", "model.checkpoint=a.pth,b.pth", "topk=4,8", "images=[x.jpg,y.jpg]"]
    )
    assert argv == [
        "-m",  # moved first: Hydra refuses overrides after it otherwise
        "image='/d/a b=ü(1).jpg'",
        "model.checkpoint='a.pth','b.pth'",
        "topk=4,8",
        "images.paths=[x.jpg,y.jpg]",
    ]
    assert prepare_argv(["output.dir='a,b'", "cache.dir=null", "image=it's"]) == [
        "output.dir='a,b'",
        "cache.dir=null",
        "image='it\\'s'",
    ]


def test_checkpoint_errors_are_whole_sentences(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"a": torch.zeros(3)}}, good)
    truncated, empty, text = tmp_path / "t.pth", tmp_path / "e.pth", tmp_path / "x.pth"
    truncated.write_bytes(good.read_bytes()[:300])
    empty.write_bytes(b"")
    text.write_text("hello")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    expected = {
        truncated: "is a truncated or corrupted checkpoint (PyTorch cannot read its zip archive); give a .pth file",
        empty: "is empty or cut short; give a .pth file saved by torch.save",
        text: "is not a PyTorch checkpoint (neither a torch.save archive nor a pickle); give a .pth file",
        evil: "was refused by torch.load(weights_only=True): it pickles Python objects besides tensors "
        "(posix.system). If you trust where the file came from, rerun with model.trust_checkpoint=true",
    }
    for path, fragment in expected.items():
        with pytest.raises(ModelError) as info:
            load_checkpoint_state(path, trust=False)
        assert fragment in str(info.value) and "\n" not in str(info.value)


# ---- end to end ----


@pytest.mark.slow
def test_an_unwritable_cache_costs_no_image_and_no_extra_forward_pass(image_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    out = tmp_path / "run"
    proc = run_cli(
        "experiment=multi_image",
        f"images={image_dir}",
        "images.batch_size=2",
        f"cache.dir={blocker}/c",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = strict_json(out / "manifest.json")
    assert len(m["images"]) == 8 and not m["failures"] and m["forward_passes"] == 4
    assert "Not a directory" in m["cache"]["turned_off"] and proc.stderr.count("warning:") == 1


@pytest.mark.slow
def test_a_full_cache_disk_is_survived(image_dir, tmp_path, tmpfs):
    out = tmp_path / "run"
    proc = run_cli(
        "experiment=multi_image",
        f"images={image_dir}",
        "images.batch_size=1",
        f"cache.dir={tmpfs}/cache",
        f"output.dir={out}",
    )
    assert proc.returncode == 0, proc.stderr
    m = strict_json(out / "manifest.json")
    assert len(m["images"]) == 8 and not m["failures"] and m["forward_passes"] == 8
    assert "No space left" in m["cache"]["turned_off"]
    assert not [p for p in tmpfs.rglob("*.tmp")]


@pytest.mark.slow
def test_a_full_output_folder_is_one_line_and_leaves_no_temp_files(tmpfs):
    proc = run_cli(f"output.dir={tmpfs}/out", "cache=off", "output.format=png", "output.resize_shape=[2000,2600]")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "No space left on device" in lines[0] and "output.dir" in lines[0]
    assert not list(tmpfs.rglob("*.tmp"))


@pytest.mark.slow
def test_nan_weights_are_drawn_grey_with_loud_notes_and_strict_json(tmp_path):
    ckpt = torch.load(DEMO_CHECKPOINT, weights_only=True)
    ckpt["state_dict"]["neck.fpn_convs.0.conv.weight"][:] = float("nan")  # P3 is NaN everywhere
    bad = tmp_path / "nan.pth"
    torch.save(ckpt, bad)
    out = tmp_path / "run"
    # the picture alone (no caption band above it): every pixel of it is the map's
    args = ("model=demo_shapes", f"model.checkpoint={bad}", "cache=off", "output.caption=false")
    proc = run_cli(*args, f"output.dir={out}")
    assert proc.returncode == 0, proc.stderr
    m = strict_json(out / "manifest.json")
    p3 = next(o for o in m["outputs"] if o["level"] == "p3")
    c, h, w = p3["shape"]
    assert p3["non_finite"] == c * h * w and p3["stats"] == {"min": None, "max": None, "mean": None}
    assert all(o["non_finite"] == 0 for o in m["outputs"] if o["level"] != "p3")
    picture = cv2.imread(str(out / p3["file"]))
    assert (picture == 128).all(axis=2).mean() > 0.95  # grey: no finite values
    assert any(n.startswith("NON-FINITE: neck/p3") for n in m["notes"])
    assert any(n.startswith("NON-FINITE WEIGHTS: 1 tensors") for n in m["notes"])
    assert "NON-FINITE" in proc.stdout


@pytest.mark.slow
def test_a_checkpoint_that_fits_part_of_the_model_is_refused_unless_accepted(tmp_path):
    ckpt = torch.load(DEMO_CHECKPOINT, weights_only=True)
    state = ckpt["state_dict"]
    ckpt["state_dict"] = {k: v for k, v in state.items() if not k.startswith("backbone.")}
    own = len(state)  # the demo checkpoint sets every tensor of the model
    kept = len(ckpt["state_dict"])
    partial = tmp_path / "partial.pth"
    torch.save(ckpt, partial)
    args = ("model=demo_shapes", f"model.checkpoint={partial}", "cache=off")
    refused = run_cli(*args, f"output.dir={tmp_path / 'a'}")
    assert_user_error(refused, f"it sets {kept} of the model's {own} tensors", "model.partial_checkpoint=true")
    out = tmp_path / "b"
    accepted = run_cli(*args, "model.partial_checkpoint=true", f"output.dir={out}")
    assert accepted.returncode == 0, accepted.stderr
    m = strict_json(out / "manifest.json")
    assert any(n.startswith("PARTIAL CHECKPOINT") for n in m["notes"]) and "PARTIAL CHECKPOINT" in accepted.stdout
    assert m["models"][0]["matched_keys"] == kept


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(tmp_path):
    """Deterministic under any load: the last of the 24 inputs is a named pipe, whose reading blocks until the test
    writes it, so the run cannot finish before Ctrl-C comes; the test waits until at least one image is journaled."""
    folder = tmp_path / "many"
    folder.mkdir()
    demo = cv2.imread(str(DEMO_SCENE))
    for i in range(23):
        cv2.imwrite(str(folder / f"s{i:02d}.png"), np.roll(demo, 17 * i, axis=1))
    late = tmp_path / "late" / "s23.png"
    late.parent.mkdir()
    os.mkfifo(late)
    out = tmp_path / "run"
    cmd = [
        console_script(),
        "experiment=multi_image",
        f"images=[{folder},{late}]",
        "images.batch_size=1",
        "cache=off",
        f"output.dir={out}",
    ]
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    journal = out / ".featvis" / "done.jsonl"
    deadline = time.time() + 900
    while not (journal.exists() and journal.read_text().count("\n") >= 1):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1]
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    lines = [line for line in err.splitlines() if line.strip() and "images" not in line[:8]]
    assert lines[-1].startswith("featvis-run: interrupted after ") and "of 24 images" in lines[-1]
    assert lines[-1].endswith("rerun the same command to resume") and "Traceback" not in err
    done = int(lines[-1].split("after ")[1].split(" of")[0])
    journaled = journal.read_text().count("\n")
    # the pipe was never written: at most the 23 pictures before it; every journaled image was counted as done
    assert 1 <= journaled <= done <= 23 and not list(out.rglob("*.tmp")) and not (out / "manifest.json").exists()
    late.unlink()
    cv2.imwrite(str(late), np.roll(demo, 17 * 23, axis=1))
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    m = strict_json(out / "manifest.json")
    assert m["resumed_images"] == journaled and len(m["images"]) == 24
    assert m["forward_passes"] == 24 - journaled
    assert len(m["outputs"]) == 24 * 5 and len({o["file"] for o in m["outputs"]}) == 24 * 5
    assert not [p for p in out.rglob("*-1.png")] and not list(out.glob("manifest-*.json"))


@pytest.mark.slow
def test_other_settings_are_refused_before_hydra_touches_the_folder(tmp_path, scene_image, tiny_config):
    out = tmp_path / "run"
    args = (f"image={scene_image}", "model=retinanet_r50", f"model.mmdet_config={tiny_config}", f"output.dir={out}")
    assert run_cli(*args).returncode == 0
    record = (out / ".hydra" / "config.yaml").read_bytes()
    first = (out / "scene/neck/p3.png").read_bytes()
    refused = run_cli(*args, "reducer=select_max")
    assert_user_error(refused, "holds a run with other settings", "reducer.name", "output.overwrite=true")
    assert (out / ".hydra" / "config.yaml").read_bytes() == record and (out / "scene/neck/p3.png").read_bytes() == first
    same = run_cli(*args, "cache.dir=elsewhere", "debug=false")  # keys that do not change the pictures
    assert same.returncode == 0 and json.loads((out / "manifest.json").read_text())["resumed_images"] == 1
    replaced = run_cli(*args, "reducer=select_max", "output.overwrite=true")
    assert replaced.returncode == 0, replaced.stderr
    m = strict_json(out / "manifest.json")
    assert m["outputs"][0]["reducer"] == "select_max" and m["resumed_images"] == 0
    assert (out / "scene/neck/p3.png").read_bytes() != first and not list(out.rglob("*-1.png"))


@pytest.mark.slow
def test_runs_and_sweeps_started_together_get_their_own_folders(tmp_path, scene_image, tiny_config):
    common = [console_script(), f"image={scene_image}", "model=retinanet_r50", f"model.mmdet_config={tiny_config}"]
    runs = [subprocess.Popen(common, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    sweeps = [
        subprocess.Popen(
            [*common, "-m", "reducer=select_max,squeeze_mean"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    assert all(p.wait(timeout=600) == 0 for p in runs + sweeps)
    run_dirs = [p.parent for p in (tmp_path / "outputs").rglob("manifest.json") if "multirun" not in p.parts]
    assert len(set(run_dirs)) == 2
    summaries = list((tmp_path / "outputs" / "multirun").rglob("summary.json"))
    assert len(summaries) == 2
    for summary in summaries:
        data = json.loads(summary.read_text())
        assert data["jobs"] == 2 and data["failed"] == 0


@pytest.mark.slow
def test_unquoted_odd_paths_work(tmp_path, scene_image):
    odd = tmp_path / "a b=c ü"
    odd.mkdir()
    image = odd / "scène=1 (copy).png"
    shutil.copy(scene_image, image)
    out = odd / "out dir=ü"
    proc = run_cli(f"image={image}", f"output.dir={out}", "cache=off")
    assert proc.returncode == 0, proc.stderr
    m = strict_json(out / "manifest.json")
    assert m["images"][0]["path"] == str(image) and (out / m["outputs"][0]["file"]).is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("model.test_scale=[0,0]", ("model.test_scale=[0, 0] must be two positive sizes",)),
        ("layout.max_tile=0", ("layout.max_tile=0 must be a positive size",)),
        ("cache.max_gb=0", ("cache.max_gb=0", "positive size in GB")),
    ],
)
def test_impossible_sizes_are_one_line_errors(override, fragments, tmp_path):
    assert_user_error(run_cli(override, f"output.dir={tmp_path / 'o'}"), *fragments)
