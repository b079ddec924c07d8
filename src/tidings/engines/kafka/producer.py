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


class _PythonCounter:
    """A batch's delivery reports, counted down (see _producing.c)."""

    __slots__ = ("base", "left")

    left: int
    base: int
    _note: Callable[[KafkaError | None, Message], None]

    def done(self, err: KafkaError | None, msg: Message) -> None:
        """librdkafka's delivery report of one record."""
        self.left -= 1
        if err is not None or self.base < 0 or not self.left:
            self._note(err, msg)


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
    report does the least it can: count down. Only the first, the last and failed ones
    are looked at; a partition's reports come in the order its records were produced.
    """

    __slots__ = ("error", "future", "loop", "owner", "records")

    def __init__(self, owner: Appender, loop: asyncio.AbstractEventLoop, records: int) -> None:
        self.owner = owner
        self.loop = loop
        self.future: asyncio.Future[int] = loop.create_future()
        self.records = records
        self.left = records
        self.base = -1
        self.error: KafkaError | None = None

    def _note(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.error = self.error or err
        elif self.base < 0:
            self.base = msg.offset() or 0
        if not self.left:
            self.loop.call_soon_threadsafe(self.settle, msg)

    def settle(self, msg: Message) -> None:
        """On the loop: resolve the batch's future (`msg` is the last record's report)."""
        if self.future.done():
            return
        if self.error is not None:
            try:
                failure = self.owner.failure(self.error, msg)
            except Exception as e:  # never leave the batch unsettled
                failure = TidingsError(f"producing records failed: {self.error.str()} ({e})")
            self.future.set_exception(failure)
            return
        if (msg.offset() or 0) - self.base != self.records - 1:
            log.warning(
                "records of one batch to %s[%s] got non-consecutive offsets (another "
                "producer wrote between them); offsets after the first are approximate",
                msg.topic(),
                msg.partition(),
            )
        self.future.set_result(self.base)


class Appender:
    """One librdkafka producer (idempotent, acks=all) and the thread serving its reports."""

    def __init__(
        self,
        settings: KafkaSettings,
        spec_of: Callable[[str], TopicSpec | None],
        on_error: Callable[[KafkaError], None],
    ) -> None:
        self._settings = settings
        self._spec_of = spec_of
        self._producer = Producer(
            settings.client(
                "producer",
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
            poll(POLL_S)

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Produce every record of `batches`; where each batch starts, once all are acked."""
        if self._closed:
            raise ClosedError(f"the engine at {self._settings.url} is closed; connect again")
        loop = asyncio.get_running_loop()
        deliveries = [await self._produce(loop, b) for b in batches]
        return [
            AppendResult(b.topic, b.partition, await d.future)
            for b, d in zip(batches, deliveries, strict=True)
        ]

    async def _produce(self, loop: asyncio.AbstractEventLoop, batch: ColumnBatch) -> _Delivery:
        delivery = _Delivery(self, loop, len(batch.values))
        # librdkafka takes a record's headers as a list, and None for none
        headers: list[_Headers | None] | None = None
        if batch.headers is not None:
            headers = [list(h) or None for h in batch.headers]
        produce, done = self._producer.produce, delivery.done
        start = 0
        refreshed = False
        # One batch at a time: a batch waiting for room must not let another one's
        # records into its partition between its own.
        async with self._producing:
            while True:
                start, error = _produced(produce, batch, headers, done, start)
                if error is None:
                    return delivery
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
