"""Raw Kafka frames for tests that speak to the broker below any client library."""

from __future__ import annotations

import io
import socket
import struct
from typing import Any

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

from tidings.server.kafka.protocol import build


def request_frame(
    api_key: int,
    version: int,
    fields: dict[str, Any],
    correlation_id: int = 1,
    client_id: str = "wire-test",
) -> bytes:
    """A request frame (size prefix included) built with Kafka's schemas."""
    schema = load_request_schema(api_key, version)
    header_schema = schema.__header_schema__
    out = io.BytesIO()
    header = {
        "request_api_key": api_key,
        "request_api_version": version,
        "correlation_id": correlation_id,
        "client_id": client_id,
    }
    entity_writer(header_schema)(out, build(header_schema, header))
    entity_writer(schema)(out, build(schema, fields))
    body = out.getvalue()
    return struct.pack(">i", len(body)) + body


def read_frame(sock: socket.socket) -> bytes | None:
    """One response frame without its size prefix; None if the broker closed the connection."""
    head = _exactly(sock, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">i", head)
    return _exactly(sock, size)


def parse_response(frame: bytes, api_key: int, version: int) -> Any:
    """The response entity in a frame."""
    schema = load_response_schema(api_key, version)
    _, offset = entity_reader(schema.__header_schema__)(frame, 0)
    body, _ = entity_reader(schema)(frame, offset)
    return body


def call(
    address: str, api_key: int, version: int, fields: dict[str, Any], client_id: str = "wire-test"
) -> Any:
    """Send one request on a new connection and return the parsed response."""
    with connect(address) as sock:
        sock.sendall(request_frame(api_key, version, fields, client_id=client_id))
        frame = read_frame(sock)
        assert frame is not None, "the broker closed the connection"
        return parse_response(frame, api_key, version)


def connect(address: str) -> socket.socket:
    """A TCP connection to HOST:PORT with a timeout, so a silent broker fails the test."""
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=15)


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data
