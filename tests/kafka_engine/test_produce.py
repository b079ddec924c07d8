"""Producing through librdkafka: the offsets a send reports are where its record is, and
one producer's records of a partition are stored in the order they were sent.

Records go to librdkafka as they are sent (a stream per batch); these cases also drive
the other way, whole batches, and the two mixed."""

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
        offsets = [f.result().offset for f in futures]
        assert offsets == list(range(len(values)))  # in the order sent, none lost
        assert _stored(bus, len(values)) == dict(zip(offsets, values, strict=True))


def test_producers_sharing_a_partition_each_learn_where_their_records_went(
    brokers: Callable[[Broker], Broker],
) -> None:
    address = brokers(start_tansu()).wait()
    with tidings.connect(f"kafka://{address}") as bus:
        bus.create_topic("orders")
        producers = [bus.producer(linger_ms=50) for _ in range(2)]
        sent: dict[bytes, tidings.RecordFuture] = {}
        many: list[tuple[list[bytes], tidings.BatchFuture]] = []
        order: list[list[bytes]] = [[], []]  # each producer's values, in the order sent
        for i in range(3_000):
            for n, p in enumerate(producers):
                value = b"%d-%06d" % (n, i)
                sent[value] = p.send("orders", value)
                order[n].append(value)
            if i % 1_000 == 0:  # whole batches between the streamed records
                values = [b"m-%06d-%d" % (i, j) for j in range(100)]
                many.append((values, producers[0].send_many("orders", values)))
                order[0].extend(values)
        for p in producers:
            p.close()
        offset_of = {v: f.result().offset for v, f in sent.items()}
        for values, published in many:
            offset_of.update((v, m.offset) for m, v in zip(published.result(), values, strict=True))
        where = {o: v for v, o in offset_of.items()}
        assert _stored(bus, len(where)) == where
        for values in order:  # each producer's records stored in the order it sent them
            offsets = [offset_of[v] for v in values]
            assert offsets == sorted(offsets)


def _stored(bus: tidings.Bus, count: int) -> dict[int, bytes | None]:
    """Offset to value of the first `count` records of orders[0], read back."""
    reader = bus.consumer()
    reader.assign(tidings.TopicPartition("orders", 0))
    reader.seek(tidings.TopicPartition("orders", 0), "earliest")
    stored: dict[int, bytes | None] = {}
    deadline = time.monotonic() + DEADLINE_S
    while len(stored) < count and time.monotonic() < deadline:
        stored.update((r.offset, r.value) for r in reader.poll(5000, timeout_ms=500))
    reader.close()
    return stored
