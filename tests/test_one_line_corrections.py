"""Issue 23's one-line corrections through the console script: each mistake is one line and exit code 2."""

import os
import subprocess

import pytest

from featvis_run.experiments.common import ImageRate
from featvis_run.timing import Timer

from .conftest import console_script
from .test_cli import run_cli


def one_line(proc) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and proc.stdout == "", (proc.returncode, proc.stdout, lines)
    return lines[0]


@pytest.mark.slow
def test_a_random_init_detector_detecting_nothing_asks_for_a_checkpoint(tiny_config, scene_image, tmp_path):
    args = [f"image={scene_image}", "model=retinanet_r50", f"model.mmdet_config={tiny_config}", "cache=off"]
    proc = run_cli(*args, "reducer=gradcam", f"output.dir={tmp_path / 'out'}")
    assert one_line(proc) == (
        "featvis-run: error: target='top': random init: no detections; give model.checkpoint=<file> "
        "(without a checkpoint the detector's weights are random)"
    )


# The first words of every line a plain run prints (featvis_run/report/summary.py): the model line, the table (title,
# borders, rows), notes, the cache line, timings and the output folder. Anything else is a stray line.
SUMMARY_PREFIXES = ("model ", "device:", "single: ", "┏", "┃", "┡", "│", "└", "note: ", "cache ", "timings ", "output ")


@pytest.mark.slow
def test_a_plain_run_prints_only_its_own_lines_and_logs_the_rest_to_cli_log(tmp_path):
    # a fresh matplotlib folder makes matplotlib log "generated new fontManager" (INFO) when mmdet imports it
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "COLUMNS": "400"}
    out = tmp_path / "run"
    proc = subprocess.run(
        [console_script(), f"output.dir={out}", "cache=off"], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    stray = [line for line in proc.stdout.splitlines() if not line.strip().startswith(SUMMARY_PREFIXES)]
    assert stray == []
    assert "[matplotlib.font_manager][INFO] - generated new fontManager" in (out / "cli.log").read_text()


def test_the_progress_rate_leaves_out_model_loading_and_restored_images():
    timer = Timer({"model_load": 2.0})  # a model loaded earlier (e.g. for a scale pass) is not this loop's
    rate = ImageRate.start(timer, restored=2, now=100.0)
    assert rate.text(2, now=100.5) == ""  # only restored images so far
    timer.seconds["model_load"] += 6.0  # the loop's first batch loaded the model
    # 4 images drawn (6 done, 2 restored) in 10 s of which 6 s loaded the model: 1 image per second
    assert rate.text(6, now=110.0) == "1.00 img/s"
