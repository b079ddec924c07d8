"""Topic administration over HTTP: list, create, describe, change, grow, delete."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

import tidings
from tests.cli.test_cli import run

from .conftest import ServerThread, assert_error, client_of, create_topic, produce


def test_create_describe_list_and_delete(http: httpx.Client, bus: tidings.Bus) -> None:
    response = http.post(
        "/topics",
        json={
            "name": "orders",
            "partitions": 3,
            "config": {
                "retention.ms": 86_400_000,
                "cleanup.policy": "compact",
                "retention.bytes": None,
            },
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["config"]["retention.ms"] == 86_400_000
    assert created["config"]["cleanup.policy"] == "compact"
    assert created["config"]["retention.bytes"] == -1
    assert bus.describe_topic("orders").spec.config.retention_ms == 86_400_000

    produce(http, "orders", {"value": "a", "partition": 2}, {"value": "b", "partition": 2})
    described = http.get("/topics/orders").json()
    assert described["records"] == 2
    assert [
        (p["partition"], p["start_offset"], p["end_offset"]) for p in described["partitions"]
    ] == [
        (0, 0, 0),
        (1, 0, 0),
        (2, 0, 2),
    ]

    bus.create_topic("from-python")
    listed = http.get("/topics").json()["topics"]
    assert {t["name"]: t["partitions"] for t in listed} == {"orders": 3, "from-python": 1}

    assert http.delete("/topics/orders").status_code == 204
    assert [t.name for t in bus.list_topics()] == ["from-python"]
    assert_error(http.get("/topics/orders"), 404, "topic_not_found")
    assert_error(http.delete("/topics/orders"), 404, "topic_not_found")


def test_change_settings_and_grow(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "t")
    response = http.patch("/topics/t", json={"config": {"retention.ms": -1}, "partitions": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["config"]["retention.ms"] == -1
    assert len(body["partitions"]) == 4
    spec = bus.describe_topic("t").spec
    assert (spec.partitions, spec.config.retention_ms) == (4, None)
    assert spec.config.cleanup_policy == "delete"  # the others keep their values


def test_bad_topic_requests_change_nothing(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "t", partitions=2)
    body = assert_error(http.post("/topics", json={"name": "t"}), 409, "topic_exists")
    assert "'t'" in body["message"]
    assert_error(http.post("/topics", json={"name": "bad name!"}), 422, "invalid_topic")
    assert_error(http.post("/topics", json={"name": "x", "partitions": 0}), 422, "invalid_request")
    body = assert_error(
        http.post("/topics", json={"name": "x", "config": {"retention.mss": 1}}),
        422,
        "configuration",
    )
    assert "retention.ms" in body["message"]  # the known settings are listed
    body = assert_error(
        http.post("/topics", json={"name": "x", "config": {"retention_ms": 1}}),
        422,
        "configuration",
    )
    assert "unknown topic setting 'retention_ms'" in body["message"]  # Kafka's names only
    assert_error(
        http.post("/topics", json={"name": "x", "config": {"retention.ms": "soon"}}),
        422,
        "configuration",
    )
    assert_error(
        http.patch("/topics/t", json={"config": {"cleanup.policy": "shred"}}), 422, "configuration"
    )
    assert_error(
        http.patch("/topics/t", json={"config": {"cleanup.policy": 1}}), 422, "configuration"
    )
    assert_error(
        http.patch("/topics/t", json={"config": {"retention.ms": 5}, "partitions": 1}),
        422,
        "invalid_partitions",
    )
    assert_error(http.patch("/topics/nope", json={"partitions": 3}), 404, "topic_not_found")
    assert [t.name for t in bus.list_topics()] == ["t"]
    spec = bus.describe_topic("t").spec
    assert (spec.partitions, spec.config) == (2, tidings.TopicConfig())


def cli(bus_url: str, *args: str) -> bytes:
    """Run the real `tidings` command; it must succeed; its stdout."""
    proc = run(bus_url, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def described_config(bus_url: str, topic: str) -> Any:
    """The `config` object of `tidings topics describe TOPIC --json`."""
    return json.loads(cli(bus_url, "topics", "describe", topic, "--json"))["config"]


def test_cli_and_http_speak_the_same_settings(
    start: Callable[..., ServerThread], bus_url: str
) -> None:
    create = ["topics", "create", "orders", "--partitions", "2", "--retention-ms", "60000"]
    cli(bus_url, *create, "--config", "cleanup.policy=compact,delete")
    config = described_config(bus_url, "orders")
    assert config["retention.ms"] == 60_000 and config["retention.bytes"] == -1
    assert config["cleanup.policy"] == "compact,delete"

    # what `describe --json` prints, `alter --config` takes back, key by key
    cli(bus_url, "topics", "create", "copy")
    pairs = [arg for k, v in config.items() for arg in ("--config", f"{k}={v}")]
    cli(bus_url, "topics", "alter", "copy", *pairs)
    assert described_config(bus_url, "copy") == config
    for bad, message in [
        ("retention_ms=5", "unknown topic setting 'retention_ms'; known settings: retention.ms"),
        ("retention.ms=soon", "retention.ms takes an integer, not 'soon'"),
        ("cleanup.policy=shred", "cleanup.policy takes one of delete, compact"),
    ]:
        refused = run(bus_url, "topics", "alter", "copy", "--config", bad)
        assert refused.returncode == 1
        assert message in refused.stderr.decode(), refused.stderr
    assert described_config(bus_url, "copy") == config

    # and the HTTP API shows the same and takes it back too
    with client_of(start()) as http:
        assert http.get("/topics/orders").json()["config"] == config
        assert http.get("/topics/copy").json()["config"] == config
        response = http.post("/topics", json={"name": "posted", "config": config})
        assert response.status_code == 201, response.text
        assert response.json()["config"] == config
        create_topic(http, "patched")
        assert http.patch("/topics/patched", json={"config": config}).json()["config"] == config
        listed = {t["name"]: t["config"] for t in http.get("/topics").json()["topics"]}
    assert listed == dict.fromkeys(("copy", "orders", "patched", "posted"), config)
