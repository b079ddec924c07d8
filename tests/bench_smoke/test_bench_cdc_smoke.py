"""`python -m bench --cdc --quick` runs to the end and prints every row of its table.

No timing is asserted: this only checks that both sources (SQLite, and a PostgreSQL the
bench starts itself) bring every row to the topic and that the section reports.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import assert_rows, run_bench

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

ROWS = (
    "cdc sqlite: 2,000 inserts, 1,000 per commit -> topic",
    "cdc sqlite: single-row commit -> subscriber",
    "cdc postgres: 2,000 inserts, 1,000 per commit -> topic",
    "cdc postgres: single-row commit -> subscriber",
)


def test_quick_cdc_run_prints_every_row(tmp_path: Path) -> None:
    lines, results = run_bench(tmp_path, "--cdc")
    assert_rows(lines, results, ROWS)
    for source in results["cdc"]["sources"]:
        assert source["bulk"]["records"] >= source["bulk"]["rows"] == 2_000
        sizes = results["cdc"]["sizes"]
        assert source["latency"]["count"] == round(sizes["rate"] * sizes["seconds"])
        assert any(line.startswith(f"note: {source['database']}:") for line in lines), lines
