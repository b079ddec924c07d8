"""Redis as a peer: Streams as a durable log and as a queue, pub/sub for latency.

The client is redis-py with its hiredis parser; the server is bench/redis_server.py's
(AOF fsynced once a second). Every figure does the work the matching tidings figure does:

- produce: XADD of every record, pipelined PIPELINE records per round trip;
- consume: a new consumer group reads the stream from its start, XREADGROUP of FETCH
  entries at a time, then one XACK of them (an offset commit per poll, as a Kafka
  consumer makes);
- queue: XREADGROUP of RECEIVE jobs, then an XACK per job, sent in one pipeline (a
  settlement per message, as tidings' job.ack());
- round trip: one XADD at a time, each awaited;
- pub/sub: PUBLISH to a channel that subscribers on connections of their own listen to.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import redis
import redis.asyncio

from bench.latency import Channel, Tally
from bench.stats import Latency, value

PIPELINE = 1000
"""XADD commands per pipelined round trip."""
FETCH = 1000
"""COUNT of each XREADGROUP reading the log."""
RECEIVE = 500
"""COUNT of each XREADGROUP taking jobs (as tidings' queue.receive(max_records=500))."""
FIELD = "v"
CHANNEL = "latency"


def connect(port: int) -> redis.Redis:
    """A client of the server on 127.0.0.1:`port`."""
    return redis.Redis(host="127.0.0.1", port=port)


def produce(port: int, stream: str, records: int, size: int) -> float:
    """records/s of pipelined XADD of `records` values of `size` bytes."""
    client = connect(port)
    try:
        entry = {FIELD: value(size)}
        start = time.perf_counter()
        for first in range(0, records, PIPELINE):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(PIPELINE, records - first)):
                pipe.xadd(stream, entry)  # type: ignore[arg-type]
            pipe.execute()
        return records / (time.perf_counter() - start)
    finally:
        client.close()


def _drain(port: int, stream: str, records: int, count: int, ack_each: bool) -> float:
    """records/s of a new group reading `records` entries, `count` per XREADGROUP, then
    one XACK of them all or, with `ack_each`, an XACK per entry (pipelined)."""
    client = connect(port)
    try:
        group = f"group-{time.monotonic_ns()}"
        start = time.perf_counter()
        client.xgroup_create(stream, group, id="0")
        seen = 0
        while seen < records:
            reply: Any = client.xreadgroup(group, "c1", {stream: ">"}, count=count, block=1000)
            ids = [entry_id for _, entries in reply for entry_id, _ in entries]
            if not ids:
                raise RuntimeError(f"stream ran dry after {seen:,} of {records:,} entries")
            if ack_each:
                pipe = client.pipeline(transaction=False)
                for entry_id in ids:
                    pipe.xack(stream, group, entry_id)
                pipe.execute()
            else:
                client.xack(stream, group, *ids)
            seen += len(ids)
        return records / (time.perf_counter() - start)
    finally:
        client.close()


def consume(port: int, stream: str, records: int) -> float:
    """records/s of a new group reading `records` entries, one XACK per XREADGROUP."""
    return _drain(port, stream, records, FETCH, ack_each=False)


def take(port: int, stream: str, jobs: int) -> float:
    """records/s of a group taking `jobs` jobs RECEIVE at a time and acking each one."""
    return _drain(port, stream, jobs, RECEIVE, ack_each=True)


def round_trips(port: int, stream: str, count: int) -> Latency:
    """`count` XADD calls one after the other, each timed to its reply."""
    client = connect(port)
    try:
        entry = {FIELD: value()}
        samples = []
        start = time.perf_counter()
        for _ in range(count):
            t = time.perf_counter()
            client.xadd(stream, entry)  # type: ignore[arg-type]
            samples.append(time.perf_counter() - t)
        return Latency.of(samples, time.perf_counter() - start)
    finally:
        client.close()


async def _listen(pubsub: redis.asyncio.client.PubSub, tally: Tally) -> None:
    async for message in pubsub.listen():
        if message["type"] == "message" and tally.arrived(message["data"]):
            return


@asynccontextmanager
async def channel(port: int, readers: int) -> AsyncIterator[Channel]:
    """PUBLISH from one connection to `readers` subscribers, each on a connection."""
    publisher = redis.asyncio.Redis(host="127.0.0.1", port=port)
    subscribers = [redis.asyncio.Redis(host="127.0.0.1", port=port) for _ in range(readers)]
    pubsubs = [s.pubsub() for s in subscribers]
    try:
        for pubsub in pubsubs:
            await pubsub.subscribe(CHANNEL)
        yield Channel(partial(publisher.publish, CHANNEL), [partial(_listen, ps) for ps in pubsubs])
    finally:
        for pubsub in pubsubs:
            await pubsub.aclose()
        for client in (publisher, *subscribers):
            await client.aclose()
