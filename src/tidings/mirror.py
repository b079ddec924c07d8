"""Copy topics and group offsets from one engine to another: `tidings mirror SRC DST`.

Records keep their partition, key, value, headers and timestamp; offsets on the
destination are its own. How far each partition got is kept on the destination, in the
compacted topic `_tidings.mirror`, written after the records it describes are durable:

- a mirror stopped at any moment (even killed) resumes where it left off. Records copied
  after the last saved progress are found by the destination's end offset and not copied
  again, so each record lands exactly once, as long as nothing else writes to the
  mirrored topics on the destination meanwhile;
- a group's committed offset is translated through the ranges of source offsets copied
  contiguously (MirrorMaker's offset syncs, in one record): exact inside a range, and
  never later than exact where ranges were merged, so a group resumes on the destination
  without losing a record;
- a group's offset on the destination only ever moves forwards: where the group read
  further there (or has live members there), the destination's offset is kept and the
  report says so, so running the mirror again never makes a group read records twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from bisect import bisect_right
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from tidings.api.bus import AsyncBus
from tidings.api.keyed import latest_all, remember
from tidings.core.errors import GroupNotEmptyError, GroupNotFoundError, TidingsError
from tidings.core.records import Record, TopicConfig, TopicPartition
from tidings.core.subjects import is_pattern, matching

PROGRESS_TOPIC = "_tidings.mirror"
MAX_RANGES = 1_000
"""Copied ranges kept per partition; beyond, neighbours merge (translation stays safe)."""
BATCH = 5_000
"""Records read and copied per round, per partition."""


class MirrorError(TidingsError):
    """The mirror cannot go on safely; the message says why and what to do."""


@dataclass
class PartitionProgress:
    """How far one partition is copied, and which source ranges went where."""

    next_offset: int
    """The next source offset to copy."""
    dst_end: int
    """The destination's end offset once everything before `next_offset` was copied."""
    ranges: list[tuple[int, int, int]] = field(default_factory=list)
    """(source start, destination start, length) of each run copied without a gap."""

    def add(self, src: int, dst: int) -> None:
        """Note that source offset `src` was copied to destination offset `dst`."""
        if self.ranges:
            s, d, n = self.ranges[-1]
            if src == s + n and dst == d + n:
                self.ranges[-1] = (s, d, n + 1)
                return
        self.ranges.append((src, dst, 1))
        if len(self.ranges) > MAX_RANGES:
            # keep every other range (and the last): a committed offset in a dropped one
            # maps to the end of the range before it, earlier than exact, never later
            self.ranges = [*self.ranges[:-1:2], self.ranges[-1]]

    def translate(self, offset: int) -> int:
        """The destination offset a group committed at source `offset` resumes from."""
        if not self.ranges or offset <= self.ranges[0][0]:
            return self.ranges[0][1] if self.ranges else self.dst_end
        if offset >= self.next_offset:
            return self.dst_end
        s, d, n = self.ranges[bisect_right(self.ranges, (offset, 1 << 63, 0)) - 1]
        return d + min(offset - s, n)

    def to_json(self) -> str:
        """The progress as stored on the destination."""
        return json.dumps(
            {"next": self.next_offset, "dst_end": self.dst_end, "ranges": self.ranges}
        )

    @classmethod
    def from_json(cls, text: str) -> PartitionProgress:
        """Progress read back from the destination."""
        raw = json.loads(text)
        return cls(raw["next"], raw["dst_end"], [tuple(r) for r in raw["ranges"]])


@dataclass
class MirrorReport:
    """What one run of the mirror did."""

    copied: dict[str, int] = field(default_factory=dict)
    """Records copied in this run, per topic."""
    groups: dict[str, dict[TopicPartition, int]] = field(default_factory=dict)
    """Offsets set on the destination, per group."""
    skipped_groups: dict[str, str] = field(default_factory=dict)
    """Groups whose offsets could not be set, in whole or on some partitions, with the
    reason (a group active on the destination, or one that read further there)."""

    @property
    def total(self) -> int:
        """Records copied in this run, over all topics."""
        return sum(self.copied.values())


Progress = Callable[[str, int, int], None]
"""Called as records are copied: (topic, copied so far in this round, still to copy); once
with 0 copied when a round of a topic starts."""


class Mirror:
    """Copies topics and group offsets from `src` to `dst`, resumably."""

    def __init__(self, src: AsyncBus, dst: AsyncBus, *, name: str = "default") -> None:
        self.src = src
        self.dst = dst
        self.name = name
        self._progress: dict[TopicPartition, PartitionProgress] = {}

    async def topics(self, wanted: Sequence[str]) -> list[str]:
        """The source topics that `wanted` names or matches (patterns as for subscribe)."""
        names = [t.name for t in await self.src.list_topics()]
        found = matching([w for w in wanted if is_pattern(w)], names)
        for w in wanted:
            if not is_pattern(w):
                if w not in names:
                    raise MirrorError(f"topic {w!r} is not on the source; check its name")
                found.append(w)
        return sorted(set(found))

    async def run(
        self,
        topics: Sequence[str],
        *,
        groups: Sequence[str] | None = None,
        follow: bool = False,
        on_progress: Progress | None = None,
    ) -> MirrorReport:
        """Copy `topics` (names or patterns), then the committed offsets of `groups` (all
        groups with offsets on those topics when None); with `follow`, keep copying new
        records until cancelled."""
        report = MirrorReport()
        names = await self.topics(topics)
        stored = await latest_all(self.dst, PROGRESS_TOPIC)
        for topic in names:
            await self._prepare(topic, stored)
        while True:
            for topic in names:
                copied = await self._copy_topic(topic, on_progress)
                report.copied[topic] = report.copied.get(topic, 0) + copied
            await self._copy_groups(names, groups, report)
            if not follow:
                return report
            await asyncio.sleep(0.2)

    async def _prepare(self, topic: str, stored: dict[str, str]) -> None:
        """Create or grow the topic on the destination and load its partitions' progress."""
        spec = (await self.src.describe_topic(topic)).spec
        created = await self.dst.create_topic(
            topic, spec.partitions, exist_ok=True, **_settings(spec.config)
        )
        if created.partitions < spec.partitions:
            await self.dst.add_partitions(topic, spec.partitions)
        src_parts = (await self.src.describe_topic(topic)).partitions
        dst_parts = (await self.dst.describe_topic(topic)).partitions
        for state in src_parts:
            tp = TopicPartition(topic, state.partition)
            text = stored.get(self._key(tp))
            end = dst_parts[state.partition].end_offset
            if text is None:
                self._progress[tp] = PartitionProgress(state.start_offset, end)
                continue
            progress = PartitionProgress.from_json(text)
            if end < progress.dst_end:
                raise MirrorError(
                    f"{topic}[{tp.partition}] on the destination ends at {end}, before the "
                    f"{progress.dst_end} the mirror had copied: it was deleted or truncated "
                    f"there. Delete the mirror's progress (topic {PROGRESS_TOPIC!r}, key "
                    f"{self._key(tp)!r}) or use another --name to copy again from the start"
                )
            self._progress[tp] = progress
            if end > progress.dst_end:
                await self._skip_copied(tp, end - progress.dst_end)

    def _key(self, tp: TopicPartition) -> str:
        return f"{self.name}/{tp.topic}/{tp.partition}"

    async def _skip_copied(self, tp: TopicPartition, count: int) -> None:
        """Account for `count` records copied after the last saved progress (a crash)."""
        progress = self._progress[tp]
        async for record in self._records(tp, progress.next_offset, count):
            progress.add(record.offset, progress.dst_end)
            progress.dst_end += 1
            progress.next_offset = record.offset + 1
        await remember(self.dst, PROGRESS_TOPIC, self._key(tp), progress.to_json())

    async def _records(self, tp: TopicPartition, start: int, limit: int) -> AsyncIterator[Record]:
        """Up to `limit` records of a source partition from `start`, in order."""
        end = (await self.src.describe_topic(tp.topic)).partitions[tp.partition]
        consumer = self.src.consumer()
        try:
            await consumer.assign(tp)
            await consumer.seek(tp, max(start, end.start_offset))
            given = 0
            while given < limit and consumer.position(tp) < end.end_offset:
                records = await consumer.poll(max_records=min(1000, limit - given), timeout_ms=1000)
                if not records:
                    break
                for r in records:
                    yield r
                given += len(records)
        finally:
            with contextlib.suppress(TidingsError):
                await consumer.close()

    async def _copy_topic(self, topic: str, on_progress: Progress | None) -> int:
        """Copy what the source has beyond the saved progress; records copied."""
        states = (await self.src.describe_topic(topic)).partitions
        remaining = sum(
            max(0, s.end_offset - max(s.start_offset, self._progress[tp].next_offset))
            for s in states
            for tp in [TopicPartition(topic, s.partition)]
        )
        copied = 0
        if on_progress is not None and remaining:
            on_progress(topic, 0, remaining)  # the start: a rate is measured from here
        producer = self.dst.producer(linger_ms=0)
        try:
            for state in states:
                tp = TopicPartition(topic, state.partition)
                progress = self._progress[tp]
                progress.next_offset = max(progress.next_offset, state.start_offset)
                while progress.next_offset < state.end_offset:
                    batch = [r async for r in self._records(tp, progress.next_offset, BATCH)]
                    if not batch:
                        break
                    futures = [
                        producer.send(
                            topic,
                            r.value,
                            key=r.key,
                            headers=r.headers,
                            partition=tp.partition,
                            timestamp=r.timestamp,
                        )
                        for r in batch
                    ]
                    for record, future in zip(batch, futures, strict=True):
                        meta = await future
                        progress.add(record.offset, meta.offset)
                        progress.dst_end = meta.offset + 1
                    progress.next_offset = batch[-1].offset + 1
                    await remember(self.dst, PROGRESS_TOPIC, self._key(tp), progress.to_json())
                    copied += len(batch)
                    remaining -= len(batch)
                    if on_progress is not None:
                        on_progress(topic, copied, max(0, remaining))
        finally:
            await producer.close()
        return copied

    async def _copy_groups(
        self, topics: list[str], groups: Sequence[str] | None, report: MirrorReport
    ) -> None:
        """Set each group's committed offsets on the destination, translated, never moving
        one back (as MirrorMaker 2's checkpoints): a group active on the destination keeps
        its offsets there, and so does each partition it has read further there."""
        for group in groups if groups is not None else await self.src.list_groups():
            described = await self.src.describe_group(group)
            offsets = {
                TopicPartition(p.topic, p.partition): self._progress[
                    TopicPartition(p.topic, p.partition)
                ].translate(p.committed)
                for p in described.partitions
                if p.committed is not None and p.topic in topics
            }
            if not offsets:
                continue
            report.groups.pop(group, None)
            report.skipped_groups.pop(group, None)
            try:
                ahead = await self._ahead_on_destination(group, offsets)
                forward = {tp: offset for tp, offset in offsets.items() if tp not in ahead}
                if forward:
                    await self.dst.engine.set_group_offsets(group, forward)
            except TidingsError as e:
                report.skipped_groups[group] = str(e)
                continue
            if forward:
                report.groups[group] = forward
            if ahead:
                kept = ", ".join(
                    f"{tp.topic}[{tp.partition}] at {committed} (the source's offset maps to "
                    f"{offsets[tp]})"
                    for tp, committed in sorted(ahead.items())
                )
                report.skipped_groups[group] = (
                    f"the group read further on the destination; its offsets there are kept, "
                    f"never moved back: {kept}"
                )

    async def _ahead_on_destination(
        self, group: str, offsets: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """The destination's committed offsets of `group` past the translated `offsets`;
        GroupNotEmptyError if the group has live members there."""
        try:
            there = await self.dst.describe_group(group)
        except GroupNotFoundError:
            return {}
        if there.members:
            raise GroupNotEmptyError(
                group,
                f"group {group!r} is active on the destination ({len(there.members)} live "
                f"member(s)): its offsets there are kept; run the mirror again once its "
                f"consumers there have stopped to copy them",
            )
        return {
            tp: p.committed
            for p in there.partitions
            for tp in [TopicPartition(p.topic, p.partition)]
            if tp in offsets and p.committed is not None and p.committed > offsets[tp]
        }


def _settings(config: TopicConfig) -> dict[str, Any]:
    """A topic's settings as create_topic keywords."""
    return asdict(config)
