"""Running `python -m bench` in a subprocess for the smoke tests of each section."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def run_bench(tmp_path: Path, *flags: str) -> tuple[list[str], dict[str, Any]]:
    """Run the bench quickly with `flags`; its output lines and its JSON results."""
    out = tmp_path / "results.json"
    command = [sys.executable, "-m", "bench", *flags, "--quick"]
    done = subprocess.run(
        [*command, "--dir", str(tmp_path), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines(), json.loads(out.read_text())


def assert_rows(lines: list[str], results: dict[str, Any], rows: tuple[str, ...]) -> None:
    """Every row was printed, and the JSON table has exactly these rows, in order."""
    for row in rows:
        assert any(line.startswith(row) for line in lines), f"missing row {row!r}:\n{lines}"
    measured = [r["measurement"] for r in results["table"]]
    assert len(measured) == len(rows)
    for row, name in zip(rows, measured, strict=True):
        assert name.startswith(row), (row, name)
