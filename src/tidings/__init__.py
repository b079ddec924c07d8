"""tidings: asynchronous communication for Python — logs, groups, queues, pub/sub.

The names below load on first use, so `import tidings` (and the `tidings` command) stays
quick; the errors are loaded at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tidings.core.errors import *  # noqa: F403
from tidings.core.errors import __doc__ as _errors_doc  # noqa: F401

if TYPE_CHECKING:
    from tidings.api.bus import AsyncBus, Bus, TopicDescription
    from tidings.api.connect import connect, connect_async
    from tidings.api.consumer import AsyncConsumer, Consumer
    from tidings.api.producer import AsyncProducer, BatchFuture, RecordFuture
    from tidings.api.queue import AsyncQueue, Job, Queue
    from tidings.app import App, RequestTimeoutError
    from tidings.core.records import (
        Record,
        RecordMetadata,
        TopicConfig,
        TopicPartition,
        TopicSpec,
    )
    from tidings.engines.base import GroupDescription, PartitionLag, QueueDepth, Rebalance

_EXPORTS = {
    "App": "tidings.app",
    "AsyncBus": "tidings.api.bus",
    "AsyncConsumer": "tidings.api.consumer",
    "AsyncProducer": "tidings.api.producer",
    "AsyncQueue": "tidings.api.queue",
    "BatchFuture": "tidings.api.producer",
    "Bus": "tidings.api.bus",
    "Consumer": "tidings.api.consumer",
    "GroupDescription": "tidings.engines.base",
    "Job": "tidings.api.queue",
    "PartitionLag": "tidings.engines.base",
    "Queue": "tidings.api.queue",
    "QueueDepth": "tidings.engines.base",
    "Rebalance": "tidings.engines.base",
    "Record": "tidings.core.records",
    "RecordFuture": "tidings.api.producer",
    "RecordMetadata": "tidings.core.records",
    "RequestTimeoutError": "tidings.app",
    "TopicConfig": "tidings.core.records",
    "TopicDescription": "tidings.api.bus",
    "TopicPartition": "tidings.core.records",
    "TopicSpec": "tidings.core.records",
    "connect": "tidings.api.connect",
    "connect_async": "tidings.api.connect",
}
"""Each public name (every one in __all__) and the module it comes from."""

__all__ = [
    "App",
    "AsyncBus",
    "AsyncConsumer",
    "AsyncProducer",
    "AsyncQueue",
    "BatchFuture",
    "Bus",
    "Consumer",
    "GroupDescription",
    "Job",
    "PartitionLag",
    "Queue",
    "QueueDepth",
    "Rebalance",
    "Record",
    "RecordFuture",
    "RecordMetadata",
    "RequestTimeoutError",
    "TopicConfig",
    "TopicDescription",
    "TopicPartition",
    "TopicSpec",
    "connect",
    "connect_async",
]


def __getattr__(name: str) -> Any:
    """Load a public name from its module on first use."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tidings' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazily loaded ones included."""
    return sorted({*globals(), *__all__})
