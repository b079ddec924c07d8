"""Change data capture from PostgreSQL: logical replication with the built-in pgoutput.

`PostgresSource` keeps a publication (the captured tables) and a replication slot (how
far the stream has been made durable). The first run creates the slot on a replication
connection and exports its snapshot; every table is read inside that snapshot (`op: r`),
so the snapshot and the stream that follows meet at one point, with no gap and no
duplicate. Then changes stream in commit order, a transaction at a time.

The slot's confirmed position moves only after the records of everything before it are
durable on their topics: a relay that crashes or restarts resumes where the stream was
last confirmed and loses nothing (it may publish the last transactions again, with the
same `id` headers, for the inbox to drop).

Handled: INSERT, UPDATE, DELETE (with a tombstone), TRUNCATE (`op: t`), before-images
under `REPLICA IDENTITY FULL` (else only the key columns), unchanged TOASTed columns
(filled from the before-image when there is one, else the placeholder UNAVAILABLE), a
column added while running (PostgreSQL sends the new relation before the next change),
and transaction boundaries (an optional transaction metadata topic). The WAL the slot
holds back is watched: above `lag_warning_bytes` the relay warns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import select
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tidings.api.bus import AsyncBus
from tidings.api.keyed import latest, remember
from tidings.cdc import pgoutput
from tidings.cdc.envelope import Change, Source
from tidings.core.errors import ConfigurationError, TidingsError
from tidings.core.extras import require_extra

with require_extra("postgres", "PostgreSQL CDC"):
    import psycopg
    from psycopg import pq

log = logging.getLogger("tidings.cdc")

UNAVAILABLE = "__tidings_unavailable_value"
"""An unchanged TOASTed column whose value the stream does not carry (as Debezium does)."""
STATE_TOPIC = "_tidings.cdc.state"
"""Where each slot's snapshot is marked done (a compacted topic on the bus)."""
STATUS_INTERVAL_S = 5.0
"""How often the relay tells the server where it is, and checks the slot's lag."""
BATCH_S = 0.05
"""How long the relay gathers transactions before publishing them together."""
_XLOG = struct.Struct(">cqqq")
_KEEPALIVE = struct.Struct(">cqqb")
_STATUS = struct.Struct(">cqqqqb")
_PG_EPOCH_US = 946_684_800_000_000


@dataclass
class _Transaction:
    xid: int
    commit_ms: int
    end_lsn: int = 0
    changes: list[Change] = field(default_factory=list)


@dataclass
class PostgresSource:
    """Relays the changes of PostgreSQL tables to topics `<prefix>.<schema>.<table>`."""

    dsn: str
    tables: Sequence[str]
    """Tables to capture, as "schema.table" or "table" (schema public)."""
    prefix: str = "postgres"
    slot: str = "tidings"
    publication: str = "tidings"
    transaction_topic: str | None = None
    """Also publish BEGIN and END of every transaction there (Debezium's metadata)."""
    topic: Callable[[str, str, str], str] | None = None
    """Names a table's topic from (prefix, schema, table), instead of prefix.schema.table."""
    lag_warning_bytes: int = 1 << 30
    on_snapshot: Callable[[str, int, int], None] | None = None
    """Called as a table's snapshot is relayed: ("schema.table", rows relayed, rows in all)."""
    relayed: int = 0
    """Changes relayed since start (snapshot rows included)."""
    lag_bytes: int = 0
    """WAL the slot held back at the last check."""
    _keys: dict[tuple[str, str], list[str]] = field(default_factory=dict, repr=False)
    _relations: dict[int, pgoutput.Relation] = field(default_factory=dict, repr=False)
    _db: str = ""
    _confirmed: int = 0
    """The end of the last transaction whose records are durable (the slot may move there)."""

    def topic_of(self, schema: str, table: str) -> str:
        """The topic a table's changes go to."""
        if self.topic is not None:
            return self.topic(self.prefix, schema, table)
        return f"{self.prefix}.{schema}.{table}"

    # -- setup ---------------------------------------------------------------------------

    def check(self) -> None:
        """Check the server and tables, and create the publication; errors say the fix."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            (level,) = _one(conn, "SHOW wal_level")
            if level != "logical":
                raise ConfigurationError(
                    f"wal_level is {level!r}; logical replication needs wal_level = logical "
                    f"in postgresql.conf (or ALTER SYSTEM SET wal_level = logical), then a "
                    f"restart of the server"
                )
            self._db = _one(conn, "SELECT current_database()")[0]
            names = [_qualified(t) for t in self.tables]
            for schema, table in names:
                self._keys[(schema, table)] = self._primary_key(conn, schema, table)
            listed = ", ".join(f'"{s}"."{t}"' for s, t in names)
            exists = conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (self.publication,)
            ).fetchone()
            if exists is None:
                conn.execute(f'CREATE PUBLICATION "{self.publication}" FOR TABLE {listed}')
            else:
                published = set(
                    conn.execute(
                        "SELECT schemaname, tablename FROM pg_publication_tables "
                        "WHERE pubname = %s",
                        (self.publication,),
                    ).fetchall()
                )
                for schema, table in names:
                    if (schema, table) not in published:
                        conn.execute(
                            f'ALTER PUBLICATION "{self.publication}" ADD TABLE "{schema}"."{table}"'
                        )

    def _primary_key(self, conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
        row = conn.execute(
            "SELECT c.oid, c.relreplident FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
            (schema, table),
        ).fetchone()
        if row is None:
            raise ConfigurationError(
                f"table {schema}.{table} does not exist in database {self._db}; "
                f"create it or fix the table list"
            )
        oid, identity = row
        key = [
            name
            for (name,) in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
                "ORDER BY array_position(i.indkey, a.attnum)",
                (oid,),
            ).fetchall()
        ]
        if not key and identity != "f":
            raise ConfigurationError(
                f"table {schema}.{table} has no primary key, so its changes have no key; "
                f"add a primary key, or ALTER TABLE {schema}.{table} REPLICA IDENTITY FULL "
                f"(then the whole row is the key)"
            )
        return key

    # -- running -------------------------------------------------------------------------

    async def run(self, bus: AsyncBus, stop: asyncio.Event | None = None) -> None:
        """Snapshot if this slot is new, then stream until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        await asyncio.to_thread(self.check)
        replication = await asyncio.to_thread(self._replication_connection)
        try:
            if not await self._snapshot_done(bus):
                await self._snapshot(bus, replication)
            await asyncio.to_thread(self._start, replication)
            await self._stream(bus, replication, stop)
        finally:
            replication.close()

    def _replication_connection(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn, autocommit=True, replication="database")

    def _slot_exists(self) -> tuple[bool, int | None]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            ).fetchone()
        return row is not None, None if row is None else row[0]

    async def _snapshot_done(self, bus: AsyncBus) -> bool:
        exists, active = await asyncio.to_thread(self._slot_exists)
        if active is not None:
            raise ConfigurationError(
                f"replication slot {self.slot!r} is in use by server process {active}; stop "
                f"the other relay, or give this one another slot name"
            )
        if not exists:
            return False
        if await latest(bus, STATE_TOPIC, self.slot) == "snapshot-done":
            return True
        # The slot outlived a snapshot that never finished: its exported snapshot is gone.
        log.warning("slot %s has no finished snapshot: dropping it and starting over", self.slot)
        await asyncio.to_thread(self._drop_slot)
        return False

    def _drop_slot(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))

    async def _snapshot(self, bus: AsyncBus, replication: psycopg.Connection[Any]) -> None:
        result = replication.pgconn.exec_(
            f'CREATE_REPLICATION_SLOT "{self.slot}" LOGICAL pgoutput EXPORT_SNAPSHOT'.encode()
        )
        if result.status != pq.ExecStatus.TUPLES_OK:
            raise TidingsError(
                f"cannot create replication slot {self.slot!r}: "
                f"{(result.error_message or b'').decode(errors='replace').strip()}"
            )
        snapshot = (result.get_value(0, 2) or b"").decode()
        rows = await asyncio.to_thread(self._read_snapshot, snapshot)
        producer = bus.producer(linger_ms=0)
        try:
            for schema, table, relation, tuples in rows:
                for i, row in enumerate(tuples):
                    if self.on_snapshot is not None:
                        self.on_snapshot(f"{schema}.{table}", i, len(tuples))
                    after = pgoutput.values(relation, row)
                    marker = "last" if i == len(tuples) - 1 else "true"
                    source = replace(
                        self._source(schema, table, time.time_ns() // 1_000_000, None, None),
                        snapshot=marker,
                    )
                    change = Change("r", self._key(schema, table, after), None, after, source)
                    await self._send(bus, producer, change)
                    self.relayed += 1
                if self.on_snapshot is not None:
                    self.on_snapshot(f"{schema}.{table}", len(tuples), len(tuples))
            await producer.flush()
        finally:
            await producer.close()
        await remember(bus, STATE_TOPIC, self.slot, "snapshot-done")
        log.info("snapshot of %s done", ", ".join(f"{s}.{t}" for s, t, _, _ in rows))

    def _read_snapshot(
        self, snapshot: str
    ) -> list[tuple[str, str, pgoutput.Relation, list[pgoutput.Tuple]]]:
        out = []
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
            for schema, table in (_qualified(t) for t in self.tables):
                columns = conn.execute(
                    "SELECT a.attname, a.atttypid FROM pg_attribute a JOIN pg_class c "
                    "ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 "
                    "AND NOT a.attisdropped ORDER BY a.attnum",
                    (schema, table),
                ).fetchall()
                relation = pgoutput.Relation(
                    0,
                    schema,
                    table,
                    "d",
                    tuple(pgoutput.Column(name, oid, False) for name, oid in columns),
                )
                texts = ", ".join(_as_text(name, oid) for name, oid in columns)
                rows = conn.execute(f'SELECT {texts} FROM "{schema}"."{table}"').fetchall()
                out.append((schema, table, relation, [tuple(r) for r in rows]))
            conn.execute("COMMIT")
        return out

    def _start(self, replication: psycopg.Connection[Any]) -> None:
        command = (
            f'START_REPLICATION SLOT "{self.slot}" LOGICAL 0/0 '
            f"(proto_version '1', publication_names '{self.publication}')"
        )
        result = replication.pgconn.exec_(command.encode())
        if result.status != pq.ExecStatus.COPY_BOTH:
            message = (result.error_message or b"").decode(errors="replace").strip()
            if "is active" in message:
                raise ConfigurationError(
                    f"replication slot {self.slot!r} is in use: {message}; stop the other "
                    f"relay, or give this one another slot name"
                )
            raise TidingsError(f"cannot start replication from slot {self.slot!r}: {message}")

    async def _stream(
        self, bus: AsyncBus, replication: psycopg.Connection[Any], stop: asyncio.Event
    ) -> None:
        producer = bus.producer(linger_ms=0)
        pg = replication.pgconn
        next_status = 0.0
        try:
            while not stop.is_set():
                done = await asyncio.to_thread(self._gather, pg, BATCH_S)
                for tx in done:
                    if self.transaction_topic:
                        await self._boundary(bus, producer, tx, "BEGIN")
                    for change in tx.changes:
                        await self._send(bus, producer, change)
                    if self.transaction_topic:
                        await self._boundary(bus, producer, tx, "END")
                if done:
                    await producer.flush()  # durable: the slot may move past them
                    self._confirmed = done[-1].end_lsn
                    self.relayed += sum(len(tx.changes) for tx in done)
                    await asyncio.to_thread(self._status, pg, self._confirmed)
                if time.monotonic() >= next_status:
                    next_status = time.monotonic() + STATUS_INTERVAL_S
                    await asyncio.to_thread(self._status, pg, self._confirmed)
                    await asyncio.to_thread(self._check_lag)
        finally:
            await producer.close()

    def _gather(self, pg: pq.abc.PGconn, wait_s: float) -> list[_Transaction]:
        """Blocking: the transactions that committed within about `wait_s`."""
        done: list[_Transaction] = []
        current: _Transaction | None = None
        deadline = time.monotonic() + wait_s
        while True:
            # with transactions in hand, take only what is already there: publish at once
            wait = 0.0 if done and current is None else max(0.0, deadline - time.monotonic())
            data = self._read(pg, wait)
            if data is None:
                if current is None:
                    return done
                deadline = time.monotonic() + wait_s  # mid-transaction: wait for its commit
                continue
            if data[:1] == b"k":
                _, _, _, reply = _KEEPALIVE.unpack_from(data)
                if reply:
                    self._status(pg, self._confirmed)
                continue
            _, start, _, _ = _XLOG.unpack_from(data)
            message = pgoutput.decode(data[_XLOG.size :])
            if isinstance(message, pgoutput.Begin):
                current = _Transaction(message.xid, message.commit_ms)
            elif isinstance(message, pgoutput.Commit):
                if current is not None:
                    current.end_lsn = message.end_lsn
                    done.append(current)
                current = None
                if time.monotonic() >= deadline:
                    return done
            elif isinstance(message, pgoutput.Relation):
                self._relations[message.oid] = message
            elif current is not None:
                current.changes += self._changes(message, current, start)

    def _read(self, pg: pq.abc.PGconn, wait_s: float) -> bytes | None:
        while True:
            n, data = pg.get_copy_data(1)
            if n > 0:
                return bytes(data)
            if n < 0:
                raise TidingsError(
                    f"the replication stream ended: "
                    f"{(pg.error_message or b'').decode(errors='replace').strip()}"
                )
            ready, _, _ = select.select([pg.socket], [], [], wait_s)
            if not ready:
                return None
            pg.consume_input()

    def _status(self, pg: pq.abc.PGconn, lsn: int) -> None:
        """Tell the server what is durable (it may free the WAL before `lsn`)."""
        now_us = time.time_ns() // 1000 - _PG_EPOCH_US
        pg.put_copy_data(_STATUS.pack(b"r", lsn, lsn, lsn, now_us, 0))
        pg.flush()

    def _check_lag(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) "
                "FROM pg_replication_slots WHERE slot_name = %s",
                (self.slot,),
            ).fetchone()
        self.lag_bytes = int(row[0] or 0) if row else 0
        if self.lag_bytes > self.lag_warning_bytes:
            log.warning(
                "replication slot %s holds back %.1f MB of WAL (over %.1f MB): the relay is "
                "behind; the server keeps that WAL on disk until it catches up",
                self.slot,
                self.lag_bytes / 1e6,
                self.lag_warning_bytes / 1e6,
            )

    def _changes(self, message: Any, tx: _Transaction, lsn: int) -> list[Change]:
        if isinstance(message, pgoutput.Truncate):
            out = []
            for oid in message.oids:
                rel = self._relations[oid]
                source = self._source(rel.schema, rel.table, tx.commit_ms, tx.xid, lsn)
                out.append(Change("t", None, None, None, source))
            return out
        if not isinstance(message, (pgoutput.Insert, pgoutput.Update, pgoutput.Delete)):
            return []  # origin, type and logical messages carry no row
        rel = self._relations[message.oid]
        source = self._source(rel.schema, rel.table, tx.commit_ms, tx.xid, lsn)
        if isinstance(message, pgoutput.Insert):
            after = _filled(pgoutput.values(rel, message.new), None)
            return [Change("c", self._key(rel.schema, rel.table, after), None, after, source)]
        if isinstance(message, pgoutput.Update):
            before = self._before(rel, message.old, message.old_is_key)
            after = _filled(pgoutput.values(rel, message.new), before)
            key = self._key(rel.schema, rel.table, after)
            old_key = self._key(rel.schema, rel.table, before) if before else key
            if old_key != key:  # a new primary key: delete, then create
                return [
                    Change("d", old_key, before, None, source),
                    Change("c", key, None, after, source),
                ]
            return [Change("u", key, before, after, source)]
        before = self._before(rel, message.old, message.old_is_key)
        assert before is not None
        return [Change("d", self._key(rel.schema, rel.table, before), before, None, source)]

    def _before(
        self, rel: pgoutput.Relation, old: pgoutput.Tuple | None, only_key: bool
    ) -> dict[str, Any] | None:
        if old is None:
            return None
        row = pgoutput.values(rel, old)
        if only_key:  # REPLICA IDENTITY DEFAULT: the key columns alone
            return {k: v for k, v in row.items() if v is not None}
        return _filled(row, None)

    def _key(self, schema: str, table: str, row: dict[str, Any]) -> dict[str, Any]:
        columns = self._keys.get((schema, table)) or list(row)
        return {c: row.get(c) for c in columns}

    def _source(
        self, schema: str, table: str, ts_ms: int, xid: int | None, lsn: int | None
    ) -> Source:
        return Source(
            connector="postgresql",
            name=self.prefix,
            db=self._db,
            schema=schema,
            table=table,
            ts_ms=ts_ms,
            sequence=lsn,
            tx_id=xid,
            lsn=lsn,
        )

    async def _send(self, bus: AsyncBus, producer: Any, change: Change) -> None:
        topic = self.topic_of(change.source.schema, change.source.table)
        await bus.create_topic(topic, exist_ok=True)
        for key, value, headers in change.records():
            producer.send(topic, value, key=key, headers=headers)

    async def _boundary(self, bus: AsyncBus, producer: Any, tx: _Transaction, status: str) -> None:
        assert self.transaction_topic is not None
        await bus.create_topic(self.transaction_topic, exist_ok=True)
        doc = {
            "status": status,
            "id": f"{tx.xid}:{tx.end_lsn}",
            "event_count": len(tx.changes) if status == "END" else None,
            "ts_ms": tx.commit_ms,
        }
        producer.send(
            self.transaction_topic,
            json.dumps(doc).encode(),
            key=json.dumps({"id": doc["id"]}).encode(),
            headers={"id": f"{self.prefix}/tx/{doc['id']}/{status}".encode()},
        )


def _as_text(column: str, type_oid: int) -> str:
    """A column as the replication stream writes it: booleans as t/f, the rest ::text."""
    if type_oid == 16:
        return f"CASE WHEN \"{column}\" THEN 't' WHEN NOT \"{column}\" THEN 'f' END"
    return f'"{column}"::text'


def _qualified(name: str) -> tuple[str, str]:
    schema, _, table = name.rpartition(".")
    return schema or "public", table


def _one(conn: psycopg.Connection[Any], query: str) -> tuple[Any, ...]:
    row = conn.execute(query).fetchone()
    assert row is not None
    return tuple(row)


def _filled(row: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """Unchanged TOASTed values from the before-image when it has them, else UNAVAILABLE."""
    return {
        k: ((before or {}).get(k, UNAVAILABLE) if v is pgoutput.UNCHANGED else v)
        for k, v in row.items()
    }
