"""The broker-wide budget of request bytes (--max-queued-request-bytes, Kafka's
queued.max.request.bytes): connections wait their turn for it rather than being refused,
and large frames from many connections no longer take the broker's memory with them."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from kio.schema.errors import ErrorCode

from tidings import Record
from tidings.core import kafka_batch
from tidings.server.kafka.server import READ_BUFFER
from tidings.server.limits import MAX_QUEUED_REQUEST_BYTES

from . import wire
from .conftest import Served
from .test_bad_input import still_serving
from .test_limits import HUNDRED_MIB, announce, closed, logged

PRODUCE, FETCH = 0, 1
MIB = 1 << 20


def produce_frame(topic: str, value: bytes) -> bytes:
    """A Produce v9 frame (acks=all) of one record for partition 0."""
    batch = kafka_batch.encode([Record(topic, 0, 0, 1_700_000_000_000, None, value)], 0)
    data = [{"name": topic, "partition_data": [{"index": 0, "records": batch}]}]
    return wire.request_frame(PRODUCE, 9, {"acks": -1, "timeout": 5000, "topic_data": data})


def waiting_fetch_frame(topic: str, wait_ms: int, size: int) -> bytes:
    """A Fetch v12 frame of `size` bytes that waits `wait_ms` for records of an empty topic.

    The bytes past its body are padding, which the broker ignores as Kafka's does: the
    request holds that much of the budget while it waits."""
    wanted = {
        "partition": 0,
        "fetch_offset": 0,
        "partition_max_bytes": MIB,
        "log_start_offset": -1,
        "current_leader_epoch": -1,
        "last_fetched_epoch": -1,
    }
    frame = wire.request_frame(
        FETCH,
        12,
        {
            "replica_id": -1,
            "max_wait": wait_ms,
            "min_bytes": 1,
            "max_bytes": MIB,
            "session_id": 0,
            "session_epoch": -1,
            "topics": [{"topic": topic, "partitions": [wanted]}],
            "forgotten_topics_data": [],
            "rack_id": "",
        },
    )
    body = frame[4:].ljust(size, b"\0")
    return struct.pack(">i", len(body)) + body


def produced(sock: socket.socket) -> ErrorCode:
    """The error code of the Produce response the broker sends on `sock`."""
    frame = wire.read_frame(sock)
    assert frame is not None, "the broker closed a connection waiting for the budget"
    [topic] = wire.parse_response(frame, PRODUCE, 9).responses
    [partition] = topic.partition_responses
    return ErrorCode(partition.error_code)


def test_connections_wait_their_turn_for_a_short_budget_and_all_are_served(
    start: Callable[..., Served],
) -> None:
    # each produce takes 3 of the 4 MiB: they are read one at a time, and the first waits
    # longer than the request timeout for a fetch holding the budget, yet none is closed
    broker = start("--request-timeout", "2", env={"TIDINGS_MAX_QUEUED_REQUEST_BYTES": str(4 * MIB)})
    with broker.bus() as bus:
        bus.create_topic("big", max_message_bytes=4 * MIB)
        bus.create_topic("empty")
    values = [bytes([i]) * (3 * MIB - 200) for i in range(6)]
    with ExitStack() as stack:
        holder = stack.enter_context(wire.connect(broker.bootstrap))
        holder.sendall(waiting_fetch_frame("empty", 4000, 3 * MIB))
        time.sleep(0.5)  # so that the fetch is read first (the test holds either way)
        socks = [stack.enter_context(wire.connect(broker.bootstrap)) for _ in values]
        senders = [
            threading.Thread(target=sock.sendall, args=(produce_frame("big", value),))
            for sock, value in zip(socks, values, strict=True)
        ]
        for sender in senders:
            sender.start()
        assert [produced(sock) for sock in socks] == [ErrorCode.none] * len(values)
        for sender in senders:
            sender.join()
        assert wire.read_frame(holder) is not None  # the fetch is answered too
    with broker.bus() as bus:
        consumer = bus.consumer("big", group="check", from_beginning=True)
        stored: list[bytes | None] = []
        for _ in range(20):
            stored += [r.value for r in consumer.poll(max_records=10, timeout_ms=1000)]
            if len(stored) >= len(values):
                break
        consumer.close()
    assert sorted(v or b"" for v in stored) == sorted(values)
    assert "closing the connection" not in broker.log()


def test_a_frame_larger_than_the_whole_budget_is_refused_and_others_served(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f"max_queued_request_bytes = {MIB}\n")
    broker = start("--config", str(config))
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(announce(MIB + 1))  # under max_request_bytes, over the budget
        assert closed(sock)
    logged(broker, f"larger than the whole request budget (max_queued_request_bytes={MIB}")
    with broker.bus() as bus:
        bus.create_topic("fits", max_message_bytes=2 * MIB)
    with wire.connect(broker.bootstrap) as sock:  # a frame of the whole budget is read
        sock.sendall(produce_frame("fits", b"x" * (MIB - 200)))
        assert produced(sock) == ErrorCode.none
    still_serving(broker)


def peak_rss(broker: Served) -> int:
    """The broker's peak resident memory so far, in bytes (VmHWM)."""
    status = Path(f"/proc/{broker.process.pid}/status").read_text()
    (kib,) = re.findall(r"VmHWM:\s+(\d+) kB", status)
    return int(kib) * 1024


def send_hundred_mib_frame(address: str) -> bool:
    """Send a 100 MiB Metadata frame of garbage; whether the broker read it and closed."""
    with wire.connect(address) as sock:
        sock.settimeout(120)
        sock.sendall(announce(HUNDRED_MIB) + b"\x00\x03\x00\x0c")
        chunk = b"\xff" * MIB
        for _ in range(100):
            sock.sendall(chunk)
        return closed(sock)


def test_six_connections_sending_100_mib_frames_hold_no_more_than_the_budget(
    broker: Served,
) -> None:
    before = peak_rss(broker)
    results: list[bool] = []
    attackers = [
        threading.Thread(target=lambda: results.append(send_hundred_mib_frame(broker.bootstrap)))
        for _ in range(6)
    ]
    for attacker in attackers:
        attacker.start()
    for attacker in attackers:
        attacker.join()
    assert results == [True] * 6  # each frame was read in its turn, then refused
    # A frame being read is held twice at most (the reader's buffer and the frame it
    # returns), and a waiting connection buffers up to twice READ_BUFFER.
    bound = 2 * MAX_QUEUED_REQUEST_BYTES + 6 * 2 * READ_BUFFER
    assert peak_rss(broker) - before < bound, (before, peak_rss(broker))
    still_serving(broker)
