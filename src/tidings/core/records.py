"""Records, topic specifications and the values that describe positions in a log."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

from tidings.core.errors import (
    ConfigurationError,
    InvalidPartitionsError,
    InvalidRecordError,
    InvalidTopicError,
)

Header = tuple[str, bytes | None]
Headers = tuple[Header, ...]
HeadersInput = Mapping[str, bytes | str | None] | Iterable[tuple[str, bytes | str | None]] | None

NO_HEADERS: Headers = ()


@contextmanager
def building_records() -> Iterator[None]:
    """Pause the cyclic garbage collector while a batch of records is made.

    Thousands of fresh tuples would trigger many young-generation collections, each
    scanning the records made so far again (and, as they survive, older generations
    too); the collector runs once the batch is built instead.
    """
    collecting = gc.isenabled()
    if collecting:
        gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


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


@dataclass(frozen=True)
class TopicConfig:
    """The settings of a topic that can change after it is created."""

    retention_ms: int | None = 7 * 86_400_000
    """Delete batches older than this; None keeps them forever."""
    retention_bytes: int | None = None
    """Delete the oldest batches of a partition while it is larger than this."""
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
        for name in ("max_message_bytes", "min_compaction_lag_ms", "delete_retention_ms"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ConfigurationError(f"{name} must be an int >= 0, not {value!r}")

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

    def to_kafka(self) -> dict[str, str]:
        """The settings under Kafka's names (retention.ms, ...), -1 meaning no limit."""
        return {
            name.replace("_", "."): "-1" if value is None else str(value)
            for name, value in self.to_dict().items()
        }

    @staticmethod
    def changes_from_kafka(settings: Iterable[tuple[str, str | None]]) -> dict[str, Any]:
        """Checked changes from settings under Kafka's names; -1 means no limit, as in Kafka."""
        changes: dict[str, Any] = {}
        for name, text in settings:
            key = name.strip().replace(".", "_").replace("-", "_")
            if key not in TopicConfig.__dataclass_fields__:
                known = ", ".join(k.replace("_", ".") for k in TopicConfig.__dataclass_fields__)
                raise ConfigurationError(f"unknown topic setting {name!r}; known settings: {known}")
            changes[key] = _setting_value(key, (text or "").strip())
        TopicConfig().updated(**changes)  # checked before anything changes
        return changes


UNLIMITED = ("retention_ms", "retention_bytes")
"""Settings where -1 means no limit (kept as None), as in Kafka."""


def _setting_value(key: str, text: str) -> int | str | None:
    if key == "cleanup_policy":
        return ",".join(sorted(p.strip() for p in text.split(",")))  # Kafka allows either order
    try:
        number = int(text)
    except ValueError:
        raise ConfigurationError(
            f"{key.replace('_', '.')} takes an integer, not {text!r}"
        ) from None
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
                f"headers must be a mapping or (name, value) pairs, got item {item!r}"
            ) from None
        if not isinstance(name, str):
            raise InvalidRecordError(f"header name must be str, not {type(name).__name__}")
        if isinstance(value, str):
            value = value.encode()
        elif value is not None and not isinstance(value, bytes):
            value = as_bytes(value, f"header {name!r}")
        out.append((name, value))
    return tuple(out)


def as_bytes(value: object, what: str) -> bytes:
    """Return `value` as bytes, accepting bytes-like objects, or raise InvalidRecordError."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise InvalidRecordError(
        f"{what} must be bytes, not {type(value).__name__}; encode it first "
        f"(e.g. json.dumps(obj).encode()) or pass bytes"
    )
