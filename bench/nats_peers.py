"""NATS as a peer: JetStream as a durable log and as a work queue, core NATS for latency.

The client is nats-py; the server is bench/nats_server.py's nats-server with JetStream on
file storage and its default sync (the store is fsynced every 2 minutes; a write is on
the page cache when acknowledged). Every figure does the work the matching tidings one does:

- produce: publish_async of every record, then every acknowledgement awaited;
- consume: a new durable pull consumer with AckPolicy.ALL fetches FETCH messages at a
  time and acks the last of each fetch (an offset commit per poll, as a Kafka consumer);
- queue: a work-queue stream, a pull consumer with explicit acks fetching RECEIVE jobs at
  a time and acking each one;
- round trip: one publish at a time, each acknowledgement awaited;
- pub/sub: core NATS (no JetStream, nothing stored), subscribers on connections of their
  own.

Each call connects, works and closes on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import nats
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy

from bench.latency import Channel, Tally
from bench.stats import Latency, value

DURABILITY = "file storage, fsync every 2 min"
FETCH = 1000
"""Messages per fetch reading the log (the server's default max_ack_pending)."""
RECEIVE = 500
"""Messages per fetch taking jobs (as tidings' queue.receive(max_records=500))."""
FETCH_TIMEOUT_S = 5.0
SUBJECT = "latency"


async def _add_stream(nc: Client, stream: str, work_queue: bool) -> None:
    retention = RetentionPolicy.WORK_QUEUE if work_queue else RetentionPolicy.LIMITS
    await nc.jetstream().add_stream(name=stream, subjects=[stream], retention=retention)


async def _produce(url: str, stream: str, records: int, size: int, work_queue: bool) -> float:
    nc = await nats.connect(url)
    try:
        await _add_stream(nc, stream, work_queue)
        js = nc.jetstream()
        v = value(size)
        start = time.perf_counter()
        acks = [await js.publish_async(stream, v) for _ in range(records)]
        await js.publish_async_completed()
        elapsed = time.perf_counter() - start
        failed = [e for e in (a.exception() for a in acks) if e is not None]
        if failed:
            raise RuntimeError(f"{len(failed):,} publishes failed: {failed[0]}")
        return records / elapsed
    finally:
        await nc.close()


def produce(url: str, stream: str, records: int, size: int, work_queue: bool = False) -> float:
    """records/s publishing `records` values of `size` bytes to a new stream, all acked."""
    return asyncio.run(_produce(url, stream, records, size, work_queue))


async def _fetch(sub: JetStreamContext.PullSubscription, batch: int) -> list[Msg]:
    try:
        return await sub.fetch(batch, timeout=FETCH_TIMEOUT_S)
    except nats.errors.TimeoutError:
        return []


async def _drain(url: str, stream: str, records: int, batch: int, ack_each: bool) -> float:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        policy = AckPolicy.EXPLICIT if ack_each else AckPolicy.ALL
        start = time.perf_counter()
        sub = await js.pull_subscribe(
            stream, durable=f"d{time.monotonic_ns()}", config=ConsumerConfig(ack_policy=policy)
        )
        seen = 0
        while seen < records:
            messages = await _fetch(sub, batch)
            if not messages:
                raise RuntimeError(f"stream ran dry after {seen:,} of {records:,} messages")
            for m in messages if ack_each else messages[-1:]:
                await m.ack()
            seen += len(messages)
        await nc.flush()  # the last acks are on the wire
        return records / (time.perf_counter() - start)
    finally:
        await nc.close()


def consume(url: str, stream: str, records: int) -> float:
    """records/s of a new consumer reading `records` messages, one ack per fetch."""
    return asyncio.run(_drain(url, stream, records, FETCH, ack_each=False))


def take(url: str, stream: str, jobs: int) -> float:
    """records/s taking `jobs` jobs from a work-queue stream, acking each one."""
    return asyncio.run(_drain(url, stream, jobs, RECEIVE, ack_each=True))


async def _round_trips(url: str, stream: str, count: int) -> Latency:
    nc = await nats.connect(url)
    try:
        await _add_stream(nc, stream, work_queue=False)
        js = nc.jetstream()
        v = value()
        samples = []
        start = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter()
            await js.publish(stream, v)
            samples.append(time.perf_counter() - t)
        return Latency.of(samples, time.perf_counter() - start)
    finally:
        await nc.close()


def round_trips(url: str, stream: str, count: int) -> Latency:
    """`count` publishes to a new stream one after the other, each awaiting its ack."""
    return asyncio.run(_round_trips(url, stream, count))


async def _listen(sub: Subscription, tally: Tally) -> None:
    async for message in sub.messages:
        if tally.arrived(message.data):
            return


@asynccontextmanager
async def channel(url: str, readers: int) -> AsyncIterator[Channel]:
    """Core NATS: publish from one connection to `readers` subscribers, each on a connection."""
    publisher = await nats.connect(url)
    subscribers = [await nats.connect(url) for _ in range(readers)]
    try:
        subs = [await nc.subscribe(SUBJECT) for nc in subscribers]
        for nc in subscribers:
            await nc.flush()  # the subscriptions are on the server
        yield Channel(partial(publisher.publish, SUBJECT), [partial(_listen, s) for s in subs])
    finally:
        for nc in (publisher, *subscribers):
            await nc.close()
