"""Running the real `tidings` executable at a pseudo-terminal, as a person would."""

from __future__ import annotations

import os
import pty
import selectors
import subprocess

from .test_cli import TIDINGS

TIMEOUT_S = 20.0


def run_at_terminal(
    url: str, *args: str, typed: bytes = b"", env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `tidings` with a terminal as stdin, stdout and stderr, typing `typed` into it.

    Returns the exit status and everything the command wrote to the terminal. `env` adds to
    (or, with an empty value, sets in) the environment, which otherwise has no NO_COLOR.
    """
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"} | (env or {})
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen(
            [*TIDINGS, "--url", url, *args],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            env=environment,
            close_fds=True,
        )
    finally:
        os.close(terminal)
    os.write(controller, typed)
    chunks: list[bytes] = []
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(controller, selectors.EVENT_READ)
            while selector.select(TIMEOUT_S):
                try:
                    chunk = os.read(controller, 4096)
                except OSError:  # EIO: the command exited and closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        status = proc.wait(TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    return status, b"".join(chunks).decode().replace("\r\n", "\n")
