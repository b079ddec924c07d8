"""GroupMember: a consumer in tidings' own group protocol, whatever stores the group.

Membership (join, heartbeat, revoke, leave), the followed topics (names and patterns),
positions, seeks and commits are the same for every engine that keeps a `GroupState`
per group (the log engines in their store, NATS in a KV bucket). A subclass says how a
group state is changed atomically and read, where a partition's log starts and ends,
and how records are fetched: the hooks at the end of the class.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TypeVar

from tidings.core.errors import (
    ClosedError,
    CommitFailedError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    TidingsError,
)
from tidings.core.records import Record, TopicPartition, TopicSpec, now_ms
from tidings.core.subjects import matching, split_subscription
from tidings.engines.base import ConsumerConfig, Rebalance
from tidings.engines.groups import coordinator
from tidings.engines.groups.coordinator import GroupState, MemberState, UnknownMemberError
from tidings.engines.positions import PositionedConsumer

METADATA_MAX_AGE_S = 1.0
"""How often a subscription without a group looks for new matching topics."""

R = TypeVar("R")
log = logging.getLogger("tidings")


class GroupMember(PositionedConsumer):
    """One consumer, in a group or on assigned partitions; subclasses fetch the records."""

    def __init__(self, config: ConsumerConfig) -> None:
        self._config = config
        self._group = config.group
        self._topics: list[str] = []
        """The topics followed now: the named ones and those the patterns match."""
        self._literal: list[str] = []
        self._patterns: list[str] = []
        self._subscribed = False
        self._from_start: set[TopicPartition] = set()
        self._member_id: str | None = None
        self._positions: dict[TopicPartition, int | None] = {}
        self._paused: set[TopicPartition] = set()
        self._rebalances: list[Rebalance] = []
        self._sync_lock = asyncio.Lock()
        self._heartbeat: asyncio.Task[None] | None = None
        self._next_heartbeat = 0.0
        self._last_poll = time.monotonic()
        self._revoke_due = False
        self._rotation = 0
        self._closed = False

    # -- membership ----------------------------------------------------------------------

    async def subscribe(self, topics: Sequence[str]) -> None:
        """Follow `topics` (names or patterns): in the group, or alone from their end."""
        self._patterns, self._literal = split_subscription(topics)
        for topic in self._literal:
            await self._topic(topic)
        self._subscribed = True
        if self._group is None:  # an ephemeral subscription: no group, nothing stored
            await self._follow_topics(initial=True)
            return
        await self._join()
        await self._sync(in_poll=True)
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._heartbeat_forever())

    async def _follow_topics(self, initial: bool) -> None:
        """Without a group: read every partition of the matching topics.

        Partitions there at the start are read from their end; those of topics created
        later, from their beginning, so nothing published after subscribing is missed.
        """
        self._next_heartbeat = time.monotonic() + METADATA_MAX_AGE_S
        counts = await self._partition_counts()
        wanted = {TopicPartition(t, p) for t in self._topics for p in range(counts.get(t, 0))}
        new = [tp for tp in sorted(wanted) if tp not in self._positions]
        # fixed now, not at the first poll: nothing sent after this is missed
        ends = await self._end_offsets(new) if initial and new else {}
        for tp in new:
            self._positions[tp] = ends.get(tp)
            if not initial:
                self._from_start.add(tp)
        gone = [tp for tp in self._positions if tp not in wanted]  # deleted topics
        self._drop(gone)
        if new or gone:
            self._rebalances.append(Rebalance(tuple(gone), tuple(new)))

    async def _join(self) -> None:
        assert self._group is not None
        config = self._config
        counts = await self._partition_counts()  # also settles which topics are followed
        member = MemberState(
            member_id=f"{config.client_id}-{uuid.uuid4().hex[:12]}",
            client_id=config.client_id,
            topics=list(self._topics),
            session_timeout_ms=config.session_timeout_ms,
            heartbeat_ms=now_ms(),
        )
        group = self._group

        def change(state: GroupState) -> None:
            coordinator.join(state, member, config.strategy, group, counts)

        await self._update_group(change, durable=False)
        self._member_id = member.member_id

    async def _partition_counts(self) -> dict[str, int]:
        specs = await self._topic_specs()
        if self._patterns:  # topics created or deleted since may match now
            found = matching(self._patterns, specs)
            self._topics = list(dict.fromkeys([*self._literal, *found]))
        else:
            self._topics = self._literal
        # every topic's count: members of one group may follow different topics
        return {t: spec.partitions for t, spec in specs.items()}

    async def _sync(self, in_poll: bool) -> None:
        """Heartbeat; take what the group gives; in a poll, also give up what it takes.

        As in Kafka, partitions are revoked only inside poll(): records the application
        already holds are processed and committed before another member gets them.
        """
        async with self._sync_lock:
            await self._sync_locked(in_poll)

    async def _sync_locked(self, in_poll: bool) -> None:
        assert self._group is not None
        group = self._group
        self._next_heartbeat = time.monotonic() + self._config.heartbeat_interval_ms / 1000
        revoked: list[tuple[str, int]] = []
        while True:
            if self._member_id is None:  # left the group: rejoin on the next poll
                if not in_poll:
                    return
                self._lose(tuple(self._positions))
                await self._join()
            assert self._member_id is not None
            counts = await self._partition_counts()
            try:
                change = partial(
                    coordinator.sync,
                    group=group,
                    member_id=self._member_id,
                    now_ms=now_ms(),
                    partitions=counts,
                    revoked=revoked,
                    topics=self._topics,
                )
                result = await self._update_group(change, durable=False)
            except UnknownMemberError:
                self._member_id = None  # expired by the group: its partitions went elsewhere
                continue
            revoked = []
            if result.assign:
                new = [TopicPartition(*tp) for tp in result.assign]
                for tp in new:
                    self._positions[tp] = None
                self._rebalances.append(Rebalance((), tuple(new)))
            self._revoke_due = bool(result.revoke)
            if not result.revoke or not in_poll:
                return
            gone = [TopicPartition(*tp) for tp in result.revoke]
            await self._commit_owned(gone)
            self._drop(gone)
            self._rebalances.append(Rebalance(tuple(gone), ()))
            revoked = result.revoke

    def _lose(self, partitions: Sequence[TopicPartition]) -> None:
        if partitions:
            self._drop(partitions)
            self._rebalances.append(Rebalance(tuple(partitions), ()))

    async def _commit_owned(self, partitions: Sequence[TopicPartition]) -> None:
        if self.commit_source is None:
            return
        consumed = self.commit_source()
        offsets = {tp: consumed[tp] for tp in partitions if tp in consumed}
        if offsets:
            with contextlib.suppress(Exception):  # the next owner re-reads: at-least-once
                await self.commit(offsets)

    def _drop(self, partitions: Sequence[TopicPartition]) -> None:
        for tp in partitions:
            self._positions.pop(tp, None)
            self._paused.discard(tp)
            self._release(tp)

    async def _heartbeat_forever(self) -> None:
        interval = self._config.heartbeat_interval_ms / 1000
        while not self._closed:
            delay = self._next_heartbeat - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
                continue
            idle_ms = (time.monotonic() - self._last_poll) * 1000
            if self._member_id is not None and idle_ms > self._config.max_poll_interval_ms:
                await self._leave_idle(idle_ms)
            with contextlib.suppress(TidingsError):  # a busy store or server: the next beat
                await self._sync(in_poll=False)
            self._next_heartbeat = max(self._next_heartbeat, time.monotonic() + interval)

    async def _leave_idle(self, idle_ms: float) -> None:
        """Leave the group: the application stopped polling (Kafka's max.poll.interval.ms)."""
        log.warning(
            "consumer %s of group %r did not poll for %.0f ms (max_poll_interval_ms=%d); "
            "it leaves the group and rejoins on its next poll",
            self._member_id,
            self._group,
            idle_ms,
            self._config.max_poll_interval_ms,
        )
        async with self._sync_lock:
            await self._leave()
            self._member_id = None

    async def _leave(self) -> None:
        if self._member_id is None or self._group is None:
            return
        member_id = self._member_id
        counts = await self._partition_counts()
        await self._update_group(lambda s: coordinator.leave(s, member_id, counts), durable=False)

    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions."""
        for tp in partitions:
            spec = await self._topic(tp.topic)
            if not 0 <= tp.partition < spec.partitions:
                raise PartitionNotFoundError(tp.topic, tp.partition, spec.partitions)
        self._drop([tp for tp in self._positions if tp not in partitions])
        for tp in partitions:
            self._positions.setdefault(TopicPartition(*tp), None)

    # -- reading -------------------------------------------------------------------------

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records, waiting up to `timeout_s` for the first."""
        if self._closed:
            raise ClosedError("consumer is closed")
        deadline = time.monotonic() + timeout_s
        self._last_poll = time.monotonic()
        while True:
            if self._subscribed and self._sync_due():
                if self._group is None:
                    await self._follow_topics(initial=False)
                else:
                    await self._sync(in_poll=True)
            mark = self._mark()
            records = await self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            if self._subscribed:
                remaining = min(remaining, max(0.0, self._next_heartbeat - time.monotonic()))
            self._last_poll = time.monotonic()
            records = await self._wait(mark, remaining, max_records)
            if records:
                return records

    def _sync_due(self) -> bool:
        """Whether this poll must look at the group or the topics first."""
        if self._group is None:
            return time.monotonic() >= self._next_heartbeat
        return (
            self._member_id is None or self._revoke_due or time.monotonic() >= self._next_heartbeat
        )

    def _start_offset(
        self, tp: TopicPartition, start: int, end: int, group: GroupState | None
    ) -> int:
        """Where reading `tp` begins: the committed offset, or where auto_offset_reset says.

        `start` and `end` are the partition's log extent; `group` its stored group state.
        """
        if tp in self._from_start:  # a topic created after an ephemeral subscription
            self._from_start.discard(tp)
            return start
        committed = None if group is None else group.committed(tp.topic, tp.partition)
        if committed is not None and start <= committed <= end:
            return committed
        return self._reset(tp, -1 if committed is None else committed, start, end)

    def _reset(self, tp: TopicPartition, position: int, start: int, end: int) -> int:
        policy = self._config.auto_offset_reset
        if policy == "earliest":
            return start
        if policy == "latest":
            return end
        raise OffsetOutOfRangeError(tp.topic, tp.partition, position, start, end)

    # -- positions and commits -----------------------------------------------------------

    def rewind(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next record of `partition` (records given back, or a seek)."""
        self._positions[partition] = offset
        self._release(partition)

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit positions (or `offsets`) to the group."""
        group, offsets = self._to_commit(offsets)
        if not offsets:
            return
        member_id = self._member_id
        if member_id is None and self._topics:
            raise CommitFailedError(
                group,
                f"commit failed: this consumer is out of group {group!r} (it did not poll or "
                f"heartbeat in time); its partitions were reassigned and will be re-read",
            )
        plain = {(tp[0], tp[1]): off for tp, off in offsets.items()}
        await self._update_group(
            lambda s: coordinator.commit(s, group, member_id, plain), durable=True
        )

    async def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets."""
        if self._group is None:
            return {}
        state = await self._read_group()
        out: dict[TopicPartition, int] = {}
        if state is not None:
            for tp in partitions:
                off = state.committed(tp[0], tp[1])
                if off is not None:
                    out[TopicPartition(*tp)] = off
        return out

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop returning records from `partitions` until resumed."""
        self._paused.update(TopicPartition(*tp) for tp in partitions)

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Return records from `partitions` again."""
        self._paused.difference_update(TopicPartition(*tp) for tp in partitions)

    async def close(self) -> None:
        """Stop reading and heartbeating, and leave the group."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self._stop_reading()
        await self._leave()

    # -- what an engine provides -----------------------------------------------------------

    @abstractmethod
    async def _topic(self, name: str) -> TopicSpec:
        """The topic's spec (TopicNotFoundError, or created where the engine auto-creates)."""

    @abstractmethod
    async def _topic_specs(self) -> Mapping[str, TopicSpec]:
        """Every topic known now, for patterns and partition counts."""

    @abstractmethod
    async def _end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The end offset of each partition."""

    @abstractmethod
    async def _update_group(self, change: Callable[[GroupState], R], durable: bool) -> R:
        """Apply `change` to the group's state atomically; `durable` for commits."""

    @abstractmethod
    async def _read_group(self) -> GroupState | None:
        """The group's stored state, if any."""

    @abstractmethod
    def _mark(self) -> int:
        """Called before a fetch: what `_wait` needs to notice records arriving after it."""

    @abstractmethod
    async def _fetch(self, max_records: int) -> list[Record]:
        """Up to `max_records` records from the readable partitions, without waiting."""

    @abstractmethod
    async def _wait(self, mark: int, timeout_s: float, max_records: int) -> list[Record]:
        """Wait up to `timeout_s` for records that arrived after `_mark` returned `mark`;
        records the wake-up brought along (up to `max_records`), else [] (then fetch)."""

    @abstractmethod
    def _release(self, tp: TopicPartition) -> None:
        """Forget what was read ahead of the partition's position (dropped or moved)."""

    async def _stop_reading(self) -> None:
        """On close: stop whatever reads in the background (nothing by default)."""
