"""KafkaEngine: the Engine interface over a Kafka-compatible cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException

from tidings.core.errors import (
    CapabilityError,
    ClosedError,
    ConfigurationError,
    TopicExistsError,
)
from tidings.core.records import TopicConfig, TopicPartition, TopicSpec
from tidings.engines.base import (
    AppendResult,
    Capability,
    ColumnBatch,
    ConsumerConfig,
    Engine,
    EngineConsumer,
    GroupDescription,
    PartitionState,
)
from tidings.engines.kafka.admin import KafkaAdmin
from tidings.engines.kafka.errors import AUTHENTICATION, translate
from tidings.engines.kafka.producer import Appender
from tidings.engines.kafka.settings import KafkaSettings, parse

R = TypeVar("R")
log = logging.getLogger("tidings.kafka")

KAFKA_CAPABILITIES = frozenset(
    {
        Capability.CONSUMER_GROUPS,
        Capability.COMPACTION,
        Capability.OFFSETS_FOR_TIMES,
        Capability.DURABLE,
        Capability.MULTI_PROCESS,
        Capability.ADD_PARTITIONS,
    }
)
"""What a Kafka cluster provides through librdkafka. Not share groups (KIP-932 queues:
neither librdkafka nor most Kafka-compatible brokers serve them), not cleaning on demand
(the cluster's log cleaner runs on its own schedule), not partition sizes (librdkafka's
Python client has no DescribeLogDirs)."""
QUEUE_ENGINES = "sqlite://, memory:// (or nats://)"
CONNECT_SLICE_S = 0.25


class KafkaEngine(Engine):
    """Topics, records and groups on a Kafka-compatible cluster."""

    def __init__(self, url: str) -> None:
        self.settings: KafkaSettings = parse(url)
        self.url = self.settings.url
        self.capabilities = KAFKA_CAPABILITIES
        self._specs: dict[str, TopicSpec] = {}
        self._executor = ThreadPoolExecutor(4, thread_name_prefix="tidings-kafka-admin")
        self._admin: KafkaAdmin | None = None
        self._appender: Appender | None = None
        self._connect_error: KafkaError | None = None
        self._closed = False

    @property
    def admin(self) -> KafkaAdmin:
        """The admin client (blocking calls; run them off the loop)."""
        if self._admin is None:
            raise ClosedError(f"the engine at {self.url} is not started; connect first")
        return self._admin

    async def start(self) -> None:
        """Create the clients and reach the cluster, within the request timeout."""
        try:
            self._admin = KafkaAdmin(self.settings)
            self._appender = Appender(
                self.settings, self._specs.get, self._on_producer_error, asyncio.get_running_loop()
            )
        except KafkaException as e:
            raise ConfigurationError(
                f"invalid Kafka setting in {self.url}: {e.args[0].str()}; query options are "
                f"librdkafka settings with '_' for '.' (see librdkafka's CONFIGURATION.md)"
            ) from e
        try:
            await self._connect()
        except BaseException:
            await self.close()
            raise

    def _on_producer_error(self, err: KafkaError) -> None:
        if self._connect_error is None and (
            err.code() in AUTHENTICATION
            or err.code() in (KafkaError._SSL, KafkaError._ALL_BROKERS_DOWN)
        ):
            self._connect_error = err
        log.warning("%s: %s", self.url, err.str())

    async def _connect(self) -> None:
        """Read the cluster's metadata; fail fast on refused credentials or no broker."""
        assert self._appender is not None
        client = self._appender.client
        deadline = time.monotonic() + self.settings.timeout_s
        while True:
            try:
                await self.run(client.list_topics, None, CONNECT_SLICE_S)
                return
            except KafkaException as e:
                failure: KafkaError = self._connect_error or e.args[0]
                if self._connect_error is not None or time.monotonic() >= deadline:
                    raise translate(failure, self.url, "connecting") from e

    async def close(self) -> None:
        """Deliver records in flight, then release the clients."""
        if self._closed:
            return
        self._closed = True
        if self._appender is not None:
            await asyncio.to_thread(self._appender.close)
        self._executor.shutdown(wait=False)

    async def run(self, fn: Callable[..., R], *args: Any) -> R:
        """Run a blocking librdkafka call off the event loop."""
        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args))

    # -- topics --------------------------------------------------------------------------

    async def create_topic(self, spec: TopicSpec, exist_ok: bool = False) -> bool:
        """Create a topic (with exist_ok, one this engine already knows costs nothing)."""
        if exist_ok and spec.name in self._specs:
            return False
        try:
            await self.run(self.admin.create_topic, spec)
        except TopicExistsError:
            if not exist_ok:
                raise
            await self._refresh(spec.name)
            return False
        self._specs[spec.name] = spec
        return True

    async def delete_topic(self, name: str) -> None:
        """Delete a topic."""
        self._specs.pop(name, None)
        await self.run(self.admin.delete_topic, name)

    async def list_topics(self) -> list[TopicSpec]:
        """Every topic but the cluster's internal ones, by name."""
        specs = await self.run(self.admin.topics)
        self._specs = dict(specs)
        return list(specs.values())

    async def _refresh(self, name: str) -> TopicSpec:
        spec = (await self.run(self.admin.topics, name))[name]
        self._specs[name] = spec
        return spec

    async def describe_topic(self, name: str) -> tuple[TopicSpec, list[PartitionState]]:
        """Spec and partition extents (size_bytes is 0: librdkafka does not report it)."""
        spec = await self._refresh(name)
        tps = [TopicPartition(name, p) for p in range(spec.partitions)]
        extents = await self.run(self.admin.extents, tps)
        return spec, [PartitionState(tp.partition, *extents[tp], 0) for tp in tps]

    async def alter_topic(self, name: str, config: TopicConfig) -> TopicSpec:
        """Replace a topic's settings."""
        await self.run(self.admin.alter_topic, name, config)
        return await self._refresh(name)

    async def add_partitions(self, name: str, total: int) -> TopicSpec:
        """Grow a topic."""
        await self.run(self.admin.add_partitions, name, total)
        if self._appender is not None:
            await self.run(self._appender.refresh, name)
        return await self._refresh(name)

    def cached_topic(self, name: str) -> TopicSpec | None:
        """A topic's spec from the cache."""
        return self._specs.get(name)

    def lookup_topic(self, name: str) -> TopicSpec:
        """A topic's spec, read from the cluster now (blocking, bounded)."""
        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        spec = self.admin.topics(name)[name]
        self._specs[name] = spec
        return spec

    # -- records -------------------------------------------------------------------------

    async def append(self, batches: Sequence[ColumnBatch]) -> list[AppendResult]:
        """Produce batches; each acknowledged by all in-sync replicas."""
        if self._appender is None or self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return await self._appender.append(batches)

    def consumer(self, config: ConsumerConfig) -> EngineConsumer:
        """A consumer on its own librdkafka client."""
        from tidings.engines.kafka.consumer import KafkaConsumer

        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        return KafkaConsumer(self, config)

    # -- groups --------------------------------------------------------------------------

    async def list_groups(self) -> list[str]:
        """Every group with members or committed offsets."""
        return await self.run(self.admin.groups)

    async def describe_group(self, group: str) -> GroupDescription:
        """Members, assignment and lag."""
        return await self.run(self.admin.describe_group, group)

    async def delete_group(self, group: str) -> None:
        """Delete an empty group and its committed offsets."""
        await self.run(self.admin.delete_group, group)

    async def set_group_offsets(self, group: str, offsets: dict[TopicPartition, int]) -> None:
        """Overwrite committed offsets of an empty group."""
        await self.run(self.admin.set_group_offsets, group, offsets)

    async def maintain(self) -> None:
        """Refused: the cluster applies retention and compaction on its own schedule."""
        if self._closed:
            raise ClosedError(f"the engine at {self.url} is closed; connect again")
        self.require(Capability.CLEANUP_ON_DEMAND, "applying retention and compaction now")

    def require(self, capability: Capability, what: str) -> None:
        """Raise CapabilityError unless the cluster provides `capability`, saying what would."""
        if capability in self.capabilities:
            return
        if capability == Capability.SHARE_GROUPS:
            raise CapabilityError(
                f"{what} needs share groups (Kafka's KIP-932 queues), which the Kafka engine "
                f"at {self.url} does not provide; use an engine with share groups: "
                f"{QUEUE_ENGINES}"
            )
        super().require(capability, what)
