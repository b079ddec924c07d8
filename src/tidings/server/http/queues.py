"""Queues: receive jobs, settle each one (ack, release, reject, extend), list and describe.

The server keeps one queue per (topic, group) for its clients, and the jobs it handed out
until they are settled. A job's id is `partition-offset-delivery`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tidings.api.jsonform import queue_to_json, record_to_json
from tidings.api.queue import Job
from tidings.core.records import DLQ_SUFFIX
from tidings.engines.base import AckKind, ShareConfig
from tidings.server.acls import ResourceType
from tidings.server.http.acls import visible
from tidings.server.http.errors import HttpError
from tidings.server.http.jobs import HeldQueue, job_id
from tidings.server.http.models import (
    Jobs,
    MaxRecords,
    QueueDetail,
    QueueList,
    Settled,
    TimeoutMs,
)
from tidings.server.http.state import HttpState, State

router = APIRouter(tags=["queues"])
Ms = Annotated[int, Query(ge=0, description="milliseconds")]


def job_json(job: Job) -> dict[str, Any]:
    """A received job: its record, id, delivery count and lock."""
    return {
        **record_to_json(job.record),
        "id": job_id(job),
        "deliveries": job.deliveries,
        "lock_until": job.lock_until,
    }


@router.post("/queues/{topic}/{group}/receive", response_model=Jobs)
async def receive(
    topic: str,
    group: str,
    *,
    state: State,
    max_records: MaxRecords = 10,
    timeout_ms: TimeoutMs = 0,
    lock_timeout_ms: Annotated[int, Query(ge=1, description="how long jobs stay locked")] = 30000,
    max_deliveries: Annotated[int, Query(ge=1, description="then it is a dead letter")] = 5,
    dead_letter_topic: Annotated[
        str | None, Query(description=f"default: TOPIC{DLQ_SUFFIX}, created if missing")
    ] = None,
) -> dict[str, Any]:
    """Lock up to `max_records` jobs for the caller, waiting up to `timeout_ms` for the first."""
    await state.bus.describe_topic(topic)  # a typo is a 404, not a new queue
    dead = dead_letter_topic or f"{topic}{DLQ_SUFFIX}"

    async def open_queue() -> HeldQueue:
        queue = state.bus.queue(
            topic,
            group=group,
            lock_timeout_ms=lock_timeout_ms,
            max_deliveries=max_deliveries,
            dead_letter_topic=dead,
        )
        return HeldQueue(await queue.start())

    options: dict[str, object] = {
        "lock_timeout_ms": lock_timeout_ms,
        "max_deliveries": max_deliveries,
        "dead_letter_topic": dead,
    }
    async with state.queues.use((topic, group), options, open_queue) as held, held.lock:
        queue = held.item.queue
        jobs = await state.long_poll(lambda ms: queue.receive(max_records, ms), timeout_ms)
        held.item.hold(jobs)
    return {"jobs": [job_json(job) for job in jobs]}


async def settle(
    state: HttpState, topic: str, group: str, ident: str, how: Callable[[Job], None]
) -> Job:
    """Apply `how` to the held job `ident` and wait until the store has the settlement."""
    held = state.queues.get((topic, group))
    if held is None:
        raise HttpError(
            404,
            "unknown_job",
            f"no jobs of queue ({topic!r}, group {group!r}) are held on this server; receive "
            f"them with POST /queues/{topic}/{group}/receive (a job whose lock ended is "
            f"delivered again)",
        )
    job = held.item.job(ident)
    how(job)
    await held.item.queue.flush()
    return job


@router.post("/queues/{topic}/{group}/jobs/{job}/ack", response_model=Settled)
async def ack(topic: str, group: str, job: str, state: State) -> dict[str, Any]:
    """Accept: the job is done and never delivered again."""
    await settle(state, topic, group, job, Job.ack)
    return {"id": job, "outcome": AckKind.ACCEPT.value}


@router.post("/queues/{topic}/{group}/jobs/{job}/release", response_model=Settled)
async def release(
    topic: str, group: str, job: str, state: State, delay_ms: Ms = 0
) -> dict[str, Any]:
    """Give the job back for another try, after `delay_ms`."""
    await settle(state, topic, group, job, lambda j: j.release(delay_ms))
    return {"id": job, "outcome": AckKind.RELEASE.value}


@router.post("/queues/{topic}/{group}/jobs/{job}/reject", response_model=Settled)
async def reject(
    topic: str,
    group: str,
    job: str,
    state: State,
    reason: Annotated[str, Query(description="carried to the dead letter")] = "",
) -> dict[str, Any]:
    """Poison: send the record to the dead-letter topic now, with `reason`."""
    await settle(state, topic, group, job, lambda j: j.reject(reason))
    return {"id": job, "outcome": AckKind.REJECT.value}


@router.post("/queues/{topic}/{group}/jobs/{job}/extend", response_model=Settled)
async def extend(
    topic: str,
    group: str,
    job: str,
    state: State,
    ms: Annotated[int, Query(ge=1, description="keep the lock this long from now")],
) -> dict[str, Any]:
    """Keep the job's lock for `ms` more milliseconds from now (for long work)."""
    held = await settle(state, topic, group, job, lambda j: j.extend_lock(ms))
    return {"id": job, "outcome": AckKind.RENEW.value, "lock_until": held.lock_until}


async def queue_json(state: HttpState, topic: str, group: str, names: set[str]) -> dict[str, Any]:
    """A queue's depth per partition and in total, and its dead letters."""
    held = state.queues.get((topic, group))
    default = f"{topic}{DLQ_SUFFIX}"
    dead_topic = held.item.queue.dead_letter_topic if held else None
    if dead_topic is None and default in names:
        dead_topic = default
    engine = state.bus.engine
    depths = await engine.queue_depth(group, topic)
    dead = None
    if dead_topic is not None:
        config = ShareConfig(group=group, topic=topic, dead_letter_topic=dead_topic)
        dead = await engine.queue_dead_letters(config)
    return queue_to_json(group, topic, depths, dead, dead_topic)


@router.get("/queues", response_model=QueueList)
async def list_queues(request: Request, state: State) -> dict[str, Any]:
    """Every queue (share group over a topic), with its totals."""
    names = {t.name for t in await state.bus.list_topics()}
    topics = set(visible(request, ResourceType.TOPIC, names))
    pairs = [
        (group, topic)
        for group, topic in await state.bus.list_queues()
        if topic in topics and visible(request, ResourceType.GROUP, [group])
    ]
    return {"queues": [await queue_json(state, topic, group, names) for group, topic in pairs]}


@router.get("/queues/{topic}/{group}", response_model=QueueDetail)
async def describe_queue(topic: str, group: str, state: State) -> dict[str, Any]:
    """A queue's jobs available, in flight and delayed (per partition), and dead letters."""
    await state.bus.describe_topic(topic)
    if (group, topic) not in await state.bus.list_queues():
        raise HttpError(
            404,
            "queue_not_found",
            f"share group {group!r} has never read topic {topic!r}; GET /queues lists the "
            f"queues, and POST /queues/{topic}/{group}/receive starts this one",
        )
    names = {t.name for t in await state.bus.list_topics()}
    return await queue_json(state, topic, group, names)
