"""How tidings names and records are laid out on JetStream: streams, subjects, headers.

A partition is a stream of its own, so its stream sequences are its offsets (offset =
sequence - 1): dense, seekable, and moved forward only by retention. A record is one
JetStream message: the value is the payload; the timestamp, key and null markers travel
in `Tidings-*` headers; the record's own headers are NATS headers when they fit (unique
text names and values), else one `Tidings-Headers` header holding them encoded.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import datetime

from nats.aio.msg import Msg
from tidings.core.records import NO_HEADERS, Headers, Record

PREFIX = "tidings"
MAX_NAME = 255
"""The longest stream name the server accepts."""
TOPICS_BUCKET = "tidings-topics"
GROUPS_BUCKET = "tidings-groups"
SHARE_PREFIX = "share-"
"""Durable consumers of a share group are named so (then the escaped group name)."""

TIMESTAMP = "Tidings-Ts"
KEY = "Tidings-Key"
NULL = "Tidings-Null"
ENCODED_HEADERS = "Tidings-Headers"
GROUP_META = "tidings.group"
TOPIC_META = "tidings.topic"

_NOT_RECORD_HEADERS = ("Tidings-", "Nats-")
"""Headers that are not the record's: tidings' own, and the server's (a Nats-Msg-Id a
record is sent with is the server's too: it de-duplicates by it)."""
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def escape(name: str) -> str:
    """`name` in the characters every NATS name allows, one to one ('_' escapes)."""
    out = []
    for c in name:
        if c in _PLAIN:
            out.append(c)
        elif c == "_":
            out.append("__")
        elif c == ".":
            out.append("_d")
        else:
            out.append(f"_x{ord(c):06x}")
    return "".join(out)


def unescape(text: str) -> str:
    """The name `escape` turned into `text`."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c != "_":
            out.append(c)
            i += 1
        elif text[i + 1] == "_":
            out.append("_")
            i += 2
        elif text[i + 1] == "d":
            out.append(".")
            i += 2
        else:
            out.append(chr(int(text[i + 2 : i + 8], 16)))
            i += 8
    return "".join(out)


def stream_name(topic: str, partition: int) -> str:
    """The stream holding one partition of a topic (a long name ends in its hash)."""
    name = f"{PREFIX}-{partition}-{escape(topic)}"
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(topic.encode()).hexdigest()[:32]
    return f"{name[: MAX_NAME - 34]}-h{digest}"


def subject(topic: str, partition: int) -> str:
    """The subject of a partition: the topic's segments as tokens, then the partition.

    `orders.eu` partition 0 is `tidings.orders.eu.0`, so NATS tools can follow
    `tidings.orders.>`. An underscore in a segment is doubled and an empty segment is `_`.
    """
    tokens = [s.replace("_", "__") if s else "_" for s in topic.split(".")]
    return ".".join([PREFIX, *tokens, str(partition)])


def group_key(group: str) -> str:
    """The KV key of a consumer group."""
    return escape(group)


def share_consumer_name(group: str) -> str:
    """The durable consumer of a share group on each partition stream."""
    return SHARE_PREFIX + escape(group)


def message_headers(
    timestamp: int, key: bytes | None, value: bytes | None, headers: Headers
) -> dict[str, str]:
    """The NATS headers carrying a record's timestamp, key, null value and headers."""
    out = {TIMESTAMP: str(timestamp)}
    if key is not None:
        out[KEY] = base64.b64encode(key).decode()
    if value is None:
        out[NULL] = "1"
    if headers:
        plain = _plain_headers(headers)
        if plain is None:
            out[ENCODED_HEADERS] = json.dumps(
                [[k, None if v is None else base64.b64encode(v).decode()] for k, v in headers]
            )
        else:
            out.update(plain)
    return out


def _plain_headers(headers: Headers) -> dict[str, str] | None:
    """The headers as NATS headers, or None when some cannot round-trip that way."""
    out: dict[str, str] = {}
    for name, value in headers:
        if (
            value is None
            or name in out
            or not name
            or name.startswith("Tidings-")
            or (name.startswith("Nats-") and name != "Nats-Msg-Id")
            or any(c in name for c in ": \r\n\t")
            or not name.isascii()
        ):
            return None
        try:
            text = value.decode()
        except UnicodeDecodeError:
            return None
        if "\r" in text or "\n" in text or text != text.strip():
            return None
        out[name] = text
    return out


def to_record(topic: str, partition: int, msg: Msg, sequence: int, stored: int = 0) -> Record:
    """The record a stored message holds (its offset is `sequence` - 1).

    A message published without tidings' headers gets the `stored` time as its timestamp.
    """
    hdrs = msg.headers or {}
    raw_ts = hdrs.get(TIMESTAMP)
    timestamp = int(raw_ts) if raw_ts is not None else stored
    raw_key = hdrs.get(KEY)
    key = base64.b64decode(raw_key) if raw_key is not None else None
    value = None if NULL in hdrs else msg.data
    return Record(topic, partition, sequence - 1, timestamp, key, value, _record_headers(hdrs))


def _record_headers(hdrs: dict[str, str]) -> Headers:
    encoded = hdrs.get(ENCODED_HEADERS)
    if encoded is not None:
        return tuple(
            (k, None if v is None else base64.b64decode(v)) for k, v in json.loads(encoded)
        )
    plain = [(k, v.encode()) for k, v in hdrs.items() if not k.startswith(_NOT_RECORD_HEADERS)]
    return tuple(plain) if plain else NO_HEADERS


def stored_ms(msg: Msg) -> int:
    """When the server stored a message, in wall-clock milliseconds."""
    stamp = msg.metadata.timestamp
    if isinstance(stamp, datetime):
        return int(stamp.timestamp() * 1000)
    return int(stamp) // 1_000_000
