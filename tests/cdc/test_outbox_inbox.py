"""The transactional outbox and the idempotent inbox, on SQLite connections."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

import tidings
from tidings.cdc import outbox
from tidings.cdc.inbox import inbox
from tidings.cdc.outbox import OutboxRelay


@dataclass
class OrderPlaced:
    order: int
    total: float


def relay(path: Path, bus_url: str) -> int:
    """Relay every committed outbox row; how many."""

    async def body() -> int:
        bus = await tidings.connect_async(bus_url)
        r = OutboxRelay(lambda: sqlite3.connect(path))
        try:
            total = 0
            while n := await r.poll(bus):
                total += n
            return total
        finally:
            await r.close()
            await bus.close()

    return asyncio.run(body())


def read(bus_url: str, topic: str) -> list[tidings.Record]:
    """Every record of the topic's partition 0."""
    with tidings.connect(bus_url) as bus:
        c = bus.consumer(topic, group="reader", from_beginning=True)
        out: list[tidings.Record] = []
        while batch := c.poll(timeout_ms=500):
            out += batch
        c.close()
    return out


def test_committed_events_are_published_in_order_and_rolled_back_ones_never(
    tmp_path: Path,
) -> None:
    path, bus_url = tmp_path / "app.db", f"sqlite://{tmp_path}/bus.db"
    conn = sqlite3.connect(path)
    outbox.install(conn)
    conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, total REAL)")
    with conn:  # one business transaction: the row and its event commit together
        conn.execute("INSERT INTO orders VALUES (1, 9.5)")
        first = outbox.add(conn, "order", 1, "OrderPlaced", OrderPlaced(1, 9.5))
        outbox.add(conn, "order", 1, "OrderPaid", {"order": 1})
    with conn:
        conn.execute("INSERT INTO orders VALUES (2, 1.0)")
        outbox.add(conn, "order", 2, "OrderPlaced", OrderPlaced(2, 1.0))
        conn.rollback()  # the order and its event vanish together
    conn.close()

    assert relay(path, bus_url) == 2
    records = read(bus_url, "outbox.event.order")
    assert [r.header("eventType") for r in records] == [b"OrderPlaced", b"OrderPaid"]
    assert [r.key for r in records] == [b"1", b"1"]
    assert records[0].header("id") == first.encode()
    assert json.loads(records[0].value or b"") == {"order": 1, "total": 9.5}
    assert relay(path, bus_url) == 0  # relayed rows are gone from the table
    assert sqlite3.connect(path).execute("SELECT count(*) FROM tidings_outbox").fetchone() == (0,)


def test_adding_without_the_table_says_how_to_create_it(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db")
    with pytest.raises(tidings.ConfigurationError, match=r"outbox\.install\(conn\)"):
        outbox.add(conn, "order", 1, "OrderPlaced", b"{}")


def test_the_inbox_handles_a_redelivered_record_once(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "consumer.db")
    conn.execute("CREATE TABLE balance (id INTEGER PRIMARY KEY, amount INTEGER)")
    conn.execute("INSERT INTO balance VALUES (1, 0)")
    conn.commit()
    box = inbox(conn)
    record = tidings.Record("payments", 0, 7, 0, b"1", b"5", (("id", b"event-1"),))

    def handle(r: tidings.Record) -> bool:
        with box.receive(r) as fresh:
            if fresh:
                conn.execute(
                    "UPDATE balance SET amount = amount + ? WHERE id = 1", (int(r.value or b"0"),)
                )
        return fresh

    assert handle(record) is True
    assert handle(record._replace(offset=8)) is False  # the same event, delivered again
    assert conn.execute("SELECT amount FROM balance").fetchone() == (5,)

    failing = tidings.Record("payments", 0, 9, 0, b"1", b"7", (("id", b"event-2"),))
    with pytest.raises(RuntimeError), box.receive(failing) as fresh:
        assert fresh
        conn.execute("UPDATE balance SET amount = amount + 7 WHERE id = 1")
        raise RuntimeError("the handler failed")
    assert conn.execute("SELECT amount FROM balance").fetchone() == (5,)  # rolled back
    assert handle(failing) is True  # so the redelivery is handled
    assert conn.execute("SELECT amount FROM balance").fetchone() == (12,)


def test_outbox_and_inbox_on_postgres(pg_dsn: str, tmp_path: Path) -> None:
    bus_url = f"sqlite://{tmp_path}/bus.db"
    with psycopg.connect(pg_dsn) as app:
        outbox.install(app)
        app.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance int)")
        with app.transaction():
            app.execute("INSERT INTO accounts VALUES (7, 100)")
            outbox.add(app, "account", 7, "AccountOpened", {"balance": 100})
        with pytest.raises(RuntimeError), app.transaction():
            outbox.add(app, "account", 8, "AccountOpened", {"balance": 1})
            raise RuntimeError("rolled back")
        app.commit()

    async def publish() -> int:
        bus = await tidings.connect_async(bus_url)
        relay = OutboxRelay(lambda: psycopg.connect(pg_dsn))
        try:
            return await relay.poll(bus)
        finally:
            await relay.close()
            await bus.close()

    assert asyncio.run(publish()) == 1
    [event] = read(bus_url, "outbox.event.account")
    assert (event.key, event.header("eventType")) == (b"7", b"AccountOpened")

    with psycopg.connect(pg_dsn) as ledger:
        ledger.execute("CREATE TABLE opened (account int PRIMARY KEY)")
        ledger.commit()
        box = inbox(ledger)
        for _ in range(2):  # delivered twice
            with box.receive(event) as fresh:
                if fresh:
                    ledger.execute("INSERT INTO opened VALUES (%s)", (int(event.key or b"0"),))
        assert ledger.execute("SELECT count(*) FROM opened").fetchone() == (1,)
