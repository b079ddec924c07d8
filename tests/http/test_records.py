"""Produce, read by offset and long poll over HTTP; records cross between HTTP and Python."""

from __future__ import annotations

import base64
import threading
import time

import httpx

import tidings
from tidings import TopicPartition

from .conftest import ServerThread, assert_error, client_of, create_topic, produce


def test_produce_then_read_by_offset_keeps_every_field(http: httpx.Client) -> None:
    create_topic(http, "orders", partitions=2)
    binary = bytes(range(256))
    stored = produce(
        http,
        "orders",
        {
            "key": "k1",
            "value": "héllo",
            "headers": {"trace": "t1"},
            "partition": 0,
            "timestamp": 1_700_000_000_000,
        },
        {
            "key": {"base64": base64.b64encode(binary).decode()},
            "value": None,
            "headers": [["h", "a"], ["h", {"base64": "/w=="}], ["none", None]],
            "partition": 1,
            "timestamp": 1_700_000_000_001,
        },
    )
    assert [(s["partition"], s["offset"]) for s in stored] == [(0, 0), (1, 0)]
    assert [s["timestamp"] for s in stored] == [1_700_000_000_000, 1_700_000_000_001]

    response = http.get("/topics/orders/partitions/0/records?offset=0")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["next_offset"] == 1
    [record] = body["records"]
    assert record == {
        "topic": "orders",
        "partition": 0,
        "offset": 0,
        "timestamp": 1_700_000_000_000,
        "key": "k1",
        "value": "héllo",
        "headers": [["trace", "t1"]],
    }
    [other] = http.get("/topics/orders/partitions/1/records").json()["records"]
    assert base64.b64decode(other["key"]["base64"]) == binary
    assert other["value"] is None
    assert other["headers"] == [["h", "a"], ["h", {"base64": "/w=="}], ["none", None]]


def test_http_records_are_read_by_python_and_python_records_over_http(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    create_topic(http, "events")
    produce(http, "events", {"key": "a", "value": "from http", "headers": {"x": "1"}})
    bus.publish("events", b"from python", key=b"b", headers={"y": b"\xff"}, timestamp=42)

    consumer = bus.consumer()
    tp = TopicPartition("events", 0)
    consumer.assign(tp)
    consumer.seek(tp, "earliest")
    records = consumer.poll(timeout_ms=2000)
    consumer.close()
    assert [(r.key, r.value, r.headers) for r in records] == [
        (b"a", b"from http", (("x", b"1"),)),
        (b"b", b"from python", (("y", b"\xff"),)),
    ]

    over_http = http.get("/topics/events/partitions/0/records?offset=1").json()["records"]
    assert over_http == [
        {
            "topic": "events",
            "partition": 0,
            "offset": 1,
            "timestamp": 42,
            "key": "b",
            "value": "from python",
            "headers": [["y", {"base64": "/w=="}]],
        }
    ]


def test_max_records_and_next_offset_page_through_a_partition(http: httpx.Client) -> None:
    create_topic(http, "pages")
    produce(http, "pages", *({"value": str(i)} for i in range(5)))
    offset, seen = 0, []
    while offset < 5:
        body = http.get(f"/topics/pages/partitions/0/records?offset={offset}&max_records=2").json()
        seen += [r["value"] for r in body["records"]]
        offset = body["next_offset"]
    assert seen == ["0", "1", "2", "3", "4"]


def test_a_read_at_the_end_waits_for_the_next_record(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "slow")
    threading.Timer(0.3, lambda: bus.publish("slow", b"late")).start()
    started = time.monotonic()
    response = http.get("/topics/slow/partitions/0/records?offset=0&timeout_ms=5000")
    assert [r["value"] for r in response.json()["records"]] == ["late"]
    assert time.monotonic() - started < 4

    started = time.monotonic()
    empty = http.get("/topics/slow/partitions/0/records?offset=1&timeout_ms=300").json()
    assert empty == {"records": [], "next_offset": 1}
    assert 0.25 < time.monotonic() - started < 3


def test_an_offset_past_the_end_is_out_of_range(http: httpx.Client) -> None:
    create_topic(http, "short")
    produce(http, "short", {"value": "only"})
    body = assert_error(
        http.get("/topics/short/partitions/0/records?offset=5"), 416, "offset_out_of_range"
    )
    assert "0..1" in body["message"]


def test_bad_produce_requests_store_nothing_and_the_server_goes_on(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    create_topic(http, "safe", partitions=2)
    good = {"value": "good"}
    cases = [
        ({"records": [good, {"value": {"base64": "not base64!"}}]}, 422, "invalid_request"),
        ({"records": [good, {"value": "x", "partition": -1}]}, 422, "invalid_request"),
        ({"records": [good, {"value": "x", "partition": 2}]}, 404, "partition_not_found"),
        ({"records": [good, {"value": 7}]}, 422, "invalid_request"),
        ({"records": [good, {"value": "x", "colour": "red"}]}, 422, "invalid_request"),
        ({"records": []}, 422, "invalid_request"),
        ({"records": [good, {"value": "x" * (1 << 21)}]}, 413, "record_too_large"),
    ]
    for body, status, error in cases:
        assert_error(http.post("/topics/safe/records", json=body), status, error)
    assert_error(
        http.post(
            "/topics/safe/records",
            content=b'{"records": [',
            headers={"content-type": "application/json"},
        ),
        400,
        "bad_json",
    )
    assert_error(
        http.post("/topics/safe/records", content=b'{"records": [{"value": "x"}]}'),
        415,
        "unsupported_media_type",
    )
    assert_error(
        http.post("/topics/missing/records", json={"records": [good]}), 404, "topic_not_found"
    )
    assert bus.describe_topic("safe").records == 0

    produce(http, "safe", good)
    assert bus.describe_topic("safe").records == 1


def test_bad_reads_say_what_is_wrong(http: httpx.Client) -> None:
    create_topic(http, "r")
    assert_error(http.get("/topics/r/partitions/-1/records"), 422, "invalid_request")
    assert_error(http.get("/topics/r/partitions/3/records"), 404, "partition_not_found")
    assert_error(http.get("/topics/nope/partitions/0/records"), 404, "topic_not_found")
    assert_error(http.get("/topics/r/partitions/0/records?offset=abc"), 422, "invalid_request")
    assert_error(http.get("/topics/r/partitions/0/records?max_records=0"), 422, "invalid_request")
    assert http.get("/topics/r/partitions/0/records").status_code == 200


def test_bad_arguments_are_refused_naming_them_and_store_nothing(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    create_topic(http, "args", partitions=2)
    good = {"value": "good"}
    bad_fields: list[tuple[dict[str, object], str]] = [
        ({"partition": "0"}, "invalid_request"),
        ({"partition": 1.0}, "invalid_request"),
        ({"partition": 0.5}, "invalid_request"),
        ({"partition": True}, "invalid_request"),
        ({"timestamp": 2**63}, "invalid_request"),
        ({"timestamp": -5}, "invalid_request"),
        ({"timestamp": "x"}, "invalid_request"),
        ({"timestamp": 1.5}, "invalid_request"),
        ({"headers": {"n" * 70_000: "v"}}, "invalid_record"),
    ]
    for fields, error in bad_fields:
        (name,) = fields
        response = http.post(
            "/topics/args/records", json={"records": [good, {"value": "x", **fields}]}
        )
        body = assert_error(response, 422, error)
        assert name.rstrip("s") in body["message"], body
    assert bus.describe_topic("args").records == 0


def test_a_bad_request_never_fails_concurrent_good_ones(
    server: ServerThread, bus: tidings.Bus
) -> None:
    clients, each = 4, 40
    with client_of(server) as http:
        create_topic(http, "shared", partitions=2)
    answers: list[int] = []
    failures: list[str] = []

    def good(n: int) -> None:
        with client_of(server) as http:
            for i in range(each):
                response = http.post(
                    "/topics/shared/records", json={"records": [{"value": f"{n}-{i}"}]}
                )
                if response.status_code != 200:
                    failures.append(response.text)

    def bad() -> None:
        with client_of(server) as http:
            for i in range(each):
                for fields in ({"timestamp": 2**63}, {"partition": 0.5}):
                    record = {"value": f"bad-{i}", **fields}
                    response = http.post("/topics/shared/records", json={"records": [record]})
                    answers.append(response.status_code)

    workers = [threading.Thread(target=good, args=(n,)) for n in range(clients)]
    workers.append(threading.Thread(target=bad))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert failures == []
    assert answers == [422] * (2 * each)
    assert sorted(stored_values(bus, "shared")) == sorted(
        f"{n}-{i}".encode() for n in range(clients) for i in range(each)
    )


def stored_values(bus: tidings.Bus, topic: str) -> list[bytes]:
    """The value of every record stored in `topic`, read through the Python API."""
    partitions = bus.describe_topic(topic).partitions
    consumer = bus.consumer(auto_offset_reset="earliest")
    try:
        consumer.assign(*(TopicPartition(topic, p.partition) for p in partitions))
        out: list[bytes] = []
        for _ in range(50):
            out += [r.value or b"" for r in consumer.poll(max_records=10_000, timeout_ms=100)]
            if len(out) >= sum(p.end_offset for p in partitions):
                break
        return out
    finally:
        consumer.close()
