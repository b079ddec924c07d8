"""Queues: a topic read by a share group of competing consumers, one job at a time.

`receive` locks records for this consumer; each `Job` is then accepted (`ack`), released
for another try (`release`), or rejected to the dead letters (`reject`). Settlements
are sent in batches: right away in the background, and before every `receive`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Self

from tidings.api.face import blocking, reading
from tidings.api.portal import SyncFace
from tidings.api.producer import RecordFuture
from tidings.core.errors import (
    AlreadySettledError,
    ClosedError,
    ConfigurationError,
    LockExpiredError,
)
from tidings.core.records import (
    DELIVER_AT,
    PRIORITY,
    Headers,
    HeadersInput,
    Record,
    RecordMetadata,
    TopicPartition,
    normalize_headers,
    now_ms,
)
from tidings.engines.base import (
    Ack,
    AckKind,
    Delivery,
    EngineShareConsumer,
    QueueDepth,
    ShareConfig,
)

if TYPE_CHECKING:
    from tidings.api.bus import AsyncBus

log = logging.getLogger("tidings")
ACK_LINGER_S = 0.005
"""How long a background flush waits for more settlements (a receive() sends them
sooner, riding on its transaction)."""


class Job:
    """A record locked to this consumer until it is settled or its lock expires."""

    __slots__ = ("_queue", "_settled", "deliveries", "lock_until", "record")

    def __init__(self, delivery: Delivery, queue: AsyncQueue) -> None:
        self.record: Record = delivery.record
        self.deliveries = delivery.deliveries
        """How many times the record was handed out, this time included."""
        self.lock_until = delivery.lock_until
        """Wall-clock ms when the lock expires and the record goes to another consumer."""
        self._queue = queue
        self._settled: AckKind | None = None

    @property
    def key(self) -> bytes | None:
        """The record's key."""
        return self.record.key

    @property
    def value(self) -> bytes | None:
        """The record's value."""
        return self.record.value

    @property
    def headers(self) -> Headers:
        """The record's headers."""
        return self.record.headers

    @property
    def offset(self) -> int:
        """The record's offset in its partition."""
        return self.record.offset

    def ack(self) -> None:
        """Accept: the job is done and never delivered again."""
        if self._settled is not None or now_ms() >= self.lock_until:
            self._check()
        self._settled = AckKind.ACCEPT
        r = self.record
        self._queue.accept(r.partition, r.offset)

    def release(self, delay_ms: int = 0) -> None:
        """Give the job back for another try, after `delay_ms` (its delivery count grows)."""
        _check_delay(delay_ms, "delay_ms")
        self._settle(AckKind.RELEASE, delay_ms)

    def reject(self, reason: str = "") -> None:
        """Poison: send the record to the dead-letter topic at once, with `reason`."""
        self._settle(AckKind.REJECT, reason=reason)

    def extend_lock(self, ms: int) -> None:
        """Keep the lock for `ms` more milliseconds from now (for long work)."""
        _check_delay(ms, "ms")
        self._check()
        self.lock_until = now_ms() + ms
        self._queue.submit(self._ack(AckKind.RENEW, ms))

    def _settle(self, kind: AckKind, delay_ms: int = 0, reason: str = "") -> None:
        self._check()
        self._settled = kind
        self._queue.submit(self._ack(kind, delay_ms, reason))

    def _ack(self, kind: AckKind, delay_ms: int = 0, reason: str = "") -> Ack:
        r = self.record
        return Ack(self._queue.partition(r.partition), r.offset, kind, delay_ms, reason)

    def _check(self) -> None:
        r = self.record
        if self._settled is not None:
            raise AlreadySettledError(
                r.topic,
                r.partition,
                r.offset,
                f"job {r.topic}[{r.partition}]@{r.offset} was already settled "
                f"({self._settled.value}); settle each job once",
            )
        if now_ms() >= self.lock_until:
            raise LockExpiredError(
                r.topic,
                r.partition,
                r.offset,
                f"the lock on job {r.topic}[{r.partition}]@{r.offset} expired; the record "
                f"goes to another consumer; use a longer lock_timeout_ms or extend_lock()",
            )

    def __repr__(self) -> str:
        r = self.record
        return f"<Job {r.topic}[{r.partition}]@{r.offset} delivery {self.deliveries}>"


def _check_delay(value: object, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0 (milliseconds), not {value!r}")


def _check_count(value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigurationError(f"max_records must be an int >= 0, not {value!r}")


class AsyncQueue:
    """A queue over a topic: `send` jobs, `receive` them, settle each one."""

    def __init__(self, bus: AsyncBus, config: ShareConfig, partitions: int) -> None:
        self._bus = bus
        self._config = config
        self._partitions = partitions
        self._inner: EngineShareConsumer | None = None
        self._acks: deque[Ack] = deque()
        self._loop = asyncio.get_running_loop()
        self._submit_lock = threading.Lock()
        self._flush_pending = False
        self._flush_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._tps: dict[int, TopicPartition] = {}
        self._accepting: list[int] | None = None
        self.refused = 0
        """Settlements the store refused because the lock had been lost meanwhile."""

    @property
    def topic(self) -> str:
        """The topic holding the queue's records."""
        return self._config.topic

    @property
    def group(self) -> str:
        """The share group whose consumers compete for the records."""
        return self._config.group

    @property
    def dead_letter_topic(self) -> str | None:
        """Where records go after too many deliveries or a reject (None: dropped)."""
        return self._config.dead_letter_topic

    async def start(self) -> Self:
        """Create the topic (and dead-letter topic) if missing; idempotent."""
        if self._inner is None:
            config = self._config
            await self._bus.create_topic(config.topic, self._partitions, exist_ok=True)
            if config.dead_letter_topic is not None:
                await self._bus.create_topic(config.dead_letter_topic, exist_ok=True)
            self._inner = self._bus.engine.share_consumer(config)
        return self

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def send(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        delay_ms: int = 0,
        priority: int = 0,
    ) -> RecordMetadata:
        """Store a job durably; with `delay_ms` it is invisible to receivers until due."""
        await self.start()
        return await self.enqueue(
            value, key=key, headers=headers, delay_ms=delay_ms, priority=priority
        )

    def enqueue(
        self,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        delay_ms: int = 0,
        priority: int = 0,
    ) -> RecordFuture:
        """Queue a job on the bus's producer (any thread); the future resolves once durable."""
        _check_delay(delay_ms, "delay_ms")
        if not isinstance(priority, int) or isinstance(priority, bool) or not 0 <= priority <= 9:
            raise ConfigurationError(f"priority must be an int from 0 to 9, not {priority!r}")
        hdrs = normalize_headers(headers)
        if delay_ms:
            hdrs = (*hdrs, (DELIVER_AT, str(now_ms() + delay_ms).encode()))
        if priority:
            hdrs = (*hdrs, (PRIORITY, str(priority).encode()))
        return self._bus._enqueue(self._config.topic, value, key=key, headers=hdrs)

    async def receive(self, max_records: int = 100, timeout_ms: float = 1000) -> list[Job]:
        """Lock up to `max_records` jobs for this consumer, waiting up to `timeout_ms`."""
        if self._closed:
            raise ClosedError("queue is closed")
        await self.start()
        assert self._inner is not None
        async with self._flush_lock:  # acks made so far ride along with the acquisition
            acks = self._take_acks()
            refused: list[Ack] = []
            deliveries = await self._inner.acquire(max_records, timeout_ms / 1000, acks, refused)
        if refused:
            self.refused += len(refused)
            log.warning(
                "%d settlement(s) on queue %r refused: their locks expired first; "
                "those records are delivered again",
                len(refused),
                self._config.topic,
            )
        return [Job(d, self) for d in deliveries]

    def accept(self, partition: int, offset: int) -> None:
        """Queue an accept; consecutive ones on a partition become one ranged Ack."""
        with self._submit_lock:
            run = self._accepting
            if run is not None and run[0] == partition and run[2] == offset - 1:
                run[2] = offset
            else:
                self._close_run()
                self._accepting = [partition, offset, offset]
            if self._flush_pending:
                return
            self._flush_pending = True
        self._loop.call_soon_threadsafe(
            self._loop.call_later, ACK_LINGER_S, self._start_background_flush
        )

    def _close_run(self) -> None:
        run = self._accepting
        if run is not None:
            self._acks.append(
                Ack(self.partition(run[0]), run[1], AckKind.ACCEPT, length=run[2] - run[1] + 1)
            )
            self._accepting = None

    def _take_acks(self) -> list[Ack]:
        with self._submit_lock:
            self._close_run()
            acks = list(self._acks)
            self._acks.clear()
        return acks

    def submit(self, ack: Ack) -> None:
        """Queue a settlement to send soon (safe from any thread)."""
        with self._submit_lock:
            self._close_run()
            self._acks.append(ack)
            if self._flush_pending:
                return  # the running background flush takes this one too
            self._flush_pending = True
        self._loop.call_soon_threadsafe(
            self._loop.call_later, ACK_LINGER_S, self._start_background_flush
        )

    def _start_background_flush(self) -> None:
        if self._closed:  # close() flushed already, and the loop may stop before a task runs
            return
        task = self._loop.create_task(self._flush_background())
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    async def _flush_background(self) -> None:
        while True:
            await self.flush()
            with self._submit_lock:
                if not self._acks and self._accepting is None:
                    self._flush_pending = False
                    return

    def partition(self, number: int) -> TopicPartition:
        """The topic partition `number` of this queue."""
        tp = self._tps.get(number)
        if tp is None:
            tp = self._tps[number] = TopicPartition(self._config.topic, number)
        return tp

    async def flush(self) -> None:
        """Send every settlement made so far; return once the store has them."""
        async with self._flush_lock:  # also waits for a background flush under way
            while self._inner is not None:
                acks = self._take_acks()
                if not acks:
                    break
                refused = await self._inner.acknowledge(acks)
                if refused:
                    self.refused += len(refused)
                    log.warning(
                        "%d settlement(s) on queue %r refused: their locks expired first; "
                        "those records are delivered again",
                        len(refused),
                        self._config.topic,
                    )

    async def depth(self) -> list[QueueDepth]:
        """Available, in-flight and delayed jobs, per partition."""
        return await self._bus.engine.queue_depth(self._config.group, self._config.topic)

    async def peek(self, max_records: int = 10) -> list[Record]:
        """The next records a receive would get, without locking them or counting a delivery."""
        _check_count(max_records)
        await self.start()
        await self.flush()
        if not max_records:
            return []
        return await self._bus.engine.queue_peek(self._config, max_records)

    async def purge(self) -> int:
        """Settle every job not locked to a consumer, so none is delivered; how many."""
        await self.start()
        await self.flush()
        return await self._bus.engine.queue_purge(self._config)

    async def dead_letters(self) -> int:
        """Records in the dead-letter topic not redriven yet (0 without a dead-letter topic)."""
        await self.start()
        return await self._bus.engine.queue_dead_letters(self._config)

    async def redrive(self, max_records: int | None = None) -> int:
        """Copy dead letters back into the queue (each only once); how many were copied."""
        if max_records is not None:
            _check_count(max_records)
        await self.start()
        return await self._bus.engine.queue_redrive(self._config, max_records)

    async def close(self) -> None:
        """Send pending settlements and stop; unsettled jobs return after their locks."""
        if self._closed:
            return
        self._closed = True
        await self.flush()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._inner is not None:
            await self._inner.close()


class Queue(SyncFace[AsyncQueue]):
    """The sync face of AsyncQueue."""

    topic = reading(AsyncQueue.topic)
    group = reading(AsyncQueue.group)
    dead_letter_topic = reading(AsyncQueue.dead_letter_topic)

    # the producer is thread-safe: queue from this thread, as Bus.publish does
    send = blocking(AsyncQueue.send, here=AsyncQueue.enqueue)
    receive = blocking(AsyncQueue.receive)
    flush = blocking(AsyncQueue.flush)
    depth = blocking(AsyncQueue.depth)
    peek = blocking(AsyncQueue.peek)
    purge = blocking(AsyncQueue.purge)
    dead_letters = blocking(AsyncQueue.dead_letters)
    redrive = blocking(AsyncQueue.redrive)
    close = blocking(AsyncQueue.close)
