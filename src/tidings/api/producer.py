"""The batching producer: records gather per partition and are stored as one batch.

`send` is a plain method, safe from any thread and from the event loop; it returns a
`RecordFuture` that is both awaitable and `.result()`-able, so the async and sync faces
share every line of it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import Generator, Sequence
from concurrent.futures import Future
from typing import Any, overload

from tidings.core import batch as codec
from tidings.core.errors import ClosedError, RecordTooLargeError
from tidings.core.partitioner import KeyPartitioner, StickyPartitioner
from tidings.core.records import (
    Headers,
    HeadersInput,
    RecordMetadata,
    TopicSpec,
    as_bytes,
    normalize_headers,
)
from tidings.engines.base import Engine, ProduceBatch


def now_ms() -> int:
    """Wall-clock milliseconds."""
    return time.time_ns() // 1_000_000


class _OpenBatch:
    """Records for one partition waiting to be stored."""

    __slots__ = ("future", "headers", "keys", "partition", "size", "timestamps", "topic", "values")

    def __init__(self, topic: str, partition: int) -> None:
        self.topic = topic
        self.partition = partition
        self.values: list[bytes | None] = []
        self.keys: list[bytes | None] = []
        self.timestamps: list[int] = []
        self.headers: list[Headers] = []
        self.size = 0
        self.future: Future[int] = Future()

    def encode(self) -> ProduceBatch:
        keys = self.keys if any(k is not None for k in self.keys) else None
        return ProduceBatch(
            self.topic,
            self.partition,
            codec.encode(self.values, keys, self.timestamps, self.headers),
        )


class RecordFuture:
    """The outcome of one `send`: await it, or call `.result()`."""

    __slots__ = ("_batch", "_index")

    def __init__(self, batch: _OpenBatch, index: int) -> None:
        self._batch = batch
        self._index = index

    def _metadata(self, base_offset: int) -> RecordMetadata:
        b = self._batch
        return RecordMetadata(
            b.topic, b.partition, base_offset + self._index, b.timestamps[self._index]
        )

    def result(self, timeout: float | None = None) -> RecordMetadata:
        """Block until the record is durable; its metadata, or the error that stopped it."""
        return self._metadata(self._batch.future.result(timeout))

    def done(self) -> bool:
        """Whether the record's batch has been stored or has failed."""
        return self._batch.future.done()

    def __await__(self) -> Generator[Any, None, RecordMetadata]:
        base = yield from asyncio.wrap_future(self._batch.future).__await__()
        return self._metadata(base)


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
        if linger_ms < 0 or batch_size < 1 or buffer_memory < batch_size:
            raise ValueError("need linger_ms >= 0, batch_size >= 1, buffer_memory >= batch_size")
        self._engine = engine
        self._loop = loop
        self._linger_s = linger_ms / 1000
        self._batch_size = batch_size
        self._buffer_memory = buffer_memory
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._open: dict[tuple[str, int], _OpenBatch] = {}
        self._in_flight: set[Future[int]] = set()
        self._buffered = 0
        self._keys = KeyPartitioner()
        self._sticky = StickyPartitioner()
        self._closed = False

    def send(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        headers: HeadersInput = None,
        partition: int | None = None,
        timestamp: int | None = None,
    ) -> RecordFuture:
        """Queue one record; the returned future resolves once it is durable."""
        if self._closed:
            raise ClosedError("producer is closed")
        spec = self._engine.cached_topic(topic) or self._engine.lookup_topic(topic)
        if value is not None and type(value) is not bytes:
            value = as_bytes(value, "value")
        if key is not None and type(key) is not bytes:
            key = as_bytes(key, "key")
        hdrs = normalize_headers(headers) if headers else ()
        size = (len(value) if value is not None else 0) + (len(key) if key is not None else 0)
        if hdrs:
            size += sum(len(n) + len(v or b"") for n, v in hdrs)
        if size > spec.config.max_message_bytes:
            raise RecordTooLargeError(topic, size, spec.config.max_message_bytes)
        partition = self._partition(spec, key, partition)
        ts = now_ms() if timestamp is None else timestamp
        with self._lock:
            if self._buffered + size > self._buffer_memory and not self._on_loop():
                self._space.wait_for(lambda: self._buffered + size <= self._buffer_memory)
            batch = self._open.get((topic, partition))
            if batch is None:
                batch = self._start_batch(topic, partition)
            index = len(batch.values)
            batch.values.append(value)
            batch.keys.append(key)
            batch.timestamps.append(ts)
            batch.headers.append(hdrs)
            batch.size += size
            self._buffered += size
            if batch.size >= self._batch_size:
                self._seal(batch)
        return RecordFuture(batch, index)

    def _partition(self, spec: TopicSpec, key: bytes | None, partition: int | None) -> int:
        if partition is not None:
            if not 0 <= partition < spec.partitions:
                from tidings.core.errors import PartitionNotFoundError

                raise PartitionNotFoundError(spec.name, partition, spec.partitions)
            return partition
        if key is not None:
            return self._keys(key, spec.partitions)
        return self._sticky.partition(spec.name, spec.partitions)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _start_batch(self, topic: str, partition: int) -> _OpenBatch:
        batch = self._open[(topic, partition)] = _OpenBatch(topic, partition)
        self._in_flight.add(batch.future)
        # linger 0 still gathers what arrives before the loop's next turn (group commit)
        self._later(lambda: self._loop.call_later(self._linger_s, self._linger_expired, batch))
        return batch

    def _linger_expired(self, batch: _OpenBatch) -> None:
        with self._lock:
            if self._open.get((batch.topic, batch.partition)) is batch:
                self._seal(batch)

    def _seal(self, batch: _OpenBatch) -> None:
        """Close `batch` to new records and hand it to the engine (lock held)."""
        del self._open[(batch.topic, batch.partition)]
        spec = self._engine.cached_topic(batch.topic)
        if spec is not None:
            self._sticky.next(batch.topic, spec.partitions, batch.partition)
        self._later(lambda: self._loop.create_task(self._store(batch)))

    def _later(self, fn: Any) -> None:
        if self._on_loop():
            fn()
        else:
            self._loop.call_soon_threadsafe(fn)

    async def _store(self, batch: _OpenBatch) -> None:
        try:
            produce_batch = batch.encode()
            (result,) = await self._engine.append([produce_batch])
        except BaseException as e:
            batch.future.set_exception(e)
        else:
            batch.future.set_result(result.base_offset)
        finally:
            with self._lock:
                self._in_flight.discard(batch.future)
                self._buffered -= batch.size
                self._space.notify_all()

    def send_many(
        self,
        topic: str,
        values: Sequence[bytes | None],
        *,
        keys: Sequence[bytes | None] | None = None,
        partition: int | None = None,
    ) -> BatchFuture:
        """Queue many records at once, stored as whole batches; one future for all."""
        if self._closed:
            raise ClosedError("producer is closed")
        spec = self._engine.cached_topic(topic) or self._engine.lookup_topic(topic)
        limit = spec.config.max_message_bytes
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"got {len(values)} values but {len(keys)} keys")
        for v in values:
            if v is not None and type(v) is not bytes:
                as_bytes(v, "value")
        if values and max(map(len, filter(None, values)), default=0) > limit:
            big = max(len(v) for v in values if v is not None)
            raise RecordTooLargeError(topic, big, limit)
        ts = now_ms()
        chunks: list[tuple[int, Sequence[int], list[bytes | None], list[bytes | None] | None]] = []
        if keys is not None and partition is None and any(k is not None for k in keys):
            groups: dict[int, list[int]] = {}
            for i, k in enumerate(keys):
                groups.setdefault(self._partition(spec, k, None), []).append(i)
            for p, idx in groups.items():
                chunks.append((p, idx, [values[i] for i in idx], [keys[i] for i in idx]))
        else:
            start, n = 0, len(values)
            while start < n:
                size, end = 0, start
                while end < n and size < self._batch_size:
                    size += len(values[end] or b"")
                    end += 1
                p = self._partition(spec, None, partition)
                chunk_keys = list(keys[start:end]) if keys is not None else None
                chunks.append((p, range(start, end), list(values[start:end]), chunk_keys))
                if partition is None:
                    self._sticky.next(topic, spec.partitions, p)
                start = end
        batches = [
            ProduceBatch(topic, p, codec.encode(v, k, [ts] * len(v))) for p, _, v, k in chunks
        ]
        future: Future[Published] = Future()

        async def store() -> None:
            try:
                results = await self._engine.append(batches)
            except BaseException as e:
                future.set_exception(e)
                return
            partitions = array("i", [0]) * len(values)
            offsets = array("q", [0]) * len(values)
            for (p, idx, _, _), r in zip(chunks, results, strict=True):
                if isinstance(idx, range):
                    offsets[idx.start : idx.stop] = array(
                        "q", range(r.base_offset, r.base_offset + len(idx))
                    )
                    partitions[idx.start : idx.stop] = array("i", [p]) * len(idx)
                    continue
                for offset, i in enumerate(idx, r.base_offset):
                    offsets[i] = offset
                    partitions[i] = p
            future.set_result(Published(topic, ts, partitions, offsets))

        with self._lock:
            self._in_flight.add(future)  # type: ignore[arg-type]
        future.add_done_callback(self._discard)
        self._later(lambda: self._loop.create_task(store()))
        return BatchFuture(future)

    def _discard(self, future: Future[Any]) -> None:
        with self._lock:
            self._in_flight.discard(future)

    async def flush(self) -> None:
        """Store every queued record; return once all are durable (errors stay on their futures)."""
        with self._lock:
            for batch in list(self._open.values()):
                self._seal(batch)
            pending = list(self._in_flight)
        if pending:
            await asyncio.gather(*(asyncio.wrap_future(f) for f in pending), return_exceptions=True)

    async def close(self) -> None:
        """Flush and refuse further sends."""
        if not self._closed:
            await self.flush()
            self._closed = True


class Published(Sequence[RecordMetadata]):
    """Where each record of a `send_many` went, in input order (metadata made on access)."""

    __slots__ = ("_offsets", "_partitions", "_timestamp", "_topic")

    def __init__(
        self, topic: str, timestamp: int, partitions: array[int], offsets: array[int]
    ) -> None:
        self._topic = topic
        self._timestamp = timestamp
        self._partitions = partitions
        self._offsets = offsets

    def __len__(self) -> int:
        return len(self._offsets)

    @overload
    def __getitem__(self, index: int) -> RecordMetadata: ...
    @overload
    def __getitem__(self, index: slice) -> list[RecordMetadata]: ...
    def __getitem__(self, index: int | slice) -> RecordMetadata | list[RecordMetadata]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return RecordMetadata(
            self._topic, self._partitions[index], self._offsets[index], self._timestamp
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
        return (yield from asyncio.wrap_future(self._future).__await__())
