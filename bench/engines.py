"""The tidings API on the Kafka and NATS engines beside the bare clients, in one run.

Each engine's cost is what tidings adds on top of the client it is built on, so each
figure stands beside that client doing the same work in the same run, on the same broker:

- kafka:// on Tansu (in-memory storage, so the broker is not the limit), against
  confluent-kafka with the engine's own producer settings (idempotent, acks=all): a
  producer sends every record and flushes; a new consumer group (the engine's
  fetch.queue.backoff.ms) reads them all, reading each message's fields as an
  application does;
- nats:// on nats-server with JetStream (file storage), against nats-py: every record
  published with its acknowledgement awaited (publish_async, then all acks); a consumer
  reads them all (bare: a durable pull consumer acking each message; tidings: a consumer
  group, which commits an offset per poll as Kafka's do).

Who goes first alternates from run to run. Producing is timed from the first send to the
last acknowledgement, reading from the first record received to the last (the records that
came with the first are not counted).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import nats
from confluent_kafka import Consumer, Producer

import tidings
from bench import kafka as kafka_bench
from bench import nats_server
from bench.stats import Arrivals, value
from tidings.engines.kafka.consumer import FETCH_QUEUE_BACKOFF_MS

OVERHEAD_TARGET = 0.90
"""tidings must reach at least this share of the bare client's rate (under 10% overhead)."""
FETCH = 1000

Cells = tuple[str, str, str, str, str, str]
"""measurement, result, raw limit (here: the bare client), ratio, target, met."""


@dataclass(frozen=True)
class Sizes:
    """How much each run moves."""

    kafka_records: int = 500_000
    nats_records: int = 100_000
    repeat: int = 5

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny sizes: a smoke test, not a figure."""
        return cls(kafka_records=5_000, nats_records=2_000, repeat=1)


@dataclass(frozen=True)
class Pair:
    """records/s of tidings and of the bare client doing the same work, per run."""

    tidings: list[float]
    bare: list[float]

    @property
    def ratio(self) -> float:
        """tidings' median as a share of the bare client's."""
        return statistics.median(self.tidings) / statistics.median(self.bare)

    def measure(self, run: int, bare: Callable[[], float], tidings: Callable[[], float]) -> None:
        """Measure both sides of run number `run`. Who goes first alternates from run to
        run, so neither always meets a broker the other has just warmed or filled."""
        if run % 2:
            self.tidings.append(tidings())
            self.bare.append(bare())
        else:
            self.bare.append(bare())
            self.tidings.append(tidings())


@dataclass(frozen=True)
class EngineResults:
    """The engines section of the benchmark."""

    kafka_produce: Pair
    kafka_consume: Pair
    nats_produce: Pair
    nats_consume: Pair
    notes: list[str] = field(default_factory=list)


# -- kafka:// -----------------------------------------------------------------------------


def bare_kafka_produce(bootstrap: str, topic: str, records: int) -> float:
    """records/s of confluent-kafka, set as the engine sets its producer."""
    failed: list[object] = []

    def delivered(err: object, _: object) -> None:
        if err is not None:
            failed.append(err)

    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "on_delivery": delivered,
        }
    )
    producer.list_topics(topic, timeout=30)
    send, poll = producer.produce, producer.poll
    v = value()
    start = time.perf_counter()
    for _ in range(records):
        while True:
            try:
                send(topic, v, partition=0)
                break
            except BufferError:
                poll(0.001)
        poll(0)
    left = producer.flush(kafka_bench.RUN_TIMEOUT_S)
    elapsed = time.perf_counter() - start
    if left or failed:
        raise RuntimeError(f"{left} records undelivered, {len(failed)} failed")
    return records / elapsed


def bare_kafka_consume(bootstrap: str, topic: str, records: int, group: str) -> float:
    """records/s of a new confluent-kafka consumer group reading every record's fields.

    Each message's topic, partition, offset, timestamp, key, value and headers are read, as
    an application reads them and as tidings does to give it a Record.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": kafka_bench.SESSION_TIMEOUT_MS,
            # the engine's own setting (librdkafka's default pauses fetching for 1 s)
            "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
        }
    )
    try:
        consumer.subscribe([topic])
        reading = Arrivals(records)
        while not reading.done:
            batch = consumer.consume(num_messages=FETCH, timeout=1.0)
            for m in batch:
                if m.error() is not None:
                    raise RuntimeError(f"consumer error: {m.error()}")
                (m.topic(), m.partition(), m.offset(), m.timestamp(), m.key(), m.value())
                m.headers()
            reading.got(len(batch))
        return reading.rate()
    finally:
        consumer.close()


def tidings_produce(url: str, topic: str, records: int) -> float:
    """records/s of a tidings producer sending every record, then flushing.

    A flush leaves errors on the futures, so each is checked once the clock has stopped,
    as the bare producer's delivery callback checks each report.
    """
    with tidings.connect(url) as bus:
        bus.create_topic(topic, exist_ok=True)
        v = value()
        with bus.producer() as producer:
            send = producer.send
            start = time.perf_counter()
            futures = [send(topic, v, partition=0) for _ in range(records)]
            producer.flush()
            elapsed = time.perf_counter() - start
        for future in futures:
            future.result(timeout=0)  # raises the error that stopped a record
        return records / elapsed


def tidings_consume(url: str, topic: str, records: int, group: str) -> float:
    """records/s of a new tidings consumer group reading every record."""
    with (
        tidings.connect(url) as bus,
        bus.consumer(topic, group=group, auto_offset_reset="earliest") as consumer,
    ):
        reading = Arrivals(records)
        while not reading.done:
            reading.got(len(consumer.poll(max_records=FETCH, timeout_ms=1000)))
        return reading.rate()


def measure_kafka(records: int, repeat: int) -> tuple[Pair, Pair]:
    """Produce and group-consume on Tansu, tidings and bare, a topic per run."""
    produced = Pair([], [])
    consumed = Pair([], [])
    with kafka_bench.tansu(kafka_bench.tansu_binary()) as bootstrap:
        url = f"kafka://{bootstrap}?session_timeout_ms={kafka_bench.SESSION_TIMEOUT_MS}"
        for i in range(repeat):
            topic = f"engines-{i}"
            kafka_bench.create_topic(bootstrap, topic)
            produced.measure(
                i,
                partial(bare_kafka_produce, bootstrap, topic, records),
                partial(tidings_produce, url, topic, records),
            )
            # both groups read the same 2 x records
            consumed.measure(
                i,
                partial(bare_kafka_consume, bootstrap, topic, 2 * records, f"bare-{i}"),
                partial(tidings_consume, url, topic, 2 * records, f"tidings-{i}"),
            )
    return produced, consumed


# -- nats:// ------------------------------------------------------------------------------


async def bare_nats_produce(url: str, records: int) -> float:
    """records/s of nats-py publishing to a stream, every acknowledgement awaited."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="bare", subjects=["bare.0"])
        v = value()
        futures = []
        start = time.perf_counter()
        for _ in range(records):
            futures.append(await js.publish_async("bare.0", v))
        await asyncio.gather(*futures)
        return records / (time.perf_counter() - start)
    finally:
        await nc.close()


async def bare_nats_consume(url: str, records: int) -> float:
    """records/s of a durable pull consumer fetching and acking every message."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe("bare.0", durable="bare-readers")
        reading = Arrivals(records)
        while not reading.done:
            try:
                messages = await sub.fetch(FETCH, timeout=1)
            except nats.errors.TimeoutError:
                messages = []
            for m in messages:
                await m.ack()
            reading.got(len(messages))
        return reading.rate()
    finally:
        await nc.close()


def _run(main: Callable[[str, int], Coroutine[Any, Any, float]], url: str, records: int) -> float:
    """The result of `main(url, records)`, run on a loop of its own."""
    return asyncio.run(main(url, records))


def measure_nats(directory: Path, records: int, repeat: int) -> tuple[Pair, Pair]:
    """Produce and consume on a fresh nats-server per run, tidings and bare."""
    produced = Pair([], [])
    consumed = Pair([], [])
    for i in range(repeat):
        with nats_server.running(directory / f"nats-{i}") as server:
            produced.measure(
                i,
                partial(_run, bare_nats_produce, server.url, records),
                partial(tidings_produce, server.url, "engines", records),
            )
            consumed.measure(
                i,
                partial(_run, bare_nats_consume, server.url, records),
                partial(tidings_consume, server.url, "engines", records, "readers"),
            )
    return produced, consumed


# -- everything ---------------------------------------------------------------------------


def measure(directory: Path, sizes: Sizes) -> EngineResults:
    """Both engines, one after the other."""
    directory.mkdir(parents=True, exist_ok=True)
    kafka_produce, kafka_consume = measure_kafka(sizes.kafka_records, sizes.repeat)
    nats_produce, nats_consume = measure_nats(directory, sizes.nats_records, sizes.repeat)
    return EngineResults(kafka_produce, kafka_consume, nats_produce, nats_consume)


def _rate(x: float) -> str:
    return f"{x:,.0f} rec/s"


def _row(name: str, pair: Pair, client: str) -> Cells:
    ratio = pair.ratio
    return (
        name,
        _rate(statistics.median(pair.tidings)),
        f"{client} {_rate(statistics.median(pair.bare))}",
        f"{ratio:.2f}x",
        f">= {OVERHEAD_TARGET:.2f}x (overhead < 10%)",
        "yes" if ratio >= OVERHEAD_TARGET else "NO",
    )


def rows(r: EngineResults) -> list[Cells]:
    """The table: tidings on each engine beside its bare client."""
    return [
        _row("kafka:// (Tansu) produce, send + flush", r.kafka_produce, "confluent-kafka"),
        _row("kafka:// (Tansu) consumer group read", r.kafka_consume, "confluent-kafka"),
        _row("nats:// produce, every ack awaited", r.nats_produce, "nats-py"),
        _row("nats:// read (bare: pull + ack each)", r.nats_consume, "nats-py"),
    ]
