"""`python -m bench --pubsub --quick` runs to the end and prints every row of its table.

No timing is asserted: this only checks that the section runs on both engines and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ROWS = (
    "pubsub memory: publish -> 1 subscriber",
    "pubsub memory: publish -> 4 subscribers",
    "pubsub memory: publish -> 4 groups",
    "pubsub memory: 4 groups read",
    "pubsub sqlite: publish -> 1 subscriber",
    "pubsub sqlite: publish -> 4 subscribers",
    "pubsub sqlite: publish -> 4 groups",
    "pubsub sqlite: 4 groups read",
    "raw: asyncio.Queue put -> get between 2 tasks",
)


def test_quick_pubsub_run_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--pubsub",
            "--quick",
            "--dir",
            str(tmp_path),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for row in ROWS:
        assert any(line.startswith(row) for line in lines), f"missing row {row!r}:\n{done.stdout}"
    for engine in ("memory", "sqlite"):
        assert any(line.startswith(f"stages {engine}") for line in lines), done.stdout
    results = json.loads(out.read_text())
    measured = [r["measurement"] for r in results["table"]]
    assert len(measured) == len(ROWS)
    for row, name in zip(ROWS, measured, strict=True):
        assert name.startswith(row), (row, name)
    for engine in results["pubsub"]["engines"]:
        assert engine["fanout"]["records"] > 0
