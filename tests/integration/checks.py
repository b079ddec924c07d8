"""Reading a whole topic back and the invariants every stored partition must keep."""

from __future__ import annotations

import tidings
from tests.conformance.helpers import read_partition
from tidings import Record


def read_dense(bus: tidings.Bus, topic: str) -> dict[int, list[Record]]:
    """Every partition's records, after checking its offsets run 0..end-1 with no gap."""
    description = bus.describe_topic(topic)
    out: dict[int, list[Record]] = {}
    for state in description.partitions:
        records = read_partition(bus, topic, state.partition)
        assert state.start_offset == 0
        assert [r.offset for r in records] == list(range(state.end_offset)), (
            f"{topic}[{state.partition}]: offsets are not dense 0..{state.end_offset - 1}"
        )
        out[state.partition] = records
    return out
