"""The Kafka request decoder and record batches: bad bytes raise one clear error, never
anything else, and good batches round-trip."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.core import kafka_batch
from tidings.core.records import Record
from tidings.server.kafka import protocol
from tidings.server.kafka.apis import SUPPORTED

from ..server.wire import request_frame

VALID = [
    request_frame(18, 3, {"client_software_name": "t", "client_software_version": "1"})[4:],
    request_frame(3, 12, {"topics": [{"name": "orders"}], "allow_auto_topic_creation": True})[4:],
    request_frame(
        0,
        9,
        {
            "acks": -1,
            "timeout": 1000,
            "topic_data": [{"name": "t", "partition_data": [{"index": 0, "records": b"x" * 20}]}],
        },
    )[4:],
    request_frame(11, 7, {"group_id": "g", "session_timeout": 6000, "rebalance_timeout": 6000,
                          "member_id": "", "protocol_type": "consumer",
                          "protocols": [{"name": "range", "metadata": b"\x00\x00"}]})[4:],
]  # fmt: skip


def decodes_or_refuses(frame: bytes) -> None:
    """The decoder's contract: a request, or ProtocolError / UnsupportedVersion."""
    with contextlib.suppress(protocol.ProtocolError, protocol.UnsupportedVersion):
        protocol.read_request(frame, SUPPORTED)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_another_error(frame: bytes) -> None:
    decodes_or_refuses(frame)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
    st.integers(0, 10_000),
)
def test_mutated_and_truncated_requests_never_escape_as_another_error(
    frame: bytes, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(frame)
    for position, value in flips:
        data[position % len(data)] = value
    decodes_or_refuses(bytes(data[: max(0, len(data) - cut % (len(data) + 1))]))


def test_every_valid_sample_decodes() -> None:
    for frame in VALID:
        request = protocol.read_request(frame, SUPPORTED)
        assert request.client_id == "wire-test"


def test_a_version_not_served_is_named() -> None:
    frame = bytearray(VALID[0])
    struct.pack_into(">h", frame, 2, 77)
    with pytest.raises(protocol.UnsupportedVersion, match="version 77"):
        protocol.read_request(bytes(frame), SUPPORTED)


record_strategy = st.builds(
    lambda key, value, headers, ts: (key, value, headers, ts),
    st.none() | st.binary(max_size=50),
    st.none() | st.binary(max_size=200),
    st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3),
    st.integers(0, 2**41),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(record_strategy, min_size=1, max_size=30), st.integers(0, 2**40))
def test_batches_round_trip_with_offsets_keys_values_headers_and_timestamps(
    items: list[tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]], int]],
    base: int,
) -> None:
    records = [
        Record("t", 0, base + i, ts, key, value, tuple(headers))
        for i, (key, value, headers, ts) in enumerate(items)
    ]
    data = kafka_batch.encode(records, base)
    [(header, stored)] = list(kafka_batch.split(data))
    assert header.records == len(records) and header.last_offset_delta == len(records) - 1
    assert stored[:8] == b"\x00" * 8  # the base offset is zeroed for storage
    assert kafka_batch.decode("t", 0, base, stored) == records
    assert b"".join(kafka_batch.with_base_offset(stored, base)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_batches_raise_invalid_batch_error_only(data: bytes) -> None:
    try:
        for _, stored in kafka_batch.split(data):
            kafka_batch.decode("t", 0, 0, stored)
    except kafka_batch.InvalidBatchError:
        pass


def test_a_flipped_byte_fails_the_crc() -> None:
    data = bytearray(kafka_batch.encode([Record("t", 0, 0, 1, b"k", b"v")], 0))
    data[-2] ^= 1
    with pytest.raises(kafka_batch.InvalidBatchError, match="CRC"):
        list(kafka_batch.split(bytes(data)))
