"""confluent-kafka (librdkafka) against tidings serve: produce, fetch, offsets, admin."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from tidings import Record, TopicPartition
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
        seen: list[Record] = []
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
        assert (m.partition(), m.offset(), m.key()) == (
            meta.partition,
            meta.offset,
            f"k{i}".encode(),
        )
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
        seen: list[Record] = []
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
            NewTopic(
                "admin.a",
                num_partitions=3,
                replication_factor=1,
                config={"retention.ms": "60000", "cleanup.policy": "compact"},
            ),
            NewTopic("admin.b", num_partitions=1, replication_factor=1),
        ]
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


def group_consumer(broker: Served, group: str, **config: Any) -> Consumer:
    """A group member with short timeouts, committing by hand."""
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            **config,
        }
    )


def wait_for_assignment(c: Consumer, count: int, timeout_s: float = 20.0) -> list[Any]:
    """Poll until the member holds `count` partitions; the messages polled meanwhile."""
    got: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(c.assignment()) != count:
        assert time.monotonic() < deadline, f"assignment {c.assignment()} never reached {count}"
        m = c.poll(0.2)
        if m is not None and not m.error():
            got.append(m)
    return got


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_a_group_of_two_rebalances_when_one_leaves_and_commits_carry_over(
    broker: Served, strategy: str
) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("work", num_partitions=4, replication_factor=1)])["work"].result(
        15
    )
    produce(producer(broker), "work", [{"value": b"%d" % i, "partition": i % 4} for i in range(40)])

    config = {"partition.assignment.strategy": strategy}
    a = group_consumer(broker, "workers", **config)
    a.subscribe(["work"])
    seen = wait_for_assignment(a, 4)
    b = group_consumer(broker, "workers", **config)
    b.subscribe(["work"])
    while len(a.assignment()) != 2 or len(b.assignment()) != 2:
        for c in (a, b):
            m = c.poll(0.1)
            if m is not None and not m.error():
                seen.append(m)
    assert {tp.partition for tp in a.assignment()} | {tp.partition for tp in b.assignment()} == {
        0, 1, 2, 3
    }  # fmt: skip
    with broker.bus() as bus:
        described = bus.describe_group("workers")
        assert described.state == "Stable" and described.strategy == strategy
        assert sorted(len(m.assignment) for m in described.members) == [2, 2]

    b.close()  # leaves: its partitions go back to a
    seen += wait_for_assignment(a, 4)
    # one more record on every partition: a, the only member now, reads each of them
    produce(producer(broker), "work", [{"value": b"late", "partition": p} for p in range(4)])
    late: set[int | None] = set()
    deadline = time.monotonic() + 15
    while len(late) < 4:
        assert time.monotonic() < deadline, f"late records read on {late} only"
        m = a.poll(0.2)
        if m is not None and not m.error():
            seen.append(m)
            if m.value() == b"late":
                late.add(m.partition())
    assert len({(m.partition(), m.offset()) for m in seen}) == 44  # none lost (at least once)
    a.commit(asynchronous=False)
    a.close()

    with broker.bus() as bus:
        lag = {p.partition: p.committed for p in bus.describe_group("workers").partitions}
        assert lag == {0: 11, 1: 11, 2: 11, 3: 11}
        bus.publish("work", b"after", partition=0)
        python = bus.consumer("work", group="workers")  # the same group, from Python
        got: list[Record] = []
        deadline = time.monotonic() + 15
        while not got:
            assert time.monotonic() < deadline, "the Python member got nothing"
            got = python.poll(timeout_ms=500)
        assert [r.value for r in got] == [b"after"]  # resumes where Kafka committed
        python.close()


def test_kafka_and_python_members_share_one_group(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("mixed", partitions=2)
        python = bus.consumer("mixed", group="both", session_timeout_ms=6000)
        python.poll(timeout_ms=200)
        assert len(python.assignment()) == 2
        k = group_consumer(broker, "both")
        k.subscribe(["mixed"])
        deadline = time.monotonic() + 20
        while len(k.assignment()) != 1 or len(python.assignment()) != 1:
            assert time.monotonic() < deadline, (k.assignment(), python.assignment())
            k.poll(0.1)
            python.poll(timeout_ms=100)
        assert {tp.partition for tp in k.assignment()} != {
            tp.partition for tp in python.assignment()
        }
        k.close()
        deadline = time.monotonic() + 20
        while len(python.assignment()) != 2:
            assert time.monotonic() < deadline, "the Python member never got both back"
            python.poll(timeout_ms=100)
        python.close()


def test_group_admin_lists_describes_and_deletes(broker: Served) -> None:
    produce(producer(broker), "audit", [{"value": b"x"}])
    c = group_consumer(broker, "auditors")
    c.subscribe(["audit"])
    wait_for_assignment(c, 1)
    c.commit(offsets=[KafkaPartition("audit", 0, 1)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(15)
    assert "auditors" in {g.group_id for g in listed.valid}
    [described] = admin.describe_consumer_groups(["auditors"]).values()
    group = described.result(15)
    assert len(group.members) == 1
    assert [tp.topic for tp in group.members[0].assignment.topic_partitions] == ["audit"]
    busy = admin.delete_consumer_groups(["auditors"])["auditors"]
    with pytest.raises(KafkaException) as not_empty:
        busy.result(15)
    assert not_empty.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    c.close()
    admin.delete_consumer_groups(["auditors"])["auditors"].result(15)
    with broker.bus() as bus:
        assert "auditors" not in bus.list_groups()


def test_admin_describes_and_alters_settings_and_adds_partitions(broker: Served) -> None:
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("cfg", num_partitions=1, replication_factor=1)])["cfg"].result(15)
    resource = ConfigResource(ConfigResource.Type.TOPIC, "cfg")

    def described() -> dict[str, Any]:
        [future] = admin.describe_configs([resource]).values()
        return {name: entry.value for name, entry in future.result(15).items()}

    assert described()["retention.ms"] == str(7 * 86_400_000)
    assert described()["cleanup.policy"] == "delete"

    changes = [
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
    ]
    altered = ConfigResource(ConfigResource.Type.TOPIC, "cfg", incremental_configs=changes)
    [done] = admin.incremental_alter_configs([altered]).values()
    done.result(15)
    assert described()["retention.ms"] == "3600000"
    assert described()["cleanup.policy"] == "compact,delete"
    with broker.bus() as bus:
        config = bus.describe_topic("cfg").spec.config
        assert (config.retention_ms, config.cleanup_policy) == (3_600_000, "compact,delete")

    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        "cfg",
        incremental_configs=[
            ConfigEntry("max.message.bytes", "-7", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    [refused] = admin.incremental_alter_configs([bad]).values()
    with pytest.raises(KafkaException) as invalid:
        refused.result(15)
    assert invalid.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert described()["max.message.bytes"] == str(1 << 20)  # unchanged

    # the older AlterConfigs replaces every setting: those not given go back to defaults
    replaced = ConfigResource(ConfigResource.Type.TOPIC, "cfg", set_config={"retention.ms": "1000"})
    with pytest.deprecated_call():  # still sent by older clients and tools
        [whole] = admin.alter_configs([replaced]).values()
    whole.result(15)
    assert (described()["retention.ms"], described()["cleanup.policy"]) == ("1000", "delete")

    admin.create_partitions([NewPartitions("cfg", 3)])["cfg"].result(15)
    assert len(admin.list_topics(timeout=10).topics["cfg"].partitions) == 3
    shrink = admin.create_partitions([NewPartitions("cfg", 2)])["cfg"]
    with pytest.raises(KafkaException) as fewer:
        shrink.result(15)
    assert fewer.value.args[0].code() == KafkaError.INVALID_PARTITIONS
