"""`python -m bench --queue --quick` runs to the end and prints every row of its table.

The peers (persist-queue, litequeue) come with the project's `bench` extra; without them
this test fails, on purpose: the queue section compares tidings with them in every run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

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
        assert importlib.util.find_spec(name), f"{name} is missing: make setup"


def test_quick_queue_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--queue")
    assert_rows(lines, results, ROWS)
    for report in results["queue"]["processes"].values():  # every job delivered once
        assert report["delivered"] == report["jobs"]
