"""A real HTTP server per test: uvicorn on a free loopback port, on its own thread and loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import tidings
from tidings.server.http import HttpServer, create_app

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 15.0


class ServerThread:
    """The HTTP API over a bus, served from a background thread with its own event loop."""

    def __init__(self, bus_url: str, **options: Any) -> None:
        self.bus_url = bus_url
        self.url = ""
        self._options = options
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with await tidings.connect_async(self.bus_url) as bus:
                app = create_app(bus, **self._options)
                server = await HttpServer(app, "127.0.0.1", 0).start()
                self.url = server.url
                self._ready.set()
                await self._stop.wait()
                await server.close()
        except BaseException as e:
            self._error = e
            raise
        finally:
            self._ready.set()

    def start(self) -> ServerThread:
        """Start serving; return once requests are answered."""
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S) or self._error is not None:
            raise AssertionError(f"the HTTP server did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        """Stop the server gracefully, close its bus, and check that both happened."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(STOP_TIMEOUT_S)
        assert not self._thread.is_alive(), f"the HTTP server did not stop in {STOP_TIMEOUT_S}s"
        assert self._error is None, f"the HTTP server failed: {self._error!r}"


@pytest.fixture
def bus_url(tmp_path: Path) -> str:
    """The URL of a fresh bus in a file."""
    return f"sqlite://{tmp_path}/bus.db"


@pytest.fixture
def start(bus_url: str) -> Iterator[Callable[..., ServerThread]]:
    """Starts servers over the test's bus (with create_app's options); stops them all after."""
    started: list[ServerThread] = []

    def run(**options: Any) -> ServerThread:
        server = ServerThread(bus_url, **options).start()
        started.append(server)
        return server

    yield run
    for server in started:
        server.stop()


@pytest.fixture
def server(start: Callable[..., ServerThread]) -> ServerThread:
    """A running server over the test's bus."""
    return start()


@pytest.fixture
def http(server: ServerThread) -> Iterator[httpx.Client]:
    """An HTTP client of the server."""
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


@pytest.fixture
def bus(bus_url: str) -> Iterator[tidings.Bus]:
    """The Python API on the server's bus, from another connection (as another process would)."""
    b = tidings.connect(bus_url)
    yield b
    b.close()


def client_of(server: ServerThread) -> httpx.Client:
    """A new HTTP client of `server` (use it in a `with` block)."""
    return httpx.Client(base_url=server.url, timeout=10)


def create_topic(http: httpx.Client, name: str, partitions: int = 1) -> None:
    """Create a topic over HTTP."""
    response = http.post("/topics", json={"name": name, "partitions": partitions})
    assert response.status_code == 201, response.text


def produce(http: httpx.Client, topic: str, *records: dict[str, Any]) -> list[dict[str, Any]]:
    """Produce records over HTTP; where they went."""
    response = http.post(f"/topics/{topic}/records", json={"records": list(records)})
    assert response.status_code == 200, response.text
    stored: list[dict[str, Any]] = response.json()["records"]
    return stored


def assert_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """Check an error response: its status and error code, and that it says something."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error, body
    assert body["message"], body
    return body
