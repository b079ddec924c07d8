"""A real PostgreSQL, initdb'd and started from the machine's binaries, stopped by its pid.

The server runs from the image's own binaries as the `postgres` user (initdb refuses to
run as root), listens on a free loopback port with the given `wal_level`, and trusts
local connections. The tests (tests/postgres.py) and the CDC benchmark both start theirs
here.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT_S = 60
USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    """A running server."""

    port: int
    data: Path
    pid: int
    watchdog_pid: int
    """The process that stops the server if its starter dies first."""

    def dsn(self, dbname: str = "postgres") -> str:
        """A connection string for `dbname` as the superuser."""
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={dbname}"


def _bindir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
        return Path(out.stdout.strip())
    raise RuntimeError(
        "no PostgreSQL server binaries (initdb) found: install the postgresql package"
    )


def _as_owner(args: list[str]) -> list[str]:
    """Run as the postgres user when we are root (the server refuses root)."""
    return ["runuser", "-u", USER, "--", *args] if os.geteuid() == 0 else args


def free_port() -> int:
    """A port free on 127.0.0.1 now (for servers that must be told their port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(wal_level: str = "logical", *, fsync: bool = False) -> Postgres:
    """initdb a fresh cluster in a temporary directory and start it.

    `fsync=False` (the tests' server) trades the crash safety of this throwaway cluster
    for speed; a benchmark asks for `fsync=True`, the server's own default.
    """
    bindir = _bindir()
    root = Path(tempfile.mkdtemp(prefix="tidings-pg-"))
    data = root / "data"
    if os.geteuid() == 0:
        owner = pwd.getpwnam(USER)
        os.chown(root, owner.pw_uid, owner.pw_gid)
    subprocess.run(
        _as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                USER,
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
    )
    port = free_port()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{root}'",
        "wal_level": wal_level,
        "max_replication_slots": "20",
        "max_wal_senders": "20",
        "fsync": "on" if fsync else "off",
        "shared_buffers": "32MB",
    }
    with (data / "postgresql.conf").open("a") as conf:
        conf.writelines(f"{k} = {v}\n" for k, v in settings.items())
    subprocess.run(
        _as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(root / "log"),
                "-w",
                "-t",
                str(START_TIMEOUT_S),
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    pid = int((data / "postmaster.pid").read_text().split()[0])
    watchdog = _WATCHDOGS[pid] = subprocess.Popen(
        [sys.executable, "-c", WATCHDOG, str(os.getpid()), str(pid), str(root)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a parent that is killed outright
    )
    return Postgres(port, data, pid, watchdog.pid)


WATCHDOG = """
import os, shutil, signal, sys, time
parent, server, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
while alive(parent) and alive(server):
    time.sleep(0.5)
if alive(server):  # the process that started it is gone without stopping it
    os.kill(server, signal.SIGINT)
    for _ in range(100):
        if not alive(server):
            break
        time.sleep(0.1)
    else:
        os.kill(server, signal.SIGKILL)
shutil.rmtree(root, ignore_errors=True)
"""
"""Stops the server (by pid) if the process that started it dies without doing so:
a test run killed by a timeout leaves no server behind."""
_WATCHDOGS: dict[int, subprocess.Popen[bytes]] = {}
"""Each running server's watchdog, by the server's pid."""


def stop(server: Postgres) -> None:
    """Stop the server by its pid (fast shutdown, then SIGKILL), its watchdog, its files."""
    watchdog = _WATCHDOGS.pop(server.pid, None)
    if watchdog is not None:
        watchdog.kill()
        watchdog.wait()
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            os.kill(server.pid, 0)
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
    shutil.rmtree(server.data.parent, ignore_errors=True)
