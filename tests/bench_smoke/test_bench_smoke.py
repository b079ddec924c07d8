"""`python -m bench --log --quick` runs to the end and prints every row of its table."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROWS = (
    "producer.send() loop + flush()",
    "bus.publish_many(list)",
    "group consumer, from beginning",
    "bus.publish() round trip, 1 thread",
    "bus.publish() round trip, 8 threads",
    "bus.publish() round trip, 32 threads",
    "bus.publish() round trip, 1 async task",
    "bus.publish() round trip, 8 async tasks",
    "bus.publish() round trip, 32 async tasks",
    "raw: sqlite3 one blob per 1000-record commit",
    "raw: sqlite3 one row per record, 1000 per commit",
    "raw: sqlite3 read + tidings decode",
    "raw: sqlite3 read + struct split",
    "raw: file append + fsync per 1000 records",
    "raw: write 100 KB + fsync",
    "raw: sqlite3 commit of one row",
)


def test_quick_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--log")
    assert_rows(lines, results, ROWS)
