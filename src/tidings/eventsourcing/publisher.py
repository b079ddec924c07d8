"""The store's events on tidings topics, for stream processors and other services.

`EventPublisher` follows the store from where it last got to and publishes every event:
to one topic, or to one topic per category (`<prefix>.<category>`). Key: the stream id,
so one stream's events stay in order; value: the event's data; headers: `id`, `type`,
`stream`, `version`, `position` and the metadata as JSON. How far it got is kept on the
bus (see tidings.api.keyed) after the records are durable: a publisher that stops at any
moment resumes there, and may publish its last events again, with the same `id` headers.
"""

from __future__ import annotations

import asyncio
import json

from tidings.api.bus import AsyncBus
from tidings.api.keyed import latest, remember
from tidings.eventsourcing.storage import RecordedEvent
from tidings.eventsourcing.store import AsyncEventStore, Follower

CHECKPOINTS = "_tidings.es.published"
"""Where each publisher's position is kept (a compacted topic)."""


class EventPublisher:
    """Publishes an event store's events to topics, at least once, in order per stream."""

    def __init__(
        self,
        store: AsyncEventStore,
        bus: AsyncBus,
        *,
        topic: str | None = None,
        prefix: str = "events",
        name: str = "default",
    ) -> None:
        self.store = store
        self.bus = bus
        self.topic = topic
        """One topic for every event; None: one per category, `<prefix>.<category>`."""
        self.prefix = prefix
        self.name = name
        self.published = 0
        """Events published since start."""

    def topic_of(self, event: RecordedEvent) -> str:
        """Where an event goes."""
        return self.topic or f"{self.prefix}.{event.category}"

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Publish events as they come, until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        position = int(await latest(self.bus, CHECKPOINTS, self.name) or 0)
        events = Follower(self.store, position + 1, None).start()
        producer = self.bus.producer(linger_ms=0)
        try:
            while not stop.is_set():
                batch = await events.take(0.25)
                for event in batch:
                    topic = self.topic_of(event)
                    await self.bus.create_topic(topic, exist_ok=True)
                    producer.send(
                        topic, event.data, key=event.stream_id.encode(), headers=_headers(event)
                    )
                if batch:
                    await producer.flush()  # durable: now the position may move
                    await remember(self.bus, CHECKPOINTS, self.name, str(batch[-1].position))
                    self.published += len(batch)
        finally:
            await events.close()
            await producer.close()

    async def position(self) -> int:
        """The global position of the last event published and remembered."""
        return int(await latest(self.bus, CHECKPOINTS, self.name) or 0)


def _headers(event: RecordedEvent) -> dict[str, bytes]:
    return {
        "id": event.id.encode(),
        "type": event.type.encode(),
        "stream": event.stream_id.encode(),
        "version": str(event.version).encode(),
        "position": str(event.position).encode(),
        "metadata": json.dumps(event.metadata).encode(),
    }
