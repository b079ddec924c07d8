"""`python -m bench --pubsub --quick` runs to the end and prints every row of its table.

No timing is asserted: this only checks that the section runs on both engines and reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

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
    lines, results = run_bench(tmp_path, "--pubsub")
    assert_rows(lines, results, ROWS)
    for engine in ("memory", "sqlite"):
        assert any(line.startswith(f"stages {engine}") for line in lines), lines
    for engine in results["pubsub"]["engines"]:
        assert engine["fanout"]["records"] > 0
