"""`tidings serve` on a full disk or a read-only store: Kafka clients get KAFKA_STORAGE_ERROR
(COORDINATOR_NOT_AVAILABLE from group APIs) on the connection they sent on, HTTP clients a
507; both are served again once space is freed, and reads are served throughout."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException
from kio.schema.errors import ErrorCode

import tidings
from tests.disks import fill, remount, small_disk

from . import wire
from .conftest import Served, start_broker
from .test_bad_input import API_VERSIONS, METADATA, PRODUCE, batch

ENOUGH = 100
"""Requests of a 64 KiB record that more than fill a 2 MiB disk."""
CREATE_TOPICS, CREATE_ACLS, JOIN_GROUP, OFFSET_COMMIT = 19, 30, 11, 8
SUBSCRIPTION = b"\x00\x00" + b"\x00\x00\x00\x01" + b"\x00\x01t" + b"\xff\xff\xff\xff"
"""A ConsumerProtocolSubscription v0 of topic t, as a JoinGroup carries it."""


def produce_request(records: bytes) -> bytes:
    """A Produce v9 frame (acks=all) of `records` for t[0]."""
    return wire.request_frame(
        PRODUCE,
        9,
        {
            "acks": -1,
            "timeout": 5000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": records}]}],
        },
    )


def produce_on(sock: socket.socket, records: bytes) -> ErrorCode:
    """Produce on an open connection; the partition's error code."""
    sock.sendall(produce_request(records))
    frame = wire.read_frame(sock)
    assert frame is not None, "the broker closed the connection"
    [topic] = wire.parse_response(frame, PRODUCE, 9).responses
    [partition] = topic.partition_responses
    return ErrorCode(partition.error_code)


def ask(sock: socket.socket, api_key: int, version: int, fields: dict[str, Any]) -> Any:
    """Send a request on an open connection; its response (the connection must stay open)."""
    sock.sendall(wire.request_frame(api_key, version, fields))
    frame = wire.read_frame(sock)
    assert frame is not None, "the broker closed the connection"
    return wire.parse_response(frame, api_key, version)


def create_topic(sock: socket.socket, name: str) -> tuple[ErrorCode, str | None]:
    """CreateTopics v7 of one topic; its error code and message."""
    topic = {"name": name, "num_partitions": 1, "replication_factor": 1}
    [answer] = ask(sock, CREATE_TOPICS, 7, {"topics": [topic], "timeout": 5000}).topics
    return ErrorCode(answer.error_code), answer.error_message


def join_group(sock: socket.socket, group: str) -> ErrorCode:
    """A new member's JoinGroup v7 for topic t; its error code."""
    fields = {
        "group_id": group,
        "session_timeout": 10000,
        "rebalance_timeout": 10000,
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": SUBSCRIPTION}],
    }
    return ErrorCode(ask(sock, JOIN_GROUP, 7, fields).error_code)


def commit_offset(sock: socket.socket, group: str, offset: int) -> ErrorCode:
    """OffsetCommit v8 of t[0] for a group with no members; the partition's error code."""
    topic = {"name": "t", "partitions": [{"partition_index": 0, "committed_offset": offset}]}
    fields = {"group_id": group, "generation_id_or_member_epoch": -1, "topics": [topic]}
    [answer] = ask(sock, OFFSET_COMMIT, 8, fields).topics
    [partition] = answer.partitions
    return ErrorCode(partition.error_code)


def group_consumer(broker: Served, group: str) -> Consumer:
    """A confluent-kafka consumer in `group`, committing by hand."""
    return Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )


def poll_values(c: Consumer, count: int, timeout_s: float = 30.0) -> list[bytes | None]:
    """`count` record values from a subscribed consumer, failing after `timeout_s`."""
    values: list[bytes | None] = []
    deadline = time.monotonic() + timeout_s
    while len(values) < count:
        assert time.monotonic() < deadline, f"got {len(values)} of {count} records"
        m = c.poll(0.2)
        if m is not None and not m.error():
            values.append(m.value())
    return values


def test_produce_on_a_full_disk_answers_kafka_storage_error_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(disk / "data")
        try:
            with broker.bus() as bus:
                bus.create_topic("t")
            ballast = fill(disk)
            with wire.connect(broker.bootstrap) as sock:
                codes = [produce_on(sock, batch([os.urandom(64 << 10)])) for _ in range(ENOUGH)]
                assert ErrorCode.kafka_storage_error in codes, codes
                full = codes.index(ErrorCode.kafka_storage_error)
                assert set(codes[full:]) == {ErrorCode.kafka_storage_error}, codes
                sock.sendall(wire.request_frame(API_VERSIONS, 3, {}))
                assert wire.read_frame(sock) is not None
                ballast.unlink()
                assert produce_on(sock, batch([b"after"])) == ErrorCode.none
            with broker.bus() as bus:
                assert bus.describe_topic("t").partitions[0].end_offset == full + 1
            assert "disk" in broker.log() and "full" in broker.log()
        finally:
            broker.stop()


def test_http_produce_on_a_full_disk_answers_507(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(disk / "data")
        try:
            with httpx.Client(base_url=broker.http, timeout=30) as http:
                assert http.post("/topics", json={"name": "t"}).status_code == 201
                ballast = fill(disk)
                body = {"records": [{"value": "x" * (64 << 10)}]}
                answers = [http.post("/topics/t/records", json=body) for _ in range(ENOUGH)]
                statuses = [a.status_code for a in answers]
                assert 507 in statuses, statuses
                refused = answers[statuses.index(507)].json()
                assert refused["error"] == "storage_full", refused
                assert "free" in refused["message"] and "full" in refused["message"], refused
                ballast.unlink()
                after = http.post("/topics/t/records", json={"records": [{"value": "after"}]})
                assert after.status_code == 200, after.text
        finally:
            broker.stop()


def test_a_read_only_store_is_served_for_reading_and_refuses_produce(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        with tidings.connect(f"sqlite://{disk / 'data' / 'tidings.db'}") as bus:
            bus.create_topic("t")
            bus.publish("t", b"kept")
        remount(disk, "ro")
        broker = start_broker(disk / "data")
        try:
            with wire.connect(broker.bootstrap) as sock:
                assert produce_on(sock, batch([b"refused"])) == ErrorCode.kafka_storage_error
                sock.sendall(wire.request_frame(METADATA, 12, {"topics": [{"name": "t"}]}))
                frame = wire.read_frame(sock)
                assert frame is not None, "the broker closed the connection"
                [topic] = wire.parse_response(frame, METADATA, 12).topics
                assert topic.error_code == ErrorCode.none and len(topic.partitions) == 1
            with httpx.Client(base_url=broker.http, timeout=30) as http:
                page = http.get("/topics/t/partitions/0/records", params={"offset": 0})
                assert page.status_code == 200, page.text
                assert [r["value"] for r in page.json()["records"]] == ["kept"]
                refused = http.post("/topics/t/records", json={"records": [{"value": "x"}]})
                assert refused.status_code == 507, refused.text
                assert refused.json()["error"] == "store_read_only"
                assert "read-only" in refused.json()["message"]
        finally:
            broker.stop()


def test_create_topics_on_a_full_disk_answers_kafka_storage_error_and_keeps_the_connection(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(disk / "data")
        try:
            with broker.bus() as bus:
                bus.create_topic("t")
            ballast = fill(disk)
            with wire.connect(broker.bootstrap) as sock:
                answers = [create_topic(sock, f"new-{i}") for i in range(ENOUGH)]
                codes = [code for code, _ in answers]
                assert ErrorCode.kafka_storage_error in codes, codes
                refused = codes.index(ErrorCode.kafka_storage_error)
                message = answers[refused][1]
                assert message is not None and "full" in message and "free" in message, message
                assert ask(sock, API_VERSIONS, 3, {}).error_code == ErrorCode.none
                # A topic Metadata would create on first use is refused alone.
                wanted = {"topics": [{"name": "t"}, {"name": "auto"}]}
                auto = ask(sock, METADATA, 12, wanted | {"allow_auto_topic_creation": True})
                assert [(t.name, t.error_code) for t in auto.topics] == [
                    ("t", ErrorCode.none),
                    ("auto", ErrorCode.kafka_storage_error),
                ]
                ballast.unlink()
                assert create_topic(sock, f"new-{refused}") == (ErrorCode.none, None)
            with broker.bus() as bus:
                names = {spec.name for spec in bus.list_topics()}
            # Nothing half-made: the refused topic exists once, made by the retry.
            assert names == {"t"} | {f"new-{i}" for i in range(refused + 1)}, names
            assert "refused a CreateTopicsRequest v7 request" in broker.log()
        finally:
            broker.stop()


def test_a_consumer_group_on_a_full_disk_is_told_coordinator_not_available_and_recovers(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        broker = start_broker(disk / "data")
        try:
            with broker.bus() as bus:
                bus.create_topic("t")
                for i in range(3):
                    bus.publish("t", b"%d" % i)
            reader = group_consumer(broker, "readers")
            reader.subscribe(["t"])
            assert poll_values(reader, 3) == [b"0", b"1", b"2"]
            ballast = fill(disk)
            with pytest.raises(KafkaException) as refused:
                reader.commit(asynchronous=False)
            assert refused.value.args[0].code() == ErrorCode.coordinator_not_available
            with wire.connect(broker.bootstrap) as sock:
                assert join_group(sock, "latecomers") == ErrorCode.coordinator_not_available
                assert commit_offset(sock, "idle", 1) == ErrorCode.coordinator_not_available
                assert ask(sock, API_VERSIONS, 3, {}).error_code == ErrorCode.none
            latecomer = group_consumer(broker, "latecomers")
            latecomer.subscribe(["t"])
            assert latecomer.poll(3) is None  # it cannot join while the disk is full
            ballast.unlink()
            assert poll_values(latecomer, 3) == [b"0", b"1", b"2"]
            committed = reader.commit(asynchronous=False)
            assert [(tp.partition, tp.offset) for tp in committed or []] == [(0, 3)]
            reader.close()
            latecomer.close()
            with broker.bus() as bus:
                [partition] = bus.describe_group("readers").partitions
                assert partition.committed == 3
            assert "refused a OffsetCommitRequest" in broker.log()
            assert "refused a JoinGroupRequest" in broker.log()
        finally:
            broker.stop()


def test_a_read_only_store_refuses_admin_group_and_acl_writes_with_error_codes(
    tmp_path: Path,
) -> None:
    with small_disk(tmp_path / "disk") as disk:
        with tidings.connect(f"sqlite://{disk / 'data' / 'tidings.db'}") as bus:
            bus.create_topic("t")
            bus.publish("t", b"kept")
        remount(disk, "ro")
        broker = start_broker(disk / "data")
        try:
            with wire.connect(broker.bootstrap) as sock:
                code, message = create_topic(sock, "new")
                assert code == ErrorCode.kafka_storage_error
                assert message is not None and "read-only" in message, message
                assert join_group(sock, "g") == ErrorCode.coordinator_not_available
                assert commit_offset(sock, "g", 1) == ErrorCode.coordinator_not_available
                acl = {
                    "resource_type": 2,
                    "resource_name": "t",
                    "resource_pattern_type": 3,
                    "principal": "User:alice",
                    "host": "*",
                    "operation": 3,
                    "permission_type": 3,
                }
                [result] = ask(sock, CREATE_ACLS, 3, {"creations": [acl]}).results
                assert result.error_code == ErrorCode.kafka_storage_error
                assert "read-only" in result.error_message
                [topic] = ask(sock, METADATA, 12, {"topics": [{"name": "t"}]}).topics
                assert topic.error_code == ErrorCode.none
        finally:
            broker.stop()
