"""The Kafka listener: frames in, requests answered in order per connection, responses out.

As in Kafka, a connection's requests are answered in order, one at a time: a client that
wants a fetch to wait does not block its other connections, and a produce response never
overtakes an earlier one. One exception keeps producers fast on a store that syncs every
commit: consecutive produce requests are taken without waiting for the one before to be
durable, so that one commit stores them all; their answers still go out in order, each
once its records are durable. A frame the broker cannot read closes that connection only;
every other connection goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from typing import Any

from kio.schema.errors import ErrorCode

from tidings.server.acls import ANONYMOUS
from tidings.server.kafka import protocol
from tidings.server.kafka.apis import (
    API_VERSIONS,
    PIPELINED,
    SUPPORTED,
    Fields,
    KafkaApis,
    Later,
    api_version_list,
)
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
MAX_IN_FLIGHT = 100
"""Produce requests of one connection under way at once; past it, reading waits."""


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
        self.apis.fetches.release()  # a fetch waiting for records is answered now
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
        answers = _Answers(writer, peer)
        try:
            await self._serve(task, reader, answers, peer)
        except (Exception, asyncio.CancelledError) as e:
            _report(peer, e)
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(answers.written(), SHUTDOWN_GRACE_S)
            self._connections.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, answers: _Answers, peer: Any
    ) -> None:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        auth = self.sasl.session() if self.sasl is not None else None
        while not self._closing:
            if len(answers) >= MAX_IN_FLIGHT:
                await answers.written()
            (size,) = protocol.SIZE.unpack(await reader.readexactly(4))
            if not 0 < size <= self.max_request_bytes:
                raise protocol.ProtocolError(
                    f"a request of {size} bytes is outside 1..{self.max_request_bytes} "
                    f"(socket.request.max.bytes)"
                )
            frame = await reader.readexactly(size)
            self._connections[task] = True
            try:
                if protocol.peek_header(frame)[0] not in PIPELINED:
                    await answers.written()
                response, refused = await self._answer(frame, host, auth)
                if isinstance(response, tuple):
                    answers.add(*response)
                elif response is not None:
                    await answers.send(response)
                self.requests += 1
                if refused is not None:
                    raise protocol.ProtocolError(refused)
            finally:
                self._connections[task] = False

    async def _answer(
        self, frame: bytes, host: str, auth: SaslSession | None
    ) -> tuple[memoryview | tuple[protocol.Request, Later] | None, str | None]:
        """The response frame (or the request and its answer under way), and the reason to
        close the connection after it (if any)."""
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
        fields: Fields | Later | None
        if request.api_key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):
            fields, refused = _sasl(request, auth)
        elif auth is not None and not auth.authenticated and request.api_key != API_VERSIONS:
            raise protocol.ProtocolError(
                f"{type(request.body).__name__} before SASL authentication; this listener "
                f"needs sasl.mechanism {' or '.join(auth.config.mechanisms)} and a user"
            )
        else:
            principal = f"User:{auth.user}" if auth is not None and auth.user else ANONYMOUS
            protocol.CALLER.set(protocol.Caller(request.client_id or "unknown", host, principal))
            fields = await self.apis.handlers[request.api_key](request.body, request.version)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s v%d from %s: %.1f ms",
                type(request.body).__name__,
                request.version,
                request.client_id,
                (time.perf_counter() - started) * 1000,
            )
        if isinstance(fields, asyncio.Future):
            return (request, fields), refused
        return _response_frame(request, fields), refused


class _Answers:
    """The responses of one connection still to be written, in the order of its requests.

    A request whose answer is under way (a produce waiting for its commit) is queued, and a
    task writes the queue's head as soon as its answer is ready. A failed answer closes the
    connection; the answers after it are not sent, though their work is done.
    """

    def __init__(self, writer: asyncio.StreamWriter, peer: Any) -> None:
        self._writer = writer
        self._peer = peer
        self._queue: deque[tuple[protocol.Request, Later]] = deque()
        self._writing: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, request: protocol.Request, answer: Later) -> None:
        """Queue a request whose answer is under way: answered after those before it."""
        if self._writer.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._queue.append((request, answer))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_in_order())

    async def send(self, response: memoryview) -> None:
        """Write a response ready now, after every queued one."""
        await self.written()
        if self._writer.is_closing():
            raise ConnectionResetError("the connection is closed")
        self._writer.write(response)
        await self._writer.drain()

    async def written(self) -> None:
        """Return once every queued response is written, or the connection has failed."""
        if self._writing is not None:
            await asyncio.shield(self._writing)

    async def _write_in_order(self) -> None:
        queue = self._queue
        try:
            while queue:
                request, answer = queue[0]
                response = _response_frame(request, await answer)
                queue.popleft()
                if response is not None:
                    self._writer.write(response)
                    await self._writer.drain()
        except (Exception, asyncio.CancelledError) as e:
            _report(self._peer, e)
            queue.clear()  # their records are stored all the same: a retry is recognised
            self._writer.close()  # the connection's reader stops too
        finally:
            self._writing = None


def _response_frame(request: protocol.Request, fields: Fields | None) -> memoryview | None:
    if fields is None:  # acks=0: the client expects no answer
        return None
    return protocol.write_response(request.api_key, request.version, request.correlation_id, fields)


def _report(peer: Any, error: BaseException) -> None:
    """Log why a connection closes (nothing when the client went away or at shutdown)."""
    if isinstance(error, ConnectionError | asyncio.IncompleteReadError | asyncio.CancelledError):
        return
    if isinstance(error, ssl.SSLError):
        log.warning("closing the connection from %s: TLS failed: %s", _peer(peer), error)
    elif isinstance(error, protocol.ProtocolError):
        log.warning("closing the connection from %s: %s", _peer(peer), error)
    else:
        log.error(
            "closing the connection from %s after an internal error",
            _peer(peer),
            exc_info=error,
        )


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
