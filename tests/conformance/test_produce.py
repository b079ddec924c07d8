"""Publishing: where records go, what comes back, and exact round-trips."""

from __future__ import annotations

import time

import pytest

import tidings
from tests.kafka_vectors import KAFKA_MURMUR2
from tidings.core.partitioner import partition_for_key

from .helpers import offsets, read_all, read_partition


def test_publish_returns_metadata(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=1)
    before = time.time_ns() // 1_000_000
    meta = bus.publish("orders", b"v")
    after = time.time_ns() // 1_000_000
    assert isinstance(meta, tidings.RecordMetadata)
    assert (meta.topic, meta.partition, meta.offset) == ("orders", 0, 0)
    assert before <= meta.timestamp <= after


def test_offsets_are_dense_from_zero_per_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=3)
    seen: dict[int, list[int]] = {0: [], 1: [], 2: []}
    for i in range(30):
        meta = bus.publish("orders", b"%d" % i, partition=i % 3)
        seen[meta.partition].append(meta.offset)
    assert seen == {p: list(range(10)) for p in range(3)}
    d = bus.describe_topic("orders")
    assert [p.end_offset for p in d.partitions] == [10, 10, 10]


def test_record_round_trips_exactly(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    headers = [("trace", b"abc"), ("empty", b""), ("none", None), ("trace", b"second")]
    meta = bus.publish(
        "orders", b"\x00value\xff", key=b"k\x00", headers=headers, partition=1, timestamp=1234
    )
    assert (meta.partition, meta.timestamp) == (1, 1234)
    (record,) = read_partition(bus, "orders", 1)
    assert isinstance(record, tidings.Record)
    assert record.topic == "orders"
    assert (record.partition, record.offset, record.timestamp) == (1, 0, 1234)
    assert record.key == b"k\x00"
    assert record.value == b"\x00value\xff"
    assert record.headers == (
        ("trace", b"abc"),
        ("empty", b""),
        ("none", None),
        ("trace", b"second"),
    )
    assert record.header("trace") == b"second"
    assert record.header("missing") is None


def test_headers_as_mapping(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.publish("orders", b"v", headers={"source": b"web", "kind": "text", "gone": None})
    (record,) = read_partition(bus, "orders")
    assert record.headers == (("source", b"web"), ("kind", b"text"), ("gone", None))


def test_no_headers_is_empty_tuple(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.publish("orders", b"v")
    (record,) = read_partition(bus, "orders")
    assert record.headers == ()


def test_tombstone_and_null_key_round_trip(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.publish("orders", None, key=b"k")
    bus.publish("orders", b"v", key=None)
    bus.publish("orders", None)
    bus.publish("orders", b"", key=b"")
    records = read_partition(bus, "orders")
    assert [(r.key, r.value) for r in records] == [
        (b"k", None),
        (None, b"v"),
        (None, None),
        (b"", b""),
    ]


def test_explicit_partition_and_timestamp_are_honoured(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=4)
    meta = bus.publish("orders", b"v", key=b"foobar", partition=3, timestamp=42)
    assert (meta.partition, meta.offset, meta.timestamp) == (3, 0, 42)
    (record,) = read_partition(bus, "orders", 3)
    assert (record.key, record.timestamp) == (b"foobar", 42)


@pytest.mark.parametrize("partitions", [1, 7, 12, 50])
def test_keyed_records_go_where_kafka_puts_them(bus: tidings.Bus, partitions: int) -> None:
    bus.create_topic("orders", partitions=partitions)
    for key, signed in KAFKA_MURMUR2.items():
        expected = (signed & 0x7FFFFFFF) % partitions
        assert bus.publish("orders", b"v", key=key).partition == expected, key
        assert partition_for_key(key, partitions) == expected, key


def test_same_key_same_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=8)
    keys = [b"customer-%d" % i for i in range(40)]
    published = [bus.publish("orders", b"1", key=k).partition for k in keys]
    assert [bus.publish("orders", b"2", key=k).partition for k in keys] == published
    with bus.producer(linger_ms=50) as producer:
        futures = [producer.send("orders", b"3", key=k) for k in keys]
        producer.flush()
    assert [f.result().partition for f in futures] == published
    assert [m.partition for m in bus.publish_many("orders", [b"4"] * 40, keys=keys)] == published
    assert len(set(published)) > 1


def test_keyed_publish_many_uses_the_same_partitioner(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=7)
    keys = list(KAFKA_MURMUR2)
    metas = bus.publish_many("orders", [b"v"] * len(keys), keys=keys)
    assert [m.partition for m in metas] == [(KAFKA_MURMUR2[k] & 0x7FFFFFFF) % 7 for k in keys]


def test_unkeyed_records_of_one_batch_stick_to_one_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=8)
    with bus.producer(linger_ms=200) as producer:
        futures = [producer.send("orders", b"%d" % i) for i in range(50)]
        producer.flush()
    metas = [f.result() for f in futures]
    assert len({m.partition for m in metas}) == 1
    assert [m.offset for m in metas] == list(range(50))


def test_unkeyed_publish_many_sticks_to_one_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=8)
    metas = bus.publish_many("orders", [b"%d" % i for i in range(100)])
    assert len({m.partition for m in metas}) == 1
    assert [m.offset for m in metas] == list(range(100))


def test_publish_many_returns_metadata_in_order(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    bus.publish("orders", b"first", partition=1)
    metas = bus.publish_many("orders", [b"a", None, b"c"], keys=[None, b"k", None], partition=1)
    assert len(metas) == 3
    assert [(m.topic, m.partition, m.offset) for m in metas] == [
        ("orders", 1, 1),
        ("orders", 1, 2),
        ("orders", 1, 3),
    ]
    records = read_partition(bus, "orders", 1)
    assert [(r.offset, r.key, r.value) for r in records] == [
        (0, None, b"first"),
        (1, None, b"a"),
        (2, b"k", None),
        (3, None, b"c"),
    ]


def test_publish_many_with_keys_keeps_order_per_partition(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=4)
    keys = [b"k%d" % (i % 5) for i in range(40)]
    values = [b"%d" % i for i in range(40)]
    metas = bus.publish_many("orders", values, keys=keys)
    records = read_all(bus, "orders")
    assert len(records) == 40
    by_value = {r.value: r for r in records}
    for meta, key, value in zip(metas, keys, values, strict=True):
        record = by_value[value]
        assert (record.partition, record.offset, record.key) == (meta.partition, meta.offset, key)
    for p in range(4):
        in_partition = [r for r in records if r.partition == p]
        assert offsets(in_partition) == list(range(len(in_partition)))
        assert [int(r.value or b"") for r in in_partition] == sorted(
            int(r.value or b"") for r in in_partition
        )
