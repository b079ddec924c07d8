"""Records, metadata and queue depths as JSON, one scheme for the CLI and the HTTP API.

Bytes (keys, values, header values) are `null` for None, a string when they are valid
UTF-8, otherwise `{"base64": "..."}`.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from tidings.core.records import Record, RecordMetadata
from tidings.engines.base import QueueDepth


def bytes_to_json(data: bytes | None) -> str | dict[str, str] | None:
    """Bytes as JSON: UTF-8 text when they decode, else {"base64": ...}."""
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def record_to_json(record: Record) -> dict[str, Any]:
    """A consumed record as a JSON object."""
    return {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": bytes_to_json(record.key),
        "value": bytes_to_json(record.value),
        "headers": [[name, bytes_to_json(value)] for name, value in record.headers],
    }


def metadata_to_json(meta: RecordMetadata) -> dict[str, Any]:
    """Where a produced record went, as a JSON object."""
    return {
        "topic": meta.topic,
        "partition": meta.partition,
        "offset": meta.offset,
        "timestamp": meta.timestamp,
    }


def json_line(doc: object) -> str:
    """One compact JSON document on one line."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def depth_to_json(group: str, topic: str, depths: list[QueueDepth], dead: int | None) -> Any:
    """A queue's totals as JSON: available, in flight, delayed and dead letters."""
    return {
        "group": group,
        "topic": topic,
        "available": sum(d.available for d in depths),
        "in_flight": sum(d.in_flight for d in depths),
        "delayed": sum(d.delayed for d in depths),
        "dead_letters": dead,
    }


def queue_to_json(
    group: str,
    topic: str,
    depths: list[QueueDepth],
    dead: int | None,
    dead_letter_topic: str | None,
) -> dict[str, Any]:
    """A queue in full as JSON: its totals, its dead-letter topic and each partition."""
    return {
        **depth_to_json(group, topic, depths, dead),
        "dead_letter_topic": dead_letter_topic,
        "partitions": [
            {
                "partition": d.partition,
                "available": d.available,
                "in_flight": d.in_flight,
                "delayed": d.delayed,
            }
            for d in depths
        ],
    }
