"""A user error ends the console script with one ``featvis-run: error:`` line and exit code 2 (1 means a run that
finished with failed images): checked on errors found before any model is built, so each costs well under a
second."""

from __future__ import annotations

from .test_cli import run_cli
from .test_cli_errors import assert_user_error


def test_a_value_the_run_refuses_exits_2_with_one_line(tmp_path):
    proc = run_cli("experiment=multi_image", "images.limit=0", f"output.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert_user_error(proc, "images.limit=0 must be a positive number of images")


def test_an_output_folder_that_cannot_be_made_exits_2_with_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_cli(f"output.dir={blocker / 'out'}", cwd=tmp_path)
    assert_user_error(proc, f"output.dir={str(blocker / 'out')!r} is not a writable folder")
