"""Every failure as a status code and a JSON body {"error": "...", "message": "..."}.

tidings errors map by kind: unknown topic, group or partition 404; a conflict with what
exists (topic exists, group has members, job settled or its lock expired) 409; a record
too large 413; an offset outside the log 416; a write the store cannot take (its disk is
full, or it is read-only) 507; other bad input 422, a body that is not JSON 400, and one
not sent as JSON 415. The message says what went wrong and what to do.
"""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from tidings.core.errors import (
    AcknowledgeError,
    CapabilityError,
    ClosedError,
    CommitFailedError,
    GroupNotEmptyError,
    GroupNotFoundError,
    OffsetOutOfRangeError,
    PartitionNotFoundError,
    RecordTooLargeError,
    StorageFullError,
    StoreError,
    StoreReadOnlyError,
    TidingsError,
    TopicExistsError,
    TopicNotFoundError,
)

STATUS: tuple[tuple[type[TidingsError], int], ...] = (
    (TopicNotFoundError, 404),
    (GroupNotFoundError, 404),
    (PartitionNotFoundError, 404),
    (TopicExistsError, 409),
    (GroupNotEmptyError, 409),
    (CommitFailedError, 409),
    (AcknowledgeError, 409),
    (RecordTooLargeError, 413),
    (OffsetOutOfRangeError, 416),
    (StorageFullError, 507),
    (StoreReadOnlyError, 507),
    (StoreError, 500),
    (CapabilityError, 501),
    (ClosedError, 503),
)
"""The first kind an error is an instance of gives its status; any other is bad input."""
BAD_INPUT = 422


class HttpError(Exception):
    """A failure of the HTTP layer itself (an unknown job, options that conflict)."""

    def __init__(self, status: int, error: str, message: str) -> None:
        self.status, self.error, self.message = status, error, message
        super().__init__(message)


def error_response(status: int, error: str, message: str) -> JSONResponse:
    """The JSON body every failure has."""
    return JSONResponse({"error": error, "message": message}, status_code=status)


def error_code(error: TidingsError) -> str:
    """The error's kind in snake case: TopicNotFoundError -> topic_not_found."""
    name = type(error).__name__.removesuffix("Error")
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def tidings_error(_: Request, error: Exception) -> JSONResponse:
    """A tidings error, with its status by kind."""
    assert isinstance(error, TidingsError)
    status = next((code for kind, code in STATUS if isinstance(error, kind)), BAD_INPUT)
    message = str(error)
    if isinstance(error, TopicNotFoundError):  # the library's hint names the Python API
        message = (
            f"topic {error.topic!r} does not exist; create it with "
            f'POST /topics {{"name": "{error.topic}"}}'
        )
    elif isinstance(error, RecordTooLargeError) and error.setting == "max_message_bytes":
        message = (  # the library's hint names the Python API
            f"a record of {error.size} bytes is over max.message.bytes={error.limit} of topic "
            f"{error.topic!r}; send a smaller record or raise the limit with PATCH "
            f'/topics/{error.topic} {{"config": {{"max.message.bytes": ...}}}}'
        )
    return error_response(status, error_code(error), message)


def http_error(_: Request, error: Exception) -> JSONResponse:
    """A failure of the HTTP layer."""
    assert isinstance(error, HttpError)
    return error_response(error.status, error.error, error.message)


def invalid_request(request: Request, error: Exception) -> JSONResponse:
    """A request that does not fit its schema: 400 or 415 if the body is not JSON, else 422."""
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    body_wrong = any(p.get("loc", ())[:1] == ("body",) for p in problems)
    if body_wrong and "json" not in request.headers.get("content-type", ""):
        return error_response(
            415,
            "unsupported_media_type",
            "the request body must be JSON, sent with Content-Type: application/json",
        )
    if any(p.get("type") == "json_invalid" for p in problems):
        return error_response(
            400,
            "bad_json",
            "the request body is not valid JSON; send one JSON document "
            "with Content-Type: application/json",
        )
    described = "; ".join(
        f"{'.'.join(str(part) for part in p.get('loc', ()))}: {p.get('msg', 'invalid')}"
        for p in problems
    )
    return error_response(
        BAD_INPUT, "invalid_request", f"{described}; see /docs for the request's schema"
    )


def route_error(_: Request, error: Exception) -> JSONResponse:
    """No such route, or a method the route does not have."""
    assert isinstance(error, HTTPException)
    hint = {404: "no such endpoint", 405: "this endpoint does not take that method"}
    message = f"{hint.get(error.status_code, error.detail)}; /docs lists the endpoints"
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    return error_response(error.status_code, code, message)


def install(app: FastAPI) -> None:
    """Answer every failure of `app` with the JSON error body."""
    app.add_exception_handler(TidingsError, tidings_error)
    app.add_exception_handler(HttpError, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(HTTPException, route_error)
