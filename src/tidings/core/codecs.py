"""Values to and from record bytes, chosen by a handler's type hint.

Supported hints: `tidings.Record` (the record itself), `bytes`, `str` (UTF-8), `dict`,
`list` and other JSON values, dataclasses (JSON objects of their fields) and pydantic
models (when pydantic is installed; it is never imported here, models are recognised by
their `model_validate_json` method).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Callable
from typing import Any

from tidings.core.errors import ConfigurationError, TidingsError
from tidings.core.records import Record

Decoder = Callable[[Record], Any]
JSON_TYPES = (dict, list, int, float, bool)
SUPPORTED = (
    "tidings.Record, bytes, str, dict, list, int, float, bool, a dataclass or a pydantic model"
)


class DecodeError(TidingsError):
    """A record's value could not be decoded into the handler's parameter type."""

    def __init__(self, record: Record, message: str) -> None:
        super().__init__(message)
        self.record = record


def decoder_for(hint: Any) -> Decoder:
    """A function turning a record into a value of `hint` (refused now when unsupported)."""
    if hint is Any or hint is Record or hint is None:
        return lambda record: record
    origin = typing.get_origin(hint) or hint
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:  # Optional[X]: a tombstone decodes to None
            inner = decoder_for(args[0])
            return lambda record: None if record.value is None else inner(record)
        raise ConfigurationError(
            f"cannot decode into {hint!r}: a union of several types is ambiguous; "
            f"annotate the parameter with one of {SUPPORTED}"
        )
    if origin is bytes:
        return lambda record: record.value
    if origin is str:
        return _text
    if origin in JSON_TYPES:
        return lambda record: _checked(record, _json(record), origin)
    if isinstance(origin, type) and dataclasses.is_dataclass(origin):
        cls = origin
        return lambda record: _dataclass(record, cls)
    if isinstance(origin, type) and hasattr(origin, "model_validate_json"):
        model = origin
        return lambda record: _pydantic(record, model)
    raise ConfigurationError(
        f"cannot decode a record into {hint!r}; annotate the parameter with one of "
        f"{SUPPORTED} (pydantic models need `pip install pydantic`)"
    )


def encode(value: Any) -> bytes | None:
    """The bytes to publish for a handler's return value (None stays None)."""
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, Record):
        return value.value
    if hasattr(value, "model_dump_json"):  # a pydantic model
        dumped: str = value.model_dump_json()
        return dumped.encode()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, separators=(",", ":")).encode()
    except (TypeError, ValueError) as e:
        raise ConfigurationError(
            f"cannot encode a {type(value).__name__} as a record value: {e}; return "
            f"bytes, str, a JSON value, a dataclass or a pydantic model"
        ) from e


def _text(record: Record) -> str:
    if record.value is None:
        raise DecodeError(record, "the record has no value (a tombstone); expected text")
    try:
        return record.value.decode()
    except UnicodeDecodeError as e:
        raise DecodeError(record, f"the record's value is not UTF-8 text: {e}") from e


def _json(record: Record) -> Any:
    try:
        return json.loads(_text(record))
    except json.JSONDecodeError as e:
        raise DecodeError(record, f"the record's value is not JSON: {e}") from e


def _checked(record: Record, value: Any, expected: type) -> Any:
    if not isinstance(value, expected) or (expected is not bool and isinstance(value, bool)):
        raise DecodeError(
            record, f"expected a JSON {expected.__name__}, got {type(value).__name__}"
        )
    return value


def _dataclass(record: Record, cls: type) -> Any:
    data = _checked(record, _json(record), dict)
    try:
        return cls(**data)
    except TypeError as e:
        raise DecodeError(record, f"the JSON object does not fit {cls.__name__}: {e}") from e


def _pydantic(record: Record, model: Any) -> Any:
    try:
        return model.model_validate_json(record.value or b"")
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        raise DecodeError(record, f"the record does not fit {model.__name__}: {e}") from e
