"""The JSON bodies and query parameters of the HTTP API (they make the OpenAPI document).

Keys, values and header values are bytes. They travel as `tidings consume --format json`
prints them: a string when the bytes are UTF-8 text, `{"base64": "..."}` otherwise, and
`null` for none. Requests accept the same forms, so a record read can be sent back as is.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, PlainValidator, StrictInt, StrictStr
from pydantic.json_schema import WithJsonSchema

from tidings.core.records import MAX_TIMESTAMP

BYTES_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "description": "UTF-8 text"},
        {
            "type": "object",
            "properties": {"base64": {"type": "string", "format": "base64"}},
            "required": ["base64"],
            "description": "any bytes, in standard base64 with padding",
        },
        {"type": "null"},
    ]
}


def bytes_from_json(value: object) -> bytes | None:
    """Bytes from their JSON form: text, {"base64": ...} or null; a clear error otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return value.encode()
        except UnicodeEncodeError:
            raise ValueError(
                "text must be valid Unicode (no lone surrogates); "
                'send other bytes as {"base64": "..."}'
            ) from None
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except binascii.Error as e:
            raise ValueError(
                f"{value['base64'][:40]!r} is not valid base64 ({e}); use the standard "
                f"alphabet with padding, e.g. base64.b64encode(data).decode()"
            ) from None
    raise ValueError(
        f'bytes are given as a string (UTF-8 text), {{"base64": "..."}} or null, not {value!r:.60}'
    )


JsonBytes = Annotated[bytes | None, PlainValidator(bytes_from_json), WithJsonSchema(BYTES_SCHEMA)]
NonNegative = Annotated[StrictInt, Field(ge=0, le=MAX_TIMESTAMP)]
"""A partition, offset or timestamp: a JSON integer (not "0", 1.0 or true) in int64's range."""
MaxRecords = Annotated[int, Query(ge=1, le=10_000, description="most records to return")]
TimeoutMs = Annotated[
    int,
    Query(ge=0, le=300_000, description="wait up to this long for a first record (long poll)"),
]


class Model(BaseModel):
    """A request body: unknown fields are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid")


# -- requests ------------------------------------------------------------------------------

SettingValue = StrictInt | StrictStr | None
"""A topic setting under Kafka's name: an int (or its text), cleanup.policy as text; null or
-1 means no limit where that applies."""


class TopicCreate(Model):
    """A topic to create."""

    name: str
    partitions: int = Field(1, ge=1)
    config: dict[str, SettingValue] = Field(
        default_factory=dict, examples=[{"retention.ms": 86_400_000, "cleanup.policy": "delete"}]
    )


class TopicChange(Model):
    """Settings to change, and/or a larger partition count."""

    config: dict[str, SettingValue] = Field(default_factory=dict)
    partitions: int | None = Field(None, ge=1, description="grow the topic to this many")


class RecordIn(Model):
    """One record to produce."""

    key: JsonBytes = None
    value: JsonBytes = None
    headers: dict[str, JsonBytes] | list[tuple[str, JsonBytes]] | None = Field(
        None, description="an object, or [name, value] pairs when names repeat or order matters"
    )
    partition: NonNegative | None = Field(None, description="default: by key, else spread")
    timestamp: NonNegative | None = Field(None, description="ms since the epoch; default: now")


class ProduceRequest(Model):
    """Records to produce, stored in this order."""

    records: list[RecordIn] = Field(min_length=1)


class PartitionOffset(Model):
    """An offset in one partition."""

    partition: NonNegative
    offset: NonNegative


class CommitRequest(Model):
    """Offsets to commit: the next record to read per partition."""

    offsets: list[PartitionOffset] | None = Field(
        None, description="default: every record this server's consumer handed out"
    )


class ResetRequest(Model):
    """Where to move a group's committed offsets on a topic: exactly one of to/offset/time."""

    topic: str
    to: Literal["earliest", "latest"] | None = None
    offset: NonNegative | None = None
    timestamp_ms: NonNegative | None = None
    partitions: list[NonNegative] | None = Field(None, description="default: every partition")


# -- responses -----------------------------------------------------------------------------

BytesOut = str | dict[str, str] | None


class RecordOut(BaseModel):
    """A stored record."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Annotated[BytesOut, WithJsonSchema(BYTES_SCHEMA)]
    value: Annotated[BytesOut, WithJsonSchema(BYTES_SCHEMA)]
    headers: list[tuple[str, Annotated[BytesOut, WithJsonSchema(BYTES_SCHEMA)]]]


class Stored(BaseModel):
    """Where a produced record went, once it is durable."""

    topic: str
    partition: int
    offset: int
    timestamp: int


class Produced(BaseModel):
    """Where each record of a produce request went, in order."""

    records: list[Stored]


class Records(BaseModel):
    """Records read from one partition, and the offset to read from next."""

    records: list[RecordOut]
    next_offset: int


class GroupRecords(BaseModel):
    """Records read by a group, and the offsets that commit exactly them."""

    records: list[RecordOut]
    offsets: list[PartitionOffset]


class PartitionOut(BaseModel):
    """The extent of a partition."""

    partition: int
    start_offset: int
    end_offset: int
    size_bytes: int


class TopicOut(BaseModel):
    """A topic: partition count and settings (Kafka's names)."""

    name: str
    partitions: int
    config: dict[str, int | str] = Field(
        description="settings under Kafka's names, as POST and PATCH take them; -1: no limit"
    )


class TopicDetail(BaseModel):
    """A topic with the extent of each partition."""

    name: str
    config: dict[str, int | str] = Field(
        description="settings under Kafka's names, as POST and PATCH take them; -1: no limit"
    )
    records: int
    partitions: list[PartitionOut]


class TopicList(BaseModel):
    """Every topic."""

    topics: list[TopicOut]


class GroupList(BaseModel):
    """Every consumer group."""

    groups: list[str]


class TopicPartitionOut(BaseModel):
    """A partition of a topic."""

    topic: str
    partition: int


class MemberOut(BaseModel):
    """A live member of a group."""

    member_id: str
    client_id: str
    topics: list[str]
    assignment: list[TopicPartitionOut]


class LagOut(BaseModel):
    """A group's progress on one partition."""

    topic: str
    partition: int
    committed: int | None
    start_offset: int
    end_offset: int
    lag: int
    owner: str | None


class GroupDetail(BaseModel):
    """A consumer group: state, members and lag per partition."""

    group: str
    state: str
    generation: int
    strategy: str | None
    lag: int
    members: list[MemberOut]
    partitions: list[LagOut]


class Committed(BaseModel):
    """Offsets now committed for a group on a topic."""

    topic: str
    offsets: list[PartitionOffset]


class JobOut(RecordOut):
    """A record locked to the client that received it until it is settled or the lock ends."""

    id: str = Field(description="partition-offset-delivery; settle the job with it")
    deliveries: int
    lock_until: int = Field(description="wall-clock ms when the lock ends")


class Jobs(BaseModel):
    """Jobs received from a queue."""

    jobs: list[JobOut]


class Settled(BaseModel):
    """A job's settlement, stored."""

    id: str
    outcome: Literal["accept", "release", "reject", "renew"]
    lock_until: int | None = None


class DepthOut(BaseModel):
    """A queue's partition: jobs available, locked to consumers, and delayed."""

    partition: int
    available: int
    in_flight: int
    delayed: int


class QueueOut(BaseModel):
    """A queue (a share group over a topic) and its totals."""

    group: str
    topic: str
    available: int
    in_flight: int
    delayed: int
    dead_letters: int | None = Field(description="null when it has no dead-letter topic")


class QueueDetail(QueueOut):
    """A queue with its depth per partition."""

    dead_letter_topic: str | None
    partitions: list[DepthOut]


class QueueList(BaseModel):
    """Every queue."""

    queues: list[QueueOut]


class Health(BaseModel):
    """The server is up and its store answers."""

    status: Literal["ok"]
    url: str
    auth: str
    """How the API is protected: "basic", "bearer", or "none (loopback only)"."""


class ErrorOut(BaseModel):
    """What went wrong, and what to do."""

    error: str
    message: str
