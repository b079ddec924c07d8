"""The server's memory under the attacks of issue 20: peak RSS of a real `tidings serve`.

    python -m bench.attacks

Each attack runs against a fresh broker; the figure is the broker's peak resident memory
(VmHWM) before and after it, read from /proc. An attack the broker does not refuse may
run long: it is given ATTACK_S seconds, then the broker is stopped by its pid.

- frames: six connections each announce a 100 MiB frame and send it, without and with
  SASL (where the connections have not authenticated), and twelve without SASL: the
  request budget (--max-queued-request-bytes) has them wait their turn, so twelve peak
  about where six do; a row with the budget raised past them shows the peak
  without it;
- partitions: an unauthenticated CreateTopics with num_partitions = 2**31 - 1;
- http body: a 198 MB POST to /topics/web/records.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

TIDINGS = str(Path(sys.executable).parent / "tidings")
LISTENERS = ("--kafka", "127.0.0.1:0", "--http", "127.0.0.1:0")
ATTACK_S = 20.0
MIB = 1 << 20
BANNER = re.compile(r"kafka\s+(\S+):(\d+)")
HTTP_BANNER = re.compile(r"http\s+http://(\S+):(\d+)")


class Broker:
    """A `tidings serve` process and where it listens."""

    def __init__(self, data: Path, *args: str) -> None:
        self.process = subprocess.Popen(
            [TIDINGS, "serve", "--data", str(data), *LISTENERS, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self.kafka: tuple[str, int] | None = None
        self.http: tuple[str, int] | None = None
        ready = threading.Event()

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                if (match := HTTP_BANNER.search(line)) is not None:
                    self.http = (match[1], int(match[2]))
                elif (match := BANNER.search(line)) is not None:
                    self.kafka = (match[1], int(match[2]))
                if self.kafka and self.http:
                    ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(30):
            self.stop()
            raise RuntimeError("tidings serve did not start")

    def peak_mb(self) -> float:
        """The process's peak resident memory so far, in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        (kib,) = re.findall(r"VmHWM:\s+(\d+) kB", status)
        return int(kib) * 1024 / 1e6

    def stop(self) -> None:
        """Stop the broker by its pid (killed if it does not stop in time)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()


def frames(broker: Broker, connections: int = 6) -> None:
    """Connections announce 100 MiB frames and send them in full."""
    assert broker.kafka is not None

    address = broker.kafka

    def one() -> None:
        with (
            socket.create_connection(address, timeout=ATTACK_S) as sock,
            contextlib.suppress(OSError),  # closed by the broker
        ):
            sock.sendall(struct.pack(">i", 100 * MIB) + b"\x00\x03\x00\x0c")
            chunk = b"\xff" * MIB
            for _ in range(100):
                sock.sendall(chunk)
            sock.recv(1)

    threads = [threading.Thread(target=one) for _ in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ATTACK_S * 2)


def partitions(broker: Broker) -> None:
    """CreateTopics v7 for one topic with 2**31 - 1 partitions, with no authentication."""
    from kio.index import load_request_schema
    from kio.serial import entity_writer

    from tidings.server.kafka.protocol import build

    assert broker.kafka is not None
    schema = load_request_schema(19, 7)
    header = {"request_api_key": 19, "request_api_version": 7, "correlation_id": 1}
    topic = {"name": "huge", "num_partitions": 2**31 - 1, "replication_factor": 1}
    out = io.BytesIO()
    entity_writer(schema.__header_schema__)(out, build(schema.__header_schema__, header))
    entity_writer(schema)(out, build(schema, {"topics": [topic], "timeout_ms": 5000}))
    with socket.create_connection(broker.kafka, timeout=ATTACK_S) as sock:
        sock.sendall(struct.pack(">i", len(out.getvalue())) + out.getvalue())
        with contextlib.suppress(OSError):  # not answered within the time given
            sock.recv(1 << 16)


def http_body(broker: Broker) -> None:
    """A 198 MB POST of records."""
    import httpx

    assert broker.http is not None
    base = f"http://{broker.http[0]}:{broker.http[1]}"
    httpx.post(f"{base}/topics", json={"name": "web"}, timeout=ATTACK_S)
    value = "x" * 1_000_000
    body = '{"records": [' + ",".join(f'{{"value": "{value}"}}' for _ in range(198)) + "]}"
    try:
        response = httpx.post(
            f"{base}/topics/web/records",
            content=body.encode(),
            headers={"content-type": "application/json"},
            timeout=ATTACK_S * 3,
        )
        print(f"    answered {response.status_code}", file=sys.stderr)
    except httpx.HTTPError as e:
        print(f"    {type(e).__name__}: {e}", file=sys.stderr)


def users(directory: Path) -> str:
    """A users file for --sasl-users."""
    path = directory / "users.toml"
    path.write_text('alice = "wonderland"\n')
    return str(path)


def measure(name: str, attack: Callable[[Broker], None], *args: str) -> None:
    """Print the broker's peak RSS before and after `attack`."""
    with tempfile.TemporaryDirectory() as tmp:
        extra = [a.replace("{users}", users(Path(tmp))) for a in args]
        broker = Broker(Path(tmp) / "data", *extra)
        try:
            before = broker.peak_mb()
            worker = threading.Thread(target=attack, args=(broker,), daemon=True)
            worker.start()
            worker.join(ATTACK_S * 3)
            time.sleep(1)
            after = broker.peak_mb()
            alive = broker.process.poll() is None
        finally:
            broker.stop()
    state = "serving" if alive else f"exited {broker.process.returncode}"
    print(f"{name:<32} {before:8.0f} MB -> {after:8.0f} MB peak RSS   ({state})")


def main() -> None:
    """Run every attack and print one line each."""
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    measure("frames, no SASL", frames)
    measure("frames x12, no SASL", lambda broker: frames(broker, 12))
    unbounded = str(1200 * MIB)
    measure("frames, no SASL, no budget", frames, "--max-queued-request-bytes", unbounded)
    measure("frames, SASL, unauthenticated", frames, "--sasl-users", "{users}")
    measure("CreateTopics 2**31-1 partitions", partitions)
    measure("HTTP POST of 198 MB", http_body)


if __name__ == "__main__":
    main()
