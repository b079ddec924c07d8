"""ServedLog: what `tidings serve` needs from an engine beyond the Engine interface.

A Kafka broker hands out stored batches as they are and coordinates groups itself, so
the server reads raw batches (from the store, or from the tails this process appended
last), a partition's batch index, and changes group states directly. The log engine
(memory://, sqlite://) serves all of it; `tidings serve` refuses an engine that does
not (kafka://, nats://). This module is all the server knows of `tidings.engines.log`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Container, Mapping, Sequence
from typing import NamedTuple, TypeVar

from tidings.core.records import Record, TopicPartition, TopicSpec
from tidings.engines.base import AppendResult, Engine, PartitionState
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log.store import Appended, BatchMeta, ProduceBatch, StoredBatch
from tidings.engines.log.tail import Tail

__all__ = [
    "Appended",
    "BatchMeta",
    "PartitionBatches",
    "PartitionRead",
    "ProduceBatch",
    "ServedLog",
    "StoredBatch",
    "Tail",
]

R = TypeVar("R")


class PartitionRead(NamedTuple):
    """One partition of a read_partitions: the offset to read from, and at most how much."""

    topic: str
    partition: int
    offset: int
    max_bytes: int


class PartitionBatches(NamedTuple):
    """What read_partitions found in one partition."""

    state: PartitionState | None
    """The partition's extent; None when there is no such partition."""
    batches: list[StoredBatch] | None
    """The batches from the offset on; None when the offset is outside the extent."""


class ServedLog(Engine):
    """An engine whose raw batches, tails and group states a Kafka broker serves."""

    max_partitions: int
    """The most partitions a topic may have: a bound on what one request can cost."""
    maintenance_interval_s: float
    """Seconds between background rounds of retention and compaction (0: none); read at
    start."""
    tails: Mapping[TopicPartition, Tail]
    """The last batches this process appended to each partition: a reader at the end of
    the log reads them from here, without a trip to the store."""

    @property
    @abstractmethod
    def version(self) -> int:
        """Grows whenever new records may have become readable."""

    @abstractmethod
    async def wait_for_data(
        self, version: int, timeout_s: float, wanted: Container[tuple[str, int]] | None = None
    ) -> Sequence[Appended]:
        """Wait until `version` is out of date or `timeout_s` passed; the batches whose
        append ended the wait, if this process appended them. With `wanted`, (topic,
        partition) pairs, only appends there end it."""

    @abstractmethod
    def wake_waiters(self, appended: Sequence[Appended] = ()) -> None:
        """End every wait_for_data now."""

    @abstractmethod
    async def topic(self, name: str) -> TopicSpec:
        """A topic's spec, read fresh when not cached (TopicNotFoundError)."""

    @abstractmethod
    async def refresh_topics(self) -> dict[str, TopicSpec]:
        """Every topic's spec by name, read from the store again."""

    @abstractmethod
    async def record_at_time(self, tp: TopicPartition, timestamp: int) -> Record | None:
        """The first record of a partition whose timestamp is at or after `timestamp`."""

    @abstractmethod
    async def append_encoded(self, batches: Sequence[ProduceBatch]) -> list[AppendResult]:
        """Store batches already encoded (a Kafka client's, copied through) durably."""

    @abstractmethod
    async def batch_index(self, topic: str, partition: int) -> list[BatchMeta]:
        """Every stored batch of a partition, oldest first, without its records."""

    @abstractmethod
    async def read_batches(
        self, topic: str, partition: int, offset: int, max_bytes: int
    ) -> list[StoredBatch]:
        """Stored batches holding records at or after `offset`, at least one if any, up to
        max_bytes."""

    @abstractmethod
    async def read_partitions(
        self, reads: Sequence[PartitionRead], max_bytes: int
    ) -> list[PartitionBatches]:
        """Each partition's extent and batches, in one trip to the store, in the order
        asked; max_bytes in all, and at least one batch if any."""

    @abstractmethod
    async def update_group(self, group: str, change: Callable[[GroupState], R], durable: bool) -> R:
        """Apply `change` to the group's state atomically and store it; what it returned."""
