"""Live tails over Server-Sent Events: new records as events, a clean end on both sides."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

import tidings

from .conftest import ServerThread, assert_error, client_of, create_topic, produce


def next_event(lines: Iterator[str]) -> tuple[str, dict[str, Any]]:
    """The next event of an SSE stream (comments skipped): its name and JSON data."""
    name, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            data += line.removeprefix("data: ")
        elif not line and data:
            return name, json.loads(data)
    raise AssertionError("the stream ended before an event")


def test_a_tail_streams_records_published_after_it_started(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    create_topic(http, "news", partitions=2)
    produce(http, "news", {"value": "old"})
    with http.stream("GET", "/topics/news/tail") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == ": tailing"  # the tail's position is fixed: anything now is new
        produce(http, "news", {"key": "k", "value": "fresh", "headers": {"h": "v"}})
        name, record = next_event(lines)
        assert name == "record"
        assert (record["topic"], record["key"], record["value"]) == ("news", "k", "fresh")
        assert record["headers"] == [["h", "v"]]
        bus.publish("news", b"\xff", partition=1)
        assert next_event(lines)[1]["value"] == {"base64": "/w=="}
    assert http.get("/health").status_code == 200  # the client left; the server goes on


def test_a_tail_from_the_beginning_replays_first(http: httpx.Client) -> None:
    create_topic(http, "news")
    produce(http, "news", {"value": "1"}, {"value": "2"})
    with http.stream("GET", "/topics/news/tail?from=beginning") as response:
        lines = response.iter_lines()
        assert [next_event(lines)[1]["value"] for _ in range(2)] == ["1", "2"]
        produce(http, "news", {"value": "3"})
        assert next_event(lines)[1]["value"] == "3"


def test_a_tail_of_an_unknown_topic_is_refused(http: httpx.Client) -> None:
    assert_error(http.get("/topics/nope/tail"), 404, "topic_not_found")
    create_topic(http, "news")
    assert_error(http.get("/topics/news/tail?from=middle"), 422, "invalid_request")


def test_stopping_the_server_ends_open_tails(start: Callable[..., ServerThread]) -> None:
    server = start()
    with client_of(server) as http:
        create_topic(http, "news")
        with http.stream("GET", "/topics/news/tail") as response:
            lines = response.iter_lines()
            assert next(lines) == ": tailing"
            stopper = threading.Thread(target=server.stop)
            started = time.monotonic()
            stopper.start()
            assert [line for line in lines if line] == []  # the stream ends, not hangs
            stopper.join()
            assert time.monotonic() - started < 5
