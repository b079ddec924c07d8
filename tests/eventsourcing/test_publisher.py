"""The store's events published on topics, resuming from where they got to."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import tidings
from tidings import eventsourcing
from tidings.eventsourcing import Event, EventPublisher


def test_events_go_to_a_topic_per_category_and_resume_after_a_stop(
    store_url: str, tmp_path: Path
) -> None:
    bus_url = f"sqlite://{tmp_path}/bus.db"

    async def publish_until(store: eventsourcing.AsyncEventStore, count: int) -> None:
        bus = await tidings.connect_async(bus_url)
        publisher = EventPublisher(store, bus)
        stop = asyncio.Event()
        task = asyncio.create_task(publisher.run(stop))
        while await publisher.position() < count:
            await asyncio.sleep(0.02)
        stop.set()
        await task
        await bus.close()

    async def body() -> None:
        store = await eventsourcing.connect_async(store_url)
        for i in range(5):
            await store.append("order-1", [Event("Placed", {"i": i})], metadata={"by": "web"})
            await store.append("user-2", [Event("Seen")])
        await publish_until(store, 10)
        await store.append("order-1", [Event("Shipped")])
        await publish_until(store, 11)  # a new publisher resumes after position 10
        await store.close()

    asyncio.run(body())
    with tidings.connect(bus_url) as bus:
        orders = bus.consumer("events.order", group="check", from_beginning=True)
        records = []
        while batch := orders.poll(timeout_ms=300):
            records += batch
        orders.close()
        assert "events.user" in {t.name for t in bus.list_topics()}
    assert [r.header("type") for r in records] == [b"Placed"] * 5 + [b"Shipped"]  # once each
    first = records[0]
    assert first.key == b"order-1" and json.loads(first.value or b"") == {"i": 0}
    assert first.header("version") == b"0" and first.header("position") == b"1"
    assert json.loads(first.header("metadata") or b"{}") == {"by": "web"}
