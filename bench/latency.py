"""Publish -> subscriber latency at a fixed rate: one harness for every pub/sub system.

A system hands over a Channel: how to publish one value, and one reader per subscriber
that reports each arrival to its Tally until the end marker comes. Every value carries
its sequence number (bench.pubsub's values); the latency of a record at a subscriber is
its arrival time minus the time just before its publish call. Warm-up values go first,
until every reader has one, so connecting and subscribing are not measured.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from bench.pubsub import END, _paced, _value
from bench.stats import VALUE_SIZE, Latency

WARM_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 30.0


@dataclass
class Tally:
    """One subscriber's arrivals: sequence number -> time.perf_counter() on arrival."""

    got: dict[int, float] = field(default_factory=dict)

    def arrived(self, payload: bytes) -> bool:
        """Note one value's arrival; True once the end marker came (stop reading)."""
        now = time.perf_counter()
        seq = int(payload[:12])
        if seq == END:
            return True
        self.got[seq] = now
        return False

    @property
    def warm(self) -> bool:
        """Whether a warm-up value (negative sequence number) has come."""
        return any(seq < 0 for seq in self.got)


@dataclass(frozen=True)
class Channel:
    """A pub/sub system ready to publish to `len(readers)` subscribers."""

    publish: Callable[[bytes], Awaitable[object]]
    readers: list[Callable[[Tally], Coroutine[Any, Any, None]]]
    """Each reads until its Tally says the end marker came."""


def _warm_value(seq: int) -> bytes:
    return f"{seq:012d}".encode().ljust(VALUE_SIZE, b"w")


async def measure(channel: Channel, rate: int, seconds: float) -> tuple[Latency, float]:
    """Publish at `rate` per second for `seconds`; (latency over all readers, publishes/s)."""
    tallies = [Tally() for _ in channel.readers]
    tasks = [
        asyncio.create_task(read(tally))
        for read, tally in zip(channel.readers, tallies, strict=True)
    ]
    deadline = time.monotonic() + WARM_TIMEOUT_S
    seq = -1
    while not all(t.warm for t in tallies):
        if time.monotonic() > deadline or any(t.done() for t in tasks):
            raise TimeoutError("the subscribers did not start receiving in time")
        await channel.publish(_warm_value(seq))
        seq -= 1
        await asyncio.sleep(0.01)
    count = max(1, round(rate * seconds))
    values = [_value(i) for i in range(count)]  # made ahead: not part of the publish
    sent = [0.0] * count

    async def publish(i: int) -> None:
        sent[i] = time.perf_counter()
        await channel.publish(values[i])

    done, elapsed = await _paced(count, rate, publish, seconds)
    await channel.publish(_value(END))
    await asyncio.wait_for(asyncio.gather(*tasks), DRAIN_TIMEOUT_S)
    lost = sum(i not in t.got for t in tallies for i in range(done))
    if lost:
        raise RuntimeError(f"{lost:,} of {done * len(tallies):,} values never arrived")
    samples = [t.got[i] - sent[i] for t in tallies for i in range(done)]
    return Latency.of(samples, elapsed), done / elapsed
