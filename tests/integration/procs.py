"""Python child processes that run a short script against a store, watched line by line.

A child's script gets the store URL as `URL`, further arguments as `ARGS`, and `say()`
to write one line to the test. It calls `say("ready")` once set up; `start` waits for
that. Lines are read by a thread as they come, so a child killed with SIGKILL still
delivers everything it wrote before it died: a pipe keeps what was written to it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

PRELUDE = """\
import sys
import time

import tidings

URL = sys.argv[1]
ARGS = sys.argv[2:]
_out = sys.stdout


def say(*parts: object) -> None:
    _out.write(" ".join(map(str, parts)) + "\\n")
    _out.flush()


def say_many(lines: list[str]) -> None:
    _out.write("".join(line + "\\n" for line in lines))
    _out.flush()


"""

START_TIMEOUT_S = 30.0


class Child:
    """One child process; its stdout lines collected as they arrive."""

    def __init__(self, name: str, popen: subprocess.Popen[bytes], stderr_path: Path) -> None:
        self.name = name
        self.pid = popen.pid
        self._popen = popen
        self._stderr_path = stderr_path
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._popen.stdout is not None
        for raw in self._popen.stdout:
            with self._changed:
                self._lines.append(raw.decode().rstrip("\n"))
                self._changed.notify_all()
        self._popen.stdout.close()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def lines(self, prefix: str = "") -> list[str]:
        """Every line received so far that starts with `prefix`."""
        with self._changed:
            return [line for line in self._lines if line.startswith(prefix)]

    def fields(self, prefix: str) -> list[list[str]]:
        """The lines starting with `prefix`, split on spaces, without the prefix word."""
        return [line.split()[1:] for line in self.lines(prefix + " ")]

    def wait_for(
        self, condition: Callable[[], bool], timeout_s: float = 20.0, what: str = ""
    ) -> None:
        """Wait until `condition()` holds; fail with the child's stderr if it dies first."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._changed:
                seen, eof = len(self._lines), self._eof
            if condition():
                return
            if eof:
                try:
                    rc: int | None = self._popen.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    rc = None  # closed its stdout but lives on
                if condition():
                    return
                self.fail(f"stopped talking (exit code {rc}) before {what or condition}")
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"timed out after {timeout_s}s waiting for {what or condition}")
            with self._changed:
                # a line that came after `seen` was taken is a reason to look again, not wait
                if len(self._lines) == seen and not self._eof:
                    self._changed.wait(min(left, 0.5))

    def send(self, line: str) -> None:
        """Write one line to the child's stdin."""
        assert self._popen.stdin is not None
        self._popen.stdin.write(line.encode() + b"\n")
        self._popen.stdin.flush()

    def _close_stdin(self) -> None:
        if self._popen.stdin is not None and not self._popen.stdin.closed:
            with contextlib.suppress(BrokenPipeError):
                self._popen.stdin.close()

    def stderr(self) -> str:
        """What the child wrote to stderr so far."""
        return self._stderr_path.read_text(errors="replace")

    def fail(self, message: str) -> None:
        """Raise an AssertionError about this child, with its stderr."""
        raise AssertionError(f"child {self.name} (pid {self.pid}) {message}\n{self.stderr()}")

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._popen.poll() is None

    def kill(self) -> None:
        """SIGKILL the child by its pid and reap it; lines already written stay readable."""
        if self._popen.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
        self._popen.wait()
        self._reader.join(timeout=10)
        self._close_stdin()

    def finish(self, timeout_s: float = 30.0) -> None:
        """Wait for the child to exit by itself; fail unless it exited with 0."""
        try:
            rc = self._popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            self.fail(f"did not exit within {timeout_s}s")
        self._reader.join(timeout=10)
        self._close_stdin()
        if rc != 0:
            self.fail(f"exited with {rc}")


class Children:
    """Starts children for one test and kills, by pid, whatever is still running at the end."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._started: list[Child] = []

    def start(self, name: str, script: str, url: str, *args: object, ready: bool = True) -> Child:
        """Run `script` in a new Python process; by default wait until it says "ready"."""
        source = self._workdir / f"{name}.py"
        source.write_text(PRELUDE + textwrap.dedent(script))
        stderr_path = self._workdir / f"{name}.stderr"
        with stderr_path.open("wb") as stderr:
            popen = subprocess.Popen(
                [sys.executable, str(source), url, *map(str, args)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                cwd=self._workdir,
            )
        child = Child(name, popen, stderr_path)
        self._started.append(child)
        if ready:
            child.wait_for(lambda: bool(child.lines("ready")), START_TIMEOUT_S, "ready")
        return child

    def stop_all(self) -> None:
        """Kill every child still running, by pid."""
        for child in self._started:
            child.kill()
