"""Kafka's classic consumer-group APIs over the log's own groups.

A group joined through the Kafka protocol is the same group the Python API joins: one
state per group in the store, committed offsets shared, members of both kinds side by
side. The group assigns partitions on the server (see engines.groups.coordinator); a Kafka
client's JoinGroup and SyncGroup are how it learns its share, its heartbeat is how it
learns to rejoin.
"""

from __future__ import annotations

import base64
import io
import logging
import struct
import uuid
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from kio.index import load_entity_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from tidings.core.errors import GroupError, GroupNotEmptyError, GroupNotFoundError
from tidings.core.records import now_ms
from tidings.engines.groups import coordinator
from tidings.engines.groups.assignors import Partition
from tidings.engines.groups.coordinator import GroupState, MemberState, UnknownMemberError
from tidings.engines.log.served import ServedLog
from tidings.server.acls import Operation, ResourceType
from tidings.server.kafka import lengths
from tidings.server.kafka.acl_apis import GROUP_DENIED, TOPIC_DENIED, AclApis
from tidings.server.kafka.protocol import CALLER, UNKNOWN_CALLER, build
from tidings.server.kafka.refusals import RefusalLog

log = logging.getLogger("tidings.server.kafka")

R = TypeVar("R")
Fields = dict[str, Any]

PROTOCOL_TYPE = "consumer"
"""Groups of Kafka consumers; Kafka Connect and other group protocols are not served."""
VERSION = struct.Struct(">h")
GROUP, TOPIC = ResourceType.GROUP, ResourceType.TOPIC
TRANSACTION_KEY = 1
"""FindCoordinator's key type of a transactional id (0: a group)."""


class GroupApis:
    """FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, offsets, admin."""

    def __init__(
        self,
        engine: ServedLog,
        coordinator_address: Callable[[], tuple[str, int]],
        acls: AclApis,
        refusals: RefusalLog,
    ) -> None:
        self.engine = engine
        self._address = coordinator_address
        self._allows = acls.allows
        self._acls = acls
        self._refusals = refusals

    async def _update(self, group: str, change: Callable[[GroupState], R], durable: bool) -> R:
        return await self.engine.update_group(group, change, durable)

    async def _counts(self) -> dict[str, int]:
        return {
            name: spec.partitions for name, spec in (await self.engine.refresh_topics()).items()
        }

    # -- finding the coordinator ---------------------------------------------------------

    async def find_coordinator(self, request: Any, version: int) -> Fields:
        """This broker coordinates every group."""
        host, port = self._address()
        kind = getattr(request, "key_type", 0)
        resource = ResourceType.TRANSACTIONAL_ID if kind == TRANSACTION_KEY else GROUP
        denied = (
            ErrorCode.transactional_id_authorization_failed
            if kind == TRANSACTION_KEY
            else GROUP_DENIED
        )

        def answer(key: str) -> Fields:
            if not self._allows(Operation.DESCRIBE, resource, key):
                return {"error_code": denied, "node_id": -1, "host": "", "port": -1}
            return {"node_id": 0, "host": host, "port": port}

        if version >= 4:
            return {"coordinators": [{"key": k} | answer(k) for k in request.coordinator_keys]}
        return answer(request.key)

    # -- membership ----------------------------------------------------------------------

    async def join_group(self, request: Any, version: int) -> Fields:
        """Add or refresh a member and tell it the group's generation and assignor."""
        group = request.group_id
        if not self._allows(Operation.READ, GROUP, group):
            return _join_error(GROUP_DENIED, f"joining group {group!r} is not allowed")
        if request.protocol_type != PROTOCOL_TYPE:
            reason = (
                f"group protocol type {request.protocol_type!r} is not served; "
                f"tidings serves consumer groups ({PROTOCOL_TYPE!r})"
            )
            refused = ErrorCode.inconsistent_group_protocol
            self._refusals.refused(CALLER.get(UNKNOWN_CALLER), "JoinGroup", reason, refused)
            return _join_error(refused, reason)
        protocols = {p.name: base64.b64encode(p.metadata).decode() for p in request.protocols}
        try:
            subscription = _subscription(request.protocols[0].metadata)
        except (IndexError, ValueError) as e:
            return _join_error(ErrorCode.inconsistent_group_protocol, str(e))
        caller = CALLER.get(UNKNOWN_CALLER)
        member_id = request.member_id or f"{caller.client_id}-{uuid.uuid4()}"
        member = MemberState(
            member_id=member_id,
            client_id=caller.client_id,
            client_host=caller.host,
            topics=sorted(subscription.topics),
            session_timeout_ms=int(request.session_timeout.total_seconds() * 1000),
            heartbeat_ms=now_ms(),
            protocols=protocols,
        )
        owned = [
            (tp.topic, p)
            for tp in getattr(subscription, "owned_partitions", ())
            for p in tp.partitions
        ]
        counts = await self._counts()

        def change(state: GroupState) -> tuple[str, int, str, list[Fields]]:
            if request.member_id and request.member_id not in state.members:
                raise UnknownMemberError(group, f"member {request.member_id} is not in {group!r}")
            strategy = coordinator.kafka_join(state, group, member, owned, counts)
            kafka_members = [m for m in state.members.values() if m.protocols]
            leader = kafka_members[0].member_id
            members = [
                {"member_id": m.member_id, "metadata": base64.b64decode(m.protocols[strategy])}
                for m in kafka_members
                if strategy in m.protocols
            ]
            return strategy, state.generation, leader, members if leader == member_id else []

        try:
            strategy, generation, leader, members = await self._update(group, change, False)
        except UnknownMemberError as e:
            return _join_error(ErrorCode.unknown_member_id, str(e))
        except GroupError as e:
            return _join_error(ErrorCode.inconsistent_group_protocol, str(e))
        return {
            "generation_id": generation,
            "protocol_type": PROTOCOL_TYPE,
            "protocol_name": strategy,
            "leader": leader,
            "member_id": member_id,
            "members": members,
        }

    async def sync_group(self, request: Any, version: int) -> Fields:
        """The member's partitions, as the group assigns them (a leader's plan is not used)."""
        group = request.group_id
        if not self._allows(Operation.READ, GROUP, group):
            return {"error_code": GROUP_DENIED, "assignment": b""}
        counts = await self._counts()
        change = partial(
            coordinator.kafka_assignment,
            group=group,
            member_id=request.member_id,
            now_ms=now_ms(),
            partitions=counts,
        )
        try:
            assigned = await self._update(group, change, False)
        except UnknownMemberError as e:
            log.info("SyncGroup refused: %s", e)
            return {"error_code": ErrorCode.unknown_member_id, "assignment": b""}
        out: Fields = {"assignment": encode_assignment(assigned)}
        if version >= 5:
            out |= {"protocol_type": PROTOCOL_TYPE, "protocol_name": request.protocol_name}
        return out

    async def heartbeat(self, request: Any, version: int) -> Fields:
        """Keep the member alive; REBALANCE_IN_PROGRESS when it must rejoin."""
        if not self._allows(Operation.READ, GROUP, request.group_id):
            return {"error_code": GROUP_DENIED}
        counts = await self._counts()
        try:
            rejoin = await self._update(
                request.group_id,
                lambda s: coordinator.kafka_heartbeat(
                    s, request.group_id, request.member_id, now_ms(), counts
                ),
                False,
            )
        except UnknownMemberError:
            return {"error_code": ErrorCode.unknown_member_id}
        return {"error_code": ErrorCode.rebalance_in_progress if rejoin else ErrorCode.none}

    async def leave_group(self, request: Any, version: int) -> Fields:
        """Remove members; the group rebalances what they held."""
        if not self._allows(Operation.READ, GROUP, request.group_id):
            return {"error_code": GROUP_DENIED, "members": []}
        ids = [m.member_id for m in request.members] if version >= 3 else [request.member_id]
        counts = await self._counts()

        def change(state: GroupState) -> list[bool]:
            present = [mid in state.members for mid in ids]
            for mid in ids:
                coordinator.leave(state, mid, counts)
            return present

        present = await self._update(request.group_id, change, False)
        if version < 3:
            return {"error_code": ErrorCode.none if present[0] else ErrorCode.unknown_member_id}
        return {
            "members": [
                {
                    "member_id": mid,
                    "error_code": ErrorCode.none if here else ErrorCode.unknown_member_id,
                }
                for mid, here in zip(ids, present, strict=True)
            ]
        }

    # -- offsets -------------------------------------------------------------------------

    async def offset_commit(self, request: Any, version: int) -> Fields:
        """Commit offsets for a member that owns the partitions (or for an empty group)."""
        group = request.group_id
        member_id = request.member_id or None
        offsets: dict[Partition, int] = {
            (t.name, p.partition_index): p.committed_offset
            for t in request.topics
            for p in t.partitions
        }
        counts = await self._counts()
        unknown = {tp for tp in offsets if not 0 <= tp[1] < counts.get(tp[0], 0)}
        unreadable = {
            t.name for t in request.topics if not self._allows(Operation.READ, TOPIC, t.name)
        }
        refused = {tp: TOPIC_DENIED for tp in offsets if tp[0] in unreadable}
        if not self._allows(Operation.READ, GROUP, group):
            refused = dict.fromkeys(offsets, GROUP_DENIED)
        refused |= {tp: ErrorCode.unknown_topic_or_partition for tp in unknown if tp not in refused}
        # Kafka's int64 allows a negative offset; no reader could resume from one.
        refused |= {
            tp: ErrorCode.invalid_commit_offset_size
            for tp, o in offsets.items()
            if o < 0 and tp not in refused
        }

        def change(state: GroupState) -> ErrorCode:
            known = {tp: o for tp, o in offsets.items() if tp not in refused}
            refusal = coordinator.commit_refusal(state, group, member_id, known)
            if refusal is not None:
                return (
                    ErrorCode.unknown_member_id
                    if refusal.unknown_member
                    else ErrorCode.illegal_generation
                )
            coordinator.commit(state, group, member_id, known)
            return ErrorCode.none

        code: ErrorCode | None = None  # every partition refused: nothing to commit
        if not group:
            code = ErrorCode.invalid_group_id
        elif len(refused) < len(offsets):
            code = await self._update(group, change, True)
        return {
            "topics": [
                {
                    "name": t.name,
                    "partitions": [
                        {
                            "partition_index": p.partition_index,
                            "error_code": refused.get((t.name, p.partition_index), code),
                        }
                        for p in t.partitions
                    ],
                }
                for t in request.topics
            ]
        }

    async def offset_fetch(self, request: Any, version: int) -> Fields:
        """Committed offsets (-1 where none), of the partitions asked or of every one."""
        if not self._allows(Operation.DESCRIBE, GROUP, request.group_id):
            if version >= 2:
                return {"error_code": GROUP_DENIED, "topics": []}
            return {"topics": _each_partition(request.topics or (), GROUP_DENIED)}
        state = await self._update(request.group_id, lambda s: s, False)
        if request.topics is None:  # those of the topics the caller may see
            wanted = {
                t: sorted(int(p) for p in parts)
                for t, parts in state.offsets.items()
                if self._allows(Operation.DESCRIBE, TOPIC, t)
            }
            hidden = []
        else:
            wanted = {
                t.name: list(t.partition_indexes)
                for t in request.topics
                if self._allows(Operation.DESCRIBE, TOPIC, t.name)
            }
            hidden = [t for t in request.topics if t.name not in wanted]
        return {
            "topics": [
                {
                    "name": topic,
                    "partitions": [
                        {
                            "partition_index": p,
                            "committed_offset": _committed(state, topic, p),
                            "committed_leader_epoch": -1,
                            "metadata": "",
                        }
                        for p in partitions
                    ],
                }
                for topic, partitions in wanted.items()
            ]
            + _each_partition(hidden, TOPIC_DENIED)
        }

    # -- admin ---------------------------------------------------------------------------

    async def list_groups(self, request: Any, version: int) -> Fields:
        """Every group with state (filtered by state from v4)."""
        wanted = {s.lower() for s in getattr(request, "states_filter", ())}
        every = self._acls.allows_on_cluster(Operation.DESCRIBE)
        groups = []
        for name in await self.engine.list_groups():
            if not (every or self._allows(Operation.DESCRIBE, GROUP, name)):
                continue
            state = (await self.engine.describe_group(name)).state
            if not wanted or state.lower() in wanted:
                groups.append(
                    {"group_id": name, "protocol_type": PROTOCOL_TYPE, "group_state": state}
                )
        return {"groups": groups}

    async def describe_groups(self, request: Any, version: int) -> Fields:
        """Members with their subscription and assignment, per group."""
        out = []
        for name in request.groups:
            if not self._allows(Operation.DESCRIBE, GROUP, name):
                out.append({"group_id": name, "error_code": GROUP_DENIED, "protocol_type": ""})
                continue
            try:
                description = await self.engine.describe_group(name)
            except GroupNotFoundError:
                out.append({"group_id": name, "group_state": "Dead", "protocol_type": ""})
                continue
            state = await self._update(name, lambda s: s, False)
            out.append(
                {
                    "group_id": name,
                    "group_state": description.state,
                    "protocol_type": PROTOCOL_TYPE,
                    "protocol_data": state.strategy or "",
                    "members": [_member(m, state.strategy) for m in state.members.values()],
                }
            )
        return {"groups": out}

    async def delete_groups(self, request: Any, version: int) -> Fields:
        """Delete empty groups with their committed offsets."""
        results = []
        for name in request.groups_names:
            code = ErrorCode.none
            if not self._allows(Operation.DELETE, GROUP, name):
                results.append({"group_id": name, "error_code": GROUP_DENIED})
                continue
            try:
                await self.engine.delete_group(name)
            except GroupNotEmptyError:
                code = ErrorCode.non_empty_group
            except GroupNotFoundError:
                code = ErrorCode.group_id_not_found
            results.append({"group_id": name, "error_code": code})
        return {"results": results}


def encode_assignment(partitions: Sequence[Partition]) -> bytes:
    """A ConsumerProtocolAssignment (v0) of `partitions`."""
    schema = load_entity_schema("consumer_protocol_assignment", 0, EntityType.data)
    by_topic: dict[str, list[int]] = {}
    for topic, p in sorted(partitions):
        by_topic.setdefault(topic, []).append(p)
    entity = build(
        schema,
        {"assigned_partitions": [{"topic": t, "partitions": ps} for t, ps in by_topic.items()]},
    )
    out = io.BytesIO()
    out.write(VERSION.pack(0))
    entity_writer(schema)(out, entity)
    return out.getvalue()


def _subscription(metadata: bytes) -> Any:
    """A member's ConsumerProtocolSubscription (read with the newest schema known)."""
    if len(metadata) < VERSION.size:
        raise ValueError("a member's subscription metadata is empty")
    (version,) = VERSION.unpack_from(metadata)
    schema = load_entity_schema(
        "consumer_protocol_subscription", min(max(version, 0), 3), EntityType.data
    )
    try:
        lengths.check_entity(schema, metadata, VERSION.size)  # kio aborts on a huge length
        subscription, _ = entity_reader(schema)(metadata, VERSION.size)
    except Exception as e:
        raise ValueError(f"a member's subscription metadata is malformed: {e}") from e
    return subscription


def _each_partition(topics: Sequence[Any], code: ErrorCode) -> list[Fields]:
    """OffsetFetch's answer for topics refused whole: each partition with the error."""
    return [
        {
            "name": t.name,
            "partitions": [
                {"partition_index": p, "committed_offset": -1, "error_code": code}
                for p in t.partition_indexes
            ],
        }
        for t in topics
    ]


def _committed(state: GroupState, topic: str, partition: int) -> int:
    offset = state.committed(topic, partition)
    return -1 if offset is None else offset


def _member(m: MemberState, strategy: str | None) -> Fields:
    metadata = m.protocols.get(strategy or "")
    return {
        "member_id": m.member_id,
        "client_id": m.client_id,
        "client_host": m.client_host,
        "member_metadata": base64.b64decode(metadata) if metadata else b"",
        "member_assignment": encode_assignment(m.owned),
    }


def _join_error(code: ErrorCode, message: str) -> Fields:
    """JoinGroup has no error message field: the reason goes to the broker's log."""
    log.warning("JoinGroup refused (%s): %s", code.name, message)
    return {"error_code": code, "generation_id": -1, "member_id": "", "leader": ""}
