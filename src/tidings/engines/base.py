"""The Engine interface: what every engine provides, in tidings' own types."""

from __future__ import annotations

import asyncio
import typing
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal, NamedTuple

from tidings.core.errors import CapabilityError, ConfigurationError
from tidings.core.records import (
    Headers,
    Record,
    TopicConfig,
    TopicPartition,
    TopicSpec,
    validate_group_name,
)

OffsetReset = Literal["earliest", "latest", "none"]
AssignmentStrategy = Literal["range", "roundrobin", "cooperative-sticky"]


class Capability(StrEnum):
    """Features an engine may or may not provide; asking for a missing one is refused."""

    CONSUMER_GROUPS = "consumer_groups"
    COMPACTION = "compaction"
    OFFSETS_FOR_TIMES = "offsets_for_times"
    MULTI_PROCESS = "multi_process"
    DURABLE = "durable"
    SHARE_GROUPS = "share_groups"
    CLEANUP_ON_DEMAND = "cleanup_on_demand"
    """maintain() applies retention and compaction at once (a Kafka cluster's cleaner
    runs on its own schedule)."""
    PARTITION_SIZES = "partition_sizes"
    """describe_topic() reports each partition's size in bytes."""
    ADD_PARTITIONS = "add_partitions"
    """A topic can grow to more partitions (Kafka's CreatePartitions)."""
    EXACT_RECORD_LIMIT = "exact_record_limit"
    """max_message_bytes limits each record exactly: its key, value and headers (a Kafka
    cluster's max.message.bytes limits a whole record batch, overhead included)."""
    QUEUE_PRIORITIES = "queue_priorities"
    """A queue hands out jobs sent with a higher priority first."""
    QUEUE_JOB_STATES = "queue_job_states"
    """A queue's depth and peek see each job's state: a job released with a delay, or
    sent with one, counts as delayed, and a released job is shown by peek."""


class ColumnBatch(NamedTuple):
    """Records for one partition as a producer gathers them: a column per field.

    The one form in which records reach an engine. An engine that stores bytes encodes
    them; one that hands records one by one to a client library (Kafka, NATS) reads the
    columns, so no batch is encoded only to be taken apart again.
    """

    topic: str
    partition: int
    values: Sequence[bytes | None]
    keys: Sequence[bytes | None] | None
    """None when no record has a key."""
    timestamps: Sequence[int]
    headers: Sequence[Headers] | None
    """None when no record has headers."""


class AppendResult(NamedTuple):
    """Where a batch was stored: the offset of its first record."""

    topic: str
    partition: int
    base_offset: int
    offsets: Sequence[int] | None = None
    """Each record's offset where they are not consecutive (a cluster's other producers
    wrote between them), else None: record i is at base_offset + i."""


class PartitionState(NamedTuple):
    """The extent of one partition's log."""

    partition: int
    start_offset: int
    """The first offset still stored (log start)."""
    end_offset: int
    """The offset the next record will get (high watermark)."""
    size_bytes: int


@dataclass(frozen=True)
class PartitionLag:
    """A group's progress on one partition."""

    topic: str
    partition: int
    committed: int | None
    end_offset: int
    owner: str | None
    start_offset: int = 0

    @property
    def lag(self) -> int:
        """Records between the committed offset (else the log start) and the end."""
        base = self.start_offset if self.committed is None else self.committed
        return max(0, self.end_offset - base)


@dataclass(frozen=True)
class MemberDescription:
    """A live member of a consumer group."""

    member_id: str
    client_id: str
    topics: tuple[str, ...]
    assignment: tuple[TopicPartition, ...]


@dataclass(frozen=True)
class GroupDescription:
    """A consumer group: members, assignment and per-partition lag."""

    group: str
    state: Literal["Stable", "PreparingRebalance", "Empty", "Dead"]
    generation: int
    strategy: str | None
    members: tuple[MemberDescription, ...]
    partitions: tuple[PartitionLag, ...]

    @property
    def lag(self) -> int:
        """Total lag over every partition the group has committed or owns."""
        return sum(p.lag for p in self.partitions)


@dataclass(frozen=True)
class ConsumerConfig:
    """How a consumer reads: its group, where it starts, how it fetches."""

    group: str | None = None
    client_id: str = "tidings"
    auto_offset_reset: OffsetReset = "latest"
    strategy: AssignmentStrategy = "range"
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 1_000
    max_poll_interval_ms: int = 300_000
    """A member that does not poll for this long leaves the group (it is presumed stuck)."""
    max_partition_fetch_bytes: int = 1 << 20
    fetch_max_bytes: int = 50 << 20
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.group is not None:
            validate_group_name(self.group)
        if self.auto_offset_reset not in ("earliest", "latest", "none"):
            raise ConfigurationError(
                f"auto_offset_reset must be 'earliest', 'latest' or 'none', "
                f"not {self.auto_offset_reset!r}"
            )
        if self.strategy not in typing.get_args(AssignmentStrategy):
            raise ConfigurationError(
                f"strategy must be 'range', 'roundrobin' or 'cooperative-sticky', "
                f"not {self.strategy!r}"
            )
        if self.max_poll_interval_ms <= 0:
            raise ConfigurationError(
                f"max_poll_interval_ms must be > 0, not {self.max_poll_interval_ms!r}"
            )
        if self.heartbeat_interval_ms <= 0 or self.session_timeout_ms <= self.heartbeat_interval_ms:
            raise ConfigurationError("need 0 < heartbeat_interval_ms < session_timeout_ms")


class Rebalance(NamedTuple):
    """What changed in a member's assignment."""

    revoked: tuple[TopicPartition, ...]
    assigned: tuple[TopicPartition, ...]


class EngineConsumer(ABC):
    """One consumer's session with an engine: assignment, positions, fetch, commit."""

    commit_source: Callable[[], dict[TopicPartition, int]] | None = None
    """When set, what to commit for partitions taken away in a rebalance (auto-commit)."""

    @abstractmethod
    async def subscribe(self, topics: Sequence[str]) -> None:
        """Join the group for `topics`; partitions come and go with rebalances."""

    @abstractmethod
    async def assign(self, partitions: Sequence[TopicPartition]) -> None:
        """Read exactly these partitions, without group membership."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer reads now."""

    @abstractmethod
    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to `max_records` records, waiting up to `timeout_s` for the first."""

    @abstractmethod
    async def commit(self, offsets: dict[TopicPartition, int] | None = None) -> None:
        """Commit `offsets` (next offset to read), or the current positions."""

    @abstractmethod
    async def committed(self, partitions: Sequence[TopicPartition]) -> dict[TopicPartition, int]:
        """The group's committed offsets for `partitions` (missing when none)."""

    @abstractmethod
    def position(self, partition: TopicPartition) -> int:
        """The offset of the next record this consumer will return from `partition`."""

    @abstractmethod
    def positions(self) -> dict[TopicPartition, int]:
        """The next offset of every assigned partition that has a position yet."""

    @abstractmethod
    def rewind(self, partition: TopicPartition, offset: int) -> None:
        """Make `offset` the next record of `partition` (records given back, or a seek)."""

    @abstractmethod
    async def seek(self, partition: TopicPartition, offset: int | str) -> None:
        """Move to `offset`, or to 'earliest' / 'latest'."""

    @abstractmethod
    async def offsets_for_times(
        self, timestamps: dict[TopicPartition, int]
    ) -> dict[TopicPartition, int | None]:
        """The first offset with a timestamp >= each given time (None when there is none)."""

    @abstractmethod
    def pause(self, partitions: Sequence[TopicPartition]) -> None:
        """Stop returning records from `partitions` until resumed."""

    @abstractmethod
    def resume(self, partitions: Sequence[TopicPartition]) -> None:
        """Return records from `partitions` again."""

    @abstractmethod
    def take_rebalances(self) -> list[Rebalance]:
        """Rebalances since the last call, oldest first (for listeners)."""

    @abstractmethod
    async def close(self) -> None:
        """Leave the group and release resources."""


class BlockingEngineConsumer(EngineConsumer):
    """A consumer whose client blocks a thread to read (librdkafka's, say).

    It implements poll_blocking instead of poll: an async consumer runs it on a worker
    thread, so the loop never waits on the client, and a sync consumer runs it on its own
    thread, which waits anyway, with no hand-off to the loop and back.
    """

    @abstractmethod
    def poll_blocking(self, max_records: int, timeout_s: float) -> list[Record]:
        """poll(), blocking the calling thread (any thread, one poll at a time)."""

    async def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """poll_blocking on a worker thread."""
        return await asyncio.to_thread(self.poll_blocking, max_records, timeout_s)


@dataclass(frozen=True)
class ShareConfig:
    """How a share group reads a topic as a queue (KIP-932's model)."""

    group: str
    topic: str
    lock_timeout_ms: int = 30_000
    max_deliveries: int = 5
    dead_letter_topic: str | None = None
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"
    max_locks: int = 10_000
    """Records one partition may have locked at once, over all consumers."""

    def __post_init__(self) -> None:
        validate_group_name(self.group)
        if not isinstance(self.max_deliveries, int) or self.max_deliveries < 1:
            raise ConfigurationError(
                f"max_deliveries must be an int >= 1, not {self.max_deliveries!r}"
            )
        if not isinstance(self.lock_timeout_ms, int) or self.lock_timeout_ms < 1:
            raise ConfigurationError(
                f"lock_timeout_ms must be an int >= 1, not {self.lock_timeout_ms!r}"
            )
        if self.auto_offset_reset not in ("earliest", "latest"):
            raise ConfigurationError(
                f"auto_offset_reset must be 'earliest' or 'latest', not {self.auto_offset_reset!r}"
            )


class Delivery(NamedTuple):
    """A record handed to a share-group consumer, locked to it until `lock_until`."""

    record: Record
    deliveries: int
    """How many times this record has been handed out, this time included."""
    lock_until: int
    """Wall-clock ms when the lock expires and the record becomes available again."""


class AckKind(StrEnum):
    """How a consumer settles a delivered record."""

    ACCEPT = "accept"
    RELEASE = "release"
    REJECT = "reject"
    RENEW = "renew"


class Ack(NamedTuple):
    """One acknowledgement of a delivered record."""

    partition: TopicPartition
    offset: int
    kind: AckKind
    delay_ms: int = 0
    """RELEASE: how long until the record is available again; RENEW: the new lock."""
    reason: str = ""
    """REJECT: why, carried to the dead-letter topic."""
    length: int = 1
    """ACCEPT: how many consecutive offsets from `offset` it settles (1 or more)."""


@dataclass(frozen=True)
class QueueDepth:
    """A share group's view of one partition of its topic."""

    topic: str
    partition: int
    available: int
    """Records ready to hand out now (never delivered, or released and due)."""
    in_flight: int
    """Records locked to a consumer."""
    delayed: int
    """Records released with a delay, or sent with one, not yet due."""


class EngineShareConsumer(ABC):
    """One competing consumer of a share group."""

    @abstractmethod
    async def acquire(
        self,
        max_records: int,
        timeout_s: float,
        acks: Sequence[Ack] = (),
        refused: list[Ack] | None = None,
    ) -> list[Delivery]:
        """Lock and return up to `max_records`, waiting up to `timeout_s` for the first;
        settle `acks` first, in the same store transactions (refused ones go to `refused`)."""

    @abstractmethod
    async def acknowledge(self, acks: Sequence[Ack]) -> list[Ack]:
        """Settle delivered records; returns the acks refused because the lock was lost."""

    @abstractmethod
    async def close(self) -> None:
        """Release resources; records still locked become available when their locks expire."""


class Engine(ABC):
    """Storage and coordination for tidings: topics, records, groups."""

    url: str
    capabilities: frozenset[Capability]

    def require(self, capability: Capability, what: str) -> None:
        """Raise CapabilityError unless this engine provides `capability`."""
        if capability not in self.capabilities:
            raise CapabilityError(
                f"{what} needs the {capability.value!r} capability, which the engine at "
                f"{self.url} does not provide"
            )

    @abstractmethod
    async def start(self) -> None:
        """Open connections and files; called once before use."""

    @abstractmethod
    async def close(self) -> None:
        """Release everything; pending appends complete or fail first."""

    @abstractmethod
    async def create_topic(self, spec: TopicSpec, exist_ok: bool = False) -> bool:
        """Create a topic; False when it existed and `exist_ok`."""

    @abstractmethod
    async def delete_topic(self, name: str) -> None:
        """Delete a topic and every record in it."""

    @abstractmethod
    async def list_topics(self) -> list[TopicSpec]:
        """Every topic, by name."""

    @abstractmethod
    async def describe_topic(self, name: str) -> tuple[TopicSpec, list[PartitionState]]:
        """A topic's spec and the extent of each partition."""

    @abstractmethod
    async def alter_topic(self, name: str, config: TopicConfig) -> TopicSpec:
        """Replace a topic's settings."""

    @abstractmethod
    async def add_partitions(self, name: str, total: int) -> TopicSpec:
        """Grow a topic to `total` partitions."""

    @abstractmethod
    def cached_topic(self, name: str) -> TopicSpec | None:
        """The topic's spec if known without I/O (for the producer's hot path)."""

    @abstractmethod
    def lookup_topic(self, name: str) -> TopicSpec:
        """A topic's spec read now, blocking; callable from any thread (TopicNotFoundError)."""

    @abstractmethod
    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Store the batches of one producer flush durably, in order per partition; where
        each went, in the order given.

        The one way records reach an engine. `batches` is what a producer hands over at
        once, across partitions (a partition may come more than once, its batches in the
        order sent). What an engine does with them is its own: a log encodes each batch
        and commits it with others, the Kafka engine produces the records through
        librdkafka, the NATS engine publishes them. An engine that can append without
        waiting on I/O (an in-memory log) may complete without suspending; a producer
        that sees it do so stores a batch in the task that awaits it.

        Why one call per flush rather than per partition: a transaction (records to
        several partitions plus a group's offsets, committed or aborted together) is then
        a sequence of these calls between its begin and its commit or abort, with the
        offsets written at commit. It needs no second way in, only the engine knowing
        which transaction a call belongs to.
        """

    @abstractmethod
    def consumer(self, config: ConsumerConfig) -> EngineConsumer:
        """A new consumer session."""

    @abstractmethod
    async def list_groups(self) -> list[str]:
        """Every consumer group with members or committed offsets."""

    @abstractmethod
    async def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment, committed offsets and lag of a group."""

    @abstractmethod
    async def delete_group(self, group: str) -> None:
        """Delete an empty group and its committed offsets."""

    @abstractmethod
    async def set_group_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Overwrite committed offsets of a group with no live members."""

    @abstractmethod
    async def maintain(self) -> None:
        """Apply retention and compaction now."""

    def share_consumer(self, config: ShareConfig) -> EngineShareConsumer:
        """A competing consumer of a share group (queue semantics)."""
        self.require(Capability.SHARE_GROUPS, "a queue")
        raise NotImplementedError  # an engine with the capability overrides this

    async def queue_depth(self, group: str, topic: str) -> list[QueueDepth]:
        """Available, in-flight and delayed records of a share group, per partition."""
        self.require(Capability.SHARE_GROUPS, "queue depth")
        raise NotImplementedError

    async def list_share_groups(self) -> list[str]:
        """Every share group with state."""
        self.require(Capability.SHARE_GROUPS, "share groups")
        raise NotImplementedError

    async def delete_share_group(self, group: str) -> None:
        """Forget a share group's state (its records stay in the topic)."""
        self.require(Capability.SHARE_GROUPS, "share groups")
        raise NotImplementedError

    async def list_queues(self) -> list[tuple[str, str]]:
        """Every (share group, topic) pair with state: the queues, for administration."""
        self.require(Capability.SHARE_GROUPS, "listing queues")
        raise NotImplementedError

    async def queue_peek(self, config: ShareConfig, max_records: int) -> list[Record]:
        """The records the share group would be handed next, without locking them."""
        self.require(Capability.SHARE_GROUPS, "peeking at a queue")
        raise NotImplementedError

    async def queue_purge(self, config: ShareConfig) -> int:
        """Settle every record of the queue not locked to a consumer; how many."""
        self.require(Capability.SHARE_GROUPS, "purging a queue")
        raise NotImplementedError

    async def queue_dead_letters(self, config: ShareConfig) -> int:
        """Records in the queue's dead-letter topic not redriven yet."""
        self.require(Capability.SHARE_GROUPS, "counting dead letters")
        raise NotImplementedError

    async def queue_redrive(self, config: ShareConfig, max_records: int | None) -> int:
        """Copy dead letters back to the queue's topic, each once; how many."""
        self.require(Capability.SHARE_GROUPS, "redriving dead letters")
        raise NotImplementedError
