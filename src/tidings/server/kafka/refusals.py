"""Answers that refuse a request, and the log that names each refusal: the store could
not take the request (its disk is full or failing, or it is read-only), or the broker does
not serve what it asks for.

When the store is at fault, not the request, the request is refused and the connection
stays open: a client's retry succeeds once space is freed. The refusal is made here, in
one place, for every API (as Kafka's own requests build their error responses): every
error code of the answer carries it, every error message says why and what to do, and the
answer names the resources the request named.

Group APIs answer COORDINATOR_NOT_AVAILABLE, as Kafka's group coordinator does when its
log cannot take a write: clients look the coordinator up again and retry. (Kafka says
NOT_COORDINATOR when the log directory itself is offline, for another broker takes the
group over; one broker has no other to send the client to.) Every other API answers
KAFKA_STORAGE_ERROR, Kafka's error for a log directory that cannot be written.
Produce refuses its partitions itself, once their append fails (see apis.py).

A request for an API, or a version of one, that the broker does not serve is refused as
Kafka refuses a feature it has switched off (its KafkaApis answers ConsumerGroupHeartbeat
and ShareGroupHeartbeat this way while their protocols are disabled): UNSUPPORTED_VERSION
in the answer's error code, and the connection stays open. An answer with no error code
of its own cannot carry the refusal; the connection is then closed, as Kafka closes it for
an API key or version it does not know.

Every refusal of an API or a feature is logged by RefusalLog: one warning per client id,
client address, API and reason, so a client that retries every half second does not flood
the log, and one that rotates its client id fills a bounded set, not memory.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import OrderedDict
from collections.abc import Callable
from functools import cache
from typing import Any

from kio.index import KioIndexError, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map

from tidings.core.errors import StoreError
from tidings.server.kafka.protocol import Caller

log = logging.getLogger("tidings.server.kafka")

Fields = dict[str, Any]
Refusal = dict[str, Any]
"""An error code with its message, as the answer's fields take them."""

GROUP_APIS = frozenset({8, 9, 11, 12, 13, 14, 15, 16, 42})
"""OffsetCommit, OffsetFetch, JoinGroup, Heartbeat, LeaveGroup, SyncGroup,
DescribeGroups, ListGroups, DeleteGroups: answered by the group coordinator."""

TRANSACTIONS = "transactions are not supported by this broker yet"
KIP_848 = (
    "the consumer group protocol of KIP-848 is not supported by this broker; "
    "use the classic protocol (group.protocol=classic)"
)
SHARE_GROUPS = "share groups (KIP-932) are not supported by this broker's Kafka listener yet"
FEATURES = {
    **dict.fromkeys((24, 25, 26, 27, 28, 65, 66), TRANSACTIONS),
    **dict.fromkeys((68, 69), KIP_848),
    **dict.fromkeys((76, 77, 78, 79, 90, 91, 92), SHARE_GROUPS),
}
"""The feature an API not served belongs to: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
WriteTxnMarkers, TxnOffsetCommit, DescribeTransactions, ListTransactions;
ConsumerGroupHeartbeat and ConsumerGroupDescribe; the share-group APIs."""
RefusalKey = tuple[str, str, str, str]
"""Client id, client address, API and reason: what makes a refusal worth a line of its own."""
REMEMBERED_REFUSALS = 1024
"""Refusals RefusalLog remembers as logged (the most recent), so that each is logged once."""


def refusable(api_key: int, version: int) -> bool:
    """Whether the answer of this API and version has a place for the refusal."""
    return api_key in _MIRRORS or _has_error_code(api_key, version)


def storage_refusal(api_key: int, request: Any, version: int, e: StoreError) -> Fields | None:
    """The answer that refuses `request` because the store cannot take it (see refusable);
    None when the client expects no answer (a produce with acks=0)."""
    code = (
        ErrorCode.coordinator_not_available
        if api_key in GROUP_APIS
        else ErrorCode.kafka_storage_error
    )
    refused: Refusal = {"error_code": code, "error_message": str(e)}
    mirror = _MIRRORS.get(api_key)
    # A top-level error code, in the versions that have one, says it for the whole request.
    return refused if mirror is None else mirror(request, refused)


def unserved_refusal(api_key: int, version: int, reason: str) -> Fields | None:
    """The answer that refuses an API or version not served (UNSUPPORTED_VERSION, with the
    reason where the answer has a message); None when the answer has no error code to
    carry it, or is not one Kafka defines: the connection is closed instead."""
    try:
        fields = _fields(api_key, version)
    except KioIndexError:
        return None
    if "error_code" not in fields:
        return None
    refused: Fields = {"error_code": ErrorCode.unsupported_version}
    return refused | {"error_message": reason} if "error_message" in fields else refused


def api_name(api_key: int) -> str:
    """An API's name as Kafka spells it (InitProducerId), or its key if Kafka has none."""
    name = api_key_map.get(api_key)
    if name is None:
        return f"API key {api_key}"
    return "".join(word.title() for word in str(name).split("_"))


def unserved_reason(api_key: int, version: int, served: tuple[int, int] | None) -> str:
    """Why a request of an API and version is not served (`served`: the versions that are,
    None if no version is)."""
    name = api_name(api_key)
    if api_key in FEATURES:
        return FEATURES[api_key]
    if served is not None:
        low, high = served
        return f"{name} v{version} is not served: this broker serves v{low}-v{high}"
    if api_key not in api_key_map:
        return f"{name} is not an API Kafka defines"
    return f"{name} is not served by this broker"


class RefusalLog:
    """Logs each refusal of an API or a feature once per client id, client address, API and
    reason, at warning level; remembers the last `capacity` refusals logged."""

    def __init__(self, capacity: int = REMEMBERED_REFUSALS) -> None:
        self.capacity = capacity
        self._logged: OrderedDict[RefusalKey, None] = OrderedDict()

    def __len__(self) -> int:
        """How many refusals are remembered as logged."""
        return len(self._logged)

    def __contains__(self, key: object) -> bool:
        """Whether a (client id, client address, API, reason) is remembered as logged."""
        return key in self._logged

    def refused(self, caller: Caller, api: str, reason: str, answer: ErrorCode | None) -> None:
        """Note that `api` was refused to `caller` for `reason`, answered with the error code
        `answer` (None: the connection was closed); logged the first time only."""
        key = (caller.client_id, caller.host, api, reason)
        if key in self._logged:
            self._logged.move_to_end(key)
            return
        self._logged[key] = None
        if len(self._logged) > self.capacity:
            self._logged.popitem(last=False)
        log.warning(
            "refused %s from client %r at %s (%s): %s; logged once per client and API",
            api,
            caller.client_id,
            caller.host,
            "the connection is closed" if answer is None else f"answered {answer.name.upper()}",
            reason,
        )


@cache
def _fields(api_key: int, version: int) -> frozenset[str]:
    """The top-level fields of an API's answer in a version."""
    schema = load_response_schema(api_key, version)
    return frozenset(f.name for f in dataclasses.fields(schema))


def _has_error_code(api_key: int, version: int) -> bool:
    return "error_code" in _fields(api_key, version)


def _produce(request: Any, refused: Refusal) -> Fields | None:
    if request.acks == 0:
        return None  # the client expects no answer
    return {
        "responses": [
            {
                "name": t.name,
                "partition_responses": [{"index": p.index} | refused for p in t.partition_data],
            }
            for t in request.topic_data
        ]
    }


def _offset_commit(request: Any, refused: Refusal) -> Fields:
    return {
        "topics": [
            {
                "name": t.name,
                "partitions": [
                    {"partition_index": p.partition_index} | refused for p in t.partitions
                ],
            }
            for t in request.topics
        ]
    }


def _offset_fetch(request: Any, refused: Refusal) -> Fields:
    return refused | {
        "topics": [
            {
                "name": t.name,
                "partitions": [
                    {"partition_index": p, "committed_offset": -1} | refused
                    for p in t.partition_indexes
                ],
            }
            for t in request.topics or ()
        ]
    }


def _fetch(request: Any, refused: Refusal) -> Fields:
    return refused | {
        "responses": [
            {
                "topic": t.topic,
                "partitions": [
                    {"partition_index": p.partition, "high_watermark": -1} | refused
                    for p in t.partitions
                ],
            }
            for t in request.topics
        ]
    }


def _list_offsets(request: Any, refused: Refusal) -> Fields:
    return {
        "topics": [
            {
                "name": t.name,
                "partitions": [
                    {"partition_index": p.partition_index, "offset": -1, "timestamp": -1} | refused
                    for p in t.partitions
                ],
            }
            for t in request.topics
        ]
    }


def _describe_configs(request: Any, refused: Refusal) -> Fields:
    return {
        "results": [
            {"resource_type": r.resource_type, "resource_name": r.resource_name, "configs": []}
            | refused
            for r in request.resources
        ]
    }


def _describe_groups(request: Any, refused: Refusal) -> Fields:
    return {"groups": [{"group_id": g, "protocol_type": ""} | refused for g in request.groups]}


def _create_topics(request: Any, refused: Refusal) -> Fields:
    return {"topics": [{"name": t.name} | refused for t in request.topics]}


def _delete_topics(request: Any, refused: Refusal) -> Fields:
    if hasattr(request, "topic_names"):  # before v6
        return {"responses": [{"name": name} | refused for name in request.topic_names]}
    return {
        "responses": [{"name": t.name, "topic_id": t.topic_id} | refused for t in request.topics]
    }


def _alter_configs(request: Any, refused: Refusal) -> Fields:
    return {
        "responses": [
            {"resource_type": r.resource_type, "resource_name": r.resource_name} | refused
            for r in request.resources
        ]
    }


def _create_partitions(request: Any, refused: Refusal) -> Fields:
    return {"results": [{"name": t.name} | refused for t in request.topics]}


def _delete_groups(request: Any, refused: Refusal) -> Fields:
    return {"results": [{"group_id": g} | refused for g in request.groups_names]}


def _create_acls(request: Any, refused: Refusal) -> Fields:
    return {"results": [refused for _ in request.creations]}


def _delete_acls(request: Any, refused: Refusal) -> Fields:
    return {"filter_results": [refused for _ in request.filters]}


_MIRRORS: dict[int, Callable[[Any, Refusal], Fields | None]] = {
    0: _produce,  # a topic created on first use
    1: _fetch,
    2: _list_offsets,
    8: _offset_commit,
    9: _offset_fetch,
    15: _describe_groups,
    19: _create_topics,
    20: _delete_topics,
    30: _create_acls,
    31: _delete_acls,
    32: _describe_configs,
    33: _alter_configs,
    37: _create_partitions,
    42: _delete_groups,
    44: _alter_configs,
}
"""The refusal of each API whose answer holds an error per resource the request named
(and one for the whole request too, in the versions that have it)."""
