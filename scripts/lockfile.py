"""Keep requirements.lock honest: it records a digest of what pyproject.toml asks for.

`python scripts/lockfile.py stamp` writes the digest into the lock after `make lock`;
`python scripts/lockfile.py check` fails, naming the fix, when pyproject.toml has changed
its dependencies since. Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
LOCK = ROOT / "requirements.lock"
MARK = "# pyproject.toml dependencies: sha256="


def digest() -> str:
    """The sha256 of every dependency pyproject.toml declares, comments and layout aside."""
    data = tomllib.loads(PYPROJECT.read_text())
    project = data["project"]
    inputs = {
        "requires-python": project.get("requires-python"),
        "dependencies": project.get("dependencies", []),
        "optional-dependencies": project.get("optional-dependencies", {}),
        "dependency-groups": data.get("dependency-groups", {}),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def recorded() -> str | None:
    """The digest the lock was made from, or None when it has none."""
    for line in LOCK.read_text().splitlines():
        if line.startswith(MARK):
            return line.removeprefix(MARK).strip()
    return None


def stamp() -> None:
    """Write the current digest into the lock's header, replacing an older one."""
    lines = [line for line in LOCK.read_text().splitlines() if not line.startswith(MARK)]
    LOCK.write_text("\n".join([f"{MARK}{digest()}", *lines]) + "\n")


def check() -> int:
    """0 when the lock was made from pyproject.toml as it is; else say so and return 1."""
    if not LOCK.is_file():
        print(f"error: {LOCK.name} is missing; run `make lock` to create it", file=sys.stderr)
        return 1
    if recorded() != digest():
        print(
            f"error: {LOCK.name} is stale: pyproject.toml's dependencies changed since it was "
            "made; run `make lock` and commit both files together",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) == 2 else ""
    if command == "stamp":
        stamp()
    elif command == "check":
        sys.exit(check())
    else:
        sys.exit("usage: python scripts/lockfile.py stamp|check")
