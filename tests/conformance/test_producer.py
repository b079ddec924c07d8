"""The batching producer: futures, flush, linger, send_many, and refused records."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

import tidings
from tidings import InvalidRecordError, RecordTooLargeError
from tidings.engines.base import Capability

from .helpers import read_all, read_partition, tansu_idempotence


def test_send_futures_resolve_after_flush_in_send_order(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=3)
    with bus.producer(linger_ms=10_000) as producer:
        futures = [producer.send("orders", b"%d" % i, partition=i % 3) for i in range(30)]
        producer.flush()
        assert all(f.done() for f in futures)
        metas = [f.result(timeout=0) for f in futures]
    for p in range(3):
        assert [m.offset for m in metas if m.partition == p] == list(range(10))
    for p in range(3):
        values = [r.value for r in read_partition(bus, "orders", p)]
        assert values == [b"%d" % i for i in range(p, 30, 3)]


def test_send_carries_key_headers_and_timestamp(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.producer() as producer:
        future = producer.send(
            "orders", b"v", key=b"k", headers=[("a", b"1"), ("a", b"2")], timestamp=99
        )
        producer.flush()
    meta = future.result()
    assert (meta.topic, meta.partition, meta.offset, meta.timestamp) == ("orders", 0, 0, 99)
    (record,) = read_partition(bus, "orders")
    assert (record.key, record.value, record.headers, record.timestamp) == (
        b"k",
        b"v",
        (("a", b"1"), ("a", b"2")),
        99,
    )


def test_records_with_and_without_keys_and_headers_keep_their_own(bus: tidings.Bus) -> None:
    # one batch, its key and header columns started by a later record and left unfilled
    bus.create_topic("orders")
    sent: list[tuple[bytes | None, tuple[tuple[str, bytes], ...]]] = [
        (None, ()),
        (b"a", ()),
        (None, ()),
        (None, (("h", b"1"),)),
        (b"b", ()),
        (None, ()),
        (None, (("h", b"2"),)),
        (b"c", (("h", b"3"),)),
        (None, ()),
    ]
    with bus.producer(linger_ms=10_000) as producer:
        for i, (key, headers) in enumerate(sent):
            producer.send("orders", b"%d" % i, key=key, headers=headers)
        producer.flush()
    records = read_partition(bus, "orders")
    assert [(r.key, r.headers) for r in records] == sent
    assert [r.value for r in records] == [b"%d" % i for i in range(len(sent))]


def test_linger_delivers_without_flush(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.producer(linger_ms=20) as producer:
        start = time.monotonic()
        future = producer.send("orders", b"v")
        meta = future.result(timeout=2)
        assert time.monotonic() - start < 2
        assert meta.offset == 0
        assert bus.describe_topic("orders").partitions[0].end_offset == 1


def test_full_batch_is_stored_without_flush(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.producer(linger_ms=60_000, batch_size=100) as producer:
        futures = [producer.send("orders", b"x" * 60, partition=0) for _ in range(4)]
        assert futures[1].result(timeout=2).offset == 1
        producer.flush()
    assert [f.result().offset for f in futures] == [0, 1, 2, 3]


def test_close_flushes(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    producer = bus.producer(linger_ms=60_000)
    future = producer.send("orders", b"v")
    producer.close()
    assert future.result(timeout=0).offset == 0
    with pytest.raises(tidings.ClosedError):
        producer.send("orders", b"w")


def test_send_many_returns_metadata_in_order(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    values = [b"%d" % i for i in range(1000)]
    with bus.producer() as producer:
        batch = producer.send_many("orders", values, partition=1)
        producer.flush()
    metas = batch.result(timeout=5)
    assert len(metas) == 1000
    assert [m.offset for m in metas] == list(range(1000))
    assert {m.partition for m in metas} == {1}
    assert [r.value for r in read_partition(bus, "orders", 1)] == values


def test_send_many_with_keys(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=4)
    keys = [b"k%d" % (i % 10) for i in range(100)]
    with bus.producer() as producer:
        metas = producer.send_many("orders", [b"%d" % i for i in range(100)], keys=keys).result(5)
    stored = {(r.partition, r.offset): r for r in read_all(bus, "orders")}
    assert len(stored) == 100
    for i, meta in enumerate(metas):
        record = stored[(meta.partition, meta.offset)]
        assert (record.key, record.value) == (keys[i], b"%d" % i)


def test_many_producers_share_offsets_without_gaps(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    producers = [bus.producer(linger_ms=1) for _ in range(3)]
    futures = [p.send("orders", b"%d" % i) for i in range(20) for p in producers]
    for p in producers:
        p.close()
    assert sorted(f.result().offset for f in futures) == list(range(60))


def test_record_over_max_message_bytes_is_refused(bus: tidings.Bus) -> None:
    bus.create_topic("orders", max_message_bytes=100)
    bus.publish("orders", b"before")
    with bus.producer() as producer:
        with pytest.raises(RecordTooLargeError) as info:
            producer.send("orders", b"x" * 101)
        assert (info.value.topic, info.value.size, info.value.limit) == ("orders", 101, 100)
        with pytest.raises(RecordTooLargeError):
            producer.send_many("orders", [b"ok", b"x" * 101])
        with pytest.raises(RecordTooLargeError):
            bus.publish("orders", b"x" * 101)
        with pytest.raises(RecordTooLargeError):
            bus.publish_many("orders", [b"x" * 101])
        producer.flush()
    assert [r.value for r in read_partition(bus, "orders")] == [b"before"]
    assert bus.publish("orders", b"x" * 10).offset == 1


@pytest.mark.needs(Capability.EXACT_RECORD_LIMIT)
def test_a_record_of_exactly_max_message_bytes_is_stored(bus: tidings.Bus) -> None:
    bus.create_topic("orders", max_message_bytes=1000)
    assert bus.publish("orders", b"x" * 1000).offset == 0
    assert bus.publish_many("orders", [b"v" * 500], keys=[b"k" * 500])[0].offset == 1


def test_key_and_headers_count_toward_the_limit(bus: tidings.Bus) -> None:
    bus.create_topic("orders", max_message_bytes=100)
    with pytest.raises(RecordTooLargeError):
        bus.publish("orders", b"x" * 60, key=b"k" * 60)
    with pytest.raises(RecordTooLargeError):
        bus.publish("orders", b"x" * 60, headers={"h": b"y" * 60})
    assert bus.describe_topic("orders").records == 0


@pytest.mark.parametrize("value", ["text", 42, {"a": 1}, [b"a"]])
def test_non_bytes_value_is_refused(bus: tidings.Bus, value: object) -> None:
    bus.create_topic("orders")
    with bus.producer() as producer:
        with pytest.raises(InvalidRecordError) as info:
            producer.send("orders", value)  # type: ignore[arg-type]
        assert isinstance(info.value, TypeError)
        with pytest.raises(InvalidRecordError):
            producer.send_many("orders", [b"ok", value])  # type: ignore[list-item]
    with pytest.raises(InvalidRecordError):
        bus.publish("orders", value)  # type: ignore[arg-type]
    assert bus.describe_topic("orders").records == 0


@pytest.mark.parametrize("key", ["text", 7])
def test_non_bytes_key_is_refused(bus: tidings.Bus, key: object) -> None:
    bus.create_topic("orders")
    with pytest.raises(InvalidRecordError):
        bus.publish("orders", b"v", key=key)  # type: ignore[arg-type]
    assert bus.describe_topic("orders").records == 0


@pytest.mark.parametrize(
    "headers",
    [[("h", 5)], [(1, b"v")], [("only-name",)], ["h"]],
    ids=["value", "name", "pair", "str"],
)
def test_bad_headers_are_refused(bus: tidings.Bus, headers: object) -> None:
    bus.create_topic("orders")
    with pytest.raises(InvalidRecordError):
        bus.publish("orders", b"v", headers=headers)  # type: ignore[arg-type]
    assert bus.describe_topic("orders").records == 0


def test_bytes_like_values_are_stored_as_bytes(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    bus.publish("orders", bytearray(b"ba"), key=memoryview(b"mv"))  # type: ignore[arg-type]
    (record,) = read_partition(bus, "orders")
    assert (record.key, record.value) == (b"mv", b"ba")
    assert type(record.value) is bytes


def test_record_over_buffer_memory_is_refused_at_once(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    outcome: list[BaseException | None] = []

    def send() -> None:
        try:
            with bus.producer(batch_size=1000, buffer_memory=1000) as producer:
                producer.send("orders", b"x" * 2000)
            outcome.append(None)
        except BaseException as e:  # reported to the test thread below
            outcome.append(e)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    thread.join(5)
    assert outcome, "send() of a record larger than buffer_memory blocked"
    error = outcome[0]
    assert isinstance(error, RecordTooLargeError)
    assert (error.size, error.limit, error.setting) == (2000, 1000, "buffer_memory")
    assert "buffer_memory" in str(error)
    producer = bus.producer(batch_size=1000, buffer_memory=1000)
    with pytest.raises(RecordTooLargeError):
        producer.send_many("orders", [b"ok", b"x" * 2000])
    producer.close()
    assert bus.describe_topic("orders").records == 0


def test_send_many_counts_toward_buffer_memory(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    producer = bus.producer(linger_ms=60_000, batch_size=1000, buffer_memory=1000)
    first = producer.send("orders", b"x" * 700)  # stays buffered: linger is long
    returned = threading.Event()

    def send_many() -> None:
        producer.send_many("orders", [b"y" * 100] * 5)
        returned.set()

    thread = threading.Thread(target=send_many, daemon=True)
    thread.start()
    assert not returned.wait(0.3), "send_many went past a full buffer"
    producer.flush()  # stores the first record, which makes room
    assert returned.wait(5)
    producer.close()
    assert first.result(timeout=0).offset == 0
    assert [r.value for r in read_partition(bus, "orders")] == [b"x" * 700] + [b"y" * 100] * 5


def test_send_many_larger_than_buffer_memory_is_stored_alone(bus: tidings.Bus) -> None:
    bus.create_topic("orders")
    with bus.producer(batch_size=1000, buffer_memory=1000) as producer:
        metas = producer.send_many("orders", [b"z" * 100] * 30).result(timeout=5)
        after = producer.send("orders", b"after").result(timeout=5)
    assert [m.offset for m in metas] == list(range(30))
    assert after.offset == 30


def test_send_many_counts_keys_toward_max_message_bytes(bus: tidings.Bus) -> None:
    bus.create_topic("orders", max_message_bytes=1000)
    with pytest.raises(RecordTooLargeError) as info:
        bus.publish_many("orders", [b"v"], keys=[b"k" * 5000])
    assert info.value.size == 5001
    with pytest.raises(RecordTooLargeError):
        bus.publish_many("orders", [b"v" * 600, b"w"], keys=[b"k" * 600, None])
    with bus.producer() as producer:
        with pytest.raises(RecordTooLargeError):
            producer.send_many("orders", [b"v" * 500], keys=[b"k" * 501])
        with pytest.raises(InvalidRecordError):
            producer.send_many("orders", [b"v"], keys=["text"])  # type: ignore[list-item]
    assert bus.describe_topic("orders").records == 0
    assert bus.publish_many("orders", [b"v" * 100], keys=[b"k" * 100])[0].offset == 0


RACING: dict[str, Any] = {"linger_ms": 5, "batch_size": 4096, "buffer_memory": 64 << 10}
"""Producer settings of the close races: a small buffer, so the senders also wait for room
when close() comes, and what close() must store stays small on every engine."""


def send_until_closed(
    send: Callable[[str, bytes], Any], futures: list[tuple[bytes, Any]], name: str
) -> None:
    """Send numbered records to 'orders' until a send is refused with ClosedError."""
    for i in itertools.count():
        value = b"%s-%d" % (name.encode(), i)
        try:
            futures.append((value, send("orders", value)))
        except tidings.ClosedError:
            return


def race_close(send: Callable[[str, bytes], Any], close: Callable[[], None], name: str) -> Any:
    """Three threads send until `close()`, called meanwhile, refuses them; their futures."""
    futures: list[list[tuple[bytes, Any]]] = [[], [], []]
    threads = [
        threading.Thread(target=send_until_closed, args=(send, f, f"{name}.{t}"), daemon=True)
        for t, f in enumerate(futures)
    ]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    close()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive(), "a send was neither accepted nor refused"
    return [f for per_thread in futures for f in per_thread]


def settle(futures: list[tuple[bytes, Any]]) -> dict[tuple[int, int], bytes]:
    """Where each record went; close() has returned, so every future must be settled."""
    stored: dict[tuple[int, int], bytes] = {}
    unsettled = sum(not future.done() for _, future in futures)
    assert unsettled == 0, f"{unsettled} of {len(futures)} sends still pending after close()"
    for value, future in futures:
        try:
            meta = future.result(timeout=0)
        except tidings.ClosedError:
            continue
        stored[(meta.partition, meta.offset)] = value
    return stored


@tansu_idempotence
def test_sends_racing_producer_close_are_stored_or_refused(bus: tidings.Bus) -> None:
    bus.create_topic("orders", partitions=2)
    stored: dict[tuple[int, int], bytes] = {}
    for trial in range(5):
        producer = bus.producer(**RACING)
        stored.update(settle(race_close(producer.send, producer.close, f"{trial}")))
    for p in range(2):
        by_offset = {r.offset: r.value for r in read_partition(bus, "orders", p)}
        assert {o: v for (q, o), v in stored.items() if q == p} == by_offset


@tansu_idempotence
def test_sends_racing_bus_close_are_stored_or_refused(bus_url: str) -> None:
    stored: dict[tuple[int, int], bytes] = {}
    for trial in range(5):
        bus = tidings.connect(bus_url)
        bus.create_topic("orders", partitions=2, exist_ok=True)
        producer = bus.producer(**RACING)
        stored.update(settle(race_close(producer.send, bus.close, f"{trial}")))
    if bus_url.startswith("memory"):
        return  # its records went with the bus; every future has settled, which is the point
    with tidings.connect(bus_url) as bus:
        for p in range(2):
            by_offset = {r.offset: r.value for r in read_partition(bus, "orders", p)}
            assert {o: v for (q, o), v in stored.items() if q == p} == by_offset
