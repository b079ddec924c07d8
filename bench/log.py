"""tidings through its public API on a fresh sqlite:// store (default fsync: full)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import tidings
from bench.stats import VALUE_SIZE, Latency, median_of, value

TOPIC = "bench"


@dataclass(frozen=True)
class LogResults:
    """What tidings achieves on its default engine, durable on return."""

    send_loop: float
    """records/s: producer.send() in a loop, then flush()."""
    send_many: float
    """records/s: one bus.publish_many() call with every record."""
    consume: float
    """records/s: iterating a group consumer from the beginning."""
    publish: dict[str, Latency]
    """one-record bus.publish() round trips, by who publishes concurrently."""


def send_loop(bus: tidings.Bus, records: int, size: int = VALUE_SIZE) -> float:
    """Records/s sending one record of `size` bytes at a time, durable once flush() returns."""
    producer = bus.producer()
    send = producer.send
    v = value(size)
    start = time.perf_counter()
    for _ in range(records):
        send(TOPIC, v)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return records / elapsed


def send_many(bus: tidings.Bus, records: int) -> float:
    """Records/s publishing a list of records in one call."""
    values = [value()] * records
    start = time.perf_counter()
    bus.publish_many(TOPIC, values)
    return records / (time.perf_counter() - start)


def consume(bus: tidings.Bus, topic: str, records: int, group: str) -> float:
    """Records/s reading `records` records through a new group, from the beginning."""
    start = time.perf_counter()
    consumer = bus.consumer(topic, group=group, from_beginning=True)
    for seen, _ in enumerate(consumer, 1):
        if seen == records:
            break
    elapsed = time.perf_counter() - start
    consumer.close()
    return records / elapsed


def publish_threads(bus: tidings.Bus, threads: int, per_thread: int) -> Latency:
    """Round trips of bus.publish() from `threads` threads on the sync API at once."""
    v = value()
    samples: list[list[float]] = [[] for _ in range(threads)]
    ready = threading.Barrier(threads + 1)

    def publisher(out: list[float]) -> None:
        ready.wait()
        for _ in range(per_thread):
            t = time.perf_counter()
            bus.publish(TOPIC, v)
            out.append(time.perf_counter() - t)

    workers = [threading.Thread(target=publisher, args=(s,)) for s in samples]
    for w in workers:
        w.start()
    ready.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start
    return Latency.of([x for s in samples for x in s], elapsed)


async def _publish_tasks(url: str, tasks: int, per_task: int) -> Latency:
    bus = await tidings.connect_async(url)
    try:
        await bus.create_topic(TOPIC, exist_ok=True)
        v = value()
        await bus.publish(TOPIC, v)  # warm up: the shared producer and the topic cache

        async def publisher(out: list[float]) -> None:
            for _ in range(per_task):
                t = time.perf_counter()
                await bus.publish(TOPIC, v)
                out.append(time.perf_counter() - t)

        samples: list[list[float]] = [[] for _ in range(tasks)]
        start = time.perf_counter()
        await asyncio.gather(*(publisher(s) for s in samples))
        elapsed = time.perf_counter() - start
    finally:
        await bus.close()
    return Latency.of([x for s in samples for x in s], elapsed)


def publish_tasks(url: str, tasks: int, per_task: int) -> Latency:
    """Round trips of AsyncBus.publish() from `tasks` tasks on one event loop."""
    return asyncio.run(_publish_tasks(url, tasks, per_task))


def _fresh(directory: Path, name: str) -> tidings.Bus:
    """A bus on a new store file with the benchmark topic."""
    bus = tidings.connect(f"sqlite://{directory}/{name}.db")
    bus.create_topic(TOPIC)
    return bus


def _on_fresh(directory: Path, name: str, run: Callable[[tidings.Bus], float]) -> float:
    bus = _fresh(directory, name)
    try:
        return run(bus)
    finally:
        bus.close()


def measure(
    directory: Path, records: int, round_trips: int, repeat: int, concurrency: tuple[int, ...]
) -> LogResults:
    """Every tidings measurement, each throughput the median of `repeat` runs.

    Each producing run gets a store of its own, as the raw runs get fresh files, so no run
    pays for checkpointing what an earlier one wrote.
    """
    directory.mkdir(parents=True, exist_ok=True)
    loop_rate = median_of(
        repeat, lambda i: _on_fresh(directory, f"loop-{i}", lambda b: send_loop(b, records))
    )
    many_rate = median_of(
        repeat, lambda i: _on_fresh(directory, f"many-{i}", lambda b: send_many(b, records))
    )
    bus = _fresh(directory, "consume")
    try:
        bus.publish_many(TOPIC, [value()] * records)
        consume_rate = median_of(repeat, lambda i: consume(bus, TOPIC, records, f"g{i}"))
    finally:
        bus.close()
    bus = _fresh(directory, "publish")
    try:
        bus.publish(TOPIC, value())  # warm up the shared producer
        publish = {"1 thread": publish_threads(bus, 1, round_trips)}
        for n in concurrency:
            publish[f"{n} threads"] = publish_threads(bus, n, max(1, round_trips // n * 2))
    finally:
        bus.close()
    publish["1 async task"] = publish_tasks(f"sqlite://{directory}/async-1.db", 1, round_trips)
    for n in concurrency:
        publish[f"{n} async tasks"] = publish_tasks(
            f"sqlite://{directory}/async-{n}.db", n, max(1, round_trips // n * 2)
        )
    return LogResults(loop_rate, many_rate, consume_rate, publish)
