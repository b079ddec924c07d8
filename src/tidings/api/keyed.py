"""Small durable state kept on the bus: the latest value per key of a compacted topic.

Relays (change capture, the event publisher) remember how far they got here, on the
same bus their records go to, so the source database is never written to.
"""

from __future__ import annotations

import contextlib

from tidings.api.bus import AsyncBus
from tidings.core.errors import TidingsError
from tidings.core.records import TopicPartition
from tidings.engines.base import Capability


async def latest(bus: AsyncBus, topic: str, key: str) -> str | None:
    """The last value written for `key` on `topic` (None: never, or deleted)."""
    return (await latest_all(bus, topic)).get(key)


async def latest_all(bus: AsyncBus, topic: str) -> dict[str, str]:
    """The last value written for every key on `topic` (deleted keys left out)."""
    await _create(bus, topic)
    consumer = bus.consumer()
    found: dict[str, str | None] = {}
    try:
        for p in (await bus.describe_topic(topic)).partitions:
            tp = TopicPartition(topic, p.partition)
            await consumer.assign(tp)
            await consumer.seek(tp, "earliest")
            while consumer.position(tp) < p.end_offset:
                for r in await consumer.poll(timeout_ms=200):
                    if r.key is not None:
                        found[r.key.decode()] = None if r.value is None else r.value.decode()
    finally:
        with contextlib.suppress(TidingsError):
            await consumer.close()
    return {k: v for k, v in found.items() if v is not None}


async def remember(bus: AsyncBus, topic: str, key: str, value: str) -> None:
    """Write `value` for `key` on the compacted `topic`, durably."""
    await _create(bus, topic)
    await bus.publish(topic, value.encode(), key=key.encode())


async def _create(bus: AsyncBus, topic: str) -> None:
    """The topic, compacted where the engine can; else every value is kept."""
    if Capability.COMPACTION in bus.engine.capabilities:
        await bus.create_topic(topic, exist_ok=True, cleanup_policy="compact")
    else:
        await bus.create_topic(topic, exist_ok=True, retention_ms=None)
