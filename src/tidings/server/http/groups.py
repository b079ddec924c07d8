"""Consumer groups: read as a member and commit, list, describe, delete, reset offsets.

A client reads as a group through a consumer the server keeps for each (group, topic):
it joins the group on the first fetch, so partitions are shared with the group's other
members (Python processes, Kafka clients, other servers). Nothing is committed until
the client commits after processing: delivery is at least once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from tidings.api.consumer import AsyncConsumer
from tidings.api.jsonform import record_to_json
from tidings.core.records import TopicPartition
from tidings.server.acls import ResourceType
from tidings.server.http.acls import visible
from tidings.server.http.errors import HttpError
from tidings.server.http.models import (
    CommitRequest,
    Committed,
    GroupDetail,
    GroupList,
    GroupRecords,
    MaxRecords,
    ResetRequest,
    TimeoutMs,
)
from tidings.server.http.state import State

router = APIRouter(tags=["groups"])
Topic = Annotated[str, Query(description="the topic the group reads")]


def offsets_json(offsets: dict[TopicPartition, int]) -> list[dict[str, int]]:
    """Offsets as [{partition, offset}], by partition."""
    return [{"partition": tp.partition, "offset": off} for tp, off in sorted(offsets.items())]


@router.post("/groups/{group}/records", response_model=GroupRecords)
async def fetch(
    group: str,
    *,
    topic: Topic,
    state: State,
    max_records: MaxRecords = 100,
    timeout_ms: TimeoutMs = 0,
    auto_offset_reset: Annotated[
        Literal["earliest", "latest"],
        Query(description="where a group with no committed offset starts"),
    ] = "latest",
) -> dict[str, Any]:
    """The group's next records of `topic`; commit `offsets` once they are processed."""
    await state.bus.describe_topic(topic)

    async def open_consumer() -> AsyncConsumer:
        consumer = state.bus.consumer(
            topic,
            group=group,
            auto_offset_reset=auto_offset_reset,
            auto_commit=False,
            client_id="tidings-http",
        )
        return await consumer.start()

    options: dict[str, object] = {"auto_offset_reset": auto_offset_reset}
    async with state.consumers.use((group, topic), options, open_consumer) as held, held.lock:
        records = await state.long_poll(lambda ms: held.item.poll(max_records, ms), timeout_ms)
    after = {TopicPartition(r.topic, r.partition): r.offset + 1 for r in records}
    return {"records": [record_to_json(r) for r in records], "offsets": offsets_json(after)}


@router.post("/groups/{group}/commit", response_model=Committed)
async def commit(
    group: str, *, topic: Topic, state: State, body: CommitRequest | None = None
) -> dict[str, Any]:
    """Commit the given offsets, or every record this server's consumer handed out."""
    held = state.consumers.get((group, topic))
    if held is None:
        raise HttpError(
            404,
            "no_consumer",
            f"no consumer of group {group!r} on topic {topic!r} is open on this server (it "
            f"closes after {state.idle_s:g} s without requests, and when the server stops); "
            f"fetch with POST /groups/{group}/records?topic={topic}: records not committed "
            f"are read again",
        )
    explicit = None
    if body is not None and body.offsets is not None:
        explicit = {TopicPartition(topic, o.partition): o.offset for o in body.offsets}
    async with held.lock:
        await held.item.commit(explicit)
        committed = await held.item.committed()
    return {"topic": topic, "offsets": offsets_json(committed)}


@router.get("/groups", response_model=GroupList)
async def list_groups(request: Request, state: State) -> dict[str, Any]:
    """Every consumer group (the caller may describe)."""
    return {"groups": visible(request, ResourceType.GROUP, await state.bus.list_groups())}


@router.get("/groups/{group}", response_model=GroupDetail)
async def describe_group(group: str, state: State) -> dict[str, Any]:
    """A group's state, members and their partitions, committed offsets and lag."""
    g = await state.bus.describe_group(group)
    return {
        "group": g.group,
        "state": g.state,
        "generation": g.generation,
        "strategy": g.strategy,
        "lag": g.lag,
        "members": [
            {
                "member_id": m.member_id,
                "client_id": m.client_id,
                "topics": list(m.topics),
                "assignment": [tp._asdict() for tp in m.assignment],
            }
            for m in g.members
        ],
        "partitions": [
            {
                "topic": p.topic,
                "partition": p.partition,
                "committed": p.committed,
                "start_offset": p.start_offset,
                "end_offset": p.end_offset,
                "lag": p.lag,
                "owner": p.owner,
            }
            for p in g.partitions
        ],
    }


@router.delete("/groups/{group}", status_code=204, response_class=Response)
async def delete_group(group: str, state: State) -> None:
    """Delete a group and its offsets; this server's consumers of it leave first."""
    await state.discard(group=group)
    await state.bus.delete_group(group)


@router.post("/groups/{group}/reset-offsets", response_model=Committed)
async def reset_offsets(group: str, body: ResetRequest, state: State) -> dict[str, Any]:
    """Move the group's committed offsets on a topic to earliest/latest, an offset or a time.

    The group must have no live members; this server's consumers of it leave first.
    """
    await state.discard(group=group)
    offsets = await state.bus.reset_offsets(
        group,
        body.topic,
        to=body.to,
        offset=body.offset,
        timestamp_ms=body.timestamp_ms,
        partitions=body.partitions,
    )
    return {"topic": body.topic, "offsets": offsets_json(offsets)}
