"""LogShareConsumer: a competing consumer of a share group over a LogEngine's log.

Records stay where they are, in the topic; a share group keeps only a small window per
partition (see `share`). Acquiring reads the records at the window's end, then moves the
window in one store transaction, so consumers in any thread or process never hold the
same record at once. Dead letters are ordinary records appended to another topic.
"""

from __future__ import annotations

import time
import uuid
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from operator import attrgetter
from typing import TYPE_CHECKING

from tidings.core import batch as codec
from tidings.core.errors import ClosedError
from tidings.core.records import DELIVER_AT, PRIORITY, Record, TopicPartition, now_ms
from tidings.engines.base import (
    Ack,
    AckKind,
    Delivery,
    EngineShareConsumer,
    PartitionState,
    QueueDepth,
    ShareConfig,
)
from tidings.engines.log import share
from tidings.engines.log.share import ACQUIRED, AVAILABLE, Fresh, Settled, ShareState, Taken
from tidings.engines.log.store import ProduceBatch
from tidings.engines.redrive import (
    REDRIVE_PREFIX,
    dead_letter_headers,
    header_int,
    redrive_group,
)

if TYPE_CHECKING:
    from tidings.engines.log.engine import LogEngine

READ_BYTES = 1 << 20
LOOKAHEAD = 10_000
"""Ready records a window may hold before reading further (the reach of priorities)."""
_offset = attrgetter("offset")


class LogShareConsumer(EngineShareConsumer):
    """One member of a share group: acquires, settles and dead-letters records."""

    def __init__(self, engine: LogEngine, config: ShareConfig) -> None:
        self._engine = engine
        self._store = engine.store
        self._config = config
        self._member = f"{config.group}-{uuid.uuid4().hex[:12]}"
        self._rotation = 0
        self._closed = False
        self._decoded: dict[int, tuple[list[Record], bool]] = {}
        """Per partition, the records of the batches read last (records never change in
        place; compaction only drops some, as if they had been read just before)."""

    async def acquire(
        self,
        max_records: int,
        timeout_s: float,
        acks: Sequence[Ack] = (),
        refused: list[Ack] | None = None,
    ) -> list[Delivery]:
        """Lock up to `max_records`, waiting up to `timeout_s` for the first; settle `acks`
        first, in the same transactions (refused ones are appended to `refused`)."""
        deadline = time.monotonic() + timeout_s
        while True:
            if self._closed:
                raise ClosedError("queue is closed")
            version = self._engine.version
            out, next_due = await self._engine.run(self._acquire, max_records, acks, refused)
            acks = ()
            left = deadline - time.monotonic()
            if out or left <= 0:
                return out
            if next_due is not None:  # a delay ends or a lock expires before the deadline
                left = min(left, max(0.001, (next_due - now_ms()) / 1000))
            await self._engine.wait_for_data(version, left)

    def _acquire(
        self, max_records: int, acks: Sequence[Ack] = (), refused: list[Ack] | None = None
    ) -> tuple[list[Delivery], int | None]:
        """Blocking: take records from each partition in turn."""
        by_partition: dict[int, list[Ack]] = defaultdict(list)
        for ack in acks:
            by_partition[ack.partition.partition].append(ack)
        topic = self._config.topic
        extents = self._store.partition_states(topic)
        windows = self._store.read_shares(self._config.group)
        self._rotation = (self._rotation + 1) % len(extents)
        order = extents[self._rotation :] + extents[: self._rotation]
        out: list[Delivery] = []
        next_due: int | None = None
        for extent in order:
            if len(out) >= max_records:
                break
            window = windows.get((topic, extent.partition))
            mine = by_partition.pop(extent.partition, None)
            deliveries, due = self._acquire_partition(
                extent, window, max_records - len(out), mine, refused
            )
            out.extend(deliveries)
            if due is not None:
                next_due = due if next_due is None else min(next_due, due)
        if by_partition:
            left = self._acknowledge([a for mine in by_partition.values() for a in mine])
            if refused is not None:
                refused.extend(left)
        return out, next_due

    def _acquire_partition(
        self,
        extent: PartitionState,
        window: ShareState | None,
        limit: int,
        mine: list[Ack] | None = None,
        refused: list[Ack] | None = None,
    ) -> tuple[list[Delivery], int | None]:
        config = self._config
        p = extent.partition
        if window is not None and window.start >= 0:
            read_from = window.end
        else:
            reset = extent.start_offset if config.auto_offset_reset == "earliest" else None
            read_from = extent.end_offset if reset is None else reset
        read_from = max(read_from, extent.start_offset)
        ready = window.count(AVAILABLE, now_ms(), due=True) if window is not None else 0
        # records with priorities are all taken into the window: look no further ahead
        # while it already holds plenty that are ready
        fresh = self._read_fresh(p, read_from, extent.end_offset) if ready < LOOKAHEAD else []
        plain = self._plain(p, fresh)
        now = now_ms()

        settled: list[Settled] = []

        def change(state: ShareState) -> tuple[Taken, int | None]:
            if mine:
                settled.append(share.settle(state, self._member, now, mine, config.max_deliveries))
            share.place(state, read_from)
            share.skip_to(state, extent.start_offset)
            taken = share.acquire(
                state,
                self._member,
                now,
                limit=limit,
                lock_ms=config.lock_timeout_ms,
                max_deliveries=config.max_deliveries,
                fresh=Fresh(
                    [(fresh[0].offset, fresh[-1].offset, 0, 0)]
                    if plain
                    else (
                        (r.offset, r.offset, *_timing(r))
                        if r.headers
                        else (r.offset, r.offset, 0, 0)
                        for r in fresh
                    ),
                    _read_end(fresh),
                ),
                max_locks=config.max_locks,
            )
            return taken, _next_due(state)

        taken, next_due = self._store.update_share(config.group, config.topic, p, change)
        if mine and settled:
            left = self._after_settle(p, mine, settled[0])
            if refused is not None:
                refused.extend(left)
        if taken.dead:
            self._dead_letter(
                p,
                [
                    (o, n, f"delivered {n} times without being accepted")
                    for first, last, n in taken.dead
                    for o in range(first, last + 1)
                ],
            )
        if not taken.deliver:
            return [], next_due
        known = fresh
        lock_until = now + config.lock_timeout_ms
        out = []
        for first, last, n in taken.deliver:
            for record in self._records(p, first, last, known):
                out.append(Delivery(record, n, lock_until))
        return out, next_due

    def _read_fresh(self, partition: int, offset: int, end: int) -> list[Record]:
        """The records at and after `offset`, up to about READ_BYTES."""
        if offset >= end:
            return []
        cached = self._decoded.get(partition)
        if cached and cached[0] and cached[0][0].offset <= offset <= cached[0][-1].offset:
            records = cached[0]
            return records[bisect_left(records, offset, key=_offset) :]
        records = [
            r
            for b in self._store.read(self._config.topic, partition, offset, READ_BYTES)
            for r in codec.decode(self._config.topic, partition, b.base_offset, b.data)
        ]
        plain = bool(records) and (
            records[-1].offset - records[0].offset + 1 == len(records)
            and not any(r.headers for r in records)
        )
        self._decoded[partition] = (records, plain)
        return records[bisect_left(records, offset, key=_offset) :]

    def _plain(self, partition: int, fresh: list[Record]) -> bool:
        """Whether `fresh` (a tail of the cached records) is dense and has no headers."""
        cached = self._decoded.get(partition)
        return bool(fresh) and cached is not None and cached[1] and fresh[-1] is cached[0][-1]

    def _records(self, partition: int, first: int, last: int, known: list[Record]) -> list[Record]:
        """The records at offsets `first..last` (fewer where compaction left gaps)."""
        if known and known[0].offset <= first and last <= known[-1].offset:
            i = bisect_left(known, first, key=_offset)
            j = bisect_right(known, last, key=_offset)
            return known[i:j]
        out: list[Record] = []
        offset = first
        while offset <= last:
            records = self._read_fresh(partition, offset, last + 1)
            if not records:
                break
            out.extend(r for r in records if r.offset <= last)
            offset = records[-1].offset + 1
        return out

    async def acknowledge(self, acks: Sequence[Ack]) -> list[Ack]:
        """Settle records; the refused acks are returned."""
        if not acks:
            return []
        return await self._engine.run(self._acknowledge, acks)

    def _acknowledge(self, acks: Sequence[Ack]) -> list[Ack]:
        config = self._config
        by_partition: dict[int, list[Ack]] = defaultdict(list)
        for ack in acks:
            by_partition[ack.partition.partition].append(ack)
        refused: list[Ack] = []
        for p, mine in by_partition.items():
            settled = self._store.update_share(config.group, config.topic, p, self._settle(mine))
            refused.extend(self._after_settle(p, mine, settled))
        return refused

    def _after_settle(self, partition: int, acks: Sequence[Ack], settled: Settled) -> list[Ack]:
        """Dead-letter what settling condemned; the acks the store refused."""
        if settled.dead:
            reasons = {a.offset: a.reason for a in acks}
            self._dead_letter(
                partition,
                [
                    (o, n, reasons.get(o) or f"released {n} times without being accepted")
                    for o, n in settled.dead
                ],
            )
        return _refused(acks, set(settled.refused))

    def _settle(self, acks: Sequence[Ack]) -> Callable[[ShareState], Settled]:
        """The transition that applies `acks` now."""
        return partial(
            share.settle,
            member=self._member,
            now=now_ms(),
            acks=acks,
            max_deliveries=self._config.max_deliveries,
        )

    def _dead_letter(self, partition: int, dead: list[tuple[int, int, str]]) -> None:
        """Copy records to the dead-letter topic (if any), then accept them here."""
        config = self._config
        if config.dead_letter_topic is not None:
            target = self._engine.lookup_topic(config.dead_letter_topic)
            why = {o: (n, reason) for o, n, reason in dead}
            records = [
                r
                for first, last in _spans(sorted(why))
                for r in self._records(partition, first, last, [])
            ]
            if records:
                batch = codec.encode(
                    [r.value for r in records],
                    [r.key for r in records],
                    [r.timestamp for r in records],
                    [dead_letter_headers(r, *why[r.offset]) for r in records],
                )
                produce = ProduceBatch(target.name, partition % target.partitions, batch)
                self._store.submit([produce]).result()
        tp = TopicPartition(config.topic, partition)
        accepts = [Ack(tp, o, AckKind.ACCEPT) for o, _, _ in dead]
        self._store.update_share(config.group, config.topic, partition, self._settle(accepts))

    async def close(self) -> None:
        """Stop; records still locked to this member become available when locks expire."""
        self._closed = True


async def queue_depth(engine: LogEngine, group: str, topic: str) -> list[QueueDepth]:
    """Available, in-flight and delayed records of a share group over `topic`."""
    extents = await engine.run(engine.store.partition_states, topic)
    windows = await engine.run(engine.store.read_shares, group)
    now = now_ms()
    out = []
    for extent in extents:
        window = windows.get((topic, extent.partition))
        if window is None or window.start < 0:
            out.append(
                QueueDepth(topic, extent.partition, extent.end_offset - extent.start_offset, 0, 0)
            )
            continue
        unseen = max(0, extent.end_offset - max(window.end, extent.start_offset))
        locked = sum(
            r.last - r.first + 1 for r in window.runs if r.state == ACQUIRED and r.until > now
        )
        expired = window.count(ACQUIRED) - locked
        out.append(
            QueueDepth(
                topic,
                extent.partition,
                available=unseen + window.count(AVAILABLE, now, due=True) + expired,
                in_flight=locked,
                delayed=window.count(AVAILABLE, now, due=False),
            )
        )
    return out


async def list_queues(engine: LogEngine) -> list[tuple[str, str]]:
    """Every (share group, topic) with stored state, redrive markers left out."""

    def blocking() -> list[tuple[str, str]]:
        store = engine.store
        return sorted(
            {
                (group, topic)
                for group in store.share_groups()
                if not group.startswith(REDRIVE_PREFIX)
                for topic, _ in store.read_shares(group)
            }
        )

    return await engine.run(blocking)


async def peek(engine: LogEngine, config: ShareConfig, max_records: int) -> list[Record]:
    """The records the group would be handed next, partition by partition, unlocked."""
    return await engine.run(_peek, engine, config, max_records)


def _peek(engine: LogEngine, config: ShareConfig, max_records: int) -> list[Record]:
    reader = LogShareConsumer(engine, config)  # for its reading, never for acquiring
    store = engine.store
    windows = store.read_shares(config.group)
    now = now_ms()
    out: list[Record] = []
    for extent in store.partition_states(config.topic):
        p = extent.partition
        window = windows.get((config.topic, p))
        if window is not None and window.start >= 0:
            read_from = window.end
            for first, last in share.due(window, now, config.max_deliveries):
                lo = max(first, extent.start_offset)  # below it, retention deleted them
                if lo <= last and len(out) < max_records:
                    out.extend(reader._records(p, lo, last, [])[: max_records - len(out)])
        elif config.auto_offset_reset == "earliest":
            read_from = extent.start_offset
        else:
            read_from = extent.end_offset
        offset = max(read_from, extent.start_offset)
        while len(out) < max_records and offset < extent.end_offset:
            records = reader._read_fresh(p, offset, extent.end_offset)
            if not records:
                break
            out.extend(r for r in records if header_int(r, DELIVER_AT) <= now)
            offset = records[-1].offset + 1
        del out[max_records:]
    return out


async def purge(engine: LogEngine, config: ShareConfig) -> int:
    """Settle every record not under a live lock as done; how many were settled."""

    def blocking() -> int:
        store = engine.store
        purged = 0
        for extent in store.partition_states(config.topic):
            start = extent.start_offset if config.auto_offset_reset == "earliest" else None
            change = partial(
                share.purge,
                now=now_ms(),
                place_at=extent.end_offset if start is None else start,
                log_start=extent.start_offset,
                log_end=extent.end_offset,
            )
            purged += store.update_share(config.group, config.topic, extent.partition, change)
        return purged

    return await engine.run(blocking)


async def dead_letters(engine: LogEngine, config: ShareConfig) -> int:
    """Records in the queue's dead-letter topic not redriven yet (0 without one)."""
    if config.dead_letter_topic is None:
        return 0
    depth = await queue_depth(engine, redrive_group(config.group), config.dead_letter_topic)
    return sum(d.available + d.in_flight + d.delayed for d in depth)


def _timing(record: Record) -> tuple[int, int]:
    """(not before, priority) of a record, from its headers."""
    if not record.headers:
        return 0, 0
    return header_int(record, DELIVER_AT), min(9, header_int(record, PRIORITY))


def _read_end(records: Sequence[Record]) -> int:
    return records[-1].offset + 1 if records else 0


def _next_due(state: ShareState) -> int | None:
    """When a delay ends or a lock expires next in this window."""
    dues = [r.until for r in state.runs if r.state in (AVAILABLE, ACQUIRED) and r.until > 0]
    return min(dues) if dues else None


def _spans(offsets: Sequence[int]) -> list[tuple[int, int]]:
    """Ascending offsets as (first, last) runs of consecutive ones."""
    out: list[tuple[int, int]] = []
    for o in offsets:
        if out and out[-1][1] == o - 1:
            out[-1] = (out[-1][0], o)
        else:
            out.append((o, o))
    return out


def _refused(acks: Sequence[Ack], gone: set[int]) -> list[Ack]:
    """The acks (one per offset for ranged accepts) whose offsets were refused."""
    if not gone:
        return []
    out = []
    for a in acks:
        if a.length == 1:
            if a.offset in gone:
                out.append(a)
        else:
            out.extend(
                Ack(a.partition, o, a.kind)
                for o in range(a.offset, a.offset + a.length)
                if o in gone
            )
    return out
