"""``make mutation-check``: apply each mutant of ``scripts/mutants.toml`` to a temporary copy of the source tree, run
the fast tests against it, and fail unless every mutant is killed.

The real files are never touched: the package, configs, Hydra plugins, tests, scripts, ``pyproject.toml``, the
Makefile and the README are copied into a temporary folder once. Two preconditions are checked there, unmutated:
every mutant's pattern occurs exactly once in its file and its tests exist (else it is reported "stale" without a
run), and the fast suite passes (else a failing test would "kill" every mutant). Then each mutant edits one file of
the copy, pytest runs there (``PYTHONPATH`` points at the copy, bytecode is not written, random ordering is off),
and the file is restored. A mutant runs its ``tests`` first with ``-x`` (a killed mutant costs a few seconds) and,
only if those pass, the rest of the fast suite. The first failing test id is the killer.

Only behaviour may kill a mutant: the tests run with ``-m "not slow and not records"`` (:data:`SELECTION`). Tests
marked ``records`` check the repository's own records (this mutants list against the source, as in
``tests/test_mutation_check.py``); a mutated line fails them whatever the behaviour, so here they are the
precondition above, and ``make test`` runs them as tests.

Exit code 0 when every mutant is killed; 1 on a survivor, or on a stale mutant (its pattern is not found exactly once
in its file: the source changed and the mutant must be updated). ``--report PATH`` also writes the table as
Markdown.

Usage: ``python scripts/mutation_check.py [--only NAME ...] [--quick] [--report FILE.md] [--timeout 300]``
(``--quick``: each mutant's own tests only, for writing tests; the check itself runs without it).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mutants import MUTANTS, Mutant  # noqa: E402  (a sibling module of this script)

__all__ = ["SELECTION", "Outcome", "apply_mutant", "first_failure", "main", "run_mutant", "stale_reason"]

REPO = Path(__file__).resolve().parents[1]
COPIED = ("featvis_run", "conf", "hydra_plugins", "tests", "scripts", "docs", "pyproject.toml", "Makefile", "README.md")
_FAILED = re.compile(r"^(?:FAILED|ERROR) (\S+)", re.MULTILINE)
#: the tests that may kill a mutant: fast ones that check behaviour (not the ``records`` checks of this list)
SELECTION = "not slow and not records"


@dataclass(frozen=True)
class Outcome:
    """What happened to one mutant: ``killed``, ``timeout`` (counted as killed: the mutant hangs the tests),
    ``survived``, ``stale`` (pattern not found once, or its tests are gone) or ``error`` (pytest could not run)."""

    mutant: Mutant
    status: str
    killer: str
    seconds: float


def apply_mutant(root: Path, mutant: Mutant) -> str:
    """Write ``mutant`` into its file under ``root``; returns the original text. ValueError when its pattern is not
    found exactly once (a stale or ambiguous mutant)."""
    path = root / mutant.file
    original = path.read_text()
    count = original.count(mutant.pattern)
    if count != 1:
        raise ValueError(f"pattern found {count} times in {mutant.file} (expected exactly once)")
    path.write_text(original.replace(mutant.pattern, mutant.replacement))
    return original


def stale_reason(root: Path, mutant: Mutant) -> str | None:
    """Why ``mutant`` cannot run against the tree at ``root`` (its pattern is not found exactly once in its file, or
    its tests are gone), or None when it can."""
    path = root / mutant.file
    if not path.is_file():
        return f"its file {mutant.file} does not exist"
    count = path.read_text().count(mutant.pattern)
    if count != 1:
        return f"pattern found {count} times in {mutant.file} (expected exactly once)"
    if not mutant.tests:
        return "it names no tests"
    missing = [t for t in mutant.tests if not (root / t.split("::")[0]).is_file()]
    return f"its tests {missing} do not exist" if missing else None


def first_failure(output: str) -> str | None:
    """The id of the first failing test in pytest's short summary (``FAILED``/``ERROR`` lines), or None."""
    match = _FAILED.search(output)
    return match.group(1) if match else None


def _pytest(root: Path, targets: list[str], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1", "FEATVIS_TEST_SHUFFLE": "off"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-m", SELECTION, "-p", "no:randomly", "-p", "no:cacheprovider"]
    cmd += ["-o", "addopts=-rfE", "--tb=no", *targets]
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def run_mutant(root: Path, mutant: Mutant, timeout: float, quick: bool = False) -> Outcome:
    """Apply ``mutant`` to the copy at ``root``, run its tests then (unless ``quick``) the rest of the fast suite,
    and restore the file."""
    started = time.perf_counter()
    stale = stale_reason(root, mutant)
    if stale is not None:
        return Outcome(mutant, "stale", stale, 0.0)
    original = apply_mutant(root, mutant)
    try:
        for targets in ([*mutant.tests], [] if quick else ["tests"]):
            if not targets:
                continue
            try:
                code, output = _pytest(root, targets, timeout)
            except subprocess.TimeoutExpired:
                return Outcome(mutant, "timeout", f"{' '.join(targets)} ran past {timeout:.0f} s", _since(started))
            killer = first_failure(output)
            if code == 1 or (code == 2 and killer):  # 2: a collection error the mutant caused (an import crash)
                return Outcome(mutant, "killed", killer or "?", _since(started))
            if code not in (0, 5):  # 5: no fast test selected; 3, 4: pytest itself failed
                tail = (output.strip().splitlines() or ["?"])[-1]
                return Outcome(mutant, "error", f"pytest exit {code}: {tail[:100]}", _since(started))
        return Outcome(mutant, "survived", "-", _since(started))
    finally:
        (root / mutant.file).write_text(original)


def _since(started: float) -> float:
    return time.perf_counter() - started


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "outputs")
    for name in COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)


def _check_copy_is_imported(root: Path) -> None:
    """The copy, not an installed featvis_run, must be what the tests import."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    code = "import featvis_run; print(featvis_run.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, check=True)
    if not Path(out.stdout.strip()).resolve().is_relative_to(root.resolve()):
        raise SystemExit(f"mutation-check: the tests would import {out.stdout.strip()}, not the copy in {root}")


def _check_baseline(root: Path, timeout: float) -> None:
    """The fast suite must pass on the unmutated copy, or a failing test would "kill" every mutant."""
    started = time.perf_counter()
    code, output = _pytest(root, ["tests"], timeout)
    if code != 0:
        raise SystemExit(
            f"mutation-check: the fast tests fail without any mutant ({first_failure(output) or f'exit {code}'}); "
            "fix them first"
        )
    print(f"baseline: the fast tests pass on the unmutated copy ({_since(started):.0f} s)", flush=True)


def _table(outcomes: list[Outcome]) -> str:
    lines = ["| # | mutant | file | area | status | killed by | s |", "|---|---|---|---|---|---|---|"]
    for i, o in enumerate(outcomes, 1):
        m = o.mutant
        lines.append(
            f"| {i} | {m.name}: {m.description} | {m.file} | {m.area} | {o.status} | `{o.killer}` | {o.seconds:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the mutants (all, or ``--only`` names); print the kill table; 0 only if every one was killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", default=None, help="run only the mutants with these names")
    parser.add_argument("--report", type=Path, default=None, help="also write the kill table (Markdown) here")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per pytest run (default 300)")
    parser.add_argument("--quick", action="store_true", help="run only each mutant's own tests (not the rest)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the temporary copy
    unknown = sorted(set(args.only or ()) - {m.name for m in MUTANTS})
    if unknown:
        raise SystemExit(f"mutation-check: no mutants named {unknown} in scripts/mutants.toml")
    chosen = [m for m in MUTANTS if args.only is None or m.name in args.only]
    outcomes: list[Outcome] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="featvis-mutants-") as tmp:
        root = Path(tmp)
        _copy_tree(root)
        _check_copy_is_imported(root)
        stale = {m.name: why for m in chosen if (why := stale_reason(root, m)) is not None}
        print(f"records: {len(chosen) - len(stale)} of {len(chosen)} mutants match their source once", flush=True)
        _check_baseline(root, args.timeout)
        for i, mutant in enumerate(chosen, 1):
            if mutant.name in stale:
                outcome = Outcome(mutant, "stale", stale[mutant.name], 0.0)
            else:
                outcome = run_mutant(root, mutant, args.timeout, args.quick)
            outcomes.append(outcome)
            print(
                f"[{i:>2}/{len(chosen)}] {outcome.status:<8} {mutant.name:<32} {outcome.killer} "
                f"({outcome.seconds:.1f} s)",
                flush=True,
            )
    table = _table(outcomes)
    bad = [o for o in outcomes if o.status not in ("killed", "timeout")]
    killed = len(outcomes) - len(bad)
    summary = f"{killed}/{len(outcomes)} mutants killed in {_since(started):.0f} s"
    print(f"\n{table}\n\n{summary}")
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(f"# Mutation check\n\n{table}\n\n{summary}\n")
    for o in bad:
        fix = {"stale": "update the mutant", "survived": "add a fast test that fails on it"}.get(o.status, "see above")
        print(
            f"mutation-check: {o.status.upper()}: {o.mutant.name} ({o.mutant.file}): {o.killer}; {fix}", file=sys.stderr
        )
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
