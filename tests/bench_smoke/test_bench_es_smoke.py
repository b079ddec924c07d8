"""`python -m bench --es --quick` runs to the end and prints every row of its table.

No timing is asserted: this only checks that both libraries store, load and read back
every event, and that the section reports. The eventsourcing library comes with the
project's `bench` extra; without it this test fails, on purpose: the section compares
the tidings event store with it in every run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROWS = (
    "es append, 1 writer, 1 event per append",
    "es append, 1 writer, 10 events per append",
    "es append, 4 writer threads, 1 event per append",
    "es append, 1 writer, 1,000 events per append",
    "es load a 500-event aggregate from its events",
    "es load a 500-event aggregate from a snapshot at its end",
    "es catch-up, read_all() pages of 1,000",
    "es catch-up, async subscribe()",
)


def test_eventsourcing_is_installed() -> None:
    assert importlib.util.find_spec("eventsourcing"), "eventsourcing is missing: make setup"


def test_quick_es_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--es")
    assert_rows(lines, results, ROWS)
    for library, runs in results["es"]["runs"].items():
        assert all(x > 0 for figures in runs.values() for x in figures), library
    assert any(line.startswith("note: eventsourcing") for line in lines), lines
