"""featvis-run deletes or replaces only files it wrote and recorded itself: a folder it did not make is refused
before Hydra writes into it, paths in a run's records never lead out of the run folder, a user's own files in a
run folder survive ``output.overwrite=true``, a killed writer's temp file is cleaned up, and Ctrl-C journals every
image whose pictures are complete. No model is built here (fake feature sources stand in)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from omegaconf import OmegaConf

from featvis_run.cli import _check_same_settings
from featvis_run.errors import ConfigError, RunInterrupted
from featvis_run.experiments import batch_run
from featvis_run.experiments import diff as diff_experiment
from featvis_run.experiments.batch_run import run_images
from featvis_run.maps.geometry import Geometry
from featvis_run.models.base import ImageFeatures
from featvis_run.recording.levels import LevelKey
from featvis_run.store.manifest import ModelRecord
from featvis_run.store.run_folder import RunFolder, claim_folder, is_run_folder, settings_of

from .conftest import console_script
from .test_cli_errors import assert_user_error
from .test_config import _compose
from .test_diff_run import FakeSource as FakeDiffSource

OLD = {"reducer": {"name": "select_max"}, "topk": 20}  # the settings of "an earlier run"
NEW = {"reducer": {"name": "squeeze_mean"}, "topk": 20}


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def write(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def run_folder(out: Path, files: list, manifest: dict | None = None, marker: bool = True) -> Path:
    """A run folder of an earlier run with settings ``OLD``: ``files`` journaled for image ``img``."""
    if marker:
        write(out / ".featvis/folder.json", json.dumps({"made_by": "featvis-run", "format": 2, "foreign": []}))
    write(out / ".featvis/run.json", json.dumps({"fingerprint": "x", "settings": settings_of(OLD)}))
    entry = {"image_id": "img", "files": files, "image": {}, "outputs": [], "notes": []}
    write(out / ".featvis/done.jsonl", json.dumps(entry) + "\n")
    if manifest is not None:
        write(out / "manifest.json", json.dumps({"experiment": "multi_image", "outputs": [], **manifest}))
    return out


def refused_by_cli(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [console_script(), f"output.dir={out}", *args], capture_output=True, text=True, timeout=300, cwd=out.parent
    )


# ---- folders featvis-run did not make ----


def test_a_stray_manifest_is_refused_before_hydra_and_what_it_names_outside_survives(tmp_path):
    (tmp_path / "evil").mkdir()
    victim = write(tmp_path / "victims/v1.txt", "keep me")
    write(tmp_path / "evil/manifest.json", json.dumps({"outputs": [{"file": "../victims/v1.txt"}]}))
    before = tree(tmp_path / "evil")
    proc = refused_by_cli(tmp_path / "evil")
    assert_user_error(proc, "output.dir=", "is not a featvis-run run folder", "manifest.json", "output.overwrite=true")
    assert victim.read_text() == "keep me"
    assert tree(tmp_path / "evil") == before and not (tmp_path / "evil/.hydra").exists()  # Hydra never ran


def test_a_web_folder_is_refused_untouched_and_overwrite_removes_nothing_of_it(tmp_path):
    web = tmp_path / "site"
    write(web / "manifest.json", json.dumps({"name": "my site", "icons": []}))  # a web app manifest
    write(web / "layers.json", "[1, 2]")
    write(web / "index.html", "<html>home</html>")
    write(web / "contact/index.html", "<html>contact</html>")
    write(web / "contact/photo.png", "png")
    before = tree(web)
    proc = refused_by_cli(web, "experiment=multi_image")
    assert_user_error(proc, "is not a featvis-run run folder", "contact, index.html, layers.json, manifest.json")
    assert "output.overwrite=true" in proc.stderr
    assert tree(web) == before and not is_run_folder(web)
    # with output.overwrite=true the folder is used, but opening the run removes nothing of it
    assert _check_same_settings([f"output.dir={web}", "output.overwrite=true"], []) is None
    RunFolder.open(web, NEW, overwrite=True)
    assert {k: v for k, v in tree(web).items() if not k.startswith(".featvis/")} == before


def test_an_empty_folder_and_one_the_run_only_adds_to_are_used(tmp_path):
    empty, photos = tmp_path / "empty", tmp_path / "photos"
    empty.mkdir()
    write(photos / "holiday/a.jpg", "jpg")
    write(photos / "notes.txt", "mine")
    for folder in (empty, photos):
        assert _check_same_settings([f"output.dir={folder}"], []) is None
        assert is_run_folder(folder)
    marker = json.loads((photos / ".featvis/folder.json").read_text())
    assert marker == {"made_by": "featvis-run", "format": 2, "foreign": ["holiday", "notes.txt"]}
    # a run whose image folder would be `holiday` writes into the user's folder: refused, unless overwrite
    with pytest.raises(ConfigError, match=r"holds files featvis-run did not write: holiday, .*output.overwrite=true"):
        RunFolder.open(photos, NEW, names=["holiday"])
    RunFolder.open(photos, NEW, names=["beach"])
    assert (photos / "notes.txt").read_text() == "mine" and (photos / "holiday/a.jpg").read_text() == "jpg"


# ---- paths read from records ----


def escaping_paths(tmp_path: Path) -> tuple[list[str], list[Path]]:
    """Four record paths that lead out of ``tmp_path/run`` (../, absolute, sub/../../, a link), and their victims."""
    victims = [write(tmp_path / f"victims/v{i}.txt", f"victim {i}") for i in range(4)]
    (tmp_path / "run").mkdir()
    (tmp_path / "run/link").symlink_to(tmp_path / "victims", target_is_directory=True)
    names = ["../victims/v0.txt", str(victims[1]), "sub/../../victims/v2.txt", "link/v3.txt"]
    return names, victims


def test_overwrite_ignores_record_paths_outside_the_run_folder_with_a_note(tmp_path):
    names, victims = escaping_paths(tmp_path)
    out = tmp_path / "run"
    own = write(out / "img/neck/p3.png")
    run_folder(out, ["img/neck/p3.png", *names[:2]], {"outputs": [{"file": f} for f in names[2:]], "config": OLD})
    folder = RunFolder.open(out, NEW, overwrite=True)
    assert [v.read_text() for v in victims] == [f"victim {i}" for i in range(4)]
    assert not own.exists() and not (out / "img").exists()  # its own file went, and the folders it emptied
    assert (out / "link").is_symlink() and not (out / "manifest.json").exists()
    assert folder.notes == [
        "ignored 4 path(s) outside the run folder in the earlier run's records (neither read nor removed)"
    ]


def test_a_journal_entry_naming_a_path_outside_is_not_resumed(tmp_path):
    names, victims = escaping_paths(tmp_path)
    out = tmp_path / "run"
    write(out / "good/neck/p3.png")
    run_folder(out, ["bad/neck/p3.png", *names])  # entry of image `img`
    with (out / ".featvis/done.jsonl").open("a") as fh:
        fh.write(json.dumps({"image_id": "good", "files": ["good/neck/p3.png"]}) + "\n")
    folder = RunFolder.open(out, OLD)  # the same settings: a resume
    assert folder.resumed and list(folder.done) == ["good"] and folder.finished("good") is not None
    assert folder.notes == [
        "ignored 4 path(s) outside the run folder in .featvis/done.jsonl (neither read nor removed)"
    ]
    assert all(v.exists() for v in victims)


def test_overwrite_removes_only_recorded_files_and_keeps_the_users_notes(tmp_path):
    out = tmp_path / "run"
    sheets = [{"layer": "neck", "level": "p3", "file": "contact/neck/p3.png"}]
    run_folder(out, ["img/neck/p3.png"], {"contact_sheets": sheets, "config": OLD})
    for name in ("img/neck/p3.png", "contact/neck/p3.png", "index.html", "layers.json"):
        write(out / name)
    notes, beside = write(out / "contact/my_notes.txt", "mine"), write(out / "img/neck/README", "mine too")
    RunFolder.open(out, NEW, overwrite=True)
    assert sorted(tree(out)) == [".featvis/folder.json", "contact/my_notes.txt", "img/neck/README"]
    assert notes.read_text() == "mine" and beside.read_text() == "mine too"


def test_a_run_folder_of_the_previous_format_is_recognised_and_resumed(tmp_path):
    out = tmp_path / "run"
    run_folder(out, ["img/neck/p3.png"], marker=False)  # .featvis/run.json and journal, no marker
    write(out / "img/neck/p3.png")
    assert is_run_folder(out)
    folder = RunFolder.open(out, OLD)
    assert folder.resumed and folder.finished("img") is not None and folder.notes == []
    assert json.loads((out / ".featvis/folder.json").read_text())["format"] == 2


def test_a_manifest_of_an_earlier_version_counts_as_a_run_and_keeps_its_settings(tmp_path):
    out = tmp_path / "run"
    argv = [f"output.dir={out}", "reducer=select_max"]
    resolved = OmegaConf.to_container(OmegaConf.structured(_compose(*argv)), resolve=True, enum_to_str=True)
    write(out / "manifest.json", json.dumps({"experiment": "single", "outputs": [], "config": resolved}))
    write(out / "demo_scene/neck/p3.png")
    assert is_run_folder(out)
    assert _check_same_settings(argv, argv) is None  # the same settings: accepted (and marked)
    problem = _check_same_settings(argv[:1], argv[:1])
    assert problem is not None and "holds a run with other settings" in problem and "reducer.name" in problem


# ---- interrupted writes ----


def test_a_temp_file_left_by_a_killed_writer_is_removed_by_the_next_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    claim_folder(out, overwrite=False)  # as the command line does before the run starts
    target = out / "img/neck/p3.png"
    kill_at_fsync = (
        "import os, signal, sys\nfrom pathlib import Path\nfrom featvis_run.store import outputs\n"
        "os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)\n"
        "outputs.write_bytes(Path(sys.argv[1]), b'png')\n"
    )
    proc = subprocess.run([sys.executable, "-c", kill_at_fsync, str(target)], capture_output=True, timeout=120)
    assert proc.returncode == -9
    (left,) = list((out / "img/neck").iterdir())
    assert left.name.startswith(".p3.png.") and left.name.endswith(".tmp")
    mine = [write(out / "img/neck/.p3.png.tmp"), write(out / "img/.notes.12345678.tmp.txt")]  # other names stay
    folder = RunFolder.open(out, NEW)
    assert not left.exists() and all(p.exists() for p in mine)
    assert folder.notes == ["removed 1 temp file(s) left by an interrupted write"]


class FakeSource:
    """Stands in for a detector's feature source: two levels of constant maps; its ``calls``-th call
    (``interrupt_at``) lets the held drawings go and raises KeyboardInterrupt, as Ctrl-C during a forward pass."""

    def __init__(self, interrupt_at: int | None = None, release: threading.Event | None = None):
        from featvis_run.timing import Timer

        self.timer, self.calls, self.forward_passes = Timer(), 0, 0
        self.interrupt_at, self.release = interrupt_at, release

    def features(self, batch):
        self.calls += 1
        if self.calls == self.interrupt_at:
            self.release.set()
            raise KeyboardInterrupt
        self.forward_passes += 1
        out = []
        for im in batch:
            h, w = im.array.shape[:2]
            maps = {
                LevelKey("neck", lv): np.full((2, h // s, w // s), s, np.float32) for lv, s in (("p3", 8), ("p4", 16))
            }
            out.append(ImageFeatures(Geometry.identity((h, w)), None, maps))
        return out

    def model_notes(self):
        return []

    def model_record(self):
        return ModelRecord("fake", "mmdet", "fake.py", None, None, 0, "cpu", 0)


@pytest.fixture()
def six_images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        cv2.imwrite(str(folder / f"s{i}.png"), np.full((32, 48, 3), 40 * i, np.uint8))
    return folder


def test_ctrl_c_journals_the_images_already_drawing_and_the_rerun_resumes_them(six_images, tmp_path, monkeypatch):
    monkeypatch.setenv("FEATVIS_DRAW_WORKERS", "2")
    out = tmp_path / "run"
    cfg = _compose("experiment=multi_image", f"images.paths={six_images}", "cache=off", f"output.dir={out}")
    resolved = {"experiment": "multi_image", "images": str(six_images)}
    release = threading.Event()
    held = batch_run.level_jobs

    def held_jobs(*args, **kwargs):  # drawings wait until Ctrl-C: images 1 and 2 are in the queue then
        return [lambda job=job: release.wait(30) and job() for job in held(*args, **kwargs)]

    monkeypatch.setattr(batch_run, "level_jobs", held_jobs)
    monkeypatch.setattr(batch_run, "feature_source", lambda *a: FakeSource(interrupt_at=3, release=release))
    with pytest.raises(RunInterrupted) as info:
        run_images(cfg, out, resolved, [(f"s{i}", six_images / f"s{i}.png") for i in range(6)], "multi_image")
    assert str(info.value).startswith("interrupted after 2 of 6 images")
    journal = [json.loads(line) for line in (out / ".featvis/done.jsonl").read_text().splitlines()]
    assert [e["image_id"] for e in journal] == ["s0", "s1"]
    # multi_image stores maps by default: each of the two levels' .npy and the input's image.jpg
    assert all((out / f).is_file() for e in journal for f in e["files"]) and len(journal[1]["files"]) == 3
    monkeypatch.setattr(batch_run, "level_jobs", held)
    source = FakeSource()
    monkeypatch.setattr(batch_run, "feature_source", lambda *a: source)
    result = run_images(cfg, out, resolved, [(f"s{i}", six_images / f"s{i}.png") for i in range(6)], "multi_image")
    assert result.extra["resumed_images"] == 2 and source.forward_passes == 4 and len(result.images) == 6


def test_ctrl_c_during_a_diff_finishes_and_journals_the_image_being_drawn(tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import contextmanager

    class InterruptedWait:
        """A future; the first wait on any of them is cut short by Ctrl-C (pressed while the main thread waits)."""

        pressed = False

        def __init__(self, future):
            self.future = future

        def result(self, timeout=None):
            if not InterruptedWait.pressed:
                InterruptedWait.pressed = True
                raise KeyboardInterrupt
            return self.future.result(timeout)

        def __getattr__(self, name):  # cancel, done, ...
            return getattr(self.future, name)

    class Pool(ThreadPoolExecutor):
        def submit(self, fn, *args):
            return InterruptedWait(super().submit(fn, *args))

    @contextmanager
    def pool():
        with Pool(max_workers=2) as p:
            yield p

    monkeypatch.setattr(diff_experiment, "FeatureSource", FakeDiffSource)
    monkeypatch.setattr(diff_experiment, "drawing_pool", pool)
    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), np.full((32, 48, 3), 90, np.uint8))
    out = tmp_path / "out"
    cfg = _compose(
        "experiment=diff", f"image={image}", "cache=off", f"output.dir={out}", "reducer=squeeze_mean",
        "output.pictures=composite",
    )  # fmt: skip
    with pytest.raises(RunInterrupted) as info:
        diff_experiment.run_diff(cfg, out, {"diff": 1})
    assert str(info.value).startswith("interrupted after 1 of 1 images")
    (entry,) = [json.loads(line) for line in (out / ".featvis/done.jsonl").read_text().splitlines()]
    assert entry["image_id"] == "scene" and sorted(entry["files"]) == sorted(
        f"scene/{kind}/{level}.png" for kind in ("diff", "panel") for level in ("p3", "p4")
    )
    assert all((out / f).is_file() for f in entry["files"])


def test_owned_paths_module_has_no_writes_outside_a_given_root(tmp_path):
    from featvis_run.store.owned_paths import confine, remove_files

    outside = write(tmp_path / "outside.txt")
    root = tmp_path / "root"
    inside = write(root / "a/b.txt")
    confined = confine(root, ["a/b.txt", "../outside.txt", "", None, "a/../../outside.txt", os.sep])
    assert confined.paths == (inside.resolve(),) and confined.ignored == 5
    assert remove_files(root, [*confined.paths, outside.resolve()]) == 1
    assert outside.exists() and not (root / "a").exists() and root.is_dir()
