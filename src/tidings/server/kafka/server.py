"""The Kafka listener: frames in, requests answered in order per connection, responses out.

As in Kafka, a connection's requests are answered in order, one at a time: a client that
wants a fetch to wait does not block its other connections, and a produce response never
overtakes an earlier one. One exception keeps producers fast on a store that syncs every
commit: consecutive produce requests are taken without waiting for the one before to be
durable, so that one commit stores them all; their answers still go out in order, each
once its records are durable. A frame the broker cannot read closes that connection only;
every other connection goes on.

Resources are bounded before a frame is read (see Limits): a frame's size is checked on
its 4-byte prefix, so a connection never makes the broker hold more than the limit; one
that has not authenticated yet may send only small frames; all connections together read
and hold at most a budget of request bytes, and wait their turn for it (RequestBudget);
connections are counted in total and per client address; and a connection that is idle,
or stalls in the middle of a frame, is closed after a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import Counter, deque
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
from tidings.server.kafka.budget import RequestBudget
from tidings.server.kafka.refusals import api_name, unserved_reason, unserved_refusal
from tidings.server.kafka.sasl import (
    SASL_AUTHENTICATE,
    SASL_HANDSHAKE,
    AuthenticationFailed,
    SaslConfig,
    SaslSession,
)
from tidings.server.limits import Limits

log = logging.getLogger("tidings.server.kafka")

READ_BUFFER = 4 << 20
"""Bytes a connection buffers before it stops reading: a 1 MiB produce in a few reads."""
SHUTDOWN_GRACE_S = 10.0
"""How long a shutdown waits for requests in progress to be answered."""
MAX_IN_FLIGHT = 100
"""Produce requests of one connection under way at once; past it, reading waits."""


WAITING = frozenset({1, 11, 14})
"""APIs whose answer may wait long (Fetch's long poll, JoinGroup and SyncGroup for their
group): while one waits, the connection is watched for the client leaving."""
LEFT_CHECK_S = 1.0
"""How often a waiting request looks whether its client has left."""


class KafkaServer:
    """Serves the Kafka protocol on one address."""

    def __init__(
        self,
        apis: KafkaApis,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        limits: Limits | None = None,
        sasl: SaslConfig | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.apis = apis
        self.host = host
        self.port = port
        self.limits = limits or Limits()
        """Request sizes, connections and timeouts (Limits' defaults when None)."""
        self.budget = RequestBudget(self.limits.max_queued_request_bytes)
        """Request bytes all connections together may read and hold at once."""
        self.sasl = sasl
        self.tls = tls
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], bool] = {}
        """Every open connection's task, and whether it is answering a request now."""
        self._per_host: Counter[str] = Counter()
        """Open connections by client address."""
        self._states: dict[asyncio.Task[None], _Connection] = {}
        self._watchdog: asyncio.Task[None] | None = None
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
        self._watchdog = asyncio.create_task(self._watch_forever())
        return host, port

    async def close(self) -> None:
        """Stop listening, answer the requests in progress, close every connection."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        if self._watchdog is not None:
            self._watchdog.cancel()
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
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        refused = self._refusal(host)
        if refused is not None:
            log.warning("refusing a connection from %s: %s", _peer(peer), refused)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            return
        self._connections[task] = False
        self._per_host[host] += 1
        self._states[task] = _Connection(
            writer, peer, self.sasl.session(host) if self.sasl is not None else None
        )
        answers = _Answers(writer, peer)
        try:
            await self._serve(task, reader, answers, host)
        except (Exception, asyncio.CancelledError) as e:
            _report(peer, e)
        finally:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(answers.written(), SHUTDOWN_GRACE_S)
            self._connections.pop(task, None)
            self._states.pop(task, None)
            self._per_host[host] -= 1
            if not self._per_host[host]:
                del self._per_host[host]
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _refusal(self, host: str) -> str | None:
        """Why a new connection from `host` is refused (None: it is served)."""
        limits = self.limits
        if len(self._connections) >= limits.max_connections:
            return (
                f"the listener has {len(self._connections)} connections, its limit "
                f"(max_connections={limits.max_connections})"
            )
        if self._per_host[host] >= limits.max_connections_per_ip:
            return (
                f"{host} has {self._per_host[host]} connections, the limit per address "
                f"(max_connections_per_ip={limits.max_connections_per_ip})"
            )
        return None

    async def _serve(
        self, task: asyncio.Task[None], reader: asyncio.StreamReader, answers: _Answers, host: str
    ) -> None:
        conn = self._states[task]
        while not self._closing:
            if len(answers) >= MAX_IN_FLIGHT:
                await answers.written()
            size = await self._read_size(reader, conn)
            await self._take(task, reader, answers, host, size)

    async def _read_size(self, reader: asyncio.StreamReader, conn: _Connection) -> int:
        """The next frame's size, checked before anything else of it is read: against the
        connection's limit (a small one before authentication) and the request budget. The
        watchdog closes the connection if no frame begins in time."""
        limits = self.limits
        clock = asyncio.get_running_loop().time
        conn.idle_since = clock()
        first = await reader.readexactly(1)
        conn.idle_since, conn.frame_since = None, clock()
        size: int = protocol.SIZE.unpack(first + await reader.readexactly(3))[0]
        conn.frame_since = None
        if conn.auth is not None and not conn.auth.authenticated:
            if not 0 < size <= limits.max_unauthenticated_bytes:
                raise protocol.ProtocolError(
                    f"a request of {size} bytes before authentication is outside "
                    f"1..{limits.max_unauthenticated_bytes}; authenticate first: "
                    f"until then only ApiVersions and SASL requests are read"
                )
        elif not 0 < size <= limits.max_request_bytes:
            raise protocol.ProtocolError(
                f"a request of {size} bytes is outside 1..{limits.max_request_bytes} "
                f"(max_request_bytes, Kafka's socket.request.max.bytes); send smaller "
                f"requests or raise the broker's limit"
            )
        if size > self.budget.capacity:
            raise protocol.ProtocolError(
                f"a request of {size} bytes is larger than the whole request budget "
                f"(max_queued_request_bytes={self.budget.capacity}, Kafka's "
                f"queued.max.request.bytes); send smaller requests or raise the budget"
            )
        return size

    async def _take(
        self,
        task: asyncio.Task[None],
        reader: asyncio.StreamReader,
        answers: _Answers,
        host: str,
        size: int,
    ) -> None:
        """Reserve a frame's size from the budget, read the frame and answer it (or queue
        its answer); the reservation is given back once the request has been handled."""
        conn, budget = self._states[task], self.budget
        await budget.reserve(size)  # the wait for it is not the client's: no timeout
        later: Later | None = None
        try:
            # the watchdog closes the connection if the frame's bytes do not come in time
            conn.frame_since = asyncio.get_running_loop().time()
            frame = await reader.readexactly(size)
            conn.frame_since = None
            self._connections[task] = True
            if protocol.peek_header(frame)[0] not in PIPELINED:
                await answers.written()
            if protocol.peek_header(frame)[0] in WAITING:
                response, refused = await self._answer_while_connected(frame, host, conn, reader)
            else:
                response, refused = await self._answer(frame, host, conn.auth)
            del frame  # held by the request from here on, until it is handled
            if isinstance(response, tuple):
                later = response[1]
                answers.add(*response)
            elif response is not None:
                await answers.send(response)
            self.requests += 1
            if refused is not None:
                raise protocol.ProtocolError(refused)
        finally:
            self._connections[task] = False
            if later is None:
                budget.release(size)
            else:  # its records are held until they are stored
                later.add_done_callback(lambda _: budget.release(size))

    async def _watch_forever(self) -> None:
        """Close connections idle for too long, or stuck in the middle of a frame."""
        limits = self.limits
        loop = asyncio.get_running_loop()
        interval = min(1.0, limits.idle_timeout_s / 4, limits.request_timeout_s / 4)
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for conn in list(self._states.values()):
                if conn.idle_since is not None and now - conn.idle_since > limits.idle_timeout_s:
                    conn.close()  # idle: closed without a word, as Kafka does
                elif (
                    conn.frame_since is not None
                    and now - conn.frame_since > limits.request_timeout_s
                ):
                    log.warning(
                        "closing the connection from %s: a request was not complete %g s "
                        "after it began (request_timeout_s)",
                        _peer(conn.peer),
                        limits.request_timeout_s,
                    )
                    conn.close()

    async def _answer_while_connected(
        self, frame: bytes, host: str, conn: _Connection, reader: asyncio.StreamReader
    ) -> tuple[memoryview | tuple[protocol.Request, Later] | None, str | None]:
        """_answer, given up once the client has closed its end: a request that may wait
        long (a join for its group, a long poll) keeps no place for a client that left."""
        answering = asyncio.ensure_future(self._answer(frame, host, conn.auth))
        try:
            while True:
                done, _ = await asyncio.wait({answering}, timeout=LEFT_CHECK_S)
                if done:
                    return answering.result()
                if reader.at_eof():  # closed, and nothing more it sent is waiting
                    raise ConnectionResetError("the client left before its answer")
        finally:
            if not answering.done():
                answering.cancel()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await answering

    async def _answer(
        self, frame: bytes, host: str, auth: SaslSession | None
    ) -> tuple[memoryview | tuple[protocol.Request, Later] | None, str | None]:
        """The response frame (or the request and its answer under way), and the reason to
        close the connection after it (if any)."""
        try:
            request = protocol.read_request(frame, SUPPORTED)
        except protocol.UnsupportedVersion as e:
            if e.api_key == API_VERSIONS:
                # An ApiVersions the broker cannot read is answered in v0, the format every
                # client reads, with the versions it can use instead (KIP-511).
                versions = {
                    "error_code": ErrorCode.unsupported_version,
                    "api_keys": api_version_list(),
                }
                return protocol.write_response(API_VERSIONS, 0, e.correlation_id, versions), None
            if auth is not None and not auth.authenticated:
                raise protocol.ProtocolError(
                    f"{e}, and the client has not authenticated; this listener needs "
                    f"sasl.mechanism {' or '.join(auth.config.mechanisms)} and a user"
                ) from None
            return self._refuse_unserved(e, host), None
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
            fields = await self.apis.answer(request.api_key, request.body, request.version)
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

    def _refuse_unserved(self, e: protocol.UnsupportedVersion, host: str) -> memoryview:
        """The answer refusing an API or version not served, logged once per client; the
        connection is closed if the answer has no place for the refusal."""
        served = SUPPORTED.get(e.api_key)
        reason = unserved_reason(e.api_key, e.version, served)
        fields = unserved_refusal(e.api_key, e.version, reason)
        caller = protocol.Caller(e.client_id or "unknown", host)
        self.apis.refusals.refused(
            caller,
            api_name(e.api_key),
            reason,
            None if fields is None else ErrorCode.unsupported_version,
        )
        if fields is None:
            raise protocol.UnservedRequest(f"{e}: {reason}")
        return protocol.write_response(e.api_key, e.version, e.correlation_id, fields)


class _Connection:
    """One open connection: its writer, its SASL state, and since when it has waited for a
    frame or been receiving one (loop time; None when neither), which the watchdog reads."""

    __slots__ = ("auth", "frame_since", "idle_since", "peer", "writer")

    def __init__(self, writer: asyncio.StreamWriter, peer: Any, auth: SaslSession | None) -> None:
        self.writer = writer
        self.peer = peer
        self.auth = auth
        """The connection's SASL state (None: no authentication on this listener)."""
        self.idle_since: float | None = None
        self.frame_since: float | None = None

    def close(self) -> None:
        """Close the connection: its reader ends, and so does its task."""
        self.idle_since = self.frame_since = None
        self.writer.close()


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
    if isinstance(
        error,
        ConnectionError
        | asyncio.IncompleteReadError
        | asyncio.CancelledError
        | protocol.UnservedRequest,
    ):
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
