"""Topic administration over the Kafka protocol: create, delete, grow, and settings.

Settings go by their Kafka names (retention.ms, cleanup.policy, max.message.bytes, ...)
and map one to one onto TopicConfig. One broker holds every partition, so a replication
factor above 1 and manual replica assignments are refused with the reason.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.core.errors import (
    ConfigurationError,
    InvalidPartitionsError,
    InvalidTopicError,
    TopicExistsError,
    TopicNotFoundError,
)
from tidings.core.records import (
    TopicConfig,
    TopicSpec,
    validate_partitions,
    validate_topic_name,
)
from tidings.engines.log.served import ServedLog
from tidings.server.acls import Operation, ResourceType
from tidings.server.kafka.acl_apis import CLUSTER_DENIED, TOPIC_DENIED, AclApis

Fields = dict[str, Any]

TOPIC = 2
BROKER = 4
"""DescribeConfigs / AlterConfigs resource types."""
DYNAMIC_TOPIC_CONFIG = 1
DEFAULT_CONFIG = 5
"""Where a setting's value comes from, as DescribeConfigs reports it."""
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3
"""IncrementalAlterConfigs operations."""
CONFIG_TYPES = {
    "retention.ms": 5,  # LONG
    "retention.bytes": 5,
    "segment.ms": 5,
    "segment.bytes": 3,
    "cleanup.policy": 7,  # LIST
    "max.message.bytes": 3,  # INT
    "min.compaction.lag.ms": 5,
    "delete.retention.ms": 5,
}
TOPIC_IDS = uuid.UUID("6c1f7e0a-7d1b-4f0e-9a57-5d0b1a2c3e4f")
"""Namespace of topic ids: uuid5(TOPIC_IDS, name)."""


def topic_id(name: str) -> uuid.UUID:
    """The id Kafka clients see for a topic (stable for its name)."""
    return uuid.uuid5(TOPIC_IDS, name)


def error(code: ErrorCode, message: str) -> Fields:
    """An error code with the message that says what to do."""
    return {"error_code": code, "error_message": message}


class AdminApis:
    """CreateTopics, DeleteTopics, CreatePartitions, DescribeConfigs, (Incremental)AlterConfigs."""

    def __init__(
        self, engine: ServedLog, default_partitions: Callable[[], int], acls: AclApis
    ) -> None:
        self.engine = engine
        self._default_partitions = default_partitions
        self._acls = acls

    def _refusal(self, operation: Operation, resource_type: int, name: str) -> Fields | None:
        """The error for a caller not allowed `operation` on a topic or the broker; or None."""
        if resource_type == BROKER:
            if self._acls.allows_on_cluster(operation):
                return None
            return error(CLUSTER_DENIED, f"{operation.title} on the cluster is not allowed")
        if self._acls.allows(operation, ResourceType.TOPIC, name):
            return None
        return error(TOPIC_DENIED, f"{operation.title} on topic {name!r} is not allowed")

    async def create_topics(self, request: Any, version: int) -> Fields:
        """Create topics with their settings (replication factor 1: one broker)."""
        validate_only = request.validate_only if version >= 1 else False
        return {"topics": [await self._create_topic(t, validate_only) for t in request.topics]}

    async def _create_topic(self, topic: Any, validate_only: bool) -> Fields:
        name = topic.name
        out: Fields = {"name": name, "topic_id": topic_id(name)}
        partitions = topic.num_partitions
        if partitions == -1:
            partitions = self._default_partitions()
        if not self._acls.allows_on_cluster(Operation.CREATE):
            refused = self._refusal(Operation.CREATE, TOPIC, name)
            if refused is not None:
                return out | refused
        try:
            validate_topic_name(name)
        except InvalidTopicError as e:
            return out | error(ErrorCode.invalid_topic_exception, str(e))
        if topic.replication_factor not in (-1, 1):
            return out | error(
                ErrorCode.invalid_replication_factor,
                f"replication factor {topic.replication_factor} needs that many brokers; "
                f"tidings serve is one broker: use 1 (or -1)",
            )
        if topic.assignments:
            return out | error(
                ErrorCode.invalid_replica_assignment,
                "manual replica assignment is not supported: one broker holds every partition",
            )
        try:
            validate_partitions(partitions, self.engine.max_partitions)
        except InvalidPartitionsError as e:
            return out | error(ErrorCode.invalid_partitions, f"num_partitions: {e}")
        try:
            config = _config(TopicConfig(), [(c.name, c.value) for c in topic.configs])
        except ConfigurationError as e:
            return out | error(ErrorCode.invalid_config, str(e))
        spec = TopicSpec(name, partitions, config)
        if not validate_only:
            try:
                await self.engine.create_topic(spec)
            except TopicExistsError as e:
                return out | error(ErrorCode.topic_already_exists, str(e))
        return out | {
            "num_partitions": partitions,
            "replication_factor": 1,
            "configs": [
                {"name": k, "value": v, "config_source": source, "read_only": False}
                for k, v, source in _described(config)
            ],
        }

    async def delete_topics(self, request: Any, version: int) -> Fields:
        """Delete topics by name (or, from v6, by id)."""
        if version >= 6:
            by_id = {topic_id(s.name): s.name for s in await self.engine.list_topics()}
            wanted = [(t.name or by_id.get(t.topic_id)) for t in request.topics]
        else:
            wanted = list(request.topic_names)
        responses = []
        for name in wanted:
            out: Fields = {"name": name, "topic_id": topic_id(name) if name else None}
            refused = self._refusal(Operation.DELETE, TOPIC, name) if name else None
            if refused is not None:
                responses.append(out | refused)
                continue
            try:
                if name is None:
                    raise TopicNotFoundError("(unknown id)")
                await self.engine.delete_topic(name)
            except TopicNotFoundError as e:
                out |= error(ErrorCode.unknown_topic_or_partition, str(e))
            responses.append(out)
        return {"responses": responses}

    async def create_partitions(self, request: Any, version: int) -> Fields:
        """Grow topics to `count` partitions (never shrink, as in Kafka)."""
        results = []
        for topic in request.topics:
            out: Fields = {"name": topic.name}
            refused = self._refusal(Operation.ALTER, TOPIC, topic.name)
            if refused is not None:
                results.append(out | refused)
                continue
            try:
                if topic.assignments:
                    out |= error(
                        ErrorCode.invalid_replica_assignment,
                        "manual replica assignment is not supported: one broker holds every "
                        "partition; leave assignments out",
                    )
                elif request.validate_only:
                    spec = await self.engine.topic(topic.name)
                    validate_partitions(topic.count, self.engine.max_partitions)
                    if topic.count <= spec.partitions:
                        raise InvalidPartitionsError(
                            f"topic {topic.name!r} already has {spec.partitions} partitions"
                        )
                else:
                    await self.engine.add_partitions(topic.name, topic.count)
            except TopicNotFoundError as e:
                out |= error(ErrorCode.unknown_topic_or_partition, str(e))
            except (InvalidPartitionsError, ConfigurationError) as e:
                out |= error(ErrorCode.invalid_partitions, str(e))
            results.append(out)
        return {"results": results}

    async def describe_configs(self, request: Any, version: int) -> Fields:
        """Every setting of each topic asked for, with where its value comes from."""
        results = []
        for resource in request.resources:
            out: Fields = {
                "resource_type": resource.resource_type,
                "resource_name": resource.resource_name,
            }
            refused = self._refusal(
                Operation.DESCRIBE_CONFIGS, resource.resource_type, resource.resource_name
            )
            if refused is not None:
                results.append(out | refused | {"configs": []})
                continue
            if resource.resource_type == BROKER:
                results.append(out | {"configs": []})
                continue
            if resource.resource_type != TOPIC:
                results.append(out | _unsupported_resource(resource.resource_type))
                continue
            try:
                spec = await self.engine.topic(resource.resource_name)
            except TopicNotFoundError as e:
                results.append(out | error(ErrorCode.unknown_topic_or_partition, str(e)))
                continue
            keys = resource.configuration_keys
            configs = [
                {
                    "name": k,
                    "value": v,
                    "config_source": source,
                    "read_only": False,
                    "is_sensitive": False,
                    "config_type": CONFIG_TYPES.get(k, 2),
                    "synonyms": [{"name": k, "value": v, "source": source}]
                    if request.include_synonyms
                    else [],
                }
                for k, v, source in _described(spec.config)
                if keys is None or k in keys
            ]
            results.append(out | {"configs": configs})
        return {"results": results}

    async def alter_configs(self, request: Any, version: int) -> Fields:
        """Replace a topic's settings: those not given go back to their defaults."""
        return await self._alter(
            request,
            lambda _, changes: _config(TopicConfig(), ((c.name, c.value) for c in changes)),
        )

    async def incremental_alter_configs(self, request: Any, version: int) -> Fields:
        """Set, delete (back to default), append to or subtract from single settings."""
        return await self._alter(request, _incremental)

    async def _alter(
        self, request: Any, apply: Callable[[TopicConfig, Any], TopicConfig]
    ) -> Fields:
        responses = []
        for resource in request.resources:
            out: Fields = {
                "resource_type": resource.resource_type,
                "resource_name": resource.resource_name,
            }
            refused = self._refusal(
                Operation.ALTER_CONFIGS, resource.resource_type, resource.resource_name
            )
            if refused is not None:
                responses.append(out | refused)
                continue
            if resource.resource_type != TOPIC:
                responses.append(out | _unsupported_resource(resource.resource_type))
                continue
            name = resource.resource_name
            try:
                spec = await self.engine.topic(name)
                config = apply(spec.config, resource.configs)
                if not request.validate_only:
                    await self.engine.alter_topic(name, config)
            except TopicNotFoundError as e:
                out |= error(ErrorCode.unknown_topic_or_partition, str(e))
            except ConfigurationError as e:
                out |= error(ErrorCode.invalid_config, str(e))
            responses.append(out)
        return {"responses": responses}


def _config(base: TopicConfig, settings: Iterable[tuple[str, str | None]]) -> TopicConfig:
    return base.updated(**TopicConfig.changes_from_kafka(settings))


def _incremental(config: TopicConfig, changes: Any) -> TopicConfig:
    current = config.to_kafka_text()
    defaults = TopicConfig().to_kafka_text()
    settings: dict[str, str | None] = {}
    for c in changes:
        if c.name not in current:
            TopicConfig.changes_from_kafka([(c.name, c.value)])  # raises: names the known ones
        if c.config_operation == SET:
            settings[c.name] = c.value
        elif c.config_operation == DELETE:
            settings[c.name] = defaults[c.name]
        elif c.config_operation in (APPEND, SUBTRACT) and CONFIG_TYPES.get(c.name) == 7:
            items = [i for i in (settings.get(c.name) or current[c.name]).split(",") if i]
            given = [i.strip() for i in (c.value or "").split(",") if i.strip()]
            if c.config_operation == APPEND:
                items += [i for i in given if i not in items]
            else:
                items = [i for i in items if i not in given]
            settings[c.name] = ",".join(items)
        else:
            raise ConfigurationError(
                f"operation {c.config_operation} on {c.name!r} is not possible: append and "
                f"subtract work on list settings (cleanup.policy), set and delete on any"
            )
    return _config(config, settings.items())


def _described(config: TopicConfig) -> list[tuple[str, str, int]]:
    """Each setting by its Kafka name, its value, and whether it is the default."""
    defaults = TopicConfig().to_kafka_text()
    return [
        (k, v, DEFAULT_CONFIG if defaults[k] == v else DYNAMIC_TOPIC_CONFIG)
        for k, v in config.to_kafka_text().items()
    ]


def _unsupported_resource(resource_type: int) -> Fields:
    return error(
        ErrorCode.invalid_request,
        f"resource type {resource_type} has no settings here; topics (2) have",
    )
