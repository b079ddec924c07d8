"""`tidings es`: streams, reading, projection status and rebuilds from the command line."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tidings import eventsourcing
from tidings.eventsourcing import Event

TIDINGS = str(Path(sys.executable).parent / "tidings")
PROJECTION = """
import json
from tidings.eventsourcing import Projection, handles

class Totals(Projection):
    def setup(self, conn):
        conn.execute("CREATE TABLE IF NOT EXISTS totals (id TEXT PRIMARY KEY, n INT)")

    def reset(self, conn):
        conn.execute("DELETE FROM totals")

    @handles("Added")
    def added(self, conn, event):
        conn.execute(
            "INSERT INTO totals VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET n = n + excluded.n",
            (event.stream_id, json.loads(event.data)["n"]),
        )
"""


def cli(cwd: Path, *args: str) -> str:
    """Run `tidings` in `cwd`; its output."""
    done = subprocess.run(
        [TIDINGS, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_streams_read_projections_and_rebuild(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/events.db"
    with eventsourcing.connect(url) as store:
        store.append("cart-1", [Event("Added", {"n": 2}), Event("Added", {"n": 3})])
        store.append("cart-2", [Event("Added", {"n": 1})])
        store.delete_stream("cart-2", hard=True)
    listed = json.loads(cli(tmp_path, "es", "streams", "--store", url, "--json"))
    assert listed == [
        {"stream": "cart-1", "version": 1, "state": "live"},
        {"stream": "cart-2", "version": 0, "state": "tombstoned"},
    ]
    lines = cli(tmp_path, "es", "read", "cart-1", "--store", url, "--backward").splitlines()
    assert [json.loads(line)["data"] for line in lines] == [{"n": 3}, {"n": 2}]
    everything = cli(tmp_path, "es", "read", "--all", "--store", url, "--from", "2")
    assert [json.loads(line)["position"] for line in everything.splitlines()] == [2, 3]

    (tmp_path / "totals.py").write_text(PROJECTION)
    read_model = str(tmp_path / "read.db")
    out = cli(
        tmp_path, "es", "rebuild", "totals:Totals", "--store", url, "--read-model", read_model
    )
    assert "Totals: 3 events applied" in out
    status = json.loads(
        cli(tmp_path, "es", "projections", "--store", url, "--read-model", read_model, "--json")
    )
    assert status == [{"projection": "Totals", "position": 3, "head": 3, "lag": 0}]
    with sqlite3.connect(read_model) as conn:
        assert dict(conn.execute("SELECT id, n FROM totals").fetchall()) == {
            "cart-1": 5,
            "cart-2": 1,
        }
