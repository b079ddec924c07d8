"""The HTTP API of `tidings serve` takes the SASL users (or bearer tokens) and no one else,
stays on the loopback unless told, and the broker warns about what it leaves open."""

from __future__ import annotations

import os
import ssl
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from confluent_kafka import Producer

from tidings.server.kafka.sasl import FAILURES_ALLOWED

from .conftest import TIDINGS, Served
from .test_sasl_guessing import ALICE, plain
from .test_security import tls_files, users_file


def test_the_http_api_takes_the_sasl_users_and_no_one_else(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    assert "http: basic" in broker.log()
    producer = Producer(
        {
            "bootstrap.servers": broker.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "alice",
            "sasl.password": "wonderland",
        }
    )
    producer.produce("private", b"secret")
    assert producer.flush(20) == 0
    with httpx.Client(base_url=broker.http, timeout=15) as anonymous:
        read = anonymous.get("/topics/private/partitions/0/records", params={"offset": 0})
        assert read.status_code == 401
        assert read.headers["www-authenticate"].startswith("Basic")
        assert anonymous.post("/topics/private/records", json={"records": [{}]}).status_code == 401
        assert anonymous.delete("/topics/private").status_code == 401
    with httpx.Client(base_url=broker.http, auth=("bob", "wrong"), timeout=15) as guesser:
        assert guesser.get("/topics").status_code == 401
    with httpx.Client(base_url=broker.http, auth=ALICE, timeout=15) as alice:
        read = alice.get("/topics/private/partitions/0/records", params={"offset": 0})
        assert [r["value"] for r in read.json()["records"]] == ["secret"]
        assert alice.delete("/topics/private").status_code == 204


def test_bearer_tokens_open_the_http_api(start: Callable[..., Served], tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.toml"
    tokens.write_text('ci = "a-long-random-token"\n')
    broker = start("--http-tokens", str(tokens))
    assert "http: bearer" in broker.log()
    with httpx.Client(base_url=broker.http, timeout=15) as http:
        assert http.get("/topics").status_code == 401
        bearer = {"authorization": "Bearer a-long-random-token"}
        assert http.get("/topics", headers=bearer).status_code == 200


def test_with_tls_the_http_api_is_https_and_takes_basic(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    ca, cert, key = tls_files(tmp_path)
    broker = start("--tls-cert", cert, "--tls-key", key, "--sasl-users", users_file(tmp_path))
    assert broker.http.startswith("https://")
    with httpx.Client(base_url=broker.http, verify=ssl_context(ca), timeout=15) as http:
        assert http.get("/topics").status_code == 401
        assert http.get("/topics", auth=ALICE).status_code == 200
    plain = broker.http.replace("https", "http", 1)
    with pytest.raises(httpx.HTTPError):  # no plain HTTP beside it
        httpx.get(f"{plain}/topics", auth=ALICE, timeout=15)


def ssl_context(ca: str) -> ssl.SSLContext:
    """A client TLS context that trusts `ca`."""
    return ssl.create_default_context(cafile=ca)


def test_http_and_kafka_share_the_count_of_failures(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    for i in range(FAILURES_ALLOWED):
        plain(broker, "alice", f"guess {i}")
    with httpx.Client(base_url=broker.http, timeout=15) as http:
        limited = http.get("/topics", auth=ALICE)
        assert limited.status_code == 429
        assert "too many failed authentications" in limited.json()["message"]
        assert http.get("/topics", auth=("bob", "builder")).status_code == 200


def test_exposure_is_warned_about_at_start(start: Callable[..., Served], tmp_path: Path) -> None:
    with_plain = start("--sasl-users", users_file(tmp_path), name="plain")
    assert "SASL PLAIN without TLS sends passwords in clear text" in with_plain.log()
    scram_only = start(
        "--sasl-users", users_file(tmp_path), "--sasl-mechanisms", "SCRAM-SHA-256", name="scram"
    )
    assert "WARNING" not in scram_only.log()
    open_to_all = start("--kafka", "0.0.0.0:0", name="open")
    assert "takes clients without authentication" in open_to_all.log()


def serve_output(tmp_path: Path, *args: str) -> tuple[int, str]:
    """Run `tidings serve` that is expected to stop at once: its status and output."""
    done = subprocess.run(
        [TIDINGS, "serve", "--data", str(tmp_path / "refused"), "--kafka", "127.0.0.1:0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def test_an_open_http_api_beyond_the_loopback_needs_an_explicit_flag(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    status, output = serve_output(tmp_path, "--http", "0.0.0.0:0")
    assert status != 0
    assert "--allow-anonymous-http" in output and "--sasl-users" in output
    allowed = start("--http", "0.0.0.0:0", "--allow-anonymous-http", name="anonymous")
    assert "the HTTP API on 0.0.0.0 is open to anyone" in allowed.log()
    assert "http: none (anonymous on 0.0.0.0)" in allowed.log()
    secured = start("--http", "0.0.0.0:0", "--sasl-users", users_file(tmp_path), name="users")
    assert "refuses Basic credentials over plain HTTP" in secured.log()
    port = secured.http.rsplit(":", 1)[1]
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=ALICE, timeout=15) as http:
        assert http.get("/topics").status_code == 200  # from this host, Basic is fine


def test_the_store_is_its_owners_alone(broker: Served) -> None:
    with broker.bus() as bus:  # another process opens it too: its files are as private
        bus.create_topic("t")
        bus.publish("t", b"x")
    modes = {
        path.name: stat.S_IMODE(os.stat(path).st_mode)
        for path in [broker.data, *broker.data.iterdir(), *broker.data.glob("*-notify/*")]
    }
    assert modes.pop(broker.data.name) == 0o700
    assert modes.pop("tidings.db-notify") == 0o700
    assert {"tidings.db", "tidings.db-wal", "tidings.db-shm"} <= set(modes)
    assert set(modes.values()) == {0o600}, modes
