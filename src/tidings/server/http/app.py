"""The HTTP API of a bus as an ASGI app, and a uvicorn server for it on the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from importlib.metadata import version
from typing import Self

import uvicorn
from fastapi import Depends, FastAPI

from tidings.api.bus import AsyncBus
from tidings.core.errors import ConfigurationError
from tidings.server.acls import Authorizer
from tidings.server.http import docs, errors, groups, monitoring, queues, records, topics
from tidings.server.http.access import AccessGuard, HttpAccess
from tidings.server.http.acls import authorize
from tidings.server.http.bodies import BodyLimit
from tidings.server.http.models import ErrorOut
from tidings.server.http.state import HttpState
from tidings.server.limits import MAX_HTTP_BODY_BYTES

IDLE_TIMEOUT_S = 60.0
"""A group consumer or queue held for clients closes after this long without requests."""
GRACEFUL_S = 10
"""On close, how long requests under way may take before they are cancelled."""

DESCRIPTION = """\
Topics, records, consumer groups and queues of a tidings bus over HTTP, and live tails as
Server-Sent Events. Keys, values and header values are UTF-8 text, or `{"base64": "..."}`
for other bytes. Every error is `{"error": "...", "message": "..."}`.
"""


def create_app(
    bus: AsyncBus,
    *,
    idle_timeout_s: float = IDLE_TIMEOUT_S,
    access: HttpAccess | None = None,
    max_body_bytes: int = MAX_HTTP_BODY_BYTES,
    authorizer: Authorizer | None = None,
) -> FastAPI:
    """The HTTP API of an open `bus` as an ASGI app; the caller keeps and closes the bus.

    `access` says who may call it and under which host names (default: anyone, on the
    loopback names only); a request body over `max_body_bytes` is refused with 413. With an
    `authorizer`, every route is checked against its ACLs (see http.acls).
    """
    access = access or HttpAccess()
    state = HttpState(bus, idle_timeout_s)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        reaper = asyncio.create_task(state.reap_forever())
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await state.close()

    app = FastAPI(
        title="tidings",
        version=version("tidings"),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by docs.install, from the package
        redoc_url=None,
        responses={"default": {"model": ErrorOut, "description": "what went wrong, what to do"}},
        dependencies=[Depends(authorize)],
    )
    app.state.tidings = state
    app.state.access = access
    app.state.authorizer = authorizer
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    monitoring.install(app)
    docs.install(app)
    for module in (topics, records, groups, queues):
        app.include_router(module.router)
    app.add_middleware(AccessGuard, access=access)  # the outermost: before anything runs
    return app


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signals to its host."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install no signal handlers."""
        yield


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (port 0: a free one), or a clear ConfigurationError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigurationError(
            f"cannot listen for HTTP on {host}:{port}: {e.strerror or e}; choose another "
            f"address (port 0 picks a free one)"
        ) from e
    return sock


class HttpServer:
    """The HTTP API served by uvicorn on the running event loop, until `close()`."""

    def __init__(
        self,
        app: FastAPI,
        host: str,
        port: int,
        *,
        tls_cert: str | None = None,
        tls_key: str | None = None,
    ) -> None:
        self.app = app
        self._address = (host, port)
        self.tls = tls_cert is not None
        self._bound: tuple[str, int] | None = None
        self._server = _EmbeddedServer(
            uvicorn.Config(
                app,
                log_config=None,  # the host process configures logging
                access_log=False,
                ws="none",
                lifespan="on",
                timeout_graceful_shutdown=GRACEFUL_S,
                ssl_certfile=tls_cert,
                ssl_keyfile=tls_key,
            )
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> Self:
        """Listen, and return once requests are answered."""
        sock = bind(*self._address)
        self._bound = sock.getsockname()[:2]
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise ConfigurationError(f"the HTTP server on {self.host}:{self.port} stopped")
            await asyncio.sleep(0.01)
        return self

    @property
    def host(self) -> str:
        """The address listened on."""
        assert self._bound is not None, "start() first"
        return self._bound[0]

    @property
    def port(self) -> int:
        """The port listened on (the one picked when asked for port 0)."""
        assert self._bound is not None, "start() first"
        return self._bound[1]

    @property
    def url(self) -> str:
        """The base URL of the API."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    async def close(self) -> None:
        """End tails and long polls, finish requests under way, close what clients held."""
        if self._task is None:
            return
        state: HttpState = self.app.state.tidings
        state.stopping.set()
        self._server.should_exit = True
        await self._task
        self._task = None


async def serve_http(
    bus: AsyncBus,
    host: str,
    port: int,
    *,
    access: HttpAccess | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_body_bytes: int = MAX_HTTP_BODY_BYTES,
    authorizer: Authorizer | None = None,
) -> HttpServer:
    """Serve the HTTP API of `bus` on host:port (port 0 picks a free one) until close().

    Over HTTPS when given a PEM certificate chain (and its key, if not in the chain).
    """
    access = access or HttpAccess.for_listener(host)
    app = create_app(bus, access=access, max_body_bytes=max_body_bytes, authorizer=authorizer)
    return await HttpServer(app, host, port, tls_cert=tls_cert, tls_key=tls_key).start()
