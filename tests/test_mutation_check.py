"""The mutation harness itself (scripts/mutation_check.py): stale mutants are refused, the killer is parsed, only
behavioural tests can kill a mutant, and every listed mutant still matches the source it mutates (a ``records``
check: ``make test`` flags a stale mutant, while a mutation run leaves it out and checks the same once, unmutated)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import replace

import pytest

from .conftest import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # mutation_check imports mutants by name
    spec.loader.exec_module(module)
    return module


mutants = _load("mutants")
check = _load("mutation_check")


@pytest.mark.records  # not a behaviour: a mutation run must not count it as a kill (the harness deselects it)
@pytest.mark.parametrize("mutant", mutants.MUTANTS, ids=lambda m: m.name)
def test_every_mutant_matches_its_source_once_and_names_existing_tests(mutant):
    assert (REPO / mutant.file).read_text().count(mutant.pattern) == 1
    assert mutant.tests and all((REPO / t.split("::")[0]).is_file() for t in mutant.tests)
    assert check.stale_reason(REPO, mutant) is None


@pytest.mark.records
def test_at_least_28_mutants_including_the_eight_of_issue_14():
    names = [m.name for m in mutants.MUTANTS]
    assert len(names) >= 28 and len(set(names)) == len(names)
    eight = {"topk-reversed", "valid-cells-round-down", "use-norm-ignored", "diff-a-b-swapped"}
    eight |= {"cache-write-not-atomic", "source-key-without-recorder", "identity-without-pipeline"}
    eight |= {"resize-chunks-scrambled"}
    assert eight <= set(names)


def test_a_mutant_is_applied_once_and_a_stale_one_is_refused(tmp_path):
    (tmp_path / "m.py").write_text("x = a + b\ny = a + b\nz = 1\n")
    fine = mutants.Mutant("m", "t", "m.py", "z = 1", "z = 2", "d")
    assert check.apply_mutant(tmp_path, fine) == "x = a + b\ny = a + b\nz = 1\n"
    assert (tmp_path / "m.py").read_text().endswith("z = 2\n")
    for pattern, count in (("q = 3", 0), ("a + b", 2)):
        with pytest.raises(ValueError, match=f"found {count} times"):
            check.apply_mutant(tmp_path, mutants.Mutant("s", "t", "m.py", pattern, "r", "d"))


def test_the_first_failing_test_is_the_killer():
    out = "....F\nFAILED tests/test_a.py::test_x[1] - assert 1 == 2\nFAILED tests/test_b.py::test_y\n1 failed"
    assert check.first_failure(out) == "tests/test_a.py::test_x[1]"
    assert check.first_failure("ERROR tests/test_c.py - ImportError\n") == "tests/test_c.py"
    assert check.first_failure("5 passed in 1.0s") is None


def test_bad_entries_in_the_mutants_file_are_named(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(
        '[[mutant]]\nname = "a"\narea = "x"\nfile = "f.py"\npattern = "p"\nreplacement = "p"\ndescription = "d"\n'
    )
    with pytest.raises(ValueError, match="replacement equals the pattern"):
        mutants.load_mutants(path)
    path.write_text('[[mutant]]\nname = "a"\narea = "x"\nfile = "f.py"\npattern = "p"\n')
    with pytest.raises(ValueError, match=r"mutant #1 \(a\) lacks \['description', 'replacement'\]"):
        mutants.load_mutants(path)


def test_a_stale_mutant_is_named_before_any_test_runs(tmp_path):
    (tmp_path / "m.py").write_text("z = 1\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_m.py").write_text("")
    fine = mutants.Mutant("m", "t", "m.py", "z = 1", "z = 2", "d", ("tests/test_m.py::test_z",))
    assert check.stale_reason(tmp_path, fine) is None
    assert check.stale_reason(tmp_path, replace(fine, pattern="q")).startswith("pattern found 0 times in m.py")
    gone = replace(fine, tests=("tests/test_gone.py",))
    assert check.stale_reason(tmp_path, gone) == "its tests ['tests/test_gone.py'] do not exist"
    outcome = check.run_mutant(tmp_path, gone, timeout=5)
    assert outcome.status == "stale" and (tmp_path / "m.py").read_text() == "z = 1\n"  # nothing was applied


def _collected(marks: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    cmd += ["-m", marks, "tests/test_mutation_check.py"]
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True).stdout
    return [line.split("::")[1].split("[")[0] for line in out.splitlines() if "::" in line]


def test_the_records_check_is_in_the_fast_suite_but_never_in_a_mutants_test_selection():
    harness = set(_collected(check.SELECTION))
    fast = set(_collected("not slow"))
    records = {"test_every_mutant_matches_its_source_once_and_names_existing_tests"}
    assert records <= fast and not records & harness  # make test runs it; no mutant is "killed" by it
    assert "test_the_first_failing_test_is_the_killer" in harness  # the harness's own behaviour still counts
