"""Producing through librdkafka: the offsets a send reports are where its record is."""

from __future__ import annotations

import time
from collections.abc import Callable

import tidings
from tests.conformance.kafka_brokers import Broker, start_tansu

DEADLINE_S = 30.0


def test_offsets_are_exact_while_batches_wait_for_room(
    brokers: Callable[[Broker], Broker],
) -> None:
    address = brokers(start_tansu()).wait()
    # librdkafka holds 500 records: each batch of ~2,000 waits for room many times, while
    # the batches after it are ready to go to the same partition
    url = f"kafka://{address}?queue_buffering_max_messages=500"
    values = [b"%06d" % i for i in range(20_000)]
    with tidings.connect(url) as bus:
        bus.create_topic("orders")
        with bus.producer(batch_size=12_000) as producer:
            futures = [producer.send("orders", v) for v in values]
            producer.flush()
        sent = {f.result().offset: v for f, v in zip(futures, values, strict=True)}
        assert sorted(sent) == list(range(len(values)))
        reader = bus.consumer()
        reader.assign(tidings.TopicPartition("orders", 0))
        reader.seek(tidings.TopicPartition("orders", 0), "earliest")
        stored: dict[int, bytes | None] = {}
        deadline = time.monotonic() + DEADLINE_S
        while len(stored) < len(values) and time.monotonic() < deadline:
            stored.update((r.offset, r.value) for r in reader.poll(5000, timeout_ms=500))
        reader.close()
    assert stored == sent
