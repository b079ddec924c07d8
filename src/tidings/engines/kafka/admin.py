"""Topics and groups on the cluster, through librdkafka's admin client (blocking calls)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from typing import Literal, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException
from confluent_kafka import TopicPartition as KafkaPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
)

from tidings.core.errors import (
    CapabilityError,
    GroupNotEmptyError,
    GroupNotFoundError,
    InvalidPartitionsError,
    TidingsError,
    TopicNotFoundError,
)
from tidings.core.records import TopicConfig, TopicPartition, TopicSpec, validate_partitions
from tidings.engines.base import GroupDescription, MemberDescription, PartitionLag
from tidings.engines.kafka.errors import translate
from tidings.engines.kafka.settings import KafkaSettings

T = TypeVar("T")
GroupState = Literal["Stable", "PreparingRebalance", "Empty", "Dead"]
STATES: dict[str, GroupState] = {
    "STABLE": "Stable",
    "PREPARING_REBALANCE": "PreparingRebalance",
    "COMPLETING_REBALANCE": "PreparingRebalance",
    "EMPTY": "Empty",
    "DEAD": "Dead",
}
SETTINGS = tuple(TopicConfig().to_kafka_text())
"""The topic settings tidings reads and writes, under Kafka's names."""


def is_internal(name: str) -> bool:
    """Whether a topic is the cluster's own (__consumer_offsets, ...), hidden from listings."""
    return name.startswith("__")


class KafkaAdmin:
    """Blocking admin calls, each bounded by the settings' request timeout."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.url = settings.url
        self.client = AdminClient(settings.client("admin"))

    def _wait(
        self, future: Future[T], what: str, *, topic: str | None = None, group: str | None = None
    ) -> T:
        try:
            return future.result(timeout=self.settings.timeout_s * 2)
        except KafkaException as e:
            raise translate(e, self.url, what, topic=topic, group=group) from e
        except TimeoutError as e:
            raise translate(
                KafkaError(KafkaError._TIMED_OUT), self.url, what, topic=topic, group=group
            ) from e

    # -- topics --------------------------------------------------------------------------

    def partition_counts(self, topic: str | None = None) -> dict[str, int]:
        """Partitions of every topic (or of `topic` only) from the cluster's metadata."""
        try:
            metadata = self.client.list_topics(timeout=self.settings.timeout_s)
        except KafkaException as e:
            raise translate(e, self.url, "reading the cluster's metadata") from e
        counts = {
            name: len(t.partitions)
            for name, t in metadata.topics.items()
            if t.error is None and not is_internal(name)
        }
        if topic is not None:
            if topic not in counts:
                raise TopicNotFoundError(topic)
            return {topic: counts[topic]}
        return counts

    def configs(self, names: Sequence[str]) -> dict[str, TopicConfig]:
        """The tidings settings of each topic, read from the cluster."""
        if not names:
            return {}
        futures = self.client.describe_configs([ConfigResource("TOPIC", n) for n in names])
        out: dict[str, TopicConfig] = {}
        for resource, future in futures.items():
            name = resource.name
            entries = self._wait(future, f"reading the settings of topic {name!r}", topic=name)
            known = [(k, entries[k].value) for k in SETTINGS if k in entries]
            out[name] = TopicConfig().updated(**TopicConfig.changes_from_kafka(known))
        return out

    def topics(self, only: str | None = None) -> dict[str, TopicSpec]:
        """Every topic (or `only`), with its partition count and settings."""
        counts = self.partition_counts(only)
        configs = self.configs(sorted(counts))
        return {n: TopicSpec(n, counts[n], configs[n]) for n in sorted(counts)}

    def create_topic(self, spec: TopicSpec) -> None:
        """Create a topic with its settings."""
        new = NewTopic(
            spec.name,
            spec.partitions,
            self.settings.replication_factor,
            config=spec.config.to_kafka_text(),
        )
        (future,) = self.client.create_topics([new]).values()
        self._wait(future, f"creating topic {spec.name!r}", topic=spec.name)

    def delete_topic(self, name: str) -> None:
        """Delete a topic."""
        (future,) = self.client.delete_topics([name]).values()
        self._wait(future, f"deleting topic {name!r}", topic=name)

    def alter_topic(self, name: str, config: TopicConfig) -> None:
        """Set every tidings setting of a topic, leaving the cluster's others as they are."""
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in config.to_kafka_text().items()
        ]
        futures = self.client.incremental_alter_configs(
            [ConfigResource("TOPIC", name, incremental_configs=entries)]
        )
        (future,) = futures.values()
        self._wait(future, f"changing the settings of topic {name!r}", topic=name)

    def add_partitions(self, name: str, total: int) -> None:
        """Grow a topic to `total` partitions."""
        validate_partitions(total)
        (current,) = self.partition_counts(name).values()
        if total <= current:
            raise InvalidPartitionsError(
                f"topic {name!r} has {current} partitions; the new count must be larger "
                f"(partitions can be added, never removed), not {total}"
            )
        (future,) = self.client.create_partitions([NewPartitions(name, total)]).values()
        try:
            self._wait(future, f"adding partitions to topic {name!r}", topic=name)
        except TidingsError as e:
            if "not supported by broker" in str(e):
                raise CapabilityError(
                    f"the cluster at {self.url} cannot add partitions (it does not serve "
                    f"Kafka's CreatePartitions API); create a new topic with more partitions"
                ) from e
            raise

    def extents(
        self, partitions: Iterable[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int]]:
        """(log start, end) of each partition, in one round of requests."""
        wanted = list(partitions)
        if not wanted:
            return {}
        out: dict[TopicPartition, tuple[int, int]] = {}
        ends = ((OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 1))  # type: ignore[no-untyped-call]
        for spec, index in ends:
            request = {KafkaPartition(tp.topic, tp.partition): spec for tp in wanted}
            for kp, future in self.client.list_offsets(request).items():
                tp = TopicPartition(kp.topic, kp.partition)
                found = self._wait(future, f"reading the offsets of {tp.topic}", topic=tp.topic)
                start, end = out.get(tp, (0, 0))
                out[tp] = (found.offset, end) if index == 0 else (start, found.offset)
        return out

    # -- groups --------------------------------------------------------------------------

    def group_ids(self) -> list[str]:
        """Every consumer group the cluster knows, even one with neither members nor offsets."""
        result = self._wait(self.client.list_consumer_groups(), "listing consumer groups")
        return sorted(g.group_id for g in result.valid)

    def committed(self, group: str) -> dict[TopicPartition, int]:
        """A group's committed offsets."""
        request = [ConsumerGroupTopicPartitions(group)]
        (future,) = self.client.list_consumer_group_offsets(request).values()
        result = self._wait(future, f"reading offsets of group {group!r}", group=group)
        return {
            TopicPartition(p.topic, p.partition): p.offset
            for p in result.topic_partitions
            if p.offset >= 0 and p.error is None
        }

    def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment, committed offsets and lag of a group."""
        (future,) = self.client.describe_consumer_groups([group]).values()
        found = self._wait(future, f"describing group {group!r}", group=group)
        committed = self.committed(group)
        state = STATES.get(found.state.name, "Dead")
        if not found.members and not committed:
            raise GroupNotFoundError(group)
        members = tuple(
            MemberDescription(
                m.member_id,
                m.client_id,
                tuple(sorted({p.topic for p in m.assignment.topic_partitions})),
                tuple(TopicPartition(p.topic, p.partition) for p in m.assignment.topic_partitions),
            )
            for m in found.members
        )
        owners = {tp: m.member_id for m in members for tp in m.assignment}
        counts = self.partition_counts()
        shown = {tp for tp in set(committed) | set(owners) if tp.topic in counts}
        extents = self.extents(shown)
        lags = tuple(
            PartitionLag(tp.topic, tp.partition, committed.get(tp), end, owners.get(tp), start)
            for tp, (start, end) in sorted(extents.items())
        )
        return GroupDescription(
            group=group,
            state="Empty" if not members and state != "Dead" else state,
            generation=0,
            strategy=found.partition_assignor or None,
            members=members,
            partitions=lags,
        )

    def groups(self) -> list[str]:
        """Every group with members or committed offsets."""
        out = []
        for group in self.group_ids():
            try:
                self.describe_group(group)
            except GroupNotFoundError:
                continue
            out.append(group)
        return out

    def require_empty(self, group: str, action: str) -> None:
        """Raise GroupNotEmptyError if the group has live members."""
        (future,) = self.client.describe_consumer_groups([group]).values()
        found = self._wait(future, f"describing group {group!r}", group=group)
        if found.members:
            raise GroupNotEmptyError(
                group,
                f"cannot {action} group {group!r}: it has {len(found.members)} live member(s); "
                f"stop its consumers first",
            )

    def delete_group(self, group: str) -> None:
        """Delete an empty group and its committed offsets."""
        self.describe_group(group)  # GroupNotFoundError for a group with nothing to delete
        self.require_empty(group, "delete")
        (future,) = self.client.delete_consumer_groups([group]).values()
        self._wait(future, f"deleting group {group!r}", group=group)

    def set_group_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Overwrite committed offsets of a group with no live members."""
        self.require_empty(group, "reset offsets of")
        parts = [KafkaPartition(tp.topic, tp.partition, off) for tp, off in sorted(offsets.items())]
        request = [ConsumerGroupTopicPartitions(group, parts)]
        (future,) = self.client.alter_consumer_group_offsets(request).values()
        result = self._wait(future, f"setting offsets of group {group!r}", group=group)
        failed = [p for p in result.topic_partitions if p.error is not None]
        if failed:
            raise translate(
                failed[0].error, self.url, f"setting offsets of group {group!r}", group=group
            )
