"""Consumers: iterate or poll records, in a group or on assigned partitions."""

from __future__ import annotations

import contextlib
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from operator import length_hint
from types import TracebackType
from typing import Self

from tidings.api.face import blocking, mirrors, on_loop, passthrough
from tidings.api.portal import Portal, SyncFace
from tidings.core.errors import ClosedError, TidingsError
from tidings.core.records import Record, TopicPartition, validate_offsets
from tidings.engines.base import BlockingEngineConsumer, EngineConsumer, Rebalance

ITER_BATCH = 10_000
RebalanceListener = Callable[[Rebalance], None]


class _Cursor:
    """What a consumer has handed out, so commits cover exactly the records returned.

    The engine's positions cover every record it returned; records of the last poll that
    an iterator has not yet handed out are subtracted. An engine returns each partition's
    records of one poll as one contiguous run, so that takes a look per run, never a walk
    over every record.
    """

    def __init__(self, inner: EngineConsumer, auto_commit: bool, interval_ms: int) -> None:
        self.inner = inner
        self.auto_commit = auto_commit
        self.interval_s = interval_ms / 1000
        self.next_commit = time.monotonic() + self.interval_s
        self.batch: list[Record] = []
        self.runs: list[tuple[TopicPartition, int, int]] = []
        self.pending: Iterator[Record] = iter(())
        self.listeners: list[RebalanceListener] = []

    def consumed(self) -> dict[TopicPartition, int]:
        """Next offset per assigned partition after every record handed out so far."""
        out = self.inner.positions()
        handed = len(self.batch) - length_hint(self.pending)
        for tp, start, end in self.runs:
            if tp in out and handed < end:
                first_unhanded = self.batch[max(start, handed)]
                out[tp] = first_unhanded.offset
        return out

    def commit_due(self) -> bool:
        """Whether an auto-commit is due."""
        return self.auto_commit and time.monotonic() >= self.next_commit

    def due(self) -> dict[TopicPartition, int] | None:
        """The offsets to auto-commit now, if it is time."""
        if self.commit_due():
            self.next_commit = time.monotonic() + self.interval_s
            return self.consumed()
        return None

    def load(self, records: list[Record], handed_out: bool) -> None:
        """Take a poll's records, after telling the listeners of any rebalance.

        A listener that raises gives the records back to the log, so none is counted as
        consumed without the application having seen it.
        """
        try:
            for rebalance in self.inner.take_rebalances():
                for listener in self.listeners:
                    listener(rebalance)
        except BaseException:
            self.set_batch([], handed_out=True)
            self.give_back(records)
            raise
        self.set_batch(records, handed_out)

    def set_batch(self, records: list[Record], handed_out: bool) -> None:
        """Make `records` the current batch; all count as consumed when `handed_out`."""
        self.batch = records
        self.runs = _runs(records)
        self.pending = iter(()) if handed_out else iter(records)

    def hold_back(self, partitions: set[TopicPartition]) -> None:
        """Take the not yet handed out records of `partitions` back to the log."""
        pending = list(self.pending)
        self.set_batch([r for r in pending if (r.topic, r.partition) not in partitions], False)
        self.give_back([r for r in pending if (r.topic, r.partition) in partitions])

    def give_back(self, records: list[Record]) -> None:
        """Rewind each partition to the first of `records` it returned."""
        for tp, start, _ in _runs(records):
            self.inner.rewind(tp, records[start].offset)


def _runs(records: list[Record]) -> list[tuple[TopicPartition, int, int]]:
    """(partition, start, end) of each partition's contiguous run, by binary search."""
    runs: list[tuple[TopicPartition, int, int]] = []
    start, n = 0, len(records)
    if n and records[0].partition == records[-1].partition:
        first = records[0]
        if first.topic == records[-1].topic:  # one partition's run, which is all of them
            return [(TopicPartition(first.topic, first.partition), 0, n)]
    while start < n:
        first = records[start]
        topic, partition = first.topic, first.partition
        end = bisect_left(
            records, True, start, n, key=lambda r: r.partition != partition or r.topic != topic
        )
        runs.append((TopicPartition(topic, partition), start, end))
        start = end
    return runs


class AsyncConsumer:
    """Reads records: `async for record in consumer`, or `await consumer.poll()`."""

    def __init__(
        self,
        inner: EngineConsumer,
        topics: Sequence[str],
        *,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        on_rebalance: RebalanceListener | None = None,
    ) -> None:
        self._inner = inner
        self._topics = list(topics)
        self._cursor = _Cursor(inner, auto_commit, auto_commit_interval_ms)
        if on_rebalance is not None:
            self._cursor.listeners.append(on_rebalance)
        self._started = False
        self._closed = False
        if auto_commit:
            inner.commit_source = self._cursor.consumed

    async def start(self) -> Self:
        """Join the group (when subscribed); idempotent."""
        if not self._started:
            self._started = True
            if self._topics:
                await self._inner.subscribe(self._topics)
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def poll(self, max_records: int = 500, timeout_ms: float = 1000) -> list[Record]:
        """Up to `max_records` records, waiting up to `timeout_ms` for the first."""
        return await self._poll(max_records, timeout_ms, handed_out=True)

    async def _poll(self, max_records: int, timeout_ms: float, handed_out: bool) -> list[Record]:
        """Poll the engine and make the records the cursor's batch, on the loop."""
        if self._closed:
            raise ClosedError("consumer is closed; create a new one with bus.consumer()")
        if not self._started:
            await self.start()
        due = self._cursor.due()
        if due:
            await self._inner.commit(due)
        records = await self._inner.poll(max_records, timeout_ms / 1000)
        self._cursor.load(records, handed_out)
        return records

    def _poll_here(
        self, max_records: int, timeout_ms: float, handed_out: bool
    ) -> list[Record] | None:
        """`_poll` on the calling thread, when the engine's client blocks anyway and nothing
        needs the loop first (starting, an auto-commit due); None: `_poll` on the loop."""
        inner = self._inner
        if not isinstance(inner, BlockingEngineConsumer):
            return None
        if self._closed or not self._started or self._cursor.commit_due():
            return None
        records = inner.poll_blocking(max_records, timeout_ms / 1000)
        self._cursor.load(records, handed_out)
        return records

    def __aiter__(self) -> Self:
        """Iterate records as they come, waiting for new ones forever."""
        return self

    async def __anext__(self) -> Record:
        """The next record."""
        while True:
            record = next(self._cursor.pending, None)
            if record is not None:
                return record
            if self._closed:
                raise StopAsyncIteration
            await self._poll(ITER_BATCH, 1000, handed_out=False)

    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit the records handed out so far (or explicit next-offsets) to the group."""
        await self._inner.commit(
            self._cursor.consumed() if offsets is None else validate_offsets(offsets)
        )

    async def committed(self, *partitions: TopicPartition) -> dict[TopicPartition, int]:
        """The group's committed offsets."""
        return await self._inner.committed(partitions or sorted(self._inner.assignment()))

    async def assign(self, *partitions: TopicPartition) -> None:
        """Read exactly these partitions, without group membership."""
        self._started = True
        await self._inner.assign([TopicPartition(*tp) for tp in partitions])

    def assignment(self) -> set[TopicPartition]:
        """Partitions this consumer reads now."""
        return self._inner.assignment()

    def position(self, partition: TopicPartition) -> int:
        """The next offset this consumer will read from `partition`."""
        return self._inner.position(partition)

    async def seek(self, partition: TopicPartition, offset: int | str) -> None:
        """Move to an offset, 'earliest' or 'latest'."""
        tp = TopicPartition(*partition)
        self._cursor.hold_back({tp})
        await self._inner.seek(tp, offset)

    async def seek_to_time(self, timestamp_ms: int) -> None:
        """Move every assigned partition to its first record at or after `timestamp_ms`."""
        found = await self._inner.offsets_for_times(dict.fromkeys(self.assignment(), timestamp_ms))
        for tp, offset in found.items():
            await self.seek(tp, "latest" if offset is None else offset)

    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset at or after each time."""
        return await self._inner.offsets_for_times(timestamps)

    def pause(self, *partitions: TopicPartition) -> None:
        """Stop returning records from `partitions` (those not yet handed out go back)."""
        tps = {TopicPartition(*tp) for tp in partitions}
        self._cursor.hold_back(tps)
        self._inner.pause(list(tps))

    def resume(self, *partitions: TopicPartition) -> None:
        """Return records from `partitions` again."""
        self._inner.resume(partitions)

    async def close(self) -> None:
        """Commit what was consumed (with auto-commit), leave the group."""
        if self._closed:
            return
        self._closed = True
        if self._started and self._cursor.auto_commit:
            with contextlib.suppress(TidingsError):  # the next owner re-reads: at-least-once
                await self._inner.commit(self._cursor.consumed())
        await self._inner.close()


class Consumer(SyncFace[AsyncConsumer]):
    """The sync face of AsyncConsumer: `for record in consumer`, `consumer.poll()`."""

    def __init__(self, inner: AsyncConsumer, portal: Portal) -> None:
        super().__init__(inner, portal)
        self._cursor = inner._cursor

    def __iter__(self) -> Iterator[Record]:
        """Iterate records as they come, waiting for new ones forever."""
        cursor = self._cursor
        while True:
            yield from cursor.pending
            if length_hint(cursor.pending):
                continue  # a seek or pause replaced the batch while it was being read
            if self.aio._closed:
                return
            self._poll(ITER_BATCH, 1000, handed_out=False)

    @mirrors(AsyncConsumer.poll)
    def poll(self, max_records: int = 500, timeout_ms: float = 1000) -> list[Record]:
        return self._poll(max_records, timeout_ms, handed_out=True)

    def _poll(self, max_records: int, timeout_ms: float, handed_out: bool) -> list[Record]:
        """Poll on this thread where the engine allows, else on the portal's loop."""
        self._portal.check_caller()
        records = self.aio._poll_here(max_records, timeout_ms, handed_out)
        if records is None:
            records = self._portal.call(self.aio._poll(max_records, timeout_ms, handed_out))
        return records

    commit = blocking(AsyncConsumer.commit)
    committed = blocking(AsyncConsumer.committed)
    assign = blocking(AsyncConsumer.assign)
    assignment = passthrough(AsyncConsumer.assignment)
    position = passthrough(AsyncConsumer.position)
    seek = blocking(AsyncConsumer.seek)
    seek_to_time = blocking(AsyncConsumer.seek_to_time)
    offsets_for_times = blocking(AsyncConsumer.offsets_for_times)
    pause = on_loop(AsyncConsumer.pause)
    resume = on_loop(AsyncConsumer.resume)
    close = blocking(AsyncConsumer.close)
