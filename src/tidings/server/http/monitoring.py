"""Health and Prometheus metrics: the log's extent, groups' lag, queues' depth, requests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tidings.api.bus import AsyncBus
from tidings.core.errors import GroupNotFoundError, TopicNotFoundError
from tidings.server.http.models import Health
from tidings.server.http.state import State

router = APIRouter(tags=["monitoring"])


def redacted(url: str) -> str:
    """`url` without a password, should it hold one."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


@router.get("/health", response_model=Health)
async def health(request: Request, state: State) -> dict[str, Any]:
    """The server is up and its store answers; how the API is protected."""
    await state.bus.list_topics()
    url = redacted(state.bus.engine.url)
    return {"status": "ok", "url": url, "auth": request.app.state.access.mode}


class Snapshot(Collector):
    """Metric families gathered beforehand (a scrape reads the bus asynchronously)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        """The families."""
        return self.families


async def bus_metrics(bus: AsyncBus) -> list[Metric]:
    """The bus now: topics and partitions, groups' offsets and lag, queues' depth."""
    p_labels = ["topic", "partition"]
    g_labels = ["group", "topic", "partition"]
    topics = GaugeMetricFamily("tidings_topics", "Topics on the bus.")
    partitions = GaugeMetricFamily(
        "tidings_topic_partitions", "Partitions of a topic.", labels=["topic"]
    )
    starts = GaugeMetricFamily(
        "tidings_partition_start_offset", "First offset still stored.", labels=p_labels
    )
    ends = GaugeMetricFamily(
        "tidings_partition_end_offset", "Offset the next record gets.", labels=p_labels
    )
    records = GaugeMetricFamily(
        "tidings_partition_records", "Records stored (end minus start offset).", labels=p_labels
    )
    sizes = GaugeMetricFamily("tidings_partition_size_bytes", "Bytes stored.", labels=p_labels)
    members = GaugeMetricFamily(
        "tidings_group_members", "Live members of a group.", labels=["group"]
    )
    committed = GaugeMetricFamily(
        "tidings_group_committed_offset", "A group's committed offset.", labels=g_labels
    )
    lag = GaugeMetricFamily(
        "tidings_group_lag", "Records after a group's committed offset.", labels=g_labels
    )
    jobs = GaugeMetricFamily(
        "tidings_queue_jobs",
        "A queue's jobs by state: available, in_flight, delayed.",
        labels=[*g_labels, "state"],
    )
    specs = await bus.list_topics()
    topics.add_metric([], len(specs))
    for spec in specs:
        try:
            described = await bus.describe_topic(spec.name)
        except TopicNotFoundError:  # deleted meanwhile
            continue
        partitions.add_metric([spec.name], spec.partitions)
        for p in described.partitions:
            labels = [spec.name, str(p.partition)]
            starts.add_metric(labels, p.start_offset)
            ends.add_metric(labels, p.end_offset)
            records.add_metric(labels, p.end_offset - p.start_offset)
            sizes.add_metric(labels, p.size_bytes)
    for group in await bus.list_groups():
        try:
            g = await bus.describe_group(group)
        except GroupNotFoundError:  # deleted meanwhile
            continue
        members.add_metric([group], len(g.members))
        for lagging in g.partitions:
            labels = [group, lagging.topic, str(lagging.partition)]
            lag.add_metric(labels, lagging.lag)
            if lagging.committed is not None:
                committed.add_metric(labels, lagging.committed)
    for group, topic in await bus.list_queues():
        for d in await bus.engine.queue_depth(group, topic):
            labels = [group, topic, str(d.partition)]
            jobs.add_metric([*labels, "available"], d.available)
            jobs.add_metric([*labels, "in_flight"], d.in_flight)
            jobs.add_metric([*labels, "delayed"], d.delayed)
    return [topics, partitions, starts, ends, records, sizes, members, committed, lag, jobs]


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def metrics(request: Request, state: State) -> Response:
    """Prometheus metrics in the text format: the bus now, and the requests answered."""
    registry: CollectorRegistry = request.app.state.metrics
    body = generate_latest(registry) + generate_latest(Snapshot(await bus_metrics(state.bus)))
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class RequestCounter:
    """ASGI middleware counting answered requests by method, route and status."""

    def __init__(self, app: ASGIApp, counter: Counter) -> None:
        self.app = app
        self.counter = counter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Count the request once its response starts."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                route = getattr(scope.get("route"), "path", "unmatched")  # bounded labels
                self.counter.labels(scope["method"], route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


def install(app: FastAPI) -> None:
    """Add /health and /metrics to `app`, and count its requests."""
    registry = CollectorRegistry()
    app.state.metrics = registry
    counter = Counter(
        "tidings_http_requests",
        "HTTP requests answered, by method, route and status.",
        ["method", "route", "status"],
        registry=registry,
    )
    app.add_middleware(RequestCounter, counter=counter)
    app.include_router(router)
