"""Reading stored records by offset with batched Direct Get (no consumer is created)."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING

from nats.aio.msg import Msg
from tidings.core.records import Record, TopicPartition
from tidings.engines.nats import names
from tidings.engines.nats.connection import NatsTimeoutError

if TYPE_CHECKING:
    from tidings.engines.nats.engine import NatsEngine

BATCH = 1000
"""The most messages one Direct Get returns."""


async def read_records(
    engine: NatsEngine, tp: TopicPartition, offset: int, limit: int, timeout_s: float
) -> list[Record]:
    """Up to `limit` stored records of `tp` from `offset` on (fewer at the end)."""
    out: list[Record] = []
    sequence = offset + 1
    while len(out) < limit:
        got = await _direct_batch(engine, tp, sequence, min(BATCH, limit - len(out)), timeout_s)
        if not got:
            break
        out.extend(got)
        sequence = got[-1].offset + 2
    return out


async def _direct_batch(
    engine: NatsEngine, tp: TopicPartition, sequence: int, count: int, timeout_s: float
) -> list[Record]:
    nc = engine.nc
    inbox = nc.new_inbox()
    replies: asyncio.Queue[Msg] = asyncio.Queue()

    async def collect(msg: Msg) -> None:
        replies.put_nowait(msg)

    sub = await nc.subscribe(inbox, cb=collect)
    out: list[Record] = []
    try:
        request = json.dumps({"seq": sequence, "batch": count}).encode()
        stream = names.stream_name(tp.topic, tp.partition)
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", request, reply=inbox)
        while True:
            try:
                msg = await asyncio.wait_for(replies.get(), max(timeout_s, engine.timeout))
            except TimeoutError:
                raise NatsTimeoutError(
                    engine.url,
                    f"NATS at {engine.url} did not answer in time to read "
                    f"{tp.topic}[{tp.partition}]; check that the server is up, or raise "
                    f"request_timeout in the URL",
                ) from None
            hdrs = msg.headers or {}
            if "Status" in hdrs:  # 204: the batch ended; 404: nothing there; 408: refused
                return out
            seq = int(hdrs.get("Nats-Sequence", "0"))
            out.append(names.to_record(tp.topic, tp.partition, msg, seq, _stamp(hdrs)))
            if len(out) >= count:
                return out
    finally:
        await sub.unsubscribe()


def _stamp(hdrs: dict[str, str]) -> int:
    raw = hdrs.get("Nats-Time-Stamp")
    if not raw:
        return 0
    try:
        return int(datetime.fromisoformat(raw[:26].rstrip("Z") + "+00:00").timestamp() * 1000)
    except ValueError:
        return 0
