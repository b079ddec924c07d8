"""Who may call the HTTP API: credentials, Host names, and requests a web page could forge."""

from __future__ import annotations

import base64
from collections.abc import Callable

import httpx
import pytest

import tidings
from tidings.core.errors import ConfigurationError
from tidings.server.http.access import HttpAccess, Refused
from tidings.server.kafka.sasl import FAILURES_ALLOWED, SaslConfig

from .conftest import ServerThread, assert_error, client_of, create_topic, produce

USERS = {"alice": "wonderland", "bob": "builder"}
TOKENS = {"ci": "s3cret-token"}


def basic(user: str, password: str) -> dict[str, str]:
    """An Authorization header for HTTP Basic."""
    return {"authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ALICE = basic("alice", "wonderland")


@pytest.fixture
def secured(start: Callable[..., ServerThread]) -> ServerThread:
    """A server whose API takes the SASL users (Basic) and a bearer token, on the loopback."""
    access = HttpAccess.for_listener("127.0.0.1", sasl=SaslConfig(USERS), tokens=TOKENS)
    return start(access=access)


def test_anonymous_requests_cannot_read_write_or_delete(
    secured: ServerThread, bus: tidings.Bus
) -> None:
    bus.create_topic("private")
    bus.publish("private", b"secret")
    with client_of(secured) as http:
        refused = [
            http.get("/topics"),
            http.get("/topics/private/partitions/0/records", params={"offset": 0}),
            http.post("/topics/private/records", json={"records": [{"value": "forged"}]}),
            http.post("/topics", json={"name": "planted"}),
            http.delete("/topics/private"),
            http.post("/groups/thieves/records", params={"topic": "private", "timeout_ms": 0}),
        ]
        for response in refused:
            body = assert_error(response, 401, "unauthorized")
            assert "HTTP Basic" in body["message"] and "bearer" in body["message"]
            challenges = response.headers.get_list("www-authenticate")
            assert challenges == [
                'Basic realm="tidings", charset="UTF-8"',
                'Bearer realm="tidings"',
            ]
    assert [t.name for t in bus.list_topics()] == ["private"]
    assert bus.describe_topic("private").records == 1
    assert bus.list_groups() == []


def test_every_route_needs_credentials_docs_metrics_health_and_tails(
    secured: ServerThread,
) -> None:
    with client_of(secured) as http:
        for path in ["/docs", "/redoc", "/openapi.json", "/metrics", "/health", "/nowhere"]:
            assert http.get(path).status_code == 401, path
        assert http.get("/topics/x/tail").status_code == 401
        assert http.get("/openapi.json", headers=ALICE).status_code == 200
        assert http.get("/metrics", headers=ALICE).status_code == 200


def test_the_right_password_or_token_reads_writes_and_deletes(
    secured: ServerThread, bus: tidings.Bus
) -> None:
    with client_of(secured) as http:
        http.headers.update(ALICE)
        create_topic(http, "private")
        assert produce(http, "private", {"value": "mine"})[0]["offset"] == 0
        records = http.get("/topics/private/partitions/0/records", params={"offset": 0})
        assert [r["value"] for r in records.json()["records"]] == ["mine"]
        health = http.get("/health")
        assert health.json()["auth"] == "basic, bearer"
        assert health.headers["x-tidings-auth"] == "basic, bearer"
        with http.stream("GET", "/topics/private/tail", params={"from": "beginning"}) as tail:
            assert tail.status_code == 200
            lines = tail.iter_lines()
            assert any('"mine"' in line for line in (next(lines) for _ in range(4)))
    with client_of(secured) as http:
        http.headers["authorization"] = f"Bearer {TOKENS['ci']}"
        assert http.delete("/topics/private").status_code == 204
    assert bus.list_topics() == []


def test_wrong_credentials_are_refused_then_rate_limited(secured: ServerThread) -> None:
    with client_of(secured) as http:
        for wrong in [
            basic("mallory", "wonderland"),
            {"authorization": "Bearer not-a-token"},
            {"authorization": "Basic !!!"},
            {"authorization": "Digest whatever"},
        ]:
            assert_error(http.get("/topics", headers=wrong), 401, "unauthorized")
        guesses = [basic("alice", f"guess {i}") for i in range(30)]
        statuses = [http.get("/topics", headers=h).status_code for h in guesses]
        assert statuses[:FAILURES_ALLOWED] == [401] * FAILURES_ALLOWED
        assert set(statuses[FAILURES_ALLOWED:]) == {429}
        limited = http.get("/topics", headers=ALICE)  # even the right password, for now
        body = assert_error(limited, 429, "too_many_failures")
        assert "too many failed authentications from 127.0.0.1, try again in" in body["message"]
        assert int(limited.headers["retry-after"]) > 0
        # another user of the same address is not held back by alice's guesser
        assert http.get("/topics", headers=basic("bob", "builder")).status_code == 200


def test_basic_over_plain_http_from_another_host_is_refused() -> None:
    # the rules of a listener on another interface, without TLS
    access = HttpAccess.for_listener("192.0.2.7", sasl=SaslConfig(USERS), tokens=TOKENS)
    assert access.mode == "basic (from this host only), bearer"
    remote = "192.0.2.99"
    with pytest.raises(Refused, match="--tls-cert") as refused:
        access.user(ALICE["authorization"], remote)
    assert refused.value.status == 401
    assert access.challenges(remote) == ['Bearer realm="tidings"']
    assert access.user(f"Bearer {TOKENS['ci']}", remote) == "ci"
    assert access.user(ALICE["authorization"], "127.0.0.1") == "alice"  # never left the host
    with_tls = HttpAccess.for_listener("192.0.2.7", sasl=SaslConfig(USERS), tls=True)
    assert with_tls.mode == "basic"
    assert with_tls.user(ALICE["authorization"], remote) == "alice"


def test_an_open_api_beyond_the_loopback_needs_an_explicit_choice() -> None:
    with pytest.raises(ConfigurationError, match="--allow-anonymous-http"):
        HttpAccess.for_listener("0.0.0.0")
    assert HttpAccess.for_listener("0.0.0.0", allow_anonymous=True).mode == (
        "none (anonymous on 0.0.0.0)"
    )
    assert HttpAccess.for_listener("::1").mode == "none (loopback only)"


def test_without_users_the_api_says_it_is_open_on_the_loopback_only(
    http: httpx.Client, bus_url: str
) -> None:
    health = http.get("/health")
    assert health.json() == {"status": "ok", "url": bus_url, "auth": "none (loopback only)"}
    assert health.headers["x-tidings-auth"] == "none (loopback only)"
    assert http.get("/nowhere").headers["x-tidings-auth"] == "none (loopback only)"


def test_a_foreign_host_name_is_refused_against_dns_rebinding(
    start: Callable[..., ServerThread], bus: tidings.Bus
) -> None:
    access = HttpAccess.for_listener("127.0.0.1", allowed_hosts=("broker.internal",))
    with client_of(start(access=access)) as http:
        for host in ["evil.example", "evil.example:80", "127.0.0.1.evil.example", ""]:
            response = http.post("/topics", json={"name": "rebound"}, headers={"host": host})
            body = assert_error(response, 421, "misdirected_request")
            assert "--http-allowed-hosts" in body["message"]
        for host in ["localhost", "127.0.0.1:8080", "[::1]:8080", "broker.internal:80"]:
            assert http.get("/topics", headers={"host": host}).status_code == 200, host
    assert bus.list_topics() == []


def test_a_web_page_cannot_commit_offsets_or_change_anything(
    http: httpx.Client, bus: tidings.Bus
) -> None:
    bus.create_topic("orders")
    bus.publish("orders", b"a")
    bus.publish("orders", b"b")
    page = "https://evil.example"
    # what a form or a no-cors fetch of any page can send without asking the server first
    fetch = "/groups/billing/records?topic=orders&auto_offset_reset=earliest&timeout_ms=0"
    commit = "/groups/billing/commit?topic=orders"
    for path in (fetch, commit):
        response = http.post(
            path, content=b"{}", headers={"content-type": "text/plain", "origin": page}
        )
        assert_error(response, 415, "unsupported_media_type")
        form = http.post(path, data={"offsets": "1"})
        assert_error(form, 415, "unsupported_media_type")
        bodyless = http.post(path, headers={"origin": page})
        body = assert_error(bodyless, 403, "cross_origin")
        assert "evil.example" in body["message"]
    assert_error(
        http.request(
            "DELETE", "/topics/orders", content=b"x", headers={"content-type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    assert bus.list_groups() == []
    assert bus.describe_topic("orders").records == 2
    # a program (no Origin) and a page of the server itself still may
    assert http.post(fetch).status_code == 200
    own = http.post(commit, headers={"origin": str(http.base_url).rstrip("/")})
    assert own.status_code == 200, own.text
    assert bus.describe_group("billing").partitions[0].committed == 2


def test_an_empty_bearer_token_is_refused_at_start() -> None:
    with pytest.raises(ConfigurationError, match="bearer tokens of ci, ops are empty"):
        HttpAccess.for_listener("127.0.0.1", tokens={"ci": "", "ops": " ", "ok": "x" * 32})
