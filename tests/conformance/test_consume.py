"""Consuming: group reads in offset order, poll bounds, commits and where a reader starts."""

from __future__ import annotations

import time

import pytest

import tidings
from tidings import OffsetOutOfRangeError, TopicPartition

from .helpers import offsets, tansu_latest_offsets

TP0 = TopicPartition("orders", 0)


def fill(bus: tidings.Bus, partitions: int = 3, per_partition: int = 10) -> None:
    """Create "orders" and store `per_partition` numbered records in each partition."""
    bus.create_topic("orders", partitions=partitions)
    for p in range(partitions):
        bus.publish_many("orders", [b"%d-%d" % (p, i) for i in range(per_partition)], partition=p)


def drain(consumer: tidings.Consumer, expected: int, timeout_s: float = 2) -> list[tidings.Record]:
    """Poll until `expected` records arrived (fails on timeout or on more)."""
    out: list[tidings.Record] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        out.extend(consumer.poll(max_records=1000, timeout_ms=100))
    assert len(out) == expected, f"got {len(out)} records, expected {expected}"
    assert consumer.poll(timeout_ms=50) == []
    return out


def take_first(consumer: tidings.Consumer, count: int, timeout_s: float = 2) -> None:
    """Poll until exactly `count` records were handed out (a poll may give fewer)."""
    got = 0
    deadline = time.monotonic() + timeout_s
    while got < count and time.monotonic() < deadline:
        got += len(consumer.poll(max_records=count - got, timeout_ms=100))
    assert got == count, f"got {got} records, expected {count}"


def test_group_reads_everything_in_offset_order_per_partition(bus: tidings.Bus) -> None:
    fill(bus)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        records = drain(consumer, 30)
    for p in range(3):
        in_partition = [r for r in records if r.partition == p]
        assert offsets(in_partition) == list(range(10))
        assert [r.value for r in in_partition] == [b"%d-%d" % (p, i) for i in range(10)]
        assert all(r.topic == "orders" for r in in_partition)


def test_iteration_yields_records_then_new_ones(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=3)
    got: list[bytes | None] = []
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        for record in consumer:
            got.append(record.value)
            if len(got) == 3:
                bus.publish("orders", b"late")
            if len(got) == 4:
                break
    assert got == [b"0-0", b"0-1", b"0-2", b"late"]


def test_poll_bounds_max_records(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=25)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        sizes: list[int] = []
        while sum(sizes) < 25:
            batch = consumer.poll(max_records=10, timeout_ms=1000)
            assert batch
            sizes.append(len(batch))
        assert all(n <= 10 for n in sizes)


def test_poll_waits_at_most_timeout(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        consumer.poll(timeout_ms=0)
        start = time.monotonic()
        assert consumer.poll(timeout_ms=200) == []
        waited = time.monotonic() - start
    assert 0.15 <= waited < 1.0


def test_poll_returns_as_soon_as_a_record_arrives(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        consumer.poll(timeout_ms=0)
        with bus.producer(linger_ms=100) as producer:
            producer.send("orders", b"v")
            start = time.monotonic()
            records = consumer.poll(timeout_ms=5000)
            waited = time.monotonic() - start
    assert [r.value for r in records] == [b"v"]
    assert waited < 2


def test_auto_commit_on_close(bus: tidings.Bus) -> None:
    fill(bus, partitions=2, per_partition=5)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        drain(consumer, 10)
    d = bus.describe_group("g")
    assert {(p.partition, p.committed) for p in d.partitions} == {(0, 5), (1, 5)}
    bus.publish("orders", b"new", partition=0)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        assert [r.value for r in drain(consumer, 1)] == [b"new"]


def test_auto_commit_covers_only_records_handed_out(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=10)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        for n, _ in enumerate(consumer, 1):
            if n == 4:
                break
    with bus.consumer("orders", group="g") as consumer:
        assert [r.offset for r in drain(consumer, 6)] == list(range(4, 10))


def test_without_auto_commit_nothing_is_committed(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=5)
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as consumer:
        drain(consumer, 5)
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as consumer:
        assert offsets(drain(consumer, 5)) == list(range(5))


def test_manual_commit_then_restart_resumes_after_it(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=10)
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as consumer:
        first = consumer.poll(max_records=4, timeout_ms=1000)
        assert offsets(first) == [0, 1, 2, 3]
        consumer.commit()
        assert consumer.committed(TP0) == {TP0: 4}
        consumer.poll(max_records=3, timeout_ms=1000)  # read, never committed
    with bus.consumer("orders", group="g", auto_commit=False) as consumer:
        assert offsets(drain(consumer, 6)) == list(range(4, 10))


def test_commit_explicit_offsets(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=10)
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as consumer:
        drain(consumer, 10)
        consumer.commit({TP0: 7})
        assert consumer.committed() == {TP0: 7}
    with bus.consumer("orders", group="g", auto_commit=False) as consumer:
        assert offsets(drain(consumer, 3)) == [7, 8, 9]


@tansu_latest_offsets
def test_auto_offset_reset_latest_starts_at_the_end(bus: tidings.Bus) -> None:
    fill(bus, partitions=2, per_partition=5)
    with bus.consumer("orders", group="g", auto_offset_reset="latest") as consumer:
        assert consumer.poll(timeout_ms=100) == []
        bus.publish("orders", b"new", partition=1)
        (record,) = drain(consumer, 1)
    assert (record.partition, record.offset, record.value) == (1, 5, b"new")


def test_auto_offset_reset_earliest_starts_at_the_beginning(bus: tidings.Bus) -> None:
    fill(bus, partitions=2, per_partition=5)
    with bus.consumer("orders", group="g", auto_offset_reset="earliest") as consumer:
        assert len(drain(consumer, 10)) == 10


def test_auto_offset_reset_applies_only_without_a_commit(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=5)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        take_first(consumer, 2)
    with bus.consumer("orders", group="g", auto_offset_reset="latest") as consumer:
        assert offsets(drain(consumer, 3)) == [2, 3, 4]


def test_auto_offset_reset_none_raises_without_a_commit(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=5)
    with (
        bus.consumer("orders", group="g", auto_offset_reset="none") as consumer,
        pytest.raises(OffsetOutOfRangeError) as info,
    ):
        consumer.poll(timeout_ms=100)
    assert (info.value.topic, info.value.partition) == ("orders", 0)


def test_auto_offset_reset_none_resumes_from_a_commit(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=5)
    with bus.consumer("orders", group="g", from_beginning=True) as consumer:
        take_first(consumer, 2)
    with bus.consumer("orders", group="g", auto_offset_reset="none") as consumer:
        assert offsets(drain(consumer, 3)) == [2, 3, 4]


def test_assign_without_group_reads_chosen_partitions(bus: tidings.Bus) -> None:
    fill(bus, partitions=3, per_partition=4)
    consumer = bus.consumer(auto_offset_reset="earliest")
    try:
        consumer.assign(TopicPartition("orders", 2), TopicPartition("orders", 0))
        assert consumer.assignment() == {TopicPartition("orders", 0), TopicPartition("orders", 2)}
        records = drain(consumer, 8)
    finally:
        consumer.close()
    assert {r.partition for r in records} == {0, 2}
    assert bus.list_groups() == []


@tansu_latest_offsets
def test_assign_defaults_to_latest(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=4)
    consumer = bus.consumer()
    try:
        consumer.assign(TP0)
        assert consumer.poll(timeout_ms=50) == []
        bus.publish("orders", b"new")
        assert offsets(drain(consumer, 1)) == [4]
    finally:
        consumer.close()


def test_assigned_consumer_cannot_commit(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=1)
    consumer = bus.consumer()
    try:
        consumer.assign(TP0)
        with pytest.raises(tidings.ConfigurationError):
            consumer.commit({TP0: 1})
    finally:
        consumer.close()
    assert bus.list_groups() == []


def test_subscribing_needs_a_group(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=1)
    with pytest.raises(tidings.ConfigurationError):
        bus.consumer("orders")


def test_closed_consumer_refuses_poll(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=1)
    consumer = bus.consumer("orders", group="g", from_beginning=True)
    consumer.close()
    with pytest.raises(tidings.ClosedError):
        consumer.poll(timeout_ms=0)


def test_groups_are_independent(bus: tidings.Bus) -> None:
    fill(bus, partitions=2, per_partition=5)
    with bus.consumer("orders", group="a", from_beginning=True) as a:
        drain(a, 10)
    with bus.consumer("orders", group="b", from_beginning=True) as b:
        drain(b, 10)
    assert bus.list_groups() == ["a", "b"]


def test_subscribe_to_many_topics(bus: tidings.Bus) -> None:
    fill(bus, partitions=2, per_partition=3)
    bus.create_topic("payments")
    bus.publish("payments", b"paid")
    with bus.consumer("orders", "payments", group="g", from_beginning=True) as consumer:
        records = drain(consumer, 7)
    assert {r.topic for r in records} == {"orders", "payments"}


def test_a_rebalance_listener_that_raises_loses_no_record(bus: tidings.Bus) -> None:
    fill(bus, partitions=1, per_partition=10)
    calls = []

    def fail_once(change: tidings.Rebalance) -> None:
        calls.append(change)
        if len(calls) == 1:
            raise RuntimeError("listener failed")

    with bus.consumer("orders", group="g", from_beginning=True, on_rebalance=fail_once) as consumer:
        with pytest.raises(RuntimeError, match="listener failed"):
            consumer.poll(timeout_ms=1000)
        assert offsets(drain(consumer, 10)) == list(range(10))
    assert bus.describe_group("g").partitions[0].committed == 10
