"""A real `tidings serve` process per test, on a free loopback port, stopped by its pid."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tidings

TIDINGS = str(Path(sys.executable).parent / "tidings")
START_TIMEOUT_S = 30.0
BANNER = re.compile(r"kafka\s+(\S+):(\d+)")
HTTP_BANNER = re.compile(r"http\s+(https?://\S+)")


@dataclass
class Served:
    """One running broker: where clients connect and where its data lives."""

    process: subprocess.Popen[str]
    data: Path
    bootstrap: str
    output: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        """The base URL of the broker's HTTP API."""
        for line in self.output:
            match = HTTP_BANNER.search(line)
            if match:
                return match[1]
        raise AssertionError(f"the broker printed no HTTP address:\n{self.log()}")

    @property
    def url(self) -> str:
        """The bus under the broker, for the Python API in the test."""
        return f"sqlite://{self.data / 'tidings.db'}"

    def bus(self) -> tidings.Bus:
        """A Python bus on the broker's own store (another process, as users run it)."""
        return tidings.connect(self.url)

    def log(self) -> str:
        """Everything the broker printed so far."""
        return "\n".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Signal the broker and wait for it to exit; its exit status."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired as e:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise AssertionError(
                f"the broker did not stop within {timeout_s}s:\n{self.log()}"
            ) from e


def start_broker(data: Path, *args: str, env: dict[str, str] | None = None) -> Served:
    """Start `tidings serve` on a free port and wait for its banner."""
    process = subprocess.Popen(
        [
            TIDINGS,
            "serve",
            "--data",
            str(data),
            "--kafka",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    output: list[str] = []
    found = threading.Event()
    address: list[str] = []

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line.rstrip("\n"))
            match = BANNER.search(line)
            if match and not found.is_set():
                address.append(f"{match[1]}:{match[2]}")
                found.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not found.wait(0.05):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError("tidings serve did not start:\n" + "\n".join(output))
    return Served(process, data, address[0], output)


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Served]:
    """A fresh broker with auto-created topics; stopped (and checked to stop) after the test."""
    served = start_broker(tmp_path / "data")
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., Served]]:
    """Starts brokers with extra flags; stops every one still running at the end."""
    started: list[Served] = []

    def run(*args: str, name: str = "data", env: dict[str, str] | None = None) -> Served:
        served = start_broker(tmp_path / name, *args, env=env)
        started.append(served)
        return served

    yield run
    for served in started:
        served.stop()
