"""The event store: streams with optimistic concurrency, the global order, subscriptions.

    store = await tidings.eventsourcing.connect_async("sqlite://events.db")
    await store.append("order-42", [Event("OrderPlaced", {"total": 9.5})],
                       expected_version=NO_STREAM)
    events = await store.read_stream("order-42")
    async for event in store.subscribe(from_position=checkpoint, category="order"): ...

Versions count from 0 within a stream; positions count from 1 in the global commit
order, without gaps. A subscription reads what is stored (catch-up), then waits for new
events (live); it reads by position, so nothing is skipped or reordered at the switch.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Concatenate, ParamSpec, TypeVar

from tidings.api.portal import Portal, SyncFace
from tidings.core.codecs import encode
from tidings.core.errors import ClosedError, ConfigurationError
from tidings.core.handoff import call_on
from tidings.eventsourcing.storage import (
    ANY,
    HARD_DELETED,
    EventStorage,
    MemoryStorage,
    NewEvent,
    RecordedEvent,
    StreamDeletedError,
    StreamMetadata,
)

T = TypeVar("T")
P = ParamSpec("P")
PAGE = 1000
"""Events read per round by reads and subscriptions."""
POLL_S = 0.05
"""How often a live subscription looks for events written by other processes."""


@dataclass(frozen=True)
class Event:
    """An event to append: its type, data (bytes, str, or anything JSON-encodable,
    dataclasses and pydantic models included) and metadata."""

    type: str
    data: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    """A UUID; one is made when none is given."""

    @classmethod
    def of(cls, data: Any, **metadata: Any) -> Event:
        """An event named after the class of `data` (a dataclass or pydantic model)."""
        return cls(type(data).__name__, data, metadata)


@dataclass(frozen=True)
class AppendResult:
    """Where an append left the stream."""

    version: int
    """The stream's version now: its last event's."""
    position: int
    """The global position of the last event appended."""


class StoreCalls:
    """What the event store does with its storage, each written once as a blocking call:
    the sync face makes it in the caller's thread (the storage's connections are per
    thread, its writes locked), the async core in the store's thread (`offloaded`)."""

    def __init__(self, storage: EventStorage, check_open: Callable[[], None]) -> None:
        self._storage = storage
        self._check_open = check_open

    @property
    def storage(self) -> EventStorage:
        """The storage (refused once the store is closed)."""
        self._check_open()
        return self._storage

    def append(
        self,
        stream_id: str,
        events: Sequence[Event],
        expected_version: int = ANY,
        *,
        metadata: dict[str, Any] | None = None,
    ) -> AppendResult:
        """Append events atomically if the stream is at `expected_version` (ConcurrencyError
        if not); `metadata` (correlation id, causation id, ...) goes on every event."""
        return append(self.storage, stream_id, new_events(events, metadata), expected_version)

    def read_stream(
        self,
        stream_id: str,
        from_version: int | None = None,
        *,
        backward: bool = False,
        max_count: int | None = None,
    ) -> list[RecordedEvent]:
        """A stream's events from a version (the start, or the end when backward)."""
        return read_stream(self.storage, stream_id, from_version, backward, max_count)

    def read_all(
        self, from_position: int = 1, max_count: int = PAGE, *, category: str | None = None
    ) -> list[RecordedEvent]:
        """Up to `max_count` events in global order from a position (of one category)."""
        return self.storage.read_all(from_position, max_count, category)

    def last_position(self) -> int:
        """The global position of the last event (0 when empty)."""
        return self.storage.last_position()

    def stream_version(self, stream_id: str) -> int:
        """A stream's version (-1 when it has no events)."""
        return self.storage.stream_state(stream_id)[0]

    def metadata(self, stream_id: str) -> StreamMetadata:
        """A stream's metadata."""
        return self.storage.stream_state(stream_id)[2]

    def set_metadata(
        self,
        /,
        stream_id: str,
        *,
        max_count: int | None = None,
        max_age_ms: int | None = None,
        **custom: Any,
    ) -> None:
        """Limit what a stream keeps readable (its last max_count, or max_age_ms old)."""
        self.storage.set_metadata(stream_id, stream_metadata(max_count, max_age_ms, custom))

    def delete_stream(self, stream_id: str, *, hard: bool = False) -> None:
        """Soft-delete (reads empty; appending recreates it) or hard-delete (for good)."""
        self.storage.delete_stream(stream_id, hard)

    def save_snapshot(self, stream_id: str, version: int, state: str) -> None:
        """Keep a stream's state as of `version` (JSON text), replacing an older snapshot."""
        self.storage.save_snapshot(stream_id, version, state)

    def load_snapshot(self, stream_id: str) -> tuple[int, str] | None:
        """A stream's latest snapshot: (version, state), or None."""
        return self.storage.load_snapshot(stream_id)

    def streams(self, prefix: str = "", limit: int = 1000) -> list[tuple[str, int, int]]:
        """Streams whose id starts with `prefix`: (id, version, deleted state)."""
        return self.storage.streams(prefix, limit)


def offloaded(
    call: Callable[Concatenate[StoreCalls, P], T],
) -> Callable[Concatenate[AsyncEventStore, P], Coroutine[Any, Any, T]]:
    """The async core's face of one of StoreCalls: run it in the store's thread."""

    async def run(store: AsyncEventStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await store.call(partial(call, store.calls, *args, **kwargs))

    return functools.update_wrapper(run, call)


def in_caller(
    call: Callable[Concatenate[StoreCalls, P], T],
) -> Callable[Concatenate[EventStore, P], T]:
    """The sync face's face of one of StoreCalls: run it in the caller's thread."""

    def run(face: EventStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return call(face.aio.calls, *args, **kwargs)

    return functools.update_wrapper(run, call)


class AsyncEventStore:
    """The event store's async core."""

    def __init__(self, storage: EventStorage, url: str) -> None:
        self.storage = storage
        self.url = url
        self.calls = StoreCalls(storage, self.check_open)
        """Every operation, as a blocking call."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tidings-events")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._new = asyncio.Event()
        self._closed = False

    async def start(self) -> AsyncEventStore:
        """Attach to the running loop."""
        self._loop = asyncio.get_running_loop()
        loop = self._loop
        self.storage.add_listener(lambda: call_on(loop, self._new.set))
        return self

    def check_open(self) -> None:
        """Refuse calls on a closed store."""
        if self._closed:
            raise ClosedError(f"the event store at {self.url} is closed; connect again")

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking call on the storage: in the store's thread, or inline for memory."""
        self.check_open()
        if not self.storage.reads_block:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    append = offloaded(StoreCalls.append)
    read_stream = offloaded(StoreCalls.read_stream)
    read_all = offloaded(StoreCalls.read_all)
    last_position = offloaded(StoreCalls.last_position)
    stream_version = offloaded(StoreCalls.stream_version)
    metadata = offloaded(StoreCalls.metadata)
    set_metadata = offloaded(StoreCalls.set_metadata)
    delete_stream = offloaded(StoreCalls.delete_stream)
    save_snapshot = offloaded(StoreCalls.save_snapshot)
    load_snapshot = offloaded(StoreCalls.load_snapshot)
    streams = offloaded(StoreCalls.streams)

    async def subscribe(
        self, from_position: int = 1, *, category: str | None = None
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Every event from a position on, stored ones first, then new ones as they come."""
        position = from_position
        while not self._closed:
            self._new.clear()
            head = await self.last_position()  # before the read: all up to it is visible
            page = await self.read_all(position, PAGE, category=category)
            for event in page:
                yield event
                position = event.position + 1
            if len(page) == PAGE:
                continue
            # a short page saw every event up to `head`; other categories' are skipped
            position = max(position, head + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new.wait(), POLL_S)

    async def close(self) -> None:
        """Close the storage."""
        if self._closed:
            return
        self._closed = True
        self._new.set()
        await asyncio.get_running_loop().run_in_executor(self._executor, self.storage.close)
        self._executor.shutdown()


class EventStore(SyncFace[AsyncEventStore]):
    """The sync face of AsyncEventStore: calls the storage in the caller's thread (its
    connections are per thread, its writes locked), and follows on the background loop."""

    @property
    def portal(self) -> Portal:
        """The loop the async core runs on (for other sync faces built on this store)."""
        return self._portal

    @property
    def storage(self) -> EventStorage:
        """The storage, for calls in the caller's thread (refused once closed)."""
        return self.aio.calls.storage

    append = in_caller(StoreCalls.append)
    read_stream = in_caller(StoreCalls.read_stream)
    read_all = in_caller(StoreCalls.read_all)
    last_position = in_caller(StoreCalls.last_position)
    stream_version = in_caller(StoreCalls.stream_version)
    metadata = in_caller(StoreCalls.metadata)
    set_metadata = in_caller(StoreCalls.set_metadata)
    delete_stream = in_caller(StoreCalls.delete_stream)
    save_snapshot = in_caller(StoreCalls.save_snapshot)
    load_snapshot = in_caller(StoreCalls.load_snapshot)
    streams = in_caller(StoreCalls.streams)

    def subscribe(
        self, from_position: int = 1, *, category: str | None = None, timeout_s: float = 1.0
    ) -> Iterator[RecordedEvent]:
        """Events from a position on; stops when none comes for `timeout_s`."""
        follower = self._portal.call(_start(Follower(self.aio, from_position, category)))
        try:
            while events := self._portal.call(follower.take(timeout_s)):
                yield from events
        finally:
            self._portal.call(follower.close())

    def close(self) -> None:
        """Close the store and its background loop."""
        try:
            if not self._portal.loop.is_closed():
                self._portal.call(self.aio.close())
        finally:
            self._portal.close()


def new_events(events: Sequence[Event], metadata: dict[str, Any] | None) -> list[NewEvent]:
    """Events encoded for the storage, each with its id (time-ordered UUIDs by default)."""
    ids = _time_ordered_ids(sum(1 for e in events if e.id is None))
    shared = dict(metadata or {})  # one copy, shared by the events without their own
    return [
        NewEvent(
            e.id or next(ids),
            e.type,
            encode(e.data) or b"",
            {**shared, **e.metadata} if e.metadata else shared,
        )
        for e in events
    ]


def _time_ordered_ids(count: int) -> Iterator[str]:
    """UUIDs (version 7 layout) that sort by creation time: index inserts stay local."""
    ms = time.time_ns() // 1_000_000
    noise = os.urandom(10 * count)
    for i in range(count):
        rand = int.from_bytes(noise[10 * i : 10 * i + 10], "big")
        value = (ms << 80) | (0x7 << 76) | ((rand >> 68) & 0xFFF) << 64
        value |= (0b10 << 62) | (rand & ((1 << 62) - 1))
        yield str(uuid.UUID(int=value))


def append(
    storage: EventStorage, stream_id: str, events: list[NewEvent], expected: int
) -> AppendResult:
    """Blocking: append encoded events under a version check."""
    if not stream_id:
        raise ConfigurationError("a stream id must be a non-empty string")
    recorded = storage.append(stream_id, events, expected)
    if not recorded:
        return AppendResult(storage.stream_state(stream_id)[0], storage.last_position())
    return AppendResult(recorded[-1].version, recorded[-1].position)


def read_stream(
    storage: EventStorage,
    stream_id: str,
    from_version: int | None,
    backward: bool,
    max_count: int | None,
) -> list[RecordedEvent]:
    """Blocking: a stream's events from a version, page by page."""
    start = from_version if from_version is not None else (2**62 if backward else 0)
    if storage.stream_state(stream_id)[1] == HARD_DELETED:
        raise StreamDeletedError(stream_id)
    out: list[RecordedEvent] = []
    limit = max_count if max_count is not None else 2**62
    while len(out) < limit:
        page = storage.read_stream(stream_id, start, backward, min(PAGE, limit - len(out)))
        out += page
        if len(page) < PAGE:
            break
        start = page[-1].version + (-1 if backward else 1)
    return out


def stream_metadata(
    max_count: int | None, max_age_ms: int | None, custom: dict[str, Any]
) -> StreamMetadata:
    """Checked stream metadata."""
    for name, value in (("max_count", max_count), ("max_age_ms", max_age_ms)):
        if value is not None and (not isinstance(value, int) or value < 0):
            raise ConfigurationError(f"{name} must be an int >= 0 or None, not {value!r}")
    return StreamMetadata(max_count, max_age_ms, custom)


class Follower:
    """A subscription read with timeouts: a task feeds a queue, so giving up on a wait
    never cancels the subscription itself."""

    def __init__(self, store: AsyncEventStore, from_position: int, category: str | None) -> None:
        self._events = store.subscribe(from_position, category=category)
        self._queue: asyncio.Queue[RecordedEvent] = asyncio.Queue(PAGE)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Follower:
        """Start following (on the running loop)."""
        self._task = asyncio.create_task(self._feed())
        return self

    async def _feed(self) -> None:
        async for event in self._events:
            await self._queue.put(event)

    async def take(self, timeout_s: float, limit: int = PAGE) -> list[RecordedEvent]:
        """The events that came, up to `limit`: waits up to `timeout_s` for the first."""
        if self._queue.empty():
            if self._task is not None and self._task.done():
                await self._task  # raises what stopped it
                return []
            try:
                first = await asyncio.wait_for(self._queue.get(), timeout_s)
            except TimeoutError:
                return []
            out = [first]
        else:
            out = []
        while len(out) < limit and not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def close(self) -> None:
        """Stop following."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._events.aclose()


async def _start(follower: Follower) -> Follower:
    return follower.start()


def storage_for(url: str) -> EventStorage:
    """The storage a URL names: memory://, sqlite://PATH or postgresql://..."""
    scheme, _, rest = url.partition("://")
    if scheme == "memory":
        return MemoryStorage()
    if scheme == "sqlite" and rest:
        from tidings.eventsourcing.sql import SqliteStorage

        return SqliteStorage(rest.split("?", 1)[0])
    if scheme in ("postgresql", "postgres") and rest:
        from tidings.eventsourcing.sql import PostgresStorage

        return PostgresStorage(url)
    raise ConfigurationError(
        f"unknown event store URL {url!r}; use memory://, sqlite://PATH (e.g. "
        f"sqlite://./events.db) or postgresql://USER@HOST/DBNAME"
    )


async def connect_async(url: str = "sqlite://.tidings/events.db") -> AsyncEventStore:
    """Open an event store (async core) on the running event loop."""
    return await AsyncEventStore(storage_for(url), url).start()


def connect(url: str = "sqlite://.tidings/events.db") -> EventStore:
    """Open an event store (sync face)."""
    portal = Portal()
    try:
        core = portal.call(connect_async(url))
    except BaseException:
        portal.close()
        raise
    return EventStore(core, portal)
