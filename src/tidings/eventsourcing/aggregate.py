"""Aggregates, their repository, snapshots and upcasters.

    @dataclass
    class Deposited:
        amount: int

    class Account(Aggregate):
        snapshot_every = 100

        def __init__(self, id: str) -> None:
            super().__init__(id)
            self.balance = 0

        def deposit(self, amount: int) -> None:        # a command: decide, then record
            if amount <= 0:
                raise ValueError("deposit a positive amount")
            self.record(Deposited(amount))

        @when(Deposited)                                # how an event changes the state
        def _deposited(self, event: Deposited) -> None:
            self.balance += event.amount

    accounts = Repository(store, Account)   # AsyncRepository on the async store
    account = accounts.get("7")      # snapshot (if any) + the events after it
    account.deposit(5)
    accounts.save(account)           # appends with the version it was loaded at

Events are dataclasses or pydantic models stored as JSON under their class name, with
their schema version (the class attribute `version`, 1 when absent) in the metadata.
An upcaster registered for (type, version) turns an old event's data into the next
version's as it is read, so stored history never has to be rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar, Generic, TypeVar

from tidings.core.errors import ConfigurationError, TidingsError
from tidings.eventsourcing.storage import NO_STREAM, EventStorage, RecordedEvent
from tidings.eventsourcing.store import (
    AsyncEventStore,
    Event,
    EventStore,
    append,
    new_events,
    read_stream,
)

A = TypeVar("A", bound="Aggregate")
S = TypeVar("S", bound="AsyncEventStore | EventStore")
F = TypeVar("F", bound=Callable[..., Any])
SCHEMA_VERSION = "schema_version"
"""The metadata key holding an event's schema version."""


def when(event_type: type) -> Callable[[F], F]:
    """Mark a method as the handler that applies `event_type` to the aggregate's state."""

    def mark(method: F) -> F:
        method.__tidings_event__ = event_type  # type: ignore[attr-defined]
        return method

    return mark


class Aggregate:
    """A consistency boundary rebuilt from its events; commands record new ones."""

    category: ClassVar[str] = ""
    """The stream category (default: the class name in lower case)."""
    snapshot_every: ClassVar[int | None] = None
    """Save a snapshot every this many events (None: never)."""
    _handlers: ClassVar[dict[type, Callable[[Any, Any], None]]] = {}
    _event_types: ClassVar[dict[str, type]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers = dict(getattr(cls, "_handlers", {}))
        for value in vars(cls).values():
            event_type = getattr(value, "__tidings_event__", None)
            if event_type is not None:
                handlers[event_type] = value
        cls._handlers = handlers
        cls._event_types = {t.__name__: t for t in handlers}
        if not cls.category:
            cls.category = cls.__name__.lower()

    def __init__(self, id: str) -> None:
        self.id = id
        self.version = -1
        """The version of the last event applied (-1: none)."""
        self._pending: list[Any] = []

    @classmethod
    def stream_id(cls, id: str) -> str:
        """The stream of the aggregate with this id: "<category>-<id>"."""
        return f"{cls.category}-{id}"

    def record(self, event: Any) -> None:
        """Apply a new event to the state and keep it to be saved."""
        self.apply(event)
        self._pending.append(event)

    def apply(self, event: Any) -> None:
        """Change the state by one event (loaded or new)."""
        handler = self._handlers.get(type(event))
        if handler is None:
            raise ConfigurationError(
                f"{type(self).__name__} has no @when({type(event).__name__}) handler; "
                f"add one that applies the event to the state"
            )
        handler(self, event)
        self.version += 1

    @property
    def pending(self) -> list[Any]:
        """Events recorded and not yet saved."""
        return list(self._pending)

    def snapshot_state(self) -> dict[str, Any]:
        """The state a snapshot keeps (default: the instance's public attributes)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and k != "version"}

    def restore_state(self, state: dict[str, Any]) -> None:
        """Take back a state from a snapshot."""
        vars(self).update(state)


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class _Aggregates(Generic[A]):
    """Loading and saving aggregates of one class: blocking, over the storage itself."""

    def __init__(self, aggregate: type[A], upcasters: dict[tuple[str, int], Upcaster]) -> None:
        self.aggregate = aggregate
        self.upcasters = upcasters

    def load(self, storage: EventStorage, id: str, use_snapshot: bool) -> A:
        aggregate = self.aggregate(id)
        stream = self.aggregate.stream_id(id)
        start = 0
        snapshot = storage.load_snapshot(stream) if use_snapshot else None
        if snapshot is not None:
            version, state = snapshot
            aggregate.restore_state(json.loads(state))
            aggregate.version = version
            start = version + 1
        for recorded in read_stream(storage, stream, start, False, None):
            aggregate.apply(self._decode(recorded))
        if aggregate.version < 0:
            raise AggregateNotFoundError(f"no {self.aggregate.__name__} with id {id!r}")
        return aggregate

    def save(self, storage: EventStorage, aggregate: A, metadata: dict[str, Any]) -> None:
        pending = aggregate._pending
        if not pending:
            return
        loaded = aggregate.version - len(pending)
        events = [
            Event(type(e).__name__, e, {SCHEMA_VERSION: getattr(e, "version", 1)}) for e in pending
        ]
        stream = self.aggregate.stream_id(aggregate.id)
        expected = loaded if loaded >= 0 else NO_STREAM
        append(storage, stream, new_events(events, metadata), expected)
        aggregate._pending = []
        every = self.aggregate.snapshot_every
        if every and aggregate.version // every > loaded // every:
            state = json.dumps(aggregate.snapshot_state(), default=_jsonable)
            storage.save_snapshot(stream, aggregate.version, state)

    def _decode(self, recorded: RecordedEvent) -> Any:
        cls = self.aggregate._event_types.get(recorded.type)
        if cls is None:
            raise ConfigurationError(
                f"{self.aggregate.__name__} knows no event type {recorded.type!r} (stream "
                f"{recorded.stream_id}, version {recorded.version}); add a @when handler"
            )
        data = json.loads(recorded.data or b"null")
        version = int(recorded.metadata.get(SCHEMA_VERSION, 1))
        while (recorded.type, version) in self.upcasters:
            data = self.upcasters[(recorded.type, version)](data)
            version += 1
        if hasattr(cls, "model_validate"):
            return cls.model_validate(data)
        return cls(**data)


class _Repository(Generic[S, A]):
    """What both repository faces share: the store, the class, and the upcasters."""

    def __init__(
        self,
        store: S,
        aggregate: type[A],
        upcasters: dict[tuple[str, int], Upcaster] | None = None,
    ) -> None:
        self.store: S = store
        self.aggregate = aggregate
        self.upcasters = dict(upcasters or {})
        """(event type, schema version) -> a function from that version's data to the next's."""
        self._work = _Aggregates(aggregate, self.upcasters)

    def upcaster(self, event_type: str, version: int) -> Callable[[Upcaster], Upcaster]:
        """Register `fn(data) -> data` turning version `version` of `event_type` into the next."""

        def register(fn: Upcaster) -> Upcaster:
            self.upcasters[(event_type, version)] = fn
            return fn

        return register


class AsyncRepository(_Repository[AsyncEventStore, A]):
    """Loads and saves aggregates of one class, on the async event store."""

    async def get(self, id: str, *, use_snapshot: bool = True) -> A:
        """The aggregate as of its last event (AggregateNotFoundError if it has none)."""
        return await self.store.call(self._work.load, self.store.storage, id, use_snapshot)

    async def save(self, aggregate: A, **metadata: Any) -> None:
        """Append the aggregate's new events, expecting the version it was loaded at."""
        await self.store.call(self._work.save, self.store.storage, aggregate, metadata)


class Repository(_Repository[EventStore, A]):
    """The sync face: loads and saves in the caller's thread, on a sync EventStore."""

    def get(self, id: str, *, use_snapshot: bool = True) -> A:
        """The aggregate as of its last event."""
        return self._work.load(self.store.storage, id, use_snapshot)

    def save(self, aggregate: A, **metadata: Any) -> None:
        """Append the aggregate's new events, expecting the version it was loaded at."""
        self._work.save(self.store.storage, aggregate, metadata)


class AggregateNotFoundError(TidingsError):
    """No event was ever recorded for the aggregate asked for."""


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    raise TypeError(f"a snapshot cannot hold a {type(value).__name__}; override snapshot_state")
