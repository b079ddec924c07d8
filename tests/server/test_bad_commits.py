"""Offset commits through the Kafka protocol: an offset no reader could resume from is
refused per partition, the group keeps only what it had, and every reader goes on."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from . import wire
from .conftest import Served

OFFSET_COMMIT, OFFSET_FETCH = 8, 9


def commit(broker: Served, group: str, offsets: dict[int, int]) -> dict[int, ErrorCode]:
    """One OffsetCommit v8 for an empty group on topic `t`; each partition's error code."""
    response = wire.call(
        broker.bootstrap,
        OFFSET_COMMIT,
        8,
        {
            "group_id": group,
            "generation_id_or_member_epoch": -1,
            "member_id": "",
            "group_instance_id": None,
            "topics": [
                {
                    "name": "t",
                    "partitions": [
                        {
                            "partition_index": p,
                            "committed_offset": o,
                            "committed_leader_epoch": -1,
                            "committed_metadata": "",
                        }
                        for p, o in offsets.items()
                    ],
                }
            ],
        },
    )
    [topic] = response.topics
    return {p.partition_index: ErrorCode(p.error_code) for p in topic.partitions}


def fetched(broker: Served, group: str) -> dict[int, int]:
    """The group's committed offsets on `t` by OffsetFetch v7 (-1 where none)."""
    response = wire.call(
        broker.bootstrap,
        OFFSET_FETCH,
        7,
        {"group_id": group, "topics": [{"name": "t", "partition_indexes": [0, 1]}]},
    )
    assert response.error_code == ErrorCode.none
    [topic] = response.topics
    return {p.partition_index: p.committed_offset for p in topic.partitions}


def test_a_negative_offset_commit_is_refused_and_the_group_stays_readable(
    broker: Served,
) -> None:
    with broker.bus() as bus:
        bus.create_topic("t", partitions=2)
        bus.publish_many("t", [b"a", b"b", b"c"], partition=0)
    assert commit(broker, "g", {0: 2}) == {0: ErrorCode.none}
    assert commit(broker, "g", {0: -7, 1: 1}) == {
        0: ErrorCode.invalid_commit_offset_size,
        1: ErrorCode.none,
    }
    assert commit(broker, "g", {1: -1}) == {1: ErrorCode.invalid_commit_offset_size}
    assert fetched(broker, "g") == {0: 2, 1: 1}
    with broker.bus() as bus:
        assert {p.partition: p.committed for p in bus.describe_group("g").partitions} == {
            0: 2,
            1: 1,
        }
        with bus.consumer("t", group="g") as consumer:  # a new member starts where committed
            assert [r.value for r in consumer.poll(timeout_ms=5000)] == [b"c"]


def test_a_commit_for_an_empty_group_id_is_refused(broker: Served) -> None:
    with broker.bus() as bus:
        bus.create_topic("t")
    assert commit(broker, "", {0: 1}) == {0: ErrorCode.invalid_group_id}
    with broker.bus() as bus:
        assert bus.list_groups() == []
