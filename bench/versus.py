"""The scenarios with peers side by side: 1. the durable log, 2. a queue with per-message
ack, 3. pub/sub latency. Every system runs on this machine in the same run; within each
repeat the systems take turns, so a slow minute of the machine falls on all of them.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Coroutine
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tidings
from bench import kafka, log, nats_peers, peers, pubsub, queue
from bench import latency as harness
from bench import redis_streams as redis_peer
from bench.plan import TIDINGS_DURABILITY, Limits, Servers, Sizes, size_label
from bench.redis_server import DURABILITY as REDIS_DURABILITY
from bench.report import Figure, Role, with_latency
from bench.stats import VALUE_SIZE, Latency

TANSU_DURABILITY = "memory only"
KAFKA_HOW = "confluent-kafka Producer (acks=all) + flush(); a Consumer in a new group"

# -- 1. the durable log -------------------------------------------------------------------

Run = Callable[[str, int, int], tuple[float, float]]
"""(topic, records, value size) -> (produce records/s, consume records/s)."""


@dataclass(frozen=True)
class LogSystem:
    """One system's part in the durable log scenario."""

    name: str
    role: Role
    durability: str
    how: str
    run: Run
    round_trips: Callable[[str, int], Latency]
    """(topic, count) -> one-at-a-time publish latency."""


def _tidings_log(directory: Path) -> Run:
    def run(topic: str, records: int, size: int) -> tuple[float, float]:
        with tidings.connect(f"sqlite://{directory / topic}.db") as bus:
            bus.create_topic(log.TOPIC)
            produced = log.send_loop(bus, records, size)
            return produced, log.consume(bus, log.TOPIC, records, "readers")

    return run


def _kafka_log(bootstrap: str) -> Run:
    def run(topic: str, records: int, size: int) -> tuple[float, float]:
        kafka.create_topic(bootstrap, topic)
        produced = kafka.produce(bootstrap, topic, records, size)
        return produced, kafka.consume(bootstrap, topic, records, f"{topic}-readers")

    return run


def _kafka_round_trips(bootstrap: str) -> Callable[[str, int], Latency]:
    def round_trips(topic: str, count: int) -> Latency:
        kafka.create_topic(bootstrap, topic)
        return kafka.round_trips(bootstrap, topic, count)

    return round_trips


def _redis_log(port: int) -> Run:
    def run(topic: str, records: int, size: int) -> tuple[float, float]:
        produced = redis_peer.produce(port, topic, records, size)
        consumed = redis_peer.consume(port, topic, records)
        redis_peer.connect(port).delete(topic)  # the server holds one run at a time
        return produced, consumed

    return run


def _jetstream_log(url: str) -> Run:
    def run(topic: str, records: int, size: int) -> tuple[float, float]:
        produced = nats_peers.produce(url, topic, records, size)
        return produced, nats_peers.consume(url, topic, records)

    return run


def log_systems(directory: Path, s: Servers) -> list[LogSystem]:
    """tidings embedded and served, Tansu, Redis Streams and NATS JetStream."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        LogSystem(
            "tidings embedded",
            "tidings",
            TIDINGS_DURABILITY,
            "producer.send() + flush(); a group consumer from the beginning",
            _tidings_log(directory),
            lambda topic, n: log.publish_tasks(f"sqlite://{directory / topic}.db", 1, n),
        ),
        LogSystem(
            "tidings serve",
            "tidings",
            TIDINGS_DURABILITY,
            KAFKA_HOW,
            _kafka_log(s.tidings),
            _kafka_round_trips(s.tidings),
        ),
        LogSystem(
            "Tansu",
            "peer",
            TANSU_DURABILITY,
            KAFKA_HOW,
            _kafka_log(s.tansu),
            _kafka_round_trips(s.tansu),
        ),
        LogSystem(
            "Redis Streams",
            "peer",
            REDIS_DURABILITY,
            f"XADD pipelined {redis_peer.PIPELINE} a trip; XREADGROUP {redis_peer.FETCH} + "
            "one XACK",
            _redis_log(s.redis),
            lambda topic, n: redis_peer.round_trips(s.redis, topic, n),
        ),
        LogSystem(
            "NATS JetStream",
            "peer",
            nats_peers.DURABILITY,
            f"publish_async, every ack awaited; pull fetch({nats_peers.FETCH}) + ack-all",
            _jetstream_log(s.nats),
            lambda topic, n: nats_peers.round_trips(s.nats, topic, n),
        ),
    ]


def durable_log(systems: list[LogSystem], sizes: Sizes, limits: Limits) -> list[Figure]:
    """Produce and consume at each value size, and one-at-a-time publish round trips."""
    runs: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for size, records in sizes.log:
        for i in range(sizes.repeat):
            for system in systems:
                got = system.run(f"log-{size}-{i}", records, size)
                runs.setdefault((system.name, size), []).append(got)
    trips: dict[str, list[Latency]] = {s.name: [] for s in systems}
    for i in range(sizes.repeat):
        for system in systems:
            trips[system.name].append(system.round_trips(f"trips-{i}", sizes.round_trips))
    figures = []
    for index, (direction, limit) in enumerate(
        (("produce", limits.write), ("consume", limits.read))
    ):
        for size, records in sizes.log:
            for system in systems:
                rates = [r[index] for r in runs[system.name, size]]
                figures.append(
                    Figure(
                        f"1. durable log: {direction}",
                        size_label(size),
                        system.name,
                        system.role,
                        system.durability,
                        rate=statistics.median(rates),
                        runs=rates,
                        how=f"{records:,} records per run; {system.how}",
                        limit=limit[size],
                    )
                )
    for system in systems:
        base = Figure(
            "1. durable log: publish round trip",
            size_label(VALUE_SIZE),
            system.name,
            system.role,
            system.durability,
            metric="latency",
            how=f"{sizes.round_trips:,} publishes one at a time, each acknowledged",
            limit=limits.commit.rate,
        )
        figures.append(with_latency(base, trips[system.name]))
    return figures


# -- 2. queue with per-message ack --------------------------------------------------------


@dataclass(frozen=True)
class QueueSystem:
    """One queue: its description, and (enqueue, take + ack) records/s of one run."""

    name: str
    role: Role
    durability: str
    how: str
    run: Callable[[int], tuple[float, float]]
    """run index -> (enqueue records/s, take + ack records/s)."""


def queue_systems(directory: Path, s: Servers, sizes: Sizes) -> list[QueueSystem]:
    """tidings, Redis Streams, a JetStream work queue, persist-queue and litequeue."""
    directory.mkdir(parents=True, exist_ok=True)
    jobs, few = sizes.jobs, sizes.peer_jobs

    def tidings_queue(i: int) -> tuple[float, float]:
        drain = queue.drain_run(directory / f"tidings-{i}.db", jobs)
        return drain.publish_rate, drain.drain_rate

    def redis_queue(i: int) -> tuple[float, float]:
        stream = f"queue-{i}"
        put = redis_peer.produce(s.redis, stream, jobs, VALUE_SIZE)
        taken = redis_peer.take(s.redis, stream, jobs)
        redis_peer.connect(s.redis).delete(stream)
        return put, taken

    def jetstream_queue(i: int) -> tuple[float, float]:
        stream = f"queue-{i}"
        put = nats_peers.produce(s.nats, stream, jobs, VALUE_SIZE, work_queue=True)
        return put, nats_peers.take(s.nats, stream, jobs)

    def persist_queue(i: int) -> tuple[float, float]:
        r = peers.persist_queue(directory / f"persist-queue-{i}", few)
        return r.put_rate, r.take_rate

    def litequeue(i: int) -> tuple[float, float]:
        r = peers.litequeue(directory / f"litequeue-{i}.db", few)
        return r.put_rate, r.take_rate

    return [
        QueueSystem(
            "tidings",
            "tidings",
            TIDINGS_DURABILITY,
            f"{jobs:,} jobs: bus.publish_many(); queue.receive({queue.RECEIVE}) + job.ack() each",
            tidings_queue,
        ),
        QueueSystem(
            "Redis Streams",
            "peer",
            REDIS_DURABILITY,
            f"{jobs:,} jobs: XADD pipelined; XREADGROUP {redis_peer.RECEIVE} + an XACK per "
            "job, pipelined",
            redis_queue,
        ),
        QueueSystem(
            "NATS JetStream",
            "peer",
            nats_peers.DURABILITY,
            f"{jobs:,} jobs, work-queue stream: publish_async; pull fetch("
            f"{nats_peers.RECEIVE}) + ack() each",
            jetstream_queue,
        ),
        QueueSystem(
            "persist-queue",
            "peer",
            "sqlite WAL, fsync per commit",
            f"{few:,} jobs: SQLiteAckQueue put() each; get() + ack() each",
            persist_queue,
        ),
        QueueSystem(
            "litequeue",
            "peer",
            "sqlite WAL, no fsync per commit",
            f"{few:,} jobs: put() each; pop() + done() each",
            litequeue,
        ),
    ]


def queues(systems: list[QueueSystem], sizes: Sizes, limits: Limits) -> list[Figure]:
    """Enqueue, then take + ack every job, in every queue."""
    runs: dict[str, list[tuple[float, float]]] = {q.name: [] for q in systems}
    for i in range(sizes.repeat):
        for system in systems:
            runs[system.name].append(system.run(i))
    figures = []
    for index, (variant, limit) in enumerate(
        (("enqueue", limits.small_write), ("take + ack", limits.queue))
    ):
        for system in systems:
            rates = [r[index] for r in runs[system.name]]
            figures.append(
                Figure(
                    "2. queue, per-message ack",
                    variant,
                    system.name,
                    system.role,
                    system.durability,
                    rate=statistics.median(rates),
                    runs=rates,
                    how=system.how,
                    limit=limit,
                )
            )
    return figures


# -- 3. pub/sub latency -------------------------------------------------------------------

Measured = Coroutine[Any, Any, tuple[Latency, float]]


@dataclass(frozen=True)
class PubSubSystem:
    """One pub/sub system: how to run a latency run with a number of subscribers."""

    name: str
    role: Role
    durability: str
    how: str
    run: Callable[[int], Measured]
    """subscribers -> (latency over every arrival, publishes/s reached)."""


async def _through(
    channel: AbstractAsyncContextManager[harness.Channel], rate: int, seconds: float
) -> tuple[Latency, float]:
    async with channel as opened:
        return await harness.measure(opened, rate, seconds)


def pubsub_systems(directory: Path, s: Servers, sizes: Sizes) -> list[PubSubSystem]:
    """tidings in-process (memory://, sqlite://) and served, Redis pub/sub, core NATS."""
    directory.mkdir(parents=True, exist_ok=True)
    rate, seconds = sizes.rate, sizes.seconds
    runs = iter(range(1 << 30))  # a new store or topic per run

    def in_process(engine: str) -> Callable[[int], Measured]:
        def run(readers: int) -> Measured:
            url = pubsub._url(engine, directory, f"pubsub-{next(runs)}")
            return pubsub.latency_run(
                url, "subscribers", readers, pubsub.Sizes(rate=rate, seconds=seconds)
            )

        return run

    def served(readers: int) -> Measured:
        channel = kafka.channel(s.tidings, f"pubsub-{next(runs)}", readers)
        return _through(channel, rate, seconds)

    subscribe = "in-process, async API: publish() -> bus.subscribe()"
    return [
        PubSubSystem(
            "tidings memory://", "tidings", "none: memory", subscribe, in_process("memory")
        ),
        PubSubSystem(
            "tidings sqlite://",
            "tidings",
            TIDINGS_DURABILITY,
            f"{subscribe}; publish() awaits the commit",
            in_process("sqlite"),
        ),
        PubSubSystem(
            "tidings serve",
            "tidings",
            TIDINGS_DURABILITY,
            "confluent-kafka Producer (no linger) -> Consumers assigned at the end",
            served,
        ),
        PubSubSystem(
            "Redis pub/sub",
            "peer",
            "none: not stored",
            "redis.asyncio PUBLISH -> subscribers on connections of their own",
            lambda n: _through(redis_peer.channel(s.redis, n), rate, seconds),
        ),
        PubSubSystem(
            "NATS core",
            "peer",
            "none: not stored",
            "nats-py publish -> subscribers on connections of their own",
            lambda n: _through(nats_peers.channel(s.nats, n), rate, seconds),
        ),
    ]


def pubsub_latency(systems: list[PubSubSystem], sizes: Sizes) -> list[Figure]:
    """Publish at a fixed rate to 1 and to 4 subscribers, in every system."""
    figures = []
    for readers in (1, pubsub.SUBSCRIBERS):
        got: dict[str, list[tuple[Latency, float]]] = {p.name: [] for p in systems}
        for _ in range(sizes.repeat):
            for system in systems:
                got[system.name].append(asyncio.run(system.run(readers)))
        for system in systems:
            base = Figure(
                "3. pub/sub latency",
                f"{readers} subscriber{'s' if readers > 1 else ''}",
                system.name,
                system.role,
                system.durability,
                metric="latency",
                how=f"{system.how}; {sizes.rate:,}/s for {sizes.seconds:g} s; records/s: "
                "publishes reached",
            )
            latencies = [lat for lat, _ in got[system.name]]
            figures.append(with_latency(base, latencies, [r for _, r in got[system.name]]))
    return figures
