"""LogConsumer: group membership, positions and fetching over a LogEngine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from bisect import bisect_left
from collections.abc import Sequence
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING

from tidings.core import batch as codec
from tidings.core.errors import (
    ClosedError,
    CommitFailedError,
    ConfigurationError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    TidingsError,
)
from tidings.core.records import Record, TopicPartition
from tidings.core.subjects import compile_pattern, is_pattern, matching
from tidings.engines.base import ConsumerConfig, EngineConsumer, Rebalance
from tidings.engines.log import coordinator
from tidings.engines.log.coordinator import GroupState, MemberState, UnknownMemberError

if TYPE_CHECKING:
    from tidings.engines.log.engine import LogEngine

METADATA_MAX_AGE_S = 1.0
"""How often a subscription without a group looks for new matching topics."""

_offset = attrgetter("offset")
log = logging.getLogger("tidings")


class LogConsumer(EngineConsumer):
    """One consumer of a LogEngine, in a group or on assigned partitions."""

    def __init__(self, engine: LogEngine, config: ConsumerConfig) -> None:
        self._engine = engine
        self._store = engine.store
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
        self._buffers: dict[TopicPartition, list[Record]] = {}
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
        names = list(dict.fromkeys(topics))
        self._patterns = [t for t in names if is_pattern(t)]
        for pattern in self._patterns:
            compile_pattern(pattern)  # refuse a bad pattern now
        self._literal = [t for t in names if not is_pattern(t)]
        for topic in self._literal:
            await self._engine.topic(topic)
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
        ends = {}
        if initial:  # fixed now, not at the first poll: nothing sent after this is missed
            for topic in {tp.topic for tp in new}:
                for state in await self._engine.run(self._store.partition_states, topic):
                    ends[TopicPartition(topic, state.partition)] = state.end_offset
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
            heartbeat_ms=_now_ms(),
        )
        group = self._group

        def change(state: GroupState) -> None:
            coordinator.join(state, member, config.strategy, group, counts)

        await self._engine.run(self._store.update_group, group, change, False)
        self._member_id = member.member_id

    async def _partition_counts(self) -> dict[str, int]:
        specs = await self._engine.refresh_topics()
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
                    now_ms=_now_ms(),
                    partitions=counts,
                    revoked=revoked,
                    topics=self._topics,
                )
                result = await self._engine.run(self._store.update_group, group, change, False)
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
            self._buffers.pop(tp, None)
            self._paused.discard(tp)

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
            with contextlib.suppress(TidingsError):  # a busy store: the next beat retries
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

    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions."""
        for tp in partitions:
            spec = await self._engine.topic(tp.topic)
            if not 0 <= tp.partition < spec.partitions:
                raise PartitionNotFoundError(tp.topic, tp.partition, spec.partitions)
        self._drop([tp for tp in self._positions if tp not in partitions])
        for tp in partitions:
            self._positions.setdefault(TopicPartition(*tp), None)

    def assignment(self) -> set[TopicPartition]:
        """Partitions read now."""
        return set(self._positions)

    def take_rebalances(self) -> list[Rebalance]:
        """Rebalances since the last call."""
        out, self._rebalances = self._rebalances, []
        return out

    # -- reading -------------------------------------------------------------------------

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records."""
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
            version = self._engine.version
            records = await self._fetch(max_records)
            remaining = deadline - time.monotonic()
            if records or remaining <= 0:
                return records
            if self._subscribed:
                remaining = min(remaining, max(0.0, self._next_heartbeat - time.monotonic()))
            self._last_poll = time.monotonic()
            await self._engine.wait_for_data(version, remaining)

    def _sync_due(self) -> bool:
        """Whether this poll must look at the group or the topics first."""
        if self._group is None:
            return time.monotonic() >= self._next_heartbeat
        return (
            self._member_id is None or self._revoke_due or time.monotonic() >= self._next_heartbeat
        )

    async def _fetch(self, max_records: int) -> list[Record]:
        positions, buffers = self._positions, self._buffers
        active = [tp for tp in positions if tp not in self._paused]
        if not active:
            return []
        if len(active) > 1:
            self._rotation = (self._rotation + 1) % len(active)
            active = active[self._rotation :] + active[: self._rotation]
        for tp in active:
            if positions.get(tp, 0) is None:
                positions[tp] = await self._engine.read(self._initial_position, tp)
        wanted = {tp: positions[tp] for tp in active if not buffers.get(tp)}
        tails = self._engine.tails
        if tails and wanted:
            for tp, position in list(wanted.items()):
                tail = tails.get(tp)
                if tail is not None and tail.base_offset == position:
                    buffers[tp] = tail.records()[:]
                    del wanted[tp]
        if wanted:
            fetched = await self._engine.read(self._read, wanted)
            for tp, outcome in fetched.items():
                if self._positions.get(tp) != wanted[tp]:
                    continue  # revoked or moved by seek() while reading
                if isinstance(outcome, int):
                    self._positions[tp] = outcome
                else:
                    self._buffers[tp] = outcome
        out: list[Record] = []
        for tp in active:
            buffer = self._buffers.get(tp)
            if not buffer or tp not in self._positions:
                continue
            take = buffer[: max_records - len(out)]
            del buffer[: len(take)]
            out.extend(take)
            self._positions[tp] = take[-1].offset + 1
            if len(out) >= max_records:
                break
        return out

    def _read(
        self, positions: dict[TopicPartition, int | None]
    ) -> dict[TopicPartition, list[Record] | int]:
        """Blocking: records from each position, or where to reset one that fell off the log."""
        out: dict[TopicPartition, list[Record] | int] = {}
        limit = self._config.max_partition_fetch_bytes
        for tp, position in positions.items():
            assert position is not None
            batches = self._store.read(tp.topic, tp.partition, position, limit)
            if not batches or batches[0].base_offset > position:
                # at the end, past it (a seek), or before the start (retention)
                state = self._store.partition_states(tp.topic)[tp.partition]
                if not state.start_offset <= position <= state.end_offset:
                    out[tp] = self._reset(tp, position, state.start_offset, state.end_offset)
                    continue
                if not batches:
                    continue
            records = codec.decode(tp.topic, tp.partition, batches[0].base_offset, batches[0].data)
            for b in batches[1:]:
                records.extend(codec.decode(tp.topic, tp.partition, b.base_offset, b.data))
            skip = bisect_left(records, position, key=_offset)
            out[tp] = records[skip:] if skip else records
        return out

    def _reset(self, tp: TopicPartition, position: int, start: int, end: int) -> int:
        policy = self._config.auto_offset_reset
        if policy == "earliest":
            return start
        if policy == "latest":
            return end
        raise OffsetOutOfRangeError(tp.topic, tp.partition, position, start, end)

    def _initial_position(self, tp: TopicPartition) -> int:
        """Blocking: the committed offset, or where auto_offset_reset says to start."""
        state = self._store.partition_states(tp.topic)[tp.partition]
        if tp in self._from_start:
            self._from_start.discard(tp)
            return state.start_offset
        committed = None
        if self._group is not None:
            group_state = self._store.read_group(self._group)
            if group_state is not None:
                committed = group_state.committed(tp.topic, tp.partition)
        if committed is not None and state.start_offset <= committed <= state.end_offset:
            return committed
        return self._reset(
            tp, -1 if committed is None else committed, state.start_offset, state.end_offset
        )

    # -- positions and commits -----------------------------------------------------------

    def position(self, partition: TopicPartition) -> int:
        """The next offset to return from `partition`."""
        if partition not in self._positions:
            raise ConfigurationError(
                f"{partition.topic}[{partition.partition}] is not assigned to this consumer"
            )
        pos = self._positions[partition]
        if pos is None:
            raise ConfigurationError(
                f"{partition.topic}[{partition.partition}] has no position yet; "
                f"poll() first or seek()"
            )
        return pos

    def positions(self) -> dict[TopicPartition, int]:
        """Next offsets of the partitions that have a position."""
        return {tp: pos for tp, pos in self._positions.items() if pos is not None}

    async def seek(self, partition: TopicPartition, offset: int | str) -> None:
        """Move to `offset`, 'earliest' or 'latest'."""
        partition = TopicPartition(*partition)
        if partition not in self._positions:
            raise ConfigurationError(
                f"cannot seek {partition.topic}[{partition.partition}]: "
                f"not assigned to this consumer"
            )
        if isinstance(offset, str):
            state = (await self._engine.run(self._store.partition_states, partition.topic))[
                partition.partition
            ]
            if offset == "earliest":
                offset = state.start_offset
            elif offset == "latest":
                offset = state.end_offset
            else:
                raise ConfigurationError(
                    f"seek to an offset, 'earliest' or 'latest', not {offset!r}"
                )
        if offset < 0:
            raise ConfigurationError(f"offset must be >= 0, not {offset}")
        self.rewind(partition, offset)

    def rewind(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next record of `partition` (records given back, or a seek)."""
        self._positions[partition] = offset
        self._buffers.pop(partition, None)

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit positions (or `offsets`) to the group."""
        if self._group is None:
            raise ConfigurationError("commit needs a group; create the consumer with group='name'")
        if offsets is None:
            offsets = self.positions()
        if not offsets:
            return
        group, member_id = self._group, self._member_id
        if member_id is None and self._topics:
            raise CommitFailedError(
                group,
                f"commit failed: this consumer is out of group {group!r} (it did not poll or "
                f"heartbeat in time); its partitions were reassigned and will be re-read",
            )
        plain = {(tp[0], tp[1]): off for tp, off in offsets.items()}
        await self._engine.run(
            self._store.update_group,
            group,
            lambda s: coordinator.commit(s, group, member_id, plain),
            True,
        )

    async def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets."""
        if self._group is None:
            return {}
        state = await self._engine.run(self._store.read_group, self._group)
        out: dict[TopicPartition, int] = {}
        if state is not None:
            for tp in partitions:
                off = state.committed(tp[0], tp[1])
                if off is not None:
                    out[TopicPartition(*tp)] = off
        return out

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """First offset at or after each time."""
        out: dict[TopicPartition, int | None] = {}
        for tp, ts in timestamps.items():
            record = await self._engine.record_at_time(tp, ts)
            out[tp] = None if record is None else record.offset
        return out

    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop returning records from `partitions`."""
        self._paused.update(TopicPartition(*tp) for tp in partitions)

    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Return records from `partitions` again."""
        self._paused.difference_update(TopicPartition(*tp) for tp in partitions)

    async def close(self) -> None:
        """Leave the group, stop heartbeating."""
        if self._closed:
            return
        self._closed = True
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        await self._leave()

    async def _leave(self) -> None:
        if self._member_id is None or self._group is None:
            return
        member_id = self._member_id
        counts = await self._partition_counts()
        await self._engine.run(
            self._store.update_group,
            self._group,
            lambda s: coordinator.leave(s, member_id, counts),
            False,
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000
