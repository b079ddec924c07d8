"""Queues over HTTP: receive jobs, ack, release, reject to the dead letters, extend, depth."""

from __future__ import annotations

import time
from typing import Any

import httpx

import tidings

from .conftest import assert_error, create_topic, produce

RECEIVE = "/queues/jobs/workers/receive"


def receive(http: httpx.Client, **params: int) -> list[dict[str, Any]]:
    """Jobs received over HTTP (waiting up to 2 s unless told otherwise)."""
    response = http.post(RECEIVE, params={"timeout_ms": 2000, **params})
    assert response.status_code == 200, response.text
    jobs: list[dict[str, Any]] = response.json()["jobs"]
    return jobs


def settle(
    http: httpx.Client, job: dict[str, Any], how: str, **params: int | str
) -> httpx.Response:
    """Settle a job over HTTP."""
    return http.post(f"/queues/jobs/workers/jobs/{job['id']}/{how}", params=params)


def test_receive_ack_release_reject(http: httpx.Client, bus: tidings.Bus) -> None:
    create_topic(http, "jobs")
    produce(http, "jobs", *({"key": k, "value": f"job {k}"} for k in "abc"))
    a, b, c = receive(http, max_records=3)
    assert [j["value"] for j in (a, b, c)] == ["job a", "job b", "job c"]
    assert (a["id"], a["deliveries"], a["partition"], a["offset"]) == ("0-0-1", 1, 0, 0)
    assert a["lock_until"] > time.time() * 1000

    assert settle(http, a, "ack").json() == {"id": "0-0-1", "outcome": "accept", "lock_until": None}
    body = assert_error(settle(http, a, "ack"), 409, "already_settled")
    assert "already settled" in body["message"]

    assert settle(http, b, "release").json()["outcome"] == "release"
    [again] = receive(http)
    assert (again["value"], again["deliveries"], again["id"]) == ("job b", 2, "0-1-2")
    assert_error(settle(http, b, "ack"), 409, "already_settled")  # the old delivery's id
    assert settle(http, again, "ack").status_code == 200

    assert settle(http, c, "reject", reason="unreadable").status_code == 200
    dead = bus.consumer()
    dlq = tidings.TopicPartition("jobs.dlq", 0)
    dead.assign(dlq)
    dead.seek(dlq, "earliest")
    [letter] = dead.poll(timeout_ms=2000)
    dead.close()
    assert letter.value == b"job c"

    depth = http.get("/queues/jobs/workers").json()
    assert depth["dead_letter_topic"] == "jobs.dlq"
    assert (depth["available"], depth["in_flight"], depth["dead_letters"]) == (0, 0, 1)
    assert http.get("/queues").json()["queues"] == [
        {
            "group": "workers",
            "topic": "jobs",
            "available": 0,
            "in_flight": 0,
            "delayed": 0,
            "dead_letters": 1,
        }
    ]


def test_jobs_sent_from_python_are_received_over_http(http: httpx.Client, bus: tidings.Bus) -> None:
    queue = bus.queue("jobs", group="workers")
    queue.send(b"\xffbinary", key=b"k", headers={"attempt": b"1"})
    [job] = receive(http)
    assert (job["key"], job["value"], job["headers"]) == (
        "k",
        {"base64": "/2JpbmFyeQ=="},
        [["attempt", "1"]],
    )
    assert settle(http, job, "ack").status_code == 200
    assert sum(d.available + d.in_flight for d in queue.depth()) == 0
    queue.close()


def test_a_delayed_release_and_an_extended_lock(http: httpx.Client) -> None:
    create_topic(http, "jobs")
    produce(http, "jobs", {"value": "slow"}, {"value": "later"})
    slow, later = receive(http, max_records=2)

    extended = settle(http, slow, "extend", ms=60000).json()
    assert extended["outcome"] == "renew"
    assert extended["lock_until"] > slow["lock_until"]

    settle(http, later, "release", delay_ms=60000)
    depth = http.get("/queues/jobs/workers").json()
    assert (depth["in_flight"], depth["delayed"]) == (1, 1)
    assert depth["partitions"] == [{"partition": 0, "available": 0, "in_flight": 1, "delayed": 1}]
    assert receive(http, timeout_ms=0) == []


def test_a_lock_that_expired_cannot_be_settled(http: httpx.Client) -> None:
    create_topic(http, "jobs")
    produce(http, "jobs", {"value": "x"})
    [job] = receive(http, lock_timeout_ms=200)
    time.sleep(0.3)
    body = assert_error(settle(http, job, "ack"), 409, "lock_expired")
    assert "expired" in body["message"]
    [again] = receive(http, lock_timeout_ms=200)
    assert again["deliveries"] == 2


def test_bad_queue_requests(http: httpx.Client) -> None:
    assert_error(http.post("/queues/nope/workers/receive"), 404, "topic_not_found")
    create_topic(http, "jobs")
    assert_error(settle(http, {"id": "0-0-1"}, "ack"), 404, "unknown_job")
    assert_error(http.get("/queues/jobs/workers"), 404, "queue_not_found")
    assert receive(http, timeout_ms=0) == []
    assert_error(settle(http, {"id": "0-9-1"}, "ack"), 404, "unknown_job")
    assert_error(settle(http, {"id": "0-9-1"}, "release", delay_ms=-1), 422, "invalid_request")
    assert_error(settle(http, {"id": "0-9-1"}, "extend"), 422, "invalid_request")
    assert_error(http.post(f"{RECEIVE}?max_deliveries=9"), 409, "options_conflict")
    assert_error(http.post(f"{RECEIVE}?max_records=0"), 422, "invalid_request")
    assert http.get("/queues/jobs/workers").status_code == 200
