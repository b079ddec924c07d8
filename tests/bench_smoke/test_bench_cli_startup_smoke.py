"""`python -m bench.cli_startup` runs and prints a row per command (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROOT = Path(__file__).resolve().parents[2]


def test_one_run_prints_every_row() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.cli_startup", "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = out.splitlines()[1:]
    labels = ["tidings --help", 'python -c "import tidings"', 'python -c "pass"']
    assert [row[:28].rstrip() for row in rows] == labels
    assert all(len(row[28:].split()) == 2 for row in rows)
