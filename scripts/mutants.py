"""The mutants of ``make mutation-check``, read from ``scripts/mutants.toml`` (see its header for the format).

Each :class:`Mutant` replaces ``pattern`` (which must occur exactly once in ``file``) by ``replacement``; ``tests``
are run first, so the test expected to kill it is named there.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["MUTANTS", "MUTANTS_FILE", "Mutant", "load_mutants"]

MUTANTS_FILE = Path(__file__).with_name("mutants.toml")


@dataclass(frozen=True)
class Mutant:
    """One mutation: in ``file`` (relative to the repository), ``pattern`` becomes ``replacement``."""

    name: str
    area: str
    file: str
    pattern: str
    replacement: str
    description: str
    tests: tuple[str, ...] = ()


def load_mutants(path: Path = MUTANTS_FILE) -> list[Mutant]:
    """The ``[[mutant]]`` entries of ``path``; a ValueError names an entry with missing, unknown or repeated keys."""
    entries = tomllib.loads(path.read_text())["mutant"]
    known = {f.name for f in fields(Mutant)}
    required = known - {"tests"}
    mutants, names = [], set()
    for i, entry in enumerate(entries, 1):
        where = f"{path.name}: mutant #{i} ({entry.get('name', '?')})"
        if missing := required - set(entry):
            raise ValueError(f"{where} lacks {sorted(missing)}")
        if unknown := set(entry) - known:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if entry["name"] in names:
            raise ValueError(f"{where}: the name is used twice")
        if entry["pattern"] == entry["replacement"]:
            raise ValueError(f"{where}: the replacement equals the pattern (not a mutation)")
        names.add(entry["name"])
        mutants.append(Mutant(**{**entry, "tests": tuple(entry.get("tests", ()))}))
    return mutants


MUTANTS: list[Mutant] = load_mutants()
