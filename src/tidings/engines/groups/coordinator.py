"""Consumer-group coordination as pure state transitions.

A store keeps one `GroupState` per group and applies these functions atomically (a
lock in memory, a write transaction in SQLite), so every process on the host sees one
group. Partitions move safely: a member is given a partition only once no other member
owns it, so two members never read the same partition in one generation. With the
eager `range` strategy a member gives up everything on a rebalance; with
`cooperative-sticky` it gives up only what moves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple, TypeVar

from tidings.core.errors import (
    CommitFailedError,
    GroupError,
    GroupNotEmptyError,
    GroupNotFoundError,
)
from tidings.core.records import TopicPartition, TopicSpec, validate_offset, validate_partition
from tidings.engines.base import (
    GroupDescription,
    MemberDescription,
    PartitionLag,
    PartitionState,
)
from tidings.engines.groups.assignors import (
    Partition,
    range_assign,
    roundrobin_assign,
    sticky_assign,
)

R = TypeVar("R")

STRATEGIES = ("range", "roundrobin", "cooperative-sticky")
"""Assignors the group runs (server-side), by the names Kafka clients give them."""
COOPERATIVE = "cooperative-sticky"


class UnknownMemberError(GroupError):
    """The member was removed from the group (session timeout or leave); it must rejoin."""


@dataclass
class MemberState:
    """One live member as the group sees it."""

    member_id: str
    client_id: str
    topics: list[str]
    session_timeout_ms: int
    heartbeat_ms: int
    target: list[Partition] = field(default_factory=list)
    owned: list[Partition] = field(default_factory=list)
    revoked_generation: int = 0
    client_host: str = ""
    protocols: dict[str, str] = field(default_factory=dict)
    """A member joined through the Kafka protocol: its assignors' metadata (base64) by
    name. Empty for members of the Python API."""


@dataclass
class GroupState:
    """Everything stored about a group: members, assignment and committed offsets."""

    generation: int = 0
    strategy: str | None = None
    members: dict[str, MemberState] = field(default_factory=dict)
    partitions: dict[str, int] = field(default_factory=dict)
    offsets: dict[str, dict[str, int]] = field(default_factory=dict)

    def to_json(self) -> str:
        """Serialize for storage."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> GroupState:
        """Deserialize from storage."""
        raw: dict[str, Any] = json.loads(text)
        members = {}
        for mid, m in raw.pop("members").items():
            m["target"] = [tuple(tp) for tp in m["target"]]
            m["owned"] = [tuple(tp) for tp in m["owned"]]
            members[mid] = MemberState(**m)
        return cls(members=members, **raw)

    @property
    def forgotten(self) -> bool:
        """No members and no committed offsets: nothing worth storing."""
        return not self.members and not self.offsets

    def subscribed_topics(self) -> set[str]:
        """Every topic some member subscribes to."""
        return {t for m in self.members.values() for t in m.topics}

    def known_topics(self) -> set[str]:
        """Every topic the group has committed offsets in or some member subscribes to."""
        return set(self.offsets) | self.subscribed_topics()

    def committed(self, topic: str, partition: int) -> int | None:
        """The committed offset of a partition, if any."""
        return self.offsets.get(topic, {}).get(str(partition))

    def set_committed(self, topic: str, partition: int, offset: int) -> None:
        """Store a partition's committed offset; one a reader could not use is refused."""
        # The store's boundary: whatever path a commit took, the state holds only offsets.
        validate_partition(partition)
        self.offsets.setdefault(topic, {})[str(partition)] = validate_offset(
            offset, TopicPartition(topic, partition)
        )

    def owner(self, tp: Partition) -> str | None:
        """The member that owns `tp` now."""
        for m in self.members.values():
            if tp in m.owned:
                return m.member_id
        return None


class SyncResult(NamedTuple):
    """What a member must do after a heartbeat."""

    generation: int
    revoke: list[Partition]
    assign: list[Partition]


def join(
    state: GroupState,
    member: MemberState,
    strategy: str,
    group: str,
    partitions: dict[str, int],
) -> None:
    """Add `member` and rebalance."""
    if state.members and state.strategy != strategy:
        raise GroupError(
            group,
            f"group {group!r} uses the {state.strategy!r} assignment strategy; a member "
            f"asked for {strategy!r}; use the same strategy in every member",
        )
    state.strategy = strategy
    state.members[member.member_id] = member
    _rebalance(state, partitions)


def leave(state: GroupState, member_id: str, partitions: dict[str, int]) -> None:
    """Remove a member (if present) and rebalance."""
    if state.members.pop(member_id, None) is not None:
        _rebalance(state, partitions)


def expire(state: GroupState, now_ms: int) -> list[str]:
    """Remove members whose session timed out; returns their ids (caller rebalances)."""
    dead = [
        m.member_id
        for m in state.members.values()
        if now_ms - m.heartbeat_ms > m.session_timeout_ms
    ]
    for mid in dead:
        del state.members[mid]
    return dead


def reap(state: GroupState, now_ms: int, partitions: dict[str, int]) -> None:
    """Remove members whose session timed out (a crashed process) and rebalance the rest."""
    if expire(state, now_ms):
        _rebalance(state, partitions)


def sync(
    state: GroupState,
    group: str,
    *,
    member_id: str,
    now_ms: int,
    partitions: dict[str, int],
    revoked: list[Partition],
    topics: list[str] | None = None,
) -> SyncResult:
    """Heartbeat: record `revoked` and the member's `topics` (patterns match new ones),
    expire the dead, and say what to revoke and take."""
    member = state.members.get(member_id)
    if member is None:
        raise UnknownMemberError(
            group, f"member {member_id} is no longer in group {group!r}; it must rejoin"
        )
    member.heartbeat_ms = now_ms
    if topics is not None and topics != member.topics:
        member.topics = list(topics)  # the partition counts below then differ: a rebalance
    for tp in revoked:
        if tp in member.owned:
            member.owned.remove(tp)
    if expire(state, now_ms) or _counts(state, partitions) != state.partitions:
        _rebalance(state, partitions)
    eager = state.strategy != COOPERATIVE
    if eager and member.revoked_generation < state.generation:
        if member.owned:
            return SyncResult(state.generation, list(member.owned), [])
        member.revoked_generation = state.generation
    revoke = [tp for tp in member.owned if tp not in member.target]
    if eager and revoke:
        return SyncResult(state.generation, revoke, [])
    others = {tp for m in state.members.values() if m is not member for tp in m.owned}
    assign = [tp for tp in member.target if tp not in member.owned and tp not in others]
    member.owned.extend(assign)
    return SyncResult(state.generation, revoke, assign)


class CommitRefusal(NamedTuple):
    """Why a commit is refused: the committer is not a member, or does not own a partition."""

    unknown_member: bool
    message: str


def commit_refusal(
    state: GroupState, group: str, member_id: str | None, offsets: dict[Partition, int]
) -> CommitRefusal | None:
    """Why `member_id` may not commit `offsets` now (None: it may)."""
    if member_id is None:
        if state.members:
            return CommitRefusal(
                True,
                f"group {group!r} has live members; a consumer outside the group cannot "
                f"commit for it (use a different group, or subscribe)",
            )
        return None
    member = state.members.get(member_id)
    if member is None:
        return CommitRefusal(
            True,
            f"commit failed: this consumer was removed from group {group!r} "
            f"(session timeout); its partitions were reassigned and will be re-read",
        )
    lost = [tp for tp in offsets if tp not in member.owned]
    if lost:
        return CommitRefusal(
            False,
            f"commit failed: partitions {sorted(lost)} are no longer assigned to this "
            f"member of group {group!r} (the group rebalanced)",
        )
    return None


def commit(
    state: GroupState, group: str, member_id: str | None, offsets: dict[Partition, int]
) -> None:
    """Store committed offsets, refusing partitions the committer does not own."""
    refusal = commit_refusal(state, group, member_id, offsets)
    if refusal is not None:
        raise CommitFailedError(group, refusal.message)
    for (topic, partition), offset in offsets.items():  # checked first: a bad one stores none
        validate_offset(offset, TopicPartition(topic, validate_partition(partition)))
    for (topic, partition), offset in offsets.items():
        state.set_committed(topic, partition, offset)


# -- administration ------------------------------------------------------------------------


def set_offsets(state: GroupState, group: str, offsets: Mapping[TopicPartition, int]) -> None:
    """Overwrite committed offsets of a group with no live members (all checked first)."""
    require_empty(group, state, "reset offsets of")
    for (topic, partition), offset in offsets.items():
        validate_offset(offset, TopicPartition(topic, validate_partition(partition)))
    for (topic, partition), offset in offsets.items():
        state.set_committed(topic, partition, offset)


def administered(
    group: str,
    change: Callable[[GroupState], R],
    specs: Mapping[str, TopicSpec],
    *,
    must_exist: bool = True,
) -> Callable[[GroupState], R]:
    """`change`, applied after expiring members whose session ended (a crashed process)."""

    def reaped(state: GroupState) -> R:
        if must_exist and state.forgotten and not state.generation:  # never stored
            raise GroupNotFoundError(group)
        counts = {t: specs[t].partitions for t in state.subscribed_topics() if t in specs}
        reap(state, time.time_ns() // 1_000_000, counts)  # the rest rebalance over `specs`
        return change(state)

    return reaped


def require_empty(group: str, state: GroupState, action: str) -> None:
    """Refuse `action` (a verb: 'delete') on a group that still has live members."""
    if state.members:
        raise GroupNotEmptyError(
            group,
            f"cannot {action} group {group!r}: it has {len(state.members)} live member(s); "
            f"stop its consumers first",
        )


def describe(
    group: str, state: GroupState, extents: Mapping[str, Sequence[PartitionState]]
) -> GroupDescription:
    """Members, assignment and lag of a group, given the extents of its known topics."""
    subscribed = state.subscribed_topics()
    lags = []
    for topic, partitions in sorted(extents.items()):
        for extent in sorted(partitions, key=lambda e: e.partition):
            p = extent.partition
            committed, owner = state.committed(topic, p), state.owner((topic, p))
            if committed is not None or owner or topic in subscribed:
                lags.append(
                    PartitionLag(topic, p, committed, extent.end_offset, owner, extent.start_offset)
                )
    members = tuple(
        MemberDescription(
            m.member_id,
            m.client_id,
            tuple(m.topics),
            tuple(TopicPartition(*tp) for tp in m.owned),
        )
        for m in state.members.values()
    )
    return GroupDescription(
        group=group,
        state=_described_state(state),
        generation=state.generation,
        strategy=state.strategy,
        members=members,
        partitions=tuple(lags),
    )


def _described_state(state: GroupState) -> Literal["Stable", "PreparingRebalance", "Empty"]:
    if not state.members:
        return "Empty"
    settled = all(sorted(m.owned) == sorted(m.target) for m in state.members.values())
    return "Stable" if settled else "PreparingRebalance"


# -- members joined through the Kafka protocol ----------------------------------------------
#
# The group assigns on the server for every member, as Kafka's KIP-848 does for classic
# members in a new-style group: a Kafka client's own assignor runs (as leader) but its
# result is not used. JoinGroup and SyncGroup are that member's sync: an eager member has
# revoked everything before it rejoins; a cooperative one reports what it still owns.
# Its heartbeat asks it to rejoin whenever it holds a partition it must give up, or a
# partition meant for it has become free.


def kafka_join(
    state: GroupState,
    group: str,
    member: MemberState,
    still_owned: list[Partition] | None,
    partitions: dict[str, int],
) -> str:
    """Add or refresh a Kafka member; the assignor the group runs (one both support)."""
    offered = list(member.protocols)
    if state.members.keys() - {member.member_id} and state.strategy is not None:
        if state.strategy not in offered:
            raise GroupError(
                group,
                f"group {group!r} uses the {state.strategy!r} assignor; this member offers "
                f"{', '.join(offered) or 'none'}; configure {state.strategy!r} "
                f"(partition.assignment.strategy) in every member",
            )
        strategy = state.strategy
    else:
        known = [name for name in offered if name in STRATEGIES]
        if not known:
            raise GroupError(
                group,
                f"none of the assignors {', '.join(offered) or '(none)'} is served; use one "
                f"of {', '.join(STRATEGIES)} (partition.assignment.strategy)",
            )
        strategy = known[0]
    existing = state.members.get(member.member_id)
    if existing is None:
        join(state, member, strategy, group, partitions)
        return strategy
    existing.heartbeat_ms = member.heartbeat_ms
    existing.session_timeout_ms = member.session_timeout_ms
    existing.protocols = member.protocols
    if strategy == COOPERATIVE and still_owned is not None:
        existing.owned = [tp for tp in existing.owned if tp in still_owned]
    else:
        existing.owned = []  # an eager member revoked everything before rejoining
    if existing.topics != member.topics or _counts(state, partitions) != state.partitions:
        existing.topics = list(member.topics)
        _rebalance(state, partitions)
    return strategy


def kafka_assignment(
    state: GroupState, group: str, member_id: str, now_ms: int, partitions: dict[str, int]
) -> list[Partition]:
    """SyncGroup: what the member reads now (partitions it must give up are left out)."""
    member = _live(state, group, member_id, now_ms, partitions)
    others = {tp for m in state.members.values() if m is not member for tp in m.owned}
    member.owned.extend(tp for tp in member.target if tp not in member.owned and tp not in others)
    # A partition leaving a cooperative member stays owned until it rejoins without it.
    return sorted(tp for tp in member.owned if tp in member.target)


def kafka_heartbeat(
    state: GroupState, group: str, member_id: str, now_ms: int, partitions: dict[str, int]
) -> bool:
    """Record a Kafka member's heartbeat; whether it must rejoin (a rebalance for it)."""
    member = _live(state, group, member_id, now_ms, partitions)
    if any(tp not in member.target for tp in member.owned):
        return True
    others = {tp for m in state.members.values() if m is not member for tp in m.owned}
    return any(tp not in member.owned and tp not in others for tp in member.target)


def _live(
    state: GroupState, group: str, member_id: str, now_ms: int, partitions: dict[str, int]
) -> MemberState:
    member = state.members.get(member_id)
    if member is None:
        raise UnknownMemberError(
            group, f"member {member_id} is no longer in group {group!r}; it must rejoin"
        )
    member.heartbeat_ms = now_ms
    if expire(state, now_ms) or _counts(state, partitions) != state.partitions:
        _rebalance(state, partitions)
    return member


def _counts(state: GroupState, partitions: dict[str, int]) -> dict[str, int]:
    topics = state.subscribed_topics()
    return {t: n for t, n in partitions.items() if t in topics}


def _rebalance(state: GroupState, partitions: dict[str, int]) -> None:
    state.generation += 1
    state.partitions = _counts(state, partitions)
    if not state.members:
        state.strategy = None
        return
    subscriptions = {mid: m.topics for mid, m in state.members.items()}
    if state.strategy == "range":
        targets = range_assign(subscriptions, state.partitions)
    elif state.strategy == "roundrobin":
        targets = roundrobin_assign(subscriptions, state.partitions)
    else:
        previous = {mid: m.target for mid, m in state.members.items()}
        targets = sticky_assign(subscriptions, state.partitions, previous)
    for mid, member in state.members.items():
        member.target = targets[mid]
