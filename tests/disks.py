"""Small real file systems for tests of a full disk and a read-only store.

Each is a tmpfs the test mounts and unmounts itself (the suite runs as root, as `make
test` does on a fresh machine); a mount that is refused fails the test with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIZE = "2m"


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"mount {' '.join(args)} failed: {done.stderr.strip()}"


@contextmanager
def small_disk(where: Path, size: str = SIZE) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the block; unmounted after, pass or fail."""
    where.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    try:
        yield where
    finally:
        # Lazy: a child process that still holds a file open does not keep it mounted.
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def remount(where: Path, mode: str) -> None:
    """Remount the tmpfs at `where` read-only ("ro") or writable again ("rw")."""
    _mount("-o", f"remount,{mode}", str(where))


def fill(where: Path) -> Path:
    """A file that takes every free byte of the disk at `where`; delete it to free them."""
    ballast = where / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC, e
    finally:
        os.close(fd)
    return ballast
