"""Handlers declared with decorators, request-reply, and codecs chosen by type hint."""

from tidings.api.rpc import CORRELATION_ID, REPLY_TO, Requester, RequestTimeoutError
from tidings.app.app import App, Subscriber
from tidings.core.codecs import DecodeError, decoder_for, encode

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
]
