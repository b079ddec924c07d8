"""The batching producer: records gather per partition and are stored as one batch.

`send` is a plain method, safe from any thread and from the event loop; it returns a
`RecordFuture` that is both awaitable and `.result()`-able, so the async and sync faces
share every line of it.

Every record accepted by `send`/`send_many` ends one of two ways: its future resolves with
where it was stored, or fails (with `ClosedError` if the producer closed before it could be
stored). A send that races `close()` is either accepted and then flushed by it, or refused.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import types
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Awaitable, Callable, Coroutine, Generator, Sequence
from concurrent.futures import Future
from itertools import accumulate
from time import time_ns
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from tidings.core.compiled import compiled
from tidings.core.errors import (
    ClosedError,
    ConfigurationError,
    PartitionNotFoundError,
    RecordTooLargeError,
)
from tidings.core.handoff import call_next_turn, call_on, on_loop, result_of, woken_when_done
from tidings.core.partitioner import KeyPartitioner, StickyPartitioner
from tidings.core.records import (
    NO_HEADERS,
    Headers,
    HeadersInput,
    RecordMetadata,
    TopicSpec,
    as_bytes,
    normalize_headers,
    now_ms,
    validate_partition,
    validate_timestamp,
)
from tidings.engines.base import AppendResult, ColumnBatch, Engine

T = TypeVar("T")

_BYTES_OR_NONE = frozenset((bytes, type(None)))
_CLOSED = "the producer is closed; create a new producer with bus.producer()"

_Chunk = tuple[int, Sequence[int], Sequence[bytes | None], Sequence[bytes | None] | None]
"""One batch of a send_many: partition, input indexes, values, keys."""


class _PythonBatchCore:
    """The columns of an open batch that every send appends to (see _sending.c)."""

    __slots__ = ("keys", "size", "timestamps", "values")

    values: list[bytes | None]
    timestamps: list[int]
    keys: list[bytes | None] | None
    size: int


class _PythonFutureCore:
    """The fields of a record's future: its batch and its index in it (see _sending.c)."""

    __slots__ = ("_batch", "_index")

    _batch: _OpenBatch
    _index: int


class Send(Protocol):
    """A producer's send()."""

    def __call__(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record; the returned future resolves once it is durable.

        Off the event loop, a send blocks while `buffer_memory` bytes wait to be stored;
        on the loop it never blocks (await the futures for back-pressure). A record larger
        than `buffer_memory` could never fit and raises RecordTooLargeError at once.
        """


class _PythonSender:
    """The state every send reads and writes, and send() (see _sending.c): here send is
    `fallback` itself, the whole send in Python."""

    __slots__ = ("buffered", "closed", "fallback", "open", "seal", "send", "sticky")

    def __init__(
        self,
        lock: threading.Lock,
        *,
        spec_of: Callable[[str], TopicSpec | None],
        partition_for_key: Callable[[bytes, int], int],
        future_type: type[RecordFuture],
        seal: Callable[[_OpenBatch], None],
        fallback: Send,
        batch_size: int,
        buffer_memory: int,
    ) -> None:
        # the rest serve the compiled send only, which takes the common record itself
        self.seal = seal
        """Called with a batch once it is full (lock held)."""
        self.fallback = fallback
        self.send: Send = fallback
        """Queue one record (see Send)."""
        self.open: dict[tuple[str, int], _OpenBatch] = {}
        self.sticky: dict[str, _OpenBatch] = {}
        """Per topic, the open batch of its sticky partition (a shortcut into open)."""
        self.buffered = 0
        """Bytes waiting to be stored."""
        self.closed = False


# In C where it was built: send() takes the common record without running Python code.
_sending = compiled("tidings.api._sending")
if TYPE_CHECKING or _sending is None:
    _BatchCore = _PythonBatchCore
    _FutureCore = _PythonFutureCore
    _Sender = _PythonSender
else:
    _BatchCore = _sending.BatchCore
    _FutureCore = _sending.FutureCore
    _Sender = _sending.Sender


class _OpenBatch(_BatchCore):
    """Records for one partition waiting to be stored.

    Keys and headers are columns made only when a record has one, so the common record
    (value only) costs two list appends.
    """

    __slots__ = ("future", "headers", "offsets", "owner", "partition", "timer", "topic")

    def __init__(self, topic: str, partition: int, owner: AsyncProducer) -> None:
        self.owner = owner
        self.topic = topic
        self.partition = partition
        self.values = []
        self.keys = None
        self.timestamps = []
        self.headers: list[Headers] | None = None
        self.size = 0
        self.future: Future[int] = Future()
        self.offsets: Sequence[int] | None = None
        """Each record's offset where they are not consecutive (set before the future)."""
        self.timer: asyncio.Handle | None = None
        """Its linger timer (on the loop), cancelled when it is sealed before it fires."""

    def add_key(self, index: int, key: bytes) -> None:
        """Set the key of record `index` (the last one added)."""
        if self.keys is None:
            self.keys = []
        self.keys.extend([None] * (index - len(self.keys)))  # records since without one
        self.keys.append(key)

    def add_headers(self, index: int, headers: Headers) -> None:
        """Set the headers of record `index` (the last one added)."""
        if self.headers is None:
            self.headers = []
        self.headers.extend([NO_HEADERS] * (index - len(self.headers)))
        self.headers.append(headers)

    def columns(self) -> ColumnBatch:
        """The batch for the engine, with missing keys and headers filled in."""
        count = len(self.values)
        keys = self.keys
        if keys is not None and len(keys) < count:
            keys.extend([None] * (count - len(keys)))
        headers = self.headers
        if headers is not None and len(headers) < count:
            headers.extend([NO_HEADERS] * (count - len(headers)))
        return ColumnBatch(self.topic, self.partition, self.values, keys, self.timestamps, headers)


class RecordFuture(_FutureCore):
    """The outcome of one `send`: await it, or call `.result()`."""

    __slots__ = ()

    def __init__(self, batch: _OpenBatch, index: int) -> None:
        self._batch = batch
        self._index = index

    def _metadata(self, base_offset: int) -> RecordMetadata:
        b, i = self._batch, self._index
        offset = base_offset + i if b.offsets is None else b.offsets[i]
        return RecordMetadata(b.topic, b.partition, offset, b.timestamps[i])

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Block until the record is durable; its metadata, or the error that stopped it."""
        return self._metadata(self._batch.future.result(timeout))

    def done(self) -> bool:
        """Whether the record's batch has been stored or has failed."""
        return self._batch.future.done()

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        future = self._batch.future
        if not future.done():
            store = self._batch.owner._store_now(self._batch)
            if store is not None:  # stored by this task: no turn of the loop in between
                yield from store.__await__()
            else:
                yield from woken_when_done(future).__await__()
        return self._metadata(future.result())


class AsyncProducer:
    """Batches records per partition; a batch is stored when full, after linger_ms, or on flush."""

    def __init__(
        self,
        engine: Engine,
        loop: asyncio.AbstractEventLoop,
        *,
        linger_ms: float = 5,
        batch_size: int = 1 << 20,
        buffer_memory: int = 64 << 20,
    ) -> None:
        sizes = (batch_size, buffer_memory)
        if any(type(n) is not int or n > sys.maxsize for n in sizes):
            raise ConfigurationError(
                f"batch_size and buffer_memory are whole numbers of bytes up to {sys.maxsize}, "
                f"not {batch_size!r} and {buffer_memory!r}"
            )
        if linger_ms < 0 or batch_size < 1 or buffer_memory < batch_size:
            raise ConfigurationError(
                "need linger_ms >= 0, batch_size >= 1, buffer_memory >= batch_size"
            )
        self._engine = engine
        self._loop = loop
        self._linger_s = linger_ms / 1000
        self._batch_size = batch_size
        self._buffer_memory = buffer_memory
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._cached_topic = engine.cached_topic
        self._in_flight: set[Future[int]] = set()
        self._keys = KeyPartitioner()
        self._sticky = StickyPartitioner()
        self._inline = False
        """Whether the engine's append has completed without suspending (an in-memory
        log): with linger 0, a batch is then stored by the task that awaits it."""
        self._sender = _Sender(
            self._lock,
            spec_of=engine.cached_topic,
            partition_for_key=self._keys,
            future_type=RecordFuture,
            seal=self._seal,
            fallback=self._send,
            batch_size=batch_size,
            buffer_memory=buffer_memory,
        )
        """What every send reads and writes: open batches, buffered bytes, closed."""
        self.send: Send = self._sender.send

    def _send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """send() in full: every record where the compiled send() is missing, else the
        records it leaves (a first of its batch, headers, a full buffer, an error)."""
        # The hot path of the producer: every line here is paid once per record.
        value, key, hdrs, size, p, ts = self._accept(
            topic, value, key, headers, partition=partition, timestamp=timestamp
        )
        sender = self._sender
        lock = self._lock
        lock.acquire()  # not `with`: its __enter__/__exit__ calls cost ~100 ns a record
        try:
            if sender.buffered + size > self._buffer_memory and not self._on_loop():
                self._wait_for_room(size)
            if sender.closed:  # checked under the lock: close() flushes only what is in
                raise ClosedError(_CLOSED)
            batch = sender.sticky.get(topic) if p < 0 else sender.open.get((topic, p))
            if batch is None:
                batch = self._sticky_batch(topic) if p < 0 else self._start_batch(topic, p)
            values = batch.values
            index = len(values)
            values.append(value)
            batch.timestamps.append(ts)
            if key is not None:
                batch.add_key(index, key)
            if hdrs:
                batch.add_headers(index, hdrs)
            batch.size += size
            sender.buffered += size
            if batch.size >= self._batch_size:
                sender.seal(batch)
        finally:
            lock.release()
        return RecordFuture(batch, index)

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
        """Store one record now and return where it went, once it is durable.

        On an engine that appends inline, with linger 0 and nothing else pending, the
        record is stored by this call alone, as a batch of one: no batch is kept open, no
        future made, no turn of the loop taken. Otherwise it is a `send` awaited.
        """
        if not (self._inline and not self._linger_s and not self._in_flight and self._on_loop()):
            return await self.send(
                topic, value, key=key, headers=headers, partition=partition, timestamp=timestamp
            )
        value, key, hdrs, _, p, ts = self._accept(
            topic, value, key, headers, partition=partition, timestamp=timestamp
        )
        if p < 0:
            spec = self._spec(topic)
            p = self._sticky.partition(topic, spec.partitions)
            self._sticky.next(topic, spec.partitions, p)
        one = ColumnBatch(
            topic, p, [value], None if key is None else [key], [ts], [hdrs] if hdrs else None
        )
        (result,) = await self._engine.append([one])
        return RecordMetadata(topic, p, result.base_offset, ts)

    def _spec(self, topic: str) -> TopicSpec:
        return self._cached_topic(topic) or self._engine.lookup_topic(topic)

    def _accept(
        self,
        topic: str,
        value: bytes | None,
        key: bytes | None,
        headers: HeadersInput,
        *,
        partition: int | None,
        timestamp: int | None,
    ) -> tuple[bytes | None, bytes | None, Headers, int, int, int]:
        """Check one record: (value, key, headers, size, partition, timestamp), where a
        partition of -1 means the topic's sticky partition (chosen with its batch)."""
        if self._sender.closed:
            raise ClosedError(_CLOSED)
        spec = self._cached_topic(topic) or self._engine.lookup_topic(topic)
        if value is None:
            size = 0
        else:
            if type(value) is not bytes:
                value = as_bytes(value, "value")
            size = len(value)
        if key is not None:
            if type(key) is not bytes:
                key = as_bytes(key, "key")
            size += len(key)
        hdrs = NO_HEADERS
        if headers:
            hdrs = normalize_headers(headers)
            size += sum(len(n) + len(v or b"") for n, v in hdrs)
        if size > spec.config.max_message_bytes:
            raise RecordTooLargeError(topic, size, spec.config.max_message_bytes)
        if size > self._buffer_memory:
            raise RecordTooLargeError(topic, size, self._buffer_memory, setting="buffer_memory")
        if key is None and partition is None:
            # -1: the topic's sticky partition, whose open batch is one dict look-up away
            p = 0 if spec.partitions == 1 else -1
        else:
            p = self._partition(spec, key, partition)
        ts = time_ns() // 1_000_000 if timestamp is None else validate_timestamp(timestamp)
        return value, key, hdrs, size, p, ts

    def _wait_for_room(self, size: int) -> None:
        """Block until `size` more bytes fit in buffer_memory or the producer closes (lock held)."""
        sender = self._sender
        self._space.wait_for(lambda: sender.closed or sender.buffered + size <= self._buffer_memory)

    def _sticky_batch(self, topic: str) -> _OpenBatch:
        """The open batch unkeyed records of `topic` join now (lock held)."""
        spec = self._spec(topic)
        partition = self._sticky.partition(spec.name, spec.partitions)
        batch = self._sender.open.get((spec.name, partition))
        if batch is None:
            batch = self._start_batch(spec.name, partition)
        self._sender.sticky[spec.name] = batch
        return batch

    def _partition(self, spec: TopicSpec, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if type(partition) is not int:
                validate_partition(partition)  # checked before it may join a batch
            if not 0 <= partition < spec.partitions:
                # another process may have added partitions since the cache was read
                spec = self._engine.lookup_topic(spec.name)
                if not 0 <= partition < spec.partitions:
                    raise PartitionNotFoundError(spec.name, partition, spec.partitions)
            return partition
        if spec.partitions == 1:
            return 0  # nothing to choose: no key hash
        if key is not None:
            return self._keys(key, spec.partitions)
        return self._sticky.partition(spec.name, spec.partitions)

    def _on_loop(self) -> bool:
        return on_loop(self._loop)

    def _start_batch(self, topic: str, partition: int) -> _OpenBatch:
        batch = _OpenBatch(topic, partition, self)
        self._sender.open[(topic, partition)] = batch
        self._in_flight.add(batch.future)
        if self._on_loop():
            self._arm(batch)
        else:
            call_next_turn(self._loop, lambda: self._arm_if_open(batch))
        return batch

    def _arm_if_open(self, batch: _OpenBatch) -> None:
        """On the loop: `_arm` a batch started on another thread, unless it is sealed
        already (full before the loop came to it: no timer then holds it)."""
        with self._lock:
            if self._sender.open.get((batch.topic, batch.partition)) is batch:
                self._arm(batch)

    def _arm(self, batch: _OpenBatch) -> None:
        """On the loop, lock held: seal `batch` once it has lingered."""
        loop = self._loop
        if self._linger_s:
            batch.timer = loop.call_later(self._linger_s, self._linger_expired, batch)
        else:
            # Linger 0 still gathers what arrives before the loop's next turn (group
            # commit); on an engine that appends inline, the first task that awaits the
            # batch may store it before then.
            batch.timer = loop.call_soon(self._linger_expired, batch)

    def _store_now(self, batch: _OpenBatch) -> Coroutine[Any, Any, None] | None:
        """For an engine that appends inline, linger 0: the awaiting task stores the batch."""
        if self._linger_s or not self._inline or not self._on_loop():
            return None
        with self._lock:
            if self._sender.open.get((batch.topic, batch.partition)) is not batch:
                return None
            self._close(batch)
        return self._store(batch)

    def _linger_expired(self, batch: _OpenBatch) -> None:
        with self._lock:
            if self._sender.open.get((batch.topic, batch.partition)) is batch:
                self._seal(batch)

    def _seal(self, batch: _OpenBatch) -> None:
        """Close `batch` to new records and hand it to the engine (lock held)."""
        self._close(batch)
        # on the next turn also from the loop: stores start in the order of their seals,
        # whichever threads sealed, so the engine has their records in the order sent
        call_next_turn(self._loop, lambda: self._loop.create_task(self._store(batch)))

    def _close(self, batch: _OpenBatch) -> None:
        """Take `batch` out of the open batches and move its topic's sticky partition on."""
        del self._sender.open[(batch.topic, batch.partition)]
        timer = batch.timer
        if timer is not None:  # a full batch lets go of its timer (and the timer of it)
            batch.timer = None
            call_on(self._loop, timer.cancel)
        if self._sender.sticky.get(batch.topic) is batch:
            del self._sender.sticky[batch.topic]
        spec = self._engine.cached_topic(batch.topic)
        if spec is not None:
            self._sticky.next(batch.topic, spec.partitions, batch.partition)

    async def _store(self, batch: _OpenBatch) -> None:
        try:
            (result,) = await self._append([batch.columns()])
        except BaseException as e:
            if not batch.future.done():
                batch.future.set_exception(e)
        else:
            if not batch.future.done():  # a close that could not wait may have failed it
                batch.offsets = result.offsets
                batch.future.set_result(result.base_offset)
        finally:
            with self._lock:
                self._in_flight.discard(batch.future)
                self._sender.buffered -= batch.size
                self._space.notify_all()

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
    ) -> BatchFuture:
        """Queue many records at once, stored as whole batches; one future for all.

        The call's bytes (keys and values) count toward `buffer_memory` as a loop of
        `send` calls would: off the event loop it blocks until they fit. A call larger
        than the whole buffer is not refused (its records are already in memory): it waits
        until nothing else is buffered and is then stored alone. Each record is checked on
        its own, as `send` checks it: over the topic's `max_message_bytes` or over
        `buffer_memory`, the whole call is refused with RecordTooLargeError. Records the
        topic was sent before the call are stored before its own.
        """
        if self._sender.closed:
            raise ClosedError(_CLOSED)
        spec = self._engine.cached_topic(topic) or self._engine.lookup_topic(topic)
        if keys is not None and len(keys) != len(values):
            raise ConfigurationError(f"got {len(values)} values but {len(keys)} keys")
        sizes = _sizes(values, "value")  # values only: what the codec lays out
        total = sum(sizes)
        if keys is not None:
            key_sizes = _sizes(keys, "key")
            total += sum(key_sizes)
            largest = max(map(sum, zip(sizes, key_sizes, strict=True)), default=0)
        else:
            largest = max(sizes, default=0)
        if largest > spec.config.max_message_bytes:
            raise RecordTooLargeError(topic, largest, spec.config.max_message_bytes)
        if largest > self._buffer_memory:
            raise RecordTooLargeError(topic, largest, self._buffer_memory, setting="buffer_memory")
        ts, chunks, batches = self._batches_of_many(spec, values, keys, sizes, partition)
        future: Future[Published] = Future()

        async def store() -> None:
            try:
                results = await self._append(batches)
            except BaseException as e:
                if not future.done():
                    future.set_exception(e)
                return
            finally:
                self._release(future, total)
            if future.done():  # a close that could not wait has failed it
                return
            consecutive = all(r.offsets is None for r in results)
            if consecutive and all(isinstance(idx, range) for _, idx, _, _ in chunks):
                runs = [
                    (idx[0], p, r.base_offset)
                    for (p, idx, _, _), r in zip(chunks, results, strict=True)
                ]
                future.set_result(Published(topic, ts, len(values), runs))
                return
            partitions = array("i", [0]) * len(values)
            offsets = array("q", [0]) * len(values)
            for (p, idx, _, _), r in zip(chunks, results, strict=True):
                given = r.offsets
                if given is None:
                    given = range(r.base_offset, r.base_offset + len(idx))
                for offset, i in zip(given, idx, strict=True):
                    offsets[i] = offset
                    partitions[i] = p
            future.set_result(
                Published(topic, ts, len(values), partitions=partitions, offsets=offsets)
            )

        with self._lock:
            if not self._on_loop():
                self._wait_for_room(min(total, self._buffer_memory))
            if self._sender.closed:
                raise ClosedError(_CLOSED)
            self._sender.buffered += total
            self._in_flight.add(future)  # type: ignore[arg-type]
            # the topic's open batches are stored first: no record overtakes one sent
            # before it, on any engine
            for batch in [b for b in self._sender.open.values() if b.topic == topic]:
                self._seal(batch)
            call_next_turn(self._loop, lambda: self._loop.create_task(store()))
        return BatchFuture(future)

    def _batches_of_many(
        self,
        spec: TopicSpec,
        values: Sequence[bytes | None],
        keys: Sequence[bytes | None] | None,
        sizes: list[int],
        partition: int | None,
    ) -> tuple[int, list[_Chunk], list[ColumnBatch]]:
        """The batches of a send_many: grouped by key's partition, else cut at batch_size."""
        topic = spec.name
        ts = now_ms()
        chunks: list[_Chunk] = []
        if keys is not None and partition is None and any(k is not None for k in keys):
            groups: dict[int, list[int]] = {}
            for i, k in enumerate(keys):
                groups.setdefault(self._partition(spec, k, None), []).append(i)
            for p, idx in groups.items():
                chunks.append((p, idx, [values[i] for i in idx], [keys[i] for i in idx]))
        else:
            # A batch ends at the first record that fills batch_size; found by arithmetic
            # when all sizes are equal, else by binary search over the running total.
            n = len(values)
            step = _equal_step(sizes, self._batch_size)
            ends = list(accumulate(sizes)) if step is None else []
            start = 0
            while start < n:
                if step is not None:
                    end = min(n, start + step)
                else:
                    filled = (ends[start - 1] if start else 0) + self._batch_size
                    end = min(n, bisect_left(ends, filled, start) + 1)
                p = self._partition(spec, None, partition)
                chunk_keys = keys[start:end] if keys is not None else None
                chunks.append((p, range(start, end), values[start:end], chunk_keys))
                if partition is None:
                    self._sticky.next(topic, spec.partitions, p)
                start = end
        batches = [ColumnBatch(topic, p, v, k, [ts] * len(v), None) for p, idx, v, k in chunks]
        return ts, chunks, batches

    def _append(self, batches: Sequence[ColumnBatch]) -> Awaitable[list[AppendResult]]:
        """The engine's append, noting whether it completes without suspending."""
        appending = self._engine.append(batches)
        if self._inline:
            return appending
        return _noting_inline(appending, self._appends_inline)

    def _appends_inline(self) -> None:
        self._inline = True

    def _release(self, future: Future[Any], size: int) -> None:
        """Give back a send_many's share of buffer_memory; it is no longer in flight."""
        with self._lock:
            self._in_flight.discard(future)
            self._sender.buffered -= size
            self._space.notify_all()

    async def flush(self) -> None:
        """Store every queued record; return once all are durable (errors stay on their futures)."""
        with self._lock:
            for batch in list(self._sender.open.values()):
                self._seal(batch)
            pending = list(self._in_flight)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    async def close(self) -> None:
        """Refuse further sends, then store every record already accepted."""
        with self._lock:
            # Closed before flushing and under the lock, so a send racing this close
            # either joined a batch that the flush below stores, or is refused.
            self._sender.closed = True
            self._space.notify_all()  # senders waiting for room: refused, not stuck
        try:
            await self.flush()
        finally:
            self._fail_pending()

    def _fail_pending(self) -> None:
        """Fail with ClosedError every future a flush could not finish (it was cancelled)."""
        with self._lock:
            pending = [b.future for b in self._sender.open.values()] + list(self._in_flight)
        for future in pending:
            if not future.done():
                future.set_exception(ClosedError(_CLOSED))


@types.coroutine
def _noting_inline(awaitable: Awaitable[T], inline: Callable[[], None]) -> Generator[Any, Any, T]:
    """Await `awaitable`, calling `inline` if it completes without suspending."""
    steps = awaitable.__await__()
    try:
        step = steps.send(None)
    except StopIteration as done:
        inline()
        return done.value  # type: ignore[no-any-return]
    while True:  # suspended: go on as a plain await would (asyncio only ever sends None)
        try:
            try:
                yield step
            except BaseException as e:
                step = steps.throw(e)
            else:
                step = steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


def _sizes(items: Sequence[bytes | None], what: str) -> list[int]:
    """The length of each of `items`, after refusing any that is not bytes or None."""
    kinds = set(map(type, items))  # one C-speed pass instead of a check per record
    if not kinds <= _BYTES_OR_NONE:
        for item in items:
            if item is not None and type(item) is not bytes:
                as_bytes(item, what)
    if type(None) in kinds:
        return [0 if item is None else len(item) for item in items]
    return list(map(len, items))  # type: ignore[arg-type]


def _equal_step(sizes: list[int], batch_size: int) -> int | None:
    """Records per batch when every size is the same (None when they differ)."""
    if not sizes or sizes.count(sizes[0]) != len(sizes):
        return None
    if sizes[0] == 0:
        return len(sizes)
    return -(-batch_size // sizes[0])


class Published(Sequence[RecordMetadata]):
    """Where each record of a `send_many` went, in input order (metadata made on access).

    Records stored in contiguous runs are described by one (first index, partition, base
    offset) per run; records spread over partitions by key, by one entry per record.
    """

    __slots__ = ("_count", "_offsets", "_partitions", "_runs", "_starts", "_timestamp", "_topic")

    def __init__(
        self,
        topic: str,
        timestamp: int,
        count: int,
        runs: Sequence[tuple[int, int, int]] = (),
        *,
        partitions: array[int] | None = None,
        offsets: array[int] | None = None,
    ) -> None:
        self._topic = topic
        self._timestamp = timestamp
        self._count = count
        self._runs = [(p, base) for _, p, base in runs]
        self._starts = [start for start, _, _ in runs]
        self._partitions = partitions
        self._offsets = offsets

    def __len__(self) -> int:
        return self._count

    @overload
    def __getitem__(self, index: int) -> RecordMetadata: ...
    @overload
    def __getitem__(self, index: slice) -> list[RecordMetadata]: ...
    def __getitem__(self, index: int | slice) -> RecordMetadata | list[RecordMetadata]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if self._offsets is not None and self._partitions is not None:
            return RecordMetadata(
                self._topic, self._partitions[index], self._offsets[index], self._timestamp
            )
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError("Published index out of range")
        run = bisect_right(self._starts, index) - 1
        partition, base = self._runs[run]
        return RecordMetadata(
            self._topic, partition, base + index - self._starts[run], self._timestamp
        )

    def __repr__(self) -> str:
        return f"<Published {len(self)} records to {self._topic!r}>"


class BatchFuture:
    """The outcome of `send_many`: every record's metadata, in order."""

    __slots__ = ("_future",)

    def __init__(self, future: Future[Published]) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> Published:
        """Block until all records are durable."""
        return self._future.result(timeout)

    def __await__(self) -> Generator[Any, None, Published]:
        return (yield from result_of(self._future).__await__())
