"""confluent-kafka (librdkafka) against tidings serve: produce, fetch, offsets, admin."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tidings import TopicPartition
from tidings.core import kafka_batch

from .conftest import Served


def producer(broker: Served, **config: Any) -> Producer:
    """An idempotent producer with acks=all, as production setups run it."""
    return Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            **config,
        }
    )


def consumer(broker: Served, **config: Any) -> Consumer:
    """A consumer for assign()-style reading (no group membership)."""
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "readers",
            "enable.auto.commit": False,
            **config,
        }
    )


def read(c: Consumer, count: int, timeout_s: float = 15.0) -> list[Any]:
    """`count` messages from an assigned consumer, failing on an error or a timeout."""
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < count:
        assert time.monotonic() < deadline, f"got {len(out)} of {count} messages"
        for m in c.consume(num_messages=count - len(out), timeout=0.5):
            if m.error():
                raise KafkaException(m.error())
            out.append(m)
    return out


def produce(p: Producer, topic: str, items: list[dict[str, Any]]) -> list[Any]:
    """Produce and flush; the delivery reports, failing on any error."""
    reports: list[Any] = []

    def delivered(err: Any, msg: Any) -> None:
        assert err is None, err
        reports.append(msg)

    for item in items:
        p.produce(topic, on_delivery=delivered, **item)
    assert p.flush(15) == 0, "messages left undelivered"
    return reports


def test_records_from_a_kafka_producer_read_the_same_in_kafka_and_in_python(
    broker: Served,
) -> None:
    items = [
        {
            "key": f"k{i % 7}".encode(),
            "value": f"value {i}".encode(),
            "headers": [("trace", f"t{i}".encode()), ("empty", None)],
            "timestamp": 1_700_000_000_000 + i,
        }
        for i in range(500)
    ]
    reports = produce(producer(broker), "orders", items)
    assert sorted(m.offset() for m in reports) == list(range(500))

    c = consumer(broker)
    c.assign([KafkaPartition("orders", 0, OFFSET_BEGINNING)])
    got = read(c, 500)
    c.close()
    assert [m.offset() for m in got] == list(range(500))
    for m, item in zip(got, items, strict=True):
        assert (m.key(), m.value(), m.timestamp()[1]) == (
            item["key"],
            item["value"],
            item["timestamp"],
        )
        assert m.headers() == item["headers"]

    with broker.bus() as bus:
        records = bus.consumer("orders", group="py", from_beginning=True)
        seen = []
        while len(seen) < 500:
            seen += records.poll(max_records=500, timeout_ms=2000)
        records.close()
    for r, item in zip(seen, items, strict=True):
        assert (r.key, r.value, r.timestamp) == (item["key"], item["value"], item["timestamp"])
        assert list(r.headers) == item["headers"]


def test_records_from_python_read_the_same_in_kafka(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("prices", partitions=2)
        sent = [
            bus.publish("prices", f"p{i}".encode(), key=f"k{i}".encode(), headers={"n": b"%d" % i})
            for i in range(20)
        ]
        bus.publish("prices", None, key=b"gone", partition=0)  # a tombstone
    c = consumer(broker)
    c.assign([KafkaPartition("prices", p, OFFSET_BEGINNING) for p in (0, 1)])
    got = read(c, 21)
    c.close()
    by_value = {m.value(): m for m in got}
    for i, meta in enumerate(sent):
        m = by_value[f"p{i}".encode()]
        assert (m.partition(), m.offset(), m.key()) == (meta.partition, meta.offset, f"k{i}".encode())
        assert m.timestamp()[1] == meta.timestamp
        assert m.headers() == [("n", b"%d" % i)]
    assert by_value[None].key() == b"gone"


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_are_kept_as_sent_and_read_back(broker: Served, codec: str) -> None:
    topic = f"compressed-{codec}"
    values = [f"{codec} value {i} ".encode() * 10 for i in range(300)]
    produce(producer(broker, **{"compression.type": codec}), topic, [{"value": v} for v in values])
    c = consumer(broker)
    c.assign([KafkaPartition(topic, 0, OFFSET_BEGINNING)])
    assert [m.value() for m in read(c, 300)] == values
    c.close()
    with broker.bus() as bus:
        r = bus.consumer()
        tp = TopicPartition(topic, 0)
        r.assign(tp)
        r.seek(tp, "earliest")
        seen = []
        while len(seen) < 300:
            seen += r.poll(max_records=300, timeout_ms=2000)
        r.close()
        stored = bus.engine.store.read(topic, 0, 0, 1 << 30)  # type: ignore[attr-defined]
    assert [x.value for x in seen] == values
    assert {kafka_batch.read_header(b.data).compression for b in stored} == {codec}


def test_acks_zero_and_acks_one_are_stored(broker: Served) -> None:
    for acks in ("0", "1"):
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks})
        produce(p, f"acks-{acks}", [{"value": b"%d" % i} for i in range(100)])
    c = consumer(broker)
    for acks in ("0", "1"):
        c.assign([KafkaPartition(f"acks-{acks}", 0, OFFSET_BEGINNING)])
        assert sorted(int(m.value()) for m in read(c, 100)) == list(range(100))
    c.close()


def test_seek_watermarks_and_offsets_for_times(broker: Served) -> None:
    base = 1_800_000_000_000
    produce(
        producer(broker),
        "clock",
        [{"value": b"%d" % i, "timestamp": base + 1000 * i} for i in range(10)],
    )
    c = consumer(broker)
    assert c.get_watermark_offsets(KafkaPartition("clock", 0), timeout=10) == (0, 10)
    [found] = c.offsets_for_times([KafkaPartition("clock", 0, base + 4500)], timeout=10)
    assert found.offset == 5
    [after] = c.offsets_for_times([KafkaPartition("clock", 0, base + 60_000)], timeout=10)
    assert after.offset == -1  # no record that late: Kafka answers "none" (end)
    c.assign([KafkaPartition("clock", 0, found.offset)])
    assert [int(m.value()) for m in read(c, 5)] == [5, 6, 7, 8, 9]
    c.seek(KafkaPartition("clock", 0, 2))
    assert int(read(c, 1)[0].value()) == 2
    c.close()


def test_admin_creates_describes_and_deletes_topics(broker: Served) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.create_topics(
        [
            NewTopic("admin.a", num_partitions=3, replication_factor=1,
                     config={"retention.ms": "60000", "cleanup.policy": "compact"}),
            NewTopic("admin.b", num_partitions=1, replication_factor=1),
        ]  # fmt: skip
    )
    for f in futures.values():
        f.result(15)
    topics = admin.list_topics(timeout=10).topics
    assert len(topics["admin.a"].partitions) == 3
    assert topics["admin.a"].partitions[2].leader == 0
    with broker.bus() as bus:
        spec = bus.describe_topic("admin.a").spec
        assert (spec.config.retention_ms, spec.config.cleanup_policy) == (60000, "compact")

    again = admin.create_topics([NewTopic("admin.a", num_partitions=1, replication_factor=1)])
    with pytest.raises(KafkaException) as exists:
        again["admin.a"].result(15)
    assert exists.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS

    replicated = admin.create_topics([NewTopic("admin.c", num_partitions=1, replication_factor=3)])
    with pytest.raises(KafkaException) as factor:
        replicated["admin.c"].result(15)
    assert factor.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    assert "one broker" in factor.value.args[0].str()

    bad = admin.create_topics(
        [NewTopic("admin.d", num_partitions=1, replication_factor=1, config={"retention.ms": "x"})]
    )
    with pytest.raises(KafkaException) as config:
        bad["admin.d"].result(15)
    assert config.value.args[0].code() == KafkaError.INVALID_CONFIG

    for f in admin.delete_topics(["admin.a", "admin.b"]).values():
        f.result(15)
    remaining = admin.list_topics(timeout=10).topics
    assert "admin.a" not in remaining and "admin.b" not in remaining
    missing = admin.delete_topics(["admin.a"])
    with pytest.raises(KafkaException) as gone:
        missing["admin.a"].result(15)
    assert gone.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
