"""The answers that refuse a request because the store cannot write: for every API and
version that writes, a well-formed response with the refusal in every error code, naming
each resource the request named."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from kio.schema.errors import ErrorCode

from tidings.core.errors import StorageFullError, StoreReadOnlyError
from tidings.server.kafka import protocol
from tidings.server.kafka.apis import SUPPORTED
from tidings.server.kafka.refusals import GROUP_APIS, refusable, storage_refusal

from ..fuzz.frames import FrameMaker
from ..server.wire import parse_response

SASL = {17, 36}
"""Answered by the connection, before any handler."""
NO_STORE = {3, 10, 18}
"""Metadata (its topics created on first use say why each failed), FindCoordinator and
ApiVersions: answered without writing to the store."""
SERVED = [
    (key, version)
    for key, (low, high) in sorted(SUPPORTED.items())
    if key not in SASL | NO_STORE
    for version in range(low, high + 1)
]


def generated_request(api_key: int, version: int) -> Any:
    """A request of the API and version with one of each resource, as a client sends it
    (the first seed whose random values the schema accepts: some draw an out-of-range
    timeout)."""
    for seed in range(100):
        frame = FrameMaker(random.Random(seed), plant=-1).frame(api_key, version, 7)
        try:
            request = protocol.read_request(frame[4:], SUPPORTED).body
        except protocol.ProtocolError:
            continue
        return dataclasses.replace(request, acks=-1) if api_key == 0 else request
    raise AssertionError(f"no seed gave a readable API {api_key} v{version} request")


def error_codes(value: Any) -> list[ErrorCode]:
    """Every error code in a response entity, at any depth."""
    if isinstance(value, tuple):
        return [c for item in value for c in error_codes(item)]
    if not dataclasses.is_dataclass(value):
        return []
    codes: list[ErrorCode] = []
    for f in dataclasses.fields(value):
        field = getattr(value, f.name)
        codes += [field] if f.name == "error_code" else error_codes(field)
    return codes


@pytest.mark.parametrize(("api_key", "version"), SERVED)
def test_every_api_that_writes_answers_a_full_disk_with_an_error_code(
    api_key: int, version: int
) -> None:
    assert refusable(api_key, version), f"API {api_key} v{version} would close the connection"
    request = generated_request(api_key, version)
    fields = storage_refusal(api_key, request, version, StorageFullError("/x/t.db", "write"))
    assert fields is not None
    response = protocol.write_response(api_key, version, 7, fields)
    codes = error_codes(parse_response(bytes(response[4:]), api_key, version))
    expected = (
        ErrorCode.coordinator_not_available
        if api_key in GROUP_APIS
        else ErrorCode.kafka_storage_error
    )
    assert codes, f"API {api_key} v{version}: no error code in the refusal"
    assert set(codes) == {expected}, codes


def test_a_refusal_says_why_and_names_each_resource() -> None:
    request = generated_request(19, 7)
    fields = storage_refusal(19, request, 7, StoreReadOnlyError("/x/t.db", "create a topic"))
    assert fields is not None
    answer = parse_response(bytes(protocol.write_response(19, 7, 1, fields)[4:]), 19, 7)
    assert [t.name for t in answer.topics] == [t.name for t in request.topics]
    [topic] = answer.topics
    assert topic.error_code == ErrorCode.kafka_storage_error
    assert topic.error_message is not None and "read-only" in topic.error_message


def test_a_produce_with_acks_0_is_refused_without_an_answer() -> None:
    request = dataclasses.replace(generated_request(0, 9), acks=0)
    assert storage_refusal(0, request, 9, StorageFullError("/x/t.db", "write")) is None
