"""`python -m bench --quick` runs to the end and prints every row of its table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

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
    out = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--dir", str(tmp_path), "--json", str(out)],
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
    table = json.loads(out.read_text())["table"]
    assert [r["measurement"] for r in table] == list(ROWS)
