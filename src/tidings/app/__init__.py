"""Handlers declared with decorators, request-reply, and codecs chosen by type hint."""

from tidings.app.app import App, Subscriber
from tidings.app.codecs import DecodeError, decoder_for, encode
from tidings.app.rpc import CORRELATION_ID, REPLY_TO, Requester, RequestTimeoutError, request

__all__ = [
    "CORRELATION_ID",
    "REPLY_TO",
    "App",
    "DecodeError",
    "RequestTimeoutError",
    "Requester",
    "Subscriber",
    "decoder_for",
    "encode",
    "request",
]
