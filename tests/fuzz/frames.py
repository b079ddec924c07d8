"""Request frames generated from kio's schemas, with lengths at their extremes.

A frame has a valid size prefix and request header for a served API and version; its
body follows the schema field by field, with values drawn at random. Any length (of an
array, a string, bytes or a tagged-field section) may lie: null, zero, one, just over
what follows, the largest int32, or a huge or over-long varint. The bytes after a lie
are still generated as if it were true, so the decoder meets a frame whose remainder
disagrees with what it announced, at every depth of nesting. Some frames are then cut,
flipped or padded, and some carry random bytes as their whole body.
"""

from __future__ import annotations

import dataclasses
import random
import struct
import types
import typing
from typing import Any

from kio.index import load_entity_schema, load_request_schema
from kio.static.constants import EntityType

from tidings.server.kafka.lengths import FIXED, SIZED

HUGE_VARINTS = [
    b"\xff\xff\xff\xff\x0f",  # 0xFFFFFFFF: the length of the reproduction
    b"\xff\xff\xff\xff\x07",  # 2^31 - 1
    b"\x80\x80\x80\x80\x08",  # 2^31
    b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",  # 2^64 - 1, longer than any 32-bit varint
    b"\x80" * 12,  # never terminated
    b"\x81\x80\x80\x80\x00",  # 1, over-long
]
PLANTED_COMPACT = HUGE_VARINTS[0]
LEGACY_LIES = [-2, -(2**31), 2**31 - 1, 2**15 - 1, -(2**15)]
NAMES = ["fuzz", "fuzz-2", "", "t", "consumer", "__consumer_offsets", "a" * 249, "bad/name", "é"]
INT_EDGES = [0, 1, -1, 2, 3, 7, 100]
PARTITION_COUNTS = {"num_partitions", "count"}
"""CreateTopics' and CreatePartitions' partition counts: drawn from INT_EDGES only. A
count the broker accepts makes that many partitions, and making millions is a question
of resource limits (tested where they are set), not of reading requests."""
EMBEDDED = {("JoinGroupRequestProtocol", "metadata"): ("consumer_protocol_subscription", 3)}
"""Bytes fields holding an entity the broker decodes too: (entity, field) -> its schema
and newest version. Mostly generated as that entity (a 2-byte version, then its fields),
lies included, so the decoder behind them is fuzzed as well."""


class FrameMaker:
    """Makes request frames from a seeded random source.

    By default any length may lie and frames may be mangled. With `plant=k`, every
    array holds one item, every known tagged field is present, and every length is true
    but the k-th one written (counting from 0), which is at its largest: 0xFFFFFFFF as a
    compact varint, 2^15 - 1 or 2^31 - 1 as a legacy one. `plant=-1` makes an honest
    frame. `lengths` counts the lengths the last frame held, to plant in each in turn.
    """

    def __init__(
        self, rng: random.Random, lie_rate: float = 0.05, plant: int | None = None
    ) -> None:
        self.rng = rng
        self.lie_rate = 0.0 if plant is not None else lie_rate
        self.plant = plant
        self.lengths = 0

    def frame(self, api_key: int, version: int, correlation_id: int) -> bytes:
        """One frame, size prefix included."""
        schema = load_request_schema(api_key, version)
        self.lengths = 0
        out = bytearray()
        header = {
            "request_api_key": api_key,
            "request_api_version": version,
            "correlation_id": correlation_id,
        }
        self._entity(out, schema.__header_schema__, compact=False, given=header)
        if self.plant is None and self.rng.random() < 0.05:
            out += self.rng.randbytes(self.rng.randrange(0, 64))  # random bytes as the body
        else:
            self._entity(out, schema, compact=schema.__flexible__)
        body = bytes(out) if self.plant is not None else self._mangled(bytes(out))
        return struct.pack(">i", len(body)) + body

    def entity(self, schema: Any) -> bytes:
        """One value of the kio entity `schema`, as found inside a request (such as a
        group member's subscription), never mangled."""
        self.lengths = 0
        out = bytearray()
        self._entity(out, schema, compact=schema.__flexible__)
        return bytes(out)

    def _mangled(self, frame: bytes) -> bytes:
        """The frame, sometimes cut short, with bytes flipped, or padded with junk; never
        its first 8 bytes (API key, version, correlation id), so it reaches its decoder."""
        roll = self.rng.random()
        if roll < 0.05 and len(frame) > 8:
            return frame[: self.rng.randrange(8, len(frame))]
        if roll < 0.10 and len(frame) > 8:
            data = bytearray(frame)
            for _ in range(self.rng.randrange(1, 4)):
                data[self.rng.randrange(8, len(data))] = self.rng.randrange(256)
            return bytes(data)
        if roll < 0.12:
            return frame + self.rng.randbytes(self.rng.randrange(1, 32))
        return frame

    def _entity(
        self, out: bytearray, cls: Any, compact: bool, given: dict[str, int] | None = None
    ) -> None:
        tagged = []
        for f in dataclasses.fields(cls):
            if "tag" in f.metadata:
                tagged.append(f)
            elif given is not None and f.name in given:
                out += given[f.name].to_bytes(FIXED[f.metadata["kafka_type"]], "big", signed=True)
            elif f.name in PARTITION_COUNTS:
                out += self.rng.choice(INT_EDGES).to_bytes(4, "big", signed=True)
            elif (cls.__name__, f.name) in EMBEDDED and self._embeds():
                value = self._embedded(*EMBEDDED[cls.__name__, f.name])
                self._length(out, len(value), compact, ">i", nullable=False)
                out += value
            else:
                self._field(out, f.type, f.metadata.get("kafka_type"), compact)
        if cls.__flexible__:
            self._tagged_fields(out, tagged, compact)

    def _embeds(self) -> bool:
        """Whether to write an embedded entity as itself (not when planting: a length
        planted in it is refused in an answer, not by closing the connection)."""
        return self.plant is None and self.rng.random() < 0.8

    def _embedded(self, name: str, newest: int) -> bytes:
        """An entity as the bytes of a field: its version, then its fields."""
        version = self.rng.randrange(newest + 1)
        schema = load_entity_schema(name, version, EntityType.data)
        out = bytearray(struct.pack(">h", version))
        self._entity(out, schema, compact=schema.__flexible__)
        return bytes(out)

    def _field(self, out: bytearray, tp: Any, kafka_type: str | None, compact: bool) -> None:
        nullable, tp = _optional(tp)
        if typing.get_origin(tp) is tuple:
            item_type = typing.get_args(tp)[0]
            count = self._count()
            self._length(out, count, compact, ">i", nullable)
            for _ in range(count):
                self._field(out, item_type, kafka_type, compact)
        elif dataclasses.is_dataclass(tp):
            self._entity(out, tp, compact)
        elif kafka_type == "bool" and self.plant is not None:
            out.append(self.rng.randrange(2))
        elif kafka_type in FIXED:
            out += self._fixed(FIXED[kafka_type])
        elif kafka_type == "string":
            value = self.rng.choice(NAMES).encode()
            self._length(out, len(value), compact, ">h", nullable)
            out += value
        else:
            value = self.rng.randbytes(self.rng.choice([0, 1, 8, 61, 200]))
            self._length(out, len(value), compact, SIZED[kafka_type or ""].format, nullable)
            out += value

    def _count(self) -> int:
        return 1 if self.plant is not None else self.rng.choice([0, 1, 1, 1, 2, 3])

    def _fixed(self, size: int) -> bytes:
        """A value of `size` bytes: a small number, an extreme or random bytes."""
        roll = self.rng.random()
        if roll < 0.6:
            return self.rng.choice(INT_EDGES).to_bytes(size, "big", signed=True)
        if roll < 0.8:
            return self.rng.choice([b"\x7f" + b"\xff" * (size - 1), b"\x80" + b"\0" * (size - 1)])
        return self.rng.randbytes(size)

    def _length(
        self, out: bytearray, length: int, compact: bool, legacy: str, nullable: bool
    ) -> None:
        """A length prefix: the true one, null where allowed, or (at the lie rate) a lie."""
        self.lengths += 1
        if self.plant == self.lengths - 1:
            out += PLANTED_COMPACT if compact else struct.pack(legacy, _largest(legacy))
            return
        if self.plant is None and nullable and self.rng.random() < 0.02:
            length = -1
        if self.rng.random() < self.lie_rate:
            self._lie(out, length, compact, legacy)
        elif compact:
            out += _uvarint(length + 1)
        else:
            out += struct.pack(legacy, length)

    def _lie(self, out: bytearray, length: int, compact: bool, legacy: str) -> None:
        roll = self.rng.random()
        if compact and roll < 0.5:
            out += self.rng.choice(HUGE_VARINTS)
            return
        lie = length + self.rng.choice([1, 2, 17, 1000]) if roll < 0.75 else None
        if compact:
            out += _uvarint((lie if lie is not None else 2**32 - 2) + 1)
        else:
            lie = lie if lie is not None else self.rng.choice(LEGACY_LIES)
            out += struct.pack(legacy, max(min(lie, _largest(legacy)), -_largest(legacy) - 1))

    def _tagged_fields(
        self, out: bytearray, known: list[dataclasses.Field[Any]], compact: bool
    ) -> None:
        """A tagged-fields section: mostly empty, sometimes known or unknown tags, or a
        lie; when planting, every known tag, whose sizes are lengths too."""
        if self.rng.random() < self.lie_rate:
            out += self.rng.choice(HUGE_VARINTS)
            return
        fields = []
        if self.plant is not None or self.rng.random() < 0.1:
            for f in known:
                encoded = bytearray()
                self._field(encoded, f.type, f.metadata.get("kafka_type"), compact)
                fields.append((f.metadata["tag"], bytes(encoded)))
            if self.plant is None:  # kio refuses tags it does not know
                fields.append((self.rng.choice([7, 99, 2**31]), self.rng.randbytes(3)))
        self.lengths += 1
        out += PLANTED_COMPACT if self.plant == self.lengths - 1 else _uvarint(len(fields))
        for tag, value in fields:
            out += _uvarint(tag)
            self.lengths += 1
            if self.plant == self.lengths - 1:
                out += PLANTED_COMPACT
            elif self.rng.random() < self.lie_rate:
                out += self.rng.choice(HUGE_VARINTS)
            else:
                out += _uvarint(len(value))
            out += value


def _largest(legacy: str) -> int:
    """The largest value of a legacy length of struct format `legacy` (">h" or ">i")."""
    return int(2 ** (struct.calcsize(legacy) * 8 - 1) - 1)


def _optional(tp: Any) -> tuple[bool, Any]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return len(args) < len(typing.get_args(tp)), args[0]
    return False, tp


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
