"""The SQLite writer's group commit: one request's bad batch fails that request alone, and
a group's stored state holds only offsets a reader can use."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tidings import InvalidArgumentError, PartitionNotFoundError, TopicSpec
from tidings.core import batch as codec
from tidings.engines.groups import coordinator
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log.store import ProduceBatch
from tidings.engines.sqlite.store import SQLiteStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A store with a topic of two partitions."""
    s = SQLiteStore(tmp_path / "bus.db")
    s.open()
    s.create_topic(TopicSpec("t", 2))
    yield s
    s.close()


def one(value: bytes, partition: object = 0) -> ProduceBatch:
    """A produce request of one record."""
    return ProduceBatch("t", partition, codec.encode_one(value, None, 1, ()))  # type: ignore[arg-type]


def test_a_bad_batch_in_a_group_commit_fails_only_its_own_request(store: SQLiteStore) -> None:
    # Queued while the writer waits for the lock: all five are written as one group.
    with store._wake:
        futures = [
            store.submit([one(b"a")]),
            store.submit([one(b"b", 1), one(b"lost", 0.5)]),  # all or nothing: none stored
            store.submit([one(b"c", 1)]),
            store.submit([one(b"d", "0")]),
            store.submit([one(b"e")]),
        ]
    outcomes = [f.exception() or f.result() for f in futures]
    assert isinstance(outcomes[1], PartitionNotFoundError)
    assert isinstance(outcomes[3], PartitionNotFoundError)
    assert [r.base_offset for o in (outcomes[0], outcomes[4]) for r in o] == [0, 1]  # type: ignore[union-attr]
    assert [r.base_offset for r in outcomes[2]] == [0]  # type: ignore[union-attr]
    stored = {
        p: [
            r.value
            for b in store.read("t", p, 0, 1 << 20)
            for r in codec.decode("t", p, b.base_offset, b.data)
        ]
        for p in (0, 1)
    }
    assert stored == {0: [b"a", b"e"], 1: [b"c"]}
    assert [s.end_offset for s in store.partition_states("t")] == [2, 1]


def test_a_group_state_holds_only_offsets_a_reader_can_use(store: SQLiteStore) -> None:
    store.update_group("g", lambda s: coordinator.commit(s, "g", None, {("t", 0): 4}), True)
    bads: list[Any] = ["x", -7, 1.5, None]
    for bad in bads:
        offsets = {("t", 1): 1, ("t", 0): bad}
        with pytest.raises(InvalidArgumentError) as info:
            store.update_group(
                "g", partial(coordinator.commit, group="g", member_id=None, offsets=offsets), True
            )
        assert info.value.argument == "offset"
        with pytest.raises(InvalidArgumentError):
            store.update_group(
                "g", partial(GroupState.set_committed, topic="t", partition=0, offset=bad), True
            )
    state = store.read_group("g")
    assert state is not None and state.offsets == {"t": {"0": 4}}
