"""What the broker answers to each Kafka API, over the embedded log.

One broker, node 0, leads every partition, so replication settings are refused above 1
and every partition's leader and replica set is this node. Record batches from
producers are stored as sent (see tidings.core.kafka_batch); a fetch returns them as
stored, and batches written through the Python API are rewritten as Kafka batches on
the way out.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.core import batch as codec
from tidings.core import kafka_batch
from tidings.core.batch import EncodedBatch
from tidings.core.errors import (
    DiskError,
    InvalidTopicError,
    StoreReadOnlyError,
    TopicNotFoundError,
)
from tidings.core.kafka_batch import BatchHeader, InvalidBatchError, InvalidRecordsError
from tidings.core.records import TopicPartition, TopicSpec, validate_topic_name
from tidings.engines.base import AppendResult, PartitionState
from tidings.engines.log.served import ProduceBatch, ServedLog
from tidings.server.acls import AclStore, Authorizer, Operation, ResourceType
from tidings.server.kafka.acl_apis import CLUSTER_DENIED, TOPIC_DENIED, AclApis
from tidings.server.kafka.admin import AdminApis, error, topic_id
from tidings.server.kafka.fetch import FetchApi, partition_states
from tidings.server.kafka.groups import GroupApis
from tidings.server.kafka.protocol import CALLER, UNKNOWN_CALLER
from tidings.server.kafka.refusals import TRANSACTIONS, RefusalLog, refusable, storage_refusal
from tidings.server.limits import MAX_REQUEST_BYTES

log = logging.getLogger("tidings.server.kafka")

NODE_ID = 0
CLUSTER_ID = "tidings"
API_VERSIONS = 18
"""ApiVersions: answered even in a version not served, so a client learns what is."""
"""The API key of ApiVersions, the one request answered even in a version not served."""
PRODUCER_WINDOW = 5
RECOVERY_FACTOR = 4
"""Stored batches read back per partition after a restart: the window of a few producers."""
"""Batches per producer and partition remembered for de-duplication, as in Kafka."""

SUPPORTED: dict[int, tuple[int, int]] = {
    0: (3, 9),  # Produce
    1: (4, 12),  # Fetch
    2: (1, 7),  # ListOffsets
    3: (1, 12),  # Metadata
    8: (2, 8),  # OffsetCommit
    9: (1, 7),  # OffsetFetch
    10: (0, 4),  # FindCoordinator
    11: (0, 7),  # JoinGroup
    12: (0, 4),  # Heartbeat
    13: (0, 5),  # LeaveGroup
    14: (0, 5),  # SyncGroup
    15: (0, 5),  # DescribeGroups
    16: (0, 4),  # ListGroups
    17: (1, 1),  # SaslHandshake (answered by the connection, see server.py)
    18: (0, 3),  # ApiVersions
    19: (2, 7),  # CreateTopics
    20: (1, 6),  # DeleteTopics
    22: (0, 4),  # InitProducerId
    29: (1, 3),  # DescribeAcls
    30: (1, 3),  # CreateAcls
    31: (1, 3),  # DeleteAcls
    32: (1, 4),  # DescribeConfigs
    36: (0, 2),  # SaslAuthenticate (answered by the connection)
    33: (0, 2),  # AlterConfigs
    37: (0, 3),  # CreatePartitions
    42: (0, 2),  # DeleteGroups
    44: (0, 1),  # IncrementalAlterConfigs
}
"""API key -> (lowest, highest) version served; what ApiVersions advertises."""

Fields = dict[str, Any]
Where = tuple[str, int]
Later = asyncio.Future[Fields | None]
"""An answer under way: the request is taken, its response is due when this completes."""
TRANSACTIONAL_REFUSED = ErrorCode.unsupported_for_message_format
"""The answer to a transactional or control batch (no producer may write one here), and to
it alone among the refusals of a batch: Kafka's answer to a batch its format cannot hold."""
PIPELINED = frozenset({0})
"""APIs (Produce) a connection takes while answers to its earlier requests are under way:
their handlers return a Later once their effects are ordered. Any other request waits
until every earlier answer is written, as Kafka answers one request at a time."""


@dataclass(frozen=True)
class BrokerSettings:
    """What a client of the Kafka listener sees of this broker."""

    host: str
    port: int
    auto_create_topics: bool = True
    num_partitions: int = 1
    """Partitions of a topic created automatically or with num_partitions -1."""
    max_request_bytes: int = MAX_REQUEST_BYTES
    """The largest request; a produced batch may not decompress to more either."""


@dataclass
class _Sequences:
    """One idempotent producer's recent batches on one partition."""

    epoch: int
    recent: deque[tuple[int, int, asyncio.Future[int]]] = field(
        default_factory=lambda: deque(maxlen=PRODUCER_WINDOW)
    )
    """(first sequence, last sequence, base offset) of the last batches stored or queued."""


class KafkaApis:
    """Request handlers by API key; each takes (request body, version), returns fields."""

    def __init__(
        self,
        engine: ServedLog,
        settings: BrokerSettings,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.acls = AclApis(authorizer or Authorizer(AclStore(None)))
        self.refusals = RefusalLog()
        """Every refusal of an API or a feature, logged once per client and API."""
        allows = self.acls.allows
        self._sequences: dict[tuple[int, str, int], _Sequences] = {}
        self._recovered: set[tuple[str, int]] = set()
        """Partitions whose producers' state was read back from their stored tail."""
        self.fetches = FetchApi(engine, allows)
        groups = GroupApis(
            engine, lambda: (self.settings.host, self.settings.port), self.acls, self.refusals
        )
        admin = AdminApis(engine, lambda: self.settings.num_partitions, self.acls)
        self.handlers: dict[int, Callable[[Any, int], Awaitable[Fields | Later]]] = {
            0: self.produce,
            1: self.fetches.fetch,
            2: self.list_offsets,
            3: self.metadata,
            8: groups.offset_commit,
            9: groups.offset_fetch,
            10: groups.find_coordinator,
            11: groups.join_group,
            12: groups.heartbeat,
            13: groups.leave_group,
            14: groups.sync_group,
            15: groups.describe_groups,
            16: groups.list_groups,
            42: groups.delete_groups,
            18: self.api_versions,
            19: admin.create_topics,
            20: admin.delete_topics,
            32: admin.describe_configs,
            33: admin.alter_configs,
            37: admin.create_partitions,
            44: admin.incremental_alter_configs,
            22: self.init_producer_id,
            29: self.acls.describe_acls,
            30: self.acls.create_acls,
            31: self.acls.delete_acls,
        }

    async def answer(self, api_key: int, request: Any, version: int) -> Fields | Later | None:
        """The handler's answer to a request; a refusal if the store cannot take it."""
        try:
            return await self.handlers[api_key](request, version)
        except (DiskError, StoreReadOnlyError) as e:
            if not refusable(api_key, version):
                raise
            # The disk, not the request: the client may retry on this connection.
            log.warning("refused a %s v%d request: %s", type(request).__name__, version, e)
            return storage_refusal(api_key, request, version, e)

    # -- cluster -------------------------------------------------------------------------

    async def api_versions(self, request: Any, version: int) -> Fields:
        """The versions of every API served."""
        return {"error_code": ErrorCode.none, "api_keys": api_version_list()}

    async def metadata(self, request: Any, version: int) -> Fields:
        """This broker, and the topics asked for (all when none are named)."""
        specs = {s.name: s for s in await self.engine.list_topics()}
        allows = self.acls.allows
        if request.topics is None:  # every topic the caller may see, as Kafka answers
            names = [n for n in sorted(specs) if allows(Operation.DESCRIBE, ResourceType.TOPIC, n)]
        else:
            by_id = {topic_id(n): n for n in specs}
            names = [
                t.name or by_id.get(getattr(t, "topic_id", None) or uuid.UUID(int=0), "")
                for t in request.topics
            ]
        allow = getattr(request, "allow_auto_topic_creation", True)
        topics = []
        for name in names:
            spec = specs.get(name)
            error = ErrorCode.none
            if not allows(Operation.DESCRIBE, ResourceType.TOPIC, name):
                spec, error = None, TOPIC_DENIED
            elif spec is None and name and allow and self._may_auto_create(name):
                spec, error = await self._auto_create(name)
            elif spec is None:
                error = ErrorCode.unknown_topic_or_partition
            topics.append(_topic_metadata(name, spec, error))
        return {
            "brokers": [
                {"node_id": NODE_ID, "host": self.settings.host, "port": self.settings.port}
            ],
            "cluster_id": CLUSTER_ID,
            "controller_id": NODE_ID,
            "topics": topics,
        }

    def _may_auto_create(self, name: str) -> bool:
        """Whether a topic may be created on first use, by this caller (Create on the
        cluster or the topic, as in Kafka)."""
        return self.settings.auto_create_topics and (
            self.acls.allows_on_cluster(Operation.CREATE)
            or self.acls.allows(Operation.CREATE, ResourceType.TOPIC, name)
        )

    async def _auto_create(self, name: str) -> tuple[TopicSpec | None, ErrorCode]:
        try:
            validate_topic_name(name)
        except InvalidTopicError:
            return None, ErrorCode.invalid_topic_exception
        spec = TopicSpec(name, self.settings.num_partitions)
        try:
            await self.engine.create_topic(spec, exist_ok=True)
        except (DiskError, StoreReadOnlyError) as e:
            # Metadata has no answer to refuse whole: this topic's entry says why.
            log.warning("could not create topic %r on first use: %s", name, e)
            return None, ErrorCode.kafka_storage_error
        log.info("created topic %r (%d partitions) on first use", name, spec.partitions)
        return await self.engine.topic(name), ErrorCode.none

    # -- producing -----------------------------------------------------------------------

    async def init_producer_id(self, request: Any, version: int) -> Fields:
        """A producer id for an idempotent producer; a transactional one is refused."""
        if not (
            self.acls.allows_on_cluster(Operation.IDEMPOTENT_WRITE)
            or self.acls.allows_any(Operation.WRITE, ResourceType.TOPIC)
        ):
            return {"error_code": CLUSTER_DENIED, "producer_id": -1, "producer_epoch": -1}
        if request.transactional_id is not None:
            # Kafka's answer to a feature it does not offer (as KafkaApis answers
            # ConsumerGroupHeartbeat while KIP-848 is disabled).
            refused = ErrorCode.unsupported_version
            self.refusals.refused(
                CALLER.get(UNKNOWN_CALLER), "InitProducerId", TRANSACTIONS, refused
            )
            return {"error_code": refused, "producer_id": -1, "producer_epoch": -1}
        if version >= 3 and request.producer_id >= 0:  # a producer bumping its epoch
            return {
                "producer_id": request.producer_id,
                "producer_epoch": request.producer_epoch + 1,
            }
        return {"producer_id": random.getrandbits(62), "producer_epoch": 0}

    async def produce(self, request: Any, version: int) -> Later:
        """Queue each partition's batches to be stored as sent; the answer, due once durable."""
        # The batches are queued before this returns (none answered for acks=0), so the
        # connection's next produce can be taken at once and share their commit.
        results: dict[Where, Fields | asyncio.Future[int]] = {}
        pending: list[tuple[Where, list[tuple[BatchHeader, bytes]]]] = []
        for topic in request.topic_data:
            if not self.acls.allows(Operation.WRITE, ResourceType.TOPIC, topic.name):
                for part in topic.partition_data:
                    results[(topic.name, part.index)] = error(
                        TOPIC_DENIED, f"writing to topic {topic.name!r} is not allowed"
                    )
                continue
            spec = self.engine.cached_topic(topic.name) or await self._maybe_topic(topic.name)
            for part in topic.partition_data:
                where = (topic.name, part.index)
                if spec is None or not 0 <= part.index < spec.partitions:
                    results[where] = error(
                        ErrorCode.unknown_topic_or_partition,
                        f"topic {topic.name!r} partition {part.index} does not exist",
                    )
                    continue
                checked = _check_batches(
                    part.records, spec, version, self.settings.max_request_bytes
                )
                if isinstance(checked, dict):
                    if checked["error_code"] == TRANSACTIONAL_REFUSED:
                        caller = CALLER.get(UNKNOWN_CALLER)
                        self.refusals.refused(
                            caller, "Produce", TRANSACTIONS, TRANSACTIONAL_REFUSED
                        )
                    results[where] = checked
                else:
                    pending.append((where, checked))
        to_store: list[tuple[Where, BatchHeader, bytes]] = []
        for where, batches in pending:
            if batches[0][0].producer_id >= 0 and where not in self._recovered:
                await self._recover(where)
            dedup = self._deduplicate(where, batches)
            if dedup is not None:
                results[where] = dedup
            else:
                to_store += [(where, h, data) for h, data in batches]
        loop = asyncio.get_running_loop()
        offsets = [loop.create_future() for _ in to_store]
        for (where, header, _), offset in zip(to_store, offsets, strict=True):
            self._remember(where, header, offset)
        # Tasks start in the order they are made: this request's batches are queued for
        # the store before those of any request the connection takes after it.
        return asyncio.ensure_future(self._stored(request, results, to_store, offsets))

    async def _stored(
        self,
        request: Any,
        results: dict[Where, Fields | asyncio.Future[int]],
        to_store: list[tuple[Where, BatchHeader, bytes]],
        offsets: list[asyncio.Future[int]],
    ) -> Fields | None:
        """Store the batches; the answer once they are durable."""
        if to_store:
            try:
                stored = await self._append(to_store)
            except BaseException as e:
                for (where, header, _), offset in zip(to_store, offsets, strict=True):
                    self._forget(where, header, offset)
                    offset.cancel()  # a retry waiting on it fails too: its client sends it again
                if not isinstance(e, DiskError | StoreReadOnlyError):
                    raise
                # The disk, not the request: the client may retry on this connection.
                log.warning("refused a produce request: %s", e)
                refused = error(ErrorCode.kafka_storage_error, str(e))
                results.update((where, refused) for where, _, _ in to_store)
            else:
                for (where, _, _), result, offset in zip(to_store, stored, offsets, strict=True):
                    offset.set_result(result.base_offset)
                    results.setdefault(where, {"base_offset": result.base_offset})
        if request.acks == 0:
            return None
        answers = {
            where: {"base_offset": await r} if isinstance(r, asyncio.Future) else r
            for where, r in results.items()
        }
        return {"responses": _by_topic(answers, "partition_responses", "index", request.topic_data)}

    async def _maybe_topic(self, name: str) -> TopicSpec | None:
        try:
            return await self.engine.topic(name)
        except TopicNotFoundError:
            return None

    async def _append(
        self, batches: Sequence[tuple[Where, BatchHeader, bytes]]
    ) -> list[AppendResult]:
        return await self.engine.append_encoded(
            [
                ProduceBatch(
                    topic,
                    partition,
                    EncodedBatch(
                        data,
                        h.records,
                        h.last_offset_delta,
                        h.base_timestamp,
                        h.max_timestamp,
                    ),
                )
                for (topic, partition), h, data in batches
            ]
        )

    def _deduplicate(
        self, where: Where, batches: list[tuple[BatchHeader, bytes]]
    ) -> Fields | asyncio.Future[int] | None:
        """None to store the batches; else the answer (an error) or a duplicate's offset."""
        first = batches[0][0]
        if first.producer_id < 0:
            return None
        state = self._sequences.get((first.producer_id, *where))
        if state is None or first.producer_epoch > state.epoch:
            if first.base_sequence != 0 and state is not None:
                return error(ErrorCode.out_of_order_sequence_number, "a new epoch starts at 0")
            return None
        if first.producer_epoch < state.epoch:
            return error(ErrorCode.invalid_producer_epoch, "a newer producer epoch exists")
        for low, _, base in state.recent:
            if first.base_sequence == low:
                return base  # a retry of a batch stored or queued: not stored again
        last = state.recent[-1][1] if state.recent else -1
        if first.base_sequence != (last + 1) & 0x7FFFFFFF:
            return error(
                ErrorCode.out_of_order_sequence_number,
                f"expected sequence {last + 1}, got {first.base_sequence}",
            )
        return None

    async def _recover(self, where: tuple[str, int]) -> None:
        """Rebuild idempotent producers' recent batches on a partition from its stored tail
        (as Kafka does after a restart): a retry that comes after a restart is still
        recognised."""
        topic, partition = where
        index = await self.engine.batch_index(topic, partition)
        tail = index[-PRODUCER_WINDOW * RECOVERY_FACTOR :]
        if tail:
            stored = await self.engine.read_batches(topic, partition, tail[0].base_offset, 1 << 62)
            loop = asyncio.get_running_loop()
            for b in stored:
                if not b.data.startswith(codec.MAGIC):  # a Kafka batch: it names its producer
                    offset: asyncio.Future[int] = loop.create_future()
                    offset.set_result(b.base_offset)
                    self._remember(where, kafka_batch.read_header(b.data), offset)
        self._recovered.add(where)

    def _remember(self, where: Where, header: BatchHeader, offset: asyncio.Future[int]) -> None:
        """Note a producer's batch as stored at `offset` (known once its append commits)."""
        if header.producer_id < 0:
            return
        key = (header.producer_id, *where)
        state = self._sequences.get(key)
        if state is None or header.producer_epoch > state.epoch:
            state = self._sequences[key] = _Sequences(header.producer_epoch)
        last = (header.base_sequence + header.records - 1) & 0x7FFFFFFF
        state.recent.append((header.base_sequence, last, offset))

    def _forget(self, where: Where, header: BatchHeader, offset: asyncio.Future[int]) -> None:
        """Drop a batch noted by _remember whose append failed: a retry stores it anew."""
        state = self._sequences.get((header.producer_id, *where))
        if state is not None:
            state.recent = deque(
                (e for e in state.recent if e[2] is not offset), maxlen=PRODUCER_WINDOW
            )

    async def list_offsets(self, request: Any, version: int) -> Fields:
        """Earliest (-2), latest (-1), max timestamp (-3) or first at a time, per partition."""
        topics = []
        for topic in request.topics:
            described = self.acls.allows(Operation.DESCRIBE, ResourceType.TOPIC, topic.name)
            states = await partition_states(self.engine, topic.name) if described else None
            partitions = []
            for part in topic.partitions:
                out: Fields = {"partition_index": part.partition_index}
                state = states.get(part.partition_index) if states is not None else None
                if not described:
                    partitions.append(out | {"error_code": TOPIC_DENIED})
                    continue
                if state is None:
                    partitions.append(out | {"error_code": ErrorCode.unknown_topic_or_partition})
                    continue
                offset, timestamp = await self._offset_at(topic.name, state, part.timestamp)
                partitions.append(out | {"offset": offset, "timestamp": timestamp})
            topics.append({"name": topic.name, "partitions": partitions})
        return {"topics": topics}

    async def _offset_at(self, topic: str, state: PartitionState, ts: int) -> tuple[int, int]:
        if ts == -2:
            return state.start_offset, -1
        if ts == -1:
            return state.end_offset, -1
        tp = TopicPartition(topic, state.partition)
        if ts == -3:
            index = await self.engine.batch_index(topic, state.partition)
            if not index:
                return -1, -1
            ts = max(m.max_timestamp for m in index)
        record = await self.engine.record_at_time(tp, ts)
        return (-1, -1) if record is None else (record.offset, record.timestamp)


def api_version_list() -> list[Fields]:
    """ApiVersions' list: every API key with its lowest and highest version served."""
    return [
        {"api_key": key, "min_version": low, "max_version": high}
        for key, (low, high) in sorted(SUPPORTED.items())
    ]


def _topic_metadata(name: str, spec: TopicSpec | None, error: ErrorCode) -> Fields:
    partitions = (
        []
        if spec is None
        else [
            {
                "partition_index": p,
                "leader_id": NODE_ID,
                "leader_epoch": 0,
                "replica_nodes": (NODE_ID,),
                "isr_nodes": (NODE_ID,),
            }
            for p in range(spec.partitions)
        ]
    )
    return {
        "error_code": error,
        "name": name,
        "topic_id": topic_id(name) if spec else uuid.UUID(int=0),
        "partitions": partitions,
    }


def _check_batches(
    records: bytes | None, spec: TopicSpec, version: int, max_expanded: int
) -> list[tuple[BatchHeader, bytes]] | Fields:
    """The partition's batches, checked; or the error that refuses them all.

    A compressed batch may not expand past `max_expanded` bytes: what a request could not
    carry uncompressed is not taken compressed either.
    """
    if not records:
        return error(
            ErrorCode.corrupt_message, "a produce request for a partition carried no records"
        )
    try:
        batches = list(kafka_batch.split(records))
    except InvalidBatchError as e:
        return error(ErrorCode.corrupt_message, str(e))
    for header, data in batches:
        if header.records < 1 or header.last_offset_delta != header.records - 1:
            return error(ErrorCode.corrupt_message, "a record batch's offsets are not dense")
        if header.control or header.attributes & kafka_batch.TRANSACTIONAL:
            return error(TRANSACTIONAL_REFUSED, f"a transactional batch is refused: {TRANSACTIONS}")
        if len(data) > spec.config.max_message_bytes:
            return error(
                ErrorCode.message_too_large,
                f"a batch of {len(data)} bytes is over the topic's max.message.bytes "
                f"({spec.config.max_message_bytes})",
            )
        # As Kafka's broker: records that do not parse are never stored, or every reader
        # of the partition would stop at them.
        try:
            kafka_batch.check_records(header, data, max_expanded)
        except InvalidRecordsError as e:
            # INVALID_RECORD came with Produce v8 (KIP-467); older clients know CORRUPT_MESSAGE
            code = ErrorCode.invalid_record if version >= 8 else ErrorCode.corrupt_message
            return error(code, str(e))
        except kafka_batch.BatchTooLargeError as e:
            return error(ErrorCode.message_too_large, str(e))
        except InvalidBatchError as e:
            return error(ErrorCode.corrupt_message, str(e))
    return batches


def _by_topic(
    results: Mapping[tuple[str, int], Fields], key: str, index: str, asked: Sequence[Any]
) -> list[Fields]:
    """Per-partition results grouped by topic, in the order of the request."""
    return [
        {
            "name": topic.name,
            key: [
                {index: part.index} | results[(topic.name, part.index)]
                for part in topic.partition_data
            ],
        }
        for topic in asked
    ]
