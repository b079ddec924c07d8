"""Structure-aware fuzzing of every API and version `tidings serve` serves, over TCP.

Frames come from frames.FrameMaker: valid headers, bodies that follow the schema with
lengths at their extremes, nested arrays, mangled and random bodies. Each frame is sent
on a connection of its own, which is then closed, as a hostile client would; after each
batch the broker must still be running and answer ApiVersions and Metadata on another
connection. FUZZ_SECONDS sets the budget (60 by default; `make fuzz` runs an hour) and
FUZZ_SEED replays a run: the seed is printed, and named in every failure.
"""

from __future__ import annotations

import os
import random
import socket
import time
from collections.abc import Iterator
from itertools import cycle
from pathlib import Path

import pytest

from tidings.server.kafka.apis import SUPPORTED

from ..server import wire
from ..server.conftest import Served, start_broker
from ..server.test_bad_input import METADATA, still_serving
from ..server.test_lengths import limit_memory
from .frames import FrameMaker

BUDGET_S = float(os.environ.get("FUZZ_SECONDS", "60"))
SEED = int(os.environ.get("FUZZ_SEED", random.randrange(2**32)))
BATCH = 100
"""Frames sent between two checks that the broker still serves."""
MAX_RESIDENT_MIB = 512
"""The broker stays near 75 MiB under the fuzz; frames this small must not grow it more."""
FUZZ_CONNECTIONS = 10_000
"""Connections the fuzz's broker allows, from one address too (see `broker`)."""
KEPT_LINES = 500
"""The broker's latest log lines kept for a failure's message."""
SERVED = [(key, v) for key, (low, high) in sorted(SUPPORTED.items()) for v in range(low, high + 1)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Served]:
    """A broker of its own, stopped (and checked to stop) after the run.

    Its connection limits are raised past what a run opens: the fuzz is about what a
    request holds (the limits have tests of their own), and a fuzzed JoinGroup may wait
    long after its client left, keeping its connection's place until the join ends.
    """
    served = start_broker(
        tmp_path / "data",
        *("--max-connections", str(FUZZ_CONNECTIONS)),
        *("--max-connections-per-ip", str(FUZZ_CONNECTIONS)),
    )
    limit_memory(served)  # a reservation of many GiB fails, as on a smaller host
    try:
        yield served
    finally:
        assert served.stop() == 0, served.log()[-3000:]


@pytest.mark.timeout(BUDGET_S + 120)
def test_no_generated_request_stops_the_broker(broker: Served) -> None:
    maker = FrameMaker(random.Random(SEED))
    targets = cycle(SERVED)  # every API and version in turn, so a short run covers all
    sent = 0
    deadline = time.monotonic() + BUDGET_S
    print(f"fuzzing {len(SERVED)} API versions for {BUDGET_S:.0f}s with FUZZ_SEED={SEED}")
    while time.monotonic() < deadline:
        batch = [maker.frame(*next(targets), sent + i) for i in range(BATCH)]
        for frame in batch:
            send_and_close(broker, frame)
        sent += len(batch)
        assert broker.process.poll() is None, (
            f"the broker exited after one of frames {sent - BATCH}..{sent} "
            f"(FUZZ_SEED={SEED}):\n{broker.log()[-3000:]}"
        )
        still_serving(broker)
        metadata = wire.call(broker.bootstrap, METADATA, 12, {"topics": []})
        assert metadata.brokers and metadata.topics == ()
        del broker.output[:-KEPT_LINES]  # an hour of warnings would fill this process
    resident = resident_mib(broker)
    print(
        f"{sent} frames sent in {BUDGET_S:.0f}s, FUZZ_SEED={SEED}; the broker still serves, "
        f"at {resident:.0f} MiB resident"
    )
    assert resident < MAX_RESIDENT_MIB, f"small frames grew the broker to {resident:.0f} MiB"


def resident_mib(broker: Served) -> float:
    """The broker's resident memory now, in MiB (from Linux's /proc)."""
    with open(f"/proc/{broker.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS in /proc/{broker.process.pid}/status")


def send_and_close(broker: Served, frame: bytes) -> None:
    """Send one frame on a new connection, then close it without waiting for an answer."""
    with wire.connect(broker.bootstrap) as sock:
        try:
            sock.sendall(frame)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the broker read enough to close the connection: its answer
            pass
