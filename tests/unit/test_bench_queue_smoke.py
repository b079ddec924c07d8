"""`python -m bench --queue --quick` runs to the end and prints every row of its table.

The peers (persist-queue, litequeue) come with the project's `bench` extra; without them
this test fails, on purpose: the queue section compares tidings with them in every run.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ROWS = (
    "queue.send() one job per call",
    "queue backlog: bus.publish_many()",
    "queue receive(500) + ack(), 1 consumer",
    "queue publish_many + receive + ack, 1 consumer",
    "queue receive + ack, 1 consumer process",
    "queue receive + ack, 4 consumer processes",
    "queue drain, small backlog",
    "queue drain, large backlog",
    "peer persist-queue SQLiteAckQueue: put()",
    "peer persist-queue SQLiteAckQueue: get() + ack()",
    "peer litequeue: put()",
    "peer litequeue: pop() + done()",
    "raw: sqlite3 read + decode + 2 write txns per 500 records",
)


def test_peers_are_installed() -> None:
    for name in ("persistqueue", "litequeue"):
        assert importlib.util.find_spec(name), f"{name} is missing: pip install -e '.[bench]'"


def test_quick_queue_run_prints_every_row(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--queue",
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
    results = json.loads(out.read_text())
    measured = [r["measurement"] for r in results["table"]]
    assert len(measured) == len(ROWS)
    for row, name in zip(ROWS, measured, strict=True):
        assert name.startswith(row), (row, name)
    processes = results["queue"]["processes"]
    for report in processes.values():  # every job delivered once, none lost
        assert report["delivered"] == report["jobs"]
