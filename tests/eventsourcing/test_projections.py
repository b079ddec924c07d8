"""Projections: read models with the checkpoint in the same transaction, rebuilds, status."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tidings import eventsourcing
from tidings.eventsourcing import Event, Projection, ProjectionRunner, RecordedEvent, handles


class Balances(Projection):
    category = "account"
    fail_at: int | None = None
    """Raise while applying the event at this position (a crash mid-batch)."""

    def setup(self, conn: Any) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS balances (id TEXT PRIMARY KEY, amount INT)")

    def reset(self, conn: Any) -> None:
        conn.execute("DELETE FROM balances")

    @handles("Deposited")
    def deposited(self, conn: Any, event: RecordedEvent) -> None:
        if event.position == self.fail_at:
            raise RuntimeError("the read model's disk is full")
        amount = json.loads(event.data)["amount"]
        conn.execute(
            "INSERT INTO balances VALUES (?, ?) ON CONFLICT (id) DO UPDATE "
            "SET amount = amount + excluded.amount",
            (event.stream_id, amount),
        )


def balances(path: Path) -> dict[str, int]:
    """The read model's rows."""
    with sqlite3.connect(path) as conn:
        return dict(conn.execute("SELECT id, amount FROM balances").fetchall())


def test_a_projection_applies_each_event_once_across_a_failure_and_rebuilds(
    store: eventsourcing.EventStore, tmp_path: Path
) -> None:
    for i in range(30):
        store.append(f"account-{i % 3}", [Event("Deposited", {"amount": i})])
        store.append("audit-1", [Event("Seen")])  # another category: not followed
    read_model = tmp_path / "read.db"

    async def body() -> None:
        projection = Balances()
        runner = ProjectionRunner(store.aio, projection, lambda: sqlite3.connect(read_model))
        projection.fail_at = 31  # the 16th deposit
        with pytest.raises(RuntimeError, match="disk is full"):
            await runner.catch_up()
        status = await runner.status()
        assert status.position == 0 and status.lag == 60  # the failed batch left no trace
        assert balances(read_model) == {}
        projection.fail_at = None
        assert await runner.catch_up() == 30
        assert (await runner.status()).lag == 0
        assert await runner.rebuild() == 30
        await runner.close()

    asyncio.run(body())
    expected = {f"account-{k}": sum(i for i in range(30) if i % 3 == k) for k in range(3)}
    assert balances(read_model) == expected


def test_a_running_projection_follows_new_events(store_url: str, tmp_path: Path) -> None:
    read_model = tmp_path / "read.db"

    async def body() -> None:
        store = await eventsourcing.connect_async(store_url)
        runner = ProjectionRunner(store, Balances(), lambda: sqlite3.connect(read_model))
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        for _ in range(10):
            await store.append("account-x", [Event("Deposited", {"amount": 1})])
            await asyncio.sleep(0.01)
        deadline = asyncio.get_running_loop().time() + 10
        while (await runner.status()).position < 10:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        stop.set()
        await task
        await runner.close()
        await store.close()

    asyncio.run(body())
    assert balances(read_model) == {"account-x": 10}


def test_the_sync_store_subscribes_too(store: eventsourcing.EventStore) -> None:
    store.append("a-1", [Event("E"), Event("E")])
    assert [e.position for e in store.subscribe(1, timeout_s=0.2)] == [1, 2]


def test_a_projection_into_postgres(store: eventsourcing.EventStore, pg_dsn: str) -> None:
    class Counts(Projection):
        def setup(self, conn: Any) -> None:
            conn.execute("CREATE TABLE IF NOT EXISTS counts (type TEXT PRIMARY KEY, n INT)")

        def reset(self, conn: Any) -> None:
            conn.execute("DELETE FROM counts")

        @handles("Deposited", "Withdrawn")
        def counted(self, conn: Any, event: RecordedEvent) -> None:
            conn.execute(
                "INSERT INTO counts VALUES (%s, 1) ON CONFLICT (type) "
                "DO UPDATE SET n = counts.n + 1",
                (event.type,),
            )

    store.append("account-1", [Event("Deposited"), Event("Deposited"), Event("Withdrawn")])

    async def body() -> None:
        runner = ProjectionRunner(store.aio, Counts(), lambda: psycopg.connect(pg_dsn))
        assert await runner.catch_up() == 3
        assert await runner.rebuild() == 3
        await runner.close()

    store.portal.call(body())
    with psycopg.connect(pg_dsn) as conn:
        assert dict(conn.execute("SELECT type, n FROM counts").fetchall()) == {
            "Deposited": 2,
            "Withdrawn": 1,
        }
