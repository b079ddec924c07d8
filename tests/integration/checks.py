"""Reading a whole topic back and the invariants every stored partition must keep."""

from __future__ import annotations

import tidings
from tidings import Record, TopicPartition


def read_partition(bus: tidings.Bus, topic: str, partition: int) -> list[Record]:
    """Every record stored in one partition now, read without a group."""
    end = bus.describe_topic(topic).partitions[partition].end_offset
    tp = TopicPartition(topic, partition)
    consumer = bus.consumer()
    try:
        consumer.assign(tp)
        consumer.seek(tp, "earliest")
        out: list[Record] = []
        while consumer.position(tp) < end:
            batch = consumer.poll(max_records=10_000, timeout_ms=1000)
            if not batch:
                break
            out.extend(batch)
        return out
    finally:
        consumer.close()


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
