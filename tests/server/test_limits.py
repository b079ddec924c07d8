"""Bounded resources on the Kafka listener: frame sizes before and after authentication,
connections in total and per address, idle and stalled connections, partition counts and
decompressed batches. Each limit closes or refuses only the client that passes it."""

from __future__ import annotations

import socket
import struct
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import httpx
from kio.schema.errors import ErrorCode

from tests.compressed import compressed_batch
from tidings import Record
from tidings.core import kafka_batch

from . import wire
from .conftest import TIDINGS, Served
from .test_bad_input import API_VERSIONS, end_offset, produce, still_serving
from .test_security import users_file

CREATE_TOPICS, CREATE_PARTITIONS = 19, 37
HUNDRED_MIB = 100 << 20


def announce(size: int) -> bytes:
    """The 4-byte prefix of a frame of `size` bytes, with none of the frame after it."""
    return struct.pack(">i", size)


def closed(sock: socket.socket) -> bool:
    """Whether the broker closed `sock` (waiting up to the socket's timeout)."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_an_unauthenticated_connection_is_closed_on_announcing_a_large_frame(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    with ExitStack() as stack:
        socks = [stack.enter_context(wire.connect(broker.bootstrap)) for _ in range(6)]
        for sock in socks:
            sock.sendall(announce(HUNDRED_MIB))  # and nothing after it
        assert all(closed(sock) for sock in socks)
    logged(broker, "before authentication is outside 1..524288")
    still_serving(broker)  # ApiVersions is read before authentication


def test_a_frame_over_max_request_bytes_closes_the_connection_before_it_is_read(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-request-bytes", "65536")
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(announce(65537))
        assert closed(sock)
    logged(broker, "outside 1..65536 (max_request_bytes")
    with broker.bus() as bus:
        bus.create_topic("small")
    assert produce(broker, "small", kafka_batch.encode([record(b"v")], 0)) == ErrorCode.none


def test_connections_over_the_total_limit_are_closed_and_the_rest_served(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-connections", "3")
    with ExitStack() as stack:
        held = [stack.enter_context(wire.connect(broker.bootstrap)) for _ in range(3)]
        for sock in held:  # each is served
            sock.sendall(wire.request_frame(API_VERSIONS, 3, {}))
            assert wire.read_frame(sock) is not None
        with wire.connect(broker.bootstrap) as extra:
            assert closed(extra)
        held.pop().close()
        wait_for(lambda: answered(broker))  # once the broker has counted it out
    logged(broker, "(max_connections=3)")


def test_connections_over_the_limit_per_address_are_closed_and_other_addresses_served(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-connections-per-ip", "2")
    host, port = broker.bootstrap.rsplit(":", 1)
    with ExitStack() as stack:
        for _ in range(2):
            sock = stack.enter_context(wire.connect(broker.bootstrap))
            sock.sendall(wire.request_frame(API_VERSIONS, 3, {}))
            assert wire.read_frame(sock) is not None
        with wire.connect(broker.bootstrap) as extra:
            assert closed(extra)
        # another address on the loopback network is another client
        with socket.create_connection((host, int(port)), 15, ("127.0.0.2", 0)) as other:
            other.sendall(wire.request_frame(API_VERSIONS, 3, {}))
            assert wire.read_frame(other) is not None
    logged(broker, "(max_connections_per_ip=2)")


def test_an_idle_connection_is_closed(start: Callable[..., Served]) -> None:
    broker = start("--idle-timeout", "1")
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(wire.request_frame(API_VERSIONS, 3, {}))
        assert wire.read_frame(sock) is not None
        assert closed(sock)  # after a second without a request
    still_serving(broker)


def test_a_slowloris_sending_a_byte_a_second_is_closed(start: Callable[..., Served]) -> None:
    broker = start("--request-timeout", "2")
    frame = wire.request_frame(API_VERSIONS, 3, {})
    sent = 0
    with wire.connect(broker.bootstrap) as sock:
        sock.settimeout(1)
        for byte in frame:  # the broker answers a whole frame; this one never arrives whole
            sock.sendall(bytes([byte]))
            sent += 1
            try:
                if sock.recv(1) == b"":
                    break
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
        else:
            raise AssertionError("the broker kept a connection sending a byte a second")
    assert sent < len(frame)
    logged(broker, "was not complete 2 s after it began")
    still_serving(broker)


def create_topic(broker: Served, name: str, partitions: int) -> tuple[ErrorCode, str | None]:
    """CreateTopics v7 for one topic; its error code and message."""
    response = wire.call(
        broker.bootstrap,
        CREATE_TOPICS,
        7,
        {
            "topics": [
                {
                    "name": name,
                    "num_partitions": partitions,
                    "replication_factor": 1,
                    "assignments": [],
                    "configs": [],
                }
            ],
            "timeout_ms": 5000,
            "validate_only": False,
        },
    )
    [topic] = response.topics
    return ErrorCode(topic.error_code), topic.error_message


def test_create_topics_with_too_many_partitions_is_invalid_partitions(
    broker: Served,
) -> None:
    code, message = create_topic(broker, "huge", 2**31 - 1)
    assert code == ErrorCode.invalid_partitions
    assert message is not None and "max_partitions=10000" in message
    with broker.bus() as bus:
        assert "huge" not in {t.name for t in bus.list_topics()}
    assert create_topic(broker, "fine", 12)[0] == ErrorCode.none


def test_the_partition_limit_is_a_setting_and_holds_for_create_partitions(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-partitions", "8")
    assert create_topic(broker, "nine", 9)[0] == ErrorCode.invalid_partitions
    assert create_topic(broker, "eight", 4)[0] == ErrorCode.none
    response = wire.call(
        broker.bootstrap,
        CREATE_PARTITIONS,
        3,
        {
            "topics": [{"name": "eight", "count": 9, "assignments": None}],
            "timeout_ms": 5000,
            "validate_only": False,
        },
    )
    [result] = response.results
    assert result.error_code == ErrorCode.invalid_partitions
    assert "max_partitions=8" in result.error_message
    with broker.bus() as bus:
        assert bus.describe_topic("eight").spec.partitions == 4


def record(value: bytes) -> Record:
    """A record for a batch at offset 0."""
    return Record("t", 0, 0, 1_700_000_000_000, None, value)


def test_a_batch_that_decompresses_past_the_limit_is_refused_and_nothing_stored(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-request-bytes", str(1 << 20))
    bomb = b"\0" * (8 << 20)  # 8 MiB of zeros: a few KiB compressed
    with broker.bus() as bus:
        bus.create_topic("bombs")
    for codec in (1, 2, 3, 4):
        batch = compressed_batch(bomb, codec)
        assert len(batch) < 1 << 20
        assert produce(broker, "bombs", batch) == ErrorCode.message_too_large, codec
        assert produce(broker, "bombs", compressed_batch(b"x" * 1000, codec)) == ErrorCode.none
    assert end_offset(broker, "bombs") == 4  # the four small ones
    with broker.bus() as bus:  # what was stored reads back whole
        consumer = bus.consumer("bombs", group="check", from_beginning=True)
        values: list[bytes | None] = []
        for _ in range(10):
            values += [r.value for r in consumer.poll(max_records=10, timeout_ms=1000)]
            if len(values) >= 4:
                break
        consumer.close()
    assert values == [b"x" * 1000] * 4


def answered(broker: Served) -> bool:
    """Whether a new connection's ApiVersions is answered."""
    with wire.connect(broker.bootstrap) as sock:
        sock.sendall(wire.request_frame(API_VERSIONS, 3, {}))
        try:
            return wire.read_frame(sock) is not None
        except ConnectionResetError:
            return False


def logged(broker: Served, text: str) -> None:
    """Wait (up to 15 s) until the broker has logged `text`."""
    wait_for(lambda: text in broker.log())


def wait_for(condition: Callable[[], bool]) -> None:
    """Wait (up to 15 s) until `condition` holds."""
    deadline = time.monotonic() + 15
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.05)


def test_limits_come_from_the_config_file(start: Callable[..., Served], tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text("max_partitions = 4\nmax_http_body_bytes = 4096\n")
    broker = start("--config", str(config))
    assert create_topic(broker, "five", 5)[0] == ErrorCode.invalid_partitions
    response = httpx.post(
        f"{broker.http}/topics/web/records", json={"records": [{"value": "x" * 5000}]}
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "request_too_large"


def test_num_partitions_over_max_partitions_is_refused_at_start(tmp_path: Path) -> None:
    process = subprocess.run(
        [
            TIDINGS,
            "serve",
            "--data",
            str(tmp_path),
            "--num-partitions",
            "9",
            "--max-partitions",
            "8",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert process.returncode == 1
    assert process.stderr.startswith("error: num_partitions=9 is over max_partitions=8")
    assert "Traceback" not in process.stderr


def test_a_client_that_leaves_during_a_long_poll_gives_its_place_back(
    start: Callable[..., Served],
) -> None:
    broker = start("--max-connections-per-ip", "3")
    created = wire.call(broker.bootstrap, 3, 12, {"topics": [{"name": "polled"}]})
    assert created.topics[0].error_code == ErrorCode.none
    hour = {"replica_id": -1, "max_wait": 3_600_000, "min_bytes": 1, "max_bytes": 1 << 20}
    wanted = [{"partition": 0, "fetch_offset": 0, "partition_max_bytes": 1 << 20}]
    fetch = {**hour, "isolation_level": 0, "topics": [{"topic": "polled", "partitions": wanted}]}
    for _ in range(3):  # every place of the address, each a poll of an hour, then gone
        with wire.connect(broker.bootstrap) as sock:
            sock.sendall(wire.request_frame(1, 4, fetch))
    deadline = time.monotonic() + 30
    while True:
        try:
            still_serving(broker)
            break
        except (ConnectionError, AssertionError):
            assert time.monotonic() < deadline, "the places of clients that left stay taken"
            time.sleep(0.2)
