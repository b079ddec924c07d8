"""Bounds of the HTTP API: request bodies, records and partition counts, each refused with
a status that says which limit and how to change it, nothing stored, the server serving on."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx

import tidings

from .conftest import ServerThread, assert_error, client_of, create_topic, produce


def test_a_body_over_the_limit_is_413_and_nothing_is_stored(
    start: Callable[..., ServerThread], bus: tidings.Bus
) -> None:
    server = start(max_body_bytes=64 << 10)
    with client_of(server) as http:
        create_topic(http, "web")
        big = {"records": [{"value": "x" * 1000} for _ in range(100)]}  # ~100 KB of JSON
        body = assert_error(http.post("/topics/web/records", json=big), 413, "request_too_large")
        assert "65536" in body["message"] and "--max-http-body-bytes" in body["message"]
        assert bus.describe_topic("web").records == 0
        assert len(produce(http, "web", {"value": "small"})) == 1  # the server goes on


def test_a_chunked_body_is_counted_as_it_arrives(
    start: Callable[..., ServerThread], bus: tidings.Bus
) -> None:
    server = start(max_body_bytes=64 << 10)

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is known only by counting
        yield b'{"records": ['
        for _ in range(200):
            yield b'{"value": "' + b"x" * 1000 + b'"},'
        yield b'{"value": "last"}]}'

    with client_of(server) as http:
        create_topic(http, "web")
        response = http.post(
            "/topics/web/records", content=chunks(), headers={"content-type": "application/json"}
        )
        assert_error(response, 413, "request_too_large")
        assert bus.describe_topic("web").records == 0


def test_a_record_over_the_topics_limit_points_to_patch_topics(http: httpx.Client) -> None:
    create_topic(http, "web")
    response = http.post("/topics/web/records", json={"records": [{"value": "x" * (2 << 20)}]})
    body = assert_error(response, 413, "record_too_large")
    assert "PATCH /topics/web" in body["message"] and "max.message.bytes" in body["message"]
    assert "alter_topic" not in body["message"]


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
