"""Topics: list, create, describe, change settings or grow, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from tidings.api.bus import TopicDescription
from tidings.core.records import TopicConfig, TopicSpec
from tidings.server.acls import ResourceType
from tidings.server.http.acls import visible
from tidings.server.http.models import (
    SettingValue,
    TopicChange,
    TopicCreate,
    TopicDetail,
    TopicList,
)
from tidings.server.http.state import State

router = APIRouter(tags=["topics"])


def settings(config: dict[str, SettingValue]) -> dict[str, Any]:
    """Checked settings from Kafka's names (retention.ms, ...); null means no limit (-1)."""
    return TopicConfig.changes_from_kafka(
        (name, -1 if value is None else value) for name, value in config.items()
    )


def topic_json(spec: TopicSpec) -> dict[str, Any]:
    """A topic's name, partition count and settings."""
    return {"name": spec.name, "partitions": spec.partitions, "config": spec.config.to_kafka()}


def detail_json(topic: TopicDescription) -> dict[str, Any]:
    """A topic's settings and the extent of each partition."""
    return {
        "name": topic.name,
        "config": topic.spec.config.to_kafka(),
        "records": topic.records,
        "partitions": [p._asdict() for p in topic.partitions],
    }


@router.get("/topics", response_model=TopicList)
async def list_topics(request: Request, state: State) -> dict[str, Any]:
    """Every topic (the caller may describe)."""
    specs = {spec.name: spec for spec in await state.bus.list_topics()}
    shown = visible(request, ResourceType.TOPIC, specs)
    return {"topics": [topic_json(specs[name]) for name in shown]}


@router.post("/topics", status_code=201, response_model=TopicDetail)
async def create_topic(body: TopicCreate, state: State) -> dict[str, Any]:
    """Create a topic with settings under Kafka's names (retention.ms, cleanup.policy, ...)."""
    await state.bus.create_topic(body.name, body.partitions, **settings(body.config))
    return detail_json(await state.bus.describe_topic(body.name))


@router.get("/topics/{name}", response_model=TopicDetail)
async def describe_topic(name: str, state: State) -> dict[str, Any]:
    """A topic's settings and partitions, with their start and end offsets."""
    return detail_json(await state.bus.describe_topic(name))


@router.patch("/topics/{name}", response_model=TopicDetail)
async def alter_topic(name: str, body: TopicChange, state: State) -> dict[str, Any]:
    """Change settings (the others keep their values) and/or grow the partition count."""
    changes = settings(body.config)  # checked before anything changes
    if body.partitions is not None:  # first: a count it refuses leaves the settings alone
        await state.bus.add_partitions(name, body.partitions)
    if changes:
        await state.bus.alter_topic(name, **changes)
    return detail_json(await state.bus.describe_topic(name))


@router.delete("/topics/{name}", status_code=204, response_class=Response)
async def delete_topic(name: str, state: State) -> None:
    """Delete a topic and all its records (the server's consumers and queues of it close)."""
    await state.bus.describe_topic(name)  # an unknown topic is a 404 before anything closes
    await state.discard(topic=name)
    await state.bus.delete_topic(name)
