"""LogEngine: the Engine interface over a LogStore (the memory and sqlite engines)."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable, Container, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from tidings.core import batch as codec
from tidings.core.errors import (
    ClosedError,
    InvalidPartitionsError,
    TopicExistsError,
    TopicNotFoundError,
)
from tidings.core.handoff import call_on, result_of
from tidings.core.records import (
    MAX_PARTITIONS,
    RETENTION_CHECK_INTERVAL_S,
    Record,
    TopicConfig,
    TopicPartition,
    TopicSpec,
    now_ms,
    validate_partition,
    validate_partitions,
)
from tidings.engines import redrive
from tidings.engines.base import (
    AppendResult,
    Capability,
    ColumnBatch,
    ConsumerConfig,
    EngineConsumer,
    EngineShareConsumer,
    GroupDescription,
    PartitionState,
    QueueDepth,
    ShareConfig,
)
from tidings.engines.groups import coordinator
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log import cleaner
from tidings.engines.log.served import PartitionBatches, PartitionRead, ServedLog
from tidings.engines.log.store import Appended, BatchMeta, LogStore, ProduceBatch, StoredBatch
from tidings.engines.log.tail import Tail

R = TypeVar("R")
log = logging.getLogger("tidings")

WAIT_GRID_S = 0.001
"""Waits for data end on a grid this fine, so that the waits ending in one step share one
timer: a timer per wait would fill the loop's heap with cancelled timers."""
METADATA_MAX_AGE_S = 1.0
"""How stale the topic cache may get when other processes can change topics."""


def _settle(waiter: asyncio.Future[Sequence[Appended]], appended: Sequence[Appended] = ()) -> None:
    if not waiter.done():
        waiter.set_result(appended)


LOG_CAPABILITIES = frozenset(Capability)
"""Everything: the embedded log provides every capability (durability and several
processes when its store does)."""


class LogEngine(ServedLog):
    """Producing, consuming, groups and cleaning, written once over any LogStore."""

    def __init__(
        self,
        store: LogStore,
        maintenance_interval_s: float = RETENTION_CHECK_INTERVAL_S,
        *,
        max_partitions: int = MAX_PARTITIONS,
    ) -> None:
        self.store = store
        self.max_partitions = max_partitions
        """The most partitions a topic may have: a bound on what one request can cost."""
        self.url = store.url
        caps = set(LOG_CAPABILITIES) - {Capability.DURABLE, Capability.MULTI_PROCESS}
        if store.durable:
            caps.add(Capability.DURABLE)
        if store.multi_process:
            caps.add(Capability.MULTI_PROCESS)
        self.capabilities = frozenset(caps)
        self._specs: dict[str, TopicSpec] = {}
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="tidings-io")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._version = 0
        self._waiters: set[asyncio.Future[Sequence[Appended]]] = set()
        self._timeouts: dict[int, set[asyncio.Future[Sequence[Appended]]]] = {}
        """The waiters timing out at each step of WAIT_GRID_S."""
        self.tails: dict[TopicPartition, Tail] = {}
        """The last batches this process appended to each partition: a consumer at or
        near the end of the log reads them from here (see Tail)."""
        self.maintenance_interval_s = maintenance_interval_s
        """Seconds between background rounds of retention and compaction (0: none); read at
        start."""
        self._background: list[asyncio.Task[None]] = []
        self._closed = False

    async def start(self) -> None:
        """Open the store and start background maintenance."""
        self._loop = asyncio.get_running_loop()
        await self.run(self.store.open)
        self.store.add_listener(self._on_append)
        self._specs = await self.run(self.store.topics)
        if self.maintenance_interval_s > 0:
            self._background.append(
                asyncio.create_task(self._every(self.maintenance_interval_s, self.maintain))
            )
        if self.store.multi_process:
            # The producer's hot path reads the cache only; keep it close to the store.
            self._background.append(
                asyncio.create_task(self._every(METADATA_MAX_AGE_S, self.refresh_topics))
            )

    async def close(self) -> None:
        """Stop background work, finish pending appends, close the store."""
        self._closed = True
        for task in self._background:
            task.cancel()
        # A cancelled call (a heartbeat, say) may still run in the pool: the store must
        # outlive it, since closing a connection under a running query crashes SQLite.
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        await asyncio.to_thread(self.store.close)

    async def read(self, fn: Callable[..., R], *args: object) -> R:
        """Run a store read: inline when the store never waits on I/O, else off the loop."""
        if self.store.reads_block:
            return await self.run(fn, *args)
        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return fn(*args)

    async def run(self, fn: Callable[..., R], *args: object) -> R:
        """Run a blocking store call off the event loop."""
        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    # -- change notification ------------------------------------------------------------

    @property
    def version(self) -> int:
        """Grows whenever new records may have become readable."""
        return self._version

    def _on_append(self, appended: Sequence[Appended]) -> None:
        loop = self._loop
        if loop is not None:
            call_on(loop, partial(self._bump, appended))

    def _bump(self, appended: Sequence[Appended] = ()) -> None:
        tails = self.tails
        if appended:
            for a in appended:
                tp = TopicPartition(a.topic, a.partition)
                tail = tails.get(tp)
                if tail is None:
                    tails[tp] = Tail(a)
                else:
                    tail.add(a)
        else:  # a change made elsewhere (another process) may have deleted anything
            tails.clear()
        self._version += 1
        self.wake_waiters(appended)

    def wake_waiters(self, appended: Sequence[Appended] = ()) -> None:
        """End every wait_for_data now: with the batches just appended, or without them as
        a timeout would (a change made elsewhere, a server shutting down)."""
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            _settle(waiter, appended)

    async def wait_for_data(
        self, version: int, timeout_s: float, wanted: Container[tuple[str, int]] | None = None
    ) -> Sequence[Appended]:
        """Wait until `version` is out of date, or `timeout_s` passed; the batches whose
        append ended the wait, if this process appended them (else nothing). With
        `wanted`, (topic, partition) pairs, appends of this process elsewhere go on waiting."""
        deadline = time.monotonic() + timeout_s
        while True:
            appended = await self._changed(version, timeout_s)
            if wanted is None or not appended:
                return appended  # the time is up, or a change that may concern anything
            if any((a.topic, a.partition) in wanted for a in appended):
                return appended
            version += 1  # the version that append made: a later change ends the next wait
            timeout_s = deadline - time.monotonic()

    async def _changed(self, version: int, timeout_s: float) -> Sequence[Appended]:
        """One wait of wait_for_data: ended by the next change or by the timeout."""
        if self._version != version or timeout_s <= 0:
            return ()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Sequence[Appended]] = loop.create_future()
        self._waiters.add(waiter)
        step = math.ceil((loop.time() + timeout_s) / WAIT_GRID_S)
        due = self._timeouts.get(step)
        if due is None:
            due = self._timeouts[step] = set()
            loop.call_at(step * WAIT_GRID_S, self._time_out, step)
        due.add(waiter)
        try:
            return await waiter
        finally:
            due.discard(waiter)
            self._waiters.discard(waiter)  # unless already taken by _bump

    def _time_out(self, step: int) -> None:
        for waiter in self._timeouts.pop(step, ()):
            _settle(waiter)

    # -- topics --------------------------------------------------------------------------

    async def create_topic(self, spec: TopicSpec, exist_ok: bool = False) -> bool:
        """Create a topic (with exist_ok, a topic this engine already knows costs nothing)."""
        validate_partitions(spec.partitions, self.max_partitions)
        if exist_ok and spec.name in self._specs:
            return False
        try:
            await self.run(self.store.create_topic, spec)
        except TopicExistsError:
            if not exist_ok:
                raise
            await self.refresh_topics()
            return False
        self._specs[spec.name] = spec
        return True

    async def delete_topic(self, name: str) -> None:
        """Delete a topic."""
        await self.run(self.store.delete_topic, name)
        self._specs.pop(name, None)
        self.tails.clear()

    async def list_topics(self) -> list[TopicSpec]:
        """Every topic."""
        await self.refresh_topics()
        return [self._specs[name] for name in sorted(self._specs)]

    async def refresh_topics(self) -> dict[str, TopicSpec]:
        """Re-read topics from the store (another process may have changed them)."""
        self._specs = await self.run(self.store.topics)
        return self._specs

    async def topic(self, name: str) -> TopicSpec:
        """A topic's spec, read fresh when not cached."""
        spec = self._specs.get(name)
        if spec is None:
            spec = (await self.refresh_topics()).get(name)
            if spec is None:
                raise TopicNotFoundError(name)
        return spec

    def cached_topic(self, name: str) -> TopicSpec | None:
        """A topic's spec from the cache."""
        return self._specs.get(name)

    def lookup_topic(self, name: str) -> TopicSpec:
        """A topic's spec, read from the store now."""
        spec = self.store.topics().get(name)
        if spec is None:
            raise TopicNotFoundError(name)
        self._specs[name] = spec
        return spec

    async def describe_topic(self, name: str) -> tuple[TopicSpec, list[PartitionState]]:
        """Spec and partition extents."""
        await self.refresh_topics()
        spec = await self.topic(name)
        return spec, await self.run(self.store.partition_states, name)

    async def alter_topic(self, name: str, config: TopicConfig) -> TopicSpec:
        """Replace a topic's settings."""
        spec = (await self.refresh_topics()).get(name)
        if spec is None:
            raise TopicNotFoundError(name)
        new = TopicSpec(name, spec.partitions, config)
        await self.run(self.store.update_topic, new)
        self._specs[name] = new
        return new

    async def add_partitions(self, name: str, total: int) -> TopicSpec:
        """Grow a topic."""
        validate_partitions(total, self.max_partitions)
        spec = (await self.refresh_topics()).get(name)
        if spec is None:
            raise TopicNotFoundError(name)
        if total <= spec.partitions:
            raise InvalidPartitionsError(
                f"topic {name!r} has {spec.partitions} partitions; the new count must be "
                f"larger (partitions can be added, never removed), not {total}"
            )
        new = TopicSpec(name, total, spec.config)
        await self.run(self.store.update_topic, new)
        self._specs[name] = new
        return new

    # -- records -------------------------------------------------------------------------

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Encode the batches and store them durably."""
        return await self.append_encoded([ProduceBatch.encode(b) for b in batches])

    async def append_encoded(self, batches: Sequence[ProduceBatch]) -> list[AppendResult]:
        """Store batches already encoded (a Kafka client's, copied through) durably."""
        for batch in batches:  # refused here, before it could join others' group commit
            if type(batch.partition) is not int:
                validate_partition(batch.partition)
        if not self.store.reads_block:  # in memory: stored without suspending
            return self.store.append(batches)
        return await result_of(self.store.submit(batches))

    async def record_at_time(self, tp: TopicPartition, timestamp: int) -> Record | None:
        """The first record of a partition whose timestamp is at or after `timestamp`."""
        stored = await self.run(self.store.first_batch_at, tp.topic, tp.partition, timestamp)
        if stored is None:
            return None
        records = codec.decode(tp.topic, tp.partition, stored.base_offset, stored.data)
        return next((r for r in records if r.timestamp >= timestamp), None)

    def consumer(self, config: ConsumerConfig) -> EngineConsumer:
        """A consumer over this engine's log."""
        from tidings.engines.log.consumer import LogConsumer

        return LogConsumer(self, config)

    def share_consumer(self, config: ShareConfig) -> EngineShareConsumer:
        """A competing consumer of a share group over this engine's log."""
        from tidings.engines.log.queue import LogShareConsumer

        return LogShareConsumer(self, config)

    async def queue_depth(self, group: str, topic: str) -> list[QueueDepth]:
        """Available, in-flight and delayed records of a share group, per partition."""
        from tidings.engines.log.queue import queue_depth

        await self.topic(topic)
        return await queue_depth(self, group, topic)

    async def list_queues(self) -> list[tuple[str, str]]:
        """Every (share group, topic) pair with state."""
        from tidings.engines.log.queue import list_queues

        return await list_queues(self)

    async def queue_peek(self, config: ShareConfig, max_records: int) -> list[Record]:
        """The records the share group would be handed next, without locking them."""
        from tidings.engines.log.queue import peek

        await self.topic(config.topic)
        return await peek(self, config, max_records)

    async def queue_purge(self, config: ShareConfig) -> int:
        """Settle every record of the queue not locked to a consumer; how many."""
        from tidings.engines.log.queue import purge

        await self.topic(config.topic)
        return await purge(self, config)

    async def queue_dead_letters(self, config: ShareConfig) -> int:
        """Records in the queue's dead-letter topic not redriven yet."""
        from tidings.engines.log.queue import dead_letters

        if config.dead_letter_topic is not None:
            await self.topic(config.dead_letter_topic)
        return await dead_letters(self, config)

    async def queue_redrive(self, config: ShareConfig, max_records: int | None) -> int:
        """Copy dead letters back to the queue's topic, each once; how many."""
        dead_letters = redrive.dead_letter_topic(config)
        spec = await self.topic(config.topic)
        await self.topic(dead_letters)
        return await redrive.redrive(
            self, config, spec.partitions, max_records, max_deliveries=1 << 30, wait_s=0
        )

    async def list_share_groups(self) -> list[str]:
        """Every share group with state."""
        return await self.run(self.store.share_groups)

    async def delete_share_group(self, group: str) -> None:
        """Forget a share group's state."""
        await self.run(self.store.delete_share_group, group)

    # -- groups --------------------------------------------------------------------------

    async def list_groups(self) -> list[str]:
        """Every group with state."""
        return await self.run(self.store.groups)

    async def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment and lag."""
        state = await self._administer(group, lambda state: state, durable=False)
        specs = await self.refresh_topics()
        extents = {
            topic: await self.run(self.store.partition_states, topic)
            for topic in sorted(state.known_topics() & set(specs))
        }
        return coordinator.describe(group, state, extents)

    async def delete_group(self, group: str) -> None:
        """Delete an empty group and its committed offsets, in one transaction."""

        def forget(state: GroupState) -> None:
            coordinator.require_empty(group, state, "delete")
            state.offsets.clear()  # a forgotten group's row is deleted

        await self._administer(group, forget, durable=True)

    async def set_group_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Overwrite committed offsets of an empty group."""

        def change(state: GroupState) -> None:
            coordinator.set_offsets(state, group, offsets)

        await self._administer(group, change, durable=True, must_exist=False)

    async def _administer(
        self,
        group: str,
        change: Callable[[GroupState], R],
        *,
        durable: bool,
        must_exist: bool = True,
    ) -> R:
        """Apply an admin change to a group after expiring members whose session ended."""
        reaped = coordinator.administered(group, change, self._specs, must_exist=must_exist)
        return await self.update_group(group, reaped, durable)

    # -- what tidings serve reads and changes (ServedLog) --------------------------------

    async def batch_index(self, topic: str, partition: int) -> list[BatchMeta]:
        """Every stored batch of a partition, oldest first, without its records."""
        return await self.run(self.store.batch_index, topic, partition)

    async def read_batches(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> list[StoredBatch]:
        """Stored batches holding records at or after `offset`, at least one if any, up to
        max_bytes."""
        return await self.read(self.store.read, topic, partition, offset, max_bytes)

    async def read_partitions(
        self, reads: Sequence[PartitionRead], max_bytes: int
    ) -> list[PartitionBatches]:
        """Each partition's extent and batches, in one trip to the store, in the order
        asked; max_bytes in all, and at least one batch if any."""
        return await self.read(self._read_partitions, reads, max_bytes)

    def _read_partitions(
        self, reads: Sequence[PartitionRead], max_bytes: int
    ) -> list[PartitionBatches]:
        """Blocking: what read_partitions returns."""
        store = self.store
        states: dict[str, dict[int, PartitionState]] = {}
        out: list[PartitionBatches] = []
        total = 0
        for topic, partition, offset, partition_bytes in reads:
            if topic not in states:
                try:
                    states[topic] = {s.partition: s for s in store.partition_states(topic)}
                except TopicNotFoundError:
                    states[topic] = {}
            state = states[topic].get(partition)
            if state is None or not state.start_offset <= offset <= state.end_offset:
                out.append(PartitionBatches(state, None))
                continue
            stored: list[StoredBatch] = []
            if offset < state.end_offset and (total < max_bytes or total == 0):
                room = min(partition_bytes, max(max_bytes - total, 1))
                stored = store.read(topic, partition, offset, room)
                total += sum(len(b.data) for b in stored)
            out.append(PartitionBatches(state, stored))
        return out

    async def update_group(self, group: str, change: Callable[[GroupState], R], durable: bool) -> R:
        """Apply `change` to the group's state atomically and store it; what it returned."""
        return await self.run(self.store.update_group, group, change, durable)

    # -- maintenance ---------------------------------------------------------------------

    async def maintain(self) -> None:
        """Apply retention and compaction to every topic now."""
        await self.run(self._maintain_blocking)
        self.tails.clear()  # retention and compaction may have removed a tail's records

    def _maintain_blocking(self) -> None:
        now = now_ms()
        for spec in self.store.topics().values():
            try:
                cleaner.apply_retention(self.store, spec, now)
                cleaner.compact(self.store, spec, now)
            except TopicNotFoundError:
                continue  # deleted meanwhile

    @staticmethod
    async def _every(interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await job()
            except Exception:
                # A busy or briefly unreadable store: the next round tries again.
                log.exception("background %s failed; retrying in %.0fs", job.__name__, interval_s)
