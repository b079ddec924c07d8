"""NatsConsumer: a group member (KV-stored group) reading through ordered push consumers.

Each partition the consumer reads has a feed: an ordered consumer on the partition's
stream from the position on (the client library recreates it after a gap or a
reconnect). Records land in a per-partition buffer; a poll hands them out in order. A
seek or rewind replaces the feed. Membership, assignment and commits are tidings' own
group protocol (engines.groups.member over engines.groups.coordinator), stored in a KV entry
per group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from nats.aio.msg import Msg
from nats.js import api
from nats.js.client import JetStreamContext
from tidings.core.errors import TidingsError
from tidings.core.records import Record, TopicPartition, TopicSpec
from tidings.engines.base import ConsumerConfig
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.groups.member import GroupMember
from tidings.engines.nats import names
from tidings.engines.nats.connection import translated

if TYPE_CHECKING:
    from tidings.engines.nats.engine import NatsEngine

HIGH_WATER = 20_000
"""Records a feed may buffer before it stops (it resumes once they are handed out)."""
R = TypeVar("R")


@dataclass
class _Feed:
    """An ordered consumer delivering one partition into a buffer."""

    next_offset: int
    buffer: deque[Record] = field(default_factory=deque)
    sub: JetStreamContext.PushSubscription | None = None
    stopped: bool = False


class NatsConsumer(GroupMember):
    """One consumer of a NatsEngine, in a group or on assigned partitions."""

    def __init__(self, engine: NatsEngine, config: ConsumerConfig) -> None:
        super().__init__(config)
        self._engine = engine
        self._feeds: dict[TopicPartition, _Feed] = {}
        self._wake = asyncio.Event()

    async def _topic(self, name: str) -> TopicSpec:
        return await self._engine.topic(name)

    async def _topic_specs(self) -> Mapping[str, TopicSpec]:
        return dict(self._engine._specs)

    async def _extent(self, tp: TopicPartition) -> tuple[int, int]:
        state = (await self._engine.stream_info(tp.topic, tp.partition)).state
        return max(0, state.first_seq - 1), state.last_seq

    async def _end_offsets(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: (await self._extent(tp))[1] for tp in partitions}

    async def _update_group(self, change: Callable[[GroupState], R], durable: bool) -> R:
        assert self._group is not None
        return await self._engine.update_group(self._group, change)

    async def _read_group(self) -> GroupState | None:
        assert self._group is not None
        return await self._engine.read_group(self._group)

    def _release(self, tp: TopicPartition) -> None:
        self._stop_feed(tp)

    # -- reading -------------------------------------------------------------------------

    def _mark(self) -> int:
        self._wake.clear()
        return 0

    async def _wait(self, mark: int, timeout_s: float, max_records: int) -> list[Record]:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout_s)
        return []

    async def _fetch(self, max_records: int) -> list[Record]:
        await self._start_feeds()
        return self._take(max_records)

    async def _start_feeds(self) -> None:
        """Give every readable partition a running feed from where reading continues."""
        for tp in list(self._positions):
            if tp in self._paused:
                continue
            position = self._positions[tp]
            if position is None:
                position = self._positions[tp] = await self._initial_position(tp)
            feed = self._feeds.get(tp)
            if feed is not None and (feed.sub is not None or len(feed.buffer) >= HIGH_WATER):
                continue
            if feed is None:
                position = await self._checked(tp, position)
                self._positions[tp] = position
                feed = self._feeds[tp] = _Feed(position)
            await self._open(tp, feed)

    async def _checked(self, tp: TopicPartition, position: int) -> int:
        """`position`, or where the reset policy moves it when it is outside the log."""
        start, end = await self._extent(tp)
        if start <= position <= end:
            return position
        return self._reset(tp, position, start, end)

    async def _open(self, tp: TopicPartition, feed: _Feed) -> None:
        engine = self._engine

        async def deliver(msg: Msg) -> None:
            if feed.stopped:
                return
            seq = msg.metadata.sequence.stream
            if seq - 1 < feed.next_offset:
                return  # already buffered: a redelivery after the feed was recreated
            feed.next_offset = seq
            feed.buffer.append(names.to_record(tp.topic, tp.partition, msg, seq, 0))
            self._wake.set()
            if len(feed.buffer) >= HIGH_WATER and feed.sub is not None:
                sub, feed.sub = feed.sub, None  # resumes from next_offset once drained
                asyncio.get_running_loop().create_task(_unsubscribe(sub))

        config = api.ConsumerConfig(
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=feed.next_offset + 1,
            inactive_threshold=30.0,
        )
        with translated(self._engine.url, f"read {tp.topic}[{tp.partition}]"):
            feed.sub = await asyncio.wait_for(
                engine.js.subscribe(
                    names.subject(tp.topic, tp.partition),
                    stream=names.stream_name(tp.topic, tp.partition),
                    cb=deliver,
                    ordered_consumer=True,
                    config=config,
                ),
                engine.timeout,
            )

    def _stop_feed(self, tp: TopicPartition) -> None:
        feed = self._feeds.pop(tp, None)
        if feed is not None:
            feed.stopped = True
            if feed.sub is not None and not self._closed:
                asyncio.get_running_loop().create_task(_unsubscribe(feed.sub))
                feed.sub = None

    def _take(self, max_records: int) -> list[Record]:
        active = [tp for tp in self._positions if tp not in self._paused and tp in self._feeds]
        if not active:
            return []
        self._rotation = (self._rotation + 1) % len(active)
        active = active[self._rotation :] + active[: self._rotation]
        out: list[Record] = []
        for tp in active:
            buffer = self._feeds[tp].buffer
            taken = [buffer.popleft() for _ in range(min(len(buffer), max_records - len(out)))]
            if taken:
                out.extend(taken)
                self._positions[tp] = taken[-1].offset + 1
            if len(out) >= max_records:
                break
        return out

    async def _initial_position(self, tp: TopicPartition) -> int:
        """The committed offset, or where auto_offset_reset says to start."""
        start, end = await self._extent(tp)
        group = None if self._group is None else await self._read_group()
        return self._start_offset(tp, start, end, group)

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset whose record timestamp is at or after each time (a scan)."""
        out: dict[TopicPartition, int | None] = {}
        for tp, ts in timestamps.items():
            out[tp] = await self._first_at(TopicPartition(*tp), ts)
        return out

    async def _first_at(self, tp: TopicPartition, timestamp: int) -> int | None:
        start, end = await self._extent(tp)
        offset = start
        while offset < end:
            records = await self._engine.read(tp, offset, 1000)
            if not records:
                return None
            for r in records:
                if r.timestamp >= timestamp:
                    return r.offset
            offset = records[-1].offset + 1
        return None

    async def close(self) -> None:
        """Stop every feed and leave the group."""
        with contextlib.suppress(TidingsError):  # a server that is gone: the session expires
            await super().close()

    async def _stop_reading(self) -> None:
        subs = [feed.sub for feed in self._feeds.values() if feed.sub is not None]
        for tp in list(self._feeds):
            self._stop_feed(tp)
        await asyncio.gather(*(_unsubscribe(sub) for sub in subs))


async def _unsubscribe(sub: JetStreamContext.PushSubscription) -> None:
    with contextlib.suppress(Exception):  # the connection may be closing: nothing to stop
        await sub.unsubscribe()
