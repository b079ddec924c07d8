"""Reading change records back off a topic, for the capture tests."""

from __future__ import annotations

import json
from typing import Any

import tidings

Event = tuple[Any, dict[str, Any] | None]
"""(key, value) of a change record, decoded; value None for a tombstone."""


def events(bus_url: str, topic: str) -> list[Event]:
    """Every change record on partition 0 of `topic`, in order (none if it is missing)."""
    with tidings.connect(bus_url) as bus:
        if topic not in {t.name for t in bus.list_topics()}:
            return []
        c = bus.consumer()
        tp = tidings.TopicPartition(topic, 0)
        c.assign(tp)
        c.seek(tp, "earliest")
        end = bus.describe_topic(topic).partitions[0].end_offset
        out: list[Event] = []
        while c.position(tp) < end:
            for r in c.poll(max_records=10_000, timeout_ms=200):
                key = json.loads(r.key) if r.key else None
                out.append((key, None if r.value is None else json.loads(r.value)))
        c.close()
    return out
