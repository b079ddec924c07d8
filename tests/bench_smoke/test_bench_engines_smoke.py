"""`python -m bench --engines --quick` runs to the end and prints every row of its table.

No timing is asserted: this checks that Tansu and nats-server start, that tidings and the
bare clients move every record on both engines, and that the section reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROWS = (
    "kafka:// (Tansu) produce, send + flush",
    "kafka:// (Tansu) consumer group read",
    "nats:// produce, every ack awaited",
    "nats:// read (bare: pull + ack each)",
)


def test_quick_engines_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--engines")
    assert_rows(lines, results, ROWS)
