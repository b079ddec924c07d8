"""Small waits and reads shared by the conformance tests."""

from __future__ import annotations

import time
from collections.abc import Callable

import tidings
from tidings import Record, TopicPartition


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    """Wait until `condition()` holds, failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what or condition}")
        time.sleep(0.02)


def read_partition(bus: tidings.Bus, topic: str, partition: int = 0) -> list[Record]:
    """Every record stored in one partition now, read without a group."""
    consumer = bus.consumer()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign(tp)
        consumer.seek(tp, "earliest")
        end = bus.describe_topic(topic).partitions[partition].end_offset
        out: list[Record] = []
        while consumer.position(tp) < end:
            batch = consumer.poll(max_records=10_000, timeout_ms=200)
            if not batch:
                break
            out.extend(batch)
        return out
    finally:
        consumer.close()


def read_all(bus: tidings.Bus, topic: str) -> list[Record]:
    """Every record stored in every partition of `topic`, partition by partition."""
    partitions = len(bus.describe_topic(topic).partitions)
    return [r for p in range(partitions) for r in read_partition(bus, topic, p)]


def offsets(records: list[Record]) -> list[int]:
    """The offsets of `records`, in order."""
    return [r.offset for r in records]
