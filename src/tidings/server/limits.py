"""What `tidings serve` allows one client, and its defaults (Kafka's, where Kafka has one).

Every bound holds before the work it bounds: a frame's size is checked on its prefix, a
body's as it arrives, a partition count before anything is created.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_REQUEST_BYTES = 100 << 20
"""socket.request.max.bytes: a larger frame closes the connection."""
MAX_QUEUED_REQUEST_BYTES = 256 << 20
"""queued.max.request.bytes: request bytes all connections together read and hold at once.
Kafka leaves it unbounded; this bounds the broker's memory for requests to a few hundred
MB whatever clients send, yet holds two frames of the largest size, or hundreds of the
1 MiB requests clients send by default, so normal traffic never waits for it."""
MAX_UNAUTHENTICATED_BYTES = 512 << 10
"""sasl.server.max.receive.size: the largest frame before authentication."""
MAX_CONNECTIONS = 1000
"""max.connections: open connections of the Kafka listener."""
MAX_CONNECTIONS_PER_IP = 500
"""max.connections.per.ip: open connections from one client address."""
IDLE_TIMEOUT_S = 600.0
"""connections.max.idle.ms: a connection that sends nothing for this long is closed."""
REQUEST_TIMEOUT_S = 30.0
"""How long the rest of a frame may take once its first byte has come."""
MAX_HTTP_BODY_BYTES = 16 << 20
"""The largest request body the HTTP API reads."""


@dataclass(frozen=True)
class Limits:
    """What the Kafka listener allows its clients."""

    max_request_bytes: int = MAX_REQUEST_BYTES
    max_queued_request_bytes: int = MAX_QUEUED_REQUEST_BYTES
    max_unauthenticated_bytes: int = MAX_UNAUTHENTICATED_BYTES
    max_connections: int = MAX_CONNECTIONS
    max_connections_per_ip: int = MAX_CONNECTIONS_PER_IP
    idle_timeout_s: float = IDLE_TIMEOUT_S
    request_timeout_s: float = REQUEST_TIMEOUT_S
