"""A length in a request that asks for more than its frame holds: that connection is
closed, and the broker goes on serving everyone else. kio's reader used to abort the
whole process on such a length (docs/kio-bug-unbounded-length.md)."""

from __future__ import annotations

import random
import resource
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kio.index import load_entity_schema
from kio.schema.errors import ErrorCode
from kio.static.constants import EntityType

from tidings.server.kafka.apis import SUPPORTED

from ..fuzz.frames import FrameMaker
from . import wire
from .conftest import Served
from .test_bad_input import API_VERSIONS, closed_after, still_serving
from .test_security import users_file

JOIN_GROUP = 11
ADDRESS_SPACE = 4 * 2**30
"""The broker's address space in these tests: far more than it uses (under 1 GiB), far
less than the 16 GiB that a legacy array of 2^31 - 1 items made kio reserve, so that
reservation fails here as it does on any host or container with less memory."""
REPORTED = bytes.fromhex("0000001a0002000600000001000570726f626500ffffffff00ffffffff0f")
"""The issue's frame: ListOffsets v6 whose topics array has the length 0xFFFFFFFF."""


def planted_frames(api_key: int, version: int) -> list[bytes]:
    """One frame per length a request of this API and version holds (arrays of one item,
    every tagged field), each with that one length at its largest and the rest true."""
    honest = FrameMaker(random.Random(api_key * 100 + version), plant=-1)
    honest.frame(api_key, version, 1)
    return [
        FrameMaker(random.Random(api_key * 100 + version), plant=i).frame(api_key, version, i)
        for i in range(honest.lengths)
    ]


def limit_memory(broker: Served) -> None:
    """Cap the broker's address space at ADDRESS_SPACE, as a smaller host would."""
    resource.prlimit(broker.process.pid, resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def test_the_reported_frame_closes_only_its_connection(broker: Served) -> None:
    with wire.connect(broker.bootstrap) as bystander:
        assert closed_after(broker, REPORTED)
        still_serving(broker)
        bystander.sendall(wire.request_frame(API_VERSIONS, 3, {}))
        assert wire.read_frame(bystander) is not None, "a connection open before was dropped"
    assert broker.process.poll() is None, broker.log()


def test_the_reported_frame_is_refused_before_authentication(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    assert closed_after(broker, REPORTED)
    still_serving(broker)
    assert broker.process.poll() is None, broker.log()


def test_no_length_of_any_served_request_can_exceed_its_frame(broker: Served) -> None:
    limit_memory(broker)
    with wire.connect(broker.bootstrap) as bystander:
        refused = 0
        for api_key, (low, high) in sorted(SUPPORTED.items()):
            for version in range(low, high + 1):
                for frame in planted_frames(api_key, version):
                    assert closed_after(broker, frame), (api_key, version, frame.hex())
                    refused += 1
                still_serving(broker)
        bystander.sendall(wire.request_frame(API_VERSIONS, 3, {}))
        assert wire.read_frame(bystander) is not None, "a connection open before was dropped"
    assert refused > 600  # every array, string, bytes and tagged field of 131 versions
    assert broker.process.poll() is None, broker.log()


@pytest.mark.parametrize("version", range(4))
def test_a_join_whose_subscription_holds_a_huge_length_is_refused(
    broker: Served, version: int
) -> None:
    # The protocol metadata of a JoinGroup is a ConsumerProtocolSubscription, which the
    # broker reads with kio too; a huge length there aborted it the same way.
    limit_memory(broker)
    schema = load_entity_schema("consumer_protocol_subscription", version, EntityType.data)
    honest = FrameMaker(random.Random(version), plant=-1)
    honest.entity(schema)
    for i in range(honest.lengths):
        planted = FrameMaker(random.Random(version), plant=i).entity(schema)
        response = join(broker, struct.pack(">h", version) + planted)
        assert response.error_code == ErrorCode.inconsistent_group_protocol
    still_serving(broker)
    assert broker.process.poll() is None, broker.log()


def join(broker: Served, metadata: bytes) -> Any:
    """A JoinGroup (v7) of a new member with this subscription; the broker's answer."""
    fields = {
        "group_id": "g",
        "session_timeout": 6000,
        "rebalance_timeout": 6000,
        "member_id": "",
        "protocol_type": "consumer",
        "protocols": [{"name": "range", "metadata": metadata}],
    }
    return wire.call(broker.bootstrap, JOIN_GROUP, 7, fields)
