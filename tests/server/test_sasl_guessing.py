"""Password guessing on the Kafka listener: a guesser learns nothing from the answers, and
is held back per client address, while other users keep getting in."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import scramp
from kio.schema.errors import ErrorCode

from tidings.server.kafka.sasl import FAILURES_ALLOWED

from . import wire
from .conftest import Served
from .test_security import users_file

SASL_HANDSHAKE, SASL_AUTHENTICATE = 17, 36
ALICE = ("alice", "wonderland")


class SaslConnection:
    """One raw connection going through SaslHandshake and SaslAuthenticate."""

    def __init__(self, broker: Served, mechanism: str) -> None:
        self.sock = wire.connect(broker.bootstrap)
        self.correlation_id = 0
        answer = self.call(SASL_HANDSHAKE, 1, {"mechanism": mechanism})
        assert answer.error_code == ErrorCode.none, answer

    def call(self, api_key: int, version: int, fields: dict[str, Any]) -> Any:
        """Send one request on this connection; its parsed response."""
        self.correlation_id += 1
        self.sock.sendall(wire.request_frame(api_key, version, fields, self.correlation_id))
        frame = wire.read_frame(self.sock)
        assert frame is not None, "the broker closed the connection without an answer"
        return wire.parse_response(frame, api_key, version)

    def authenticate(self, token: bytes) -> Any:
        """One SaslAuthenticate round: the server's answer."""
        return self.call(SASL_AUTHENTICATE, 2, {"auth_bytes": token})

    def close(self) -> None:
        """Close the connection."""
        self.sock.close()


def plain(broker: Served, user: str, password: str) -> Any:
    """A PLAIN authentication on a new connection: the SaslAuthenticate answer."""
    connection = SaslConnection(broker, "PLAIN")
    try:
        return connection.authenticate(f"\0{user}\0{password}".encode())
    finally:
        connection.close()


def scram(broker: Served, user: str, password: str) -> tuple[list[Any], str | None]:
    """A SCRAM-SHA-256 exchange on a new connection: each answer, and the salt offered."""
    connection = SaslConnection(broker, "SCRAM-SHA-256")
    client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
    try:
        first = connection.authenticate(client.get_client_first().encode())
        if first.error_code != ErrorCode.none:
            return [first], None
        server_first = first.auth_bytes.decode()
        client.set_server_first(server_first)
        final = connection.authenticate(client.get_client_final().encode())
        salt = dict(part.split("=", 1) for part in server_first.split(","))["s"]
        return [first, final], salt
    finally:
        connection.close()


def outcome(answers: list[Any]) -> list[tuple[int, str | None]]:
    """What a client learns from answers: error codes and messages."""
    return [(a.error_code, a.error_message) for a in answers]


def test_scram_answers_an_unknown_user_as_a_wrong_password(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    wrong_password, _ = scram(broker, "alice", "guess")
    unknown_user, salt = scram(broker, "mallory", "guess")
    assert outcome(unknown_user) == outcome(wrong_password)
    assert outcome(unknown_user) == [
        (ErrorCode.none, None),
        (ErrorCode.sasl_authentication_failed, "invalid user name or password"),
    ]
    _, salt_again = scram(broker, "mallory", "other guess")
    assert salt is not None and salt_again == salt  # a stable salt, as a real user has
    _, other_salt = scram(broker, "trudy", "guess")
    assert other_salt != salt
    answers, _ = scram(broker, *ALICE)
    assert answers[-1].error_code == ErrorCode.none  # the real user still gets in


def test_plain_answers_an_unknown_user_as_a_wrong_password(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    assert outcome([plain(broker, "mallory", "x")]) == outcome([plain(broker, "alice", "x")])


def test_failed_authentications_are_rate_limited_per_address(
    start: Callable[..., Served], tmp_path: Path
) -> None:
    broker = start("--sasl-users", users_file(tmp_path))
    messages = [plain(broker, "alice", f"guess {i}").error_message for i in range(100)]
    assert messages[:FAILURES_ALLOWED] == ["invalid user name or password"] * FAILURES_ALLOWED
    refused = messages[FAILURES_ALLOWED:]
    assert all(
        m.startswith("too many failed authentications from 127.0.0.1, try again in ")
        for m in refused
    ), set(refused)
    # the right password from that address waits too, over SCRAM too
    assert plain(broker, *ALICE).error_message.startswith("too many failed authentications")
    answers, _ = scram(broker, *ALICE)
    assert answers[0].error_code == ErrorCode.sasl_authentication_failed
    assert "too many failed authentications" in broker.log()
    assert plain(broker, "bob", "builder").error_code == ErrorCode.none  # others get in
