"""A decoder for pgoutput, PostgreSQL's logical replication output plugin (protocol 1).

`decode` turns one message (the payload of an XLogData message, or a row of
`pg_logical_slot_peek_binary_changes`) into a frozen dataclass; it does no I/O and keeps no
state. A transaction arrives as Begin, then Relation messages for tables not described yet
(or changed since), then Insert/Update/Delete/Truncate, then Commit. Rows refer to their
table by oid, so the caller keeps the latest Relation per oid and passes it to `values`.

Layouts follow "Logical Replication Message Formats" in the PostgreSQL 15 manual: every
integer is big-endian, every string NUL-terminated. Text is decoded as UTF-8, so the
replication connection should use `client_encoding=UTF8`. Messages of later protocol
versions (streaming, two-phase commit) are refused as unknown.
"""

from __future__ import annotations

import base64
import enum
import json
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

from tidings.core.errors import TidingsError


class PgoutputError(TidingsError, ValueError):
    """A pgoutput message, value or LSN that cannot be decoded."""


class _Unchanged(enum.Enum):
    """The type of `UNCHANGED`."""

    UNCHANGED = "UNCHANGED"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged.UNCHANGED
"""A TOASTed value the change left alone; PostgreSQL does not send it again."""

Value: TypeAlias = str | bytes | Literal[_Unchanged.UNCHANGED] | None
"""A column value: None (null), UNCHANGED, str (text format) or bytes (binary format)."""
Tuple: TypeAlias = tuple[Value, ...]
"""A row's values, in the order of its Relation's columns."""

_PG_EPOCH_MS = 946_684_800_000
"""2000-01-01, PostgreSQL's epoch, in milliseconds since the Unix epoch."""


def _unix_ms(pg_us: int) -> int:
    return pg_us // 1000 + _PG_EPOCH_MS


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a Relation."""

    name: str
    type_oid: int
    key: bool


@dataclass(frozen=True, slots=True)
class Relation:
    """A table's columns, sent before its first change on a connection and after it changes."""

    oid: int
    schema: str
    table: str
    replica_identity: str
    """'d' (default: the primary key), 'n' (nothing), 'f' (full row) or 'i' (an index)."""
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Begin:
    """The start of a transaction."""

    final_lsn: int
    commit_ts_us: int
    """Microseconds since 2000-01-01 UTC."""
    xid: int

    @property
    def commit_ms(self) -> int:
        """The commit time in milliseconds since the Unix epoch."""
        return _unix_ms(self.commit_ts_us)


@dataclass(frozen=True, slots=True)
class Commit:
    """The end of a transaction."""

    commit_lsn: int
    end_lsn: int
    commit_ts_us: int
    """Microseconds since 2000-01-01 UTC."""

    @property
    def commit_ms(self) -> int:
        """The commit time in milliseconds since the Unix epoch."""
        return _unix_ms(self.commit_ts_us)


@dataclass(frozen=True, slots=True)
class Origin:
    """The replication origin a transaction came from."""

    commit_lsn: int
    """The LSN of the commit on the origin server."""
    name: str


@dataclass(frozen=True, slots=True)
class TypeInfo:
    """A data type's name, sent before a row that uses a type outside pg_catalog."""

    oid: int
    schema: str
    name: str


@dataclass(frozen=True, slots=True)
class Insert:
    """A row inserted."""

    oid: int
    new: Tuple


@dataclass(frozen=True, slots=True)
class Update:
    """A row updated."""

    oid: int
    old: Tuple | None
    """The old key (old_is_key) or whole old row, when the replica identity sends it."""
    new: Tuple
    old_is_key: bool


@dataclass(frozen=True, slots=True)
class Delete:
    """A row deleted."""

    oid: int
    old: Tuple
    """The old key (old_is_key) or, with replica identity full, the whole old row."""
    old_is_key: bool


@dataclass(frozen=True, slots=True)
class Truncate:
    """Tables truncated together."""

    oids: tuple[int, ...]
    cascade: bool
    restart_identity: bool


@dataclass(frozen=True, slots=True)
class LogicalMessage:
    """A message written with pg_logical_emit_message."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


Message: TypeAlias = (
    Begin
    | Commit
    | Origin
    | Relation
    | TypeInfo
    | Insert
    | Update
    | Delete
    | Truncate
    | LogicalMessage
)
"""Any message `decode` returns."""

_U8 = struct.Struct(">B")
_U16 = struct.Struct(">H")
_I32 = struct.Struct(">i")
_U32 = struct.Struct(">I")
_I64 = struct.Struct(">q")
_U64 = struct.Struct(">Q")


class _Reader:
    """Reads a message from the front, refusing to read past its end."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        end = self.pos + n
        if end > len(self.data):
            raise PgoutputError(
                f"truncated message: {what} needs {n} bytes at offset {self.pos}, "
                f"{len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def _int(self, fmt: struct.Struct, what: str) -> int:
        value: int = fmt.unpack(self.take(fmt.size, what))[0]
        return value

    def u8(self, what: str) -> int:
        return self._int(_U8, what)

    def u16(self, what: str) -> int:
        return self._int(_U16, what)

    def i32(self, what: str) -> int:
        return self._int(_I32, what)

    def u32(self, what: str) -> int:
        return self._int(_U32, what)

    def i64(self, what: str) -> int:
        return self._int(_I64, what)

    def u64(self, what: str) -> int:
        return self._int(_U64, what)

    def char(self, what: str) -> str:
        return chr(self.u8(what))

    def string(self, what: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise PgoutputError(f"truncated message: {what} at offset {self.pos} has no NUL")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        return _utf8(raw, what)

    def counted(self, what: str) -> bytes:
        n = self.i32(f"length of {what}")
        if n < 0:
            raise PgoutputError(f"negative length {n} for {what}")
        return self.take(n, what)

    def tuple_data(self, what: str) -> Tuple:
        row: list[Value] = []
        for i in range(self.u16(f"column count of {what}")):
            column = f"column {i} of {what}"
            kind = self.char(f"kind of {column}")
            if kind == "n":
                row.append(None)
            elif kind == "u":
                row.append(UNCHANGED)
            elif kind == "t":
                row.append(_utf8(self.counted(column), column))
            elif kind == "b":
                row.append(self.counted(column))
            else:
                raise PgoutputError(f"unknown kind {kind!r} for {column}")
        return tuple(row)


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError as e:
        raise PgoutputError(f"{what} is not UTF-8: {e.reason} at byte {e.start}") from None


def _begin(r: _Reader) -> Begin:
    return Begin(r.u64("final LSN"), r.i64("commit timestamp"), r.u32("xid"))


def _commit(r: _Reader) -> Commit:
    r.u8("flags")  # unused, always 0
    return Commit(r.u64("commit LSN"), r.u64("end LSN"), r.i64("commit timestamp"))


def _origin(r: _Reader) -> Origin:
    return Origin(r.u64("origin commit LSN"), r.string("origin name"))


def _relation(r: _Reader) -> Relation:
    oid = r.u32("relation oid")
    schema = r.string("namespace")
    table = r.string("relation name")
    identity = r.char("replica identity")
    columns = []
    for i in range(r.u16("column count")):
        flags = r.u8(f"flags of column {i}")
        name = r.string(f"name of column {i}")
        type_oid = r.u32(f"type oid of column {i}")
        r.i32(f"type modifier of column {i}")
        columns.append(Column(name, type_oid, bool(flags & 1)))
    return Relation(oid, schema, table, identity, tuple(columns))


def _type(r: _Reader) -> TypeInfo:
    return TypeInfo(r.u32("type oid"), r.string("type namespace"), r.string("type name"))


def _insert(r: _Reader) -> Insert:
    oid = r.u32("relation oid")
    if (tag := r.char("tuple tag")) != "N":
        raise PgoutputError(f"insert: expected new tuple 'N', got {tag!r}")
    return Insert(oid, r.tuple_data("new tuple"))


def _update(r: _Reader) -> Update:
    oid = r.u32("relation oid")
    old = None
    tag = r.char("tuple tag")
    old_is_key = tag == "K"
    if tag in ("K", "O"):
        old = r.tuple_data("old tuple")
        tag = r.char("tuple tag")
    if tag != "N":
        raise PgoutputError(f"update: expected new tuple 'N', got {tag!r}")
    return Update(oid, old, r.tuple_data("new tuple"), old_is_key)


def _delete(r: _Reader) -> Delete:
    oid = r.u32("relation oid")
    tag = r.char("tuple tag")
    if tag not in ("K", "O"):
        raise PgoutputError(f"delete: expected old tuple 'K' or 'O', got {tag!r}")
    return Delete(oid, r.tuple_data("old tuple"), tag == "K")


def _truncate(r: _Reader) -> Truncate:
    count = r.u32("relation count")
    options = r.u8("options")
    raw = r.take(_U32.size * count, f"{count} relation oids")
    return Truncate(
        tuple(oid for (oid,) in _U32.iter_unpack(raw)), bool(options & 1), bool(options & 2)
    )


def _message(r: _Reader) -> LogicalMessage:
    flags = r.u8("flags")
    lsn = r.u64("message LSN")
    prefix = r.string("prefix")
    return LogicalMessage(bool(flags & 1), lsn, prefix, r.counted("content"))


_DECODERS: dict[int, Callable[[_Reader], Message]] = {
    ord("B"): _begin,
    ord("C"): _commit,
    ord("O"): _origin,
    ord("R"): _relation,
    ord("Y"): _type,
    ord("I"): _insert,
    ord("U"): _update,
    ord("D"): _delete,
    ord("T"): _truncate,
    ord("M"): _message,
}


def decode(data: bytes) -> Message:
    """Decode one pgoutput message, raising PgoutputError if it is malformed."""
    r = _Reader(data)
    kind = r.u8("message type")
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise PgoutputError(
            f"unknown message type {chr(kind)!r} (0x{kind:02x}); "
            "only pgoutput protocol version 1 is decoded"
        )
    message = decoder(r)
    if r.pos != len(r.data):
        raise PgoutputError(
            f"{len(r.data) - r.pos} trailing bytes after {type(message).__name__} message"
        )
    return message


def _bool(text: str) -> bool:
    if text not in ("t", "f"):
        raise ValueError("not 't' or 'f'")
    return text == "t"


def _bytea(text: str) -> str:
    if not text.startswith("\\x"):
        raise ValueError("bytea must come in hex format (bytea_output = 'hex')")
    return base64.b64encode(bytes.fromhex(text[2:])).decode("ascii")


_BYTEA = 17
_CONVERTERS: dict[int, Callable[[str], object]] = {
    16: _bool,
    _BYTEA: _bytea,
    20: int,
    21: int,
    23: int,
    114: json.loads,
    700: float,
    701: float,
    3802: json.loads,
}
"""From the text format, by type oid; numeric, text-like, uuid, times and the rest stay text."""


def values(relation: Relation, row: Tuple) -> dict[str, object]:
    """The row as column name -> Python value, converted from the text format by type."""
    if len(row) != len(relation.columns):
        raise PgoutputError(
            f"{relation.schema}.{relation.table} has {len(relation.columns)} columns, "
            f"the row has {len(row)}"
        )
    out: dict[str, object] = {}
    for column, value in zip(relation.columns, row, strict=True):
        if value is None or value is UNCHANGED:
            out[column.name] = value
        elif isinstance(value, bytes):
            if column.type_oid != _BYTEA:
                raise PgoutputError(
                    f"column {column.name!r} (type oid {column.type_oid}) came in binary "
                    "format, which is decoded for bytea only"
                )
            out[column.name] = base64.b64encode(value).decode("ascii")
        else:
            convert = _CONVERTERS.get(column.type_oid)
            try:
                out[column.name] = value if convert is None else convert(value)
            except ValueError as e:
                raise PgoutputError(
                    f"column {column.name!r} (type oid {column.type_oid}): "
                    f"cannot convert {value[:40]!r}: {e}"
                ) from None
    return out


_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")
_LSN_MAX = (1 << 64) - 1


def lsn_to_str(lsn: int) -> str:
    """An LSN in PostgreSQL's text form, e.g. 16/B374D848."""
    if not 0 <= lsn <= _LSN_MAX:
        raise PgoutputError(f"LSN {lsn} is outside 0..2**64-1")
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(text: str) -> int:
    """An LSN from PostgreSQL's text form, e.g. 16/B374D848."""
    match = _LSN.fullmatch(text)
    if match is None:
        raise PgoutputError(f"not an LSN: {text!r} (expected hex/hex, e.g. 16/B374D848)")
    return int(match[1], 16) << 32 | int(match[2], 16)
