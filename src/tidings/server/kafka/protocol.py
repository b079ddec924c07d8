"""Kafka frames: request headers and bodies read, responses written, with kio's schemas.

Every request is a frame: a 4-byte big-endian size, then a request header (API key,
API version, correlation id, client id; tagged fields in flexible versions), then the
body of that API at that version. kio, generated from Kafka's own JSON schemas, reads
and writes every header and body; this module picks the schema and builds responses.
Every length in a request is checked against its frame first (lengths.py), because
kio's reader trusts them.

Handlers return plain mappings of field names; `build` turns one into the response
entity of the version the client asked for. Fields that version lacks are dropped, and
fields the mapping leaves out take the schema's default or their type's zero value, so
one handler serves every version of its API.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import types
import typing
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import cache
from typing import Any, NamedTuple

from kio.index import UnknownAPIKey, UnknownEntity, load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer
from kio.static.primitive import i32Timedelta, i64Timedelta

from . import lengths

SIZE = struct.Struct(">i")
API_KEY_VERSION = struct.Struct(">hhi")
"""The first fields of every request header: API key, API version, correlation id."""
CLIENT_ID_LENGTH = struct.Struct(">h")


class ProtocolError(Exception):
    """A frame the broker cannot read: the connection is closed (the protocol's answer)."""


class UnservedRequest(ProtocolError):
    """A request for an API or version not served, whose answer has no place for the
    refusal: the connection is closed, as Kafka closes it. The refusal is logged where it
    is made (once per client), not again as the connection closes."""


class UnsupportedVersion(Exception):
    """A request for an API, or a version of one, this broker does not serve."""

    def __init__(
        self, api_key: int, version: int, correlation_id: int, client_id: str | None
    ) -> None:
        super().__init__(f"API key {api_key} version {version} is not supported")
        self.api_key = api_key
        self.version = version
        self.correlation_id = correlation_id
        self.client_id = client_id
        """The client id of the request's header, read without its schema."""


class Caller(NamedTuple):
    """Who sent the request being answered: its client id, address and principal."""

    client_id: str
    host: str
    principal: str = "User:ANONYMOUS"
    """Who authenticated (SASL), as ACLs name them: `User:alice`."""


CALLER: ContextVar[Caller] = ContextVar("CALLER")
"""Set by the server around each handler: for answers that name the client, and ACLs."""
UNKNOWN_CALLER = Caller("unknown", "")


class Request(NamedTuple):
    """One decoded request."""

    api_key: int
    version: int
    correlation_id: int
    client_id: str | None
    body: Any
    """The kio request entity."""


def peek_header(frame: bytes) -> tuple[int, int, int]:
    """API key, version and correlation id of a frame, before its body is read."""
    if len(frame) < API_KEY_VERSION.size:
        raise ProtocolError(f"a request of {len(frame)} bytes is too short for its header")
    key, version, correlation_id = API_KEY_VERSION.unpack_from(frame)
    return key, version, correlation_id


def peek_client_id(frame: bytes) -> str | None:
    """The client id of a request header (v1 and later), read without the API's schema:
    a nullable string right after the correlation id; None if absent or unreadable."""
    start = API_KEY_VERSION.size + CLIENT_ID_LENGTH.size
    if len(frame) < start:
        return None
    (length,) = CLIENT_ID_LENGTH.unpack_from(frame, API_KEY_VERSION.size)
    if not 0 <= length <= len(frame) - start:
        return None
    return frame[start : start + length].decode("utf-8", "replace")


def read_request(frame: bytes, supported: Mapping[int, tuple[int, int]]) -> Request:
    """Decode a request frame (without its size prefix) of an API and version we serve."""
    key, version, correlation_id = peek_header(frame)
    low, high = supported.get(key, (1, 0))
    if not low <= version <= high:
        raise UnsupportedVersion(key, version, correlation_id, peek_client_id(frame))
    schema = _request_schema(key, version)
    try:
        lengths.check(schema, frame)  # kio aborts the process on a length it cannot hold
        header, offset = entity_reader(schema.__header_schema__)(frame, 0)
        body, _ = entity_reader(schema)(frame, offset)
    except Exception as e:  # kio raises many kinds on bad bytes; all mean one thing
        raise ProtocolError(
            f"a {schema.__name__} v{version} request is malformed: {type(e).__name__}: {e}"
        ) from e
    # Bytes after the body are ignored, as Kafka's own broker does: librdkafka's Metadata
    # request for every topic carries some.
    return Request(key, version, correlation_id, header.client_id, body)


def write_response(
    api_key: int, version: int, correlation_id: int, fields: Mapping[str, Any]
) -> memoryview:
    """A response frame, size prefix included, for `fields` at the request's version."""
    schema = _response_schema(api_key, version)
    header_schema = schema.__header_schema__
    out = io.BytesIO()
    out.write(b"\0\0\0\0")
    entity_writer(header_schema)(out, build(header_schema, {"correlation_id": correlation_id}))
    entity_writer(schema)(out, build(schema, fields))
    frame = out.getbuffer()
    SIZE.pack_into(frame, 0, len(frame) - SIZE.size)
    return frame  # not copied again: the transport copies what it cannot send at once


@cache
def _request_schema(api_key: int, version: int) -> Any:
    try:
        return load_request_schema(api_key, version)
    except (UnknownAPIKey, UnknownEntity) as e:
        raise ProtocolError(str(e)) from e


@cache
def _response_schema(api_key: int, version: int) -> Any:
    return load_response_schema(api_key, version)


# -- building entities from mappings ------------------------------------------------------


def build(cls: type, values: Mapping[str, Any]) -> Any:
    """An instance of the kio entity `cls` from field values (see the module docstring)."""
    kwargs: dict[str, Any] = {}
    for name, convert, zero in _plan(cls):
        if name in values:
            value = values[name]
            kwargs[name] = value if convert is None or value is None else convert(value)
        elif zero is not _DEFAULTED:
            kwargs[name] = zero
    return cls(**kwargs)


_DEFAULTED = object()
"""The schema gives this field a default: leave it to the dataclass."""

Converter = Callable[[Any], Any]


@cache
def _plan(cls: type) -> tuple[tuple[str, Converter | None, Any], ...]:
    """Each field's name, how to convert a value given for it (None: as it is), and its
    value when none is given; worked out once per entity, from its type hints."""
    plan = []
    for f in dataclasses.fields(cls):
        has_default = (
            f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        )
        plan.append((f.name, _converter(f.type), _DEFAULTED if has_default else _zero(f.type)))
    return tuple(plan)


def _optional(tp: Any) -> tuple[bool, Any]:
    """Whether `tp` admits None, and the type without None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, args[0]
    return False, tp


def _zero(tp: Any) -> Any:
    nullable, tp = _optional(tp)
    if nullable:
        return None
    if typing.get_origin(tp) is tuple:
        return ()
    if tp is ErrorCode:
        return ErrorCode.none
    if isinstance(tp, type):
        if issubclass(tp, datetime.timedelta):
            return datetime.timedelta(0)
        if issubclass(tp, uuid.UUID):
            return uuid.UUID(int=0)
        if issubclass(tp, bool):
            return False
        for builtin in (int, str, bytes, float):  # beneath kio's phantom types
            if issubclass(tp, builtin):
                return builtin()
    raise TypeError(f"no zero value for a field of type {tp!r}: give it explicitly")


def _converter(tp: Any) -> Converter | None:
    """How to turn a value given for a field of type `tp` into what kio writes; None when
    it is written as given (None values always are)."""
    _, tp = _optional(tp)
    if typing.get_origin(tp) is tuple:
        (inner, _) = typing.get_args(tp)
        convert = _converter(inner)
        if convert is None:
            return tuple
        return lambda values: tuple(None if v is None else convert(v) for v in values)
    if dataclasses.is_dataclass(tp):
        entity = typing.cast(type, tp)
        return lambda value: build(entity, value) if isinstance(value, Mapping) else value
    if tp is ErrorCode:
        return lambda value: value if isinstance(value, ErrorCode) else ErrorCode(value)
    if tp in (i32Timedelta, i64Timedelta):
        return lambda value: (
            datetime.timedelta(milliseconds=value) if isinstance(value, int) else value
        )
    return None
