"""Events in SQL: SQLite (embedded) and PostgreSQL, one implementation, two dialects.

Three tables: events, streams (version, deleted state, metadata) and snapshots. An
append takes the database's write lock first (SQLite: BEGIN IMMEDIATE, one writer at a
time; PostgreSQL: a transaction-level advisory lock), then checks the expected version,
numbers its events after the highest position and commits. Appends are therefore
serialised, and each commits before the next takes its positions: a reader never sees a
later position before an earlier one, so the global order has no gaps for readers even
with concurrent writers on many hosts. Every append is durable before it returns
(SQLite: `synchronous=FULL`; PostgreSQL: its commit).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidings.core.extras import require_extra
from tidings.eventsourcing.storage import (
    HARD_DELETED,
    NOT_DELETED,
    SOFT_DELETED,
    DuplicateEventError,
    EventStorage,
    NewEvent,
    RecordedEvent,
    StreamDeletedError,
    StreamMetadata,
    check_expected,
)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS events (position BIGINT PRIMARY KEY, "
    "id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL, version BIGINT NOT NULL, "
    "type TEXT NOT NULL, data {blob} NOT NULL, metadata TEXT NOT NULL, "
    "recorded_ms BIGINT NOT NULL, UNIQUE (stream_id, version))",
    "CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, "
    "version BIGINT NOT NULL, state INTEGER NOT NULL DEFAULT 0, "
    "first_version BIGINT NOT NULL DEFAULT 0, metadata TEXT NOT NULL DEFAULT '{{}}')",
    "CREATE TABLE IF NOT EXISTS snapshots (stream_id TEXT PRIMARY KEY, "
    "version BIGINT NOT NULL, state TEXT NOT NULL)",
)
_COLUMNS = "id, stream_id, version, position, type, data, metadata, recorded_ms"
APPEND_LOCK = 0x7469_6469_6E67
"""The advisory lock every PostgreSQL append takes ("tiding")."""


class SqlStorage(EventStorage):
    """The event store's tables in a SQL database; subclasses speak its dialect."""

    blob = "BLOB"

    def __init__(self) -> None:
        super().__init__()
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._all_connections: list[Any] = []
        self._connections_lock = threading.Lock()
        self._queue: list[_Append] = []
        self._queue_lock = threading.Lock()
        """Every thread's connection (the sync face calls from the caller's threads)."""
        conn = self._conn()
        for statement in _SCHEMA:
            conn.execute(statement.format(blob=self.blob))
        self._commit(conn)

    # -- the dialect ---------------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Any:
        """A new connection."""

    @abstractmethod
    def _begin_write(self, conn: Any) -> None:
        """Start a transaction holding the database's append lock."""

    @abstractmethod
    def _duplicate(self, error: Exception) -> bool:
        """Whether `error` is a unique violation on an event id."""

    def _sql(self, query: str) -> str:
        """The query with this dialect's parameter marks."""
        return query

    def _commit(self, conn: Any) -> None:
        conn.commit()

    def _rollback(self, conn: Any) -> None:
        conn.rollback()

    # -- shared ----------------------------------------------------------------------------

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._connections_lock:  # not the write lock: a writer may be opening one
                self._all_connections.append(conn)
        return conn

    def _query(self, query: str, args: Sequence[Any] = ()) -> Any:
        return self._conn().execute(self._sql(query), tuple(args))

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: int
    ) -> list[RecordedEvent]:
        """Append atomically after checking `expected`.

        Appends that wait for the write lock together (threads of one process) are
        committed together, each under a savepoint of its own: one transaction, one fsync,
        and each still succeeds or fails alone (group commit)."""
        request = _Append(stream_id, list(events), expected)
        with self._queue_lock:
            self._queue.append(request)
        with self._write_lock:
            if not request.done:  # no earlier leader took it: lead a group of our own
                with self._queue_lock:
                    group, self._queue = self._queue, []
                self._commit_group(group)
        if request.error is not None:
            raise request.error
        self._notify()
        return request.recorded

    def _commit_group(self, group: list[_Append]) -> None:
        conn = self._conn()
        try:
            self._begin_write(conn)
            for request in group:
                self._query("SAVEPOINT tidings_append")
                try:
                    request.recorded = self._insert(conn, request)
                    self._query("RELEASE SAVEPOINT tidings_append")
                except Exception as e:
                    self._query("ROLLBACK TO SAVEPOINT tidings_append")
                    self._query("RELEASE SAVEPOINT tidings_append")
                    failure: BaseException = e
                    if self._duplicate(e):
                        failure = DuplicateEventError(self._taken(request.events))
                    request.error, request.recorded = failure, []
            self._commit(conn)
        except BaseException as e:  # the commit itself failed: nobody's events are stored
            self._rollback(conn)
            for request in group:
                if request.error is None:
                    request.error, request.recorded = e, []
        finally:
            for request in group:
                request.done = True

    def _insert(self, conn: Any, request: _Append) -> list[RecordedEvent]:
        """Inside the group's transaction: check one append and insert its events."""
        stream_id = request.stream_id
        row = self._query(
            "SELECT version, state FROM streams WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        version, state = row if row is not None else (-1, NOT_DELETED)
        check_expected(stream_id, request.expected, version, state)
        (last,) = self._query("SELECT coalesce(max(position), 0) FROM events").fetchone()
        now = time.time_ns() // 1_000_000
        recorded = [
            RecordedEvent(
                id=e.id,
                stream_id=stream_id,
                version=version + 1 + i,
                position=last + 1 + i,
                type=e.type,
                data=e.data,
                metadata=e.metadata,
                recorded_ms=now,
            )
            for i, e in enumerate(request.events)
        ]
        texts: dict[int, str] = {}  # events of one append mostly share their metadata
        rows = [
            (
                *(r.id, r.stream_id, r.version, r.position, r.type, r.data),
                texts.setdefault(id(r.metadata), json.dumps(r.metadata)),
                r.recorded_ms,
            )
            for r in recorded
        ]
        conn.cursor().executemany(
            self._sql(f"INSERT INTO events ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"), rows
        )
        if recorded:
            first = version + 1 if state == SOFT_DELETED else None
            self._query(
                "INSERT INTO streams (stream_id, version) VALUES (?, ?) "
                "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, "
                "state = 0, first_version = coalesce(?, streams.first_version)",
                (stream_id, recorded[-1].version, first),
            )
        return recorded

    def _taken(self, events: Sequence[NewEvent]) -> str:
        """The first of `events` whose id is already stored (inside the transaction)."""
        for e in events:
            if self._query("SELECT 1 FROM events WHERE id = ?", (e.id,)).fetchone():
                return e.id
        return events[0].id  # a duplicate within the append itself

    def read_stream(
        self, stream_id: str, from_version: int, backward: bool, limit: int
    ) -> list[RecordedEvent]:
        """Readable events of a stream from a version."""
        try:
            row = self._query(
                "SELECT version, state, first_version, metadata FROM streams WHERE stream_id = ?",
                (stream_id,),
            ).fetchone()
            if row is None or row[1] != NOT_DELETED:
                return []
            last, _, first, meta_text = row
            meta = _metadata(meta_text)
            if meta.max_count is not None:
                first = max(first, last - meta.max_count + 1)
            oldest = -1
            if meta.max_age_ms is not None:
                oldest = time.time_ns() // 1_000_000 - meta.max_age_ms
            if backward:
                where, order = "version <= ? AND version >= ?", "DESC"
                args: tuple[Any, ...] = (from_version, first)
            else:
                where, order = "version >= ?", "ASC"
                args = (max(from_version, first),)
            rows = self._query(
                f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND {where} "
                f"AND recorded_ms >= ? ORDER BY version {order} LIMIT ?",
                (stream_id, *args, oldest, limit),
            ).fetchall()
        finally:
            self._commit(self._conn())  # end the read: the next one sees new commits
        return [_event(r) for r in rows]

    def read_all(self, from_position: int, limit: int, category: str | None) -> list[RecordedEvent]:
        """Events at or after a global position."""
        try:
            if category is None:
                rows = self._query(
                    f"SELECT {_COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
                    (from_position, limit),
                ).fetchall()
            else:
                rows = self._query(
                    f"SELECT {_COLUMNS} FROM events WHERE position >= ? AND stream_id >= ? "
                    "AND stream_id < ? ORDER BY position LIMIT ?",
                    (from_position, category + "-", category + ".", limit),  # "." follows "-"
                ).fetchall()
        finally:
            self._commit(self._conn())
        return [_event(r) for r in rows]

    def last_position(self) -> int:
        """The last global position."""
        (last,) = self._query("SELECT coalesce(max(position), 0) FROM events").fetchone()
        self._commit(self._conn())
        return int(last)

    def stream_state(self, stream_id: str) -> tuple[int, int, StreamMetadata]:
        """A stream's version, deleted state and metadata."""
        row = self._query(
            "SELECT version, state, metadata FROM streams WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        self._commit(self._conn())
        if row is None:
            return -1, NOT_DELETED, StreamMetadata()
        return row[0], row[1], _metadata(row[2])

    def set_metadata(self, stream_id: str, metadata: StreamMetadata) -> None:
        """Store a stream's metadata."""
        settings = {"max_count": metadata.max_count, "max_age_ms": metadata.max_age_ms}
        text = json.dumps({**settings, "custom": metadata.custom})
        self._write(
            "INSERT INTO streams (stream_id, version, metadata) VALUES (?, -1, ?) "
            "ON CONFLICT (stream_id) DO UPDATE SET metadata = excluded.metadata",
            (stream_id, text),
        )

    def delete_stream(self, stream_id: str, hard: bool) -> None:
        """Soft- or hard-delete a stream."""
        conn = self._conn()
        with self._write_lock:
            self._begin_write(conn)
            try:
                row = self._query(
                    "SELECT state FROM streams WHERE stream_id = ?", (stream_id,)
                ).fetchone()
                if row is not None and row[0] == HARD_DELETED:
                    raise StreamDeletedError(stream_id)
                self._query(
                    "INSERT INTO streams (stream_id, version, state) VALUES (?, -1, ?) "
                    "ON CONFLICT (stream_id) DO UPDATE SET state = excluded.state",
                    (stream_id, HARD_DELETED if hard else SOFT_DELETED),
                )
                self._commit(conn)
            except BaseException:
                self._rollback(conn)
                raise

    def streams(self, prefix: str, limit: int) -> list[tuple[str, int, int]]:
        """Streams whose id starts with `prefix`."""
        rows = self._query(
            "SELECT stream_id, version, state FROM streams WHERE stream_id >= ? "
            "AND stream_id < ? ORDER BY stream_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        ).fetchall()
        self._commit(self._conn())
        return [(r[0], r[1], r[2]) for r in rows]

    def save_snapshot(self, stream_id: str, version: int, state: str) -> None:
        """Keep a stream's state as of `version`."""
        self._write(
            "INSERT INTO snapshots (stream_id, version, state) VALUES (?, ?, ?) "
            "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, "
            "state = excluded.state WHERE excluded.version > snapshots.version",
            (stream_id, version, state),
        )

    def load_snapshot(self, stream_id: str) -> tuple[int, str] | None:
        """A stream's latest snapshot."""
        row = self._query(
            "SELECT version, state FROM snapshots WHERE stream_id = ?", (stream_id,)
        ).fetchone()
        self._commit(self._conn())
        return None if row is None else (row[0], row[1])

    def _write(self, query: str, args: Sequence[Any]) -> None:
        conn = self._conn()
        with self._write_lock:
            try:
                self._query(query, args)
                self._commit(conn)
            except BaseException:
                self._rollback(conn)
                raise

    def close(self) -> None:
        """Close every thread's connection."""
        with self._connections_lock:
            connections, self._all_connections = self._all_connections, []
        for conn in connections:
            with contextlib.suppress(Exception):  # another thread's: closing may complain
                conn.close()
        self._local = threading.local()


class SqliteStorage(SqlStorage):
    """An event store in one SQLite file, shared by every process on the host."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__()

    def _connect(self) -> sqlite3.Connection:
        # used by one thread; closed by whichever closes the store
        conn = sqlite3.connect(
            self.path, isolation_level=None, timeout=30.0, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        return conn

    def _begin_write(self, conn: Any) -> None:
        conn.execute("BEGIN IMMEDIATE")  # the one writer: SQLite orders every process

    def _commit(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("COMMIT")

    def _rollback(self, conn: Any) -> None:
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _duplicate(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError) and "events.id" in str(error)


class PostgresStorage(SqlStorage):
    """An event store in a PostgreSQL database, for applications on many hosts."""

    blob = "BYTEA"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        super().__init__()

    def _connect(self) -> Any:
        with require_extra("postgres", "the PostgreSQL event store"):
            import psycopg

        return psycopg.connect(self.dsn)

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def _begin_write(self, conn: Any) -> None:
        self._commit(conn)  # whatever read was open ends here
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPEND_LOCK,))

    def _duplicate(self, error: Exception) -> bool:
        return type(error).__name__ == "UniqueViolation" and "events_id_key" in str(error)


@dataclass
class _Append:
    """One append waiting for (or done by) a group commit."""

    stream_id: str
    events: list[NewEvent]
    expected: int
    recorded: list[RecordedEvent] = field(default_factory=list)
    error: BaseException | None = None
    done: bool = False


def _event(row: tuple[Any, ...]) -> RecordedEvent:
    eid, stream_id, version, position, etype, data, metadata, recorded_ms = row
    return RecordedEvent(
        eid, stream_id, version, position, etype, bytes(data), json.loads(metadata), recorded_ms
    )


def _metadata(text: str) -> StreamMetadata:
    raw = json.loads(text or "{}")
    return StreamMetadata(raw.get("max_count"), raw.get("max_age_ms"), raw.get("custom", {}))
