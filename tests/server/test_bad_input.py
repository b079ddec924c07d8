"""Bad frames and bad batches: a clear error or a closed connection, nothing stored, the
broker still serving everyone else."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import struct
import threading
import time
from collections.abc import Callable

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer
from confluent_kafka import TopicPartition as KafkaTopicPartition
from kio.schema.errors import ErrorCode

from tidings import Record, TopicPartition
from tidings.core import kafka_batch

from ..unit.test_kafka_check import batch_of
from . import wire
from .conftest import Served

API_VERSIONS, METADATA, PRODUCE = 18, 3, 0


def still_serving(broker: Served) -> None:
    """A fresh client is answered: the broker survived whatever came before."""
    response = wire.call(broker.bootstrap, API_VERSIONS, 3, {})
    assert response.error_code == ErrorCode.none
    assert any(k.api_key == PRODUCE for k in response.api_keys)


def closed_after(broker: Served, payload: bytes) -> bool:
    """Whether the broker closes a connection that sent `payload`."""
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(payload)
        return wire.read_frame(sock) is None


def batch(values: list[bytes], corrupt: bool = False) -> bytes:
    """A Kafka record batch of `values`, optionally with one flipped byte after its CRC."""
    records = [Record("t", 0, i, 1_700_000_000_000, None, v) for i, v in enumerate(values)]
    data = bytearray(kafka_batch.encode(records, 0))
    if corrupt:
        data[-1] ^= 0xFF
    return bytes(data)


def produce(broker: Served, topic: str, records: bytes, version: int = 9) -> ErrorCode:
    """One Produce request (acks=all) for partition 0; its error code."""
    response = wire.call(
        broker.bootstrap,
        PRODUCE,
        version,
        {
            "acks": -1,
            "timeout": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
        },
    )
    [topic_response] = response.responses
    [partition] = topic_response.partition_responses
    return ErrorCode(partition.error_code)


def end_offset(broker: Served, topic: str) -> int:
    """The topic's partition 0 end offset, read through the Python API."""
    with broker.bus() as bus:
        return bus.describe_topic(topic).partitions[0].end_offset


def test_malformed_truncated_oversized_and_unknown_frames_close_only_their_connection(
    broker: Served,
) -> None:
    bad: list[bytes] = [
        struct.pack(">i", 2) + b"\x00\x03",  # shorter than any request header
        struct.pack(">i", 40) + b"\x00\x03\x00\x0c" + os.urandom(36),  # Metadata v12, garbage
        struct.pack(">i", 0x7FFFFFFF),  # over socket.request.max.bytes (100 MiB)
        struct.pack(">i", -5),
        struct.pack(">i", 14) + b"\x03\xe7\x00\x00" + b"\x00" * 10,  # API key 999
    ]
    for payload in bad:
        assert closed_after(broker, payload), payload[:12]
    with wire.connect(broker.bootstrap) as sock:  # a frame cut off mid-way by the client
        sock.sendall(struct.pack(">i", 100) + b"\x00\x12\x00\x03")
    still_serving(broker)
    assert "closing the connection" in broker.log()


def test_an_api_versions_request_in_an_unknown_version_gets_the_supported_list(
    broker: Served,
) -> None:
    frame = bytearray(wire.request_frame(API_VERSIONS, 3, {}))
    struct.pack_into(">h", frame, 6, 99)  # ApiVersions v99
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(bytes(frame))
        answer = wire.read_frame(sock)
    assert answer is not None
    response = wire.parse_response(answer, API_VERSIONS, 0)
    assert response.error_code == ErrorCode.unsupported_version
    assert {k.api_key for k in response.api_keys} >= {PRODUCE, METADATA, API_VERSIONS}


def test_a_batch_with_a_bad_crc_is_refused_and_nothing_is_stored(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("crc")
    assert produce(broker, "crc", batch([b"good"])) == ErrorCode.none
    assert produce(broker, "crc", batch([b"bad one", b"bad two"], corrupt=True)) == (
        ErrorCode.corrupt_message
    )
    assert produce(broker, "crc", b"\x00" * 30) == ErrorCode.corrupt_message  # truncated
    assert end_offset(broker, "crc") == 1
    still_serving(broker)


def test_produce_to_a_missing_topic_with_auto_create_off(start: Callable[..., Served]) -> None:
    broker = start("--no-auto-create-topics")
    assert produce(broker, "absent", batch([b"x"])) == ErrorCode.unknown_topic_or_partition
    response = wire.call(
        broker.bootstrap,
        METADATA,
        12,
        {"topics": [{"name": "absent"}], "allow_auto_topic_creation": True},
    )
    assert response.topics[0].error_code == ErrorCode.unknown_topic_or_partition
    with broker.bus() as bus:
        assert "absent" not in {t.name for t in bus.list_topics()}


def test_two_hundred_connections_at_once_are_all_served(broker: Served) -> None:
    barrier = threading.Barrier(200)

    def one(i: int) -> int:
        with wire.connect(broker.bootstrap) as sock:
            barrier.wait(30)
            sock.sendall(wire.request_frame(METADATA, 12, {"topics": None}, correlation_id=i))
            frame = wire.read_frame(sock)
            assert frame is not None
            (correlation_id,) = struct.unpack_from(">i", frame)
            return int(correlation_id)  # the correlation id comes back

    with concurrent.futures.ThreadPoolExecutor(200) as pool:
        assert sorted(pool.map(one, range(200))) == list(range(200))
    still_serving(broker)


def test_sigterm_answers_or_refuses_each_produce_and_loses_no_acknowledged_record(
    broker: Served,
) -> None:
    acknowledged: dict[int, bytes] = {}
    stop = threading.Event()

    def produce_until_stopped() -> None:
        p = Producer(
            {
                "bootstrap.servers": broker.bootstrap,
                "acks": "all",
                "linger.ms": 1,
                "message.timeout.ms": 5000,
                "reconnect.backoff.max.ms": 100,
            }
        )

        def delivered(err: object, msg: object) -> None:
            if err is None:
                acknowledged[msg.offset()] = msg.value()  # type: ignore[attr-defined]

        i = 0
        while not stop.is_set():
            p.produce("busy", b"record %d" % i, on_delivery=delivered)
            p.poll(0)
            i += 1
            if i % 100 == 0:
                time.sleep(0.005)
        p.flush(10)

    thread = threading.Thread(target=produce_until_stopped)
    thread.start()
    deadline = time.monotonic() + 15
    while len(acknowledged) < 500:
        assert time.monotonic() < deadline, "the producer never got going"
        time.sleep(0.01)
    assert broker.stop(signal.SIGTERM) == 0, broker.log()
    stop.set()
    thread.join(30)
    with broker.bus() as bus:
        consumer = bus.consumer("busy", group="check", from_beginning=True)
        stored: dict[int, bytes | None] = {}
        while True:
            records = consumer.poll(max_records=10_000, timeout_ms=300)
            if not records:
                break
            stored.update((r.offset, r.value) for r in records)
        consumer.close()
    missing = {o: v for o, v in acknowledged.items() if stored.get(o) != v}
    assert not missing, f"{len(missing)} acknowledged records are not stored as acknowledged"
    assert "shutting down" in broker.log()


def test_a_retried_idempotent_batch_is_not_stored_twice_even_across_a_restart(
    start: Callable[..., Served],
) -> None:
    broker = start()
    with broker.bus() as bus:
        bus.create_topic("idem")
    records = [Record("idem", 0, 0, 1_700_000_000_000, None, b"once")]
    first = kafka_batch.encode(records, 0, producer_id=4242, producer_epoch=0, base_sequence=0)
    assert produce(broker, "idem", first) == ErrorCode.none
    assert produce(broker, "idem", first) == ErrorCode.none  # a retry: answered, not stored
    assert end_offset(broker, "idem") == 1
    gap = kafka_batch.encode(records, 0, producer_id=4242, producer_epoch=0, base_sequence=5)
    assert produce(broker, "idem", gap) == ErrorCode.out_of_order_sequence_number

    assert broker.stop() == 0
    again = start(name="data")  # the same data directory: the broker restarted
    assert produce(again, "idem", first) == ErrorCode.none  # still recognised as a retry
    assert end_offset(again, "idem") == 1
    following = kafka_batch.encode(records, 0, producer_id=4242, producer_epoch=0, base_sequence=1)
    assert produce(again, "idem", following) == ErrorCode.none
    assert end_offset(again, "idem") == 2


def test_a_batch_of_garbage_records_is_refused_and_every_reader_goes_on(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("garbage")
    assert produce(broker, "garbage", batch([b"before"])) == ErrorCode.none
    three = batch([b"a", b"b", b"c"])[kafka_batch.HEADER.size :]
    garbage = [
        batch_of(os.urandom(40), 3),
        batch_of(b"\xff" * 12, 2),  # a varint longer than 10 bytes
        batch_of(three[:-1], 3),  # the last record cut short
        batch_of(three + b"\x00", 3),  # a byte after the last record
        batch_of(three, 2),  # more records than the header says
        batch_of(batch([b"a", b"b"])[kafka_batch.HEADER.size :].replace(b"\x02", b"\x04"), 2),
    ]
    for records in garbage:
        kafka_batch.read_header(records)  # header and CRC hold: only the records are bad
        assert produce(broker, "garbage", records) == ErrorCode.invalid_record
        assert produce(broker, "garbage", records, version=7) == ErrorCode.corrupt_message
    assert produce(broker, "garbage", batch([b"after"])) == ErrorCode.none
    assert end_offset(broker, "garbage") == 2

    with broker.bus() as bus, bus.consumer(auto_offset_reset="earliest") as reader:
        reader.assign(TopicPartition("garbage", 0))
        assert [r.value for r in reader.poll(timeout_ms=5000)] == [b"before", b"after"]
    http = httpx.get(f"{broker.http}/topics/garbage/partitions/0/records", timeout=10)
    assert [r["value"] for r in http.json()["records"]] == ["before", "after"]
    kafka = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "readers"})
    try:
        kafka.assign([KafkaTopicPartition("garbage", 0, OFFSET_BEGINNING)])
        values: list[bytes | None] = []
        deadline = time.monotonic() + 15
        while len(values) < 2 and time.monotonic() < deadline:
            for m in kafka.consume(num_messages=2, timeout=0.5):
                assert m.error() is None, m.error()
                values.append(m.value())
        assert values == [b"before", b"after"]
    finally:
        kafka.close()
    still_serving(broker)
