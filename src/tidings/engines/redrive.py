"""Dead letters: the headers that say where one came from, and redriving them.

A queue's dead letters are ordinary records in its dead-letter topic, with the original
headers plus `tidings.dlq.*` facts. Redriving copies them back to the queue's topic;
a share group over the dead-letter topic (`redrive_group`) marks which were copied, so
each is copied once even when several redrives run at a time.
"""

from __future__ import annotations

from collections import defaultdict

from tidings.core.errors import ConfigurationError
from tidings.core.records import Headers, Record, TopicPartition
from tidings.engines.base import Ack, AckKind, ColumnBatch, Engine, ShareConfig

REDRIVE_PREFIX = "__redrive."
"""Share groups named so mark which dead letters of a queue were already redriven."""
REDRIVE_BATCH = 1000
REDRIVE_LOCK_MS = 60_000
REDRIVES = "tidings.redrives"
"""Header on a redriven record: how many times it came back from the dead letters."""
DLQ_PREFIX = "tidings.dlq."


def redrive_group(group: str) -> str:
    """The share group over the dead-letter topic that marks what `group` redrove."""
    return f"{REDRIVE_PREFIX}{group}"


def dead_letter_topic(config: ShareConfig) -> str:
    """The queue's dead-letter topic; ConfigurationError when it has none."""
    if config.dead_letter_topic is None:
        raise ConfigurationError(
            f"queue {config.topic!r} (group {config.group!r}) has no dead-letter topic; "
            f"name it with bus.queue(..., dead_letter_topic=...)"
        )
    return config.dead_letter_topic


def header_int(record: Record, name: str) -> int:
    """A header's non-negative integer value (0 when absent or malformed)."""
    raw = record.header(name)
    try:
        return max(0, int(raw)) if raw else 0
    except ValueError:
        return 0  # malformed: a job is then delivered at once, at the lowest priority


def dead_letter_headers(record: Record, deliveries: int, reason: str) -> Headers:
    """The record's headers plus where it came from and why it is a dead letter."""
    facts = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "deliveries": deliveries,
        "reason": reason,
    }
    return (*record.headers, *((f"{DLQ_PREFIX}{k}", str(v).encode()) for k, v in facts.items()))


def redriven_headers(record: Record) -> Headers:
    """The original headers (without the dead-letter facts), with the redrive count."""
    count = header_int(record, REDRIVES)
    kept = tuple(
        (k, v) for k, v in record.headers if not k.startswith(DLQ_PREFIX) and k != REDRIVES
    )
    return (*kept, (REDRIVES, str(count + 1).encode()))


def origin_partition(record: Record, partitions: int) -> int:
    """The partition a dead letter came from, when the topic still has it (else 0)."""
    p = header_int(record, f"{DLQ_PREFIX}partition")
    return p if p < partitions else 0


async def redrive(
    engine: Engine,
    config: ShareConfig,
    partitions: int,
    max_records: int | None,
    *,
    max_deliveries: int,
    wait_s: float,
) -> int:
    """Copy dead letters back to the queue's topic (of `partitions`), each once; how many."""
    # `max_deliveries`: a limit the marker group never reaches; `wait_s`: how long each
    # batch waits for its first dead letter
    marker = engine.share_consumer(
        ShareConfig(
            group=redrive_group(config.group),
            topic=dead_letter_topic(config),
            lock_timeout_ms=REDRIVE_LOCK_MS,
            max_deliveries=max_deliveries,
        )
    )
    copied = 0
    try:
        while max_records is None or copied < max_records:
            limit = (
                REDRIVE_BATCH if max_records is None else min(REDRIVE_BATCH, max_records - copied)
            )
            # Locked first, so a concurrent redrive takes other records; accepted once copied
            # (a crash in between copies those records again: at least once, never lost).
            taken = await marker.acquire(limit, wait_s)
            if not taken:
                break
            by_partition: dict[int, list[Record]] = defaultdict(list)
            for d in taken:
                by_partition[origin_partition(d.record, partitions)].append(d.record)
            await engine.append(
                [
                    ColumnBatch(
                        config.topic,
                        p,
                        [r.value for r in records],
                        [r.key for r in records],
                        [r.timestamp for r in records],
                        [redriven_headers(r) for r in records],
                    )
                    for p, records in sorted(by_partition.items())
                ]
            )
            await marker.acknowledge(
                [
                    Ack(
                        TopicPartition(d.record.topic, d.record.partition),
                        d.record.offset,
                        AckKind.ACCEPT,
                    )
                    for d in taken
                ]
            )
            copied += len(taken)
    finally:
        await marker.close()
    return copied
