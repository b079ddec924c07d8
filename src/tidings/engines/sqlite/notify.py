"""Wake readers in other processes when a writer commits, without busy polling.

Every process that has a store open binds a datagram socket and lists itself with a
small file in `<db>-notify/`. After each commit the writer sends one byte to every
other listed process. On Linux the sockets live in the abstract namespace (no path-length
limit, nothing left on disk); elsewhere, and as a safety net for a lost datagram, the
listener also checks SQLite's data_version every half second. A process that cannot list
itself (the directory is read-only or its disk full) checks data_version often instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import sqlite3
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

from tidings.engines.sqlite.modes import directory_mode

SAFETY_NET_S = 0.5
POLL_S = 0.05


class Notifier:
    """Cross-process commit notifications for one store file."""

    def __init__(self, db_path: Path, on_change: Callable[[], None], mode: int) -> None:
        self._on_change = on_change
        self._mode = mode
        self._dir = db_path.with_name(db_path.name + "-notify")
        digest = hashlib.sha1(str(db_path.resolve()).encode()).hexdigest()[:16]
        self._prefix = f"\0tidings/{digest}/"
        self._name = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self._abstract = sys.platform == "linux"
        self._sock: socket.socket | None = None
        self._sender: socket.socket | None = None
        self._peers: list[str] = []
        self._peers_mtime = -1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._db_path = db_path

    def start(self) -> None:
        """Bind, register, and listen in a daemon thread."""
        if self._abstract:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.bind(self._prefix + self._name)
            self._sock.settimeout(SAFETY_NET_S)
            self._sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sender.setblocking(False)
            try:  # listed only once bound: a peer drops a name that refuses its datagram
                self._dir.mkdir(mode=directory_mode(self._mode), exist_ok=True)
                (self._dir / self._name).touch(mode=self._mode)
            except OSError:  # a read-only directory or a full disk
                self._sock.close()
                self._sender.close()
                self._sock = self._sender = None
        self._thread = threading.Thread(target=self._listen, name="tidings-notify", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """Tell every other process that new records may be readable."""
        if self._sender is None:
            return
        for peer in self._current_peers():
            try:
                self._sender.sendto(b"!", self._prefix + peer)
            except BlockingIOError:
                continue  # its queue is full: it has wake-ups pending already
            except (ConnectionRefusedError, FileNotFoundError):
                with contextlib.suppress(FileNotFoundError):
                    (self._dir / peer).unlink()  # that process is gone
                self._peers_mtime = -1
            except OSError:
                continue

    def _current_peers(self) -> list[str]:
        try:
            mtime = self._dir.stat().st_mtime_ns
        except FileNotFoundError:
            return []
        if mtime != self._peers_mtime:
            self._peers = [p for p in os.listdir(self._dir) if p != self._name]
            self._peers_mtime = mtime
        return self._peers

    def _listen(self) -> None:
        conn = sqlite3.connect(self._db_path, check_same_thread=False)
        try:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._stop.is_set():
                woke = self._wait()
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if woke or now != version:
                    version = now
                    self._on_change()
        except sqlite3.Error:
            return  # the store is closing
        finally:
            conn.close()

    def _wait(self) -> bool:
        if self._sock is None:
            return not self._stop.wait(POLL_S)
        try:
            self._sock.recv(16)
        except TimeoutError:
            return False
        except OSError:
            return False
        self._sock.setblocking(False)
        with contextlib.suppress(BlockingIOError, OSError):
            while True:
                self._sock.recv(16)
        self._sock.settimeout(SAFETY_NET_S)
        return True

    def close(self) -> None:
        """Stop listening and unregister."""
        self._stop.set()
        if self._sender is not None:
            with contextlib.suppress(OSError):  # wake the listener now, not at its timeout
                self._sender.sendto(b"!", self._prefix + self._name)
        if self._thread is not None:
            self._thread.join(timeout=2 * SAFETY_NET_S + 1)
        for s in (self._sock, self._sender):
            if s is not None:
                s.close()
        if self._sock is not None:
            with contextlib.suppress(FileNotFoundError):
                (self._dir / self._name).unlink()
