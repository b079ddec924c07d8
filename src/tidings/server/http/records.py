"""Records in and out: produce, read a partition from an offset, tail a topic live (SSE)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from tidings.api.consumer import AsyncConsumer
from tidings.api.jsonform import json_line, metadata_to_json, record_to_json
from tidings.core.errors import PartitionNotFoundError, RecordTooLargeError
from tidings.core.records import TopicPartition, normalize_headers
from tidings.server.http.models import (
    MaxRecords,
    Produced,
    ProduceRequest,
    RecordIn,
    Records,
    TimeoutMs,
)
from tidings.server.http.state import SLICE_S, HttpState, State

KEEPALIVE_S = 15.0
"""A quiet tail sends an SSE comment this often, so proxies keep it open and a client that
left is noticed."""


router = APIRouter(tags=["records"])


def record_size(record: RecordIn) -> int:
    """Bytes a record counts against the topic's max.message.bytes."""
    headers = record.headers or {}
    pairs = headers.items() if isinstance(headers, dict) else headers
    return (
        len(record.key or b"")
        + len(record.value or b"")
        + sum(len(name) + len(value or b"") for name, value in pairs)
    )


@router.post("/topics/{name}/records", response_model=Produced)
async def produce(name: str, body: ProduceRequest, state: State) -> dict[str, Any]:
    """Store records in order; where each went, once all are durable.

    Every record is checked (topic, partition, size) before any is stored: a request with
    a bad record stores none.
    """
    spec = (await state.bus.describe_topic(name)).spec
    for record in body.records:
        if record.partition is not None and record.partition >= spec.partitions:
            raise PartitionNotFoundError(name, record.partition, spec.partitions)
        normalize_headers(record.headers)  # refused here, not once earlier records are sent
        size = record_size(record)
        if size > spec.config.max_message_bytes:
            raise RecordTooLargeError(name, size, spec.config.max_message_bytes)
    producer = state.producer()
    futures = [
        producer.send(
            name,
            record.value,
            key=record.key,
            headers=record.headers,
            partition=record.partition,
            timestamp=record.timestamp,
        )
        for record in body.records
    ]
    return {"records": [metadata_to_json(await future) for future in futures]}


@router.get("/topics/{name}/partitions/{partition}/records", response_model=Records)
async def read(
    name: str,
    partition: Annotated[int, Path(ge=0)],
    *,
    state: State,
    offset: Annotated[
        int | None, Query(ge=0, description="first offset to read; default: the log start")
    ] = None,
    max_records: MaxRecords = 100,
    timeout_ms: TimeoutMs = 0,
) -> dict[str, Any]:
    """Records of one partition from `offset`, waiting up to `timeout_ms` for the first."""
    tp = TopicPartition(name, partition)
    consumer = state.bus.consumer(auto_offset_reset="none")  # no silent jump past a gap
    try:
        await consumer.assign(tp)
        await consumer.seek(tp, "earliest" if offset is None else offset)
        records = await state.long_poll(lambda ms: consumer.poll(max_records, ms), timeout_ms)
        return {
            "records": [record_to_json(r) for r in records],
            "next_offset": consumer.position(tp),
        }
    finally:
        await consumer.close()


@router.get(
    "/topics/{name}/tail",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "one event a record"}},
)
async def tail(
    name: str,
    state: State,
    start: Annotated[
        Literal["end", "beginning"],
        Query(alias="from", description="end: records published from now on"),
    ] = "end",
) -> StreamingResponse:
    """Server-Sent Events: each record of the topic as an event `record` with JSON data."""
    partitions = (await state.bus.describe_topic(name)).partitions
    consumer = state.bus.consumer()
    try:
        tps = [TopicPartition(name, p.partition) for p in partitions]
        await consumer.assign(*tps)
        for tp in tps:  # fixed now: a record published once the response starts is seen
            await consumer.seek(tp, "earliest" if start == "beginning" else "latest")
    except BaseException:
        await consumer.close()
        raise
    return StreamingResponse(
        events(consumer, state),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def events(consumer: AsyncConsumer, state: HttpState) -> AsyncIterator[str]:
    """The SSE stream of a tail, until the client leaves or the server stops."""
    try:
        yield ": tailing\n\n"
        quiet_since = time.monotonic()
        while not state.stopping.is_set():
            records = await consumer.poll(1000, SLICE_S * 1000)
            for r in records:
                yield f"event: record\ndata: {json_line(record_to_json(r))}\n\n"
            if records:
                quiet_since = time.monotonic()
            elif time.monotonic() - quiet_since >= KEEPALIVE_S:
                quiet_since = time.monotonic()
                yield ": keepalive\n\n"
    finally:
        with anyio.CancelScope(shield=True):  # a client that left cancels the stream
            await consumer.close()
