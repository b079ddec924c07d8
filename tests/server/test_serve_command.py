"""`tidings serve` settings: flags over environment variables over a config file."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from . import wire
from .conftest import TIDINGS, Served


def partitions_of_a_new_topic(broker: Served, topic: str) -> int:
    """Ask for a topic's metadata (creating it) and count its partitions."""
    response = wire.call(
        broker.bootstrap, 3, 12, {"topics": [{"name": topic}], "allow_auto_topic_creation": True}
    )
    return len(response.topics[0].partitions)


def test_a_config_file_sets_defaults_and_variables_and_flags_override_it(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    config = tmp_path / "tidings.toml"
    config.write_text("num_partitions = 3\nauto_create_topics = true\n")
    from_file = start("--config", str(config), name="a")
    assert partitions_of_a_new_topic(from_file, "t") == 3
    from_env = start("--config", str(config), name="b", env={"TIDINGS_NUM_PARTITIONS": "5"})
    assert partitions_of_a_new_topic(from_env, "t") == 5
    from_flag = start(
        "--config", str(config), "--num-partitions", "2", name="c",
        env={"TIDINGS_NUM_PARTITIONS": "5"},
    )  # fmt: skip
    assert partitions_of_a_new_topic(from_flag, "t") == 2


def serve_fails(tmp_path: Path, *args: str) -> str:
    """Run `tidings serve` expecting it to refuse to start; what it said."""
    done = subprocess.run(
        [TIDINGS, "serve", "--data", str(tmp_path / "d"), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    return done.stderr


def test_bad_settings_are_refused_before_serving(tmp_path: Path) -> None:
    assert "is not HOST:PORT" in serve_fails(tmp_path, "--kafka", "localhost")
    bad = tmp_path / "bad.toml"
    bad.write_text("kafak = '127.0.0.1:1'\n")
    assert "unknown settings kafak" in serve_fails(tmp_path, "--config", str(bad))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = serve_fails(tmp_path, "--kafka", f"127.0.0.1:{port}")
    assert f"cannot listen for Kafka clients on 127.0.0.1:{port}" in message
    assert "--kafka HOST:PORT" in message


@pytest.mark.parametrize("url", ["kafka://127.0.0.1:9", "nats://127.0.0.1:9"])
def test_serve_refuses_an_engine_that_does_not_serve_its_log(url: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [TIDINGS, "--url", url, "serve", "--kafka", "127.0.0.1:0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode != 0
    assert f"tidings serve runs on the embedded log (sqlite:// or memory://), not {url!r}" in (
        done.stderr
    )
    assert list(tmp_path.iterdir()) == []  # nothing was created


def test_the_http_api_serves_the_same_log_as_the_kafka_listener(broker: Served) -> None:
    response = wire.call(
        broker.bootstrap, 3, 12, {"topics": [{"name": "shared"}], "allow_auto_topic_creation": True}
    )
    assert response.topics[0].name == "shared"
    with httpx.Client(base_url=broker.http, timeout=15) as http:
        assert http.get("/health").status_code == 200
        written = http.post("/topics/shared/records", json={"records": [{"value": "over http"}]})
        assert written.status_code == 200, written.text
        read = http.get("/topics/shared/partitions/0/records", params={"offset": 0})
        assert [r["value"] for r in read.json()["records"]] == ["over http"]
        assert "tidings" in http.get("/metrics").text
