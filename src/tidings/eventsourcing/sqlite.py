"""Events in a SQLite file: one table of events, one of streams, appends under one lock.

SQLite has one writer at a time, so an append's version check, its inserts and the
stream's new version commit together, and global positions (an AUTOINCREMENT key) are
given in commit order: a reader never sees a later position before an earlier one, so
the global order has no gaps even under concurrent writers in many processes. Every
append is fsynced before it returns (`synchronous=FULL` in WAL mode).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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
    "CREATE TABLE IF NOT EXISTS events (position INTEGER PRIMARY KEY AUTOINCREMENT, "
    "id TEXT NOT NULL UNIQUE, stream_id TEXT NOT NULL, version INTEGER NOT NULL, "
    "type TEXT NOT NULL, data BLOB NOT NULL, metadata TEXT NOT NULL, "
    "recorded_ms INTEGER NOT NULL, UNIQUE (stream_id, version))",
    "CREATE TABLE IF NOT EXISTS streams (stream_id TEXT PRIMARY KEY, "
    "version INTEGER NOT NULL, state INTEGER NOT NULL DEFAULT 0, "
    "first_version INTEGER NOT NULL DEFAULT 0, metadata TEXT NOT NULL DEFAULT '{}')",
    "CREATE TABLE IF NOT EXISTS snapshots (stream_id TEXT PRIMARY KEY, "
    "version INTEGER NOT NULL, state TEXT NOT NULL)",
)
_COLUMNS = "id, stream_id, version, position, type, data, metadata, recorded_ms"


class SqliteStorage(EventStorage):
    """An event store in one SQLite file, shared by every process on the host."""

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        conn = self._conn()
        conn.execute("PRAGMA journal_mode=WAL")
        for statement in _SCHEMA:
            conn.execute(statement)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
            conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
        return conn

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: int
    ) -> list[RecordedEvent]:
        """Append atomically after checking `expected`."""
        conn = self._conn()
        with self._write_lock:  # one writer per process; SQLite's lock orders processes
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT version, state FROM streams WHERE stream_id = ?", (stream_id,)
                ).fetchone()
                version, state = row if row is not None else (-1, NOT_DELETED)
                check_expected(stream_id, expected, version, state)
                now = time.time_ns() // 1_000_000
                recorded = []
                for i, e in enumerate(events):
                    values = (e.id, stream_id, version + 1 + i, e.type, e.data)
                    cur = conn.execute(
                        "INSERT INTO events (id, stream_id, version, type, data, metadata, "
                        "recorded_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*values, json.dumps(e.metadata), now),
                    )
                    recorded.append(
                        RecordedEvent(
                            id=e.id,
                            stream_id=stream_id,
                            version=version + 1 + i,
                            position=cur.lastrowid or 0,
                            type=e.type,
                            data=e.data,
                            metadata=e.metadata,
                            recorded_ms=now,
                        )
                    )
                if recorded:
                    first = version + 1 if state == SOFT_DELETED else None
                    conn.execute(
                        "INSERT INTO streams (stream_id, version) VALUES (?, ?) "
                        "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, "
                        "state = 0, first_version = coalesce(?, first_version)",
                        (stream_id, recorded[-1].version, first),
                    )
                conn.execute("COMMIT")
            except sqlite3.IntegrityError as e:
                conn.execute("ROLLBACK")
                if "events.id" not in str(e):
                    raise
                taken = next(x.id for x in events if self._stored(conn, x.id))
                raise DuplicateEventError(taken) from None
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        self._notify()
        return recorded

    @staticmethod
    def _stored(conn: sqlite3.Connection, event_id: str) -> bool:
        return conn.execute("SELECT 1 FROM events WHERE id = ?", (event_id,)).fetchone() is not None

    def read_stream(
        self, stream_id: str, from_version: int, backward: bool, limit: int
    ) -> list[RecordedEvent]:
        """Readable events of a stream from a version."""
        conn = self._conn()
        row = conn.execute(
            "SELECT version, state, first_version, metadata FROM streams WHERE stream_id = ?",
            (stream_id,),
        ).fetchone()
        if row is None or row[1] != NOT_DELETED:
            return []
        last, _, first, meta_text = row
        meta = _metadata(meta_text)
        if meta.max_count is not None:
            first = max(first, last - meta.max_count + 1)
        oldest = 0 if meta.max_age_ms is None else time.time_ns() // 1_000_000 - meta.max_age_ms
        if backward:
            where, order = "version <= ? AND version >= ?", "DESC"
            args: tuple[Any, ...] = (from_version, first)
        else:
            where, order = "version >= ?", "ASC"
            args = (max(from_version, first),)
        rows = conn.execute(
            f"SELECT {_COLUMNS} FROM events WHERE stream_id = ? AND {where} "
            f"AND recorded_ms >= ? ORDER BY version {order} LIMIT ?",
            (stream_id, *args, oldest, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def read_all(self, from_position: int, limit: int, category: str | None) -> list[RecordedEvent]:
        """Events at or after a global position."""
        if category is None:
            rows = self._conn().execute(
                f"SELECT {_COLUMNS} FROM events WHERE position >= ? ORDER BY position LIMIT ?",
                (from_position, limit),
            )
        else:
            rows = self._conn().execute(
                f"SELECT {_COLUMNS} FROM events WHERE position >= ? AND stream_id >= ? "
                "AND stream_id < ? ORDER BY position LIMIT ?",
                (from_position, category + "-", category + ".", limit),  # "." follows "-"
            )
        return [_event(r) for r in rows.fetchall()]

    def last_position(self) -> int:
        """The last global position."""
        (last,) = self._conn().execute("SELECT coalesce(max(position), 0) FROM events").fetchone()
        return int(last)

    def stream_state(self, stream_id: str) -> tuple[int, int, StreamMetadata]:
        """A stream's version, deleted state and metadata."""
        row = (
            self._conn()
            .execute(
                "SELECT version, state, metadata FROM streams WHERE stream_id = ?", (stream_id,)
            )
            .fetchone()
        )
        if row is None:
            return -1, NOT_DELETED, StreamMetadata()
        return row[0], row[1], _metadata(row[2])

    def set_metadata(self, stream_id: str, metadata: StreamMetadata) -> None:
        """Store a stream's metadata."""
        settings = {"max_count": metadata.max_count, "max_age_ms": metadata.max_age_ms}
        text = json.dumps({**settings, "custom": metadata.custom})
        with self._write_lock:
            self._conn().execute(
                "INSERT INTO streams (stream_id, version, metadata) VALUES (?, -1, ?) "
                "ON CONFLICT (stream_id) DO UPDATE SET metadata = excluded.metadata",
                (stream_id, text),
            )

    def delete_stream(self, stream_id: str, hard: bool) -> None:
        """Soft- or hard-delete a stream."""
        conn = self._conn()
        with self._write_lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute(
                    "SELECT version, state FROM streams WHERE stream_id = ?", (stream_id,)
                ).fetchone()
                if row is not None and row[1] == HARD_DELETED:
                    raise StreamDeletedError(stream_id)
                conn.execute(
                    "INSERT INTO streams (stream_id, version, state) VALUES (?, -1, ?) "
                    "ON CONFLICT (stream_id) DO UPDATE SET state = excluded.state",
                    (stream_id, HARD_DELETED if hard else SOFT_DELETED),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def streams(self, prefix: str, limit: int) -> list[tuple[str, int, int]]:
        """Streams whose id starts with `prefix`."""
        rows = self._conn().execute(
            "SELECT stream_id, version, state FROM streams WHERE stream_id >= ? "
            "AND stream_id < ? ORDER BY stream_id LIMIT ?",
            (prefix, prefix + "\U0010ffff", limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def save_snapshot(self, stream_id: str, version: int, state: str) -> None:
        """Keep a stream's state as of `version`."""
        with self._write_lock:
            self._conn().execute(
                "INSERT INTO snapshots (stream_id, version, state) VALUES (?, ?, ?) "
                "ON CONFLICT (stream_id) DO UPDATE SET version = excluded.version, "
                "state = excluded.state WHERE excluded.version > snapshots.version",
                (stream_id, version, state),
            )

    def load_snapshot(self, stream_id: str) -> tuple[int, str] | None:
        """A stream's latest snapshot."""
        row = (
            self._conn()
            .execute("SELECT version, state FROM snapshots WHERE stream_id = ?", (stream_id,))
            .fetchone()
        )
        return None if row is None else (row[0], row[1])

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def _event(row: tuple[Any, ...]) -> RecordedEvent:
    eid, stream_id, version, position, etype, data, metadata, recorded_ms = row
    return RecordedEvent(
        eid, stream_id, version, position, etype, bytes(data), json.loads(metadata), recorded_ms
    )


def _metadata(text: str) -> StreamMetadata:
    raw = json.loads(text or "{}")
    return StreamMetadata(raw.get("max_count"), raw.get("max_age_ms"), raw.get("custom", {}))
