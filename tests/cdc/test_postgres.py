"""PostgreSQL change data capture through pgoutput, against a real server."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

import tidings
from tidings.cdc.postgres import UNAVAILABLE, PostgresSource

from .. import postgres as postgres_server
from .changes import events


def capture(source: PostgresSource, bus_url: str, until: Any, timeout_s: float = 30.0) -> None:
    """Run the source until `until()` holds (checked from another thread)."""

    async def body() -> None:
        bus = await tidings.connect_async(bus_url)
        stop = asyncio.Event()
        task = asyncio.create_task(source.run(bus, stop))
        deadline = time.monotonic() + timeout_s
        try:
            while not await asyncio.to_thread(until):
                if task.done():
                    await task  # raises what stopped it
                assert time.monotonic() < deadline, "capture did not finish in time"
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.gather(task, return_exceptions=True)
            await bus.close()

    asyncio.run(body())


def sql(dsn: str, *statements: str) -> None:
    """Run statements in one committed transaction."""
    with psycopg.connect(dsn) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    """The bus the source publishes to."""
    return f"sqlite://{tmp_path}/bus.db"


def test_snapshot_then_every_operation(pg_dsn: str, bus_url: str) -> None:
    sql(
        pg_dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, item text, qty int, doc jsonb, big text)",
        "ALTER TABLE orders REPLICA IDENTITY FULL",
        "INSERT INTO orders VALUES (1, 'tea', 2, '{\"a\": 1}', NULL)",
    )
    source = PostgresSource(pg_dsn, ["orders"], prefix="shop", transaction_topic="shop.tx")
    topic = "shop.public.orders"
    capture(source, bus_url, lambda: len(events(bus_url, topic)) >= 1)
    big = os.urandom(8000).hex()  # incompressible: stored out of line (TOASTed)
    sql(pg_dsn, f"INSERT INTO orders VALUES (2, 'cake', 1, NULL, '{big}')")
    sql(pg_dsn, "UPDATE orders SET qty = 3 WHERE id = 2")  # big unchanged: not in the WAL
    sql(pg_dsn, "DELETE FROM orders WHERE id = 1")
    sql(pg_dsn, "TRUNCATE orders")
    capture(source, bus_url, lambda: len(events(bus_url, topic)) >= 6)

    got = events(bus_url, topic)
    assert [(k, v and v["op"]) for k, v in got] == [
        ({"id": 1}, "r"),
        ({"id": 2}, "c"),
        ({"id": 2}, "u"),
        ({"id": 1}, "d"),
        ({"id": 1}, None),  # tombstone
        (None, "t"),
    ]
    snapshot, create, update, delete = (v for _, v in got[:4] if v)
    assert snapshot["after"] == {"id": 1, "item": "tea", "qty": 2, "doc": {"a": 1}, "big": None}
    assert snapshot["source"]["snapshot"] == "last"
    assert create["after"]["big"] == big
    assert update["before"]["qty"] == 1 and update["after"]["qty"] == 3
    assert update["after"]["big"] == big  # filled from the full before-image
    assert delete["before"]["item"] == "tea"  # REPLICA IDENTITY FULL: the whole old row
    source_block = update["source"]
    assert source_block["connector"] == "postgresql" and source_block["txId"] > 0
    assert source_block["lsn"] > 0 and source_block["table"] == "orders"
    statuses = [v["status"] for _, v in events(bus_url, "shop.tx") if v]
    assert statuses[:2] == ["BEGIN", "END"] and len(statuses) == 8


def test_default_identity_before_images_hold_the_key_and_toast_is_marked(
    pg_dsn: str, bus_url: str
) -> None:
    sql(pg_dsn, "CREATE TABLE docs (id int PRIMARY KEY, body text, n int)")
    source = PostgresSource(
        pg_dsn, ["docs"], prefix="db", topic=lambda prefix, schema, table: f"{prefix}.{table}"
    )
    capture(source, bus_url, lambda: True)  # creates the slot (empty snapshot)
    body = os.urandom(8000).hex()
    sql(pg_dsn, f"INSERT INTO docs VALUES (1, '{body}', 0)")
    sql(pg_dsn, "UPDATE docs SET n = 1 WHERE id = 1")
    sql(pg_dsn, "DELETE FROM docs WHERE id = 1")
    capture(source, bus_url, lambda: len(events(bus_url, "db.docs")) >= 4)  # named by `topic`
    ops = {v["op"]: v for _, v in events(bus_url, "db.docs") if v}
    assert ops["u"]["before"] is None
    assert ops["u"]["after"]["body"] == UNAVAILABLE
    assert ops["d"]["before"] == {"id": 1}


def test_a_column_added_while_running_appears(pg_dsn: str, bus_url: str) -> None:
    sql(pg_dsn, "CREATE TABLE users (id int PRIMARY KEY, name text)")
    source = PostgresSource(pg_dsn, ["users"], prefix="db")
    topic = "db.public.users"

    done: list[str] = []

    def change_schema_midway() -> bool:
        got = events(bus_url, topic)
        if not done:
            sql(pg_dsn, "INSERT INTO users VALUES (1, 'ada')")
            done.append("insert")
        elif len(got) == 1 and len(done) == 1:  # the first change is through: alter now
            sql(
                pg_dsn,
                "ALTER TABLE users ADD COLUMN email text",
                "INSERT INTO users VALUES (2, 'bob', 'bob@example.org')",
            )
            done.append("alter")
        return len(got) == 2

    capture(source, bus_url, change_schema_midway)
    last = events(bus_url, topic)[-1][1]
    assert last is not None and last["after"] == {
        "id": 2,
        "name": "bob",
        "email": "bob@example.org",
    }


def test_snapshot_and_stream_meet_under_concurrent_writers(pg_dsn: str, bus_url: str) -> None:
    sql(
        pg_dsn,
        "CREATE TABLE items (id int PRIMARY KEY, n int)",
        "ALTER TABLE items REPLICA IDENTITY FULL",  # before-images show continuity
        "INSERT INTO items SELECT g, 0 FROM generate_series(0, 999) g",
    )
    stop = threading.Event()

    def write() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            i = 1000
            while not stop.is_set():
                conn.execute("INSERT INTO items VALUES (%s, 0)", (i,))
                conn.execute("UPDATE items SET n = n + 1 WHERE id = %s", (i % 1000,))
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    source = PostgresSource(pg_dsn, ["items"], prefix="db")
    started = time.monotonic()
    try:
        capture(source, bus_url, lambda: time.monotonic() - started > 2)
    finally:
        stop.set()
        writer.join()
    with psycopg.connect(pg_dsn) as conn:
        final: dict[int, int] = dict(conn.execute("SELECT id, n FROM items").fetchall())
    capture(
        source,
        bus_url,
        lambda: len({k["id"] for k, _ in events(bus_url, "db.public.items")}) >= len(final),
    )

    state: dict[int, int] = {}
    for key, value in events(bus_url, "db.public.items"):
        assert value is not None
        if value["op"] in ("r", "c"):
            assert key["id"] not in state, f"row {key['id']} appeared twice"
        else:
            assert state[key["id"]] == value["before"]["n"], "a change was skipped"
        state[key["id"]] = value["after"]["n"]
    assert state == final


def test_bad_configuration_is_refused_with_the_fix(pg_dsn: str, bus_url: str) -> None:
    sql(pg_dsn, "CREATE TABLE loose (a text)", "CREATE TABLE keyed (id int PRIMARY KEY)")
    with pytest.raises(tidings.ConfigurationError, match=r"no primary key.*REPLICA IDENTITY FULL"):
        PostgresSource(pg_dsn, ["loose"]).check()
    with pytest.raises(tidings.ConfigurationError, match=r"public\.missing does not exist"):
        PostgresSource(pg_dsn, ["keyed", "missing"]).check()

    first = PostgresSource(pg_dsn, ["keyed"], slot="busy")
    second = PostgresSource(pg_dsn, ["keyed"], slot="busy")

    async def both() -> None:
        bus = await tidings.connect_async(bus_url)
        stop = asyncio.Event()
        running = asyncio.create_task(first.run(bus, stop))
        try:
            deadline = time.monotonic() + 20
            while not await asyncio.to_thread(_slot_active, pg_dsn, "busy"):
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
            with pytest.raises(tidings.ConfigurationError, match="slot 'busy' is in use"):
                await second.run(bus, stop)
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)
            await bus.close()

    asyncio.run(both())


def test_a_server_without_logical_wal_is_refused_with_the_fix() -> None:
    server = postgres_server.start(wal_level="replica")
    try:
        source = PostgresSource(server.dsn(), ["anything"])
        with pytest.raises(tidings.ConfigurationError, match="wal_level = logical"):
            source.check()
    finally:
        postgres_server.stop(server)


def test_a_lagging_slot_is_reported(
    pg_dsn: str, bus_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    sql(pg_dsn, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    source = PostgresSource(pg_dsn, ["t"], prefix="db", lag_warning_bytes=-1)
    with caplog.at_level(logging.WARNING, logger="tidings.cdc"):
        capture(source, bus_url, lambda: "holds back" in caplog.text)
    assert "the relay is behind" in caplog.text


def _slot_active(dsn: str, slot: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT active FROM pg_replication_slots WHERE slot_name = %s", (slot,)
        ).fetchone()
    return bool(row and row[0])


def test_a_snapshot_reports_its_rows_as_it_goes(pg_dsn: str, bus_url: str) -> None:
    sql(
        pg_dsn,
        "CREATE TABLE orders (id int PRIMARY KEY, qty int)",
        "INSERT INTO orders SELECT i, i FROM generate_series(1, 250) AS i",
    )
    seen: list[tuple[str, int, int]] = []
    source = PostgresSource(
        pg_dsn, ["orders"], prefix="shop", on_snapshot=lambda *step: seen.append(step)
    )
    capture(source, bus_url, lambda: len(events(bus_url, "shop.public.orders")) >= 250)
    assert seen[0] == ("public.orders", 0, 250)
    assert seen[-1] == ("public.orders", 250, 250)
    assert [done for _, done, _ in seen] == list(range(251))
