"""Retention: whole old batches go, the log start moves, offsets are never reused.

Time retention spares a batch until its segment would have rolled (segment_ms after it was
appended, or segment_bytes later); the tests of the timestamp rule set segment_ms=0.
"""

from __future__ import annotations

import time

import pytest

import tidings
from tidings import TopicPartition
from tidings.engines.base import Capability

from .helpers import offsets, read_partition

HOUR_MS = 3_600_000
WEEK_MS = 7 * 24 * HOUR_MS
YEAR_MS = 365 * 24 * HOUR_MS


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


def batch(bus: tidings.Bus, topic: str, timestamps: list[int], partition: int = 0) -> None:
    """Store one batch with these record timestamps."""
    with bus.producer() as producer:
        for ts in timestamps:
            producer.send(topic, b"v%d" % ts, partition=partition, timestamp=ts)


def extent(bus: tidings.Bus, topic: str, partition: int = 0) -> tuple[int, int]:
    """(start offset, end offset) of a partition."""
    state = bus.describe_topic(topic).partitions[partition]
    return state.start_offset, state.end_offset


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_old_batches_are_deleted(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old + 1, old + 2])
    batch(bus, "orders", [old + 3, old + 4])
    batch(bus, "orders", [now_ms(), now_ms()])
    bus.maintain()
    assert extent(bus, "orders") == (5, 7)
    assert offsets(read_partition(bus, "orders")) == [5, 6]
    assert bus.publish("orders", b"next").offset == 7
    assert offsets(read_partition(bus, "orders")) == [5, 6, 7]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_a_backfill_stamped_a_year_ago_is_kept_while_its_segment_is_active(
    bus: tidings.Bus,
) -> None:
    bus.create_topic("orders", retention_ms=WEEK_MS)
    year_ago = now_ms() - YEAR_MS
    batch(bus, "orders", [year_ago, year_ago + 1])
    batch(bus, "orders", [year_ago + 2])
    bus.maintain()
    assert extent(bus, "orders") == (0, 3)
    assert offsets(read_partition(bus, "orders")) == [0, 1, 2]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_a_backfill_is_readable_for_segment_ms_then_removed(bus: tidings.Bus) -> None:
    segment_ms = 1_000
    bus.create_topic("orders", retention_ms=WEEK_MS, segment_ms=segment_ms)
    year_ago = now_ms() - YEAR_MS
    start = now_ms()
    batch(bus, "orders", [year_ago, year_ago + 1])
    produced = now_ms()
    deadline = time.monotonic() + 30
    while True:
        before = now_ms()
        bus.maintain()
        after = now_ms()
        if extent(bus, "orders") == (2, 2):
            assert after - start >= segment_ms, "removed before its segment would have rolled"
            break
        assert before < produced + segment_ms, "kept after its segment would have rolled"
        assert offsets(read_partition(bus, "orders")) == [0, 1]
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert read_partition(bus, "orders") == []
    assert bus.publish("orders", b"next").offset == 2


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_a_backfill_loses_what_segment_bytes_came_after(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=WEEK_MS, segment_bytes=1)
    bus.create_topic("large", retention_ms=WEEK_MS, segment_bytes=1 << 20)
    year_ago = now_ms() - YEAR_MS
    for topic in ("orders", "large"):
        for i in range(3):
            batch(bus, topic, [year_ago + i])
    bus.maintain()
    assert extent(bus, "orders") == (2, 3)  # the last batch is its segment's, still active
    assert extent(bus, "large") == (0, 3)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_retention_bytes_deletes_a_backfill_whatever_its_segment(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=None)
    year_ago = now_ms() - YEAR_MS
    batch(bus, "orders", [year_ago])
    one_batch = bus.describe_topic("orders").partitions[0].size_bytes
    batch(bus, "orders", [year_ago + 1])
    batch(bus, "orders", [year_ago + 2])
    bus.alter_topic("orders", retention_bytes=one_batch)
    bus.maintain()
    assert extent(bus, "orders") == (2, 3)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_a_batch_goes_only_when_all_of_it_is_old(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, now_ms(), old])
    bus.maintain()
    assert extent(bus, "orders") == (0, 3)
    assert offsets(read_partition(bus, "orders")) == [0, 1, 2]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_retention_applies_per_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2, retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old], partition=0)
    batch(bus, "orders", [now_ms()], partition=0)
    batch(bus, "orders", [now_ms(), now_ms()], partition=1)
    bus.maintain()
    assert extent(bus, "orders", 0) == (2, 3)
    assert extent(bus, "orders", 1) == (0, 2)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_everything_old_empties_the_partition_but_keeps_the_end(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old, old])
    bus.maintain()
    assert extent(bus, "orders") == (3, 3)
    assert bus.describe_topic("orders").partitions[0].size_bytes == 0
    assert read_partition(bus, "orders") == []
    assert bus.publish("orders", b"next").offset == 3


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_no_retention_keeps_everything(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=None)
    batch(bus, "orders", [1, 2, 3])
    bus.maintain()
    assert extent(bus, "orders") == (0, 3)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_shortened_retention_applies_on_next_maintain(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old])
    bus.maintain()
    assert extent(bus, "orders") == (0, 1)
    bus.alter_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    bus.maintain()
    assert extent(bus, "orders") == (1, 1)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_retention_bytes_keeps_the_partition_under_the_limit(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=None)
    for i in range(10):
        bus.publish("orders", b"x" * 100, timestamp=i)
    one_batch = bus.describe_topic("orders").partitions[0].size_bytes // 10
    bus.alter_topic("orders", retention_bytes=3 * one_batch + one_batch // 2)
    bus.maintain()
    state = bus.describe_topic("orders").partitions[0]
    assert state.size_bytes <= 3 * one_batch + one_batch // 2
    assert (state.start_offset, state.end_offset) == (7, 10)
    assert offsets(read_partition(bus, "orders")) == [7, 8, 9]
    assert bus.publish("orders", b"next").offset == 10


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_retention_bytes_under_the_limit_deletes_nothing(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=None, retention_bytes=1 << 20)
    for i in range(5):
        bus.publish("orders", b"x" * 100, timestamp=i)
    bus.maintain()
    assert extent(bus, "orders") == (0, 5)


@pytest.mark.needs(Capability.COMPACTION)
@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_compact_only_topic_ignores_retention(bus: tidings.Bus) -> None:
    bus.create_topic("orders", cleanup_policy="compact", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old])
    bus.maintain()
    assert extent(bus, "orders") == (0, 2)


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_group_behind_the_log_start_continues_from_it(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old, old])
    batch(bus, "orders", [now_ms(), now_ms()])
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as c:
        assert offsets(c.poll(max_records=1, timeout_ms=1000)) == [0]
        c.commit()
    bus.maintain()
    with bus.consumer("orders", group="g", auto_offset_reset="earliest") as c:
        got = []
        while batch_ := c.poll(timeout_ms=100):
            got.extend(batch_)
    assert offsets(got) == [3, 4]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_lag_without_a_commit_counts_from_the_log_start(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old, old])
    batch(bus, "orders", [now_ms(), now_ms()])
    bus.maintain()
    with bus.consumer("orders", group="g", auto_commit=False):
        (partition,) = bus.describe_group("g").partitions
    assert (partition.committed, partition.start_offset, partition.end_offset) == (None, 3, 5)
    assert partition.lag == 2


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_group_behind_the_log_start_with_latest_jumps_to_the_end(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old, old])
    batch(bus, "orders", [now_ms(), now_ms()])
    with bus.consumer("orders", group="g", from_beginning=True, auto_commit=False) as c:
        c.poll(max_records=1, timeout_ms=1000)
        c.commit()
    bus.maintain()
    with bus.consumer("orders", group="g", auto_offset_reset="latest") as c:
        assert c.poll(timeout_ms=100) == []
        bus.publish("orders", b"new")
        assert offsets(c.poll(timeout_ms=1000)) == [5]


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_reader_behind_the_log_start_is_moved_to_it(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old])
    batch(bus, "orders", [now_ms()])
    consumer = bus.consumer(auto_offset_reset="earliest")
    try:
        tp = TopicPartition("orders", 0)
        consumer.assign(tp)
        consumer.seek(tp, 0)
        bus.maintain()
        assert offsets(consumer.poll(timeout_ms=1000)) == [2]
    finally:
        consumer.close()


@pytest.mark.needs(Capability.CLEANUP_ON_DEMAND)
def test_reader_behind_the_log_start_with_reset_none_raises(bus: tidings.Bus) -> None:
    bus.create_topic("orders", retention_ms=HOUR_MS, segment_ms=0)
    old = now_ms() - 2 * HOUR_MS
    batch(bus, "orders", [old, old])
    batch(bus, "orders", [now_ms()])
    consumer = bus.consumer(auto_offset_reset="none")
    try:
        tp = TopicPartition("orders", 0)
        consumer.assign(tp)
        consumer.seek(tp, 0)
        bus.maintain()
        with pytest.raises(tidings.OffsetOutOfRangeError) as info:
            consumer.poll(timeout_ms=1000)
        assert (info.value.offset, info.value.start, info.value.end) == (0, 2, 3)
    finally:
        consumer.close()
