"""Small waits and reads shared by the conformance tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

import tidings
from tidings import Job, Record, TopicPartition

Scenario = Callable[[tidings.AsyncBus], Awaitable[None]]


WAIT_S = 20.0
"""How long a test waits for something to happen before failing: a bound, not a speed (a
rebalance or a fetch is slow on a loaded 2-core machine; a wait that holds returns at
once)."""


def eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S, what: str = "") -> None:
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
        deadline = time.monotonic() + 10
        # to the end offset: a first poll may come back empty while the engine starts reading
        while consumer.position(tp) < end and time.monotonic() < deadline:
            out.extend(consumer.poll(max_records=10_000, timeout_ms=200))
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


def run_async(bus_url: str, scenario: Scenario) -> None:
    """Run `scenario` on a fresh async bus in a new event loop, closing the bus after."""

    async def main() -> None:
        bus = await tidings.connect_async(bus_url)
        async with bus:
            await asyncio.wait_for(scenario(bus), timeout=20)

    asyncio.run(main())


def receive_all(queue: tidings.Queue, count: int, timeout_s: float = 5) -> list[Job]:
    """Receive until `count` jobs arrived (fails on timeout)."""
    out: list[Job] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out.extend(queue.receive(max_records=count - len(out), timeout_ms=100))
    assert len(out) == count, f"got {len(out)} jobs, expected {count}"
    return out


# Where Tansu departs from Kafka's documented behaviour: these tests run on tidings serve
# (and every other engine), not on Tansu.
tansu_latest_offsets = pytest.mark.differs(
    "kafka-tansu",
    "Kafka: ListOffsets for the latest offset gives the high watermark, the offset the next "
    "record gets; Tansu (memory storage) gives an offset short of it once a partition holds "
    "several batches",
)
tansu_offsets_for_times = pytest.mark.differs(
    "kafka-tansu",
    "Kafka (KIP-79): ListOffsets by time gives the first offset whose timestamp is at or "
    "after the time; Tansu gives 0 for every time",
)
tansu_group_admin = pytest.mark.differs(
    "kafka-tansu",
    "Kafka: DescribeGroups lists a group's members, ListGroups includes groups with only "
    "committed offsets, and an admin offset commit to a group without members is accepted; "
    "Tansu lists no members, omits such groups and refuses the commit (UNKNOWN_MEMBER_ID)",
)
tansu_leave = pytest.mark.differs(
    "kafka-tansu",
    "Kafka: a member that stops polling past max.poll.interval.ms leaves its group, which "
    "rebalances so the other members take its partitions; on Tansu the other member was "
    "still without them 5 s later",
)
tansu_idempotence = pytest.mark.differs(
    "kafka-tansu",
    "Kafka: an idempotent producer's retried batches are stored once; Tansu stored retried "
    "batches again (duplicates at the end of the partition) when many producers raced",
)


def collect(consumer: tidings.Consumer, count: int, timeout_s: float = 15) -> list[tidings.Record]:
    """Poll until `count` records arrived; fail after `timeout_s` (a deadline, not a target)."""
    out: list[tidings.Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count and time.monotonic() < deadline:
        out.extend(consumer.poll(timeout_ms=100))
    assert len(out) == count, f"got {len(out)} records, expected {count}"
    return out
