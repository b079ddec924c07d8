"""Event sourcing: an event store with optimistic concurrency, global order and
subscriptions, on memory://, sqlite:// (and PostgreSQL)."""

from tidings.eventsourcing.aggregate import (
    Aggregate,
    AggregateNotFoundError,
    AsyncRepository,
    Repository,
    when,
)
from tidings.eventsourcing.projection import (
    Projection,
    ProjectionRunner,
    ProjectionStatus,
    handles,
)
from tidings.eventsourcing.publisher import EventPublisher
from tidings.eventsourcing.storage import (
    ANY,
    EXISTS,
    NO_STREAM,
    ConcurrencyError,
    DuplicateEventError,
    RecordedEvent,
    StreamDeletedError,
    StreamMetadata,
)
from tidings.eventsourcing.store import (
    AppendResult,
    AsyncEventStore,
    Event,
    EventStore,
    connect,
    connect_async,
)

__all__ = [
    "ANY",
    "EXISTS",
    "NO_STREAM",
    "Aggregate",
    "AggregateNotFoundError",
    "AppendResult",
    "AsyncEventStore",
    "AsyncRepository",
    "ConcurrencyError",
    "DuplicateEventError",
    "Event",
    "EventPublisher",
    "EventStore",
    "Projection",
    "ProjectionRunner",
    "ProjectionStatus",
    "RecordedEvent",
    "Repository",
    "StreamDeletedError",
    "StreamMetadata",
    "connect",
    "connect_async",
    "handles",
    "when",
]
