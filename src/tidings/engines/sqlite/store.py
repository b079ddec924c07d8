"""SQLiteStore: batches in one SQLite file (WAL), a single writer thread with group commit.

Every append waits in a queue; the writer takes all that is waiting, stores it in one
transaction, and commits once, so concurrent producers share one fsync. Readers use
their own connections and never block the writer. Checkpoints (copying the WAL into the
database file) run in a thread of their own instead of inside a commit, so a producer
never waits for them. Several processes may open the same
file: SQLite's locks order their transactions and offsets are assigned inside them.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from tidings.core.batch import EncodedBatch
from tidings.core.errors import (
    ConfigurationError,
    NotATidingsStoreError,
    PartitionNotFoundError,
    StoreError,
    StoreNotFoundError,
    StoreReadOnlyError,
    TidingsError,
    TopicExistsError,
    TopicNotFoundError,
)
from tidings.core.records import TopicConfig, TopicSpec, now_ms
from tidings.engines.base import AppendResult, PartitionState
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log.share import ShareState
from tidings.engines.log.store import (
    Appended,
    BatchMeta,
    LogStore,
    ProduceBatch,
    StoredBatch,
    T,
)
from tidings.engines.sqlite.failures import store_error
from tidings.engines.sqlite.modes import DEFAULT_MODE, directory_mode, file_mode
from tidings.engines.sqlite.notify import Notifier

APPLICATION_ID = 0x54444753  # "TDGS": marks a file as a tidings store
SCHEMA_VERSION = 1
MAX_GROUP_BYTES = 64 << 20
CHECKPOINT_BYTES = 32 << 20
CHECKPOINT_INTERVAL_S = 1.0
SYNC_MODES = {"full": "FULL", "normal": "NORMAL", "off": "OFF"}

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE topics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    partitions INTEGER NOT NULL,
    config TEXT NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE TABLE partitions (
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    start_offset INTEGER NOT NULL,
    end_offset INTEGER NOT NULL,
    size_bytes INTEGER NOT NULL,
    PRIMARY KEY (topic_id, partition)
) WITHOUT ROWID;
CREATE TABLE batches (
    id INTEGER PRIMARY KEY,
    topic_id INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    base_offset INTEGER NOT NULL,
    last_offset INTEGER NOT NULL,
    max_timestamp INTEGER NOT NULL,
    size INTEGER NOT NULL,
    appended_ms INTEGER NOT NULL DEFAULT 0,
    data BLOB NOT NULL
);
CREATE UNIQUE INDEX batches_by_offset
    ON batches (topic_id, partition, last_offset, base_offset, max_timestamp, size, appended_ms);
CREATE TABLE groups (name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS shares (
    name TEXT NOT NULL,
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (name, topic, partition)
) WITHOUT ROWID;
"""
SHARES_TABLE = SCHEMA[SCHEMA.index("CREATE TABLE IF NOT EXISTS shares") :]
"""Added after the first stores were made: created on open where missing."""
APPENDED_MS = (
    "ALTER TABLE batches ADD COLUMN appended_ms INTEGER NOT NULL DEFAULT 0",
    "DROP INDEX batches_by_offset",
    SCHEMA[SCHEMA.index("CREATE UNIQUE INDEX") : SCHEMA.index("CREATE TABLE groups")],
)
"""Added after the first stores were made, on open where missing: a batch stored before
has append time 0, long past, so retention treats it as it did when it was written."""

_TOPIC_ID = "(SELECT id FROM topics WHERE name = ?)"


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced (the built-in type cannot)."""


class _Append:
    __slots__ = ("batches", "future")

    def __init__(self, batches: Sequence[ProduceBatch]) -> None:
        self.batches = batches
        self.future: Future[list[AppendResult]] = Future()


class SQLiteStore(LogStore):
    """A LogStore in one SQLite file; safe across threads and processes."""

    durable = True
    multi_process = True

    def __init__(
        self,
        path: str | Path,
        url: str | None = None,
        fsync: str = "full",
        create: str = "true",
        mode: str = DEFAULT_MODE,
    ) -> None:
        if fsync not in SYNC_MODES:
            raise ConfigurationError(
                f"fsync must be one of {', '.join(SYNC_MODES)}, not {fsync!r} "
                f"(full: every commit reaches the disk; normal: survives a process crash, "
                f"not a power cut; off: neither)"
            )
        if create not in ("true", "false"):
            raise ConfigurationError(
                f"create must be true (make the store if it is missing) or false "
                f"(open only an existing store), not {create!r}"
            )
        self._mode = file_mode(mode)
        path = Path(path)
        if path.is_dir() or str(path).endswith("/"):
            path = path / "tidings.db"
        self.path = path
        self.url = url or f"sqlite://{path}"
        self._sync = SYNC_MODES[fsync]
        self._create = create == "true"
        self._read_only = False
        self._uri = ""
        """What connections open: the file, read-only where it cannot be written."""
        self._local = threading.local()
        self._connections: weakref.WeakSet[_Connection] = weakref.WeakSet()
        """Every thread's connection, to close with the store; one whose thread ended is
        dropped with the thread (a user thread may read topics on a cache miss)."""
        self._connections_lock = threading.Lock()
        self._queue: deque[_Append] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._writer: threading.Thread | None = None
        self._listeners: list[Callable[[Sequence[Appended]], None]] = []
        self._notifier = Notifier(self.path, partial(self._changed, ()), self._mode)
        self._unchecked_bytes = 0
        self._checkpoint_due = threading.Event()
        self._checkpointer: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def open(self) -> None:
        """Open or create the store file; refuse files that are not tidings stores.

        A store that cannot be written (a read-only mount or file) opens for reading, and
        every write to it raises StoreReadOnlyError.
        """
        if not self._create and not self.path.exists():
            raise StoreNotFoundError(str(self.path))
        self.path.parent.mkdir(mode=directory_mode(self._mode), parents=True, exist_ok=True)
        self._read_only, immutable = _access(self.path)
        if self._read_only and not self.path.exists():
            raise StoreReadOnlyError(str(self.path), "create the store")
        if not self.path.exists():
            # created here, so that SQLite gives its journal and WAL files the same mode
            with contextlib.suppress(FileExistsError):  # another process made it meanwhile
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, self._mode))
        # SQLite reads a WAL store through its -shm file, which it must be able to create
        # unless told the file cannot change: true of a read-only mount.
        query = "?mode=ro&immutable=1" if immutable else "?mode=ro" if self._read_only else ""
        self._uri = self.path.resolve().as_uri() + query
        try:
            self._identify()
            conn = self._conn()
            if not conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                self._create_schema(conn)
            conn.execute(SHARES_TABLE)
            self._add_append_times(conn)
        except sqlite3.Error as e:
            raise store_error(e, self.path, "open the store") from e
        self._writer = threading.Thread(
            target=self._write_forever, name="tidings-writer", daemon=True
        )
        self._writer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpoint_forever, name="tidings-checkpoint", daemon=True
        )
        self._checkpointer.start()
        if not immutable:  # nothing can change a store on a read-only mount
            self._notifier.start()

    def _identify(self) -> None:
        """Refuse a file that is not a tidings store of this version, without changing it."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with self.path.open("rb") as f:
            if f.read(16) != b"SQLite format 3\x00":
                raise NotATidingsStoreError(
                    f"{self.path} is not a tidings store (not an SQLite file); "
                    f"it was left untouched; choose another path"
                )
        # Read-only: a connection for use would switch the file to WAL mode at once.
        conn = sqlite3.connect(self._uri if self._read_only else f"{self._uri}?mode=ro", uri=True)
        try:
            app_id = conn.execute("PRAGMA application_id").fetchone()[0]
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            ours = tables and app_id == APPLICATION_ID
            query = "SELECT value FROM meta WHERE key = 'schema'"
            version = conn.execute(query).fetchone() if ours else None
        finally:
            conn.close()
        if tables and app_id != APPLICATION_ID:
            raise NotATidingsStoreError(
                f"{self.path} is an SQLite database of another application; "
                f"it was left untouched; choose another path"
            )
        if tables and (version is None or int(version[0]) != SCHEMA_VERSION):
            raise NotATidingsStoreError(
                f"{self.path} has tidings schema {version and version[0]}, this version "
                f"reads schema {SCHEMA_VERSION}; open it with the matching tidings version"
            )

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA page_size = 16384")
        conn.execute("PRAGMA journal_mode = WAL")
        with self._transaction(conn):
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                return  # another process created it meanwhile
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))

    def _add_append_times(self, conn: sqlite3.Connection) -> None:
        """Give a store made before batches had append times its column and index."""
        if self._read_only or _has_append_times(conn):
            return
        with self._transaction(conn, "add append times to the store"):
            if not _has_append_times(conn):  # another process may have added them meanwhile
                for statement in APPENDED_MS:
                    conn.execute(statement)

    def close(self) -> None:
        """Finish queued appends, stop the writer and listener, close connections."""
        with self._wake:
            self._closing = True
            self._wake.notify_all()
        if self._writer is not None:
            self._writer.join()
        self._checkpoint_due.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._notifier.close()
        with self._connections_lock:
            for conn in list(self._connections):
                conn.close()
            self._connections.clear()

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self._uri,
                uri=True,
                isolation_level=None,
                check_same_thread=False,
                timeout=60,
                factory=_Connection,
            )
            conn.execute(f"PRAGMA synchronous = {self._sync}")
            if not self._read_only:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpoint thread does it
            self._local.conn = conn
            with self._connections_lock:
                self._connections.add(conn)
        return conn

    @contextmanager
    def _transaction(
        self, conn: sqlite3.Connection | None = None, action: str = "write to the store"
    ) -> Iterator[sqlite3.Connection]:
        conn = conn or self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite has already rolled back after some failures (a full disk, I/O).
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise store_error(e, self.path, action) from e

    # -- topics --------------------------------------------------------------------------

    def topics(self) -> dict[str, TopicSpec]:
        """Every topic, read now."""
        rows = self._conn().execute("SELECT name, partitions, config FROM topics").fetchall()
        return {name: _spec(name, n, config) for name, n, config in rows}

    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic and its partitions."""
        with self._transaction() as conn:
            if conn.execute("SELECT 1 FROM topics WHERE name = ?", (spec.name,)).fetchone():
                raise TopicExistsError(spec.name)
            cur = conn.execute(
                "INSERT INTO topics (name, partitions, config, created_ms) VALUES (?, ?, ?, ?)",
                (spec.name, spec.partitions, json.dumps(spec.config.to_dict()), now_ms()),
            )
            conn.executemany(
                "INSERT INTO partitions VALUES (?, ?, 0, 0, 0)",
                [(cur.lastrowid, p) for p in range(spec.partitions)],
            )

    def delete_topic(self, name: str) -> None:
        """Delete a topic and all its batches."""
        with self._transaction() as conn:
            topic_id = self._topic_id(conn, name)
            conn.execute("DELETE FROM batches WHERE topic_id = ?", (topic_id,))
            conn.execute("DELETE FROM partitions WHERE topic_id = ?", (topic_id,))
            conn.execute("DELETE FROM topics WHERE id = ?", (topic_id,))
            conn.execute("DELETE FROM shares WHERE topic = ?", (name,))

    def update_topic(self, spec: TopicSpec) -> None:
        """Store new settings and partitions."""
        with self._transaction() as conn:
            topic_id = self._topic_id(conn, spec.name)
            conn.execute(
                "UPDATE topics SET partitions = ?, config = ? WHERE id = ?",
                (spec.partitions, json.dumps(spec.config.to_dict()), topic_id),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO partitions VALUES (?, ?, 0, 0, 0)",
                [(topic_id, p) for p in range(spec.partitions)],
            )

    @staticmethod
    def _topic_id(conn: sqlite3.Connection, name: str) -> int:
        row = conn.execute("SELECT id FROM topics WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise TopicNotFoundError(name)
        return int(row[0])

    # -- appends: the writer thread ------------------------------------------------------

    def submit(self, batches: Sequence[ProduceBatch]) -> Future[list[AppendResult]]:
        """Queue batches for the writer; the future completes after the commit."""
        item = _Append(batches)
        with self._wake:
            if self._closing:
                raise StoreError(f"the store {self.path} is closed")
            self._queue.append(item)
            self._wake.notify()
        return item.future

    def _write_forever(self) -> None:
        conn = self._conn()
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
                group: list[_Append] = []
                size = 0
                while self._queue and size < MAX_GROUP_BYTES:
                    item = self._queue.popleft()
                    group.append(item)
                    size += sum(len(b.batch.data) for b in item.batches)
            self._write_group(conn, group)

    def _checkpoint_forever(self) -> None:
        conn = self._conn()
        while True:
            self._checkpoint_due.wait(CHECKPOINT_INTERVAL_S)
            self._checkpoint_due.clear()
            closing = self._closing
            if self._unchecked_bytes or closing:
                self._unchecked_bytes = 0
                mode = "TRUNCATE" if closing else "PASSIVE"
                with contextlib.suppress(sqlite3.Error):  # busy: the next round catches up
                    conn.execute(f"PRAGMA wal_checkpoint({mode})")
            if closing:
                return

    def _write_group(self, conn: sqlite3.Connection, group: list[_Append]) -> None:
        results: list[tuple[_Append, list[AppendResult] | BaseException]] = []
        try:
            with self._transaction(conn, "append records"):
                topics: dict[str, tuple[int, int]] = {}
                ends: dict[tuple[int, int], list[int]] = {}
                rows: list[tuple[int, int, int, int, int, int, int, bytes]] = []
                now = now_ms()
                for item in group:
                    try:
                        done = self._place(conn, item.batches, topics, ends, rows, now=now)
                    except sqlite3.Error:
                        raise  # the store's own failure: the whole group's
                    except Exception as e:  # one request's bad batch fails only that request
                        results.append((item, _append_error(e, self.path)))
                    else:
                        results.append((item, done))
                conn.executemany(
                    "INSERT INTO batches (topic_id, partition, base_offset, last_offset, "
                    "max_timestamp, size, appended_ms, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                conn.executemany(
                    "UPDATE partitions SET end_offset = ?, size_bytes = size_bytes + ? "
                    "WHERE topic_id = ? AND partition = ?",
                    [(end, added, tid, p) for (tid, p), (end, added) in ends.items()],
                )
        except BaseException as e:
            error = (
                e if isinstance(e, StoreError) else StoreError(f"append to {self.path} failed: {e}")
            )
            for item in group:
                item.future.set_exception(error)
            return
        self._unchecked_bytes += sum(len(row[-1]) for row in rows)
        if self._unchecked_bytes >= CHECKPOINT_BYTES:
            self._checkpoint_due.set()
        self._changed(
            [
                Appended(
                    r.topic,
                    r.partition,
                    r.base_offset,
                    b.batch.data,
                    r.base_offset + b.batch.records,
                )
                for item, outcome in results
                if not isinstance(outcome, BaseException)
                for b, r in zip(item.batches, outcome, strict=True)
            ]
        )
        for item, outcome in results:
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                item.future.set_result(outcome)
        self._notifier.notify()

    def _place(
        self,
        conn: sqlite3.Connection,
        batches: Sequence[ProduceBatch],
        topics: dict[str, tuple[int, int]],
        ends: dict[tuple[int, int], list[int]],
        rows: list[tuple[int, int, int, int, int, int, int, bytes]],
        *,
        now: int,
    ) -> list[AppendResult]:
        """Assign offsets to one request's batches (all or none of them), appended at `now`."""
        # Everything that can fail is read and checked before `ends` and `rows` change.
        planned: list[tuple[tuple[int, int], EncodedBatch]] = []
        fresh: dict[tuple[int, int], list[int]] = {}
        for topic, partition, batch in batches:
            if topic not in topics:
                row = conn.execute(
                    "SELECT id, partitions FROM topics WHERE name = ?", (topic,)
                ).fetchone()
                if row is None:
                    raise TopicNotFoundError(topic)
                topics[topic] = (row[0], row[1])
            topic_id, count = topics[topic]
            if type(partition) is not int or not 0 <= partition < count:
                raise PartitionNotFoundError(topic, partition, count)
            key = (topic_id, partition)
            if key not in ends and key not in fresh:
                (end,) = conn.execute(
                    "SELECT end_offset FROM partitions WHERE topic_id = ? AND partition = ?", key
                ).fetchone()
                fresh[key] = [end, 0]
            planned.append((key, batch))
        ends.update(fresh)
        out: list[AppendResult] = []
        for (key, batch), (topic, partition, _) in zip(planned, batches, strict=True):
            state = ends[key]
            base = state[0]
            rows.append(
                (
                    key[0],
                    key[1],
                    base,
                    base + batch.last_delta,
                    batch.max_timestamp,
                    len(batch.data),
                    now,
                    batch.data,
                )
            )
            state[0] = base + batch.records
            state[1] += len(batch.data)
            out.append(AppendResult(topic, partition, base))
        return out

    def _changed(self, appended: Sequence[Appended]) -> None:
        for listener in self._listeners:
            listener(appended)

    def add_listener(self, callback: Callable[[Sequence[Appended]], None]) -> None:
        """Called after local commits and on notifications from other processes."""
        self._listeners.append(callback)

    # -- reads ---------------------------------------------------------------------------

    def read(self, topic: str, partition: int, offset: int, max_bytes: int) -> list[StoredBatch]:
        """Batches from `offset`, up to max_bytes (at least one)."""
        conn = self._conn()
        # Sizes first, from the rows alone: a blob that will not fit is never read.
        cur = conn.execute(
            f"SELECT last_offset, size FROM batches WHERE topic_id = {_TOPIC_ID} "
            "AND partition = ? AND last_offset >= ? ORDER BY last_offset",
            (topic, partition, offset),
        )
        last = None
        total = 0
        for last_offset, size in cur:
            if last is not None and total + size > max_bytes:
                break
            last = last_offset
            total += size
        cur.close()
        if last is None:
            return []
        rows = conn.execute(
            f"SELECT base_offset, data FROM batches WHERE topic_id = {_TOPIC_ID} "
            "AND partition = ? AND last_offset BETWEEN ? AND ? ORDER BY last_offset",
            (topic, partition, offset, last),
        ).fetchall()
        return [StoredBatch(base, data) for base, data in rows]

    def partition_states(self, topic: str) -> list[PartitionState]:
        """Start, end and size of each partition."""
        rows = (
            self._conn()
            .execute(
                "SELECT partition, start_offset, end_offset, size_bytes FROM partitions "
                f"WHERE topic_id = {_TOPIC_ID} ORDER BY partition",
                (topic,),
            )
            .fetchall()
        )
        if not rows:
            raise TopicNotFoundError(topic)
        return [PartitionState(*row) for row in rows]

    def first_batch_at(self, topic: str, partition: int, timestamp: int) -> StoredBatch | None:
        """The first batch reaching `timestamp`."""
        row = (
            self._conn()
            .execute(
                f"SELECT base_offset, data FROM batches WHERE topic_id = {_TOPIC_ID} "
                "AND partition = ? AND max_timestamp >= ? ORDER BY last_offset LIMIT 1",
                (topic, partition, timestamp),
            )
            .fetchone()
        )
        return StoredBatch(*row) if row else None

    def batch_index(self, topic: str, partition: int) -> list[BatchMeta]:
        """Every batch of a partition, oldest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT base_offset, last_offset, max_timestamp, size, appended_ms FROM batches "
                f"WHERE topic_id = {_TOPIC_ID} AND partition = ? ORDER BY last_offset",
                (topic, partition),
            )
            .fetchall()
        )
        return [BatchMeta(*row) for row in rows]

    # -- cleaning ------------------------------------------------------------------------

    def truncate_before(self, topic: str, partition: int, offset: int) -> None:
        """Delete whole batches before `offset`; the log start moves there."""
        with self._transaction() as conn:
            topic_id = self._topic_id(conn, topic)
            (freed,) = conn.execute(
                "SELECT coalesce(sum(size), 0) FROM batches WHERE topic_id = ? AND partition = ? "
                "AND last_offset < ?",
                (topic_id, partition, offset),
            ).fetchone()
            conn.execute(
                "DELETE FROM batches WHERE topic_id = ? AND partition = ? AND last_offset < ?",
                (topic_id, partition, offset),
            )
            conn.execute(
                "UPDATE partitions SET start_offset = max(start_offset, ?), "
                "size_bytes = size_bytes - ? WHERE topic_id = ? AND partition = ?",
                (offset, freed, topic_id, partition),
            )

    def replace_batches(
        self,
        topic: str,
        partition: int,
        replaced: Sequence[int],
        batches: Sequence[tuple[int, EncodedBatch]],
    ) -> None:
        """Swap compacted batches in one transaction, only those still stored.

        Retention (of any process) may have deleted a batch since compaction read it; its
        rewrite is then dropped, so nothing below the log start is ever stored again.
        """
        rewrites = dict(batches)
        with self._transaction() as conn:
            topic_id = self._topic_id(conn, topic)
            row = conn.execute(
                "SELECT start_offset FROM partitions WHERE topic_id = ? AND partition = ?",
                (topic_id, partition),
            ).fetchone()
            if row is None:
                return
            (start,) = row
            rows = []
            for base in replaced:
                deleted = conn.execute(
                    "DELETE FROM batches WHERE topic_id = ? AND partition = ? AND base_offset = ? "
                    "RETURNING appended_ms",
                    (topic_id, partition, base),
                ).fetchone()
                b = rewrites.get(base)
                if deleted and b is not None and base + b.last_delta >= start:
                    rows.append(
                        (
                            topic_id,
                            partition,
                            base,
                            base + b.last_delta,
                            b.max_timestamp,
                            len(b.data),
                            deleted[0],
                            b.data,
                        )
                    )
            conn.executemany(
                "INSERT INTO batches (topic_id, partition, base_offset, last_offset, "
                "max_timestamp, size, appended_ms, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "UPDATE partitions SET size_bytes = (SELECT coalesce(sum(size), 0) FROM batches "
                "WHERE topic_id = ? AND partition = ?) WHERE topic_id = ? AND partition = ?",
                (topic_id, partition, topic_id, partition),
            )

    # -- groups --------------------------------------------------------------------------

    def update_group(self, group: str, change: Callable[[GroupState], T], durable: bool) -> T:
        """Read-modify-write a group's state in one write transaction."""
        with self._state_transaction(durable) as conn:
            row = conn.execute("SELECT state FROM groups WHERE name = ?", (group,)).fetchone()
            state = GroupState.from_json(row[0]) if row else GroupState()
            result = change(state)
            if state.forgotten:
                conn.execute("DELETE FROM groups WHERE name = ?", (group,))
            else:
                conn.execute(
                    "INSERT OR REPLACE INTO groups VALUES (?, ?)", (group, state.to_json())
                )
        return result

    def update_share(
        self, group: str, topic: str, partition: int, change: Callable[[ShareState], T]
    ) -> T:
        """Read-modify-write a share window in one write transaction."""
        key = (group, topic, partition)
        # Not durable: a change lost to a power cut only hands records out again.
        with self._state_transaction(durable=False) as conn:
            row = conn.execute(
                "SELECT state FROM shares WHERE name = ? AND topic = ? AND partition = ?", key
            ).fetchone()
            state = ShareState.from_json(row[0]) if row else ShareState()
            result = change(state)
            conn.execute(
                "INSERT OR REPLACE INTO shares VALUES (?, ?, ?, ?)", (*key, state.to_json())
            )
        return result

    @contextmanager
    def _state_transaction(self, durable: bool) -> Iterator[sqlite3.Connection]:
        """A write transaction on this thread's connection, fsynced only when `durable`."""
        conn = self._conn()
        conn.execute(f"PRAGMA synchronous = {self._sync if durable else 'NORMAL'}")
        try:
            with self._transaction(conn):
                yield conn
        finally:
            conn.execute(f"PRAGMA synchronous = {self._sync}")

    def read_shares(self, group: str) -> dict[tuple[str, int], ShareState]:
        """A share group's windows."""
        rows = self._conn().execute(
            "SELECT topic, partition, state FROM shares WHERE name = ?", (group,)
        )
        return {(t, p): ShareState.from_json(raw) for t, p, raw in rows}

    def share_groups(self) -> list[str]:
        """Every share group with state."""
        rows = self._conn().execute("SELECT DISTINCT name FROM shares ORDER BY name")
        return [r[0] for r in rows]

    def delete_share_group(self, group: str) -> None:
        """Remove a share group's state."""
        with self._transaction() as conn:
            conn.execute("DELETE FROM shares WHERE name = ?", (group,))

    def read_group(self, group: str) -> GroupState | None:
        """A group's state."""
        row = self._conn().execute("SELECT state FROM groups WHERE name = ?", (group,)).fetchone()
        return GroupState.from_json(row[0]) if row else None

    def groups(self) -> list[str]:
        """Every group with state."""
        return [r[0] for r in self._conn().execute("SELECT name FROM groups ORDER BY name")]


def _access(path: Path) -> tuple[bool, bool]:
    """Whether the store at `path` is read-only, and whether it is on a read-only mount."""
    if os.statvfs(path.parent).f_flag & os.ST_RDONLY:
        return True, not path.with_name(path.name + "-wal").exists()
    writable = os.access(path.parent, os.W_OK) and (not path.exists() or os.access(path, os.W_OK))
    return not writable, False


def _append_error(error: BaseException, path: object) -> BaseException:
    """What an append's caller is told: a tidings error as it is, else a StoreError."""
    if isinstance(error, TidingsError):
        return error
    return StoreError(f"append to {path} failed: {error}")


def _spec(name: str, partitions: int, config: str) -> TopicSpec:
    return TopicSpec(name, partitions, TopicConfig(**json.loads(config)))


def _has_append_times(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "appended_ms" for row in conn.execute("PRAGMA table_info(batches)"))
