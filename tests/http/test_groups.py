"""Consumer groups over HTTP: read as a member, commit, resume; list, describe, delete, reset."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

import tidings

from .conftest import ServerThread, assert_error, client_of, create_topic, produce

FETCH = "/groups/billing/records?topic=orders&auto_offset_reset=earliest&timeout_ms=3000"


def values(body: dict[str, Any]) -> list[str]:
    """The values of the records in a response."""
    return [r["value"] for r in body["records"]]


def test_a_group_resumes_after_its_commit(start: Callable[..., ServerThread]) -> None:
    server = start()
    with client_of(server) as http:
        create_topic(http, "orders")
        produce(http, "orders", *({"value": v} for v in "abc"))
        first = http.post(f"{FETCH}&max_records=2").json()
        assert values(first) == ["a", "b"]
        assert first["offsets"] == [{"partition": 0, "offset": 2}]
        committed = http.post(
            "/groups/billing/commit?topic=orders", json={"offsets": first["offsets"]}
        )
        assert committed.json() == {"topic": "orders", "offsets": [{"partition": 0, "offset": 2}]}
    server.stop()

    with client_of(start()) as http:
        produce(http, "orders", {"value": "d"})
        assert values(http.post(FETCH).json()) == ["c", "d"]


def test_records_not_committed_are_read_again(start: Callable[..., ServerThread]) -> None:
    server = start()
    with client_of(server) as http:
        create_topic(http, "orders")
        produce(http, "orders", {"value": "a"}, {"value": "b"})
        assert values(http.post(FETCH).json()) == ["a", "b"]
        assert values(http.post(f"{FETCH.replace('3000', '100')}").json()) == []
    server.stop()  # no commit: at least once, the next consumer of the group reads them again

    with client_of(start()) as http:
        assert values(http.post(FETCH).json()) == ["a", "b"]
        # a commit without offsets covers every record handed out
        assert http.post("/groups/billing/commit?topic=orders").json()["offsets"] == [
            {"partition": 0, "offset": 2}
        ]


def test_a_group_read_over_http_is_the_group_python_sees(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    create_topic(http, "orders", partitions=2)
    produce(http, "orders", {"value": "p0", "partition": 0}, {"value": "p1", "partition": 1})
    assert sorted(values(http.post(FETCH).json())) == ["p0", "p1"]
    http.post("/groups/billing/commit?topic=orders")

    described = http.get("/groups/billing").json()
    assert described["state"] == "Stable"
    [member] = described["members"]
    assert member["client_id"] == "tidings-http"
    assert sorted(a["partition"] for a in member["assignment"]) == [0, 1]
    assert [(p["partition"], p["committed"], p["lag"]) for p in described["partitions"]] == [
        (0, 1, 0),
        (1, 1, 0),
    ]
    python = bus.describe_group("billing")
    assert python.lag == 0
    assert [m.member_id for m in python.members] == [member["member_id"]]
    assert http.get("/groups").json() == {"groups": ["billing"]}


def test_delete_and_reset_offsets(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "orders")
    produce(http, "orders", *({"value": v} for v in "abc"))
    assert values(http.post(FETCH).json()) == ["a", "b", "c"]
    http.post("/groups/billing/commit?topic=orders")

    # the server's own consumer leaves first, so the reset finds the group empty
    reset = http.post("/groups/billing/reset-offsets", json={"topic": "orders", "offset": 1})
    assert reset.status_code == 200, reset.text
    assert reset.json() == {"topic": "orders", "offsets": [{"partition": 0, "offset": 1}]}
    assert values(http.post(FETCH).json()) == ["b", "c"]

    to_end = http.post("/groups/billing/reset-offsets", json={"topic": "orders", "to": "latest"})
    assert to_end.json()["offsets"] == [{"partition": 0, "offset": 3}]
    assert bus.describe_group("billing").lag == 0

    assert http.delete("/groups/billing").status_code == 204
    assert bus.list_groups() == []
    assert_error(http.get("/groups/billing"), 404, "group_not_found")


def test_bad_group_requests(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "orders")
    assert_error(http.post("/groups/g/records?topic=nope"), 404, "topic_not_found")
    assert_error(http.post("/groups/g/records"), 422, "invalid_request")
    assert_error(http.post("/groups/g/commit?topic=orders"), 404, "no_consumer")
    assert_error(
        http.post(
            "/groups/g/reset-offsets", json={"topic": "orders", "to": "earliest", "offset": 1}
        ),
        422,
        "configuration",
    )
    assert_error(http.get("/groups/nope"), 404, "group_not_found")

    http.post("/groups/g/records?topic=orders")
    assert_error(
        http.post("/groups/g/records?topic=orders&auto_offset_reset=earliest"),
        409,
        "options_conflict",
    )

    with bus.consumer("orders", group="busy") as member:
        member.poll(timeout_ms=500)
        assert_error(http.delete("/groups/busy"), 409, "group_not_empty")
    assert http.get("/health").status_code == 200


def test_an_idle_consumer_closes_and_leaves_the_group(start: Callable[..., ServerThread]) -> None:
    with client_of(start(idle_timeout_s=0.3)) as http:
        create_topic(http, "orders")
        http.post("/groups/g/records?topic=orders")
        assert len(http.get("/groups/g").json()["members"]) == 1
        deadline = time.monotonic() + 5
        while http.get("/groups").json()["groups"] and time.monotonic() < deadline:
            time.sleep(0.1)
        # it left, and a group with no members and no committed offsets is gone
        assert_error(http.get("/groups/g"), 404, "group_not_found")
        assert_error(http.post("/groups/g/commit?topic=orders"), 404, "no_consumer")


def test_a_commit_of_an_offset_no_reader_can_use_is_refused(http: httpx.Client) -> None:
    create_topic(http, "orders")
    produce(http, "orders", *({"value": v} for v in "abc"))
    assert values(http.post(f"{FETCH}&max_records=2").json()) == ["a", "b"]
    commit = "/groups/billing/commit?topic=orders"
    for offset in ["x", -7, 1.5, True, 2**63]:
        body = {"offsets": [{"partition": 0, "offset": offset}]}
        assert_error(http.post(commit, json=body), 422, "invalid_request")
    assert http.post(commit, json={"offsets": [{"partition": 0, "offset": 2}]}).status_code == 200
    described = http.get("/groups/billing").json()
    assert [p["committed"] for p in described["partitions"]] == [2]
    assert http.get("/groups").json() == {"groups": ["billing"]}
    assert http.get("/metrics").status_code == 200
