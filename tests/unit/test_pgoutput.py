"""The pgoutput decoder, on messages built byte by byte as PostgreSQL 15 sends them."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.cdc.pgoutput import (
    UNCHANGED,
    Begin,
    Column,
    Commit,
    Delete,
    Insert,
    LogicalMessage,
    Origin,
    PgoutputError,
    Relation,
    Truncate,
    Tuple,
    TypeInfo,
    Update,
    decode,
    lsn_to_str,
    str_to_lsn,
    values,
)
from tidings.core.errors import TidingsError

TS_US = 774_086_400_123_456  # 2024-07-12T08:00:00.123456Z in microseconds since 2000-01-01
TS_MS = 1_720_771_200_123
"""TS_US in milliseconds since the Unix epoch."""


def cstr(text: str) -> bytes:
    return text.encode() + b"\0"


def text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return b"t" + struct.pack(">i", len(raw)) + raw


def binary(raw: bytes) -> bytes:
    return b"b" + struct.pack(">i", len(raw)) + raw


def tuple_data(*columns: bytes) -> bytes:
    return struct.pack(">H", len(columns)) + b"".join(columns)


def relation_message(oid: int, schema: str, table: str, identity: str, *cols: Column) -> bytes:
    out = b"R" + struct.pack(">I", oid) + cstr(schema) + cstr(table) + identity.encode()
    out += struct.pack(">H", len(cols))
    for c in cols:
        out += struct.pack(">B", int(c.key)) + cstr(c.name) + struct.pack(">Ii", c.type_oid, -1)
    return out


ROW = tuple_data(b"n", b"u", text("héllo"), binary(b"\x00\xff"))
ROW_VALUES: Tuple = (None, UNCHANGED, "héllo", b"\x00\xff")
KEY = tuple_data(text("7"))


def test_begin() -> None:
    msg = decode(b"B" + struct.pack(">QqI", 0x16_B374_D848, TS_US, 4_000_000_000))
    assert msg == Begin(final_lsn=0x16_B374_D848, commit_ts_us=TS_US, xid=4_000_000_000)
    assert isinstance(msg, Begin)
    assert msg.commit_ms == TS_MS


def test_commit() -> None:
    msg = decode(b"C" + struct.pack(">BQQq", 0, 100, 200, TS_US))
    assert msg == Commit(commit_lsn=100, end_lsn=200, commit_ts_us=TS_US)
    assert isinstance(msg, Commit)
    assert msg.commit_ms == TS_MS


def test_commit_ms_before_2000_is_before_the_pg_epoch() -> None:
    assert Commit(0, 0, 0).commit_ms == 946_684_800_000
    assert Commit(0, 0, -1_000_000).commit_ms == 946_684_799_000


def test_origin() -> None:
    assert decode(b"O" + struct.pack(">Q", 42) + cstr("node_a")) == Origin(42, "node_a")


def test_relation() -> None:
    cols = (Column("id", 23, True), Column("name", 25, False), Column("data", 3802, False))
    msg = decode(relation_message(16384, "public", "orders", "d", *cols))
    assert msg == Relation(16384, "public", "orders", "d", cols)


def test_relation_keeps_the_key_flag_only() -> None:
    raw = b"R" + struct.pack(">I", 1) + cstr("") + cstr("t") + b"f" + struct.pack(">H", 1)
    raw += struct.pack(">B", 1) + cstr("k") + struct.pack(">Ii", 1043, 36)
    msg = decode(raw)
    assert isinstance(msg, Relation)
    assert msg.schema == ""  # pg_catalog
    assert msg.replica_identity == "f"
    assert msg.columns == (Column("k", 1043, True),)


def test_type() -> None:
    raw = b"Y" + struct.pack(">I", 90001) + cstr("public") + cstr("mood")
    assert decode(raw) == TypeInfo(90001, "public", "mood")


def test_insert_with_every_kind_of_value() -> None:
    msg = decode(b"I" + struct.pack(">I", 16384) + b"N" + ROW)
    assert msg == Insert(16384, ROW_VALUES)
    assert isinstance(msg, Insert)
    assert msg.new[1] is UNCHANGED


def test_insert_of_an_empty_row_and_empty_values() -> None:
    assert decode(b"I\0\0\0\1N" + tuple_data()) == Insert(1, ())
    assert decode(b"I\0\0\0\1N" + tuple_data(text(""), binary(b""))) == Insert(1, ("", b""))


def test_update_without_old_tuple() -> None:
    msg = decode(b"U" + struct.pack(">I", 5) + b"N" + ROW)
    assert msg == Update(5, old=None, new=ROW_VALUES, old_is_key=False)


def test_update_with_old_key() -> None:
    msg = decode(b"U" + struct.pack(">I", 5) + b"K" + KEY + b"N" + ROW)
    assert msg == Update(5, old=("7",), new=ROW_VALUES, old_is_key=True)


def test_update_with_old_row() -> None:
    msg = decode(b"U" + struct.pack(">I", 5) + b"O" + ROW + b"N" + KEY)
    assert msg == Update(5, old=ROW_VALUES, new=("7",), old_is_key=False)


def test_delete_with_key_and_with_old_row() -> None:
    assert decode(b"D" + struct.pack(">I", 9) + b"K" + KEY) == Delete(9, ("7",), True)
    assert decode(b"D" + struct.pack(">I", 9) + b"O" + ROW) == Delete(9, ROW_VALUES, False)


@pytest.mark.parametrize(
    ("options", "cascade", "restart"),
    [(0, False, False), (1, True, False), (2, False, True), (3, True, True)],
)
def test_truncate(options: int, cascade: bool, restart: bool) -> None:
    msg = decode(b"T" + struct.pack(">IBII", 2, options, 16384, 4_294_967_295))
    assert msg == Truncate((16384, 4_294_967_295), cascade=cascade, restart_identity=restart)


def test_logical_message() -> None:
    raw = b"M" + struct.pack(">BQ", 1, 77) + cstr("app") + struct.pack(">i", 3) + b"a\0b"
    assert decode(raw) == LogicalMessage(True, 77, "app", b"a\0b")
    raw = b"M" + struct.pack(">BQ", 0, 77) + cstr("") + struct.pack(">i", 0)
    assert decode(raw) == LogicalMessage(False, 77, "", b"")


def test_messages_are_frozen() -> None:
    msg = decode(b"O" + struct.pack(">Q", 1) + cstr("x"))
    assert isinstance(msg, Origin)
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.name = "y"  # type: ignore[misc]


VALID = [
    b"B" + struct.pack(">QqI", 1, 2, 3),
    b"C" + struct.pack(">BQQq", 0, 1, 2, 3),
    b"O" + struct.pack(">Q", 1) + cstr("origin"),
    relation_message(1, "public", "t", "d", Column("id", 23, True)),
    b"Y" + struct.pack(">I", 1) + cstr("s") + cstr("n"),
    b"I" + struct.pack(">I", 1) + b"N" + ROW,
    b"U" + struct.pack(">I", 1) + b"O" + ROW + b"N" + ROW,
    b"D" + struct.pack(">I", 1) + b"K" + KEY,
    b"T" + struct.pack(">IBI", 1, 0, 1),
    b"M" + struct.pack(">BQ", 1, 1) + cstr("p") + struct.pack(">i", 2) + b"hi",
]


@pytest.mark.parametrize("raw", VALID, ids=lambda raw: chr(raw[0]))
def test_every_truncation_is_refused(raw: bytes) -> None:
    decode(raw)
    for end in range(len(raw)):
        with pytest.raises(PgoutputError, match=r"^truncated message"):
            decode(raw[:end])


@pytest.mark.parametrize("raw", VALID, ids=lambda raw: chr(raw[0]))
def test_trailing_bytes_are_refused(raw: bytes) -> None:
    with pytest.raises(PgoutputError, match="1 trailing bytes"):
        decode(raw + b"\0")


@pytest.mark.parametrize("kind", [b"S", b"E", b"c", b"A", b"P", b"K", b"r", b"p", b"x", b"\0"])
def test_unknown_and_later_protocol_types_are_refused(kind: bytes) -> None:
    with pytest.raises(PgoutputError, match="unknown message type"):
        decode(kind + b"\0" * 32)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "message type"),
        (b"I\0\0\0\1K" + KEY, "expected new tuple 'N', got 'K'"),
        (b"U\0\0\0\1X" + KEY, "expected new tuple 'N', got 'X'"),
        (b"U\0\0\0\1K" + KEY + b"K" + KEY, "expected new tuple 'N', got 'K'"),
        (b"D\0\0\0\1N" + KEY, "expected old tuple 'K' or 'O', got 'N'"),
        (b"I\0\0\0\1N" + tuple_data(b"x"), "unknown kind 'x' for column 0 of new tuple"),
        (b"I\0\0\0\1N" + tuple_data(b"t\xff\xff\xff\xff"), "negative length -1"),
        (b"I\0\0\0\1N" + tuple_data(text(b"\xff")), "column 0 of new tuple is not UTF-8"),
        (b"O" + struct.pack(">Q", 1) + b"\xc3\0", "origin name is not UTF-8"),
        (b"O" + struct.pack(">Q", 1) + b"no-nul", "origin name at offset 9 has no NUL"),
        (b"T" + struct.pack(">IB", 4_294_967_295, 0), "4294967295 relation oids"),
    ],
)
def test_malformed_messages_say_what_is_wrong(raw: bytes, match: str) -> None:
    with pytest.raises(PgoutputError, match=match):
        decode(raw)


def test_errors_are_value_errors_under_the_tidings_root() -> None:
    assert issubclass(PgoutputError, ValueError)
    assert issubclass(PgoutputError, TidingsError)


@given(st.binary(max_size=64))
def test_random_bytes_only_raise_pgoutput_error(raw: bytes) -> None:
    with contextlib.suppress(PgoutputError):
        decode(raw)


@given(st.sampled_from(b"BCORYIUDTM"), st.binary(max_size=96))
def test_random_bodies_of_known_types_only_raise_pgoutput_error(kind: int, body: bytes) -> None:
    with contextlib.suppress(PgoutputError):
        decode(bytes([kind]) + body)


@given(st.sampled_from(VALID), st.integers(min_value=0), st.integers(0, 255))
def test_corrupted_valid_messages_only_raise_pgoutput_error(
    raw: bytes, where: int, byte: int
) -> None:
    corrupt = bytearray(raw)
    corrupt[where % len(raw)] = byte
    with contextlib.suppress(PgoutputError):
        decode(bytes(corrupt))


def relation_of(*types: int) -> Relation:
    columns = tuple(Column(f"c{i}", oid, i == 0) for i, oid in enumerate(types))
    return Relation(1, "public", "t", "d", columns)


@pytest.mark.parametrize(
    ("type_oid", "raw", "expected"),
    [
        (16, "t", True),
        (16, "f", False),
        (21, "-32768", -32768),
        (23, "2147483647", 2147483647),
        (20, "-9223372036854775808", -9223372036854775808),
        (700, "1.5", 1.5),
        (701, "-2.25e-05", -2.25e-05),
        (701, "Infinity", float("inf")),
        (1700, "1234567890123456789.000000000000000001", "1234567890123456789.000000000000000001"),
        (1700, "NaN", "NaN"),
        (25, "héllo", "héllo"),
        (1043, "varchar", "varchar"),
        (1042, "padded  ", "padded  "),
        (19, "pg_class", "pg_class"),
        (114, '{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}),
        (3802, '{"a": {"b": true}}', {"a": {"b": True}}),
        (3802, '"just a string"', "just a string"),
        (17, "\\x00ff10", base64.b64encode(b"\x00\xff\x10").decode()),
        (17, "\\x", ""),
        (2950, "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        (1184, "2024-07-12 08:00:00.123456+00", "2024-07-12 08:00:00.123456+00"),
        (1114, "2024-07-12 08:00:00", "2024-07-12 08:00:00"),
        (1082, "2024-07-12", "2024-07-12"),
        (1083, "08:00:00", "08:00:00"),
        (1007, "{1,2,3}", "{1,2,3}"),  # int4[]: any other type stays text
    ],
)
def test_values_convert_text_by_type(type_oid: int, raw: str, expected: object) -> None:
    converted = values(relation_of(type_oid), (raw,))
    assert converted == {"c0": expected}
    assert type(converted["c0"]) is type(expected)


def test_values_keep_nulls_and_unchanged_toast() -> None:
    row = values(relation_of(23, 25, 3802), ("1", None, UNCHANGED))
    assert row == {"c0": 1, "c1": None, "c2": UNCHANGED}
    assert row["c2"] is UNCHANGED


def test_values_of_binary_bytea_are_base64() -> None:
    assert values(relation_of(17), (b"\x00\xff",)) == {"c0": "AP8="}


@pytest.mark.parametrize(
    ("type_oid", "raw", "match"),
    [
        (16, "true", "column 'c0' \\(type oid 16\\): cannot convert 'true'"),
        (23, "1.5", "type oid 23"),
        (701, "abc", "type oid 701"),
        (3802, "{", "type oid 3802"),
        (17, "\\xzz", "type oid 17"),
        (17, "\\000", "hex format"),
    ],
)
def test_values_refuse_text_that_does_not_fit_its_type(type_oid: int, raw: str, match: str) -> None:
    with pytest.raises(PgoutputError, match=match):
        values(relation_of(type_oid), (raw,))


def test_values_refuse_binary_values_of_other_types() -> None:
    with pytest.raises(PgoutputError, match="binary format"):
        values(relation_of(23), (b"\0\0\0\1",))


@pytest.mark.parametrize("row", [("1",), ("1", "2", "3")])
def test_values_refuse_a_row_that_does_not_match_its_relation(row: Tuple) -> None:
    with pytest.raises(PgoutputError, match=r"public\.t has 2 columns, the row has"):
        values(relation_of(23, 25), row)


def test_values_of_a_decoded_insert() -> None:
    rel = decode(
        relation_message(7, "public", "t", "d", Column("id", 20, True), Column("doc", 3802, False))
    )
    ins = decode(b"I" + struct.pack(">I", 7) + b"N" + tuple_data(text("42"), text('{"x":1}')))
    assert isinstance(rel, Relation)
    assert isinstance(ins, Insert)
    assert values(rel, ins.new) == {"id": 42, "doc": {"x": 1}}


@pytest.mark.parametrize(
    ("lsn", "text_form"),
    [(0, "0/0"), (0x16_B374_D848, "16/B374D848"), ((1 << 64) - 1, "FFFFFFFF/FFFFFFFF")],
)
def test_lsn_text_form(lsn: int, text_form: str) -> None:
    assert lsn_to_str(lsn) == text_form
    assert str_to_lsn(text_form) == lsn


def test_lsn_text_is_case_insensitive_and_allows_leading_zeros() -> None:
    assert str_to_lsn("16/b374d848") == str_to_lsn("00000016/B374D848") == 0x16_B374_D848


@given(st.integers(min_value=0, max_value=(1 << 64) - 1))
def test_lsn_round_trips(lsn: int) -> None:
    assert str_to_lsn(lsn_to_str(lsn)) == lsn


@pytest.mark.parametrize("bad", ["", "16", "16/", "/1", "1/2/3", "G/0", "123456789/0", " 1/2"])
def test_bad_lsn_text_is_refused(bad: str) -> None:
    with pytest.raises(PgoutputError, match="not an LSN"):
        str_to_lsn(bad)


@pytest.mark.parametrize("bad", [-1, 1 << 64])
def test_lsn_out_of_range_is_refused(bad: int) -> None:
    with pytest.raises(PgoutputError, match="outside"):
        lsn_to_str(bad)
