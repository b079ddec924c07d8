"""Change data capture from a SQLite database: triggers record, a relay publishes.

`add` installs three triggers per table. Each writes the changed row (before and after,
as JSON) into `_tidings_cdc_changes` inside the application's own transaction, so a
change is captured exactly when it commits, and a rolled-back change never is. SQLite
has one writer at a time, so the table's ids follow commit order.

The relay (`SqliteSource.poll` / `run`) first reads each new table whole (`op: r`) in
one read transaction, noting the last change id it saw: the snapshot and the changes
after that id together are the table's history, with no gap and no overlap. It then
publishes changes in id order and deletes them only once the records are durable on
their topics: a relay killed at any moment loses nothing, and at worst publishes the
last batch again (at-least-once; `tidings.cdc.inbox` removes such duplicates).

A column added while the relay runs is picked up: the relay sees the schema change and
rewrites the triggers; changes made before that carry the old columns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.api.bus import AsyncBus
from tidings.api.producer import AsyncProducer
from tidings.cdc.envelope import Change, Source
from tidings.core.errors import ConfigurationError

log = logging.getLogger("tidings.cdc")

CHANGES = "_tidings_cdc_changes"
TABLES = "_tidings_cdc_tables"
SCHEMA = "main"
BATCH = 1000
"""Changes relayed per round."""
POLL_S = 0.002
"""How often an idle relay asks SQLite whether anything was committed (a cheap pragma)."""

_SETUP = (
    f"CREATE TABLE IF NOT EXISTS {CHANGES} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    "tbl TEXT NOT NULL, op TEXT NOT NULL, before TEXT, after TEXT, ts_ms INTEGER NOT NULL)",
    f"CREATE TABLE IF NOT EXISTS {TABLES} (name TEXT PRIMARY KEY, columns TEXT NOT NULL, "
    "pk TEXT NOT NULL, snapshot_done INTEGER NOT NULL DEFAULT 0)",
)
_NOW_MS = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"


@dataclass(frozen=True)
class TableStatus:
    """One captured table."""

    table: str
    columns: list[str]
    primary_key: list[str]
    snapshot_done: bool
    pending: int
    """Changes captured and not yet relayed."""


def connect(database: str | Path) -> sqlite3.Connection:
    """A connection to the user's database for capture work (autocommit, 5 s busy wait)."""
    path = Path(database)
    if not path.exists():
        raise ConfigurationError(f"SQLite database {path} does not exist; give the path of one")
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0, check_same_thread=False)
    conn.row_factory = None
    return conn


def add(database: str | Path, tables: Sequence[str]) -> list[TableStatus]:
    """Install (or refresh) the capture triggers of `tables`; new tables get a snapshot."""
    conn = connect(database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SETUP:
                conn.execute(statement)
            for table in tables:
                _install(conn, table)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return _status(conn)
    finally:
        conn.close()


def remove(database: str | Path, tables: Sequence[str] | None = None) -> list[str]:
    """Drop the triggers of `tables` (all when None) and their pending changes."""
    conn = connect(database)
    try:
        if not _installed(conn):
            return []
        captured = [row[0] for row in conn.execute(f"SELECT name FROM {TABLES}")]
        gone = captured if tables is None else [t for t in tables if t in captured]
        conn.execute("BEGIN IMMEDIATE")
        for table in gone:
            for op in ("insert", "update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, op)}")
            conn.execute(f"DELETE FROM {TABLES} WHERE name = ?", (table,))
            conn.execute(f"DELETE FROM {CHANGES} WHERE tbl = ?", (table,))
        if set(gone) == set(captured):
            conn.execute(f"DROP TABLE {CHANGES}")
            conn.execute(f"DROP TABLE {TABLES}")
        conn.execute("COMMIT")
        return gone
    finally:
        conn.close()


def status(database: str | Path) -> list[TableStatus]:
    """Every captured table, with its pending changes."""
    conn = connect(database)
    try:
        return _status(conn) if _installed(conn) else []
    finally:
        conn.close()


@dataclass
class SqliteSource:
    """Relays the captured changes of a SQLite database to topics `<prefix>.main.<table>`."""

    database: str | Path
    prefix: str | None = None
    """Topic prefix (default: the database file's name without extension)."""
    topic: Callable[[str, str, str], str] | None = None
    """Names a table's topic from (prefix, schema, table), instead of prefix.schema.table."""
    on_snapshot: Callable[[str, int, int], None] | None = None
    """Called as a table's snapshot is relayed: (table, rows relayed, rows in all)."""
    relayed: int = 0
    """Changes relayed since start (snapshot rows included)."""
    _conn: sqlite3.Connection | None = field(default=None, repr=False)
    _schema_version: int = field(default=-1, repr=False)
    _data_version: int = field(default=-1, repr=False)

    def __post_init__(self) -> None:
        self.name = self.prefix or Path(self.database).stem
        """The logical name in every event's source block and topic."""

    def topic_of(self, table: str) -> str:
        """The topic a table's changes go to."""
        if self.topic is not None:
            return self.topic(self.name, SCHEMA, table)
        return f"{self.name}.{SCHEMA}.{table}"

    async def run(self, bus: AsyncBus, stop: asyncio.Event | None = None) -> None:
        """Relay until `stop` is set (or forever); idle, it asks every POLL_S for commits."""
        stop = stop or asyncio.Event()
        producer = bus.producer(linger_ms=0)
        try:
            while not stop.is_set():
                try:
                    relayed = await self._poll(bus, producer)
                except sqlite3.OperationalError as e:
                    if "locked" not in str(e):
                        raise
                    # Writers kept the database busy past the timeout: try again. What
                    # was published and not yet deleted goes out again (at-least-once).
                    log.warning("%s stayed locked; retrying", self.database)
                    relayed = 0
                while not relayed and not stop.is_set() and not self._committed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), POLL_S)
        finally:
            await producer.close()
            self.close()

    def _committed(self) -> bool:
        """Whether another connection committed since the last look (SQLite's data_version)."""
        (version,) = self._db().execute("PRAGMA data_version").fetchone()
        changed: bool = version != self._data_version
        self._data_version = version
        return changed

    async def poll(self, bus: AsyncBus) -> int:
        """Relay what is pending now (a snapshot first for new tables); changes relayed."""
        producer = bus.producer(linger_ms=0)
        try:
            return await self._poll(bus, producer)
        finally:
            await producer.close()

    def close(self) -> None:
        """Close the relay's connection to the database."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def _poll(self, bus: AsyncBus, producer: AsyncProducer) -> int:
        batch = await asyncio.to_thread(self._next_batch)
        if batch is None:
            return 0
        changes, done = batch
        snapshot = self.on_snapshot if changes and changes[0].source.sequence is None else None
        for i, change in enumerate(changes):
            if snapshot is not None:  # a batch of snapshot rows is one table's
                snapshot(change.source.table, i, len(changes))
            topic = self.topic_of(change.source.table)
            await bus.create_topic(topic, exist_ok=True)
            for key, value, headers in change.records():
                producer.send(topic, value, key=key, headers=headers)
        await producer.flush()  # durable: now the changes may go
        await asyncio.to_thread(done)
        if snapshot is not None:
            snapshot(changes[0].source.table, len(changes), len(changes))
        self.relayed += len(changes)
        return len(changes)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.database)
        return self._conn

    def _next_batch(self) -> tuple[list[Change], Callable[[], None]] | None:
        """Blocking: the next snapshot or run of changes, and how to mark it relayed."""
        conn = self._db()
        if not _installed(conn):
            return None
        self._follow_schema(conn)
        rows = conn.execute(f"SELECT name, snapshot_done FROM {TABLES}").fetchall()
        for table, done in rows:
            if not done:
                return self._snapshot(conn, table)
        rows = conn.execute(
            f"SELECT id, tbl, op, before, after, ts_ms FROM {CHANGES} ORDER BY id LIMIT {BATCH}"
        ).fetchall()  # every captured table has its snapshot: changes go in id order
        if not rows:
            return None
        pks = {t: json.loads(pk) for t, pk in conn.execute(f"SELECT name, pk FROM {TABLES}")}
        changes = [c for row in rows if row[1] in pks for c in self._changes(row, pks[row[1]])]
        last = rows[-1][0]

        def relayed() -> None:
            conn.execute(f"DELETE FROM {CHANGES} WHERE id <= ?", (last,))

        return changes, relayed

    def _snapshot(
        self, conn: sqlite3.Connection, table: str
    ) -> tuple[list[Change], Callable[[], None]]:
        columns, pk = _columns(conn, table)
        conn.execute("BEGIN")  # one read transaction: the rows and the change id agree
        try:
            (seen,) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {CHANGES}").fetchone()
            names = ", ".join(_quote(c) for c in columns)
            rows = conn.execute(f"SELECT {names} FROM {_quote(table)}").fetchall()
        finally:
            conn.execute("COMMIT")
        now = time.time_ns() // 1_000_000
        changes = []
        for i, row in enumerate(rows):
            after = dict(zip(columns, (_value(v) for v in row), strict=True))
            marker = "last" if i == len(rows) - 1 else "true"
            source = self._source(table, now, None, marker)
            changes.append(Change("r", {k: after[k] for k in pk}, None, after, source))
        log.info("snapshot of %s: %d rows (changes after id %d follow)", table, len(rows), seen)

        def relayed() -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(f"DELETE FROM {CHANGES} WHERE tbl = ? AND id <= ?", (table, seen))
            conn.execute(f"UPDATE {TABLES} SET snapshot_done = 1 WHERE name = ?", (table,))
            conn.execute("COMMIT")

        return changes, relayed

    def _changes(self, row: tuple[Any, ...], pk: list[str]) -> list[Change]:
        change_id, table, op, before_text, after_text, ts_ms = row
        before = _row(before_text)
        after = _row(after_text)
        source = self._source(table, ts_ms, change_id, "false")
        old_key = {k: before[k] for k in pk} if before is not None else None
        new_key = {k: after[k] for k in pk} if after is not None else None
        if op == "u" and old_key != new_key:  # a new primary key: delete, then create
            assert old_key is not None and new_key is not None
            return [
                Change("d", old_key, before, None, source),
                Change("c", new_key, None, after, source),
            ]
        key = new_key if new_key is not None else old_key
        assert key is not None
        return [Change(op, key, before, after, source)]

    def _source(self, table: str, ts_ms: int, sequence: int | None, snapshot: str) -> Source:
        return Source(
            connector="sqlite",
            name=self.name,
            db=str(self.database),
            schema=SCHEMA,
            table=table,
            ts_ms=ts_ms,
            sequence=sequence,
            snapshot=snapshot,
        )

    def _follow_schema(self, conn: sqlite3.Connection) -> None:
        """Rewrite the triggers after a schema change (a column added, say)."""
        (version,) = conn.execute("PRAGMA schema_version").fetchone()
        if version == self._schema_version:
            return
        tables = [row[0] for row in conn.execute(f"SELECT name FROM {TABLES}")]
        changed = [t for t in tables if _stored_columns(conn, t) != _columns(conn, t)]
        if changed:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for table in changed:
                    _install(conn, table)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            log.info("captured columns of %s changed: triggers rewritten", ", ".join(changed))
        (self._schema_version,) = conn.execute("PRAGMA schema_version").fetchone()


def _installed(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLES,)
    ).fetchone()
    return bool(found[0])


def _status(conn: sqlite3.Connection) -> list[TableStatus]:
    pending = dict(conn.execute(f"SELECT tbl, count(*) FROM {CHANGES} GROUP BY tbl").fetchall())
    return [
        TableStatus(name, json.loads(columns), json.loads(pk), bool(done), pending.get(name, 0))
        for name, columns, pk, done in conn.execute(
            f"SELECT name, columns, pk, snapshot_done FROM {TABLES} ORDER BY name"
        )
    ]


def _columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    """A table's columns and primary key, or a clear error."""
    info = conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    if not info:
        known = [
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_tidings_%' ORDER BY name"
            )
        ]
        raise ConfigurationError(
            f"table {table!r} does not exist in this database; tables there: "
            f"{', '.join(known) or '(none)'}"
        )
    columns = [row[1] for row in info]
    pk = [row[1] for row in sorted((r for r in info if r[5]), key=lambda r: r[5])]
    if not pk:
        raise ConfigurationError(
            f"table {table!r} has no primary key; change events are keyed by it: add one "
            f"(e.g. an INTEGER PRIMARY KEY column) before capturing the table"
        )
    return columns, pk


def _stored_columns(conn: sqlite3.Connection, table: str) -> tuple[list[str], list[str]]:
    columns, pk = conn.execute(
        f"SELECT columns, pk FROM {TABLES} WHERE name = ?", (table,)
    ).fetchone()
    return json.loads(columns), json.loads(pk)


def _install(conn: sqlite3.Connection, table: str) -> None:
    """Write `table`'s three triggers and its row in the tables list (in a transaction)."""
    columns, pk = _columns(conn, table)

    def image(row: str) -> str:
        # Blobs become [hex] (JSON has no bytes); the relay turns them into base64 text.
        pairs = ", ".join(
            f"'{_escape(c)}', iif(typeof({row}.{_quote(c)}) = 'blob', "
            f"json_array(hex({row}.{_quote(c)})), {row}.{_quote(c)})"
            for c in columns
        )
        return f"json_object({pairs})"

    images = [
        ("insert", "c", "NULL", image("NEW")),
        ("update", "u", image("OLD"), image("NEW")),
        ("delete", "d", image("OLD"), "NULL"),
    ]
    for event, op, before, after in images:
        name = _trigger(table, event)
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(
            f"CREATE TRIGGER {name} AFTER {event.upper()} ON {_quote(table)} BEGIN "
            f"INSERT INTO {CHANGES} (tbl, op, before, after, ts_ms) VALUES "
            f"('{_escape(table)}', '{op}', {before}, {after}, {_NOW_MS}); END"
        )
    conn.execute(
        f"INSERT INTO {TABLES} (name, columns, pk) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET columns = excluded.columns, pk = excluded.pk",
        (table, json.dumps(columns), json.dumps(pk)),
    )


def _trigger(table: str, event: str) -> str:
    return _quote(f"_tidings_cdc_{table}_{event}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _escape(text: str) -> str:
    return text.replace("'", "''")


def _row(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    return {k: _json_value(v) for k, v in json.loads(text).items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, list):  # a blob, as [hex]
        return base64.b64encode(bytes.fromhex(value[0])).decode("ascii")
    return value


def _value(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value
