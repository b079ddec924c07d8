"""The length check before kio reads a request: true lengths pass, and any length that
asks for more than the frame holds is refused, at every depth and in every version."""

from __future__ import annotations

import random

import pytest
from kio.index import load_request_schema

from tidings.server.kafka import lengths, protocol
from tidings.server.kafka.apis import SUPPORTED

from ..fuzz.frames import FrameMaker
from ..server.test_lengths import planted_frames
from ..server.wire import request_frame

SERVED = [(key, v) for key, (low, high) in sorted(SUPPORTED.items()) for v in range(low, high + 1)]


@pytest.mark.parametrize(("api_key", "version"), SERVED)
def test_true_lengths_pass_and_each_planted_one_is_refused(api_key: int, version: int) -> None:
    schema = load_request_schema(api_key, version)
    for seed in range(5):
        honest = FrameMaker(random.Random(seed), plant=-1).frame(api_key, version, seed)[4:]
        lengths.check(schema, honest)
        try:
            protocol.read_request(honest, SUPPORTED)
        except protocol.ProtocolError as e:  # a value kio refuses, such as a huge timedelta
            assert "LengthError" not in str(e)
    for frame in planted_frames(api_key, version):
        with pytest.raises(lengths.LengthError, match=r"bytes left in the frame|negative"):
            lengths.check(schema, frame[4:])


def test_many_items_and_nulls_written_by_kio_pass() -> None:
    frame = request_frame(
        3,
        12,
        {"topics": [{"name": f"t{i}", "topic_id": None} for i in range(300)]},
    )[4:]
    assert len(protocol.read_request(frame, SUPPORTED).body.topics) == 300
    everything = request_frame(3, 12, {"topics": None})[4:]  # a null array: every topic
    assert protocol.read_request(everything, SUPPORTED).body.topics is None


def test_a_null_where_the_schema_allows_none_is_refused() -> None:
    # Metadata v1 may send a null topics array (every topic); v0, laid out alike, may not,
    # and a handler given one would fail on it (a fuzzed Fetch with null topics did)
    null_topics = request_frame(3, 1, {"topics": None})[4:]
    lengths.check(load_request_schema(3, 1), null_topics)
    with pytest.raises(lengths.LengthError, match="a null before byte"):
        lengths.check(load_request_schema(3, 0), null_topics)


@pytest.mark.parametrize(
    "varint",
    [b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x01", b"\x80\x80"],
    ids=["0xFFFFFFFF", "longer than 32 bits", "unterminated"],
)
def test_a_huge_or_broken_varint_is_refused_with_where_it_is(varint: bytes) -> None:
    frame = bytes.fromhex("0002000600000001000570726f626500ffffffff00") + varint
    with pytest.raises(protocol.ProtocolError, match=r"ListOffsetsRequest v6 .* byte \d+"):
        protocol.read_request(frame, SUPPORTED)
