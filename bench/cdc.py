"""Change data capture end to end, a database commit -> its record on a tidings topic.

Both sources in one run, each relaying to a bus of its own on sqlite:// (default
durability: WAL, fsync on every commit) with the async API:

- SQLite: `tidings.cdc.sqlite` (capture triggers, `SqliteSource.run`) on a database file in
  WAL mode, synchronous=FULL (an fsync on every commit);
- PostgreSQL: `tidings.cdc.postgres` (logical replication, pgoutput, `PostgresSource.run`)
  on a server started for the run from the machine's binaries (bench/postgres_server.py)
  with its default durability, fsync=on and synchronous_commit=on.

Per source, with the relay running (and warmed up: a row committed and seen on its topic):

The application's writes come from a process of their own, as they would in production
(one in the same process would share the GIL with the relay and slow both).

- bulk: the writer inserts `rows` rows (an integer key and 100 bytes of text) in
  transactions of `per_commit` rows; the time runs from the start of the first
  transaction until a reader of the topic (from its first record) holds the last row's
  record, and every row must be there (distinct keys == rows) or the run fails. Beside it,
  the same inserts into a table nobody captures, before the relay starts: the database's
  own rate;
- latency: the writer commits single-row inserts at `rate` per second; a subscriber
  (`bus.subscribe(topic)`) notes when each row's record arrives. A row cannot carry a
  time taken after its own commit returned, so the writer keeps that time (time.time_ns(),
  one clock for both processes) per row id and hands the lot back at the end; the
  record's key names the row: latency = arrival - commit returned.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import sqlite3
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import psycopg

import tidings
from bench import postgres_server
from bench.stats import VALUE_SIZE, Latency
from tidings.cdc import sqlite as cdc_sqlite
from tidings.cdc.postgres import PostgresSource
from tidings.cdc.sqlite import SqliteSource

T = TypeVar("T")

BUS_DURABILITY = "sqlite WAL, fsync per commit"
PAYLOAD = "p" * VALUE_SIZE
BULK, PINGS, PLAIN = "bulk", "pings", "plain"
"""The captured tables (bulk inserts, latency pings) and one nobody captures."""
STALL_S = 30.0
"""A run fails once nothing has moved for this long (no row relayed, none seen)."""

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit, ratio, target, met: bench/__main__.py's columns."""


@dataclass(frozen=True)
class Sizes:
    """How much each measurement moves."""

    rows: int = 100_000
    """rows inserted in the bulk run."""
    per_commit: int = 1_000
    """rows per transaction in the bulk run."""
    rate: int = 200
    """single-row commits per second in the latency run."""
    seconds: float = 3.0
    """length of the latency run."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(rows=2_000, seconds=0.5)

    @property
    def pings(self) -> int:
        """Single-row commits in the latency run."""
        return max(1, round(self.rate * self.seconds))


@dataclass(frozen=True)
class Bulk:
    """One bulk run: every row inserted, then relayed."""

    rows: int
    seconds: float
    """start of the first transaction -> the last row's record held by the reader."""
    commit_seconds: float
    """start of the first transaction -> the last commit returned."""
    records: int
    """records read from the topic (more than rows if some were relayed twice)."""
    uncaptured: float
    """rows/s of the same inserts into a table nobody captures."""

    @property
    def rate(self) -> float:
        """Rows per second, commit to topic."""
        return self.rows / self.seconds


@dataclass(frozen=True)
class SourceResults:
    """One source database's figures."""

    database: str
    version: str
    durability: str
    bulk: Bulk
    latency: Latency
    """commit returned -> record at the subscriber, per row; rate: commits per second."""
    commit: Latency
    """the single-row commits themselves (commit() call to its return)."""


@dataclass(frozen=True)
class CdcResults:
    """The CDC section of the benchmark."""

    sizes: Sizes
    sources: list[SourceResults]
    notes: list[str] = field(default_factory=list)


# -- the source databases ---------------------------------------------------------------

CREATE = "CREATE TABLE {} (id BIGINT PRIMARY KEY, payload TEXT NOT NULL)"
SYNCHRONOUS = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


@dataclass(frozen=True)
class Writer:
    """How the writer process reaches a source database (it is sent there, pickled)."""

    driver: str
    """sqlite or postgres."""
    target: str
    """The database file, or the DSN."""

    def connect(self) -> Any:
        """A new DB-API connection, not in autocommit: commit() ends each transaction."""
        if self.driver == "postgres":
            return psycopg.connect(self.target)
        conn = sqlite3.connect(self.target)
        conn.execute("PRAGMA synchronous = FULL")
        return conn

    def insert(self, table: str) -> str:
        """The statement inserting one (id, payload) row into `table`."""
        mark = "%s" if self.driver == "postgres" else "?"
        return f"INSERT INTO {table} (id, payload) VALUES ({mark}, {mark})"


@dataclass(frozen=True)
class Database:
    """A source database: its writer, its relay and its topics."""

    name: str
    version: str
    durability: str
    writer: Writer
    relay: SqliteSource | PostgresSource
    topic: Callable[[str], str]
    """A captured table's topic."""


def sqlite_database(path: Path) -> Database:
    """A new SQLite database in WAL mode, its tables created, BULK and PINGS captured."""
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        for table in (BULK, PINGS, PLAIN):
            conn.execute(CREATE.format(table))
    cdc_sqlite.add(path, [BULK, PINGS])
    writer = Writer("sqlite", str(path))
    with closing(writer.connect()) as conn:
        (journal,) = conn.execute("PRAGMA journal_mode").fetchone()
        (sync,) = conn.execute("PRAGMA synchronous").fetchone()
    source = SqliteSource(path)
    return Database(
        "sqlite",
        f"SQLite {sqlite3.sqlite_version}",
        f"journal_mode={journal}, synchronous={SYNCHRONOUS.get(sync, sync)}",
        writer,
        source,
        source.topic_of,
    )


def postgres_database(server: postgres_server.Postgres) -> Database:
    """A new database on `server`, its tables created, BULK and PINGS captured."""
    with psycopg.connect(server.dsn(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE bench")
    dsn = server.dsn("bench")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in (BULK, PINGS, PLAIN):
            conn.execute(CREATE.format(table))
        settings = {}
        for name in ("server_version", "wal_level", "fsync", "synchronous_commit"):
            row = conn.execute(f"SHOW {name}").fetchone()
            assert row is not None
            settings[name] = row[0]
    source = PostgresSource(dsn, [BULK, PINGS], prefix="bench")
    return Database(
        "postgres",
        f"PostgreSQL {settings.pop('server_version')}",
        ", ".join(f"{k}={v}" for k, v in settings.items()),
        Writer("postgres", dsn),
        source,
        partial(source.topic_of, "public"),
    )


# -- the writer (blocking, in its own process) -------------------------------------------


def insert_rows(writer: Writer, table: str, rows: int, per_commit: int) -> tuple[int, int]:
    """Insert rows 0..rows-1 in transactions of `per_commit`; time.time_ns() at the start
    of the first transaction and as the last commit returned."""
    with closing(writer.connect()) as conn:
        cursor = conn.cursor()
        statement = writer.insert(table)
        start = time.time_ns()
        for first in range(0, rows, per_commit):
            cursor.executemany(
                statement, [(i, PAYLOAD) for i in range(first, min(rows, first + per_commit))]
            )
            conn.commit()
        return start, time.time_ns()


def commit_pings(writer: Writer, ids: range, rate: float) -> tuple[dict[int, int], list[float]]:
    """Commit one row per id at `rate` per second; time.time_ns() as each commit returned,
    by id, and the seconds each commit() call took."""
    with closing(writer.connect()) as conn:
        cursor = conn.cursor()
        statement = writer.insert(PINGS)
        committed, commits = {}, []
        start = time.perf_counter()
        for n, i in enumerate(ids):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            cursor.execute(statement, (i, PAYLOAD))
            began = time.perf_counter()
            conn.commit()
            committed[i] = time.time_ns()
            commits.append(time.perf_counter() - began)
        return committed, commits


# -- the readers and the waiting (on the bus's loop) -------------------------------------


async def arrivals(consumer: tidings.AsyncConsumer, seen: dict[int, int], want: int) -> int:
    """Note time.time_ns() at the first arrival of each row id until `want` ids >= 0 came
    (warm-up rows have ids < 0); the records read, duplicates included."""
    records = wanted = 0
    async for record in consumer:
        now = time.time_ns()
        records += 1
        assert record.key is not None
        i = int(json.loads(record.key)["id"])
        if i not in seen:
            seen[i] = now
            wanted += i >= 0
            if wanted == want:
                break
    return records


async def until(
    what: Awaitable[T], relay: asyncio.Task[None], progress: Callable[[], int], doing: str
) -> T:
    """`await what`; fail at once if the relay stops, or once `progress()` (a count that
    grows while things move) stood still for STALL_S."""
    task = asyncio.ensure_future(what)
    try:
        while True:
            before = progress()
            done, _ = await asyncio.wait(
                {task, relay}, timeout=STALL_S, return_when=asyncio.FIRST_COMPLETED
            )
            if task in done:
                return task.result()
            if relay in done:
                relay.result()  # raises what stopped it
                raise RuntimeError(f"the relay stopped while {doing}")
            if progress() == before:
                raise RuntimeError(f"{doing}: stuck at {before:,} for {STALL_S:g} s")
    finally:
        task.cancel()


# -- one source ---------------------------------------------------------------------------


async def write(process: Executor, db: Database, function: Callable[..., T], *args: Any) -> T:
    """`function(db.writer, *args)` in the writer process."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(process, function, db.writer, *args)


@dataclass
class Run:
    """One source's relay to its bus while the writer process writes."""

    db: Database
    sizes: Sizes
    process: Executor
    """The writer process."""
    bus: tidings.AsyncBus
    relay: asyncio.Task[None]

    async def warm(self, pings: dict[int, int]) -> None:
        """Commit warm-up pings (ids < 0) until one reached the subscriber: the relay is live."""
        i = -1
        while not any(k < 0 for k in pings):
            await write(self.process, self.db, commit_pings, range(i, i + 1), 1)
            i -= 1
            await asyncio.sleep(0.05)

    async def bulk(self, uncaptured: float) -> Bulk:
        """Insert every row; a reader from the topic's first record checks they all came."""
        rows = self.sizes.rows
        reader = self.bus.consumer()
        partition = tidings.TopicPartition(self.db.topic(BULK), 0)
        await reader.assign(partition)
        await reader.seek(partition, "earliest")
        seen: dict[int, int] = {}
        reading = asyncio.create_task(arrivals(reader, seen, rows))
        start, last_commit = await write(
            self.process, self.db, insert_rows, BULK, rows, self.sizes.per_commit
        )
        try:
            records = await until(reading, self.relay, lambda: len(seen), f"relaying {rows:,}")
        except RuntimeError as e:
            raise RuntimeError(
                f"{self.db.name}: {len(seen):,} of {rows:,} rows reached the topic: {e}"
            ) from e
        finally:
            await reader.close()
        if len(seen) != rows:  # distinct keys on the topic
            raise RuntimeError(f"{self.db.name}: {len(seen):,} of {rows:,} rows captured")
        return Bulk(
            rows,
            (max(seen.values()) - start) / 1e9,
            (last_commit - start) / 1e9,
            records,
            uncaptured,
        )

    async def latency(
        self, pings: dict[int, int], reader: asyncio.Task[int]
    ) -> tuple[Latency, Latency]:
        """Commit pings at the rate; (commit returned -> subscriber, the commits alone)."""
        count, rate = self.sizes.pings, self.sizes.rate
        started = time.perf_counter()
        committed, commits = await write(self.process, self.db, commit_pings, range(count), rate)
        elapsed = time.perf_counter() - started
        await until(reader, self.relay, lambda: len(pings), "waiting for every ping")
        samples = [(pings[i] - committed[i]) / 1e9 for i in range(count)]
        return Latency.of(samples, elapsed), Latency.of(commits, elapsed)


async def measure_source(
    db: Database, bus_url: str, sizes: Sizes, process: Executor
) -> SourceResults:
    """Bulk, then latency, with one relay from `db` to a new bus at `bus_url`."""
    start, last = await write(process, db, insert_rows, PLAIN, sizes.rows, sizes.per_commit)
    uncaptured = sizes.rows / ((last - start) / 1e9)
    bus = await tidings.connect_async(bus_url)
    stop = asyncio.Event()
    try:
        for table in (BULK, PINGS):
            await bus.create_topic(db.topic(table), exist_ok=True)
        run = Run(db, sizes, process, bus, asyncio.create_task(db.relay.run(bus, stop)))
        try:
            subscriber = bus.subscribe(db.topic(PINGS))
            pings: dict[int, int] = {}
            reader = asyncio.create_task(arrivals(subscriber, pings, sizes.pings))
            await until(run.warm(pings), run.relay, lambda: len(pings), "warming up")
            bulk = await run.bulk(uncaptured)
            latency, commit = await run.latency(pings, reader)
            await subscriber.close()
        finally:
            stop.set()
            await asyncio.gather(run.relay, return_exceptions=True)
    finally:
        await bus.close()
    return SourceResults(db.name, db.version, db.durability, bulk, latency, commit)


# -- everything ---------------------------------------------------------------------------


async def _measure(directory: Path, sizes: Sizes) -> list[SourceResults]:
    spawn = multiprocessing.get_context("spawn")  # no fork of a process running threads
    with ProcessPoolExecutor(1, mp_context=spawn) as process:
        out = [
            await measure_source(
                sqlite_database(directory / "source.db"), _bus(directory, "sqlite"), sizes, process
            )
        ]
        server = await asyncio.to_thread(postgres_server.start, fsync=True)
        try:
            db = await asyncio.to_thread(postgres_database, server)
            out.append(await measure_source(db, _bus(directory, "postgres"), sizes, process))
        finally:
            await asyncio.to_thread(postgres_server.stop, server)
    return out


def _bus(directory: Path, name: str) -> str:
    return f"sqlite://{directory / name}-bus.db"


def measure(directory: Path, sizes: Sizes) -> CdcResults:
    """Both sources, one after the other, each with its own relay and bus."""
    directory.mkdir(parents=True, exist_ok=True)
    sources = asyncio.run(_measure(directory, sizes))
    notes = [
        f"{s.database}: {s.version}, {s.durability}; the bus: {BUS_DURABILITY}; bulk: "
        f"{s.bulk.rows / s.bulk.commit_seconds:,.0f} rows/s committed with capture on, "
        f"the last record {s.bulk.seconds - s.bulk.commit_seconds:.2f} s after the last "
        f"commit, {s.bulk.records - s.bulk.rows:,} relayed twice; latency run: "
        f"{s.latency.rate:,.0f} commits/s"
        for s in sources
    ]
    return CdcResults(sizes, sources, notes)


# -- the table ----------------------------------------------------------------------------


def _ms(x: float) -> str:
    return f"{x * 1000:,.1f} ms"


def rows(r: CdcResults) -> list[Cells]:
    """The CDC section's table rows: bulk and latency per source."""
    out: list[Cells] = []
    for s in r.sources:
        b, lat, commit = s.bulk, s.latency, s.commit
        out.append(
            (
                f"cdc {s.database}: {b.rows:,} inserts, {r.sizes.per_commit:,} per commit -> topic",
                f"{b.rate:,.0f} rows/s",
                f"uncaptured inserts {b.uncaptured:,.0f} rows/s",
                f"{b.rate / b.uncaptured:.0%}",
                "every row on the topic",
                "yes",
            )
        )
        out.append(
            (
                f"cdc {s.database}: single-row commit -> subscriber, {r.sizes.rate:,}/s",
                f"p50 {_ms(lat.p50)}, p99 {_ms(lat.p99)}",
                f"commit p50 {_ms(commit.p50)}",
                f"p50 {lat.p50 / commit.p50:,.0f}x commit" if commit.p50 else "-",
                "-",
                "-",
            )
        )
    return out
