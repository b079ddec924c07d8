"""Retention on tidings serve, seen from confluent-kafka: a backfill outlives its segment."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # type: ignore[attr-defined]

from tidings.core.records import now_ms

from .conftest import Served
from .test_confluent import consumer, produce, producer, read

YEAR_MS = 365 * 86_400_000
SEGMENT_MS = 4_000
CHECK_INTERVAL_S = "0.2"


def test_records_stamped_a_year_ago_stay_for_segment_ms_then_go(
    start: Callable[..., Served],
) -> None:
    broker = start("--retention-check-interval", CHECK_INTERVAL_S)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = NewTopic("backfill", 1, 1, config={"segment.ms": str(SEGMENT_MS)})
    admin.create_topics([topic])["backfill"].result(15)
    [described] = admin.describe_configs([ConfigResource("TOPIC", "backfill")]).values()
    settings = {name: entry.value for name, entry in described.result(15).items()}
    assert settings["retention.ms"] == str(7 * 86_400_000)  # the default week
    assert (settings["segment.ms"], settings["segment.bytes"]) == (str(SEGMENT_MS), str(1 << 30))

    year_ago = now_ms() - YEAR_MS
    began = time.monotonic()
    items: list[dict[str, Any]] = [
        {"value": b"old-%d" % i, "timestamp": year_ago + i} for i in range(5)
    ]
    produce(producer(broker), "backfill", items)
    c = consumer(broker)
    c.assign([KafkaPartition("backfill", 0, 0)])
    messages = read(c, 5)
    assert [(m.value(), m.timestamp()[1]) for m in messages] == [
        (item["value"], item["timestamp"]) for item in items
    ]

    # several rounds of retention run while the segment is active: nothing goes
    while time.monotonic() - began < SEGMENT_MS / 1000 - 1:
        low, high = c.get_watermark_offsets(KafkaPartition("backfill", 0), timeout=10)
        assert (low, high) == (0, 5), "deleted before its segment would have rolled"
        time.sleep(0.2)

    deadline = time.monotonic() + 30
    while c.get_watermark_offsets(KafkaPartition("backfill", 0), timeout=10) != (5, 5):
        assert time.monotonic() < deadline, "a rolled backfill was never deleted"
        time.sleep(0.2)
    assert time.monotonic() - began >= SEGMENT_MS / 1000
    c.close()
