"""Assignors and group transitions: pure logic, no engine."""

from __future__ import annotations

import pytest

from tidings.core.errors import CommitFailedError
from tidings.engines.groups import coordinator
from tidings.engines.groups.assignors import range_assign, sticky_assign
from tidings.engines.groups.coordinator import GroupState, MemberState


def test_range_gives_consecutive_partitions_per_topic() -> None:
    out = range_assign({"a": ["t"], "b": ["t"]}, {"t": 5})
    assert out == {"a": [("t", 0), ("t", 1), ("t", 2)], "b": [("t", 3), ("t", 4)]}


def test_range_respects_subscriptions() -> None:
    out = range_assign({"a": ["t", "u"], "b": ["u"]}, {"t": 2, "u": 2})
    assert out == {"a": [("t", 0), ("t", 1), ("u", 0)], "b": [("u", 1)]}


def test_sticky_keeps_previous_and_balances() -> None:
    previous = {"a": [("t", p) for p in range(6)]}
    out = sticky_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 6}, previous)
    assert sorted(len(v) for v in out.values()) == [2, 2, 2]
    assert set(out["a"]) <= set(previous["a"])
    assert sorted(tp for v in out.values() for tp in v) == [("t", p) for p in range(6)]


def _member(mid: str, now: int = 0) -> MemberState:
    return MemberState(mid, "c", ["t"], session_timeout_ms=1000, heartbeat_ms=now)


def _sync(
    state: GroupState, mid: str, now: int, revoked: list[tuple[str, int]]
) -> coordinator.SyncResult:
    return coordinator.sync(
        state, "g", member_id=mid, now_ms=now, partitions={"t": 4}, revoked=revoked
    )


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_a_partition_is_never_owned_twice(strategy: str) -> None:
    state = GroupState()
    coordinator.join(state, _member("a"), strategy, "g", {"t": 4})
    assert sorted(_sync(state, "a", 1, []).assign) == [("t", p) for p in range(4)]
    coordinator.join(state, _member("b", 1), strategy, "g", {"t": 4})
    first_b = _sync(state, "b", 2, [])
    assert first_b.assign == []  # a still owns everything
    revoke = _sync(state, "a", 3, []).revoke
    assert revoke
    _sync(state, "a", 4, revoke)
    b = _sync(state, "b", 5, []).assign
    owned_a = set(state.members["a"].owned)
    assert b and not owned_a & set(b)
    assert owned_a | set(state.members["b"].owned) == {("t", p) for p in range(4)}


def test_expired_member_is_removed_and_its_partitions_move() -> None:
    state = GroupState()
    coordinator.join(state, _member("a"), "range", "g", {"t": 4})
    coordinator.join(state, _member("b"), "range", "g", {"t": 4})
    _sync(state, "a", 10, [])
    _sync(state, "b", 10, [])
    result = _sync(state, "a", 2000, [])  # b has not heartbeated for 1990 ms > 1000
    assert set(state.members) == {"a"}
    _sync(state, "a", 2001, result.revoke)  # eager: give up everything, then take the new set
    assert sorted(state.members["a"].owned) == [("t", p) for p in range(4)]


def test_commit_of_a_partition_not_owned_fails() -> None:
    state = GroupState()
    coordinator.join(state, _member("a"), "range", "g", {"t": 4})
    _sync(state, "a", 1, [])
    coordinator.commit(state, "g", "a", {("t", 0): 5})
    assert state.committed("t", 0) == 5
    with pytest.raises(CommitFailedError):
        coordinator.commit(state, "g", "gone", {("t", 0): 6})
    assert state.committed("t", 0) == 5
