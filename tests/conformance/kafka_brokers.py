"""Fresh Kafka-compatible brokers for the conformance suite: `tidings serve` and Tansu.

Every test gets an empty broker of its own on a free port of 127.0.0.1, since the tests
use fixed topic and group names. The next broker of each kind is started while the
current test runs, so a test waits only for a broker that is already up. Brokers are
stopped by their pid.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.kafka import tansu_binary
from bench.postgres_server import free_port

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
TIDINGS = str(Path(sys.executable).parent / "tidings")
SERVE_BANNER = re.compile(r"kafka\s+(\S+):(\d+)")
TANSU_READY = re.compile(r"ready in")

GROUP_TIMEOUTS = "session_timeout_ms=1000&heartbeat_interval_ms=100"
"""URL options for both brokers: a group forms quickly (Tansu assigns after about half of
the session timeout) and a member that vanishes is noticed within a second."""


@dataclass
class Broker:
    """One broker process, started and maybe not yet ready."""

    process: subprocess.Popen[str]
    ready: re.Pattern[str]
    bootstrap: str | None = None
    data: Path | None = None
    output: list[str] = field(default_factory=list)
    _seen: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:  # to the end: a full pipe would stall the broker
            self.output.append(line.rstrip("\n"))
            match = self.ready.search(line)
            if match and not self._seen.is_set():
                if self.bootstrap is None:
                    self.bootstrap = f"{match[1]}:{match[2]}"
                self._seen.set()

    def wait(self) -> str:
        """The broker's bootstrap address, once it serves."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._seen.wait(0.02):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the broker did not start:\n" + "\n".join(self.output))
        assert self.bootstrap is not None
        return self.bootstrap

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid (SIGKILL if it outlives the grace period)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.data is not None:
            shutil.rmtree(self.data, ignore_errors=True)


def _popen(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def start_serve(data: Path | None = None, *args: str, port: int = 0) -> Broker:
    """`tidings serve` on its sqlite store in `data` (a new directory when None)."""
    owned = data is None
    data = Path(tempfile.mkdtemp(prefix="tidings-kafka-")) if data is None else data
    command = [TIDINGS, "serve", "--data", str(data), "--kafka", f"127.0.0.1:{port}"]
    broker = Broker(_popen([*command, "--http", "off", *args]), SERVE_BANNER)
    if owned:
        broker.data = data
    return broker


def start_tansu(port: int | None = None) -> Broker:
    """Tansu on its in-memory storage."""
    url = f"tcp://127.0.0.1:{port or free_port()}"
    command = [str(tansu_binary()), "broker", "--listener-url", url]
    process = _popen(
        [*command, "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"]
    )
    return Broker(process, TANSU_READY, bootstrap=url.removeprefix("tcp://"))


STARTERS: dict[str, Callable[[], Broker]] = {"kafka-serve": start_serve, "kafka-tansu": start_tansu}


class BrokerPool:
    """One spare broker per kind, started ahead of the test that will take it."""

    def __init__(self) -> None:
        self._spare: dict[str, Broker] = {}

    @contextmanager
    def fresh(self, kind: str) -> Iterator[str]:
        """An empty broker of `kind` for one test; its bootstrap address."""
        broker = self._spare.pop(kind, None) or STARTERS[kind]()
        self._spare[kind] = STARTERS[kind]()
        try:
            yield broker.wait()
        finally:
            broker.stop(signal.SIGKILL)  # its data is thrown away: no need to wait for it

    def close(self) -> None:
        """Stop the spare brokers."""
        for broker in self._spare.values():
            broker.stop()
        self._spare.clear()
