"""LogStore: the storage primitives under the engines that keep the log themselves.

The memory and sqlite engines are a `LogEngine` over a `LogStore`; everything above the
primitives (producing, consumer groups, retention, compaction) is written once, in
`tidings.engines.log` (the group protocol itself in `tidings.engines.groups`). Methods
are blocking and thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import NamedTuple, TypeVar

from tidings.core import batch as codec
from tidings.core.batch import EncodedBatch
from tidings.core.records import TopicSpec
from tidings.engines.base import AppendResult, ColumnBatch, PartitionState
from tidings.engines.groups.coordinator import GroupState
from tidings.engines.log.share import ShareState

T = TypeVar("T")


class ProduceBatch(NamedTuple):
    """Records for one partition, encoded as the log stores them, ready to append."""

    topic: str
    partition: int
    batch: EncodedBatch

    @classmethod
    def encode(cls, columns: ColumnBatch) -> ProduceBatch:
        """A producer's columns, encoded (a batch of one by the codec's short path)."""
        topic, partition, values, keys, timestamps, headers = columns
        if len(values) == 1:
            batch = codec.encode_one(
                values[0],
                None if keys is None else keys[0],
                timestamps[0],
                () if headers is None else headers[0],
            )
        else:
            batch = codec.encode(values, keys, timestamps, headers)
        return cls(topic, partition, batch)


class StoredBatch(NamedTuple):
    """A batch as stored: the offset of its first record and its encoded bytes."""

    base_offset: int
    data: bytes


class Appended(NamedTuple):
    """A batch this store has just made durable, as its listeners are told of it."""

    topic: str
    partition: int
    base_offset: int
    data: bytes
    end_offset: int
    """The partition's end after this batch: the offset its next record will get."""


class BatchMeta(NamedTuple):
    """What retention and compaction need to know of a stored batch."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    size: int
    appended_ms: int
    """When the batch was appended, by the appending process's clock (compaction keeps it)."""


class LogStore(ABC):
    """Topics of partitioned batch logs, and group states, kept somewhere."""

    url: str
    durable: bool
    multi_process: bool
    reads_block: bool = True
    """Whether reads may wait on I/O; a store that never does is read on the event loop."""

    @abstractmethod
    def open(self) -> None:
        """Open or create the store."""

    @abstractmethod
    def close(self) -> None:
        """Finish pending appends and release resources."""

    @abstractmethod
    def topics(self) -> dict[str, TopicSpec]:
        """Every topic, read fresh (another process may have changed them)."""

    @abstractmethod
    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic; TopicExistsError if it exists."""

    @abstractmethod
    def delete_topic(self, name: str) -> None:
        """Delete a topic and its batches; TopicNotFoundError if absent."""

    @abstractmethod
    def update_topic(self, spec: TopicSpec) -> None:
        """Store a topic's new settings or partition count."""

    @abstractmethod
    def submit(self, batches: Sequence[ProduceBatch]) -> Future[list[AppendResult]]:
        """Append batches; the future completes once they are durable."""

    def append(self, batches: Sequence[ProduceBatch]) -> list[AppendResult]:
        """Append batches and wait until they are durable."""
        return self.submit(batches).result()

    @abstractmethod
    def read(self, topic: str, partition: int, offset: int, max_bytes: int) -> list[StoredBatch]:
        """Batches holding records at or after `offset`, at least one if any, up to max_bytes."""

    @abstractmethod
    def partition_states(self, topic: str) -> list[PartitionState]:
        """Start offset, end offset and size of each partition."""

    @abstractmethod
    def first_batch_at(self, topic: str, partition: int, timestamp: int) -> StoredBatch | None:
        """The first batch with a record whose timestamp is >= `timestamp`."""

    @abstractmethod
    def batch_index(self, topic: str, partition: int) -> list[BatchMeta]:
        """Every stored batch of a partition, oldest first."""

    @abstractmethod
    def truncate_before(self, topic: str, partition: int, offset: int) -> None:
        """Delete the batches wholly before `offset` and move the log start there."""

    @abstractmethod
    def replace_batches(
        self,
        topic: str,
        partition: int,
        replaced: Sequence[int],
        batches: Sequence[tuple[int, EncodedBatch]],
    ) -> None:
        """Swap the batches at base offsets `replaced` for rewritten ones (compaction)."""

    @abstractmethod
    def update_group(self, group: str, change: Callable[[GroupState], T], durable: bool) -> T:
        """Apply `change` to the group's state atomically and store the result."""

    @abstractmethod
    def read_group(self, group: str) -> GroupState | None:
        """The group's state, or None if it has none."""

    @abstractmethod
    def groups(self) -> list[str]:
        """Every group with stored state."""

    @abstractmethod
    def update_share(
        self, group: str, topic: str, partition: int, change: Callable[[ShareState], T]
    ) -> T:
        """Apply `change` to a share group's window over one partition, atomically."""

    @abstractmethod
    def read_shares(self, group: str) -> dict[tuple[str, int], ShareState]:
        """A share group's windows, by (topic, partition)."""

    @abstractmethod
    def share_groups(self) -> list[str]:
        """Every share group with stored state."""

    @abstractmethod
    def delete_share_group(self, group: str) -> None:
        """Remove a share group's state."""

    @abstractmethod
    def add_listener(self, callback: Callable[[Sequence[Appended]], None]) -> None:
        """Call `callback` (from any thread) whenever new records may be readable: with the
        batches this store just appended, or with none for a change made elsewhere."""
