"""Bounds of the HTTP API: each refused with a status that says which limit and how to
change it, nothing stored, the server serving on."""

from __future__ import annotations

import httpx

import tidings

from .conftest import assert_error, create_topic


def test_a_partition_count_over_the_limit_is_422_and_names_the_limit(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    for partitions in (10**20, 2**31 - 1, 10_001):
        response = http.post("/topics", json={"name": "huge", "partitions": partitions})
        body = assert_error(response, 422, "invalid_partitions")
        assert "partitions" in body["message"], body
    assert "max_partitions=10000" in body["message"]
    create_topic(http, "grown", 2)
    response = http.patch("/topics/grown", json={"partitions": 10**20})
    assert_error(response, 422, "invalid_partitions")
    assert bus.describe_topic("grown").spec.partitions == 2
    assert "huge" not in {t.name for t in bus.list_topics()}
