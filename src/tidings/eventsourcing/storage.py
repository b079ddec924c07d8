"""Where an event store keeps its events: the interface, and the in-memory engine.

A storage appends events to streams atomically under a version check and numbers every
event with a global position in commit order; readers see positions without gaps. Its
calls block (SQLite, PostgreSQL) or never wait (memory); the async store runs them.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tidings.core.errors import TidingsError

ANY = -2
"""Expected version: append whatever the stream holds."""
NO_STREAM = -1
"""Expected version: the stream must not exist (or must have been soft-deleted)."""
EXISTS = -4
"""Expected version: the stream must exist."""
NOT_DELETED, SOFT_DELETED, HARD_DELETED = 0, 1, 2


class ConcurrencyError(TidingsError):
    """An append's expected version did not match the stream's (someone appended first)."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {_name(actual)}, not the expected "
            f"{_name(expected)}: another writer appended first; read the stream again, "
            f"decide again, and append with the new version"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class StreamDeletedError(TidingsError):
    """The stream was deleted for good (a tombstone): it cannot be appended to or read."""

    def __init__(self, stream_id: str) -> None:
        super().__init__(f"stream {stream_id!r} was hard-deleted; its id cannot be used again")
        self.stream_id = stream_id


class DuplicateEventError(TidingsError):
    """An event id that is already stored: every event needs an id of its own."""

    def __init__(self, event_id: str) -> None:
        super().__init__(
            f"an event with id {event_id} is already stored; give each event a new id "
            f"(or none: one is made)"
        )
        self.event_id = event_id


def _name(version: int) -> str:
    return {ANY: "ANY", NO_STREAM: "NO_STREAM (none)", EXISTS: "EXISTS"}.get(version, str(version))


@dataclass(frozen=True)
class NewEvent:
    """An event to append, already encoded."""

    id: str
    type: str
    data: bytes
    metadata: dict[str, Any]


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: where it is in its stream and in the global order."""

    id: str
    stream_id: str
    version: int
    """Its position in its stream, from 0."""
    position: int
    """Its position in the global commit order, from 1, without gaps."""
    type: str
    data: bytes
    metadata: dict[str, Any]
    recorded_ms: int

    @property
    def category(self) -> str:
        """The stream's category: the part of its id before the first '-'."""
        return category_of(self.stream_id)


@dataclass
class StreamMetadata:
    """A stream's settings and state."""

    max_count: int | None = None
    """Only the last `max_count` events are readable."""
    max_age_ms: int | None = None
    """Events older than this are no longer readable."""
    custom: dict[str, Any] = field(default_factory=dict)


def category_of(stream_id: str) -> str:
    """ "order" for "order-42": what a category subscription matches."""
    return stream_id.split("-", 1)[0]


def check_expected(stream_id: str, expected: int, version: int, state: int) -> None:
    """Refuse an append whose expectation does not hold (version -1: no stream)."""
    if state == HARD_DELETED:
        raise StreamDeletedError(stream_id)
    exists = version >= 0 and state == NOT_DELETED
    if expected == ANY:
        return
    if expected == NO_STREAM and not exists:
        return
    if expected == EXISTS and exists:
        return
    if expected >= 0 and exists and expected == version:
        return
    raise ConcurrencyError(stream_id, expected, version if exists else NO_STREAM)


class EventStorage(ABC):
    """The storage of an event store (its calls may block)."""

    reads_block = True

    @abstractmethod
    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: int
    ) -> list[RecordedEvent]:
        """Append atomically after checking `expected`; the events as recorded."""

    @abstractmethod
    def read_stream(
        self, stream_id: str, from_version: int, backward: bool, limit: int
    ) -> list[RecordedEvent]:
        """Up to `limit` readable events of a stream from a version, in either direction."""

    @abstractmethod
    def read_all(self, from_position: int, limit: int, category: str | None) -> list[RecordedEvent]:
        """Up to `limit` events at or after a global position (of one category or all)."""

    @abstractmethod
    def last_position(self) -> int:
        """The global position of the last event (0 when there are none)."""

    @abstractmethod
    def stream_state(self, stream_id: str) -> tuple[int, int, StreamMetadata]:
        """A stream's last version (-1: none), deleted state, and metadata."""

    @abstractmethod
    def set_metadata(self, stream_id: str, metadata: StreamMetadata) -> None:
        """Store a stream's metadata."""

    @abstractmethod
    def delete_stream(self, stream_id: str, hard: bool) -> None:
        """Soft-delete (can be recreated) or hard-delete (tombstoned) a stream."""

    @abstractmethod
    def streams(self, prefix: str, limit: int) -> list[tuple[str, int, int]]:
        """Streams whose id starts with `prefix`: (id, last version, deleted state)."""

    @abstractmethod
    def save_snapshot(self, stream_id: str, version: int, state: str) -> None:
        """Keep a stream's state as of `version`, replacing an older snapshot."""

    @abstractmethod
    def load_snapshot(self, stream_id: str) -> tuple[int, str] | None:
        """A stream's latest snapshot, or None."""

    def add_listener(self, callback: Callable[[], None]) -> None:
        """Call `callback` (from any thread) when events may have been appended."""
        self._listeners.append(callback)

    def _notify(self) -> None:
        for callback in self._listeners:
            callback()

    def __init__(self) -> None:
        self._listeners: list[Callable[[], None]] = []

    @abstractmethod
    def close(self) -> None:
        """Release what the storage holds."""


@dataclass
class _Stream:
    version: int = -1
    state: int = NOT_DELETED
    metadata: StreamMetadata = field(default_factory=StreamMetadata)
    events: list[RecordedEvent] = field(default_factory=list)


class MemoryStorage(EventStorage):
    """Events in this process only, gone when it ends: the reference for the tests."""

    reads_block = False

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._streams: dict[str, _Stream] = {}
        self._all: list[RecordedEvent] = []
        self._ids: set[str] = set()
        self._snapshots: dict[str, tuple[int, str]] = {}

    def append(
        self, stream_id: str, events: Sequence[NewEvent], expected: int
    ) -> list[RecordedEvent]:
        """Append atomically after checking `expected`."""
        with self._lock:
            stream = self._streams.setdefault(stream_id, _Stream())
            check_expected(stream_id, expected, stream.version, stream.state)
            for e in events:
                if e.id in self._ids:
                    raise DuplicateEventError(e.id)
            if stream.state == SOFT_DELETED:
                stream.state = NOT_DELETED
            now = time.time_ns() // 1_000_000
            recorded = [
                RecordedEvent(
                    id=e.id,
                    stream_id=stream_id,
                    version=stream.version + 1 + i,
                    position=len(self._all) + 1 + i,
                    type=e.type,
                    data=e.data,
                    metadata=e.metadata,
                    recorded_ms=now,
                )
                for i, e in enumerate(events)
            ]
            stream.events += recorded
            self._all += recorded
            self._ids.update(e.id for e in recorded)
            if recorded:
                stream.version = recorded[-1].version
        self._notify()
        return recorded

    def read_stream(
        self, stream_id: str, from_version: int, backward: bool, limit: int
    ) -> list[RecordedEvent]:
        """Readable events of a stream from a version."""
        with self._lock:
            stream = self._streams.get(stream_id)
            if stream is None or stream.state != NOT_DELETED:
                return []
            events = readable(stream.events, stream.metadata)
        if backward:
            chosen = [e for e in reversed(events) if e.version <= from_version]
        else:
            chosen = [e for e in events if e.version >= from_version]
        return chosen[:limit]

    def read_all(self, from_position: int, limit: int, category: str | None) -> list[RecordedEvent]:
        """Events at or after a global position."""
        with self._lock:
            tail = self._all[max(0, from_position - 1) :]
        if category is not None:
            tail = [e for e in tail if e.category == category]
        return tail[:limit]

    def last_position(self) -> int:
        """The last global position."""
        return len(self._all)

    def stream_state(self, stream_id: str) -> tuple[int, int, StreamMetadata]:
        """A stream's version, deleted state and metadata."""
        with self._lock:
            stream = self._streams.get(stream_id) or _Stream()
            return stream.version, stream.state, stream.metadata

    def set_metadata(self, stream_id: str, metadata: StreamMetadata) -> None:
        """Store a stream's metadata."""
        with self._lock:
            self._streams.setdefault(stream_id, _Stream()).metadata = metadata

    def delete_stream(self, stream_id: str, hard: bool) -> None:
        """Soft- or hard-delete a stream."""
        with self._lock:
            stream = self._streams.setdefault(stream_id, _Stream())
            if stream.state == HARD_DELETED:
                raise StreamDeletedError(stream_id)
            stream.state = HARD_DELETED if hard else SOFT_DELETED
            stream.events = []  # history stays in $all; the stream reads empty

    def streams(self, prefix: str, limit: int) -> list[tuple[str, int, int]]:
        """Streams whose id starts with `prefix`."""
        with self._lock:
            found = sorted(
                (sid, s.version, s.state)
                for sid, s in self._streams.items()
                if sid.startswith(prefix)
            )
        return found[:limit]

    def save_snapshot(self, stream_id: str, version: int, state: str) -> None:
        """Keep a stream's state as of `version`."""
        with self._lock:
            current = self._snapshots.get(stream_id)
            if current is None or version > current[0]:
                self._snapshots[stream_id] = (version, state)

    def load_snapshot(self, stream_id: str) -> tuple[int, str] | None:
        """A stream's latest snapshot."""
        with self._lock:
            return self._snapshots.get(stream_id)

    def close(self) -> None:
        """Nothing to release: the events go with the process."""


def readable(events: list[RecordedEvent], meta: StreamMetadata) -> list[RecordedEvent]:
    """The events of a whole stream that its max_age and max_count leave readable."""
    if meta.max_age_ms is not None:
        now = time.time_ns() // 1_000_000
        events = [e for e in events if now - e.recorded_ms <= meta.max_age_ms]
    if meta.max_count is not None:
        events = events[-meta.max_count :] if meta.max_count else []
    return events
