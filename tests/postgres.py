"""A real PostgreSQL for the tests: initdb'd and started by the suite, stopped by its pid.

The server runs from the image's own binaries as the `postgres` user (initdb refuses to
run as root), listens on a free loopback port with `wal_level=logical`, and trusts local
connections. Each test gets a fresh database of its own.
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
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

START_TIMEOUT_S = 60
USER = "postgres"


@dataclass(frozen=True)
class Postgres:
    """A running server."""

    port: int
    data: Path
    pid: int

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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(wal_level: str = "logical") -> Postgres:
    """initdb a fresh cluster in a temporary directory and start it."""
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
    port = _free_port()
    settings = {
        "listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "unix_socket_directories": f"'{root}'",
        "wal_level": wal_level,
        "max_replication_slots": "20",
        "max_wal_senders": "20",
        "fsync": "off",  # a test server: speed over crash safety of the test cluster
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
    return Postgres(port, data, pid)


def stop(server: Postgres) -> None:
    """Stop the server by its pid (fast shutdown, then SIGKILL) and remove its files."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(server.pid, signal.SIGINT)  # fast shutdown
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            os.kill(server.pid, 0)
            time.sleep(0.05)
        os.kill(server.pid, signal.SIGKILL)
    shutil.rmtree(server.data.parent, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL server for the test session (per worker)."""
    server = start()
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def pg_dsn(postgres: Postgres) -> Iterator[str]:
    """A fresh, empty database of its own for one test; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield postgres.dsn(name)
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
            for (slot,) in admin.execute(
                "SELECT slot_name FROM pg_replication_slots WHERE database = %s", (name,)
            ).fetchall():
                with contextlib.suppress(psycopg.Error):
                    admin.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
