"""Scenarios the suite takes from the sections as they are, turned into its figures.

- 5. raw limits: bench/raw.py (file append + fsync, sqlite3 inserts and reads, commit and
  fsync latency) at every value size of the log scenario, and bench/queue.py's floor;
- 4. event store: bench/es.py, the tidings event store beside the eventsourcing library;
- 7. change data capture: bench/cdc.py, SQLite and PostgreSQL into tidings (no peer);
- 8. engine overhead: bench/engines.py, tidings on kafka:// and nats:// beside the bare
  confluent-kafka and nats-py clients doing the same work.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench import cdc, engines, es, queue, raw
from bench.plan import Limits, Sizes, size_label
from bench.report import Figure, Role, with_latency

# -- 5. raw limits ------------------------------------------------------------------------

RAW = "5. raw limits"


def _limit(variant: str, system: str, how: str, runs: list[float]) -> Figure:
    durable = "fsync" in system or "commit" in system or "insert" in system
    return Figure(
        RAW,
        variant,
        system,
        "limit",
        "fsync per write" if durable else "-",
        rate=statistics.median(runs) if runs else None,
        runs=runs,
        how=how,
    )


def raw_limits(directory: Path, sizes: Sizes) -> tuple[Limits, list[Figure]]:
    """File append + fsync, sqlite3 insert and read, the queue floor, commit and fsync."""
    directory.mkdir(parents=True, exist_ok=True)
    write: dict[int, float] = {}
    read: dict[int, float] = {}
    figures = []
    repeat = range(sizes.repeat)
    for size, records in sizes.log:
        appends = [
            raw.file_append_fsync(directory / f"append-{size}-{i}.log", records, size)
            for i in repeat
        ]
        blob = directory / f"blob-{size}.db"
        inserts = [raw.sqlite_blob_insert(blob, records, size) for _ in repeat]
        reads = [raw.sqlite_read_decode(blob) for _ in repeat]
        write[size], read[size] = statistics.median(appends), statistics.median(reads)
        for system, how, runs in (
            ("file append + fsync", "a batch of 1000 records per write + fsync", appends),
            ("sqlite3 blob insert", "a blob of 1000 records per commit (WAL, FULL)", inserts),
            ("sqlite3 read + decode", "every stored blob decoded to records", reads),
        ):
            figures.append(_limit(size_label(size), system, how, runs))
    floor = [queue.raw_floor(directory / f"queue-{i}.db", sizes.jobs) for i in repeat]
    how = f"read + decode, 2 write txns per {queue.RECEIVE} records (synchronous=NORMAL)"
    figures.append(_limit("100 B", "sqlite3 queue floor", how, floor))
    commit = raw.sqlite_commit_latency(directory / "commit.db", sizes.raw_samples)
    fsync = raw.fsync_latency(directory / "fsync.bin", sizes.raw_samples)
    for system, lat in (("sqlite3 commit of one row", commit), ("write 100 KB + fsync", fsync)):
        figures.append(with_latency(_limit("one at a time", system, "", []), [lat]))
    return Limits(write, read, commit, statistics.median(floor)), figures


# -- 4. event store -----------------------------------------------------------------------

ES_FIGURES = (
    (es.ONE, "append 1 event per append"),
    (es.BATCHED, f"append {es.BATCH} events per append"),
    (es.CONCURRENT, "append, 4 writer threads"),
    (es.LOAD, "load an aggregate from its events"),
    (es.LOAD_SNAPSHOT, "load an aggregate from a snapshot"),
    (es.CATCH_UP, "catch-up in global order"),
)


def event_store(directory: Path, sizes: Sizes) -> list[Figure]:
    """Appends, loads and catch-up: the tidings event store beside eventsourcing."""
    results = es.measure(directory, sizes.es)
    probe = es.EventsourcingAccounts(directory / "probe.db")
    try:
        synchronous = {1: "NORMAL", 2: "FULL"}.get(probe.synchronous(), "OFF")
    finally:
        probe.close()
    libraries: dict[str, tuple[Role, str]] = {
        "tidings": ("tidings", "sqlite WAL, fsync per append"),
        "eventsourcing": (
            "peer",
            "sqlite WAL, " + ("fsync per save" if synchronous == "FULL" else "no fsync per save"),
        ),
    }
    s = sizes.es
    figures = []
    for key, variant in ES_FIGURES:
        loads = key in (es.LOAD, es.LOAD_SNAPSHOT)  # runs: seconds per load
        how = (
            f"a {s.aggregate:,}-event aggregate; records/s: events loaded"
            if loads
            else f"events/s; {s.appends:,} appends over {s.streams:,} streams, catch-up of "
            f"{s.catch_up:,}"
        )
        for library, (role, durability) in libraries.items():
            runs = results.runs[library][key]
            median = statistics.median(runs)
            figures.append(
                Figure(
                    "4. event store",
                    variant,
                    library,
                    role,
                    durability,
                    metric="latency" if loads else "rate",
                    rate=s.aggregate / median if loads else median,
                    p50=median if loads else None,
                    runs=runs,
                    how=how,
                )
            )
    return figures


# -- 7. change data capture ---------------------------------------------------------------


def change_data_capture(directory: Path, sizes: Sizes) -> list[Figure]:
    """Rows committed in SQLite and PostgreSQL, relayed to tidings topics."""
    results = cdc.measure(directory, sizes.cdc)
    s = sizes.cdc
    figures = []
    for source in results.sources:
        system = f"tidings cdc from {source.version.split()[0]}"  # SQLite, PostgreSQL
        figures.append(
            Figure(
                "7. change data capture",
                f"{s.per_commit:,} rows per commit",
                system,
                "tidings",
                f"fsync per commit; source {source.durability}",
                rate=source.bulk.rate,
                runs=[source.bulk.rate],
                how=f"{source.version}: {s.rows:,} rows, first commit -> the last row's "
                "record at a reader; raw limit: the same inserts, not captured",
                limit=source.bulk.uncaptured,
            )
        )
        figures.append(
            with_latency(
                Figure(
                    "7. change data capture",
                    "single-row commit -> subscriber",
                    system,
                    "tidings",
                    f"fsync per commit; source {source.durability}",
                    metric="latency",
                    how=f"{s.rate:,} commits/s for {s.seconds:g} s",
                ),
                [source.latency],
            )
        )
    return figures


# -- 8. engine overhead -------------------------------------------------------------------


def engine_overhead(directory: Path, sizes: Sizes) -> list[Figure]:
    """tidings on kafka:// (Tansu) and nats:// (JetStream) beside the bare clients."""
    r = engines.measure(directory, sizes.engines)
    kafka_how = f"{sizes.engines.kafka_records:,} records on Tansu"
    nats_how = f"{sizes.engines.nats_records:,} records on nats-server"
    figures = []
    for variant, pair, client, durability, how in (
        ("kafka:// produce", r.kafka_produce, "confluent-kafka", "memory only", kafka_how),
        ("kafka:// consume", r.kafka_consume, "confluent-kafka", "memory only", kafka_how),
        ("nats:// produce", r.nats_produce, "nats-py", "JetStream file storage", nats_how),
        ("nats:// consume", r.nats_consume, "nats-py", "JetStream file storage", nats_how),
    ):
        sides: tuple[tuple[str, Role, list[float]], ...] = (
            (f"tidings on {variant.split()[0]}", "tidings", pair.tidings),
            (f"{client} alone", "peer", pair.bare),
        )
        for system, role, runs in sides:
            figures.append(
                Figure(
                    "8. engine overhead",
                    variant,
                    system,
                    role,
                    durability,
                    rate=statistics.median(runs),
                    runs=runs,
                    how=how,
                )
            )
    return figures
