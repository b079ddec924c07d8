"""Health, Prometheus metrics, the OpenAPI document, and unknown routes."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from .conftest import assert_error, create_topic, produce


def samples(http: httpx.Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, parsed as Prometheus text: (name, labels) -> value."""
    response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def test_health_names_the_store(http: httpx.Client, bus_url: str) -> None:
    health = http.get("/health").json()
    assert health == {"status": "ok", "url": bus_url, "auth": "none (loopback only)"}


def test_metrics_show_the_log_groups_queues_and_requests(http: httpx.Client) -> None:
    create_topic(http, "orders", partitions=2)
    produce(http, "orders", *({"value": str(i), "partition": 1} for i in range(3)))
    http.post(
        "/groups/g/records?topic=orders&auto_offset_reset=earliest&max_records=2&timeout_ms=2000"
    )
    http.post("/groups/g/commit?topic=orders")
    http.post("/queues/orders/q/receive?max_records=1&timeout_ms=2000")
    http.get("/topics/missing")

    found = samples(http)
    assert found[("tidings_topics", ())] == 2  # orders and the queue's orders.dlq
    assert found[("tidings_topic_partitions", (("topic", "orders"),))] == 2
    p1 = (("partition", "1"), ("topic", "orders"))
    assert found[("tidings_partition_end_offset", p1)] == 3
    assert found[("tidings_partition_records", p1)] == 3
    g1 = (("group", "g"), ("partition", "1"), ("topic", "orders"))
    assert found[("tidings_group_committed_offset", g1)] == 2
    assert found[("tidings_group_lag", g1)] == 1
    assert found[("tidings_group_members", (("group", "g"),))] == 1
    jobs = (("group", "q"), ("partition", "1"), ("state", "in_flight"), ("topic", "orders"))
    assert found[("tidings_queue_jobs", jobs)] == 1

    def requests(method: str, route: str, status: str) -> float:
        labels = (("method", method), ("route", route), ("status", status))
        return found[("tidings_http_requests_total", labels)]

    assert requests("POST", "/topics/{name}/records", "200") == 1
    assert requests("GET", "/topics/{name}", "404") == 1


def test_the_openapi_document_lists_every_endpoint(http: httpx.Client) -> None:
    document = http.get("/openapi.json").json()
    assert document["info"]["title"] == "tidings"
    paths = document["paths"]
    assert set(paths) >= {
        "/health",
        "/metrics",
        "/topics",
        "/topics/{name}",
        "/topics/{name}/records",
        "/topics/{name}/partitions/{partition}/records",
        "/topics/{name}/tail",
        "/groups",
        "/groups/{group}",
        "/groups/{group}/records",
        "/groups/{group}/commit",
        "/groups/{group}/reset-offsets",
        "/queues",
        "/queues/{topic}/{group}",
        "/queues/{topic}/{group}/receive",
        "/queues/{topic}/{group}/jobs/{job}/ack",
        "/queues/{topic}/{group}/jobs/{job}/release",
        "/queues/{topic}/{group}/jobs/{job}/reject",
        "/queues/{topic}/{group}/jobs/{job}/extend",
    }
    assert set(paths["/topics/{name}"]) == {"get", "patch", "delete"}
    error = paths["/topics"]["post"]["responses"]["default"]["content"]["application/json"]
    assert error["schema"]["$ref"].endswith("/ErrorOut")
    assert "text/html" in http.get("/docs").headers["content-type"]


def test_unknown_routes_and_methods_answer_in_json(http: httpx.Client) -> None:
    assert_error(http.get("/nowhere"), 404, "not_found")
    assert_error(http.put("/topics"), 405, "method_not_allowed")
    assert http.get("/health").status_code == 200
