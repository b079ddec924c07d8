"""`python -m bench --quick`, the whole suite, runs to the end: every scenario, every system.

No timing is asserted: this checks that every peer starts (tidings serve, Tansu,
redis-server, nats-server, a PostgreSQL for change data capture), that every system moves
its records, and that the suite writes its JSON and its chart. The peers come with the
project's `bench` extra and `make tools` (redis-server); without them this test fails, on
purpose: the suite compares tidings with them in every run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bench_smoke.bench_run import ROOT

pytestmark = pytest.mark.slow  # each runs the benchmark in processes of its own

LOG = {"tidings embedded", "tidings serve", "Tansu", "Redis Streams", "NATS JetStream"}
SYSTEMS = {
    "1. durable log: produce": LOG,
    "1. durable log: consume": LOG,
    "1. durable log: publish round trip": LOG,
    "2. queue, per-message ack": {
        "tidings",
        "Redis Streams",
        "NATS JetStream",
        "persist-queue",
        "litequeue",
    },
    "3. pub/sub latency": {
        "tidings memory://",
        "tidings sqlite://",
        "tidings serve",
        "Redis pub/sub",
        "NATS core",
    },
    "4. event store": {"tidings", "eventsourcing"},
    "5. raw limits": {
        "file append + fsync",
        "sqlite3 blob insert",
        "sqlite3 read + decode",
        "sqlite3 queue floor",
        "sqlite3 commit of one row",
        "write 100 KB + fsync",
    },
    "6. scaling: partitions, produce": {"tidings embedded"},
    "6. scaling: partitions, consume": {"tidings embedded"},
    "6. scaling: producer threads": {"tidings embedded"},
    "6. scaling: queue consumer processes": {"tidings embedded"},
    "6. stored log: append": {"tidings embedded"},
    "6. stored log: read": {"tidings embedded"},
    "6. stored log: take": {"tidings embedded"},
    "7. change data capture": {"tidings cdc from SQLite", "tidings cdc from PostgreSQL"},
    "8. engine overhead": {
        "tidings on kafka://",
        "confluent-kafka alone",
        "tidings on nats://",
        "nats-py alone",
    },
}


@pytest.mark.timeout(240)
def test_quick_suite_has_every_scenario_and_system(tmp_path: Path) -> None:
    results = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--results", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=220,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    doc = json.loads((results / "quick.json").read_text())
    assert doc["quick"] is True
    found: dict[str, set[str]] = {}
    for f in doc["figures"]:
        found.setdefault(f["scenario"], set()).add(f["system"])
        assert f["rate"] is None or f["rate"] > 0, f
        if f["role"] == "tidings" and f["scenario"][0] in "123":
            assert f["ratio"].endswith(("(leads)", "(trails)")), f
    assert found == SYSTEMS
    png = (results / "quick.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "tidings / best peer" in done.stdout
