"""kafka:// URLs: the bootstrap servers and the librdkafka settings they carry."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlsplit

from tidings.core.errors import ConfigurationError

log = logging.getLogger("tidings.kafka.librdkafka")
Role = Literal["producer", "consumer", "admin"]

DEFAULTS: dict[str, str] = {
    "socket.timeout.ms": "10000",
    "message.timeout.ms": "30000",
    "allow.auto.create.topics": "false",
}
"""librdkafka settings tidings chooses unless the URL sets them: bounded waits, and
topics that exist only once created (tidings never creates a topic by writing to it)."""

CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "group.",
    "fetch.",
    "partition.assignment.strategy",
    "enable.auto.",
    "auto.commit.",
    "isolation.level",
    "queued.",
    "max.partition.fetch.bytes",
    "check.crcs",
    "enable.partition.eof",
)
PRODUCER_ONLY = (
    "acks",
    "request.required.acks",
    "linger.ms",
    "queue.buffering.",
    "batch.",
    "compression.",
    "enable.idempotence",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "message.send.max.retries",
    "transactional.id",
    "partitioner",
    "sticky.partitioning.",
)
"""Prefixes of settings only one kind of client takes; the other kind is not given them
(librdkafka would warn that it ignores them)."""
SECRET = ("sasl.password", "ssl.key.password", "sasl.oauthbearer.client.secret")
OWN_OPTIONS = ("replication_factor",)
"""Query options tidings reads itself instead of passing them to librdkafka."""


@dataclass(frozen=True)
class KafkaSettings:
    """Where the cluster is and how to talk to it, read from a kafka:// URL."""

    bootstrap: str
    librdkafka: dict[str, str] = field(default_factory=dict)
    """Settings for every client, under librdkafka's names (security.protocol, ...)."""
    replication_factor: int = -1
    """Replicas of each topic created; -1 leaves it to the cluster's default."""
    url: str = ""
    """The URL with secrets masked, for messages."""

    @property
    def timeout_s(self) -> float:
        """The longest one request to the cluster may take."""
        return int(self.librdkafka["socket.timeout.ms"]) / 1000

    def client(
        self,
        role: Role,
        defaults: dict[str, Any] | None = None,
        overrides: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A librdkafka configuration for one client: `defaults`, the URL's settings over
        them, then `overrides` over both."""
        other = CONSUMER_ONLY if role != "consumer" else PRODUCER_ONLY
        mine = {k: v for k, v in self.librdkafka.items() if not k.startswith(other)}
        return {
            "bootstrap.servers": self.bootstrap,
            "logger": log,
            **(defaults or {}),
            **mine,
            **(overrides or {}),
        }


def parse(url: str) -> KafkaSettings:
    """Read a kafka://host:port[,host:port...]?option=value URL."""
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc:
        raise ConfigurationError(
            f"not a Kafka URL: {url!r}; use kafka://host:9092 or kafka://host1:9092,host2:9092"
        )
    if parts.path not in ("", "/"):
        raise ConfigurationError(
            f"a kafka:// URL names brokers only, not a path ({parts.path!r} in {url!r}); "
            f"put settings in the query: kafka://host:9092?security_protocol=SASL_SSL"
        )
    options: dict[str, str] = dict(DEFAULTS)
    replication = -1
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "replication_factor":
            replication = _int_option(key, value, url)
            continue
        options[key.replace("_", ".")] = value
    for name in ("socket.timeout.ms", "message.timeout.ms"):
        if _int_option(name, options[name], url) <= 0:
            raise ConfigurationError(f"{name} must be > 0 in {_masked(url)!r}")
    return KafkaSettings(
        bootstrap=parts.netloc,
        librdkafka=options,
        replication_factor=replication,
        url=_masked(url),
    )


def _int_option(name: str, value: str, url: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(
            f"{name} takes an integer, not {value!r} (in {_masked(url)!r})"
        ) from None


def _masked(url: str) -> str:
    """The URL with the values of secret settings replaced by ***."""
    parts = urlsplit(url)
    query = "&".join(
        f"{k}={'***' if k.replace('_', '.') in SECRET else quote(v, safe='')}"
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    return parts._replace(query=query).geturl()
