"""Random test order, so that no test passes or fails because of another's state (pytest hooks, imported by
``conftest.py``).

``pytest-randomly`` (in the ``dev`` extra) does this where it is installed; then these hooks stand aside. Without it
they do the same: test modules, and the tests within each module, are shuffled with a seed that is printed in the
header and the summary (``test order seed N``). Reproduce an order with ``--shuffle-seed=N`` (or
``FEATVIS_TEST_SHUFFLE=N``); keep the file order with ``-p no:randomly`` (as with pytest-randomly) or
``FEATVIS_TEST_SHUFFLE=off``.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict

import pytest

__all__ = ["pytest_addoption", "pytest_collection_modifyitems", "pytest_report_header", "pytest_terminal_summary"]

ENV = "FEATVIS_TEST_SHUFFLE"
_SEED = pytest.StashKey[int | None]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--shuffle-seed``: the seed of the test order (default: a new one each run)."""
    parser.addoption("--shuffle-seed", default=None, help=f"seed of the random test order, or 'off' (env {ENV})")


def _seed(config: pytest.Config) -> int | None:
    """The seed to shuffle with, or None to keep the order (pytest-randomly shuffles, or shuffling is off)."""
    if _SEED in config.stash:
        return config.stash[_SEED]
    plugins = config.pluginmanager
    value = str(config.getoption("shuffle_seed") or os.environ.get(ENV) or "").strip().lower()
    if plugins.hasplugin("randomly") or plugins.is_blocked("randomly") or value in ("off", "no", "false"):
        seed = None
    elif value in ("", "random"):
        seed = random.SystemRandom().randrange(1 << 31)
    else:
        seed = int(value)
    config.stash[_SEED] = seed
    return seed


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say which order the tests run in."""
    seed = _seed(config)
    return None if seed is None else f"test order seed {seed} (repeat it: --shuffle-seed={seed})"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Shuffle the modules, then the tests within each module (module-scoped fixtures are still set up once)."""
    seed = _seed(config)
    if seed is None:
        return
    rng = random.Random(seed)
    by_module: dict[str, list[pytest.Item]] = defaultdict(list)
    for item in items:
        by_module[item.nodeid.split("::")[0]].append(item)
    modules = list(by_module.values())
    rng.shuffle(modules)
    for group in modules:
        rng.shuffle(group)
    items[:] = [item for group in modules for item in group]


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """Repeat the seed at the end, where a failure is read."""
    seed = _seed(config)
    if seed is not None:
        terminalreporter.write_line(f"test order seed {seed} (repeat it: --shuffle-seed={seed})")
