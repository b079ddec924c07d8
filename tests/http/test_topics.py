"""Topic administration over HTTP: list, create, describe, change, grow, delete."""

from __future__ import annotations

import httpx

import tidings

from .conftest import assert_error, create_topic, produce


def test_create_describe_list_and_delete(http: httpx.Client, bus: tidings.Bus) -> None:
    response = http.post(
        "/topics",
        json={
            "name": "orders",
            "partitions": 3,
            "config": {
                "retention.ms": 86_400_000,
                "cleanup_policy": "compact",
                "retention.bytes": None,
            },
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["config"]["retention.ms"] == "86400000"
    assert created["config"]["cleanup.policy"] == "compact"
    assert created["config"]["retention.bytes"] == "-1"
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
    assert body["config"]["retention.ms"] == "-1"
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
    assert_error(
        http.post("/topics", json={"name": "x", "config": {"retention.ms": "soon"}}),
        422,
        "configuration",
    )
    assert_error(
        http.patch("/topics/t", json={"config": {"cleanup.policy": "shred"}}), 422, "configuration"
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
