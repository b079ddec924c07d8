"""Keeping up: waiting fetches woken by a commit, produce requests taken back to back."""

from __future__ import annotations

import socket
import struct
import time
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, Producer
from confluent_kafka import TopicPartition as KafkaPartition
from kio.schema.errors import ErrorCode

from tidings import Record
from tidings.core import kafka_batch

from . import wire
from .conftest import Served

PRODUCE, FETCH, LIST_OFFSETS, METADATA = 0, 1, 2, 3
WAIT_MS = 10_000
"""fetch.wait.max.ms of the readers: far longer than any answer below may take."""
PROMPT_S = 2.5
"""What "promptly" means on a busy test machine: well under WAIT_MS."""


def reader(broker: Served, topic: str, group: str) -> Consumer:
    """A consumer at the end of partition 0, whose fetches wait up to WAIT_MS."""
    c = Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "fetch.wait.max.ms": WAIT_MS,
        }
    )
    c.assign([KafkaPartition(topic, 0, OFFSET_END)])
    return c


def first_message(c: Consumer, timeout_s: float) -> Any:
    """The next message, failing on an error or after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        m = c.poll(0.05)
        if m is None:
            continue
        if m.error():
            raise KafkaException(m.error())
        return m
    raise AssertionError(f"no message within {timeout_s}s")


def warmed(broker: Served, topic: str, count: int) -> tuple[Producer, list[Consumer]]:
    """A producer and `count` readers that have each read one record, then sit waiting."""
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 0})
    p.produce(topic, b"create")
    p.flush(15)
    readers = [reader(broker, topic, f"r{i}") for i in range(count)]
    deadline = time.monotonic() + 30
    warm = [False] * count
    while not all(warm):  # each reader's position is the end: only new records reach it
        assert time.monotonic() < deadline, "the readers never started"
        p.produce(topic, b"warm-up")
        p.flush(15)
        for i, c in enumerate(readers):
            warm[i] = warm[i] or c.poll(0.2) is not None
    for c in readers:  # drain the warm-up records, then let every fetch park at the end
        while c.poll(0.5) is not None:
            pass
    return p, readers


def test_a_waiting_fetch_is_answered_as_soon_as_a_record_is_produced(broker: Served) -> None:
    p, (c,) = warmed(broker, "prompt", 1)
    started = time.monotonic()
    p.produce("prompt", b"now")
    p.flush(15)
    assert first_message(c, PROMPT_S).value() == b"now"
    assert time.monotonic() - started < PROMPT_S
    c.close()


def test_a_shutdown_answers_waiting_fetches_at_once(broker: Served) -> None:
    _, readers = warmed(broker, "parked", 2)  # each has a fetch waiting up to WAIT_MS
    started = time.monotonic()
    assert broker.stop() == 0
    assert time.monotonic() - started < PROMPT_S, "the broker waited out the parked fetches"
    for c in readers:
        c.close()


def test_one_commit_wakes_every_waiting_fetch(broker: Served) -> None:
    p, readers = warmed(broker, "fanout", 4)
    started = time.monotonic()
    p.produce("fanout", b"everyone")
    p.flush(15)
    for c in readers:  # each fetches in its own librdkafka thread: all were woken at once
        assert first_message(c, PROMPT_S).value() == b"everyone"
    assert time.monotonic() - started < PROMPT_S
    for c in readers:
        c.close()


def create(broker: Served, topic: str) -> None:
    """Create a topic through the broker itself (Metadata with auto-creation)."""
    response = wire.call(
        broker.bootstrap,
        METADATA,
        12,
        {"topics": [{"name": topic}], "allow_auto_topic_creation": True},
    )
    assert response.topics[0].error_code == ErrorCode.none


def produce_frame(topic: str, records: bytes, correlation_id: int) -> bytes:
    """A Produce v9 request (acks=all) for partition 0."""
    return wire.request_frame(
        PRODUCE,
        9,
        {
            "acks": -1,
            "timeout": 5000,
            "topic_data": [{"name": topic, "partition_data": [{"index": 0, "records": records}]}],
        },
        correlation_id,
    )


def list_offsets_frame(topic: str, correlation_id: int) -> bytes:
    """A ListOffsets v1 request for the end of partition 0."""
    return wire.request_frame(
        LIST_OFFSETS,
        1,
        {
            "replica_id": -1,
            "topics": [{"name": topic, "partitions": [{"partition_index": 0, "timestamp": -1}]}],
        },
        correlation_id,
    )


def responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """(correlation id, frame) of the next `count` responses, in the order they came."""
    out = []
    for _ in range(count):
        frame = wire.read_frame(sock)
        assert frame is not None, "the broker closed the connection"
        out.append((struct.unpack_from(">i", frame)[0], frame))
    return out


def batch(values: list[bytes], **producer: int) -> bytes:
    """A Kafka record batch of `values` (an idempotent producer's with `producer` ids)."""
    records = [Record("t", 0, i, 1_700_000_000_000, None, v) for i, v in enumerate(values)]
    return kafka_batch.encode(records, 0, **producer)


def base_offset(frame: bytes) -> tuple[ErrorCode, int]:
    """The error and base offset of a Produce v9 response's one partition."""
    response = wire.parse_response(frame, PRODUCE, 9)
    part = response.responses[0].partition_responses[0]
    return part.error_code, part.base_offset


def test_produce_requests_sent_back_to_back_are_answered_in_order(broker: Served) -> None:
    create(broker, "piped")
    frames = b"".join(produce_frame("piped", batch([b"%d" % i] * 2), i) for i in range(30))
    with wire.connect(broker.bootstrap) as sock:
        # a ListOffsets after them is taken only once every produce before it is stored
        sock.sendall(frames + list_offsets_frame("piped", 30))
        answers = responses(sock, 31)
    assert [cid for cid, _ in answers] == list(range(31))
    assert [base_offset(f) for _, f in answers[:30]] == [(ErrorCode.none, 2 * i) for i in range(30)]
    end = wire.parse_response(answers[30][1], LIST_OFFSETS, 1)
    assert end.topics[0].partitions[0].offset == 60


def test_an_idempotent_producer_sending_back_to_back_keeps_its_sequence(
    broker: Served,
) -> None:
    create(broker, "idem-piped")
    ids = {"producer_id": 77, "producer_epoch": 0}
    batches = [batch([b"a", b"b"], base_sequence=2 * i, **ids) for i in range(10)]
    frames = [produce_frame("idem-piped", b, i) for i, b in enumerate(batches)]
    retry = produce_frame("idem-piped", batches[8], 10)  # sent again before any answer
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(b"".join(frames) + retry)
        answers = [base_offset(f) for _, f in responses(sock, 11)]
    assert answers[:10] == [(ErrorCode.none, 2 * i) for i in range(10)]
    assert answers[10] == (ErrorCode.none, 16)  # the first one's offset, not stored again
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(list_offsets_frame("idem-piped", 1))
        ((_, frame),) = responses(sock, 1)
    assert wire.parse_response(frame, LIST_OFFSETS, 1).topics[0].partitions[0].offset == 20


def fetch(broker: Served, topic: str, offset: int, partition_max_bytes: int) -> Any:
    """One sessionless Fetch v12 of partition 0, answered."""
    request = {
        "replica_id": -1,
        "max_wait": 0,
        "min_bytes": 1,
        "max_bytes": 1 << 20,
        "session_id": 0,
        "session_epoch": -1,
        "topics": [
            {
                "topic": topic,
                "partitions": [
                    {
                        "partition": 0,
                        "fetch_offset": offset,
                        "partition_max_bytes": partition_max_bytes,
                        "log_start_offset": -1,
                        "current_leader_epoch": -1,
                        "last_fetched_epoch": -1,
                    }
                ],
            }
        ],
        "forgotten_topics_data": [],
        "rack_id": "",
    }
    return wire.call(broker.bootstrap, FETCH, 12, request)


def test_a_fetch_near_the_end_answers_as_a_read_of_the_store_does(broker: Served) -> None:
    create(broker, "near")
    sent = [batch([b"x" * 100] * 3) for _ in range(3)]
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(b"".join(produce_frame("near", b, i) for i, b in enumerate(sent)))
        responses(sock, 3)
    for offset, max_bytes in [(0, 1 << 20), (0, 1), (4, 1 << 20), (9, 1 << 20), (3, 1)]:
        # the first read goes to the store; the same one again is answered from the batches
        # the broker appended last
        first, again = (fetch(broker, "near", offset, max_bytes) for _ in range(2))
        assert first == again
        part = again.responses[0].partitions[0]
        assert (part.error_code, part.high_watermark, part.log_start_offset) == (
            ErrorCode.none,
            9,
            0,
        )
        want = [3 * b for b in range(3) if 3 * b + 2 >= offset]
        assert base_offsets(part.records) == (want[:1] if max_bytes == 1 else want)


def base_offsets(records: bytes | None) -> list[int]:
    """The base offset of each batch in a fetch response's records."""
    out, pos = [], 0
    while records and pos < len(records):
        out.append(struct.unpack_from(">q", records, pos)[0])
        pos += kafka_batch.read_header(records, pos).length
    return out
