"""Appending batches through one idempotent librdkafka producer."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from tidings.core.compiled import compiled
from tidings.core.errors import (
    ClosedError,
    PartitionNotFoundError,
    RecordTooLargeError,
    TidingsError,
)
from tidings.core.records import TopicSpec
from tidings.engines.base import AppendResult, ColumnBatch
from tidings.engines.kafka.errors import translate
from tidings.engines.kafka.settings import KafkaSettings

log = logging.getLogger("tidings.kafka")

_Headers = list[tuple[str, str | bytes | None]]
"""A record's headers as librdkafka takes them."""

POLL_S = 0.1
"""How long the delivery thread waits for an event before looking for a stop."""
FULL_WAIT_S = 0.005
"""How long a produce waits when librdkafka's queue is full before trying again."""
QUEUE_MAX_MESSAGES = 2_147_483_647
"""librdkafka's queue.buffering.max.messages: as many as it takes (its default, 100,000,
would refuse records the producer's buffer_memory still has room for)."""


class _PythonCounter:
    """A batch's delivery reports, counted (see _producing.c)."""

    __slots__ = ("_last", "_lock", "_next", "base", "error", "offsets", "records", "reported")

    def __init__(self) -> None:
        # reports come on librdkafka's thread, expect() on the loop's
        self._lock = threading.Lock()
        self.records = -1
        self.reported = 0
        self.base = -1
        self._next = -1
        self.offsets: list[int] | None = None
        self.error: KafkaError | Exception | None = None
        self._last: Message | None = None

    def _keep_offset(self, offset: int) -> None:
        if self.base < 0:
            self.base, self._next = offset, offset + 1
        elif self.offsets is None and offset == self._next:
            self._next += 1
        else:
            if self.offsets is None:  # the first gap: the offsets so far, written out
                self.offsets = list(range(self.base, self._next))
            self.offsets.append(offset)

    def done(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery report of one record."""
        with self._lock:
            self.reported += 1
            if err is not None:
                self.error = self.error or err
            else:
                try:
                    self._keep_offset(msg.offset() or 0)
                except Exception as e:  # the batch fails with it, still counted
                    self.error = self.error or e
            if self.records < 0:
                self._last = msg
            if self.reported != self.records:
                return
        self._complete(msg)

    def expect(self, records: int) -> Message | None:
        """The batch's size; the last report's message if every report is in, else None."""
        if records < 1:
            raise ValueError("expect(records) takes a count of at least 1")
        with self._lock:
            self.records = records
            last, self._last = (self._last, None) if self.reported >= records else (None, None)
            return last

    def _complete(self, msg: Message) -> None:
        raise NotImplementedError


def _produced_in_python(
    produce: Callable[..., None],
    batch: ColumnBatch,
    headers: list[_Headers | None] | None,
    done: Callable[[KafkaError | None, Message], None],
    start: int,
) -> tuple[int, Exception | None]:
    """Produce `batch`'s records from `start` until one is refused: where it stopped
    (the batch's length when all went) and the error, else None."""
    topic, partition, values, keys, timestamps, _ = batch
    for i in range(start, len(values)):
        try:
            # positional arguments: parsing keywords costs a third of each call
            produce(
                topic,
                values[i],
                None if keys is None else keys[i],
                partition,
                done,
                None,
                timestamps[i],
                None if headers is None else headers[i],
            )
        except Exception as e:
            return i, e
    return len(values), None


# In C where it was built: no Python code runs around each produce() and each report.
_producing = compiled("tidings.engines.kafka._producing")
if TYPE_CHECKING or _producing is None:
    _Counter = _PythonCounter
    _produced = _produced_in_python
else:
    _Counter = _producing.Counter
    _produced = _producing.produced


class _Delivery(_Counter):
    """The acknowledgements of one batch, counted in librdkafka's delivery thread.

    Each report costs a call in that thread, holding the GIL the producer needs too, so a
    report does the least it can: count, and keep its offset. Only the last one leads to
    Python code; a partition's reports come in the order its records were produced.
    """

    __slots__ = ("future", "loop", "owner")

    def __init__(self, owner: Appender, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.owner = owner
        self.loop = loop
        self.future: asyncio.Future[tuple[int, list[int] | None]] = loop.create_future()

    def _complete(self, msg: Message) -> None:
        self.loop.call_soon_threadsafe(self.settle, msg)

    def settle(self, msg: Message) -> None:
        """On the loop: resolve the batch's future (`msg` is the last record's report)."""
        if self.future.done():
            return
        error = self.error
        if error is not None:
            failure: Exception = TidingsError(f"producing records failed: {error!r}")
            if isinstance(error, KafkaError):
                try:
                    failure = self.owner.failure(error, msg)
                except Exception as e:  # never leave the batch unsettled
                    failure = TidingsError(f"producing records failed: {error.str()} ({e!r})")
            self.future.set_exception(failure)
            return
        self.future.set_result((self.base, self.offsets))

    async def result(self, batch: ColumnBatch) -> AppendResult:
        """Where `batch`, these reports' records, was stored, once all are acknowledged."""
        base, offsets = await self.future
        return AppendResult(batch.topic, batch.partition, base, offsets)


class Appender:
    """One librdkafka producer (idempotent, acks=all) and the thread serving its reports.

    append() hands librdkafka whole batches, in the order they come, and its own queue
    does the lingering and batching for the wire.
    """

    def __init__(
        self,
        settings: KafkaSettings,
        spec_of: Callable[[str], TopicSpec | None],
        on_error: Callable[[KafkaError], None],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._settings = settings
        self._spec_of = spec_of
        self._loop = loop
        self._producer = Producer(
            settings.client(
                "producer",
                # tidings' buffer_memory bounds what waits; librdkafka's count must not
                defaults={"queue.buffering.max.messages": QUEUE_MAX_MESSAGES},
                overrides={"enable.idempotence": True, "acks": "all", "error_cb": on_error},
            )
        )
        self._producing = asyncio.Lock()
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name="tidings-kafka-deliveries", daemon=True
        )
        self._thread.start()

    @property
    def client(self) -> Producer:
        """The librdkafka producer, for metadata requests."""
        return self._producer

    def _serve(self) -> None:
        poll = self._producer.poll
        while not self._closed:
            try:
                poll(POLL_S)
            except Exception:  # a report's handler failed: the others still need serving
                log.exception("serving librdkafka's delivery reports")

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"the engine at {self._settings.url} is closed; connect again")

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Produce every record of `batches`; where each batch starts, once all are acked."""
        self._check_open()
        deliveries = [_Delivery(self, self._loop) for _ in batches]
        # all of them in one go: another batch's records never come between (a whole
        # batch waiting for room would otherwise let the next one of its partition in)
        async with self._producing:
            for b, d in zip(batches, deliveries, strict=True):
                await self._produce(b, d, 0)
        return [await d.result(b) for b, d in zip(batches, deliveries, strict=True)]

    async def _produce(self, batch: ColumnBatch, delivery: _Delivery, start: int) -> None:
        """Produce `batch`'s records from `start`, their reports going to `delivery`, then
        tell it the batch's size (`_producing` held)."""
        # librdkafka takes a record's headers as a list, and None for none
        headers: list[_Headers | None] | None = None
        if batch.headers is not None:
            headers = [list(h) or None for h in batch.headers]
        produce, done = self._producer.produce, delivery.done
        refreshed = False
        while True:
            start, error = _produced(produce, batch, headers, done, start)
            if error is None:
                self._expect(batch, delivery)
                return
            if isinstance(error, BufferError):
                # librdkafka's queue is full: let deliveries drain it
                await asyncio.sleep(FULL_WAIT_S)
                continue
            if not isinstance(error, KafkaException):
                raise error
            err: KafkaError = error.args[0]
            if err.code() != KafkaError._UNKNOWN_PARTITION or refreshed:
                raise self.failure(err, None, batch.topic) from error
            # partitions added since librdkafka last read the topic's metadata
            refreshed = True
            await asyncio.to_thread(self.refresh, batch.topic)

    @staticmethod
    def _expect(batch: ColumnBatch, delivery: _Delivery) -> None:
        """Every record of `batch` is produced: its size to `delivery`, which completes
        here when all its reports came before (else on the last report's thread)."""
        last = delivery.expect(len(batch.values))
        if last is not None:
            delivery.settle(last)

    def refresh(self, topic: str) -> None:
        """Blocking: make librdkafka read a topic's metadata (its partitions) now."""
        self._producer.list_topics(topic, self._settings.timeout_s)

    def failure(
        self, err: KafkaError, msg: Message | None, topic: str | None = None
    ) -> TidingsError:
        """The tidings error for a record the cluster did not take."""
        topic = msg.topic() if msg is not None else topic
        code = err.code()
        if topic is not None:
            spec = self._spec_of(topic)
            if code == KafkaError.MSG_SIZE_TOO_LARGE:
                size = len(msg.value() or b"") + len(msg.key() or b"") if msg else 0
                limit = spec.config.max_message_bytes if spec else 0
                return RecordTooLargeError(topic, size, limit)
            if code == KafkaError._UNKNOWN_PARTITION and spec is not None:
                partition = msg.partition() if msg is not None else None
                return PartitionNotFoundError(topic, partition or 0, spec.partitions)
        return translate(err, self._settings.url, "producing records", topic=topic)

    def flush(self) -> int:
        """Blocking: wait for every record in flight; how many are left undelivered."""
        left: int = self._producer.flush(self._settings.timeout_s * 3)
        return left

    def close(self) -> None:
        """Blocking: deliver what is in flight, then stop the delivery thread."""
        if self._closed:
            return
        left = self.flush()
        self._closed = True
        self._thread.join()
        if left:
            log.warning(
                "%d records were not delivered to %s before closing", left, self._settings.url
            )
