"""Every length in a request checked against its frame, before kio reads the request.

kio's native reader trusts the lengths a frame states: a compact array announcing four
billion items makes it allocate room for them first, and a failed allocation aborts the
whole process (docs/kio-bug-unbounded-length.md). So before kio reads a request, `check`
walks it with the same schema kio will use, and refuses any array, string, bytes or
tagged-field length that asks for more than the bytes left in the frame, at any depth.
An array of n items needs n times the smallest encoding of one item, so a frame that
passes holds every item it announces, and kio allocates no more than the frame warrants.

The walk runs on every request, Produce and Fetch included, so it is compiled once per
schema (one per API and version) into one plain function: fixed-width fields in a row
become one addition, arrays become loops, and a one-byte length is read inline. Records and
other bytes are skipped by their length, never read, so the cost does not grow with
the data a request carries.
"""

from __future__ import annotations

import dataclasses
import struct
import types
import typing
from collections.abc import Callable
from functools import cache
from typing import Any

Walk = Callable[[bytes, int, int], int]
"""Walks a value of `frame` from `pos`, reading nothing at or past `end`; the position
after it. Raises LengthError when a length asks for more than is left."""

I16 = struct.Struct(">h")
I32 = struct.Struct(">i")

FIXED = {
    "bool": 1,
    "int8": 1,
    "int16": 2,
    "uint16": 2,
    "error_code": 2,
    "int32": 4,
    "uint32": 4,
    "timedelta_i32": 4,
    "int64": 8,
    "uint64": 8,
    "float64": 8,
    "timedelta_i64": 8,
    "datetime_i64": 8,
    "uuid": 16,
}
"""Bytes of each fixed-width Kafka type."""
SIZED = {"string": I16, "bytes": I32, "records": I32}
"""The legacy length prefix of each type whose value follows its length."""
MAX_VARINT_BYTES = 5
"""Kafka's unsigned varints here hold 32 bits: five bytes at most."""


class LengthError(ValueError):
    """A length in a request that asks for more bytes than its frame holds."""


def check(schema: Any, frame: bytes) -> None:
    """Refuse `frame` (header and body) if any length in it exceeds what the frame holds."""
    _request_walk(schema)(frame, 0, len(frame))


def check_entity(schema: Any, data: bytes, pos: int) -> None:
    """Refuse `data` if a length in the kio entity `schema` at `pos` exceeds what it holds
    (for entities inside a request, such as a consumer group member's subscription)."""
    _entity_walk(schema)(data, pos, len(data))


@cache
def _request_walk(schema: Any) -> Walk:
    """The walk of a request of `schema`: its header, then its body."""
    code = _Code()
    # The header's client id is a legacy string in every version, as Kafka's
    # RequestHeader schema says, even where the header has tagged fields.
    code.entity(schema.__header_schema__, compact=False)
    code.entity(schema, compact=schema.__flexible__)
    return code.compile(f"walk_{schema.__name__}_v{schema.__version__}")


@cache
def _entity_walk(schema: Any) -> Walk:
    """The walk of one entity of `schema`."""
    code = _Code()
    code.entity(schema, compact=schema.__flexible__)
    return code.compile(f"walk_{schema.__name__}_v{schema.__version__}")


class _Code:
    """The source of one walk function, written field by field."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1
        self.width = 0  # fixed-width bytes not yet added to pos
        self.names: dict[str, Any] = {
            "too_long": _too_long,
            "null_refused": _null_refused,
            "uvarint": _uvarint,
            "legacy": _legacy,
            "tagged": _tagged,
            "LengthError": LengthError,
            "I16": I16,
            "I32": I32,
        }

    def compile(self, name: str) -> Walk:
        self.flush()
        body = "\n".join(self.lines) or "    pass"
        source = f"def {name}(frame, pos, end):\n{body}\n    return pos\n"
        exec(compile(source, f"<length walk {name}>", "exec"), self.names)
        walk: Walk = self.names[name]
        return walk

    def line(self, text: str) -> None:
        self.lines.append("    " * self.depth + text)

    def flush(self) -> None:
        """Add the fixed-width fields read so far to pos, in one step."""
        if self.width:
            self.line(f"pos += {self.width}")
            self.line("if pos > end: raise LengthError(f'fields run to byte {pos}, past {end}')")
            self.width = 0

    def entity(self, cls: Any, compact: bool) -> None:
        """Walk of an entity: its fields in order, then its tagged fields when flexible."""
        known: dict[int, Walk] = {}
        for f in dataclasses.fields(cls):
            kafka_type = f.metadata.get("kafka_type")
            if "tag" in f.metadata:
                sub = _Code()
                sub.field(f.type, kafka_type, compact)
                known[f.metadata["tag"]] = sub.compile(f"tag_{f.name}")
            else:
                self.field(f.type, kafka_type, compact)
        if cls.__flexible__:
            self.flush()
            tags = f"tags_{len(self.names)}"
            self.names[tags] = known
            self.line("if pos < end and frame[pos] == 0: pos += 1  # no tagged fields, as usual")
            self.line(f"else: pos = tagged(frame, pos, end, {tags})")

    def field(self, tp: Any, kafka_type: str | None, compact: bool) -> None:
        """Walk of one field of type `tp` (kio's type hint) and Kafka type `kafka_type`."""
        nullable = tp is not _without_none(tp)  # kio types a field nullable as Kafka's schema
        tp = _without_none(tp)
        if typing.get_origin(tp) is tuple:
            self.array(typing.get_args(tp)[0], kafka_type, compact, nullable)
        elif dataclasses.is_dataclass(tp):
            self.entity(tp, compact)
        elif kafka_type in FIXED:
            self.width += FIXED[kafka_type]
        elif kafka_type in SIZED:
            self.flush()
            self.length(compact, SIZED[kafka_type], 1, nullable)
            self.line("if n > 0: pos += n")
        else:
            raise TypeError(f"the length check does not know kio's Kafka type {kafka_type!r}")

    def array(self, item: Any, kafka_type: str | None, compact: bool, nullable: bool) -> None:
        self.flush()
        smallest = _smallest(item, kafka_type, compact)
        self.length(compact, I32, smallest, nullable)
        if kafka_type in FIXED:
            self.line(f"if n > 0: pos += n * {smallest}")
            return
        self.line("for _ in range(n):")
        self.depth += 1
        self.field(item, kafka_type, compact)
        self.flush()
        self.line("pass")
        self.depth -= 1

    def length(self, compact: bool, prefix: struct.Struct, smallest: int, nullable: bool) -> None:
        """Read a length into n (-1 for null), checked for items of `smallest` bytes; a
        null where the schema allows none is refused (no handler expects one there)."""
        if not compact:
            self.line(f"n, pos = legacy(frame, pos, end, {smallest}, I{prefix.size * 8})")
        else:
            # a compact length is an unsigned varint of length + 1: almost always one byte
            self.line("if pos < end and frame[pos] < 0x80: n = frame[pos] - 1; pos += 1")
            self.line("else: n, pos = uvarint(frame, pos, end); n -= 1")
            self.line(f"if n * {smallest} > end - pos: too_long(n, pos, end)")
        if not nullable:
            self.line("if n < 0: null_refused(pos)")


def _smallest(tp: Any, kafka_type: str | None, compact: bool) -> int:
    """The fewest bytes a value of this type can take (at least 1)."""
    tp = _without_none(tp)
    if typing.get_origin(tp) is tuple or kafka_type in SIZED:
        return 1 if compact else SIZED.get(kafka_type or "", I32).size
    if dataclasses.is_dataclass(tp):
        entity: Any = tp
        fields = [f for f in dataclasses.fields(entity) if "tag" not in f.metadata]
        size = sum(_smallest(f.type, f.metadata.get("kafka_type"), compact) for f in fields)
        return max(size + int(entity.__flexible__), 1)
    return FIXED[kafka_type or ""]


def _without_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (tp,) = [a for a in typing.get_args(tp) if a is not type(None)]
    return tp


def _legacy(
    frame: bytes, pos: int, end: int, smallest: int, prefix: struct.Struct
) -> tuple[int, int]:
    """A legacy length (a signed int16 or int32; -1 is null), checked to fit, and the
    position after it."""
    if pos + prefix.size > end:
        raise LengthError(f"a length is due at byte {pos}, but the frame ends at {end}")
    (length,) = prefix.unpack_from(frame, pos)
    if length < -1:
        raise LengthError(f"the length {length} at byte {pos} is negative")
    pos += prefix.size
    if length * smallest > end - pos:
        _too_long(length, pos, end)
    return length, pos


def _null_refused(pos: int) -> None:
    raise LengthError(f"a null before byte {pos} where the schema allows none")


def _too_long(length: int, pos: int, end: int) -> None:
    raise LengthError(
        f"the length {length} before byte {pos} asks for more than the "
        f"{max(end - pos, 0)} bytes left in the frame"
    )


def _tagged(frame: bytes, pos: int, end: int, known: dict[int, Walk]) -> int:
    """Walk of a tagged-fields section: a count, then (tag, size, value) each; a known
    tag's value is walked within its size, an unknown one skipped."""
    count, pos = _uvarint(frame, pos, end)
    if count * 2 > end - pos:  # a tag and a size: two bytes at least
        _too_long(count, pos, end)
    for _ in range(count):
        tag, pos = _uvarint(frame, pos, end)
        size, pos = _uvarint(frame, pos, end)
        if size > end - pos:
            _too_long(size, pos, end)
        walk = known.get(tag)
        if walk is not None:
            walk(frame, pos, pos + size)
        pos += size
    return pos


def _uvarint(frame: bytes, pos: int, end: int) -> tuple[int, int]:
    """An unsigned varint and the position after it."""
    value = shift = 0
    while pos < end and shift < 7 * MAX_VARINT_BYTES:
        byte = frame[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise LengthError(f"a varint before byte {pos} is unterminated or longer than 32 bits")
