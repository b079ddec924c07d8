"""`tidings serve` on a full disk or a read-only store: Kafka clients get KAFKA_STORAGE_ERROR
on the connection they sent on, HTTP clients a 507; both are served again once space is
freed, and reads are served throughout."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import httpx
from kio.schema.errors import ErrorCode

import tidings
from tests.disks import fill, remount, small_disk

from . import wire
from .conftest import start_broker
from .test_bad_input import API_VERSIONS, METADATA, PRODUCE, batch

ENOUGH = 100
"""Requests of a 64 KiB record that more than fill a 2 MiB disk."""


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
