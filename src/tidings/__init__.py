"""tidings: asynchronous communication for Python — logs, groups, queues, pub/sub."""

from tidings.api.bus import AsyncBus, Bus, TopicDescription
from tidings.api.connect import connect, connect_async
from tidings.api.consumer import AsyncConsumer, Consumer
from tidings.api.producer import AsyncProducer, BatchFuture, RecordFuture
from tidings.api.queue import AsyncQueue, Job, Queue
from tidings.app import App, RequestTimeoutError
from tidings.core.errors import *  # noqa: F403
from tidings.core.errors import __doc__ as _errors_doc  # noqa: F401
from tidings.core.records import Record, RecordMetadata, TopicConfig, TopicPartition, TopicSpec
from tidings.engines.base import GroupDescription, PartitionLag, QueueDepth, Rebalance

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
