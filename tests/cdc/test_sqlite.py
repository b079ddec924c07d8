"""SQLite change data capture: every op, the snapshot seam, rollbacks, schema changes,
bad configuration, and a relay killed mid-stream."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import tidings
from tidings.cdc import sqlite as cdc
from tidings.cdc.sqlite import SqliteSource

from .changes import events


def database(tmp_path: Path, schema: str) -> Path:
    """A SQLite database (WAL, as applications run it) with `schema` applied."""
    path = tmp_path / "shop.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(schema)
    conn.close()
    return path


def relay_all(path: Path, bus_url: str, **options: Any) -> int:
    """Relay everything pending now; changes relayed."""

    async def body() -> int:
        bus = await tidings.connect_async(bus_url)
        source = SqliteSource(path, **options)
        try:
            total = 0
            while n := await source.poll(bus):
                total += n
            return total
        finally:
            source.close()
            await bus.close()

    return asyncio.run(body())


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    """The bus the relay publishes to."""
    return f"sqlite://{tmp_path}/bus.db"


def test_every_operation_becomes_a_debezium_style_event(tmp_path: Path, bus_url: str) -> None:
    path = database(
        tmp_path,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT, qty INTEGER, note BLOB);"
        "INSERT INTO orders VALUES (1, 'tea', 2, NULL);",
    )
    [added] = cdc.add(path, ["orders"])
    assert (added.primary_key, added.snapshot_done) == (["id"], False)
    assert relay_all(path, bus_url) == 1  # the snapshot: the row that was there first
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO orders VALUES (2, 'cake', 1, x'00ff')")
        conn.execute("UPDATE orders SET qty = 3 WHERE id = 1")
        conn.execute("DELETE FROM orders WHERE id = 2")
        conn.execute("UPDATE orders SET id = 10 WHERE id = 1")  # a new primary key
    with conn:  # rolled back: never captured
        conn.execute("INSERT INTO orders VALUES (99, 'ghost', 0, NULL)")
        conn.rollback()
    conn.close()
    assert relay_all(path, bus_url) == 5

    got = events(bus_url, "shop.main.orders")
    ops = [(key, value and value["op"]) for key, value in got]
    assert ops == [
        ({"id": 1}, "r"),  # the snapshot of the row that was there first
        ({"id": 2}, "c"),
        ({"id": 1}, "u"),
        ({"id": 2}, "d"),
        ({"id": 2}, None),  # the tombstone after a delete
        ({"id": 1}, "d"),  # the key changed: delete the old one...
        ({"id": 1}, None),
        ({"id": 10}, "c"),  # ...create the new one
    ]
    snapshot, create, update = got[0][1], got[1][1], got[2][1]
    assert snapshot is not None and create is not None and update is not None
    assert snapshot["source"]["snapshot"] == "last" and snapshot["before"] is None
    assert create["after"] == {"id": 2, "item": "cake", "qty": 1, "note": "AP8="}  # base64
    assert update["before"]["qty"] == 2 and update["after"]["qty"] == 3
    source = update["source"]
    assert (source["connector"], source["schema"], source["table"]) == ("sqlite", "main", "orders")
    assert source["snapshot"] == "false" and isinstance(source["sequence"], int)
    assert update["ts_ms"] >= source["ts_ms"] > 0
    assert cdc.status(path)[0].pending == 0


def test_snapshot_and_stream_meet_without_gap_or_duplicate(tmp_path: Path, bus_url: str) -> None:
    path = database(tmp_path, "CREATE TABLE items (id INTEGER PRIMARY KEY, n INTEGER);")
    writer = sqlite3.connect(path, check_same_thread=False)
    with writer:
        writer.executemany("INSERT INTO items VALUES (?, 0)", [(i,) for i in range(500)])
    cdc.add(path, ["items"])
    stop = threading.Event()

    def write() -> None:  # keeps changing rows while the snapshot and relay run
        i = 500
        while not stop.is_set():
            with writer:
                writer.execute("INSERT INTO items VALUES (?, 0)", (i,))
                writer.execute("UPDATE items SET n = n + 1 WHERE id = ?", (i % 500,))
            i += 1
            time.sleep(0.001)  # an application, not a lock-holding loop

    thread = threading.Thread(target=write)
    thread.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            relay_all(path, bus_url)
    finally:
        stop.set()
        thread.join()
    relay_all(path, bus_url)
    final = dict(writer.execute("SELECT id, n FROM items").fetchall())
    writer.close()

    state: dict[int, int] = {}
    for key, value in events(bus_url, "shop.main.items"):
        assert value is not None
        row = value["after"]
        if value["op"] in ("r", "c"):
            assert key["id"] not in state, f"row {key['id']} appeared twice"
        else:
            assert state[key["id"]] == value["before"]["n"], "a change was skipped"
        state[key["id"]] = row["n"]
    assert state == final  # replaying the topic rebuilds the table exactly


def test_a_column_added_while_running_is_captured(tmp_path: Path, bus_url: str) -> None:
    path = database(tmp_path, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
    cdc.add(path, ["users"])
    relay_all(path, bus_url)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO users VALUES (1, 'ada')")
    relay_all(path, bus_url)  # the relay notices the schema change on its next round
    with conn:
        conn.execute("ALTER TABLE users ADD COLUMN email TEXT")
    relay_all(path, bus_url)
    with conn:
        conn.execute("INSERT INTO users VALUES (2, 'bob', 'bob@example.org')")
    conn.close()
    relay_all(path, bus_url)
    last = events(bus_url, "shop.main.users")[-1][1]
    assert last is not None and last["after"] == {
        "id": 2,
        "name": "bob",
        "email": "bob@example.org",
    }
    assert cdc.status(path)[0].columns == ["id", "name", "email"]


def test_bad_configuration_is_refused_with_the_fix(tmp_path: Path) -> None:
    path = database(
        tmp_path,
        "CREATE TABLE keyed (id INTEGER PRIMARY KEY); CREATE TABLE loose (a TEXT, b TEXT);",
    )
    with pytest.raises(tidings.ConfigurationError, match=r"no primary key.*add one"):
        cdc.add(path, ["loose"])
    with pytest.raises(tidings.ConfigurationError, match=r"'missing' does not exist.*keyed"):
        cdc.add(path, ["keyed", "missing"])
    assert cdc.status(path) == []  # nothing half-installed
    with pytest.raises(tidings.ConfigurationError, match="does not exist"):
        cdc.add(tmp_path / "nowhere.db", ["keyed"])


def test_remove_takes_the_triggers_away(tmp_path: Path, bus_url: str) -> None:
    path = database(tmp_path, "CREATE TABLE a (id INTEGER PRIMARY KEY);")
    cdc.add(path, ["a"])
    assert cdc.remove(path) == ["a"]
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO a VALUES (1)")
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert not any(n.startswith("_tidings") for n in names)
    assert relay_all(path, bus_url) == 0


def test_the_command_line_adds_shows_and_removes_capture(tmp_path: Path) -> None:
    path = database(tmp_path, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);")

    def tidings_cli(*args: str) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "tidings"), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "t" in tidings_cli("cdc", "sqlite", "add", str(path), "t")
    [shown] = json.loads(tidings_cli("cdc", "sqlite", "status", str(path), "--json"))
    assert shown == {
        "table": "t",
        "columns": ["id", "v"],
        "primary_key": ["id"],
        "snapshot_done": False,
        "pending": 0,
    }
    assert "capture removed from t" in tidings_cli("cdc", "sqlite", "remove", str(path))
    assert json.loads(tidings_cli("cdc", "sqlite", "status", str(path), "--json")) == []
