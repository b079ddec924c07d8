"""The transactional outbox: events written in the application's transaction, then relayed.

`add(conn, aggregate_type, aggregate_id, event_type, payload)` inserts one row into the
outbox table on the application's own connection (sqlite3 or psycopg), inside whatever
transaction it has open: commit it and the event will be published; roll it back and it
never will. `OutboxRelay` publishes the rows in the order they were written, the way
Debezium's outbox event router does:

- topic: `outbox.event.<aggregate type>` (the prefix is a setting),
- key: the aggregate id, so one aggregate's events stay in order on one partition,
- value: the payload (bytes as given; str as UTF-8; dicts, lists, dataclasses and
  pydantic models as JSON),
- headers: `id` (the event's UUID, for the inbox to de-duplicate) and `eventType`.

A row is deleted only after its record is durable on the topic: the relay is
at-least-once, and a consumer using `tidings.cdc.inbox` sees each event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from tidings.api.bus import AsyncBus
from tidings.core.codecs import encode
from tidings.core.errors import ConfigurationError

log = logging.getLogger("tidings.cdc")
T = TypeVar("T")

TABLE = "tidings_outbox"
TOPIC_PREFIX = "outbox.event."
BATCH = 1000
POLL_S = 0.05


def install(conn: Any, table: str = TABLE) -> None:
    """Create the outbox table if it is missing, and commit."""
    conn.execute(
        f"CREATE TABLE IF NOT EXISTS {table} ("
        f"seq {_serial(conn)}, id TEXT NOT NULL UNIQUE, aggregatetype TEXT NOT NULL, "
        "aggregateid TEXT NOT NULL, type TEXT NOT NULL, "
        f"payload {'BYTEA' if _postgres(conn) else 'BLOB'}, created_ms BIGINT NOT NULL)"
    )
    conn.commit()


def add(
    conn: Any,
    aggregate_type: str,
    aggregate_id: str | int,
    event_type: str,
    payload: Any,
    *,
    table: str = TABLE,
) -> str:
    """Record an event in the application's open transaction; its id (a UUID)."""
    event_id = str(uuid.uuid4())
    mark = "%s" if _postgres(conn) else "?"
    try:
        conn.execute(
            f"INSERT INTO {table} (id, aggregatetype, aggregateid, type, payload, created_ms) "
            f"VALUES ({', '.join([mark] * 6)})",
            (
                event_id,
                aggregate_type,
                str(aggregate_id),
                event_type,
                encode(payload),
                time.time_ns() // 1_000_000,
            ),
        )
    except Exception as e:
        if table in str(e) and ("no such table" in str(e) or "does not exist" in str(e)):
            raise ConfigurationError(
                f"the outbox table {table} does not exist; create it once with "
                f"tidings.cdc.outbox.install(conn)"
            ) from e
        raise
    return event_id


class OutboxRelay:
    """Publishes committed outbox rows in order, then deletes them."""

    def __init__(
        self,
        connect: Callable[[], Any],
        *,
        table: str = TABLE,
        topic_prefix: str = TOPIC_PREFIX,
    ) -> None:
        self._connect = connect
        self._conn: Any = None
        self.table = table
        self.topic_prefix = topic_prefix
        self.relayed = 0
        """Events published since start."""
        # one thread for every database call: connections belong to the thread that made them
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="tidings-outbox")

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def run(self, bus: AsyncBus, stop: asyncio.Event | None = None) -> None:
        """Relay until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        try:
            while not stop.is_set():
                if not await self.poll(bus):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), POLL_S)
        finally:
            await self.close()

    async def poll(self, bus: AsyncBus) -> int:
        """Publish the rows committed now (up to BATCH); how many."""
        rows = await self._call(self._read)
        if not rows:
            return 0
        producer = bus.producer(linger_ms=0)
        try:
            for _, event_id, aggregate_type, aggregate_id, event_type, payload in rows:
                topic = self.topic_prefix + aggregate_type
                await bus.create_topic(topic, exist_ok=True)
                producer.send(
                    topic,
                    None if payload is None else bytes(payload),
                    key=aggregate_id.encode(),
                    headers={"id": event_id.encode(), "eventType": event_type.encode()},
                )
            await producer.flush()  # durable: now the rows may go
        finally:
            await producer.close()
        await self._call(self._delete, rows[-1][0])
        self.relayed += len(rows)
        return len(rows)

    async def close(self) -> None:
        """Close the relay's database connection."""
        await self._call(self._disconnect)
        self._thread.shutdown()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _db(self) -> Any:
        if self._conn is None:
            self._conn = self._connect()
            install(self._conn, self.table)
        return self._conn

    def _read(self) -> list[tuple[Any, ...]]:
        conn = self._db()
        rows = conn.execute(
            f"SELECT seq, id, aggregatetype, aggregateid, type, payload FROM {self.table} "
            f"ORDER BY seq LIMIT {BATCH}"
        ).fetchall()
        conn.commit()  # end the read transaction: the next round sees new commits
        return [tuple(row) for row in rows]

    def _delete(self, last: int) -> None:
        conn = self._db()
        mark = "%s" if _postgres(conn) else "?"
        conn.execute(f"DELETE FROM {self.table} WHERE seq <= {mark}", (last,))
        conn.commit()


def _postgres(conn: Any) -> bool:
    """Whether `conn` is a psycopg connection (else sqlite3)."""
    return type(conn).__module__.startswith("psycopg")


def _serial(conn: Any) -> str:
    return "BIGSERIAL PRIMARY KEY" if _postgres(conn) else "INTEGER PRIMARY KEY AUTOINCREMENT"
