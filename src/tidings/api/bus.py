"""The bus: topics, publishing, producers, consumers and group admin over one engine."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self

from tidings.api.consumer import AsyncConsumer, Consumer, RebalanceListener
from tidings.api.face import blocking, opening, reading
from tidings.api.portal import Portal, SyncFace
from tidings.api.producer import AsyncProducer, Published, RecordFuture
from tidings.api.queue import AsyncQueue, Queue
from tidings.api.rpc import Requester
from tidings.core.errors import ClosedError, ConfigurationError, PartitionNotFoundError
from tidings.core.records import (
    HeadersInput,
    Record,
    RecordMetadata,
    TopicConfig,
    TopicPartition,
    TopicSpec,
    validate_group_name,
    validate_offset,
    validate_partition,
    validate_timestamp,
)
from tidings.engines.base import (
    AssignmentStrategy,
    ConsumerConfig,
    Engine,
    GroupDescription,
    OffsetReset,
    PartitionState,
    ShareConfig,
)


@dataclass(frozen=True)
class TopicDescription:
    """A topic's settings and the extent of each partition."""

    spec: TopicSpec
    partitions: tuple[PartitionState, ...]

    @property
    def name(self) -> str:
        """The topic's name."""
        return self.spec.name

    @property
    def records(self) -> int:
        """Records currently stored (end minus start, over all partitions)."""
        return sum(p.end_offset - p.start_offset for p in self.partitions)


class AsyncBus:
    """The async core: every operation of tidings, on one engine."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._publisher: AsyncProducer | None = None
        self._requester: Requester | None = None
        self._children: weakref.WeakSet[AsyncProducer | AsyncConsumer | AsyncQueue] = (
            weakref.WeakSet()
        )
        """Producers and consumers still open, closed with the bus."""
        self._closed = False

    async def start(self) -> Self:
        """Open the engine."""
        await self.engine.start()
        # linger 0: a publish waits for no timer, yet concurrent ones share a commit
        self._publisher = self.producer(linger_ms=0)
        return self

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- topics --------------------------------------------------------------------------

    # `self` positional-only: a setting in **config can never take its place, so the sync
    # face can pass every argument on (api/face.py)
    async def create_topic(
        self, /, name: str, partitions: int = 1, *, exist_ok: bool = False, **config: Any
    ) -> TopicSpec:
        """Create a topic; settings as in TopicConfig (retention_ms, cleanup_policy, ...)."""
        spec = TopicSpec(name, partitions, TopicConfig().updated(**config))
        await self.engine.create_topic(spec, exist_ok=exist_ok)
        return self.engine.cached_topic(name) or spec

    async def delete_topic(self, name: str) -> None:
        """Delete a topic and all its records."""
        await self.engine.delete_topic(name)

    async def list_topics(self) -> list[TopicSpec]:
        """Every topic."""
        return await self.engine.list_topics()

    async def describe_topic(self, name: str) -> TopicDescription:
        """A topic's settings and partitions."""
        spec, partitions = await self.engine.describe_topic(name)
        return TopicDescription(spec, tuple(partitions))

    async def alter_topic(self, /, name: str, **config: Any) -> TopicSpec:
        """Change settings of a topic (retention_ms, cleanup_policy, max_message_bytes, ...)."""
        spec, _ = await self.engine.describe_topic(name)
        return await self.engine.alter_topic(name, spec.config.updated(**config))

    async def add_partitions(self, name: str, total: int) -> TopicSpec:
        """Grow a topic to `total` partitions."""
        return await self.engine.add_partitions(name, total)

    # -- producing -----------------------------------------------------------------------

    def producer(
        self, *, linger_ms: float = 5, batch_size: int = 1 << 20, buffer_memory: int = 64 << 20
    ) -> AsyncProducer:
        """A batching producer."""
        self._check_open()
        producer = AsyncProducer(
            self.engine,
            asyncio.get_running_loop(),
            linger_ms=linger_ms,
            batch_size=batch_size,
            buffer_memory=buffer_memory,
        )
        self._children.add(producer)
        return producer

    @property
    def _shared_producer(self) -> AsyncProducer:
        self._check_open()
        if self._publisher is None:
            raise ClosedError("the bus is not started; open it with tidings.connect_async()")
        return self._publisher

    def _enqueue(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record on the bus's own producer; the future resolves once durable."""
        return self._shared_producer.send(
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        )

    async def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordMetadata:
        """Store one record and return where it went, once it is durable."""
        return await self._shared_producer.publish(
            topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
        )

    async def publish_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
    ) -> Published:
        """Store many records as whole batches; their metadata, in order, once durable."""
        return await self._shared_producer.send_many(topic, values, keys=keys, partition=partition)

    async def request(
        self,
        topic: str,
        value: Any,
        *,
        timeout: float = 5.0,
        key: bytes | None = None,
        headers: HeadersInput = None,
    ) -> Record:
        """Publish `value` to `topic` as a request and return the reply record.

        The request carries a correlation id and this bus's reply topic in its headers;
        a subscriber that returns a value answers it (see tidings.App). No reply within
        `timeout` seconds raises RequestTimeoutError; a reply that comes later is dropped
        and counted in `late_replies`.
        """
        self._check_open()
        if self._requester is None:
            self._requester = Requester(self)
        return await self._requester.request(
            topic, value, timeout=timeout, key=key, headers=headers
        )

    @property
    def late_replies(self) -> int:
        """Replies to this bus's requests that came after their request timed out."""
        return 0 if self._requester is None else self._requester.late_replies

    # -- consuming -----------------------------------------------------------------------

    def consumer(
        self,
        *topics: str,
        group: str | None = None,
        auto_offset_reset: OffsetReset = "latest",
        from_beginning: bool = False,
        auto_commit: bool = True,
        auto_commit_interval_ms: int = 5000,
        strategy: AssignmentStrategy = "range",
        session_timeout_ms: int = 10_000,
        heartbeat_interval_ms: int = 1_000,
        max_poll_interval_ms: int = 300_000,
        client_id: str = "tidings",
        on_rebalance: RebalanceListener | None = None,
    ) -> AsyncConsumer:
        """A consumer of `topics` in `group` (or, with no topics, one to assign())."""
        self._check_open()
        if topics and group is None:
            raise ConfigurationError(
                "subscribing to topics needs a group (group='name'); to read without one, "
                "use bus.subscribe(*topics) (from now on) or bus.consumer() and assign()"
            )
        config = ConsumerConfig(
            group=group,
            client_id=client_id,
            auto_offset_reset="earliest" if from_beginning else auto_offset_reset,
            strategy=strategy,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_poll_interval_ms=max_poll_interval_ms,
        )
        consumer = AsyncConsumer(
            self.engine.consumer(config),
            topics,
            auto_commit=auto_commit and group is not None,
            auto_commit_interval_ms=auto_commit_interval_ms,
            on_rebalance=on_rebalance,
        )
        self._children.add(consumer)
        return consumer

    def subscribe(
        self,
        *topics: str,
        on_rebalance: RebalanceListener | None = None,
    ) -> AsyncConsumer:
        """An ephemeral subscription: every record of `topics` published from now on.

        Topics may be patterns (`orders.*`, `orders.>`, `^regex`); a matching topic created
        later is read from its first record. No group, nothing committed, nothing left
        behind when it closes.
        """
        self._check_open()
        if not topics:
            raise ConfigurationError(
                "subscribe needs a topic or a pattern, e.g. bus.subscribe('orders.*')"
            )
        consumer = AsyncConsumer(
            self.engine.consumer(ConsumerConfig(auto_offset_reset="latest")),
            topics,
            auto_commit=False,
            on_rebalance=on_rebalance,
        )
        self._children.add(consumer)
        return consumer

    # -- queues --------------------------------------------------------------------------

    def queue(
        self,
        topic: str,
        *,
        group: str,
        partitions: int = 1,
        lock_timeout_ms: int = 30_000,
        max_deliveries: int = 5,
        dead_letter_topic: str | None = None,
        auto_offset_reset: Literal["earliest", "latest"] = "earliest",
    ) -> AsyncQueue:
        """A queue over `topic` (created if missing) whose consumers compete in `group`."""
        self._check_open()
        config = ShareConfig(
            group=group,
            topic=topic,
            lock_timeout_ms=lock_timeout_ms,
            max_deliveries=max_deliveries,
            dead_letter_topic=dead_letter_topic,
            auto_offset_reset=auto_offset_reset,
        )
        queue = AsyncQueue(self, config, partitions)
        self._children.add(queue)
        return queue

    async def list_share_groups(self) -> list[str]:
        """Every share group (the consumers of queues)."""
        return await self.engine.list_share_groups()

    async def list_queues(self) -> list[tuple[str, str]]:
        """Every queue as (share group, topic)."""
        return await self.engine.list_queues()

    async def delete_share_group(self, group: str) -> None:
        """Forget a share group's progress; its topic keeps every record."""
        await self.engine.delete_share_group(validate_group_name(group))

    # -- groups --------------------------------------------------------------------------

    async def list_groups(self) -> list[str]:
        """Every consumer group."""
        return await self.engine.list_groups()

    async def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment, committed offsets and lag of a group."""
        return await self.engine.describe_group(validate_group_name(group))

    async def delete_group(self, group: str) -> None:
        """Delete a group with no live members, and its committed offsets."""
        await self.engine.delete_group(validate_group_name(group))

    async def reset_offsets(
        self,
        group: str,
        topic: str,
        *,
        to: str | None = None,
        offset: int | None = None,
        timestamp_ms: int | None = None,
        partitions: Sequence[int] | None = None,
    ) -> dict[TopicPartition, int]:
        """Set a group's committed offsets on `topic`: to earliest/latest, an offset, or a time."""
        validate_group_name(group)
        chosen = [to is not None, offset is not None, timestamp_ms is not None]
        if sum(chosen) != 1:
            raise ConfigurationError(
                "give exactly one of to='earliest'|'latest', offset=, timestamp_ms="
            )
        if to not in (None, "earliest", "latest"):
            raise ConfigurationError(f"to must be 'earliest' or 'latest', not {to!r}")
        if offset is not None:
            validate_offset(offset)
        if timestamp_ms is not None:
            validate_timestamp(timestamp_ms)
        spec, states = await self.engine.describe_topic(topic)
        wanted = range(spec.partitions) if partitions is None else partitions
        for p in wanted:
            if not 0 <= validate_partition(p) < spec.partitions:
                raise PartitionNotFoundError(topic, p, spec.partitions)
        targets: dict[TopicPartition, int] = {}
        times: dict[TopicPartition, int] = {}
        for p in wanted:
            state = states[p]
            tp = TopicPartition(topic, p)
            if to == "earliest":
                targets[tp] = state.start_offset
            elif to == "latest":
                targets[tp] = state.end_offset
            elif offset is not None:
                targets[tp] = min(max(offset, state.start_offset), state.end_offset)
            else:
                assert timestamp_ms is not None
                times[tp] = timestamp_ms
        if times:
            probe = self.engine.consumer(ConsumerConfig())
            try:
                found = await probe.offsets_for_times(times)
            finally:
                await probe.close()
            for tp, off in found.items():
                targets[tp] = states[tp.partition].end_offset if off is None else off
        await self.engine.set_group_offsets(group, targets)
        return targets

    # -- lifecycle -----------------------------------------------------------------------

    async def maintain(self) -> None:
        """Apply retention and compaction now (they also run in the background)."""
        await self.engine.maintain()

    async def close(self) -> None:
        """Close what the bus made (producers flush, consumers commit and leave), the engine.

        The engine is closed even if closing one of the others fails; the first such error
        is raised afterwards.
        """
        if self._closed:
            return
        self._closed = True
        first: Exception | None = None
        try:
            if self._requester is not None:  # first: its reply topic goes while all is open
                try:
                    await self._requester.close()
                except Exception as e:
                    first = e
            for child in list(self._children):
                try:
                    await child.close()
                except Exception as e:  # close the rest and the engine before reporting it
                    first = first or e
        finally:
            await self.engine.close()
        if first is not None:
            raise first

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError("the bus is closed; connect again")


class Producer(SyncFace[AsyncProducer]):
    """The sync face of AsyncProducer: `send()` returns a future; `flush()` waits for all."""

    def __init__(self, inner: AsyncProducer, portal: Portal) -> None:
        super().__init__(inner, portal)
        # plain methods, safe from any thread: the core's own, not a wrapper
        self.send = inner.send
        self.send_many = inner.send_many

    flush = blocking(AsyncProducer.flush)
    close = blocking(AsyncProducer.close)


class Bus(SyncFace[AsyncBus]):
    """The sync face of AsyncBus; every call runs the async core on a background loop."""

    @property
    def engine(self) -> Engine:
        """The engine under this bus."""
        return self.aio.engine

    create_topic = blocking(AsyncBus.create_topic)
    delete_topic = blocking(AsyncBus.delete_topic)
    list_topics = blocking(AsyncBus.list_topics)
    describe_topic = blocking(AsyncBus.describe_topic)
    alter_topic = blocking(AsyncBus.alter_topic)
    add_partitions = blocking(AsyncBus.add_partitions)

    # The producer is thread-safe: queue from this thread, wait here, and spare a round
    # trip through the event loop per record.
    publish = blocking(AsyncBus.publish, here=AsyncBus._enqueue)
    publish_many = blocking(AsyncBus.publish_many)
    request = blocking(AsyncBus.request)
    late_replies = reading(AsyncBus.late_replies)

    producer = opening(AsyncBus.producer, Producer)
    consumer = opening(AsyncBus.consumer, Consumer)
    subscribe = opening(AsyncBus.subscribe, Consumer)
    queue = opening(AsyncBus.queue, Queue)

    list_share_groups = blocking(AsyncBus.list_share_groups)
    list_queues = blocking(AsyncBus.list_queues)
    delete_share_group = blocking(AsyncBus.delete_share_group)
    list_groups = blocking(AsyncBus.list_groups)
    describe_group = blocking(AsyncBus.describe_group)
    delete_group = blocking(AsyncBus.delete_group)
    reset_offsets = blocking(AsyncBus.reset_offsets)
    maintain = blocking(AsyncBus.maintain)

    def close(self) -> None:
        """Flush pending publishes, close the engine, stop the background loop."""
        if self._portal.loop.is_closed():
            return
        self._portal.check_caller()  # on the loop's own thread: refuse before stopping it
        try:
            self._portal.call(self.aio.close())
        finally:
            self._portal.close()
