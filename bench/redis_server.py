"""A redis-server from Debian's package, started on a free loopback port, stopped by its pid.

It runs as a durable stream store is usually run: the append-only file on, fsynced once a
second (`appendfsync everysec`, Redis's default for AOF), RDB snapshots off, its files in a
directory of its own that is removed afterwards.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.kafka import running
from bench.postgres_server import free_port

DURABILITY = "AOF, appendfsync everysec"
READY = re.compile(r"Ready to accept connections")


def binary() -> str:
    """The redis-server executable on the PATH."""
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is missing: `make tools` installs it (apt-get install redis-server)"
        )
    return found


def version() -> str:
    """redis-server's version, e.g. 'Redis 7.0.15'."""
    out = subprocess.run([binary(), "--version"], capture_output=True, text=True, check=True)
    match = re.search(r"v=(\S+)", out.stdout)
    return f"Redis {match[1] if match else '?'}"


@contextmanager
def redis_server() -> Iterator[int]:
    """A redis-server on 127.0.0.1 for the block; its port."""
    port = free_port()
    directory = Path(tempfile.mkdtemp(prefix="tidings-redis-"))
    command = [
        binary(),
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--dir",
        str(directory),
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--daemonize",
        "no",
    ]
    try:
        with running(command, READY):
            yield port
    finally:
        shutil.rmtree(directory, ignore_errors=True)
