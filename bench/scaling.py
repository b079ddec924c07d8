"""Scaling: tidings on sqlite:// as partitions, producers and consumers grow, and as the
stored log grows.

- partitions: one producer sends every record to a topic of 1, 2, 4, 8 partitions
  (producer.send() in a loop, then flush()), then one group consumer reads them all;
- producers: 1, 2, 4, 8 threads each calling bus.publish() (durable on return) on one
  bus: their commits are grouped, so the rate should grow with them;
- consumers: 1, 2, 4, 8 consumer processes of one queue draining one backlog together
  (receive + ack; bench/queue.py's processes run);
- the stored log: one topic grown step by step; at each size, the rate of appending
  `probe` more records, of reading the newest `read_probe` records (assign + seek), and
  of a new share group taking + acking the first `probe` jobs. The cost must stay flat: each
  rate is reported as a share of the smallest log's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tidings
from bench import log, queue
from bench.report import Figure, series, with_latency
from bench.stats import value
from tidings.core.records import TopicPartition

DURABILITY = "sqlite WAL, fsync per commit"
TOPIC = log.TOPIC  # the topic log.send_loop() sends to
CHUNK = 100_000
"""Records per publish_many() growing the stored log."""


@dataclass(frozen=True)
class Sizes:
    """How much each scaling figure moves."""

    steps: tuple[int, ...] = (1, 2, 4, 8)
    """partitions, producer threads, consumer processes."""
    records: int = 200_000
    """records produced and consumed per partitions run."""
    per_thread: int = 500
    """bus.publish() calls per producer thread."""
    jobs: int = 100_000
    """jobs the consumer processes drain together."""
    stored: tuple[int, ...] = (1_000_000, 3_000_000, 10_000_000)
    """the stored log's sizes, in records."""
    probe: int = 50_000
    """records appended and taken at each size."""
    read_probe: int = 500_000
    """the newest records read at each size: a read of `probe` records lasts about 20 ms,
    too short to time steadily."""
    repeat: int = 3

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(
            records=10_000,
            per_thread=50,
            jobs=5_000,
            stored=(20_000, 100_000),
            probe=5_000,
            read_probe=10_000,
            repeat=1,
        )


def _store(directory: Path, name: str) -> str:
    path = directory / f"{name}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return f"sqlite://{path}"


def _figure(scenario: str, variant: str, runs: list[float], how: str) -> Figure:
    return Figure(
        scenario,
        variant,
        "tidings embedded",
        "tidings",
        DURABILITY,
        rate=statistics.median(runs),
        runs=runs,
        how=how,
    )


def partitions(directory: Path, steps: tuple[int, ...], records: int, repeat: int) -> list[Figure]:
    """Produce then consume `records` records on topics of each number of partitions."""
    produced: list[Figure] = []
    consumed: list[Figure] = []
    for n in steps:
        sends, reads = [], []
        for i in range(repeat):
            with tidings.connect(_store(directory, f"partitions-{n}-{i}")) as bus:
                bus.create_topic(TOPIC, n)
                sends.append(log.send_loop(bus, records))
                reads.append(log.consume(bus, TOPIC, records, "readers"))
        how = f"{records:,} records, producer.send() + flush(), then one group consumer"
        produced.append(_figure("6. scaling: partitions, produce", str(n), sends, how))
        consumed.append(_figure("6. scaling: partitions, consume", str(n), reads, how))
    return series(produced) + series(consumed)


def producers(
    directory: Path, steps: tuple[int, ...], per_thread: int, repeat: int
) -> list[Figure]:
    """Threads publishing one durable record per call on one bus, for each count."""
    out = []
    for n in steps:
        runs = []
        for i in range(repeat):
            with tidings.connect(_store(directory, f"producers-{n}-{i}")) as bus:
                bus.create_topic(log.TOPIC)
                bus.publish(log.TOPIC, value())  # warm up the shared producer
                runs.append(log.publish_threads(bus, n, per_thread))
        how = f"{per_thread:,} bus.publish() per thread, each durable on return"
        f = _figure("6. scaling: producer threads", str(n), [r.rate for r in runs], how)
        out.append(with_latency(f, runs))
    return series(out)


def consumers(directory: Path, steps: tuple[int, ...], jobs: int, repeat: int) -> list[Figure]:
    """Consumer processes of one queue draining `jobs` jobs together, for each count."""
    out = []
    for n in steps:
        runs = [
            queue.processes_run(directory / f"consumers-{n}-{i}.db", jobs, n).rate
            for i in range(repeat)
        ]
        how = f"{jobs:,} jobs, receive({queue.RECEIVE}) + ack() in each process"
        out.append(_figure("6. scaling: queue consumer processes", str(n), runs, how))
    return series(out)


def _read_newest(bus: tidings.Bus, stored: int, records: int) -> float:
    """records/s reading the newest `records` of `stored` from an assigned partition."""
    consumer = bus.consumer()
    try:
        start = time.perf_counter()
        tp = TopicPartition(TOPIC, 0)
        consumer.assign(tp)
        consumer.seek(tp, stored - records)
        seen = 0
        while seen < records:
            batch = consumer.poll(max_records=10_000, timeout_ms=1000)
            if not batch:
                raise RuntimeError(f"read {seen:,} of the newest {records:,} records")
            seen += len(batch)
        return records / (time.perf_counter() - start)
    finally:
        consumer.close()


def _take_front(bus: tidings.Bus, group: str, jobs: int) -> float:
    """records/s of a new share group taking + acking the first `jobs` jobs."""
    q = bus.queue(TOPIC, group=group)
    try:
        return jobs / queue.drain(q, jobs)
    finally:
        q.close()


def stored_log(
    directory: Path, sizes: tuple[int, ...], probe: int, read_probe: int, repeat: int
) -> list[Figure]:
    """Append, read and take rates at each size of one growing log."""
    figures: dict[str, list[Figure]] = {"append": [], "read": [], "take": []}
    with tidings.connect(_store(directory, "stored-log")) as bus:
        bus.create_topic(TOPIC)
        stored = 0
        chunk = [value()] * CHUNK
        for size in sizes:
            while stored < size:
                step = min(CHUNK, size - stored)
                bus.publish_many(TOPIC, chunk[:step])
                stored += step
            appends, reads, takes = [], [], []
            for i in range(repeat):
                appends.append(log.send_loop(bus, probe))
                stored += probe
                reads.append(_read_newest(bus, stored, read_probe))
                takes.append(_take_front(bus, f"front-{size}-{i}", probe))
            variant = f"{size:,} stored"
            measured: dict[str, tuple[list[float], str]] = {
                "append": (appends, f"producer.send() + flush() of {probe:,} more records"),
                "read": (reads, f"assign + seek, poll the newest {read_probe:,} records"),
                "take": (takes, f"a new share group takes + acks the first {probe:,} jobs"),
            }
            for key, (runs, how) in measured.items():
                figures[key].append(_figure(f"6. stored log: {key}", variant, runs, how))
    return [f for key in figures for f in series(figures[key], "of smallest")]


def measure(directory: Path, sizes: Sizes) -> list[Figure]:
    """Every scaling figure."""
    directory.mkdir(parents=True, exist_ok=True)
    s = sizes
    parts: list[Callable[[], list[Figure]]] = [
        lambda: partitions(directory, s.steps, s.records, s.repeat),
        lambda: producers(directory, s.steps, s.per_thread, s.repeat),
        lambda: consumers(directory, s.steps, s.jobs, s.repeat),
        lambda: stored_log(directory, s.stored, s.probe, s.read_probe, s.repeat),
    ]
    return [f for part in parts for f in part()]
