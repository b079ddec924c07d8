"""The errors tidings raises, all under one root.

    TidingsError
    ├── ConfigurationError          a URL, option or setting is wrong
    │   └── InvalidPartitionsError  partitions < 1, over the bus's max_partitions, or
    │                               fewer than the topic has
    ├── InvalidArgumentError        an argument of the wrong type or out of range
    │   │                           (partition, timestamp, offset, group); names it
    │   └── InvalidRecordError      a value/key/header of the wrong type
    ├── RecordTooLargeError         a record over the topic's max_message_bytes, or
    │                               over the producer's buffer_memory
    ├── TopicError
    │   ├── InvalidTopicError       a name that breaks Kafka's naming rule
    │   ├── TopicNotFoundError
    │   └── TopicExistsError
    ├── PartitionNotFoundError
    ├── OffsetOutOfRangeError       a position before the log start or past the end
    ├── GroupError
    │   ├── GroupNotFoundError
    │   ├── GroupNotEmptyError      an admin change to a group with live members
    │   └── CommitFailedError       a commit for a partition this member no longer owns
    ├── StoreError
    │   ├── NotATidingsStoreError   a file that is not a tidings store (left untouched)
    │   ├── StoreNotFoundError      no store at the path, and it may not be created
    │   ├── StoreCorruptError
    │   ├── StoreReadOnlyError      a write to a store on a read-only mount or file
    │   └── DiskError               the disk failed a read or write (an I/O error)
    │       └── StorageFullError    no space left on the disk for a write
    ├── AcknowledgeError            a queue job settled twice, or after its lock expired
    │   ├── AlreadySettledError
    │   └── LockExpiredError
    ├── CapabilityError             the engine does not provide what was asked
    ├── EngineUnavailableError      a cluster engine's servers (kafka://, nats://) cannot
    │                               be reached or did not answer in time; also a
    │                               ConnectionError
    └── ClosedError                 the bus, producer or consumer was closed

Each carries its context as attributes (topic, partition, group, ...), so callers can
react without parsing messages.
"""

from __future__ import annotations


class TidingsError(Exception):
    """Root of every error tidings raises."""


class ConfigurationError(TidingsError, ValueError):
    """A URL, option or setting is wrong."""


class InvalidArgumentError(TidingsError, ValueError):
    """An argument has the wrong type or is out of its range; `argument` names it."""

    def __init__(self, argument: str, value: object, message: str) -> None:
        self.argument, self.value = argument, value
        super().__init__(message)


class InvalidRecordError(InvalidArgumentError, TypeError):
    """A key, value or header has a type tidings cannot store."""


class RecordTooLargeError(TidingsError):
    """A record is larger than the topic's max_message_bytes or the producer's buffer_memory."""

    def __init__(
        self, topic: str, size: int, limit: int, *, setting: str = "max_message_bytes"
    ) -> None:
        self.topic, self.size, self.limit, self.setting = topic, size, limit, setting
        if setting == "buffer_memory":
            message = (
                f"record of {size} bytes for topic {topic!r} exceeds the producer's "
                f"buffer_memory={limit}; send a smaller record or create the producer with "
                f"a larger buffer: bus.producer(buffer_memory=...)"
            )
        else:
            message = (
                f"record of {size} bytes exceeds {setting}={limit} of topic {topic!r}; "
                f"send a smaller record or raise the limit with "
                f"bus.alter_topic({topic!r}, {setting}=...)"
            )
        super().__init__(message)


class TopicError(TidingsError):
    """A problem with a named topic."""

    def __init__(self, topic: str, message: str) -> None:
        self.topic = topic
        super().__init__(message)


class InvalidTopicError(TopicError, ValueError):
    """A topic name that breaks Kafka's rule: 1-249 characters of [a-zA-Z0-9._-]."""


class TopicNotFoundError(TopicError):
    """The topic does not exist."""

    def __init__(self, topic: str) -> None:
        super().__init__(
            topic,
            f"topic {topic!r} does not exist; create it with bus.create_topic({topic!r}) "
            f"or `tidings topics create {topic}`",
        )


class TopicExistsError(TopicError):
    """The topic already exists."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic, f"topic {topic!r} already exists")


class InvalidPartitionsError(ConfigurationError):
    """A partition count that is not allowed."""


class PartitionNotFoundError(TidingsError):
    """The topic has no such partition."""

    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        self.topic, self.partition, self.partitions = topic, partition, partitions
        super().__init__(
            f"topic {topic!r} has no partition {partition}; "
            f"it has {partitions} (0..{partitions - 1})"
        )


class OffsetOutOfRangeError(TidingsError):
    """A position outside the stored log."""

    def __init__(self, topic: str, partition: int, offset: int, start: int, end: int) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        self.start, self.end = start, end
        super().__init__(
            f"offset {offset} is out of range for {topic}[{partition}]: the log holds "
            f"{start}..{end}; seek to 'earliest' or 'latest'"
        )


class GroupError(TidingsError):
    """A problem with a consumer group."""

    def __init__(self, group: str, message: str) -> None:
        self.group = group
        super().__init__(message)


class GroupNotFoundError(GroupError):
    """The group does not exist."""

    def __init__(self, group: str) -> None:
        super().__init__(group, f"consumer group {group!r} does not exist")


class GroupNotEmptyError(GroupError):
    """An admin change that needs a group with no live members."""


class CommitFailedError(GroupError):
    """A commit for partitions this member does not own any more."""


class StoreError(TidingsError):
    """A problem with the file that holds an embedded bus."""


class NotATidingsStoreError(StoreError):
    """The file exists but is not a tidings store; it is never overwritten."""


class StoreNotFoundError(StoreError):
    """No store exists at the path, and the bus was opened with create=false."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"no tidings store at {path}; open it without create=false to create one")


class StoreCorruptError(StoreError):
    """The store is damaged."""


class StoreReadOnlyError(StoreError):
    """A write to a store that can only be read: its file or mount is read-only."""

    def __init__(self, path: str, action: str) -> None:
        self.path, self.action = path, action
        super().__init__(
            f"cannot {action}: the store {path} is read-only (its file or file system does "
            f"not allow writing); remount it read-write or copy the store to a writable place"
        )


class DiskError(StoreError):
    """The disk under the store failed a read or write; what was stored is intact."""

    def __init__(
        self,
        path: str,
        action: str,
        problem: str,
        advice: str = "check the disk (dmesg, df) and retry",
    ) -> None:
        self.path, self.action = path, action
        super().__init__(
            f"cannot {action}: the disk holding {path} {problem}; nothing stored was lost; {advice}"
        )


class StorageFullError(DiskError):
    """No space is left on the store's disk; writes succeed again once some is freed."""

    def __init__(self, path: str, action: str) -> None:
        super().__init__(path, action, "is full", "free space on it and retry")


class AcknowledgeError(TidingsError):
    """A queue job cannot be settled."""

    def __init__(self, topic: str, partition: int, offset: int, message: str) -> None:
        self.topic, self.partition, self.offset = topic, partition, offset
        super().__init__(message)


class AlreadySettledError(AcknowledgeError):
    """The job was already accepted, released or rejected."""


class LockExpiredError(AcknowledgeError):
    """The job's lock expired: the record is (or will be) delivered again."""


class CapabilityError(TidingsError):
    """The engine does not provide the requested capability."""


class EngineUnavailableError(TidingsError, ConnectionError):
    """The servers behind `url` could not be reached or did not answer in time.

    Often passing: the same call may succeed once the servers are back. Each engine
    raises its own subclass, whose message says what to check.
    """

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(message)


class ClosedError(TidingsError):
    """The object was closed and cannot be used any more."""
