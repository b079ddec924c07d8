"""LogConsumer: a group member reading a LogEngine's store, through buffers and tails."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Mapping, Sequence
from operator import attrgetter
from typing import TYPE_CHECKING, TypeVar

from tidings.core import batch as codec
from tidings.core.records import Record, TopicPartition, TopicSpec
from tidings.engines.base import ConsumerConfig
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.groups.member import GroupMember
from tidings.engines.log.store import Appended

if TYPE_CHECKING:
    from tidings.engines.log.engine import LogEngine

R = TypeVar("R")
_offset = attrgetter("offset")


class LogConsumer(GroupMember):
    """One consumer of a LogEngine, in a group or on assigned partitions."""

    def __init__(self, engine: LogEngine, config: ConsumerConfig) -> None:
        super().__init__(config)
        self._engine = engine
        self._store = engine.store
        self._buffers: dict[TopicPartition, list[Record]] = {}

    async def _topic(self, name: str) -> TopicSpec:
        return await self._engine.topic(name)

    async def _topic_specs(self) -> Mapping[str, TopicSpec]:
        return await self._engine.refresh_topics()

    async def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        state = (await self._engine.run(self._store.partition_states, tp.topic))[tp.partition]
        return state.start_offset, state.end_offset

    async def _end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        ends = {}
        for topic in {tp.topic for tp in partitions}:
            for state in await self._engine.run(self._store.partition_states, topic):
                ends[TopicPartition(topic, state.partition)] = state.end_offset
        return ends

    async def _update_group(self, change: Callable[[GroupState], R], durable: bool) -> R:
        assert self._group is not None
        return await self._engine.run(self._store.update_group, self._group, change, durable)

    async def _read_group(self) -> GroupState | None:
        assert self._group is not None
        return await self._engine.run(self._store.read_group, self._group)

    def _release(self, tp: TopicPartition) -> None:
        self._buffers.pop(tp, None)

    # -- reading -------------------------------------------------------------------------

    def _mark(self) -> int:
        return self._engine.version

    async def _wait(self, mark: int, timeout_s: float, max_records: int) -> list[Record]:
        appended = await self._engine.wait_for_data(mark, timeout_s, self._positions)
        if len(appended) != 1 or self._paused:
            return []
        return self._handed(appended[0], max_records)

    def _handed(self, appended: Appended, max_records: int) -> list[Record]:
        """The records from the batch whose append ended the wait, if this reader waited
        right at its start (the in-process subscriber at the end of the log): straight
        from the tail, without another fetch; else [] and the poll fetches as usual."""
        tp = TopicPartition(appended.topic, appended.partition)
        if self._positions.get(tp) != appended.base_offset or self._buffers.get(tp):
            return []  # moved, revoked or read ahead meanwhile
        if self._sync_due():
            return []  # the group comes first
        tail = self._engine.tails.get(tp)
        records = None if tail is None else tail.records_from(appended.base_offset)
        if not records:
            return []
        self._buffers[tp] = records
        return self._take(tp, max_records)

    async def _fetch(self, max_records: int) -> list[Record]:
        positions, buffers, tails = self._positions, self._buffers, self._engine.tails
        paused = self._paused
        active = [tp for tp in positions if tp not in paused] if paused else list(positions)
        if not active:
            return []
        if len(active) > 1:
            self._rotation = (self._rotation + 1) % len(active)
            active = active[self._rotation :] + active[: self._rotation]
        wanted: dict[TopicPartition, int] = {}
        for tp in active:
            if buffers.get(tp):
                continue
            position = positions.get(tp)
            if position is None:
                position = await self._engine.read(self._initial_position, tp)
                if tp not in positions:
                    continue  # revoked meanwhile
                positions[tp] = position
            tail = tails.get(tp)
            if tail is not None:
                records = tail.records_from(position)
                if records is not None:  # [] at the end: the next append wakes us
                    buffers[tp] = records
                    continue
            wanted[tp] = position
        if wanted:
            fetched = await self._engine.read(self._read, wanted)
            for tp, outcome in fetched.items():
                if positions.get(tp) != wanted[tp]:
                    continue  # revoked or moved by seek() while reading
                if isinstance(outcome, int):
                    positions[tp] = outcome
                else:
                    buffers[tp] = outcome
        out: list[Record] = []
        for tp in active:
            if not buffers.get(tp) or tp not in positions:
                continue
            take = self._take(tp, max_records - len(out))
            if out:
                out.extend(take)
            else:
                out = take
            if len(out) >= max_records:
                break
        return out

    def _take(self, tp: TopicPartition, room: int) -> list[Record]:
        """Up to `room` records from the buffer of `tp` (non-empty), moving its position
        past them; the rest stay buffered."""
        buffer = self._buffers[tp]
        if len(buffer) <= room:
            take = self._buffers.pop(tp)
        else:
            take = buffer[:room]
            del buffer[:room]
        self._positions[tp] = take[-1].offset + 1
        return take

    def _read(
        self, positions: dict[TopicPartition, int]
    ) -> dict[TopicPartition, list[Record] | int]:
        """Blocking: records from each position, or where to reset one that fell off the log."""
        out: dict[TopicPartition, list[Record] | int] = {}
        limit = self._config.max_partition_fetch_bytes
        for tp, position in positions.items():
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

    def _initial_position(self, tp: TopicPartition) -> int:
        """Blocking: the committed offset, or where auto_offset_reset says to start."""
        state = self._store.partition_states(tp.topic)[tp.partition]
        group = None if self._group is None else self._store.read_group(self._group)
        return self._start_offset(tp, state.start_offset, state.end_offset, group)

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """First offset at or after each time."""
        out: dict[TopicPartition, int | None] = {}
        for tp, ts in timestamps.items():
            record = await self._engine.record_at_time(tp, ts)
            out[tp] = None if record is None else record.offset
        return out
