"""The Kafka listener: frames in, one request at a time per connection, responses out.

As in Kafka, a connection's requests are answered in order, one at a time: a client that
wants a fetch to wait does not block its other connections, and a produce response never
overtakes an earlier one. A frame the broker cannot read closes that connection only;
every other connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.server.kafka import protocol
from tidings.server.kafka.apis import API_VERSIONS, SUPPORTED, KafkaApis, api_version_list
from tidings.server.kafka.sasl import (
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    AuthenticationFailed,
    SaslConfig,
    SaslSession,
)

log = logging.getLogger("tidings.server.kafka")

MAX_REQUEST_BYTES = 100 << 20
"""socket.request.max.bytes: a larger frame closes the connection."""
READ_BUFFER = 4 << 20
"""Bytes a connection buffers before it stops reading: a 1 MiB produce in a few reads."""
SHUTDOWN_GRACE_S = 10.0
"""How long a shutdown waits for requests in progress to be answered."""


class KafkaServer:
    """Serves the Kafka protocol on one address."""

    def __init__(
        self,
        apis: KafkaApis,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        sasl: SaslConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.apis = apis
        self.host = host
        self.port = port
        self.max_request_bytes = max_request_bytes
        self.sasl = sasl
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], bool] = {}
        """Every open connection's task, and whether it is answering a request now."""
        self._closing = False
        self.requests = 0
        """Requests answered since start (for metrics)."""

    async def start(self) -> tuple[str, int]:
        """Listen; the address actually bound (port 0 picks a free one)."""
        self._server = await asyncio.start_server(
            self._accept, self.host, self.port, ssl=self.tls, limit=READ_BUFFER
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        self.port = port
        return host, port

    async def close(self) -> None:
        """Stop listening, answer the requests in progress, close every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        for task, busy in list(self._connections.items()):
            if not busy:
                task.cancel()
        busy_tasks = [t for t, busy in self._connections.items() if busy]
        if busy_tasks:
            _, late = await asyncio.wait(busy_tasks, timeout=SHUTDOWN_GRACE_S)
            for task in late:
                task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = False
        peer = writer.get_extra_info("peername")
        try:
            await self._serve(task, reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        except ssl.SSLError as e:
            log.warning("closing the connection from %s: TLS failed: %s", _peer(peer), e)
        except asyncio.CancelledError:
            pass  # shutting down
        except protocol.ProtocolError as e:
            log.warning("closing the connection from %s: %s", _peer(peer), e)
        except Exception:
            log.exception("closing the connection from %s after an internal error", _peer(peer))
        finally:
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self,
        task: asyncio.Task[None],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Any,
    ) -> None:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        auth = self.sasl.session() if self.sasl is not None else None
        while not self._closing:
            (size,) = protocol.SIZE.unpack(await reader.readexactly(4))
            if not 0 < size <= self.max_request_bytes:
                raise protocol.ProtocolError(
                    f"a request of {size} bytes is outside 1..{self.max_request_bytes} "
                    f"(socket.request.max.bytes)"
                )
            frame = await reader.readexactly(size)
            self._connections[task] = True
            try:
                response, refused = await self._answer(frame, host, auth)
                if response is not None:
                    writer.write(response)
                    await writer.drain()
                self.requests += 1
                if refused is not None:
                    raise protocol.ProtocolError(refused)
            finally:
                self._connections[task] = False

    async def _answer(
        self, frame: bytes, host: str, auth: SaslSession | None
    ) -> tuple[memoryview | None, str | None]:
        """The response frame, and the reason to close the connection after it (if any)."""
        try:
            request = protocol.read_request(frame, SUPPORTED)
        except protocol.UnsupportedVersion as e:
            if e.api_key != API_VERSIONS:
                raise protocol.ProtocolError(
                    f"{e}; this broker serves "
                    + ", ".join(f"{k}: v{lo}-v{hi}" for k, (lo, hi) in sorted(SUPPORTED.items()))
                ) from None
            # An ApiVersions the broker cannot read is answered in v0, the format every
            # client reads, with the versions it can use instead (KIP-511).
            versions = {"error_code": ErrorCode.unsupported_version, "api_keys": api_version_list()}
            return protocol.write_response(API_VERSIONS, 0, e.correlation_id, versions), None
        started = time.perf_counter()
        refused = None
        fields: dict[str, Any] | None
        if request.api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            fields, refused = _sasl(request, auth)
        elif auth is not None and not auth.authenticated and request.api_key != API_VERSIONS:
            raise protocol.ProtocolError(
                f"{type(request.body).__name__} before SASL authentication; this listener "
                f"needs sasl.mechanism {' or '.join(auth.config.mechanisms)} and a user"
            )
        else:
            protocol.CALLER.set(protocol.Caller(request.client_id or "unknown", host))
            fields = await self.apis.handlers[request.api_key](request.body, request.version)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s v%d from %s: %.1f ms",
                type(request.body).__name__,
                request.version,
                request.client_id,
                (time.perf_counter() - started) * 1000,
            )
        if fields is None:  # acks=0: the client expects no answer
            return None, refused
        response = protocol.write_response(
            request.api_key, request.version, request.correlation_id, fields
        )
        return response, refused


def _sasl(request: protocol.Request, auth: SaslSession | None) -> tuple[dict[str, Any], str | None]:
    """Answer SaslHandshake or SaslAuthenticate; a reason to close after a failure."""
    if auth is None:
        if request.api_key == SASL_HANDSHAKE:
            return {"error_code": ErrorCode.unsupported_sasl_mechanism, "mechanisms": []}, (
                "SASL is not enabled on this listener; connect without sasl settings"
            )
        return {}, "SASL is not enabled on this listener"
    if request.api_key == SASL_HANDSHAKE:
        return auth.handshake(request.body), None
    try:
        token = auth.authenticate(request.body.auth_bytes)
    except AuthenticationFailed as e:
        log.warning("SASL authentication failed: %s", e)
        return {"error_code": ErrorCode.sasl_authentication_failed, "error_message": str(e)}, str(e)
    return {"auth_bytes": token}, None


def _peer(peer: Any) -> str:
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
