"""Positions: seek to an offset, the ends, or a time; pause and resume."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

import tidings
from tidings import TopicPartition

from .helpers import (
    WAIT_S,
    collect,
    eventually,
    offsets,
    tansu_latest_offsets,
    tansu_offsets_for_times,
)

TP0 = TopicPartition("orders", 0)
TP1 = TopicPartition("orders", 1)


@pytest.fixture
def orders(bus: tidings.Bus) -> tidings.Bus:
    """Two partitions of ten records each, with timestamps 1000, 2000, ... 10000."""
    bus.create_topic("orders", partitions=2)
    for p in range(2):
        with bus.producer() as producer:
            for i in range(10):
                producer.send("orders", b"%d-%d" % (p, i), partition=p, timestamp=(i + 1) * 1000)
    return bus


@pytest.fixture
def reader(orders: tidings.Bus) -> Iterator[tidings.Consumer]:
    """A consumer assigned both partitions, without a group."""
    consumer = orders.consumer(auto_offset_reset="earliest")
    consumer.assign(TP0, TP1)
    yield consumer
    consumer.close()


QUIET_MS = 500
"""How long a poll that must bring nothing waits."""


def read(bus: tidings.Bus, consumer: tidings.Consumer, partition: TopicPartition) -> list[int]:
    """Offsets read from `partition` up to its end now (by its position, to a deadline)."""
    end = bus.describe_topic(partition.topic).partitions[partition.partition].end_offset
    out: list[tidings.Record] = []
    deadline = time.monotonic() + WAIT_S
    while True:  # one poll at least, even at the end: nothing may come from before it
        out.extend(
            r
            for r in consumer.poll(max_records=100, timeout_ms=100)
            if r.partition == partition.partition
        )
        if _position(consumer, partition) >= end:
            return offsets(out)
        assert time.monotonic() < deadline, f"read {offsets(out)}, not up to offset {end}"


def _position(consumer: tidings.Consumer, partition: TopicPartition) -> int:
    """The consumer's position in `partition`, -1 before it has one."""
    try:
        return consumer.position(partition)
    except tidings.ConfigurationError:
        return -1


def test_seek_to_offset(reader: tidings.Consumer) -> None:
    reader.seek(TP0, 7)
    reader.seek(TP1, 0)
    assert reader.position(TP0) == 7
    records = collect(reader, 13)
    assert reader.poll(timeout_ms=QUIET_MS) == []
    assert offsets([r for r in records if r.partition == 0]) == [7, 8, 9]
    assert offsets([r for r in records if r.partition == 1]) == list(range(10))


def test_seek_back_rereads(orders: tidings.Bus, reader: tidings.Consumer) -> None:
    assert read(orders, reader, TP0) == list(range(10))
    reader.seek(TP0, 3)
    assert read(orders, reader, TP0) == list(range(3, 10))


@tansu_latest_offsets
def test_seek_earliest_and_latest(orders: tidings.Bus, reader: tidings.Consumer) -> None:
    reader.seek(TP0, "latest")
    assert reader.position(TP0) == 10
    assert read(orders, reader, TP0) == []
    orders.publish("orders", b"new", partition=0)
    assert read(orders, reader, TP0) == [10]
    reader.seek(TP0, "earliest")
    assert reader.position(TP0) == 0
    assert read(orders, reader, TP0) == list(range(11))


def test_seek_during_iteration_drops_buffered_records(reader: tidings.Consumer) -> None:
    reader.pause(TP1)
    seen = []
    for record in reader:
        seen.append(record.offset)
        if record.offset == 4 and len(seen) == 5:
            reader.seek(TP0, 8)
        if len(seen) == 7:
            break
    assert seen == [0, 1, 2, 3, 4, 8, 9]


def test_seek_of_unassigned_partition_is_refused(reader: tidings.Consumer) -> None:
    with pytest.raises(tidings.ConfigurationError):
        reader.seek(TopicPartition("orders", 5), 0)
    with pytest.raises(tidings.ConfigurationError):
        reader.seek(TP0, "middle")
    with pytest.raises(tidings.ConfigurationError):
        reader.seek(TP0, -1)


@tansu_offsets_for_times
def test_offsets_for_times(reader: tidings.Consumer) -> None:
    found = reader.offsets_for_times({TP0: 0, TP1: 3000})
    assert found == {TP0: 0, TP1: 2}
    assert reader.offsets_for_times({TP0: 3001}) == {TP0: 3}
    assert reader.offsets_for_times({TP0: 10_000}) == {TP0: 9}
    assert reader.offsets_for_times({TP0: 10_001}) == {TP0: None}


@tansu_offsets_for_times
def test_offsets_for_times_with_unordered_timestamps(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.producer() as producer:
        for ts in (5000, 1000, 7000, 3000):
            producer.send("orders", b"v", timestamp=ts)
    consumer = bus.consumer()
    try:
        consumer.assign(TP0)
        # the first offset whose timestamp is at or after the time, as Kafka answers
        assert consumer.offsets_for_times({TP0: 2000}) == {TP0: 0}
        assert consumer.offsets_for_times({TP0: 6000}) == {TP0: 2}
    finally:
        consumer.close()


@tansu_offsets_for_times
def test_offsets_for_times_across_batches(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    for ts in range(1000, 6000, 1000):
        bus.publish("orders", b"v", timestamp=ts)
    consumer = bus.consumer()
    try:
        consumer.assign(TP0)
        assert consumer.offsets_for_times({TP0: 3500}) == {TP0: 3}
    finally:
        consumer.close()


@tansu_offsets_for_times
def test_seek_to_time(orders: tidings.Bus, reader: tidings.Consumer) -> None:
    reader.seek_to_time(8000)
    assert reader.position(TP0) == 7
    assert reader.position(TP1) == 7
    assert read(orders, reader, TP0) == [7, 8, 9]
    reader.seek_to_time(50_000)
    assert reader.position(TP0) == 10
    orders.publish("orders", b"new", partition=0)
    assert read(orders, reader, TP0) == [10]


def test_group_member_can_seek(orders: tidings.Bus) -> None:
    with orders.consumer(
        "orders", group="g", session_timeout_ms=1000, heartbeat_interval_ms=50
    ) as consumer:
        eventually(lambda: consumer.assignment() == {TP0, TP1}, what="the assignment")
        consumer.seek(TP0, 5)
        consumer.seek(TP1, "latest")
        assert read(orders, consumer, TP0) == [5, 6, 7, 8, 9]
        consumer.commit()
        assert consumer.committed(TP0, TP1) == {TP0: 10, TP1: 10}


def test_pause_and_resume(orders: tidings.Bus, reader: tidings.Consumer) -> None:
    reader.pause(TP0)
    records = collect(reader, 10)
    assert reader.poll(timeout_ms=QUIET_MS) == []
    assert {r.partition for r in records} == {1}
    orders.publish("orders", b"new", partition=0)
    assert reader.poll(timeout_ms=50) == []
    assert reader.assignment() == {TP0, TP1}
    reader.resume(TP0)
    assert read(orders, reader, TP0) == list(range(11))


@tansu_latest_offsets
def test_seek_past_the_end_applies_the_reset_policy(orders: tidings.Bus) -> None:
    with orders.consumer(auto_offset_reset="earliest") as consumer:
        consumer.assign(TP0)
        consumer.seek(TP0, 1000)
        assert offsets(collect(consumer, 10)) == list(range(10))
    with orders.consumer(auto_offset_reset="none") as consumer:
        consumer.assign(TP0)
        consumer.seek(TP0, 1000)
        with pytest.raises(tidings.OffsetOutOfRangeError, match="1000"):
            consumer.poll(timeout_ms=1000)


def test_pause_takes_back_records_not_yet_handed_out(reader: tidings.Consumer) -> None:
    records = iter(reader)
    first = next(records)
    paused = TopicPartition(first.topic, first.partition)
    reader.pause(paused)
    rest = [next(records) for _ in range(10)]  # all of the other partition
    assert all((r.topic, r.partition) != paused for r in rest)
    reader.resume(paused)
    back = [next(records) for _ in range(9)]
    assert [(r.partition, r.offset) for r in back] == [(paused.partition, o) for o in range(1, 10)]
