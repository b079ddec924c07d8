"""Records, topic specifications and the values that describe positions in a log."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from itertools import repeat
from typing import Any, Literal, NamedTuple

from tidings.core.compiled import compiled
from tidings.core.errors import (
    ConfigurationError,
    InvalidArgumentError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidTopicError,
)

Header = tuple[str, bytes | None]
Headers = tuple[Header, ...]
HeadersInput = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]] | None

NO_HEADERS: Headers = ()


DELIVER_AT = "tidings.deliver-at"
"""Header holding the wall-clock ms before which a queue delivers a record (a delay)."""
PRIORITY = "tidings.priority"
"""Header holding a queue record's priority, 0-9: higher ones are delivered first."""
DLQ_SUFFIX = ".dlq"
"""A dead-letter topic's default name is its source topic's with this suffix."""


class Record(NamedTuple):
    """One record read from a partition of a topic."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    """Milliseconds since the epoch (the producer's create time)."""
    key: bytes | None
    value: bytes | None
    """None is a tombstone: on a compacted topic it deletes the key."""
    headers: Headers = NO_HEADERS

    def header(self, name: str) -> bytes | None:
        """The last value of the header `name`, or None when it is absent."""
        for k, v in reversed(self.headers):
            if k == name:
                return v
        return None


class RecordMetadata(NamedTuple):
    """Where a record was stored, returned once it is durable."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class TopicPartition(NamedTuple):
    """A partition of a topic."""

    topic: str
    partition: int


def _records_in_python(record: type[Record], rows: Iterable[tuple[Any, ...]]) -> list[Record]:
    """What the compiled `_records.records` does, where it was not built: the same records,
    tracked by the cyclic garbage collector as every tuple subclass is in Python."""
    return list(map(tuple.__new__, repeat(record), rows))


_compiled = compiled("tidings.core._records")
_records = _records_in_python if _compiled is None else _compiled.records


def records_from(rows: Iterable[tuple[Any, ...]], record: type[Record] = Record) -> list[Record]:
    """Records made from rows of their fields, left out of the cyclic collector's scans.

    A record holding only strings, ints, bytes, None and header tuples cannot be part of a
    reference cycle; compiled, it is not tracked by the collector (as CPython does for
    plain tuples), so thousands read at once cost the collector nothing, and the
    application's own collector setting is never touched.
    """
    return _records(record, rows)


CleanupPolicy = Literal["delete", "compact", "compact,delete"]
CLEANUP_POLICIES: tuple[str, ...] = ("delete", "compact", "compact,delete")

_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def validate_topic_name(name: object) -> str:
    """Return `name` if it is a legal topic name, else raise InvalidTopicError."""
    if not isinstance(name, str) or not _TOPIC_NAME.fullmatch(name) or name in (".", ".."):
        raise InvalidTopicError(
            str(name),
            f"invalid topic name {name!r}: use 1-249 characters of letters, digits, "
            f"'.', '_' and '-' (and not '.' or '..')",
        )
    return name


LEAST = {"segment_ms": 0, "segment_bytes": 1, "min_compaction_lag_ms": 0, "delete_retention_ms": 0}
"""The smallest value of each setting that takes an int and has no 'no limit'."""


@dataclass(frozen=True)
class TopicConfig:
    """The settings of a topic that can change after it is created."""

    retention_ms: int | None = 7 * 86_400_000
    """Delete batches older than this; None keeps them forever."""
    retention_bytes: int | None = None
    """Delete the oldest batches of a partition while it is larger than this."""
    segment_ms: int = 7 * 86_400_000
    """Time retention spares a batch until it has been in the log this long, by the clock of
    its append, as Kafka spares a segment until it rolls: a backfill of records stamped
    long ago is not deleted as it arrives. 0 spares nothing."""
    segment_bytes: int = 1 << 30
    """...or until this many bytes came after it in its partition, as a segment rolls."""
    cleanup_policy: CleanupPolicy = "delete"
    max_message_bytes: int = 1 << 20
    min_compaction_lag_ms: int = 0
    """A record stays uncompacted at least this long."""
    delete_retention_ms: int = 86_400_000
    """How long a tombstone survives compaction, so consumers can see the delete."""

    def __post_init__(self) -> None:
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ConfigurationError(
                f"cleanup_policy must be one of {', '.join(CLEANUP_POLICIES)}, "
                f"not {self.cleanup_policy!r}"
            )
        for name in ("retention_ms", "retention_bytes"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ConfigurationError(
                    f"{name} must be None (no limit) or an int >= 0, not {value!r}"
                )
        for name, least in LEAST.items():
            value = getattr(self, name)
            if not _is_int(value) or value < least:
                raise ConfigurationError(f"{name} must be an int >= {least}, not {value!r}")
        size = self.max_message_bytes
        if not _is_int(size) or size < 1:
            raise ConfigurationError(
                f"max_message_bytes must be an int >= 1 (the largest record's bytes), not {size!r}"
            )

    @property
    def compact(self) -> bool:
        """Whether compaction keeps the latest record per key."""
        return "compact" in self.cleanup_policy

    @property
    def delete(self) -> bool:
        """Whether retention deletes old batches."""
        return "delete" in self.cleanup_policy

    def updated(self, **changes: object) -> TopicConfig:
        """A copy with `changes` applied and checked."""
        unknown = set(changes) - set(self.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(
                f"unknown topic setting(s): {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self.__dataclass_fields__)}"
            )
        return replace(self, **changes)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, object]:
        """The settings as a plain dict."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def to_kafka(self) -> dict[str, int | str]:
        """The settings under Kafka's names (retention.ms, ...), -1 meaning no limit.

        Numbers stay ints and cleanup.policy is Kafka's text, so what this returns is what
        `changes_from_kafka` (and so the CLI's --config and the HTTP API) accepts.
        """
        settings: dict[str, int | str] = {}
        for name in self.__dataclass_fields__:
            value: int | str | None = getattr(self, name)
            settings[kafka_name(name)] = -1 if value is None else value
        return settings

    def to_kafka_text(self) -> dict[str, str]:
        """The settings under Kafka's names as the text the Kafka protocol carries."""
        return {name: str(value) for name, value in self.to_kafka().items()}

    @staticmethod
    def changes_from_kafka(settings: Iterable[tuple[str, object]]) -> dict[str, Any]:
        """Checked changes from settings under Kafka's names; -1 means no limit, as in Kafka.

        A value is an int or its text (cleanup.policy: text); the changes are keyed by the
        Python names (retention_ms, ...) that `TopicConfig` and `Bus.alter_topic` take.
        """
        changes: dict[str, Any] = {}
        for name, value in settings:
            key = KAFKA_NAMES.get(name.strip())
            if key is None:
                raise ConfigurationError(
                    f"unknown topic setting {name!r}; known settings: {', '.join(KAFKA_NAMES)}"
                )
            changes[key] = _setting_value(key, value)
        TopicConfig().updated(**changes)  # checked before anything changes
        return changes


def kafka_name(name: str) -> str:
    """The Kafka name of a TopicConfig field: retention_ms -> retention.ms."""
    return name.replace("_", ".")


KAFKA_NAMES: dict[str, str] = {kafka_name(n): n for n in TopicConfig.__dataclass_fields__}
"""Each topic setting's Kafka name (retention.ms, ...) to its TopicConfig field."""

UNLIMITED = ("retention_ms", "retention_bytes")
"""Settings where -1 means no limit (kept as None), as in Kafka."""


def _setting_value(key: str, value: object) -> int | str | None:
    if key == "cleanup_policy":
        policy = value
        if isinstance(value, str):  # Kafka allows either order
            policy = ",".join(sorted(p.strip() for p in value.split(",")))
        if policy not in CLEANUP_POLICIES:
            raise ConfigurationError(
                f"cleanup.policy takes one of {', '.join(CLEANUP_POLICIES)}, not {value!r}"
            )
        return policy
    error = ConfigurationError(f"{kafka_name(key)} takes an integer, not {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise error
    try:
        number = int(value)
    except ValueError:
        raise error from None
    return None if number == -1 and key in UNLIMITED else number


@dataclass(frozen=True)
class TopicSpec:
    """A topic: its name, partition count and settings."""

    name: str
    partitions: int = 1
    config: TopicConfig = field(default_factory=TopicConfig)

    def __post_init__(self) -> None:
        validate_topic_name(self.name)
        validate_partitions(self.partitions)


MAX_PARTITIONS = 10_000
"""The most partitions a topic of the embedded log may have, unless configured otherwise."""
RETENTION_CHECK_INTERVAL_S = 30.0
"""How often the embedded log applies retention and compaction in the background."""
PARTITIONS_CEILING = 0x7FFFFFFF
"""The most partitions of any topic: Kafka counts them in an int32."""


def validate_partitions(partitions: object, limit: int = PARTITIONS_CEILING) -> int:
    """Return `partitions` if it is a legal partition count: an int from 1 to `limit`."""
    if (
        not isinstance(partitions, int)
        or isinstance(partitions, bool)
        or not 1 <= partitions <= limit
    ):
        hint = (
            ""
            if limit == PARTITIONS_CEILING
            else f"; this bus allows at most max_partitions={limit}: ask for fewer, or raise "
            f"it (tidings serve --max-partitions, or ?max_partitions= in the bus URL)"
        )
        raise InvalidPartitionsError(
            f"partitions must be an int from 1 to {limit}, not {partitions!r}{hint}"
        )
    return partitions


MAX_TIMESTAMP = (1 << 63) - 1
"""The largest timestamp a record holds: Kafka's (and the stored batch's) int64."""
MAX_OFFSET = (1 << 63) - 1
"""The largest offset a group commits: Kafka's int64."""
MAX_HEADER_NAME = 0xFFFF
"""Bytes of a header name (UTF-8) and headers per record that a stored batch can hold."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_partition(partition: object) -> int:
    """Return `partition` if it is an int (its range is the topic's to check)."""
    if not _is_int(partition):
        raise InvalidArgumentError(
            "partition",
            partition,
            f"partition must be an int (0 up to the topic's partition count), "
            f"not {partition!r}; pass partition=None to let the key or the producer choose",
        )
    return partition  # type: ignore[return-value]


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, the unit of record timestamps."""
    return time.time_ns() // 1_000_000


def validate_timestamp(timestamp: object) -> int:
    """Return `timestamp` if it is an int of milliseconds in Kafka's range (0 to 2**63-1)."""
    if not _is_int(timestamp) or not 0 <= timestamp <= MAX_TIMESTAMP:  # type: ignore[operator]
        raise InvalidArgumentError(
            "timestamp",
            timestamp,
            f"timestamp must be an int of milliseconds since the epoch, from 0 to 2**63-1, "
            f"not {timestamp!r}; pass timestamp=None to stamp the record now",
        )
    return timestamp  # type: ignore[return-value]


def validate_offset(offset: object, tp: object = None) -> int:
    """Return `offset` if it is an offset a group can commit: an int from 0 to 2**63-1."""
    if not _is_int(offset) or not 0 <= offset <= MAX_OFFSET:  # type: ignore[operator]
        where = "" if tp is None else f" for {tp}"
        raise InvalidArgumentError(
            "offset",
            offset,
            f"offset{where} must be an int from 0 to 2**63-1 (the next record to read), "
            f"not {offset!r}",
        )
    return offset  # type: ignore[return-value]


def validate_offsets(offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
    """Offsets to commit, checked: TopicPartition keys and offsets from 0 to 2**63-1."""
    if not isinstance(offsets, Mapping):
        raise InvalidArgumentError(
            "offsets",
            offsets,
            f"offsets must be a dict of TopicPartition to offset, not {type(offsets).__name__}",
        )
    out: dict[TopicPartition, int] = {}
    for tp, offset in offsets.items():
        if not (isinstance(tp, tuple) and len(tp) == 2 and isinstance(tp[0], str)):
            raise InvalidArgumentError(
                "offsets",
                tp,
                f"offsets must be keyed by TopicPartition(topic, partition), not {tp!r}",
            )
        key = TopicPartition(tp[0], validate_partition(tp[1]))
        out[key] = validate_offset(offset, key)
    return out


def validate_group_name(group: object) -> str:
    """Return `group` if it is a legal group name: a non-empty str."""
    if not isinstance(group, str) or not group:
        raise InvalidArgumentError(
            "group", group, f"group must be a non-empty str, not {group!r}; name the group"
        )
    return group


def normalize_headers(headers: HeadersInput) -> Headers:
    """Turn a mapping or sequence of pairs into the stored header tuple."""
    if not headers:
        return NO_HEADERS
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: list[Header] = []
    for item in items:
        try:
            name, value = item
        except (TypeError, ValueError):
            raise InvalidRecordError(
                "headers",
                headers,
                f"headers must be a mapping or (name, value) pairs, got item {item!r}",
            ) from None
        if not isinstance(name, str):
            raise InvalidRecordError(
                "headers", headers, f"header name must be str, not {type(name).__name__}"
            )
        try:
            size = len(name.encode())
        except UnicodeEncodeError:
            size = -1
        if not 0 <= size <= MAX_HEADER_NAME:
            raise InvalidRecordError(
                "headers",
                headers,
                f"header name {name[:40]!r} must be UTF-8 text of at most {MAX_HEADER_NAME} bytes",
            )
        if isinstance(value, str):
            try:
                value = value.encode()
            except UnicodeEncodeError:
                raise InvalidRecordError(
                    "headers", headers, f"header {name!r} is not UTF-8 text; pass bytes"
                ) from None
        elif value is not None and not isinstance(value, bytes):
            value = as_bytes(value, f"header {name!r}", "headers")
        out.append((name, value))
    if len(out) > MAX_HEADER_NAME:
        raise InvalidRecordError(
            "headers", headers, f"a record holds at most {MAX_HEADER_NAME} headers, not {len(out)}"
        )
    return tuple(out)


def as_bytes(value: object, what: str, argument: str | None = None) -> bytes:
    """Return `value` as bytes, accepting bytes-like objects, or raise InvalidRecordError."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidRecordError(
        argument or what,
        value,
        f"{what} must be bytes, not {type(value).__name__}; encode it first "
        f"(e.g. json.dumps(obj).encode()) or pass bytes",
    )
