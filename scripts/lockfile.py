"""Keep the hashed locks honest: each records a digest of the requirements it was made from.

Two locks are committed: requirements.lock, made from pyproject.toml, and
tests/streams/quix.lock, made from tests/streams/quix.in (Quix Streams pins an older
confluent-kafka than tidings does, so it gets a virtual environment of its own).
`python scripts/lockfile.py stamp` writes each digest into its lock after `make lock`;
`python scripts/lockfile.py check` fails, naming the fix, when a lock's requirements have
changed since. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pyproject_requirements(path: Path) -> object:
    """Every dependency a pyproject.toml declares, comments and layout aside."""
    data = tomllib.loads(path.read_text())
    project = data["project"]
    return {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "dependency-groups": data.get("dependency-groups", {}),
    }


def listed_requirements(path: Path) -> object:
    """The requirement lines of a requirements input file, comments and layout aside."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


@dataclass(frozen=True)
class Lock:
    """A hashed lock and the file of requirements it is made from."""

    path: Path
    source: Path
    requirements: Callable[[Path], object]

    @property
    def name(self) -> str:
        """The lock's path from the root of the checkout, as a reader types it."""
        return str(self.path.relative_to(ROOT))

    @property
    def mark(self) -> str:
        """The header line that carries the digest."""
        return f"# {self.source.name} dependencies: sha256="

    def digest(self) -> str:
        """The sha256 of what the source asks for now."""
        inputs = json.dumps(self.requirements(self.source), sort_keys=True)
        return hashlib.sha256(inputs.encode()).hexdigest()

    def recorded(self) -> str | None:
        """The digest the lock was made from, or None when it has none."""
        for line in self.path.read_text().splitlines():
            if line.startswith(self.mark):
                return line.removeprefix(self.mark).strip()
        return None

    def stamp(self) -> None:
        """Write the current digest into the lock's header, replacing an older one."""
        lines = self.path.read_text().splitlines()
        kept = [line for line in lines if not line.startswith(self.mark)]
        self.path.write_text("\n".join([f"{self.mark}{self.digest()}", *kept]) + "\n")

    def problem(self) -> str | None:
        """Why the lock cannot be installed as it is, or None when it fits its source."""
        if not self.path.is_file():
            return f"{self.name} is missing; run `make lock` to create it"
        if self.recorded() != self.digest():
            return (
                f"{self.name} is stale: {self.source.name}'s dependencies changed since it was "
                f"made; run `make lock` and commit both files together"
            )
        return None


LOCKS = [
    Lock(ROOT / "requirements.lock", ROOT / "pyproject.toml", pyproject_requirements),
    Lock(ROOT / "tests/streams/quix.lock", ROOT / "tests/streams/quix.in", listed_requirements),
]


def check() -> int:
    """0 when every lock was made from its source as it is; else say why and return 1."""
    problems = [problem for lock in LOCKS if (problem := lock.problem())]
    for problem in problems:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) == 2 else ""
    if command == "stamp":
        for lock in LOCKS:
            lock.stamp()
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit("usage: python scripts/lockfile.py stamp|check")
